/*
 * filecache.c - the open-file cache (see filecache.h for the contract).
 *
 * A hash table of entries (chained, a power of two of buckets, at least
 * max) and an LRU list through the same entries. An entry leaves the index
 * when it is evicted, revalidated away or forgotten; its descriptor is
 * closed then, or, while a response still holds it, when the last reference
 * goes. Entries and content blocks are allocated the first time they are
 * needed and kept on free lists after that, so a warm cache allocates
 * nothing.
 */
#include "filecache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Content blocks come in powers of two from 512 bytes to
 * C10K_FCACHE_SMALL_MAX, so a freed block fits the next file of its class. */
#define BLOCK_MIN 512
#define NCLASS    6 /* 512 B .. 16 KiB */

typedef struct link_s {
    struct link_s *prev, *next;
} link_t;

typedef struct entry_s {
    c10k_fcfile_t f; /* first: c10k_fcfile_t * and entry_t * convert */
    link_t lru;      /* in c->lru while indexed */
    struct entry_s *hnext;
    struct entry_s *free_next; /* on c->free */
    struct entry_s *all_next;  /* every entry made, for c10k_fcache_free() */
    struct c10k_fcache_s *cache;
    int64_t valid_until;
    uint32_t hash;
    unsigned refs;
    int data_class; /* the content block's class, -1 for none */
    bool indexed;
    uint16_t klen;
    char key[C10K_FCACHE_KEY_MAX];
} entry_t;

struct c10k_fcache_s {
    entry_t **buckets;
    uint32_t mask;
    link_t lru; /* next: the most recently used */
    entry_t *free, *all;
    void *blocks[NCLASS]; /* free content blocks, chained through their first bytes */
    unsigned max, indexed, held, made;
    int valid_ms;
    size_t data_bytes;
    int64_t (*clock)(void);
    bool dead; /* c10k_fcache_free() was called while entries were held */
};

static int64_t coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static entry_t *entry_of(c10k_fcfile_t *f)
{
    return (entry_t *)f;
}

/* ---- lists -------------------------------------------------------------------------------- */

static void lru_unlink(link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

static void lru_push_front(c10k_fcache_t *c, link_t *l)
{
    l->prev = &c->lru;
    l->next = c->lru.next;
    c->lru.next->prev = l;
    c->lru.next = l;
}

static entry_t *lru_entry(link_t *l)
{
    return (entry_t *)((char *)l - offsetof(entry_t, lru));
}

static entry_t **bucket(c10k_fcache_t *c, uint32_t hash)
{
    return &c->buckets[hash & c->mask];
}

static entry_t *find(c10k_fcache_t *c, const char *key, size_t klen, uint32_t hash)
{
    for (entry_t *e = *bucket(c, hash); e; e = e->hnext)
        if (e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

/* ---- content blocks ----------------------------------------------------------------------- */

static int block_class(off_t size)
{
    int k = 0;

    while (((off_t)BLOCK_MIN << k) < size)
        k++;
    return k;
}

static void block_put(c10k_fcache_t *c, int k, void *b)
{
    *(void **)b = c->blocks[k];
    c->blocks[k] = b;
}

/* A free block of class k, or a new one within the budget; NULL if neither. */
static void *block_get(c10k_fcache_t *c, int k)
{
    size_t size = (size_t)BLOCK_MIN << k;
    void *b = c->blocks[k];

    if (b) {
        c->blocks[k] = *(void **)b;
        return b;
    }
    if (c->data_bytes + size > C10K_FCACHE_DATA_MAX)
        return NULL;
    b = malloc(size);
    if (b)
        c->data_bytes += size;
    return b;
}

/* Read a small file whole, and keep it only if it did not change meanwhile:
 * the content must match the stat the ETag is made from. */
static void content_load(c10k_fcache_t *c, entry_t *e)
{
    const struct stat *st = &e->f.st;
    struct stat now;
    int k;
    char *b;

    if (st->st_size <= 0 || st->st_size > C10K_FCACHE_SMALL_MAX)
        return;
    k = block_class(st->st_size);
    b = block_get(c, k);
    if (!b)
        return;
    if (pread(e->f.fd, b, (size_t)st->st_size, 0) != st->st_size || fstat(e->f.fd, &now) < 0 ||
        now.st_size != st->st_size || now.st_mtim.tv_sec != st->st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != st->st_mtim.tv_nsec) {
        block_put(c, k, b);
        return;
    }
    e->f.data = b;
    e->data_class = k;
}

/* ---- entries ------------------------------------------------------------------------------ */

/* An entry no index and no response holds: close it and keep it for reuse. */
static void recycle(c10k_fcache_t *c, entry_t *e)
{
    if (e->f.fd >= 0)
        close(e->f.fd);
    e->f.fd = -1;
    if (e->data_class >= 0)
        block_put(c, e->data_class, (void *)e->f.data);
    e->f.data = NULL;
    e->data_class = -1;
    e->free_next = c->free;
    c->free = e;
}

static void unindex(c10k_fcache_t *c, entry_t *e)
{
    entry_t **pp = bucket(c, e->hash);

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(&e->lru);
    e->indexed = false;
    c->indexed--;
    if (e->refs == 0)
        recycle(c, e);
}

/* An entry to fill: a free one, or a new one while fewer than 2 * max were
 * made. NULL when every entry is indexed or held. */
static entry_t *take(c10k_fcache_t *c)
{
    entry_t *e = c->free;

    if (e) {
        c->free = e->free_next;
        return e;
    }
    if (c->made >= 2 * c->max)
        return NULL;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->f.fd = -1;
    e->data_class = -1;
    e->cache = c;
    e->all_next = c->all;
    c->all = e;
    c->made++;
    return e;
}

static void hold(c10k_fcache_t *c, entry_t *e)
{
    if (e->refs++ == 0)
        c->held++;
}

static void touch(c10k_fcache_t *c, entry_t *e)
{
    lru_unlink(&e->lru);
    lru_push_front(c, &e->lru);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* ---- the cache ---------------------------------------------------------------------------- */

c10k_fcache_t *c10k_fcache_new(unsigned max, int valid_ms)
{
    c10k_fcache_t *c;
    uint32_t n = 16;

    if (max == 0 || max > C10K_FCACHE_MAX)
        return NULL;
    while (n < max)
        n <<= 1;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->lru.prev = c->lru.next = &c->lru;
    c->max = max;
    c->valid_ms = valid_ms;
    c->clock = coarse_ms;
    return c;
}

static void destroy(c10k_fcache_t *c)
{
    entry_t *e = c->all;

    while (e) {
        entry_t *next = e->all_next;
        if (e->f.fd >= 0)
            close(e->f.fd);
        if (e->data_class >= 0)
            free((void *)e->f.data);
        free(e);
        e = next;
    }
    for (int k = 0; k < NCLASS; k++) {
        while (c->blocks[k]) {
            void *b = c->blocks[k];
            c->blocks[k] = *(void **)b;
            free(b);
        }
    }
    free(c->buckets);
    free(c);
}

void c10k_fcache_free(c10k_fcache_t *c)
{
    if (!c)
        return;
    while (c->lru.next != &c->lru)
        unindex(c, lru_entry(c->lru.next));
    c->dead = true;
    if (c->held == 0)
        destroy(c);
}

void c10k_fcache_set_clock(c10k_fcache_t *c, int64_t (*clock)(void))
{
    c->clock = clock;
}

int64_t c10k_fcache_now(const c10k_fcache_t *c)
{
    return c->clock();
}

c10k_fcfile_t *c10k_fcache_get(c10k_fcache_t *c, const char *key, size_t klen, int64_t now)
{
    entry_t *e;

    if (klen >= C10K_FCACHE_KEY_MAX)
        return NULL;
    e = find(c, key, klen, fnv1a(key, klen));
    if (!e || now >= e->valid_until)
        return NULL;
    touch(c, e);
    hold(c, e);
    return &e->f;
}

/* Make room for one more entry in the index: evict the least recently used
 * (it stays open while a response holds it). */
static void make_room(c10k_fcache_t *c)
{
    if (c->indexed >= c->max)
        unindex(c, lru_entry(c->lru.prev));
}

c10k_fcfile_t *c10k_fcache_put(c10k_fcache_t *c, const char *key, size_t klen, int fd,
                               const struct stat *st, int64_t now)
{
    uint32_t hash = fnv1a(key, klen);
    entry_t *e;

    if (klen >= C10K_FCACHE_KEY_MAX)
        return NULL;
    e = find(c, key, klen, hash);
    if (e && same_file(&e->f.st, st)) {
        close(fd);
        e->valid_until = now + c->valid_ms;
        touch(c, e);
        hold(c, e);
        return &e->f;
    }
    if (e)
        unindex(c, e); /* replaced: a response still sending it keeps it open */
    make_room(c);
    e = take(c);
    if (!e)
        return NULL;
    memset(&e->f, 0, sizeof(e->f));
    e->f.fd = fd;
    e->f.st = *st;
    e->hash = hash;
    e->klen = (uint16_t)klen;
    memcpy(e->key, key, klen);
    e->valid_until = now + c->valid_ms;
    e->indexed = true;
    e->hnext = *bucket(c, hash);
    *bucket(c, hash) = e;
    lru_push_front(c, &e->lru);
    c->indexed++;
    content_load(c, e);
    hold(c, e);
    return &e->f;
}

void c10k_fcache_forget(c10k_fcache_t *c, const char *key, size_t klen)
{
    entry_t *e;

    if (klen >= C10K_FCACHE_KEY_MAX)
        return;
    e = find(c, key, klen, fnv1a(key, klen));
    if (e)
        unindex(c, e);
}

void c10k_fcache_release(c10k_fcfile_t *f)
{
    entry_t *e = entry_of(f);
    c10k_fcache_t *c = e->cache;

    if (--e->refs > 0)
        return;
    c->held--;
    if (!e->indexed)
        recycle(c, e);
    if (c->dead && c->held == 0)
        destroy(c);
}

void c10k_fcache_stats(const c10k_fcache_t *c, c10k_fcache_stats_t *st)
{
    st->indexed = c->indexed;
    st->held = c->held;
    st->made = c->made;
    st->data_bytes = c->data_bytes;
}

/* ---- one cache per thread ----------------------------------------------------------------- */

static __thread c10k_fcache_t *thread_cache;
static __thread bool thread_failed; /* do not retry an allocation on every request */
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *c)
{
    c10k_fcache_free(c);
}

static void thread_key_make(void)
{
    if (pthread_key_create(&thread_key, thread_exit) != 0)
        thread_failed = true;
}

c10k_fcache_t *c10k_fcache_thread(unsigned max, int valid_ms)
{
    if (thread_cache || thread_failed || max == 0)
        return thread_cache;
    pthread_once(&thread_once, thread_key_make);
    if (!thread_failed)
        thread_cache = c10k_fcache_new(max, valid_ms);
    if (thread_cache && pthread_setspecific(thread_key, thread_cache) != 0) {
        c10k_fcache_free(thread_cache);
        thread_cache = NULL;
    }
    thread_failed = !thread_cache;
    return thread_cache;
}
