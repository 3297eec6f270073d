/* gguf.h - a llama.cpp GGUF file as a gm_model: hyperparameters from the
 * metadata, tensors renamed to their Hugging Face names, the tokenizer
 * built from tokenizer.ggml.*, the chat template from the metadata. */
#ifndef GM_GGUF_H
#define GM_GGUF_H

#include "io/weights.h"

struct gm_model;
int gm_gguf_load(const char *path, struct gm_model *m, gm_weights *w, gm_load_progress progress,
                 void *user);

#endif
