"""Model variants on the bench command line (CONTRACTS.md section 5).

    --models threaded,threaded:pool=64,epoll:level-triggered,uring:entries=16+zc

After the colon, comma-free `flag=value` or `flag` items joined with `+`,
mapped to `--flag value` / `--flag`. Every flag is checked against what the
binary says it takes (`c10k serve --help`: the common flags and each model's
own, with the name of its argument when it takes one), so a typo is a usage
error before anything runs, not a failed cell at the end.
"""

import re
import select
import subprocess
import tempfile
import time

from .util import UsageError

# Flags the bench sets itself for every server: a variant may not change them.
BENCH_OWNED = {
    "bind": "the bench serves on 127.0.0.1",
    "port": "use --port",
    "root": "the bench generates the document root",
    "cpus": "use --server-cpus",
    "keepalive-timeout": "the profile sets it for every server",
    "header-timeout": "the profile sets it for every server",
    "grace": "the bench stops every server the same way",
    "stats-file": "the bench passes it to every model that has it",
    "open-file-cache": "use c10k bench --open-file-cache N: nginx then gets the same cache",
    "open-file-cache-valid": "use c10k bench --open-file-cache-valid S, for every server",
}

# How a flag's argument, as named in --help, must look.
ARG_PATTERNS = {
    "N": (r"\d+", "a whole number"),
    "KIB": (r"\d+", "a whole number of KiB"),
    "S": (r"\d+(\.\d+)?", "seconds, e.g. 5 or 0.5"),
}

SECTION = re.compile(r"^([a-z][a-z0-9_-]*)(?: flags)?: ")
# "  --pool N   what it does": the argument, if any, is one upper-case word
# after one space (a long flag may leave one space before its description,
# which starts lower-case).
FLAG_LINE = re.compile(r"^\s+--([a-z0-9][a-z0-9-]*)(?: ([A-Z][A-Z0-9_]*)(?=\s|$))?")


def parse_serve_help(text):
    """`c10k serve --help` -> {"common": {flag: ARG or None}, MODEL: {...}}."""
    out, section = {}, None
    for line in text.splitlines():
        if line.startswith("common flags:"):
            section = out.setdefault("common", {})
            continue
        m = SECTION.match(line)
        if m and not line.startswith("usage:"):
            section = out.setdefault(m.group(1), {})
            continue
        m = FLAG_LINE.match(line)
        if m and section is not None:
            section[m.group(1)] = m.group(2)
    return out


def serve_help(bin_path):
    """The binary's `serve --help`, parsed; UsageError if it gives none."""
    try:
        p = subprocess.run([bin_path, "serve", "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError("cannot run '%s serve --help': %s" % (bin_path, e)) from None
    flags = parse_serve_help(p.stdout)
    if "common" not in flags:
        raise UsageError("'%s serve --help' lists no common flags (output: %r)"
                         % (bin_path, p.stdout[:200]))
    return flags


def has_common_flag(help_flags, flag):
    return flag in help_flags.get("common", {})


class Variant:
    """One server row of a run: a c10k model, optionally with flags of its
    own, or a reference server (nginx) when reference is true."""

    def __init__(self, name, model, flags=(), reference=False):
        self.name, self.model, self.flags = name, model, list(flags)
        self.reference = reference

    def argv(self):
        return list(self.flags)

    def command_text(self):
        return " ".join([self.model] + self.flags)

    def sets(self, flag):
        return ("--" + flag) in self.flags

    def __repr__(self):
        return "Variant(%r)" % self.name


def _flag_list(flags):
    return ", ".join("--%s%s" % (f, " " + a if a else "") for f, a in flags.items()) or "none"


def _check_value(spec, flag, arg, value):
    if arg is None:
        if value is not None:
            raise UsageError("--models: %s: --%s takes no value (write it as '%s')"
                             % (spec, flag, flag))
        return
    if value is None or value == "":
        raise UsageError("--models: %s: --%s takes a value (%s), e.g. %s=%s"
                         % (spec, flag, arg, flag, arg))
    pattern, what = ARG_PATTERNS.get(arg, (r"\S+", "a value without spaces"))
    if not re.fullmatch(pattern, value):
        raise UsageError("--models: %s: --%s %s: want %s" % (spec, flag, value, what))


def parse_variant(spec, help_flags):
    """'threaded:pool=64' -> Variant. The model must be in help_flags."""
    model, _, opts = spec.partition(":")
    own = help_flags.get(model, {})
    common = {f: a for f, a in help_flags.get("common", {}).items() if f not in BENCH_OWNED}
    if not opts:
        raise UsageError("--models: %s: nothing after the colon; write flag=value or flag "
                         "items joined with '+', e.g. %s:workers=4" % (spec, model))
    flags = []
    for item in opts.split("+"):
        flag, eq, value = item.partition("=")
        value = value if eq else None
        if flag in BENCH_OWNED:
            raise UsageError("--models: %s: --%s is set by the bench (%s)"
                             % (spec, flag, BENCH_OWNED[flag]))
        if flag in own:
            arg = own[flag]
        elif flag in common:
            arg = common[flag]
        else:
            raise UsageError("--models: %s: %s has no flag --%s (its flags: %s; common: %s; "
                             "see c10k serve --help)" % (spec, model, flag or "''",
                                                         _flag_list(own), _flag_list(common)))
        _check_value(spec, flag, arg, value)
        if ("--" + flag) in flags:
            raise UsageError("--models: %s: --%s given twice" % (spec, flag))
        flags += ["--" + flag] + ([value] if value is not None else [])
    return Variant(spec, model, flags)


def parse_models(text, available, help_flags, references):
    """--models text -> [Variant] of c10k models (the plan adds the reference
    servers). None or 'all': every model; 'all' may also start a list
    ('all,threaded:pool=64'). Usage errors name what to change."""
    if not text:
        text = "all"
    out, seen = [], set()
    for spec in text.split(","):
        spec = spec.strip()
        if not spec:
            raise UsageError("--models: an empty name in '%s'" % text)
        model = spec.partition(":")[0]
        if spec == "all":
            new = [Variant(m, m) for m in available if m not in seen]
        elif model in references:
            if spec != model:
                raise UsageError("--models: %s: %s is a reference server and takes no "
                                 "variants" % (spec, model))
            continue  # always included
        elif model not in available:
            raise UsageError("--models: unknown model '%s'; this binary has: %s"
                             % (model, ", ".join(available)))
        elif spec in seen:
            raise UsageError("--models: '%s' is listed twice" % spec)
        else:
            new = [parse_variant(spec, help_flags) if ":" in spec else Variant(spec, spec)]
        seen.update(v.name for v in new)
        out += new
    if not out:
        raise UsageError("--models: '%s' names no c10k model (the reference servers always "
                         "run)" % text)
    return out


def preflight(bin_path, variant, timeout=5.0):
    """Start the variant once on a free port: None, or the server's own
    complaint (a value out of range exits 2 with a message)."""
    with tempfile.TemporaryDirectory(prefix="c10k-preflight-") as root:
        return start_once([bin_path, "serve", variant.model, "--port", "0", "--root", root,
                           "--grace", "0.1"] + variant.flags, timeout)


def start_once(argv, timeout=5.0):
    """Start a server once and stop it: None when it printed its start line
    (one with a URL), or the last line it printed on stderr."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = _first_line(p, timeout)
        if line and "http://" in line:
            p.terminate()
            p.wait(timeout)
            return None
        p.kill()
        _, err = p.communicate(timeout)
        return (err.strip().splitlines() or ["exited with status %s" % p.returncode])[-1]
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "did not start within %.0f s" % timeout
    finally:
        for f in (p.stdout, p.stderr):
            f.close()


def _first_line(p, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return p.stdout.readline()
        r, _, _ = select.select([p.stdout], [], [], 0.05)
        if r:
            return p.stdout.readline()
    raise subprocess.TimeoutExpired(p.args, timeout)
