#!/usr/bin/python3
"""Unit tests of the pure parts of the bench harness (bench/harness/).

    /usr/bin/python3 tests/bench/test_harness_units.py

No server, no wrk: plan building and the round order, size parsing, model
variants, summaries over rounds, the spread and the flag rules (starved,
noisy), the counters' parsers and the accept-queue reader (on a socket of
its own). Each module is tested through its functions, as the later
profiles will use them. Prints "bench units: N passed, N failed, N skipped";
exits 1 on any failure.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import cell, cli, counters, docroot, loadgen, plan, refs, results  # noqa: E402
from harness import ceiling, ladder, openloop, servers, sockdiag, variants  # noqa: E402
from harness.util import GiB, KiB, MiB, UsageError  # noqa: E402

# `c10k serve --help` as the binary prints it (shortened), the source of
# truth for which variant flags exist and whether they take a value.
SERVE_HELP = """\
usage: c10k serve MODEL [flags]

common flags:
  --bind ADDR                address to listen on (default 127.0.0.1)
  --port N                   TCP port; 0 lets the kernel pick one (default 8080)
  --root DIR                 document root (default .)
  --workers N                workers (threads, loops or processes; default: usable CPUs)
  --cpus LIST                pin the server to these CPUs, e.g. 0 or 0-1,3
  --keepalive-timeout S      close idle keep-alive connections after S s (5)
  --max-requests N           requests per connection, 0 = unlimited (default 0)
  --grace S                  on SIGTERM, let in-flight responses finish for S s (10)
  --backlog N                listen(2) backlog (default 4096)

threaded: a blocking thread per connection (--pool N: a fixed thread pool)
  --stack-size KIB           stack per thread in KiB (default 64)
  --pool N                   a fixed pool of N threads instead of a thread per connection

prefork: pre-forked blocking worker processes under a master (Apache prefork)
  --start-workers N          workers forked at start (default 5)
  --max-requests-per-child N recycle a worker after N connections (0 = never)

epoll: an epoll event loop per thread, connections as state machines
  --level-triggered          level-triggered epoll (default: edge-triggered)
  --shared-listener          one listener shared with EPOLLEXCLUSIVE (default: SO_REUSEPORT each)

libevent: event loops on libevent (event_base, evconnlistener), one per worker thread

uring: io_uring: completion-based rings per thread, multishot accept/recv, provided buffers
  --entries N                submission queue entries and response slots per ring (default 256)
  --sqpoll                   a kernel thread polls the submission queue (its CPU counts)
  --zc                       zero-copy send (SEND_ZC) for chunks of 16 KiB or more

SIGINT/SIGTERM stop gracefully: no new connections, in-flight responses finish
(within --grace), then exit 0. Times accept decimals (0.5).
"""
HELP = variants.parse_serve_help(SERVE_HELP)
MODELS = ["threaded", "prefork", "epoll", "libevent", "uring"]
BINARY = plan.Binary("/bin/c10k", MODELS, ["threaded", "prefork"], HELP)


def args_for(argv):
    return cli.parse_args(["--bin", "/bin/c10k"] + argv)


def make_plan(argv=(), ncpu=2):
    return plan.from_args(args_for(list(argv)), BINARY, ncpu=ncpu)


class SizeTest(unittest.TestCase):
    def test_units_that_exist(self):
        for text, want in (("128", 128), ("128B", 128), ("4KiB", 4 * KiB), ("1MiB", MiB),
                           ("2GiB", 2 * GiB), (" 16MiB ", 16 * MiB)):
            self.assertEqual(plan.parse_size(text), want, text)

    def test_made_up_units_refused_with_a_suggestion(self):
        for text, hint in (("1KB", "did you mean 1KiB?"), ("1kb", "did you mean 1KiB?"),
                           ("1k", "did you mean 1KiB?"), ("1kib", "did you mean 1KiB?"),
                           ("2MB", "did you mean 2MiB?"), ("3GB", "did you mean 3GiB?"),
                           ("5b", "did you mean 5B?")):
            with self.assertRaises(UsageError) as e:
                plan.parse_size(text)
            self.assertIn(hint, str(e.exception), text)

    def test_not_sizes(self):
        for text in ("12Q", "1.5MiB", "", "KiB", "-1", "0", "65GiB"):
            with self.assertRaises(UsageError, msg=text):
                plan.parse_size(text)

    def test_labels(self):
        self.assertEqual([plan.size_label(n) for n in (128, KiB, 1536, MiB, 2 * GiB)],
                         ["128B", "1KiB", "1536B", "1MiB", "2GiB"])


class VariantTest(unittest.TestCase):
    def test_help_parsed(self):
        self.assertEqual(HELP["threaded"], {"stack-size": "KIB", "pool": "N"})
        self.assertEqual(HELP["epoll"], {"level-triggered": None, "shared-listener": None})
        self.assertEqual(HELP["libevent"], {})
        self.assertEqual(HELP["prefork"], {"start-workers": "N", "max-requests-per-child": "N"})
        self.assertEqual(HELP["common"]["workers"], "N")
        self.assertNotIn("usage", HELP)

    def test_flags_mapped(self):
        for spec, flags in (("threaded:pool=64", ["--pool", "64"]),
                            ("epoll:level-triggered", ["--level-triggered"]),
                            ("uring:entries=16+zc", ["--entries", "16", "--zc"]),
                            ("prefork:workers=1", ["--workers", "1"]),
                            ("threaded:stack-size=128+pool=8",
                             ["--stack-size", "128", "--pool", "8"])):
            v = variants.parse_variant(spec, HELP)
            self.assertEqual((v.name, v.model, v.flags), (spec, spec.split(":")[0], flags))

    def test_bad_variants(self):
        for spec, want in (("threaded:poool=64", "has no flag --poool"),
                           ("threaded:pool", "takes a value (N)"),
                           ("threaded:pool=", "takes a value"),
                           ("threaded:pool=abc", "want a whole number"),
                           ("epoll:level-triggered=1", "takes no value"),
                           ("epoll:cpus=1", "set by the bench"),
                           ("epoll:port=80", "set by the bench"),
                           ("threaded:pool=4+pool=8", "given twice"),
                           ("threaded:", "nothing after the colon"),
                           ("libevent:zc", "has no flag --zc")):
            with self.assertRaises(UsageError, msg=spec) as e:
                variants.parse_variant(spec, HELP)
            self.assertIn(want, str(e.exception), spec)

    def test_model_list(self):
        got = variants.parse_models("threaded,threaded:pool=64,nginx,epoll:level-triggered",
                                    MODELS, HELP, ("nginx",))
        self.assertEqual([v.name for v in got],
                         ["threaded", "threaded:pool=64", "epoll:level-triggered"])
        got = variants.parse_models("all,threaded:pool=64", MODELS, HELP, ("nginx",))
        self.assertEqual([v.name for v in got], MODELS + ["threaded:pool=64"])
        for text, want in (("nosuch", "unknown model 'nosuch'"), ("epoll,epoll", "twice"),
                           ("nginx:workers=2", "reference server"), ("nginx", "names no"),
                           ("epoll,,uring", "empty name")):
            with self.assertRaises(UsageError, msg=text) as e:
                variants.parse_models(text, MODELS, HELP, ("nginx",))
            self.assertIn(want, str(e.exception), text)

    def test_server_command_line(self):
        """Per-connection models get no --workers unless the variant sets
        it; a variant's --workers replaces the bench's."""
        def argv(spec, workers=2):
            v = variants.parse_variant(spec, HELP) if ":" in spec else variants.Variant(spec,
                                                                                    spec)
            return servers.model_argv("c10k", v, 0, "/d", workers, ["threaded", "prefork"],
                                      [0], 5, 10)
        self.assertNotIn("--workers", argv("threaded"))
        self.assertEqual(argv("prefork:workers=1").count("--workers"), 1)
        self.assertEqual(argv("prefork:workers=1")[-2:], ["--workers", "1"])
        a = argv("epoll")
        self.assertEqual(a[a.index("--workers") + 1], "2")
        a = argv("epoll:workers=3")
        self.assertEqual((a.count("--workers"), a[a.index("--workers") + 1]), (1, "3"))
        self.assertEqual(argv("epoll:level-triggered")[-1], "--level-triggered")


class StatsFlagTest(unittest.TestCase):
    """--stats-file is passed only when `c10k serve --help` lists it, and
    the model counters are null (with the reason) otherwise."""

    def test_detected_not_assumed(self):
        self.assertFalse(BINARY.has_serve_flag("stats-file"))
        with_flag = SERVE_HELP.replace(
            "common flags:\n", "common flags:\n  --stats-file FILE   counters as JSON\n")
        self.assertTrue(plan.Binary("c", MODELS, [], variants.parse_serve_help(with_flag))
                        .has_serve_flag("stats-file"))

    def test_counters_or_null(self):
        class FakeRun:
            stats_file_supported = False
        runner = cell.CellRunner(FakeRun())
        epoll, nginx = variants.Variant("epoll", "epoll"), variants.Variant("nginx", "nginx",
                                                                            reference=True)
        got = runner.model_counters(epoll, None, (None, None), (None, None))
        self.assertIsNone(got["model_counters"])
        self.assertIn("no --stats-file", got["model_counters_unavailable"])
        got = runner.model_counters(nginx, None, (None, None), (None, None))
        self.assertIsNone(got["model_counters"])
        got = runner.model_counters(epoll, "f", ({"a": 1}, None), ({"a": 5}, None))
        self.assertEqual(got, {"model_counters": {"a": 4}})
        got = runner.model_counters(epoll, "f", ({"a": 1}, None), (None, "stats file gone"))
        self.assertEqual(got, {"model_counters": None,
                               "model_counters_unavailable": "stats file gone"})
        self.assertIn("--stats-file", servers.model_argv(
            "c", epoll, 0, "/d", 1, [], [0], 5, 10, stats_file="/r/raw/stats-x.json"))


class OpenFileCacheTest(unittest.TestCase):
    """c10k bench --open-file-cache N: every c10k model gets the flags, nginx
    the same cache in its nginx.conf, and results.json records it."""

    CACHE_HELP = SERVE_HELP.replace(
        "common flags:\n", "common flags:\n  --open-file-cache N        keep N open files\n"
        "  --open-file-cache-valid S  ... check again after S s (60)\n")
    CACHE_BINARY = plan.Binary("/bin/c10k", MODELS, ["threaded", "prefork"],
                               variants.parse_serve_help(CACHE_HELP))

    def plan(self, argv):
        return plan.from_args(args_for(argv), self.CACHE_BINARY, ncpu=2)

    def test_off_by_default(self):
        p = self.plan([])
        self.assertIsNone(p.open_file_cache)
        self.assertNotIn("--open-file-cache", servers.model_argv(
            "c", variants.Variant("epoll", "epoll"), 0, "/d", 1, [], [0], 5, 10))
        self.assertIn("open_file_cache off;", refs.nginx_conf("/r", "/d", 1, 1, 1024, 5, 10,
                                                              False))
        self.assertIsNone(results.open_file_cache_setting(p.open_file_cache))
        self.assertNotIn("open-file cache", plan.summary_line(p))

    def test_every_server_gets_the_same_cache(self):
        p = self.plan(["--open-file-cache", "64", "--open-file-cache-valid", "2"])
        self.assertEqual(p.open_file_cache, {"max": 64, "valid_s": 2})
        flags = ["--open-file-cache", "64", "--open-file-cache-valid", "2"]
        for spec in p.servers:
            if spec.reference:
                continue
            argv = servers.model_argv("c", spec, 0, "/d", 1, ["threaded", "prefork"], [0], 5,
                                      10, open_file_cache=p.open_file_cache)
            i = argv.index("--open-file-cache")
            self.assertEqual(argv[i:i + 4], flags, spec.name)
        conf = refs.nginx_conf("/r", "/d", 1, 1, 1024, 5, 10, False,
                               open_file_cache=p.open_file_cache)
        http = conf[conf.index("http {"):]
        self.assertIn("open_file_cache max=64 inactive=3600s; open_file_cache_valid 2s;", http)
        self.assertNotIn("open_file_cache off", conf)
        got = results.open_file_cache_setting(p.open_file_cache)
        self.assertEqual(got, {"max": 64, "valid_s": 2, "c10k_flags": " ".join(flags),
                               "nginx": "open_file_cache max=64 inactive=3600s; "
                                        "open_file_cache_valid 2s;"})
        self.assertIn("open-file cache of 64 per worker, checked every 2 s, in every server",
                      plan.summary_line(p))
        self.assertEqual(self.plan(["--open-file-cache", "8"]).open_file_cache["valid_s"], 60)

    def test_nginx_takes_the_configuration(self):
        if not shutil.which("nginx"):
            self.skipTest("nginx is not installed")
        with tempfile.TemporaryDirectory() as d:
            for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(d, "tmp", t))
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(refs.nginx_conf(d, d, 1, 1, 1024, 5, 10, os.geteuid() == 0,
                                        open_file_cache={"max": 64, "valid_s": 1}))
            p = subprocess.run(["nginx", "-t", "-p", d, "-c", conf, "-e",
                                os.path.join(d, "error.log")], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_usage_errors(self):
        for argv, want in ((["--open-file-cache", "0"], "want 1 to 1000000"),
                           (["--open-file-cache-valid", "5"], "needs --open-file-cache"),
                           (["--open-file-cache", "8", "--open-file-cache-valid", "0"],
                            "whole seconds"),
                           (["--open-file-cache", "8", "--open-file-cache-valid", "0.5"],
                            "invalid int")):
            with self.assertRaises(UsageError, msg=argv) as e:
                self.plan(argv)
            self.assertIn(want, str(e.exception), argv)
        with self.assertRaises(UsageError) as e:
            make_plan(["--open-file-cache", "8"])  # a binary without the flag
        self.assertIn("rebuild it", str(e.exception))
        for spec in ("epoll:open-file-cache=8", "epoll:open-file-cache-valid=1"):
            with self.assertRaises(UsageError, msg=spec) as e:
                variants.parse_variant(spec, self.CACHE_BINARY.help_flags)
            self.assertIn("set by the bench", str(e.exception), spec)


class PlanTest(unittest.TestCase):
    def test_quick(self):
        p = make_plan()
        self.assertEqual((p.rounds, p.duration, p.warmup), (3, 2, 1))
        self.assertEqual(p.names, MODELS + ["nginx", "ceiling"])
        self.assertEqual([s["id"] for s in p.scenarios],
                         ["1KiB-ka-c16", "1KiB-ka-c256", "1KiB-close-c64", "1MiB-ka-c16"])
        self.assertTrue(all(s["kind"] == "closed" and s["link"] == "loopback"
                            for s in p.scenarios))
        self.assertEqual((p.server_cpus, p.client_cpus, p.workers), ([0], [1], 1))
        self.assertEqual(len(p.cells()), 3 * 7 * 4)

    def test_quick_takes_about_the_old_time(self):
        """quick was 1 round of 1 s + 5 s per cell, 7 servers x 4 scenarios,
        about 3.5 min; three rounds of 2 s windows came to about 4.2 min.
        The ceiling adds a row (12 cells) and a probe per scenario: about
        50 s, of which the probes are under 15 s."""
        real = plan.from_args(args_for([]), plan.Binary("c", MODELS + ["libuv"], [], HELP),
                              ncpu=2)
        self.assertEqual(len(real.cells()), 96)
        self.assertLess(real.estimate_s(), 5.1 * 60)
        no_ceiling = plan.from_args(args_for([]), plan.Binary("c", MODELS + ["libuv"], [],
                                                              HELP), ncpu=2,
                                    references=("nginx",))
        self.assertEqual(len(no_ceiling.cells()), 84)
        self.assertLess(no_ceiling.estimate_s(), 4.3 * 60)
        probes = sum(real.cell_cost(1, sc, "ceiling") - real.cell_seconds(sc)
                     for sc in real.scenarios)
        self.assertLess(probes, 15)
        self.assertEqual(probes, sum(ceiling.probe_seconds(sc) for sc in real.scenarios))

    def test_rounds_visit_every_server_in_a_seeded_random_order(self):
        p = make_plan(["--rounds", "5", "--seed", "7"])
        self.assertEqual(len(p.orders), 5)
        for order in p.orders:
            self.assertEqual(sorted(order), sorted(p.names))
        self.assertGreater(len({tuple(o) for o in p.orders}), 1)
        self.assertEqual(p.orders, make_plan(["--rounds", "5", "--seed", "7"]).orders)
        self.assertNotEqual(p.orders, make_plan(["--rounds", "5", "--seed", "8"]).orders)
        cells = p.cells()
        # round-major; within a round, each scenario visits the round's order
        self.assertEqual([r for r, _, _ in cells], sorted(r for r, _, _ in cells))
        per = len(p.names)
        for i in range(0, len(cells), per):
            chunk = cells[i:i + per]
            r = chunk[0][0]
            self.assertEqual([n for _, _, n in chunk], p.orders[r - 1])
            self.assertEqual(len({sc["id"] for _, sc, _ in chunk}), 1)

    def test_seed_is_random_when_not_given(self):
        seeds = {make_plan().seed for _ in range(5)}
        self.assertGreater(len(seeds), 1)

    def test_overrides(self):
        p = make_plan(["--sizes", "128,1MiB", "--connections", "1,16", "--modes", "close",
                       "--duration", "3", "--warmup", "0.5", "--repeat", "2",
                       "--models", "epoll,threaded:pool=64", "--workers", "2",
                       "--server-cpus", "1", "--client-cpus", "0"])
        self.assertEqual([s["id"] for s in p.scenarios],
                         ["128B-close-c1", "128B-close-c16", "1MiB-close-c1",
                          "1MiB-close-c16"])
        self.assertEqual((p.rounds, p.duration, p.warmup, p.workers), (2, 3, 0.5, 2))
        self.assertEqual(p.names, ["epoll", "threaded:pool=64", "nginx", "ceiling"])
        self.assertEqual(p.variants(), {"threaded:pool=64": "threaded --pool 64"})
        self.assertEqual((p.server_cpus, p.client_cpus), ([1], [0]))

    def test_full_includes_the_thread_pool(self):
        p = make_plan(["--profile", "full"])
        self.assertIn("threaded:pool=64", p.names)
        self.assertEqual(p.names[-2:], ["nginx", "ceiling"])
        self.assertEqual(p.rounds, 3)
        # a binary without threaded: the variant is left out, not an error
        other = plan.Binary("c", ["epoll"], [], HELP)
        self.assertEqual(plan.from_args(args_for(["--profile", "full"]), other, 2).names,
                         ["epoll", "nginx", "ceiling"])

    def test_usage_errors(self):
        for argv, want in ((["--rounds", "2", "--repeat", "3"], "disagree"),
                           (["--rounds", "0"], "--rounds"), (["--duration", "0"], "--duration"),
                           (["--warmup", "-1"], "--warmup"), (["--modes", "slow"], "--modes"),
                           (["--connections", "0"], "out of range"),
                           (["--server-cpus", "5"], "do not exist"),
                           (["--sizes", "1KB"], "did you mean 1KiB?")):
            with self.assertRaises(UsageError, msg=argv) as e:
                make_plan(argv)
            self.assertIn(want, str(e.exception), argv)
        for argv, want in ((["--duration", "1.5"], "invalid int"),
                           (["--profile", "nope"], "invalid choice"),
                           (["--seed", "-1"], "--seed"), (["--port", "70000"], "--port")):
            with self.assertRaises(UsageError, msg=argv) as e:
                args_for(argv)
            self.assertIn(want, str(e.exception), argv)

    def test_dry_run_text(self):
        p = make_plan(["--models", "epoll,threaded:pool=64", "--rounds", "2", "--seed", "1"])
        text = plan.dry_run_text(p, ["nginx cannot run (x): its cells would be failed"])
        lines = text.splitlines()
        cells = [line for line in lines if "] round " in line]
        self.assertEqual(len(cells), 2 * 4 * 4)
        self.assertEqual(sum(line.startswith("round ") for line in lines), 2)
        self.assertIn("for the ceiling's probes (one per scenario)", lines[-1])
        self.assertIn("seed 1", lines[0])
        self.assertIn("variant threaded:pool=64 = c10k serve threaded --pool 64", text)
        self.assertIn("nginx cannot run", text)
        self.assertTrue(lines[-1].startswith("estimated time: "), lines[-1])

    def test_without_bin(self):
        self.assertEqual(cli.without_bin(["--bin", "x", "--rounds", "2", "--bin=y", "-q"]),
                         ["--rounds", "2", "-q"])


def rep(rnd, rps=1000.0, status="ok", **kw):
    r = {"round": rnd, "repeat": rnd, "status": status, "rps": rps, "starved": False}
    if status == "failed":
        r = {"round": rnd, "repeat": rnd, "status": status, "failure": "could not start: x"}
    r.update(kw)
    return r


KA16 = plan.scenario(KiB, True, 16)
CLOSE64 = plan.scenario(KiB, False, 64)


class SummaryTest(unittest.TestCase):
    def test_summarize(self):
        reps = [rep(1, 100.0, lat_p99_us=5), rep(2, 300.0, lat_p99_us=7),
                rep(3, 200.0, lat_p99_us=None), rep(4, status="failed")]
        s = results.summarize(reps)
        self.assertEqual(s["rps"], {"min": 100.0, "median": 200.0, "max": 300.0})
        self.assertIsNone(s["lat_p99_us"])  # unavailable in one round: unavailable
        self.assertIsNone(s["syscalls"])
        self.assertTrue(all(k in s for k in results.SCALAR_METRICS))

    def test_spread(self):
        self.assertIsNone(results.spread_pct([100.0]))
        self.assertIsNone(results.spread_pct([]))
        self.assertIsNone(results.spread_pct([0.0, 0.0]))
        self.assertIsNone(results.spread_pct([1.0, None]))
        self.assertAlmostEqual(results.spread_pct([90.0, 100.0, 110.0]), 20.0)
        self.assertAlmostEqual(results.spread_pct([100.0, 105.0]), 100.0 * 5 / 102.5)

    def test_starvation_rule(self):
        base = dict(conns_established=16, accept_queue_max=15)
        self.assertEqual(results.starvation(dict(base, accept_queue_wait_frac=0.1), KA16), [])
        self.assertEqual(results.starvation(dict(base, accept_queue_wait_frac=None), KA16), [])
        why = results.starvation(dict(base, accept_queue_wait_frac=0.9), KA16)
        self.assertEqual(len(why), 1)
        self.assertIn("90%", why[0])
        why = results.starvation(dict(base, conns_established=15, accept_queue_wait_frac=0),
                                 KA16)
        self.assertIn("only 15 of the 16", why[0])
        # Connection: close: connections come and go, so a sample of
        # established ones is no evidence; the queue still counts
        self.assertEqual(results.starvation(dict(conns_established=3,
                                                 accept_queue_wait_frac=0.05), CLOSE64), [])
        self.assertEqual(len(results.starvation(dict(conns_established=3,
                                                     accept_queue_wait_frac=0.5), CLOSE64)), 1)

    def test_flags_over_rounds(self):
        c = results.new_cell("prefork:workers=1", KA16)
        results.add_repeat(c, rep(1, 1000.0))
        self.assertEqual((c["flags"], c["spread_pct"], c["status"]), ([], None, "ok"))
        results.add_repeat(c, rep(2, 1050.0, starved=True, starved_by=["queue"]))
        self.assertEqual(c["flags"], ["starved"])
        self.assertIn("round 2: starved: queue", c["reasons"])
        results.add_repeat(c, rep(3, 1300.0))
        self.assertEqual(c["flags"], ["starved", "noisy"])
        self.assertAlmostEqual(c["spread_pct"], 100.0 * 300 / 1050)
        self.assertEqual(c["summary"]["rps"]["median"], 1050.0)

    def test_quiet_cell_not_noisy_and_failures(self):
        c = results.new_cell("epoll", KA16)
        for i, v in enumerate((1000.0, 1040.0, 1090.0), 1):
            results.add_repeat(c, rep(i, v))
        self.assertEqual(c["flags"], [])  # spread 9%: not above 10%
        results.add_repeat(c, rep(4, status="failed"))
        self.assertEqual(c["status"], "failed")
        self.assertIn("round 4: could not start: x", c["reasons"])
        self.assertEqual(c["summary"]["rps"]["max"], 1090.0)  # failed round left out
        c = results.new_cell("x", KA16)
        results.add_repeat(c, rep(1, degraded_by=["wrk errors"], status="degraded"))
        self.assertEqual((c["status"], c["reasons"]), ("degraded", ["round 1: wrk errors"]))

    def test_csv(self):
        doc = {"scenarios": [KA16], "cells": [results.add_repeat(
            results.new_cell("epoll", KA16), rep(1, 12.5, starved=True, syscalls=None))]}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.csv")
            results.write_csv(path, doc)
            with open(path) as f:
                head, row = [line.rstrip("\n").split(",") for line in f]
        row = dict(zip(head, row))
        self.assertEqual((row["model"], row["round"], row["starved"], row["rps"],
                          row["syscalls"], row["cell_flags"]), ("epoll", "1", "1", "12.5", "",
                                                                "starved"))


FAKE_CEILING = """#!/bin/sh
# a c10k-ceiling whose io_uring backend is unavailable, as in a sandbox
case "$*" in
*"--backend uring"*)
    echo "c10k-ceiling: uring: io_uring is unavailable: io_uring_setup: Operation not permitted" >&2
    exit 2;;
esac
echo "c10k-ceiling: serving x (1 bytes, precomputed) at http://127.0.0.1:1/ with epoll"
exec sleep 30
"""


class CeilingTest(unittest.TestCase):
    """The ceiling reference: found beside c10k, left out when it cannot
    run, epoll alone when io_uring cannot, ceiling_ratio per round."""

    def test_missing_binary_leaves_the_row_out(self):
        with tempfile.TemporaryDirectory() as d:
            bin_path = os.path.join(d, "c10k")
            ok, why = refs.Ceiling.available(bin_path)
            self.assertFalse(ok)
            self.assertIn(os.path.join(d, "c10k-ceiling") + " is missing", why)
            self.assertEqual(plan.runnable_references(bin_path), ("nginx",))
            self.assertIsNone(refs.Ceiling.note(bin_path))
            notes = cli.dry_run_notes(bin_path, make_plan(["--models", "epoll"]))
            self.assertTrue(any(n.startswith("ceiling cannot run (") and "no row" in n
                                for n in notes), notes)

    def test_uring_unavailable_falls_back_to_epoll(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c10k-ceiling")
            with open(path, "w") as f:
                f.write(FAKE_CEILING)
            os.chmod(path, 0o755)
            bin_path = os.path.join(d, "c10k")
            backends, why = refs.ceiling_backends(bin_path)
            self.assertEqual(backends, ("epoll",))
            self.assertIn("io_uring is unavailable", why["uring"])
            self.assertEqual(refs.Ceiling.available(bin_path), (True, ""))
            self.assertIn("the ceiling runs on epoll only", refs.Ceiling.note(bin_path))
            self.assertEqual(plan.runnable_references(bin_path), ("nginx", "ceiling"))

    def test_server_command(self):
        p = make_plan(["--models", "epoll", "--workers", "2", "--server-cpus", "0"])
        run = types.SimpleNamespace(run_dir="/r", docroot="/r/docroot", plan=p,
                                    binary=types.SimpleNamespace(path="/b/c10k"))
        side = types.SimpleNamespace(bind="127.0.0.1", host="127.0.0.1", remote=False)
        srv = refs.CeilingServer(run, variants.Variant("ceiling", "ceiling", reference=True),
                                 0, side, CLOSE64, "uring")
        self.assertEqual(srv.build_argv(), [
            "/b/c10k-ceiling", "--backend", "uring", "--file", "/r/docroot/f-1KiB.bin",
            "--port", "0", "--workers", "2", "--cpus", "0"])
        # it answers every request with one file: only that one is verified
        self.assertEqual(srv.verify_sizes([KiB, MiB]), [KiB])
        self.assertEqual(srv.log_path, "/r/raw/server-ceiling-uring.log")

    def test_choose_the_higher_mean(self):
        best, margin = ceiling.choose({"uring": [100.0, 120.0], "epoll": [90.0, 110.0]})
        self.assertEqual(best, "uring")
        self.assertAlmostEqual(margin, 10.0)
        best, margin = ceiling.choose({"uring": [100.0], "epoll": [150.0, 150.0]})
        self.assertEqual((best, margin), ("epoll", 50.0))
        self.assertEqual(ceiling.choose({"epoll": [5.0]}), ("epoll", None))
        self.assertEqual([["uring", "epoll"][i] for i in ceiling.PROBE_ORDER],
                         ["uring", "epoll", "epoll", "uring"])

    def test_ceiling_ratio_per_round(self):
        ceil = results.new_cell("ceiling", KA16)
        for r, rps in ((1, 2000.0), (2, 1000.0)):
            results.add_repeat(ceil, rep(r, rps))
        epoll = results.new_cell("epoll", KA16)
        for r, rps in ((1, 1000.0), (2, 900.0), (3, 800.0)):
            results.add_repeat(epoll, rep(r, rps))
        other = results.new_cell("nginx", CLOSE64)  # no ceiling in its scenario
        results.add_repeat(other, rep(1, 500.0))
        failed = results.new_cell("threaded", KA16)
        results.add_repeat(failed, rep(1, status="failed"))
        results.set_ceiling_ratios([epoll, ceil, other, failed])
        # the same round of the same scenario, not the ceiling's median
        self.assertEqual([r["ceiling_ratio"] for r in epoll["repeats"]], [0.5, 0.9, None])
        self.assertEqual([r["ceiling_ratio"] for r in ceil["repeats"]], [None, None])
        self.assertIsNone(other["repeats"][0]["ceiling_ratio"])
        self.assertNotIn("ceiling_ratio", failed["repeats"][0])
        # a round without a ceiling leaves the summary unavailable, never 0
        self.assertIsNone(epoll["summary"]["ceiling_ratio"])
        epoll["repeats"].pop()
        results.set_ceiling_ratios([epoll, ceil])
        self.assertEqual(epoll["summary"]["ceiling_ratio"],
                         {"min": 0.5, "median": 0.7, "max": 0.9})
        self.assertIn("ceiling_ratio", results.SCALAR_METRICS)


class CountersTest(unittest.TestCase):
    def test_softirqs(self):
        text = ("                    CPU0       CPU1\n"
                "          HI:          1          2\n"
                "      NET_TX:         10         20\n"
                "      NET_RX:        100        200\n")
        self.assertEqual(counters.parse_softirqs(text), {"HI": 3, "NET_TX": 30, "NET_RX": 300})
        d = counters.softirq_delta({"net_rx": 300, "net_tx": 30},
                                   {"net_rx": 700, "net_tx": 30}, 200)
        self.assertEqual(d, {"softirq_net_rx": 400, "softirq_net_rx_per_req": 2.0,
                             "softirq_net_tx": 0, "softirq_net_tx_per_req": 0.0})
        d = counters.softirq_delta(None, {"net_rx": 1, "net_tx": 1}, 5)
        self.assertIsNone(d["softirq_net_rx"])  # unreadable: null, never 0
        self.assertIsNone(d["softirq_net_rx_per_req"])
        self.assertIsNotNone(counters.softirqs())  # this machine has /proc/softirqs

    def test_steal_and_load(self):
        self.assertEqual(counters.parse_cpu_times(
            "cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"), (35, 1000))
        self.assertIsNone(counters.parse_cpu_times("intr 1 2\n"))
        self.assertEqual(counters.loadavg_1m("0.52 0.40 0.30 1/123 456\n"), 0.52)
        self.assertIsNone(counters.loadavg_1m(""))
        m = counters.MachineSampler()
        time.sleep(0.05)
        s = m.sample()
        self.assertIsInstance(s["loadavg_1m"], float)
        if s["steal_pct"] is not None:
            self.assertTrue(0.0 <= s["steal_pct"] <= 100.0, s)

    def test_perf_csv(self):
        text = ("# started on x\n\n12,,raw_syscalls:sys_enter,1,100.00,,\n"
                "3,,sched:sched_switch,1,100,,\n10,,sched:sched_switch,1,100,,\n"
                "5.5,msec,task-clock,1,100,,\n")
        want = {"syscalls": 12.0, "switches_invol": 3.0, "switches": 10.0, "task_clock_ms": 5.5}
        if counters.WAIT_SYSCALLS:  # the waits among the syscalls, by number
            text += "4,,raw_syscalls:sys_enter,1,100.00,,\n"
            want["syscalls_wait"] = 4.0
            self.assertIn("id == 426", counters.PERF_EVENTS[-1][1][-1])  # io_uring_enter
        self.assertEqual(counters.parse_perf_csv(text), want)
        self.assertIsNone(counters.parse_perf_csv(text.replace("12,", "<not counted>,")))
        self.assertIsNone(counters.parse_perf_csv("# nothing\n"))

    def test_stats_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "stats.json")
            self.assertIsNone(counters.read_stats_file(path)[0])
            with open(path, "w") as f:
                f.write('{"model": "coro", "counters": {"user_switches": 10, "b": 1}}')
            self.assertEqual(counters.read_stats_file(path),
                             ({"user_switches": 10, "b": 1}, None))
            since = time.time_ns()
            time.sleep(0.02)
            counters_, why = counters.read_fresh_stats(path, since, timeout=0.1)
            self.assertIsNone(counters_)  # not rewritten after `since`
            self.assertIn("not rewritten", why)
            with open(path, "w") as f:
                f.write('{"model": "coro", "counters": {"user_switches": 25, "b": 1}}')
            end, _ = counters.read_fresh_stats(path, since, timeout=0.1)
            self.assertEqual(counters.counters_delta({"user_switches": 10, "b": 1}, end),
                             {"b": 0, "user_switches": 15})
            self.assertIsNone(counters.counters_delta(None, end))
            for bad in ('{"counters": {"x": "y"}}', '[1]', '{"counters": {"x": true}}', "{"):
                with open(path, "w") as f:
                    f.write(bad)
                self.assertIsNone(counters.read_stats_file(path)[0], bad)


class AcceptQueueTest(unittest.TestCase):
    """The accept queue and established count of a port, read by netlink
    sock_diag and by /proc/net/tcp, on a listener nobody accepts from."""

    def setUp(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.clients = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(3)]
        time.sleep(0.05)

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.srv.close()

    def test_proc_fallback(self):
        self.assertEqual(sockdiag.proc_tcp_counts(self.port), (3, 3))

    def test_netlink(self):
        sd, why = sockdiag.open_sockdiag()
        if sd is None:
            self.skipTest(why)
        with sd:
            self.assertEqual(sd.accept_queue(self.port), (3, 1))
            self.assertEqual(sd.established_to(self.port), 3)
            conn, _ = self.srv.accept()
            self.assertEqual(sd.accept_queue(self.port), (2, 1))
            conn.close()
            self.assertEqual(sd.accept_queue(self.port + 1 if self.port < 65535 else 1)[0], 0)

    def test_queue_sampler_and_settled(self):
        diag = sockdiag.open_sockdiag()[0]
        q = counters.QueueSampler(self.port, diag)
        for _ in range(4):
            q.sample()
        self.assertEqual((q.samples, q.nonempty, q.peak, q.wait_frac()), (4, 4, 3, 1.0))
        if diag is None:
            return
        s = cell.Settled(self.port, diag)
        self.assertFalse(any(s(1.0) for _ in range(20)))  # never while connections wait
        for _ in range(3):
            self.srv.accept()[0].close()
        self.assertFalse(s(0.1))  # queue empty, but not long enough
        self.assertTrue(any(s(0.3) for _ in range(cell.Settled.QUIET)))
        diag.close()

    def test_settled_waits_for_every_connection(self):
        """On keep-alive a warm-up settles only once the server holds every
        connection: an empty queue alone is also true while wrk connects."""
        diag = sockdiag.open_sockdiag()[0]
        if diag is None:
            self.skipTest("netlink sock_diag unavailable")
        with diag:
            held = [self.srv.accept()[0] for _ in range(3)]
            try:
                more = cell.Settled(self.port, diag, want=4)
                self.assertFalse(any(more(1.0) for _ in range(3 * cell.Settled.QUIET)))
                self.assertTrue(more.quiet >= cell.Settled.QUIET and not more.connected)
                held.append(socket.create_connection(("127.0.0.1", self.port)))
                held.append(self.srv.accept()[0])  # the 4th, accepted
                self.assertTrue(more(1.0))
                self.assertEqual(more.want, 4)
                three = cell.Settled(self.port, diag, want=3)
                self.assertTrue(any(three(1.0) for _ in range(cell.Settled.QUIET)))
            finally:
                for c in held:
                    c.close()


class DocrootTest(unittest.TestCase):
    def test_content_is_what_it_always_was(self):
        """Streamed generation writes the bytes the old in-memory one did
        (so digests of old runs still compare)."""
        block = docroot._block()
        for size in (1, 20, 128, 64 * KiB + 3, 200 * KiB):
            head = ("c10k test file, %d bytes\n" % size).encode()
            old = (head + block * (size // len(block) + 1))[:size]
            self.assertEqual(b"".join(docroot.file_chunks(size)), old, size)
        self.assertEqual(docroot.file_name(2 * GiB), "f-2GiB.bin")
        with tempfile.TemporaryDirectory() as d:
            got = docroot.make_docroot(d, [128])
            with open(os.path.join(d, "f-128B.bin"), "rb") as f:
                self.assertEqual(got[128], hashlib.sha256(f.read()).hexdigest())
            with self.assertRaises(UsageError):
                docroot.check_space(d, [1 << 60])


class LoadgenTest(unittest.TestCase):
    def test_wrk_metrics(self):
        wrk = {"requests": 1000, "bytes": 2 * MiB, "duration_us": 2000000,
               "errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0},
               "latency_us": {"min": 10, "mean": 50.5, "stdev": 3, "max": 900},
               "percentiles_us": [[50, 40], [90, 80], [99, 300], [99.9, 800], [100, 900]],
               "histogram_us": [[50, 700], [100, 300]], "recorded": 1000, "co_synthetic": 7,
               "histogram_unavailable": None}
        m = loadgen.wrk_metrics(wrk, 2.1)
        self.assertEqual((m["rps"], m["mib_per_s"], m["errors_total"], m["lat_p99_us"],
                          m["lat_max_us"], m["lat_co_synthetic"]), (500.0, 1.0, 3, 300, 900, 7))
        self.assertEqual(loadgen.wrk_degraded(m), [
            "wrk errors: connect 0, read 1, write 0, timeout 0, status>=400 2"])
        argv = loadgen.wrk_argv(8080, CLOSE64, 2, [1])
        self.assertEqual(argv[:6], ["taskset", "-c", "1", "wrk", "-t", "1"])
        self.assertIn("Connection: close", argv)
        self.assertEqual(loadgen.wrk_threads(1, [1, 2, 3]), 1)


# --- the open-loop profiles (ladder.py, openloop.py, plan and results) -------------


def ostep(i, offered, p99, **kw):
    """One step of one round, as openloop.measure leaves it."""
    s = {"step": i, "offered_rps": offered, "connections": 256, "status": "ok",
         "lat_p99_us": p99, "errors_total": 0, "client_bound": False, "starved": False,
         "achieved_rps": offered, "goodput_rps": offered}
    s.update(kw)
    return s


class LadderTest(unittest.TestCase):
    def test_ladder_scales_the_peak(self):
        self.assertEqual(ladder.ladder_rates(80000),
                         [8000, 20000, 40000, 56000, 64000, 72000, 80000, 96000, 120000,
                          160000])
        self.assertEqual(ladder.ladder_rates(1001, [10, 25]), [100, 250])   # whole req/s
        self.assertEqual(ladder.ladder_rates(3, [10]), [1])                  # at least 1
        self.assertEqual(ladder.crossover_rate(81235), 40618)

    def test_knee_is_the_highest_rate_under_the_slo(self):
        steps = [ostep(0, 1000, 300), ostep(1, 2000, 800), ostep(2, 3000, 999.9),
                 ostep(3, 4000, 1000), ostep(4, 5000, 40000)]
        self.assertEqual(ladder.knee(steps, 1000), 3000)   # under: 1000 is not under 1000
        self.assertEqual(ladder.knee(steps, 200), None)
        self.assertEqual(ladder.knee(steps, 1e9), 5000)
        # a step that dips under the SLO above a worse one still counts (the contract:
        # the highest offered rate whose p99 is under it)
        self.assertEqual(ladder.knee(steps + [ostep(5, 6000, 500)], 1000), 6000)

    def test_knee_skips_steps_that_do_not_count(self):
        for bad in ({"client_bound": True}, {"starved": True}, {"errors_total": 3},
                    {"status": "failed"}, {"lat_p99_us": None}):
            steps = [ostep(0, 1000, 300), ostep(1, 2000, 300, **bad)]
            self.assertEqual(ladder.knee(steps, 1000), 1000, bad)

    def test_jain(self):
        self.assertAlmostEqual(ladder.jain([5, 5, 5, 5]), 1.0)
        self.assertAlmostEqual(ladder.jain([20, 0, 0, 0]), 0.25)      # one got it all: 1/n
        self.assertAlmostEqual(ladder.jain([1, 2]), 9 / 10.0)
        self.assertIsNone(ladder.jain([0, 0]))
        self.assertIsNone(ladder.jain([]))
        # what a perfectly fair server scores given the arrivals
        self.assertAlmostEqual(ladder.jain_ideal(1000, 3, 256, poisson=True),
                               (3000 / 256) / (3000 / 256 + 1))
        self.assertAlmostEqual(ladder.jain_ideal(2560, 1, 256, poisson=False), 1.0)
        self.assertAlmostEqual(ladder.jain_ideal(1.5, 1, 1, poisson=False),
                               ladder.jain([1, 2]))   # half the connections one more
        self.assertIsNone(ladder.jain_ideal(0, 3, 256, poisson=True))

    def test_little(self):
        ok = ladder.little(2.855, 2003.667, 1425.705)   # a real run: 2.857 expected
        self.assertTrue(ok["ok"])
        self.assertAlmostEqual(ok["expected"], 2003.667 * 1425.705e-6)
        self.assertTrue(ladder.little(10.99, 1000, 10000)["ok"])     # within 10% of 10
        self.assertFalse(ladder.little(11.01, 1000, 10000)["ok"])
        self.assertFalse(ladder.little(8.9, 1000, 10000)["ok"])
        self.assertIsNone(ladder.little(None, 1000, 10000)["ok"])
        # a real overload step: 2,422 answered/s after 70.2 ms, 94 timeouts of
        # 2 s in a 2 s window; every connection (256) busy
        self.assertFalse(ladder.little(254.684, 2422, 70202.3)["ok"])
        ok = ladder.little(254.684, 2422, 70202.3, 94 / 2.0, 2.0)
        self.assertTrue(ok["ok"], ok)
        self.assertAlmostEqual(ok["expected"], 2422 * 0.0702023 + 94.0)

    def test_client_bound(self):
        good = {"ok": True, "expected": 3.0, "observed": 3.0}
        bad = {"ok": False, "expected": 3.0, "observed": 4.0}
        self.assertEqual(ladder.client_bound_reasons(True, None, good), [])
        self.assertEqual(ladder.client_bound_reasons(True, None, {"ok": None}), [])
        why = ladder.client_bound_reasons(False, "the p99 of how late its sends went out was "
                                                 "5 ms", good)
        self.assertEqual(len(why), 1)
        self.assertIn("invalid run: the p99 of how late", why[0])
        why = ladder.client_bound_reasons(True, None, bad)
        self.assertIn("Little's law: 4.00 requests in flight, against 3.00", why[0])
        self.assertEqual(len(ladder.client_bound_reasons(False, "x", bad)), 2)

    def test_step_metrics_flag_client_bound(self):
        load = {"errors": {"connect": 0, "read": 1, "write": 0, "timeout": 0, "status": 2},
                "latency_us": {"p50": 100, "p90": 200, "p99": 300, "p999": 400, "p9999": 450,
                               "max": 500, "mean": 120},
                "duration_s": 2.0, "requests": 2000, "rate_achieved": 1000.0,
                "goodput_rps": 999.0, "histogram": [[100, 1000], [500, 1000]],
                "timeline": [], "per_connection_completed": [1000, 1000], "connections": 2,
                "schedule": "poisson", "in_flight_mean": 0.12,
                "service_latency_mean_us": 120.0, "valid": True, "invalid_reason": None}
        m = openloop.step_metrics(load, 1000)
        self.assertEqual((m["errors_total"], m["goodput_rps"], m["fairness_jain"]), (3, 999.0,
                                                                                    1.0))
        self.assertFalse(m["client_bound"])
        self.assertNotIn("client_bound_by", m)
        m = openloop.step_metrics(dict(load, valid=False, invalid_reason="held back"), 1000)
        self.assertTrue(m["client_bound"])
        self.assertIn("held back", m["client_bound_by"][0])
        m = openloop.step_metrics(dict(load, in_flight_mean=0.2), 1000)  # 0.12 expected
        self.assertTrue(m["client_bound"])
        self.assertFalse(m["little"]["ok"])
        # one timeout in the 2 s window (0.5 a second), in flight for --timeout
        # (2 s) before the generator gave up: one more request in flight
        timed_out = dict(load, in_flight_mean=1.1, timeout_s=2.0,
                         errors=dict(load["errors"], timeout=1))
        m = openloop.step_metrics(timed_out, 1000)
        self.assertAlmostEqual(m["little"]["expected"], 0.12 + 1.0)
        self.assertTrue(m["little"]["ok"])

    def test_load_argv(self):
        p = make_plan(["--profile", "latency", "--rates", "100", "--duration", "3",
                       "--warmup", "0.5", "--seed", "9"])
        sc = dict(p.scenarios[0], step=plan.step_spec(p.scenarios[0], 0, None))
        argv = openloop.load_argv("/bin/c10k", 8080, sc, p, "/r/x.json")
        self.assertEqual(argv[:5], ["taskset", "-c", "1", "/bin/c10k", "load"])
        self.assertEqual(argv[5], "http://127.0.0.1:8080/f-1KiB.bin")
        for flag, value in (("--rate", "100"), ("--connections", "256"), ("--duration", "3"),
                            ("--warmup", "0.5"), ("--threads", "1"), ("--cpus", "1"),
                            ("--max-lag", "0.0005"), ("--timeout", "2"), ("--seed", "9")):
            self.assertEqual(argv[argv.index(flag) + 1], value, flag)
        self.assertIn("--poisson", argv)
        self.assertEqual(openloop.load_threads(10000, [1, 2, 3]), 3)
        self.assertEqual(openloop.load_threads(2, [1, 2, 3]), 2)


class OpenResultsTest(unittest.TestCase):
    LAT = {"id": "1KiB-ka-c256-latency", "kind": "latency", "slo_p99_us": 1000}

    def cell_with(self, rounds):
        c = results.new_cell("epoll", self.LAT)
        for r, steps in enumerate(rounds, 1):
            for s in steps:
                results.add_step(c, dict(s, round=r), self.LAT)
        return c

    def test_steps_knee_and_flags(self):
        c = self.cell_with([[ostep(0, 1000, 300), ostep(1, 2000, 900),
                             ostep(2, 3000, 5000, client_bound=True,
                                   client_bound_by=["c10k load: invalid run: x"])]])
        self.assertEqual([s["offered_rps"] for s in c["steps"]], [1000, 2000, 3000])
        self.assertEqual(c["knee_rps"], 2000)
        # a client-bound step above the knee could have moved it: the cell is flagged
        self.assertEqual(c["flags"], ["client-bound"])
        self.assertTrue(any("client-bound: c10k load" in r for r in c["reasons"]))
        self.assertEqual(len(c["repeats"]), 1)
        self.assertEqual(len(c["repeats"][0]["steps"]), 3)

    def test_client_bound_below_the_knee_keeps_the_knee(self):
        c = self.cell_with([[ostep(0, 1000, 300, client_bound=True), ostep(1, 2000, 900),
                             ostep(2, 3000, 5000)]])
        self.assertEqual((c["knee_rps"], c["flags"]), (2000, []))

    def test_starved_step_flags_the_cell(self):
        c = self.cell_with([[ostep(0, 1000, 300), ostep(1, 2000, 900, starved=True,
                                                         starved_by=["queue"])]])
        self.assertEqual(c["knee_rps"], 1000)
        self.assertIn("starved", c["flags"])

    def test_rounds_median_step_and_knee_spread(self):
        c = self.cell_with([[ostep(0, 1000, 300), ostep(1, 2000, 900)],
                            [ostep(0, 1000, 500), ostep(1, 2000, 1500)],
                            [ostep(0, 1000, 400), ostep(1, 2000, 950)]])
        self.assertEqual([s["lat_p99_us"] for s in c["steps"]], [400, 950])
        self.assertEqual(c["steps"][1]["rounds"], 3)
        self.assertEqual(c["steps"][1]["over_rounds"]["lat_p99_us"],
                         {"min": 900, "median": 950, "max": 1500})
        self.assertEqual(c["knee_rps"], 2000)
        self.assertEqual(c["knee_by_round"], [2000, 1000, 2000])
        self.assertAlmostEqual(c["spread_pct"], 50.0)
        self.assertIn("noisy", c["flags"])

    def test_failed_step_fails_the_cell(self):
        c = self.cell_with([[ostep(0, 1000, 300),
                             dict(ostep(1, 2000, None), status="failed", failure="boom")]])
        self.assertEqual(c["status"], "failed")
        self.assertIn("round 1, step 2 (2,000 req/s, 256 conns): boom", c["reasons"])

    def test_errors_beyond_the_peak_are_the_overload_result(self):
        sc = {"connections": 256, "keepalive": True}

        def judged(**kw):
            rep = dict(errors_total=5, errors_connect=0, errors_read=0, errors_write=0,
                       errors_timeout=5, errors_status=0, requests=100, conns_established=256,
                       accept_queue_wait_frac=0.0, status="ok")
            rep.update(kw)
            openloop.judge(sc, rep)
            return rep
        self.assertEqual(judged(pct_of_peak=100)["status"], "degraded")
        self.assertEqual(judged(pct_of_peak=None)["status"], "degraded")   # --rates: unknown
        self.assertEqual(judged(pct_of_peak=150)["status"], "ok")
        r = judged(pct_of_peak=150, conns_established=200, accept_queue_wait_frac=0.5)
        self.assertEqual(r["status"], "degraded")
        self.assertTrue(r["starved"])
        self.assertEqual(len(r["starved_by"]), 2)

    def test_results_json_keeps_pairs_on_one_line(self):
        doc = {"h": [[31, 1], [1.5e-05, -2]], "l": [1, 2, 3], "n": [[1, [2]]],
               "s": [["a", "b"]]}
        text = results.dumps(doc)
        self.assertEqual(json.loads(text), doc)
        self.assertIn("[31, 1]", text)
        self.assertIn("[1.5e-05, -2]", text)
        self.assertNotIn("[1, 2", text)   # longer lists stay one item a line

    def test_csv_has_a_row_per_step(self):
        c = self.cell_with([[ostep(0, 1000, 300, little={"expected": 1, "observed": 1,
                                                         "ok": True}),
                             ostep(1, 2000, 900)]])
        doc = {"scenarios": [dict(self.LAT, size=1024, keepalive=True, connections=256,
                                  slow=None)], "cells": [c]}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.csv")
            results.write_csv(path, doc)
            with open(path) as f:
                rows = f.read().strip().splitlines()
        self.assertEqual(len(rows), 3)
        head = rows[0].split(",")
        self.assertEqual(rows[1].split(",")[head.index("offered_rps")], "1000")
        self.assertEqual(rows[2].split(",")[head.index("step")], "2")
        self.assertEqual(rows[1].split(",")[head.index("knee_rps")], "2000")


class OpenPlanTest(unittest.TestCase):
    def test_latency_profile(self):
        p = make_plan(["--profile", "latency", "--seed", "3"])
        self.assertEqual([s["id"] for s in p.scenarios], ["1KiB-ka-c256", "1KiB-ka-c256-latency"])
        lat = p.scenarios[1]
        self.assertEqual((lat["kind"], lat["connections"], lat["basis"], lat["slo_p99_us"],
                          lat["schedule"]), ("latency", 256, "1KiB-ka-c256", 1000.0, "poisson"))
        self.assertEqual(lat["ladder_pct"], list(ladder.DEFAULT_LADDER_PCT))
        self.assertEqual(p.max_lag_s, 0.0005)   # half the SLO
        visits = p.visits()
        n = len(p.names)
        s = n - 1  # the ceiling has a peak cell but no open-loop steps
        self.assertIn("ceiling", p.names)
        self.assertEqual(len(visits), n + 10 * s)
        # the closed-loop peaks first, then each step visits every server
        self.assertTrue(all(v.step is None for v in visits[:n]))
        for k in range(10):
            chunk = visits[n + k * s:n + (k + 1) * s]
            self.assertEqual({v.step for v in chunk}, {k})
            self.assertEqual([v.name for v in chunk], p.step_orders[0][k])
            self.assertEqual(sorted(v.name for v in chunk),
                             sorted(x for x in p.names if x != "ceiling"))
        self.assertGreater(len({tuple(o) for o in p.step_orders[0]}), 1)   # fresh orders
        self.assertEqual(p.step_orders, make_plan(["--profile", "latency", "--seed", "3"])
                         .step_orders)
        # every model and nginx in at most 15 minutes, with one more model to come
        more = plan.from_args(args_for(["--profile", "latency"]),
                              plan.Binary("c", MODELS + ["libuv", "coro"], [], HELP), ncpu=2)
        self.assertLessEqual(more.estimate_s(), 15 * 60)

    def test_latency_options(self):
        p = make_plan(["--profile", "latency", "--rates", "1000,2500.5", "--connections", "64",
                       "--slo-p99", "250us", "--max-lag", "2ms"])
        self.assertEqual([s["id"] for s in p.scenarios], ["1KiB-ka-c64-latency"])  # no peak
        sc = p.scenarios[0]
        self.assertEqual((sc["rates"], sc["basis"], sc["slo_p99_us"]), ([1000, 2500.5], None,
                                                                         250))
        self.assertEqual(p.max_lag_s, 0.002)
        self.assertEqual(plan.step_spec(sc, 1, None), {"index": 1, "offered_rps": 2500.5,
                                                       "connections": 64, "pct_of_peak": None})
        p = make_plan(["--profile", "latency", "--ladder", "200,50,100,50"])   # climbs
        sc = p.scenarios[1]
        self.assertEqual([plan.step_spec(sc, i, 10000)["offered_rps"] for i in range(3)],
                         [5000, 10000, 20000])
        self.assertEqual(plan.step_spec(sc, 2, 10000)["pct_of_peak"], 200)
        self.assertEqual(len(p.visits()), len(p.names) + (len(p.names) - 1) * 3)  # ceiling: peak

    def test_crossover_profile(self):
        p = make_plan(["--profile", "crossover", "--models", "epoll,threaded", "--seed", "1"])
        base, cross = p.scenarios
        self.assertEqual((base["id"], base["only"]), ("1KiB-ka-c256", ["epoll"]))
        self.assertEqual((cross["id"], cross["connections_steps"], cross["connections"],
                          cross["schedule"]), ("1KiB-ka-crossover", [10, 100, 1000, 10000],
                                               10000, "fixed"))
        visits = p.visits()
        self.assertEqual([(v.name, v.step) for v in visits[:1]], [("epoll", None)])
        self.assertEqual(len(visits), 1 + 4 * 3)
        self.assertEqual([plan.step_spec(cross, i, 80001)["connections"] for i in range(4)],
                         [10, 100, 1000, 10000])
        self.assertEqual(plan.step_spec(cross, 3, 80001)["offered_rps"], 40000)
        p = make_plan(["--profile", "crossover", "--rate", "5000", "--connections", "10,50"])
        self.assertEqual([s["kind"] for s in p.scenarios], ["crossover"])
        self.assertEqual(plan.step_spec(p.scenarios[0], 1, None)["offered_rps"], 5000)
        more = plan.from_args(args_for(["--profile", "crossover"]),
                              plan.Binary("c", MODELS + ["libuv", "coro"], [], HELP), ncpu=2)
        self.assertLessEqual(more.estimate_s(), 15 * 60)

    def test_open_usage_errors(self):
        for argv, want in (
                (["--rates", "100"], "only for the open-loop profiles"),
                (["--slo-p99", "1ms"], "only for the open-loop profiles"),
                (["--profile", "latency", "--modes", "close"], "keeps its connections alive"),
                (["--profile", "latency", "--rate", "100"], "give --rates"),
                (["--profile", "latency", "--rates", "100", "--ladder", "10"], "give one"),
                (["--profile", "latency", "--rates", "100,x"], "'x' is not a number"),
                (["--profile", "latency", "--rates", "0"], "out of range"),
                (["--profile", "latency", "--slo-p99", "1 fortnight"], "not a time"),
                (["--profile", "latency", "--slo-p99", "0ms"], "out of range"),
                (["--profile", "latency", "--max-lag", "soon"], "--max-lag"),
                (["--profile", "crossover", "--rates", "100"], "give --rate R"),
                (["--profile", "crossover", "--rate", "1,2"], "one rate"),
                (["--profile", "crossover", "--ladder", "10"], "not for --profile crossover"),
                (["--profile", "crossover", "--models", "threaded"], "add epoll to --models")):
            with self.assertRaises(UsageError, msg=argv) as e:
                make_plan(argv)
            self.assertIn(want, str(e.exception), argv)
        with self.assertRaises(UsageError) as e:
            plan.from_args(args_for(["--profile", "latency"]),
                           plan.Binary("/old/c10k", MODELS, [], HELP, has_load=False), ncpu=2)
        self.assertIn("no `c10k load`", str(e.exception))
        # without epoll, a fixed --rate is enough
        self.assertEqual(make_plan(["--profile", "crossover", "--models", "threaded", "--rate",
                                    "100"]).names, ["threaded", "nginx", "ceiling"])

    def test_steps_scale_the_peak_measured_in_the_run(self):
        from harness.run import Run
        args = args_for(["--profile", "crossover", "--models", "epoll,threaded"])
        p = plan.from_args(args, BINARY, ncpu=2)
        r = Run(args, p, BINARY)
        base, cross = p.scenarios
        step, why = r.step_for(cross, "threaded", 0)
        self.assertIsNone(step)
        self.assertIn("epoll's closed-loop peak (1KiB-ka-c256) was not measured", why)
        cell = r.cell("epoll", base)
        for rnd, rps in ((1, 30000.0), (2, 50000.0), (3, 40000.0)):
            results.add_repeat(cell, rep(rnd, rps))
        step, why = r.step_for(cross, "threaded", 3)
        self.assertEqual(step, {"index": 3, "offered_rps": 20000, "connections": 10000,
                                "pct_of_peak": None, "peak_closed_rps": 40000.0})
        self.assertEqual(cross["offered_rps"], 20000)   # recorded in results.json
        results.fail_cell(cell, "did not start")
        step, why = r.step_for(cross, "epoll", 0)
        self.assertIn("failed: did not start", why)

    def test_slo_parsing(self):
        for text, us in (("1ms", 1000), ("500us", 500), ("0.25s", 250000), ("2", 2000),
                         ("1.5ms", 1500)):
            self.assertEqual(ladder.parse_slo(text), us, text)

    def test_dry_run_names_every_step(self):
        p = make_plan(["--profile", "latency", "--models", "epoll", "--ladder", "50,200",
                       "--seed", "4"])
        text = plan.dry_run_text(p)
        self.assertIn("step 2/2: 200% of its closed-loop peak", text)
        self.assertIn("round 1, step 1/2: 50% of its closed-loop peak: order ", text)
        self.assertIn("poisson arrivals", text)
        self.assertIn("--max-lag 0.5 ms", text)
        # the peaks (epoll, nginx, the ceiling), then two steps of epoll and nginx
        self.assertEqual(len([ln for ln in text.splitlines() if "] round " in ln]), 3 + 2 * 2)


def main():
    return testmain.run("bench units")


if __name__ == "__main__":
    sys.exit(main())
