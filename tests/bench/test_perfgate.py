#!/usr/bin/python3
"""Tests of the regression gate (bench/perfgate.py, bench/harness/perfgate.py).

    /usr/bin/python3 tests/bench/test_perfgate.py [--bin BUILD/c10k]

1. The rules, without a server: a limit is 10% over the baseline or the
   absolute tolerance over it, whichever is more; a model over its limit
   fails naming the model and the counter; a model missing from the
   baseline is "no baseline", not a failure; a baselined model that
   `c10k models` no longer lists fails; a bad baseline file is a usage
   error; --update keeps the models it did not measure unless it measured
   them all; the steadiness rule; the lowest value over retries.
2. The check on scripted measurements: exit 1 naming the model and the
   counter, the retries (a counter's lowest value counts), gone, new and
   unmeasurable models. Measuring for real is `make perfgate`, in CI.
3. Usage errors through the command: exit 2, one line, no traceback.
Prints "perfgate: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import perfgate as pg  # noqa: E402
from harness.util import UsageError  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")

BASE = {"epoll": {"syscalls_nowait_per_req": 6.0, "ctx_vol_per_req": 0.01,
                  "idle_pss_bytes_per_conn": 64},
        "threaded": {"syscalls_nowait_per_req": 7.0, "ctx_vol_per_req": 1.0,
                     "idle_pss_bytes_per_conn": 26000}}


def got(sc, vol, idle, rps=1000.0):
    return {"syscalls_nowait_per_req": sc, "ctx_vol_per_req": vol,
            "idle_pss_bytes_per_conn": idle, "rps": rps, "syscalls_wait_per_req": 0.03}


class RulesTest(unittest.TestCase):
    def test_limit_relative_or_absolute(self):
        self.assertAlmostEqual(pg.limit(6.0, 0.05), 6.6)
        # near zero, 10% is nothing: the absolute tolerance decides
        self.assertAlmostEqual(pg.limit(0.01, 0.1), 0.11)
        self.assertAlmostEqual(pg.limit(64, 512), 576)
        self.assertAlmostEqual(pg.limit(26000, 512), 28600)

    def test_verdicts(self):
        listed = ["threaded", "epoll", "coro"]
        measured = {"epoll": got(6.5, 0.105, 500), "threaded": got(7.8, 1.0, 26000),
                    "coro": got(3.0, 0.0, 9000)}
        v = pg.verdicts(BASE, measured, listed)
        self.assertEqual(v["epoll"], ("ok", []))   # all within: 6.6, 0.11, 576
        self.assertEqual(v["threaded"][0], "fail")
        self.assertEqual(len(v["threaded"][1]), 1)
        self.assertIn("threaded: syscalls per request besides waits 7.800 exceeds its limit 7.700",
                      v["threaded"][1][0])
        self.assertEqual(v["coro"][0], "no baseline")  # new: reported, not a failure

    def test_each_counter_fails_alone(self):
        for key, bad in (("syscalls_nowait_per_req", 6.61), ("ctx_vol_per_req", 0.111),
                         ("idle_pss_bytes_per_conn", 577)):
            m = got(6.0, 0.01, 64)
            m[key] = bad
            v = pg.verdicts({"epoll": BASE["epoll"]}, {"epoll": m}, ["epoll"])["epoll"]
            what = next(w for k, w, _, _ in pg.COUNTERS if k == key)
            self.assertEqual(v[0], "fail", key)
            self.assertIn("epoll: %s" % what, v[1][0])

    def test_gone_model_and_errors_fail(self):
        v = pg.verdicts(BASE, {"epoll": {"error": "could not start: x"}}, ["epoll", "uring"])
        self.assertEqual(v["threaded"][0], "fail")
        self.assertIn("no longer lists it", v["threaded"][1][0])
        self.assertEqual(v["epoll"][0], "fail")
        self.assertIn("could not be measured: could not start", v["epoll"][1][0])
        self.assertEqual(v["uring"], ("not measured", []))

    def test_lowest_and_steady(self):
        runs = [got(7.0, 0.2, 900), got(6.1, 0.3, 700), {"error": "x"}]
        low = pg.lowest(runs)
        self.assertEqual((low["syscalls_nowait_per_req"], low["ctx_vol_per_req"],
                          low["idle_pss_bytes_per_conn"]), (6.1, 0.2, 700))
        self.assertEqual(pg.lowest([{"error": "x"}]), {"error": "x"})
        self.assertTrue(pg.steady([6.0, 6.1, 6.2], 0.05))        # 3% apart
        self.assertFalse(pg.steady([6.0, 6.5, 6.3], 0.05))       # 8% apart
        self.assertTrue(pg.steady([0.004, 0.04, 0.01], 0.1))     # near zero: within 0.05
        self.assertFalse(pg.steady([0.004, 0.07, 0.01], 0.1))

    def test_baseline_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "b.json")
            for text, want in (("{", "not valid JSON"), ("[]", "not a perfgate baseline"),
                               ('{"schema": "x", "models": {}}', "not a perfgate baseline"),
                               ('{"schema": "%s", "models": {"epoll": {"a": 1}}}' % pg.SCHEMA,
                                "no numeric counters"),
                               ('{"schema": "%s", "models": {"epoll": {"syscalls_nowait_per_req": '
                                '"6"}}}' % pg.SCHEMA, "no numeric counters")):
                with open(path, "w") as f:
                    f.write(text)
                with self.assertRaises(UsageError, msg=text) as e:
                    pg.load_baseline(path)
                self.assertIn(want, str(e.exception), text)
            with self.assertRaises(UsageError) as e:
                pg.load_baseline(os.path.join(d, "none.json"))
            self.assertIn("make perfgate-update", str(e.exception))

    def test_update_merges_or_replaces(self):
        machine = {"recorded": "now"}
        old = {"models": {"threaded": dict(BASE["threaded"]),
                          "gone": {"syscalls_nowait_per_req": 1}}}
        runs = {"epoll": [got(6.0, 0.01, 64), got(6.2, 0.02, 128), got(6.1, 0.0, 64)]}
        doc = pg.baseline_doc(old, runs, machine, replace_all=False)
        self.assertEqual(sorted(doc["models"]), ["epoll", "gone", "threaded"])
        e = doc["models"]["epoll"]
        self.assertEqual((e["syscalls_nowait_per_req"], e["ctx_vol_per_req"],
                          e["idle_pss_bytes_per_conn"]), (6.1, 0.01, 64))
        self.assertEqual(e["runs"]["syscalls_nowait_per_req"], [6.0, 6.2, 6.1])
        doc = pg.baseline_doc(old, runs, machine, replace_all=True)
        self.assertEqual(sorted(doc["models"]), ["epoll"])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "b.json")
            pg.write_baseline(path, doc)
            with open(path) as f:
                text = f.read()
            self.assertIn('"syscalls_nowait_per_req": [6.0, 6.2, 6.1]', text)  # one line per list
            _, models = pg.load_baseline(path)
            self.assertEqual(models["epoll"]["syscalls_nowait_per_req"], 6.1)

    def test_committed_baseline_reads(self):
        doc, models = pg.load_baseline(pg.BASELINE)
        self.assertTrue(models)
        for m, c in models.items():
            self.assertEqual(sorted(c), sorted(k for k, _, _, _ in pg.COUNTERS), m)


def gate(args, timeout=60):
    return subprocess.run([sys.executable, os.path.join(REPO, "bench", "perfgate.py"),
                           "--bin", BIN] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


class CheckTest(unittest.TestCase):
    """The gate's check on scripted measurements (harness.perfgate.measure
    replaced): exit status, the lines it prints, the retries. Measuring for
    real is what `make perfgate` does in CI, against the committed baseline."""

    def run_check(self, script, baseline, listed, retries=2):
        calls = []

        def fake_measure(gr, spec):
            calls.append(spec.name)
            return script[spec.name].pop(0)
        real, pg.measure = pg.measure, fake_measure
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                rc = pg.check(types.SimpleNamespace(retries=retries), None, list(script),
                              baseline, listed)
        finally:
            pg.measure = real
        return rc, out.getvalue(), calls

    def test_regression_fails_naming_model_and_counter(self):
        rc, out, calls = self.run_check({"epoll": [got(7.0, 0.01, 64)] * 3}, BASE,
                                        ["threaded", "epoll"])
        self.assertEqual(rc, 1, out)
        self.assertEqual(calls, ["epoll"] * 3)  # measured again twice: still over
        self.assertIn("perfgate: FAIL epoll: syscalls per request besides waits 7.000 exceeds "
                      "its limit 6.600 (baseline 6.000, +10% or +0.050)", out)
        self.assertNotIn("FAIL epoll: voluntary", out)
        self.assertNotIn("FAIL threaded", out)  # listed, not measured this time
        self.assertIn("perfgate: FAILED", out)

    def test_noise_passes_on_a_retry(self):
        rc, out, calls = self.run_check({"epoll": [got(7.0, 0.01, 64), got(6.1, 0.2, 64)]},
                                        BASE, ["threaded", "epoll"])
        # the lowest of each counter: 6.1 syscalls (first run was noise), but
        # 0.01 voluntary switches (the second run's 0.2 was)
        self.assertEqual(rc, 0, out)
        self.assertEqual(calls, ["epoll"] * 2)
        self.assertIn("6.100 syscalls/req besides waits  0.0100 vol sw/req", out)
        self.assertIn("ok (lowest of 2 runs)", out)
        self.assertIn("perfgate: passed", out)

    def test_gone_new_and_unmeasurable_models(self):
        rc, out, _ = self.run_check({"epoll": [{"error": "could not start: x"}] * 3,
                                     "coro": [got(3.0, 0.0, 9000)]}, BASE, ["epoll", "coro"])
        self.assertEqual(rc, 1, out)
        self.assertIn("perfgate: FAIL threaded: in the baseline, but `c10k models` no longer "
                      "lists it", out)
        self.assertIn("perfgate: FAIL epoll: could not be measured: could not start: x", out)
        self.assertIn("perfgate: coro: no baseline (not checked", out)
        self.assertNotIn("FAIL coro", out)
        # a new model alone is no failure
        rc, out, _ = self.run_check({"coro": [got(3.0, 0.0, 9000)]}, {}, ["coro"])
        self.assertEqual(rc, 0, out)


class CommandTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)

    def test_usage_errors_exit_2(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "bad.json")
            with open(bad, "w") as f:
                f.write("{")
            for args, want in ((["--baseline", bad], "not valid JSON"),
                               (["--models", "nosuch"], "unknown model 'nosuch'"),
                               (["--runs", "0", "--update"], "--runs 0")):
                r = gate(args, timeout=30)
                self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
                self.assertIn(want, r.stderr, args)
                self.assertNotIn("Traceback", r.stderr, args)


def main():
    global BIN
    BIN = testmain.pop_bin(BIN)
    return testmain.run("perfgate")


if __name__ == "__main__":
    sys.exit(main())
