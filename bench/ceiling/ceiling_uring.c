/*
 * bench/ceiling/ceiling_uring.c - the ceiling's io_uring driver: how a worker
 * waits when it waits with io_uring. The logic is in ceiling.c.
 *
 * Why this is as fast as io_uring goes here
 *   One ring per worker, SINGLE_ISSUER | DEFER_TASKRUN: the kernel completes
 *   our operations only while we wait, in our thread, in batches, and the
 *   whole loop is one io_uring_submit_and_wait() per batch of completions.
 *   A keep-alive request is one RECV completion and one SEND, with no system
 *   call of their own: they ride in the enter that serves every other
 *   connection too. A multishot ACCEPT puts each connection straight into
 *   the ring's table of direct descriptors, so no descriptor is looked up
 *   (or reference-counted) per operation, and the process has no fd for it.
 *   Each connection has at most one operation in flight, RECV or SEND, so it
 *   can be closed as soon as that one completes, with nothing to cancel.
 *
 * The buffers' lifetimes
 *   RECV writes into the connection's own buffer, which stays allocated until
 *   the connection has closed (then it waits on a free list for the next).
 *   SEND and SENDMSG read the canned response, which lives until every
 *   worker has stopped (ceiling.c), so no send can see it freed or changed;
 *   SENDMSG (several pipelined responses at once) also reads the msghdr and
 *   iovecs, which are kept in the connection until its completion.
 *   MSG_WAITALL lets the kernel finish a large response itself (it waits for
 *   room and goes on), so a 16 MiB body is one SEND and one completion, not
 *   hundreds; a completion short of the whole (the peer left) is resumed or
 *   closed by the same accounting as a short send on epoll.
 *
 * What it leaves out, and why
 *   - SEND_ZC: over loopback the kernel copies zero-copy pages at delivery
 *     anyway, and each send completes twice; measured slower than SEND for
 *     1 MiB bodies (bench/README.md, "The ceiling", says how).
 *   - Registered buffers: a copying SEND pins no pages, so they would spare
 *     little, and liburing 2.3 has no SEND from one.
 *   - sendfile: io_uring has no such operation, and IORING_OP_SPLICE always
 *     runs in an io-wq thread (servers/uring/uring.c). So large bodies are
 *     copied here, and for them the epoll driver is the faster ceiling.
 *   - Multishot RECV into provided buffers: it would spare re-arming a poll
 *     per request, at the price of a buffer ring and of backpressure by
 *     cancelling the receive (servers/uring/uring.c does both); not tried,
 *     since this driver already spends less per request than the epoll one.
 *
 * Stopping
 *   The ring polls srv->stop_fd. Then every operation is cancelled, the
 *   loop waits until the last completion is in (so the kernel holds no
 *   pointer into memory we free), and the ring goes, closing every direct
 *   descriptor with it.
 *
 * What it needs
 *   Linux 6.0 (multishot accept into direct descriptors, MSG_WAITALL on
 *   sends, cancel-any), liburing 2.3, io_uring not disabled by
 *   kernel.io_uring_disabled or a seccomp filter. probe() says which is
 *   missing, and c10k-ceiling exits with status 2; c10k bench then uses the
 *   epoll driver alone.
 */
#include "ceiling.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES      1024
#define CQ_ENTRIES      65536 /* more than the completions that can be pending: one per slot */
#define SLOTS_MAX       32768 /* direct descriptors per ring (and RLIMIT_NOFILE at most) */
#define ACCEPT_PAUSE_MS 100   /* after the accept fails for want of a slot */

/* user_data: the operation in the low 8 bits, the connection's slot above. */
typedef enum { OP_ACCEPT = 1, OP_PAUSE, OP_STOP, OP_RECV, OP_SEND, OP_CLOSE, OP_CANCEL } op_t;

typedef struct uconn_s {
    c10k_ceil_conn_t core;
    struct msghdr msg; /* a SENDMSG in flight reads msg and iov until it completes */
    struct iovec iov[C10K_CEIL_IOV_MAX];
    struct uconn_s *next_free;
} uconn_t;

typedef struct {
    c10k_ceil_worker_t *w;
    struct io_uring ring;
    uconn_t **conns;                /* by slot, NULL when the slot is free */
    uconn_t *free_list;             /* closed connections, kept warm for the next ones */
    unsigned nslots;                /* size of the direct-descriptor table */
    unsigned inflight;              /* operations whose last completion has not come */
    bool stopping;                  /* srv->stop_fd became readable */
    struct __kernel_timespec pause; /* for OP_PAUSE; read when the SQE is submitted */
} loop_t;

/* --- submitting ------------------------------------------------------------------------------- */

/* An SQE for op on slot. When the SQ is full we submit what is queued; the
 * ring is SUBMIT_ALL, so the kernel takes all of it and makes room. (It could
 * refuse only for a CQ overflow, and CQ_ENTRIES leaves room for every
 * completion that can be pending at once.) */
static struct io_uring_sqe *sqe_get(loop_t *l, op_t op, unsigned slot)
{
    struct io_uring_sqe *sqe;

    while (!(sqe = io_uring_get_sqe(&l->ring)))
        io_uring_submit(&l->ring);
    io_uring_sqe_set_data64(sqe, (uint64_t)slot << 8 | op);
    l->inflight++;
    return sqe;
}

static void arm_accept(loop_t *l)
{
    struct io_uring_sqe *sqe = sqe_get(l, OP_ACCEPT, 0);

    io_uring_prep_multishot_accept_direct(sqe, l->w->listen_fd, NULL, NULL, 0);
}

static void post_recv(loop_t *l, unsigned slot)
{
    c10k_ceil_conn_t *c = &l->conns[slot]->core;
    struct io_uring_sqe *sqe = sqe_get(l, OP_RECV, slot);

    io_uring_prep_recv(sqe, (int)slot, c->buf + c->len, C10K_CEIL_BUF - c->len, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
}

/* Send what is owed: one response with SEND, several with SENDMSG. */
static void post_send(loop_t *l, unsigned slot)
{
    uconn_t *c = l->conns[slot];
    int n = c10k_ceil_conn_iov(&c->core, c->iov, C10K_CEIL_IOV_MAX);
    struct io_uring_sqe *sqe = sqe_get(l, OP_SEND, slot);

    if (n == 1) {
        io_uring_prep_send(sqe, (int)slot, c->iov[0].iov_base, c->iov[0].iov_len,
                           MSG_NOSIGNAL | MSG_WAITALL);
    } else {
        c->msg = (struct msghdr){.msg_iov = c->iov, .msg_iovlen = (size_t)n};
        io_uring_prep_sendmsg(sqe, (int)slot, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
}

/* Close a slot with nothing in flight; its connection goes to the free list.
 * (The kernel hands out slots round-robin, not lowest first, so memory kept
 * per slot would grow to the whole table under Connection: close.) */
static void conn_close(loop_t *l, unsigned slot)
{
    uconn_t *c = l->conns[slot];

    if (c) {
        c->next_free = l->free_list;
        l->free_list = c;
        l->conns[slot] = NULL;
    }
    io_uring_prep_close_direct(sqe_get(l, OP_CLOSE, slot), slot);
}

/* After a completion: send what is owed, else close or read on. */
static void conn_next(loop_t *l, unsigned slot)
{
    c10k_ceil_conn_t *c = &l->conns[slot]->core;

    if (c10k_ceil_conn_owes(c))
        post_send(l, slot);
    else if (c10k_ceil_conn_done(c))
        conn_close(l, slot);
    else
        post_recv(l, slot);
}

/* --- completions ------------------------------------------------------------------------------ */

static void conn_open(loop_t *l, unsigned slot)
{
    uconn_t *c = l->free_list;

    if (c)
        l->free_list = c->next_free;
    else
        c = malloc(sizeof(*c));
    if (!c) {
        conn_close(l, slot);
        return;
    }
    c10k_ceil_conn_init(&c->core);
    l->conns[slot] = c;
    post_recv(l, slot);
}

static void on_accept(loop_t *l, const struct io_uring_cqe *cqe)
{
    if (cqe->res >= 0)
        conn_open(l, (unsigned)cqe->res);
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    if (cqe->res >= 0) {
        arm_accept(l);
        return;
    }
    /* No slot or no memory: the connection waits in the backlog meanwhile. */
    l->pause = (struct __kernel_timespec){.tv_nsec = ACCEPT_PAUSE_MS * 1000000L};
    io_uring_prep_timeout(sqe_get(l, OP_PAUSE, 0), &l->pause, 0, 0);
}

static void on_recv(loop_t *l, unsigned slot, int res)
{
    if (res <= 0 || c10k_ceil_conn_received(&l->conns[slot]->core, (size_t)res) < 0)
        conn_close(l, slot); /* EOF, reset, or a head too long */
    else
        conn_next(l, slot);
}

static void on_send(loop_t *l, unsigned slot, int res)
{
    if (res <= 0) { /* the peer is gone */
        conn_close(l, slot);
        return;
    }
    c10k_ceil_conn_sent(&l->conns[slot]->core, (size_t)res);
    conn_next(l, slot);
}

static void on_cqe(loop_t *l, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    unsigned slot = (unsigned)(ud >> 8);

    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->inflight--;
    if (l->stopping) /* cancelled, or done as the stop came: nothing more to do */
        return;
    switch ((op_t)(ud & 0xff)) {
    case OP_ACCEPT:
        on_accept(l, cqe);
        break;
    case OP_PAUSE:
        arm_accept(l);
        break;
    case OP_STOP:
        l->stopping = true;
        io_uring_prep_cancel(sqe_get(l, OP_CANCEL, 0), NULL, IORING_ASYNC_CANCEL_ANY);
        break;
    case OP_RECV:
        on_recv(l, slot, cqe->res);
        break;
    case OP_SEND:
        on_send(l, slot, cqe->res);
        break;
    case OP_CLOSE:
    case OP_CANCEL:
        break;
    }
}

/* --- the driver ------------------------------------------------------------------------------- */

/* DEFER_TASKRUN needs Linux 6.1; before it, COOP_TASKRUN is the next best. */
static int ring_init(loop_t *l)
{
    struct io_uring_params p = {
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                 IORING_SETUP_DEFER_TASKRUN,
        .cq_entries = CQ_ENTRIES,
    };
    int ret = io_uring_queue_init_params(SQ_ENTRIES, &l->ring, &p);

    if (ret != -EINVAL)
        return ret;
    p = (struct io_uring_params){
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        .cq_entries = CQ_ENTRIES,
    };
    return io_uring_queue_init_params(SQ_ENTRIES, &l->ring, &p);
}

/* As many slots as descriptors we may have (the kernel's own limit for the
 * table), at most SLOTS_MAX. */
static unsigned slot_count(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > SLOTS_MAX)
        return SLOTS_MAX;
    return (unsigned)rl.rlim_cur;
}

static int uring_setup(c10k_ceil_worker_t *w)
{
    loop_t *l = calloc(1, sizeof(*l));
    const char *what = "calloc";
    int ret = -ENOMEM;

    if (!l)
        goto fail;
    l->w = w;
    l->nslots = slot_count();
    what = "io_uring_queue_init";
    ret = ring_init(l);
    if (ret < 0)
        goto fail;
    what = "io_uring_register_files_sparse";
    ret = io_uring_register_files_sparse(&l->ring, l->nslots);
    l->conns = ret < 0 ? NULL : calloc(l->nslots, sizeof(*l->conns));
    if (ret == 0 && !l->conns)
        ret = -ENOMEM;
    if (ret < 0) {
        io_uring_queue_exit(&l->ring);
        goto fail;
    }
    arm_accept(l);
    io_uring_prep_poll_add(sqe_get(l, OP_STOP, 0), w->srv->stop_fd, POLLIN);
    w->loop = l;
    return 0;
fail:
    fprintf(stderr, "c10k-ceiling: uring: worker %d: %s: %s\n", w->id, what, strerror(-ret));
    free(l);
    return ret;
}

static void loop_free(loop_t *l)
{
    io_uring_queue_exit(&l->ring); /* closes every direct descriptor */
    for (unsigned i = 0; i < l->nslots; i++)
        free(l->conns[i]);
    free(l->conns);
    while (l->free_list) {
        uconn_t *c = l->free_list;
        l->free_list = c->next_free;
        free(c);
    }
    free(l);
}

static int uring_run(c10k_ceil_worker_t *w)
{
    loop_t *l = w->loop;
    int rc = 0;

    /* Until the stop, then until the last cancelled operation is in. */
    while (!l->stopping || l->inflight > 0) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = io_uring_submit_and_wait(&l->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            fprintf(stderr, "c10k-ceiling: uring: io_uring_enter: %s\n", strerror(-ret));
            rc = ret;
            break;
        }
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            on_cqe(l, cqe);
            n++;
        }
        io_uring_cq_advance(&l->ring, n);
    }
    loop_free(l);
    w->loop = NULL;
    return rc;
}

/* Why io_uring_setup failed, in one line: the sysctl, or most likely seccomp. */
static void explain_unavailable(int err)
{
    char val[16] = "0";
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");

    if (f) {
        if (!fgets(val, sizeof(val), f))
            val[0] = '0';
        fclose(f);
    }
    val[strcspn(val, "\n")] = '\0';
    fprintf(stderr, "c10k-ceiling: uring: io_uring is unavailable: io_uring_setup: %s (%s%s)\n",
            strerror(-err),
            strcmp(val, "0") ? "disabled by sysctl kernel.io_uring_disabled="
                             : "blocked by a seccomp filter, as in many containers, "
                               "or a kernel built without io_uring",
            strcmp(val, "0") ? val : "");
}

static int uring_probe(void)
{
    struct io_uring ring;
    struct io_uring_probe *p;
    int ret = io_uring_queue_init(2, &ring, 0);

    if (ret < 0) {
        explain_unavailable(ret);
        return -EOPNOTSUPP;
    }
    p = io_uring_get_probe_ring(&ring);
    /* What we use came by Linux 6.0; SEND_ZC, new in 6.0, is its witness. */
    ret = p && io_uring_opcode_supported(p, IORING_OP_SEND_ZC) ? 0 : -EOPNOTSUPP;
    if (ret < 0)
        fprintf(stderr, "c10k-ceiling: uring: io_uring is unavailable: this kernel's io_uring "
                        "predates Linux 6.0 (no IORING_OP_SEND_ZC)\n");
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    return ret;
}

const c10k_ceil_backend_t c10k_ceil_backend_uring = {
    .name = "uring",
    .probe = uring_probe,
    .setup = uring_setup,
    .run = uring_run,
};
