"""What a server costs over one window, and the state of the machine around it.

    /proc       CPU, memory, threads and processes of the server's tree
    perf        syscalls, voluntary and involuntary switches (perf stat)
    softirqs    NET_RX / NET_TX from /proc/softirqs (the whole machine)
    machine     load average and CPU steal from /proc/loadavg and /proc/stat
    samplers    during the window: memory, threads, established connections
                (every 0.5 s) and the accept queue (every 50 ms)
    stats file  the model's own counters (CONTRACTS.md section 3)
"""

import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time

from .sockdiag import open_sockdiag, proc_tcp_counts
from .util import proc_stats, read_file

CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- processes under /proc -------------------------------------------------


def proc_children_map():
    """ppid -> [pid] for every process (this kernel may lack
    /proc/PID/task/TID/children, so scan /proc)."""
    kids = {}
    for pid, fields in proc_stats():
        kids.setdefault(int(fields[1]), []).append(pid)
    return kids


def tree_pids(root):
    kids = proc_children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def read_status(path):
    out = {}
    for line in read_file(path).splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


# PSS needs /proc/PID/smaps_rollup (Linux 4.14); without it memory is RSS.
HAVE_SMAPS_ROLLUP = os.path.exists("/proc/self/smaps_rollup")
# Its anonymous part, Pss_Anon (Linux 5.4): heap, stacks and copy-on-write
# pages, shared only inside a process tree. The file-backed part (libc's
# text) is split with every other process on the machine that maps the same
# file, so it moves with what else runs; the anonymous part does not.
HAVE_PSS_ANON = "Pss_Anon:" in read_file("/proc/self/smaps_rollup")


def _task_switches(pid, snap):
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        tids = []
    for tid in tids:
        ts = read_status("/proc/%d/task/%s/status" % (pid, tid))
        snap["vol"] += int(ts.get("voluntary_ctxt_switches", 0))
        snap["invol"] += int(ts.get("nonvoluntary_ctxt_switches", 0))


def proc_snapshot(root, tasks=True):
    """CPU, switches, memory and task counts of a process tree right now.

    cpu_ticks counts every tick the tree ever used exactly once: for each live
    process its own utime+stime (which include its exited threads) plus
    cutime+cstime (children it has reaped, and theirs). A child that exits
    and is reaped during the window moves from the first term of the start
    snapshot to its parent's second term at the end, so the difference of two
    snapshots is the window's CPU, exited children included.
    Context switches from /proc are per thread only, and a thread that exits
    takes its counts with it; they are the fallback when perf is unusable.
    """
    snap = {"user_ticks": 0, "sys_ticks": 0, "procs": 0, "threads": 0, "rss_kib": 0,
            "pss_kib": 0 if HAVE_SMAPS_ROLLUP else None,
            "pss_anon_kib": 0 if HAVE_PSS_ANON else None, "hwm_kib": 0, "vol": 0, "invol": 0,
            "pids": []}
    for pid in tree_pids(root):
        stat = read_file("/proc/%d/stat" % pid)
        if not stat:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        # fields after "(comm) ": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        snap["user_ticks"] += int(f[11]) + int(f[13])
        snap["sys_ticks"] += int(f[12]) + int(f[14])
        snap["threads"] += int(f[17])
        snap["procs"] += 1
        snap["pids"].append(pid)
        st = read_status("/proc/%d/status" % pid)
        snap["rss_kib"] += int(st.get("VmRSS", "0 kB").split()[0])
        snap["hwm_kib"] += int(st.get("VmHWM", "0 kB").split()[0])
        if HAVE_SMAPS_ROLLUP:  # a process that just exited adds nothing
            rollup = read_status("/proc/%d/smaps_rollup" % pid)
            snap["pss_kib"] += int(rollup.get("Pss", "0 kB").split()[0])
            if HAVE_PSS_ANON:
                snap["pss_anon_kib"] += int(rollup.get("Pss_Anon", "0 kB").split()[0])
        if tasks:
            _task_switches(pid, snap)
    return snap


# --- perf ------------------------------------------------------------------------


def check_perf():
    """(usable, why). Tries the exact events the window uses."""
    if not shutil.which("perf"):
        return False, "perf is not installed (apt-get install linux-perf)"
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-e", "sched:sched_switch",
         "--", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=20)
    if probe.returncode != 0 or "not supported" in probe.stderr or "<not" in probe.stderr:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return False, ("perf cannot count raw_syscalls:sys_enter / sched:sched_switch (%s); "
                       "as root check kernel.perf_event_paranoid and that tracefs is mounted "
                       "at /sys/kernel/tracing" % why)
    return True, ""


# The system calls that wait for events, by number (raw_syscalls carries
# only the number; asm/unistd.h of each architecture). How many of them a
# request costs depends on how many requests each wait collects, that is on
# the pace of the client against the server, not only on the model: counted
# apart, so the rest of a request's syscalls can be compared run to run.
WAIT_SYSCALLS = {
    # poll, select, epoll_wait, pselect6, ppoll, epoll_pwait, io_uring_enter, epoll_pwait2
    "x86_64": (7, 23, 232, 270, 271, 281, 426, 441),
    # the generic table: pselect6, ppoll, epoll_pwait, io_uring_enter, epoll_pwait2
    "aarch64": (72, 73, 22, 426, 441),
    "riscv64": (72, 73, 22, 426, 441),
}.get(os.uname().machine)
WAIT_NAMES = "poll, select, epoll_wait, epoll_pwait, epoll_pwait2, io_uring_enter"

PERF_EVENTS = [
    # (name in results, perf event args)
    ("syscalls", ["-e", "raw_syscalls:sys_enter"]),
    # A switch where the task was preempted is reported with prev_state 0 (R)
    # or TASK_REPORT_MAX (R+, 0x100 on 6.x); anything else means it chose to
    # sleep. Same rule the scheduler uses for nvcsw/nivcsw.
    ("switches_invol", ["-e", "sched:sched_switch",
                        "--filter", "prev_state == 0 || prev_state >= 256"]),
    ("switches", ["-e", "sched:sched_switch"]),
    ("task_clock_ms", ["-e", "task-clock"]),
]
if WAIT_SYSCALLS:
    PERF_EVENTS.append(("syscalls_wait", ["-e", "raw_syscalls:sys_enter", "--filter",
                                          " || ".join("id == %d" % n for n in WAIT_SYSCALLS)]))


_CONTROL = []


def perf_has_control():
    """perf stat --control (perf 5.9+): attach early with the counters off,
    switch them on at the window's start."""
    if not _CONTROL:
        _CONTROL.append("--control" in subprocess.run(
            ["perf", "stat", "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=20).stdout)
    return _CONTROL[0]


def perf_start(pids, out_path, control=None):
    """perf stat attached to pids; with control=(ctl_fd, ack_fd) it starts
    with its counters off (-D -1) and obeys 'enable' on ctl_fd."""
    argv = ["perf", "stat", "-x,", "-o", out_path, "-p", ",".join(str(p) for p in pids)]
    if control:
        argv += ["-D", "-1", "--control", "fd:%d,%d" % control]
    for _, ev in PERF_EVENTS:
        argv += ev
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True,
                            pass_fds=control or ())


def parse_perf_csv(text):
    """perf stat -x, output -> {name: value} or None if any count is missing."""
    values = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split(",")
        if len(f) < 3:
            continue
        try:
            values.append(float(f[0]))
        except ValueError:
            values.append(None)  # "<not counted>" / "<not supported>"
    if len(values) != len(PERF_EVENTS) or any(v is None for v in values):
        return None
    return {name: v for (name, _), v in zip(PERF_EVENTS, values)}


def perf_stop(proc, out_path):
    """SIGINT makes perf stat print its counts and exit. Returns (dict, error)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, "perf did not stop within 10 s"
    text = read_file(out_path)
    counts = parse_perf_csv(text)
    if counts is None:
        return None, "perf gave no counts: %s" % ((err or text).strip()[-200:] or "empty")
    return counts, None


class ServerCosts:
    """What a server tree costs over one window, whatever threads and
    processes come and go in it.

      CPU user/system: /proc snapshots at start and end (proc_snapshot:
        own + reaped-children ticks of every live process, so threads and
        children that exit during the window are counted).
      Voluntary/involuntary context switches, syscalls (and among them the
        calls that wait for events, WAIT_SYSCALLS), task-clock: perf stat
        attached to every process of the tree for exactly the window. perf
        follows threads and children created after it attached (inherit),
        and an exiting task's counts are added to its parent's counter, so
        nothing is lost when a thread or child exits. Switches are split by
        the sched_switch prev_state rule in PERF_EVENTS.
      Without perf, switches come from the /proc per-thread counters, which
        miss threads that exit during the window (said in ctx_method), and
        syscalls are unavailable (None, never 0).
    """

    def __init__(self, root_pid, perf_out, use_perf, perf_why=""):
        self.root, self.perf_out, self.use_perf = root_pid, perf_out, use_perf
        self.perf_why = perf_why
        self.perf = None
        self.ctl = self.ack = None  # our ends of perf's control pipes
        self.control = use_perf and perf_has_control()
        self.enabled = False
        self.times = {}

    def attach(self):
        """Attach perf now, before the warm-up, its counters off; start()
        switches them on. Without --control in this perf, attaching waits
        for start(). Returns once perf has attached: a child forked before
        that is not perf's (perf follows only what the processes it attached
        to fork later), so a prefork worker forked in the warm-up would lose
        its counts. Processes that appeared while perf attached are attached
        to by starting it again."""
        if not self.control:
            return
        pids = proc_snapshot(self.root, tasks=False)["pids"]
        for _ in range(3):
            self._spawn(pids)
            # perf reads its control pipe only once every counter is open:
            # its answer to a "disable" (they are off already) says so
            if not self._command(b"disable"):
                return  # start() spawns it again
            now = proc_snapshot(self.root, tasks=False)["pids"]
            if set(now) <= set(pids):
                return
            pids = now

    def _spawn(self, pids):
        self._close_perf()
        if not self.control:
            self.perf = perf_start(pids, self.perf_out)
            return
        ctl_r, self.ctl = os.pipe()
        self.ack, ack_w = os.pipe()
        try:
            self.perf = perf_start(pids, self.perf_out, (ctl_r, ack_w))
        finally:
            os.close(ctl_r)
            os.close(ack_w)

    def _command(self, word, timeout=10.0):
        """One --control command; True once perf acknowledged it (it answers
        only after attaching to every thread, which takes a while at
        10,000)."""
        try:
            os.write(self.ctl, word + b"\n")
        except OSError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.perf.poll() is None:
            r, _, _ = select.select([self.ack], [], [], 0.05)
            if r:
                return os.read(self.ack, 64).startswith(b"ack")
        return False

    def _enable(self):
        """Counters on; True once perf acknowledged."""
        if not self.control:
            time.sleep(0.3)  # let perf open its counters before the load starts
            return self.perf.poll() is None
        return self._command(b"enable")

    def start(self):
        """The window starts: perf counting, then the /proc snapshot. The
        per-thread switch counters are read only when perf does not count
        switches: at 10,000 threads reading them takes over a second, which
        an open-loop window (the load already running) cannot spare.
        self.times records when each side started and stopped counting."""
        self.enabled = False
        pids = None
        for _ in range(3 if self.use_perf else 0):
            if self.perf is None or self.perf.poll() is not None:
                self._spawn(pids or proc_snapshot(self.root, tasks=False)["pids"])
            if self._enable():
                self.enabled = True
                break
            # perf gives up (ESRCH) when a thread exits while it attaches to
            # each one, as with 10,000 threads coming and going: try again.
            pids = proc_snapshot(self.root, tasks=False)["pids"]
        if self.use_perf and not self.enabled:
            self._close_perf()
            self.perf_why = "perf did not start counting after 3 attempts"
        self.times = {"perf_on": time.monotonic() if self.enabled else None,
                      "cpu_start": time.monotonic()}
        self.t_start = proc_snapshot(self.root, tasks=not self.enabled)
        self.t_start["tasks_read"] = not self.enabled

    def _perf_counts(self):
        counts, err = None, self.perf_why or "perf unavailable"
        if self.perf is not None:
            if self.perf.poll() is None:
                counts, err = perf_stop(self.perf, self.perf_out)
            else:
                err = "perf exited early: %s" % (self.perf.stderr.read() or "").strip()[-200:]
            self._close_perf()
        return counts, err

    def stop(self):
        self.times["cpu_end"] = time.monotonic()
        end = proc_snapshot(self.root, tasks=not self.enabled)
        end["tasks_read"] = not self.enabled
        start = self.t_start
        out = {"start": start, "end": end,
               "cpu_user_s": (end["user_ticks"] - start["user_ticks"]) / CLK_TCK,
               "cpu_sys_s": (end["sys_ticks"] - start["sys_ticks"]) / CLK_TCK}
        self.times["perf_off"] = time.monotonic() if self.perf is not None else None
        counts, err = self._perf_counts()
        out["times"] = self.times
        if counts:
            invol = counts["switches_invol"]
            out.update(ctx_vol=counts["switches"] - invol, ctx_invol=invol,
                       ctx_method="perf sched:sched_switch split by prev_state; every thread "
                                  "and child, including those that exited",
                       syscalls=counts["syscalls"], syscalls_wait=counts.get("syscalls_wait"),
                       perf_task_clock_s=counts["task_clock_ms"] / 1000.0)
            return out
        self.times["perf_on"] = self.times["perf_off"] = None
        if start["tasks_read"] and end["tasks_read"]:
            out.update(ctx_vol=end["vol"] - start["vol"], ctx_invol=end["invol"] - start["invol"],
                       ctx_method="/proc per-thread counters (threads that exited during the "
                                  "window are not counted)")
        else:
            out.update(ctx_vol=None, ctx_invol=None,
                       ctx_method="unavailable: perf stopped counting during the window, and "
                                  "the per-thread counters were not read at its start")
        out.update(syscalls=None, syscalls_wait=None, syscalls_unavailable=err,
                   perf_task_clock_s=None)
        if self.use_perf:
            out["warning"] = "perf: " + err
        return out

    def _close_perf(self):
        if self.perf is not None and self.perf.poll() is None:
            self.perf.kill()
            self.perf.wait()
        self.perf = None
        for fd in (self.ctl, self.ack):
            if fd is not None:
                os.close(fd)
        self.ctl = self.ack = None

    def kill(self):
        self._close_perf()


# --- softirqs, load, steal -----------------------------------------------------


def parse_softirqs(text):
    """/proc/softirqs -> {"NET_RX": n, "NET_TX": n, ...} summed over CPUs."""
    out = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        try:
            out[name.strip()] = sum(int(x) for x in rest.split())
        except ValueError:
            continue
    return out


def softirqs():
    """NET_RX and NET_TX softirqs so far, or None if /proc/softirqs is unreadable."""
    counts = parse_softirqs(read_file("/proc/softirqs"))
    if "NET_RX" not in counts or "NET_TX" not in counts:
        return None
    return {"net_rx": counts["NET_RX"], "net_tx": counts["NET_TX"]}


def softirq_delta(start, end, requests):
    """The window's softirq counters for a repeat; None when unreadable."""
    out = {}
    for k in ("net_rx", "net_tx"):
        d = end[k] - start[k] if start and end else None
        out["softirq_" + k] = d
        out["softirq_%s_per_req" % k] = d / requests if d is not None and requests else None
    return out


def parse_cpu_times(text):
    """The aggregate 'cpu' line of /proc/stat -> (steal, total) in ticks."""
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "cpu" and len(f) >= 9:
            v = [int(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal
            return v[7], sum(v)           # guest time is already inside user and nice
    return None


def loadavg_1m(text=None):
    text = read_file("/proc/loadavg") if text is None else text
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


class MachineSampler:
    """Load average and CPU steal, sampled before each cell of each round:
    steal_pct is the share of all CPU time the hypervisor took from this
    machine since the previous sample (0 on bare metal)."""

    def __init__(self):
        self.prev = parse_cpu_times(read_file("/proc/stat"))

    def sample(self):
        now = parse_cpu_times(read_file("/proc/stat"))
        steal = None
        if now and self.prev and now[1] > self.prev[1]:
            steal = 100.0 * (now[0] - self.prev[0]) / (now[1] - self.prev[1])
        self.prev = now
        return {"loadavg_1m": loadavg_1m(), "steal_pct": steal}


# --- samplers during the window ------------------------------------------------------


class Periodic(threading.Thread):
    """Calls sample() every interval until finish()."""

    def __init__(self, interval):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(self.interval):
            self.sample()

    def finish(self):
        self.stop_event.set()
        if self.is_alive():
            self.join(5)


class TreeSampler(Periodic):
    """Peak memory, threads and processes of the server tree, and peak
    established client connections to its port, every 0.5 s."""

    def __init__(self, root, port, diag=None, interval=0.5, server_ends=False, netns_pid=None):
        """server_ends: count the server's ends of the connections (the
        clients are in another namespace or on another host); netns_pid: a
        process in the server's network namespace, for the /proc fallback."""
        super().__init__(interval)
        self.root, self.port, self.diag = root, port, diag
        self.server_ends, self.netns_pid = server_ends, netns_pid
        self.peak = {"rss_kib": 0, "pss_kib": 0 if HAVE_SMAPS_ROLLUP else None, "threads": 0,
                     "procs": 0, "established": 0}
        self.samples = 0
        # False: the periodic samples leave the connections out (an open-loop
        # step counts them once, before its window: a count of 10,000 sockets
        # every 0.5 s would take the generator's CPU)
        self.count_conns = True

    def established(self):
        if self.diag is not None:
            try:
                if self.server_ends:
                    return self.diag.established_from(self.port)
                return self.diag.established_to(self.port)
            except OSError:
                pass
        return proc_tcp_counts(self.port, server_ends=self.server_ends,
                               pid=self.netns_pid)[0]

    def sample(self, conns=None):
        """conns=False: the tree only (before or after the load, when there
        are no client connections to count and a dump of the established
        sockets would only cost the client CPU); None: self.count_conns."""
        conns = self.count_conns if conns is None else conns
        # no per-thread files here: the sampler shares the client CPU with the load
        snap = proc_snapshot(self.root, tasks=False)
        if HAVE_SMAPS_ROLLUP:
            self.peak["pss_kib"] = max(self.peak["pss_kib"], snap["pss_kib"])
        for k, v in (("rss_kib", snap["rss_kib"]), ("threads", snap["threads"]),
                     ("procs", snap["procs"])):
            self.peak[k] = max(self.peak[k], v)
        if conns:
            self.peak["established"] = max(self.peak["established"], self.established())
        self.samples += 1


class QueueSampler(Periodic):
    """The listener's accept queue every 50 ms (20 Hz: 40 samples in a 2 s
    window, so 10% of the window is 4 samples): how often it held a
    connection the server had not accepted yet, and its peak."""

    HZ = 20

    def __init__(self, port, diag=None, netns_pid=None):
        super().__init__(1.0 / self.HZ)
        self.port, self.diag, self.netns_pid = port, diag, netns_pid
        self.method = "netlink sock_diag" if diag is not None else "/proc/net/tcp"
        self.samples = self.nonempty = self.peak = 0

    def queue(self):
        if self.diag is not None:
            try:
                return self.diag.accept_queue(self.port)[0]
            except OSError:
                self.diag, self.method = None, "/proc/net/tcp (netlink failed mid-window)"
        return proc_tcp_counts(self.port, pid=self.netns_pid)[1]

    def sample(self):
        q = self.queue()
        self.samples += 1
        self.nonempty += q > 0
        self.peak = max(self.peak, q)

    def wait_frac(self):
        return self.nonempty / self.samples if self.samples else None


def window_diag():
    """A netlink sock_diag socket for one window's samplers, or None (and the
    samplers read /proc/net/tcp)."""
    return open_sockdiag()[0]


# --- the model's stats file (CONTRACTS.md section 3) ----------------------------------


def read_stats_at(path):
    """({name: number} or None, why, the file's modification time in ns):
    the time is that of the very file read (fstat of the open descriptor;
    the server replaces the file by a rename every 250 ms)."""
    try:
        with open(path) as f:
            mtime = os.fstat(f.fileno()).st_mtime_ns
            doc = json.load(f)
    except FileNotFoundError:
        return None, "no stats file %s" % os.path.basename(path), None
    except (OSError, ValueError) as e:
        return None, "stats file unreadable: %s" % e, None
    counters = doc.get("counters") if isinstance(doc, dict) else None
    if not isinstance(counters, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in counters.values()):
        return None, "stats file has no {name: number} counters", mtime
    return counters, None, mtime


def read_stats_file(path):
    """{name: number} from the model's stats file, or None and why."""
    return read_stats_at(path)[:2]


def read_fresh_stats(path, since_ns, timeout=0.75, with_time=False):
    """The stats file once the server has rewritten it after since_ns (it
    does every 250 ms): counters as of a moment when the load was idle, so
    the start and end of a window are exact. (counters or None, why), and
    with_time the time the file was written (ns, time.time_ns's clock)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fresh = os.stat(path).st_mtime_ns > since_ns
        except OSError:
            fresh = False
        if fresh or time.monotonic() >= deadline:
            counters, why, mtime = read_stats_at(path)
            if counters is not None and not fresh:
                counters, why = None, "stats file not rewritten within %.2f s" % timeout
            return (counters, why, mtime) if with_time else (counters, why)
        time.sleep(0.02)


def counters_delta(start, end):
    """Per-window deltas of the model's cumulative counters."""
    if start is None or end is None:
        return None
    return {k: end[k] - start.get(k, 0) for k in sorted(end)}


# --- the disk side of a server (the cold-cache profile) --------------------------------

DELAYACCT = "/proc/sys/kernel/task_delayacct"


def enable_delayacct(path=DELAYACCT):
    """Turn on the kernel's per-task delay accounting (kernel.task_delayacct,
    Linux 5.14+; off by default) for the run. Returns (previous value to
    restore or None, why it is unavailable or None)."""
    old = read_file(path).strip()
    if old == "":
        return None, "this kernel has no %s (Linux 5.14+ has it)" % path
    if old == "1":
        return None, None
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError as e:
        return None, "cannot turn on %s: %s (as root: sysctl kernel.task_delayacct=1)" % (
            path, e.strerror)
    return old, None


def restore_delayacct(old, path=DELAYACCT):
    if old is not None:
        try:
            with open(path, "w") as f:
                f.write(old)
        except OSError:
            pass


def _comm_class(comm):
    """A thread's name without its number: iou-wrk-1234 -> iou-wrk."""
    return comm.rstrip("0123456789").rstrip("-_") or comm


def _stat_fields(text):
    """(comm, fields after the comm) of a /proc stat line."""
    return text[text.find("(") + 1:text.rfind(")")], text[text.rfind(")") + 2:].split()


def disk_snapshot(root):
    """The disk side of a server tree right now:
      majflt      major page faults (/proc/PID/stat majflt + cmajflt)
      read_bytes  bytes the processes caused to be read from storage
                  (/proc/PID/io read_bytes; a thread's count survives its
                  exit, a reaped child's does not)
      delayacct   {tid: (comm, clock ticks)}: delayacct_blkio_ticks (field 42
                  of /proc/PID/task/TID/stat; /proc/PID/stat has the main
                  thread's only)"""
    snap = {"majflt": 0, "read_bytes": 0, "delayacct": {}, "t": time.monotonic()}
    for pid in tree_pids(root):
        stat = read_file("/proc/%d/stat" % pid)
        if not stat:
            continue
        f = _stat_fields(stat)[1]
        snap["majflt"] += int(f[9]) + int(f[10])
        for line in read_file("/proc/%d/io" % pid).splitlines():
            if line.startswith("read_bytes:"):
                snap["read_bytes"] += int(line.split()[1])
        for tid, text in _task_stats(pid):
            comm, tf = _stat_fields(text)
            if len(tf) > 39:
                snap["delayacct"][tid] = (comm, int(tf[39]))
    return snap


def _task_stats(pid):
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return
    for tid in tids:
        text = read_file("/proc/%d/task/%s/stat" % (pid, tid))
        if text:
            yield int(tid), text


def delayacct_delta(start, end, why):
    """delayacct_blkio_ticks over the interval, summed over the threads, in
    ms. A thread's increase can never exceed the interval; on Linux 6.18 a
    new thread's first wait is sometimes charged the whole uptime (its wait
    start is still 0), so such a thread is left out and counted."""
    if why:
        return {"delayacct_blkio_ms": None, "delayacct_unavailable": why}
    span_ms = (end["t"] - start["t"]) * 1000.0 + 2000.0 / CLK_TCK
    total, dropped = 0.0, 0
    for tid, (comm, ticks) in end["delayacct"].items():
        ms = max(0, ticks - start["delayacct"].get(tid, (comm, 0))[1]) * 1000.0 / CLK_TCK
        if ms > span_ms:
            dropped += 1
            continue
        total += ms
    return {"delayacct_blkio_ms": total, "delayacct_dropped_threads": dropped}


def disk_delta(start, end, delayacct_why):
    """A window's disk metrics from two disk_snapshot()s."""
    out = {"majflt": end["majflt"] - start["majflt"],
           "io_read_bytes": end["read_bytes"] - start["read_bytes"]}
    out.update(delayacct_delta(start, end, delayacct_why))
    return out


class BlockedSampler(Periodic):
    """Time the server's threads spent blocked on I/O: each thread's state
    (/proc/PID/task/TID/stat) every 10 ms; a thread in D (uninterruptible
    sleep: waiting for a page to be read, a disk request) counts the time
    since the previous sample.
    Waiting for a socket or a lock in user space is S, idle io_uring and
    helper threads are S or I, so D is the disk. The thread list is
    refreshed every 0.2 s, so a thread born in between misses at most that.
    This and not delay accounting is blkio_delay_ms: see delayacct_delta()."""

    HZ = 100
    REFRESH_S = 0.2

    def __init__(self, root):
        super().__init__(1.0 / self.HZ)
        self.root = root
        self.tasks = {}       # tid -> path of its stat file
        self.refreshed = 0.0
        self.samples = 0
        self.last = None
        self.blocked = {}     # comm class -> seconds in D

    def _refresh(self):
        tasks = {}
        for pid in tree_pids(self.root):
            try:
                for tid in os.listdir("/proc/%d/task" % pid):
                    tasks[int(tid)] = "/proc/%d/task/%s/stat" % (pid, tid)
            except OSError:
                continue
        self.tasks = tasks
        self.refreshed = time.monotonic()

    def sample(self):
        now = time.monotonic()
        dt = now - self.last if self.last is not None else self.interval
        self.last = now
        if now - self.refreshed >= self.REFRESH_S:
            self._refresh()
        self.samples += 1
        for path in self.tasks.values():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    text = os.read(fd, 512).decode(errors="replace")
                finally:
                    os.close(fd)
            except OSError:
                continue  # the thread exited
            end = text.rfind(")")
            if end > 0 and text[end + 2:end + 3] == "D":
                cls = _comm_class(text[text.find("(") + 1:end])
                self.blocked[cls] = self.blocked.get(cls, 0.0) + dt

    def start(self):
        self._refresh()
        self.last = self.t0 = time.monotonic()
        self.t1 = None
        super().start()

    def finish(self):
        super().finish()
        if getattr(self, "t0", None) is not None and self.t1 is None:
            self.t1 = time.monotonic()

    def result(self):
        """blkio_delay_ms (sum over threads), its split by thread name, and
        the seconds sampled (blkio_delay_span_s)."""
        by = {k: v * 1000.0 for k, v in sorted(self.blocked.items())}
        span = self.t1 - self.t0 if getattr(self, "t1", None) else None
        return {"blkio_delay_ms": sum(by.values()), "blkio_delay_by_thread": by,
                "blkio_delay_samples": self.samples, "blkio_delay_span_s": span,
                "blkio_delay_method": "threads in state D, sampled at %d Hz" % self.HZ}
