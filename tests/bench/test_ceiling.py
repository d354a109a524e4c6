#!/usr/bin/python3
"""Black-box tests of the ceiling reference server (bench/ceiling/).

    /usr/bin/python3 tests/bench/test_ceiling.py --bin BUILD/c10k-ceiling [-k NAME]

Every test runs on both drivers, epoll and uring (the uring ones are skipped,
with the reason the server gives, where io_uring is unavailable): byte-exact
responses for 1 KiB, 1 MiB and 16 MiB files, keep-alive, the closing cases
(Connection: close, HTTP/1.0, a client's FIN right after its requests),
2,000 pipelined requests in one write while
the client reads nothing for a while (backpressure: all answered, in order),
request heads split across reads, a client that resets mid-response, a head
too long, SIGTERM and SIGINT, --workers with SO_REUSEPORT, --cpus pinning,
the start line, and the refusals that exit 2 (bad flags, a missing file,
io_uring blocked by a seccomp filter).
Prints "ceiling: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "uring"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from test_uring import _seccomp_block_io_uring  # noqa: E402

BIN = os.path.join(REPO, "build", "c10k-ceiling")
START_S = 5  # the start line must come within this
IO_S = 10  # any one socket wait
TMP = tempfile.TemporaryDirectory(prefix="c10k-ceiling-test-")
FILES = {}  # name -> (path, bytes)


def make_files():
    for name, size in (("1k.bin", 1024), ("1m.bin", 1 << 20), ("16m.bin", 16 << 20)):
        data = os.urandom(size)
        path = os.path.join(TMP.name, name)
        with open(path, "wb") as f:
            f.write(data)
        FILES[name] = (path, data)


def run(args, timeout=10):
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class Server:
    """One c10k-ceiling child on a free port; the port comes from its start line."""

    def __init__(self, backend, file="1k.bin", args=()):
        cmd = [BIN, "--backend", backend, "--file", FILES[file][0], "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        r, _, _ = select.select([self.proc.stdout], [], [], START_S)
        self.line = self.proc.stdout.readline().decode() if r else ""
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", self.line)
        if not m:
            err = self.finish()
            raise AssertionError(f"no start line: {self.line!r}, exit {self.proc.returncode}: {err}")
        self.port = int(m.group(1))

    def connect(self, rcvbuf=None):
        s = socket.socket()
        s.settimeout(IO_S)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self, sig=signal.SIGTERM):
        """Signal it; it must exit 0 with nothing on stderr (no sanitizer report)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        err = self.finish()
        if self.proc.returncode != 0 or err.strip():
            raise AssertionError(f"exit status {self.proc.returncode} after {sig.name}: {err[-2000:]}")

    def finish(self, timeout=10):
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("the server did not exit within %d s of the signal" % timeout)
        return err.decode(errors="replace")


class Reader:
    """Reads HTTP/1.1 responses; a bytearray, so 16 MiB bodies stay cheap."""

    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def response(self):
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        hdrs = dict((k.strip().lower(), v.strip())
                    for k, _, v in (ln.partition(":") for ln in lines[1:]))
        n = int(hdrs["content-length"])
        while len(self.buf) < n:
            self._fill()
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return lines[0], hdrs, body

    def at_eof(self):
        """The server closes (FIN or reset) with nothing more to read."""
        try:
            return self.sock.recv(4096) == b"" and not self.buf
        except ConnectionResetError:
            return True


def get(path="/f", version="1.1", extra=""):
    return f"GET {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


class CeilingTests:
    """The tests; EpollTests and UringTests run them on each driver."""

    backend = None
    unavailable = None  # why this driver cannot run here, or None

    def setUp(self):
        if self.unavailable:
            self.skipTest(self.unavailable)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.communicate()

    def server(self, file="1k.bin", args=()):
        s = Server(self.backend, file, args)
        self.servers.append(s)
        return s

    def expect(self, reader, file, connection="keep-alive"):
        status, hdrs, body = reader.response()
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(hdrs["connection"], connection)
        self.assertEqual(int(hdrs["content-length"]), len(FILES[file][1]))
        self.assertTrue(body == FILES[file][1], "the body differs from %s" % file)
        for h in ("server", "date", "content-type", "last-modified", "etag", "accept-ranges"):
            self.assertIn(h, hdrs)

    def test_byte_exact_1k_1m_keepalive_then_close(self):
        for file in ("1k.bin", "1m.bin"):
            srv = self.server(file)
            s = srv.connect()
            r = Reader(s)
            for path in ("/", "/f", "/anything?at=all"):  # every request gets the file
                s.sendall(get(path))
                self.expect(r, file)
            s.sendall(get(extra="Connection: close\r\n"))  # the other canned response
            self.expect(r, file, "close")
            self.assertTrue(r.at_eof())
            s.close()
            srv.stop()

    def test_16m_to_a_late_reader(self):
        """Partial sends: 16 MiB is more than the socket buffers hold."""
        srv = self.server("16m.bin")
        s = srv.connect()
        s.sendall(get())
        time.sleep(0.2)  # the server's send is stuck on full buffers meanwhile
        self.expect(Reader(s), "16m.bin")
        s.close()
        srv.stop()

    def test_connection_close_closes(self):
        srv = self.server()
        cases = [get(extra="Connection: close\r\n"),
                 get(extra="connection: Keep-Alive, CLOSE\r\n"),
                 get(version="1.0"),
                 get(version="1.0", extra="Connection: close\r\n")]
        for req in cases:
            s = srv.connect()
            s.sendall(req)
            r = Reader(s)
            self.expect(r, "1k.bin", "close")
            self.assertTrue(r.at_eof(), req)
            s.close()
        s = srv.connect()  # HTTP/1.0 that asks for keep-alive keeps it
        r = Reader(s)
        for _ in range(3):
            s.sendall(get(version="1.0", extra="Connection: keep-alive\r\n"))
            self.expect(r, "1k.bin")
        s.close()
        srv.stop()

    def test_close_after_pipelined_requests(self):
        """Answered up to the closing request, then closed; what follows is ignored."""
        srv = self.server()
        s = srv.connect()
        s.sendall(get() * 3 + get(extra="Connection: close\r\n") + get())
        r = Reader(s)
        for _ in range(3):
            self.expect(r, "1k.bin")
        self.expect(r, "1k.bin", "close")
        self.assertTrue(r.at_eof())
        s.close()
        srv.stop()

    def test_half_close_after_requests(self):
        """Requests, then the client's FIN in the same burst: all answered, then closed."""
        srv = self.server()
        for n in (1, 3):
            s = srv.connect()
            s.sendall(get() * n)
            s.shutdown(socket.SHUT_WR)
            r = Reader(s)
            for _ in range(n):
                self.expect(r, "1k.bin")
            self.assertTrue(r.at_eof())
            s.close()
        srv.stop()

    def test_2000_pipelined_in_one_write(self):
        """All answered, in order, while the client reads nothing for a while."""
        srv = self.server()
        s = srv.connect()
        reqs = b"".join(get("/%d" % i) for i in range(2000))
        writer = threading.Thread(target=s.sendall, args=(reqs,))
        writer.start()
        time.sleep(0.5)  # 2.5 MB of responses back up: the server must wait, not drop
        r = Reader(s)
        for _ in range(2000):
            self.expect(r, "1k.bin")
        writer.join()
        s.settimeout(0.2)
        with self.assertRaises(socket.timeout):  # and not one response more
            s.recv(1)
        s.close()
        srv.stop()

    def test_pipelined_large(self):
        srv = self.server("1m.bin")
        s = srv.connect()
        s.sendall(get() * 5)
        r = Reader(s)
        for _ in range(5):
            self.expect(r, "1m.bin")
        s.close()
        srv.stop()

    def test_split_heads(self):
        srv = self.server()
        s = srv.connect()
        r = Reader(s)
        req = get(extra="User-Agent: split\r\n")
        # Every split point, including between the final "\r\n" and "\r\n".
        for cut in (1, len(req) // 2, len(req) - 3, len(req) - 2, len(req) - 1):
            s.sendall(req[:cut])
            time.sleep(0.02)
            self.assertEqual(select.select([s], [], [], 0.05)[0], [], "answered early")
            s.sendall(req[cut:])
            self.expect(r, "1k.bin")
        for i in range(len(req)):  # one byte at a time
            s.sendall(req[i:i + 1])
            time.sleep(0.002)
        self.expect(r, "1k.bin")
        s.sendall(req + req[:10])  # a whole request and the start of the next
        self.expect(r, "1k.bin")
        s.sendall(req[10:])
        self.expect(r, "1k.bin")
        s.sendall(b"GET /lf HTTP/1.1\nHost: t\n\n")  # bare LF, as lax clients send
        self.expect(r, "1k.bin")
        s.close()
        srv.stop()

    def test_head_too_long_closes(self):
        srv = self.server()
        s = srv.connect()
        s.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
        self.assertTrue(Reader(s).at_eof())
        s.close()
        s = srv.connect()  # and the server is fine
        s.sendall(get())
        self.expect(Reader(s), "1k.bin")
        s.close()
        srv.stop()

    def test_reset_mid_response(self):
        srv = self.server("1m.bin")
        for _ in range(10):
            s = srv.connect(rcvbuf=16384)
            s.sendall(get() * 3)
            s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST with most of the response unsent
        s = srv.connect()
        s.sendall(get())
        self.expect(Reader(s), "1m.bin")
        s.close()
        srv.stop()

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            srv = self.server("1m.bin")
            idle = srv.connect()
            idle.sendall(get())
            Reader(idle).response()
            busy = srv.connect(rcvbuf=16384)
            busy.sendall(get())  # a response in flight, never read
            half = srv.connect()
            half.sendall(b"GET / HT")  # a head not complete
            time.sleep(0.1)
            srv.stop(sig)
            for s in (idle, busy, half):
                s.close()

    def test_workers_reuseport_and_cpus(self):
        srv = self.server(args=["--workers", "2", "--cpus", "0"])
        self.assertIn("workers=2 cpus=0", srv.line)
        with open("/proc/net/tcp") as f:
            rows = [ln.split() for ln in f.read().splitlines()[1:]]
        listeners = [r for r in rows if r[1].endswith(":%04X" % srv.port) and r[3] == "0A"]
        self.assertEqual(len(listeners), 2, "one SO_REUSEPORT listener per worker")
        tasks = os.listdir("/proc/%d/task" % srv.proc.pid)
        self.assertGreaterEqual(len(tasks), 3, "main and two workers")
        for t in tasks:
            with open("/proc/%d/task/%s/status" % (srv.proc.pid, t)) as f:
                allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", f.read()).group(1)
            self.assertEqual(allowed, "0", "thread %s is not pinned to CPU 0" % t)
        socks = [srv.connect() for _ in range(20)]  # spread over both listeners
        for s in socks:
            s.sendall(get())
        for s in socks:
            self.expect(Reader(s), "1k.bin")
            s.close()
        srv.stop()


class EpollTests(CeilingTests, unittest.TestCase):
    backend = "epoll"


class UringTests(CeilingTests, unittest.TestCase):
    backend = "uring"

    def test_unavailable_exits_2(self):
        """io_uring_setup blocked by seccomp, as in many containers."""
        if os.uname().machine != "x86_64":
            self.skipTest("the seccomp filter is written for x86_64")
        p = subprocess.run([BIN, "--backend", "uring", "--file", FILES["1k.bin"][0],
                            "--port", "0"], capture_output=True, timeout=10,
                           preexec_fn=_seccomp_block_io_uring)
        if p.returncode == 97:
            self.skipTest("cannot install a seccomp filter here")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("io_uring is unavailable", err)
        self.assertEqual(p.stdout, b"", "no start line")


class UsageTests(unittest.TestCase):
    def test_usage_errors_exit_2(self):
        f = FILES["1k.bin"][0]
        cases = [
            ([], "--backend epoll|uring is required"),
            (["--backend", "epoll"], "--file PATH is required"),
            (["--backend", "kqueue", "--file", f], "--backend 'kqueue': want epoll or uring"),
            (["--backend", "epoll", "--file", f, "--port", "x"], "--port 'x': want a whole number"),
            (["--backend", "epoll", "--file", f, "--workers", "0"], "--workers '0'"),
            (["--backend", "epoll", "--file", f, "--cpus", "9999"], "--cpus '9999'"),
            (["--backend", "epoll", "--file", f, "--root", "."], "unknown flag '--root'"),
            (["--backend", "epoll", "--file", f, "--port"], "--port needs a value"),
            (["--backend", "epoll", "--file", "/nonexistent"], "'/nonexistent': No such file"),
            (["--backend", "epoll", "--file", TMP.name], "not a regular file"),
            (["--backend", "epoll", "--file", f, "--bind", "localhost"], "cannot listen"),
        ]
        for args, msg in cases:
            rc, out, err = run(args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(msg, err, args)
            self.assertEqual(len(err.strip().splitlines()), 1, "one line: %r" % err)
            self.assertEqual(out, "", args)

    def test_help(self):
        rc, out, _ = run(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--backend epoll|uring", out)


def uring_unavailable():
    """The reason --backend uring refuses to run here, or None. io_uring is
    probed before anything is bound, so a bad --bind ends the run right after
    the probe has passed."""
    rc, _, err = run(["--backend", "uring", "--file", FILES["1k.bin"][0], "--port", "0",
                      "--bind", "not-an-address"])
    if rc == 2 and "io_uring is unavailable" in err:
        return err.strip()
    return None


def main():
    global BIN
    BIN = testmain.pop_bin(BIN)
    make_files()
    UringTests.unavailable = uring_unavailable()
    try:
        return testmain.run("ceiling")
    finally:
        TMP.cleanup()

if __name__ == "__main__":
    sys.exit(main())
