#!/usr/bin/python3
"""Tests of the bench harness (bench/c10k_bench.py).

    /usr/bin/python3 tests/bench/test_bench.py [--bin BUILD/c10k]

1. The method test: a process whose threads and children do a known number
   of blocking sleeps, and then exit inside the window, must come out of
   ServerCosts with about that many voluntary switches, and with the CPU its
   exited children burned.
2. CLI errors exit with status 2 and a message.
3. The smoke run: one model plus nginx, one cell, 1 s window; results.json
   checked against the schema, and the counts must make sense.
Prints "bench: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
import c10k_bench  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")

THREADS, CHILDREN, SLEEPS = 3, 2, 60
KNOWN_SLEEPS = (THREADS + CHILDREN) * SLEEPS


def calibrate_burn(seconds=0.25):
    """Loop iterations that take about `seconds` of CPU here."""
    import time
    n, t0 = 200000, time.process_time()
    x = 0
    for i in range(n):
        x += i
    per = (time.process_time() - t0) / n
    return int(seconds / max(per, 1e-9))


BURN = calibrate_burn()

# Waits for "go", then: THREADS threads and CHILDREN forked children each do
# SLEEPS blocking 5 ms sleeps and exit; each child also burns ~0.25 s of CPU.
# Everything it starts has exited when it prints "done".
HELPER = r"""
import os, sys, threading, time
N = %d
BURN = %d
def sleeper():
    for _ in range(N):
        time.sleep(0.005)
sys.stdin.readline()
def burn():
    x = 0
    for i in range(BURN):  # pure Python: no syscalls, ~0.25 s of CPU
        x += i
child_cpu = 0.0
ts = [threading.Thread(target=sleeper) for _ in range(%d)]
for t in ts:
    t.start()
    time.sleep(0.0005)
for t in ts:
    t.join()
for _ in range(%d):
    pid = os.fork()
    if pid == 0:
        sleeper()
        burn()
        os._exit(0)
    _, _, ru = os.wait4(pid, 0)
    child_cpu += ru.ru_utime + ru.ru_stime
print("done %%f" %% child_cpu, flush=True)
sys.stdin.readline()
""" % (SLEEPS, BURN, THREADS, CHILDREN)


class MethodTest(unittest.TestCase):
    def measure(self, use_perf):
        p = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                costs = c10k_bench.ServerCosts(p.pid, os.path.join(tmp, "perf.csv"), use_perf)
                costs.start()
                p.stdin.write("go\n")
                p.stdin.flush()
                word, child_cpu = p.stdout.readline().split()
                self.assertEqual(word, "done")
                cost = costs.stop()
                cost["known_child_cpu"] = float(child_cpu)
                return cost
        finally:
            p.kill()
            p.wait()

    def test_voluntary_switches_counted_including_exited(self):
        ok, why = c10k_bench.check_perf()
        if not ok:
            self.skipTest("perf unusable: " + why)
        cost = self.measure(True)
        vol = cost["ctx_vol"]
        # Each sleep is one voluntary switch; thread start/join, fork/wait and
        # the pipe add a few dozen more. Exited threads/children included.
        # (On a loaded machine a sleeper preempted until its timer fired
        # never blocks, so allow a few percent fewer.)
        self.assertGreaterEqual(vol, KNOWN_SLEEPS * 0.9, cost)
        self.assertLessEqual(vol, KNOWN_SLEEPS * 1.3 + 60, cost)
        self.assertIsNotNone(cost["syscalls"])
        self.assertGreater(cost["syscalls"], KNOWN_SLEEPS)

    def test_cpu_of_exited_children_counted(self):
        cost = self.measure(False)
        cpu = cost["cpu_user_s"] + cost["cpu_sys_s"]
        # the children exited and were reaped inside the window: their CPU
        # (as wait4 reported it to the parent) must be in the window's total
        known = cost["known_child_cpu"]
        self.assertGreater(known, 0.2, cost)
        self.assertGreaterEqual(cpu, known - 0.02, cost)
        self.assertLess(cpu, known + 1.0, cost)
        # without perf: syscalls are unavailable, never 0
        self.assertIsNone(cost["syscalls"])
        self.assertIn("not counted", cost["ctx_method"])


# Touches SHARED_MIB of private memory, then forks SHARERS children that only
# sleep: every page is mapped by SHARERS + 1 processes until one writes it.
SHARED_MIB, SHARERS = 64, 3
SHARER = r"""
import os, sys, time
buf = bytearray(%d << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
kids = []
for _ in range(%d):
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
print("ready", flush=True)
sys.stdin.readline()
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
""" % (SHARED_MIB, SHARERS)


class MemoryMethodTest(unittest.TestCase):
    def test_shared_pages_counted_once_in_pss(self):
        """Memory per connection uses PSS: forked workers that share their
        parent's pages must not multiply them, as a sum of RSS does."""
        if not c10k_bench.HAVE_SMAPS_ROLLUP:
            self.skipTest("no /proc/self/smaps_rollup (Linux < 4.14): memory is RSS only")
        p = subprocess.Popen([sys.executable, "-c", SHARER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline().strip(), "ready")
            snap = c10k_bench.proc_snapshot(p.pid, tasks=False)
        finally:
            p.stdin.write("\n")
            p.stdin.flush()
            p.wait()
        shared_kib = SHARED_MIB * 1024
        self.assertEqual(snap["procs"], SHARERS + 1, snap)
        # RSS charges the buffer to every process; PSS splits it among them
        self.assertGreater(snap["rss_kib"], (SHARERS + 1) * shared_kib * 0.95, snap)
        self.assertGreater(snap["pss_kib"], shared_kib * 0.95, snap)
        self.assertLess(snap["pss_kib"], shared_kib * 1.6, snap)


def run_bench(args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(REPO, "bench", "c10k_bench.py")] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


class CliTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def test_usage_errors_exit_2(self):
        for args, want in ((["--profile", "nope"], "invalid choice"),
                           (["--models", "nosuchmodel"], "unknown model"),
                           (["--sizes", "12Q"], "not a size"),
                           (["--duration", "0"], "--duration"),
                           (["--server-cpus", "99"], "do not exist")):
            r = run_bench(["--bin", BIN] + args, timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(want, r.stderr, args)

    def test_busy_port(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            r = run_bench(["--bin", BIN, "--port", str(s.getsockname()[1]), "--models",
                           "threaded"], timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("busy", r.stderr)


def check_schema(tc, doc):
    """The parts of results.json (schema_version 1) the report relies on."""
    tc.assertEqual(doc["schema"], "c10k-bench-results")
    tc.assertEqual(doc["schema_version"], c10k_bench.SCHEMA_VERSION)
    for k in ("id", "started", "finished", "status", "profile", "command_line", "settings"):
        tc.assertIn(k, doc["run"])
    for k in ("kernel", "cpu_model", "cores", "versions", "git_commit", "sysctl"):
        tc.assertIn(k, doc["environment"])
    for k in ("wrk", "nginx", "liburing", "libevent", "libuv"):
        tc.assertIn(k, doc["environment"]["versions"])
    for k in ("server_cpus", "client_cpus", "duration_s", "warmup_s", "repeat", "workers"):
        tc.assertIn(k, doc["run"]["settings"])
    ids = {s["id"] for s in doc["scenarios"]}
    for c in doc["cells"]:
        tc.assertIn(c["scenario"], ids)
        tc.assertIn(c["status"], ("ok", "degraded", "failed"))
        for r in c["repeats"]:
            if r["status"] == "failed":
                continue
            for k in c10k_bench.SCALAR_METRICS:
                tc.assertIn(k, r)
        for k in c10k_bench.SCALAR_METRICS:
            s = c["summary"][k]
            if s is not None:
                tc.assertLessEqual(s["min"], s["median"])
                tc.assertLessEqual(s["median"], s["max"])


class SmokeTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def test_one_model_plus_nginx(self):
        with tempfile.TemporaryDirectory() as out:
            r = run_bench(["--bin", BIN, "--models", "threaded", "--connections", "16",
                           "--sizes", "1KiB", "--modes", "keepalive", "--duration", "1",
                           "--warmup", "0", "--out", out])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            run = os.path.join(out, "latest")
            for f in ("results.json", "results.csv", "report.md", "report.html", "raw",
                      "nginx.conf", "docroot"):
                self.assertTrue(os.path.exists(os.path.join(run, f)), f)
            with open(os.path.join(run, "results.json")) as f:
                doc = json.load(f)
            check_schema(self, doc)
            self.assertEqual(doc["run"]["status"], "complete")
            cells = {c["model"]: c for c in doc["cells"]}
            self.assertEqual(set(cells), {"threaded", "nginx"})
            # a thread per connection: sized by the load, never --workers
            self.assertIn("threaded", doc["run"]["settings"]["per_connection_models"])
            self.assertNotIn("--workers", cells["threaded"]["repeats"][0]["server_command"])
            for model, c in cells.items():
                self.assertEqual(c["status"], "ok", (model, c["reasons"]))
                rep = c["repeats"][0]
                self.assertGreater(rep["requests"], 0, model)
                self.assertEqual(rep["errors_total"], 0, model)
                self.assertGreater(rep["ctx_vol"] + rep["ctx_invol"], 0, model)
                self.assertGreater(rep["cpu_s"], 0, model)
                self.assertEqual(rep["conns_established"], 16, model)
                self.assertEqual(rep["server_exit"], "clean", model)
                self.assertEqual(rep["mem_per_conn_method"],
                                 "pss" if c10k_bench.HAVE_SMAPS_ROLLUP else "rss", model)
                if doc["tools"]["perf"]["available"]:
                    self.assertGreater(rep["syscalls_per_req"], 0, model)
                else:
                    self.assertIsNone(rep["syscalls"])
            with open(os.path.join(run, "results.csv")) as f:
                self.assertEqual(len(f.read().strip().splitlines()), 3)


def main():
    global BIN
    if "--bin" in sys.argv:
        i = sys.argv.index("--bin")
        BIN = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("bench: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
