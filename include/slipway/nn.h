/* slipway model engine: tensors, the graph (one op per ONNX operator), its backends,
 * losses and metric math, optimizers, weight initialization and safetensors. Stands on
 * base alone: nn knows tensors, not files of data. */
#ifndef SLIPWAY_NN_H
#define SLIPWAY_NN_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SW_NN_MAX_RANK 6

/* ---- optimizers, schedules, clipping (optim.c) ------------------------------ */

typedef enum { SW_OPTIM_SGD, SW_OPTIM_ADAM, SW_OPTIM_ADAMW } sw_optim_kind;

typedef struct {
  sw_optim_kind kind;
  float momentum;     /* SGD; 0 = plain SGD */
  bool nesterov;      /* SGD with momentum */
  float beta1, beta2; /* Adam/AdamW (0.9, 0.999) */
  float eps;          /* Adam/AdamW (1e-8) */
  float weight_decay; /* SGD and Adam: L2 added to the gradient; AdamW: decoupled */
} sw_optim_config;

/* One update of n parameters, exactly as torch.optim does it (SGD, Adam, AdamW with
 * bias correction; t is the 1-based step number). m and v are the optimizer's moments
 * for these parameters (v unused by SGD; m unused by plain SGD), zero at t = 1.
 * The loop runs in index order, so results are reproducible bit for bit. */
void sw_optim_update(const sw_optim_config *c, float lr, int64_t t, float *param, const float *grad,
                     float *m, float *v, size_t n);

typedef enum { SW_LR_CONSTANT, SW_LR_STEP, SW_LR_COSINE } sw_lr_kind;

typedef struct {
  sw_lr_kind kind;
  float base_lr;
  int64_t warmup_steps; /* linear warm-up from 0 to base_lr over these steps (0: none) */
  int64_t step_size;    /* STEP: multiply by gamma every step_size steps */
  float gamma;
  int64_t total_steps;  /* COSINE: from base_lr down to min_lr at total_steps */
  float min_lr;
} sw_lr_schedule;

/* Learning rate for 0-based step `step` (a pure function: the schedule's state is the
 * step alone). Warm-up comes first; the decay counts from the end of the warm-up. */
float sw_lr_at(const sw_lr_schedule *s, int64_t step);

/* Scales the gradients so their global L2 norm is at most max_norm (like
 * torch.nn.utils.clip_grad_norm_); returns the norm before clipping. The sum of
 * squares is taken in a fixed order (tensor by tensor, in double). */
double sw_clip_global_norm(float *const *grads, const size_t *sizes, size_t count, double max_norm);

/* ---- weight initialization (init.c) ------------------------------------------ */

typedef enum {
  SW_INIT_ZEROS,
  SW_INIT_ONES,
  SW_INIT_GLOROT_UNIFORM, /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
  SW_INIT_GLOROT_NORMAL,  /* N(0, 2 / (fan_in + fan_out)) */
  SW_INIT_HE_UNIFORM,     /* U(-a, a), a = sqrt(6 / fan_in) */
  SW_INIT_HE_NORMAL,      /* N(0, 2 / fan_in) */
  SW_INIT_UNIFORM         /* U(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for biases */
} sw_init_kind;

/* Fills n values from the counter-based RNG: the values depend only on r's state. */
void sw_init_fill(sw_rng *r, sw_init_kind kind, float *w, size_t n, int64_t fan_in, int64_t fan_out);
sw_status sw_init_kind_from_name(const char *name, sw_init_kind *out);

/* ---- metric math (metrics.c) ------------------------------------------------- */

/* Classification counts; the caller owns `confusion` (k*k, row = true class, column =
 * predicted class), zeroed before the first sw_metrics_add_classes. */
typedef struct {
  int64_t k;          /* classes */
  int64_t n;          /* examples seen */
  int64_t *confusion; /* k*k */
  double log_loss_sum;
} sw_class_metrics;

/* Adds a batch: probs is n*k row-major probabilities (softmax outputs), labels n ints
 * in [0, k) (out of range: INVALID). The log-loss clips probabilities to [1e-15, 1]. */
sw_status sw_metrics_add_classes(sw_class_metrics *m, const float *probs, const int64_t *labels, int64_t n);
double sw_metrics_accuracy(const sw_class_metrics *m);
double sw_metrics_log_loss(const sw_class_metrics *m);
/* Precision and recall of class c (0 when undefined: no predictions / no examples). */
double sw_metrics_precision(const sw_class_metrics *m, int64_t c);
double sw_metrics_recall(const sw_class_metrics *m, int64_t c);
int64_t sw_metrics_support(const sw_class_metrics *m, int64_t c);

/* Area under the ROC curve of scores for binary labels (0/1), with ties counted half
 * (Mann-Whitney U). Returns NAN when only one class is present. Sorts a copy. */
double sw_metrics_auc(const float *scores, const int64_t *labels, size_t n);
/* Regression. */
double sw_metrics_rmse(const float *pred, const float *target, size_t n);
double sw_metrics_mae(const float *pred, const float *target, size_t n);

/* ---- safetensors (safetensors.c) ---------------------------------------------- */

/* The safetensors format (Hugging Face):
 *   offset  size  field
 *   0       8     N, the header's length (u64 little-endian)
 *   8       N     JSON header: {"NAME": {"dtype": "F32"|"I64"|"U8", "shape": [...],
 *                 "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
 *                 padded with spaces to a multiple of 8
 *   8+N     ...   tensor data, little-endian, C order, at the offsets (from 8+N)
 */
typedef struct {
  const char *name;
  sw_dtype dtype;
  int rank;
  int64_t shape[SW_NN_MAX_RANK];
  const void *data; /* writing: the caller's; reading: points into the file's buffer */
} sw_named_tensor;

/* Writes tensors (names sorted in the header, data in the given order, so the same
 * tensors give the same bytes) and string metadata (may be NULL) atomically. */
sw_status sw_safetensors_write(const char *path, const sw_named_tensor *tensors, size_t n,
                               const json_t *metadata);
typedef struct sw_safetensors sw_safetensors;
/* Reads and checks a whole file: header JSON, dtypes, shapes against sizes, offsets
 * within the data, in order and without overlap. FORMAT/TRUNCATED with the reason. */
sw_status sw_safetensors_open(const char *path, sw_safetensors **out);
sw_status sw_safetensors_parse(const uint8_t *data, size_t len, sw_safetensors **out); /* copies */
size_t sw_safetensors_count(const sw_safetensors *st);
const sw_named_tensor *sw_safetensors_get(const sw_safetensors *st, size_t i);
const sw_named_tensor *sw_safetensors_find(const sw_safetensors *st, const char *name);
const json_t *sw_safetensors_metadata(const sw_safetensors *st);
void sw_safetensors_close(sw_safetensors *st);

#ifdef __cplusplus
}
#endif
#endif
