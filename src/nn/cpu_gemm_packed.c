/* The forward pass of a Gemm whose B is a constant (an imported model's weights), on
 * AVX-512 CPUs: B is packed once, on the first pass that uses it, into panels of 64
 * columns, each K rows of 64 floats (zero past N), and every pass after that reads it
 * in place. An sgemm call packs both of its operands every time; for the
 * Fashion-MNIST MLP's first layer at batch 256 that packing was about 9 % of the pass,
 * and the kernel here, which reads A in place, ran the whole product in 0.90 ms against
 * OpenBLAS's 1.01 ms (docs/BENCHMARKS.md). At small batches, where OpenBLAS packs
 * nothing, it still reads B in one stream of panels (the MLP at batch 8: 36 against
 * 75 µs). ONNX Runtime prepacks constant weights the same way.
 *
 * The kernel keeps a block of up to 6 rows of C times one panel (4 vectors of 16) in 24
 * registers; for each k it loads the panel's 4 vectors and broadcasts the 6 elements of
 * A. The sum runs over k in order, in float, like the sgemm's; only its blocking
 * differs, so results agree with it to rounding.
 *
 * One row of A (a request served alone) is a matrix-vector product, which that block
 * runs badly: its 4 accumulators make one chain of dependent FMAs per vector, and it
 * reads all of B for one row. The row kernel keeps 4 panels (16 vectors) in flight and
 * skips the k where A is zero: a term 0 x b adds nothing to a sum that starts at +0
 * (the sum cannot become -0), so with finite B the result is the same float for float.
 * Inputs and Relu outputs are often half zeros (a Fashion-MNIST image is 50 % zero
 * pixels): the MLP's row then reads half its weights. */

#include <math.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SW_PACKED_X86 1
#endif

bool sw__gemm_packed_fits(void) {
  static int have = -1; /* the answer does not change; a race writes the same value */
  if (have < 0) have = sw__avx512_unless("SLIPWAY_GEMM", "openblas", NULL);
  return have;
}

int64_t sw__gemm_packed_floats(int64_t k, int64_t n) { return (n + 63) / 64 * k * 64; }

bool sw__gemm_pack(const float *b, bool trans_b, int64_t k, int64_t n, int64_t ldb, float *bp) {
  bool finite = true;
  for (int64_t p = 0; p < (n + 63) / 64; p++)
    for (int64_t i = 0; i < k; i++) {
      float *row = bp + (p * k + i) * 64;
      for (int64_t j = 0; j < 64; j++) {
        int64_t col = p * 64 + j;
        row[j] = col >= n ? 0.0f : trans_b ? b[col * ldb + i] : b[i * ldb + col];
        finite &= isfinite(row[j]) != 0;
      }
    }
  return finite;
}

#ifdef SW_PACKED_X86
#define TARGET __attribute__((target("avx512f"), always_inline)) static inline

/* C[R rows][NV vectors] = alpha A B + beta bias_row, then a Relu when relu; the last
 * vector's columns past `cols` are not stored. */
TARGET void block(int R, int NV, const float *a, int64_t lda, const float *panel, int64_t k, float alpha, float beta,
                  const float *bias, bool relu, float *c, int64_t ldc, int64_t cols) {
  __m512 acc[6][4];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[r][j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i++, panel += 64) {
    __m512 bv[4];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) bv[j] = _mm512_loadu_ps(panel + 16 * j);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      __m512 x = _mm512_set1_ps(a[r * lda + i]);
      if (NV > 1) __asm__("" : "+v"(x)); /* one broadcast for the NV FMAs */
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) acc[r][j] = _mm512_fmadd_ps(x, bv[j], acc[r][j]);
    }
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta), zero = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int j = 0; j < NV; j++) {
    int64_t left = cols - 16 * j;
    __mmask16 m = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
    __m512 b = bias ? _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, bias + 16 * j)) : zero;
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      __m512 v = alpha == 1.0f ? acc[r][j] : _mm512_mul_ps(va, acc[r][j]);
      if (bias) v = _mm512_add_ps(v, b);
      if (relu) v = _mm512_max_ps(v, zero);
      _mm512_mask_storeu_ps(c + r * ldc + 16 * j, m, v);
    }
  }
}

/* The epilogue of one panel: alpha, the bias, the Relu, then the store of `cols`
 * columns of C. */
TARGET void store_panel(const __m512 *acc, int NV, float alpha, float beta, const float *bias, bool relu, float *c,
                        int64_t cols) {
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta), zero = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int j = 0; j < NV; j++) {
    int64_t left = cols - 16 * j;
    if (left <= 0) break;
    __mmask16 m = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
    __m512 v = alpha == 1.0f ? acc[j] : _mm512_mul_ps(va, acc[j]);
    if (bias) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, bias + 16 * j)));
    if (relu) v = _mm512_max_ps(v, zero);
    _mm512_mask_storeu_ps(c + 16 * j, m, v);
  }
}

/* One row of C over NP panels from panel p, NV vectors of each (the last panel of a
 * narrow C reads only the vectors that hold its columns): the sum over the k listed in
 * nz only. */
TARGET void row_panels(int NP, int NV, const float *a, const int32_t *nz, int64_t nnz, const float *bp, int64_t k,
                       int64_t p, int64_t n, float alpha, float beta, const float *bias, bool relu, float *c) {
  __m512 acc[4][4];
#pragma GCC unroll 4
  for (int q = 0; q < NP; q++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[q][j] = _mm512_setzero_ps();
  const float *panel = bp + p * k * 64;
  for (int64_t t = 0; t < nnz; t++) {
    int64_t i = nz[t];
    __m512 x = _mm512_set1_ps(a[i]);
    const float *row = panel + i * 64;
#pragma GCC unroll 4
    for (int q = 0; q < NP; q++)
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) acc[q][j] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + q * k * 64 + 16 * j), acc[q][j]);
  }
  for (int q = 0; q < NP; q++) {
    int64_t col = (p + q) * 64, cols = n - col < 64 ? n - col : 64;
    store_panel(acc[q], NV, alpha, beta, bias ? bias + col : NULL, relu, c + col, cols);
  }
}

/* Row r0 alone, panels [p0, p1); false when k is too long for the list of its nonzero
 * terms (the block kernel then runs it). */
#define ROW_MAX_K 8192
TARGET bool one_row(int64_t p0, int64_t p1, int64_t n, int64_t k, float alpha, const float *a, const float *bp,
                    float beta, const float *bias, bool relu, float *c) {
  if (k > ROW_MAX_K) return false;
  int32_t nz[ROW_MAX_K];
  int64_t nnz = 0;
  for (int64_t i = 0; i < k; i++) {
    nz[nnz] = (int32_t)i;
    nnz += a[i] != 0.0f;
  }
  int64_t full = n / 64 < p1 ? n / 64 : p1; /* panels [p0, full) have 64 columns */
  for (int64_t p = p0; p < full; p += 4) {
    switch (full - p >= 4 ? 4 : full - p) {
      case 4: row_panels(4, 4, a, nz, nnz, bp, k, p, n, alpha, beta, bias, relu, c); break;
      case 3: row_panels(3, 4, a, nz, nnz, bp, k, p, n, alpha, beta, bias, relu, c); break;
      case 2: row_panels(2, 4, a, nz, nnz, bp, k, p, n, alpha, beta, bias, relu, c); break;
      default: row_panels(1, 4, a, nz, nnz, bp, k, p, n, alpha, beta, bias, relu, c); break;
    }
  }
  if (full >= p0 && full < p1) { /* the last panel, narrower */
    switch ((n - full * 64 + 15) / 16) {
      case 3: row_panels(1, 3, a, nz, nnz, bp, k, full, n, alpha, beta, bias, relu, c); break;
      case 2: row_panels(1, 2, a, nz, nnz, bp, k, full, n, alpha, beta, bias, relu, c); break;
      default: row_panels(1, 1, a, nz, nnz, bp, k, full, n, alpha, beta, bias, relu, c); break;
    }
  }
  return true;
}

TARGET void rows_panel(int R, const float *a, int64_t lda, const float *panel, int64_t k, float alpha, float beta,
                       const float *bias, bool relu, float *c, int64_t ldc, int64_t cols) {
  int nv = (int)((cols + 15) / 16);
  if (nv >= 4) block(R, 4, a, lda, panel, k, alpha, beta, bias, relu, c, ldc, cols);
  else if (nv == 3) block(R, 3, a, lda, panel, k, alpha, beta, bias, relu, c, ldc, cols);
  else if (nv == 2) block(R, 2, a, lda, panel, k, alpha, beta, bias, relu, c, ldc, cols);
  else block(R, 1, a, lda, panel, k, alpha, beta, bias, relu, c, ldc, cols);
}

__attribute__((target("avx512f"))) static void run(int64_t r0, int64_t r1, int64_t p0, int64_t p1, int64_t n,
                                                   int64_t k, float alpha, const float *a, int64_t lda,
                                                   const float *bp, float beta, const float *bias, bool relu,
                                                   float *c, int64_t ldc, bool skip_zeros) {
  if (r1 - r0 == 1 && skip_zeros && one_row(p0, p1, n, k, alpha, a + r0 * lda, bp, beta, bias, relu, c + r0 * ldc))
    return;
  /* 48 rows of A (150 KB at K = 784) stay in L2 while the panels go by */
  for (int64_t m0 = r0; m0 < r1; m0 += 48) {
    int64_t m1 = m0 + 48 < r1 ? m0 + 48 : r1;
    for (int64_t p = p0; p < p1; p++) {
      const float *panel = bp + p * k * 64, *bias_p = bias ? bias + p * 64 : NULL;
      int64_t cols = n - p * 64 < 64 ? n - p * 64 : 64;
      for (int64_t r = m0; r < m1;) {
        int64_t left = m1 - r;
        const float *ar = a + r * lda;
        float *cr = c + r * ldc + p * 64;
        switch (left >= 6 ? 6 : left) {
          case 6: rows_panel(6, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
          case 5: rows_panel(5, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
          case 4: rows_panel(4, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
          case 3: rows_panel(3, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
          case 2: rows_panel(2, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
          default: rows_panel(1, ar, lda, panel, k, alpha, beta, bias_p, relu, cr, ldc, cols); break;
        }
        r += left >= 6 ? 6 : left;
      }
    }
  }
}
#endif

void sw__gemm_packed(int64_t r0, int64_t r1, int64_t p0, int64_t p1, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *bp, float beta, const float *bias_row, bool relu,
                     float *c, int64_t ldc, bool skip_zeros) {
#ifdef SW_PACKED_X86
  run(r0, r1, p0, p1, n, k, alpha, a, lda, bp, beta, bias_row, relu, c, ldc, skip_zeros);
#else
  (void)r0, (void)r1, (void)p0, (void)p1, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)bp, (void)beta, (void)bias_row,
      (void)relu, (void)c, (void)ldc, (void)skip_zeros;
  SW_ASSERT(!"sw__gemm_packed without AVX-512");
#endif
}
