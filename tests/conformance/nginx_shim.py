#!/usr/bin/python3
"""nginx dressed as c10k, to check the conformance cases against a reference.

    /usr/bin/python3 tests/conformance/run.py --bin tests/conformance/nginx_shim.py -k CASE,...

(-k: the core cases check c10k's own headers, so run only the cases meant
for any server.)

Not part of CI: it shows that a case nginx should pass does pass, and its
misconfigured variants show that the lifecycle cases can fail:
  nginx                      nginx as the harness configures it, plus the flags below
  nginx --no-lingering       lingering_close off: closes at once after a refusal
  nginx --fixed-lingering    ignores --lingering-timeout/--lingering-time (keeps 5 s/30 s)

What to expect from the lifecycle cases (cases_lifecycle.py): nginx passes
all but header_timeout_408_then_orderly_close, which it cannot: on
client_header_timeout nginx closes without sending a 408. The two other
variants fail lingering_timers. refused_upload_keeps_earlier_response passes
even with lingering_close off, because nginx reads a refused request body
to its end (or the lingering timeout) before it closes.

    run.py --bin tests/conformance/nginx_shim.py -k refused_upload,header_timeout_408_then,\
        reset_client,lingering_timers,pipeline_2300,pipeline_behind,pipeline_300,slow_readers

It answers `models --variants`, `models --per-connection` and `serve --help`
like c10k, and `serve nginx` maps the flags the suite passes (--port 0 gets
a free port, --root, --workers, --header-timeout, --keepalive-timeout,
--max-requests, --access-log, --lingering-timeout, --lingering-time) onto an
nginx.conf in a temporary prefix, runs `nginx -g 'daemon off;'`, prints
c10k's start line once the port accepts, and on SIGTERM stops nginx
gracefully (SIGQUIT) and exits 0. Requests with a body are refused at the
head, as c10k does (client_max_body_size 1k: a 413).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
VARIANTS = ["nginx", "nginx --no-lingering", "nginx --fixed-lingering"]
HELP = """usage: c10k serve MODEL [flags]   (nginx_shim: nginx dressed as c10k)
  --port N --root DIR --workers N --header-timeout S --keepalive-timeout S
  --max-requests N --access-log FILE --grace S
  --lingering-timeout S      read and discard for at most S s between reads (5)
  --lingering-time S         ... and at most S s in all (30)
"""


def flag(args, name, default):
    """The last value given for --name (the suite's later flags win, as in c10k)."""
    value = default
    for i, a in enumerate(args[:-1]):
        if a == name:
            value = args[i + 1]
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(args, prefix, port):
    secs = lambda name, default: "%gs" % float(flag(args, name, default))  # noqa: E731
    lingering = "lingering_close off;" if "--no-lingering" in args else ""
    if "--fixed-lingering" not in args:
        lingering += "lingering_timeout %s; lingering_time %s;" % (
            secs("--lingering-timeout", "5"), secs("--lingering-time", "30"))
    log = flag(args, "--access-log", None)
    requests = int(flag(args, "--max-requests", "0")) or 1000000000
    return """
worker_processes %s;
%s
pid %s/nginx.pid;
error_log %s/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
    types { text/html html; text/plain txt; application/octet-stream bin; }
    default_type application/octet-stream;
    access_log %s;
    sendfile on;
    keepalive_timeout %s;
    keepalive_requests %d;
    client_header_timeout %s;
    client_max_body_size 1k;
    %s
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    server {
        listen 127.0.0.1:%d;
        root %s;
    }
}
""" % (flag(args, "--workers", "2"), "user root root;" if os.geteuid() == 0 else "",
       prefix, prefix, log or "off", secs("--keepalive-timeout", "5"), requests,
       secs("--header-timeout", "10"), lingering, prefix, prefix, prefix, prefix, prefix, port,
       os.path.abspath(flag(args, "--root", ".")))


def serve(args):
    prefix = tempfile.mkdtemp(prefix="c10k-nginx-")
    port = int(flag(args, "--port", "8080")) or free_port()
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(config(args, prefix, port))
    nginx = subprocess.Popen([NGINX, "-p", prefix, "-c", "nginx.conf", "-g", "daemon off;"])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(nginx.send_signal(signal.SIGQUIT)))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(nginx.send_signal(signal.SIGQUIT)))
    try:
        for _ in range(100):
            if nginx.poll() is not None:
                sys.stderr.write("nginx_shim: nginx exited %s\n" % nginx.returncode)
                return 2
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        print("c10k: serving %s at http://127.0.0.1:%d/ with nginx (workers=%s)" % (
            flag(args, "--root", "."), port, flag(args, "--workers", "2")), flush=True)
        while nginx.poll() is None:
            try:
                nginx.wait()
            except InterruptedError:
                pass
        return 0 if stopping else 1
    finally:
        if nginx.poll() is None:
            nginx.kill()
            nginx.wait()
        shutil.rmtree(prefix, ignore_errors=True)


def main(args):
    if args[:2] == ["models", "--variants"]:
        print("\n".join(VARIANTS))
        return 0
    if args[:1] == ["models"]:
        return 0  # --per-connection: none
    if args[:1] == ["serve"] and ("--help" in args or len(args) < 2):
        print(HELP)
        return 0
    if args[:2] == ["serve", "nginx"]:
        return serve(args[2:])
    sys.stderr.write("nginx_shim: unsupported: %s\n" % " ".join(args))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
