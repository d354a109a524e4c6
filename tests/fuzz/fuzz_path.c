/*
 * fuzz_path.c - libFuzzer target: path resolution never escapes the root.
 *
 * The fuzzed bytes are the request target of one GET (and, when the first
 * byte is odd, of a HEAD) sent to the handler against a fixture root built
 * in LLVMFuzzerInitialize():
 *
 *     TMP/outside/secret.txt           must never be opened
 *     TMP/root/index.html, a.txt, sub/b.txt, sub/index.html, dotfiles,
 *             "a b.txt", "%2e.txt", "back\slash.txt", and symlinks both
 *             inside (link-in -> sub/b.txt) and out of the root
 *             (link-out -> ../outside, link-secret -> ../outside/secret.txt,
 *             link-abs -> /etc, sub/link-up -> ../../outside/secret.txt)
 *
 * Each input is run twice, once with openat2(RESOLVE_BENEATH) and once with
 * site.have_openat2 forced off, so the fallback resolver (used on kernels
 * before 5.6) is fuzzed as hard as the main one. After every call:
 *
 *   - if the plan has a body_fd, readlink(/proc/self/fd/N) must be a regular
 *     file strictly beneath realpath(root): anything else is an escape and
 *     the target aborts (libFuzzer saves the input);
 *   - the head must fit the head buffer and end with CRLF CRLF, and its
 *     status line must carry resp.status;
 *   - c10k_resp_finish() must close the body_fd, and no other descriptor
 *     may be left open (a leak per request would exhaust a server).
 *
 * Uses only the public API in common/http.h. Build and run:
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *         tests/fuzz/fuzz_path.c common/http*.c -lhttp_parser -o build-fuzz/fuzz_path
 *     build-fuzz/fuzz_path -max_total_time=60 CORPUS_COPY tests/fuzz/corpus_path
 *
 * (tests/fuzz/run.sh SECONDS does both for every target.)
 */
#include "http.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REQ_MAX (C10K_REQ_BUF + 64)

static c10k_site_t site_openat2, site_fallback;
static char root_real[PATH_MAX];
static size_t root_real_len;
static char tmp_dir[] = "/tmp/c10k-fuzz-path-XXXXXX";
static char tmp_real[PATH_MAX];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_path: %s: %s\n", what, strerror(errno));
    abort();
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die(path);
}

static void put_link(const char *dir, const char *name, const char *to)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (symlink(to, path) < 0)
        die(path);
}

static void put_dir(const char *dir, const char *name)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (mkdir(path, 0755) < 0)
        die(path);
}

static void remove_tree(void)
{
    char cmd[PATH_MAX + 32];

    c10k_site_close(&site_openat2);
    c10k_site_close(&site_fallback);
    /* The fixture is ours, under a mkdtemp() name. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_path: could not remove %s\n", tmp_dir);
}

/* Descriptors open on anything in the fixture besides the two roots: after
 * c10k_resp_finish() there must be none (a leak per request would exhaust a
 * server). libFuzzer's own descriptors point elsewhere and are not counted. */
static int fixture_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        die("/proc/self/fd");
    while ((e = readdir(d))) {
        char link[64], path[PATH_MAX];
        int fd = atoi(e->d_name);
        ssize_t len;
        if (e->d_name[0] == '.' || fd == dirfd(d) || fd == site_openat2.root_fd ||
            fd == site_fallback.root_fd)
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        len = readlink(link, path, sizeof(path) - 1);
        if (len > 0 && strncmp(path, tmp_real, strlen(tmp_real)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void make_fixture(void)
{
    char root[PATH_MAX], outside[PATH_MAX], sub[PATH_MAX];

    if (!mkdtemp(tmp_dir))
        die("mkdtemp");
    snprintf(root, sizeof(root), "%s/root", tmp_dir);
    snprintf(outside, sizeof(outside), "%s/outside", tmp_dir);
    snprintf(sub, sizeof(sub), "%s/sub", root);
    put_dir(tmp_dir, "root");
    put_dir(tmp_dir, "outside");
    put_file(outside, "secret.txt", "SECRET\n");
    put_file(tmp_dir, "root-sibling.txt", "SECRET\n");
    put_file(root, "index.html", "<p>index</p>\n");
    put_file(root, "a.txt", "a\n");
    put_file(root, "a b.txt", "space\n");
    put_file(root, "%2e.txt", "percent\n");
    put_file(root, "back\\slash.txt", "backslash\n");
    put_file(root, ".hidden", "dotfile\n");
    put_dir(root, ".git");
    put_file(root, ".git/config", "[core]\n");
    put_dir(root, "sub");
    put_file(sub, "b.txt", "b\n");
    put_file(sub, "index.html", "<p>sub</p>\n");
    put_link(root, "link-in", "sub/b.txt");
    put_link(root, "link-out", "../outside");
    put_link(root, "link-secret", "../outside/secret.txt");
    put_link(root, "link-abs", "/etc");
    put_link(root, "link-root", "/");
    put_link(sub, "link-up", "../../outside/secret.txt");
    put_link(sub, "link-parent", "..");
    put_link(root, "loop", "loop");
    if (!realpath(root, root_real) || !realpath(tmp_dir, tmp_real))
        die("realpath");
    root_real_len = strlen(root_real);
    if (c10k_site_open(&site_openat2, root, 0) < 0 || c10k_site_open(&site_fallback, root, 0) < 0)
        die("c10k_site_open");
    site_fallback.have_openat2 = false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    make_fixture();
    atexit(remove_tree);
    return 0;
}

/* The opened body must be a regular file strictly beneath the root. */
static void check_body_fd(const c10k_resp_t *resp, const char *req, size_t req_len)
{
    char link[64], path[PATH_MAX];
    struct stat st;
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", resp->body_fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n < 0)
        die("readlink body_fd");
    path[n] = '\0';
    if ((size_t)n <= root_real_len || memcmp(path, root_real, root_real_len) != 0 ||
        path[root_real_len] != '/') {
        fprintf(stderr, "fuzz_path: ESCAPE: opened %s (root %s) for request:\n%.*s\n", path,
                root_real, (int)req_len, req);
        abort();
    }
    if (fstat(resp->body_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "fuzz_path: body_fd %s is not a regular file\n", path);
        abort();
    }
    if (resp->body_off < 0 || (off_t)resp->body_len > st.st_size - resp->body_off) {
        fprintf(stderr, "fuzz_path: body range %lld+%zu outside %s (%lld bytes)\n",
                (long long)resp->body_off, resp->body_len, path, (long long)st.st_size);
        abort();
    }
}

static void check_head(const c10k_resp_t *resp, const char *head)
{
    char status[8];

    if (resp->head_len < 16 || resp->head_len > C10K_HEAD_BUF ||
        memcmp(head + resp->head_len - 4, "\r\n\r\n", 4) != 0) {
        fprintf(stderr, "fuzz_path: malformed head (%zu bytes)\n", resp->head_len);
        abort();
    }
    /* "HTTP/1.x NNN ": the version follows the request's, the code the plan's. */
    snprintf(status, sizeof(status), " %03d ", resp->status);
    if (memcmp(head, "HTTP/1.", 7) != 0 || memcmp(head + 8, status, 5) != 0) {
        fprintf(stderr, "fuzz_path: head says %.16s, plan says %d\n", head, resp->status);
        abort();
    }
}

static void run_one(const c10k_site_t *site, const char *req, size_t len)
{
    static char head[C10K_HEAD_BUF];
    c10k_req_t r;
    c10k_resp_t resp;
    ssize_t used;
    int fd;

    c10k_req_init(&r);
    used = c10k_http_handle(site, &r, req, len, head, sizeof(head), &resp);
    if (used < 0) {
        fprintf(stderr, "fuzz_path: c10k_http_handle returned %zd\n", used);
        abort();
    }
    if (used == C10K_INCOMPLETE)
        return; /* a CR or LF in the target ended the head early or split it */
    if ((size_t)used > len)
        abort();
    check_head(&resp, head);
    fd = resp.body_fd;
    if (fd >= 0)
        check_body_fd(&resp, req, len);
    c10k_resp_finish(&resp);
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1) {
        fprintf(stderr, "fuzz_path: c10k_resp_finish left body_fd %d open\n", fd);
        abort();
    }
    if (fixture_fds() != 0) {
        fprintf(stderr, "fuzz_path: descriptor leak: %d fixture files still open\n", fixture_fds());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char req[REQ_MAX];
    const char *method = "GET ";
    size_t len;

    if (size == 0 || size > C10K_URI_MAX + 16)
        return 0;
    if (data[0] & 1)
        method = "HEAD ";
    data++;
    size--;
    len = strlen(method);
    memcpy(req, method, len);
    memcpy(req + len, data, size);
    len += size;
    memcpy(req + len, " HTTP/1.1\r\nHost: fuzz\r\n\r\n", 26);
    len += 26;
    run_one(&site_openat2, req, len);
    run_one(&site_fallback, req, len);
    return 0;
}
