#!/usr/bin/python3
"""make perfgate: each model's syscalls and voluntary switches per request
and bytes per idle connection against the committed bench/baseline.json.

    bench/perfgate.py --bin BUILD/c10k [--models LIST] [--retries N]
    bench/perfgate.py --bin BUILD/c10k --update [--models LIST] [--runs N]

The gate is bench/harness/perfgate.py (its docstring says what it measures
and how); bench/README.md, "The perfgate", says why and how to update the
baseline.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.perfgate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
