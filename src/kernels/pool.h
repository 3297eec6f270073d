/* pool.h - the persistent thread pool behind the CPU kernels: one job at a
 * time, split into numbered tasks; the caller and the workers each take a
 * contiguous range of them in order, then what is left of the others'.
 * Workers spin briefly after a job before sleeping, because decoding
 * issues hundreds of small jobs per token. */
#ifndef GM_POOL_H
#define GM_POOL_H

/* Runs one task; `worker` is 0..gm_pool_threads()-1, unique among the
 * threads running this job (index into per-thread scratch). */
typedef void (*gm_pool_fn)(void *ctx, int task, int worker);

/* Threads a job may use, the caller included. The default is the CPUs
 * this process may run on; GOMLX_THREADS overrides. */
int gm_pool_threads(void);

/* Resizes the pool (n <= 0: back to the default). Waits for a running
 * job to finish first. */
void gm_pool_set_threads(int n);

/* Runs fn for tasks 0..ntasks-1 on at most max_threads threads (worker
 * indices stay below it) and returns when all are done. With T threads
 * taking part, thread w first takes tasks [w * per, (w + 1) * per) in
 * order, per = ceil(ntasks / T) (T = min(max_threads, gm_pool_threads(),
 * ntasks)), then those left in the others' ranges. When another
 * thread's job holds the pool, runs every task on the calling thread
 * instead of waiting (worker index 0 then). */
void gm_pool_run(gm_pool_fn fn, void *ctx, int ntasks, int max_threads);

/* Microseconds an idle worker spins before sleeping (GOMLX_SPIN_US,
 * default 200; 0 sleeps at once). */
void gm_pool_set_spin_us(int us);

/* Between gm_pool_burst_begin and gm_pool_burst_end idle workers keep
 * spinning however long they wait, and for a short while after the end:
 * a caller about to issue many small jobs back to back (a fused decoder
 * layer: four matmuls and an attention in well under a millisecond) then
 * pays no wake-up per job. Calls nest; any thread may make them. */
void gm_pool_burst_begin(void);
void gm_pool_burst_end(void);

#endif
