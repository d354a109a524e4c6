/*
 * ceiling.h - what the ceiling's connection logic (ceiling.c) and its two
 * drivers (ceiling_epoll.c, ceiling_uring.c) share. bench/ceiling/ceiling.c
 * says what the ceiling is and why.
 *
 * The logic is sans-I/O, in the shape of the c10k handler: a driver reads
 * bytes into conn->buf after conn->len, says how many with
 * c10k_ceil_conn_received(), asks c10k_ceil_conn_iov() (or _file()) what to
 * send, and says how much went out with c10k_ceil_conn_sent(). A driver never
 * looks at the bytes; it only decides how to wait, which is all that differs
 * between epoll and io_uring.
 */
#ifndef C10K_CEILING_H
#define C10K_CEILING_H

#include "server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define C10K_CEIL_BUF          8192 /* read buffer per connection: a longer request head closes it */
#define C10K_CEIL_IOV_MAX      64   /* pipelined responses handed to one send */
#define C10K_CEIL_SENDFILE_MIN 65536 /* responses this large go by sendfile where a driver can */

/* One connection, as the logic sees it. A driver embeds it in its own struct
 * and calls c10k_ceil_conn_init() once the connection is accepted. */
typedef struct c10k_ceil_conn_s {
    uint32_t len;     /* bytes in buf: the start of a head not yet complete */
    uint32_t scanned; /* bytes of buf already searched for the head's end */
    uint32_t owed;    /* responses owed, in request order; the first may be partly sent */
    bool closing;     /* the last response owed answers a closing request; then close */
    size_t sent;      /* bytes of the first response owed already sent */
    char buf[C10K_CEIL_BUF];
} c10k_ceil_conn_t;

void c10k_ceil_conn_init(c10k_ceil_conn_t *c);

/* n bytes were read into buf + len. Counts every request head they complete
 * (a request is its head: nothing after the blank line is parsed). Returns 0,
 * or -1 when the connection must close now: a head that does not fit in buf.
 * Call it only while nothing is owed, so a client that does not read its
 * responses is held back by its own socket (backpressure), never dropped. */
int c10k_ceil_conn_received(c10k_ceil_conn_t *c, size_t n);

/* The bytes owed, as up to max iovecs (0 when nothing is owed). They point
 * into the canned responses, which live until every worker has stopped, so a
 * send still in flight can never see them freed or changed. */
int c10k_ceil_conn_iov(const c10k_ceil_conn_t *c, struct iovec *iov, int max);

/* The rest of the first response owed as a range of the file that holds the
 * responses, when it is large enough (C10K_CEIL_SENDFILE_MIN) for sendfile
 * to beat a copy from memory; false otherwise (use c10k_ceil_conn_iov()). The
 * range, like the memory, stays valid until every worker has stopped. */
bool c10k_ceil_conn_file(const c10k_ceil_conn_t *c, int *fd, off_t *off, size_t *len);

/* n bytes of what c10k_ceil_conn_iov() or c10k_ceil_conn_file() gave went out. */
void c10k_ceil_conn_sent(c10k_ceil_conn_t *c, size_t n);

/* What the driver does next: send while something is owed; after that,
 * close if the last response was a closing one; otherwise read. */
static inline bool c10k_ceil_conn_owes(const c10k_ceil_conn_t *c)
{
    return c->owed > 0;
}

static inline bool c10k_ceil_conn_done(const c10k_ceil_conn_t *c)
{
    return c->closing && c->owed == 0;
}

/* One event loop, in its own thread. */
typedef struct c10k_ceil_worker_s {
    c10k_server_t *srv; /* settings, srv->stop_fd (readable once a stop is requested) */
    int id;             /* 0 .. workers-1 */
    int listen_fd;      /* this worker's SO_REUSEPORT listener, O_NONBLOCK; ceiling.c owns it */
    void *loop;         /* the driver's state, from setup() to the end of run() */
} c10k_ceil_worker_t;

/* A driver: how a worker waits. */
typedef struct c10k_ceil_backend_s {
    const char *name; /* as in --backend */
    /* Can this kernel run it? 0, or -EOPNOTSUPP after printing why. */
    int (*probe)(void);
    /* Build the worker's loop around w->listen_fd, in the worker's own thread.
     * 0, or a negative errno after printing why (nothing is left to free). */
    int (*setup)(c10k_ceil_worker_t *w);
    /* Serve until srv->stop_fd is readable, then close every connection and
     * free what setup() made. 0, or a negative errno after printing why. */
    int (*run)(c10k_ceil_worker_t *w);
} c10k_ceil_backend_t;

extern const c10k_ceil_backend_t c10k_ceil_backend_epoll; /* ceiling_epoll.c */
extern const c10k_ceil_backend_t c10k_ceil_backend_uring; /* ceiling_uring.c */

#endif
