/*
 * test_loopstat.c - the event loops' stall counter (common/loopstat.h): an
 * iteration over 1 ms is a stall, counted with its duration; shorter ones
 * only as iterations; an idle loop (no iteration began) counts nothing.
 */
#include "loopstat.h"

#include <criterion/criterion.h>
#include <time.h>

static unsigned long long get(atomic_ullong *c)
{
    return atomic_load(c);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

Test(loopstat, short_iterations_are_not_stalls)
{
    c10k_loopstat_t ls = {0};

    c10k_loop_account(&ls, 0);
    c10k_loop_account(&ls, 999999);
    c10k_loop_account(&ls, C10K_STALL_NS);
    cr_assert_eq(get(&ls.iterations), 3);
    cr_assert_eq(get(&ls.stalls), 0, "1 ms exactly is not over 1 ms");
    cr_assert_eq(get(&ls.stall_us), 0);
}

Test(loopstat, stalls_count_with_their_duration)
{
    c10k_loopstat_t ls = {0};

    c10k_loop_account(&ls, C10K_STALL_NS + 1);
    c10k_loop_account(&ls, 25 * 1000000LL);
    c10k_loop_account(&ls, 500000);
    cr_assert_eq(get(&ls.iterations), 3);
    cr_assert_eq(get(&ls.stalls), 2);
    cr_assert_eq(get(&ls.stall_us), 1000 + 25000);
}

Test(loopstat, busy_idle_times_a_blocking_iteration)
{
    c10k_loopstat_t ls = {0};

    c10k_loop_busy(&ls, c10k_now_ns());
    sleep_ms(5); /* a call that blocked the loop */
    c10k_loop_idle(&ls);
    cr_assert_eq(get(&ls.stalls), 1);
    cr_assert_geq(get(&ls.stall_us), 5000, "at least the time it blocked");
    cr_assert_lt(get(&ls.stall_us), 5000000, "and nothing like a clock in the wrong unit");
    cr_assert_eq(ls.busy_ns, 0, "waiting again");
}

Test(loopstat, touch_marks_the_first_callback_only)
{
    c10k_loopstat_t ls = {0};
    int64_t first;

    c10k_loop_touch(&ls);
    first = ls.busy_ns;
    cr_assert_gt(first, 0);
    sleep_ms(2);
    c10k_loop_touch(&ls); /* a later callback of the same iteration */
    cr_assert_eq(ls.busy_ns, first, "the iteration began at its first callback");
    c10k_loop_idle(&ls);
    cr_assert_eq(get(&ls.stalls), 1, "two callbacks over 1 ms in all make a stall");
}

Test(loopstat, an_idle_wake_up_counts_nothing)
{
    c10k_loopstat_t ls = {0};

    c10k_loop_idle(&ls); /* the loop waits again without a callback having run */
    c10k_loop_idle(&ls);
    cr_assert_eq(get(&ls.iterations), 0);
    cr_assert_eq(get(&ls.stalls), 0);
}
