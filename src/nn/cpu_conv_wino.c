/* Winograd's minimal filtering F(2x2, 3x3) for AVX-512 CPUs: the forward pass of a 3x3
 * Conv with stride 1, no dilation, input and output channels in multiples of 16. Each
 * 2x2 block of outputs ("tile") is computed from the 4x4 block of input under it with
 * 16 products per channel pair instead of 36:
 *
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A       (Lavin and Gray, 2016)
 *
 * with g the 3x3 kernel, d the 4x4 input block and
 *
 *   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |        | 0    0    1   |
 *
 * So the sum over input channels becomes 16 small matrix products, one per element e of
 * the 4x4 transformed block: M[e][t][m] = sum_c V[e][c][t] U[e][c][m], with V the
 * transformed input (tiles t of one image) and U the transformed kernels. On the
 * Fashion-MNIST CNN's second convolution (32 -> 64 channels on 14x14) that is 2.25 times
 * fewer multiply-adds than the direct convolution, which already ran at the core's peak.
 *
 * The arithmetic differs from the direct sum in rounding only: the transforms are adds,
 * subtracts and halvings of a few terms each (the halvings exact), and F(2x2, 3x3) is
 * the variant whose error stays at the level of float rounding (larger tiles trade
 * accuracy for speed; this one does not). tests/unit/test_nn_conv.c holds it to a plain
 * loop within 1e-5 norm-wise, and the ONNX Runtime and PyTorch cross-checks still pass.
 *
 * Layout, per image:
 *   xpad  [c][2 TY + 2][2 TX + 2]  the input with its padding (row r = input row r - pt)
 *   V     [16][c][T]              T = TY * TX tiles, tile t = ty * TX + tx
 *   U     [16][c][m]              packed once per forward (sw__conv_wino_pack)
 * and the products of a block of up to 6 tiles times 64 output channels live in
 * registers (24 accumulators) over the input channels, then on the stack for the
 * output transform, which adds the bias, applies the Relu and, when a 2x2 MaxPool
 * follows, takes the max of the tile: a tile is exactly one pooling window. */
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SW_WINO_X86 1
#endif

bool sw__conv_wino_fits(int64_t c, int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                        int64_t dw) {
  if (kh != 3 || kw != 3 || sh != 1 || sw != 1 || dh != 1 || dw != 1 || c % 16 || m % 16 || c <= 0 || m <= 0)
    return false;
  static int have = -1; /* the answer does not change; a race writes the same value */
  if (have < 0) have = sw__avx512_unless("SLIPWAY_CONV", "im2col", "direct");
  return have;
}

static int64_t tiles_y(int64_t ho) { return (ho + 1) / 2; }
static int64_t tiles_x(int64_t wo) { return (wo + 1) / 2; }
static int64_t xpad_floats(int64_t c, int64_t ho, int64_t wo) {
  return c * (2 * tiles_y(ho) + 2) * (2 * tiles_x(wo) + 2) + 32; /* + slack for the last row's 2 vectors */
}

int64_t sw__conv_wino_weights_floats(int64_t c, int64_t m) { return 16 * c * m; }

int64_t sw__conv_wino_input_floats(int64_t c, int64_t ho, int64_t wo) {
  return xpad_floats(c, ho, wo) + 16 * c * tiles_y(ho) * tiles_x(wo);
}

float *sw__conv_wino_v(float *in_buf, int64_t c, int64_t ho, int64_t wo) { return in_buf + xpad_floats(c, ho, wo); }

/* U[e][ci][mo] = (G g G^T)[e] for the kernel g = wt[mo][ci]. */
void sw__conv_wino_pack(const float *wt, int64_t m, int64_t c, float *u) {
  for (int64_t mo = 0; mo < m; mo++)
    for (int64_t ci = 0; ci < c; ci++) {
      const float *g = wt + (mo * c + ci) * 9;
      float t[4][3]; /* G g */
      for (int k = 0; k < 3; k++) {
        float g0 = g[k], g1 = g[3 + k], g2 = g[6 + k];
        t[0][k] = g0;
        t[1][k] = 0.5f * (g0 + g1 + g2);
        t[2][k] = 0.5f * (g0 - g1 + g2);
        t[3][k] = g2;
      }
      for (int i = 0; i < 4; i++) {
        float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; j++) u[((i * 4 + j) * c + ci) * m + mo] = r[j];
      }
    }
}

/* The cache: a validity word (16 floats' room), the weights U was made from, then U. */
int64_t sw__conv_wino_cache_floats(int64_t c, int64_t m) { return 16 + m * c * 9 + 16 * c * m; }

const float *sw__conv_wino_kernels(const float *wt, int64_t m, int64_t c, float *cache, bool reuse) {
  uint32_t *valid = (uint32_t *)cache;
  float *copy = cache + 16, *u = copy + m * c * 9;
  size_t bytes = (size_t)(m * c * 9) * sizeof(float);
  if (reuse && *valid == 1 && memcmp(copy, wt, bytes) == 0) return u;
  sw__conv_wino_pack(wt, m, c, u);
  *valid = 0;
  if (reuse) {
    memcpy(copy, wt, bytes);
    *valid = 1;
  }
  return u;
}

void sw__conv_wino_forget(float *cache) {
  if (cache) *(uint32_t *)cache = 0;
}

#ifdef SW_WINO_X86
#define TARGET __attribute__((target("avx512f"), always_inline)) static inline

/* The input transform of one image: xpad, then V = B^T d B for every tile and channel,
 * 16 tiles of a tile row per vector. */
__attribute__((target("avx512f"))) static void input_transform(const float *x, int64_t c, int64_t h, int64_t w,
                                                               int64_t pt, int64_t pl, int64_t ho, int64_t wo,
                                                               float *buf) {
  int64_t ty_n = tiles_y(ho), tx_n = tiles_x(wo), t_n = ty_n * tx_n;
  int64_t rows = 2 * ty_n + 2, cols = 2 * tx_n + 2, plane = rows * cols;
  float *xpad = buf, *v = buf + xpad_floats(c, ho, wo);
  /* the padded copy: columns [pl, pl + w) of rows [pt, pt + h) hold the input, clipped */
  int64_t c0 = pl < 0 ? -pl : 0, c1 = w < cols - pl ? w : cols - pl; /* input columns copied */
  for (int64_t ci = 0; ci < c; ci++) {
    float *dst = xpad + ci * plane;
    const float *src = x + ci * h * w;
    for (int64_t r = 0; r < rows; r++) {
      float *row = dst + r * cols;
      int64_t iy = r - pt;
      if (iy < 0 || iy >= h || c1 <= c0) {
        memset(row, 0, (size_t)cols * sizeof(float));
        continue;
      }
      int64_t lo = pl + c0, hi = pl + c1; /* [lo, hi) of the row from the input */
      memset(row, 0, (size_t)lo * sizeof(float));
      memcpy(row + lo, src + iy * w + c0, (size_t)(hi - lo) * sizeof(float));
      memset(row + hi, 0, (size_t)(cols - hi) * sizeof(float));
    }
  }
  memset(xpad + c * plane, 0, 32 * sizeof(float));
  /* lane l of a vector is tile tx0 + l; d[i][j] of it is row 2 ty + i, column 2 (tx0 + l) + j
   * (lane 15 is never kept) */
  __m512i idx[4];
  for (int j = 0; j < 4; j++)
    idx[j] = _mm512_set_epi32(30 + j, 28 + j, 26 + j, 24 + j, 22 + j, 20 + j, 18 + j, 16 + j, 14 + j, 12 + j, 10 + j,
                              8 + j, 6 + j, 4 + j, 2 + j, j);
  for (int64_t ci = 0; ci < c; ci++)
    for (int64_t ty = 0; ty < ty_n; ty++)
      for (int64_t tx0 = 0; tx0 < tx_n; tx0 += 15) {
        /* 15 tiles a vector: their 4 columns each span 2 * 15 + 2 = 32 floats, two loads */
        int64_t lanes = tx_n - tx0 < 15 ? tx_n - tx0 : 15;
        __mmask16 keep = (__mmask16)(lanes == 16 ? 0xffff : (1u << lanes) - 1);
        /* a tile reads columns 2 tx .. 2 tx + 3: 2 lanes + 2 more of the row */
        int64_t need = 2 * lanes + 2;
        __mmask16 m0 = (__mmask16)(need >= 16 ? 0xffff : (1u << need) - 1);
        __mmask16 m1 = (__mmask16)(need <= 16 ? 0 : (1u << (need - 16)) - 1);
        __m512 d[4][4];
        for (int i = 0; i < 4; i++) {
          const float *row = xpad + ci * plane + (2 * ty + i) * cols + 2 * tx0;
          __m512 a = _mm512_maskz_loadu_ps(m0, row), b = _mm512_maskz_loadu_ps(m1, row + 16);
          for (int j = 0; j < 4; j++) d[i][j] = _mm512_permutex2var_ps(a, idx[j], b);
        }
        __m512 u[4][4]; /* B^T d */
        for (int j = 0; j < 4; j++) {
          u[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
          u[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
          u[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
          u[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
        }
        float *vo = v + ci * t_n + ty * tx_n + tx0;
        int64_t es = c * t_n; /* floats between elements e */
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
          _mm512_mask_storeu_ps(vo + (i * 4 + 0) * es, keep, _mm512_sub_ps(u[i][0], u[i][2]));
          _mm512_mask_storeu_ps(vo + (i * 4 + 1) * es, keep, _mm512_add_ps(u[i][1], u[i][2]));
          _mm512_mask_storeu_ps(vo + (i * 4 + 2) * es, keep, _mm512_sub_ps(u[i][2], u[i][1]));
          _mm512_mask_storeu_ps(vo + (i * 4 + 3) * es, keep, _mm512_sub_ps(u[i][1], u[i][3]));
        }
      }
}

/* acc[r][j] = sum_ci V[e][ci][t0 + r] U[e][ci][m0 + 16 j] for R tiles and NV vectors
 * of output channels, stored to prod[e][r][j]. */
TARGET void product(int R, int NV, const float *v, const float *u, int64_t c, int64_t t_n, int64_t m, int64_t t0,
                    int64_t m0, float *prod) {
  __m512 acc[6][4];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[r][j] = _mm512_setzero_ps();
  const float *vp = v + t0, *up = u + m0;
  for (int64_t ci = 0; ci < c; ci++, vp += t_n, up += m) {
    __m512 uv[4];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) uv[j] = _mm512_loadu_ps(up + 16 * j);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      __m512 b = _mm512_set1_ps(vp[r]);
      if (NV > 1) __asm__("" : "+v"(b)); /* one broadcast for the NV FMAs */
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) acc[r][j] = _mm512_fmadd_ps(b, uv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) _mm512_storeu_ps(prod + (r * 4 + j) * 16, acc[r][j]);
}

typedef struct {
  const float *v, *u, *bias;
  int64_t c, m, ho, wo, pho, pwo;
  bool relu, pool;
  float *y;
} wino_args;

/* The products of R tiles from t0 and NV vectors of channels from m0 for all 16
 * elements, then the output transform of each (tile, vector). */
TARGET void tile_block(int R, int NV, const wino_args *a, int64_t t0, int64_t m0) {
  int64_t ty_n = tiles_y(a->ho), tx_n = tiles_x(a->wo), t_n = ty_n * tx_n;
  float prod[16][6 * 4 * 16] __attribute__((aligned(64))); /* [e][r][j][16] */
  for (int e = 0; e < 16; e++)
    product(R, NV, a->v + e * a->c * t_n, a->u + e * a->c * a->m, a->c, t_n, a->m, t0, m0, prod[e]);
  __m512 zero = _mm512_setzero_ps();
  int64_t plane = a->pool ? a->pho * a->pwo : a->ho * a->wo;
  __m512i step = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                    _mm512_set1_epi32((int)plane));
  for (int r = 0; r < R; r++) {
    int64_t t = t0 + r, ty = t / tx_n, tx = t % tx_n, oy = 2 * ty, ox = 2 * tx;
    for (int j = 0; j < NV; j++) {
      __m512 s[4][4];
      for (int e = 0; e < 16; e++) s[e / 4][e % 4] = _mm512_load_ps(prod[e] + (r * 4 + j) * 16);
      __m512 q[2][4]; /* A^T s */
      for (int k = 0; k < 4; k++) {
        q[0][k] = _mm512_add_ps(_mm512_add_ps(s[0][k], s[1][k]), s[2][k]);
        q[1][k] = _mm512_sub_ps(_mm512_sub_ps(s[1][k], s[2][k]), s[3][k]);
      }
      __m512 o[2][2]; /* (A^T s) A */
      for (int i = 0; i < 2; i++) {
        o[i][0] = _mm512_add_ps(_mm512_add_ps(q[i][0], q[i][1]), q[i][2]);
        o[i][1] = _mm512_sub_ps(_mm512_sub_ps(q[i][1], q[i][2]), q[i][3]);
      }
      int64_t mo = m0 + 16 * j;
      __m512 b = a->bias ? _mm512_loadu_ps(a->bias + mo) : zero;
      if (a->pool) {
        if (ty >= a->pho || tx >= a->pwo) continue; /* an odd last row or column: dropped by the pool */
        /* the window is the tile, less what lies past the output's edge */
        __m512 mx = o[0][0];
        if (ox + 1 < a->wo) mx = _mm512_max_ps(mx, o[0][1]);
        if (oy + 1 < a->ho) mx = _mm512_max_ps(mx, o[1][0]);
        if (ox + 1 < a->wo && oy + 1 < a->ho) mx = _mm512_max_ps(mx, o[1][1]);
        mx = _mm512_max_ps(_mm512_add_ps(mx, b), zero); /* bias and Relu commute with the max */
        _mm512_i32scatter_ps(a->y + mo * plane + ty * a->pwo + tx, step, mx, 4);
        continue;
      }
      for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
          if (oy + i >= a->ho || ox + k >= a->wo) continue; /* a tile past an odd edge */
          __m512 val = _mm512_add_ps(o[i][k], b);
          if (a->relu) val = _mm512_max_ps(val, zero);
          _mm512_i32scatter_ps(a->y + mo * plane + (oy + i) * a->wo + ox + k, step, val, 4);
        }
    }
  }
}

__attribute__((target("avx512f"))) static void run(const wino_args *a, int64_t mv0, int64_t mv1) {
  int64_t t_n = tiles_y(a->ho) * tiles_x(a->wo);
  for (int64_t mv = mv0; mv < mv1; mv += 4) {
    int nv = mv1 - mv < 4 ? (int)(mv1 - mv) : 4;
    for (int64_t t0 = 0; t0 < t_n; t0 += 6) {
      int r = t_n - t0 < 6 ? (int)(t_n - t0) : 6;
#define SW_WINO_CASE(R)                                             \
  case R:                                                           \
    if (nv == 4) tile_block(R, 4, a, t0, mv * 16);                  \
    else if (nv == 3) tile_block(R, 3, a, t0, mv * 16);             \
    else if (nv == 2) tile_block(R, 2, a, t0, mv * 16);             \
    else tile_block(R, 1, a, t0, mv * 16);                          \
    break;
      switch (r) {
        SW_WINO_CASE(6)
        SW_WINO_CASE(5)
        SW_WINO_CASE(4)
        SW_WINO_CASE(3)
        SW_WINO_CASE(2)
        SW_WINO_CASE(1)
      }
#undef SW_WINO_CASE
    }
  }
}
#endif

void sw__conv_wino_input(const float *x, int64_t c, int64_t h, int64_t w, int64_t pt, int64_t pl, int64_t ho,
                         int64_t wo, float *in_buf) {
#ifdef SW_WINO_X86
  input_transform(x, c, h, w, pt, pl, ho, wo, in_buf);
#else
  (void)x, (void)c, (void)h, (void)w, (void)pt, (void)pl, (void)ho, (void)wo, (void)in_buf;
  SW_ASSERT(!"sw__conv_wino_input without AVX-512");
#endif
}

void sw__conv_wino(const float *v, const float *u, int64_t c, int64_t m, int64_t ho, int64_t wo, const float *bias,
                   bool relu, int64_t pho, int64_t pwo, float *y, int64_t mv0, int64_t mv1) {
#ifdef SW_WINO_X86
  wino_args a = {.v = v, .u = u, .bias = bias, .c = c, .m = m, .ho = ho, .wo = wo, .pho = pho, .pwo = pwo,
                 .relu = relu || pho > 0, .pool = pho > 0, .y = y};
  run(&a, mv0, mv1);
#else
  (void)v, (void)u, (void)c, (void)m, (void)ho, (void)wo, (void)bias, (void)relu, (void)pho, (void)pwo, (void)y,
      (void)mv0, (void)mv1;
  SW_ASSERT(!"sw__conv_wino without AVX-512");
#endif
}
