/*
 * workers.h - the worker start/stop skeleton the event models share.
 *
 * An event model runs one loop per worker thread. Every such model starts
 * and stops the same way, so it is written once here:
 *
 *     c10k_run_workers()            worker thread i (pinned to --cpus[i])
 *       start n threads  ------->     ops->init(w, srv, i)   set up the loop
 *       wait until all are ready <-   (ready, or failed)
 *       sleep in sigwaitinfo          ops->serve(w)          until stop_fd says stop
 *       SIGTERM: request the stop        ... in-flight responses finish (--grace)
 *       join every thread        <-   ops->fini(w)           close what it opened
 *
 * init, serve and fini all run in the worker's own thread: io_uring with
 * SINGLE_ISSUER, for one, must be used only by the thread that created it.
 * The inits run one at a time, so a worker's set-up never races another's
 * for descriptors. If one fails, no further worker starts, every worker
 * already up is stopped, and the first error is returned.
 */
#ifndef C10K_WORKERS_H
#define C10K_WORKERS_H

#include "server.h"

typedef struct c10k_worker_ops_s {
    size_t size; /* bytes of one worker's state; zeroed before init */
    /* Set up worker `id`. Returns 0 or a negative errno (after c10k_warn()
     * saying why). On failure the state must still be safe for fini: set
     * descriptors to -1 before anything can fail. */
    int (*init)(void *w, c10k_server_t *srv, int id);
    /* Serve until the stop (and its --grace) is over. Returns 0 or a negative
     * errno; on an error the worker requests the stop itself. */
    int (*serve)(void *w);
    /* Release everything init and serve acquired. Called once, also after a
     * failed init. */
    void (*fini)(void *w);
} c10k_worker_ops_t;

/* Run c10k_worker_count(srv) workers until SIGINT or SIGTERM. Returns 0 on a
 * clean stop, or the first negative errno a worker reported. */
int c10k_run_workers(c10k_server_t *srv, const c10k_worker_ops_t *ops);

/* The listener of worker `id`: the server's own for worker 0 (or for every
 * worker when shared is true), otherwise a new SO_REUSEPORT listener on the
 * same address. Returns the fd or a negative errno. */
int c10k_worker_listener(const c10k_server_t *srv, int id, bool shared);

/* Stop listening on a worker's listener: a listener of the worker's own is
 * closed; the server's own (main() owns it) is only shut down, which takes
 * it out of the SO_REUSEPORT group so new clients are refused, not queued. */
void c10k_worker_listener_close(const c10k_server_t *srv, int fd);

#endif
