/*
 * server.h - what every concurrency model shares: the settings, the model
 * interface, listeners, stop signalling, and the socket boundary.
 *
 * A model is one file in servers/<model>/ that exports one c10k_model_t.
 * The Makefile lists the model files; there is no #ifdef per model anywhere.
 * c10k's main() parses the common flags, opens the root and the first
 * listener, prints the start line, and calls model->run(). run() returns when
 * the server has stopped: 0 for a clean stop, a negative errno otherwise.
 *
 * Who owns what
 *   main()       srv->listen_fd, srv->stop_fd, srv->log_fd and site.root_fd:
 *                open before run(), valid until the process exits. A model
 *                never closes them; at stop it shuts the listener down
 *                (c10k_worker_listener_close()) so that new clients are
 *                refused rather than queued, and never reads stop_fd.
 *   a worker     the listeners it made with c10k_listen_more(), its poller
 *                (epoll fd, event base, uv loop, ring) and its buffer pool:
 *                it closes and frees them in its own teardown, which must be
 *                safe on a half-built worker (descriptors preset to -1).
 *   a connection its socket (closed by whoever ends the connection: the
 *                model, when conn.h says C10K_CLOSE or --grace runs out) and
 *                its c10k_io_t, which the model lends and takes back
 *                (c10k_conn_idle_io(), c10k_conn_end()).
 *   a response   its body_fd, opened by the handler and closed by
 *                c10k_resp_finish(); conn.h calls it when the response is
 *                done or abandoned, so a model never closes it itself
 *                (uring closes it on the ring: c10k_resp_take_fd()). With
 *                --open-file-cache the descriptor may be the cache's
 *                (resp->body_ref): the response holds a reference, which
 *                c10k_resp_finish() gives back, on the thread that made
 *                the plan.
 *   a thread     its open-file cache (filecache.h), made on the first
 *                request it handles and freed when it exits.
 */
#ifndef C10K_SERVER_H
#define C10K_SERVER_H

#include "http.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#define C10K_CPUS_MAX 256

/* Settings from the common flags (c10k serve --help). Times are in ms. */
typedef struct c10k_config_s {
    const char *bind;         /* --bind, default 127.0.0.1 */
    int port;                 /* --port, default 8080; 0 picks a free port */
    const char *root;         /* --root, default . */
    int workers;              /* --workers, 0 = the number of CPUs usable */
    int cpus[C10K_CPUS_MAX];  /* --cpus, the CPUs to pin to */
    int ncpus;                /* 0 = not pinned */
    int keepalive_ms;         /* --keepalive-timeout, default 5 s */
    int header_ms;            /* --header-timeout, default 10 s */
    unsigned max_requests;    /* --max-requests per connection, 0 = unlimited */
    const char *access_log;   /* --access-log FILE, NULL = off */
    const char *stats_file;   /* --stats-file FILE, NULL = off (stats.h) */
    int grace_ms;             /* --grace, in-flight grace on stop, default 10 s */
    int backlog;              /* --backlog, default 4096 */
    int lingering_time_ms;    /* --lingering-time, default 30 s (conn.h) */
    int lingering_timeout_ms; /* --lingering-timeout, default 5 s (conn.h) */
    unsigned fcache_max;      /* --open-file-cache, entries per worker; 0 = off (default) */
    int fcache_valid_ms;      /* --open-file-cache-valid, default 60 s */
} c10k_config_t;

/* The running server as every model sees it. */
typedef struct c10k_server_s {
    c10k_config_t cfg;
    c10k_site_t site;
    const struct c10k_model_s *model;
    int listen_fd;        /* first listener, bound and listening, O_NONBLOCK, SO_REUSEPORT */
    int port;             /* the port actually bound */
    int stop_fd;          /* eventfd: readable once a stop is requested. Poll it, never read it. */
    atomic_bool stopping; /* set together with stop_fd */
    int log_fd;           /* access log, or -1 */
} c10k_server_t;

/* A model-specific flag. arg == NULL means a boolean flag. */
typedef struct c10k_opt_s {
    const char *name; /* without the leading "--" */
    const char *arg;  /* metavariable for help, e.g. "N"; NULL for booleans */
    const char *help;
} c10k_opt_t;

typedef struct c10k_model_s {
    const char *name;       /* as in `c10k serve NAME` */
    const char *summary;    /* one line for `c10k models` */
    const c10k_opt_t *opts; /* model flags, terminated by a zeroed entry; may be NULL */
    /* Flag sets the conformance suite runs this model with, besides the
     * defaults, e.g. "--pool 4". NULL-terminated; may be NULL. */
    const char *const *variants;
    /* True when each connection gets its own thread or process, so --workers
     * is not a count of event loops (prefork reads it as a fixed pool size).
     * c10k bench leaves --workers out for such a model and lets it size itself
     * to the load, as Apache prefork or a thread-per-connection server is run. */
    bool per_connection;
    /* Apply one model flag; value is NULL for booleans. Returns 0, or
     * -EINVAL after printing what is wrong with the value. */
    int (*set_opt)(const char *name, const char *value);
    /* A short description of the model settings for the start line, written
     * into buf (e.g. "pool=4 stack=64KiB"). */
    void (*describe)(const c10k_server_t *srv, char *buf, size_t cap);
    /* Optional: check that this kernel can run the model, before anything is
     * bound or printed. Returns 0, or -EOPNOTSUPP after printing why (c10k
     * then exits with status 2). */
    int (*probe)(void);
    /* Serve until stopped. Returns 0 on a clean stop, or a negative errno;
     * -EOPNOTSUPP (after printing why) when the kernel lacks what it needs. */
    int (*run)(c10k_server_t *srv);
} c10k_model_t;

/* The models built into this binary (build/models.c, made by the Makefile). */
extern const c10k_model_t *const c10k_models[];

/* A client that takes nothing of a response for this long loses its
 * connection, in every model: as nginx's send_timeout (60 s there; shorter
 * here, since a blocked write pins a whole thread or process in the blocking
 * models). Every listener also sets it as TCP_USER_TIMEOUT, so the kernel
 * enforces it where a model's own timer cannot (see c10k_sock_tune()). */
#define C10K_SEND_TIMEOUT_MS 30000

/* Lingering close defaults (conn.h), as nginx's lingering_time and
 * lingering_timeout. */
#define C10K_LINGERING_TIME_MS    30000
#define C10K_LINGERING_TIMEOUT_MS 5000

/* --- socket boundary: wrk-style three-way status ------------------------ */

typedef enum { C10K_OK = 0, C10K_AGAIN = 1, C10K_ERROR = -1 } c10k_status_t;

/* --- listeners ------------------------------------------------------------ */

/* The first listener: bound to cfg.bind and cfg.port (0: the kernel picks a
 * port), SO_REUSEPORT so workers can add their own with c10k_listen_more(),
 * tuned by c10k_sock_tune(); sets srv->port to the port bound. Returns the fd
 * (O_NONBLOCK), or a negative errno with *why naming the step that failed
 * (-EINVAL: cfg.bind is not a numeric IPv4 or IPv6 address). */
int c10k_listen_first(c10k_server_t *srv, const char **why);

/* Another listener on the server's address and port with SO_REUSEPORT, for
 * models with one listener per worker. Returns the fd (O_NONBLOCK) or a
 * negative errno. */
int c10k_listen_more(const c10k_server_t *srv);

/* Set TCP_NODELAY, TCP_NOTSENT_LOWAT and TCP_USER_TIMEOUT on a listening
 * socket before listen(). Every socket it accepts inherits them (Linux copies
 * them at the handshake, before accept), so models never tune accepted
 * sockets: it costs no syscall per connection, and direct descriptors
 * (io_uring) get them too.
 * The listeners c10k serve and c10k_listen_more() make are already tuned.
 * Returns 0 or a negative errno. */
int c10k_sock_tune(int fd);

/* --- stop and signals ----------------------------------------------------- */

/* Request a stop: sets srv->stopping and makes srv->stop_fd readable.
 * Async-signal-safe. */
void c10k_request_stop(c10k_server_t *srv);

/* Block SIGINT, SIGTERM, SIGHUP and SIGCHLD in the calling thread, and ignore
 * SIGPIPE. Call it before any thread or child exists, so they are blocked
 * everywhere and arrive only where a model waits for them (sigwaitinfo,
 * signalfd); SIGPIPE never kills a server. */
void c10k_block_signals(void);

/* A c10k test wants thousands of descriptors: raise RLIMIT_NOFILE's soft
 * limit to the hard one (no-op if that fails). */
void c10k_raise_nofile(void);

/* For threaded models: block in the calling thread until SIGINT or SIGTERM
 * arrives (main() has already blocked them in every thread), then request a
 * stop. Returns the signal number. */
int c10k_wait_for_stop(c10k_server_t *srv);

/* --- CPU pinning ------------------------------------------------------------ */

/* Pin the calling thread to the i-th CPU of --cpus (round robin); no-op when
 * --cpus is not given. Returns 0 or a negative errno. */
int c10k_pin_worker(const c10k_server_t *srv, int i);

/* Number of workers to run: --workers, or the CPUs this process may use. */
int c10k_worker_count(const c10k_server_t *srv);

/* --- time -------------------------------------------------------------------- */

/* Monotonic clock in milliseconds. */
int64_t c10k_now_ms(void);

/* --- logging ------------------------------------------------------------------ */

/* Append one access-log line for resp (one write(2), so lines from threads and
 * processes never interleave). No-op when the access log is off. */
void c10k_log_access(const c10k_server_t *srv, const struct sockaddr *peer, const c10k_resp_t *resp,
                     size_t bytes_sent);

/* Print "c10k: <model>: <message>" to stderr, printf-style. */
void c10k_warn(const c10k_server_t *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- blocking connections (threaded, prefork) -------------------------------- */

struct c10k_io_s;

/*
 * Serve one accepted connection to its end with blocking I/O: the lifecycle
 * of conn.h, where every wait is a sleep in poll (reading, lingering, with
 * the deadline as its timeout, watching stop_fd) or in a blocking send
 * (bounded by SO_SNDTIMEO). io is the caller's, ready (c10k_io_init()) and
 * reusable for the next connection. Closes fd. Returns the number of
 * responses planned.
 */
unsigned c10k_serve_blocking(c10k_server_t *srv, int fd, const struct sockaddr *peer,
                             struct c10k_io_s *io);

/*
 * Send a whole plan on a blocking socket: head, then body. Returns C10K_OK or
 * C10K_ERROR (peer gone, timeout). *sent gets the bytes sent.
 */
c10k_status_t c10k_send_plan_blocking(const c10k_server_t *srv, int fd, const c10k_resp_t *resp,
                                      const char *head, size_t *sent);

/* --- non-blocking sending (event models) ------------------------------------ */

/*
 * Progress of sending one plan on a non-blocking socket. Zero it, then call
 * c10k_send_plan_nb() until it returns C10K_OK (all sent) or C10K_ERROR; on
 * C10K_AGAIN wait for the socket to be writable and call again.
 */
typedef struct c10k_sendstate_s {
    size_t done; /* bytes of head + body sent so far */
} c10k_sendstate_t;

c10k_status_t c10k_send_plan_nb(int fd, const c10k_resp_t *resp, const char *head,
                                c10k_sendstate_t *st);

#endif
