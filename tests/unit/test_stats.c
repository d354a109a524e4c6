/*
 * test_stats.c - the model stats file (common/stats.c): the JSON it writes,
 * counters under one name summed, removed counters still counted, the
 * periodic rewrite while running, and the errors.
 */
#include "stats.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], path[128];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/c10k-stats-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/stats.json", dir);
}

static void remove_dir(void)
{
    char tmp[160];

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(path);
    unlink(tmp);
    rmdir(dir);
}

static const char *read_file(void)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    cr_assert_not_null(f, "%s was not written", path);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

TestSuite(stats, .init = make_dir, .fini = remove_dir);

Test(stats, writes_the_counters_summed_by_name)
{
    static atomic_ullong a = 5, b = 7, c = 1;

    cr_assert_eq(c10k_stats_add("user_switches", &a), 0);
    cr_assert_eq(c10k_stats_add("user_switches", &b), 0);
    cr_assert_eq(c10k_stats_add("spawned", &c), 0);
    cr_assert_eq(c10k_stats_start(path, "coro"), 0);
    cr_assert_str_eq(
        read_file(),
        "{\"model\": \"coro\", \"counters\": {\"user_switches\": 12, \"spawned\": 1}}\n");
    /* A removed counter's last value stays in the total. */
    atomic_store(&b, 10);
    c10k_stats_remove(&b);
    atomic_store(&b, 1000);
    c10k_stats_inc(&a);
    cr_assert_eq(c10k_stats_stop(true), 0);
    cr_assert_str_eq(
        read_file(),
        "{\"model\": \"coro\", \"counters\": {\"user_switches\": 16, \"spawned\": 1}}\n");
}

Test(stats, rewritten_while_running)
{
    static atomic_ullong a = 0;
    char want[128];

    cr_assert_eq(c10k_stats_add("ticks", &a), 0);
    cr_assert_eq(c10k_stats_start(path, "epoll"), 0);
    cr_assert_str_eq(read_file(), "{\"model\": \"epoll\", \"counters\": {\"ticks\": 0}}\n");
    atomic_store(&a, 42);
    usleep(3 * C10K_STATS_PERIOD_MS * 1000);
    snprintf(want, sizeof(want), "{\"model\": \"epoll\", \"counters\": {\"ticks\": 42}}\n");
    cr_assert_str_eq(read_file(), want);
    atomic_store(&a, 43);
    /* Not a clean stop: the file keeps what the thread last wrote. */
    cr_assert_eq(c10k_stats_stop(false), 0);
    cr_assert_str_eq(read_file(), want);
}

Test(stats, no_counters_is_an_empty_object)
{
    cr_assert_eq(c10k_stats_start(path, "threaded"), 0);
    cr_assert_eq(c10k_stats_stop(true), 0);
    cr_assert_str_eq(read_file(), "{\"model\": \"threaded\", \"counters\": {}}\n");
}

Test(stats, errors)
{
    static atomic_ullong a;
    char bad[160];

    cr_assert_eq(c10k_stats_add("has space", &a), -EINVAL);
    cr_assert_eq(c10k_stats_add("quote\"", &a), -EINVAL);
    cr_assert_eq(c10k_stats_add("", &a), -EINVAL);
    snprintf(bad, sizeof(bad), "%s/no/such/dir/stats.json", dir);
    cr_assert_eq(c10k_stats_start(bad, "coro"), -ENOENT);
    cr_assert_eq(c10k_stats_stop(true), 0, "nothing was started");
}
