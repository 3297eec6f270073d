/* gguf_kquant.h - llama.cpp's k-quant super-blocks (Q2_K, Q4_K, Q6_K: 256
 * values each) decoded from the bytes of a GGUF file, so the loader does
 * not depend on MLX's decoding of them (MLX 0.32's Q4_K is wrong). Q4_K
 * also converts losslessly to MLX's affine 4-bit format, groups of 32. */
#ifndef GM_GGUF_KQUANT_H
#define GM_GGUF_KQUANT_H

#include <stddef.h>
#include <stdint.h>

enum { GM_GGML_Q2_K = 10, GM_GGML_Q4_K = 12, GM_GGML_Q6_K = 14, GM_GGML_BF16 = 30 };
enum { GM_QK_K = 256 };

/* Bytes of one super-block, or 0 for a type not handled here. */
size_t gm_kquant_block_bytes(int ggml_type);

/* n_blocks consecutive super-blocks → out[n_blocks * 256] (row-major, as
 * the file orders them). Returns -1 for a type not handled here. */
int gm_kquant_dequantize(int ggml_type, const uint8_t *blocks, size_t n_blocks, float *out);

/* Q4_K → MLX affine, bits 4, group 32, exactly: each 32-value sub-block's
 * d*scale and -dmin*min become the group's scale and bias, its 4-bit
 * quants are repacked 8 to a uint32 (element j of a word in bits 4j..).
 * packed gets n_blocks*32 words, scales and biases n_blocks*8 floats. */
void gm_q4k_to_affine(const uint8_t *blocks, size_t n_blocks, uint32_t *packed, float *scales,
                      float *biases);

#endif
