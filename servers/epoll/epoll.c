/*
 * servers/epoll/epoll.c - one event loop per thread on epoll, every
 * connection a small state machine around the shared handler.
 *
 * What it is
 *   The C10K answer: a thread never sleeps on one client. Each worker thread
 *   owns an epoll instance, a listener and the connections it accepted, and
 *   runs one loop: epoll_wait for whichever sockets are ready, do the work
 *   that is possible without blocking, go back to waiting. A connection is a
 *   struct of about a hundred bytes that records where it stopped:
 *
 *       READ  --request complete-->  WRITE  --sent, keep-alive-->  READ
 *         |                            |
 *         |                            +--sent, close--> LINGER --EOF--> closed
 *         +--header timeout, bytes buffered--> WRITE (408) --> LINGER
 *
 *   Each step runs until a read or write returns EAGAIN; then the connection
 *   is parked and the loop serves someone else. Workers share nothing but the
 *   read-only site, so there are no locks on the request path.
 *
 * Edge- or level-triggered (--level-triggered)
 *   Edge-triggered (the default): each socket is registered once, for
 *   EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, and never touched again with
 *   epoll_ctl. The kernel reports only changes, so the loop must remember
 *   what it learnt (the readable/writable flags below) and must keep going
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
 *   to arm, re-arm and cancel, and a tick touches only the timers due. The
 *   header clock starts at accept and at the first byte of each later request;
 *   when it runs out with bytes buffered the client gets 408, then the
 *   connection closes. An idle keep-alive connection just closes. A client
 *   that stops reading a response loses it after C10K_SEND_TIMEOUT_MS of no
 *   progress, as in net.c (TCP_NOTSENT_LOWAT, see c10k_sock_tune(), makes
 *   a slow reader's progress show up as writability well within that time).
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
 *   An idle keep-alive connection is a conn_t (sizeof = 112 bytes on x86-64)
 *   plus the kernel's socket. The 32 KiB read buffer and 10 KiB head buffer
 *   (io_t) are taken from a per-loop free list when bytes arrive and given
 *   back when the connection is idle again, so 10,000 idle clients cost about
 *   1.3 MiB of user memory (tests/system/many_conns.py measures ~140 bytes of
 *   resident memory per idle connection), and buffers stay warm in the cache.
 *
 * Stopping
 *   The calling thread starts the workers and waits for SIGINT/SIGTERM
 *   (c10k_wait_for_stop), which makes stop_fd readable; it is in every epoll
 *   set. A worker then takes in what is already in its backlog, closes its
 *   listener, answers requests that already arrived, closes idle
 *   connections, marks the rest force_close so their current response is
 *   their last, and exits when none are left or --grace passes.
 *
 * What it needs
 *   Linux epoll (EPOLLEXCLUSIVE: Linux 4.5), SO_REUSEPORT (3.9), sendfile.
 *
 * How to run it
 *   c10k serve epoll --root DIR --port 8080 --workers 2
 *   c10k serve epoll --root DIR --level-triggered --shared-listener
 */
#include "server.h"
#include "timer.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS      256  /* per epoll_wait */
#define TICK_MS         16   /* timer resolution: 1024 slots cover 16 s */
#define POOL_KEEP       64   /* free io buffers a loop keeps for reuse */
#define ACCEPT_PAUSE_MS 100  /* after EMFILE/ENFILE */
#define LINGER_MS       2000 /* drain after a closing error response */

static struct {
    bool level;  /* --level-triggered */
    bool shared; /* --shared-listener */
} opts;

typedef enum { ST_READ, ST_WRITE, ST_LINGER } conn_state_t;

/* What a step of the state machine asks for next. */
typedef enum { STEP_NEXT, STEP_WAIT, STEP_CLOSE } step_t;

/* The buffers of a request in flight. Taken from the loop's pool when the
 * first byte of a request arrives, returned when the connection is idle. */
typedef struct io_s {
    struct io_s *next_free;
    c10k_resp_t resp;      /* the response being sent (ST_WRITE) */
    c10k_sendstate_t send; /* its progress */
    size_t len;            /* bytes in buf */
    size_t used;           /* bytes of buf the response in flight answers */
    bool unparsed;         /* buf has bytes the handler has not seen */
    char head[C10K_HEAD_BUF];
    char buf[C10K_REQ_BUF];
} io_t;

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} peer_t;

/* One connection. sizeof(conn_t) == 112 on x86-64: the whole user-space cost
 * of an idle keep-alive client (plus malloc's 16-byte header). */
typedef struct conn_s {
    c10k_timer_t timer;           /* header, keep-alive, send or linger deadline */
    struct conn_s *next, **pprev; /* the loop's connections, for the stop */
    io_t *io;                     /* NULL while idle */
    c10k_req_t req;
    int fd;
    uint8_t state;     /* conn_state_t */
    bool readable;     /* the kernel said readable and we have not seen EAGAIN */
    bool writable;     /* likewise for writing */
    bool rdhup;        /* the peer shut down its side: read to EOF */
    bool head_clock;   /* the header timer runs for a partial head */
    bool send_clock;   /* the send timer runs for a parked response */
    uint32_t interest; /* level-triggered: the events registered */
    peer_t peer;
} conn_t;

_Static_assert(sizeof(conn_t) <= 1024, "an idle connection must cost at most 1 KiB");

typedef struct loop_s {
    c10k_server_t *srv;
    int id;
    int epfd;
    int listen_fd;  /* -1 once closed */
    bool listening; /* listen_fd is in the epoll set */
    pthread_t thread;
    c10k_wheel_t wheel;
    int64_t now; /* ms, read once per wake-up */
    conn_t *conns;
    int nconns;
    io_t *pool;
    int pool_len;
    bool stop_seen; /* stop_fd was reported in this batch */
    bool stopping;
    int64_t grace_until;
    int64_t accept_resume; /* 0, or when to watch the listener again */
    bool accept_warned;
    int err;            /* why the loop failed, a negative errno */
    char scratch[4096]; /* a sink for lingering reads */
    struct epoll_event events[MAX_EVENTS];
} loop_t;

/* epoll_event.data.ptr for the two descriptors that are not connections. */
static char tag_listen, tag_stop;

/* --- buffers ------------------------------------------------------------------ */

static io_t *io_get(loop_t *lp)
{
    io_t *io = lp->pool;

    if (io) {
        lp->pool = io->next_free;
        lp->pool_len--;
    } else {
        io = malloc(sizeof(*io));
        if (!io)
            return NULL;
    }
    io->len = 0;
    io->used = 0;
    io->unparsed = false;
    io->resp.body_fd = -1;
    return io;
}

static void io_put(loop_t *lp, io_t *io)
{
    if (lp->pool_len >= POOL_KEEP) {
        free(io);
        return;
    }
    io->next_free = lp->pool;
    lp->pool = io;
    lp->pool_len++;
}

/* --- connections --------------------------------------------------------------- */

static conn_t *conn_of(c10k_timer_t *t)
{
    return (conn_t *)((char *)t - offsetof(conn_t, timer));
}

static void arm(loop_t *lp, conn_t *c, int ms)
{
    c10k_timer_arm(&lp->wheel, &c->timer, lp->now + ms);
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

/* The response in flight is over, sent or not. */
static void response_done(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;

    c10k_log_access(lp->srv, &c->peer.sa, &io->resp, io->send.done);
    c10k_resp_finish(&io->resp);
}

static void conn_close(loop_t *lp, conn_t *c)
{
    c10k_timer_cancel(&lp->wheel, &c->timer);
    if (c->io) {
        if (c->state == ST_WRITE)
            response_done(lp, c);
        io_put(lp, c->io);
    }
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
    conn_t *c = malloc(sizeof(*c));

    if (!c)
        return -ENOMEM;
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->peer = *peer;
    c->state = ST_READ;
    c->writable = true;
    c10k_req_init(&c->req);
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
    /* The first request is on the header clock from accept, as in nginx. */
    arm(lp, c, lp->srv->cfg.header_ms);
    c->head_clock = true;
    c->next = lp->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &lp->conns;
    lp->conns = c;
    lp->nconns++;
    return 0;
}

/* --- the state machine ------------------------------------------------------------ */

/* Nothing more to read for now. An empty buffer goes back to the pool. */
static step_t wait_read(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;

    if (io && io->len == 0) {
        io_put(lp, io);
        c->io = NULL;
    }
    if (!c->io) /* idle between requests */
        return lp->stopping ? STEP_CLOSE : STEP_WAIT;
    if (!c->head_clock) {
        /* A partial head: the header clock runs from (about) its first byte. */
        arm(lp, c, lp->srv->cfg.header_ms);
        c->head_clock = true;
    }
    return STEP_WAIT;
}

/* Give the handler what is buffered. */
static step_t step_parse(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;
    ssize_t used;

    io->unparsed = false;
    c->req.force_close = lp->stopping;
    used = c10k_http_handle(&lp->srv->site, &c->req, io->buf, io->len, io->head, C10K_HEAD_BUF,
                            &io->resp);
    if (used < 0)
        return STEP_CLOSE;
    if (used == C10K_INCOMPLETE)
        return io->len < C10K_REQ_BUF ? STEP_NEXT : STEP_CLOSE;
    io->used = (size_t)used;
    io->send.done = 0;
    c->head_clock = false;
    c->state = ST_WRITE;
    return STEP_NEXT;
}

static step_t step_read(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;
    size_t room;
    ssize_t n;

    if (io && io->unparsed)
        return step_parse(lp, c);
    if (!c->readable)
        return wait_read(lp, c);
    if (!io) {
        io = c->io = io_get(lp);
        if (!io)
            return STEP_CLOSE;
    }
    room = C10K_REQ_BUF - io->len;
    n = read(c->fd, io->buf + io->len, room);
    if (n > 0) {
        /* A short read emptied the socket: waiting for EAGAIN would cost one
         * more system call per request. Not after RDHUP: the EOF behind the
         * data would never raise another edge. */
        if ((size_t)n < room && !c->rdhup)
            c->readable = false;
        io->len += (size_t)n;
        io->unparsed = true;
        return STEP_NEXT;
    }
    if (n < 0 && errno == EINTR)
        return STEP_NEXT;
    if (n < 0 && errno == EAGAIN) {
        c->readable = false;
        return wait_read(lp, c);
    }
    return STEP_CLOSE; /* EOF (an unfinished head is dropped) or an error */
}

/* After a response that closes: stop sending, and read what the client is
 * still sending until it sees our FIN, so that closing with unread bytes
 * does not turn into a reset that destroys the response in flight. Only worth
 * it when the client may still be talking: an error, or bytes left over. */
static step_t begin_close(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;
    bool talking = io->resp.status >= 400 || io->len > io->used || c->readable;

    io_put(lp, io);
    c->io = NULL;
    if (!talking || lp->stopping)
        return STEP_CLOSE;
    shutdown(c->fd, SHUT_WR);
    c->state = ST_LINGER;
    arm(lp, c, LINGER_MS);
    return STEP_NEXT;
}

static step_t step_write(loop_t *lp, conn_t *c)
{
    io_t *io = c->io;
    size_t before = io->send.done;

    if (!c->writable)
        return STEP_WAIT;
    switch (c10k_send_plan_nb(c->fd, &io->resp, io->head, &io->send)) {
    case C10K_AGAIN:
        c->writable = false;
        /* The send clock restarts whenever the client takes some bytes. */
        if (io->send.done > before || !c->send_clock) {
            arm(lp, c, C10K_SEND_TIMEOUT_MS);
            c->send_clock = true;
        }
        return STEP_WAIT;
    case C10K_ERROR:
        return STEP_CLOSE;
    case C10K_OK:
        break;
    }
    response_done(lp, c);
    c->send_clock = false;
    c->state = ST_READ;
    if (!io->resp.keep_alive)
        return begin_close(lp, c);
    if (lp->stopping)
        return STEP_CLOSE;
    /* Pipelined bytes move to the front; the handler sees them next. */
    io->len -= io->used;
    if (io->len > 0) {
        memmove(io->buf, io->buf + io->used, io->len);
        io->unparsed = true;
    } else {
        arm(lp, c, lp->srv->cfg.keepalive_ms);
    }
    io->used = 0;
    return STEP_NEXT;
}

/* One read per wake-up, so a client that keeps sending cannot hold the loop;
 * whatever it leaves unread, the linger timer ends. */
static step_t step_linger(loop_t *lp, conn_t *c)
{
    ssize_t n;

    if (!c->readable)
        return STEP_WAIT;
    n = read(c->fd, lp->scratch, sizeof(lp->scratch));
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        c->readable = false;
        return STEP_WAIT;
    }
    return STEP_CLOSE;
}

/* Run c as far as it goes without blocking. May free c. */
static void conn_advance(loop_t *lp, conn_t *c)
{
    step_t r;

    do {
        switch (c->state) {
        case ST_READ:
            r = step_read(lp, c);
            break;
        case ST_WRITE:
            r = step_write(lp, c);
            break;
        case ST_LINGER:
            r = step_linger(lp, c);
            break;
        default:
            r = STEP_CLOSE;
            break;
        }
    } while (r == STEP_NEXT);
    if (r == STEP_CLOSE)
        conn_close(lp, c);
    else
        want(lp, c, c->state == ST_WRITE ? EPOLLOUT : EPOLLIN);
}

/* The connection's timer ran out. */
static void on_timeout(c10k_timer_t *t, void *arg)
{
    loop_t *lp = arg;
    conn_t *c = conn_of(t);
    io_t *io = c->io;

    if (c->state != ST_READ || !io || io->len == 0) {
        conn_close(lp, c); /* idle, lingering, or a client that stopped reading */
        return;
    }
    if (!c10k_http_timeout(&c->req, io->len, io->head, C10K_HEAD_BUF, &io->resp)) {
        conn_close(lp, c);
        return;
    }
    io->used = io->len; /* the partial head is answered, and dropped */
    io->unparsed = false;
    io->send.done = 0;
    c->head_clock = false;
    c->state = ST_WRITE;
    conn_advance(lp, c);
}

/* --- events --------------------------------------------------------------------- */

static void handle_conn(loop_t *lp, conn_t *c, uint32_t events)
{
    /* An error or hang-up makes the socket both readable and writable: the
     * next call says what happened. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        c->readable = c->writable = true;
        c->rdhup = true;
    }
    if (events & (EPOLLIN | EPOLLRDHUP))
        c->readable = true;
    if (events & EPOLLRDHUP)
        c->rdhup = true;
    if (events & EPOLLOUT)
        c->writable = true;
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

/* Stop accepting, close what is idle, let the rest finish their response. */
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
    if (lp->listen_fd == lp->srv->listen_fd)
        /* Not ours to close (main owns it), but shutdown() takes it out of
         * the SO_REUSEPORT group now, so new clients are refused, not queued. */
        shutdown(lp->listen_fd, SHUT_RDWR);
    else
        close(lp->listen_fd);
    lp->listen_fd = -1;
    for (c = lp->conns; c; c = next) {
        next = c->next;
        c->req.force_close = true;
        if (c->state == ST_LINGER) {
            conn_close(lp, c);
        } else if (c->state == ST_READ) {
            /* A request that already arrived is answered (with close);
             * a connection with nothing to read closes in wait_read(). */
            c->readable = true;
            conn_advance(lp, c);
        }
    }
}

static void close_all(loop_t *lp)
{
    while (lp->conns)
        conn_close(lp, lp->conns);
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

typedef enum { EV_LISTEN, EV_STOP, EV_CONN } ev_kind_t;

static ev_kind_t event_kind(const struct epoll_event *ev)
{
    if (ev->data.ptr == &tag_listen)
        return EV_LISTEN;
    if (ev->data.ptr == &tag_stop)
        return EV_STOP;
    return EV_CONN;
}

static void *loop_main(void *arg)
{
    loop_t *lp = arg;

    c10k_pin_worker(lp->srv, lp->id);
    for (;;) {
        int n = epoll_wait(lp->epfd, lp->events, MAX_EVENTS, loop_timeout(lp));

        if (n < 0 && errno != EINTR) {
            lp->err = -errno;
            c10k_warn(lp->srv, "worker %d: epoll_wait: %s", lp->id, strerror(errno));
            kill(getpid(), SIGTERM); /* the main thread's sigwait turns it into a stop */
            break;
        }
        lp->now = c10k_now_ms();
        for (int i = 0; i < n; i++) {
            struct epoll_event *ev = &lp->events[i];
            switch (event_kind(ev)) {
            case EV_LISTEN:
                handle_accept(lp);
                break;
            case EV_STOP:
                /* After the batch: stopping closes connections whose events
                 * may still be further down this array. */
                lp->stop_seen = true;
                break;
            case EV_CONN:
                handle_conn(lp, ev->data.ptr, ev->events);
                break;
            }
        }
        c10k_wheel_expire(&lp->wheel, lp->now, on_timeout, lp);
        if (lp->accept_resume && lp->now >= lp->accept_resume)
            accept_resume(lp);
        if (lp->stop_seen && !lp->stopping)
            begin_stop(lp);
        if (lp->stopping && (lp->nconns == 0 || lp->now >= lp->grace_until))
            break;
    }
    close_all(lp);
    return NULL;
}

/* --- setup ------------------------------------------------------------------------- */

static void loop_free(loop_t *lp)
{
    io_t *io;

    if (lp->listen_fd >= 0 && lp->listen_fd != lp->srv->listen_fd)
        close(lp->listen_fd);
    if (lp->epfd >= 0)
        close(lp->epfd);
    while ((io = lp->pool) != NULL) {
        lp->pool = io->next_free;
        free(io);
    }
}

static int loop_init(loop_t *lp, c10k_server_t *srv, int id)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_stop};

    lp->srv = srv;
    lp->id = id;
    lp->listen_fd = -1;
    lp->now = c10k_now_ms();
    c10k_wheel_init(&lp->wheel, TICK_MS, lp->now);
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->epfd < 0)
        return -errno;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, srv->stop_fd, &ev) < 0)
        return -errno;
    lp->listen_fd = opts.shared || id == 0 ? srv->listen_fd : c10k_listen_more(srv);
    if (lp->listen_fd < 0)
        return lp->listen_fd;
    return listener_watch(lp);
}

static int epoll_run(c10k_server_t *srv)
{
    int n = c10k_worker_count(srv), started = 0, rc = 0;
    loop_t *loops = calloc((size_t)n, sizeof(*loops));

    if (!loops)
        return -ENOMEM;
    for (int i = 0; i < n; i++)
        loops[i].epfd = loops[i].listen_fd = -1;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = loop_init(&loops[i], srv, i);
        if (rc < 0)
            c10k_warn(srv, "worker %d: %s", i, strerror(-rc));
    }
    for (; rc == 0 && started < n; started++) {
        rc = -pthread_create(&loops[started].thread, NULL, loop_main, &loops[started]);
        if (rc < 0)
            c10k_warn(srv, "worker %d: pthread_create: %s", started, strerror(-rc));
    }
    if (rc == 0)
        c10k_wait_for_stop(srv);
    else
        c10k_request_stop(srv);
    for (int i = 0; i < started; i++) {
        pthread_join(loops[i].thread, NULL);
        if (rc == 0)
            rc = loops[i].err;
    }
    for (int i = 0; i < n; i++)
        loop_free(&loops[i]);
    free(loops);
    return rc;
}

/* --- the model ---------------------------------------------------------------------- */

static const c10k_opt_t epoll_opts[] = {
    {"level-triggered", NULL, "level-triggered epoll (default: edge-triggered)"},
    {"shared-listener", NULL,
     "one listener shared with EPOLLEXCLUSIVE (default: SO_REUSEPORT each)"},
    {NULL, NULL, NULL},
};

static const char *const epoll_variants[] = {
    "--level-triggered",
    "--shared-listener",
    NULL,
};

static int epoll_set_opt(const char *name, const char *value)
{
    (void)value;
    if (strcmp(name, "level-triggered") == 0)
        opts.level = true;
    else if (strcmp(name, "shared-listener") == 0)
        opts.shared = true;
    else
        return -EINVAL;
    return 0;
}

static void epoll_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    (void)srv;
    snprintf(buf, cap, "trigger=%s listener=%s", opts.level ? "level" : "edge",
             opts.shared ? "shared" : "reuseport");
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
