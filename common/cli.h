/*
 * cli.h - the value parsers of every c10k command line (c10k serve, and the
 * programs beside it such as bench/ceiling), so a bad value gets the same
 * message everywhere:
 *
 *     CMD: --FLAG 'VALUE': what was wanted
 *
 * Each parser returns 0, or -EINVAL after printing that line to stderr; the
 * caller then exits with status 2.
 */
#ifndef C10K_CLI_H
#define C10K_CLI_H

#include <stdbool.h>

/* A whole number in [min, max], decimal. */
int c10k_parse_uint(const char *cmd, const char *flag, const char *s, long min, long max,
                    long *out);

/* Seconds, more than 0 and at most a day, decimals allowed ("0.5"), stored
 * in milliseconds (at least 1). */
int c10k_parse_seconds(const char *cmd, const char *flag, const char *s, int *ms);

/* A finite decimal in [min, max] ("0.5", "2e3"); with zero_ok, 0 is also
 * accepted below min (e.g. "--warmup 0": none). */
int c10k_parse_real(const char *cmd, const char *flag, const char *s, double min, double max,
                    bool zero_ok, double *out);

/* A CPU list for --cpus ("0", "0-1,3") of CPUs that exist here, in order,
 * ranges expanded: at most cap of them into cpus[], their count into *n. */
int c10k_parse_cpus(const char *cmd, const char *s, int *cpus, int cap, int *n);

#endif
