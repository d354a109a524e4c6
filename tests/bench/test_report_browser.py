#!/usr/bin/python3
"""The report in a real browser: headless Chromium (Debian's `chromium`).

    /usr/bin/python3 tests/bench/test_report_browser.py
    /usr/bin/python3 tests/bench/test_report_browser.py --screenshots DIR

Renders the report of each fixture (schema 1 and 2) and a compare.html at
1,400 px and at 420 px wide (a phone: mobile emulation, so the viewport tag
is what makes the page fit) and asserts, per page and width:
  * the page does not scroll sideways (tables scroll inside their own box);
  * every SVG has a non-zero box;
  * chart text is at least 9 px on screen (at 420 px wide too);
  * the console has no errors (console API, exceptions, renderer errors such
    as an invalid SVG attribute);
  * every id is unique.
With --screenshots DIR it writes DIR/report-1400.png and DIR/report-420.png
of the schema-2 fixture's report instead (bench/README.md shows them).

Chromium is driven through the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages on fds 3 and 4), so the report
itself stays free of scripts and nothing listens on a port. Without
chromium the tests are SKIPPED with the reason printed, never passed.
Prints "browser: N passed, N failed, N skipped"; exits 1 on any failure.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPORT = os.path.join(REPO, "bench", "report.py")
FIXTURES = {"v1": os.path.join(HERE, "fixture", "results.json"),
            "v2": os.path.join(HERE, "fixture-v2", "results.json")}
WIDTHS = (1400, 420)
HEIGHT = 900
MIN_FONT_PX = 9.0
TIMEOUT_S = 60  # per protocol call; the machine may be busy

# The network is closed in CI: without these Chromium waits on connections
# it tries to make at start (component updates, sync, QUIC probes).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]

PROBE = r"""(() => {
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const seen = new Set(), dups = [];
  for (const i of ids) { if (seen.has(i)) dups.push(i); seen.add(i); }
  const svgs = [...document.querySelectorAll('svg')].map((s, k) => {
    const r = s.getBoundingClientRect();
    let minFont = null;
    for (const t of s.querySelectorAll('text')) {
      if (!t.textContent.trim()) continue;
      const m = t.getScreenCTM(), f = parseFloat(getComputedStyle(t).fontSize);
      if (!m || !f) continue;
      const px = f * Math.hypot(m.a, m.b);
      if (minFont === null || px < minFont) minFont = px;
    }
    const fig = s.closest('figure');
    return {k, fig: fig ? fig.id : '', w: r.width, h: r.height, minFont};
  });
  const wide = [...document.body.querySelectorAll('*')]
    .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > innerWidth + 1)
    .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className);
  return JSON.stringify({innerWidth, scrollWidth: document.documentElement.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth, ids: ids.length, dups, svgs, wide,
    scripts: document.scripts.length});
})()"""


PLACE_FDS = ("import os, sys\n"
             "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
             "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
             "os.execv(sys.argv[3], sys.argv[3:])\n")


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class ProtocolError(Exception):
    pass


class Chromium:
    """One headless Chromium, driven over --remote-debugging-pipe."""

    def __init__(self, binary):
        self.tmp = tempfile.mkdtemp(prefix="c10k-chromium-")
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. A
        # small exec wrapper puts our pipe ends there (moved to fds >= 5
        # first, so that placing one cannot overwrite the other).
        hi_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 5)
        hi_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 5)
        for fd in (to_r, from_w):
            os.close(fd)
        self.log = open(os.path.join(self.tmp, "chromium.log"), "w")
        argv = [sys.executable, "-c", PLACE_FDS, str(hi_r), str(hi_w), binary] + FLAGS + [
            "--remote-debugging-pipe", "--user-data-dir=" + os.path.join(self.tmp, "profile"),
            "about:blank"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, pass_fds=(hi_r, hi_w),
                                     start_new_session=True)
        os.close(hi_r)
        os.close(hi_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise ProtocolError("no answer from chromium within %d s" % TIMEOUT_S)
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise ProtocolError("chromium closed the pipe: %s" % self.log_tail())
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def log_tail(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip() and "dbus" not in l]
        return " | ".join(lines[-3:]) or "no output"

    def call(self, method, params=None, session=None):
        want = self.send(method, params, session)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            msg = self.read_message(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise ProtocolError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method, session):
        deadline = time.monotonic() + TIMEOUT_S
        for e in self.events:
            if e["method"] == method and e.get("sessionId") == session:
                return e
        while True:
            msg = self.read_message(deadline)
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method and msg.get("sessionId") == session:
                    return msg

    def open(self, path, width):
        """A page with path loaded at width x HEIGHT: (session, target)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(domain + ".enable", session=s)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": HEIGHT, "deviceScaleFactor": 1,
                   "mobile": width < 600}, s)
        self.call("Page.navigate", {"url": "file://" + os.path.abspath(path)}, s)
        self.wait_event("Page.loadEventFired", s)
        return s, target

    def render(self, path, width):
        """The probe's findings and the console errors of one page."""
        s, target = self.open(path, width)
        try:
            res = self.call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, s)
            probe = json.loads(res["result"]["value"])
            probe["errors"] = self.console_errors(s)
            return probe
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def screenshot(self, path, width, out, height, scale):
        s, target = self.open(path, width)
        try:
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
            shot = self.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True, "clip": clip}, s)
            with open(out, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def console_errors(self, session):
        out = []
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                  "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "error"))
        return out

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        for fd in (self.w, self.r):
            os.close(fd)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def make_report(fixture, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(fixture, os.path.join(out_dir, "results.json"))
    r = subprocess.run([sys.executable, REPORT, out_dir], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("c10k report %s failed: %s" % (out_dir, r.stderr))
    return os.path.join(out_dir, "report.html")


def make_compare(fixture, out_dir):
    """A comparison of the fixture with a copy whose req/s moved by 20%."""
    a, b = os.path.join(out_dir, "cmp-a"), os.path.join(out_dir, "cmp-b")
    with open(fixture) as f:
        doc = json.load(f)
    for d, factor in ((a, 1.0), (b, 1.2)):
        os.makedirs(d, exist_ok=True)
        doc["run"]["id"] = os.path.basename(d)
        for c in doc["cells"]:
            for r in c.get("repeats") or []:
                if isinstance(r.get("rps"), (int, float)):
                    r["rps"] *= factor
            s = (c.get("summary") or {}).get("rps")
            if s:
                for k in ("min", "median", "max"):
                    s[k] *= factor
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(doc, f)
    r = subprocess.run([sys.executable, REPORT, "--compare", a, b], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("c10k report --compare failed: %s" % r.stderr)
    return os.path.join(b, "compare-cmp-a.html")


class BrowserTest(unittest.TestCase):
    pages = {}

    @classmethod
    def setUpClass(cls):
        binary = find_chromium()
        if not binary:
            raise unittest.SkipTest("chromium is not installed (make deps installs it)")
        cls.tmp = tempfile.mkdtemp(prefix="c10k-browser-test-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)   # runs even if this fails
        cls.pages = {"report v1": make_report(FIXTURES["v1"], os.path.join(cls.tmp, "v1")),
                     "report v2": make_report(FIXTURES["v2"], os.path.join(cls.tmp, "v2")),
                     "compare v2": make_compare(FIXTURES["v2"], cls.tmp)}
        cls.browser = Chromium(binary)
        cls.results = {}
        try:
            for name, path in cls.pages.items():
                for w in WIDTHS:
                    cls.results[name, w] = cls.browser.render(path, w)
        finally:
            cls.browser.close()

    def each(self):
        for (name, w), res in sorted(self.results.items()):
            with self.subTest(page=name, width=w):
                yield name, w, res

    def test_no_sideways_scroll(self):
        for name, w, res in self.each():
            self.assertEqual(res["innerWidth"], w, "the viewport tag did not take effect")
            self.assertLessEqual(res["scrollWidth"], w, "page scrolls sideways; wide: %s"
                                 % res["wide"])

    def test_svgs_have_a_box(self):
        for name, w, res in self.each():
            self.assertGreaterEqual(len(res["svgs"]), 3 if name.startswith("report") else 2)
            for s in res["svgs"]:
                self.assertGreater(s["w"], 0, s)
                self.assertGreater(s["h"], 0, s)

    def test_chart_text_readable(self):
        for name, w, res in self.each():
            zoom = w / res["innerWidth"]   # a page laid out wider than the screen is shrunk
            for s in res["svgs"]:
                self.assertIsNotNone(s["minFont"], s)
                self.assertGreaterEqual(s["minFont"] * zoom, MIN_FONT_PX, s)

    def test_no_console_errors(self):
        for name, w, res in self.each():
            self.assertEqual(res["errors"], [])

    def test_ids_unique(self):
        for name, w, res in self.each():
            self.assertGreater(res["ids"], 0)
            self.assertEqual(res["dups"], [])

    def test_no_scripts(self):
        for name, w, res in self.each():
            self.assertEqual(res["scripts"], 0)


def screenshots(out_dir):
    binary = find_chromium()
    if not binary:
        print("screenshots: chromium is not installed (make deps installs it)", file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="c10k-screenshots-")
    browser = None
    try:
        page = make_report(FIXTURES["v2"], os.path.join(tmp, "v2"))
        browser = Chromium(binary)
        for w, h, scale in ((1400, 1000, 0.5), (420, 860, 0.75)):
            out = os.path.join(out_dir, "report-%d.png" % w)
            browser.screenshot(page, w, out, h, scale)
            print("screenshots: wrote %s" % out)
    finally:
        if browser:
            browser.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv):
    if argv[:1] == ["--screenshots"] and len(argv) == 2:
        return screenshots(argv[1])
    if argv:
        print("usage: test_report_browser.py [--screenshots DIR]", file=sys.stderr)
        return 2
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    total = suite.countTestCases()
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    # A skip or an error in setUpClass stands for every test of the class,
    # none of which ran: count them all as skipped or failed.
    tc = unittest.TestCase
    bad = [t for t, _ in result.failures + result.errors if isinstance(t, tc)]
    skipped = len([t for t, _ in result.skipped if isinstance(t, tc)])
    passed = result.testsRun - len(bad) - skipped
    if any(not isinstance(t, tc) for t, _ in result.skipped):
        skipped = total - passed
    failed = total - passed - skipped
    for _, reason in result.skipped:
        print("browser: SKIP: %s" % reason)
    print("browser: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
