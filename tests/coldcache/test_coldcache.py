#!/usr/bin/python3
"""Black-box tests of what the models do when the disk is slow (issue 18).

  helper hand-off  epoll --helpers: a file range that is not in memory is
                   sent only after a helper thread has read it in and
                   reported back (strace shows the order), and a range in
                   memory goes at once, without a helper
  blocking         a request for a file in memory, sent while another
                   client waits for a cold file on a throttled disk: the
                   plain event loops (epoll, libevent, libuv, coro) answer it
                   only after the disk, the answers (epoll --helpers, libuv
                   --fs-pool, io_uring, a thread per connection) at once.
                   Needs root and a blkio (v1) or io (v2) cgroup; skipped
                   with the reason otherwise
  stop             SIGTERM while helpers read cold files: every response is
                   finished and the server exits 0 (root and cgroups)
  stall counter    an event loop that cannot write its access log (a FIFO
                   nobody reads for 0.5 s) stalls; its stats file counts the
                   stall and at least 0.375 s more of stalls than the same
                   requests unheld. Needs --stats-file
  cold bytes       every model and variant serves files that are not in
                   memory byte for byte, one at a time and pipelined (io_uring
                   once sent a slot before the read that fills it completed)
  eviction         bench/harness/pagecache.py: evict() empties a file's pages
                   and resident() (mincore) sees it, pages read back in are
                   seen again, and a file that cannot be evicted (tmpfs) is
                   reported as resident, not as evicted

Files that must be evicted live under the build directory (a disk
filesystem; /tmp may be tmpfs, where nothing can be evicted).

    /usr/bin/python3 tests/coldcache/test_coldcache.py --bin build/c10k [-k NAME]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import c10ktest  # noqa: E402
from harness import pagecache  # noqa: E402
from harness.cgroups import Cgroups  # noqa: E402

MiB = 1 << 20


class Skip(Exception):
    pass


def write_file(path, size, seed):
    data = c10ktest.det_bytes(size, seed)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # clean pages: the only ones that can be evicted
    return data


def evict_until_cold(paths, tries=20):
    """Evict the files until mincore finds none of their pages; a page can
    stay a while longer (still referenced, or in a per-CPU batch not yet on
    the LRU). Returns the files that still have pages in memory."""
    left = list(paths)
    for _ in range(tries):
        pagecache.evict(left)
        left = [p for p in left if pagecache.resident_pages(p)[0]]
        if not left:
            break
        os.sync()
        time.sleep(0.1)
    return left


def make_cold(*paths):
    """evict_until_cold(), or Skip: the test needs every file cold (tmpfs
    never lets go of a page)."""
    left = evict_until_cold(paths)
    if left:
        raise Skip("%s: still in memory after POSIX_FADV_DONTNEED (tmpfs, or pages the "
                   "kernel still holds)" % ", ".join(left))


def serve(bin_path, root, model, *flags, extra=(), wrap=None, env=None):
    argv = [bin_path, "serve", model, "--port", "0", "--root", root, "--workers", "1",
            *flags, *extra]
    return c10ktest.Server(wrap(argv) if wrap else argv, env=env)


def stop(srv):
    """SIGTERM; the server must exit 0 with no sanitizer report."""
    status = srv.stop()
    report = srv.sanitizer_report()
    srv.kill()
    assert not report, "\n".join(report)
    c10ktest.eq(status, 0, "exit status after SIGTERM")


def http_get(port, path, timeout=30):
    s = c10ktest.connect(port, timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        return c10ktest.Reader(s).read_response()
    finally:
        s.close()


# --- the hand-off, seen by strace -----------------------------------------------------

SYSCALL = re.compile(r"^(\d+)\s+(?:\d+:\d+:\d+\.\d+\s+)?(\w+)\((\d+)?")


def parse_strace(text):
    """[(tid, syscall, first argument)] in the order strace saw them end
    ("<... x resumed>" lines count at their end)."""
    out, pending = [], {}
    for line in text.splitlines():
        m = re.match(r"^(\d+)\s+(?:[\d:.]+\s+)?<\.\.\. (\w+) resumed>", line)
        if m:
            tid, name = int(m.group(1)), m.group(2)
            out.append((tid, name, pending.pop((tid, name), None)))
            continue
        m = SYSCALL.match(line)
        if not m:
            continue
        tid, name, arg = int(m.group(1)), m.group(2), m.group(3)
        if "<unfinished ...>" in line:
            pending[(tid, name)] = int(arg) if arg else None
        else:
            out.append((tid, name, int(arg) if arg else None))
    return out


def strace_serve(ctx, root, flags, paths):
    """Serve under strace, GET each path in turn; (responses, events)."""
    if not shutil.which("strace"):
        raise Skip("strace is not installed (apt-get install strace)")
    log = os.path.join(ctx.tmp, "strace-%d.txt" % len(os.listdir(ctx.tmp)))
    argv = ["strace", "-f", "-qq", "-o", log, "-e",
            "trace=pread64,readahead,sendfile,read,write,sendmsg,sendto"]
    # LeakSanitizer cannot run under ptrace (it exits 1 saying so); the
    # other tests run the same server without strace, leaks checked
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    srv = serve(ctx.bin, root, "epoll", *flags, wrap=lambda a: argv + a, env=env)
    try:
        got = [http_get(srv.port, p) for p in paths]
    finally:
        # SIGTERM to c10k itself: strace would only detach from it (strace
        # then exits with the server's status)
        for pid in srv.descendants():
            os.kill(pid, signal.SIGTERM)
        stop(srv)
    with open(log) as f:
        return got, parse_strace(f.read())


def served_by_threads(ev):
    """The events of the server's threads: the main thread (the first in
    the log) loads libraries and the MIME table (with pread64 and read) and
    then only waits for the stop."""
    main = ev[0][0] if ev else None
    return [e for e in ev if e[0] != main]


def test_helper_hands_off_a_cold_range(ctx):
    root = os.path.join(ctx.tmp, "handoff")
    os.makedirs(root)
    big = write_file(os.path.join(root, "big.bin"), MiB, "handoff")
    make_cold(os.path.join(root, "big.bin"))
    (cold, warm), ev = strace_serve(ctx, root, ["--helpers", "1"], ["/big.bin", "/big.bin"])
    c10ktest.eq(cold.status, 200, "cold GET status")
    assert cold.body == big and warm.body == big, "the bodies are the file"
    ev = served_by_threads(ev)
    reads = [i for i, e in enumerate(ev) if e[1] == "pread64"]
    assert reads, "no helper read the file: %s" % ev
    helper = {ev[i][0] for i in reads}
    sends = [i for i, e in enumerate(ev) if e[1] in ("sendto", "sendfile")]
    assert sends, "nothing was sent: %s" % ev
    loop = ev[sends[0]][0]
    assert loop not in helper, "the loop thread (%d) read the file itself" % loop
    report = [i for i, e in enumerate(ev) if e[1] == "write" and e[0] in helper]
    assert report, "the helper never reported (eventfd write)"
    # the cold response: the helper reads all of it, reports, and only then
    # does the loop send a byte (not even the head)
    assert reads[-1] < report[0] < sends[0], \
        "order: last helper read %d, its report %d, first send %d" % (reads[-1], report[0],
                                                                     sends[0])
    # the second response, from memory: sent with no helper read at all
    later = [i for i in sends if i > report[0] and ev[i][1] == "sendto"]
    assert len(later) >= 2, "a head for each response"
    assert not [i for i in reads if i > report[0]], "a range in memory went to a helper"


def test_without_helpers_the_loop_reads_the_disk_itself(ctx):
    root = os.path.join(ctx.tmp, "nohelp")
    os.makedirs(root)
    write_file(os.path.join(root, "big.bin"), MiB, "nohelp")
    make_cold(os.path.join(root, "big.bin"))
    (r,), ev = strace_serve(ctx, root, [], ["/big.bin"])
    c10ktest.eq(r.status, 200)
    ev = served_by_threads(ev)
    assert not [e for e in ev if e[1] in ("pread64", "readahead")], "no helper without --helpers"
    assert [e for e in ev if e[1] == "sendfile"], "the loop sendfiles the cold file itself"
    assert pagecache.resident([os.path.join(root, "big.bin")])[0] > 0, \
        "the loop's sendfile read it in"


# --- cold files, byte for byte ------------------------------------------------------------

# Every model and the variants that change how a body is read.
EVERY_MODEL = [("threaded",), ("prefork",), ("epoll",), ("epoll", "--helpers", "2"),
               ("libevent",), ("libuv",), ("libuv", "--fs-pool"), ("uring",),
               ("uring", "--zc"), ("coro",)]
COLD_SIZES = [100, 4096, 30000, 65536, 1 << 20]  # a uring slot is 32 KiB: under and over


def test_cold_files_served_byte_for_byte(ctx):
    """A file that is not in memory is read by the kernel while the request
    waits (or a helper, a pool thread, an io-wq thread): the response must
    still be the file, whole and exact, one after another and pipelined."""
    root = os.path.join(ctx.tmp, "bytes")
    os.makedirs(root)
    data = {"/f%d.bin" % n: write_file(os.path.join(root, "f%d.bin" % n), n, "bytes%d" % n)
            for n in COLD_SIZES}
    paths = [os.path.join(root, p[1:]) for p in data]
    wrong = []
    for flags in EVERY_MODEL:
        try:
            srv = serve(ctx.bin, root, *flags)
        except c10ktest.Unsupported as e:
            print("    %s: skipped (%s)" % (" ".join(flags), str(e).strip()[-80:]))
            continue
        try:
            warm = evict_until_cold(paths)
            if len(warm) == len(paths):
                raise Skip("%s: nothing can be evicted here (tmpfs?)" % root)
            for p, want in data.items():  # one at a time, each cold (or it says so)
                got = http_get(srv.port, p)
                if got.status != 200 or got.body != want:
                    wrong.append("%s %s: %d, %d bytes%s" % (" ".join(flags), p, got.status,
                                                            len(got.body), ", wrong bytes"
                                                            if len(got.body) == len(want) else ""))
            warm += evict_until_cold(paths)
            s = c10ktest.connect(srv.port, timeout=30)  # all at once, pipelined, cold
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode() for p in data))
            r = c10ktest.Reader(s)
            for p, want in data.items():
                got = r.read_response()
                if got.status != 200 or got.body != want:
                    wrong.append("%s pipelined %s: %d, %d bytes" % (" ".join(flags), p,
                                                                   got.status, len(got.body)))
            s.close()
            if warm:
                print("    %s: %s stayed in memory (served warm, checked all the same)"
                      % (" ".join(flags), ", ".join(sorted({os.path.basename(p) for p in warm}))))
        finally:
            stop(srv)
    assert not wrong, "; ".join(wrong)


# --- who waits for the disk --------------------------------------------------------------

# model flags -> does a request for a file in memory wait behind another
# client's cold file?
BLOCKING = [
    (("epoll",), True),
    (("libevent",), True),
    (("libuv",), True),
    (("coro",), True),  # a coroutine's sendfile blocks its scheduler's thread
    (("epoll", "--helpers", "2"), False),
    (("libuv", "--fs-pool"), False),
    (("uring",), False),
    (("threaded",), False),
]
DISK_IOPS = 2        # a very slow disk: each cold file costs about 500 ms
# Asked for at once by three clients: about 1.5 s of disk. Fewer than
# libuv's 4 pool threads: with as many cold files as pool threads, the
# request for the file in memory queues behind them in the pool too.
COLD_FILES = 3
BLOCKED_MS = 300     # "waited behind the disk"
FREE_MS = 150        # "answered at once" (a busy CI machine included)


def throttled(ctx):
    """The cgroups for the test's server, or Skip with the reason."""
    cg = Cgroups("c10k-test-%d" % os.getpid(), ctx.tmp, None).probe()
    if not cg.can_throttle:
        raise Skip("cannot throttle the disk: %s" % cg.disk_why)
    cg.make()
    if cg.disk is None:
        raise Skip("cannot throttle the disk: %s" % cg.disk_why)
    cg.set_disk_iops(DISK_IOPS)
    return cg


def warm_behind_cold(ctx, cg, root, model_flags, cold):
    """ms until a request for a file in memory was answered, sent 50 ms after
    COLD_FILES clients asked for the cold files (paths under root)."""
    make_cold(*[os.path.join(root, p[1:]) for p in cold])
    srv = serve(ctx.bin, root, *model_flags, wrap=cg.wrap)
    try:
        done = []
        threads = [threading.Thread(target=lambda p=p: done.append(http_get(srv.port, p)))
                   for p in cold]
        for t in threads:
            t.start()
        time.sleep(0.05)
        t0 = time.monotonic()
        r = http_get(srv.port, "/warm.bin")
        waited = (time.monotonic() - t0) * 1000
        for t in threads:
            t.join(60)
        c10ktest.eq(r.status, 200, "warm GET")
        assert len(done) == COLD_FILES and all(x.status == 200 for x in done), "cold GETs"
        return waited
    finally:
        stop(srv)


def test_who_waits_for_the_disk(ctx):
    cg = throttled(ctx)
    root = os.path.join(ctx.tmp, "blocking")
    os.makedirs(root)
    write_file(os.path.join(root, "warm.bin"), 4096, "warm")
    wrong = []
    try:
        for k, (flags, blocks) in enumerate(BLOCKING):
            # Files of its own for each server: after one server, pages of
            # the files it sent can stay unevictable for minutes (Linux
            # 6.18, a blocked loop at DISK_IOPS; seen with libevent and
            # epoll, 48 of 64 pages, through drop_caches too), and the
            # next server would have found them warm.
            cold = ["/s%d-c%d.bin" % (k, i) for i in range(COLD_FILES)]
            for i, path in enumerate(cold):
                write_file(os.path.join(root, path[1:]), 256 * 1024, "cold%d-%d" % (k, i))
            with open(os.path.join(root, "warm.bin"), "rb") as f:
                f.read()  # in memory
            try:
                ms = warm_behind_cold(ctx, cg, root, flags, cold)
            except c10ktest.Unsupported as e:
                print("    %s: skipped (%s)" % (" ".join(flags), str(e).strip()[-80:]))
                continue
            print("    %-22s warm request answered after %4.0f ms (%s)"
                  % (" ".join(flags), ms, "waits for the disk" if blocks else "does not wait"))
            if blocks and ms < BLOCKED_MS or not blocks and ms > FREE_MS:
                wrong.append("%s: %.0f ms" % (" ".join(flags), ms))
    finally:
        cg.remove()
    assert not wrong, "expected blocked >= %d ms / free <= %d ms: %s" % (
        BLOCKED_MS, FREE_MS, "; ".join(wrong))


def test_stop_while_helpers_read(ctx):
    """SIGTERM while helpers are still reading cold files for clients: each
    response is finished (--grace) and the server exits 0; a client that
    gave up meanwhile costs nothing."""
    cg = throttled(ctx)
    root = os.path.join(ctx.tmp, "stop")
    os.makedirs(root)
    data = {"/c%d.bin" % i: write_file(os.path.join(root, "c%d.bin" % i), 256 * 1024,
                                       "stop%d" % i) for i in range(3)}
    try:
        make_cold(*[os.path.join(root, p[1:]) for p in data])
        srv = serve(ctx.bin, root, "epoll", "--helpers", "1", wrap=cg.wrap)
        try:
            got = {}
            threads = [threading.Thread(target=lambda p=p: got.update({p: http_get(srv.port, p)}))
                       for p in data]
            for t in threads:
                t.start()
            gone = c10ktest.connect(srv.port)  # asks, then leaves before the answer
            gone.sendall(b"GET /c0.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
            gone.close()
            srv.proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(30)
            for p, want in data.items():
                c10ktest.eq(got[p].status, 200, p)
                assert got[p].body == want, "%s: the body, whole, after the stop" % p
        finally:
            stop(srv)
    finally:
        cg.remove()


# --- the stall counter ------------------------------------------------------------------

EVENT_MODELS = ["epoll", "libevent", "libuv", "uring", "coro"]
# A model whose counter is still to come, and why (it must not be forgotten:
# the test says so on every run). None now.
NOT_YET = {}
HOLD_S = 0.5
REQUESTS = 200  # ~150 KiB of access log (a 700-byte User-Agent each): twice a pipe
REQUEST = b"GET /small.bin HTTP/1.1\r\nHost: t\r\nUser-Agent: " + b"x" * 700 + b"\r\n\r\n"


def stats_file_supported(bin_path):
    out = subprocess.run([bin_path, "serve", "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    return "--stats-file" in out


def read_counters(path):
    with open(path) as f:
        return json.load(f)["counters"]


def run_with_log_fifo(ctx, model, hold):
    """Serve with its access log on a FIFO; send requests until the FIFO is
    full, keep it full for `hold` s (0: read it all along), then drain.
    Returns the loop counters of the final stats file."""
    tmp = tempfile.mkdtemp(dir=ctx.tmp)
    fifo, stats = os.path.join(tmp, "log"), os.path.join(tmp, "stats.json")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # before the server opens it to write
    draining = threading.Event()
    done = threading.Event()
    if hold == 0:
        draining.set()

    def drain():
        while not done.is_set():
            if draining.is_set():
                try:
                    while os.read(rfd, 65536):
                        pass
                except BlockingIOError:
                    pass
            time.sleep(0.005)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    srv = serve(ctx.bin, ctx.root, model, extra=["--access-log", fifo, "--stats-file", stats])
    try:
        s = c10ktest.connect(srv.port, timeout=30)
        statuses = []

        def responses():  # read as they come: the socket never fills
            r = c10ktest.Reader(s)
            for _ in range(REQUESTS):
                statuses.append(r.read_response().status)

        reader = threading.Thread(target=responses, daemon=True)
        reader.start()
        s.sendall(REQUEST * REQUESTS)
        time.sleep(hold)  # the log's pipe is full long before: the loop waits in write()
        draining.set()
        reader.join(30)
        c10ktest.eq(statuses, [200] * REQUESTS, "every response")
        s.close()
    finally:
        try:
            stop(srv)  # while the FIFO is still read: a full log would hold the stop
        finally:
            done.set()
            t.join(5)
            os.close(rfd)
    return read_counters(stats)


def counts_stalls(ctx, model):
    """Does the model publish loop_stalls at all? (start, stop, read)"""
    stats = os.path.join(tempfile.mkdtemp(dir=ctx.tmp), "stats.json")
    stop(serve(ctx.bin, ctx.root, model, extra=["--stats-file", stats]))
    return "loop_stalls" in read_counters(stats)


def test_stall_counter_counts_a_blocked_loop(ctx):
    if not stats_file_supported(ctx.bin):
        raise Skip("this c10k has no --stats-file (common/stats.h)")
    wrong = []
    for model in EVENT_MODELS:
        if model in NOT_YET and not counts_stalls(ctx, model):
            print("    %s: skipped (%s)" % (model, NOT_YET[model]))
            continue
        try:
            held = run_with_log_fifo(ctx, model, HOLD_S)
            free = run_with_log_fifo(ctx, model, 0)
        except c10ktest.Unsupported as e:
            print("    %s: skipped (%s)" % (model, str(e).strip()[-80:]))
            continue
        print("    %-9s held %.1f s: %d stalls, %.0f ms; never held: %d stalls, %.0f ms "
              "(%d iterations)" % (model, HOLD_S, held["loop_stalls"],
                                   held["loop_stall_us"] / 1000, free["loop_stalls"],
                                   free["loop_stall_us"] / 1000, free["loop_iterations"]))
        # The same requests either way (pipelined, they make a long
        # iteration or two even unheld, longer on a busy machine): the hold
        # must show up as that much more stalled time.
        extra = held["loop_stall_us"] - free["loop_stall_us"]
        if held["loop_stalls"] < 1 or extra < 0.75 * HOLD_S * 1e6:
            wrong.append("%s: held %.1f s but counted %d stalls, %.0f ms (%.0f ms unheld)"
                         % (model, HOLD_S, held["loop_stalls"], held["loop_stall_us"] / 1000,
                            free["loop_stall_us"] / 1000))
        if held["loop_iterations"] < 1:
            wrong.append("%s: no iterations counted" % model)
    assert not wrong, "; ".join(wrong)


# --- eviction, checked by mincore -------------------------------------------------------

def test_eviction_and_its_mincore_check(ctx):
    d = os.path.join(ctx.tmp, "evict")
    os.makedirs(d)
    files = [os.path.join(d, "f%d" % i) for i in range(8)]
    for i, p in enumerate(files):
        write_file(p, 64 * 1024 + i * 1000, "evict%d" % i)
    total = sum(pagecache.pages_of(os.path.getsize(p)) for p in files)
    for p in files:
        with open(p, "rb") as f:
            f.read()
    c10ktest.eq(pagecache.resident(files), (total, total), "read: all resident")
    c10ktest.eq(pagecache.evict(files), len(files), "files evicted")
    have, _ = pagecache.resident(files)
    if have:
        raise Skip("%s: POSIX_FADV_DONTNEED left %d pages (tmpfs?)" % (d, have))
    c10ktest.eq(pagecache.resident_frac(files), 0.0, "evicted: none resident")
    with open(files[0], "rb") as f:
        f.read(4096)
    have, _ = pagecache.resident(files)
    assert 1 <= have <= 64, "one small read brings back a few pages (readahead), got %d" % have
    fincore = shutil.which("fincore")
    if fincore:  # util-linux's own count agrees with ours
        out = subprocess.run([fincore, "--raw", "--noheadings", "--output", "PAGES", files[0]],
                             stdout=subprocess.PIPE, text=True).stdout.split()
        c10ktest.eq(int(out[0]), pagecache.resident_pages(files[0])[0], "fincore agrees")
    shm = tempfile.mkdtemp(dir="/dev/shm") if os.path.isdir("/dev/shm") else None
    if shm:  # tmpfs: the page cache is the file, DONTNEED drops nothing
        try:
            p = os.path.join(shm, "f")
            write_file(p, 64 * 1024, "shm")
            pagecache.evict([p])
            c10ktest.eq(pagecache.resident_frac([p]), 1.0, "tmpfs: still resident, and said so")
        finally:
            shutil.rmtree(shm)


TESTS = [test_eviction_and_its_mincore_check, test_cold_files_served_byte_for_byte,
         test_helper_hands_off_a_cold_range,
         test_without_helpers_the_loop_reads_the_disk_itself, test_who_waits_for_the_disk,
         test_stop_while_helpers_read,
         test_stall_counter_counts_a_blocked_loop]


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("-k", help="run the tests whose name contains this")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.bin = os.path.abspath(args.bin)
    base = os.path.dirname(ctx.bin)  # the build directory: a disk filesystem
    ctx.tmp = tempfile.mkdtemp(prefix="coldcache-", dir=base)
    ctx.root = os.path.join(ctx.tmp, "root")
    os.makedirs(ctx.root)
    write_file(os.path.join(ctx.root, "small.bin"), 100, "small")
    passed = failed = skipped = 0
    try:
        for t in TESTS:
            if args.k and args.k not in t.__name__:
                continue
            t0 = time.monotonic()
            try:
                t(ctx)
                passed += 1
                print("PASS %s (%.1fs)" % (t.__name__, time.monotonic() - t0))
            except Skip as e:
                skipped += 1
                print("SKIP %s: %s" % (t.__name__, e))
            except Exception:
                failed += 1
                print("FAIL %s\n%s" % (t.__name__, traceback.format_exc()))
            sys.stdout.flush()
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    print("coldcache: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
