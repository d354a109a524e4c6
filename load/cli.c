/*
 * cli.c - the command line of `c10k load`: flags, the URL, --paths, and the
 * request bytes, built once so the loop only ever copies them to a socket.
 *
 * Every problem is a one-line message naming the flag or the line, and
 * c10k_load_parse_args() fails with -EINVAL (c10k then exits 2). Numbers
 * must parse whole: "10s", "1e", "nan" and out-of-range values are refused,
 * never truncated.
 */
#include "cli.h"
#include "gen.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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
    [OPT_JSON] = {"json", "FILE", "write the results as JSON to FILE (keys: load/load.c)"},
    [OPT_TIMEOUT] = {"timeout", "S",
                     "a request unanswered S s after its send is a timeout\n"
                     "error, and so is a connect taking longer (2)"},
    [OPT_MAX_LAG] = {"max-lag", "S",
                     "the run is invalid when the p99 of how late the generator\n"
                     "sent (after the intended time) or read (after the response\n"
                     "arrived) exceeds S (0.001)"},
    [OPT_HELP] = {"help", NULL, "this text"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

void c10k_load_usage(FILE *f)
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

/* --- values: common/cli.h's parsers, so every c10k command says it alike --- */

#define CMD "c10k load"

static int parse_real(const char *flag, const char *s, double min, double max, bool zero_ok,
                      double *out)
{
    return c10k_parse_real(CMD, flag, s, min, max, zero_ok, out);
}

static int parse_long(const char *flag, const char *s, long min, long max, long *out)
{
    return c10k_parse_uint(CMD, flag, s, min, max, out);
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
        return c10k_parse_cpus(CMD, v, cfg->cpus, C10K_LOAD_CPUS_MAX, &cfg->ncpus);
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

int c10k_load_parse_args(c10k_load_cfg_t *cfg, int argc, char **argv)
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

void c10k_load_cfg_free(c10k_load_cfg_t *cfg)
{
    free(cfg->reqbuf);
    free(cfg->req_off);
    free(cfg->req_len);
    cfg->reqbuf = NULL;
    cfg->req_off = NULL;
    cfg->req_len = NULL;
}
