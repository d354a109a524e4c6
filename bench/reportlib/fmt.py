"""How numbers are written, in one place so tables, findings and compare agree.
None is always written "n/a": a value that was not measured is never 0."""

NA = "n/a"


def rps(v):
    return NA if v is None else "{:,.0f}".format(v)


def rps1(v):
    """A rate that may be below 1 per second: '0.2', '4.2', '9,318'."""
    if v is None:
        return NA
    return "%.1f" % v if v < 10 else rps(v)


def ms(us):
    """Latency given in µs, written in ms with three significant digits."""
    if us is None:
        return NA
    v = us / 1000.0
    if v < 10:
        return "%.2f" % v
    if v < 100:
        return "%.1f" % v
    return "{:,.0f}".format(v)


def slo(us):
    """An SLO given in µs, in ms without trailing zeros: '10', '2.5'."""
    return NA if us is None else "%g" % (us / 1000.0)


def num(v, digits=1):
    return NA if v is None else "{:,.{}f}".format(v, digits)


def switches(v):
    return NA if v is None else "%.3f" % v


def pct(v):
    return NA if v is None else "%.0f%%" % v


def kib(v):
    return NA if v is None else "%.1f" % v


def mib(kib_value):
    return NA if kib_value is None else "%.1f" % (kib_value / 1024.0)


def series(items):
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def count(v, noun):
    """'1 process', '66 threads', 'n/a processes'."""
    if v is None:
        return "n/a %ses" % noun if noun.endswith("s") else "n/a %ss" % noun
    n = "{:,.0f}".format(v)
    if n == "1":
        return "1 " + noun
    return "%s %s" % (n, noun + "es" if noun.endswith("s") else noun + "s")


def times(a, b):
    """'3.2×' for a/b, or None when b is 0 or missing."""
    if a is None or not b:
        return None
    r = a / b
    return "%.0f×" % r if r >= 10 else "%.1f×" % r


def spread(stat, f):
    """'min–max' of a Stat with formatter f, or '' with fewer than two rounds."""
    if stat is None or stat.n < 2:
        return ""
    return "%s–%s" % (f(stat.min), f(stat.max))


def with_spread(stat, f, unit=""):
    """'median (min–max)' of a Stat; the median alone with one round. unit
    is written once, after the median ('97% (95–99)')."""
    if stat is None:
        return NA
    s = spread(stat, f)
    return "%s%s (%s)" % (f(stat.median), unit, s) if s else f(stat.median) + unit
