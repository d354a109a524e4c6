"""Reference servers: what the models are measured against in the same run.

A reference is a class with a name, available(bin_path) -> (ok, why) (the
c10k binary's path: a reference built beside it is found from there) and a
Server subclass that starts it. nginx is the reference row of every run. Adding a
reference (the ceiling server of issue 16) is one more class here and its
name in plan.REFERENCES.
"""

import os
import shutil
import signal

from .servers import Server
from .util import cpus_text

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
            self.proc = side.start(self.run.wrap(self.argv), log, first_line=False)
        finally:
            log.close()
        return self._wait_listening(10.0)

    def command(self):
        return ["nginx", "-c", self.side.path(os.path.join(self.run.run_dir, "nginx.conf"))]


class Nginx:
    name = "nginx"
    server_class = NginxServer

    @staticmethod
    def available(bin_path):
        if not shutil.which("nginx"):
            return False, "nginx is not installed (apt-get install nginx-light)"
        return True, ""


REFERENCES = {ref.name: ref for ref in (Nginx,)}
