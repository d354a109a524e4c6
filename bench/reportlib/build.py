"""report.md and report.html for one run: what the run says first (ranked
tables, findings), then latency, the operating-system concepts, the full
tables, the environment and how to read it all."""

import os

from . import charts as C
from . import concepts, fmt, links, summary
from .data import Stat, is_num
from .page import (Bullets, Figures, Heading, Legend, Page, Para, Row, Table, TCell,
                   write_html, write_md)

CEILING = summary.CEILING


# --- chart data -------------------------------------------------------------------


def representative(cell):
    """The round whose req/s is the median one (its spectrum is drawn)."""
    reps = [r for r in cell.repeats if is_num(r.get("rps"))]
    med = cell.med("rps")
    if not reps or med is None:
        return None
    return min(reps, key=lambda r: abs(r["rps"] - med))


def hist_percentiles(hist):
    """[(percentile, upper_us)] at each bucket boundary of a latency histogram."""
    rows = sorted((u, c) for u, c in (hist or []) if is_num(u) and is_num(c) and c > 0)
    total = sum(c for _, c in rows)
    out, cum = [], 0
    for upper, count in rows:
        cum += count
        p = 100.0 * cum / total
        if p < 100:
            out.append((p, upper))
    return out


def spectrum_series(run, sc):
    out = {}
    for c in summary.contenders(run, sc.id):
        if sc.open_loop:
            st = c.ref_step()
            pts = hist_percentiles(st.get("lat_histogram_us")) \
                if st and not st.get("client_bound") else []
        else:
            rep = representative(c)
            pts = [tuple(p) for p in (rep or {}).get("lat_percentiles_us") or []
                   if isinstance(p, (list, tuple)) and len(p) == 2]
        if pts:
            out[c.model] = pts
    return out


def rps_getter(run, key, div=1.0):
    def get(model, sid):
        c = run.cell(model, sid)
        st = c.stat(key) if c else None
        if st is None:
            return None
        return C.Bar(type(st)(st.min / div, st.median / div, st.max / div, st.n), not c.clean)
    return get


def group_figures(ch, run, group):
    if not group.closed:
        return []
    clusters = [(s.short if len(group.closed) > 1 else s.label, s.id) for s in group.closed]
    models = [m for m in run.models if any(run.cell(m, s.id) for s in group.closed)]
    cells = [c for s in group.closed for c in run.cells_of(s.id)]
    note = " ".join(filter(None, [
        "Whiskers: min–max over %d rounds." % run.rounds if any(c.rounds > 1 for c in cells)
        else "One round: no spread to draw.",
        "Hatched: flagged or degraded, not ranked." if any(not c.clean for c in cells)
        else ""]))
    rps = C.bars(ch, "rps-%s.svg" % C.slug(group.id), "Requests per second: " + group.label,
                 "requests per second", clusters, models, rps_getter(run, "rps"), note=note)
    p99 = C.bars(ch, "p99-%s.svg" % C.slug(group.id), "p99 latency: " + group.label,
                 "p99 latency (ms, log scale)", clusters,
                 [m for m in models if m != CEILING], rps_getter(run, "lat_p99_us", 1000.0),
                 logy=True, note=note)
    return [rps, p99]


def open_loop_figures(ch, run, sc):
    """Latency against throughput (a latency ladder) and the per-second
    timeline of every open-loop scenario. Client-bound steps are left out of
    the curves: their latency is the generator's."""
    series, knees, lines = {}, {}, {}
    for c in summary.contenders(run, sc.id):
        series[c.model] = [(s.get("achieved_rps"), s.get("lat_p99_us"))
                           for s in summary.steps_shown(c)]
        ks = c.knee_step()
        if ks and is_num(ks.get("achieved_rps")) and is_num(ks.get("lat_p99_us")):
            knees[c.model] = (ks["achieved_rps"], ks["lat_p99_us"])
        pts, t = [], 0
        for s in c.steps:
            for e in s.get("timeline") or []:
                if isinstance(e, dict) and is_num(e.get("completed")):
                    t += 1
                    pts.append((t, e["completed"], e.get("p99_us")))
        lines[c.model] = pts
    lat = None
    if not sc.crossover:
        lat = C.latency_vs_throughput(ch, "latency-%s.svg" % C.slug(sc.id),
                                      "Latency against throughput: " + sc.label, series,
                                      sc.slo_us, knees)
    if lat:
        lat.note = ("One point per offered rate of the open-loop ladder; latency counts from "
                    "each request's intended send time. Dashed: the SLO. Circle: the knee. "
                    "Steps the load generator limited (client-bound) are left out.")
    tl = C.timeline(ch, "timeline-%s.svg" % C.slug(sc.id), "Per-second timeline: " + sc.label,
                    lines)
    return [lat, tl]


def crossover_figures(ch, run, group):
    """p99, memory per connection and voluntary switches per request at each
    connection count of a crossover, one bar per model (connection counts are
    categories: a line between them would suggest counts never measured)."""
    sc = group.open[0]
    conns = summary.crossover_conns(run, sc)
    clusters = [("{:,} conns".format(n), n) for n in conns]
    models = [c.model for c in summary.contenders(run, sc.id)]

    def getter(key, div=1.0, timing=True):
        def get(model, n):
            c = run.cell(model, sc.id)
            st = c.step_at(n) if c else None
            v = st.get(key) if st and not (timing and st.get("client_bound")) else None
            if not is_num(v):
                return None
            o = st.get("over_rounds") or {}
            r = o.get(key) if isinstance(o, dict) else None
            lo, hi = (r["min"], r["max"]) if isinstance(r, dict) and is_num(r.get("min")) \
                and is_num(r.get("max")) else (v, v)
            return C.Bar(Stat(lo / div, v / div, hi / div, st.get("rounds") or 1),
                         not c.clean or bool(st.get("starved")))
        return get
    note = "Hatched: a flagged or degraded cell, or a starved step."
    timed = note + " Client-bound steps are left out."
    sid = C.slug(sc.id)
    return [C.bars(ch, "crossover-p99-%s.svg" % sid, "p99 latency by connections: " + sc.label,
                   "p99 latency (ms, log scale)", clusters, models,
                   getter("lat_p99_us", 1000.0), logy=True, note=timed),
            C.bars(ch, "crossover-memory-%s.svg" % sid,
                   "Memory per connection by connections: " + sc.label, "KiB per connection",
                   clusters, models, getter("mem_per_conn_kib", timing=False), note=note),
            C.bars(ch, "crossover-switches-%s.svg" % sid,
                   "Voluntary switches per request by connections: " + sc.label,
                   "voluntary switches per request", clusters, models,
                   getter("ctx_vol_per_req"), note=timed)]


# --- full tables -----------------------------------------------------------------

# (key, header, format, better): better is "max", "min" or None (no star)
FULL = [
    ("rps", "req/s", fmt.rps, "max"),
    ("rps~", "req/s min–max", fmt.rps, None),
    ("ratio", "× nginx", lambda v: fmt.num(v, 2), "max"),
    # median over rounds of req/s / the ceiling's req/s in the same round
    ("ceiling_ratio", "share of ceiling", lambda v: fmt.num(v, 2), "max"),
    ("lat_p50_us", "p50 ms", fmt.ms, "min"),
    ("lat_p99_us", "p99 ms", fmt.ms, "min"),
    ("lat_p99_us~", "p99 min–max", fmt.ms, None),
    ("lat_p999_us", "p99.9 ms", fmt.ms, "min"),
    ("errors_total", "errors", fmt.rps, None),   # zero is not a win
    ("cpu_us_per_req", "CPU µs/req", fmt.num, "min"),
    ("ctx_vol_per_req", "vol sw/req", fmt.switches, "min"),
    ("ctx_invol_per_req", "invol sw/req", fmt.switches, "min"),
    ("syscalls_per_req", "syscalls/req", fmt.num, "min"),
    ("softirq_net_rx_per_req", "NET_RX/req", lambda v: fmt.num(v, 2), None),
    ("softirq_net_tx_per_req", "NET_TX/req", lambda v: fmt.num(v, 3), None),
    ("rss_peak_kib", "peak RSS MiB", fmt.mib, "min"),
    ("mem_per_conn_kib", "KiB/conn", fmt.kib, "min"),
    ("threads_max", "threads", lambda v: fmt.num(v, 0), None),
    ("procs_max", "procs", lambda v: fmt.num(v, 0), None),
]
OPTIONAL = ("softirq_net_rx_per_req", "softirq_net_tx_per_req", "ceiling_ratio")


def full_value(run, c, key):
    if key == "ratio":
        ref = run.cell("nginx", c.scenario.id)
        mine, base = c.med("rps"), ref.med("rps") if ref else None
        return mine / base if mine is not None and base else None
    return c.med(key)


def full_order(run, sid):
    cells = run.cells_of(sid)
    rps = {c.model: c.med("rps") or 0 for c in cells}
    return sorted(cells, key=lambda c: (c.model == CEILING, c.failed, not c.clean,
                                        -rps[c.model]))


def full_table(run, sc):
    cells = full_order(run, sc.id)
    cols = [col for col in FULL if col[0] not in OPTIONAL
            or any(c.med(col[0]) is not None for c in cells)]
    counters = []
    for c in cells:
        counters += [n for n in c.counters() if n not in counters]
    clean = [c for c in cells if c.clean and c.model != CEILING]
    best = {}
    for key, _, _, better in cols:
        vals = [full_value(run, c, key) for c in clean]
        vals = [v for v in vals if v is not None]
        if better and len(vals) >= 2 and len(set(vals)) > 1:   # a tie for all is no win
            best[key] = (max if better == "max" else min)(vals)
    rows = []
    for c in cells:
        out = [TCell(c.model, swatch=run.colours.get(c.model)), TCell(c.status, left=True),
               TCell(", ".join(c.flags) or "–", left=True)]
        for key, _, f, _ in cols:
            if key.endswith("~"):
                out.append(TCell(fmt.spread(c.stat(key[:-1]), f) or "–"))
                continue
            v = full_value(run, c, key)
            text = "–" if key == "ceiling_ratio" and c.model == CEILING else f(v)
            if v is None and key == "syscalls_per_req" and not c.failed:
                text = "unavailable"
            out.append(TCell(text, win=c in clean and key in best and v == best[key]))
        for n in counters:
            st = c.counter_per_req(n)
            out.append(TCell(fmt.num(st.median, 2) if st else "n/a"))
        cls = "ref" if c.model == CEILING else "failed" if c.failed else \
            "" if c.clean else "flagged"
        rows.append(Row(out, cls))
    head = ["model", "status", "flags"] + [h for _, h, _, _ in cols] + \
        ["%s/req" % n for n in counters]
    return Table(head, rows, left=3)


STEP_COLS = [
    ("offered_rps", "offered req/s", fmt.rps), ("pct_of_peak", "% of peak", fmt.pct),
    ("achieved_rps", "achieved", fmt.rps), ("goodput_rps", "goodput", fmt.rps),
    ("lat_p50_us", "p50 ms", fmt.ms), ("lat_p99_us", "p99 ms", fmt.ms),
    ("lat_p999_us", "p99.9 ms", fmt.ms), ("lat_max_us", "max ms", fmt.ms),
    ("errors_total", "errors", fmt.rps), ("fairness_jain", "Jain fairness",
                                          lambda v: fmt.num(v, 3)),
    ("client_cpu_util", "load gen CPU", lambda v: fmt.pct(100 * v)),
    ("cpu_us_per_req", "CPU µs/req", fmt.num), ("ctx_vol_per_req", "vol sw/req", fmt.switches),
]
CROSSOVER_COLS = [
    ("connections", "conns", fmt.rps), ("achieved_rps", "achieved req/s", fmt.rps),
    ("lat_p50_us", "p50 ms", fmt.ms), ("lat_p99_us", "p99 ms", fmt.ms),
    ("lat_p999_us", "p99.9 ms", fmt.ms), ("errors_total", "errors", fmt.rps),
    ("mem_per_conn_kib", "KiB/conn", fmt.kib), ("threads_max", "threads", fmt.rps),
    ("ctx_vol_per_req", "vol sw/req", fmt.switches), ("syscalls_per_req", "syscalls/req",
                                                       fmt.num),
    ("cpu_us_per_req", "CPU µs/req", fmt.num),
    ("client_cpu_util", "load gen CPU", lambda v: fmt.pct(100 * v)),
]


def step_notes(c, s, knee):
    notes = []
    if s is knee:
        notes.append("knee")
    if c.peak_closed and s["offered_rps"] > c.peak_closed:
        notes.append("overload")
    if s.get("client_bound"):
        notes.append("client-bound: not the server's figure")
    if s.get("starved"):
        notes.append("starved")
    little = s.get("little")
    if isinstance(little, dict) and little.get("ok") is False:
        notes.append("Little's law off (%s vs %s)" % (
            fmt.num(little.get("expected"), 1) if is_num(little.get("expected")) else "?",
            fmt.num(little.get("observed"), 1) if is_num(little.get("observed")) else "?"))
    return notes


def steps_table(run, sc):
    cols = CROSSOVER_COLS if sc.crossover else STEP_COLS
    cells = run.cells_of(sc.id)
    if not sc.crossover and not any(is_num(s.get("pct_of_peak")) for c in cells
                                     for s in c.steps):
        cols = [col for col in cols if col[0] != "pct_of_peak"]
    rows = []
    for c in cells:
        if c.failed:
            rows.append(Row([TCell(c.model, swatch=run.colours.get(c.model)), "failed"] +
                            [""] * (len(cols) + 1), "failed"))
            continue
        knee = c.knee_step()
        for s in c.steps:
            vals = [f(s.get(k)) if is_num(s.get(k)) else fmt.NA for k, _, f in cols]
            rows.append(Row([TCell(c.model, swatch=run.colours.get(c.model)),
                             TCell(", ".join([c.status] + c.flags), left=True)] + vals +
                            [TCell("; ".join(step_notes(c, s, knee)), left=True)],
                            "" if c.clean else "flagged"))
    head = ["model", "status"] + [h for _, h, _ in cols] + ["notes"]
    if sc.crossover:
        caption = ("One row per connection count, at %s req/s offered. client-bound: the load "
                   "generator limited the step; its figures are not the server's."
                   % (fmt.rps(sc.offered_rps) if sc.offered_rps else "one rate"))
    else:
        caption = ("One row per step of the ladder. Knee: the highest offered rate whose p99 "
                   "stayed under %s ms (steps without errors, not client-bound, not starved). "
                   "overload: offered beyond the model's closed-loop peak; client-bound: the "
                   "load generator limited the step, so its figures are not the server's."
                   % fmt.slo(sc.slo_us))
    return Table(head, rows, caption=caption, left=2)


# --- text sections ------------------------------------------------------------------


def per_conn_note(settings):
    pc = settings.get("per_connection_models")
    if not pc or not isinstance(pc, list):
        return ""
    return " (%s: a thread or process per connection, sized by the model)" % ", ".join(
        map(str, pc))


def ceiling_line(st, availability):
    """The ceiling's backends: which ran, and which one each scenario used."""
    ce = st.get("ceiling")
    if not isinstance(ce, dict):
        return availability
    out = "%s; backends %s" % (availability, ", ".join(map(str, ce.get("backends") or [])))
    if isinstance(ce.get("unavailable"), dict):
        out += " (%s)" % "; ".join("%s unavailable: %s" % kv for kv in ce["unavailable"].items())
    chosen = ce.get("scenarios") if isinstance(ce.get("scenarios"), dict) else {}
    if chosen:
        out += "; the faster, per scenario: " + ", ".join(
            "%s %s" % (sid, c.get("backend")) for sid, c in chosen.items() if isinstance(c, dict))
    return out


def env_lines(run):
    doc = run.doc
    env, info, st = doc.get("environment") or {}, run.info, run.settings
    tools = doc.get("tools") or {}
    v = env.get("versions") if isinstance(env.get("versions"), dict) else {}

    def tool(name, word):
        t = tools.get(name) if isinstance(tools.get(name), dict) else {}
        if not t:
            return "not recorded"
        return "available" if t.get("available") else "%s: %s" % (word, t.get("reason"))
    out = [
        ("kernel", "%s (%s)" % (env.get("kernel"), env.get("kernel_version"))),
        ("CPU", "%s, %s cores" % (env.get("cpu_model"), env.get("cores"))),
        ("versions", ", ".join("%s %s" % (k, val) for k, val in v.items() if val)),
        ("git commit", "%s%s" % (env.get("git_commit") or "none",
                                  " (dirty)" if env.get("git_dirty") else "")),
        ("pinning", "server CPUs %s, load generator CPUs %s, %s%s"
         % (st.get("server_cpus"), st.get("client_cpus"),
            fmt.count(st["workers"], "server worker") if is_num(st.get("workers"))
            else "server workers: %s" % st.get("workers"), per_conn_note(st))),
        ("window", "warm-up %s s, window %s s, %s%s"
         % (st.get("warmup_s"), st.get("duration_s"), fmt.count(run.rounds, "round"),
            ", servers visited in a different order each round" if st.get("round_orders")
            else "")),
        ("command line", " ".join(map(str, info.get("command_line") or []))),
        ("run", "%s, %s, started %s" % (run.id, info.get("status"), info.get("started"))),
        ("perf", tool("perf", "UNAVAILABLE")),
        ("nginx", tool("nginx", "COULD NOT RUN")),
    ]
    net = env.get("network") if isinstance(env.get("network"), dict) else {}
    if net.get("veth"):
        v_ = net["veth"]
        out.append(("veth", "server %s in namespace %s, load %s in %s (%s); %s" % (
            v_.get("server_addr"), v_.get("server_ns"), v_.get("client_addr"),
            v_.get("client_ns"), v_.get("range"), v_.get("shaping"))))
    hosts = [("server host", net.get("server_host"))] + \
        [("client host", h) for h in net.get("client_hosts") or []]
    for word, h in hosts:
        if isinstance(h, dict):
            out.append((word, "%s (%s, %s): %s, %s cores, kernel %s, %s" % (
                h.get("spec"), h.get("hostname"), h.get("address"), h.get("cpu_model"),
                h.get("cores"), h.get("kernel"), h.get("c10k_version"))))
    if "ceiling" in tools:  # runs from before the ceiling have no word on it
        out.append(("ceiling", ceiling_line(st, tool("ceiling", "COULD NOT RUN"))))
    variants = st.get("variants")
    if isinstance(variants, dict) and variants:
        out.append(("variants", "; ".join("%s = `c10k serve %s`" % (k, val)
                                          for k, val in variants.items())))
    cache = st.get("open_file_cache")
    if isinstance(cache, dict):
        out.append(("open-file cache", "on in every server: c10k `%s`, nginx `%s`"
                    % (cache.get("c10k_flags"), cache.get("nginx"))))
    return out


HOWTO = [
    "**Ranking**: only clean cells rank (status ok and no flag). **starved**: connections "
    "waited in the accept queue for more than 10% of the window, or fewer were established "
    "than opened; **noisy**: req/s varied by more than 10% of the median across rounds; "
    "**client-bound**: the load generator, not the server, was the limit. Flagged, degraded "
    "and failed cells are shown, never hidden, and never get a ★.",
    "**Spread**: each cell ran once per round, the servers in a different order each round; "
    "tables show the median and (min–max), charts draw min–max whiskers.",
    "**Latency**: closed-loop latency (wrk) only counts requests a connection got to send, "
    "so an overloaded server looks better than it is. The open-loop ladder sends at a fixed "
    "rate and counts each request from its intended send time; its knee is the highest "
    "offered rate whose p99 stayed under the SLO.",
    "**Voluntary** context switches: the thread asked to sleep (a blocking read, poll, accept "
    "or lock). **Involuntary**: the scheduler preempted a runnable thread.",
    "Loopback numbers are **relative**: client and server share one machine, so compare "
    "models within a run, not with numbers from elsewhere.",
    "**Links**: *loopback* is 127.0.0.1 on one host; *veth* puts the load generator in a "
    "network namespace of its own, joined to the server's by a veth pair (its own network "
    "stack, still the same CPUs), shaped by tbf to the rate named (*veth 100mbit*); "
    "*network* is a real network to another host (--server-host, --client-host).",
    "Server costs cover the captured window only and every thread and process of the "
    "server. n/a or unavailable means the counter could not be measured, never zero.",
    "Cell status: **degraded** = errors or timeouts, not every connection established, "
    "an unclean stop, or a cold-cache window that started warm; **failed** = the server "
    "did not start, answered wrongly, or the load generator could not run.",
]


def run_line(run):
    st = run.settings
    n_models = len(run.models)
    env = run.doc.get("environment") or {}
    return ("%s (%s) × %s, %s, %s s windows, on %s (%s cores); "
            "server on CPU %s, load on CPU %s." % (
                fmt.count(n_models, "server"), ", ".join(run.models),
                fmt.count(len(run.scenarios), "scenario"), fmt.count(run.rounds, "round"),
                st.get("duration_s", "?"),
                env.get("cpu_model", "?"), env.get("cores", "?"),
                ",".join(map(str, st.get("server_cpus") or ["?"])),
                ",".join(map(str, st.get("client_cpus") or ["?"]))))


# --- the page -----------------------------------------------------------------------


def build(run, ch):
    page = Page("c10k bench report: %s" % run.id)
    if run.info.get("status") not in (None, "complete"):
        page.add(Para("**This run is %s: only finished cells are shown.**"
                      % run.info.get("status")))
    page.add(Para(run_line(run)), Heading(2, "What this run says"),
             Legend([(m, run.colours[m]) for m in run.models]))
    for g in run.groups():
        head, rows, caption = summary.ranked_table(run, g)
        figs = crossover_figures(ch, run, g) if g.crossover else group_figures(ch, run, g)
        page.add(Heading(3, g.label, anchor="rank-" + g.id),
                 Table(head, rows, caption, left=1 if g.crossover else 2), Figures(figs))
    loads, links_ = links.link_loads(run)
    if loads:
        page.add(Heading(3, "Across links", anchor="links"),
                 Para("The same load on each link the run used (%s): what a slower or longer "
                      "path does to each model." % ", ".join(links_)))
        for label, by_link in loads:
            page.add(Heading(4, label), links.link_table(run, by_link, links_))
    finds = summary.findings(run)
    page.add(Heading(3, "Findings"),
             Bullets(finds, cls="findings") if finds else
             Para("No findings: the run has too few cells that can be compared."))
    latency_section(page, ch, run)
    page.add(Heading(2, "The operating-system concepts, measured"))
    for c in concepts.concepts(run, ch):
        page.add(Heading(3, c.title), Para(c.text), Figures(c.figures))
    page.add(Heading(2, "Full tables"),
             Para("Every cell of the run, medians over rounds, clean rows first; ★ marks the "
                  "best value of a column among clean rows."))
    for sc in run.scenarios:
        page.add(Heading(3, sc.label, anchor="full-" + sc.id))
        page.add(steps_table(run, sc) if sc.open_loop else full_table(run, sc))
    reasons = ["%s, %s: %s" % (c.model, c.scenario.label, "; ".join(c.reasons))
               for c in run.cells.values() if c.reasons]
    if reasons:
        page.add(Heading(3, "Why cells are degraded or failed"), Bullets(reasons))
    page.add(Heading(2, "Environment"),
             Bullets("**%s**: %s" % kv for kv in env_lines(run)),
             Heading(2, "How to read this"), Bullets(HOWTO))
    return page


def latency_section(page, ch, run):
    figs = []
    for sc in run.scenarios:
        if sc.open_loop:
            figs += open_loop_figures(ch, run, sc)
    for sc in run.scenarios:
        series = spectrum_series(run, sc)
        if series:
            figs.append(C.spectrum(
                ch, "spectrum-%s.svg" % C.slug(sc.id), "Latency percentiles: " + sc.label,
                series, note="At the most connections." if sc.crossover else
                "At each model's knee step (else its lowest)." if sc.open_loop else
                "Closed loop (wrk); the round with the median req/s."))
    figs = [f for f in figs if f]
    if figs:
        page.add(Heading(2, "Latency"),
                 Para("The percentile charts space 90%, 99%, 99.9% and 99.99% evenly (x is "
                      "1/(1−p) on a log scale), so the tail gets as much room as the median."),
                 Figures(figs))


def write(run_dir, run):
    """Write report.md, report.html and charts/*.svg; return (paths, chart errors)."""
    chart_dir = os.path.join(run_dir, "charts")
    ch = C.Charts(chart_dir, run.colours)
    page = build(run, ch)
    md, htm = os.path.join(run_dir, "report.md"), os.path.join(run_dir, "report.html")
    write_md(page, md)
    write_html(page, htm)
    return [htm, md] + ([chart_dir + os.sep] if os.path.isdir(chart_dir) else []), ch.errors
