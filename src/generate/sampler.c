/* sampler.c - on-device sampling. Filters follow Hugging Face's order:
 * temperature first, then top-k, top-p (nucleus, keeping the smallest set
 * whose mass reaches p) and min-p (relative to the top probability). */
#include "generate/sampler.h"

#include <math.h>
#include <string.h>

#include "util/error.h"

int gm_sampler_init(gm_sampler *s, float temperature, float top_p, int top_k, float min_p,
                    uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (temperature < 0 || !isfinite(temperature))
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "temperature must be a finite number >= 0 (got %g)", temperature);
    if (!(top_p > 0 && top_p <= 1))
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "top_p must be in (0, 1] (got %g)", top_p);
    if (top_k < 0) return gm_fail(GOMLX_ERR_INVALID_INPUT, "top_k must be >= 0 (got %d)", top_k);
    if (!(min_p >= 0 && min_p < 1))
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "min_p must be in [0, 1) (got %g)", min_p);
    s->temperature = temperature;
    s->top_p = top_p;
    s->top_k = top_k;
    s->min_p = min_p;
    s->key = mx_keep(mx_random_key(seed));
    if (!s->key) return gm_fail_mlx("creating the random key");
    return 0;
}

static int is_greedy(const gm_sampler *s) { return s->temperature == 0 || s->top_k == 1; }

mx_array gm_sampler_filtered(const gm_sampler *s, mx_array logits) {
    mx_array x = mx_astype(logits, MX_FLOAT32);
    if (s->temperature > 0) x = mx_scale(x, 1.0 / s->temperature);
    x = mx_subtract(x, mx_logsumexp(x, -1, 1));
    int vocab = mx_dim(logits, -1);
    int use_k = s->top_k > 0 && s->top_k < vocab;
    int use_p = s->top_p < 1.0f;
    int use_min = s->min_p > 0;
    if (!use_k && !use_p && !use_min) return x;
    mx_array neg_inf = mx_scalar(-INFINITY, MX_FLOAT32);
    /* Sort descending once; every filter is a prefix rule over that order. */
    mx_array order = mx_argsort(mx_negative(x), -1);
    mx_array sorted = mx_take_along_axis(x, order, -1);
    mx_array keep = mx_full((int[]){1, vocab}, 2, 1, MX_BOOL);
    if (use_k) {
        mx_array rank = mx_reshape(mx_arange(0, vocab, 1, MX_INT32), (int[]){1, vocab}, 2);
        keep = mx_logical_and(keep, mx_less(rank, mx_scalar(s->top_k, MX_INT32)));
    }
    if (use_p) {
        /* Mass strictly before each token; the first token always stays. */
        mx_array before = mx_cumsum(mx_exp(sorted), -1, 0, 0);
        keep = mx_logical_and(keep, mx_less(before, mx_scalar(s->top_p, MX_FLOAT32)));
    }
    if (use_min) {
        mx_array top = mx_slice(sorted, (int[]){0, 0}, (int[]){1, 1}, NULL, 2);
        mx_array threshold = mx_add(top, mx_scalar(log(s->min_p), MX_FLOAT32));
        keep = mx_logical_and(keep, mx_greater_equal(sorted, threshold));
    }
    mx_array kept = mx_where(keep, sorted, neg_inf);
    mx_array out = mx_full((int[]){1, vocab}, 2, -INFINITY, MX_FLOAT32);
    return mx_put_along_axis(out, order, kept, -1);
}

mx_array gm_sampler_sample(gm_sampler *s, mx_array logits) {
    /* Token ids stay uint32 as MLX returns them: a cast would be one more
     * kernel per decoded token, and take() and the readback accept them. */
    if (is_greedy(s)) return mx_argmax(logits, -1, 0);
    mx_array next, sub;
    if (mx_random_split(s->key, &next, &sub)) return NULL;
    mx_free(s->key);
    s->key = mx_keep(next);
    return mx_random_categorical(gm_sampler_filtered(s, logits), -1, sub);
}

void gm_sampler_free(gm_sampler *s) {
    mx_free(s->key);
    s->key = NULL;
}
