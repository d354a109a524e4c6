"""c10k report --compare RUN_A RUN_B: compare-<A>.md and compare-<A>.html.

Each cell (model x scenario in both runs) shows A and B as median (min–max)
and the delta of the medians (an open-loop cell: its knee, or a crossover's
p99 at each connection count). A delta is marked "changed" only where the
two min–max ranges do not overlap, which needs at least two rounds in each
run; with one round the spread is unknown and nothing is marked. Charts of
the two runs sit side by side on a shared axis.
"""

import os

from . import charts as C
from . import fmt
from .build import rps_getter
from .colours import palette
from .data import Run, Stat, is_num, load, stat_of
from .page import Bullets, Figures, Heading, Legend, Page, Para, Row, Table, TCell
from .page import write_html, write_md

METRICS = [
    ("rps", "req/s", fmt.rps),
    ("lat_p99_us", "p99 ms", fmt.ms),
    ("cpu_us_per_req", "CPU µs/req", fmt.num),
    ("mem_per_conn_kib", "KiB/conn", fmt.kib),
    ("ctx_vol_per_req", "vol sw/req", fmt.switches),
    ("syscalls_per_req", "syscalls/req", fmt.num),
]


def changed(sa, sb):
    """True when both runs have a spread and their ranges do not overlap."""
    if sa is None or sb is None or sa.n < 2 or sb.n < 2:
        return False
    return sb.min > sa.max or sb.max < sa.min


def delta(sa, sb):
    if sa is None or sb is None or not sa.median:
        return fmt.NA
    return "%+.1f%%" % (100.0 * (sb.median - sa.median) / sa.median)


def scenario_table(a, b, sc, changes):
    cols = [(head, lambda c, k=key: c.stat(k), f) for key, head, f in METRICS]
    return ab_table(a, b, sc, cols, changes)


def ab_table(a, b, sc, cols, changes, caption=None):
    """A row per model in either run: for each column (head, get(cell) ->
    Stat, format), A, B and the change; what changed beyond the noise is
    also appended to changes."""
    rows = []
    for m in a.models + [x for x in b.models if x not in a.models]:
        ca, cb = a.cell(m, sc.id), b.cell(m, sc.id)
        if not ca or not cb:
            continue
        cells = [TCell(m, swatch=a.colours.get(m))]
        for head, get, f in cols:
            sa, sb = get(ca), get(cb)
            d = delta(sa, sb)
            ch = changed(sa, sb)
            cells += [TCell(fmt.with_spread(sa, f)), TCell(fmt.with_spread(sb, f)),
                      TCell("**%s changed**" % d if ch else d)]
            if ch:
                changes.append("%s, %s: %s %s → %s (%s)" % (
                    m, sc.label, head, fmt.with_spread(sa, f), fmt.with_spread(sb, f), d))
        cells.append(TCell(status(ca) + " → " + status(cb), left=True))
        rows.append(Row(cells, "" if ca.clean and cb.clean else "flagged"))
    head = ["model"]
    for h, _, _ in cols:
        head += ["%s A" % h, "%s B" % h, "Δ %s" % h]
    return Table(head + ["status A → B"], rows, caption=caption)


def knee_stat(c):
    """The knee as a Stat: over the rounds' knees when every round had one."""
    if c.failed or c.knee is None:
        return None
    ks = c.d.get("knee_by_round")
    if isinstance(ks, list) and len(ks) > 1 and all(is_num(k) for k in ks):
        return stat_of(ks)
    return Stat(c.knee, c.knee, c.knee, 1)


def step_stat(c, connections, key):
    """A crossover step's figure as a Stat (over rounds when it has them);
    None for a client-bound step, whose figures are not the server's."""
    st = c.step_at(connections) if not c.failed else None
    if st is None or st.get("client_bound") or not is_num(st.get(key)):
        return None
    r = (st.get("over_rounds") or {}).get(key) if isinstance(st.get("over_rounds"),
                                                              dict) else None
    if isinstance(r, dict) and all(is_num(r.get(k)) for k in ("min", "median", "max")):
        return Stat(r["min"], r["median"], r["max"], st.get("rounds") or 1)
    return Stat(st[key], st[key], st[key], 1)


def open_table(a, b, sc, changes):
    """An open-loop scenario: the knee of a ladder, or the p99 at each
    connection count of a crossover, A against B."""
    if sc.crossover:
        conns = sorted({s.get("connections") for r in (a, b) for c in r.cells_of(sc.id)
                        for s in c.steps if s.get("connections")})
        cols = [("p99 ms, %s conns" % "{:,}".format(n),
                 lambda c, n=n: step_stat(c, n, "lat_p99_us"), fmt.ms) for n in conns]
    else:
        cols = [("knee req/s", knee_stat, fmt.rps)]
    return ab_table(a, b, sc, cols, changes,
                    caption="n/a: no knee (or a client-bound step), never a zero.")


def status(c):
    return c.status + ("" if not c.flags else " (%s)" % ", ".join(c.flags))


def shared_range(runs, group, key, div=1.0, logy=False):
    vals = []
    for run in runs:
        for s in group.closed:
            for c in run.cells_of(s.id):
                st = c.stat(key)
                if st:
                    vals += [st.min / div, st.max / div]
    pos = [v for v in vals if v > 0]
    if not pos:
        return None
    return (C.log_floor(min(pos)) if logy else 0, max(pos) * (1.5 if logy else 1.08))


def side_by_side(cha, chb, a, b, ga, gb):
    figs = []
    for key, div, logy, label in (("rps", 1.0, False, "requests per second"),
                                  ("lat_p99_us", 1000.0, True, "p99 latency (ms, log scale)")):
        yr = shared_range((a, b), ga, key, div, logy)
        for ch, run, g, tag in ((cha, a, ga, "A"), (chb, b, gb, "B")):
            clusters = [(s.short if len(g.closed) > 1 else s.label, s.id) for s in g.closed]
            models = [m for m in run.models if any(run.cell(m, s.id) for s in g.closed)
                      and (key == "rps" or m != "ceiling")]
            figs.append(C.bars(ch, "%s-%s.svg" % ("rps" if key == "rps" else "p99",
                                                  C.slug(g.id)),
                               "%s %s: %s (%s)" % (tag, "req/s" if key == "rps" else "p99",
                                                   g.label, run.id),
                               label, clusters, models, rps_getter(run, key, div), logy=logy,
                               yrange=yr, note="Whiskers: min–max over rounds. Hatched: "
                               "flagged or degraded."))
    return figs


def compare(dir_a, dir_b, out=None):
    """Write the comparison; return the paths written and chart errors."""
    a, b = Run(load(dir_a), dir_a), Run(load(dir_b), dir_b)
    colours = palette(a.models + [m for m in b.models if m not in a.models])
    a.colours = b.colours = colours
    md_path = out or os.path.join(dir_b, "compare-%s.md" % C.slug(a.id))
    html_path = os.path.splitext(md_path)[0] + ".html"
    base = os.path.splitext(os.path.basename(md_path))[0]
    chart_dir = os.path.join(os.path.dirname(md_path) or ".", "charts")
    cha = C.Charts(chart_dir, colours, prefix=base + "-a-")
    chb = C.Charts(chart_dir, colours, prefix=base + "-b-")

    page = Page("c10k bench compare: %s → %s" % (a.id, b.id))
    page.add(Para("A = %s (%d round%s), B = %s (%d round%s). Δ is B's median relative to A's. "
                  "A delta is marked **changed** only where the min–max ranges of A and B do "
                  "not overlap; with fewer than two rounds in either run the spread is unknown "
                  "and nothing is marked." % (a.id, a.rounds, "" if a.rounds == 1 else "s",
                                              b.id, b.rounds, "" if b.rounds == 1 else "s")),
             Legend([(m, colours[m]) for m in colours]))
    changes, sections = [], []
    b_groups = {g.key: g for g in b.groups()}
    for ga in a.groups():
        gb = b_groups.get(ga.key)
        if gb and ga.closed and gb.closed:
            sections.append((Heading(3, ga.label, anchor="cmp-" + ga.id),
                             Figures(side_by_side(cha, chb, a, b, ga, gb))))
    tables = []
    for sc in a.scenarios:
        if sc.id in b.by_id and any(b.cell(m, sc.id) for m in a.models):
            tables += [Heading(3, sc.label, anchor="cmpt-" + sc.id),
                       open_table(a, b, sc, changes) if sc.open_loop else
                       scenario_table(a, b, sc, changes)]
    page.add(Heading(2, "What changed"),
             Bullets(changes) if changes else
             Para("No cell changed beyond the spread of both runs%s." % (
                 "" if min(a.rounds, b.rounds) >= 2 else
                 " (one of the runs has a single round, so no spread was measured)")))
    if sections:
        page.add(Heading(2, "Side by side"),
                 Para("A on the left, B on the right, on the same axis."))
        for h, f in sections:
            page.add(h, f)
    page.add(Heading(2, "Every cell"), *tables)
    write_md(page, md_path)
    write_html(page, html_path)
    return [html_path, md_path], cha.errors + chb.errors

