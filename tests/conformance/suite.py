"""suite - what every conformance case module shares: the registry, the fixture.

A case module (cases_*.py in this directory) defines functions decorated with
@test; each takes a ctx with .bin, .variant, .port (a server already running
with the variant's flags), .root, .files and .tmp, and raises to fail or calls
ctx.skip(why). run.py imports every cases_*.py, so a new module joins by being
there, and a new model joins by being listed in `c10k models --variants`.
Cases that need their own server start one with start(ctx, extra_flags).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from c10ktest import SECRET, Reader, Server, connect, det_bytes, eq, serve_argv  # noqa: E402

BIG = 16 * 1024 * 1024
TESTS = []
DIFF_REQUESTS = []  # raw requests every variant must answer byte-identically (but Date)


def test(fn):
    TESTS.append(fn)
    return fn


def start(ctx, extra=(), variant=None):
    """A server of ctx's variant with extra flags (the caller stops it)."""
    return Server(serve_argv(ctx.bin, variant or ctx.variant, ctx.root, extra))


def each(cases, check):
    """Run check on every case and report all that fail, not just the first."""
    bad = []
    for case in cases:
        try:
            check(case)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            bad.append("%r: %s: %s" % (case[1] if isinstance(case, tuple) else case,
                                      type(e).__name__, e))
    assert not bad, "%d of %d cases:\n    %s" % (len(bad), len(cases), "\n    ".join(bad))


# The statuses after which the server closes the connection; after any other
# it reads the next request. A 405 closes when a body was announced (decided
# before the body, which is left unread), and keeps a bodiless request's.
CLOSES = (400, 413, 501, 505)


def closes(raw, status):
    lower = raw.lower()
    return status in CLOSES or (status == 405 and (b"\ncontent-length:" in lower or
                                                   b"\ntransfer-encoding:" in lower))


def status_case(port, case):
    """Sends case's raw request and checks the answer: case's status, a body
    of its Content-Length, Allow on a 405, and the connection closed (with
    Connection: close) where closes() says so, else kept for a GET."""
    name, raw, status = case
    with connect(port) as s:
        s.sendall(raw)
        rd = Reader(s)
        r = rd.read_response()
        eq(r.status, status, name)
        eq(len(r.body), int(r.h("content-length")), name + ": body length")
        if status == 405:
            eq(r.h("allow"), "GET, HEAD", name + ": Allow")
        if closes(raw, status):
            eq(r.h("connection"), "close", name + ": Connection")
            assert rd.closed(), name + ": server did not close"
        else:
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            eq(rd.read_response().status, 200, name + ": connection kept")


def make_fixture(base):
    root = os.path.join(base, "www")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(root, "empty"))
    os.makedirs(os.path.join(root, ".git"))
    os.makedirs(os.path.join(root, "sp ace"))
    files = {
        "index.html": b"<h1>root index</h1>\n",
        "hello.txt": b"hello, world\n",
        "sub/index.html": b"<h1>sub index</h1>\n",
        "sub/page.html": b"<p>page</p>\n",
        "sp ace/file.txt": b"spaced\n",
        ".env": b"SECRET=1\n",
        ".git/config": ("[core] %s\n" % SECRET).encode(),
        "big.bin": det_bytes(BIG, "big"),
        "mid.bin": det_bytes(1 << 20, "mid"),
        "noext": b"no extension\n",
        # The small file of the deep-pipelining cases: `GET /f1 HTTP/1.1` with
        # `Host: x` is 29 bytes, so 2,300 of them pass 64 KiB (issue 12).
        "f1": b"f1: a small file\n",
    }
    for ext in ["html", "css", "js", "json", "txt", "png", "jpg", "gif", "svg", "ico",
                "wasm", "pdf", "woff2", "mp4", "xyz"]:
        files["m/file." + ext] = ("content of %s\n" % ext).encode()
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    with open(os.path.join(base, "secret.txt"), "w") as f:
        f.write(SECRET + "\n")
    os.symlink("../secret.txt", os.path.join(root, "escape.txt"))
    os.symlink("/etc", os.path.join(root, "etc-link"))
    os.symlink("hello.txt", os.path.join(root, "inside-link.txt"))
    os.chmod(os.path.join(root, "hello.txt"), 0o644)
    locked = os.path.join(root, "locked.txt")
    with open(locked, "w") as f:
        f.write("locked\n")
    os.chmod(locked, 0)
    os.utime(os.path.join(root, "hello.txt"), (1600000000, 1600000000))
    return root, files

