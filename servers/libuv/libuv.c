/*
 * servers/libuv/libuv.c - event loops on libuv.
 *
 * What it is
 *   The event-loop model on libuv, the library under Node.js. Each worker
 *   thread runs one uv_loop_t with its own SO_REUSEPORT listener (a uv_tcp_t).
 *   Each connection is a uv_tcp_t that reads into the connection's own buffer
 *   (alloc_cb hands libuv the free end of it) and a uv_timer_t for conn.h's
 *   deadline. What happens next (read, send, linger, close) is decided by the
 *   lifecycle every model shares (common/conn.h): libuv reports, conn.h
 *   answers, this file does it the libuv way.
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
 * A disk that is slow (--fs-pool)
 *   The fast path's sendfile runs on the loop, so a page not in memory puts
 *   the loop to sleep until the disk delivers it, with every connection it
 *   holds. --fs-pool does it the way Node does: the body is read with
 *   uv_fs_read on libuv's thread pool in 64 KiB pieces (Node's
 *   fs.createReadStream: its highWaterMark), each piece written with
 *   uv_write (the head goes with the first), and the loop never touches the
 *   file. libuv does not ask whether the data is in memory, so every piece
 *   of every file pays two thread hand-offs, warm or cold, and a copy; and
 *   the pool is small (UV_THREADPOOL_SIZE, 4 by default) and shared by the
 *   loops, so with more cold reads in flight than pool threads, a read of a
 *   file in memory queues behind them (tests/coldcache shows it).
 *   uv_fs_sendfile would avoid the copy, but it is one sendfile(2) on a
 *   non-blocking socket: when the socket is full it fails with EAGAIN, and
 *   libuv has no way to wait for a uv_tcp_t to be writable short of
 *   uv_write. A uv_fs_read in flight holds the body's descriptor, so a
 *   connection closed meanwhile gives its response back to conn.h only in
 *   fs_read_cb.
 *
 * Stalls
 *   Each loop counts its iterations, those over 1 ms and their duration
 *   (common/loopstat.h): an iteration begins at the first callback after
 *   libuv's poll returns and ends in a uv_prepare_t callback, which libuv
 *   runs just before it polls again.
 *
 * Timeouts and limits
 *   A uv_timer_t per connection (libuv keeps timers in a min-heap: O(log n)),
 *   started for conn.h's deadline (header, keep-alive, send or lingering).
 *   EMFILE on accept: libuv reports it and retries at once, so each loop keeps
 *   a spare descriptor; it gives it up to accept and close the waiting
 *   connections, then takes it back (shed_connections); once nothing is left
 *   to shed it stops accepting for 100 ms (pause_accepting), so the loop
 *   never spins.
 *   libuv closes the descriptor a uv_tcp_t was opened on, so the listener
 *   handle gets a dup() of the worker's listener, which stays open (and in
 *   the SO_REUSEPORT group) while the handle is paused.
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
 *   c10k serve libuv --root DIR --fs-pool
 */
#include "conn.h"
#include "loopstat.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* --fs-pool: the body is read in pieces of this size, as Node's
 * fs.createReadStream does (its highWaterMark). */
#define FS_CHUNK      (64 * 1024)
#define FS_CHUNK_KEEP 64 /* free pieces a loop keeps */

static struct {
    bool fs_pool; /* --fs-pool: file bodies are read on libuv's thread pool */
} opts;

typedef struct loop_s loop_t;

typedef struct conn_s {
    uv_tcp_t tcp; /* first, so a handle pointer is a conn_t pointer */
    uv_timer_t timer;
    uv_write_t wreq;
    loop_t *loop;
    int fd;         /* the socket, for sendfile on the fast path */
    c10k_conn_t cc; /* the lifecycle (conn.h) */
    size_t chunk;   /* bytes of the pending uv_write */
    int handles;    /* open handles (and a pending uv_fs_read): free at 0 */
    bool closing;
    bool reading; /* between uv_read_start and uv_read_stop */
    bool writing; /* a uv_write is pending: the fast path waits for it */
    bool fs_busy; /* --fs-pool: a uv_fs_read is pending on the thread pool */
    uv_fs_t fsreq;
    char *fsbuf; /* --fs-pool: the piece of the body being read and written */
    struct sockaddr_storage peer;
    struct conn_s *prev, *next;
} conn_t;

struct loop_s {
    c10k_server_t *srv;
    int id;
    bool uv_ready; /* uv_loop_init succeeded: there is a loop to tear down */
    uv_loop_t uv;
    uv_tcp_t listener; /* on a dup() of listen_fd (libuv closes it) */
    uv_poll_t stop;
    uv_timer_t grace;
    uv_timer_t resume;
    conn_t *conns;
    int nconns;
    bool stopping;
    bool warned;   /* about running out of descriptors, once */
    bool paused;   /* the listener handle is closed for a moment: see pause_accepting */
    int listen_fd; /* the worker's listener (server.h: who owns what) */
    int spare_fd;  /* given up when accept() fails with EMFILE */
    c10k_iopool_t pool;
    char *fsbufs[FS_CHUNK_KEEP]; /* --fs-pool: free pieces */
    int nfsbufs;
    uv_prepare_t prepare; /* runs just before the loop waits: an iteration ends */
    c10k_loopstat_t ls;   /* iterations and stalls */
    char sink[65536];     /* lingering reads land here */
};

static void conn_act(conn_t *c);

/* ---- lifetime -------------------------------------------------------------------------- */

static void loop_maybe_done(loop_t *l)
{
    if (l->stopping && l->nconns == 0)
        uv_stop(&l->uv);
}

/* One of the conn's handles (or its pending uv_fs_read) is done with it. */
static void conn_unref(conn_t *c)
{
    loop_t *l = c->loop;

    if (--c->handles > 0)
        return;
    free(c);
    l->nconns--;
    loop_maybe_done(l);
}

static void closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;

    c10k_loop_touch(&c->loop->ls);
    conn_unref(c);
}

static char *fsbuf_get(loop_t *l)
{
    return l->nfsbufs > 0 ? l->fsbufs[--l->nfsbufs] : malloc(FS_CHUNK);
}

static void fsbuf_put(conn_t *c)
{
    loop_t *l = c->loop;

    if (!c->fsbuf)
        return;
    if (l->nfsbufs < FS_CHUNK_KEEP)
        l->fsbufs[l->nfsbufs++] = c->fsbuf;
    else
        free(c->fsbuf);
    c->fsbuf = NULL;
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    /* A uv_fs_read on the pool still reads the body's file: conn.h closes
     * it, so that waits for fs_read_cb. */
    if (!c->fs_busy) {
        c10k_iopool_put(&c->loop->pool, c10k_conn_end(&c->cc));
        if (!c->writing)
            fsbuf_put(c);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, closed_cb); /* a pending uv_write is cancelled */
    uv_close((uv_handle_t *)&c->timer, closed_cb);
}

static void timeout_cb(uv_timer_t *t)
{
    conn_t *c = t->data;

    c10k_loop_touch(&c->loop->ls);
    c10k_conn_timeout(&c->cc, c10k_now_ms());
    conn_act(c);
}

static void timer_arm(conn_t *c)
{
    int64_t ms = c->cc.deadline - c10k_now_ms();

    uv_timer_start(&c->timer, timeout_cb, ms > 0 ? (uint64_t)ms : 1, 0);
}

/* ---- reading -------------------------------------------------------------------------- */

/* conn.h's buffer while reading a request, the sink while lingering. libuv
 * reads only while conn.h waits to read: never while a response is sent. */
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    conn_t *c = h->data;
    size_t room = 0;
    char *at = NULL;

    (void)hint;
    c10k_loop_touch(&c->loop->ls);
    if (c->cc.next == C10K_LINGER) {
        at = c->loop->sink;
        room = sizeof(c->loop->sink);
    } else if (c->cc.next == C10K_READ &&
               (c->cc.io || (c->cc.io = c10k_iopool_get(&c->loop->pool)))) {
        at = c10k_conn_room(&c->cc, &room);
    }
    *out = uv_buf_init(at, (unsigned)room); /* 0 bytes: read_cb gets UV_ENOBUFS */
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;

    (void)b;
    if (n == 0)
        return; /* EAGAIN */
    /* libuv's errors are negative errno values; UV_EOF is the client's EOF. */
    c10k_conn_read(&c->cc, n == UV_EOF ? 0 : n, c10k_now_ms());
    conn_act(c);
}

/* C10K_READ or C10K_LINGER: read (libuv watches the socket), until the deadline. */
static void wait_read(conn_t *c)
{
    c10k_iopool_put(&c->loop->pool, c10k_conn_idle_io(&c->cc));
    if (c10k_conn_shutdown_due(&c->cc))
        shutdown(c->fd, SHUT_WR); /* nothing is queued: the last response is out */
    if (!c->reading) {
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        c->reading = true;
    }
    timer_arm(c);
}

/* ---- sending ---------------------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c10k_io_t *io = c->cc.io;

    c10k_loop_touch(&c->loop->ls);
    c->writing = false;
    if (c->closing)
        return;
    if (status == 0)
        io->sent.done += c->chunk;
    c10k_conn_sent(&c->cc, status < 0 ? C10K_ERROR : C10K_AGAIN, c10k_now_ms());
    conn_act(c);
}

/* The socket is full: queue the next piece on libuv's write queue. */
static void send_queued(conn_t *c)
{
    c10k_io_t *io = c->cc.io;
    c10k_resp_t *r = &io->resp;
    size_t done = io->sent.done;
    uv_buf_t b;

    if (done < r->head_len) {
        b = uv_buf_init(io->head + done, (unsigned)(r->head_len - done));
    } else if (r->body_fd >= 0) {
        /* The head is out, so its buffer holds the next piece of the file. */
        size_t off = done - r->head_len, want = r->body_len - off;
        ssize_t n = pread(r->body_fd, io->head, want < C10K_HEAD_BUF ? want : C10K_HEAD_BUF,
                          r->body_off + (off_t)off);
        if (n <= 0) { /* the file shrank: never send a short body silently */
            c10k_conn_sent(&c->cc, C10K_ERROR, c10k_now_ms());
            conn_close(c);
            return;
        }
        b = uv_buf_init(io->head, (unsigned)n);
    } else {
        size_t off = done - r->head_len;
        b = uv_buf_init((char *)r->body_mem + off, (unsigned)(r->body_mem_len - off));
    }
    /* No reading while a response waits on the queue: pipelined requests stay
     * in the kernel (conn.h reads nothing until the response is sent). */
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    c->chunk = b.len;
    c->wreq.data = c;
    timer_arm(c);
    c->writing = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) == 0;
    if (!c->writing)
        conn_close(c);
}

/* C10K_SEND: the fast path, then libuv's queue for what the socket did not
 * take. Returns true when the whole plan went (conn.h then says what next). */
static bool send_now(conn_t *c)
{
    c10k_io_t *io = c->cc.io;
    c10k_status_t st = c10k_send_plan_nb(c->fd, &io->resp, io->head, &io->sent);

    c10k_conn_sent(&c->cc, st, c10k_now_ms());
    if (st != C10K_AGAIN)
        return true;
    send_queued(c);
    return false;
}

/* ---- --fs-pool: the body through libuv's thread pool --------------------------------- */

/* A response whose body comes from a file goes through the pool. */
static bool fs_body(const c10k_io_t *io)
{
    return opts.fs_pool && io->resp.body_fd >= 0 && io->resp.body_len > 0;
}

static void fs_write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c10k_io_t *io = c->cc.io;
    c10k_resp_t *r = &io->resp;
    c10k_status_t st;

    c10k_loop_touch(&c->loop->ls);
    c->writing = false;
    if (c->closing) {
        fsbuf_put(c);
        return;
    }
    if (status < 0) {
        st = C10K_ERROR;
    } else {
        io->sent.done += c->chunk;
        st = io->sent.done == r->head_len + r->body_len ? C10K_OK : C10K_AGAIN;
    }
    if (st != C10K_AGAIN)
        fsbuf_put(c);
    c10k_conn_sent(&c->cc, st, c10k_now_ms());
    conn_act(c); /* C10K_SEND again: the next piece */
}

/* A piece of the body was read on the pool: write it, after what is left of
 * the head (the head goes with the first piece, as Node writes it). */
static void fs_read_cb(uv_fs_t *req)
{
    conn_t *c = req->data;
    c10k_io_t *io = c->cc.io;
    ssize_t n = req->result;
    uv_buf_t b[2];
    int nb = 0;

    c10k_loop_touch(&c->loop->ls);
    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    if (c->closing) { /* what conn_close() left for now */
        c10k_iopool_put(&c->loop->pool, c10k_conn_end(&c->cc));
        fsbuf_put(c);
        conn_unref(c);
        return;
    }
    conn_unref(c); /* not the last: the handles are open */
    if (n <= 0) {  /* an error, or the file shrank: never send a short body */
        c10k_conn_sent(&c->cc, C10K_ERROR, c10k_now_ms());
        conn_act(c);
        return;
    }
    if (io->sent.done < io->resp.head_len)
        b[nb++] =
            uv_buf_init(io->head + io->sent.done, (unsigned)(io->resp.head_len - io->sent.done));
    b[nb++] = uv_buf_init(c->fsbuf, (unsigned)n);
    c->chunk = b[0].len + (nb > 1 ? b[1].len : 0);
    c->wreq.data = c;
    c->writing = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b, (unsigned)nb, fs_write_cb) == 0;
    if (!c->writing)
        conn_close(c);
}

/* C10K_SEND with a file body: read its next piece with uv_fs_read (pread on
 * a pool thread), then uv_write it; the loop never touches the file. */
static void fs_send(conn_t *c)
{
    c10k_resp_t *r = &c->cc.io->resp;
    size_t done = c->cc.io->sent.done;
    size_t off = done > r->head_len ? done - r->head_len : 0;
    size_t want = r->body_len - off < FS_CHUNK ? r->body_len - off : FS_CHUNK;
    uv_buf_t b;

    if (c->reading) { /* nothing is read while a response is under way (conn.h) */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (!c->fsbuf && !(c->fsbuf = fsbuf_get(c->loop))) {
        c10k_conn_sent(&c->cc, C10K_ERROR, c10k_now_ms());
        conn_close(c);
        return;
    }
    b = uv_buf_init(c->fsbuf, (unsigned)want);
    c->fsreq.data = c;
    timer_arm(c);
    if (uv_fs_read(&c->loop->uv, &c->fsreq, r->body_fd, &b, 1, r->body_off + (int64_t)off,
                   fs_read_cb) < 0) {
        c10k_conn_sent(&c->cc, C10K_ERROR, c10k_now_ms());
        conn_close(c);
        return;
    }
    c->fs_busy = true;
    c->handles++; /* the pending read holds the conn: conn_unref() in fs_read_cb */
}

/* Do what conn.h asks, the libuv way, until it means waiting. */
static void conn_act(conn_t *c)
{
    for (;;) {
        switch (c->cc.next) {
        case C10K_SEND:
            if (c->writing || c->fs_busy) {
                timer_arm(c); /* a timer that fired early: wait on */
                return;       /* write_cb or fs_read_cb goes on */
            }
            if (fs_body(c->cc.io)) {
                fs_send(c);
                return;
            }
            if (!send_now(c))
                return;
            break;
        case C10K_READ:
        case C10K_LINGER:
            wait_read(c);
            return;
        default:
            conn_close(c);
            return;
        }
    }
}

/* ---- accepting and stopping ----------------------------------------------------------- */

/* Out of descriptors. Free the spare descriptor, accept and close what is
 * waiting (those clients see a reset, as with libuv's own trick), and take
 * the spare again. Returns how many were closed: with none, connection_cb
 * pauses accepting (pause_accepting says why). */
static int shed_connections(loop_t *l)
{
    uv_os_fd_t lfd;
    int fd, shed = 0;

    if (l->spare_fd < 0 || uv_fileno((uv_handle_t *)&l->listener, &lfd) < 0)
        return 0;
    close(l->spare_fd);
    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        close(fd);
        shed++;
    }
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!l->warned)
        c10k_warn(l->srv, "accept: out of descriptors; closing new connections until some free");
    l->warned = true;
    return shed;
}

static void connection_cb(uv_stream_t *server, int status);

static void resume_cb(uv_timer_t *t)
{
    loop_t *l = t->data;
    int fd = dup(l->listen_fd);

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

/* After EMFILE libuv calls accept() again at once, inside the same
 * callback, and with the descriptor table full accept() fails with EMFILE
 * before it looks at the queue: even with nothing waiting it never says
 * EAGAIN, so once nothing is left to shed the loop would never get back to
 * epoll_wait. libuv's own
 * spare descriptor breaks that loop only while it has one, and with two
 * loops the other one can take the slot it frees (seen: a whole CPU for
 * as long as the table stayed full). So close this loop's listener handle
 * for 100 ms, as nginx disables accept events for accept_mutex_delay.
 * listen_fd holds the socket itself open, and clients wait in its backlog
 * meanwhile. */
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

    c10k_loop_touch(&l->ls);
    if (status == UV_EMFILE || status == UV_ENFILE) {
        /* Shedding until the queue is empty, then pausing: pausing while
         * clients wait would leave them queued, dead ones too, for a burst
         * of accepts that fills the table again once descriptors free. */
        if (shed_connections(l) == 0)
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
        conn_close(c); /* cc is zeroed: nothing of conn.h's to release */
        return;
    }
    c->fd = fd;
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    c10k_conn_start(&c->cc, l->srv, (struct sockaddr *)&c->peer, c10k_now_ms());
    conn_act(c);
}

/* Tell conn.h about the stop. A request the client has sent but libuv has
 * not read yet is read and answered (with close), not reset. */
static void conn_stop(conn_t *c)
{
    char byte;

    if (c->cc.next == C10K_READ && recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        c10k_conn_stop_soon(&c->cc);
        return;
    }
    c10k_conn_stop(&c->cc, c10k_now_ms());
    conn_act(c);
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
    c10k_loop_touch(&l->ls);
    uv_poll_stop(p);
    if (!l->paused)
        uv_close((uv_handle_t *)&l->listener, NULL);
    uv_timer_stop(&l->resume);
    c10k_worker_listener_close(l->srv, l->listen_fd); /* new clients are now refused */
    l->listen_fd = -1;
    l->stopping = true;
    for (conn_t *c = l->conns, *next; c; c = next) {
        next = c->next;
        conn_stop(c);
    }
    uv_timer_start(&l->grace, grace_cb, (uint64_t)l->srv->cfg.grace_ms, 0);
    uv_unref((uv_handle_t *)&l->grace);
    loop_maybe_done(l);
}

/* Just before the loop waits for I/O: the iteration that began at the first
 * callback (c10k_loop_touch()) is over. */
static void prepare_cb(uv_prepare_t *p)
{
    loop_t *l = p->data;

    c10k_loop_idle(&l->ls);
}

static int loop_init(void *arg, c10k_server_t *srv, int id)
{
    loop_t *l = arg;
    int rc, fd;

    l->srv = srv;
    l->id = id;
    l->spare_fd = -1;
    l->listen_fd = c10k_worker_listener(srv, id, false);
    if (l->listen_fd < 0)
        return l->listen_fd;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    rc = uv_loop_init(&l->uv);
    if (rc < 0)
        return rc;
    l->uv_ready = true;
    uv_tcp_init(&l->uv, &l->listener);
    l->listener.data = l;
    uv_timer_init(&l->uv, &l->grace);
    uv_timer_init(&l->uv, &l->resume);
    l->resume.data = l;
    fd = dup(l->listen_fd);
    rc = fd < 0 ? -errno : uv_tcp_open(&l->listener, fd);
    if (rc < 0 && fd >= 0)
        close(fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->listener, srv->cfg.backlog, connection_cb);
    if (rc == 0)
        rc = uv_poll_init(&l->uv, &l->stop, srv->stop_fd);
    if (rc < 0)
        return rc;
    l->stop.data = l;
    uv_poll_start(&l->stop, UV_READABLE, stop_cb);
    uv_prepare_init(&l->uv, &l->prepare);
    l->prepare.data = l;
    uv_prepare_start(&l->prepare, prepare_cb);
    uv_unref((uv_handle_t *)&l->prepare); /* it must not keep the loop running */
    c10k_loopstat_publish(&l->ls);        /* counters are extras: run on without */
    return 0;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    loop_t *l = arg;

    if (uv_is_closing(h))
        return;
    if (h->data == l || h == (uv_handle_t *)&l->stop || h == (uv_handle_t *)&l->grace)
        uv_close(h, NULL);
    else
        conn_close(h->data); /* a connection's socket or timer */
}

static int loop_serve(void *arg)
{
    loop_t *l = arg;

    uv_run(&l->uv, UV_RUN_DEFAULT);
    return 0;
}

/* After the loop has stopped (or a failed init): close every handle
 * (connections the grace period cut short too) and let the close callbacks
 * free them. Only a loop that was initialised is walked. */
static void loop_fini(void *arg)
{
    loop_t *l = arg;

    if (l->uv_ready) {
        uv_walk(&l->uv, close_walk_cb, l);
        l->stopping = false; /* no uv_stop from closed_cb: run until all closed */
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
    }
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    c10k_worker_listener_close(l->srv, l->listen_fd);
    c10k_iopool_free(&l->pool);
    while (l->nfsbufs > 0)
        free(l->fsbufs[--l->nfsbufs]);
    c10k_loopstat_unpublish(&l->ls);
}

static const c10k_worker_ops_t loop_ops = {
    .size = sizeof(loop_t),
    .init = loop_init,
    .serve = loop_serve,
    .fini = loop_fini,
};

static int libuv_run(c10k_server_t *srv)
{
    return c10k_run_workers(srv, &loop_ops);
}

/* libuv makes a process-wide pipe at its first uv_loop_init() and abort()s
 * when it cannot. Make it here, before anything is bound and while
 * descriptors are plentiful, so that a worker whose init runs out of them
 * fails with an error instead of killing the process. */
static int libuv_probe(void)
{
    uv_loop_t uv;
    int rc = uv_loop_init(&uv);

    if (rc < 0) {
        fprintf(stderr, "c10k serve: libuv: unavailable: uv_loop_init: %s\n", uv_strerror(rc));
        return -EOPNOTSUPP;
    }
    uv_loop_close(&uv);
    return 0;
}

static int libuv_set_opt(const char *name, const char *value)
{
    (void)value;
    if (strcmp(name, "fs-pool") != 0)
        return -EINVAL;
    opts.fs_pool = true;
    return 0;
}

static void libuv_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "libuv=%s fs-pool=%s", uv_version_string(), opts.fs_pool ? "on" : "off");
}

static const c10k_opt_t libuv_opts[] = {
    {"fs-pool", NULL,
     "read file bodies with uv_fs_read on libuv's thread pool (UV_THREADPOOL_SIZE, default 4), "
     "as Node does"},
    {NULL, NULL, NULL},
};

static const char *const libuv_variants[] = {
    "--fs-pool",
    NULL,
};

const c10k_model_t c10k_model_libuv = {
    .name = "libuv",
    .summary = "event loops on libuv (uv_tcp_t, uv_timer_t), one per worker thread",
    .opts = libuv_opts,
    .variants = libuv_variants,
    .set_opt = libuv_set_opt,
    .describe = libuv_describe,
    .probe = libuv_probe,
    .run = libuv_run,
};
