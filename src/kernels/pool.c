/* pool.c - persistent pthread pool for the CPU kernels (see pool.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kernels/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/clock.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

/* A job's tasks are split into one contiguous range per taking part
 * thread: each takes its own range's tasks in order, then the tasks left
 * in the others' (a stalled thread holds up little). A range's counter is
 * a cache line of its own that only a thief shares, and the job's
 * description sits in the ticket's line, so a worker starts a job after
 * one cache-line transfer (the ticket) and takes its next task without
 * another: one shared counter for all tasks cost a transfer a task, ~0.1
 * us between near vCPUs and ~1 us between far ones, against a mat-vec
 * task's few us (decode step: ~120 jobs of 5-30 tasks).
 *
 * A counter packs a generation (high half) with the tasks of its range
 * taken in that job (low half); one from an older job counts as none
 * taken, so the caller never writes the workers' counters. A worker
 * takes a task of job g only while g is the newest job the counter has
 * seen: once a newer job has touched it, its compare-and-swap fails. The
 * job's description alternates between two slots by generation (the
 * caller fills g+1's while g runs) and is read as a seqlock: a worker
 * reads job g's slot, then the ticket again, and sits the job out if the
 * ticket moved on (the slot may then hold g+2's job). */
typedef struct job_slot {
    _Atomic(gm_pool_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int ntasks;
    _Atomic int parts; /* threads with a range: ids 0..parts-1 */
} job_slot;

typedef struct job_line {
    _Alignas(64) _Atomic uint64_t ticket; /* generation << 32 */
    job_slot slot[2];                     /* job of generation g in slot[g & 1] */
} job_line;

typedef struct range_counter {
    _Alignas(64) _Atomic uint64_t taken; /* generation << 32 | tasks taken */
} range_counter;

typedef struct pool {
    pthread_t *threads;
    int nworkers; /* threads besides the caller */

    pthread_mutex_t run_lock; /* held by the thread whose job runs */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;

    range_counter *ranges; /* one per thread, the caller's first */
    job_line job;
    _Alignas(64) _Atomic int done; /* tasks run, added once a thread a job */
    _Alignas(64) _Atomic int sleepers;
    _Atomic int quit;
    _Atomic int spin_us;
    _Atomic int bursts;           /* open gm_pool_burst_begin calls */
    _Atomic int64_t linger_until; /* us: spin until then after a burst */
} pool;

static pool g_pool = {
    .run_lock = PTHREAD_MUTEX_INITIALIZER,
    .sleep_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .spin_us = 200,
};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

typedef struct worker_arg {
    int id;
} worker_arg;

static int env_int(const char *name, int fallback) {
    const char *s = getenv(name);
    if (!s || !*s) return fallback;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 4096) return fallback;
    return (int)v;
}

static int default_threads(void) {
    int n = env_int("GOMLX_THREADS", 0);
    if (n > 0) return n;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* Tasks [part * per, (part + 1) * per) of n: part's range. */
static uint32_t range_end(int part, uint32_t per, uint32_t n) {
    uint64_t end = (uint64_t)(part + 1) * per;
    return end < n ? (uint32_t)end : n;
}

/* Runs tasks of job `gen` from the thread's own range, then the others'
 * (nothing if gen is no longer the newest job). */
static void take_tasks(pool *p, uint32_t gen, int id) {
    job_slot *s = &p->job.slot[gen & 1];
    gm_pool_fn fn = atomic_load_explicit(&s->fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
    uint32_t n = (uint32_t)atomic_load_explicit(&s->ntasks, memory_order_relaxed);
    int parts = atomic_load_explicit(&s->parts, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if ((uint32_t)(atomic_load_explicit(&p->job.ticket, memory_order_relaxed) >> 32) != gen) return;
    if (id >= parts) return;
    uint32_t per = (n + (uint32_t)parts - 1) / (uint32_t)parts;
    int ran = 0;
    for (int k = 0; k < parts; k++) { /* our own range, then the others' */
        int part = (id + k) % parts;
        uint32_t start = (uint32_t)part * per, end = range_end(part, per, n);
        uint32_t size = end > start ? end - start : 0;
        _Atomic uint64_t *c = &p->ranges[part].taken;
        uint64_t v = atomic_load(c);
        for (;;) {
            int32_t age = (int32_t)((uint32_t)(v >> 32) - gen);
            if (age > 0) break; /* a newer job has been here: ours is over */
            uint32_t taken = age < 0 ? 0 : (uint32_t)v;
            if (taken >= size) break;
            if (!atomic_compare_exchange_weak(c, &v, (uint64_t)gen << 32 | (taken + 1))) continue;
            fn(ctx, (int)(start + taken), id);
            ran++;
            v = atomic_load(c);
        }
    }
    if (ran) atomic_fetch_add(&p->done, ran);
}

static void *worker_main(void *arg) {
    pool *p = &g_pool;
    int id = ((worker_arg *)arg)->id;
    free(arg);
    uint32_t seen = (uint32_t)(atomic_load(&p->job.ticket) >> 32);
    for (;;) {
        uint32_t gen = (uint32_t)(atomic_load(&p->job.ticket) >> 32);
        if (gen == seen) {
            double deadline = gm_now_us() + atomic_load_explicit(&p->spin_us, memory_order_relaxed);
            unsigned spins = 0;
            while (gen == seen && !atomic_load_explicit(&p->quit, memory_order_relaxed)) {
                CPU_RELAX();
                if ((++spins & 255u) == 0 && !atomic_load_explicit(&p->bursts, memory_order_relaxed)) {
                    double t = gm_now_us();
                    if (t > deadline && t > (double)atomic_load_explicit(&p->linger_until, memory_order_relaxed))
                        break;
                }
                gen = (uint32_t)(atomic_load(&p->job.ticket) >> 32);
            }
            if (gen == seen) {
                /* The caller stores the ticket and then reads `sleepers`;
                 * we bump `sleepers` and then read the ticket. Both are
                 * seq_cst, so at least one of us sees the other. */
                pthread_mutex_lock(&p->sleep_lock);
                atomic_fetch_add(&p->sleepers, 1);
                while (!atomic_load(&p->quit) &&
                       (uint32_t)(atomic_load(&p->job.ticket) >> 32) == seen)
                    pthread_cond_wait(&p->wake, &p->sleep_lock);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->sleep_lock);
            }
            if (atomic_load(&p->quit)) return NULL;
            continue;
        }
        seen = gen;
        take_tasks(p, gen, id);
    }
}

/* Called with run_lock held. */
static void start_workers(pool *p, int nthreads) {
    p->nworkers = 0;
    p->threads = NULL;
    p->ranges = NULL;
    if (nthreads <= 1) return;
    p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
    p->ranges = aligned_alloc(_Alignof(range_counter), (size_t)nthreads * sizeof *p->ranges);
    if (!p->threads || !p->ranges) {
        free(p->threads), free(p->ranges);
        p->threads = NULL, p->ranges = NULL;
        return;
    }
    for (int i = 0; i < nthreads; i++) atomic_init(&p->ranges[i].taken, 0);
    atomic_store(&p->quit, 0);
    for (int i = 0; i < nthreads - 1; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) break;
        a->id = i + 1;
        if (pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            break;
        }
        p->nworkers++;
    }
}

static void stop_workers(pool *p) {
    pthread_mutex_lock(&p->sleep_lock);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->sleep_lock);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p->ranges);
    p->threads = NULL;
    p->ranges = NULL;
    p->nworkers = 0;
    atomic_store(&p->quit, 0);
}

static void init_once(void) {
    /* Spinning only pays with cores to spare: on two cores the spinning
     * workers starve MLX's scheduler thread and the graph-building thread
     * (SmolLM2 decode on 2 cores: 34 tok/s spinning 200 us, 39-48 not spinning). */
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    atomic_store(&g_pool.spin_us, env_int("GOMLX_SPIN_US", cores > 4 ? 200 : 0));
    pthread_mutex_lock(&g_pool.run_lock);
    start_workers(&g_pool, default_threads());
    pthread_mutex_unlock(&g_pool.run_lock);
}

int gm_pool_threads(void) {
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_pool.run_lock);
    int n = g_pool.nworkers + 1;
    pthread_mutex_unlock(&g_pool.run_lock);
    return n;
}

void gm_pool_set_threads(int n) {
    pthread_once(&g_once, init_once);
    if (n <= 0) n = default_threads();
    pthread_mutex_lock(&g_pool.run_lock);
    stop_workers(&g_pool);
    start_workers(&g_pool, n);
    pthread_mutex_unlock(&g_pool.run_lock);
}

void gm_pool_set_spin_us(int us) {
    pthread_once(&g_once, init_once);
    atomic_store(&g_pool.spin_us, us < 0 ? 0 : us);
}

/* Long enough to bridge the gap between two layers' jobs (MLX starting
 * the next primitive), short enough not to starve other threads when the
 * step is over. */
#define BURST_LINGER_US 150

void gm_pool_burst_begin(void) {
    pthread_once(&g_once, init_once);
    atomic_fetch_add(&g_pool.bursts, 1);
}

void gm_pool_burst_end(void) {
    atomic_store(&g_pool.linger_until, (int64_t)gm_now_us() + BURST_LINGER_US);
    atomic_fetch_sub(&g_pool.bursts, 1);
}

void gm_pool_run(gm_pool_fn fn, void *ctx, int ntasks, int max_threads) {
    if (ntasks <= 0) return;
    pthread_once(&g_once, init_once);
    pool *p = &g_pool;
    if (ntasks == 1 || max_threads <= 1 || pthread_mutex_trylock(&p->run_lock) != 0) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    if (p->nworkers == 0) {
        pthread_mutex_unlock(&p->run_lock);
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    uint32_t gen = (uint32_t)(atomic_load(&p->job.ticket) >> 32) + 1;
    job_slot *s = &p->job.slot[gen & 1];
    int threads = p->nworkers + 1;
    int parts = max_threads < threads ? max_threads : threads;
    if (parts > ntasks) parts = ntasks;
    atomic_store_explicit(&s->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&s->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&s->ntasks, ntasks, memory_order_relaxed);
    atomic_store_explicit(&s->parts, parts, memory_order_relaxed);
    atomic_store(&p->done, 0);
    atomic_store(&p->job.ticket, (uint64_t)gen << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->sleep_lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->sleep_lock);
    }
    take_tasks(p, gen, 0);
    /* A worker may still be inside its last task; a descheduled one can
     * take long on a busy machine, so stop burning the core after a while. */
    unsigned spins = 0;
    while (atomic_load(&p->done) < ntasks) {
        CPU_RELAX();
        if (++spins > 4096) sched_yield();
    }
    pthread_mutex_unlock(&p->run_lock);
}
