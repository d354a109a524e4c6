/*
 * filecache.h - the handler's open-file cache (--open-file-cache N,
 * --open-file-cache-valid S), after nginx's open_file_cache and the
 * pathname, header and mapped-file caches of Flash (USENIX '99).
 *
 * What it keeps, per name below the root: the open descriptor, its stat,
 * what the handler derives from the stat (ETag, Last-Modified, Content-Type
 * and the entity header lines of a 200), and for a small file (up to
 * C10K_FCACHE_SMALL_MAX bytes, C10K_FCACHE_DATA_MAX in all) its content, so
 * that a cached small response leaves in one send (head and body in one
 * sendmsg). A hit costs no system call.
 *
 * Revalidation: an entry is trusted for valid_ms after it was last checked.
 * Then c10k_fcache_get() misses, the handler resolves the name again exactly
 * as without a cache (openat2 with RESOLVE_BENEATH, fstat) and hands the
 * result to c10k_fcache_put(): the same file (dev, ino, size, mtime) keeps
 * its entry, another one gets a fresh entry, and a name that no longer
 * resolves to a regular file is forgotten (c10k_fcache_forget()). So a file
 * replaced or deleted is served fresh once the interval has passed, and the
 * cache never holds a descriptor that was not opened beneath the root: a
 * symlink swapped to point outside after caching keeps serving the old
 * inside file until the interval ends, then answers 404.
 *
 * One cache per worker, no locks: every cache belongs to one thread, which
 * alone calls it (c10k_fcache_thread() makes the calling thread's own on
 * first use: an event loop's thread, a prefork process, a pool thread).
 *
 * Lifetime: c10k_fcache_get() and c10k_fcache_put() return an entry with a
 * reference. A response that sends from it keeps the reference until
 * c10k_resp_finish(), so an entry evicted or revalidated away while a
 * response still sends from it leaves the index at once but keeps its
 * descriptor and content until the last reference is released: a response
 * never sends from a closed or reused descriptor.
 *
 * Bounds: at most max entries in the index, and at most max more that left
 * it while responses still held them (when all are held, a name is simply
 * served uncached); content blocks of C10K_FCACHE_DATA_MAX bytes in all.
 * Memory is allocated while the cache warms up and reused after that: a hit
 * or a miss on a warm cache allocates nothing.
 */
#ifndef C10K_FILECACHE_H
#define C10K_FILECACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define C10K_FCACHE_MAX       1000000       /* largest --open-file-cache */
#define C10K_FCACHE_KEY_MAX   256           /* longer names are served uncached */
#define C10K_FCACHE_SMALL_MAX (16 * 1024)   /* content kept for files up to this size */
#define C10K_FCACHE_DATA_MAX  (1024 * 1024) /* content bytes per cache, all files */
#define C10K_FCACHE_HDR_MAX   256           /* bytes of the cached entity header lines */

/* What the handler reads from an entry. The fields from `derived` on are the
 * handler's: c10k_fcache_put() clears `derived` on a fresh entry and the
 * handler fills them once. */
typedef struct c10k_fcfile_s {
    int fd;                        /* opened beneath the root, owned by the cache */
    struct stat st;                /* as of the last validation */
    const char *data;              /* the whole content (st.st_size bytes), or NULL */
    bool derived;                  /* the fields below are filled */
    const char *ctype;             /* Content-Type (static, or the MIME table's) */
    char etag[48];                 /* strong ETag, quoted */
    char lastmod[40];              /* Last-Modified, IMF-fixdate */
    char hdr[C10K_FCACHE_HDR_MAX]; /* the entity header lines of a 200 */
    size_t hdr_len;                /* their length, 0 if they did not fit */
} c10k_fcfile_t;

typedef struct c10k_fcache_s c10k_fcache_t;

/* Counters for tests and the curious. */
typedef struct c10k_fcache_stats_s {
    unsigned indexed;  /* entries reachable by name */
    unsigned held;     /* entries with a reference (indexed or not) */
    unsigned made;     /* entries allocated so far (at most 2 * max) */
    size_t data_bytes; /* content blocks allocated so far */
} c10k_fcache_stats_t;

/* A cache of at most max entries (1..C10K_FCACHE_MAX), each trusted for
 * valid_ms after its last check. NULL when out of memory or max is 0. */
c10k_fcache_t *c10k_fcache_new(unsigned max, int valid_ms);

/* Destroy c (NULL is ignored): closes every descriptor no response holds;
 * an entry still held is closed, and the cache's memory freed, when its last
 * reference is released. Call from c's thread. */
void c10k_fcache_free(c10k_fcache_t *c);

/* The calling thread's cache, made on first use (freed when the thread
 * exits); NULL when max is 0 or it cannot be made. Later calls return the
 * same cache whatever their arguments. */
c10k_fcache_t *c10k_fcache_thread(unsigned max, int valid_ms);

/* Replace the cache's clock, in ms on any monotonic scale (tests pass one
 * they move by hand). The default is CLOCK_MONOTONIC_COARSE, read without a
 * system call. */
void c10k_fcache_set_clock(c10k_fcache_t *c, int64_t (*clock)(void));

/* Now on c's clock, for c10k_fcache_get() and c10k_fcache_put(). */
int64_t c10k_fcache_now(const c10k_fcache_t *c);

/* The entry for key[0..klen), with a reference for the caller to release,
 * and marked most recently used. NULL when there is none, or when it was
 * last checked valid_ms or more before now: then resolve key again and call
 * c10k_fcache_put() (or c10k_fcache_forget() if it is no regular file any
 * more). */
c10k_fcfile_t *c10k_fcache_get(c10k_fcache_t *c, const char *key, size_t klen, int64_t now);

/*
 * key was just resolved beneath the root to the regular file fd, whose
 * stat is *st. Returns an entry with a reference for the caller: the cached
 * one when it is the same file (same dev, ino, size and mtime; it is trusted
 * again from now, and fd is closed), otherwise a fresh one that owns fd (the
 * old one, if any, leaves the index). NULL when key cannot be cached (longer
 * than C10K_FCACHE_KEY_MAX, or every entry is held): fd stays the caller's.
 * A fresh small file's content is read here (pread) when the budget allows.
 */
c10k_fcfile_t *c10k_fcache_put(c10k_fcache_t *c, const char *key, size_t klen, int fd,
                               const struct stat *st, int64_t now);

/* key no longer resolves to a regular file: its entry, if any, leaves the
 * index (closed once no response holds it). */
void c10k_fcache_forget(c10k_fcache_t *c, const char *key, size_t klen);

/* Give back a reference from c10k_fcache_get() or c10k_fcache_put(). Call
 * from the cache's thread. */
void c10k_fcache_release(c10k_fcfile_t *f);

/* Fill *st with c's counters. */
void c10k_fcache_stats(const c10k_fcache_t *c, c10k_fcache_stats_t *st);

#endif
