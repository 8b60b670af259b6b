/* CPU kernels of the ops that move values: Transpose and Concat (any dtype: they copy
 * elements of 1, 4 or 8 bytes), Gather on axis 0 (an embedding lookup, whose gradient
 * touches only the rows looked up) and GlobalAveragePool. */
#include <string.h>

#include "nn/nn_int.h"

#define IN(i) sw__in(g, node, (i))
#define F32(nd) ((float *)(nd)->data)

static int64_t elems(const sw__node *nd) { return sw__elements(nd->rank, nd->shape); }

/* ---- Transpose ------------------------------------------------------------------------- */

/* Both directions write their destination in order and read the source with strides:
 * forward reads x in the output's dimension order, backward reads dy in x's, so the
 * gradient is gathered too, never scattered (strided read-modify-writes are several
 * times slower). */

/* Contiguous strides of a shape. */
static void contiguous_strides(int rank, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d];
  }
}

/* dst (shape `shape`, in order) OP= src at offset sum idx[d] * src_stride[d]: the
 * innermost dimension as a strided run, the outer ones as an odometer. */
#define STRIDED_WALK(OP)                                                               \
  do {                                                                                 \
    int64_t idx[SW_NN_MAX_RANK] = {0}, off = 0, total = sw__elements(rank, shape);      \
    int64_t inner = shape[rank - 1], step = src_stride[rank - 1];                      \
    for (int64_t o = 0; o < total; o += inner) {                                       \
      for (int64_t j = 0; j < inner; j++) dst[o + j] OP src[off + j * step];          \
      for (int d = rank - 2; d >= 0; d--) {                                            \
        off += src_stride[d];                                                          \
        if (++idx[d] < shape[d]) break;                                                \
        off -= src_stride[d] * shape[d];                                               \
        idx[d] = 0;                                                                    \
      }                                                                                \
    }                                                                                  \
  } while (0)

#define TRANSPOSE_COPY(T)                                                                 \
  do {                                                                                 \
    const T *src = (const T *)x->data;                                                 \
    T *dst = (T *)node->data;                                                          \
    STRIDED_WALK(=);                                                                   \
  } while (0)

sw_status sw__cpu_fwd_TRANSPOSE(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  int rank = node->rank;
  const int64_t *shape = node->shape;
  if (rank == 0 || elems(node) == 0) {
    memcpy(node->data, x->data, (size_t)elems(node) * sw_dtype_size(node->dtype));
    return SW_STATUS_OK;
  }
  int64_t in_stride[SW_NN_MAX_RANK], src_stride[SW_NN_MAX_RANK];
  contiguous_strides(x->rank, x->shape, in_stride);
  for (int d = 0; d < rank; d++) src_stride[d] = in_stride[node->attrs.perm[d]];
  switch (sw_dtype_size(node->dtype)) {
    case 1: TRANSPOSE_COPY(uint8_t); break;
    case 4: TRANSPOSE_COPY(uint32_t); break;
    case 8: TRANSPOSE_COPY(uint64_t); break;
    default: return sw_error(SW_STATUS_UNSUPPORTED, "transpose of %zu-byte elements", sw_dtype_size(node->dtype));
  }
  return SW_STATUS_OK;
}

/* dx = transpose of dy by the inverse permutation: x's axis perm[d] is dy's axis d. */
sw_status sw__cpu_bwd_TRANSPOSE(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  int rank = x->rank;
  const int64_t *shape = x->shape;
  const float *src = node->grad;
  float *dst = x->grad;
  if (rank == 0) {
    dst[0] += src[0];
    return SW_STATUS_OK;
  }
  if (elems(x) == 0) return SW_STATUS_OK;
  int64_t out_stride[SW_NN_MAX_RANK], src_stride[SW_NN_MAX_RANK];
  contiguous_strides(node->rank, node->shape, out_stride);
  for (int d = 0; d < rank; d++) src_stride[node->attrs.perm[d]] = out_stride[d];
  STRIDED_WALK(+=);
  return SW_STATUS_OK;
}

/* ---- Concat ---------------------------------------------------------------------------- */

/* The output is `outer` blocks (the dimensions before the axis); block o is the
 * inputs' blocks o one after the other, input i's being shape_i[axis] * inner long. */
static int64_t concat_axis(const sw__node *node) {
  int64_t axis = node->attrs.axis;
  return axis < 0 ? axis + node->rank : axis;
}

sw_status sw__cpu_fwd_CONCAT(sw_graph *g, sw__node *node) {
  int64_t axis = concat_axis(node);
  size_t esize = sw_dtype_size(node->dtype);
  int64_t outer = sw__elements((int)axis, node->shape);
  int64_t inner = sw__elements(node->rank - (int)axis - 1, node->shape + axis + 1);
  int64_t out_block = node->shape[axis] * inner;
  uint8_t *y = node->data;
  for (int64_t o = 0; o < outer; o++) {
    uint8_t *dst = y + (size_t)(o * out_block) * esize;
    for (int i = 0; i < node->n_inputs; i++) {
      const sw__node *x = IN(i);
      size_t block = (size_t)(x->shape[axis] * inner) * esize;
      memcpy(dst, (const uint8_t *)x->data + (size_t)o * block, block);
      dst += block;
    }
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_CONCAT(sw_graph *g, sw__node *node) {
  int64_t axis = concat_axis(node);
  int64_t outer = sw__elements((int)axis, node->shape);
  int64_t inner = sw__elements(node->rank - (int)axis - 1, node->shape + axis + 1);
  int64_t out_block = node->shape[axis] * inner;
  for (int64_t o = 0; o < outer; o++) {
    const float *dy = node->grad + o * out_block;
    for (int i = 0; i < node->n_inputs; i++) {
      sw__node *x = IN(i);
      int64_t block = x->shape[axis] * inner;
      if (x->grad) {
        float *dx = x->grad + o * block;
        for (int64_t j = 0; j < block; j++) dx[j] += dy[j];
      }
      dy += block;
    }
  }
  return SW_STATUS_OK;
}

/* ---- Gather (axis 0) -------------------------------------------------------------------- */

/* Row of the table an index selects; negative indices count from the end, as ONNX
 * defines. An index outside [-rows, rows) is the caller's bad input, never a read or a
 * write out of bounds. */
static sw_status gather_row(int64_t index, int64_t position, int64_t rows, int64_t *row) {
  int64_t k = index < 0 ? index + rows : index;
  if (k < 0 || k >= rows)
    return sw_error(SW_STATUS_INVALID, "index %lld (at position %lld) is outside the table of %lld rows",
                    (long long)index, (long long)position, (long long)rows);
  *row = k;
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_GATHER(sw_graph *g, sw__node *node) {
  sw__node *data = IN(0), *idx = IN(1);
  const int64_t *indices = idx->data;
  int64_t n = elems(idx), rows = data->shape[0];
  int64_t width = sw__elements(data->rank - 1, data->shape + 1);
  const float *table = F32(data);
  float *y = F32(node);
  for (int64_t i = 0; i < n; i++) {
    int64_t k = 0;
    sw_status st = gather_row(indices[i], i, rows, &k);
    if (st) return st;
    memcpy(y + i * width, table + k * width, (size_t)width * sizeof *y);
  }
  return SW_STATUS_OK;
}

/* The sparse gradient: each looked-up row of the table's gradient gets its rows of dy
 * added, in index order; rows nobody looked up are not touched. The indices are
 * checked again, since this writes. */
sw_status sw__cpu_bwd_GATHER(sw_graph *g, sw__node *node) {
  sw__node *data = IN(0), *idx = IN(1);
  if (!data->grad) return SW_STATUS_OK;
  const int64_t *indices = idx->data;
  int64_t n = elems(idx), rows = data->shape[0];
  int64_t width = sw__elements(data->rank - 1, data->shape + 1);
  const float *dy = node->grad;
  for (int64_t i = 0; i < n; i++) {
    int64_t k = 0;
    sw_status st = gather_row(indices[i], i, rows, &k);
    if (st) return st;
    float *dst = data->grad + k * width;
    const float *src = dy + i * width;
    for (int64_t j = 0; j < width; j++) dst[j] += src[j];
  }
  return SW_STATUS_OK;
}

/* ---- GlobalAveragePool ---------------------------------------------------------------------- */

sw_status sw__cpu_fwd_GLOBAL_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  int64_t planes = x->shape[0] * x->shape[1], spatial = sw__elements(x->rank - 2, x->shape + 2);
  const float *xv = F32(x);
  float *y = F32(node);
  for (int64_t p = 0; p < planes; p++) {
    const float *xp = xv + p * spatial;
    double sum = 0;
    for (int64_t s = 0; s < spatial; s++) sum += xp[s];
    y[p] = spatial ? (float)(sum / (double)spatial) : 0.0f;
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_GLOBAL_AVERAGE_POOL(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  int64_t planes = x->shape[0] * x->shape[1], spatial = sw__elements(x->rank - 2, x->shape + 2);
  if (spatial == 0) return SW_STATUS_OK;
  float inv = 1.0f / (float)spatial;
  for (int64_t p = 0; p < planes; p++) {
    float d = node->grad[p] * inv;
    float *dx = x->grad + p * spatial;
    for (int64_t s = 0; s < spatial; s++) dx[s] += d;
  }
  return SW_STATUS_OK;
}
