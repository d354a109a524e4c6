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
 * Clocks are CLOCK_MONOTONIC, read on each epoll wakeup rather than per
 * request (loop.c): a response read in a batch is timed at the batch's
 * wakeup, the moment its bytes were known to be there.
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
 * When the generator itself is the bottleneck. A generator that falls
 * behind would otherwise pass its own delay off as the server's latency, so
 * each thread measures how late it is, on both sides: how late its
 * timer-driven sends go out against their intended time (a send on an idle
 * connection; a send that waited for a response is the server's delay), and
 * how long each response waited in the socket buffer before it was read
 * (against the kernel's arrival stamp, SO_TIMESTAMPNS). It also counts the
 * time it spends outside epoll_wait. If the p99 of either lag exceeds
 * --max-lag (1 ms: the latencies this suite compares are tens of
 * microseconds to milliseconds), or a thread was busy for >= 95% of the
 * window, or the process used >= 95% of its threads' CPU time, the run is
 * invalid: it says so on stderr and in the JSON ("valid": false,
 * "invalid_reason") and exits 1. A rate below the target that is the
 * server's doing (every connection busy, the generator on time) is a valid
 * result, and the summary says so in capitals.
 *
 * Responses are read with Content-Length framing (1xx skipped, 204/304
 * empty); chunked or read-until-close bodies are counted as read errors and
 * the connection is replaced, never guessed at. A Connection: close response
 * is followed by a reconnect. Errors are counted by kind: connect, read,
 * write, timeout (--timeout after the send) and status (>= 400; those
 * responses count as completed too).
 *
 * JSON (--json FILE): the keys of CONTRACTS.md section 1, and also
 * "below_target" (under 99% of --rate answered in the window), "scheduled"
 * (intended times from t0 to the end: fixed by the schedule and --seed),
 * "unfinished" and "unfinished_oldest_us", "goodput_rps" (responses below
 * 400 per second), "service_latency_mean_us" (from the actual send, not the
 * intended one: in_flight_mean = rate_achieved * service latency is Little's
 * law over sent-not-answered requests, while latency_mean_us also holds the
 * wait for a busy connection), "send_lag_us" and "read_lag_us" (samples,
 * p50, p99, max, mean), "busy_max", "client_cpu_util", "bytes_read",
 * "connected", "threads", "schedule", "seed".
 *
 * Files: load.c the run and its verdict, cli.c the command line, loop.c one
 * thread's epoll loop, report.c the summary and the JSON, hist.c the
 * histogram.
 */
#include "gen.h"
#include "load.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define EXIT_INVALID 1
#define EXIT_USAGE   2

#define BUSY_MAX 0.95 /* a thread busy this much of the window is saturated */
#define CPU_MAX  0.95 /* so is a process using this much of its threads' time */

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
    int rc = c10k_load_parse_args(&cfg, argc, argv), status = EXIT_INVALID;

    if (rc > 0)
        c10k_load_usage(stdout);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;
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
    else if (c10k_load_below_target(&cfg, &res))
        fprintf(stderr,
                "c10k load: below target: %.2f of %.2f req/s answered (the server's "
                "doing: see the summary)\n",
                (double)res.hist.total / cfg.duration_s, cfg.rate);
    if (cfg.json_path && write_json_file(&cfg, &res, &r) < 0)
        goto out;
    status = res.valid ? 0 : EXIT_INVALID;
out:
    c10k_load_result_free(&res);
    run_free(&r, cfg.threads);
    c10k_load_cfg_free(&cfg);
    return status;
}
