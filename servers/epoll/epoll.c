/*
 * servers/epoll/epoll.c - one event loop per thread on epoll, every
 * connection a small state machine around the shared handler.
 *
 * What it is
 *   The C10K answer: a thread never sleeps on one client. Each worker thread
 *   owns an epoll instance, a listener and the connections it accepted, and
 *   runs one loop: epoll_wait for whichever sockets are ready, do the work
 *   that is possible without blocking, go back to waiting. A connection is a
 *   small struct that records where it stopped. What it does next (read,
 *   send, linger, close) and until when is decided by the lifecycle policy
 *   every model shares (common/conn.h); this file only waits and does I/O:
 *
 *       conn.h says   c10k_conn_pump() (common/net.c) does, until EAGAIN
 *       READ          read() into the connection's buffer
 *       SEND          send()/sendfile() the plan
 *       LINGER        shutdown(SHUT_WR) once, then read() and discard
 *       CLOSE         close()
 *
 *   then parks the connection and serves someone else. Workers share nothing
 *   but the read-only site, so there are no locks on the request path.
 *
 * Edge- or level-triggered (--level-triggered)
 *   Edge-triggered (the default): each socket is registered once, for
 *   EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, and never touched again with
 *   epoll_ctl. The kernel reports only changes, so the loop must remember
 *   what it learnt (c10k_ready_t, kept by c10k_conn_pump()), and keep going
 *   until EAGAIN (or a short read, which on a stream socket says the same),
 *   or it waits forever for an edge that already came. Cost: that bookkeeping.
 *   Level-triggered: the kernel reports a socket for as long as it is ready,
 *   so forgetting is harmless, but a socket parked for EPOLLOUT must not also
 *   be registered for EPOLLIN (its unread request would be reported on every
 *   wait, a busy loop). So each read<->write switch is an epoll_ctl(MOD): two
 *   extra system calls on a response that does not fit in the socket buffer
 *   (none when the response goes out at once, as most small ones do).
 *
 * Listeners (--shared-listener)
 *   By default each worker has its own SO_REUSEPORT listener (the first uses
 *   the server's, the others c10k_listen_more()), and the kernel spreads new
 *   connections by a hash of the addresses: no thundering herd, no shared
 *   accept queue, but a busy worker keeps getting its share. With
 *   --shared-listener all workers watch the one listener with EPOLLEXCLUSIVE,
 *   so one idle worker wakes per new connection instead of all of them.
 *
 * Sending
 *   c10k_send_plan_nb() from common/net.c: the head with send(MSG_MORE) so it
 *   leaves in the same segment as the body, the body with sendfile (an error
 *   page: head and body in one sendmsg). A partial send or EAGAIN parks the
 *   connection until EPOLLOUT. Our own path would make the same calls.
 *   A keep-alive request for a small file thus costs six system calls: read,
 *   then openat2, fstat and close in the handler, then send and sendfile;
 *   under load one epoll_wait returns dozens of ready connections, so it adds
 *   little. (nginx makes eight: it corks and uncorks with setsockopt.)
 *
 * Timeouts
 *   One timer per connection in a per-loop timer wheel (common/timer.c): O(1)
 *   to arm, re-arm and cancel, and a tick touches only the timers due. It is
 *   armed for the deadline conn.h sets (header, keep-alive, send or linger);
 *   when it fires, conn.h decides (a 408, or close). TCP_NOTSENT_LOWAT (see
 *   c10k_sock_tune()) makes a slow reader's progress show up as writability
 *   well within the send timeout.
 *
 * Out of descriptors (EMFILE, ENFILE)
 *   accept4 fails but the connection stays in the backlog, so the listener
 *   stays readable: retrying would spin. The worker stops watching its
 *   listener for ACCEPT_PAUSE_MS (a deadline folded into epoll_wait's
 *   timeout), then watches again. Clients wait in the backlog meanwhile rather
 *   than being reset, which the other fix (close a reserved descriptor, accept,
 *   close) would do.
 *
 * Memory
 *   An idle keep-alive connection is a conn_t (about 150 bytes on x86-64)
 *   plus the kernel's socket. The 32 KiB read buffer and 10 KiB head buffer
 *   (c10k_io_t) are taken from a per-loop free list when bytes arrive and
 *   given back when conn.h says the connection is idle again
 *   (c10k_conn_idle_io), so 10,000 idle clients cost about 1.5 MiB of user
 *   memory (tests/system/many_conns.py measures the resident memory per idle
 *   connection), and buffers stay warm in the cache.
 *
 * A disk that is slow (--helpers N: Flash's AMPED)
 *   A sendfile that meets a page not in memory puts the thread to sleep until
 *   the disk delivers it, and with the thread the whole loop: every other
 *   connection waits, even those whose files are in memory. Flash (Pai,
 *   Druschel and Zwaenepoel, USENIX 1999) called that SPED and answered with
 *   AMPED: helpers that do the waiting. With --helpers N each loop starts N
 *   helper threads (common/warm.c). Before the first byte of a response with
 *   a file body, the gate of c10k_conn_pump_gated() asks whether the range is
 *   in memory; if it is, the response goes at once; if not, the range goes to
 *   a helper and the connection waits (conn_t.job: no event is acted on until
 *   the helper is done, its send deadline still runs). The helper reads the
 *   range into the page cache, sleeping on the disk itself, and reports
 *   through an eventfd in this loop's epoll set; the loop sends from memory.
 *   Why this way:
 *   - Ask first, hand off only what is cold. Handing every response to a
 *     helper would cost each one an eventfd round trip and two thread
 *     wake-ups, for nothing on a warm cache (the quick profile's case). The
 *     question costs one cachestat(2) per file response (Linux 6.5), against
 *     three system calls for Flash's mincore (mmap, mincore, munmap): the
 *     figures are in README.md ("A disk that is slow").
 *   - cachestat counts a page being read as cached, so while a helper of
 *     this process is reading, the answer "all cached" is checked again
 *     with mincore, which reports only pages read and up to date: otherwise
 *     a second request for a file a helper is fetching would sleep in
 *     sendfile on the page lock, the very wait the helpers exist to take.
 *   - A helper calls readahead(2) for the whole range, so the disk gets one
 *     request where sendfile's readahead would grow its window step by step,
 *     then pread(2)s it into a 64 KiB scratch buffer, which returns only
 *     when each page has arrived. That copy is the helper's, on a cold range
 *     only; mapping the file and touching each page (Flash's way) would wait
 *     the same and cost a page fault per page instead.
 *   - Threads, not processes: they share the page cache either way, and a
 *     thread needs no pipe to report. The helpers inherit the loop's --cpus.
 *   - A response's range is checked before its head is sent, so a client
 *     never sees a head followed by a pause.
 *   What it does not do: the handler's openat2 and fstat still run on the
 *   loop, so a cold inode or directory still blocks it (Flash's helpers also
 *   translated path names); and a page evicted between the helper's report
 *   and the send is read by sendfile, on the loop. The cold-cache profile
 *   (c10k bench --profile cold-cache) measures what is left: the loop's
 *   stalls (loopstat.h) and the time its threads were blocked on the disk.
 *
 * Stopping
 *   The workers run under common/workers.c, whose calling thread waits for
 *   SIGINT/SIGTERM and makes stop_fd readable; it is in every epoll set. A
 *   worker then takes in what is already in its backlog, stops listening,
 *   reads once more what idle connections may already have been sent, tells
 *   conn.h about the stop for each connection (idle ones close, the rest
 *   finish their response with Connection: close), and exits when none are
 *   left or --grace passes.
 *
 * What it needs
 *   Linux epoll (EPOLLEXCLUSIVE: Linux 4.5), SO_REUSEPORT (3.9), sendfile.
 *
 * Stalls
 *   Each loop counts its iterations, those over 1 ms and their duration
 *   (common/loopstat.h), timed from the clock read epoll_wait's return costs
 *   anyway to one more read before the next wait.
 *
 * How to run it
 *   c10k serve epoll --root DIR --port 8080 --workers 2
 *   c10k serve epoll --root DIR --level-triggered --shared-listener
 *   c10k serve epoll --root DIR --helpers 4
 */
#include "cli.h"
#include "conn.h"
#include "loopstat.h"
#include "stats.h"
#include "timer.h"
#include "warm.h"
#include "workers.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS      256 /* per epoll_wait */
#define TICK_MS         16  /* timer resolution: 1024 slots cover 16 s */
#define ACCEPT_PAUSE_MS 100 /* after EMFILE/ENFILE */

static struct {
    bool level;  /* --level-triggered */
    bool shared; /* --shared-listener */
    int helpers; /* --helpers N: AMPED helper threads per loop, 0 = none */
} opts;

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} peer_t;

/* One connection: the whole user-space cost of an idle keep-alive client
 * (plus malloc's 16-byte header). */
typedef struct conn_s {
    c10k_timer_t timer;           /* the deadline conn.h set */
    struct conn_s *next, **pprev; /* the loop's connections, for the stop */
    c10k_conn_t cc;               /* the lifecycle (conn.h) */
    int fd;
    c10k_ready_t ready;   /* what epoll told us, until EAGAIN */
    uint32_t interest;    /* level-triggered: the events registered */
    c10k_warm_job_t *job; /* --helpers: a helper is reading the body in; wait */
    bool warmed;          /* --helpers: that helper is done, send without asking */
    peer_t peer;
} conn_t;

_Static_assert(sizeof(conn_t) <= 1024, "an idle connection must cost at most 1 KiB");

typedef struct loop_s {
    c10k_server_t *srv;
    int id;
    int epfd;
    int listen_fd;  /* -1 once closed */
    bool listening; /* listen_fd is in the epoll set */
    c10k_wheel_t wheel;
    int64_t now; /* ms, read once per wake-up */
    conn_t *conns;
    int nconns;
    c10k_iopool_t pool; /* free buffers, warm in the cache */
    c10k_warm_t warm;   /* --helpers: the helper threads */
    c10k_loopstat_t ls; /* iterations and stalls */
    bool stop_seen;     /* stop_fd was reported in this batch */
    bool stopping;
    int64_t grace_until;
    int64_t accept_resume; /* 0, or when to watch the listener again */
    bool accept_warned;
    struct epoll_event events[MAX_EVENTS];
} loop_t;

/* epoll_event.data.ptr for the descriptors that are not connections. */
static char tag_listen, tag_stop, tag_warm;

/* --- connections --------------------------------------------------------------- */

static conn_t *conn_of(c10k_timer_t *t)
{
    return (conn_t *)((char *)t - offsetof(conn_t, timer));
}

/* Level-triggered only: register for what the connection waits for. */
static void want(loop_t *lp, conn_t *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};

    if (!opts.level || c->interest == events)
        return;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->interest = events;
}

static void conn_close(loop_t *lp, conn_t *c)
{
    if (c->job)
        c->job->owner = NULL; /* the helper's job outlives the connection */
    c10k_timer_cancel(&lp->wheel, &c->timer);
    c10k_iopool_put(&lp->pool, c10k_conn_end(&c->cc));
    close(c->fd); /* also takes it out of the epoll set */
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    lp->nconns--;
    free(c);
}

static int conn_open(loop_t *lp, int fd, const peer_t *peer)
{
    struct epoll_event ev;
    conn_t *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->fd = fd;
    c->peer = *peer;
    c->ready.writable = true;
    c10k_timer_init(&c->timer);
    /* Edge-triggered: registered once for everything it will ever wait for. */
    c->interest = opts.level ? EPOLLIN : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.events = c->interest;
    ev.data.ptr = c;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = -errno;
        free(c);
        return rc;
    }
    c10k_conn_start(&c->cc, lp->srv, &c->peer.sa, lp->now);
    c10k_timer_arm(&lp->wheel, &c->timer, c->cc.deadline);
    c->next = lp->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &lp->conns;
    lp->conns = c;
    lp->nconns++;
    return 0;
}

/* --helpers: before the first byte of a file body, the gate of
 * c10k_conn_pump_gated(). A range in memory goes at once; any other is
 * handed to a helper and the response waits (see the top of the file). */
static bool warm_gate(void *arg, c10k_conn_t *cc)
{
    loop_t *lp = arg;
    conn_t *c = (conn_t *)((char *)cc - offsetof(conn_t, cc));
    const c10k_resp_t *r = &cc->io->resp;

    if (c->warmed) {
        c->warmed = false;
        return true;
    }
    if (r->body_fd < 0 || r->body_len == 0)
        return true;
    /* Resident, or the check failed: send, and sendfile reports any error. */
    if (c10k_warm_resident(&lp->warm, r->body_fd, r->body_off, r->body_len) != 0)
        return true;
    /* No memory or descriptor for a job: send as epoll does without helpers. */
    c->job = c10k_warm_submit(&lp->warm, r->body_fd, r->body_off, r->body_len, c);
    return c->job == NULL;
}

/* Do what conn.h asks until a read or write would block (common/net.c does
 * the reads and sends), then park the connection: its timer at the deadline
 * conn.h set. Returns false if the connection was closed (freed). */
static bool conn_advance(loop_t *lp, conn_t *c)
{
    c10k_next_t next;

    if (c->job && c->cc.next != C10K_CLOSE) {
        /* A helper is reading the body in: no event matters until it is done. */
        want(lp, c, 0);
        c10k_timer_arm(&lp->wheel, &c->timer, c->cc.deadline);
        return true;
    }
    next = c10k_conn_pump_gated(&c->cc, c->fd, &c->ready, &lp->pool, lp->now,
                                opts.helpers ? warm_gate : NULL, lp);
    if (next == C10K_CLOSE) { /* a helper still reading for it lets go (conn_close) */
        conn_close(lp, c);
        return false;
    }
    if (c->job) { /* the gate handed the body to a helper */
        want(lp, c, 0);
        c10k_timer_arm(&lp->wheel, &c->timer, c->cc.deadline);
        return true;
    }
    want(lp, c, next == C10K_SEND ? EPOLLOUT : EPOLLIN);
    c10k_timer_arm(&lp->wheel, &c->timer, c->cc.deadline);
    return true;
}

/* The connection's deadline passed: conn.h decides (a 408, or close). */
static void on_timeout(c10k_timer_t *t, void *arg)
{
    loop_t *lp = arg;
    conn_t *c = conn_of(t);

    c10k_conn_timeout(&c->cc, lp->now);
    conn_advance(lp, c);
}

/* --- events --------------------------------------------------------------------- */

static void handle_conn(loop_t *lp, conn_t *c, uint32_t events)
{
    /* An error or hang-up makes the socket both readable and writable: the
     * next call says what happened. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        c->ready.readable = c->ready.writable = true;
        c->ready.rdhup = true;
        if (c->job) { /* the client is gone while a helper reads for it */
            conn_close(lp, c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP))
        c->ready.readable = true;
    if (events & EPOLLRDHUP)
        c->ready.rdhup = true;
    if (events & EPOLLOUT)
        c->ready.writable = true;
    conn_advance(lp, c);
}

static int listener_watch(loop_t *lp)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};

    if (opts.shared)
        ev.events |= EPOLLEXCLUSIVE;
    if (!opts.level)
        ev.events |= EPOLLET;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->listen_fd, &ev) < 0)
        return -errno;
    lp->listening = true;
    return 0;
}

/* --helpers: helpers have read ranges in; their connections send now. */
static void handle_warm(loop_t *lp)
{
    c10k_warm_job_t *j = c10k_warm_reap(&lp->warm);

    while (j) {
        c10k_warm_job_t *next = j->next;
        conn_t *c = j->owner;
        free(j);
        if (c) { /* NULL: it closed meanwhile */
            c->job = NULL;
            c->warmed = true;
            conn_advance(lp, c);
        }
        j = next;
    }
}

static void listener_unwatch(loop_t *lp)
{
    if (lp->listening)
        epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->listen_fd, NULL);
    lp->listening = false;
}

/* Out of descriptors: stop watching the listener for a while (see the top). */
static void accept_pause(loop_t *lp, int err)
{
    if (!lp->accept_warned)
        c10k_warn(lp->srv, "worker %d: accept: %s; pausing accepts for %d ms at a time", lp->id,
                  strerror(err), ACCEPT_PAUSE_MS);
    lp->accept_warned = true; /* once per shortage, not ten times a second */
    listener_unwatch(lp);
    lp->accept_resume = lp->now + ACCEPT_PAUSE_MS;
}

static void accept_resume(loop_t *lp)
{
    lp->accept_resume = 0;
    if (lp->stopping || lp->listen_fd < 0)
        return;
    /* EPOLL_CTL_ADD reports a listener whose backlog is not empty at once. */
    if (listener_watch(lp) < 0)
        c10k_warn(lp->srv, "worker %d: cannot watch the listener: %s", lp->id, strerror(errno));
}

/* Drain the backlog: in edge-triggered mode there is no second reminder. */
static void handle_accept(loop_t *lp)
{
    for (;;) {
        peer_t peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(lp->listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED: /* the client gave up while queued */
            case EPROTO:
            case EPERM:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                accept_pause(lp, errno);
                return;
            default: /* EAGAIN: drained; EINVAL: the listener was shut down */
                return;
            }
        }
        lp->accept_warned = false;
        /* The header clock starts now, not when this batch of events began:
         * a burst of accepts must not shorten the last ones' timeout. */
        lp->now = c10k_now_ms();
        if (conn_open(lp, fd, &peer) < 0)
            close(fd);
    }
}

/* Tell conn.h about the stop. An idle connection may already have been sent
 * a request this batch has not seen: read once more first, so that it is
 * answered rather than reset. */
static void conn_stop(loop_t *lp, conn_t *c)
{
    if (c->cc.next == C10K_READ) {
        c10k_conn_stop_soon(&c->cc);
        c->ready.readable = true;
        if (!conn_advance(lp, c))
            return;
    }
    c10k_conn_stop(&c->cc, lp->now);
    conn_advance(lp, c);
}

/* Stop accepting; conn.h closes what is idle and lets the rest finish. */
static void begin_stop(loop_t *lp)
{
    conn_t *c, *next;

    lp->stopping = true;
    lp->grace_until = lp->now + lp->srv->cfg.grace_ms;
    lp->accept_resume = 0;
    epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->srv->stop_fd, NULL);
    /* Clients already in the backlog have connected: take them in and treat
     * them like the others below, rather than reset them with the listener. */
    if (lp->listening)
        handle_accept(lp);
    listener_unwatch(lp);
    c10k_worker_listener_close(lp->srv, lp->listen_fd);
    lp->listen_fd = -1;
    for (c = lp->conns; c; c = next) {
        next = c->next;
        conn_stop(lp, c);
    }
}

/* --- the loop ----------------------------------------------------------------------- */

static int loop_timeout(loop_t *lp)
{
    int64_t t = c10k_wheel_next_ms(&lp->wheel, lp->now);

    if (lp->accept_resume && (t < 0 || lp->accept_resume - lp->now < t))
        t = lp->accept_resume - lp->now;
    if (lp->stopping && (t < 0 || lp->grace_until - lp->now < t))
        t = lp->grace_until - lp->now;
    return t < 0 ? -1 : (int)t;
}

typedef enum { EV_LISTEN, EV_STOP, EV_WARM, EV_CONN } ev_kind_t;

static ev_kind_t event_kind(const struct epoll_event *ev)
{
    if (ev->data.ptr == &tag_listen)
        return EV_LISTEN;
    if (ev->data.ptr == &tag_stop)
        return EV_STOP;
    if (ev->data.ptr == &tag_warm)
        return EV_WARM;
    return EV_CONN;
}

static void handle_event(loop_t *lp, struct epoll_event *ev)
{
    switch (event_kind(ev)) {
    case EV_LISTEN:
        handle_accept(lp);
        break;
    case EV_STOP:
        /* After the batch: stopping closes connections whose events may
         * still be further down this array. */
        lp->stop_seen = true;
        break;
    case EV_WARM:
        handle_warm(lp);
        break;
    case EV_CONN:
        handle_conn(lp, ev->data.ptr, ev->events);
        break;
    }
}

static int loop_serve(void *arg)
{
    loop_t *lp = arg;

    for (;;) {
        int n, timeout = loop_timeout(lp);
        int64_t ns;

        c10k_loop_idle(&lp->ls);
        n = epoll_wait(lp->epfd, lp->events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            c10k_warn(lp->srv, "worker %d: epoll_wait: %s", lp->id, strerror(errno));
            return -errno;
        }
        ns = c10k_now_ns(); /* the one clock read of the wake-up, for both */
        c10k_loop_busy(&lp->ls, ns);
        lp->now = ns / 1000000;
        for (int i = 0; i < n; i++)
            handle_event(lp, &lp->events[i]);
        c10k_wheel_expire(&lp->wheel, lp->now, on_timeout, lp);
        if (lp->accept_resume && lp->now >= lp->accept_resume)
            accept_resume(lp);
        if (lp->stop_seen && !lp->stopping)
            begin_stop(lp);
        if (lp->stopping && (lp->nconns == 0 || lp->now >= lp->grace_until))
            return 0;
    }
}

/* --- setup ------------------------------------------------------------------------- */

/* A job the helpers never finished, or finished unreaped, at the end. */
static void job_give_back(c10k_warm_job_t *j, void *arg)
{
    conn_t *c = j->owner;

    (void)arg;
    if (c)
        c->job = NULL;
    free(j);
}

static void loop_fini(void *arg)
{
    loop_t *lp = arg;

    c10k_loopstat_unpublish(&lp->ls);
    c10k_stats_remove(&lp->warm.checks);
    c10k_stats_remove(&lp->warm.handoffs);
    /* Helpers first: no job may point at a connection once it is freed. */
    c10k_warm_fini(&lp->warm, job_give_back, NULL);
    while (lp->conns) /* those --grace cut short, or all after a failure */
        conn_close(lp, lp->conns);
    c10k_worker_listener_close(lp->srv, lp->listen_fd);
    if (lp->epfd >= 0)
        close(lp->epfd);
    c10k_iopool_free(&lp->pool);
}

static int loop_init(void *arg, c10k_server_t *srv, int id)
{
    loop_t *lp = arg;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_stop};
    int rc;

    lp->srv = srv;
    lp->id = id;
    lp->epfd = lp->listen_fd = lp->warm.efd = -1;
    lp->now = c10k_now_ms();
    c10k_wheel_init(&lp->wheel, TICK_MS, lp->now);
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->epfd < 0 || epoll_ctl(lp->epfd, EPOLL_CTL_ADD, srv->stop_fd, &ev) < 0)
        goto fail_errno;
    lp->listen_fd = c10k_worker_listener(srv, id, opts.shared);
    if (lp->listen_fd < 0) {
        rc = lp->listen_fd;
        goto fail;
    }
    rc = listener_watch(lp);
    if (rc < 0)
        goto fail;
    if (opts.helpers) {
        /* Started from this thread, so the helpers share its --cpus pinning. */
        rc = c10k_warm_init(&lp->warm, opts.helpers);
        if (rc < 0)
            goto fail;
        ev.data.ptr = &tag_warm;
        if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->warm.efd, &ev) < 0)
            goto fail_errno;
        /* How many file responses asked, how many went to a helper. */
        c10k_stats_add("helper_checks", &lp->warm.checks);
        c10k_stats_add("helper_handoffs", &lp->warm.handoffs);
    }
    c10k_loopstat_publish(&lp->ls); /* counters are extras: run on without */
    return 0;
fail_errno:
    rc = -errno;
fail:
    c10k_warn(srv, "worker %d: %s", id, strerror(-rc));
    return rc;
}

static const c10k_worker_ops_t loop_ops = {
    .size = sizeof(loop_t),
    .init = loop_init,
    .serve = loop_serve,
    .fini = loop_fini,
};

static int epoll_run(c10k_server_t *srv)
{
    return c10k_run_workers(srv, &loop_ops);
}

/* --- the model ---------------------------------------------------------------------- */

static const c10k_opt_t epoll_opts[] = {
    {"level-triggered", NULL, "level-triggered epoll (default: edge-triggered)"},
    {"shared-listener", NULL,
     "one listener shared with EPOLLEXCLUSIVE (default: SO_REUSEPORT each)"},
    {"helpers", "N", "N helper threads per loop read file ranges not in memory (AMPED; default 0)"},
    {NULL, NULL, NULL},
};

static const char *const epoll_variants[] = {
    "--level-triggered",
    "--shared-listener",
    "--open-file-cache 64 --open-file-cache-valid 1",
    "--helpers 2",
    "--helpers 1 --level-triggered",
    NULL,
};

static int set_helpers(const char *value)
{
    long n;

    if (c10k_parse_uint("c10k serve", "helpers", value, 1, C10K_HELPERS_MAX, &n) < 0)
        return -EINVAL;
    opts.helpers = (int)n;
    return 0;
}

static int epoll_set_opt(const char *name, const char *value)
{
    if (strcmp(name, "level-triggered") == 0)
        opts.level = true;
    else if (strcmp(name, "shared-listener") == 0)
        opts.shared = true;
    else if (strcmp(name, "helpers") == 0)
        return set_helpers(value);
    else
        return -EINVAL;
    return 0;
}

static void epoll_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "trigger=%s listener=%s helpers=%d", opts.level ? "level" : "edge",
             opts.shared ? "shared" : "reuseport", opts.helpers);
}

const c10k_model_t c10k_model_epoll = {
    .name = "epoll",
    .summary = "an epoll event loop per thread, connections as state machines",
    .opts = epoll_opts,
    .variants = epoll_variants,
    .set_opt = epoll_set_opt,
    .describe = epoll_describe,
    .run = epoll_run,
};
