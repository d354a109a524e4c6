/*
 * bench/ceiling/ceiling_epoll.c - the ceiling's epoll driver: how a worker
 * waits when it waits with epoll. The logic is in ceiling.c.
 *
 * Why this is as fast as epoll goes
 *   Each socket is registered once, edge-triggered, for EPOLLIN, EPOLLOUT and
 *   EPOLLRDHUP, and never touched again with epoll_ctl. A keep-alive request
 *   then costs one recv and one sendmsg, plus a share of an epoll_wait that
 *   returns a batch of ready connections: no epoll_ctl, no timer, no
 *   allocation, no copy but the kernel's. Edge-triggered means we must drain
 *   a socket before we wait on it again, but a short read already says it is
 *   empty, so no recv is wasted on EAGAIN (except after EPOLLRDHUP, when the
 *   EOF behind the data would raise no further edge). A response that does
 *   not fit in the socket waits for the EPOLLOUT edge, and nothing more is
 *   read meanwhile (ceiling.h: backpressure). A small response is sent from
 *   memory, with sendmsg and one iovec per pipelined response; a large one
 *   with sendfile from the memfd that holds it, which hands the socket
 *   references to its pages instead of a copy (c10k_ceil_conn_file()).
 *
 * Listener
 *   Level-triggered: accept4 until EAGAIN. Out of descriptors (EMFILE,
 *   ENFILE) the listener is parked for ACCEPT_PAUSE_MS rather than retried at
 *   once, which would spin: the connection waits in the backlog meanwhile.
 */
#include "ceiling.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS      256
#define ACCEPT_PAUSE_MS 100

typedef struct {
    c10k_ceil_conn_t core;
    int fd;        /* -1 while the entry is unused */
    bool readable; /* an EPOLLIN edge came and recv has not found the socket empty since */
    bool rdhup;    /* the peer has shut its side: read to the EOF */
} econn_t;

typedef struct {
    c10k_ceil_worker_t *w;
    int ep;
    /* By descriptor, allocated on first use and kept for the next connection
     * that gets the same number (the kernel hands out the lowest free one):
     * a connection is 8 KiB, and a malloc and free of that much per
     * connection made glibc trim its heap with madvise every few dozen
     * connections when each request comes on a new one. */
    econn_t **conns;
    int nconns;                  /* RLIMIT_NOFILE: every descriptor is below it */
    int64_t accept_paused_until; /* c10k_now_ms() deadline, or 0 */
} loop_t;

/* epoll data for the two descriptors that are not connections. */
static char tag_listen, tag_stop;

/* --- connections ------------------------------------------------------------------------------ */

static void conn_close(econn_t *c)
{
    close(c->fd); /* also takes it out of the epoll set */
    c->fd = -1;
}

/* Send what is owed: 1 all sent, 0 the socket is full (wait for EPOLLOUT),
 * -1 the peer is gone. */
static int conn_flush(econn_t *c)
{
    struct iovec iov[C10K_CEIL_IOV_MAX];
    struct msghdr msg = {.msg_iov = iov};

    while (c10k_ceil_conn_owes(&c->core)) {
        int fd;
        off_t off;
        size_t len;
        ssize_t n;

        if (c10k_ceil_conn_file(&c->core, &fd, &off, &len)) {
            n = sendfile(c->fd, fd, &off, len);
        } else {
            msg.msg_iovlen = (size_t)c10k_ceil_conn_iov(&c->core, iov, C10K_CEIL_IOV_MAX);
            n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) /* 0 cannot happen with bytes to send; never loop on it */
            return n < 0 && errno == EAGAIN ? 0 : -1;
        c10k_ceil_conn_sent(&c->core, (size_t)n);
    }
    return 1;
}

/* Read once: 1 bytes arrived, 0 nothing to read now, -1 EOF, error, or a head
 * too long. */
static int conn_read(econn_t *c)
{
    size_t room = C10K_CEIL_BUF - c->core.len;
    ssize_t n = recv(c->fd, c->core.buf + c->core.len, room, 0);

    if (n > 0) {
        if ((size_t)n < room && !c->rdhup) /* a short read emptied the socket */
            c->readable = false;
        return c10k_ceil_conn_received(&c->core, (size_t)n) < 0 ? -1 : 1;
    }
    if (n < 0 && errno == EINTR)
        return 1;
    if (n < 0 && errno == EAGAIN) {
        c->readable = false;
        return 0;
    }
    return -1;
}

/* Serve c until it would block: send what is owed, then close or read. */
static void conn_run(econn_t *c)
{
    for (;;) {
        int r;
        if (c10k_ceil_conn_owes(&c->core))
            r = conn_flush(c);
        else if (c10k_ceil_conn_done(&c->core))
            r = -1;
        else if (c->readable)
            r = conn_read(c);
        else
            r = 0;
        if (r < 0)
            conn_close(c);
        if (r <= 0)
            return;
    }
}

static void conn_event(econn_t *c, uint32_t events)
{
    /* An error or hang-up makes the socket readable: recv says which. */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->rdhup = true;
    conn_run(c);
}

static void conn_open(loop_t *l, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
    econn_t *c = fd < l->nconns ? l->conns[fd] : NULL;

    if (!c && fd < l->nconns)
        c = l->conns[fd] = malloc(sizeof(*c));
    ev.data.ptr = c;
    if (!c || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return;
    }
    c10k_ceil_conn_init(&c->core);
    c->fd = fd;
    c->readable = c->rdhup = false;
}

/* --- the listener ----------------------------------------------------------------------------- */

static int listener_watch(loop_t *l, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = &tag_listen};

    return epoll_ctl(l->ep, EPOLL_CTL_MOD, l->w->listen_fd, &ev);
}

static void accept_all(loop_t *l)
{
    for (;;) {
        int fd = accept4(l->w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), err = errno;
        if (fd >= 0) {
            conn_open(l, fd);
            continue;
        }
        if (err == EINTR || err == ECONNABORTED)
            continue;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            l->accept_paused_until = c10k_now_ms() + ACCEPT_PAUSE_MS;
            listener_watch(l, 0);
        }
        return; /* EAGAIN: all taken */
    }
}

/* The epoll_wait timeout: forever, or until a paused listener resumes. */
static int wait_ms(loop_t *l)
{
    int64_t left;

    if (!l->accept_paused_until)
        return -1;
    left = l->accept_paused_until - c10k_now_ms();
    if (left > 0)
        return (int)left;
    l->accept_paused_until = 0;
    listener_watch(l, EPOLLIN);
    return -1;
}

/* --- the driver ------------------------------------------------------------------------------- */

static int add(int ep, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};

    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Close every connection and free the loop. */
static void loop_free(loop_t *l)
{
    for (int fd = 0; l->conns && fd < l->nconns; fd++) {
        if (l->conns[fd] && l->conns[fd]->fd >= 0)
            conn_close(l->conns[fd]);
        free(l->conns[fd]);
    }
    free(l->conns);
    if (l->ep >= 0)
        close(l->ep);
    free(l);
}

static int epoll_setup(c10k_ceil_worker_t *w)
{
    loop_t *l = calloc(1, sizeof(*l));
    struct rlimit rl;
    int rc = -ENOMEM;

    if (!l)
        goto fail;
    l->w = w;
    l->ep = -1;
    l->nconns =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1 << 20) ? (int)rl.rlim_cur : 1 << 20;
    l->conns = calloc((size_t)l->nconns, sizeof(*l->conns));
    if (!l->conns)
        goto fail;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0 || add(l->ep, w->listen_fd, &tag_listen) < 0 ||
        add(l->ep, w->srv->stop_fd, &tag_stop) < 0) {
        rc = -errno;
        goto fail;
    }
    w->loop = l;
    return 0;
fail:
    fprintf(stderr, "c10k-ceiling: epoll: worker %d: %s\n", w->id, strerror(-rc));
    if (l)
        loop_free(l);
    return rc;
}

static int epoll_run(c10k_ceil_worker_t *w)
{
    struct epoll_event evs[MAX_EVENTS];
    loop_t *l = w->loop;
    bool stop = false;
    int rc = 0;

    while (!stop) {
        int n = epoll_wait(l->ep, evs, MAX_EVENTS, wait_ms(l));
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            fprintf(stderr, "c10k-ceiling: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &tag_stop)
                stop = true;
            else if (evs[i].data.ptr == &tag_listen)
                accept_all(l);
            else
                conn_event(evs[i].data.ptr, evs[i].events);
        }
    }
    loop_free(l);
    w->loop = NULL;
    return rc;
}

static int epoll_probe(void)
{
    return 0; /* epoll is in every Linux the c10k models run on */
}

const c10k_ceil_backend_t c10k_ceil_backend_epoll = {
    .name = "epoll",
    .probe = epoll_probe,
    .setup = epoll_setup,
    .run = epoll_run,
};
