/* worker.c - the per-model job queue. MLX work of all models is also
 * serialized by one process-wide lock, because MLX's graph building and
 * evaluation are not safe to run from several threads at once. */
#include "worker.h"

#include <string.h>

#include "mlx/mx.h"
#include "util/error.h"

struct gm_job {
    gm_job_fn fn;
    void *arg;
    int status;
    int finished;
    int last;
    char error[1024];
    gm_job *next;
};

static pthread_mutex_t mlx_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker_main(void *p) {
    gm_worker *w = p;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head) pthread_cond_wait(&w->wake, &w->mu);
        gm_job *job = w->head;
        w->head = job->next;
        if (!w->head) w->tail = NULL;
        pthread_mutex_unlock(&w->mu);

        pthread_mutex_lock(&mlx_lock);
        gm_error_clear();
        mx_clear_error();
        job->status = job->fn ? job->fn(job->arg) : 0;
        strncpy(job->error, job->status ? gm_error_message() : "", sizeof job->error - 1);
        pthread_mutex_unlock(&mlx_lock);

        pthread_mutex_lock(&w->mu);
        int last = job->last;
        job->finished = 1;
        pthread_cond_broadcast(&w->done);
        if (last) break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int gm_worker_start(gm_worker *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        return gm_fail(GOMLX_ERR_INTERNAL, "cannot start the model's worker thread");
    }
    w->started = 1;
    return 0;
}

static int submit(gm_worker *w, gm_job *job) {
    pthread_mutex_lock(&w->mu);
    if (w->closed) {
        pthread_mutex_unlock(&w->mu);
        return gm_fail(GOMLX_ERR_CLOSED, "the model is closed");
    }
    if (job->last) w->closed = 1;
    if (w->tail) w->tail->next = job;
    else w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->wake);
    while (!job->finished) pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    if (job->status) gm_error_set_raw(job->error);
    return job->status;
}

int gm_worker_call(gm_worker *w, gm_job_fn fn, void *arg) {
    gm_job job = {.fn = fn, .arg = arg};
    return submit(w, &job);
}

int gm_worker_stop(gm_worker *w, gm_job_fn last, void *arg) {
    if (!w->started) return 0;
    gm_job job = {.fn = last, .arg = arg, .last = 1};
    int rc = submit(w, &job);
    if (rc == GOMLX_ERR_CLOSED) return rc;
    pthread_join(w->thread, NULL);
    w->started = 0;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    return rc;
}
