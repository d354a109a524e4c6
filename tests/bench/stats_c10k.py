#!/usr/bin/python3
"""A c10k binary that takes --stats-file, for the bench's tests.

    C10K_REAL_BIN=build/c10k tests/bench/stats_c10k.py serve MODEL ... --stats-file FILE

The bench passes --stats-file to the models only when `c10k serve --help`
lists it (CONTRACTS.md section 3). Until the models write their own stats
file, this stand-in lets the tests run the bench's side of the contract
against real servers: it adds the flag to `serve --help`, and for
`serve ... --stats-file FILE` it starts a writer outside the server's process
tree and session (so the bench's counters and its clean-stop check do not
see it), then execs the real binary in its own place (same pid). The writer
rewrites FILE every 250 ms (FILE.tmp, then rename), as the contract says,
with counters read from /proc: {"wrapper_cpu_ticks": utime + stime of the
server's main process, "wrapper_writes": how many times FILE was written}.
It exits when the server does.

Once the real binary lists --stats-file itself, this execs it unchanged.
Everything else goes straight to the real binary.
"""

import json
import os
import subprocess
import sys
import time

FLAG_LINE = "  --stats-file FILE          write the model's counters to FILE (JSON)\n"


def serve_help(real):
    return subprocess.run([real, "serve", "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True).stdout


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12]), fields[0]


def writer(pid, path, model):
    writes = 0
    while True:
        try:
            ticks, state = cpu_ticks(pid)
        except (OSError, ValueError):
            return
        if state in ("Z", "X"):
            return
        writes += 1
        with open(path + ".tmp", "w") as f:
            json.dump({"model": model, "counters": {"wrapper_cpu_ticks": ticks,
                                                    "wrapper_writes": writes}}, f)
        os.replace(path + ".tmp", path)
        time.sleep(0.25)


def start_writer(path, model):
    pid = os.getpid()
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            for fd in (0, 1, 2):
                os.dup2(os.open(os.devnull, os.O_RDWR), fd)
            writer(pid, path, model)
        os._exit(0)
    os.waitpid(child, 0)


def main():
    real = os.environ["C10K_REAL_BIN"]
    argv = sys.argv[1:]
    if argv[:1] != ["serve"] or not (argv[1:2] == ["--help"] or "--stats-file" in argv):
        os.execv(real, [real] + argv)
    help_text = serve_help(real)
    if "--stats-file" in help_text:
        os.execv(real, [real] + argv)
    if argv[1:2] == ["--help"]:
        head, sep, rest = help_text.partition("common flags:\n")
        sys.stdout.write(head + sep + FLAG_LINE + rest)
        return 0
    if "--stats-file" in argv:
        i = argv.index("--stats-file")
        path = argv[i + 1]
        del argv[i:i + 2]
        start_writer(path, argv[1])
    os.execv(real, [real] + argv)


if __name__ == "__main__":
    sys.exit(main())
