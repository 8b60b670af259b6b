/* The op table: each op's ONNX name, input count, and shape inference (which also
 * checks its inputs' types and shapes, so a bad graph fails at build with a message
 * naming the node rather than at run time). */
#include <string.h>

#include "nn/nn_int.h"

int64_t sw__elements(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}

bool sw__broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rank, int64_t *out) {
  int r = ra > rb ? ra : rb;
  for (int i = 0; i < r; i++) {
    int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
    int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
    if (da != db && da != 1 && db != 1) return false;
    out[i] = da == 1 ? db : da;
  }
  *rank = r;
  return true;
}

static sw_status fail(const sw__node *node, const char *fmt, const char *detail) {
  return sw_error(SW_STATUS_INVALID, "node '%s' (%s): %s%s", node->name, sw_op_onnx_type(node->op)[0] ? sw_op_onnx_type(node->op) : sw_op_name(node->op), fmt, detail ? detail : "");
}

static void set_shape(sw__node *node, int rank, const int64_t *shape) {
  node->rank = rank;
  for (int i = 0; i < rank; i++) node->shape[i] = shape[i];
}

static sw_status need_f32(const sw__node *node, const sw__node *in, const char *what) {
  if (!in) return fail(node, "missing input: ", what);
  if (in->dtype != SW_DTYPE_F32) return fail(node, "needs a float input: ", what);
  return SW_STATUS_OK;
}

static sw_status infer_leaf(sw_graph *g, sw__node *node) {
  (void)g;
  (void)node;
  return SW_STATUS_OK;
}

static sw_status infer_matmul(sw_graph *g, sw__node *node) {
  sw__node *a = sw__in(g, node, 0), *b = sw__in(g, node, 1);
  sw_status st = need_f32(node, a, "A");
  if (!st) st = need_f32(node, b, "B");
  if (st) return st;
  if (a->rank < 2 || b->rank != 2) return fail(node, "needs A of rank >= 2 and B of rank 2", NULL);
  if (a->shape[a->rank - 1] != b->shape[0]) return fail(node, "inner dimensions differ", NULL);
  node->dtype = SW_DTYPE_F32;
  set_shape(node, a->rank, a->shape);
  node->shape[a->rank - 1] = b->shape[1];
  return SW_STATUS_OK;
}

static sw_status infer_gemm(sw_graph *g, sw__node *node) {
  sw__node *a = sw__in(g, node, 0), *b = sw__in(g, node, 1), *c = sw__in(g, node, 2);
  sw_status st = need_f32(node, a, "A");
  if (!st) st = need_f32(node, b, "B");
  if (!st && c) st = need_f32(node, c, "C");
  if (st) return st;
  if (a->rank != 2 || b->rank != 2) return fail(node, "needs A and B of rank 2", NULL);
  int64_t m = node->attrs.trans_a ? a->shape[1] : a->shape[0];
  int64_t ka = node->attrs.trans_a ? a->shape[0] : a->shape[1];
  int64_t kb = node->attrs.trans_b ? b->shape[1] : b->shape[0];
  int64_t n = node->attrs.trans_b ? b->shape[0] : b->shape[1];
  if (ka != kb) return fail(node, "inner dimensions differ", NULL);
  int64_t out[2] = {m, n}, tmp[SW_NN_MAX_RANK];
  int r;
  if (c && (!sw__broadcast_shape(2, out, c->rank, c->shape, &r, tmp) || tmp[0] != m || tmp[1] != n))
    return fail(node, "C does not broadcast to [M, N]", NULL);
  node->dtype = SW_DTYPE_F32;
  set_shape(node, 2, out);
  return SW_STATUS_OK;
}

static sw_status infer_binary(sw_graph *g, sw__node *node) {
  sw__node *a = sw__in(g, node, 0), *b = sw__in(g, node, 1);
  sw_status st = need_f32(node, a, "A");
  if (!st) st = need_f32(node, b, "B");
  if (st) return st;
  int r;
  int64_t out[SW_NN_MAX_RANK];
  if (!sw__broadcast_shape(a->rank, a->shape, b->rank, b->shape, &r, out))
    return fail(node, "shapes do not broadcast", NULL);
  node->dtype = SW_DTYPE_F32;
  set_shape(node, r, out);
  return SW_STATUS_OK;
}

static sw_status infer_unary(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  sw_status st = need_f32(node, x, "X");
  if (st) return st;
  node->dtype = SW_DTYPE_F32;
  set_shape(node, x->rank, x->shape);
  return SW_STATUS_OK;
}

static sw_status normalize_axis(sw__node *node, int64_t *axis, int rank) {
  int64_t a = *axis < 0 ? *axis + rank : *axis;
  if (a < 0 || a >= (rank ? rank : 1)) return fail(node, "axis out of range", NULL);
  *axis = a;
  return SW_STATUS_OK;
}

static sw_status infer_dropout(sw_graph *g, sw__node *node) {
  if (!(node->attrs.ratio >= 0 && node->attrs.ratio < 1)) return fail(node, "ratio must be in [0, 1)", NULL);
  return infer_unary(g, node);
}

static sw_status infer_softmax(sw_graph *g, sw__node *node) {
  sw_status st = infer_unary(g, node);
  if (st) return st;
  int64_t axis = node->attrs.axis;
  st = normalize_axis(node, &axis, node->rank);
  if (st) return st;
  if (axis != node->rank - 1) return fail(node, "only the last axis is supported", NULL);
  return SW_STATUS_OK;
}

/* Output size of a window op along one dimension (ONNX's formula, floor mode). */
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d) {
  int64_t span = d * (k - 1) + 1;
  if (in + p0 + p1 < span) return 0;
  return (in + p0 + p1 - span) / s + 1;
}

static sw_status check_window(sw__node *node, int rank) {
  const sw_op_attrs *a = &node->attrs;
  for (int i = 0; i < 2; i++)
    if (a->stride[i] < 1 || a->dilation[i] < 1 || a->kernel[i] < 1)
      return fail(node, "kernel, stride and dilation must be >= 1", NULL);
  for (int i = 0; i < 4; i++)
    if (a->pad[i] < 0) return fail(node, "pads must be >= 0", NULL);
  if (rank == 3 && (a->kernel[0] != 1 || a->pad[0] || a->pad[2] || a->stride[0] != 1))
    return fail(node, "1-D windows use the second dimension of kernel, stride and pads", NULL);
  return SW_STATUS_OK;
}

static sw_status infer_window(sw__node *node, const sw__node *x, int64_t channels) {
  int rank = x->rank;
  if (rank != 3 && rank != 4) return fail(node, "needs NCHW (or NCW) input", NULL);
  sw_status st = check_window(node, rank);
  if (st) return st;
  const sw_op_attrs *a = &node->attrs;
  int64_t h = rank == 4 ? x->shape[2] : 1, w = x->shape[rank - 1];
  int64_t ho = window_out(h, a->kernel[0], a->stride[0], a->pad[0], a->pad[2], a->dilation[0]);
  int64_t wo = window_out(w, a->kernel[1], a->stride[1], a->pad[1], a->pad[3], a->dilation[1]);
  if (ho < 1 || wo < 1) return fail(node, "the window is larger than the padded input", NULL);
  node->dtype = SW_DTYPE_F32;
  node->rank = rank;
  node->shape[0] = x->shape[0];
  node->shape[1] = channels;
  if (rank == 4) node->shape[2] = ho;
  node->shape[rank - 1] = wo;
  return SW_STATUS_OK;
}

static sw_status infer_conv(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0), *w = sw__in(g, node, 1), *b = sw__in(g, node, 2);
  sw_status st = need_f32(node, x, "X");
  if (!st) st = need_f32(node, w, "W");
  if (!st && b) st = need_f32(node, b, "B");
  if (st) return st;
  if (w->rank != x->rank) return fail(node, "W must have the rank of X", NULL);
  if (w->shape[1] != x->shape[1]) return fail(node, "W's input channels differ from X's (groups are not supported)", NULL);
  if (b && (b->rank != 1 || b->shape[0] != w->shape[0])) return fail(node, "B must be [M]", NULL);
  node->attrs.kernel[0] = x->rank == 4 ? w->shape[2] : 1;
  node->attrs.kernel[1] = w->shape[x->rank - 1];
  return infer_window(node, x, w->shape[0]);
}

static sw_status infer_pool(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  sw_status st = need_f32(node, x, "X");
  if (st) return st;
  return infer_window(node, x, x->rank >= 2 ? x->shape[1] : 0);
}

static sw_status infer_gap(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  sw_status st = need_f32(node, x, "X");
  if (st) return st;
  if (x->rank < 3) return fail(node, "needs NC... input", NULL);
  node->dtype = SW_DTYPE_F32;
  set_shape(node, x->rank, x->shape);
  for (int i = 2; i < x->rank; i++) node->shape[i] = 1;
  return SW_STATUS_OK;
}

static sw_status infer_flatten(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  if (!x) return fail(node, "missing input", NULL);
  int64_t axis = node->attrs.axis < 0 ? node->attrs.axis + x->rank : node->attrs.axis;
  if (axis < 0 || axis > x->rank) return fail(node, "axis out of range", NULL);
  node->dtype = x->dtype;
  node->rank = 2;
  node->shape[0] = sw__elements((int)axis, x->shape);
  node->shape[1] = sw__elements(x->rank - (int)axis, x->shape + axis);
  return SW_STATUS_OK;
}

static sw_status infer_reshape(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  if (!x) return fail(node, "missing input", NULL);
  const sw_op_attrs *a = &node->attrs;
  if (a->shape_rank < 1 || a->shape_rank > SW_NN_MAX_RANK) return fail(node, "needs a target shape", NULL);
  int64_t total = sw__elements(x->rank, x->shape), known = 1;
  int infer_at = -1;
  node->rank = a->shape_rank;
  for (int i = 0; i < a->shape_rank; i++) {
    int64_t d = a->shape[i];
    if (d == 0) {
      if (i >= x->rank) return fail(node, "0 copies a dimension the input lacks", NULL);
      d = x->shape[i];
    } else if (d == -1) {
      if (infer_at >= 0) return fail(node, "more than one -1 in the shape", NULL);
      infer_at = i;
      d = 1;
    } else if (d < 0) {
      return fail(node, "negative size in the shape", NULL);
    }
    node->shape[i] = d;
    known *= d;
  }
  if (infer_at >= 0) {
    if (known == 0 || total % known) return fail(node, "the size cannot be inferred", NULL);
    node->shape[infer_at] = total / known;
  } else if (known != total) {
    return fail(node, "the element counts differ", NULL);
  }
  node->dtype = x->dtype;
  return SW_STATUS_OK;
}

static sw_status infer_transpose(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  if (!x) return fail(node, "missing input", NULL);
  sw_op_attrs *a = &node->attrs;
  if (a->perm_rank == 0) {
    a->perm_rank = x->rank;
    for (int i = 0; i < x->rank; i++) a->perm[i] = x->rank - 1 - i;
  }
  if (a->perm_rank != x->rank) return fail(node, "perm must list every axis", NULL);
  bool seen[SW_NN_MAX_RANK] = {0};
  for (int i = 0; i < x->rank; i++) {
    if (a->perm[i] < 0 || a->perm[i] >= x->rank || seen[a->perm[i]]) return fail(node, "perm is not a permutation", NULL);
    seen[a->perm[i]] = true;
    node->shape[i] = x->shape[a->perm[i]];
  }
  node->rank = x->rank;
  node->dtype = x->dtype;
  return SW_STATUS_OK;
}

static sw_status infer_concat(sw_graph *g, sw__node *node) {
  sw__node *x0 = sw__in(g, node, 0);
  if (!x0 || node->n_inputs < 1) return fail(node, "needs inputs", NULL);
  if (x0->rank < 1) return fail(node, "needs inputs of rank >= 1", NULL);
  int64_t axis = node->attrs.axis;
  sw_status st = normalize_axis(node, &axis, x0->rank);
  if (st) return st;
  set_shape(node, x0->rank, x0->shape);
  node->dtype = x0->dtype;
  node->shape[axis] = 0;
  for (int i = 0; i < node->n_inputs; i++) {
    sw__node *x = sw__in(g, node, i);
    if (!x || x->rank != x0->rank || x->dtype != x0->dtype) return fail(node, "inputs differ in rank or type", NULL);
    for (int d = 0; d < x->rank; d++)
      if (d != axis && x->shape[d] != x0->shape[d]) return fail(node, "inputs differ off the axis", NULL);
    node->shape[axis] += x->shape[axis];
  }
  return SW_STATUS_OK;
}

static sw_status infer_gather(sw_graph *g, sw__node *node) {
  sw__node *data = sw__in(g, node, 0), *idx = sw__in(g, node, 1);
  sw_status st = need_f32(node, data, "data");
  if (st) return st;
  if (!idx || idx->dtype != SW_DTYPE_I64) return fail(node, "indices must be int64", NULL);
  if (node->attrs.axis != 0) return fail(node, "only axis 0 (an embedding lookup) is supported", NULL);
  if (data->rank < 1 || idx->rank + data->rank - 1 > SW_NN_MAX_RANK) return fail(node, "bad ranks", NULL);
  node->dtype = SW_DTYPE_F32;
  node->rank = idx->rank + data->rank - 1;
  for (int i = 0; i < idx->rank; i++) node->shape[i] = idx->shape[i];
  for (int i = 1; i < data->rank; i++) node->shape[idx->rank + i - 1] = data->shape[i];
  return SW_STATUS_OK;
}

static sw_status infer_batch_norm(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  sw_status st = need_f32(node, x, "X");
  if (st) return st;
  if (x->rank < 2) return fail(node, "needs N, C, ... input", NULL);
  for (int i = 1; i < 5; i++) {
    sw__node *p = sw__in(g, node, i);
    st = need_f32(node, p, "scale, B, mean and var");
    if (st) return st;
    if (p->rank != 1 || p->shape[0] != x->shape[1]) return fail(node, "scale, B, mean and var must be [C]", NULL);
  }
  node->dtype = SW_DTYPE_F32;
  set_shape(node, x->rank, x->shape);
  return SW_STATUS_OK;
}

static sw_status infer_layer_norm(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0), *s = sw__in(g, node, 1), *b = sw__in(g, node, 2);
  sw_status st = need_f32(node, x, "X");
  if (!st) st = need_f32(node, s, "Scale");
  if (!st && b) st = need_f32(node, b, "B");
  if (st) return st;
  int64_t axis = node->attrs.axis;
  st = normalize_axis(node, &axis, x->rank);
  if (st) return st;
  if (axis != x->rank - 1) return fail(node, "only the last axis is supported", NULL);
  int64_t d = x->shape[x->rank - 1];
  if (s->rank != 1 || s->shape[0] != d || (b && (b->rank != 1 || b->shape[0] != d)))
    return fail(node, "Scale and B must be [D]", NULL);
  node->dtype = SW_DTYPE_F32;
  set_shape(node, x->rank, x->shape);
  return SW_STATUS_OK;
}

static sw_status infer_cast(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0);
  if (!x) return fail(node, "missing input", NULL);
  if (node->attrs.to != SW_DTYPE_F32 && node->attrs.to != SW_DTYPE_I64) return fail(node, "casts to f32 or i64 only", NULL);
  node->dtype = node->attrs.to;
  set_shape(node, x->rank, x->shape);
  return SW_STATUS_OK;
}

static sw_status infer_softmax_ce(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0), *y = sw__in(g, node, 1);
  sw_status st = need_f32(node, x, "logits");
  if (st) return st;
  if (x->rank != 2) return fail(node, "logits must be [N, C]", NULL);
  if (!y || y->dtype != SW_DTYPE_I64 || y->rank != 1 || y->shape[0] != x->shape[0])
    return fail(node, "labels must be int64 [N]", NULL);
  node->dtype = SW_DTYPE_F32;
  node->rank = 0;
  return SW_STATUS_OK;
}

static sw_status infer_pair_loss(sw_graph *g, sw__node *node) {
  sw__node *x = sw__in(g, node, 0), *y = sw__in(g, node, 1);
  sw_status st = need_f32(node, x, "predictions");
  if (!st) st = need_f32(node, y, "targets");
  if (st) return st;
  if (sw__elements(x->rank, x->shape) != sw__elements(y->rank, y->shape))
    return fail(node, "predictions and targets differ in size", NULL);
  node->dtype = SW_DTYPE_F32;
  node->rank = 0;
  return SW_STATUS_OK;
}

/* Working memory of the ops whose kernels keep something between passes. */
static size_t scratch_conv(const sw_graph *g, const sw__node *node) {
  /* per thread (cpu_conv.c): im2col columns and outputs of k images side by side, so
   * one sgemm covers them, and a dW partial. k is what keeps a thread's columns and
   * output within ~512 KB, the share of L2 that measured best on this machine's cores
   * (bench/conv_kernels: conv2 of the CNN, 276 KB an image, runs fastest one image at
   * a time, conv1, 128 KB, four at a time), and 8 at most. */
  const sw__node *x = &g->nodes[node->inputs[0]];
  int64_t c = x->shape[1], m = node->shape[1], n = node->shape[0];
  int64_t cols = node->rank == 4 ? node->shape[2] * node->shape[3] : node->shape[2];
  int64_t ckk = c * node->attrs.kernel[0] * node->attrs.kernel[1];
  int64_t threads = g->pool ? g->threads : 1;
  int64_t per = n >= threads ? (n + threads - 1) / threads : 1;
  int64_t k = (int64_t)(512 * 1024 / sizeof(float)) / ((ckk + m) * cols);
  if (k > 8) k = 8;
  if (k > per) k = per;
  if (k < 1) k = 1;
  int64_t slice = k * (ckk + m) * cols + m * ckk;
  /* Winograd (cpu_conv_wino.c): the cache of the transformed kernels, then one image's
   * transformed input */
  const sw_op_attrs *a = &node->attrs;
  if (node->rank == 4 && sw__conv_wino_fits(c, m, a->kernel[0], a->kernel[1], a->stride[0], a->stride[1],
                                            a->dilation[0], a->dilation[1])) {
    int64_t wino = sw__conv_wino_cache_floats(c, m) + sw__conv_wino_input_floats(c, node->shape[2], node->shape[3]);
    if (wino > slice) slice = wino;
  }
  return (size_t)(threads * slice) * sizeof(float);
}

static size_t scratch_max_pool(const sw_graph *g, const sw__node *node) {
  (void)g;
  return (size_t)sw__elements(node->rank, node->shape) * sizeof(int32_t); /* argmax */
}

static size_t scratch_dropout(const sw_graph *g, const sw__node *node) {
  (void)g;
  return (size_t)sw__elements(node->rank, node->shape); /* keep mask, one byte each */
}

static size_t scratch_batch_norm(const sw_graph *g, const sw__node *node) {
  (void)g;
  return (size_t)(2 * node->shape[1]) * sizeof(float); /* batch mean and inverse std */
}

static size_t scratch_layer_norm(const sw_graph *g, const sw__node *node) {
  (void)g;
  int64_t rows = sw__elements(node->rank - 1, node->shape);
  return (size_t)(2 * rows) * sizeof(float); /* mean and inverse std per row */
}

static size_t scratch_softmax_ce(const sw_graph *g, const sw__node *node) {
  const sw__node *x = &g->nodes[node->inputs[0]];
  return (size_t)sw__elements(x->rank, x->shape) * sizeof(float); /* probabilities */
}

static const sw__op_def op_defs[SW_OP_COUNT_] = {
    [SW_OP_INPUT] = {infer_leaf, NULL},
    [SW_OP_PARAM] = {infer_leaf, NULL},
    [SW_OP_CONST] = {infer_leaf, NULL},
    [SW_OP_MATMUL] = {infer_matmul, NULL},
    [SW_OP_GEMM] = {infer_gemm, NULL},
    [SW_OP_ADD] = {infer_binary, NULL},
    [SW_OP_SUB] = {infer_binary, NULL},
    [SW_OP_MUL] = {infer_binary, NULL},
    [SW_OP_DIV] = {infer_binary, NULL},
    [SW_OP_RELU] = {infer_unary, NULL},
    [SW_OP_SIGMOID] = {infer_unary, NULL},
    [SW_OP_TANH] = {infer_unary, NULL},
    [SW_OP_GELU] = {infer_unary, NULL},
    [SW_OP_SOFTMAX] = {infer_softmax, NULL},
    [SW_OP_LOG_SOFTMAX] = {infer_softmax, NULL},
    [SW_OP_CONV] = {infer_conv, scratch_conv},
    [SW_OP_MAX_POOL] = {infer_pool, scratch_max_pool},
    [SW_OP_AVERAGE_POOL] = {infer_pool, NULL},
    [SW_OP_GLOBAL_AVERAGE_POOL] = {infer_gap, NULL},
    [SW_OP_FLATTEN] = {infer_flatten, NULL},
    [SW_OP_RESHAPE] = {infer_reshape, NULL},
    [SW_OP_TRANSPOSE] = {infer_transpose, NULL},
    [SW_OP_CONCAT] = {infer_concat, NULL},
    [SW_OP_GATHER] = {infer_gather, NULL},
    [SW_OP_DROPOUT] = {infer_dropout, scratch_dropout},
    [SW_OP_BATCH_NORM] = {infer_batch_norm, scratch_batch_norm},
    [SW_OP_LAYER_NORM] = {infer_layer_norm, scratch_layer_norm},
    [SW_OP_CAST] = {infer_cast, NULL},
    [SW_OP_SOFTMAX_CROSS_ENTROPY] = {infer_softmax_ce,
                                     scratch_softmax_ce},
    [SW_OP_BCE_WITH_LOGITS] = {infer_pair_loss, NULL},
    [SW_OP_MSE] = {infer_pair_loss, NULL},
};

#define SW__OP_NAME(name, onnx, n) #name,
#define SW__OP_ONNX(name, onnx, n) onnx,
#define SW__OP_INPUTS(name, onnx, n) n,
static const char *const op_names[] = {SW_OP_MAP(SW__OP_NAME)};
static const char *const op_onnx[] = {SW_OP_MAP(SW__OP_ONNX)};
static const int op_inputs[] = {SW_OP_MAP(SW__OP_INPUTS)};

const sw__op_def *sw__op(sw_op_type op) { return (unsigned)op < SW_OP_COUNT_ ? &op_defs[op] : NULL; }

int sw__op_inputs(sw_op_type op) { return (unsigned)op < SW_OP_COUNT_ ? op_inputs[op] : 0; }

const char *sw_op_name(sw_op_type op) { return (unsigned)op < SW_OP_COUNT_ ? op_names[op] : "?"; }

const char *sw_op_onnx_type(sw_op_type op) { return (unsigned)op < SW_OP_COUNT_ ? op_onnx[op] : ""; }

void sw_op_attrs_default(sw_op_type op, sw_op_attrs *a) {
  memset(a, 0, sizeof *a);
  a->kernel[0] = a->kernel[1] = 1;
  a->stride[0] = a->stride[1] = 1;
  a->dilation[0] = a->dilation[1] = 1;
  a->alpha = a->beta = 1.0f;
  a->epsilon = 1e-5f;
  a->momentum = 0.9f;
  a->ratio = 0.5f;
  a->to = SW_DTYPE_F32;
  switch (op) {
    case SW_OP_SOFTMAX:
    case SW_OP_LOG_SOFTMAX:
    case SW_OP_LAYER_NORM: a->axis = -1; break;
    case SW_OP_CONCAT:
    case SW_OP_FLATTEN: a->axis = 1; break;
    default: a->axis = 0; break;
  }
}
