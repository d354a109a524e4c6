/*
 * test_timer.c - the timer wheel (common/timer.c): timers fire at or after
 * their deadline, never early, at most one tick late; cancel and re-arm hold;
 * the wheel's timeout never oversleeps.
 */
#include "timer.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define TICK 16

typedef struct {
    c10k_timer_t t;
    int64_t fired_at; /* -1 until it fires */
    int fires;
} item_t;

static int64_t clock_now;

static void record_cb(c10k_timer_t *t, void *arg)
{
    item_t *it = (item_t *)t;
    (void)arg;
    it->fired_at = clock_now;
    it->fires++;
}

/* Advance the clock ms by ms, as a loop that wakes every millisecond would. */
static void run_until(c10k_wheel_t *w, int64_t until)
{
    while (clock_now < until) {
        clock_now++;
        c10k_wheel_expire(w, clock_now, record_cb, NULL);
    }
}

static void item_init(item_t *it)
{
    c10k_timer_init(&it->t);
    it->fired_at = -1;
    it->fires = 0;
}

Test(timer, fires_at_deadline_not_before)
{
    c10k_wheel_t w;
    item_t it;

    clock_now = 1000;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&it);
    c10k_timer_arm(&w, &it.t, 1500);
    cr_assert(c10k_timer_armed(&it.t));
    run_until(&w, 1499);
    cr_assert_eq(it.fires, 0);
    run_until(&w, 1500 + TICK);
    cr_assert_eq(it.fires, 1);
    cr_assert_geq(it.fired_at, 1500);
    cr_assert_leq(it.fired_at, 1500 + TICK);
    cr_assert(!c10k_timer_armed(&it.t));
    cr_assert_eq(c10k_wheel_next_ms(&w, clock_now), -1);
}

Test(timer, cancel_prevents_firing)
{
    c10k_wheel_t w;
    item_t it;

    clock_now = 0;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&it);
    c10k_timer_arm(&w, &it.t, 100);
    c10k_timer_cancel(&w, &it.t);
    c10k_timer_cancel(&w, &it.t); /* twice is harmless */
    run_until(&w, 1000);
    cr_assert_eq(it.fires, 0);
    cr_assert_eq(w.armed, 0);
}

Test(timer, rearm_later_and_earlier)
{
    c10k_wheel_t w;
    item_t a, b;

    clock_now = 0;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&a);
    item_init(&b);
    c10k_timer_arm(&w, &a.t, 100);
    c10k_timer_arm(&w, &a.t, 5000); /* later: lazy, must not fire at 100 */
    c10k_timer_arm(&w, &b.t, 5000);
    c10k_timer_arm(&w, &b.t, 200); /* earlier: must fire at 200 */
    run_until(&w, 4999);
    cr_assert_eq(a.fires, 0);
    cr_assert_eq(b.fires, 1);
    cr_assert_geq(b.fired_at, 200);
    cr_assert_leq(b.fired_at, 200 + TICK);
    run_until(&w, 5000 + TICK);
    cr_assert_eq(a.fires, 1);
    cr_assert_geq(a.fired_at, 5000);
}

Test(timer, longer_than_a_revolution)
{
    c10k_wheel_t w;
    item_t it;
    int64_t when = 3 * C10K_WHEEL_SLOTS * TICK + 7;

    clock_now = 0;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&it);
    c10k_timer_arm(&w, &it.t, when);
    run_until(&w, when - 1);
    cr_assert_eq(it.fires, 0);
    run_until(&w, when + TICK);
    cr_assert_eq(it.fires, 1);
}

Test(timer, past_deadline_fires_on_next_expire)
{
    c10k_wheel_t w;
    item_t it;

    clock_now = 10000;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&it);
    c10k_timer_arm(&w, &it.t, 5);
    cr_assert_leq(c10k_wheel_next_ms(&w, clock_now), TICK);
    run_until(&w, clock_now + TICK);
    cr_assert_eq(it.fires, 1);
}

Test(timer, long_sleep_fires_everything_once)
{
    c10k_wheel_t w;
    item_t items[300];

    clock_now = 0;
    c10k_wheel_init(&w, TICK, clock_now);
    for (int i = 0; i < 300; i++) {
        item_init(&items[i]);
        c10k_timer_arm(&w, &items[i].t, 50 + i * 97);
    }
    /* One expire after sleeping far past every deadline, several revolutions. */
    clock_now = 10 * C10K_WHEEL_SLOTS * TICK;
    c10k_wheel_expire(&w, clock_now, record_cb, NULL);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(items[i].fires, 1, "timer %d fired %d times", i, items[i].fires);
    cr_assert_eq(w.armed, 0);
}

/* The callback may cancel another timer of the same slot. */
static item_t *victim;

static void cancel_other_cb(c10k_timer_t *t, void *arg)
{
    c10k_wheel_t *w = arg;
    record_cb(t, NULL);
    if (victim && &victim->t != t)
        c10k_timer_cancel(w, &victim->t);
}

Test(timer, callback_cancels_a_neighbour)
{
    c10k_wheel_t w;
    item_t a, b;

    clock_now = 0;
    c10k_wheel_init(&w, TICK, clock_now);
    item_init(&a);
    item_init(&b);
    c10k_timer_arm(&w, &a.t, 100);
    c10k_timer_arm(&w, &b.t, 100); /* same slot */
    victim = &a;
    for (clock_now = 1; clock_now < 200; clock_now++)
        c10k_wheel_expire(&w, clock_now, cancel_other_cb, &w);
    /* b is first in the slot (pushed last), fires and cancels a. */
    cr_assert_eq(a.fires + b.fires, 1);
    cr_assert_eq(w.armed, 0);
    victim = NULL;
}

/* Random deadlines and re-arms against the obvious model: every timer fires
 * once, in [deadline, deadline + TICK], and the wheel's timeout never makes
 * a loop that sleeps by it miss one. */
Test(timer, random_against_model)
{
    enum { N = 2000 };
    static item_t items[N];
    static int64_t deadline[N];
    c10k_wheel_t w;

    srand(12345);
    clock_now = 777;
    c10k_wheel_init(&w, TICK, clock_now);
    for (int i = 0; i < N; i++) {
        item_init(&items[i]);
        deadline[i] = clock_now + rand() % 40000;
        c10k_timer_arm(&w, &items[i].t, deadline[i]);
        if (i % 3 == 0) { /* re-arm a third of them, later or earlier */
            deadline[i] = clock_now + rand() % 40000;
            c10k_timer_arm(&w, &items[i].t, deadline[i]);
        }
    }
    while (w.armed > 0) {
        int ms = c10k_wheel_next_ms(&w, clock_now);
        cr_assert_geq(ms, 0);
        clock_now += ms > 0 ? ms : 1;
        c10k_wheel_expire(&w, clock_now, record_cb, NULL);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(items[i].fires, 1, "timer %d fired %d times", i, items[i].fires);
        cr_assert_geq(items[i].fired_at, deadline[i], "timer %d early", i);
        cr_assert_leq(items[i].fired_at, deadline[i] + TICK, "timer %d late by %lld ms", i,
                      (long long)(items[i].fired_at - deadline[i]));
    }
}
