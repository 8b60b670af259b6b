/* slipway trainer: the training loop over a dataset and a model file, run directories,
 * metrics and TensorBoard summaries. Stands on data and nn. */
#ifndef SLIPWAY_TRAIN_H
#define SLIPWAY_TRAIN_H

#include "slipway/base.h"
#include "slipway/data.h"
#include "slipway/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TensorBoard summaries (summary.c) ---------------------------------------- */

/* An event file as TensorBoard reads it: TFRecord frames of tensorboard Event protos,
 * the first holding file_version "brain.Event:2", then one Event per scalar with a
 * Summary of one value (tag, simple_value). Named events.out.tfevents.SECONDS.HOST
 * (TensorBoard's convention) in dir. */
typedef struct sw_summary_writer sw_summary_writer;
sw_status sw_summary_open(const char *dir, sw_summary_writer **out);
sw_status sw_summary_scalar(sw_summary_writer *w, int64_t step, const char *tag, float value);
/* Flushes buffered events to disk (fflush + fsync). */
sw_status sw_summary_flush(sw_summary_writer *w);
/* The file's path (owned by the writer). */
const char *sw_summary_path(const sw_summary_writer *w);
/* Flushes and closes; NULL is a no-op. */
void sw_summary_close(sw_summary_writer *w);

/* ---- model files (model.c) ------------------------------------------------------ */

/* A model file in YAML (docs/MODELS.md):
 *   name: fmnist-mlp
 *   input: {feature: image, shape: [784]}      # or inputs: [{name, feature, shape}, ...]
 *   label: label
 *   layers:                                     # each from the previous one unless `from`
 *     - {type: dense, units: 256, activation: relu}
 *     - {type: dense, units: 10}
 *   loss: softmax_cross_entropy                 # bce_with_logits, mse
 *   optimizer: {type: adam, lr: 0.001, weight_decay: 0, clip_norm: 0}
 *   schedule: {type: constant, warmup_steps: 0}   # step, cosine
 *   batch_size: 64
 *   epochs: 5                                   # or steps: N
 *   seed: 1
 *   shuffle: true                               # false: the split's stored order
 *   init_from: weights.safetensors              # start from these weights (relative to the file)
 */
typedef enum { SW_LOSS_SOFTMAX_CE, SW_LOSS_BCE_WITH_LOGITS, SW_LOSS_MSE } sw_loss_kind;

#define SW_MODEL_MAX_INPUTS 8

typedef struct {
  char *name;    /* the graph input's name (default: the feature's) */
  char *feature; /* the dataset feature it is fed from */
  int rank;      /* per example, without the batch dimension */
  int64_t shape[SW_NN_MAX_RANK];
} sw_model_input;

typedef struct {
  char *name;
  size_t n_inputs;
  sw_model_input inputs[SW_MODEL_MAX_INPUTS];
  char *label;
  json_t *layers; /* the layer list, checked */
  sw_loss_kind loss;
  sw_optim_config optim;
  sw_lr_schedule schedule;
  double clip_norm; /* 0: no clipping */
  int64_t batch_size, epochs, steps;
  uint64_t seed;
  bool shuffle;
  char *init_from; /* a safetensors file to start from, resolved against the model file's dir */
  json_t *doc;     /* the whole file, for run.json */
} sw_model_spec;

/* Loads and checks a model file; every mistake is INVALID with the file and the key. */
sw_status sw_model_spec_load(const char *path, sw_model_spec **out);
sw_status sw_model_spec_from_json(const json_t *doc, const char *name, sw_model_spec **out);
void sw_model_spec_free(sw_model_spec *s);

/* A model's graph: the dataset's transform as the first nodes, the layers, the logits,
 * and for training the label input and the loss. */
typedef struct {
  sw_graph *g;
  size_t n_inputs;
  sw_node inputs[SW_MODEL_MAX_INPUTS]; /* raw features, as the dataset holds them */
  sw_node label;                       /* -1 without a loss */
  sw_node logits;
  sw_node output;                      /* probabilities (softmax/sigmoid) or the regression value */
  sw_node loss;                        /* -1 for inference */
  int64_t classes;                     /* logits per example (1 for binary and regression) */
} sw_model;

/* Builds (not allocates) the model's graph for a dataset's schema and transform. Params
 * are initialized from (spec seed, param index) with the counter-based RNG. */
sw_status sw_model_build(const sw_model_spec *spec, const sw_dataset *ds, bool with_loss, sw_model **out);
void sw_model_free(sw_model *m);
/* Copies a reader batch into the model's inputs (and label): features by name, reshaped
 * when their element counts agree, converted to the input's type; sets the batch size. */
sw_status sw_model_feed(sw_model *m, const sw_model_spec *spec, const sw_batch *b);
/* SHA-256 over every parameter and buffer (name, shape, bytes) in creation order. */
sw_status sw_model_params_sha256(const sw_model *m, char hex[SW_SHA256_HEX_LEN]);
/* Saves / loads parameters and buffers as safetensors (loading checks names and shapes). */
sw_status sw_model_save(const sw_model *m, const char *path, const json_t *metadata);
sw_status sw_model_load(sw_model *m, const char *path);

/* ---- training (trainer.c) --------------------------------------------------------- */

typedef struct {
  const char *model_path;
  const char *data_dir;
  const char *out_dir;
  int64_t steps;   /* > 0 overrides the model file */
  int64_t epochs;  /* > 0 overrides the model file */
  int threads;     /* 0: all cores */
  int64_t seed;    /* >= 0 overrides the model file */
  int64_t log_every; /* steps between metrics lines (default 50) */
  bool overwrite;
} sw_train_options;

/* Trains and writes the run dir (run.json, model.yaml, model.safetensors,
 * metrics.jsonl, TensorBoard events). *summary (caller owns): final metrics. */
sw_status sw_train_run(const sw_train_options *opt, json_t **summary);

#ifdef __cplusplus
}
#endif
#endif
