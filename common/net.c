/*
 * net.c - the socket side shared by the models: listeners, stop signalling,
 * pinning, the access log, and sending a response plan on blocking and
 * non-blocking sockets. The handler (http.c) never sees any of this, and
 * nothing here calls the handler (conn_io.c does, through conn.h), so
 * programs that are not c10k models (bench/ceiling) can link this file alone.
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* --- listeners ------------------------------------------------------------ */

/* Bind the first listener. Returns the fd or a negative errno; *why says what
 * failed.
 *
 * The bind is made without SO_REUSEPORT, so it fails with EADDRINUSE when any
 * other socket holds the port, with or without SO_REUSEPORT: a second server
 * on a held port must not start and silently take half the connections.
 * SO_REUSEPORT is set once the port is ours, before listen(), so that this
 * server's own per-worker listeners (c10k_listen_more) can still join it;
 * Linux checks the flag of the sockets already bound at each later bind. */
int c10k_listen_first(c10k_server_t *srv, const char **why)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char port[8];
    int fd = -1, one = 1, rc;

    snprintf(port, sizeof(port), "%d", srv->cfg.port);
    *why = "getaddrinfo";
    rc = getaddrinfo(srv->cfg.bind, port, &hints, &ai);
    if (rc != 0) {
        rc = -EINVAL; /* parse_bind() has already vouched for the address */
        goto out;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *why = "socket";
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    *why = "TCP_NODELAY or TCP_NOTSENT_LOWAT";
    if (c10k_sock_tune(fd) < 0)
        goto fail;
    *why = "bind";
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto fail;
    *why = "SO_REUSEPORT";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    *why = "listen";
    if (listen(fd, srv->cfg.backlog) < 0)
        goto fail;
    *why = "getsockname";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        goto fail;
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    rc = fd;
    goto out;
fail:
    rc = -errno;
    if (fd >= 0)
        close(fd);
out:
    if (ai)
        freeaddrinfo(ai);
    return rc;
}

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

void c10k_block_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void c10k_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
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
