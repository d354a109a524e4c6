"""A run: the plan's cells in order, round after round, with progress, the
results saved after every cell, Ctrl-C handled, and the report at the end."""

import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from . import refs, results
from .ceiling import CeilingChoice
from .cell import CellRunner
from .counters import MachineSampler, QueueSampler
from .docroot import make_docroot
from .env import check_fd_limit, check_tools, environment
from .loadgen import WRK_TIMEOUT_S
from .net import Net
from .plan import step_spec, step_text, summary_line
from .refs import ceiling_backends
from .sockdiag import open_sockdiag
from .util import HERE, Interrupted, UsageError, cpus_text, default_out, fmt_duration


class Run:
    def __init__(self, args, plan, binary):
        self.args, self.plan, self.binary = args, plan, binary
        self.children = set()
        self.cells = {}
        self.interrupted = False
        self.wrk_timeout_s = plan.wrk_timeout_s or WRK_TIMEOUT_S
        self.net = Net(self, args)
        self.queue_hz = QueueSampler.HZ
        diag, why = open_sockdiag()
        if diag is not None:
            diag.close()
        self.queue_method = "netlink sock_diag" if diag is not None else "/proc/net/tcp: " + why
        # CONTRACTS.md 3: pass --stats-file only to a binary that lists it
        self.stats_file_supported = binary.has_serve_flag("stats-file")
        self.cold = plan.cold  # the cold-cache profile's setup, or None
        self.verify_extra = []  # (path, size, sha256) checked besides one file per size
        self.runner = CellRunner(self)
        # the ceiling's backend per scenario (harness/ceiling.py)
        self.ceiling = (CeilingChoice(self, *ceiling_backends(binary.path))
                        if "ceiling" in plan.names else None)

    # -- before the first cell --

    def prepare(self):
        a = self.args
        # wrk runs here unless --client-host; a server on --server-host is
        # checked there (the port, perf and the references it needs)
        self.tools = check_tools(None if a.server_host else a.port, self.binary.path,
                                 need_wrk=not a.client_host)
        self.nofile = check_fd_limit(self.plan.scenarios, self.plan.profile)
        self.env = environment(self.binary.path)
        self.command_line = ["c10k", "bench"] + self.args.argv_tail
        self.started = results.now_iso()
        self.machine = MachineSampler()  # steal is counted from here on
        self.net.open_local()
        self.make_run_dir()
        try:
            self.net.open_remote()
        except UsageError:
            self.unmake_run_dir()  # a host that cannot be used: no run happened
            raise
        self.env["network"] = self.net.info
        if a.server_host:
            self.tools = self.server_host_tools()
        # The harness itself (samplers, slow clients) runs on the client
        # CPUs, off the server's CPU.
        try:
            os.sched_setaffinity(0, self.plan.client_cpus)
        except OSError:
            pass

    def make_run_dir(self):
        base = os.path.abspath(self.args.out or default_out())
        os.makedirs(base, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir, n = os.path.join(base, stamp), 1
        while os.path.exists(run_dir):
            n += 1
            run_dir = os.path.join(base, "%s-%d" % (stamp, n))
        os.makedirs(os.path.join(run_dir, "raw"))
        self.run_dir, self.run_id = run_dir, os.path.basename(run_dir)
        self.link_latest(base)
        if self.cold:
            # the cold root is shared by runs; this run's path lists, cgroups
            # and delay accounting are set up now and undone by cleanup()
            self.cold.prepare(run_dir, [sc for sc in self.plan.scenarios if sc.get("cold")],
                              self.plan.seed)
            self.docroot = self.cold.root.dir
            self.verify_extra = self.cold.root.sample()
        else:
            self.docroot = os.path.join(run_dir, "docroot")
        self.digests = make_docroot(self.docroot, self.plan.sizes)

    def wrap(self, argv):
        """A server's command line, run inside the run's cgroups if it has any."""
        return self.cold.wrap(argv) if self.cold else list(argv)

    def cleanup(self):
        """Undo what the run set up on the machine (cgroups, delay accounting)."""
        if self.cold:
            self.cold.cleanup()

    def unmake_run_dir(self):
        """Remove the run directory of a run that never started, and point
        latest back where it pointed."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        latest = os.path.join(os.path.dirname(self.run_dir), "latest")
        try:
            if os.readlink(latest) == self.run_id:
                os.unlink(latest)
                if self.prev_latest:
                    os.symlink(self.prev_latest, latest)
        except OSError:
            pass

    def link_latest(self, base):
        latest = os.path.join(base, "latest")
        try:
            self.prev_latest = os.readlink(latest)
        except OSError:
            self.prev_latest = None
        try:
            if os.path.islink(latest) or not os.path.exists(latest):
                tmp = latest + ".tmp"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(self.run_id, tmp)
                os.replace(tmp, latest)
        except OSError as e:
            print("c10k bench: warning: cannot update %s: %s" % (latest, e), file=sys.stderr)

    # -- cells --

    def cells_in_order(self):
        """Cells by scenario, then server in the plan's order (not run order);
        a cell interrupted in its first round has nothing to keep."""
        cells = (self.cells.get((name, sc["id"])) for sc in self.plan.scenarios
                 for name in self.plan.names)
        return [c for c in cells if c is not None and (c["repeats"] or c["status"] == "failed")]

    def cell(self, name, sc):
        key = (name, sc["id"])
        if key not in self.cells:
            self.cells[key] = results.new_cell(name, sc)
        return self.cells[key]

    def run_one(self, round_no, sc, name, machine):
        """One cell of one round; returns False if it was skipped."""
        cell = self.cell(name, sc)
        spec = self.plan.server(name)
        if cell["status"] == "failed":
            return False  # a cell that failed is not retried in later rounds
        if spec.reference and not self.tools[spec.model][0]:
            results.fail_cell(cell, "%s cannot run: %s" % (name, self.tools[spec.model][1]))
            return False
        rep = self.runner.run_round(spec, sc, round_no, machine.sample())
        if self.interrupted:
            raise Interrupted()  # an unfinished cell is not kept
        results.add_repeat(cell, rep)
        if spec.reference and rep["status"] == "failed" and "could not start" in rep["failure"]:
            self.tools[spec.model] = (False, rep["failure"])
            print("\nc10k bench: %s CANNOT RUN: %s. The run continues without its row."
                  % (name.upper(), rep["failure"]), file=sys.stderr)
        return True

    def peak(self, name, sid):
        """The median req/s of a closed-loop cell that ran (an open-loop
        scenario's basis), or None and why not."""
        c = self.cells.get((name, sid))
        if c is None or (not c["repeats"] and c["status"] != "failed"):
            return None, "%s's closed-loop peak (%s) was not measured" % (name, sid)
        if c["status"] == "failed":
            return None, "%s's closed-loop peak (%s) failed: %s" % (name, sid,
                                                                   "; ".join(c["reasons"]))
        rps = [r.get("rps") for r in results.ran(c["repeats"]) if r.get("rps")]
        if not rps:
            return None, "%s's closed-loop peak (%s) served no request" % (name, sid)
        return statistics.median(rps), None

    def step_for(self, sc, name, i):
        """(step dict, None), or (None, why the step cannot run)."""
        peak = None
        if sc.get("basis"):
            basis_server = sc["rate_basis"]["server"] if sc.get("rate_basis") else name
            peak, why = self.peak(basis_server, sc["basis"])
            if peak is None:
                return None, "no offered rate to scale: " + why
            if sc["kind"] == "crossover" and sc.get("offered_rps") is None:
                sc["offered_rps"] = step_spec(sc, i, peak)["offered_rps"]  # into results.json
        return dict(step_spec(sc, i, peak), peak_closed_rps=peak), None

    def run_step(self, v, machine):
        """One step of an open-loop cell in one round; False if skipped."""
        cell = self.cell(v.name, v.sc)
        spec = self.plan.server(v.name)
        if cell["status"] == "failed":
            return False  # a failed cell is not run again in later steps or rounds
        if spec.reference and not self.tools[spec.model][0]:
            results.fail_cell(cell, "%s cannot run: %s" % (v.name, self.tools[spec.model][1]))
            return False
        step, why = self.step_for(v.sc, v.name, v.step)
        if step is None:
            results.fail_cell(cell, why)
            return False
        cell["peak_closed_rps"] = step.pop("peak_closed_rps")
        sc = dict(v.sc, step=step, connections=step["connections"])
        rep = self.runner.run_round(spec, sc, v.round, machine.sample())
        if self.interrupted:
            raise Interrupted()
        rep.setdefault("step", step["index"])
        rep.setdefault("offered_rps", step["offered_rps"])
        rep.setdefault("connections", step["connections"])
        results.add_step(cell, rep, v.sc)
        return True

    def progress(self, i, n, v, eta):
        what = v.sc["label"] if v.step is None else step_text(v.sc, v.step)
        line = "[%d/%d] round %d/%d %-18s %-34s ETA %s" % (
            i, n, v.round, self.plan.rounds, v.name, what, fmt_duration(eta))
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def run_cells(self):
        visits = self.plan.visits()
        total = sum(self.plan.visit_seconds(v) for v in visits)
        t_start, done_est = time.monotonic(), 0.0
        for i, v in enumerate(visits, 1):
            # ETA: the plan, corrected by how far off the plan was so far
            scale = (time.monotonic() - t_start) / done_est if done_est > 0 else 1.0
            self.progress(i, len(visits), v, (total - done_est) * scale)
            ran = (self.run_one(v.round, v.sc, v.name, self.machine) if v.step is None
                   else self.run_step(v, self.machine))
            if ran:
                done_est += self.plan.visit_seconds(v)
            else:
                total -= self.plan.visit_seconds(v)
            self.save("running")

    # -- output --

    def save(self, status):
        results.save(self.run_dir, results.results_doc(self, status))

    def server_host_tools(self):
        """perf and the references as the server host has them."""
        tools = {k: tuple(v) for k, v in self.net.remote_tools().items()}
        for name, (ok, why) in tools.items():
            if not ok:
                print("c10k bench: on %s, %s is unusable: %s" % (self.args.server_host, name,
                                                                  why), file=sys.stderr)
        return tools

    def server_euid(self):
        """The user the servers run as (nginx needs 'user root' as root)."""
        ag = self.net.server_agent
        return ag.info["euid"] if ag is not None else os.geteuid()

    def cleanup_children(self):
        self.net.kill()
        for p in list(self.children):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.runner.kill_current()

    def announce(self):
        p = self.plan
        print("c10k bench: " + summary_line(p) + "; planned total %s"
              % fmt_duration(p.estimate_s(not self.args.no_report)))
        print("c10k bench: server on CPU %s, %s on CPU %s, %d worker(s) (%s: a thread or "
              "process per connection); perf %s; accept queue via %s; model counters %s; "
              "run dir %s"
              % (cpus_text(p.server_cpus), "wrk and c10k load" if p.open else "wrk",
                 cpus_text(p.client_cpus), p.workers,
                 ", ".join(self.binary.per_connection) or "none",
                 "on" if self.tools["perf"][0] else "UNAVAILABLE", self.queue_method,
                 "from --stats-file" if self.stats_file_supported else
                 "unavailable (c10k serve has no --stats-file)", self.run_dir))
        print("c10k bench: ceiling: %s" % self.ceiling_text())
        for name in p.names:
            whys = sorted({refs.REFERENCES[p.server(name).model].serves(sc)
                           for sc in p.scenarios if not p.serves(name, sc)})
            for why in whys:
                print("c10k bench: %s: %s" % (name, why))
        if p.open:
            print("c10k bench: open loop: %s arrivals, SLO p99 %g ms, c10k load --max-lag %g ms "
                  "(%s)" % (p.open["schedule"], p.open["slo_us"] / 1e3, p.max_lag_s * 1e3,
                            p.open["max_lag_rule"].split(":")[0]))
        if self.cold:
            d = self.cold.describe()
            print("c10k bench: cold cache: %d files (%d MiB) in %s%s; disk %s %s; page cache "
                  "limit %s; time blocked on I/O: threads in state D, sampled (delay "
                  "accounting beside it %s)"
                  % (d["root"]["files"], d["root"]["bytes"] // (1 << 20), d["root"]["path"],
                     ", written now in %.0f s" % d["root"]["prepare_s"] if d["root"]["generated"]
                     else ", reused", d["device"] or "?",
                     "throttled per scenario by cgroup v%d" % d["disk_cgroup"]["version"]
                     if d["disk_cgroup"] else "NOT throttled (%s)" % d["disk_unavailable"],
                     "%d MiB (cgroup v%d)" % (d["memory_limit_bytes"] >> 20,
                                             d["memory_cgroup"]["version"])
                     if d["memory_cgroup"] else "none (%s)" % d["memory_unavailable"],
                     "on" if d["delayacct"] else
                     "unavailable: %s" % d["delayacct_unavailable"]))
        for note in self.plan.notes:
            print("c10k bench: note: " + note)
        sys.stdout.flush()

    def ceiling_text(self):
        if self.ceiling is None:
            return "NOT IN THIS RUN: %s" % self.tools.get("ceiling", (False, "unknown"))[1]
        if len(self.ceiling.backends) == 1:
            b = self.ceiling.backends[0]
            return "%s only (%s)" % (b, "; ".join("%s: %s" % kv for kv in
                                                 sorted(self.ceiling.unavailable.items())))
        return ("the faster of %s per scenario, chosen by a probe before its first cell"
                % " and ".join(self.ceiling.backends))

    def report(self):
        """c10k report on the run; its failure never fails the bench."""
        p = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), self.run_dir],
                           stderr=subprocess.PIPE, text=True)
        if p.returncode == 0:
            sys.stderr.write(p.stderr)
            print("c10k bench: report: %s" % os.path.join(self.run_dir, "report.html"))
            print("c10k bench: report: %s" % os.path.join(self.run_dir, "report.md"))
            return
        said = (p.stderr.strip().splitlines() or ["no message"])[-1]
        if "schema version" in said:
            print("c10k bench: NO REPORT: this report generator cannot read results.json "
                  "schema version %d yet (it said: %s). The results are complete in %s."
                  % (results.SCHEMA_VERSION, said, os.path.join(self.run_dir, "results.json")),
                  file=sys.stderr)
        else:
            sys.stderr.write(p.stderr)
            print("c10k bench: NO REPORT: the report generator failed (status %d); the results "
                  "are kept in %s" % (p.returncode, os.path.join(self.run_dir, "results.json")),
                  file=sys.stderr)

    def main(self):
        try:
            return self._main()
        finally:
            try:
                self.net.close()  # namespaces and ssh sessions, however the run ends
            finally:
                self.cleanup()

    def _main(self):
        self.prepare()
        self.announce()
        self.save("running")
        t_start, status = time.monotonic(), "complete"
        try:
            self.run_cells()
        except (Interrupted, KeyboardInterrupt):
            status = "interrupted"
            self.interrupted = True
            self.cleanup_children()
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            print("c10k bench: interrupted: servers and wrk stopped; keeping the finished "
                  "rounds of %d cell(s)" % len(self.cells), file=sys.stderr)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
        self.save(status)
        cells = self.cells_in_order()
        flagged = sum(bool(c["flags"]) for c in cells)
        print("c10k bench: %s: %d cells x %d round(s) in %s (%d ok, %d degraded, %d failed; "
              "%d flagged starved or noisy)"
              % (status, len(cells), self.plan.rounds, fmt_duration(time.monotonic() - t_start),
                 sum(c["status"] == "ok" for c in cells),
                 sum(c["status"] == "degraded" for c in cells),
                 sum(c["status"] == "failed" for c in cells), flagged))
        if self.ceiling is not None and self.ceiling.choices:
            print("c10k bench: ceiling backend per scenario (lead in the probe): %s"
                  % self.ceiling.summary())
        print("c10k bench: results: %s" % os.path.join(self.run_dir, "results.json"))
        if not self.args.no_report:
            self.report()
        return 130 if status == "interrupted" else 0

