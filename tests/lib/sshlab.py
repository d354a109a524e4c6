"""sshlab - other hosts on this machine, reachable over real ssh.

    from sshlab import SshLab, skip_reason

    with SshLab(remotes=2) as lab:
        lab.here                 # the "local" namespace the harness runs in
        lab.hosts                # ['c10k-remote0', 'c10k-remote1'] (ssh aliases)
        lab.ssh_config           # ssh -F FILE that knows them
        lab.run_here(argv)       # subprocess.run(argv) inside lab.here
        lab.addr(i)              # remote i's address (198.18.i.2); here is 198.18.i.1

A Lab of network namespaces (bench/harness/netns.py): one for "here" and one
per remote, each remote joined to "here" by its own veth pair; "here"
forwards between them, so the remotes reach each other as well. In every
remote namespace runs an sshd (Debian's openssh-server) of its own, on port
22 of that namespace only, with a host key and a client key generated for
this lab and authorised for the current user. Nothing touches the machine's
own sshd, its keys or ~/.ssh: the client side is an ssh config file in the
lab's temporary directory.

Everything (sshd, whatever it started, the namespaces, the keys) is gone
when the `with` block ends, however it ends.

skip_reason() says why the lab cannot run here (not root, no iproute2, no
sshd), or None.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))
from harness import netns  # noqa: E402

SSHD = "/usr/sbin/sshd"


def skip_reason():
    ok, why = netns.available()
    if not ok:
        return why
    if not os.access(SSHD, os.X_OK):
        return "no %s (apt-get install openssh-server, or make deps)" % SSHD
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return "no %s (apt-get install openssh-client, or make deps)" % tool
    return None


SSHD_CONFIG = """\
ListenAddress {addr}
Port 22
HostKey {dir}/host_ed25519
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
MaxStartups 100
"""

SSH_HOST = """\
Host {alias}
    HostName {addr}
    Port 22
    User {user}
    IdentityFile {dir}/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {dir}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    LogLevel ERROR
"""


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c10k-sshlab",
                    "-f", path], check=True, stdin=subprocess.DEVNULL)


class SshLab:
    def __init__(self, remotes=1):
        self.n = remotes
        self.lab = None
        self.dir = None
        self.sshds = []
        self.hosts = []

    def addr(self, i):
        return self.links[i].b_addr

    def local_addr(self, i):
        return self.links[i].a_addr

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="c10k-sshlab-")
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _build(self):
        self.lab = netns.Lab().__enter__()
        self.here = self.lab.add_ns("here")
        self.links, self.remote_ns = [], []
        for i in range(self.n):
            ns = self.lab.add_ns("rem%d" % i)
            self.remote_ns.append(ns)
            self.links.append(self.lab.connect(self.here, ns))
        # "here" routes between the remotes, so they reach each other too
        # (a server on one, the load on another)
        netns.ip(None, "netns", "exec", self.here, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns, link in zip(self.remote_ns, self.links):
            netns.ip(ns, "route", "add", "default", "via", link.a_addr)
        _keygen(os.path.join(self.dir, "host_ed25519"))
        _keygen(os.path.join(self.dir, "id_ed25519"))
        shutil.copy(os.path.join(self.dir, "id_ed25519.pub"),
                    os.path.join(self.dir, "authorized_keys"))
        with open(os.path.join(self.dir, "host_ed25519.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.ssh_config = os.path.join(self.dir, "ssh_config")
        with open(self.ssh_config, "w") as cfg, \
                open(os.path.join(self.dir, "known_hosts"), "w") as known:
            for i in range(self.n):
                alias = "c10k-remote%d" % i
                self.hosts.append(alias)
                cfg.write(SSH_HOST.format(alias=alias, addr=self.addr(i), user=user,
                                          dir=self.dir))
                known.write("%s %s\n" % (self.addr(i), host_key))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        for i in range(self.n):
            self._start_sshd(i)
        for i in range(self.n):
            self._wait_port(i)
        # one real login per host, in parallel: a login runs the user's
        # shell start-up files, which can take seconds
        errors = [None] * self.n

        def check(i):
            try:
                self._wait_ssh(i)
            except RuntimeError as e:
                errors[i] = e

        threads = [threading.Thread(target=check, args=(i,)) for i in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errors:
            if e:
                raise e

    def _start_sshd(self, i):
        conf = os.path.join(self.dir, "sshd_config%d" % i)
        with open(conf, "w") as f:
            f.write(SSHD_CONFIG.format(addr=self.addr(i), dir=self.dir))
        log = open(os.path.join(self.dir, "sshd%d.log" % i), "wb")
        self.sshds.append(subprocess.Popen(
            netns.exec_prefix(self.remote_ns[i]) + [SSHD, "-D", "-e", "-f", conf],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True))
        log.close()

    def _wait_port(self, i, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sshds[i].poll() is not None:
                raise RuntimeError("sshd %d exited: %s" % (i, self.sshd_log(i)))
            try:
                netns.in_netns(self.here, socket.create_connection, (self.addr(i), 22), 1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd %d does not listen: %s" % (i, self.sshd_log(i)))

    def _wait_ssh(self, i, timeout=30):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.sshds[i].poll() is not None:
                raise RuntimeError("sshd %d exited: %s" % (i, self.sshd_log(i)))
            p = self.run_here(["ssh", "-F", self.ssh_config, "-o", "BatchMode=yes",
                               "-o", "ConnectTimeout=2", self.hosts[i], "true"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=15)
            if p.returncode == 0:
                return
            last = p.stdout.strip()
            time.sleep(0.2)
        raise RuntimeError("ssh to %s never worked: %s | sshd: %s"
                           % (self.hosts[i], last, self.sshd_log(i)))

    def sshd_log(self, i):
        try:
            with open(os.path.join(self.dir, "sshd%d.log" % i)) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def here_argv(self, argv):
        return netns.exec_prefix(self.here) + list(argv)

    def run_here(self, argv, **kw):
        return subprocess.run(self.here_argv(argv), **kw)

    def popen_here(self, argv, **kw):
        return subprocess.Popen(self.here_argv(argv), **kw)

    def close(self):
        for p in self.sshds:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.sshds = []
        if self.lab is not None:
            self.lab.close()  # kills whatever else runs in the namespaces
            self.lab = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
