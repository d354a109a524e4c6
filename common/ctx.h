/*
 * ctx.h - execution contexts and their stacks: the bottom layer of the
 * coroutines (coro.h).
 *
 * A context is a stack plus the registers a function call must preserve.
 * Switching from one context to another saves the running one's registers
 * on its own stack, loads the other's stack pointer and returns on that
 * stack, into whatever that context was doing when it last switched away.
 * Everything else (the caller-saved registers, the flags) the compiler
 * already treats as clobbered by the call, so that is all a switch needs.
 *
 * Two ways to switch (c10k_switch_t):
 *   C10K_SWITCH_ASM       a few instructions of assembly (x86-64, aarch64):
 *                         push the callee-saved registers, swap the stack
 *                         pointer, pop. No system call. On x86-64 the MXCSR
 *                         control bits and the x87 control word are callee-
 *                         saved as well (SysV ABI 3.2.3) and are switched too;
 *                         on aarch64 x19-x30, d8-d15 (AAPCS64) and FPCR.
 *   C10K_SWITCH_UCONTEXT  glibc's swapcontext(3). Portable, but it also saves
 *                         and restores the signal mask, which is one
 *                         rt_sigprocmask system call per switch.
 *
 * Stacks are mmap'd with MAP_NORESERVE, so they cost only the pages a
 * coroutine touches, and have a PROT_NONE guard page below them: running off
 * the end is a SIGSEGV, never a silent write into a neighbour.
 *
 * Under AddressSanitizer and ThreadSanitizer every switch is announced to the
 * sanitizer (__sanitizer_{start,finish}_switch_fiber, __tsan_switch_to_fiber),
 * so both follow the program from stack to stack instead of reporting the
 * switch itself as an error.
 *
 * Not thread-safe: a context runs on one kernel thread, and only that thread
 * may switch to it.
 */
#ifndef C10K_CTX_H
#define C10K_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <ucontext.h>

typedef enum { C10K_SWITCH_ASM, C10K_SWITCH_UCONTEXT } c10k_switch_t;

/* A context's entry function. It must never return: it ends by switching away
 * for the last time with c10k_ctx_exit(). */
typedef void (*c10k_ctx_fn_t)(void *arg);

typedef struct c10k_ctx_s {
    void *sp;       /* hand-written switch: the saved stack pointer */
    ucontext_t *uc; /* ucontext switch: the saved context; NULL for the hand-written one */
    /* The stack, for the sanitizers. NULL for a thread's own stack until its
     * first switch away, when the sanitizer tells us where it is. */
    const void *stack_lo;
    size_t stack_size;
    void *asan_fake; /* AddressSanitizer's fake stack while switched away */
    void *tsan_fiber;
    c10k_ctx_fn_t fn;
    void *arg;
} c10k_ctx_t;

/* A stack: the usable part [lo, lo + size) above a guard page. */
typedef struct c10k_stack_s {
    void *map; /* the mapping, guard page included */
    size_t map_len;
    void *lo;
    size_t size;
} c10k_stack_t;

/* True when C10K_SWITCH_ASM exists on this architecture (x86-64, aarch64). */
bool c10k_ctx_have_asm(void);

/* Map a stack of at least size bytes (rounded up to pages; four times as
 * many under ASan or TSan, whose frames and runtimes need more) with a guard
 * page below it. Returns 0 or a negative errno. */
int c10k_stack_map(c10k_stack_t *st, size_t size);

/* Unmap it. Safe on a zeroed stack. */
void c10k_stack_unmap(c10k_stack_t *st);

/*
 * The calling thread's own context, so it can switch to coroutines and be
 * switched back to. uc is storage for its saved registers with
 * C10K_SWITCH_UCONTEXT (NULL with C10K_SWITCH_ASM); the caller owns it and
 * keeps it alive as long as ctx.
 */
void c10k_ctx_thread(c10k_ctx_t *ctx, c10k_switch_t kind, ucontext_t *uc);

/*
 * A new context that runs fn(arg) on the stack [lo, lo + size) when first
 * switched to. lo and size must be 16-byte aligned. With C10K_SWITCH_UCONTEXT,
 * uc is storage for its registers (it may lie just above the stack).
 * Returns 0 or a negative errno (-ENOTSUP: no hand-written switch here).
 */
int c10k_ctx_make(c10k_ctx_t *ctx, c10k_switch_t kind, ucontext_t *uc, void *lo, size_t size,
                  c10k_ctx_fn_t fn, void *arg);

/* Save the running context into from and continue in to. Returns when
 * something switches back to from. Both must be of the same kind. */
void c10k_ctx_swap(c10k_ctx_t *from, c10k_ctx_t *to);

/* Like c10k_ctx_swap(), but from is finished and never resumes: the
 * sanitizers may forget its stack. Call c10k_ctx_release() on it afterwards,
 * from another context. */
__attribute__((noreturn)) void c10k_ctx_exit(c10k_ctx_t *from, c10k_ctx_t *to);

/* Release what c10k_ctx_make() acquired besides the stack (a sanitizer's
 * record of it). The context must not be running. */
void c10k_ctx_release(c10k_ctx_t *ctx);

#endif
