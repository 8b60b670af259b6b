/* A direct convolution for AVX-512 CPUs: the forward pass of a stride-1 Conv whose
 * output rows are as wide as its input rows ("same" padding across, any padding down),
 * computed from the input itself instead of an im2col copy and an sgemm that packs it
 * again. On the Fashion-MNIST CNN the im2col and the packing of its columns were about a
 * quarter of the time (docs/BENCHMARKS.md).
 *
 * Because an output row is as wide as an input row, 16 consecutive output pixels of
 * the flattened plane read 16 consecutive floats of the input for every kernel tap; the
 * lanes whose tap falls on the left or right padding are masked to zero, and the rows
 * above and below come from a copy of the input with zero rows added (xbuf). A block of
 * up to 3 such pixel vectors times 8 output channels keeps 24 accumulators in
 * registers; each tap of each input channel costs up to 3 masked loads, 8 broadcasts
 * of the packed weights and 24 FMAs. The sum runs over input channels, then kernel
 * rows, then kernel columns, in float, like the sgemm's inner dimension. */
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SW_DIRECT_X86 1
#endif

bool sw__conv_direct_fits(int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                          int64_t pl, int64_t wo, int64_t w) {
  if (m % 8 || kh * kw < 2 || kw > 15 || sh != 1 || sw != 1 || dh != 1 || dw != 1) return false;
  if (wo != w || pl < 0 || pl > kw - 1) return false;
  static int have = -1; /* the answer does not change; a race writes the same value */
  if (have < 0) have = sw__avx512_unless("SLIPWAY_CONV", "im2col", NULL);
  return have;
}

/* Each input channel's buffer: pl zeros, the ho + kh - 1 rows (input row r - pt at row r,
 * zero rows outside the input), kw - 1 - pl zeros; then 16 floats of slack so that the
 * last, partly masked vector stays inside the allocation. */
int64_t sw__conv_direct_xbuf_floats(int64_t c, int64_t kh, int64_t kw, int64_t ho, int64_t w) {
  return c * ((ho + kh - 1) * w + kw - 1) + 16;
}

void sw__conv_direct_pack(const float *wt, int64_t m, int64_t c, int64_t kh, int64_t kw, float *wr) {
  int64_t taps = c * kh * kw;
  for (int64_t mb = 0; mb < m / 8; mb++)
    for (int64_t t = 0; t < taps; t++)
      for (int64_t j = 0; j < 8; j++) wr[(mb * taps + t) * 8 + j] = wt[(mb * 8 + j) * taps + t];
}

void sw__conv_direct_input(const float *x, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t pt,
                           int64_t pl, int64_t ho, float *xbuf) {
  int64_t hb = ho + kh - 1, stride = hb * w + kw - 1;
  int64_t r0 = pt < 0 ? 0 : pt, r1 = h + pt < hb ? h + pt : hb; /* buffer rows with data: [r0, r1) */
  if (r1 < r0) r1 = r0;
  for (int64_t ci = 0; ci < c; ci++) {
    float *dst = xbuf + ci * stride;
    memset(dst, 0, (size_t)(pl + r0 * w) * sizeof(float));
    if (r1 > r0) memcpy(dst + pl + r0 * w, x + ci * h * w + (r0 - pt) * w, (size_t)((r1 - r0) * w) * sizeof(float));
    memset(dst + pl + r1 * w, 0, (size_t)((hb - r1) * w + kw - 1 - pl) * sizeof(float));
  }
  memset(xbuf + c * stride, 0, 16 * sizeof(float));
}

#ifdef SW_DIRECT_X86
#define TARGET __attribute__((target("avx512f"), always_inline)) static inline

/* PV pixel vectors from p0 times the 8 channels of block mb. */
TARGET void block(int PV, const float *xbuf, int64_t c, int64_t kh, int64_t kw, int64_t w, int64_t stride,
                  const float *wr, const __mmask16 *mask, int64_t p0, float *y, int64_t plane, const float *bias,
                  bool relu) {
  __m512 acc[3][8];
#pragma GCC unroll 3
  for (int i = 0; i < PV; i++)
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[i][j] = _mm512_setzero_ps();
  /* mask[i * kw + kx]: the lanes of pixel vector i whose tap kx is inside the row */
  for (int64_t ci = 0; ci < c; ci++) {
    /* pixel p's tap (ky, kx) is at p + ky * w + kx of its channel's buffer */
    const float *xc = xbuf + ci * stride + p0;
    for (int64_t ky = 0; ky < kh; ky++)
      for (int64_t kx = 0; kx < kw; kx++, wr += 8) {
        const float *src = xc + ky * w + kx;
        __m512 xv[3];
#pragma GCC unroll 3
        for (int i = 0; i < PV; i++) xv[i] = _mm512_maskz_loadu_ps(mask[i * kw + kx], src + 16 * i);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
          __m512 wv = _mm512_set1_ps(wr[j]);
          /* one broadcast for the PV FMAs: folded into each as a memory operand, it
           * would load PV times */
          if (PV > 1) __asm__("" : "+v"(wv));
#pragma GCC unroll 3
          for (int i = 0; i < PV; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
      }
  }
  __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) {
    __m512 b = _mm512_set1_ps(bias ? bias[j] : 0.0f);
#pragma GCC unroll 3
    for (int i = 0; i < PV; i++) {
      __m512 v = _mm512_add_ps(acc[i][j], b);
      if (relu) v = _mm512_max_ps(v, zero);
      /* the lanes of the plane (the last vector may be short): any tap's mask covers them */
      __mmask16 in_plane = (__mmask16)(p0 + 16 * i + 16 <= plane ? 0xffff : (1u << (plane - p0 - 16 * i)) - 1);
      _mm512_mask_storeu_ps(y + (int64_t)j * plane + p0 + 16 * i, in_plane, v);
    }
  }
}

__attribute__((target("avx512f"))) static void run(const float *xbuf, int64_t c, int64_t w, int64_t kh, int64_t kw,
                                                   int64_t pl, int64_t ho, const float *wr, const float *bias,
                                                   bool relu, float *y, int64_t mb0, int64_t mb1) {
  int64_t plane = ho * w, stride = (ho + kh - 1) * w + kw - 1, taps = c * kh * kw;
  int64_t nv = (plane + 15) / 16;
  for (int64_t v0 = 0; v0 < nv;) {
    /* blocks of 3 vectors; a rest of 4 as 2 + 2, of 2 as 2, of 1 as 1 */
    int pv = nv - v0 >= 5 || nv - v0 == 3 ? 3 : nv - v0 >= 2 ? 2 : 1;
    __mmask16 mask[3 * 15];
    int64_t ox = (v0 * 16) % w; /* the column of the block's first pixel, then counted on */
    for (int i = 0; i < pv; i++) {
      int64_t p = (v0 + i) * 16;
      unsigned bits[15] = {0};
      for (int l = 0; l < 16; l++, ox = ox + 1 == w ? 0 : ox + 1) {
        if (p + l >= plane) continue;
        /* tap kx reads column ox + kx - pl: inside the row for kx in [pl - ox, w + pl - ox) */
        int64_t lo = pl - ox, hi = w + pl - ox;
        for (int64_t kx = lo < 0 ? 0 : lo; kx < kw && kx < hi; kx++) bits[kx] |= 1u << l;
      }
      for (int64_t kx = 0; kx < kw; kx++) mask[i * kw + kx] = (__mmask16)bits[kx];
    }
    for (int64_t mb = mb0; mb < mb1; mb++) {
      const float *wb = wr + mb * taps * 8, *bb = bias ? bias + mb * 8 : NULL;
      float *yb = y + mb * 8 * plane;
      if (pv == 3)
        block(3, xbuf, c, kh, kw, w, stride, wb, mask, v0 * 16, yb, plane, bb, relu);
      else if (pv == 2)
        block(2, xbuf, c, kh, kw, w, stride, wb, mask, v0 * 16, yb, plane, bb, relu);
      else
        block(1, xbuf, c, kh, kw, w, stride, wb, mask, v0 * 16, yb, plane, bb, relu);
    }
    v0 += pv;
  }
}
#endif

#ifdef SW_DIRECT_X86
/* pooled[oy][ox] = max of the 2x2 window of o at (2 oy, 2 ox): 16 outputs per step from
 * 32 floats of each of the two rows, the even and odd lanes paired by a permute. */
__attribute__((target("avx512f"))) static void pool_2x2(float *restrict y, const float *restrict o, int64_t w,
                                                        int64_t ho, int64_t wo) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int64_t oy = 0; oy < ho; oy++) {
    const float *r0 = o + 2 * oy * w, *r1 = r0 + w;
    for (int64_t ox = 0; ox < wo; ox += 16) {
      int64_t n = wo - ox < 16 ? wo - ox : 16; /* outputs this step, 2n inputs per row */
      __mmask16 lo = (__mmask16)(2 * n >= 16 ? 0xffff : (1u << (2 * n)) - 1);
      __mmask16 hi = (__mmask16)(2 * n <= 16 ? 0 : (1u << (2 * n - 16)) - 1);
      __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * ox), a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * ox + 16);
      __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * ox), b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * ox + 16);
      __m512 m0 = _mm512_max_ps(a0, b0), m1 = _mm512_max_ps(a1, b1);
      __m512 v = _mm512_max_ps(_mm512_permutex2var_ps(m0, even, m1), _mm512_permutex2var_ps(m0, odd, m1));
      _mm512_mask_storeu_ps(y + oy * wo + ox, (__mmask16)((1u << n) - 1), v);
    }
  }
}
#endif

void sw__conv_direct_pool(float *y, const float *o, int64_t w, int64_t ho, int64_t wo) {
#ifdef SW_DIRECT_X86
  pool_2x2(y, o, w, ho, wo);
#else
  (void)y, (void)o, (void)w, (void)ho, (void)wo;
  SW_ASSERT(!"sw__conv_direct_pool without AVX-512");
#endif
}

void sw__conv_direct(const float *xbuf, int64_t c, int64_t w, int64_t kh, int64_t kw, int64_t pl, int64_t ho,
                     const float *wr, const float *bias, bool relu, float *y, int64_t mb0, int64_t mb1) {
#ifdef SW_DIRECT_X86
  run(xbuf, c, w, kh, kw, pl, ho, wr, bias, relu, y, mb0, mb1);
#else
  (void)xbuf, (void)c, (void)w, (void)kh, (void)kw, (void)pl, (void)ho, (void)wr, (void)bias, (void)relu, (void)y,
      (void)mb0, (void)mb1;
  SW_ASSERT(!"sw__conv_direct without AVX-512");
#endif
}
