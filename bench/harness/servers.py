"""Starting and stopping one server process for one cell.

Server holds what every server shares: a process in its own session, its
log in raw/, waiting until it accepts, a graceful stop that must be clean,
and no process of its session left behind. ModelServer is `c10k serve`;
the reference servers (refs.py) are subclasses too.
"""

import datetime
import os
import re
import signal
import socket
import subprocess
import time

from .util import cpus_text, fmt_seconds, read_file, run_text, slug


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_busy(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def who_listens(port):
    out = run_text(["ss", "-Hltnp", "sport = :%d" % port])
    m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return "%s (pid %s)" % (m.group(1), m.group(2)) if m else "another process"


class Server:
    """One server process started fresh for one cell, on the cell's
    ServerSide (net.py): this host, a network namespace, or another host."""

    stop_signal = signal.SIGTERM

    def __init__(self, run, spec, port, side):
        self.run, self.spec, self.port, self.side = run, spec, port, side
        self.proc = None
        self.argv = None
        self.log_path = os.path.join(run.run_dir, "raw", "server-%s.log" % slug(spec.name))

    def _open_log(self):
        log = open(self.log_path, "a")
        log.write("=== %s start %s%s\n" % (self.spec.name, datetime.datetime.now().isoformat(),
                                         " on %s" % self.side.host if self.side.remote else ""))
        log.flush()
        return log

    def start(self):
        """None when it accepts connections, or what went wrong."""
        raise NotImplementedError

    def command(self):
        """The command line recorded in results.json."""
        return self.argv

    def launch_argv(self):
        """self.argv as it is started: inside the run's cgroups when the run
        has some (the cold-cache profile: Run.wrap); a run-like object
        without wrap (the perfgate's) starts it as it is."""
        wrap = getattr(self.run, "wrap", None)
        return wrap(self.argv) if wrap else list(self.argv)

    def verify_sizes(self, sizes):
        """The file sizes whose answers are checked before the load: all of
        the run's (a server that answers every request with one file, the
        ceiling, checks only that one)."""
        return sizes

    def _exit_text(self):
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        self.side.fetch_log(self.proc, self.log_path)
        tail = read_file(self.log_path).strip().splitlines()[-3:]
        return "exited with status %d: %s" % (rc, " | ".join(tail))

    def _accepts(self):
        try:
            with socket.create_connection((self.side.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited before listening (%s)" % self._exit_text()
            if self.side.in_client(self._accepts):
                return None
            time.sleep(0.05)
        return "not accepting connections on %s port %d after %.0f s" % (
            self.side.host, self.port, timeout)

    def stop(self, timeout=6.0):
        """Graceful stop; returns 'clean' or what went wrong."""
        if self.proc is None:
            return "not started"
        if self.side.remote:
            how = self.proc.stop(self.stop_signal, timeout)
            self.side.fetch_log(self.proc, self.log_path)
            return how
        if self.proc.poll() is None:
            self.proc.signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return "did not exit within %.0f s of %s; killed" % (timeout,
                                                                    self.stop_signal.name)
        rc = self.proc.returncode
        leftover = self.proc.leftovers()
        if rc != 0:
            return "exit status %d" % rc if rc > 0 else "killed by signal %d" % -rc
        if leftover:
            return "left processes behind: %s" % leftover
        return "clean"

    def kill(self):
        if self.proc is not None:
            self.proc.kill_session()


def open_file_cache_flags(cache):
    """c10k serve's flags for c10k bench --open-file-cache (cache: {"max": N,
    "valid_s": S} or None); refs.nginx_open_file_cache() is nginx's side."""
    if not cache:
        return []
    return ["--open-file-cache", str(cache["max"]),
            "--open-file-cache-valid", fmt_seconds(cache["valid_s"])]


def model_argv(bin_path, spec, port, docroot, workers, per_connection, server_cpus,
               keepalive_timeout, header_timeout, stats_file=None, bind=None,
               open_file_cache=None):
    """`c10k serve` for one model or variant. A per-connection model gets no
    --workers unless its variant sets it (prefork:workers=1 is a fixed pool
    of one); a variant's --workers replaces the bench's. bind: the address
    to listen on, when not c10k's default 127.0.0.1."""
    argv = [bin_path, "serve", spec.model, "--port", str(port), "--root", docroot]
    if bind and bind != "127.0.0.1":
        argv += ["--bind", bind]
    if spec.model not in per_connection and not spec.sets("workers"):
        argv += ["--workers", str(workers)]
    argv += ["--cpus", cpus_text(server_cpus), "--keepalive-timeout", str(keepalive_timeout),
             "--header-timeout", str(header_timeout), "--grace", "2"]
    if stats_file:
        argv += ["--stats-file", stats_file]
    return argv + open_file_cache_flags(open_file_cache) + spec.argv()


class ModelServer(Server):
    """`c10k serve MODEL [variant flags]`; the port comes from its start line.
    A server that prints the same kind of start line (the ceiling) is a
    subclass with its own build_argv()."""

    def __init__(self, run, spec, port, side, stats_file=None):
        super().__init__(run, spec, port, side)
        self.stats_file = stats_file

    def build_argv(self):
        r, p, side = self.run, self.run.plan, self.side
        return model_argv(side.binary(r.binary.path), self.spec, self.port,
                          side.path(r.docroot), p.workers, r.binary.per_connection,
                          p.server_cpus, p.keepalive_timeout, p.header_timeout,
                          side.stats_path(self.stats_file) if self.stats_file else None,
                          side.bind, p.open_file_cache)

    def start(self):
        side = self.side
        self.argv = self.build_argv()
        log = self._open_log()
        try:
            self.proc = side.start(self.launch_argv(), log, first_line=True)
        finally:
            log.close()
        line = self.proc.read_start_line(10.0)
        if line is None:
            return "no start line within 10 s (%s)" % self._exit_text()
        m = re.search(r"http://[^/]*:(\d+)/", line)
        if not m:
            return "start line names no port: %r" % line
        self.port = int(m.group(1))
        if not side.remote:  # over there the agent keeps it in the log it sends
            with open(self.log_path, "a") as f:
                f.write(line)
        return self._wait_listening(5.0)
