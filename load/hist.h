/*
 * hist.h - a log-linear latency histogram in the manner of HdrHistogram.
 *
 * Values are nanoseconds. Below 256 ns every value has its own bucket; above,
 * each power of two [2^k, 2^(k+1)) is split into 128 equal sub-buckets, so a
 * bucket is never wider than 1/128 of its lower bound: any value the bucket
 * holds is within 0.79% of the bucket's upper bound, from 256 ns up to
 * C10K_HIST_MAX_NS (137 s), which covers the 1 us .. 60 s the load generator
 * promises at better than 1%. Larger values are counted in the top bucket.
 *
 * Recording is two shifts and an add, with no allocation: one histogram per
 * thread, merged at the end. The bucket layout is a constant of this file, so
 * histograms from different threads, runs and machines merge bucket by
 * bucket, and a histogram written as [upper, count] pairs (c10k_hist_next)
 * reads back exactly with c10k_hist_record_n(upper, count).
 */
#ifndef C10K_HIST_H
#define C10K_HIST_H

#include <stdint.h>

#define C10K_HIST_SUB_BITS 7 /* 128 sub-buckets per power of two: <= 1/128 error */
#define C10K_HIST_SUB      (1 << C10K_HIST_SUB_BITS)
#define C10K_HIST_POWERS   29 /* powers of two above 2 * C10K_HIST_SUB, up to 2^37 ns */
#define C10K_HIST_BUCKETS  (2 * C10K_HIST_SUB + C10K_HIST_POWERS * C10K_HIST_SUB)
#define C10K_HIST_MAX_NS   ((UINT64_C(1) << (C10K_HIST_POWERS + C10K_HIST_SUB_BITS + 1)) - 1)

typedef struct c10k_hist_s {
    uint64_t counts[C10K_HIST_BUCKETS];
    uint64_t total;  /* sum of counts */
    uint64_t min_ns; /* exact extremes of the values recorded (UINT64_MAX, 0 when empty) */
    uint64_t max_ns;
    double sum_ns; /* for the mean; a double cannot overflow at any realistic count */
} c10k_hist_t;

/* Empty h. */
void c10k_hist_init(c10k_hist_t *h);

/* The bucket index that holds ns (values above C10K_HIST_MAX_NS go to the
 * last bucket). */
int c10k_hist_index(uint64_t ns);

/* Smallest and largest value bucket i holds (0 <= i < C10K_HIST_BUCKETS). */
uint64_t c10k_hist_lower(int i);
uint64_t c10k_hist_upper(int i);

/* Count one value, or n copies of it. */
void c10k_hist_record(c10k_hist_t *h, uint64_t ns);
void c10k_hist_record_n(c10k_hist_t *h, uint64_t ns, uint64_t n);

/* Add every count of src to dst, as if dst had recorded src's values too. */
void c10k_hist_merge(c10k_hist_t *dst, const c10k_hist_t *src);

/* The value at percentile pct (0..100) by nearest rank: the upper bound of
 * the bucket holding the ceil(pct/100 * total)-th smallest value, clamped to
 * the exact minimum and maximum recorded (which the first and last ranks
 * return). 0 when h is empty. */
uint64_t c10k_hist_percentile(const c10k_hist_t *h, double pct);

/* Mean of the recorded values in ns, exact up to double rounding; 0 when
 * empty. */
double c10k_hist_mean(const c10k_hist_t *h);

/* Iterate over the non-empty buckets: returns the index of the first one
 * after i (start with -1) and sets *upper_ns and *count, or returns -1 at the
 * end. */
int c10k_hist_next(const c10k_hist_t *h, int i, uint64_t *upper_ns, uint64_t *count);

#endif
