#!/usr/bin/env python3
"""Conformance suite: every model, black-box, over real sockets.

For each flag set that `c10k models --variants` prints, start
`c10k serve MODEL [flags] --port 0 --root FIXTURE` as a child process, read the
port from its start line, and run every case of every cases_*.py module in
this directory against it. A model joins the suite by being listed; a case
module joins by being here; no other change. Ends with the differential
check: the same raw requests to every variant give byte-identical answers
apart from Date.

A model whose probe says the kernel cannot run it (exit 2, "unavailable" on
stderr, no start line) is skipped visibly; any other start failure fails.
Every response any test reads is checked never to contain the secret file
that lies outside the document root. Each server must exit 0 on SIGTERM and
leave no child process behind.

Usage: run.py --bin build/c10k [--model NAME] [-k SUBSTRING] [-v]
Self-check: run.py --bin tests/conformance/misbehaving_server.py must fail.
"""
import argparse
import glob
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import suite  # noqa: E402
from c10ktest import (Reader, Server, Unsupported, connect, is_running, reap,  # noqa: E402
                      serve_argv)

for _path in sorted(glob.glob(os.path.join(HERE, "cases_*.py"))):
    importlib.import_module(os.path.basename(_path)[:-3])


def differential(binary, variants, root):
    """Every variant answers the same bytes, apart from the Date value."""
    answers = {}
    for v in variants:
        try:
            srv = Server(serve_argv(binary, v, root))
        except Exception:  # noqa: BLE001 - already reported as a skip or a failure
            continue
        try:
            out = []
            for raw in suite.DIFF_REQUESTS:
                with connect(srv.port) as s:
                    s.sendall(raw)
                    r = Reader(s)
                    try:
                        resp = r.read_response(head_request=raw.startswith(b"HEAD"))
                        data = resp.raw_head + b"\r\n\r\n" + resp.body
                    except Exception as e:  # noqa: BLE001 - the failure itself is compared
                        data = repr(e).encode()
                out.append(re.sub(rb"Date: [^\r]*", b"Date: -", data))
            answers[v] = out
        finally:
            srv.stop()
            srv.kill()
    variants = [v for v in variants if v in answers]
    if not variants:
        return []
    first = variants[0]
    bad = []
    for v in variants[1:]:
        for raw, a, b in zip(suite.DIFF_REQUESTS, answers[first], answers[v]):
            if a != b:
                at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                          min(len(a), len(b)))
                lo = max(0, at - 60)
                bad.append("%r vs %r on %r: differ at byte %d (lengths %d, %d):\n    %r\n    %r" % (
                    first, v, raw[:60], at, len(a), len(b), a[lo:at + 60], b[lo:at + 60]))
    return bad


class Skip(Exception):
    pass


class Ctx:
    def skip(self, why):
        raise Skip(why)


def run_variant(args, variant, root, files, tmp, results):
    ctx = Ctx()
    ctx.bin, ctx.variant, ctx.root, ctx.files, ctx.tmp = args.bin, variant, root, files, tmp
    try:
        srv = Server(serve_argv(args.bin, variant, root))
    except Unsupported as e:
        results["skipped"] += 1
        print("SKIP %s: the kernel cannot run this model: %s" % (variant, e), flush=True)
        return
    except Exception as e:  # noqa: BLE001 - a server that does not start is a failure
        results["failed"] += 1
        print("FAIL %s: server did not start: %s" % (variant, e), flush=True)
        return
    ctx.port = srv.port
    try:
        for fn in suite.TESTS:
            if args.k and args.k not in fn.__name__:
                continue
            name = "%s: %s" % (variant, fn.__name__)
            t0 = time.time()
            try:
                fn(ctx)
                results["passed"] += 1
                if args.v:
                    print("ok   %s (%.1fs)" % (name, time.time() - t0), flush=True)
            except Skip as e:
                results["skipped"] += 1
                print("SKIP %s: %s" % (name, e), flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure
                results["failed"] += 1
                print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            if srv.proc.poll() is not None:
                results["failed"] += 1
                print("FAIL %s: server died (status %s): %s" % (
                    name, srv.proc.returncode, srv.stderr()))
                try:
                    srv = Server(serve_argv(args.bin, variant, root))
                except Exception as e:  # noqa: BLE001 - the rest of this variant cannot run
                    results["failed"] += 1
                    print("FAIL %s: could not restart the server: %s" % (variant, e), flush=True)
                    return
                ctx.port = srv.port
    finally:
        kids_before = srv.descendants()
        status = srv.stop()
        leftover = [p for p in kids_before if is_running(p)]
        srv.kill()
    if status != 0:
        results["failed"] += 1
        print("FAIL %s: exit status after SIGTERM: %s" % (variant, status), flush=True)
    elif leftover:
        reap(leftover)
        results["failed"] += 1
        print("FAIL %s: processes left behind: %s" % (variant, leftover), flush=True)
    else:
        results["passed"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model")
    ap.add_argument("-k")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    out = subprocess.run([args.bin, "models", "--variants"], capture_output=True, text=True,
                         check=True)
    variants = [v for v in out.stdout.splitlines() if v.strip()]
    if args.model:
        variants = [v for v in variants if v.split()[0] == args.model]
    if not variants:
        print("conformance: no model matches %r" % args.model)
        return 2
    results = {"passed": 0, "failed": 0, "skipped": 0}
    tmp = tempfile.mkdtemp(prefix="c10k-conf-")
    try:
        root, files = suite.make_fixture(tmp)
        for v in variants:
            t0 = time.time()
            run_variant(args, v, root, files, tmp, results)
            print("-- %s done in %.1fs" % (v, time.time() - t0), flush=True)
        if len(variants) > 1 and not args.k:
            bad = differential(args.bin, variants, root)
            results["failed" if bad else "passed"] += 1
            for b in bad[:20]:
                print("FAIL differential: %s" % b)
            if len(bad) > 20:
                print("FAIL differential: ... and %d more differences" % (len(bad) - 20))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("conformance: %d passed, %d failed, %d skipped" % (
        results["passed"], results["failed"], results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
