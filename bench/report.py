#!/usr/bin/python3
"""c10k report - turn a bench run into report.md, report.html and charts/*.svg.

    c10k report RUN_DIR                 write the reports into RUN_DIR
    c10k report --compare RUN_A RUN_B   compare two runs (compare-<A>.md/.html in RUN_B)

The report opens with what the run says (a ranked table per scenario group
and the trade-offs, with numbers), then latency, the operating-system
concepts with the run's numbers, the full tables and the environment.
Charts are drawn by gnuplot's svg terminal (gnuplot-nox) and inlined into
the HTML, so report.html opens offline with no scripts or external fonts.
Every number is read from RUN_DIR/results.json (schema versions 1 and 2).
The code is in bench/reportlib/ (its __init__.py lists the parts).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reportlib.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
