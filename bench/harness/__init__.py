"""c10k bench, the benchmark harness, split by responsibility.

    util        errors, small parsers and formatting shared by the others
    variants    MODEL:flag=value variants, checked against `c10k serve --help`
    plan        profiles, sizes, scenarios, servers, rounds and their order,
                the time estimate and --dry-run
    docroot     the generated document root and the response check
    sockdiag    NETLINK_SOCK_DIAG: the accept queue and established
                connections of one port, without reading /proc/net/tcp
    counters    what a server costs in a window: /proc, perf, softirqs,
                CPU steal, the accept queue sampler, the model's stats file
    servers     starting and stopping one c10k model server
    refs        reference servers (nginx, the ceiling), each behind one
                small class
    ceiling     which of the ceiling's backends is the ceiling, per
                scenario: the probe
    loadgen     the load generator (wrk + wrk_report.lua)
    slowclients idle and trickling clients held open beside the load
    cell        one cell of one round: start, verify, warm up, measure, stop
    results     results.json (schema 2) and results.csv: summaries, spread,
                flags (starved, noisy)
    env         the environment record and tool checks
    run         the run: rounds in order, progress, interrupts, the report
    cli         the command line
    perfgate    make perfgate: counts per request and per idle connection
                against bench/baseline.json (bench/perfgate.py)

Python 3 standard library only.
"""
