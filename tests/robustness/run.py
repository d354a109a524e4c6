#!/usr/bin/python3
"""run.py - fault and attack tests for every c10k model.

    run.py --bin build/c10k [--model NAME ...] [--quick] [--slowloris N]
           [--header-timeout S] [--json FILE] [--logs DIR]

Black-box over real sockets on 127.0.0.1, one `c10k serve` child process per
server (its own session, killed on any exit), every wait bounded. Runs every
variant `c10k models --variants` lists (with --quick only the default flag
set of each model). Per variant:

  never-read    a client asks for a 16 MiB file and never reads (4 KiB receive
                buffer): other clients are still served, and the server drops
                the connection (its server-side socket leaves ESTABLISHED)
                within 45 s: every model has a 30 s send timeout, which
                TCP_USER_TIMEOUT on its listeners enforces in the kernel too.
                Started for all variants first and checked last, so that
                wait overlaps the other tests.
  slow-read     alongside it, a client that pauses 1 s (letting the server
                fill its send buffer) and then reads the 16 MiB file at
                20 KB/s for SLOW_READ_S (45) seconds before reading the rest
                at full speed: it is reading the whole time, so it must get
                every byte. (A server that only counts writability as
                progress waits for a third of a multi-MiB send buffer to
                drain, which takes longer than its 30 s send timeout at
                that rate, and cuts the response short.)
  half-close    requests then shutdown(SHUT_WR): every response still arrives
                in full (one request, two pipelined, a 1 MiB body).
  reset         clients reset (SO_LINGER 0) in the middle of a 16 MiB sendfile
                and right after sending the request: the server keeps serving.
  traversal     cases.TRAVERSAL (encoded, double-encoded, overlong UTF-8,
                backslashes, NUL, ..;, symlinks out of the root, dotfiles):
                no response carries a byte from outside the root or from a
                dotfile, none is a 5xx, and the server answers every one.
  smuggling     cases.SMUGGLING: each gets exactly one 400 and a close.
  oversize      cases.OVERSIZE: 414 for long targets, 431 for long or many
                headers.
  ranges        cases.RANGES (integer overflows, 1,000 ranges, ...): any of
                200/206/416, Content-Length equal to the body, a 206's
                Content-Range within the file and matching the bytes.
  slowloris     --slowloris connections (1,000) trickle header lines. Every
                model must close them at --header-timeout (no earlier) and
                serve normally afterwards; event models must also serve a
                probe client every 0.25 s throughout. For threaded and prefork
                the probe results are recorded, not required (a blocked
                thread or process per slow client is what they are).
  fd-exhaustion the server runs under `ulimit -n 128` and 600 clients
                connect: it keeps running, its CPU time (utime+stime of all
                its processes from /proc/PID/stat) over 2 s of exhaustion
                stays under 25% of one CPU (no busy loop on EMFILE), and once
                the clients go it serves 20 requests in a row.
  sigterm       8 clients stream a 16 MiB file at ~16 MB/s each; SIGTERM arrives
                when each has several MiB still to come (more than socket
                buffers hold): every response that had started arrives in
                full, and the server exits 0.

Every server's stderr is also searched for sanitizer reports (ASan, UBSan,
LSan, TSan), so running this on a SANITIZE= build checks those too.

Prints PASS/FAIL/SKIP per test, then a JSON summary line starting with
`robustness-summary:` (attack cases tried, faults injected, failures, per
family), then `robustness: N passed, N failed, N skipped`; exit status 1 on
any failure. Only the Python 3 standard library is used.
"""

import argparse
import json
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import c10ktest  # noqa: E402  (the one server helper and raw client)
import cases  # noqa: E402
from c10ktest import connect, read_to_end, reset_close, send_in_thread  # noqa: E402

NAME = "robustness"
BLOCKING_MODELS = {"threaded", "prefork"}  # a thread or process per connection
BIG = 16 << 20
MID = 1 << 20
NEVER_READ_DEADLINE = 45.0  # the 30 s send timeout, and some slack for a loaded machine
FD_LIMIT = 128
FD_CLIENTS = 600
SIGTERM_CLIENTS = 8


# --- results -------------------------------------------------------------------


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.counts = {"attack_cases": 0, "faults_injected": 0}
        self.families = {}
        self.records = []  # behaviour worth reporting (blocking models under slowloris)

    def add(self, family, n=1, fault=False):
        self.families[family] = self.families.get(family, 0) + n
        self.counts["faults_injected" if fault else "attack_cases"] += n

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, name, errors):
        self.failed += 1
        print(f"FAIL {name}: {len(errors)} error(s)", flush=True)
        for e in errors[:8]:
            print(f"     {e}", flush=True)
        if len(errors) > 8:
            print(f"     ... and {len(errors) - 8} more", flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def check(self, name, errors, detail=""):
        if errors:
            self.fail(name, errors)
        else:
            self.ok(name, detail)


# --- the fixture -----------------------------------------------------------------


def pattern(size, seed):
    block = bytes((i * 31 + seed) % 251 for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


def make_root():
    top = tempfile.mkdtemp(prefix="c10k-robust-")
    root, outside = os.path.join(top, "root"), os.path.join(top, "outside")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(root, ".git"))
    os.makedirs(outside)
    files = {
        "index.html": b"<p>robustness index</p>\n",
        "a.txt": b"hello robustness\n",
        "sub/b.txt": b"b\n",
        "sub/index.html": b"<p>sub</p>\n",
        ".hidden": cases.DOTFILE_MARKER + b"\n",
        ".git/config": cases.DOTFILE_MARKER + b" [core]\n",
        "mid.bin": pattern(MID, 1),
        "big.bin": pattern(BIG, 2),
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(b"C10K-SECRET-MARKER\n")
    with open(os.path.join(outside, "outside-only-name-7f3a.txt"), "wb") as f:
        f.write(b"C10K-SECRET-MARKER\n")
    with open(os.path.join(top, "root-sibling.txt"), "wb") as f:
        f.write(b"C10K-SECRET-MARKER\n")
    links = {
        "link-out": "../outside",
        "link-secret": "../outside/secret.txt",
        "link-abs": "/etc",
        "link-root": "/",
        "loop": "loop",
        "link-in": "sub/b.txt",
        "sub/link-up": "../../outside/secret.txt",
        "sub/link-parent": "..",
    }
    for name, to in links.items():
        os.symlink(to, os.path.join(root, name))
    return top, root, files


# --- servers -------------------------------------------------------------------------


class Server:
    """One `c10k serve` child, started by c10ktest.Server (its own session,
    the port from its start line, stdout and stderr always drained), plus
    the process-tree counters these tests read. start() says whether it
    runs; why says what went wrong."""

    seq = 0

    def __init__(self, args, model, flags, root, extra=(), nofile=None):
        self.cmd = [args.bin, "serve", model, "--port", "0", "--root", root] + list(extra) + flags
        self.nofile = nofile
        self.child = self.proc = self.port = self.why = None
        self.log = None
        self.refused = False  # the model's probe said this kernel cannot run it
        if args.logs:  # keep every server's stderr, e.g. for sanitizer reports
            os.makedirs(args.logs, exist_ok=True)
            Server.seq += 1
            name = re.sub(r"[^A-Za-z0-9]+", "-", " ".join([model] + flags + list(extra)))
            self.log = os.path.join(args.logs, f"{Server.seq:03d}-{name}.stderr")

    def start(self, timeout=15.0):
        def preexec():
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        try:
            self.child = c10ktest.Server(self.cmd, timeout=timeout, stderr_log=self.log,
                                         preexec_fn=preexec if self.nofile else None)
        except (c10ktest.Unsupported, RuntimeError) as e:
            self.refused = isinstance(e, c10ktest.Unsupported)
            self.why = str(e).strip()[-300:]
            return False
        self.proc, self.port = self.child.proc, self.child.port
        return True

    def unsupported(self):
        return self.refused

    def alive(self):
        return self.child is not None and self.child.alive()

    def pids(self):
        """The server and every descendant (prefork's workers)."""
        parent = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read()
                    parent[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
                except (OSError, ValueError):
                    pass
        found, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            found.append(p)
            todo += [c for c, pp in parent.items() if pp == p]
        return found

    def cpu_seconds(self):
        ticks = 0
        for p in self.pids():
            try:
                with open(f"/proc/{p}/stat") as f:
                    st = f.read()
                fields = st[st.rindex(")") + 2:].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return ticks / os.sysconf("SC_CLK_TCK")

    def fd_count(self):
        n = 0
        for p in self.pids():
            try:
                n += len(os.listdir(f"/proc/{p}/fd"))
            except OSError:
                pass
        return n

    def stop(self, grace=10.0):
        """SIGTERM, wait; returns the exit status, or None if it had to be killed."""
        return self.child.stop(grace) if self.child else None

    def kill(self):
        """Kills the whole process group, stray workers of a dead master too."""
        if self.child:
            self.child.kill()

    def stderr(self):
        return self.child.stderr() if self.child else ""

    def sanitizer_errors(self):
        return self.child.sanitizer_report() if self.child else []


# --- a small HTTP client ------------------------------------------------------------------


def parse_responses(data, head_method=False):
    """Split data into (status, headers, body, complete) tuples."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            out.append((None, {}, data, False))
            break
        lines = data[:end].split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", lines[0] + b" ")
        status = int(m.group(1)) if m else None
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        cl = headers.get("content-length", "0")
        if not cl.isdigit():  # a broken length frames nothing after it
            out.append((status, headers, data[end + 4:], False))
            break
        n = 0 if head_method or status in (204, 304) else int(cl)
        body = data[end + 4:end + 4 + n]
        out.append((status, headers, body, len(body) == n))
        data = data[end + 4 + n:]
    return out


def exchange(port, raw, timeout=5.0, shut_wr=False):
    """Send raw bytes (from a thread, so an early answer is never lost to a
    blocked send), read until EOF. Returns (bytes, how it ended)."""
    s = connect(port, timeout)
    t = send_in_thread(s, raw, shut_wr)
    try:
        data, how = read_to_end(s, timeout)
    finally:
        t.join(timeout)
        s.close()
    return data, how


def get(port, path, timeout=5.0):
    """One GET with Connection: close. Returns (status, body) or raises."""
    data, how = exchange(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         % path.encode(), timeout)
    rs = parse_responses(data)
    if not rs or rs[0][0] is None or not rs[0][3]:
        raise OSError(f"GET {path}: incomplete response ({len(data)} bytes, {how})")
    return rs[0][0], rs[0][2]


def probe(port, files, timeout=3.0):
    """None if GET /a.txt works, else what went wrong."""
    try:
        st, body = get(port, "/a.txt", timeout)
    except OSError as e:
        return str(e) or type(e).__name__
    if st != 200 or body != files["a.txt"]:
        return f"GET /a.txt: status {st}, {len(body)} bytes"
    return None


def wait_recovered(port, files, seconds):
    """Seconds until 5 probes in a row succeed, or None."""
    t0, good = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        if probe(port, files, 2.0) is None:
            good += 1
            if good == 5:
                return time.monotonic() - t0
        else:
            good = 0
            time.sleep(0.2)
    return None


# --- the tests -------------------------------------------------------------------------------


def server_tcp_state(server_port, client_port):
    """The kernel state of the server side of one loopback connection:
    '01' is ESTABLISHED; None when the socket is gone."""
    want_local, want_remote = f":{server_port:04X}", f":{client_port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    if fl[1].endswith(want_local) and fl[2].endswith(want_remote):
                        return fl[3]
        except OSError:
            pass
    return None


class NeverRead:
    """A client that asks for a big file and never reads a byte of it."""

    def __init__(self, srv, files, label):
        self.srv, self.files, self.label = srv, files, label
        self.t0 = time.monotonic()
        self.errors = []
        self.dropped_at = None
        self.sock = connect(srv.port, rcvbuf=4096)
        self.cport = self.sock.getsockname()[1]
        self.sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")

    def probe_during(self):
        time.sleep(1.0)
        e = probe(self.srv.port, self.files)
        if e:
            self.errors.append(f"another client was not served while one never reads: {e}")

    def poll(self):
        """Called every half second by the watcher: notes when the server let go."""
        if self.dropped_at is None and server_tcp_state(self.srv.port, self.cport) != "01":
            self.dropped_at = time.monotonic() - self.t0
        return self.dropped_at is not None or not self.srv.alive()

    def finish(self):
        while not self.poll() and time.monotonic() - self.t0 < NEVER_READ_DEADLINE:
            time.sleep(0.5)
        dropped_at = self.dropped_at
        if not self.srv.alive():
            self.errors.append(f"server died (exit {self.srv.proc.returncode})")
        elif dropped_at is None:
            self.errors.append(f"connection still ESTABLISHED on the server after "
                               f"{NEVER_READ_DEADLINE:.0f} s")
        else:
            e = probe(self.srv.port, self.files)
            if e:
                self.errors.append(f"after the drop: {e}")
        self.sock.close()
        return dropped_at


SLOW_READ_S = 45.0
SLOW_READ_RATE = 20 * 1024  # bytes per second while trickling


class SlowRead(threading.Thread):
    """A client that reads a 16 MiB response slowly but steadily, then fast."""

    def __init__(self, srv, files):
        super().__init__(daemon=True)
        self.srv, self.want = srv, files["big.bin"]
        self.errors = []
        self.got = 0

    def run(self):
        data = bytearray()
        try:
            s = connect(self.srv.port, timeout=SLOW_READ_S + 40, rcvbuf=65536)
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(1.0)
            end = time.monotonic() + SLOW_READ_S
            while time.monotonic() < end:
                chunk = s.recv(SLOW_READ_RATE // 10)
                if not chunk:
                    break
                data += chunk
                time.sleep(0.1)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            s.close()
        except OSError as e:
            self.errors.append(f"{type(e).__name__}: {e} after {len(data)} bytes")
        self.got = len(data)
        rs = parse_responses(bytes(data))
        if len(rs) != 1 or rs[0][0] != 200 or not rs[0][3] or rs[0][2] != self.want:
            self.errors.append(f"a slow but steady reader got {len(data)} bytes, "
                               f"not one complete 200 with the {len(self.want)}-byte file")


def test_half_close(res, label, srv, files):
    errors = []
    cases_ = [
        ("one request", b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", ["a.txt"]),
        ("two pipelined", b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /sub/b.txt HTTP/1.1\r\nHost: x\r\n\r\n", ["a.txt", "sub/b.txt"]),
        ("1 MiB body", b"GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n", ["mid.bin"]),
    ]
    for name, raw, want in cases_:
        res.add("half-close", fault=True)
        data, how = exchange(srv.port, raw, timeout=10.0, shut_wr=True)
        rs = parse_responses(data)
        got = [(r[0], r[3] and r[2] == files[w]) for r, w in zip(rs, want)]
        if len(rs) != len(want) or any(st != 200 or not ok for st, ok in got):
            errors.append(f"{name}: {len(rs)} response(s) {[(r[0], len(r[2])) for r in rs]}, "
                          f"want {len(want)} complete 200s ({how})")
        elif how != "eof":
            errors.append(f"{name}: responses complete but the connection did not close ({how})")
    res.check(f"{label}: half-close", errors, f"{len(cases_)} requests then SHUT_WR, all answered")


def test_reset(res, label, srv, files):
    errors, n = [], 20
    socks = []
    for _ in range(n):
        s = connect(srv.port, rcvbuf=65536)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    # Wait up to 3 s for the head and some body (sendfile under way) on each;
    # a model with fewer workers than clients (a pool) leaves the rest queued,
    # and those are reset while waiting, a fault of its own.
    got, started, deadline = 0, 0, time.monotonic() + 3.0
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while len(sel.get_map()) and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            try:
                b = key.fileobj.recv(65536)
            except OSError as e:
                errors.append(f"before the reset: {e}")
                b = b""
            got += len(b)
            started += 1 if b else 0
            sel.unregister(key.fileobj)
    sel.close()
    if not started:
        errors.append("no response had started before the resets: the test proved nothing")
    for s in socks:
        reset_close(s)
    for _ in range(n):  # reset before the response could start
        s = connect(srv.port)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        reset_close(s)
    res.add("reset mid-response", 2 * n, fault=True)
    time.sleep(0.3)
    if not srv.alive():
        errors.append(f"server died (exit {srv.proc.returncode})")
    else:
        for _ in range(5):
            e = probe(srv.port, files)
            if e:
                errors.append(f"after the resets: {e}")
                break
        try:
            st, body = get(srv.port, "/big.bin", 20.0)
            if st != 200 or body != files["big.bin"]:
                errors.append(f"after the resets: GET /big.bin: status {st}, {len(body)} bytes")
        except OSError as e:
            errors.append(f"after the resets: {e}")
    res.check(f"{label}: reset mid-sendfile", errors,
              f"{2 * n} resets ({started} of the first {n} mid-response, {got} bytes read), "
              f"still serving")


def test_traversal(res, label, srv, files):
    errors, kinds = [], {}
    for kind, target in cases.TRAVERSAL:
        kinds[kind] = kinds.get(kind, 0) + 1
        res.add("traversal")
        raw = b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        try:
            data, how = exchange(srv.port, raw)
        except OSError as e:
            errors.append(f"{target!r}: {e}")
            continue
        leaked = [m for m in cases.LEAK_MARKERS + (cases.DOTFILE_MARKER,) if m in data]
        rs = parse_responses(data)
        if leaked:
            errors.append(f"ESCAPE {target!r}: response holds {leaked[0]!r}")
        elif not rs or rs[0][0] is None:
            errors.append(f"{target!r}: no response ({how}, {len(data)} bytes)")
        elif rs[0][0] >= 500:
            errors.append(f"{target!r}: status {rs[0][0]}")
    if not srv.alive():
        errors.append("server died")
    else:
        e = probe(srv.port, files)
        if e:
            errors.append(f"after the traversal corpus: {e}")
    detail = f"{len(cases.TRAVERSAL)} attack paths, 0 escapes (" + \
        ", ".join(f"{k} {v}" for k, v in kinds.items()) + ")"
    res.check(f"{label}: traversal", errors, detail)


def test_smuggling(res, label, srv, files):
    errors = []
    for name, raw in cases.SMUGGLING:
        res.add("smuggling")
        try:
            data, how = exchange(srv.port, raw)
        except OSError as e:
            errors.append(f"{name}: {e}")
            continue
        rs = parse_responses(data)
        statuses = [r[0] for r in rs]
        if statuses != [400]:
            errors.append(f"{name}: got {statuses or 'no response'} ({how}), want exactly [400]")
        elif how != "eof" and how != "reset":
            errors.append(f"{name}: 400 but the connection stayed open ({how})")
    e = probe(srv.port, files)
    if e:
        errors.append(f"after the smuggling cases: {e}")
    res.check(f"{label}: smuggling", errors, f"{len(cases.SMUGGLING)} shapes, each one 400 and close")


def test_oversize(res, label, srv, files):
    errors = []
    for name, raw, want in cases.OVERSIZE:
        res.add("oversize")
        try:
            data, how = exchange(srv.port, raw)
        except OSError as e:
            errors.append(f"{name}: {e}")
            continue
        rs = parse_responses(data)
        statuses = [r[0] for r in rs]
        if statuses != [want]:
            errors.append(f"{name}: got {statuses or 'no response'} ({how}), want [{want}]")
    e = probe(srv.port, files)
    if e:
        errors.append(f"after the oversized requests: {e}")
    res.check(f"{label}: oversize", errors, f"{len(cases.OVERSIZE)} requests, each 414 or 431")


def test_ranges(res, label, srv, files):
    errors, size = [], len(files["a.txt"])
    for name, value in cases.RANGES:
        res.add("range")
        raw = (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: %s\r\n\r\n"
               % value.encode())
        try:
            data, how = exchange(srv.port, raw)
        except OSError as e:
            errors.append(f"{name}: {e}")
            continue
        head, _, body = data.partition(b"\r\n\r\n")
        rs = parse_responses(data)
        st = rs[0][0] if rs else None
        cl = rs[0][1].get("content-length", "") if rs else ""
        cr = rs[0][1].get("content-range", "") if rs else ""
        if st not in (200, 206, 416):
            errors.append(f"{name}: status {st} ({how})")
        elif not cl.isdigit() or int(cl) != len(body):
            errors.append(f"{name}: {st} with Content-Length {cl!r} and {len(body)} body bytes")
        elif st == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", cr)
            if not m or int(m.group(3)) != size or not \
                    int(m.group(1)) <= int(m.group(2)) < size or \
                    int(m.group(2)) - int(m.group(1)) + 1 != len(body) or \
                    body != files["a.txt"][int(m.group(1)):int(m.group(2)) + 1]:
                errors.append(f"{name}: 206 with Content-Range {cr!r} and {len(body)} bytes")
    e = probe(srv.port, files)
    if e:
        errors.append(f"after the range cases: {e}")
    res.check(f"{label}: ranges", errors,
              f"{len(cases.RANGES)} hostile Range values, every answer self-consistent")


class Slow:
    __slots__ = ("sock", "t_conn", "closed_at", "status", "lines", "buf")

    def __init__(self, sock, t):
        self.sock, self.t_conn, self.closed_at, self.status, self.lines = sock, t, None, None, 0
        self.buf = b""


def slowloris(port, n, duration, trickle, stop_when_all_closed):
    """Open n connections that trickle header lines, for at most duration s.
    Returns the Slow records (closed_at relative to the connect)."""
    sel = selectors.DefaultSelector()
    conns, pending = [], []
    t_start = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        # Timed from before connect(): the server's header clock cannot start
        # earlier, so a close sooner than the timeout after this is early.
        c = Slow(s, time.monotonic())
        s.connect_ex(("127.0.0.1", port))
        conns.append(c)
        pending.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
        if len(pending) >= 200 or i == n - 1:  # at most 200 connects in flight
            t_burst = time.monotonic()
            while pending and time.monotonic() - t_burst < 5:
                for key, _ in sel.select(0.5):
                    c = key.data
                    if c in pending:
                        pending.remove(c)
                        sel.unregister(c.sock)
                        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            c.closed_at, c.status = 0.0, f"connect: {os.strerror(err)}"
                            continue
                        try:
                            c.sock.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
                        except OSError:
                            pass
                        sel.register(c.sock, selectors.EVENT_READ, c)
            for c in pending:
                c.closed_at, c.status = 0.0, "connect timed out"
                sel.unregister(c.sock)
            pending = []
    next_line = time.monotonic() + trickle
    while time.monotonic() - t_start < duration:
        now = time.monotonic()
        if now >= next_line:
            for c in conns:
                if c.closed_at is None and not c.buf:
                    try:
                        c.sock.send(b"X-Slow-%d: x\r\n" % c.lines)
                        c.lines += 1
                    except OSError:
                        pass
            next_line = now + trickle
        for key, _ in sel.select(max(0.0, min(next_line - time.monotonic(), 0.1))):
            c = key.data
            try:
                b = c.sock.recv(4096)
            except OSError:
                b = b""
            c.buf += b
            if not b:
                c.closed_at = time.monotonic() - c.t_conn
                m = re.match(rb"HTTP/1\.[01] (\d{3})", c.buf)
                c.status = int(m.group(1)) if m else ("reset/eof" if not c.buf else "garbage")
                sel.unregister(c.sock)
        if stop_when_all_closed and all(c.closed_at is not None for c in conns):
            break
    sel.close()
    for c in conns:
        c.sock.close()
    return conns


def test_slowloris(res, label, model, srv, files, n, header_timeout):
    errors = []
    blocking = model in BLOCKING_MODELS
    probes = {"ok": 0, "fail": 0, "worst": 0.0}
    stop_probe = threading.Event()

    def prober():
        while not stop_probe.is_set():
            t = time.monotonic()
            e = probe(srv.port, files, 2.0)
            probes["worst"] = max(probes["worst"], time.monotonic() - t)
            probes["ok" if e is None else "fail"] += 1
            stop_probe.wait(0.25)

    # Event models must clear every slow client at the header timeout; the
    # blocking models get a bounded window, then the clients leave.
    duration = header_timeout + 6.0 if not blocking else 2 * header_timeout + 6.0
    th = threading.Thread(target=prober, daemon=True)
    th.start()
    conns = slowloris(srv.port, n, duration, 0.5, stop_when_all_closed=True)
    stop_probe.set()
    th.join(5)
    res.add("slowloris connections", n)
    closed = [c for c in conns if c.closed_at is not None and c.closed_at > 0]
    failed_connect = [c for c in conns if c.closed_at == 0.0]
    early = [c for c in closed if c.closed_at < header_timeout - 0.05]
    late = [c for c in closed if c.closed_at > header_timeout + 3.0]
    got408 = sum(1 for c in closed if c.status == 408)
    if early:
        errors.append(f"{len(early)} slow connections closed before the header timeout "
                      f"(first after {min(c.closed_at for c in early):.2f} s)")
    if failed_connect:
        errors.append(f"{len(failed_connect)} connects failed: {failed_connect[0].status}")
    if not srv.alive():
        errors.append(f"server died (exit {srv.proc.returncode})")
    after = wait_recovered(srv.port, files, 15.0) if srv.alive() else None
    if after is None:
        errors.append("not serving normally within 15 s after the slow clients left")
    summary = (f"{len(closed)}/{n} closed by the server (408: {got408}), "
               f"{len(late)} later than header-timeout+3s; probes {probes['ok']} ok "
               f"{probes['fail']} failed (worst {probes['worst']:.2f} s); "
               f"recovered in {after if after is None else round(after, 2)} s")
    if not blocking:
        if probes["fail"]:
            errors.append(f"{probes['fail']} of {probes['ok'] + probes['fail']} probe requests "
                          f"failed while the slow clients were connected")
        if len(closed) != n or late:
            errors.append(f"{n - len(closed)} slow connections still open and {len(late)} closed "
                          f"after header-timeout+3s")
        if got408 == 0:
            errors.append("no slow connection got a 408")
    res.records.append(f"{label}: slowloris {n}: {summary}")
    res.check(f"{label}: slowloris", errors, summary)


def test_fd_exhaustion(res, label, args, model, flags, root, files):
    name = f"{label}: fd exhaustion"
    srv = Server(args, model, flags, root, ["--header-timeout", "10", "--keepalive-timeout", "10",
                                            "--grace", "2"], nofile=FD_LIMIT)
    if not srv.start():
        res.fail(name, [f"did not start under ulimit -n {FD_LIMIT}: {srv.why}"])
        return
    errors, socks = [], []
    try:
        for _ in range(FD_CLIENTS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", srv.port))
            socks.append(s)
        res.add("fd exhaustion clients", FD_CLIENTS, fault=True)
        time.sleep(1.0)
        fds = srv.fd_count()
        c0, t0 = srv.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        cpu = (srv.cpu_seconds() - c0) / (time.monotonic() - t0)
        if not srv.alive():
            errors.append(f"server died under exhaustion (exit {srv.proc.returncode})")
        if cpu > 0.25:
            errors.append(f"server used {cpu:.0%} of a CPU while out of descriptors (busy loop?)")
        for s in socks:
            s.close()
        socks = []
        after = wait_recovered(srv.port, files, 15.0) if srv.alive() else None
        if after is None:
            errors.append("not serving normally within 15 s after the clients left")
        else:
            for i in range(20):
                e = probe(srv.port, files)
                if e:
                    errors.append(f"request {i} after recovery: {e}")
                    break
        rc = srv.stop(5.0)
        if rc != 0:
            errors.append(f"exit status {rc} after SIGTERM")
        errors += srv.sanitizer_errors()
        res.check(name, errors, f"{FD_CLIENTS} clients, ulimit -n {FD_LIMIT}, {fds} fds open, "
                                f"CPU {cpu:.1%} while exhausted, recovered in "
                                f"{after if after is None else round(after, 2)} s")
    finally:
        for s in socks:
            s.close()
        srv.kill()


def stream_client(port, body_len, out, stop_at):
    """Keep-alive GETs of /big.bin, read at about 16 MB/s, so a response
    takes a second and most of it is still in the server, not in socket
    buffers, half-way. Records each response as [started, body bytes
    received, complete]."""
    try:
        s = connect(port, timeout=15.0, rcvbuf=65536)
    except OSError:
        return
    try:
        while time.monotonic() < stop_at:
            rec = [False, 0, False]
            try:
                s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                return
            out.append(rec)
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = s.recv(65536)
                if not b:
                    return
                rec[0] = True
                buf += b
            head, _, body = buf.partition(b"\r\n\r\n")
            rec[1] = len(body)
            while rec[1] < body_len:
                b = s.recv(65536)
                if not b:
                    return
                rec[1] += len(b)
                time.sleep(0.004)
            rec[2] = rec[1] == body_len
            if b"connection: close" in head.lower():
                return
    except OSError:
        return
    finally:
        s.close()


def test_sigterm(res, label, args, model, flags, root, files):
    name = f"{label}: SIGTERM under load"
    srv = Server(args, model, flags, root, ["--grace", "15"])
    if not srv.start():
        res.fail(name, [f"did not start: {srv.why}"])
        return
    errors = []
    try:
        outs = [[] for _ in range(SIGTERM_CLIENTS)]
        stop_at = time.monotonic() + 20
        ths = [threading.Thread(target=stream_client, args=(srv.port, BIG, o, stop_at),
                                daemon=True) for o in outs]
        for t in ths:
            t.start()
        # In flight: started, at least 1 MiB in, and more left than the socket
        # buffers can hold (tcp_wmem max 4 MiB + our 64 KiB), so the server
        # itself must keep sending after the signal. Signal as soon as every
        # client that is being served (a pool serves only some) is in flight,
        # or at least one after 3 s.
        def inflight_now():
            return sum(1 for o in outs if o and o[-1][0] and not o[-1][2] and
                       o[-1][1] > (1 << 20) and BIG - o[-1][1] > (4 << 20) + 65536)

        t_wait = time.monotonic()
        while time.monotonic() - t_wait < 10:
            served = sum(1 for o in outs if o and o[0][0])
            n = inflight_now()
            if served and (n == served or (n and time.monotonic() - t_wait > 3)):
                break
            time.sleep(0.01)
        inflight = inflight_now()
        t_sig = time.monotonic()
        os.kill(srv.proc.pid, signal.SIGTERM)
        res.add("SIGTERM under load", 1, fault=True)
        try:
            rc = srv.proc.wait(20)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t_sig
        for t in ths:
            t.join(10)
        recs = [r for o in outs for r in o]
        started = [r for r in recs if r[0]]
        truncated = [r for r in started if not r[2]]
        if rc != 0:
            errors.append(f"exit status {rc} (None: still running 20 s after SIGTERM)")
        if inflight == 0:
            errors.append("no response was in flight at SIGTERM: the test proved nothing")
        if truncated:
            errors.append(f"{len(truncated)} of {len(started)} started responses truncated "
                          f"(bytes: {[r[1] for r in truncated][:5]} of {BIG})")
        errors += srv.sanitizer_errors()
        res.check(name, errors, f"{inflight} responses in flight at SIGTERM, {len(started)} "
                                f"started, all complete, exit 0 after {took:.2f} s")
    finally:
        srv.kill()


# --- driver ---------------------------------------------------------------------------------------


def variants(args):
    out = subprocess.run([args.bin, "models", "--variants"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    vs = []
    for line in out.splitlines():
        words = shlex.split(line)
        if not words:
            continue
        if args.model and words[0] not in args.model:
            continue
        if args.quick and len(words) > 1:
            continue
        vs.append((words[0], words[1:]))
    return vs


def run_variant(res, args, model, flags, root, files):
    label = " ".join([model] + flags)
    srv = Server(args, model, flags, root, ["--header-timeout", str(args.header_timeout),
                                            "--keepalive-timeout", "2", "--grace", "3"])
    if not srv.start():
        if srv.unsupported():
            res.skip(f"{label}: all", srv.why)
        else:
            res.fail(f"{label}: start", [srv.why])
        return
    try:
        for test in (test_half_close, test_reset, test_traversal, test_smuggling, test_oversize,
                     test_ranges):
            try:
                test(res, label, srv, files)
            except Exception as e:  # a test that raises has failed, the rest still run
                res.fail(f"{label}: {test.__name__[5:]}", [f"{type(e).__name__}: {e}"])
            if not srv.alive():
                break
        if srv.alive():
            try:
                test_slowloris(res, label, model, srv, files, args.slowloris, args.header_timeout)
            except Exception as e:
                res.fail(f"{label}: slowloris", [f"{type(e).__name__}: {e}"])
        rc = srv.stop(10.0)
        errors = [] if rc == 0 else [f"exit status {rc} after SIGTERM (None: killed)"]
        errors += srv.sanitizer_errors()
        res.check(f"{label}: clean exit", errors, "exit 0, no sanitizer report")
    finally:
        srv.kill()
    for test in (test_fd_exhaustion, test_sigterm):
        try:
            test(res, label, args, model, flags, root, files)
        except Exception as e:
            res.fail(f"{label}: {test.__name__[5:]}", [f"{type(e).__name__}: {e}"])


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True, help="the c10k binary")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--quick", action="store_true", help="only the default variant of each model")
    p.add_argument("--slowloris", type=int, default=1000, help="slow connections (1000)")
    p.add_argument("--header-timeout", type=float, default=2.0, help="server header timeout (2)")
    p.add_argument("--json", help="also write the summary to this file")
    p.add_argument("--logs", help="keep each server's stderr in this directory")
    args = p.parse_args(argv)
    args.bin = os.path.abspath(args.bin)

    need = args.slowloris + FD_CLIENTS + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            print(f"{NAME}: need {need} descriptors, RLIMIT_NOFILE is {soft}/{hard}")
            print(f"{NAME}: 0 passed, 1 failed, 0 skipped")
            return 1

    # SIGTERM (a CI timeout) unwinds like an exception, so every server is
    # still killed and the fixture removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{NAME}: terminated"))
    res = Results()
    t0 = time.monotonic()
    top, root, files = make_root()
    never, slow, vs = [], [], []
    try:
        vs = variants(args)
        if not vs:
            res.fail("variants", [f"no model matches {args.model}"])
        # The never-read clients first, one server per variant, all at once:
        # the drop takes a 30 s send timeout, waited for in parallel.
        for model, flags in vs:
            label = " ".join([model] + flags)
            srv = Server(args, model, flags, root, ["--grace", "2"])
            if srv.start():
                never.append((label, srv, NeverRead(srv, files, label)))
                res.add("never-read clients", 1, fault=True)
                slow.append((label, SlowRead(srv, files)))
                slow[-1][1].start()
                res.add("slow-read clients", 1, fault=True)
            elif srv.unsupported():
                res.skip(f"{label}: never-read", srv.why)
            else:
                res.fail(f"{label}: never-read", [f"did not start: {srv.why}"])
        for label, srv, nr in never:
            nr.probe_during()
        done = threading.Event()

        def watch():  # when each server lets go, to the half second
            while not done.wait(0.5):
                for _, _, nr in never:
                    nr.poll()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for model, flags in vs:
            print(f"== {' '.join([model] + flags)}", flush=True)
            run_variant(res, args, model, flags, root, files)
        print("== never-read (started first, checked last)", flush=True)
        while not all(nr.poll() for _, _, nr in never) and \
                time.monotonic() - t0 < NEVER_READ_DEADLINE + 5:
            time.sleep(0.5)
        done.set()
        watcher.join()
        for label, sr in slow:
            sr.join(SLOW_READ_S + 60)
            res.check(f"{label}: slow-read", sr.errors or
                      (["still reading after the deadline"] if sr.is_alive() else []),
                      f"{sr.got} bytes at {SLOW_READ_RATE // 1024} KB/s for "
                      f"{SLOW_READ_S:.0f} s, then at full speed: complete")
        for label, srv, nr in never:
            dropped = nr.finish()
            rc = srv.stop(5.0)
            if rc != 0:
                nr.errors.append(f"exit status {rc} after SIGTERM")
            nr.errors += srv.sanitizer_errors()
            res.records.append(f"{label}: never-read client dropped after "
                               f"{dropped if dropped is None else round(dropped, 1)} s")
            res.check(f"{label}: never-read", nr.errors,
                      f"others served meanwhile; dropped after "
                      f"{dropped if dropped is None else round(dropped, 1)} s")
    finally:
        for _, srv, nr in never:
            srv.kill()
        shutil.rmtree(top, ignore_errors=True)

    for r in res.records:
        print(f"record: {r}")
    summary = dict(res.counts)
    summary.update({"failures": res.failed, "passed": res.passed, "skipped": res.skipped,
                    "variants": len(vs), "families": res.families,
                    "seconds": round(time.monotonic() - t0, 1), "records": res.records})
    line = json.dumps(summary, sort_keys=True)
    print(f"robustness-summary: {line}")
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(f"{NAME}: {res.passed} passed, {res.failed} failed, {res.skipped} skipped")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
