#!/usr/bin/python3
"""Tests of the report generator (bench/report.py) on a stored run.

    /usr/bin/python3 tests/bench/test_report.py

The fixture tests/bench/fixture/results.json is a real quick run trimmed to a
few models and scenarios. The generator must write tables with the fixture's
numbers, well-formed HTML whose every chart is a valid SVG with a data series,
and findings that follow the data when the numbers change.
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
REPORT = os.path.join(REPO, "bench", "report.py")
sys.path.insert(0, os.path.join(REPO, "bench"))
import report  # noqa: E402

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source",
        "track", "wbr"}


class Balance(html.parser.HTMLParser):
    """Checks that every element is closed in order (SVG included)."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and re.match(r"(https?:)?//", v):
                self.errors.append("external reference %s=%s" % (k, v))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unexpected </%s>, open: %s" % (tag, self.stack[-3:]))
            return
        self.stack.pop()


def run_report(doc):
    d = tempfile.mkdtemp(prefix="c10k-report-test-")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(doc, f)
    r = subprocess.run([sys.executable, REPORT, d], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    return d, r


def md_table(md, label):
    """{model: {header: text}} of the table under '### label'."""
    part = md.split("### " + label + "\n", 1)[1].lstrip("\n").split("\n\n")[0]
    lines = [l for l in part.splitlines() if l.startswith("|")]
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip().replace("**", "").rstrip("★") for c in line.strip("|").split("|")]
        out[cells[0]] = dict(zip(head, cells))
    return out


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(FIXTURE) as f:
            cls.doc = json.load(f)
        cls.dir, cls.result = run_report(cls.doc)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_runs(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        for f in ("report.md", "report.html"):
            self.assertTrue(os.path.exists(os.path.join(self.dir, f)), f)

    def test_tables_match_fixture(self):
        with open(os.path.join(self.dir, "report.md")) as f:
            md = f.read()
        for sc in self.doc["scenarios"]:
            table = md_table(md, sc["label"])
            cells = [c for c in self.doc["cells"] if c["scenario"] == sc["id"]]
            self.assertEqual(set(table), {c["model"] for c in cells}, sc["id"])
            nginx = next((c for c in cells if c["model"] == "nginx"), None)
            for c in cells:
                row = table[c["model"]]
                self.assertEqual(row["status"].lower(), c["status"])
                if c["status"] == "failed":
                    self.assertEqual(row["req/s"], "n/a")
                    continue
                s = c["summary"]
                self.assertEqual(row["req/s"], "{:,.0f}".format(s["rps"]["median"]))
                self.assertEqual(row["p99 ms"], "%.2f" % (s["lat_p99_us"]["median"] / 1000))
                self.assertEqual(row["vol sw/req"], "%.3f" % s["ctx_vol_per_req"]["median"])
                self.assertEqual(row["invol sw/req"], "%.3f" % s["ctx_invol_per_req"]["median"])
                self.assertEqual(row["errors"], "{:,.0f}".format(s["errors_total"]["median"]))
                if nginx and nginx["status"] != "failed":
                    self.assertEqual(row["× nginx"], "%.2f" % (
                        s["rps"]["median"] / nginx["summary"]["rps"]["median"]))

    def test_winner_marked(self):
        with open(os.path.join(self.dir, "report.md")) as f:
            md = f.read()
        sc = self.doc["scenarios"][0]
        cells = [c for c in self.doc["cells"] if c["scenario"] == sc["id"]
                 and c["status"] != "failed"]
        best = max(cells, key=lambda c: c["summary"]["rps"]["median"])
        part = md.split("### " + sc["label"] + "\n", 1)[1].lstrip("\n").split("\n\n")[0]
        row = next(l for l in part.splitlines() if l.startswith("| %s |" % best["model"]))
        self.assertIn("**{:,.0f}★**".format(best["summary"]["rps"]["median"]), row)

    def test_html_well_formed_and_self_contained(self):
        with open(os.path.join(self.dir, "report.html")) as f:
            text = f.read()
        p = Balance()
        p.feed(text)
        p.close()
        self.assertEqual(p.errors, [])
        self.assertEqual(p.stack, [])
        self.assertNotIn("script", p.tags)
        self.assertNotIn("@font-face", text)
        svgs = re.findall(r"<svg\b.*?</svg>", text, re.S)
        self.assertGreaterEqual(len(svgs), 5)
        for svg in svgs:
            root = ET.fromstring(svg)
            self.assertTrue(root.tag.endswith("svg"))

    def test_every_chart_is_svg_with_data(self):
        charts = glob.glob(os.path.join(self.dir, "charts", "*.svg"))
        names = {os.path.basename(c).split("-")[0].split(".")[0] for c in charts}
        for want in ("throughput", "p99", "cpu", "switches", "syscalls", "memory", "latency"):
            self.assertIn(want, names)
        for path in charts:
            root = ET.parse(path).getroot()
            self.assertTrue(root.tag.endswith("svg"), path)
            ids = [g.get("id") for g in root.iter() if g.tag.endswith("g")]
            self.assertIn("gnuplot_plot_1", ids, path)
            texts = " ".join(root.itertext())
            self.assertTrue(re.search(r"\((ms|µs|KiB)|per second|per request", texts), path)

    def test_findings_follow_the_data(self):
        sc = self.doc["scenarios"][0]
        with open(os.path.join(self.dir, "report.md")) as f:
            before = f.read().split("## Results")[0]
        doc = copy.deepcopy(self.doc)
        cells = [c for c in doc["cells"] if c["scenario"] == sc["id"] and c["status"] != "failed"]
        loser = min(cells, key=lambda c: c["summary"]["rps"]["median"])
        for k in ("min", "median", "max"):
            loser["summary"]["rps"][k] = 10 * max(c["summary"]["rps"]["median"] for c in cells)
        d, r = run_report(doc)
        try:
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "report.md")) as f:
                after = f.read().split("## Results")[0]
        finally:
            shutil.rmtree(d, ignore_errors=True)
        claim = "%s: **%s** served the most" % (sc["label"], loser["model"])
        self.assertNotIn(claim, before)
        self.assertIn(claim, after)

    def test_switch_finding_needs_the_numbers(self):
        doc = copy.deepcopy(self.doc)
        sc = doc["scenarios"][0]
        cells = [c for c in doc["cells"] if c["scenario"] == sc["id"] and c["status"] != "failed"]
        for c in cells:  # all equal: no model may be blamed for blocking
            for k in ("min", "median", "max"):
                c["summary"]["ctx_vol_per_req"][k] = 1.0
        finds = [f for f in report.findings(report.Run(doc)) if f.startswith(sc["label"])]
        self.assertFalse([f for f in finds if "voluntary switches per request" in f], finds)
        cells[0]["summary"]["ctx_vol_per_req"].update(min=2.0, median=2.0, max=2.0)
        for c in cells[1:]:
            c["summary"]["ctx_vol_per_req"].update(min=0.01, median=0.01, max=0.01)
        finds = [f for f in report.findings(report.Run(doc)) if f.startswith(sc["label"])]
        self.assertTrue([f for f in finds if "%s: 2.00 voluntary switches" % cells[0]["model"]
                         in f], finds)

    def test_compare(self):
        d2 = tempfile.mkdtemp(prefix="c10k-report-test-")
        try:
            doc = copy.deepcopy(self.doc)
            doc["run"]["id"] = "other"
            with open(os.path.join(d2, "results.json"), "w") as f:
                json.dump(doc, f)
            r = subprocess.run([sys.executable, REPORT, "--compare", self.dir, d2],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("+0.0%", r.stdout)
            self.assertNotIn("⚑", r.stdout.split("\n", 4)[-1])
        finally:
            shutil.rmtree(d2, ignore_errors=True)

    def test_usage_errors(self):
        r = subprocess.run([sys.executable, REPORT, "/nonexistent/run"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)


def main():
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("bench: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
