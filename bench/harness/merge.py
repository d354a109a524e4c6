"""One result from several load generators (`--client-host a,b,...`).

Counts add up: requests, bytes, every error class, client CPU. Latency
percentiles do not: the p99 of two hosts is not the mean of their p99s. So
the hosts' latency histograms are merged (their buckets have the same
edges: wrk_report.lua uses floor(10^(k/10)) microseconds, `c10k load` its
fixed log-linear buckets), and every percentile is read from the merged
histogram. The mean is weighted by each host's count; the maximum is the
largest maximum.

merge_wrk() takes bench/wrk_report.lua reports, merge_load() takes `c10k
load --json` documents (CONTRACTS.md 1). Both return a document of the same
shape with "hosts": how many were merged.
"""

import math

WRK_PERCENTILES = [1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9,
                   99.99, 100]
LOAD_PERCENTILES = [("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("p9999", 99.99)]
ERROR_KEYS = ("connect", "read", "write", "timeout", "status")


class MergeError(ValueError):
    """The documents cannot be merged (a histogram is missing)."""


def merge_histograms(hists):
    """[[upper, count], ...] lists -> one list, counts summed per edge."""
    total = {}
    for h in hists:
        for upper, count in h:
            total[upper] = total.get(upper, 0) + count
    return [[u, total[u]] for u in sorted(total) if total[u]]


def percentile(hist, p):
    """The upper edge of the bucket that holds rank ceil(p/100 * n) (at
    least 1): the value p% of the samples are at or below, to the
    histogram's resolution. None for an empty histogram."""
    n = sum(c for _, c in hist)
    if n == 0:
        return None
    rank = max(1, math.ceil(p * n / 100 - 1e-9))
    seen = 0
    for upper, count in hist:
        seen += count
        if seen >= rank:
            return upper
    return hist[-1][0]


def _weighted_mean(pairs):
    """mean of means weighted by counts; None when nothing counted."""
    n = sum(w for _, w in pairs if w)
    if not n:
        return None
    return sum(m * w for m, w in pairs if w and m is not None) / n


def _sum_errors(docs):
    return {k: sum((d.get("errors") or {}).get(k, 0) or 0 for d in docs) for k in ERROR_KEYS}


def merge_wrk(reports):
    """wrk_report.lua reports from several hosts, run over the same window."""
    if len(reports) == 1:
        return dict(reports[0], hosts=1)
    if any(r.get("histogram_us") is None for r in reports):
        raise MergeError("a host's wrk report has no latency histogram (%s), so its "
                         "percentiles cannot be combined" % next(
                             r.get("histogram_unavailable") or "not recorded"
                             for r in reports if r.get("histogram_us") is None))
    hist = merge_histograms(r["histogram_us"] for r in reports)
    recorded = [r.get("recorded", r["requests"]) for r in reports]
    lat = [r.get("latency_us") or {} for r in reports]
    out = {
        "hosts": len(reports),
        "requests": sum(r["requests"] for r in reports),
        "bytes": sum(r["bytes"] for r in reports),
        # the hosts ran the same window; the longest is the honest divisor
        "duration_us": max(r["duration_us"] for r in reports),
        "errors": _sum_errors(reports),
        "latency_us": {
            "min": min((x.get("min") for x in lat if x.get("min") is not None), default=None),
            "max": max((x.get("max") for x in lat if x.get("max") is not None), default=None),
            "mean": _weighted_mean([(x.get("mean"), n) for x, n in zip(lat, recorded)]),
            "stdev": None,  # not derivable from the parts without their sums of squares
        },
        "percentiles_us": [[p, percentile(hist, p)] for p in WRK_PERCENTILES],
        "percentiles_from": "merged histogram",
        "histogram_us": hist,
        "recorded": sum(recorded),
    }
    if all(r.get("co_synthetic") is not None for r in reports):
        out["co_synthetic"] = sum(r["co_synthetic"] for r in reports)
    return out


def _merge_timelines(docs):
    """Per-second counts summed by t. A per-second p99 of the merged load
    is not known (no per-second histograms), so it is null."""
    by_t = {}
    for d in docs:
        for row in d.get("timeline") or []:
            slot = by_t.setdefault(row["t"], {"t": row["t"], "completed": 0, "errors": 0,
                                              "p99_us": None})
            slot["completed"] += row.get("completed", 0) or 0
            slot["errors"] += row.get("errors", 0) or 0
    return [by_t[t] for t in sorted(by_t)]


def merge_load(docs):
    """`c10k load --json` documents from several hosts (CONTRACTS.md 1)."""
    if len(docs) == 1:
        return dict(docs[0], hosts=1)
    if any(not d.get("histogram") and d.get("requests") for d in docs):
        raise MergeError("a host's c10k load report has requests but no histogram")
    hist = merge_histograms(d.get("histogram") or [] for d in docs)
    reqs = [d.get("requests", 0) or 0 for d in docs]
    lat = {k: percentile(hist, p) for k, p in LOAD_PERCENTILES}
    lat["max"] = max(((d.get("latency_us") or {}).get("max") or 0 for d in docs), default=None)
    lat["mean"] = _weighted_mean([((d.get("latency_us") or {}).get("mean"), n)
                                  for d, n in zip(docs, reqs)])
    invalid = ["host %d: %s" % (i, d.get("invalid_reason") or "invalid")
               for i, d in enumerate(docs, 1) if not d.get("valid", True)]
    out = {
        "hosts": len(docs),
        "rate_target": sum(d.get("rate_target", 0) or 0 for d in docs),
        "rate_achieved": sum(d.get("rate_achieved", 0) or 0 for d in docs),
        "requests": sum(reqs),
        "errors": _sum_errors(docs),
        "latency_us": lat,
        "latency_mean_us": lat["mean"],
        "percentiles_from": "merged histogram",
        "histogram": hist,
        "timeline": _merge_timelines(docs),
        "client_cpu": sum(d.get("client_cpu", 0) or 0 for d in docs),
        "valid": not invalid,
        "invalid_reason": "; ".join(invalid) or None,
        "connections": sum(d.get("connections", 0) or 0 for d in docs),
        "duration_s": max(d.get("duration_s", 0) or 0 for d in docs),
        "in_flight_mean": sum(d.get("in_flight_mean", 0) or 0 for d in docs),
        "per_connection_completed": [n for d in docs
                                     for n in d.get("per_connection_completed") or []],
    }
    return out
