/*
 * uring.c - the io_uring model: completion-based, one ring per worker thread.
 *
 * What it is
 *   Each worker thread owns one io_uring, one SO_REUSEPORT listener and the
 *   connections the kernel hands that listener. The loop never asks "is this
 *   socket ready?" (that is epoll's question); it queues the operations it
 *   wants done and reacts to their completions:
 *
 *     multishot accept  one SQE accepts every connection, straight into the
 *                       ring's registered file table (no descriptor in the
 *                       process at all: "direct descriptors").
 *     multishot recv    one SQE per connection receives every request; the
 *                       kernel picks a 4 KiB buffer from a provided-buffer
 *                       ring for each completion. The handler parses straight
 *                       from that buffer, which goes back to the ring as soon
 *                       as the response to what it holds is sent (until then
 *                       the plan's method and target point into it, for the
 *                       access log). Only an incomplete head, e.g. one spanning
 *                       buffers, is copied into a per-connection C10K_REQ_BUF
 *                       buffer (allocated then, freed when drained), so an
 *                       idle connection holds no buffer at all.
 *     read + send       the head is written into a registered "slot" buffer,
 *                       the file body is read right after it with READ_FIXED,
 *                       and one linked SEND puts head and body on the wire:
 *                       two SQEs, zero syscalls of its own. Bodies larger than
 *                       a slot go out in slot-sized chunks.
 *     timeouts          one IORING_OP_TIMEOUT per connection, re-armed lazily:
 *                       activity only moves conn->deadline; when the timer
 *                       fires early it is re-armed for the rest. Semantics as
 *                       in net.c: the first request is on the header clock
 *                       from accept; a begun head that does not complete in
 *                       --header-timeout gets c10k_http_timeout()'s 408, then
 *                       close; an idle keep-alive connection closes after
 *                       --keepalive-timeout; a client that takes nothing of a
 *                       response for 30 s is dropped.
 *     stop              each ring polls srv->stop_fd. Then: cancel the
 *                       multishot accept and stop listening, close every
 *                       connection not sending, let in-flight responses
 *                       finish (then close), exit when none is left or
 *                       --grace has passed.
 *
 *   All of it is submitted in batches: the loop is one io_uring_submit_and_wait()
 *   (one io_uring_enter) per batch of completions, however many connections
 *   they belong to; at 64 busy connections that is about one enter per 18
 *   requests (2.07 syscalls per request in all, the handler's openat2 and
 *   fstat included; epoll makes 6). The ring is SINGLE_ISSUER | DEFER_TASKRUN, so the kernel
 *   completes our requests only while we wait, in our thread, in batches. user_data packs the
 * operation (low 8 bits), the connection index (next 24) and its generation (high 32), so a
 * completion for a connection that has since been replaced is recognised and dropped.
 *
 * Why read + send rather than splice
 *   IORING_OP_SPLICE is always executed by an io-wq worker thread (the kernel
 *   marks it force-async), so every body costs a thread hand-off and a second
 *   runnable thread; READ_FIXED from the page cache completes inline during
 *   submission, and head + body leave in a single send. Measured on 1 KiB
 *   keep-alive, one CPU, 64 connections (tests/uring/README.md): read + send
 *   cost ~20 us of CPU per request, splice through a per-connection pipe
 *   ~30 us (two io-wq threads busy), and served ~25% fewer requests/s; so
 *   splice was not kept. The price is one copy of
 *   the body into user memory, which shows only for large files; --zc then
 *   avoids the copy on the socket side.
 *
 * What it needs
 *   Linux 6.1+ (multishot recv and IORING_OP_SEND_ZC arrived in 6.0,
 *   DEFER_TASKRUN in 6.1; kernels without DEFER_TASKRUN fall back to
 *   COOP_TASKRUN), liburing 2.3+, io_uring not disabled
 *   (sysctl kernel.io_uring_disabled) nor blocked by seccomp (containers often
 *   do). run() probes with io_uring_get_probe_ring() and, when something is
 *   missing, prints why and returns -EOPNOTSUPP (exit status 2). Registered
 *   buffers are pinned memory (RLIMIT_MEMLOCK); when registering them fails
 *   the model warns and reads into the same memory unregistered.
 *
 * How to run it
 *   c10k serve uring --root DIR [--workers N] [--entries N] [--sqpoll] [--zc]
 *     --entries N  SQ size per ring (default 256); also the number of response
 *                  slots (32 KiB each, registered) per ring.
 *     --sqpoll     a kernel thread (iou-sqp-PID) polls the SQ, so submitting
 *                  needs no syscall while it is awake. Counting its CPU: it
 *                  is a thread of the server process, so `perf stat -e
 *                  task-clock -p PID`, `ps -L -p PID` and `pidstat -t -p PID`
 *                  include it; and with --cpus it is pinned to its worker's
 *                  CPU (IORING_SETUP_SQ_AFF), so a one-CPU comparison stays
 *                  honest. There it loses (~37,000 against ~60,000 req/s,
 *                  1 KiB, 64 connections): poller and worker share the CPU.
 *                  It pays only with a core to spare.
 *     --zc         send chunks of 16 KiB or more with SEND_ZC (zero copy);
 *                  the slot is reused only after the kernel's notification.
 *                  Over loopback it is slower (5 MB bodies, one CPU: 0.95
 *                  against 1.75 GB/s copied; epoll's sendfile 1.07): local
 *                  delivery copies anyway and every send completes twice.
 *                  It is meant for a real NIC.
 *   With --access-log, connections are accepted into ordinary descriptors,
 *   because the log needs getpeername() and a direct descriptor has no fd to
 *   ask.
 *
 * Trade-offs
 *   + Few syscalls: at load, one io_uring_enter serves many requests; no
 *     epoll_wait/read/write/sendfile per request.
 *   + Receive buffers are shared by the ring (provided buffers), not owned by
 *     every connection.
 *   - The most intricate model here: every operation's lifetime must be
 *     tracked (conn->inflight) before a connection can be closed, a multishot
 *     request can stop at any time (-ENOBUFS, cancel) and must be re-armed,
 *     and a buffer must be returned exactly once.
 *   - Needs a recent kernel and is often disabled in containers.
 *   - Memory per ring is fixed up front: 4 MiB of receive buffers and
 *     --entries x 32 KiB of response slots; when all slots are busy, further
 *     responses wait for one (a queue, not an error).
 *   - Bodies are copied once through user memory (see above).
 */
#include "server.h"

#include <errno.h>
#include <liburing.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- settings ------------------------------------------------------------------ */

#define BGID      0     /* our one provided-buffer group per ring */
#define BUF_SIZE  4096  /* one provided receive buffer */
#define BUF_COUNT 1024  /* provided buffers per ring (a power of two) */
#define SLOT_SIZE 32768 /* response slot: head + first body chunk */
#define INQ_CAP   16    /* received buffers a connection may hold */
#define INQ_HIGH  4     /* ... above this, its recv is cancelled (backpressure) */
#define ZC_MIN    16384 /* --zc: smaller sends are cheaper copied */
#define LINGER_MS 2000  /* after a closing response: wait this long for the client's FIN */
#define MAX_CONNS 65536 /* connections per ring (bounded by RLIMIT_NOFILE) */

static struct {
    bool sqpoll;
    bool zc;
    unsigned entries;
} opt = {.entries = 256};

/* --- user_data: op in the low 8 bits, connection index and generation above ---- */

typedef enum {
    OP_IGNORE, /* fire-and-forget helpers (close, timeout updates): only errors arrive */
    OP_ACCEPT,
    OP_STOP,
    OP_GRACE,
    OP_RECV,
    OP_READ,
    OP_SEND,
    OP_SEND_ZC,
    OP_TIMER,
    OP_AUX, /* shutdown or cancel-by-descriptor on a connection's socket */
} op_t;

static uint64_t ud_make(op_t op, uint32_t idx, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(idx & 0xffffff) << 8 | op;
}

static op_t ud_op(uint64_t ud)
{
    return (op_t)(ud & 0xff);
}

static uint32_t ud_idx(uint64_t ud)
{
    return (uint32_t)(ud >> 8) & 0xffffff;
}

static uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32);
}

/* --- state --------------------------------------------------------------------- */

typedef enum {
    PHASE_FREE,    /* table entry unused */
    PHASE_ACTIVE,  /* serving requests */
    PHASE_LINGER,  /* last response sent, write side shut: draining until the client's FIN */
    PHASE_CLOSING, /* waiting for its operations to complete, then closed */
} phase_t;

typedef struct conn_s conn_t;

/* An intrusive FIFO of connections waiting for something: a response slot,
 * or receive buffers. A connection can be on both, so each has its own link. */
typedef enum { Q_SLOT, Q_STARVED, Q_COUNT } qid_t;

typedef struct {
    conn_t *head, *tail;
    qid_t id;
} waitq_t;

typedef struct {
    uint16_t bid, off, len; /* provided buffer, bytes consumed, bytes received */
} inbuf_t;

struct conn_s {
    uint32_t gen; /* bumped for every new connection in this entry */
    uint32_t idx;
    int fd; /* direct descriptor (registered file index) or ordinary fd */
    phase_t phase;
    unsigned inflight; /* operations whose completion is still to come */

    bool recv_armed;  /* a multishot recv is outstanding */
    bool recv_cancel; /* ... and we asked it to stop (backpressure) */
    bool eof;         /* the client closed its side */
    bool timer_armed;
    bool sending;   /* a response is in flight */
    bool chunk_bad; /* the read feeding the current send failed or came up short */
    bool head_started;
    bool from_rbuf; /* the request in flight was parsed from rbuf */

    c10k_req_t req;
    c10k_resp_t resp;

    inbuf_t inq[INQ_CAP]; /* received, not yet consumed */
    unsigned inq_head, inq_n;
    char *rbuf; /* an incomplete head, assembled */
    size_t rlen;
    size_t consumed; /* bytes of input the request in flight used */

    int slot;           /* response slot, or -1 */
    size_t sent, total; /* bytes of head + body */
    size_t chunk_len, chunk_off;
    int zc_res;

    int64_t deadline, timer_at;
    struct __kernel_timespec ts; /* read by the kernel when the SQE is submitted */

    conn_t *wait_next[Q_COUNT];
    bool queued[Q_COUNT];

    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer; /* ordinary-descriptor mode only (access log) */
};

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending; /* workers still setting up */
    int err;     /* first setup error */
} latch_t;

typedef struct {
    c10k_server_t *srv;
    int id;
    pthread_t thread;
    latch_t *latch;
    struct io_uring ring;
    bool ring_ok;
    bool direct; /* connections are direct descriptors */
    int listen_fd;
    bool own_listener;

    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned br_pending; /* buffers returned since the last advance */

    char *slots;
    int *slot_free;
    unsigned nslots, nslot_free;
    bool slots_registered;

    conn_t *conns;
    uint32_t nconns, hiwater;
    unsigned live;

    waitq_t slot_wait, starved;
    bool accept_paused, stopping, grace_over;
    int64_t now;
    struct __kernel_timespec grace_ts;
    int err;
} worker_t;

/* --- small helpers ------------------------------------------------------------- */

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Make room for n SQEs that must go in one submission: a linked chain must
 * not be cut by an io_uring_enter between its SQEs. With SQPOLL, submitting
 * frees nothing by itself; the kernel thread has to consume entries first. */
static void sq_reserve(worker_t *w, unsigned n)
{
    while (io_uring_sq_space_left(&w->ring) < n) {
        io_uring_submit(&w->ring);
        if (opt.sqpoll && io_uring_sq_space_left(&w->ring) < n)
            io_uring_sqring_wait(&w->ring);
    }
}

static struct io_uring_sqe *get_sqe(worker_t *w)
{
    sq_reserve(w, 1);
    return io_uring_get_sqe(&w->ring);
}

/* An SQE on a connection's socket: direct descriptors need IOSQE_FIXED_FILE. */
static struct io_uring_sqe *conn_sqe(worker_t *w, conn_t *c, op_t op)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_sqe_set_data64(sqe, ud_make(op, c->idx, c->gen));
    return sqe;
}

static void conn_fixed(worker_t *w, struct io_uring_sqe *sqe)
{
    if (w->direct)
        sqe->flags |= IOSQE_FIXED_FILE;
}

/* Helpers whose success we do not need to see. */
static void quiet(struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* An SQE naming the connection's socket that the kernel may execute later,
 * in an io-wq thread (IORING_OP_SHUTDOWN always is): it resolves the
 * descriptor only then. So it counts as in flight, and the socket is not
 * closed before it completes; else a new connection given the same table
 * slot (or fd number) would take the shutdown meant for the old one. */
static struct io_uring_sqe *aux_sqe(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe = conn_sqe(w, c, OP_AUX);

    c->inflight++;
    return sqe;
}

static void waitq_push(waitq_t *q, conn_t *c)
{
    if (c->queued[q->id])
        return;
    c->queued[q->id] = true;
    c->wait_next[q->id] = NULL;
    if (q->tail)
        q->tail->wait_next[q->id] = c;
    else
        q->head = c;
    q->tail = c;
}

static conn_t *waitq_pop(waitq_t *q)
{
    conn_t *c = q->head;

    if (!c)
        return NULL;
    q->head = c->wait_next[q->id];
    if (!q->head)
        q->tail = NULL;
    c->queued[q->id] = false;
    return c;
}

/* O(queue length), but only a connection closing while it waits needs it. */
static void waitq_remove(waitq_t *q, conn_t *c)
{
    conn_t **pp, *prev = NULL;

    if (!c->queued[q->id])
        return;
    for (pp = &q->head; *pp != c; pp = &(*pp)->wait_next[q->id])
        prev = *pp;
    *pp = c->wait_next[q->id];
    if (q->tail == c)
        q->tail = prev;
    c->queued[q->id] = false;
}

/* --- provided receive buffers ---------------------------------------------------- */

static char *buf_addr(worker_t *w, unsigned bid)
{
    return w->bufs + (size_t)bid * BUF_SIZE;
}

/* Give a buffer back to the kernel; made visible in one step per batch. */
static void buf_put(worker_t *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, buf_addr(w, bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)w->br_pending++);
}

static void arm_recv(worker_t *w, conn_t *c);

/* Publish the returned buffers, then re-arm connections whose recv ran dry. */
static void buf_flush(worker_t *w)
{
    unsigned n = w->br_pending;
    conn_t *c;

    if (n == 0)
        return;
    io_uring_buf_ring_advance(w->br, (int)n);
    w->br_pending = 0;
    while (n-- > 0 && (c = waitq_pop(&w->starved)) != NULL)
        if (c->phase == PHASE_ACTIVE || c->phase == PHASE_LINGER)
            arm_recv(w, c);
}

static void inq_drop_all(worker_t *w, conn_t *c)
{
    for (; c->inq_n > 0; c->inq_n--, c->inq_head = (c->inq_head + 1) % INQ_CAP)
        buf_put(w, c->inq[c->inq_head].bid);
}

/* Consume n bytes from the oldest received buffer, returning it when empty. */
static void inq_consume(worker_t *w, conn_t *c, size_t n)
{
    inbuf_t *b = &c->inq[c->inq_head];

    b->off = (uint16_t)(b->off + n);
    if (b->off == b->len) {
        buf_put(w, b->bid);
        c->inq_head = (c->inq_head + 1) % INQ_CAP;
        c->inq_n--;
    }
}

static size_t buffered(const conn_t *c)
{
    size_t n = c->rlen;

    for (unsigned i = 0; i < c->inq_n; i++) {
        const inbuf_t *b = &c->inq[(c->inq_head + i) % INQ_CAP];
        n += (size_t)(b->len - b->off);
    }
    return n;
}

/* Move received bytes into rbuf, as many as fit. */
static void rbuf_fill(worker_t *w, conn_t *c)
{
    while (c->inq_n > 0 && c->rlen < C10K_REQ_BUF) {
        inbuf_t *b = &c->inq[c->inq_head];
        size_t n = min_sz((size_t)(b->len - b->off), C10K_REQ_BUF - c->rlen);

        memcpy(c->rbuf + c->rlen, buf_addr(w, b->bid) + b->off, n);
        c->rlen += n;
        inq_consume(w, c, n);
    }
}

static void rbuf_free(conn_t *c)
{
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = 0;
}

/* --- response slots ---------------------------------------------------------------- */

static char *slot_addr(worker_t *w, int slot)
{
    return w->slots + (size_t)slot * SLOT_SIZE;
}

static bool slot_get(worker_t *w, conn_t *c)
{
    if (c->slot >= 0)
        return true;
    if (w->nslot_free == 0)
        return false;
    c->slot = w->slot_free[--w->nslot_free];
    return true;
}

static void slot_put(worker_t *w, conn_t *c)
{
    if (c->slot < 0)
        return;
    w->slot_free[w->nslot_free++] = c->slot;
    c->slot = -1;
}

static void conn_process(worker_t *w, conn_t *c);

/* After each batch: connections that found every slot busy get the freed
 * ones, oldest first. (Not from slot_put(): that would recurse through the
 * whole queue.) */
static void slots_handoff(worker_t *w)
{
    conn_t *c;

    while (w->nslot_free > 0 && (c = waitq_pop(&w->slot_wait)) != NULL)
        conn_process(w, c);
}

/* --- timers: one per connection, re-armed lazily ------------------------------------- */

static void timer_prep(worker_t *w, conn_t *c, int64_t ms)
{
    c->ts.tv_sec = ms / 1000;
    c->ts.tv_nsec = (ms % 1000) * 1000000;
    c->timer_at = w->now + ms;
}

static void timer_arm(worker_t *w, conn_t *c, int64_t ms)
{
    struct io_uring_sqe *sqe = conn_sqe(w, c, OP_TIMER);

    timer_prep(w, c, ms);
    io_uring_prep_timeout(sqe, &c->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_TIMER, c->idx, c->gen));
    c->timer_armed = true;
    c->inflight++;
}

/* Activity moves the deadline; an SQE is needed only when it moves earlier
 * than the timer already armed. */
static void set_deadline(worker_t *w, conn_t *c, int ms)
{
    struct io_uring_sqe *sqe;

    c->deadline = w->now + ms;
    if (!c->timer_armed) {
        timer_arm(w, c, ms);
        return;
    }
    if (c->deadline >= c->timer_at)
        return;
    timer_prep(w, c, ms);
    sqe = get_sqe(w);
    io_uring_prep_timeout_update(sqe, &c->ts, ud_make(OP_TIMER, c->idx, c->gen), 0);
    quiet(sqe);
}

/* --- closing ---------------------------------------------------------------------------- */

static void arm_accept(worker_t *w);

/* The last completion for a closing connection has arrived: close the socket. */
static void conn_reap(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (c->phase != PHASE_CLOSING || c->inflight > 0)
        return;
    c10k_resp_finish(&c->resp);
    slot_put(w, c);
    sqe = get_sqe(w);
    if (w->direct)
        io_uring_prep_close_direct(sqe, (unsigned)c->fd);
    else
        io_uring_prep_close(sqe, c->fd);
    quiet(sqe);
    c->phase = PHASE_FREE;
    w->live--;
    if (w->accept_paused && !w->stopping) {
        w->accept_paused = false;
        arm_accept(w);
    }
}

/* Close now: cancel whatever is outstanding, close once it has all completed. */
static void conn_close(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (c->phase == PHASE_CLOSING || c->phase == PHASE_FREE)
        return;
    c->phase = PHASE_CLOSING;
    waitq_remove(&w->slot_wait, c);
    waitq_remove(&w->starved, c);
    inq_drop_all(w, c);
    rbuf_free(c);
    if (c->recv_armed || c->sending) {
        sqe = aux_sqe(w, c);
        io_uring_prep_cancel_fd(
            sqe, c->fd, IORING_ASYNC_CANCEL_ALL | (w->direct ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
    }
    if (c->timer_armed) {
        sqe = get_sqe(w);
        io_uring_prep_timeout_remove(sqe, ud_make(OP_TIMER, c->idx, c->gen), 0);
        quiet(sqe);
    }
    conn_reap(w, c);
}

/* After a response that closes the connection: send our FIN, then read and
 * discard until the client's, so unread request bytes cannot turn our close
 * into a reset that destroys the response on its way. */
static void conn_linger(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (w->stopping || c->eof) {
        conn_close(w, c);
        return;
    }
    c->phase = PHASE_LINGER;
    inq_drop_all(w, c);
    rbuf_free(c);
    sqe = aux_sqe(w, c);
    io_uring_prep_shutdown(sqe, c->fd, SHUT_WR);
    conn_fixed(w, sqe);
    if (!c->recv_armed && !c->queued[Q_STARVED])
        arm_recv(w, c);
    set_deadline(w, c, LINGER_MS);
}

/* --- receiving ------------------------------------------------------------------------- */

static void arm_recv(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe = conn_sqe(w, c, OP_RECV);

    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    conn_fixed(w, sqe);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    c->recv_armed = true;
    c->recv_cancel = false;
    c->inflight++;
}

/* Too much received ahead of the responses: stop the multishot recv. It is
 * re-armed once the connection has consumed what it holds. */
static void recv_pause(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (!c->recv_armed || c->recv_cancel)
        return;
    sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, ud_make(OP_RECV, c->idx, c->gen), 0);
    quiet(sqe);
    c->recv_cancel = true;
}

/* --- sending ----------------------------------------------------------------------------- */

/* Queue the next piece of the response held in the slot: for the first chunk
 * the head is already there and the body follows it. A file body is read into
 * the slot by a READ linked to the SEND, so both go in one submission. */
static void send_chunk(worker_t *w, conn_t *c)
{
    const c10k_resp_t *r = &c->resp;
    char *mem = slot_addr(w, c->slot);
    size_t len = 0, body_done, n;
    struct io_uring_sqe *sqe;
    bool zc;

    if (c->sent == 0)
        len = r->head_len;
    body_done = c->sent > r->head_len ? c->sent - r->head_len : 0;
    if (r->body_mem) {
        n = min_sz(r->body_mem_len - body_done, SLOT_SIZE - len);
        memcpy(mem + len, r->body_mem + body_done, n);
        len += n;
    } else if (r->body_fd >= 0 && body_done < r->body_len) {
        n = min_sz(r->body_len - body_done, SLOT_SIZE - len);
        sq_reserve(w, 2);
        sqe = conn_sqe(w, c, OP_READ);
        if (w->slots_registered)
            io_uring_prep_read_fixed(sqe, r->body_fd, mem + len, (unsigned)n,
                                     (uint64_t)(r->body_off + (off_t)body_done), c->slot);
        else
            io_uring_prep_read(sqe, r->body_fd, mem + len, (unsigned)n,
                               (uint64_t)(r->body_off + (off_t)body_done));
        sqe->flags |= IOSQE_IO_LINK; /* a failed or short read cancels the send */
        c->inflight++;
        len += n;
    }
    c->chunk_len = len;
    c->chunk_off = 0;
    c->chunk_bad = false;

    zc = opt.zc && len >= ZC_MIN;
    sqe = conn_sqe(w, c, zc ? OP_SEND_ZC : OP_SEND);
    /* MSG_WAITALL: io_uring itself retries a partial send until all is out. */
    if (zc && w->slots_registered)
        io_uring_prep_send_zc_fixed(sqe, c->fd, mem, len, MSG_WAITALL | MSG_NOSIGNAL, 0,
                                    (unsigned)c->slot);
    else if (zc)
        io_uring_prep_send_zc(sqe, c->fd, mem, len, MSG_WAITALL | MSG_NOSIGNAL, 0);
    else
        io_uring_prep_send(sqe, c->fd, mem, len, MSG_WAITALL | MSG_NOSIGNAL);
    conn_fixed(w, sqe);
    c->inflight++;
}

/* The rest of a chunk the socket took only in part. */
static void send_rest(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe = conn_sqe(w, c, OP_SEND);

    io_uring_prep_send(sqe, c->fd, slot_addr(w, c->slot) + c->chunk_off,
                       c->chunk_len - c->chunk_off, MSG_WAITALL | MSG_NOSIGNAL);
    conn_fixed(w, sqe);
    c->inflight++;
}

static void response_start(worker_t *w, conn_t *c)
{
    const c10k_resp_t *r = &c->resp;

    c->sending = true;
    c->sent = 0;
    c->total = r->head_len + (r->body_mem ? r->body_mem_len : r->body_fd >= 0 ? r->body_len : 0);
    set_deadline(w, c, C10K_SEND_TIMEOUT_MS);
    send_chunk(w, c);
}

static void response_done(worker_t *w, conn_t *c)
{
    bool keep = c->resp.keep_alive;
    int body_fd;

    c->sending = false;
    if (!w->direct)
        c10k_log_access(w->srv, &c->peer.sa, &c->resp, c->sent);
    body_fd = c10k_resp_take_fd(&c->resp); /* -1 for a file the open-file cache holds */
    if (body_fd >= 0) {                    /* closed by the ring: one syscall fewer */
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_close(sqe, body_fd);
        quiet(sqe);
    }
    c10k_resp_finish(&c->resp);
    /* The plan's method and target pointed into the input until now. */
    if (c->from_rbuf) {
        c->rlen -= c->consumed;
        memmove(c->rbuf, c->rbuf + c->consumed, c->rlen);
        if (c->rlen == 0)
            rbuf_free(c);
    } else if (c->consumed > 0) {
        inq_consume(w, c, c->consumed);
    }
    c->consumed = 0;
    slot_put(w, c);
    if (!keep) {
        conn_linger(w, c);
    } else if (w->stopping) {
        conn_close(w, c);
    } else {
        set_deadline(w, c, w->srv->cfg.keepalive_ms);
        conn_process(w, c);
    }
}

/* --- the request loop of one connection --------------------------------------------------- */

/* Nothing more to answer now: wait for the rest of a head or the next request. */
static void conn_idle(worker_t *w, conn_t *c)
{
    if (c->eof) {
        conn_close(w, c);
        return;
    }
    if (!c->head_started && buffered(c) > 0) { /* the first bytes of a head: header clock */
        c->head_started = true;
        set_deadline(w, c, w->srv->cfg.header_ms);
    }
    if (!c->recv_armed && !c->queued[Q_STARVED] && c->inq_n < INQ_HIGH)
        arm_recv(w, c);
}

/* Parse and answer the next request if the connection holds one. Parsing is
 * straight from the received buffer; only an incomplete head moves to rbuf. */
static void conn_process(worker_t *w, conn_t *c)
{
    const char *buf;
    size_t len;
    ssize_t n;

    while (c->phase == PHASE_ACTIVE && !c->sending) {
        if (c->rlen > 0) {
            rbuf_fill(w, c);
            buf = c->rbuf;
            len = c->rlen;
        } else if (c->inq_n > 0) {
            const inbuf_t *b = &c->inq[c->inq_head];
            buf = buf_addr(w, b->bid) + b->off;
            len = (size_t)(b->len - b->off);
        } else {
            break;
        }
        if (!slot_get(w, c)) { /* every slot busy: wait for one */
            waitq_push(&w->slot_wait, c);
            return;
        }
        c->req.force_close = w->stopping;
        n = c10k_http_handle(&w->srv->site, &c->req, buf, len, slot_addr(w, c->slot), SLOT_SIZE,
                             &c->resp);
        if (n < 0) {
            c10k_warn(w->srv, "handler: %s", strerror((int)-n));
            conn_close(w, c);
            return;
        }
        if (n == C10K_INCOMPLETE) {
            if (buf == c->rbuf) /* rbuf holds all there is: wait for more */
                break;
            c->rbuf = malloc(C10K_REQ_BUF); /* the head spans buffers: assemble it */
            if (!c->rbuf) {
                conn_close(w, c);
                return;
            }
            rbuf_fill(w, c);
            continue;
        }
        c->from_rbuf = buf == c->rbuf;
        c->consumed = (size_t)n;
        c->head_started = false;
        response_start(w, c);
        return;
    }
    if (c->phase != PHASE_ACTIVE || c->sending)
        return;
    slot_put(w, c);
    conn_idle(w, c);
}

/* --- completion handlers ------------------------------------------------------------------- */

static void handle_accept_error(worker_t *w, struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    if (w->stopping)
        return;
    if (cqe->res == -ENFILE || cqe->res == -EMFILE) {
        /* Table full: accept again once a connection has closed. */
        w->accept_paused = true;
        return;
    }
    arm_accept(w);
}

static void handle_accept(worker_t *w, struct io_uring_cqe *cqe)
{
    conn_t *c;
    socklen_t sl;

    if (cqe->res < 0) {
        handle_accept_error(w, cqe);
        return;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE) && !w->stopping) /* the multishot accept ended */
        arm_accept(w);
    if ((uint32_t)cqe->res >= w->nconns || w->conns[cqe->res].phase != PHASE_FREE || w->stopping) {
        struct io_uring_sqe *sqe = get_sqe(w);
        if (w->direct)
            io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
        else
            io_uring_prep_close(sqe, cqe->res);
        quiet(sqe);
        return;
    }
    c = &w->conns[cqe->res];
    c->gen++;
    c->idx = (uint32_t)cqe->res;
    c->fd = cqe->res;
    c->phase = PHASE_ACTIVE;
    c->inflight = 0;
    c->recv_armed = c->recv_cancel = c->eof = c->timer_armed = false;
    c->sending = c->chunk_bad = c->from_rbuf = false;
    c->head_started = true; /* the first request is on the header clock from accept */
    c->inq_head = c->inq_n = 0;
    c->rbuf = NULL;
    c->rlen = c->consumed = 0;
    c->slot = -1;
    c->resp.body_fd = -1;
    c->queued[Q_SLOT] = c->queued[Q_STARVED] = false;
    c10k_req_init(&c->req);
    if (!w->direct) {
        sl = sizeof(c->peer);
        if (getpeername(c->fd, &c->peer.sa, &sl) < 0)
            c->peer.sa.sa_family = AF_UNSPEC;
    }
    if (c->idx >= w->hiwater)
        w->hiwater = c->idx + 1;
    w->live++;
    set_deadline(w, c, w->srv->cfg.header_ms);
    arm_recv(w, c);
}

static void handle_recv_error(worker_t *w, conn_t *c, int res)
{
    if (res == -ENOBUFS) { /* the ring ran out of buffers: resume when some return */
        waitq_push(&w->starved, c);
        return;
    }
    if (res == -ECANCELED && c->phase == PHASE_ACTIVE) { /* our backpressure */
        conn_process(w, c);
        return;
    }
    if (res == -ECANCELED && c->phase == PHASE_LINGER) {
        arm_recv(w, c);
        return;
    }
    conn_close(w, c); /* reset, or worse */
}

/* Everything but bytes for an active connection: errors, the client's FIN,
 * and bytes that arrive while lingering or closing (their buffer is back). */
static void handle_recv_other(worker_t *w, conn_t *c, int res)
{
    if (c->phase == PHASE_CLOSING) {
        conn_reap(w, c);
    } else if (res < 0) {
        handle_recv_error(w, c, res);
    } else if (res == 0) {
        c->eof = true;
        if (c->phase == PHASE_LINGER)
            conn_close(w, c);
        else if (!c->sending) /* else once the response is out */
            conn_process(w, c);
    } else if (!c->recv_armed && !c->queued[Q_STARVED]) { /* lingering: keep draining */
        arm_recv(w, c);
    }
}

static void handle_recv(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    inbuf_t *b;

    if (!(cqe->flags & IORING_CQE_F_MORE)) { /* the multishot recv has ended */
        c->recv_armed = false;
        c->inflight--;
    }
    if (cqe->res <= 0 || c->phase != PHASE_ACTIVE) {
        if (cqe->flags & IORING_CQE_F_BUFFER)
            buf_put(w, bid);
        handle_recv_other(w, c, cqe->res);
        return;
    }
    if (c->inq_n == INQ_CAP) { /* more than backpressure could hold back */
        buf_put(w, bid);
        conn_close(w, c);
        return;
    }
    b = &c->inq[(c->inq_head + c->inq_n) % INQ_CAP];
    b->bid = (uint16_t)bid;
    b->off = 0;
    b->len = (uint16_t)cqe->res;
    c->inq_n++;
    if (c->inq_n >= INQ_HIGH)
        recv_pause(w, c);
    if (!c->sending)
        conn_process(w, c);
}

static void handle_read(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    c->inflight--;
    /* The expected length is the send's: a short read means the file shrank. */
    if (cqe->res < 0 || c->chunk_len == 0 ||
        (size_t)cqe->res != c->chunk_len - (c->sent == 0 ? c->resp.head_len : 0))
        c->chunk_bad = true;
    if (c->phase == PHASE_CLOSING)
        conn_reap(w, c);
}

static void send_progress(worker_t *w, conn_t *c, int res)
{
    if (c->phase == PHASE_CLOSING) {
        conn_reap(w, c);
        return;
    }
    if (res < 0 || c->chunk_bad) { /* peer gone, or the file changed under us */
        conn_close(w, c);
        return;
    }
    c->chunk_off += (size_t)res;
    c->sent += (size_t)res;
    if (res == 0 && c->chunk_off < c->chunk_len) {
        conn_close(w, c);
        return;
    }
    set_deadline(w, c, C10K_SEND_TIMEOUT_MS);
    if (c->chunk_off < c->chunk_len)
        send_rest(w, c);
    else if (c->sent < c->total)
        send_chunk(w, c);
    else
        response_done(w, c);
}

static void handle_send(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    c->inflight--;
    send_progress(w, c, cqe->res);
}

/* SEND_ZC completes twice: the result (with F_MORE), then a notification
 * (F_NOTIF) once the kernel no longer reads our buffer. Only then may the
 * slot be refilled. */
static void handle_send_zc(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        c->inflight--;
        send_progress(w, c, c->zc_res);
        return;
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        c->zc_res = cqe->res;
        return;
    }
    c->inflight--;
    send_progress(w, c, cqe->res);
}

static void conn_timeout(worker_t *w, conn_t *c)
{
    size_t len = buffered(c);

    if (c->phase != PHASE_ACTIVE || c->sending || !slot_get(w, c)) {
        conn_close(w, c);
        return;
    }
    if (!c10k_http_timeout(&c->req, len, slot_addr(w, c->slot), SLOT_SIZE, &c->resp)) {
        conn_close(w, c);
        return;
    }
    /* 408: what was received is abandoned; the response closes the connection. */
    inq_drop_all(w, c);
    rbuf_free(c);
    c->consumed = 0;
    c->from_rbuf = false;
    response_start(w, c);
}

static void handle_aux(worker_t *w, conn_t *c)
{
    c->inflight--;
    conn_reap(w, c);
}

static void handle_timer(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    c->inflight--;
    c->timer_armed = false;
    if (c->phase == PHASE_CLOSING) {
        conn_reap(w, c);
        return;
    }
    if (cqe->res != -ETIME) /* removed or updated away: nothing to do */
        return;
    if (w->now < c->deadline) { /* activity since: sleep for the rest */
        timer_arm(w, c, c->deadline - w->now);
        return;
    }
    conn_timeout(w, c);
}

static void handle_stop(worker_t *w)
{
    struct io_uring_sqe *sqe;

    w->stopping = true;
    sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, 0), 0);
    quiet(sqe);
    /* Stop listening at once: with SO_REUSEPORT the kernel would otherwise
     * keep queueing connections here that nobody will accept. */
    shutdown(w->listen_fd, SHUT_RD);
    for (uint32_t i = 0; i < w->hiwater; i++) {
        conn_t *c = &w->conns[i];
        if (c->phase == PHASE_ACTIVE && c->sending) /* finish it, then close */
            c->req.force_close = true;
        else if (c->phase == PHASE_ACTIVE || c->phase == PHASE_LINGER)
            conn_close(w, c);
    }
    sqe = get_sqe(w);
    w->grace_ts.tv_sec = w->srv->cfg.grace_ms / 1000;
    w->grace_ts.tv_nsec = (w->srv->cfg.grace_ms % 1000) * 1000000LL;
    io_uring_prep_timeout(sqe, &w->grace_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_GRACE, 0, 0));
}

static void handle_grace(worker_t *w, struct io_uring_cqe *cqe)
{
    if (cqe->res == -ETIME) {
        if (w->live > 0)
            c10k_warn(w->srv, "ring %d: grace period over, %u connections dropped", w->id, w->live);
        w->grace_over = true;
    }
}

/* The connection a completion belongs to, or NULL if it is stale (the entry
 * has been reused since); a stale completion's buffer still goes back. */
static conn_t *conn_of(worker_t *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    conn_t *c = ud_idx(ud) < w->nconns ? &w->conns[ud_idx(ud)] : NULL;

    if (c && c->gen == ud_gen(ud) && c->phase != PHASE_FREE)
        return c;
    if (cqe->flags & IORING_CQE_F_BUFFER)
        buf_put(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    return NULL;
}

static void dispatch(worker_t *w, struct io_uring_cqe *cqe)
{
    op_t op = ud_op(cqe->user_data);
    conn_t *c = NULL;

    if (op >= OP_RECV && (c = conn_of(w, cqe)) == NULL)
        return;
    switch (op) {
    case OP_IGNORE:
        break;
    case OP_ACCEPT:
        handle_accept(w, cqe);
        break;
    case OP_STOP:
        handle_stop(w);
        break;
    case OP_GRACE:
        handle_grace(w, cqe);
        break;
    case OP_RECV:
        handle_recv(w, c, cqe);
        break;
    case OP_READ:
        handle_read(w, c, cqe);
        break;
    case OP_SEND:
        handle_send(w, c, cqe);
        break;
    case OP_SEND_ZC:
        handle_send_zc(w, c, cqe);
        break;
    case OP_TIMER:
        handle_timer(w, c, cqe);
        break;
    case OP_AUX:
        handle_aux(w, c);
        break;
    }
}

/* --- the ring --------------------------------------------------------------------------------- */

static void arm_accept(worker_t *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    if (w->direct) /* a direct descriptor has no fd to be close-on-exec: flags must be 0 */
        io_uring_prep_multishot_accept_direct(sqe, w->listen_fd, NULL, NULL, 0);
    else
        io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, 0, 0));
}

static int worker_cpu(const worker_t *w)
{
    const c10k_config_t *cfg = &w->srv->cfg;

    return cfg->ncpus > 0 ? cfg->cpus[w->id % cfg->ncpus] : -1;
}

static int ring_init(worker_t *w)
{
    struct io_uring_params p;
    int ret, cpu = worker_cpu(w);

    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER;
    p.cq_entries = opt.entries * 8 > 8192 ? opt.entries * 8 : 8192;
    if (opt.sqpoll) {
        p.flags |= IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 1000;
        if (cpu >= 0) {
            p.flags |= IORING_SETUP_SQ_AFF;
            p.sq_thread_cpu = (unsigned)cpu;
        }
        return io_uring_queue_init_params(opt.entries, &w->ring, &p);
    }
    /* Task work (completing our requests) runs only when we wait for
     * completions, in our thread: batched, and never interrupting the loop. */
    p.flags |= IORING_SETUP_DEFER_TASKRUN;
    ret = io_uring_queue_init_params(opt.entries, &w->ring, &p);
    if (ret != -EINVAL)
        return ret;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = opt.entries * 8 > 8192 ? opt.entries * 8 : 8192;
    return io_uring_queue_init_params(opt.entries, &w->ring, &p);
}

static int bufs_init(worker_t *w)
{
    struct io_uring_buf_reg reg;
    size_t ring_sz = BUF_COUNT * sizeof(struct io_uring_buf);
    int ret;

    w->br = mmap(NULL, ring_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->br == MAP_FAILED) {
        w->br = NULL;
        return -errno;
    }
    w->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (!w->bufs)
        return -ENOMEM;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)w->br;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = BGID;
    ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (ret < 0)
        return ret;
    io_uring_buf_ring_init(w->br);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        buf_put(w, i);
    buf_flush(w);
    return 0;
}

static int slots_init(worker_t *w)
{
    struct iovec *iov;
    int ret;

    w->nslots = opt.entries;
    w->slots = mmap(NULL, (size_t)w->nslots * SLOT_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->slots == MAP_FAILED) {
        w->slots = NULL;
        return -errno;
    }
    w->slot_free = malloc(w->nslots * sizeof(*w->slot_free));
    iov = malloc(w->nslots * sizeof(*iov));
    if (!w->slot_free || !iov) {
        free(iov);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < w->nslots; i++) {
        w->slot_free[i] = (int)(w->nslots - 1 - i);
        iov[i].iov_base = slot_addr(w, (int)i);
        iov[i].iov_len = SLOT_SIZE;
    }
    w->nslot_free = w->nslots;
    ret = io_uring_register_buffers(&w->ring, iov, w->nslots);
    free(iov);
    w->slots_registered = ret == 0;
    if (ret < 0 && w->id == 0)
        c10k_warn(w->srv,
                  "registering %u KiB of buffers: %s (RLIMIT_MEMLOCK?); using them unregistered",
                  w->nslots * SLOT_SIZE / 1024, strerror(-ret));
    return 0;
}

static int worker_setup(worker_t *w)
{
    struct rlimit rl;
    struct io_uring_sqe *sqe;
    int ret, cpu = worker_cpu(w);

    w->direct = w->srv->log_fd < 0;
    w->slot_wait.id = Q_SLOT;
    w->starved.id = Q_STARVED;
    w->nconns = MAX_CONNS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < MAX_CONNS)
        w->nconns = (uint32_t)rl.rlim_cur;
    w->conns = calloc(w->nconns, sizeof(*w->conns));
    if (!w->conns)
        return -ENOMEM;
    if (w->id == 0) {
        w->listen_fd = w->srv->listen_fd;
    } else {
        w->listen_fd = c10k_listen_more(w->srv);
        if (w->listen_fd < 0)
            return w->listen_fd;
        w->own_listener = true;
    }
    ret = ring_init(w);
    if (ret < 0)
        return ret;
    w->ring_ok = true;
    if (cpu >= 0) { /* io-wq helper threads, if any, stay on our CPU too */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        io_uring_register_iowq_aff(&w->ring, sizeof(set), &set);
    }
    if (w->direct) {
        ret = io_uring_register_files_sparse(&w->ring, w->nconns);
        if (ret < 0)
            return ret;
    }
    ret = bufs_init(w);
    if (ret < 0)
        return ret;
    ret = slots_init(w);
    if (ret < 0)
        return ret;

    sqe = get_sqe(w);
    io_uring_prep_poll_add(sqe, w->srv->stop_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud_make(OP_STOP, 0, 0));
    arm_accept(w);
    return 0;
}

static int worker_loop(worker_t *w)
{
    while (!w->grace_over && !(w->stopping && w->live == 0)) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = io_uring_submit_and_wait(&w->ring, 1);

        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            c10k_warn(w->srv, "ring %d: io_uring_enter: %s", w->id, strerror(-ret));
            return ret;
        }
        w->now = c10k_now_ms();
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            dispatch(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        slots_handoff(w);
        buf_flush(w);
    }
    io_uring_submit(&w->ring); /* the last closes */
    return 0;
}

static void worker_teardown(worker_t *w)
{
    if (w->ring_ok)
        io_uring_queue_exit(&w->ring); /* also closes every direct descriptor */
    if (w->own_listener)
        close(w->listen_fd);
    for (uint32_t i = 0; w->conns && i < w->hiwater; i++) {
        conn_t *c = &w->conns[i];
        if (c->phase != PHASE_FREE) {
            c10k_resp_finish(&c->resp);
            free(c->rbuf);
            if (!w->direct)
                close(c->fd);
        }
    }
    if (w->br)
        munmap(w->br, BUF_COUNT * sizeof(struct io_uring_buf));
    if (w->slots)
        munmap(w->slots, (size_t)w->nslots * SLOT_SIZE);
    free(w->bufs);
    free(w->slot_free);
    free(w->conns);
}

static void latch_done(latch_t *l, int err)
{
    pthread_mutex_lock(&l->lock);
    if (err < 0 && l->err == 0)
        l->err = err;
    l->pending--;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    int ret;

    c10k_pin_worker(w->srv, w->id);
    w->now = c10k_now_ms();
    ret = worker_setup(w);
    if (ret < 0)
        c10k_warn(w->srv, "ring %d: setup: %s", w->id, strerror(-ret));
    latch_done(w->latch, ret);
    if (ret == 0) {
        ret = worker_loop(w);
        if (ret < 0) /* wake the main thread out of c10k_wait_for_stop() */
            kill(getpid(), SIGTERM);
    }
    w->err = ret;
    worker_teardown(w);
    return NULL;
}

/* --- probing: say clearly why io_uring cannot be used -------------------------------------------
 */

static void probe_explain(int err)
{
    char val[16] = "";
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");

    if (f) {
        if (!fgets(val, sizeof(val), f))
            val[0] = '\0';
        val[strcspn(val, "\n")] = '\0';
        fclose(f);
    }
    if (val[0] && strcmp(val, "0") != 0)
        fprintf(stderr,
                "c10k: uring: io_uring is unavailable: disabled by sysctl "
                "kernel.io_uring_disabled=%s (io_uring_setup: %s)\n",
                val, strerror(-err));
    else
        fprintf(stderr,
                "c10k: uring: io_uring is unavailable: io_uring_setup: %s (blocked by a seccomp "
                "filter, as in many containers, or a kernel built without io_uring)\n",
                strerror(-err));
}

static int probe(void)
{
    static const struct {
        int op;
        const char *name;
    } need[] = {
        {IORING_OP_ACCEPT, "ACCEPT"},
        {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},
        {IORING_OP_READ, "READ"},
        {IORING_OP_READ_FIXED, "READ_FIXED"},
        {IORING_OP_TIMEOUT, "TIMEOUT"},
        {IORING_OP_TIMEOUT_REMOVE, "TIMEOUT_REMOVE"},
        {IORING_OP_POLL_ADD, "POLL_ADD"},
        {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_CLOSE, "CLOSE"},
        {IORING_OP_SHUTDOWN, "SHUTDOWN"},
        /* Multishot recv and provided-buffer rings have no probe bit; they
         * came with SEND_ZC's kernel (6.0), which is therefore their witness. */
        {IORING_OP_SEND_ZC, "SEND_ZC (Linux 6.0: multishot recv, buffer rings)"},
    };
    struct io_uring ring;
    struct io_uring_probe *p;
    int ret = io_uring_queue_init(4, &ring, 0);

    if (ret < 0) {
        probe_explain(ret);
        return -EOPNOTSUPP;
    }
    p = io_uring_get_probe_ring(&ring);
    ret = 0;
    for (size_t i = 0; p && i < sizeof(need) / sizeof(need[0]); i++) {
        if (!io_uring_opcode_supported(p, need[i].op)) {
            fprintf(stderr, "c10k: uring: this kernel's io_uring lacks IORING_OP_%s\n",
                    need[i].name);
            ret = -EOPNOTSUPP;
        }
    }
    if (!p) {
        fprintf(stderr, "c10k: uring: io_uring cannot be probed (IORING_REGISTER_PROBE)\n");
        ret = -EOPNOTSUPP;
    }
    if (!(ring.features & IORING_FEAT_FAST_POLL) || !(ring.features & IORING_FEAT_NODROP)) {
        fprintf(stderr, "c10k: uring: io_uring lacks FEAT_FAST_POLL or FEAT_NODROP\n");
        ret = -EOPNOTSUPP;
    }
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    return ret;
}

/* --- the model interface ------------------------------------------------------------------------
 */

static int uring_run(c10k_server_t *srv)
{
    latch_t latch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int n = c10k_worker_count(srv), started = 0, ret;
    worker_t *ws;

    ws = calloc((size_t)n, sizeof(*ws));
    if (!ws)
        return -ENOMEM;
    latch.pending = n;
    for (int i = 0; i < n; i++, started++) {
        ws[i].srv = srv;
        ws[i].id = i;
        ws[i].latch = &latch;
        ws[i].listen_fd = -1;
        ret = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (ret != 0) { /* the workers never created will not report */
            pthread_mutex_lock(&latch.lock);
            latch.pending -= n - i;
            latch.err = -ret;
            pthread_mutex_unlock(&latch.lock);
            break;
        }
    }
    pthread_mutex_lock(&latch.lock);
    while (latch.pending > 0)
        pthread_cond_wait(&latch.cond, &latch.lock);
    ret = latch.err;
    pthread_mutex_unlock(&latch.lock);

    if (ret == 0)
        c10k_wait_for_stop(srv);
    else
        c10k_request_stop(srv);
    for (int i = 0; i < started; i++) {
        pthread_join(ws[i].thread, NULL);
        if (ret == 0 && ws[i].err < 0)
            ret = ws[i].err;
    }
    free(ws);
    return ret;
}

static int uring_set_opt(const char *name, const char *value)
{
    char *end;
    unsigned long v;

    if (strcmp(name, "sqpoll") == 0) {
        opt.sqpoll = true;
        return 0;
    }
    if (strcmp(name, "zc") == 0) {
        opt.zc = true;
        return 0;
    }
    if (strcmp(name, "entries") == 0) {
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno || *end || end == value || v < 16 || v > 4096) {
            fprintf(stderr, "c10k serve: uring: --entries '%s': want 16..4096\n", value);
            return -EINVAL;
        }
        opt.entries = (unsigned)v;
        return 0;
    }
    return -EINVAL;
}

static void uring_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    snprintf(buf, cap, "rings=%d entries=%u files=%s bufs=%ux%uKiB slots=%ux%uKiB%s%s",
             c10k_worker_count(srv), opt.entries, srv->log_fd < 0 ? "direct" : "fd", BUF_COUNT,
             BUF_SIZE / 1024, opt.entries, SLOT_SIZE / 1024, opt.sqpoll ? " sqpoll" : "",
             opt.zc ? " zc" : "");
}

static const c10k_opt_t uring_opts[] = {
    {"entries", "N", "submission queue entries and response slots per ring (default 256)"},
    {"sqpoll", NULL, "a kernel thread polls the submission queue (its CPU counts)"},
    {"zc", NULL, "zero-copy send (SEND_ZC) for chunks of 16 KiB or more"},
    {0},
};

/* The cache variant: uring is the one model that closes a body's descriptor
 * itself, so it is the one that could close the cache's (c10k_resp_take_fd). */
static const char *const uring_variants[] = {
    "--entries 16 --zc", "--sqpoll", "--open-file-cache 64 --open-file-cache-valid 1", NULL};

const c10k_model_t c10k_model_uring = {
    .name = "uring",
    .summary = "io_uring: completion-based rings per thread, multishot accept/recv, "
               "provided buffers",
    .opts = uring_opts,
    .variants = uring_variants,
    .set_opt = uring_set_opt,
    .describe = uring_describe,
    .probe = probe,
    .run = uring_run,
};
