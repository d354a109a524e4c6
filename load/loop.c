/*
 * loop.c - one generator thread of `c10k load`: an epoll loop over its share
 * of the connections, each with its own schedule (gen.h).
 *
 * A connection is DOWN, CONNECTING, IDLE or WAITING (a request written, its
 * response not yet read). An IDLE connection whose next request is not yet
 * due sits in a min-heap keyed by that time; the loop sleeps until the heap's
 * top is due (epoll_pwait2 with a nanosecond timeout, timer slack 1 ns) and
 * sends it. A request that falls due while its connection is WAITING is sent
 * the moment the response is read; its latency still runs from its intended
 * time, so the wait behind a slow response counts.
 *
 * The generator can be late in two places, and both are measured:
 *  - send lag: a timer-driven send (an idle connection whose request fell
 *    due) going out after its intended time;
 *  - read lag: a response read after its last segment arrived. The kernel
 *    stamps every segment on arrival (SO_TIMESTAMPNS; recvmsg hands back the
 *    stamp of the last one read), so a generator that is starved or saturated
 *    and leaves responses sitting in its socket buffers shows here. Without
 *    it that time would pass for the server's latency, and a starved
 *    generator would look like a slow server.
 * load.c turns the p99 of each into the validity verdict.
 *
 * The steady state costs per request one send(), one recv() of the whole
 * response into a per-thread buffer, a share of one epoll_pwait2, and two or
 * three vDSO clock reads per wakeup: no allocation, and the request bytes are
 * built once in load.c. The socket stays registered for EPOLLIN only,
 * level-triggered, so a response that fits the buffer costs one recv (no
 * read-until-EAGAIN); EPOLLOUT is added only while connecting or after a
 * partial write.
 */
#include "gen.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* One recv takes a whole 1 KiB response, or 256 KiB of a big one. */
#define RBUF_SIZE (256 * 1024)
/* A response head split across reads is gathered up to this. */
#define HEAD_MAX (16 * 1024)
#define EVENTS   256
#define BURST    256                 /* connects in progress at once per thread */
#define TICK_NS  (100 * 1000 * 1000) /* timeouts and reconnects are checked this often */
#define RETRY_NS (100 * 1000 * 1000) /* wait before retrying a failed connect */

const char *const c10k_load_err_names[C10K_LOAD_ERR_KINDS] = {"connect", "read", "write", "timeout",
                                                              "status"};

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return ts.tv_sec * C10K_LOAD_NS + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* Arrival stamps are CLOCK_REALTIME: keep the offset to CLOCK_MONOTONIC
 * fresh (every tick) so a clock adjustment cannot skew the read lag. */
static void sync_realtime(c10k_load_thread_t *t)
{
    int64_t mono = now_ns();

    t->real_off = clock_ns(CLOCK_REALTIME) - mono;
}

static bool in_window(const c10k_load_thread_t *t, int64_t now)
{
    return now >= t->w0 && now < t->wend;
}

/* --- the idle heap: connections by next_due ------------------------------ */

static void heap_set(c10k_load_thread_t *t, size_t i, c10k_load_conn_t *c)
{
    t->heap[i] = c;
    c->heap_pos = (int)i;
}

static void heap_up(c10k_load_thread_t *t, size_t i)
{
    c10k_load_conn_t *c = t->heap[i];

    while (i > 0 && t->heap[(i - 1) / 2]->next_due > c->next_due) {
        heap_set(t, i, t->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(t, i, c);
}

static void heap_down(c10k_load_thread_t *t, size_t i)
{
    c10k_load_conn_t *c = t->heap[i];

    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= t->heap_len)
            break;
        if (k + 1 < t->heap_len && t->heap[k + 1]->next_due < t->heap[k]->next_due)
            k++;
        if (t->heap[k]->next_due >= c->next_due)
            break;
        heap_set(t, i, t->heap[k]);
        i = k;
    }
    heap_set(t, i, c);
}

static void heap_push(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    heap_set(t, t->heap_len++, c);
    heap_up(t, t->heap_len - 1);
}

static void heap_remove(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    size_t i = (size_t)c->heap_pos;
    c10k_load_conn_t *last = t->heap[--t->heap_len];

    c->heap_pos = -1;
    if (last == c)
        return;
    heap_set(t, i, last);
    heap_up(t, i);
    heap_down(t, (size_t)last->heap_pos);
}

/* --- the schedule ---------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* An exponential gap of mean C/R seconds: the connection's share of a
 * Poisson stream of rate R (C independent streams of rate R/C merge into one
 * of rate R). */
static int64_t poisson_gap(const c10k_load_cfg_t *cfg, uint64_t *rng)
{
    double u = (double)((splitmix64(rng) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */

    return (int64_t)(-log(u) * (double)cfg->connections / cfg->rate * C10K_LOAD_NS);
}

static int64_t fixed_due(const c10k_load_thread_t *t, const c10k_load_conn_t *c, uint64_t seq)
{
    const c10k_load_cfg_t *cfg = t->cfg;
    double k = (double)c->id + (double)seq * (double)cfg->connections;

    return t->t0 + (int64_t)(k * (C10K_LOAD_NS / cfg->rate));
}

static void schedule_start(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    c->seq = 0;
    c->rng = t->cfg->seed ^ ((uint64_t)c->id * 0xD1B54A32D192ED03ULL);
    c->next_due = t->cfg->poisson ? t->t0 + poisson_gap(t->cfg, &c->rng) : fixed_due(t, c, 0);
}

static void schedule_advance(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    c->seq++;
    if (t->cfg->poisson)
        c->next_due += poisson_gap(t->cfg, &c->rng);
    else
        c->next_due = fixed_due(t, c, c->seq);
}

/* --- results ----------------------------------------------------------------- */

static long second_of(const c10k_load_thread_t *t, int64_t now)
{
    long s = (long)((now - t->w0) / C10K_LOAD_NS);

    return s < (long)t->nsecs ? s : (long)t->nsecs - 1;
}

/* Store the current second's histogram as pairs, then start the next one. */
static void second_flush(c10k_load_thread_t *t)
{
    c10k_load_sec_t *s;
    uint64_t upper, count;

    if (t->sec_cur < 0 || t->sec_hist.total == 0)
        return;
    s = &t->secs[t->sec_cur];
    s->off = t->npairs;
    for (int i = c10k_hist_next(&t->sec_hist, -1, &upper, &count); i >= 0;
         i = c10k_hist_next(&t->sec_hist, i, &upper, &count)) {
        if (t->npairs == t->cap_pairs) {
            size_t cap = t->cap_pairs ? 2 * t->cap_pairs : 1024;
            c10k_load_pair_t *p = realloc(t->pairs, cap * sizeof(*p));
            if (!p) {
                t->err = -ENOMEM;
                break;
            }
            t->pairs = p;
            t->cap_pairs = cap;
        }
        t->pairs[t->npairs++] = (c10k_load_pair_t){upper, count};
    }
    s->n = t->npairs - s->off;
    c10k_hist_init(&t->sec_hist);
}

/* The timeline entry for now, rolling the per-second histogram forward. */
static c10k_load_sec_t *second_at(c10k_load_thread_t *t, int64_t now)
{
    long s = second_of(t, now);

    if (s > t->sec_cur) {
        second_flush(t);
        t->sec_cur = s;
    }
    return &t->secs[s];
}

static void count_error(c10k_load_thread_t *t, c10k_load_err_t kind, int64_t now, const char *why)
{
    if (!t->first_error[kind][0])
        snprintf(t->first_error[kind], sizeof(t->first_error[kind]), "%s", why);
    if (!in_window(t, now))
        return;
    t->errors[kind]++;
    second_at(t, now)->errors++;
}

static void record_response(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    uint64_t lat = now > c->due ? (uint64_t)(now - c->due) : 0;
    c10k_load_sec_t *s = second_at(t, now);

    c10k_hist_record(&t->hist, lat);
    c10k_hist_record(&t->sec_hist, lat);
    s->completed++;
    c->completed++;
    t->service_ns += (double)(now - c->sent_at);
    if (c->status >= 400) {
        char why[32];
        snprintf(why, sizeof(why), "status %d", c->status);
        count_error(t, C10K_LOAD_ERR_STATUS, now, why);
    }
}

/* Integrate the in-flight count over the window up to now. */
static void account_inflight(c10k_load_thread_t *t, int64_t now)
{
    int64_t from = t->last_area > t->w0 ? t->last_area : t->w0;
    int64_t to = now < t->wend ? now : t->wend;

    if (to > from)
        t->inflight_ns += (double)t->inflight * (double)(to - from);
    t->last_area = now;
}

static void account_busy(c10k_load_thread_t *t, int64_t from, int64_t to)
{
    if (from < t->w0)
        from = t->w0;
    if (to > t->wend)
        to = t->wend;
    if (to > from)
        t->busy_ns += to - from;
}

/* --- connections ----------------------------------------------------------- */

static void conn_open(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now);
static void conn_schedule(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now);

static void set_out(c10k_load_thread_t *t, c10k_load_conn_t *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};

    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void conn_close(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    if (c->heap_pos >= 0)
        heap_remove(t, c);
    if (c->fd >= 0)
        close(c->fd);
    if (c->state == CONN_WAITING)
        t->inflight--;
    c->fd = -1;
    c->state = CONN_DOWN;
    c->want_out = false;
    c->head_len = 0;
}

/* Count the error, drop the request in flight (if any) and reconnect: at
 * once, or after RETRY_NS when the connect itself failed. */
static void conn_fail(c10k_load_thread_t *t, c10k_load_conn_t *c, c10k_load_err_t kind, int64_t now,
                      const char *why)
{
    count_error(t, kind, now, why);
    conn_close(t, c);
    if (kind == C10K_LOAD_ERR_CONNECT)
        c->since = now + RETRY_NS;
    else
        conn_open(t, c, now);
}

static void conn_open(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    const c10k_load_cfg_t *cfg = t->cfg;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd, one = 1;

    c->since = now + RETRY_NS;
    fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(t, C10K_LOAD_ERR_CONNECT, now, strerror(errno));
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)); /* for the read lag */
    if ((connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) < 0 &&
         errno != EINPROGRESS) ||
        epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        count_error(t, C10K_LOAD_ERR_CONNECT, now, strerror(errno));
        close(fd);
        return;
    }
    c->fd = fd;
    c->state = CONN_CONNECTING;
    c->want_out = true;
    c->since = now;
}

static void on_connected(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(t, c, C10K_LOAD_ERR_CONNECT, now, strerror(err));
        return;
    }
    set_out(t, c, false);
    c->state = CONN_IDLE;
    if (t->t0)
        conn_schedule(t, c, now);
}

/* --- requests ------------------------------------------------------------- */

static void write_request(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    const c10k_load_cfg_t *cfg = t->cfg;
    uint32_t len = cfg->req_len[c->req];
    ssize_t n =
        send(c->fd, cfg->reqbuf + cfg->req_off[c->req] + c->wr_off, len - c->wr_off, MSG_NOSIGNAL);

    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        conn_fail(t, c, C10K_LOAD_ERR_WRITE, now, strerror(errno));
        return;
    }
    if (n > 0)
        c->wr_off += (uint32_t)n;
    if ((c->wr_off < len) != c->want_out)
        set_out(t, c, c->wr_off < len);
}

/* Take the connection's next request off its schedule and write it. */
static void send_request(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    const c10k_load_cfg_t *cfg = t->cfg;

    c->req = 0;
    if (cfg->nreq > 1)
        c->req = (uint32_t)(((uint64_t)c->id + c->seq * (uint64_t)cfg->connections) % cfg->nreq);
    c->due = c->next_due;
    c->sent_at = now;
    c->wr_off = 0;
    c->state = CONN_WAITING;
    c->in_head = true;
    c->head_len = 0;
    c->close_after = false;
    t->inflight++;
    schedule_advance(t, c);
    write_request(t, c, now);
}

/* An idle connection: send now if its next request is due, else wait in the
 * heap. Requests due at or after the window's end are never sent. */
static void conn_schedule(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    if (c->next_due >= t->wend)
        return;
    if (c->next_due <= now)
        send_request(t, c, now);
    else
        heap_push(t, c);
}

/* Timer-driven sends: the only ones whose lateness is the generator's. */
static bool send_due(c10k_load_thread_t *t, int64_t now)
{
    bool sent = false;

    while (t->heap_len > 0 && t->heap[0]->next_due <= now) {
        c10k_load_conn_t *c = t->heap[0];
        heap_remove(t, c);
        if (in_window(t, now))
            c10k_hist_record(&t->lag, (uint64_t)(now - c->next_due));
        send_request(t, c, now);
        sent = true;
    }
    return sent;
}

/* --- responses ------------------------------------------------------------ */

typedef struct {
    int status;
    bool close;
    uint64_t length;
} head_t;

static bool has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);

    while (len > 0) {
        size_t n = 0;
        while (len > 0 && (*v == ' ' || *v == '\t' || *v == ',')) {
            v++;
            len--;
        }
        while (n < len && v[n] != ',' && v[n] != ' ' && v[n] != '\t')
            n++;
        if (n == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v += n;
        len -= n;
    }
    return false;
}

static const char *parse_length(const char *v, size_t len, head_t *h, bool *seen)
{
    uint64_t n = 0;

    if (len == 0 || len > 18)
        return "malformed Content-Length";
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return "malformed Content-Length";
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (*seen && n != h->length)
        return "conflicting Content-Length headers";
    *seen = true;
    h->length = n;
    return NULL;
}

/* One header line [p, eol) without its line end. NULL, or why not. */
static const char *parse_field(const char *p, const char *eol, head_t *h, bool *has_len,
                               bool *keep_alive)
{
    const char *colon = memchr(p, ':', (size_t)(eol - p)), *v;
    size_t name;

    if (!colon || colon == p)
        return "malformed header line";
    name = (size_t)(colon - p);
    v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t'))
        v++;
    while (eol > v && (eol[-1] == ' ' || eol[-1] == '\t'))
        eol--;
    if (name == 14 && strncasecmp(p, "content-length", 14) == 0)
        return parse_length(v, (size_t)(eol - v), h, has_len);
    if (name == 17 && strncasecmp(p, "transfer-encoding", 17) == 0)
        return "unsupported framing: Transfer-Encoding (chunked bodies are not read)";
    if (name == 10 && strncasecmp(p, "connection", 10) == 0) {
        h->close |= has_token(v, (size_t)(eol - v), "close");
        *keep_alive |= has_token(v, (size_t)(eol - v), "keep-alive");
    }
    return NULL;
}

/* A whole response head, [p, p + len) ending in CRLFCRLF. NULL, or why it
 * cannot be read. Framing other than Content-Length is refused rather than
 * guessed, so a response can never be mistaken for the next one. */
static const char *parse_head(const char *p, size_t len, head_t *h)
{
    const char *end = p + len - 2, *line;
    bool has_len = false, keep_alive = false, v10;

    memset(h, 0, sizeof(*h));
    if (len < 16 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return "malformed status line";
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return "malformed status line";
        h->status = h->status * 10 + (p[i] - '0');
    }
    if (p[12] != ' ' && p[12] != '\r')
        return "malformed status line";
    v10 = p[7] == '0';
    line = (const char *)memchr(p, '\n', len) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end + 2 - line));
        const char *why =
            parse_field(line, eol[-1] == '\r' ? eol - 1 : eol, h, &has_len, &keep_alive);
        if (why)
            return why;
        line = eol + 1;
    }
    h->close |= v10 && !keep_alive;
    if (h->status < 200 || h->status == 204 || h->status == 304)
        h->length = 0;
    else if (!has_len)
        return "unsupported framing: no Content-Length (bodies read until close are not read)";
    return NULL;
}

static int head_done(c10k_load_thread_t *t, c10k_load_conn_t *c, const char *p, size_t len,
                     int64_t now)
{
    head_t h;
    const char *why = parse_head(p, len, &h);

    if (why) {
        conn_fail(t, c, C10K_LOAD_ERR_READ, now, why);
        return -1;
    }
    if (h.status < 200) /* an interim response: the real one follows */
        return 0;
    c->status = h.status;
    c->close_after = h.close;
    c->body_left = h.length;
    c->in_head = false;
    return 0;
}

/* Gather a head split across reads in c->head. Returns bytes of p used, or
 * -1 after failing the connection. */
static ssize_t head_more(c10k_load_thread_t *t, c10k_load_conn_t *c, const char *p, size_t n,
                         int64_t now)
{
    uint32_t old = c->head_len, from = old >= 3 ? old - 3 : 0;
    size_t take = n < (size_t)(HEAD_MAX - old) ? n : (size_t)(HEAD_MAX - old);
    const char *end;
    size_t len;

    if (!c->head && !(c->head = malloc(HEAD_MAX))) {
        conn_fail(t, c, C10K_LOAD_ERR_READ, now, "out of memory for a response head");
        return -1;
    }
    memcpy(c->head + old, p, take);
    c->head_len += (uint32_t)take;
    end = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
    if (!end) {
        if (c->head_len < HEAD_MAX)
            return (ssize_t)take;
        conn_fail(t, c, C10K_LOAD_ERR_READ, now, "response head larger than 16 KiB");
        return -1;
    }
    len = (size_t)(end - c->head) + 4;
    c->head_len = 0;
    return head_done(t, c, c->head, len, now) < 0 ? -1 : (ssize_t)(len - old);
}

/* Bytes of the head from p: parsed in place when the whole head is there
 * (the usual case), gathered otherwise. Returns bytes used or -1. */
static ssize_t take_head(c10k_load_thread_t *t, c10k_load_conn_t *c, const char *p, size_t n,
                         int64_t now)
{
    const char *end;
    size_t len;

    if (c->head_len > 0)
        return head_more(t, c, p, n, now);
    end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return head_more(t, c, p, n, now);
    len = (size_t)(end - p) + 4;
    return head_done(t, c, p, len, now) < 0 ? -1 : (ssize_t)len;
}

static void response_done(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    t->inflight--;
    c->state = CONN_IDLE;
    if (in_window(t, now)) {
        record_response(t, c, now);
        if (t->arrived > 0)
            c10k_hist_record(&t->read_lag, now > t->arrived ? (uint64_t)(now - t->arrived) : 0);
    }
    if (c->close_after) {
        conn_close(t, c);
        conn_open(t, c, now);
        return;
    }
    conn_schedule(t, c, now);
}

/* Feed bytes read from c through the response parser. */
static void consume(c10k_load_thread_t *t, c10k_load_conn_t *c, const char *p, size_t n,
                    int64_t now)
{
    while (n > 0) {
        size_t k;
        if (c->state != CONN_WAITING) {
            conn_fail(t, c, C10K_LOAD_ERR_READ, now, "bytes from the server with no request out");
            return;
        }
        if (c->in_head) {
            ssize_t used = take_head(t, c, p, n, now);
            if (used < 0)
                return;
            p += used;
            n -= (size_t)used;
            if (c->in_head)
                continue;
        }
        k = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= k;
        p += k;
        n -= k;
        if (c->body_left > 0)
            return;
        if (n > 0) {
            conn_fail(t, c, C10K_LOAD_ERR_READ, now, "bytes after the response (no pipelining)");
            return;
        }
        response_done(t, c, now);
        return;
    }
}

/* The arrival time (CLOCK_MONOTONIC) of the last segment of a read, or 0. */
static int64_t arrival(const c10k_load_thread_t *t, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            return ts.tv_sec * C10K_LOAD_NS + ts.tv_nsec - t->real_off;
        }
    }
    return 0;
}

static void on_readable(c10k_load_thread_t *t, c10k_load_conn_t *c, int64_t now)
{
    char cbuf[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {.iov_base = t->rbuf, .iov_len = RBUF_SIZE};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(c->fd, &mh, 0);

    if (n > 0) {
        t->arrived = arrival(t, &mh);
        if (in_window(t, now))
            t->bytes += (uint64_t)n;
        consume(t, c, t->rbuf, (size_t)n, now);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (c->state == CONN_WAITING) {
        conn_fail(t, c, C10K_LOAD_ERR_READ, now,
                  n == 0 ? "connection closed before the response ended" : strerror(errno));
        return;
    }
    /* An idle keep-alive connection the server closed: not an error. */
    conn_close(t, c);
    conn_open(t, c, now);
}

static void on_event(c10k_load_thread_t *t, c10k_load_conn_t *c, uint32_t ev, int64_t now)
{
    if (c->state == CONN_CONNECTING) {
        on_connected(t, c, now);
        return;
    }
    if (c->fd < 0)
        return;
    if ((ev & EPOLLOUT) && c->want_out && c->state == CONN_WAITING) {
        write_request(t, c, now);
        if (c->state != CONN_WAITING)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(t, c, now);
}

/* --- the loop ----------------------------------------------------------------- */

/* Time out requests and connects, and retry failed connects. */
static void housekeep(c10k_load_thread_t *t, int64_t now)
{
    int64_t limit = (int64_t)(t->cfg->timeout_s * C10K_LOAD_NS);

    for (size_t i = 0; i < t->nconns; i++) {
        c10k_load_conn_t *c = &t->conns[i];
        if (c->state == CONN_WAITING && now - c->sent_at > limit)
            conn_fail(t, c, C10K_LOAD_ERR_TIMEOUT, now, "no response within --timeout");
        else if (c->state == CONN_CONNECTING && now - c->since > limit)
            conn_fail(t, c, C10K_LOAD_ERR_CONNECT, now, "connect timed out");
        else if (c->state == CONN_DOWN && now >= c->since)
            conn_open(t, c, now);
    }
}

/* epoll_pwait2 takes a nanosecond timeout; epoll_wait's milliseconds would
 * round a 0.5 ms gap to 0 or 1 ms. */
static int wait_events(c10k_load_thread_t *t, struct epoll_event *ev, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    struct timespec ts = {.tv_sec = ns / C10K_LOAD_NS, .tv_nsec = ns % C10K_LOAD_NS};
    int n = epoll_pwait2(t->ep, ev, EVENTS, &ts, NULL);

    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(t->ep, ev, EVENTS, (int)((ns + 999999) / 1000000));
    return n < 0 ? 0 : n;
}

static int64_t next_wake(const c10k_load_thread_t *t, int64_t tick)
{
    int64_t wake = tick < t->wend ? tick : t->wend;

    if (t->heap_len > 0 && t->heap[0]->next_due < wake)
        wake = t->heap[0]->next_due;
    return wake;
}

static void run(c10k_load_thread_t *t)
{
    struct epoll_event ev[EVENTS];
    int64_t now = now_ns(), woke = now, tick = now;

    t->last_area = now;
    for (;;) {
        int64_t before;
        int n;
        account_inflight(t, now);
        if (now >= t->wend)
            break;
        if (now >= tick) {
            sync_realtime(t);
            housekeep(t, now);
            tick = now + TICK_NS;
        }
        before = send_due(t, now) ? now_ns() : now;
        account_busy(t, woke, before);
        n = wait_events(t, ev, next_wake(t, tick) - before);
        woke = now_ns();
        account_inflight(t, woke);
        for (int i = 0; i < n; i++)
            on_event(t, ev[i].data.ptr, ev[i].events, woke);
        now = n > 0 ? now_ns() : woke;
    }
}

/* Open every connection, BURST at a time, until all are up or failed or
 * --timeout has passed. */
static void connect_all(c10k_load_thread_t *t)
{
    struct epoll_event ev[EVENTS];
    int64_t now = now_ns(), deadline = now + (int64_t)(t->cfg->timeout_s * C10K_LOAD_NS);
    size_t next = 0, connecting = 0;

    while (now < deadline) {
        while (next < t->nconns && connecting < BURST) {
            conn_open(t, &t->conns[next], now);
            connecting += t->conns[next++].state == CONN_CONNECTING;
        }
        if (connecting == 0)
            break;
        int n = epoll_wait(t->ep, ev, EVENTS, 10);
        now = now_ns();
        for (int i = 0; i < n; i++) {
            c10k_load_conn_t *c = ev[i].data.ptr;
            if (c->state == CONN_CONNECTING) {
                on_connected(t, c, now);
                connecting--;
            }
        }
    }
    for (size_t i = 0; i < t->nconns; i++) {
        if (t->conns[i].state == CONN_CONNECTING)
            conn_fail(t, &t->conns[i], C10K_LOAD_ERR_CONNECT, now, "connect timed out");
        t->connected += t->conns[i].state == CONN_IDLE;
    }
}

/* Requests of c due before the end and never sent. */
static uint64_t due_unsent(c10k_load_thread_t *t, c10k_load_conn_t *c)
{
    const c10k_load_cfg_t *cfg = t->cfg;
    uint64_t n = 0, rng = c->rng;
    int64_t due = c->next_due;
    double k;

    if (due >= t->wend)
        return 0;
    if (cfg->poisson) {
        for (; due < t->wend; n++)
            due += poisson_gap(cfg, &rng);
        return n;
    }
    /* Fixed: the seq with id + seq * C < (wend - t0) * R, less those sent. */
    k = ((double)(t->wend - t->t0) * cfg->rate / C10K_LOAD_NS - c->id) / (double)cfg->connections;
    n = (uint64_t)ceil(k);
    while (n > c->seq && fixed_due(t, c, n - 1) >= t->wend)
        n--;
    while (fixed_due(t, c, n) < t->wend)
        n++;
    return n > c->seq ? n - c->seq : 0;
}

/* What the end of the window left unanswered: in flight, or due and queued
 * behind a busy connection. */
static void count_unfinished(c10k_load_thread_t *t)
{
    t->oldest_due = INT64_MAX;
    for (size_t i = 0; i < t->nconns; i++) {
        c10k_load_conn_t *c = &t->conns[i];
        uint64_t queued = due_unsent(t, c);
        if (c->state == CONN_WAITING) {
            t->unfinished++;
            if (c->due < t->oldest_due)
                t->oldest_due = c->due;
        }
        t->unfinished += queued;
        t->scheduled += c->seq + queued;
        if (queued && c->next_due < t->oldest_due)
            t->oldest_due = c->next_due;
    }
}

static int thread_setup(c10k_load_thread_t *t)
{
    const c10k_load_cfg_t *cfg = t->cfg;

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (cfg->ncpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cfg->cpus[t->id % cfg->ncpus], &set);
        if (sched_setaffinity(0, sizeof(set), &set) < 0)
            return -errno;
    }
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0)
        return -errno;
    t->rbuf = malloc(RBUF_SIZE);
    t->heap = calloc(t->nconns, sizeof(*t->heap));
    if (!t->rbuf || !t->heap)
        return -ENOMEM;
    c10k_hist_init(&t->hist);
    c10k_hist_init(&t->lag);
    c10k_hist_init(&t->read_lag);
    c10k_hist_init(&t->sec_hist);
    t->sec_cur = -1;
    sync_realtime(t);
    return 0;
}

static void thread_teardown(c10k_load_thread_t *t)
{
    for (size_t i = 0; i < t->nconns; i++) {
        if (t->conns[i].fd >= 0)
            close(t->conns[i].fd);
        t->conns[i].fd = -1;
        free(t->conns[i].head);
        t->conns[i].head = NULL;
    }
    if (t->ep >= 0)
        close(t->ep);
    t->ep = -1;
    free(t->rbuf);
    free(t->heap);
    t->rbuf = NULL;
    t->heap = NULL;
}

void *c10k_load_thread_main(void *arg)
{
    c10k_load_thread_t *t = arg;

    t->err = thread_setup(t);
    if (t->err == 0)
        connect_all(t);
    pthread_barrier_wait(t->ready);
    pthread_barrier_wait(t->go);
    if (t->err == 0 && !t->clock->abort) {
        t->t0 = t->clock->t0;
        t->w0 = t->clock->w0;
        t->wend = t->clock->wend;
        for (size_t i = 0; i < t->nconns; i++) {
            schedule_start(t, &t->conns[i]);
            if (t->conns[i].state == CONN_IDLE)
                conn_schedule(t, &t->conns[i], now_ns());
        }
        run(t);
        second_flush(t);
        count_unfinished(t);
    }
    thread_teardown(t);
    return NULL;
}
