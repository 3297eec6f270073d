/* qmm.h - our CPU quantized matmul for MLX's affine format: y = x @ W^T
 * with W stored as packed 2- to 8-bit integers plus per-group scale and
 * bias. Multithreaded over output rows (pool.h). Pure C, no MLX. */
#ifndef GM_QMM_H
#define GM_QMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GM_F32 = 0, GM_F16 = 1, GM_BF16 = 2 } gm_fdtype;

/* One product. Layouts are row-major and contiguous:
 *   x      [M, K]            x_dtype
 *   w      [N, K*bits/32]    uint32; a row is a little-endian bit stream,
 *                            element k at bits k*bits.. of it
 *   scales [N, K/group_size] sb_dtype, biases the same shape and dtype
 *   y      [M, N]            y_dtype
 * The dequantized weight is scale*q + bias; sums are float32. */
typedef struct gm_qmm_args {
    const void *x;
    const uint32_t *w;
    const void *scales;
    const void *biases;
    void *y;
    int M, N, K;
    int bits;       /* 2, 3, 4, 5, 6 or 8 */
    int group_size; /* 32, 64 or 128 */
    gm_fdtype x_dtype, sb_dtype, y_dtype;
} gm_qmm_args;

/* 1 when the kernels handle these parameters (bits, group size, K a
 * multiple of the group size, positive dims). */
int gm_qmm_supported(int bits, int group_size, int K);

/* Computes the product; 0 on success, -1 when unsupported or out of
 * memory (y untouched then). Safe to call from several threads: only one
 * call at a time uses the pool, the others run on their own thread. */
int gm_qmm(const gm_qmm_args *a);

/* The instruction set in use: "avx512" (AVX-512 BF16 mat-vec, AVX2
 * otherwise), "avx2", "neon" or "scalar". */
const char *gm_qmm_isa(void);

/* Forces an instruction set by name (tests and benchmarks); NULL or ""
 * returns to the best the CPU supports. Returns -1 if not available here.
 * GOMLX_QMM_ISA sets the initial choice the same way. */
int gm_qmm_set_isa(const char *name);

/* Rows of x up to which the matrix-vector kernel is used instead of the
 * tiled one (default from measurements; GOMLX_QMM_MV_MAX overrides). */
int gm_qmm_mv_max(void);
void gm_qmm_set_mv_max(int m);

/* 1 (the default) when the avx512 mat-vec takes float32 x as 8-bit digits
 * of integers, a power of two a run of x (2^-22 of the run's largest
 * magnitude), rather than as three exact bfloat16 terms, about half the
 * instructions. GOMLX_QMM_X_DIGITS=0 sets the initial choice to 0 (A/B
 * runs); gm_qmm_set_x_digits(-1) returns to it. */
int gm_qmm_x_digits(void);
void gm_qmm_set_x_digits(int on);
/* Calls so far that took float32 x as digits (tests and benchmarks). */
long gm_qmm_digit_calls(void);

#endif
