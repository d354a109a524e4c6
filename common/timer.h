/*
 * timer.h - a hashed timer wheel for connection timeouts.
 *
 * An event loop with 10,000 connections needs each one's header or
 * keep-alive deadline, and must find the ones that passed without looking at
 * the other 9,990. The wheel is a ring of C10K_WHEEL_SLOTS lists; slot i holds
 * the timers due in tick i (mod the ring size), a tick being tick_ms long.
 *
 *   arm, re-arm, cancel   O(1): unlink from one list, push onto another
 *   expire                O(timers due) per tick, plus timers that are a full
 *                         revolution (or more) away and share the slot
 *   next deadline         O(slots / 64): a bitmap says which slots are busy
 *
 * Re-arming to a later deadline is lazy: the timer stays in its slot with the
 * new deadline and is moved only when that slot comes up. A keep-alive
 * connection re-arms once per request, so the common case is one store, and
 * no neighbouring connection's cache line is touched.
 *
 * Deadlines are in milliseconds of c10k_now_ms(). A timer fires at most one
 * tick late, never early. The wheel is not thread-safe: one per event loop.
 * Timers are intrusive: embed a c10k_timer_t in the object it times.
 */
#ifndef C10K_TIMER_H
#define C10K_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define C10K_WHEEL_SLOTS 1024 /* a power of two */

typedef struct c10k_timer_s {
    struct c10k_timer_s *next;
    struct c10k_timer_s **pprev; /* NULL while not armed */
    int64_t deadline;            /* ms */
    int64_t tick;                /* the tick of the slot it is filed in */
} c10k_timer_t;

typedef struct c10k_wheel_s {
    c10k_timer_t *slot[C10K_WHEEL_SLOTS];
    uint64_t busy[C10K_WHEEL_SLOTS / 64]; /* bit i: slot i is not empty */
    int64_t tick;                         /* every tick up to this one has been expired */
    int64_t tick_ms;
    size_t armed;
} c10k_wheel_t;

/* Called for each expired timer, already disarmed: it may re-arm it, or free
 * the object that holds it. */
typedef void (*c10k_timer_cb)(c10k_timer_t *t, void *arg);

/* An empty wheel whose ticks are tick_ms long (> 0), starting at now_ms. */
void c10k_wheel_init(c10k_wheel_t *w, int tick_ms, int64_t now_ms);

/* A disarmed timer. */
void c10k_timer_init(c10k_timer_t *t);

static inline bool c10k_timer_armed(const c10k_timer_t *t)
{
    return t->pprev != NULL;
}

/* Fire t at deadline (ms), whether or not it was armed before. */
void c10k_timer_arm(c10k_wheel_t *w, c10k_timer_t *t, int64_t deadline);

/* Disarm t; a no-op if it is not armed. */
void c10k_timer_cancel(c10k_wheel_t *w, c10k_timer_t *t);

/* Call cb for every timer whose deadline is at or before now_ms. Returns how
 * many fired. */
size_t c10k_wheel_expire(c10k_wheel_t *w, int64_t now_ms, c10k_timer_cb cb, void *arg);

/* Milliseconds from now_ms until the wheel may have a timer to fire (0 if one
 * is due), or -1 if nothing is armed: an epoll_wait timeout. It may be early
 * (a lazily re-armed timer wakes the loop once to be moved), never late. */
int c10k_wheel_next_ms(const c10k_wheel_t *w, int64_t now_ms);

#endif
