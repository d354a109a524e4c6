"""The open-loop profiles' rules, as pure functions (no server, no clock).

    latency    a ladder of offered rates, scaled from each server's
               closed-loop peak in the same run (or a fixed --rates list);
               its knee is the highest offered rate whose p99 stays under
               the SLO
    crossover  one offered rate over more and more connections

One step is one run of `c10k load` against a fresh server. What a step is
worth is decided here:

  fairness      Jain's index of the completions of each connection,
                (sum x)^2 / (n * sum x^2): 1 when every connection got the
                same service, 1/n when one got it all
  Little        in open loop, the time-average of requests sent and not
                yet answered must equal the achieved rate times their mean
                service time (from the actual send: the wait for a busy
                connection happens before the send and is not in flight),
                plus the requests that timed out times the timeout, within
                10%; a generator that lost track of its requests fails it
  client-bound  c10k load said the run was invalid (it could not keep to
                its schedule: its own CPU, or another process, held it
                back), or the Little check failed: the step's figures are
                the generator's, never reported as the server's
  knee          among the steps that count (not client-bound, not starved,
                without errors: a request that timed out or was refused did
                not meet any SLO), the highest offered rate whose p99 is
                under the SLO

With several rounds each step is run once per round; the cell's step is the
round with the median p99, and `over_rounds` holds the min, median and max
of each figure.
"""

import statistics

DEFAULT_LADDER_PCT = (10, 25, 50, 70, 80, 90, 100, 120, 150, 200)
DEFAULT_CROSSOVER_CONNS = (10, 100, 1000, 10000)
CROSSOVER_RATE_FRACTION = 0.5   # of epoll's closed-loop peak
LITTLE_TOLERANCE = 0.10         # |observed - expected| <= 10% of expected
DEFAULT_SLO_P99_US = 1000.0
NOISY_KNEE_SPREAD_PCT = 10.0

# The figures of a step whose min, median and max over rounds are kept.
ROUND_KEYS = ("achieved_rps", "goodput_rps", "errors_total", "lat_p50_us", "lat_p99_us",
              "lat_p999_us", "lat_max_us", "fairness_jain", "client_cpu_util",
              "cpu_us_per_req", "ctx_vol_per_req", "ctx_invol_per_req", "syscalls_per_req",
              "mem_per_conn_kib", "threads_max")


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# --- the steps ----------------------------------------------------------------------


def ladder_rates(peak_rps, pcts=DEFAULT_LADDER_PCT):
    """Offered rates of the ladder: each percentage of the closed-loop peak,
    in whole requests per second (at least 1), in the order given."""
    return [max(1, int(round(peak_rps * p / 100.0))) for p in pcts]


def crossover_rate(peak_rps, fraction=CROSSOVER_RATE_FRACTION):
    return max(1, int(round(peak_rps * fraction)))


# --- what one step measured -----------------------------------------------------------


def jain(values):
    """Jain's fairness index of per-connection completions; None when no
    connection completed anything (there is nothing to share)."""
    vals = [v for v in values or [] if is_num(v)]
    total = sum(vals)
    squares = sum(v * v for v in vals)
    if not vals or squares == 0:
        return None
    return total * total / (len(vals) * squares)


def jain_ideal(rate_rps, seconds, connections, poisson):
    """Jain's index of the arrivals themselves: what a server that answered
    every request of the window would score. With Poisson arrivals each
    connection's count varies (variance = mean = n), so even a perfectly
    fair server scores about n / (n + 1); on the fixed schedule the counts
    differ by at most one."""
    n = rate_rps * seconds / connections if connections else 0
    if n <= 0:
        return None
    if poisson:
        return n / (n + 1)
    q = int(n)
    f = n - q
    return (q + f) ** 2 / (q * q + 2 * f * q + f)


def little(in_flight_mean, rate_rps, service_mean_us, timed_out_per_s=0.0, timeout_s=0.0,
           tol=LITTLE_TOLERANCE):
    """Little's law in open loop: requests in flight = the rate at which they
    leave x the mean time each was in flight. They leave answered (rate_rps,
    after service_mean_us) or timed out (timed_out_per_s, each after about
    timeout_s: the generator gives up on a request --timeout after sending
    it), so a server that times requests out does not fail the check.
    {"expected", "observed", "ok"}; ok is None when a figure is missing."""
    if not all(is_num(x) for x in (in_flight_mean, rate_rps, service_mean_us)):
        return {"expected": None, "observed": in_flight_mean if is_num(in_flight_mean)
                else None, "ok": None}
    expected = rate_rps * service_mean_us / 1e6 + timed_out_per_s * timeout_s
    return {"expected": expected, "observed": in_flight_mean,
            "ok": abs(in_flight_mean - expected) <= tol * expected}


def client_bound_reasons(valid, invalid_reason, little_check):
    """Why a step's figures are the generator's, not the server's ([] if
    they are the server's)."""
    out = []
    if not valid:
        out.append("c10k load: invalid run: %s" % (invalid_reason or "no reason given"))
    if little_check.get("ok") is False:
        out.append("Little's law: %.2f requests in flight, against %.2f expected from the "
                   "achieved rate x the mean service time (more than %d%% apart)"
                   % (little_check["observed"], little_check["expected"],
                      round(LITTLE_TOLERANCE * 100)))
    return out


def counts(step):
    """Whether a step's latency may stand for the server's (and so set the knee)."""
    return (step.get("status") not in ("failed",) and not step.get("client_bound")
            and not step.get("starved") and not step.get("errors_total")
            and is_num(step.get("lat_p99_us")))


def knee(steps, slo_us):
    """The highest offered rate among the steps that count whose p99 is
    under slo_us; None if there is none."""
    ok = [s["offered_rps"] for s in steps if counts(s) and s["lat_p99_us"] < slo_us]
    return max(ok) if ok else None


# --- rounds -------------------------------------------------------------------------------


def representative(rounds):
    """The round of one step that stands for it: the median p99 (the lower
    of the two middle ones with an even count) among the rounds that are
    not client-bound, or among all if every round is."""
    pool = [s for s in rounds if not s.get("client_bound")] or list(rounds)
    timed = [s for s in pool if is_num(s.get("lat_p99_us"))]
    if not timed:
        return pool[0]
    ordered = sorted(timed, key=lambda s: s["lat_p99_us"])
    return ordered[(len(ordered) - 1) // 2]


def over_rounds(rounds):
    out = {}
    for k in ROUND_KEYS:
        vals = [s.get(k) for s in rounds]
        if not vals or not all(is_num(v) for v in vals):
            out[k] = None
            continue
        out[k] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def merge_step(rounds):
    """One step of the cell from its rounds (each a step dict)."""
    step = dict(representative(rounds))
    step["rounds"] = len(rounds)
    step["client_bound_rounds"] = sum(bool(s.get("client_bound")) for s in rounds)
    step["over_rounds"] = over_rounds(rounds) if len(rounds) > 1 else None
    return step


def spread_pct(values):
    vals = list(values)
    if len(vals) < 2 or not all(is_num(v) for v in vals):
        return None
    med = statistics.median(vals)
    return 100.0 * (max(vals) - min(vals)) / med if med else None


def cell_steps(repeats):
    """{step index: [step of each round]} of the rounds that ran."""
    by = {}
    for rep in repeats:
        for s in rep.get("steps") or []:
            by.setdefault(s["step"], []).append(s)
    return by


def summarize_open(repeats, kind, slo_us):
    """The cell-level view of an open-loop cell: its steps (merged over
    rounds, in ladder order), knee, knee of each round, spread and flags."""
    by = cell_steps(repeats)
    steps = [merge_step(by[i]) for i in sorted(by)]
    out = {"steps": steps, "knee_rps": None, "knee_by_round": None, "spread_pct": None}
    if kind == "latency":
        out["knee_rps"] = knee(steps, slo_us)
        out["knee_by_round"] = [knee(rep.get("steps") or [], slo_us) for rep in repeats]
        if len(repeats) > 1 and all(k is not None for k in out["knee_by_round"]):
            out["spread_pct"] = spread_pct(out["knee_by_round"])
    out["flags"] = open_flags(steps, repeats, out["knee_rps"], out["spread_pct"], kind)
    return out


def open_flags(steps, repeats, knee_rps, spread, kind):
    """starved: some step of some round was starved; client-bound: a step
    that could have moved the knee (above it, or any step when there is no
    knee; every step in a crossover) is client-bound in its representative
    round; noisy: the knees of the rounds spread more than 10%."""
    flags = []
    if any(s.get("starved") for rep in repeats for s in rep.get("steps") or []):
        flags.append("starved")
    if any(s.get("client_bound") for s in steps
           if kind != "latency" or knee_rps is None or s["offered_rps"] > knee_rps):
        flags.append("client-bound")
    if spread is not None and spread > NOISY_KNEE_SPREAD_PCT:
        flags.append("noisy")
    return flags


# --- command-line values ------------------------------------------------------------------


def parse_slo(text):
    """'1ms', '500us', '0.5ms', '2s', or a bare number of milliseconds -> µs;
    ValueError with the reason."""
    t = text.strip().lower()
    for unit, mult in (("us", 1.0), ("µs", 1.0), ("ms", 1000.0), ("s", 1e6), ("", 1000.0)):
        if t.endswith(unit):
            num = t[:len(t) - len(unit)] if unit else t
            try:
                v = float(num)
            except ValueError:
                break
            if not 0 < v * mult <= 60e6 or v != v:
                raise ValueError("'%s' is out of range (above 0, at most 60 s)" % text)
            return v * mult
    raise ValueError("'%s' is not a time (e.g. 1ms, 500us, 0.25s)" % text)


def parse_numbers(text, lo, hi, what):
    """'10,25.5,50' -> [10.0, 25.5, 50.0]; ValueError with the reason."""
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise ValueError("'%s' is not a number" % part) from None
        if not lo <= v <= hi:
            raise ValueError("%s is out of range (%s: %g to %g)" % (part, what, lo, hi))
        out.append(v)
    return out
