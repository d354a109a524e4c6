/*
 * stats.c - the model stats file (see stats.h): a registry of named
 * counters and the thread that writes them out.
 */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The counters published under one name, and what removed ones left. */
typedef struct group_s {
    const char *name;
    atomic_ullong **ptrs;
    size_t n, cap;
    unsigned long long retired;
} group_t;

static struct {
    pthread_mutex_t lock; /* the groups; also serialises writes of the file */
    pthread_cond_t wake;
    group_t *groups;
    size_t ngroups, cap;
    const char *path, *model;
    char tmp[4096];
    pthread_t thread;
    bool running, quit;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool name_ok(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

/* Under the lock. */
static group_t *group_of(const char *name)
{
    group_t *g;

    for (size_t i = 0; i < reg.ngroups; i++)
        if (strcmp(reg.groups[i].name, name) == 0)
            return &reg.groups[i];
    if (reg.ngroups == reg.cap) {
        size_t cap = reg.cap ? 2 * reg.cap : 8;
        group_t *v = realloc(reg.groups, cap * sizeof(*v));
        if (!v)
            return NULL;
        reg.groups = v;
        reg.cap = cap;
    }
    g = &reg.groups[reg.ngroups++];
    memset(g, 0, sizeof(*g));
    g->name = name;
    return g;
}

int c10k_stats_add(const char *name, atomic_ullong *counter)
{
    group_t *g;
    int rc = -ENOMEM;

    if (!name_ok(name))
        return -EINVAL;
    pthread_mutex_lock(&reg.lock);
    g = group_of(name);
    if (!g)
        goto out;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 4;
        atomic_ullong **v = realloc(g->ptrs, cap * sizeof(*v));
        if (!v)
            goto out;
        g->ptrs = v;
        g->cap = cap;
    }
    g->ptrs[g->n++] = counter;
    rc = 0;
out:
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

void c10k_stats_remove(atomic_ullong *counter)
{
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.ngroups; i++) {
        group_t *g = &reg.groups[i];
        for (size_t j = 0; j < g->n; j++) {
            if (g->ptrs[j] != counter)
                continue;
            g->retired += atomic_load_explicit(counter, memory_order_relaxed);
            g->ptrs[j] = g->ptrs[--g->n];
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&reg.lock);
}

/* Under the lock: the JSON document into buf. Returns its length, or -1 if
 * it does not fit. */
static int format(char *buf, size_t cap)
{
    size_t off;
    int n = snprintf(buf, cap, "{\"model\": \"%s\", \"counters\": {", reg.model);

    if (n < 0 || (size_t)n >= cap)
        return -1;
    off = (size_t)n;
    for (size_t i = 0; i < reg.ngroups; i++) {
        const group_t *g = &reg.groups[i];
        unsigned long long sum = g->retired;
        for (size_t j = 0; j < g->n; j++)
            sum += atomic_load_explicit(g->ptrs[j], memory_order_relaxed);
        n = snprintf(buf + off, cap - off, "%s\"%s\": %llu", i ? ", " : "", g->name, sum);
        if (n < 0 || (size_t)n >= cap - off)
            return -1;
        off += (size_t)n;
    }
    n = snprintf(buf + off, cap - off, "}}\n");
    if (n < 0 || (size_t)n >= cap - off)
        return -1;
    return (int)(off + (size_t)n);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int c10k_stats_write(void)
{
    char buf[8192];
    int len, fd, rc;

    pthread_mutex_lock(&reg.lock);
    len = format(buf, sizeof(buf));
    rc = len < 0 ? -ENOBUFS : 0;
    if (rc == 0) {
        fd = open(reg.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        rc = fd < 0 ? -errno : write_all(fd, buf, (size_t)len);
        if (fd >= 0 && close(fd) < 0 && rc == 0)
            rc = -errno;
        if (rc == 0 && rename(reg.tmp, reg.path) < 0)
            rc = -errno;
    }
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

static void *writer(void *arg)
{
    struct timespec until;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &until);
    pthread_mutex_lock(&reg.lock);
    while (!reg.quit) {
        until.tv_nsec += C10K_STATS_PERIOD_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!reg.quit && pthread_cond_timedwait(&reg.wake, &reg.lock, &until) != ETIMEDOUT)
            ;
        if (reg.quit)
            break;
        pthread_mutex_unlock(&reg.lock);
        c10k_stats_write(); /* a failure now is retried next period */
        pthread_mutex_lock(&reg.lock);
    }
    pthread_mutex_unlock(&reg.lock);
    return NULL;
}

int c10k_stats_start(const char *path, const char *model)
{
    pthread_condattr_t ca;
    int rc;

    if ((size_t)snprintf(reg.tmp, sizeof(reg.tmp), "%s.tmp", path) >= sizeof(reg.tmp))
        return -ENAMETOOLONG;
    reg.path = path;
    reg.model = model;
    rc = c10k_stats_write();
    if (rc < 0)
        return rc;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&reg.wake, &ca);
    pthread_condattr_destroy(&ca);
    reg.quit = false;
    rc = -pthread_create(&reg.thread, NULL, writer, NULL);
    if (rc < 0) {
        pthread_cond_destroy(&reg.wake);
        return rc;
    }
    reg.running = true;
    return 0;
}

int c10k_stats_stop(bool final)
{
    if (!reg.running)
        return 0;
    pthread_mutex_lock(&reg.lock);
    reg.quit = true;
    pthread_cond_signal(&reg.wake);
    pthread_mutex_unlock(&reg.lock);
    pthread_join(reg.thread, NULL);
    pthread_cond_destroy(&reg.wake);
    reg.running = false;
    return final ? c10k_stats_write() : 0;
}
