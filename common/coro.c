/*
 * coro.c - the coroutine scheduler and its blocking-style wrappers (see
 * coro.h). One scheduler per kernel thread; nothing here is shared between
 * threads except the counters, which other threads only read.
 */
#include "coro.h"
#include "server.h"
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS     1  /* deadlines to the millisecond, and in order */
#define STACKS_KEPT 64 /* finished coroutines' stacks kept for the next ones */

/* A coroutine. It lives at the top of its own stack mapping, above the
 * stack, so one mmap (or one reused mapping) makes a coroutine. */
struct c10k_coro_s {
    c10k_ctx_t ctx;
    c10k_stack_t stack;
    c10k_sched_t *sched;
    c10k_coro_fn_t fn;
    void *arg;
    c10k_coro_t *next_run;      /* the run queue; the stack cache once finished */
    c10k_coro_t *next, **pprev; /* every live coroutine, for stop and abort */
    c10k_timer_t timer;         /* the deadline of the wait it is parked in */
    c10k_cfd_t *waiting_on;     /* the descriptor of that wait, or NULL */
    bool parked;                /* in a wait: neither running nor queued */
    bool stoppable;             /* that wait ends on a stop */
    uint8_t wake;               /* c10k_wake_t: why the wait ended */
    unsigned streak;            /* waits in a row that did not block */
};

/* The scheduler of this thread, while it runs. */
static __thread c10k_sched_t *sched_tls;

/* The epoll tag of the stop descriptor (every other tag is a c10k_cfd_t). */
static char stop_tag;

/* --- switching ---------------------------------------------------------------- */

static void enqueue(c10k_sched_t *s, c10k_coro_t *co)
{
    co->next_run = NULL;
    *s->run_tail = co;
    s->run_tail = &co->next_run;
}

/* From a coroutine to the scheduler; returns when it is resumed. */
static void to_scheduler(c10k_sched_t *s, c10k_coro_t *co)
{
    c10k_stats_inc(&s->counters.switches);
    c10k_ctx_swap(&co->ctx, &s->self);
}

/* A finished coroutine's stack is kept for the next one, or unmapped. */
static void reap(c10k_sched_t *s)
{
    c10k_coro_t *co = s->dead;
    c10k_stack_t st;

    if (!co)
        return;
    s->dead = NULL;
    c10k_ctx_release(&co->ctx);
    if (s->nfree < STACKS_KEPT) {
        co->next_run = s->free_stacks;
        s->free_stacks = co;
        s->nfree++;
        return;
    }
    st = co->stack; /* co lives in the mapping */
    c10k_stack_unmap(&st);
}

/* From the scheduler to co, until co waits, yields or ends. */
static void resume(c10k_sched_t *s, c10k_coro_t *co)
{
    s->current = co;
    c10k_stats_inc(&s->counters.switches);
    c10k_ctx_swap(&s->self, &co->ctx);
    s->current = NULL;
    reap(s);
}

static void coro_finish(c10k_coro_t *co)
{
    c10k_sched_t *s = co->sched;

    *co->pprev = co->next;
    if (co->next)
        co->next->pprev = co->pprev;
    s->live--;
    s->dead = co; /* reaped by the scheduler: we are still on this stack */
    c10k_stats_inc(&s->counters.switches);
    c10k_ctx_exit(&co->ctx, &s->self);
}

static void coro_main(void *arg)
{
    c10k_coro_t *co = arg;

    co->fn(co->arg);
    coro_finish(co);
}

/* --- waking ------------------------------------------------------------------- */

static void wake(c10k_sched_t *s, c10k_coro_t *co, c10k_wake_t why)
{
    if (!co->parked)
        return;
    co->parked = false;
    co->wake = (uint8_t)why;
    if (co->waiting_on) {
        co->waiting_on->waiter = NULL;
        co->waiting_on = NULL;
    }
    c10k_timer_cancel(&s->wheel, &co->timer);
    enqueue(s, co);
    if (why == C10K_WAKE_READY)
        c10k_stats_inc(&s->counters.wake_ready);
    else if (why == C10K_WAKE_DEADLINE)
        c10k_stats_inc(&s->counters.wake_deadline);
    else
        c10k_stats_inc(&s->counters.wake_stop);
}

static bool is_ready(const c10k_cfd_t *f, uint32_t events)
{
    return ((events & EPOLLIN) && f->readable) || ((events & EPOLLOUT) && f->writable);
}

/* The kernel reported events on f: remember them, wake its waiter. */
static void on_ready(c10k_sched_t *s, c10k_cfd_t *f, uint32_t events)
{
    /* An error or hang-up makes the socket both readable and writable: the
     * next call says what happened. */
    if (events & (EPOLLERR | EPOLLHUP))
        f->readable = f->writable = f->rdhup = true;
    if (events & (EPOLLIN | EPOLLRDHUP))
        f->readable = true;
    if (events & EPOLLRDHUP)
        f->rdhup = true;
    if (events & EPOLLOUT)
        f->writable = true;
    if (f->waiter && is_ready(f, f->want))
        wake(s, f->waiter, C10K_WAKE_READY);
}

static void on_deadline(c10k_timer_t *t, void *arg)
{
    c10k_coro_t *co = (c10k_coro_t *)((char *)t - offsetof(c10k_coro_t, timer));

    wake(arg, co, C10K_WAKE_DEADLINE);
}

static void wake_all(c10k_sched_t *s, c10k_wake_t why, bool stoppable_only)
{
    for (c10k_coro_t *co = s->all; co; co = co->next)
        if (co->parked && (co->stoppable || !stoppable_only))
            wake(s, co, why);
}

static void begin_stop(c10k_sched_t *s)
{
    s->stopping = true;
    s->grace_until = s->now + s->conf.grace_ms;
    if (s->conf.stop_fd >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->conf.stop_fd, NULL);
    wake_all(s, C10K_WAKE_STOP, true);
}

static void begin_abort(c10k_sched_t *s)
{
    s->aborting = true;
    wake_all(s, C10K_WAKE_ABORT, false);
}

/* --- the scheduler's loop ------------------------------------------------------- */

/* Run every coroutine that is ready now, once. Those that become ready
 * meanwhile (a yield, a spawn) wait for the next round, after the next
 * look at the descriptors, so nobody can keep the loop from polling. */
static void run_ready(c10k_sched_t *s)
{
    c10k_coro_t *co = s->run_head, *next;

    s->run_head = NULL;
    s->run_tail = &s->run_head;
    for (; co; co = next) {
        next = co->next_run;
        resume(s, co);
    }
}

static int poll_timeout(c10k_sched_t *s)
{
    int64_t t;

    if (s->run_head || (s->stop_seen && !s->stopping))
        return 0;
    s->now = c10k_now_ms();
    t = c10k_wheel_next_ms(&s->wheel, s->now);
    if (s->stopping && !s->aborting && s->conf.grace_ms >= 0 &&
        (t < 0 || s->grace_until - s->now < t))
        t = s->grace_until > s->now ? s->grace_until - s->now : 0;
    return (int)t;
}

/* One look at the descriptors. An iteration of the loop (loopstat.h) runs
 * from epoll_wait's return, through the coroutines it made ready, to the
 * next epoll_wait. */
static int poll_once(c10k_sched_t *s)
{
    int timeout = poll_timeout(s), n;
    int64_t ns;

    c10k_loop_idle(&s->ls);
    n = epoll_wait(s->epfd, s->events, C10K_SCHED_EVENTS, timeout);
    if (n < 0 && errno != EINTR)
        return -errno;
    ns = c10k_now_ns(); /* the one clock read of the wake-up, for both */
    c10k_loop_busy(&s->ls, ns);
    s->now = ns / 1000000;
    for (int i = 0; i < n; i++) {
        if (s->events[i].data.ptr == &stop_tag)
            s->stop_seen = true;
        else
            on_ready(s, s->events[i].data.ptr, s->events[i].events);
    }
    c10k_wheel_expire(&s->wheel, s->now, on_deadline, s);
    /* After the events: a request that arrived with the stop is answered. */
    if (s->stop_seen && !s->stopping)
        begin_stop(s);
    if (s->stopping && !s->aborting && s->conf.grace_ms >= 0 && s->now >= s->grace_until)
        begin_abort(s);
    return 0;
}

int c10k_sched_init(c10k_sched_t *s, const c10k_sched_conf_t *conf)
{
    memset(s, 0, sizeof(*s));
    s->conf = *conf;
    s->run_tail = &s->run_head;
    s->now = c10k_now_ms();
    c10k_wheel_init(&s->wheel, TICK_MS, s->now);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0)
        return -errno;
    if (conf->stop_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stop_tag};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, conf->stop_fd, &ev) < 0) {
            int rc = -errno;
            close(s->epfd);
            s->epfd = -1;
            return rc;
        }
    }
    return 0;
}

int c10k_sched_run(c10k_sched_t *s)
{
    sched_tls = s;
    /* The scheduler's context is the thread that runs it (it may not be the
     * one that initialised it). */
    c10k_ctx_thread(&s->self, s->conf.kind, &s->self_uc);
    while (s->live > 0) {
        int rc;
        run_ready(s);
        if (s->live == 0)
            break;
        rc = poll_once(s);
        if (rc < 0 && !s->aborting) {
            /* Waits would never end: let every coroutine unwind. */
            s->err = rc;
            begin_abort(s);
        }
    }
    sched_tls = NULL;
    return s->err;
}

void c10k_sched_free(c10k_sched_t *s)
{
    c10k_coro_t *co;

    while ((co = s->all) != NULL) {
        c10k_stack_t st = co->stack;
        s->all = co->next;
        c10k_ctx_release(&co->ctx);
        c10k_stack_unmap(&st);
    }
    s->live = 0;
    while ((co = s->free_stacks) != NULL) {
        c10k_stack_t st = co->stack;
        s->free_stacks = co->next_run;
        c10k_stack_unmap(&st);
    }
    s->nfree = 0;
    if (s->epfd >= 0)
        close(s->epfd);
    s->epfd = -1;
}

void c10k_sched_stop(c10k_sched_t *s)
{
    s->stop_seen = true;
}

/* --- coroutines ------------------------------------------------------------------ */

/* Bytes at the top of a stack mapping taken by the coroutine itself (and its
 * saved registers, with ucontext). */
static size_t coro_reserve(c10k_switch_t kind)
{
    size_t r = (sizeof(c10k_coro_t) + 15) & ~(size_t)15;

    if (kind == C10K_SWITCH_UCONTEXT)
        r += (sizeof(ucontext_t) + 15) & ~(size_t)15;
    return r;
}

static c10k_coro_t *coro_alloc(c10k_sched_t *s)
{
    c10k_coro_t *co = s->free_stacks;
    c10k_stack_t st;
    size_t reserve = coro_reserve(s->conf.kind);
    int rc;

    if (co) {
        s->free_stacks = co->next_run;
        s->nfree--;
        st = co->stack;
    } else {
        if (s->conf.stack_size < reserve + 4096) {
            errno = EINVAL;
            return NULL;
        }
        rc = c10k_stack_map(&st, s->conf.stack_size);
        if (rc < 0) {
            errno = -rc;
            return NULL;
        }
        co = (c10k_coro_t *)((char *)st.lo + st.size - reserve);
    }
    memset(co, 0, sizeof(*co));
    co->stack = st;
    return co;
}

int c10k_coro_spawn(c10k_sched_t *s, c10k_coro_fn_t fn, void *arg)
{
    c10k_coro_t *co = coro_alloc(s);
    ucontext_t *uc;
    int rc;

    if (!co)
        return -errno;
    co->sched = s;
    co->fn = fn;
    co->arg = arg;
    c10k_timer_init(&co->timer);
    /* The saved registers (ucontext) sit above the coroutine, the stack
     * proper below it. */
    uc = s->conf.kind == C10K_SWITCH_UCONTEXT
             ? (ucontext_t *)((char *)co + ((sizeof(*co) + 15) & ~(size_t)15))
             : NULL;
    rc = c10k_ctx_make(&co->ctx, s->conf.kind, uc, co->stack.lo,
                       (size_t)((char *)co - (char *)co->stack.lo), coro_main, co);
    if (rc < 0) {
        c10k_stack_t st = co->stack;
        c10k_stack_unmap(&st);
        return rc;
    }
    co->next = s->all;
    if (co->next)
        co->next->pprev = &co->next;
    co->pprev = &s->all;
    s->all = co;
    s->live++;
    enqueue(s, co);
    c10k_stats_inc(&s->counters.spawned);
    return 0;
}

c10k_sched_t *c10k_coro_sched(void)
{
    return sched_tls;
}

/* Park the running coroutine until wake(). deadline < 0: none. */
static c10k_wake_t park(c10k_sched_t *s, c10k_cfd_t *f, uint32_t events, int64_t deadline,
                        bool stoppable)
{
    c10k_coro_t *co = s->current;

    co->streak = 0;
    if (f) {
        f->waiter = co;
        f->want = events;
    }
    co->waiting_on = f;
    co->stoppable = stoppable;
    co->parked = true;
    if (deadline >= 0)
        c10k_timer_arm(&s->wheel, &co->timer, deadline);
    to_scheduler(s, co);
    return (c10k_wake_t)co->wake;
}

void c10k_coro_yield(void)
{
    c10k_sched_t *s = sched_tls;
    c10k_coro_t *co = s->current;

    co->streak = 0;
    enqueue(s, co);
    c10k_stats_inc(&s->counters.yields);
    to_scheduler(s, co);
}

c10k_wake_t c10k_coro_wait(c10k_cfd_t *f, uint32_t events, int64_t deadline, bool stoppable)
{
    c10k_sched_t *s = f->sched;

    if (!s->aborting && is_ready(f, events)) {
        if (++s->current->streak >= C10K_CORO_STREAK)
            c10k_coro_yield(); /* readiness only grows meanwhile */
        if (!s->aborting)
            return C10K_WAKE_READY;
    }
    if (s->aborting)
        return C10K_WAKE_ABORT;
    if (stoppable && s->stopping)
        return C10K_WAKE_STOP;
    if (deadline >= 0 && deadline <= s->now)
        return C10K_WAKE_DEADLINE;
    return park(s, f, events, deadline, stoppable);
}

int c10k_coro_sleep_until(int64_t deadline)
{
    c10k_sched_t *s = sched_tls;

    if (s->aborting)
        return -ECANCELED;
    if (deadline <= c10k_now_ms())
        return 0;
    return park(s, NULL, 0, deadline, false) == C10K_WAKE_ABORT ? -ECANCELED : 0;
}

/* --- descriptors and the blocking calls -------------------------------------------- */

int c10k_cfd_open(c10k_cfd_t *f, c10k_sched_t *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = f};

    memset(f, 0, sizeof(*f));
    f->sched = s;
    f->fd = fd;
    f->writable = true; /* until a send says otherwise */
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

void c10k_cfd_blocked(c10k_cfd_t *f, uint32_t events)
{
    if (events & EPOLLIN)
        f->readable = false;
    if (events & EPOLLOUT)
        f->writable = false;
}

void c10k_cfd_release(c10k_cfd_t *f)
{
    epoll_ctl(f->sched->epfd, EPOLL_CTL_DEL, f->fd, NULL);
}

ssize_t c10k_cfd_recv(c10k_cfd_t *f, void *buf, size_t len)
{
    ssize_t n = recv(f->fd, buf, len, MSG_DONTWAIT);

    if (n < 0) {
        if (errno == EAGAIN)
            c10k_cfd_blocked(f, EPOLLIN);
        return -errno;
    }
    /* Not after RDHUP: the EOF behind the data would raise no new edge. */
    if ((size_t)n < len && !f->rdhup)
        c10k_cfd_blocked(f, EPOLLIN);
    return n;
}

int c10k_coro_accept(c10k_cfd_t *f, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    for (;;) {
        int fd = accept4(f->fd, addr, addrlen, flags);
        if (fd >= 0)
            return fd;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN)
            return -errno;
        c10k_cfd_blocked(f, EPOLLIN);
        if (c10k_coro_wait(f, EPOLLIN, -1, true) != C10K_WAKE_READY)
            return -ECANCELED;
    }
}
