"""The document root every server serves, and the check of its answers."""

import hashlib
import http.client
import os

from .plan import size_label
from .util import KiB, MiB, UsageError

BLOCK = 64 * KiB


def file_name(size):
    return "f-%s.bin" % size_label(size)


def _block():
    """A 64 KiB pattern from a SHA-256 chain."""
    block = bytearray()
    h = hashlib.sha256(b"c10k bench document root v1").digest()
    while len(block) < BLOCK:
        h = hashlib.sha256(h).digest()
        block += h
    return bytes(block)


def file_chunks(size):
    """Deterministic content of the file of `size` bytes, in chunks: the
    pattern tiled, with the size written at the start so files of different
    sizes differ. Streamed, so a 2 GiB file never sits in memory."""
    head = ("c10k test file, %d bytes\n" % size).encode()
    left = size
    yield head[:left]
    left -= min(left, len(head))
    pattern = _block() * 16  # 1 MiB writes
    while left > 0:
        chunk = pattern[:left]
        yield chunk
        left -= len(chunk)


def check_space(path, sizes):
    need = sum(sizes) + MiB
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise UsageError("the document root needs %d MiB but %s has %d MiB free; choose "
                         "smaller --sizes or another --out" % (need // MiB, path, free // MiB))


def make_docroot(path, sizes):
    """Write one file per size; returns {size: sha256 hex}."""
    os.makedirs(path, exist_ok=True)
    check_space(path, sizes)
    digests = {}
    for size in sizes:
        h = hashlib.sha256()
        with open(os.path.join(path, file_name(size)), "wb") as f:
            for chunk in file_chunks(size):
                h.update(chunk)
                f.write(chunk)
        digests[size] = h.hexdigest()
    with open(os.path.join(path, "index.html"), "w") as f:
        f.write("<!doctype html><title>c10k bench</title>\n")
    return digests


def _get(port, path, timeout, host="127.0.0.1"):
    """(status, Content-Length header, body length, sha256 hex) of one GET."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        h, n = hashlib.sha256(), 0
        while True:
            chunk = r.read(MiB)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return r.status, r.getheader("Content-Length"), n, h.hexdigest()
    finally:
        c.close()


def verify(port, sizes, digests, host="127.0.0.1", extra=(), timeout=10.0):
    """One GET per file size, and per (path, size, sha256) of extra: status
    200, Content-Length, the exact bytes. Returns None or what was wrong."""
    checks = [("/" + file_name(size), size, digests[size]) for size in sizes] + list(extra)
    for path, size, want in checks:
        try:
            status, cl, n, digest = _get(port, path, timeout, host)
        except (OSError, http.client.HTTPException) as e:
            return "GET %s: %s" % (path, e)
        if status != 200:
            return "GET %s: status %d, want 200" % (path, status)
        if cl != str(size):
            return "GET %s: Content-Length %s, want %d" % (path, cl, size)
        if n != size:
            return "GET %s: %d body bytes, want %d" % (path, n, size)
        if digest != want:
            return "GET %s: content differs from the file" % path
    return None
