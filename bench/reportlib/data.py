"""results.json, read and checked: schema versions 1 and 2 (bench/README.md).

Everything the report prints comes through this module, so the rules for
what a cell's value is live here: the median over rounds, the min-max range
across rounds, null when a cell failed or a counter was unavailable (never
0), and whether a cell is clean enough to be ranked.
"""

import json
import math
import os
import statistics
from collections import namedtuple

from .colours import palette

SCHEMA = "c10k-bench-results"
VERSIONS = (1, 2)
STATUSES = ("ok", "degraded", "failed")
FLAGS = ("starved", "noisy", "client-bound")
# Version 1 files carry no flags; "noisy" is derived there with version 2's
# rule (spread over rounds above 10%), the only flag version 1 can support.
NOISY_SPREAD_PCT = 10.0

Stat = namedtuple("Stat", "min median max n")


class UsageError(Exception):
    """Bad input. The command prints it as one line and exits with status 2."""


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --- loading and checking ----------------------------------------------------


def load(run_dir):
    """The checked results.json of RUN_DIR, or UsageError saying what is wrong."""
    if os.path.isfile(run_dir):
        raise UsageError("%s is a file; give the run directory that holds results.json "
                         "(c10k report %s)" % (run_dir, os.path.dirname(run_dir) or "."))
    path = os.path.join(run_dir, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError("%s is not valid JSON: %s" % (path, e)) from None
    check(doc, path)
    return doc


def check(doc, path):
    """Raise UsageError unless doc has the shape the report reads."""
    def bad(what):
        raise UsageError("%s: %s" % (path, what))

    if not isinstance(doc, dict):
        bad("not a c10k bench results file (the top level is a JSON %s, not an object)"
            % type(doc).__name__.replace("dict", "object").replace("list", "array"))
    if doc.get("schema") != SCHEMA:
        bad("not a c10k bench results file (\"schema\" is %s, not \"%s\")"
            % (json.dumps(doc.get("schema")), SCHEMA))
    if doc.get("schema_version") not in VERSIONS:
        bad("schema version %s; this report reads versions %s"
            % (json.dumps(doc.get("schema_version")), " and ".join(map(str, VERSIONS))))
    for key, typ, name in (("run", dict, "an object"), ("models", list, "an array"),
                           ("scenarios", list, "an array"), ("cells", list, "an array")):
        if key not in doc:
            bad("no \"%s\" key" % key)
        if not isinstance(doc[key], typ):
            bad("\"%s\" is not %s" % (key, name))
    for key in ("environment", "tools"):
        if key in doc and not isinstance(doc[key], dict):
            bad("\"%s\" is not an object" % key)
    if not all(isinstance(m, str) for m in doc["models"]):
        bad("\"models\" holds something other than names")
    ids = check_scenarios(doc["scenarios"], bad)
    for i, c in enumerate(doc["cells"]):
        check_cell(c, i, ids, bad)


def check_scenarios(scenarios, bad):
    ids = set()
    for i, s in enumerate(scenarios):
        if not isinstance(s, dict) or not isinstance(s.get("id"), str):
            bad("scenario %d has no \"id\"" % i)
        if s["id"] in ids:
            bad("scenario \"%s\" appears twice" % s["id"])
        ids.add(s["id"])
        for key in ("label", "series", "kind", "link"):
            if s.get(key) is not None and not isinstance(s[key], str):
                bad("scenario \"%s\": \"%s\" is not text" % (s["id"], key))
        for key in ("connections", "size", "slo_p99_us"):
            if s.get(key) is not None and not is_num(s[key]):
                bad("scenario \"%s\": \"%s\" is not a number" % (s["id"], key))
        if s.get("slow") is not None and not (isinstance(s["slow"], dict)
                                              and is_num(s["slow"].get("count"))):
            bad("scenario \"%s\": \"slow\" needs a count" % s["id"])
    return ids


def check_cell(c, i, ids, bad):
    if not isinstance(c, dict) or not isinstance(c.get("model"), str):
        bad("cell %d has no \"model\"" % i)
    where = "cell %s/%s" % (c["model"], c.get("scenario"))
    if c.get("scenario") not in ids:
        bad("%s: its scenario is not in \"scenarios\"" % where)
    if c.get("status") not in STATUSES:
        bad("%s: status %s is not one of %s" % (where, json.dumps(c.get("status")),
                                                 ", ".join(STATUSES)))
    for key, typ in (("repeats", list), ("steps", list), ("summary", dict), ("flags", list),
                     ("reasons", list)):
        if c.get(key) is not None and not isinstance(c[key], typ):
            bad("%s: \"%s\" has the wrong type" % (where, key))
    for r in c.get("repeats") or []:
        if not isinstance(r, dict):
            bad("%s: a repeat is not an object" % where)
    for s in c.get("steps") or []:
        if not isinstance(s, dict) or not is_num(s.get("offered_rps")):
            bad("%s: a step has no offered_rps" % where)
    for key, s in (c.get("summary") or {}).items():
        if s is not None and not (isinstance(s, dict)
                                  and all(is_num(s.get(k)) for k in ("min", "median", "max"))):
            bad("%s: summary of %s is not {min, median, max}" % (where, key))


# --- models ------------------------------------------------------------------

# What each model is, in the words of the lecture notes: who waits for the
# next request, and how. Variants are "MODEL:flag=value+flag".
ARCHITECTURE = {
    "threaded": "thread per connection",
    "prefork": "process per connection",
    "epoll": "event loop",
    "libevent": "event loop",
    "libuv": "event loop",
    "uring": "event loop",
    "coro": "coroutines",
    "nginx": "event loop",
}
REFERENCES = ("nginx", "ceiling")


def base_model(name):
    return name.split(":", 1)[0]


def variant_flags(name):
    """{flag: value or True} of a variant name like 'threaded:pool=64+x'."""
    if ":" not in name:
        return {}
    out = {}
    for item in name.split(":", 1)[1].split("+"):
        k, _, v = item.partition("=")
        out[k] = v if v else True
    return out


def architecture(name):
    base = base_model(name)
    if base == "threaded" and "pool" in variant_flags(name):
        return "thread pool"
    return ARCHITECTURE.get(base)


# --- scenarios, cells, runs ----------------------------------------------------


class Scenario:
    def __init__(self, d):
        self.d = d
        self.id = d["id"]
        self.label = d.get("label") or d["id"]
        self.kind = d.get("kind") or "closed"
        self.link = d.get("link") or "loopback"
        self.size = d.get("size")
        self.keepalive = d.get("keepalive", True)
        self.connections = int(d.get("connections") or 0)
        self.slow = d.get("slow")
        self.series = d.get("series") or self.label
        self.slo_us = d.get("slo_p99_us")
        self.offered_rps = d.get("offered_rps") if is_num(d.get("offered_rps")) else None

    @property
    def open_loop(self):
        return self.kind != "closed"

    @property
    def crossover(self):
        """One offered rate over more and more connections (steps differ in
        connections, not in rate)."""
        return self.kind == "crossover"

    @property
    def held(self):
        """Connections held open during the window: the load plus slow clients."""
        return self.connections + int(self.slow["count"] if self.slow else 0)

    @property
    def group_key(self):
        slow = (self.slow.get("kind"), self.slow["count"]) if self.slow else None
        # a crossover is a question of its own (connections, not rate): its own
        # table; so is each disk speed of the cold-cache profile
        cold = self.d.get("cold")
        cold = (cold.get("disk_iops"), cold.get("dist")) if isinstance(cold, dict) else None
        return (self.size, bool(self.keepalive), slow, self.link, self.crossover, cold)

    @property
    def short(self):
        """The scenario within its group: '256 conns' or '256 conns, open loop'."""
        s = "%d conns" % self.connections
        return s + (", open loop" if self.kind == "latency" else
                    ", %s" % self.kind if self.open_loop else "")


NUMERIC_SUFFIXES = ("_us", "_rps", "_per_req", "_kib", "_total", "_util", "_jain")


def numeric_step(step):
    """A step whose metrics are numbers or None (junk in one field must not
    stop the report; the field reads as unavailable)."""
    out = dict(step)
    for k, v in step.items():
        if k.endswith(NUMERIC_SUFFIXES) or k in ("requests", "threads_max", "connections",
                                                 "pct_of_peak", "fairness_jain_ideal"):
            out[k] = v if is_num(v) else None
    return out


def stat_of(values):
    vals = [v for v in values if is_num(v)]
    if not vals:
        return None
    return Stat(min(vals), statistics.median(vals), max(vals), len(vals))


class Cell:
    def __init__(self, d, scenario, version):
        self.d = d
        self.model = d["model"]
        self.scenario = scenario
        self.status = d["status"]
        self.reasons = [str(r) for r in d.get("reasons") or []]
        self.repeats = [r for r in d.get("repeats") or [] if r.get("status") != "failed"]
        self.summary = d.get("summary") or {}
        self.steps = sorted((numeric_step(s) for s in d.get("steps") or []),
                            key=lambda s: (s["offered_rps"], s.get("connections") or 0))
        self.knee = d.get("knee_rps") if is_num(d.get("knee_rps")) else None
        self.peak_closed = d.get("peak_closed_rps") if is_num(d.get("peak_closed_rps")) else None
        self.flags = [f for f in d.get("flags") or [] if isinstance(f, str)]
        if version < 2 and self.spread_pct is not None and self.spread_pct > NOISY_SPREAD_PCT:
            self.flags.append("noisy")

    @property
    def failed(self):
        return self.status == "failed"

    @property
    def clean(self):
        """Rankable: finished without errors and not flagged."""
        return self.status == "ok" and not self.flags

    @property
    def rounds(self):
        return len(self.repeats)

    def stat(self, key):
        """Stat(min, median, max, n) over rounds, or None when unavailable."""
        if self.failed:
            return None
        s = self.summary.get(key)
        if isinstance(s, dict):
            return Stat(s["min"], s["median"], s["max"], self.rounds or 1)
        return stat_of(r.get(key) for r in self.repeats)

    def med(self, key):
        s = self.stat(key)
        return None if s is None else s.median

    def counter_per_req(self, name):
        """A model counter (model_counters, per window) divided by requests."""
        if self.failed:
            return None
        vals = []
        for r in self.repeats:
            c = r.get("model_counters")
            if isinstance(c, dict) and is_num(c.get(name)) and is_num(r.get("requests")) \
                    and r["requests"] > 0:
                vals.append(c[name] / r["requests"])
        return stat_of(vals)

    def counters(self):
        names = []
        for r in self.repeats:
            for k in (r.get("model_counters") or {}):
                if k not in names:
                    names.append(k)
        return names

    @property
    def spread_pct(self):
        v = self.d.get("spread_pct")
        if is_num(v):
            return v
        s = self.stat("rps")
        if s is None or s.n < 2 or s.median <= 0:
            return None
        return 100.0 * (s.max - s.min) / s.median

    def knee_step(self):
        """The step at the knee (highest offered rate with p99 under the SLO)."""
        if self.knee is None:
            return None
        return min(self.steps, key=lambda s: abs(s["offered_rps"] - self.knee), default=None)

    def ref_step(self):
        """The step that stands for an open-loop cell: the knee step, else
        the lowest step; in a crossover, the one with the most connections."""
        if self.scenario.crossover:
            return self.steps[-1] if self.steps else None
        return self.knee_step() or (self.steps[0] if self.steps else None)

    def step_value(self, key):
        """A server metric of an open-loop cell, at its ref_step()."""
        st = self.ref_step()
        v = st.get(key) if st else None
        return v if is_num(v) else None

    def step_at(self, connections):
        """The crossover step with this many connections, or None."""
        return next((s for s in self.steps if s.get("connections") == connections), None)


class Group:
    """Scenarios that differ only in connections or load kind: one ranked table."""

    def __init__(self, key, scenarios):
        self.key = key
        self.closed = sorted((s for s in scenarios if not s.open_loop),
                             key=lambda s: s.connections)
        self.open = [s for s in scenarios if s.open_loop]
        self.crossover = bool(self.open) and all(s.crossover for s in self.open) \
            and not self.closed
        first = (self.closed or self.open)[0]
        self.label = first.label if self.crossover else first.series
        if first.link != "loopback" and first.link not in self.label:
            self.label += ", " + first.link
        self.id = "g-" + first.id

    @property
    def scenarios(self):
        return self.closed + self.open


class Run:
    def __init__(self, doc, path=""):
        self.doc = doc
        self.path = path
        self.version = doc["schema_version"]
        self.info = doc["run"]
        self.id = str(self.info.get("id") or "?")
        self.settings = self.info.get("settings") if isinstance(self.info.get("settings"),
                                                                 dict) else {}
        self.scenarios = [Scenario(s) for s in doc["scenarios"]]
        self.by_id = {s.id: s for s in self.scenarios}
        self.cells = {}
        for c in doc["cells"]:
            self.cells[(c["model"], c["scenario"])] = Cell(c, self.by_id[c["scenario"]],
                                                           self.version)
        self.models = [m for m in doc["models"]]
        for m, _ in self.cells:
            if m not in self.models:
                self.models.append(m)
        self.colours = palette(self.models)

    def cell(self, model, sid):
        return self.cells.get((model, sid))

    def cells_of(self, sid):
        return [self.cells[(m, sid)] for m in self.models if (m, sid) in self.cells]

    def groups(self):
        keys, members = [], {}
        for s in self.scenarios:
            if s.group_key not in members:
                keys.append(s.group_key)
                members[s.group_key] = []
            members[s.group_key].append(s)
        return [Group(k, members[k]) for k in keys]

    @property
    def rounds(self):
        st = self.settings
        for key in ("rounds", "repeat"):
            if is_num(st.get(key)):
                return int(st[key])
        return max((c.rounds for c in self.cells.values()), default=1)

    def server_cpus(self):
        cpus = self.settings.get("server_cpus")
        return len(cpus) if isinstance(cpus, list) and cpus else None
