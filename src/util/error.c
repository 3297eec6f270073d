/* error.c - thread-local error messages for the engine and the public API. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mlx/mx.h"

static _Thread_local char error_message[1024];

int gm_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return status;
}

int gm_fail_context(int status, const char *fmt, ...) {
    char prefix[512], old[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    int k = snprintf(error_message, sizeof error_message, "%s: ", prefix);
    if (k > 0 && (size_t)k < sizeof error_message) strncat(error_message, old, sizeof error_message - (size_t)k - 1);
    return status;
}

int gm_fail_mlx(const char *what) {
    const char *m = mx_error();
    return gm_fail(GOMLX_ERR_BACKEND, "%s: %s", what, m && *m ? m : "MLX error");
}

const char *gm_error_message(void) { return error_message; }
void gm_error_clear(void) { error_message[0] = 0; }
void gm_error_set_raw(const char *msg) { snprintf(error_message, sizeof error_message, "%s", msg); }
