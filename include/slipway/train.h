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
/* Writes the model's inference graph (raw features in, the `output` node out:
 * "probabilities", or the regression value under its layer's name) as ONNX, with
 * metadata_props slipway.class_names and slipway.input_features (JSON arrays),
 * slipway.run (run_id) and slipway.model, in that order. Same weights, same bytes. */
sw_status sw_model_export_onnx(const sw_model *m, const sw_model_spec *spec, const sw_dataset *ds, const char *run_id,
                               const char *path);

/* ---- checkpoints (checkpoint.c) ----------------------------------------------------- */

/* A checkpoint directory, checkpoints/step-NNNNNNNN/ in a run dir:
 *   model.safetensors  every parameter ("param:NAME"), buffer ("buffer:NAME") and Adam
 *                      moment ("adam_m:NAME", "adam_v:NAME"; SGD momentum in adam_m)
 *   state.json         {"format": "slipway-checkpoint", "version": 1, "step", "epoch",
 *                      "reader": {"epoch", "index"}, "seed", "config_sha256",
 *                      "dataset_sha256", "tensors_sha256" (of model.safetensors)}
 * It is written as checkpoints/.tmp-step-N-PID/, fsynced, renamed into place, the
 * checkpoints dir fsynced, then checkpoints/latest (the newest name) replaced atomically:
 * a crash at any instant leaves every earlier checkpoint whole (and the next writer
 * removes any .tmp-step-* it left). The RNG state is the
 * seed, the step and the reader position: dropout masks and the data order are pure
 * functions of them. */
typedef struct {
  int64_t step;
  int64_t epoch;
  sw_reader_pos reader;
  uint64_t seed;
  char config_sha256[SW_SHA256_HEX_LEN];
  char dataset_sha256[SW_SHA256_HEX_LEN];
} sw_checkpoint_state;

typedef struct sw_checkpointer sw_checkpointer;
/* Reserves one in-memory snapshot of the model's parameters, buffers and moments
 * (m, v: one array per parameter, as sw_graph_params orders them; v may be NULL) and
 * starts the thread that writes snapshots to disk, keeping the newest `keep`. */
sw_status sw_checkpointer_open(const char *run_dir, int keep, sw_model *m, float *const *mom_m,
                               float *const *mom_v, sw_checkpointer **out);
/* Copies the current state into the snapshot (waiting for the previous write if it is
 * still running) and hands it to the writer; returns at once. */
sw_status sw_checkpointer_save(sw_checkpointer *c, const sw_checkpoint_state *state);
/* Waits for the pending write; returns its status (and the last one's errors). */
sw_status sw_checkpointer_wait(sw_checkpointer *c);
/* Seconds the last snapshot copy and the last disk write took. */
void sw_checkpointer_costs(const sw_checkpointer *c, double *snapshot_s, double *write_s);
/* Waits, stops the writer; NULL is a no-op. */
void sw_checkpointer_close(sw_checkpointer *c);
/* Restores the newest checkpoint of run_dir that verifies (state.json readable, tensor
 * file hash as recorded, every tensor present with the model's shape) into the model
 * and the moments; one that does not is skipped with a warning naming it. NOT_FOUND when
 * there is none. */
sw_status sw_checkpoint_restore(const char *run_dir, sw_model *m, float *const *mom_m, float *const *mom_v,
                                sw_checkpoint_state *state);

/* ---- training (trainer.c) --------------------------------------------------------- */

typedef enum { SW_DIST_SYNC = 0, SW_DIST_ASYNC } sw_dist_mode;

typedef struct {
  const char *model_path;
  const char *data_dir;
  const char *out_dir;
  int64_t steps;   /* > 0 overrides the model file */
  int64_t epochs;  /* > 0 overrides the model file */
  int threads;     /* 0: all cores */
  int64_t seed;    /* >= 0 overrides the model file */
  int64_t log_every; /* steps between metrics lines (default 50) */
  bool overwrite;    /* --force-new: start over even if RUN holds a run */
  int64_t checkpoint_every_steps;   /* 0: by time only */
  double checkpoint_every_seconds;  /* 0: by steps only; both 0: every 60 s */
  bool checkpoint_auto;             /* Young's interval sqrt(2 C MTBF) from the measured cost */
  double mtbf_seconds;              /* for checkpoint_auto */
  int keep;                         /* checkpoints kept (default 3) */
  volatile int *stop;               /* set (by a signal handler) to stop after this step */
  /* distributed (docs/DISTRIBUTED.md); used when the process was started by mpirun */
  sw_dist_mode dist;                /* SYNC by default */
  int backup_workers;               /* SYNC: the latest B ranks of each step are dropped */
  int64_t max_staleness;            /* ASYNC: gradients older than this many updates are dropped (0: 8) */
  double bucket_mb;                 /* SYNC: allreduce bucket size (0: 4 MB) */
  int64_t dist_check_every;         /* compare params_sha256 across ranks every K steps (0: at the end only) */
  int debug_slow_rank;              /* this rank sleeps debug_slow_ms per step (a made straggler; -1: none) */
  int debug_slow_ms;
  /* fault injection for tests (docs/DISTRIBUTED.md): this rank dies by SIGKILL before step
   * debug_crash_step (> 0), or nudges one parameter after step 1 (a rank > 0) */
  int debug_crash_rank;
  int64_t debug_crash_step;
  int debug_corrupt_rank;
} sw_train_options;

/* Trains and writes the run dir (run.json, model.yaml, model.safetensors,
 * metrics.jsonl, TensorBoard events, checkpoints/). A RUN that already holds a run made
 * with the same config and dataset resumes from its newest good checkpoint; another
 * config or dataset is refused (REFUSED, exit 3) unless opt->overwrite. When *opt->stop becomes
 * non-zero, the current step finishes, a checkpoint is written and PREEMPTED returned.
 * *summary (caller owns): final metrics. */
sw_status sw_train_run(const sw_train_options *opt, json_t **summary);

/* ---- the ranks of a distributed job (dist.c) ------------------------------------- */

/* Joins the MPI job when the process was started by mpirun (or another MPI launcher),
 * else a world of one; *rank and *size say which. UNSUPPORTED when mpirun started a
 * build without MPI. Call once, before sw_train_run. */
sw_status sw_dist_init(int *argc, char ***argv, int *rank, int *size);
/* Leaves the job: failed ends every rank (MPI_Abort, as one rank's failure may leave the
 * others waiting in a collective), else finalizes. A no-op outside MPI. */
void sw_dist_finish(bool failed);

#ifdef __cplusplus
}
#endif
#endif
