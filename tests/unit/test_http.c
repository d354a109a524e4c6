/*
 * test_http.c - unit tests of the sans-I/O handler (common/http.c).
 *
 * In the style of http-parser's test_message: a table of raw requests with
 * the plan each must produce, and every entry is re-run split at every byte
 * boundary: the first part alone must be C10K_INCOMPLETE (unless it already
 * decides an error), and the whole must give the same plan.
 */
#include "http.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char root[256];
static c10k_site_t site;

static void write_file(const char *rel, const char *data)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    f = fopen(path, "w");
    cr_assert(f, "fixture %s", path);
    fputs(data, f);
    fclose(f);
}

static void fixture_up(void)
{
    char path[512];

    snprintf(root, sizeof(root), "/tmp/c10k-unit-XXXXXX");
    cr_assert(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/sub", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/empty", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/.git", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/a b?#", root);
    mkdir(path, 0755);
    write_file("hello.txt", "hello, world\n");
    write_file("digits.txt", "0123456789");
    write_file("empty.txt", "");
    write_file("sub/index.html", "<h1>sub</h1>\n");
    write_file("page.css", "a{}\n");
    write_file(".env", "SECRET=1\n");
    write_file(".git/config", "secret\n");
    snprintf(path, sizeof(path), "%s/out.txt", root);
    cr_assert(symlink("/etc/passwd", path) == 0);
    snprintf(path, sizeof(path), "%s/in.txt", root);
    cr_assert(symlink("hello.txt", path) == 0);
    cr_assert(c10k_site_open(&site, root, 0) == 0);
}

static void fixture_down(void)
{
    char cmd[300];

    c10k_site_close(&site);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    cr_assert(system(cmd) == 0);
}

TestSuite(http, .init = fixture_up, .fini = fixture_down);

/* ---- the table -------------------------------------------------------------------- */

typedef struct message_s {
    const char *name;
    const char *raw;
    int status;
    bool keep_alive;
    const char *header; /* a header line the head must contain, or NULL */
    size_t body_len;    /* file bytes or memory body bytes */
    long body_off;      /* -1: don't care */
    bool consumes_all;  /* consumed == strlen(raw) */
} message_t;

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

static const message_t messages[] = {
    {"get", GET("/hello.txt"), 200, true, "Content-Type: text/plain; charset=utf-8\r\n", 13, 0, 1},
    {"head", "HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 200, true, "Content-Length: 13\r\n", 0,
     -1, 1},
    {"http/1.0 closes", "GET /hello.txt HTTP/1.0\r\n\r\n", 200, false, "Connection: close\r\n", 13,
     0, 1},
    {"http/1.0 keep-alive", "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, true,
     "Connection: keep-alive\r\n", 13, 0, 1},
    {"connection close", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200,
     false, "Connection: close\r\n", 13, 0, 1},
    {"leading crlf", "\r\n" GET("/hello.txt"), 200, true, NULL, 13, 0, 1},
    {"absolute form", "GET http://h.example/hello.txt HTTP/1.1\r\nHost: h.example\r\n\r\n", 200,
     true, NULL, 13, 0, 1},
    {"percent decoding", GET("/%68ello.txt"), 200, true, NULL, 13, 0, 1},
    {"query ignored", GET("/hello.txt?a=b&c=../x"), 200, true, NULL, 13, 0, 1},
    {"dot segments", GET("/./sub/./index.html"), 200, true, "Content-Type: text/html", 13, 0, 1},
    {"double slash", GET("//hello.txt"), 200, true, NULL, 13, 0, 1},
    {"directory index", GET("/sub/"), 200, true, "Content-Type: text/html; charset=utf-8", 13, 0,
     1},
    {"directory redirect", GET("/sub"), 301, true, "Location: /sub/\r\n", 106, -1, 1},
    /* nginx and Apache: a directory without an index is 403 (no listing) */
    {"no index 403", GET("/empty/"), 403, true, NULL, 90, -1, 1},
    /* there is no directory named hello.txt: relative links must not break */
    {"slash after a file 404", GET("/hello.txt/"), 404, true, NULL, 90, -1, 1},
    {"slash after a file, dot segment", GET("/sub/index.html/."), 404, true, NULL, 90, -1, 1},
    {"css type", GET("/page.css"), 200, true, "Content-Type: text/css; charset=utf-8", 4, 0, 1},
    {"symlink inside", GET("/in.txt"), 200, true, NULL, 13, 0, 1},
    {"range", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n", 206, true,
     "Content-Range: bytes 2-4/10\r\n", 3, 2, 1},
    {"range open", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=7-\r\n\r\n", 206, true,
     "Content-Range: bytes 7-9/10\r\n", 3, 7, 1},
    {"range suffix", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-4\r\n\r\n", 206, true,
     "Content-Range: bytes 6-9/10\r\n", 4, 6, 1},
    {"range huge suffix",
     "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: "
     "bytes=-9999999999999999916\r\n\r\n",
     206, true, "Content-Range: bytes 0-9/10\r\n", 10, 0, 1},
    {"range past end", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=5-99\r\n\r\n", 206,
     true, "Content-Range: bytes 5-9/10\r\n", 5, 5, 1},
    {"range 416", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-\r\n\r\n", 416, true,
     "Content-Range: bytes */10\r\n", 114, -1, 1},
    /* RFC 9110 14.1.1: a non-zero suffix is satisfiable on an empty file */
    {"range suffix on empty file", "GET /empty.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-5\r\n\r\n",
     200, true, "Content-Length: 0\r\n", 0, -1, 1},
    {"range zero suffix on empty file",
     "GET /empty.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-0\r\n\r\n", 416, true,
     "Content-Range: bytes */0\r\n", 114, -1, 1},
    {"range from 0 on empty file", "GET /empty.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-\r\n\r\n",
     416, true, "Content-Range: bytes */0\r\n", 114, -1, 1},
    {"range multi ignored", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,3-4\r\n\r\n",
     200, true, NULL, 10, 0, 1},
    {"ims 304",
     "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Fri, 01 Jan 2100 "
     "00:00:00 GMT\r\n\r\n",
     304, true, "ETag: ", 0, -1, 1},
    {"ims old",
     "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sat, 01 Jan 2000 "
     "00:00:00 GMT\r\n\r\n",
     200, true, NULL, 10, 0, 1},
    {"inm star", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n", 304, true, NULL,
     0, -1, 1},
    {"inm other", "GET /digits.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\"\r\n\r\n", 200, true,
     NULL, 10, 0, 1},
    /* errors */
    {"no host", "GET /hello.txt HTTP/1.1\r\n\r\n", 400, false, "Connection: close\r\n", 94, -1, 1},
    /* RFC 9110 9.1: a method nobody implements is 501 (methods are case-sensitive) */
    {"lowercase method 501", "get / HTTP/1.1\r\nHost: t\r\n\r\n", 501, false, NULL, 102, -1, 1},
    {"unknown method 501", "FROB / HTTP/1.1\r\nHost: t\r\n\r\n", 501, false, NULL, 102, -1, 1},
    {"method not a token", "GE(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"post 405", "POST / HTTP/1.1\r\nHost: t\r\n\r\n", 405, true, "Allow: GET, HEAD\r\n", 108, -1,
     1},
    /* the method is decided before the body, which is not read: 405, close */
    {"post with body 405", "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
     405, false, "Allow: GET, HEAD\r\n", 108, -1, 1},
    {"put chunked 405",
     "PUT /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
     "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     405, false, "Allow: GET, HEAD\r\n", 108, -1, 1},
    {"delete with body 405", "DELETE /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
     405, false, "Allow: GET, HEAD\r\n", 108, -1, 1},
    {"post bad chunk size 400",
     "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, false, NULL, 94,
     -1, 1},
    {"head with body 413", "HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab", 413, false,
     NULL, 0, -1, 1},
    {"dup cl", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400,
     false, NULL, 94, -1, 1},
    {"cl and te",
     "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     400, false, NULL, 94, -1, 1},
    {"space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"space before colon, with host", "GET / HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n", 400, false,
     NULL, 94, -1, 1},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"body 413", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab", 413, false, NULL, 106,
     -1, 1},
    {"chunked 413",
     "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413,
     false, NULL, 106, -1, 1},
    {"chunk extension 413",
     "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\n", 413, false, NULL,
     106, -1, 1},
    {"chunk size not hex", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     400, false, NULL, 94, -1, 1},
    {"chunk size 0x", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400,
     false, NULL, 94, -1, 1},
    {"chunk size too long",
     "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     "11111111111111111\r\n",
     400, false, NULL, 94, -1, 1},
    {"te gzip 501", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, false,
     NULL, 102, -1, 1},
    {"version 505", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, false, NULL, 124, -1, 1},
    /* RFC 9110 2.5: a higher minor version is answered as 1.1 */
    {"version 1.2 as 1.1", "GET /hello.txt HTTP/1.2\r\nHost: t\r\n\r\n", 200, true,
     "HTTP/1.1 200 OK\r\n", 13, 0, 1},
    {"version 1.2 needs Host", "GET /hello.txt HTTP/1.2\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"version two digits", "GET / HTTP/1.10\r\nHost: t\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"version 0.9", "GET / HTTP/0.9\r\n\r\n", 400, false, NULL, 94, -1, 1},
    /* whitespace and control bytes in the target would reach the access log */
    {"tab in target", GET("/hello.txt?a\tb"), 400, false, NULL, 94, -1, 1},
    {"form feed in target", GET("/hello.txt?a\fb"), 400, false, NULL, 94, -1, 1},
    {"DEL in target", GET("/hello.txt?a\x7f"), 400, false, NULL, 94, -1, 1},
    {"two spaces", "GET  /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"space in target", GET("/hello.txt x"), 400, false, NULL, 94, -1, 1},
    {"utf-8 in target", GET("/caf\xc3\xa9.txt"), 404, true, NULL, 90, -1, 1},
    {"quote in target", GET("/f1\"_200_1_\"GET_/forged"), 404, true, NULL, 90, -1, 1},
    /* RFC 9112 3.2: an invalid Host is 400 */
    {"host with space", "GET /hello.txt HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400, false, NULL, 94, -1,
     1},
    {"host with slash", "GET /hello.txt HTTP/1.1\r\nHost: a/c\r\n\r\n", 400, false, NULL, 94, -1,
     1},
    {"host with userinfo", "GET /hello.txt HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, false, NULL, 94, -1,
     1},
    {"host bad port", "GET /hello.txt HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400, false, NULL, 94, -1, 1},
    {"host unclosed literal", "GET /hello.txt HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, false, NULL, 94,
     -1, 1},
    {"host 1.0 checked too", "GET /hello.txt HTTP/1.0\r\nHost: a b\r\n\r\n", 400, false, NULL, 94,
     -1, 1},
    {"host name and port", "GET /hello.txt HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n", 200,
     true, NULL, 13, 0, 1},
    {"host ipv6 literal", "GET /hello.txt HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200, true, NULL, 13,
     0, 1},
    {"host pct-encoded", "GET /hello.txt HTTP/1.1\r\nHost: a%41b\r\n\r\n", 200, true, NULL, 13, 0,
     1},
    /* RFC 9110 4.2.4: userinfo in an http URI */
    {"userinfo in absolute form", "GET http://u:p@x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400,
     false, NULL, 94, -1, 1},
    {"missing 404", GET("/nope"), 404, true, NULL, 90, -1, 1},
    {"dotfile 404", GET("/.env"), 404, true, NULL, 90, -1, 1},
    {"dotdir 404", GET("/.git/config"), 404, true, NULL, 90, -1, 1},
    {"symlink out 404", GET("/out.txt"), 404, true, NULL, 90, -1, 1},
    {"dotdot 400", GET("/../etc/passwd"), 400, false, NULL, 94, -1, 1},
    {"encoded dotdot", GET("/%2e%2e/etc/passwd"), 400, false, NULL, 94, -1, 1},
    {"mixed dotdot", GET("/sub/.%2E/.%2e/etc/passwd"), 400, false, NULL, 94, -1, 1},
    {"double encoded", GET("/%252e%252e/etc/passwd"), 404, true, NULL, 90, -1, 1},
    {"overlong utf8", GET("/%c0%ae%c0%ae/etc/passwd"), 400, false, NULL, 94, -1, 1},
    {"backslash", GET("/..\\etc\\passwd"), 400, false, NULL, 94, -1, 1},
    {"encoded backslash", GET("/%5c..%5cetc"), 400, false, NULL, 94, -1, 1},
    {"nul", GET("/hello.txt%00.html"), 400, false, NULL, 94, -1, 1},
    {"bad escape", GET("/%zz"), 400, false, NULL, 94, -1, 1},
    {"semicolon dotdot", GET("/..;/etc/passwd"), 404, true, NULL, 90, -1, 1},
    /* Location is rebuilt from the normalised path: never "//host/" */
    {"location no open redirect", GET("//sub"), 301, true, "Location: /sub/\r\n", 106, -1, 1},
    {"location re-encoded", GET("/a%20b%3f%23"), 301, true, "Location: /a%20b%3F%23/\r\n", 106, -1,
     1},
    /* the query is kept, as nginx keeps it; unsafe bytes are encoded */
    {"location keeps query", GET("/./sub?x=1"), 301, true, "Location: /sub/?x=1\r\n", 106, -1, 1},
    {"location query encoded", GET("/sub?a=%20b\"c<\xff?/"), 301, true,
     "Location: /sub/?a=%20b%22c%3C%FF?/\r\n", 106, -1, 1},
    {"location empty query", GET("/sub?"), 301, true, "Location: /sub/\r\n", 106, -1, 1},
    {"space in header name", "GET / HTTP/1.1\r\nHost: t\r\nX A: v\r\n\r\n", 400, false, NULL, 94,
     -1, 1},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400, false, NULL, 94, -1,
     1},
    {"duplicate host", "GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, false, NULL,
     94, -1, 1},
    {"empty host allowed", "GET /hello.txt HTTP/1.1\r\nHost:\r\n\r\n", 200, true, NULL, 13, 0, 1},
    {"empty te", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n\r\n", 400, false, NULL, 94,
     -1, 1},
    {"chunked body consumed with the 413",
     "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413,
     false, NULL, 106, -1, 1},
};

#define NMESSAGES (sizeof(messages) / sizeof(messages[0]))

static char head[C10K_HEAD_BUF];

static ssize_t handle(const char *buf, size_t len, c10k_req_t *req, c10k_resp_t *resp)
{
    return c10k_http_handle(&site, req, buf, len, head, sizeof(head), resp);
}

static void check_plan(const message_t *m, ssize_t used, const c10k_resp_t *resp, size_t split)
{
    size_t body = resp->body_fd >= 0 ? resp->body_len : resp->body_mem_len;

    cr_assert_gt(used, 0, "%s (split %zu): not handled", m->name, split);
    cr_expect_eq(resp->status, m->status, "%s (split %zu): status %d, want %d", m->name, split,
                 resp->status, m->status);
    cr_expect_eq(resp->keep_alive, m->keep_alive, "%s: keep_alive", m->name);
    cr_expect_eq(body, m->body_len, "%s: body %zu, want %zu", m->name, body, m->body_len);
    if (m->body_off >= 0)
        cr_expect_eq((long)resp->body_off, m->body_off, "%s: offset", m->name);
    if (m->header)
        cr_expect(memmem(head, resp->head_len, m->header, strlen(m->header)) != NULL,
                  "%s: head lacks %s:\n%.*s", m->name, m->header, (int)resp->head_len, head);
    if (m->consumes_all)
        cr_expect_eq((size_t)used, strlen(m->raw), "%s: consumed %zd", m->name, used);
    cr_expect(resp->head_len > 4 && memcmp(head + resp->head_len - 4, "\r\n\r\n", 4) == 0,
              "%s: head ends with a blank line", m->name);
}

Test(http, table_whole)
{
    for (size_t i = 0; i < NMESSAGES; i++) {
        c10k_req_t req;
        c10k_resp_t resp;
        c10k_req_init(&req);
        ssize_t used = handle(messages[i].raw, strlen(messages[i].raw), &req, &resp);
        check_plan(&messages[i], used, &resp, 0);
        c10k_resp_finish(&resp);
    }
}

/* The caller appends what it reads and calls again: the same plan must come
 * out wherever the bytes were split. */
Test(http, table_split_at_every_byte)
{
    char buf[1024];

    for (size_t i = 0; i < NMESSAGES; i++) {
        const message_t *m = &messages[i];
        size_t len = strlen(m->raw);
        for (size_t split = 1; split < len; split++) {
            c10k_req_t req;
            c10k_resp_t resp;
            ssize_t used;
            c10k_req_init(&req);
            memcpy(buf, m->raw, split);
            used = handle(buf, split, &req, &resp);
            if (used > 0) {
                /* Only an error may be decided early (a bare LF, a limit, a
                 * head whose body is never read), and only the same one. */
                cr_expect(resp.status >= 400 && resp.status == m->status, "%s: early %d at %zu",
                          m->name, resp.status, split);
                c10k_resp_finish(&resp);
                continue;
            }
            cr_assert_eq(used, C10K_INCOMPLETE, "%s: split %zu", m->name, split);
            memcpy(buf + split, m->raw + split, len - split);
            used = handle(buf, len, &req, &resp);
            check_plan(m, used, &resp, split);
            c10k_resp_finish(&resp);
        }
    }
}

/* What a plan sends, apart from the Date value: head, then body bytes. */
static size_t plan_bytes(const c10k_resp_t *resp, char *out, size_t cap)
{
    const char *date = memmem(head, resp->head_len, "Date: ", 6);
    const char *eol = date ? memchr(date, '\r', resp->head_len - (size_t)(date - head)) : NULL;
    size_t n = 0, body = resp->body_fd >= 0 ? resp->body_len : resp->body_mem_len;

    cr_assert(date && eol && resp->head_len + body < cap);
    memcpy(out, head, (size_t)(date - head));
    n = (size_t)(date - head);
    memcpy(out + n, eol, resp->head_len - (size_t)(eol - head));
    n += resp->head_len - (size_t)(eol - head);
    if (resp->body_fd >= 0)
        cr_assert_eq(pread(resp->body_fd, out + n, body, resp->body_off), (ssize_t)body);
    else if (body)
        memcpy(out + n, resp->body_mem, body);
    return n + body;
}

/* --open-file-cache changes no byte of any answer: every message of the
 * table, planned without the cache, then with it cold and warm. */
Test(http, table_same_with_open_file_cache)
{
    static char plain[16384], cached[16384];
    c10k_site_t with = site;

    with.fcache_max = 8;
    with.fcache_valid_ms = 60000;
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < NMESSAGES; i++) {
            const message_t *m = &messages[i];
            c10k_req_t req;
            c10k_resp_t a, b;
            size_t na, nb;
            c10k_req_init(&req);
            cr_assert_gt(handle(m->raw, strlen(m->raw), &req, &a), 0);
            na = plan_bytes(&a, plain, sizeof(plain));
            c10k_req_init(&req);
            cr_assert_gt(
                c10k_http_handle(&with, &req, m->raw, strlen(m->raw), head, sizeof(head), &b), 0);
            nb = plan_bytes(&b, cached, sizeof(cached));
            cr_expect_eq(b.status, a.status, "%s (round %d): status", m->name, round);
            cr_expect_eq(b.keep_alive, a.keep_alive, "%s: keep-alive", m->name);
            cr_expect(na == nb && memcmp(plain, cached, na) == 0,
                      "%s (round %d): with the cache:\n%.*s\nwithout:\n%.*s", m->name, round,
                      (int)nb, cached, (int)na, plain);
            c10k_resp_finish(&a);
            c10k_resp_finish(&b);
        }
    }
}

Test(http, pipelined_in_order)
{
    const char *raw = GET("/hello.txt") GET("/digits.txt") GET("/nope");
    const int want[] = {200, 200, 404};
    size_t off = 0, len = strlen(raw);
    c10k_req_t req;

    c10k_req_init(&req);
    for (int i = 0; i < 3; i++) {
        c10k_resp_t resp;
        ssize_t used = handle(raw + off, len - off, &req, &resp);
        cr_assert_gt(used, 0);
        cr_expect_eq(resp.status, want[i], "request %d", i);
        off += (size_t)used;
        c10k_resp_finish(&resp);
    }
    cr_expect_eq(off, len);
    cr_expect_eq(req.requests, 3);
}

Test(http, max_requests_closes)
{
    c10k_site_t s2 = site;
    c10k_req_t req;
    c10k_resp_t resp;

    s2.max_requests = 2;
    c10k_req_init(&req);
    cr_assert_gt(c10k_http_handle(&s2, &req, GET("/hello.txt"), strlen(GET("/hello.txt")), head,
                                  sizeof(head), &resp),
                 0);
    cr_expect(resp.keep_alive);
    c10k_resp_finish(&resp);
    cr_assert_gt(c10k_http_handle(&s2, &req, GET("/hello.txt"), strlen(GET("/hello.txt")), head,
                                  sizeof(head), &resp),
                 0);
    cr_expect(!resp.keep_alive);
    cr_expect(memmem(head, resp.head_len, "Connection: close", 17) != NULL);
    c10k_resp_finish(&resp);
}

Test(http, force_close)
{
    c10k_req_t req;
    c10k_resp_t resp;

    c10k_req_init(&req);
    req.force_close = true;
    cr_assert_gt(handle(GET("/hello.txt"), strlen(GET("/hello.txt")), &req, &resp), 0);
    cr_expect(!resp.keep_alive);
    c10k_resp_finish(&resp);
}

Test(http, bare_lf_rejected_early)
{
    c10k_req_t req;
    c10k_resp_t resp;

    c10k_req_init(&req);
    cr_assert_gt(handle("GET / HTTP/1.1\n", 15, &req, &resp), 0);
    cr_expect_eq(resp.status, 400);
}

Test(http, uri_too_long)
{
    static char buf[C10K_REQ_BUF];
    c10k_req_t req;
    c10k_resp_t resp;
    size_t n = 0;

    n += (size_t)sprintf(buf, "GET /");
    memset(buf + n, 'a', C10K_URI_MAX + 100);
    n += C10K_URI_MAX + 100;
    c10k_req_init(&req);
    /* Decided before the line ends: the client need not send more. */
    cr_assert_gt(handle(buf, n, &req, &resp), 0);
    cr_expect_eq(resp.status, 414);
}

Test(http, headers_too_large)
{
    static char buf[C10K_REQ_BUF];
    c10k_req_t req;
    c10k_resp_t resp;
    int n = sprintf(buf, "GET / HTTP/1.1\r\nHost: t\r\nX: ");

    memset(buf + n, 'b', C10K_HEADERS_MAX);
    n += C10K_HEADERS_MAX;
    n += sprintf(buf + n, "\r\n\r\n");
    c10k_req_init(&req);
    cr_assert_gt(handle(buf, (size_t)n, &req, &resp), 0);
    cr_expect_eq(resp.status, 431);
}

Test(http, too_many_header_lines)
{
    static char buf[C10K_REQ_BUF];
    c10k_req_t req;
    c10k_resp_t resp;
    int n;

    for (int lines = 100; lines <= 101; lines++) {
        n = sprintf(buf, "GET /hello.txt HTTP/1.1\r\n");
        for (int i = 0; i < lines; i++)
            n += sprintf(buf + n, "X-%d: v\r\n", i);
        n += sprintf(buf + n, "Host: t\r\n\r\n");
        c10k_req_init(&req);
        cr_assert_gt(handle(buf, (size_t)n, &req, &resp), 0);
        /* 100 X- lines plus Host is 101 header lines. */
        cr_expect_eq(resp.status, 431, "%d lines + Host", lines);
        c10k_resp_finish(&resp);
    }
    n = sprintf(buf, "GET /hello.txt HTTP/1.1\r\n");
    for (int i = 0; i < 99; i++)
        n += sprintf(buf + n, "X-%d: v\r\n", i);
    n += sprintf(buf + n, "Host: t\r\n\r\n");
    c10k_req_init(&req);
    cr_assert_gt(handle(buf, (size_t)n, &req, &resp), 0);
    cr_expect_eq(resp.status, 200, "exactly 100 header lines");
    c10k_resp_finish(&resp);
}

Test(http, timeout_plans)
{
    c10k_req_t req;
    c10k_resp_t resp;

    c10k_req_init(&req);
    cr_expect_eq(c10k_http_timeout(&req, 0, head, sizeof(head), &resp), 0, "idle: just close");
    cr_expect_eq(c10k_http_timeout(&req, 5, head, sizeof(head), &resp), 1);
    cr_expect_eq(resp.status, 408);
    cr_expect(!resp.keep_alive);
}

Test(http, small_head_buffer_is_a_caller_bug)
{
    c10k_req_t req;
    c10k_resp_t resp;
    char small[64];

    c10k_req_init(&req);
    cr_expect_eq(
        c10k_http_handle(&site, &req, GET("/"), strlen(GET("/")), small, sizeof(small), &resp),
        -ENOBUFS);
}

Test(http, file_plan_points_inside_root)
{
    c10k_req_t req;
    c10k_resp_t resp;
    char link[64], target[512];
    ssize_t n;

    c10k_req_init(&req);
    cr_assert_gt(handle(GET("/hello.txt"), strlen(GET("/hello.txt")), &req, &resp), 0);
    cr_assert_geq(resp.body_fd, 0);
    snprintf(link, sizeof(link), "/proc/self/fd/%d", resp.body_fd);
    n = readlink(link, target, sizeof(target) - 1);
    cr_assert_gt(n, 0);
    target[n] = '\0';
    cr_expect(strncmp(target, root, strlen(root)) == 0, "%s outside %s", target, root);
    c10k_resp_finish(&resp);
    cr_expect_eq(resp.body_fd, -1);
}

/* Every encoding of a way out of the root (or into a dotfile) is refused
 * with 400 or 404, and never plans a body. */
static const char *const traversal[] = {
    "/../etc/passwd",
    "/../../etc/passwd",
    "/sub/../../etc/passwd",
    "/%2e%2e/etc/passwd",
    "/%2E%2E/etc/passwd",
    "/%2e%2E/%2e%2e/etc/passwd",
    "/.%2e/etc/passwd",
    "/%2e./etc/passwd",
    "/sub/%2e%2e/%2e%2e/etc/passwd",
    "/%252e%252e/etc/passwd",
    "/%252e%252e%252fetc/passwd",
    "/%c0%ae%c0%ae/etc/passwd",
    "/%c0%2e%c0%2e/etc/passwd",
    "/%e0%80%ae%e0%80%ae/etc/passwd",
    "/..%2fetc/passwd",
    "/..%2Fetc/passwd",
    "/sub%2f..%2f..%2fetc/passwd",
    "/..\\etc/passwd",
    "/%5c..%5cetc/passwd",
    "/..%5cetc/passwd",
    "/sub\\..\\..\\etc/passwd",
    "/hello.txt%00.html",
    "/%00",
    "/..;/etc/passwd",
    "/sub/..;/..;/etc/passwd",
    "/.git/config",
    "/.git/",
    "/.env",
    "/%2egit/config",
    "/sub/../.git/config",
    "/out.txt",
    "/./../etc/passwd",
    "/.../etc/passwd",
    "/sub/.././../etc/passwd",
    "/%2e%2e%2f%2e%2e%2fetc/passwd",
    "/....//etc/passwd",
    "/%u002e%u002e/etc/passwd",
    "/%C0%AE%C0%AE%C0%AFetc/passwd",
    "/%f0%80%80%ae%f0%80%80%ae/x",
    "/%ed%a0%80/x",
    "/%ff/x",
    "/sub/%2E%2E",
    "/http://x/../../etc/passwd",
};

Test(http, traversal_never_escapes)
{
    char raw[256];

    cr_assert_geq(sizeof(traversal) / sizeof(traversal[0]), 30);
    for (size_t i = 0; i < sizeof(traversal) / sizeof(traversal[0]); i++) {
        c10k_req_t req;
        c10k_resp_t resp;
        int n = snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", traversal[i]);
        c10k_req_init(&req);
        cr_assert_gt(handle(raw, (size_t)n, &req, &resp), 0, "%s", traversal[i]);
        cr_expect(resp.status == 400 || resp.status == 404, "%s: %d", traversal[i], resp.status);
        cr_expect_eq(resp.body_fd, -1, "%s: planned a file", traversal[i]);
        c10k_resp_finish(&resp);
    }
}

Test(http, pipelined_two_then_close)
{
    const char *raw = GET("/hello.txt") "GET /digits.txt HTTP/1.1\r\nHost: t\r\nConnection: "
                                        "close\r\n\r\n" GET("/hello.txt");
    size_t len = strlen(raw), first = strlen(GET("/hello.txt"));
    c10k_req_t req;
    c10k_resp_t resp;
    ssize_t used;

    c10k_req_init(&req);
    used = handle(raw, len, &req, &resp);
    cr_expect_eq((size_t)used, first);
    c10k_resp_finish(&resp);
    used = handle(raw + first, len - first, &req, &resp);
    cr_expect_eq(resp.status, 200);
    cr_expect(!resp.keep_alive);
    cr_expect_eq((size_t)used, len - first, "a closing response takes the rest with it");
    c10k_resp_finish(&resp);
}

Test(http, buffer_of_empty_lines_is_answered)
{
    static char buf[C10K_REQ_BUF];
    c10k_req_t req;
    c10k_resp_t resp;

    for (size_t i = 0; i < sizeof(buf); i += 2)
        buf[i] = '\r', buf[i + 1] = '\n';
    c10k_req_init(&req);
    cr_expect_gt(handle(buf, sizeof(buf), &req, &resp), 0, "a full buffer always gets a plan");
    cr_expect(!resp.keep_alive);
}

/* Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE), so this test drops
 * the DAC capabilities from its own process (Criterion forks one per test)
 * before asking for an unreadable file: then 403 is really provoked. */
static void drop_dac_caps(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];

    cr_assert(syscall(SYS_capget, &h, d) == 0);
    d[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
    cr_assert(syscall(SYS_capset, &h, d) == 0);
}

Test(http, unreadable_is_403)
{
    char path[512];
    c10k_req_t req;
    c10k_resp_t resp;

    write_file("locked.txt", "locked\n");
    snprintf(path, sizeof(path), "%s/locked.txt", root);
    cr_assert(chmod(path, 0) == 0);
    drop_dac_caps();
    c10k_req_init(&req);
    cr_assert_gt(handle(GET("/locked.txt"), strlen(GET("/locked.txt")), &req, &resp), 0);
    cr_expect_eq(resp.status, 403);
    cr_expect(resp.keep_alive, "403 keeps the connection");
    cr_expect_eq(resp.body_fd, -1);
    c10k_resp_finish(&resp);
}

Test(http, every_mime_type_served)
{
    static const char *const want[][2] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"woff2", "font/woff2"},
        {"woff", "font/woff"},
        {"mp4", "video/mp4"},
        {"webp", "image/webp"},
        {"xml", "application/xml"},
        {"XYZ", "application/octet-stream"},
        {"JPG", "image/jpeg"},
    };
    char name[32], raw[128], line[128];

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        c10k_req_t req;
        c10k_resp_t resp;
        snprintf(name, sizeof(name), "m.%s", want[i][0]);
        write_file(name, "x");
        int n = snprintf(raw, sizeof(raw), "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", name);
        c10k_req_init(&req);
        cr_assert_gt(handle(raw, (size_t)n, &req, &resp), 0);
        cr_expect_eq(resp.status, 200, "%s", name);
        snprintf(line, sizeof(line), "\r\nContent-Type: %s\r\n", want[i][1]);
        cr_expect(memmem(head, resp.head_len, line, strlen(line)) != NULL, "%s:\n%.*s", name,
                  (int)resp.head_len, head);
        c10k_resp_finish(&resp);
    }
}

/* The 200 head, header by header and in order. */
Test(http, head_order)
{
    c10k_req_t req;
    c10k_resp_t resp;
    const char *order[] = {
        "HTTP/1.1 200 OK\r\n",           "Server: c10k\r\n", "Date: ",   "Content-Type: ",
        "Content-Length: 10\r\n",        "Last-Modified: ",  "ETag: \"", "Accept-Ranges: bytes\r\n",
        "Connection: keep-alive\r\n\r\n"};
    const char *at = head;

    c10k_req_init(&req);
    cr_assert_gt(handle(GET("/digits.txt"), strlen(GET("/digits.txt")), &req, &resp), 0);
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *p = memmem(at, (size_t)(head + resp.head_len - at), order[i], strlen(order[i]));
        cr_assert(p, "missing or out of order: %s\n%.*s", order[i], (int)resp.head_len, head);
        at = p + strlen(order[i]);
    }
    c10k_resp_finish(&resp);
}

/* Without openat2 (kernels before 5.6) every symlink is refused, even one
 * that stays inside the root; plain files and directories still work. */
Test(http, fallback_resolver_refuses_symlinks)
{
    c10k_site_t s2 = site;
    const struct {
        const char *raw;
        int status;
    } cases[] = {{GET("/hello.txt"), 200}, {GET("/sub/"), 200}, {GET("/in.txt"), 404},
                 {GET("/out.txt"), 404},   {GET("/.env"), 404}, {GET("/sub"), 301}};

    s2.have_openat2 = false;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c10k_req_t req;
        c10k_resp_t resp;
        c10k_req_init(&req);
        cr_assert_gt(c10k_http_handle(&s2, &req, cases[i].raw, strlen(cases[i].raw), head,
                                      sizeof(head), &resp),
                     0);
        cr_expect_eq(resp.status, cases[i].status, "%s", cases[i].raw);
        c10k_resp_finish(&resp);
    }
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    cr_assert(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* The fallback resolver walks one directory at a time; a component too long
 * for NAME_MAX after a directory used to leak that directory's descriptor
 * (found by fuzz_path). Every refusal must leave the descriptor count as it was. */
Test(http, fallback_resolver_closes_every_directory)
{
    static char raw[600];
    char longname[300];
    c10k_site_t s2 = site;
    int before;

    memset(longname, 'A', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(raw, sizeof(raw), "GET /sub/%s HTTP/1.1\r\nHost: t\r\n\r\n", longname);
    s2.have_openat2 = false;
    before = open_fds();
    for (int i = 0; i < 3; i++) {
        c10k_req_t req;
        c10k_resp_t resp;
        c10k_req_init(&req);
        cr_assert_gt(c10k_http_handle(&s2, &req, raw, strlen(raw), head, sizeof(head), &resp), 0);
        cr_expect_eq(resp.status, 404);
        c10k_resp_finish(&resp);
    }
    cr_expect_eq(open_fds(), before, "descriptors leaked by the fallback resolver");
}
