/*
 * warm.c - helper threads that bring file ranges into the page cache (warm.h).
 */
#include "warm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same on every architecture (Linux 6.5) */
#endif

#define SCRATCH     (64 * 1024) /* a helper's read buffer */
#define MINCORE_VEC 256         /* pages per mincore() call */

struct cachestat_range {
    uint64_t off;
    uint64_t len;
};

struct cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

/* Jobs being read by a helper of any pool of this process: while there are
 * some, a cached page may still be waiting for its disk read. */
static atomic_int reading;
/* cachestat(2) exists (until it says ENOSYS). */
static atomic_bool have_cachestat = true;

static long page_size(void)
{
    static long ps;

    if (!ps)
        ps = sysconf(_SC_PAGESIZE);
    return ps;
}

/* --- is it in memory? ------------------------------------------------------------- */

/* Pages of [off, off+len) that are cached (read or being read), or a
 * negative errno. */
static long cached_pages(int fd, off_t off, size_t len)
{
    struct cachestat_range r = {(uint64_t)off, (uint64_t)len};
    struct cachestat cs;

    if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0)
        return -errno;
    return (long)cs.nr_cache;
}

/* 1 if every page of the range is in memory and up to date, 0 if not. */
static int mincore_resident(int fd, off_t off, size_t len)
{
    long ps = page_size();
    off_t start = off & ~(off_t)(ps - 1);
    size_t maplen = (size_t)(off - start) + len;
    unsigned char vec[MINCORE_VEC];
    char *map = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, start);
    int rc = 1;

    if (map == MAP_FAILED)
        return -errno;
    for (size_t at = 0; at < maplen && rc == 1; at += (size_t)ps * MINCORE_VEC) {
        size_t n = maplen - at < (size_t)ps * MINCORE_VEC ? maplen - at : (size_t)ps * MINCORE_VEC;
        size_t pages = (n + (size_t)ps - 1) / (size_t)ps;
        if (mincore(map + at, n, vec) < 0) {
            rc = -errno;
            break;
        }
        for (size_t i = 0; i < pages; i++)
            if (!(vec[i] & 1)) {
                rc = 0;
                break;
            }
    }
    munmap(map, maplen);
    return rc;
}

int c10k_range_resident(int fd, off_t off, size_t len, bool reads_in_flight)
{
    long ps = page_size();
    long pages, want;

    if (len == 0)
        return 1;
    if (atomic_load_explicit(&have_cachestat, memory_order_relaxed)) {
        want = (long)((off + (off_t)len - 1) / ps - off / ps + 1);
        pages = cached_pages(fd, off, len);
        if (pages == -ENOSYS)
            atomic_store(&have_cachestat, false);
        else if (pages >= 0 && pages < want)
            return 0;
        else if (pages >= 0 && !reads_in_flight && atomic_load(&reading) == 0)
            return 1;
    }
    return mincore_resident(fd, off, len);
}

int c10k_warm_resident(c10k_warm_t *w, int fd, off_t off, size_t len)
{
    if (len > 0)
        atomic_fetch_add_explicit(&w->checks, 1, memory_order_relaxed);
    return c10k_range_resident(fd, off, len, false);
}

/* --- the helpers --------------------------------------------------------------------- */

int c10k_warm_range(int fd, off_t off, size_t len, char *scratch, size_t cap)
{
    /* One request for the whole range: a sendfile or a pread of 64 KiB at a
     * time would let the kernel's readahead grow its window step by step. */
    readahead(fd, off, len);
    while (len > 0) {
        ssize_t n = pread(fd, scratch, len < cap ? len : cap, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break; /* the file shrank: the send reports it */
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

static c10k_warm_job_t *next_job(c10k_warm_t *w)
{
    c10k_warm_job_t *j;

    pthread_mutex_lock(&w->lock);
    while (!w->todo && !w->quit)
        pthread_cond_wait(&w->more, &w->lock);
    j = w->quit ? NULL : w->todo;
    if (j) {
        w->todo = j->next;
        if (!w->todo)
            w->tail = &w->todo;
        atomic_fetch_add(&reading, 1);
    }
    pthread_mutex_unlock(&w->lock);
    return j;
}

static void job_done(c10k_warm_t *w, c10k_warm_job_t *j)
{
    uint64_t one = 1;
    ssize_t n;

    close(j->fd);
    j->fd = -1;
    pthread_mutex_lock(&w->lock);
    j->next = w->done;
    w->done = j;
    atomic_fetch_sub(&reading, 1);
    pthread_mutex_unlock(&w->lock);
    /* After the job is on the list: a loop woken by this finds it there. */
    n = write(w->efd, &one, sizeof(one));
    (void)n;
}

static void *helper_main(void *arg)
{
    c10k_warm_t *w = arg;
    char *scratch = malloc(SCRATCH);
    c10k_warm_job_t *j;

    while ((j = next_job(w))) {
        j->err = scratch ? c10k_warm_range(j->fd, j->off, j->len, scratch, SCRATCH) : -ENOMEM;
        job_done(w, j);
    }
    free(scratch);
    return NULL;
}

int c10k_warm_init(c10k_warm_t *w, int helpers)
{
    int rc;

    w->efd = -1;
    w->tail = &w->todo;
    if (helpers < 1 || helpers > C10K_HELPERS_MAX)
        return -EINVAL;
    if (pthread_mutex_init(&w->lock, NULL) || pthread_cond_init(&w->more, NULL))
        return -ENOMEM;
    w->locked = true;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0)
        return -errno;
    for (; w->nthreads < helpers; w->nthreads++) {
        rc = -pthread_create(&w->threads[w->nthreads], NULL, helper_main, w);
        if (rc < 0)
            return rc;
        pthread_setname_np(w->threads[w->nthreads], "c10k-helper");
    }
    return 0;
}

c10k_warm_job_t *c10k_warm_submit(c10k_warm_t *w, int fd, off_t off, size_t len, void *owner)
{
    c10k_warm_job_t *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (j->fd < 0) {
        free(j);
        return NULL;
    }
    j->off = off;
    j->len = len;
    j->owner = owner;
    pthread_mutex_lock(&w->lock);
    *w->tail = j;
    w->tail = &j->next;
    pthread_cond_signal(&w->more);
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add_explicit(&w->handoffs, 1, memory_order_relaxed);
    return j;
}

c10k_warm_job_t *c10k_warm_reap(c10k_warm_t *w)
{
    uint64_t n;
    c10k_warm_job_t *done;
    ssize_t r = read(w->efd, &n, sizeof(n));

    (void)r;
    pthread_mutex_lock(&w->lock);
    done = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    return done;
}

static void give_all(c10k_warm_job_t *j, void (*give_back)(c10k_warm_job_t *, void *), void *arg)
{
    while (j) {
        c10k_warm_job_t *next = j->next;
        if (j->fd >= 0)
            close(j->fd);
        j->fd = -1;
        give_back(j, arg);
        j = next;
    }
}

void c10k_warm_fini(c10k_warm_t *w, void (*give_back)(c10k_warm_job_t *job, void *arg), void *arg)
{
    if (w->locked) {
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_broadcast(&w->more);
        pthread_mutex_unlock(&w->lock);
    }
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    w->nthreads = 0;
    give_all(w->todo, give_back, arg);
    give_all(w->done, give_back, arg);
    w->todo = w->done = NULL;
    w->tail = &w->todo;
    if (w->efd >= 0)
        close(w->efd);
    w->efd = -1;
    if (w->locked) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->more);
    }
    w->locked = false;
}
