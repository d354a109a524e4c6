/*
 * uring.c - the io_uring model: completion-based, one ring per worker thread.
 *
 * What it is
 *   Each worker thread owns one io_uring, one SO_REUSEPORT listener and the
 *   connections the kernel hands that listener. The loop never asks "is this
 *   socket ready?" (that is epoll's question); it queues the operations it
 *   wants done and reacts to their completions. What a connection does next,
 *   and by when, is decided by the lifecycle policy of conn.h, as for every
 *   model; this file only turns its answers into operations:
 *
 *     C10K_READ    one RECV, with a 4 KiB buffer the kernel picks from a
 *                  provided-buffer ring when data arrives (so a waiting
 *                  connection holds no buffer). The bytes are copied into the
 *                  connection's request buffer (a c10k_io_t, lent from the
 *                  ring's pool while a request is under way) and the buffer
 *                  goes straight back; conn.h parses.
 *     C10K_SEND    a response that fits in a 32 KiB "slot" (head and body):
 *                  the head is copied into a registered slot, the file body
 *                  is read right after it with READ_FIXED, and one linked
 *                  SEND puts both on the wire: two SQEs, no syscall of its
 *                  own. A larger body: SEND of the head (MSG_MORE), then,
 *                  when its pages are cached, sendfile(2) called by the
 *                  ring's thread (not io_uring: see "Large bodies"), else
 *                  SPLICE file -> pipe -> socket, linked; either as often as
 *                  the socket takes less than the rest, with a POLL between.
 *     C10K_LINGER  a SHUTDOWN(SHUT_WR), then RECVs whose bytes are dropped.
 *     C10K_CLOSE   cancel what is in flight, then close.
 *     deadlines    one IORING_OP_TIMEOUT per connection, re-armed lazily:
 *                  conn.h moves the deadline, a timer is re-armed only when
 *                  the deadline moved earlier, and one that fires early asks
 *                  conn.h (which changes nothing before the deadline) and
 *                  sleeps for the rest.
 *     accept       one multishot ACCEPT straight into the ring's registered
 *                  file table (no descriptor in the process at all: "direct
 *                  descriptors").
 *     stop         each ring polls srv->stop_fd, then cancels the accept,
 *                  stops listening, tells every connection (c10k_conn_stop())
 *                  and exits when none is left or --grace has passed.
 *
 *   Stalls: each ring counts its iterations (from io_uring_submit_and_wait's
 *   return to the next call: the batch of completions handled), those over
 *   1 ms and their duration (common/loopstat.h). A file read whose pages are
 *   not in memory does not stall it: READ_FIXED is tried without blocking
 *   and completes later, a SPLICE runs on an io-wq thread (iou-wrk), so the
 *   disk is waited for off the ring's thread (tests/coldcache checks it).
 *
 *   All of it is submitted in batches: the loop is one io_uring_submit_and_wait()
 *   (one io_uring_enter) per batch of completions, however many connections
 *   they belong to, so at load one enter serves many requests (the figures
 *   are in tests/uring/README.md). The ring is SINGLE_ISSUER | DEFER_TASKRUN,
 *   so the kernel completes our requests only while we wait, in our thread,
 *   in batches. user_data packs the operation (low 8 bits), the connection
 *   index (next 24) and its generation (high 32), so a completion for a
 *   connection that has since been replaced is recognised and dropped.
 *
 * Buffers, slots and backpressure
 *   Three kinds of memory, none of which a slow client can take from others:
 *     provided buffers  4 MiB per ring (1024 x 4 KiB), shared. The kernel
 *                  picks one only when bytes arrive for an armed RECV; they
 *                  are copied out in the same batch and the buffer goes back,
 *                  so no connection holds one across a wait. When a batch
 *                  finds the ring empty (-ENOBUFS) the connection queues and
 *                  its RECV is re-armed as buffers come back.
 *     request buffers  a c10k_io_t (32 KiB for request bytes, 10 KiB for the
 *                  response head) per connection with a request under way,
 *                  from the loop's c10k_iopool_t (conn.h, as every model);
 *                  handed back between requests, so an idle keep-alive
 *                  connection holds none. The pool keeps up to
 *                  C10K_IOPOOL_KEEP of them; more go back to malloc.
 *     slots        --entries x 32 KiB, registered, for a response that fits
 *                  in one (head and body). A send to a client that does not
 *                  read keeps its slot until the send completes; when every
 *                  slot is so taken, a response uses 32 KiB of its own memory
 *                  instead, so no request ever waits for a slot (and none can
 *                  sit out its header timeout waiting for one). A larger body
 *                  never takes a slot: sendfile needs no memory at all, and a
 *                  splice goes through a pipe of the connection's own (from
 *                  the ring's pool), which holds page references to the
 *                  file, not copies.
 *   Backpressure is conn.h's: while a response is in flight nothing is read,
 *   and a RECV asks for no more than the room left in the request buffer, so
 *   what a client sends ahead (pipelined requests, a body) stays in its
 *   socket's receive queue, where TCP's window holds the client back. No
 *   request is ever received and then dropped.
 *   So a client that never reads holds: its request buffer, one slot or its
 *   own 32 KiB (small response), a POLL (large body by sendfile) or one pipe
 *   (two descriptors, up to 1 MiB of page references; large body spliced),
 *   and its socket's kernel buffers; for at
 *   most the send timeout (C10K_SEND_TIMEOUT_MS without progress), after
 *   which conn.h closes it (and TCP_USER_TIMEOUT makes the kernel give up on
 *   it). It cannot hold a provided buffer, a place in a queue, an io-wq
 *   thread, or anything that another connection waits for.
 *
 * Large bodies: read + send up to a slot, sendfile beyond (splice if not cached)
 *   What a body costs the server is its bytes (copies) and its rounds (a
 *   round: what the socket takes before it is full, then a wait for room;
 *   a 16 MiB response to a client slower than the server takes dozens).
 *   These were measured against epoll's sendfile, in the same runs
 *   (tests/uring/README.md: the figures, the commands, and the losers):
 *     - READ_FIXED into registered buffers + SEND, in chunks of 32 KiB up to
 *       1 MiB: every round stays in this thread, but the server copies each
 *       byte twice (page cache -> buffer -> socket), which costs more than
 *       sendfile wherever the copies are not hidden behind a slow client.
 *     - SEND_ZC from those buffers (--zc keeps it): it saves the second copy
 *       only on a real NIC; over loopback the kernel copies zero-copy pages
 *       when it delivers them (on the sender's CPU), every send completes
 *       twice, and the buffer stays pinned until the client has taken it.
 *       SEND / SEND_ZC from a mapping of the file: the mmap and munmap of
 *       every response cost more page-table work than the copy they save.
 *     - IORING_OP_SPLICE file -> pipe -> socket (the previous choice): page
 *       references, no copy, but the kernel runs every splice in an io-wq
 *       worker thread. The opcode is force-async (io_uring/splice.c sets
 *       REQ_F_FORCE_ASYNC at prep and io_splice() warns if issued inline);
 *       no flag, pipe size, SPLICE_F_NONBLOCK or poll-first arming changes
 *       that, and fewer io-wq workers only change who runs it. So every
 *       round is a hand-off to that thread and back: two or more context
 *       switches, which on a busy VM made 16 MiB responses cost more than
 *       epoll's.
 *     - sendfile(2) called by this thread: the same page references as a
 *       splice and the same kernel path as epoll's sendfile, with no second
 *       thread: about as many context switches per request as epoll,
 *       where splicing makes several times more, none of them on io-wq.
 *       In CPU per request both sendfile and splice came within the noise
 *       of epoll at 64 KiB, 1 MiB and 16 MiB on a quiet machine, and
 *       splicing cost more than epoll where a switch is dear (a busy VM);
 *       the figures and the command are in tests/uring/README.md. So a
 *       cached body larger than a slot gets sendfile: it never depends on
 *       the price of a thread hand-off.
 *   That part of the model is plainly not io_uring doing the I/O: io_uring
 *   has no sendfile, and its zero-copy path pays a thread hand-off per round.
 *   What stays io_uring's: the wait for room (a POLL, no thread), the accept,
 *   the receive, the head's SEND, the closes. Two conditions keep sendfile
 *   from costing what io_uring is for:
 *     - Every page of what is left of the body is in memory and up to date,
 *       asked before every round (c10k_range_resident() of warm.h: one
 *       cachestat(2); mincore(2) while splices run, since a page that io-wq
 *       is still reading is in the cache but not up to date, and cachestat
 *       counts it); otherwise sendfile would wait for the disk in this
 *       thread and stall every connection of the ring (epoll's loop does).
 *       What is not in memory is spliced: the io-wq thread waits for the
 *       disk, and the next request for the file finds it cached.
 *       (tests/bench/test_coldcache.py checks that the ring's thread
 *       hardly waits for the disk: with one cachestat per response, it
 *       waited about as long as epoll's loop.)
 *     - sendfile needs an ordinary descriptor, and accepted sockets are
 *       direct descriptors: IORING_OP_FIXED_FD_INSTALL (Linux 6.8) installs
 *       one on the connection's first large body, kept until the connection
 *       closes (the ring closes it). Without it (an older kernel, or no
 *       descriptor free), the body is spliced.
 *   The socket is non-blocking, so a round takes what fits and returns: a
 *   short count says the socket is full and a POLL waits for room (asking
 *   again, as epoll's loop does, would only return -EAGAIN). A client that
 *   never reads holds a POLL, never a thread.
 *   The threshold is the slot: a response that fits in one (head + body up
 *   to 32 KiB) goes as READ_FIXED + SEND, where two small copies cost less
 *   than the two syscalls (cachestat, sendfile) of a large path's round; above
 *   it, a READ and a SEND per 32 KiB cost more than one sendfile (measured
 *   at 16 KiB, 30 KB, 64 KiB and 256 KiB).
 *   The splice path (bodies not cached) keeps three rules:
 *     - The head goes first as an inline SEND with MSG_MORE, linked to the
 *       two splices, so all three go in one submission and one hand-off.
 *     - Each round tops the pipe up (1 MiB, F_SETPIPE_SZ) before splicing it
 *       to the socket, so every round offers the socket all it can take.
 *     - Accepted sockets are O_NONBLOCK: a splice to a full socket returns
 *       what it moved (or -EAGAIN) instead of parking the io-wq thread until
 *       the client reads; the next round waits in a POLL (no thread) first.
 *       A slow client therefore holds its pipe, never a thread.
 *
 * What it needs
 *   Linux 6.1+ (provided-buffer rings and IORING_OP_SEND_ZC arrived in 6.0,
 *   DEFER_TASKRUN in 6.1; kernels without DEFER_TASKRUN fall back to
 *   COOP_TASKRUN), liburing 2.3+, io_uring not disabled
 *   (sysctl kernel.io_uring_disabled) nor blocked by seccomp (containers often
 *   do). run() probes with io_uring_get_probe_ring() and, when something is
 *   missing, prints why and returns -EOPNOTSUPP (exit status 2). Sending
 *   cached large bodies with sendfile needs, for direct descriptors,
 *   IORING_OP_FIXED_FD_INSTALL (6.8); without it large bodies are spliced
 *   (the start line says large=splice). Without cachestat(2) (Linux 6.5)
 *   each round's check maps the range for mincore(2) instead. Registered
 *   buffers are pinned memory (RLIMIT_MEMLOCK); when registering them fails
 *   the model warns and reads into the same memory unregistered.
 *
 * How to run it
 *   c10k serve uring --root DIR [--workers N] [--entries N] [--sqpoll] [--zc]
 *     --entries N  SQ size per ring (default 256); also the number of response
 *                  slots (32 KiB each, registered) and of request buffers
 *                  kept for reuse per ring.
 *     --sqpoll     a kernel thread (iou-sqp-PID) polls the SQ, so submitting
 *                  needs no syscall while it is awake. Counting its CPU: it
 *                  is a thread of the server process, so `perf stat -e
 *                  task-clock -p PID`, `ps -L -p PID` and `pidstat -t -p PID`
 *                  include it; and with --cpus it is pinned to its worker's
 *                  CPU (IORING_SETUP_SQ_AFF), so a one-CPU comparison stays
 *                  honest. There it loses (tests/uring/README.md): poller
 *                  and worker share the CPU. It pays only with a core to
 *                  spare.
 *     --zc         send from the slots with SEND_ZC (zero copy) every chunk
 *                  of 16 KiB or more, large bodies included (in slot-sized
 *                  chunks, not by sendfile or splice); a slot is reused only
 *                  after the kernel's notification. Over loopback it is
 *                  slower (tests/uring/README.md): local delivery copies
 *                  anyway and every send completes twice. It is meant for a
 *                  real NIC.
 *   With --access-log, connections are accepted into ordinary descriptors,
 *   because the log needs getpeername() and a direct descriptor has no fd to
 *   ask.
 *
 * Trade-offs
 *   + Few syscalls: at load, one io_uring_enter serves many requests; no
 *     epoll_wait/read/write per request, and a sendfile only for a body
 *     larger than a slot.
 *   + Receive buffers are shared by the ring (provided buffers), not owned by
 *     every connection; large bodies are sent from the page cache, never
 *     copied.
 *   - The most intricate model here: every operation's lifetime must be
 *     tracked (conn->inflight) before a connection can be closed, a recv
 *     can find the buffer ring empty (-ENOBUFS) and must be re-armed when
 *     buffers return, and a buffer must be returned exactly once.
 *   - Needs a recent kernel and is often disabled in containers.
 *   - Memory per ring is set up front: 4 MiB of receive buffers and
 *     --entries x 32 KiB of response slots; when all slots are busy, a
 *     response uses memory of its own instead (never a wait).
 *   - Large cached bodies leave by sendfile(2) from the ring's thread, not
 *     by io_uring: io_uring's splice costs an io-wq thread hand-off per
 *     round, which made 16 MiB bodies dearer than epoll's sendfile. A body
 *     not in the page cache is still spliced (io-wq waits for the disk, not
 *     the ring), at that price, plus a pipe (two descriptors) per connection
 *     sending it. A connection that has sent a large body keeps one more
 *     descriptor (installed for sendfile) until it closes.
 */
#include "cli.h"
#include "conn.h"
#include "loopstat.h"
#include "warm.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- settings ------------------------------------------------------------------ */

#define BGID       0             /* our one provided-buffer group per ring */
#define BUF_SIZE   4096          /* one provided receive buffer */
#define BUF_COUNT  1024          /* provided buffers per ring (a power of two) */
#define SLOT_SIZE  32768         /* response slot: head + first body chunk */
#define ZC_MIN     16384         /* --zc: smaller sends are cheaper copied */
#define PIPE_CACHE 64            /* empty pipes a ring keeps for reuse */
#define PIPE_SIZE  (1024 * 1024) /* asked of F_SETPIPE_SZ: a 1 MiB body in one splice */
#define MAX_CONNS  65536         /* connections per ring (bounded by RLIMIT_NOFILE) */

/* Newer than liburing 2.3's headers: IORING_OP_FIXED_FD_INSTALL (Linux 6.8;
 * the probe checks the kernel has it). */
#define OP_FIXED_FD_INSTALL 54

static struct {
    bool sqpoll;
    bool zc;
    unsigned entries;
} opt = {.entries = 256};

static bool can_install; /* the kernel has IORING_OP_FIXED_FD_INSTALL (probe) */

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
    OP_SPLICE_IN,  /* file -> pipe */
    OP_SPLICE_OUT, /* pipe -> socket */
    OP_POLL,       /* wait until the socket takes more */
    OP_TIMER,
    OP_AUX,     /* shutdown or cancel-by-descriptor on a connection's socket */
    OP_INSTALL, /* an ordinary descriptor for a direct one, for sendfile(2) */
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
    PHASE_OPEN,    /* conn.h decides what it does */
    PHASE_CLOSING, /* waiting for its operations to complete, then closed */
} phase_t;

typedef struct conn_s conn_t;

struct conn_s {
    c10k_conn_t cc; /* the lifecycle: what to do next, and by when (conn.h) */
    uint32_t gen;   /* bumped for every new connection in this entry */
    uint32_t idx;
    int fd; /* direct descriptor (registered file index) or ordinary fd */
    phase_t phase;
    unsigned inflight; /* operations whose completion is still to come */

    bool recv_armed;
    bool starved; /* waits in the ring's queue for a receive buffer */
    bool timer_armed;
    bool chunk_bad;     /* an operation of the chunk in flight failed or came up short */
    bool sock_full;     /* the last splice to the socket left bytes in the pipe */
    unsigned chunk_ops; /* operations of the chunk in flight still to complete */

    char *out; /* slot path: the chunk, in a registered slot or our own memory */
    int slot;  /* its slot, or -1 */
    size_t chunk_len, chunk_off, read_len;
    int zc_res;

    int pipe[2]; /* splice path: a pipe from the ring's pool, or -1 */
    size_t pipe_cap, in_pipe, splice_len;

    bool no_install; /* installing a descriptor failed: this connection splices */
    int sock_fd;     /* direct descriptors: the ordinary one installed for sendfile, or -1 */

    int64_t timer_at;
    struct __kernel_timespec ts; /* read by the kernel when the SQE is submitted */
    conn_t *starved_next;

    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer; /* ordinary-descriptor mode only (access log) */
};

typedef struct {
    c10k_server_t *srv;
    int id;
    struct io_uring ring;
    bool ring_ok;
    bool direct; /* connections are direct descriptors */
    int listen_fd;

    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned br_pending; /* buffers returned since the last advance */

    char *slots;
    int *slot_free;
    unsigned nslots, nslot_free;
    bool slots_registered;

    c10k_iopool_t iopool; /* request buffers kept for reuse */
    struct {
        int fd[2];
        size_t cap;
    } pipes[PIPE_CACHE];
    unsigned npipes;

    conn_t *conns;
    uint32_t nconns, hiwater;
    unsigned live;

    conn_t *starved_head, *starved_tail; /* FIFO of connections whose recv found no buffer */
    bool accept_paused, stopping, grace_over;
    int64_t now;
    struct __kernel_timespec grace_ts;
    c10k_loopstat_t ls; /* iterations and stalls: a batch of completions handled */
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

/* An SQE for one of a connection's operations: counted in flight, so the
 * connection is not closed (and its entry reused) before it completes. */
static struct io_uring_sqe *conn_sqe(worker_t *w, conn_t *c, op_t op)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_sqe_set_data64(sqe, ud_make(op, c->idx, c->gen));
    c->inflight++;
    return sqe;
}

/* ... on its socket: direct descriptors need IOSQE_FIXED_FILE. */
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

static size_t plan_total(const c10k_resp_t *r)
{
    return r->head_len + (r->body_mem ? r->body_mem_len : r->body_fd >= 0 ? r->body_len : 0);
}

/* --- request buffers: lent to a connection while a request is under way -------- */

/* Request buffers come from the loop's c10k_iopool_t, as in every other
 * model: malloc'd, up to C10K_IOPOOL_KEEP kept for reuse. (They were mapped
 * and unmapped per request beyond --entries kept: with more requests in
 * flight than that, each one paid an mmap, its page faults and a munmap,
 * and uring fell far behind the other loops at 1,000 and 10,000
 * connections.) */
static c10k_io_t *io_lend(worker_t *w)
{
    return c10k_iopool_get(&w->iopool);
}

static void io_back(worker_t *w, c10k_io_t *io)
{
    c10k_iopool_put(&w->iopool, io);
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

    if (n == 0)
        return;
    io_uring_buf_ring_advance(w->br, (int)n);
    w->br_pending = 0;
    while (n-- > 0 && w->starved_head) {
        conn_t *c = w->starved_head;
        w->starved_head = c->starved_next;
        if (!w->starved_head)
            w->starved_tail = NULL;
        c->starved = false;
        if (c->phase == PHASE_OPEN)
            arm_recv(w, c);
    }
}

static void starve(worker_t *w, conn_t *c)
{
    c->starved = true;
    c->starved_next = NULL;
    if (w->starved_tail)
        w->starved_tail->starved_next = c;
    else
        w->starved_head = c;
    w->starved_tail = c;
}

/* O(queue length), but only a connection closing while it starves needs it. */
static void unstarve(worker_t *w, conn_t *c)
{
    conn_t **pp, *prev = NULL;

    if (!c->starved)
        return;
    for (pp = &w->starved_head; *pp != c; pp = &(*pp)->starved_next)
        prev = *pp;
    *pp = c->starved_next;
    if (w->starved_tail == c)
        w->starved_tail = prev;
    c->starved = false;
}

/* --- response slots ---------------------------------------------------------------- */

static char *slot_addr(worker_t *w, int slot)
{
    return w->slots + (size_t)slot * SLOT_SIZE;
}

/* Memory for the next chunk: a registered slot, or when every slot is busy
 * (their clients are slow to take their responses) memory of the
 * connection's own, so nobody ever waits for a slot. */
static bool out_get(worker_t *w, conn_t *c)
{
    if (w->nslot_free > 0) {
        c->slot = w->slot_free[--w->nslot_free];
        c->out = slot_addr(w, c->slot);
        return true;
    }
    c->slot = -1;
    c->out = malloc(SLOT_SIZE);
    return c->out != NULL;
}

static void out_put(worker_t *w, conn_t *c)
{
    if (c->slot >= 0)
        w->slot_free[w->nslot_free++] = c->slot;
    else
        free(c->out);
    c->slot = -1;
    c->out = NULL;
}

/* --- pipes, for splicing large bodies -------------------------------------------------- */

/* Splices of bodies not cached, in any ring of this process: their io-wq
 * reads may be under way, and a page being read is already in the page
 * cache, not up to date yet (cachestat counts it; a sendfile would wait for
 * it), so while there are some, mincore decides (c10k_range_resident()). */
static atomic_int splicing;

static bool pipe_get(worker_t *w, conn_t *c)
{
    int sz;

    if (w->npipes > 0) {
        w->npipes--;
        c->pipe[0] = w->pipes[w->npipes].fd[0];
        c->pipe[1] = w->pipes[w->npipes].fd[1];
        c->pipe_cap = w->pipes[w->npipes].cap;
    } else if (pipe2(c->pipe, O_CLOEXEC) == 0) {
        sz = fcntl(c->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
        if (sz < 0) /* over the user's pipe quota: keep the size it has */
            sz = fcntl(c->pipe[1], F_GETPIPE_SZ);
        c->pipe_cap = sz > 0 ? (size_t)sz : 4096;
    } else {
        c->pipe[0] = c->pipe[1] = -1;
        return false; /* out of descriptors: the slot path needs none */
    }
    c->in_pipe = 0;
    c->sock_full = false;
    atomic_fetch_add(&splicing, 1);
    return true;
}

/* Bytes of the body that still fit in the pipe. It holds pipe_cap / page
 * buffers, each at most one page of the file; the body bytes in it start at
 * body_sent. */
static size_t pipe_room(const conn_t *c, size_t body_sent)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), slots = c->pipe_cap / pg, used = 0;
    size_t start = (size_t)c->cc.io->resp.body_off + body_sent, end = start + c->in_pipe;

    if (c->in_pipe > 0)
        used = (end - 1) / pg - start / pg + 1;
    return used >= slots ? 0 : (slots - used) * pg - end % pg;
}

/* A pipe that still holds bytes of an abandoned response is not reused. */
static void pipe_put(worker_t *w, conn_t *c)
{
    if (c->pipe[0] < 0)
        return;
    atomic_fetch_sub(&splicing, 1);
    if (c->in_pipe == 0 && w->npipes < PIPE_CACHE) {
        w->pipes[w->npipes].fd[0] = c->pipe[0];
        w->pipes[w->npipes].fd[1] = c->pipe[1];
        w->pipes[w->npipes++].cap = c->pipe_cap;
    } else {
        close(c->pipe[0]);
        close(c->pipe[1]);
    }
    c->pipe[0] = c->pipe[1] = -1;
}

/* --- timers: one per connection, re-armed lazily ------------------------------------- */

static void timer_prep(worker_t *w, conn_t *c, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    c->ts.tv_sec = ms / 1000;
    c->ts.tv_nsec = (ms % 1000) * 1000000;
    c->timer_at = w->now + ms;
}

/* conn.h moved c->cc.deadline: an SQE is needed only when there is no timer
 * yet or the deadline moved earlier than it; a timer that fires early is
 * re-armed for the rest (handle_timer). */
static void timer_sync(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (c->phase != PHASE_OPEN || (c->timer_armed && c->cc.deadline >= c->timer_at))
        return;
    timer_prep(w, c, c->cc.deadline - w->now);
    if (!c->timer_armed) {
        sqe = conn_sqe(w, c, OP_TIMER);
        io_uring_prep_timeout(sqe, &c->ts, 0, 0);
        c->timer_armed = true;
        return;
    }
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
    io_back(w, c10k_conn_end(&c->cc));
    if (c->out)
        out_put(w, c);
    pipe_put(w, c);
    if (w->direct && c->sock_fd >= 0) {
        sqe = get_sqe(w);
        io_uring_prep_close(sqe, c->sock_fd);
        quiet(sqe);
        c->sock_fd = -1;
    }
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

/* Close: cancel whatever is outstanding, close once it has all completed.
 * A cancel or shutdown naming the socket may run later, in an io-wq thread,
 * and resolve the descriptor only then: it counts as in flight too, so the
 * socket is not closed (and its table entry reused) before it completes. */
static void conn_close(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (c->phase != PHASE_OPEN)
        return;
    c->phase = PHASE_CLOSING;
    unstarve(w, c);
    if (c->recv_armed || c->chunk_ops > 0) {
        sqe = conn_sqe(w, c, OP_AUX);
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

/* --- doing what conn.h says --------------------------------------------------------------- */

/* One recv at a time, armed only while conn.h wants to read, for at most the
 * room the connection's request buffer has left: what the client sends
 * beyond that stays in the kernel (backpressure). The kernel picks a
 * provided buffer only when data arrives, so a waiting connection holds none.
 * poll_first: nothing is expected yet (the client is reading our response),
 * so skip the attempt that would find the socket empty. */
static void arm_recv(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe;
    size_t room = BUF_SIZE;

    if (c->recv_armed || c->starved)
        return;
    if (c->cc.next == C10K_READ && c->cc.io)
        c10k_conn_room(&c->cc, &room);
    sqe = conn_sqe(w, c, OP_RECV);
    io_uring_prep_recv(sqe, c->fd, NULL, min_sz(room, BUF_SIZE), 0);
    conn_fixed(w, sqe);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    if (!c->cc.io && c->cc.req.requests > 0)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    c->recv_armed = true;
}

static void send_chunk(worker_t *w, conn_t *c);

static void conn_do(worker_t *w, conn_t *c, c10k_next_t next)
{
    struct io_uring_sqe *sqe;

    if (c->phase != PHASE_OPEN)
        return;
    switch (next) {
    case C10K_SEND:
        if (c->chunk_ops == 0)
            send_chunk(w, c);
        break;
    case C10K_READ:
    case C10K_LINGER:
        io_back(w, c10k_conn_idle_io(&c->cc));
        if (c10k_conn_shutdown_due(&c->cc)) {
            sqe = conn_sqe(w, c, OP_AUX);
            io_uring_prep_shutdown(sqe, c->fd, SHUT_WR);
            conn_fixed(w, sqe);
        }
        arm_recv(w, c);
        break;
    case C10K_CLOSE:
        conn_close(w, c);
        return;
    }
    timer_sync(w, c);
}

/* --- sending ----------------------------------------------------------------------------- */

/* An operation of the chunk in flight; the chunk is done when all are. */
static struct io_uring_sqe *chunk_sqe(worker_t *w, conn_t *c, op_t op)
{
    c->chunk_ops++;
    return conn_sqe(w, c, op);
}

/* The next SQE starts only when this one has completed in full; a failed or
 * short one cancels the rest of the chain. Call it after the prep: liburing's
 * io_uring_prep_*() helpers reset sqe->flags, so a link set before them is
 * silently lost, and the READ and SEND of a slot then run side by side (a
 * READ that has to wait for the disk leaves the SEND sending the slot's
 * previous contents). */
static void link_next(struct io_uring_sqe *sqe)
{
    sqe->flags |= IOSQE_IO_LINK;
}

/* Slot path: what is left of the head, then as much body as fits, read from
 * the file straight after it by a READ linked to the SEND, so both go in one
 * submission. */
static void slot_chunk(worker_t *w, conn_t *c)
{
    const c10k_io_t *io = c->cc.io;
    const c10k_resp_t *r = &io->resp;
    size_t done = io->sent.done, len = 0, body_done, n;
    uint64_t off;
    struct io_uring_sqe *sqe;
    bool zc;

    if (!out_get(w, c)) {
        conn_do(w, c, c10k_conn_sent(&c->cc, C10K_ERROR, w->now));
        return;
    }
    if (done < r->head_len) {
        len = r->head_len - done;
        memcpy(c->out, io->head + done, len);
    }
    body_done = done > r->head_len ? done - r->head_len : 0;
    if (r->body_mem) {
        n = min_sz(r->body_mem_len - body_done, SLOT_SIZE - len);
        memcpy(c->out + len, r->body_mem + body_done, n);
        len += n;
    } else if (r->body_fd >= 0 && body_done < r->body_len) {
        c->read_len = n = min_sz(r->body_len - body_done, SLOT_SIZE - len);
        off = (uint64_t)(r->body_off + (off_t)body_done);
        sq_reserve(w, 2);
        sqe = chunk_sqe(w, c, OP_READ);
        if (c->slot >= 0 && w->slots_registered)
            io_uring_prep_read_fixed(sqe, r->body_fd, c->out + len, (unsigned)n, off, c->slot);
        else
            io_uring_prep_read(sqe, r->body_fd, c->out + len, (unsigned)n, off);
        link_next(sqe); /* the send reads what the read wrote */
        len += n;
    }
    c->chunk_len = len;
    c->chunk_off = 0;
    zc = opt.zc && len >= ZC_MIN;
    sqe = chunk_sqe(w, c, zc ? OP_SEND_ZC : OP_SEND);
    /* MSG_WAITALL: io_uring itself retries a partial send until all is out. */
    if (zc && c->slot >= 0 && w->slots_registered)
        io_uring_prep_send_zc_fixed(sqe, c->fd, c->out, len, MSG_WAITALL | MSG_NOSIGNAL, 0,
                                    (unsigned)c->slot);
    else if (zc)
        io_uring_prep_send_zc(sqe, c->fd, c->out, len, MSG_WAITALL | MSG_NOSIGNAL, 0);
    else
        io_uring_prep_send(sqe, c->fd, c->out, len, MSG_WAITALL | MSG_NOSIGNAL);
    conn_fixed(w, sqe);
}

/* The rest of a chunk the socket took only in part. */
static void send_rest(worker_t *w, conn_t *c)
{
    struct io_uring_sqe *sqe = chunk_sqe(w, c, OP_SEND);

    io_uring_prep_send(sqe, c->fd, c->out + c->chunk_off, c->chunk_len - c->chunk_off,
                       MSG_WAITALL | MSG_NOSIGNAL);
    conn_fixed(w, sqe);
}

/* Splice path: the head from the connection's own head buffer, then the body
 * file -> pipe -> socket as page references, never copied. When the socket
 * took only part of what the pipe holds, a POLL waits until it has room:
 * nothing but the pipe is held while the client is slow. */
static void splice_chunk(worker_t *w, conn_t *c)
{
    const c10k_io_t *io = c->cc.io;
    const c10k_resp_t *r = &io->resp;
    size_t done = io->sent.done, body_sent = done > r->head_len ? done - r->head_len : 0;
    size_t add = min_sz(r->body_len - body_sent - c->in_pipe, pipe_room(c, body_sent));
    struct io_uring_sqe *sqe;

    sq_reserve(w, 4);
    if (done < r->head_len) {
        sqe = chunk_sqe(w, c, OP_SEND);
        io_uring_prep_send(sqe, c->fd, io->head + done, r->head_len - done,
                           MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
        conn_fixed(w, sqe);
        link_next(sqe); /* the head before the body */
    }
    if (c->sock_full) {
        sqe = chunk_sqe(w, c, OP_POLL);
        io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
        conn_fixed(w, sqe);
        link_next(sqe);
    }
    /* Top the pipe up, so that each round offers the socket all it can
     * take. NONBLOCK: a pipe fuller than reckoned gives a short splice (an
     * error), never an io-wq thread waiting for room. */
    if (add > 0) {
        c->splice_len = add;
        sqe = chunk_sqe(w, c, OP_SPLICE_IN);
        io_uring_prep_splice(sqe, r->body_fd, r->body_off + (off_t)(body_sent + c->in_pipe),
                             c->pipe[1], -1, (unsigned)add, SPLICE_F_NONBLOCK);
        link_next(sqe);
    }
    /* The socket is O_NONBLOCK, so this splice (run by an io-wq thread)
     * takes what fits and returns, never blocking that thread on a slow
     * client. */
    sqe = chunk_sqe(w, c, OP_SPLICE_OUT);
    io_uring_prep_splice(sqe, c->pipe[0], -1, c->fd, -1, (unsigned)(c->in_pipe + add),
                         SPLICE_F_NONBLOCK);
    conn_fixed(w, sqe);
}

/* A file body that does not fit in one slot with its head: sent with
 * sendfile(2) when its pages are cached, else spliced; unless --zc asks for
 * SEND_ZC from the slots (the reasons are in the header). */
static bool large_body(const c10k_resp_t *r)
{
    return !opt.zc && r->body_fd >= 0 && r->head_len + r->body_len > SLOT_SIZE;
}

/* --- sendfile: large bodies whose pages are cached ------------------------------------------ */

static void chunk_done(worker_t *w, conn_t *c);

/* Whether every page of what is left of the body is in memory and up to
 * date, so that sendfile() from this thread will not wait for the disk. Asked
 * before every round: pages may be evicted between rounds. When it cannot
 * tell: no, and the rest is spliced by io-wq, which may wait. */
static bool body_cached(const c10k_io_t *io)
{
    const c10k_resp_t *r = &io->resp;
    size_t body_sent = io->sent.done > r->head_len ? io->sent.done - r->head_len : 0;

    return c10k_range_resident(r->body_fd, r->body_off + (off_t)body_sent, r->body_len - body_sent,
                               atomic_load(&splicing) > 0) == 1;
}

/* sendfile(2) needs an ordinary descriptor for the socket: a direct one gets
 * one installed (IORING_OP_FIXED_FD_INSTALL, Linux 6.8), kept for the life
 * of the connection. */
static bool sendfile_fits(const worker_t *w, const conn_t *c)
{
    if (!large_body(&c->cc.io->resp) || c->pipe[0] >= 0)
        return false;
    if (w->direct && c->sock_fd < 0 && (!can_install || c->no_install))
        return false;
    return body_cached(c->cc.io);
}

/* One round of the body: what the socket takes now, from this thread. The
 * socket is non-blocking, so a round never waits; a short count says the
 * socket is full (asking again would only return -EAGAIN), and a POLL waits
 * for room, as between splices. */
static void sendfile_round(worker_t *w, conn_t *c)
{
    c10k_io_t *io = c->cc.io;
    const c10k_resp_t *r = &io->resp;
    size_t rest = plan_total(r) - io->sent.done;
    off_t off = r->body_off + (off_t)(io->sent.done - r->head_len);
    struct io_uring_sqe *sqe;
    ssize_t n;

    do
        n = sendfile(w->direct ? c->sock_fd : c->fd, r->body_fd, &off, rest);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        io->sent.done += (size_t)n;
    if ((n > 0 && (size_t)n < rest) || (n < 0 && errno == EAGAIN)) {
        sqe = chunk_sqe(w, c, OP_POLL);
        io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
        conn_fixed(w, sqe);
        return;
    }
    if (n <= 0) /* 0: the file shrank under us; or the peer is gone */
        c->chunk_bad = true;
    chunk_done(w, c);
}

/* The first round installs a descriptor if the connection has none yet and
 * sends the head through the ring (MSG_MORE: it leaves with the body); the
 * body follows when both have completed. */
static void sendfile_chunk(worker_t *w, conn_t *c)
{
    const c10k_io_t *io = c->cc.io;
    struct io_uring_sqe *sqe;

    if (w->direct && c->sock_fd < 0) {
        sqe = chunk_sqe(w, c, OP_INSTALL);
        io_uring_prep_rw(OP_FIXED_FD_INSTALL, sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_FIXED_FILE; /* install_fd_flags 0: close-on-exec */
    }
    if (io->sent.done < io->resp.head_len) {
        sqe = chunk_sqe(w, c, OP_SEND);
        io_uring_prep_send(sqe, c->fd, io->head + io->sent.done, io->resp.head_len - io->sent.done,
                           MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
        conn_fixed(w, sqe);
    }
    if (c->chunk_ops == 0)
        sendfile_round(w, c);
}

static void send_chunk(worker_t *w, conn_t *c)
{
    const c10k_resp_t *r = &c->cc.io->resp;

    c->chunk_bad = false;
    if (c->out)
        send_rest(w, c);
    else if (sendfile_fits(w, c))
        sendfile_chunk(w, c);
    else if (c->pipe[0] >= 0 || (large_body(r) && pipe_get(w, c)))
        splice_chunk(w, c);
    else
        slot_chunk(w, c);
}

/* The chunk's last operation completed: conn.h hears how far the plan got.
 * When all of it went, its file is closed by the ring (one syscall fewer per
 * request than c10k_resp_finish() closing it), unless the open-file cache
 * holds it (c10k_resp_take_fd() leaves that one to c10k_resp_finish()). */
static void chunk_done(worker_t *w, conn_t *c)
{
    c10k_io_t *io = c->cc.io;
    c10k_resp_t *r = &io->resp;
    c10k_status_t st = C10K_AGAIN;
    struct io_uring_sqe *sqe;
    int body_fd;

    if (c->chunk_bad) { /* peer gone, or the file changed under us */
        st = C10K_ERROR;
    } else if (io->sent.done == plan_total(r)) {
        st = C10K_OK;
        pipe_put(w, c);
        body_fd = c10k_resp_take_fd(r);
        if (body_fd >= 0) {
            sqe = get_sqe(w);
            io_uring_prep_close(sqe, body_fd);
            quiet(sqe);
        }
    }
    if (c->out && (st != C10K_AGAIN || c->chunk_off == c->chunk_len))
        out_put(w, c);
    conn_do(w, c, c10k_conn_sent(&c->cc, st, w->now));
}

/* One operation of the chunk in flight completed. */
static void chunk_step(worker_t *w, conn_t *c, bool ok)
{
    if (!ok)
        c->chunk_bad = true;
    if (--c->chunk_ops == 0 && c->phase == PHASE_OPEN)
        chunk_done(w, c);
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
    const struct sockaddr *peer = NULL;
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
    c->idx = c->fd = cqe->res;
    c->phase = PHASE_OPEN;
    c->inflight = 0;
    c->recv_armed = c->starved = c->timer_armed = false;
    c->chunk_ops = 0;
    c->slot = c->pipe[0] = c->pipe[1] = c->sock_fd = -1;
    c->out = NULL;
    c->no_install = false;
    if (!w->direct) {
        sl = sizeof(c->peer);
        peer = &c->peer.sa;
        if (getpeername(c->fd, &c->peer.sa, &sl) < 0)
            c->peer.sa.sa_family = AF_UNSPEC;
    }
    if (c->idx >= w->hiwater)
        w->hiwater = c->idx + 1;
    w->live++;
    conn_do(w, c, c10k_conn_start(&c->cc, w->srv, peer, w->now));
}

/* Received bytes go from the provided buffer into the connection's request
 * buffer (lent now if it has none) and the buffer goes straight back. */
static void handle_recv(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    size_t room;

    c->recv_armed = false;
    if (res > 0 && c->phase == PHASE_OPEN && c->cc.next == C10K_READ) {
        if (!c->cc.io)
            c->cc.io = io_lend(w);
        if (!c->cc.io)
            res = -ENOMEM;
        else
            memcpy(c10k_conn_room(&c->cc, &room),
                   buf_addr(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT), (size_t)res);
    }
    if (cqe->flags & IORING_CQE_F_BUFFER)
        buf_put(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (c->phase != PHASE_OPEN) {
        return;
    } else if (res == -ENOBUFS) { /* the ring ran out of buffers: resume when some return */
        starve(w, c);
    } else if (c->cc.next == C10K_SEND) { /* a 408 went out meanwhile: the bytes are dropped */
        return;
    } else {
        conn_do(w, c, c10k_conn_read(&c->cc, res, w->now));
    }
}

static void handle_send(worker_t *w, conn_t *c, int res)
{
    if (res > 0) {
        c->cc.io->sent.done += (size_t)res;
        c->chunk_off += (size_t)res;
    }
    chunk_step(w, c, res > 0);
}

/* SEND_ZC completes twice: the result (with F_MORE), then a notification
 * (F_NOTIF) once the kernel no longer reads our buffer. Only then may the
 * slot be refilled. */
static void handle_send_zc(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_MORE)
        c->zc_res = cqe->res;
    else
        handle_send(w, c, cqe->flags & IORING_CQE_F_NOTIF ? c->zc_res : cqe->res);
}

static void handle_splice(worker_t *w, conn_t *c, op_t op, int res)
{
    bool ok = res > 0;

    if (op == OP_SPLICE_IN) {
        ok = ok && (size_t)res == c->splice_len; /* short: the file shrank */
        c->in_pipe += ok ? (size_t)res : 0;
    } else if (ok) {
        c->cc.io->sent.done += (size_t)res;
        c->in_pipe -= (size_t)res;
        c->sock_full = c->in_pipe > 0;
    } else if (res == -EAGAIN) { /* the socket is full: wait for room */
        c->sock_full = ok = true;
    }
    chunk_step(w, c, ok);
}

/* The descriptor sendfile() needs; without one (out of descriptors) the
 * connection splices instead. */
static void handle_install(worker_t *w, conn_t *c, int res)
{
    if (res >= 0) {
        c->sock_fd = res;
    } else { /* out of descriptors: this connection splices instead */
        c->no_install = true;
    }
    chunk_step(w, c, true);
}

static void handle_timer(worker_t *w, conn_t *c, struct io_uring_cqe *cqe)
{
    c->timer_armed = false;
    if (c->phase != PHASE_OPEN || cqe->res != -ETIME) /* removed: nothing to do */
        return;
    /* Early (activity moved the deadline since): conn.h changes nothing, and
     * the timer is re-armed for the rest. */
    conn_do(w, c, c10k_conn_timeout(&c->cc, w->now));
}

static void handle_stop(worker_t *w)
{
    struct io_uring_sqe *sqe;

    w->stopping = true;
    sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, 0), 0);
    quiet(sqe);
    c10k_worker_listener_close(w->srv, w->listen_fd);
    w->listen_fd = -1;
    for (uint32_t i = 0; i < w->hiwater; i++)
        if (w->conns[i].phase == PHASE_OPEN)
            conn_do(w, &w->conns[i], c10k_conn_stop(&w->conns[i].cc, w->now));
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

/* A completion for one of a connection's operations. All but a SEND_ZC's
 * first (F_MORE) are its last; a closing connection is closed after its
 * last one. */
static void dispatch_conn(worker_t *w, conn_t *c, op_t op, struct io_uring_cqe *cqe)
{
    if (!(op == OP_SEND_ZC && (cqe->flags & IORING_CQE_F_MORE)))
        c->inflight--;
    switch (op) {
    case OP_RECV:
        handle_recv(w, c, cqe);
        break;
    case OP_READ: /* short: the file shrank */
        chunk_step(w, c, cqe->res >= 0 && (size_t)cqe->res == c->read_len);
        break;
    case OP_SEND:
        handle_send(w, c, cqe->res);
        break;
    case OP_SEND_ZC:
        handle_send_zc(w, c, cqe);
        break;
    case OP_SPLICE_IN:
    case OP_SPLICE_OUT:
        handle_splice(w, c, op, cqe->res);
        break;
    case OP_POLL:
        chunk_step(w, c, cqe->res > 0);
        break;
    case OP_TIMER:
        handle_timer(w, c, cqe);
        break;
    case OP_INSTALL:
        handle_install(w, c, cqe->res);
        break;
    default: /* OP_AUX: a shutdown or a cancel */
        break;
    }
    conn_reap(w, c);
}

static void dispatch(worker_t *w, struct io_uring_cqe *cqe)
{
    op_t op = ud_op(cqe->user_data);
    conn_t *c;

    if (op >= OP_RECV) {
        if ((c = conn_of(w, cqe)) != NULL)
            dispatch_conn(w, c, op, cqe);
        return;
    }
    if (op == OP_ACCEPT)
        handle_accept(w, cqe);
    else if (op == OP_STOP)
        handle_stop(w);
    else if (op == OP_GRACE)
        handle_grace(w, cqe);
}

/* --- the ring --------------------------------------------------------------------------------- */

static void arm_accept(worker_t *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    /* O_NONBLOCK: io_uring's own socket operations wait by polling anyway,
     * but a splice to the socket runs in an io-wq thread, which must never
     * block on a slow client. A direct descriptor has no fd to be
     * close-on-exec. */
    if (w->direct)
        io_uring_prep_multishot_accept_direct(sqe, w->listen_fd, NULL, NULL, SOCK_NONBLOCK);
    else
        io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
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
    w->nconns = MAX_CONNS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < MAX_CONNS)
        w->nconns = (uint32_t)rl.rlim_cur;
    w->conns = calloc(w->nconns, sizeof(*w->conns));
    if (!w->conns)
        return -ENOMEM;
    w->listen_fd = c10k_worker_listener(w->srv, w->id, false);
    if (w->listen_fd < 0)
        return w->listen_fd;
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

/* --- the worker (workers.h): init, serve and fini run in its own thread ---------------------- */

static int uring_init(void *state, c10k_server_t *srv, int id)
{
    worker_t *w = state;
    int ret;

    w->srv = srv;
    w->id = id;
    w->listen_fd = -1;
    w->now = c10k_now_ms();
    ret = worker_setup(w);
    if (ret < 0)
        c10k_warn(srv, "ring %d: setup: %s", id, strerror(-ret));
    else
        c10k_loopstat_publish(&w->ls); /* counters are extras: run on without */
    return ret;
}

static int uring_serve(void *state)
{
    worker_t *w = state;

    while (!w->grace_over && !(w->stopping && w->live == 0)) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int64_t ns;
        int ret;

        c10k_loop_idle(&w->ls);
        ret = io_uring_submit_and_wait(&w->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            c10k_warn(w->srv, "ring %d: io_uring_enter: %s", w->id, strerror(-ret));
            return ret;
        }
        ns = c10k_now_ns(); /* the one clock read of the wake-up, for both */
        c10k_loop_busy(&w->ls, ns);
        w->now = ns / 1000000;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            dispatch(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        buf_flush(w);
    }
    io_uring_submit(&w->ring); /* the last closes */
    return 0;
}

/* At the end of --grace, with the ring gone: release what a connection
 * still holds. */
static void conn_abandon(worker_t *w, conn_t *c)
{
    io_back(w, c10k_conn_end(&c->cc));
    if (c->out && c->slot < 0)
        free(c->out);
    c->in_pipe = 1; /* so pipe_put() closes the pipe */
    pipe_put(w, c);
    if (w->direct && c->sock_fd >= 0)
        close(c->sock_fd);
    if (!w->direct)
        close(c->fd);
}

static void uring_fini(void *state)
{
    worker_t *w = state;

    c10k_loopstat_unpublish(&w->ls);
    if (w->ring_ok)
        io_uring_queue_exit(&w->ring); /* also closes every direct descriptor */
    c10k_worker_listener_close(w->srv, w->listen_fd);
    for (uint32_t i = 0; w->conns && i < w->hiwater; i++)
        if (w->conns[i].phase != PHASE_FREE)
            conn_abandon(w, &w->conns[i]);
    c10k_iopool_free(&w->iopool);
    while (w->npipes > 0) {
        w->npipes--;
        close(w->pipes[w->npipes].fd[0]);
        close(w->pipes[w->npipes].fd[1]);
    }
    if (w->br)
        munmap(w->br, BUF_COUNT * sizeof(struct io_uring_buf));
    if (w->slots)
        munmap(w->slots, (size_t)w->nslots * SLOT_SIZE);
    free(w->bufs);
    free(w->slot_free);
    free(w->conns);
}

static const c10k_worker_ops_t uring_ops = {
    .size = sizeof(worker_t),
    .init = uring_init,
    .serve = uring_serve,
    .fini = uring_fini,
};

static int uring_run(c10k_server_t *srv)
{
    return c10k_run_workers(srv, &uring_ops);
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
        {IORING_OP_SPLICE, "SPLICE"},
        /* Provided-buffer rings and multishot accept have no probe bit; they
         * came with SEND_ZC's kernel (6.0), which is therefore their witness. */
        {IORING_OP_SEND_ZC, "SEND_ZC (Linux 6.0: provided-buffer rings)"},
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
        can_install = io_uring_opcode_supported(p, OP_FIXED_FD_INSTALL);
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    return ret;
}

/* --- the model interface ------------------------------------------------------------------------
 */

static int uring_set_opt(const char *name, const char *value)
{
    long v;

    if (strcmp(name, "sqpoll") == 0) {
        opt.sqpoll = true;
        return 0;
    }
    if (strcmp(name, "zc") == 0) {
        opt.zc = true;
        return 0;
    }
    if (strcmp(name, "entries") == 0) {
        if (c10k_parse_uint("c10k serve", name, value, 16, 4096, &v) < 0)
            return -EINVAL;
        opt.entries = (unsigned)v;
        return 0;
    }
    return -EINVAL;
}

/* large=: how bodies larger than a slot go (cached: sendfile, else splice). */
static void uring_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    const char *large = opt.zc                            ? "zc"
                        : srv->log_fd >= 0 || can_install ? "sendfile+splice"
                                                          : "splice";

    snprintf(buf, cap, "rings=%d entries=%u files=%s bufs=%ux%uKiB slots=%ux%uKiB large=%s%s",
             c10k_worker_count(srv), opt.entries, srv->log_fd < 0 ? "direct" : "fd", BUF_COUNT,
             BUF_SIZE / 1024, opt.entries, SLOT_SIZE / 1024, large, opt.sqpoll ? " sqpoll" : "");
}

static const c10k_opt_t uring_opts[] = {
    {"entries", "N",
     "submission queue entries, response slots and kept request buffers per ring (default 256)"},
    {"sqpoll", NULL, "a kernel thread polls the submission queue (its CPU counts)"},
    {"zc", NULL, "zero-copy send (SEND_ZC) from the slots, large bodies too (no sendfile)"},
    {0},
};

/* The cache variant: uring is the one model that closes a body's descriptor
 * itself, so it is the one that could close the cache's (c10k_resp_take_fd). */
static const char *const uring_variants[] = {
    "--entries 16 --zc", "--sqpoll", "--open-file-cache 64 --open-file-cache-valid 1", NULL};

const c10k_model_t c10k_model_uring = {
    .name = "uring",
    .summary = "io_uring: completion-based rings per thread, multishot accept, "
               "provided buffers",
    .opts = uring_opts,
    .variants = uring_variants,
    .set_opt = uring_set_opt,
    .describe = uring_describe,
    .probe = probe,
    .run = uring_run,
};
