#!/usr/bin/python3
"""Compare uring with epoll (or any models) cell by cell: requests/s, CPU
time per request and syscalls per request, interleaved repeats.

    /usr/bin/python3 tests/uring/compare.py --bin build/c10k \\
        [--cells 1KiB:16:keepalive,1MiB:16:keepalive,...] [--models uring,epoll,uring@OLD_BIN] \\
        [--repeats 3] [--duration 5]

Each run: `c10k serve MODEL --workers 1 --cpus 0` under `taskset -c 0`, a
1 s wrk warm-up, then wrk for --duration seconds pinned to CPU 1 (`taskset -c
1 wrk -t1 -cN`). CPU per request is the server process's utime + stime over
the window (/proc/PID/stat), which counts every thread it ever had, io_uring's
io-wq and SQPOLL threads included (perf stat -p misses threads that start or
exit during the window). Syscalls and context switches per request come from
`perf stat -e raw_syscalls:sys_enter,context-switches -p PID` over the same
window (every thread of the server, io-wq workers included); "io-wq" is the
share of that CPU time spent in io_uring's worker threads (iou-wrk-*) alive
at both ends of the window. The models alternate within every repeat, so a
busy spell on a shared machine hits each of them; prefer CPU per request to
requests/s there. Prints one line per run, then the median of each cell and
model, then each model's CPU per request as a ratio to the baseline model's
in the same repeat (median and range over the repeats): pairing runs that
were taken seconds apart cancels much of what the machine's other load does
to both.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {"b": 1, "kib": 1024, "mib": 1024 * 1024}
TICK = os.sysconf("SC_CLK_TCK")


class Usage(Exception):
    pass


def parse_size(text):
    m = re.fullmatch(r"(\d+)(B|KiB|MiB)?", text.strip(), re.I)
    if not m:
        raise Usage(f"'{text}' is not a size (128, 4KiB, 1MiB)")
    return int(m.group(1)) * SIZES[(m.group(2) or "b").lower()]


def parse_cells(text):
    cells = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3 or parts[2] not in ("keepalive", "close") or not parts[1].isdigit():
            raise Usage(f"--cells: '{item}' is not SIZE:CONNS:keepalive|close")
        cells.append((parts[0], parse_size(parts[0]), int(parts[1]), parts[2]))
    return cells


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def iowq_ticks(pid):
    """utime + stime of each io-wq worker thread of the process, by tid."""
    ticks = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return ticks
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                comm, rest = f.read().split("(", 1)[1].rsplit(")", 1)
        except OSError:
            continue
        if comm.startswith("iou-wrk"):
            fields = rest.split()
            ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def start_server(binary, model, root):
    model, _, other = model.partition("@")  # "uring@/path/to/old/c10k": another binary
    argv = ["taskset", "-c", "0", other or binary, "serve", *model.split(), "--port", "0", "--root", root,
            "--workers", "1", "--cpus", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    m = re.search(r"127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{model}: no start line: {line!r}")
    return proc, int(m.group(1))


def wrk(port, name, conns, mode, seconds):
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s"]
    if mode == "close":
        argv += ["-H", "Connection: close"]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}/{name}"], capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: .*|Non-2xx.*", out)
    return int(m.group(1)) if m else 0, errors.group(0) if errors else ""


def one_run(a, model, cell, root):
    name, _, conns, mode = cell
    proc, port = start_server(a.bin, model, root)
    try:
        wrk(port, name, conns, mode, 1)
        with tempfile.NamedTemporaryFile("r", suffix=".perf") as pf:
            perf = subprocess.Popen(["perf", "stat", "-x,", "-e",
                                     "raw_syscalls:sys_enter,context-switches",
                                     "-p", str(proc.pid), "-o", pf.name],
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.2)
            t0, w0 = cpu_ticks(proc.pid), iowq_ticks(proc.pid)
            reqs, errors = wrk(port, name, conns, mode, a.duration)
            t1, w1 = cpu_ticks(proc.pid), iowq_ticks(proc.pid)
            perf.send_signal(signal.SIGINT)
            perf.wait(10)
            text = pf.read()
        counts = {m.group(2): int(m.group(1))
                  for m in re.finditer(r"^(\d+),[^,]*,([\w:-]+)", text, re.M)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    if reqs == 0:
        return None
    iowq = sum(w1[t] - w0[t] for t in w1 if t in w0)
    return {"rps": reqs / a.duration, "cpu_us": (t1 - t0) * 1e6 / TICK / reqs,
            "syscalls": counts.get("raw_syscalls:sys_enter", float("nan")) / reqs,
            "switches": counts.get("context-switches", float("nan")) / reqs,
            "iowq": iowq / (t1 - t0) if t1 > t0 else 0.0, "errors": errors}


FIELDS = ("rps", "cpu_us", "syscalls", "switches", "iowq")


def fmt(r):
    return (f"{r['rps']:>10.1f} req/s {r['cpu_us']:>9.1f} us CPU/req {r['syscalls']:>7.2f} "
            f"syscalls/req {r['switches']:>8.2f} switches/req {r['iowq']:>4.0%} io-wq")


def make_root(root, cells):
    for name, size, _, _ in cells:
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--cells", default="1KiB:16:keepalive,1KiB:256:keepalive,1KiB:64:close,"
                    "64KiB:16:keepalive,1MiB:16:keepalive,16MiB:16:keepalive")
    ap.add_argument("--models", default="uring,epoll", help="comma-separated, flags allowed, "
                    "and @BIN for another build: 'uring --zc,epoll,uring@/tmp/old/c10k'")
    ap.add_argument("--baseline", default="epoll", help="the model the ratios are to")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    a = ap.parse_args()
    try:
        cells = parse_cells(a.cells)
    except Usage as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    results = {}
    with tempfile.TemporaryDirectory() as root:
        make_root(root, cells)
        for rep in range(a.repeats):
            for cell in cells:
                for model in models:
                    r = one_run(a, model, cell, root)
                    key = (cell[0], cell[2], cell[3], model)
                    if r is None:
                        print(f"{key}: no requests", flush=True)
                        continue
                    r["repeat"] = rep
                    results.setdefault(key, []).append(r)
                    print(f"repeat {rep + 1}  {cell[0]:>6} c={cell[2]:<4} {cell[3]:<9} "
                          f"{model:<14} {fmt(r)} {r['errors']}", flush=True)
    print("\nmedians:")
    for key, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in FIELDS}
        print(f"{key[0]:>6} c={key[1]:<4} {key[2]:<9} {key[3]:<14} {fmt(med)} ({len(runs)} runs)")
    print_ratios(results, a.baseline)
    return 0


def print_ratios(results, baseline):
    """CPU per request over the baseline's in the same repeat and cell."""
    base = {(k[:3], r["repeat"]): r["cpu_us"] for k, runs in results.items() if k[3] == baseline
            for r in runs}
    lines = []
    for key, runs in results.items():
        ratios = [r["cpu_us"] / base[(key[:3], r["repeat"])] for r in runs
                  if key[3] != baseline and (key[:3], r["repeat"]) in base]
        if ratios:
            lines.append(f"{key[0]:>6} c={key[1]:<4} {key[2]:<9} {key[3]:<14} "
                         f"{statistics.median(ratios):5.2f}  ({min(ratios):.2f}-{max(ratios):.2f}, "
                         f"{len(ratios)} pairs)")
    if lines:
        print(f"\nCPU per request / {baseline}'s in the same repeat: median (range):")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
