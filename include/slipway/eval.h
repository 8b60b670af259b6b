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
  const char *model_ref; /* a run dir, an ONNX file, or NAME:VERSION / NAME@ALIAS in the registry */
  const char *registry;  /* for registry refs: the registry URL (NULL: $SLIPWAY_REGISTRY or
                            $SLIPWAY_HOME/registry.db) */
  const char *home;      /* for registry refs: $SLIPWAY_HOME (NULL: the environment's, or ./.slipway) */
  const char *data_dir;
  const char *split;     /* NULL: "test" */
  const char *slice;     /* a feature to slice by, or NULL */
  int threads;           /* 0: all cores */
  int64_t batch_size;    /* <= 0: 256 */
} sw_eval_options;

/* Loads the run's model (its parameters verified against run.json's params_sha256), the
 * ONNX file, or the registry version's artifact (its SHA-256 verified first; an ONNX file
 * is one whatever its name ends with),
 * runs it over the split and returns (caller owns):
 *   {"model", "dataset": manifest SHA-256, "split", "examples",
 *    "metrics": {accuracy, log_loss | auc, accuracy, log_loss | rmse, mae},
 *    "per_class": [{class, precision, recall, support}], "confusion": [[...]],
 *    "slices": {"FEATURE=VALUE": {"examples", "metrics"}}}
 * Metrics that do not apply are left out. */
sw_status sw_eval_run(const sw_eval_options *opt, json_t **result);

/* ---- policies and promotion gates (src/eval/policy.c, gate.c) ------------------------
 * A policy is one YAML file (DESIGN.md) with a primary `metric` and three optional
 * sections: `gate` (slipway registry promote), `rollout` (slipway rollout) and
 * `monitor` (slipway monitor). Metric names are the keys of `eval --json`'s "metrics". */

typedef struct {
  char *metric;    /* a metric name */
  double value;    /* the threshold (for max_drop: how much worse, >= 0) */
  bool relative;   /* max_drop only: value is a fraction of the baseline (written "1%") */
} sw_threshold;

typedef struct {
  char *slice;          /* "FEATURE=VALUE" */
  sw_threshold *min, *max;
  size_t n_min, n_max;
} sw_slice_thresholds;

typedef struct {
  bool present;                /* the file has a gate: section */
  char *split;                 /* default "test" */
  sw_threshold *min, *max, *max_drop;
  size_t n_min, n_max, n_max_drop;
  sw_slice_thresholds *slices;
  size_t n_slices;
} sw_gate_policy;

typedef struct {
  bool present;
  int *steps;                  /* traffic percentages, increasing, last 100; default 1,5,25,50,100 */
  size_t n_steps;
  int64_t min_requests_per_step; /* default 500 */
  double max_step_seconds;       /* default 600 */
  double alpha;                  /* default 0.01 */
  double slo_p99_ms;             /* < 0: none */
  double slo_error_rate;         /* < 0: none */
} sw_rollout_policy;

typedef struct {
  bool present;
  double every_seconds;          /* default 600 ("10m"; accepts s, m, h) */
  sw_threshold *max_drop;
  size_t n_max_drop;
  double drift_psi, drift_js;    /* defaults 0.1, 0.1 */
  int64_t drift_window;          /* default 2000 */
  double drift_share;            /* default 0.5 */
} sw_monitor_policy;

typedef struct {
  char *metric;                  /* default "accuracy" */
  sw_gate_policy gate;
  sw_rollout_policy rollout;
  sw_monitor_policy monitor;
} sw_policy;

/* True when a larger value of the metric is better (accuracy, auc), false when smaller
 * is (log_loss, rmse, mae). Unknown names: false, with *known = false. */
bool sw_metric_higher_is_better(const char *metric, bool *known);

/* Parses and validates a policy (unknown keys, unknown metric names, wrong types and
 * out-of-range values are errors naming the key). On success *out is the caller's, to be
 * freed with sw_policy_free; on error *out is NULL and *err (caller frees with sw_free;
 * err may be NULL) says why, starting with the file name and the key's path:
 * "p.yaml: gate.min.acurracy: unknown metric (...)". SW_STATUS_INVALID for a policy that
 * fails validation, FORMAT for YAML that does not parse. Absent sections still get their
 * defaults; `present` says whether the file had them (docs/POLICY.md). */
sw_status sw_policy_load(const char *path, sw_policy **out, char **err);
/* The same from a parsed JSON/YAML tree (the admin API posts a policy as JSON). */
sw_status sw_policy_from_json(const json_t *policy, sw_policy **out, char **err);
/* The policy back as JSON, defaults filled in (for the registry and status output). */
json_t *sw_policy_to_json(const sw_policy *p);
void sw_policy_free(sw_policy *p);

/* Judges a candidate's evaluation (the object sw_eval_run returns) against the gate,
 * with value thresholds and per-slice thresholds, and change thresholds (max_drop)
 * against the baseline's evaluation on the same split (NULL: no baseline, so change
 * thresholds are not checked and are listed as skipped). Returns (caller owns):
 *   {"passed": bool, "split": S,
 *    "checks": [{"metric", "slice"?, "kind": "min"|"max"|"max_drop", "threshold",
 *                "relative"?, "value", "baseline"?, "allowed"? (max_drop: the absolute
 *                allowance), "skipped"? (max_drop without baseline), "passed", "reason"}],
 *    "failed": ["accuracy 0.81 < min 0.88", ...]}
 * A gate with no threshold that can be checked refuses ("passed": false, a reason
 * saying so) rather than blessing blindly; a metric the evaluation lacks fails its
 * check with that reason. Errors only on a malformed evaluation object. */
sw_status sw_gate_judge(const sw_gate_policy *gate, const json_t *candidate, const json_t *baseline,
                        json_t **decision);

/* ---- promotion (src/eval/promote.c) --------------------------------------------------
 * `slipway registry promote`: eval measures and judges, the registry records. */

typedef struct {
  const char *registry;    /* registry URL (NULL: $SLIPWAY_REGISTRY or $SLIPWAY_HOME/registry.db) */
  const char *home;        /* $SLIPWAY_HOME (NULL: the environment's, or ./.slipway) */
  const char *ref;         /* the candidate: NAME:VERSION or NAME@ALIAS */
  const char *alias;       /* the alias to move (NULL: "production") */
  const char *policy_path; /* a policy file with a gate: section */
  const char *data_dir;    /* NULL: the dataset the registry recorded for the candidate */
  const char *who, *why;   /* NULL who: $USER */
  int threads;             /* 0: all cores */
} sw_promote_options;

/* Evaluates the candidate and the version the alias points to now (the baseline) on the
 * gate's split of the same dataset, with the slices the gate names; judges the candidate
 * with sw_gate_judge; and records both evaluations, the decision and its outcome in one
 * registry transaction: when every check passes the alias moves to the candidate (state
 * production for "production", else blessed; the version it leaves archived), otherwise
 * the candidate is marked rejected. If the alias moves while judging, the candidate is
 * judged again against the new baseline. Returns SW_STATUS_OK when promoted (or already
 * there), SW_STATUS_REFUSED when not, with *result (caller owns) either way:
 *   {"ref", "alias", "passed", "baseline": REF | null, "candidate_eval", "baseline_eval",
 *    "decision": sw_gate_judge's object, "state": the candidate's state afterwards}.
 * On other errors *result is NULL. */
sw_status sw_promote(const sw_promote_options *opt, json_t **result);

#ifdef __cplusplus
}
#endif
#endif
