/*
 * main.c - the c10k command line.
 *
 *   c10k serve MODEL [flags]   run one concurrency model
 *   c10k models [--variants | --per-connection]   list the models built in
 *   c10k bench [flags]         the benchmark harness (bench/c10k_bench.py)
 *   c10k report [flags]        the report generator (bench/report.py)
 *   c10k load URL [flags]      the open-loop load generator (load/load.c)
 *   c10k agent                 the remote end of c10k bench --server-host and
 *                              --client-host, started over ssh (bench/harness/agent.py)
 *   c10k --version             the version, the models built in
 *
 * serve parses the common flags, hands the rest to the model's set_opt(),
 * opens the root and the first listener (so a busy port or a missing root is
 * reported before any model code runs), blocks the signals every model
 * handles itself, prints the start line and calls model->run().
 * Every usage error exits with status 2 and a message naming the problem.
 */
#include "load.h"
#include "cli.h"
#include "server.h"
#include "filecache.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define CMD        "c10k serve" /* prefix of its flag messages */

#ifndef C10K_VERSION
#define C10K_VERSION "0.1.0"
#endif

typedef enum {
    OPT_BIND,
    OPT_PORT,
    OPT_ROOT,
    OPT_WORKERS,
    OPT_CPUS,
    OPT_KEEPALIVE,
    OPT_HEADER,
    OPT_MAXREQ,
    OPT_LOG,
    OPT_STATS,
    OPT_GRACE,
    OPT_BACKLOG,
    OPT_LINGER_TIME,
    OPT_LINGER_TIMEOUT,
    OPT_MIME,
    OPT_FCACHE,
    OPT_FCACHE_VALID,
} common_opt_t;

static const struct {
    common_opt_t id;
    c10k_opt_t o;
} common_opts[] = {
    {OPT_BIND, {"bind", "ADDR", "address to listen on (default 127.0.0.1)"}},
    {OPT_PORT, {"port", "N", "TCP port; 0 lets the kernel pick one (default 8080)"}},
    {OPT_ROOT, {"root", "DIR", "document root (default .)"}},
    {OPT_WORKERS, {"workers", "N", "workers (threads, loops or processes; default: usable CPUs)"}},
    {OPT_CPUS, {"cpus", "LIST", "pin the server to these CPUs, e.g. 0 or 0-1,3"}},
    {OPT_KEEPALIVE, {"keepalive-timeout", "S", "close idle keep-alive connections after S s (5)"}},
    {OPT_HEADER, {"header-timeout", "S", "408 if a request head takes longer than S s (10)"}},
    {OPT_MAXREQ, {"max-requests", "N", "requests per connection, 0 = unlimited (default 0)"}},
    {OPT_LOG, {"access-log", "FILE", "append one line per response to FILE (default off)"}},
    {OPT_STATS, {"stats-file", "FILE", "write the model's counters to FILE as JSON (default off)"}},
    {OPT_GRACE, {"grace", "S", "on SIGTERM, let in-flight responses finish for S s (10)"}},
    {OPT_BACKLOG, {"backlog", "N", "listen(2) backlog (default 4096)"}},
    {OPT_LINGER_TIME,
     {"lingering-time", "S", "after a closing response, drain the client for at most S s (30)"}},
    {OPT_LINGER_TIMEOUT,
     {"lingering-timeout", "S", "... and close if it sends nothing for S s (5)"}},
    {OPT_MIME, {"mime-types", "FILE", "extension to type map (default " C10K_MIME_TYPES_FILE ")"}},
    {OPT_FCACHE,
     {"open-file-cache", "N",
      "keep N open files per worker, as nginx's open_file_cache (0 = off)"}},
    {OPT_FCACHE_VALID,
     {"open-file-cache-valid", "S", "... and check each one again after S s (60)"}},
};

/* --mime-types, or NULL: C10K_MIME_TYPES_FILE if it exists, else built-in. */
static const char *mime_types_file;

#define NCOMMON (sizeof(common_opts) / sizeof(common_opts[0]))

static void usage_top(FILE *f)
{
    fprintf(f, "usage: c10k COMMAND [ARGS]\n\n"
               "One static-file HTTP/1.1 handler on many concurrency models, measured.\n\n"
               "commands:\n"
               "  serve MODEL [flags]   serve files with one model (c10k serve --help)\n"
               "  models [--variants | --per-connection]\n"
               "                        list the models; --variants: the flag sets tests run;\n"
               "                        --per-connection: those with a thread or process per\n"
               "                        connection (c10k bench does not pass them --workers)\n"
               "  bench [flags]         benchmark every model against nginx (c10k bench --help)\n"
               "  report RUN_DIR        write report.md and report.html for a bench run\n"
               "  load URL [flags]      open-loop HTTP load at a fixed rate (c10k load --help)\n"
               "  agent                 the remote end of c10k bench --server-host/--client-host\n"
               "                        (c10k bench starts it over ssh)\n"
               "  help                  this text\n"
               "  --version             the version and the models built in\n");
}

static void print_opt(FILE *f, const c10k_opt_t *o)
{
    char lhs[64];

    snprintf(lhs, sizeof(lhs), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    fprintf(f, "  %-26s %s\n", lhs, o->help);
}

static void usage_serve(FILE *f)
{
    fprintf(f, "usage: c10k serve MODEL [flags]\n\ncommon flags:\n");
    for (size_t i = 0; i < NCOMMON; i++)
        print_opt(f, &common_opts[i].o);
    for (const c10k_model_t *const *m = c10k_models; *m; m++) {
        fprintf(f, "\n%s: %s\n", (*m)->name, (*m)->summary);
        for (const c10k_opt_t *o = (*m)->opts; o && o->name; o++)
            print_opt(f, o);
    }
    fprintf(f, "\nSIGINT/SIGTERM stop gracefully: no new connections, in-flight responses finish\n"
               "(within --grace), then exit 0. Times accept decimals (0.5).\n");
}

static int cmd_models(int argc, char **argv)
{
    bool variants = argc > 1 && strcmp(argv[1], "--variants") == 0;
    bool per_conn = argc > 1 && strcmp(argv[1], "--per-connection") == 0;

    if (argc > 2 || (argc > 1 && !variants && !per_conn)) {
        fprintf(stderr, "c10k models: unknown argument '%s'\n", argv[argc > 2 ? 2 : 1]);
        return EXIT_USAGE;
    }
    for (const c10k_model_t *const *m = c10k_models; *m; m++) {
        if (per_conn) {
            if ((*m)->per_connection)
                printf("%s\n", (*m)->name);
            continue;
        }
        if (!variants) {
            printf("%-10s %s\n", (*m)->name, (*m)->summary);
            continue;
        }
        printf("%s\n", (*m)->name);
        for (const char *const *v = (*m)->variants; v && *v; v++)
            printf("%s %s\n", (*m)->name, *v);
    }
    return 0;
}

static const c10k_model_t *find_model(const char *name)
{
    for (const c10k_model_t *const *m = c10k_models; *m; m++)
        if (strcmp((*m)->name, name) == 0)
            return *m;
    return NULL;
}

/* A numeric address only: a name would need a resolver, and "localhost" may
 * be 127.0.0.1, ::1 or both. Returns 0, or -EINVAL after saying why once. */
static int parse_bind(const char *v)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    const char *want = "not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0 or ::)";

    if (getaddrinfo(v, NULL, &hints, &ai) == 0) {
        freeaddrinfo(ai);
        return 0;
    }
    if (strcmp(v, "localhost") == 0)
        want = "not a numeric address; use 127.0.0.1 or ::1";
    fprintf(stderr, "%s: --bind '%s': %s\n", CMD, v, want);
    return -EINVAL;
}

static int set_common(c10k_config_t *cfg, common_opt_t id, const char *flag, const char *v)
{
    long n;
    int rc = 0;

    switch (id) {
    case OPT_BIND:
        rc = parse_bind(v);
        cfg->bind = v;
        break;
    case OPT_PORT:
        rc = c10k_parse_uint(CMD, flag, v, 0, 65535, &n);
        cfg->port = (int)n;
        break;
    case OPT_ROOT:
        cfg->root = v;
        break;
    case OPT_WORKERS:
        rc = c10k_parse_uint(CMD, flag, v, 1, 4096, &n);
        cfg->workers = (int)n;
        break;
    case OPT_CPUS:
        rc = c10k_parse_cpus(CMD, v, cfg->cpus, C10K_CPUS_MAX, &cfg->ncpus);
        break;
    case OPT_KEEPALIVE:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->keepalive_ms);
        break;
    case OPT_HEADER:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->header_ms);
        break;
    case OPT_MAXREQ:
        rc = c10k_parse_uint(CMD, flag, v, 0, UINT_MAX / 2, &n);
        cfg->max_requests = (unsigned)n;
        break;
    case OPT_LOG:
        cfg->access_log = v;
        break;
    case OPT_STATS:
        cfg->stats_file = v;
        break;
    case OPT_GRACE:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->grace_ms);
        break;
    case OPT_BACKLOG:
        rc = c10k_parse_uint(CMD, flag, v, 1, 65535, &n);
        cfg->backlog = (int)n;
        break;
    case OPT_LINGER_TIME:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->lingering_time_ms);
        break;
    case OPT_LINGER_TIMEOUT:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->lingering_timeout_ms);
        break;
    case OPT_MIME:
        mime_types_file = v;
        break;
    case OPT_FCACHE:
        rc = c10k_parse_uint(CMD, flag, v, 0, C10K_FCACHE_MAX, &n);
        cfg->fcache_max = (unsigned)n;
        break;
    case OPT_FCACHE_VALID:
        rc = c10k_parse_seconds(CMD, flag, v, &cfg->fcache_valid_ms);
        break;
    }
    return rc;
}

static const c10k_opt_t *find_opt(const c10k_opt_t *opts, const char *name, size_t len)
{
    for (const c10k_opt_t *o = opts; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

/* Apply one "--name[=value]" flag, taking the value from argv[i + 1] when
 * needed. Returns the number of argv entries used, or -EINVAL. */
static int parse_flag(c10k_config_t *cfg, const c10k_model_t *model, int argc, char **argv, int i)
{
    const char *arg = argv[i] + 2, *eq = strchr(arg, '='), *value = eq ? eq + 1 : NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const c10k_opt_t *o = NULL;
    int used = 1;
    size_t c;

    for (c = 0; c < NCOMMON; c++)
        if (strlen(common_opts[c].o.name) == len && strncmp(common_opts[c].o.name, arg, len) == 0)
            break;
    if (c < NCOMMON)
        o = &common_opts[c].o;
    else
        o = find_opt(model->opts, arg, len);
    if (!o) {
        fprintf(stderr, "c10k serve: unknown flag '%s' for model %s (see c10k serve --help)\n",
                argv[i], model->name);
        return -EINVAL;
    }
    if (o->arg && !value) {
        if (i + 1 >= argc) {
            fprintf(stderr, "c10k serve: --%s needs a value (%s)\n", o->name, o->arg);
            return -EINVAL;
        }
        value = argv[i + 1];
        used = 2;
    } else if (!o->arg && value) {
        fprintf(stderr, "c10k serve: --%s takes no value\n", o->name);
        return -EINVAL;
    }
    if (c < NCOMMON)
        return set_common(cfg, common_opts[c].id, o->name, value) < 0 ? -EINVAL : used;
    return model->set_opt(o->name, value) < 0 ? -EINVAL : used;
}

static void config_defaults(c10k_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->bind = "127.0.0.1";
    cfg->port = 8080;
    cfg->root = ".";
    cfg->keepalive_ms = 5000;
    cfg->header_ms = 10000;
    cfg->grace_ms = 10000;
    cfg->backlog = 4096;
    cfg->lingering_time_ms = C10K_LINGERING_TIME_MS;
    cfg->lingering_timeout_ms = C10K_LINGERING_TIMEOUT_MS;
    cfg->fcache_valid_ms = 60000; /* nginx's open_file_cache_valid default */
}

/* --- start-up ---------------------------------------------------------------- */

static int pin_process(const c10k_config_t *cfg)
{
    cpu_set_t set;

    if (cfg->ncpus == 0)
        return 0;
    CPU_ZERO(&set);
    for (int i = 0; i < cfg->ncpus; i++)
        CPU_SET(cfg->cpus[i], &set);
    return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

static void print_start_line(const c10k_server_t *srv)
{
    char model[256] = "", cpus[64] = "any", fcache[64] = "off";
    const c10k_config_t *c = &srv->cfg;
    bool v6 = strchr(c->bind, ':') != NULL;

    if (srv->model->describe)
        srv->model->describe(srv, model, sizeof(model));
    if (c->ncpus > 0) {
        size_t off = 0;
        for (int i = 0; i < c->ncpus && off < sizeof(cpus) - 8; i++)
            off += snprintf(cpus + off, sizeof(cpus) - off, "%s%d", i ? "," : "", c->cpus[i]);
    }
    if (c->fcache_max)
        snprintf(fcache, sizeof(fcache), "%u/%gs", c->fcache_max, c->fcache_valid_ms / 1000.0);
    printf("c10k: serving %s at http://%s%s%s:%d/ with %s (workers=%d cpus=%s keepalive=%gs "
           "header-timeout=%gs max-requests=%u access-log=%s mime-types=%s:%zu "
           "open-file-cache=%s%s%s)\n",
           srv->site.root_path, v6 ? "[" : "", c->bind, v6 ? "]" : "", srv->port, srv->model->name,
           c10k_worker_count(srv), cpus, c->keepalive_ms / 1000.0, c->header_ms / 1000.0,
           c->max_requests, c->access_log ? c->access_log : "off", c10k_mime_source(),
           c10k_mime_count(), fcache, model[0] ? " " : "", model);
    fflush(stdout);
}

/* The MIME table, read once before any worker exists. The default file may
 * be missing (the built-in table answers); a file named with --mime-types
 * must load. */
static int mime_open(void)
{
    const char *path = mime_types_file ? mime_types_file : C10K_MIME_TYPES_FILE;
    int rc = c10k_mime_load(path);

    if (rc == 0 || (!mime_types_file && rc == -ENOENT))
        return 0;
    if (!mime_types_file) {
        fprintf(stderr, "c10k serve: %s: %s; using the built-in MIME types\n", path, strerror(-rc));
        return 0;
    }
    fprintf(stderr, "c10k serve: --mime-types '%s': %s\n", path,
            rc == -EINVAL ? "no media type with an extension in it" : strerror(-rc));
    return rc;
}

static int server_open(c10k_server_t *srv)
{
    const char *why = "";
    int rc;

    rc = c10k_site_open(&srv->site, srv->cfg.root, srv->cfg.max_requests);
    if (rc < 0) {
        fprintf(stderr, "c10k serve: --root '%s': %s\n", srv->cfg.root, strerror(-rc));
        return rc;
    }
    srv->site.fcache_max = srv->cfg.fcache_max;
    srv->site.fcache_valid_ms = srv->cfg.fcache_valid_ms;
    rc = mime_open();
    if (rc < 0)
        return rc;
    if (srv->cfg.access_log) {
        srv->log_fd = open(srv->cfg.access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (srv->log_fd < 0) {
            rc = -errno;
            fprintf(stderr, "c10k serve: --access-log '%s': %s\n", srv->cfg.access_log,
                    strerror(errno));
            return rc;
        }
    }
    rc = pin_process(&srv->cfg);
    if (rc < 0) {
        fprintf(stderr, "c10k serve: --cpus: %s\n", strerror(-rc));
        return rc;
    }
    srv->listen_fd = c10k_listen_first(srv, &why);
    if (srv->listen_fd == -EADDRINUSE) {
        fprintf(stderr, "c10k serve: port %d on %s is in use: another process holds it\n",
                srv->cfg.port, srv->cfg.bind);
        return -EADDRINUSE;
    }
    if (srv->listen_fd < 0) {
        rc = srv->listen_fd;
        fprintf(stderr, "c10k serve: cannot listen on %s port %d: %s: %s\n", srv->cfg.bind,
                srv->cfg.port, why, strerror(-rc));
        return rc;
    }
    srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return srv->stop_fd < 0 ? -errno : 0;
}

static int cmd_serve(int argc, char **argv)
{
    static c10k_server_t srv = {.listen_fd = -1, .stop_fd = -1, .log_fd = -1};
    const c10k_model_t *model;
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_serve(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    model = find_model(argv[1]);
    if (!model) {
        fprintf(stderr, "c10k serve: unknown model '%s'; models:", argv[1]);
        for (const c10k_model_t *const *m = c10k_models; *m; m++)
            fprintf(stderr, " %s", (*m)->name);
        fprintf(stderr, "\n");
        return EXIT_USAGE;
    }
    config_defaults(&srv.cfg);
    srv.model = model;
    for (int i = 2; i < argc; i += rc) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_serve(stdout);
            return 0;
        }
        if (strncmp(argv[i], "--", 2) != 0) {
            fprintf(stderr, "c10k serve: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
        rc = parse_flag(&srv.cfg, model, argc, argv, i);
        if (rc < 0)
            return EXIT_USAGE;
    }
    if (model->probe && model->probe() < 0)
        return EXIT_USAGE;
    c10k_block_signals();
    c10k_raise_nofile();
    if (server_open(&srv) < 0)
        return EXIT_USAGE;
    if (srv.cfg.stats_file && (rc = c10k_stats_start(srv.cfg.stats_file, model->name)) < 0) {
        fprintf(stderr, "c10k serve: --stats-file '%s': %s\n", srv.cfg.stats_file, strerror(-rc));
        return EXIT_USAGE;
    }
    print_start_line(&srv);
    rc = model->run(&srv);
    if (c10k_stats_stop(rc == 0) < 0)
        fprintf(stderr, "c10k serve: --stats-file '%s': last write failed\n", srv.cfg.stats_file);
    if (rc == -EOPNOTSUPP)
        return EXIT_USAGE;
    if (rc < 0) {
        fprintf(stderr, "c10k serve: %s: %s\n", model->name, strerror(-rc));
        return 1;
    }
    return 0;
}

/* Where the bench/ scripts are, in this order:
 *   $C10K_HOME/bench               C10K_HOME names a checkout or an install
 *                                  prefix's share/c10k (and nothing else is tried)
 *   BINDIR/../bench                the binary is build/c10k in a checkout
 *   BINDIR/../share/c10k/bench     the binary is PREFIX/bin/c10k (make install)
 * path gets SCRIPT's full path; 0, or -ENOENT with every place tried in
 * tried. */
static int find_script(const char *script, char *path, size_t size, char *tried, size_t tsize)
{
    static const char *const below_bindir[] = {"../bench", "../share/c10k/bench"};
    const char *home = getenv("C10K_HOME");
    char self[PATH_MAX];
    ssize_t n;
    int len;

    tried[0] = '\0';
    if (home && home[0]) {
        len = snprintf(path, size, "%s/bench/%s", home, script);
        snprintf(tried, tsize, "%s (from C10K_HOME)", path);
        return len > 0 && (size_t)len < size && access(path, R_OK) == 0 ? 0 : -ENOENT;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return -errno;
    self[n] = '\0';
    *strrchr(self, '/') = '\0'; /* the binary's directory */
    for (size_t i = 0; i < sizeof(below_bindir) / sizeof(below_bindir[0]); i++) {
        size_t used = strlen(tried);

        len = snprintf(path, size, "%s/%s/%s", self, below_bindir[i], script);
        if (len > 0 && (size_t)len < size && access(path, R_OK) == 0)
            return 0;
        snprintf(tried + used, tsize - used, "%s%s", used ? ", " : "", path);
    }
    return -ENOENT;
}

/* bench, report and agent are Python (stdlib json, gnuplot for charts). */
static int cmd_python(const char *script, bool pass_bin, int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 64], tried[3 * PATH_MAX + 256];
    char *args[argc + 5];
    ssize_t n;
    int k = 0, rc;

    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        perror("c10k: /proc/self/exe");
        return 1;
    }
    self[n] = '\0';
    rc = find_script(script, path, sizeof(path), tried, sizeof(tried));
    if (rc < 0) {
        fprintf(stderr,
                "c10k: cannot find bench/%s (looked for %s); set C10K_HOME to the directory "
                "that holds bench/ (a checkout, or PREFIX/share/c10k after make install)\n",
                script, tried[0] ? tried : strerror(-rc));
        return 1;
    }
    args[k++] = "python3";
    args[k++] = path;
    if (pass_bin) {
        args[k++] = "--bin";
        args[k++] = self;
    }
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    execv("/usr/bin/python3", args);
    fprintf(stderr, "c10k: cannot run /usr/bin/python3 %s: %s (make deps installs python3)\n", path,
            strerror(errno));
    return 1;
}

static int cmd_version(void)
{
    unsigned long v = http_parser_version();

    printf("c10k %s\nmodels:", C10K_VERSION);
    for (const c10k_model_t *const *m = c10k_models; *m; m++)
        printf(" %s", (*m)->name);
    printf("\nhttp-parser %lu.%lu.%lu\n", (v >> 16) & 255, (v >> 8) & 255, v & 255);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";

    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "models") == 0)
        return cmd_models(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_python("c10k_bench.py", true, argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0)
        return cmd_python("report.py", false, argc - 1, argv + 1);
    if (strcmp(cmd, "agent") == 0) /* run over ssh by c10k bench, not by hand */
        return cmd_python("harness/agent.py", true, argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
        return cmd_version();
    if (strcmp(cmd, "load") == 0)
        return c10k_load_main(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage_top(argc > 1 ? stdout : stderr);
        return argc > 1 ? 0 : EXIT_USAGE;
    }
    fprintf(stderr, "c10k: unknown command '%s'\n", cmd);
    usage_top(stderr);
    return EXIT_USAGE;
}
