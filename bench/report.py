#!/usr/bin/python3
"""c10k report - turn a bench run into report.md, report.html and charts/*.svg.

    c10k report RUN_DIR                 write the reports into RUN_DIR
    c10k report --compare RUN_A RUN_B   compare two runs side by side

Charts are drawn by gnuplot's svg terminal (gnuplot-nox) and inlined into the
HTML, so report.html opens offline with no scripts or fonts from elsewhere.
Every number in a table or a finding is read from RUN_DIR/results.json; the
findings are rules with thresholds over the measured counters.
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SCHEMA_VERSION = 1
EXIT_USAGE = 2

# Report columns: (metric, header, format, better) - better: "max", "min" or None
COLUMNS = [
    ("rps", "req/s", "{:,.0f}", "max"),
    ("ratio", "× nginx", "{:.2f}", "max"),
    ("lat_p50_us", "p50 ms", "ms", "min"),
    ("lat_p99_us", "p99 ms", "ms", "min"),
    ("lat_p999_us", "p99.9 ms", "ms", "min"),
    ("errors_total", "errors", "{:,.0f}", "min"),
    ("cpu_us_per_req", "CPU µs/req", "{:.1f}", "min"),
    ("ctx_vol_per_req", "vol sw/req", "{:.3f}", "min"),
    ("ctx_invol_per_req", "invol sw/req", "{:.3f}", "min"),
    ("syscalls_per_req", "syscalls/req", "{:.1f}", "min"),
    ("rss_peak_kib", "peak RSS MiB", "mib", "min"),
    ("mem_per_conn_kib", "KiB/conn", "{:.1f}", "min"),
]


class UsageError(Exception):
    pass


def load(run_dir):
    path = os.path.join(run_dir, "results.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror)) from None
    except ValueError as e:
        raise UsageError("%s is not valid JSON: %s" % (path, e)) from None
    if doc.get("schema") != "c10k-bench-results":
        raise UsageError("%s is not a c10k bench results file" % path)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UsageError("%s has schema version %s; this report reads version %d"
                         % (path, doc.get("schema_version"), SCHEMA_VERSION))
    return doc


def med(cell, key):
    """Median over repeats of a metric, or None (failed cell, unavailable)."""
    if not cell or cell["status"] == "failed":
        return None
    s = (cell.get("summary") or {}).get(key)
    return None if s is None else s["median"]


def spread(cell, key):
    s = (cell.get("summary") or {}).get(key) if cell else None
    return None if s is None else (s["min"], s["max"])


def fmt(v, how):
    if v is None:
        return "n/a"
    if how == "ms":
        return "%.2f" % (v / 1000.0)
    if how == "mib":
        return "%.1f" % (v / 1024.0)
    return how.format(v)


class Run:
    def __init__(self, doc):
        self.doc = doc
        self.scenarios = doc["scenarios"]
        self.models = doc["models"]
        self.cells = {(c["model"], c["scenario"]): c for c in doc["cells"]}

    def value(self, model, sid, key):
        cell = self.cells.get((model, sid))
        if key == "ratio":
            mine, ref = med(cell, "rps"), med(self.cells.get(("nginx", sid)), "rps")
            return mine / ref if mine is not None and ref else None
        return med(cell, key)

    def ran(self, sid):
        return [m for m in self.models if (m, sid) in self.cells]

    def winners(self, sid):
        """column -> set of winning models, among cells that are not failed."""
        out = {}
        for key, _, _, better in COLUMNS:
            vals = {m: self.value(m, sid, key) for m in self.ran(sid)
                    if self.cells[(m, sid)]["status"] != "failed"}
            vals = {m: v for m, v in vals.items() if v is not None}
            if not vals or not better or len(vals) < 2:
                out[key] = set()
                continue
            best = (max if better == "max" else min)(vals.values())
            out[key] = {m for m, v in vals.items() if v == best}
        return out

    def table_rows(self, sid):
        """[(model, status, [(text, is_winner)])] for one scenario."""
        win = self.winners(sid)
        rows = []
        for m in self.ran(sid):
            cell = self.cells[(m, sid)]
            vals = []
            for key, _, how, _ in COLUMNS:
                v = self.value(m, sid, key)
                text = fmt(v, how)
                if v is None and key == "syscalls_per_req" and cell["status"] != "failed":
                    text = "unavailable"
                vals.append((text, m in win[key]))
            rows.append((m, cell["status"], vals))
        return rows


# --- findings ----------------------------------------------------------------


def findings(run):
    """Sentences computed from the data; each cites its numbers."""
    out = []
    for sc in run.scenarios:
        sid, label = sc["id"], sc["label"]
        ok = [m for m in run.ran(sid) if run.cells[(m, sid)]["status"] != "failed"
              and run.value(m, sid, "rps") is not None]
        for m in run.ran(sid):
            cell = run.cells[(m, sid)]
            if cell["status"] != "ok":
                out.append("%s: **%s %s**: %s." % (label, m, cell["status"],
                                                   "; ".join(cell["reasons"]) or "no reason recorded"))
        if not ok:
            continue
        by_rps = sorted(ok, key=lambda m: -run.value(m, sid, "rps"))
        top = by_rps[0]
        txt = "%s: **%s** served the most, %s req/s" % (label, top, fmt(run.value(top, sid, "rps"), "{:,.0f}"))
        if len(by_rps) > 1 and run.value(by_rps[1], sid, "rps") > 0:
            second = by_rps[1]
            txt += ", %.2f× %s (%s req/s)" % (run.value(top, sid, "rps") / run.value(second, sid, "rps"),
                                             second, fmt(run.value(second, sid, "rps"), "{:,.0f}"))
        if (top != "nginx" and "nginx" in ok and run.value(top, sid, "ratio") is not None
                and (len(by_rps) < 2 or by_rps[1] != "nginx")):
            txt += ", %.2f× nginx" % run.value(top, sid, "ratio")
        out.append(txt + ".")
        out.extend(cause_findings(run, sc, ok))
    return out


def cause_findings(run, sc, ok):
    sid, label = sc["id"], sc["label"]
    out = []
    v = {m: run.value(m, sid, "ctx_vol_per_req") for m in ok}
    v = {m: x for m, x in v.items() if x is not None}
    if len(v) >= 2:
        hi, lo = max(v, key=v.get), min(v, key=v.get)
        if v[hi] >= 0.5 and v[hi] >= 5 * max(v[lo], 1e-9):
            out.append("%s: %s: %.2f voluntary switches per request, %s: %.3f. A voluntary "
                       "switch is a thread going to sleep in a blocking call (read, poll, accept, "
                       "a lock), so %s slept about %s per request while %s found its next work "
                       "ready and slept once per batch of requests."
                       % (label, hi, v[hi], lo, v[lo], hi,
                          "once" if v[hi] < 1.5 else "%.0f times" % v[hi], lo))
    iv = {m: run.value(m, sid, "ctx_invol_per_req") for m in ok}
    iv = {m: x for m, x in iv.items() if x is not None}
    if len(iv) >= 2:
        hi, lo = max(iv, key=iv.get), min(iv, key=iv.get)
        th = run.value(hi, sid, "threads_max")
        if iv[hi] >= 0.05 and iv[hi] >= 5 * max(iv[lo], 1e-9):
            out.append("%s: %s was preempted %.3f times per request (%s: %.3f): with up to %s "
                       "threads wanting the server CPU, the scheduler took it away mid-work."
                       % (label, hi, iv[hi], lo, iv[lo], "%.0f" % th if th is not None else "?"))
    sc_ = {m: run.value(m, sid, "syscalls_per_req") for m in ok}
    sc_ = {m: x for m, x in sc_.items() if x is not None}
    if len(sc_) >= 2:
        hi, lo = max(sc_, key=sc_.get), min(sc_, key=sc_.get)
        if sc_[hi] >= 1.5 * max(sc_[lo], 1e-9):
            out.append("%s: %s made %.1f syscalls per request, %s %.1f (%.1f×): every syscall "
                       "is a kernel entry that costs CPU time per request."
                       % (label, hi, sc_[hi], lo, sc_[lo], sc_[hi] / max(sc_[lo], 1e-9)))
    cpu = {m: run.value(m, sid, "cpu_us_per_req") for m in ok}
    cpu = {m: x for m, x in cpu.items() if x is not None and x > 0}
    if len(cpu) >= 2:
        hi, lo = max(cpu, key=cpu.get), min(cpu, key=cpu.get)
        if cpu[hi] >= 1.5 * cpu[lo]:
            sysf = (run.value(hi, sid, "cpu_sys_us_per_req") or 0) / cpu[hi]
            out.append("%s: %s spent %.1f µs of server CPU per request (%.0f%% in the kernel), "
                       "%s %.1f µs." % (label, hi, cpu[hi], 100 * sysf, lo, cpu[lo]))
    mem = {m: run.value(m, sid, "mem_per_conn_kib") for m in ok}
    mem = {m: x for m, x in mem.items() if x is not None}
    conns = sc["connections"] + (sc["slow"]["count"] if sc["slow"] else 0)
    if len(mem) >= 2:
        hi, lo = max(mem, key=mem.get), min(mem, key=mem.get)
        th = run.value(hi, sid, "threads_max") or 0
        pr = run.value(hi, sid, "procs_max") or 0
        if mem[hi] >= 16 and mem[hi] >= 4 * max(mem[lo], 0.1):
            out.append("%s: %s used %.1f KiB per connection, %s %.1f KiB; it ran %.0f threads "
                       "in %.0f process(es) for %d connections." % (label, hi, mem[hi], lo, mem[lo],
                                                                  th, pr, conns))
    for m in ok:
        q = run.value(m, sid, "accept_queue_max")
        if q and q >= max(2, 0.1 * conns):
            out.append("%s: %s: its accept queue held up to %.0f connections not yet accepted "
                       "(%d were opened at once; wrk reopens the ones it gives up on), while "
                       "the server ran %.0f threads in %.0f process(es)." % (
                           label, m, q, conns, run.value(m, sid, "threads_max") or 0,
                           run.value(m, sid, "procs_max") or 0))
        cu = run.value(m, sid, "client_cpu_util")
        if cu is not None and cu >= 0.9:
            out.append("%s: with %s, wrk used %.0f%% of its CPU: the client may be the limit, "
                       "so this cell understates the server." % (label, m, 100 * cu))
    if sc["slow"] and len(ok) >= 2:
        best = max(run.value(m, sid, "rps") for m in ok)
        for m in ok:
            r = run.value(m, sid, "rps")
            to = run.value(m, sid, "errors_timeout") or 0
            if best > 0 and (r < 0.1 * best or to > 0):
                out.append("%s: %s starved: %s req/s (%.1f%% of the best), %.0f timeouts, while "
                           "%d %s clients held connections; it ran %.0f threads in %.0f "
                           "process(es)." % (label, m, fmt(r, "{:,.0f}"), 100 * r / best, to,
                                           sc["slow"]["count"], sc["slow"]["kind"],
                                           run.value(m, sid, "threads_max") or 0,
                                           run.value(m, sid, "procs_max") or 0))
    return out


# --- charts ------------------------------------------------------------------


def gp_quote(s):
    return "'" + str(s).replace("'", "''") + "'"


class Charts:
    """Writes charts/*.svg with gnuplot; each chart has axis labels with units
    and a key. Returns [(file, title)]."""

    def __init__(self, run, out_dir):
        self.run, self.out_dir = run, out_dir
        self.tmp = tempfile.mkdtemp(prefix="c10k-report-")
        self.made = []
        self.errors = []

    def gnuplot(self, name, title, script):
        path = os.path.join(self.out_dir, name)
        full = ("set terminal svg size 860,440 dynamic enhanced font 'sans,11' "
                "background rgb 'white'\nset output %s\nset title %s\nset key outside right top\n"
                "set grid ytics\n%s\n" % (gp_quote(path), gp_quote(title), script))
        with open(os.path.join(self.tmp, name + ".gp"), "w") as f:
            f.write(full)
        p = subprocess.run(["gnuplot", os.path.join(self.tmp, name + ".gp")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        if p.returncode != 0 or not os.path.exists(path):
            self.errors.append("%s: %s" % (name, p.stdout.strip()[-300:]))
            return
        self.made.append((name, title))

    def data(self, name, rows):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            for r in rows:
                f.write("\t".join(str(x) for x in r) + "\n")
        return path

    def all(self):
        if not shutil.which("gnuplot"):
            self.errors.append("gnuplot is not installed (apt-get install gnuplot-nox)")
            return self.made
        run = self.run
        series = []
        for sc in run.scenarios:
            if sc["series"] not in series:
                series.append(sc["series"])
        for i, ser in enumerate(series):
            scs = sorted((s for s in run.scenarios if s["series"] == ser),
                         key=lambda s: s["connections"])
            self.vs_connections("throughput-%d.svg" % i, "Throughput vs connections: " + ser,
                                scs, "rps", 1, "requests per second", False)
            self.vs_connections("p99-%d.svg" % i, "p99 latency vs connections: " + ser,
                                scs, "lat_p99_us", 1000.0, "p99 latency (ms, log scale)", True)
        for i, sc in enumerate(run.scenarios):
            self.stacked("cpu-%d.svg" % i, "CPU per request: " + sc["label"], sc,
                         [("cpu_user_us_per_req", "user"), ("cpu_sys_us_per_req", "system")],
                         "server CPU per request (µs)")
            self.stacked("switches-%d.svg" % i, "Context switches per request: " + sc["label"],
                         sc, [("ctx_vol_per_req", "voluntary (blocked)"),
                              ("ctx_invol_per_req", "involuntary (preempted)")],
                         "context switches per request")
        self.clustered("syscalls.svg", "Syscalls per request", "syscalls_per_req", 1,
                       "syscalls per request (perf raw\\_syscalls)")
        self.clustered("memory.svg", "Memory per connection", "mem_per_conn_kib", 1,
                       "RSS added per connection (KiB)")
        self.distribution()
        return self.made

    def present(self, sid):
        return [m for m in self.run.ran(sid)
                if self.run.cells[(m, sid)]["status"] != "failed"]

    def vs_connections(self, name, title, scs, key, div, ylabel, logy):
        plots = []
        for m in self.run.models:
            rows = [(s["connections"], self.run.value(m, s["id"], key) / div)
                    for s in scs if self.run.value(m, s["id"], key) is not None
                    and (not logy or self.run.value(m, s["id"], key) > 0)]
            if rows:
                plots.append("%s using 1:2 with linespoints lw 2 pt 7 title %s"
                             % (gp_quote(self.data(name + "." + m, rows)), gp_quote(m)))
        if not plots:
            return
        self.gnuplot(name, title, "set xlabel 'concurrent connections (log scale)'\n"
                     "set ylabel %s\nset logscale x 2\n%sset yrange [%s:*]\nplot %s"
                     % (gp_quote(ylabel), "set logscale y\n" if logy else "",
                        "*" if logy else "0", ", ".join(plots)))

    def stacked(self, name, title, sc, parts, ylabel):
        rows = []
        for m in self.present(sc["id"]):
            vals = [self.run.value(m, sc["id"], k) for k, _ in parts]
            if all(v is not None for v in vals):
                rows.append([m] + vals)
        if not rows:
            return
        f = gp_quote(self.data(name, rows))
        plots = ["%s using %d:xtic(1) title %s" % (f, i + 2, gp_quote(t))
                 for i, (_, t) in enumerate(parts)]
        self.gnuplot(name, title, "set style data histograms\nset style histogram rowstacked\n"
                     "set style fill solid 0.8 border -1\nset boxwidth 0.6\nset yrange [0:*]\n"
                     "set xlabel 'model'\nset ylabel %s\nplot %s" % (gp_quote(ylabel),
                                                                      ", ".join(plots)))

    def clustered(self, name, title, key, div, ylabel):
        run = self.run
        models = [m for m in run.models
                  if any(run.value(m, s["id"], key) is not None for s in run.scenarios)]
        if not models:
            return
        rows = []
        for s in run.scenarios:
            vals = [run.value(m, s["id"], key) for m in models]
            rows.append([s["id"]] + ["%.6g" % (v / div) if v is not None else "NaN"
                                     for v in vals])
        f = gp_quote(self.data(name, rows))
        plots = ["%s using %d:xtic(1) title %s" % (f, i + 2, gp_quote(m))
                 for i, m in enumerate(models)]
        self.gnuplot(name, title, "set style data histograms\nset style histogram clustered "
                     "gap 1\nset style fill solid 0.8 border -1\nset yrange [0:*]\n"
                     "set xtics rotate by -20\nset xlabel 'scenario'\nset ylabel %s\nplot %s"
                     % (gp_quote(ylabel), ", ".join(plots)))

    def chosen_cell(self):
        """The latency distribution is drawn for the keep-alive scenario with
        the most connections (the most contended one)."""
        ka = [s for s in self.run.scenarios if s["keepalive"]] or self.run.scenarios
        return max(ka, key=lambda s: (s["connections"], -s["size"])) if ka else None

    def distribution(self):
        sc = self.chosen_cell()
        if not sc:
            return
        plots = []
        for m in self.present(sc["id"]):
            cell = self.run.cells[(m, sc["id"])]
            rep = next((r for r in cell["repeats"] if r.get("lat_percentiles_us")), None)
            if not rep:
                continue
            rows = [(p, v / 1000.0) for p, v in rep["lat_percentiles_us"] if v and v > 0]
            if rows:
                plots.append("%s using 1:2 with linespoints lw 2 pt 7 title %s"
                             % (gp_quote(self.data("dist." + m, rows)), gp_quote(m)))
        if plots:
            self.gnuplot("latency-distribution.svg", "Latency distribution: " + sc["label"],
                         "set xlabel 'percentile (%)'\nset ylabel 'latency (ms, log scale)'\n"
                         "set logscale y\nset xrange [0:100]\nplot " + ", ".join(plots))


# --- writers -------------------------------------------------------------------

HOWTO = [
    "**Voluntary** context switches: the thread asked to sleep (a blocking read, poll, "
    "accept or lock). Many per request means the model waits by blocking. **Involuntary**: "
    "the scheduler preempted a runnable thread, which happens when more threads want the CPU "
    "than there are CPUs.",
    "Loopback numbers are **relative**: client and server share one machine and no network "
    "is crossed, so compare models within a run (and against nginx, the reference row), not "
    "with numbers from elsewhere.",
    "Each cell starts a fresh server, verifies its answers, then warms up (not recorded) "
    "before the captured window. With repeats, tables show the median; --compare flags "
    "a change only when it lies outside the run-to-run spread (min..max).",
    "Server costs cover the captured window only and every thread and process of the "
    "server, including those that start or exit during it. Unavailable means the counter "
    "could not be measured (e.g. perf unusable), never zero.",
    "Cell status: **degraded** = wrk saw errors or timeouts, or not every connection was "
    "established; **failed** = the server did not start, answered wrongly, or wrk could not "
    "run; it is shown, never hidden.",
]


def per_conn_note(settings):
    """Models that were not given --workers: they size themselves per connection."""
    pc = settings.get("per_connection_models")
    if not pc:
        return ""
    return " (%s: a thread or process per connection, sized by the model)" % ", ".join(pc)


def env_lines(doc):
    env, run = doc["environment"], doc["run"]
    st = run["settings"]
    v = env.get("versions", {})
    return [
        ("kernel", "%s (%s)" % (env.get("kernel"), env.get("kernel_version"))),
        ("CPU", "%s, %s cores" % (env.get("cpu_model"), env.get("cores"))),
        ("versions", ", ".join("%s %s" % (k, val) for k, val in v.items() if val)),
        ("git commit", "%s%s" % (env.get("git_commit") or "none",
                                  " (dirty)" if env.get("git_dirty") else "")),
        ("pinning", "server CPUs %s, wrk CPUs %s, %s server workers%s, wrk threads = %s"
         % (st.get("server_cpus"), st.get("client_cpus"), st.get("workers"),
            per_conn_note(st), st.get("wrk_threads_rule"))),
        ("window", "warm-up %s s, window %s s, %s repeat(s)"
         % (st.get("warmup_s"), st.get("duration_s"), st.get("repeat"))),
        ("command line", " ".join(run.get("command_line", []))),
        ("run", "%s, %s, started %s" % (run.get("id"), run.get("status"), run.get("started"))),
        ("perf", "available" if doc["tools"]["perf"]["available"] else
         "UNAVAILABLE: %s" % doc["tools"]["perf"]["reason"]),
        ("nginx", "available" if doc["tools"]["nginx"]["available"] else
         "COULD NOT RUN: %s" % doc["tools"]["nginx"]["reason"]),
    ]


def write_md(run, path, finds, charts):
    doc = run.doc
    L = ["# c10k bench report: %s" % doc["run"]["id"], ""]
    if doc["run"]["status"] != "complete":
        L += ["**This run is %s: only finished cells are shown.**" % doc["run"]["status"], ""]
    L += ["## Findings", ""] + ["- " + f for f in finds] + [""]
    L += ["## Results", "", "Medians over repeats. **Bold★** marks the best value of each "
          "column among cells that did not fail.", ""]
    for sc in run.scenarios:
        L += ["### %s" % sc["label"], "",
              "| model | status | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |",
              "|---|---|" + "---:|" * len(COLUMNS)]
        for m, status, vals in run.table_rows(sc["id"]):
            cells = ["**%s★**" % t if w else t for t, w in vals]
            st = status if status == "ok" else "**%s**" % status.upper()
            L.append("| %s | %s | %s |" % (m, st, " | ".join(cells)))
        L.append("")
    L += ["## Charts", ""] + ["- [%s](charts/%s)" % (t, n) for n, t in charts] + [""]
    L += ["## Environment", ""] + ["- **%s**: %s" % kv for kv in env_lines(doc)] + [""]
    L += ["## How to read this", ""] + ["- " + h for h in HOWTO] + [""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def md_inline(text):
    """The little markdown the findings use (**bold**), as HTML."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text, quote=False))


def inline_svg(path):
    with open(path) as f:
        svg = f.read()
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    return svg.strip()


CSS = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:90%}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child,td:nth-child(2){text-align:left}
td.win{font-weight:bold;background:#e6f4e6}
tr.degraded td{background:#fff6dd} tr.failed td{background:#fbe3e3}
figure{margin:1em 0} figcaption{font-weight:bold}"""


def write_html(run, path, finds, charts, chart_dir):
    doc = run.doc
    e = html.escape
    H = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
         "<title>c10k bench report %s</title>" % e(doc["run"]["id"]),
         "<style>%s</style></head><body>" % CSS,
         "<h1>c10k bench report: %s</h1>" % e(doc["run"]["id"])]
    if doc["run"]["status"] != "complete":
        H.append("<p><strong>This run is %s: only finished cells are shown.</strong></p>"
                 % e(doc["run"]["status"]))
    H.append("<h2>Findings</h2><ul>")
    H += ["<li>%s</li>" % md_inline(f) for f in finds]
    H.append("</ul><h2>Results</h2><p>Medians over repeats; the best value of each column "
             "(among cells that did not fail) is highlighted and marked ★.</p>")
    for sc in run.scenarios:
        H.append("<h3>%s</h3><table><tr><th>model</th><th>status</th>%s</tr>"
                 % (e(sc["label"]), "".join("<th>%s</th>" % e(h) for _, h, _, _ in COLUMNS)))
        for m, status, vals in run.table_rows(sc["id"]):
            H.append("<tr class=\"%s\"><td>%s</td><td>%s</td>%s</tr>" % (
                e(status), e(m), e(status),
                "".join("<td class=\"win\">%s ★</td>" % e(t) if w else "<td>%s</td>" % e(t)
                        for t, w in vals)))
        H.append("</table>")
    H.append("<h2>Charts</h2>")
    for name, title in charts:
        H.append("<figure><figcaption>%s</figcaption>%s</figure>"
                 % (e(title), inline_svg(os.path.join(chart_dir, name))))
    H.append("<h2>Environment</h2><ul>")
    H += ["<li><strong>%s</strong>: %s</li>" % (e(k), e(str(v))) for k, v in env_lines(doc)]
    H.append("</ul><h2>How to read this</h2><ul>")
    H += ["<li>%s</li>" % md_inline(h) for h in HOWTO]
    H.append("</ul></body></html>")
    with open(path, "w") as f:
        f.write("\n".join(H) + "\n")


def report(run_dir):
    doc = load(run_dir)
    run = Run(doc)
    chart_dir = os.path.join(run_dir, "charts")
    os.makedirs(chart_dir, exist_ok=True)
    ch = Charts(run, chart_dir)
    charts = ch.all()
    for err in ch.errors:
        print("c10k report: chart not drawn: %s" % err, file=sys.stderr)
    finds = findings(run)
    write_md(run, os.path.join(run_dir, "report.md"), finds, charts)
    write_html(run, os.path.join(run_dir, "report.html"), finds, charts, chart_dir)
    shutil.rmtree(ch.tmp, ignore_errors=True)
    return 0


# --- compare ---------------------------------------------------------------------


def compare(dir_a, dir_b, out_path=None):
    a, b = Run(load(dir_a)), Run(load(dir_b))
    L = ["# c10k bench compare: %s → %s" % (a.doc["run"]["id"], b.doc["run"]["id"]), "",
         "Medians; Δ is B relative to A. ⚑ marks a change beyond the run-to-run spread "
         "(the min..max ranges of A and B do not overlap); with a single repeat the spread "
         "is unknown and nothing is flagged.", ""]
    keys = [c for c in COLUMNS if c[0] != "ratio"]
    for sc in a.scenarios:
        sid = sc["id"]
        if not any((m, sid) in b.cells for m in a.models):
            continue
        L += ["## %s" % sc["label"], "", "| model | metric | A | B | Δ | |", "|---|---|---:|---:|---:|---|"]
        for m in a.models:
            ca, cb = a.cells.get((m, sid)), b.cells.get((m, sid))
            if not ca or not cb:
                continue
            for key, head, how, _ in keys:
                va, vb = med(ca, key), med(cb, key)
                if va is None and vb is None:
                    continue
                delta = "n/a" if va in (None, 0) or vb is None else "%+.1f%%" % (100 * (vb - va) / va)
                flag = ""
                sa, sb = spread(ca, key), spread(cb, key)
                if (sa and sb and len(ca["repeats"]) > 1 and len(cb["repeats"]) > 1
                        and (sb[0] > sa[1] or sb[1] < sa[0])):
                    flag = "⚑ beyond spread"
                L.append("| %s | %s | %s | %s | %s | %s |" % (m, head, fmt(va, how), fmt(vb, how),
                                                             delta, flag))
        L.append("")
    text = "\n".join(L)
    out_path = out_path or os.path.join(dir_b, "compare-%s.md" % a.doc["run"]["id"])
    with open(out_path, "w") as f:
        f.write(text + "\n")
    print(text)
    print("c10k report: comparison written to %s" % out_path, file=sys.stderr)
    return 0


def main(argv):
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(__doc__.strip().splitlines()[2:4][0])
            print("usage: c10k report RUN_DIR | c10k report --compare RUN_A RUN_B [--out FILE]")
            return 0 if argv else EXIT_USAGE
        if argv[0] == "--compare":
            rest = argv[1:]
            out = None
            if "--out" in rest:
                i = rest.index("--out")
                if i + 1 >= len(rest):
                    raise UsageError("--out needs a file name")
                out = rest[i + 1]
                rest = rest[:i] + rest[i + 2:]
            if len(rest) != 2:
                raise UsageError("--compare takes two run directories")
            return compare(rest[0], rest[1], out)
        if len(argv) != 1 or argv[0].startswith("-"):
            raise UsageError("usage: c10k report RUN_DIR | c10k report --compare RUN_A RUN_B")
        return report(argv[0])
    except UsageError as e:
        print("c10k report: %s" % e, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
