"""c10k report: argument handling, and errors as one line with exit status 2.

    c10k report RUN_DIR                          report.md, report.html, charts/
    c10k report --compare RUN_A RUN_B [--out F]  compare-<A>.md and .html in RUN_B

The paths written go to stdout, one per line. A results.json that cannot be
read (missing keys, the wrong shape, a file given instead of its directory)
is reported in one line on stderr with exit status 2, never a traceback;
C10K_DEBUG=1 shows the traceback of an unexpected error.
"""

import os
import sys

from . import build, compare
from .data import Run, UsageError, load

EXIT_USAGE = 2
USAGE = ("usage: c10k report RUN_DIR\n"
         "       c10k report --compare RUN_A RUN_B [--out FILE]")


def report(run_dir):
    run = Run(load(run_dir), run_dir)
    return build.write(run_dir, run)


def parse_compare(rest):
    out = None
    if "--out" in rest:
        i = rest.index("--out")
        if i + 1 >= len(rest):
            raise UsageError("--out needs a file name")
        out = rest[i + 1]
        rest = rest[:i] + rest[i + 2:]
    if len(rest) != 2 or any(r.startswith("-") for r in rest):
        raise UsageError("--compare takes two run directories "
                         "(c10k report --compare RUN_A RUN_B [--out FILE])")
    return rest[0], rest[1], out


def dispatch(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--compare":
        paths, errors = compare.compare(*parse_compare(argv[1:]))
    elif len(argv) == 1 and not argv[0].startswith("-"):
        paths, errors = report(argv[0])
    else:
        raise UsageError("unexpected arguments: %s (c10k report --help shows the usage)"
                         % " ".join(argv))
    for e in errors:
        print("c10k report: chart not drawn: %s" % e, file=sys.stderr)
    for p in paths:
        print("c10k report: wrote %s" % p)
    return 0


def main(argv):
    try:
        return dispatch(argv)
    except UsageError as e:
        print("c10k report: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print("c10k report: %s%s" % (e.strerror or e, ": %s" % e.filename if e.filename else ""),
              file=sys.stderr)
        return EXIT_USAGE
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            ZeroDivisionError) as e:
        # The checks in data.check() cover the shapes we know of; anything
        # they miss is still bad input, not a crash to show as a traceback.
        if os.environ.get("C10K_DEBUG"):
            raise
        print("c10k report: results.json has data this report cannot read (%s: %s); "
              "C10K_DEBUG=1 shows where" % (type(e).__name__, e), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
