"""Where the server and the load generator run, and across what.

Each scenario's "link" (results.json) names the path its requests take:

  loopback        server and load generator on this host, in the harness's
                  own network namespace, over 127.0.0.1 (the default);
  veth            the load generator in a network namespace of its own, the
                  server in another, joined by a veth pair (--netns, and the
                  links profile): separate network stacks, real interfaces;
  veth RATE       the same, both ends shaped to RATE by tbf (--link-rate);
  veth ... netem ARGS   and netem on both ends (--netem), where the kernel
                  has it;
  network         a real network: the server on --server-host, or the load
                  generator on --client-host, over ssh (remote.py).

A Net is opened once per run (namespaces created, ssh sessions opened,
--netem checked) and closed at its end, however it ends. For each cell it
hands out a ServerSide: how to start a server there, how to reach it, how
to measure it, and how the load and the checks reach it.

Addresses: the veth pair is 198.18.0.1 (server) and 198.18.0.2 (load), from
198.18.0.0/15, the range RFC 2544 reserves for benchmarking (netns.py).
"""

import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time

from . import counters as ct
from . import netns, remote
from .util import UsageError, proc_stats

LOOPBACK = "loopback"


# --- link names ---------------------------------------------------------------


def link_name(kind, rate_bps=None, netem=None):
    """'loopback', 'veth', 'veth 100mbit', 'veth 100mbit netem delay 5ms', 'network'."""
    if kind != "veth":
        return kind
    parts = ["veth"]
    if rate_bps:
        parts.append(netns.rate_text(rate_bps))
    if netem:
        parts += ["netem"] + list(netem)
    return " ".join(parts)


def parse_link(name):
    """link_name()'s inverse: (kind, rate bits/s or None, netem words or None)."""
    words = (name or LOOPBACK).split()
    kind, rate, netem = words[0], None, None
    rest = words[1:]
    if rest and rest[0] != "netem":
        rate = netns.parse_rate(rest.pop(0))
    if rest and rest[0] == "netem":
        netem = rest[1:]
    return kind, rate, netem


def link_suffix(name):
    """The part of a scenario id that names a link other than loopback:
    'veth 100mbit' -> '-veth100mbit'."""
    if name == LOOPBACK:
        return ""
    head, netem, tail = name.partition(" netem")

    def clean(text):
        return re.sub(r"[^A-Za-z0-9.]+", "", text)
    return "-" + clean(head) + ("-netem" + clean(tail) if netem else "")


# --- processes, here or over there -------------------------------------------------


class LocalProc:
    """A server process on this host, in a session of its own."""

    def __init__(self, popen):
        self.popen = popen
        self.pid = popen.pid
        self.stdout = popen.stdout

    @property
    def returncode(self):
        return self.popen.returncode

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout):
        return self.popen.wait(timeout)

    def signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_session(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.leftovers()

    def leftovers(self):
        """Processes of its session still alive (killed now)."""
        left = [pid for pid, f in proc_stats()  # session id = the leader's pid
                if int(f[4]) == self.pid and f[0] != "Z"]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def read_start_line(self, timeout):
        """The first line on its stdout within timeout, or None; the rest
        of its stdout is drained in a thread so it never blocks."""
        sel = selectors.DefaultSelector()
        sel.register(self.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf, line = b"", None
        while time.monotonic() < deadline:
            if not sel.select(0.1):
                if self.poll() is not None:
                    break
                continue
            chunk = os.read(self.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.decode(errors="replace")
                break
        sel.close()
        threading.Thread(target=self._drain, daemon=True).start()
        return line

    def _drain(self):
        try:
            while os.read(self.stdout.fileno(), 65536):
                pass
        except (OSError, ValueError):
            pass


class RemoteProc:
    """A server process the agent on the server host started. It quacks
    like LocalProc; the agent does the waiting and the killing there."""

    def __init__(self, agent, cid, pid, line):
        self.agent, self.cid, self.pid, self.line = agent, cid, pid, line
        self.returncode = None
        self.stop_how = None

    def poll(self):
        if self.returncode is None:
            self.returncode = self.agent.call("poll", cid=self.cid)
        return self.returncode

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.cid, timeout)
            time.sleep(0.05)
        return self.returncode

    def signal(self, sig):
        self.agent.call("signal", cid=self.cid, sig=int(sig))

    def stop(self, sig, timeout):
        """The agent's graceful stop: 'clean' or what went wrong."""
        how = self.agent.call("stop", cid=self.cid, sig=int(sig), timeout=timeout,
                              reply_within=timeout + 30)
        self.poll()
        return how

    def kill_session(self):
        try:
            self.agent.call("kill", cid=self.cid)
        except remote.RemoteError:
            pass  # the session is gone: the agent killed everything itself

    def leftovers(self):
        return []  # the agent's stop() checks and reports them

    def read_start_line(self, timeout):
        return self.line


# --- the server side of a cell -----------------------------------------------------


class LocalSide:
    """The server on this host: in the harness's own namespace (loopback),
    or in the server namespace of a veth link, with the load in the client
    namespace."""

    remote = False

    def __init__(self, run, link_name_=LOOPBACK, server_ns=None, client_ns=None,
                 addr="127.0.0.1", bind=None):
        self.run, self.link = run, link_name_
        self.server_ns, self.client_ns = server_ns, client_ns
        self.host = addr          # where the load connects
        self.bind = bind or addr  # where the server listens
        # the clients' ends of the connections are out of sight (another
        # namespace, another host): count the server's
        self.server_ends = link_name_ != LOOPBACK

    def binary(self, local_path):
        return local_path

    def in_server(self, fn, *args):
        return netns.in_netns(self.server_ns, fn, *args) if self.server_ns else fn(*args)

    def in_client(self, fn, *args):
        return netns.in_netns(self.client_ns, fn, *args) if self.client_ns else fn(*args)

    def client_prefix(self):
        return netns.exec_prefix(self.client_ns) if self.client_ns else []

    def free_port(self):
        def pick():
            with socket.socket() as s:
                s.bind((self.bind, 0))
                return s.getsockname()[1]
        return self.in_server(pick)

    def port_busy(self, port):
        def busy():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.bind, port))
                except OSError:
                    return True
            return False
        return self.in_server(busy)

    def path(self, local_path):
        """A run-directory path as the server host sees it."""
        return local_path

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def start(self, argv, log, first_line):
        """Start argv (in the server namespace); with first_line, its
        stdout is a pipe the caller reads the start line from."""
        argv = (netns.exec_prefix(self.server_ns) if self.server_ns else []) + argv
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE if first_line else log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        return LocalProc(popen)

    def fetch_log(self, proc, log_path):
        pass

    def snapshot(self, pid):
        return ct.proc_snapshot(pid)

    def window(self, pid, port, perf_out, perf_ok, perf_why):
        from .cell import Window
        return Window(pid, port, perf_out, perf_ok, perf_why, ns=self.server_ns,
                      server_ends=self.server_ends)

    def fresh_stats(self, path, since_ns):
        return ct.read_fresh_stats(path, since_ns)

    def stats_path(self, local_path):
        return local_path


class RemoteWindow:
    """cell.Window measured by the agent on the server host: the same code
    (counters.py) runs there, and the results come back here in the shape
    cell.CellRunner.metrics reads."""

    class _Tree:
        def __init__(self, d):
            self.peak, self.samples = d["peak"], d["samples"]

    class _Queue:
        def __init__(self, d):
            self.peak, self.samples, self.method = d["peak"], d["samples"], d["method"]
            self._frac = d["wait_frac"]

        def wait_frac(self):
            return self._frac

    class _Diag:
        def __init__(self, agent):
            self.agent = agent

        def accept_queue(self, port):
            return tuple(self._call("accept_queue", port))

        def established_from(self, port):
            return self._call("established_from", port)

        def _call(self, op, port):
            try:
                return self.agent.call(op, port=port)
            except remote.RemoteError as e:
                raise OSError(str(e)) from None

    def __init__(self, agent, pid, port, perf_out, perf_ok, perf_why):
        self.agent, self.perf_out = agent, perf_out
        self.wid = agent.call("window_open", pid=pid, port=port, perf_ok=perf_ok,
                              perf_why=perf_why, reply_within=60)
        self.diag = self._Diag(agent)
        self.cost = self.tree = self.queue = None
        self.soft = [None, None]

    def start(self):
        self.agent.call("window_start", wid=self.wid, reply_within=60)

    def stop(self):
        d = self.agent.call("window_stop", wid=self.wid, reply_within=60)
        self.wid = None
        self.cost = d["cost"]
        self.tree, self.queue = self._Tree(d["tree"]), self._Queue(d["queue"])
        self.soft = d["soft"]
        if d.get("perf_csv") is not None and self.perf_out:
            with open(self.perf_out, "w") as f:
                f.write(d["perf_csv"])
        return self.cost

    def close(self):
        if self.wid is not None:
            try:
                self.agent.call("window_close", wid=self.wid)
            except remote.RemoteError:
                pass
            self.wid = None


class RemoteSide:
    """The server on --server-host: started, measured and stopped there by
    the agent; its files under the agent's work directory; the load (and
    the checks) from this host."""

    remote = True
    link = "network"
    server_ns = client_ns = None

    def __init__(self, run, agent):
        self.run, self.agent = run, agent
        self.host = self.bind = agent.info["own_addr"]
        self.work = agent.info["work"]
        self.seq = 0

    def in_server(self, fn, *args):
        raise RuntimeError("no local server namespace for a remote server")

    def binary(self, local_path):
        """c10k there: the agent's own binary."""
        return self.agent.info["bin"]

    def in_client(self, fn, *args):
        return fn(*args)

    def client_prefix(self):
        return []

    def free_port(self):
        return self.agent.call("free_port", addr=self.bind)

    def port_busy(self, port):
        return self.agent.call("port_busy", addr=self.bind, port=port)

    def path(self, local_path):
        """run_dir/x -> the agent's work/run/x."""
        rel = os.path.relpath(local_path, self.run.run_dir)
        return os.path.join(self.work, "run", rel)

    def write(self, path, text):
        self.agent.write(os.path.relpath(path, self.work), text)

    def start(self, argv, log, first_line):
        self.seq += 1
        cid = "srv%d" % self.seq
        log_rel = "run/raw/%s.log" % cid
        r = self.agent.call("spawn", cid=cid, argv=argv, log=log_rel,
                            first_line_timeout=10 if first_line else None, reply_within=30)
        proc = RemoteProc(self.agent, cid, r["pid"], r["line"])
        proc.log_rel, proc.log_fetched = log_rel, 0
        return proc

    def fetch_log(self, proc, log_path):
        """Append what the server wrote there since the last fetch to its
        log here."""
        try:
            data = self.agent.read(proc.log_rel, 1 << 20)
        except remote.RemoteError:
            return
        if data and len(data) > proc.log_fetched:
            with open(log_path, "ab") as f:
                f.write(data[proc.log_fetched:])
            proc.log_fetched = len(data)

    def snapshot(self, pid):
        return self.agent.call("snapshot", pid=pid)

    def window(self, pid, port, perf_out, perf_ok, perf_why):
        return RemoteWindow(self.agent, pid, port, perf_out, perf_ok, perf_why)

    def fresh_stats(self, path, since_ns):
        # "since" is the server host's now: its clock is not ours
        return tuple(self.agent.call("fresh_stats", path=self.path(path)))

    def stats_path(self, local_path):
        return self.path(local_path)


# --- the run's network ----------------------------------------------------------------


class Net:
    """The namespaces and ssh sessions of one run."""

    def __init__(self, run, args):
        self.run, self.args = run, args
        self.lab = self.link = None
        self.server_ns = self.client_ns = None
        self.server_agent = None
        self.client_agents = []
        self.info = {}

    # -- setup and teardown --

    def needs_veth(self):
        return any(parse_link(sc["link"])[0] == "veth" for sc in self.run.plan.scenarios)

    def open_local(self):
        """The namespaces and the veth, when a scenario needs them; --netem
        is tried here, before anything else of the run exists."""
        try:
            if self.needs_veth():
                self._open_veth()
        except BaseException:
            self.close()
            raise

    def open_remote(self):
        """The ssh sessions (agent logs go to the run's raw/)."""
        try:
            if self.args.server_host or self.args.client_host:
                self._open_remote()
        except BaseException:
            self.close()
            raise

    def _open_veth(self):
        ok, why = netns.available()
        if not ok:
            raise UsageError("a veth link (--netns, --link-rate, --netem, --profile links) %s"
                             % why)
        self.lab = netns.Lab().__enter__()
        self.server_ns = self.lab.add_ns("srv")
        self.client_ns = self.lab.add_ns("cli")
        self.link = self.lab.connect(self.server_ns, self.client_ns)
        # every netem a scenario asks for is tried now: a kernel without
        # sch_netem stops the run before its first cell
        for sc in self.run.plan.scenarios:
            kind, rate, netem = parse_link(sc["link"])
            if kind == "veth" and netem:
                try:
                    self.link.shape(rate, netem)
                except netns.NetemUnavailable as e:
                    raise UsageError("--netem '%s': %s; c10k bench does not run without the "
                                     "delay or loss it was asked for"
                                     % (" ".join(netem), e)) from None
                except netns.NetnsError as e:
                    raise UsageError("--netem '%s': tc refused it: %s"
                                     % (" ".join(netem), e)) from None
        self.link.shape(None, None)
        self.info["veth"] = {
            "range": netns.RANGE, "server_addr": self.link.a_addr,
            "client_addr": self.link.b_addr, "server_ns": self.server_ns,
            "client_ns": self.client_ns,
            "shaping": "tbf on both ends' egress: burst max(1 ms at the rate, 128 KiB), "
                       "latency %d ms; netem, when asked for, as tbf's parent"
                       % netns.TBF_LATENCY_MS}

    def _open_remote(self):
        a, raw = self.args, os.path.join(self.run.run_dir, "raw")
        try:
            if a.server_host:
                self.server_agent = remote.open_agents([a.server_host], a.remote_c10k,
                                                       a.ssh_config, raw)[0]
                self._prepare_server_host()
            if a.client_host:
                self.client_agents = remote.open_agents(a.client_host, a.remote_c10k,
                                                        a.ssh_config, raw)
                self._check_client_hosts()
        except remote.RemoteError as e:
            raise UsageError(str(e)) from None
        self.info["server_host"] = self._host_info(self.server_agent, a.server_host) \
            if self.server_agent else None
        self.info["client_hosts"] = [self._host_info(ag, h) for ag, h in
                                     zip(self.client_agents, a.client_host or [])]

    @staticmethod
    def _host_info(agent, spec):
        i = agent.info
        return {"spec": spec, "hostname": i["hostname"], "address": i["own_addr"],
                "kernel": i["kernel"], "cpu_model": i["cpu_model"], "cores": i["cores"],
                "c10k": i["bin"], "c10k_version": i["version"], "tools": i["tools"],
                "work": i["work"]}

    def _prepare_server_host(self):
        """The document root there must be byte for byte the one here; the
        server CPUs must exist there."""
        ag, plan = self.server_agent, self.run.plan
        digests = ag.call("docroot", path="run/docroot", sizes=plan.sizes, reply_within=600)
        for size in plan.sizes:
            if digests.get(str(size)) != self.run.digests[size]:
                raise remote.RemoteError(
                    "%s: its document root differs from this host's (file of %d bytes): "
                    "install the same c10k there" % (self.args.server_host, size))
        cores = ag.info["cores"] or 1
        if max(plan.server_cpus) >= cores:
            raise remote.RemoteError("--server-cpus %s: %s has CPUs 0-%d"
                                     % (",".join(map(str, plan.server_cpus)),
                                        self.args.server_host, cores - 1))
        ag.call("mkdir", path="run/raw")
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            ag.call("mkdir", path="run/tmp/" + d)

    def _check_client_hosts(self):
        for ag, spec in zip(self.client_agents, self.args.client_host):
            if not ag.info["tools"].get("wrk"):
                raise remote.RemoteError("%s: wrk is not installed there (apt-get install "
                                         "wrk)" % spec)

    def remote_tools(self):
        """{tool: (usable, why)} of the server host, for check_tools."""
        return self.server_agent.call("check_tools", reply_within=60)

    def close(self):
        """Everything this run made: ssh sessions (their agents stop what
        they started), then the namespaces."""
        for ag in [self.server_agent] + self.client_agents:
            if ag is not None:
                ag.close()
        self.server_agent, self.client_agents = None, []
        if self.lab is not None:
            self.lab.close()
            self.lab = None

    def kill(self):
        """Interrupted: end the ssh sessions at once (the agents clean up)."""
        for ag in [self.server_agent] + self.client_agents:
            if ag is not None:
                ag.kill()

    # -- per cell --

    def next_seq(self):
        self.seq = getattr(self, "seq", 0) + 1
        return self.seq

    def load_threads(self, connections):
        """Generator threads for a scenario: wrk's rule here, summed over
        the client hosts."""
        from .loadgen import split_connections, wrk_threads
        if not self.client_agents:
            return wrk_threads(connections, self.run.plan.client_cpus)
        split = split_connections(connections, len(self.client_agents))
        return sum(max(1, min(c, ag.info["cores"] or 1))
                   for ag, c in zip(self.client_agents, split) if c)

    def side(self, sc):
        """The ServerSide for scenario sc, its link shaped as it asks."""
        kind, rate, netem = parse_link(sc["link"])
        if self.server_agent is not None:
            return RemoteSide(self.run, self.server_agent)
        if kind == "veth":
            self.link.shape(rate, netem)
            return LocalSide(self.run, sc["link"], self.server_ns, self.client_ns,
                             self.link.a_addr)
        if self.client_agents:
            # the load comes from other hosts: listen where they reach this
            # host (all of them, if they reach it at different addresses);
            # the harness's own checks connect there too
            peers = {ag.info["peer_addr"] for ag in self.client_agents}
            bind = peers.pop() if len(peers) == 1 else "0.0.0.0"
            return LocalSide(self.run, "network", addr=bind if bind != "0.0.0.0"
                             else "127.0.0.1", bind=bind)
        return LocalSide(self.run)
