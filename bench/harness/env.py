"""The environment record of a run, and the checks made before it starts:
tools, the open-file limit, the local port range."""

import os
import re
import resource
import shutil
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from .counters import check_perf
from .refs import REFERENCES
from .util import REPO, UsageError, read_file, run_text


def dpkg_version(pkg):
    out = run_text(["dpkg-query", "-W", "-f=${Version}", pkg])
    return out if out and "no packages found" not in out else None


# What the environment record asks of other programs: one process each,
# run side by side (one after another they took over a second per run).
PROBES = {
    "wrk": lambda: (run_text(["wrk", "-v"]).splitlines() or [""])[0] or None,
    "nginx": lambda: run_text(["nginx", "-v"]) or None,
    "perf": lambda: run_text(["perf", "--version"]) or None,
    "gnuplot": lambda: run_text(["gnuplot", "--version"]) or None,
    "nginx-light": lambda: dpkg_version("nginx-light"),
    "liburing": lambda: dpkg_version("liburing-dev") or dpkg_version("liburing2"),
    "libevent": lambda: dpkg_version("libevent-dev") or dpkg_version("libevent-2.1-7"),
    "libuv": lambda: dpkg_version("libuv1-dev") or dpkg_version("libuv1"),
    "http-parser": lambda: dpkg_version("libhttp-parser-dev"),
    "linux-perf": lambda: dpkg_version("linux-perf"),
    "git": lambda: run_text(["git", "-C", REPO, "rev-parse", "HEAD"]),
    "dirty": lambda: run_text(["git", "-C", REPO, "status", "--porcelain",
                               "--untracked-files=no"]),
}


def probe_all():
    with ThreadPoolExecutor(max_workers=len(PROBES)) as pool:
        futures = {k: pool.submit(f) for k, f in PROBES.items()}
        return {k: f.result() for k, f in futures.items()}


def environment(bin_path):
    cpu_model = ""
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    got = probe_all()
    git, dirty = got.pop("git"), got.pop("dirty")
    if not re.fullmatch(r"[0-9a-f]{40}", git or ""):
        git = None
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "kernel": os.uname().release,
        "kernel_version": os.uname().version,
        "machine": os.uname().machine,
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "hostname": socket.gethostname(),
        "versions": dict(got, python=sys.version.split()[0]),
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


def check_tools(port, bin_path, need_wrk=True):
    """{tool: (usable, why)} for perf and each reference server; UsageError
    for what the bench cannot run without (wrk, taskset, a free --port).
    need_wrk False: the load generator runs on other hosts."""
    if need_wrk and not shutil.which("wrk"):
        raise UsageError("wrk is not installed: apt-get install wrk (or make deps)")
    if not shutil.which("taskset"):
        raise UsageError("taskset is missing: apt-get install util-linux")
    tools = {"perf": check_perf()}
    if not tools["perf"][0]:
        print("c10k bench: perf unusable: %s.\n  Syscalls per request will be reported "
              "as unavailable, and context switches come from /proc, which misses threads "
              "that exit during the window." % tools["perf"][1], file=sys.stderr)
    for name, ref in REFERENCES.items():
        tools[name] = ref.available(bin_path)
        if not tools[name][0]:
            print("c10k bench: %s CANNOT RUN: %s. The run continues without its row."
                  % (name.upper(), tools[name][1]), file=sys.stderr)
        elif ref.note(bin_path):
            print("c10k bench: %s: %s." % (name, ref.note(bin_path)), file=sys.stderr)
    if port:
        from .servers import port_busy, who_listens
        if port_busy(port):
            raise UsageError("port %d is busy: %s listens there. Stop it or choose another "
                             "--port (the default picks free ports)" % (port, who_listens(port)))
    return tools


def fd_need(scenarios):
    """wrk needs one fd per connection, the server one or two, perf a few
    per thread: the largest scenario plus headroom."""
    return max(s["connections"] + (s["slow"]["count"] if s["slow"] else 0)
               for s in scenarios) + 256


def check_fd_limit(scenarios, profile):
    """Raise the soft limit if needed and allowed; returns it."""
    need = fd_need(scenarios)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        raise UsageError(
            "profile %s needs %d open files per process (largest scenario plus headroom) "
            "but the limit is %d (hard %d). Raise it, e.g. as root: `ulimit -Hn %d; "
            "ulimit -n %d` in this shell, or `* - nofile %d` in "
            "/etc/security/limits.conf and log in again."
            % (profile, need, soft, hard, need * 2, need * 2, need * 2))
    ports = read_file("/proc/sys/net/ipv4/ip_local_port_range").split()
    if len(ports) == 2 and int(ports[1]) - int(ports[0]) < need:
        raise UsageError("net.ipv4.ip_local_port_range %s gives fewer than %d client ports; "
                         "run: sysctl -w net.ipv4.ip_local_port_range='1024 65000'"
                         % (" ".join(ports), need))
    return soft
