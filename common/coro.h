/*
 * coro.h - cooperative user-level threads on one kernel thread: coroutines,
 * their scheduler, and the wrappers that make a non-blocking socket look
 * blocking to the coroutine that uses it.
 *
 * Each kernel thread that runs coroutines owns one scheduler (c10k_sched_t):
 * an epoll instance, a run queue and the coroutines' deadlines (a timer
 * wheel). A coroutine runs until it would block. Then the wrapper it called
 * parks it (records what it waits for and until when) and switches to the
 * scheduler, which runs the next ready coroutine, or, when none is left,
 * waits in epoll_wait for a descriptor or the earliest deadline, and resumes
 * whoever that concerns:
 *
 *     coroutine                          scheduler
 *     c10k_cfd_recv(f, ...)  -> -EAGAIN
 *     c10k_coro_wait(f, EPOLLIN, deadline)
 *       park on f
 *       switch ----------------------->  run the next ready coroutine ...
 *                                        epoll_wait: f readable
 *       <------------------------------  switch back (wake: READY)
 *     c10k_cfd_recv(f, ...)  -> n bytes
 *
 * Every switch is a user-level context switch (ctx.h), counted in
 * c10k_sched_t.counters: no kernel is involved, so the kernel's own context
 * switch counters see only the thread sleeping in epoll_wait.
 *
 * Descriptors: each socket a coroutine waits on is a c10k_cfd_t, registered
 * once (edge-triggered, for reading and writing), so waiting costs no
 * epoll_ctl. The scheduler remembers what the kernel last said was ready,
 * and a wait for something already known to be ready returns at once; the
 * caller forgets it when a call returns EAGAIN (c10k_cfd_blocked(), or
 * c10k_cfd_recv() and c10k_coro_accept(), which do it themselves). One
 * coroutine at a time may wait on a c10k_cfd_t.
 *
 * Stopping: c10k_sched_stop() (or the stop descriptor becoming readable)
 * wakes every coroutine whose wait is "stoppable" with C10K_WAKE_STOP, and
 * later stoppable waits return it at once. grace_ms after that, whatever is
 * still waiting is woken with C10K_WAKE_ABORT, and every wait from then on
 * returns it at once, so each coroutine unwinds and releases what it holds.
 *
 * Fairness: a coroutine that never has to wait would never give the others
 * a turn; after C10K_CORO_STREAK waits in a row that did not block, a wait
 * yields once to the back of the run queue.
 *
 * Not thread-safe: a scheduler and its coroutines belong to one thread.
 */
#ifndef C10K_CORO_H
#define C10K_CORO_H

#include "ctx.h"
#include "loopstat.h"
#include "timer.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>

#define C10K_CORO_STREAK 32 /* waits without blocking before a fairness yield */

typedef struct c10k_coro_s c10k_coro_t;
typedef struct c10k_sched_s c10k_sched_t;

/* A coroutine's body. When it returns, the coroutine ends. */
typedef void (*c10k_coro_fn_t)(void *arg);

/* Why a wait ended. */
typedef enum {
    C10K_WAKE_READY,    /* the descriptor is ready */
    C10K_WAKE_DEADLINE, /* the deadline passed */
    C10K_WAKE_STOP,     /* the scheduler is stopping (stoppable waits only) */
    C10K_WAKE_ABORT,    /* the grace period is over: give up and unwind */
} c10k_wake_t;

/* A descriptor coroutines wait on. Lives as long as it is registered, e.g.
 * on the stack of the coroutine that owns the socket. */
typedef struct c10k_cfd_s {
    c10k_sched_t *sched;
    int fd;
    bool readable; /* the kernel said so, and no call has seen EAGAIN since */
    bool writable;
    bool rdhup;          /* the peer shut down its side: readable until EOF */
    uint32_t want;       /* EPOLLIN or EPOLLOUT, while a coroutine waits */
    c10k_coro_t *waiter; /* the coroutine waiting on it, or NULL */
} c10k_cfd_t;

typedef struct c10k_sched_conf_s {
    c10k_switch_t kind; /* how to switch */
    size_t stack_size;  /* usable bytes per coroutine stack (rounded up to pages) */
    int stop_fd;        /* stop once this is readable (it is never read); -1: none */
    int grace_ms;       /* after a stop, abort waits after this long; < 0: never */
} c10k_sched_conf_t;

/* Cumulative counts, for c10k_stats_add(). Written by the scheduler's thread
 * only (single-writer atomics: read them from anywhere). */
typedef struct c10k_sched_counters_s {
    atomic_ullong switches;      /* user-level context switches, both directions */
    atomic_ullong spawned;       /* coroutines started */
    atomic_ullong wake_ready;    /* resumed because a descriptor was ready */
    atomic_ullong wake_deadline; /* resumed because a deadline passed */
    atomic_ullong wake_stop;     /* resumed by the stop or the abort */
    atomic_ullong yields;        /* fairness yields */
} c10k_sched_counters_t;

#define C10K_SCHED_EVENTS 256 /* epoll events per wait */

struct c10k_sched_s {
    c10k_sched_conf_t conf;
    int epfd;
    c10k_ctx_t self;       /* the scheduler's own context: the thread's stack */
    ucontext_t self_uc;    /* its registers with C10K_SWITCH_UCONTEXT */
    c10k_coro_t *current;  /* the coroutine running, or NULL */
    c10k_coro_t *run_head; /* the run queue (FIFO) */
    c10k_coro_t **run_tail;
    c10k_coro_t *all; /* every live coroutine */
    int live;
    c10k_coro_t *free_stacks; /* finished coroutines kept for reuse */
    int nfree;
    c10k_coro_t *dead; /* the coroutine that just finished */
    c10k_wheel_t wheel;
    int64_t now;
    bool stop_seen; /* a stop was asked for; begins after this round's events */
    bool stopping;
    bool aborting;
    int64_t grace_until;
    int err;
    c10k_sched_counters_t counters;
    c10k_loopstat_t ls; /* the loop's iterations and stalls (loopstat.h) */
    struct epoll_event events[C10K_SCHED_EVENTS];
};

/* --- the scheduler (called from its thread, outside any coroutine) ------- */

/* A scheduler with nothing to run. Returns 0 or a negative errno. */
int c10k_sched_init(c10k_sched_t *s, const c10k_sched_conf_t *conf);

/* Run coroutines until none is left. Returns 0, or the negative errno of an
 * epoll_wait failure (the coroutines were aborted and have unwound). */
int c10k_sched_run(c10k_sched_t *s);

/* Release what c10k_sched_init() acquired. Coroutines still there (only
 * when c10k_sched_run() never ran) are discarded unrun. Safe after a failed
 * init. */
void c10k_sched_free(c10k_sched_t *s);

/* --- from the scheduler's thread, inside a coroutine or before run ------- */

/* Start fn(arg) as a new coroutine; it runs when the scheduler gets to it.
 * When fn returns, the coroutine ends. Returns 0 or a negative errno. */
int c10k_coro_spawn(c10k_sched_t *s, c10k_coro_fn_t fn, void *arg);

/* Ask the scheduler to stop (see the top). */
void c10k_sched_stop(c10k_sched_t *s);

/* --- inside a coroutine ------------------------------------------------------ */

/* The scheduler running the calling coroutine. */
c10k_sched_t *c10k_coro_sched(void);

/* Register fd (non-blocking) with the scheduler, edge-triggered for reading
 * and writing. Returns 0 or a negative errno. */
int c10k_cfd_open(c10k_cfd_t *f, c10k_sched_t *s, int fd);

/* A call on f returned EAGAIN for events (EPOLLIN, EPOLLOUT): forget that f
 * was ready for them, so the next wait waits for the kernel to say so. */
void c10k_cfd_blocked(c10k_cfd_t *f, uint32_t events);

/* Take f out of the epoll set before it goes away while its descriptor
 * stays open (closing the descriptor does it too). */
void c10k_cfd_release(c10k_cfd_t *f);

/*
 * Wait until f is ready for events (EPOLLIN or EPOLLOUT), the deadline
 * passes (c10k_now_ms() clock; < 0: none), or, if stoppable, the scheduler
 * stops. Returns at once, without switching, when f is already known to be
 * ready, and ready wins over a deadline or a stop that came at the same time.
 */
c10k_wake_t c10k_coro_wait(c10k_cfd_t *f, uint32_t events, int64_t deadline, bool stoppable);

/* One read of what f holds now, without waiting: bytes, 0 at EOF, or a
 * negative errno, -EAGAIN when there is nothing (then the next wait waits for
 * the kernel). A short read also means "nothing more for now": the next byte
 * raises a new edge, and no read is spent on finding EAGAIN. */
ssize_t c10k_cfd_recv(c10k_cfd_t *f, void *buf, size_t len);

/* Accept a connection on listener f, waiting while there is none. Returns
 * the new descriptor, a negative errno (-EMFILE, ...), or -ECANCELED on a
 * stop or an abort: an accept is a stoppable wait. */
int c10k_coro_accept(c10k_cfd_t *f, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* Sleep until the deadline (c10k_now_ms() clock). Returns 0, or -ECANCELED
 * on an abort. */
int c10k_coro_sleep_until(int64_t deadline);

/* Let every other ready coroutine run once, then continue. */
void c10k_coro_yield(void);

#endif
