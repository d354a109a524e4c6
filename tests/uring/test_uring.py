#!/usr/bin/python3
"""Black-box tests of the io_uring model (servers/uring/uring.c).

Each test starts `c10k serve uring` as a child process on a free port, talks
to it over real sockets and stops it with SIGTERM. They target what is
particular to this model: heads that span several provided buffers,
pipelining held in received buffers, response slots running out (--entries
16), the receive-buffer ring running dry under a pipelining flood, chunked
large bodies, SEND_ZC, SQPOLL, ordinary descriptors with --access-log, the
timeouts, the stop with a response in flight, and the refusal to start
(exit 2) when io_uring is blocked, made real with a seccomp filter.

When io_uring is unavailable here, every server test is skipped with the
reason `c10k serve uring` printed.

    /usr/bin/python3 tests/uring/test_uring.py --bin build/c10k
"""
import argparse
import asyncio
import ctypes
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import c10ktest  # noqa: E402

SERVER_START_S = 5
IO_TIMEOUT_S = 10


class Skip(Exception):
    pass


class Server:
    """One `c10k serve uring` child (tests/lib's helper, which always drains
    its output); the port comes from its start line."""

    def __init__(self, bin_path, root, args=()):
        argv = [bin_path, "serve", "uring", "--port", "0", "--root", root, *args]
        try:
            self.srv = c10ktest.Server(argv, timeout=SERVER_START_S)
        except c10ktest.Unsupported as e:
            raise Skip(str(e).strip().splitlines()[-1])
        self.proc = self.srv.proc
        self.port = self.srv.port

    def connect(self, rcvbuf=None):
        s = socket.socket()
        s.settimeout(IO_TIMEOUT_S)
        if rcvbuf:  # before connect, so the window is sized for it from the start
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self, timeout=15):
        """SIGTERM; the server must exit 0 with no sanitizer report."""
        status = self.srv.stop(timeout)
        err = self.srv.stderr()
        self.srv.kill()
        if status != 0 or "Sanitizer" in err or "runtime error" in err:
            raise AssertionError(f"server exit status {status}: {err[-2000:]}")
        return err

    def finish(self, timeout=15):
        status = self.srv.stop(timeout)
        if status is None:
            raise AssertionError("server did not exit after SIGTERM")
        return self.srv.stderr()


def io_uring_unavailable(bin_path, root):
    """The reason `c10k serve uring` gives for refusing to run, or None.
    main() prints the start line before the model runs, so wait for the exit."""
    p = subprocess.Popen([bin_path, "serve", "uring", "--port", "0", "--root", root],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=15)
        return None
    err = err.decode(errors="replace").strip()
    if p.returncode == 2 and ("unavailable" in err or "lacks" in err):
        return err.splitlines()[-1]
    raise AssertionError(f"c10k serve uring exited {p.returncode}: {err}")


class Reader:
    """Reads HTTP/1.1 responses from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, n=262144):
        data = self.sock.recv(n)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = 0 if head_only else int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def at_eof(self, timeout=IO_TIMEOUT_S):
        """True if the peer closes (EOF or reset) with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except ConnectionResetError:
            return True
        return data == b"" and self.buf == b""


def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


# --- fixtures ------------------------------------------------------------------

def make_root(d):
    files = {
        "index.html": b"<h1>uring</h1>\n",
        "1k.html": bytes((i * 7) % 251 for i in range(1024)),
        "mid.bin": os.urandom(200 * 1024),
        "big.bin": os.urandom(6 * 1024 * 1024 + 17),  # more than tcp_wmem max: in flight at a stop
        "1m.bin": os.urandom(1024 * 1024),
    }
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return files


# --- tests ---------------------------------------------------------------------

def t_small_and_big(ctx, args=()):
    srv = Server(ctx.bin, ctx.root, args)
    try:
        s = srv.connect()
        r = Reader(s)
        for name in ("1k.html", "big.bin", "index.html", "mid.bin"):
            s.sendall(get("/" + name))
            st, _, body = r.response()
            assert st == 200, (name, st)
            assert body == ctx.files[name], f"{name}: body differs ({len(body)} bytes)"
        s.sendall(get("/missing"))
        st, _, _ = r.response()
        assert st == 404, st
        s.close()
    finally:
        srv.stop()


def t_keepalive_many(ctx):
    srv = Server(ctx.bin, ctx.root)
    try:
        s = srv.connect()
        r = Reader(s)
        for _ in range(500):
            s.sendall(get("/1k.html"))
            st, _, body = r.response()
            assert st == 200 and body == ctx.files["1k.html"]
    finally:
        srv.stop()


def t_pipelined(ctx, args=()):
    srv = Server(ctx.bin, ctx.root, args)
    try:
        s = srv.connect()
        names = ["1k.html", "index.html", "mid.bin"] * 10
        s.sendall(b"".join(get("/" + n) for n in names))
        r = Reader(s)
        for n in names:
            st, _, body = r.response()
            assert st == 200 and body == ctx.files[n], n
    finally:
        srv.stop()


def t_half_close_and_close_header(ctx):
    """A request then our FIN: the response still comes, then the server's
    FIN. And pipelined requests whose last says Connection: close."""
    srv = Server(ctx.bin, ctx.root)
    try:
        s = srv.connect()
        s.sendall(get("/1k.html"))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        st, _, body = r.response()
        assert st == 200 and body == ctx.files["1k.html"]
        assert r.at_eof()
        s = srv.connect()
        s.sendall(get("/index.html") * 3 + get("/1k.html", "Connection: close\r\n"))
        r = Reader(s)
        for _ in range(3):
            assert r.response()[0] == 200
        st, hdrs, body = r.response()
        assert st == 200 and body == ctx.files["1k.html"]
        assert r.at_eof(), "open after Connection: close"
    finally:
        srv.stop()


def t_max_requests(ctx):
    srv = Server(ctx.bin, ctx.root, ["--max-requests", "3"])
    try:
        s = srv.connect()
        r = Reader(s)
        for _ in range(3):
            s.sendall(get("/index.html"))
            assert r.response()[0] == 200
        assert r.at_eof(), "open after --max-requests responses"
    finally:
        srv.stop()


def t_head_byte_by_byte(ctx):
    srv = Server(ctx.bin, ctx.root)
    try:
        s = srv.connect()
        for b in get("/index.html"):
            s.send(bytes([b]))
            time.sleep(0.002)
        st, _, body = Reader(s).response()
        assert st == 200 and body == ctx.files["index.html"]
    finally:
        srv.stop()


def t_head_spans_buffers(ctx):
    """A 12 KiB head covers three 4 KiB provided buffers: assembled in rbuf."""
    srv = Server(ctx.bin, ctx.root)
    try:
        s = srv.connect()
        pad = "".join(f"X-Pad-{i}: {'a' * 1200}\r\n" for i in range(10))
        req = get("/1k.html", pad)
        r = Reader(s)
        for _ in range(3):
            s.sendall(req[:5000])
            time.sleep(0.05)
            s.sendall(req[5000:])
            st, _, body = r.response()
            assert st == 200 and body == ctx.files["1k.html"], st
        # and twice back to back, so the second head starts mid-buffer
        s.sendall(req + req)
        for _ in range(2):
            st, _, body = r.response()
            assert st == 200 and body == ctx.files["1k.html"], st
    finally:
        srv.stop()


def t_bad_request_closes(ctx):
    srv = Server(ctx.bin, ctx.root)
    try:
        s = srv.connect()
        s.sendall(b"GARBAGE / NONSENSE\r\n\r\nmore bytes the server will not read")
        r = Reader(s)
        st, hdrs, _ = r.response()
        assert 400 <= st < 500, st
        assert r.at_eof(), "connection stays open after a 4xx that closes"
        s.close()  # else the server lingers (reading what we send) until --lingering-timeout
        # the server is still fine
        s2 = srv.connect()
        s2.sendall(get("/index.html"))
        assert Reader(s2).response()[0] == 200
    finally:
        srv.stop()


def t_closing_then_reuse(ctx):
    """Short connections whose responses close them, one after another, so a
    closed connection's table slot is handed straight to the next one. The
    shutdown sent after a closing response runs later, in an io-wq thread:
    it must not land on the next connection in the same slot (a bare EOF)."""
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    try:
        reqs = [b"GARBAGE\r\n\r\n", get("/index.html", "Connection: close\r\n"),
                get("/missing", "Connection: close\r\n")]
        for i in range(2000):
            s = srv.connect()
            s.sendall(reqs[i % len(reqs)])
            try:
                st, _, _ = Reader(s).response()
            except EOFError:
                raise AssertionError(f"connection {i}: closed without a response")
            s.close()
    finally:
        srv.stop()


def t_header_timeout(ctx):
    srv = Server(ctx.bin, ctx.root, ["--header-timeout", "0.5"])
    try:
        s = srv.connect()
        t0 = time.monotonic()
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n")
        r = Reader(s)
        st, _, _ = r.response()
        dt = time.monotonic() - t0
        assert st == 408, st
        assert 0.4 <= dt < 3, f"408 after {dt:.2f}s"
        assert r.at_eof()
        s.close()  # the server lingers until our FIN
        # silent from accept: closed without a response
        s = srv.connect()
        t0 = time.monotonic()
        assert Reader(s).at_eof(), "idle connection got bytes"
        assert 0.4 <= time.monotonic() - t0 < 3
    finally:
        srv.stop()


def t_keepalive_timeout(ctx):
    srv = Server(ctx.bin, ctx.root, ["--keepalive-timeout", "0.6"])
    try:
        s = srv.connect()
        r = Reader(s)
        s.sendall(get("/index.html"))
        assert r.response()[0] == 200
        t0 = time.monotonic()
        assert r.at_eof()
        dt = time.monotonic() - t0
        assert 0.5 <= dt < 3, f"closed after {dt:.2f}s"
    finally:
        srv.stop()


async def _client(port, reqs, expect):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in reqs:
            writer.write(get(path))
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"content-length:\s*(\d+)", head, re.I)
            body = await reader.readexactly(int(m.group(1)))
            if not head.startswith(b"HTTP/1.1 200") or body != expect[path]:
                return False
        return True
    finally:
        writer.close()


def _run_clients(port, n, reqs, expect):
    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(_client(port, reqs, expect) for _ in range(n))), 60)
    return asyncio.run(main())


def t_concurrent(ctx):
    srv = Server(ctx.bin, ctx.root, ["--workers", "2"])
    try:
        expect = {"/1k.html": ctx.files["1k.html"], "/index.html": ctx.files["index.html"]}
        res = _run_clients(srv.port, 1000, ["/1k.html", "/index.html", "/1k.html"], expect)
        assert all(res), f"{res.count(False)} of 1000 clients failed"
    finally:
        srv.stop()


def _count_calls(pid, calls, work):
    """How many of the system calls `calls` (a list of names) process pid
    and its threads make while work() runs, by strace; work's result too."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace")
        tracer = subprocess.Popen(["strace", "-f", "-e", "trace=" + ",".join(calls), "-o", out,
                                   "-p", str(pid)], stderr=subprocess.PIPE, text=True)
        try:
            line = tracer.stderr.readline()  # "strace: Process PID attached"
            if "attached" not in line:
                raise Skip("strace cannot attach: " + line.strip())
            got = work()
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        with open(out) as f:
            text = f.read()
    return {c: len(re.findall(r"\b%s\(" % c, text)) for c in calls}, got


def t_no_mapping_per_request(ctx):
    """300 clients with a request in flight at once, far more than the 16
    requests a ring with --entries 16 is sized for: request buffers and
    fallback chunks come from the heap (conn.h's pool, as in every model),
    so no memory is mapped and unmapped per request. It was, beyond the
    buffers kept: an mmap, its page faults and a munmap per request, and
    uring served 13,103 req/s at 1,000 connections against epoll's 51,154."""
    if not shutil.which("strace"):
        raise Skip("no strace (make deps installs it)")
    srv = Server(ctx.bin, ctx.root, ["--workers", "1", "--entries", "16"])
    try:
        expect = {"/1k.html": ctx.files["1k.html"]}
        n, reqs = 300, 4
        calls, res = _count_calls(srv.proc.pid, ["mmap", "munmap"],
                                  lambda: _run_clients(srv.port, n, ["/1k.html"] * reqs, expect))
        assert all(res), f"{res.count(False)} of {n} clients failed"
        assert calls["munmap"] < n * reqs // 10, f"{calls} for {n * reqs} requests"
    finally:
        srv.stop()


def t_slots_run_out(ctx):
    """--entries 16: 16 response slots for 100 concurrent 200 KiB downloads."""
    srv = Server(ctx.bin, ctx.root, ["--workers", "1", "--entries", "16"])
    try:
        expect = {"/mid.bin": ctx.files["mid.bin"]}
        res = _run_clients(srv.port, 100, ["/mid.bin"] * 3, expect)
        assert all(res), f"{res.count(False)} of 100 clients failed"
    finally:
        srv.stop()


def t_buffer_ring_runs_dry(ctx):
    """More connections receive in one batch than the ring has buffers
    (1024): while the server is stopped (SIGSTOP), 1,500 clients connect and
    send a request, so on SIGCONT one batch accepts them all and their
    RECVs, issued together, find the bytes already there; the last 476 find
    no buffer (-ENOBUFS, checked with a debug print once). They must be
    re-armed as buffers come back, and every client served."""
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    clients = []
    try:
        srv.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(1500):
                clients.append(srv.connect())
                clients[-1].sendall(get("/1k.html"))
        finally:
            srv.proc.send_signal(signal.SIGCONT)
        for i, s in enumerate(clients):
            st, _, body = Reader(s).response()
            assert st == 200 and body == ctx.files["1k.html"], f"client {i}: {st}"
    finally:
        for s in clients:
            s.close()
        srv.stop()


def t_reset_mid_body(ctx):
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    try:
        for _ in range(20):
            s = srv.connect()
            s.sendall(get("/big.bin"))
            s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        s = srv.connect()
        s.sendall(get("/big.bin"))
        st, _, body = Reader(s).response()
        assert st == 200 and body == ctx.files["big.bin"]
    finally:
        srv.stop()


def t_stop_finishes_inflight_body(ctx):
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    try:
        s = srv.connect(rcvbuf=8192)
        s.sendall(get("/big.bin"))
        first = s.recv(100)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        r = Reader(s)
        r.buf = first
        st, _, body = r.response()
        assert st == 200 and body == ctx.files["big.bin"], "in-flight body cut short by the stop"
        assert r.at_eof(5)
        srv.finish(15)
        assert srv.proc.returncode == 0
    finally:
        srv.stop()


def t_access_log(ctx):
    """--access-log: connections on ordinary descriptors (getpeername)."""
    log = os.path.join(ctx.tmp, "access.log")
    srv = Server(ctx.bin, ctx.root, ["--access-log", log])
    try:
        s = srv.connect()
        r = Reader(s)
        for name in ("1k.html", "big.bin"):
            s.sendall(get("/" + name))
            st, _, body = r.response()
            assert st == 200 and body == ctx.files[name]
        expect = {"/1k.html": ctx.files["1k.html"]}
        assert all(_run_clients(srv.port, 200, ["/1k.html"] * 2, expect))
    finally:
        srv.stop()
    with open(log) as f:
        lines = f.read().splitlines()
    assert len(lines) == 402, len(lines)
    assert "127.0.0.1" in lines[0] and "/1k.html" in lines[0], lines[0]


def t_sqpoll(ctx):
    t_small_and_big(ctx, ["--sqpoll"])
    t_pipelined(ctx, ["--sqpoll"])
    # A small SQ that the kernel thread drains on its own schedule: a linked
    # read + send must never be split across two submissions (stale bodies).
    srv = Server(ctx.bin, ctx.root, ["--sqpoll", "--entries", "16", "--workers", "1"])
    try:
        expect = {"/" + n: ctx.files[n] for n in ("1k.html", "index.html", "mid.bin")}
        res = _run_clients(srv.port, 300, list(expect) * 2, expect)
        assert all(res), f"{res.count(False)} of 300 clients failed"
    finally:
        srv.stop()


def t_zc(ctx):
    t_small_and_big(ctx, ["--zc"])
    t_pipelined(ctx, ["--zc", "--entries", "16"])


def t_bad_flags(ctx):
    for args in (["--entries", "0"], ["--entries", "x"], ["--entries", "999999"]):
        p = subprocess.run([ctx.bin, "serve", "uring", "--port", "0", "--root", ctx.root, *args],
                           capture_output=True, timeout=10)
        assert p.returncode == 2, (args, p.returncode)


# --- issue 12: backpressure, never a dropped request; slow readers hold only their own --------

def variants_12(ctx):
    """Every variant the issue names."""
    return [[], ["--sqpoll"], ["--entries", "16", "--zc"], ["--workers", "1"],
            ["--access-log", os.path.join(ctx.tmp, "access12.log")]]


def for_each_variant(ctx, fn):
    """Run fn(args) on every variant; report every variant that fails."""
    failed = []
    for args in variants_12(ctx):
        try:
            fn(args)
        except AssertionError as e:
            failed.append(f"[{' '.join(args) or 'default'}] {e}")
    assert not failed, "; ".join(failed)


def _send_in_thread(sock, chunks, pause=0.0):
    """Write chunks from a thread (the server's answers must be read meanwhile)."""
    def run():
        try:
            for c in chunks:
                sock.sendall(c)
                if pause:
                    time.sleep(pause)
        except OSError:
            pass  # the reader reports what went wrong
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _expect_responses(r, n, body, what):
    for i in range(n):
        try:
            st, _, got = r.response()
        except (EOFError, OSError) as e:
            raise AssertionError(f"{what}: {i} of {n} responses, then {type(e).__name__}: {e}")
        assert st == 200 and got == body, f"{what}: response {i}: status {st}, {len(got)} bytes"


def t_pipeline_flood_one_write(ctx):
    """3,000 pipelined GETs (114 KB) in one write: every one answered."""
    req = get("/index.html")

    def one(args):
        srv = Server(ctx.bin, ctx.root, args)
        try:
            s = srv.connect()
            t = _send_in_thread(s, [req * 3000])
            _expect_responses(Reader(s), 3000, ctx.files["index.html"], "flood")
            t.join(IO_TIMEOUT_S)
        finally:
            srv.stop()

    for_each_variant(ctx, one)


def t_pipeline_behind_slow_body(ctx):
    """A 6 MiB response read slowly while 3,000 small GETs arrive in 100
    writes: the small ones wait in the kernel, none is dropped."""
    def one(args):
        srv = Server(ctx.bin, ctx.root, args)
        try:
            s = srv.connect(rcvbuf=65536)
            s.sendall(get("/big.bin"))
            t = _send_in_thread(s, [get("/1k.html") * 30] * 100, pause=0.002)
            r = Reader(s)
            while len(r.buf) < 3 * 1024 * 1024:  # slowly, for the first half
                r._fill(32768)
                time.sleep(0.001)
            st, _, body = r.response()
            assert st == 200 and body == ctx.files["big.bin"], "the large body"
            _expect_responses(r, 3000, ctx.files["1k.html"], "pipelined")
            t.join(IO_TIMEOUT_S)
        finally:
            srv.stop()

    for_each_variant(ctx, one)


def t_pipeline_half_close(ctx):
    """300 pipelined requests of 239 bytes, then the client's FIN: all 300
    answered byte for byte, then the server's FIN."""
    req = get("/1k.html")
    req = get("/1k.html", "X-Pad: " + "p" * (239 - len(req) - 9) + "\r\n")
    assert len(req) == 239, len(req)

    def one(args):
        srv = Server(ctx.bin, ctx.root, args)
        try:
            s = srv.connect()
            s.sendall(req * 300)
            s.shutdown(socket.SHUT_WR)
            r = Reader(s)
            _expect_responses(r, 300, ctx.files["1k.html"], "pipelined")
            assert r.at_eof(), "open after the last response to a half-closed client"
        finally:
            srv.stop()

    for_each_variant(ctx, one)


def t_refused_body_lingers(ctx):
    """A GET, then a POST whose 2 MB body the client keeps sending while it
    reads: the server refuses it and lingers (reads the body away) instead of
    closing under it, so both responses arrive intact (20 connections)."""
    srv = Server(ctx.bin, ctx.root)
    try:
        for i in range(20):
            s = srv.connect()
            body = b"x" * (2 * 1024 * 1024)
            head = b"POST /1k.html HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
            t = _send_in_thread(s, [get("/1k.html") + head] + [body[j:j + 65536] for j in range(0, len(body), 65536)])
            r = Reader(s)
            try:
                st, _, got = r.response()
                assert st == 200 and got == ctx.files["1k.html"], f"connection {i}: first response {st}"
                st, _, _ = r.response()
            except (EOFError, OSError) as e:
                raise AssertionError(f"connection {i}: {type(e).__name__}: {e}")
            assert st >= 400, f"connection {i}: the POST got {st}"
            t.join(IO_TIMEOUT_S)
            s.close()
    finally:
        srv.stop()


def t_large_ranges_read_slowly(ctx):
    """Spliced bodies from unaligned file offsets (Range), read slowly
    through a small window, so the pipe is topped up from mid-page offsets
    round after round: every byte must arrive, in order."""
    big = ctx.files["big.bin"]
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    try:
        for first, last in ((1000, 1_500_016), (4095, 4096 + 300_000), (len(big) - 700_001, len(big) - 1)):
            s = srv.connect(rcvbuf=16384)
            s.sendall(get("/big.bin", f"Range: bytes={first}-{last}\r\n"))
            r = Reader(s)
            while len(r.buf) < 200_000:  # slowly at first: partial splices
                r._fill(8192)
                time.sleep(0.0005)
            st, _, body = r.response()
            assert st == 206, st
            assert body == big[first:last + 1], f"bytes {first}-{last}: body differs"
            s.close()
    finally:
        srv.stop()


def _hold_slow_readers(srv, n, path):
    """n clients with a 4 KiB receive buffer that ask for path and never read."""
    held = []
    try:
        for _ in range(n):
            s = srv.connect(rcvbuf=4096)
            s.sendall(get(path))
            held.append(s)
    except OSError:
        for s in held:
            s.close()
        raise
    return held


def _served_within(srv, limit):
    s = srv.connect()
    t0 = time.monotonic()
    try:
        s.settimeout(limit + 1)
        s.sendall(get("/index.html"))
        st, _, body = Reader(s).response()
    except (EOFError, OSError) as e:
        raise AssertionError(f"new client not served: {type(e).__name__}: {e}")
    finally:
        s.close()
    dt = time.monotonic() - t0
    assert st == 200 and body == b"<h1>uring</h1>\n", st
    assert dt < limit, f"new client served after {dt:.2f}s"


def t_slow_readers_hold_only_their_own(ctx):
    """Clients that request 1 MiB and never read must not lock out a new
    client: served in under 1 s (issue 12: 260 of them on one ring, 1,000
    on the default two, 100 with only 16 slots)."""
    failed = []
    for args, n in ((["--workers", "1"], 260), ([], 1000), (["--entries", "16", "--zc"], 100)):
        srv = Server(ctx.bin, ctx.root, args)
        held = []
        try:
            held = _hold_slow_readers(srv, n, "/1m.bin")
            time.sleep(1.0)  # every response under way, every socket full
            for _ in range(3):
                _served_within(srv, 1.0)
            # A splice to a full socket must not park an io-wq thread.
            threads = len(os.listdir(f"/proc/{srv.proc.pid}/task"))
            assert threads <= 32, f"{threads} threads for {n} slow readers"
        except AssertionError as e:
            failed.append(f"[{' '.join(args) or 'default'}, {n} slow readers] {e}")
        finally:
            for s in held:
                s.close()
            srv.stop()
    assert not failed, "; ".join(failed)

# --- io_uring blocked: a seccomp filter makes io_uring_setup fail ------------------

def _seccomp_block_io_uring():
    """preexec_fn: io_uring_setup(2) fails with EPERM, as under Docker's profile."""
    NR_IO_URING_SETUP = 425
    AUDIT_ARCH_X86_64 = 0xC000003E
    BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
    SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
    prog = [
        (BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | 1),  # EPERM
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        os._exit(97)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0) != 0:
        os._exit(97)


def t_unavailable_exits_2(ctx):
    if os.uname().machine != "x86_64":
        raise Skip("the seccomp filter here is written for x86_64")
    p = subprocess.Popen([ctx.bin, "serve", "uring", "--port", "0", "--root", ctx.root],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_seccomp_block_io_uring)
    out, err = p.communicate(timeout=10)
    if p.returncode == 97:
        raise Skip("cannot install a seccomp filter here")
    err = err.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert "io_uring is unavailable" in err and "Operation not permitted" in err, err


# --- runner --------------------------------------------------------------------------

# --- bodies larger than a slot: sendfile from the ring's thread when cached -----------------

def _io_wq_threads(pid):
    """io_uring's worker threads (iou-wrk-*) the server has now."""
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return [n for n in names if n.startswith("iou-wrk")]


def t_cached_large_bodies_stay_in_the_ring_thread(ctx):
    """Cached bodies larger than a slot (200 KiB, 1 MiB, 6 MiB, a range of
    it) go by sendfile(2) from the ring's thread: every byte arrives and no
    io-wq thread is ever started (a splice always runs in one: the code
    before this had one or more after the first large body). Default
    (a descriptor installed for the direct one) and --access-log (ordinary
    descriptors). A kernel without IORING_OP_FIXED_FD_INSTALL (Linux 6.8)
    splices, which the start line says (large=splice)."""
    names = ["mid.bin", "1m.bin", "big.bin", "1m.bin", "mid.bin"] * 3
    for name in set(names):  # cached: read once
        with open(os.path.join(ctx.root, name), "rb") as f:
            f.read()
    for args in ([], ["--access-log", os.path.join(ctx.tmp, "access-sf.log")]):
        srv = Server(ctx.bin, ctx.root, args)
        try:
            if "large=splice" in srv.srv.line:
                raise Skip(f"no sendfile here: {srv.srv.line.strip()}")
            s = srv.connect()
            r = Reader(s)
            for name in names:
                s.sendall(get("/" + name))
                st, _, body = r.response()
                assert st == 200 and body == ctx.files[name], (args, name, st, len(body))
            s.sendall(get("/big.bin", "Range: bytes=4097-5000000\r\n"))
            st, _, body = r.response()
            assert st == 206 and body == ctx.files["big.bin"][4097:5000001], (args, st, len(body))
            wq = _io_wq_threads(srv.proc.pid)
            assert not wq, f"{args}: io-wq threads after cached large bodies: {wq}"
        finally:
            srv.stop()


def t_sendfile_without_descriptors(ctx):
    """No descriptor left to install for sendfile (RLIMIT_NOFILE lowered
    under the running server, once its ring is set up, to what it holds plus
    the one the body file takes): the ring falls back (splice; with no descriptors for a pipe
    either, read + send through the slots) and every body still arrives."""
    for name in ("1m.bin", "big.bin"):
        with open(os.path.join(ctx.root, name), "rb") as f:
            f.read()
    srv = Server(ctx.bin, ctx.root, ["--workers", "1"])
    try:
        if "large=splice" in srv.srv.line:
            raise Skip(f"no sendfile here: {srv.srv.line.strip()}")
        s = srv.connect()
        r = Reader(s)
        s.sendall(get("/1k.html"))  # answered: the ring is set up
        assert r.response()[0] == 200
        pid = srv.proc.pid
        held = len(os.listdir(f"/proc/{pid}/fd"))
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 1, hard))
        for name in ("1m.bin", "big.bin", "1m.bin"):
            s.sendall(get("/" + name))
            st, _, body = r.response()
            assert st == 200 and body == ctx.files[name], (name, st, len(body))
        s2 = srv.connect()
        s2.sendall(get("/1m.bin"))
        st, _, body = Reader(s2).response()
        assert st == 200 and body == ctx.files["1m.bin"], ("second connection", st, len(body))
    finally:
        srv.stop()


# --- bodies read from disk, not from the page cache --------------------------------------

def _evict(path):
    """Drop path's pages from the page cache (it was fsync'd, so they are
    clean); False when they stay (tmpfs, or a kernel that ignores the hint)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return True  # not cached: a read would have to wait for the disk
        return False
    finally:
        os.close(fd)


def _write_synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def t_cold_cache_bodies(ctx):
    """Bodies whose pages are not cached: the read has to wait for the disk,
    and the send must wait for the read. Two 20 KB files (one slot each) and
    a 1 MiB one, evicted before every request and asked for in turn on one
    connection: every body must be the file's. With the READ and the SEND
    of a slot not linked (liburing's prep helpers reset sqe->flags, so a link
    set before them is lost), the SEND sent the slot's previous contents:
    19 to 21 of the 21 bodies were wrong, on every variant."""
    names = ["cold-a.bin", "cold-b.bin", "cold-c.bin"]
    files = {n: os.urandom(20000) for n in names[:2]}
    files[names[2]] = os.urandom(1024 * 1024 + 5)
    for n, data in files.items():
        _write_synced(os.path.join(ctx.root, n), data)
    if not _evict(os.path.join(ctx.root, names[0])):
        raise Skip("the page cache cannot be dropped for files here (tmpfs?)")

    def one(args):
        srv = Server(ctx.bin, ctx.root, args)
        try:
            s = srv.connect()
            r = Reader(s)
            bad = []
            for i in range(21):
                name = names[i % 3] if i % 7 == 6 else names[i % 2]
                _evict(os.path.join(ctx.root, name))
                s.sendall(get("/" + name))
                st, _, body = r.response()
                if st != 200 or body != files[name]:
                    bad.append(f"{name}: {st}, {len(body)} bytes")
            assert not bad, f"{len(bad)} of 21 bodies wrong: {bad[:3]}"
        finally:
            srv.stop()

    failed = []
    for args in ([], ["--entries", "16", "--zc"], ["--sqpoll"]):
        try:
            one(args)
        except AssertionError as e:
            failed.append(f"[{' '.join(args) or 'default'}] {e}")
    assert not failed, "; ".join(failed)


TESTS = [
    t_small_and_big, t_keepalive_many, t_pipelined, t_half_close_and_close_header,
    t_max_requests, t_head_byte_by_byte, t_head_spans_buffers,
    t_bad_request_closes, t_closing_then_reuse, t_header_timeout, t_keepalive_timeout, t_concurrent, t_no_mapping_per_request, t_slots_run_out,
    t_buffer_ring_runs_dry, t_reset_mid_body, t_stop_finishes_inflight_body, t_access_log,
    t_sqpoll, t_zc, t_bad_flags,
    t_pipeline_flood_one_write, t_pipeline_behind_slow_body, t_pipeline_half_close,
    t_slow_readers_hold_only_their_own, t_refused_body_lingers, t_large_ranges_read_slowly,
    t_cached_large_bodies_stay_in_the_ring_thread, t_sendfile_without_descriptors,
    t_cold_cache_bodies,
]


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("-k", help="run only tests whose name contains this")
    a = ap.parse_args()
    ctx = Ctx()
    ctx.bin = os.path.abspath(a.bin)
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        ctx.tmp = tmp
        ctx.root = os.path.join(tmp, "www")
        os.mkdir(ctx.root)
        ctx.files = make_root(ctx.root)
        try:
            unavailable = io_uring_unavailable(ctx.bin, ctx.root)
        except Exception as e:
            print(f"FAIL start: {e}")
            print("uring: 0 passed, 1 failed, 0 skipped")
            return 1
        for t in [t_unavailable_exits_2] + TESTS:
            name = t.__name__[2:]
            if a.k and a.k not in name:
                continue
            if unavailable and t is not t_unavailable_exits_2:
                print(f"SKIP {name}: {unavailable}")
                skipped += 1
                continue
            t0 = time.monotonic()
            try:
                t(ctx)
                print(f"ok   {name} ({time.monotonic() - t0:.1f}s)")
                passed += 1
            except Skip as e:
                print(f"SKIP {name}: {e}")
                skipped += 1
                if t is not t_unavailable_exits_2:
                    unavailable = str(e)
            except Exception as e:
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3)
                failed += 1
            sys.stdout.flush()
    print(f"uring: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
