#!/usr/bin/python3
"""c10k agent: the far end of `c10k bench --server-host` and `--client-host`.

c10k bench starts it on a remote host over ssh (`ssh HOST c10k agent`) and
talks to it through the ssh session's stdin and stdout, one JSON object per
line each way. Everything it runs on that host (the server under test, the
load generator, perf) is its child, and the session is its lifeline: when
stdin reaches EOF (the harness finished, was interrupted or died, or the
connection broke) it kills every child and removes its work directory.

Request:  {"id": N, "op": NAME, "args": {...}}
Reply:    {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false,
          "error": "one line"}
Strings in an argv or env value may name "{bench}" (this host's bench/
directory), "{work}" (the agent's work directory) or "{bin}" (this host's
c10k binary); the agent fills them in.

The operations are the Agent.op_* methods. The measuring ones (proc
snapshots, perf, the accept queue sampler) run the harness's own code, so a
remote server is measured exactly as a local one.
"""

import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PROTOCOL = 1
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/
if HERE not in sys.path:
    sys.path.insert(0, HERE)

EOF = object()


class OpError(Exception):
    """A request that cannot be done: its message goes back as the error."""


def fill(value, names):
    """value with {bench}, {work}, {bin} filled in (strings, lists, dicts)."""
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{%s}" % k, v)
        return value
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    return value


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def session_members(sid):
    """Live (not zombie) pids of session sid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        if int(f[4]) == sid and f[0] != "Z":
            out.append(int(name))
    return out


class Child:
    """One process the agent started, in a session of its own."""

    def __init__(self, cid, argv, proc, log):
        self.cid, self.argv, self.proc, self.log = cid, argv, proc, log
        self.rusage = None
        self.lock = threading.Lock()

    def reap(self, block):
        """returncode or None; keeps the rusage of the exit. Both the main
        thread and the session reader (at EOF) may reap: one lock."""
        with self.lock:
            if self.proc.returncode is not None:
                return self.proc.returncode
            try:
                pid, status, ru = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.proc.returncode = -signal.SIGKILL
                return self.proc.returncode
            if not pid:
                return None
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.rusage = ru
            return self.proc.returncode

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.returncode is None:
            try:
                self.reap(True)
            except ChildProcessError:
                pass
        for pid in session_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Agent:
    def __init__(self, bin_path, out, keep=False):
        self.bin = os.path.abspath(bin_path)
        self.out = out
        self.keep = keep
        self.work = tempfile.mkdtemp(prefix="c10k-agent-")
        self.names = {"bench": HERE, "work": self.work, "bin": self.bin}
        self.children = {}
        self.armed = {}
        self.objects = {}
        self.lock = threading.Lock()
        self.inbox = queue.Queue()
        self.closed = False

    # -- the session ------------------------------------------------------------

    def reader(self, stream):
        for line in stream:
            self.inbox.put(line)
        # EOF: the harness is gone. Stop the children now, from this thread:
        # the main thread may be waiting on one of them.
        self.cleanup()
        self.inbox.put(EOF)

    def reply(self, obj):
        try:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    def serve(self, stream):
        threading.Thread(target=self.reader, args=(stream,), daemon=True).start()
        while True:
            line = self.inbox.get()
            if line is EOF:
                break
            try:
                msg = json.loads(line)
                rid, op, args = msg.get("id"), msg["op"], msg.get("args") or {}
            except (ValueError, KeyError, AttributeError):
                self.reply({"id": None, "ok": False, "error": "not a request: %r" % line[:200]})
                continue
            fn = getattr(self, "op_" + str(op), None)
            if fn is None:
                self.reply({"id": rid, "ok": False, "error": "unknown operation %r" % op})
                continue
            try:
                self.reply({"id": rid, "ok": True, "result": fn(**fill(args, self.names))})
            except OpError as e:
                self.reply({"id": rid, "ok": False, "error": str(e)})
            except (OSError, ValueError, TypeError, KeyError, subprocess.SubprocessError) as e:
                self.reply({"id": rid, "ok": False, "error": "%s: %s" % (op, e)})
            if op == "bye":
                break
        self.cleanup()
        return 0

    def cleanup(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for obj in list(self.objects.values()):
                close = getattr(obj, "close", None) or getattr(obj, "kill", None)
                if close:
                    try:
                        close()
                    except Exception:  # cleanup must go on past one failure
                        pass
            for child in list(self.children.values()):
                child.kill()
            if not self.keep:
                shutil.rmtree(self.work, ignore_errors=True)

    # -- information ------------------------------------------------------------

    def op_hello(self, protocol):
        if protocol != PROTOCOL:
            raise OpError("protocol %s, this agent speaks %d: install the same c10k on both "
                          "hosts" % (protocol, PROTOCOL))
        ssh = (os.environ.get("SSH_CONNECTION") or "").split()
        u = os.uname()
        version = subprocess.run([self.bin, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, timeout=10).stdout
        return {
            "protocol": PROTOCOL, "pid": os.getpid(), "hostname": socket.gethostname(),
            "kernel": u.release, "kernel_version": u.version, "machine": u.machine,
            "cores": os.cpu_count(), "cpu_model": cpu_model(), "bin": self.bin,
            "version": version.strip().splitlines()[0] if version.strip() else None,
            "bench": HERE, "work": self.work, "euid": os.geteuid(),
            # what the harness's address is from here, and ours from there
            "peer_addr": ssh[0] if len(ssh) == 4 else None,
            "own_addr": ssh[2] if len(ssh) == 4 else None,
            "tools": {t: shutil.which(t) for t in ("wrk", "nginx", "perf", "taskset")},
        }

    # -- files ------------------------------------------------------------------

    def _path(self, path):
        path = os.path.join(self.work, path) if not os.path.isabs(path) else path
        real = os.path.realpath(path)
        if not (real == self.work or real.startswith(self.work + os.sep)):
            raise OpError("%s is outside the agent's work directory" % path)
        return real

    def op_write(self, path, data=None, text=None, mode=0o644):
        path = self._path(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data) if data is not None else (text or "").encode())
        os.chmod(path, mode)
        return {"path": path}

    def op_read(self, path, max_bytes=16 << 20):
        path = self._path(path)
        try:
            with open(path, "rb") as f:
                data = f.read(max_bytes)
        except FileNotFoundError:
            return None
        return base64.b64encode(data).decode()

    def op_mkdir(self, path):
        path = self._path(path)
        os.makedirs(path, exist_ok=True)
        return {"path": path}

    # -- processes --------------------------------------------------------------

    def _spawn(self, cid, argv, env=None, log=None, stdout_pipe=False, cwd=None):
        if cid in self.children and self.children[cid].proc.returncode is None:
            raise OpError("a process named %r is still running" % cid)
        full_env = dict(os.environ, **(env or {}))
        logf = open(self._path(log), "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if stdout_pipe else logf,
                                    stderr=logf if log else subprocess.DEVNULL, env=full_env,
                                    cwd=cwd or self.work, start_new_session=True)
        except OSError as e:
            raise OpError("cannot run %s: %s" % (argv[0], e.strerror)) from None
        finally:
            if log:
                logf.close()
        with self.lock:
            if self.closed:
                proc.kill()
                raise OpError("the agent is closing")
            child = Child(cid, argv, proc, log)
            self.children[cid] = child
        return child

    def op_spawn(self, cid, argv, env=None, log=None, first_line_timeout=None):
        """Start argv in a session of its own. With first_line_timeout, wait
        that long for its first line on stdout (a server's start line) and
        return it; the rest of its stdout is drained into the log."""
        child = self._spawn(cid, argv, env, log, stdout_pipe=first_line_timeout is not None)
        line = None
        if first_line_timeout is not None:
            line = self._first_line(child, first_line_timeout)
        return {"pid": child.proc.pid, "line": line, "returncode": child.reap(False)}

    def _first_line(self, child, timeout):
        import selectors
        fd = child.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf, deadline = b"", time.monotonic() + timeout
        while b"\n" not in buf and time.monotonic() < deadline:
            if not sel.select(0.1):
                if child.proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        sel.close()
        threading.Thread(target=self._drain, args=(child, buf), daemon=True).start()
        return buf.split(b"\n")[0].decode(errors="replace") + "\n" if b"\n" in buf else None

    def _drain(self, child, head):
        """The rest of a child's stdout goes to its log, so it never blocks."""
        out = open(self._path(child.log), "ab") if child.log else None
        try:
            if out:
                out.write(head)
            while True:
                chunk = os.read(child.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                if out:
                    out.write(chunk)
        except (OSError, ValueError):
            pass
        finally:
            if out:
                out.close()

    def _child(self, cid):
        child = self.children.get(cid)
        if child is None:
            raise OpError("no process named %r" % cid)
        return child

    def op_poll(self, cid):
        return self._child(cid).reap(False)

    def op_wait_listening(self, cid, host, port, timeout):
        child = self._child(cid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.reap(False) is not None:
                return "exited before listening (status %d)" % child.proc.returncode
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.05)
        return "not accepting connections on %s port %d after %.0f s" % (host, port, timeout)

    def op_signal(self, cid, sig):
        child = self._child(cid)
        try:
            os.kill(child.proc.pid, int(sig))
        except ProcessLookupError:
            pass
        return None

    def op_stop(self, cid, sig, timeout):
        """Send sig, wait for the exit. 'clean', or what went wrong; its
        session's processes that outlive it are killed and reported."""
        child = self._child(cid)
        if child.reap(False) is None:
            self.op_signal(cid, sig)
            deadline = time.monotonic() + timeout
            while child.reap(False) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if child.reap(False) is None:
                child.kill()
                return "did not exit within %.0f s of signal %d; killed" % (timeout, sig)
        rc = child.proc.returncode
        left = session_members(child.proc.pid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if rc != 0:
            return "exit status %d" % rc if rc > 0 else "killed by signal %d" % -rc
        if left:
            return "left processes behind: %s" % left
        return "clean"

    def op_kill(self, cid):
        child = self.children.get(cid)
        if child is not None:
            child.kill()
        return None

    def _run_to_end(self, cid, argv, env, timeout, files, log):
        child = self._spawn(cid, argv, env, log)
        deadline = time.monotonic() + timeout
        timed_out = False
        while child.reap(False) is None:
            if time.monotonic() > deadline or self.closed:
                timed_out = not self.closed
                child.kill()
                break
            time.sleep(0.02)
        ru = child.rusage
        out = {"returncode": child.proc.returncode,
               "cpu_s": ru.ru_utime + ru.ru_stime if ru else None,
               "timed_out": timed_out, "files": {}}
        for f in files or []:
            out["files"][f] = self.op_read(f)
        if log:
            text = (self.op_read(log, 1 << 20) or "")
            out["log_tail"] = base64.b64decode(text).decode(errors="replace")[-2000:]
        return out

    def op_run(self, cid, argv, env=None, timeout=600, files=None, log=None):
        """Run argv to its end (at most timeout s); its exit status, CPU
        seconds (rusage) and the named files' contents (base64)."""
        return self._run_to_end(cid, argv, env, timeout, files, log)

    def op_arm(self, cid, argv, env=None, timeout=600, files=None, log=None):
        """The first half of a barrier: check that argv can start, keep it."""
        if not shutil.which(argv[0]):
            raise OpError("%s is not installed on this host" % argv[0])
        self.armed[cid] = dict(cid=cid, argv=argv, env=env, timeout=timeout, files=files,
                               log=log)
        return {"armed": cid}

    def op_go(self, cid):
        """The second half: start what op_arm kept, at once, and run it to
        its end; as op_run."""
        spec = self.armed.pop(cid, None)
        if spec is None:
            raise OpError("nothing armed as %r" % cid)
        t0 = time.time()
        out = self._run_to_end(**spec)
        out["started_at"] = t0
        return out

    # -- measuring a server here (the harness's own code: counters.py) ----------

    def op_check_tools(self):
        """{tool: [usable, why]} for perf and every reference server here."""
        from harness.counters import check_perf
        from harness.refs import REFERENCES
        out = {"perf": list(check_perf())}
        for name, ref in REFERENCES.items():
            out[name] = list(ref.available(self.bin))
        return out

    def op_docroot(self, path, sizes):
        """The bench's document root at path (under the work directory);
        {size: sha256} to compare with the harness's."""
        from harness.docroot import make_docroot
        digests = make_docroot(self._path(path), [int(s) for s in sizes])
        return {str(k): v for k, v in digests.items()}

    def op_free_port(self, addr):
        with socket.socket() as s:
            s.bind((addr, 0))
            return s.getsockname()[1]

    def op_port_busy(self, addr, port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return True
        return False

    def op_snapshot(self, pid):
        from harness.counters import proc_snapshot
        return proc_snapshot(pid)

    def op_window_open(self, pid, port, perf_ok, perf_why):
        """cell.Window on a server here: perf attached now, counting from
        window_start; the perf output stays in the work directory."""
        from harness.cell import Window
        self.seq = getattr(self, "seq", 0) + 1
        wid = "w%d" % self.seq
        perf_out = self._path("perf-%s.csv" % wid)
        self.objects[wid] = Window(pid, port, perf_out, perf_ok, perf_why, ns=None,
                                   server_ends=True)
        self.objects[wid].perf_out_path = perf_out
        return wid

    def _window(self, wid):
        w = self.objects.get(wid)
        if w is None:
            raise OpError("no window %r" % wid)
        return w

    def op_window_start(self, wid):
        self._window(wid).start()
        return None

    def op_window_stop(self, wid):
        w = self._window(wid)
        cost = w.stop()
        self.objects.pop(wid, None)
        perf_csv = None
        try:
            with open(w.perf_out_path) as f:
                perf_csv = f.read()
        except OSError:
            pass
        return {"cost": cost, "tree": {"peak": w.tree.peak, "samples": w.tree.samples},
                "queue": {"peak": w.queue.peak, "samples": w.queue.samples,
                          "method": w.queue.method, "wait_frac": w.queue.wait_frac()},
                "soft": w.soft, "perf_csv": perf_csv}

    def op_window_close(self, wid):
        w = self.objects.pop(wid, None)
        if w is not None:
            w.close()
        return None

    def _sockdiag(self):
        from harness.sockdiag import open_sockdiag
        if getattr(self, "diag", None) is None:
            self.diag = open_sockdiag()[0] or False
        return self.diag

    def op_accept_queue(self, port):
        """(queue, listeners) on port, for a warm-up's Settled check."""
        from harness.sockdiag import proc_tcp_counts
        if self._sockdiag():
            return list(self.diag.accept_queue(port))
        return [proc_tcp_counts(port)[1], 1]

    def op_established_from(self, port):
        """The server's ends of established connections on port, for a
        warm-up's Settled check."""
        from harness.sockdiag import proc_tcp_counts
        if self._sockdiag():
            return self.diag.established_from(port)
        return proc_tcp_counts(port, server_ends=True)[0]

    def op_fresh_stats(self, path):
        """The model's stats file once rewritten after now (this host's
        clock): [counters or None, why]."""
        from harness.counters import read_fresh_stats
        return list(read_fresh_stats(self._path(path), time.time_ns()))

    def op_bye(self):
        return None


def main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="c10k agent",
                                description="the remote end of c10k bench over ssh "
                                            "(started by c10k bench, not by hand)")
    p.add_argument("--bin", required=True, help="this host's c10k binary (c10k passes it)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    # Replies travel on the original stdout; anything else that writes to
    # fd 1 (a library, a stray print) goes to stderr instead of corrupting them.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    agent = Agent(args.bin, proto, args.keep)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda s, f: (agent.cleanup(), os._exit(128 + s)))
    try:
        return agent.serve(sys.stdin)
    finally:
        agent.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
