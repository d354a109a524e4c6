/*
 * fuzz_http.c - libFuzzer target: c10k_http_handle() on arbitrary bytes.
 *
 * The fuzzed bytes are what a client sent on one connection (so pipelined
 * requests are fuzzed too), served from a small fixture root built in
 * LLVMFuzzerInitialize(): files, a directory with an index, a dotfile, a
 * symlink inside and one out of the root. After every planned response:
 *
 *   - the head fits the head buffer, starts with "HTTP/1.1 <status> " and
 *     ends with CRLF CRLF; head_len > 0;
 *   - a file body is a regular file strictly beneath the root, and its range
 *     lies inside the file; HEAD and 304 plan no body at all;
 *   - a response that closes the connection consumed the whole buffer;
 *   - the same bytes split in two (at a place chosen from the input) give the
 *     same status and the same byte count for the first request, or an early
 *     error when the prefix already shows one;
 *   - c10k_resp_finish() closes the descriptor.
 *
 * Build and run (tests/fuzz/run.sh SECONDS does the same for every target):
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *         tests/fuzz/fuzz_http.c common/http*.c -lhttp_parser -o build-handler/fuzz_http
 *     build-handler/fuzz_http -max_total_time=60 CORPUS_COPY tests/fuzz/corpus
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static c10k_site_t site;
static char tmp_dir[] = "/tmp/c10k-fuzz-http-XXXXXX";
static char root_real[PATH_MAX];
static char head[C10K_HEAD_BUF];
static char buf[C10K_REQ_BUF];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, strerror(errno));
    abort();
}

static void put(const char *rel, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmp_dir, rel);
    if (text == NULL) {
        if (mkdir(path, 0755) < 0)
            die(path);
        return;
    }
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die(path);
}

static void remove_tree(void)
{
    char cmd[PATH_MAX + 32];

    c10k_site_close(&site);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_http: could not remove %s\n", tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX];

    (void)argc, (void)argv;
    if (!mkdtemp(tmp_dir))
        die("mkdtemp");
    put("root", NULL);
    put("root/sub", NULL);
    put("root/empty", NULL);
    put("root/.git", NULL);
    put("secret.txt", "SECRET\n");
    put("root/index.html", "<h1>home</h1>\n");
    put("root/hello.txt", "hello, world\n");
    put("root/digits.txt", "0123456789");
    put("root/sub/index.html", "<h1>sub</h1>\n");
    put("root/a b.css", "a{}\n");
    put("root/.env", "SECRET=1\n");
    put("root/.git/config", "secret\n");
    snprintf(path, sizeof(path), "%s/root/in.txt", tmp_dir);
    if (symlink("hello.txt", path) < 0)
        die(path);
    snprintf(path, sizeof(path), "%s/root/out.txt", tmp_dir);
    if (symlink("../secret.txt", path) < 0)
        die(path);
    snprintf(path, sizeof(path), "%s/root", tmp_dir);
    if (!realpath(path, root_real))
        die("realpath");
    if (c10k_site_open(&site, path, 0) != 0)
        die("c10k_site_open");
    atexit(remove_tree);
    return 0;
}

static void check_body(const c10k_resp_t *resp)
{
    char link[64], target[PATH_MAX];
    size_t rlen = strlen(root_real);
    struct stat st;
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", resp->body_fd);
    n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        die("readlink body_fd");
    target[n] = '\0';
    if (strncmp(target, root_real, rlen) != 0 || target[rlen] != '/') {
        fprintf(stderr, "fuzz_http: body %s is outside %s\n", target, root_real);
        abort();
    }
    if (fstat(resp->body_fd, &st) < 0 || !S_ISREG(st.st_mode))
        die("body is not a regular file");
    if (resp->body_off < 0 || resp->body_len == 0 ||
        (off_t)(resp->body_off + (off_t)resp->body_len) > st.st_size) {
        fprintf(stderr, "fuzz_http: range %lld+%zu outside a file of %lld bytes\n",
                (long long)resp->body_off, resp->body_len, (long long)st.st_size);
        abort();
    }
    if (strstr(target, "/.")) {
        fprintf(stderr, "fuzz_http: served a dotfile %s\n", target);
        abort();
    }
}

static void check_plan(const c10k_resp_t *resp, ssize_t used, size_t len)
{
    char line[16];
    bool head_req = resp->method_len == 4 && memcmp(resp->method, "HEAD", 4) == 0;

    if (used <= 0 || (size_t)used > len)
        abort();
    if (resp->head_len < 20 || resp->head_len > sizeof(head))
        abort();
    snprintf(line, sizeof(line), "HTTP/1.1 %03d ", resp->status);
    if (memcmp(head, line, strlen(line)) != 0 || memcmp(head + resp->head_len - 4, "\r\n\r\n", 4))
        abort();
    if (memmem(head, resp->head_len, "\r\n\r\n", 4) != head + resp->head_len - 4)
        abort(); /* a blank line inside the head: header injection */
    if (!resp->keep_alive && (size_t)used != len)
        abort();
    if (resp->keep_alive && resp->status >= 400 && resp->status != 403 && resp->status != 404 &&
        resp->status != 405 && resp->status != 416 && resp->status != 503)
        abort();
    if (resp->body_fd >= 0)
        check_body(resp);
    if ((head_req || resp->status == 304) &&
        (resp->body_fd >= 0 || resp->body_len || resp->body_mem_len))
        abort();
    if (resp->body_mem && resp->body_fd >= 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    c10k_req_t req;
    c10k_resp_t resp;
    size_t off = 0, split;
    ssize_t whole, used;
    int status;

    if (size == 0 || size > sizeof(buf))
        return 0;
    memcpy(buf, data, size);

    /* Every request in the buffer, as a pipelining caller would. */
    c10k_req_init(&req);
    while (off < size) {
        used = c10k_http_handle(&site, &req, buf + off, size - off, head, sizeof(head), &resp);
        if (used == C10K_INCOMPLETE)
            break;
        check_plan(&resp, used, size - off);
        c10k_resp_finish(&resp);
        if (resp.body_fd != -1)
            abort();
        off += (size_t)used;
    }

    /* The first request again, arriving in two reads. */
    c10k_req_init(&req);
    whole = c10k_http_handle(&site, &req, buf, size, head, sizeof(head), &resp);
    status = resp.status;
    c10k_resp_finish(&resp);
    split = data[0] % size;
    if (split == 0)
        return 0;
    c10k_req_init(&req);
    used = c10k_http_handle(&site, &req, buf, split, head, sizeof(head), &resp);
    c10k_resp_finish(&resp);
    if (used > 0) {
        /* The prefix held a whole head, or proved an error already: either
         * way the verdict must be the one the whole buffer gets. */
        if (resp.status != status || (resp.keep_alive && used != whole)) {
            fprintf(stderr, "fuzz_http: prefix of %zu: %zd/%d, whole: %zd/%d\n", split, used,
                    resp.status, whole, status);
            abort();
        }
        return 0;
    }
    used = c10k_http_handle(&site, &req, buf, size, head, sizeof(head), &resp);
    c10k_resp_finish(&resp);
    if (used != whole || (whole > 0 && resp.status != status)) {
        fprintf(stderr, "fuzz_http: split at %zu: %zd/%d, whole: %zd/%d\n", split, used,
                resp.status, whole, status);
        abort();
    }
    return 0;
}
