"""cases_stats - the model stats file (--stats-file, CONTRACTS.md section 3).

Every model writes it the same way (common/stats.c), whether or not it has
counters of its own: JSON {"model": NAME, "counters": {NAME: integer, ...}},
there as soon as the start line is printed, rewritten every 250 ms by rename
(so a reader never sees half a file), cumulative, and written once more at a
clean stop, with no FILE.tmp left behind.
"""
import json
import os
import time

from suite import start, test
from c10ktest import eq, get


def read_stats(path):
    with open(path) as f:
        doc = json.load(f)
    assert set(doc) == {"model", "counters"}, "keys: %r" % sorted(doc)
    assert isinstance(doc["counters"], dict), "counters: %r" % doc["counters"]
    for name, v in doc["counters"].items():
        assert isinstance(v, int) and v >= 0, "counter %s: %r" % (name, v)
    return doc


def wait_rewritten(path, ino, timeout=3.0):
    """Wait until path is a new file (each rewrite renames a new one over it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.stat(path).st_ino != ino:
            return True
        time.sleep(0.05)
    return False


@test
def stats_file(ctx):
    path = os.path.join(ctx.tmp, "stats-%d.json" % os.getpid())
    srv = start(ctx, ["--stats-file", path])
    try:
        first = read_stats(path)  # written before the start line
        eq(first["model"], ctx.variant.split()[0], "model")
        for _ in range(5):
            eq(get(srv.port, "/hello.txt").status, 200, "status")
        assert wait_rewritten(path, os.stat(path).st_ino), "not rewritten within 3 s"
        running = read_stats(path)
    finally:
        srv.stop_clean()
    last = read_stats(path)
    assert not os.path.exists(path + ".tmp"), "FILE.tmp left behind"
    eq(sorted(last["counters"]), sorted(running["counters"]), "counter names")
    for name, v in running["counters"].items():
        assert last["counters"][name] >= v, "%s went down: %d -> %d" % (
            name, v, last["counters"][name])
    os.unlink(path)
