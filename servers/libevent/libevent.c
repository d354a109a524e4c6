/*
 * servers/libevent/libevent.c - event loops on libevent.
 *
 * What it is
 *   The epoll model again, with the loop, the timers and the accept loop
 *   taken from libevent, the library memcached and tmux are built on. Each
 *   worker thread runs one event_base with its own SO_REUSEPORT listener
 *   (an evconnlistener). Each connection is one `struct event`; its callback
 *   reports what libevent saw to the lifecycle every model shares
 *   (common/conn.h), which c10k_conn_pump() (common/net.c) carries out with
 *   read(2) and sendfile(2) until the socket would block. The same event is
 *   then re-armed for what conn.h waits for: EV_READ, or EV_WRITE while the
 *   socket is full, with conn.h's deadline as its timeout.
 *
 * Why events and not bufferevents
 *   A bufferevent reads into an evbuffer and the handler needs one
 *   contiguous head, so every request would be copied out again; and
 *   evbuffer_add_file() would have to re-open or dup the file per response.
 *   A plain event with read(2) into our buffer and sendfile(2) from the plan
 *   copies nothing, which is the fair comparison with servers/epoll.
 *
 * Timeouts
 *   conn.h's deadlines (header, keep-alive, send, lingering) are the events'
 *   own timeouts. Those durations are registered as libevent "common
 *   timeouts", which keeps each one in a FIFO queue (O(1) per operation)
 *   instead of the min-heap, since every connection uses the same few
 *   durations; a deadline that is not a whole one (the rest of a header
 *   timeout) goes to the heap.
 *
 * Stalls
 *   Each loop counts its iterations, those over 1 ms and their duration
 *   (common/loopstat.h). libevent 2.1 has no hook before or after its poll,
 *   so the loop runs event_base_loop(EVLOOP_ONCE) one iteration at a time:
 *   an iteration begins at its first callback and ends when the call
 *   returns.
 *
 * What it costs
 *   Like epoll: one thread per CPU, no switch per request, a small struct per
 *   idle connection (request and head buffers come from a per-loop pool only
 *   while a request is in flight). On top of epoll: libevent's bookkeeping per
 *   callback, and an epoll_ctl per EV_READ/EV_WRITE switch.
 *
 * What it needs
 *   libevent 2.1 (libevent-dev): event_core. Each event_base is touched by
 *   one thread only (the stop arrives as the server's stop descriptor turning
 *   readable, not as a call from another thread), so the bases are created
 *   with EVENT_BASE_FLAG_NOLOCK and libevent's pthread locking is left out.
 *
 * How to run it
 *   c10k serve libevent --workers 2 --root DIR
 */
#include "conn.h"
#include "loopstat.h"
#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct loop_s loop_t;

typedef struct conn_s {
    loop_t *loop;
    int fd;
    struct event *ev;   /* EV_READ, or EV_WRITE while a send is parked */
    short armed;        /* what ev is assigned for: 0 (not yet), EV_READ or EV_WRITE */
    c10k_conn_t cc;     /* the lifecycle (conn.h) */
    c10k_ready_t ready; /* what libevent reported, until EAGAIN */
    struct sockaddr_in6 peer;
    struct conn_s *prev, *next; /* the loop's connections, for the stop */
} conn_t;

/* The durations conn.h uses, as libevent common timeouts. */
enum { TV_HEADER, TV_KEEPALIVE, TV_SEND, TV_LINGER, TV_COUNT };

struct loop_s {
    c10k_server_t *srv;
    int id;
    int listen_fd;
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *stop_ev, *resume_ev;
    int tv_ms[TV_COUNT];
    const struct timeval *tv[TV_COUNT];
    bool stopping;
    conn_t *conns;
    int nconns;
    c10k_iopool_t pool;
    c10k_loopstat_t ls; /* iterations and stalls (loop_serve) */
};

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);

/* ---- connection lifetime --------------------------------------------------------------- */

static void conn_close(conn_t *c)
{
    loop_t *l = c->loop;

    c10k_iopool_put(&l->pool, c10k_conn_end(&c->cc));
    event_free(c->ev);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    if (--l->nconns == 0 && l->stopping)
        event_base_loopbreak(l->base);
}

/* The timeout for conn.h's deadline: a common timeout when it is a whole one. */
static const struct timeval *deadline_tv(conn_t *c, struct timeval *tv)
{
    loop_t *l = c->loop;
    int64_t ms = c->cc.deadline - c10k_now_ms();

    for (int i = 0; i < TV_COUNT; i++)
        if (ms == l->tv_ms[i])
            return l->tv[i];
    if (ms < 1)
        ms = 1;
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* Wait for `what` until conn.h's deadline. The event is re-assigned only when
 * `what` changes: event_add() on a pending event just moves its timeout, while
 * event_del() + event_add() would cost two epoll_ctl calls per request. */
static void conn_wait(conn_t *c, short what)
{
    struct timeval tv;

    if (c->armed != what) {
        event_del(c->ev);
        event_assign(c->ev, c->loop->base, c->fd, what | EV_PERSIST, conn_event_cb, c);
        c->armed = what;
    }
    event_add(c->ev, deadline_tv(c, &tv));
}

/* Do what conn.h asks until the socket would block, then wait for it.
 * Returns false if the connection was closed (freed). */
static bool conn_advance(conn_t *c)
{
    c10k_next_t next = c10k_conn_pump(&c->cc, c->fd, &c->ready, &c->loop->pool, c10k_now_ms());

    if (next == C10K_CLOSE) {
        conn_close(c);
        return false;
    }
    conn_wait(c, next == C10K_SEND ? EV_WRITE : EV_READ);
    return true;
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;

    (void)fd;
    c10k_loop_touch(&c->loop->ls);
    if (what & EV_TIMEOUT)
        c10k_conn_timeout(&c->cc, c10k_now_ms());
    if (what & EV_READ)
        c->ready.readable = true;
    if (what & EV_WRITE)
        c->ready.writable = true;
    conn_advance(c);
}

/* ---- accepting and stopping --------------------------------------------------------- */

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    loop_t *l = arg;
    conn_t *c = calloc(1, sizeof(*c));

    (void)lis;
    c10k_loop_touch(&l->ls);
    if (!c || !(c->ev = event_new(l->base, fd, EV_READ, conn_event_cb, c))) {
        free(c);
        close(fd);
        return;
    }
    c->loop = l;
    c->fd = fd;
    c->ready.writable = true;
    memcpy(&c->peer, sa, (size_t)socklen < sizeof(c->peer) ? (size_t)socklen : sizeof(c->peer));
    c10k_conn_start(&c->cc, l->srv, (struct sockaddr *)&c->peer, c10k_now_ms());
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    conn_wait(c, EV_READ);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    loop_t *l = arg;

    (void)fd;
    (void)what;
    if (l->listener)
        evconnlistener_enable(l->listener);
}

/* Out of descriptors: stop accepting for 100 ms instead of spinning on a
 * listener that stays readable. */
static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    loop_t *l = arg;
    struct timeval tv = {0, 100000};

    c10k_warn(l->srv, "accept: %s; pausing accept for 100 ms", strerror(errno));
    evconnlistener_disable(lis);
    evtimer_add(l->resume_ev, &tv);
}

static void listener_close(loop_t *l)
{
    if (l->listener)
        evconnlistener_free(l->listener);
    l->listener = NULL;
    c10k_worker_listener_close(l->srv, l->listen_fd);
    l->listen_fd = -1;
}

/* Tell conn.h about the stop. An idle connection may already have been sent
 * a request libevent has not reported yet: read once more first, so that it
 * is answered rather than reset. */
static void conn_stop(conn_t *c)
{
    if (c->cc.next == C10K_READ) {
        c10k_conn_stop_soon(&c->cc);
        c->ready.readable = true;
        if (!conn_advance(c))
            return;
    }
    c10k_conn_stop(&c->cc, c10k_now_ms());
    conn_advance(c);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    loop_t *l = arg;
    struct timeval grace = {l->srv->cfg.grace_ms / 1000, (l->srv->cfg.grace_ms % 1000) * 1000};

    (void)fd;
    (void)what;
    c10k_loop_touch(&l->ls);
    event_del(l->stop_ev);
    listener_close(l);
    l->stopping = true;
    for (conn_t *c = l->conns, *next; c; c = next) {
        next = c->next;
        conn_stop(c);
    }
    if (l->nconns == 0)
        event_base_loopbreak(l->base);
    else
        event_base_loopexit(l->base, &grace);
}

/* ---- setup ------------------------------------------------------------------------- */

static void timeouts_init(loop_t *l)
{
    const c10k_config_t *cfg = &l->srv->cfg;
    int ms[TV_COUNT] = {cfg->header_ms, cfg->keepalive_ms, C10K_SEND_TIMEOUT_MS,
                        cfg->lingering_timeout_ms};

    for (int i = 0; i < TV_COUNT; i++) {
        struct timeval tv = {ms[i] / 1000, (ms[i] % 1000) * 1000};
        l->tv_ms[i] = ms[i];
        l->tv[i] = event_base_init_common_timeout(l->base, &tv);
    }
}

/* An event base needs a few descriptors, and libevent ends the process when
 * one of them (its signal socketpair) cannot be made. Workers are set up one
 * at a time (workers.h), so checking that they are free just before is
 * reliable: nothing else opens descriptors meanwhile. */
static bool descriptors_to_spare(int any_fd, int n)
{
    int fds[8], got = 0;

    while (got < n && (fds[got] = dup(any_fd)) >= 0)
        got++;
    for (int i = 0; i < got; i++)
        close(fds[i]);
    return got == n;
}

static int loop_init(void *arg, c10k_server_t *srv, int id)
{
    loop_t *l = arg;
    struct event_config *cfg;

    l->srv = srv;
    l->id = id;
    l->listen_fd = c10k_worker_listener(srv, id, false); /* < 0: fini closes nothing */
    if (l->listen_fd < 0)
        return l->listen_fd;
    if (!descriptors_to_spare(srv->stop_fd, 3)) /* an epoll fd and a signal socketpair */
        return -EMFILE;
    cfg = event_config_new();
    if (!cfg)
        return -ENOMEM;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    l->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!l->base)
        return -ENOMEM;
    timeouts_init(l);
    l->listener = evconnlistener_new(l->base, accept_cb, l, 0, -1, l->listen_fd);
    l->stop_ev = event_new(l->base, srv->stop_fd, EV_READ | EV_PERSIST, stop_cb, l);
    l->resume_ev = evtimer_new(l->base, resume_cb, l);
    if (!l->listener || !l->stop_ev || !l->resume_ev)
        return -ENOMEM;
    evconnlistener_set_error_cb(l->listener, accept_error_cb);
    event_add(l->stop_ev, NULL);
    c10k_loopstat_publish(&l->ls); /* counters are extras: run on without */
    return 0;
}

/* event_base_dispatch(), one iteration at a time: each EVLOOP_ONCE call
 * waits, runs the callbacks that became active, and returns, so the end of
 * an iteration is here; its start is the first callback's c10k_loop_touch(). */
static int loop_serve(void *arg)
{
    loop_t *l = arg;
    int rc;

    do {
        rc = event_base_loop(l->base, EVLOOP_ONCE);
        c10k_loop_idle(&l->ls);
    } while (rc == 0 && !event_base_got_break(l->base) && !event_base_got_exit(l->base));
    return rc < 0 ? -EIO : 0;
}

/* After the loop has stopped: connections the grace period cut short are
 * closed here, so every byte the loop allocated is given back. */
static void loop_fini(void *arg)
{
    loop_t *l = arg;

    c10k_loopstat_unpublish(&l->ls);
    while (l->conns)
        conn_close(l->conns);
    listener_close(l);
    if (l->stop_ev)
        event_free(l->stop_ev);
    if (l->resume_ev)
        event_free(l->resume_ev);
    c10k_iopool_free(&l->pool);
    if (l->base)
        event_base_free(l->base);
}

static const c10k_worker_ops_t loop_ops = {
    .size = sizeof(loop_t),
    .init = loop_init,
    .serve = loop_serve,
    .fini = loop_fini,
};

static int libevent_run(c10k_server_t *srv)
{
    return c10k_run_workers(srv, &loop_ops);
}

/* libevent ends the process on a "fatal" error, such as an event base that
 * cannot make its signal socketpair when descriptors run out, by calling
 * exit() from whichever worker thread met it, under the others' feet. Say
 * which server it was and leave at once instead: the other workers are not
 * torn down either way, and exit()'s atexit handlers would run while they
 * still use what those handlers free. */
static void fatal_cb(int err)
{
    static const char msg[] =
        "c10k serve: libevent: fatal error (see its message above); exiting\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

    (void)n;
    (void)err;
    _exit(1);
}

static int libevent_probe(void)
{
    event_set_fatal_callback(fatal_cb);
    return 0;
}

static int libevent_set_opt(const char *name, const char *value)
{
    (void)name;
    (void)value;
    return -EINVAL;
}

static void libevent_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "libevent=%s", event_get_version());
}

const c10k_model_t c10k_model_libevent = {
    .name = "libevent",
    .summary = "event loops on libevent (event_base, evconnlistener), one per worker thread",
    .opts = NULL,
    .variants = NULL,
    .set_opt = libevent_set_opt,
    .describe = libevent_describe,
    .probe = libevent_probe,
    .run = libevent_run,
};
