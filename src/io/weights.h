/* weights.h - a table of named tensors as loaded from safetensors or GGUF.
 * Model loaders take (move) the tensors they use; what is left over at the
 * end is reported as unused. */
#ifndef GM_WEIGHTS_H
#define GM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "mlx/mx.h"

typedef struct gm_weights gm_weights;

gm_weights *gm_weights_new(void);
void gm_weights_free(gm_weights *w); /* frees tensors still held */
/* Adds a tensor (takes ownership); replaces an existing one of that name. */
int gm_weights_put(gm_weights *w, const char *name, mx_array a);
mx_array gm_weights_get(const gm_weights *w, const char *name);     /* borrowed or NULL */
/* Removes and returns the tensor (caller owns it), or NULL. */
mx_array gm_weights_take(gm_weights *w, const char *name);
size_t gm_weights_count(const gm_weights *w);
/* Iterates names still held (for renaming/diagnostics); stop by returning non-zero. */
int gm_weights_each(const gm_weights *w, int (*fn)(const char *name, mx_array a, void *u), void *u);
uint64_t gm_weights_bytes(const gm_weights *w);

/* Loads model.safetensors or the shards listed in
 * model.safetensors.index.json (or every *.safetensors) from a folder. */
typedef void (*gm_load_progress)(float fraction, const char *message, void *user);
int gm_weights_load_folder(const char *dir, gm_weights *w, gm_load_progress progress, void *user);

#endif
