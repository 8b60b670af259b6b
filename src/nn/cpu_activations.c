/* CPU kernels of the activations: Sigmoid, Tanh, Gelu (exact, with erf), Softmax and
 * LogSoftmax over the last axis, and Dropout, whose mask is drawn from the
 * counter-based RNG so a training step can be replayed bit for bit. */
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"

#define IN(i) sw__in(g, node, (i))
#define F32(nd) ((float *)(nd)->data)

static int64_t elems(const sw__node *nd) { return sw__elements(nd->rank, nd->shape); }

/* ---- Sigmoid, Tanh, Gelu ---------------------------------------------------------------- */

sw_status sw__cpu_fwd_SIGMOID(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0));
  float *y = F32(node);
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) {
    /* e^-|x| never overflows, so both signs stay finite and exact at the tails */
    float e = expf(-fabsf(x[i]));
    y[i] = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_SIGMOID(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  const float *y = F32(node), *dy = node->grad;
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) x->grad[i] += dy[i] * y[i] * (1.0f - y[i]);
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_TANH(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0));
  float *y = F32(node);
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_TANH(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  const float *y = F32(node), *dy = node->grad;
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) x->grad[i] += dy[i] * (1.0f - y[i] * y[i]);
  return SW_STATUS_OK;
}

#define SW__SQRT1_2 0.70710678118654752440f
#define SW__INV_SQRT_2PI 0.39894228040143267794f

/* ONNX Gelu with approximate = "none" (PyTorch's default): x * Phi(x). */
sw_status sw__cpu_fwd_GELU(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0));
  float *y = F32(node);
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * SW__SQRT1_2));
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_GELU(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0);
  if (!xn->grad) return SW_STATUS_OK;
  const float *x = F32(xn), *dy = node->grad;
  int64_t n = elems(node);
  for (int64_t i = 0; i < n; i++) {
    float cdf = 0.5f * (1.0f + erff(x[i] * SW__SQRT1_2));
    float pdf = SW__INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
    xn->grad[i] += dy[i] * (cdf + x[i] * pdf);
  }
  return SW_STATUS_OK;
}

/* ---- Softmax, LogSoftmax (last axis; ops.c rejects any other) ------------------------------ */

/* Rows and columns of the last-axis view; counted without dividing, so an empty
 * last dimension is no division by zero. */
static void rows_cols(const sw__node *nd, int64_t *rows, int64_t *cols) {
  *rows = sw__elements(nd->rank - 1, nd->shape);
  *cols = nd->shape[nd->rank - 1];
}

/* Writes softmax (log_out false) or log-softmax of each row, shifted by the row's
 * maximum so no exponential overflows; the normalizer is summed in double. */
static sw_status softmax_forward(sw_graph *g, sw__node *node, bool log_out) {
  const float *x = F32(IN(0));
  float *y = F32(node);
  int64_t rows, cols;
  rows_cols(node, &rows, &cols);
  if (cols == 0) return SW_STATUS_OK;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float mx = xr[0];
    for (int64_t j = 1; j < cols; j++) mx = xr[j] > mx ? xr[j] : mx;
    double sum = 0;
    if (log_out) {
      for (int64_t j = 0; j < cols; j++) sum += expf(xr[j] - mx);
      float lse = (float)log(sum);
      for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mx) - lse;
    } else {
      for (int64_t j = 0; j < cols; j++) {
        yr[j] = expf(xr[j] - mx);
        sum += yr[j];
      }
      float inv = (float)(1.0 / sum);
      for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
    }
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_fwd_SOFTMAX(sw_graph *g, sw__node *node) { return softmax_forward(g, node, false); }
sw_status sw__cpu_fwd_LOG_SOFTMAX(sw_graph *g, sw__node *node) { return softmax_forward(g, node, true); }

/* Both from the saved output y:
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log-softmax: dx = dy - exp(y) * sum(dy) */
static sw_status softmax_backward(sw_graph *g, sw__node *node, bool log_out) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  const float *y = F32(node), *dy = node->grad;
  int64_t rows, cols;
  rows_cols(node, &rows, &cols);
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = y + r * cols, *dyr = dy + r * cols;
    float *dxr = x->grad + r * cols;
    double dot = 0;
    if (log_out) {
      for (int64_t j = 0; j < cols; j++) dot += dyr[j];
      float s = (float)dot;
      for (int64_t j = 0; j < cols; j++) dxr[j] += dyr[j] - expf(yr[j]) * s;
    } else {
      for (int64_t j = 0; j < cols; j++) dot += (double)dyr[j] * yr[j];
      float s = (float)dot;
      for (int64_t j = 0; j < cols; j++) dxr[j] += yr[j] * (dyr[j] - s);
    }
  }
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_SOFTMAX(sw_graph *g, sw__node *node) { return softmax_backward(g, node, false); }
sw_status sw__cpu_bwd_LOG_SOFTMAX(sw_graph *g, sw__node *node) { return softmax_backward(g, node, true); }

/* ---- Dropout ------------------------------------------------------------------------------ */

/* The keep mask of one training step. Element i keeps its value when the i-th 32-bit
 * draw of sw_rng_init(seed, (node index << 40) ^ step) is at least ratio * 2^32, so
 * the mask is a pure function of (seed, step, node, element) and a resumed run draws
 * the same masks. The draws are taken four per Philox block, exactly the sequence
 * sw_rng_u32 would return one by one, without computing each block four times. */
static void dropout_mask(const sw_graph *g, const sw__node *node, float ratio, uint8_t *mask, int64_t n) {
  uint64_t index = (uint64_t)(node - g->nodes);
  sw_rng r;
  sw_rng_init(&r, g->seed, (index << 40) ^ (uint64_t)g->step);
  /* ratio 1 gives 2^32: no draw reaches it, everything is dropped */
  uint64_t threshold = (uint64_t)ldexp((double)ratio, 32);
  uint32_t key[2] = {(uint32_t)r.seed, (uint32_t)(r.seed >> 32)};
  for (int64_t i = 0; i < n; i += 4) {
    uint64_t block = (uint64_t)i >> 2;
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)r.stream, (uint32_t)(r.stream >> 32)};
    uint32_t out[4];
    sw_philox4x32(ctr, key, out);
    int64_t m = n - i < 4 ? n - i : 4;
    for (int64_t k = 0; k < m; k++) mask[i + k] = (uint64_t)out[k] >= threshold;
  }
}

sw_status sw__cpu_fwd_DROPOUT(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0));
  float *y = F32(node);
  int64_t n = elems(node);
  float ratio = node->attrs.ratio;
  if (!(ratio >= 0.0f && ratio <= 1.0f))
    return sw_error(SW_STATUS_INVALID, "dropout ratio %g is outside [0, 1]", (double)ratio);
  if (!g->training || ratio == 0.0f) {
    memcpy(y, x, (size_t)n * sizeof *y);
    return SW_STATUS_OK;
  }
  uint8_t *mask = node->scratch;
  dropout_mask(g, node, ratio, mask, n);
  float scale = ratio < 1.0f ? 1.0f / (1.0f - ratio) : 0.0f;
  for (int64_t i = 0; i < n; i++) y[i] = mask[i] ? x[i] * scale : 0.0f;
  return SW_STATUS_OK;
}

sw_status sw__cpu_bwd_DROPOUT(sw_graph *g, sw__node *node) {
  sw__node *x = IN(0);
  if (!x->grad) return SW_STATUS_OK;
  const float *dy = node->grad;
  int64_t n = elems(node);
  float ratio = node->attrs.ratio;
  if (!g->training || ratio == 0.0f) {
    for (int64_t i = 0; i < n; i++) x->grad[i] += dy[i];
    return SW_STATUS_OK;
  }
  const uint8_t *mask = node->scratch;
  float scale = ratio < 1.0f ? 1.0f / (1.0f - ratio) : 0.0f;
  for (int64_t i = 0; i < n; i++) x->grad[i] += mask[i] ? dy[i] * scale : 0.0f;
  return SW_STATUS_OK;
}
