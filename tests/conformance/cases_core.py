"""cases_core - the HTTP/1.1 behaviour every model must show: methods, keep-alive,
pipelining, directories, MIME types, conditionals, ranges, errors, limits,
traversal, timeouts, the access log, a real client (curl), and stopping."""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from suite import DIFF_REQUESTS, each, start, status_case, test
from c10ktest import Reader, connect, eq, exchange, get

@test
def get_and_head(ctx):
    r = get(ctx.port, "/hello.txt")
    eq(r.status, 200, "status")
    eq(r.body, b"hello, world\n", "body")
    eq(r.h("content-length"), "13", "length")
    eq(r.h("content-type"), "text/plain; charset=utf-8", "type")
    eq(r.h("last-modified"), "Sun, 13 Sep 2020 12:26:40 GMT", "last-modified")
    assert r.h("etag") and r.h("etag").startswith('"'), "etag"
    assert re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", r.h("date")), "date"
    h = get(ctx.port, "/hello.txt", method="HEAD")
    eq(h.status, 200, "HEAD status")
    eq(h.body, b"", "HEAD body")
    for k in ("content-length", "content-type", "etag", "last-modified"):
        eq(h.h(k), r.h(k), "HEAD " + k)


@test
def head_sends_no_body(ctx):
    with connect(ctx.port) as s:
        s.sendall(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        eq(r.read_response(head_request=True).status, 200, "HEAD")
        g = r.read_response()
        eq(g.body, b"hello, world\n", "GET after HEAD")


@test
def keepalive_rules(ctx):
    with connect(ctx.port) as s:  # 1.1: keep-alive by default
        r = Reader(s)
        for _ in range(3):
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            eq(r.read_response().status, 200, "1.1 keep-alive")
    with connect(ctx.port) as s:  # 1.0: closes by default
        s.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        r = Reader(s)
        resp = r.read_response()
        eq(resp.h("connection"), "close", "1.0 Connection")
        assert r.closed(), "1.0 without keep-alive must close"
    with connect(ctx.port) as s:  # 1.0 opt-in
        r = Reader(s)
        for _ in range(2):
            s.sendall(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            eq(r.read_response().h("connection"), "keep-alive", "1.0 keep-alive")
    with connect(ctx.port) as s:  # Connection: close honoured
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        r = Reader(s)
        eq(r.read_response().h("connection"), "close", "close header")
        assert r.closed(), "Connection: close must close"


@test
def pipelining(ctx):
    paths = ["/hello.txt", "/sub/page.html", "/m/file.css"]
    raw = "".join("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p for p in paths).encode()
    rs = exchange(ctx.port, raw, n=3)
    eq([r.body for r in rs], [ctx.files["hello.txt"], ctx.files["sub/page.html"],
                              ctx.files["m/file.css"]], "pipelined bodies in order")


@test
def byte_at_a_time(ctx):
    raw = b"GET /sub/page.html HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n"
    with connect(ctx.port) as s:
        for i in range(len(raw)):
            s.sendall(raw[i:i + 1])
            time.sleep(0.002)
        r = Reader(s).read_response()
        eq(r.body, b"<p>page</p>\n", "trickled request")


@test
def host_required(ctx):
    eq(exchange(ctx.port, b"GET /hello.txt HTTP/1.1\r\n\r\n").status, 400, "1.1 without Host")
    eq(exchange(ctx.port, b"GET /hello.txt HTTP/1.0\r\n\r\n").status, 200, "1.0 without Host")


@test
def absolute_form(ctx):
    r = exchange(ctx.port, b"GET http://example.com/hello.txt HTTP/1.1\r\nHost: example.com\r\n\r\n")
    eq(r.status, 200, "absolute-form")
    eq(r.body, b"hello, world\n", "absolute-form body")


@test
def decoding_and_query(ctx):
    eq(get(ctx.port, "/%68ello.txt").body, b"hello, world\n", "percent-decoding")
    eq(get(ctx.port, "/sp%20ace/file.txt").body, b"spaced\n", "encoded space")
    eq(get(ctx.port, "/hello.txt?x=1&y=../../etc").status, 200, "query ignored")
    eq(get(ctx.port, "//sub/./page.html").body, b"<p>page</p>\n", "normalised path")
    eq(get(ctx.port, "/inside-link.txt").body, b"hello, world\n", "symlink inside root")


@test
def directories(ctx):
    eq(get(ctx.port, "/").body, ctx.files["index.html"], "root index")
    r = get(ctx.port, "/sub/")
    eq(r.body, ctx.files["sub/index.html"], "sub index")
    eq(r.h("content-type"), "text/html; charset=utf-8", "index type")
    r = get(ctx.port, "/sub")
    eq(r.status, 301, "no slash")
    eq(r.h("location"), "/sub/", "location")
    eq(get(ctx.port, "/sub?a=b").h("location"), "/sub/?a=b", "location keeps the query")
    eq(get(ctx.port, "/empty/").status, 403, "no index, no listing: 403")


@test
def mime_types(ctx):
    want = {"html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
            "js": "text/javascript; charset=utf-8", "json": "application/json",
            "txt": "text/plain; charset=utf-8", "png": "image/png", "jpg": "image/jpeg",
            "gif": "image/gif", "svg": "image/svg+xml", "ico": "image/vnd.microsoft.icon",
            "wasm": "application/wasm", "pdf": "application/pdf", "woff2": "font/woff2",
            "mp4": "video/mp4"}
    for ext, t in want.items():
        eq(get(ctx.port, "/m/file." + ext).h("content-type"), t, "type of ." + ext)
    eq(get(ctx.port, "/noext").h("content-type"), "application/octet-stream", "no extension")


@test
def conditionals(ctx):
    r = get(ctx.port, "/hello.txt")
    etag, lm = r.h("etag"), r.h("last-modified")
    n = get(ctx.port, "/hello.txt", "If-None-Match: %s\r\n" % etag)
    eq(n.status, 304, "If-None-Match")
    eq(n.body, b"", "304 body")
    eq(n.h("etag"), etag, "304 etag")
    eq(get(ctx.port, "/hello.txt", 'If-None-Match: "x", W/%s\r\n' % etag).status, 304, "list, weak")
    eq(get(ctx.port, "/hello.txt", "If-None-Match: *\r\n").status, 304, "star")
    eq(get(ctx.port, "/hello.txt", 'If-None-Match: "nope"\r\n').status, 200, "no match")
    eq(get(ctx.port, "/hello.txt", "If-Modified-Since: %s\r\n" % lm).status, 304, "IMS equal")
    eq(get(ctx.port, "/hello.txt", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n").status,
       200, "IMS older")
    eq(get(ctx.port, "/hello.txt", 'If-None-Match: "nope"\r\nIf-Modified-Since: %s\r\n' % lm)
       .status, 200, "INM wins over IMS")


@test
def ranges(ctx):
    data = ctx.files["mid.bin"]
    size = len(data)
    for spec, a, b in [("0-99", 0, 99), ("100-", 100, size - 1), ("-50", size - 50, size - 1),
                       ("1000-%d" % (size * 2), 1000, size - 1)]:
        r = get(ctx.port, "/mid.bin", "Range: bytes=%s\r\n" % spec)
        eq(r.status, 206, "range " + spec)
        eq(r.h("content-range"), "bytes %d-%d/%d" % (a, b, size), "content-range " + spec)
        eq(r.body, data[a:b + 1], "range body " + spec)
        eq(r.h("content-length"), str(b - a + 1), "range length " + spec)
    r = get(ctx.port, "/mid.bin", "Range: bytes=%d-\r\n" % size)
    eq(r.status, 416, "unsatisfiable")
    eq(r.h("content-range"), "bytes */%d" % size, "416 content-range")
    eq(get(ctx.port, "/mid.bin", "Range: bytes=0-1,5-6\r\n").status, 200, "multi-range ignored")
    eq(get(ctx.port, "/mid.bin", "Range: items=0-1\r\n").status, 200, "other unit ignored")


BAD_REQUESTS = [
    ("malformed request line", b"GARBAGE\r\n\r\n", 400),
    ("lowercase method is 501", b"get /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 501),
    ("unknown method is 501", b"FROB /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 501),
    ("duplicate Content-Length", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
    ("conflicting Content-Length", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ("CL with TE", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("space before colon, Host present", b"GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  2\r\n\r\n", 400),
    ("POST is 405", b"POST /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    ("DELETE is 405", b"DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    ("body is 413", b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 413),
    ("chunked body is 413", b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413),
    ("unknown TE is 501", b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("HTTP/2.0 is 505", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("missing file is 404", b"GET /nope.txt HTTP/1.1\r\nHost: t\r\n\r\n", 404),
]


@test
def error_statuses(ctx):
    each(BAD_REQUESTS, lambda case: status_case(ctx.port, case))


@test
def forbidden_403(ctx):
    if os.geteuid() == 0:
        ctx.skip("running as root: an unreadable file is readable, so 403 cannot be provoked")
    eq(get(ctx.port, "/locked.txt").status, 403, "unreadable file")


@test
def limits(ctx):
    eq(exchange(ctx.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n").status, 414,
       "URI over 8 KiB")
    eq(exchange(ctx.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n")
       .status, 431, "headers over 16 KiB")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    eq(exchange(ctx.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n").status, 431,
       "more than 100 header lines")
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(98))
    eq(exchange(ctx.port, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n" + ok + b"\r\n").status, 200,
       "99 header lines are fine")


TRAVERSAL = [
    "/../secret.txt", "/../../etc/passwd", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt", "/%2e%2E/%2e%2e/etc/passwd", "/.%2e/secret.txt", "/%2e./secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt", "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt",
    "/%c0%ae%c0%ae/secret.txt", "/%c0%2e%c0%2e/secret.txt", "/%e0%80%ae%e0%80%ae/secret.txt",
    "/..%2fsecret.txt", "/..%2Fsecret.txt", "/sub%2f..%2f..%2fsecret.txt", "/..\\secret.txt",
    "/%5c..%5csecret.txt", "/..%5csecret.txt", "/sub\\..\\..\\secret.txt", "/hello.txt%00.html",
    "/%00", "/..;/secret.txt", "/sub/..;/..;/secret.txt", "/.git/config", "/.git/",
    "/.env", "/%2egit/config", "/sub/../.git/config", "/escape.txt", "/etc-link/passwd",
    "/etc-link/hostname", "/./../secret.txt", "/.../secret.txt", "/sub/.././../secret.txt",
    "/%2e%2e%2f%2e%2e%2fsecret.txt", "/....//secret.txt", "/%u002e%u002e/secret.txt",
    "/%C0%AE%C0%AE%C0%AFsecret.txt",
]


@test
def traversal(ctx):
    assert len(TRAVERSAL) >= 30

    def check(path):
        raw = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode("latin-1")
        r = exchange(ctx.port, raw)  # asserts the secret is not in the answer
        assert b"root:" not in r.body, "/etc/passwd leaked"
        assert r.status in (400, 403, 404), "status %d" % r.status
    each(TRAVERSAL, check)


@test
def big_file_integrity(ctx):
    with connect(ctx.port, timeout=20) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s).read_response()
    eq(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(ctx.files["big.bin"]).hexdigest(),
       "16 MiB checksum")
    a, b = 5_000_000, 9_000_000
    r = get(ctx.port, "/big.bin", "Range: bytes=%d-%d\r\n" % (a, b))
    eq(r.body == ctx.files["big.bin"][a:b + 1], True, "16 MiB range")


@test
def concurrent_200(ctx):
    errors = []

    def client(i):
        try:
            with connect(ctx.port, timeout=20) as s:
                r = Reader(s)
                for path in ("/hello.txt", "/m/file.json", "/sub/"):
                    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
                    resp = r.read_response()
                    if resp.status != 200:
                        errors.append("%d %s -> %d" % (i, path, resp.status))
        except Exception as e:  # noqa: BLE001 - any failure counts
            errors.append("%d: %r" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    eq(errors[:5], [], "200 concurrent clients")


@test
def reset_mid_body(ctx):
    with connect(ctx.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.2)
    eq(get(ctx.port, "/hello.txt").status, 200, "serves after a reset")


@test
def slow_reader(ctx):
    """A small receive window and sleeps keep the server's sends partial for
    ~3 s; then the rest is read at full speed so the test stays bounded."""
    want = ctx.files["big.bin"]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connect: sets the window
    s.settimeout(20)
    with s:
        s.connect(("127.0.0.1", ctx.port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            assert chunk, "closed before the head"
            got += chunk
        head, rest = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 "), head[:40]
        body = bytearray(rest)
        h = hashlib.sha256()
        t0 = time.time()
        while len(body) < len(want):
            chunk = s.recv(4096 if time.time() - t0 < 3 else 1 << 20)
            if not chunk:
                break
            body += chunk
            if time.time() - t0 < 3:
                time.sleep(0.005)
    h.update(body)
    eq(len(body), len(want), "slow reader length")
    eq(h.hexdigest(), hashlib.sha256(want).hexdigest(), "slow reader checksum")


@test
def header_timeout_408(ctx):
    with connect(ctx.port) as s:
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHo")
        t0 = time.time()
        r = Reader(s)
        resp = r.read_response()
        eq(resp.status, 408, "stalled head")
        assert 0.5 < time.time() - t0 < 4, "408 after ~1 s, took %.1f" % (time.time() - t0)
        assert r.closed(), "408 closes"


@test
def keepalive_timeout(ctx):
    with connect(ctx.port) as s:
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        eq(r.read_response().status, 200, "first")
        t0 = time.time()
        assert r.closed(timeout=5), "idle keep-alive closed"
        assert time.time() - t0 > 1.0, "closed too early (%.1f s)" % (time.time() - t0)
        eq(r.buf, b"", "idle close sends nothing")


@test
def max_requests(ctx):
    srv = start(ctx, ["--max-requests", "3"])
    try:
        with connect(srv.port) as s:
            r = Reader(s)
            for i in range(3):
                s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                resp = r.read_response()
                eq(resp.h("connection"), "keep-alive" if i < 2 else "close", "request %d" % i)
            assert r.closed(), "closes after the 3rd"
    finally:
        srv.stop_clean()


@test
def access_log(ctx):
    log = os.path.join(ctx.tmp, "access-%d.log" % os.getpid())
    srv = start(ctx, ["--access-log", log])
    try:
        get(srv.port, "/hello.txt")
        get(srv.port, "/nope")
    finally:
        srv.stop_clean()
    with open(log) as f:
        lines = f.read().splitlines()
    os.unlink(log)
    assert any('"GET /hello.txt HTTP/1.1" 200 13 ' in l for l in lines), lines
    assert any('"GET /nope HTTP/1.1" 404 ' in l for l in lines), lines


@test
def curl_client(ctx):
    if not shutil.which("curl"):
        ctx.skip("curl is not installed (make deps installs it)")
    base = "http://127.0.0.1:%d" % ctx.port
    out = subprocess.run(["curl", "-sS", "-o", "-", "-D", "-", base + "/hello.txt"],
                         capture_output=True, timeout=10)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), "curl status line: %r" % head[:40]
    assert b"\r\nContent-Length: 13\r\n" in head + b"\r\n", "curl headers: %r" % head
    eq(body, b"hello, world\n", "curl GET")
    out = subprocess.run(["curl", "-sS", "--http1.0", "-o", "-", base + "/sub/page.html"],
                         capture_output=True, timeout=10)
    eq(out.stdout, b"<p>page</p>\n", "curl 1.0")
    out = subprocess.run(["curl", "-sS", "-I", base + "/hello.txt"], capture_output=True,
                         timeout=10)
    assert b"Content-Length: 13" in out.stdout, out.stdout
    out = subprocess.run(["curl", "-sS", "-r", "0-99", "-o", "-", base + "/mid.bin"],
                         capture_output=True, timeout=10)
    eq(out.stdout, ctx.files["mid.bin"][:100], "curl range")
    out = subprocess.run(["curl", "-sS", "-v", "-o", "/dev/null", "-o", "/dev/null",
                          base + "/hello.txt", base + "/m/file.css"], capture_output=True,
                         timeout=10)
    assert re.search(rb"Re-using existing connection|Reusing existing connection", out.stderr), \
        "curl did not reuse the connection"


@test
def sigterm_during_transfer(ctx):
    srv = start(ctx)
    try:
        s = connect(srv.port, timeout=20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        first = s.recv(65536)
        idle = connect(srv.port)
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # A new connection is refused, or closed without an answer.
        try:
            with connect(srv.port, timeout=3) as n:
                n.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                eq(n.recv(100), b"", "new connection after SIGTERM")
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        rest = Reader(s)
        rest.buf = first
        resp = rest.read_response()
        s.close()
        eq(hashlib.sha256(resp.body).hexdigest(),
           hashlib.sha256(ctx.files["big.bin"]).hexdigest(), "transfer completes in full")
        eq(Reader(idle).closed(timeout=5), True, "idle keep-alive closed on stop")
        idle.close()
        # Once the in-flight transfer is done, still nobody new gets an answer.
        try:
            with connect(srv.port, timeout=3) as n:
                n.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                eq(n.recv(100), b"", "new connection after the transfer")
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        srv.stop_clean()
    finally:
        srv.kill()


DIFF_REQUESTS += [
    b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /hello.txt HTTP/1.0\r\n\r\n",
    b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /m/file.svg HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=10-20\r\n\r\n",
    b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-5\r\n\r\n",
    b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=9999999-\r\n\r\n",
    b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n",
    b"GET /.git/config HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /../x HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /escape.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT\r\n\r\n",
    b"GET /empty/ HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /sp%20ace/file.txt?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET http://x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello.txt HTTP/1.1\r\n\r\n",
    b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n",
] + [raw for _, raw, _ in BAD_REQUESTS]
