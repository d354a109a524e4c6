#!/usr/bin/python3
"""Writes results.json beside this file: a SYNTHETIC schema-2 run for the
report's tests, built from the real schema-1 fixture (../fixture) plus
numbers made up to be plausible. README.md says where each part comes from.

    /usr/bin/python3 tests/bench/fixture-v2/make_fixture.py

Deterministic (fixed seed): running it again gives the same file. The lead
replaces this fixture with a real schema-2 run once the harness writes one.
"""

import json
import math
import os
import random
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
V1 = os.path.join(HERE, "..", "fixture", "results.json")
OUT = os.path.join(HERE, "results.json")
RNG = random.Random(15)
ROUNDS = 3
DURATION = 5.0
SLO_US = 10000
MODELS = ["epoll", "prefork", "threaded", "threaded:pool=64", "coro", "nginx", "ceiling"]
PCTS = [1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99]
ND = statistics.NormalDist()

SCENARIOS = [
    dict(id="1KiB-ka-c16", label="1KiB keep-alive, 16 conns", series="1KiB keep-alive",
         size=1024, size_label="1KiB", keepalive=True, connections=16, slow=None),
    dict(id="1KiB-ka-c256", label="1KiB keep-alive, 256 conns", series="1KiB keep-alive",
         size=1024, size_label="1KiB", keepalive=True, connections=256, slow=None),
    dict(id="1KiB-close-c64", label="1KiB Connection: close, 64 conns", series="1KiB close",
         size=1024, size_label="1KiB", keepalive=False, connections=64, slow=None),
    dict(id="1MiB-ka-c16", label="1MiB keep-alive, 16 conns", series="1MiB keep-alive",
         size=1048576, size_label="1MiB", keepalive=True, connections=16, slow=None),
    dict(id="1KiB-ka-c16-idle1000", label="1KiB keep-alive, 16 conns + 1000 idle clients",
         series="1KiB keep-alive + 1000 idle", size=1024, size_label="1KiB", keepalive=True,
         connections=16, slow={"kind": "idle", "count": 1000}),
    dict(id="1KiB-ka-c256-latency", label="1KiB keep-alive, 256 conns, open-loop ladder",
         series="1KiB keep-alive", size=1024, size_label="1KiB", keepalive=True,
         connections=256, slow=None, kind="latency", slo_p99_us=SLO_US),
]

# Synthetic cells: (model, scenario) -> medians. Keys: rps, p50, p99 (µs),
# cpu (µs/req), sys (kernel share), vol, invol, sysc (syscalls/req), mem
# (KiB/conn), thr, procs, rss (peak KiB), aq (accept queue max), aqw (accept
# queue wait fraction), to (timeouts per round), rx (NET_RX/req), est.
S = {
    ("prefork", "1KiB-ka-c16"): dict(rps=12107, p50=1100, p99=7900, cpu=49.8, sys=0.88,
                                     vol=0.997, invol=0.012, sysc=7.01, mem=96.0, thr=21,
                                     procs=21, rss=38200, aq=3, aqw=0.01, rx=1.21),
    ("prefork", "1KiB-ka-c256"): dict(rps=18750, p50=2100, p99=612000, cpu=52.6, sys=0.88,
                                      vol=0.998, invol=0.031, sysc=7.02, mem=95.1, thr=241,
                                      procs=241, rss=421000, aq=236, aqw=0.38, to=142, rx=1.18),
    ("prefork", "1KiB-close-c64"): dict(rps=9024, p50=5600, p99=15200, cpu=58.2, sys=0.90,
                                        vol=1.02, invol=0.031, sysc=12.0, mem=90.3, thr=70,
                                        procs=70, rss=126000, aq=21, aqw=0.06, rx=4.6),
    ("prefork", "1MiB-ka-c16"): dict(rps=2240, p50=6900, p99=16100, cpu=251.0, sys=0.97,
                                     vol=1.9, invol=0.05, sysc=9.1, mem=97.2, thr=21, procs=21,
                                     rss=38900, aq=2, aqw=0.0, rx=18.3),
    ("prefork", "1KiB-ka-c16-idle1000"): dict(rps=0, cpu=None, vol=None, invol=None, sysc=None,
                                              mem=101.5, thr=257, procs=257, rss=455000, aq=981,
                                              aqw=1.0, to=96, est=0),
    ("threaded:pool=64", "1KiB-ka-c16"): dict(rps=21300, p50=600, p99=6300, cpu=39.8, sys=0.85,
                                              vol=0.995, invol=0.011, sysc=7.0, mem=3.1, thr=66,
                                              rss=6100, rx=1.25),
    ("threaded:pool=64", "1KiB-ka-c256"): dict(rps=19800, p50=2900, p99=1980000, cpu=43.1,
                                               sys=0.86, vol=0.996, invol=0.012, sysc=7.0,
                                               mem=0.9, thr=66, rss=6400, to=480, rx=1.22),
    ("threaded:pool=64", "1KiB-close-c64"): dict(rps=6950, p50=8100, p99=21900, cpu=96.2,
                                                 sys=0.89, vol=1.45, invol=0.03, sysc=14.1,
                                                 mem=1.2, thr=66, rss=6200, aq=12, aqw=0.02,
                                                 rx=4.7),
    ("threaded:pool=64", "1MiB-ka-c16"): dict(rps=2230, p50=7000, p99=16500, cpu=248.0,
                                              sys=0.97, vol=1.9, invol=0.04, sysc=9.0, mem=3.2,
                                              thr=66, rss=6300, rx=18.1),
    ("threaded:pool=64", "1KiB-ka-c16-idle1000"): dict(rps=0, cpu=None, vol=None, invol=None,
                                                       sysc=None, mem=0.3, thr=66, rss=6500,
                                                       to=128),
    ("coro", "1KiB-ka-c16"): dict(rps=21844, p50=480, p99=6100, cpu=28.1, sys=0.84, vol=0.004,
                                  invol=0.003, sysc=6.3, mem=8.6, thr=2, rss=2400, rx=1.05,
                                  us=2.04),
    ("coro", "1KiB-ka-c256"): dict(rps=31309, p50=7600, p99=16300, cpu=29.4, sys=0.84,
                                   vol=0.002, invol=0.002, sysc=6.2, mem=8.4, thr=2, rss=4500,
                                   rx=1.02, us=2.02),
    ("coro", "1KiB-close-c64"): dict(rps=8289, p50=3100, p99=14100, cpu=63.0, sys=0.90,
                                     vol=0.31, invol=0.013, sysc=11.3, mem=8.9, thr=2, rss=2900,
                                     rx=4.4, us=3.21, spawned=1.0),
    ("coro", "1MiB-ka-c16"): dict(rps=2100, p50=7300, p99=17000, cpu=271.0, sys=0.96, vol=0.4,
                                  invol=0.02, sysc=12.4, mem=8.8, thr=2, rss=2500, rx=17.6,
                                  us=16.5),
    ("coro", "1KiB-ka-c16-idle1000"): dict(rps=21400, p50=490, p99=6300, cpu=28.6, sys=0.84,
                                           vol=0.004, invol=0.003, sysc=6.3, mem=8.5, thr=2,
                                           rss=11200, rx=1.06, us=2.05),
    ("epoll", "1MiB-ka-c16"): dict(rps=2170, p50=7100, p99=16800, cpu=267.0, sys=0.96, vol=0.3,
                                   invol=0.02, sysc=12.1, mem=0.2, thr=2, rss=2200, rx=17.9),
    ("epoll", "1KiB-ka-c16-idle1000"): dict(rps=22540, p50=470, p99=6000, cpu=26.9, sys=0.85,
                                            vol=0.005, invol=0.003, sysc=6.1, mem=0.5, thr=2,
                                            rss=2700, rx=1.04),
    ("threaded", "1MiB-ka-c16"): dict(rps=2220, p50=6900, p99=16300, cpu=250.0, sys=0.97,
                                      vol=1.9, invol=0.05, sysc=9.0, mem=27.1, thr=18, rss=2600,
                                      rx=18.2),
    ("threaded", "1KiB-ka-c16-idle1000"): dict(rps=17130, p50=640, p99=9400, cpu=43.2,
                                               sys=0.85, vol=0.996, invol=0.02, sysc=7.0,
                                               mem=26.8, thr=1018, rss=30100, rx=1.3),
    ("nginx", "1MiB-ka-c16"): dict(rps=835, p50=17800, p99=41000, cpu=140.0, sys=0.95, vol=0.9,
                                   invol=0.02, sysc=24.0, mem=0.3, thr=2, procs=2, rss=19300,
                                   rx=17.5),
    ("nginx", "1KiB-ka-c16-idle1000"): dict(rps=13400, p50=1120, p99=5200, cpu=66.1, sys=0.86,
                                            vol=0.005, invol=0.004, sysc=18.1, mem=0.6, thr=2,
                                            procs=2, rss=19900, rx=1.1),
}
CEILING = {"1KiB-ka-c16": 36000, "1KiB-ka-c256": 51500, "1KiB-close-c64": 11800,
           "1MiB-ka-c16": 3100, "1KiB-ka-c16-idle1000": 35500}
# NET_RX softirqs per request of the v1-derived cells (synthetic, see README)
RX = {"1KiB-ka-c16": 1.1, "1KiB-ka-c256": 1.05, "1KiB-close-c64": 4.5}
NOISY = ("threaded", "1KiB-ka-c16")
# Open-loop ladder: base p99 at light load (µs), tail growth k, base p50.
LADDER = {"epoll": (450, 0.9, 120), "coro": (500, 1.0, 130), "nginx": (700, 1.1, 200),
          "threaded": (1600, 5.0, 250), "prefork": (3500, 8.0, 300)}
FRACTIONS = [0.2, 0.4, 0.6, 0.75, 0.9, 1.0, 1.1]


def jitter(x, pct):
    return x * (1 + RNG.uniform(-pct, pct) / 100.0)


def percentiles(p50, p99):
    """A lognormal spectrum with this median and p99 (wrk's percentile list)."""
    sigma = math.log(p99 / p50) / ND.inv_cdf(0.99) if p99 > p50 else 0.1
    return [[p, int(p50 * math.exp(sigma * ND.inv_cdf(p / 100.0)))] for p in PCTS] + [[100, 0]]


def histogram(p50, p99, n):
    """Bucketed counts (upper bound in µs) of n latencies from that lognormal;
    10 buckets per decade, counts sum to n."""
    sigma = math.log(p99 / p50) / ND.inv_cdf(0.99) if p99 > p50 else 0.1
    out, left = [], n
    for i in range(0, 7 * 10 + 1):
        upper = 10 ** (i / 10.0)
        cdf = ND.cdf(math.log(upper / p50) / sigma)
        c = min(left, int(round(n * cdf)) - (n - left))
        if c > 0:
            out.append([int(math.ceil(upper)), c])
            left -= c
        if left <= 0:
            break
    if left > 0:
        out.append([int(p99 * 20), left])
    return out


def v1_cells():
    with open(V1) as f:
        doc = json.load(f)
    return doc, {(c["model"], c["scenario"]): c["repeats"][0] for c in doc["cells"]}


def from_v1(r, sc):
    """Medians of a v1 repeat, in the keys of S."""
    return dict(rps=r["rps"], p50=r["lat_p50_us"], p99=r["lat_p99_us"], cpu=r["cpu_us_per_req"],
                sys=r["cpu_sys_us_per_req"] / r["cpu_us_per_req"], vol=r["ctx_vol_per_req"],
                invol=r["ctx_invol_per_req"], sysc=r["syscalls_per_req"],
                mem=r["mem_per_conn_kib"], thr=r["threads_max"], procs=r["procs_max"],
                rss=r["rss_peak_kib"], aq=r["accept_queue_max"], est=r["conns_established"],
                rx=RX[sc["id"]], pct=r["lat_percentiles_us"], p999=r["lat_p999_us"],
                p90=r["lat_p90_us"], mx=r["lat_max_us"], mean=r["lat_mean_us"],
                ccpu=r["client_cpu_util"])


def ceiling_base(sid):
    rps = CEILING[sid]
    close = sid == "1KiB-close-c64"
    return dict(rps=rps, p50=300 if not close else 2400, p99=2100 if not close else 9800,
                cpu=15.8 if not close else 49.0, sys=0.9, vol=0.002, invol=0.002,
                sysc=3.0 if not close else 8.0, mem=0.1, thr=2, procs=1, rss=3100,
                rx=RX.get(sid, 1.0 if "MiB" not in sid else 17.0))


def round_factors(key):
    """req/s of each round relative to the median round, which keeps the
    base value (so a v1-derived cell's median req/s is v1's)."""
    if key == NOISY:
        return [0.87, 1.0, 1.09]
    f = [1 - RNG.uniform(0.005, 0.025), 1.0, 1 + RNG.uniform(0.005, 0.025)]
    RNG.shuffle(f)
    return f


def repeat(model, sc, b, rnd, f):
    """One round of one closed-loop cell from medians b and rps factor f."""
    rps = b["rps"] * f
    req = int(rps * DURATION)
    lat = (1 / f) ** 1.5
    p50, p99 = (b.get("p50"), b.get("p99")) if req else (None, None)
    per = lambda k, pct=1.0: None if b.get(k) is None or not req else jitter(b[k], pct)  # noqa
    cpu = per("cpu")
    vol, invol, sysc = per("vol", 1.5), per("invol", 4), per("sysc", 0.3)
    rx = per("rx", 2)
    to = int(jitter(b.get("to", 0), 10))
    counters = None
    if model == "coro" and req:
        counters = {"user_switches": int(b["us"] * req * jitter(1, 0.5)),
                    "coroutines_started": int(b.get("spawned", 0) * req)}
    r = {
        "repeat": rnd, "round": rnd, "status": "ok",
        "server_command": ["c10k", "serve", model.split(":")[0]] +
                          (["--pool", "64"] if "pool" in model else []) +
                          ["--port", "0", "--root", "docroot"],
        "requests": req, "duration_s": DURATION, "rps": rps,
        "mib_per_s": rps * (sc["size"] + 240) / 1048576.0,
        "bytes": req * (sc["size"] + 240),
        "errors_connect": 0, "errors_read": 0, "errors_write": 0, "errors_timeout": to,
        "errors_status": 0, "errors_total": to,
        "lat_p50_us": None if p50 is None else int(p50 * lat * jitter(1, 2)),
        "lat_p90_us": None if p50 is None else int(b.get("p90", (p50 * p99) ** 0.5) * lat),
        "lat_p99_us": None if p99 is None else int(p99 * lat * jitter(1, 3)),
        "lat_p999_us": None if p99 is None else int(b.get("p999", p99 * 1.7) * lat),
        "lat_max_us": None if p99 is None else int(b.get("mx", p99 * 2.4) * lat),
        "lat_mean_us": None if p50 is None else round(b.get("mean", p50 * 1.6) * lat, 2),
        "lat_percentiles_us": None if p50 is None else
        [[p, int(v * lat)] for p, v in (b.get("pct") or percentiles(p50, p99))],
        "cpu_us_per_req": cpu,
        "cpu_user_us_per_req": None if cpu is None else cpu * (1 - b["sys"]),
        "cpu_sys_us_per_req": None if cpu is None else cpu * b["sys"],
        "cpu_s": None if cpu is None else cpu * req / 1e6,
        "server_cpu_util": None if cpu is None else cpu * rps / 1e6,
        "ctx_vol_per_req": vol, "ctx_invol_per_req": invol,
        "ctx_vol": None if vol is None else round(vol * req),
        "ctx_invol": None if invol is None else round(invol * req),
        "ctx_method": "perf",
        "syscalls_per_req": sysc, "syscalls": None if sysc is None else round(sysc * req),
        "rss_baseline_kib": 2100, "rss_peak_kib": int(jitter(b["rss"], 1)),
        "mem_per_conn_kib": round(jitter(b["mem"], 2), 3), "mem_per_conn_method": "pss",
        "threads_max": b["thr"], "procs_max": b.get("procs", 1),
        "conns_established": b.get("est", sc["connections"]),
        "slow_established": sc["slow"]["count"] if sc["slow"] else None,
        "accept_queue_max": b.get("aq", 0),
        "client_cpu_util": round(jitter(b.get("ccpu", min(0.85, rps / 45000.0 + 0.05)), 3), 3),
        "samples": 11,
        "loadavg_1m": round(RNG.uniform(1.1, 1.9), 2),
        "steal_pct": 3.1 if (model, sc["id"]) == NOISY and rnd == 1 else
        round(RNG.uniform(0.0, 0.4), 2),
        "softirq_net_rx_per_req": rx, "softirq_net_tx_per_req": None if rx is None else
        round(jitter(0.004, 30), 5),
        "model_counters": counters,
        "accept_queue_wait_frac": b.get("aqw", 0.0),
        "server_exit": "clean",
    }
    r["softirq_net_rx"] = None if rx is None else round(rx * req)
    r["softirq_net_tx"] = None if rx is None else round(r["softirq_net_tx_per_req"] * req)
    return r


SCALARS = ["rps", "mib_per_s", "requests", "bytes", "duration_s", "errors_total",
           "errors_connect", "errors_read", "errors_write", "errors_timeout", "errors_status",
           "lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_max_us", "lat_mean_us",
           "cpu_s", "cpu_us_per_req", "cpu_user_us_per_req", "cpu_sys_us_per_req",
           "server_cpu_util", "ctx_vol", "ctx_invol", "ctx_vol_per_req", "ctx_invol_per_req",
           "syscalls", "syscalls_per_req", "rss_baseline_kib", "rss_peak_kib",
           "mem_per_conn_kib", "threads_max", "procs_max", "conns_established",
           "accept_queue_max", "client_cpu_util", "softirq_net_rx", "softirq_net_tx",
           "softirq_net_rx_per_req", "softirq_net_tx_per_req", "accept_queue_wait_frac",
           "loadavg_1m", "steal_pct", "ceiling_ratio"]


def summary(reps):
    out = {}
    for k in SCALARS:
        vals = [r.get(k) for r in reps]
        if any(v is None for v in vals):
            out[k] = None
            continue
        out[k] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def closed_cell(model, sc, b, ceil_rps):
    fs = round_factors((model, sc["id"]))
    reps = [repeat(model, sc, b, i + 1, f) for i, f in enumerate(fs)]
    for r in reps:
        c = ceil_rps.get((sc["id"], r["round"]))
        r["ceiling_ratio"] = None if model == "ceiling" or not c else r["rps"] / c
    rps = [r["rps"] for r in reps]
    med = statistics.median(rps)
    spread = 100 * (max(rps) - min(rps)) / med if med else None
    flags, reasons = [], []
    # the harness's rule; established connections only count with keep-alive
    if any(r["accept_queue_wait_frac"] > 0.1 for r in reps) or (sc["keepalive"] and any(
            r["conns_established"] < sc["connections"] for r in reps)):
        flags.append("starved")
    if spread is not None and spread > 10:
        flags.append("noisy")
    status = "ok"
    for r in reps:
        if r["errors_total"]:
            status = r["status"] = "degraded"
            r["degraded_by"] = ["wrk errors"]
            reasons.append("round %d: wrk errors: connect 0, read 0, write 0, timeout %d, "
                           "status>=400 0" % (r["round"], r["errors_timeout"]))
    return {"model": model, "scenario": sc["id"], "status": status, "reasons": reasons,
            "flags": flags, "spread_pct": spread, "repeats": reps, "summary": summary(reps)}


def p99_at(model, rho):
    b99, k, _ = LADDER[model]
    if rho < 0.98:
        return b99 * (1 + k * rho / (1 - rho))
    return b99 * (1 + k * 49) * (1 + 20 * (rho - 0.98))


def step(model, peak, frac, closed, idx):
    """One step of an open-loop ladder at frac of the closed-loop peak."""
    offered = peak * frac
    pool = model == "threaded:pool=64"
    cap = peak * (0.25 if pool else 1.0)
    achieved = min(offered * (0.25 if pool else 1.0), cap * 0.99) * jitter(1, 0.4)
    rho = offered / peak
    if pool:
        p50, p99 = 900 + 400 * rho, 2000000
    else:
        p99 = p99_at(model, rho)
        p50 = LADDER[model][2] * (1 + 0.5 * LADDER[model][1] * min(rho, 0.97) / (1 - min(rho,
                                                                                       0.97)))
    n = int(achieved * DURATION)
    errors = int(offered * DURATION * 0.75 / 20) if pool else 0
    timeline = []
    for t in range(1, 6):
        done, tp99 = achieved * jitter(1, 1.0), p99 * jitter(1, 5)
        if model == "prefork" and idx == 2 and t == 3:   # a stall: the pool is growing
            done, tp99 = achieved * 0.35, p99 * 9
        if model == "threaded" and idx == 0 and t == 1:  # a slow start: threads created
            done, tp99 = achieved * 0.7, p99 * 3
        timeline.append({"t": t, "completed": int(done), "errors": errors // 5,
                         "p99_us": int(tp99)})
    mean_s = (p50 * 1.6) / 1e6
    expected = achieved * mean_s
    observed = 256 * 0.75 + expected if pool else expected * jitter(1, 3)
    idle = 1 - min(rho, 1.0)   # an event loop sleeps between requests at light load
    vol = closed["vol"] if closed["vol"] > 0.5 else min(0.9, closed["vol"] + 0.7 * idle)
    return {
        "offered_rps": round(offered, 1), "achieved_rps": round(achieved, 1),
        "goodput_rps": round(achieved, 1), "requests": n,
        "errors_total": errors, "lat_p50_us": int(p50), "lat_p90_us": int((p50 * p99) ** 0.5),
        "lat_p99_us": int(p99), "lat_p999_us": int(p99 * 1.8), "lat_max_us": int(p99 * 3.1),
        "lat_histogram_us": histogram(p50, p99, max(n, 1)), "timeline": timeline,
        "fairness_jain": 0.25 if pool else round(0.995 - (0.03 if model == "threaded" else 0)
                                                  - 0.02 * rho, 3),
        "client_cpu_util": round(min(0.8, offered / 60000.0), 3),
        "little": {"expected": round(expected, 1), "observed": round(observed, 1),
                   "ok": bool(pool or abs(observed - expected) <= 0.1 * max(expected, 1))
                   and not (model == "prefork" and idx == 6)},
        "client_bound": False, "connections": 256,
        "cpu_us_per_req": round(closed["cpu"] * (1 + 0.35 * (1 - min(rho, 1))), 2),
        "ctx_vol_per_req": round(vol, 4), "ctx_invol_per_req": closed["invol"],
        "syscalls_per_req": closed["sysc"], "mem_per_conn_kib": closed["mem"],
        "threads_max": closed["thr"],
    }


def latency_cell(model, sc, peak, closed):
    steps = [step(model, peak, f, closed, i) for i, f in enumerate(FRACTIONS)]
    knee = None
    for s in steps:
        if s["lat_p99_us"] < SLO_US:
            knee = s["offered_rps"]
    flags = ["starved"] if model == "prefork" else []
    status = "degraded" if model == "threaded:pool=64" else "ok"
    reasons = ["wrk2-style ladder: %d timeouts over the ladder (192 of 256 connections never "
               "got a pool thread)" % sum(s["errors_total"] for s in steps)] \
        if status == "degraded" else []
    reps = [{"repeat": i, "round": i, "status": status, "loadavg_1m": round(RNG.uniform(1.2, 1.8),
                                                                             2),
             "steal_pct": round(RNG.uniform(0, 0.3), 2)} for i in range(1, ROUNDS + 1)]
    return {"model": model, "scenario": sc["id"], "status": status, "reasons": reasons,
            "flags": flags, "spread_pct": None, "repeats": reps, "summary": {},
            "steps": steps, "knee_rps": knee, "peak_closed_rps": round(peak, 1)}


def tidy(x):
    """Floats to 5 significant digits, so the file stays small."""
    if isinstance(x, float):
        return float("%.5g" % x)
    if isinstance(x, list):
        return [tidy(v) for v in x]
    if isinstance(x, dict):
        return {k: tidy(v) for k, v in x.items()}
    return x


def main():
    v1, rep = v1_cells()
    doc = {"schema": "c10k-bench-results", "schema_version": 2}
    run = json.loads(json.dumps(v1["run"]))
    run["id"] = "fixture-v2-synthetic"
    run["note"] = ("SYNTHETIC schema-2 fixture (tests/bench/fixture-v2/README.md says where "
                   "each number comes from); not a measurement")
    run["command_line"] = ["c10k", "bench", "--profile", "quick", "--rounds", "3", "--models",
                           ",".join(m for m in MODELS if m not in ("nginx", "ceiling"))]
    st = run["settings"]
    st.update(models=MODELS, rounds=ROUNDS, repeat=ROUNDS, sizes=[1024, 1048576],
              per_connection_models=["threaded", "prefork"],
              variants={"threaded:pool=64": "threaded --pool 64"})
    orders = []
    for _ in range(ROUNDS):
        o = MODELS[:]
        RNG.shuffle(o)
        orders.append(o)
    st["round_orders"] = orders
    doc["run"] = run
    doc["environment"] = v1["environment"]
    doc["tools"] = v1["tools"]
    doc["docroot"] = v1["docroot"]
    doc["models"] = MODELS
    doc["scenarios"] = [dict(kind="closed", link="loopback", **s) if "kind" not in s else
                        dict(link="loopback", **s) for s in SCENARIOS]
    bases = {}
    for sc in SCENARIOS:
        if sc.get("kind") == "latency":
            continue
        for m in MODELS:
            if m == "ceiling":
                bases[m, sc["id"]] = ceiling_base(sc["id"])
            elif (m, sc["id"]) in S:
                bases[m, sc["id"]] = dict(S[m, sc["id"]])
            else:
                bases[m, sc["id"]] = from_v1(rep[m, sc["id"]], sc)
    cells, ceil_rps = [], {}
    for sc in SCENARIOS:
        if sc.get("kind") == "latency":
            continue
        c = closed_cell("ceiling", sc, bases["ceiling", sc["id"]], {})
        for r in c["repeats"]:
            ceil_rps[sc["id"], r["round"]] = r["rps"]
        for m in MODELS[:-1]:
            cells.append(closed_cell(m, sc, bases[m, sc["id"]], ceil_rps))
        cells.append(c)
    lat = SCENARIOS[-1]
    for m in MODELS[:-1]:
        closed = bases[m, "1KiB-ka-c256"]
        peak = statistics.median(r["rps"] for c in cells if c["model"] == m
                                 and c["scenario"] == "1KiB-ka-c256" for r in c["repeats"])
        cells.append(latency_cell(m, lat, peak, closed))
    doc["cells"] = tidy(cells)
    with open(OUT, "w") as f:
        # one cell per line: small, and a diff still shows which cell changed
        f.write("{\n")
        keys = list(doc)
        for i, k in enumerate(keys):
            if k == "cells":
                f.write(' "cells": [\n')
                f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in doc[k]))
                f.write("\n ]")
            else:
                f.write(" %s: %s" % (json.dumps(k), json.dumps(doc[k], separators=(",", ":"))))
            f.write(",\n" if i < len(keys) - 1 else "\n")
        f.write("}\n")
    print("make_fixture: wrote %s (%d cells)" % (OUT, len(cells)))


if __name__ == "__main__":
    main()
