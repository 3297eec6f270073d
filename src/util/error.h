/* error.h - the engine's error convention: functions return 0 or a
 * gomlx_status code, and the message goes to a thread-local buffer. */
#ifndef GM_ERROR_H
#define GM_ERROR_H

#include "gomlx.h"

/* Records the message (printf-style) and returns status, so a failure is
 * one line: `return gm_fail(GOMLX_ERR_FORMAT, "bad %s", what);` */
int gm_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading x: " + old). */
int gm_fail_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Turns the MLX shim's last error into ours (GOMLX_ERR_BACKEND). */
int gm_fail_mlx(const char *what);
const char *gm_error_message(void);
void gm_error_clear(void);
void gm_error_set_raw(const char *msg);

#endif
