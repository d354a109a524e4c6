/*
 * ctx.c - contexts and stacks (see ctx.h): the hand-written switch for
 * x86-64 and aarch64, the ucontext one, guard-paged stacks, and what the
 * sanitizers need to be told about each switch.
 */
#include "ctx.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Which sanitizer is compiled in: gcc says so with __SANITIZE_*__, clang
 * with __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define CTX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CTX_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CTX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CTX_TSAN 1
#endif
#endif
#ifdef CTX_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CTX_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Implemented in assembly below: save the callee-saved registers on the
 * running stack, store the stack pointer in *save_sp, switch to load_sp and
 * pop the registers saved there. Returns on the new stack. */
void c10k_ctx_swap_asm(void **save_sp, void *load_sp);
/* Where a new context's first switch returns to: calls fn(arg) from the
 * registers its initial frame loads. */
void c10k_ctx_entry_asm(void);

#if defined(__x86_64__)
#define CTX_HAVE_ASM 1
/* Frame (low to high): MXCSR (4 bytes) and x87 control word (2), padding,
 * r15, r14, r13, r12, rbx, rbp, return address. The control bits are
 * callee-saved in the SysV ABI: a coroutine that changes the rounding mode
 * must not change it for the one that runs next. */
__asm__(".text\n"
        ".globl c10k_ctx_swap_asm\n"
        ".hidden c10k_ctx_swap_asm\n"
        ".type c10k_ctx_swap_asm, @function\n"
        ".p2align 4\n"
        "c10k_ctx_swap_asm:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size c10k_ctx_swap_asm, .-c10k_ctx_swap_asm\n"
        /* Reached by the ret above with rsp 16-byte aligned: the call
         * leaves it as the ABI wants at a function's entry. */
        ".globl c10k_ctx_entry_asm\n"
        ".hidden c10k_ctx_entry_asm\n"
        ".type c10k_ctx_entry_asm, @function\n"
        ".p2align 4\n"
        "c10k_ctx_entry_asm:\n"
        "    movq %r13, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n"
        ".size c10k_ctx_entry_asm, .-c10k_ctx_entry_asm\n");

#define FRAME_WORDS 8

static void frame_init(uint64_t *sp, c10k_ctx_fn_t fn, void *arg)
{
    /* The control state a process starts with (SysV ABI 3.2.3). */
    sp[0] = 0x1F80 | (UINT64_C(0x037F) << 32);
    sp[3] = (uint64_t)(uintptr_t)arg;                /* r13 */
    sp[4] = (uint64_t)(uintptr_t)fn;                 /* r12 */
    sp[7] = (uint64_t)(uintptr_t)c10k_ctx_entry_asm; /* return address */
}

#elif defined(__aarch64__)
#define CTX_HAVE_ASM 1
/* Frame (low to high): x19..x28, x29 (frame pointer), x30 (link register:
 * where ret goes), d8..d15 (the low halves of v8..v15, all AAPCS64 asks a
 * callee to keep), FPCR (the rounding mode and flush-to-zero bits, the
 * counterpart of MXCSR; written back only when it differs, since a write
 * may stall the pipeline), padding. 176 bytes: sp stays 16-byte aligned. */
__asm__(".text\n"
        ".globl c10k_ctx_swap_asm\n"
        ".hidden c10k_ctx_swap_asm\n"
        ".type c10k_ctx_swap_asm, %function\n"
        ".p2align 4\n"
        "c10k_ctx_swap_asm:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mrs x9, fpcr\n"
        "    str x9, [sp, #160]\n"
        "    mov x9, sp\n"
        "    str x9, [x0]\n"
        "    mov sp, x1\n"
        "    ldr x9, [sp, #160]\n"
        "    mrs x10, fpcr\n"
        "    cmp x9, x10\n"
        "    b.eq 1f\n"
        "    msr fpcr, x9\n"
        "1:  ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #176\n"
        "    ret\n"
        ".size c10k_ctx_swap_asm, .-c10k_ctx_swap_asm\n"
        ".globl c10k_ctx_entry_asm\n"
        ".hidden c10k_ctx_entry_asm\n"
        ".type c10k_ctx_entry_asm, %function\n"
        ".p2align 4\n"
        "c10k_ctx_entry_asm:\n"
        "    mov x0, x20\n"
        "    blr x19\n"
        "    brk #0\n"
        ".size c10k_ctx_entry_asm, .-c10k_ctx_entry_asm\n");

#define FRAME_WORDS 22

static void frame_init(uint64_t *sp, c10k_ctx_fn_t fn, void *arg)
{
    sp[0] = (uint64_t)(uintptr_t)fn;                  /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;                 /* x20 */
    sp[11] = (uint64_t)(uintptr_t)c10k_ctx_entry_asm; /* x30 */
    /* sp[20], FPCR: 0, round to nearest as a process starts */
}

#else
/* Elsewhere only ucontext: c10k_ctx_make() refuses C10K_SWITCH_ASM. */
#define CTX_HAVE_ASM 0
#define FRAME_WORDS  2

void c10k_ctx_swap_asm(void **save_sp, void *load_sp)
{
    (void)save_sp;
    (void)load_sp;
    abort();
}

static void frame_init(uint64_t *sp, c10k_ctx_fn_t fn, void *arg)
{
    (void)sp;
    (void)fn;
    (void)arg;
}
#endif

bool c10k_ctx_have_asm(void)
{
    return CTX_HAVE_ASM;
}

/* --- stacks ---------------------------------------------------------------- */

/* Instrumented frames are larger, and the sanitizers' runtimes run on the
 * stack of whoever calls them (ASan's allocator keeps a stack trace of a
 * couple of KiB in its frame): a stack that fits the server becomes four
 * times larger under a sanitizer, so --stack-size 16 can be tested there. */
#if defined(CTX_ASAN) || defined(CTX_TSAN)
#define STACK_SCALE 4
#else
#define STACK_SCALE 1
#endif

int c10k_stack_map(c10k_stack_t *st, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *map;
    int rc;

    size = (size * STACK_SCALE + page - 1) & ~(page - 1);
    /* MAP_NORESERVE: untouched pages cost nothing, not even commit charge. */
    map = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    if (mprotect(map, page, PROT_NONE) < 0) {
        rc = -errno;
        munmap(map, size + page);
        return rc;
    }
    st->map = map;
    st->map_len = size + page;
    st->lo = (char *)map + page;
    st->size = size;
    return 0;
}

void c10k_stack_unmap(c10k_stack_t *st)
{
    if (st->map)
        munmap(st->map, st->map_len);
    memset(st, 0, sizeof(*st));
}

/* --- switching ----------------------------------------------------------------- */

/* The context that made the last switch on this thread: the one a resumed
 * context has just come from. */
static __thread c10k_ctx_t *switching_from;

static void switch_begin(c10k_ctx_t *from, c10k_ctx_t *to, bool last)
{
    switching_from = from;
#ifdef CTX_ASAN
    __sanitizer_start_switch_fiber(last ? NULL : &from->asan_fake, to->stack_lo, to->stack_size);
#else
    (void)last;
#endif
#ifdef CTX_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#else
    (void)to;
#endif
}

/* Runs in self, just switched to. ASan says which stack we came from: that
 * is how a thread's own stack, never described to us, gets known. */
static void switch_done(c10k_ctx_t *self)
{
#ifdef CTX_ASAN
    c10k_ctx_t *from = switching_from;
    const void *lo;
    size_t size;

    __sanitizer_finish_switch_fiber(self->asan_fake, &lo, &size);
    if (from && !from->stack_lo) {
        from->stack_lo = lo;
        from->stack_size = size;
    }
#else
    (void)self;
#endif
}

/* Every new context starts here, on its own stack. */
static void ctx_start(void *p)
{
    c10k_ctx_t *ctx = p;

    switch_done(ctx);
    ctx->fn(ctx->arg);
    abort(); /* fn must end with c10k_ctx_exit() */
}

/* makecontext() passes int arguments: the pointer travels in two halves. */
static void uc_start(unsigned hi, unsigned lo)
{
    ctx_start((void *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

void c10k_ctx_thread(c10k_ctx_t *ctx, c10k_switch_t kind, ucontext_t *uc)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->uc = kind == C10K_SWITCH_UCONTEXT ? uc : NULL;
#ifdef CTX_TSAN
    ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

int c10k_ctx_make(c10k_ctx_t *ctx, c10k_switch_t kind, ucontext_t *uc, void *lo, size_t size,
                  c10k_ctx_fn_t fn, void *arg)
{
    memset(ctx, 0, sizeof(*ctx));
    if (((uintptr_t)lo | size) & 15)
        return -EINVAL;
    if (kind == C10K_SWITCH_ASM && !CTX_HAVE_ASM)
        return -ENOTSUP;
    ctx->fn = fn;
    ctx->arg = arg;
    ctx->stack_lo = lo;
    ctx->stack_size = size;
    if (kind == C10K_SWITCH_UCONTEXT) {
        uintptr_t p = (uintptr_t)ctx;
        if (getcontext(uc) < 0)
            return -errno;
        uc->uc_stack.ss_sp = lo;
        uc->uc_stack.ss_size = size;
        uc->uc_link = NULL;
        makecontext(uc, (void (*)(void))uc_start, 2, (unsigned)(p >> 32), (unsigned)p);
        ctx->uc = uc;
    } else {
        uint64_t *sp = (uint64_t *)((char *)lo + size) - FRAME_WORDS;
        memset(sp, 0, FRAME_WORDS * sizeof(*sp));
        frame_init(sp, ctx_start, ctx);
        ctx->sp = sp;
    }
#ifdef CTX_TSAN
    ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
    return 0;
}

void c10k_ctx_swap(c10k_ctx_t *from, c10k_ctx_t *to)
{
    switch_begin(from, to, false);
    if (from->uc)
        swapcontext(from->uc, to->uc);
    else
        c10k_ctx_swap_asm(&from->sp, to->sp);
    switch_done(from);
}

void c10k_ctx_exit(c10k_ctx_t *from, c10k_ctx_t *to)
{
    switch_begin(from, to, true);
    if (from->uc)
        setcontext(to->uc);
    else
        c10k_ctx_swap_asm(&from->sp, to->sp);
    abort();
}

void c10k_ctx_release(c10k_ctx_t *ctx)
{
#ifdef CTX_ASAN
    /* A finished context never returned from its first frames, so their
     * redzones are still poisoned: clear them, or the next user of this
     * memory (a reused stack, or a later mapping at the same address) would
     * be reported for touching them. */
    if (ctx->stack_lo)
        __asan_unpoison_memory_region(ctx->stack_lo, ctx->stack_size);
#endif
#ifdef CTX_TSAN
    if (ctx->tsan_fiber)
        __tsan_destroy_fiber(ctx->tsan_fiber);
#endif
    ctx->tsan_fiber = NULL;
}
