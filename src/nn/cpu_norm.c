/* CPU kernels of the normalizations: BatchNormalization (batch statistics and running
 * averages in training, the running averages in inference) and LayerNormalization over
 * the last axis. Both keep the mean and inverse standard deviation they normalized
 * with in the node's scratch for the backward pass. Sums are taken in double, in a
 * fixed order, so results do not depend on anything but the inputs. */
#include <math.h>

#include "nn/nn_int.h"

#define IN(i) sw__in(g, node, (i))
#define F32(nd) ((float *)(nd)->data)

/* ---- BatchNormalization --------------------------------------------------------------- */

/* X is [N, C, spatial...]: channel c of example n is the run of `spatial` values at
 * (n * C + c) * spatial. */
typedef struct {
  int64_t n, c, spatial;
} bn_dims;

static bn_dims bn_dims_of(const sw__node *node) {
  bn_dims d = {node->shape[0], node->shape[1], sw__elements(node->rank - 2, node->shape + 2)};
  return d;
}

/* Scratch: mean[C] then inverse std[C], those the forward pass normalized with. */
sw_status sw__cpu_fwd_BATCH_NORM(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0)), *scale = F32(IN(1)), *bias = F32(IN(2));
  float *running_mean = F32(IN(3)), *running_var = F32(IN(4));
  float *y = F32(node);
  float *mean = node->scratch, *inv_std = mean + node->shape[1];
  bn_dims d = bn_dims_of(node);
  int64_t count = d.n * d.spatial; /* values per channel */
  float eps = node->attrs.epsilon, momentum = node->attrs.momentum;
  if (g->training && count == 1) /* no batch variance: PyTorch refuses it too */
    return sw_error(SW_STATUS_INVALID, "batch norm in training needs more than one value per channel, got %lld x %lld",
                    (long long)d.n, (long long)d.c);
  for (int64_t c = 0; c < d.c; c++) {
    double mu, var;
    if (g->training) {
      if (count == 0) continue;
      double sum = 0;
      for (int64_t n = 0; n < d.n; n++) {
        const float *xc = x + (n * d.c + c) * d.spatial;
        for (int64_t s = 0; s < d.spatial; s++) sum += xc[s];
      }
      mu = sum / (double)count;
      double sq = 0; /* two passes: no cancellation when the mean is large */
      for (int64_t n = 0; n < d.n; n++) {
        const float *xc = x + (n * d.c + c) * d.spatial;
        for (int64_t s = 0; s < d.spatial; s++) sq += ((double)xc[s] - mu) * ((double)xc[s] - mu);
      }
      var = sq / (double)count;
      /* PyTorch's running variance is the unbiased one */
      double unbiased = sq / (double)(count - 1);
      running_mean[c] = (float)((double)running_mean[c] * momentum + mu * (1.0 - (double)momentum));
      running_var[c] = (float)((double)running_var[c] * momentum + unbiased * (1.0 - (double)momentum));
    } else {
      mu = running_mean[c];
      var = running_var[c];
    }
    float inv = (float)(1.0 / sqrt(var + (double)eps));
    mean[c] = (float)mu;
    inv_std[c] = inv;
    /* x - mean in double: a float mean far from 0 would cost the centred value digits */
    float k = scale[c] * inv, b = bias[c];
    for (int64_t n = 0; n < d.n; n++) {
      const float *xc = x + (n * d.c + c) * d.spatial;
      float *yc = y + (n * d.c + c) * d.spatial;
      for (int64_t s = 0; s < d.spatial; s++) yc[s] = (float)((double)xc[s] - mu) * k + b;
    }
  }
  return SW_STATUS_OK;
}

/* With xhat = (x - mean) * inv_std, per channel:
 *   dB = sum dy, dscale = sum dy * xhat
 *   training:  dx = scale * inv_std / m * (m dy - dB - xhat dscale)  (the batch
 *              statistics depend on x; the running ones get no gradient)
 *   inference: dx = scale * inv_std * dy, and the running mean and variance, when
 *              they have gradients, get -scale inv_std dB and -scale inv_std^2 dscale / 2 */
sw_status sw__cpu_bwd_BATCH_NORM(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0), *sn = IN(1), *bn = IN(2), *mn = IN(3), *vn = IN(4);
  const float *x = F32(xn), *scale = F32(sn), *dy = node->grad;
  const float *mean = node->scratch, *inv_std = mean + node->shape[1];
  bn_dims d = bn_dims_of(node);
  int64_t count = d.n * d.spatial;
  if (count == 0) return SW_STATUS_OK;
  for (int64_t c = 0; c < d.c; c++) {
    float m = mean[c], inv = inv_std[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t n = 0; n < d.n; n++) {
      const float *xc = x + (n * d.c + c) * d.spatial, *dyc = dy + (n * d.c + c) * d.spatial;
      for (int64_t s = 0; s < d.spatial; s++) {
        sum_dy += dyc[s];
        sum_dy_xhat += (double)dyc[s] * ((xc[s] - m) * inv);
      }
    }
    if (bn->grad) bn->grad[c] += (float)sum_dy;
    if (sn->grad) sn->grad[c] += (float)sum_dy_xhat;
    if (!g->training) {
      if (mn->grad) mn->grad[c] += (float)(-(double)scale[c] * inv * sum_dy);
      if (vn->grad) vn->grad[c] += (float)(-0.5 * scale[c] * inv * inv * sum_dy_xhat);
    }
    if (!xn->grad) continue;
    float k = scale[c] * inv;
    float mean_dy = (float)(sum_dy / (double)count), mean_dy_xhat = (float)(sum_dy_xhat / (double)count);
    for (int64_t n = 0; n < d.n; n++) {
      const float *xc = x + (n * d.c + c) * d.spatial, *dyc = dy + (n * d.c + c) * d.spatial;
      float *dxc = xn->grad + (n * d.c + c) * d.spatial;
      if (g->training)
        for (int64_t s = 0; s < d.spatial; s++) dxc[s] += k * (dyc[s] - mean_dy - (xc[s] - m) * inv * mean_dy_xhat);
      else
        for (int64_t s = 0; s < d.spatial; s++) dxc[s] += k * dyc[s];
    }
  }
  return SW_STATUS_OK;
}

/* ---- LayerNormalization (last axis; ops.c rejects any other) ---------------------------- */

/* Scratch: mean[rows] then inverse std[rows]. */
sw_status sw__cpu_fwd_LAYER_NORM(sw_graph *g, sw__node *node) {
  const float *x = F32(IN(0)), *scale = F32(IN(1));
  const float *bias = IN(2) ? F32(IN(2)) : NULL;
  float *y = F32(node);
  int64_t rows = sw__elements(node->rank - 1, node->shape), cols = node->shape[node->rank - 1];
  float *mean = node->scratch, *inv_std = mean + rows;
  if (cols == 0) return SW_STATUS_OK;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    double sum = 0;
    for (int64_t j = 0; j < cols; j++) sum += xr[j];
    double mu = sum / (double)cols, sq = 0;
    for (int64_t j = 0; j < cols; j++) sq += ((double)xr[j] - mu) * ((double)xr[j] - mu);
    float m = (float)mu, inv = (float)(1.0 / sqrt(sq / (double)cols + (double)node->attrs.epsilon));
    mean[r] = m;
    inv_std[r] = inv;
    /* x - mean in double, as in batch norm */
    if (bias)
      for (int64_t j = 0; j < cols; j++) yr[j] = (float)((double)xr[j] - mu) * inv * scale[j] + bias[j];
    else
      for (int64_t j = 0; j < cols; j++) yr[j] = (float)((double)xr[j] - mu) * inv * scale[j];
  }
  return SW_STATUS_OK;
}

/* Per row, with xhat = (x - mean) * inv_std and g = dy * scale:
 *   dx = inv_std * (g - mean(g) - xhat * mean(g * xhat));
 * dscale and dB sum dy * xhat and dy over the rows, in row order. */
sw_status sw__cpu_bwd_LAYER_NORM(sw_graph *g, sw__node *node) {
  sw__node *xn = IN(0), *sn = IN(1), *bn = IN(2);
  const float *x = F32(xn), *scale = F32(sn), *dy = node->grad;
  int64_t rows = sw__elements(node->rank - 1, node->shape), cols = node->shape[node->rank - 1];
  const float *mean = node->scratch, *inv_std = mean + rows;
  if (cols == 0) return SW_STATUS_OK;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols, *dyr = dy + r * cols;
    float m = mean[r], inv = inv_std[r];
    if (sn->grad)
      for (int64_t j = 0; j < cols; j++) sn->grad[j] += dyr[j] * ((xr[j] - m) * inv);
    if (bn && bn->grad)
      for (int64_t j = 0; j < cols; j++) bn->grad[j] += dyr[j];
    if (!xn->grad) continue;
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t j = 0; j < cols; j++) {
      double gj = (double)dyr[j] * scale[j];
      sum_g += gj;
      sum_g_xhat += gj * ((xr[j] - m) * inv);
    }
    float mean_g = (float)(sum_g / (double)cols), mean_g_xhat = (float)(sum_g_xhat / (double)cols);
    float *dxr = xn->grad + r * cols;
    for (int64_t j = 0; j < cols; j++)
      dxr[j] += inv * (dyr[j] * scale[j] - mean_g - (xr[j] - m) * inv * mean_g_xhat);
  }
  return SW_STATUS_OK;
}
