#!/usr/bin/python3
"""c10k bench beyond loopback, end to end.

  * --netns: a complete run with the load generator in its own network
    namespace: every cell served across the veth (the server bound to
    198.18.0.1, wrk run in the client namespace), the link recorded, every
    connection seen established; nothing left behind.
  * --link-rate: 1 MiB answers across a veth held to 100 Mbit/s move at
    most 12.5 MB/s (and, in the long run, much more unshaped).
  * --netem: refused with status 2 naming sch_netem where the kernel lacks
    it, before any run directory or namespace exists.
  * Ctrl-C (SIGINT), SIGTERM and SIGKILL in the middle of a cell: no
    namespace, no interface and no server process is left.
  * --server-host and --client-host through a real sshd in a second network
    namespace (tests/lib/sshlab.py) with the c10k of `make install` as the
    remote one: a complete run with the server remote, and one with the
    load generator remote (two hosts behind the barrier in the long run,
    their counts summed and histograms merged); afterwards nothing runs
    over there and its work directory is gone. An unreachable host is
    status 2 with no run directory left.
  * (long) --profile links with two models: every link present, and on
    the 100 Mbit/s link threaded held a thread per connection while epoll
    held one; the report shows the links.

    /usr/bin/python3 tests/links/test_bench_links.py [--bin BUILD/c10k] [--quick]

--quick (make test) runs the short cases; make test-links runs them all.
Without root, iproute2 or openssh-server the cases that need them are
skipped with the reason.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import netns  # noqa: E402
from sshlab import SshLab, skip_reason  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")
QUICK = False
NETNS_OK, NETNS_WHY = netns.available()
SSH_SKIP = skip_reason()

SMALL = ["--models", "epoll", "--connections", "16", "--sizes", "1KiB", "--modes", "keepalive",
         "--duration", "1", "--warmup", "0", "--rounds", "1", "--no-report"]


def root_links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def load(out):
    with open(os.path.join(out, "latest", "results.json")) as f:
        return json.load(f)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Base(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s" % BIN)
        self.out = tempfile.mkdtemp(prefix="c10k-links-")
        self.addCleanup(shutil.rmtree, self.out, True)
        self.links_before = root_links()

    def bench(self, args, timeout=300):
        return subprocess.run([BIN, "bench"] + args + ["--out", self.out], capture_output=True,
                              text=True, timeout=timeout)

    def assertNothingLeft(self, pid, wait=10):
        """No namespace of bench process pid, no new c10k interface here."""
        prefix = "%s%d-" % (netns.PREFIX, pid)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(n.startswith(prefix)
                                                  for n in netns.namespaces()):
            time.sleep(0.1)
        self.assertEqual([n for n in netns.namespaces() if n.startswith(prefix)], [])
        self.assertEqual({n for n in root_links() - self.links_before if n.startswith("c10k")},
                         set())

    def check_cells(self, doc, link, conns, ceiling=True):
        """Every cell complete and clean; the ceiling runs beside epoll and
        nginx unless the servers ran on another host (it sits those out)."""
        self.assertEqual(doc["run"]["status"], "complete")
        self.assertEqual({s["link"] for s in doc["scenarios"]}, {link})
        self.assertEqual(doc["run"]["settings"]["links"], [link])
        self.assertEqual({c["model"] for c in doc["cells"]},
                         {"epoll", "nginx"} | ({"ceiling"} if ceiling else set()))
        for c in doc["cells"]:
            self.assertEqual(c["status"], "ok", (c["model"], c["reasons"]))
            for r in c["repeats"]:
                self.assertGreater(r["requests"], 0)
                self.assertEqual(r["errors_total"], 0)
                self.assertEqual(r["conns_established"], conns, c["model"])
                self.assertEqual(r["server_exit"], "clean")
                self.assertGreater(r["cpu_s"], 0)
                if doc["tools"]["perf"]["available"]:
                    self.assertGreater(r["syscalls_per_req"], 0)


@unittest.skipUnless(NETNS_OK, NETNS_WHY)
class NetnsBenchTest(Base):
    def test_netns_run(self):
        r = self.bench(["--netns"] + SMALL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.check_cells(doc, "veth", 16)
        veth = doc["environment"]["network"]["veth"]
        self.assertEqual((veth["server_addr"], veth["client_addr"]), ("198.18.0.1", "198.18.0.2"))
        self.assertEqual(veth["range"], "198.18.0.0/15")
        for c in doc["cells"]:
            self.assertTrue(c["scenario"].endswith("-veth"), c["scenario"])
        epoll = next(c for c in doc["cells"] if c["model"] == "epoll")
        cmd = epoll["repeats"][0]["server_command"]
        self.assertEqual(cmd[cmd.index("--bind") + 1], "198.18.0.1")
        run = os.path.join(self.out, "latest")
        with open(os.path.join(run, "nginx.conf")) as f:
            self.assertRegex(f.read(), r"listen 198\.18\.0\.1:\d+ ")
        raw = os.path.join(run, "raw")
        wrk = [f for f in os.listdir(raw) if f.startswith("wrk_epoll") and f.endswith(".txt")]
        with open(os.path.join(raw, wrk[0])) as f:
            self.assertRegex(f.readline(), r"^\$ ip netns exec c10k-\d+-\d+-cli taskset ")
        # gone when the run ends, not later (the guard would get there too)
        self.assertNothingLeft(int(veth["server_ns"].split("-")[1]), wait=0)

    def test_link_rate(self):
        r = self.bench(["--link-rate", "100mbit", "--models", "epoll", "--connections", "8",
                        "--sizes", "1MiB", "--modes", "keepalive", "--duration", "2",
                        "--warmup", "0", "--rounds", "1", "--no-report"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.assertEqual({s["link"] for s in doc["scenarios"]}, {"veth 100mbit"})
        for c in doc["cells"]:
            rep = c["repeats"][0]
            mb_s = rep["bytes"] / rep["duration_s"] / 1e6
            self.assertLess(mb_s, 12.6, c["model"])   # 100 Mbit/s is 12.5 MB/s
            self.assertGreater(mb_s, 6.0, c["model"])  # and it was used
        if QUICK:
            return
        r = self.bench(["--netns", "--models", "epoll", "--connections", "8", "--sizes", "1MiB",
                        "--modes", "keepalive", "--duration", "2", "--warmup", "0", "--rounds",
                        "1", "--no-report"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        fast = load(self.out)["cells"][0]["repeats"][0]
        self.assertGreater(fast["bytes"] / fast["duration_s"] / 1e6, 25.0)

    def test_netem(self):
        probe = "c10k-%d-0-netemprobe" % os.getpid()
        netns.ip(None, "netns", "add", probe)
        try:
            netns.ip(probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
            rc, said = netns._run(["tc", "-n", probe, "qdisc", "add", "dev", "p0", "root",
                                   "netem", "delay", "1ms"])
        finally:
            netns.delete_ns(probe)
        r = self.bench(["--netem", "delay 5ms loss 0.1%"] + SMALL)
        if "qdisc kind is unknown" in said:
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("sch_netem", r.stderr)
            self.assertIn("does not run without the delay", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertEqual(os.listdir(self.out), [], "a refused run leaves no run directory")
        else:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(load(self.out)["scenarios"][0]["link"],
                             "veth netem delay 5ms loss 0.1%")
        r = self.bench(["--netem", "bogus-word"] + SMALL)
        self.assertEqual(r.returncode, 2)
        self.assertNothingLeft(os.getpid())

    def interrupt(self, sig):
        """A --netns run stopped by sig while a server serves in its namespace."""
        p = subprocess.Popen([BIN, "bench", "--netns", "--models", "threaded", "--connections",
                              "16", "--sizes", "1KiB", "--modes", "keepalive", "--duration",
                              "20", "--warmup", "0", "--rounds", "1", "--no-report", "--out",
                              self.out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        prefix = "%s%d-" % (netns.PREFIX, p.pid)
        deadline, inside = time.monotonic() + 60, []
        while time.monotonic() < deadline and not inside:
            srv = [n for n in netns.namespaces() if n.startswith(prefix) and n.endswith("-srv")]
            # the server and wrk are up: a process in each namespace
            if srv and all(netns.ns_pids(n) for n in netns.namespaces() if n.startswith(prefix)):
                inside = [pid for n in netns.namespaces() if n.startswith(prefix)
                          for pid in netns.ns_pids(n)]
            time.sleep(0.1)
        self.assertTrue(inside, "no server and wrk ever ran in the namespaces")
        time.sleep(0.5)
        os.kill(p.pid, sig)
        p.wait(60)
        out, err = p.communicate()
        self.assertNothingLeft(p.pid, wait=0 if sig != signal.SIGKILL else 15)
        deadline = time.monotonic() + 5
        while any(alive(x) for x in inside) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([x for x in inside if alive(x)], [], "processes left running")
        return p.returncode, err

    def test_sigint(self):
        rc, err = self.interrupt(signal.SIGINT)
        self.assertEqual(rc, 130, err)
        self.assertIn("interrupted", err)

    def test_sigterm(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it (test_netns.py checks SIGTERM)")
        rc, err = self.interrupt(signal.SIGTERM)
        self.assertEqual(rc, 130, err)

    def test_sigkill(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it")
        rc, _ = self.interrupt(signal.SIGKILL)
        self.assertEqual(rc, -signal.SIGKILL)

    def test_links_profile(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it")
        r = self.bench(["--profile", "links", "--models", "threaded,epoll", "--duration", "2"],
                       timeout=900)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.assertEqual(doc["run"]["settings"]["links"], ["loopback", "veth", "veth 100mbit"])
        self.assertEqual(len(doc["scenarios"]), 12)
        self.assertEqual(doc["run"]["settings"]["wrk_timeout_s"], 30)
        cells = {(c["model"], c["scenario"]): c for c in doc["cells"]}
        slow = "1MiB-ka-c1000-veth100mbit"
        threaded = cells["threaded", slow]["repeats"][0]
        epoll = cells["epoll", slow]["repeats"][0]
        # about one thread per downloading client (the accept loop may still
        # be catching up on a busy machine), and one loop
        self.assertGreaterEqual(threaded["threads_max"], 900)
        self.assertLessEqual(epoll["threads_max"], 4)            # one loop (and its main thread)
        # On the shaped link a few of the 1,000 connections may be
        # established only after the window's samples (seen here: 963 of
        # 1,000 for threaded in this 2 s window; 1,000 in the profile's 5 s
        # one). Not asserted away: a cell where that happened must say so,
        # and is never reported clean.
        for model, rep in (("threaded", threaded), ("epoll", epoll)):
            cell = cells[model, slow]
            self.assertGreaterEqual(rep["conns_established"], 900, model)
            if rep["conns_established"] < 1000:
                self.assertNotEqual(cell["status"], "ok", model)
                self.assertTrue(any("established" in why for why in cell["reasons"]),
                                (model, cell["reasons"]))
        for (model, sid), c in cells.items():
            rep = c["repeats"][0]
            if sid.endswith("veth100mbit"):
                self.assertLess(rep["bytes"] / rep["duration_s"] / 1e6, 12.6, (model, sid))
        with open(os.path.join(self.out, "latest", "report.md")) as f:
            md = f.read()
        self.assertIn("veth 100mbit", md)
        self.assertIn("Across links", md)


def make_install(prefix):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    r = subprocess.run(["make", "-s", "-C", REPO, "install", "PREFIX=" + prefix,
                        "BUILD=" + os.path.dirname(os.path.abspath(BIN))],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("make install: " + r.stdout + r.stderr)


@unittest.skipIf(SSH_SKIP, SSH_SKIP)
class RemoteBenchTest(Base):
    @classmethod
    def setUpClass(cls):
        if not os.access(BIN, os.X_OK):
            raise unittest.SkipTest("no c10k binary at %s" % BIN)
        cls.tmp = tempfile.mkdtemp(prefix="c10k-remote-bench-")
        try:
            cls.c10k = os.path.join(cls.tmp, "remote", "bin", "c10k")
            make_install(os.path.dirname(os.path.dirname(cls.c10k)))
            cls.lab = SshLab(remotes=1 if QUICK else 2).__enter__()
        except BaseException:
            shutil.rmtree(cls.tmp, True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()
        shutil.rmtree(cls.tmp, True)

    def remote_bench(self, args, timeout=300):
        argv = [BIN, "bench", "--ssh-config", self.lab.ssh_config, "--remote-c10k", self.c10k,
                "--out", self.out] + args
        return self.lab.run_here(argv, capture_output=True, text=True, timeout=timeout)

    def agent_work_dirs(self):
        return {d for d in os.listdir("/tmp") if d.startswith("c10k-agent-")}

    def check_remote_gone(self, host_info, before):
        """Nothing of the run left over there: its agent's work directory is
        gone (the agent removes it after killing what it started)."""
        self.assertEqual(self.agent_work_dirs() - before, set())
        for h in host_info:
            self.assertFalse(os.path.exists(h["work"]), h)

    def test_server_remote(self):
        before = self.agent_work_dirs()
        r = self.remote_bench(["--server-host", self.lab.hosts[0]] + SMALL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.check_cells(doc, "network", 16, ceiling=False)
        host = doc["environment"]["network"]["server_host"]
        self.assertEqual(host["address"], self.lab.addr(0))
        self.assertEqual(host["c10k"], self.c10k)
        epoll = next(c for c in doc["cells"] if c["model"] == "epoll")["repeats"][0]
        cmd = epoll["server_command"]
        self.assertEqual(cmd[0], self.c10k)
        self.assertEqual(cmd[cmd.index("--bind") + 1], self.lab.addr(0))
        self.assertTrue(cmd[cmd.index("--root") + 1].startswith(host["work"]))
        # counters came from over there: the server's own perf output, here
        if doc["tools"]["perf"]["available"]:
            perf = os.path.join(self.out, "latest", epoll["raw"]["perf"])
            with open(perf) as f:
                self.assertIn("raw_syscalls:sys_enter", f.read())
        with open(os.path.join(self.out, "latest", "raw", "server-epoll.log")) as f:
            self.assertIn("http://%s:" % self.lab.addr(0), f.read())
        self.check_remote_gone([host], before)

    def test_client_remote(self):
        before = self.agent_work_dirs()
        hosts = self.lab.hosts
        r = self.remote_bench(["--client-host", ",".join(hosts)] + SMALL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.check_cells(doc, "network", 16)
        clients = doc["environment"]["network"]["client_hosts"]
        self.assertEqual([h["spec"] for h in clients], hosts)
        for c in doc["cells"]:
            rep = c["repeats"][0]
            with open(os.path.join(self.out, "latest", rep["raw"]["wrk"])) as f:
                wrk = json.load(f)
            self.assertEqual(wrk["hosts"], len(hosts))
            self.assertEqual(len(wrk["per_host"]), len(hosts))
            self.assertEqual(wrk["requests"], sum(h["requests"] for h in wrk["per_host"]))
            self.assertEqual(rep["requests"], wrk["requests"])
            if len(hosts) > 1:
                self.assertEqual(wrk["percentiles_from"], "merged histogram")
                hist_total = sum(n for _, n in wrk["histogram_us"])
                self.assertEqual(hist_total, wrk["recorded"])
            with open(os.path.join(self.out, "latest", rep["raw"]["wrk_text"])) as f:
                text = f.read()
            for i, h in enumerate(hosts):
                self.assertIn("=== %s: $ wrk " % h, text)
                self.assertIn("http://%s:" % self.lab.local_addr(i), text)
        self.check_remote_gone(clients, before)

    def test_server_and_clients_remote(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it")
        before = self.agent_work_dirs()
        r = self.remote_bench(["--server-host", self.lab.hosts[0], "--client-host",
                               self.lab.hosts[1]] + SMALL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        doc = load(self.out)
        self.check_cells(doc, "network", 16, ceiling=False)
        net = doc["environment"]["network"]
        for c in doc["cells"]:
            with open(os.path.join(self.out, "latest", c["repeats"][0]["raw"]["wrk_text"])) as f:
                self.assertIn("http://%s:" % self.lab.addr(0), f.read())
        self.check_remote_gone([net["server_host"]] + net["client_hosts"], before)

    def test_unreachable_host(self):
        r = self.remote_bench(["--server-host", "nosuchhost.invalid"] + SMALL, timeout=120)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("ssh nosuchhost.invalid", r.stderr)
        self.assertFalse(any(os.path.isdir(os.path.join(self.out, d)) and d != "latest"
                             for d in os.listdir(self.out)), os.listdir(self.out))


def main():
    global BIN, QUICK
    BIN = testmain.pop_bin(BIN)
    QUICK = testmain.pop_flag("quick")
    return testmain.run("bench links")


if __name__ == "__main__":
    sys.exit(main())
