"""c10k bench, the benchmark harness, split by responsibility.

    util        errors, small parsers and formatting shared by the others
    variants    MODEL:flag=value variants, checked against `c10k serve --help`
    plan        profiles, sizes, scenarios (closed and open-loop), servers,
                rounds and steps and their order, the time estimate, --dry-run
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
    ladder      the open-loop rules as pure functions: the ladder, Jain's
                index, the Little check, client-bound, the knee, rounds
    openloop    one open-loop step: c10k load against a fresh server, the
                server's window placed on the generator's
    slowclients idle and trickling clients held open beside the load
    cell        one cell of one round: start, verify, warm up, measure, stop
    results     results.json (schema 2) and results.csv: summaries, spread,
                flags (starved, noisy)
    env         the environment record and tool checks
    run         the run: rounds in order, progress, interrupts, the report
    cli         the command line
    net         where the server and the load run, and across what link:
                loopback, a veth between namespaces, another host
    netns       network namespaces, veth pairs, tbf and netem; nothing left
                behind (context manager, guard process, sweep)
    remote      other hosts over ssh: one `c10k agent` session per host,
                the barrier that starts several load generators together
    agent       the far end of that session (`c10k agent`), which runs and
                measures with this same package there
    merge       several load generators' reports as one: counts summed,
                histograms merged, percentiles never averaged
    perfgate    make perfgate: counts per request and per idle connection
                against bench/baseline.json (bench/perfgate.py)

Python 3 standard library only.
"""
