"""The load generator of closed-loop scenarios: wrk, pinned to the client
CPUs, with bench/wrk_report.lua writing its results as JSON. A cold-cache
scenario walks a list of paths instead of asking for one file
(bench/wrk_paths.lua). (The open-loop generator, `c10k load`, joins here.)"""

import base64
import json
import math
import os
import signal
import subprocess
import time

from .docroot import file_name
from .merge import MergeError, merge_wrk
from .remote import RemoteError, start_together
from .util import HERE, MiB, cpus_text, read_file

LUA = os.path.join(HERE, "wrk_report.lua")
PATHS_LUA = os.path.join(HERE, "wrk_paths.lua")
WRK_TIMEOUT_S = 2  # wrk's --timeout: a response slower than this is a timeout error


def wrk_threads(connections, client_cpus):
    return max(1, min(connections, len(client_cpus)))


def wrk_argv(port, scenario, seconds, client_cpus, host="127.0.0.1", timeout_s=WRK_TIMEOUT_S,
             path=None):
    """wrk for a scenario; path: the URL's (a cold-cache scenario's first)."""
    conns = scenario["connections"]
    argv = ["taskset", "-c", cpus_text(client_cpus), "wrk",
            "-t", str(wrk_threads(conns, client_cpus)), "-c", str(conns),
            "-d", "%ds" % seconds, "--timeout", "%ds" % timeout_s,
            "-s", PATHS_LUA if scenario.get("cold") else LUA]
    if not scenario["keepalive"]:
        argv += ["-H", "Connection: close"]
    path = path or "/" + file_name(scenario["size"])
    return argv + ["http://%s:%d%s" % (host, port, path)]


def paths_env(run, scenario):
    """The environment wrk_paths.lua reads, and the list's first path (the
    URL wrk is given); empty for a scenario without a path list."""
    cold = scenario.get("cold")
    if not cold:
        return {}, None
    paths = os.path.join(run.run_dir, cold["paths_file"])
    with open(paths) as f:
        first = f.readline().strip()
    threads = wrk_threads(scenario["connections"], run.plan.client_cpus)
    return {"WRK_PATHS": paths, "WRK_REPORT_LUA": LUA, "WRK_THREADS": str(threads)}, first


def split_connections(total, hosts):
    """total connections over hosts generators, as evenly as whole numbers go."""
    base, extra = divmod(total, hosts)
    return [base + (1 if i < extra else 0) for i in range(hosts)]


def _reap(p, t0, deadline, stop_at, until):
    """Wait for wrk; SIGINT at stop_at, or once until(seconds since t0) is
    true (wrk stops and reports, as at its deadline). Returns the rusage,
    or None if it had to be killed."""
    interrupted = False
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return ru
        now = time.monotonic()
        if not interrupted and ((stop_at is not None and now >= stop_at)
                                or (until is not None and until(now - t0))):
            os.killpg(p.pid, signal.SIGINT)
            interrupted = True
        if now > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            os.wait4(p.pid, 0)
            p.returncode = -9
            return None
        time.sleep(0.02)


def run_wrk(run, port, scenario, seconds, json_path, raw_path, until=None, side=None):
    """Run wrk for `seconds` (a fraction is allowed: wrk runs for whole
    seconds and is stopped early with SIGINT, which it treats as its end),
    or until until(elapsed) says so. side (net.py) says where the server is
    and where wrk runs: here, in the client namespace of a veth link, or on
    the --client-host hosts (run_wrk_remote). Returns (report dict or None,
    client CPU seconds, error text or None)."""
    agents = run.net.client_agents if getattr(run, "net", None) else []
    if agents:
        return run_wrk_remote(run, agents, port, scenario, seconds, json_path, raw_path, side)
    whole = max(1, math.ceil(seconds))
    extra, first = paths_env(run, scenario)
    argv = wrk_argv(port, scenario, whole, run.plan.client_cpus,
                    side.host if side else "127.0.0.1", run.wrk_timeout_s, first)
    if side is not None:
        argv = side.client_prefix() + argv
    env = dict(os.environ, WRK_REPORT=json_path or "",
               WRK_CONNECTIONS=str(scenario["connections"]), **extra)
    if json_path and os.path.exists(json_path):
        os.unlink(json_path)
    out = open(raw_path, "w") if raw_path else subprocess.DEVNULL
    if raw_path:
        out.write("$ %s\n" % " ".join(argv))
        out.flush()
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    run.children.add(p)
    t0 = time.monotonic()
    try:
        ru = _reap(p, t0, t0 + whole + 30, t0 + seconds if seconds < whole else None, until)
    finally:
        if p.returncode is None:  # interrupted: never leave wrk behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
                os.waitpid(p.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        run.children.discard(p)
        if raw_path:
            out.close()
    if ru is None:
        return None, 0.0, "wrk did not finish within %.0f s; killed" % (whole + 30)
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


def wrk_metrics(wrk, window_s):
    """A repeat's load-side metrics from wrk_report.lua's JSON. With no
    request completed there is no latency: wrk then reports 0 for every
    percentile, which is kept as null (unavailable), never as 0."""
    req = wrk["requests"]
    dur_s = wrk["duration_us"] / 1e6 if wrk["duration_us"] else window_s
    e = wrk["errors"]
    pct = {p: v for p, v in wrk["percentiles_us"]} if req else {}
    if not req:
        wrk = dict(wrk, latency_us={"max": None, "mean": None})
    return dict(
        requests=req, bytes=wrk["bytes"], duration_s=dur_s,
        rps=req / dur_s if dur_s else 0.0,
        mib_per_s=wrk["bytes"] / dur_s / MiB if dur_s else 0.0,
        errors_connect=e["connect"], errors_read=e["read"], errors_write=e["write"],
        errors_timeout=e["timeout"], errors_status=e["status"],
        errors_total=e["connect"] + e["read"] + e["write"] + e["timeout"] + e["status"],
        lat_p50_us=pct.get(50), lat_p90_us=pct.get(90), lat_p99_us=pct.get(99),
        lat_p999_us=pct.get(99.9), lat_max_us=wrk["latency_us"]["max"],
        lat_mean_us=wrk["latency_us"]["mean"],
        lat_percentiles_us=wrk["percentiles_us"] if req else [],
        lat_histogram_us=wrk.get("histogram_us"),
        lat_histogram_recorded=wrk.get("recorded"), lat_co_synthetic=wrk.get("co_synthetic"),
        lat_histogram_unavailable=wrk.get("histogram_unavailable"))


def wrk_degraded(m):
    """Why the load side of a repeat is degraded (errors, nothing done)."""
    out = []
    if m["errors_total"]:
        out.append("wrk errors: connect %d, read %d, write %d, timeout %d, status>=400 %d"
                   % (m["errors_connect"], m["errors_read"], m["errors_write"],
                      m["errors_timeout"], m["errors_status"]))
    if m["requests"] == 0:
        out.append("no request completed in the window")
    return out


def remote_wrk_argv(agent, host, port, scenario, conns, seconds, timeout_s):
    """wrk on a client host: its own wrk and bench/wrk_report.lua, unpinned,
    one thread per CPU there (at most one per connection)."""
    threads = max(1, min(conns, agent.info["cores"] or 1))
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % seconds,
            "--timeout", "%ds" % timeout_s, "-s", "{bench}/wrk_report.lua"]
    if not scenario["keepalive"]:
        argv += ["-H", "Connection: close"]
    return argv + ["http://%s:%d/%s" % (host, port, file_name(scenario["size"]))]


def run_wrk_remote(run, agents, port, scenario, seconds, json_path, raw_path, side):
    """wrk on every --client-host at once, behind a barrier (remote.py),
    the connections split between them; their reports merged (merge.py:
    counts summed, histograms merged, percentiles read from the merged
    histogram). A fraction of a second or an early end is not possible
    over there: wrk runs whole seconds."""
    whole = max(1, math.ceil(seconds))
    split = split_connections(scenario["connections"], len(agents))
    jobs, hosts = [], []
    for i, (ag, conns) in enumerate(zip(agents, split)):
        if conns == 0:
            continue
        host = side.host if side is not None and side.remote else ag.info["peer_addr"]
        name = "wrk-%d" % run.net.next_seq()
        jobs.append((ag, dict(
            cid=name, argv=remote_wrk_argv(ag, host, port, scenario, conns, whole,
                                           run.wrk_timeout_s),
            env={"WRK_REPORT": "{work}/%s.json" % name if json_path else "",
                 "WRK_CONNECTIONS": str(conns)},
            files=["%s.json" % name] if json_path else [], log="%s.txt" % name,
            timeout=whole + 30)))
        hosts.append((ag.spec, name))
    try:
        outs = start_together(jobs, whole + 60)
    except RemoteError as e:
        return None, 0.0, "client hosts: %s" % e
    client_cpu = sum(o["cpu_s"] or 0.0 for o in outs)
    if raw_path:
        with open(raw_path, "w") as f:
            for (spec, name), (ag, job), o in zip(hosts, jobs, outs):
                argv = " ".join(job["argv"]).replace("{bench}", ag.info["bench"])
                f.write("=== %s: $ %s\n%s\n" % (spec, argv, o.get("log_tail", "")))
    bad = ["%s: wrk exit status %s%s" % (spec, o["returncode"],
                                          " (killed after %d s)" % (whole + 30)
                                          if o["timed_out"] else "")
           for (spec, _), o in zip(hosts, outs) if o["returncode"] != 0]
    if bad:
        return None, client_cpu, "; ".join(bad)
    if not json_path:
        return None, client_cpu, None
    docs = []
    for (spec, name), o in zip(hosts, outs):
        data = o["files"].get("%s.json" % name)
        if data is None:
            return None, client_cpu, "%s: wrk_report.lua wrote no JSON" % spec
        doc = json.loads(base64.b64decode(data))
        doc["host"] = spec
        docs.append(doc)
    try:
        merged = merge_wrk(docs)
    except MergeError as e:
        return None, client_cpu, "client hosts: %s" % e
    merged["per_host"] = [{k: d.get(k) for k in ("host", "requests", "bytes", "errors",
                                                 "latency_us", "percentiles_us")}
                          for d in docs]
    with open(json_path, "w") as f:
        json.dump(merged, f)
    return merged, client_cpu, None
