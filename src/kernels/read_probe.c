/* read_probe.c - the CPU's memory read bandwidth, through the same thread
 * pool and task order as the mat-vec kernels. */
#include "kernels/read_probe.h"

#include <stdint.h>
#include <stdlib.h>

#include "kernels/pool.h"
#include "util/clock.h"

enum { PROBE_TASKS = 256 };

typedef struct probe_job {
    const uint64_t *buf;
    size_t words_per_task;
    uint64_t sums[PROBE_TASKS];
} probe_job;

/* Task t reads block t, as the mat-vec reads its rows (qmm.c, mv_task):
 * the pool gives each thread a contiguous range of tasks, so each streams
 * its own contiguous stretch, which is what the memory reads fastest.
 * Four sums keep the adds from serializing the loads. */
static void probe_task(void *ctx, int task, int worker) {
    (void)worker;
    probe_job *j = ctx;
    const uint64_t *p = j->buf + (size_t)task * j->words_per_task;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < j->words_per_task; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    j->sums[task] = a + b + c + d;
}

double gm_read_probe_gbps(size_t bytes, int threads, int passes) {
    probe_job *j = calloc(1, sizeof *j);
    uint64_t *buf = malloc(bytes);
    if (!j || !buf || threads < 1) {
        free(j);
        free(buf);
        return 0;
    }
    /* Written first, so the pages exist and the reads are not page faults. */
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;
    if (threads > PROBE_TASKS) threads = PROBE_TASKS;
    int ntasks = PROBE_TASKS / threads * threads;
    j->buf = buf;
    j->words_per_task = bytes / 8 / (size_t)ntasks / 4 * 4;
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = gm_now_s();
        gm_pool_run(probe_task, j, ntasks, threads);
        double dt = gm_now_s() - t0;
        double gbps = (double)j->words_per_task * 8 * ntasks / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    free(buf);
    free(j);
    return best;
}
