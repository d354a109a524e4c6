/*
 * gen.h - what the files of `c10k load` share: the settings (load.c parses
 * them), one generator thread with its connections (loop.c runs it), and the
 * merged result (report.c prints and writes it). Times are CLOCK_MONOTONIC
 * nanoseconds.
 */
#ifndef C10K_LOAD_GEN_H
#define C10K_LOAD_GEN_H

#include "hist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define C10K_LOAD_CPUS_MAX 256
#define C10K_LOAD_NS       1000000000LL

/* Error kinds, in the order of the JSON "errors" object. */
typedef enum {
    C10K_LOAD_ERR_CONNECT,
    C10K_LOAD_ERR_READ,
    C10K_LOAD_ERR_WRITE,
    C10K_LOAD_ERR_TIMEOUT,
    C10K_LOAD_ERR_STATUS,
    C10K_LOAD_ERR_KINDS
} c10k_load_err_t;

extern const char *const c10k_load_err_names[C10K_LOAD_ERR_KINDS];

/* The command line, resolved, and the request bytes built once from it. */
typedef struct c10k_load_cfg_s {
    const char *url;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    double rate;       /* --rate, requests per second over all connections */
    long connections;  /* --connections */
    double duration_s; /* --duration: the measured window */
    double warmup_s;   /* --warmup: scheduled but not recorded */
    double timeout_s;  /* --timeout: a request unanswered this long after its send */
    double max_lag_s;  /* --max-lag: the p99 send lag beyond which the run is invalid */
    int threads;       /* --threads */
    int cpus[C10K_LOAD_CPUS_MAX];
    int ncpus;     /* --cpus; 0 = not pinned */
    bool poisson;  /* --poisson */
    uint64_t seed; /* --seed */
    const char *paths_file;
    const char *json_path;
    /* Every request, built once: request k is reqbuf[req_off[k] .. + req_len[k]). */
    char *reqbuf;
    size_t *req_off;
    uint32_t *req_len;
    size_t nreq;
} c10k_load_cfg_t;

typedef enum { CONN_DOWN, CONN_CONNECTING, CONN_IDLE, CONN_WAITING } c10k_load_conn_state_t;

/* One keep-alive connection and its own schedule: request seq on connection
 * id is due at t0 + (id + seq * C) / R (fixed), or after exponential gaps of
 * mean C / R (Poisson), whatever the connection is doing. */
typedef struct c10k_load_conn_s {
    int fd;
    uint32_t id;        /* global connection number */
    uint8_t state;      /* c10k_load_conn_state_t */
    bool want_out;      /* EPOLLOUT registered: connecting or a partial write */
    bool in_head;       /* reading the response head (else the body) */
    bool close_after;   /* the response said Connection: close */
    int heap_pos;       /* index in the thread's idle heap, -1 when not in it */
    int status;         /* status of the response being read */
    int64_t next_due;   /* intended send time of the next request */
    int64_t due;        /* intended send time of the request in flight */
    int64_t sent_at;    /* when it was written */
    int64_t since;      /* when the connect started, or when to retry it (DOWN) */
    uint64_t seq;       /* requests taken from the schedule so far */
    uint64_t rng;       /* Poisson stream state */
    uint64_t body_left; /* body bytes still to read */
    uint32_t req;       /* request being written */
    uint32_t wr_off;    /* bytes of it written */
    char *head;         /* a response head split across reads, allocated once */
    uint32_t head_len;
    uint64_t completed; /* responses in the window */
} c10k_load_conn_t;

/* One second of the window, per thread: counts, and the latency histogram of
 * that second stored sparsely as [upper_ns, count] pairs in pairs[off..off+n). */
typedef struct {
    uint64_t completed;
    uint64_t errors;
    size_t off;
    size_t n;
} c10k_load_sec_t;

typedef struct {
    uint64_t upper_ns;
    uint64_t count;
} c10k_load_pair_t;

/* What every thread reads once the connections are up. */
typedef struct c10k_load_clock_s {
    int64_t t0;   /* schedule start */
    int64_t w0;   /* window start: t0 + warm-up */
    int64_t wend; /* window end; the run stops here */
    bool abort;   /* no connection came up: stop without running */
} c10k_load_clock_t;

typedef struct c10k_load_thread_s {
    const c10k_load_cfg_t *cfg;
    c10k_load_clock_t *clock;
    pthread_barrier_t *ready; /* connections up (or given up) */
    pthread_barrier_t *go;    /* clock set */
    int id;
    pthread_t tid;
    int ep;
    c10k_load_conn_t *conns;
    size_t nconns;
    c10k_load_conn_t **heap; /* idle connections by next_due */
    size_t heap_len;
    char *rbuf;
    int64_t t0, w0, wend, last_area;
    uint64_t inflight; /* sent, not yet answered */
    int err;           /* setup failure (negative errno), 0 if none */
    size_t connected;  /* connections up after the connect phase */
    /* Results, all for the window only. */
    c10k_hist_t hist;     /* latency from the intended send time */
    c10k_hist_t lag;      /* send time - intended time of timer-driven sends */
    c10k_hist_t read_lag; /* read time - arrival time of a response's last segment */
    int64_t arrived;      /* arrival of the last segment of the latest read, or 0 */
    int64_t real_off;     /* CLOCK_REALTIME - CLOCK_MONOTONIC */
    c10k_hist_t sec_hist; /* the current second's latencies */
    long sec_cur;
    c10k_load_sec_t *secs;
    size_t nsecs;
    c10k_load_pair_t *pairs;
    size_t npairs, cap_pairs;
    uint64_t errors[C10K_LOAD_ERR_KINDS];
    char first_error[C10K_LOAD_ERR_KINDS][96];
    uint64_t bytes;
    double service_ns;   /* sum of (answered - written) */
    double inflight_ns;  /* integral of inflight over the window */
    int64_t busy_ns;     /* time outside epoll_wait in the window */
    uint64_t unfinished; /* due before the end, not answered by it */
    int64_t oldest_due;  /* intended time of the oldest of those */
    uint64_t scheduled;  /* intended times in [t0, wend): fixed by the schedule and seed */
} c10k_load_thread_t;

/* Parse `c10k load` argv (argv[0] == "load") into cfg, resolve the URL and
 * build the request bytes (cli.c). Returns 0, 1 when --help was asked for,
 * or -EINVAL after printing one line saying what is wrong. */
int c10k_load_parse_args(c10k_load_cfg_t *cfg, int argc, char **argv);

/* The --help text. */
void c10k_load_usage(FILE *f);

/* Free what c10k_load_parse_args() allocated. */
void c10k_load_cfg_free(c10k_load_cfg_t *cfg);

/* The thread body (loop.c): connect, wait for the clock, run the schedule
 * until clock->wend, then count what was left unfinished. Returns NULL. */
void *c10k_load_thread_main(void *arg);

/* Everything the threads measured, merged (report.c). */
typedef struct c10k_load_result_s {
    c10k_hist_t hist, lag, read_lag;
    uint64_t errors[C10K_LOAD_ERR_KINDS];
    uint64_t errors_total;
    uint64_t bytes;
    uint64_t unfinished;
    uint64_t scheduled;
    int64_t oldest_due; /* intended time of the oldest of them */
    int64_t wend;       /* the window's end */
    double service_ns, inflight_ns;
    double busy_max; /* largest fraction of the window a thread was busy */
    int busy_thread;
    double client_cpu; /* CPU seconds of the whole process over the window */
    size_t connected;
    size_t nsecs;
    c10k_load_sec_t *secs; /* merged; off/n unused */
    uint64_t *sec_p99_ns;  /* per second, 0 when the second had no response */
    const char *first_error[C10K_LOAD_ERR_KINDS];
    bool valid;
    char invalid_reason[256];
} c10k_load_result_t;

/* Merge the threads' results into r (report.c). Returns 0 or -ENOMEM. */
int c10k_load_merge(c10k_load_result_t *r, c10k_load_thread_t *t, int nthreads);

/* True when fewer than 99% of the scheduled rate was answered in the window. */
bool c10k_load_below_target(const c10k_load_cfg_t *cfg, const c10k_load_result_t *r);

/* The wrk-like summary on out. */
void c10k_load_print_summary(FILE *out, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r);

/* Write the JSON document of CONTRACTS.md section 1 to f. Returns 0, or -EIO
 * when a write failed. */
int c10k_load_write_json(FILE *f, const c10k_load_cfg_t *cfg, const c10k_load_result_t *r,
                         c10k_load_thread_t *t, int nthreads);

void c10k_load_result_free(c10k_load_result_t *r);

#endif
