#!/usr/bin/python3
"""Tests of the bench harness (bench/c10k_bench.py, bench/harness/).

    /usr/bin/python3 tests/bench/test_bench.py [--bin BUILD/c10k]

1. The method test: a process whose threads and children do a known number
   of blocking sleeps, and then exit inside the window, must come out of
   ServerCosts with about that many voluntary switches, and with the CPU its
   exited children burned.
2. CLI errors exit with status 2 and a message; --dry-run prints the plan.
3. The smoke run: prefork:workers=1 (a variant, which must come out starved)
   plus nginx and the ceiling (its backend chosen by the probe, its share
   in every other repeat), two rounds of 1 s windows; results.json checked
   against schema 2, wrk's histogram must sum to the requests and its p100
   equal its max, and the counts must make sense.
4. The open-loop smoke runs: --profile latency with 2 models (and nginx), a
   3-step ladder scaled from each server's closed-loop peak; --profile
   crossover with 1 model at a fixed rate over 2 connection counts. Every
   step must be there with its figures, c10k load's histogram must sum to
   its requests, and the report must render the steps.
The pure parts are tested on their own in test_harness_units.py.
Prints "bench: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import counters, results  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")
STATS_BIN = os.path.join(HERE, "stats_c10k.py")


def ceiling_bin():
    return os.path.join(os.path.dirname(BIN), "c10k-ceiling")

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


# Waits for events 500 times (epoll, poll and select, none blocking) and makes
# 500 other syscalls, once told.
WAITER = r"""
import os, select, sys
sys.stdin.readline()
ep = select.epoll()
for _ in range(200):
    ep.poll(0)
for _ in range(200):
    select.poll().poll(0)
for _ in range(100):
    select.select([], [], [], 0)
for _ in range(500):
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
"""
WAITS = 500


def perf_cost(test, script, attach_first=False):
    """The harness's counters over a Python script: perf's counters start,
    the script is told "go" and they stop once it prints "done". With
    attach_first perf attaches before, with its counters off, while the
    script is told "make" (and prints "made"), as the harness attaches
    before a warm-up."""
    def say(word, answer):
        p.stdin.write(word + "\n")
        p.stdin.flush()
        test.assertEqual(p.stdout.readline().strip(), answer)

    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            costs = counters.ServerCosts(p.pid, os.path.join(tmp, "perf.csv"), True)
            if attach_first:
                costs.attach()
                say("make", "made")
            costs.start()
            say("go", "done")
            return costs.stop()
    finally:
        p.kill()
        p.wait()


class WaitCountTest(unittest.TestCase):
    def test_waits_counted_apart(self):
        """syscalls_wait counts the calls that wait for events (epoll, poll,
        select, io_uring_enter) among all syscalls, and nothing else."""
        ok, why = counters.check_perf()
        if not ok:
            self.skipTest("perf unusable: " + why)
        if not counters.WAIT_SYSCALLS:
            self.skipTest("the wait syscalls' numbers are not known on this architecture")
        cost = perf_cost(self, WAITER)
        self.assertGreaterEqual(cost["syscalls_wait"], WAITS, cost)
        self.assertLess(cost["syscalls_wait"], WAITS + 20, cost)
        self.assertGreater(cost["syscalls"], cost["syscalls_wait"] + 500, cost)


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
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(r, 1)  # waits for the counters, however long perf takes to start
    for _ in range(100):
        time.sleep(0.002)
    os._exit(0)
print("made", flush=True)
sys.stdin.readline()
go.set()
os.write(w, b"g")
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
        cost = perf_cost(self, LATE, attach_first=True)
        self.assertIn("perf", cost["ctx_method"])
        self.assertGreaterEqual(cost["ctx_vol"], 400 * 0.9, cost)
        self.assertLessEqual(cost["ctx_vol"], 400 * 1.3 + 60, cost)

    def test_attach_returns_once_perf_has_attached(self):
        """A child forked just after attach() is perf's only if perf had
        attached by then (perf follows what it is attached to forks later).
        On a loaded machine (CI's `make test`) perf took long enough to
        start that the child's 100 sleeps went missing (311 and 307 of
        400); here perf is made to start 0.3 s late, every time."""
        ok, why = counters.check_perf()
        if not ok:
            self.skipTest("perf unusable: " + why)
        if not counters.perf_has_control():
            self.skipTest("this perf has no --control: it attaches at the window")
        popen = subprocess.Popen

        def late_perf(argv, **kw):
            if argv[0] == "perf":
                argv = ["sh", "-c", 'sleep 0.3; exec "$@"', "sh"] + argv
            return popen(argv, **kw)

        with mock.patch.object(counters.subprocess, "Popen", late_perf):
            cost = perf_cost(self, LATE, attach_first=True)
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
        # its 3 connection counts), and the ceiling on the 128 B file only (it
        # holds the file in memory: not 2 GiB of it)
        self.assertEqual(len(cells), 3 * (3 * 12 + 6), r.stdout)
        ceiling = [line for line in cells if " ceiling " in line]
        self.assertEqual(len(ceiling), 3 * 6, r.stdout)
        self.assertFalse([line for line in ceiling if "2GiB" in line])
        self.assertIn("note: ceiling: no cell for files over 256 MiB", r.stdout)
        self.assertIn("seed 42", lines[0])
        self.assertIn("2GiB keep-alive, 16 conns", r.stdout)
        self.assertIn("variant threaded:pool=64 = c10k serve threaded --pool 64", r.stdout)
        self.assertRegex(lines[-1], r"^estimated time: \d+m\d\ds, at most ")

    def test_dry_run_says_when_the_ceiling_cannot_run(self):
        """c10k-ceiling missing beside c10k: the plan has no ceiling row and
        says why; present: it has one, and says how its backend is chosen."""
        with tempfile.TemporaryDirectory() as d:
            os.symlink(BIN, os.path.join(d, "c10k"))
            args = ["--bin", os.path.join(d, "c10k"), "--dry-run", "--models", "epoll"]
            r = run_bench(args, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("note: ceiling cannot run (%s is missing (make builds it beside "
                          "c10k)): no row for it" % os.path.join(d, "c10k-ceiling"), r.stdout)
            self.assertNotIn("ceiling", r.stdout.splitlines()[0])
            os.symlink(ceiling_bin(), os.path.join(d, "c10k-ceiling"))
            r = run_bench(args, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("(epoll, nginx, ceiling)", r.stdout.splitlines()[0])
        self.assertIn("for the ceiling's probes", r.stdout)


def check_schema(tc, doc, kinds=("closed",)):
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
        tc.assertIn(s["kind"], kinds)
        tc.assertEqual(s["link"], "loopback")
        if s["kind"] != "closed":
            tc.assertGreater(s["slo_p99_us"], 0)
    for c in doc["cells"]:
        tc.assertIn(c["scenario"], ids)
        tc.assertIn(c["status"], ("ok", "degraded", "failed"))
        tc.assertTrue(set(c["flags"]) <= {"starved", "noisy", "client-bound"}, c["flags"])
        tc.assertIn("spread_pct", c)
        for r in c["repeats"]:
            if r["status"] == "failed":
                continue
            tc.assertEqual(r["repeat"], r["round"])
            for step in r.get("steps") or [r]:
                if "steps" in r:
                    for k in ("offered_rps", "achieved_rps", "goodput_rps", "requests",
                              "errors_total", "lat_p50_us", "lat_p90_us", "lat_p99_us",
                              "lat_p999_us", "lat_max_us", "lat_histogram_us", "timeline",
                              "fairness_jain", "client_cpu_util", "little", "client_bound",
                              "connections"):
                        tc.assertIn(k, step)
                for k in ("cpu_us_per_req", "ctx_vol_per_req", "ctx_invol_per_req",
                          "syscalls_per_req", "mem_per_conn_kib", "threads_max",
                          "accept_queue_wait_frac", "loadavg_1m", "steal_pct", "round",
                          "model_counters", "starved"):
                    tc.assertIn(k, step)
                if "steps" not in r:
                    for k in results.SCALAR_METRICS:
                        tc.assertIn(k, r)
        if any(s["id"] == c["scenario"] and s["kind"] != "closed" for s in doc["scenarios"]):
            for k in ("steps", "knee_rps", "peak_closed_rps"):
                tc.assertIn(k, c)
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

    def test_two_rounds_starved_variant_nginx_and_ceiling(self):
        # the binary as the bench sees it takes --stats-file (stats_c10k.py
        # adds it until the models have it), so the model counters are read;
        # the ceiling is found beside it, so a link to the real one goes there
        env = dict(os.environ, C10K_REAL_BIN=BIN)
        with tempfile.TemporaryDirectory() as out:
            bindir = os.path.join(out, "bin")
            os.mkdir(bindir)
            os.symlink(STATS_BIN, os.path.join(bindir, "c10k"))
            os.symlink(ceiling_bin(), os.path.join(bindir, "c10k-ceiling"))
            r = run_bench(["--bin", os.path.join(bindir, "c10k"), "--models",
                           "prefork:workers=1", "--connections", "16", "--sizes", "1KiB",
                           "--modes", "keepalive", "--duration", "1", "--warmup", "0",
                           "--rounds", "2", "--out", out], env=env)
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
                self.assertEqual(len(f.read().strip().splitlines()), 1 + 3 * 2)
            cells = {c["model"]: c for c in doc["cells"]}
            for model, c in cells.items():
                self.assertNotEqual(c["status"], "failed", (model, c["reasons"]))
                self.assertEqual(len(c["repeats"]), 2, model)
                for rep in c["repeats"]:
                    self.check_repeat(doc, model, rep)
                    check_wrk_histogram(self, run, rep, (model, rep["round"]))
                self.check_spread(c)
            self.check_starved(cells)
            self.check_ceiling(doc, cells, r.stdout)
            with open(os.path.join(run, "report.md")) as f:
                self.assertIn("share of ceiling", f.read())

    def check_ceiling(self, doc, cells, stdout):
        """The ceiling ran as nginx does, on the backend its probe chose, and
        every other repeat has its share of the ceiling in the same round."""
        ce = doc["run"]["settings"]["ceiling"]
        self.assertEqual(doc["tools"]["ceiling"], {"available": True, "reason": None})
        chosen = ce["scenarios"]["1KiB-ka-c16"]
        self.assertIn(chosen["backend"], ce["backends"])
        if len(ce["backends"]) == 2:  # io_uring works here: both were probed
            self.assertEqual(sorted(chosen["probe_rps"]), ["epoll", "uring"])
            self.assertEqual(len(chosen["order"]), 4)
            means = {b: sum(v) / len(v) for b, v in chosen["probe_rps"].items()}
            self.assertEqual(chosen["backend"], max(means, key=means.get))
            self.assertIn("chosen by a probe", stdout)
        else:
            self.assertIn("%s only" % ce["backends"][0], stdout)
        self.assertIn("ceiling backend per scenario (lead in the probe): 1KiB-ka-c16 %s"
                      % chosen["backend"], stdout)
        ceiling = {r["round"]: r for r in cells["ceiling"]["repeats"]}
        for rep in ceiling.values():
            cmd = rep["server_command"]
            self.assertEqual(rep["ceiling_backend"], chosen["backend"])
            self.assertEqual(cmd[cmd.index("--backend") + 1], chosen["backend"])
            self.assertTrue(cmd[cmd.index("--file") + 1].endswith("/docroot/f-1KiB.bin"), cmd)
            self.assertEqual((cmd[cmd.index("--workers") + 1], cmd[cmd.index("--cpus") + 1]),
                             ("1", "0"))  # as nginx: the bench's workers and server CPUs
            self.assertIsNone(rep["ceiling_ratio"])
        for model in ("prefork:workers=1", "nginx"):
            ratios = []
            for rep in cells[model]["repeats"]:
                want = rep["rps"] / ceiling[rep["round"]]["rps"]
                self.assertAlmostEqual(rep["ceiling_ratio"], want, places=9, msg=model)
                ratios.append(want)
            s = cells[model]["summary"]["ceiling_ratio"]
            self.assertAlmostEqual(s["median"], sum(ratios) / 2, places=9)

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
        # the ceiling, when it runs, opens no file at all: no cache to give it
        self.assertEqual(set(cells) - {"ceiling"}, {"epoll", "nginx"})
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
        self.assertEqual(doc["models"], ["prefork:workers=1", "nginx", "ceiling"])
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
        if model in ("nginx", "ceiling"):
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


class OpenLoopSmokeTest(unittest.TestCase):
    """The open-loop profiles end to end, on 1 s windows (about 40 s)."""

    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def run_profile(self, args):
        env = dict(os.environ, C10K_REAL_BIN=BIN)
        out = tempfile.mkdtemp()
        self.addCleanup(subprocess.run, ["rm", "-rf", out])
        r = run_bench(["--bin", STATS_BIN, "--duration", "1", "--warmup", "0.5", "--out", out]
                      + args, env=env, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        run = os.path.join(out, "latest")
        with open(os.path.join(run, "results.json")) as f:
            doc = json.load(f)
        check_schema(self, doc, kinds=("closed", "latency", "crossover"))
        self.assertTrue(os.path.exists(os.path.join(run, "report.md")), r.stderr)
        with open(os.path.join(run, "report.md")) as f:
            return run, doc, f.read()

    def test_latency_ladder(self):
        run, doc, md = self.run_profile(["--profile", "latency", "--models", "epoll,threaded",
                                         "--ladder", "50,100,200"])
        self.assertEqual([s["kind"] for s in doc["scenarios"]], ["closed", "latency"])
        closed, lat = doc["scenarios"]
        o = doc["run"]["settings"]["open_loop"]
        self.assertEqual((o["schedule"], o["slo_p99_us"], o["max_lag_s"]),
                         ("poisson", 1000.0, 0.0005))
        self.assertEqual(len(o["step_orders"]), 1)
        for st in o["step_orders"][0]:
            self.assertEqual(sorted(st["order"]), sorted(doc["models"]))
        cells = {(c["model"], c["scenario"]): c for c in doc["cells"]}
        self.assertEqual(len(cells), 3 * 2)
        for model in ("epoll", "threaded", "nginx"):
            peak = cells[model, closed["id"]]
            c = cells[model, lat["id"]]
            self.assertNotEqual(c["status"], "failed", c["reasons"])
            self.assertAlmostEqual(c["peak_closed_rps"], peak["repeats"][0]["rps"])
            self.assertEqual([s["offered_rps"] for s in c["steps"]],
                             [max(1, round(c["peak_closed_rps"] * p / 100))
                              for p in (50, 100, 200)])
            self.assertEqual([len(r["steps"]) for r in c["repeats"]], [3])
            for s in c["steps"]:
                self.check_step(run, doc, model, s, 256)
            counted = [s for s in c["steps"] if not s["client_bound"] and not s["starved"]
                       and not s["errors_total"]]
            under = [s["offered_rps"] for s in counted if s["lat_p99_us"] < 1000]
            self.assertEqual(c["knee_rps"], max(under) if under else None, model)
            self.assertEqual("client-bound" in c["flags"], any(
                s["client_bound"] for s in c["steps"]
                if c["knee_rps"] is None or s["offered_rps"] > c["knee_rps"]), model)
        self.assertIn("### 1KiB keep-alive, 256 conns, open-loop ladder", md)
        table = md.split("### 1KiB keep-alive, 256 conns, open-loop ladder", 2)[-1]
        self.assertEqual(len([ln for ln in table.split("\n\n")[2].splitlines()
                              if ln.startswith("| ")]), 1 + 3 * 3)   # head, a row per step

    def test_crossover(self):
        run, doc, md = self.run_profile(["--profile", "crossover", "--models", "epoll",
                                         "--rate", "2000", "--connections", "10,200"])
        self.assertEqual([s["kind"] for s in doc["scenarios"]], ["crossover"])
        sc = doc["scenarios"][0]
        self.assertEqual((sc["offered_rps"], sc["connections_steps"]), (2000, [10, 200]))
        for c in doc["cells"]:
            self.assertNotEqual(c["status"], "failed", c["reasons"])
            self.assertEqual(c["knee_rps"], None)
            self.assertEqual([s["connections"] for s in c["steps"]], [10, 200])
            for s in c["steps"]:
                self.check_step(run, doc, c["model"], s, s["connections"])
                self.assertEqual(s["offered_rps"], 2000)
        self.assertIn("p99 ms, 200 conns", md)

    def check_step(self, run, doc, model, s, conns):
        label = (model, s["offered_rps"], conns)
        self.assertEqual(s["connections"], conns, label)
        self.assertIn(s["status"], ("ok", "degraded"), (label, s.get("failure")))
        self.assertGreater(s["requests"], 0, label)
        self.assertEqual(sum(n for _, n in s["lat_histogram_us"]), s["requests"], label)
        self.assertEqual(len(s["timeline"]), 1, label)           # one per second of window
        self.assertLessEqual(s["lat_p50_us"], s["lat_p99_us"])
        self.assertLessEqual(s["lat_p99_us"], s["lat_max_us"])
        self.assertTrue(0 < s["fairness_jain"] <= 1.0 + 1e-9, label)
        self.assertIsInstance(s["client_bound"], bool)
        self.assertEqual(s["client_bound"], not s["load_valid"] or s["little"]["ok"] is False,
                         label)
        self.assertEqual(set(s["little"]), {"expected", "observed", "ok"})
        self.assertGreater(s["client_cpu_util"], 0, label)
        self.assertGreater(s["cpu_us_per_req"], 0, label)
        self.assertGreater(s["threads_max"], 0, label)
        self.assertEqual(s["conns_established"], conns, label)
        self.assertGreater(s["server_window_s"], 0.3, label)
        if doc["tools"]["perf"]["available"]:
            self.assertGreater(s["syscalls_per_req"], 0, label)
        self.assertTrue(os.path.exists(os.path.join(run, s["raw"]["load"])), label)
        if model != "nginx":
            self.assertIsInstance(s["model_counters"], dict,
                                  (label, s.get("model_counters_unavailable")))


def main():
    global BIN
    BIN = testmain.pop_bin(BIN)
    return testmain.run("bench")


if __name__ == "__main__":
    sys.exit(main())
