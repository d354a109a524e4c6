"""cases_teardown - a server whose workers cannot all start fails cleanly.

Run out of descriptors on purpose (RLIMIT_NOFILE cut to a few, soft and hard,
so c10k cannot raise it), with more workers than fit: some worker's set-up
fails half way. Whatever the model, the server must then say so and exit 1
(or 2, before binding), or, if everything fitted, serve and stop with 0. It
must never die of a signal, and its teardown must close only what it opened:
never descriptor 0, 1 or 2, which a half-built worker whose descriptors were
left at 0 instead of -1 closes (strace shows every close() of every thread).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from suite import test
from c10ktest import eq

LIMITS = (9, 11, 14, 20)  # descriptors: fail in main, early in a worker, later, or fit
STD_CLOSE = re.compile(r"\bclose\([012]\)")


def run_limited(ctx, limit, trace):
    flags = ctx.variant.split()
    flags = [f for i, f in enumerate(flags) if f != "--workers" and
             (i == 0 or flags[i - 1] != "--workers")]
    argv = ["strace", "-f", "-qq", "-e", "trace=close", "-o", trace,
            "prlimit", "--nofile=%d:%d" % (limit, limit),
            ctx.bin, "serve"] + flags + ["--port", "0", "--root", ctx.root, "--workers", "8",
                                         "--grace", "2"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        line = read_line(p, 5)
        if line:  # bound and printed: give the workers a moment to fail, then stop
            time.sleep(0.3)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, line + out.decode(errors="replace"), err.decode(errors="replace")


def read_line(p, timeout):
    got = []
    t = threading.Thread(target=lambda: got.append(p.stdout.readline().decode(errors="replace")),
                         daemon=True)
    t.start()
    t.join(timeout)
    return got[0] if got else ""


@test
def failed_worker_setup_tears_down_cleanly(ctx):
    if not shutil.which("strace") or not shutil.which("prlimit"):
        ctx.skip("strace or prlimit missing (make deps installs strace and util-linux)")
    tmp = tempfile.mkdtemp(prefix="c10k-teardown-", dir=ctx.tmp)
    try:
        for limit in LIMITS:
            trace = os.path.join(tmp, "close-%d.txt" % limit)
            status, out, err = run_limited(ctx, limit, trace)
            what = "RLIMIT_NOFILE %d: exit %s, stderr %r" % (limit, status, err[-300:])
            assert status in (0, 1, 2), "died of a signal or hung: " + what
            if status != 0:
                assert err.strip(), "failed without saying why: " + what
            with open(trace) as f:
                bad = [line.strip() for line in f if STD_CLOSE.search(line)]
            eq(bad, [], "closed stdin/stdout/stderr in teardown (%s)" % what)
            time.sleep(0.05)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
