"""Starting and stopping one server process for one cell.

Server holds what every server shares: a process in its own session, its
log in raw/, waiting until it accepts, a graceful stop that must be clean,
and no process of its session left behind. ModelServer is `c10k serve`;
the reference servers (refs.py) are subclasses too.
"""

import datetime
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time

from .util import cpus_text, read_file, run_text, slug


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
    """One server process started fresh for one cell."""

    stop_signal = signal.SIGTERM

    def __init__(self, run, spec, port):
        self.run, self.spec, self.port = run, spec, port
        self.proc = None
        self.argv = None
        self.log_path = os.path.join(run.run_dir, "raw", "server-%s.log" % slug(spec.name))

    def _open_log(self):
        log = open(self.log_path, "a")
        log.write("=== %s start %s\n" % (self.spec.name, datetime.datetime.now().isoformat()))
        log.flush()
        return log

    def start(self):
        """None when it accepts connections, or what went wrong."""
        raise NotImplementedError

    def spawn(self, argv, **kw):
        """Popen argv in a session of its own, inside the run's cgroups when it
        has some (the cold-cache profile: Run.wrap)."""
        wrap = getattr(self.run, "wrap", None)
        return subprocess.Popen(wrap(argv) if wrap else argv, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)

    def command(self):
        """The command line recorded in results.json."""
        return self.argv

    def _exit_text(self):
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        tail = read_file(self.log_path).strip().splitlines()[-3:]
        return "exited with status %d: %s" % (rc, " | ".join(tail))

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited before listening (%s)" % self._exit_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.05)
        return "not accepting connections on port %d after %.0f s" % (self.port, timeout)

    def stop(self, timeout=6.0):
        """Graceful stop; returns 'clean' or what went wrong."""
        if self.proc is None:
            return "not started"
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return "did not exit within %.0f s of %s; killed" % (timeout,
                                                                    self.stop_signal.name)
        rc = self.proc.returncode
        leftover = self._leftovers()
        if rc != 0:
            return "exit status %d" % rc if rc > 0 else "killed by signal %d" % -rc
        if leftover:
            return "left processes behind: %s" % leftover
        return "clean"

    def _leftovers(self):
        """Processes of the server's session still alive after it exited."""
        left = []
        sid = self.proc.pid  # start_new_session: the session id is the leader's pid
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            stat = read_file("/proc/%s/stat" % name)
            if not stat:
                continue
            f = stat[stat.rfind(")") + 2:].split()
            if int(f[4]) == sid and f[0] != "Z":
                left.append(int(name))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._leftovers()


def model_argv(bin_path, spec, port, docroot, workers, per_connection, server_cpus,
               keepalive_timeout, header_timeout, stats_file=None):
    """`c10k serve` for one model or variant. A per-connection model gets no
    --workers unless its variant sets it (prefork:workers=1 is a fixed pool
    of one); a variant's --workers replaces the bench's."""
    argv = [bin_path, "serve", spec.model, "--port", str(port), "--root", docroot]
    if spec.model not in per_connection and not spec.sets("workers"):
        argv += ["--workers", str(workers)]
    argv += ["--cpus", cpus_text(server_cpus), "--keepalive-timeout", str(keepalive_timeout),
             "--header-timeout", str(header_timeout), "--grace", "2"]
    if stats_file:
        argv += ["--stats-file", stats_file]
    return argv + spec.argv()


class ModelServer(Server):
    """`c10k serve MODEL [variant flags]`; the port comes from its start line."""

    def __init__(self, run, spec, port, stats_file=None):
        super().__init__(run, spec, port)
        self.stats_file = stats_file

    def start(self):
        r, p = self.run, self.run.plan
        self.argv = model_argv(r.binary.path, self.spec, self.port, r.docroot, p.workers,
                               r.binary.per_connection, p.server_cpus, p.keepalive_timeout,
                               p.header_timeout, self.stats_file)
        log = self._open_log()
        self.proc = self.spawn(self.argv, stdout=subprocess.PIPE, stderr=log)
        log.close()
        line = self._read_start_line(10.0)
        if line is None:
            return "no start line within 10 s (%s)" % self._exit_text()
        m = re.search(r"http://[^/]*:(\d+)/", line)
        if not m:
            return "start line names no port: %r" % line
        self.port = int(m.group(1))
        with open(self.log_path, "a") as f:
            f.write(line)
        return self._wait_listening(5.0)

    def _read_start_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf, line = b"", None
        while time.monotonic() < deadline:
            if not sel.select(0.1):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.decode(errors="replace")
                break
        sel.close()
        # stdout stays a pipe that nobody reads: drain it in a thread so a
        # chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return line

    def _drain(self):
        try:
            while os.read(self.proc.stdout.fileno(), 65536):
                pass
        except (OSError, ValueError):
            pass
