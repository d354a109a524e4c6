/*
 * loopstat.c - an event loop's stall counters (loopstat.h).
 */
#include "loopstat.h"
#include "stats.h"

/* A plain load and store: only the loop's own thread writes its counters. */
static void add(atomic_ullong *counter, unsigned long long n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void c10k_loop_account(c10k_loopstat_t *ls, int64_t ns)
{
    add(&ls->iterations, 1);
    if (ns > C10K_STALL_NS) {
        add(&ls->stalls, 1);
        add(&ls->stall_us, (unsigned long long)(ns / 1000));
    }
}

int c10k_loopstat_publish(c10k_loopstat_t *ls)
{
    int rc = c10k_stats_add("loop_iterations", &ls->iterations);

    if (rc == 0)
        rc = c10k_stats_add("loop_stalls", &ls->stalls);
    if (rc == 0)
        rc = c10k_stats_add("loop_stall_us", &ls->stall_us);
    if (rc < 0) {
        c10k_loopstat_unpublish(ls);
        return rc;
    }
    ls->published = true;
    return 0;
}

void c10k_loopstat_unpublish(c10k_loopstat_t *ls)
{
    c10k_stats_remove(&ls->iterations);
    c10k_stats_remove(&ls->stalls);
    c10k_stats_remove(&ls->stall_us);
    ls->published = false;
}
