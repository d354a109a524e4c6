/*
 * http.c - the sans-I/O static-file handler (see http.h for the contract).
 *
 * Two passes over caller-owned bytes, no copies of the request and no malloc:
 *   1. find_head(): scan only the bytes not scanned before for the blank line
 *      that ends the head, rejecting a bare LF as soon as it is seen;
 *   2. parse_head(): a fresh http_parser over exactly the head, whose
 *      callbacks record views into the caller's buffer.
 * Because the parser only ever sees a whole head, a request split at any byte
 * boundary parses the same as one that arrived at once.
 *
 * Choices where the spec leaves room are listed in README.md ("Choices where
 * the spec leaves room"); each is commented where this file makes it.
 */
#include "http.h"
#include "filecache.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- request views ------------------------------------------------------- */

typedef struct view_s {
    const char *p;
    size_t n;
} view_t;

typedef struct parsed_s {
    view_t line; /* the request line, without CRLF */
    view_t url;
    view_t host, inm, ims, range, if_range, te;
    view_t referer, user_agent; /* trimmed, set by head_syntax_ok(), for the log */
    view_t field;               /* header name being received */
    view_t *value;              /* where its value goes, or NULL for headers we ignore */
    unsigned cl_count;          /* Content-Length headers seen */
    unsigned host_count;        /* Host headers seen, counted by head_syntax_ok() (an empty
                                 * value never reaches the parser callbacks) */
    unsigned te_count;          /* Transfer-Encoding headers seen, likewise */
    bool field_done;            /* the value of `field` has started */
    bool has_body;              /* Content-Length > 0 or Transfer-Encoding */
} parsed_t;

static bool view_is(view_t v, const char *s)
{
    size_t n = strlen(s);
    return v.n == n && strncasecmp(v.p, s, n) == 0;
}

static view_t view_trim(view_t v)
{
    while (v.n && (v.p[0] == ' ' || v.p[0] == '\t'))
        v.p++, v.n--;
    while (v.n && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t'))
        v.n--;
    return v;
}

/* The head is contiguous, so a callback's pieces are adjacent: extend. */
static void view_extend(view_t *v, const char *at, size_t len)
{
    if (!v->p)
        v->p = at;
    v->n = (size_t)(at + len - v->p);
}

static view_t *header_slot(parsed_t *ps, view_t field)
{
    if (view_is(field, "Host"))
        return &ps->host;
    if (view_is(field, "If-None-Match"))
        return &ps->inm;
    if (view_is(field, "If-Modified-Since"))
        return &ps->ims;
    if (view_is(field, "Range"))
        return &ps->range;
    if (view_is(field, "If-Range"))
        return &ps->if_range;
    if (view_is(field, "Transfer-Encoding"))
        return &ps->te;
    if (view_is(field, "Content-Length"))
        ps->cl_count++;
    return NULL;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    view_extend(&((parsed_t *)p->data)->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    parsed_t *ps = p->data;

    if (ps->field_done) {
        ps->field = (view_t){0};
        ps->field_done = false;
    }
    view_extend(&ps->field, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    parsed_t *ps = p->data;

    if (!ps->field_done) {
        ps->field_done = true;
        ps->value = header_slot(ps, ps->field);
        if (ps->value && ps->value->p) /* a repeated header: keep the first */
            ps->value = NULL;
    }
    if (ps->value)
        view_extend(ps->value, at, len);
    return 0;
}

/* A header with an empty value never calls on_header_value. */
static int on_headers_complete(http_parser *p)
{
    (void)p;
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

/* ---- small helpers -------------------------------------------------------- */

/* Date: formatted at most once a second per thread; no lock, no sharing. */
static const char *http_date_now(void)
{
    static __thread time_t cached_at;
    static __thread char cached[40];
    time_t now = time(NULL);

    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_at = now;
    }
    return cached;
}

static void http_date(time_t t, char *buf, size_t cap)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* IMF-fixdate only (the form every current client sends). -1 if not one. */
static time_t http_date_parse(view_t v)
{
    char tmp[64];
    struct tm tm = {0};
    const char *end;

    if (v.n == 0 || v.n >= sizeof(tmp))
        return -1;
    memcpy(tmp, v.p, v.n);
    tmp[v.n] = '\0';
    end = strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    return timegm(&tm);
}

/* ---- site ------------------------------------------------------------------ */

static int open_beneath2(int dirfd, const char *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

    return fd < 0 ? -errno : fd;
}

int c10k_site_open(c10k_site_t *site, const char *root, unsigned max_requests)
{
    int fd, probe;

    memset(site, 0, sizeof(*site));
    site->root_fd = -1;
    if (strlen(root) >= sizeof(site->root_path))
        return -ENAMETOOLONG;
    fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    site->root_fd = fd;
    snprintf(site->root_path, sizeof(site->root_path), "%s", root);
    site->max_requests = max_requests;
    probe = open_beneath2(fd, ".");
    site->have_openat2 = probe >= 0;
    if (probe >= 0)
        close(probe);
    return 0;
}

void c10k_site_close(c10k_site_t *site)
{
    if (site->root_fd > 0)
        close(site->root_fd);
    site->root_fd = -1;
}

void c10k_req_init(c10k_req_t *req)
{
    memset(req, 0, sizeof(*req));
}

void c10k_resp_finish(c10k_resp_t *resp)
{
    if (resp->body_ref)
        c10k_fcache_release(resp->body_ref); /* the cache closes it, if it ever does */
    else if (resp->body_fd >= 0)
        close(resp->body_fd);
    resp->body_ref = NULL;
    resp->body_fd = -1;
}

int c10k_resp_take_fd(c10k_resp_t *resp)
{
    int fd = resp->body_ref ? -1 : resp->body_fd;

    if (fd >= 0)
        resp->body_fd = -1;
    return fd;
}

/* Without openat2 (kernels before 5.6): walk one component at a time and
 * refuse every symlink, which is stricter than needed but never escapes. */
static int open_walk(int root_fd, const char *path)
{
    char comp[256];
    int dir = root_fd, fd = -1;

    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n >= sizeof(comp)) {
            fd = -ENAMETOOLONG; /* the directory opened so far still needs closing */
            goto out;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        fd = openat(dir, comp, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
            fd = -errno;
        if (fd < 0 || !slash)
            goto out;
        if (dir != root_fd)
            close(dir);
        dir = fd;
        p = slash + 1;
    }
out:
    if (dir != root_fd)
        close(dir);
    return fd;
}

static int open_file(const c10k_site_t *site, const char *path)
{
    return site->have_openat2 ? open_beneath2(site->root_fd, path) : open_walk(site->root_fd, path);
}

/* ---- path ------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Strict UTF-8: no overlong forms (so %c0%ae is never a '.'), no surrogates. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/*
 * Decode and normalise the path of the target into out (relative to the
 * root, no leading slash, "." for the root itself). Returns the HTTP status
 * to answer with if the path is refused, or 0. *dir_slash says whether the
 * path ended in '/'. cap must be more than C10K_URI_MAX.
 *
 * The path is decoded into out and normalised in place: the normalised path
 * never gets ahead of the decoded one (it drops the leading '/'), so one
 * buffer does, and the handler needs 8 KiB less stack (a coroutine's stack
 * may be 16 KiB: servers/coro).
 */
static int path_resolve(view_t path, char *out, size_t cap, bool *dir_slash)
{
    char *dec = out;
    size_t n = 0, o = 0;

    for (size_t i = 0; i < path.n; i++) {
        char c = path.p[i];
        if (c == '%') {
            int hi = i + 2 < path.n ? hexval(path.p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(path.p[i + 2]) : -1;
            if (lo < 0)
                return 400;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || c == '\\')
            return 400;
        if (n == C10K_URI_MAX || n == cap)
            return 414;
        dec[n++] = c;
    }
    if (n == 0 || dec[0] != '/')
        return 400;
    if (!utf8_valid((unsigned char *)dec, n))
        return 400;
    /* "dir/" and "dir/." name a directory: neither may be a file */
    *dir_slash = dec[n - 1] == '/' || (n >= 2 && dec[n - 1] == '.' && dec[n - 2] == '/');
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && dec[j] != '/')
            j++;
        size_t len = j - i;
        if (len == 2 && dec[i] == '.' && dec[i + 1] == '.')
            return 400; /* never resolved, whatever its encoding was */
        if (len > 0 && !(len == 1 && dec[i] == '.')) {
            if (dec[i] == '.')
                return 404; /* dotfiles and dot-directories (.git, .env) */
            if (o + len + 2 > cap)
                return 414;
            if (o)
                out[o++] = '/';
            memmove(out + o, dec + i, len);
            o += len;
        }
        i = j + 1;
    }
    if (o == 0)
        out[o++] = '.';
    out[o] = '\0';
    return 0;
}

/* ---- responses ------------------------------------------------------------------ */

typedef struct errpage_s {
    int status;
    const char *reason;
    const char *body;
} errpage_t;

#define PAGE(code, text)                                                                           \
    {                                                                                              \
        code, text,                                                                                \
            "<html><head><title>" #code " " text "</title></head><body><h1>" #code " " text        \
            "</h1></body></html>\n"                                                                \
    }

static const errpage_t pages[] = {
    PAGE(301, "Moved Permanently"),
    PAGE(400, "Bad Request"),
    PAGE(403, "Forbidden"),
    PAGE(404, "Not Found"),
    PAGE(405, "Method Not Allowed"),
    PAGE(408, "Request Timeout"),
    PAGE(413, "Content Too Large"),
    PAGE(414, "URI Too Long"),
    PAGE(416, "Range Not Satisfiable"),
    PAGE(431, "Request Header Fields Too Large"),
    PAGE(500, "Internal Server Error"),
    PAGE(501, "Not Implemented"),
    PAGE(503, "Service Unavailable"),
    PAGE(505, "HTTP Version Not Supported"),
};

static const errpage_t *page_for(int status)
{
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        if (pages[i].status == status)
            return &pages[i];
    return page_for(500);
}

/* Statuses after which the connection's framing cannot be trusted. */
static bool status_closes(int status)
{
    return status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
           status == 500 || status == 501 || status == 505;
}

/* Everything a head needs besides the status line. */
typedef struct headctx_s {
    char *buf;
    size_t cap, len;
    bool overflow;
} headctx_t;

static void put(headctx_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(headctx_t *h, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (h->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(h->buf + h->len, h->cap - h->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= h->cap - h->len)
        h->overflow = true;
    else
        h->len += (size_t)n;
}

/* n bytes as they are (a cached part of a head). */
static void put_raw(headctx_t *h, const char *p, size_t n)
{
    if (h->overflow || n >= h->cap - h->len) {
        h->overflow = true;
        return;
    }
    memcpy(h->buf + h->len, p, n);
    h->len += n;
}

static void put_start(headctx_t *h, int status, const char *reason)
{
    put(h, "HTTP/1.1 %d %s\r\nServer: c10k\r\nDate: %s\r\n", status, reason, http_date_now());
}

static void put_end(headctx_t *h, bool keep_alive)
{
    put(h, "Connection: %s\r\n\r\n", keep_alive ? "keep-alive" : "close");
}

/* Bytes a Location may carry as they are; the rest is percent-encoded, so a
 * decoded name can never inject a header or turn into another URL. */
static bool location_safe(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("-._~/!$&'()*+,;=:@", c));
}

/* Bytes a query may carry as they are (RFC 3986 3.4: pchar, "/" and "?",
 * with '%' kept so its escapes stay as the client wrote them). */
static bool query_safe(unsigned char c)
{
    return location_safe(c) || c == '?' || c == '%';
}

static void put_encoded(headctx_t *h, view_t v, bool (*safe)(unsigned char))
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (safe(c))
            put(h, "%c", c);
        else
            put(h, "%%%02X", c);
    }
}

/* Location for a directory asked for without its slash: loc[0] is the
 * decoded, normalised name below the root ("." for the root itself), so the
 * result starts with exactly one '/' ("//evil.example" cannot come out of
 * it); loc[1] is the query, kept as nginx keeps it. */
static void put_location(headctx_t *h, const view_t *loc)
{
    put(h, "Location: /");
    if (!view_is(loc[0], ".")) {
        put_encoded(h, loc[0], location_safe);
        put(h, "/");
    }
    if (loc[1].p) {
        put(h, "?");
        put_encoded(h, loc[1], query_safe);
    }
    put(h, "\r\n");
}

static void plan_reset(c10k_resp_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->body_fd = -1;
    resp->method = "-";
    resp->method_len = 1;
}

/* An error page, or a 301 (loc: the name and the query) or 416 (size). */
static void plan_error(c10k_resp_t *resp, headctx_t *h, int status, bool head_only, bool keep_alive,
                       const view_t *loc, off_t size)
{
    const errpage_t *pg = page_for(status);
    size_t blen = strlen(pg->body);

    resp->status = pg->status;
    resp->keep_alive = keep_alive && !status_closes(pg->status);
    put_start(h, pg->status, pg->reason);
    put(h, "Content-Type: text/html\r\nContent-Length: %zu\r\n", blen);
    if (status == 405)
        put(h, "Allow: GET, HEAD\r\n");
    if (status == 301)
        put_location(h, loc);
    if (status == 416)
        put(h, "Content-Range: bytes */%lld\r\n", (long long)size);
    put_end(h, resp->keep_alive);
    resp->head_len = h->len;
    resp->body_mem = head_only ? NULL : pg->body;
    resp->body_mem_len = head_only ? 0 : blen;
}

/* ---- conditionals and ranges ------------------------------------------------------ */

/* Weak comparison over a list of entity tags, or "*". */
static bool etag_matches(view_t list, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = list.p, *end = list.p + list.n;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p < end && *p == '*')
            return true;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *q = p;
        while (q < end && *q != ',')
            q++;
        view_t tag = view_trim((view_t){p, (size_t)(q - p)});
        if (tag.n == elen && memcmp(tag.p, etag, elen) == 0)
            return true;
        p = q;
    }
    return false;
}

static bool parse_u64(const char *p, const char *end, unsigned long long *out)
{
    unsigned long long v = 0;

    if (p == end)
        return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || v > (~0ULL - 9) / 10)
            return false;
        v = v * 10 + (unsigned)(*p - '0');
    }
    *out = v;
    return true;
}

/*
 * A single "bytes=" range against a file of size bytes. Returns 206 with
 * [*first, *last], 416 if it cannot be satisfied, or 200 to ignore the
 * header (several ranges, or a malformed one: nginx answers those with the
 * whole file too).
 */
static int range_parse(view_t v, off_t size, off_t *first, off_t *last)
{
    const char *p, *end, *dash;
    unsigned long long a, b;

    v = view_trim(v);
    if (v.n < 6 || strncasecmp(v.p, "bytes=", 6) != 0)
        return 200;
    p = v.p + 6;
    end = v.p + v.n;
    if (memchr(p, ',', (size_t)(end - p)))
        return 200;
    dash = memchr(p, '-', (size_t)(end - p));
    if (!dash)
        return 200;
    if (dash == p) { /* suffix: the last b bytes */
        if (!parse_u64(dash + 1, end, &b))
            return 200;
        if (b == 0)
            return 416;
        if (size == 0)
            return 200; /* RFC 9110 14.1.1: satisfiable, but no byte to send */
        *first = b >= (unsigned long long)size ? 0 : size - (off_t)b;
        *last = size - 1;
        return 206;
    }
    if (!parse_u64(p, dash, &a))
        return 200;
    if (dash + 1 == end)
        b = (unsigned long long)size; /* open-ended */
    else if (!parse_u64(dash + 1, end, &b) || b < a)
        return 200;
    if (a >= (unsigned long long)size)
        return 416;
    *first = (off_t)a;
    *last = b >= (unsigned long long)size ? size - 1 : (off_t)b;
    return 206;
}

/* ---- finding and parsing the head ------------------------------------------------- */

#define HEAD_BAD_LF (-1)

/* Returns the length of the head (through its blank line), 0 if it is not
 * complete, or HEAD_BAD_LF. Scans only from where the last call stopped. */
static ssize_t find_head(c10k_req_t *req, const char *buf, size_t len, size_t start)
{
    size_t i = req->scanned > start ? req->scanned : start;

    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return HEAD_BAD_LF;
        if (i >= start + 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return (ssize_t)(i + 1);
        i++;
    }
    req->scanned = (uint32_t)len;
    return 0;
}

/* A head too long to ever complete: 414 if the request line is the culprit,
 * else 431. 0 while it may still fit. */
static int head_limits(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    size_t line = nl ? (size_t)(nl - buf) : len;

    if (line > C10K_URI_MAX + 32) /* method, spaces and version around the target */
        return 414;
    if (nl && len - line > C10K_HEADERS_MAX + 2)
        return 431;
    if (len >= C10K_REQ_BUF)
        return nl ? 431 : 414;
    return 0;
}

/* Header lines and bytes of a complete head: 431 beyond the limits. */
static int head_counts(const char *buf, size_t hlen)
{
    const char *nl = memchr(buf, '\n', hlen);
    unsigned lines = 0;

    for (const char *p = nl + 1; p < buf + hlen; p++)
        if (*p == '\n')
            lines++;
    /* The last line counted is the blank one. */
    if (lines - 1 > C10K_HEADER_LINES || hlen - (size_t)(nl + 1 - buf) > C10K_HEADERS_MAX + 2)
        return 431;
    return 0;
}

/* tchar from RFC 9110 5.6.2: what a header name may be made of. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Referer and User-Agent, the first of each, for the access log. Taken here
 * rather than in the parser callbacks so that a request the parser gives up
 * on early (an unknown method) is still logged with them. */
static void log_header(parsed_t *ps, view_t name, view_t value)
{
    if (!ps->referer.p && view_is(name, "Referer"))
        ps->referer = view_trim(value);
    else if (!ps->user_agent.p && view_is(name, "User-Agent"))
        ps->user_agent = view_trim(value);
}

/* Header-line shapes that smuggling relies on and http-parser tolerates:
 * obs-fold (a line starting with SP or HT, RFC 9112 5.2), whitespace between
 * the name and the colon (RFC 9112 5.1), a line without a colon, a name that
 * is not a token ("X A: v"), a bare CR, and control bytes in a value. */
static bool head_syntax_ok(const char *buf, size_t hlen, parsed_t *ps)
{
    const char *end = buf + hlen - 2; /* the final blank line */
    const char *p = memchr(buf, '\n', hlen);

    for (p = p + 1; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return false;
        for (const char *q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return false; /* also catches SP/HT: obs-fold, space before colon */
        view_t name = {p, (size_t)(colon - p)};
        ps->host_count += view_is(name, "Host");
        ps->te_count += view_is(name, "Transfer-Encoding");
        for (const char *q = colon + 1; q < eol - 1; q++) {
            unsigned char c = (unsigned char)*q;
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return false; /* a bare CR, NUL, ... */
        }
        log_header(ps, name, (view_t){colon + 1, (size_t)(eol - 1 - colon - 1)});
        p = eol + 1;
    }
    return true;
}

/*
 * The request line, strictly (RFC 9112 3): method SP request-target SP
 * HTTP-version, single spaces. The method is a token; the target has no
 * whitespace and no control bytes (http-parser lets TAB and form feed
 * through, which would reach the access log raw), though bytes >= 0x80 pass
 * as nginx lets them; the version is "HTTP/" DIGIT "." DIGIT. 0 if it is
 * well formed, else 400.
 */
static int request_line_check(view_t line)
{
    const char *p = line.p, *end = line.p + line.n;
    const char *sp;

    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == line.p || p == end || *p != ' ')
        return 400;
    for (sp = ++p; p < end && *p != ' '; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            return 400;
    if (p == sp || end - p != 9 || memcmp(p, " HTTP/", 6) != 0)
        return 400;
    if (p[6] < '0' || p[6] > '9' || p[7] != '.' || p[8] < '0' || p[8] > '9')
        return 400;
    return 0;
}

/* RFC 3986 unreserved and sub-delims: what a reg-name is made of, besides
 * percent-encodings. */
static bool host_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("-._~!$&'()*+,;=", c));
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), uri-host an IP-literal in
 * brackets or a reg-name. An empty value is allowed (RFC 9112 3.2). */
static bool host_valid(view_t v)
{
    const char *p = v.p, *end;

    if (v.n == 0)
        return true; /* also no Host at all (p is NULL then) */
    end = v.p + v.n;
    if (*p == '[') {
        for (p++; p < end && *p != ']'; p++)
            if (!host_char((unsigned char)*p) && *p != ':')
                return false;
        if (p == end)
            return false;
        p++;
    } else {
        for (; p < end && *p != ':'; p++) {
            if (*p == '%' && end - p >= 3 && isxdigit((unsigned char)p[1]) &&
                isxdigit((unsigned char)p[2]))
                p += 2;
            else if (!host_char((unsigned char)*p))
                return false;
        }
    }
    if (p < end && *p++ != ':')
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* ---- planning ---------------------------------------------------------------------- */

typedef struct ctx_s {
    const c10k_site_t *site;
    c10k_req_t *req;
    headctx_t h;
    c10k_resp_t *resp;
    http_parser parser;
    parsed_t ps;
    const char *in; /* the caller's bytes after any leading empty lines */
    size_t in_len;
    view_t query; /* of the target, kept by a 301 */
    bool head_only;
    bool keep_alive; /* what the request allows */
} ctx_t;

/* Verdicts on framing and syntax, which hold whatever the method: 0 if good. */
static int check_framing(ctx_t *c, size_t parsed, size_t hlen)
{
    http_parser *p = &c->parser;
    enum http_errno err = HTTP_PARSER_ERRNO(p);
    parsed_t *ps = &c->ps;

    /* Transfer-Encoding first: the parser refuses codings it does not know,
     * but an unknown coding is 501, not a malformed request. */
    if (ps->te_count && (ps->cl_count > 0 || ps->te_count > 1 || !view_trim(ps->te).n))
        return 400; /* with Content-Length, repeated or empty: ambiguous framing */
    if (ps->te.p && !view_is(view_trim(ps->te), "chunked"))
        return 501;
    if (ps->host_count > 1)
        return 400; /* RFC 9112 3.2 */
    if (err == HPE_INVALID_METHOD)
        return 501; /* a well-formed token (request_line_check) we do not know: RFC 9110 9.1 */
    if (err != HPE_OK || parsed != hlen)
        return 400;
    if (p->http_major == 0)
        return 400; /* HTTP/0.9 has no headers and no status line to answer with */
    if (p->http_major != 1)
        return 505; /* 1.2 and up are answered as 1.1 (RFC 9110 2.5) */
    if (p->http_minor >= 1 && !ps->host_count)
        return 400; /* an empty Host is allowed (RFC 9112 3.2), a missing one not */
    if (!host_valid(view_trim(ps->host)))
        return 400; /* RFC 9112 3.2 */
    if (ps->cl_count > 1)
        return 400;
    return 0;
}

/* Map the parser's verdict on a complete head to a status, or 0 if good.
 * The method is decided before the body: a POST with a body is 405. */
static int check_request(ctx_t *c, size_t parsed, size_t hlen)
{
    http_parser *p = &c->parser;
    parsed_t *ps = &c->ps;
    int status = check_framing(c, parsed, hlen);

    if (status)
        return status;
    ps->has_body = ps->te.p || (ps->cl_count && p->content_length > 0);
    if (ps->url.n > C10K_URI_MAX)
        return 414;
    if (p->method != HTTP_GET && p->method != HTTP_HEAD)
        return 405;
    if (ps->has_body)
        return 413; /* a static server reads no bodies */
    return 0;
}

/* The path and query of the target: origin-form as is, absolute-form's parts. */
static int target_path(view_t url, view_t *path, view_t *query)
{
    struct http_parser_url u;

    http_parser_url_init(&u);
    if (http_parser_parse_url(url.p, url.n, 0, &u) != 0)
        return 400;
    if (u.field_set & (1 << UF_USERINFO))
        return 400; /* RFC 9110 4.2.4: userinfo in an http URI is an error */
    if (u.field_set & (1 << UF_QUERY))
        *query = (view_t){url.p + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len};
    if (!(u.field_set & (1 << UF_PATH))) {
        if (!(u.field_set & (1 << UF_HOST)))
            return 400;
        *path = (view_t){"/", 1};
        return 0;
    }
    *path = (view_t){url.p + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len};
    return 0;
}

/* The file a response is planned from, and what its head says of it: an
 * entry of the open-file cache (ref set; its descriptor and content are the
 * cache's), or a file opened for this request alone (fd is ours). */
typedef struct file_s {
    int fd;
    const struct stat *st;
    const char *data; /* the whole content in memory, or NULL */
    const char *etag, *lastmod, *ctype;
    const char *hdr; /* the entity header lines of a 200, or NULL */
    size_t hdr_len;
    c10k_fcfile_t *ref;
    struct stat own_st; /* for a file of our own */
    char own_etag[48], own_lastmod[40];
} file_t;

/* open_file() and fstat(); -EIO if fstat fails. */
static int open_stat(const c10k_site_t *site, const char *rel, struct stat *st)
{
    int fd = open_file(site, rel);

    if (fd >= 0 && fstat(fd, st) < 0) {
        close(fd);
        fd = -EIO;
    }
    return fd;
}

/* The index of directory rel (asked for with its slash). Returns the fd, or
 * the status: a directory without index.html is 403, as in nginx and Apache,
 * since there is no listing. */
static int open_index(ctx_t *c, char *rel, struct stat *st)
{
    int fd;

    strcat(rel, "/index.html");
    fd = open_stat(c->site, rel, st);
    return fd == -ENOENT ? -EACCES : fd;
}

/* Open the file for rel (the normalised path, dir_slash if it ended in '/'),
 * beneath the root; rel gets /index.html appended for a directory. Returns 0
 * or the status to answer with. */
static int open_resolved(ctx_t *c, char *rel, bool dir_slash, int *fd, struct stat *st)
{
    *fd = open_stat(c->site, rel, st);
    if (*fd >= 0 && (S_ISDIR(st->st_mode) || dir_slash)) {
        bool dir = S_ISDIR(st->st_mode);
        close(*fd);
        *fd = -1;
        if (!dir)
            return 404; /* "page.html/": there is no directory of that name */
        if (!dir_slash)
            return 301;
        *fd = open_index(c, rel, st);
    }
    if (*fd == -EACCES || *fd == -EPERM)
        return 403;
    if (*fd == -EMFILE || *fd == -ENFILE || *fd == -ENOMEM)
        return 503; /* out of descriptors: the file may well exist */
    if (*fd < 0)
        return 404; /* missing, or a symlink that leaves the root (EXDEV, ELOOP) */
    if (!S_ISREG(st->st_mode)) {
        close(*fd);
        *fd = -1;
        return 404;
    }
    return 0;
}

static void put_entity(headctx_t *h, const file_t *f, off_t len)
{
    put(h, "Content-Type: %s\r\nContent-Length: %lld\r\nLast-Modified: %s\r\nETag: %s\r\n",
        f->ctype, (long long)len, f->lastmod, f->etag);
    put(h, "Accept-Ranges: bytes\r\n");
}

static void make_validators(const struct stat *st, char *etag, size_t ecap, char *lastmod,
                            size_t lcap)
{
    snprintf(etag, ecap, "\"%llx-%llx\"", (unsigned long long)st->st_mtime,
             (unsigned long long)st->st_size);
    http_date(st->st_mtime, lastmod, lcap);
}

/* A file opened for this request alone: derive what the head says of it. */
static void file_own(file_t *f, const char *name)
{
    f->st = &f->own_st;
    make_validators(f->st, f->own_etag, sizeof(f->own_etag), f->own_lastmod,
                    sizeof(f->own_lastmod));
    f->etag = f->own_etag;
    f->lastmod = f->own_lastmod;
    f->ctype = c10k_mime_type(name, strlen(name));
    f->data = f->hdr = NULL;
    f->ref = NULL;
}

/* A cache entry: what the head says of it is derived once, when it is new,
 * with the same code as for a file of our own, so the bytes are the same. */
static void file_cached(file_t *f, c10k_fcfile_t *e, const char *name, size_t nlen)
{
    if (!e->derived) {
        headctx_t h = {.buf = e->hdr, .cap = sizeof(e->hdr)};
        file_t tmp = {.etag = e->etag, .lastmod = e->lastmod};
        make_validators(&e->st, e->etag, sizeof(e->etag), e->lastmod, sizeof(e->lastmod));
        e->ctype = tmp.ctype = c10k_mime_type(name, nlen);
        put_entity(&h, &tmp, e->st.st_size);
        e->hdr_len = h.overflow ? 0 : h.len;
        e->derived = true;
    }
    f->fd = e->fd;
    f->st = &e->st;
    f->data = e->data;
    f->etag = e->etag;
    f->lastmod = e->lastmod;
    f->ctype = e->ctype;
    f->hdr = e->hdr_len ? e->hdr : NULL;
    f->hdr_len = e->hdr_len;
    f->ref = e;
}

/* The response is done with f (or never needed its body). */
static void file_drop(file_t *f)
{
    if (f->ref)
        c10k_fcache_release(f->ref);
    else
        close(f->fd);
    f->ref = NULL;
    f->fd = -1;
}

/* The cache's name for rel: rel itself, or its index for "dir/". Returns its
 * length, or 0 when it is too long to cache. */
static size_t cache_key(const char *rel, bool dir_slash, char *key)
{
    size_t n = strlen(rel), extra = dir_slash ? strlen("/index.html") : 0;

    if (n + extra >= C10K_FCACHE_KEY_MAX)
        return 0;
    memcpy(key, rel, n);
    memcpy(key + n, "/index.html", extra);
    key[n + extra] = '\0';
    return n + extra;
}

/*
 * Resolve and open the file for path; rel gets its name below the root (with
 * /index.html for a directory). Returns 0 with *f filled, or the status to
 * answer with. With the open-file cache on, a valid entry answers without a
 * system call; otherwise the file is resolved exactly as without a cache and
 * the result refreshes the cache: a new entry, the same one trusted again,
 * or (no regular file there any more) none.
 */
static int open_target(ctx_t *c, view_t path, char *rel, size_t cap, file_t *f)
{
    const c10k_site_t *site = c->site;
    c10k_fcache_t *fc = NULL;
    char key[C10K_FCACHE_KEY_MAX];
    c10k_fcfile_t *e;
    bool dir_slash = false;
    int status = path_resolve(path, rel, cap - 12, &dir_slash);
    size_t klen = 0;
    int64_t now = 0;

    if (status)
        return status;
    if (site->fcache_max && (klen = cache_key(rel, dir_slash, key)) > 0)
        fc = c10k_fcache_thread(site->fcache_max, site->fcache_valid_ms);
    if (fc) {
        now = c10k_fcache_now(fc);
        e = c10k_fcache_get(fc, key, klen, now);
        if (e) {
            memcpy(rel, key, klen + 1);
            file_cached(f, e, key, klen);
            return 0;
        }
    }
    status = open_resolved(c, rel, dir_slash, &f->fd, &f->own_st);
    if (fc && status)
        c10k_fcache_forget(fc, key, klen);
    if (status)
        return status;
    if (fc && (e = c10k_fcache_put(fc, key, klen, f->fd, &f->own_st, now)) != NULL)
        file_cached(f, e, key, klen);
    else
        file_own(f, rel);
    return 0;
}

static int conditional(const parsed_t *ps, const struct stat *st, const char *etag)
{
    if (ps->inm.p)
        return etag_matches(ps->inm, etag) ? 304 : 0;
    if (ps->ims.p) {
        time_t t = http_date_parse(view_trim(ps->ims));
        if (t != -1 && st->st_mtime <= t)
            return 304;
    }
    return 0;
}

/* If-Range: the range applies only if the validator is still current. */
static bool if_range_holds(const parsed_t *ps, const char *etag, const char *lastmod)
{
    view_t v = view_trim(ps->if_range);

    if (!ps->if_range.p)
        return true;
    if (v.n && v.p[0] == '"')
        return v.n == strlen(etag) && memcmp(v.p, etag, v.n) == 0;
    return v.n == strlen(lastmod) && memcmp(v.p, lastmod, v.n) == 0;
}

/* The body: the file range, or the same bytes from the cached content (one
 * send with the head). The response holds f's cache entry until
 * c10k_resp_finish(). */
static void plan_body(c10k_resp_t *resp, const file_t *f, off_t first, off_t last)
{
    size_t len = (size_t)(last - first + 1);

    resp->body_ref = f->ref;
    if (f->data) {
        resp->body_mem = f->data + first;
        resp->body_mem_len = len;
        return;
    }
    resp->body_fd = f->fd;
    resp->body_off = first;
    resp->body_len = len;
}

static void plan_file(ctx_t *c, file_t *f)
{
    const struct stat *st = f->st;
    off_t first = 0, last = st->st_size - 1;
    int status = 200;
    c10k_resp_t *resp = c->resp;

    if (conditional(&c->ps, st, f->etag) == 304) {
        resp->status = 304;
        resp->keep_alive = c->keep_alive;
        put_start(&c->h, 304, "Not Modified");
        put(&c->h, "Last-Modified: %s\r\nETag: %s\r\n", f->lastmod, f->etag);
        put_end(&c->h, resp->keep_alive);
        resp->head_len = c->h.len;
        file_drop(f);
        return;
    }
    if (c->ps.range.p && if_range_holds(&c->ps, f->etag, f->lastmod))
        status = range_parse(c->ps.range, st->st_size, &first, &last);
    if (status == 416) {
        plan_error(resp, &c->h, 416, c->head_only, c->keep_alive, NULL, st->st_size);
        file_drop(f);
        return;
    }
    resp->status = status;
    resp->keep_alive = c->keep_alive;
    put_start(&c->h, status, status == 206 ? "Partial Content" : "OK");
    if (status == 200 && f->hdr)
        put_raw(&c->h, f->hdr, f->hdr_len);
    else
        put_entity(&c->h, f, last - first + 1);
    if (status == 206)
        put(&c->h, "Content-Range: bytes %lld-%lld/%lld\r\n", (long long)first, (long long)last,
            (long long)st->st_size);
    put_end(&c->h, resp->keep_alive);
    resp->head_len = c->h.len;
    if (c->head_only || last < first)
        file_drop(f);
    else
        plan_body(resp, f, first, last);
}

/* Bytes of a Location for rel and query once percent-encoded. */
static size_t location_len(const char *rel, view_t query)
{
    size_t enc = 2;

    for (const char *p = rel; *p; p++)
        enc += location_safe((unsigned char)*p) ? 1 : 3;
    for (size_t i = 0; i < query.n; i++)
        enc += query_safe((unsigned char)query.p[i]) ? 1 : 3;
    return enc + (query.p ? 1 : 0);
}

static void plan_request(ctx_t *c, view_t path)
{
    char rel[C10K_URI_MAX + 16];
    file_t f;
    int status;
    view_t loc[2];

    rel[0] = '\0'; /* a path refused before it was decoded leaves it empty */
    status = open_target(c, path, rel, sizeof(rel), &f);
    loc[0] = (view_t){rel, strlen(rel)};
    loc[1] = c->query;

    if (status == 301 && location_len(rel, c->query) > C10K_URI_MAX)
        status = 414; /* its Location would not fit the head buffer */
    if (status == 0)
        plan_file(c, &f);
    else
        plan_error(c->resp, &c->h, status, c->head_only, c->keep_alive, loc, 0);
}

/* ---- the entry points --------------------------------------------------------------- */

/* The first line of the request, without its line end, or {NULL, 0} while
 * it has not ended. */
static view_t first_line(const char *p, size_t n)
{
    const char *nl = p ? memchr(p, '\n', n) : NULL;
    size_t k = nl ? (size_t)(nl - p) : 0;

    if (!nl)
        return (view_t){0};
    return (view_t){p, k && p[k - 1] == '\r' ? k - 1 : k};
}

/* What the access log shows of the request: views into the caller's bytes. */
static void log_views(ctx_t *c)
{
    view_t line = first_line(c->in, c->in_len);

    c->resp->request = line.p;
    c->resp->request_len = line.n;
    c->resp->referer = c->ps.referer.p;
    c->resp->referer_len = c->ps.referer.n;
    c->resp->user_agent = c->ps.user_agent.p;
    c->resp->user_agent_len = c->ps.user_agent.n;
}

/* Answer bad input that cannot be framed: the rest of the buffer goes with it. */
static ssize_t reject(ctx_t *c, int status, size_t len)
{
    c->req->scanned = 0;
    c->req->requests++;
    plan_error(c->resp, &c->h, status, c->head_only, false, NULL, 0);
    log_views(c);
    return (ssize_t)len;
}

static int parse_head(ctx_t *c, const char *buf, size_t start, size_t hlen)
{
    size_t parsed;

    if (head_counts(buf + start, hlen - start))
        return 431;
    if (!head_syntax_ok(buf + start, hlen - start, &c->ps))
        return 400;
    if (request_line_check(first_line(buf + start, hlen - start)))
        return 400;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = &c->ps;
    parsed = http_parser_execute(&c->parser, &settings, buf + start, hlen - start);
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_INVALID_METHOD && c->ps.url.p) {
        const char *m = http_method_str((enum http_method)c->parser.method);
        c->resp->method = m;
        c->resp->method_len = strlen(m);
        c->resp->target = c->ps.url.p;
        c->resp->target_len = c->ps.url.n;
    }
    return check_request(c, parsed, hlen - start);
}

/* The first chunk-size line of a chunked body we will not read: 413 when it
 * is well formed, 400 when it is not, 0 while it has not arrived. Waiting for
 * the whole line, never judging a part of it, keeps the verdict the same
 * however the bytes were split. */
static int chunk_verdict(const char *p, size_t n)
{
    const size_t max = 80; /* 16 hex digits and a short extension */
    const char *nl = memchr(p, '\n', n < max ? n : max);
    size_t digits = 0;

    if (!nl)
        return n >= max ? 400 : 0;
    while (p + digits < nl && isxdigit((unsigned char)p[digits]))
        digits++;
    if (digits == 0 || digits > 16 || nl == p || nl[-1] != '\r')
        return 400;
    if (p + digits == nl - 1 || p[digits] == ';')
        return 413;
    return 400; /* a sign, "0x", a space inside, ... */
}

/* A complete head at buf[start..hlen): its verdict, or C10K_INCOMPLETE while
 * a chunked body's first size line (which decides 400 or not) is missing. */
static int head_verdict(ctx_t *c, const char *buf, size_t len, size_t start, size_t hlen)
{
    int status = parse_head(c, buf, start, hlen);

    if ((status == 405 || status == 413) && c->ps.has_body && c->ps.te.p) {
        int chunk = chunk_verdict(buf + hlen, len - hlen);
        if (chunk != 413)
            return chunk; /* 400: a smuggling shape; 0: wait for the line */
    }
    return status;
}

ssize_t c10k_http_handle(const c10k_site_t *site, c10k_req_t *req, const char *buf, size_t len,
                         char *head, size_t head_cap, c10k_resp_t *resp)
{
    ctx_t c = {.site = site, .req = req, .resp = resp, .h = {.buf = head, .cap = head_cap}};
    size_t start = 0;
    ssize_t hlen;
    view_t path;
    int status;

    if (head_cap < C10K_HEAD_BUF)
        return -ENOBUFS;
    plan_reset(resp);
    /* RFC 9112 2.2: ignore empty lines before a request line. */
    while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n')
        start += 2;
    c.in = buf + start;
    c.in_len = len - start;
    hlen = find_head(req, buf, len, start);
    if (hlen == HEAD_BAD_LF)
        return reject(&c, 400, len);
    if (hlen == 0) {
        status = head_limits(buf + start, len - start);
        if (!status && len >= C10K_REQ_BUF)
            status = 400; /* nothing but empty lines: never a request */
        return status ? reject(&c, status, len) : C10K_INCOMPLETE;
    }
    req->scanned = 0;
    status = head_verdict(&c, buf, len, start, (size_t)hlen);
    if (status == C10K_INCOMPLETE && c.ps.has_body)
        return C10K_INCOMPLETE; /* the head is parsed again with the line */
    c.head_only = c.parser.method == HTTP_HEAD;
    /* A body we do not read leaves the framing unknown: close after it. */
    if (status && (status_closes(status) || c.ps.has_body))
        return reject(&c, status, len);
    c.keep_alive = http_should_keep_alive(&c.parser) && !req->force_close &&
                   !(site->max_requests && req->requests + 1 >= site->max_requests);
    req->requests++;
    if (!status)
        status = target_path(c.ps.url, &path, &c.query);
    if (status)
        plan_error(resp, &c.h, status, c.head_only, c.keep_alive, NULL, 0);
    else
        plan_request(&c, path);
    c.resp->req_len = (size_t)hlen;
    log_views(&c);
    return c.resp->keep_alive ? hlen : (ssize_t)len;
}

int c10k_http_timeout(c10k_req_t *req, size_t len, char *head, size_t head_cap, c10k_resp_t *resp)
{
    ctx_t c = {.req = req, .resp = resp, .h = {.buf = head, .cap = head_cap}};

    plan_reset(resp);
    if (len == 0 || head_cap < C10K_HEAD_BUF)
        return 0;
    reject(&c, 408, len);
    return 1;
}
