/*
 * workers.c - start n worker threads, wait for the stop, join them (workers.h).
 */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The start-up handshake: each worker reports its init; once all have, the
 * main thread says go (or stop). */
typedef struct latch_s {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int reported; /* workers whose init has returned */
    int err;      /* the first init error */
    int verdict;  /* 0 while starting, 1: serve, -1: stop */
} latch_t;

typedef struct worker_s {
    const c10k_worker_ops_t *ops;
    c10k_server_t *srv;
    latch_t *latch;
    int id;
    int err;
    pthread_t thread;
    void *state;
} worker_t;

static void latch_set(latch_t *l, int reported, int err, int verdict)
{
    pthread_mutex_lock(&l->lock);
    l->reported += reported;
    if (err < 0 && l->err == 0)
        l->err = err;
    if (verdict)
        l->verdict = verdict;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

/* Wait until at least `reported` inits have returned (and return the first
 * error), or, with reported < 0, until the verdict (and return it). */
static int latch_wait(latch_t *l, int reported)
{
    int rc;

    pthread_mutex_lock(&l->lock);
    while (reported >= 0 ? l->reported < reported : l->verdict == 0)
        pthread_cond_wait(&l->changed, &l->lock);
    rc = reported >= 0 ? l->err : l->verdict;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    int rc;

    c10k_pin_worker(w->srv, w->id); /* main() has checked --cpus: best effort */
    rc = w->ops->init(w->state, w->srv, w->id);
    latch_set(w->latch, 1, rc, 0);
    /* Serve only once every worker is up: a half-started server stops. */
    if (rc == 0 && latch_wait(w->latch, -1) > 0) {
        rc = w->ops->serve(w->state);
        if (rc < 0) /* the main thread's sigwait turns it into a stop of all */
            kill(getpid(), SIGTERM);
    }
    w->ops->fini(w->state);
    w->err = rc;
    return NULL;
}

/* Workers are set up one at a time: while one runs its init, no other thread
 * opens or closes anything, so an init that checks what it is about to need
 * (see libevent's) sees the truth, and a failure stops the start-up early. */
static int start_workers(c10k_server_t *srv, const c10k_worker_ops_t *ops, latch_t *latch,
                         worker_t *ws, char *states, int n, int *started)
{
    int rc = 0;

    for (*started = 0; *started < n && rc == 0; (*started)++) {
        worker_t *w = &ws[*started];
        *w = (worker_t){ops, srv, latch, *started, 0, 0, states + (size_t)*started * ops->size};
        rc = -pthread_create(&w->thread, NULL, worker_main, w);
        if (rc < 0) {
            c10k_warn(srv, "worker %d: pthread_create: %s", *started, strerror(-rc));
            return rc;
        }
        rc = latch_wait(latch, *started + 1);
    }
    return rc;
}

int c10k_run_workers(c10k_server_t *srv, const c10k_worker_ops_t *ops)
{
    latch_t latch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    int n = c10k_worker_count(srv), started = 0, rc = -ENOMEM;
    worker_t *ws = calloc((size_t)n, sizeof(*ws));
    char *states = calloc((size_t)n, ops->size);

    if (!ws || !states)
        goto out;
    rc = start_workers(srv, ops, &latch, ws, states, n, &started);
    latch_set(&latch, 0, 0, rc == 0 ? 1 : -1);
    if (rc == 0)
        c10k_wait_for_stop(srv);
    else
        c10k_request_stop(srv);
    for (int i = 0; i < started; i++) {
        pthread_join(ws[i].thread, NULL);
        if (rc == 0 && ws[i].err < 0)
            rc = ws[i].err;
    }
out:
    free(states);
    free(ws);
    return rc;
}

int c10k_worker_listener(const c10k_server_t *srv, int id, bool shared)
{
    return id == 0 || shared ? srv->listen_fd : c10k_listen_more(srv);
}

void c10k_worker_listener_close(const c10k_server_t *srv, int fd)
{
    if (fd < 0)
        return;
    if (fd == srv->listen_fd)
        shutdown(fd, SHUT_RDWR);
    else
        close(fd);
}
