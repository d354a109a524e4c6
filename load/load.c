/*
 * load.c - `c10k load`: an open-loop HTTP/1.1 load generator.
 *
 *   c10k load http://127.0.0.1:8080/index.html --rate 2000 --connections 100 --duration 10
 *             [--warmup 1] [--threads 2 --cpus 1,2] [--paths FILE] [--poisson] [--json out.json]
 *
 * Why open-loop. wrk is closed-loop: a connection sends its next request
 * only once the previous response is in, so when the server stalls wrk stops
 * asking, and a 200 ms stall shows up in a handful of samples instead of in
 * every request that would have arrived during it (coordinated omission,
 * Gil Tene; Schroeder et al., "Open versus closed", NSDI '06). Here every
 * request has an intended send time on a schedule fixed before the run:
 * request seq of connection id is due at t0 + (id + seq * C) / R, which
 * spreads R requests a second evenly over the C connections (with --poisson,
 * each connection draws exponential gaps of mean C / R from its own seeded
 * stream, so the merged arrivals are a Poisson process of rate R, the same
 * for the same --seed whatever --threads is). The schedule does not wait for
 * the server.
 *
 * How latency is measured. Latency = the moment the last byte of the
 * response is read minus the request's intended send time (as wrk2 does).
 * A request due while its connection still waits for a response (keep-alive,
 * no pipelining) is sent as soon as that response is in, and the wait counts:
 * so the time a request spends queued behind a stall is in its latency.
 * Clocks are CLOCK_MONOTONIC, read once per epoll wakeup (loop.c).
 * Latencies go into a log-linear histogram (hist.h: <= 0.79% error from
 * 256 ns to 137 s), one per thread, merged at the end; --json writes its
 * non-empty buckets, whose boundaries never change, so runs merge too.
 *
 * Warm-up and window. The schedule starts at t0, once every connection is
 * up. Nothing is recorded in the first --warmup seconds; then for --duration
 * seconds every response read is recorded (latency from its intended time,
 * even if it was due during the warm-up), and the run stops. What the end
 * leaves unanswered (in flight, or due but queued behind a busy connection)
 * is reported as "unfinished" with the age of the oldest, never dropped
 * silently.
 *
 * When the generator itself is the bottleneck. Each thread records how late
 * its timer-driven sends go out against their intended time (a send on an
 * idle connection; a send that waited for a response is the server's delay,
 * not the generator's) and how much of the window it spent outside
 * epoll_wait. If the p99 of that lag exceeds --max-lag, or a thread was busy
 * for >= 95% of the window, or the process used >= 95% of its threads' CPU
 * time, the run is invalid: it says so on stderr and in the JSON
 * ("valid": false, "invalid_reason") and exits 1. A rate below the target
 * that is the server's doing (every connection busy) is valid, and the
 * summary says so loudly.
 *
 * Responses are read with Content-Length framing (1xx skipped, 204/304
 * empty); chunked or read-until-close bodies are counted as read errors and
 * the connection is replaced, never guessed at. A Connection: close response
 * is followed by a reconnect. Errors are counted by kind: connect, read,
 * write, timeout (--timeout after the send) and status (>= 400; those
 * responses count as completed too).
 *
 * Files: load.c the command line and the run, loop.c one thread's epoll
 * loop, report.c the summary and the JSON, hist.c the histogram.
 */
#include "gen.h"
#include "load.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define EXIT_INVALID 1
#define EXIT_USAGE   2

#define BUSY_MAX 0.95 /* a thread busy this much of the window is saturated */
#define CPU_MAX  0.95 /* so is a process using this much of its threads' time */

typedef enum {
    OPT_RATE,
    OPT_CONNECTIONS,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_THREADS,
    OPT_CPUS,
    OPT_PATHS,
    OPT_POISSON,
    OPT_SEED,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_MAX_LAG,
    OPT_HELP,
} opt_id_t;

static const struct {
    const char *name, *arg, *help;
} opts[] = {
    [OPT_RATE] = {"rate", "R", "requests per second over all connections (required)"},
    [OPT_CONNECTIONS] = {"connections", "C", "keep-alive connections (required)"},
    [OPT_DURATION] = {"duration", "S", "seconds measured, after the warm-up (required)"},
    [OPT_WARMUP] = {"warmup", "S", "seconds the schedule runs first, recorded nowhere (0)"},
    [OPT_THREADS] = {"threads", "N",
                     "threads, each with its own epoll loop, connections and\n"
                     "histogram (default: the number of --cpus, else 1)"},
    [OPT_CPUS] = {"cpus", "LIST",
                  "pin thread i to the i-th CPU of LIST, e.g. 1 or 0-1,3\n"
                  "(default: not pinned)"},
    [OPT_PATHS] = {"paths", "FILE",
                   "request these paths, one per line, cycling in file\n"
                   "order (request seq of connection id takes line\n"
                   "(id + seq * C) mod lines); default: the URL's path"},
    [OPT_POISSON] = {"poisson", NULL, "Poisson arrivals of rate R instead of the fixed schedule"},
    [OPT_SEED] = {"seed", "N", "seed of the --poisson streams (1): same seed, same times"},
    [OPT_JSON] = {"json", "FILE", "write the results as JSON to FILE"},
    [OPT_TIMEOUT] = {"timeout", "S",
                     "a request unanswered S s after its send is a timeout\n"
                     "error, and so is a connect taking longer (2)"},
    [OPT_MAX_LAG] = {"max-lag", "S",
                     "the run is invalid when the p99 of how late timer-driven\n"
                     "sends go out exceeds S (0.001)"},
    [OPT_HELP] = {"help", NULL, "this text"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: c10k load URL --rate R --connections C --duration S [flags]\n\n"
               "Open-loop HTTP/1.1 load: requests go out on a schedule fixed in advance,\n"
               "whatever the server does, and latency runs from each request's intended\n"
               "send time to the last byte of its response, so waiting behind a stall\n"
               "counts. URL is http://HOST[:PORT]/PATH (HOST: a name, an IPv4 address or\n"
               "[IPv6]).\n\nflags:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char lhs[32];
        const char *h = opts[i].help, *nl;
        snprintf(lhs, sizeof(lhs), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-18s ", lhs);
        while ((nl = strchr(h, '\n'))) {
            fprintf(f, "%.*s\n  %-18s ", (int)(nl - h), h, "");
            h = nl + 1;
        }
        fprintf(f, "%s\n", h);
    }
    fprintf(f, "\nExit status: 0 for a valid run; 1 when the generator could not keep to its\n"
               "schedule (its own CPU, or another process, held it back: the figures would be\n"
               "its own, not the server's) or could not connect at all; 2 for a usage error.\n"
               "A rate below --rate because the server could not keep up is a valid result.\n"
               "Times accept decimals (0.5).\n");
}

/* --- values: each returns 0 or -EINVAL after printing why ----------------- */

static int bad_value(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "c10k load: --%s '%s': %s\n", flag, value, want);
    return -EINVAL;
}

static int parse_long(const char *flag, const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        char want[80];
        snprintf(want, sizeof(want), "want a whole number from %ld to %ld", min, max);
        return bad_value(flag, s, want);
    }
    *out = v;
    return 0;
}

/* A finite decimal in (min, max], or [0, max] when zero_ok. */
static int parse_real(const char *flag, const char *s, double min, double max, bool zero_ok,
                      double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v > max || v < 0 || (v == 0 && !zero_ok) ||
        (v > 0 && v < min)) {
        char want[96];
        snprintf(want, sizeof(want), "want a number %s %g and at most %g", zero_ok ? "from" : "of",
                 zero_ok ? 0.0 : min, max);
        return bad_value(flag, s, want);
    }
    *out = v;
    return 0;
}

static int parse_cpus(const char *s, c10k_load_cfg_t *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    const char *p = s;

    cfg->ncpus = 0;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || *p == '-')
            goto bad;
        if (*end == '-') {
            p = end + 1;
            hi = strtol(p, &end, 10);
            if (end == p)
                goto bad;
        }
        if (lo < 0 || hi < lo || hi >= ncpu)
            goto bad;
        for (long c = lo; c <= hi; c++) {
            if (cfg->ncpus == C10K_LOAD_CPUS_MAX)
                goto bad;
            cfg->cpus[cfg->ncpus++] = (int)c;
        }
        p = end;
        if (*p == ',' && p[1])
            p++;
        else if (*p)
            goto bad;
    }
    if (cfg->ncpus > 0)
        return 0;
bad:
    return bad_value("cpus", s, "want CPU numbers that exist here, e.g. 1 or 0-1,3");
}

static int set_opt(c10k_load_cfg_t *cfg, opt_id_t id, const char *v)
{
    const char *flag = opts[id].name;
    long n;
    int rc = 0;

    switch (id) {
    case OPT_RATE:
        return parse_real(flag, v, 0.01, 1e9, false, &cfg->rate);
    case OPT_CONNECTIONS:
        rc = parse_long(flag, v, 1, 1000000, &n);
        cfg->connections = n;
        return rc;
    case OPT_DURATION:
        return parse_real(flag, v, 0.001, 3600, false, &cfg->duration_s);
    case OPT_WARMUP:
        return parse_real(flag, v, 0, 3600, true, &cfg->warmup_s);
    case OPT_THREADS:
        rc = parse_long(flag, v, 1, 1024, &n);
        cfg->threads = (int)n;
        return rc;
    case OPT_CPUS:
        return parse_cpus(v, cfg);
    case OPT_PATHS:
        cfg->paths_file = v;
        return 0;
    case OPT_POISSON:
        cfg->poisson = true;
        return 0;
    case OPT_SEED:
        rc = parse_long(flag, v, 0, LONG_MAX, &n);
        cfg->seed = (uint64_t)n;
        return rc;
    case OPT_JSON:
        cfg->json_path = v;
        return 0;
    case OPT_TIMEOUT:
        return parse_real(flag, v, 0.001, 3600, false, &cfg->timeout_s);
    case OPT_MAX_LAG:
        return parse_real(flag, v, 0.000001, 3600, false, &cfg->max_lag_s);
    case OPT_HELP:
        break;
    }
    return 0;
}

static int find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* One "--name[=value]" flag, its value possibly in argv[i + 1]. Returns the
 * argv entries used, or -EINVAL. */
static int parse_flag(c10k_load_cfg_t *cfg, int argc, char **argv, int i, bool *seen)
{
    const char *arg = argv[i] + 2, *eq = strchr(arg, '='), *value = eq ? eq + 1 : NULL;
    int id = find_opt(arg, eq ? (size_t)(eq - arg) : strlen(arg)), used = 1;

    if (id < 0) {
        fprintf(stderr, "c10k load: unknown flag '%s' (see c10k load --help)\n", argv[i]);
        return -EINVAL;
    }
    if (opts[id].arg && !value) {
        if (i + 1 >= argc) {
            fprintf(stderr, "c10k load: --%s needs a value (%s)\n", opts[id].name, opts[id].arg);
            return -EINVAL;
        }
        value = argv[i + 1];
        used = 2;
    } else if (!opts[id].arg && value) {
        fprintf(stderr, "c10k load: --%s takes no value\n", opts[id].name);
        return -EINVAL;
    }
    seen[id] = true;
    return set_opt(cfg, (opt_id_t)id, value) < 0 ? -EINVAL : used;
}

/* --- the target: URL, address, request bytes ------------------------------- */

static bool path_ok(const char *p, size_t len)
{
    if (len == 0 || p[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f || p[i] == '#')
            return false;
    return true;
}

typedef struct {
    char host[256];
    char port[8];
    char authority[300];
    const char *path;
} url_t;

/* http://HOST[:PORT][/PATH]. Returns 0 or -EINVAL after printing why. */
static int parse_url(const char *url, url_t *u)
{
    const char *p = url, *host, *hend, *auth_end;
    size_t hlen;

    if (strncasecmp(p, "http://", 7) != 0)
        goto bad;
    p += 7;
    host = p;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend)
            goto bad;
        host = p + 1;
        p = hend + 1;
    } else {
        p += strcspn(p, ":/");
        hend = p;
    }
    hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof(u->host))
        goto bad;
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    snprintf(u->port, sizeof(u->port), "80");
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || end - (p + 1) > 5 || port < 1 || port > 65535 || (*end && *end != '/'))
            goto bad;
        snprintf(u->port, sizeof(u->port), "%ld", port);
        p = end;
    }
    if (*p && *p != '/')
        goto bad;
    auth_end = p;
    if ((size_t)(auth_end - (url + 7)) >= sizeof(u->authority))
        goto bad;
    snprintf(u->authority, sizeof(u->authority), "%.*s", (int)(auth_end - (url + 7)), url + 7);
    u->path = *p ? p : "/";
    if (!path_ok(u->path, strlen(u->path)))
        goto bad;
    return 0;
bad:
    fprintf(stderr,
            "c10k load: URL '%s': want http://HOST[:PORT]/PATH (HOST a name, an IPv4 "
            "address or [IPv6]; no spaces or #)\n",
            url);
    return -EINVAL;
}

static int resolve(const url_t *u, c10k_load_cfg_t *cfg)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &ai);

    if (rc != 0) {
        fprintf(stderr, "c10k load: cannot resolve '%s': %s\n", u->host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(&cfg->addr, ai->ai_addr, ai->ai_addrlen);
    cfg->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

typedef struct {
    size_t cap_req;   /* entries allocated in req_off / req_len */
    size_t cap_bytes; /* bytes allocated in reqbuf */
    size_t used;      /* bytes used in reqbuf */
} table_t;

static int table_grow(c10k_load_cfg_t *cfg, table_t *tb, size_t need)
{
    if (cfg->nreq == tb->cap_req) {
        size_t n = tb->cap_req ? 2 * tb->cap_req : 16;
        size_t *o = realloc(cfg->req_off, n * sizeof(*o));
        if (!o)
            return -ENOMEM;
        cfg->req_off = o;
        uint32_t *l = realloc(cfg->req_len, n * sizeof(*l));
        if (!l)
            return -ENOMEM;
        cfg->req_len = l;
        tb->cap_req = n;
    }
    if (tb->used + need > tb->cap_bytes) {
        size_t n = 2 * (tb->used + need);
        char *b = realloc(cfg->reqbuf, n);
        if (!b)
            return -ENOMEM;
        cfg->reqbuf = b;
        tb->cap_bytes = n;
    }
    return 0;
}

/* Append one GET request for path to the request table. */
static int add_request(c10k_load_cfg_t *cfg, table_t *tb, const url_t *u, const char *path,
                       size_t len)
{
    size_t need = len + strlen(u->authority) + 32;
    int n;

    if (table_grow(cfg, tb, need) < 0) {
        fprintf(stderr, "c10k load: out of memory for the requests\n");
        return -ENOMEM;
    }
    n = snprintf(cfg->reqbuf + tb->used, need, "GET %.*s HTTP/1.1\r\nHost: %s\r\n\r\n", (int)len,
                 path, u->authority);
    cfg->req_off[cfg->nreq] = tb->used;
    cfg->req_len[cfg->nreq] = (uint32_t)n;
    cfg->nreq++;
    tb->used += (size_t)n;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (n + 4096 > cap) {
            char *b = realloc(buf, cap = 2 * cap + 8192);
            if (!b) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        buf = NULL;
        errno = EIO;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* Check one line of --paths and add its request. */
static int add_path_line(c10k_load_cfg_t *cfg, table_t *tb, const url_t *u, const char *p, size_t n,
                         size_t line)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return 0;
    if (!path_ok(p, n) || n > 8192) {
        fprintf(stderr,
                "c10k load: --paths '%s' line %zu: want a path starting with '/', at "
                "most 8192 bytes, no spaces, control characters or #\n",
                cfg->paths_file, line);
        return -EINVAL;
    }
    if (cfg->nreq >= UINT32_MAX / 2) {
        fprintf(stderr, "c10k load: --paths '%s': more than %u paths\n", cfg->paths_file,
                UINT32_MAX / 2);
        return -EINVAL;
    }
    return add_request(cfg, tb, u, p, n);
}

/* One request per non-empty line of --paths, in file order. */
static int load_paths(c10k_load_cfg_t *cfg, const url_t *u, table_t *tb)
{
    size_t len, line = 0;
    char *text = read_file(cfg->paths_file, &len), *p, *end;
    int rc = 0;

    if (!text) {
        fprintf(stderr, "c10k load: --paths '%s': %s\n", cfg->paths_file, strerror(errno));
        return -EINVAL;
    }
    end = text + len;
    for (p = text; p < end && rc == 0;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        rc = add_path_line(cfg, tb, u, p, (size_t)(eol - p), ++line);
        p = eol + 1;
    }
    free(text);
    if (rc == 0 && cfg->nreq == 0) {
        fprintf(stderr, "c10k load: --paths '%s': no paths in it\n", cfg->paths_file);
        rc = -EINVAL;
    }
    return rc;
}

static int build_requests(c10k_load_cfg_t *cfg, const url_t *u)
{
    table_t tb = {0};

    if (cfg->paths_file)
        return load_paths(cfg, u, &tb);
    return add_request(cfg, &tb, u, u->path, strlen(u->path));
}

/* --- the command line as a whole -------------------------------------------- */

static void cfg_defaults(c10k_load_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->timeout_s = 2;
    cfg->max_lag_s = 0.001;
    cfg->seed = 1;
}

static int check_required(const c10k_load_cfg_t *cfg, const bool *seen)
{
    static const opt_id_t required[] = {OPT_RATE, OPT_CONNECTIONS, OPT_DURATION};

    if (!cfg->url) {
        fprintf(stderr, "c10k load: no URL (usage: c10k load URL --rate R --connections C "
                        "--duration S; see c10k load --help)\n");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!seen[required[i]]) {
            fprintf(stderr, "c10k load: --%s is required (see c10k load --help)\n",
                    opts[required[i]].name);
            return -EINVAL;
        }
    }
    if (cfg->threads > cfg->connections) {
        fprintf(stderr, "c10k load: --threads %d is more than --connections %ld\n", cfg->threads,
                cfg->connections);
        return -EINVAL;
    }
    return 0;
}

/* Returns 0, 1 after --help, or -EINVAL after printing why. */
static int parse_args(c10k_load_cfg_t *cfg, int argc, char **argv)
{
    bool seen[NOPTS] = {false};
    url_t u;
    int rc;

    cfg_defaults(cfg);
    for (int i = 1; i < argc; i += rc) {
        rc = 1;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
        if (strncmp(argv[i], "--", 2) == 0) {
            rc = parse_flag(cfg, argc, argv, i, seen);
            if (rc < 0)
                return -EINVAL;
        } else if (!cfg->url) {
            cfg->url = argv[i];
        } else {
            fprintf(stderr, "c10k load: unexpected argument '%s' (one URL only)\n", argv[i]);
            return -EINVAL;
        }
    }
    if (!seen[OPT_THREADS])
        cfg->threads = cfg->ncpus > 0 ? cfg->ncpus : 1;
    if (check_required(cfg, seen) < 0 || parse_url(cfg->url, &u) < 0 || resolve(&u, cfg) < 0)
        return -EINVAL;
    return build_requests(cfg, &u) < 0 ? -EINVAL : 0;
}

/* --- the run ------------------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * C10K_LOAD_NS + ts.tv_nsec;
}

static void sleep_until(int64_t when)
{
    struct timespec ts = {.tv_sec = when / C10K_LOAD_NS, .tv_nsec = when % C10K_LOAD_NS};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void raise_nofile(long need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef struct {
    c10k_load_thread_t *t;
    c10k_load_conn_t *conns;
    pthread_barrier_t ready, go;
    c10k_load_clock_t clock;
    int started;
} run_t;

/* Connection id goes to thread id % threads, so every thread's connections
 * are spread over the whole schedule. */
static int run_alloc(run_t *r, const c10k_load_cfg_t *cfg)
{
    size_t nsecs = (size_t)ceil(cfg->duration_s), next = 0;

    r->t = calloc((size_t)cfg->threads, sizeof(*r->t));
    r->conns = calloc((size_t)cfg->connections, sizeof(*r->conns));
    if (!r->t || !r->conns)
        return -ENOMEM;
    for (int i = 0; i < cfg->threads; i++) {
        c10k_load_thread_t *t = &r->t[i];
        t->cfg = cfg;
        t->clock = &r->clock;
        t->ready = &r->ready;
        t->go = &r->go;
        t->id = i;
        t->ep = -1;
        t->conns = r->conns + next;
        for (long c = i; c < cfg->connections; c += cfg->threads) {
            t->conns[t->nconns] = (c10k_load_conn_t){.fd = -1, .id = (uint32_t)c, .heap_pos = -1};
            t->nconns++;
        }
        next += t->nconns;
        t->nsecs = nsecs;
        t->secs = calloc(nsecs, sizeof(*t->secs));
        if (!t->secs)
            return -ENOMEM;
    }
    return 0;
}

static void run_free(run_t *r, int nthreads)
{
    for (int i = 0; r->t && i < nthreads; i++) {
        free(r->t[i].secs);
        free(r->t[i].pairs);
    }
    free(r->t);
    free(r->conns);
}

/* Start the threads, let them connect, set the clock, sample the CPU at the
 * window's edges, and join them. Returns 0 or a negative errno. */
static int run_threads(run_t *r, const c10k_load_cfg_t *cfg, c10k_load_result_t *res)
{
    size_t connected = 0;
    double cpu0;

    pthread_barrier_init(&r->ready, NULL, (unsigned)cfg->threads + 1);
    pthread_barrier_init(&r->go, NULL, (unsigned)cfg->threads + 1);
    for (r->started = 0; r->started < cfg->threads; r->started++) {
        int rc =
            pthread_create(&r->t[r->started].tid, NULL, c10k_load_thread_main, &r->t[r->started]);
        if (rc != 0) {
            fprintf(stderr, "c10k load: cannot start thread: %s\n", strerror(rc));
            exit(EXIT_INVALID); /* the others are parked on a barrier sized for all */
        }
    }
    pthread_barrier_wait(&r->ready);
    for (int i = 0; i < cfg->threads; i++)
        connected += r->t[i].err == 0 ? r->t[i].connected : 0;
    r->clock.abort = connected == 0;
    r->clock.t0 = mono_ns() + 10 * 1000 * 1000; /* every thread is waiting: start together */
    r->clock.w0 = r->clock.t0 + (int64_t)(cfg->warmup_s * C10K_LOAD_NS);
    r->clock.wend = r->clock.w0 + (int64_t)(cfg->duration_s * C10K_LOAD_NS);
    pthread_barrier_wait(&r->go);
    if (!r->clock.abort) {
        sleep_until(r->clock.w0);
        cpu0 = cpu_seconds();
        sleep_until(r->clock.wend);
        res->client_cpu = cpu_seconds() - cpu0;
    }
    for (int i = 0; i < cfg->threads; i++)
        pthread_join(r->t[i].tid, NULL);
    pthread_barrier_destroy(&r->ready);
    pthread_barrier_destroy(&r->go);
    res->connected = connected;
    return 0;
}

/* --- the verdict ---------------------------------------------------------------- */

/* Valid, or invalid with the first reason found. */
static void judge(c10k_load_result_t *res, const c10k_load_cfg_t *cfg, const run_t *r)
{
    double lag_p99 = (double)c10k_hist_percentile(&res->lag, 99) / 1e9;
    double read_p99 = (double)c10k_hist_percentile(&res->read_lag, 99) / 1e9;
    double cpu = res->client_cpu / (cfg->duration_s * cfg->threads);
    char *why = res->invalid_reason;
    size_t cap = sizeof(res->invalid_reason);
    const char *conn_err = res->first_error[C10K_LOAD_ERR_CONNECT];

    res->valid = false;
    for (int i = 0; i < cfg->threads; i++) {
        if (r->t[i].err) {
            snprintf(why, cap, "thread %d failed: %s", i, strerror(-r->t[i].err));
            return;
        }
    }
    if (res->connected == 0) {
        snprintf(why, cap, "could not connect to %s: %s", cfg->url,
                 conn_err ? conn_err : "no connection came up");
        return;
    }
    if (res->lag.total > 0 && lag_p99 > cfg->max_lag_s)
        snprintf(why, cap,
                 "the generator could not keep to its schedule: the p99 of how late its sends "
                 "went out was %.3g ms (--max-lag %.3g ms)",
                 lag_p99 * 1e3, cfg->max_lag_s * 1e3);
    else if (res->read_lag.total > 0 && read_p99 > cfg->max_lag_s)
        snprintf(why, cap,
                 "the generator was held back: the p99 of how long responses waited in its "
                 "socket buffers before it read them was %.3g ms (--max-lag %.3g ms)",
                 read_p99 * 1e3, cfg->max_lag_s * 1e3);
    else if (res->busy_max >= BUSY_MAX)
        snprintf(why, cap, "the generator was saturated: thread %d was busy %.0f%% of the window",
                 res->busy_thread, res->busy_max * 100);
    else if (cpu >= CPU_MAX)
        snprintf(why, cap, "the generator was saturated: it used %.0f%% of %d thread(s)' CPU time",
                 cpu * 100, cfg->threads);
    else
        res->valid = true;
}

static int write_json_file(const c10k_load_cfg_t *cfg, const c10k_load_result_t *res, run_t *r)
{
    FILE *f = fopen(cfg->json_path, "w");
    int rc;

    if (!f) {
        fprintf(stderr, "c10k load: --json '%s': %s\n", cfg->json_path, strerror(errno));
        return -errno;
    }
    rc = c10k_load_write_json(f, cfg, res, r->t, cfg->threads);
    if (fclose(f) != 0 || rc < 0) {
        fprintf(stderr, "c10k load: --json '%s': write failed\n", cfg->json_path);
        return -EIO;
    }
    return 0;
}

/* --json is checked before the run, so a typo costs no run. */
static int json_writable(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        fprintf(stderr, "c10k load: --json '%s': %s\n", path, strerror(errno));
        return -EINVAL;
    }
    close(fd);
    return 0;
}

int c10k_load_main(int argc, char **argv)
{
    static c10k_load_cfg_t cfg;
    c10k_load_result_t res = {0};
    run_t r = {0};
    int rc = parse_args(&cfg, argc, argv), status = EXIT_INVALID;

    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : EXIT_USAGE;
    }
    if (cfg.json_path && json_writable(cfg.json_path) < 0)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg.connections);
    if (run_alloc(&r, &cfg) < 0 || run_threads(&r, &cfg, &res) < 0 ||
        c10k_load_merge(&res, r.t, cfg.threads) < 0) {
        fprintf(stderr, "c10k load: out of memory\n");
        goto out;
    }
    judge(&res, &cfg, &r);
    c10k_load_print_summary(stdout, &cfg, &res);
    if (!res.valid)
        fprintf(stderr, "c10k load: INVALID RUN: %s\n", res.invalid_reason);
    if (cfg.json_path && write_json_file(&cfg, &res, &r) < 0)
        goto out;
    status = res.valid ? 0 : EXIT_INVALID;
out:
    c10k_load_result_free(&res);
    run_free(&r, cfg.threads);
    free(cfg.reqbuf);
    free(cfg.req_off);
    free(cfg.req_len);
    return status;
}
