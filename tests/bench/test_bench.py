#!/usr/bin/python3
"""Tests of the bench harness (bench/c10k_bench.py, bench/harness/).

    /usr/bin/python3 tests/bench/test_bench.py [--bin BUILD/c10k]

1. The method test: a process whose threads and children do a known number
   of blocking sleeps, and then exit inside the window, must come out of
   ServerCosts with about that many voluntary switches, and with the CPU its
   exited children burned.
2. CLI errors exit with status 2 and a message; --dry-run prints the plan.
3. The smoke run: prefork:workers=1 (a variant, which must come out starved)
   plus nginx, two rounds of 1 s windows; results.json checked
   against schema 2, wrk's histogram must sum to the requests and its p100
   equal its max, and the counts must make sense.
The pure parts are tested on their own in test_harness_units.py.
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
from harness import counters, results  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")
STATS_BIN = os.path.join(HERE, "stats_c10k.py")

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
                costs = counters.ServerCosts(p.pid, os.path.join(tmp, "perf.csv"), use_perf)
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
        ok, why = counters.check_perf()
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


# Makes 3 threads and a child when told (perf attached, counters still off),
# which sleep 100 times each only once the counters are on.
LATE = r"""
import os, sys, threading, time
sys.stdin.readline()
go = threading.Event()
def sleeper():
    go.wait()
    for _ in range(100):
        time.sleep(0.002)
ts = [threading.Thread(target=sleeper) for _ in range(3)]
for t in ts:
    t.start()
pid = os.fork()
if pid == 0:
    time.sleep(0.6)
    for _ in range(100):
        time.sleep(0.002)
    os._exit(0)
print("made", flush=True)
sys.stdin.readline()
go.set()
for t in ts:
    t.join()
os.waitpid(pid, 0)
print("done", flush=True)
sys.stdin.readline()
"""


class PerfControlTest(unittest.TestCase):
    def test_tasks_made_while_counters_off_are_counted(self):
        """perf attaches before the warm-up with its counters off and is
        switched on at the window: threads and children created in between
        (threaded spawns one per connection in the warm-up) must count."""
        ok, why = counters.check_perf()
        if not ok:
            self.skipTest("perf unusable: " + why)
        if not counters.perf_has_control():
            self.skipTest("this perf has no --control: it attaches at the window")
        p = subprocess.Popen([sys.executable, "-c", LATE], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                costs = counters.ServerCosts(p.pid, os.path.join(tmp, "perf.csv"), True)
                costs.attach()
                p.stdin.write("make\n")
                p.stdin.flush()
                self.assertEqual(p.stdout.readline().strip(), "made")
                costs.start()
                p.stdin.write("go\n")
                p.stdin.flush()
                self.assertEqual(p.stdout.readline().strip(), "done")
                cost = costs.stop()
        finally:
            p.kill()
            p.wait()
        self.assertIn("perf", cost["ctx_method"])
        self.assertGreaterEqual(cost["ctx_vol"], 400 * 0.9, cost)
        self.assertLessEqual(cost["ctx_vol"], 400 * 1.3 + 60, cost)


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
        if not counters.HAVE_SMAPS_ROLLUP:
            self.skipTest("no /proc/self/smaps_rollup (Linux < 4.14): memory is RSS only")
        p = subprocess.Popen([sys.executable, "-c", SHARER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline().strip(), "ready")
            snap = counters.proc_snapshot(p.pid, tasks=False)
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


def run_bench(args, timeout=120, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "bench", "c10k_bench.py")] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env=env)


class CliTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def test_usage_errors_exit_2(self):
        # (every usage error is tested in test_harness_units.py; these go
        # through the command line and the binary)
        for args, want in ((["--sizes", "1KB"], "did you mean 1KiB?"),
                           (["--models", "threaded:poool=64"], "has no flag --poool"),
                           # in range only for the server: it refuses, the bench says so
                           (["--models", "threaded:pool=0"], "refused it")):
            r = run_bench(["--bin", BIN, "--dry-run"] + args, timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(want, r.stderr, args)
            self.assertEqual(r.stdout, "", args)

    def test_busy_port(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            r = run_bench(["--bin", BIN, "--port", str(s.getsockname()[1]), "--models",
                           "threaded"], timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("busy", r.stderr)

    def test_dry_run(self):
        """The cells in order (round x server x scenario) and the time, and
        nothing started or written."""
        with tempfile.TemporaryDirectory() as out:
            r = run_bench(["--bin", BIN, "--dry-run", "--out", out, "--sizes", "2GiB,128",
                           "--models", "epoll,threaded:pool=64", "--seed", "42"], timeout=30)
            self.assertEqual(os.listdir(out), [])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        cells = [line for line in lines if "] round " in line]
        # quick: 3 rounds x (epoll, threaded:pool=64, nginx) x (2 sizes x its 2 modes x
        # its 3 connection counts)
        self.assertEqual(len(cells), 3 * 3 * 12, r.stdout)
        self.assertIn("seed 42", lines[0])
        self.assertIn("2GiB keep-alive, 16 conns", r.stdout)
        self.assertIn("variant threaded:pool=64 = c10k serve threaded --pool 64", r.stdout)
        self.assertRegex(lines[-1], r"^estimated time: \d+m\d\ds, at most ")


def check_schema(tc, doc):
    """The parts of results.json (schema_version 2) the report relies on."""
    tc.assertEqual(doc["schema"], "c10k-bench-results")
    tc.assertEqual(doc["schema_version"], 2)
    tc.assertEqual(results.SCHEMA_VERSION, 2)
    for k in ("id", "started", "finished", "status", "profile", "command_line", "settings"):
        tc.assertIn(k, doc["run"])
    for k in ("kernel", "cpu_model", "cores", "versions", "git_commit", "sysctl"):
        tc.assertIn(k, doc["environment"])
    for k in ("wrk", "nginx", "liburing", "libevent", "libuv"):
        tc.assertIn(k, doc["environment"]["versions"])
    st = doc["run"]["settings"]
    for k in ("server_cpus", "client_cpus", "duration_s", "warmup_s", "repeat", "workers",
              "rounds", "round_orders", "variants", "seed"):
        tc.assertIn(k, st)
    tc.assertEqual(st["repeat"], st["rounds"])
    tc.assertEqual(len(st["round_orders"]), st["rounds"])
    for order in st["round_orders"]:
        tc.assertEqual(sorted(order), sorted(doc["models"]))
    ids = {s["id"] for s in doc["scenarios"]}
    for s in doc["scenarios"]:
        tc.assertEqual((s["kind"], s["link"]), ("closed", "loopback"))
    for c in doc["cells"]:
        tc.assertIn(c["scenario"], ids)
        tc.assertIn(c["status"], ("ok", "degraded", "failed"))
        tc.assertTrue(set(c["flags"]) <= {"starved", "noisy", "client-bound"}, c["flags"])
        tc.assertIn("spread_pct", c)
        for r in c["repeats"]:
            if r["status"] == "failed":
                continue
            for k in results.SCALAR_METRICS + ["round", "model_counters", "starved"]:
                tc.assertIn(k, r)
            tc.assertEqual(r["repeat"], r["round"])
        for k in results.SCALAR_METRICS:
            s = c["summary"][k]
            if s is not None:
                tc.assertLessEqual(s["min"], s["median"])
                tc.assertLessEqual(s["median"], s["max"])


def check_wrk_histogram(tc, run, rep, label):
    """wrk_report.lua: the histogram holds the measured latencies, one per
    completed request (none were slower than wrk's timeout here), and p100
    is the max, not wrk's 0."""
    tc.assertEqual(rep["errors_timeout"], 0, label)
    hist = rep["lat_histogram_us"]
    tc.assertIsNotNone(hist, (label, rep.get("lat_histogram_unavailable")))
    tc.assertEqual(sum(c for _, c in hist), rep["requests"], label)
    tc.assertEqual(rep["lat_histogram_recorded"], rep["requests"], label)
    uppers = [u for u, _ in hist]
    tc.assertEqual(uppers, sorted(set(uppers)), label)
    tc.assertGreaterEqual(uppers[-1], rep["lat_max_us"], label)
    pct = dict((p, v) for p, v in rep["lat_percentiles_us"])
    tc.assertEqual(pct[100], rep["lat_max_us"], label)
    tc.assertGreater(rep["lat_max_us"], 0, label)
    with open(os.path.join(run, rep["raw"]["wrk"])) as f:
        raw = json.load(f)
    tc.assertEqual(raw["histogram_us"], hist, label)


class SmokeTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def test_two_rounds_starved_variant_and_nginx(self):
        # the binary as the bench sees it takes --stats-file (stats_c10k.py
        # adds it until the models have it), so the model counters are read
        env = dict(os.environ, C10K_REAL_BIN=BIN)
        with tempfile.TemporaryDirectory() as out:
            r = run_bench(["--bin", STATS_BIN, "--models", "prefork:workers=1",
                           "--connections", "16", "--sizes", "1KiB", "--modes", "keepalive",
                           "--duration", "1", "--warmup", "0", "--rounds", "2", "--out", out],
                          env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            run = os.path.join(out, "latest")
            for f in ("results.json", "results.csv", "raw", "nginx.conf", "docroot"):
                self.assertTrue(os.path.exists(os.path.join(run, f)), f)
            self.check_report(run, r.stderr)
            with open(os.path.join(run, "results.json")) as f:
                doc = json.load(f)
            check_schema(self, doc)
            self.check_run(doc)
            with open(os.path.join(run, "results.csv")) as f:
                self.assertEqual(len(f.read().strip().splitlines()), 1 + 2 * 2)
            cells = {c["model"]: c for c in doc["cells"]}
            for model, c in cells.items():
                self.assertNotEqual(c["status"], "failed", (model, c["reasons"]))
                self.assertEqual(len(c["repeats"]), 2, model)
                for rep in c["repeats"]:
                    self.check_repeat(doc, model, rep)
                    check_wrk_histogram(self, run, rep, (model, rep["round"]))
                self.check_spread(c)
            self.check_starved(cells)

    def test_open_file_cache_in_every_server(self):
        """--open-file-cache: the c10k model gets the flags, nginx the same
        cache, results.json records it, and the cache does its job: epoll
        makes about two system calls per keep-alive request (read, sendmsg)
        instead of six (openat2, fstat and close go)."""
        with tempfile.TemporaryDirectory() as out:
            r = run_bench(["--bin", BIN, "--models", "epoll", "--connections", "16", "--sizes",
                           "1KiB", "--modes", "keepalive", "--duration", "1", "--warmup", "0",
                           "--rounds", "1", "--open-file-cache", "64", "--no-report",
                           "--out", out])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            run = os.path.join(out, "latest")
            with open(os.path.join(run, "nginx.conf")) as f:
                self.assertIn("open_file_cache max=64 inactive=3600s; open_file_cache_valid 60s;",
                              f.read())
            with open(os.path.join(run, "results.json")) as f:
                doc = json.load(f)
        cache = doc["run"]["settings"]["open_file_cache"]
        self.assertEqual((cache["max"], cache["valid_s"]), (64, 60))
        self.assertIn("open-file cache of 64 per worker", r.stdout)
        cells = {c["model"]: c for c in doc["cells"]}
        self.assertEqual(set(cells), {"epoll", "nginx"})
        for model, c in cells.items():
            self.assertNotEqual(c["status"], "failed", (model, c["reasons"]))
        rep = cells["epoll"]["repeats"][0]
        cmd = rep["server_command"]
        i = cmd.index("--open-file-cache")
        self.assertEqual(cmd[i:i + 4], ["--open-file-cache", "64", "--open-file-cache-valid",
                                        "60"])
        if doc["tools"]["perf"]["available"]:
            self.assertLess(rep["syscalls_per_req"], 3.5, rep["syscalls_per_req"])

    def check_report(self, run, stderr):
        """The report is written, or (while report.py reads schema 1 only)
        the bench says plainly why not and still exits 0."""
        if os.path.exists(os.path.join(run, "report.md")):
            self.assertTrue(os.path.exists(os.path.join(run, "report.html")))
            return
        self.assertIn("NO REPORT: this report generator cannot read results.json schema "
                      "version 2 yet", stderr)
        alone = subprocess.run([sys.executable, os.path.join(REPO, "bench", "report.py"), run],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertNotEqual(alone.returncode, 0)
        self.assertIn("schema version", alone.stderr)

    def check_run(self, doc):
        st = doc["run"]["settings"]
        self.assertEqual(doc["run"]["status"], "complete")
        self.assertEqual(doc["models"], ["prefork:workers=1", "nginx"])
        self.assertEqual(st["variants"], {"prefork:workers=1": "prefork --workers 1"})
        self.assertEqual(st["rounds"], 2)
        self.assertTrue(st["stats_file"])
        self.assertIsInstance(st["seed"], int)
        # prefork sizes itself to the load unless a variant sets --workers
        self.assertIn("prefork", st["per_connection_models"])

    def check_repeat(self, doc, model, rep):
        cmd = rep["server_command"]
        if model == "prefork:workers=1":
            self.assertEqual((cmd.count("--workers"), cmd[cmd.index("--workers") + 1]), (1, "1"))
        self.assertGreater(rep["requests"], 0, model)
        self.assertEqual(rep["errors_total"], 0, model)
        self.assertGreater(rep["ctx_vol"] + rep["ctx_invol"], 0, model)
        self.assertGreater(rep["cpu_s"], 0, model)
        self.assertEqual(rep["conns_established"], 16, model)
        self.assertEqual(rep["server_exit"], "clean", model)
        self.assertEqual(rep["mem_per_conn_method"],
                         "pss" if counters.HAVE_SMAPS_ROLLUP else "rss", model)
        if doc["tools"]["perf"]["available"]:
            self.assertGreater(rep["syscalls_per_req"], 0, model)
        else:
            self.assertIsNone(rep["syscalls"])
        # schema 2: the machine before the round, softirqs over the window
        self.assertIsInstance(rep["loadavg_1m"], float, model)
        self.assertIn("steal_pct", rep)
        self.assertGreater(rep["softirq_net_rx"], 0, model)  # loopback raises NET_RX
        self.assertAlmostEqual(rep["softirq_net_rx_per_req"],
                               rep["softirq_net_rx"] / rep["requests"], model)
        self.assertGreater(rep["accept_queue_samples"], 10, model)  # 20 Hz over 1 s
        self.assertTrue(0.0 <= rep["accept_queue_wait_frac"] <= 1.0, model)
        if model == "nginx":
            self.assertIsNone(rep["model_counters"], model)  # unavailable: null, never {}
            self.assertTrue(rep["model_counters_unavailable"], model)
            return
        self.assertIn("--stats-file", cmd)
        mc = rep["model_counters"]
        self.assertIsInstance(mc, dict, (model, rep.get("model_counters_unavailable")))
        if "wrapper_writes" in mc:  # stats_c10k.py's counters: rewritten every 250 ms
            self.assertGreaterEqual(mc["wrapper_writes"], 2, mc)
            self.assertGreaterEqual(mc["wrapper_cpu_ticks"], 0, mc)

    def check_spread(self, c):
        rps = [r["rps"] for r in c["repeats"]]
        want = 100.0 * (max(rps) - min(rps)) / (sum(rps) / 2)
        self.assertAlmostEqual(c["spread_pct"], want, places=6)
        self.assertEqual("noisy" in c["flags"], want > 10.0, c["flags"])

    def check_starved(self, cells):
        """prefork with one worker holds one connection; the other 15 wait in
        its accept queue for the whole window: starved, in every round."""
        pf = cells["prefork:workers=1"]
        self.assertIn("starved", pf["flags"])
        for rep in pf["repeats"]:
            self.assertTrue(rep["starved"], rep)
            self.assertGreater(rep["accept_queue_wait_frac"], 0.5)
            self.assertGreaterEqual(rep["accept_queue_max"], 10)
            self.assertTrue(any("accept queue" in w for w in rep["starved_by"]))
        ng = cells["nginx"]
        self.assertNotIn("starved", ng["flags"], ng["reasons"])
        for rep in ng["repeats"]:
            self.assertLess(rep["accept_queue_wait_frac"], 0.10)


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
