/*
 * test_hist.c - the load generator's histogram (load/hist.c): buckets tile
 * the range with no gap or overlap and are within 1% of any value they hold
 * from 1 us to 60 s; counts sum to what was recorded; a merge equals
 * recording everything in one histogram; the [upper, count] pairs read back
 * exactly; percentiles are right on known distributions.
 */
#include "hist.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define US  1000ULL
#define SEC 1000000000ULL

static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Log-uniform over [lo, hi]: every decade equally likely. */
static uint64_t rnd_log(uint64_t lo, uint64_t hi)
{
    double u = (double)(rnd() >> 11) * 0x1.0p-53;

    return (uint64_t)exp(log((double)lo) + u * (log((double)hi) - log((double)lo)));
}

static c10k_hist_t *hist_new(void)
{
    c10k_hist_t *h = malloc(sizeof(*h));

    cr_assert_not_null(h);
    c10k_hist_init(h);
    return h;
}

static void check_value(uint64_t v)
{
    int i = c10k_hist_index(v);
    uint64_t lo = c10k_hist_lower(i), hi = c10k_hist_upper(i);

    cr_assert(lo <= v && v <= hi, "value %llu outside its bucket %d [%llu, %llu]",
              (unsigned long long)v, i, (unsigned long long)lo, (unsigned long long)hi);
    cr_assert_leq((double)(hi - v) / (double)v, 0.01, "value %llu: upper bound %llu is >1%% off",
                  (unsigned long long)v, (unsigned long long)hi);
    cr_assert_leq((double)(v - lo) / (double)v, 0.01, "value %llu: lower bound %llu is >1%% off",
                  (unsigned long long)v, (unsigned long long)lo);
}

Test(hist, buckets_tile_the_range)
{
    cr_assert_eq(c10k_hist_lower(0), 0);
    for (int i = 1; i < C10K_HIST_BUCKETS; i++) {
        cr_assert_eq(c10k_hist_lower(i), c10k_hist_upper(i - 1) + 1, "gap or overlap at %d", i);
        cr_assert_eq(c10k_hist_index(c10k_hist_lower(i)), i);
        cr_assert_eq(c10k_hist_index(c10k_hist_upper(i)), i);
    }
    cr_assert_eq(c10k_hist_upper(C10K_HIST_BUCKETS - 1), C10K_HIST_MAX_NS);
    cr_assert_geq(C10K_HIST_MAX_NS, 60 * SEC);
}

Test(hist, error_at_most_one_percent_from_1us_to_60s)
{
    /* Every bucket edge in the range, and the values just beside them... */
    for (int i = c10k_hist_index(US); i <= c10k_hist_index(60 * SEC); i++) {
        uint64_t lo = c10k_hist_lower(i), hi = c10k_hist_upper(i);
        if (lo >= US && lo <= 60 * SEC)
            check_value(lo);
        if (hi >= US && hi <= 60 * SEC)
            check_value(hi);
    }
    /* ...a geometric sweep with a step finer than a bucket... */
    for (double v = US; v <= 60.0 * SEC; v *= 1.0007)
        check_value((uint64_t)v);
    /* ...and random values. */
    for (int k = 0; k < 200000; k++)
        check_value(rnd_log(US, 60 * SEC));
    check_value(60 * SEC);
}

Test(hist, counts_sum_to_the_values_recorded)
{
    c10k_hist_t *h = hist_new();
    uint64_t sum = 0, n = 0;

    for (int k = 0; k < 100000; k++)
        c10k_hist_record(h, rnd_log(1, 100 * SEC)); /* past the top too */
    c10k_hist_record_n(h, 5 * US, 7);
    c10k_hist_record_n(h, 5 * US, 0);
    for (int i = 0; i < C10K_HIST_BUCKETS; i++)
        sum += h->counts[i];
    cr_assert_eq(h->total, 100007);
    cr_assert_eq(sum, 100007);
    for (uint64_t upper, count, i = (uint64_t)c10k_hist_next(h, -1, &upper, &count); (int)i >= 0;
         i = (uint64_t)c10k_hist_next(h, (int)i, &upper, &count))
        n += count;
    cr_assert_eq(n, 100007, "the non-empty buckets sum to %llu", (unsigned long long)n);
    free(h);
}

Test(hist, merge_equals_recording_everything_in_one)
{
    c10k_hist_t *a = hist_new(), *b = hist_new(), *all = hist_new(), *empty = hist_new();

    for (int k = 0; k < 50000; k++) {
        uint64_t v = rnd_log(US, 1000 * SEC); /* the top bucket too */
        c10k_hist_record(k % 3 ? a : b, v);
        c10k_hist_record(all, v);
    }
    c10k_hist_merge(a, b);
    c10k_hist_merge(a, empty);
    cr_assert_eq(memcmp(a->counts, all->counts, sizeof(a->counts)), 0);
    cr_assert_eq(a->total, all->total);
    cr_assert_eq(a->min_ns, all->min_ns);
    cr_assert_eq(a->max_ns, all->max_ns);
    cr_assert_float_eq(a->sum_ns, all->sum_ns, all->sum_ns * 1e-12);
    for (double p = 0; p <= 100; p += 0.5)
        cr_assert_eq(c10k_hist_percentile(a, p), c10k_hist_percentile(all, p));
    /* Merging into an empty histogram copies. */
    c10k_hist_merge(empty, all);
    cr_assert_eq(memcmp(empty->counts, all->counts, sizeof(all->counts)), 0);
    cr_assert_eq(empty->min_ns, all->min_ns);
    free(a);
    free(b);
    free(all);
    free(empty);
}

/* The [upper, count] pairs --json writes rebuild the same buckets. */
Test(hist, pairs_read_back_exactly)
{
    c10k_hist_t *h = hist_new(), *back = hist_new();
    uint64_t upper, count;

    for (int k = 0; k < 20000; k++)
        c10k_hist_record(h, rnd_log(1, 60 * SEC));
    for (int i = c10k_hist_next(h, -1, &upper, &count); i >= 0;
         i = c10k_hist_next(h, i, &upper, &count))
        c10k_hist_record_n(back, upper, count);
    cr_assert_eq(memcmp(h->counts, back->counts, sizeof(h->counts)), 0);
    cr_assert_eq(back->total, h->total);
    free(h);
    free(back);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* The exact nearest-rank percentile of sorted v[0..n). */
static uint64_t exact_pct(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n - 1e-9);

    return v[rank < 1 ? 0 : rank - 1];
}

static void check_percentiles(const uint64_t *v, size_t n)
{
    static const double pcts[] = {1, 10, 50, 90, 99, 99.9, 99.99, 100};
    c10k_hist_t *h = hist_new();
    uint64_t *sorted = malloc(n * sizeof(*sorted));

    cr_assert_not_null(sorted);
    memcpy(sorted, v, n * sizeof(*v));
    qsort(sorted, n, sizeof(*sorted), cmp_u64);
    for (size_t k = 0; k < n; k++)
        c10k_hist_record(h, v[k]);
    for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
        uint64_t want = exact_pct(sorted, n, pcts[k]), got = c10k_hist_percentile(h, pcts[k]);
        cr_assert(got >= want && (double)(got - want) <= 0.01 * (double)want,
                  "p%g: got %llu, exact %llu", pcts[k], (unsigned long long)got,
                  (unsigned long long)want);
    }
    cr_assert_eq(c10k_hist_percentile(h, 100), sorted[n - 1], "max is exact");
    cr_assert_eq(c10k_hist_percentile(h, 0), sorted[0], "min is exact");
    free(sorted);
    free(h);
}

Test(hist, percentiles_of_a_uniform_distribution)
{
    size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));

    for (size_t k = 0; k < n; k++)
        v[k] = (k + 1) * US; /* 1 us .. 100 ms, each once: p50 is 50 ms */
    check_percentiles(v, n);
    free(v);
}

Test(hist, percentiles_of_an_exponential_distribution)
{
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));

    for (size_t k = 0; k < n; k++) {
        double u = (double)((rnd() >> 11) + 1) * 0x1.0p-53;
        v[k] = (uint64_t)(-log(u) * 500.0 * US) + US; /* mean ~0.5 ms */
    }
    check_percentiles(v, n);
    free(v);
}

/* A stall: 80% fast, 20% spread over 0..200 ms, as the stall test sees. */
Test(hist, percentiles_of_a_bimodal_distribution)
{
    size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));
    c10k_hist_t *h = hist_new();

    for (size_t k = 0; k < n; k++) {
        v[k] = k % 5 ? 100 * US + rnd() % (20 * US) : US + rnd() % (200000 * US);
        c10k_hist_record(h, v[k]);
    }
    check_percentiles(v, n);
    cr_assert_lt(c10k_hist_percentile(h, 50), 121 * US);
    cr_assert_gt(c10k_hist_percentile(h, 99), 180000 * US);
    free(v);
    free(h);
}

Test(hist, small_and_exact_cases)
{
    c10k_hist_t *h = hist_new();

    cr_assert_eq(c10k_hist_percentile(h, 50), 0, "empty");
    cr_assert_float_eq(c10k_hist_mean(h), 0, 1e-12);
    c10k_hist_record(h, 12345 * US);
    for (double p = 0; p <= 100; p += 10)
        cr_assert_eq(c10k_hist_percentile(h, p), 12345 * US, "one value is every percentile");
    c10k_hist_init(h);
    for (uint64_t k = 1; k <= 1000; k++)
        c10k_hist_record(h, k); /* 1..1000 ns */
    cr_assert_eq(c10k_hist_percentile(h, 10), 100, "exact below 256");
    cr_assert_eq(c10k_hist_percentile(h, 25), 250);
    cr_assert_eq(c10k_hist_percentile(h, 99.9), 999, "rank 999 of 1000, not 1000");
    cr_assert_float_eq(c10k_hist_mean(h), 500.5, 1e-9);
    c10k_hist_record(h, 500 * SEC); /* above the range: counted, max exact */
    cr_assert_eq(h->counts[C10K_HIST_BUCKETS - 1], 1);
    cr_assert_eq(c10k_hist_percentile(h, 100), 500 * SEC);
    free(h);
}
