"""'What this run says': a ranked table per scenario group, then at most
MAX_FINDINGS findings that state trade-offs with numbers.

Ranking rules (also printed under each table):
  * only clean cells rank: status ok and no flag (starved, noisy,
    client-bound); a model with any other cell in the group is listed after
    the ranked ones, without a rank, and none of its values gets a star;
  * ranked by the mean over the group's closed-loop scenarios of req/s as a
    percentage of the best clean cell (a failed cell counts 0); a group with
    only an open-loop scenario ranks by the knee;
  * the ceiling server (a reference that does no real work) is shown last,
    never ranked.

A finding states numbers; a clause that explains them is only added when
the data meets the clause's premise (see each function).
"""

from . import fmt
from .data import Stat, architecture
from .links import slow_link_finding
from .page import Row, TCell

MAX_FINDINGS = 8
CEILING = "ceiling"


def contenders(run, sid):
    """Cells of a scenario that can be compared: not failed, not the ceiling."""
    return [c for c in run.cells_of(sid) if not c.failed and c.model != CEILING]


def problems(cell):
    """Short words for what keeps a cell from ranking; [] when clean."""
    out = []
    if cell.failed:
        return ["failed"]
    if cell.status == "degraded":
        err = cell.med("errors_total")
        out.append("degraded, %s errors" % fmt.rps(err) if err else "degraded")
    for f in cell.flags:
        if f == "noisy" and cell.spread_pct is not None:
            out.append("noisy, spread %.0f%%" % cell.spread_pct)
        elif f == "starved" and cell.med("accept_queue_wait_frac"):
            out.append("starved, accept queue busy %.0f%% of the window"
                       % (100 * cell.med("accept_queue_wait_frac")))
        else:
            out.append(f)
    return out


def best_rps(run, sid):
    """The best median req/s among clean cells (None when no cell is clean)."""
    vals = [c.med("rps") for c in contenders(run, sid) if c.clean and c.med("rps") is not None]
    return max(vals) if vals else None


# --- the ranked table ------------------------------------------------------------


class RankedRow:
    def __init__(self, model):
        self.model = model
        self.rank = None
        self.score = 0.0
        self.pct = {}       # sid -> Stat-like (min, median, max) percentages or None
        self.cells = []
        self.clean = True
        self.status = []


def group_rows(run, group):
    """RankedRow list in display order: ranked rows, unranked rows, ceiling."""
    rows = []
    for m in run.models:
        cells = [run.cell(m, s.id) for s in group.scenarios if run.cell(m, s.id)]
        if not cells:
            continue
        r = RankedRow(m)
        r.cells = cells
        r.clean = all(c.clean for c in cells) and m != CEILING
        for c in cells:
            r.status += ["%s: %s" % (c.scenario.short, p) if len(group.scenarios) > 1 else p
                         for p in problems(c)]
        for s in group.closed:
            c, best = run.cell(m, s.id), best_rps(run, s.id)
            st = c.stat("rps") if c else None
            r.pct[s.id] = None if st is None or not best else \
                Stat(100.0 * st.min / best, 100.0 * st.median / best, 100.0 * st.max / best, st.n)
        if group.closed:
            r.score = sum((r.pct[s.id].median if r.pct[s.id] else 0.0)
                          for s in group.closed) / len(group.closed)
        else:
            knees = [c.knee or 0 for c in cells]
            r.score = max(knees) if knees else 0
        rows.append(r)
    ranked = sorted((r for r in rows if r.clean), key=lambda r: -r.score)
    for i, r in enumerate(ranked):
        r.rank = i + 1
    rest = sorted((r for r in rows if not r.clean and r.model != CEILING),
                  key=lambda r: -r.score)
    return ranked + rest + [r for r in rows if r.model == CEILING]


def ref_scenario(group):
    """Where the table's cost columns come from: the group's closed scenario
    with the most connections held (or its open-loop one at the knee)."""
    if group.closed:
        return max(group.closed, key=lambda s: (s.held, s.connections))
    return group.open[0]


def cost(run, model, sc, key):
    """Stat of a cost metric for the table: over rounds in a closed scenario,
    at the knee step in an open-loop one."""
    c = run.cell(model, sc.id)
    if c is None or c.failed:
        return None
    if sc.open_loop:
        v = c.step_value(key)
        return None if v is None else Stat(v, v, v, 1)
    return c.stat(key)


def winners(rows, values, better):
    """Models whose value is the best among ranked rows (they get the star)."""
    vals = {r.model: values.get(r.model) for r in rows if r.rank}
    vals = {m: v for m, v in vals.items() if v is not None}
    if len(vals) < 2 or len(set(vals.values())) == 1:   # a tie for all is no win
        return set()
    best = (max if better == "max" else min)(vals.values())
    return {m for m, v in vals.items() if v == best}


def median_of(stat):
    return None if stat is None else stat.median


def ranked_head(run, group, ref, knee_sc):
    multi = len(group.closed) > 1
    head = ["#", "model"]
    for s in group.closed:
        best = best_rps(run, s.id)
        head.append("req/s%s, %% of %s" % (" " + s.short if multi else "",
                                           fmt.rps(best) if best else "best (none clean)"))
    for s in group.closed:
        head.append("p99 ms" + (" " + s.short if multi else ""))
    if knee_sc:
        head.append("knee req/s (p99 < %s ms)" % fmt.slo(knee_sc.slo_us)
                    if knee_sc.slo_us else "knee req/s")
    at = " (%s)" % ref.short if len(group.scenarios) > 1 else ""
    return head + ["CPU µs/req" + at, "KiB/conn" + at, "status"]


def ranked_caption(group, rows, knee_sc):
    rounds = max((c.rounds for r in rows for c in r.cells), default=1)
    text = ("Ranked by req/s as a %% of the best clean cell%s. Only clean cells rank (status "
            "ok, no flag); the others follow unranked and get no ★. %s" % (
                ", averaged over the group's scenarios" if len(group.closed) > 1 else "",
                "Median (min–max) over %d rounds." % rounds if rounds > 1 else
                "One round: no spread was measured."))
    if knee_sc:
        text += (" Knee: the highest offered rate whose p99 stayed under the SLO in the "
                 "open-loop ladder (none: not even at the lowest step; not measured: the load "
                 "generator limited every step).")
    if any(r.model == CEILING for r in rows):
        text += " ceiling: the reference server that answers from memory, never ranked."
    return text


def pct_missing(c):
    """What the % column says when a row has no percentage: its cell failed,
    or no cell of the scenario is clean, so there is no best to divide by."""
    if c is None:
        return "–"
    return "failed" if c.failed else fmt.NA


def ranked_table(run, group):
    """(head, rows, caption) of one group's ranked table, as page cells."""
    if group.crossover:
        return crossover_table(run, group)
    rows = group_rows(run, group)
    ref = ref_scenario(group)
    knee_sc = next((s for s in group.open if s.kind == "latency"), None)
    cell = run.cell
    win = {}
    for s in group.closed:
        win["pct", s.id] = winners(rows, {r.model: median_of(r.pct[s.id]) for r in rows}, "max")
        win["p99", s.id] = winners(rows, {r.model: cell(r.model, s.id).med("lat_p99_us")
                                          for r in rows if cell(r.model, s.id)}, "min")
    if knee_sc:
        win["knee"] = winners(rows, {r.model: cell(r.model, knee_sc.id).knee
                                     for r in rows if cell(r.model, knee_sc.id)}, "max")
    for key in ("cpu_us_per_req", "mem_per_conn_kib"):
        win[key] = winners(rows, {r.model: median_of(cost(run, r.model, ref, key))
                                  for r in rows}, "min")
    out = []
    for r in rows:
        m = r.model
        cells = [TCell(r.rank or ("ref" if m == CEILING else "–")),
                 TCell(m, swatch=run.colours.get(m))]
        for s in group.closed:
            st = r.pct[s.id]
            cells.append(TCell(fmt.with_spread(st, lambda v: "%.0f" % v, "%") if st else
                               pct_missing(cell(m, s.id)), win=m in win["pct", s.id]))
        for s in group.closed:
            c = cell(m, s.id)
            cells.append(TCell(fmt.with_spread(c.stat("lat_p99_us"), fmt.ms) if c else "–",
                               win=m in win["p99", s.id]))
        if knee_sc:
            c = cell(m, knee_sc.id)
            text = "–" if c is None else "failed" if c.failed else \
                fmt.rps(c.knee) if c.knee is not None else \
                "not measured" if c.steps and not steps_shown(c) else "none"
            cells.append(TCell(text, win=m in win["knee"]))
        cells.append(TCell(fmt.with_spread(cost(run, m, ref, "cpu_us_per_req"), fmt.num),
                           win=m in win["cpu_us_per_req"]))
        cells.append(TCell(fmt.with_spread(cost(run, m, ref, "mem_per_conn_kib"), fmt.kib),
                           win=m in win["mem_per_conn_kib"]))
        cells.append(TCell("; ".join(r.status) or "ok", left=True, wrap=True))
        cls = "ref" if m == CEILING else "" if r.rank else \
            "failed" if all(c.failed for c in r.cells) else "flagged"
        out.append(Row(cells, cls))
    return ranked_head(run, group, ref, knee_sc), out, ranked_caption(group, rows, knee_sc)


# --- the crossover table -----------------------------------------------------------


def steps_shown(cell):
    """The steps of an open-loop cell whose figures are the server's: the
    client-bound ones (limited by the generator) are never shown as such."""
    return [] if cell is None or cell.failed else \
        [s for s in cell.steps if not s.get("client_bound")]


def crossover_conns(run, sc):
    conns = sorted({s.get("connections") for c in run.cells_of(sc.id) for s in c.steps
                    if s.get("connections")})
    return conns or sorted(sc.d.get("connections_steps") or [])


def crossover_table(run, group):
    """One row per model: p99 at each connection count, and what the most
    connections cost (memory, threads, switches, syscalls). Not ranked: the
    question is where the models part, not who wins; a ★ marks the lowest
    p99 among clean cells at each count."""
    sc = group.open[0]
    conns = crossover_conns(run, sc)
    top = conns[-1] if conns else None
    cells = [c for c in run.cells_of(sc.id) if c.model != CEILING]
    clean = [c for c in cells if c.clean]

    def at(c, n, key, timing=True):
        """A step's figure; timing figures (latency, costs per request, which
        a lagging generator's bursts change) not from a client-bound step.
        Memory and threads held for n connections are the server's anyway."""
        st = c.step_at(n) if c else None
        if st is None or (timing and st.get("client_bound")):
            return None
        return st.get(key)

    win = {}
    for n in conns:
        vals = {c.model: at(c, n, "lat_p99_us") for c in clean}
        vals = {m: v for m, v in vals.items() if v is not None}
        best = min(vals.values()) if len(set(vals.values())) > 1 else None
        win[n] = {m for m, v in vals.items() if v == best}
    rows = []
    for c in cells:
        out = [TCell(c.model, swatch=run.colours.get(c.model))]
        for n in conns:
            st = c.step_at(n)
            text = "–" if st is None else "client-bound" if st.get("client_bound") else \
                fmt.ms(st.get("lat_p99_us"))
            out.append(TCell(text, win=c.model in win[n]))
        out += [TCell(fmt.kib(at(c, top, "mem_per_conn_kib", False))),
                TCell(fmt.rps(at(c, top, "threads_max", False))),
                TCell(fmt.switches(at(c, top, "ctx_vol_per_req"))),
                TCell(fmt.num(at(c, top, "syscalls_per_req")))]
        out.append(TCell("; ".join(problems(c)) or "ok", left=True, wrap=True))
        rows.append(Row(out, "failed" if c.failed else "" if c.clean else "flagged"))
    n = "{:,}".format(top) if top else "?"
    head = (["model"] + ["p99 ms, %s conns" % "{:,}".format(k) for k in conns] +
            ["KiB/conn at %s" % n, "threads at %s" % n, "vol sw/req at %s" % n,
             "syscalls/req at %s" % n, "status"])
    rate = sc.offered_rps
    caption = ("The same offered rate%s spread over more and more keep-alive connections, so "
               "most of them are idle at any moment. Not ranked: ★ marks the lowest p99 among "
               "clean cells at each count. client-bound: the load generator, not the server, "
               "limited that step." % (" (%s req/s)" % fmt.rps(rate) if rate else ""))
    return head, rows, caption


# --- findings --------------------------------------------------------------------


def closed_scenarios(run, keepalive=True, slow=False):
    return [s for s in run.scenarios if not s.open_loop and bool(s.keepalive) == keepalive
            and bool(s.slow) == slow]


def contended(run):
    """The closed keep-alive scenario with the most connections (no slow clients)."""
    scs = closed_scenarios(run)
    return max(scs, key=lambda s: (s.connections, -(s.size or 0))) if scs else None


def light(run):
    """The closed keep-alive scenario with the fewest connections, smallest file."""
    scs = closed_scenarios(run)
    return min(scs, key=lambda s: (s.size or 0, s.connections)) if scs else None


def medians(run, sid, key, clean_only=False):
    out = {}
    for c in contenders(run, sid):
        v = c.med(key)
        if v is not None and (c.clean or not clean_only):
            out[c.model] = v
    return out


def flagged_note(run, sid, model):
    c = run.cell(model, sid)
    p = problems(c) if c else []
    return " (%s)" % ", ".join(p) if p else ""


def omission_clause(run, sc, model, leader):
    """Why a model with far less throughput shows a lower closed-loop p99:
    only when it served under half the leader's rate and its accept queue
    held at least half the connections (wrk does not time that wait)."""
    c, top = run.cell(model, sc.id), run.cell(leader, sc.id)
    rps, best, q = c.med("rps"), top.med("rps"), c.med("accept_queue_max")
    if None in (rps, best, q) or rps >= 0.5 * best or q < 0.5 * sc.connections:
        return None
    return ("%s's lower p99 (%s ms) came with %.0f%% of %s's rate: its accept queue held up to "
            "%s of the %d connections, and wrk's closed loop does not time that wait"
            % (model, fmt.ms(c.med("lat_p99_us")), 100 * rps / best, leader, fmt.rps(q),
               sc.connections))


def tail_latency(run):
    """Tail latency under load (closed loop, the most connections): the
    worst p99 against the top-ranked model's."""
    sc = contended(run)
    if not sc:
        return None
    p99 = medians(run, sc.id, "lat_p99_us")
    top, who = leader(run, sc.id), "the top-ranked"
    if top is None:   # nothing clean: compare with the fastest, and say it is unranked
        rps = medians(run, sc.id, "rps")
        top, who = max(rps, key=rps.get) if rps else None, "the fastest (no cell is clean)"
    if top not in p99 or len(p99) < 2:
        return None
    # the worst p99 among cells that finished without errors (a degraded
    # cell's p99 is mostly its timeouts), else among all
    ok = [m for m in p99 if m != top and run.cell(m, sc.id).status == "ok"]
    hi = max(ok or [m for m in p99 if m != top], key=p99.get)
    head = "**Tail latency under load** (%s): " % sc.label
    if p99[hi] < 2 * p99[top]:
        text = head + "p99 stayed within 2× of %s's %s ms (%s); the highest was " \
            "%s's %s ms" % (top, fmt.ms(p99[top]), who, hi, fmt.ms(p99[hi]))
    else:
        text = head + "%s's p99 was %s ms%s against %s ms for %s, %s, %s higher" % (
            hi, fmt.ms(p99[hi]), flagged_note(run, sc.id, hi), fmt.ms(p99[top]), top, who,
            fmt.times(p99[hi], p99[top]))
        rps = medians(run, sc.id, "rps")
        if rps.get(hi) and rps.get(top):
            text += ", while it served %.0f%% of %s's requests per second" % (
                100 * rps[hi] / rps[top], top)
    for m in sorted(p99, key=p99.get):
        clause = omission_clause(run, sc, m, top) if p99[m] < p99[top] else None
        if clause:
            text += "; " + clause
            break
    return text + "."


def knee_finding(run):
    """The open-loop knee: how much load each model takes before p99 breaks the SLO."""
    for sc in run.scenarios:
        if sc.kind != "latency":
            continue
        cells = contenders(run, sc.id)
        with_knee = {c.model: c.knee for c in cells if c.knee is not None}
        without = [c for c in cells if c.knee is None and steps_shown(c)]
        unmeasured = [c.model for c in cells if c.knee is None and c.steps
                      and not steps_shown(c)]
        if not with_knee and not without and not unmeasured:
            continue
        slo = fmt.slo(sc.slo_us) if sc.slo_us else "?"
        text = "**Load before the tail breaks** (%s, open loop, p99 target %s ms): " % (
            sc.series if sc.series != sc.label else sc.label, slo)
        parts = []
        if with_knee:
            hi, lo = max(with_knee, key=with_knee.get), min(with_knee, key=with_knee.get)
            parts.append("%s kept p99 under %s ms up to %s req/s offered%s" % (
                hi, slo, fmt.rps(with_knee[hi]), flagged_note(run, sc.id, hi)))
            if lo != hi:
                parts.append("%s only up to %s (%s less)%s" % (
                    lo, fmt.rps(with_knee[lo]), fmt.times(with_knee[hi], with_knee[lo]),
                    flagged_note(run, sc.id, lo)))
        for c in without:
            st = steps_shown(c)[0]
            parts.append("%s never did, even at its lowest step%s (%s req/s, p99 %s ms)" % (
                c.model, "" if st is c.steps[0] else " the load generator did not limit",
                fmt.rps(st["offered_rps"]), fmt.ms(st.get("lat_p99_us"))))
        if unmeasured:
            parts.append("no knee could be measured for %s: the load generator limited every "
                         "step (client-bound)" % fmt.series(unmeasured))
        return text + "; ".join(parts) + "."
    return None


def overload_finding(run):
    """Beyond the closed-loop peak (the overload test): which models kept
    their goodput and which collapsed, at the highest offered rate each one
    ran that is not client-bound."""
    for sc in run.scenarios:
        if sc.kind != "latency":
            continue
        parts = []
        for c in contenders(run, sc.id):
            if not c.peak_closed:
                continue
            over = [s for s in steps_shown(c) if s["offered_rps"] > c.peak_closed
                    and s.get("goodput_rps") is not None]
            if not over:
                continue
            st = over[-1]
            share = 100.0 * st["goodput_rps"] / c.peak_closed
            jain = st.get("fairness_jain")
            parts.append((share, "%s's goodput %s %.0f%% of its peak (%.0f%% offered), %s "
                          "errors, p99.9 %s ms%s%s" % (
                              c.model, "held at" if share >= 90 and not st.get("errors_total")
                              else "fell to", share, 100.0 * st["offered_rps"] / c.peak_closed,
                              fmt.rps(st.get("errors_total")), fmt.ms(st.get("lat_p999_us")),
                              ", Jain fairness %.2f" % jain if jain is not None else "",
                              flagged_note(run, sc.id, c.model))))
        if len(parts) < 2:
            continue
        parts.sort(key=lambda p: -p[0])
        return ("**Overload** (%s at %d conns, open loop, the highest rate offered beyond each "
                "model's closed-loop peak): " % (sc.series, sc.connections)
                + "; ".join(p for _, p in parts) + ".")
    return None


def crossover_finding(run):
    """Where a thread or process per connection departs from the event
    loops as the same rate spreads over more connections: its p99 against
    the best event loop's, at the fewest and the most connections both were
    measured at (steps not client-bound); and whether coroutines follow the
    event loops there."""
    for sc in run.scenarios:
        if not sc.crossover:
            continue
        cells = {c.model: c for c in contenders(run, sc.id)}
        loops = [cells[m] for m in cells if architecture(m) == "event loop"]
        parts = [crossover_pair(run, sc, cells[m], loops) for m in cells
                 if architecture(m) in ("thread per connection", "process per connection")]
        parts = [p for p in parts if p][:1]
        parts += [p for p in (crossover_pair(run, sc, cells[m], loops, short=True)
                              for m in cells if architecture(m) == "coroutines") if p]
        if parts:
            return ("**Idle connections** (%s req/s spread over %s keep-alive connections): "
                    % (fmt.rps(sc.offered_rps) if sc.offered_rps else "one rate",
                       crossover_span(run, sc)) + "; ".join(parts) + ".")
    return None


def crossover_span(run, sc):
    conns = crossover_conns(run, sc)
    return "%s to %s" % ("{:,}".format(conns[0]), "{:,}".format(conns[-1])) if conns else "?"


def p99_against(mine, loops):
    """{connections: (my p99, best event loop, its p99)} where both have a
    step that is not client-bound."""
    mine_p99 = {s["connections"]: s["lat_p99_us"] for s in steps_shown(mine)
                if s.get("lat_p99_us") is not None}
    best = {}
    for c in loops:
        for s in steps_shown(c):
            n, v = s["connections"], s.get("lat_p99_us")
            if v is not None and n in mine_p99 and (n not in best or v < best[n][1]):
                best[n] = (c.model, v)
    return {n: (mine_p99[n],) + best[n] for n in best}


def crossover_pair(run, sc, mine, loops, short=False):
    at = p99_against(mine, loops)
    if len(at) < (1 if short else 2):
        return None
    lo, hi = min(at), max(at)
    top = mine.step_at(hi)
    cost = "with %s and %s KiB per connection%s" % (
        fmt.count(top.get("threads_max"), "thread"), fmt.kib(top.get("mem_per_conn_kib")),
        flagged_note(run, sc.id, mine.model))
    if short:
        return "%s's p99 was %s ms against %s's %s ms at %s connections (%s), %s" % (
            mine.model, fmt.ms(at[hi][0]), at[hi][1], fmt.ms(at[hi][2]), "{:,}".format(hi),
            fmt.times(at[hi][0], at[hi][2]), cost)
    return ("%s's p99 was %s ms against %s's %s ms at %s connections (%s), and %s ms against "
            "%s's %s ms at %s (%s), %s" % (
                mine.model, fmt.ms(at[lo][0]), at[lo][1], fmt.ms(at[lo][2]), "{:,}".format(lo),
                fmt.times(at[lo][0], at[lo][2]), fmt.ms(at[hi][0]), at[hi][1],
                fmt.ms(at[hi][2]), "{:,}".format(hi), fmt.times(at[hi][0], at[hi][2]), cost))


def most_held(run):
    """The closed scenario with the most connections held open."""
    scs = [s for s in run.scenarios if not s.open_loop]
    return max(scs, key=lambda s: (s.held, s.connections)) if scs else None


def per_connection_premise(run, model, sc):
    """(holds, count): a process- or thread-per-connection model shows the
    cost of one per connection only if it ran at least one for every other
    connection held; other models always hold."""
    c = run.cell(model, sc.id)
    kind = architecture(model)
    if kind == "process per connection":
        n = c.med("procs_max")
    elif kind == "thread per connection":
        n = c.med("threads_max")
    else:
        return True, None
    return (n is not None and n >= 0.5 * sc.held), n


def memory_finding(run):
    """Memory per connection where the most connections were held: cells
    that served without errors, models whose figure is the cost of a
    connection (per_connection_premise; a pool's threads exist before the
    connections, so it is left out)."""
    sc = most_held(run)
    if not sc:
        return None
    mem = {m: v for m, v in medians(run, sc.id, "mem_per_conn_kib").items()
           if run.cell(m, sc.id).status == "ok" and architecture(m) != "thread pool"
           and per_connection_premise(run, m, sc)[0]}
    if len(mem) < 2:
        return None
    hi, lo = max(mem, key=mem.get), min(mem, key=mem.get)
    text = "**Memory per connection** (%s, %s connections held): %s (%s) used %s KiB, " \
        "%s (%s) %s KiB" % (sc.label, fmt.rps(sc.held), hi, architecture(hi) or "?",
                            fmt.kib(mem[hi]), lo, architecture(lo) or "?", fmt.kib(mem[lo]))
    if fmt.times(mem[hi], mem[lo]) and mem[hi] >= 2 * mem[lo]:
        text += ", %s less" % fmt.times(mem[hi], mem[lo])
    rest = sorted((m for m in mem if m not in (hi, lo)), key=lambda m: -mem[m])
    if rest:
        text += "; %s" % ", ".join("%s %s KiB" % (m, fmt.kib(mem[m])) for m in rest)
    return text + "."


def cpu_finding(run):
    sc = light(run)
    if not sc:
        return None
    cpu = medians(run, sc.id, "cpu_us_per_req")
    cpu = {m: v for m, v in cpu.items() if v > 0}
    if len(cpu) < 2:
        return None
    hi, lo = max(cpu, key=cpu.get), min(cpu, key=cpu.get)
    head = "**CPU per request** (%s): " % sc.label
    if cpu[hi] < 1.3 * cpu[lo]:
        return head + "within 30%% across models, %s µs (%s) to %s µs (%s)." % (
            fmt.num(cpu[lo]), lo, fmt.num(cpu[hi]), hi)
    sys_hi = run.cell(hi, sc.id).med("cpu_sys_us_per_req")
    kern = " (%.0f%% of it in the kernel)" % (100 * sys_hi / cpu[hi]) if sys_hi is not None else ""
    return head + "%s spent %s µs of server CPU per request%s, %s %s µs: %s as much." % (
        hi, fmt.num(cpu[hi]), kern, lo, fmt.num(cpu[lo]), fmt.times(cpu[hi], cpu[lo]))


def slow_finding(run):
    """Tolerance of slow clients: each model's throughput with slow clients
    held, as a share of its own throughput on the same load without them."""
    for sc in run.scenarios:
        if not sc.slow or sc.open_loop:
            continue
        base = next((s for s in run.scenarios if not s.slow and not s.open_loop
                     and s.size == sc.size and s.keepalive == sc.keepalive
                     and s.connections == sc.connections and s.link == sc.link), None)
        kept = {}
        for c in contenders(run, sc.id):
            b = run.cell(c.model, base.id) if base else None
            if c.med("rps") is not None and b and not b.failed and b.med("rps"):
                kept[c.model] = 100 * c.med("rps") / b.med("rps")
        if len(kept) < 2:
            continue
        order = sorted(kept, key=lambda m: -kept[m])
        held = [m for m in order if kept[m] >= 50]
        fell = [m for m in order if kept[m] < 50]
        text = "**Slow clients** (%s %s clients held beside the load, %s): " % (
            fmt.rps(sc.slow["count"]), sc.slow.get("kind", "slow"), sc.label)
        parts = []
        if held:
            items = ["%s %.0f%%" % (m, kept[m]) for m in held]
            items[0] = "%s kept %.0f%%" % (held[0], kept[held[0]])
            parts.append("%s of %s throughput without them" % (
                fmt.series(items), "its" if len(held) == 1 else "their"))
        for m in fell:
            c = run.cell(m, sc.id)
            parts.append("%s fell to %.0f%% (%s req/s with %s in %s%s)" % (
                m, kept[m], fmt.rps(c.med("rps")), fmt.count(c.med("threads_max"), "thread"),
                fmt.count(c.med("procs_max"), "process"),
                ", %s timeouts" % fmt.rps(c.med("errors_timeout")) if c.med("errors_timeout")
                else ""))
        return text + "; ".join(parts) + "."
    return None


def leader(run, sid):
    """The top ranked model of a scenario (clean cells only), or None."""
    rps = medians(run, sid, "rps", clean_only=True)
    return max(rps, key=rps.get) if rps else None


def apart(sa, sb):
    """Two Stats differ beyond their spread: ranges that do not overlap with
    two or more rounds each; with one round, at least 5% apart."""
    if sa is None or sb is None:
        return False
    if sa.n >= 2 and sb.n >= 2:
        return sa.min > sb.max or sb.min > sa.max
    return abs(sa.median - sb.median) >= 0.05 * max(sa.median, sb.median)


def size_finding(run):
    """Large files against small: does the leader change with the size?"""
    scs = closed_scenarios(run)
    sizes = sorted({s.size for s in scs if s.size})
    if len(sizes) < 2:
        return None
    large = [s for s in scs if s.size == sizes[-1]]
    small = [s for s in scs if s.size == sizes[0]]
    small, large = min(((a, b) for a in small for b in large),
                       key=lambda p: abs(p[0].connections - p[1].connections))
    a, b = leader(run, small.id), leader(run, large.id)
    if not a or not b:
        return None
    ra, rb = medians(run, small.id, "rps"), medians(run, large.id, "rps")
    text = "**Large files against small** (keep-alive): "
    if a == b:
        return text + "%s led both, %s req/s on %s and %s req/s on %s." % (
            a, fmt.rps(ra[a]), small.label, fmt.rps(rb[b]), large.label)
    text += "%s led on %s (%s req/s)" % (a, small.label, fmt.rps(ra[a]))
    sa, sb = run.cell(a, large.id), run.cell(b, large.id)
    if sa and apart(sa.stat("rps"), sb.stat("rps")):
        return text + " but %s led on %s (%s req/s), where %s served %.0f%%." % (
            b, large.label, fmt.rps(rb[b]), a, 100 * rb[a] / rb[b])
    if sa and a in rb:
        return text + "; on %s it was level with the leader %s within the spread " \
            "(%s against %s req/s)." % (large.label, b, fmt.rps(rb[a]), fmt.rps(rb[b]))
    return text + "; %s led on %s (%s req/s)." % (b, large.label, fmt.rps(rb[b]))


def close_finding(run):
    """What a connection per request costs the top model with Connection: close."""
    for sc in closed_scenarios(run, keepalive=False):
        ka = [s for s in closed_scenarios(run) if s.size == sc.size]
        top = leader(run, sc.id)
        if not ka or not top:
            continue
        kas = min(ka, key=lambda s: abs(s.connections - sc.connections))
        c, k = run.cell(top, sc.id), run.cell(top, kas.id)
        if not k or k.failed or not k.med("rps"):
            continue
        text = "**Connection: close** (%s): the top model, %s, served %s req/s, %.0f%% of its " \
            "rate with keep-alive (%s)" % (sc.label, top, fmt.rps(c.med("rps")),
                                           100 * c.med("rps") / k.med("rps"), kas.label)
        cc, ck = c.med("cpu_us_per_req"), k.med("cpu_us_per_req")
        sc_c, sc_k = c.med("syscalls_per_req"), k.med("syscalls_per_req")
        if cc and ck and cc >= 1.2 * ck:
            text += "; each request cost %s µs of CPU against %s" % (fmt.num(cc), fmt.num(ck))
            if sc_c and sc_k:
                text += " and %s syscalls against %s" % (fmt.num(sc_c), fmt.num(sc_k))
            text += ": the TCP handshake and teardown are paid on every request"
        return text + "."
    return None


def ceiling_finding(run):
    for sc in run.scenarios:
        c = run.cell(CEILING, sc.id)
        if not c or c.failed or c.med("rps") is None or sc.open_loop:
            continue
        top = leader(run, sc.id)
        if not top:
            continue
        mine, ceil = run.cell(top, sc.id).med("rps"), c.med("rps")
        return ("**Against the ceiling** (%s): the top model, %s, reached %.0f%% of the %s "
                "req/s of the ceiling server, which answers every request with one "
                "precomputed response from memory." % (sc.label, top, 100 * mine / ceil,
                                                       fmt.rps(ceil)))
    return None


FINDINGS = [tail_latency, knee_finding, overload_finding, crossover_finding, slow_link_finding,
            memory_finding, cpu_finding, slow_finding, size_finding, close_finding, ceiling_finding]


def findings(run):
    from .disk import disk_finding  # it uses this module's helpers
    out = [f(run) for f in [disk_finding] + FINDINGS]
    return [f for f in out if f][:MAX_FINDINGS]

