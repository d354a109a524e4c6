#!/usr/bin/python3
"""Tests of the report generator (bench/report.py, bench/reportlib/) on stored runs.

    /usr/bin/python3 tests/bench/test_report.py

Two fixtures: tests/bench/fixture/results.json, a real quick run in schema
version 1 trimmed to four servers and three scenarios, and
tests/bench/fixture-v2/results.json, a SYNTHETIC schema-2 run (rounds with
spread, flags, an open-loop latency ladder with knees, a ceiling row, model
counters of a coroutine model, softirqs; its README says where each part
comes from). The generator must write ranked tables and full tables with the
fixtures' numbers, findings and explanations only where the data meets
their premise (each premise is tested on both sides), well-formed
self-contained HTML with unique ids, charts with one colour per model, a
compare view, and one-line errors with exit status 2 on bad input.
Prints "bench: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import copy
import glob
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(HERE, "fixture", "results.json")
FIXTURE_V2 = os.path.join(HERE, "fixture-v2", "results.json")
REPORT = os.path.join(REPO, "bench", "report.py")
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import testmain  # noqa: E402
from reportlib import colours, concepts, data, disk, summary  # noqa: E402

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source",
        "track", "wbr"}


class Balance(html.parser.HTMLParser):
    """Checks that every element is closed in order (SVG included), and
    collects ids, tags and external references."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags, self.ids = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and re.match(r"(https?:)?//", v):
                self.errors.append("external reference %s=%s" % (k, v))
            if k == "id":
                self.ids.append(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)
        self.ids += [v for k, v in attrs if k == "id"]

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unexpected </%s>, open: %s" % (tag, self.stack[-3:]))
            return
        self.stack.pop()


def load(path):
    with open(path) as f:
        return json.load(f)


def run_cmd(args, timeout=180):
    return subprocess.run([sys.executable, REPORT] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def run_report(doc):
    d = tempfile.mkdtemp(prefix="c10k-report-test-")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(doc, f)
    return d, run_cmd([d])


def read(d, name):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return f.read()


def md_table(md, label):
    """{model: {header: text}} of the first table under '### label'."""
    part = md.split("### " + label + "\n", 1)[1].lstrip("\n")
    lines = []
    for l in part.splitlines():
        if l.startswith("|"):
            lines.append(l)
        elif lines:
            break
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = dict(zip(head, cells))
        row["_raw"] = line
        out[cells[head.index("model")].replace("**", "").rstrip("★")] = row
    return out


def plain(text):
    return text.replace("**", "").rstrip("★")


def ranked_rows(md, group_label):
    """Rows of a group's ranked table in order: [(rank, model, raw line)]."""
    part = md.split("## What this run says", 1)[1].split("### " + group_label + "\n", 1)[1]
    rows = []
    for l in part.lstrip("\n").splitlines():
        if l.startswith("|"):
            c = [x.strip() for x in l.strip("|").split("|")]
            rows.append((c[0], c[1], l))
        elif rows:
            break
    return rows[2:]


def set_rps(cell, factor):
    for r in cell["repeats"]:
        r["rps"] *= factor
    for k in ("min", "median", "max"):
        cell["summary"]["rps"][k] *= factor


class Fixture:
    """A fixture's report, written once per test class."""

    @classmethod
    def setUpClass(cls):
        cls.doc = load(cls.FIXTURE)
        cls.dir, cls.result = run_report(cls.doc)
        cls.md = read(cls.dir, "report.md") if cls.result.returncode == 0 else ""
        cls.html = read(cls.dir, "report.html") if cls.result.returncode == 0 else ""

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def cells(self, sid):
        return [c for c in self.doc["cells"] if c["scenario"] == sid]

    def test_runs_and_prints_paths(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        self.assertNotIn("chart not drawn", self.result.stderr)
        for f in ("report.md", "report.html"):
            path = os.path.join(self.dir, f)
            self.assertTrue(os.path.exists(path), f)
            self.assertIn("wrote %s" % path, self.result.stdout)

    def test_full_tables_match_fixture(self):
        for sc in self.doc["scenarios"]:
            if sc.get("kind", "closed") != "closed":
                continue
            table = md_table(self.md.split("## Full tables", 1)[1], sc["label"])
            cells = self.cells(sc["id"])
            self.assertEqual(set(table), {c["model"] for c in cells}, sc["id"])
            nginx = next((c for c in cells if c["model"] == "nginx"), None)
            for c in cells:
                row = table[c["model"]]
                self.assertEqual(row["status"], c["status"])
                self.assertEqual(row["flags"], ", ".join(c.get("flags") or []) or "–")
                if c["status"] == "failed":
                    self.assertEqual(row["req/s"], "n/a")
                    continue
                s = c["summary"]
                self.assertEqual(plain(row["req/s"]), "{:,.0f}".format(s["rps"]["median"]))
                if s["lat_p99_us"]:
                    self.assertEqual(plain(row["p99 ms"]),
                                     data_ms(s["lat_p99_us"]["median"]))
                if s["ctx_vol_per_req"]:
                    self.assertEqual(plain(row["vol sw/req"]),
                                     "%.3f" % s["ctx_vol_per_req"]["median"])
                    self.assertEqual(plain(row["invol sw/req"]),
                                     "%.3f" % s["ctx_invol_per_req"]["median"])
                self.assertEqual(plain(row["errors"]),
                                 "{:,.0f}".format(s["errors_total"]["median"]))
                if nginx and nginx["status"] != "failed":
                    self.assertEqual(plain(row["× nginx"]), "%.2f" % (
                        s["rps"]["median"] / nginx["summary"]["rps"]["median"]))
                # the median over rounds of each round's share of the ceiling
                if c["model"] == "ceiling":
                    self.assertEqual(row["share of ceiling"], "–")
                elif s.get("ceiling_ratio"):
                    self.assertEqual(plain(row["share of ceiling"]),
                                     "%.2f" % s["ceiling_ratio"]["median"])
                rounds = len(c["repeats"])
                if rounds > 1:
                    self.assertEqual(row["req/s min–max"], "%s–%s" % (
                        "{:,.0f}".format(s["rps"]["min"]), "{:,.0f}".format(s["rps"]["max"])))

    def test_winner_marked_among_clean_cells(self):
        for sc in self.doc["scenarios"]:
            if sc.get("kind", "closed") != "closed":
                continue
            table = md_table(self.md.split("## Full tables", 1)[1], sc["label"])
            clean = [c for c in self.cells(sc["id"]) if c["status"] == "ok"
                     and not c.get("flags") and c["model"] != "ceiling"]
            if len(clean) < 2:
                continue
            best = max(clean, key=lambda c: c["summary"]["rps"]["median"])
            self.assertIn("**{:,.0f}★**".format(best["summary"]["rps"]["median"]),
                          table[best["model"]]["_raw"])
            for c in self.cells(sc["id"]):
                if c not in clean:
                    self.assertNotIn("★", table[c["model"]]["_raw"], c["model"])
            # zero errors everywhere is no win (the issue: every zero-error row had a star)
            self.assertFalse([m for m, row in table.items() if row["errors"].endswith("★")])

    def test_what_this_run_says_comes_first(self):
        body = self.md.split("## What this run says", 1)
        self.assertEqual(len(body), 2)
        self.assertNotIn("## Full tables", body[0])
        first = body[1]
        self.assertLess(first.index("### Findings"), first.index("## Full tables"))
        finds = first.split("### Findings", 1)[1].split("\n## ", 1)[0]
        items = [l for l in finds.splitlines() if l.startswith("- ")]
        self.assertGreaterEqual(len(items), 3)
        self.assertLessEqual(len(items), summary.MAX_FINDINGS)
        for f in items:
            self.assertTrue(re.search(r"\d", f), f)   # every finding has numbers

    def test_ranked_tables_are_ranked(self):
        run = data.Run(self.doc)
        for g in run.groups():
            rows = ranked_rows(self.md, g.label)
            ranks = [r for r, _, _ in rows if r.isdigit()]
            self.assertEqual(ranks, [str(i + 1) for i in range(len(ranks))], g.label)
            # ranked rows first, then unranked ones, the ceiling last
            kinds = ["rank" if r.isdigit() else "ref" if r == "ref" else "-" for r, _, _ in rows]
            self.assertEqual(kinds, sorted(kinds, key=["rank", "-", "ref"].index), g.label)
            by_model = {m: c for m, c in ((x.model, x) for s in g.scenarios
                                          for x in run.cells_of(s.id))}
            for rank, m, raw in rows:
                cells = [run.cell(m, s.id) for s in g.scenarios if run.cell(m, s.id)]
                if not all(c.clean for c in cells) or m == "ceiling":
                    self.assertFalse(rank.isdigit(), (g.label, m))
                    self.assertNotIn("★", raw, (g.label, m))
            self.assertTrue(by_model)

    def test_html_well_formed_self_contained_phone_ready(self):
        p = Balance()
        p.feed(self.html)
        p.close()
        self.assertEqual(p.errors, [])
        self.assertEqual(p.stack, [])
        self.assertNotIn("script", p.tags)
        self.assertNotIn("@font-face", self.html)
        self.assertIn('<meta name="viewport" content="width=device-width, initial-scale=1">',
                      self.html)
        dups = sorted({i for i in p.ids if p.ids.count(i) > 1})
        self.assertEqual(dups, [])
        self.assertEqual(self.html.count("<table>"),
                         self.html.count('<div class="scroll"><table>'))
        self.assertNotIn("Gnuplot", self.html)
        svgs = re.findall(r"<svg\b.*?</svg>", self.html, re.S)
        self.assertGreaterEqual(len(svgs), 8)
        for svg in svgs:
            root = ET.fromstring(svg)
            self.assertTrue(root.tag.endswith("svg"))
            self.assertIsNotNone(root.get("viewBox"))
            self.assertFalse([e for e in root.iter() if e.tag.endswith("title")])
        for cap in re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", self.html):
            self.assertEqual(self.html.count(">%s<" % cap), 1, cap)  # each title once

    def test_every_chart_is_svg_with_data(self):
        charts = glob.glob(os.path.join(self.dir, "charts", "*.svg"))
        names = {os.path.basename(c).split("-")[0].split(".")[0] for c in charts}
        for want in self.CHARTS:
            self.assertIn(want, names)
        for path in charts:
            root = ET.parse(path).getroot()
            self.assertTrue(root.tag.endswith("svg"), path)
            ids = [g.get("id") for g in root.iter() if g.tag.endswith("g")]
            self.assertTrue([i for i in ids if i and re.search(r"gnuplot_plot_1[a-z]?$", i)], path)
            texts = " ".join(root.itertext())
            self.assertTrue(re.search(r"\((ms|µs|KiB)|per second|per request", texts), path)

    def test_model_colours_are_fixed(self):
        """In every line chart each model's plot is drawn in its palette colour."""
        pal = colours.palette(self.doc["models"])
        rgb = {m: "rgb(%3d, %3d, %3d)" % tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
               for m, c in pal.items()}
        checked = 0
        for path in glob.glob(os.path.join(self.dir, "charts", "*.svg")):
            root = ET.parse(path).getroot()
            for g in root.iter():
                if not (g.tag.endswith("g") and (g.get("id") or "").rsplit("-", 1)[-1]
                        .startswith("gnuplot_plot")):
                    continue
                label = [t for t in g.itertext() if t.strip()]
                if len(label) != 1 or label[0].strip() not in pal:
                    continue
                strokes = {e.get("stroke") for e in g.iter() if (e.get("stroke") or "")
                           .startswith("rgb")}
                if strokes:
                    self.assertEqual(strokes, {rgb[label[0].strip()]}, (path, label))
                    checked += 1
        self.assertGreater(checked, 3)

    def test_tail_latency_is_a_finding(self):
        finds = self.md.split("### Findings", 1)[1].split("\n## ", 1)[0]
        self.assertIn("Tail latency under load", finds)
        self.assertRegex(finds, r"p99 was [\d,.]+ ms")


def data_ms(us):
    from reportlib import fmt
    return fmt.ms(us)


class SchemaV1Test(Fixture, unittest.TestCase):
    FIXTURE = FIXTURE
    CHARTS = ("rps", "p99", "spectrum", "switches", "memory", "syscalls", "cpu")

    def test_latency_finding_names_the_gap(self):
        """The fixture's fact the issue starts from: threaded 737 ms against epoll's 15 ms."""
        self.assertIn("threaded's p99 was 737 ms against 15.1 ms for epoll", self.md)

    def test_ranking_follows_the_data(self):
        doc = copy.deepcopy(self.doc)
        sc = doc["scenarios"][2]   # a group of one scenario
        cells = [c for c in doc["cells"] if c["scenario"] == sc["id"]]
        loser = min(cells, key=lambda c: c["summary"]["rps"]["median"])
        set_rps(loser, 10 * max(c["summary"]["rps"]["median"] for c in cells)
                / loser["summary"]["rps"]["median"])
        d, r = run_report(doc)
        try:
            self.assertEqual(r.returncode, 0, r.stderr)
            label = data.Run(doc).groups()[-1].label
            before = ranked_rows(self.md, label)
            after = ranked_rows(read(d, "report.md"), label)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.assertNotEqual(before[0][1], loser["model"])
        self.assertEqual(after[0][:2], ("1", loser["model"]))

    def test_spectrum_uses_a_tail_axis(self):
        svg = read(self.dir, "charts/spectrum-1kib-ka-c256.svg")
        for tic in ("50%", "90%", "99%", "99.9%"):
            self.assertIn(">%s<" % tic, svg)


class SchemaV2Test(Fixture, unittest.TestCase):
    FIXTURE = FIXTURE_V2
    CHARTS = ("rps", "p99", "spectrum", "switches", "memory", "syscalls", "cpu", "latency",
              "timeline", "softirqs")

    def test_flagged_cells_never_rank_first(self):
        """The noisy cell made the fastest of its scenario: still unranked, no star."""
        doc = copy.deepcopy(self.doc)
        noisy = next(c for c in doc["cells"] if "noisy" in c["flags"])
        top = max(c["summary"]["rps"]["median"] for c in doc["cells"]
                  if c["scenario"] == noisy["scenario"] and c["model"] != "ceiling")
        set_rps(noisy, 2 * top / noisy["summary"]["rps"]["median"])
        run = data.Run(doc)
        g = next(g for g in run.groups() if any(s.id == noisy["scenario"] for s in g.scenarios))
        head, rows, _ = summary.ranked_table(run, g)
        first = rows[0].cells
        self.assertEqual(first[0].text, "1")
        self.assertNotEqual(first[1].text, noisy["model"])
        row = next(r for r in rows if r.cells[1].text == noisy["model"])
        self.assertEqual(row.cells[0].text, "–")
        self.assertFalse([c for c in row.cells if c.win])
        self.assertIn("noisy", row.cells[-1].text)
        d, r = run_report(doc)
        try:
            md = read(d, "report.md")
        finally:
            shutil.rmtree(d, ignore_errors=True)
        table = md_table(md.split("## Full tables", 1)[1],
                         run.by_id[noisy["scenario"]].label)
        self.assertNotIn("★", table[noisy["model"]]["_raw"])

    def test_starved_cell_is_shown_not_ranked(self):
        rows = ranked_rows(self.md, "1KiB keep-alive")
        prefork = next(r for r in rows if r[1] == "prefork")
        self.assertEqual(prefork[0], "–")
        self.assertIn("starved, accept queue busy 38% of the window", prefork[2])

    def test_spread_and_knee_in_ranked_table(self):
        run = data.Run(self.doc)
        g = next(g for g in run.groups() if g.open)
        head, rows, caption = summary.ranked_table(run, g)
        self.assertIn("knee req/s (p99 < 10 ms)", head)
        k = head.index("knee req/s (p99 < 10 ms)")
        lat = g.open[0].id
        for r in rows:
            c = run.cell(r.cells[1].text, lat)
            if c:
                want = "none" if c.knee is None else "{:,.0f}".format(c.knee)
                self.assertEqual(r.cells[k].text, want, r.cells[1].text)
        self.assertRegex(rows[0].cells[2].text, r"^\d+% \(\d+–\d+\)$")
        self.assertIn("over 3 rounds", caption)

    def test_knee_and_open_loop_findings(self):
        finds = self.md.split("### Findings", 1)[1].split("\n## ", 1)[0]
        self.assertRegex(finds, r"epoll kept p99 under 10 ms up to 29,\d{3} req/s offered")
        self.assertIn("prefork never did, even at its lowest step", finds)

    def test_concepts_have_numbers(self):
        text = self.md.split("## The operating-system concepts, measured", 1)[1].split(
            "## Full tables")[0]
        for title in ("Voluntary context switches", "Involuntary context switches",
                      "Memory per connection", "A thread pool against a thread per connection",
                      "Softirqs", "Cooperative scheduling", "Syscalls"):
            self.assertIn("### " + title, text)
        self.assertIn("coro made 2.0", text)          # user-level switches per request
        self.assertIn("NET_RX per request", text)
        self.assertIn("served at most 64 of the 256 connections at once", text)

    def test_steps_table(self):
        table = self.md.split("### 1KiB keep-alive, 256 conns, open-loop ladder\n", 1)[1]
        self.assertIn("| knee |", table.split("\n\n")[1] + table.split("\n\n")[2])
        self.assertIn("Little's law off", table)

    def test_open_loop_charts(self):
        svg = read(self.dir, "charts/latency-1kib-ka-c256-latency.svg")
        self.assertIn("SLO p99 10 ms", svg)
        self.assertIn(">knee<", svg)
        tl = read(self.dir, "charts/timeline-1kib-ka-c256-latency.svg")
        self.assertIn("completed per second", tl)


class EdgeRunsTest(unittest.TestCase):
    """Runs with parts missing still render, in one piece."""

    def render(self, doc):
        d, r = run_report(doc)
        self.addCleanup(shutil.rmtree, d, True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        return read(d, "report.md")

    def test_only_an_open_loop_scenario(self):
        doc = load(FIXTURE_V2)
        doc["scenarios"] = [s for s in doc["scenarios"] if s.get("kind") == "latency"]
        doc["cells"] = [c for c in doc["cells"] if c["scenario"] == doc["scenarios"][0]["id"]]
        md = self.render(doc)
        rows = ranked_rows(md, "1KiB keep-alive")
        self.assertEqual(rows[0][:2], ("1", "epoll"))     # ranked by knee

    def test_a_failed_cell(self):
        doc = load(FIXTURE_V2)
        for c in doc["cells"]:
            if c["model"] == "epoll":
                c.update(status="failed", reasons=["did not start"], knee_rps=None, steps=[],
                         summary={k: None for k in c["summary"]},
                         repeats=[{"repeat": 1, "status": "failed"}])
        md = self.render(doc)
        self.assertIn("epoll, 1KiB keep-alive, 16 conns: did not start", md)
        self.assertNotIn("| 1 | epoll |", md)

    def test_no_clean_cell_is_not_a_failure(self):
        """With every cell of a group flagged there is no best to divide by:
        the % column says n/a, and "failed" only where a cell failed."""
        doc = load(FIXTURE_V2)
        for c in doc["cells"]:
            if c["scenario"] == "1MiB-ka-c16":
                c["flags"] = sorted(set(c.get("flags") or []) | {"noisy"})
        md = self.render(doc)
        rows = ranked_rows(md, "1MiB keep-alive")
        self.assertTrue(rows)
        for _, model, line in rows:
            pct = [x.strip() for x in line.strip("|").split("|")][2]
            self.assertEqual(pct, "n/a", (model, line))

    def test_no_references_no_perf(self):
        doc = load(FIXTURE_V2)
        doc["models"] = [m for m in doc["models"] if m not in ("nginx", "ceiling")]
        doc["cells"] = [c for c in doc["cells"] if c["model"] not in ("nginx", "ceiling")]
        for c in doc["cells"]:
            for k in ("syscalls_per_req", "softirq_net_rx_per_req"):
                if c["summary"]:
                    c["summary"][k] = None
                for r in c["repeats"]:
                    r[k] = None
        md = self.render(doc)
        self.assertIn("unavailable", md)
        self.assertNotIn("Against the ceiling", md)

    def test_nothing_ran(self):
        doc = load(FIXTURE)
        doc["cells"] = []
        doc["run"]["status"] = "interrupted"
        md = self.render(doc)
        self.assertIn("This run is interrupted", md)
        self.assertIn("No findings", md)


class PremiseTest(unittest.TestCase):
    """Each explanatory clause appears only when its premise holds."""

    def test_sleep(self):
        yes = concepts.sleep_clause("threaded", 0.99, "epoll", 0.005)
        self.assertIn("threaded slept about once per request", yes)
        self.assertIn("epoll found its next request already waiting", yes)
        self.assertIn("about 3 times", concepts.sleep_clause("a", 3.0, "b", 0.0))
        self.assertIsNone(concepts.sleep_clause("threaded", 0.49, "epoll", 0.005))
        self.assertIsNone(concepts.sleep_clause("uring", 1.39, "threaded", 0.11))
        self.assertIsNone(concepts.sleep_clause("a", None, "b", 0.0))

    def test_sleep_in_the_report(self):
        doc = load(FIXTURE_V2)
        run = data.Run(doc)
        c = concepts.voluntary(run, NoCharts())
        self.assertIn("slept about once per request", c.text)
        for cell in doc["cells"]:
            s = cell["summary"].get("ctx_vol_per_req") if cell["summary"] else None
            if s and s["median"] < 0.1:      # nobody found its work ready any more
                s.update(min=0.2, median=0.2, max=0.2)
        c = concepts.voluntary(data.Run(doc), NoCharts())
        self.assertNotIn("slept about once", c.text)
        self.assertNotIn("already waiting", c.text)
        self.assertIn("0.200", c.text)   # the numbers are still stated

    def test_preempt(self):
        self.assertIn("62 threads on 1 server CPU",
                      concepts.preempt_clause("threaded", 0.1, 62, 1))
        self.assertIsNone(concepts.preempt_clause("threaded", 0.04, 62, 1))
        self.assertIsNone(concepts.preempt_clause("epoll", 0.2, 1, 1))

    def test_memory_order(self):
        self.assertIsNotNone(concepts.memory_order_clause(
            {"process per connection": 96, "thread per connection": 27, "event loop": 0.5}))
        self.assertIsNone(concepts.memory_order_clause(
            {"process per connection": 20, "thread per connection": 27, "event loop": 0.5}))
        self.assertIsNone(concepts.memory_order_clause({"thread per connection": 27,
                                                        "event loop": 0.5}))

    def test_per_connection_memory(self):
        """v1's prefork ran 2 processes for 256 connections: not a process per connection."""
        run = data.Run(load(FIXTURE))
        sc = run.by_id["1KiB-ka-c256"]
        self.assertEqual(summary.per_connection_premise(run, "prefork", sc), (False, 2))
        self.assertEqual(summary.per_connection_premise(run, "threaded", sc), (True, 258))
        text = concepts.memory(run, NoCharts()).text
        self.assertIn("prefork ran 2 processes for 256 connections, so its 0.0 KiB is not", text)
        run2 = data.Run(load(FIXTURE_V2))
        sc2 = run2.by_id["1KiB-ka-c256"]
        self.assertEqual(summary.per_connection_premise(run2, "prefork", sc2), (True, 241))

    def test_queue(self):
        self.assertIn("other 192 waited", concepts.queue_clause("p", 64, 256, 520))
        self.assertIsNone(concepts.queue_clause("p", 64, 16, 0))

    def test_thread_creation(self):
        self.assertIn("created and ended a thread",
                      concepts.creation_clause("threaded", 165, "pool", 95))
        self.assertIsNone(concepts.creation_clause("threaded", 100, "pool", 95))

    def test_softirq(self):
        self.assertIn("4.50 NET_RX", concepts.softirq_clause(4.5, 1.1))
        self.assertIsNone(concepts.softirq_clause(1.2, 1.1))

    def test_cooperative(self):
        self.assertIn("in user space", concepts.coop_clause("coro", 2.0, 0.004))
        self.assertIsNone(concepts.coop_clause("coro", 0.3, 0.004))
        self.assertIsNone(concepts.coop_clause("coro", 2.0, 0.9))

    def test_closed_loop_omission(self):
        run = data.Run(load(FIXTURE))
        sc = run.by_id["1KiB-ka-c256"]
        self.assertIn("its accept queue held up to 255 of the 256 connections",
                      summary.omission_clause(run, sc, "prefork", "epoll"))
        self.assertIsNone(summary.omission_clause(run, sc, "nginx", "epoll"))
        doc = load(FIXTURE)
        for c in doc["cells"]:
            if c["model"] == "prefork" and c["scenario"] == sc.id:
                c["summary"]["accept_queue_max"].update(min=3, median=3, max=3)
        run = data.Run(doc)
        self.assertIsNone(summary.omission_clause(run, run.by_id[sc.id], "prefork", "epoll"))

    def test_top_ranked_only_when_clean(self):
        doc = load(FIXTURE_V2)
        self.assertIn("for epoll, the top-ranked", summary.tail_latency(data.Run(doc)))
        for c in doc["cells"]:
            if c["scenario"] == "1KiB-ka-c256":
                c["flags"] = ["noisy"]
        text = summary.tail_latency(data.Run(doc))
        self.assertNotIn("top-ranked", text)
        self.assertIn("the fastest (no cell is clean)", text)

    def test_large_against_small_needs_the_spread(self):
        S = data.Stat
        self.assertTrue(summary.apart(S(10, 11, 12, 3), S(13, 14, 15, 3)))
        self.assertFalse(summary.apart(S(10, 11, 13, 3), S(12, 14, 15, 3)))
        self.assertFalse(summary.apart(S(100, 100, 100, 1), S(103, 103, 103, 1)))
        self.assertTrue(summary.apart(S(100, 100, 100, 1), S(106, 106, 106, 1)))

    def test_findings_at_most_eight(self):
        for f in (FIXTURE, FIXTURE_V2):
            self.assertLessEqual(len(summary.findings(data.Run(load(f)))), summary.MAX_FINDINGS)


def cold_doc(cells, start=0.0, by_thread=None, stalls=True):
    """A synthetic cold-cache run: one scenario, 200 IOPS, one cell per
    (model, rps (min, median, max), p99 ms, stall ms/s), two rounds of 5 s.
    by_thread: {model: {thread name: ms over the window}}."""
    sc = {"id": "cold-zipf-iops200-64KiB-ka-c64", "label": "cold cache, 200 IOPS disk, 64 conns",
          "series": "cold cache, 200 IOPS disk", "size": 65536, "keepalive": True,
          "connections": 64, "slow": None, "kind": "closed", "link": "loopback",
          "cold": {"disk_iops": 200, "dist": "zipf", "zipf_s": 1.0, "files": 22200}}
    out = []
    for model, rps, p99, stall in cells:
        summ = {"rps": {"min": rps[0], "median": rps[1], "max": rps[2]},
                "lat_p99_us": {"min": p99 * 1000, "median": p99 * 1000, "max": p99 * 1000},
                "resident_start_frac": {"min": 0, "median": start, "max": start},
                "resident_end_frac": {"min": 0.02, "median": 0.03, "max": 0.04},
                "threads_max": {"min": 66, "median": 66, "max": 66},
                "mem_per_conn_kib": {"min": 25, "median": 25, "max": 25}}
        if stall is not None and stalls:
            summ["loop_stall_ms_per_s"] = {"min": stall, "median": stall, "max": stall}
        reps = [{"round": r, "status": "ok", "duration_s": 5.0, "blkio_delay_span_s": 5.0,
                 "blkio_delay_by_thread": (by_thread or {}).get(model, {})} for r in (1, 2)]
        out.append({"model": model, "scenario": sc["id"], "status": "ok", "flags": [],
                    "reasons": [], "repeats": reps, "summary": summ})
    return {"schema": "c10k-bench-results", "schema_version": 2,
            "run": {"id": "cold", "settings": {"rounds": 2}},
            "models": [c[0] for c in cells], "scenarios": [sc], "cells": out}


COLD_CELLS = [("epoll", (300, 310, 320), 900, 900.0),
              ("epoll:helpers=4", (480, 500, 520), 300, 20.0),
              ("libuv", (290, 300, 310), 950, 880.0),
              ("libuv:fs-pool", (400, 420, 440), 500, 30.0),
              ("uring", (500, 510, 530), 280, 5.0),
              ("threaded", (520, 530, 540), 250, None),
              ("nginx", (300, 305, 310), 950, None)]
COLD_THREADS = {"epoll": {"c10k": 4400}, "libuv": {"c10k": 4300},
                "epoll:helpers=4": {"c10k": 50, "c10k-helper": 16000},
                "libuv:fs-pool": {"c10k": 15000}, "uring": {"c10k": 0, "iou-wrk": 9000}}


class DiskFindingTest(unittest.TestCase):
    """The cold-cache finding: numbers always, explanations on their premise."""

    def finding(self, **kw):
        return disk.disk_finding(data.Run(cold_doc(kw.pop("cells", COLD_CELLS), **kw)))

    def test_states_stalls_req_and_p99(self):
        text = self.finding(by_thread=COLD_THREADS)
        self.assertIn("**Waiting for the disk** (cold cache, 200 IOPS disk, 64 conns; every "
                      "window began cold", text)
        self.assertIn("epoll's loop was stalled 900 ms of every second, its thread waiting for "
                      "the disk in 880 ms of them (310 req/s, p99 900 ms)", text)
        self.assertIn("epoll:helpers=4: 20 ms/s (500 req/s, p99 300 ms, 1.6× epoll's req/s), "
                      "its helpers waiting 3,200 ms/s in its place", text)
        self.assertIn("libuv:fs-pool: 30 ms/s (420 req/s, p99 500 ms, 1.4× libuv's req/s), "
                      "libuv's thread pool waiting 2,970 ms/s in its place", text)
        self.assertIn("as it ended", text)
        self.assertIn("uring: 5 ms/s (510 req/s, p99 280 ms, 1.6× epoll's req/s), io_uring's "
                      "io-wq threads waiting 1,800 ms/s in its place (66 threads in all)", text)
        self.assertIn("threaded 530 req/s, p99 250 ms with 66 threads", text)
        self.assertNotIn("nginx", text, "no stall counter: not an event loop of ours")

    def test_not_cold_is_said(self):
        text = self.finding(start=0.05, by_thread=COLD_THREADS)
        self.assertIn("NOT cold: at most 5.0% of the root in memory", text)
        self.assertNotIn("every window began cold", text)

    def test_disk_clause_needs_the_loop_thread_in_d(self):
        threads = dict(COLD_THREADS, epoll={"c10k": 2000})  # 400 ms/s of 900 stalled
        text = self.finding(by_thread=threads)
        self.assertIn("epoll's loop was stalled 900 ms of every second (310 req/s", text)
        self.assertNotIn("its thread waiting for the disk in 400", text)

    def test_in_its_place_needs_the_stalls_gone(self):
        cells = [c if c[0] != "epoll:helpers=4" else (c[0], c[1], c[2], 400.0)
                 for c in COLD_CELLS]
        text = self.finding(cells=cells, by_thread=COLD_THREADS)
        self.assertIn("epoll:helpers=4: 400 ms/s", text)
        self.assertNotIn("its helpers waiting", text)

    def test_req_s_ratio_needs_the_ranges_apart(self):
        cells = [c if c[0] != "epoll:helpers=4" else (c[0], (305, 330, 350), c[2], c[3])
                 for c in COLD_CELLS]
        text = self.finding(cells=cells, by_thread=COLD_THREADS)
        self.assertIn("level with epoll's req/s within the spread", text)
        self.assertNotIn("1.1× epoll's", text)

    def test_without_stall_counters_the_threads_waiting(self):
        text = self.finding(by_thread=COLD_THREADS, stalls=False)
        self.assertIn("epoll's loop thread waited for the disk 880 ms of every second", text)
        self.assertIn("libuv:fs-pool: its loop and pool threads together waited for the disk "
                      "3,000 ms/s", text)

    def test_no_cold_scenario_no_finding(self):
        for f in (FIXTURE, FIXTURE_V2):
            self.assertIsNone(disk.disk_finding(data.Run(load(f))))

    def test_in_the_report(self):
        out = tempfile.mkdtemp()
        try:
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump(cold_doc(COLD_CELLS, by_thread=COLD_THREADS), f)
            r = run_cmd([out])
            self.assertEqual(r.returncode, 0, r.stderr)
            md = read(out, "report.md")
            self.assertIn("- **Waiting for the disk**", md)
            self.assertLess(md.index("Waiting for the disk"), md.index("## The operating-system"))
        finally:
            shutil.rmtree(out)


CROSS_ID = "1KiB-ka-crossover"
CROSS_LABEL = "1KiB keep-alive, 10 to 10,000 conns at one rate (crossover)"


def crossover_doc():
    """fixture-v2 plus a SYNTHETIC crossover scenario: 15,000 req/s over 10 to
    10,000 connections; threaded's p99 and memory grow with its threads,
    the event loops' stay flat."""
    doc = load(FIXTURE_V2)
    doc["scenarios"].append({
        "id": CROSS_ID, "label": CROSS_LABEL, "series": "1KiB keep-alive", "size": 1024,
        "size_label": "1KiB", "keepalive": True, "connections": 10000, "slow": None,
        "kind": "crossover", "link": "loopback", "slo_p99_us": 1000, "offered_rps": 15000,
        "connections_steps": [10, 100, 1000, 10000]})
    shape = {"epoll": (300, 1.0, 0.2, 2, 0.1), "nginx": (420, 1.0, 0.6, 2, 0.1),
             "threaded": (600, 2.2, 26.0, None, 1.0), "coro": (330, 1.02, 8.5, 2, 0.01)}
    for model, (p99, growth, kib, threads, vol) in shape.items():
        steps = []
        for i, n in enumerate([10, 100, 1000, 10000]):
            steps.append({
                "step": i, "offered_rps": 15000, "connections": n, "achieved_rps": 15000,
                "goodput_rps": 15000, "requests": 45000, "errors_total": 0,
                "lat_p50_us": p99 / 3 * growth ** i, "lat_p99_us": p99 * growth ** i,
                "lat_p999_us": 2 * p99 * growth ** i, "lat_max_us": 3 * p99 * growth ** i,
                "lat_histogram_us": [[100, 20000], [int(p99 * growth ** i), 25000]],
                "timeline": [{"t": 0, "completed": 15000, "errors": 0,
                              "p99_us": p99 * growth ** i}],
                "fairness_jain": 0.99, "client_cpu_util": 0.3,
                "little": {"expected": 3.0, "observed": 3.0, "ok": True},
                "client_bound": False, "starved": False, "status": "ok",
                "mem_per_conn_kib": kib, "threads_max": threads or n + 2,
                "ctx_vol_per_req": vol, "syscalls_per_req": 6.0, "cpu_us_per_req": 20.0})
        doc["cells"].append({"model": model, "scenario": CROSS_ID, "status": "ok",
                             "reasons": [], "flags": [], "spread_pct": None,
                             "repeats": [{"round": 1, "repeat": 1, "status": "ok",
                                          "steps": steps}],
                             "summary": {}, "steps": steps, "knee_rps": None,
                             "knee_by_round": None, "peak_closed_rps": 30000})
    return doc


class OpenLoopReportTest(unittest.TestCase):
    """The crossover's table, charts and finding, the overload finding, and
    client-bound steps never shown as the server's figures."""

    @classmethod
    def setUpClass(cls):
        cls.doc = crossover_doc()
        cls.dir, cls.result = run_report(cls.doc)
        cls.md = read(cls.dir, "report.md") if cls.result.returncode == 0 else ""

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_crossover_table(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        table = md_table(self.md.split("## What this run says", 1)[1], CROSS_LABEL)
        self.assertEqual(sorted(table), ["coro", "epoll", "nginx", "threaded"])
        self.assertEqual(table["threaded"]["p99 ms, 10,000 conns"], "6.39")   # 600 x 2.2^3
        self.assertEqual(table["threaded"]["threads at 10,000"], "10,002")
        self.assertEqual(table["epoll"]["KiB/conn at 10,000"], "0.2")
        self.assertIn("★", table["epoll"]["p99 ms, 10 conns"])      # lowest among clean
        self.assertNotIn("★", table["threaded"]["_raw"])
        self.assertNotIn("| # |", self.md.split("### " + CROSS_LABEL, 1)[1][:300])  # not ranked
        # the closed-loop group keeps its own ranked table
        self.assertIn("### 1KiB keep-alive\n", self.md)

    def test_crossover_charts_and_steps_table(self):
        for name in ("crossover-p99", "crossover-memory", "crossover-switches"):
            svg = read(self.dir, "charts/%s-1kib-ka-crossover.svg" % name)
            self.assertIn("10,000 conns", svg)
        full = self.md.split("## Full tables", 1)[1].split("### " + CROSS_LABEL, 1)[1]
        rows = [ln for ln in full.split("\n\n")[2].splitlines() if ln.startswith("| ")]
        self.assertEqual(len(rows), 1 + 4 * 4)   # the head, then a row per step
        self.assertIn("| conns |", rows[0])

    def test_crossover_finding(self):
        finds = self.md.split("### Findings", 1)[1].split("\n## ", 1)[0]
        self.assertIn("**Idle connections** (15,000 req/s spread over 10 to 10,000 keep-alive "
                      "connections): threaded's p99 was 0.60 ms against epoll's 0.30 ms at 10 "
                      "connections (2.0×), and 6.39 ms against epoll's 0.30 ms at 10,000 (21×), "
                      "with 10,002 threads and 26.0 KiB per connection; coro's p99 was 0.35 ms "
                      "against epoll's 0.30 ms at 10,000 connections (1.2×), with 2 threads and "
                      "8.5 KiB per connection.", finds)

    def test_client_bound_steps_are_not_the_servers(self):
        doc = crossover_doc()
        for c in doc["cells"]:
            if c["model"] == "threaded" and c["scenario"] == CROSS_ID:
                c["steps"][-1].update(client_bound=True, lat_p99_us=99e6)
                c["flags"] = ["client-bound"]
        run = data.Run(doc)
        text = summary.crossover_finding(run)
        self.assertIn("at 1,000 (", text)           # the highest count not client-bound
        self.assertNotIn("99,000", text)
        head, rows, _ = summary.ranked_table(run, next(g for g in run.groups() if g.crossover))
        row = next(r for r in rows if r.cells[0].text == "threaded")
        self.assertEqual(row.cells[head.index("p99 ms, 10,000 conns")].text, "client-bound")
        # memory held is the server's whatever the generator did
        self.assertEqual(row.cells[head.index("KiB/conn at 10,000")].text, "26.0")
        self.assertEqual(row.cells[head.index("vol sw/req at 10,000")].text, "n/a")
        self.assertIn("client-bound", row.cells[-1].text)
        # the latency chart leaves such steps out
        lat = next(c for c in doc["cells"] if c["model"] == "epoll"
                   and c["scenario"] == "1KiB-ka-c256-latency")
        for st in lat["steps"]:
            st["client_bound"] = True
        got = [s for s in summary.steps_shown(data.Run(doc).cell("epoll",
                                                                 "1KiB-ka-c256-latency"))]
        self.assertEqual(got, [])

    def test_knee_not_measured_when_every_step_is_client_bound(self):
        doc = load(FIXTURE_V2)
        lat = next(c for c in doc["cells"] if c["model"] == "epoll" and c.get("steps"))
        for st in lat["steps"]:
            st["client_bound"] = True
        lat.update(knee_rps=None, flags=["client-bound"])
        run = data.Run(doc)
        text = summary.knee_finding(run)
        self.assertIn("no knee could be measured for epoll: the load generator limited every "
                      "step (client-bound)", text)
        self.assertNotIn("epoll never did", text)
        g = next(g for g in run.groups() if g.open)
        head, rows, caption = summary.ranked_table(run, g)
        k = next(i for i, h in enumerate(head) if h.startswith("knee"))
        row = next(r for r in rows if r.cells[1].text == "epoll")
        self.assertEqual(row.cells[k].text, "not measured")
        self.assertIn("not measured: the load generator limited every step", caption)
        # only the lowest step client-bound: the lowest step that counts is named
        doc = load(FIXTURE_V2)
        pf = next(c for c in doc["cells"] if c["model"] == "prefork" and c.get("steps"))
        pf["steps"][0]["client_bound"] = True
        text = summary.knee_finding(data.Run(doc))
        second = sorted(pf["steps"], key=lambda st: st["offered_rps"])[1]
        self.assertIn("prefork never did, even at its lowest step the load generator did not "
                      "limit (%s req/s" % "{:,.0f}".format(second["offered_rps"]), text)

    def test_overload_finding_both_sides(self):
        doc = load(FIXTURE_V2)
        text = summary.overload_finding(data.Run(doc))
        self.assertIn("**Overload** (1KiB keep-alive at 256 conns", text)
        self.assertIn("epoll's goodput held at 99% of its peak (110% offered), 0 errors", text)
        self.assertIn("threaded:pool=64's goodput fell to 25%", text)
        for c in doc["cells"]:
            if c["model"] == "epoll" and c.get("steps"):
                c["steps"][-1]["goodput_rps"] *= 0.5
        self.assertIn("epoll's goodput fell to 50%", summary.overload_finding(data.Run(doc)))
        doc = load(FIXTURE_V2)
        for c in doc["cells"]:
            if c["model"] == "epoll" and c.get("steps"):
                c["steps"][-1]["errors_total"] = 7      # goodput kept, but errors: not held
        self.assertIn("epoll's goodput fell to 99% of its peak (110% offered), 7 errors",
                      summary.overload_finding(data.Run(doc)))
        # no step beyond any peak: no overload finding
        doc = load(FIXTURE_V2)
        for c in doc["cells"]:
            if c.get("steps"):
                c["steps"] = [s for s in c["steps"] if s["offered_rps"] <= c["peak_closed_rps"]]
        self.assertIsNone(summary.overload_finding(data.Run(doc)))


class NoCharts:
    """A Charts stand-in for testing sentences without gnuplot."""
    colours = {}
    errors = []

    def draw(self, *a, **kw):
        return None

    def colour(self, m):
        return "#000000"


class PaletteTest(unittest.TestCase):
    def test_fixed_distinct_and_stable(self):
        a = colours.palette(["epoll", "threaded:pool=64", "nginx", "coro"])
        b = colours.palette(["nginx", "coro", "epoll", "threaded:pool=64", "uring"])
        for m in a:
            self.assertEqual(a[m], b[m], m)
        self.assertEqual(len(set(b.values())), len(b))
        self.assertNotIn(colours.INK, b.values())


CHANGED = r"\*\*[+-][\d.]+% changed\*\*"


class CompareTest(unittest.TestCase):
    def compare(self, doc_a, doc_b):
        da, db = tempfile.mkdtemp(prefix="c10k-cmp-a-"), tempfile.mkdtemp(prefix="c10k-cmp-b-")
        self.addCleanup(shutil.rmtree, da, True)
        self.addCleanup(shutil.rmtree, db, True)
        for d, doc in ((da, doc_a), (db, doc_b)):
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump(doc, f)
        r = run_cmd(["--compare", da, db])
        self.assertEqual(r.returncode, 0, r.stderr)
        name = "compare-%s" % re.sub(r"[^A-Za-z0-9]+", "-", doc_a["run"]["id"]).strip("-").lower()
        md, htm = os.path.join(db, name + ".md"), os.path.join(db, name + ".html")
        self.assertIn("wrote %s" % htm, r.stdout)
        self.assertIn("wrote %s" % md, r.stdout)
        return read(db, name + ".md"), read(db, name + ".html")

    def test_identical_runs(self):
        doc = load(FIXTURE)
        b = copy.deepcopy(doc)
        b["run"]["id"] = "other"
        md, htm = self.compare(doc, b)
        self.assertIn("+0.0%", md)
        self.assertNotRegex(md, CHANGED)
        p = Balance()
        p.feed(htm)
        self.assertEqual(p.errors, [])
        self.assertEqual(sorted({i for i in p.ids if p.ids.count(i) > 1}), [])

    def test_open_loop_cells_compare_their_knees_and_crossover_p99(self):
        a = crossover_doc()
        for c in a["cells"]:
            if c.get("knee_rps"):
                c["knee_by_round"] = [c["knee_rps"] * f for f in (0.98, 1.0, 1.02)]
        b = copy.deepcopy(a)
        b["run"]["id"] = "b"
        for c in b["cells"]:
            if c["model"] == "epoll" and c.get("knee_rps"):
                c["knee_rps"] *= 1.5
                c["knee_by_round"] = [k * 1.5 for k in c["knee_by_round"]]
            if c["model"] == "nginx" and c.get("knee_rps"):   # within the spread
                c["knee_by_round"] = [k * 1.01 for k in c["knee_by_round"]]
        md, _ = self.compare(a, b)
        changed = md.split("## What changed", 1)[1].split("\n## ", 1)[0]
        self.assertIn("epoll, 1KiB keep-alive, 256 conns, open-loop ladder: knee req/s", changed)
        self.assertNotIn("nginx, 1KiB keep-alive, 256 conns, open-loop ladder", changed)
        cross = md.split("### " + CROSS_LABEL, 2)[-1]
        self.assertIn("p99 ms, 10,000 conns A", cross)
        self.assertIn("| threaded | 0.60 | 0.60 | +0.0% |", cross)

    def test_changed_only_beyond_both_spreads(self):
        a = load(FIXTURE_V2)
        b = copy.deepcopy(a)
        b["run"]["id"] = "b"
        moved = {}
        for c in b["cells"]:
            if c["scenario"] == "1KiB-ka-c16" and c["model"] in ("epoll", "coro"):
                factor = 1.5 if c["model"] == "epoll" else 1.005   # beyond / within spread
                set_rps(c, factor)
                moved[c["model"]] = factor
        md, htm = self.compare(a, b)
        changed = md.split("## What changed", 1)[1].split("\n## ", 1)[0]
        self.assertIn("epoll, 1KiB keep-alive, 16 conns: req/s", changed)
        self.assertNotIn("coro, 1KiB keep-alive, 16 conns: req/s", changed)
        self.assertIn("+50.0% changed", md)
        svgs = re.findall(r"<svg\b", htm)
        self.assertGreaterEqual(len(svgs), 4)                  # A and B side by side
        self.assertIn("A req/s: 1KiB keep-alive", htm)
        self.assertIn("B req/s: 1KiB keep-alive", htm)

    def test_one_round_marks_nothing(self):
        a = load(FIXTURE)
        b = copy.deepcopy(a)
        b["run"]["id"] = "b"
        for c in b["cells"]:
            set_rps(c, 2.0)
        md, _ = self.compare(a, b)
        self.assertIn("+100.0%", md)
        self.assertNotRegex(md, CHANGED)
        self.assertIn("single round", md)


class BadInputTest(unittest.TestCase):
    """Bad input: one line on stderr, exit status 2, never a traceback."""

    def check(self, args, want):
        r = run_cmd(args, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(want, r.stderr)
        self.assertEqual(r.stdout, "")

    def with_doc(self, doc, raw=None):
        d = tempfile.mkdtemp(prefix="c10k-report-bad-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "results.json"), "w") as f:
            f.write(raw if raw is not None else json.dumps(doc))
        return d

    def test_missing_dir(self):
        self.check(["/nonexistent/run"], "cannot read")

    def test_no_scenarios_key(self):
        doc = load(FIXTURE)
        del doc["scenarios"]
        self.check([self.with_doc(doc)], 'no "scenarios" key')

    def test_a_list(self):
        self.check([self.with_doc([])], "not a c10k bench results file")

    def test_file_instead_of_dir(self):
        d = self.with_doc(load(FIXTURE))
        self.check([os.path.join(d, "results.json")], "is a file; give the run directory")

    def test_not_json(self):
        self.check([self.with_doc(None, raw="{not json")], "is not valid JSON")

    def test_wrong_version(self):
        doc = load(FIXTURE)
        doc["schema_version"] = 7
        self.check([self.with_doc(doc)], "schema version 7")

    def test_shapes(self):
        cases = [
            (lambda d: d.update(scenarios={}), '"scenarios" is not an array'),
            (lambda d: d["cells"][0].update(scenario="nope"), "its scenario is not in"),
            (lambda d: d["cells"][0].update(status="great"), "status \"great\""),
            (lambda d: d["cells"][0]["summary"].update(rps=5), "summary of rps"),
            (lambda d: d["scenarios"][0].update(connections="many"), "not a number"),
            (lambda d: d["cells"][0].update(repeats=[1]), "a repeat is not an object"),
            (lambda d: d.update(run=[]), '"run" is not an object'),
            (lambda d: d["scenarios"][0].update(label=5), '"label" is not text'),
            (lambda d: d.update(models=None), '"models" is not an array'),
        ]
        for mutate, want in cases:
            doc = load(FIXTURE)
            mutate(doc)
            with self.subTest(want=want):
                self.check([self.with_doc(doc)], want)

    def test_junk_in_optional_fields_is_skipped(self):
        doc = load(FIXTURE_V2)
        for c in doc["cells"]:
            for s in c.get("steps") or []:
                s["timeline"] = "oops"       # passes the shape check, read later
                s["lat_histogram_us"] = [["a", "b"]]
                s["lat_p99_us"] = "slow"
        r = run_cmd([self.with_doc(doc)], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_unexpected_data_is_one_line(self):
        """What the checks miss still ends as one line and status 2."""
        import io
        from contextlib import redirect_stderr, redirect_stdout
        from reportlib import build, cli
        d = self.with_doc(load(FIXTURE))
        real = build.write

        def broken(*a):
            raise KeyError("lat_p99_us")
        build.write = broken
        err = io.StringIO()
        try:
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = cli.main([d])
        finally:
            build.write = real
        self.assertEqual(rc, 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1, err.getvalue())
        self.assertIn("KeyError", err.getvalue())

    def test_usage(self):
        self.check(["--compare", "only-one"], "--compare takes two run directories")
        self.check(["a", "b"], "unexpected arguments")


def main():
    return testmain.run("report")


if __name__ == "__main__":
    sys.exit(main())
