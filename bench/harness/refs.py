"""Reference servers: what the models are measured against in the same run.

A reference is a class with
    name                     its row in results.json
    always                   True: in every run, its cells failed when it
                             cannot run (nginx); False: left out of a run it
                             cannot join (the ceiling, CONTRACTS.md 2)
    available(bin_path)      (ok, why); bin_path is the c10k binary's path,
                             and a reference built beside it is found there
    note(bin_path)           a line to print before the run, or None
    server(run, spec, port, sc)
                             the Server that serves scenario sc in one cell
    serves(sc)               None, or why it has no cell in scenario sc
    setup_seconds(sc)        time it needs before its first cell of sc
nginx is the reference row of every run; the ceiling (build/c10k-ceiling,
issue 16) is the other.
"""

import functools
import os
import shutil
import signal
import subprocess
import tempfile

from .servers import ModelServer, Server
from .util import cpus_text
from .variants import start_once

NGINX_CONF = """\
# nginx reference configuration written by c10k bench: the same settings the
# c10k models get (workers, keep-alive and header timeouts, unlimited requests
# per connection), sendfile on, access log off, symlinks refused below the
# root. "from=$document_root" checks components below the root only, as the
# c10k handler does (openat2 RESOLVE_BENEATH from an open root): plain "on"
# also re-opens every directory above the root on each request (one openat
# and one close per component), so nginx's cost would grow with the depth
# of the run directory. No open_file_cache: c10k opens the file per request too.
{user}worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {rundir}/nginx.pid;
error_log {rundir}/nginx-error.log warn;
events {{
    worker_connections {worker_connections};
    multi_accept off;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    server_tokens off;
    default_type application/octet-stream;
    keepalive_timeout {keepalive}s;
    keepalive_requests 1000000000;
    client_header_timeout {header}s;
    disable_symlinks on from=$document_root;
    client_body_temp_path {rundir}/tmp/body;
    proxy_temp_path {rundir}/tmp/proxy;
    fastcgi_temp_path {rundir}/tmp/fastcgi;
    uwsgi_temp_path {rundir}/tmp/uwsgi;
    scgi_temp_path {rundir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""

TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_conf(run_dir, docroot, port, workers, nofile, keepalive, header, as_root):
    return NGINX_CONF.format(
        user="user root;\n" if as_root else "", workers=workers, nofile=nofile,
        worker_connections=max(1024, nofile - 64), rundir=run_dir, keepalive=keepalive,
        header=header, port=port, root=docroot)


class NginxServer(Server):
    """nginx from the configuration the harness writes, under taskset."""

    stop_signal = signal.SIGQUIT  # graceful: finish in-flight requests

    def start(self):
        r, p = self.run, self.run.plan
        for d in TEMP_DIRS:
            os.makedirs(os.path.join(r.run_dir, "tmp", d), exist_ok=True)
        conf = os.path.join(r.run_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(r.run_dir, r.docroot, self.port, p.workers, r.nofile,
                               p.keepalive_timeout, p.header_timeout, os.geteuid() == 0))
        self.argv = ["taskset", "-c", cpus_text(p.server_cpus), "nginx", "-p", r.run_dir,
                     "-e", os.path.join(r.run_dir, "nginx-error.log"), "-c", conf]
        log = self._open_log()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self._wait_listening(10.0)

    def command(self):
        return ["nginx", "-c", os.path.join(self.run.run_dir, "nginx.conf")]


class Nginx:
    name = "nginx"
    always = True

    @staticmethod
    def available(bin_path):
        if not shutil.which("nginx"):
            return False, "nginx is not installed (apt-get install nginx-light)"
        return True, ""

    @staticmethod
    def note(bin_path):
        return None

    @staticmethod
    def server(run, spec, port, sc):
        return NginxServer(run, spec, port)

    @staticmethod
    def serves(sc):
        return None

    @staticmethod
    def setup_seconds(sc):
        return 0.0


# --- the ceiling ---------------------------------------------------------------------

CEILING_BIN = "c10k-ceiling"
CEILING_BACKENDS = ("uring", "epoll")
# c10k-ceiling holds the file in memory twice (one copy after each of its two
# heads), and its probe runs two at once: four copies. Above this size a
# scenario has no ceiling cell, rather than a ceiling that exhausts memory.
CEILING_MAX_SIZE = 256 * 1024 * 1024


def ceiling_path(bin_path):
    """build/c10k-ceiling beside the c10k binary (a symlink is not followed:
    a directory holding a c10k wrapper and a c10k-ceiling link works)."""
    return os.path.join(os.path.dirname(os.path.abspath(bin_path)), CEILING_BIN)


def ceiling_argv(path, backend, file_path, port, workers, cpus=None):
    argv = [path, "--backend", backend, "--file", file_path, "--port", str(port),
            "--workers", str(workers)]
    return argv + (["--cpus", cpus_text(cpus)] if cpus else [])


@functools.lru_cache(maxsize=None)
def ceiling_backends(bin_path):
    """(backends that start here, {backend: why not}) for the c10k-ceiling
    beside bin_path: each backend is started once on a small file (io_uring
    may be missing from the kernel, or forbidden by a sandbox: then
    c10k-ceiling --backend uring says so and exits 2)."""
    path = ceiling_path(bin_path)
    if not os.access(path, os.X_OK):
        why = "%s is missing (make builds it beside c10k)" % path
        return (), {b: why for b in CEILING_BACKENDS}
    with tempfile.TemporaryDirectory(prefix="c10k-ceiling-") as d:
        f = os.path.join(d, "probe.bin")
        with open(f, "wb") as out:
            out.write(b"c10k ceiling probe\n")
        why = {b: start_once(ceiling_argv(path, b, f, 0, 1)) for b in CEILING_BACKENDS}
    return (tuple(b for b in CEILING_BACKENDS if why[b] is None),
            {b: w for b, w in why.items() if w is not None})


class CeilingServer(ModelServer):
    """build/c10k-ceiling on one backend, answering every request with the
    scenario's file, precomputed; pinned and sized as nginx is (the server
    CPUs, the bench's worker count). Its start line names the port."""

    def __init__(self, run, spec, port, scenario, backend):
        super().__init__(run, spec, port)
        self.scenario, self.backend = scenario, backend
        self.log_path = os.path.join(run.run_dir, "raw", "server-ceiling-%s.log" % backend)

    def build_argv(self):
        from .docroot import file_name  # docroot imports plan, which imports this module
        r, p = self.run, self.run.plan
        return ceiling_argv(ceiling_path(r.binary.path), self.backend,
                            os.path.join(r.docroot, file_name(self.scenario["size"])),
                            self.port, p.workers, p.server_cpus)

    def verify_sizes(self, sizes):
        return [self.scenario["size"]]


class Ceiling:
    """The faster of c10k-ceiling's two backends, chosen per scenario by a
    probe before its first cell (harness/ceiling.py)."""

    name = "ceiling"
    always = False

    @staticmethod
    def available(bin_path):
        backends, why = ceiling_backends(bin_path)
        if backends:
            return True, ""
        reasons = sorted(set(why.values()))
        if len(reasons) == 1:
            return False, reasons[0]
        return False, "no backend starts: " + "; ".join("%s: %s" % kv for kv in sorted(why.items()))

    @staticmethod
    def note(bin_path):
        backends, why = ceiling_backends(bin_path)
        if len(backends) != 1:
            return None
        other = next(b for b in CEILING_BACKENDS if b not in backends)
        return ("%s backend cannot run (%s): the ceiling runs on %s only"
                % (other, why[other], backends[0]))

    @staticmethod
    def server(run, spec, port, sc):
        return CeilingServer(run, spec, port, sc, run.ceiling.backend(sc))

    @staticmethod
    def serves(sc):
        """None, or why the ceiling has no cell in scenario sc."""
        if sc["size"] > CEILING_MAX_SIZE:
            return ("no cell for files over %d MiB (it holds the file in memory twice per "
                    "server, and its probe runs two servers)" % (CEILING_MAX_SIZE >> 20))
        return None

    @staticmethod
    def setup_seconds(sc):
        from .ceiling import probe_seconds  # ceiling imports this module
        return probe_seconds(sc)


REFERENCES = {ref.name: ref for ref in (Nginx, Ceiling)}
