/*
 * test_log.c - the access log line (common/log.c) and the views the handler
 * gives it (common/http.c): nginx's `combined` format, byte for byte, with
 * every byte a client controls escaped.
 */
#include "log.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WHEN 1795775657 /* 27/Nov/2026:10:34:17 UTC */

static char line[C10K_LOG_LINE];

static c10k_resp_t plan(const char *request, const char *referer, const char *ua)
{
    c10k_resp_t r = {.status = 200, .head_len = 100, .body_fd = -1};

    r.request = request;
    r.request_len = request ? strlen(request) : 0;
    r.referer = referer;
    r.referer_len = referer ? strlen(referer) : 0;
    r.user_agent = ua;
    r.user_agent_len = ua ? strlen(ua) : 0;
    return r;
}

static struct sockaddr_in v4(const char *addr)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5555)};

    cr_assert_eq(inet_pton(AF_INET, addr, &a.sin_addr), 1);
    return a;
}

static const char *format(const struct sockaddr *peer, const c10k_resp_t *r, size_t sent)
{
    size_t n = c10k_log_format(line, peer, WHEN, r, sent);

    cr_assert_lt(n, sizeof(line));
    line[n] = '\0';
    cr_expect_eq(strchr(line, '\n'), line + n - 1, "exactly one line: %s", line);
    return line;
}

Test(log, combined_exactly)
{
    struct sockaddr_in p = v4("192.0.2.7");
    c10k_resp_t r = plan("GET /a.html HTTP/1.1", "http://example.com/", "curl/8.0");

    /* 113 bytes sent, 100 of them the head: $body_bytes_sent is 13 */
    cr_expect_str_eq(format((struct sockaddr *)&p, &r, 113),
                     "192.0.2.7 - - [27/Nov/2026:10:34:17 +0000] \"GET /a.html HTTP/1.1\" 200 13 "
                     "\"http://example.com/\" \"curl/8.0\"\n");
}

Test(log, absent_fields_are_dashes)
{
    c10k_resp_t r = plan(NULL, NULL, NULL);

    r.status = 408;
    cr_expect_str_eq(format(NULL, &r, 50),
                     "- - - [27/Nov/2026:10:34:17 +0000] \"-\" 408 0 \"-\" \"-\"\n");
}

Test(log, ipv6_peer)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    c10k_resp_t r = plan("HEAD / HTTP/1.0", NULL, "x");

    cr_expect_str_eq(
        format((struct sockaddr *)&a, &r, 100),
        "::1 - - [27/Nov/2026:10:34:17 +0000] \"HEAD / HTTP/1.0\" 200 0 \"-\" \"x\"\n");
}

/* The adversarial report's forgery: a quote in the target must not close the
 * field and start a forged request of its own. */
Test(log, forged_target_is_escaped)
{
    struct sockaddr_in p = v4("127.0.0.1");
    c10k_resp_t r = plan("GET /f1\"_200_1_\"GET_/forged HTTP/1.1", "a\"b", "ua\\\"x\n2");

    r.status = 404;
    cr_expect_str_eq(format((struct sockaddr *)&p, &r, 331),
                     "127.0.0.1 - - [27/Nov/2026:10:34:17 +0000] "
                     "\"GET /f1\\x22_200_1_\\x22GET_/forged HTTP/1.1\" 404 231 "
                     "\"a\\x22b\" \"ua\\x5C\\x22x\\x0A2\"\n");
}

/* Every byte value: printable ASCII but '"' and '\' as is, the rest \xHH
 * with upper-case hex, as nginx writes them. */
Test(log, every_byte)
{
    char ua[256], want[1100];
    size_t w = 0;
    c10k_resp_t r;

    for (int c = 0; c < 256; c++) {
        ua[c] = (char)c;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            w += (size_t)sprintf(want + w, "\\x%02X", c);
        else
            want[w++] = (char)c;
    }
    want[w] = '\0';
    r = plan("GET / HTTP/1.1", NULL, NULL);
    r.user_agent = ua;
    r.user_agent_len = 256;
    format(NULL, &r, 0);
    const char *field = strstr(line, "\"-\" \"") + 5;
    cr_expect_eq(strlen(field), w + 2, "length of the escaped field");
    cr_expect(strncmp(field, want, w) == 0, "escaped bytes differ:\n%s\n%s", field, want);
    cr_expect_str_eq(field + w, "\"\n");
}

/* Fields too long to fit are cut with "...", never mid-escape, and the line
 * stays one write. */
Test(log, long_fields_are_cut)
{
    static char req[9000], ua[5000];
    c10k_resp_t r;

    memset(req, 'a', sizeof(req) - 1);
    memcpy(req, "GET /", 5);
    memset(ua, '"', sizeof(ua) - 1);
    r = plan(req, ua, ua);
    format(NULL, &r, 0);
    cr_expect(strstr(line, "aaa...\" 200 0 \"") != NULL, "%s", line);
    cr_expect(strstr(line, "\\x22...\" \"\\x22") != NULL, "cut between escapes");
    cr_expect(strstr(line, "\\x22...\"\n") != NULL, "user agent cut");
}

/* ---- the views the handler gives the log -------------------------------------------------- */

static char root[64];
static c10k_site_t site;
static char head[C10K_HEAD_BUF];

static void site_up(void)
{
    char path[128];
    FILE *f;

    snprintf(root, sizeof(root), "/tmp/c10k-log-XXXXXX");
    cr_assert(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/hello.txt", root);
    f = fopen(path, "w");
    cr_assert(f);
    fputs("hello, world\n", f);
    fclose(f);
    cr_assert_eq(c10k_site_open(&site, root, 0), 0);
}

static void site_down(void)
{
    char path[128];

    c10k_site_close(&site);
    snprintf(path, sizeof(path), "%s/hello.txt", root);
    unlink(path);
    rmdir(root);
}

TestSuite(views, .init = site_up, .fini = site_down);

static c10k_resp_t handle(const char *raw, ssize_t *used)
{
    c10k_req_t req;
    c10k_resp_t resp;

    c10k_req_init(&req);
    *used = c10k_http_handle(&site, &req, raw, strlen(raw), head, sizeof(head), &resp);
    cr_assert_gt(*used, 0, "%s", raw);
    c10k_resp_finish(&resp);
    return resp;
}

static void expect_view(const char *raw, const char *p, size_t n, const char *want,
                        const char *what)
{
    if (!want) {
        cr_expect_null(p, "%s: want none, got %.*s", what, (int)n, p ? p : "");
        return;
    }
    cr_assert_not_null(p, "%s: none, want %s", what, want);
    cr_expect(p >= raw && p + n <= raw + strlen(raw), "%s: not a view into the caller's bytes",
              what);
    cr_expect(n == strlen(want) && memcmp(p, want, n) == 0, "%s: '%.*s', want '%s'", what, (int)n,
              p, want);
}

static const struct {
    const char *raw;
    int status;
    const char *request, *referer, *user_agent;
} view_cases[] = {
    {"GET /hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent:  ua 1 \t\r\nReferer: http://r/x\r\n"
     "User-Agent: second\r\n\r\n",
     200, "GET /hello.txt HTTP/1.1", "http://r/x", "ua 1"},
    {"\r\n\r\nHEAD /nope HTTP/1.0\r\n\r\n", 404, "HEAD /nope HTTP/1.0", NULL, NULL},
    {"GET /hello.txt HTTP/1.2\r\nHost: t\r\n\r\n", 200, "GET /hello.txt HTTP/1.2", NULL, NULL},
    {"FOO /x HTTP/1.1\r\nHost: t\r\nUser-Agent: u\r\nReferer: r\r\n\r\n", 501, "FOO /x HTTP/1.1",
     "r", "u"},
    {"GET /a\"b HTTP/1.1\r\nHost: t\r\nUser-Agent: \"q\"\r\n\r\n", 404, "GET /a\"b HTTP/1.1", NULL,
     "\"q\""},
    {"GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n", 400, "GET /a\tb HTTP/1.1", NULL, NULL},
    {"GET / HTTP/1.1\nHost: t\n\n", 400, "GET / HTTP/1.1", NULL, NULL},
    {"POST /hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: p\r\nContent-Length: 2\r\n\r\nab", 405,
     "POST /hello.txt HTTP/1.1", NULL, "p"},
    {"GET /hello.txt HTTP/1.1\r\nHost: t\r\nReferer:\r\n\r\n", 200, "GET /hello.txt HTTP/1.1", "",
     NULL},
};

Test(views, request_line_referer_user_agent)
{
    for (size_t i = 0; i < sizeof(view_cases) / sizeof(view_cases[0]); i++) {
        const char *raw = view_cases[i].raw;
        ssize_t used;
        c10k_resp_t r = handle(raw, &used);
        cr_expect_eq(r.status, view_cases[i].status, "%s: status %d", raw, r.status);
        expect_view(raw, r.request, r.request_len, view_cases[i].request, "request line");
        expect_view(raw, r.referer, r.referer_len, view_cases[i].referer, "Referer");
        expect_view(raw, r.user_agent, r.user_agent_len, view_cases[i].user_agent, "User-Agent");
    }
}

Test(views, pipelined_second_request)
{
    const char *raw = "GET /hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: one\r\n\r\n"
                      "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    ssize_t used;
    c10k_resp_t r = handle(raw, &used);

    r = handle(raw + used, &used);
    cr_expect_eq(r.status, 404);
    expect_view(raw, r.request, r.request_len, "GET /nope HTTP/1.1", "second request line");
    cr_expect_null(r.user_agent, "the first request's User-Agent must not carry over");
}

/* A 408 has no bytes to point at: the log writes "-". */
Test(views, timeout_has_no_request)
{
    c10k_req_t req;
    c10k_resp_t r;

    c10k_req_init(&req);
    cr_assert_eq(c10k_http_timeout(&req, 5, head, sizeof(head), &r), 1);
    cr_expect_null(r.request);
    cr_expect_null(r.user_agent);
}
