/*
 * stats.h - a model's own counters, published in a file for the bench.
 *
 * The kernel counts what every model costs (context switches, system calls,
 * CPU time); only the model can count what it does itself, such as the
 * user-level context switches of coroutines, which the kernel never sees. A
 * model registers each such counter once, by name:
 *
 *     c10k_stats_add("user_switches", &sched->counters.switches);
 *
 * and with `c10k serve --stats-file FILE` a small thread rewrites FILE every
 * C10K_STATS_PERIOD_MS while the server runs, and once more at a clean stop:
 *
 *     {"model": "coro", "counters": {"user_switches": 123, ...}}
 *
 * Each write goes to FILE.tmp, then rename(2)s it over FILE, so a reader
 * never sees half a file. Counters are cumulative since start; the bench
 * reads the file at the start and the end of its window and takes the
 * difference. Counters registered under one name (one per worker, say) are
 * summed, so each worker counts in its own cache line with plain stores.
 */
#ifndef C10K_STATS_H
#define C10K_STATS_H

#include <stdatomic.h>
#include <stdbool.h>

#define C10K_STATS_PERIOD_MS 250

/* Publish *counter under name (letters, digits and '_'; the string must
 * outlive the registration). *counter must stay valid until
 * c10k_stats_remove(). Returns 0, -EINVAL for a bad name, or -ENOMEM. */
int c10k_stats_add(const char *name, atomic_ullong *counter);

/* Stop reading *counter: its last value stays in its name's total, so the
 * final file still counts it. Call before freeing it. No-op if unknown. */
void c10k_stats_remove(atomic_ullong *counter);

/* One more for a counter only its own thread writes: a plain load and store,
 * no locked instruction (readers see either value). */
static inline void c10k_stats_inc(atomic_ullong *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Write path now, and then every C10K_STATS_PERIOD_MS from a thread of its
 * own, for the model named model. Returns 0, or a negative errno when path
 * cannot be written (nothing is started then). */
int c10k_stats_start(const char *path, const char *model);

/* Stop the thread; with final, write the file once more. Returns 0 or a
 * negative errno from that write. No-op when not started. */
int c10k_stats_stop(bool final);

/* Write the file now (what the thread does each period). Returns 0 or a
 * negative errno. */
int c10k_stats_write(void);

#endif
