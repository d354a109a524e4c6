/*
 * loopstat.c - an event loop's stall counters (loopstat.h).
 */
#include "loopstat.h"

#include <errno.h>

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
    (void)ls;
    return -ENOSYS; /* until common/stats.h is merged */
}

void c10k_loopstat_unpublish(c10k_loopstat_t *ls)
{
    (void)ls;
}
