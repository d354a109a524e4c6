"""cases_filecache - --open-file-cache on every model: files replaced, deleted
or swapped for a symlink to outside the root while the server runs are served
fresh once --open-file-cache-valid has passed, and a response in flight keeps
its file when other connections evict or revalidate its entry.

Each case starts its own server on a root of its own (a few small files made
here, so the fixture root the other cases read is never touched), with the
cache flags added to the variant's. The suite also runs whole variants with
the cache on (see `c10k models --variants`); these cases are about what
changes on disk while it runs.
"""
import os
import shutil
import subprocess
import tempfile
import time

from suite import start, test
from c10ktest import SECRET, Reader, connect, det_bytes, eq, get

VALID = 1.0  # --open-file-cache-valid, seconds
HUGE = 4 << 20  # a response that cannot fit the socket buffers: it stays in flight
CHUNK = 64 * 1024 + 7  # above the handler's content cache: sent from the descriptor


def write(root, name, data):
    """Replace a file as a deploy does: a new file renamed over the old one."""
    path = os.path.join(root, name)
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


def make_root(ctx):
    base = tempfile.mkdtemp(prefix="fcache-", dir=ctx.tmp)
    root = os.path.join(base, "www")
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(base, "outside.txt"), "w") as f:
        f.write(SECRET + "\n")
    write(root, "small.txt", b"small, first\n")
    write(root, "large.bin", det_bytes(CHUNK, "large-1"))
    write(root, "gone.txt", b"about to go\n")
    write(root, "inside.txt", b"inside the root\n")
    write(root, "sub/index.html", b"<p>index, first</p>\n")
    os.symlink("inside.txt", os.path.join(root, "link.txt"))
    return base, root


def cache_on(srv):
    """Whether this model keeps a cache (threaded without --pool does not)."""
    assert "open-file-cache=" in srv.line, srv.line
    return "open-file-cache off" not in srv.line


def swap_link_outside(root):
    link = os.path.join(root, "link.txt")
    os.symlink("../outside.txt", link + ".new")
    os.rename(link + ".new", link)


def expect(r, path, status, body, what):
    eq(r.status, status, "%s: status of %s" % (what, path))
    if body is not None:
        assert r.body == body, "%s: body of %s: %r..." % (what, path, r.body[:40])


def check(port, path, status, body, what):
    """GET on a new connection (every read is checked never to contain SECRET)."""
    expect(get(port, path), path, status, body, what)


def check_all(sock, files, what):
    """GET every file on one keep-alive connection, so on one worker: the
    caches are per worker, and only the one that read a file holds it."""
    r = Reader(sock)
    for path, body in files.items():
        sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        expect(r.read_response(), path, 200, body, what)


@test
def changed_files_are_fresh_after_the_interval(ctx):
    base, root = make_root(ctx)
    srv = start(ctx, ["--root", root, "--open-file-cache", "8",
                      "--open-file-cache-valid", str(VALID)])
    try:
        cached = cache_on(srv)
        first = {"/small.txt": b"small, first\n", "/large.bin": det_bytes(CHUNK, "large-1"),
                 "/gone.txt": b"about to go\n", "/link.txt": b"inside the root\n",
                 "/sub/": b"<p>index, first</p>\n"}
        with connect(srv.port) as s:
            check_all(s, first, "first read")
            write(root, "small.txt", b"small, second!\n")
            write(root, "large.bin", det_bytes(CHUNK, "large-2"))
            write(root, "sub/index.html", b"<p>index, second</p>\n")
            os.unlink(os.path.join(root, "gone.txt"))
            swap_link_outside(root)
            if cached:  # within the interval this worker's cache answers, as it was
                check_all(s, first, "within the interval")
        time.sleep(VALID + 0.2)
        check(srv.port, "/small.txt", 200, b"small, second!\n", "replaced")
        check(srv.port, "/large.bin", 200, det_bytes(CHUNK, "large-2"), "replaced (large)")
        check(srv.port, "/sub/", 200, b"<p>index, second</p>\n", "replaced index")
        check(srv.port, "/gone.txt", 404, None, "deleted")
        check(srv.port, "/link.txt", 404, None, "symlink swapped to outside the root")
        write(root, "gone.txt", b"back again\n")
        check(srv.port, "/gone.txt", 200, b"back again\n", "created again (a miss)")
    finally:
        srv.stop_clean()
        shutil.rmtree(base, ignore_errors=True)


def per_connection(ctx):
    out = subprocess.run([ctx.bin, "models", "--per-connection"], capture_output=True, text=True,
                         check=True)
    return ctx.variant.split()[0] in out.stdout.split()


def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "closed before the head"
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), head[:40]
    return rest


def read_body(sock, have, n):
    chunks, got = [have], len(have)
    while got < n:
        data = sock.recv(1 << 20)
        assert data, "closed after %d of %d body bytes" % (got, n)
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def first_difference(a, b):
    return next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))


@test
def response_in_flight_keeps_its_file(ctx):
    if per_connection(ctx):
        ctx.skip("a thread or process per connection: no other connection shares its "
                 "cache, so none can evict the entry a response sends from")
    base, root = make_root(ctx)
    old = det_bytes(HUGE, "huge-1")
    write(root, "huge.bin", old)
    # One loop and one entry: every other request evicts the one in flight.
    srv = start(ctx, ["--root", root, "--workers", "1", "--open-file-cache", "1",
                      "--open-file-cache-valid", str(VALID)])
    try:
        assert cache_on(srv), srv.line
        with connect(srv.port, timeout=10) as evicted, connect(srv.port, timeout=10) as stale:
            evicted.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            rest1 = read_head(evicted)
            check(srv.port, "/large.bin", 200, det_bytes(CHUNK, "large-1"), "evicting")
            stale.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            rest2 = read_head(stale)
            write(root, "huge.bin", det_bytes(HUGE, "huge-2"))
            time.sleep(VALID + 0.2)
            # The entry the second response sends from is revalidated away.
            check(srv.port, "/huge.bin", 200, det_bytes(HUGE, "huge-2"), "revalidated")
            os.unlink(os.path.join(root, "huge.bin"))
            for sock, rest, what in ((evicted, rest1, "evicted"), (stale, rest2, "replaced")):
                body = read_body(sock, rest, HUGE)
                assert body == old, "%s while in flight: the response changed at byte %d" % (
                    what, first_difference(body, old))
    finally:
        srv.stop_clean()
        shutil.rmtree(base, ignore_errors=True)
