#!/usr/bin/env python3
"""Prefork's own tests: the master's management of its worker processes.

Black-box: `c10k serve prefork` as a child process, workers found through
/proc (the master's children), signals sent as an operator would.

Usage: test_prefork.py --bin build/c10k
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
import c10ktest  # noqa: E402  (the one server helper and raw client)
from c10ktest import Reader, connect, exchange, is_running, run_to_exit, serve_argv  # noqa: E402
from suite import make_fixture  # noqa: E402  (the conformance fixture)


class Server(c10ktest.Server):
    """c10k serve prefork with exactly the flags a test gives.

    The suites' default of --workers 2 would turn every dynamic-pool test
    into a fixed pool, so no worker count is added here."""

    def __init__(self, binary, root, flags):
        super().__init__(serve_argv(binary, "prefork", root, extra=flags, workers=None))

    def stop(self, timeout=15):
        """SIGTERM; returns the exit status. self.left gets the workers still
        alive after the master exited, which are then killed so that no
        failed test leaves processes behind."""
        kids = workers(self)
        status = super().stop(timeout)
        time.sleep(0.1)
        self.left = [p for p in kids if is_running(p)]
        self.kill()
        return status


def workers(srv):
    """Live (not zombie) worker pids: the master's children."""
    return [p for p in srv.descendants() if is_running(p)]


def wait_for(cond, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def ok_request(port):
    try:
        r = exchange(port, b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return r.status == 200 and r.body == b"hello, world\n"
    except (OSError, EOFError):
        return False


class Load:
    """Clients in threads doing one request per connection until stopped."""

    def __init__(self, port, nthreads=4):
        self.port, self.stop, self.ok, self.failed = port, False, 0, []
        self.threads = [threading.Thread(target=self.loop) for _ in range(nthreads)]
        for t in self.threads:
            t.start()

    def loop(self):
        while not self.stop:
            if ok_request(self.port):
                self.ok += 1
            else:
                self.failed.append(time.time())

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join(10)


def test_kill_worker_refills(b, root):
    for flags in (["--workers", "4"], ["--start-workers", "4", "--min-spare", "4"]):
        kill_one_worker(b, root, flags)


def kill_one_worker(b, root, flags):
    srv = Server(b, root, flags)
    try:
        assert wait_for(lambda: len(workers(srv)) >= 4, 5), "pool never reached 4"
        load = Load(srv.port)
        time.sleep(0.3)
        victim = workers(srv)[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.0)
        load.finish()
        assert victim not in workers(srv), "killed worker still listed"
        assert wait_for(lambda: len(workers(srv)) >= 4, 5), \
            "pool did not refill: %d workers" % len(workers(srv))
        assert all(ok_request(srv.port) for _ in range(20)), "new connections fail after kill -9"
        # Only the connection the victim held may fail, never the service.
        assert len(load.failed) <= 1, "%d requests failed" % len(load.failed)
        assert load.ok > 50, "load made only %d requests" % load.ok
    finally:
        assert srv.stop() == 0, "exit status"


def test_sighup_under_load(b, root):
    for flags in (["--start-workers", "4"], ["--workers", "4"]):
        sighup_under_load(b, root, flags)


def sighup_under_load(b, root, flags):
    srv = Server(b, root, flags)
    try:
        assert wait_for(lambda: len(workers(srv)) >= 4, 5)
        before = set(workers(srv))
        load = Load(srv.port)
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGHUP)
        replaced = wait_for(lambda: not (before & set(workers(srv))), 10)
        time.sleep(0.5)
        load.finish()
        assert replaced, "old workers still running: %s" % (before & set(workers(srv)))
        assert not load.failed, "%s: %d requests failed during SIGHUP" % (flags, len(load.failed))
        assert wait_for(lambda: len(workers(srv)) >= 4, 5), "%s: pool not refilled" % flags
        assert load.ok > 50, "load made only %d requests" % load.ok
    finally:
        assert srv.stop() == 0, "exit status"


def test_pool_grows_and_shrinks(b, root):
    srv = Server(b, root, ["--start-workers", "2", "--min-spare", "2",
                                          "--max-spare", "4", "--keepalive-timeout", "30"])
    socks = []
    try:
        assert wait_for(lambda: len(workers(srv)) == 2, 5), "start-workers 2"
        # 100 clients that each hold a keep-alive connection: each holds a worker.
        for i in range(100):
            s = connect(srv.port, timeout=30)
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            socks.append(s)
        served = 0
        end = time.time() + 40
        pending = list(socks)
        while pending and time.time() < end:
            s = pending.pop(0)
            s.settimeout(0.05)
            try:
                Reader(s).read_response()
                served += 1
            except (socket.timeout, TimeoutError):
                pending.append(s)
        peak = len(workers(srv))
        assert served == 100, "only %d of 100 clients served" % served
        assert peak >= 100, "pool grew only to %d for 100 connections" % peak
        for s in socks:
            s.close()
        socks = []
        # A quarter of the surplus retires per 250 ms tick: a few seconds.
        t0 = time.time()
        assert wait_for(lambda: len(workers(srv)) <= 4, 45, 0.5), \
            "pool did not shrink to max-spare: %d" % len(workers(srv))
        print("     pool: 2 -> %d workers for 100 connections, back to %d in %.1f s" % (
            peak, len(workers(srv)), time.time() - t0))
        assert len(workers(srv)) >= 2, "shrank below min-spare"
    finally:
        for s in socks:
            s.close()
        assert srv.stop() == 0, "exit status"


def test_sigterm_leaves_nothing(b, root):
    srv = Server(b, root, ["--start-workers", "6"])
    assert wait_for(lambda: len(workers(srv)) >= 6, 5)
    load = Load(srv.port, 2)
    time.sleep(0.3)
    try:
        status = srv.stop()
    finally:
        load.finish()
    assert status == 0, "exit status %s" % status
    assert not srv.left, "processes left behind: %s" % srv.left
    assert load.ok > 0, "no request succeeded before the stop"


def test_fixed_pool_and_recycling(b, root):
    srv = Server(b, root, ["--workers", "3", "--max-requests-per-child", "5"])
    try:
        assert wait_for(lambda: len(workers(srv)) == 3, 5), "fixed pool of 3"
        first = set(workers(srv))
        for _ in range(40):
            assert ok_request(srv.port)
        assert wait_for(lambda: len(workers(srv)) == 3, 5), "fixed pool stays at 3"
        assert set(workers(srv)) != first, "workers were not recycled after 5 connections"
    finally:
        assert srv.stop() == 0, "exit status"


def test_workers_die_with_master(b, root):
    """SIGKILL, or a signal whose default action kills the master (SIGUSR1):
    every worker goes with it, and a new server on the same port then serves
    every request itself (an orphaned worker would hold the port, or share
    it and answer from the old root)."""
    for sig in (signal.SIGKILL, signal.SIGUSR1):
        master_dies(b, root, sig)


def master_dies(b, root, sig):
    name = signal.Signals(sig).name
    srv = Server(b, root, ["--start-workers", "4"])
    other = tempfile.mkdtemp(prefix="c10k-prefork-new-")
    try:
        assert wait_for(lambda: len(workers(srv)) >= 4, 5), "pool never reached 4"
        kids = workers(srv)
        assert ok_request(srv.port), "serves before the %s" % name
        os.kill(srv.pid, sig)
        srv.proc.wait(5)
        gone = wait_for(lambda: not any(is_running(p) for p in kids), 3)
        assert gone, "%s of the master: workers %s still alive" % (
            name, [p for p in kids if is_running(p)])
        with open(os.path.join(other, "hello.txt"), "wb") as f:
            f.write(b"new server\n")
        new = c10ktest.Server([b, "serve", "prefork", "--workers", "2", "--port", str(srv.port),
                           "--root", other])
        try:
            bodies = [c10ktest.get(new.port, "/hello.txt").body for _ in range(40)]
            assert bodies == [b"new server\n"] * 40, "after %s: %d of 40 from the old root" % (
                name, 40 - bodies.count(b"new server\n"))
        finally:
            new.stop_clean()
    finally:
        srv.kill()
        subprocess.run(["rm", "-rf", other], check=False)


def test_spare_bounds_checked(b, root):
    """--max-spare below --min-spare is refused in either order (exit 2, a
    one-line message naming both); one given alone moves the other."""
    for flags in (["--min-spare", "10", "--max-spare", "5"],
                  ["--max-spare", "5", "--min-spare", "10"]):
        status, err = run_to_exit([b, "serve", "prefork", "--port", "0", "--root", root] + flags)
        assert status == 2, "%s: exit %s, want 2" % (flags, status)
        assert "\n" not in err and "--min-spare" in err and "--max-spare" in err, err
    srv = Server(b, root, ["--min-spare", "20"])
    try:
        assert "spare=20-20" in srv.line, srv.line
    finally:
        assert srv.stop() == 0, "exit status"


TESTS = [test_kill_worker_refills, test_sighup_under_load, test_pool_grows_and_shrinks,
         test_sigterm_leaves_nothing, test_fixed_pool_and_recycling, test_workers_die_with_master,
         test_spare_bounds_checked]


TIMEOUT_S = 120  # per scenario


class ScenarioTimeout(Exception):
    pass


def on_alarm(sig, frame):
    raise ScenarioTimeout("scenario took more than %d s" % TIMEOUT_S)


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("-k")
    args = ap.parse_args()
    out = os.popen("%s models" % args.bin).read().split()
    if "prefork" not in out:
        print("SKIP prefork: not built into %s" % args.bin)
        print("prefork: 0 passed, 0 failed, 1 skipped")
        return 0
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="c10k-prefork-") as tmp:
        root, _ = make_fixture(tmp)
        for t in TESTS:
            if args.k and args.k not in t.__name__:
                continue
            t0 = time.time()
            signal.alarm(TIMEOUT_S)
            try:
                t(args.bin, root)
                passed += 1
                print("ok   %s (%.1fs)" % (t.__name__, time.time() - t0), flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure
                failed += 1
                print("FAIL %s: %s: %s" % (t.__name__, type(e).__name__, e), flush=True)
            finally:
                signal.alarm(0)
    print("prefork: %d passed, %d failed, 0 skipped" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
