/*
 * loopstat.h - how long an event loop's iterations take: its stalls.
 *
 * An event loop serves every connection it holds from one thread. From the
 * moment its wait (epoll_wait, libevent's dispatch, uv_run's poll) returns
 * until it waits again, no other connection of that loop is looked at. An
 * iteration that takes longer than C10K_STALL_NS is a stall: one call that
 * blocked (a sendfile that met a page not in memory, a write to a full pipe),
 * a very long batch, or the thread preempted by another. Every event loop
 * counts, per worker:
 *
 *     loop_iterations  iterations that did some work
 *     loop_stalls      those that took longer than C10K_STALL_NS (1 ms)
 *     loop_stall_us    the total duration of those stalls, in microseconds
 *
 * and publishes them in the stats file (stats.h, `c10k serve --stats-file`),
 * summed over the workers. c10k bench reports them per window as loop_stalls
 * and loop_stall_ms.
 *
 * How an iteration is timed: c10k_loop_busy() when the wait returns (a loop
 * that reads the clock there anyway passes its reading), or
 * c10k_loop_touch() at the top of each callback of a library loop (only the
 * first one in an iteration reads the clock); then c10k_loop_idle() just
 * before the next wait. That is at most two clock reads per iteration, and
 * one more than the loop made before for epoll. CLOCK_MONOTONIC is read
 * through the vDSO (no system call, about 20-60 ns). CLOCK_MONOTONIC_COARSE
 * would be cheaper still, but it ticks at the kernel's HZ: 4 ms on the
 * development machine, too coarse to see a 1 ms stall at all.
 *
 * The counters are written by the loop's own thread only (plain relaxed
 * stores); the stats thread reads them.
 */
#ifndef C10K_LOOPSTAT_H
#define C10K_LOOPSTAT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define C10K_STALL_NS 1000000 /* an iteration longer than this is a stall */

typedef struct c10k_loopstat_s {
    atomic_ullong iterations; /* iterations that did some work */
    atomic_ullong stalls;     /* iterations longer than C10K_STALL_NS */
    atomic_ullong stall_us;   /* their total duration */
    int64_t busy_ns;          /* when the current iteration began; 0 while waiting */
    bool published;           /* c10k_loopstat_publish() succeeded */
} c10k_loopstat_t;

/* CLOCK_MONOTONIC in nanoseconds (the clock c10k_now_ms() reads). */
static inline int64_t c10k_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Count one iteration that was busy for ns nanoseconds. */
void c10k_loop_account(c10k_loopstat_t *ls, int64_t ns);

/* The loop's wait returned at now_ns (c10k_now_ns()): an iteration begins. */
static inline void c10k_loop_busy(c10k_loopstat_t *ls, int64_t now_ns)
{
    ls->busy_ns = now_ns;
}

/* A callback of a library loop begins: the iteration began now, unless an
 * earlier callback of the same iteration already said so. */
static inline void c10k_loop_touch(c10k_loopstat_t *ls)
{
    if (ls->busy_ns == 0)
        ls->busy_ns = c10k_now_ns();
}

/* The loop is about to wait again: the iteration, if one began, ends now. */
static inline void c10k_loop_idle(c10k_loopstat_t *ls)
{
    if (ls->busy_ns != 0) {
        c10k_loop_account(ls, c10k_now_ns() - ls->busy_ns);
        ls->busy_ns = 0;
    }
}

/* Publish the counters in the stats file under their names (summed with the
 * other workers'). Returns 0 or a negative errno; a loop runs on without. */
int c10k_loopstat_publish(c10k_loopstat_t *ls);

/* Stop publishing (before ls is freed): the last values stay counted. Safe
 * when never published. */
void c10k_loopstat_unpublish(c10k_loopstat_t *ls);

#endif
