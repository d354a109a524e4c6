/*
 * servers/coro/coro.c - cooperative user-level threads (M:N): a coroutine
 * per connection, many coroutines per kernel thread.
 *
 * What it is
 *   Thread-style code at event-loop cost. Every connection runs the same
 *   straight-line loop as in threaded, c10k_serve_conn() in common/net.c:
 *   read the request, handle it, send the plan, repeat. But each connection
 *   is a coroutine with a small stack of its own, and where threaded would
 *   sleep in the kernel, the coroutine parks itself and switches to its
 *   worker's scheduler (common/coro.h), which runs another coroutine that is
 *   ready, or waits in epoll_wait for the next descriptor or deadline. One
 *   scheduler per worker thread owns an epoll instance, a run queue and the
 *   deadlines; each socket is registered once, edge-triggered. Only the three
 *   waiting primitives differ from threaded's:
 *
 *       threaded (c10k_serve_blocking)      coro (this file)
 *       poll(fd, stop_fd, deadline)         c10k_coro_wait(EPOLLIN, deadline, stop)
 *       recv(fd)                            c10k_cfd_recv(): recv(MSG_DONTWAIT)
 *       send()/sendfile() until done,       c10k_send_plan_nb() until EAGAIN, then
 *         SO_SNDTIMEO                         c10k_coro_wait(EPOLLOUT, send clock)
 *
 *   Capriccio (SOSP '03) ran 100,000 such threads; "Why events are a bad
 *   idea" (HotOS '03) argued they give event-loop performance without
 *   turning the code inside out. lwan serves each connection from a
 *   coroutine, and Go's runtime parks goroutines on its netpoller the same way.
 *
 * Switching (--switch)
 *   asm (default): a dozen instructions (common/ctx.c) that push the
 *   callee-saved registers, swap the stack pointer and pop; on x86-64 also
 *   the MXCSR and x87 control words, which the ABI makes callee-saved. No
 *   system call. ucontext: glibc's swapcontext(3), which also saves and
 *   restores the signal mask: one rt_sigprocmask system call per switch, two
 *   per wait (park and resume). The bench shows the difference as syscalls
 *   and CPU per request.
 *
 * What it costs (the bench shows each of these as a number)
 *   - Two user-level switches per wait that blocks (to the scheduler and
 *     back), counted in the stats file (--stats-file: user_switches, and the
 *     resumes by cause). A wait for something already known to be ready does
 *     not switch, so under load a connection answers what epoll reported
 *     without leaving its loop. The kernel sees one thread that sleeps only
 *     in epoll_wait: voluntary context switches per request near zero, as in
 *     the event loops.
 *   - A stack per connection: --stack-size (64 KiB default, 16 KiB allowed)
 *     of address space, mmap'd with MAP_NORESERVE and a guard page below it,
 *     of which only the pages a connection touches cost memory: the handler
 *     runs on it, with its 8 KiB path buffer, so a few pages
 *     (tests/system/many_conns.py prints the resident memory per idle
 *     connection). The 42 KiB request and head buffers are lent from a
 *     per-worker pool only while a request is under way, as in epoll, so an
 *     idle keep-alive client costs its touched stack pages. Under ASan or
 *     TSan stacks are four times larger (ctx.h). Each stack is two kernel
 *     mappings (the guard splits it), so
 *     vm.max_map_count (65530 by default) caps a process at about 32,000
 *     coroutines. Finished stacks are kept for reuse (64 per worker).
 *   - Cooperative: a coroutine runs until it waits, so one that never has to
 *     wait (a client pipelining requests faster than they are answered) would
 *     keep the others from running. The scheduler makes it yield after 32
 *     waits in a row that did not block.
 *
 * Stopping
 *   The workers run under common/workers.c. On SIGTERM, stop_fd becomes
 *   readable; each scheduler then wakes every coroutine whose wait is
 *   stoppable: the acceptor (which takes in its backlog and closes the
 *   listener) and the connections waiting idle, which ask conn.h (idle ones
 *   close, the rest finish their response with Connection: close). At the
 *   end of --grace, every wait still pending returns "abort" and the
 *   coroutines unwind, closing what they hold.
 *
 * What it needs
 *   Linux epoll, sendfile; x86-64 or aarch64 for the hand-written switch
 *   (elsewhere only --switch ucontext). Under AddressSanitizer and
 *   ThreadSanitizer every switch is announced to the sanitizer (ctx.c).
 *
 * How to run it
 *   c10k serve coro --root DIR --port 8080 --workers 2
 *   c10k serve coro --root DIR --switch ucontext --stack-size 16 --stats-file stats.json
 */
#include "cli.h"
#include "conn.h"
#include "coro.h"
#include "stats.h"
#include "workers.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_PAUSE_MS 100 /* after EMFILE/ENFILE */

static struct {
    size_t stack_size;  /* bytes */
    c10k_switch_t kind; /* --switch */
} opts = {64 * 1024, C10K_SWITCH_ASM};

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} peer_t;

/* One worker thread: its scheduler and what its coroutines share. */
typedef struct worker_s {
    c10k_server_t *srv;
    int id;
    int listen_fd;      /* -1 once closed */
    c10k_sched_t sched; /* epoll, run queue, deadlines */
    c10k_iopool_t pool; /* request buffers, lent while a request is under way */
    bool accept_warned;
    bool counting; /* the counters are in the stats file */
} worker_t;

/* A connection handed from the acceptor to its coroutine. */
typedef struct accepted_s {
    worker_t *w;
    int fd;
    peer_t peer;
} accepted_t;

/* --- how a connection waits --------------------------------------------------- */

/* Sleep (as a coroutine) until there is something to read, the deadline, or
 * a stop. */
static int coro_readable(void *ctx, int fd, const c10k_conn_t *c)
{
    char byte;

    switch (c10k_coro_wait(ctx, EPOLLIN, c->deadline, !c->stopping)) {
    case C10K_WAKE_READY:
        return 1;
    case C10K_WAKE_DEADLINE:
        return 0;
    case C10K_WAKE_STOP:
        /* A request may have come with the stop, its edge not yet seen:
         * answer it rather than reset it. */
        return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1 ? 1 : -ECANCELED;
    default:
        return -ECONNABORTED; /* the grace period is over */
    }
}

static ssize_t coro_recv(void *ctx, int fd, void *buf, size_t len)
{
    (void)fd;
    return c10k_cfd_recv(ctx, buf, len);
}

/* C10K_SEND: as much of the plan as the socket takes; then, if it is full,
 * sleep until it is writable again or the send clock runs out. */
static c10k_next_t coro_send(void *ctx, int fd, c10k_conn_t *c)
{
    c10k_status_t st = c10k_send_plan_nb(fd, &c->io->resp, c->io->head, &c->io->sent);
    c10k_next_t next;

    if (st == C10K_AGAIN)
        c10k_cfd_blocked(ctx, EPOLLOUT);
    next = c10k_conn_sent(c, st, c10k_now_ms());
    if (st != C10K_AGAIN)
        return next;
    switch (c10k_coro_wait(ctx, EPOLLOUT, c->deadline, false)) {
    case C10K_WAKE_READY:
        return next;
    case C10K_WAKE_DEADLINE:
        return c10k_conn_timeout(c, c10k_now_ms());
    default:
        return c10k_conn_sent(c, C10K_ERROR, c10k_now_ms());
    }
}

static const c10k_waits_t coro_waits = {coro_readable, coro_recv, coro_send};

/* --- coroutine per connection ---------------------------------------------------- */

static void connection_coro(void *arg)
{
    accepted_t a = *(accepted_t *)arg;
    c10k_cfd_t f;

    free(arg);
    if (c10k_cfd_open(&f, &a.w->sched, a.fd) == 0)
        c10k_serve_conn(a.w->srv, a.fd, &a.peer.sa, &a.w->pool, &coro_waits, &f);
    else
        close(a.fd);
}

static int spawn_connection(worker_t *w, int fd, const peer_t *peer)
{
    accepted_t *a = malloc(sizeof(*a));
    int rc;

    if (!a)
        return -ENOMEM;
    *a = (accepted_t){w, fd, *peer};
    rc = c10k_coro_spawn(&w->sched, connection_coro, a);
    if (rc < 0)
        free(a);
    return rc;
}

/* --- acceptor ------------------------------------------------------------------- */

static void accept_failed(worker_t *w, int err)
{
    switch (err) {
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
        /* Out of descriptors: the backlog keeps the clients; retrying at once
         * would spin. Wait for a connection to close one. */
        if (!w->accept_warned)
            c10k_warn(w->srv, "worker %d: accept: %s; pausing accepts for %d ms at a time", w->id,
                      strerror(-err), ACCEPT_PAUSE_MS);
        w->accept_warned = true; /* once per shortage */
        c10k_coro_sleep_until(c10k_now_ms() + ACCEPT_PAUSE_MS);
        break;
    default: /* EPROTO, EPERM: that client is gone; the next one may not be */
        c10k_coro_yield();
        break;
    }
}

/* Accept without waiting, as long as there is someone: on a stop, clients
 * already in the backlog have connected and are served like the others. */
static void accept_backlog(worker_t *w)
{
    for (;;) {
        peer_t peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(w->listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0)
            return;
        if (spawn_connection(w, fd, &peer) < 0)
            close(fd);
    }
}

static void acceptor_coro(void *arg)
{
    worker_t *w = arg;
    c10k_cfd_t lf;
    int rc = c10k_cfd_open(&lf, &w->sched, w->listen_fd);

    if (rc < 0) {
        c10k_warn(w->srv, "worker %d: cannot watch the listener: %s", w->id, strerror(-rc));
        kill(getpid(), SIGTERM); /* the main thread's sigwait turns it into a stop */
        return;
    }
    while (!atomic_load(&w->srv->stopping)) {
        peer_t peer;
        socklen_t len = sizeof(peer);
        int fd = c10k_coro_accept(&lf, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -ECANCELED)
            break;
        if (fd < 0) {
            accept_failed(w, fd);
            continue;
        }
        w->accept_warned = false;
        if (spawn_connection(w, fd, &peer) < 0) {
            /* No memory or no mapping left: refuse this client, keep serving. */
            c10k_warn(w->srv, "worker %d: cannot start a coroutine; closing a connection", w->id);
            close(fd);
            c10k_coro_sleep_until(c10k_now_ms() + 10);
        }
    }
    accept_backlog(w);
    c10k_cfd_release(&lf); /* lf lives on this stack, which is about to go */
    c10k_worker_listener_close(w->srv, w->listen_fd);
    w->listen_fd = -1;
}

/* --- workers ------------------------------------------------------------------------ */

/* The scheduler's counters in the stats file, summed over the workers. */
static void counters_publish(worker_t *w, bool on)
{
    c10k_sched_counters_t *k = &w->sched.counters;
    static const char *const names[] = {"user_switches",    "coroutines",   "resumes_ready",
                                        "resumes_deadline", "resumes_stop", "yields"};
    atomic_ullong *const ptrs[] = {&k->switches,      &k->spawned,   &k->wake_ready,
                                   &k->wake_deadline, &k->wake_stop, &k->yields};

    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) {
        if (on)
            c10k_stats_add(names[i], ptrs[i]);
        else
            c10k_stats_remove(ptrs[i]);
    }
    if (on) /* the loop's stalls (loopstat.h), as every event loop counts them */
        c10k_loopstat_publish(&w->sched.ls);
    else
        c10k_loopstat_unpublish(&w->sched.ls);
    w->counting = on;
}

static int worker_init(void *arg, c10k_server_t *srv, int id)
{
    worker_t *w = arg;
    c10k_sched_conf_t conf = {
        .kind = opts.kind,
        .stack_size = opts.stack_size,
        .stop_fd = srv->stop_fd,
        .grace_ms = srv->cfg.grace_ms,
    };
    int rc;

    w->srv = srv;
    w->id = id;
    w->listen_fd = w->sched.epfd = -1;
    rc = c10k_sched_init(&w->sched, &conf);
    if (rc < 0)
        goto fail;
    w->listen_fd = c10k_worker_listener(srv, id, false);
    if (w->listen_fd < 0) {
        rc = w->listen_fd;
        goto fail;
    }
    rc = c10k_coro_spawn(&w->sched, acceptor_coro, w);
    if (rc < 0)
        goto fail;
    counters_publish(w, true);
    return 0;
fail:
    c10k_warn(srv, "worker %d: %s", id, strerror(-rc));
    return rc;
}

/* Runs the coroutines until the last one ends: after a stop, once every
 * connection has finished or --grace has aborted it. */
static int worker_serve(void *arg)
{
    worker_t *w = arg;
    int rc = c10k_sched_run(&w->sched);

    if (rc < 0)
        c10k_warn(w->srv, "worker %d: epoll_wait: %s", w->id, strerror(-rc));
    return rc;
}

static void worker_fini(void *arg)
{
    worker_t *w = arg;

    if (w->counting)
        counters_publish(w, false);
    c10k_worker_listener_close(w->srv, w->listen_fd);
    c10k_sched_free(&w->sched);
    c10k_iopool_free(&w->pool);
}

static const c10k_worker_ops_t worker_ops = {
    .size = sizeof(worker_t),
    .init = worker_init,
    .serve = worker_serve,
    .fini = worker_fini,
};

static int coro_run(c10k_server_t *srv)
{
    return c10k_run_workers(srv, &worker_ops);
}

/* --- the model ---------------------------------------------------------------------- */

static int coro_set_opt(const char *name, const char *value)
{
    long kib;

    if (strcmp(name, "switch") == 0) {
        if (strcmp(value, "ucontext") == 0)
            opts.kind = C10K_SWITCH_UCONTEXT;
        else if (strcmp(value, "asm") == 0 && c10k_ctx_have_asm())
            opts.kind = C10K_SWITCH_ASM;
        else {
            fprintf(stderr, "c10k serve: --switch '%s': want %sucontext\n", value,
                    c10k_ctx_have_asm() ? "asm or " : "(asm is for x86-64 and aarch64) ");
            return -EINVAL;
        }
        return 0;
    }
    if (c10k_parse_uint("c10k serve", name, value, 16, 65536, &kib) < 0)
        return -EINVAL;
    opts.stack_size = (size_t)kib * 1024;
    return 0;
}

static int coro_probe(void)
{
    /* The default, on an architecture without the hand-written switch. */
    if (opts.kind == C10K_SWITCH_ASM && !c10k_ctx_have_asm())
        opts.kind = C10K_SWITCH_UCONTEXT;
    return 0;
}

static void coro_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "switch=%s stack=%zuKiB", opts.kind == C10K_SWITCH_ASM ? "asm" : "ucontext",
             opts.stack_size / 1024);
}

static const c10k_opt_t coro_opts[] = {
    {"switch", "HOW", "context switch: asm (hand-written, default) or ucontext (swapcontext)"},
    {"stack-size", "KIB", "stack per coroutine in KiB (default 64, at least 16)"},
    {0},
};

static const char *const coro_variants[] = {"--switch ucontext", "--stack-size 16", NULL};

const c10k_model_t c10k_model_coro = {
    .name = "coro",
    .summary = "a coroutine per connection, M:N on an epoll scheduler per thread",
    .opts = coro_opts,
    .variants = coro_variants,
    .set_opt = coro_set_opt,
    .describe = coro_describe,
    .probe = coro_probe,
    .run = coro_run,
};
