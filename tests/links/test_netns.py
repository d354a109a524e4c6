#!/usr/bin/python3
"""Network namespaces, veth and tc (bench/harness/netns.py), as root.

  * A Lab's namespaces and interfaces exist while it is open and are gone
    after it closes: normally, on an exception (a failure in the middle of
    setup included), when its process gets SIGINT or SIGTERM, and when it
    is SIGKILLed (its guard process cleans up). What ran inside the
    namespaces is killed too.
  * A namespace left by a dead process is swept by the next Lab; one whose
    owner lives is not.
  * tbf on the veth holds a 100 Mbit/s link to 100 Mbit/s (about 12 MB/s);
    the bare veth is much faster.
  * netem: where the kernel lacks sch_netem, shaping raises
    NetemUnavailable naming it; where it has it, the qdisc is in place.

    /usr/bin/python3 tests/links/test_netns.py [--quick]

--quick (make test) leaves out the SIGKILL and rate tests. Without root or
iproute2 every test is skipped with the reason.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from harness import netns  # noqa: E402

QUICK = False
OK, WHY = netns.available()


def root_links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def ours(pid):
    """Namespaces named for process pid."""
    return [n for n in netns.namespaces() if n.startswith("%s%d-" % (netns.PREFIX, pid))]


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# A process that opens a Lab, starts a sleeper inside one of its namespaces,
# says "ready NS... PID" and waits to be signalled.
HOLDER = r"""
import subprocess, sys, time
sys.path.insert(0, %r)
from harness import netns
with netns.Lab() as lab:
    a = lab.add_ns("srv"); b = lab.add_ns("cli")
    lab.connect(a, b)
    p = subprocess.Popen(netns.exec_prefix(b) + ["sleep", "300"], start_new_session=True)
    print("ready", a, b, p.pid, flush=True)
    time.sleep(300)
""" % os.path.join(REPO, "bench")


@unittest.skipUnless(OK, WHY)
class LabTest(unittest.TestCase):
    def setUp(self):
        self.links_before = root_links()

    def assertNothingLeft(self, names, pid=None, wait=10):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            left = set(names) & set(netns.namespaces())
            if not left:
                break
            time.sleep(0.1)
        self.assertEqual(set(names) & set(netns.namespaces()), set(), "namespaces left")
        new = {n for n in root_links() - self.links_before if n.startswith("c10k")}
        self.assertEqual(new, set(), "interfaces left in the host's namespace")
        if pid is not None:
            self.assertEqual(ours(pid), [])

    def test_lifecycle(self):
        with netns.Lab() as lab:
            a, b = lab.add_ns("srv"), lab.add_ns("cli")
            link = lab.connect(a, b)
            self.assertEqual((link.a_addr, link.b_addr), ("198.18.0.1", "198.18.0.2"))
            self.assertEqual(set(ours(os.getpid())) & {a, b}, {a, b})
            # the interfaces are inside the namespaces, none in the host's
            self.assertIn(link.a_dev, netns.ip(a, "-o", "link"))
            self.assertIn(link.b_dev, netns.ip(b, "-o", "link"))
            self.assertNotIn(link.a_dev, root_links())
            # a connection crosses the link, from the client namespace
            ls = netns.in_netns(a, socket.create_server, (link.a_addr, 0))
            port = ls.getsockname()[1]
            c = netns.in_netns(b, socket.create_connection, (link.a_addr, port), 5)
            s, peer = ls.accept()
            self.assertEqual(peer[0], link.b_addr)
            for x in (c, s, ls):
                x.close()
            names = [a, b]
        self.assertNothingLeft(names)

    def test_exception_and_failed_setup(self):
        names = []
        with self.assertRaises(netns.NetnsError):
            with netns.Lab() as lab:
                names.append(lab.add_ns("srv"))
                lab.connect(names[0], "c10k-no-such-namespace")
        self.assertNothingLeft(names)
        with self.assertRaises(ZeroDivisionError):
            with netns.Lab() as lab:
                names.append(lab.add_ns("srv"))
                1 / 0
        self.assertNothingLeft(names)

    def holder(self):
        p = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True,
                             stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        line = p.stdout.readline().split()
        self.assertEqual(line[:1], ["ready"], line)
        return p, line[1:3], int(line[3])

    def check_signal(self, sig, wait):
        """wait 0: the Lab itself must have cleaned up before its process
        exited; otherwise its guard may take up to `wait` seconds."""
        p, names, sleeper = self.holder()
        self.assertTrue(set(names) <= set(netns.namespaces()))
        self.assertTrue(pid_alive(sleeper))
        os.kill(p.pid, sig)
        p.wait(20)
        p.stdout.close()
        self.assertNothingLeft(names, p.pid, wait)
        self.assertFalse(pid_alive(sleeper), "the process inside the namespace survived")

    def test_sigint(self):
        self.check_signal(signal.SIGINT, 0)

    def test_sigterm(self):
        self.check_signal(signal.SIGTERM, 0)

    def test_sigkill_guard(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it")
        self.check_signal(signal.SIGKILL, 10)

    def test_sweep_dead_owner_only(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = "%s%d-1-srv" % (netns.PREFIX, dead.pid)
        live = "%s%d-999-srv" % (netns.PREFIX, os.getpid())
        for ns in (stale, live):
            netns.ip(None, "netns", "add", ns)
        try:
            with netns.Lab():
                present = netns.namespaces()
                self.assertNotIn(stale, present)
                self.assertIn(live, present)
        finally:
            for ns in (stale, live):
                netns.delete_ns(ns)


def throughput(lab_link, seconds=2.0):
    """Bytes per second sent from the second end to the first."""
    a, b = lab_link.a_ns, lab_link.b_ns
    ls = netns.in_netns(a, socket.create_server, (lab_link.a_addr, 0))
    got = [0]

    def sink():
        s, _ = ls.accept()
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got[0] += len(d)
        s.close()

    t = threading.Thread(target=sink)
    t.start()
    c = netns.in_netns(b, socket.create_connection, (lab_link.a_addr, ls.getsockname()[1]), 5)
    buf = b"\0" * 65536
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        c.sendall(buf)
    c.close()
    t.join()
    elapsed = time.monotonic() - t0
    ls.close()
    return got[0] / elapsed


@unittest.skipUnless(OK, WHY)
class ShapeTest(unittest.TestCase):
    def test_tbf_rate(self):
        if QUICK:
            self.skipTest("--quick: make test-links runs it")
        with netns.Lab() as lab:
            link = lab.connect(lab.add_ns("srv"), lab.add_ns("cli"))
            full = throughput(link, 1.0)
            link.shape(netns.parse_rate("100mbit"))
            self.assertIn("tbf", " ".join(netns.qdiscs(link.a_ns, link.a_dev)))
            self.assertIn("tbf", " ".join(netns.qdiscs(link.b_ns, link.b_dev)))
            slow = throughput(link, 3.0)
            # 100 Mbit/s is 12.5 MB/s of IP; TCP/IP headers take ~3%
            self.assertGreater(slow, 10.5e6)
            self.assertLess(slow, 13.0e6)
            self.assertGreater(full, 3 * slow, "the unshaped veth should be much faster")
            link.shape(None)
            self.assertNotIn("tbf", " ".join(netns.qdiscs(link.a_ns, link.a_dev)))

    def test_netem(self):
        with netns.Lab() as lab:
            link = lab.connect(lab.add_ns("srv"), lab.add_ns("cli"))
            probe = subprocess.run(["tc", "-n", link.a_ns, "qdisc", "add", "dev", link.a_dev,
                                    "root", "netem", "delay", "1ms"], capture_output=True,
                                   text=True)
            netns.shape(link.a_ns, link.a_dev, None, None)
            if "qdisc kind is unknown" in probe.stderr:
                with self.assertRaises(netns.NetemUnavailable) as cm:
                    link.shape(None, ["delay", "5ms"])
                self.assertIn("sch_netem", str(cm.exception))
                self.assertIn("Specified qdisc kind is unknown", str(cm.exception))
            else:
                link.shape(netns.parse_rate("100mbit"), ["delay", "5ms"])
                shown = " ".join(netns.qdiscs(link.a_ns, link.a_dev))
                self.assertIn("netem", shown)
                self.assertIn("tbf", shown)
            with self.assertRaises(netns.NetnsError):
                netns.shape(link.a_ns, link.a_dev, None, ["bogus-word"])


def main():
    global QUICK
    QUICK = testmain.pop_flag("quick")
    return testmain.run("netns")


if __name__ == "__main__":
    sys.exit(main())
