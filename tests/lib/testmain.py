"""testmain.py - the main() of the unittest-based test files.

Each file takes its own flags out of sys.argv (--bin PATH, --quick) before
unittest sees the rest, so unittest's own arguments still work
(`test_bench.py --bin build/c10k -k perf`). Then run() prints one summary
line, "LABEL: N passed, N failed, N skipped", and the reason of every skip,
so a skipped test is visible in make's output and not only in unittest's.
"""
import os
import sys
import unittest


def pop_bin(default):
    """--bin PATH out of sys.argv: PATH made absolute, or default if absent."""
    if "--bin" not in sys.argv:
        return default
    i = sys.argv.index("--bin")
    if i + 1 >= len(sys.argv):
        print("--bin: want a path", file=sys.stderr)
        sys.exit(2)
    path = os.path.abspath(sys.argv[i + 1])
    del sys.argv[i:i + 2]
    return path


def pop_flag(name):
    """--NAME out of sys.argv: whether it was given."""
    flag = "--" + name
    if flag not in sys.argv:
        return False
    sys.argv.remove(flag)
    return True


def run(label):
    """Runs the tests of the __main__ module (or those unittest's own
    arguments select) and returns the exit status: 1 if any failed."""
    result = unittest.main(module="__main__", exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("%s: %d passed, %d failed, %d skipped" % (label, passed, failed, skipped))
    for test, why in result.skipped:
        print("  SKIP %s: %s" % (test.id().split(".")[-1], why))
    return 1 if failed else 0
