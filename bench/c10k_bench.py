#!/usr/bin/python3
"""c10k bench - measure every concurrency model against nginx with wrk.

    c10k bench [--profile NAME] [--models LIST] [--connections LIST]
               [--sizes LIST] [--modes LIST] [--duration S] [--warmup S]
               [--repeat N] [--workers N] [--server-cpus LIST]
               [--client-cpus LIST] [--port N] [--out DIR] [--no-report]

The method (bench/README.md has the full story and the results.json schema):

  * A document root with deterministic content is generated in the run
    directory, one file per size.
  * Each cell (model x scenario x repeat) starts the server fresh, verifies one
    response per file size (status, length and content), warms up with wrk
    (not recorded), then captures a window: wrk with bench/wrk_report.lua,
    perf stat attached to every process of the server, /proc snapshots at the
    window's start and end and a sampler for memory, threads and connections.
    Then the server is stopped and must exit cleanly.
  * Server and wrk are pinned to separate CPUs. nginx runs in every run as the
    reference row.

Python 3 standard library only; charts and reports are bench/report.py.
"""

import argparse
import csv
import datetime
import errno
import hashlib
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

SCHEMA_VERSION = 1
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LUA = os.path.join(HERE, "wrk_report.lua")
EXIT_USAGE = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK_TIMEOUT_S = 2  # wrk's --timeout: a response slower than this is a timeout error

KiB, MiB = 1024, 1024 * 1024

# Per-cell overhead besides warm-up and window (start, verify, stop), for ETA.
CELL_OVERHEAD_S = 1.5

# A scenario is what wrk does: file size, keep-alive or close, connections,
# and optionally slow clients held open beside wrk.
PROFILES = {
    "quick": {
        "about": "every model + nginx: 1 KiB keep-alive at 16 and 256 connections, "
                 "1 KiB Connection: close at 64, 1 MiB keep-alive at 16",
        "scenarios": [(1 * KiB, True, 16, None), (1 * KiB, True, 256, None),
                      (1 * KiB, False, 64, None), (1 * MiB, True, 16, None)],
        "warmup": 1, "duration": 5, "repeat": 1,
    },
    "full": {
        "about": "connections 1..4096 x sizes 128 B..16 MiB x keep-alive and close, 3 repeats",
        "sizes": [128, 4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB],
        "connections": [1, 16, 64, 256, 1024, 4096],
        "modes": [True, False],
        "warmup": 2, "duration": 10, "repeat": 3,
    },
    "c10k": {
        "about": "10,000 concurrent keep-alive connections on a 1 KiB file",
        "scenarios": [(1 * KiB, True, 10000, None)],
        "warmup": 2, "duration": 10, "repeat": 1,
    },
    "slow-clients": {
        "about": "wrk at 16 connections on 1 KiB while 100 or 1,000 idle or trickling "
                 "clients are held open",
        "scenarios": [(1 * KiB, True, 16, ("idle", 100)), (1 * KiB, True, 16, ("idle", 1000)),
                      (1 * KiB, True, 16, ("trickle", 100)),
                      (1 * KiB, True, 16, ("trickle", 1000))],
        "warmup": 1, "duration": 5, "repeat": 1,
        # Slow clients must outlive the window: no server may time them out.
        "keepalive_timeout": 60, "header_timeout": 60,
    },
}


class UsageError(Exception):
    """A command-line or environment problem: exit status 2."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop cleanly, keep finished cells."""


# --- small helpers ----------------------------------------------------------


def size_label(n):
    for unit, div in (("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return "%dB" % n


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*(b|k|kb|kib|m|mb|mib)?\s*", text, re.I)
    if not m:
        raise UsageError("--sizes: '%s' is not a size (e.g. 128, 4KiB, 1MiB)" % text)
    mult = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB,
            "mib": MiB}[(m.group(2) or "").lower()]
    n = int(m.group(1)) * mult
    if not 1 <= n <= 1024 * MiB:
        raise UsageError("--sizes: %s is out of range (1 B to 1 GiB)" % text)
    return n


def parse_int_list(flag, text, lo, hi):
    out = []
    for part in text.split(","):
        try:
            v = int(part)
        except ValueError:
            raise UsageError("%s: '%s' is not a whole number" % (flag, part)) from None
        if not lo <= v <= hi:
            raise UsageError("%s: %d is out of range (%d to %d)" % (flag, v, lo, hi))
        out.append(v)
    return out


def parse_cpus(flag, text):
    cpus = []
    ncpu = os.cpu_count() or 1
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise UsageError("%s: '%s' is not a CPU list (e.g. 0 or 0-1,3)" % (flag, text))
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi >= ncpu:
            raise UsageError("%s: CPUs %s do not exist here (this machine has CPUs 0-%d)"
                             % (flag, part, ncpu - 1))
        cpus.extend(range(lo, hi + 1))
    return sorted(set(cpus))


def cpus_text(cpus):
    return ",".join(str(c) for c in cpus)


def fmt_duration(s):
    s = int(round(s))
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def run_text(argv, timeout=10):
    """stdout+stderr of a short command, or '' if it cannot run."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def percentile_of(values, p):
    """Median and friends without numpy; values non-empty."""
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- the environment --------------------------------------------------------


def dpkg_version(pkg):
    out = run_text(["dpkg-query", "-W", "-f=${Version}", pkg])
    return out if out and "no packages found" not in out else None


def environment(args, bin_path):
    cpu_model = ""
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    git = run_text(["git", "-C", REPO, "rev-parse", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{40}", git or ""):
        git = None
    dirty = run_text(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "kernel": os.uname().release,
        "kernel_version": os.uname().version,
        "machine": os.uname().machine,
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "hostname": socket.gethostname(),
        "versions": {
            "wrk": (run_text(["wrk", "-v"]).splitlines() or [""])[0] or None,
            "nginx": run_text(["nginx", "-v"]) or None,
            "perf": run_text(["perf", "--version"]) or None,
            "gnuplot": run_text(["gnuplot", "--version"]) or None,
            "python": sys.version.split()[0],
            "nginx-light": dpkg_version("nginx-light"),
            "liburing": dpkg_version("liburing-dev") or dpkg_version("liburing2"),
            "libevent": dpkg_version("libevent-dev") or dpkg_version("libevent-2.1-7"),
            "libuv": dpkg_version("libuv1-dev") or dpkg_version("libuv1"),
            "http-parser": dpkg_version("libhttp-parser-dev"),
            "linux-perf": dpkg_version("linux-perf"),
        },
        "git_commit": git,
        "git_dirty": bool(dirty) if git else None,
        "c10k_binary": bin_path,
        "sysctl": {
            "net.core.somaxconn": read_file("/proc/sys/net/core/somaxconn").strip(),
            "net.ipv4.ip_local_port_range":
                " ".join(read_file("/proc/sys/net/ipv4/ip_local_port_range").split()),
            "net.ipv4.tcp_max_syn_backlog":
                read_file("/proc/sys/net/ipv4/tcp_max_syn_backlog").strip(),
            "kernel.perf_event_paranoid":
                read_file("/proc/sys/kernel/perf_event_paranoid").strip(),
        },
        "rlimit_nofile": {"soft": nofile[0], "hard": nofile[1]},
        "loadavg_at_start": read_file("/proc/loadavg").strip(),
    }


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


# --- the document root -------------------------------------------------------


def file_name(size):
    return "f-%s.bin" % size_label(size)


def file_content(size):
    """Deterministic bytes: a 64 KiB pattern from a SHA-256 chain, tiled, with
    the size written at the start so files of different sizes differ."""
    block = bytearray()
    h = hashlib.sha256(b"c10k bench document root v1").digest()
    while len(block) < 64 * KiB:
        h = hashlib.sha256(h).digest()
        block += h
    head = ("c10k test file, %d bytes\n" % size).encode()
    data = (head + bytes(block) * (size // len(block) + 1))[:size]
    return data


def make_docroot(path, sizes):
    os.makedirs(path, exist_ok=True)
    digests = {}
    for size in sizes:
        data = file_content(size)
        with open(os.path.join(path, file_name(size)), "wb") as f:
            f.write(data)
        digests[size] = hashlib.sha256(data).hexdigest()
    with open(os.path.join(path, "index.html"), "w") as f:
        f.write("<!doctype html><title>c10k bench</title>\n")
    return digests


# --- processes under /proc -------------------------------------------------


def proc_children_map():
    """ppid -> [pid] for every process (this kernel may lack
    /proc/PID/task/TID/children, so scan /proc)."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_file("/proc/%s/stat" % name)
        if not stat:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
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
            "pss_kib": 0 if HAVE_SMAPS_ROLLUP else None, "hwm_kib": 0, "vol": 0, "invol": 0,
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
            pss = read_status("/proc/%d/smaps_rollup" % pid).get("Pss", "0 kB")
            snap["pss_kib"] += int(pss.split()[0])
        if not tasks:
            continue
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            tids = []
        for tid in tids:
            ts = read_status("/proc/%d/task/%s/status" % (pid, tid))
            snap["vol"] += int(ts.get("voluntary_ctxt_switches", 0))
            snap["invol"] += int(ts.get("nonvoluntary_ctxt_switches", 0))
    return snap


def tcp_counts(port):
    """(established connections to port, accept queue of the listener on port)
    from /proc/net/tcp{,6}: what ss reads, without a process per sample."""
    est, queue = 0, 0
    hexport = "%04X" % port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in read_file(table).splitlines()[1:]:
            f = line.split()
            if len(f) < 5:
                continue
            local, remote, state = f[1], f[2], f[3]
            if state == "01" and remote.endswith(":" + hexport):
                est += 1  # the client's end of an established connection
            elif state == "0A" and local.endswith(":" + hexport):
                # for a listener, rx_queue is the current accept queue length
                queue += int(f[4].split(":")[1], 16)
    return est, queue


class Sampler(threading.Thread):
    """Samples the server tree and the port during the window: peak memory,
    peak threads/processes, peak established connections, peak accept queue."""

    def __init__(self, root, port, interval=0.5):
        super().__init__(daemon=True)
        self.root, self.port, self.interval = root, port, interval
        self.stop_event = threading.Event()
        self.peak = {"rss_kib": 0, "pss_kib": 0 if HAVE_SMAPS_ROLLUP else None, "threads": 0,
                     "procs": 0, "established": 0, "accept_queue": 0}
        self.samples = 0

    def sample(self):
        # no per-thread files here: the sampler shares the client CPU with wrk
        snap = proc_snapshot(self.root, tasks=False)
        est, queue = tcp_counts(self.port)
        if HAVE_SMAPS_ROLLUP:
            self.peak["pss_kib"] = max(self.peak["pss_kib"], snap["pss_kib"])
        for k, v in (("rss_kib", snap["rss_kib"]), ("threads", snap["threads"]),
                     ("procs", snap["procs"]), ("established", est), ("accept_queue", queue)):
            self.peak[k] = max(self.peak[k], v)
        self.samples += 1

    def run(self):
        while not self.stop_event.wait(self.interval):
            self.sample()

    def finish(self):
        self.stop_event.set()
        self.join(5)


# --- slow clients --------------------------------------------------------------


class SlowClients(threading.Thread):
    """Holds N connections open beside wrk.

    idle:    one complete keep-alive request, read the answer, then stay silent
             (a keep-alive client that has nothing more to ask).
    trickle: a request head sent one byte per second, never finished inside
             the window (a slow uploader, or slowloris).
    Both hold a thread or a process in blocking models for as long as they
    stay open; an event loop only keeps a small state record.
    """

    def __init__(self, port, kind, count, path):
        super().__init__(daemon=True)
        self.port, self.kind, self.count, self.path = port, kind, count, path
        self.sel = selectors.DefaultSelector()
        self.socks = {}
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.established = 0
        self.closed_by_server = 0
        self.connect_failed = 0

    def open_all(self, timeout=15.0):
        for _ in range(self.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", self.port))
            if rc not in (0, errno.EINPROGRESS):
                self.connect_failed += 1
                s.close()
                continue
            self.socks[s] = {"state": "connecting", "sent": 0, "got": b""}
            self.sel.register(s, selectors.EVENT_WRITE)
        self.start()
        self.ready.wait(timeout)

    def _request(self):
        if self.kind == "idle":
            return ("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % self.path).encode()
        return ("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: %s"
                % (self.path, "a" * 4000)).encode()

    def _drop(self, s, by_server):
        if by_server:
            self.closed_by_server += 1
        self.sel.unregister(s)
        self.socks.pop(s, None)
        s.close()

    def _on_event(self, s, info):
        if info["state"] == "connecting":
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.connect_failed += 1
                self._drop(s, False)
                return
            self.established += 1
            if self.kind == "idle":
                s.send(self._request())
                info["state"] = "reading"
                self.sel.modify(s, selectors.EVENT_READ)
            else:
                info["state"] = "trickling"
                self.sel.modify(s, selectors.EVENT_READ)  # only to notice a close
            return
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(s, True)
            return
        info["got"] += data  # the small answer to the idle client's request; kept to count

    def _trickle(self):
        req = self._request()
        for s, info in list(self.socks.items()):
            if info["state"] != "trickling" or info["sent"] >= len(req):
                continue
            try:
                info["sent"] += s.send(req[info["sent"]:info["sent"] + 1])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(s, True)

    def run(self):
        next_trickle = time.monotonic() + 1.0
        while not self.stop_event.is_set():
            for key, _ in self.sel.select(0.1):
                if key.fileobj in self.socks:
                    self._on_event(key.fileobj, self.socks[key.fileobj])
            if not self.ready.is_set() and all(
                    i["state"] != "connecting" for i in self.socks.values()):
                self.ready.set()
            if self.kind == "trickle" and time.monotonic() >= next_trickle:
                self._trickle()
                next_trickle += 1.0

    def alive(self):
        return len(self.socks)

    def close_all(self):
        self.stop_event.set()
        if self.is_alive():
            self.join(5)
        for s in list(self.socks):
            s.close()
        self.socks.clear()
        self.sel.close()


# --- servers -------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_busy(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def who_listens(port):
    out = run_text(["ss", "-Hltnp", "sport = :%d" % port])
    m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return "%s (pid %s)" % (m.group(1), m.group(2)) if m else "another process"


NGINX_CONF = """\
# nginx reference configuration written by c10k bench: the same settings the
# c10k models get (workers, keep-alive and header timeouts, unlimited requests
# per connection), sendfile on, access log off, symlinks refused below the
# root. "from=$document_root" checks components below the root only, as the
# c10k handler does (openat2 RESOLVE_BENEATH from an open root): plain "on"
# also re-opens every directory above the root on each request (one openat
# and one close per component), so nginx's cost would grow with the depth
# of the run directory. No open_file_cache: c10k opens the file per request too.
{user}worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {rundir}/nginx.pid;
error_log {rundir}/nginx-error.log warn;
events {{
    worker_connections {worker_connections};
    multi_accept off;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    server_tokens off;
    default_type application/octet-stream;
    keepalive_timeout {keepalive}s;
    keepalive_requests 1000000000;
    client_header_timeout {header}s;
    disable_symlinks on from=$document_root;
    client_body_temp_path {rundir}/tmp/body;
    proxy_temp_path {rundir}/tmp/proxy;
    fastcgi_temp_path {rundir}/tmp/fastcgi;
    uwsgi_temp_path {rundir}/tmp/uwsgi;
    scgi_temp_path {rundir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""


class Server:
    """One server process started fresh for one cell."""

    def __init__(self, bench, model, port):
        self.bench, self.model, self.port = bench, model, port
        self.proc = None
        self.log_path = None

    def start(self):
        b = self.bench
        logdir = os.path.join(b.run_dir, "raw")
        self.log_path = os.path.join(logdir, "server-%s.log" % self.model)
        log = open(self.log_path, "a")
        log.write("=== %s start %s\n" % (self.model, datetime.datetime.now().isoformat()))
        log.flush()
        if self.model == "nginx":
            conf = b.write_nginx_conf(self.port)
            argv = ["taskset", "-c", cpus_text(b.server_cpus), "nginx", "-p", b.run_dir,
                    "-e", os.path.join(b.run_dir, "nginx-error.log"), "-c", conf]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            log.close()
            return self._wait_listening(10.0)
        argv = [b.bin, "serve", self.model, "--port", str(self.port), "--root", b.docroot]
        if self.model not in b.per_connection:
            argv += ["--workers", str(b.workers)]
        argv += ["--cpus", cpus_text(b.server_cpus),
                 "--keepalive-timeout", str(b.keepalive_timeout),
                 "--header-timeout", str(b.header_timeout), "--grace", "2"]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        line = self._read_start_line(10.0)
        if line is None:
            return "no start line within 10 s (%s)" % self._exit_text()
        m = re.search(r"http://[^/]*:(\d+)/", line)
        if not m:
            return "start line names no port: %r" % line
        self.port = int(m.group(1))
        with open(self.log_path, "a") as f:
            f.write(line)
        return self._wait_listening(5.0)

    def _read_start_line(self, timeout):
        out = []
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(0.1):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                out.append(buf.decode(errors="replace"))
                break
        sel.close()
        # stdout stays a pipe that nobody reads: drain it in a thread so a
        # chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return out[0] if out else None

    def _drain(self):
        try:
            while os.read(self.proc.stdout.fileno(), 65536):
                pass
        except (OSError, ValueError):
            pass

    def _exit_text(self):
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        tail = read_file(self.log_path).strip().splitlines()[-3:]
        return "exited with status %d: %s" % (rc, " | ".join(tail))

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited before listening (%s)" % self._exit_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.05)
        return "not accepting connections on port %d after %.0f s" % (self.port, timeout)

    def stop(self, timeout=6.0):
        """Graceful stop; returns 'clean' or what went wrong."""
        if self.proc is None:
            return "not started"
        if self.proc.poll() is None:
            sig = signal.SIGQUIT if self.model == "nginx" else signal.SIGTERM
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return "did not exit within %.0f s of %s; killed" % (timeout, sig.name)
        rc = self.proc.returncode
        leftover = self._leftovers()
        if rc != 0:
            return "exit status %d" % rc if rc > 0 else "killed by signal %d" % -rc
        if leftover:
            return "left processes behind: %s" % leftover
        return "clean"

    def _leftovers(self):
        """Processes of the server's session still alive after it exited."""
        left = []
        sid = self.proc.pid  # start_new_session: the session id is the leader's pid
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            stat = read_file("/proc/%s/stat" % name)
            if not stat:
                continue
            f = stat[stat.rfind(")") + 2:].split()
            if int(f[4]) == sid and f[0] != "Z":
                left.append(int(name))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._leftovers()


def verify(port, sizes, digests, timeout=10.0):
    """One GET per file size: status 200, Content-Length, the exact bytes.
    Returns None or what was wrong."""
    for size in sizes:
        path = "/" + file_name(size)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            c.close()
        except (OSError, http.client.HTTPException) as e:
            return "GET %s: %s" % (path, e)
        if r.status != 200:
            return "GET %s: status %d, want 200" % (path, r.status)
        cl = r.getheader("Content-Length")
        if cl != str(size):
            return "GET %s: Content-Length %s, want %d" % (path, cl, size)
        if len(body) != size:
            return "GET %s: %d body bytes, want %d" % (path, len(body), size)
        if hashlib.sha256(body).hexdigest() != digests[size]:
            return "GET %s: content differs from the file" % path
    return None


# --- perf ------------------------------------------------------------------------


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


def perf_start(pids, out_path):
    argv = ["perf", "stat", "-x,", "-o", out_path, "-p", ",".join(str(p) for p in pids)]
    for _, ev in PERF_EVENTS:
        argv += ev
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)


def perf_stop(proc, out_path):
    """SIGINT makes perf stat print its counts and exit. Returns (dict, error)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, "perf did not stop within 10 s"
    text = read_file(out_path)
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
        return None, "perf gave no counts: %s" % ((err or text).strip()[-200:] or "empty")
    return {name: v for (name, _), v in zip(PERF_EVENTS, values)}, None


class ServerCosts:
    """What a server tree costs over one window, whatever threads and
    processes come and go in it.

      CPU user/system: /proc snapshots at start and end (proc_snapshot:
        own + reaped-children ticks of every live process, so threads and
        children that exit during the window are counted).
      Voluntary/involuntary context switches, syscalls, task-clock: perf stat
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

    def start(self):
        self.t_start = proc_snapshot(self.root)
        pids = self.t_start["pids"]
        for _ in range(3 if self.use_perf else 0):
            self.perf = perf_start(pids, self.perf_out)
            time.sleep(0.3)  # let perf open its counters before the load starts
            if self.perf.poll() is None:
                return
            # perf gives up (ESRCH) when a thread exits while it attaches to
            # each one, as with 10,000 threads coming and going: try again.
            pids = proc_snapshot(self.root, tasks=False)["pids"]

    def stop(self):
        end = proc_snapshot(self.root)
        start = self.t_start
        out = {"start": start, "end": end,
               "cpu_user_s": (end["user_ticks"] - start["user_ticks"]) / CLK_TCK,
               "cpu_sys_s": (end["sys_ticks"] - start["sys_ticks"]) / CLK_TCK}
        counts, err = None, self.perf_why or "perf unavailable"
        if self.perf is not None:
            if self.perf.poll() is None:
                counts, err = perf_stop(self.perf, self.perf_out)
            else:
                err = "perf exited early: %s" % (self.perf.stderr.read() or "").strip()[-200:]
            self.perf = None
        if counts:
            invol = counts["switches_invol"]
            out.update(ctx_vol=counts["switches"] - invol, ctx_invol=invol,
                       ctx_method="perf sched:sched_switch split by prev_state; every thread "
                                  "and child, including those that exited",
                       syscalls=counts["syscalls"],
                       perf_task_clock_s=counts["task_clock_ms"] / 1000.0)
        else:
            out.update(ctx_vol=end["vol"] - start["vol"], ctx_invol=end["invol"] - start["invol"],
                       ctx_method="/proc per-thread counters (threads that exited during the "
                                  "window are not counted)",
                       syscalls=None, syscalls_unavailable=err, perf_task_clock_s=None)
            if self.use_perf:
                out["warning"] = "perf: " + err
        return out

    def kill(self):
        if self.perf is not None and self.perf.poll() is None:
            self.perf.kill()
            self.perf.wait()
        self.perf = None


# --- wrk ----------------------------------------------------------------------------


def run_wrk(bench, port, scenario, duration, json_path, raw_path):
    """Run wrk pinned to the client CPUs. Returns (report dict or None,
    client CPU seconds, error text or None)."""
    conns = scenario["connections"]
    threads = max(1, min(conns, len(bench.client_cpus)))
    argv = ["taskset", "-c", cpus_text(bench.client_cpus), "wrk", "-t", str(threads),
            "-c", str(conns), "-d", "%ds" % duration, "--timeout", "%ds" % WRK_TIMEOUT_S,
            "-s", LUA]
    if not scenario["keepalive"]:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/%s" % (port, file_name(scenario["size"])))
    env = dict(os.environ, WRK_REPORT=json_path or "", WRK_CONNECTIONS=str(conns))
    if json_path and os.path.exists(json_path):
        os.unlink(json_path)
    out = open(raw_path, "w") if raw_path else subprocess.DEVNULL
    if raw_path:
        out.write("$ %s\n" % " ".join(argv))
        out.flush()
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    bench.children.add(p)
    deadline = time.monotonic() + duration + 30
    try:
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
                p.returncode = -9
                return None, 0.0, "wrk did not finish within %.0f s; killed" % (duration + 30)
            time.sleep(0.05)
    finally:
        if p.returncode is None:  # interrupted: never leave wrk behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
                os.waitpid(p.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        bench.children.discard(p)
        if raw_path:
            out.close()
    client_cpu = ru.ru_utime + ru.ru_stime
    if p.returncode != 0:
        tail = read_file(raw_path).strip().splitlines()[-2:] if raw_path else []
        return None, client_cpu, "wrk exit status %d: %s" % (p.returncode, " | ".join(tail))
    if not json_path:
        return None, client_cpu, None
    try:
        with open(json_path) as f:
            return json.load(f), client_cpu, None
    except (OSError, ValueError) as e:
        return None, client_cpu, "wrk_report.lua wrote no JSON (%s)" % e


# --- one cell -------------------------------------------------------------------


def per_req(v, requests):
    return None if v is None or not requests else v / requests


class Bench:
    def __init__(self, args):
        self.args = args
        self.children = set()
        self.cells = []
        self.interrupted = False

    # -- settings --

    def setup(self):
        a = self.args
        prof = PROFILES[a.profile]
        self.bin = os.path.abspath(a.bin)
        if not os.access(self.bin, os.X_OK):
            raise UsageError("--bin %s is not an executable c10k binary" % a.bin)
        self.duration = a.duration if a.duration is not None else prof["duration"]
        self.warmup = a.warmup if a.warmup is not None else prof["warmup"]
        self.repeat = a.repeat if a.repeat is not None else prof["repeat"]
        if not 1 <= self.duration <= 600:
            raise UsageError("--duration %g: want 1 to 600 seconds" % self.duration)
        if not 0 <= self.warmup <= 120:
            raise UsageError("--warmup %g: want 0 to 120 seconds" % self.warmup)
        if not 1 <= self.repeat <= 20:
            raise UsageError("--repeat %d: want 1 to 20" % self.repeat)
        ncpu = os.cpu_count() or 1
        self.server_cpus = parse_cpus("--server-cpus", a.server_cpus) if a.server_cpus else [0]
        if a.client_cpus:
            self.client_cpus = parse_cpus("--client-cpus", a.client_cpus)
        else:
            self.client_cpus = [c for c in range(ncpu) if c not in self.server_cpus] or [0]
        if set(self.server_cpus) & set(self.client_cpus):
            print("c10k bench: warning: server CPUs %s and client CPUs %s overlap; wrk and the "
                  "server will compete" % (cpus_text(self.server_cpus),
                                           cpus_text(self.client_cpus)), file=sys.stderr)
        self.workers = a.workers if a.workers else len(self.server_cpus)
        self.keepalive_timeout = prof.get("keepalive_timeout", 5)
        self.header_timeout = prof.get("header_timeout", 10)
        self.scenarios = self.make_scenarios(prof)
        self.sizes = sorted({s["size"] for s in self.scenarios})
        self.models = self.pick_models()

    def make_scenarios(self, prof):
        a = self.args
        base = prof.get("scenarios")
        if base is None or a.sizes or a.connections or a.modes:
            sizes = ([parse_size(x) for x in a.sizes.split(",")] if a.sizes else
                     prof.get("sizes") or sorted({s[0] for s in base}))
            conns = (parse_int_list("--connections", a.connections, 1, 100000)
                     if a.connections else
                     prof.get("connections") or sorted({s[2] for s in base}))
            if a.modes:
                modes = []
                for m in a.modes.split(","):
                    if m not in ("keepalive", "close"):
                        raise UsageError("--modes: '%s': want keepalive or close" % m)
                    modes.append(m == "keepalive")
            else:
                modes = prof.get("modes") or sorted({s[1] for s in base}, reverse=True)
            slows = sorted({s[3] for s in base}, key=str) if base else [None]
            base = [(s, k, c, w) for w in slows for s in sizes for k in modes for c in conns]
        out = []
        for size, ka, conns, slow in base:
            sid = "%s-%s-c%d" % (size_label(size), "ka" if ka else "close", conns)
            label = "%s %s, %d conns" % (size_label(size), "keep-alive" if ka else
                                         "Connection: close", conns)
            series = "%s %s" % (size_label(size), "keep-alive" if ka else "close")
            if slow:
                sid += "-%s%d" % slow
                label += " + %d %s clients" % (slow[1], slow[0])
                series += " + %d %s" % (slow[1], slow[0])
            out.append({"id": sid, "label": label, "series": series, "size": size,
                        "size_label": size_label(size), "keepalive": ka,
                        "connections": conns,
                        "slow": {"kind": slow[0], "count": slow[1]} if slow else None})
        return out

    def pick_models(self):
        out = run_text([self.bin, "models"])
        available = [line.split()[0] for line in out.splitlines() if line.strip()]
        if not available:
            raise UsageError("'%s models' listed no models (output: %r)" % (self.bin, out))
        self.available_models = available
        # A thread or process per connection: --workers would be a pool size
        # there (prefork: a fixed pool of one process), so such a model sizes
        # itself to the load instead, as it would be deployed.
        p = subprocess.run([self.bin, "models", "--per-connection"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=10)
        self.per_connection = p.stdout.split() if p.returncode == 0 else []
        if not self.args.models or self.args.models == "all":
            chosen = list(available)
        else:
            chosen = []
            for m in self.args.models.split(","):
                m = m.strip()
                if m == "nginx":
                    continue  # always included
                if m not in available:
                    raise UsageError("--models: unknown model '%s'; this binary has: %s"
                                     % (m, ", ".join(available)))
                chosen.append(m)
        return chosen + ["nginx"]

    def check_tools(self):
        if not shutil.which("wrk"):
            raise UsageError("wrk is not installed: apt-get install wrk (or make deps)")
        if not shutil.which("taskset"):
            raise UsageError("taskset is missing: apt-get install util-linux")
        self.perf_ok, self.perf_why = check_perf()
        if not self.perf_ok:
            print("c10k bench: perf unusable: %s.\n  Syscalls per request will be reported "
                  "as unavailable, and context switches come from /proc, which misses threads "
                  "that exit during the window." % self.perf_why, file=sys.stderr)
        self.nginx_ok, self.nginx_why = True, ""
        if not shutil.which("nginx"):
            self.nginx_ok, self.nginx_why = False, "nginx is not installed (apt-get install nginx-light)"
        if not self.nginx_ok:
            print("c10k bench: NGINX CANNOT RUN: %s. The run continues without the reference "
                  "row." % self.nginx_why, file=sys.stderr)
        if self.args.port:
            if port_busy(self.args.port):
                raise UsageError("port %d is busy: %s listens there. Stop it or choose another "
                                 "--port (the default picks free ports)"
                                 % (self.args.port, who_listens(self.args.port)))

    def check_fd_limit(self):
        """wrk needs one fd per connection, the server one or two, perf a few
        per thread: make sure the limit allows the biggest scenario."""
        need = max(s["connections"] + (s["slow"]["count"] if s["slow"] else 0)
                   for s in self.scenarios) + 256
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            want = min(hard, max(need, soft)) if hard != resource.RLIM_INFINITY else need
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, need) if hard >= need
                                                            else hard, hard))
            except (ValueError, OSError):
                pass
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            raise UsageError(
                "profile %s needs %d open files per process (largest scenario plus headroom) "
                "but the limit is %d (hard %d). Raise it, e.g. as root: `ulimit -Hn %d; "
                "ulimit -n %d` in this shell, or `* - nofile %d` in "
                "/etc/security/limits.conf and log in again."
                % (self.args.profile, need, soft, hard, need * 2, need * 2, need * 2))
        ports = read_file("/proc/sys/net/ipv4/ip_local_port_range").split()
        if len(ports) == 2 and int(ports[1]) - int(ports[0]) < need:
            raise UsageError("net.ipv4.ip_local_port_range %s gives fewer than %d client ports; "
                             "run: sysctl -w net.ipv4.ip_local_port_range='1024 65000'"
                             % (" ".join(ports), need))
        self.nofile = soft

    # -- the run directory --

    def make_run_dir(self):
        base = os.path.abspath(self.args.out or os.path.join(REPO, "results"))
        os.makedirs(base, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = os.path.join(base, stamp)
        n = 1
        while os.path.exists(run_dir):
            n += 1
            run_dir = os.path.join(base, "%s-%d" % (stamp, n))
        os.makedirs(os.path.join(run_dir, "raw"))
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(run_dir, "tmp", d))
        self.run_dir, self.run_id = run_dir, os.path.basename(run_dir)
        latest = os.path.join(base, "latest")
        try:
            if os.path.islink(latest) or not os.path.exists(latest):
                tmp = latest + ".tmp"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(self.run_id, tmp)
                os.replace(tmp, latest)
        except OSError as e:
            print("c10k bench: warning: cannot update %s: %s" % (latest, e), file=sys.stderr)
        self.docroot = os.path.join(run_dir, "docroot")
        self.digests = make_docroot(self.docroot, self.sizes)

    def write_nginx_conf(self, port):
        path = os.path.join(self.run_dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                workers=self.workers, nofile=self.nofile,
                worker_connections=max(1024, self.nofile - 64), rundir=self.run_dir,
                keepalive=self.keepalive_timeout, header=self.header_timeout, port=port,
                root=self.docroot))
        return path

    # -- cells --

    def plan(self):
        cells = [(sc, m) for sc in self.scenarios for m in self.models]
        per = self.warmup + self.duration + CELL_OVERHEAD_S
        per_slow = per + 1.0
        total = sum((per_slow if sc["slow"] else per) * self.repeat for sc, _ in cells)
        return cells, total

    def run_cell(self, index, total_cells, sc, model, eta):
        cell = {"model": model, "scenario": sc["id"], "status": "ok", "reasons": [],
                "repeats": []}
        if model == "nginx" and not self.nginx_ok:
            cell["status"] = "failed"
            cell["reasons"].append("nginx cannot run: %s" % self.nginx_why)
            return cell
        for r in range(self.repeat):
            self.progress(index, total_cells, model, sc, r, eta)
            rep = self.run_repeat(sc, model, r)
            cell["repeats"].append(rep)
            if rep["status"] == "failed":
                cell["status"] = "failed"
                cell["reasons"].append("repeat %d: %s" % (r + 1, rep["failure"]))
                if model == "nginx" and "could not start" in rep["failure"]:
                    self.nginx_ok, self.nginx_why = False, rep["failure"]
                    print("\nc10k bench: NGINX CANNOT RUN: %s. The run continues without "
                          "the reference row." % rep["failure"], file=sys.stderr)
                break
            if rep["status"] == "degraded" and cell["status"] == "ok":
                cell["status"] = "degraded"
            for why in rep.get("degraded_by", []):
                cell["reasons"].append("repeat %d: %s" % (r + 1, why))
            if self.interrupted:
                break
        cell["summary"] = summarize(cell["repeats"])
        return cell

    def run_repeat(self, sc, model, r):
        rep = {"repeat": r + 1, "status": "ok"}
        tag = "%s_%s_r%d" % (model, sc["id"], r + 1)
        raw = os.path.join(self.run_dir, "raw")
        port = self.args.port or free_port()
        if self.args.port and port_busy(port):
            rep.update(status="failed", failure="port %d is busy: %s" % (port, who_listens(port)))
            return rep
        srv = Server(self, model, port)
        self.current_server = srv
        slow = None
        costs = None
        sampler = None
        try:
            why = srv.start()
            if why:
                rep.update(status="failed", failure="could not start: %s" % why)
                return rep
            rep["server_command"] = (srv.argv if model != "nginx" else
                                     ["nginx", "-c", os.path.join(self.run_dir, "nginx.conf")])
            why = verify(srv.port, self.sizes, self.digests)
            if why:
                rep.update(status="failed", failure="verification failed: %s" % why)
                return rep
            base = proc_snapshot(srv.proc.pid)
            rep["rss_baseline_kib"] = base["rss_kib"]
            if sc["slow"]:
                slow = SlowClients(srv.port, sc["slow"]["kind"], sc["slow"]["count"],
                                   file_name(sc["size"]))
                slow.open_all()
            if self.warmup > 0:
                _, _, err = run_wrk(self, srv.port, dict(sc, connections=sc["connections"]),
                                    self.warmup, None, os.path.join(raw, "wrk-warmup_%s.txt" % tag))
                if err:
                    rep.setdefault("warnings", []).append("warm-up: " + err)
            if self.interrupted:
                raise Interrupted()
            # -- the captured window --
            costs = ServerCosts(srv.proc.pid, os.path.join(raw, "perf_%s.csv" % tag),
                                self.perf_ok, self.perf_why)
            costs.start()
            self.children.add(costs)
            sampler = Sampler(srv.proc.pid, srv.port)
            sampler.sample()
            sampler.start()
            t0 = time.monotonic()
            wrk, client_cpu, err = run_wrk(self, srv.port, sc, self.duration,
                                           os.path.join(raw, "wrk_%s.json" % tag),
                                           os.path.join(raw, "wrk_%s.txt" % tag))
            window = time.monotonic() - t0
            sampler.sample()
            sampler.finish()
            cost = costs.stop()
            self.children.discard(costs)
            costs = None
            if cost.get("warning"):
                rep.setdefault("warnings", []).append(cost.pop("warning"))
            if self.interrupted:
                raise Interrupted()
            if err or wrk is None:
                rep.update(status="failed", failure=err or "wrk gave no results")
                return rep
            rep.update(self.metrics(sc, wrk, client_cpu, window, cost, sampler, slow, base))
            rep["raw"] = {"wrk": "raw/wrk_%s.json" % tag, "wrk_text": "raw/wrk_%s.txt" % tag,
                          "perf": "raw/perf_%s.csv" % tag if self.perf_ok else None}
        finally:
            if costs is not None:
                costs.kill()
                self.children.discard(costs)
            if sampler is not None and sampler.is_alive():
                sampler.finish()
            if slow is not None:
                rep["slow_closed_by_server"] = slow.closed_by_server
                slow.close_all()
            if self.interrupted:
                srv.kill()
            else:
                exit_how = srv.stop()
                rep["server_exit"] = exit_how
                if exit_how != "clean" and rep["status"] != "failed":
                    rep["status"] = "degraded"
                    rep.setdefault("degraded_by", []).append("server stop: " + exit_how)
            self.current_server = None
        return rep

    def metrics(self, sc, wrk, client_cpu, window, cost, sampler, slow, idle):
        """Everything one repeat measured. idle: the server's snapshot right
        after start and verification, before any load: memory per connection
        is what the window's peak adds to it, per connection held. It is
        counted in PSS (a shared page split among the processes that map it),
        so the workers of prefork are not charged again for the pages they
        share with the master; RSS counts those once per process."""
        m = {}
        req = wrk["requests"]
        dur_s = wrk["duration_us"] / 1e6 if wrk["duration_us"] else window
        e = wrk["errors"]
        pct = {p: v for p, v in wrk["percentiles_us"]}
        m.update(requests=req, bytes=wrk["bytes"], duration_s=dur_s,
                 rps=req / dur_s if dur_s else 0.0,
                 mib_per_s=wrk["bytes"] / dur_s / MiB if dur_s else 0.0,
                 errors_connect=e["connect"], errors_read=e["read"], errors_write=e["write"],
                 errors_timeout=e["timeout"], errors_status=e["status"],
                 errors_total=e["connect"] + e["read"] + e["write"] + e["timeout"] + e["status"],
                 lat_p50_us=pct.get(50), lat_p90_us=pct.get(90), lat_p99_us=pct.get(99),
                 lat_p999_us=pct.get(99.9), lat_max_us=wrk["latency_us"]["max"],
                 lat_mean_us=wrk["latency_us"]["mean"],
                 lat_percentiles_us=wrk["percentiles_us"], lat_histogram_us=wrk["histogram_us"])
        user, syst = cost["cpu_user_s"], cost["cpu_sys_s"]
        vol, invol = cost["ctx_vol"], cost["ctx_invol"]
        m.update(cpu_user_s=user, cpu_sys_s=syst, cpu_s=user + syst,
                 cpu_us_per_req=per_req((user + syst) * 1e6, req),
                 cpu_user_us_per_req=per_req(user * 1e6, req),
                 cpu_sys_us_per_req=per_req(syst * 1e6, req),
                 server_cpu_util=(user + syst) / window if window else None,
                 ctx_method=cost["ctx_method"], syscalls=cost["syscalls"],
                 syscalls_per_req=per_req(cost["syscalls"], req),
                 perf_task_clock_s=cost["perf_task_clock_s"])
        if cost["syscalls"] is None:
            m["syscalls_unavailable"] = cost["syscalls_unavailable"]
        start, end = cost["start"], cost["end"]
        m.update(ctx_vol=vol, ctx_invol=invol, ctx_vol_per_req=per_req(vol, req),
                 ctx_invol_per_req=per_req(invol, req))
        slow_est = slow.alive() if slow else 0
        wrk_est = max(0, sampler.peak["established"] - slow_est)
        peak = max(sampler.peak["rss_kib"], end["rss_kib"])
        pss_peak = None
        if HAVE_SMAPS_ROLLUP:
            pss_peak = max(sampler.peak["pss_kib"], end["pss_kib"])
            grown = pss_peak - idle["pss_kib"]
        else:
            grown = peak - idle["rss_kib"]
        held = wrk_est + slow_est
        m.update(conns_established=wrk_est, slow_established=slow_est if slow else None,
                 accept_queue_max=sampler.peak["accept_queue"],
                 rss_peak_kib=peak, rss_window_start_kib=start["rss_kib"],
                 pss_peak_kib=pss_peak, pss_baseline_kib=idle["pss_kib"],
                 mem_per_conn_kib=max(0.0, grown) / held if held else None,
                 mem_per_conn_method="pss" if pss_peak is not None else "rss",
                 threads_max=max(sampler.peak["threads"], end["threads"]),
                 procs_max=max(sampler.peak["procs"], end["procs"]),
                 client_cpu_s=client_cpu,
                 client_cpu_util=client_cpu / (dur_s * max(1, min(sc["connections"],
                                                                   len(self.client_cpus))))
                 if dur_s else None,
                 samples=sampler.samples)
        degraded = []
        if m["errors_total"]:
            degraded.append("wrk errors: connect %d, read %d, write %d, timeout %d, "
                            "status>=400 %d" % (e["connect"], e["read"], e["write"],
                                                e["timeout"], e["status"]))
        if req == 0:
            degraded.append("no request completed in the window")
        # with Connection: close connections are short-lived, so a sample
        # of established ones says little; only keep-alive must hold them all
        if sc["keepalive"] and wrk_est < sc["connections"]:
            degraded.append("only %d of %d wrk connections seen established"
                            % (wrk_est, sc["connections"]))
        if slow and slow_est < sc["slow"]["count"]:
            degraded.append("only %d of %d slow clients held open (%d closed by the server, "
                            "%d failed to connect)" % (slow_est, sc["slow"]["count"],
                                                       slow.closed_by_server, slow.connect_failed))
        if degraded:
            m["status"] = "degraded"
            m["degraded_by"] = degraded
        return m

    def progress(self, i, n, model, sc, r, eta):
        line = "[%d/%d] %-10s %-34s%s ETA %s" % (
            i, n, model, sc["label"], " rep %d/%d" % (r + 1, self.repeat) if self.repeat > 1
            else "", fmt_duration(eta))
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    # -- output --

    def results(self, status):
        a = self.args
        return {
            "schema": "c10k-bench-results",
            "schema_version": SCHEMA_VERSION,
            "run": {
                "id": self.run_id,
                "started": self.started,
                "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "status": status,
                "profile": a.profile,
                "command_line": self.command_line,
                "settings": {
                    "models": self.models, "duration_s": self.duration,
                    "warmup_s": self.warmup, "repeat": self.repeat, "workers": self.workers,
                    "per_connection_models": self.per_connection,
                    "server_cpus": self.server_cpus, "client_cpus": self.client_cpus,
                    "wrk_threads_rule": "min(connections, number of client CPUs)",
                    "wrk_timeout_s": WRK_TIMEOUT_S,
                    "keepalive_timeout_s": self.keepalive_timeout,
                    "header_timeout_s": self.header_timeout, "port": a.port or "free port per cell",
                    "sizes": self.sizes, "bin": self.bin, "out": self.run_dir,
                    "nofile": self.nofile,
                },
            },
            "environment": self.env,
            "tools": {"perf": {"available": self.perf_ok, "reason": self.perf_why or None},
                      "nginx": {"available": self.nginx_ok, "reason": self.nginx_why or None}},
            "docroot": {"path": "docroot",
                        "files": [{"name": file_name(s), "size": s, "sha256": self.digests[s]}
                                  for s in self.sizes]},
            "models": self.models,
            "scenarios": self.scenarios,
            "cells": self.cells,
        }

    def save(self, status):
        doc = self.results(status)
        tmp = os.path.join(self.run_dir, "results.json.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(self.run_dir, "results.json"))
        write_csv(os.path.join(self.run_dir, "results.csv"), doc)

    def cleanup_children(self):
        for p in list(self.children):
            if isinstance(p, ServerCosts):
                p.kill()
                continue
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "current_server", None):
            self.current_server.kill()

    def main(self):
        self.setup()
        self.check_tools()
        self.check_fd_limit()
        self.env = environment(self.args, self.bin)
        self.command_line = ["c10k", "bench"] + self.args.argv_tail
        self.started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.make_run_dir()
        # The harness itself (sampler, slow clients) runs on the client CPUs,
        # off the server's CPU.
        try:
            os.sched_setaffinity(0, self.client_cpus)
        except OSError:
            pass
        cells, total = self.plan()
        print("c10k bench: profile %s: %d models (%s) x %d scenarios x %d repeat(s) = %d cells; "
              "warm-up %gs, window %gs each; planned total %s"
              % (self.args.profile, len(self.models), ", ".join(self.models),
                 len(self.scenarios), self.repeat, len(cells), self.warmup, self.duration,
                 fmt_duration(total)))
        print("c10k bench: server on CPU %s, wrk on CPU %s, %d worker(s) (%s: a thread or "
              "process per connection); perf %s; run dir %s"
              % (cpus_text(self.server_cpus), cpus_text(self.client_cpus), self.workers,
                 ", ".join(self.per_connection) or "none",
                 "on" if self.perf_ok else "UNAVAILABLE", self.run_dir))
        sys.stdout.flush()
        self.save("running")
        t_start = time.monotonic()
        status = "complete"
        done_est = 0.0
        try:
            for i, (sc, model) in enumerate(cells, 1):
                elapsed = time.monotonic() - t_start
                # ETA: the plan, corrected by how far off the plan was so far
                scale = elapsed / done_est if done_est > 0 else 1.0
                eta = (total - done_est) * scale
                cell = self.run_cell(i, len(cells), sc, model, eta)
                done_est += (self.warmup + self.duration + CELL_OVERHEAD_S) * self.repeat
                if self.interrupted:
                    raise Interrupted()  # an unfinished cell is not kept
                self.cells.append(cell)
                self.save("running")
        except (Interrupted, KeyboardInterrupt):
            status = "interrupted"
            self.interrupted = True
            self.cleanup_children()
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            print("c10k bench: interrupted: servers and wrk stopped; keeping the %d finished "
                  "cell(s)" % len(self.cells), file=sys.stderr)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
        self.save(status)
        took = time.monotonic() - t_start
        print("c10k bench: %s: %d cells in %s (%d ok, %d degraded, %d failed)"
              % (status, len(self.cells), fmt_duration(took),
                 sum(c["status"] == "ok" for c in self.cells),
                 sum(c["status"] == "degraded" for c in self.cells),
                 sum(c["status"] == "failed" for c in self.cells)))
        print("c10k bench: results: %s" % os.path.join(self.run_dir, "results.json"))
        if not self.args.no_report:
            rc = subprocess.call([sys.executable, os.path.join(HERE, "report.py"), self.run_dir])
            if rc == 0:
                print("c10k bench: report: %s" % os.path.join(self.run_dir, "report.html"))
                print("c10k bench: report: %s" % os.path.join(self.run_dir, "report.md"))
            else:
                print("c10k bench: the report generator failed (status %d); results are kept"
                      % rc, file=sys.stderr)
        return 130 if status == "interrupted" else 0


# --- aggregation and CSV ---------------------------------------------------------

SCALAR_METRICS = [
    "rps", "mib_per_s", "requests", "bytes", "duration_s", "errors_total", "errors_connect",
    "errors_read", "errors_write", "errors_timeout", "errors_status", "lat_p50_us",
    "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_max_us", "lat_mean_us", "cpu_user_s",
    "cpu_sys_s", "cpu_s", "cpu_us_per_req", "cpu_user_us_per_req", "cpu_sys_us_per_req",
    "server_cpu_util", "ctx_vol", "ctx_invol", "ctx_vol_per_req", "ctx_invol_per_req",
    "syscalls", "syscalls_per_req", "perf_task_clock_s", "rss_baseline_kib", "rss_peak_kib",
    "pss_baseline_kib", "pss_peak_kib", "mem_per_conn_kib", "threads_max", "procs_max",
    "conns_established", "slow_established", "accept_queue_max", "client_cpu_s", "client_cpu_util",
]


def summarize(repeats):
    """min/median/max of every scalar metric over the repeats that ran.
    A metric that is unavailable (None) in any repeat stays None."""
    ran = [r for r in repeats if r.get("status") != "failed"]
    out = {}
    for k in SCALAR_METRICS:
        vals = [r.get(k) for r in ran]
        if not vals or any(v is None for v in vals):
            out[k] = None
            continue
        out[k] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def write_csv(path, doc):
    scen = {s["id"]: s for s in doc["scenarios"]}
    cols = ["model", "scenario", "size", "keepalive", "connections", "slow_kind", "slow_count",
            "cell_status", "repeat", "repeat_status", "server_exit"] + SCALAR_METRICS
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for c in doc["cells"]:
            s = scen[c["scenario"]]
            for r in c["repeats"] or [{}]:
                row = [c["model"], c["scenario"], s["size"], int(s["keepalive"]),
                       s["connections"], (s["slow"] or {}).get("kind", ""),
                       (s["slow"] or {}).get("count", ""), c["status"], r.get("repeat", ""),
                       r.get("status", ""), r.get("server_exit", "")]
                for k in SCALAR_METRICS:
                    v = r.get(k)
                    row.append("" if v is None else ("%.6g" % v if isinstance(v, float) else v))
                w.writerow(row)


# --- command line ----------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="c10k bench",
        description="Benchmark every c10k model against nginx with wrk (loopback only). "
                    "Profiles: " + "; ".join("%s: %s" % (k, v["about"])
                                             for k, v in PROFILES.items()))
    p.add_argument("--bin", required=True, help="the c10k binary (c10k bench passes it)")
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--models", help="comma-separated models (default: all; nginx always runs)")
    p.add_argument("--connections", help="comma-separated connection counts")
    p.add_argument("--sizes", help="comma-separated file sizes, e.g. 128,4KiB,1MiB")
    p.add_argument("--modes", help="keepalive,close (default: the profile's)")
    p.add_argument("--duration", type=int,
                   help="captured window per cell, whole seconds (wrk's unit)")
    p.add_argument("--warmup", type=int,
                   help="warm-up per cell, whole seconds, 0 for none (not recorded)")
    p.add_argument("--repeat", type=int, help="repeats per cell")
    p.add_argument("--workers", type=int, help="server workers (default: number of server CPUs)")
    p.add_argument("--server-cpus", help="CPUs for the server (default 0)")
    p.add_argument("--client-cpus", help="CPUs for wrk (default: the others)")
    p.add_argument("--port", type=int, help="fixed port for every server (default: a free one)")
    p.add_argument("--out", help="results directory (default: <repo>/results)")
    p.add_argument("--no-report", action="store_true", help="do not run c10k report at the end")

    def error(message):
        raise UsageError(message)

    p.error = error
    args = p.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= 4096:
        raise UsageError("--workers %d: want 1 to 4096" % args.workers)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port %d: want 1 to 65535" % args.port)
    tail, skip = [], False
    for i, a in enumerate(argv):  # the user's arguments, without --bin PATH
        if skip:
            skip = False
            continue
        if a == "--bin":
            skip = True
            continue
        if a.startswith("--bin="):
            continue
        tail.append(a)
    args.argv_tail = tail
    return args


def main(argv):
    bench = None

    def on_signal(signum, frame):
        if bench is not None:
            bench.interrupted = True
        raise KeyboardInterrupt()

    try:
        args = parse_args(argv)
        bench = Bench(args)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        return bench.main()
    except UsageError as e:
        print("c10k bench: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if bench is not None:
            bench.cleanup_children()
        print("\nc10k bench: interrupted before the first cell", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
