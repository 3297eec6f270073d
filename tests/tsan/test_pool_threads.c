/* test_pool_threads.c - the CPU kernels' thread pool under ThreadSanitizer
 * (built with -fsanitize=thread on its own, without MLX): every task of a
 * job runs exactly once and before gm_pool_run returns, with ranges
 * stolen from a slow thread, fewer or more threads asked for than the pool
 * has, a second caller racing for the pool, workers spinning or sleeping
 * between jobs, and the pool resized; TSan fails the run on a data race. */
#include <pthread.h>

#include "../c/check.h"
#include "../c/pool_jobs.h"

/* Runs `jobs` jobs of varied sizes; returns the tasks not run exactly once. */
static int run_jobs(int jobs, int seed) {
    int bad = 0;
    for (int i = 0; i < jobs; i++) {
        const int k = i + seed;
        bad += run_count_job(k % 2 ? 2 + k % 5 : 30 + k % 34, k % 7 == 0, 1 + k % 5);
    }
    return bad;
}

static void *second_caller(void *arg) {
    *(int *)arg = run_jobs(2000, 1);
    return NULL;
}

static void test_each_task_once(void) {
    gm_pool_set_threads(3);
    int other = 0;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, second_caller, &other) == 0);
    int bad = run_jobs(10000, 0);
    pthread_join(th, NULL);
    CHECK_EQ_INT(bad + other, 0);
    gm_pool_set_spin_us(200); /* workers spinning between jobs */
    CHECK_EQ_INT(run_jobs(5000, 2), 0);
    gm_pool_set_spin_us(0);
    gm_pool_set_threads(2);
    CHECK_EQ_INT(run_jobs(3000, 3), 0);
    gm_pool_set_threads(0);
}

int main(void) {
    RUN(test_each_task_once);
    return check_summary();
}
