/* worker.h - one thread per model that runs all of its MLX work. Public
 * API calls from any thread become jobs on it; the caller waits and gets
 * the job's status and error message on its own thread. */
#ifndef GM_WORKER_H
#define GM_WORKER_H

#include <pthread.h>

typedef int (*gm_job_fn)(void *arg);

typedef struct gm_job gm_job;

typedef struct gm_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    gm_job *head, *tail;
    int closed;  /* no new jobs accepted */
    int started;
} gm_worker;

int gm_worker_start(gm_worker *w);
/* Runs fn(arg) on the worker and waits. GOMLX_ERR_CLOSED once stopped. */
int gm_worker_call(gm_worker *w, gm_job_fn fn, void *arg);
/* Runs fn(arg) as the last job (jobs already queued run first), then stops
 * the thread; later calls fail with GOMLX_ERR_CLOSED. */
int gm_worker_stop(gm_worker *w, gm_job_fn last, void *arg);

#endif
