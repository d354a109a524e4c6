/*
 * timer.c - the hashed timer wheel (see timer.h).
 */
#include "timer.h"

#include <string.h>

#define SLOT_MASK (C10K_WHEEL_SLOTS - 1)

static size_t slot_of(int64_t tick)
{
    return (size_t)tick & SLOT_MASK;
}

/* The tick whose slot a deadline belongs in: rounded up, so that by the time
 * the wheel reaches that tick the deadline has passed. */
static int64_t tick_of(const c10k_wheel_t *w, int64_t deadline)
{
    return deadline <= 0 ? 0 : (deadline + w->tick_ms - 1) / w->tick_ms;
}

static void unlink_timer(c10k_wheel_t *w, c10k_timer_t *t)
{
    size_t i = slot_of(t->tick);

    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
    if (!w->slot[i])
        w->busy[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

/* Push t onto the slot of its deadline. A deadline that is already due goes
 * into the next tick, the earliest one not yet expired. */
static void file_timer(c10k_wheel_t *w, c10k_timer_t *t)
{
    int64_t tick = tick_of(w, t->deadline);
    size_t i;

    if (tick <= w->tick)
        tick = w->tick + 1;
    i = slot_of(tick);
    t->tick = tick;
    t->next = w->slot[i];
    if (t->next)
        t->next->pprev = &t->next;
    t->pprev = &w->slot[i];
    w->slot[i] = t;
    w->busy[i / 64] |= UINT64_C(1) << (i % 64);
}

void c10k_wheel_init(c10k_wheel_t *w, int tick_ms, int64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    w->tick_ms = tick_ms > 0 ? tick_ms : 1;
    w->tick = now_ms / w->tick_ms;
}

void c10k_timer_init(c10k_timer_t *t)
{
    t->next = NULL;
    t->pprev = NULL;
    t->deadline = 0;
    t->tick = 0;
}

void c10k_timer_arm(c10k_wheel_t *w, c10k_timer_t *t, int64_t deadline)
{
    t->deadline = deadline;
    if (c10k_timer_armed(t)) {
        /* Later than its slot: stay put, expire() moves it when the slot
         * comes up. Earlier: it must move now or it would fire late. */
        if (tick_of(w, deadline) >= t->tick)
            return;
        unlink_timer(w, t);
    } else {
        w->armed++;
    }
    file_timer(w, t);
}

void c10k_timer_cancel(c10k_wheel_t *w, c10k_timer_t *t)
{
    if (!c10k_timer_armed(t))
        return;
    unlink_timer(w, t);
    w->armed--;
}

/* Expire the slot of w->tick: fire what is due, refile the rest (a deadline
 * that was pushed back lazily, or one a revolution or more away). */
static size_t expire_slot(c10k_wheel_t *w, int64_t now_ms, c10k_timer_cb cb, void *arg)
{
    size_t i = slot_of(w->tick), fired = 0;
    c10k_timer_t *list = w->slot[i], *t;

    /* Detach the list first, so refiling into this same slot (a full
     * revolution later) cannot loop, and so cb may cancel any timer. */
    w->slot[i] = NULL;
    w->busy[i / 64] &= ~(UINT64_C(1) << (i % 64));
    if (list)
        list->pprev = &list;
    while ((t = list) != NULL) {
        list = t->next;
        if (list)
            list->pprev = &list;
        t->next = NULL;
        t->pprev = NULL;
        if (t->deadline <= now_ms) {
            w->armed--;
            fired++;
            cb(t, arg); /* may free t: not touched after this */
        } else {
            file_timer(w, t);
        }
    }
    return fired;
}

size_t c10k_wheel_expire(c10k_wheel_t *w, int64_t now_ms, c10k_timer_cb cb, void *arg)
{
    int64_t target = now_ms / w->tick_ms;
    size_t fired = 0;

    /* After a long sleep, one pass over the ring sees every slot once. */
    if (target - w->tick > C10K_WHEEL_SLOTS)
        w->tick = target - C10K_WHEEL_SLOTS;
    while (w->tick < target) {
        w->tick++;
        if (w->armed == 0) {
            w->tick = target;
            break;
        }
        fired += expire_slot(w, now_ms, cb, arg);
    }
    return fired;
}

int c10k_wheel_next_ms(const c10k_wheel_t *w, int64_t now_ms)
{
    size_t start = slot_of(w->tick + 1);
    int64_t tick, ms;

    if (w->armed == 0)
        return -1;
    /* The first busy slot at or after start, going round the ring. */
    for (size_t k = 0; k <= C10K_WHEEL_SLOTS / 64; k++) {
        size_t word = (start / 64 + k) % (C10K_WHEEL_SLOTS / 64);
        uint64_t bits = w->busy[word];
        if (k == 0)
            bits &= ~UINT64_C(0) << (start % 64);
        else if (k == C10K_WHEEL_SLOTS / 64)
            bits &= ~(~UINT64_C(0) << (start % 64));
        if (bits) {
            size_t i = word * 64 + (size_t)__builtin_ctzll(bits);
            tick = w->tick + 1 + (int64_t)((i - start) & SLOT_MASK);
            ms = tick * w->tick_ms - now_ms;
            return ms <= 0 ? 0 : ms > 0x7fffffff ? 0x7fffffff : (int)ms;
        }
    }
    return 0; /* armed but no busy bit: cannot happen; wake and expire */
}
