/*
 * test_warm.c - the helpers of epoll --helpers (common/warm.c).
 *
 * A file range evicted from the page cache must be reported not resident;
 * once a helper has read it, resident; a job's completion must come back
 * through the eventfd only after the range is in memory; and the pump's
 * gate must hold a response until the helper's report, as epoll does.
 *
 * Eviction needs a filesystem with a page cache of its own: the files live
 * in the build directory, not in /tmp (which may be tmpfs, where
 * POSIX_FADV_DONTNEED drops nothing). A test that cannot evict says so and
 * is skipped rather than passed.
 */
#include "conn.h"
#include "warm.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG (1024 * 1024)

static char dir[512];
static char path[600];
static c10k_warm_t w;
static c10k_server_t srv;

static void write_file(const char *p, size_t n)
{
    char *buf = malloc(n);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    cr_assert(buf && fd >= 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
    cr_assert(write(fd, buf, n) == (ssize_t)n);
    cr_assert(fsync(fd) == 0, "written back, so its pages are clean and can be dropped");
    close(fd);
    free(buf);
}

static void evict(int fd)
{
    cr_assert(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
}

/* Pages of fd in memory, by mincore, independently of warm.c. */
static size_t resident_pages(int fd, size_t len)
{
    long ps = sysconf(_SC_PAGESIZE);
    size_t pages = (len + (size_t)ps - 1) / (size_t)ps, n = 0;
    unsigned char *vec = malloc(pages);
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

    cr_assert(vec && map != MAP_FAILED);
    cr_assert(mincore(map, len, vec) == 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    munmap(map, len);
    free(vec);
    return n;
}

/* A cold file of BIG bytes, or skip when this filesystem cannot evict. */
static int cold_file(void)
{
    int fd;

    write_file(path, BIG);
    fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    evict(fd);
    if (resident_pages(fd, BIG) != 0) {
        close(fd);
        cr_skip_test("%s: POSIX_FADV_DONTNEED left pages in memory (tmpfs?): cannot test", dir);
    }
    return fd;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/c10k-warm-XXXXXX", getenv("C10K_TEST_DIR") ?: "/var/tmp");
    cr_assert(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/big.bin", dir);
    memset(&w, 0, sizeof(w));
}

static void give_back(c10k_warm_job_t *j, void *arg)
{
    (*(int *)arg)++;
    free(j);
}

static void teardown(void)
{
    char cmd[700];

    c10k_warm_fini(&w, give_back, &(int){0});
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert(system(cmd) == 0);
}

TestSuite(warm, .init = setup, .fini = teardown);

/* Wait for the pool's eventfd, then reap. */
static c10k_warm_job_t *wait_done(int timeout_ms)
{
    struct pollfd p = {.fd = w.efd, .events = POLLIN};

    cr_assert_eq(poll(&p, 1, timeout_ms), 1, "a helper reported within %d ms", timeout_ms);
    return c10k_warm_reap(&w);
}

Test(warm, an_evicted_range_is_not_resident_and_a_read_one_is)
{
    int fd = cold_file();
    char *scratch = malloc(65536);

    cr_assert_eq(c10k_warm_init(&w, 1), 0);
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, BIG), 0, "evicted: not resident");
    cr_assert_eq(c10k_warm_resident(&w, fd, 4096, 100), 0, "nor any part of it");
    cr_assert_eq(c10k_warm_range(fd, 0, 8192, scratch, 65536), 0);
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, 8192), 1, "the part read in is");
    cr_assert_eq(c10k_warm_resident(&w, fd, 100, 4000), 1, "a range inside it too");
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, BIG), 0, "the whole file is not");
    cr_assert_eq(c10k_warm_range(fd, 0, BIG, scratch, 65536), 0);
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, BIG), 1);
    cr_assert_eq(resident_pages(fd, BIG), BIG / (size_t)sysconf(_SC_PAGESIZE),
                 "mincore agrees: every page is in");
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, 0), 1, "an empty range is trivially in");
    free(scratch);
    close(fd);
}

Test(warm, a_job_reports_only_once_its_range_is_in_memory)
{
    int fd = cold_file();
    int owner = 42;
    c10k_warm_job_t *j;

    cr_assert_eq(c10k_warm_init(&w, 2), 0);
    j = c10k_warm_submit(&w, fd, 0, BIG, &owner);
    cr_assert_not_null(j);
    close(fd); /* the caller may close its descriptor: the job has its own */
    j = wait_done(10000);
    cr_assert_not_null(j, "the job came back");
    cr_assert_null(j->next);
    cr_assert_eq(j->owner, &owner);
    cr_assert_eq(j->err, 0);
    cr_assert_eq(j->fd, -1, "its descriptor is closed");
    fd = open(path, O_RDONLY);
    cr_assert_eq(resident_pages(fd, BIG), BIG / (size_t)sysconf(_SC_PAGESIZE),
                 "at the report, every page of the range is in memory");
    cr_assert_eq(c10k_warm_resident(&w, fd, 0, BIG), 1);
    cr_assert_eq(atomic_load(&w.handoffs), 1);
    free(j);
    close(fd);
}

Test(warm, fini_gives_back_what_was_not_reaped)
{
    int fd = cold_file(), given = 0;

    cr_assert_eq(c10k_warm_init(&w, 1), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(c10k_warm_submit(&w, fd, 0, BIG, NULL));
    close(fd);
    c10k_warm_fini(&w, give_back, &given);
    cr_assert_eq(given, 5, "every job, done or not, back to its owner");
    cr_assert_eq(w.efd, -1);
}

Test(warm, init_refuses_a_bad_count)
{
    cr_assert_eq(c10k_warm_init(&w, 0), -EINVAL);
    c10k_warm_fini(&w, give_back, &(int){0}); /* safe on what init left */
    memset(&w, 0, sizeof(w));
    cr_assert_eq(c10k_warm_init(&w, C10K_HELPERS_MAX + 1), -EINVAL);
}

/* --- the gate epoll puts before sendfile ------------------------------------------- */

typedef struct {
    bool warmed;
    c10k_warm_job_t *job;
} gate_state_t;

/* epoll's gate (servers/epoll/epoll.c), on a conn of the test's own. */
static bool warm_gate(void *arg, c10k_conn_t *cc)
{
    gate_state_t *g = arg;
    const c10k_resp_t *r = &cc->io->resp;

    if (g->warmed) {
        g->warmed = false;
        return true;
    }
    if (r->body_fd < 0 || r->body_len == 0 ||
        c10k_warm_resident(&w, r->body_fd, r->body_off, r->body_len) != 0)
        return true;
    g->job = c10k_warm_submit(&w, r->body_fd, r->body_off, r->body_len, g);
    return g->job == NULL;
}

static size_t drain(int fd)
{
    char buf[65536];
    size_t n = 0;
    ssize_t r;

    while ((r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        n += (size_t)r;
    return n;
}

Test(warm, the_gate_serves_a_cold_range_only_after_the_helper_reports)
{
    static const char get[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    c10k_iopool_t pool = {.n = 0};
    c10k_ready_t ready = {.readable = true, .writable = true};
    gate_state_t g = {0};
    c10k_conn_t c;
    c10k_warm_job_t *j;
    int sv[2], fd = cold_file();
    size_t got = 0;

    close(fd);
    memset(&srv, 0, sizeof(srv));
    srv.log_fd = -1;
    srv.cfg.header_ms = srv.cfg.keepalive_ms = 5000;
    srv.cfg.lingering_time_ms = srv.cfg.lingering_timeout_ms = 5000;
    cr_assert_eq(c10k_site_open(&srv.site, dir, 0), 0);
    cr_assert_eq(c10k_warm_init(&w, 1), 0);
    cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    c10k_conn_start(&c, &srv, NULL, 0);
    cr_assert(write(sv[1], get, strlen(get)) == (ssize_t)strlen(get));
    cr_assert_eq(c10k_conn_pump_gated(&c, sv[0], &ready, &pool, 0, warm_gate, &g), C10K_SEND);
    cr_assert_not_null(g.job, "the cold range went to a helper");
    cr_assert_eq(drain(sv[1]), 0, "and not a byte was sent, not even the head");
    j = wait_done(10000);
    cr_assert_eq(j, g.job);
    fd = open(path, O_RDONLY);
    cr_assert_eq(resident_pages(fd, BIG), BIG / (size_t)sysconf(_SC_PAGESIZE),
                 "the helper's report means the range is in memory");
    close(fd);
    free(j);
    g.job = NULL;
    g.warmed = true;
    /* The socket holds less than 1 MiB: pump and drain until it is all out. */
    for (int i = 0; i < 1000 && c.next == C10K_SEND; i++) {
        ready.writable = true;
        c10k_conn_pump_gated(&c, sv[0], &ready, &pool, 0, warm_gate, &g);
        got += drain(sv[1]);
    }
    got += drain(sv[1]);
    cr_assert_eq(c.next, C10K_READ, "the response went in full");
    cr_assert_gt(got, (size_t)BIG, "head and the whole body");
    cr_assert_null(g.job, "sent from memory, no second hand-off");
    c10k_conn_end(&c);
    c10k_iopool_free(&pool);
    c10k_site_close(&srv.site);
    close(sv[0]);
    close(sv[1]);
}
