/* slipway evaluation: metrics of a model on a dataset split, overall and per slice,
 * in the shape `slipway eval --json` prints (DESIGN.md). Stands on train (the model
 * builder), data and nn (the metric math). */
#ifndef SLIPWAY_EVAL_H
#define SLIPWAY_EVAL_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *model_ref; /* a run dir or an .onnx file */
  const char *data_dir;
  const char *split;     /* NULL: "test" */
  const char *slice;     /* a feature to slice by, or NULL */
  int threads;           /* 0: all cores */
  int64_t batch_size;    /* <= 0: 256 */
} sw_eval_options;

/* Loads the run's model (its parameters verified against run.json's params_sha256),
 * runs it over the split and returns (caller owns):
 *   {"model", "dataset": manifest SHA-256, "split", "examples",
 *    "metrics": {accuracy, log_loss | auc, accuracy, log_loss | rmse, mae},
 *    "per_class": [{class, precision, recall, support}], "confusion": [[...]],
 *    "slices": {"FEATURE=VALUE": {"examples", "metrics"}}}
 * Metrics that do not apply are left out. */
sw_status sw_eval_run(const sw_eval_options *opt, json_t **result);

#ifdef __cplusplus
}
#endif
#endif
