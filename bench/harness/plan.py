"""Profiles, sizes, scenarios, servers and rounds: what a run will do, in
which order, and about how long it takes (`c10k bench --dry-run`).

Rounds are randomized multiple interleaved trials (Abedi & Brecht, ICPE '17):
a run is R rounds; round r visits, for each scenario, every server in round
r's own random order. A server that happens to run while the machine is busy
is then busy in one round, not in all of them, and the spread over rounds
shows it. The order comes from a seeded generator, and the seed is recorded,
so `--seed` reproduces a run's order exactly.
"""

import os
import random
import re
import subprocess
import sys
from collections import namedtuple

from . import coldcache, ladder, netns, refs
from .net import link_name, link_suffix
from .util import (GiB, KiB, MiB, UsageError, cpus_text, default_out, fmt_duration, fmt_seconds,
                   parse_cpus, parse_int_list)
from .variants import Variant, parse_models, serve_help

# Per cell besides warm-up and window: start, verify, starting and ending
# wrk twice, reading the counters, stop. Measured on 2 cores: about 0.5 s.
CELL_OVERHEAD_S = 0.5
# A warm-up ends once the server keeps up (cell.Settled): about 0.4 s for
# most servers; prefork's growing pool takes the whole warm-up.
WARMUP_SETTLED_S = 0.4
SLOW_CLIENTS_S = 1.0   # connecting and releasing the slow clients
# One open-loop step besides the generator's warm-up and window: start and
# verify the server, start c10k load, read its JSON, stop the server; and
# per connection: connecting, a thread or process for the per-connection
# models, closing. On the shared 2-core development machine (load average
# about 30) the latency profile took 7m22s against 6m30s planned, the
# crossover 2m55s against 2m54s.
OPEN_STEP_OVERHEAD_S = 1.0
OPEN_STEP_PER_CONN_S = 0.0003
# A cold-cache cell also waits until the server reads nothing (0.25 s),
# evicts the document root and reads its residency with mincore twice:
# 22,200 files took 1.7 to 2.4 s on 2 cores at load average 10 and more.
COLD_CELL_S = 2.5
COLD_ROOT_S_PER_GIB = 40.0  # writing the cold root the first time, and syncing it
SETUP_S = 2.0          # tool checks, environment record, document root
REPORT_S = 5.0         # c10k report (gnuplot charts)

# A scenario is what the load generator does: file size, keep-alive or
# close, connections, and optionally slow clients held open beside it.
# kind "closed" is wrk (each connection waits for its answer); link
# "loopback" is 127.0.0.1. Later profiles add other kinds and links.
PROFILES = {
    "quick": {
        "about": "every model + nginx: 1 KiB keep-alive at 16 and 256 connections, "
                 "1 KiB Connection: close at 64, 1 MiB keep-alive at 16; 3 rounds",
        "scenarios": [(1 * KiB, True, 16, None), (1 * KiB, True, 256, None),
                      (1 * KiB, False, 64, None), (1 * MiB, True, 16, None)],
        "warmup": 1, "duration": 2, "rounds": 3,
    },
    "full": {
        "about": "connections 1..4096 x sizes 128 B..16 MiB x keep-alive and close, "
                 "every model + threaded:pool=64, 3 rounds",
        "sizes": [128, 4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB],
        "connections": [1, 16, 64, 256, 1024, 4096],
        "modes": [True, False],
        "variants": ["threaded:pool=64"],
        "warmup": 2, "duration": 10, "rounds": 3,
    },
    "c10k": {
        "about": "10,000 concurrent keep-alive connections on a 1 KiB file",
        "scenarios": [(1 * KiB, True, 10000, None)],
        "warmup": 2, "duration": 10, "rounds": 1,
    },
    "links": {
        "about": "1 KiB and 1 MiB keep-alive at 100 and 1,000 connections, on loopback, on a "
                 "veth pair between two network namespaces at full speed, and on the veth "
                 "shaped to 100 Mbit/s (needs root and iproute2)",
        "sizes": [1 * KiB, 1 * MiB], "connections": [100, 1000], "modes": [True],
        "links": ["loopback", "veth", "veth 100mbit"],
        "warmup": 1, "duration": 5, "rounds": 1,
        # 1,000 clients sharing 100 Mbit/s wait seconds for a 1 MiB answer:
        # a latency to measure, not a timeout to count every 2 s
        "wrk_timeout_s": 30,
    },
    "latency": {
        "about": "open loop: for every model + nginx, a ladder of offered rates on 1 KiB "
                 "keep-alive at 256 connections, 10%..200% of each server's closed-loop peak "
                 "measured first in the same run; the knee is the highest rate whose p99 "
                 "stays under --slo-p99",
        "scenarios": [(1 * KiB, True, 256, None)],
        "open": "latency", "schedule": "poisson",
        "warmup": 1, "duration": 3, "rounds": 1,
    },
    "crossover": {
        "about": "open loop: one offered rate (half of epoll's closed-loop peak in the same "
                 "run, or --rate) over 10, 100, 1,000 and 10,000 keep-alive connections on "
                 "1 KiB, so most connections are idle most of the time",
        "scenarios": [(1 * KiB, True, 256, None)],
        "open": "crossover", "schedule": "fixed",
        "warmup": 1, "duration": 3, "rounds": 1,
    },
    "cold-cache": {
        "about": "1.5 GiB of files (22,200) evicted from the page cache before every window, "
                 "64 keep-alive connections asking for them Zipf-spread, the disk throttled "
                 "to 200 and 5,000 read IOPS; every model + epoll:helpers=4 and libuv:fs-pool, "
                 "3 rounds",
        "scenarios": [(64 * KiB, True, 64, None)],
        "cold": True,
        "variants": ["epoll:helpers=4", "libuv:fs-pool"],
        "warmup": 1, "duration": 5, "rounds": 3,
    },
    "slow-clients": {
        "about": "wrk at 16 connections on 1 KiB while 100 or 1,000 idle or trickling "
                 "clients are held open",
        "scenarios": [(1 * KiB, True, 16, ("idle", 100)), (1 * KiB, True, 16, ("idle", 1000)),
                      (1 * KiB, True, 16, ("trickle", 100)),
                      (1 * KiB, True, 16, ("trickle", 1000))],
        "warmup": 1, "duration": 5, "rounds": 1,
        # Slow clients must outlive the window: no server may time them out.
        "keepalive_timeout": 60, "header_timeout": 60,
    },
}

REFERENCES = tuple(refs.REFERENCES)  # in every run, after the models

# --- sizes -------------------------------------------------------------------

SIZE_UNITS = {"": 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB}
MAX_SIZE = 64 * GiB
# Spellings that look like a unit but are not one of ours, and what was meant.
SIZE_SUGGEST = {"b": "B", "k": "KiB", "kb": "KiB", "kib": "KiB", "m": "MiB", "mb": "MiB",
                "mib": "MiB", "g": "GiB", "gb": "GiB", "gib": "GiB", "bytes": "B"}


def size_label(n):
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return "%dB" % n


def parse_size(text, flag="--sizes"):
    """'128', '128B', '4KiB', '1MiB', '2GiB' -> bytes. Only units that exist:
    '1KB' (a kilobyte is 1000 bytes, a KiB 1024) is refused with a suggestion."""
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not m:
        raise UsageError("%s: '%s' is not a size (e.g. 128, 4KiB, 1MiB, 2GiB)" % (flag, text))
    num, unit = m.groups()
    if unit not in SIZE_UNITS:
        hint = SIZE_SUGGEST.get(unit.lower())
        if hint:
            raise UsageError("%s: '%s': no unit '%s' here; did you mean %s%s? (units: B, KiB, "
                             "MiB, GiB)" % (flag, text.strip(), unit, num, hint))
        raise UsageError("%s: '%s' is not a size (units: B, KiB, MiB, GiB)" % (flag, text))
    n = int(num) * SIZE_UNITS[unit]
    if not 1 <= n <= MAX_SIZE:
        raise UsageError("%s: %s is out of range (1 B to %s)" % (flag, text.strip(),
                                                                 size_label(MAX_SIZE)))
    return n


# --- scenarios ---------------------------------------------------------------


def scenario(size, keepalive, conns, slow=None, kind="closed", link="loopback", cold=None):
    """A scenario; cold: its cold-cache settings (cold_plan()), or None."""
    sid = "%s-%s-c%d" % (size_label(size), "ka" if keepalive else "close", conns)
    label = "%s %s, %d conns" % (size_label(size), "keep-alive" if keepalive else
                                 "Connection: close", conns)
    series = "%s %s" % (size_label(size), "keep-alive" if keepalive else "close")
    if slow:
        sid += "-%s%d" % slow
        label += " + %d %s clients" % (slow[1], slow[0])
        series += " + %d %s" % (slow[1], slow[0])
    if cold:
        disk = iops_text(cold["disk_iops"])
        sid = "cold-%s-%s-%s" % (cold["dist"], "unthrottled" if cold["disk_iops"] is None
                                 else "iops%d" % cold["disk_iops"], sid)
        series = "cold cache, %s disk (%s over %s files)" % (disk, dist_text(cold),
                                                             "{:,}".format(cold["files"]))
        label = "cold cache, %s disk, %d conns%s" % (disk, conns, "" if keepalive else
                                                     ", Connection: close")
    if link != "loopback":  # where the requests travelled (net.py)
        sid += link_suffix(link)
        label += ", " + link
        series += ", " + link
    return {"id": sid, "label": label, "series": series, "size": size,
            "size_label": size_label(size), "keepalive": keepalive, "connections": conns,
            "slow": {"kind": slow[0], "count": slow[1]} if slow else None,
            "kind": kind, "link": link, **({"cold": dict(cold)} if cold else {})}


def iops_text(iops):
    return "unthrottled" if iops is None else "{:,} IOPS".format(iops)


def dist_text(cold):
    return "uniform" if cold["dist"] == "uniform" else "Zipf s=%g" % cold["zipf_s"]


def parse_modes(text):
    modes = []
    for m in text.split(","):
        if m not in ("keepalive", "close"):
            raise UsageError("--modes: '%s': want keepalive or close" % m)
        modes.append(m == "keepalive")
    return modes


def make_scenarios(prof, sizes=None, connections=None, modes=None, links=None, cold=()):
    """The profile's scenarios; --sizes, --connections or --modes (text or
    None) replace its list with their cross product. Each is run on each of
    the profile's links (default loopback), or on `links` when given
    (--netns, --link-rate, --netem, --server-host, --client-host). cold: the
    cold-cache settings, one per disk speed (cold_plan()); each scenario is
    run on each."""
    base = prof.get("scenarios")
    if base is None or sizes or connections or modes:
        sz = ([parse_size(x) for x in sizes.split(",")] if sizes else
              prof.get("sizes") or sorted({s[0] for s in base}))
        cs = (parse_int_list("--connections", connections, 1, 100000) if connections else
              prof.get("connections") or sorted({s[2] for s in base}))
        ms = parse_modes(modes) if modes else (prof.get("modes") or
                                               sorted({s[1] for s in base}, reverse=True))
        slows = sorted({s[3] for s in base}, key=str) if base else [None]
        base = [(s, k, c, w) for w in slows for s in sz for k in ms for c in cs]
    out, seen = [], set()
    for link in links or prof.get("links") or ["loopback"]:
        for args in base:
            for c in cold or [None]:
                sc = scenario(*args, link=link, cold=c)
                if sc["id"] not in seen:  # --sizes 1KiB,1024 names one file
                    seen.add(sc["id"])
                    out.append(sc)
    return out


# --- the cold-cache settings ------------------------------------------------------

COLD_FLAGS = ("disk_iops", "cache_limit", "cold_files", "dist")


def parse_iops(text):
    """'200,5000' or 'unthrottled' (or 0) -> [200, 5000] / [None]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part in ("unthrottled", "none", "0"):
            v = None
        else:
            try:
                v = int(part)
            except ValueError:
                raise UsageError("--disk-iops: '%s' is not a number of read I/Os per second "
                                 "(or 'unthrottled')" % part) from None
            if not 1 <= v <= 10000000:
                raise UsageError("--disk-iops: %d is out of range (1 to 10000000)" % v)
        if v not in out:
            out.append(v)
    return out


def parse_cache_limit(text):
    """--cache-limit: a size, or 'none' (no memory cgroup)."""
    if text.strip() == "none":
        return None
    n = parse_size(text, "--cache-limit")
    if n < 16 * MiB:
        raise UsageError("--cache-limit %s: want at least 16MiB (the server itself lives in "
                         "it too), or none" % text)
    return n


def cold_plan(args, prof):
    """(one cold-cache setting per disk speed, the ColdSetup, notes) for the
    cold-cache profile; ([], None, []) otherwise."""
    given = [f for f in COLD_FLAGS if getattr(args, f, None) is not None]
    if not prof.get("cold"):
        if given:
            raise UsageError("--%s is for --profile cold-cache only" % given[0].replace("_", "-"))
        return [], None, []
    iops = parse_iops(args.disk_iops) if args.disk_iops else list(coldcache.DEFAULT_IOPS)
    limit = (parse_cache_limit(args.cache_limit) if args.cache_limit is not None
             else coldcache.DEFAULT_CACHE_LIMIT)
    files = args.cold_files if args.cold_files is not None else coldcache.FULL_FILES
    if not 3 <= files <= 1000000:
        raise UsageError("--cold-files %d: want 3 to 1000000" % files)
    dist = args.dist or "zipf"
    if args.server_host or args.client_host:
        raise UsageError("--profile cold-cache evicts, throttles and measures the disk of this "
                         "machine: it does not take --server-host or --client-host")
    base = os.path.abspath(args.out or default_out())
    setup = coldcache.ColdSetup(base, files, limit).probe()
    notes = []
    if not setup.cgroups.can_throttle and any(i is not None for i in iops):
        notes.append("SKIP the throttled disk (%s): %s. The unthrottled disk is run instead."
                     % (", ".join(iops_text(i) for i in iops if i is not None),
                        setup.cgroups.disk_why))
        iops = [None]
    if setup.cgroups.memory_why and limit is not None:
        notes.append("the page cache is not limited (%s): the root can warm up during a "
                     "window, which resident_end_frac shows" % setup.cgroups.memory_why)
    elif limit is not None and limit >= setup.root.bytes:
        notes.append("--cache-limit %s is not below the root's %s: it can warm up fully"
                     % (size_label(limit), size_label(setup.root.bytes)))
    cold = [{"disk_iops": i, "dist": dist, "zipf_s": 1.0, "files": len(setup.root.entries),
             "bytes": setup.root.bytes, "paths_file": "paths-%s.txt" % dist} for i in iops]
    return cold, setup, notes


def pick_links(args, profile):
    """The links every scenario runs on, from the command line (None: the
    profile's). --link-rate and --netem imply --netns."""
    remote = args.server_host or args.client_host
    veth = args.netns or args.link_rate or args.netem is not None
    if remote and veth:
        raise UsageError("--netns, --link-rate and --netem put the load generator in a network "
                         "namespace here; they do not combine with --server-host or "
                         "--client-host")
    if remote:
        if PROFILES[profile].get("links"):
            raise UsageError("--profile %s compares links on this machine; with --server-host "
                             "or --client-host choose another profile" % profile)
        return ["network"]
    if not veth:
        return None
    rate = netem = None
    if args.link_rate:
        try:
            rate = netns.parse_rate(args.link_rate)
        except ValueError as e:
            raise UsageError("--link-rate: %s" % e) from None
    if args.netem is not None:
        try:
            netem = netns.netem_args(args.netem)
        except ValueError as e:
            raise UsageError("--netem: %s" % e) from None
    return [link_name("veth", rate, netem)]


# --- open-loop scenarios ------------------------------------------------------------


def open_options(args, prof):
    """The open-loop settings of a profile from the command line (None for a
    closed-loop profile); UsageError for what does not apply."""
    kind = prof.get("open")
    given = [f for f, v in (("--rates", args.rates), ("--rate", args.rate),
                            ("--ladder", args.ladder), ("--slo-p99", args.slo_p99),
                            ("--max-lag", args.max_lag)) if v is not None]
    if kind is None:
        if given:
            raise UsageError("%s: only for the open-loop profiles (--profile latency or "
                             "crossover)" % given[0])
        return None
    if args.modes and args.modes != "keepalive":
        raise UsageError("--modes %s: the open-loop generator keeps its connections alive; "
                         "--profile %s takes --modes keepalive only" % (args.modes, args.profile))
    wrong = {"latency": ("--rate", "for a fixed list of rates give --rates R1,R2,..."),
             "crossover": ("--rates", "the crossover runs one rate: give --rate R")}
    if kind == "latency" and args.ladder is not None and args.rates is not None:
        raise UsageError("--ladder and --rates: give one (--ladder scales the closed-loop peak, "
                         "--rates are fixed req/s)")
    for k, (flag, hint) in wrong.items():
        if kind == k and flag in given:
            raise UsageError("%s: not for --profile %s; %s" % (flag, k, hint))
    if kind == "crossover" and args.ladder is not None:
        raise UsageError("--ladder: not for --profile crossover (it runs one rate over "
                         "--connections)")
    opts = {"kind": kind, "schedule": prof["schedule"], "slo_us": ladder.DEFAULT_SLO_P99_US,
            "rates": None, "pcts": list(ladder.DEFAULT_LADDER_PCT), "rate": None}
    if args.slo_p99 is not None:
        opts["slo_us"] = _parsed("--slo-p99", ladder.parse_slo, args.slo_p99)
    # a ladder climbs: its steps run lowest first, each once
    if args.rates is not None:
        opts["rates"] = sorted(set(_parsed("--rates", ladder.parse_numbers, args.rates, 0.01,
                                           1e9, "req/s")))
    if args.ladder is not None:
        opts["pcts"] = sorted(set(_parsed("--ladder", ladder.parse_numbers, args.ladder, 0.1,
                                          1000, "% of the peak")))
    if args.rate is not None:
        rate = _parsed("--rate", ladder.parse_numbers, args.rate, 0.01, 1e9, "req/s")
        if len(rate) != 1:
            raise UsageError("--rate %s: one rate, e.g. --rate 40000" % args.rate)
        opts["rate"] = rate[0]
    opts.update(max_lag_settings(args.max_lag, opts["slo_us"]))
    return opts


def _parsed(flag, parse, text, *more):
    try:
        return parse(text, *more)
    except ValueError as e:
        raise UsageError("%s: %s" % (flag, e)) from None


def max_lag_settings(text, slo_us):
    """How late c10k load may be before its run is invalid (--max-lag):
    by default half the SLO (see bench/README.md, "Open-loop method")."""
    if text is None:
        return {"max_lag_s": slo_us / 2e6,
                "max_lag_rule": "half the p99 SLO: the generator's own p99 lateness (sending "
                                "after the intended time, or reading after the response "
                                "arrived) may take at most half of the latency budget a step "
                                "is judged by"}
    lag_us = _parsed("--max-lag", ladder.parse_slo, text)
    return {"max_lag_s": lag_us / 1e6, "max_lag_rule": "--max-lag %s" % text}


def open_scenario(base, kind, opts, conns_steps=None):
    """The open-loop scenario beside closed scenario base (the peak it is
    scaled from)."""
    sc = dict(base)
    sc.pop("only", None)
    sc.update(kind=kind, slo_p99_us=opts["slo_us"], schedule=opts["schedule"])
    if kind == "latency":
        sc["id"] = base["id"] + "-latency"
        sc["label"] = base["label"] + ", open-loop ladder"
        sc["rates"] = opts["rates"]
        sc["ladder_pct"] = None if opts["rates"] else opts["pcts"]
        sc["basis"] = None if opts["rates"] else base["id"]
        return sc
    sc["id"] = "%s-ka-crossover%s" % (base["size_label"], link_suffix(base["link"]))
    sc["connections"] = max(conns_steps)
    sc["connections_steps"] = conns_steps
    sc["label"] = "%s keep-alive, %s to %s conns at one rate (crossover)" % (
        base["size_label"], "{:,}".format(min(conns_steps)), "{:,}".format(max(conns_steps)))
    sc["offered_rps"] = opts["rate"]
    sc["basis"] = None if opts["rate"] else base["id"]
    sc["rate_basis"] = None if opts["rate"] else {
        "server": CROSSOVER_BASIS, "scenario": base["id"],
        "fraction": ladder.CROSSOVER_RATE_FRACTION}
    return sc


CROSSOVER_BASIS = "epoll"


def make_open_scenarios(prof, opts, sizes, connections, links=None):
    """Closed-loop peak scenarios (the bases) and the open-loop ones, on
    `links` (--netns: across the veth) or loopback."""
    if opts["kind"] == "latency":
        closed = make_scenarios(prof, sizes, connections, None, links)
        opened = [open_scenario(c, "latency", opts) for c in closed]
        return ([] if opts["rates"] else closed) + opened
    steps = (parse_int_list("--connections", connections, 1, 100000) if connections
             else list(ladder.DEFAULT_CROSSOVER_CONNS))
    closed = make_scenarios(prof, sizes, None, None, links)
    opened = [open_scenario(c, "crossover", opts, sorted(set(steps))) for c in closed]
    for c in closed:
        c["only"] = [CROSSOVER_BASIS]
    return ([] if opts["rate"] else closed) + opened


def step_count(sc):
    if sc["kind"] == "latency":
        return len(sc["rates"] or sc["ladder_pct"])
    return len(sc["connections_steps"])


def step_text(sc, i):
    """What step i of an open-loop scenario offers, before the run."""
    n = step_count(sc)
    if sc["kind"] == "latency":
        what = ("%s req/s" % "{:,.6g}".format(sc["rates"][i]) if sc["rates"] else
                "%g%% of its closed-loop peak" % sc["ladder_pct"][i])
    else:
        what = "%s conns at %s" % ("{:,}".format(sc["connections_steps"][i]),
                                    "%s req/s" % "{:,.6g}".format(sc["offered_rps"])
                                    if sc.get("offered_rps") and not sc.get("basis") else
                                    "%g%% of %s's closed-loop peak"
                                    % (100 * ladder.CROSSOVER_RATE_FRACTION, CROSSOVER_BASIS))
    return "step %d/%d: %s" % (i + 1, n, what)


def step_spec(sc, i, peak):
    """Step i of an open-loop scenario, once the peak it is scaled from is
    known (None with fixed rates): {index, offered_rps, connections,
    pct_of_peak}."""
    if sc["kind"] == "latency":
        if sc["rates"]:
            rate, pct = sc["rates"][i], None
        else:
            rate = ladder.ladder_rates(peak, [sc["ladder_pct"][i]])[0]
            pct = sc["ladder_pct"][i]
        conns = sc["connections"]
    else:
        rate = sc["offered_rps"] if not sc.get("basis") else ladder.crossover_rate(peak)
        pct = None
        conns = sc["connections_steps"][i]
    return {"index": i, "offered_rps": rate, "connections": conns, "pct_of_peak": pct}


# --- the binary ----------------------------------------------------------------


class Binary:
    """What the c10k binary offers: models, the per-connection ones, the
    flags `serve --help` lists (common and per model)."""

    def __init__(self, path, models, per_connection, help_flags, has_load=True):
        self.path, self.models, self.per_connection = path, models, per_connection
        self.help_flags = help_flags
        self.has_load = has_load  # `c10k load`, the open-loop generator

    def has_serve_flag(self, flag):
        return flag in self.help_flags.get("common", {})


def probe_binary(path):
    try:
        out = subprocess.run([path, "models"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=10).stdout
        pc = subprocess.run([path, "models", "--per-connection"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError("cannot run '%s models': %s" % (path, e)) from None
    models = [line.split()[0] for line in out.splitlines() if line.strip()]
    if not models:
        raise UsageError("'%s models' listed no models (output: %r)" % (path, out))
    # A thread or process per connection: --workers would be a pool size
    # there (prefork: a fixed pool of one process), so such a model sizes
    # itself to the load instead, as it would be deployed.
    per_connection = pc.stdout.split() if pc.returncode == 0 else []
    try:
        has_load = subprocess.run([path, "load", "--help"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        has_load = False
    return Binary(path, models, per_connection, serve_help(path), has_load)


# --- the plan -----------------------------------------------------------------


Visit = namedtuple("Visit", "round sc name step")  # step: index in an open-loop scenario


class Plan:
    """Everything a run will do, decided before the first server starts.

    A closed-loop scenario is one cell per server and round. An open-loop
    one (latency, crossover) is a cell per server too, run as steps: after
    every closed-loop cell (the peaks the steps are scaled from), round r
    takes each step in turn, visiting every server in a fresh random order
    (step_orders)."""

    def __init__(self, profile, scenarios, servers, rounds, seed, warmup, duration, **settings):
        self.wrk_timeout_s = settings.get("wrk_timeout_s")
        self.profile, self.scenarios, self.servers = profile, scenarios, servers
        self.rounds, self.seed = rounds, seed
        self.warmup, self.duration = warmup, duration
        self.workers = settings.get("workers", 1)
        self.server_cpus = settings.get("server_cpus", [0])
        self.client_cpus = settings.get("client_cpus", [1])
        self.keepalive_timeout = settings.get("keepalive_timeout", 5)
        self.header_timeout = settings.get("header_timeout", 10)
        # {"max": N, "valid_s": S}: every server, nginx included, caches open files
        self.open_file_cache = settings.get("open_file_cache")
        self.open = settings.get("open")  # open_options(), or None
        self.cold = settings.get("cold")  # coldcache.ColdSetup, or None
        self.notes = settings.get("notes", [])
        self.max_lag_s = self.open["max_lag_s"] if self.open else None
        # a warm-up lasts at least this long, however soon the server keeps up
        self.warmup_min = settings.get("warmup_min", 0.25)
        self.orders = round_orders([s.name for s in servers], rounds, seed)
        # references with no open-loop steps (the ceiling) are in no step's order
        stepping = [s.name for s in servers if not s.reference or refs.REFERENCES[s.model]
                    .serves({"kind": "latency", "size": 0}) is None]
        self.step_orders = step_orders(stepping, self.open_steps(), rounds, seed)
        self.sizes = sorted({s["size"] for s in scenarios})

    @property
    def names(self):
        return [s.name for s in self.servers]

    def server(self, name):
        return next(s for s in self.servers if s.name == name)

    def variants(self):
        """display name -> command line, for the variants only."""
        return {s.name: s.command_text() for s in self.servers if ":" in s.name}

    def open_steps(self):
        """(scenario, step index) of every open-loop step, in ladder order."""
        return [(sc, i) for sc in self.scenarios if sc["kind"] != "closed"
                for i in range(step_count(sc))]

    def serves(self, name, sc):
        """False for a reference that has no cell in scenario sc (the
        ceiling: a file too large to hold in memory, or an open-loop step)."""
        spec = self.server(name)
        return not spec.reference or refs.REFERENCES[spec.model].serves(sc) is None

    def visits(self):
        """Visit(round, scenario, server name, step or None) in the order they run."""
        out = []
        closed = [sc for sc in self.scenarios if sc["kind"] == "closed"]
        for r in range(self.rounds):
            out += [Visit(r + 1, sc, name, None) for sc in closed for name in self.orders[r]
                    if name in sc.get("only", [name]) and self.serves(name, sc)]
        for r in range(self.rounds):
            for (sc, i), order in zip(self.open_steps(), self.step_orders[r]):
                out += [Visit(r + 1, sc, name, i) for name in order]
        return out

    def cells(self):
        """(round, scenario, server name) in the order they run (an
        open-loop scenario once per step)."""
        return [(v.round, v.sc, v.name) for v in self.visits()]

    def cell_seconds(self, sc, worst=False, step=None):
        if step is not None:
            conns = sc["connections"] if sc["kind"] == "latency" else \
                sc["connections_steps"][step]
            return (self.warmup + self.duration + OPEN_STEP_OVERHEAD_S
                    + conns * OPEN_STEP_PER_CONN_S)
        warmup = self.warmup if worst else min(self.warmup, max(self.warmup_min,
                                                                 WARMUP_SETTLED_S))
        return (warmup + self.duration + CELL_OVERHEAD_S
                + (SLOW_CLIENTS_S if sc["slow"] else 0.0)
                + (COLD_CELL_S if sc.get("cold") else 0.0))

    def cell_cost(self, round_no, sc, name, worst=False, step=None):
        """cell_seconds, plus what a reference needs before its first cell
        of a scenario (the ceiling's probe of its backends)."""
        spec = self.server(name)
        setup = 0.0
        if spec.reference and round_no == 1 and step is None:
            setup = refs.REFERENCES[spec.model].setup_seconds(sc)
        return self.cell_seconds(sc, worst, step) + setup

    def visit_seconds(self, v, worst=False):
        return self.cell_cost(v.round, v.sc, v.name, worst, v.step)

    def setup_s(self):
        """Before the first cell: checks, the document root (the cold one
        only when it must be written)."""
        cold = self.cold.root.write_estimate_s(COLD_ROOT_S_PER_GIB) if self.cold else 0.0
        return SETUP_S + cold

    def estimate_s(self, report=True, worst=False):
        cells = sum(self.visit_seconds(v, worst) for v in self.visits())
        return self.setup_s() + cells + (REPORT_S if report else 0.0)


def round_orders(names, rounds, seed):
    """One fresh random order of the servers per round, from the seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        out.append(order)
    return out


def step_orders(names, steps, rounds, seed):
    """For each round, one fresh random order of the servers per open-loop
    step, from the seed (a stream of its own: the rounds' orders stay those
    of a closed-loop run with the same seed)."""
    rng = random.Random("%d-steps" % seed)
    out = []
    for _ in range(rounds):
        per = []
        for _ in steps:
            order = list(names)
            rng.shuffle(order)
            per.append(order)
        out.append(per)
    return out


def pick_servers(profile, models_text, binary, references=REFERENCES):
    """The c10k servers (models and variants), then the references that run
    (nginx always; the ceiling when it can)."""
    text = models_text
    if not text:
        extra = [v for v in PROFILES[profile].get("variants", [])
                 if v.partition(":")[0] in binary.models]
        text = ",".join(["all"] + extra)
    servers = parse_models(text, binary.models, binary.help_flags, REFERENCES)
    return servers + [Variant(r, r, reference=True) for r in references]


def summary_line(plan):
    open_steps = len(plan.open_steps())
    closed = [sc for sc in plan.scenarios if sc["kind"] == "closed"]
    what = "%d scenarios" % len(plan.scenarios)
    if open_steps:
        what = "%d closed-loop scenario(s) then %d open-loop step(s)" % (len(closed), open_steps)
    cache = plan.open_file_cache
    return ("profile %s: %d round(s) x %d servers (%s) x %s = %d cells; warm-up "
            "%s s, window %d s each; seed %d%s"
            % (plan.profile, plan.rounds, len(plan.servers), ", ".join(plan.names), what,
               len(plan.visits()), fmt_seconds(plan.warmup), plan.duration, plan.seed,
               "; open-file cache of %d per worker, checked every %s s, in every "
               "server" % (cache["max"], fmt_seconds(cache["valid_s"])) if cache else ""))


def open_lines(plan):
    """What --dry-run says about the open-loop settings."""
    o = plan.open
    if not o:
        return []
    out = ["open loop: c10k load, %s arrivals, %d thread(s) pinned to CPU %s, --max-lag "
           "%g ms (%s), SLO p99 %g ms"
           % (o["schedule"], len(plan.client_cpus), cpus_text(plan.client_cpus),
              o["max_lag_s"] * 1e3, o["max_lag_rule"].split(":")[0], o["slo_us"] / 1e3)]
    for sc in plan.scenarios:
        if sc["kind"] == "latency" and sc["basis"]:
            out.append("%s: each server's steps scale its median req/s in %s"
                       % (sc["label"], sc["basis"]))
        elif sc["kind"] == "crossover" and sc["basis"]:
            out.append("%s: the rate is %g%% of %s's median req/s in %s"
                       % (sc["label"], 100 * ladder.CROSSOVER_RATE_FRACTION, CROSSOVER_BASIS,
                          sc["basis"]))
    return out


def dry_run_text(plan, notes=(), report=True):
    """What --dry-run prints: the plan, every cell in order, the estimate."""
    lines = ["c10k bench --dry-run: " + summary_line(plan)]
    lines += ["  note: " + n for n in list(plan.notes) + list(notes)]
    lines += ["  " + n for n in open_lines(plan)]
    variants = plan.variants()
    for name, cmd in variants.items():
        lines.append("  variant %s = c10k serve %s" % (name, cmd))
    width = max(len(n) for n in plan.names)
    visits = plan.visits()
    prev = None
    steps = plan.open_steps()
    for i, v in enumerate(visits, 1):
        key = (v.round, None, None) if v.step is None else (v.round, v.sc["id"], v.step)
        if key != prev:
            if v.step is None:
                ran = {w.name for w in visits if w.round == v.round and w.step is None}
                lines.append("round %d: order %s" % (v.round, ", ".join(
                    n for n in plan.orders[v.round - 1] if n in ran)))
            else:
                order = plan.step_orders[v.round - 1][steps.index((v.sc, v.step))]
                lines.append("round %d, %s: order %s" % (v.round, step_text(v.sc, v.step),
                                                         ", ".join(order)))
            prev = key
        what = v.sc["label"] if v.step is None else "%s, %s" % (v.sc["label"],
                                                               step_text(v.sc, v.step))
        lines.append("  [%*d] round %d  %-*s  %s" % (len(str(len(visits))), i, v.round, width,
                                                   v.name, what))
    setup = sum(plan.cell_cost(1, sc, n) - plan.cell_seconds(sc) for sc in plan.scenarios
                if sc["kind"] == "closed" for n in plan.names if plan.serves(n, sc))
    for name in plan.names:
        spec = plan.server(name)
        skipped = {refs.REFERENCES[spec.model].serves(sc) for sc in plan.scenarios
                   if not plan.serves(name, sc)} if spec.reference else set()
        lines[1:1] = ["  note: %s: %s" % (name, why) for why in sorted(skipped)]
    cold = any(sc.get("cold") for sc in plan.scenarios)
    lines.append("estimated time: %s, at most %s (%d cells: each a warm-up that ends once the "
                 "server keeps up, about %s s, at most %s s; a %d s window; about %s s to "
                 "start, verify and stop%s%s; plus %s s setup%s%s%s)"
                 % (fmt_duration(plan.estimate_s(report)),
                    fmt_duration(plan.estimate_s(report, worst=True)), len(visits),
                    fmt_seconds(min(plan.warmup, max(plan.warmup_min, WARMUP_SETTLED_S))),
                    fmt_seconds(plan.warmup),
                    plan.duration, fmt_seconds(CELL_OVERHEAD_S),
                    "; an open-loop step: the generator's %s s warm-up, its window, about %s s "
                    "more and %g ms per connection" % (
                        fmt_seconds(plan.warmup), fmt_seconds(OPEN_STEP_OVERHEAD_S),
                        OPEN_STEP_PER_CONN_S * 1e3) if plan.open else "",
                    ", %s s to evict the cold root and check it" % fmt_seconds(COLD_CELL_S)
                    if cold else "", fmt_seconds(round(plan.setup_s())),
                    ", the cold root's first writing included" if plan.setup_s() > SETUP_S
                    else "",
                    ", %s s for the ceiling's probes (one per scenario)" % fmt_seconds(
                        round(setup, 1)) if setup else "",
                    " and %s s for the report" % fmt_seconds(REPORT_S) if report else ""))
    return "\n".join(lines) + "\n"


def runnable_references(bin_path):
    """The references a run includes: those that are always in it (nginx,
    failed cells when it cannot run) and those available here."""
    return tuple(name for name, ref in refs.REFERENCES.items()
                 if ref.always or ref.available(bin_path)[0])


def from_args(args, binary, ncpu=None, references=REFERENCES):
    """The plan for parsed command-line args and a probed binary."""
    prof = PROFILES[args.profile]
    duration = args.duration if args.duration is not None else prof["duration"]
    warmup = args.warmup if args.warmup is not None else prof["warmup"]
    rounds = pick_rounds(args, prof)
    if not 1 <= duration <= 600:
        raise UsageError("--duration %g: want 1 to 600 seconds" % duration)
    if not 0 <= warmup <= 120:
        raise UsageError("--warmup %g: want 0 to 120 seconds" % warmup)
    ncpu = ncpu or os.cpu_count() or 1
    server_cpus = parse_cpus("--server-cpus", args.server_cpus, ncpu) if args.server_cpus \
        else [0]
    if args.client_cpus:
        client_cpus = parse_cpus("--client-cpus", args.client_cpus, ncpu)
    else:
        client_cpus = [c for c in range(ncpu) if c not in server_cpus] or [0]
    if set(server_cpus) & set(client_cpus):
        print("c10k bench: warning: server CPUs %s and client CPUs %s overlap; wrk and the "
              "server will compete" % (cpus_text(server_cpus), cpus_text(client_cpus)),
              file=sys.stderr)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    links = pick_links(args, args.profile)
    opts = open_options(args, prof)
    if args.server_host and "ceiling" in references:
        # the ceiling is built beside this c10k; the server host has its own
        references = tuple(r for r in references if r != "ceiling")
    servers = pick_servers(args.profile, args.models, binary, references)
    if opts:
        if args.server_host or args.client_host:
            raise UsageError("--profile %s runs its open-loop generator on this host (or across "
                             "--netns); --server-host and --client-host are for the closed-loop "
                             "profiles" % args.profile)
        scenarios = make_open_scenarios(prof, opts, args.sizes, args.connections, links)
        check_open(opts, scenarios, servers, binary)
        cold, setup, notes = [], None, []
    else:
        cold, setup, notes = cold_plan(args, prof)
        scenarios = make_scenarios(prof, args.sizes, args.connections, args.modes, links, cold)
    return Plan(args.profile, scenarios, servers, rounds, seed, warmup,
                duration, workers=args.workers or len(server_cpus), server_cpus=server_cpus,
                client_cpus=client_cpus,
                keepalive_timeout=prof.get("keepalive_timeout", 5),
                header_timeout=prof.get("header_timeout", 10),
                wrk_timeout_s=prof.get("wrk_timeout_s"),
                open_file_cache=pick_open_file_cache(args, binary), open=opts, cold=setup,
                notes=notes)


def pick_open_file_cache(args, binary):
    """--open-file-cache N [--open-file-cache-valid S] -> {"max", "valid_s"},
    or None; the binary must take the flag."""
    n = getattr(args, "open_file_cache", None)
    if n is None:
        return None
    if not binary.has_serve_flag("open-file-cache"):
        raise UsageError("--open-file-cache: %s has no --open-file-cache (c10k serve --help); "
                         "rebuild it" % binary.path)
    valid = getattr(args, "open_file_cache_valid", None)
    return {"max": n, "valid_s": valid if valid is not None else 60}


def check_open(opts, scenarios, servers, binary):
    if not binary.has_load:
        raise UsageError("%s has no `c10k load` (the open-loop generator); rebuild it with "
                         "make" % binary.path)
    if any(sc.get("only") == [CROSSOVER_BASIS] for sc in scenarios) and \
            CROSSOVER_BASIS not in [s.name for s in servers]:
        raise UsageError("--profile crossover scales its rate from %s's closed-loop peak in "
                         "the same run: add %s to --models, or give --rate R"
                         % (CROSSOVER_BASIS, CROSSOVER_BASIS))


def pick_rounds(args, prof):
    """--rounds, or --repeat (its old name, kept): the same number."""
    if args.rounds is not None and args.repeat is not None and args.rounds != args.repeat:
        raise UsageError("--rounds %d and --repeat %d disagree; --repeat is the old name of "
                         "--rounds, give one" % (args.rounds, args.repeat))
    rounds = args.rounds if args.rounds is not None else args.repeat
    rounds = rounds if rounds is not None else prof["rounds"]
    if not 1 <= rounds <= 20:
        raise UsageError("--rounds %d: want 1 to 20" % rounds)
    return rounds
