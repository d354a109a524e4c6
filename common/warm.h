/*
 * warm.h - bringing file ranges into the page cache off an event loop:
 * the helpers of Flash's AMPED architecture (Pai, Druschel and Zwaenepoel,
 * "Flash: An efficient and portable Web server", USENIX 1999).
 *
 * An event loop must never wait for a disk: a sendfile(2) that meets a page
 * not in memory puts the whole thread to sleep until the disk delivers it,
 * and every other connection of the loop waits too. So before it sends a
 * file range the loop asks whether the range is in memory
 * (c10k_warm_resident(), one system call when the range is resident), and
 * if not hands it to one of a few helper threads (c10k_warm_submit()). A
 * helper reads the range into the page cache, sleeping on the disk itself,
 * and reports back through an eventfd the loop watches; the loop then sends
 * from memory. One pool per loop; the jobs are the loop's, so a completion
 * always comes back to the loop that asked.
 *
 * Thread safety: c10k_warm_resident(), c10k_warm_submit(), c10k_warm_reap()
 * and c10k_warm_fini() are for the loop's thread; the helpers are the pool's.
 */
#ifndef C10K_WARM_H
#define C10K_WARM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define C10K_HELPERS_MAX 64

/* One range to bring into memory. Made by c10k_warm_submit(), given back by
 * c10k_warm_reap() or c10k_warm_fini(); free() it then. */
typedef struct c10k_warm_job_s {
    struct c10k_warm_job_s *next;
    int fd;    /* the pool's own descriptor of the file (a dup), closed by the pool */
    off_t off; /* the range */
    size_t len;
    int err;     /* when done: 0, or a negative errno (the send will report it too) */
    void *owner; /* the loop's: which connection asked; the loop may set it to NULL
                    when that connection is gone (helpers never read it) */
} c10k_warm_job_t;

typedef struct c10k_warm_s {
    int efd;                       /* eventfd, readable when jobs are done; -1 if none */
    pthread_mutex_t lock;          /* guards the lists and quit */
    pthread_cond_t more;           /* helpers wait here for jobs */
    c10k_warm_job_t *todo, **tail; /* jobs not started, in order */
    c10k_warm_job_t *done;         /* jobs finished, not reaped */
    pthread_t threads[C10K_HELPERS_MAX];
    int nthreads;
    bool quit;
    bool locked;            /* lock and more were initialised */
    atomic_ullong checks;   /* c10k_warm_resident() calls */
    atomic_ullong handoffs; /* jobs submitted */
} c10k_warm_t;

/* Start `helpers` helper threads (1..C10K_HELPERS_MAX), named c10k-helper,
 * with the calling thread's CPU affinity. w must be zeroed. Returns 0 or a
 * negative errno; on failure c10k_warm_fini() is still safe. */
int c10k_warm_init(c10k_warm_t *w, int helpers);

/*
 * Is the byte range [off, off+len) of fd in memory, every page of it read
 * and up to date? Returns 1 (send it), 0 (a helper should fetch it) or a
 * negative errno. One cachestat(2) call (Linux 6.5) answers when no job of
 * this process is in flight. While one is, a page being read is in the cache
 * but not up to date yet, and cachestat counts it; then mincore(2) over a
 * temporary mapping decides (it reports only up-to-date pages), as it does
 * on a kernel without cachestat.
 */
int c10k_warm_resident(c10k_warm_t *w, int fd, off_t off, size_t len);

/*
 * The same question for a loop without a pool, whose file reads run
 * elsewhere (io_uring's io-wq): reads_in_flight says that one of them may be
 * under way, so that a page in the cache may not be up to date yet, and
 * mincore(2) decides; so it does while a helper of any pool reads. Returns
 * 1, 0 or a negative errno.
 */
int c10k_range_resident(int fd, off_t off, size_t len, bool reads_in_flight);

/* Hand [off, off+len) of fd to a helper. fd is duplicated, so the caller may
 * close its own at any time. Returns the job (owner set), or NULL with errno
 * set (no memory, no descriptor): then the caller sends as it is. */
c10k_warm_job_t *c10k_warm_submit(c10k_warm_t *w, int fd, off_t off, size_t len, void *owner);

/* The jobs done since the last call (a list through ->next, possibly empty),
 * after draining the eventfd. Their descriptors are closed already. */
c10k_warm_job_t *c10k_warm_reap(c10k_warm_t *w);

/* Stop the helpers (a helper finishes the range it is reading), join them,
 * close the eventfd, and give every job not reaped yet, done or not, to
 * give_back (which frees it). Safe on a zeroed or half-initialised pool. */
void c10k_warm_fini(c10k_warm_t *w, void (*give_back)(c10k_warm_job_t *job, void *arg), void *arg);

/* What a helper does with a range: read it into the page cache (readahead(2)
 * asks for all of it at once, then pread(2) into scratch waits until every
 * page is in). Returns 0 or a negative errno. For tests. */
int c10k_warm_range(int fd, off_t off, size_t len, char *scratch, size_t cap);

#endif
