/* CPU kernels of the core ops: MatMul and Gemm on OpenBLAS sgemm, broadcasting
 * arithmetic, Relu, the shape ops that copy (Flatten, Reshape, Cast), and the losses
 * (softmax cross-entropy, binary cross-entropy with logits, mean squared error). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn/nn_int.h"

#define IN(i) sw__in(g, node, (i))
#define F32(nd) ((float *)(nd)->data)

static int64_t elems(const sw__node *nd) { return sw__elements(nd->rank, nd->shape); }

/* ---- sgemm on the pool, MatMul, Gemm ---------------------------------------------- */

void sw__gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

typedef struct {
  bool ta, tb, by_rows;
  int64_t m, n, k, lda, ldb, ldc, parts;
  float alpha, beta;
  const float *a, *b;
  float *c;
  const float *bias_row; /* optional: C's rows start as this row of n values */
  bool relu;             /* optional: C = relu(C) after */
} gemm_job;

/* Block i of C's rows (or columns), on 16-aligned boundaries so every block but the
 * last keeps the sgemm kernel's full width. */
static void gemm_block(const gemm_job *jb, int64_t i, int64_t *lo, int64_t *hi) {
  int64_t len = jb->by_rows ? jb->m : jb->n, units = (len + 15) / 16;
  *lo = units * i / jb->parts * 16;
  *hi = units * (i + 1) / jb->parts * 16;
  if (*lo > len) *lo = len;
  if (*hi > len) *hi = len;
}

/* C's block rows [r0, r1) x columns [c0, c1): the bias row before the sgemm, or the
 * Relu after it, while the block is in cache. */
static void block_fill(const gemm_job *jb, int64_t r0, int64_t r1, int64_t c0, int64_t c1, bool relu) {
  for (int64_t r = r0; r < r1; r++) {
    float *row = jb->c + r * jb->ldc;
    if (relu)
      for (int64_t j = c0; j < c1; j++) row[j] = row[j] > 0.0f ? row[j] : 0.0f;
    else
      for (int64_t j = c0; j < c1; j++) row[j] = jb->bias_row[j];
  }
}

static void gemm_range(void *ctx, size_t begin, size_t end) {
  const gemm_job *jb = ctx;
  for (size_t i = begin; i < end; i++) {
    int64_t lo, hi;
    gemm_block(jb, (int64_t)i, &lo, &hi);
    if (lo >= hi) continue;
    int64_t r0 = jb->by_rows ? lo : 0, r1 = jb->by_rows ? hi : jb->m;
    int64_t c0 = jb->by_rows ? 0 : lo, c1 = jb->by_rows ? jb->n : hi;
    if (jb->bias_row) block_fill(jb, r0, r1, c0, c1, false);
    if (jb->by_rows) /* rows lo..hi of op(A) and of C */
      sw__gemm_serial(jb->ta, jb->tb, hi - lo, jb->n, jb->k, jb->alpha, jb->ta ? jb->a + lo : jb->a + lo * jb->lda,
                      jb->lda, jb->b, jb->ldb, jb->beta, jb->c + lo * jb->ldc, jb->ldc);
    else /* columns lo..hi of op(B) and of C */
      sw__gemm_serial(jb->ta, jb->tb, jb->m, hi - lo, jb->k, jb->alpha, jb->a, jb->lda,
                      jb->tb ? jb->b + lo * jb->ldb : jb->b + lo, jb->ldb, jb->beta, jb->c + lo, jb->ldc);
    if (jb->relu) block_fill(jb, r0, r1, c0, c1, true);
  }
}

/* Below this many multiply-adds an sgemm runs on one thread. */
#define GEMM_PARALLEL_MIN (1 << 18)

/* sw__gemm with C's rows starting as bias_row (NULL: C as it is) and a Relu after
 * (relu), each done per block on the thread that computes it. */
static void gemm_fused(sw_graph *g, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                       const float *bias_row, bool relu) {
  int threads = g && g->pool ? g->threads : 1;
  bool serial = threads == 1 || m * n * k < GEMM_PARALLEL_MIN || (m < 32 && n < 32);
  gemm_job jb = {trans_a, trans_b, m >= n, m, n, k, lda, ldb, ldc, serial ? 1 : threads, alpha, beta, a, b, c,
                 bias_row, relu};
  if (serial)
    gemm_range(&jb, 0, 1);
  else
    sw_threadpool_for(g->pool, (size_t)threads, 0, gemm_range, &jb);
}

void sw__gemm(sw_graph *g, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  gemm_fused(g, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, false);
}

sw_status sw__cpu_fwd_MATMUL(sw_graph *g, sw__node *node) {
  sw__node *a = IN(0), *b = IN(1);
  int64_t k = b->shape[0], n = b->shape[1], m = elems(a) / k;
  sw__gemm(g, false, false, m, n, k, 1.0f, F32(a), k, F32(b), n, 0.0f, F32(node), n);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_MATMUL(sw_graph *g, sw__node *node) {
  sw__node *a = IN(0), *b = IN(1);
  int64_t k = b->shape[0], n = b->shape[1], m = elems(a) / k;
  if (a->grad) /* dA += dY B^T */
    sw__gemm(g, false, true, m, k, n, 1.0f, node->grad, n, F32(b), n, 1.0f, a->grad, k);
  if (b->grad) /* dB += A^T dY */
    sw__gemm(g, true, false, k, n, m, 1.0f, F32(a), k, node->grad, n, 1.0f, b->grad, n);
  return SW_STATUS_OK;
}

/* Strides of x aligned to a rank-r output, 0 along broadcast dimensions. */
static void broadcast_strides(const sw__node *x, int r, const int64_t *out, int64_t *strides) {
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int xi = i - (r - x->rank);
    if (xi < 0) {
      strides[i] = 0;
      continue;
    }
    strides[i] = (x->shape[xi] == 1 && out[i] != 1) ? 0 : s;
    s *= x->shape[xi];
  }
}

/* Walks a rank-r output in C order, keeping the offsets of the elements of two
 * broadcast operands a and b (b may be NULL) that produce each output element. */
typedef struct {
  int r;
  const int64_t *out;
  int64_t idx[SW_NN_MAX_RANK], sa[SW_NN_MAX_RANK], sb[SW_NN_MAX_RANK];
  int64_t oa, ob;
} broadcast_walk;

static void walk_init(broadcast_walk *w, const sw__node *a, const sw__node *b, int r, const int64_t *out) {
  memset(w, 0, sizeof *w);
  w->r = r;
  w->out = out;
  broadcast_strides(a, r, out, w->sa);
  if (b) broadcast_strides(b, r, out, w->sb);
}

static inline void walk_next(broadcast_walk *w) {
  for (int d = w->r - 1; d >= 0; d--) {
    w->idx[d]++;
    w->oa += w->sa[d];
    w->ob += w->sb[d];
    if (w->idx[d] < w->out[d]) return;
    w->oa -= w->sa[d] * w->out[d];
    w->ob -= w->sb[d] * w->out[d];
    w->idx[d] = 0;
  }
}

/* Adds src (shaped like dst_node's broadcast target `out`) into dst, summing over the
 * dimensions dst was broadcast along. */
static void reduce_into(float *dst, const sw__node *dst_node, const float *src, int r, const int64_t *out, float scale) {
  broadcast_walk w;
  walk_init(&w, dst_node, NULL, r, out);
  int64_t total = sw__elements(r, out);
  for (int64_t i = 0; i < total; i++, walk_next(&w)) dst[w.oa] += scale * src[i];
}

typedef struct {
  const sw__node *node;
  int64_t m, n, k, lda, parts;
  float alpha, beta;
  const float *a, *bias_row;
  float *c;
} packed_job;

/* Part i of the product: a run of the kernel's blocks of 6 rows, or with fewer blocks
 * than parts (a small batch) a run of B's panels, each part then reading its share of
 * B only. */
static void packed_range(void *ctx, size_t begin, size_t end) {
  const packed_job *jb = ctx;
  int64_t blocks = (jb->m + 5) / 6, panels = (jb->n + 63) / 64;
  bool by_rows = blocks >= jb->parts;
  int64_t units = by_rows ? blocks : panels;
  for (size_t i = begin; i < end; i++) {
    int64_t u0 = units * (int64_t)i / jb->parts, u1 = units * ((int64_t)i + 1) / jb->parts;
    int64_t r0 = by_rows ? u0 * 6 : 0, r1 = by_rows ? u1 * 6 : jb->m, p0 = by_rows ? 0 : u0, p1 = by_rows ? panels : u1;
    if (r1 > jb->m) r1 = jb->m;
    if (r0 < r1 && p0 < p1)
      sw__gemm_packed(r0, r1, p0, p1, jb->n, jb->k, jb->alpha, jb->a, jb->lda, jb->node->packed, jb->beta,
                      jb->bias_row, jb->node->fused_relu, jb->c, jb->n, jb->node->packed_finite);
  }
}

/* The Gemm by sw__gemm_packed when B is a constant (it cannot change, so it is packed
 * once); false when it does not apply. At every batch size it measured at least as
 * fast as OpenBLAS on the MLP (batch 1: 10.0 against 11.0 µs, batch 8: 36 against
 * 75 µs, where OpenBLAS leaves its small-matrix kernel and packs all of B). */
static bool gemm_packed(sw_graph *g, sw__node *node, const sw__node *a, const sw__node *b, int64_t m, int64_t n,
                        int64_t k, float alpha, float beta, const float *bias_row, bool has_c) {
  const sw_op_attrs *at = &node->attrs;
  if (at->trans_a || b->op != SW_OP_CONST || b->dtype != SW_DTYPE_F32 || m < 1 ||
      (has_c && !bias_row) || !sw__gemm_packed_fits())
    return false;
  /* panels are 64 columns wide: a narrow B (a model with a few outputs over many
   * features) would pack into many times its size; it keeps the sgemm */
  int64_t waste = sw__gemm_packed_floats(k, n) - k * n;
  if (waste > k * n && waste > (1 << 16)) return false;
  if (!node->packed) {
    node->packed = sw_malloc((size_t)sw__gemm_packed_floats(k, n) * sizeof(float));
    if (!node->packed) return false; /* out of memory: the sgemm needs none */
    node->packed_finite = sw__gemm_pack(F32(b), at->trans_b, k, n, b->shape[1], node->packed);
  }
  int threads = g->pool ? g->threads : 1;
  packed_job jb = {node, m, n, k, a->shape[1], m * n * k < GEMM_PARALLEL_MIN ? 1 : threads, alpha, beta, F32(a),
                   bias_row, F32(node)};
  if (jb.parts == 1)
    packed_range(&jb, 0, 1);
  else
    sw_threadpool_for(g->pool, (size_t)jb.parts, 0, packed_range, &jb);
  return true;
}

sw_status sw__cpu_fwd_GEMM(sw_graph *g, sw__node *node) {
  sw__node *a = IN(0), *b = IN(1), *c = IN(2);
  const sw_op_attrs *at = &node->attrs;
  float alpha = at->alpha;
  if (node->a_scale >= 0 && !g->training) { /* A = x * k, folded: alpha k x B */
    const sw__node *mul = &g->nodes[node->a_scale];
    alpha *= F32(&g->nodes[mul->inputs[1]])[0];
    a = &g->nodes[mul->inputs[0]];
  }
  int64_t m = node->shape[0], n = node->shape[1];
  int64_t k = at->trans_a ? a->shape[0] : a->shape[1];
  float beta = 0.0f;
  const float *bias_row = NULL;
  if (c && sw__elements(c->rank, c->shape) == n && (c->rank == 1 || c->shape[0] == 1))
    bias_row = F32(c); /* a bias row: written per block by the thread that computes it */
  if (gemm_packed(g, node, a, b, m, n, k, alpha, c ? at->beta : 0.0f, bias_row, c != NULL)) return SW_STATUS_OK;
  if (c) {
    /* Y = beta * broadcast(C), then sgemm adds alpha * A B */
    if (!bias_row) {
      float *y = F32(node);
      int64_t out[2] = {m, n};
      broadcast_walk w;
      walk_init(&w, c, NULL, 2, out);
      for (int64_t i = 0; i < m * n; i++, walk_next(&w)) y[i] = F32(c)[w.oa];
    }
    beta = at->beta;
  }
  gemm_fused(g, at->trans_a, at->trans_b, m, n, k, alpha, F32(a), a->shape[1], F32(b), b->shape[1], beta, F32(node), n,
             bias_row, node->fused_relu);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_GEMM(sw_graph *g, sw__node *node) {
  sw__node *a = IN(0), *b = IN(1), *c = IN(2);
  const sw_op_attrs *at = &node->attrs;
  int64_t m = node->shape[0], n = node->shape[1];
  int64_t k = at->trans_a ? a->shape[0] : a->shape[1];
  const float *dy = node->grad;
  if (a->grad) {
    if (!at->trans_a) /* dA[m,k] += alpha dY op(B)^T */
      sw__gemm(g, false, !at->trans_b, m, k, n, at->alpha, dy, n, F32(b), b->shape[1], 1.0f, a->grad, k);
    else /* dA[k,m] += alpha op(B) dY^T */
      sw__gemm(g, at->trans_b, true, k, m, n, at->alpha, F32(b), b->shape[1], dy, n, 1.0f, a->grad, m);
  }
  if (b->grad) {
    if (!at->trans_b) /* dB[k,n] += alpha op(A)^T dY */
      sw__gemm(g, !at->trans_a, false, k, n, m, at->alpha, F32(a), a->shape[1], dy, n, 1.0f, b->grad, n);
    else /* dB[n,k] += alpha dY^T op(A) */
      sw__gemm(g, true, at->trans_a, n, k, m, at->alpha, dy, n, F32(a), a->shape[1], 1.0f, b->grad, k);
  }
  if (c && c->grad) reduce_into(c->grad, c, dy, 2, node->shape, at->beta);
  return SW_STATUS_OK;
}

/* ---- broadcasting arithmetic --------------------------------------------------------- */

typedef enum { ARITH_ADD, ARITH_SUB, ARITH_MUL, ARITH_DIV } arith;

static inline float apply(arith op, float x, float y) {
  switch (op) {
    case ARITH_ADD: return x + y;
    case ARITH_SUB: return x - y;
    case ARITH_MUL: return x * y;
    default: return x / y;
  }
}

/* The two broadcast-free cases, over ranges of the output: same shapes, or by a scalar
 * (the input transform). */
typedef struct {
  arith op;
  const float *x0, *x1;
  float *y;
  bool scalar;
} arith_job;

static void arith_range(void *ctx, size_t begin, size_t end) {
  const arith_job *jb = ctx;
  const float *restrict x0 = jb->x0, *restrict x1 = jb->x1;
  float *restrict y = jb->y;
  if (!jb->scalar) {
    for (size_t i = begin; i < end; i++) y[i] = apply(jb->op, x0[i], x1[i]);
    return;
  }
  const float k = x1[0];
  switch (jb->op) {
    case ARITH_ADD: for (size_t i = begin; i < end; i++) y[i] = x0[i] + k; break;
    case ARITH_SUB: for (size_t i = begin; i < end; i++) y[i] = x0[i] - k; break;
    case ARITH_MUL: for (size_t i = begin; i < end; i++) y[i] = x0[i] * k; break;
    default: for (size_t i = begin; i < end; i++) y[i] = x0[i] / k; break;
  }
}

static sw_status arith_forward(sw_graph *g, sw__node *node, arith op) {
  sw__node *a = IN(0), *b = IN(1);
  float *y = F32(node);
  const float *x0 = F32(a), *x1 = F32(b);
  int64_t total = elems(node);
  if (elems(a) == total && (elems(b) == total || elems(b) == 1)) {
    arith_job jb = {op, x0, x1, y, elems(b) == 1 && total != 1};
    sw__parallel(g, (size_t)total, total / 4, arith_range, &jb);
    return SW_STATUS_OK;
  }
  broadcast_walk w;
  walk_init(&w, a, b, node->rank, node->shape);
  for (int64_t i = 0; i < total; i++, walk_next(&w)) y[i] = apply(op, x0[w.oa], x1[w.ob]);
  return SW_STATUS_OK;
}

/* dA += dY * d(op)/dA and dB += dY * d(op)/dB, each summed over its broadcast dims. */
static sw_status arith_backward(sw_graph *g, sw__node *node, arith op) {
  sw__node *a = IN(0), *b = IN(1);
  if (!a->grad && !b->grad) return SW_STATUS_OK;
  const float *dy = node->grad, *x0 = F32(a), *x1 = F32(b);
  broadcast_walk w;
  walk_init(&w, a, b, node->rank, node->shape);
  int64_t total = elems(node);
  for (int64_t i = 0; i < total; i++, walk_next(&w)) {
    int64_t oa = w.oa, ob = w.ob;
    float gy = dy[i], va = x0[oa], vb = x1[ob];
    float ga, gb;
    switch (op) {
      case ARITH_ADD: ga = gy, gb = gy; break;
      case ARITH_SUB: ga = gy, gb = -gy; break;
      case ARITH_MUL: ga = gy * vb, gb = gy * va; break;
      default: ga = gy / vb, gb = -gy * va / (vb * vb); break;
    }
    if (a->grad) a->grad[oa] += ga;
    if (b->grad) b->grad[ob] += gb;
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_ADD(sw_graph *g, sw__node *node) { return arith_forward(g, node, ARITH_ADD); }
sw_status sw__cpu_bwd_ADD(sw_graph *g, sw__node *node) { return arith_backward(g, node, ARITH_ADD); }
sw_status sw__cpu_fwd_SUB(sw_graph *g, sw__node *node) { return arith_forward(g, node, ARITH_SUB); }
sw_status sw__cpu_bwd_SUB(sw_graph *g, sw__node *node) { return arith_backward(g, node, ARITH_SUB); }
sw_status sw__cpu_fwd_MUL(sw_graph *g, sw__node *node) {
  if (node->scale_fused && !g->training) { /* its Gemm applies it (graph.c plan_sharing) */
    g->values_skipped = true;
    return SW_STATUS_OK;
  }
  return arith_forward(g, node, ARITH_MUL);
}
sw_status sw__cpu_bwd_MUL(sw_graph *g, sw__node *node) { return arith_backward(g, node, ARITH_MUL); }
sw_status sw__cpu_fwd_DIV(sw_graph *g, sw__node *node) { return arith_forward(g, node, ARITH_DIV); }
sw_status sw__cpu_bwd_DIV(sw_graph *g, sw__node *node) { return arith_backward(g, node, ARITH_DIV); }

/* ---- Relu ----------------------------------------------------------------------------- */

typedef struct {
  const float *x, *dy;
  float *y, *dx;
} relu_job;

static void relu_fwd_range(void *ctx, size_t begin, size_t end) {
  const relu_job *jb = ctx;
  const float *restrict x = jb->x;
  float *restrict y = jb->y;
  for (size_t i = begin; i < end; i++) {
    float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

static void relu_bwd_range(void *ctx, size_t begin, size_t end) {
  const relu_job *jb = ctx;
  const float *restrict xv = jb->x, *restrict dy = jb->dy;
  float *restrict dx = jb->dx;
  for (size_t i = begin; i < end; i++) { /* both loads unconditional, so the loop vectorizes */
    float d = dy[i], v = xv[i];
    dx[i] += v > 0.0f ? d : 0.0f;
  }
}

sw_status sw__cpu_fwd_RELU(sw_graph *g, sw__node *node) {
  relu_job jb = {F32(IN(0)), NULL, F32(node), NULL};
  int64_t n = elems(node);
  sw__parallel(g, (size_t)n, n / 4, relu_fwd_range, &jb);
  return SW_STATUS_OK;
}

/* x > 0 exactly where relu(x) > 0, so the mask reads the input, or the output when a
 * Conv applied this Relu in place (they are then the same memory). */
sw_status sw__cpu_bwd_RELU(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  relu_job jb = {F32(x), node->grad, NULL, x->grad};
  int64_t n = elems(node);
  sw__parallel(g, (size_t)n, n / 4, relu_bwd_range, &jb);
  return SW_STATUS_OK;
}

/* ---- copies: Flatten, Reshape, Cast ------------------------------------------------------ */

static sw_status copy_forward(sw_graph *g, sw__node *node) {
  memcpy(node->data, IN(0)->data, (size_t)elems(node) * sw_dtype_size(node->dtype));
  return SW_STATUS_OK;
}

static sw_status copy_backward(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) x->grad[i] += node->grad[i];
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_FLATTEN(sw_graph *g, sw__node *node) { return copy_forward(g, node); }
sw_status sw__cpu_bwd_FLATTEN(sw_graph *g, sw__node *node) { return copy_backward(g, node); }
sw_status sw__cpu_fwd_RESHAPE(sw_graph *g, sw__node *node) { return copy_forward(g, node); }
sw_status sw__cpu_bwd_RESHAPE(sw_graph *g, sw__node *node) { return copy_backward(g, node); }

sw_status sw__cpu_fwd_CAST(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  int64_t n = elems(node);
  if (x->dtype == node->dtype) return copy_forward(g, node);
  if (node->dtype == SW_DTYPE_F32) {
    float *y = F32(node);
    if (x->dtype == SW_DTYPE_I64)
      for (int64_t i = 0; i < n; i++) y[i] = (float)((int64_t *)x->data)[i];
    else
      for (int64_t i = 0; i < n; i++) y[i] = (float)((uint8_t *)x->data)[i];
  } else {
    int64_t *y = node->data;
    if (x->dtype == SW_DTYPE_F32)
      for (int64_t i = 0; i < n; i++) y[i] = (int64_t)((float *)x->data)[i];
    else
      for (int64_t i = 0; i < n; i++) y[i] = ((uint8_t *)x->data)[i];
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_CAST(sw_graph *g, sw__node *node) {
  /* only a float-to-float cast carries a gradient */
  if (IN(0)->dtype == SW_DTYPE_F32 && node->dtype == SW_DTYPE_F32) return copy_backward(g, node);
  return SW_STATUS_OK;
}

/* ---- losses ------------------------------------------------------------------------------- */

sw_status sw__cpu_fwd_SOFTMAX_CROSS_ENTROPY(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0), *y = IN(1);
  int64_t n = x->shape[0], c = x->shape[1];
  const float *logits = F32(x);
  const int64_t *labels = y->data;
  float *p = node->scratch;
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *row = logits + i * c;
    float *prow = p + i * c;
    if (labels[i] < 0 || labels[i] >= c)
      return sw_error(SW_STATUS_INVALID, "label %lld of example %lld is not a class index (0..%lld)",
                      (long long)labels[i], (long long)i, (long long)(c - 1));
    float mx = row[0];
    for (int64_t j = 1; j < c; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < c; j++) {
      prow[j] = expf(row[j] - mx);
      sum += prow[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < c; j++) prow[j] *= inv;
    total += (double)mx + log(sum) - (double)row[labels[i]];
  }
  F32(node)[0] = (float)(total / (double)n);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_SOFTMAX_CROSS_ENTROPY(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0), *y = IN(1);
  if (!x->grad) return SW_STATUS_OK;
  int64_t n = x->shape[0], c = x->shape[1];
  const int64_t *labels = y->data;
  const float *p = node->scratch;
  float scale = node->grad[0] / (float)n;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < c; j++)
      x->grad[i * c + j] += scale * (p[i * c + j] - (j == labels[i] ? 1.0f : 0.0f));
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_BCE_WITH_LOGITS(sw_graph *g, sw__node *node) {
  const float *z = F32(IN(0)), *t = F32(IN(1));
  int64_t n = elems(IN(0));
  double total = 0;
  for (int64_t i = 0; i < n; i++) /* max(z, 0) - z t + log(1 + e^-|z|): stable for any z */
    total += (double)fmaxf(z[i], 0.0f) - (double)z[i] * t[i] + log1p(exp(-fabs((double)z[i])));
  F32(node)[0] = (float)(total / (double)n);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_BCE_WITH_LOGITS(sw_graph *g, sw__node *node) {
  sw__node *zn = IN(0), *tn = IN(1);
  const float *z = F32(zn), *t = F32(tn);
  int64_t n = elems(zn);
  float scale = node->grad[0] / (float)n;
  for (int64_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + expf(-z[i]));
    if (zn->grad) zn->grad[i] += scale * (s - t[i]);
    if (tn->grad) tn->grad[i] += scale * -z[i];
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_MSE(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0)), *t = F32(IN(1));
  int64_t n = elems(IN(0));
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += ((double)x[i] - t[i]) * ((double)x[i] - t[i]);
  F32(node)[0] = (float)(total / (double)n);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_MSE(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0), *tn = IN(1);
  const float *x = F32(xn), *t = F32(tn);
  int64_t n = elems(xn);
  float scale = 2.0f * node->grad[0] / (float)n;
  for (int64_t i = 0; i < n; i++) {
    if (xn->grad) xn->grad[i] += scale * (x[i] - t[i]);
    if (tn->grad) tn->grad[i] -= scale * (x[i] - t[i]);
  }
  return SW_STATUS_OK;
}
