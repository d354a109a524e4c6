"""results.json (schema "c10k-bench-results" version 2) and results.csv.

A cell is one server on one scenario; its repeats are its rounds. After
each round a cell is summarised again: min/median/max of every scalar
metric, the spread of req/s over rounds, and its flags:

  starved  in some round, connections waited in the accept queue in more
           than 10% of the window's samples, or (keep-alive) fewer
           connections were established than the load generator opened:
           the latency measured came from the connections that were served,
           so it is not comparable with other cells;
  noisy    req/s spread over rounds, 100 * (max - min) / median, above 10%.

A flagged cell never gets a star or a win in the report.

An open-loop cell (kinds latency and crossover, ladder.py) is run as steps:
each repeat (one round) holds the steps of that round, and the cell holds
`steps` merged over rounds, `knee_rps`, `peak_closed_rps` and its flags,
which add "client-bound" (a step the generator, not the server, limited).
"""

import csv
import datetime
import json
import os
import re
import statistics

from .coldcache import COLD_METRICS

from .refs import nginx_open_file_cache
from .servers import open_file_cache_flags
from . import ladder

SCHEMA = "c10k-bench-results"
SCHEMA_VERSION = 2
STARVED_WAIT_FRAC = 0.10   # accept queue non-empty in more than 10% of samples
NOISY_SPREAD_PCT = 10.0    # 100 * (max - min) / median of rps over rounds

SCALAR_METRICS = [
    "rps", "mib_per_s", "requests", "bytes", "duration_s", "errors_total", "errors_connect",
    "errors_read", "errors_write", "errors_timeout", "errors_status", "lat_p50_us",
    "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_max_us", "lat_mean_us", "cpu_user_s",
    "cpu_sys_s", "cpu_s", "cpu_us_per_req", "cpu_user_us_per_req", "cpu_sys_us_per_req",
    "server_cpu_util", "ctx_vol", "ctx_invol", "ctx_vol_per_req", "ctx_invol_per_req",
    "syscalls", "syscalls_per_req", "perf_task_clock_s", "rss_baseline_kib", "rss_peak_kib",
    "pss_baseline_kib", "pss_peak_kib", "mem_per_conn_kib", "threads_max", "procs_max",
    "conns_established", "slow_established", "accept_queue_max", "client_cpu_s",
    "client_cpu_util",
    # schema 2
    "accept_queue_wait_frac", "softirq_net_rx", "softirq_net_tx", "softirq_net_rx_per_req",
    "softirq_net_tx_per_req", "loadavg_1m", "steal_pct", "lat_co_synthetic", "ceiling_ratio",
    "syscalls_wait", "syscalls_wait_per_req",
    # an event loop's stalls (any scenario), the disk side (cold-cache scenarios)
    "loop_stalls", "loop_stall_ms",
] + list(COLD_METRICS)
CEILING = "ceiling"

FLAG_RULES_TEXT = {
    "starved": "connections waited in the accept queue in more than %d%% of a round's "
               "window samples, or fewer keep-alive connections were established than "
               "opened; latency not comparable" % round(STARVED_WAIT_FRAC * 100),
    "noisy": "req/s spread over rounds, 100 * (max - min) / median, above %g%% (open "
             "loop: the spread of the rounds' knees)" % NOISY_SPREAD_PCT,
    "client-bound": "open loop: a step that could set the knee (above it, or any when there "
                    "is none; any step of a crossover) was limited by the generator: c10k "
                    "load judged its run invalid, or the Little's law check failed",
}


# --- one repeat --------------------------------------------------------------


def starvation(rep, sc):
    """Why one round of a cell is starved (empty list: it is not)."""
    out = []
    frac = rep.get("accept_queue_wait_frac")
    if frac is not None and frac > STARVED_WAIT_FRAC:
        out.append("connections waited in the accept queue in %.0f%% of the window's "
                   "samples (more than %.0f%%; up to %s waiting)"
                   % (100 * frac, 100 * STARVED_WAIT_FRAC, rep.get("accept_queue_max")))
    est = rep.get("conns_established")
    if sc["keepalive"] and est is not None and est < sc["connections"]:
        out.append("only %d of the %d connections opened were established"
                   % (est, sc["connections"]))
    return out



def mark(rep, sc, degraded):
    """Writes one round's verdict into rep: degraded by the reasons given (if
    any), and starved by starvation()'s (if any)."""
    if degraded:
        rep["status"] = "degraded"
        rep["degraded_by"] = degraded
    starved = starvation(rep, sc)
    rep["starved"] = bool(starved)
    if starved:
        rep["starved_by"] = starved

# --- one cell, over its rounds ---------------------------------------------------


def ran(repeats):
    return [r for r in repeats if r.get("status") != "failed"]


def summarize(repeats):
    """min/median/max of every scalar metric over the repeats that ran.
    A metric that is unavailable (None) in any repeat stays None."""
    out = {}
    done = ran(repeats)
    for k in SCALAR_METRICS:
        vals = [r.get(k) for r in done]
        if not vals or any(v is None for v in vals):
            out[k] = None
            continue
        out[k] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def spread_pct(values):
    """100 * (max - min) / median; None with fewer than two values or a zero
    median (nothing to compare)."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    med = statistics.median(values)
    if not med:
        return None
    return 100.0 * (max(values) - min(values)) / med


def cell_flags(cell):
    """The flags of a cell, from its repeats and spread."""
    flags = []
    if any(r.get("starved") for r in ran(cell["repeats"])):
        flags.append("starved")
    if cell.get("spread_pct") is not None and cell["spread_pct"] > NOISY_SPREAD_PCT:
        flags.append("noisy")
    return flags


def new_cell(server, sc):
    cell = {"model": server, "scenario": sc["id"], "status": "ok", "reasons": [],
            "repeats": [], "flags": [], "spread_pct": None, "summary": summarize([])}
    if sc["kind"] != "closed":
        cell.update(steps=[], knee_rps=None, knee_by_round=None, peak_closed_rps=None)
    return cell


def add_step(cell, step, sc):
    """Record one step of one round of an open-loop cell and derive the
    cell's steps, knee, spread and flags again."""
    r = step["round"]
    rep = next((x for x in cell["repeats"] if x["round"] == r), None)
    if rep is None:
        rep = {"round": r, "repeat": r, "status": "ok", "loadavg_1m": step.get("loadavg_1m"),
               "steal_pct": step.get("steal_pct"), "steps": []}
        cell["repeats"].append(rep)
    rep["steps"].append(step)
    where = "round %d, step %d (%s req/s, %d conns)" % (
        r, step["step"] + 1, "{:,.0f}".format(step["offered_rps"]), step["connections"])
    if step["status"] == "failed":
        rep["status"] = cell["status"] = "failed"
        cell["reasons"].append("%s: %s" % (where, step["failure"]))
    elif step["status"] == "degraded":
        rep["status"] = "degraded" if rep["status"] == "ok" else rep["status"]
        cell["status"] = "degraded" if cell["status"] == "ok" else cell["status"]
    for why in step.get("degraded_by", []):
        cell["reasons"].append("%s: %s" % (where, why))
    for why in step.get("starved_by", []):
        cell["reasons"].append("%s: starved: %s" % (where, why))
    for why in step.get("client_bound_by", []):
        cell["reasons"].append("%s: client-bound: %s" % (where, why))
    derive_open(cell, sc)
    return cell


def derive_open(cell, sc):
    got = ladder.summarize_open(ran(cell["repeats"]), sc["kind"], sc.get("slo_p99_us"))
    cell.update(steps=got["steps"], knee_rps=got["knee_rps"],
                knee_by_round=got["knee_by_round"], spread_pct=got["spread_pct"],
                flags=got["flags"])


def add_repeat(cell, rep):
    """Record one round of a cell and summarise the cell again."""
    cell["repeats"].append(rep)
    r = rep["round"]
    if rep["status"] == "failed":
        cell["status"] = "failed"
        cell["reasons"].append("round %d: %s" % (r, rep["failure"]))
    elif rep["status"] == "degraded" and cell["status"] == "ok":
        cell["status"] = "degraded"
    for why in rep.get("degraded_by", []):
        cell["reasons"].append("round %d: %s" % (r, why))
    for why in rep.get("starved_by", []):
        cell["reasons"].append("round %d: starved: %s" % (r, why))
    cell["summary"] = summarize(cell["repeats"])
    cell["spread_pct"] = spread_pct([x.get("rps") for x in ran(cell["repeats"])])
    cell["flags"] = cell_flags(cell)
    return cell


def set_ceiling_ratios(cells):
    """ceiling_ratio of every repeat that ran: its req/s over the ceiling's
    in the same round of the same scenario (CONTRACTS.md 2); null for the
    ceiling itself, and when the ceiling has no such round (not run, failed,
    or not reached yet). Summaries are made again to include it."""
    ceiling = {(c["scenario"], r["round"]): r.get("rps") for c in cells
               if c["model"] == CEILING for r in ran(c["repeats"])}
    for c in cells:
        for r in ran(c["repeats"]):
            base = ceiling.get((c["scenario"], r["round"]))
            mine = r.get("rps")
            r["ceiling_ratio"] = (mine / base if c["model"] != CEILING and base
                                  and mine is not None else None)
        c["summary"] = summarize(c["repeats"])
    return cells


def fail_cell(cell, why):
    """A cell that cannot run at all (its server is unavailable)."""
    cell["status"] = "failed"
    if why not in cell["reasons"]:
        cell["reasons"].append(why)
    return cell


# --- the document ----------------------------------------------------------------


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def settings(run):
    p = run.plan
    return {
        "models": p.names, "duration_s": p.duration, "warmup_s": p.warmup,
        "rounds": p.rounds, "repeat": p.rounds, "round_orders": p.orders, "seed": p.seed,
        "variants": p.variants(), "workers": p.workers,
        "per_connection_models": run.binary.per_connection,
        "server_cpus": p.server_cpus, "client_cpus": p.client_cpus,
        "wrk_threads_rule": "min(connections, number of client CPUs)",
        "wrk_timeout_s": run.wrk_timeout_s,
        "keepalive_timeout_s": p.keepalive_timeout, "header_timeout_s": p.header_timeout,
        "port": run.args.port or "free port per cell", "sizes": p.sizes,
        "bin": run.binary.path, "out": run.run_dir, "nofile": run.nofile,
        "accept_queue_sample_hz": run.queue_hz, "accept_queue_method": run.queue_method,
        "stats_file": run.stats_file_supported, "flag_rules": FLAG_RULES_TEXT,
        # issue 19: where the requests travelled (each scenario's "link")
        "links": sorted({sc["link"] for sc in p.scenarios}),
        "server_host": run.args.server_host, "client_hosts": run.args.client_host,
        "open_file_cache": open_file_cache_setting(p.open_file_cache),
        "cold_cache": run.cold.describe() if getattr(run, "cold", None) else None,
        "notes": list(getattr(p, "notes", [])),
        "open_loop": open_settings(run),
        "ceiling": run.ceiling.record() if run.ceiling is not None else None,
    }


def open_settings(run):
    """How the open-loop steps were run (null for a closed-loop profile)."""
    from .openloop import LOAD_TIMEOUT_S
    p = run.plan
    o = p.open
    if not o:
        return None
    return {
        "generator": "c10k load", "schedule": o["schedule"],
        "seed": p.seed if o["schedule"] == "poisson" else None,
        "threads_rule": "min(connections, number of client CPUs), thread i pinned to the "
                        "i-th client CPU (--threads, --cpus), under taskset like wrk",
        "max_lag_s": o["max_lag_s"], "max_lag_rule": o["max_lag_rule"],
        "timeout_s": LOAD_TIMEOUT_S, "slo_p99_us": o["slo_us"],
        "ladder_pct": o["pcts"] if o["kind"] == "latency" and not o["rates"] else None,
        "rates": o["rates"], "rate": o["rate"],
        "little_tolerance": ladder.LITTLE_TOLERANCE,
        "step_orders": [[{"scenario": sc["id"], "step": i, "order": order}
                         for (sc, i), order in zip(p.open_steps(), per_round)]
                        for per_round in p.step_orders],
        "knee_rule": "the highest offered rate whose p99 is under slo_p99_us, among steps "
                     "that are not client-bound, not starved and without errors",
        "client_bound_rule": "c10k load judged its run invalid (valid false, exit 1), or "
                             "in-flight requests differ from achieved rate x mean service "
                             "time by more than little_tolerance",
    }


def open_file_cache_setting(cache):
    """What c10k bench --open-file-cache gave every server: null when off."""
    if not cache:
        return None
    return {"max": cache["max"], "valid_s": cache["valid_s"],
            "c10k_flags": " ".join(open_file_cache_flags(cache)),
            "nginx": nginx_open_file_cache(cache)}


def results_doc(run, status):
    from .docroot import file_name
    p = run.plan
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": {"id": run.run_id, "started": run.started, "finished": now_iso(),
                "status": status, "profile": p.profile, "command_line": run.command_line,
                "settings": settings(run)},
        "environment": run.env,
        "tools": {name: {"available": ok, "reason": why or None}
                  for name, (ok, why) in run.tools.items()},
        "docroot": {"path": run.docroot if getattr(run, "cold", None) else "docroot",
                    "files": [{"name": file_name(s), "size": s, "sha256": run.digests[s]}
                              for s in p.sizes]},
        "models": p.names,
        "scenarios": p.scenarios,
        "cells": set_ceiling_ratios(run.cells_in_order()),
    }


# A pair of numbers, as json.dumps(indent=1) spreads it over four lines.
PAIR = re.compile(r"\[\n\s*(-?[\d.eE+-]+),\n\s*(-?[\d.eE+-]+)\n\s*\]")


def dumps(doc):
    """results.json text: indented, but each [number, number] pair (a
    histogram bucket, a percentile) on one line, so that an open-loop run's
    histograms (about a thousand 1% buckets per step) do not take four
    lines a bucket."""
    return PAIR.sub(r"[\1, \2]", json.dumps(doc, indent=1))


def save(run_dir, doc):
    tmp = os.path.join(run_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        f.write(dumps(doc))
        f.write("\n")
    os.replace(tmp, os.path.join(run_dir, "results.json"))
    write_csv(os.path.join(run_dir, "results.csv"), doc)


CSV_HEAD = ["model", "scenario", "size", "keepalive", "connections", "slow_kind", "slow_count",
            "cell_status", "cell_flags", "round", "repeat", "repeat_status", "starved",
            "server_exit"]


def csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    return "%.6g" % v if isinstance(v, float) else v


# one row per step and round of an open-loop cell: these columns, then the
# scalar metrics a step shares with a closed-loop repeat
STEP_CSV = ["step", "offered_rps", "achieved_rps", "goodput_rps", "lat_p9999_us",
            "fairness_jain", "little_expected", "little_observed", "little_ok", "client_bound",
            "knee_rps"]


def step_csv(c, step):
    little = step.get("little") or {}
    vals = dict(step, step=step.get("step", 0) + 1, little_expected=little.get("expected"),
                little_observed=little.get("observed"), little_ok=little.get("ok"),
                knee_rps=c.get("knee_rps"))
    return [csv_value(vals.get(k)) for k in STEP_CSV]


def write_csv(path, doc):
    scen = {s["id"]: s for s in doc["scenarios"]}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEAD + SCALAR_METRICS + STEP_CSV)
        for c in doc["cells"]:
            s = scen[c["scenario"]]
            slow = s["slow"] or {}
            for r in c["repeats"] or [{}]:
                for st in r.get("steps") or [None]:
                    row = [c["model"], c["scenario"], s["size"], int(s["keepalive"]),
                           st["connections"] if st else s["connections"], slow.get("kind", ""),
                           slow.get("count", ""), c["status"], " ".join(c.get("flags", [])),
                           r.get("round", ""), r.get("repeat", ""),
                           (st or r).get("status", ""), csv_value((st or r).get("starved")),
                           (st or r).get("server_exit", "")]
                    w.writerow(row + [csv_value((st or r).get(k)) for k in SCALAR_METRICS] +
                               (step_csv(c, st) if st else [""] * len(STEP_CSV)))
