"""The cold-cache finding: how long each event loop was held up by the disk
per second of load, and what the answers (epoll --helpers, libuv --fs-pool,
io_uring) did about it, in req/s and p99.

The numbers come from a cold-cache scenario (one with "cold" settings, the
slowest disk when there are several): the loop's own stall counter
(loop_stall_ms_per_s: iterations over 1 ms, loopstat.h), the time the
server's threads spent waiting for the disk (blkio_delay_by_thread: threads
in state D, sampled), and the window's residency (resident_start_frac).
Clauses that explain rather than state are written only when their premise
holds:

  "the window began cold"         every cell's root was at most 1% in memory
                                  as its window began
  "waiting for the disk in N"     the loop's thread was in D for at least
                                  half of the loop's stalled time
  "its helpers waited in its      the answer's loop stalled at most a quarter
   place"                         of its plain model's, and threads other
                                  than the loop waited for the disk
  "N× model's req/s"              the two req/s ranges are apart (summary.apart)
"""

from . import fmt
from .data import base_model, variant_flags
from .summary import apart, contenders, flagged_note

EVENT_LOOPS = ("epoll", "libevent", "libuv", "uring", "coro")
ANSWERS = {"epoll": "helpers", "libuv": "fs-pool"}   # plain model: its answer's flag
COLD_START = 0.01      # a window "began cold" with at most 1% of the root in memory
DISK_SHARE = 0.5       # the loop's thread in D for at least half its stalled time
TAKEN_AWAY = 0.25      # an answer's stalls at most a quarter of its plain model's
LOOP_THREAD = "c10k"   # the loop's thread name (helpers: c10k-helper, io-wq: iou-wrk)
# Who waited in the loop's place, by thread name (libuv's pool threads carry
# the loop's name: see answer_part).
WAITERS = {"c10k-helper": "its helpers", "iou-wrk": "io_uring's io-wq threads"}


def cold_scenario(run):
    """The cold-cache scenario with the slowest disk, or None."""
    scs = [s for s in run.scenarios if isinstance(s.d.get("cold"), dict) and not s.open_loop]
    if not scs:
        return None
    return min(scs, key=lambda s: (s.d["cold"].get("disk_iops") is None,
                                   s.d["cold"].get("disk_iops") or 0))


def per_s(cell, thread):
    """ms per second of window that the threads named `thread` waited for
    the disk (median over rounds), or None."""
    vals = []
    for r in cell.repeats:
        by, secs = r.get("blkio_delay_by_thread"), r.get("blkio_delay_span_s")
        if isinstance(by, dict) and secs:
            vals.append(sum(v for k, v in by.items() if k == thread or
                            (thread is None and k != LOOP_THREAD)) / secs)
    vals.sort()
    return vals[len(vals) // 2] if vals else None


def cold_clause(cells):
    """How cold the windows were: stated always, called cold only when so."""
    starts = [c.med("resident_start_frac") for c in cells if c.med("resident_start_frac")
              is not None]
    ends = [c.med("resident_end_frac") for c in cells if c.med("resident_end_frac") is not None]
    if not starts:
        return "how cold the cache was is unknown"
    lo, hi = ("%.0f" % (100 * min(ends)), "%.0f" % (100 * max(ends))) if ends else ("?", "?")
    text = "at most %.1f%% of the root in memory as a window began, %s%% as it ended" % (
        100 * max(starts), lo if lo == hi else "%s–%s" % (lo, hi))
    if max(starts) <= COLD_START:
        return "every window began cold: " + text
    return "NOT cold: " + text


def measured(c, run, sc):
    """'B req/s, p99 C ms' of a cell, with its flags."""
    return "%s req/s, p99 %s ms%s" % (fmt.rps(c.med("rps")), fmt.ms(c.med("lat_p99_us")),
                                      flagged_note(run, sc.id, c.model))


def plain_part(run, sc, c):
    """A plain event loop: its stalls, and whether its own thread was waiting
    for the disk in them. Without the stall counter (a binary without
    --stats-file), how long its thread waited for the disk."""
    stall = c.med("loop_stall_ms_per_s")
    mine = per_s(c, LOOP_THREAD)
    if stall is None:
        text = "%s's loop thread waited for the disk %s ms of every second" % (
            c.model, fmt.num(mine, 0))
    else:
        text = "%s's loop was stalled %s ms of every second" % (c.model, fmt.num(stall, 0))
        if mine is not None and stall and mine >= DISK_SHARE * stall:
            text += ", its thread waiting for the disk in %s ms of them" % fmt.num(mine, 0)
    return text + " (%s)" % measured(c, run, sc)


def stalled(c):
    """A loop's ms/s held up: its stall counter, else its thread's disk wait."""
    v = c.med("loop_stall_ms_per_s")
    return v if v is not None else per_s(c, LOOP_THREAD)


def vs(c, base):
    """'1.5× epoll's' when the req/s ranges are apart, else 'level with epoll'."""
    a, b = c.stat("rps"), base.stat("rps")
    if a is None or b is None or not b.median:
        return None
    if apart(a, b):
        return "%s %s's req/s" % (fmt.times(a.median, b.median), base.model)
    return "level with %s's req/s within the spread" % base.model


def answer_part(run, sc, c, base):
    """An answer (a variant with --helpers or --fs-pool, or uring): its stalls
    against the plain loop's, where the waiting went, req/s and p99."""
    stall = stalled(c)
    if c.med("loop_stall_ms_per_s") is None and "fs-pool" in variant_flags(c.model):
        # libuv's pool threads carry the loop's name: without the stall
        # counter, the loop's own waiting cannot be told apart
        return "%s: its loop and pool threads together waited for the disk %s ms/s (%s)" % (
            c.model, fmt.num(stall, 0), measured(c, run, sc))
    text = "%s: %s ms/s (%s" % (c.model, fmt.num(stall, 0), measured(c, run, sc))
    cmp = vs(c, base) if base else None
    text += ", %s)" % cmp if cmp else ")"
    others, who = per_s(c, None), waiter(c)
    if "fs-pool" in variant_flags(c.model) and stall is not None:
        # libuv's pool threads carry the loop's name: what the loop did not
        # stall of that name's waiting, at least, was the pool's
        mine = per_s(c, LOOP_THREAD)
        others = max(0.0, mine - stall) if mine is not None else None
        who = "libuv's thread pool"
    base_stall = stalled(base) if base else None
    if (base_stall and stall is not None and stall <= TAKEN_AWAY * base_stall
            and others and others > 0):
        text += ", %s waiting %s ms/s in its place (%s in all)" % (
            who, fmt.num(others, 0), fmt.count(c.med("threads_max"), "thread"))
    return text


def waiter(c):
    """The name of the threads, other than the loop's, that waited longest."""
    totals = {}
    for r in c.repeats:
        for k, v in (r.get("blkio_delay_by_thread") or {}).items():
            if k != LOOP_THREAD:
                totals[k] = totals.get(k, 0) + v
    top = max(totals, key=totals.get) if totals else None
    return WAITERS.get(top, "its other threads")


def blocking_part(run, sc, c):
    """A thread or process per connection: what its blocking cost."""
    n = c.med("threads_max") if base_model(c.model) == "threaded" else c.med("procs_max")
    noun = "thread" if base_model(c.model) == "threaded" else "process"
    return "%s %s with %s (%s KiB per connection)" % (
        c.model, measured(c, run, sc), fmt.count(n, noun), fmt.kib(c.med("mem_per_conn_kib")))


def disk_finding(run):
    """The cold-cache finding, or None when the run has no cold scenario or
    no event loop counted its stalls."""
    sc = cold_scenario(run)
    if sc is None:
        return None
    cells = {c.model: c for c in contenders(run, sc.id)}
    counted = {m: c for m, c in cells.items() if base_model(m) in EVENT_LOOPS
               and stalled(c) is not None}
    plain = [m for m in counted if ":" not in m and m != "uring"]
    if not counted:
        return None
    parts = [plain_part(run, sc, counted[m]) for m in plain]
    for m, c in counted.items():
        flag = ANSWERS.get(base_model(m))
        if m == "uring" or (flag and flag in variant_flags(m)):
            base = counted.get(base_model(m)) if m != "uring" else \
                counted.get("epoll") or next((counted[p] for p in plain), None)
            parts.append(answer_part(run, sc, c, base))
    blocking = [blocking_part(run, sc, c) for m, c in cells.items()
                if base_model(m) in ("threaded", "prefork")]
    text = "**Waiting for the disk** (%s; %s): " % (sc.label, cold_clause(cells.values()))
    text += "; ".join(parts)
    if blocking:
        text += ". A blocking model needs no answer, only threads: " + "; ".join(blocking)
    return text + "."
