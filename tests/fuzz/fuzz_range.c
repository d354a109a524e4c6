/*
 * fuzz_range.c - libFuzzer target: Range and conditional headers always give
 * a consistent response plan.
 *
 * Input layout (a seed is readable as text):
 *
 *     byte 0        flags: bit 0 = HEAD instead of GET, bit 1 = the empty file
 *     then up to four fields separated by '\n', in this order:
 *                   Range, If-None-Match, If-Modified-Since, If-Range
 *                   (a missing field omits its header; an empty one sends it
 *                   empty). In a field "$E" becomes the file's real ETag and
 *                   "$L" its real Last-Modified, learnt by one plain GET at
 *                   start-up, so the fuzzer reaches the matching branches.
 *
 * The file is TMP/root/f.bin (FILE_SIZE bytes, mtime 2020-01-01) or the empty
 * TMP/root/empty.bin. After every call the plan must be consistent:
 *
 *   - a complete request always gets a plan, its head ends in CRLF CRLF and
 *     its status line carries resp.status, one of 200 206 304 400 416;
 *   - Content-Length in the head equals the body the plan sends (file range
 *     or static buffer); HEAD (unless 400) and 304 send no body at all;
 *   - 206: the range lies within the file, is not empty, and Content-Range
 *     says "bytes FIRST-LAST/SIZE" for exactly that range;
 *   - 200 to a GET: the whole file; 416: Content-Range "bytes * /SIZE";
 *   - with no Range and no conditionals the answer is 200; If-None-Match
 *     with exactly the current ETag is 304; "Range: bytes=0-0" alone on the
 *     non-empty file is 206 with one byte;
 *   - c10k_resp_finish() closes the body_fd.
 *
 * Uses only the public API in common/http.h. tests/fuzz/run.sh builds it with
 * clang -fsanitize=fuzzer,address,undefined and runs it on
 * tests/fuzz/corpus_range.
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE 1000
#define FIELD_MAX 1024 /* keeps every request far below the head limits */
#define NFIELDS   4

static const char *const field_names[NFIELDS] = {"Range", "If-None-Match", "If-Modified-Since",
                                                 "If-Range"};

static c10k_site_t site;
static char tmp_dir[] = "/tmp/c10k-fuzz-range-XXXXXX";
static char etag[256], last_modified[128];

typedef struct field_s {
    bool present;
    char val[3072]; /* after $E / $L expansion; four fit in C10K_HEADERS_MAX */
    size_t len;
} field_t;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_range: %s: %s\n", what, strerror(errno));
    abort();
}

static void fail(const char *req, size_t req_len, const char *head, size_t head_len,
                 const char *why)
{
    fprintf(stderr, "fuzz_range: %s\n--- request\n%.*s--- head\n%.*s---\n", why, (int)req_len, req,
            (int)head_len, head);
    abort();
}

static void remove_tree(void)
{
    char cmd[PATH_MAX + 32];

    c10k_site_close(&site);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_range: could not remove %s\n", tmp_dir);
}

/* The value of header name in head (NULL if absent); *count gets how many
 * times it appears. */
static const char *head_value(const char *head, size_t len, const char *name, size_t *vlen,
                              int *count)
{
    const char *p = memchr(head, '\n', len), *end = head + len, *found = NULL;
    size_t nlen = strlen(name);

    *count = 0;
    while (p && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\r', (size_t)(end - line));
        if (!eol || eol == line)
            break;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            found = v;
            *vlen = (size_t)(eol - v);
            (*count)++;
        }
        p = memchr(line, '\n', (size_t)(end - line));
    }
    return found;
}

static size_t build_request(char *req, size_t cap, bool head_method, bool empty, const field_t *f)
{
    size_t len;

    len = (size_t)snprintf(req, cap, "%s /%s HTTP/1.1\r\nHost: fuzz\r\n",
                           head_method ? "HEAD" : "GET", empty ? "empty.bin" : "f.bin");
    for (int i = 0; i < NFIELDS; i++) {
        if (!f[i].present)
            continue;
        len += (size_t)snprintf(req + len, cap - len, "%s: ", field_names[i]);
        memcpy(req + len, f[i].val, f[i].len);
        len += f[i].len;
        memcpy(req + len, "\r\n", 2);
        len += 2;
    }
    memcpy(req + len, "\r\n", 2);
    return len + 2;
}

/* Plain GET of f.bin at start-up: learn the validators the fuzzer may use. */
static void learn_validators(void)
{
    static char head[C10K_HEAD_BUF];
    const char *req = "GET /f.bin HTTP/1.1\r\nHost: fuzz\r\n\r\n";
    c10k_req_t r;
    c10k_resp_t resp;
    const char *v;
    size_t vlen = 0;
    int count;

    c10k_req_init(&r);
    if (c10k_http_handle(&site, &r, req, strlen(req), head, sizeof(head), &resp) <= 0 ||
        resp.status != 200)
        die("plain GET of the fixture");
    v = head_value(head, resp.head_len, "ETag", &vlen, &count);
    if (v && vlen < sizeof(etag))
        memcpy(etag, v, vlen);
    v = head_value(head, resp.head_len, "Last-Modified", &vlen, &count);
    if (v && vlen < sizeof(last_modified))
        memcpy(last_modified, v, vlen);
    c10k_resp_finish(&resp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX], data[FILE_SIZE];
    struct timespec times[2] = {{.tv_sec = 1577836800}, {.tv_sec = 1577836800}};
    int fd;

    (void)argc;
    (void)argv;
    if (!mkdtemp(tmp_dir))
        die("mkdtemp");
    atexit(remove_tree);
    snprintf(path, sizeof(path), "%s/root", tmp_dir);
    if (mkdir(path, 0755) < 0)
        die(path);
    for (int i = 0; i < FILE_SIZE; i++)
        data[i] = (char)('a' + i % 26);
    snprintf(path, sizeof(path), "%s/root/f.bin", tmp_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data) ||
        futimens(fd, times) < 0 || close(fd) < 0)
        die(path);
    snprintf(path, sizeof(path), "%s/root/empty.bin", tmp_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || futimens(fd, times) < 0 || close(fd) < 0)
        die(path);
    snprintf(path, sizeof(path), "%s/root", tmp_dir);
    if (c10k_site_open(&site, path, 0) < 0)
        die("c10k_site_open");
    learn_validators();
    return 0;
}

/* Split data into fields, expanding $E and $L. Returns the number present. */
static int split_fields(const uint8_t *data, size_t size, field_t *f)
{
    size_t i = 0;
    int n = 0;

    memset(f, 0, sizeof(field_t) * NFIELDS);
    while (n < NFIELDS && i <= size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t end = nl ? (size_t)(nl - data) : size;
        field_t *fl = &f[n++];

        fl->present = true;
        for (size_t k = i; k < end && k - i < FIELD_MAX && fl->len < sizeof(fl->val); k++) {
            if (data[k] == '$' && k + 1 < end && (data[k + 1] == 'E' || data[k + 1] == 'L')) {
                const char *s = data[k + 1] == 'E' ? etag : last_modified;
                if (fl->len + strlen(s) > sizeof(fl->val))
                    break;
                memcpy(fl->val + fl->len, s, strlen(s));
                fl->len += strlen(s);
                k++;
                continue;
            }
            fl->val[fl->len++] = (char)data[k];
        }
        if (!nl)
            break;
        i = end + 1;
    }
    return n;
}

static bool field_is(const field_t *f, const char *s)
{
    return f->present && f->len == strlen(s) && memcmp(f->val, s, f->len) == 0;
}

/* Field bytes a header value may hold (RFC 9110 field-vchar, SP, HTAB). */
static bool field_clean(const field_t *f)
{
    for (size_t i = 0; i < f->len; i++) {
        unsigned char c = (unsigned char)f->val[i];
        if (c != '\t' && (c < 0x20 || c == 0x7f))
            return false;
    }
    return !f->present || f->len == 0 || (f->val[0] != ' ' && f->val[0] != '\t');
}

static void check_plan(const char *req, size_t req_len, const char *head, const c10k_resp_t *resp,
                       bool head_method, off_t size, const field_t *f)
{
    size_t hl = resp->head_len, body, vlen = 0;
    const char *v;
    char want[128], code[8];
    int count;
    bool all_clean = true, none = true;

    for (int i = 0; i < NFIELDS; i++) {
        all_clean = all_clean && field_clean(&f[i]);
        none = none && !f[i].present;
    }
    if (hl < 16 || hl > C10K_HEAD_BUF || memcmp(head + hl - 4, "\r\n\r\n", 4) != 0)
        fail(req, req_len, head, hl > C10K_HEAD_BUF ? 0 : hl, "malformed head");
    snprintf(code, sizeof(code), " %03d ", resp->status);
    if (memcmp(head, "HTTP/1.1", 8) != 0 || memcmp(head + 8, code, 5) != 0)
        fail(req, req_len, head, hl, "status line does not carry resp.status");
    switch (resp->status) {
    case 200:
    case 206:
    case 304:
    case 400:
    case 416:
        break;
    default:
        fail(req, req_len, head, hl, "unexpected status");
    }

    body = resp->body_fd >= 0 ? resp->body_len : (resp->body_mem ? resp->body_mem_len : 0);
    /* A 400 may carry its page even for HEAD: the request was not parsed far
     * enough to trust its method, and the connection closes after it. */
    if (((head_method && resp->status != 400) || resp->status == 304) && body != 0)
        fail(req, req_len, head, hl, "HEAD or 304 with a body");
    v = head_value(head, hl, "Content-Length", &vlen, &count);
    if (count > 1)
        fail(req, req_len, head, hl, "Content-Length twice");
    if (!head_method && resp->status != 304) {
        if (!v)
            fail(req, req_len, head, hl, "no Content-Length");
        snprintf(want, sizeof(want), "%zu", body);
        if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
            fail(req, req_len, head, hl, "Content-Length differs from the planned body");
    }
    if (resp->body_fd >= 0 && (resp->body_off < 0 || resp->body_off > size ||
                               (off_t)resp->body_len > size - resp->body_off))
        fail(req, req_len, head, hl, "file range outside the file");

    v = head_value(head, hl, "Content-Range", &vlen, &count);
    if (resp->status == 206) {
        if (count != 1)
            fail(req, req_len, head, hl, "206 without exactly one Content-Range");
        if (!head_method && (resp->body_fd < 0 || resp->body_len == 0))
            fail(req, req_len, head, hl, "206 without a file range");
        if (!head_method) {
            snprintf(want, sizeof(want), "bytes %lld-%lld/%lld", (long long)resp->body_off,
                     (long long)(resp->body_off + (off_t)resp->body_len - 1), (long long)size);
            if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
                fail(req, req_len, head, hl, "Content-Range differs from the planned range");
        }
    }
    if (resp->status == 416 && v) {
        snprintf(want, sizeof(want), "bytes */%lld", (long long)size);
        if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
            fail(req, req_len, head, hl, "416 Content-Range is not bytes */SIZE");
    }
    if (resp->status == 200 && !head_method && size > 0 &&
        (resp->body_fd < 0 || resp->body_off != 0 || (off_t)resp->body_len != size))
        fail(req, req_len, head, hl, "200 without the whole file");

    /* A few answers the spec fixes outright. */
    if (none && resp->status != 200)
        fail(req, req_len, head, hl, "plain GET is not 200");
    if (all_clean && size == FILE_SIZE && field_is(&f[1], etag) && resp->status != 304)
        fail(req, req_len, head, hl, "If-None-Match with the current ETag is not 304");
    if (field_is(&f[0], "bytes=0-0") && !f[1].present && !f[2].present && !f[3].present &&
        size > 0 && (resp->status != 206 || (!head_method && resp->body_len != 1)))
        fail(req, req_len, head, hl, "Range: bytes=0-0 is not a one-byte 206");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char req[NFIELDS * (sizeof(((field_t *)0)->val) + 32) + 128], head[C10K_HEAD_BUF];
    field_t f[NFIELDS];
    bool head_method, empty;
    c10k_req_t r;
    c10k_resp_t resp;
    size_t len;
    ssize_t used;
    int fd;

    if (size == 0)
        return 0;
    head_method = data[0] & 1;
    empty = data[0] & 2;
    split_fields(data + 1, size - 1, f);
    len = build_request(req, sizeof(req), head_method, empty, f);

    c10k_req_init(&r);
    used = c10k_http_handle(&site, &r, req, len, head, sizeof(head), &resp);
    if (used <= 0 || (size_t)used > len) {
        /* A field holding CR may end the head early; then a plan is due
         * all the same, since "\r\n\r\n" still ends the buffer. */
        fprintf(stderr, "fuzz_range: c10k_http_handle returned %zd for %zu bytes\n", used, len);
        abort();
    }
    check_plan(req, len, head, &resp, head_method, empty ? 0 : FILE_SIZE, f);
    fd = resp.body_fd;
    c10k_resp_finish(&resp);
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
        fail(req, len, head, resp.head_len, "c10k_resp_finish left body_fd open");
    return 0;
}
