/*
 * bench/ceiling/ceiling.c - the ceiling: a canned-response HTTP server that
 * c10k bench runs beside the models and nginx, as the limit of what loopback
 * and the load generator allow on this machine.
 *
 * What it is
 *   Not a model, and it has no handler. At start it reads one file (the
 *   scenario's) into memory and builds the one response every c10k model
 *   would send for it: a 200 with the same headers (Server, Date, Content-Type,
 *   Content-Length, Last-Modified, ETag, Accept-Ranges, Connection) and the
 *   same body bytes. Then it answers every request with those bytes, whatever
 *   the request asked for.
 *
 * Why it is the ceiling
 *   A keep-alive request costs it two system calls: one read that brings the
 *   request, one send that takes the response (and, under load, a share of
 *   one epoll_wait or io_uring_enter for a whole batch of connections; with
 *   io_uring even the read and send ride in that one enter). It parses
 *   nothing beyond finding the blank line that ends each request head, opens
 *   no file, builds no header, and hands the socket nothing but the response,
 *   from memory, or for a large one by sendfile, which does not copy it.
 *   Every server does at least this much per request, so what the ceiling
 *   serves bounds what any server could serve here, and a model's share of
 *   it says how much its own work costs. What is left is the kernel's TCP
 *   stack on loopback and the load generator, which every server pays alike.
 *
 * What it still does right
 *   Keep-alive, and the closing cases: `Connection: close`, and HTTP/1.0
 *   without `Connection: keep-alive`, get the response with
 *   `Connection: close`, then the connection closes. Pipelining: every
 *   request in a read is answered, in order; many responses go out in one
 *   send (up to C10K_CEIL_IOV_MAX iovecs). Backpressure: while responses are
 *   owed nothing more is read, so a client that does not read its responses
 *   is held back by its own socket buffer, never dropped. Large responses go
 *   out in as many partial sends as the socket wants. A request head longer
 *   than C10K_CEIL_BUF (8 KiB, as nginx's large_client_header_buffers) closes
 *   the connection. There are no timeouts: the load generator is trusted.
 *
 * Two drivers, one logic
 *   This file holds the command line, the canned response and the connection
 *   logic (sans-I/O, see ceiling.h). ceiling_epoll.c and ceiling_uring.c only
 *   wait: an edge-triggered epoll loop with recv, sendmsg and sendfile, or an
 *   io_uring with multishot accept, direct descriptors, RECV and SEND. c10k
 *   bench runs both and takes the faster as the ceiling: io_uring spends less
 *   per request, epoll's sendfile less per large body.
 *
 * How to run it
 *   c10k-ceiling --backend epoll|uring --file PATH [--port N] [--bind ADDR]
 *                [--workers N] [--cpus LIST]
 *   It prints one start line, as c10k serve does, with the URL to load:
 *     c10k-ceiling: serving PATH (N bytes, precomputed)
 *                   at http://127.0.0.1:PORT/ with epoll (workers=N cpus=LIST)
 *   SIGINT or SIGTERM: every connection closes at once (no grace: the bench
 *   stops it after its window), exit 0. Bad flags, a file that cannot be read,
 *   or io_uring unavailable with --backend uring: a message and exit 2.
 */
#include "ceiling.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD        "c10k-ceiling" /* prefix of every message */
#define EXIT_USAGE 2
#define HEAD_MAX   512 /* our response head: about 250 bytes */

/* --- the canned responses ------------------------------------------------------------------- */

/* What we answer: two responses, head and body each, differing only in the
 * Connection header. Both lie in one memfd, one after the other, mapped
 * read-only, so the same bytes can go out from memory (sendmsg: small
 * responses, many in one call) or from the file (sendfile: a large one, whose
 * pages the kernel then lends to the socket rather than copying them; see
 * c10k_ceil_conn_file()). Built before the workers start, never changed, and
 * unmapped only once every worker has stopped: a send in flight may point into
 * them until then. */
typedef struct {
    const char *bytes; /* in the mapping */
    off_t off;         /* the same bytes in the memfd */
    size_t len;
} response_t;

enum { KEEP_ALIVE, CLOSE };
static response_t responses[2];
static struct {
    int fd; /* the memfd */
    char *map;
    size_t len;
    size_t body; /* the file's size */
} canned = {.fd = -1};

static void http_date(time_t t, char *buf, size_t cap)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* The head c10k's handler writes for a 200 (common/http.c, plan_file), with
 * the Date fixed at start. Content-Type: the bench serves .bin files, which
 * c10k sends as application/octet-stream; the ceiling looks at no names. */
static int build_head(char *buf, size_t cap, const struct stat *st, bool keep_alive)
{
    char now[40], lastmod[40];

    http_date(time(NULL), now, sizeof(now));
    http_date(st->st_mtime, lastmod, sizeof(lastmod));
    return snprintf(buf, cap,
                    "HTTP/1.1 200 OK\r\nServer: c10k\r\nDate: %s\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n"
                    "Last-Modified: %s\r\nETag: \"%llx-%llx\"\r\nAccept-Ranges: bytes\r\n"
                    "Connection: %s\r\n\r\n",
                    now, (long long)st->st_size, lastmod, (unsigned long long)st->st_mtime,
                    (unsigned long long)st->st_size, keep_alive ? "keep-alive" : "close");
}

/* Read len bytes of fd from its start into buf. Returns 0 or a negative errno
 * (-EIO if the file shrank while we read it). */
static int read_all(int fd, char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* The memfd and its mapping, canned.len bytes, writable until it is filled. */
static int canned_map(void)
{
    canned.fd = memfd_create("c10k-ceiling", MFD_CLOEXEC);
    if (canned.fd < 0 || ftruncate(canned.fd, (off_t)canned.len) < 0)
        return -errno;
    canned.map = mmap(NULL, canned.len, PROT_READ | PROT_WRITE, MAP_SHARED, canned.fd, 0);
    if (canned.map == MAP_FAILED) {
        canned.map = NULL;
        return -errno;
    }
    return 0;
}

static void canned_free(void)
{
    if (canned.map)
        munmap(canned.map, canned.len);
    if (canned.fd >= 0)
        close(canned.fd);
}

/* Build both responses from the file at path. Returns 0, or a negative errno
 * after printing what is wrong. The body is there twice, once after each
 * head, so each response is one contiguous run of bytes: memory is cheap
 * here, a second iovec on every send is not free. */
static int build_responses(const char *path)
{
    char heads[2][HEAD_MAX];
    int hl[2], fd, rc = 0;
    struct stat st;
    size_t off = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    canned.body = (size_t)st.st_size;
    for (int k = KEEP_ALIVE; k <= CLOSE; k++) {
        hl[k] = build_head(heads[k], sizeof(heads[k]), &st, k == KEEP_ALIVE);
        canned.len += (size_t)hl[k] + canned.body;
    }
    rc = canned_map();
    for (int k = KEEP_ALIVE; k <= CLOSE && rc == 0; k++) {
        responses[k] = (response_t){canned.map + off, (off_t)off, (size_t)hl[k] + canned.body};
        memcpy(canned.map + off, heads[k], (size_t)hl[k]);
        rc = read_all(fd, canned.map + off + hl[k], canned.body);
        off += responses[k].len;
    }
    if (rc == 0 && mprotect(canned.map, canned.len, PROT_READ) < 0)
        rc = -errno;
out:
    if (rc < 0)
        fprintf(stderr, CMD ": --file '%s': %s\n", path,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
    if (fd >= 0)
        close(fd);
    return rc;
}

/* --- request framing -------------------------------------------------------------------------- */

/* Length of the head at the start of p[0..len), through its blank line
 * ("\r\n\r\n", or "\n\n" from a lax client), or 0 if it is not complete yet.
 * The search starts at from: the bytes before it were searched already. */
static size_t head_end(const char *p, size_t len, size_t from)
{
    const char *nl = p + from, *end = p + len;

    while ((nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL) {
        nl++;
        if (nl < end && *nl == '\r')
            nl++;
        if (nl >= end)
            return 0;
        if (*nl == '\n')
            return (size_t)(nl + 1 - p);
    }
    return 0;
}

/* Is token (lower case) one of the comma-separated items of v[0..n)? */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);

    while (n > 0) {
        const char *comma = memchr(v, ',', n);
        size_t item = comma ? (size_t)(comma - v) : n;
        size_t a = 0, b = item;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == '\r'))
            b--;
        if (b - a == tl && strncasecmp(v + a, token, tl) == 0)
            return true;
        if (!comma)
            break;
        v += item + 1;
        n -= item + 1;
    }
    return false;
}

/* Does the request with head p[0..n) end its connection? HTTP/1.1 keeps it
 * open unless it says Connection: close; HTTP/1.0 closes it unless it says
 * Connection: keep-alive. These are the only bytes the ceiling reads. */
static bool ends_connection(const char *p, size_t n)
{
    const char *end = p + n, *line, *eol = memchr(p, '\n', n);
    size_t first = (size_t)(eol - p);
    bool close = false, keep = false, http10;

    if (first > 0 && p[first - 1] == '\r')
        first--;
    http10 = first >= 8 && memcmp(p + first - 8, "HTTP/1.0", 8) == 0;
    for (line = eol + 1; line < end; line = eol + 1) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if (eol - line > 11 && strncasecmp(line, "connection:", 11) == 0) {
            close |= has_token(line + 11, (size_t)(eol - line - 11), "close");
            keep |= has_token(line + 11, (size_t)(eol - line - 11), "keep-alive");
        }
    }
    return http10 ? !keep : close;
}

void c10k_ceil_conn_init(c10k_ceil_conn_t *c)
{
    c->len = c->scanned = c->owed = 0;
    c->closing = false;
    c->sent = 0;
}

int c10k_ceil_conn_received(c10k_ceil_conn_t *c, size_t n)
{
    size_t start = 0, end;

    c->len += (uint32_t)n;
    while (!c->closing && (end = head_end(c->buf + start, c->len - start, c->scanned)) > 0) {
        c->owed++;
        c->closing = ends_connection(c->buf + start, end);
        start += end;
        c->scanned = 0;
    }
    if (c->closing) { /* what follows a closing request is never answered */
        c->len = c->scanned = 0;
        return 0;
    }
    c->len -= (uint32_t)start;
    memmove(c->buf, c->buf + start, c->len);
    /* Resume where a terminator could still begin: it is at most 3 bytes. */
    c->scanned = c->len > 3 ? c->len - 3 : 0;
    return c->len == C10K_CEIL_BUF ? -1 : 0;
}

/* The response owed at position i (0 = the first): the closing one is last. */
static const response_t *owed_at(const c10k_ceil_conn_t *c, uint32_t i)
{
    return &responses[c->closing && i == c->owed - 1 ? CLOSE : KEEP_ALIVE];
}

int c10k_ceil_conn_iov(const c10k_ceil_conn_t *c, struct iovec *iov, int max)
{
    int n = 0;

    for (uint32_t i = 0; i < c->owed && n < max; i++, n++) {
        const response_t *r = owed_at(c, i);
        size_t skip = i == 0 ? c->sent : 0;
        /* iov_base is not const, but nothing ever writes through it */
        iov[n] = (struct iovec){(void *)(r->bytes + skip), r->len - skip};
    }
    return n;
}

/* Above C10K_CEIL_SENDFILE_MIN, sendfile lends the memfd's pages to the socket,
 * where sendmsg would copy them; below, the copy is as cheap as the page
 * references, and sendmsg sends many pipelined responses at once. */
bool c10k_ceil_conn_file(const c10k_ceil_conn_t *c, int *fd, off_t *off, size_t *len)
{
    const response_t *r;

    if (c->owed == 0 || (r = owed_at(c, 0))->len < C10K_CEIL_SENDFILE_MIN)
        return false;
    *fd = canned.fd;
    *off = r->off + (off_t)c->sent;
    *len = r->len - c->sent;
    return true;
}

void c10k_ceil_conn_sent(c10k_ceil_conn_t *c, size_t n)
{
    while (n > 0 && c->owed > 0) {
        size_t left = owed_at(c, 0)->len - c->sent;
        if (n < left) {
            c->sent += n;
            return;
        }
        n -= left;
        c->sent = 0;
        c->owed--;
    }
}

/* --- command line ----------------------------------------------------------------------------- */

typedef struct {
    const c10k_ceil_backend_t *backend;
    const char *file;
} options_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: " CMD " --backend epoll|uring --file PATH [flags]\n\n"
               "The ceiling: answers every HTTP request with PATH's bytes as c10k would\n"
               "serve them, precomputed (bench/ceiling/ceiling.c says why).\n\n"
               "  --backend epoll|uring  how it waits (required)\n"
               "  --file PATH            the file every response carries (required)\n"
               "  --port N               TCP port; 0 lets the kernel pick one (default 8080)\n"
               "  --bind ADDR            address to listen on (default 127.0.0.1)\n"
               "  --workers N            event loops, one SO_REUSEPORT listener each\n"
               "                         (default: usable CPUs)\n"
               "  --cpus LIST            pin the loops to these CPUs, e.g. 0 or 0-1,3\n\n"
               "SIGINT/SIGTERM: close every connection, exit 0. Usage errors: exit 2.\n");
}

static int set_backend(options_t *o, const char *v)
{
    static const c10k_ceil_backend_t *const all[] = {&c10k_ceil_backend_epoll,
                                                     &c10k_ceil_backend_uring};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(v, all[i]->name) == 0) {
            o->backend = all[i];
            return 0;
        }
    fprintf(stderr, CMD ": --backend '%s': want epoll or uring\n", v);
    return -EINVAL;
}

static int set_flag(options_t *o, c10k_config_t *cfg, const char *flag, const char *v)
{
    long n = 0;
    int rc = 0;

    if (strcmp(flag, "backend") == 0) {
        rc = set_backend(o, v);
    } else if (strcmp(flag, "file") == 0) {
        o->file = v;
    } else if (strcmp(flag, "bind") == 0) {
        cfg->bind = v;
    } else if (strcmp(flag, "cpus") == 0) {
        rc = c10k_parse_cpus(CMD, v, cfg->cpus, C10K_CPUS_MAX, &cfg->ncpus);
    } else if (strcmp(flag, "port") == 0) {
        rc = c10k_parse_uint(CMD, flag, v, 0, 65535, &n);
        cfg->port = (int)n;
    } else if (strcmp(flag, "workers") == 0) {
        rc = c10k_parse_uint(CMD, flag, v, 1, 4096, &n);
        cfg->workers = (int)n;
    } else {
        fprintf(stderr, CMD ": unknown flag '--%s' (see " CMD " --help)\n", flag);
        rc = -EINVAL;
    }
    return rc;
}

/* Returns 0 to run, 1 after --help, or -EINVAL after printing why. Every flag
 * takes a value, as "--flag VALUE" or "--flag=VALUE". */
static int parse_args(int argc, char **argv, options_t *o, c10k_config_t *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i] + 2, *eq = strchr(name, '='), *v;
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        char flag[32];

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
        if (strncmp(argv[i], "--", 2) != 0 || len == 0 || len >= sizeof(flag)) {
            fprintf(stderr, CMD ": unexpected argument '%s' (see " CMD " --help)\n", argv[i]);
            return -EINVAL;
        }
        memcpy(flag, name, len);
        flag[len] = '\0';
        v = eq ? eq + 1 : argv[++i];
        if (!v) {
            fprintf(stderr, CMD ": --%s needs a value\n", flag);
            return -EINVAL;
        }
        if (set_flag(o, cfg, flag, v) < 0)
            return -EINVAL;
    }
    if (!o->backend || !o->file) {
        fprintf(stderr, CMD ": %s is required (see " CMD " --help)\n",
                o->backend ? "--file PATH" : "--backend epoll|uring");
        return -EINVAL;
    }
    return 0;
}

/* --- workers ---------------------------------------------------------------------------------- */

/* Workers report once their loop is set up; main prints the start line only
 * when all of them are, so a client that reads it can connect at once. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending; /* workers not yet set up */
    int err;     /* the first setup error, or 0 */
} latch_t;

typedef struct {
    c10k_ceil_worker_t w;
    const c10k_ceil_backend_t *backend;
    latch_t *latch;
    pthread_t thread;
    int err; /* what run() returned */
} thread_t;

static void latch_report(latch_t *l, int err)
{
    pthread_mutex_lock(&l->lock);
    if (err < 0 && l->err == 0)
        l->err = err;
    l->pending--;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static int latch_wait(latch_t *l)
{
    int err;

    pthread_mutex_lock(&l->lock);
    while (l->pending > 0)
        pthread_cond_wait(&l->cond, &l->lock);
    err = l->err;
    pthread_mutex_unlock(&l->lock);
    return err;
}

static void *worker_main(void *arg)
{
    thread_t *t = arg;
    c10k_ceil_worker_t *w = &t->w;
    int rc;

    /* Pinned before setup, so what the loop creates (io_uring's kernel
     * workers) starts on the worker's CPU. */
    rc = c10k_pin_worker(w->srv, w->id);
    if (rc == 0 && w->id > 0) {
        w->listen_fd = c10k_listen_more(w->srv);
        rc = w->listen_fd < 0 ? w->listen_fd : 0;
    }
    if (rc < 0)
        fprintf(stderr, CMD ": worker %d: %s\n", w->id, strerror(-rc));
    else
        rc = t->backend->setup(w);
    latch_report(t->latch, rc);
    if (rc == 0)
        rc = t->backend->run(w);
    if (w->id > 0 && w->listen_fd >= 0)
        close(w->listen_fd);
    t->err = rc;
    return NULL;
}

/* Start n workers. Returns how many threads were started (to join); *err
 * gets the first error of a thread or a setup. */
static int start_workers(c10k_server_t *srv, const c10k_ceil_backend_t *b, thread_t *ts, int n,
                         latch_t *latch, int *err)
{
    int started = 0;

    *err = 0;
    latch->pending = n;
    for (; started < n; started++) {
        thread_t *t = &ts[started];
        int rc;

        t->w = (c10k_ceil_worker_t){.srv = srv, .id = started, .listen_fd = -1};
        if (started == 0)
            t->w.listen_fd = srv->listen_fd; /* the first listener, from main */
        t->backend = b;
        t->latch = latch;
        rc = pthread_create(&t->thread, NULL, worker_main, t);
        if (rc != 0) {
            fprintf(stderr, CMD ": pthread_create: %s\n", strerror(rc));
            for (int i = started; i < n; i++)
                latch_report(latch, -rc);
            break;
        }
    }
    *err = latch_wait(latch);
    return started;
}

/* --- main ------------------------------------------------------------------------------------ */

static void print_start_line(const c10k_server_t *srv, const options_t *o)
{
    const c10k_config_t *c = &srv->cfg;
    bool v6 = strchr(c->bind, ':') != NULL;
    char cpus[64] = "any";
    size_t off = 0;

    for (int i = 0; i < c->ncpus && off < sizeof(cpus) - 8; i++)
        off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", i ? "," : "", c->cpus[i]);
    printf(CMD ": serving %s (%zu bytes, precomputed) at http://%s%s%s:%d/ with %s (workers=%d "
               "cpus=%s)\n",
           o->file, canned.body, v6 ? "[" : "", c->bind, v6 ? "]" : "", srv->port, o->backend->name,
           c10k_worker_count(srv), cpus);
    fflush(stdout);
}

/* Listen, start the workers, print the start line, serve until a signal.
 * Returns the exit status. */
static int serve(c10k_server_t *srv, const options_t *o)
{
    latch_t latch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int n = c10k_worker_count(srv), started, err, status = 0;
    const char *why = "";
    thread_t *ts;

    srv->listen_fd = c10k_listen_first(srv, &why);
    if (srv->listen_fd < 0) {
        fprintf(stderr, CMD ": cannot listen on %s port %d: %s: %s\n", srv->cfg.bind, srv->cfg.port,
                why, strerror(-srv->listen_fd));
        return EXIT_USAGE;
    }
    srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* Main only waits for signals; on a worker's CPU it stays inside --cpus. */
    c10k_pin_worker(srv, 0);
    ts = calloc((size_t)n, sizeof(*ts));
    if (srv->stop_fd < 0 || !ts) {
        fprintf(stderr, CMD ": %s\n", strerror(ts ? errno : ENOMEM));
        status = 1;
        goto out;
    }
    started = start_workers(srv, o->backend, ts, n, &latch, &err);
    if (err == 0) {
        print_start_line(srv, o);
        c10k_wait_for_stop(srv);
    } else {
        c10k_request_stop(srv);
        status = err == -EOPNOTSUPP ? EXIT_USAGE : 1;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(ts[i].thread, NULL);
        if (status == 0 && ts[i].err < 0)
            status = 1;
    }
out:
    free(ts);
    if (srv->stop_fd >= 0)
        close(srv->stop_fd);
    close(srv->listen_fd);
    return status;
}

int main(int argc, char **argv)
{
    static c10k_server_t srv = {.listen_fd = -1, .stop_fd = -1, .log_fd = -1};
    options_t o = {0};
    int rc;

    srv.cfg = (c10k_config_t){.bind = "127.0.0.1", .port = 8080, .backlog = 4096};
    rc = parse_args(argc, argv, &o, &srv.cfg);
    if (rc > 0)
        usage(stdout);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;
    if (o.backend->probe() < 0 || build_responses(o.file) < 0)
        return EXIT_USAGE;
    c10k_block_signals(); /* main takes SIGINT and SIGTERM: c10k_wait_for_stop() */
    c10k_raise_nofile();
    rc = serve(&srv, &o);
    canned_free();
    return rc;
}
