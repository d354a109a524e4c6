"""Which of the ceiling's two backends is the ceiling, scenario by scenario.

build/c10k-ceiling answers every request with one precomputed response, on
an epoll or an io_uring backend, and the faster of the two is the ceiling:
io_uring spends less per small request, epoll's sendfile less per large
body, so which one wins depends on the scenario (and on the kernel).

Measuring both in every round would cost two cells per scenario and round
where nginx costs one, and keeping the higher of two noisy figures in each
round would lift the ceiling by the noise alone (the larger of two samples
of the same thing is above their mean). So the choice is made once per
scenario, by a probe before the ceiling's first cell of that scenario:

  * both backends are started side by side, pinned and sized as every
    server is (one waits idle while the other is loaded);
  * each gets a short warm-up, then short bursts of the scenario's load in
    the order A B B A, so that a drift in the machine's speed during the
    probe falls on both alike;
  * the backend with the higher mean req/s over its bursts is the ceiling
    of that scenario in every round, started, pinned and measured like
    nginx (cell.py); each of its repeats records `ceiling_backend`.

Slow clients, when a scenario has them, are not held during the probe.
With one backend usable (io_uring unavailable) there is no probe. The
probe's figures and the choices are in results.json, run.settings.ceiling.
"""

import os

from .docroot import verify
from .loadgen import run_wrk, wrk_degraded, wrk_metrics
from .refs import CeilingServer, ceiling_path
from .util import Interrupted
from .variants import Variant

PROBE_WARMUP_S = 0.3   # per backend, not recorded
PROBE_BURST_S = 0.5    # per burst: tens of thousands of requests at 1 KiB
# Above this many connections wrk spends a good part of a short burst just
# connecting them, so the bursts are longer.
PROBE_MANY_CONNS = 1024
PROBE_BURST_LONG_S = 1.5
PROBE_ORDER = (0, 1, 1, 0)
PROBE_OVERHEAD_S = 1.0  # starting, verifying and stopping both backends


def burst_seconds(sc):
    return PROBE_BURST_S if sc["connections"] <= PROBE_MANY_CONNS else PROBE_BURST_LONG_S


def probe_seconds(sc):
    """About how long the probe of one scenario takes (the plan's estimate)."""
    return 2 * PROBE_WARMUP_S + len(PROBE_ORDER) * burst_seconds(sc) + PROBE_OVERHEAD_S


def choose(rps):
    """{backend: [req/s per burst]} -> (backend with the higher mean, how
    much higher in %, or None with one backend)."""
    means = {b: sum(v) / len(v) for b, v in rps.items() if v}
    best = max(means, key=lambda b: means[b])
    others = [m for b, m in means.items() if b != best]
    margin = 100.0 * (means[best] / max(others) - 1.0) if others and max(others) > 0 else None
    return best, margin


class CeilingChoice:
    """The ceiling's backend per scenario, probed on first use."""

    SPEC = Variant("ceiling", "ceiling", reference=True)

    def __init__(self, run, backends, unavailable):
        self.run = run
        self.backends = list(backends)
        self.unavailable = dict(unavailable)
        self.choices = {}  # scenario id -> what was chosen, how and why

    def backend(self, sc):
        if sc["id"] not in self.choices:
            if len(self.backends) > 1:
                self.choices[sc["id"]] = self.probe(sc)
            else:
                self.choices[sc["id"]] = {"backend": self.backends[0],
                                          "why": "the only backend that runs here"}
        return self.choices[sc["id"]]["backend"]

    def record(self):
        """run.settings.ceiling in results.json."""
        return {"binary": ceiling_path(self.run.binary.path), "backends": self.backends,
                "unavailable": self.unavailable or None,
                "method": "per scenario, the backend with the higher mean req/s over a "
                          "probe of bursts A B B A (%g s each, %g s above %d connections) "
                          "before its first cell" % (PROBE_BURST_S, PROBE_BURST_LONG_S,
                                                     PROBE_MANY_CONNS),
                "scenarios": self.choices}

    def summary(self):
        """One line: each scenario's backend and its lead in the probe."""
        parts = []
        for sid, c in self.choices.items():
            m = c.get("margin_pct")
            parts.append("%s %s%s" % (sid, c["backend"], " (+%.0f%%)" % m if m is not None
                                      else ""))
        return ", ".join(parts)

    # -- the probe --

    def probe(self, sc):
        run = self.run
        servers, failed = {}, {}
        side = run.net.side(sc)  # where the scenario's servers run (a namespace, with --netns)
        try:
            for b in self.backends:
                srv = CeilingServer(run, self.SPEC, 0, side, sc, b)  # the start line names the port
                servers[b] = srv
                why = srv.start() or side.in_client(verify, srv.port, [sc["size"]], run.digests,
                                                    side.host)
                if why:
                    failed[b] = why
            live = [b for b in self.backends if b not in failed]
            if len(live) < 2:
                return {"backend": (live or self.backends)[0], "failed": failed,
                        "why": "the other backend failed in the probe" if live else
                               "no backend started in the probe"}
            return self._bursts(sc, servers, live, failed, side)
        finally:
            for srv in servers.values():
                if run.interrupted:
                    srv.kill()
                else:
                    srv.stop()

    def _raw(self, sc, what):
        return os.path.join(self.run.run_dir, "raw", "ceiling-probe_%s_%s.%s"
                            % (sc["id"], what, "json" if what[-1].isdigit() else "txt"))

    def _bursts(self, sc, servers, live, failed, side):
        run = self.run
        for b in live:
            run_wrk(run, servers[b].port, sc, PROBE_WARMUP_S, None,
                    self._raw(sc, "%s-warmup" % b), side=side)
            self._check_interrupt()
        rps, errors = {b: [] for b in live}, {}
        order = [live[i] for i in PROBE_ORDER]
        for i, b in enumerate(order, 1):
            tag = "%s-%d" % (b, i)
            wrk, _, err = run_wrk(run, servers[b].port, sc, burst_seconds(sc),
                                  self._raw(sc, tag), self._raw(sc, tag + "-text"), side=side)
            self._check_interrupt()
            if err or wrk is None:
                failed[b] = err or "wrk gave no results"
                continue
            m = wrk_metrics(wrk, burst_seconds(sc))
            rps[b].append(m["rps"])
            if wrk_degraded(m):
                errors.setdefault(b, []).extend(wrk_degraded(m))
        ran = {b: v for b, v in rps.items() if b not in failed and v}
        if not ran:
            return {"backend": live[0], "failed": failed, "why": "no burst of the probe ran"}
        best, margin = choose(ran)
        return {"backend": best, "why": "higher mean req/s over the probe's bursts"
                if len(ran) > 1 else "the other backend failed in the probe",
                "margin_pct": margin, "probe_rps": rps, "order": order,
                "burst_s": burst_seconds(sc), "failed": failed or None,
                "errors": errors or None}

    def _check_interrupt(self):
        if self.run.interrupted:
            raise Interrupted()
