#!/usr/bin/env python3
"""Conformance suite: every model, black-box, over real sockets.

For each flag set that `c10k models --variants` prints, start
`c10k serve MODEL [flags] --port 0 --root FIXTURE` as a child process, read the
port from its start line, and run every case of every cases_*.py module in
this directory against it. A model joins the suite by being listed; a case
module joins by being here; no other change. Ends with the differential
check: the same raw requests to every variant give byte-identical answers
apart from Date, and the same close behaviour after them.

A model whose probe says the kernel cannot run it (exit 2, "unavailable" on
stderr, no start line) is skipped visibly; any other start failure fails.
Every response any test reads is checked never to contain the secret file
that lies outside the document root. Each server must exit 0 on SIGTERM and
leave no child process behind.

The differential also compares what each server does with the connection
right after each answer: keeps it open, closes it (EOF) or resets it.
Variants run --jobs at a time (default 2), each in its own process; each
variant's output is printed as one block, in the listed order.

Usage: run.py --bin build/c10k [--model NAME] [-k SUBSTRING[,...]] [-v] [--jobs N]
Self-check: run.py --bin tests/conformance/misbehaving_server.py must fail.
"""
import argparse
import glob
import importlib
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import suite  # noqa: E402
from c10ktest import (Reader, Server, Unsupported, connect, is_running, read_to_end,  # noqa: E402
                      reap, serve_argv)

for _path in sorted(glob.glob(os.path.join(HERE, "cases_*.py"))):
    importlib.import_module(os.path.basename(_path)[:-3])


CLOSE_WAIT = 0.5  # seconds to see whether the server closes after an answer


def after_answer(s, extra):
    """What the server did with the connection within CLOSE_WAIT of its answer."""
    data, how = read_to_end(s, CLOSE_WAIT)
    said = {"timeout": "kept it open", "eof": "closed it (EOF)", "reset": "reset it"}[how]
    if extra or data:
        said = "sent %d more bytes and %s" % (len(extra) + len(data), said)
    return said


def diff_answer(port, raw):
    """One request on a fresh connection: (the answer with Date blanked, what
    the server did with the connection after it)."""
    with connect(port) as s:
        try:
            s.sendall(raw)
        except OSError:  # an early answer and close: what was read is compared
            pass
        r = Reader(s)
        try:
            resp = r.read_response(head_request=raw.startswith(b"HEAD"))
        except Exception as e:  # noqa: BLE001 - the failure itself is compared
            return repr(e).encode(), "-"
        data = resp.raw_head + b"\r\n\r\n" + resp.body
        return re.sub(rb"Date: [^\r]*", b"Date: -", data), after_answer(s, r.buf)


def collect_answers(binary, variant, root):
    """The variant's answers to every DIFF_REQUESTS entry, or None if its
    server does not start (already reported as a skip or a failure). Eight at
    a time, each on its own connection: a keep-alive answer costs CLOSE_WAIT."""
    try:
        srv = Server(serve_argv(binary, variant, root))
    except Exception:  # noqa: BLE001 - reported by the variant's own run
        return None
    try:
        with ThreadPoolExecutor(8) as ex:
            return list(ex.map(lambda raw: diff_answer(srv.port, raw), suite.DIFF_REQUESTS))
    finally:
        srv.stop()
        srv.kill()


def differential(answers):
    """Every variant answers the same bytes, apart from the Date value, and
    then keeps or closes the connection the same way (EOF or reset)."""
    variants = [v for v, a in answers.items() if a is not None]
    if not variants:
        return []
    first = variants[0]
    bad = []
    for v in variants[1:]:
        for raw, (a, ca), (b, cb) in zip(suite.DIFF_REQUESTS, answers[first], answers[v]):
            if a != b:
                at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                          min(len(a), len(b)))
                lo = max(0, at - 60)
                bad.append("%r vs %r on %r: differ at byte %d (lengths %d, %d):\n    %r\n    %r" % (
                    first, v, raw[:60], at, len(a), len(b), a[lo:at + 60], b[lo:at + 60]))
            elif ca != cb:
                bad.append("%r vs %r on %r: after the answer, %s vs %s" % (
                    first, v, raw[:60], ca, cb))
    return bad


class Skip(Exception):
    pass


class Ctx:
    def skip(self, why):
        raise Skip(why)


def run_variant(args, variant, root, files, tmp, results, say=print):
    ctx = Ctx()
    ctx.bin, ctx.variant, ctx.root, ctx.files, ctx.tmp = args.bin, variant, root, files, tmp
    ctx.per_connection = args.per_connection
    try:
        srv = Server(serve_argv(args.bin, variant, root))
    except Unsupported as e:
        results["skipped"] += 1
        say("SKIP %s: the kernel cannot run this model: %s" % (variant, e))
        return
    except Exception as e:  # noqa: BLE001 - a server that does not start is a failure
        results["failed"] += 1
        say("FAIL %s: server did not start: %s" % (variant, e))
        return
    ctx.port = srv.port
    try:
        for fn in suite.TESTS:
            if args.k and not any(k in fn.__name__ for k in args.k.split(",")):
                continue
            name = "%s: %s" % (variant, fn.__name__)
            t0 = time.time()
            try:
                fn(ctx)
                results["passed"] += 1
                if args.v:
                    say("ok   %s (%.1fs)" % (name, time.time() - t0))
            except Skip as e:
                results["skipped"] += 1
                say("SKIP %s: %s" % (name, e))
            except Exception as e:  # noqa: BLE001 - report every failure
                results["failed"] += 1
                say("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            if srv.proc.poll() is not None:
                results["failed"] += 1
                say("FAIL %s: server died (status %s): %s" % (
                    name, srv.proc.returncode, srv.stderr()))
                try:
                    srv = Server(serve_argv(args.bin, variant, root))
                except Exception as e:  # noqa: BLE001 - the rest of this variant cannot run
                    results["failed"] += 1
                    say("FAIL %s: could not restart the server: %s" % (variant, e))
                    return
                ctx.port = srv.port
    finally:
        kids_before = srv.descendants()
        status = srv.stop()
        leftover = [p for p in kids_before if is_running(p)]
        srv.kill()
    if status != 0:
        results["failed"] += 1
        say("FAIL %s: exit status after SIGTERM: %s" % (variant, status))
    elif leftover:
        reap(leftover)
        results["failed"] += 1
        say("FAIL %s: processes left behind: %s" % (variant, leftover))
    else:
        results["passed"] += 1


_FIXTURE = {}  # set before the job processes fork, so they inherit it unpickled


def variant_job(args, variant, diff, say=None):
    """One variant's cases (and its differential answers when diff): returns
    (counts, its output lines, answers or None). Output goes to say as it
    comes when given, else into the lines. With --jobs above 1 it runs in a
    process of its own, so variants overlap without sharing a GIL."""
    f = _FIXTURE
    results = {"passed": 0, "failed": 0, "skipped": 0}
    lines = []
    say = say or lines.append
    t0 = time.time()
    run_variant(args, variant, f["root"], f["files"], f["tmp"], results, say)
    answers = collect_answers(args.bin, variant, f["root"]) if diff else None
    say("-- %s done in %.1fs" % (variant, time.time() - t0))
    return results, lines, answers


def run_all(args, variants, diff):
    """Every variant, args.jobs at a time; each one's output printed as one
    block, in the listed order. Returns (counts, answers per variant)."""
    results = {"passed": 0, "failed": 0, "skipped": 0}
    answers = {}

    def take(v, res):
        for k in results:
            results[k] += res[0][k]
        answers[v] = res[2]

    if args.jobs == 1:  # in this process, printing as it goes
        for v in variants:
            take(v, variant_job(args, v, diff, lambda line: print(line, flush=True)))
        return results, answers
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as ex:
        futures = [(v, ex.submit(variant_job, args, v, diff)) for v in variants]
        for v, fut in futures:
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a job that dies is a failure
                res = ({"passed": 0, "failed": 1, "skipped": 0},
                       ["FAIL %s: the variant's job died: %s: %s" % (v, type(e).__name__, e)],
                       None)
            print("\n".join(res[1]), flush=True)
            take(v, res)
    return results, answers


def per_connection_models(binary):
    """The models with a thread or process per connection (`c10k models
    --per-connection`); none if the binary does not say."""
    p = subprocess.run([binary, "models", "--per-connection"], capture_output=True, text=True)
    return set(p.stdout.split()) if p.returncode == 0 else set()


def raise_nofile():
    """The lifecycle cases hold 300 sockets per variant, --jobs variants at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model")
    ap.add_argument("-k", help="only cases whose name contains one of these (comma-separated)")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--jobs", "-j", type=int, default=2,
                    help="variants run at once, each in its own process (default 2)")
    args = ap.parse_args()
    if args.jobs < 1:
        print("conformance: --jobs must be at least 1")
        return 2
    out = subprocess.run([args.bin, "models", "--variants"], capture_output=True, text=True,
                         check=True)
    variants = [v for v in out.stdout.splitlines() if v.strip()]
    if args.model:
        variants = [v for v in variants if v.split()[0] == args.model]
    if not variants:
        print("conformance: no model matches %r" % args.model)
        return 2
    args.per_connection = per_connection_models(args.bin)
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix="c10k-conf-")
    try:
        root, files = suite.make_fixture(tmp)
        _FIXTURE.update(root=root, files=files, tmp=tmp)
        diff = len(variants) > 1 and not args.k
        results, answers = run_all(args, variants, diff)
        if diff:
            bad = differential(answers)
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
