#!/usr/bin/python3
"""many_conns.py - hold thousands of keep-alive connections open on one server.

Black-box, over real sockets, for any model:

    many_conns.py --bin build/c10k --model epoll [--variant-flags "--level-triggered"]
                  [--all-variants] [--conns 2000] [--hold 1.0] [--timeout 120]

It starts `c10k serve MODEL --port 0` on a temporary root, then, from one
Python thread with non-blocking sockets and a selector (so the client costs
little next to the server):

  1. connect   opens --conns connections (at most --burst connects at once, so
               the listen backlog never overflows) and keeps all of them;
  2. round 1   sends one GET on every connection and checks every response:
               status, Content-Length, the body byte for byte, keep-alive;
  3. hold      keeps them all idle for --hold seconds and checks that none was
               closed and none received stray bytes;
  4. round 2   a second request on every connection, checked the same way;
  5. stop      SIGTERM; the server must exit with status 0 within --grace.

With --all-variants the five steps run once per flag set that
`c10k models --variants` lists for the model. Each step is one test; any error
in a step fails it, and the first few are printed. The server's resident memory per idle connection is printed for
information (it is not a pass/fail check).

The test raises its own RLIMIT_NOFILE (resource.setrlimit) and skips, saying
why, when the hard limit is too low. The server is expected to raise its own.
Only the Python 3 standard library is used. The closing line is
`many_conns: N passed, N failed, N skipped`; the exit status is 1 on failure.
"""

import argparse
import errno
import os
import resource
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from c10ktest import Server, Unsupported  # noqa: E402

NAME = "many_conns"
MAX_ERRORS_SHOWN = 5

# Files served, requested round robin: a tiny one, one the size of the
# benchmark file, and one larger than a socket buffer's first write.
FILES = {"tiny.txt": 13, "one-k.bin": 1024, "big.bin": 70000}


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, name, errors):
        self.failed += 1
        print(f"FAIL {name}: {len(errors)} error(s)", flush=True)
        for e in errors[:MAX_ERRORS_SHOWN]:
            print(f"     {e}", flush=True)
        if len(errors) > MAX_ERRORS_SHOWN:
            print(f"     ... and {len(errors) - MAX_ERRORS_SHOWN} more", flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def check(self, name, errors, detail=""):
        if errors:
            self.fail(name, errors)
        else:
            self.ok(name, detail)


def parse_args(argv):
    # --variant-flags takes one value that itself starts with "--": take the
    # next word as is, before argparse sees it.
    flags, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--variant-flags" and i + 1 < len(argv):
            flags += shlex.split(argv[i + 1])
            i += 2
            continue
        if a.startswith("--variant-flags="):
            flags += shlex.split(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True, help="the c10k binary")
    p.add_argument("--model", required=True, help="the model to serve with")
    p.add_argument("--variant-flags", default="", help="model flags, as one string")
    p.add_argument("--all-variants", action="store_true",
                   help="run every flag set `c10k models --variants` lists for the model")
    p.add_argument("--conns", type=int, default=2000, help="connections to hold (2000)")
    p.add_argument("--hold", type=float, default=1.0, help="seconds to hold them idle (1)")
    p.add_argument("--burst", type=int, default=256, help="connects in progress at once (256)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per step (120)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds for the stop (10)")
    args = p.parse_args(rest)
    args.flags = flags
    return args


def raise_nofile(need):
    """Raise our soft limit; returns None, or why it cannot be done."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return None
    if hard != resource.RLIM_INFINITY and hard < need:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return None
        except (ValueError, OSError):
            return f"RLIMIT_NOFILE hard limit is {hard}, {need} descriptors are needed"
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def make_root():
    root = tempfile.mkdtemp(prefix="c10k-many-")
    bodies = {}
    for name, size in FILES.items():
        data = bytes((i * 7 + len(name)) % 251 for i in range(size))
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        bodies[name] = data
    return root, bodies


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def start_server(args, flags, root, timeout=15.0):
    """Start the server; the helper reads the port from its start line and
    drains its stdout and stderr for as long as it runs."""
    cmd = [args.bin, "serve", args.model, "--port", "0", "--root", root,
           "--keepalive-timeout", "300", "--header-timeout", "300",
           "--grace", str(args.grace)] + flags
    print("server: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    try:
        return Server(cmd, timeout=timeout)
    except Unsupported as e:
        raise RuntimeError(f"no start line; stderr: {str(e)[-500:]}") from None


class Conn:
    """One client connection and where its current exchange stands."""

    __slots__ = ("i", "sock", "out", "inbuf", "want", "done", "closed")

    def __init__(self, i, sock):
        self.i, self.sock = i, sock
        self.out, self.inbuf = b"", bytearray()
        self.want = None   # (name, expected body) of the request in flight
        self.done = False
        self.closed = False


def connect_all(port, n, burst, timeout):
    """Open n connections. Returns (conns, errors)."""
    sel = selectors.DefaultSelector()
    conns, errors, pending = [], [], 0
    deadline = time.monotonic() + timeout
    next_i = 0
    while (next_i < n or pending) and time.monotonic() < deadline:
        while next_i < n and pending < burst:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                errors.append(f"conn {next_i}: connect: {os.strerror(rc)}")
                s.close()
            else:
                sel.register(s, selectors.EVENT_WRITE, next_i)
                pending += 1
            next_i += 1
        for key, _ in sel.select(max(0.0, min(1.0, deadline - time.monotonic()))):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                errors.append(f"conn {key.data}: connect: {os.strerror(err)}")
                s.close()
            else:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns.append(Conn(key.data, s))
    if next_i < n or pending:
        errors.append(f"timed out with {n - len(conns) - len(errors)} connects unfinished")
        for key in list(sel.get_map().values()):
            key.fileobj.close()
    sel.close()
    return conns, errors


def parse_response(c):
    """Check a complete response in c.inbuf. Returns (done, error)."""
    end = c.inbuf.find(b"\r\n\r\n")
    if end < 0:
        return False, None
    head = bytes(c.inbuf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    name, body = c.want
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        return True, f"conn {c.i}: /{name}: status line {lines[0]!r}"
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        return True, f"conn {c.i}: /{name}: no Content-Length"
    if len(c.inbuf) < end + 4 + length:
        return False, None
    got = bytes(c.inbuf[end + 4:end + 4 + length])
    extra = len(c.inbuf) - (end + 4 + length)
    if length != len(body) or got != body:
        return True, f"conn {c.i}: /{name}: body differs ({length} bytes, want {len(body)})"
    if extra:
        return True, f"conn {c.i}: /{name}: {extra} bytes after the body"
    if "close" in headers.get("connection", "").lower():
        return True, f"conn {c.i}: /{name}: Connection: close on a keep-alive request"
    return True, None


def exchange(conns, bodies, rnd, timeout):
    """Send one request on every open connection and check every response."""
    names = sorted(bodies)
    sel = selectors.DefaultSelector()
    errors, live = [], 0
    for c in conns:
        c.done = False
        if c.closed:
            errors.append(f"conn {c.i}: already closed, cannot send request {rnd + 1}")
            continue
        name = names[(c.i + rnd) % len(names)]
        c.want = (name, bodies[name])
        c.out = f"GET /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: many_conns\r\n\r\n".encode()
        c.inbuf.clear()
        sel.register(c.sock, selectors.EVENT_WRITE, c)
        live += 1
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        for key, ev in sel.select(max(0.0, min(1.0, deadline - time.monotonic()))):
            c = key.data
            err = None
            try:
                if ev & selectors.EVENT_WRITE:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(262144)
                if not data:
                    err = f"conn {c.i}: closed by the server before the response was complete"
                    c.closed = True
                else:
                    c.inbuf += data
                    finished, err = parse_response(c)
                    if not finished:
                        continue
            except BlockingIOError:
                continue
            except OSError as e:
                err = f"conn {c.i}: {e}"
                c.closed = True
            sel.unregister(c.sock)
            live -= 1
            c.done = err is None
            if err:
                errors.append(err)
    if live:
        errors.append(f"round {rnd + 1}: {live} responses still missing after {timeout:g} s")
    sel.close()
    return errors


def hold(conns, seconds):
    """Keep every connection idle; none may close or receive anything."""
    sel = selectors.DefaultSelector()
    for c in conns:
        if not c.closed:
            sel.register(c.sock, selectors.EVENT_READ, c)
    errors = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            c = key.data
            try:
                data = c.sock.recv(4096)
            except OSError as e:
                data, errors = b"", errors + [f"conn {c.i}: {e}"]
            if data:
                errors.append(f"conn {c.i}: {len(data)} unexpected bytes while idle")
            else:
                errors.append(f"conn {c.i}: closed by the server while idle")
                c.closed = True
            sel.unregister(c.sock)
    sel.close()
    return errors


def stop_server(srv, grace):
    """SIGTERM; the server must exit 0 within grace (+ a margin)."""
    if not srv.alive():
        return [f"the server had already exited with status {srv.proc.returncode}"]
    rc = srv.stop(timeout=grace + 5)
    if rc is None:
        return [f"the server did not exit within {grace + 5:g} s of SIGTERM"]
    return [] if rc == 0 else [f"the server exited with status {rc}"]


def variant_flag_sets(args):
    """The flag sets to run: --variant-flags, or with --all-variants every line
    `c10k models --variants` prints for the model (--variant-flags added)."""
    if not args.all_variants:
        return [args.flags]
    out = subprocess.run([args.bin, "models", "--variants"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    sets = [line.split()[1:] + args.flags for line in out.splitlines()
            if line.split() and line.split()[0] == args.model]
    return sets or [args.flags]


def run_variant(args, flags, res):
    """The five steps against one server started with flags."""
    label = " ".join([args.model] + flags)
    root, bodies = make_root()
    srv, conns = None, []
    try:
        srv = start_server(args, flags, root)
        port = srv.port
        rss0 = rss_kib(srv.pid)
        t0 = time.monotonic()
        conns, errors = connect_all(port, args.conns, args.burst, args.timeout)
        res.check(f"{label}: connect {args.conns}", errors,
                  f"{len(conns)} open in {time.monotonic() - t0:.2f} s")
        for rnd, step in ((0, "round 1"), (None, "hold"), (1, "round 2")):
            if rnd is None:
                errors = hold(conns, args.hold)
                rss = rss_kib(srv.pid)
                detail = f"{sum(not c.closed for c in conns)} idle for {args.hold:g} s"
                if rss is not None and rss0 is not None and conns:
                    detail += (f"; server RSS {rss0} -> {rss} KiB, "
                               f"{(rss - rss0) * 1024 / len(conns):.0f} B per connection")
                res.check(f"{label}: {step}", errors, detail)
                continue
            t0 = time.monotonic()
            errors = exchange(conns, bodies, rnd, args.timeout)
            ok = sum(c.done for c in conns)
            res.check(f"{label}: {step}", errors,
                      f"{ok} responses checked in {time.monotonic() - t0:.2f} s")
        for c in conns:
            c.sock.close()
        conns = []
        errors = stop_server(srv, args.grace)
        res.check(f"{label}: stop", errors, "exit status 0")
    except RuntimeError as e:
        res.fail(f"{label}: start", [str(e)])
    finally:
        for c in conns:
            c.sock.close()
        if srv:
            srv.kill()
            err = srv.stderr()
            if err:
                print("server stderr (last lines):\n  " + "\n  ".join(err.splitlines()[-10:]))
        shutil.rmtree(root, ignore_errors=True)


def main(argv):
    args = parse_args(argv)
    res = Results()
    if not os.access(args.bin, os.X_OK):
        print(f"{NAME}: {args.bin} is not an executable", file=sys.stderr)
        return 2
    why = raise_nofile(args.conns + 64)
    for flags in variant_flag_sets(args):
        if why:
            for step in ("connect", "round 1", "hold", "round 2", "stop"):
                res.skip(" ".join([args.model] + flags) + f": {step}", why)
            continue
        run_variant(args, flags, res)
    return finish(res)


def finish(res):
    print(f"{NAME}: {res.passed} passed, {res.failed} failed, {res.skipped} skipped", flush=True)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
