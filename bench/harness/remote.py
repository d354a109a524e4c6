"""Other hosts over ssh: `c10k bench --server-host` and `--client-host`.

Each remote host gets one ssh session for the whole run, running `c10k
agent` there (bench/harness/agent.py): requests go down the session's stdin
as JSON lines, replies come back on its stdout. Through it the harness
writes files there, starts and stops processes, measures them with the
harness's own counters, and runs load generators.

The session is the remote side's lifeline: when the harness closes it, is
interrupted or dies, the agent reads EOF and kills everything it started,
so a remote host is never left running a server or a generator.

ssh runs with BatchMode (never a password prompt: a key must be set up, see
README.md "A second host"), and with the file --ssh-config names as its -F
when given. Host specs are [user@]HOST, with HOST a name ssh knows (an
alias in the ssh config is fine) or an address.

Several client hosts start together behind a barrier (start_together):
every agent is armed first (it checks that the generator exists and keeps
its command line), and only when all have answered does each get "go",
which starts the generator at once: the start times differ by the time one
message takes to reach each host, not by the time to set up each one.
"""

import base64
import json
import os
import re
import selectors
import shlex
import subprocess
import threading
import time

from .agent import PROTOCOL

HOST_RE = re.compile(r"^(?:([A-Za-z0-9._][A-Za-z0-9._-]*)@)?([A-Za-z0-9_.:%\[\]-]+)$")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10"]


class RemoteError(Exception):
    """ssh or the agent failed; the message names the host and the cause."""


def parse_host(spec, flag="--server-host"):
    """'[user@]HOST' -> (user or None, host). A host may not start with '-'
    (ssh would read it as an option)."""
    m = HOST_RE.match(spec or "")
    if not m or m.group(2).startswith("-"):
        raise ValueError("%s: '%s' is not [user@]HOST" % (flag, spec))
    return m.group(1), m.group(2)


def parse_hosts(text, flag="--client-host"):
    """'a,b,user@c' -> ['a', 'b', 'user@c'], each checked; no duplicates."""
    hosts = [h.strip() for h in (text or "").split(",")]
    if not hosts or any(not h for h in hosts):
        raise ValueError("%s: '%s': want HOST[,HOST...]" % (flag, text))
    for h in hosts:
        parse_host(h, flag)
    if len(set(hosts)) != len(hosts):
        raise ValueError("%s: '%s' names a host twice" % (flag, text))
    return hosts


class SshHost:
    """How to reach one host: the ssh command line, and one-off commands."""

    def __init__(self, spec, ssh_config=None):
        parse_host(spec)
        self.spec = spec
        self.ssh_config = ssh_config

    def ssh_argv(self, command_words):
        argv = ["ssh"] + (["-F", self.ssh_config] if self.ssh_config else []) + SSH_OPTIONS
        return argv + [self.spec, "--", shlex.join(command_words)]

    def run(self, command_words, timeout=60, input_bytes=None):
        """(exit status, stdout, stderr) of one command there."""
        try:
            p = subprocess.run(self.ssh_argv(command_words), input=input_bytes,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=None if input_bytes is not None else subprocess.DEVNULL,
                               timeout=timeout)
        except FileNotFoundError:
            raise RemoteError("ssh is not installed here (apt-get install openssh-client)") \
                from None
        except subprocess.TimeoutExpired:
            raise RemoteError("ssh %s: no answer within %d s" % (self.spec, timeout)) from None
        return (p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))


def ssh_failure(spec, rc, err, c10k):
    """A one-line reason from what a failed ssh session printed."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "exit status %d" % rc
    if rc == 255:
        return "ssh %s: %s" % (spec, last)
    if rc == 127 or "not found" in last:
        return ("ssh %s: %s is not installed there (`make install PREFIX=...` on that host, "
                "or --remote-c10k PATH): %s" % (spec, c10k, last))
    return "ssh %s: the agent exited (status %d): %s" % (spec, rc, last)


class Agent:
    """One `c10k agent` on one host, for the whole run.

    call() sends a request and waits for its reply; send() and recv() split
    that in two, so requests to several hosts can be in flight at once."""

    def __init__(self, spec, c10k="c10k", ssh_config=None, log_path=None, timeout=30):
        self.host = SshHost(spec, ssh_config)
        self.spec, self.c10k = spec, c10k
        self.log_path = log_path
        self.next_id = 0
        self.proc = None
        self.info = None
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        argv = self.host.ssh_argv([c10k, "agent"])
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log if log_path else subprocess.PIPE,
                                         start_new_session=True)
        except FileNotFoundError:
            raise RemoteError("ssh is not installed here (apt-get install openssh-client)") \
                from None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.info = self.call("hello", reply_within=timeout, protocol=PROTOCOL)

    # -- the session --

    def _failure(self):
        """Why the session ended: ssh's or the agent's last words."""
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return "ssh %s: the session stopped answering" % self.spec
        if self.log_path:
            with open(self.log_path, "rb") as f:
                err = f.read()[-4000:].decode(errors="replace")
        else:
            err = self.proc.stderr.read().decode(errors="replace")
        return ssh_failure(self.spec, self.proc.returncode, err, self.c10k)

    def send(self, op, **args):
        self.next_id += 1
        line = json.dumps({"id": self.next_id, "op": op, "args": args}) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise RemoteError(self._failure()) from None
        return self.next_id

    def recv(self, rid, timeout):
        """The reply to request rid: its result, or RemoteError."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise RemoteError("ssh %s: the agent said something that is not a reply: "
                                      "%r" % (self.spec, line[:200])) from None
                if msg.get("id") != rid:
                    continue  # an answer to a request given up on earlier
                if not msg.get("ok"):
                    raise RemoteError("%s: %s" % (self.spec, msg.get("error")))
                return msg.get("result")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteError("%s: no answer within %.0f s" % (self.spec, timeout))
            if not self.sel.select(min(left, 0.5)):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise RemoteError(self._failure())
            self.buf += chunk

    def call(self, op, reply_within=60, **args):
        """op's result; args are op's own (an op may take a `timeout`)."""
        return self.recv(self.send(op, **args), reply_within)

    def close(self):
        """Say goodbye and end the session (the agent then stops whatever
        still runs there); kill ssh if it does not end by itself."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.call("bye", reply_within=10)
            except RemoteError:
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sel.close()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        if self.log_path:
            self._log.close()
        self.proc = None

    def kill(self):
        """At once, without goodbye (Ctrl-C): closing ssh ends the agent."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()

    # -- conveniences --

    def write(self, path, data):
        """A file under the agent's work directory (str or bytes)."""
        if isinstance(data, str):
            data = data.encode()
        return self.call("write", path=path, data=base64.b64encode(data).decode())["path"]

    def read(self, path, max_bytes=16 << 20):
        """bytes of a file under the agent's work directory, or None."""
        data = self.call("read", path=path, max_bytes=max_bytes)
        return None if data is None else base64.b64decode(data)


def open_agents(specs, c10k, ssh_config, log_dir):
    """An Agent per host, opened in parallel (each ssh handshake takes a
    while). On any failure the ones already open are closed again."""
    agents, errors = [None] * len(specs), [None] * len(specs)

    def one(i, spec):
        log = os.path.join(log_dir, "agent-%s.log" % re.sub(r"[^A-Za-z0-9._-]", "_", spec)) \
            if log_dir else None
        try:
            agents[i] = Agent(spec, c10k, ssh_config, log)
        except RemoteError as e:
            errors[i] = str(e)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [e for e in errors if e]
    if failed:
        for a in agents:
            if a is not None:
                a.close()
        raise RemoteError("; ".join(failed))
    return agents


def start_together(jobs, timeout):
    """Run several generators at once behind a barrier.

    jobs: [(agent, dict(cid=..., argv=[...], env=..., files=[...], log=...,
    timeout=...))]. Every agent is armed and has answered before any gets
    "go"; then all "go" messages leave back to back. Returns each job's
    result (as Agent.op_go: returncode, cpu_s, files, started_at), in
    order. Raises RemoteError if any cannot be armed or run; those already
    started are left to finish (their agents are closed by the caller)."""
    armed = [(a, a.send("arm", **spec)) for a, spec in jobs]
    for a, rid in armed:
        a.recv(rid, 30)
    sent = [(a, a.send("go", cid=spec["cid"])) for a, spec in jobs]
    results, errors = [], []
    for a, rid in sent:
        try:
            results.append(a.recv(rid, timeout))
        except RemoteError as e:
            errors.append(str(e))
            results.append(None)
    if errors:
        raise RemoteError("; ".join(errors))
    return results
