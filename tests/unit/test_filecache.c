/*
 * test_filecache.c - unit tests of the open-file cache (common/filecache.c)
 * and of the handler running with it (--open-file-cache).
 *
 * The cache's clock is injected: the tests move time by hand, so
 * "revalidated after the interval" is exact and takes no sleeping. Criterion
 * runs each test in a process of its own, so each handler test starts with
 * a fresh thread cache.
 */
#include "filecache.h"
#include "http.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VALID_MS 1000
#define SECRET   "TOP-SECRET-outside-the-root"

static char base[256], root[300];
static c10k_site_t site;
static int64_t fake_now = 1000000;

static int64_t fake_clock(void)
{
    return fake_now;
}

static void path_of(const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", root, rel);
}

/* Write a file the way a deploy does: a new file renamed over the old one. */
static void put_file(const char *rel, const char *data, size_t len)
{
    char path[512], tmp[520];
    int fd;

    path_of(rel, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0, "create %s", tmp);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    cr_assert(rename(tmp, path) == 0);
}

static void put_text(const char *rel, const char *text)
{
    put_file(rel, text, strlen(text));
}

/* n bytes of c: a file too big for the content cache when n > 16 KiB. */
static void put_filled(const char *rel, char c, size_t n)
{
    char *b = malloc(n);

    cr_assert(b);
    memset(b, c, n);
    put_file(rel, b, n);
    free(b);
}

static void fixture_up(void)
{
    char path[600];

    snprintf(base, sizeof(base), "/tmp/c10k-fcache-XXXXXX");
    cr_assert(mkdtemp(base));
    snprintf(root, sizeof(root), "%s/www", base);
    cr_assert(mkdir(root, 0755) == 0);
    path_of("sub", path, sizeof(path));
    cr_assert(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/outside.txt", base);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(SECRET "\n", f);
    fclose(f);
    put_text("a.txt", "aaaa\n");
    put_text("b.txt", "bbbb\n");
    put_text("inside.txt", "inside\n");
    put_text("sub/index.html", "<h1>sub</h1>\n");
    put_text("digits.txt", "0123456789");
    cr_assert(c10k_site_open(&site, root, 0) == 0);
}

static void fixture_down(void)
{
    char cmd[300];

    c10k_site_close(&site);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    cr_assert(system(cmd) == 0);
}

TestSuite(fcache, .init = fixture_up, .fini = fixture_down);

/* ---- the cache alone ------------------------------------------------------------------------ */

static int open_rel(const char *rel, struct stat *st)
{
    char path[600];
    int fd;

    path_of(rel, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open %s", path);
    cr_assert(fstat(fd, st) == 0);
    return fd;
}

/* Resolve rel and put it, as the handler does. */
static c10k_fcfile_t *put_rel(c10k_fcache_t *c, const char *rel, int64_t now)
{
    struct stat st;
    int fd = open_rel(rel, &st);
    c10k_fcfile_t *f = c10k_fcache_put(c, rel, strlen(rel), fd, &st, now);

    cr_assert(f, "put %s", rel);
    return f;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void expect_content(int fd, const char *want)
{
    char buf[256] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    cr_assert(n >= 0, "pread: %s", strerror(errno));
    buf[n] = '\0';
    cr_expect_str_eq(buf, want);
}

static bool cached(c10k_fcache_t *c, const char *rel, int64_t now)
{
    c10k_fcfile_t *f = c10k_fcache_get(c, rel, strlen(rel), now);

    if (f)
        c10k_fcache_release(f);
    return f != NULL;
}

Test(fcache, lru_evicts_the_least_recently_used)
{
    c10k_fcache_t *c = c10k_fcache_new(2, VALID_MS);

    c10k_fcache_release(put_rel(c, "a.txt", 0));
    c10k_fcache_release(put_rel(c, "b.txt", 0));
    cr_assert(cached(c, "a.txt", 1)); /* a is now the most recently used */
    c10k_fcache_release(put_rel(c, "digits.txt", 2));
    cr_expect(!cached(c, "b.txt", 3), "b was the least recently used");
    cr_expect(cached(c, "a.txt", 3));
    cr_expect(cached(c, "digits.txt", 3));
    c10k_fcache_free(c);
}

Test(fcache, entries_are_bounded_and_a_full_cache_serves_uncached)
{
    c10k_fcache_t *c = c10k_fcache_new(4, VALID_MS);
    c10k_fcfile_t *held[8];
    c10k_fcache_stats_t st;
    char name[32];
    struct stat sb;
    int fd;

    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "f%d.txt", i);
        put_text(name, "x");
        c10k_fcache_release(put_rel(c, name, i));
    }
    c10k_fcache_stats(c, &st);
    cr_expect_eq(st.indexed, 4);
    cr_expect_leq(st.made, 8);
    /* Hold 8 entries: 4 indexed, 4 evicted while held. */
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "f%d.txt", i);
        held[i] = put_rel(c, name, 100);
    }
    c10k_fcache_stats(c, &st);
    cr_expect_eq(st.held, 8);
    cr_expect_eq(st.made, 8);
    /* Every entry is held: the next name is not cached, and its descriptor
     * stays the caller's. */
    fd = open_rel("f19.txt", &sb);
    cr_expect_null(c10k_fcache_put(c, "f19.txt", 7, fd, &sb, 101));
    cr_expect(fd_open(fd), "the caller's descriptor was closed");
    close(fd);
    for (int i = 0; i < 8; i++)
        c10k_fcache_release(held[i]);
    c10k_fcache_stats(c, &st);
    cr_expect_eq(st.held, 0);
    cr_expect_leq(st.indexed, 4);
    c10k_fcache_free(c);
}

Test(fcache, content_is_bounded_in_bytes)
{
    c10k_fcache_t *c = c10k_fcache_new(1000, VALID_MS);
    c10k_fcache_stats_t st;
    int with = 0, without = 0;
    char name[32];

    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "s%d.bin", i);
        put_filled(name, 'a' + i % 26, C10K_FCACHE_SMALL_MAX);
        c10k_fcfile_t *f = put_rel(c, name, 0);
        if (f->data) {
            with++;
            cr_expect_eq(f->data[0], 'a' + i % 26);
            cr_expect_eq(f->data[C10K_FCACHE_SMALL_MAX - 1], 'a' + i % 26);
        } else {
            without++;
        }
        c10k_fcache_release(f);
    }
    c10k_fcache_stats(c, &st);
    cr_expect_leq(st.data_bytes, C10K_FCACHE_DATA_MAX);
    cr_expect_eq(with, C10K_FCACHE_DATA_MAX / C10K_FCACHE_SMALL_MAX);
    cr_expect_gt(without, 0);
    put_filled("big.bin", 'z', C10K_FCACHE_SMALL_MAX + 1);
    c10k_fcfile_t *f = put_rel(c, "big.bin", 0);
    cr_expect_null(f->data, "a file above the size limit is sent from its descriptor");
    c10k_fcache_release(f);
    c10k_fcache_free(c);
}

Test(fcache, long_names_are_not_cached)
{
    c10k_fcache_t *c = c10k_fcache_new(4, VALID_MS);
    char key[C10K_FCACHE_KEY_MAX + 8];
    struct stat st;
    int fd = open_rel("a.txt", &st);

    memset(key, 'k', sizeof(key));
    cr_expect_null(c10k_fcache_put(c, key, C10K_FCACHE_KEY_MAX, fd, &st, 0));
    cr_expect(fd_open(fd));
    close(fd);
    cr_expect_null(c10k_fcache_get(c, key, C10K_FCACHE_KEY_MAX, 0));
    c10k_fcache_free(c);
}

Test(fcache, revalidation_after_the_interval)
{
    c10k_fcache_t *c = c10k_fcache_new(4, VALID_MS);
    c10k_fcfile_t *f = put_rel(c, "a.txt", 0), *again;
    ino_t ino = f->st.st_ino;
    struct stat st;
    int fd;

    c10k_fcache_release(f);
    cr_expect(cached(c, "a.txt", VALID_MS - 1));
    cr_expect(!cached(c, "a.txt", VALID_MS), "trusted past its interval");
    /* The same file again: the entry stays, the new descriptor is closed. */
    fd = open_rel("a.txt", &st);
    again = c10k_fcache_put(c, "a.txt", 5, fd, &st, VALID_MS);
    cr_expect_eq(again, f);
    cr_expect(!fd_open(fd), "the duplicate descriptor was kept");
    c10k_fcache_release(again);
    cr_expect(cached(c, "a.txt", 2 * VALID_MS - 1), "trusted again from the revalidation");
    /* Another file under the name: a fresh entry. */
    put_text("a.txt", "changed\n");
    again = put_rel(c, "a.txt", 2 * VALID_MS);
    cr_expect_neq(again->st.st_ino, ino, "the replaced file's entry was kept");
    expect_content(again->fd, "changed\n");
    cr_expect(again->data && memcmp(again->data, "changed\n", 8) == 0);
    c10k_fcache_release(again);
    c10k_fcache_free(c);
}

Test(fcache, evicted_while_held_stays_open_until_released)
{
    c10k_fcache_t *c = c10k_fcache_new(1, VALID_MS);
    c10k_fcfile_t *a = put_rel(c, "a.txt", 0);
    int fd = a->fd;
    c10k_fcfile_t *b = put_rel(c, "b.txt", 1); /* evicts a, which is held */

    cr_expect(!cached(c, "a.txt", 2));
    cr_expect_neq(b->fd, fd, "a held descriptor was reused");
    cr_expect(fd_open(fd), "a held descriptor was closed on eviction");
    expect_content(fd, "aaaa\n");
    cr_expect(a->data && memcmp(a->data, "aaaa\n", 5) == 0, "a held entry's content was reused");
    c10k_fcache_release(b);
    c10k_fcache_release(a);
    cr_expect(!fd_open(fd), "the last release did not close it");
    c10k_fcache_free(c);
}

Test(fcache, forgotten_while_held_stays_open_until_released)
{
    c10k_fcache_t *c = c10k_fcache_new(4, VALID_MS);
    c10k_fcfile_t *a = put_rel(c, "a.txt", 0);
    int fd = a->fd;

    c10k_fcache_forget(c, "a.txt", 5);
    cr_expect(!cached(c, "a.txt", 1));
    cr_expect(fd_open(fd));
    c10k_fcache_release(a);
    cr_expect(!fd_open(fd));
    c10k_fcache_free(c);
}

Test(fcache, freed_while_held_closes_at_the_last_release)
{
    c10k_fcache_t *c = c10k_fcache_new(4, VALID_MS);
    c10k_fcfile_t *a = put_rel(c, "a.txt", 0);
    c10k_fcfile_t *b = put_rel(c, "b.txt", 0);
    int afd = a->fd, bfd = b->fd;

    c10k_fcache_release(b);
    c10k_fcache_free(c); /* a thread exits while a response still holds a */
    cr_expect(!fd_open(bfd), "an entry nobody held stayed open");
    cr_expect(fd_open(afd), "a held entry was closed");
    expect_content(afd, "aaaa\n");
    c10k_fcache_release(a); /* frees the cache: LeakSanitizer checks */
    cr_expect(!fd_open(afd));
}

/* ---- the handler with the cache ---------------------------------------------------------- */

static char head[C10K_HEAD_BUF];

static c10k_fcache_t *cache_on(unsigned max)
{
    c10k_fcache_t *c;

    site.fcache_max = max;
    site.fcache_valid_ms = VALID_MS;
    c = c10k_fcache_thread(max, VALID_MS);
    cr_assert(c);
    c10k_fcache_set_clock(c, fake_clock);
    return c;
}

/* Plan one request (the caller finishes resp). */
static int request(const char *raw, c10k_resp_t *resp)
{
    c10k_req_t req;
    ssize_t used;

    c10k_req_init(&req);
    used = c10k_http_handle(&site, &req, raw, strlen(raw), head, sizeof(head), resp);
    cr_assert_gt(used, 0, "not handled: %s", raw);
    return resp->status;
}

/* The body a plan sends, as a string. */
static const char *body_of(const c10k_resp_t *resp)
{
    static char buf[64 * 1024];
    size_t n = 0;

    if (resp->body_fd >= 0) {
        ssize_t r = pread(resp->body_fd, buf, resp->body_len, resp->body_off);
        cr_assert_eq(r, (ssize_t)resp->body_len, "pread from the plan's descriptor: %s",
                     r < 0 ? strerror(errno) : "short");
        n = (size_t)r;
    } else if (resp->body_mem) {
        memcpy(buf, resp->body_mem, resp->body_mem_len);
        n = resp->body_mem_len;
    }
    buf[n] = '\0';
    return buf;
}

/* GET path: the status, and the body in *body (a static buffer). */
static int get(const char *path, const char **body)
{
    char raw[512];
    c10k_resp_t resp;
    int status;

    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    status = request(raw, &resp);
    *body = body_of(&resp);
    cr_expect(strstr(*body, SECRET) == NULL, "%s: served the file outside the root", path);
    c10k_resp_finish(&resp);
    return status;
}

static void expect_get(const char *path, int status, const char *body)
{
    const char *got;

    cr_expect_eq(get(path, &got), status, "%s: status", path);
    if (body)
        cr_expect_str_eq(got, body, "%s: body", path);
}

Test(fcache, replaced_file_is_served_fresh_after_the_interval)
{
    cache_on(8);
    expect_get("/a.txt", 200, "aaaa\n");
    put_text("a.txt", "a new one\n");
    fake_now += VALID_MS - 1;
    expect_get("/a.txt", 200, "aaaa\n"); /* still trusted: the cache answers */
    fake_now += 1;
    expect_get("/a.txt", 200, "a new one\n");
}

Test(fcache, replaced_large_file_is_served_fresh_after_the_interval)
{
    char want[C10K_FCACHE_SMALL_MAX + 2];

    put_filled("big.bin", 'x', C10K_FCACHE_SMALL_MAX + 1);
    cache_on(8);
    memset(want, 'x', sizeof(want) - 1);
    want[sizeof(want) - 1] = '\0';
    expect_get("/big.bin", 200, want);
    put_filled("big.bin", 'y', C10K_FCACHE_SMALL_MAX + 1);
    expect_get("/big.bin", 200, want); /* the cached descriptor is the old file */
    fake_now += VALID_MS;
    memset(want, 'y', sizeof(want) - 1);
    expect_get("/big.bin", 200, want);
}

Test(fcache, deleted_file_is_404_after_the_interval)
{
    char path[600];

    c10k_fcache_t *c = cache_on(8);
    c10k_fcache_stats_t st;
    expect_get("/a.txt", 200, "aaaa\n");
    path_of("a.txt", path, sizeof(path));
    cr_assert(unlink(path) == 0);
    expect_get("/a.txt", 200, "aaaa\n");
    fake_now += VALID_MS;
    expect_get("/a.txt", 404, NULL);
    c10k_fcache_stats(c, &st);
    cr_expect_eq(st.indexed, 0, "the entry of a deleted file stayed");
}

Test(fcache, symlink_swapped_outside_after_caching_is_404)
{
    char link[600], tmp[610];

    path_of("link.txt", link, sizeof(link));
    cr_assert(symlink("inside.txt", link) == 0);
    cache_on(8);
    expect_get("/link.txt", 200, "inside\n");
    /* Swap the link, atomically, to point outside the root. */
    snprintf(tmp, sizeof(tmp), "%s.new", link);
    cr_assert(symlink("../outside.txt", tmp) == 0);
    cr_assert(rename(tmp, link) == 0);
    expect_get("/link.txt", 200, "inside\n"); /* the old inside file, never the new target */
    fake_now += VALID_MS;
    expect_get("/link.txt", 404, NULL);
    fake_now += VALID_MS;
    expect_get("/link.txt", 404, NULL);
}

Test(fcache, directory_index_is_cached_and_revalidated)
{
    char path[600];

    cache_on(8);
    expect_get("/sub/", 200, "<h1>sub</h1>\n");
    expect_get("/sub", 301, NULL); /* the directory itself is never a cached file */
    path_of("sub/index.html", path, sizeof(path));
    cr_assert(unlink(path) == 0);
    expect_get("/sub/", 200, "<h1>sub</h1>\n");
    fake_now += VALID_MS;
    expect_get("/sub/", 403, NULL); /* a directory without an index, as uncached */
}

/* A response in flight keeps its descriptor when another request of the
 * same thread evicts its entry: the eviction must neither close it nor let
 * the number be reused before c10k_resp_finish(). */
Test(fcache, eviction_while_a_response_is_in_flight)
{
    char want[C10K_FCACHE_SMALL_MAX + 2];
    c10k_resp_t a, small;
    int fd;

    put_filled("big.bin", 'x', C10K_FCACHE_SMALL_MAX + 1);
    memset(want, 'x', sizeof(want) - 1);
    want[sizeof(want) - 1] = '\0';
    cache_on(1);
    cr_assert_eq(request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", &a), 200);
    cr_assert_geq(a.body_fd, 0, "a large file is sent from its descriptor");
    fd = a.body_fd;
    cr_assert_eq(request("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", &small), 200);
    expect_get("/b.txt", 200, "bbbb\n"); /* evicts a.txt too, which is in flight */
    expect_get("/digits.txt", 200, "0123456789");
    cr_expect(fd_open(fd), "the descriptor of a response in flight was closed");
    cr_expect_str_eq(body_of(&a), want);
    cr_expect_str_eq(body_of(&small), "aaaa\n", "the content of a response in flight changed");
    c10k_resp_finish(&small);
    c10k_resp_finish(&a);
    cr_expect(!fd_open(fd), "finishing the last response did not close it");
}

Test(fcache, revalidated_away_while_a_response_is_in_flight)
{
    char want[C10K_FCACHE_SMALL_MAX + 2];
    c10k_resp_t a;
    int fd;

    put_filled("big.bin", 'x', C10K_FCACHE_SMALL_MAX + 1);
    memset(want, 'x', sizeof(want) - 1);
    want[sizeof(want) - 1] = '\0';
    cache_on(4);
    cr_assert_eq(request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", &a), 200);
    fd = a.body_fd;
    put_filled("big.bin", 'y', C10K_FCACHE_SMALL_MAX + 1);
    fake_now += VALID_MS;
    expect_get("/big.bin", 200, NULL); /* a fresh entry replaces the one in flight */
    cr_expect(fd_open(fd));
    cr_expect_str_eq(body_of(&a), want, "the response in flight changed file");
    c10k_resp_finish(&a);
    cr_expect(!fd_open(fd));
}

Test(fcache, conditional_range_and_head_on_a_cached_file)
{
    c10k_fcache_t *c = cache_on(8);
    c10k_fcache_stats_t st;
    c10k_resp_t r;
    char raw[256], etag[64];
    const char *p;

    expect_get("/digits.txt", 200, "0123456789"); /* warm: the content is cached */
    cr_assert_eq(request("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n", &r),
                 206);
    cr_expect_str_eq(body_of(&r), "234");
    cr_expect(memmem(head, r.head_len, "Content-Range: bytes 2-4/10\r\n", 29));
    cr_expect(memmem(head, r.head_len, "Content-Length: 3\r\n", 19));
    c10k_resp_finish(&r);
    cr_assert_eq(request("GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n", &r), 200);
    p = memmem(head, r.head_len, "ETag: ", 6);
    cr_assert(p);
    snprintf(etag, sizeof(etag), "%.*s", (int)(strchr(p, '\r') - p - 6), p + 6);
    c10k_resp_finish(&r);
    snprintf(raw, sizeof(raw), "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n",
             etag);
    cr_expect_eq(request(raw, &r), 304);
    cr_expect_eq(r.body_ref, NULL, "a 304 holds no file");
    c10k_resp_finish(&r);
    snprintf(raw, sizeof(raw),
             "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=5-\r\nIf-Range: \"x\"\r\n\r\n");
    cr_expect_eq(request(raw, &r), 200, "If-Range with an old validator: the whole file");
    cr_expect_str_eq(body_of(&r), "0123456789");
    c10k_resp_finish(&r);
    cr_expect_eq(request("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-\r\n\r\n", &r),
                 416);
    c10k_resp_finish(&r);
    cr_expect_eq(request("HEAD /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n", &r), 200);
    cr_expect_eq(r.body_ref, NULL, "HEAD holds no file");
    c10k_resp_finish(&r);
    c10k_fcache_stats(c, &st);
    cr_expect_eq(st.held, 0, "a finished response still holds its entry");
    cr_expect_eq(st.indexed, 1);
}

Test(fcache, a_small_file_leaves_with_its_head)
{
    c10k_resp_t r;

    cache_on(8);
    cr_assert_eq(request("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", &r), 200);
    cr_expect_eq(r.body_fd, -1, "a small cached file is sent from memory, with its head");
    cr_expect_eq(r.body_mem_len, 5);
    cr_expect_neq(r.body_ref, NULL);
    cr_expect_eq(c10k_resp_take_fd(&r), -1, "a model must not close the cache's descriptor");
    c10k_resp_finish(&r);
    cr_expect_eq(r.body_ref, NULL);
}

Test(fcache, take_fd_leaves_a_cached_descriptor_alone)
{
    c10k_resp_t r;
    int fd;

    put_filled("big.bin", 'x', C10K_FCACHE_SMALL_MAX + 1);
    cache_on(8);
    cr_assert_eq(request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", &r), 200);
    fd = r.body_fd;
    cr_expect_eq(c10k_resp_take_fd(&r), -1);
    c10k_resp_finish(&r);
    cr_expect(fd_open(fd), "the cache's descriptor was closed with the response");
    site.fcache_max = 0; /* uncached: the plan's own descriptor is the caller's */
    cr_assert_eq(request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", &r), 200);
    fd = c10k_resp_take_fd(&r);
    cr_expect_geq(fd, 0);
    cr_expect_eq(r.body_fd, -1);
    c10k_resp_finish(&r);
    cr_expect(fd_open(fd), "c10k_resp_finish() closed a taken descriptor");
    close(fd);
}
