/*
 * net.c - the socket side shared by the models: listeners, stop signalling,
 * pinning, the access log, and sending a response plan on blocking and
 * non-blocking sockets. The handler (http.c) never sees any of this.
 */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* --- listeners ------------------------------------------------------------ */

int c10k_listen_more(const c10k_server_t *srv)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = -1, one = 1, rc;

    /* Same address as the first listener, port included (it may have been 0). */
    if (getsockname(srv->listen_fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 || c10k_sock_tune(fd) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, srv->cfg.backlog) < 0)
        goto fail;
    return fd;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

/* Unsent bytes a socket may hold before it stops taking more. */
#define NOTSENT_LOWAT (128 * 1024)

int c10k_sock_tune(int fd)
{
    int one = 1, lowat = NOTSENT_LOWAT, user_timeout = C10K_SEND_TIMEOUT_MS;

    /* The head and body go out in as few segments as we can make; Nagle would
     * only hold back the last one. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return -errno;
    /* Every model drops a client that takes nothing of a response for 30 s,
     * and sees progress as the socket turning writable. Without a limit the
     * kernel lets a large response fill a send buffer of several MiB and
     * reports the socket writable only once a third of it is free: a client
     * reading a 4 MB file at 40 KB/s made no "progress" for over 30 s and
     * lost the end of it. With at most 128 KiB unsent, writability follows
     * every 64 KiB the client takes. Loopback and fast clients never reach
     * the limit: data leaves the queue as soon as it is written. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)) < 0)
        return -errno;
    /* And the kernel aborts a connection whose peer has kept its window shut
     * (or acknowledged nothing) for the same 30 s. The models' own timers
     * cannot always end it: a blocking sendfile that gets a few bytes through
     * now and then restarts SO_SNDTIMEO, and an io_uring SEND_ZC holds the
     * connection until the kernel has let go of the data, which for a client
     * that never reads it is never. The abort frees the data in both cases. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) < 0)
        return -errno;
    return 0;
}

/* --- stop ------------------------------------------------------------------ */

void c10k_request_stop(c10k_server_t *srv)
{
    uint64_t one = 1;
    ssize_t n;

    atomic_store(&srv->stopping, true);
    /* Nobody reads the eventfd, so it stays readable for every poller. */
    n = write(srv->stop_fd, &one, sizeof(one));
    (void)n;
}

int c10k_wait_for_stop(c10k_server_t *srv)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        sig = sigwaitinfo(&set, NULL);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        /* SIGHUP: only prefork has something to reload (its workers). */
    }
    c10k_request_stop(srv);
    return sig;
}

/* --- CPUs -------------------------------------------------------------------- */

int c10k_worker_count(const c10k_server_t *srv)
{
    cpu_set_t set;

    if (srv->cfg.workers > 0)
        return srv->cfg.workers;
    if (srv->cfg.ncpus > 0)
        return srv->cfg.ncpus;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        return CPU_COUNT(&set);
    return 1;
}

int c10k_pin_worker(const c10k_server_t *srv, int i)
{
    cpu_set_t set;

    if (srv->cfg.ncpus == 0)
        return 0;
    CPU_ZERO(&set);
    CPU_SET(srv->cfg.cpus[i % srv->cfg.ncpus], &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) ? -EINVAL : 0;
}

int64_t c10k_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- logging ------------------------------------------------------------------ */

void c10k_warn(const c10k_server_t *srv, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "c10k: %s: %s\n", srv->model ? srv->model->name : "-", msg);
}

/* --- sending a plan -------------------------------------------------------------- */

static size_t plan_total(const c10k_resp_t *resp)
{
    return resp->head_len + (resp->body_fd >= 0 ? resp->body_len : resp->body_mem_len);
}

/* One step of sending: as much as the socket takes now. Returns bytes sent,
 * or a negative errno (-EAGAIN when the socket buffer is full). */
static ssize_t send_step(int fd, const c10k_resp_t *resp, const char *head, size_t done, int flags)
{
    bool file = resp->body_fd >= 0 && resp->body_len > 0;
    ssize_t n;

    if (done < resp->head_len && !file) {
        /* Head and a memory body: one writev, one segment on the wire. */
        struct iovec iov[2] = {
            {(void *)(head + done), resp->head_len - done},
            {(void *)resp->body_mem, resp->body_mem ? resp->body_mem_len : 0},
        };
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        n = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
    } else if (done < resp->head_len) {
        /* MSG_MORE holds the head back so it leaves with the first body bytes. */
        n = send(fd, head + done, resp->head_len - done, flags | MSG_NOSIGNAL | MSG_MORE);
    } else if (file) {
        off_t off = resp->body_off + (off_t)(done - resp->head_len);
        n = sendfile(fd, resp->body_fd, &off, resp->head_len + resp->body_len - done);
        if (n == 0)
            return -EIO; /* the file shrank under us: never send a short body silently */
    } else {
        size_t b = done - resp->head_len;
        n = send(fd, resp->body_mem + b, resp->body_mem_len - b, flags | MSG_NOSIGNAL);
    }
    return n < 0 ? -errno : n;
}

c10k_status_t c10k_send_plan_nb(int fd, const c10k_resp_t *resp, const char *head,
                                c10k_sendstate_t *st)
{
    size_t total = plan_total(resp);

    while (st->done < total) {
        ssize_t n = send_step(fd, resp, head, st->done, MSG_DONTWAIT);
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN)
            return C10K_AGAIN;
        if (n < 0)
            return C10K_ERROR;
        st->done += (size_t)n;
    }
    return C10K_OK;
}

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

c10k_status_t c10k_send_plan_blocking(const c10k_server_t *srv, int fd, const c10k_resp_t *resp,
                                      const char *head, size_t *sent)
{
    size_t total = plan_total(resp);
    (void)srv;

    *sent = 0;
    while (*sent < total) {
        /* SO_SNDTIMEO bounds each step, so a client that never reads cannot
         * hold the thread: the step fails with EAGAIN. */
        ssize_t n = send_step(fd, resp, head, *sent, 0);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return C10K_ERROR;
        *sent += (size_t)n;
    }
    return C10K_OK;
}

static void set_send_timeout(int fd)
{
    struct timeval tv = {.tv_sec = C10K_SEND_TIMEOUT_MS / 1000};

    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* C10K_READ and C10K_LINGER: sleep in poll until there is something to read,
 * the deadline, or a stop; then one recv. Lingering reads land in the
 * connection's own buffer, which nothing reads any more. */
static c10k_next_t blocking_read(c10k_server_t *srv, int fd, c10k_conn_t *c)
{
    size_t room = C10K_REQ_BUF;
    char *at = c->io->buf;
    ssize_t n;
    int r;

    if (c10k_conn_shutdown_due(c))
        shutdown(fd, SHUT_WR);
    r = wait_readable(srv, fd, c->deadline, !c->stopping);
    if (r == 0)
        return c10k_conn_timeout(c, c10k_now_ms());
    if (r == -ECANCELED)
        return c10k_conn_stop(c, c10k_now_ms());
    if (r < 0)
        return c10k_conn_read(c, r, c10k_now_ms());
    if (c->next == C10K_READ)
        at = c10k_conn_room(c, &room);
    n = recv(fd, at, room, 0);
    if (n < 0 && errno == EINTR)
        return (c10k_next_t)c->next;
    return c10k_conn_read(c, n < 0 ? -errno : n, c10k_now_ms());
}

/* C10K_SEND: one blocking call per step (send, sendfile) until it is all out. */
static c10k_next_t blocking_send(c10k_server_t *srv, int fd, c10k_conn_t *c)
{
    c10k_status_t st =
        c10k_send_plan_blocking(srv, fd, &c->io->resp, c->io->head, &c->io->sent.done);

    return c10k_conn_sent(c, st, c10k_now_ms());
}

unsigned c10k_serve_blocking(c10k_server_t *srv, int fd, const struct sockaddr *peer, c10k_io_t *io)
{
    c10k_conn_t c;
    c10k_next_t next = c10k_conn_start(&c, srv, peer, c10k_now_ms());

    c.io = io;
    set_send_timeout(fd);
    while (next != C10K_CLOSE)
        next = next == C10K_SEND ? blocking_send(srv, fd, &c) : blocking_read(srv, fd, &c);
    c10k_conn_end(&c);
    close(fd);
    return c.req.requests;
}
