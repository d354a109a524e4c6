"""The pieces of `c10k report` (bench/report.py is the command).

    data.py      read and check results.json (schema versions 1 and 2): runs,
                 cells, scenario groups, what kind of model each one is
    fmt.py       how numbers are written (one place, so tables and findings agree)
    colours.py   one fixed colour per model for every chart and table
    summary.py   "What this run says": the ranked table per scenario group
                 (a crossover's table is not ranked) and the trade-off findings
    disk.py      the cold-cache finding: event loops held up by the disk
    concepts.py  the operating-system concepts, each with a number from the run
    charts.py    gnuplot SVG charts, rewritten so they can share one page
    page.py      the document model and its Markdown and HTML writers
    build.py     report.md / report.html for one run
    compare.py   compare.md / compare.html for two runs
    cli.py       argument handling and the one-line errors (exit status 2)

Every sentence the report writes is computed from results.json; a sentence
that explains a number (rather than stating it) is only written when the
data meets its premise, and each such premise is tested on both sides in
tests/bench/test_report.py.
"""
