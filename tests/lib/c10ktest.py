"""c10ktest - the one way the Python suites start a c10k server and talk HTTP to it.

    from c10ktest import Server, connect, Reader, exchange, get, eq

Server starts `c10k serve ...` (or any command that prints c10k's start line) as
a child in its own session, reads the port from the start line within a
timeout, and from then on always drains the child's stdout and stderr in
background threads: a server that writes more than a pipe holds (64 KiB of
warnings, say) must never block on a pipe nobody reads. stop() sends SIGTERM
and returns the exit status; kill() sweeps the whole process group, so nothing
a test started outlives it. A suite that needs more passes env, preexec_fn
(e.g. a lower RLIMIT_NOFILE) or stderr_log (a file that gets every byte of
stderr as it arrives); sanitizer_report() finds an ASan/UBSan/TSan report.

The raw client (connect, Reader, exchange, get) reads exact bytes: one
response at a time, Content-Length framed, duplicate headers rejected, and
every response checked never to contain SECRET (the conformance fixture puts a
file holding it outside the document root). read_to_end() reads until the
server closes and says how: "eof" (an orderly FIN), "reset" or "timeout".
"""
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

SECRET = "TOP-SECRET-c10k-outside-root"
START_LINE = re.compile(r"http://(?:127\.0\.0\.1|\[::1\]|[\w.-]+):(\d+)/")
# What a model's probe prints when this kernel cannot run it (exit 2).
UNSUPPORTED = re.compile(r"unavailable|not supported|lacks")
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                       r"WARNING: ThreadSanitizer")


class Unsupported(Exception):
    """The model's probe said this kernel cannot run it (exit 2, no start line)."""


def eq(a, b, what=""):
    assert a == b, "%s: expected %r, got %r" % (what, b, a)


def det_bytes(n, seed):
    """Deterministic content: a SHA-256 stream, so every run has the same files."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


# ---- server ----------------------------------------------------------------

class _Drain(threading.Thread):
    """Reads one pipe to its end, keeping the last `keep` bytes (and writing
    every byte to `tee`, an open binary file, when given)."""

    def __init__(self, pipe, first_line=None, keep=1 << 20, tee=None):
        super().__init__(daemon=True)
        self.pipe, self.first_line, self.keep, self.tee = pipe, first_line, keep, tee
        self.data = bytearray()
        self.line = None
        self.got_line = threading.Event()

    def run(self):
        if self.first_line:
            self.line = self.pipe.readline().decode(errors="replace")
            self.got_line.set()
        for chunk in iter(lambda: self.pipe.read1(65536), b""):
            if self.tee:
                self.tee.write(chunk)
                self.tee.flush()
            self.data += chunk
            if len(self.data) > self.keep:
                del self.data[:len(self.data) - self.keep]
        if self.tee:
            self.tee.close()
        self.got_line.set()


class Server:
    """A server as a child process. argv is the whole command line; it must
    print a start line naming http://HOST:PORT/ on stdout within timeout.
    Raises Unsupported when the model's probe refuses this kernel, and
    RuntimeError for any other start failure."""

    def __init__(self, argv, timeout=10, env=None, preexec_fn=None, stderr_log=None):
        self.argv = list(argv)
        tee = open(stderr_log, "wb") if stderr_log else None
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, env=env,
                                     preexec_fn=preexec_fn)
        self._out = _Drain(self.proc.stdout, first_line=True)
        self._err = _Drain(self.proc.stderr, tee=tee)
        self._out.start()
        self._err.start()
        self._out.got_line.wait(timeout)
        self.line = self._out.line
        m = START_LINE.search(self.line or "")
        if not m:
            self.kill()
            err = self.stderr()
            if self.proc.returncode == 2 and UNSUPPORTED.search(err):
                raise Unsupported(err)
            raise RuntimeError("no start line from %s (exit %s): %r %s" % (
                " ".join(self.argv), self.proc.returncode, self.line, err))
        self.port = int(m.group(1))
        self.pid = self.proc.pid

    def stderr(self, wait=0.5):
        """What the server wrote to stderr so far (all of it once it has exited)."""
        if self.proc.poll() is not None:
            self._err.join(wait)
        return self._err.data.decode(errors="replace").strip()

    def stdout(self, wait=0.5):
        """What the server wrote to stdout after its start line."""
        if self.proc.poll() is not None:
            self._out.join(wait)
        return self._out.data.decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def sanitizer_report(self):
        """The first lines of a sanitizer report on stderr, or [] if there is none."""
        text = self.stderr()
        m = SANITIZER.search(text)
        if not m:
            return []
        start = max(0, text.rfind("\n", 0, m.start()))
        return ["sanitizer report in server stderr:"] + text[start:start + 1500].splitlines()[:20]

    def stop(self, timeout=15):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stop_clean(self, timeout=15):
        """SIGTERM; asserts exit status 0 and that no child process outlives the server."""
        kids = self.descendants()
        status = self.stop(timeout)
        left = [pid for pid in kids if is_running(pid)]
        self.kill()  # sweeps the process group: nothing outlives the test
        reap(left)
        eq(status, 0, "exit status after SIGTERM")
        eq(left, [], "child processes left behind")

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def descendants(self):
        """Direct children of the server (prefork's workers)."""
        kids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            # A sanitizer runtime forks llvm-symbolizer to name the frames of
            # a report (even a suppressed one); it is the runtime's helper,
            # not a process of the server, and exits when the server does.
            if ppid == self.proc.pid and "(llvm-symbolizer" not in stat:
                kids.append(int(pid))
        return kids

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.kill()


def serve_argv(binary, model_and_flags, root, extra=(), workers=2):
    """`c10k serve` with the suites' defaults: an ephemeral port, short timeouts
    so tests run fast, two workers unless the flags set their own (or
    workers=None: the model sizes itself, as prefork's dynamic pool does)."""
    flags = model_and_flags.split() if isinstance(model_and_flags, str) else list(model_and_flags)
    # Two workers keep runs fast on a shared 2-CPU box; a variant that sets
    # its own worker count keeps it (the last --workers would win).
    more = [] if "--workers" in flags or workers is None else ["--workers", str(workers)]
    return [binary, "serve"] + flags + [
        "--port", "0", "--root", root, "--header-timeout", "1",
        "--keepalive-timeout", "2", "--grace", "5"] + more + list(extra)


def is_running(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reap(pids):
    """Kill processes a server left behind, so one bad model cannot disturb the next."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_to_exit(argv, timeout=5):
    """(exit status, stderr) of a command that should exit by itself, such as
    a server refusing its flags. One still running after timeout (a server
    that started after all) is killed with its whole process group (workers
    included) and reported as status None."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
        return None, err.decode(errors="replace").strip()
    return p.returncode, err.decode(errors="replace").strip()


# ---- raw HTTP client -----------------------------------------------------------

class Resp:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.raw_head = raw_head

    def h(self, name):
        return self.headers.get(name.lower())


def connect(port, timeout=5, host="127.0.0.1", rcvbuf=None):
    """A client socket with TCP_NODELAY; rcvbuf is set before connect, so the
    window is sized for it from the first segment."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return s


def reset_close(s):
    """Close with SO_LINGER 0: the kernel sends a reset instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def send_in_thread(s, data, shut_wr=False):
    """Send data (then shutdown(SHUT_WR) if asked) from a thread, so a server
    that answers before it has read everything never waits on a blocked
    sendall. Returns the started thread; its .error is the send's OSError."""
    def run():
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            t.error = e
    t = threading.Thread(target=run, daemon=True)
    t.error = None
    t.start()
    return t


def read_to_end(s, timeout, buf=None):
    """Read until the peer closes or timeout seconds pass. Returns (bytes, how):
    how is "eof" (an orderly close), "reset" or "timeout"."""
    buf = bytearray() if buf is None else buf
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), "timeout"
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except (socket.timeout, TimeoutError):
            return bytes(buf), "timeout"
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not data:
            return bytes(buf), "eof"
        buf += data


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def read_response(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) (.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            assert k.lower() not in headers, "duplicate header %s" % k
            headers[k.lower()] = v.strip()
        status = int(m.group(1))
        n = 0 if head_request or status == 304 else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        # Whatever a test asked, the file outside the root must never come back.
        assert SECRET.encode() not in head + body, "SECRET leaked in a response"
        return Resp(status, m.group(2), headers, body, head)

    def closed(self, timeout=3):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


def exchange(port, raw, head_request=False, n=1):
    with connect(port) as s:
        s.sendall(raw)
        r = Reader(s)
        out = [r.read_response(head_request) for _ in range(n)]
        return out[0] if n == 1 else out


def get(port, path, extra="", version="1.1", method="GET"):
    raw = "%s %s HTTP/%s\r\nHost: t\r\n%s\r\n" % (method, path, version, extra)
    return exchange(port, raw.encode("latin-1"), head_request=(method == "HEAD"))
