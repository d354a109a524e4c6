/*
 * servers/prefork/prefork.c - pre-forked worker processes under a master,
 * the model of Apache's prefork MPM.
 *
 * What it is
 *   A master process forks workers and then only manages them: it never
 *   touches a client. Each worker is a single-threaded process that accepts
 *   one connection from the shared listening socket, serves it to the end with
 *   blocking I/O and sendfile (c10k_serve_blocking), and goes back to accept.
 *   A crash takes out one worker and one connection, never the server.
 *
 * The pool
 *   Dynamic by default, as Apache's: --start-workers (5) at start; once per
 *   tick (250 ms) the master counts idle workers on the scoreboard, forks
 *   more when fewer than --min-spare (5) are idle (1, 2, 4 ... up to 32 per
 *   tick while the shortage lasts) and retires a quarter of the surplus per
 *   tick while more than --max-spare (10) are idle, never exceeding
 *   --max-workers (256). During a SIGHUP the old generation and the new one
 *   may together hold up to twice that many processes for a moment.
 *   --workers N gives a fixed pool of N instead. --max-requests-per-child N
 *   recycles a worker after N connections, bounding any leak it might have.
 *
 * The scoreboard
 *   One shared anonymous mapping with a slot per worker. A worker writes its
 *   own slot's state (idle or busy) with single atomic stores, and only the
 *   master reads the others, so no lock is needed and a worker that dies
 *   mid-update cannot leave a lock held. The worker's signal handler touches
 *   nothing but its stop flag and an eventfd, so no scoreboard update can be
 *   torn by a signal either.
 *
 * Accepting without a thundering herd
 *   Every idle worker waits in its own epoll instance on the shared listener
 *   registered with EPOLLEXCLUSIVE, so a new connection wakes one idle worker
 *   (rarely a few), not all of them. The listener is non-blocking, so a worker
 *   that loses a race gets EAGAIN and waits again. Chosen over an accept lock
 *   (Apache's AcceptMutex), which costs a lock and unlock per connection and
 *   serialises accepts, and over SO_REUSEPORT, which gives each worker its own
 *   queue: connections queued on a worker that is retiring would be reset,
 *   and a busy worker's queue would wait while other workers sit idle.
 *
 * Signals
 *   The master reads SIGCHLD, SIGTERM, SIGINT and SIGHUP from a signalfd in
 *   its loop, so nothing runs in signal context there.
 *   SIGCHLD: reap every child; the next tick refills the pool, so a crashed or
 *   killed worker never shrinks it for good. SIGTERM/SIGINT: stop gracefully;
 *   workers finish their in-flight response, then everything exits 0 (workers
 *   still busy after --grace are killed). SIGHUP: graceful restart; fresh
 *   workers are forked first, then the old ones finish their current
 *   connection and exit, so no connection is refused. A master that dies
 *   without stopping them (SIGKILL, a crash, SIGUSR1) takes its workers with
 *   it: each asks for SIGKILL on its parent's death (PR_SET_PDEATHSIG), so
 *   none is left holding the port.
 *
 * What it costs (the bench shows each as a number)
 *   A process per concurrent connection: its page tables, its stack and its
 *   copies-on-write, summed over processes as RSS. Each request is one or
 *   more voluntary context switches (the worker sleeps in poll or epoll_wait).
 *   The trade-off that matters most: a worker held by an idle keep-alive client
 *   serves nobody else. --keepalive-timeout bounds how long an idle client may
 *   hold one (Apache's default is 5 s for this reason), and --max-requests
 *   bounds how many requests one client gets before it must reconnect and
 *   queue with everybody else. Short values free workers sooner and cost
 *   reconnects; long ones need a pool as large as the number of clients.
 *
 * What it needs
 *   Linux: fork, epoll with EPOLLEXCLUSIVE (4.5+), signalfd, eventfd.
 *
 * How to run it
 *   c10k serve prefork --root DIR                 dynamic pool
 *   c10k serve prefork --workers 16 --root DIR    fixed pool
 *   kill -HUP <master>                            replace every worker
 */
#include "cli.h"
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TICK_MS        250
#define MAX_SPAWN_RATE 32

static struct {
    int start, min_spare, max_spare, max_workers;
    int fixed;              /* the common --workers N: a fixed pool; 0 = dynamic */
    unsigned max_per_child; /* connections before a worker is recycled */
    bool min_set, max_set;  /* --min-spare, --max-spare given */
} opts = {5, 5, 10, 256, 0, 0, false, false};

typedef enum { SLOT_EMPTY = 0, SLOT_STARTING, SLOT_IDLE, SLOT_BUSY } slot_state_t;

/* One worker's row on the scoreboard. */
typedef struct slot_s {
    _Atomic int state;            /* slot_state_t, written by the worker */
    pid_t pid;                    /* written by the master only */
    unsigned generation;          /* the master's generation when forked */
    bool retired;                 /* told to leave; no longer counted (master only) */
    _Atomic unsigned long served; /* connections, for information */
} slot_t;

static slot_t *board;       /* shared mapping, nslots entries */
static int nslots;          /* twice the pool limit, so a SIGHUP can overlap */
static int limit;           /* --workers N, or --max-workers */
static unsigned generation; /* bumped by SIGHUP */
static c10k_server_t *server;
static pid_t master_pid;

/* ---- worker -------------------------------------------------------------------- */

static void worker_stop_cb(int sig)
{
    (void)sig;
    c10k_request_stop(server); /* an atomic store and a write(2): async-signal-safe */
}

/* Fresh stop state of the worker's own: the eventfd main() made is shared
 * with the master and every sibling across fork. */
static int worker_signals(void)
{
    struct sigaction sa = {.sa_handler = worker_stop_cb};
    sigset_t set;

    server->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (server->stop_fd < 0)
        return -errno;
    atomic_store(&server->stopping, false);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocked poll or accept returns EINTR and looks at the
     * stop flag. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) ? -EINVAL : 0;
}

/* Wait for a connection as one of possibly many idle workers. Returns the
 * accepted fd, -EAGAIN to wait again, or -ECANCELED on stop. */
static int worker_accept(int ep, struct sockaddr_storage *peer)
{
    struct epoll_event ev;
    socklen_t sl = sizeof(*peer);
    int fd;

    if (atomic_load(&server->stopping))
        return -ECANCELED;
    if (epoll_wait(ep, &ev, 1, -1) < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    if (ev.data.fd == server->stop_fd)
        return -ECANCELED;
    fd = accept4(server->listen_fd, (struct sockaddr *)peer, &sl, SOCK_CLOEXEC);
    if (fd >= 0)
        return fd;
    if (errno == EMFILE || errno == ENFILE) {
        /* Out of descriptors: wait a little (or for a stop) rather than spin. */
        struct pollfd p = {.fd = server->stop_fd, .events = POLLIN};
        poll(&p, 1, 100);
    }
    return -EAGAIN;
}

static int worker_epoll(void)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE};
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep < 0)
        return -errno;
    ev.data.fd = server->listen_fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, server->listen_fd, &ev) < 0)
        goto fail;
    ev.events = EPOLLIN;
    ev.data.fd = server->stop_fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, server->stop_fd, &ev) < 0)
        goto fail;
    return ep;
fail:
    close(ep);
    return -errno;
}

/* A worker dies with its master. A master that is gone (SIGKILL, a crash,
 * a signal whose default action kills it, such as SIGUSR1) can no longer
 * reap, replace or stop its workers, and a worker left behind would keep
 * accepting on the port, sharing it with whatever server starts there next.
 * The master may have died between fork() and prctl(), before the death
 * signal was armed: then the worker's parent is already someone else. */
static int worker_bind_to_master(void)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return -errno;
    return getppid() == master_pid ? 0 : -ESRCH;
}

static void worker_main(slot_t *slot, int index)
{
    c10k_io_t *io = NULL;
    struct sockaddr_storage peer;
    unsigned long conns = 0;
    int ep = -1, fd, status = 1;

    if (worker_bind_to_master() < 0)
        goto out;
    io = malloc(sizeof(*io));
    if (!io || worker_signals() < 0 || (ep = worker_epoll()) < 0)
        goto out;
    c10k_io_init(io);
    c10k_pin_worker(server, index); /* --cpus: round robin over the slots */
    for (;;) {
        atomic_store(&slot->state, SLOT_IDLE);
        fd = worker_accept(ep, &peer);
        if (fd == -ECANCELED)
            break;
        if (fd < 0)
            continue;
        atomic_store(&slot->state, SLOT_BUSY);
        c10k_serve_blocking(server, fd, (struct sockaddr *)&peer, io);
        atomic_fetch_add(&slot->served, 1);
        if (opts.max_per_child && ++conns >= opts.max_per_child)
            break;
    }
    status = 0;
out:
    _exit(status);
}

/* ---- master: the pool ------------------------------------------------------------ */

static int spawn(void)
{
    pid_t pid;
    int i;

    for (i = 0; i < nslots && board[i].pid; i++)
        ;
    if (i == nslots)
        return -EAGAIN;
    atomic_store(&board[i].state, SLOT_STARTING);
    atomic_store(&board[i].served, 0);
    board[i].generation = generation;
    board[i].retired = false;
    pid = fork();
    if (pid < 0) {
        atomic_store(&board[i].state, SLOT_EMPTY);
        return -errno;
    }
    if (pid == 0)
        worker_main(&board[i], i);
    board[i].pid = pid;
    return 0;
}

typedef struct census_s {
    int live, idle;
} census_t;

static census_t count_workers(void)
{
    census_t c = {0, 0};

    for (int i = 0; i < nslots; i++) {
        int st = atomic_load(&board[i].state);
        if (!board[i].pid || board[i].generation != generation || board[i].retired)
            continue;
        c.live++;
        /* A worker still starting up will be idle in a moment: count it, or
         * the master would fork a second wave before the first arrives. */
        if (st == SLOT_IDLE || st == SLOT_STARTING)
            c.idle++;
    }
    return c;
}

/* Retire n idle workers: a quarter of the surplus per tick (at least one), so
 * a short lull keeps most of a pool the next burst needs, and a long one
 * gives the memory back within seconds. A retired worker is not counted
 * from now on, even while it is still exiting. */
static void retire(int n)
{
    for (int i = 0; i < nslots && n > 0; i++) {
        if (!board[i].pid || board[i].generation != generation || board[i].retired ||
            atomic_load(&board[i].state) != SLOT_IDLE)
            continue;
        /* If it accepted a client just after this load, the SIGTERM only
         * makes it close that connection after the response it owes. */
        board[i].retired = true;
        kill(board[i].pid, SIGTERM);
        n--;
    }
}

/* Apache's perform_idle_server_maintenance, once a tick. */
static void maintain(int *spawn_rate)
{
    census_t c = count_workers();
    int want = 0;

    if (opts.fixed) {
        want = opts.fixed - c.live;
    } else if (c.live < opts.start && c.idle < opts.min_spare) {
        want = opts.start - c.live;
    } else if (c.idle < opts.min_spare) {
        want = *spawn_rate;
        if (*spawn_rate < MAX_SPAWN_RATE)
            *spawn_rate *= 2;
    } else if (c.idle > opts.max_spare) {
        retire((c.idle - opts.max_spare + 3) / 4);
    }
    if (!opts.fixed && c.idle >= opts.min_spare)
        *spawn_rate = 1;
    if (want > limit - c.live)
        want = limit - c.live;
    while (want-- > 0)
        if (spawn() < 0)
            break;
}

/* Reap every exited child. A worker killed by a signal is reported. */
static int reap(void)
{
    int status, live = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < nslots; i++) {
            if (board[i].pid != pid)
                continue;
            board[i].pid = 0;
            atomic_store(&board[i].state, SLOT_EMPTY);
        }
        if (WIFSIGNALED(status) && !atomic_load(&server->stopping))
            c10k_warn(server, "worker %d killed by signal %d; replacing it", (int)pid,
                      WTERMSIG(status));
    }
    for (int i = 0; i < nslots; i++)
        live += board[i].pid != 0;
    return live;
}

/* Signal every worker, or (old_only) those forked before the last SIGHUP. */
static void signal_workers(int sig, bool old_only)
{
    for (int i = 0; i < nslots; i++)
        if (board[i].pid && (!old_only || board[i].generation != generation))
            kill(board[i].pid, sig);
}

/* SIGHUP: fresh workers first, then the old ones finish and leave. */
static void restart(int *spawn_rate)
{
    generation++;
    *spawn_rate = 1;
    maintain(spawn_rate);
    signal_workers(SIGHUP, true);
}

/* SIGTERM: workers finish in-flight responses; stragglers past the grace
 * period are killed. Every child is reaped before returning. */
static void shutdown_pool(int sfd)
{
    int64_t deadline = c10k_now_ms() + server->cfg.grace_ms;
    struct signalfd_siginfo si;

    atomic_store(&server->stopping, true);
    /* Workers hold the listener too, busy ones until they finish. shutdown()
     * stops the one shared socket for every process at once, so new clients
     * are refused now instead of waiting in a backlog nobody accepts from. */
    shutdown(server->listen_fd, SHUT_RDWR);
    close(server->listen_fd);
    signal_workers(SIGTERM, false);
    while (reap() > 0) {
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int64_t left = deadline - c10k_now_ms();
        if (left <= 0) {
            c10k_warn(server, "grace period over; killing busy workers");
            signal_workers(SIGKILL, false);
            while (waitpid(-1, NULL, 0) > 0)
                ;
            break;
        }
        if (poll(&p, 1, (int)(left < TICK_MS ? left : TICK_MS)) > 0)
            while (read(sfd, &si, sizeof(si)) == sizeof(si))
                ;
    }
}

static int master_signalfd(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Returns true when asked to stop. */
static bool handle_signals(int sfd, int *spawn_rate)
{
    struct signalfd_siginfo si;
    bool stop = false;

    while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            reap();
            break;
        case SIGHUP:
            restart(spawn_rate);
            break;
        case SIGTERM:
        case SIGINT:
            stop = true;
            break;
        }
    }
    return stop;
}

static int prefork_run(c10k_server_t *srv)
{
    int sfd, spawn_rate = 1, rc = 0;

    server = srv;
    master_pid = getpid();
    /* The common --workers flag is what makes the pool fixed. */
    opts.fixed = srv->cfg.workers;
    limit = opts.fixed ? opts.fixed : opts.max_workers;
    /* Room for a whole new generation next to the old one: on SIGHUP the
     * new workers start accepting while the old ones finish. */
    nslots = 2 * limit;
    board = mmap(NULL, sizeof(slot_t) * (size_t)nslots, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        return -errno;
    sfd = master_signalfd();
    if (sfd < 0) {
        rc = -errno;
        goto out;
    }
    maintain(&spawn_rate);
    for (int64_t next = c10k_now_ms() + TICK_MS;;) {
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int64_t left = next - c10k_now_ms();
        if (poll(&p, 1, left > 0 ? (int)left : 0) > 0 && handle_signals(sfd, &spawn_rate))
            break;
        /* Maintenance runs on the tick only: SIGCHLD wakes the loop too, and
         * a retirement per wake-up would empty the pool in a chain reaction. */
        if (c10k_now_ms() < next)
            continue;
        maintain(&spawn_rate);
        next = c10k_now_ms() + TICK_MS;
    }
    shutdown_pool(sfd);
    close(sfd);
out:
    munmap(board, sizeof(slot_t) * (size_t)nslots);
    return rc;
}

/* ---- flags -------------------------------------------------------------------------- */

/* --min-spare and --max-spare must leave room between them, whichever comes
 * first on the command line: both given and max < min is an error. A default
 * gives way to the one given (--min-spare 20 alone raises max-spare to 20). */
static int check_spare(const char *name, const char *value)
{
    bool min = strcmp(name, "min-spare") == 0;

    if (opts.min_set && opts.max_set && opts.max_spare < opts.min_spare) {
        fprintf(stderr,
                "c10k serve: --%s '%s': --max-spare (%d) must be at least --min-spare (%d)\n", name,
                value, opts.max_spare, opts.min_spare);
        return -EINVAL;
    }
    if (opts.max_spare < opts.min_spare) {
        if (min)
            opts.max_spare = opts.min_spare;
        else
            opts.min_spare = opts.max_spare;
    }
    return 0;
}

static int prefork_set_opt(const char *name, const char *value)
{
    static const struct {
        const char *name;
        int *dst;
        bool *given;
    } ints[] = {
        {"start-workers", &opts.start, NULL},
        {"min-spare", &opts.min_spare, &opts.min_set},
        {"max-spare", &opts.max_spare, &opts.max_set},
        {"max-workers", &opts.max_workers, NULL},
    };
    long v;

    if (c10k_parse_uint("c10k serve", name, value, 0, 100000, &v) < 0)
        return -EINVAL;
    if (strcmp(name, "max-requests-per-child") == 0) {
        opts.max_per_child = (unsigned)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (strcmp(name, ints[i].name) != 0)
            continue;
        if (v < 1)
            break;
        *ints[i].dst = (int)v;
        if (!ints[i].given)
            return 0;
        *ints[i].given = true;
        return check_spare(name, value);
    }
    fprintf(stderr, "c10k serve: --%s '%s': want at least 1\n", name, value);
    return -EINVAL;
}

static void prefork_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    if (opts.fixed)
        snprintf(buf, cap, "pool=fixed:%d max-requests-per-child=%u", opts.fixed,
                 opts.max_per_child);
    else
        snprintf(buf, cap, "pool=dynamic start=%d spare=%d-%d max=%d max-requests-per-child=%u",
                 opts.start, opts.min_spare, opts.max_spare, opts.max_workers, opts.max_per_child);
}

static const c10k_opt_t prefork_opts[] = {
    {"start-workers", "N", "workers forked at start (default 5)"},
    {"min-spare", "N", "fork more when fewer than N workers are idle (5)"},
    {"max-spare", "N", "retire idle workers beyond N (10; at least --min-spare)"},
    {"max-workers", "N", "never more than N workers (256)"},
    {"max-requests-per-child", "N", "recycle a worker after N connections (0 = never)"},
    {0},
};

static const char *const prefork_variants[] = {"--workers 4", NULL};

const c10k_model_t c10k_model_prefork = {
    .name = "prefork",
    .summary = "pre-forked blocking worker processes under a master (Apache prefork)",
    .opts = prefork_opts,
    .variants = prefork_variants,
    .per_connection = true,
    .set_opt = prefork_set_opt,
    .describe = prefork_describe,
    .run = prefork_run,
};
