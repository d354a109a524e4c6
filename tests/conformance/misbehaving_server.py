#!/usr/bin/python3
"""A deliberately wrong stand-in for c10k, to show the conformance suite can fail.

    /usr/bin/python3 tests/conformance/run.py --bin tests/conformance/misbehaving_server.py

must exit 1. It answers `models --variants` like c10k and serves with Python's
http.server, which lists directories, follows symlinks out of the root, serves
dotfiles, ignores Range and conditionals and accepts most bad requests. Its
variants misbehave in one more way each:
  --odd       a different Server header (the differential check must see it)
  --leak      leaves a child process behind and drops in-flight transfers on SIGTERM
  --nokernel  exits 2 like a model whose probe fails (must be a visible skip)
  --crash     exits 2 without the probe's wording (must be a failure)
"""
import functools
import os
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

a = sys.argv[1:]
if a[:2] == ["models", "--variants"]:
    print("fake\nfake --odd\nfake --leak\nfake --nokernel\nfake --crash")
    sys.exit(0)
root = a[a.index("--root") + 1]
if "--nokernel" in a:
    sys.stderr.write("c10k: fake: io_uring is unavailable: io_uring_setup: Operation not permitted\n")
    sys.exit(2)
if "--crash" in a:
    sys.stderr.write("c10k serve: fake: pretend crash before the start line\n")
    sys.exit(2)


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "odd/1" if "--odd" in a else "fake/1"

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
print("c10k: serving %s at http://127.0.0.1:%d/ with fake ()" % (root, srv.server_address[1]),
      flush=True)
if "--leak" in a:
    subprocess.Popen(["sleep", "20"])
    signal.signal(signal.SIGTERM, lambda *x: os._exit(0))
else:
    signal.signal(signal.SIGTERM, lambda *x: threading.Thread(target=srv.shutdown).start())
srv.serve_forever()
