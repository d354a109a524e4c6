"""cases_hardening - what a peer's test suite, adversarial testing and a new
user found (issue 13), on every model: a held port, request-line and Host
syntax compared with nginx and the RFCs, methods decided before the body,
directories and trailing slashes, the query kept by a 301, MIME types from
Debian's list, and an access log in nginx's `combined` format that a forged
request cannot corrupt (checked with an exact regex and with goaccess)."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

from suite import DIFF_REQUESTS, each, start, status_case, test
from c10ktest import Reader, connect, eq, exchange, get, run_to_exit, serve_argv

MIME_FILE = "/etc/mime.types"


def one_line_error(status, err, what, *words):
    eq(status, 2, what + ": exit status")
    assert err and "\n" not in err, "%s: want a one-line message, got %r" % (what, err)
    for w in words:
        assert w in err, "%s: message %r does not name %r" % (what, err, w)


# ---- the port ------------------------------------------------------------------------------

@test
def held_port_refused(ctx):
    """A second server on a port somebody holds exits 2 naming the port, never
    joins it through SO_REUSEPORT; the server holding it keeps every request."""
    argv = serve_argv(ctx.bin, ctx.variant, ctx.root, ["--port", str(ctx.port)])
    status, err = run_to_exit(argv)
    one_line_error(status, err, "second c10k on the port", str(ctx.port))
    for _ in range(20):
        eq(get(ctx.port, "/hello.txt").status, 200, "the first server still answers")
    for reuseport in (False, True):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            argv = serve_argv(ctx.bin, ctx.variant, ctx.root, ["--port", str(port)])
            status, err = run_to_exit(argv)
            one_line_error(status, err, "port held by a socket (SO_REUSEPORT %s)" % reuseport,
                           str(port))


# ---- the command line ------------------------------------------------------------------------

@test
def cli_version_bind_mime_flags(ctx):
    out = subprocess.run([ctx.bin, "--version"], capture_output=True, text=True, timeout=10)
    eq(out.returncode, 0, "c10k --version")
    assert re.match(r"c10k \d+\.\d+\.\d+\n", out.stdout), out.stdout
    assert ctx.variant.split()[0] in out.stdout, "models listed: %r" % out.stdout
    model = ctx.variant.split()
    status, err = run_to_exit([ctx.bin, "serve"] + model + ["--bind", "localhost"])
    one_line_error(status, err, "--bind localhost", "localhost", "127.0.0.1", "::1")
    eq(err.count("invalid address") + err.count("not a numeric"), 1, "said once: " + err)
    missing = os.path.join(ctx.tmp, "no-such-mime.types")
    status, err = run_to_exit(serve_argv(ctx.bin, ctx.variant, ctx.root,
                                         ["--mime-types", missing]))
    one_line_error(status, err, "--mime-types missing", missing)
    status, err = run_to_exit(serve_argv(ctx.bin, ctx.variant, ctx.root,
                                         ["--mime-types", ctx.root]))
    one_line_error(status, err, "--mime-types a directory", ctx.root)


# ---- request line and headers, against nginx and the RFCs -------------------------------------

REQUESTS = [
    # RFC 9110 2.5: a higher minor version is processed as 1.1 (nginx: 200)
    ("HTTP/1.2 as 1.1", b"GET /hello.txt HTTP/1.2\r\nHost: t\r\n\r\n", 200),
    ("HTTP/1.9 as 1.1", b"GET /hello.txt HTTP/1.9\r\nHost: t\r\n\r\n", 200),
    ("HTTP/2.0 is 505", b"GET /hello.txt HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    # RFC 9112 3.2: an invalid Host is 400
    ("Host with a space", b"GET /hello.txt HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    ("Host with a slash", b"GET /hello.txt HTTP/1.1\r\nHost: a/c\r\n\r\n", 400),
    ("Host with a bad port", b"GET /hello.txt HTTP/1.1\r\nHost: a:x\r\n\r\n", 400),
    ("Host with a port", b"GET /hello.txt HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 200),
    ("Host IPv6 literal", b"GET /hello.txt HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200),
    # RFC 9110 4.2.4: userinfo in an http URI is an error
    ("userinfo in absolute-form", b"GET http://u:p@x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # RFC 9110 9.1: an unknown method is 501
    ("unknown method FOO", b"FOO /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 501),
    # whitespace and control bytes in the target (nginx: 400)
    ("TAB in the target", b"GET /hello.txt?a\tb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("form feed in the target", b"GET /hello.txt?a\x0cb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("DEL in the target", b"GET /hello.txt?a\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("quote in the target", b'GET /f1"_200_1_"GET_/forged HTTP/1.1\r\nHost: t\r\n\r\n', 404),
    # a method is decided before the body: 405 with Allow, and close
    ("POST with a body", b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
     405),
    ("PUT chunked", b"PUT /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n", 405),
    ("DELETE with a body", b"DELETE /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
     405),
    ("GET with a body stays 413", b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
     413),
    # a slash after a file name: there is no such directory (nginx, Apache: 404)
    ("slash after a file", b"GET /sub/page.html/ HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    ("slash and dot after a file", b"GET /hello.txt/. HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    # a directory without an index (nginx, Apache: 403)
    ("directory without index", b"GET /empty/ HTTP/1.1\r\nHost: t\r\n\r\n", 403),
]


@test
def request_line_and_headers(ctx):
    each(REQUESTS, lambda case: status_case(ctx.port, case))


@test
def http_1_2_is_answered_as_1_1(ctx):
    r = get(ctx.port, "/hello.txt", version="1.2")
    eq(r.body, b"hello, world\n", "body")
    eq(r.h("connection"), "keep-alive", "keep-alive by default, as 1.1")
    eq(exchange(ctx.port, b"GET /hello.txt HTTP/1.2\r\n\r\n").status, 400, "Host required, as 1.1")


@test
def redirect_keeps_query(ctx):
    for path, want in [("/sub?a=b", "/sub/?a=b"), ("/sub?a=b&c=%20d", "/sub/?a=b&c=%20d"),
                       ("/sub?x=%22y%22&z=/?", "/sub/?x=%22y%22&z=/?"),
                       ('/sub?q="<>', "/sub/?q=%22%3C%3E"), ("/sub", "/sub/"), ("/sub?", "/sub/")]:
        r = get(ctx.port, path)
        eq(r.status, 301, path)
        eq(r.h("location"), want, "Location for " + path)


@test
def directory_without_index_keeps_connection(ctx):
    with connect(ctx.port) as s:
        rd = Reader(s)
        for path in ("/empty/", "/sub/page.html/", "/empty/"):
            s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
            eq(rd.read_response().status, 403 if path == "/empty/" else 404, path)
        s.sendall(b"GET /sub/page.html HTTP/1.1\r\nHost: t\r\n\r\n")
        eq(rd.read_response().body, b"<p>page</p>\n", "page.html without the slash")


# ---- an own root: ranges on an empty file, MIME types ---------------------------------------------

def debian_types():
    """The extension -> Content-Type map c10k must serve from /etc/mime.types:
    the later line wins, text/ types get a charset."""
    types = {}
    with open(MIME_FILE, encoding="latin-1") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or not re.fullmatch(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+", words[0]):
                continue
            value = words[0] + ("; charset=utf-8" if words[0].lower().startswith("text/") else "")
            for ext in words[1:]:
                types[ext.lower()] = value
    return types


SAMPLE = ["swf", "ico", "md", "csv", "gz", "docx", "epub", "mp3", "flac", "7z", "webm", "avif",
          "ttf", "otf", "yaml", "zip", "rss", "apk", "m4a", "ogg", "sh", "sarif.json", "html",
          "js", "json", "svg"]


def own_root(ctx):
    root = tempfile.mkdtemp(prefix="own-", dir=ctx.tmp)
    with open(os.path.join(root, "empty.txt"), "wb"):
        pass
    for ext in SAMPLE + ["nosuchext"]:
        with open(os.path.join(root, "f." + ext), "wb") as f:
            f.write(b"x")
    return root


@test
def range_on_empty_file(ctx):
    root = own_root(ctx)
    srv = start(ctx, ["--root", root])
    try:
        r = get(srv.port, "/empty.txt", "Range: bytes=-5\r\n")
        eq(r.status, 200, "bytes=-5 on an empty file (RFC 9110 14.1.1: not 416)")
        eq(r.h("content-length"), "0", "length")
        eq(get(srv.port, "/empty.txt", "Range: bytes=-0\r\n").status, 416, "bytes=-0")
        eq(get(srv.port, "/empty.txt", "Range: bytes=0-\r\n").status, 416, "bytes=0-")
    finally:
        srv.stop_clean()
        shutil.rmtree(root, ignore_errors=True)


@test
def mime_types_from_debian_list(ctx):
    if not os.path.exists(MIME_FILE):
        ctx.skip("%s is missing (make deps installs media-types)" % MIME_FILE)
    want = debian_types()
    root = own_root(ctx)
    srv = start(ctx, ["--root", root])
    try:
        assert "mime-types=%s:%d" % (MIME_FILE, len(want)) in srv.line, srv.line
        known = [ext for ext in SAMPLE if ext in want]
        assert len(known) >= 20, "only %s of the sample are in %s" % (known, MIME_FILE)
        for ext in known:
            eq(get(srv.port, "/f." + ext).h("content-type"), want[ext], "type of ." + ext)
        eq(get(srv.port, "/f.nosuchext").h("content-type"), "application/octet-stream", "unknown")
        eq(want["swf"], "application/vnd.adobe.flash.movie", "Debian's .swf")
    finally:
        srv.stop_clean()
    own = os.path.join(root, "own.types")
    with open(own, "w") as f:
        f.write("# mine\napplication/x-mine swf\ntext/x-mine md\n")
    srv = start(ctx, ["--root", root, "--mime-types", own])
    try:
        assert "mime-types=%s:2" % own in srv.line, srv.line
        eq(get(srv.port, "/f.swf").h("content-type"), "application/x-mine", "--mime-types .swf")
        eq(get(srv.port, "/f.md").h("content-type"), "text/x-mine; charset=utf-8", "--mime-types")
        eq(get(srv.port, "/f.html").h("content-type"), "application/octet-stream",
           "only the given file")
    finally:
        srv.stop_clean()
        shutil.rmtree(root, ignore_errors=True)


# ---- the access log ------------------------------------------------------------------------------

FIELD = r'"((?:[ !#-\[\]-~]|\\x[0-9A-F]{2})*)"'
COMBINED = re.compile(
    r"^(\S+) - (\S+) \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] " + FIELD +
    r" (\d{3}) (\d+) " + FIELD + " " + FIELD + "$")


def unescape(field):
    return re.sub(rb"\\x([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  field.encode("latin-1"))


# (raw request, request line as logged, Referer, User-Agent, status); None: "-"
LOGGED = [
    (b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nReferer: http://example.com/a?b=c\r\n"
     b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n",
     b"GET /hello.txt HTTP/1.1", b"http://example.com/a?b=c",
     b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", 200),
    (b"HEAD /sub/page.html HTTP/1.0\r\nUser-Agent: curl/8.0\r\n\r\n",
     b"HEAD /sub/page.html HTTP/1.0", None, b"curl/8.0", 200),
    (b'GET /f1"_200_1_"GET_/forged HTTP/1.1\r\nHost: t\r\n\r\n',
     b'GET /f1"_200_1_"GET_/forged HTTP/1.1', None, None, 404),
    (b"GET /f1?a\tb HTTP/1.1\r\nHost: t\r\n\r\n", b"GET /f1?a\tb HTTP/1.1", None, None, 400),
    (b"GET /caf\xc3\xa9\\x HTTP/1.1\r\nHost: t\r\nUser-Agent: a\"b\\c\td\xff\r\n"
     b"Referer: \"x\" 200 1 \"y\r\n\r\n", b"GET /caf\xc3\xa9\\x HTTP/1.1", b'"x" 200 1 "y',
     b'a"b\\c\td\xff', 400),
    (b"GET /sub?a=b HTTP/1.1\r\nHost: t\r\n\r\n", b"GET /sub?a=b HTTP/1.1", None, None, 301),
    (b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
     b"POST /hello.txt HTTP/1.1", None, None, 405),
    (b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99\r\n\r\n",
     b"GET /mid.bin HTTP/1.1", None, None, 206),
]


def log_requests(port):
    """Send every LOGGED request; return the body length each response had."""
    sizes = []
    for raw, _, _, _, status in LOGGED:
        with connect(port) as s:
            s.sendall(raw)
            r = Reader(s).read_response(head_request=raw.startswith(b"HEAD"))
            eq(r.status, status, "status of %r" % raw[:40])
            sizes.append(len(r.body))
    return sizes


def check_line(line, entry, size):
    _, request, referer, agent, status = entry
    m = COMBINED.match(line)
    assert m, "not nginx's combined format: %r" % line
    addr, user, _, req, st, nbytes, ref, ua = m.groups()
    eq(addr, "127.0.0.1", "$remote_addr")
    eq(user, "-", "$remote_user")
    eq(unescape(req), request, "$request")
    eq(int(st), status, "$status")
    eq(int(nbytes), size, "$body_bytes_sent")
    eq(unescape(ref), referer or b"-", "$http_referer")
    eq(unescape(ua), agent or b"-", "$http_user_agent")


def goaccess_report(log, out):
    """goaccess's JSON report of the log, or None without goaccess."""
    if not shutil.which("goaccess"):
        return None
    subprocess.run(["goaccess", log, "--log-format=COMBINED", "--no-global-config", "-o", out],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True)
    with open(out) as f:
        return json.load(f)


def check_goaccess(report, lines):
    g = report["general"]
    eq((g["total_requests"], g["valid_requests"], g["failed_requests"]),
       (len(lines), len(lines), 0), "goaccess: every line parsed")
    urls = set()
    for panel in ("requests", "static_requests", "not_found"):
        urls |= {d["data"] for d in report[panel]["data"]}
    for line in lines:
        target = COMBINED.match(line).group(4).split(" ")[1]
        assert target in urls, "goaccess lost the URL %r: %s" % (target, sorted(urls))
    eq(g["bandwidth"], sum(int(COMBINED.match(l).group(6)) for l in lines), "goaccess bytes")


@test
def access_log_combined(ctx):
    log = os.path.join(ctx.tmp, "combined-%d.log" % os.getpid())
    srv = start(ctx, ["--access-log", log])
    try:
        sizes = log_requests(srv.port)
    finally:
        srv.stop_clean()
    try:
        with open(log, "rb") as f:
            data = f.read()
        lines = data.decode("ascii").split("\n")  # every byte >= 0x80 was escaped: ASCII only
        eq(lines.pop(), "", "the log ends with a newline")
        eq(len(lines), len(LOGGED), "one line per request, no forged line:\n" + "\n".join(lines))
        each(lines, lambda line: check_line(line, *logged_entry(line, sizes)))
        report = goaccess_report(log, log + ".json")
    finally:
        for path in (log, log + ".json"):
            if os.path.exists(path):
                os.unlink(path)
    if report is None:
        ctx.skip("goaccess is not installed (make deps installs it); the regex check passed")
    check_goaccess(report, lines)


def logged_entry(line, sizes):
    """The LOGGED entry a line is for, found by its request line: a worker
    may write its line after another worker has served the next request."""
    m = COMBINED.match(line)
    assert m, "not nginx's combined format: %r" % line
    for entry, size in zip(LOGGED, sizes):
        if unescape(m.group(4)) == entry[1]:
            return entry, size
    raise AssertionError("a line for no request sent: %r" % line)


DIFF_REQUESTS += [raw for _, raw, _ in REQUESTS] + [
    b"GET /sub?a=b&c=%22 HTTP/1.1\r\nHost: t\r\n\r\n",
]
