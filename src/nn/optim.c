/* Optimizer updates (SGD, Adam, AdamW), learning-rate schedules and global-norm gradient
 * clipping: the arithmetic the trainer applies to each parameter tensor after a backward
 * pass. Everything here is a pure function of its arguments; nothing allocates. */
#include <math.h>

#include "slipway/nn.h"

/* The updates reproduce torch.optim (1.13, the default single-tensor path) operation by
 * operation on float32 tensors, so a run can be checked against PyTorch number by number:
 *   - every hyper-parameter reaches an element-wise op as a float, as a Python scalar is
 *     cast to the tensor's dtype; the scalar arithmetic between them (1 - beta1, the bias
 *     corrections, lr / bias_correction1, 1 - lr * wd) is done in double as Python does;
 *   - torch's `a.add(b, alpha=s)` is a fused multiply-add in its CPU kernel
 *     (vec::fmadd(b, s, a)), and its AVX2 build contracts addcmul's a + s * b * c into
 *     fma(s * b, c, a), hence fmaf in both places; mul and addcdiv (a + s * b / c) are
 *     rounded op by op. Checked against torch 1.13 (AVX2): bit-identical parameters over
 *     100 steps of every optimizer, vector lengths 1 to 300.
 * fmaf is always rounded once, so results do not depend on whether the compiler
 * contracts other expressions (-march=native); the loops run in index order. */

/* x * y rounded to float on its own, as torch's mul_ kernel does before the next op:
 * this file is compiled with -ffp-contract=off (CMakeLists.txt), so the compiler never
 * fuses it into a following add, and the loops still vectorize. */
static inline float rounded_product(float x, float y) { return x * y; }

/* Built twice: with FMA (fmaf is one instruction and the loops vectorize) and without
 * (fmaf is glibc's exact software version); the two give the same bits. */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SW_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define SW_FMA_CLONES
#endif

SW_FMA_CLONES static void sgd_update(const sw_optim_config *c, float lr, int64_t t, float *restrict param,
                       const float *restrict grad, float *restrict m, size_t n) {
  const float wd = c->weight_decay;
  const float momentum = c->momentum;
  const float neg_lr = -lr;
  for (size_t i = 0; i < n; i++) {
    float d = grad[i];
    if (wd != 0.0f) d = fmaf(wd, param[i], d);
    if (momentum != 0.0f) {
      /* torch starts the buffer as a copy of the first gradient (no dampening). */
      if (t <= 1) {
        m[i] = d;
      } else {
        m[i] = rounded_product(m[i], momentum) + d;
      }
      d = c->nesterov ? fmaf(m[i], momentum, d) : m[i];
    }
    param[i] = fmaf(d, neg_lr, param[i]);
  }
}

/* Adam, and AdamW when decoupled: the weight decay then shrinks the parameter before the
 * step instead of entering the gradient. */
SW_FMA_CLONES static void adam_update(const sw_optim_config *c, float lr, int64_t t, float *restrict param,
                        const float *restrict grad, float *restrict m, float *restrict v, size_t n, bool decoupled) {
  const double b1 = c->beta1, b2 = c->beta2, step = (double)t;
  const float beta1 = c->beta1, beta2 = c->beta2, eps = c->eps, wd = c->weight_decay;
  const float one_minus_b1 = (float)(1.0 - b1);
  const float one_minus_b2 = (float)(1.0 - b2);
  const double bias_correction1 = 1.0 - pow(b1, step);
  const double bias_correction2 = 1.0 - pow(b2, step);
  const float neg_step_size = (float)(-((double)lr / bias_correction1));
  const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
  const float shrink = (float)(1.0 - (double)lr * (double)c->weight_decay);
  const bool l2 = !decoupled && wd != 0.0f;
  const bool shrink_param = decoupled && c->weight_decay != 0.0f;

  /* each condition hoisted out of the loops, so every loop is straight-line and vectorizes */
  if (shrink_param)
    for (size_t i = 0; i < n; i++) param[i] = rounded_product(param[i], shrink);
  if (l2) {
    for (size_t i = 0; i < n; i++) {
      float g = fmaf(wd, param[i], grad[i]);
      float mi = fmaf(g, one_minus_b1, m[i] * beta1);
      float vi = fmaf(one_minus_b2 * g, g, v[i] * beta2);
      param[i] = param[i] + (neg_step_size * mi) / (sqrtf(vi) / bias_correction2_sqrt + eps);
      m[i] = mi;
      v[i] = vi;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float g = grad[i];
      float mi = fmaf(g, one_minus_b1, m[i] * beta1);
      float vi = fmaf(one_minus_b2 * g, g, v[i] * beta2);
      param[i] = param[i] + (neg_step_size * mi) / (sqrtf(vi) / bias_correction2_sqrt + eps);
      m[i] = mi;
      v[i] = vi;
    }
  }
}

void sw_optim_update(const sw_optim_config *c, float lr, int64_t t, float *param, const float *grad,
                     float *m, float *v, size_t n) {
  SW_ASSERT(c != NULL && t >= 1);
  SW_ASSERT(n == 0 || (param != NULL && grad != NULL));
  switch (c->kind) {
  case SW_OPTIM_SGD:
    SW_ASSERT(n == 0 || c->momentum == 0.0f || m != NULL);
    sgd_update(c, lr, t, param, grad, m, n);
    break;
  case SW_OPTIM_ADAM:
  case SW_OPTIM_ADAMW:
    SW_ASSERT(n == 0 || (m != NULL && v != NULL));
    adam_update(c, lr, t, param, grad, m, v, n, c->kind == SW_OPTIM_ADAMW);
    break;
  default:
    SW_ASSERT(!"unknown optimizer kind");
  }
}

/* The schedule, with W = warmup_steps and s = step - W once the warm-up is over:
 *   step < W     base_lr * (step + 1) / W   (LambdaLR with lambda s: (s + 1) / W, so the
 *                first step already trains at base_lr / W and step W - 1 at base_lr)
 *   CONSTANT     base_lr
 *   STEP         base_lr * gamma ^ floor(s / step_size)          (StepLR; step_size >= 1)
 *   COSINE       min_lr + (base_lr - min_lr) * (1 + cos(pi * min(s, T) / T)) / 2,
 *                T = max(total_steps - W, 1)   (CosineAnnealingLR's closed form, held at
 *                min_lr after T instead of rising again)
 * Negative steps count as step 0. Computed in double, returned as float. */
float sw_lr_at(const sw_lr_schedule *s, int64_t step) {
  SW_ASSERT(s != NULL);
  const double base = s->base_lr;
  const int64_t warmup = s->warmup_steps > 0 ? s->warmup_steps : 0;
  if (step < 0) step = 0;
  const int64_t after = step - warmup;
  double lr = base;
  if (after < 0) {
    lr = base * (double)(step + 1) / (double)warmup;
    goto out;
  }
  switch (s->kind) {
  case SW_LR_CONSTANT:
    break;
  case SW_LR_STEP: {
    const int64_t size = s->step_size >= 1 ? s->step_size : 1;
    lr = base * pow((double)s->gamma, (double)(after / size));
    break;
  }
  case SW_LR_COSINE: {
    const int64_t span = s->total_steps - warmup;
    const int64_t T = span >= 1 ? span : 1;
    const double x = (double)(after < T ? after : T);
    const double min_lr = s->min_lr;
    lr = min_lr + (base - min_lr) * (1.0 + cos(M_PI * x / (double)T)) / 2.0;
    break;
  }
  default:
    SW_ASSERT(!"unknown schedule kind");
  }
out:
  return (float)lr;
}

/* torch.nn.utils.clip_grad_norm_ scales by min(1, max_norm / (norm + 1e-6)); we take
 * the norm more accurately (double, one sum across tensors) and skip the multiply
 * when the factor would be 1. A non-finite norm (an inf or NaN gradient) is returned
 * with the gradients untouched, so the caller sees it and can skip the step. */
double sw_clip_global_norm(float *const *grads, const size_t *sizes, size_t count, double max_norm) {
  SW_ASSERT(count == 0 || (grads != NULL && sizes != NULL));
  double sum = 0.0;
  for (size_t k = 0; k < count; k++) {
    const float *g = grads[k];
    for (size_t i = 0; i < sizes[k]; i++) sum += (double)g[i] * (double)g[i];
  }
  /* The products of floats are exact in double, so a contracted fma sums the same. */
  const double total = sqrt(sum);
  const double coef = max_norm / (total + 1e-6);
  if (isfinite(total) && coef < 1.0) {
    const float scale = (float)coef;
    for (size_t k = 0; k < count; k++) {
      float *g = grads[k];
      for (size_t i = 0; i < sizes[k]; i++) g[i] *= scale;
    }
  }
  return total;
}
