"""The same load on different links (c10k bench --profile links, --netns,
--link-rate): one table per load with each model's req/s, p99, threads and
memory per connection on every link, and the finding of what a slow link
does to a thread per connection.

Only runs whose scenarios differ in their link get these; a run on one
link has nothing to compare.
"""

import re

from . import fmt
from .data import architecture
from .page import Row, Table, TCell

LINK_COLS = [("rps", "req/s", fmt.rps), ("lat_p99_us", "p99 ms", fmt.ms),
             ("threads_max", "threads", lambda v: fmt.num(v, 0)),
             ("mem_per_conn_kib", "KiB/conn", fmt.kib)]
RATE_RE = re.compile(r"\b(\d+)(k|m|g)bit\b")
RATE_MULT = {"k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9}


def load_key(sc):
    """What a scenario asks of the server, whatever the link."""
    slow = (sc.slow.get("kind"), sc.slow.get("count")) if sc.slow else None
    return (sc.kind, sc.size, bool(sc.keepalive), sc.connections, slow)


def link_loads(run):
    """[(label, {link: scenario})] for every load run on two or more links,
    links in the run's order."""
    links = []
    for sc in run.scenarios:
        if sc.link not in links:
            links.append(sc.link)
    if len(links) < 2:
        return [], links
    loads, order = {}, []
    for sc in run.scenarios:
        if sc.open_loop:
            continue
        k = load_key(sc)
        if k not in loads:
            loads[k] = {}
            order.append(k)
        loads[k][sc.link] = sc
    out = []
    for k in order:
        if len(loads[k]) < 2:
            continue
        first = next(iter(loads[k].values()))
        label = first.label.split(", " + first.link)[0] if first.link != "loopback" \
            else first.label
        out.append((label, loads[k]))
    return out, links


def size_words(n):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def link_rate_bps(link):
    """The shaped rate a link name carries ('veth 100mbit' -> 1e8), or None."""
    m = RATE_RE.search(link or "")
    return int(m.group(1)) * RATE_MULT[m.group(2)] if m else None


def link_table(run, by_link, links):
    """One load: a row per model, req/s, p99, threads, KiB/conn per link."""
    present = [lk for lk in links if lk in by_link]
    rows = []
    for m in run.models:
        cells = [run.cell(m, by_link[lk].id) for lk in present]
        if not any(cells):
            continue
        out = [TCell(m, swatch=run.colours.get(m))]
        for c in cells:
            for key, _, f in LINK_COLS:
                if c is None:
                    out.append(TCell("–"))
                elif c.failed:
                    out.append(TCell("failed"))
                else:
                    out.append(TCell(f(c.med(key))))
        marks = ["%s: %s" % (lk, ", ".join(([c.status] if c.status != "ok" else []) + c.flags))
                 for lk, c in zip(present, cells) if c is not None and (c.status != "ok"
                                                                        or c.flags)]
        out.append(TCell("; ".join(marks) or "ok", left=True, wrap=True))
        rows.append(Row(out, "" if not marks else "flagged"))
    head = ["model"] + ["%s %s" % (h, lk) for lk in present for _, h, _ in LINK_COLS] + \
        ["status"]
    return Table(head, rows, caption="Medians over rounds. threads: the most the server ran "
                 "in the window (all its processes); KiB/conn: what its memory (PSS) grew by "
                 "per connection held.", left=1)


def slow_link_finding(run):
    """What a slow link does to a thread per connection: on the slowest
    shaped link, at the most connections, the thread-per-connection model's
    threads against an event loop's, with their rates. The clause that the
    link set the rate is only added when both moved at least 80% of it."""
    loads, links = link_loads(run)
    shaped = [lk for lk in links if link_rate_bps(lk)]
    if not loads or not shaped:
        return None
    slowest = min(shaped, key=link_rate_bps)
    cands = [(label, by) for label, by in loads if slowest in by]
    if not cands:
        return None
    label, by = max(cands, key=lambda lb: (lb[1][slowest].connections, lb[1][slowest].size or 0))
    sc = by[slowest]
    per_conn = [c for c in run.cells_of(sc.id) if not c.failed
                and architecture(c.model) == "thread per connection"]
    loops = [c for c in run.cells_of(sc.id) if not c.failed
             and architecture(c.model) == "event loop" and c.model != "nginx"]
    if not per_conn or not loops:
        return None
    t = per_conn[0]
    loop = min(loops, key=lambda c: c.med("threads_max") or 1e9)
    tt, lt = t.med("threads_max"), loop.med("threads_max")
    if tt is None or lt is None:
        return None
    # "one per connection" only when it ran about that many
    each = ", one per connection" if abs(tt - sc.connections) <= 0.1 * sc.connections else ""
    text = ("**A slow link** (%s on %s): %s ran %s for its %s connections%s, %s %s in all; "
            "%s KiB of memory per connection against %s" % (
                label, slowest, t.model, fmt.count(tt, "thread"), fmt.rps(sc.connections), each,
                loop.model, fmt.count(lt, "thread"), fmt.kib(t.med("mem_per_conn_kib")),
                fmt.kib(loop.med("mem_per_conn_kib"))))
    rate = link_rate_bps(slowest) / 8.0
    got = {c.model: c.med("bytes") / c.med("duration_s") if c.med("bytes") is not None
           and c.med("duration_s") else None for c in (t, loop)}
    if all(v is not None and v >= 0.8 * rate for v in got.values()):
        text += (". Both kept the link busy (%s and %s MB/s of its %s), so the link, not the "
                 "model, set the pace: %s and %s req/s" % (
                     fmt.num(got[t.model] / 1e6), fmt.num(got[loop.model] / 1e6),
                     fmt.num(rate / 1e6), fmt.rps1(t.med("rps")), fmt.rps1(loop.med("rps"))))
    else:
        text += "; %s served %s req/s, %s %s" % (t.model, fmt.rps1(t.med("rps")), loop.model,
                                                fmt.rps1(loop.med("rps")))
    # an answer shared fairly with every other connection takes this long
    share_s = sc.connections * (sc.size or 0) / rate
    window = t.med("duration_s")
    if window and share_s > window:
        text += (" (%s connections sharing %s MB/s take about %.0f s for each %s answer, "
                 "longer than the %.0f s window)" % (fmt.rps(sc.connections),
                                                     fmt.num(rate / 1e6), share_s,
                                                     size_words(sc.size), window))
    base = by.get("loopback")
    bt = run.cell(t.model, base.id) if base else None
    if bt is not None and not bt.failed and bt.med("rps"):
        text += ". On loopback the same load ran at %s req/s with %s" % (
            fmt.rps(bt.med("rps")), fmt.count(bt.med("threads_max"), "thread"))
    return text + "."
