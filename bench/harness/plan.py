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

from . import refs
from .util import (GiB, KiB, MiB, UsageError, cpus_text, fmt_duration, fmt_seconds,
                   parse_cpus, parse_int_list)
from .variants import Variant, parse_models, serve_help

# Per cell besides warm-up and window: start, verify, starting and ending
# wrk twice, reading the counters, stop. Measured on 2 cores: about 0.5 s.
CELL_OVERHEAD_S = 0.5
# A warm-up ends once the server keeps up (cell.Settled): about 0.4 s for
# most servers; prefork's growing pool takes the whole warm-up.
WARMUP_SETTLED_S = 0.4
SLOW_CLIENTS_S = 1.0   # connecting and releasing the slow clients
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


def scenario(size, keepalive, conns, slow=None, kind="closed", link="loopback"):
    sid = "%s-%s-c%d" % (size_label(size), "ka" if keepalive else "close", conns)
    label = "%s %s, %d conns" % (size_label(size), "keep-alive" if keepalive else
                                 "Connection: close", conns)
    series = "%s %s" % (size_label(size), "keep-alive" if keepalive else "close")
    if slow:
        sid += "-%s%d" % slow
        label += " + %d %s clients" % (slow[1], slow[0])
        series += " + %d %s" % (slow[1], slow[0])
    return {"id": sid, "label": label, "series": series, "size": size,
            "size_label": size_label(size), "keepalive": keepalive, "connections": conns,
            "slow": {"kind": slow[0], "count": slow[1]} if slow else None,
            "kind": kind, "link": link}


def parse_modes(text):
    modes = []
    for m in text.split(","):
        if m not in ("keepalive", "close"):
            raise UsageError("--modes: '%s': want keepalive or close" % m)
        modes.append(m == "keepalive")
    return modes


def make_scenarios(prof, sizes=None, connections=None, modes=None):
    """The profile's scenarios; --sizes, --connections or --modes (text or
    None) replace its list with their cross product."""
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
    for args in base:
        sc = scenario(*args)
        if sc["id"] not in seen:  # --sizes 1KiB,1024 names one file
            seen.add(sc["id"])
            out.append(sc)
    return out


# --- the binary ----------------------------------------------------------------


class Binary:
    """What the c10k binary offers: models, the per-connection ones, the
    flags `serve --help` lists (common and per model)."""

    def __init__(self, path, models, per_connection, help_flags):
        self.path, self.models, self.per_connection = path, models, per_connection
        self.help_flags = help_flags

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
    return Binary(path, models, per_connection, serve_help(path))


# --- the plan -----------------------------------------------------------------


class Plan:
    """Everything a run will do, decided before the first server starts."""

    def __init__(self, profile, scenarios, servers, rounds, seed, warmup, duration, **settings):
        self.profile, self.scenarios, self.servers = profile, scenarios, servers
        self.rounds, self.seed = rounds, seed
        self.warmup, self.duration = warmup, duration
        self.workers = settings.get("workers", 1)
        self.server_cpus = settings.get("server_cpus", [0])
        self.client_cpus = settings.get("client_cpus", [1])
        self.keepalive_timeout = settings.get("keepalive_timeout", 5)
        self.header_timeout = settings.get("header_timeout", 10)
        # a warm-up lasts at least this long, however soon the server keeps up
        self.warmup_min = settings.get("warmup_min", 0.25)
        self.orders = round_orders([s.name for s in servers], rounds, seed)
        self.sizes = sorted({s["size"] for s in scenarios})

    @property
    def names(self):
        return [s.name for s in self.servers]

    def server(self, name):
        return next(s for s in self.servers if s.name == name)

    def variants(self):
        """display name -> command line, for the variants only."""
        return {s.name: s.command_text() for s in self.servers if ":" in s.name}

    def cells(self):
        """(round, scenario, server name) in the order they run; a reference
        that cannot serve a scenario (the ceiling, on a file too large to
        hold in memory) has no cell there."""
        return [(r + 1, sc, name) for r in range(self.rounds) for sc in self.scenarios
                for name in self.orders[r] if self.serves(name, sc)]

    def serves(self, name, sc):
        spec = self.server(name)
        return not spec.reference or refs.REFERENCES[spec.model].serves(sc) is None

    def cell_seconds(self, sc, worst=False):
        warmup = self.warmup if worst else min(self.warmup, max(self.warmup_min,
                                                                 WARMUP_SETTLED_S))
        return (warmup + self.duration + CELL_OVERHEAD_S
                + (SLOW_CLIENTS_S if sc["slow"] else 0.0))

    def cell_cost(self, round_no, sc, name, worst=False):
        """cell_seconds, plus what a reference needs before its first cell
        of a scenario (the ceiling's probe of its backends)."""
        spec = self.server(name)
        setup = 0.0
        if spec.reference and round_no == 1:
            setup = refs.REFERENCES[spec.model].setup_seconds(sc)
        return self.cell_seconds(sc, worst) + setup

    def estimate_s(self, report=True, worst=False):
        cells = sum(self.cell_cost(r, sc, name, worst) for r, sc, name in self.cells())
        return SETUP_S + cells + (REPORT_S if report else 0.0)


def round_orders(names, rounds, seed):
    """One fresh random order of the servers per round, from the seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        out.append(order)
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
    return ("profile %s: %d round(s) x %d servers (%s) x %d scenarios = %d cells; warm-up "
            "%s s, window %d s each; seed %d"
            % (plan.profile, plan.rounds, len(plan.servers), ", ".join(plan.names),
               len(plan.scenarios), len(plan.cells()), fmt_seconds(plan.warmup), plan.duration,
               plan.seed))


def dry_run_text(plan, notes=(), report=True):
    """What --dry-run prints: the plan, every cell in order, the estimate."""
    lines = ["c10k bench --dry-run: " + summary_line(plan)]
    lines += ["  note: " + n for n in notes]
    variants = plan.variants()
    for name, cmd in variants.items():
        lines.append("  variant %s = c10k serve %s" % (name, cmd))
    width = max(len(n) for n in plan.names)
    cells = plan.cells()
    for i, (r, sc, name) in enumerate(cells, 1):
        if i == 1 or cells[i - 2][0] != r:
            lines.append("round %d: order %s" % (r, ", ".join(plan.orders[r - 1])))
        lines.append("  [%*d] round %d  %-*s  %s" % (len(str(len(cells))), i, r, width, name,
                                                   sc["label"]))
    setup = sum(plan.cell_cost(1, sc, n) - plan.cell_seconds(sc) for sc in plan.scenarios
                for n in plan.names if plan.serves(n, sc))
    for name in plan.names:
        spec = plan.server(name)
        skipped = {refs.REFERENCES[spec.model].serves(sc) for sc in plan.scenarios
                   if not plan.serves(name, sc)} if spec.reference else set()
        lines[1:1] = ["  note: %s: %s" % (name, why) for why in sorted(skipped)]
    lines.append("estimated time: %s, at most %s (%d cells: each a warm-up that ends once the "
                 "server keeps up, about %s s, at most %s s; a %d s window; about %s s to "
                 "start, verify and stop; plus %s s setup%s%s)"
                 % (fmt_duration(plan.estimate_s(report)),
                    fmt_duration(plan.estimate_s(report, worst=True)), len(cells),
                    fmt_seconds(min(plan.warmup, max(plan.warmup_min, WARMUP_SETTLED_S))),
                    fmt_seconds(plan.warmup), plan.duration, fmt_seconds(CELL_OVERHEAD_S),
                    fmt_seconds(SETUP_S),
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
    return Plan(args.profile, make_scenarios(prof, args.sizes, args.connections, args.modes),
                pick_servers(args.profile, args.models, binary, references), rounds, seed, warmup,
                duration, workers=args.workers or len(server_cpus), server_cpus=server_cpus,
                client_cpus=client_cpus,
                keepalive_timeout=prof.get("keepalive_timeout", 5),
                header_timeout=prof.get("header_timeout", 10))


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
