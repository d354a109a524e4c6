/*
 * conn.c - the connection lifecycle policy (see conn.h). Pure decisions over
 * the model's reports: no socket calls, no malloc. The only side effects are
 * the handler's own (opening the file to serve), the access log, and closing
 * a finished response's file.
 */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

void c10k_io_init(c10k_io_t *io)
{
    io->resp.body_fd = -1;
    io->resp.body_ref = NULL;
    io->sent.done = 0;
    io->len = io->used = io->mark = 0;
}

/* The response in flight will not be finished: log what went, release it. */
static void abandon_response(c10k_conn_t *c)
{
    if (c->next != C10K_SEND || !c->io)
        return;
    c10k_log_access(c->srv, c->peer, &c->io->resp, c->io->sent.done);
    c10k_resp_finish(&c->io->resp);
}

static c10k_next_t set_close(c10k_conn_t *c)
{
    abandon_response(c);
    c->next = C10K_CLOSE;
    return C10K_CLOSE;
}

c10k_next_t c10k_conn_start(c10k_conn_t *c, const c10k_server_t *srv, const struct sockaddr *peer,
                            int64_t now)
{
    memset(c, 0, sizeof(*c));
    c->srv = srv;
    c->peer = peer;
    c10k_req_init(&c->req);
    /* The first request is on the header clock from accept, as in nginx: a
     * client that connects and says nothing costs at most --header-timeout. */
    c->head_started = true;
    c->deadline = now + srv->cfg.header_ms;
    c->next = C10K_READ;
    return C10K_READ;
}

char *c10k_conn_room(const c10k_conn_t *c, size_t *room)
{
    *room = C10K_REQ_BUF - c->io->len;
    return c->io->buf + c->io->len;
}

c10k_next_t c10k_conn_send_begins(c10k_conn_t *c, int64_t now)
{
    c->head_started = false;
    c->deadline = now + C10K_SEND_TIMEOUT_MS;
    c->next = C10K_SEND;
    return C10K_SEND;
}

void c10k_conn_send_progress(c10k_conn_t *c, int64_t now)
{
    c->deadline = now + C10K_SEND_TIMEOUT_MS;
}

void c10k_conn_request_begins(c10k_conn_t *c, int64_t now)
{
    if (c->head_started)
        return;
    c->head_started = true;
    c->deadline = now + c->srv->cfg.header_ms;
}

/* Run the handler over the buffered bytes: a request to answer, or more to
 * read (on the header clock that is already running). */
static c10k_next_t parse(c10k_conn_t *c, int64_t now)
{
    c10k_io_t *io = c->io;
    ssize_t used;

    if (c->stopping) /* keeps what c10k_conn_stop_soon() set too */
        c->req.force_close = true;
    used = c10k_http_handle(&c->srv->site, &c->req, io->buf, io->len, io->head, C10K_HEAD_BUF,
                            &io->resp);
    if (used < 0)
        return set_close(c); /* a caller bug (head buffer too small): nothing to answer */
    if (used == C10K_INCOMPLETE)
        return C10K_READ;
    io->used = (size_t)used;
    io->sent.done = 0;
    io->mark = 0;
    return c10k_conn_send_begins(c, now);
}

c10k_next_t c10k_conn_read(c10k_conn_t *c, ssize_t n, int64_t now)
{
    switch (c->next) {
    case C10K_LINGER:
        if (n <= 0)
            return set_close(c); /* the client's EOF: nothing of ours is unread any more */
        c->deadline = min64(c->linger_end, now + c->srv->cfg.lingering_timeout_ms);
        return C10K_LINGER;
    case C10K_READ:
        if (n <= 0)
            return set_close(c); /* EOF or error: an unfinished head is dropped */
        if (c->io->len == 0)
            c10k_conn_request_begins(c, now);
        c->io->len += (size_t)n;
        return parse(c, now);
    default:
        return (c10k_next_t)c->next; /* not waiting to read: nothing to do */
    }
}

static c10k_next_t begin_linger(c10k_conn_t *c, int64_t now)
{
    c->next = C10K_LINGER;
    c->shut_wr_due = true;
    c->linger_end = now + c->srv->cfg.lingering_time_ms;
    c->deadline = min64(c->linger_end, now + c->srv->cfg.lingering_timeout_ms);
    return C10K_LINGER;
}

c10k_next_t c10k_conn_response_done(c10k_conn_t *c, c10k_resp_t *resp, size_t sent, bool leftover,
                                    int64_t now)
{
    bool keep = resp->keep_alive, talking = resp->status >= 400 || leftover;

    c10k_log_access(c->srv, c->peer, resp, sent);
    c10k_resp_finish(resp);
    /* While stopping, a keep-alive connection still answers what it has
     * already received (with Connection: close), and closes when idle. */
    if (keep && !(c->stopping && !leftover)) {
        c->next = C10K_READ;
        c->head_started = false;
        if (leftover)
            c10k_conn_request_begins(c, now);
        else
            c->deadline = now + c->srv->cfg.keepalive_ms;
        return C10K_READ;
    }
    /* The client may still be sending (a refused body, requests after the
     * last one we answer): read it away rather than reset the connection
     * under the response it has not read yet. */
    c->next = C10K_CLOSE;
    return talking ? begin_linger(c, now) : C10K_CLOSE;
}

/* Request bytes beyond the one just answered? A closing response consumes
 * the whole buffer, so its request's own length says. */
static bool leftover(const c10k_io_t *io)
{
    size_t req = io->resp.keep_alive || !io->resp.req_len ? io->used : io->resp.req_len;

    return io->len > req;
}

c10k_next_t c10k_conn_sent(c10k_conn_t *c, c10k_status_t st, int64_t now)
{
    c10k_io_t *io = c->io;
    c10k_next_t next;

    if (st == C10K_ERROR)
        return set_close(c);
    if (st == C10K_AGAIN) {
        /* The send clock restarts whenever the client takes some bytes. */
        if (io->sent.done > io->mark) {
            io->mark = io->sent.done;
            c10k_conn_send_progress(c, now);
        }
        return C10K_SEND;
    }
    next = c10k_conn_response_done(c, &io->resp, io->sent.done, leftover(io), now);
    if (next != C10K_READ)
        return next;
    /* Pipelined bytes move to the front; the handler sees them next. */
    io->len -= io->used;
    memmove(io->buf, io->buf + io->used, io->len);
    io->used = 0;
    return io->len > 0 ? parse(c, now) : C10K_READ;
}

int c10k_conn_header_timeout(c10k_conn_t *c, size_t buffered, char *head, size_t head_cap,
                             c10k_resp_t *resp)
{
    return c10k_http_timeout(&c->req, buffered, head, head_cap, resp);
}

c10k_next_t c10k_conn_timeout(c10k_conn_t *c, int64_t now)
{
    c10k_io_t *io = c->io;

    if (now < c->deadline)
        return (c10k_next_t)c->next;
    if (c->next != C10K_READ || !io || io->len == 0)
        return set_close(c); /* idle, a stalled send, or the end of lingering */
    if (!c10k_conn_header_timeout(c, io->len, io->head, C10K_HEAD_BUF, &io->resp))
        return set_close(c);
    io->used = io->len; /* the partial head is answered, and dropped */
    io->sent.done = 0;
    io->mark = 0;
    return c10k_conn_send_begins(c, now);
}

c10k_next_t c10k_conn_stop(c10k_conn_t *c, int64_t now)
{
    bool idle = c->next == C10K_READ && (!c->io || c->io->len == 0) && c->req.requests > 0;

    (void)now;
    c->stopping = true;
    c->req.force_close = true;
    /* Lingering goes on: the last response is on its way to the client, and
     * closing now could reset it. --grace bounds it. */
    return idle ? set_close(c) : (c10k_next_t)c->next;
}

void c10k_conn_stop_soon(c10k_conn_t *c)
{
    c->req.force_close = true;
}

bool c10k_conn_shutdown_due(c10k_conn_t *c)
{
    bool due = c->shut_wr_due;

    c->shut_wr_due = false;
    return due;
}

c10k_io_t *c10k_conn_idle_io(c10k_conn_t *c)
{
    c10k_io_t *io = c->io;

    if (!io || c->next == C10K_SEND || (c->next == C10K_READ && io->len > 0))
        return NULL;
    c->io = NULL;
    io->len = io->used = 0;
    return io;
}

c10k_io_t *c10k_conn_end(c10k_conn_t *c)
{
    c10k_io_t *io = c->io;

    abandon_response(c);
    c->next = C10K_CLOSE;
    c->io = NULL;
    if (io)
        io->len = io->used = 0;
    return io;
}

c10k_io_t *c10k_iopool_get(c10k_iopool_t *p)
{
    c10k_io_t *io;

    if (p->n > 0)
        return p->free[--p->n];
    io = malloc(sizeof(*io));
    if (io)
        c10k_io_init(io);
    return io;
}

void c10k_iopool_put(c10k_iopool_t *p, c10k_io_t *io)
{
    if (!io)
        return;
    if (p->n < C10K_IOPOOL_KEEP)
        p->free[p->n++] = io;
    else
        free(io);
}

void c10k_iopool_free(c10k_iopool_t *p)
{
    while (p->n > 0)
        free(p->free[--p->n]);
}
