/* pool_jobs.h - a thread-pool job for the tests that counts how often each
 * of its tasks ran (test_qmm's pool stress, tests/tsan/test_pool_threads). */
#ifndef GM_TEST_POOL_JOBS_H
#define GM_TEST_POOL_JOBS_H

#include <sched.h>
#include <stdatomic.h>

#include "kernels/pool.h"

typedef struct count_job {
    _Atomic int count[64];
    int slow;
} count_job;

static void count_task(void *ctx, int task, int worker) {
    (void)worker;
    count_job *j = ctx;
    /* a slow first task: the other threads finish their ranges and take
     * what is left of this one's */
    if (task == 0 && j->slow) sched_yield();
    atomic_fetch_add(&j->count[task], 1);
}

/* Runs a job of n tasks (n <= 64) on at most max_threads threads; returns
 * how many of the 64 slots were not run exactly as often as they should
 * (once below n, never from n on). */
static int run_count_job(int n, int slow, int max_threads) {
    count_job j;
    for (int t = 0; t < 64; t++) atomic_init(&j.count[t], 0);
    j.slow = slow;
    gm_pool_run(count_task, &j, n, max_threads);
    int bad = 0;
    for (int t = 0; t < 64; t++) bad += atomic_load(&j.count[t]) != (t < n);
    return bad;
}

#endif
