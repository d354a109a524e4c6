/*
 * hist.c - the log-linear histogram of hist.h.
 *
 * Bucket index of a value v:
 *   v < 256:  v itself (exact);
 *   v >= 256: with s = (position of v's top bit) - 7, v >> s lies in
 *             [128, 256), so v falls in one of 128 buckets of width 2^s
 *             inside its power of two; index = 256 + (s - 1) * 128 + (v >> s) - 128.
 * A bucket's width over its lower bound is 2^s / ((v >> s) << s) <= 1/128.
 * This is HdrHistogram's layout with a unit of 1 ns and two significant
 * decimal digits (sub-bucket count 256), written out for one fixed range.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void c10k_hist_init(c10k_hist_t *h)
{
    memset(h->counts, 0, sizeof(h->counts));
    h->total = 0;
    h->min_ns = UINT64_MAX;
    h->max_ns = 0;
    h->sum_ns = 0;
}

int c10k_hist_index(uint64_t ns)
{
    int shift;

    if (ns > C10K_HIST_MAX_NS)
        ns = C10K_HIST_MAX_NS;
    if (ns < 2 * C10K_HIST_SUB)
        return (int)ns;
    shift = 63 - __builtin_clzll(ns) - C10K_HIST_SUB_BITS;
    return (int)(2 * C10K_HIST_SUB + (unsigned)(shift - 1) * C10K_HIST_SUB +
                 (unsigned)(ns >> shift) - C10K_HIST_SUB);
}

uint64_t c10k_hist_lower(int i)
{
    unsigned k, shift;

    if (i < (int)(2 * C10K_HIST_SUB))
        return (uint64_t)i;
    k = (unsigned)i - 2 * C10K_HIST_SUB;
    shift = k / C10K_HIST_SUB + 1;
    return (uint64_t)(k % C10K_HIST_SUB + C10K_HIST_SUB) << shift;
}

uint64_t c10k_hist_upper(int i)
{
    unsigned shift;

    if (i < (int)(2 * C10K_HIST_SUB))
        return (uint64_t)i;
    shift = ((unsigned)i - 2 * C10K_HIST_SUB) / C10K_HIST_SUB + 1;
    return c10k_hist_lower(i) + (UINT64_C(1) << shift) - 1;
}

void c10k_hist_record_n(c10k_hist_t *h, uint64_t ns, uint64_t n)
{
    if (n == 0)
        return;
    h->counts[c10k_hist_index(ns)] += n;
    h->total += n;
    h->sum_ns += (double)ns * (double)n;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void c10k_hist_record(c10k_hist_t *h, uint64_t ns)
{
    c10k_hist_record_n(h, ns, 1);
}

void c10k_hist_merge(c10k_hist_t *dst, const c10k_hist_t *src)
{
    if (src->total == 0)
        return;
    for (int i = 0; i < C10K_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

/* ceil(pct/100 * total), in 1..total. The relative slack keeps 99.9% of
 * 1000 at rank 999 when 99.9 / 100 rounds up in binary. */
static uint64_t nearest_rank(double pct, uint64_t total)
{
    double r = pct / 100.0 * (double)total * (1 - 1e-12);
    uint64_t rank = r <= 1 ? 1 : (uint64_t)ceil(r);

    return rank > total ? total : rank;
}

uint64_t c10k_hist_percentile(const c10k_hist_t *h, double pct)
{
    uint64_t rank, seen = 0, v;
    int i;

    if (h->total == 0)
        return 0;
    rank = nearest_rank(pct, h->total);
    if (rank == 1)
        return h->min_ns; /* the extremes are known exactly */
    if (rank == h->total)
        return h->max_ns;
    for (i = 0; i < C10K_HIST_BUCKETS - 1; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    v = c10k_hist_upper(i);
    if (v > h->max_ns)
        v = h->max_ns;
    if (v < h->min_ns)
        v = h->min_ns;
    return v;
}

double c10k_hist_mean(const c10k_hist_t *h)
{
    return h->total ? h->sum_ns / (double)h->total : 0;
}

int c10k_hist_next(const c10k_hist_t *h, int i, uint64_t *upper_ns, uint64_t *count)
{
    for (i++; i < C10K_HIST_BUCKETS; i++) {
        if (h->counts[i]) {
            *upper_ns = c10k_hist_upper(i);
            *count = h->counts[i];
            return i;
        }
    }
    return -1;
}
