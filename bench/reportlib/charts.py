"""Charts: gnuplot's svg terminal (gnuplot-nox), rewritten so that many of
them can share one HTML page.

gnuplot gives every SVG the same ids (gnuplot_canvas, gpPt0, gpPat1, ...),
a <title>Gnuplot</title> tooltip and a <title> per plot; pages with several
such SVGs are invalid HTML. Each chart's ids are prefixed with its own name
and the tooltips are dropped: the chart's title is its HTML caption, written
once (the file in charts/ keeps it as its one <title>).

Rules every chart follows:
  * a model is always drawn in its colour (colours.py), and nothing else is;
    what is not a model (whiskers, the SLO line, keys of split bars) is black
    or a fill pattern;
  * bars, not lines, where the x axis is a category (models, or a handful of
    connection counts): a line between 16 and 256 connections would suggest
    measurements that were never taken;
  * whiskers span min to max across rounds (drawn with two or more rounds);
  * hatched bars are cells that are not clean (flagged starved, noisy or
    client-bound, or degraded), which are never ranked; the figure's note
    says so (a key entry would be the widest
    and push the key into one tall column).
"""

import html
import math
import os
import re
import shutil
import subprocess

from . import colours as col
from .data import is_num

WIDTH, HEIGHT = 540, 360
# 14 px text in a 540 px wide chart stays above 10 px when a 420 px wide
# phone scales the chart to its ~390 px of content width.
FONT = "sans,14"


def q(s):
    """A gnuplot single-quoted string."""
    return "'" + str(s).replace("'", "''") + "'"


def slug(s):
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


class Figure:
    def __init__(self, name, title, svg, note=""):
        self.name, self.title, self.svg, self.note = name, title, svg, note

    @property
    def id(self):
        return "fig-" + slug(self.name.rsplit(".", 1)[0])


def rewrite_svg(svg, prefix):
    """gnuplot's SVG with ids made unique (prefix-), without tooltips, XML
    declaration or DOCTYPE, ready to be inlined in HTML."""
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    svg = re.sub(r"<title>.*?</title>", "", svg, flags=re.S)
    svg = re.sub(r"<desc>.*?</desc>", "", svg, flags=re.S)
    ids = set(m.group(2) for m in re.finditer(r"\bid\s*=\s*(['\"])(.*?)\1", svg))

    def new(i):
        return "%s-%s" % (prefix, i) if i in ids else i

    svg = re.sub(r"\bid\s*=\s*(['\"])(.*?)\1",
                 lambda m: "id=%s%s%s" % (m.group(1), new(m.group(2)), m.group(1)), svg)
    svg = re.sub(r"(href\s*=\s*['\"])#([^'\"]+)", lambda m: m.group(1) + "#" + new(m.group(2)), svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: "url(#%s)" % new(m.group(1)), svg)
    return svg.strip()


class Charts:
    """Draws charts into out_dir; each call returns a Figure or None (no
    data, or gnuplot failed: then errors says why). prefix goes before every
    file name (and so every id), for two runs' charts in one directory."""

    def __init__(self, out_dir, colours, prefix=""):
        self.out_dir, self.colours, self.prefix = out_dir, colours, prefix
        self.errors = []
        self.available = shutil.which("gnuplot") is not None
        if not self.available:
            self.errors.append("gnuplot is not installed (make deps installs gnuplot-nox)")

    def colour(self, model):
        return self.colours.get(model, col.INK)

    def draw(self, name, title, body, size=(WIDTH, HEIGHT), note=""):
        if not self.available:
            return None
        name = self.prefix + name
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, name)
        script = ("set terminal svg size %d,%d dynamic noenhanced font %s background rgb "
                  "'white'\nset output %s\nset border lc rgb '%s'\n%s\nunset output\n"
                  % (size[0], size[1], q(FONT), q(path), col.INK, body))
        try:
            p = subprocess.run(["gnuplot"], input=script, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=60)
            with open(path, encoding="utf-8") as f:
                raw = f.read()
        except (OSError, subprocess.SubprocessError) as e:
            self.errors.append("%s: %s" % (name, e))
            return None
        if p.returncode != 0 or "<svg" not in raw:
            self.errors.append("%s: %s" % (name, p.stdout.strip()[-300:]))
            return None
        svg = rewrite_svg(raw, slug(name.rsplit(".", 1)[0]))
        with open(path, "w", encoding="utf-8") as f:
            f.write('<?xml version="1.0" encoding="utf-8"?>\n')
            f.write(re.sub(r"(<svg\b[^>]*>)", lambda m: m.group(1) + "<title>%s</title>"
                           % html.escape(title), svg, count=1) + "\n")
        return Figure(name, title, svg, note)


def block(name, rows):
    """A gnuplot datablock."""
    lines = ["$%s << EOD" % name]
    for r in rows:
        lines.append(" ".join("NaN" if v is None else "%.6g" % v if isinstance(v, float)
                              else str(v) for v in r))
    lines.append("EOD")
    return "\n".join(lines) + "\n"


def log_floor(v):
    return 10 ** math.floor(math.log10(v)) if v and v > 0 else 1


# --- bars ----------------------------------------------------------------------


class Bar:
    """One bar: the median (and min-max) of a metric for one model in one
    cluster; lower is the solid part of a split bar (the rest is hatched)."""

    def __init__(self, stat, flagged=False, lower=None):
        self.stat, self.flagged, self.lower = stat, flagged, lower


def bars(ch, name, title, ylabel, clusters, models, get, logy=False, split=None, note="",
         yrange=None):
    """Bar chart. clusters: [(label, key)]; get(model, key) -> Bar or None.
    split: (lower label, upper label) when the bars have a solid lower part
    and a hatched upper part. yrange: (lo, hi) to share an axis between
    charts (compare). One cluster: models label the x axis; more:
    clusters label it and a key names the models."""
    drawn = [m for m in models if any(get(m, k) for _, k in clusters)]
    if not drawn:
        return None
    n = len(drawn)
    multi = len(clusters) > 1
    bw = 0.8 / n if multi else 0.6
    body, plots, ys, blocks = [], [], [], []
    whiskers = flagged_any = False
    for j, m in enumerate(drawn):
        rows = []
        for i, (_, k) in enumerate(clusters):
            b = get(m, k)
            if not b or b.stat is None:
                continue
            x = i + (j - (n - 1) / 2.0) * bw if multi else j
            s = b.stat
            rows.append((float(x), float(s.median), float(s.min), float(s.max),
                         1 if b.flagged else 0, None if b.lower is None else float(b.lower)))
            ys += [s.min, s.median]
            whiskers |= s.n >= 2
            flagged_any |= b.flagged
        if not rows:
            continue
        d = "d%d" % j
        body.append(block(d, rows))
        blocks.append(d)
        c = ch.colour(m)
        if split:
            plots.append("$%s using 1:2 with boxes lc rgb '%s' fs pattern 4 border lc rgb '%s' "
                         "notitle" % (d, c, c))
            plots.append("$%s using 1:6 with boxes lc rgb '%s' fs solid 0.9 notitle" % (d, c))
        else:
            plots.append("$%s using 1:($5==0?$2:NaN) with boxes lc rgb '%s' fs solid 0.9 "
                         "notitle" % (d, c))
            plots.append("$%s using 1:($5==1?$2:NaN) with boxes lc rgb '%s' fs pattern 2 "
                         "border lc rgb '%s' notitle" % (d, c, c))
        if multi:
            plots.append("keyentry with boxes lc rgb '%s' fs solid 0.9 title %s" % (c, q(m)))
    cap = bw * 0.22
    for d in blocks if whiskers else []:
        # vectors, not yerrorbars: gnuplot draws a white disc behind each
        # errorbar point, which would hide the bar's top
        for using in ("1:3:(0):($4-$3)", "($1-%g):3:(%g):(0)" % (cap, 2 * cap),
                      "($1-%g):4:(%g):(0)" % (cap, 2 * cap)):
            plots.append("$%s using %s with vectors nohead lc rgb '%s' lw 1.2 notitle"
                         % (d, using, col.INK))
    if split:
        plots.append("keyentry with boxes lc rgb '%s' fs solid 0.9 title %s" % (col.INK,
                                                                               q(split[0])))
        plots.append("keyentry with boxes lc rgb '%s' fs pattern 4 title %s" % (col.INK,
                                                                               q(split[1])))
    if multi:
        tics = ", ".join("%s %d" % (q(lbl), i) for i, (lbl, _) in enumerate(clusters))
        xr = (-0.6, len(clusters) - 0.4)
    else:
        tics = ", ".join("%s %d" % (q(m), j) for j, m in enumerate(drawn))
        xr = (-0.6, n - 0.4)
    keyed = multi or split   # hatching of flagged bars is explained in the note
    body.append("set style fill solid 0.9 border -1\nset boxwidth %.4f absolute\n"
                "set xrange [%g:%g]\nset xtics (%s) %s\nset grid ytics\n"
                "set ylabel %s\n%s\n%s\nplot %s"
                % (bw * 0.92, xr[0], xr[1], tics,
                   "" if multi else "rotate by 30 right nomirror", q(ylabel),
                   "set key below horizontal maxcols 4 samplen 1 reverse Left width -2" if keyed
                   else "unset key",
                   y_axis(ys, logy, yrange),
                   ", \\\n  ".join(plots)))
    return ch.draw(name, title, "".join(body), note=note)


def y_axis(ys, logy, yrange):
    if logy:
        pos = [v for v in ys if v > 0]
        lo = yrange[0] if yrange else log_floor(min(pos)) if pos else 1
        return "set logscale y\nset yrange [%g:%s]" % (lo, "%g" % yrange[1] if yrange else "*")
    return "set yrange [0:%s]" % ("%g" % yrange[1] if yrange else "*")


# --- lines where x is continuous ----------------------------------------------


def latency_vs_throughput(ch, name, title, series, slo_us, knees):
    """series: {model: [(achieved_rps, p99_us), ...]} in offered order;
    knees: {model: (achieved_rps, p99_us)}."""
    series = {m: [p for p in pts if is_num(p[0]) and is_num(p[1]) and p[1] > 0]
              for m, pts in series.items()}
    series = {m: pts for m, pts in series.items() if pts}
    if not series:
        return None
    body, plots = [], []
    for j, (m, pts) in enumerate(series.items()):
        c = ch.colour(m)
        body.append(block("s%d" % j, [(float(x), y / 1000.0) for x, y in pts]))
        plots.append("$s%d using 1:2 with linespoints lc rgb '%s' lw 2 pt 7 ps 0.7 title %s"
                     % (j, c, q(m)))
        if m in knees:
            x, y = knees[m]
            body.append(block("k%d" % j, [(float(x), y / 1000.0)]))
            plots.append("$k%d using 1:2 with points lc rgb '%s' pt 6 ps 2.4 lw 2 notitle"
                         % (j, c))
    if knees:
        plots.append("keyentry with points lc rgb '%s' pt 6 ps 1.8 lw 2 title 'knee'" % col.INK)
    slo = ""
    if is_num(slo_us):
        slo = ("set arrow from graph 0, first %g to graph 1, first %g nohead lc rgb '%s' dt 2 "
               "lw 1.5\nset label 'SLO p99 %s ms' at graph 0.99, first %g right offset 0,0.7 "
               "tc rgb '%s'\n" % (slo_us / 1000.0, slo_us / 1000.0, col.INK,
                                  "%g" % (slo_us / 1000.0), slo_us / 1000.0, col.INK))
    body.append("set logscale y\nset grid\nset xlabel 'achieved requests per second'\n"
                "set ylabel 'p99 latency (ms, log scale)'\nset xrange [0:*]\n"
                "set key below horizontal samplen 1.5 reverse Left\n%splot %s"
                % (slo, ", \\\n  ".join(plots)))
    return ch.draw(name, title, "".join(body), size=(WIDTH, HEIGHT + 40))


SPECTRUM_TICS = [("0%", 1), ("50%", 2), ("90%", 10), ("99%", 100), ("99.9%", 1000),
                 ("99.99%", 10000), ("99.999%", 100000)]


def spectrum(ch, name, title, series, note=""):
    """series: {model: [(percentile 0-100, latency_us), ...]}. The x axis is
    1/(1-p) on a log scale, so 90%, 99%, 99.9% and 99.99% get equal room (a
    linear 0-100 axis squeezes them into its last tenth)."""
    body, plots, xmax = [], [], 10
    for j, (m, pts) in enumerate(series.items()):
        rows = [(1.0 / (1.0 - p / 100.0), us / 1000.0) for p, us in pts
                if is_num(p) and is_num(us) and 0 <= p < 100 and us > 0]
        if len(rows) < 2:
            continue
        xmax = max(xmax, max(r[0] for r in rows))
        body.append(block("p%d" % j, rows))
        plots.append("$p%d using 1:2 with lines lc rgb '%s' lw 2 title %s"
                     % (j, ch.colour(m), q(m)))
    if not plots:
        return None
    # explicit tic labels are printf formats to gnuplot: "%" must be "%%"
    tics = ", ".join("%s %g" % (q(t.replace("%", "%%")), x) for t, x in SPECTRUM_TICS
                     if x <= xmax * 1.01)
    body.append("set logscale xy\nset grid\nset xrange [1:%g]\nset xtics (%s)\n"
                "set xlabel 'percentile (spaced by 1/(1-p))'\n"
                "set ylabel 'latency (ms, log scale)'\n"
                "set key below horizontal samplen 1.5 reverse Left\n"
                "plot %s" % (xmax, tics, ", \\\n  ".join(plots)))
    return ch.draw(name, title, "".join(body), note=note)


def timeline(ch, name, title, series):
    """series: {model: [(second, completed, p99_us), ...]}: completions per
    second above, p99 below, so a stall or a slow warm-up shows at a glance."""
    series = {m: pts for m, pts in series.items() if pts}
    if not series:
        return None
    body, top, bottom = [], [], []
    for j, (m, pts) in enumerate(series.items()):
        c = ch.colour(m)
        body.append(block("t%d" % j, [(float(t), n, None if not is_num(p) or p <= 0
                                       else p / 1000.0) for t, n, p in pts]))
        top.append("$t%d using 1:2 with steps lc rgb '%s' lw 1.6 title %s" % (j, c, q(m)))
        bottom.append("$t%d using 1:3 with steps lc rgb '%s' lw 1.6 notitle" % (j, c))
    body.append("set multiplot layout 2,1\nset grid\nset xrange [0:*]\n"
                "set ylabel 'completed per second'\nset format x ''\nset yrange [0:*]\n"
                "set key below horizontal samplen 1.5 reverse Left\nset lmargin 10\n"
                "plot %s\nset xlabel 'seconds into the ladder (all steps in order)'\n"
                "set format x '%%g'\nset ylabel 'p99 (ms, log scale)'\nset logscale y\n"
                "set yrange [*:*]\nunset key\nplot %s\nunset multiplot"
                % (", ".join(top), ", ".join(bottom)))
    return ch.draw(name, title, "".join(body), size=(WIDTH, HEIGHT + 160))
