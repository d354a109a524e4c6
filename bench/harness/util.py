"""Errors, small parsers and formatting shared by the harness modules."""

import os
import re
import subprocess

EXIT_USAGE = 2
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/
REPO = os.path.dirname(HERE)


def default_out():
    """Where runs go without --out: results/ of the checkout the harness
    lives in, or results/ of the current directory when it is installed
    (PREFIX/share/c10k is no place for them)."""
    if os.path.isfile(os.path.join(REPO, "Makefile")) and os.path.isdir(
            os.path.join(REPO, "common")):
        return os.path.join(REPO, "results")
    return os.path.abspath("results")
KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3


class UsageError(Exception):
    """A command-line or environment problem: exit status 2."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop cleanly, keep finished cells."""


def parse_int_list(flag, text, lo, hi):
    out = []
    for part in text.split(","):
        try:
            v = int(part)
        except ValueError:
            raise UsageError("%s: '%s' is not a whole number" % (flag, part)) from None
        if not lo <= v <= hi:
            raise UsageError("%s: %d is out of range (%d to %d)" % (flag, v, lo, hi))
        out.append(v)
    return out


def parse_cpus(flag, text, ncpu=None):
    cpus = []
    ncpu = ncpu or os.cpu_count() or 1
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise UsageError("%s: '%s' is not a CPU list (e.g. 0 or 0-1,3)" % (flag, text))
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi >= ncpu:
            raise UsageError("%s: CPUs %s do not exist here (this machine has CPUs 0-%d)"
                             % (flag, part, ncpu - 1))
        cpus.extend(range(lo, hi + 1))
    return sorted(set(cpus))


def cpus_text(cpus):
    return ",".join(str(c) for c in cpus)


def fmt_duration(s):
    s = int(round(s))
    if s >= 3600:
        return "%dh%02dm%02ds" % (s // 3600, s % 3600 // 60, s % 60)
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def fmt_seconds(s):
    """0.5 -> '0.5', 2.0 -> '2'."""
    return "%g" % s


def slug(name):
    """A server name as a file-name part: threaded:pool=64 -> threaded_pool-64."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("=", "-"))


def run_text(argv, timeout=10):
    """stdout+stderr of a short command, or '' if it cannot run."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def proc_stats():
    """(pid, fields) for every process now in /proc: fields are those of
    /proc/PID/stat after the command name (fields[0] the state, [1] the
    parent, [4] the session); a process gone meanwhile is left out."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_file("/proc/%s/stat" % name)
        if stat:
            yield int(name), stat[stat.rfind(")") + 2:].split()


def per_req(v, requests):
    """v per request; None when v is unavailable or nothing completed."""
    return None if v is None or not requests else v / requests
