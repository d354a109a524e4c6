"""One cell in one round: one server on one scenario.

    start the server fresh, verify one response per file size, hold the slow
    clients (if any), warm up (not recorded), then the captured window:
    the model's stats file read, perf attached, /proc and softirqs read,
    samplers started (memory and connections every 0.5 s, the accept queue
    every 50 ms), the load generator run, everything read again; then stop
    the server, which must exit cleanly.

A cold-cache scenario (one with "cold" settings) runs the same way, with its
disk throttled for the cell, and between the warm-up and the window the
document root is evicted from the page cache (coldcache.ColdWindow).

The result is one repeat of results.json: the metrics of the window, what
went wrong (failed, degraded_by) and whether the server was starved.
"""

import functools
import os
import time

from . import counters as ct
from . import netns, openloop
from .coldcache import COLD_METRICS, ColdWindow
from .docroot import file_name, verify
from .loadgen import run_wrk, wrk_degraded, wrk_metrics
from .refs import REFERENCES
from .results import mark
from .servers import ModelServer, who_listens
from .slowclients import SlowClients
from .util import Interrupted, per_req, slug


def cost_metrics(cost, requests, window):
    """CPU, switches and syscalls of the window, per request too."""
    user, syst = cost["cpu_user_s"], cost["cpu_sys_s"]
    vol, invol = cost["ctx_vol"], cost["ctx_invol"]
    m = dict(cpu_user_s=user, cpu_sys_s=syst, cpu_s=user + syst,
             cpu_us_per_req=per_req((user + syst) * 1e6, requests),
             cpu_user_us_per_req=per_req(user * 1e6, requests),
             cpu_sys_us_per_req=per_req(syst * 1e6, requests),
             server_cpu_util=(user + syst) / window if window else None,
             ctx_method=cost["ctx_method"], syscalls=cost["syscalls"],
             syscalls_per_req=per_req(cost["syscalls"], requests),
             syscalls_wait=cost.get("syscalls_wait"),
             syscalls_wait_per_req=per_req(cost.get("syscalls_wait"), requests),
             perf_task_clock_s=cost["perf_task_clock_s"],
             ctx_vol=vol, ctx_invol=invol, ctx_vol_per_req=per_req(vol, requests),
             ctx_invol_per_req=per_req(invol, requests))
    if cost["syscalls"] is None:
        m["syscalls_unavailable"] = cost["syscalls_unavailable"]
    return m


def memory_metrics(cost, tree, idle, held):
    """Peak memory, and memory per connection held: what the window's peak
    adds to the server's footprint right after start and verification, in
    PSS (a shared page split among the processes that map it, so prefork's
    workers are not charged again for the pages they share with the master,
    as a sum of RSS would), per connection held."""
    start, end = cost["start"], cost["end"]
    peak = max(tree.peak["rss_kib"], end["rss_kib"])
    pss_peak = None
    if ct.HAVE_SMAPS_ROLLUP:
        pss_peak = max(tree.peak["pss_kib"], end["pss_kib"])
        grown = pss_peak - idle["pss_kib"]
    else:
        grown = peak - idle["rss_kib"]
    return dict(rss_peak_kib=peak, rss_window_start_kib=start["rss_kib"],
                pss_peak_kib=pss_peak, pss_baseline_kib=idle["pss_kib"],
                mem_per_conn_kib=max(0.0, grown) / held if held else None,
                mem_per_conn_method="pss" if pss_peak is not None else "rss",
                threads_max=max(tree.peak["threads"], end["threads"]),
                procs_max=max(tree.peak["procs"], end["procs"]))


def loop_stalls(counters):
    """An event loop's stalls in the window, from its counters (loopstat.h):
    iterations that took over 1 ms, and their total duration. None for a
    model that does not count them (threaded, prefork, references)."""
    c = counters or {}
    if "loop_stalls" not in c or "loop_stall_us" not in c:
        return {"loop_stalls": None, "loop_stall_ms": None}
    return {"loop_stalls": c["loop_stalls"], "loop_stall_ms": c["loop_stall_us"] / 1000.0}


class Settled:
    """Ends a warm-up early once the server keeps up: after at least MIN_S,
    when the accept queue was empty at QUIET polls in a row (wrk is polled
    every 20 ms, so 0.2 s) and, on keep-alive, the server holds every
    connection the warm-up opens (`want`): at 10,000 connections the queue
    is still empty while wrk is connecting. An event loop settles at once;
    prefork's pool needs about a second to grow to 16 connections; a server
    that never catches up gets the whole warm-up and is then measured as it
    is."""

    MIN_S, QUIET = 0.25, 10

    def __init__(self, port, diag, min_s=MIN_S, want=0):
        self.port, self.diag, self.min_s, self.want = port, diag, min_s, want
        self.quiet = 0
        self.connected = want == 0
        self.settled = False

    def __call__(self, elapsed):
        try:
            empty = self.diag.accept_queue(self.port)[0] == 0
            self.quiet = self.quiet + 1 if empty else 0
            if self.quiet >= self.QUIET and not self.connected:
                # counted only once the queue is quiet: a dump of 10,000
                # sockets every 20 ms would load the machine being measured
                self.connected = self.diag.established_from(self.port) >= self.want
        except OSError:
            return False
        self.settled = elapsed >= self.min_s and self.quiet >= self.QUIET and self.connected
        return self.settled


class Window:
    """Everything read around the load generator's captured window. perf
    attaches when the Window is made (before the warm-up), counting from
    start()."""

    def __init__(self, pid, port, perf_out, perf_ok, perf_why, ns=None, server_ends=False):
        """ns: the server's network namespace (a veth link), where the
        netlink sockets must be made to see its sockets; there, and with
        server_ends (a server on another host than its clients), the
        connections are counted by the server's ends."""
        self.costs = ct.ServerCosts(pid, perf_out, perf_ok, perf_why)
        self.costs.attach()
        # one netlink socket per sampler thread: answers to two dumps on one
        # socket would interleave
        if ns:
            self.diags = [netns.in_netns(ns, ct.window_diag) for _ in range(2)]
        else:
            self.diags = [ct.window_diag(), ct.window_diag()]
        self.diag = self.diags[1]  # the queue's, also the warm-up's (before the samplers)
        ends = server_ends or bool(ns)
        self.tree = ct.TreeSampler(pid, port, self.diags[0], server_ends=ends,
                                   netns_pid=pid if ns else None)
        self.queue = ct.QueueSampler(port, self.diags[1], netns_pid=pid if ns else None)
        self.soft = [None, None]
        self.soft_t = [None, None]  # when each was read (time.monotonic)
        self.cost = None

    def start(self):
        self.costs.start()
        self.tree.sample(conns=False)
        self.tree.start()
        self.queue.start()
        self.soft[0], self.soft_t[0] = ct.softirqs(), time.monotonic()

    def stop(self):
        self.soft[1], self.soft_t[1] = ct.softirqs(), time.monotonic()
        self.queue.finish()
        self.tree.finish()
        self.tree.sample(conns=False)
        self.cost = self.costs.stop()
        self.close()
        return self.cost

    def close(self):
        self.costs.kill()
        self.tree.finish()
        self.queue.finish()
        for d in self.diags:
            if d is not None:
                d.close()
        self.diags = [None, None]


class CellRunner:
    """Runs one cell of one round. How the window is measured depends on the
    scenario's kind: "closed" is wrk after a wrk warm-up; "latency" and
    "crossover" are one step of c10k load (openloop.py), whose warm-up is
    part of the generator's run, for the scenario's step in sc["step"]."""

    def __init__(self, run):
        self.run = run
        self.current_server = None
        open_step = functools.partial(openloop.measure, self)
        self.measures = {"closed": self._measure, "latency": open_step, "crossover": open_step}

    def make_server(self, spec, port, tag, sc, side):
        if spec.reference:
            return REFERENCES[spec.model].server(self.run, spec, port, sc, side)
        stats = None
        if self.run.stats_file_supported:
            stats = os.path.join(self.run.run_dir, "raw", "stats-%s.json" % tag)
        return ModelServer(self.run, spec, port, side, stats)

    def run_round(self, spec, sc, round_no, machine):
        """One repeat of the cell (server spec, scenario sc) in round round_no."""
        run = self.run
        rep = {"round": round_no, "repeat": round_no, "status": "ok"}
        rep.update(machine)
        tag = "%s_%s_r%d" % (slug(spec.name), sc["id"], round_no)
        if sc.get("step"):
            tag += "_s%d" % (sc["step"]["index"] + 1)
        side = self.side = run.net.side(sc)
        port = run.args.port or side.free_port()
        if run.args.port and side.port_busy(port):
            rep.update(status="failed", failure="port %d is busy%s" % (
                port, "" if side.remote else ": " + who_listens(port)))
            return rep
        srv = self.make_server(spec, port, tag, sc, side)
        self.current_server = srv
        slow = window = None
        try:
            if sc.get("cold"):  # before the start: the server is born in its cgroup
                run.cold.cgroups.set_disk_iops(sc["cold"]["disk_iops"])
            why = srv.start()
            if why:
                rep.update(status="failed", failure="could not start: %s" % why)
                return rep
            rep["server_command"] = srv.command()
            if getattr(srv, "backend", None):
                rep["ceiling_backend"] = srv.backend
            why = side.in_client(verify, srv.port, srv.verify_sizes(run.plan.sizes), run.digests,
                                 side.host, getattr(run, "verify_extra", ()))
            if why:
                rep.update(status="failed", failure="verification failed: %s" % why)
                return rep
            idle = side.snapshot(srv.proc.pid)
            rep["rss_baseline_kib"] = idle["rss_kib"]
            window = side.window(srv.proc.pid, srv.port, self._raw("perf_%s.csv" % tag),
                                 run.tools["perf"][0], run.tools["perf"][1])
            slow = self._slow_clients(srv, sc)
            if sc["kind"] == "closed":
                self._warm_up(srv, sc, tag, rep, window.diag, slow)
            self.measures[sc["kind"]](srv, sc, tag, rep, window, slow, idle)
        finally:
            if window is not None:
                window.close()
            self._finish(srv, slow, rep)
        return rep

    def _raw(self, name):
        return os.path.join(self.run.run_dir, "raw", name)

    def _slow_clients(self, srv, sc):
        if not sc["slow"]:
            return None
        slow = SlowClients(srv.port, sc["slow"]["kind"], sc["slow"]["count"],
                           file_name(sc["size"]), self.side.host)
        self.side.in_client(slow.open_all)  # its sockets are the client's
        return slow

    def _warm_up(self, srv, sc, tag, rep, diag, slow):
        """Up to --warmup seconds of load, not recorded; it ends early once
        the server keeps up (Settled), when netlink can tell."""
        if self.run.plan.warmup > 0:
            min_s = getattr(self.run.plan, "warmup_min", Settled.MIN_S)
            # the server's ends of the warm-up's connections, and of the slow
            # clients' already open
            want = sc["connections"] + (slow.alive() if slow else 0) if sc["keepalive"] else 0
            settled = Settled(srv.port, diag, min_s, want) if diag is not None else None
            t0 = time.monotonic()
            _, _, err = run_wrk(self.run, srv.port, sc, self.run.plan.warmup, None,
                                self._raw("wrk-warmup_%s.txt" % tag), settled, self.side)
            rep["warmup_s"] = time.monotonic() - t0
            rep["warmup_settled"] = settled.settled if settled else None
            if err:
                rep.setdefault("warnings", []).append("warm-up: " + err)
        if self.run.interrupted:
            raise Interrupted()

    def _measure(self, srv, sc, tag, rep, window, slow, idle):
        cold = ColdWindow(self.run.cold, sc, srv.proc.pid) if sc.get("cold") else None
        try:
            self._closed_loop(srv, sc, tag, rep, window, slow, idle, cold)
        finally:
            if cold:
                cold.close()

    def _closed_loop(self, srv, sc, tag, rep, window, slow, idle, cold):
        run = self.run
        stats_path = getattr(srv, "stats_file", None)
        # the server is idle between warm-up and window: its stats file,
        # once rewritten, holds the counters at the window's start
        side = self.side
        if cold:
            # the server quiet, the root evicted: the window starts cold; the
            # disk's counters run from before the first stats file to after
            # the second, the span the loop's stall counters cover
            cold.evict(rep)
            cold.start()
            stats0 = cold.read_stats(stats_path, time.time_ns())
        else:
            stats0 = (side.fresh_stats(stats_path, time.time_ns()) if stats_path
                      else (None, None))
        window.start()
        t0 = time.monotonic()
        wrk, client_cpu, err = run_wrk(run, srv.port, sc, run.plan.duration,
                                       self._raw("wrk_%s.json" % tag),
                                       self._raw("wrk_%s.txt" % tag), side=side)
        elapsed = time.monotonic() - t0
        done_ns = time.time_ns()
        cost = window.stop()
        if cold:
            stats1 = cold.read_stats(stats_path, done_ns)
            cold.stop()
            cold.after(rep)
        else:
            stats1 = side.fresh_stats(stats_path, done_ns) if stats_path else (None, None)
        if cost.get("warning"):
            rep.setdefault("warnings", []).append(cost.pop("warning"))
        if run.interrupted:
            raise Interrupted()
        if err or wrk is None:
            rep.update(status="failed", failure=err or "wrk gave no results")
            return
        rep.update(self.metrics(sc, wrk, client_cpu, elapsed, window, slow, idle))
        rep.update(self.model_counters(srv.spec, stats_path, stats0, stats1))
        rep.update(loop_stalls(rep.get("model_counters")))
        if cold:
            cold.per_request(rep)
        else:  # every repeat has the cold metrics' keys: null, not measured
            rep.update(dict.fromkeys(COLD_METRICS))
        rep["raw"] = {"wrk": "raw/wrk_%s.json" % tag, "wrk_text": "raw/wrk_%s.txt" % tag,
                      "perf": "raw/perf_%s.csv" % tag if run.tools["perf"][0] else None,
                      "stats": "raw/stats-%s.json" % tag if stats_path else None}
        self._judge(sc, rep, slow)

    def model_counters(self, spec, stats_path, start, end):
        """The model's own counters over the window (CONTRACTS.md section 3)."""
        if spec.reference:
            return {"model_counters": None,
                    "model_counters_unavailable": "a reference server has no stats file"}
        if not stats_path:
            return {"model_counters": None,
                    "model_counters_unavailable": "this c10k binary has no --stats-file "
                                                  "(c10k serve --help)"}
        delta = ct.counters_delta(start[0], end[0])
        out = {"model_counters": delta}
        if delta is None:
            out["model_counters_unavailable"] = start[1] or end[1]
        return out

    def metrics(self, sc, wrk, client_cpu, elapsed, window, slow, idle):
        """Everything one repeat measured."""
        m = wrk_metrics(wrk, elapsed)
        req, dur_s = m["requests"], m["duration_s"]
        m.update(cost_metrics(window.cost, req, elapsed))
        slow_est = slow.alive() if slow else 0
        wrk_est = max(0, window.tree.peak["established"] - slow_est)
        m.update(memory_metrics(window.cost, window.tree, idle, wrk_est + slow_est))
        threads = self.run.net.load_threads(sc["connections"])
        m.update(conns_established=wrk_est, slow_established=slow_est if slow else None,
                 accept_queue_max=window.queue.peak,
                 accept_queue_wait_frac=window.queue.wait_frac(),
                 accept_queue_samples=window.queue.samples,
                 accept_queue_method=window.queue.method,
                 client_cpu_s=client_cpu,
                 client_cpu_util=client_cpu / (dur_s * threads) if dur_s else None,
                 samples=window.tree.samples)
        m.update(ct.softirq_delta(window.soft[0], window.soft[1], req))
        return m

    def _judge(self, sc, rep, slow):
        degraded = wrk_degraded(rep) + rep.get("cold_degraded_by", [])
        # with Connection: close connections are short-lived, so a sample
        # of established ones says little; only keep-alive must hold them all
        if sc["keepalive"] and rep["conns_established"] < sc["connections"]:
            degraded.append("only %d of %d wrk connections seen established"
                            % (rep["conns_established"], sc["connections"]))
        if slow and rep["slow_established"] < sc["slow"]["count"]:
            degraded.append("only %d of %d slow clients held open (%d closed by the server, "
                            "%d failed to connect)" % (rep["slow_established"],
                                                       sc["slow"]["count"],
                                                       slow.closed_by_server,
                                                       slow.connect_failed))
        mark(rep, sc, degraded)

    def _finish(self, srv, slow, rep):
        if slow is not None:
            rep["slow_closed_by_server"] = slow.closed_by_server
            slow.close_all()
        if self.run.interrupted:
            srv.kill()
        else:
            exit_how = srv.stop()
            rep["server_exit"] = exit_how
            if exit_how != "clean" and rep["status"] != "failed":
                rep["status"] = "degraded"
                rep.setdefault("degraded_by", []).append("server stop: " + exit_how)
        self.current_server = None

    def kill_current(self):
        if self.current_server is not None:
            self.current_server.kill()
