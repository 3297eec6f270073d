/* env.h - the engine's A/B switches: GOMLX_... variables that turn a piece
 * off when set to "0" (header only, as clock.h). */
#ifndef GM_ENV_H
#define GM_ENV_H

#include <stdlib.h>
#include <string.h>

/* 1 when the variable `name` is set to "0". */
static inline int gm_env_off(const char *name) {
    const char *e = getenv(name);
    return e && !strcmp(e, "0");
}

#endif
