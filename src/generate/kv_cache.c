/* kv_cache.c - per-session key/value cache: preallocated in steps of 256
 * positions and written in place with slice_update, so a decode step
 * neither copies the cache nor reallocates it. */
#include <stdlib.h>
#include <string.h>

#include "models/layers.h"
#include "models/model.h"
#include "util/error.h"

enum { KV_STEP = 256 };

int gm_kv_cache_init(gm_kv_cache *c, const gm_model *m) {
    memset(c, 0, sizeof *c);
    c->n_layers = m->cfg.num_layers;
    c->k = calloc((size_t)c->n_layers, sizeof(mx_array));
    c->v = calloc((size_t)c->n_layers, sizeof(mx_array));
    c->start = calloc((size_t)c->n_layers, sizeof(int));
    if (!c->k || !c->v || !c->start) {
        gm_kv_cache_free(c);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory for the KV cache");
    }
    return 0;
}

/* Room for `need` positions and at least one more, in steps. Never
 * exactly `need`: the prompt's keys would then overwrite the whole buffer,
 * which MLX does by keeping the update itself, a view that holds each
 * layer's whole q/k/v projection alive (SmolLM2, 512 tokens: +41 MiB); and
 * the first decoded token would grow the cache at once. */
static int capacity_for(int need) { return (need / KV_STEP + 1) * KV_STEP; }

/* A buffer of room for `need` positions holding the first `keep` of old. */
static mx_array grown(mx_array old, int need, int keep, int kvh, int d, mx_dtype dtype) {
    int cap = capacity_for(need);
    if (!old) return mx_zeros((int[]){1, kvh, cap, d}, 4, dtype);
    mx_array head = mx_slice(old, (int[]){0, 0, 0}, (int[]){1, kvh, keep}, NULL, 3);
    mx_array tail = mx_zeros((int[]){1, kvh, cap - keep, d}, 4, dtype);
    return mx_concat((mx_array[]){head, tail}, 2, 2);
}

/* The last `keep` positions of [from, from + keep) of old, copied into a
 * fresh buffer with room for `need` (used when a window layer drops its
 * oldest keys: one copy per window's worth of tokens). */
static mx_array shifted(mx_array old, int from, int keep, int need, int kvh, int d, mx_dtype dtype) {
    int cap = capacity_for(need);
    mx_array head = mx_slice(old, (int[]){0, 0, from}, (int[]){1, kvh, from + keep}, NULL, 3);
    mx_array tail = mx_zeros((int[]){1, kvh, cap - keep, d}, 4, dtype);
    return mx_concat((mx_array[]){head, tail}, 2, 2);
}

int gm_kv_cache_reserve(gm_kv_cache *c, const gm_model *m, int layer, int t, int window,
                        mx_dtype dt, int *slot, int *key_start) {
    int kvh = m->cfg.num_kv_heads, d = m->cfg.head_dim;
    /* Keys before `first` are out of every later query's window. */
    int first = window > 0 ? c->offset - window + 1 : 0;
    int drop = first - c->start[layer];
    int trim = window > 0 && drop >= window;
    int start = trim ? first : c->start[layer];
    int held = c->offset - start, end = held + t;
    mx_array *slots[2] = {&c->k[layer], &c->v[layer]};
    for (int i = 0; i < 2; i++) {
        mx_array cur = *slots[i];
        if (cur && !trim && mx_dim(cur, 2) >= end) continue;
        mx_array fresh = mx_keep(trim ? shifted(cur, drop, held, end, kvh, d, dt)
                                      : grown(cur, end, held, kvh, d, dt));
        /* Copied now, so the old buffer is gone before the next layer grows:
         * growing every layer inside one step's graph would hold the old
         * and new caches of all layers at once (SmolLM2 at 512 tokens:
         * +41 MiB of peak). One wait per 256 tokens. */
        if (!fresh || (cur && mx_eval(&fresh, 1))) {
            mx_free(fresh);
            return gm_fail_mlx("growing the KV cache");
        }
        mx_free(cur);
        *slots[i] = fresh;
    }
    c->start[layer] = start;
    if (mx_dim(c->k[layer], 2) > c->capacity) c->capacity = mx_dim(c->k[layer], 2);
    *slot = held;
    *key_start = start;
    return 0;
}

int gm_kv_cache_update(gm_kv_cache *c, const gm_model *m, int layer, mx_array k, mx_array v,
                       int window, mx_array *keys, mx_array *values, int *key_start) {
    int kvh = m->cfg.num_kv_heads, d = m->cfg.head_dim, t = mx_dim(k, 2), held;
    int rc = gm_kv_cache_reserve(c, m, layer, t, window, mx_get_dtype(k), &held, key_start);
    if (rc) return rc;
    int end = held + t;
    mx_array *slots[2] = {&c->k[layer], &c->v[layer]};
    mx_array news[2] = {k, v};
    mx_array *views[2] = {keys, values};
    for (int i = 0; i < 2; i++) {
        mx_array cur = *slots[i];
        mx_array updated = mx_keep(mx_slice_update(cur, news[i], (int[]){0, 0, held, 0},
                                                   (int[]){1, kvh, end, d}, 4));
        if (!updated) return gm_fail_mlx("writing the KV cache");
        /* Dropping our handle to the old buffer lets MLX update in place. */
        mx_free(cur);
        *slots[i] = updated;
        *views[i] = mx_slice(updated, (int[]){0, 0, 0}, (int[]){1, kvh, end}, NULL, 3);
        if (!*views[i]) return gm_fail_mlx("slicing the KV cache");
    }
    return 0;
}

int gm_kv_cache_rewind(gm_kv_cache *c, const gm_model *m, int pos) {
    for (int i = 0; i < c->n_layers; i++) {
        int window = gm_layer_window(m, &m->layers[i]);
        int needed = window > 0 ? pos - window + 1 : 0;
        if (c->start[i] > (needed > 0 ? needed : 0)) return -1;
    }
    c->offset = pos;
    return 0;
}

int gm_kv_cache_arrays(gm_kv_cache *c, mx_array *out, int cap) {
    int n = 0;
    for (int i = 0; i < c->n_layers && n + 2 <= cap; i++) {
        if (c->k[i]) out[n++] = c->k[i];
        if (c->v[i]) out[n++] = c->v[i];
    }
    return n;
}

void gm_kv_cache_free(gm_kv_cache *c) {
    for (int i = 0; c->k && i < c->n_layers; i++) mx_free(c->k[i]);
    for (int i = 0; c->v && i < c->n_layers; i++) mx_free(c->v[i]);
    mx_cuda_layers_free(c->cuda_layers);
    free(c->k);
    free(c->v);
    free(c->start);
    memset(c, 0, sizeof *c);
}

uint64_t gm_kv_bytes_per_token(const gm_model *m) {
    return 2ull * (uint64_t)m->cfg.num_layers * (uint64_t)m->cfg.num_kv_heads *
           (uint64_t)m->cfg.head_dim * mx_dtype_size(gm_model_dtype(m));
}
