"""Network namespaces, veth pairs and tc for `c10k bench --netns`.

The load generator gets a host of its own on the same machine: the server
runs in one network namespace, the client in another, joined by a veth pair.
Neither namespace is the machine's own, so nothing the harness does is seen
by the host's network (no address, route or interface appears there), and
two runs at the same time never collide: each has its own pair of
namespaces with the same addresses.

Addresses come from 198.18.0.0/15, the range RFC 2544 (and RFC 6890)
reserves for benchmarking network devices. Link k of a Lab is
198.18.k.1/30 (the first end) and 198.18.k.2/30 (the second end).

Names. Every namespace is c10k-PID-SEQ-ROLE: PID is the process that made
it, SEQ counts the Labs that process opened, ROLE says what it holds (srv,
cli, ...). Interfaces are created directly inside their namespaces and die
with them.

Nothing is left behind:
  * Lab is a context manager: leaving it, by return, exception, Ctrl-C
    (the caller turns SIGINT/SIGTERM into an exception) or an error in the
    middle of setup, kills what runs inside the namespaces and deletes them.
  * A guard process (this file, run with --guard) holds a pipe from the
    Lab's process. When that process dies in a way no handler sees
    (SIGKILL, a crash), the pipe reads EOF and the guard deletes the
    namespaces it was told about.
  * sweep_leftovers() deletes every c10k-PID-... namespace whose PID is no
    longer alive; each Lab runs it when it opens.

Shaping. shape() puts tbf (a token bucket: the link's rate) on one end's
egress, and netem (delay, loss, ...) as its parent where the kernel has
sch_netem. A kernel without it answers "Specified qdisc kind is unknown":
check_netem() turns that into NetemUnavailable, naming the qdisc, and the
harness refuses to run rather than run without the delay.

Standard library only; needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and
iproute2 (ip, tc).
"""

import ctypes
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

PREFIX = "c10k-"
NAME_RE = re.compile(r"^c10k-(\d+)-(\d+)-([a-z0-9]+)$")
RANGE = "198.18.0.0/15"  # RFC 2544: benchmarking
CLONE_NEWNET = 0x40000000
# a tbf queue may hold this much delay at the link's rate before it drops
TBF_LATENCY_MS = 50

_seq = itertools.count(1)


class NetnsError(Exception):
    """An ip or tc command failed; the message says which and why."""


class NetemUnavailable(NetnsError):
    """The kernel has no netem qdisc (sch_netem)."""


# --- commands ------------------------------------------------------------------


def _run(argv, timeout=20):
    """(exit status, stdout+stderr) of a short command."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    except FileNotFoundError:
        return 127, "%s: not found (apt-get install iproute2)" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "%s: no answer within %d s" % (" ".join(argv), timeout)
    return p.returncode, p.stdout.strip()


def _check(argv):
    rc, out = _run(argv)
    if rc != 0:
        raise NetnsError("%s: %s" % (" ".join(argv), out or "exit status %d" % rc))
    return out


def ip(ns, *args):
    return _check(["ip"] + (["-n", ns] if ns else []) + list(args))


def tc(ns, *args):
    return _check(["tc"] + (["-n", ns] if ns else []) + list(args))


def exec_prefix(ns):
    """Prefix of a command line that runs the command inside namespace ns.
    `ip netns exec` setns()es and then execs the command itself, so the
    process started is the command (its pid, its rusage)."""
    return ["ip", "netns", "exec", ns]


def available():
    """(True, "") when namespaces, veth and tc work here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces and tc need CAP_NET_ADMIN)"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return False, "%s is not installed (apt-get install iproute2, or make deps)" % tool
    name = "%s%d-0-probe" % (PREFIX, os.getpid())
    rc, out = _run(["ip", "netns", "add", name])
    if rc != 0:
        return False, "cannot create a network namespace: %s" % out
    _run(["ip", "netns", "del", name])
    return True, ""


# --- namespaces ----------------------------------------------------------------


def namespaces():
    """Names of every named network namespace (ip netns list)."""
    rc, out = _run(["ip", "netns", "list"])
    if rc != 0:
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ns_pids(ns):
    rc, out = _run(["ip", "netns", "pids", ns])
    return [int(p) for p in out.split() if p.isdigit()] if rc == 0 else []


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for this purpose (its namespaces are gone with it)
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        return False


def kill_inside(ns, grace=2.0):
    """Stop every process in namespace ns (all were started there by the
    harness): SIGTERM, then SIGKILL after grace seconds."""
    me = os.getpid()
    pids = [p for p in ns_pids(ns) if p != me]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return
            time.sleep(0.05)


def delete_ns(ns):
    """Kill what runs in ns and delete it; quiet when it is already gone.
    Its interfaces go with it (a veth pair dies when either end does)."""
    if ns not in namespaces():
        return
    kill_inside(ns)
    _run(["ip", "netns", "del", ns])


def sweep_leftovers():
    """Delete every c10k namespace whose owner process is dead (a run that
    was SIGKILLed before its guard could act). Returns their names."""
    swept = []
    for ns in namespaces():
        m = NAME_RE.match(ns)
        if m and not _alive(int(m.group(1))):
            delete_ns(ns)
            swept.append(ns)
    return swept


_libc = None


def _setns(fd):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


def in_netns(ns, fn, *args, **kwargs):
    """fn(*args, **kwargs) run inside namespace ns, in a thread of its own
    (setns changes only the calling thread's namespace), and its result.
    Sockets it creates belong to ns and keep working from any thread."""
    box = {}

    def body():
        try:
            fd = os.open("/run/netns/%s" % ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=body, name="netns-%s" % ns, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- shaping -----------------------------------------------------------------------

RATE_UNITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9, "tbit": 10 ** 12,
              "bps": 8, "kbps": 8 * 10 ** 3, "mbps": 8 * 10 ** 6, "gbps": 8 * 10 ** 9}


def parse_rate(text):
    """'100mbit' -> 100000000 (bits per second), tc's units (bit, kbit, mbit,
    gbit, tbit; bps, kbps, mbps, gbps are bytes per second). ValueError with
    a message on anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", text or "")
    if not m or m.group(2).lower() not in RATE_UNITS:
        raise ValueError("'%s' is not a rate (e.g. 100mbit, 1gbit, 500kbit)" % text)
    bps = int(float(m.group(1)) * RATE_UNITS[m.group(2).lower()])
    if not 10 ** 4 <= bps <= 10 ** 12:
        raise ValueError("%s is out of range (10kbit to 1tbit)" % text)
    return bps


def rate_text(bps):
    """100000000 -> '100mbit': the shortest exact tc spelling."""
    for unit, mult in (("gbit", 10 ** 9), ("mbit", 10 ** 6), ("kbit", 10 ** 3)):
        if bps % mult == 0:
            return "%d%s" % (bps // mult, unit)
    return "%dbit" % bps


def tbf_args(bps):
    """tbf parameters for a rate. The bucket holds 1 ms at the rate but at
    least two 64 KiB GSO segments: a veth hands tbf whole GSO packets, and a
    bucket smaller than one makes tbf split it first (tbf_segment), which
    costs CPU for nothing."""
    burst = max(bps // 8 // 1000, 2 * 65536)
    return ["rate", rate_text(bps), "burst", str(burst), "latency", "%dms" % TBF_LATENCY_MS]


def netem_args(text):
    """The words of a --netem value, checked for shape only (tc checks the
    rest): 'delay 5ms loss 0.1%' -> ['delay', '5ms', 'loss', '0.1%']."""
    try:
        words = shlex.split(text or "")
    except ValueError as e:
        raise ValueError("'%s': %s" % (text, e)) from None
    if not words:
        raise ValueError("empty: want netem parameters, e.g. 'delay 5ms loss 0.1%'")
    return words


def shape_commands(dev, bps=None, netem=None):
    """The tc commands (without `tc -n NS`) that give dev's egress this rate
    (bits/s or None) and netem words (or None). Neither: remove the root
    qdisc (a veth's default is noqueue, full speed)."""
    if netem and bps:
        return [["qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem"] + netem,
                ["qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:", "tbf"]
                + tbf_args(bps)]
    if netem:
        return [["qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem"] + netem]
    if bps:
        return [["qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf"] + tbf_args(bps)]
    return [["qdisc", "del", "dev", dev, "root"]]


def shape(ns, dev, bps=None, netem=None):
    """Apply shape_commands() in ns. Removing a qdisc that is not there is
    fine; anything else tc refuses raises NetnsError (NetemUnavailable when
    the kernel has no netem)."""
    if not bps and not netem:
        rc, out = _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"])
        if rc != 0 and "No such file" not in out and "Cannot delete qdisc with handle of zero" \
                not in out and "Invalid handle" not in out:
            raise NetnsError("tc -n %s qdisc del dev %s root: %s" % (ns, dev, out))
        return
    # start from the default so a replace never stacks on an old tree
    _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"])
    for cmd in shape_commands(dev, bps, netem):
        rc, out = _run(["tc", "-n", ns] + cmd)
        if rc == 0:
            continue
        if "netem" in cmd and "qdisc kind is unknown" in out:
            said = out.replace("Error: ", "").rstrip(".")
            raise NetemUnavailable("this kernel has no netem qdisc (sch_netem; tc: \"%s\")"
                                   % said)
        raise NetnsError("tc -n %s %s: %s" % (ns, " ".join(cmd), out))


def qdiscs(ns, dev):
    """`tc qdisc show dev` in ns, one line per qdisc."""
    return tc(ns, "qdisc", "show", "dev", dev).splitlines()


# --- a Lab: namespaces that exist only while it is open --------------------------


class Link:
    """One veth pair between two namespaces of a Lab: ends (ns, dev, addr)."""

    def __init__(self, index, a_ns, b_ns, a_dev, b_dev):
        self.index = index
        self.a_ns, self.b_ns, self.a_dev, self.b_dev = a_ns, b_ns, a_dev, b_dev
        self.a_addr = "198.18.%d.1" % index
        self.b_addr = "198.18.%d.2" % index
        self.rate_bps, self.netem = None, None

    def shape(self, bps=None, netem=None):
        """Both ends' egress get the same rate and netem."""
        if (bps, netem) == (self.rate_bps, self.netem):
            return
        for ns, dev in ((self.a_ns, self.a_dev), (self.b_ns, self.b_dev)):
            shape(ns, dev, bps, netem)
        self.rate_bps, self.netem = bps, netem


class Lab:
    """Network namespaces and veth pairs for one run or one test.

        with Lab() as lab:
            srv = lab.add_ns("srv"); cli = lab.add_ns("cli")
            link = lab.connect(srv, cli)     # 198.18.0.1 <-> 198.18.0.2
            ... exec_prefix(cli) + argv ...
        # everything is gone here, whatever happened inside
    """

    def __init__(self):
        self.seq = next(_seq)
        self.names = []
        self.links = []
        self.guard = None
        self.old_handlers = {}

    def __enter__(self):
        sweep_leftovers()
        self._start_guard()
        self._catch_signals()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _catch_signals(self):
        """SIGTERM and SIGHUP end a Python process without unwinding, so no
        `finally` would run: while the Lab is open, those left at their
        default raise KeyboardInterrupt instead, as SIGINT already does.
        (Only the main thread may set handlers; elsewhere the guard covers.)"""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                self.old_handlers[sig] = signal.signal(sig, _raise_interrupt)

    def _restore_signals(self):
        for sig, old in self.old_handlers.items():
            signal.signal(sig, old)
        self.old_handlers = {}

    def _start_guard(self):
        r, w = os.pipe()
        try:
            self.guard = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--guard"], stdin=r,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                close_fds=True)
        finally:
            os.close(r)
        self.guard_w = os.fdopen(w, "w", buffering=1)

    def _tell_guard(self, ns):
        try:
            self.guard_w.write(ns + "\n")
        except (OSError, ValueError):
            pass  # a dead guard: the sweep at the next start covers it

    def add_ns(self, role):
        if not re.fullmatch(r"[a-z0-9]{1,8}", role):
            raise ValueError("namespace role %r: want 1-8 of a-z0-9" % role)
        ns = "%s%d-%d-%s" % (PREFIX, os.getpid(), self.seq, role)
        self._tell_guard(ns)  # before it exists: a kill in between is covered
        self.names.append(ns)
        ip(None, "netns", "add", ns)
        ip(ns, "link", "set", "lo", "up")
        return ns

    def connect(self, a_ns, b_ns):
        """A veth pair from a_ns to b_ns, up and addressed. Both ends are
        created inside their namespaces, never in the host's."""
        k = len(self.links)
        if k > 255:
            raise NetnsError("a Lab holds at most 256 links")
        a_dev, b_dev = "c10k%da" % k, "c10k%db" % k
        ip(a_ns, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b_ns)
        link = Link(k, a_ns, b_ns, a_dev, b_dev)
        ip(a_ns, "addr", "add", link.a_addr + "/30", "dev", a_dev)
        ip(b_ns, "addr", "add", link.b_addr + "/30", "dev", b_dev)
        ip(a_ns, "link", "set", a_dev, "up")
        ip(b_ns, "link", "set", b_dev, "up")
        self.links.append(link)
        return link

    def close(self):
        self._restore_signals()
        for ns in reversed(self.names):
            delete_ns(ns)
        self.names = []
        self.links = []
        if self.guard is not None:
            try:
                self.guard_w.close()
            except OSError:
                pass
            try:
                self.guard.wait(10)
            except subprocess.TimeoutExpired:
                self.guard.kill()
                self.guard.wait()
            self.guard = None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def guard_main(stream):
    """The guard: collect names until EOF (the Lab closed its end, or its
    process died), then delete whichever of them still exist."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    names = []
    for line in stream:
        name = line.strip()
        if NAME_RE.match(name):
            names.append(name)
    for ns in reversed(names):
        delete_ns(ns)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--guard"]:
        sys.exit(guard_main(sys.stdin))
    if sys.argv[1:] == ["--sweep"]:
        for name in sweep_leftovers():
            print("deleted leftover namespace %s" % name)
        sys.exit(0)
    print("usage: netns.py --guard | --sweep", file=sys.stderr)
    sys.exit(2)
