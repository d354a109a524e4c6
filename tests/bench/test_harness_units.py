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
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
from harness import cell, cli, counters, docroot, loadgen, plan, refs, results  # noqa: E402
from harness import servers, sockdiag, variants  # noqa: E402
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
        self.assertEqual(p.names, MODELS + ["nginx"])
        self.assertEqual([s["id"] for s in p.scenarios],
                         ["1KiB-ka-c16", "1KiB-ka-c256", "1KiB-close-c64", "1MiB-ka-c16"])
        self.assertTrue(all(s["kind"] == "closed" and s["link"] == "loopback"
                            for s in p.scenarios))
        self.assertEqual((p.server_cpus, p.client_cpus, p.workers), ([0], [1], 1))
        self.assertEqual(len(p.cells()), 3 * 6 * 4)

    def test_quick_takes_about_the_old_time(self):
        """quick was 1 round of 1 s + 5 s per cell, 7 servers x 4 scenarios,
        about 3.5 min. Three rounds of 2 s windows must stay near it."""
        real = plan.from_args(args_for([]), plan.Binary("c", MODELS + ["libuv"], [], HELP),
                              ncpu=2)
        self.assertEqual(len(real.cells()), 84)
        self.assertLess(real.estimate_s(), 4.6 * 60)

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
        self.assertEqual(p.names, ["epoll", "threaded:pool=64", "nginx"])
        self.assertEqual(p.variants(), {"threaded:pool=64": "threaded --pool 64"})
        self.assertEqual((p.server_cpus, p.client_cpus), ([1], [0]))

    def test_full_includes_the_thread_pool(self):
        p = make_plan(["--profile", "full"])
        self.assertIn("threaded:pool=64", p.names)
        self.assertEqual(p.names[-1], "nginx")
        self.assertEqual(p.rounds, 3)
        # a binary without threaded: the variant is left out, not an error
        other = plan.Binary("c", ["epoll"], [], HELP)
        self.assertEqual(plan.from_args(args_for(["--profile", "full"]), other, 2).names,
                         ["epoll", "nginx"])

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
        self.assertEqual(len(cells), 2 * 3 * 4)
        self.assertEqual(sum(line.startswith("round ") for line in lines), 2)
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
        self.assertEqual(counters.parse_perf_csv(text),
                         {"syscalls": 12.0, "switches_invol": 3.0, "switches": 10.0,
                          "task_clock_ms": 5.5})
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


def main():
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print("bench units: %d passed, %d failed, %d skipped"
          % (result.testsRun - failed - skipped, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
