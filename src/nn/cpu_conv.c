/* CPU kernels of the window ops: Conv as im2col and one OpenBLAS sgemm for as many
 * images as the node's scratch holds side by side, MaxPool (argmax kept in scratch for
 * backward) and AveragePool. NCHW; a rank-3 NCW input is the 1-D case with H = 1. */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn/nn_int.h"

#define IN(i) sw__in(g, node, (i))
#define F32(nd) ((float *)(nd)->data)

/* Below this many inner-loop steps a parallel loop costs more than it saves. */
#define PARALLEL_MIN_WORK (1 << 15)

/* The window geometry of one node; the bottom and right pads only shape the output. */
typedef struct {
  int64_t n, c, h, w; /* input */
  int64_t m, ho, wo;  /* output channels and size */
  int64_t kh, kw, sh, sw, pt, pl, dh, dw;
} geom;

static void geom_of(const sw__node *x, const sw__node *y, geom *q) {
  const sw_op_attrs *a = &y->attrs;
  bool r4 = x->rank == 4;
  q->n = x->shape[0];
  q->c = x->shape[1];
  q->h = r4 ? x->shape[2] : 1;
  q->w = x->shape[x->rank - 1];
  q->m = y->shape[1];
  q->ho = r4 ? y->shape[2] : 1;
  q->wo = y->shape[y->rank - 1];
  q->kh = r4 ? a->kernel[0] : 1;
  q->kw = a->kernel[1];
  q->sh = r4 ? a->stride[0] : 1;
  q->sw = a->stride[1];
  q->pt = r4 ? a->pad[0] : 0;
  q->pl = a->pad[1];
  q->dh = r4 ? a->dilation[0] : 1;
  q->dw = a->dilation[1];
}

/* The outputs o in [0, out) whose input o * s + off lies in [0, in): [*lo, *hi). */
static void valid_range(int64_t out, int64_t in, int64_t s, int64_t off, int64_t *lo, int64_t *hi) {
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = in - 1 - off < 0 ? 0 : (in - 1 - off) / s + 1;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

static sw_threadpool *pool_for(sw_graph *g, int64_t work) { return work >= PARALLEL_MIN_WORK ? g->pool : NULL; }

/* ---- Conv ------------------------------------------------------------------------------ */

/* The col matrix of k images: row (c, ki, kj) holds, for each image j at columns
 * [j * P, (j + 1) * P) (P = Ho * Wo), the input under that kernel tap at every output
 * position, zero where the tap falls on padding. ld = k * P. */
typedef struct {
  const geom *q;
  float *x;      /* im2col: the first image's input; col2im: its gradient */
  float *col;    /* [C * kh * kw, ld] */
  int64_t ld;
} col_job;

static void im2col_plane(const geom *q, const float *x, float *col, int64_t ld) {
  for (int64_t ki = 0; ki < q->kh; ki++)
    for (int64_t kj = 0; kj < q->kw; kj++) {
      float *row = col + (ki * q->kw + kj) * ld;
      int64_t offx = kj * q->dw - q->pl, lo, hi;
      valid_range(q->wo, q->w, q->sw, offx, &lo, &hi);
      for (int64_t oy = 0; oy < q->ho; oy++) {
        float *dst = row + oy * q->wo;
        int64_t iy = oy * q->sh + ki * q->dh - q->pt;
        if (iy < 0 || iy >= q->h) {
          memset(dst, 0, (size_t)q->wo * sizeof *dst);
          continue;
        }
        const float *src = x + iy * q->w + offx;
        for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
        if (q->sw == 1)
          memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *dst);
        else
          for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox * q->sw];
        for (int64_t ox = hi; ox < q->wo; ox++) dst[ox] = 0.0f;
      }
    }
}

/* The adjoint of im2col_plane: adds every col entry back onto the input cell it came
 * from. */
static void col2im_plane(const geom *q, float *dx, const float *col, int64_t ld) {
  for (int64_t ki = 0; ki < q->kh; ki++)
    for (int64_t kj = 0; kj < q->kw; kj++) {
      const float *row = col + (ki * q->kw + kj) * ld;
      int64_t offx = kj * q->dw - q->pl, lo, hi;
      valid_range(q->wo, q->w, q->sw, offx, &lo, &hi);
      for (int64_t oy = 0; oy < q->ho; oy++) {
        int64_t iy = oy * q->sh + ki * q->dh - q->pt;
        if (iy < 0 || iy >= q->h) continue;
        const float *src = row + oy * q->wo;
        float *dst = dx + iy * q->w + offx;
        if (q->sw == 1)
          for (int64_t ox = lo; ox < hi; ox++) dst[ox] += src[ox];
        else
          for (int64_t ox = lo; ox < hi; ox++) dst[ox * q->sw] += src[ox];
      }
    }
}

/* Items are (image j, channel c) pairs: each writes its own rows and columns of col
 * (im2col) or its own input plane (col2im), so the split cannot change the result. */
static void im2col_range(void *ctx, size_t begin, size_t end) {
  const col_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo, kk = q->kh * q->kw;
  for (size_t i = begin; i < end; i++) {
    int64_t j = (int64_t)i / q->c, c = (int64_t)i % q->c;
    im2col_plane(q, jb->x + (j * q->c + c) * q->h * q->w, jb->col + c * kk * jb->ld + j * p, jb->ld);
  }
}

static void col2im_range(void *ctx, size_t begin, size_t end) {
  const col_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo, kk = q->kh * q->kw;
  for (size_t i = begin; i < end; i++) {
    int64_t j = (int64_t)i / q->c, c = (int64_t)i % q->c;
    col2im_plane(q, jb->x + (j * q->c + c) * q->h * q->w, jb->col + c * kk * jb->ld + j * p, jb->ld);
  }
}

/* On the calling thread: the pool's workers spin for a while after a loop, and an
 * sgemm follows at once, whose OpenBLAS threads they then slow down (bench/conv_kernels
 * --threads 2: conv2's forward 70 ms with the pool, 7 ms without). */
static void run_cols(const geom *q, int64_t k, float *x, float *col, bool adjoint) {
  col_job jb = {q, x, col, k * q->ho * q->wo};
  (adjoint ? col2im_range : im2col_range)(&jb, 0, (size_t)(k * q->c));
}

/* A 1x1 kernel with stride 1 and no padding: an image's col is the image itself. */
static bool col_is_input(const geom *q) {
  return q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && q->pt == 0 && q->pl == 0 && q->ho == q->h &&
         q->wo == q->w;
}

/* Images per sgemm. Batching k >= 2 images needs col [CKK, k P] and an output block
 * [M, k P] (the sgemm's result is M rows of k images side by side, which NCHW keeps
 * apart, so it is scattered); one image needs only col, as the sgemm writes its output
 * in place. */
static int64_t images_per_gemm(const sw__node *node, const geom *q) {
  int64_t p = q->ho * q->wo, ckk = q->c * q->kh * q->kw;
  int64_t floats = (int64_t)(node->scratch_bytes / sizeof(float));
  int64_t k = floats / ((ckk + q->m) * p);
  if (k < 2) {
    SW_ASSERT(col_is_input(q) || floats >= ckk * p);
    return 1;
  }
  return k < q->n ? k : q->n;
}

sw_status sw__cpu_fwd_CONV(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0), *wn = IN(1), *bn = IN(2);
  geom q;
  geom_of(xn, node, &q);
  int64_t p = q.ho * q.wo, ckk = q.c * q.kh * q.kw, in_img = q.c * q.h * q.w, out_img = q.m * p;
  int64_t k = images_per_gemm(node, &q);
  const float *w = F32(wn), *b = bn ? F32(bn) : NULL;
  float *x = F32(xn), *y = F32(node), *col = node->scratch, *out = col + ckk * k * p;
  for (int64_t n0 = 0; n0 < q.n; n0 += k) {
    int64_t kk = q.n - n0 < k ? q.n - n0 : k, ld = kk * p;
    const float *src = col;
    if (kk == 1 && col_is_input(&q))
      src = x + n0 * in_img;
    else
      run_cols(&q, kk, x + n0 * in_img, col, false);
    if (kk == 1) { /* straight into Y, on top of the bias */
      float *yi = y + n0 * out_img;
      for (int64_t m = 0; m < q.m; m++)
        for (int64_t i = 0; i < p; i++) yi[m * p + i] = b ? b[m] : 0.0f;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)q.m, (int)p, (int)ckk, 1.0f, w, (int)ckk, src,
                  (int)ld, b ? 1.0f : 0.0f, yi, (int)p);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)q.m, (int)ld, (int)ckk, 1.0f, w, (int)ckk, src,
                (int)ld, 0.0f, out, (int)ld);
    for (int64_t j = 0; j < kk; j++)
      for (int64_t m = 0; m < q.m; m++) {
        const float *o = out + m * ld + j * p;
        float *yi = y + (n0 + j) * out_img + m * p, bias = b ? b[m] : 0.0f;
        for (int64_t i = 0; i < p; i++) yi[i] = o[i] + bias;
      }
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_CONV(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0), *wn = IN(1), *bn = IN(2);
  geom q;
  geom_of(xn, node, &q);
  int64_t p = q.ho * q.wo, ckk = q.c * q.kh * q.kw, in_img = q.c * q.h * q.w, out_img = q.m * p;
  const float *dy = node->grad;
  if (bn && bn->grad)
    for (int64_t m = 0; m < q.m; m++) {
      double s = 0.0;
      for (int64_t n = 0; n < q.n; n++)
        for (int64_t i = 0; i < p; i++) s += dy[n * out_img + m * p + i];
      bn->grad[m] += (float)s;
    }
  if (!xn->grad && !wn->grad) return SW_STATUS_OK;
  int64_t k = images_per_gemm(node, &q);
  float *x = F32(xn), *col = node->scratch, *dy_block = col + ckk * k * p;
  for (int64_t n0 = 0; n0 < q.n; n0 += k) {
    int64_t kk = q.n - n0 < k ? q.n - n0 : k, ld = kk * p;
    bool direct = kk == 1 && col_is_input(&q);
    const float *dyi = dy + n0 * out_img;
    if (kk > 1) { /* the k images' dY side by side, as the sgemm wants them */
      for (int64_t j = 0; j < kk; j++)
        for (int64_t m = 0; m < q.m; m++)
          memcpy(dy_block + m * ld + j * p, dy + (n0 + j) * out_img + m * p, (size_t)p * sizeof(float));
      dyi = dy_block;
    }
    if (wn->grad) { /* dW += dY col^T */
      const float *src = col;
      if (direct)
        src = x + n0 * in_img;
      else
        run_cols(&q, kk, x + n0 * in_img, col, false);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)q.m, (int)ckk, (int)ld, 1.0f, dyi, (int)ld, src,
                  (int)ld, 1.0f, wn->grad, (int)ckk);
    }
    if (xn->grad) { /* dcol = W^T dY, then col2im adds it into dX */
      if (direct) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)p, (int)q.m, 1.0f, F32(wn), (int)ckk,
                    dyi, (int)p, 1.0f, xn->grad + n0 * in_img, (int)p);
        continue;
      }
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)ld, (int)q.m, 1.0f, F32(wn), (int)ckk, dyi,
                  (int)ld, 0.0f, col, (int)ld);
      run_cols(&q, kk, xn->grad + n0 * in_img, col, true);
    }
  }
  return SW_STATUS_OK;
}

/* ---- MaxPool, AveragePool -------------------------------------------------------------- */

typedef struct {
  const geom *q;
  const float *x, *dy;
  float *y, *dx;
  int64_t *argmax; /* MaxPool: the input index (within the plane) of each output; -1 */
  bool include_pad;
} pool_job;

/* Items are (image, channel) planes; each writes only its own plane of Y (forward) or
 * dX (backward), so the split cannot change the result. */
/* The CNN's case: 2x2 windows, stride 2, no padding or dilation. */
static void max_pool_2x2(const pool_job *jb, size_t begin, size_t end) {
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo;
  for (size_t pl = begin; pl < end; pl++) {
    const float *x = jb->x + (int64_t)pl * q->h * q->w;
    float *y = jb->y + (int64_t)pl * p;
    int64_t *arg = jb->argmax + (int64_t)pl * p;
    for (int64_t oy = 0; oy < q->ho; oy++) {
      const float *r0 = x + 2 * oy * q->w, *r1 = r0 + q->w;
      for (int64_t ox = 0; ox < q->wo; ox++) {
        int64_t at = 2 * oy * q->w + 2 * ox;
        float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        float best = a;
        if (isnan(a) || isnan(b) || isnan(c) || isnan(d)) { /* rare: NaN wins as in window order */
          int64_t cand[3] = {at + 1, at + q->w, at + q->w + 1};
          float vals[3] = {b, c, d};
          for (int k = 0; k < 3; k++)
            if (vals[k] > best || (isnan(vals[k]) && !isnan(best))) best = vals[k], at = cand[k];
        } else { /* branch-free: the first maximum in window order, ties to the earlier */
          int64_t top_b = b > a, bot_d = d > c;
          float top = top_b ? b : a, bot = bot_d ? d : c;
          int64_t pick_bot = bot > top;
          int64_t ot = top_b, ob = q->w + bot_d;
          best = pick_bot ? bot : top;
          at += ot + pick_bot * (ob - ot);
        }
        y[oy * q->wo + ox] = best;
        arg[oy * q->wo + ox] = at;
      }
    }
  }
}

static void max_pool_range(void *ctx, size_t begin, size_t end) {
  const pool_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo;
  if (q->kh == 2 && q->kw == 2 && q->sh == 2 && q->sw == 2 && q->dh == 1 && q->dw == 1 && !q->pt && !q->pl &&
      q->ho * 2 <= q->h && q->wo * 2 <= q->w) {
    max_pool_2x2(jb, begin, end);
    return;
  }
  for (size_t pl = begin; pl < end; pl++) {
    const float *x = jb->x + (int64_t)pl * q->h * q->w;
    float *y = jb->y + (int64_t)pl * p;
    int64_t *arg = jb->argmax + (int64_t)pl * p;
    for (int64_t oy = 0; oy < q->ho; oy++)
      for (int64_t ox = 0; ox < q->wo; ox++) {
        /* first maximum in window order wins; padding never does; NaN propagates */
        float best = -FLT_MAX;
        int64_t at = -1;
        for (int64_t ki = 0; ki < q->kh; ki++) {
          int64_t iy = oy * q->sh + ki * q->dh - q->pt;
          if (iy < 0 || iy >= q->h) continue;
          for (int64_t kj = 0; kj < q->kw; kj++) {
            int64_t ix = ox * q->sw + kj * q->dw - q->pl;
            if (ix < 0 || ix >= q->w) continue;
            float v = x[iy * q->w + ix];
            if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
              best = v;
              at = iy * q->w + ix;
            }
          }
        }
        y[oy * q->wo + ox] = best;
        arg[oy * q->wo + ox] = at;
      }
  }
}

static void max_pool_back_range(void *ctx, size_t begin, size_t end) {
  const pool_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo;
  for (size_t pl = begin; pl < end; pl++) {
    float *dx = jb->dx + (int64_t)pl * q->h * q->w;
    const float *dy = jb->dy + (int64_t)pl * p;
    const int64_t *arg = jb->argmax + (int64_t)pl * p;
    for (int64_t i = 0; i < p; i++)
      if (arg[i] >= 0) dx[arg[i]] += dy[i];
  }
}

/* The window of output (oy, ox) clipped to the input: rows [*y0, *y1) and columns
 * [*x0, *x1) in steps of the dilation, and the divisor of its mean. */
static int64_t avg_window(const geom *q, bool include_pad, int64_t oy, int64_t ox, int64_t *y0, int64_t *y1,
                          int64_t *x0, int64_t *x1) {
  int64_t lo, hi;
  valid_range(q->kh, q->h, q->dh, oy * q->sh - q->pt, &lo, &hi);
  *y0 = oy * q->sh - q->pt + lo * q->dh;
  *y1 = oy * q->sh - q->pt + hi * q->dh;
  int64_t rows = hi - lo;
  valid_range(q->kw, q->w, q->dw, ox * q->sw - q->pl, &lo, &hi);
  *x0 = ox * q->sw - q->pl + lo * q->dw;
  *x1 = ox * q->sw - q->pl + hi * q->dw;
  return include_pad ? q->kh * q->kw : rows * (hi - lo);
}

static void avg_pool_range(void *ctx, size_t begin, size_t end) {
  const pool_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo;
  for (size_t pl = begin; pl < end; pl++) {
    const float *x = jb->x + (int64_t)pl * q->h * q->w;
    float *y = jb->y + (int64_t)pl * p;
    for (int64_t oy = 0; oy < q->ho; oy++)
      for (int64_t ox = 0; ox < q->wo; ox++) {
        int64_t y0, y1, x0, x1;
        int64_t count = avg_window(q, jb->include_pad, oy, ox, &y0, &y1, &x0, &x1);
        float s = 0.0f;
        for (int64_t iy = y0; iy < y1; iy += q->dh)
          for (int64_t ix = x0; ix < x1; ix += q->dw) s += x[iy * q->w + ix];
        y[oy * q->wo + ox] = count ? s / (float)count : 0.0f;
      }
  }
}

static void avg_pool_back_range(void *ctx, size_t begin, size_t end) {
  const pool_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo;
  for (size_t pl = begin; pl < end; pl++) {
    float *dx = jb->dx + (int64_t)pl * q->h * q->w;
    const float *dy = jb->dy + (int64_t)pl * p;
    for (int64_t oy = 0; oy < q->ho; oy++)
      for (int64_t ox = 0; ox < q->wo; ox++) {
        int64_t y0, y1, x0, x1;
        int64_t count = avg_window(q, jb->include_pad, oy, ox, &y0, &y1, &x0, &x1);
        if (!count) continue;
        float d = dy[oy * q->wo + ox] / (float)count;
        for (int64_t iy = y0; iy < y1; iy += q->dh)
          for (int64_t ix = x0; ix < x1; ix += q->dw) dx[iy * q->w + ix] += d;
      }
  }
}

static void run_pool(sw_graph *g, sw__node *node, void (*fn)(void *, size_t, size_t)) {
  sw__node *xn = IN(0);
  geom q;
  geom_of(xn, node, &q);
  pool_job jb = {&q, F32(xn), node->grad, F32(node), xn->grad, node->scratch, node->attrs.count_include_pad != 0};
  int64_t planes = q.n * q.c;
  sw_threadpool_for(pool_for(g, planes * q.ho * q.wo * q.kh * q.kw), (size_t)planes, 0, fn, &jb);
}

sw_status sw__cpu_fwd_MAX_POOL(sw_graph *g, sw__node *node) {
  run_pool(g, node, max_pool_range);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_MAX_POOL(sw_graph *g, sw__node *node) {
  if (IN(0)->grad) run_pool(g, node, max_pool_back_range);
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  run_pool(g, node, avg_pool_range);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  if (IN(0)->grad) run_pool(g, node, avg_pool_back_range);
  return SW_STATUS_OK;
}
