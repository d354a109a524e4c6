/*
 * conn_io.c - the socket side of the connection lifecycle (conn.h): doing
 * what the policy asks on a non-blocking socket (c10k_conn_pump(), for the
 * readiness models) and serving a whole connection in straight-line code
 * (c10k_serve_conn(): with blocking calls, c10k_serve_blocking(), for
 * threaded and prefork; with a coroutine's waits for coro). It lives apart from
 * net.c because it runs the handler, through conn.c: net.c links without the
 * handler, so programs that are not c10k models (bench/ceiling) can use it.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* --- driving a non-blocking socket (conn.h) ------------------------------------------ */

/* Lingering reads per call, so a client that keeps sending cannot hold the
 * loop; conn.h's lingering deadlines end the rest. */
#define LINGER_READS 16

/* C10K_READ: one read into the connection's buffer. Returns false when it
 * would block. */
static bool pump_read(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool, int64_t now)
{
    size_t room;
    char *at;
    ssize_t n;

    if (!r->readable)
        return false;
    if (!c->io && !(c->io = c10k_iopool_get(pool))) {
        c10k_conn_read(c, -ENOMEM, now);
        return true;
    }
    at = c10k_conn_room(c, &room);
    n = read(fd, at, room);
    if (n < 0 && errno == EINTR)
        return true;
    if (n < 0 && errno == EAGAIN) {
        r->readable = false;
        return false;
    }
    /* A short read emptied the socket: waiting for EAGAIN would cost one
     * more system call per request. Not after RDHUP: the EOF behind the data
     * would never raise another edge in an edge-triggered loop. */
    if (n > 0 && (size_t)n < room && !r->rdhup)
        r->readable = false;
    c10k_conn_read(c, n < 0 ? -errno : n, now);
    return true;
}

/* C10K_SEND: as much of the plan as the socket takes. */
static bool pump_send(c10k_conn_t *c, int fd, c10k_ready_t *r, int64_t now)
{
    c10k_status_t st;

    if (!r->writable)
        return false;
    st = c10k_send_plan_nb(fd, &c->io->resp, c->io->head, &c->io->sent);
    if (st == C10K_AGAIN)
        r->writable = false;
    c10k_conn_sent(c, st, now);
    return st != C10K_AGAIN;
}

/* C10K_LINGER: shut the write side once, then read and discard into a
 * buffer borrowed from the pool. */
static bool pump_linger(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool, int64_t now)
{
    c10k_io_t *sink;
    bool more = false;

    if (c10k_conn_shutdown_due(c))
        shutdown(fd, SHUT_WR);
    if (!r->readable)
        return false;
    sink = c10k_iopool_get(pool);
    for (int i = 0; sink && i < LINGER_READS && c->next == C10K_LINGER; i++) {
        ssize_t n = read(fd, sink->buf, sizeof(sink->buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        c10k_conn_read(c, n < 0 ? -errno : n, now);
    }
    c10k_iopool_put(pool, sink);
    if (!sink)
        c10k_conn_read(c, -ENOMEM, now);
    if (c->next != C10K_LINGER)
        more = true;
    else
        r->readable = false; /* drained, or the budget is spent: wait for more */
    return more;
}

c10k_next_t c10k_conn_pump_gated(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool,
                                 int64_t now, c10k_send_gate_t gate, void *arg)
{
    bool more = true;

    while (more) {
        switch (c->next) {
        case C10K_READ:
            more = pump_read(c, fd, r, pool, now);
            break;
        case C10K_SEND:
            if (gate && c->io->sent.done == 0 && !gate(arg, c))
                return C10K_SEND; /* held: the model pumps again */
            more = pump_send(c, fd, r, now);
            break;
        case C10K_LINGER:
            more = pump_linger(c, fd, r, pool, now);
            break;
        default:
            return C10K_CLOSE;
        }
    }
    c10k_iopool_put(pool, c10k_conn_idle_io(c));
    return (c10k_next_t)c->next;
}

c10k_next_t c10k_conn_pump(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool,
                           int64_t now)
{
    return c10k_conn_pump_gated(c, fd, r, pool, now, NULL, NULL);
}

/* --- straight-line connections -------------------------------------------------- */

/* C10K_READ and C10K_LINGER: wait until there is something to read, the
 * deadline, or a stop; then one read. Lingering reads land in the buffer,
 * which nothing reads any more. While there is nothing buffered, the buffer
 * is back in the pool, so an idle connection holds none. */
static c10k_next_t serve_read(const c10k_waits_t *w, void *ctx, int fd, c10k_conn_t *c,
                              c10k_iopool_t *pool)
{
    size_t room = C10K_REQ_BUF;
    char *at;
    ssize_t n;
    int r;

    if (c10k_conn_shutdown_due(c))
        shutdown(fd, SHUT_WR);
    c10k_iopool_put(pool, c10k_conn_idle_io(c));
    r = w->readable(ctx, fd, c);
    if (r == 0)
        return c10k_conn_timeout(c, c10k_now_ms());
    if (r == -ECANCELED)
        return c10k_conn_stop(c, c10k_now_ms());
    if (r < 0)
        return c10k_conn_read(c, r, c10k_now_ms());
    if (!c->io && !(c->io = c10k_iopool_get(pool)))
        return c10k_conn_read(c, -ENOMEM, c10k_now_ms());
    at = c->io->buf;
    if (c->next == C10K_READ)
        at = c10k_conn_room(c, &room);
    n = w->recv(ctx, fd, at, room);
    if (n == -EINTR || n == -EAGAIN)
        return (c10k_next_t)c->next;
    return c10k_conn_read(c, n, c10k_now_ms());
}

unsigned c10k_serve_conn(c10k_server_t *srv, int fd, const struct sockaddr *peer,
                         c10k_iopool_t *pool, const c10k_waits_t *w, void *ctx)
{
    c10k_conn_t c;
    c10k_next_t next = c10k_conn_start(&c, srv, peer, c10k_now_ms());

    while (next != C10K_CLOSE)
        next = next == C10K_SEND ? w->send(ctx, fd, &c) : serve_read(w, ctx, fd, &c, pool);
    c10k_iopool_put(pool, c10k_conn_end(&c));
    close(fd);
    return c.req.requests;
}

/* --- blocking connections --------------------------------------------------------- */

/* Wait until fd is readable (1), the deadline passes (0), a stop was requested
 * (-ECANCELED; only while watch_stop), or poll fails (negative errno).
 * Readable data wins over a stop, so a request that already arrived is
 * answered (with Connection: close) rather than dropped. */
static int wait_readable(const c10k_server_t *srv, int fd, int64_t deadline, bool watch_stop)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = srv->stop_fd, .events = POLLIN}};

    for (;;) {
        int64_t left = deadline - c10k_now_ms();
        int n;
        if (left <= 0)
            return 0;
        n = poll(p, watch_stop ? 2 : 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[0].revents)
            return 1;
        if (p[1].revents)
            return -ECANCELED;
    }
}

static void set_send_timeout(int fd)
{
    struct timeval tv = {.tv_sec = C10K_SEND_TIMEOUT_MS / 1000};

    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Sleep in poll until there is something to read, the deadline, or a stop. */
static int blocking_readable(void *ctx, int fd, const c10k_conn_t *c)
{
    (void)ctx;
    return wait_readable(c->srv, fd, c->deadline, !c->stopping);
}

static ssize_t blocking_recv(void *ctx, int fd, void *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len, 0);

    (void)ctx;
    return n < 0 ? -errno : n;
}

/* C10K_SEND: one blocking call per step (send, sendfile) until it is all out. */
static c10k_next_t blocking_send(void *ctx, int fd, c10k_conn_t *c)
{
    c10k_status_t st =
        c10k_send_plan_blocking(c->srv, fd, &c->io->resp, c->io->head, &c->io->sent.done);

    (void)ctx;
    return c10k_conn_sent(c, st, c10k_now_ms());
}

static const c10k_waits_t blocking_waits = {blocking_readable, blocking_recv, blocking_send};

unsigned c10k_serve_blocking(c10k_server_t *srv, int fd, const struct sockaddr *peer, c10k_io_t *io)
{
    /* The caller's one buffer, lent to each request in turn. */
    c10k_iopool_t one = {.free = {io}, .n = 1};

    set_send_timeout(fd);
    return c10k_serve_conn(srv, fd, peer, &one, &blocking_waits, NULL);
}
