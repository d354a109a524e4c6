/*
 * conn.h - the connection lifecycle, decided once for every model.
 *
 * The handler (http.h) answers one request; this module decides everything
 * around it, for the whole life of a connection: when to read, what to send,
 * pipelined bytes, keep-alive or close, the header, keep-alive and send
 * deadlines, the 408, lingering close and the graceful stop. It is sans-I/O,
 * like the handler: it never touches a socket and never knows which model
 * runs it. A model only waits and does I/O, reports what happened, and does
 * what the answer says:
 *
 *     model                              policy (this file)
 *     -----                              ------------------
 *     accepted            c10k_conn_start()    ->  READ
 *     read n bytes        c10k_conn_read()     ->  READ | SEND | LINGER | CLOSE
 *     sent some or all    c10k_conn_sent()     ->  SEND | READ | LINGER | CLOSE
 *     deadline passed     c10k_conn_timeout()  ->  SEND (408) | CLOSE | unchanged
 *     stop requested      c10k_conn_stop()     ->  CLOSE | unchanged
 *
 * Every call also sets c->deadline, the absolute time (c10k_now_ms()) at
 * which the model must call c10k_conn_timeout() unless something else
 * happens first. A model with lazy timers (one timer re-armed only when it
 * fires) may call c10k_conn_timeout() early: before c->deadline it changes
 * nothing and returns the current action.
 *
 * The policy, as nginx has it:
 *   - The first request is on the header clock from accept; later requests
 *     from their first byte. A head that does not complete in
 *     --header-timeout gets a 408 (sent in full, under the send timeout),
 *     then the connection closes. An idle keep-alive connection closes
 *     silently after --keepalive-timeout.
 *   - Pipelined requests are answered in order, one response at a time: the
 *     model reads nothing more until the response in flight is sent, so a
 *     client that sends faster than it reads is held back by TCP itself
 *     (backpressure), and no request is ever dropped.
 *   - A response that takes nothing for C10K_SEND_TIMEOUT_MS loses its
 *     connection; any progress restarts that clock.
 *   - Lingering close: when a closing response leaves the client possibly
 *     still sending (an error status, or request bytes left unanswered), the
 *     model shuts its write side down and reads and discards until the
 *     client's EOF, for at most --lingering-time in all and
 *     --lingering-timeout between reads. Closing a socket with unread bytes
 *     makes the kernel send a reset, and a reset destroys the response the
 *     client has not read yet.
 *   - Graceful stop: an idle keep-alive connection closes at once; a client
 *     just accepted, or one with a request under way, still gets its
 *     response, marked Connection: close. The model enforces --grace.
 *
 * Buffers and ownership: a connection reads into and sends from a c10k_io_t
 * that the model owns and lends (c->io). A connection needs it only while a
 * request is under way; c10k_conn_idle_io() hands it back between requests,
 * so an idle keep-alive connection costs only its c10k_conn_t. Models with
 * their own buffers (uring's provided buffers) may keep them and use the
 * lower-level calls marked "for models with their own buffers".
 */
#ifndef C10K_CONN_H
#define C10K_CONN_H

#include "server.h"

/* What the model does next. */
typedef enum {
    C10K_READ,   /* wait until readable (or c->deadline); read into c10k_conn_room();
                    report with c10k_conn_read() */
    C10K_SEND,   /* wait until writable (or c->deadline); send c->io->resp from
                    c->io->sent.done on (c10k_send_plan_nb() does it); report with
                    c10k_conn_sent() */
    C10K_LINGER, /* shutdown(SHUT_WR) once (c10k_conn_shutdown_due() says when), then
                    wait until readable (or c->deadline), read into any scratch buffer
                    and report with c10k_conn_read(); the bytes are discarded */
    C10K_CLOSE,  /* close the socket, give back c->io (c10k_conn_end()) */
} c10k_next_t;

/* Bytes of one request in flight, lent by the model. */
typedef struct c10k_io_s {
    c10k_resp_t resp;      /* the response being sent (C10K_SEND) */
    c10k_sendstate_t sent; /* how much of it has gone */
    size_t len;            /* bytes in buf */
    size_t used;           /* bytes of buf the response in flight answers */
    size_t mark;           /* sent.done when the send clock last restarted */
    char head[C10K_HEAD_BUF];
    char buf[C10K_REQ_BUF];
} c10k_io_t;

/* One connection's lifecycle state: small, since every idle client has one. */
typedef struct c10k_conn_s {
    const c10k_server_t *srv;
    const struct sockaddr *peer; /* model-owned, for the access log; may be NULL */
    c10k_io_t *io;               /* lent by the model; NULL while idle */
    int64_t deadline;            /* when c10k_conn_timeout() is due, c10k_now_ms() clock */
    int64_t linger_end;          /* lingering: the end of --lingering-time */
    c10k_req_t req;
    uint8_t next;      /* c10k_next_t: what the model is doing */
    bool stopping;     /* c10k_conn_stop() was called */
    bool shut_wr_due;  /* lingering has begun and the write side is not shut yet */
    bool head_started; /* the request being read has begun (its header clock runs) */
} c10k_conn_t;

/* A connection was accepted at now. Fills *c (io NULL) and returns C10K_READ
 * with the header deadline. peer may be NULL; it must outlive c. */
c10k_next_t c10k_conn_start(c10k_conn_t *c, const c10k_server_t *srv, const struct sockaddr *peer,
                            int64_t now);

/* Where to read to in C10K_READ: *room bytes at the returned pointer, the
 * free end of c->io->buf. c->io must be set (lend one first when it is NULL).
 * *room may be 0 only when the head has filled the buffer; the policy never
 * asks to read then. */
char *c10k_conn_room(const c10k_conn_t *c, size_t *room);

/*
 * Report a read: n > 0 bytes were appended at c10k_conn_room() (in
 * C10K_LINGER: read anywhere and discarded), n == 0 the client's EOF, n < 0 a
 * negative errno (-EAGAIN and -EINTR are not events: do not report them).
 * In C10K_READ the handler runs over what is buffered: a complete request
 * gives C10K_SEND with the plan in c->io; an incomplete one C10K_READ.
 */
c10k_next_t c10k_conn_read(c10k_conn_t *c, ssize_t n, int64_t now);

/*
 * Report sending: C10K_AGAIN (some or none of it went; c->io->sent.done says
 * how far), C10K_OK (all of it went) or C10K_ERROR (the peer is gone). Any
 * progress restarts the send clock. On C10K_OK the response is logged and
 * finished, and the next request is decided: pipelined bytes already
 * buffered are handled at once (C10K_SEND again), an idle keep-alive
 * connection waits (C10K_READ), a closing one lingers or closes.
 */
c10k_next_t c10k_conn_sent(c10k_conn_t *c, c10k_status_t st, int64_t now);

/*
 * The deadline may have passed. Before c->deadline: no change, returns the
 * current action. Otherwise: a partial head gets a 408 plan (C10K_SEND, in
 * c->io); an idle connection, a stalled send or a lingering connection
 * closes (C10K_CLOSE).
 */
c10k_next_t c10k_conn_timeout(c10k_conn_t *c, int64_t now);

/*
 * The server is stopping. An idle keep-alive connection closes at once
 * (C10K_CLOSE); one with a request under way, or accepted but silent so far,
 * goes on and its next response is its last. Returns the action to take now.
 * Idempotent.
 */
c10k_next_t c10k_conn_stop(c10k_conn_t *c, int64_t now);

/* The server is stopping, and this connection's socket may hold a request
 * the model has not read yet (it was just reported readable, or a peek says
 * so): its next response is its last, marked Connection: close. Call
 * c10k_conn_stop() once the model has read what was there. */
void c10k_conn_stop_soon(c10k_conn_t *c);

/* True once, when lingering begins: the model shuts the write side down
 * (shutdown(fd, SHUT_WR)) before it waits to read. */
bool c10k_conn_shutdown_due(c10k_conn_t *c);

/* Between requests the connection needs no buffers: returns c->io for the
 * model to take back (and sets c->io to NULL), or NULL if it still needs it. */
c10k_io_t *c10k_conn_idle_io(c10k_conn_t *c);

/* The connection is closed (or abandoned at the end of --grace): finishes
 * any response in flight (closing its file) and returns c->io for the model
 * to take back (NULL if none). Safe to call twice. */
c10k_io_t *c10k_conn_end(c10k_conn_t *c);

/* Make io ready to lend (call once per buffer, e.g. when it is allocated). */
void c10k_io_init(c10k_io_t *io);

/* --- a pool of buffers to lend --------------------------------------------------- */

#define C10K_IOPOOL_KEEP 64 /* free buffers a loop keeps, warm in the cache */

/* Free c10k_io_t buffers of one event loop (not thread-safe: one per loop). */
typedef struct c10k_iopool_s {
    c10k_io_t *free[C10K_IOPOOL_KEEP];
    int n;
} c10k_iopool_t;

/* A buffer to lend, ready (c10k_io_init()): a free one, or a new one. NULL
 * when out of memory. */
c10k_io_t *c10k_iopool_get(c10k_iopool_t *p);

/* Take a buffer back (NULL is ignored); beyond C10K_IOPOOL_KEEP it is freed. */
void c10k_iopool_put(c10k_iopool_t *p, c10k_io_t *io);

/* Free every buffer the pool holds. */
void c10k_iopool_free(c10k_iopool_t *p);

/* --- driving a non-blocking socket (readiness models; implemented in net.c) ------ */

/* What an event model has learnt about a socket since it last saw EAGAIN. */
typedef struct c10k_ready_s {
    bool readable; /* reported readable, and no read has returned EAGAIN since */
    bool writable; /* likewise for writing */
    bool rdhup;    /* the peer has shut down its side: a short read may hide its EOF */
} c10k_ready_t;

/*
 * Do what conn.h asks on non-blocking socket fd for as long as it can go on
 * without blocking: read (lending c->io from pool when it has none), send,
 * linger (shutdown once, then read and discard a bounded amount). Clears
 * r->readable / r->writable when a call would block (or a short read shows
 * the socket is empty), and gives c->io back to pool once the connection is
 * idle. Returns what the connection now waits for: C10K_READ or C10K_LINGER
 * (readable), C10K_SEND (writable), or C10K_CLOSE (the model closes fd and
 * calls c10k_conn_end()). Then the model arms its timer for c->deadline.
 */
c10k_next_t c10k_conn_pump(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool,
                           int64_t now);

/*
 * A gate before the first byte of each response (epoll --helpers holds a
 * response until its file range is in memory). Called with C10K_SEND and
 * nothing of c->io->resp sent yet; true sends it, false holds it.
 */
typedef bool (*c10k_send_gate_t)(void *arg, c10k_conn_t *c);

/*
 * c10k_conn_pump() with a gate: a response the gate holds is not sent, and
 * the pump returns C10K_SEND with nothing of it sent. The model pumps again
 * when it is ready to (the gate is asked again then). gate NULL: no gate.
 */
c10k_next_t c10k_conn_pump_gated(c10k_conn_t *c, int fd, c10k_ready_t *r, c10k_iopool_t *pool,
                                 int64_t now, c10k_send_gate_t gate, void *arg);

/* --- straight-line connections (implemented in net.c) --------------------------- */

/*
 * How a connection served by straight-line code waits: with blocking calls
 * in a thread or process of its own (threaded, prefork: c10k_serve_blocking())
 * or with a coroutine's wrappers (coro). c10k_serve_conn() is the one loop
 * both run; only these three differ. ctx is the caller's.
 */
typedef struct c10k_waits_s {
    /* Wait until fd has something to read (1), c->deadline passes (0) or,
     * while !c->stopping, a stop is requested (-ECANCELED). Any other
     * negative errno ends the connection. */
    int (*readable)(void *ctx, int fd, const c10k_conn_t *c);
    /* One read of what is there: bytes, 0 at EOF, or a negative errno
     * (-EAGAIN: nothing after all, wait again). */
    ssize_t (*recv)(void *ctx, int fd, void *buf, size_t len);
    /* C10K_SEND: send the plan in c->io, waiting as needed until it is all
     * out, the send clock (c->deadline) runs out or the peer is gone; report
     * to conn.h (c10k_conn_sent(), c10k_conn_timeout()) and return its answer. */
    c10k_next_t (*send)(void *ctx, int fd, c10k_conn_t *c);
} c10k_waits_t;

/*
 * Serve one accepted connection to its end, top to bottom: read, handle,
 * send the plan, repeat, as conn.h decides, waiting with w. Buffers come from
 * pool while a request is under way and go back to it while the connection
 * is idle. Closes fd. Returns the number of responses planned.
 */
unsigned c10k_serve_conn(c10k_server_t *srv, int fd, const struct sockaddr *peer,
                         c10k_iopool_t *pool, const c10k_waits_t *w, void *ctx);

/* --- for models with their own buffers (uring) ------------------------------------ */

/*
 * A response was sent in full, by a model that keeps the request bytes
 * itself. resp is the plan just sent (logged and finished here); sent is the
 * bytes sent; leftover tells whether request bytes remain unanswered. Returns
 * C10K_READ (keep-alive: handle leftover bytes next, or wait; the deadline is
 * set), C10K_LINGER or C10K_CLOSE.
 */
c10k_next_t c10k_conn_response_done(c10k_conn_t *c, c10k_resp_t *resp, size_t sent, bool leftover,
                                    int64_t now);

/* A model that keeps its own buffers saw the first byte of a request
 * (buffered was 0 before these bytes): starts its header clock. */
void c10k_conn_request_begins(c10k_conn_t *c, int64_t now);

/* A model that keeps its own buffers began sending a plan: C10K_SEND with the
 * send clock started. */
c10k_next_t c10k_conn_send_begins(c10k_conn_t *c, int64_t now);

/* Such a model's send made progress: the send clock restarts. */
void c10k_conn_send_progress(c10k_conn_t *c, int64_t now);

/* Such a model's header deadline passed with `buffered` bytes of a head:
 * returns 1 and fills resp/head with a 408 (then send it, and report with
 * c10k_conn_response_done()), or 0: close. Only call it at c->deadline in
 * C10K_READ. */
int c10k_conn_header_timeout(c10k_conn_t *c, size_t buffered, char *head, size_t head_cap,
                             c10k_resp_t *resp);

#endif
