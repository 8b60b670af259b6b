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

/* ---- the graph ------------------------------------------------------------------ */

/* Every op maps one to one onto an ONNX operator (its op_type is the second column),
 * so export and import are a walk over the nodes. The losses at the end have no ONNX
 * inference form and are never exported. X(NAME, "OnnxOpType", inputs) */
#define SW_OP_MAP(X)                                         \
  X(INPUT, "", 0)                                            \
  X(PARAM, "", 0)                                            \
  X(CONST, "Constant", 0)                                    \
  X(MATMUL, "MatMul", 2)                                     \
  X(GEMM, "Gemm", 3)                                         \
  X(ADD, "Add", 2)                                           \
  X(SUB, "Sub", 2)                                           \
  X(MUL, "Mul", 2)                                           \
  X(DIV, "Div", 2)                                           \
  X(RELU, "Relu", 1)                                         \
  X(SIGMOID, "Sigmoid", 1)                                   \
  X(TANH, "Tanh", 1)                                         \
  X(GELU, "Gelu", 1)                                         \
  X(SOFTMAX, "Softmax", 1)                                   \
  X(LOG_SOFTMAX, "LogSoftmax", 1)                            \
  X(CONV, "Conv", 3)                                         \
  X(MAX_POOL, "MaxPool", 1)                                  \
  X(AVERAGE_POOL, "AveragePool", 1)                          \
  X(GLOBAL_AVERAGE_POOL, "GlobalAveragePool", 1)             \
  X(FLATTEN, "Flatten", 1)                                   \
  X(RESHAPE, "Reshape", 1)                                   \
  X(TRANSPOSE, "Transpose", 1)                               \
  X(CONCAT, "Concat", -1)                                    \
  X(GATHER, "Gather", 2)                                     \
  X(DROPOUT, "Dropout", 1)                                   \
  X(BATCH_NORM, "BatchNormalization", 5)                     \
  X(LAYER_NORM, "LayerNormalization", 3)                     \
  X(CAST, "Cast", 1)                                         \
  X(SOFTMAX_CROSS_ENTROPY, "SoftmaxCrossEntropyLoss", 2)     \
  X(BCE_WITH_LOGITS, "", 2)                                  \
  X(MSE, "", 2)

typedef enum {
#define SW__OP_ENUM(name, onnx, n) SW_OP_##name,
  SW_OP_MAP(SW__OP_ENUM)
#undef SW__OP_ENUM
  SW_OP_COUNT_
} sw_op_type;

const char *sw_op_name(sw_op_type op);      /* "RELU" */
const char *sw_op_onnx_type(sw_op_type op); /* "Relu"; "" for inputs, params, custom losses */

/* Attributes, by op (ONNX's names and defaults; unused fields are ignored):
 *   CONV, MAX_POOL, AVERAGE_POOL: kernel (pools; Conv takes it from the weight), stride
 *     (1), pad as ONNX pads (top, left, bottom, right; 0), dilation (1); inputs are NCHW
 *     (rank 3 NCW is the 1-D case: kernel[0] = 1 and H = 1 internally). AVERAGE_POOL:
 *     count_include_pad (0). CONV's third input (bias) is optional: pass -1.
 *   GEMM: alpha (1), beta (1), trans_a, trans_b (0); the third input (C) may be -1.
 *   SOFTMAX, LOG_SOFTMAX: axis (-1). CONCAT, GATHER, FLATTEN: axis (1, 0, 1).
 *   LAYER_NORM: axis (-1), epsilon (1e-5). BATCH_NORM: epsilon (1e-5), momentum (0.9,
 *     ONNX's meaning: running = running * momentum + batch * (1 - momentum)).
 *   TRANSPOSE: perm (reversed when perm_rank = 0). RESHAPE: shape (0 copies that
 *     dimension, -1 is inferred), shape_rank. DROPOUT: ratio (0.5). CAST: to (a dtype).
 *   SOFTMAX_CROSS_ENTROPY: logits [N, C] and int64 labels [N]; mean over the batch.
 *   BCE_WITH_LOGITS, MSE: predictions and float targets of the same shape; mean. */
typedef struct {
  int64_t kernel[2], stride[2], pad[4], dilation[2];
  int64_t count_include_pad;
  float alpha, beta;
  int64_t trans_a, trans_b;
  int64_t axis;
  float epsilon, momentum;
  int64_t perm[SW_NN_MAX_RANK];
  int perm_rank;
  int64_t shape[SW_NN_MAX_RANK];
  int shape_rank;
  float ratio;
  sw_dtype to;
} sw_op_attrs;

/* ONNX's defaults for op (stride 1, dilation 1, alpha = beta = 1, axis by op, ...). */
void sw_op_attrs_default(sw_op_type op, sw_op_attrs *a);

typedef struct sw_graph sw_graph;
typedef int32_t sw_node; /* index of a node in its graph */

/* Building: nodes are added in order (so the graph is topologically sorted); each
 * checks its inputs' types and shapes at once and fails with a message naming it. */
sw_status sw_graph_new(sw_graph **out);
void sw_graph_free(sw_graph *g);
/* An input fed per batch; shape[0] must be -1 (the batch dimension). */
sw_status sw_graph_input(sw_graph *g, const char *name, sw_dtype dtype, int rank, const int64_t *shape,
                         sw_node *out);
/* A trainable f32 parameter, zero-filled; fill it through sw_graph_data. */
sw_status sw_graph_param(sw_graph *g, const char *name, int rank, const int64_t *shape, sw_node *out);
/* A saved f32 tensor that is not trained (batch norm's running mean and variance),
 * zero-filled. */
sw_status sw_graph_buffer(sw_graph *g, const char *name, int rank, const int64_t *shape, sw_node *out);
/* A constant tensor (copied). Its data must not change once a forward pass has run:
 * kernels may keep forms derived from it (a Gemm packs a constant B once). */
sw_status sw_graph_const(sw_graph *g, const char *name, sw_dtype dtype, int rank, const int64_t *shape,
                         const void *data, sw_node *out);
/* An op; inputs may hold -1 for an optional input that is absent. attrs NULL: defaults. */
sw_status sw_graph_op(sw_graph *g, sw_op_type op, const sw_node *inputs, int n_inputs,
                      const sw_op_attrs *attrs, const char *name, sw_node *out);

/* Allocation, once: every value, gradient and scratch buffer for batches up to
 * max_batch. After it, forward and backward allocate nothing. */
sw_status sw_graph_alloc(sw_graph *g, int64_t max_batch);
/* A second graph for forward passes concurrent with src's (a graph runs one pass at a
 * time): the same nodes, sharing src's constants, parameters and packed weights, read
 * only, with values and scratch of its own. src must be allocated, outside training,
 * and outlive the clone; the clone is never trained (backward refuses). */
sw_status sw_graph_clone(const sw_graph *src, sw_graph **out);
/* Marks a node whose value the caller reads after a forward pass (before alloc): the
 * allocator then never lets it share memory with the nodes that read it (Conv applies
 * a following Relu in place, Flatten and Reshape view their input's memory). */
void sw_graph_mark_output(sw_graph *g, sw_node n);
/* The batch size of the next passes (1..max_batch): recomputes shapes, no allocation. */
sw_status sw_graph_set_batch(sw_graph *g, int64_t n);
/* Training mode: dropout drops and batch norm uses (and updates) batch statistics. */
void sw_graph_set_training(sw_graph *g, bool training);
/* The step number dropout masks are drawn for (with the seed: reproducible). */
void sw_graph_set_step(sw_graph *g, uint64_t seed, int64_t step);
/* Threads for the CPU backend (thread pool and OpenBLAS); 0: all cores. */
sw_status sw_graph_set_threads(sw_graph *g, int threads);

sw_status sw_graph_forward(sw_graph *g);
/* Gradients of the scalar node `loss` with respect to every parameter (and every node
 * on the way), overwriting those of the previous backward. */
sw_status sw_graph_backward(sw_graph *g, sw_node loss);

/* Access. Values are C-order buffers of the node's dtype and current shape. */
void *sw_graph_data(sw_graph *g, sw_node n);
float *sw_graph_grad(sw_graph *g, sw_node n); /* NULL when the node needs no gradient */
int sw_graph_rank(const sw_graph *g, sw_node n);
const int64_t *sw_graph_shape(const sw_graph *g, sw_node n);
int64_t sw_graph_elements(const sw_graph *g, sw_node n);
sw_dtype sw_graph_dtype(const sw_graph *g, sw_node n);
sw_op_type sw_graph_op_type(const sw_graph *g, sw_node n);
const char *sw_graph_name(const sw_graph *g, sw_node n);
int sw_graph_inputs(const sw_graph *g, sw_node n, const sw_node **inputs);
const sw_op_attrs *sw_graph_attrs(const sw_graph *g, sw_node n);
size_t sw_graph_size(const sw_graph *g);
sw_node sw_graph_find(const sw_graph *g, const char *name); /* -1 when absent */
/* Parameters in creation order (the fixed order of params_sha256 and checkpoints). */
size_t sw_graph_params(const sw_graph *g, const sw_node **params);
/* Extra state that is not trained but saved (batch norm running mean and variance). */
size_t sw_graph_buffers(const sw_graph *g, const sw_node **buffers);

/* ---- ONNX (onnx_export.c, onnx_import.c) ------------------------------------------ */

typedef struct {
  const char *key;
  const char *value;
} sw_onnx_meta;

/* Writes the inference form of g as an ONNX model (opset 13, IR version 7): the graph
 * inputs are the INPUT nodes that `outputs` depend on (the batch dimension symbolic,
 * "N"), initializers are the parameters, buffers and constants they use (raw_data,
 * little-endian), every op is its ONNX operator with its attributes, Dropout becomes
 * Identity, and metadata_props carry meta. The same graph gives the same bytes. */
sw_status sw_onnx_export(const sw_graph *g, const sw_node *outputs, size_t n_outputs, const sw_onnx_meta *meta,
                         size_t n_meta, const char *path);

/* Loads an ONNX file into a new, unallocated graph: graph inputs become INPUT nodes
 * (a first dimension that is symbolic or 0 becomes the batch), initializers constants,
 * nodes ops. An unsupported op, attribute or type fails with its name and the node's;
 * external data is refused. *outputs (caller frees with sw_free) lists the graph
 * outputs; *metadata (caller owns, may be NULL) holds metadata_props. */
sw_status sw_onnx_import(const char *path, sw_graph **out, sw_node **outputs, size_t *n_outputs, json_t **metadata);
sw_status sw_onnx_import_mem(const uint8_t *data, size_t len, const char *name, sw_graph **out, sw_node **outputs,
                             size_t *n_outputs, json_t **metadata);

#ifdef __cplusplus
}
#endif
#endif
