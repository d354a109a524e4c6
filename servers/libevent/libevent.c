/*
 * servers/libevent/libevent.c - event loops on libevent.
 *
 * What it is
 *   The epoll model again, with the loop, the timers and the accept loop
 *   taken from libevent, the library memcached and tmux are built on. Each
 *   worker thread runs one event_base with its own SO_REUSEPORT listener
 *   (an evconnlistener). Each connection is one `struct event` whose callback
 *   reads into the connection's own buffer, runs the shared handler, and
 *   sends the plan; the same event is re-armed for EV_WRITE while the socket
 *   is full.
 *
 * Why events and not bufferevents
 *   A bufferevent reads into an evbuffer and the handler needs one
 *   contiguous head, so every request would be copied out again; and
 *   evbuffer_add_file() would have to re-open or dup the file per response.
 *   A plain event with read(2) into our buffer and sendfile(2) from the plan
 *   copies nothing, which is the fair comparison with servers/epoll.
 *
 * Timeouts
 *   The header and keep-alive timeouts are the events' own timeouts. Both
 *   durations are registered as libevent "common timeouts", which keeps each
 *   one in a FIFO queue (O(1) per operation) instead of the min-heap, since
 *   every connection uses the same few durations.
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
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX 64 /* spare request buffers kept per loop */

typedef struct loop_s loop_t;

typedef struct conn_s {
    loop_t *loop;
    int fd;
    struct event *ev; /* EV_READ, or EV_WRITE while a send is parked */
    short armed;      /* what ev is assigned for: 0 (not yet), EV_READ or EV_WRITE */
    char *buf;        /* C10K_REQ_BUF + C10K_HEAD_BUF, only while busy */
    size_t len;       /* request bytes in buf */
    size_t used;      /* bytes of buf the response being sent answers */
    int64_t deadline; /* header deadline of the request being read */
    c10k_req_t req;
    c10k_resp_t resp;
    c10k_sendstate_t sent;
    bool sending;
    struct sockaddr_in6 peer;
    struct conn_s *prev, *next; /* the loop's connections, for the stop */
} conn_t;

struct loop_s {
    c10k_server_t *srv;
    int id;
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *stop_ev, *resume_ev;
    const struct timeval *header_tv, *keepalive_tv, *send_tv; /* common timeouts */
    conn_t *conns;
    int nconns;
    char *pool[POOL_MAX];
    int npool;
    pthread_t thread;
};

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);

/* ---- buffers and connection lifetime ----------------------------------------------- */

static char *buf_get(loop_t *l)
{
    return l->npool ? l->pool[--l->npool] : malloc(C10K_REQ_BUF + C10K_HEAD_BUF);
}

static void buf_put(loop_t *l, char *buf)
{
    if (l->npool < POOL_MAX)
        l->pool[l->npool++] = buf;
    else
        free(buf);
}

static void conn_close(conn_t *c)
{
    loop_t *l = c->loop;

    c10k_resp_finish(&c->resp);
    event_free(c->ev);
    close(c->fd);
    if (c->buf)
        buf_put(l, c->buf);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    if (--l->nconns == 0 && atomic_load(&l->srv->stopping))
        event_base_loopbreak(l->base);
}

/* Wait for `what` with a timeout: the remaining header time, the keep-alive
 * time when idle, or the send timeout. The event is re-assigned only when
 * `what` changes: event_add() on a pending event just moves its timeout, while
 * event_del() + event_add() would cost two epoll_ctl calls per request. */
static void conn_arm(conn_t *c, short what)
{
    const struct timeval *tv;
    struct timeval left;

    if (what == EV_WRITE) {
        tv = c->loop->send_tv;
    } else if (c->len == 0 && c->req.requests > 0) {
        tv = c->loop->keepalive_tv;
    } else {
        int64_t ms = c->deadline - c10k_now_ms();
        if (ms < 1)
            ms = 1;
        left.tv_sec = ms / 1000;
        left.tv_usec = (ms % 1000) * 1000;
        tv = ms == c->loop->srv->cfg.header_ms ? c->loop->header_tv : &left;
    }
    if (c->armed != what) {
        event_del(c->ev);
        event_assign(c->ev, c->loop->base, c->fd, what | EV_PERSIST, conn_event_cb, c);
        c->armed = what;
    }
    event_add(c->ev, tv);
}

/* ---- the request/response cycle ----------------------------------------------------- */

/* The response is out: log it, and keep going with pipelined bytes. Returns
 * false if the connection was closed. */
static bool finish_response(conn_t *c)
{
    bool keep = c->resp.keep_alive;

    c10k_log_access(c->loop->srv, (struct sockaddr *)&c->peer, &c->resp, c->sent.done);
    c10k_resp_finish(&c->resp);
    c->sending = false;
    if (!keep) {
        conn_close(c);
        return false;
    }
    memmove(c->buf, c->buf + c->used, c->len - c->used);
    c->len -= c->used;
    c->deadline = c10k_now_ms() + c->loop->srv->cfg.header_ms;
    return true;
}

/* Send the current plan. Returns false if the connection is gone or parked. */
static bool send_plan(conn_t *c)
{
    char *head = c->buf + C10K_REQ_BUF;

    switch (c10k_send_plan_nb(c->fd, &c->resp, head, &c->sent)) {
    case C10K_OK:
        return finish_response(c);
    case C10K_AGAIN:
        c->sending = true;
        conn_arm(c, EV_WRITE);
        return false;
    default:
        conn_close(c);
        return false;
    }
}

/* Run the handler over everything buffered. */
static void process(conn_t *c)
{
    for (;;) {
        ssize_t used;

        c->req.force_close = atomic_load(&c->loop->srv->stopping);
        used = c10k_http_handle(&c->loop->srv->site, &c->req, c->buf, c->len, c->buf + C10K_REQ_BUF,
                                C10K_HEAD_BUF, &c->resp);
        if (used < 0) {
            conn_close(c);
            return;
        }
        if (used == C10K_INCOMPLETE)
            break;
        memset(&c->sent, 0, sizeof(c->sent));
        c->used = (size_t)used;
        if (!send_plan(c))
            return;
    }
    if (c->len == 0) {
        /* Idle: give the buffers back; an idle connection is just conn_t. */
        buf_put(c->loop, c->buf);
        c->buf = NULL;
    }
    if (c->len == 0 && atomic_load(&c->loop->srv->stopping)) {
        conn_close(c);
        return;
    }
    conn_arm(c, EV_READ);
}

static void handle_timeout(conn_t *c)
{
    char *head;

    if (c->sending || !c->buf) {
        conn_close(c); /* send timeout, or idle keep-alive */
        return;
    }
    head = c->buf + C10K_REQ_BUF;
    if (c10k_http_timeout(&c->req, c->len, head, C10K_HEAD_BUF, &c->resp)) {
        memset(&c->sent, 0, sizeof(c->sent));
        /* One try: the socket is almost surely writable, and a client that
         * stalls even this gets closed. */
        c10k_send_plan_nb(c->fd, &c->resp, head, &c->sent);
        c10k_log_access(c->loop->srv, (struct sockaddr *)&c->peer, &c->resp, c->sent.done);
    }
    conn_close(c);
}

static void handle_readable(conn_t *c)
{
    bool was_idle = c->len == 0;
    ssize_t n;

    if (!c->buf && !(c->buf = buf_get(c->loop))) {
        conn_close(c);
        return;
    }
    n = read(c->fd, c->buf + c->len, C10K_REQ_BUF - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    if (was_idle && c->req.requests > 0)
        c->deadline = c10k_now_ms() + c->loop->srv->cfg.header_ms;
    c->len += (size_t)n;
    process(c);
}

static void handle_writable(conn_t *c)
{
    if (send_plan(c))
        process(c);
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;

    (void)fd;
    if (what & EV_TIMEOUT)
        handle_timeout(c);
    else if (what & EV_WRITE)
        handle_writable(c);
    else if (what & EV_READ)
        handle_readable(c);
}

/* ---- accepting and stopping --------------------------------------------------------- */

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    loop_t *l = arg;
    conn_t *c = calloc(1, sizeof(*c));

    (void)lis;
    if (!c || !(c->ev = event_new(l->base, fd, EV_READ, conn_event_cb, c))) {
        free(c);
        close(fd);
        return;
    }
    c->loop = l;
    c->fd = fd;
    c->resp.body_fd = -1;
    memcpy(&c->peer, sa, (size_t)socklen < sizeof(c->peer) ? (size_t)socklen : sizeof(c->peer));
    c10k_req_init(&c->req);
    c->deadline = c10k_now_ms() + l->srv->cfg.header_ms;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    conn_arm(c, EV_READ);
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

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    loop_t *l = arg;
    struct timeval grace = {l->srv->cfg.grace_ms / 1000, (l->srv->cfg.grace_ms % 1000) * 1000};

    (void)fd;
    (void)what;
    event_del(l->stop_ev);
    if (l->listener)
        evconnlistener_free(l->listener);
    l->listener = NULL;
    for (conn_t *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (!c->buf && c->req.requests > 0)
            conn_close(c); /* idle keep-alive: nobody is owed anything */
    }
    if (l->nconns == 0)
        event_base_loopbreak(l->base);
    else
        event_base_loopexit(l->base, &grace);
}

static const struct timeval *common_timeout(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    return event_base_init_common_timeout(base, &tv);
}

static int loop_init(loop_t *l)
{
    c10k_server_t *srv = l->srv;
    int fd = l->id == 0 ? srv->listen_fd : c10k_listen_more(srv);
    struct event_config *cfg;

    if (fd < 0)
        return fd;
    cfg = event_config_new();
    if (!cfg)
        return -ENOMEM;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    l->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!l->base)
        return -ENOMEM;
    l->header_tv = common_timeout(l->base, srv->cfg.header_ms);
    l->keepalive_tv = common_timeout(l->base, srv->cfg.keepalive_ms);
    l->send_tv = common_timeout(l->base, C10K_SEND_TIMEOUT_MS);
    l->listener = evconnlistener_new(l->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    l->stop_ev = event_new(l->base, srv->stop_fd, EV_READ | EV_PERSIST, stop_cb, l);
    l->resume_ev = evtimer_new(l->base, resume_cb, l);
    if (!l->listener || !l->stop_ev || !l->resume_ev)
        return -ENOMEM;
    evconnlistener_set_error_cb(l->listener, accept_error_cb);
    event_add(l->stop_ev, NULL);
    return 0;
}

/* After the loop has stopped: connections the grace period cut short are
 * closed here, so every byte the loop allocated is given back. */
static void loop_free(loop_t *l)
{
    while (l->conns)
        conn_close(l->conns);
    if (l->listener)
        evconnlistener_free(l->listener);
    if (l->stop_ev)
        event_free(l->stop_ev);
    if (l->resume_ev)
        event_free(l->resume_ev);
    while (l->npool)
        free(l->pool[--l->npool]);
    if (l->base)
        event_base_free(l->base);
}

static void *loop_thread(void *arg)
{
    loop_t *l = arg;

    c10k_pin_worker(l->srv, l->id);
    event_base_dispatch(l->base);
    return NULL;
}

static int libevent_run(c10k_server_t *srv)
{
    int n = c10k_worker_count(srv), started = 0, rc = 0;
    loop_t *loops = calloc((size_t)n, sizeof(loop_t));

    if (!loops)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        loops[i].srv = srv;
        loops[i].id = i;
        rc = loop_init(&loops[i]);
        if (rc < 0)
            break;
    }
    for (int i = 0; rc == 0 && i < n; i++, started++)
        rc = -pthread_create(&loops[i].thread, NULL, loop_thread, &loops[i]);
    if (rc == 0)
        c10k_wait_for_stop(srv);
    else
        c10k_request_stop(srv);
    for (int i = 0; i < started; i++)
        pthread_join(loops[i].thread, NULL);
    for (int i = 0; i < n; i++)
        loop_free(&loops[i]);
    free(loops);
    return rc;
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
    .run = libevent_run,
};
