/*
 * test_coro.c - the coroutine core: the context switch (common/ctx.c) and the
 * scheduler with its blocking-style wrappers (common/coro.c).
 *
 *   - thousands of contexts pass control round a ring, each checking after
 *     every switch that its callee-saved registers, its floating-point values
 *     and rounding mode, and its stack are as it left them (both switches);
 *   - a guard page lies below every stack: touching it, or recursing off the
 *     end of a coroutine's stack, is a SIGSEGV;
 *   - the scheduler resumes sleepers at or after their deadline, in deadline
 *     order; a wait ends on readiness, on its deadline, on a stop (stoppable
 *     waits only) and on the abort after the grace period;
 *   - thousands of coroutines ping-pong messages over socketpairs, and a
 *     coroutine that never blocks still lets the others run.
 */
#include "coro.h"
#include "server.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A hung switch or scheduler must fail the test, not hang the suite. (Not
 * Criterion's .timeout: its runner leaks an allocation per timed test, which
 * LeakSanitizer reports.) */
static void watchdog(void)
{
    alarm(60);
}

TestSuite(ctx, .init = watchdog);
TestSuite(sched, .init = watchdog);

/* --- the switch: a ring of contexts ---------------------------------------------- */

#define RING_SIZE   2000
#define RING_ROUNDS 20
#define RING_STACK  (32 * 1024)
#define PATTERN_LEN 700

#if defined(__x86_64__)
#define FP_REG "+x"
#elif defined(__aarch64__)
#define FP_REG "+w" /* d8-d15 are callee-saved there */
#else
#define FP_REG "+m"
#endif

/* Make the values opaque to the optimiser before a switch and demand them in
 * registers after: they must survive the switch in callee-saved registers or
 * in stack slots, and the switch must keep both. */
#define KEEP_ALL()                                                                                 \
    do {                                                                                           \
        __asm__ volatile(""                                                                        \
                         : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6),   \
                           "+r"(r7));                                                              \
        __asm__ volatile(""                                                                        \
                         : FP_REG(f0), FP_REG(f1), FP_REG(f2), FP_REG(f3), FP_REG(f4), FP_REG(f5), \
                           FP_REG(f6), FP_REG(f7));                                                \
    } while (0)

typedef struct {
    c10k_ctx_t ctx;
    c10k_stack_t stack;
    ucontext_t uc;
    int id;
    int rounds;
    int errors;
} ring_t;

static ring_t *ring;
static c10k_ctx_t ring_main;
static ucontext_t ring_main_uc;
static const int round_modes[4] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
static double third_sse[4];
static long double third_x87[4];

static double third(void)
{
    volatile double a = 1.0, b = 3.0;
    return a / b;
}

static long double third_long(void)
{
    volatile long double a = 1.0L, b = 3.0L;
    return a / b;
}

/* The next context round the ring; the last one hands back to main. */
static c10k_ctx_t *ring_next(const ring_t *me)
{
    return me->id + 1 < RING_SIZE ? &ring[me->id + 1].ctx : &ring_main;
}

static int check_pattern(const unsigned char *p, int id)
{
    for (int i = 0; i < PATTERN_LEN; i++)
        if (p[i] != (unsigned char)(id * 7 + i))
            return 1;
    return 0;
}

static int check_fp_state(int id)
{
    return fegetround() != round_modes[id % 4] || third() != third_sse[id % 4] ||
           third_long() != third_x87[id % 4];
}

static void ring_body(void *arg)
{
    ring_t *me = arg;
    /* First, so the values below are computed in the mode they are checked in. */
    int mode_set = fesetround(round_modes[me->id % 4]);
    uint64_t k = (uint64_t)me->id * UINT64_C(0x9E3779B97F4A7C15);
    uint64_t r0 = k, r1 = k ^ 1, r2 = k + 2, r3 = k * 3, r4 = ~k, r5 = k >> 5, r6 = k << 6,
             r7 = k ^ UINT64_C(0x5555555555555555);
    double f0 = me->id + 0.5, f1 = me->id * 2.0, f2 = -me->id, f3 = me->id / 4.0,
           f4 = 1e10 + me->id, f5 = me->id - 1e-3, f6 = me->id * me->id, f7 = 7.0 / (me->id + 1);
    unsigned char pattern[PATTERN_LEN];

    me->errors += mode_set != 0;
    for (int i = 0; i < PATTERN_LEN; i++)
        pattern[i] = (unsigned char)(me->id * 7 + i);
    for (int r = 0; r < RING_ROUNDS; r++) {
        KEEP_ALL();
        c10k_ctx_swap(&me->ctx, ring_next(me));
        KEEP_ALL();
        me->errors += r0 != k || r1 != (k ^ 1) || r2 != k + 2 || r3 != k * 3 || r4 != ~k ||
                      r5 != k >> 5 || r6 != k << 6 || r7 != (k ^ UINT64_C(0x5555555555555555));
        me->errors += f0 != me->id + 0.5 || f1 != me->id * 2.0 || f2 != -me->id ||
                      f3 != me->id / 4.0 || f4 != 1e10 + me->id || f5 != me->id - 1e-3 ||
                      f6 != (double)me->id * me->id || f7 != 7.0 / (me->id + 1);
        me->errors += check_pattern(pattern, me->id);
        me->errors += check_fp_state(me->id);
        me->rounds++;
    }
    c10k_ctx_exit(&me->ctx, ring_next(me));
}

static void ring_run(c10k_switch_t kind)
{
    int errors = 0;

    if (kind == C10K_SWITCH_ASM && !c10k_ctx_have_asm())
        cr_skip_test("no hand-written switch on this architecture");
    for (int m = 0; m < 4; m++) {
        fesetround(round_modes[m]);
        third_sse[m] = third();
        third_x87[m] = third_long();
    }
    fesetround(FE_TONEAREST);
    cr_assert(third_sse[1] != third_sse[2], "rounding modes must give different thirds");
    ring = calloc(RING_SIZE, sizeof(*ring));
    cr_assert_not_null(ring);
    c10k_ctx_thread(&ring_main, kind, &ring_main_uc);
    for (int i = 0; i < RING_SIZE; i++) {
        ring[i].id = i;
        cr_assert_eq(c10k_stack_map(&ring[i].stack, RING_STACK), 0);
        cr_assert_eq(c10k_ctx_make(&ring[i].ctx, kind, &ring[i].uc, ring[i].stack.lo,
                                   ring[i].stack.size, ring_body, &ring[i]),
                     0);
    }
    /* Each swap from main runs one lap: every context once, in order. */
    for (int r = 0; r <= RING_ROUNDS; r++) {
        c10k_ctx_swap(&ring_main, &ring[0].ctx);
        cr_assert_eq(fegetround(), FE_TONEAREST, "main's rounding mode changed");
    }
    for (int i = 0; i < RING_SIZE; i++) {
        cr_assert_eq(ring[i].rounds, RING_ROUNDS, "context %d ran %d rounds", i, ring[i].rounds);
        errors += ring[i].errors;
        c10k_ctx_release(&ring[i].ctx);
        c10k_stack_unmap(&ring[i].stack);
    }
    free(ring);
    cr_assert_eq(errors, 0, "%d checks failed after a switch", errors);
}

Test(ctx, ring_preserves_registers_fp_and_stack_asm)
{
    ring_run(C10K_SWITCH_ASM);
}

Test(ctx, ring_preserves_registers_fp_and_stack_ucontext)
{
    ring_run(C10K_SWITCH_UCONTEXT);
}

/* --- the guard page --------------------------------------------------------------- */

/* The default action for SIGSEGV, set with the raw system call: under ASan,
 * sigaction() is intercepted and ASan's own handler would turn the fault into
 * a report and exit(1). */
static void segv_default(void)
{
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        uint64_t mask;
    } sa = {SIG_DFL, 0, NULL, 0};

    syscall(SYS_rt_sigaction, SIGSEGV, &sa, NULL, sizeof(sa.mask));
}

/* Run fn in a child; returns its wait status. */
static int in_child(void (*fn)(void))
{
    int status;
    pid_t pid = fork();

    cr_assert(pid >= 0);
    if (pid == 0) {
        segv_default();
        fn();
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static c10k_stack_t guard_stack;

static void touch_top_and_bottom(void)
{
    volatile char *lo = guard_stack.lo;

    lo[0] = 1;
    lo[guard_stack.size - 1] = 1;
}

static void touch_below(void)
{
    volatile char *lo = guard_stack.lo;

    lo[-1] = 1;
}

Test(ctx, guard_page_below_stack)
{
    int st;

    cr_assert_eq(c10k_stack_map(&guard_stack, 16 * 1024), 0);
    st = in_child(touch_top_and_bottom);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the stack itself must be writable");
    st = in_child(touch_below);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
              "a write just below the stack must fault (status %#x)", st);
    c10k_stack_unmap(&guard_stack);
}

static c10k_ctx_t overflow_main, overflow_ctx;

static volatile int recurse_limit = 1 << 30;

/* Each level takes 1 KiB of stack; nothing stops it but the guard page. */
static __attribute__((noinline)) int recurse(int depth)
{
    volatile char frame[1024];

    frame[0] = (char)depth;
    if (depth >= recurse_limit)
        return 0;
    return recurse(depth + 1) + frame[0];
}

static void overflow_body(void *arg)
{
    (void)arg;
    recurse(0);
}

static ucontext_t overflow_main_uc, overflow_uc;

static void run_overflow(void)
{
    c10k_switch_t kind = c10k_ctx_have_asm() ? C10K_SWITCH_ASM : C10K_SWITCH_UCONTEXT;

    c10k_ctx_thread(&overflow_main, kind, &overflow_main_uc);
    if (c10k_ctx_make(&overflow_ctx, kind, &overflow_uc, guard_stack.lo, guard_stack.size,
                      overflow_body, NULL) < 0)
        _exit(3);
    c10k_ctx_swap(&overflow_main, &overflow_ctx);
    _exit(4); /* never: the coroutine cannot come back */
}

Test(ctx, stack_overflow_hits_the_guard)
{
    int st;

    cr_assert_eq(c10k_stack_map(&guard_stack, 16 * 1024), 0);
    st = in_child(run_overflow);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
              "running off the stack must fault (status %#x)", st);
    c10k_stack_unmap(&guard_stack);
}

/* --- the scheduler: deadlines ------------------------------------------------------- */

#define SLEEPERS 40
#define STEP_MS  5

typedef struct {
    int64_t deadline;
    int64_t woke;
    int order;
} sleeper_t;

static sleeper_t sleepers[SLEEPERS];
static int woke_count;

static void sleeper_body(void *arg)
{
    sleeper_t *sl = arg;

    cr_assert_eq(c10k_coro_sleep_until(sl->deadline), 0);
    sl->woke = c10k_now_ms();
    sl->order = woke_count++;
}

static void sched_setup(c10k_sched_t *s, c10k_switch_t kind, int stop_fd, int grace_ms)
{
    c10k_sched_conf_t conf = {
        .kind = kind, .stack_size = 64 * 1024, .stop_fd = stop_fd, .grace_ms = grace_ms};

    if (kind == C10K_SWITCH_ASM && !c10k_ctx_have_asm())
        conf.kind = C10K_SWITCH_UCONTEXT;
    cr_assert_eq(c10k_sched_init(s, &conf), 0);
}

Test(sched, sleepers_wake_at_or_after_deadline_in_order)
{
    static c10k_sched_t s;
    int64_t start = c10k_now_ms() + 20;

    sched_setup(&s, C10K_SWITCH_ASM, -1, -1);
    woke_count = 0;
    /* Spawned in a scrambled order: 7 is coprime with 40. */
    for (int i = 0; i < SLEEPERS; i++) {
        int slot = (i * 7) % SLEEPERS;
        sleepers[slot].deadline = start + slot * STEP_MS;
        cr_assert_eq(c10k_coro_spawn(&s, sleeper_body, &sleepers[slot]), 0);
    }
    cr_assert_eq(c10k_sched_run(&s), 0);
    for (int i = 0; i < SLEEPERS; i++) {
        cr_assert_geq(sleepers[i].woke, sleepers[i].deadline, "sleeper %d woke early", i);
        cr_assert_eq(sleepers[i].order, i, "sleeper %d woke as number %d", i, sleepers[i].order);
    }
    cr_assert_eq(atomic_load(&s.counters.wake_deadline), SLEEPERS);
    cr_assert_eq(atomic_load(&s.counters.spawned), SLEEPERS);
    /* In and out of every sleeper twice: start, sleep, wake, end. */
    cr_assert_eq(atomic_load(&s.counters.switches), 4 * SLEEPERS);
    c10k_sched_free(&s);
}

/* --- the scheduler: how waits end ---------------------------------------------------- */

typedef struct {
    c10k_cfd_t f;
    int fd;
    int64_t deadline;
    bool stoppable;
    c10k_wake_t got;
    int64_t at;
    ssize_t n;
    char buf[64];
} waiter_t;

static void waiter_body(void *arg)
{
    waiter_t *w = arg;

    cr_assert_eq(c10k_cfd_open(&w->f, c10k_coro_sched(), w->fd), 0);
    w->got = c10k_coro_wait(&w->f, EPOLLIN, w->deadline, w->stoppable);
    w->at = c10k_now_ms();
}

/* Read once, waiting for the kernel after -EAGAIN: -ETIMEDOUT at the deadline. */
static void recv_body(void *arg)
{
    waiter_t *w = arg;

    cr_assert_eq(c10k_cfd_open(&w->f, c10k_coro_sched(), w->fd), 0);
    while ((w->n = c10k_cfd_recv(&w->f, w->buf, sizeof(w->buf))) == -EAGAIN) {
        w->got = c10k_coro_wait(&w->f, EPOLLIN, w->deadline, false);
        if (w->got != C10K_WAKE_READY) {
            w->n = -ETIMEDOUT;
            break;
        }
    }
    w->at = c10k_now_ms();
}

static int writer_fd;

static void writer_body(void *arg)
{
    (void)arg;
    c10k_coro_sleep_until(c10k_now_ms() + 30);
    cr_assert_eq(write(writer_fd, "hello", 5), 5);
}

static void nonblocking_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

Test(sched, wait_ends_on_ready_or_deadline)
{
    static c10k_sched_t s;
    static waiter_t late, ready, got_data, timed_out;
    int a[2], b[2], c[2], d[2];
    int64_t t0 = c10k_now_ms();

    sched_setup(&s, C10K_SWITCH_ASM, -1, -1);
    nonblocking_pair(a), nonblocking_pair(b), nonblocking_pair(c), nonblocking_pair(d);
    late = (waiter_t){.fd = a[0], .deadline = t0 + 50};
    ready = (waiter_t){.fd = b[0], .deadline = t0 + 5000};
    got_data = (waiter_t){.fd = c[0], .deadline = t0 + 5000};
    timed_out = (waiter_t){.fd = d[0], .deadline = t0 + 40};
    cr_assert_eq(write(b[1], "x", 1), 1);
    writer_fd = c[1];
    cr_assert_eq(c10k_coro_spawn(&s, waiter_body, &late), 0);
    cr_assert_eq(c10k_coro_spawn(&s, waiter_body, &ready), 0);
    cr_assert_eq(c10k_coro_spawn(&s, recv_body, &got_data), 0);
    cr_assert_eq(c10k_coro_spawn(&s, recv_body, &timed_out), 0);
    cr_assert_eq(c10k_coro_spawn(&s, writer_body, NULL), 0);
    cr_assert_eq(c10k_sched_run(&s), 0);
    cr_assert_eq(late.got, C10K_WAKE_DEADLINE);
    cr_assert_geq(late.at, late.deadline);
    cr_assert_eq(ready.got, C10K_WAKE_READY);
    cr_assert_lt(ready.at, ready.deadline);
    cr_assert_eq(got_data.n, 5);
    cr_assert_eq(memcmp(got_data.buf, "hello", 5), 0);
    cr_assert_eq(timed_out.n, -ETIMEDOUT);
    cr_assert_geq(timed_out.at, timed_out.deadline);
    for (int i = 0; i < 2; i++)
        close(a[i]), close(b[i]), close(c[i]), close(d[i]);
    c10k_sched_free(&s);
}

static c10k_sched_t *stop_sched;
static int64_t stopped_at;

static void stopper_body(void *arg)
{
    (void)arg;
    c10k_coro_sleep_until(c10k_now_ms() + 20);
    stopped_at = c10k_now_ms();
    c10k_sched_stop(stop_sched);
}

Test(sched, stop_wakes_stoppable_waits_then_abort_ends_the_rest)
{
    static c10k_sched_t s;
    static waiter_t idle, busy;
    int a[2], b[2];
    int64_t t0 = c10k_now_ms();

    sched_setup(&s, C10K_SWITCH_ASM, -1, 100);
    stop_sched = &s;
    nonblocking_pair(a), nonblocking_pair(b);
    idle = (waiter_t){.fd = a[0], .deadline = -1, .stoppable = true};
    busy = (waiter_t){.fd = b[0], .deadline = t0 + 10000, .stoppable = false};
    cr_assert_eq(c10k_coro_spawn(&s, waiter_body, &idle), 0);
    cr_assert_eq(c10k_coro_spawn(&s, waiter_body, &busy), 0);
    cr_assert_eq(c10k_coro_spawn(&s, stopper_body, NULL), 0);
    cr_assert_eq(c10k_sched_run(&s), 0);
    cr_assert_eq(idle.got, C10K_WAKE_STOP);
    cr_assert_eq(busy.got, C10K_WAKE_ABORT);
    cr_assert_geq(idle.at, stopped_at);
    cr_assert_geq(busy.at, stopped_at + 100,
                  "the abort came %lld ms after the stop, within the grace",
                  (long long)(busy.at - stopped_at));
    cr_assert(s.stopping && s.aborting);
    for (int i = 0; i < 2; i++)
        close(a[i]), close(b[i]);
    c10k_sched_free(&s);
}

Test(sched, stop_descriptor_stops)
{
    static c10k_sched_t s;
    static waiter_t idle;
    int a[2], efd[2];

    nonblocking_pair(a), nonblocking_pair(efd);
    sched_setup(&s, C10K_SWITCH_ASM, efd[0], 1000);
    idle = (waiter_t){.fd = a[0], .deadline = -1, .stoppable = true};
    cr_assert_eq(c10k_coro_spawn(&s, waiter_body, &idle), 0);
    cr_assert_eq(write(efd[1], "s", 1), 1);
    cr_assert_eq(c10k_sched_run(&s), 0);
    cr_assert_eq(idle.got, C10K_WAKE_STOP);
    cr_assert(!s.aborting);
    for (int i = 0; i < 2; i++)
        close(a[i]), close(efd[i]);
    c10k_sched_free(&s);
}

/* --- the scheduler: many coroutines talking ------------------------------------------- */

#define PAIRS    1000
#define MESSAGES 50

typedef struct {
    int fd;
    bool server;
    int errors;
    int done;
} talker_t;

static talker_t *talkers;

/* A whole message in or out, as a blocking call would move it. */
static bool move_all(c10k_cfd_t *f, void *p, size_t len, bool out, int64_t deadline)
{
    char *at = p;

    while (len > 0) {
        ssize_t n =
            out ? send(f->fd, at, len, MSG_DONTWAIT | MSG_NOSIGNAL) : c10k_cfd_recv(f, at, len);
        if (n < 0 && out && errno == EAGAIN) {
            c10k_cfd_blocked(f, EPOLLOUT);
            n = -EAGAIN;
        }
        if (n == -EAGAIN) {
            if (c10k_coro_wait(f, out ? EPOLLOUT : EPOLLIN, deadline, false) != C10K_WAKE_READY)
                return false;
            continue;
        }
        if (n <= 0)
            return false;
        at += n;
        len -= (size_t)n;
    }
    return true;
}

/* A client sends i and waits for i + 1; its server answers each message
 * with its successor. Every recv blocks, so every message is a switch. */
static void talker_body(void *arg)
{
    talker_t *t = arg;
    c10k_cfd_t f;
    uint32_t v = 0;
    int64_t deadline = c10k_now_ms() + 20000;

    cr_assert_eq(c10k_cfd_open(&f, c10k_coro_sched(), t->fd), 0);
    for (int i = 0; i < MESSAGES; i++) {
        if (!t->server) {
            v = (uint32_t)(2 * i);
            t->errors += !move_all(&f, &v, sizeof(v), true, deadline);
        }
        t->errors += !move_all(&f, &v, sizeof(v), false, deadline);
        if (t->server) {
            t->errors += v != (uint32_t)(2 * i);
            v++;
            t->errors += !move_all(&f, &v, sizeof(v), true, deadline);
        } else {
            t->errors += v != (uint32_t)(2 * i + 1);
        }
        t->done++;
    }
    close(f.fd);
}

/* Two descriptors per pair, more than the usual soft limit of 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 2 * PAIRS + 64)
        cr_skip_test("RLIMIT_NOFILE hard limit %lu is below %d", (unsigned long)rl.rlim_max,
                     2 * PAIRS + 64);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void talk(c10k_switch_t kind)
{
    static c10k_sched_t s;
    int errors = 0;

    raise_nofile();
    sched_setup(&s, kind, -1, -1);
    talkers = calloc(2 * PAIRS, sizeof(*talkers));
    cr_assert_not_null(talkers);
    for (int i = 0; i < PAIRS; i++) {
        int sv[2];
        nonblocking_pair(sv);
        talkers[2 * i] = (talker_t){.fd = sv[0], .server = false};
        talkers[2 * i + 1] = (talker_t){.fd = sv[1], .server = true};
    }
    for (int i = 0; i < 2 * PAIRS; i++)
        cr_assert_eq(c10k_coro_spawn(&s, talker_body, &talkers[i]), 0);
    cr_assert_eq(c10k_sched_run(&s), 0);
    for (int i = 0; i < 2 * PAIRS; i++) {
        errors += talkers[i].errors;
        cr_assert_eq(talkers[i].done, MESSAGES);
    }
    cr_assert_eq(errors, 0);
    cr_assert_geq(atomic_load(&s.counters.wake_ready), (unsigned long long)PAIRS * MESSAGES);
    free(talkers);
    c10k_sched_free(&s);
}

Test(sched, thousands_of_coroutines_ping_pong_asm)
{
    talk(C10K_SWITCH_ASM);
}

Test(sched, thousands_of_coroutines_ping_pong_ucontext)
{
    talk(C10K_SWITCH_UCONTEXT);
}

/* --- fairness and stack reuse ---------------------------------------------------------- */

static int spins, other_ran_at = -1;

static void spinner_body(void *arg)
{
    int *fd = arg;
    c10k_cfd_t f;

    cr_assert_eq(c10k_cfd_open(&f, c10k_coro_sched(), *fd), 0);
    f.readable = true; /* as if the kernel said so: every wait returns at once */
    for (spins = 0; spins < 10 * C10K_CORO_STREAK; spins++)
        cr_assert_eq(c10k_coro_wait(&f, EPOLLIN, -1, false), C10K_WAKE_READY);
}

static void other_body(void *arg)
{
    (void)arg;
    other_ran_at = spins;
}

Test(sched, a_coroutine_that_never_blocks_still_yields)
{
    static c10k_sched_t s;
    int sv[2];

    sched_setup(&s, C10K_SWITCH_ASM, -1, -1);
    nonblocking_pair(sv);
    cr_assert_eq(c10k_coro_spawn(&s, spinner_body, &sv[0]), 0);
    cr_assert_eq(c10k_coro_spawn(&s, other_body, NULL), 0);
    cr_assert_eq(c10k_sched_run(&s), 0);
    cr_assert(other_ran_at >= 0 && other_ran_at <= C10K_CORO_STREAK,
              "the other coroutine ran after %d waits", other_ran_at);
    cr_assert_geq(atomic_load(&s.counters.yields), 9);
    close(sv[0]), close(sv[1]);
    c10k_sched_free(&s);
}

static int chain_left;

/* Each coroutine starts the next as it ends: far more coroutines than the
 * stack cache holds go through it, and each finds a clean stack. */
static void chain_body(void *arg)
{
    char scratch[2048];

    (void)arg;
    memset(scratch, chain_left & 0xff, sizeof(scratch));
    __asm__ volatile("" : : "r"(scratch) : "memory");
    if (--chain_left > 0)
        cr_assert_eq(c10k_coro_spawn(c10k_coro_sched(), chain_body, NULL), 0);
    c10k_coro_yield();
}

Test(sched, stacks_are_reused_and_released)
{
    static c10k_sched_t s;

    sched_setup(&s, C10K_SWITCH_UCONTEXT, -1, -1);
    chain_left = 5000;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(c10k_coro_spawn(&s, chain_body, NULL), 0);
    cr_assert_eq(c10k_sched_run(&s), 0);
    cr_assert_eq(s.live, 0);
    cr_assert_leq(s.nfree, 64);
    c10k_sched_free(&s);
}
