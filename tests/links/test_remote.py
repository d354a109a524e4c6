#!/usr/bin/python3
"""Other hosts over ssh, on one machine.

  * make install PREFIX=DIR puts c10k and its bench/ files where the
    installed binary finds them, from outside the checkout; C10K_HOME
    overrides; a missing bench/ is a one-line error naming where it looked.
  * Through an sshd in a network namespace (tests/lib/sshlab.py), with the
    installed c10k as the remote one: the agent answers over ssh, says
    which addresses the two ends have, runs a server reachable from here,
    starts two hosts' generators behind a barrier (and none when one host
    cannot arm), and when the ssh session is killed everything it started
    over there dies with it. A host without c10k, or an unreachable host, is
    a one-line error.

    /usr/bin/python3 tests/links/test_remote.py [--bin BUILD/c10k] [--quick]

Without root, iproute2 or openssh-server the ssh tests are skipped with the
reason.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import netns, remote  # noqa: E402
from sshlab import SshLab, skip_reason  # noqa: E402

BIN = os.environ.get("C10K_BIN") or os.path.join(REPO, "build", "c10k")
QUICK = False


def make_install(prefix):
    """make install PREFIX=prefix with the build directory BIN is in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "-s", "-C", REPO, "install", "PREFIX=" + prefix,
                           "BUILD=" + os.path.dirname(os.path.abspath(BIN))],
                          capture_output=True, text=True, env=env, timeout=600)


class InstallTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.skipTest("no c10k binary at %s" % BIN)
        self.tmp = tempfile.mkdtemp(prefix="c10k-install-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_install_runs_outside_the_checkout(self):
        prefix = os.path.join(self.tmp, "prefix")
        r = make_install(prefix)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        c10k = os.path.join(prefix, "bin", "c10k")
        self.assertTrue(os.access(c10k, os.X_OK))
        share = os.path.join(prefix, "share", "c10k", "bench")
        for f in ("c10k_bench.py", "report.py", "wrk_report.lua", "harness/agent.py",
                  "harness/netns.py", "reportlib/build.py"):
            self.assertTrue(os.path.exists(os.path.join(share, f)), f)
        env = {k: v for k, v in os.environ.items() if k != "C10K_HOME"}
        for argv in (["bench", "--help"], ["report", "--help"], ["agent", "--help"]):
            p = subprocess.run([c10k] + argv, capture_output=True, text=True, env=env,
                               cwd=self.tmp)
            self.assertEqual(p.returncode, 0, (argv, p.stderr))
        # an installed copy with no bench/ beside it: the message says where it looked
        lone = os.path.join(self.tmp, "lone", "bin")
        os.makedirs(lone)
        shutil.copy(c10k, lone)
        p = subprocess.run([os.path.join(lone, "c10k"), "report", "--help"], capture_output=True,
                           text=True, env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot find bench/report.py", p.stderr)
        self.assertIn("share/c10k/bench/report.py", p.stderr)
        self.assertIn("C10K_HOME", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        # C10K_HOME points it at an install prefix's share/c10k
        p = subprocess.run([os.path.join(lone, "c10k"), "report", "--help"], capture_output=True,
                           text=True, env=dict(env, C10K_HOME=os.path.dirname(share)))
        self.assertEqual(p.returncode, 0, p.stderr)
        env_bad = dict(env, C10K_HOME=os.path.join(self.tmp, "nowhere"))
        p = subprocess.run([c10k, "report", "--help"], capture_output=True, text=True,
                           env=env_bad)
        self.assertEqual(p.returncode, 1)
        self.assertIn("from C10K_HOME", p.stderr)
        env2 = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        r = subprocess.run(["make", "-s", "-C", REPO, "uninstall", "PREFIX=" + prefix],
                           capture_output=True, text=True, env=env2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(c10k))
        self.assertFalse(os.path.exists(os.path.join(prefix, "share", "c10k")))


SKIP = skip_reason()


def session_alive(marker_pid):
    try:
        with open("/proc/%d/stat" % marker_pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@unittest.skipIf(SKIP, SKIP)
class AgentOverSshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(BIN, os.X_OK):
            raise unittest.SkipTest("no c10k binary at %s" % BIN)
        if QUICK:
            raise unittest.SkipTest("--quick: make test-links runs it (make test drives whole "
                                    "bench runs through ssh in test_bench_links.py)")
        cls.tmp = tempfile.mkdtemp(prefix="c10k-remote-")
        try:
            prefix = os.path.join(cls.tmp, "remote")
            r = make_install(prefix)
            if r.returncode != 0:
                raise RuntimeError("make install: " + r.stdout + r.stderr)
            cls.c10k = os.path.join(prefix, "bin", "c10k")
            cls.lab = SshLab(remotes=2).__enter__()
        except BaseException:
            shutil.rmtree(cls.tmp, True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.close()
        shutil.rmtree(cls.tmp, True)

    def agent(self, i, c10k=None):
        """An Agent for remote i, its ssh started inside the lab's 'here'."""
        a = netns.in_netns(self.lab.here, remote.Agent, self.lab.hosts[i], c10k or self.c10k,
                           self.lab.ssh_config, os.path.join(self.tmp, "agent%d.log" % i))
        self.addCleanup(a.close)
        return a

    def test_hello_says_who_is_where(self):
        a = self.agent(0)
        self.assertEqual(a.info["bin"], self.c10k)
        self.assertEqual(a.info["bench"], os.path.join(os.path.dirname(os.path.dirname(
            self.c10k)), "share", "c10k", "bench"))
        self.assertEqual(a.info["own_addr"], self.lab.addr(0))
        self.assertEqual(a.info["peer_addr"], self.lab.local_addr(0))
        self.assertEqual(a.read("nothing-here"), None)
        a.write("f.bin", b"\0\1\2" * 1000)
        self.assertEqual(a.read("f.bin"), b"\0\1\2" * 1000)

    def test_remote_server_served_here(self):
        a = self.agent(0)
        a.write("root/hello.txt", "hello from over there")
        r = a.call("spawn", cid="srv", argv=["{bin}", "serve", "epoll", "--bind",
                                             a.info["own_addr"], "--port", "0", "--root",
                                             "{work}/root", "--workers", "1"],
                   log="srv.log", first_line_timeout=10)
        port = int(re.search(r"http://[^/]*:(\d+)/", r["line"]).group(1))
        self.assertIsNone(a.call("wait_listening", cid="srv", host=a.info["own_addr"],
                                 port=port, timeout=5))
        url = "http://%s:%d/hello.txt" % (a.info["own_addr"], port)
        body = netns.in_netns(self.lab.here, lambda: urllib.request.urlopen(url, timeout=5).read())
        self.assertEqual(body, b"hello from over there")
        self.assertEqual(a.call("stop", cid="srv", sig=15, timeout=5), "clean")

    def test_barrier_two_hosts(self):
        agents = [self.agent(0), self.agent(1)]
        cmd = ["python3", "-c", "import time, json; json.dump({'t': time.time()}, "
                                "open('{work}/t.json', 'w'))"]
        out = remote.start_together([(a, dict(cid="gen", argv=cmd, files=["t.json"]))
                                     for a in agents], timeout=30)
        times = [json.loads(base64.b64decode(o["files"]["t.json"]))["t"] for o in out]
        # one clock (one machine): both started within a fraction of a second
        self.assertLess(abs(times[0] - times[1]), 0.5, times)
        for o in out:
            self.assertEqual(o["returncode"], 0)
            self.assertIsNotNone(o["cpu_s"])
        # one host cannot arm: nobody gets "go"
        mark = ["sh", "-c", "touch {work}/ran"]
        with self.assertRaises(remote.RemoteError) as cm:
            remote.start_together([(agents[0], dict(cid="m", argv=mark)),
                                   (agents[1], dict(cid="m", argv=["no-such-generator"]))], 30)
        self.assertIn("no-such-generator is not installed", str(cm.exception))
        time.sleep(0.3)
        self.assertIsNone(agents[0].read("ran"))

    def test_killed_session_stops_everything_there(self):
        a = self.agent(1)
        r = a.call("spawn", cid="s", argv=["sh", "-c", "sleep 300 & sleep 300"])
        pid = r["pid"]
        time.sleep(0.3)
        kids = [int(p) for p in subprocess.run(["pgrep", "-s", str(pid)], capture_output=True,
                                                text=True).stdout.split()]
        self.assertGreaterEqual(len(kids), 2)
        work = a.info["work"]
        a.kill()  # as after Ctrl-C or a crash here: no goodbye
        deadline = time.monotonic() + 10
        while any(session_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([k for k in kids if session_alive(k)], [])
        while os.path.exists(work) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(os.path.exists(work))

    def test_one_off_command_quoted(self):
        host = remote.SshHost(self.lab.hosts[0], self.lab.ssh_config)
        rc, out, err = netns.in_netns(self.lab.here, host.run,
                                      ["sh", "-c", 'printf "%s|" "$@"', "x", "a b", "$HOME;"])
        self.assertEqual((rc, out), (0, "a b|$HOME;|"), err)
        rc, out, err = netns.in_netns(self.lab.here, host.run, ["cat"], 30, b"piped in")
        self.assertEqual((rc, out), (0, "piped in"), err)

    def test_errors_name_the_host_and_cause(self):
        with self.assertRaises(remote.RemoteError) as cm:
            self.agent(0, c10k="/nonexistent/c10k")
        msg = str(cm.exception)
        self.assertIn("c10k-remote0", msg)
        self.assertIn("not installed there", msg)
        with self.assertRaises(remote.RemoteError) as cm:
            netns.in_netns(self.lab.here, remote.Agent, "nosuchhost.invalid", self.c10k,
                           self.lab.ssh_config, None)
        self.assertIn("ssh nosuchhost.invalid", str(cm.exception))


def main():
    global BIN, QUICK
    BIN = testmain.pop_bin(BIN)
    QUICK = testmain.pop_flag("quick")
    return testmain.run("remote")


if __name__ == "__main__":
    sys.exit(main())
