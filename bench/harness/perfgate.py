"""The regression gate (`make perfgate`): per model, the costs that do not
move with the machine's noise, against a committed baseline.

Timings (req/s, latency, CPU per request) move by 20% from one run to the
next on a shared machine. What a model does per request does not:

    syscalls_nowait_per_req   perf raw_syscalls:sys_enter over the window,
                              per request completed, less the calls that
                              wait for events (counters.WAIT_SYSCALLS:
                              epoll_wait, io_uring_enter, poll, select ...)
    ctx_vol_per_req           voluntary context switches (the thread blocked)
                              per request, perf sched:sched_switch split by
                              prev_state, as the bench counts them
    idle_pss_bytes_per_conn   what the server's process tree grows by, in
                              anonymous PSS, per idle keep-alive connection
                              held (a request answered, then silence)

The waits are left out of the syscalls because how many a request costs
depends on how many requests each wait collects, which depends on the pace
of wrk against the server: uring's io_uring_enter came to 0.06 to 0.29 per
request from run to run, moving its total by 10%, while its other syscalls
stayed at 2.00 to 2.02. They are printed, and kept in the baseline, but not
gated.

Each model `c10k models` lists is measured as the bench measures it (the
harness's own server start, counters and load: cell.CellRunner, one worker,
server on CPU 0 and wrk on CPU 1): 1 KiB keep-alive at 64 connections, a
warm-up of 1 to 5 s that ends once the accept queue stays empty, then a 3 s
window. Memory is measured on a fresh server of its own, before any load:
PSS after start, then after 64 idle clients are answered and held (both read
once the tree has stopped changing), the difference divided by 64. Only the
anonymous part of PSS counts: file-backed pages (libc's text) are split
with every other process on the machine that maps the same file, so their
share moves with what else runs; heap, stacks and copy-on-write pages are
shared only inside the server's tree.

A model fails when a counter exceeds its baseline by more than 10%, or by
more than an absolute tolerance for counters that are near zero (an event
loop's voluntary switches per request), whichever allows more: ABS_TOL. A
model over its limit is measured again (RETRIES times) and the lowest value
of each counter counts, since a regression raises every run and noise only
some. A model in the baseline that `c10k models` no longer lists fails; a
model listed but not in the baseline is reported as "no baseline".

`--update` measures each model RUNS times and writes the median of each
counter to the baseline, with every run's value and its spread, which says
whether the counter is steady enough to gate on.
"""

import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

from . import counters as ct
from .cell import CellRunner
from .docroot import file_name, make_docroot, verify
from .loadgen import WRK_TIMEOUT_S
from .net import Net
from .plan import Plan, probe_binary, scenario
from .slowclients import SlowClients
from .util import KiB, REPO, UsageError, run_text
from .variants import Variant

BASELINE = os.path.join(REPO, "bench", "baseline.json")
SCHEMA = "c10k-perfgate-baseline"

SIZE, CONNECTIONS, IDLE_CONNECTIONS = 1 * KiB, 64, 64
WARMUP_MIN_S, WARMUP_MAX_S, WINDOW_S = 1.0, 5.0, 3
# Idle clients: every one answered within this long (prefork's pool grows
# at Apache's pace, 1, 2, 4 ... 32 workers a second, to hold 64).
IDLE_ANSWER_S = 30.0
# The tree is read once its anonymous PSS, processes and threads have not
# changed for IDLE_QUIET_S (longer than prefork's one-second maintenance
# tick, which forks or reaps spare workers), or after IDLE_SETTLE_MAX_S.
IDLE_QUIET_S, IDLE_SETTLE_MAX_S, IDLE_POLL_S = 1.5, 10.0, 0.1
# Timeouts long enough that no idle client is closed while it is counted.
IDLE_TIMEOUT_S = 60

# wrk errors (connections the server closed) tolerated in a window, as a
# share of its requests; more and the model is not measured as it runs.
MAX_ERROR_FRAC = 0.01

REL_TOL = 0.10
COUNTERS = [
    # (key, what, absolute tolerance, format)
    ("syscalls_nowait_per_req", "syscalls per request besides waits", 0.05, "%.3f"),
    # an event loop sleeps in at most one switch per wait: 0.003 to 0.04 per
    # request here, with the waits per request moving as above
    ("ctx_vol_per_req", "voluntary switches per request", 0.1, "%.4f"),
    ("idle_pss_bytes_per_conn", "bytes (PSS) per idle connection", 512, "%.0f"),
]
# Measured and kept in the baseline for reading, not gated (see above).
NOT_GATED = ("syscalls_wait_per_req",)
RETRIES = 2
UPDATE_RUNS = 3
# A counter is steady when its runs stay within 5% of their median, or,
# where the absolute tolerance is the larger margin (near zero), within half
# of that tolerance.
STEADY_SPREAD_PCT = 5.0


# --- pure parts: limits, verdicts, the baseline file ------------------------------------


def limit(base, abs_tol):
    """The most a counter may reach: 10% over its baseline, or the absolute
    tolerance over it, whichever is more (a near-zero baseline has no 10%)."""
    return max(base * (1.0 + REL_TOL), base + abs_tol)


def over_limit(base_counters, got):
    """[(key, what, value, baseline, limit)] of the counters above their limit."""
    out = []
    for key, what, abs_tol, _ in COUNTERS:
        if key not in base_counters:
            continue
        lim = limit(base_counters[key], abs_tol)
        if got.get(key) is not None and got[key] > lim:
            out.append((key, what, got[key], base_counters[key], lim))
    return out


def verdicts(baseline_models, measured, listed):
    """{model: (verdict, [lines])} with verdict ok, fail, no baseline or not
    measured. measured: {model: counters or {"error": why}}; listed: what
    `c10k models` lists (a baselined model that is not there fails)."""
    out = {}
    for m in listed:
        if m not in measured:
            out[m] = ("not measured", [])
        elif "error" in measured[m]:
            out[m] = ("fail", ["%s: could not be measured: %s" % (m, measured[m]["error"])])
        elif m not in baseline_models:
            out[m] = ("no baseline", ["%s: no baseline (not checked; make perfgate-update "
                                      "PERFGATE_MODELS=%s adds it)" % (m, m)])
        else:
            over = over_limit(baseline_models[m], measured[m])
            out[m] = ("fail" if over else "ok", [
                "%s: %s %s exceeds its limit %s (baseline %s, +%.0f%% or +%s)"
                % (m, what, fmt(key, v), fmt(key, lim), fmt(key, base), REL_TOL * 100,
                   fmt(key, abs_tol_of(key))) for key, what, v, base, lim in over])
    for m in baseline_models:
        if m not in listed:
            out[m] = ("fail", ["%s: in the baseline, but `c10k models` no longer lists it "
                               "(if it was removed on purpose, make perfgate-update drops it)"
                               % m])
    return out


def abs_tol_of(key):
    return next(t for k, _, t, _ in COUNTERS if k == key)


def fmt(key, v):
    if v is None:
        return "n/a"
    return next(f for k, _, _, f in COUNTERS if k == key) % v


def load_baseline(path):
    """{model: {counter: value}} from the baseline file; UsageError if it is
    unreadable or not a baseline (a missing file is an empty baseline only
    for --update)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise UsageError("cannot read the baseline %s: %s (make perfgate-update writes it)"
                         % (path, e.strerror)) from None
    except ValueError as e:
        raise UsageError("%s is not valid JSON: %s" % (path, e)) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or \
            not isinstance(doc.get("models"), dict):
        raise UsageError("%s is not a perfgate baseline (want \"schema\": \"%s\" and "
                         "\"models\")" % (path, SCHEMA))
    models = {}
    for m, c in doc["models"].items():
        if not isinstance(c, dict):
            raise UsageError("%s: model %s is not an object" % (path, m))
        vals = {k: c[k] for k, _, _, _ in COUNTERS if k in c}
        if not vals or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in vals.values()):
            raise UsageError("%s: model %s has no numeric counters (%s)"
                             % (path, m, ", ".join(k for k, _, _, _ in COUNTERS)))
        models[m] = vals
    return doc, models


def spread_pct(values):
    med = statistics.median(values)
    if len(values) < 2 or not med:
        return None
    return 100.0 * (max(values) - min(values)) / med


def steady(values, abs_tol):
    """Do a counter's runs stay close enough together to gate on?"""
    med = statistics.median(values)
    return max(values) - min(values) <= max(STEADY_SPREAD_PCT / 100.0 * abs(med), abs_tol / 2.0)


def rounded(key, v):
    return round(v) if key == "idle_pss_bytes_per_conn" else round(v, 4)


def baseline_doc(old_doc, runs_by_model, machine, replace_all):
    """The new baseline: each counter's median over its runs, with the runs.
    With replace_all, models not measured now are dropped; otherwise they
    are kept as they were."""
    models = {} if replace_all else dict((old_doc or {}).get("models") or {})
    for m, runs in runs_by_model.items():
        keys = [k for k, _, _, _ in COUNTERS] + [k for k in NOT_GATED if k in runs[0]]
        entry = {key: rounded(key, statistics.median(r[key] for r in runs)) for key in keys}
        entry["runs"] = {key: [rounded(key, r[key]) for r in runs] for key in keys}
        entry["spread_pct"] = {key: round(spread_pct(entry["runs"][key]) or 0.0, 1)
                               for key in keys}
        entry["recorded"] = machine["recorded"]
        models[m] = entry
    return {
        "schema": SCHEMA,
        "about": "The counts make perfgate checks (bench/README.md, The perfgate). Written by "
                 "make perfgate-update; each change is a commit that says why. "
                 "syscalls_wait_per_req is kept for reading, not gated.",
        "method": {"size": SIZE, "keepalive": True, "connections": CONNECTIONS,
                   "warmup_s": [WARMUP_MIN_S, WARMUP_MAX_S], "window_s": WINDOW_S,
                   "idle_connections": IDLE_CONNECTIONS, "workers": 1,
                   "server_cpus": [0], "client_cpus": "the others",
                   "tolerance": {"relative": REL_TOL,
                                 "absolute": {k: t for k, _, t, _ in COUNTERS}}},
        "machine": machine,
        "models": dict(sorted(models.items())),
    }


def write_baseline(path, doc):
    """JSON with each list of numbers on one line, so a change reads as one."""
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                  text)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


# --- measuring ---------------------------------------------------------------------------


class GateRun:
    """What cell.CellRunner reads of a run (run.Run), for the gate's one
    scenario: the document root, the plan, perf, the binary."""

    def __init__(self, binary, tmp, specs, perf):
        ncpu = os.cpu_count() or 1
        self.args = SimpleNamespace(port=None, server_host=None, client_host=None)
        self.binary = binary
        self.run_dir = tmp
        os.makedirs(os.path.join(tmp, "raw"), exist_ok=True)
        self.docroot = os.path.join(tmp, "docroot")
        self.digests = make_docroot(self.docroot, [SIZE])
        self.scenario = scenario(SIZE, True, CONNECTIONS)
        self.plan = Plan("perfgate", [self.scenario], specs, 1, 0, WARMUP_MAX_S, WINDOW_S,
                         workers=1, server_cpus=[0],
                         client_cpus=[c for c in range(ncpu) if c != 0] or [0],
                         keepalive_timeout=IDLE_TIMEOUT_S, header_timeout=IDLE_TIMEOUT_S,
                         warmup_min=WARMUP_MIN_S)
        self.tools = {"perf": perf}
        self.stats_file_supported = False
        self.interrupted = False
        self.children = set()
        self.wrk_timeout_s = WRK_TIMEOUT_S
        self.net = Net(self, self.args)  # loopback only: no namespaces, no hosts
        self.runner = CellRunner(self)
        self.machine = ct.MachineSampler()
        self.attempt = 0


def measure_load(gr, spec):
    """(syscalls and voluntary switches per request, None) or (None, why)."""
    gr.attempt += 1
    rep = gr.runner.run_round(spec, gr.scenario, gr.attempt, gr.machine.sample())
    if rep["status"] == "failed":
        return None, rep["failure"]
    warnings = []
    if rep["status"] == "degraded":
        why = rep.get("degraded_by", [])
        # A few connections closed under wrk (prefork retiring a spare worker
        # that had just accepted one) leave the counts per request as they
        # are; anything else means the server was not measured as it runs.
        if not (rep["requests"] and rep["errors_total"] <= MAX_ERROR_FRAC * rep["requests"]
                and all(w.startswith("wrk errors") for w in why)):
            return None, "degraded: " + "; ".join(why)
        warnings += why
    if rep.get("syscalls") is None:
        return None, "syscalls unavailable: %s" % rep.get("syscalls_unavailable")
    if rep.get("syscalls_wait") is None:
        return None, ("the calls that wait for events cannot be told apart on %s (add its "
                      "syscall numbers to counters.WAIT_SYSCALLS)" % os.uname().machine)
    got = {"syscalls_nowait_per_req": (rep["syscalls"] - rep["syscalls_wait"]) / rep["requests"],
           "ctx_vol_per_req": rep["ctx_vol_per_req"],
           "syscalls_wait_per_req": rep["syscalls_wait_per_req"],
           "requests": rep["requests"], "rps": rep["rps"]}
    if rep.get("starved"):
        warnings.append("starved: " + "; ".join(rep.get("starved_by", [])))
    if warnings:
        got["warning"] = "; ".join(warnings)
    return got, None


def settled_snapshot(pid):
    """The tree's snapshot once it has stopped changing: (snapshot, settled)."""
    last, since = None, time.monotonic()
    deadline = since + IDLE_SETTLE_MAX_S
    while True:
        snap = ct.proc_snapshot(pid, tasks=False)
        key = (snap["pss_anon_kib"], snap["procs"], snap["threads"])
        now = time.monotonic()
        if key != last:
            last, since = key, now
        elif now - since >= IDLE_QUIET_S:
            return snap, True
        if now >= deadline:
            return snap, False
        time.sleep(IDLE_POLL_S)


def wait_answered(slow, n, timeout):
    deadline = time.monotonic() + timeout
    while slow.answered() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return slow.answered()


def measure_idle(gr, spec):
    """(anonymous PSS bytes per idle keep-alive connection, None) or (None, why)."""
    if not ct.HAVE_PSS_ANON:
        return None, "no Pss_Anon in /proc/PID/smaps_rollup (Linux 5.4 or later)"
    side = gr.net.side(gr.scenario)
    srv = gr.runner.make_server(spec, side.free_port(), "idle", gr.scenario, side)
    slow = None
    try:
        why = srv.start() or verify(srv.port, [SIZE], gr.digests)
        if why:
            return None, "idle phase: %s" % why
        before, _ = settled_snapshot(srv.proc.pid)
        slow = SlowClients(srv.port, "idle", IDLE_CONNECTIONS, file_name(SIZE))
        slow.open_all()
        n = wait_answered(slow, IDLE_CONNECTIONS, IDLE_ANSWER_S)
        if n < IDLE_CONNECTIONS:
            return None, ("only %d of %d idle clients answered within %.0f s"
                          % (n, IDLE_CONNECTIONS, IDLE_ANSWER_S))
        after, settled = settled_snapshot(srv.proc.pid)
        if slow.alive() < IDLE_CONNECTIONS:
            return None, "the server closed %d idle clients" % (IDLE_CONNECTIONS - slow.alive())
        if not settled:
            return None, "memory still changing %.0f s after the idle clients were answered" \
                % IDLE_SETTLE_MAX_S
        grown = max(0, after["pss_anon_kib"] - before["pss_anon_kib"])
        return grown * 1024.0 / IDLE_CONNECTIONS, None
    finally:
        if slow is not None:
            slow.close_all()
        srv.stop()


def measure(gr, spec):
    """Every gated counter of one model, or {"error": why}."""
    idle, why = measure_idle(gr, spec)
    if why:
        return {"error": why}
    got, why = measure_load(gr, spec)
    if why:
        return {"error": why}
    got["idle_pss_bytes_per_conn"] = idle
    return got


def lowest(runs):
    """Per counter, the lowest value over runs (a regression raises all)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = dict(ok[-1])
    for key, _, _, _ in COUNTERS:
        out[key] = min(r[key] for r in ok)
    return out


# --- the command ---------------------------------------------------------------------------


def parse_args(argv):
    import argparse

    p = argparse.ArgumentParser(
        prog="bench/perfgate.py",
        description="Check each model's syscalls and voluntary switches per request and bytes "
                    "per idle connection against bench/baseline.json (bench/README.md, The "
                    "perfgate). Exit 0: within the limits; 1: a model over its limit, one "
                    "that could not be measured, or a baselined model that is gone; 2: "
                    "usage or environment.")
    p.add_argument("--bin", required=True, help="the c10k binary")
    p.add_argument("--baseline", default=BASELINE, help="default bench/baseline.json")
    p.add_argument("--models", help="comma-separated models to measure (default: every model "
                                    "c10k models lists)")
    p.add_argument("--update", action="store_true",
                   help="measure and write the baseline instead of checking it")
    p.add_argument("--runs", type=int, default=UPDATE_RUNS,
                   help="--update: runs per model; the baseline is their median (%d)"
                        % UPDATE_RUNS)
    p.add_argument("--retries", type=int, default=RETRIES,
                   help="re-measure a model over its limit this many times (%d)" % RETRIES)

    def error(message):
        raise UsageError(message)

    p.error = error
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20:
        raise UsageError("--runs %d: want 1 to 20" % args.runs)
    if not 0 <= args.retries <= 10:
        raise UsageError("--retries %d: want 0 to 10" % args.retries)
    return args


def pick_models(text, listed):
    if not text:
        return list(listed)
    out = []
    for m in text.split(","):
        if m not in listed:
            raise UsageError("--models: unknown model '%s'; c10k models lists: %s"
                             % (m, ", ".join(listed)))
        if m not in out:
            out.append(m)
    return out


def row(m, got, verdict=""):
    if "error" in got:
        return "  %-10s %s" % (m, "ERROR: " + got["error"])
    cells = "  ".join("%s %s" % (fmt(k, got[k]), short) for (k, _, _, _), short in
                      zip(COUNTERS, ("syscalls/req besides waits", "vol sw/req", "B/idle conn")))
    return "  %-10s %s  (not gated: %.3f waits/req, %.0f req/s)%s%s" % (
        m, cells, got["syscalls_wait_per_req"], got["rps"], "  " + verdict if verdict else "",
        "  [%s]" % got["warning"] if got.get("warning") else "")


def machine_record(binary_path):
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"recorded": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu_model": cpu, "cores": os.cpu_count(), "kernel": os.uname().release,
            "git_commit": run_text(["git", "-C", REPO, "rev-parse", "HEAD"]) or None}


def check(args, gr, models, baseline_models, listed):
    measured = {}
    for m in models:
        runs = [measure(gr, Variant(m, m))]
        measured[m] = runs[0]
        tries = 0
        while tries < args.retries and m in baseline_models and (
                "error" in measured[m] or over_limit(baseline_models[m], measured[m])):
            tries += 1
            print(row(m, runs[-1], "over its limit or failed: measuring again (%d of %d)"
                      % (tries, args.retries)))
            sys.stdout.flush()
            runs.append(measure(gr, Variant(m, m)))
            measured[m] = lowest(runs)
        v = verdicts({m: baseline_models[m]} if m in baseline_models else {}, {m: measured[m]},
                     [m])[m]
        print(row(m, measured[m], v[0] + (" (lowest of %d runs)" % len(runs)
                                          if len(runs) > 1 else "")))
        sys.stdout.flush()
    result = verdicts(baseline_models, measured, listed)
    failed = [(m, lines) for m, (v, lines) in result.items() if v == "fail"]
    for m, (v, lines) in result.items():
        if v == "no baseline":
            print("perfgate: " + lines[0])
    for m, lines in failed:
        for line in lines:
            print("perfgate: FAIL %s" % line)
    print("perfgate: %s (%d measured, %d over their limits or unmeasurable, %d gone from "
          "c10k models)" % ("FAILED" if failed else "passed", len(measured),
                             sum(m in measured for m, _ in failed),
                             sum(m not in listed for m, _ in failed)))
    return 1 if failed else 0


def update(args, gr, models, old_doc, listed):
    runs_by_model, unsteady = {}, []
    for m in models:
        runs = []
        for i in range(args.runs):
            got = measure(gr, Variant(m, m))
            print(row(m, got, "run %d of %d" % (i + 1, args.runs)))
            sys.stdout.flush()
            if "error" in got:
                print("perfgate: %s could not be measured (%s); the baseline is not written"
                      % (m, got["error"]), file=sys.stderr)
                return 1
            runs.append(got)
        runs_by_model[m] = runs
        for key, what, abs_tol, _ in COUNTERS:
            vals = [r[key] for r in runs]
            if not steady(vals, abs_tol):
                unsteady.append("%s %s moved from %s to %s between runs (more than %.0f%% of "
                                "the median and more than %s)"
                                % (m, what, fmt(key, min(vals)), fmt(key, max(vals)),
                                   STEADY_SPREAD_PCT, fmt(key, abs_tol / 2.0)))
    doc = baseline_doc(old_doc, runs_by_model, machine_record(args.bin), not args.models)
    dropped = sorted(set((old_doc or {}).get("models") or {}) - set(doc["models"]))
    write_baseline(args.baseline, doc)
    print("perfgate: wrote %s (%s%s)" % (args.baseline, ", ".join(sorted(runs_by_model)),
                                          "; dropped: " + ", ".join(dropped) if dropped else ""))
    for line in unsteady:
        print("perfgate: NOT STEADY: %s: check before committing" % line)
    print("perfgate: commit %s with a message that says why the baseline changed"
          % os.path.relpath(args.baseline, REPO))
    return 0


def main(argv):
    try:
        args = parse_args(argv)
        if not os.access(args.bin, os.X_OK):
            raise UsageError("--bin %s is not an executable c10k binary (run make)" % args.bin)
        binary = probe_binary(os.path.abspath(args.bin))
        models = pick_models(args.models, binary.models)
        if args.update and not os.path.exists(args.baseline):
            old_doc, baseline_models = None, {}
        else:
            old_doc, baseline_models = load_baseline(args.baseline)
        perf = ct.check_perf()
        if not perf[0]:
            raise UsageError("perf cannot count here, so the gate cannot check anything: %s"
                             % perf[1])
        print("perfgate: %s; %d KiB keep-alive at %d connections, warm-up %g-%g s, window "
              "%d s; %d idle connections; limits: +%.0f%% or %s"
              % (", ".join(models), SIZE // KiB, CONNECTIONS, WARMUP_MIN_S, WARMUP_MAX_S,
                 WINDOW_S, IDLE_CONNECTIONS, REL_TOL * 100,
                 ", ".join("+%s %s" % (t, what) for _, what, t, _ in COUNTERS)))
        sys.stdout.flush()
        with tempfile.TemporaryDirectory(prefix="c10k-perfgate-") as tmp:
            gr = GateRun(binary, tmp, [Variant(m, m) for m in models], perf)
            if args.update:
                return update(args, gr, models, old_doc, binary.models)
            return check(args, gr, models, baseline_models, binary.models)
    except UsageError as e:
        print("perfgate: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nperfgate: interrupted", file=sys.stderr)
        return 130
