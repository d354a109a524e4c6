/*
 * report.c - `c10k load`'s results: the threads' measurements merged, the
 * wrk-like summary, and the JSON of CONTRACTS.md section 1.
 *
 * Latencies are printed in the JSON as microseconds with three decimals, so
 * a nanosecond bucket bound is written exactly: two runs' "histogram" lists
 * merge by equal "upper_us" keys (hist.h's bounds are fixed).
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double window_s(const c10k_load_cfg_t *cfg)
{
    return cfg->duration_s;
}

/* --- merging ------------------------------------------------------------------ */

static void merge_thread(c10k_load_result_t *r, const c10k_load_thread_t *t)
{
    double window = (double)(t->wend - t->w0);

    c10k_hist_merge(&r->hist, &t->hist);
    c10k_hist_merge(&r->lag, &t->lag);
    c10k_hist_merge(&r->read_lag, &t->read_lag);
    for (int k = 0; k < C10K_LOAD_ERR_KINDS; k++) {
        r->errors[k] += t->errors[k];
        r->errors_total += t->errors[k];
        if (!r->first_error[k] && t->first_error[k][0])
            r->first_error[k] = t->first_error[k];
    }
    r->bytes += t->bytes;
    r->unfinished += t->unfinished;
    r->scheduled += t->scheduled;
    if (t->unfinished && t->oldest_due < r->oldest_due)
        r->oldest_due = t->oldest_due;
    r->service_ns += t->service_ns;
    r->inflight_ns += t->inflight_ns;
    if (window > 0 && (double)t->busy_ns / window > r->busy_max) {
        r->busy_max = (double)t->busy_ns / window;
        r->busy_thread = t->id;
    }
}

/* Second s over all threads: counts, and the p99 from the stored pairs. */
static void merge_second(c10k_load_result_t *r, c10k_load_thread_t *t, int nthreads, size_t s,
                         c10k_hist_t *scratch)
{
    c10k_hist_init(scratch);
    for (int i = 0; i < nthreads; i++) {
        const c10k_load_sec_t *ts = &t[i].secs[s];
        r->secs[s].completed += ts->completed;
        r->secs[s].errors += ts->errors;
        for (size_t k = ts->off; k < ts->off + ts->n; k++)
            c10k_hist_record_n(scratch, t[i].pairs[k].upper_ns, t[i].pairs[k].count);
    }
    r->sec_p99_ns[s] = c10k_hist_percentile(scratch, 99);
}

int c10k_load_merge(c10k_load_result_t *r, c10k_load_thread_t *t, int nthreads)
{
    c10k_hist_t *scratch = malloc(sizeof(*scratch));

    c10k_hist_init(&r->hist);
    c10k_hist_init(&r->lag);
    c10k_hist_init(&r->read_lag);
    r->oldest_due = INT64_MAX;
    r->wend = t[0].wend;
    r->nsecs = t[0].nsecs;
    r->secs = calloc(r->nsecs, sizeof(*r->secs));
    r->sec_p99_ns = calloc(r->nsecs, sizeof(*r->sec_p99_ns));
    if (!scratch || !r->secs || !r->sec_p99_ns) {
        free(scratch);
        return -ENOMEM;
    }
    for (int i = 0; i < nthreads; i++)
        merge_thread(r, &t[i]);
    for (size_t s = 0; s < r->nsecs; s++)
        merge_second(r, t, nthreads, s, scratch);
    free(scratch);
    return 0;
}

void c10k_load_result_free(c10k_load_result_t *r)
{
    free(r->secs);
    free(r->sec_p99_ns);
    r->secs = NULL;
    r->sec_p99_ns = NULL;
}

bool c10k_load_below_target(const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    return (double)r->hist.total / window_s(cfg) < 0.99 * cfg->rate;
}

/* --- the summary ------------------------------------------------------------------ */

/* A latency the way wrk prints one: 85.00us, 1.23ms, 2.00s. */
static const char *fmt_ns(char *buf, size_t cap, double ns)
{
    if (ns < 1e6)
        snprintf(buf, cap, "%.2fus", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, cap, "%.2fms", ns / 1e6);
    else
        snprintf(buf, cap, "%.2fs", ns / 1e9);
    return buf;
}

static const char *fmt_bytes(char *buf, size_t cap, double b)
{
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;

    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.2f%s", b, unit[u]);
    return buf;
}

static void print_latency(FILE *out, const c10k_load_result_t *r)
{
    static const double pct[] = {50, 90, 99, 99.9, 99.99, 100};
    char b[32];

    fprintf(out,
            "  Latency from the intended send time:\n"
            "  %10s %10s %10s %10s %10s %10s %10s\n  ",
            "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean");
    for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++)
        fprintf(out, " %10s", fmt_ns(b, sizeof(b), (double)c10k_hist_percentile(&r->hist, pct[i])));
    fprintf(out, " %10s\n", fmt_ns(b, sizeof(b), c10k_hist_mean(&r->hist)));
}

static void print_errors(FILE *out, const c10k_load_result_t *r)
{
    if (r->errors_total == 0) {
        fprintf(out, "  Errors: none\n");
        return;
    }
    fprintf(out, "  Errors:");
    for (int k = 0; k < C10K_LOAD_ERR_KINDS; k++)
        fprintf(out, " %s %" PRIu64 "%s", c10k_load_err_names[k], r->errors[k],
                k + 1 < C10K_LOAD_ERR_KINDS ? "," : "\n");
    for (int k = 0; k < C10K_LOAD_ERR_KINDS; k++)
        if (r->errors[k] && r->first_error[k])
            fprintf(out, "    first %s error: %s\n", c10k_load_err_names[k], r->first_error[k]);
}

static void print_generator(FILE *out, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    char a[32], b[32];

    fprintf(out,
            "Generator: %.2fs CPU in the window (%.1f%% of %d thread%s), busiest thread %.1f%%",
            r->client_cpu, 100 * r->client_cpu / (window_s(cfg) * cfg->threads), cfg->threads,
            cfg->threads == 1 ? "" : "s", 100 * r->busy_max);
    if (r->lag.total)
        fprintf(out, ",\n  send lag p99 %s max %s",
                fmt_ns(a, sizeof(a), (double)c10k_hist_percentile(&r->lag, 99)),
                fmt_ns(b, sizeof(b), (double)r->lag.max_ns));
    if (r->read_lag.total)
        fprintf(out, "%s read lag p99 %s max %s", r->lag.total ? "," : ",\n ",
                fmt_ns(a, sizeof(a), (double)c10k_hist_percentile(&r->read_lag, 99)),
                fmt_ns(b, sizeof(b), (double)r->read_lag.max_ns));
    fprintf(out, "\nRun: %s\n", r->valid ? "valid" : "INVALID");
}

/* Below the target through the server's doing is a valid result, but it is
 * said out loud, with what explains it, never left for the reader to notice. */
static void print_shortfall(FILE *out, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    double achieved = (double)r->hist.total / window_s(cfg);
    double busy = r->inflight_ns / (window_s(cfg) * 1e9) / (double)cfg->connections;
    uint64_t failed = r->errors_total - r->errors[C10K_LOAD_ERR_STATUS];

    if (!r->valid || !c10k_load_below_target(cfg, r))
        return;
    fprintf(out, "  BELOW TARGET: %.2f of %.2f req/s. ", achieved, cfg->rate);
    if (failed > 0)
        fprintf(out, "%" PRIu64 " requests or connects failed (see Errors). ", failed);
    fprintf(out,
            "Connections were waiting for responses %.0f%% of the time%s.\n"
            "  The generator kept its schedule: the server did not keep up, and the latencies\n"
            "  include the wait for a busy or reconnecting connection.\n",
            100 * busy, busy > 0.9 ? " (more connections may help)" : "");
}

void c10k_load_print_summary(FILE *out, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    char a[32], b[32];
    double win = window_s(cfg);

    fprintf(out, "Running %gs open-loop test @ %s (warm-up %gs)\n", win, cfg->url, cfg->warmup_s);
    fprintf(out, "  %d thread%s and %ld connections, %g req/s %s\n", cfg->threads,
            cfg->threads == 1 ? "" : "s", cfg->connections, cfg->rate,
            cfg->poisson ? "as Poisson arrivals" : "on a fixed schedule");
    if (r->hist.total)
        print_latency(out, r);
    fprintf(out, "  %" PRIu64 " requests in %.2fs, %s read\n", r->hist.total, win,
            fmt_bytes(a, sizeof(a), (double)r->bytes));
    print_errors(out, r);
    if (r->unfinished)
        fprintf(out,
                "  Unfinished at the end: %" PRIu64 " (in flight or queued; oldest due %s "
                "before the end)\n",
                r->unfinished, fmt_ns(b, sizeof(b), (double)(r->wend - r->oldest_due)));
    print_shortfall(out, cfg, r);
    fprintf(out, "Requests/sec: %10.2f (target %.2f)\n", (double)r->hist.total / win, cfg->rate);
    fprintf(out, "Transfer/sec: %10s\n", fmt_bytes(a, sizeof(a), (double)r->bytes / win));
    print_generator(out, cfg, r);
}

/* --- JSON ----------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* v with three decimals, or null when there is nothing to average. */
static void json_real(FILE *f, double v, bool known)
{
    if (known)
        fprintf(f, "%.3f", v);
    else
        fprintf(f, "null");
}

/* ns as microseconds, exactly: 123456 -> 123.456 */
static void json_us(FILE *f, uint64_t ns)
{
    fprintf(f, "%" PRIu64 ".%03" PRIu64, ns / 1000, ns % 1000);
}

static void json_latency(FILE *f, const c10k_hist_t *h)
{
    static const struct {
        const char *key;
        double pct;
    } p[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}, {"p9999", 99.99}, {"max", 100}};

    fprintf(f, "{");
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        fprintf(f, "\"%s\": ", p[i].key);
        if (h->total)
            json_us(f, c10k_hist_percentile(h, p[i].pct));
        else
            fprintf(f, "null");
        fprintf(f, ", ");
    }
    fprintf(f, "\"mean\": ");
    json_real(f, c10k_hist_mean(h) / 1e3, h->total > 0);
    fprintf(f, "}");
}

static void json_histogram(FILE *f, const c10k_hist_t *h)
{
    uint64_t upper, count;
    bool first = true;

    fprintf(f, "[");
    for (int i = c10k_hist_next(h, -1, &upper, &count); i >= 0;
         i = c10k_hist_next(h, i, &upper, &count)) {
        fprintf(f, "%s[", first ? "" : ", ");
        json_us(f, upper);
        fprintf(f, ", %" PRIu64 "]", count);
        first = false;
    }
    fprintf(f, "]");
}

static void json_timeline(FILE *f, const c10k_load_result_t *r)
{
    fprintf(f, "[");
    for (size_t s = 0; s < r->nsecs; s++) {
        fprintf(f,
                "%s{\"t\": %zu, \"completed\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"p99_us\": ",
                s ? ", " : "", s, r->secs[s].completed, r->secs[s].errors);
        if (r->secs[s].completed)
            json_us(f, r->sec_p99_ns[s]);
        else
            fprintf(f, "null");
        fprintf(f, "}");
    }
    fprintf(f, "]");
}

/* Completions per connection, in connection-number order. */
static int json_per_connection(FILE *f, const c10k_load_cfg_t *cfg, c10k_load_thread_t *t,
                               int nthreads)
{
    uint64_t *n = calloc((size_t)cfg->connections, sizeof(*n));

    if (!n)
        return -ENOMEM;
    for (int i = 0; i < nthreads; i++)
        for (size_t k = 0; k < t[i].nconns; k++)
            n[t[i].conns[k].id] = t[i].conns[k].completed;
    fprintf(f, "[");
    for (long c = 0; c < cfg->connections; c++)
        fprintf(f, "%s%" PRIu64, c ? ", " : "", n[c]);
    fprintf(f, "]");
    free(n);
    return 0;
}

static void json_errors(FILE *f, const c10k_load_result_t *r)
{
    fprintf(f, "{");
    for (int k = 0; k < C10K_LOAD_ERR_KINDS; k++)
        fprintf(f, "\"%s\": %" PRIu64 "%s", c10k_load_err_names[k], r->errors[k],
                k + 1 < C10K_LOAD_ERR_KINDS ? ", " : "}");
}

static void json_lag(FILE *f, const c10k_hist_t *lag)
{
    fprintf(f, "{\"samples\": %" PRIu64 ", \"p50\": ", lag->total);
    json_us(f, c10k_hist_percentile(lag, 50));
    fprintf(f, ", \"p99\": ");
    json_us(f, c10k_hist_percentile(lag, 99));
    fprintf(f, ", \"max\": ");
    json_us(f, lag->max_ns);
    fprintf(f, ", \"mean\": %.3f}", c10k_hist_mean(lag) / 1e3);
}

static void json_counts(FILE *f, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    double win = window_s(cfg), n = (double)r->hist.total;

    fprintf(f, "  \"rate_target\": %.3f,\n  \"rate_achieved\": %.3f,\n", cfg->rate, n / win);
    fprintf(f, "  \"below_target\": %s,\n", c10k_load_below_target(cfg, r) ? "true" : "false");
    fprintf(f, "  \"goodput_rps\": %.3f,\n", (n - (double)r->errors[C10K_LOAD_ERR_STATUS]) / win);
    fprintf(f, "  \"requests\": %" PRIu64 ",\n  \"errors\": ", r->hist.total);
    json_errors(f, r);
    fprintf(f, ",\n  \"errors_total\": %" PRIu64 ",\n  \"latency_us\": ", r->errors_total);
    json_latency(f, &r->hist);
    fprintf(f, ",\n  \"latency_mean_us\": ");
    json_real(f, c10k_hist_mean(&r->hist) / 1e3, n > 0);
    fprintf(f, ",\n  \"service_latency_mean_us\": ");
    json_real(f, n > 0 ? r->service_ns / n / 1e3 : 0, n > 0);
    fprintf(f, ",\n");
    fprintf(f, "  \"in_flight_mean\": %.3f,\n", r->inflight_ns / (win * 1e9));
    fprintf(f, "  \"scheduled\": %" PRIu64 ",\n", r->scheduled);
    fprintf(f, "  \"unfinished\": %" PRIu64 ",\n  \"unfinished_oldest_us\": ", r->unfinished);
    if (r->unfinished && r->oldest_due < r->wend)
        json_us(f, (uint64_t)(r->wend - r->oldest_due));
    else
        fprintf(f, "null");
    fprintf(f, ",\n  \"bytes_read\": %" PRIu64 ",\n", r->bytes);
}

static void json_run(FILE *f, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r)
{
    fprintf(f, "  \"url\": ");
    json_string(f, cfg->url);
    fprintf(f, ",\n  \"connections\": %ld,\n  \"connected\": %zu,\n  \"threads\": %d,\n",
            cfg->connections, r->connected, cfg->threads);
    fprintf(f, "  \"duration_s\": %.6g,\n  \"warmup_s\": %.6g,\n  \"timeout_s\": %.6g,\n",
            cfg->duration_s, cfg->warmup_s, cfg->timeout_s);
    fprintf(f, "  \"schedule\": \"%s\",\n  \"seed\": %" PRIu64 ",\n  \"paths\": %zu,\n",
            cfg->poisson ? "poisson" : "fixed", cfg->seed, cfg->nreq);
    fprintf(f, "  \"client_cpu\": %.6f,\n  \"client_cpu_util\": %.6f,\n", r->client_cpu,
            r->client_cpu / (cfg->duration_s * cfg->threads));
    fprintf(f, "  \"busy_max\": %.6f,\n  \"max_lag_s\": %.6g,\n  \"send_lag_us\": ", r->busy_max,
            cfg->max_lag_s);
    json_lag(f, &r->lag);
    fprintf(f, ",\n  \"read_lag_us\": ");
    json_lag(f, &r->read_lag);
    fprintf(f, ",\n  \"valid\": %s,\n  \"invalid_reason\": ", r->valid ? "true" : "false");
    if (r->valid)
        fprintf(f, "null");
    else
        json_string(f, r->invalid_reason);
    fprintf(f, ",\n");
}

int c10k_load_write_json(FILE *f, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r,
                         c10k_load_thread_t *t, int nthreads)
{
    fprintf(f, "{\n");
    json_run(f, cfg, r);
    json_counts(f, cfg, r);
    fprintf(f, "  \"timeline\": ");
    json_timeline(f, r);
    fprintf(f, ",\n  \"per_connection_completed\": ");
    if (json_per_connection(f, cfg, t, nthreads) < 0)
        return -ENOMEM;
    fprintf(f, ",\n  \"histogram\": ");
    json_histogram(f, &r->hist);
    fprintf(f, "\n}\n");
    return ferror(f) ? -EIO : 0;
}
