/*
 * servers/threaded/threaded.c - a thread per connection, or a fixed pool.
 *
 * What it is
 *   The oldest way to serve many clients: one acceptor thread, and every
 *   accepted connection gets a thread of its own that reads, sends and waits
 *   with plain blocking calls. The code reads top to bottom like a one-client
 *   server; the kernel does the multiplexing by putting threads to sleep.
 *   With --pool N, N threads are created once and take accepted connections
 *   from one bounded queue, so the cost of creating a thread per connection
 *   can be told apart from the cost of having a thread per connection.
 *
 * What it costs (the bench shows each of these as a number)
 *   - Every wait is a sleep: each request costs at least one voluntary
 *     context switch (poll for the request, then possibly the send).
 *   - A thread per connection: its stack (--stack-size, 64 KiB default,
 *     touched pages only) and a kernel task; 10,000 idle keep-alive clients
 *     are 10,000 threads.
 *   - With --pool N, at most N connections are served at once. An idle
 *     keep-alive client holds a pool thread until --keepalive-timeout, so
 *     slow or idle clients starve the rest (see the slow-clients profile).
 *   - --open-file-cache works per thread and without locks, so a pool
 *     thread keeps one. A thread per connection does not: its cache would
 *     die with its connection (a miss, an allocation and a teardown per
 *     connection instead of a saving), and one cache shared by every
 *     connection thread would need a lock taken on every request, which is
 *     exactly the cross-thread contention this model is meant not to have.
 *     So without --pool the flag is accepted and the cache stays off.
 *
 * What it needs
 *   POSIX threads and Linux poll/sendfile; nothing else.
 *
 * How to run it
 *   c10k serve threaded --root DIR --port 8080
 *   c10k serve threaded --pool 64 --queue 1024 --root DIR
 */
#include "cli.h"
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    size_t stack_size; /* bytes */
    int pool;          /* 0: a thread per connection */
    int queue;         /* pool mode: accepted connections waiting for a thread */
} opts = {64 * 1024, 0, 1024};

/* Live connection threads (or pool threads) and their exit, for the drain on
 * stop. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int live;
} threads = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

/* A connection handed from the acceptor to a serving thread. */
typedef struct conn_s {
    int fd;
    struct sockaddr_storage peer;
} conn_t;

/* The pool's queue: a ring of accepted connections. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    conn_t *ring;
    int head, count;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static c10k_server_t *server;

static void threads_add(int n)
{
    pthread_mutex_lock(&threads.lock);
    threads.live += n;
    pthread_cond_broadcast(&threads.changed);
    pthread_mutex_unlock(&threads.lock);
}

/* Wait for the serving threads to finish, at most grace_ms. Returns how many
 * were still running. */
static int threads_drain(int grace_ms)
{
    struct timespec until;
    int left;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += grace_ms / 1000;
    until.tv_nsec += (long)(grace_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&threads.lock);
    while (threads.live > 0)
        if (pthread_cond_timedwait(&threads.changed, &threads.lock, &until) == ETIMEDOUT)
            break;
    left = threads.live;
    pthread_mutex_unlock(&threads.lock);
    return left;
}

/* Buffers for one serving thread: the request and head buffers (conn.h). */
static c10k_io_t *buffers_new(void)
{
    c10k_io_t *io = malloc(sizeof(*io));

    if (io)
        c10k_io_init(io);
    return io;
}

/* --- thread per connection -------------------------------------------------- */

static void *connection_thread(void *arg)
{
    conn_t *c = arg;
    c10k_io_t *io = buffers_new();

    if (io)
        c10k_serve_blocking(server, c->fd, (struct sockaddr *)&c->peer, io);
    else
        close(c->fd);
    free(io);
    free(c);
    threads_add(-1);
    return NULL;
}

static int spawn_connection(conn_t *c)
{
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, opts.stack_size);
    threads_add(1);
    rc = pthread_create(&t, &attr, connection_thread, c);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        threads_add(-1);
        return -rc;
    }
    return 0;
}

/* --- pool ---------------------------------------------------------------------- */

/* Blocks while the queue is full: the acceptor stops accepting and new
 * clients wait in the kernel's listen backlog, as with Apache's worker MPM. */
static void queue_push(const conn_t *c)
{
    pthread_mutex_lock(&q.lock);
    while (q.count == opts.queue)
        pthread_cond_wait(&q.not_full, &q.lock);
    q.ring[(q.head + q.count) % opts.queue] = *c;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

/* Returns false once the server stops and the queue is empty. */
static bool queue_pop(conn_t *c)
{
    bool got = false;

    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && !atomic_load(&server->stopping))
        pthread_cond_wait(&q.not_empty, &q.lock);
    if (q.count > 0) {
        *c = q.ring[q.head];
        q.head = (q.head + 1) % opts.queue;
        q.count--;
        pthread_cond_signal(&q.not_full);
        got = true;
    }
    pthread_mutex_unlock(&q.lock);
    return got;
}

static void queue_wake_all(void)
{
    pthread_mutex_lock(&q.lock);
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

static void *pool_thread(void *arg)
{
    c10k_io_t *io = arg;
    conn_t c;

    /* The buffers live as long as the thread: reuse is the point of a pool. */
    while (queue_pop(&c))
        c10k_serve_blocking(server, c.fd, (struct sockaddr *)&c.peer, io);
    free(io);
    threads_add(-1);
    return NULL;
}

static int pool_start(void)
{
    pthread_attr_t attr;
    int rc = 0;

    q.ring = calloc((size_t)opts.queue, sizeof(conn_t));
    if (!q.ring)
        return -ENOMEM;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, opts.stack_size);
    for (int i = 0; i < opts.pool; i++) {
        pthread_t t;
        c10k_io_t *buf = buffers_new();
        if (!buf) {
            rc = -ENOMEM;
            goto out;
        }
        threads_add(1);
        rc = -pthread_create(&t, &attr, pool_thread, buf);
        if (rc < 0) {
            threads_add(-1);
            free(buf);
            goto out;
        }
    }
out:
    pthread_attr_destroy(&attr);
    return rc;
}

/* --- acceptor -------------------------------------------------------------------- */

/* Returns 1 for a connection in *c, 0 to poll again, or -ECANCELED on stop. */
static int accept_one(conn_t *c)
{
    struct pollfd p[2] = {{.fd = server->listen_fd, .events = POLLIN},
                          {.fd = server->stop_fd, .events = POLLIN}};
    socklen_t sl = sizeof(c->peer);

    if (poll(p, 2, -1) < 0)
        return errno == EINTR ? 0 : -errno;
    if (p[1].revents)
        return -ECANCELED;
    c->fd = accept4(server->listen_fd, (struct sockaddr *)&c->peer, &sl, SOCK_CLOEXEC);
    if (c->fd >= 0)
        return 1;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Out of descriptors: the backlog keeps the clients; retrying at
         * once would spin. Wait for a thread to close one (or a stop). */
        c10k_warn(server, "accept: %s; pausing accept for 100 ms", strerror(errno));
        poll(&p[1], 1, 100);
    }
    return 0;
}

/* The listener is non-blocking (shared with other models' conventions), but
 * each accepted socket is blocking: that is the model. */
static void *acceptor_thread(void *arg)
{
    conn_t c;
    int rc;

    (void)arg;
    while ((rc = accept_one(&c)) >= 0) {
        conn_t *heap;
        if (rc == 0)
            continue;
        if (opts.pool > 0) {
            queue_push(&c);
            continue;
        }
        heap = malloc(sizeof(*heap));
        if (heap)
            *heap = c;
        if (!heap || spawn_connection(heap) < 0) {
            /* No memory or thread limit: refuse this client, keep serving. */
            c10k_warn(server, "cannot start a thread; closing a connection");
            close(c.fd);
            free(heap);
            poll(NULL, 0, 10);
        }
    }
    close(server->listen_fd);
    return NULL;
}

static int threaded_run(c10k_server_t *srv)
{
    pthread_t acceptor;
    int rc, left;

    server = srv;
    if (opts.pool > 0) {
        rc = pool_start();
        if (rc < 0)
            return rc;
    } else {
        srv->site.fcache_max = 0; /* see "What it costs"; no thread serves yet */
    }
    rc = -pthread_create(&acceptor, NULL, acceptor_thread, NULL);
    if (rc < 0)
        return rc;
    c10k_wait_for_stop(srv);
    pthread_join(acceptor, NULL);
    queue_wake_all();
    left = threads_drain(srv->cfg.grace_ms);
    if (left > 0)
        c10k_warn(srv, "grace period over with %d connection threads still busy", left);
    return 0;
}

static int threaded_set_opt(const char *name, const char *value)
{
    long v;

    if (strcmp(name, "stack-size") == 0) {
        /* glibc keeps each thread's TLS and descriptor inside this space, and
         * the handler's deepest call takes about 9 KiB: 16 KiB crashed. */
        if (c10k_parse_uint("c10k serve", name, value, 32, 65536, &v) < 0) /* KiB */
            return -EINVAL;
        opts.stack_size = (size_t)v * 1024;
        return 0;
    }
    if (c10k_parse_uint("c10k serve", name, value, 1, 100000, &v) < 0)
        return -EINVAL;
    *(strcmp(name, "pool") == 0 ? &opts.pool : &opts.queue) = (int)v;
    return 0;
}

static void threaded_describe(const c10k_server_t *srv, char *buf, size_t cap)
{
    if (opts.pool > 0)
        snprintf(buf, cap, "pool=%d queue=%d stack=%zuKiB", opts.pool, opts.queue,
                 opts.stack_size / 1024);
    else
        snprintf(buf, cap, "thread-per-connection stack=%zuKiB%s", opts.stack_size / 1024,
                 srv->cfg.fcache_max ? " (open-file-cache off: a thread per connection)" : "");
}

static const c10k_opt_t threaded_opts[] = {
    {"stack-size", "KIB", "stack per thread in KiB, at least 32 (default 64)"},
    {"pool", "N", "a fixed pool of N threads instead of a thread per connection"},
    {"queue", "N", "pool mode: accepted connections that may wait (default 1024)"},
    {0},
};

static const char *const threaded_variants[] = {
    "--pool 4 --stack-size 32", "--pool 4 --open-file-cache 64 --open-file-cache-valid 1", NULL};

const c10k_model_t c10k_model_threaded = {
    .name = "threaded",
    .summary = "a blocking thread per connection (--pool N: a fixed thread pool)",
    .opts = threaded_opts,
    .variants = threaded_variants,
    .per_connection = true,
    .set_opt = threaded_set_opt,
    .describe = threaded_describe,
    .run = threaded_run,
};
