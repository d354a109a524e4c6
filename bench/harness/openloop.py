"""One step of an open-loop profile: `c10k load` against one fresh server.

    c10k load URL --rate R --connections C --warmup W --duration D
              --threads T --cpus CLIENT_CPUS --max-lag L --timeout 2 [--poisson --seed N]

runs under taskset on the client CPUs, like wrk. Its warm-up is part of
the same run (the schedule runs, nothing is recorded), so the server's
window cannot start when the generator is launched. The generator connects
first and starts its schedule once every connection is up (or its connect
timeout has passed), so the harness watches the connections come up (netlink
sock_diag), takes that moment as the schedule's start t0, and places the
server's window inside the generator's: counters on at t0 + W, off at
t0 + W + D less a margin (how late t0 may be, and 50 ms), since the
generator's connections close right after its window. The edges are good
to a poll interval (20 ms, more with thousands of connections); the real
lengths of the counters' windows are recorded (`server_window_s`,
`perf_window_s`), and per-request costs divide by the requests of each
window, the achieved rate times its length: under an open-loop schedule
the load is steady across an edge.

A step's figures come from the generator's JSON (load/load.c): rate,
goodput, errors, latency from the intended send time, its histogram and
per-second timeline, per-connection completions (fairness), the
generator's CPU and lag, in-flight requests and service time (Little);
the server's costs come from the same counters as a closed-loop cell.
"""

import json
import os
import signal
import subprocess
import time

from . import counters as ct
from . import ladder
from .docroot import file_name
from .loadgen import WRK_TIMEOUT_S
from .results import mark
from .util import Interrupted, cpus_text, per_req, read_file

LOAD_TIMEOUT_S = WRK_TIMEOUT_S  # a request unanswered 2 s after its send is a timeout, as in wrk
EXIT_GRACE_S = 30.0             # after the window: the generator writes its JSON and exits
END_MARGIN_S = 0.05             # the server's window ends this much before the generator's


def load_threads(connections, client_cpus):
    """One generator thread per client CPU, each pinned to its own, but no
    more threads than connections."""
    return max(1, min(connections, len(client_cpus)))


def load_argv(bin_path, port, sc, plan, json_path, host="127.0.0.1"):
    step = sc["step"]
    conns = step["connections"]
    argv = ["taskset", "-c", cpus_text(plan.client_cpus), bin_path, "load",
            "http://%s:%d/%s" % (host, port, file_name(sc["size"])),
            "--rate", "%.6g" % step["offered_rps"], "--connections", str(conns),
            "--duration", "%g" % plan.duration, "--warmup", "%g" % plan.warmup,
            "--threads", str(load_threads(conns, plan.client_cpus)),
            "--cpus", cpus_text(plan.client_cpus), "--max-lag", "%g" % plan.max_lag_s,
            "--timeout", "%g" % LOAD_TIMEOUT_S, "--json", json_path]
    if sc.get("schedule") == "poisson":
        argv += ["--poisson", "--seed", str(plan.seed)]
    return argv


def step_metrics(load, offered_rps):
    """The load side of a step, from c10k load's JSON."""
    e = load["errors"]
    lat = load["latency_us"]
    dur = load["duration_s"]
    requests = load["requests"]
    little = ladder.little(load.get("in_flight_mean"), load.get("rate_achieved"),
                           load.get("service_latency_mean_us"),
                           e["timeout"] / dur if dur else 0.0,
                           load.get("timeout_s") or LOAD_TIMEOUT_S)
    bound = ladder.client_bound_reasons(bool(load.get("valid")), load.get("invalid_reason"),
                                        little)
    goodput = load.get("goodput_rps")
    if goodput is None:
        goodput = (requests - e["status"]) / dur if dur else None
    m = dict(
        offered_rps=offered_rps, achieved_rps=load["rate_achieved"], goodput_rps=goodput,
        requests=requests, duration_s=dur, errors_connect=e["connect"], errors_read=e["read"],
        errors_write=e["write"], errors_timeout=e["timeout"], errors_status=e["status"],
        errors_total=sum(e[k] for k in ("connect", "read", "write", "timeout", "status")),
        lat_p50_us=lat.get("p50"), lat_p90_us=lat.get("p90"), lat_p99_us=lat.get("p99"),
        lat_p999_us=lat.get("p999"), lat_p9999_us=lat.get("p9999"), lat_max_us=lat.get("max"),
        lat_mean_us=lat.get("mean"), lat_histogram_us=load["histogram"],
        timeline=load["timeline"],
        fairness_jain=ladder.jain(load.get("per_connection_completed")),
        fairness_jain_ideal=ladder.jain_ideal(offered_rps, dur, load.get("connections"),
                                              load.get("schedule") == "poisson"),
        in_flight_mean=load.get("in_flight_mean"),
        service_latency_mean_us=load.get("service_latency_mean_us"),
        client_cpu_s=load.get("client_cpu"), client_cpu_util=load.get("client_cpu_util"),
        load_threads=load.get("threads"), load_connected=load.get("connected"),
        send_lag_us=load.get("send_lag_us"), read_lag_us=load.get("read_lag_us"),
        busy_max=load.get("busy_max"), below_target=load.get("below_target"),
        scheduled=load.get("scheduled"), unfinished=load.get("unfinished"),
        unfinished_oldest_us=load.get("unfinished_oldest_us"),
        load_valid=bool(load.get("valid")), load_invalid_reason=load.get("invalid_reason"),
        little=little, client_bound=bool(bound))
    if bound:
        m["client_bound_by"] = bound
    return m


# --- running c10k load around the server's window -------------------------------------


class LoadFailed(Exception):
    """c10k load could not give a step (it exited early, or never wrote JSON)."""


def _established(diag, port):
    if diag is not None:
        try:
            return diag.established_to(port)
        except OSError:
            pass
    return ct.proc_tcp_counts(port)[0]


def _sleep_until(t, proc, run):
    """Sleep until monotonic time t; False if the generator exited first."""
    while True:
        if run.interrupted:
            raise Interrupted()
        if proc.poll() is not None:
            return False
        left = t - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


def wait_connected(diag, port, want, proc, deadline):
    """When the generator's schedule starts, estimated: when a count of the
    connections to port finds all `want` established (the count's own start,
    since it may have found the last one as it went), else its connect
    deadline. Returns (t0, established, how, how late t0 may be, in s)."""
    n = 0
    while True:
        t = time.monotonic()
        n = _established(diag, port)
        cost = time.monotonic() - t
        # a count of thousands of sockets costs the client CPU: poll less often
        period = max(0.02, 2 * cost)
        if n >= want:
            return t + 0.01, n, "every connection established", period + cost
        if proc.poll() is not None or t >= deadline:
            return deadline, n, "connect timeout (%d of %d established)" % (n, want), cost
        time.sleep(period)


class LoadRun:
    """c10k load for one step, with the server's window placed on its own."""

    def __init__(self, run, argv, text_path, json_path):
        self.run, self.argv = run, argv
        self.text_path, self.json_path = text_path, json_path
        self.proc = None
        self.timing = {}

    def start(self):
        if os.path.exists(self.json_path):
            os.unlink(self.json_path)
        out = open(self.text_path, "w")
        out.write("$ %s\n" % " ".join(self.argv))
        out.flush()
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.run.children.add(self.proc)
        self.t_launch = time.monotonic()

    def window(self, window, port, conns, stats_path):
        """Wait for the connections, then switch the server's counters on for
        the generator's window; returns the stats file readings."""
        plan = self.run.plan
        deadline = self.t_launch + LOAD_TIMEOUT_S + 0.05
        t0, est, how, unsure = wait_connected(window.diag, port, conns, self.proc, deadline)
        self.timing.update(connect_s=t0 - self.t_launch, connected_at_t0=est, t0_from=how)
        if not _sleep_until(t0 + plan.warmup, self.proc, self.run):
            raise LoadFailed(self._early_exit("before its window"))
        stats0 = ct.read_stats_file(stats_path) if stats_path else (None, None)
        stats0_t = _mtime(stats_path)
        window.start()
        # end early enough that the generator's connections, which close
        # after its window, are not in the server's
        _sleep_until(t0 + plan.warmup + plan.duration - END_MARGIN_S - unsure, self.proc,
                     self.run)
        window.stop()
        stats1 = ct.read_stats_file(stats_path) if stats_path else (None, None)
        self.timing["model_counters_window_s"] = (
            _mtime(stats_path) - stats0_t if stats0_t is not None and _mtime(stats_path)
            is not None else None)
        return stats0, stats1

    def _early_exit(self, when):
        rc = self.proc.wait()
        tail = read_file(self.text_path).strip().splitlines()[-2:]
        return "c10k load exited with status %d %s: %s" % (rc, when, " | ".join(tail))

    def finish(self):
        """Wait for the generator to exit (it stops at its window's end)."""
        deadline = time.monotonic() + self.run.plan.duration + EXIT_GRACE_S
        while self.proc.poll() is None:
            if self.run.interrupted:
                raise Interrupted()
            if time.monotonic() > deadline:
                raise LoadFailed("c10k load did not exit within %.0f s of its window; "
                                 "killed" % EXIT_GRACE_S)
            time.sleep(0.02)

    def kill(self):
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except (ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired):
                pass
        if self.proc is not None:
            self.run.children.discard(self.proc)

    def result(self):
        """c10k load's JSON. Exit 0 is a valid run, 1 an invalid one (the
        JSON says why; its step is client-bound), anything else a failure."""
        rc = self.proc.returncode
        if rc not in (0, 1):
            raise LoadFailed(self._early_exit("") if rc is None else
                             "c10k load exit status %s: %s" % (rc, " | ".join(
                                 read_file(self.text_path).strip().splitlines()[-2:])))
        try:
            with open(self.json_path) as f:
                load = json.load(f)
        except (OSError, ValueError) as e:
            raise LoadFailed("c10k load (exit %d) wrote no JSON: %s" % (rc, e)) from None
        if not load.get("connected"):
            raise LoadFailed("c10k load could not connect: %s" % load.get("invalid_reason"))
        return load


def _mtime(path):
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


# --- the step, as a repeat of the cell ---------------------------------------------------


def measure(runner, srv, sc, tag, rep, window, slow, idle):
    """CellRunner's measure function for kinds latency and crossover: sc is
    the scenario with the step in sc["step"] (its offered rate and
    connections)."""
    run = runner.run
    step = sc["step"]
    rep.update(step=step["index"], offered_rps=step["offered_rps"],
               connections=step["connections"], pct_of_peak=step.get("pct_of_peak"))
    json_path, text_path = runner._raw("load_%s.json" % tag), runner._raw("load_%s.txt" % tag)
    stats_path = getattr(srv, "stats_file", None)
    side = runner.side  # loopback, or across --netns: the generator runs in the client's place
    argv = side.client_prefix() + load_argv(run.binary.path, srv.port, sc, run.plan, json_path,
                                            host=side.host)
    lr = LoadRun(run, argv, text_path, json_path)
    window.tree.count_conns = False  # counted once, when the generator's schedule starts
    try:
        lr.start()
        stats0, stats1 = lr.window(window, srv.port, step["connections"], stats_path)
        lr.finish()
        load = lr.result()
    except LoadFailed as e:
        rep.update(status="failed", failure=str(e))
        return
    finally:
        lr.kill()
    if window.cost is None:
        rep.update(status="failed", failure="the server's window never closed")
        return
    rep.update(step_metrics(load, step["offered_rps"]))
    rep.update(server_metrics(runner, window, idle, load, lr.timing,
                              lr.timing.get("connected_at_t0")))
    rep.update(runner.model_counters(srv.spec, stats_path, stats0, stats1))
    rep["model_counters_window_s"] = lr.timing.get("model_counters_window_s")
    rep["raw"] = {"load": "raw/load_%s.json" % tag, "load_text": "raw/load_%s.txt" % tag,
                  "perf": "raw/perf_%s.csv" % tag if run.tools["perf"][0] else None,
                  "stats": "raw/stats-%s.json" % tag if stats_path else None}
    if window.cost.get("warning"):
        rep.setdefault("warnings", []).append(window.cost.pop("warning"))
    judge(sc, rep)


def windows(window, fallback_s):
    """Lengths of the server's counting windows: /proc CPU (between the two
    snapshots), perf (switches and syscalls), softirqs."""
    t = window.cost.get("times") or {}
    cpu = _span(t.get("cpu_start"), t.get("cpu_end")) or fallback_s
    return {"cpu": cpu, "perf": _span(t.get("perf_on"), t.get("perf_off")) or cpu,
            "soft": _span(*window.soft_t) or cpu}


def _span(a, b):
    return b - a if a is not None and b is not None and b > a else None


def server_metrics(runner, window, idle, load, timing, connected_at_t0):
    """The server's costs over its windows, per request answered in them.
    The windows lie inside the generator's, placed to a poll interval, and
    may start late on a busy machine (their lengths are recorded), so the
    requests in each are the generator's achieved rate times its length:
    under an open-loop schedule the rate is steady."""
    from .cell import cost_metrics, memory_metrics
    win = windows(window, load["duration_s"])
    rate = load["rate_achieved"]
    m = cost_metrics(window.cost, rate * win["cpu"], win["cpu"])
    if window.cost.get("syscalls") is not None:  # perf counted: its own window
        for k in ("ctx_vol", "ctx_invol", "syscalls"):
            m[k + "_per_req"] = per_req(window.cost[k], rate * win["perf"])
    held = connected_at_t0 or 0
    m.update(memory_metrics(window.cost, window.tree, idle, held))
    m.update(conns_established=held, accept_queue_max=window.queue.peak,
             accept_queue_wait_frac=window.queue.wait_frac(),
             accept_queue_samples=window.queue.samples, accept_queue_method=window.queue.method,
             samples=window.tree.samples, server_window_s=win["cpu"],
             perf_window_s=win["perf"] if window.cost.get("syscalls") is not None else None,
             server_requests_est=rate * win["cpu"], connect_s=timing.get("connect_s"),
             window_t0_from=timing.get("t0_from"))
    m.update(ct.softirq_delta(window.soft[0], window.soft[1], rate * win["soft"]))
    return m


def judge(sc, rep):
    """degraded: errors where the server should have coped (at or below its
    closed-loop peak; errors beyond it are the overload test's result), fewer
    connections established than opened, or nothing completed. starved: the
    accept-queue and connection rules of every cell."""
    degraded = []
    pct = rep.get("pct_of_peak")
    overload = pct is not None and pct > 100
    if rep["errors_total"] and not overload:
        degraded.append("c10k load errors: connect %d, read %d, write %d, timeout %d, "
                        "status>=400 %d" % (rep["errors_connect"], rep["errors_read"],
                                            rep["errors_write"], rep["errors_timeout"],
                                            rep["errors_status"]))
    if rep["requests"] == 0:
        degraded.append("no request completed in the window")
    if rep["conns_established"] < sc["connections"]:
        degraded.append("only %d of %d connections seen established"
                        % (rep["conns_established"], sc["connections"]))
    mark(rep, sc, degraded)
