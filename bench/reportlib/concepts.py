"""The operating-system concepts of the lecture notes (../shared/seeds), each
shown with a number from the run:

  voluntary switches   a blocking call puts the thread to sleep
  involuntary switches preemption
  memory/connection    a process, a thread and an event loop per connection
  thread pool          a pool against a thread per connection (variants)
  softirqs             the interrupt side of a request (/proc/softirqs)
  cooperative          user-level switches of a coroutine model
  syscalls, CPU        kernel entries and where the CPU time went

Each concept() returns a Concept or None (the run has nothing to show).
Clauses that explain a number are built by the *_clause functions, which
return None unless the data meets their premise; the tests check both sides.
"""

from . import charts as C
from . import fmt
from .data import architecture, base_model, variant_flags
from .summary import CEILING, contenders, light, most_held, per_connection_premise

SLEPT_MIN = 0.5      # voluntary switches/request for "slept about once per request"
READY_MAX = 0.1      # ... and at most this for the model that "found its work ready"
PREEMPTED_MIN = 0.05  # involuntary switches/request worth explaining
COOP_MIN = 0.5       # user-level switches/request for "switched in user space"


class Concept:
    def __init__(self, title, text, figures=()):
        self.title, self.text, self.figures = title, text, [f for f in figures if f]


def values(run, sid, key):
    return {c.model: c.med(key) for c in contenders(run, sid) if c.med(key) is not None}


def bar_getter(run, key, lower=None):
    def get(model, sid):
        c = run.cell(model, sid)
        if not c or c.failed or c.stat(key) is None:
            return None
        return C.Bar(c.stat(key), not c.clean, None if lower is None else c.med(lower) or 0.0)
    return get


def models_in(run, sid):
    return [c.model for c in contenders(run, sid)]


# --- voluntary and involuntary switches -------------------------------------------


def sleep_clause(hi_model, hi, lo_model, lo):
    """'X slept about once per request ... Y found its next request ready':
    only when hi >= SLEPT_MIN and lo <= READY_MAX."""
    if hi is None or lo is None or hi < SLEPT_MIN or lo > READY_MAX:
        return None
    often = "about once per request" if hi < 1.5 else "about %.0f times per request" % hi
    rest = ("slept once per %s requests" % fmt.rps(1 / lo)) if lo > 0 else "never slept"
    return ("%s slept %s: each wait for the next request was a blocking call that put the "
            "thread to sleep. %s found its next request already waiting and %s."
            % (hi_model, often, lo_model, rest))


def voluntary(run, ch):
    sc = light(run)
    if not sc:
        return None
    v = values(run, sc.id, "ctx_vol_per_req")
    if len(v) < 2:
        return None
    hi, lo = max(v, key=v.get), min(v, key=v.get)
    text = ("A thread that must wait (a blocking read, accept, poll or lock) gives up the CPU: "
            "a voluntary context switch. %s: %s per request." % (
                sc.label, ", ".join("%s %s" % (m, fmt.switches(v[m]))
                                    for m in sorted(v, key=lambda m: -v[m]))))
    clause = sleep_clause(hi, v[hi], lo, v[lo])
    if clause:
        text += " " + clause
    fig = C.bars(ch, "switches.svg", "Context switches per request: " + sc.label,
                 "context switches per request", [(sc.label, sc.id)], models_in(run, sc.id),
                 switch_getter(run), split=("voluntary (slept)", "involuntary (preempted)"),
                 note="Solid: voluntary; hatched: involuntary. Whiskers: the total's min–max "
                      "over rounds.")
    return Concept("Voluntary context switches: a blocking call sleeps", text, [fig])


def switch_getter(run):
    def get(model, sid):
        c = run.cell(model, sid)
        if not c or c.failed:
            return None
        vol, inv = c.stat("ctx_vol_per_req"), c.stat("ctx_invol_per_req")
        if vol is None or inv is None:
            return None
        total = [a + b for a, b in zip(vol[:3], inv[:3])]
        return C.Bar(type(vol)(total[0], total[1], total[2], vol.n), not c.clean, vol.median)
    return get


def preempt_clause(model, invol, threads, cpus):
    """'... more threads wanted the CPU than there were CPUs': only when
    invol >= PREEMPTED_MIN and the model ran more threads than server CPUs."""
    if invol is None or threads is None or invol < PREEMPTED_MIN or threads <= (cpus or 1):
        return None
    return ("%s ran up to %s threads on %d server CPU%s, so runnable threads queued for the "
            "CPU and the scheduler took it away mid-work." % (
                model, fmt.num(threads, 0), cpus or 1, "" if (cpus or 1) == 1 else "s"))


def involuntary(run, ch):
    scs = [s for s in run.scenarios if not s.open_loop]
    best = None
    for sc in scs:
        v = values(run, sc.id, "ctx_invol_per_req")
        if v:
            m = max(v, key=v.get)
            if best is None or v[m] > best[2]:
                best = (sc, m, v[m])
    if not best:
        return None
    sc, m, inv = best
    text = ("An involuntary switch is preemption: the scheduler takes the CPU from a thread "
            "that could still run. The most was %s: %s per request (%s)." % (
                m, fmt.switches(inv), sc.label))
    clause = preempt_clause(m, inv, run.cell(m, sc.id).med("threads_max"), run.server_cpus())
    if clause:
        text += " " + clause
    elif inv < PREEMPTED_MIN:
        text += " Below %.2f per request everywhere: no model was preempted often." % \
            PREEMPTED_MIN
    return Concept("Involuntary context switches: preemption", text)


# --- memory: process, thread, event loop -------------------------------------------

KIND_ORDER = ["process per connection", "thread per connection", "thread pool", "coroutines",
              "event loop"]


def memory_order_clause(by_kind):
    """Why a process costs more than a thread, and a thread more than an event
    loop: only when the measured order agrees."""
    p, t, e = (by_kind.get(k) for k in ("process per connection", "thread per connection",
                                        "event loop"))
    if None in (p, t, e) or not p > t > e:
        return None
    return ("A process carries its own page tables, stack and copied-on-write pages; a thread "
            "shares the address space and adds a stack and a kernel task; an event loop adds a "
            "buffer and a small struct per connection.")


def memory(run, ch):
    sc = most_held(run)
    if not sc:
        return None
    mem = values(run, sc.id, "mem_per_conn_kib")
    if len(mem) < 2:
        return None
    parts, by_kind, caveats = [], {}, []
    for kind in KIND_ORDER:
        ms = sorted((m for m in mem if architecture(m) == kind), key=lambda m: -mem[m])
        items = []
        for m in ms:
            ok, n = per_connection_premise(run, m, sc)
            if not ok:
                caveats.append("%s ran %s %s for %s connections, so its %s KiB is not the "
                               "cost of one per connection." % (
                                   m, fmt.num(n, 0) if n is not None else "an unknown number of",
                                   "processes" if "process" in kind else "threads",
                                   fmt.rps(sc.held), fmt.kib(mem[m])))
                continue
            extra = " (%s %s)" % (fmt.num(n, 0), "processes" if "process" in kind else
                                  "threads") if n is not None else ""
            if kind == "thread pool":
                extra = " (its threads exist before the connections, so their memory is not " \
                    "counted per connection)"
            items.append("%s %s KiB%s" % (m, fmt.kib(mem[m]), extra))
            by_kind.setdefault(kind, mem[m])
        if items:
            parts.append("%s: %s" % ({"process per connection": "a process per connection",
                                       "thread per connection": "a thread per connection",
                                       "thread pool": "a thread pool",
                                       "coroutines": "coroutines",
                                       "event loop": "an event loop"}[kind], ", ".join(items)))
    other = [m for m in mem if architecture(m) not in KIND_ORDER]
    if other:
        parts.append("other: " + ", ".join("%s %s KiB" % (m, fmt.kib(mem[m])) for m in other))
    text = "Memory per connection (%s, %s connections held; PSS added per connection): %s." % (
        sc.label, fmt.rps(sc.held), "; ".join(parts))
    if caveats:
        text += " " + " ".join(caveats)
    clause = memory_order_clause(by_kind)
    if clause:
        text += " " + clause
    fig = C.bars(ch, "memory.svg", "Memory per connection: " + sc.label,
                 "memory added per connection (KiB)", [(sc.label, sc.id)],
                 [m for m in models_in(run, sc.id) if m != CEILING],
                 bar_getter(run, "mem_per_conn_kib"))
    return Concept("Memory per connection: a process, a thread, an event loop", text, [fig])


# --- thread pool against thread per connection --------------------------------------


def pool_variants(run):
    """[(pool model, per-connection model, pool size)] present in the run."""
    out = []
    for m in run.models:
        size = variant_flags(m).get("pool")
        if base_model(m) == "threaded" and size and "threaded" in run.models:
            try:
                out.append((m, "threaded", int(size)))
            except ValueError:
                continue
    return out


def queue_clause(pool_model, size, held, timeouts):
    """'at most N of M connections were served at once': only when the pool
    is smaller than the connections held."""
    if held <= size:
        return None
    text = ("%s served at most %d of the %d connections at once; the other %d waited in its "
            "queue for a free thread" % (pool_model, size, held, held - size))
    if timeouts:
        text += " (wrk counted %s timeouts)" % fmt.rps(timeouts)
    return text + "."


def creation_clause(per_conn, cpu_pc, pool, cpu_pool):
    """Thread creation cost with Connection: close: only when the thread per
    connection spent at least 1.2x the pool's CPU per request."""
    if cpu_pc is None or cpu_pool is None or cpu_pc < 1.2 * cpu_pool:
        return None
    return ("With Connection: close, %s created and ended a thread for every connection: %s µs "
            "of CPU per request against %s's %s." % (per_conn, fmt.num(cpu_pc), pool,
                                                     fmt.num(cpu_pool)))


def pool(run, ch):
    pv = pool_variants(run)
    if not pv:
        return None
    pm, pc, size = pv[0]
    # where both served, the most connections held (that is where a pool differs)
    scs = [s for s in run.scenarios if not s.open_loop and all(
        run.cell(m, s.id) and run.cell(m, s.id).med("rps") for m in (pm, pc))]
    if not scs:
        return None
    sc = max(scs, key=lambda s: (s.held, s.connections))
    a, b = run.cell(pm, sc.id), run.cell(pc, sc.id)
    text = ("%s (%s): %s against %s: %s threads against %s, %s against %s req/s, p99 %s against "
            "%s ms, %s against %s KiB per connection." % (
                sc.label, "a pool of %d threads" % size, pm, pc,
                fmt.num(a.med("threads_max"), 0), fmt.num(b.med("threads_max"), 0),
                fmt.rps(a.med("rps")), fmt.rps(b.med("rps")), fmt.ms(a.med("lat_p99_us")),
                fmt.ms(b.med("lat_p99_us")), fmt.kib(a.med("mem_per_conn_kib")),
                fmt.kib(b.med("mem_per_conn_kib"))))
    clause = queue_clause(pm, size, sc.held, a.med("errors_timeout"))
    if clause:
        text += " " + clause
    for s in run.scenarios:
        if not s.keepalive and not s.open_loop and run.cell(pm, s.id) and run.cell(pc, s.id):
            clause = creation_clause(pc, run.cell(pc, s.id).med("cpu_us_per_req"), pm,
                                     run.cell(pm, s.id).med("cpu_us_per_req"))
            if clause:
                text += " " + clause
            break
    return Concept("A thread pool against a thread per connection", text)


# --- softirqs -------------------------------------------------------------------


def softirq_clause(rx_close, rx_ka):
    """More NET_RX per request with Connection: close: only when measured so."""
    if rx_close is None or rx_ka is None or rx_close <= 1.2 * rx_ka:
        return None
    return ("With Connection: close each request also carries the handshake and teardown "
            "packets: %s NET_RX softirqs per request against %s with keep-alive."
            % (fmt.num(rx_close, 2), fmt.num(rx_ka, 2)))


def median_over(run, sid, key):
    v = sorted(values(run, sid, key).values())
    return v[len(v) // 2] if v else None


def softirqs(run, ch):
    sc = light(run)
    if not sc:
        return None
    rx, tx = values(run, sc.id, "softirq_net_rx_per_req"), values(run, sc.id,
                                                                    "softirq_net_tx_per_req")
    if not rx:
        return None
    lo, hi = min(rx, key=rx.get), max(rx, key=rx.get)
    text = ("A packet is processed in a softirq (NET_RX on receive, NET_TX on send), the "
            "interrupt side of a request: it runs in kernel context, not in any server thread, "
            "and /proc/softirqs counts it on every CPU, so client and server packets both "
            "count. %s: %s to %s NET_RX per request (%s, %s)" % (
                sc.label, fmt.num(rx[lo], 2), fmt.num(rx[hi], 2), lo, hi))
    if tx:
        text += ", %s to %s NET_TX" % (fmt.num(min(tx.values()), 3), fmt.num(max(tx.values()), 3))
    text += "."
    close = next((s for s in run.scenarios if not s.keepalive and not s.open_loop
                  and s.size == sc.size), None)
    if close:
        clause = softirq_clause(median_over(run, close.id, "softirq_net_rx_per_req"),
                                median_over(run, sc.id, "softirq_net_rx_per_req"))
        if clause:
            text += " " + clause

    def get(model, sid):
        c = run.cell(model, sid)
        r, t = (c.stat("softirq_net_rx_per_req"), c.stat("softirq_net_tx_per_req")) if c else \
            (None, None)
        if r is None:
            return None
        t = t or type(r)(0, 0, 0, r.n)
        return C.Bar(type(r)(r.min + t.min, r.median + t.median, r.max + t.max, r.n),
                     not c.clean, r.median)
    fig = C.bars(ch, "softirqs.svg", "Network softirqs per request: " + sc.label,
                 "softirqs per request (all CPUs)", [(sc.label, sc.id)], models_in(run, sc.id),
                 get, split=("NET_RX", "NET_TX"))
    return Concept("Softirqs: the interrupt side of a request", text, [fig])


# --- cooperative scheduling ---------------------------------------------------------


def coop_clause(model, user, vol):
    """'switched in user space, not in the kernel': only when the model made
    at least COOP_MIN user-level switches and at most READY_MAX voluntary
    kernel switches per request."""
    if user is None or vol is None or user < COOP_MIN or vol > READY_MAX:
        return None
    return ("%s's coroutines yielded to each other in user space where a thread would have "
            "blocked, so the waiting cost no kernel context switch." % model)


def cooperative(run, ch):
    for sc in [light(run)] + run.scenarios:
        if sc is None or sc.open_loop:
            continue
        for c in contenders(run, sc.id):
            names = [n for n in c.counters() if "switch" in n]
            if not names:
                continue
            user = c.counter_per_req(names[0])
            if user is None:
                continue
            vol = c.med("ctx_vol_per_req")
            text = ("Cooperative scheduling (%s): %s made %s user-level switches per request "
                    "(model counter %s) and %s voluntary kernel switches." % (
                        sc.label, c.model, fmt.num(user.median, 2), names[0], fmt.switches(vol)))
            clause = coop_clause(c.model, user.median, vol)
            if clause:
                text += " " + clause
            return Concept("Cooperative scheduling: switches in user space", text)
    return None


# --- syscalls and CPU --------------------------------------------------------------


def syscalls(run, ch):
    sc = light(run)
    if not sc:
        return None
    v = values(run, sc.id, "syscalls_per_req")
    if len(v) < 2:
        return None
    hi, lo = max(v, key=v.get), min(v, key=v.get)
    text = ("Every syscall is a kernel entry that costs CPU time. %s: %s made %s syscalls per "
            "request, %s %s." % (sc.label, hi, fmt.num(v[hi]), lo, fmt.num(v[lo])))
    fig = C.bars(ch, "syscalls.svg", "Syscalls per request: " + sc.label,
                 "syscalls per request", [(sc.label, sc.id)], models_in(run, sc.id),
                 bar_getter(run, "syscalls_per_req"))
    cpu = C.bars(ch, "cpu.svg", "CPU per request: " + sc.label, "server CPU per request (µs)",
                 [(sc.label, sc.id)], models_in(run, sc.id),
                 bar_getter(run, "cpu_us_per_req", "cpu_user_us_per_req"),
                 split=("user", "kernel"),
                 note="Solid: user time; hatched: kernel (system) time.")
    return Concept("Syscalls and CPU time per request", text, [fig, cpu])


CONCEPTS = [voluntary, involuntary, memory, pool, softirqs, cooperative, syscalls]


def concepts(run, ch):
    return [c for c in (f(run, ch) for f in CONCEPTS) if c]
