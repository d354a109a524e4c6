/*
 * cli.c - the value parsers of every c10k command line (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int bad_value(const char *cmd, const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "%s: --%s '%s': %s\n", cmd, flag, value, want);
    return -EINVAL;
}

int c10k_parse_uint(const char *cmd, const char *flag, const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        char want[80];
        snprintf(want, sizeof(want), "want a whole number from %ld to %ld", min, max);
        return bad_value(cmd, flag, s, want);
    }
    *out = v;
    return 0;
}

int c10k_parse_seconds(const char *cmd, const char *flag, const char *s, int *ms)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 86400)
        return bad_value(cmd, flag, s,
                         "want seconds, more than 0 and at most 86400 (e.g. 5 or 0.5)");
    *ms = (int)(v * 1000 + 0.5);
    if (*ms < 1)
        *ms = 1;
    return 0;
}

int c10k_parse_real(const char *cmd, const char *flag, const char *s, double min, double max,
                    bool zero_ok, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v > max || (v < min && !(zero_ok && v == 0))) {
        char want[96];
        snprintf(want, sizeof(want), "want a number from %g to %g%s", min, max,
                 zero_ok && min > 0 ? ", or 0" : "");
        return bad_value(cmd, flag, s, want);
    }
    *out = v;
    return 0;
}

int c10k_parse_cpus(const char *cmd, const char *s, int *cpus, int cap, int *n)
{
    const char *p = s;
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);

    *n = 0;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || *p == '-' || *p == '+')
            goto bad;
        if (*end == '-') {
            p = end + 1;
            hi = strtol(p, &end, 10);
            if (end == p)
                goto bad;
        }
        if (lo < 0 || hi < lo || hi >= ncpu)
            goto bad;
        for (long c = lo; c <= hi; c++) {
            if (*n == cap)
                goto bad;
            cpus[(*n)++] = (int)c;
        }
        p = end;
        if (*p == ',' && p[1]) /* "0," is a typo, not a list */
            p++;
        else if (*p)
            goto bad;
    }
    if (*n > 0)
        return 0;
bad:
    return bad_value(cmd, "cpus", s, "want CPU numbers that exist here, e.g. 0 or 0-1,3");
}
