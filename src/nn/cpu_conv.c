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

/* Rows are short (14 or 28 floats in the CNN): plain loops, not memcpy/memset calls
 * (GCC turns such loops into calls unless told not to; clang, for the fuzz builds, has
 * no such attribute). */
#if defined(__GNUC__) && !defined(__clang__)
#define SW_PLAIN_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define SW_PLAIN_LOOPS
#endif
SW_PLAIN_LOOPS static void im2col_plane(const geom *q, const float *x,
                                                                                        float *col, int64_t ld) {
  for (int64_t ki = 0; ki < q->kh; ki++)
    for (int64_t kj = 0; kj < q->kw; kj++) {
      float *row = col + (ki * q->kw + kj) * ld;
      int64_t offx = kj * q->dw - q->pl, lo, hi;
      valid_range(q->wo, q->w, q->sw, offx, &lo, &hi);
      for (int64_t oy = 0; oy < q->ho; oy++) {
        float *dst = row + oy * q->wo;
        int64_t iy = oy * q->sh + ki * q->dh - q->pt;
        if (iy < 0 || iy >= q->h) {
          for (int64_t ox = 0; ox < q->wo; ox++) dst[ox] = 0.0f;
          continue;
        }
        const float *src = x + iy * q->w + offx;
        for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
        if (q->sw == 1)
          for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox];
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

/* im2col_plane for a stride-1, undilated kernel whose output is as large as its input
 * ("same" padding, the CNN's case). Then a tap's col row, read as one vector over the
 * plane, is the input plane shifted by (ki - pt) * W + (kj - pl): one long copy, after
 * which the few cells whose source falls outside the image (the columns that wrapped
 * to the next row, the rows above or below) are set to zero. Equal to im2col_plane,
 * cell for cell, at a fraction of its cost on short rows. */
static void im2col_plane_same(const geom *q, const float *restrict x, float *restrict col, int64_t ld) {
  int64_t w = q->w, h = q->h;
  for (int64_t ki = 0; ki < q->kh; ki++)
    for (int64_t kj = 0; kj < q->kw; kj++) {
      float *restrict row = col + (ki * q->kw + kj) * ld;
      int64_t dy = ki - q->pt, dx = kj - q->pl;
      int64_t y0 = dy < 0 ? -dy : 0, y1 = dy > 0 ? h - dy : h; /* output rows with a source row */
      int64_t x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? w - dx : w; /* output columns with a source column */
      if (y1 <= y0 || x1 <= x0) {
        for (int64_t i = 0; i < h * w; i++) row[i] = 0.0f;
        continue;
      }
      for (int64_t i = 0; i < y0 * w; i++) row[i] = 0.0f;
      int64_t a = y0 * w + x0, b = (y1 - 1) * w + x1, shift = dy * w + dx;
      for (int64_t i = a; i < b; i++) row[i] = x[i + shift];
      for (int64_t oy = y0; oy < y1; oy++) { /* the wrapped columns of every row */
        for (int64_t ox = 0; ox < x0; ox++) row[oy * w + ox] = 0.0f;
        for (int64_t ox = x1; ox < w; ox++) row[oy * w + ox] = 0.0f;
      }
      for (int64_t i = y1 * w; i < h * w; i++) row[i] = 0.0f;
    }
}

static bool same_shape_stride_1(const geom *q) {
  return q->sh == 1 && q->sw == 1 && q->dh == 1 && q->dw == 1 && q->ho == q->h && q->wo == q->w &&
         q->pt < q->kh && q->pl < q->kw;
}

/* Items are (image j, channel c) pairs: each writes its own rows and columns of col
 * (im2col) or its own input plane (col2im), so the split cannot change the result. */
static void im2col_range(void *ctx, size_t begin, size_t end) {
  const col_job *jb = ctx;
  const geom *q = jb->q;
  int64_t p = q->ho * q->wo, kk = q->kh * q->kw;
  bool same = same_shape_stride_1(q);
  for (size_t i = begin; i < end; i++) {
    int64_t j = (int64_t)i / q->c, c = (int64_t)i % q->c;
    const float *x = jb->x + (j * q->c + c) * q->h * q->w;
    float *col = jb->col + c * kk * jb->ld + j * p;
    if (same)
      im2col_plane_same(q, x, col, jb->ld);
    else
      im2col_plane(q, x, col, jb->ld);
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

static void run_cols(const geom *q, int64_t k, float *x, float *col, bool adjoint) {
  col_job jb = {q, x, col, k * q->ho * q->wo};
  (adjoint ? col2im_range : im2col_range)(&jb, 0, (size_t)(k * q->c));
}

/* A 1x1 kernel with stride 1 and no padding: an image's col is the image itself. */
static bool col_is_input(const geom *q) {
  return q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && q->pt == 0 && q->pl == 0 && q->ho == q->h &&
         q->wo == q->w;
}

/* How a Conv spreads over the threads. With at least as many images as threads, each
 * thread takes a contiguous run of images and does everything for them on its own
 * (im2col, a one-thread sgemm, the output written with its bias; in backward its share
 * of dW into its own buffer, summed in thread order at the end, so the result depends
 * on the thread count but never on timing). With fewer images (batch 1 at inference)
 * the images go one by one and each sgemm is split over the threads instead.
 *
 * The node's scratch (ops.c scratch_conv) is one slice per thread:
 *   offset            size (floats)   what
 *   0                 CKK * k * P     col: k images' im2col columns side by side
 *   CKK k P           M * k * P       out: their sgemm output, or their dY side by side
 *   (CKK + M) k P     M * CKK         dW partial (threads > 0 of a split backward)
 * where k, the images per sgemm, is what fits (up to 8). */
typedef struct {
  sw_graph *g;
  sw__node *node, *xn, *wn, *bn;
  geom q;
  int parts;           /* image runs: 1 (images one by one, sgemm split) or threads */
  int64_t slice;       /* floats of scratch per thread */
  int64_t k;           /* images per sgemm */
  bool direct;         /* forward by sw__conv_direct (cpu_conv_direct.c) */
  bool wino;           /* forward by sw__conv_wino (cpu_conv_wino.c), before direct */
  const float *u;      /* its transformed kernels, at the start of thread 0's slice */
  /* the direct forward of one image split over the threads (batch below the thread count) */
  const float *xbuf, *wr, *bias;
  float *y;
  bool relu;
  int64_t pho, pwo; /* Winograd's fused pool, 0 when none */
} conv_job;

static void conv_job_init(sw_graph *g, sw__node *node, conv_job *jb) {
  memset(jb, 0, sizeof *jb);
  jb->g = g;
  jb->node = node;
  jb->xn = sw__in(g, node, 0);
  jb->wn = sw__in(g, node, 1);
  jb->bn = sw__in(g, node, 2);
  geom_of(jb->xn, node, &jb->q);
  const geom *q = &jb->q;
  int threads = g->pool ? g->threads : 1;
  jb->parts = q->n >= threads ? threads : 1;
  int64_t p = q->ho * q->wo, ckk = q->c * q->kh * q->kw;
  jb->slice = (int64_t)(node->scratch_bytes / sizeof(float)) / threads;
  int64_t per_image = (ckk + q->m) * p, room = jb->slice - q->m * ckk;
  int64_t images = (q->n + jb->parts - 1) / jb->parts;
  jb->k = room / per_image;
  if (jb->k > images) jb->k = images;
  if (jb->k < 1) { /* one image needs only its col (the sgemm writes Y in place) */
    SW_ASSERT(col_is_input(q) || room >= ckk * p);
    jb->k = 1;
  }
  /* the direct forward keeps its padded input in col and its packed weights where the
   * backward's dW partial goes */
  jb->direct = sw__conv_direct_fits(q->m, q->kh, q->kw, q->sh, q->sw, q->dh, q->dw, q->pl, q->wo, q->w) &&
               sw__conv_direct_xbuf_floats(q->c, q->kh, q->kw, q->ho, q->w) <= ckk * jb->k * p;
  /* Winograd's slice: the cache of the transformed kernels (thread 0's serves all),
   * then one image's transformed input */
  jb->wino = q->h > 1 && sw__conv_wino_fits(q->c, q->m, q->kh, q->kw, q->sh, q->sw, q->dh, q->dw) &&
             sw__conv_wino_cache_floats(q->c, q->m) + sw__conv_wino_input_floats(q->c, q->ho, q->wo) <= jb->slice;
}

/* Where a thread's transformed input for Winograd goes. */
static float *wino_input(const conv_job *jb, size_t t) {
  return (float *)jb->node->scratch + (int64_t)t * jb->slice + sw__conv_wino_cache_floats(jb->q.c, jb->q.m);
}

static void gemm(const conv_job *jb, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (jb->parts == 1)
    sw__gemm(jb->g, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  else
    sw__gemm_serial(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* Y[m] = out[m] + bias[m], through a following Relu when the Conv carries it; y may
 * be o (in place). */
static inline void write_plane(float *y, const float *o, int64_t p, float bias, bool relu) {
  if (relu)
    for (int64_t i = 0; i < p; i++) {
      float v = o[i] + bias;
      y[i] = v > 0.0f ? v : 0.0f;
    }
  else
    for (int64_t i = 0; i < p; i++) y[i] = o[i] + bias;
}

/* The fused 2x2 MaxPool of a plane (row stride `ld` apart from the plane's width
 * `w`): pooled = relu(max of the window + bias), equal to the max of relu(v + bias)
 * since both are monotone (and a Relu's output holds no NaN to order). */
static void pool_plane(float *restrict y, const float *restrict o, int64_t w, int64_t ho, int64_t wo, float bias) {
  for (int64_t oy = 0; oy < ho; oy++) {
    const float *r0 = o + 2 * oy * w, *r1 = r0 + w;
    float *yr = y + oy * wo;
    for (int64_t ox = 0; ox < wo; ox++) {
      float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
      float top = a > b ? a : b, bot = c > d ? c : d, v = (top > bot ? top : bot) + bias;
      yr[ox] = v > 0.0f ? v : 0.0f;
    }
  }
}

/* Where a thread's packed weights for the direct forward go: its dW partial. */
static float *direct_weights(const conv_job *jb, size_t t) {
  const geom *q = &jb->q;
  return (float *)jb->node->scratch + (int64_t)t * jb->slice + (q->c * q->kh * q->kw + q->m) * jb->k * q->ho * q->wo;
}

/* The Relu and the 2x2 MaxPool after a direct forward's output o (bias and Relu already
 * in it, so the pool adds no bias). */
static void direct_epilogue(const conv_job *jb, const float *o, int64_t image) {
  const geom *q = &jb->q;
  sw__node *pool = &jb->g->nodes[jb->node->pool_into];
  int64_t pho = pool->shape[2], pwo = pool->shape[3];
  for (int64_t m = 0; m < q->m; m++)
    sw__conv_direct_pool(F32(pool) + (image * q->m + m) * pho * pwo, o + m * q->ho * q->wo, q->wo, pho, pwo);
}

static void direct_blocks(void *ctx, size_t mb0, size_t mb1) {
  const conv_job *jb = ctx;
  const geom *q = &jb->q;
  sw__conv_direct(jb->xbuf, q->c, q->w, q->kh, q->kw, q->pl, q->ho, jb->wr, jb->bias, jb->relu, jb->y, (int64_t)mb0,
                  (int64_t)mb1);
}

static void wino_blocks(void *ctx, size_t mv0, size_t mv1) {
  const conv_job *jb = ctx;
  const geom *q = &jb->q;
  sw__conv_wino(jb->xbuf, jb->u, q->c, q->m, q->ho, q->wo, jb->bias, jb->relu, jb->pho, jb->pwo, jb->y, (int64_t)mv0,
                (int64_t)mv1);
}

static void conv_fwd_range(void *ctx, size_t t0, size_t t1) {
  const conv_job *jb = ctx;
  const geom *q = &jb->q;
  int64_t p = q->ho * q->wo, ckk = q->c * q->kh * q->kw, in_img = q->c * q->h * q->w, out_img = q->m * p;
  const float *w = F32(jb->wn), *b = jb->bn ? F32(jb->bn) : NULL;
  bool relu = jb->node->fused_relu;
  float *x = F32(jb->xn), *y = F32(jb->node);
  /* outside training, the fused MaxPool's output instead of Y */
  sw__node *pool = jb->node->pool_into >= 0 && !jb->g->training ? &jb->g->nodes[jb->node->pool_into] : NULL;
  int64_t pho = pool ? pool->shape[2] : 0, pwo = pool ? pool->shape[3] : 0, pool_img = q->m * pho * pwo;
  for (size_t t = t0; t < t1; t++) {
    int64_t i0 = q->n * (int64_t)t / jb->parts, i1 = q->n * ((int64_t)t + 1) / jb->parts;
    float *col = (float *)jb->node->scratch + (int64_t)t * jb->slice, *out = col + ckk * jb->k * p;
    if (jb->wino) {
      float *in = wino_input(jb, t), *v = sw__conv_wino_v(in, q->c, q->ho, q->wo);
      for (int64_t i = i0; i < i1; i++) {
        sw__conv_wino_input(x + i * in_img, q->c, q->h, q->w, q->pt, q->pl, q->ho, q->wo, in);
        sw__conv_wino(v, jb->u, q->c, q->m, q->ho, q->wo, b, relu, pho, pwo, pool ? F32(pool) + i * pool_img : y + i * out_img,
                      0, q->m / 16);
      }
      continue;
    }
    if (jb->direct) {
      float *wr = direct_weights(jb, t);
      sw__conv_direct_pack(w, q->m, q->c, q->kh, q->kw, wr);
      for (int64_t i = i0; i < i1; i++) {
        sw__conv_direct_input(x + i * in_img, q->c, q->h, q->w, q->kh, q->kw, q->pt, q->pl, q->ho, col);
        sw__conv_direct(col, q->c, q->w, q->kh, q->kw, q->pl, q->ho, wr, b, relu || pool, pool ? out : y + i * out_img,
                        0, q->m / 8);
        if (pool) direct_epilogue(jb, out, i);
      }
      continue;
    }
    for (int64_t n0 = i0; n0 < i1; n0 += jb->k) {
      int64_t kk = i1 - n0 < jb->k ? i1 - n0 : jb->k, ld = kk * p;
      const float *src = col;
      if (kk == 1 && col_is_input(q))
        src = x + n0 * in_img;
      else
        run_cols(q, kk, x + n0 * in_img, col, false);
      if (kk == 1 && !pool) { /* straight into Y, then bias (and Relu) in place */
        float *yi = y + n0 * out_img;
        gemm(jb, false, false, q->m, p, ckk, w, ckk, src, ld, 0.0f, yi, p);
        for (int64_t m = 0; m < q->m; m++) write_plane(yi + m * p, yi + m * p, p, b ? b[m] : 0.0f, relu);
        continue;
      }
      gemm(jb, false, false, q->m, ld, ckk, w, ckk, src, ld, 0.0f, out, ld);
      for (int64_t j = 0; j < kk; j++)
        for (int64_t m = 0; m < q->m; m++) {
          const float *o = out + m * ld + j * p;
          float bias = b ? b[m] : 0.0f;
          if (pool)
            pool_plane(F32(pool) + (n0 + j) * pool_img + m * pho * pwo, o, q->wo, pho, pwo, bias);
          else
            write_plane(y + (n0 + j) * out_img + m * p, o, p, bias, relu);
        }
    }
  }
}

sw_status sw__cpu_fwd_CONV(sw_graph *g, sw__node *node) {
  conv_job jb;
  conv_job_init(g, node, &jb);
  if (node->pool_into >= 0 && !g->training) g->values_skipped = true;
  if (!jb.wino) sw__conv_wino_forget(node->scratch); /* the other paths write over it */
  if (jb.wino) {
    /* the kernels transformed once for all threads, and outside training kept for the
     * next pass (a backward pass writes over the scratch) */
    const geom *q = &jb.q;
    jb.u = sw__conv_wino_kernels(F32(jb.wn), q->m, q->c, node->scratch, !g->training);
    if (jb.parts == 1 && g->pool && g->threads > 1) { /* fewer images than threads: split the channels */
      float *in = wino_input(&jb, 0), *v = sw__conv_wino_v(in, q->c, q->ho, q->wo);
      sw__node *pool = node->pool_into >= 0 && !g->training ? &g->nodes[node->pool_into] : NULL;
      int64_t pho = pool ? pool->shape[2] : 0, pwo = pool ? pool->shape[3] : 0;
      jb.xbuf = v;
      jb.bias = jb.bn ? F32(jb.bn) : NULL;
      jb.relu = node->fused_relu;
      jb.pho = pho;
      jb.pwo = pwo;
      for (int64_t i = 0; i < q->n; i++) {
        sw__conv_wino_input(F32(jb.xn) + i * q->c * q->h * q->w, q->c, q->h, q->w, q->pt, q->pl, q->ho, q->wo, in);
        jb.y = pool ? F32(pool) + i * q->m * pho * pwo : F32(node) + i * q->m * q->ho * q->wo;
        sw_threadpool_for(g->pool, (size_t)(q->m / 16), 0, wino_blocks, &jb);
      }
      return SW_STATUS_OK;
    }
  }
  if (jb.direct && jb.parts == 1 && g->pool && g->threads > 1) { /* fewer images than threads: split the channels */
    const geom *q = &jb.q;
    float *col = node->scratch, *wr = direct_weights(&jb, 0);
    float *out = col + q->c * q->kh * q->kw * jb.k * q->ho * q->wo;
    bool pool = node->pool_into >= 0 && !g->training;
    sw__conv_direct_pack(F32(jb.wn), q->m, q->c, q->kh, q->kw, wr);
    jb.xbuf = col;
    jb.wr = wr;
    jb.bias = jb.bn ? F32(jb.bn) : NULL;
    jb.relu = node->fused_relu || pool;
    for (int64_t i = 0; i < q->n; i++) {
      sw__conv_direct_input(F32(jb.xn) + i * q->c * q->h * q->w, q->c, q->h, q->w, q->kh, q->kw, q->pt, q->pl, q->ho,
                            col);
      jb.y = pool ? out : F32(node) + i * q->m * q->ho * q->wo;
      sw_threadpool_for(g->pool, (size_t)(q->m / 8), 0, direct_blocks, &jb);
      if (pool) direct_epilogue(&jb, out, i);
    }
    return SW_STATUS_OK;
  }
  if (jb.parts == 1)
    conv_fwd_range(&jb, 0, 1);
  else
    sw_threadpool_for(g->pool, (size_t)jb.parts, 0, conv_fwd_range, &jb);
  return SW_STATUS_OK;
}

/* The sum of a plane in 16 float lanes (so it vectorizes), the lanes added in double. */
static double plane_sum(const float *restrict v, int64_t p) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= p; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += v[i + j];
  double s = 0.0;
  for (int j = 0; j < 16; j++) s += acc[j];
  for (; i < p; i++) s += v[i];
  return s;
}

static void conv_bias_grad_range(void *ctx, size_t m0, size_t m1) {
  const conv_job *jb = ctx;
  const geom *q = &jb->q;
  int64_t p = q->ho * q->wo, out_img = q->m * p;
  const float *dy = jb->node->grad;
  for (size_t m = m0; m < m1; m++) {
    double s = 0.0;
    for (int64_t n = 0; n < q->n; n++) s += plane_sum(dy + n * out_img + (int64_t)m * p, p);
    jb->bn->grad[m] += (float)s;
  }
}

static void conv_bwd_range(void *ctx, size_t t0, size_t t1) {
  const conv_job *jb = ctx;
  const geom *q = &jb->q;
  int64_t p = q->ho * q->wo, ckk = q->c * q->kh * q->kw, in_img = q->c * q->h * q->w, out_img = q->m * p;
  sw__node *xn = jb->xn, *wn = jb->wn;
  const float *dy = jb->node->grad, *w = F32(wn);
  float *x = F32(xn);
  for (size_t t = t0; t < t1; t++) {
    int64_t i0 = q->n * (int64_t)t / jb->parts, i1 = q->n * ((int64_t)t + 1) / jb->parts;
    float *col = (float *)jb->node->scratch + (int64_t)t * jb->slice, *dy_block = col + ckk * jb->k * p;
    /* thread 0 adds into dW itself; the others into their partial, summed afterwards */
    float *dw = t == 0 ? wn->grad : dy_block + q->m * jb->k * p;
    float dw_beta = t == 0 ? 1.0f : 0.0f;
    for (int64_t n0 = i0; n0 < i1; n0 += jb->k) {
      int64_t kk = i1 - n0 < jb->k ? i1 - n0 : jb->k, ld = kk * p;
      bool direct = kk == 1 && col_is_input(q);
      const float *dyi = dy + n0 * out_img;
      if (kk > 1) { /* the k images' dY side by side, as the sgemm wants them */
        for (int64_t j = 0; j < kk; j++)
          for (int64_t m = 0; m < q->m; m++)
            memcpy(dy_block + m * ld + j * p, dy + (n0 + j) * out_img + m * p, (size_t)p * sizeof(float));
        dyi = dy_block;
      }
      if (wn->grad) { /* dW += dY col^T */
        const float *src = col;
        if (direct)
          src = x + n0 * in_img;
        else
          run_cols(q, kk, x + n0 * in_img, col, false);
        gemm(jb, false, true, q->m, ckk, ld, dyi, ld, src, ld, dw_beta, dw, ckk);
        dw_beta = 1.0f;
      }
      if (xn->grad) { /* dcol = W^T dY, then col2im adds it into dX */
        if (direct) {
          gemm(jb, true, false, ckk, p, q->m, w, ckk, dyi, p, 1.0f, xn->grad + n0 * in_img, p);
          continue;
        }
        gemm(jb, true, false, ckk, ld, q->m, w, ckk, dyi, ld, 0.0f, col, ld);
        run_cols(q, kk, xn->grad + n0 * in_img, col, true);
      }
    }
  }
}

sw_status sw__cpu_bwd_CONV(sw_graph *g, sw__node *node) {
  conv_job jb;
  conv_job_init(g, node, &jb);
  const geom *q = &jb.q;
  sw__conv_wino_forget(node->scratch); /* written over below */
  if (jb.bn && jb.bn->grad)
    sw__parallel(g, (size_t)q->m, q->n * q->m * q->ho * q->wo, conv_bias_grad_range, &jb);
  if (!jb.xn->grad && !jb.wn->grad) return SW_STATUS_OK;
  if (jb.parts == 1) {
    conv_bwd_range(&jb, 0, 1);
    return SW_STATUS_OK;
  }
  sw_threadpool_for(g->pool, (size_t)jb.parts, 0, conv_bwd_range, &jb);
  if (jb.wn->grad) { /* the partials of threads 1.. in thread order */
    int64_t p = q->ho * q->wo, ckk = q->c * q->kh * q->kw, size = q->m * ckk;
    for (int t = 1; t < jb.parts; t++) {
      const float *part = (float *)node->scratch + t * jb.slice + (ckk + q->m) * jb.k * p;
      for (int64_t i = 0; i < size; i++) jb.wn->grad[i] += part[i];
    }
  }
  return SW_STATUS_OK;
}

/* ---- MaxPool, AveragePool -------------------------------------------------------------- */

typedef struct {
  const geom *q;
  const float *x, *dy;
  float *y, *dx;
  int32_t *argmax; /* MaxPool in training: the input index (within the plane) of each output; -1 */
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
    int32_t *arg = jb->argmax ? jb->argmax + (int64_t)pl * p : NULL;
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
        if (arg) arg[oy * q->wo + ox] = (int32_t)at;
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
    int32_t *arg = jb->argmax ? jb->argmax + (int64_t)pl * p : NULL;
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
        if (arg) arg[oy * q->wo + ox] = (int32_t)at;
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
    const int32_t *arg = jb->argmax ? jb->argmax + (int64_t)pl * p : NULL;
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

static void run_pool(sw_graph *g, sw__node *node, void (*fn)(void *, size_t, size_t), int32_t *argmax) {
  sw__node *xn = IN(0);
  geom q;
  geom_of(xn, node, &q);
  pool_job jb = {&q, F32(xn), node->grad, F32(node), xn->grad, argmax, node->attrs.count_include_pad != 0};
  int64_t planes = q.n * q.c;
  sw__parallel(g, (size_t)planes, planes * q.ho * q.wo * q.kh * q.kw, fn, &jb);
}

/* The argmax is for a backward pass: a forward outside training skips it, and a
 * backward that finds none (a graph run backward without training mode) makes it. */
sw_status sw__cpu_fwd_MAX_POOL(sw_graph *g, sw__node *node) {
  if (node->pool_fused && !g->training) return SW_STATUS_OK; /* its Conv wrote it */
  node->scratch_ready = g->training;
  run_pool(g, node, max_pool_range, g->training ? node->scratch : NULL);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_MAX_POOL(sw_graph *g, sw__node *node) {
  if (!IN(0)->grad) return SW_STATUS_OK;
  if (!node->scratch_ready) {
    run_pool(g, node, max_pool_range, node->scratch);
    node->scratch_ready = true;
  }
  run_pool(g, node, max_pool_back_range, node->scratch);
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  run_pool(g, node, avg_pool_range, NULL);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  if (IN(0)->grad) run_pool(g, node, avg_pool_back_range, NULL);
  return SW_STATUS_OK;
}
