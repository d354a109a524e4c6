/*
 * servers/libuv/libuv.c - event loops on libuv.
 *
 * What it is
 *   The event-loop model on libuv, the library under Node.js. Each worker
 *   thread runs one uv_loop_t with its own SO_REUSEPORT listener (a uv_tcp_t).
 *   Each connection is a uv_tcp_t that reads into the connection's own buffer
 *   (alloc_cb hands libuv the free end of it) and a uv_timer_t for the header
 *   and keep-alive timeouts.
 *
 * Sending files: the fast path and the fallback
 *   libuv's portable file sender, uv_fs_sendfile(), runs on the thread pool:
 *   every response would cost two thread hand-offs and a wake-up of the loop,
 *   more than the send itself for small files. So the response goes out the
 *   way Node's own fast paths do it on Linux: the head with uv_try_write()
 *   and the body with sendfile(2) on the socket's fd, both synchronous and
 *   zero-copy, from the loop thread. Only when the socket buffer is full does
 *   the rest go through libuv's write queue with uv_write(): the remaining
 *   head, or the next 10 KiB of the file read into the head buffer (a copy),
 *   and when uv_write reports it done, the fast path is tried again. libuv
 *   thus does all the waiting for writability, and nothing bypasses its queue
 *   while a uv_write is pending.
 *
 * Timeouts and limits
 *   A uv_timer_t per connection (libuv keeps timers in a min-heap: O(log n)).
 *   EMFILE on accept: libuv reports it and retries at once, so each loop keeps
 *   a spare descriptor; it gives it up to accept and close the waiting
 *   connections, then takes it back (shed_connections), so the loop never spins.
 *
 * What it costs
 *   Like epoll: one thread per CPU, no switch per request, a small struct per
 *   idle connection; buffers come from a per-loop pool while a request is in
 *   flight. On top: libuv's handle bookkeeping. Reading stops (an epoll_ctl)
 *   only while a response waits on libuv's write queue; a response that goes
 *   out at once leaves the connection reading, as servers/epoll does.
 *
 * What it needs
 *   libuv 1.x (libuv1-dev).
 *
 * How to run it
 *   c10k serve libuv --workers 2 --root DIR
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>
#include <uv.h>

#define POOL_MAX 64

typedef struct loop_s loop_t;

typedef struct conn_s {
    uv_tcp_t tcp; /* first, so a handle pointer is a conn_t pointer */
    uv_timer_t timer;
    uv_write_t wreq;
    loop_t *loop;
    int fd;           /* the socket, for sendfile on the fast path */
    char *buf;        /* C10K_REQ_BUF + C10K_HEAD_BUF, only while busy */
    size_t len, used; /* bytes buffered; bytes the current response answers */
    int64_t deadline; /* header deadline of the request being read */
    c10k_req_t req;
    c10k_resp_t resp;
    c10k_sendstate_t sent;
    size_t chunk; /* bytes of the pending uv_write */
    int handles;  /* open handles: free the conn when both are closed */
    bool closing, sending;
    bool reading; /* between uv_read_start and uv_read_stop */
    struct sockaddr_storage peer;
    struct conn_s *prev, *next;
} conn_t;

struct loop_s {
    c10k_server_t *srv;
    int id;
    uv_loop_t uv;
    uv_tcp_t listener;
    uv_poll_t stop;
    uv_timer_t grace;
    conn_t *conns;
    int nconns;
    bool stopping;
    bool warned;  /* about running out of descriptors, once */
    bool paused;  /* the listener is closed for a moment: see pause_accepting */
    int spare_fd; /* given up when accept() fails with EMFILE */
    int keep_fd;  /* a second reference that keeps the listening socket open */
    uv_timer_t resume;
    char *pool[POOL_MAX];
    int npool;
    pthread_t thread;
};

static void process(conn_t *c);
static void send_more(conn_t *c);

/* ---- buffers and lifetime ---------------------------------------------------------- */

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

static void loop_maybe_done(loop_t *l)
{
    if (l->stopping && l->nconns == 0)
        uv_stop(&l->uv);
}

static void closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    loop_t *l = c->loop;

    if (--c->handles > 0)
        return;
    if (c->buf)
        buf_put(l, c->buf);
    free(c);
    l->nconns--;
    loop_maybe_done(l);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c10k_resp_finish(&c->resp);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, closed_cb);
    uv_close((uv_handle_t *)&c->timer, closed_cb);
}

static void timeout_cb(uv_timer_t *t);

static void timer_arm(conn_t *c, int64_t ms)
{
    uv_timer_start(&c->timer, timeout_cb, ms > 0 ? (uint64_t)ms : 1, 0);
}

/* ---- reading -------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    conn_t *c = h->data;

    (void)hint;
    if (!c->buf)
        c->buf = buf_get(c->loop);
    *out = uv_buf_init(c->buf ? c->buf + c->len : NULL,
                       c->buf ? (unsigned)(C10K_REQ_BUF - c->len) : 0);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;

    (void)b;
    if (n < 0) {
        conn_close(c); /* UV_EOF, a reset, or no buffer (ENOBUFS) */
        return;
    }
    if (n == 0)
        return; /* EAGAIN */
    if (c->len == 0 && c->req.requests > 0) {
        c->deadline = uv_now(&c->loop->uv) + (uint64_t)c->loop->srv->cfg.header_ms;
        timer_arm(c, c->deadline - (int64_t)uv_now(&c->loop->uv));
    }
    c->len += (size_t)n;
    process(c);
}

/* ---- sending ---------------------------------------------------------------------------- */

static void finish_response(conn_t *c)
{
    c10k_log_access(c->loop->srv, (struct sockaddr *)&c->peer, &c->resp, c->sent.done);
    c10k_resp_finish(&c->resp);
    c->sending = false;
    if (!c->resp.keep_alive) {
        conn_close(c);
        return;
    }
    memmove(c->buf, c->buf + c->used, c->len - c->used);
    c->len -= c->used;
    c->deadline = uv_now(&c->loop->uv) + (uint64_t)c->loop->srv->cfg.header_ms;
    process(c);
}

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;

    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->sent.done += c->chunk;
    send_more(c);
}

/* The socket is full: queue the next piece on libuv's write queue. */
static void send_queued(conn_t *c)
{
    char *head = c->buf + C10K_REQ_BUF;
    uv_buf_t b;

    if (c->sent.done < c->resp.head_len) {
        b = uv_buf_init(head + c->sent.done, (unsigned)(c->resp.head_len - c->sent.done));
    } else if (c->resp.body_fd >= 0) {
        /* The head is out, so its buffer holds the next piece of the file. */
        size_t off = c->sent.done - c->resp.head_len;
        size_t want = c->resp.body_len - off;
        ssize_t n = pread(c->resp.body_fd, head, want < C10K_HEAD_BUF ? want : C10K_HEAD_BUF,
                          c->resp.body_off + (off_t)off);
        if (n <= 0) {
            conn_close(c); /* the file shrank: never send a short body silently */
            return;
        }
        b = uv_buf_init(head, (unsigned)n);
    } else {
        size_t off = c->sent.done - c->resp.head_len;
        b = uv_buf_init((char *)c->resp.body_mem + off, (unsigned)(c->resp.body_mem_len - off));
    }
    /* No reading while a response waits on the queue: pipelined requests stay
     * in the kernel, and the request buffer cannot fill up behind it. */
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    c->chunk = b.len;
    c->wreq.data = c;
    timer_arm(c, C10K_SEND_TIMEOUT_MS);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0)
        conn_close(c);
}

static void send_more(conn_t *c)
{
    switch (c10k_send_plan_nb(c->fd, &c->resp, c->buf + C10K_REQ_BUF, &c->sent)) {
    case C10K_OK:
        finish_response(c);
        break;
    case C10K_AGAIN:
        send_queued(c);
        break;
    default:
        conn_close(c);
    }
}

/* ---- the cycle ------------------------------------------------------------------------ */

static void process(conn_t *c)
{
    loop_t *l = c->loop;
    int64_t now = (int64_t)uv_now(&l->uv);

    if (c->closing || c->sending)
        return;
    if (c->len > 0) {
        ssize_t used;
        c->req.force_close = atomic_load(&l->srv->stopping);
        used = c10k_http_handle(&l->srv->site, &c->req, c->buf, c->len, c->buf + C10K_REQ_BUF,
                                C10K_HEAD_BUF, &c->resp);
        if (used < 0) {
            conn_close(c);
            return;
        }
        if (used > 0) {
            c->used = (size_t)used;
            c->sending = true;
            memset(&c->sent, 0, sizeof(c->sent));
            send_more(c);
            return;
        }
    }
    if (c->len == 0 && c->buf) {
        buf_put(l, c->buf); /* idle: an idle connection is just conn_t */
        c->buf = NULL;
    }
    if (c->len == 0 && c->req.requests > 0) {
        if (atomic_load(&l->srv->stopping)) {
            conn_close(c);
            return;
        }
        timer_arm(c, l->srv->cfg.keepalive_ms);
    } else {
        timer_arm(c, c->deadline - now);
    }
    if (!c->reading) {
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        c->reading = true;
    }
}

static void timeout_cb(uv_timer_t *t)
{
    conn_t *c = t->data;

    if (!c->sending && c->len > 0 &&
        c10k_http_timeout(&c->req, c->len, c->buf + C10K_REQ_BUF, C10K_HEAD_BUF, &c->resp)) {
        /* One try: a client that will not take even the 408 is just closed. */
        memset(&c->sent, 0, sizeof(c->sent));
        c10k_send_plan_nb(c->fd, &c->resp, c->buf + C10K_REQ_BUF, &c->sent);
        c10k_log_access(c->loop->srv, (struct sockaddr *)&c->peer, &c->resp, c->sent.done);
    }
    conn_close(c); /* header timeout, idle keep-alive, or send timeout */
}

/* ---- accepting and stopping ----------------------------------------------------------- */

/* Out of descriptors. libuv retries accept() at once after reporting
 * EMFILE, so doing nothing would spin. Free the spare descriptor, accept and
 * close what is waiting (those clients see a reset, as with nginx and libuv's
 * own trick), and take the spare again. Each wake-up then costs one real
 * connection, never a busy loop. */
static void shed_connections(loop_t *l)
{
    uv_os_fd_t lfd;
    int fd;

    if (l->spare_fd < 0 || uv_fileno((uv_handle_t *)&l->listener, &lfd) < 0)
        return;
    close(l->spare_fd);
    while ((fd = accept(lfd, NULL, NULL)) >= 0)
        close(fd);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!l->warned)
        c10k_warn(l->srv, "accept: out of descriptors; closing new connections until some free");
    l->warned = true;
}

static void connection_cb(uv_stream_t *server, int status);

static void resume_cb(uv_timer_t *t)
{
    loop_t *l = t->data;
    int fd = dup(l->keep_fd);

    if (fd < 0 || l->stopping) {
        if (fd >= 0)
            close(fd);
        if (!l->stopping)
            uv_timer_start(&l->resume, resume_cb, 100, 0); /* still no descriptor */
        return;
    }
    uv_tcp_init(&l->uv, &l->listener);
    l->listener.data = l;
    uv_tcp_open(&l->listener, fd);
    uv_listen((uv_stream_t *)&l->listener, l->srv->cfg.backlog, connection_cb);
    l->paused = false;
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void paused_cb(uv_handle_t *h)
{
    loop_t *l = h->data;

    uv_timer_start(&l->resume, resume_cb, 100, 0);
}

/* No spare descriptor either (another loop took the one that was freed):
 * libuv would retry accept() forever inside one callback, so close this
 * loop's listener handle for 100 ms. keep_fd holds the socket itself open,
 * and clients wait in its backlog meanwhile. */
static void pause_accepting(loop_t *l)
{
    if (l->paused || l->stopping)
        return;
    l->paused = true;
    uv_close((uv_handle_t *)&l->listener, paused_cb);
}

static void connection_cb(uv_stream_t *server, int status)
{
    loop_t *l = server->data;
    conn_t *c;
    int len = sizeof(c->peer);
    uv_os_fd_t fd;

    if (status == UV_EMFILE || status == UV_ENFILE) {
        shed_connections(l);
        if (l->spare_fd < 0)
            pause_accepting(l);
        return;
    }
    if (status < 0) {
        c10k_warn(l->srv, "accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->loop = l;
    c->resp.body_fd = -1;
    c->tcp.data = c->timer.data = c;
    uv_tcp_init(&l->uv, &c->tcp);
    uv_timer_init(&l->uv, &c->timer);
    c->handles = 2;
    l->nconns++;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0) {
        conn_close(c);
        return;
    }
    c->fd = fd;
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    c10k_req_init(&c->req);
    c->deadline = (int64_t)uv_now(&l->uv) + l->srv->cfg.header_ms;
    process(c);
}

static void grace_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void stop_cb(uv_poll_t *p, int status, int events)
{
    loop_t *l = p->data;

    (void)status;
    (void)events;
    uv_poll_stop(p);
    if (!l->paused)
        uv_close((uv_handle_t *)&l->listener, NULL);
    uv_timer_stop(&l->resume);
    close(l->keep_fd); /* the last reference: new clients are now refused */
    l->keep_fd = -1;
    l->stopping = true;
    for (conn_t *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (!c->sending && c->len == 0 && c->req.requests > 0)
            conn_close(c); /* idle keep-alive: nobody is owed anything */
    }
    uv_timer_start(&l->grace, grace_cb, (uint64_t)l->srv->cfg.grace_ms, 0);
    uv_unref((uv_handle_t *)&l->grace);
    loop_maybe_done(l);
}

static int loop_init(loop_t *l)
{
    c10k_server_t *srv = l->srv;
    int fd = l->id == 0 ? srv->listen_fd : c10k_listen_more(srv);
    int rc;

    if (fd < 0)
        return fd;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    l->keep_fd = dup(fd);
    rc = uv_loop_init(&l->uv);
    if (rc < 0)
        return rc;
    uv_tcp_init(&l->uv, &l->listener);
    l->listener.data = l;
    rc = uv_tcp_open(&l->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->listener, srv->cfg.backlog, connection_cb);
    if (rc == 0)
        rc = uv_poll_init(&l->uv, &l->stop, srv->stop_fd);
    if (rc < 0)
        return rc;
    l->stop.data = l;
    uv_poll_start(&l->stop, UV_READABLE, stop_cb);
    uv_timer_init(&l->uv, &l->grace);
    uv_timer_init(&l->uv, &l->resume);
    l->resume.data = l;
    return 0;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    loop_t *l = arg;

    if (uv_is_closing(h))
        return;
    if (h == (uv_handle_t *)&l->listener || h == (uv_handle_t *)&l->stop ||
        h == (uv_handle_t *)&l->grace || h == (uv_handle_t *)&l->resume)
        uv_close(h, NULL);
    else
        conn_close(h->data); /* a connection's socket or timer */
}

/* After the loop has stopped: close every handle (connections the grace
 * period cut short too) and let the close callbacks free them. */
static void loop_free(loop_t *l)
{
    uv_walk(&l->uv, close_walk_cb, l);
    l->stopping = false; /* no uv_stop from closed_cb: run until all closed */
    uv_run(&l->uv, UV_RUN_DEFAULT);
    uv_loop_close(&l->uv);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    if (l->keep_fd >= 0)
        close(l->keep_fd);
    while (l->npool)
        free(l->pool[--l->npool]);
}

static void *loop_thread(void *arg)
{
    loop_t *l = arg;

    c10k_pin_worker(l->srv, l->id);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    return NULL;
}

static int libuv_run(c10k_server_t *srv)
{
    int n = c10k_worker_count(srv), started = 0, rc = 0;
    loop_t *loops = calloc((size_t)n, sizeof(loop_t));

    if (!loops)
        return -ENOMEM;
    for (int i = 0; i < n && rc == 0; i++) {
        loops[i].srv = srv;
        loops[i].id = i;
        rc = loop_init(&loops[i]);
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
        if (loops[i].srv)
            loop_free(&loops[i]);
    free(loops);
    return rc;
}

static int libuv_set_opt(const char *name, const char *value)
{
    (void)name;
    (void)value;
    return -EINVAL;
}

static void libuv_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "libuv=%s", uv_version_string());
}

const c10k_model_t c10k_model_libuv = {
    .name = "libuv",
    .summary = "event loops on libuv (uv_tcp_t, uv_timer_t), one per worker thread",
    .opts = NULL,
    .variants = NULL,
    .set_opt = libuv_set_opt,
    .describe = libuv_describe,
    .run = libuv_run,
};
