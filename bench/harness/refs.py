"""Reference servers: what the models are measured against in the same run.

A reference is a class with
    name                     its row in results.json
    always                   True: in every run, its cells failed when it
                             cannot run (nginx); False: left out of a run it
                             cannot join (the ceiling, CONTRACTS.md 2)
    available(bin_path)      (ok, why); bin_path is the c10k binary's path,
                             and a reference built beside it is found there
    note(bin_path)           a line to print before the run, or None
    server(run, spec, port, sc, side)
                             the Server that serves scenario sc in one cell,
                             where side (net.py) says
    serves(sc)               None, or why it has no cell in scenario sc
    setup_seconds(sc)        time it needs before its first cell of sc
nginx is the reference row of every run; the ceiling (build/c10k-ceiling,
issue 16) is the other.
"""

import functools
import os
import shutil
import signal
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
# of the run directory. open_file_cache as c10k's --open-file-cache: off
# unless c10k bench --open-file-cache N turns it on for every server.
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
    {open_file_cache}
    client_body_temp_path {rundir}/tmp/body;
    proxy_temp_path {rundir}/tmp/proxy;
    fastcgi_temp_path {rundir}/tmp/fastcgi;
    uwsgi_temp_path {rundir}/tmp/uwsgi;
    scgi_temp_path {rundir}/tmp/scgi;
    server {{
        listen {bind}:{port} backlog=4096;
        root {root};
    }}
}}
"""

TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")


# nginx drops an entry nobody asked for in `inactive`; c10k's cache has no
# such clock (an entry leaves by LRU or revalidation only). An hour, longer
# than any cell, makes the two caches behave alike.
OPEN_FILE_CACHE_INACTIVE_S = 3600


def nginx_open_file_cache(cache):
    """The directives equivalent to c10k's --open-file-cache N
    --open-file-cache-valid S (cache: {"max": N, "valid_s": S} or None).
    Both caches are per worker, keep descriptors and stats, and cache no
    errors (open_file_cache_errors off, nginx's default)."""
    if not cache:
        return "open_file_cache off;"
    return "open_file_cache max=%d inactive=%ds; open_file_cache_valid %ds;" % (
        cache["max"], OPEN_FILE_CACHE_INACTIVE_S, cache["valid_s"])


def nginx_conf(run_dir, docroot, port, workers, nofile, keepalive, header, as_root,
               bind="127.0.0.1", open_file_cache=None):
    return NGINX_CONF.format(
        user="user root;\n" if as_root else "", workers=workers, nofile=nofile,
        worker_connections=max(1024, nofile - 64), rundir=run_dir, keepalive=keepalive,
        header=header, port=port, root=docroot, bind=bind,
        open_file_cache=nginx_open_file_cache(open_file_cache))


class NginxServer(Server):
    """nginx from the configuration the harness writes, under taskset."""

    stop_signal = signal.SIGQUIT  # graceful: finish in-flight requests

    def start(self):
        r, p, side = self.run, self.run.plan, self.side
        for d in TEMP_DIRS:
            os.makedirs(os.path.join(r.run_dir, "tmp", d), exist_ok=True)
        # paths as the server host sees them (the same, unless it is remote)
        run_dir, conf = side.path(r.run_dir), side.path(os.path.join(r.run_dir, "nginx.conf"))
        # the local run directory keeps a copy of the configuration either way
        text = nginx_conf(run_dir, side.path(r.docroot), self.port, p.workers, r.nofile,
                          p.keepalive_timeout, p.header_timeout,
                          r.server_euid() == 0, side.bind, p.open_file_cache)
        with open(os.path.join(r.run_dir, "nginx.conf"), "w") as f:
            f.write(text)
        if side.remote:
            side.write(conf, text)
        self.argv = ["taskset", "-c", cpus_text(p.server_cpus), "nginx", "-p", run_dir,
                     "-e", os.path.join(run_dir, "nginx-error.log"), "-c", conf]
        log = self._open_log()
        try:
            self.proc = side.start(self.launch_argv(), log, first_line=False)
        finally:
            log.close()
        return self._wait_listening(10.0)

    def command(self):
        return ["nginx", "-c", self.side.path(os.path.join(self.run.run_dir, "nginx.conf"))]


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
    def server(run, spec, port, sc, side):
        return NginxServer(run, spec, port, side)

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


def ceiling_argv(path, backend, file_path, port, workers, cpus=None, bind=None):
    argv = [path, "--backend", backend, "--file", file_path, "--port", str(port),
            "--workers", str(workers)]
    if bind and bind != "127.0.0.1":  # --netns: the server's end of the veth
        argv += ["--bind", bind]
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

    def __init__(self, run, spec, port, side, scenario, backend):
        super().__init__(run, spec, port, side)
        self.scenario, self.backend = scenario, backend
        self.log_path = os.path.join(run.run_dir, "raw", "server-ceiling-%s.log" % backend)

    def build_argv(self):
        from .docroot import file_name  # docroot imports plan, which imports this module
        r, p = self.run, self.run.plan
        return ceiling_argv(ceiling_path(r.binary.path), self.backend,
                            os.path.join(r.docroot, file_name(self.scenario["size"])),
                            self.port, p.workers, p.server_cpus, self.side.bind)

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
    def server(run, spec, port, sc, side):
        return CeilingServer(run, spec, port, side, sc, run.ceiling.backend(sc))

    @staticmethod
    def serves(sc):
        """None, or why the ceiling has no cell in scenario sc."""
        if sc.get("cold"):
            return ("no cold-cache cells: it answers every request from memory, so no disk "
                    "is ever involved")
        if sc.get("kind", "closed") != "closed":
            return ("no open-loop steps: it is the closed-loop limit, measured in the peak "
                    "cells")
        if sc["size"] > CEILING_MAX_SIZE:
            return ("no cell for files over %d MiB (it holds the file in memory twice per "
                    "server, and its probe runs two servers)" % (CEILING_MAX_SIZE >> 20))
        return None

    @staticmethod
    def setup_seconds(sc):
        from .ceiling import probe_seconds  # ceiling imports this module
        return probe_seconds(sc)


REFERENCES = {ref.name: ref for ref in (Nginx, Ceiling)}
