/* gguf_kquant.c - decoding llama.cpp's Q2_K, Q4_K and Q6_K super-blocks
 * (layouts as ggml documents them in block_q2_K/q4_K/q6_K). Each block is
 * 256 values in sub-blocks of 16 (Q2_K, Q6_K) or 32 (Q4_K) that share a
 * float16 super-scale (and super-min) and carry small integer scales. */
#include "io/gguf_kquant.h"

#include "kernels/half.h"

static float f16_at(const uint8_t *p) { return gm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

size_t gm_kquant_block_bytes(int ggml_type) {
    switch (ggml_type) {
    case GM_GGML_Q2_K: return 84;
    case GM_GGML_Q4_K: return 144;
    case GM_GGML_Q6_K: return 210;
    default: return 0;
    }
}

/* Q4_K packs eight 6-bit scales and eight 6-bit mins in 12 bytes: the low
 * 6 bits of bytes 0-3 (scales 0-3) and 4-7 (mins 0-3); scales and mins 4-7
 * take their low 4 bits from bytes 8-11 and their top 2 bits from the top
 * of bytes 0-3 and 4-7. */
static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: d, dmin (f16), 12 scale bytes, 128 bytes of quants. Sub-blocks 2i
 * and 2i+1 share 32 bytes: the even one in the low nibbles. */
static int q4k_quant(const uint8_t *qs, int j, int e) {
    uint8_t byte = qs[(j / 2) * 32 + e];
    return j & 1 ? byte >> 4 : byte & 0x0F;
}

static void dequant_q4k(const uint8_t *b, float *y) {
    float d = f16_at(b), dmin = f16_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        q4k_scale_min(b + 4, j, &sc, &m);
        for (int e = 0; e < 32; e++) y[j * 32 + e] = d * (float)sc * (float)q4k_quant(b + 16, j, e) - dmin * (float)m;
    }
}

/* Q6_K: 128 bytes of low 4 bits, 64 of high 2 bits, 16 int8 scales, f16 d.
 * Each half of 128 values is four runs of 32: runs 0/1 in the low nibbles
 * of the half's first/second 32 low-bit bytes, runs 2/3 in their high
 * nibbles; run k's high bits at shift 2k of the half's 32 high-bit bytes. */
static void dequant_q6k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16_at(b + 208);
    for (int e = 0; e < GM_QK_K; e++) {
        int half = e / 128, run = (e % 128) / 32, l = e % 32;
        uint8_t lo = ql[half * 64 + (run & 1) * 32 + l];
        int q = (run >= 2 ? lo >> 4 : lo & 0x0F) | ((qh[half * 32 + l] >> (2 * run)) & 3) << 4;
        y[e] = d * (float)sc[e / 16] * (float)(q - 32);
    }
}

/* Q2_K: 16 bytes of (4-bit scale | 4-bit min << 4), 64 bytes of 2-bit
 * quants, f16 d, f16 dmin. Each half of 128 values is four 2-bit planes of
 * 32 over the half's 32 quant bytes. */
static void dequant_q2k(const uint8_t *b, float *y) {
    const uint8_t *sm = b, *qs = b + 16;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int e = 0; e < GM_QK_K; e++) {
        int half = e / 128, plane = (e % 128) / 32, l = e % 32;
        int q = (qs[half * 32 + l] >> (2 * plane)) & 3;
        uint8_t s = sm[e / 16];
        y[e] = d * (float)(s & 0x0F) * (float)q - dmin * (float)(s >> 4);
    }
}

int gm_kquant_dequantize(int ggml_type, const uint8_t *blocks, size_t n_blocks, float *out) {
    size_t bytes = gm_kquant_block_bytes(ggml_type);
    if (!bytes) return -1;
    for (size_t i = 0; i < n_blocks; i++) {
        const uint8_t *b = blocks + i * bytes;
        float *y = out + i * GM_QK_K;
        if (ggml_type == GM_GGML_Q4_K) dequant_q4k(b, y);
        else if (ggml_type == GM_GGML_Q6_K) dequant_q6k(b, y);
        else dequant_q2k(b, y);
    }
    return 0;
}

void gm_q4k_to_affine(const uint8_t *blocks, size_t n_blocks, uint32_t *packed, float *scales,
                      float *biases) {
    for (size_t i = 0; i < n_blocks; i++) {
        const uint8_t *b = blocks + i * 144;
        float d = f16_at(b), dmin = f16_at(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_scale_min(b + 4, j, &sc, &m);
            scales[i * 8 + j] = d * (float)sc;
            biases[i * 8 + j] = -dmin * (float)m;
            uint32_t *w = packed + i * 32 + j * 4;
            for (int k = 0; k < 4; k++) {
                uint32_t word = 0;
                for (int e = 0; e < 8; e++) word |= (uint32_t)q4k_quant(b + 16, j, k * 8 + e) << (4 * e);
                w[k] = word;
            }
        }
    }
}
