#!/usr/bin/python3
"""c10k bench - measure every concurrency model against nginx with wrk.

    c10k bench [--profile NAME] [--models LIST] [--connections LIST]
               [--sizes LIST] [--modes LIST] [--duration S] [--warmup S]
               [--rounds N] [--seed N] [--workers N] [--server-cpus LIST]
               [--client-cpus LIST] [--port N] [--out DIR] [--no-report]
               [--dry-run]

The entry point `c10k bench` runs (common/main.c). The harness is the
package bench/harness/, one module per responsibility (its __init__ lists
them); bench/README.md describes the method and results.json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
