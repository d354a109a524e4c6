"""The command line of `c10k bench`."""

import argparse
import os
import shutil
import signal
import sys
import textwrap

from . import remote
from .plan import PROFILES, dry_run_text, from_args, probe_binary, runnable_references
from .refs import REFERENCES
from .run import Run
from .util import EXIT_USAGE, UsageError
from .variants import preflight

EPILOG = """\
Models and variants: --models threaded,threaded:pool=64,epoll:level-triggered
(after the colon, flag=value or flag items joined with '+', e.g.
uring:entries=16+zc; c10k serve --help lists every model's flags). 'all' is
every model; nginx always runs, and the ceiling (build/c10k-ceiling, the
faster of its epoll and io_uring backends per scenario) whenever it can.
Sizes take B, KiB, MiB or GiB.
Rounds: each round runs every cell once, visiting the servers in a fresh
random order (recorded with its --seed); cells report the median and
min..max over rounds and are flagged starved or noisy (bench/README.md).
Links: --netns runs the load generator in a network namespace of its own,
joined to the server's by a veth pair (198.18.0.1 and .2, RFC 2544's
benchmarking range; needs root and iproute2); --link-rate and --netem shape
both ends and imply --netns. --server-host and --client-host put the server
or the load generator on other hosts over ssh (key login, the same c10k
installed there: README.md, "A second host"). Every scenario records its link.

Open loop (--profile latency or crossover): c10k load sends on a schedule
fixed in advance; each step of the ladder visits every server in a fresh
random order; --connections sets the ladder's connections (latency) or the
connection counts (crossover).

Cold cache (--profile cold-cache, as root): the document root is evicted
from the page cache before every window, each server runs in a cgroup that
limits the disk's read IOPS and its memory, and kernel.task_delayacct is on
for the run (restored after).
"""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="c10k bench", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Benchmark every c10k model against nginx with wrk, or with the open-loop "
            "c10k load. Profiles: "
            + "; ".join("%s: %s" % (k, v["about"]) for k, v in PROFILES.items()), 79))
    p.add_argument("--bin", required=True, help="the c10k binary (c10k bench passes it)")
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--models", help="comma-separated models and variants (default: all; "
                                    "nginx always runs)")
    p.add_argument("--connections", help="comma-separated connection counts")
    p.add_argument("--sizes", help="comma-separated file sizes, e.g. 128,4KiB,1MiB,2GiB")
    p.add_argument("--modes", help="keepalive,close (default: the profile's)")
    p.add_argument("--duration", type=int,
                   help="captured window per cell, whole seconds (wrk's unit)")
    p.add_argument("--warmup", type=float,
                   help="warm-up per cell, at most this many seconds (0.5 allowed; it ends "
                        "early once the server keeps up), 0 for none; not recorded")
    p.add_argument("--rounds", type=int, help="interleaved rounds (each runs every cell once)")
    p.add_argument("--repeat", type=int, help="the old name of --rounds")
    p.add_argument("--seed", type=int, help="seed of the rounds' random order (default: "
                                            "random, recorded in results.json)")
    p.add_argument("--workers", type=int, help="server workers (default: number of server CPUs)")
    p.add_argument("--server-cpus", help="CPUs for the server (default 0)")
    p.add_argument("--client-cpus", help="CPUs for wrk (default: the others)")
    p.add_argument("--port", type=int, help="fixed port for every server (default: a free one)")
    p.add_argument("--open-file-cache", type=int, metavar="N",
                   help="every c10k model runs with --open-file-cache N and nginx with the "
                        "same open_file_cache max=N (default: off in both)")
    p.add_argument("--open-file-cache-valid", type=int, metavar="S",
                   help="... and checks a cached file again after S whole seconds (nginx "
                        "takes no fraction; default 60, both servers' default)")
    p.add_argument("--out", help="results directory (default: results/ of the checkout, or "
                                      "of the current directory for an installed c10k)")
    p.add_argument("--no-report", action="store_true", help="do not run c10k report at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells in order and the estimated time, run nothing")
    p.add_argument("--netns", action="store_true",
                   help="the load generator in its own network namespace, joined to the "
                        "server's by a veth pair (needs root)")
    p.add_argument("--link-rate", metavar="RATE",
                   help="shape both ends of the veth to RATE with tbf, e.g. 100mbit, 1gbit "
                        "(implies --netns)")
    p.add_argument("--netem", metavar="ARGS",
                   help="netem on both ends, e.g. \"delay 5ms loss 0.1%%\" (implies --netns; "
                        "refused with status 2 where the kernel has no sch_netem)")
    p.add_argument("--server-host", metavar="[USER@]HOST",
                   help="run every server on HOST over ssh; the load generator runs here")
    p.add_argument("--client-host", metavar="HOST[,HOST...]",
                   help="run the load generator on these hosts over ssh, started together; "
                        "the server runs here (or on --server-host)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh -F FILE for the hosts")
    p.add_argument("--remote-c10k", metavar="PATH", default="c10k",
                   help="the c10k binary on the hosts (default: c10k on their PATH)")
    o = p.add_argument_group("open-loop profiles (latency, crossover)")
    o.add_argument("--slo-p99", help="the p99 target the knee is judged by, e.g. 1ms, 500us "
                                     "(a bare number is ms; default 1ms)")
    o.add_argument("--rates", help="latency: a fixed list of offered req/s instead of the "
                                   "ladder scaled from each server's closed-loop peak")
    o.add_argument("--ladder", help="latency: the ladder's steps in %% of each server's "
                                    "closed-loop peak (default 10,25,50,70,80,90,100,120,150,"
                                    "200)")
    o.add_argument("--rate", help="crossover: the offered req/s (default: half of epoll's "
                                  "closed-loop peak in the same run)")
    o.add_argument("--max-lag", help="c10k load's --max-lag: how late the generator may send "
                                     "or read (p99) before its run is invalid and the step "
                                     "client-bound, e.g. 2ms (default: half of --slo-p99)")
    cold = p.add_argument_group("cold-cache profile")
    cold.add_argument("--disk-iops", help="read IOPS limits of the disk, one scenario each, "
                                          "e.g. 200,5000 (default), or unthrottled")
    cold.add_argument("--cache-limit", help="memory (page cache included) each server may use, "
                                            "below the root's size (default 256MiB), or none")
    cold.add_argument("--cold-files", type=int, help="files in the cold root (default 22200, "
                                                     "1.5 GiB; the size mix is kept)")
    cold.add_argument("--dist", choices=("zipf", "uniform"),
                      help="how requests spread over the files (default zipf, s = 1)")

    def error(message):
        raise UsageError(message)

    p.error = error
    args = p.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= 4096:
        raise UsageError("--workers %d: want 1 to 4096" % args.workers)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port %d: want 1 to 65535" % args.port)
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise UsageError("--seed %d: want 0 to 4294967295" % args.seed)
    check_open_file_cache(args)
    try:
        if args.server_host:
            remote.parse_host(args.server_host, "--server-host")
        if args.client_host:
            args.client_host = remote.parse_hosts(args.client_host, "--client-host")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.ssh_config and not os.path.isfile(args.ssh_config):
        raise UsageError("--ssh-config %s: no such file" % args.ssh_config)
    args.argv_tail = without_bin(argv)
    return args


def check_open_file_cache(args):
    """The ranges c10k serve takes (C10K_FCACHE_MAX), and whole seconds for
    nginx's open_file_cache_valid."""
    n, valid = args.open_file_cache, args.open_file_cache_valid
    if n is not None and not 1 <= n <= 1000000:
        raise UsageError("--open-file-cache %d: want 1 to 1000000 (leave it out for no cache)"
                         % n)
    if valid is not None and n is None:
        raise UsageError("--open-file-cache-valid needs --open-file-cache N")
    if valid is not None and not 1 <= valid <= 86400:
        raise UsageError("--open-file-cache-valid %d: want whole seconds from 1 to 86400 "
                         "(nginx's open_file_cache_valid takes no fraction)" % valid)


def without_bin(argv):
    """The user's arguments, without --bin PATH (c10k adds it)."""
    tail, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--bin":
            skip = True
        elif not a.startswith("--bin="):
            tail.append(a)
    return tail


def check_variants(binary, plan):
    """Start each variant once: a value the server refuses is a usage error
    now, not a failed cell at the end of the run."""
    for spec in plan.servers:
        if spec.flags:
            why = preflight(binary.path, spec)
            if why:
                raise UsageError("--models: %s: c10k serve %s refused it: %s"
                                 % (spec.name, spec.command_text(), why))


def dry_run_notes(bin_path, plan):
    notes = []
    if not shutil.which("wrk"):
        notes.append("wrk is not installed: a real run would stop here (apt-get install wrk)")
    for name, ref in REFERENCES.items():
        ok, why = ref.available(bin_path)
        if not ok:
            notes.append("%s cannot run (%s): %s" % (name, why, "its cells would be failed"
                                                       if ref.always else "no row for it"))
        elif ref.note(bin_path):
            notes.append("%s: %s" % (name, ref.note(bin_path)))
    if "ceiling" in plan.names and not REFERENCES["ceiling"].note(bin_path):
        notes.append("ceiling: before its first cell of each scenario, its uring and epoll "
                     "backends are probed (bursts A B B A); the faster is the ceiling of that "
                     "scenario in every round")
    return notes


def main(argv):
    run = None

    def on_signal(signum, frame):
        if run is not None:
            run.interrupted = True
        raise KeyboardInterrupt()

    try:
        args = parse_args(argv)
        if not os.access(args.bin, os.X_OK):
            raise UsageError("--bin %s is not an executable c10k binary" % args.bin)
        binary = probe_binary(os.path.abspath(args.bin))
        plan = from_args(args, binary, references=runnable_references(binary.path))
        check_variants(binary, plan)
        if args.dry_run:
            sys.stdout.write(dry_run_text(plan, dry_run_notes(binary.path, plan),
                                          not args.no_report))
            return 0
        run = Run(args, plan, binary)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        return run.main()
    except UsageError as e:
        print("c10k bench: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if run is not None:
            run.cleanup_children()
        print("\nc10k bench: interrupted before the first cell", file=sys.stderr)
        return 130
