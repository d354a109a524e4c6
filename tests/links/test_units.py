#!/usr/bin/python3
"""Unit tests of the pieces behind --netns, --link-rate, --netem,
--server-host and --client-host that need neither root nor a network:

  * merge: counts summed, histograms merged, percentiles read from the
    merged histogram (never averaged);
  * netns: rates, tbf parameters, the tc commands for each shape;
  * remote: host specs;
  * agent: the protocol, run locally through a pipe instead of ssh: files
    stay in its work directory, a server starts and stops, a barrier's
    "go" runs what "arm" kept, and EOF on its stdin kills every child and
    removes the work directory.

    /usr/bin/python3 tests/links/test_units.py [--bin BUILD/c10k]
"""

import json
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import agent, merge, net, netns, plan, remote  # noqa: E402
from harness.util import UsageError  # noqa: E402
from reportlib import data as rdata  # noqa: E402
from reportlib import links as rlinks  # noqa: E402
from reportlib import summary as rsummary  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")


class MergeTest(unittest.TestCase):
    def test_percentile_of_merged_histogram_not_mean_of_percentiles(self):
        # host A: 99 at 100 us and 1 at 10 ms; host B: 100 at 1 ms. Their p99s
        # are 100 us and 1 ms, whose mean (550 us) no request took; the
        # merged histogram's p99 (rank 198 of 200) is 1 ms.
        a = {"requests": 100, "bytes": 1000, "duration_us": 5_000_000,
             "errors": {"connect": 1, "read": 0, "write": 0, "timeout": 2, "status": 3},
             "latency_us": {"min": 100, "max": 10000, "mean": 199, "stdev": 1},
             "histogram_us": [[100, 99], [10000, 1]], "recorded": 100,
             "percentiles_us": [[p, 100 if p <= 99 else 10000] for p in merge.WRK_PERCENTILES]}
        b = {"requests": 100, "bytes": 3000, "duration_us": 5_100_000,
             "errors": {"connect": 0, "read": 4, "write": 5, "timeout": 0, "status": 0},
             "latency_us": {"min": 1000, "max": 1000, "mean": 1000, "stdev": 0},
             "histogram_us": [[1000, 100]], "recorded": 100,
             "percentiles_us": [[p, 1000] for p in merge.WRK_PERCENTILES]}
        m = merge.merge_wrk([a, b])
        self.assertEqual(m["hosts"], 2)
        self.assertEqual(m["requests"], 200)
        self.assertEqual(m["bytes"], 4000)
        self.assertEqual(m["duration_us"], 5_100_000)
        self.assertEqual(m["errors"], {"connect": 1, "read": 4, "write": 5, "timeout": 2,
                                       "status": 3})
        self.assertEqual(m["histogram_us"], [[100, 99], [1000, 100], [10000, 1]])
        pct = dict(m["percentiles_us"])
        self.assertEqual(pct[50], 1000)   # rank 100: past the 99 fast ones
        self.assertEqual(pct[25], 100)
        self.assertEqual(pct[99], 1000)   # rank 198
        self.assertEqual(pct[99.9], 10000)  # rank 200
        self.assertEqual(m["latency_us"]["max"], 10000)
        self.assertAlmostEqual(m["latency_us"]["mean"], (199 * 100 + 1000 * 100) / 200)

    def test_wrk_without_histogram_refuses(self):
        a = {"requests": 1, "bytes": 1, "duration_us": 1, "errors": {}, "latency_us": {},
             "histogram_us": None, "histogram_unavailable": "too slow"}
        with self.assertRaisesRegex(merge.MergeError, "too slow"):
            merge.merge_wrk([a, dict(a, histogram_us=[[1, 1]])])

    def test_load_documents(self):
        def doc(reqs, hist, valid=True, why=None):
            return {"rate_target": 1000, "rate_achieved": 990, "requests": reqs,
                    "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 1, "status": 0},
                    "latency_us": {"p50": 1, "p90": 1, "p99": 1, "p999": 1, "p9999": 1,
                                   "max": hist[-1][0], "mean": 10},
                    "histogram": hist, "timeline": [{"t": 0, "completed": reqs, "errors": 0,
                                                     "p99_us": 5}],
                    "client_cpu": 0.5, "valid": valid, "invalid_reason": why,
                    "connections": 10, "duration_s": 5, "in_flight_mean": 2.5,
                    "per_connection_completed": [reqs // 2, reqs - reqs // 2],
                    "latency_mean_us": 10}
        m = merge.merge_load([doc(1000, [[10, 990], [500, 10]]),
                              doc(1000, [[10, 900], [20, 100]], False, "behind schedule")])
        self.assertEqual(m["requests"], 2000)
        self.assertEqual(m["rate_target"], 2000)
        self.assertEqual(m["connections"], 20)
        self.assertEqual(m["errors"]["timeout"], 2)
        self.assertEqual(m["histogram"], [[10, 1890], [20, 100], [500, 10]])
        self.assertEqual(m["latency_us"]["p50"], 10)
        self.assertEqual(m["latency_us"]["p99"], 20)     # rank 1980
        self.assertEqual(m["latency_us"]["p999"], 500)   # rank 1998
        self.assertEqual(m["latency_us"]["max"], 500)
        self.assertFalse(m["valid"])
        self.assertEqual(m["invalid_reason"], "host 2: behind schedule")
        self.assertEqual(m["timeline"], [{"t": 0, "completed": 2000, "errors": 0,
                                          "p99_us": None}])
        self.assertEqual(len(m["per_connection_completed"]), 4)
        self.assertEqual(sum(m["per_connection_completed"]), 2000)
        self.assertAlmostEqual(m["client_cpu"], 1.0)

    def test_one_host_is_unchanged(self):
        a = {"requests": 5, "histogram_us": [[1, 5]]}
        self.assertEqual(merge.merge_wrk([a]), dict(a, hosts=1))

    def test_percentile_edges(self):
        self.assertIsNone(merge.percentile([], 50))
        self.assertEqual(merge.percentile([[7, 1]], 0), 7)
        self.assertEqual(merge.percentile([[1, 50], [2, 50]], 50), 1)
        self.assertEqual(merge.percentile([[1, 50], [2, 50]], 50.5), 2)


class ShapeTest(unittest.TestCase):
    def test_rates(self):
        self.assertEqual(netns.parse_rate("100mbit"), 100_000_000)
        self.assertEqual(netns.parse_rate("1gbit"), 10 ** 9)
        self.assertEqual(netns.parse_rate("1.5Mbit"), 1_500_000)
        self.assertEqual(netns.parse_rate("10mbps"), 80_000_000)
        for bad in ("", "fast", "100", "100 furlongs", "-1mbit", "1bit", "2tbit"):
            with self.assertRaises(ValueError, msg=bad):
                netns.parse_rate(bad)
        self.assertEqual(netns.rate_text(100_000_000), "100mbit")
        self.assertEqual(netns.rate_text(10 ** 9), "1gbit")
        self.assertEqual(netns.rate_text(1_500_000), "1500kbit")

    def test_tbf_bucket_holds_gso_segments(self):
        args = netns.tbf_args(netns.parse_rate("100mbit"))
        burst = int(args[args.index("burst") + 1])
        self.assertGreaterEqual(burst, 2 * 65536)
        args = netns.tbf_args(netns.parse_rate("10gbit"))
        self.assertEqual(int(args[args.index("burst") + 1]), 10 ** 10 // 8 // 1000)

    def test_commands(self):
        self.assertEqual(netns.shape_commands("d"), [["qdisc", "del", "dev", "d", "root"]])
        rate = netns.shape_commands("d", 10 ** 8)
        self.assertEqual(len(rate), 1)
        self.assertIn("tbf", rate[0])
        both = netns.shape_commands("d", 10 ** 8, ["delay", "5ms"])
        self.assertEqual(both[0][-3:], ["netem", "delay", "5ms"])
        self.assertEqual(both[1][:7], ["qdisc", "replace", "dev", "d", "parent", "1:1", "handle"])
        self.assertIn("tbf", both[1])

    def test_netem_words(self):
        self.assertEqual(netns.netem_args("delay 5ms loss 0.1%"),
                         ["delay", "5ms", "loss", "0.1%"])
        for bad in ("", "  ", "delay 'oops"):
            with self.assertRaises(ValueError, msg=bad):
                netns.netem_args(bad)


class LinkNameTest(unittest.TestCase):
    def test_names_round_trip(self):
        for kind, rate, netem, name in (
                ("loopback", None, None, "loopback"), ("veth", None, None, "veth"),
                ("veth", 10 ** 8, None, "veth 100mbit"),
                ("veth", 10 ** 9, ["delay", "5ms"], "veth 1gbit netem delay 5ms"),
                ("veth", None, ["loss", "0.1%"], "veth netem loss 0.1%"),
                ("network", None, None, "network")):
            self.assertEqual(net.link_name(kind, rate, netem), name)
            self.assertEqual(net.parse_link(name), (kind, rate, netem))
        self.assertEqual(net.link_suffix("loopback"), "")
        self.assertEqual(net.link_suffix("veth 100mbit"), "-veth100mbit")
        self.assertEqual(net.link_suffix("veth netem delay 5ms"), "-veth-netemdelay5ms")


class Args:
    def __init__(self, **kw):
        self.server_host = self.client_host = self.link_rate = self.netem = None
        self.netns = False
        self.__dict__.update(kw)


class LinksPlanTest(unittest.TestCase):
    def test_links_profile(self):
        scs = plan.make_scenarios(plan.PROFILES["links"])
        self.assertEqual(len(scs), 12)
        self.assertEqual(len({s["id"] for s in scs}), 12)
        by_link = {}
        for s in scs:
            by_link.setdefault(s["link"], []).append(s)
            self.assertTrue(s["keepalive"])
        self.assertEqual(sorted(by_link), ["loopback", "veth", "veth 100mbit"])
        for link, group in by_link.items():
            self.assertEqual(sorted((s["size"], s["connections"]) for s in group),
                             [(1024, 100), (1024, 1000), (1 << 20, 100), (1 << 20, 1000)])
            if link != "loopback":
                for s in group:
                    self.assertIn(link, s["label"])
        self.assertEqual(plan.PROFILES["links"]["wrk_timeout_s"], 30)

    def test_flags_choose_the_link(self):
        self.assertIsNone(plan.pick_links(Args(), "quick"))
        self.assertEqual(plan.pick_links(Args(netns=True), "quick"), ["veth"])
        self.assertEqual(plan.pick_links(Args(link_rate="1gbit"), "quick"), ["veth 1gbit"])
        self.assertEqual(plan.pick_links(Args(netem="delay 5ms"), "quick"),
                         ["veth netem delay 5ms"])
        self.assertEqual(plan.pick_links(Args(server_host="h"), "quick"), ["network"])
        self.assertEqual(plan.pick_links(Args(client_host=["a", "b"]), "quick"), ["network"])
        # the flags replace the links profile's links with theirs
        scs = plan.make_scenarios(plan.PROFILES["links"], links=["veth 1gbit"])
        self.assertEqual({s["link"] for s in scs}, {"veth 1gbit"})
        self.assertEqual(len(scs), 4)
        for bad, profile in ((Args(netns=True, server_host="h"), "quick"),
                             (Args(link_rate="1gbit", client_host=["a"]), "quick"),
                             (Args(server_host="h"), "links"),
                             (Args(link_rate="fast"), "quick"),
                             (Args(netem=""), "quick")):
            with self.assertRaises(UsageError, msg=vars(bad)):
                plan.pick_links(bad, profile)


def links_doc(threaded_threads=1001, moved_mb_s=12.0):
    """A run of threaded and epoll on 1 MiB at 1,000 connections over
    loopback and veth 100mbit."""
    scs, cells = [], []
    for link in ("loopback", "veth 100mbit"):
        sc = plan.scenario(1 << 20, True, 1000, link=link)
        scs.append(sc)
        slow = link != "loopback"
        for model, threads, mem in (("threaded", threaded_threads if slow else 1001, 30.0),
                                    ("epoll", 2, 1.5)):
            rps = 11.0 if slow else 2000.0
            rep = {"round": 1, "status": "ok", "rps": rps, "lat_p99_us": 4e6 if slow else 9e5,
                   "threads_max": threads, "mem_per_conn_kib": mem, "duration_s": 5.0,
                   "bytes": moved_mb_s * 5e6 if slow else 1e10}
            cells.append({"model": model, "scenario": sc["id"], "status": "ok",
                          "reasons": [], "flags": [], "repeats": [rep]})
    return {"schema_version": 2, "run": {"id": "t", "settings": {}}, "scenarios": scs,
            "models": ["threaded", "epoll"], "cells": cells}


class ReportLinksTest(unittest.TestCase):
    def test_table_per_load_with_every_link(self):
        run = rdata.Run(links_doc())
        loads, links = rlinks.link_loads(run)
        self.assertEqual(links, ["loopback", "veth 100mbit"])
        self.assertEqual(len(loads), 1)
        label, by_link = loads[0]
        self.assertEqual(label, "1MiB keep-alive, 1000 conns")
        t = rlinks.link_table(run, by_link, links)
        self.assertEqual(t.head[:5], ["model", "req/s loopback", "p99 ms loopback",
                                      "threads loopback", "KiB/conn loopback"])
        self.assertIn("threads veth 100mbit", t.head)
        threaded = [c.text for c in t.rows[0].cells]
        self.assertEqual(threaded[0], "threaded")
        self.assertEqual(threaded[t.head.index("threads veth 100mbit")], "1,001")
        self.assertEqual(threaded[t.head.index("req/s veth 100mbit")], "11")

    def test_slow_link_finding(self):
        text = rlinks.slow_link_finding(rdata.Run(links_doc()))
        self.assertIn("**A slow link** (1MiB keep-alive, 1000 conns on veth 100mbit): ", text)
        self.assertIn("threaded ran 1,001 threads for its 1,000 connections, one per "
                      "connection, epoll 2 threads in all; 30.0 KiB of memory per connection "
                      "against 1.5", text)
        self.assertIn("Both kept the link busy (12.0 and 12.0 MB/s of its 12.5), so the link, "
                      "not the model, set the pace: 11 and 11 req/s (1,000 connections sharing "
                      "12.5 MB/s take about 84 s for each 1 MiB answer, longer than the 5 s "
                      "window)", text)
        self.assertIn("On loopback the same load ran at 2,000 req/s", text)
        self.assertIn(text, rsummary.findings(rdata.Run(links_doc())))

    def test_finding_says_only_what_the_data_shows(self):
        text = rlinks.slow_link_finding(rdata.Run(links_doc(threaded_threads=300,
                                                            moved_mb_s=5.0)))
        self.assertIn("threaded ran 300 threads for its 1,000 connections, epoll", text)
        self.assertNotIn("one per connection", text)
        self.assertNotIn("set the pace", text)
        self.assertIn("threaded served 11 req/s, epoll 11", text)
        one_link = links_doc()
        one_link["scenarios"] = one_link["scenarios"][1:]
        one_link["cells"] = [c for c in one_link["cells"]
                             if c["scenario"] == one_link["scenarios"][0]["id"]]
        run = rdata.Run(one_link)
        self.assertEqual(rlinks.link_loads(run)[0], [])
        self.assertIsNone(rlinks.slow_link_finding(run))


class HostSpecTest(unittest.TestCase):
    def test_specs(self):
        self.assertEqual(remote.parse_host("box"), (None, "box"))
        self.assertEqual(remote.parse_host("me@10.0.0.2"), ("me", "10.0.0.2"))
        self.assertEqual(remote.parse_hosts("a,b,u@c"), ["a", "b", "u@c"])
        for bad in ("", "-oProxyCommand=x", "a b", "u@", "@h", "h;rm"):
            with self.assertRaises(ValueError, msg=bad):
                remote.parse_host(bad)
        for bad in ("a,,b", "a,a", ","):
            with self.assertRaises(ValueError, msg=bad):
                remote.parse_hosts(bad)

    def test_ssh_argv_quotes_the_command(self):
        h = remote.SshHost("u@h", "/tmp/cfg")
        argv = h.ssh_argv(["/opt/c 10k/bin/c10k", "agent"])
        self.assertEqual(argv[:3], ["ssh", "-F", "/tmp/cfg"])
        self.assertIn("BatchMode=yes", argv)
        self.assertEqual(argv[-3:], ["u@h", "--", "'/opt/c 10k/bin/c10k' agent"])


class LocalAgent:
    """The agent over a pipe, as ssh would run it."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "bench", "harness", "agent.py"), "--bin", BIN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.n = 0

    def call(self, op, **args):
        self.n += 1
        self.proc.stdin.write(json.dumps({"id": self.n, "op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        msg = json.loads(self.proc.stdout.readline())
        assert msg["id"] == self.n, msg
        return msg

    def close(self):
        """End the session as ssh would (EOF); the agent cleans up and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class AgentTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s (set C10K_BIN or pass --bin)" % BIN)
        self.a = LocalAgent()
        self.addCleanup(self.work_dir_gone)
        self.addCleanup(self.a.close)
        hello = self.a.call("hello", protocol=agent.PROTOCOL)
        self.assertTrue(hello["ok"], hello)
        self.info = hello["result"]

    def work_dir_gone(self):
        self.assertFalse(os.path.exists(self.info["work"]), "the agent left its work directory")

    def test_hello(self):
        self.assertEqual(self.info["bin"], os.path.abspath(BIN))
        self.assertTrue(self.info["version"].startswith("c10k "))
        self.assertTrue(os.path.isdir(self.info["work"]))
        self.assertEqual(self.info["bench"], os.path.join(REPO, "bench"))
        bad = self.a.call("hello", protocol=agent.PROTOCOL + 1)
        self.assertFalse(bad["ok"])
        self.assertIn("same c10k", bad["error"])

    def test_files_stay_in_work_dir(self):
        w = self.a.call("write", path="x/y.txt", text="hi {work}")
        self.assertTrue(w["ok"], w)
        self.assertEqual(w["result"]["path"], os.path.join(self.info["work"], "x", "y.txt"))
        with open(w["result"]["path"]) as f:
            self.assertEqual(f.read(), "hi " + self.info["work"])
        for path in ("/etc/passwd", "../../etc/passwd", "x/../../z"):
            r = self.a.call("write", path=path, text="no")
            self.assertFalse(r["ok"], path)
            self.assertIn("outside", r["error"])
        self.assertFalse(self.a.call("read", path="/etc/hostname")["ok"])
        self.assertIsNone(self.a.call("read", path="missing")["result"])
        self.assertFalse(self.a.call("nonsense")["ok"])

    def test_server_start_and_clean_stop(self):
        self.a.call("mkdir", path="root")
        self.a.call("write", path="root/f.txt", text="hello")
        r = self.a.call("spawn", cid="srv", argv=["{bin}", "serve", "epoll", "--port", "0",
                                                  "--root", "{work}/root", "--workers", "1"],
                        log="srv.log", first_line_timeout=10)
        self.assertTrue(r["ok"], r)
        line = r["result"]["line"]
        self.assertIn("http://127.0.0.1:", line)
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        w = self.a.call("wait_listening", cid="srv", host="127.0.0.1", port=port, timeout=5)
        self.assertIsNone(w["result"])
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/f.txt" % port, timeout=5) as resp:
            self.assertEqual(resp.read(), b"hello")
        stop = self.a.call("stop", cid="srv", sig=15, timeout=5)
        self.assertEqual(stop["result"], "clean")

    def test_barrier_and_run(self):
        marker = os.path.join(self.info["work"], "ran")
        arm = self.a.call("arm", cid="g", argv=["sh", "-c", "echo x > {work}/ran; "
                                                "echo '{\"n\": 3}' > {work}/out.json"],
                          files=["out.json"])
        self.assertTrue(arm["ok"], arm)
        time.sleep(0.3)
        self.assertFalse(os.path.exists(marker), "arm must not start the command")
        go = self.a.call("go", cid="g")
        self.assertTrue(go["ok"], go)
        self.assertEqual(go["result"]["returncode"], 0)
        import base64
        self.assertEqual(json.loads(base64.b64decode(go["result"]["files"]["out.json"])),
                         {"n": 3})
        self.assertIsNotNone(go["result"]["cpu_s"])
        self.assertFalse(self.a.call("go", cid="g")["ok"], "go runs an armed command once")
        nope = self.a.call("arm", cid="h", argv=["no-such-generator-c10k"])
        self.assertFalse(nope["ok"])
        self.assertIn("not installed", nope["error"])

    def test_eof_kills_children_and_removes_work_dir(self):
        r = self.a.call("spawn", cid="s", argv=["sh", "-c", "sleep 300 & sleep 300"])
        self.assertTrue(r["ok"], r)
        pid = r["result"]["pid"]
        time.sleep(0.2)
        kids = [int(p) for p in subprocess.run(["pgrep", "-s", str(pid)], capture_output=True,
                                                text=True).stdout.split()]
        self.assertGreaterEqual(len(kids), 2)
        self.a.proc.stdin.close()  # what a closed ssh session looks like
        self.a.proc.wait(10)
        deadline = time.monotonic() + 5
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([k for k in kids if alive(k)], [])
        self.assertFalse(os.path.exists(self.info["work"]))


def main():
    global BIN
    BIN = testmain.pop_bin(BIN)
    return testmain.run("links units")


if __name__ == "__main__":
    sys.exit(main())
