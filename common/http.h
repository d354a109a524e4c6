/*
 * http.h - the c10k static-file handler: sans-I/O HTTP/1.x.
 *
 * Every concurrency model runs this handler unchanged. It never touches a
 * socket and never knows which model is calling it:
 *
 *     bytes in  ->  c10k_http_handle()  ->  response plan out
 *
 * The caller owns every buffer. It keeps the bytes it has read in one
 * contiguous buffer and calls c10k_http_handle() after each read. The handler
 * either needs more bytes (C10K_INCOMPLETE), or it has consumed one request and
 * filled a plan: head bytes written into the caller's head buffer, and a body
 * that is a file range (for sendfile or splice) or a small static buffer.
 * The only I/O it does is on the file system (openat2/fstat of the file to
 * serve); there is no malloc on this path. With --open-file-cache on, the
 * file comes from the calling thread's open-file cache when it can
 * (filecache.h), and a warm cache allocates nothing either.
 *
 * Pipelining: the return value says how many bytes one request used. The
 * caller sends that response, then calls again on the rest of its buffer.
 */
#ifndef C10K_HTTP_H
#define C10K_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mime.h"

/* Limits from the spec. A request head must fit in C10K_REQ_BUF bytes. */
#define C10K_URI_MAX      8192  /* longer request target: 414 */
#define C10K_HEADERS_MAX  16384 /* header bytes after the request line: 431 */
#define C10K_HEADER_LINES 100   /* more header lines: 431 */
#define C10K_REQ_BUF      32768 /* read buffer that always holds a whole head */
#define C10K_HEAD_BUF     10240 /* head buffer; fits a Location of C10K_URI_MAX */

/* c10k_http_handle() returns this when the head is not complete yet. */
#define C10K_INCOMPLETE 0

/* The document root and the settings the handler needs. Immutable after
 * c10k_site_open(), so every thread and process may share one. */
typedef struct c10k_site_s {
    int root_fd;           /* O_PATH | O_DIRECTORY descriptor of the root */
    char root_path[4096];  /* as given, for messages */
    bool have_openat2;     /* kernel supports RESOLVE_BENEATH */
    unsigned max_requests; /* per connection; 0 = unlimited */
    unsigned fcache_max;   /* entries in each thread's open-file cache; 0 = off */
    int fcache_valid_ms;   /* ... each trusted this long after its last check */
} c10k_site_t;

/* Per-connection parse state. Tiny, so an idle connection costs little. */
typedef struct c10k_req_s {
    uint32_t scanned;  /* bytes of the current head already scanned for its end */
    uint32_t requests; /* responses planned on this connection so far */
    bool force_close;  /* caller sets it (e.g. server stopping): next response closes */
} c10k_req_t;

/* The response plan. Views point into the caller's head buffer, into static
 * memory, or (method/target, for logging) into the caller's read buffer. */
typedef struct c10k_resp_s {
    int status;           /* 200, 206, 304, 400, ... */
    size_t head_len;      /* bytes of head written into the caller's head buffer */
    int body_fd;          /* file to send from, or -1; closed by c10k_resp_finish() */
    off_t body_off;       /* first byte of the file range */
    size_t body_len;      /* length of the file range (0 for HEAD and 304) */
    const char *body_mem; /* static body (error pages), or NULL */
    size_t body_mem_len;  /* its length (0 for HEAD) */
    bool keep_alive;      /* false: close the connection once this is sent */
    size_t req_len;       /* bytes of buf the request itself took (0: unknown, e.g. a
                             malformed one). A closing response's return value takes
                             the rest of buf too; req_len says whether there was a rest:
                             a client that sent more may still be sending (conn.h lingers). */
    const char *method;   /* request method, for the access log ("-" if unparsed) */
    size_t method_len;
    const char *target; /* request target as received, for the access log */
    size_t target_len;
    /* For the access log, views into the caller's read buffer (valid until
     * the caller reuses those bytes), NULL when absent: the request line as
     * received without its CRLF (method, target and protocol), and the first
     * Referer and User-Agent values, trimmed. */
    const char *request;
    size_t request_len;
    const char *referer;
    size_t referer_len;
    const char *user_agent;
    size_t user_agent_len;

    /* The open-file cache entry that body_fd or body_mem belongs to, or NULL
     * (then body_fd is the plan's own). The plan holds a reference, which
     * c10k_resp_finish() gives back; the cache closes the descriptor once no
     * plan holds it and it has left the cache. */
    struct c10k_fcfile_s *body_ref;
} c10k_resp_t;

/* Open root as the document root. Returns 0, or a negative errno (-ENOENT,
 * -ENOTDIR, ...). The descriptor stays open until c10k_site_close(). */
int c10k_site_open(c10k_site_t *site, const char *root, unsigned max_requests);

/* Release what c10k_site_open() acquired. Safe on a zeroed site. */
void c10k_site_close(c10k_site_t *site);

/* Reset per-connection state; call once when a connection is accepted. */
void c10k_req_init(c10k_req_t *req);

/*
 * Parse one request from buf[0..len) and plan its response.
 *
 * Returns:
 *   > 0              bytes of buf this request used; *resp is filled and the
 *                    head is in head[0..resp->head_len). Send it, then call
 *                    again with the bytes after them (pipelining).
 *   C10K_INCOMPLETE  the head is not complete: read more, append, call again
 *                    with the whole buffer (the handler remembers how far it
 *                    scanned, so re-calling costs O(new bytes)).
 *   < 0              negative errno for a caller bug (-ENOBUFS: head_cap is
 *                    below C10K_HEAD_BUF). Bad *input* is never an error here:
 *                    it becomes a 4xx/5xx plan with keep_alive == false.
 *
 * If len reaches C10K_REQ_BUF with no complete head, the plan is 414 or 431,
 * so a caller whose buffer is C10K_REQ_BUF bytes never needs a larger one.
 */
ssize_t c10k_http_handle(const c10k_site_t *site, c10k_req_t *req, const char *buf, size_t len,
                         char *head, size_t head_cap, c10k_resp_t *resp);

/*
 * The header timeout passed with len bytes of an unfinished head buffered.
 * Returns 1 and fills a 408 plan (close afterwards) if a request had begun
 * (len > 0); returns 0 if the connection was idle between requests, in which
 * case the caller just closes it, as nginx does.
 */
int c10k_http_timeout(c10k_req_t *req, size_t len, char *head, size_t head_cap, c10k_resp_t *resp);

/* Release the plan's resources (closes body_fd, or gives a cached file back
 * to its cache). Call once the response has been sent or abandoned, from the
 * thread that made the plan (the cache is that thread's). Safe to call
 * twice. */
void c10k_resp_finish(c10k_resp_t *resp);

/* For a model that closes the body's descriptor itself (uring closes it on
 * the ring, saving a system call): returns body_fd and forgets it, or -1 when
 * there is none or it belongs to the open-file cache (c10k_resp_finish() then
 * gives it back). */
int c10k_resp_take_fd(c10k_resp_t *resp);

#endif
