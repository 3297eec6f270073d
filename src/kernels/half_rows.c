/* half_rows.c - float16 rows converted with F16C (see half_rows.h). */
#include "kernels/half_rows.h"

#include <stdatomic.h>

#include "kernels/half.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define F16C_FN __attribute__((target("avx,f16c")))

static int has_f16c(void) {
    static _Atomic int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v;
}

F16C_FN static int f16c_to_f32(const uint16_t *h, float *f, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    return i;
}

F16C_FN static int f16c_to_f16(const float *f, uint16_t *h, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return i;
}
#endif

void gm_f16_row_to_f32(const uint16_t *h, float *f, int n) {
    int i = 0;
#if defined(__x86_64__)
    if (has_f16c()) i = f16c_to_f32(h, f, n);
#endif
    for (; i < n; i++) f[i] = gm_f16_to_f32(h[i]);
}

void gm_f32_row_to_f16(const float *f, uint16_t *h, int n) {
    int i = 0;
#if defined(__x86_64__)
    if (has_f16c()) i = f16c_to_f16(f, h, n);
#endif
    for (; i < n; i++) h[i] = gm_f32_to_f16(f[i]);
}
