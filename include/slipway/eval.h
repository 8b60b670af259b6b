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

/* ---- anytime-valid sequential tests (src/eval/sequential.c, docs/ROLLOUT.md) --------
 * E-processes that may be looked at after every observation: by Ville's inequality a
 * nonnegative supermartingale with mean <= 1 under the null ever reaches 1/alpha with
 * probability <= alpha, so "reject when the e-value reaches 1/alpha" keeps the false
 * rejection rate <= alpha however often one looks and whenever one stops.
 *
 * One primitive serves every test: a stream of Bernoulli observations x_i, each with
 * its own null bound p_i (the null says P(x_i = 1 | past) <= p_i), against the
 * alternatives "the odds of x_i = 1 are r times the odds of p_i", r on a fixed grid of
 * SW_SEQ_GRID ratios above 1 with fixed weights. The e-value is the weighted mixture of
 * the grid's likelihood ratios, kept in log space.
 *   - count test (challenger vs incumbent): x = "this event (error, slow request, wrong
 *     prediction) fell on the challenger", p = the challenger's traffic share when the
 *     request was routed (rho; may change from event to event); shadow: the discordant
 *     pairs, p = 1/2 (McNemar).
 *   - objective test (one sample): x = "this challenger request broke the objective"
 *     (slower than the p99 objective, or an error), p = the allowed share (0.01, or
 *     the error-rate objective).
 * An observation with x = 0 can only lower every ratio, so those are counted and
 * applied in one step when next needed (cheap: O(1)); an x = 1 costs O(grid). */

#define SW_SEQ_GRID 32

typedef struct {
  double log_lr[SW_SEQ_GRID]; /* log likelihood ratio of each grid alternative */
  int64_t n;                  /* observations */
  int64_t events;             /* of which x = 1 */
  int64_t pending_zeros;      /* x = 0 under pending_p not yet added to log_lr */
  double pending_p;
  bool certain;               /* an x = 1 under p = 0: the null is refuted outright */
  /* cache of the per-grid increments for the last p (not state; rebuilt on demand) */
  double cache_p;
  double inc1[SW_SEQ_GRID], inc0[SW_SEQ_GRID];
} sw_seq_test;

/* The grid of odds ratios (ascending, SW_SEQ_GRID values from 1.05 to 1000) and the
 * log of their mixture weights (sum of weights 1). Static storage. */
const double *sw_seq_grid_ratios(void);
const double *sw_seq_grid_log_weights(void);

void sw_seq_init(sw_seq_test *t);
/* One observation. p is the null's bound on P(x = 1) for this observation, in [0, 1]:
 * p >= 1 carries no information and is skipped; p <= 0 with x = 1 refutes the null
 * outright (certain; e-value infinite); p <= 0 with x = 0 is skipped. Not-a-number p
 * is skipped. */
void sw_seq_observe(sw_seq_test *t, bool x, double p);
/* log of the e-value (the mixture); +INFINITY once certain; 0 before any evidence. */
double sw_seq_log_e(const sw_seq_test *t);
/* The e-value itself, capped at 1e300 so it stays a finite JSON number. */
double sw_seq_e(const sw_seq_test *t);
/* True when the e-value has reached 1/alpha (alpha in (0, 1)). */
bool sw_seq_crossed(const sw_seq_test *t, double alpha);
/* The whole state as {"n", "events", "pending_zeros", "pending_p", "certain",
 * "log_lr": [..]} (caller owns; NULL on memory), and back: restoring gives a test that
 * answers every later observation bit for bit as the original would. FORMAT with a
 * message (sw_last_error) on a malformed object; *t is then untouched. */
json_t *sw_seq_save(const sw_seq_test *t);
sw_status sw_seq_restore(const json_t *saved, sw_seq_test *t);

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
  bool compare_latency;          /* default true; false: no challenger-vs-incumbent latency test
                                  * (a slower-by-design challenger), the slo.p99_ms objective still applies */
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
/* A duration as policies write it ("90", "30s", "10m", "1.5h"): false unless positive. */
bool sw_duration_parse(const char *s, double *seconds);

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


/* ---- drift (src/eval/drift.c) --------------------------------------------------------
 * Live inputs against the training split's statistics (stats.json, written by prep):
 * PSI and Jensen-Shannon distance per feature on the training deciles (numeric) or top
 * values + "other" (strings), a Kolmogorov-Smirnov test for numbers, and a decision for
 * the dataset from the share of drifting features (docs/MONITORING.md has the math). */

/* Smoothing of empty bins (Evidently's): a proportion of 0 counts as 0.0001. */
#define SW_DRIFT_EMPTY_BIN 0.0001

/* Population stability index sum (a-e) ln(a/e) over n proportions, each 0 replaced by
 * SW_DRIFT_EMPTY_BIN first (the proportions are not renormalized, as Evidently's). */
double sw_drift_psi(const double *expected, const double *actual, size_t n);
/* Jensen-Shannon distance (natural log, the square root of the divergence, as scipy's
 * jensenshannon) of the smoothed proportions, each renormalized to sum 1. In [0, sqrt(ln 2)]. */
double sw_drift_js(const double *expected, const double *actual, size_t n);
/* P(D_n >= d) under the null, from Kolmogorov's limiting distribution of sqrt(n) D
 * (scipy's kstwobign.sf(sqrt(n) d)); n is the (effective) sample size. */
double sw_ks_pvalue(double d, double n);

/* The reference for one dataset: per feature, bins and CDF points from the training
 * statistics. Immutable once loaded; share it between threads. */
typedef struct sw_drift_reference sw_drift_reference;

/* From a dataset directory: stats.json's split (NULL: "train"), schema.json's label left
 * out. On error *out is NULL and sw_last_error() says why (a missing file, a split the
 * statistics lack, a feature without quantiles or top values is skipped, not an error). */
sw_status sw_drift_reference_load(const char *data_dir, const char *split, sw_drift_reference **out);
/* The same from a parsed stats.json; label (may be NULL) names a feature to leave out. */
sw_status sw_drift_reference_from_stats(const json_t *stats, const char *split, const char *label,
                                        sw_drift_reference **out);
void sw_drift_reference_free(sw_drift_reference *ref);
/* How many features the reference checks. */
size_t sw_drift_reference_features(const sw_drift_reference *ref);

/* The window of the most recent records (a ring: adding to a full window drops the
 * oldest). Each record is kept as a few counts per feature, not its values, so a window
 * of 2000 images costs ~100 KB. Not thread-safe: one writer, or a lock around it. */
typedef struct sw_drift_window sw_drift_window;

/* capacity <= 0: 2000. The window refers to ref, which must outlive it. */
sw_status sw_drift_window_new(const sw_drift_reference *ref, int64_t capacity, sw_drift_window **out);
void sw_drift_window_free(sw_drift_window *w);
/* Adds one request's raw inputs, a JSON object {FEATURE: value}: a number, a string, or
 * a (nested) array of numbers (an image's pixels 0..255, a fixed list); where the
 * reference checks one feature, a bare value (not an object) is that feature's, as a
 * one-input model's instances come. Features the reference does not check are ignored;
 * a missing one counts for nothing. A value of the
 * wrong kind is SW_STATUS_INVALID naming the feature, and the window is unchanged. */
sw_status sw_drift_window_add(sw_drift_window *w, const json_t *instance);
/* Records in the window now. */
int64_t sw_drift_window_records(const sw_drift_window *w);
/* The name of the reference's feature i (NULL past the end); *numeric (may be NULL):
 * whether it takes numbers (numeric and image features) rather than strings. */
const char *sw_drift_reference_feature(const sw_drift_reference *ref, size_t i, bool *numeric);
/* Adds one record whose inputs are numbers already in memory (the server's parsed
 * request rows): input j holds counts[j] values for the feature names[j] (NULL: the
 * only feature, where the reference checks one). Names the reference does not check are
 * ignored. SW_STATUS_INVALID for a value that is not finite or numbers for a string
 * feature, naming the feature; the window is unchanged then. */
sw_status sw_drift_window_add_numbers(sw_drift_window *w, size_t n, const char *const *names, const float *const *values,
                                      const size_t *counts);

/* Judges the window against its reference with the policy's monitor.drift thresholds
 * (NULL: the defaults psi 0.1, js 0.1, share 0.5). Returns (caller owns):
 *   {"records", "window", "ready": records >= min(window, 100),
 *    "features": {NAME: {"kind": "numeric"|"image"|"categorical", "records", "values",
 *                        "psi", "js", "ks_d"?, "ks_p"?, "ks_p_bonferroni"?, "drift",
 *                        "reasons": [...]}},
 *    "checked": features with data, "drifting": N, "share": N / checked, "threshold_share",
 *    "drift": ready and share >= threshold_share, "worst": [up to 3 names, highest PSI first]}
 * A feature drifts when PSI >= psi, JS >= js, or its Bonferroni-corrected KS p-value
 * < 0.05. Errors only on memory. */
sw_status sw_drift_compute(const sw_drift_window *w, const sw_monitor_policy *policy, json_t **report);

/* ---- live and held-out quality (src/eval/quality.c) --------------------------------- */

/* The Wilson score interval of a proportion (correct out of n) at normal quantile z
 * (1.96: 95%). n == 0 gives [0, 1]. */
void sw_wilson_interval(int64_t correct, int64_t n, double z, double *lo, double *hi);

/* Rolling accuracy over the last `capacity` feedback labels (a ring of outcomes). */
typedef struct sw_accuracy_window sw_accuracy_window;
sw_status sw_accuracy_window_new(int64_t capacity, sw_accuracy_window **out);
void sw_accuracy_window_free(sw_accuracy_window *w);
void sw_accuracy_window_add(sw_accuracy_window *w, bool correct);
/* Outcomes in the window and how many were correct. */
void sw_accuracy_window_get(const sw_accuracy_window *w, int64_t *n, int64_t *correct);

/* The baseline recorded at promotion: from a version as sw_registry_show returns it,
 * the metrics of the newest whole-split evaluation with context "promote:candidate" on
 * split (NULL: "test"), or of any context when none was made by promote. *metrics is the
 * caller's (NULL with SW_STATUS_NOT_FOUND when there is none). */
sw_status sw_quality_baseline(const json_t *shown_version, const char *split, json_t **metrics);

/* Compares held-out metrics now with the baseline against the policy's monitor.max_drop
 * (absolute, or relative to the baseline), the same arithmetic as the gate's max_drop.
 * Returns (caller owns) {"dropped": bool, "checks": [{"metric", "baseline", "value",
 * "drop" (how much worse, negative when better), "allowed", "dropped", "reason"}]};
 * a metric either side lacks is a check with "skipped": true that does not drop. */
sw_status sw_quality_drop_check(const sw_monitor_policy *monitor, const json_t *baseline, const json_t *current,
                                json_t **result);

/* Live accuracy against the baseline: {"n", "correct", "accuracy", "lower", "upper" (95%
 * Wilson), "baseline", "allowed", "floor": baseline - allowed, "below": upper < floor}.
 * "below" only when the whole interval lies under the floor, so a small sample never
 * alerts on noise. allowed is absolute (a relative max_drop times the baseline). */
json_t *sw_live_quality_judge(int64_t correct, int64_t n, double baseline, double allowed);

/* ---- alerts (src/eval/alerts.c) ------------------------------------------------------
 * Alerts go to a webhook in Alertmanager's webhook format (version "4"), one
 * notification per change: firing once when a condition starts, resolved once when it
 * clears, never the same firing alert every cycle. */

typedef struct sw_registry sw_registry;

typedef struct {
  const char *webhook_url;   /* NULL: alerts are only recorded (and logged) */
  const char *receiver;      /* NULL: "slipway" */
  const char *external_url;  /* externalURL and the base of generatorURL (NULL: "") */
  int max_attempts;          /* <= 0: 4 */
  double backoff_s;          /* first wait between attempts, doubled each time (<= 0: 0.5) */
  double timeout_s;          /* per attempt (<= 0: 5) */
  sw_registry *registry;     /* NULL: firings and resolutions are not recorded */
  const char *who;           /* recorded as (NULL: "slipway-monitor") */
} sw_alert_options;

typedef struct sw_alert_manager sw_alert_manager;

/* The strings in opt are copied; registry is borrowed and must outlive the manager. */
sw_status sw_alert_manager_new(const sw_alert_options *opt, sw_alert_manager **out);
void sw_alert_manager_free(sw_alert_manager *m);

/* Reports the condition of one alert now. labels (must hold "alertname"; strings only)
 * identify it; annotations (may be NULL) describe it. When it starts firing, or clears
 * while firing, one notification is POSTed (retried with back-off on a connection error
 * or a non-2xx answer) and the change recorded in the registry's event log (entity
 * "alert", action "firing" or "resolved"). A condition unchanged since the last delivered
 * notification sends nothing. A notification that could not be delivered is retried at
 * the next call, and SW_STATUS_IO is returned meanwhile. *sent (may be NULL): whether a
 * notification went out. */
sw_status sw_alert_manager_set(sw_alert_manager *m, const json_t *labels, const json_t *annotations, bool firing,
                               bool *sent);
/* Alerts firing now. */
size_t sw_alert_manager_firing(const sw_alert_manager *m);
/* The Alertmanager webhook body for one alert (caller owns). Exposed for tests. */
json_t *sw_alert_payload(const char *receiver, const char *external_url, const json_t *labels, const json_t *annotations,
                         bool firing, const char *starts_at, const char *ends_at);
/* The alert's fingerprint: 16 hex digits of the SHA-256 of its sorted labels. */
sw_status sw_alert_fingerprint(const json_t *labels, char out[17]);

/* ---- the monitor's metrics (src/eval/monitor_metrics.c) ------------------------------
 * Prometheus text format, appended to out; each family (# HELP, # TYPE, its samples for
 * every entry) is written whole. On error (memory) out holds a partial text: discard it. */

typedef struct {
  const char *model;
  int64_t version;
  const char *dataset;    /* the dataset label: its manifest SHA-256 (or a prefix of it) */
  const json_t *metrics;  /* an evaluation's "metrics" */
  const json_t *drop;     /* sw_quality_drop_check's result, or NULL */
} sw_quality_series;
/* slipway_model_quality, slipway_model_quality_drop, slipway_model_quality_drop_allowed,
 * all {model, version, metric, dataset}. */
sw_status sw_quality_render_prometheus(const sw_quality_series *s, size_t n, sw_buf *out);

typedef struct {
  const char *model;
  int64_t version;
  const json_t *judge;    /* sw_live_quality_judge's object */
} sw_live_quality_series;
/* slipway_live_accuracy_lower, _upper, _floor {model, version} (none for n == 0). */
sw_status sw_live_quality_render_prometheus(const sw_live_quality_series *s, size_t n, sw_buf *out);

typedef struct {
  const char *model;
  const json_t *report;   /* sw_drift_compute's */
} sw_drift_series;
/* slipway_drift_psi, _js, _ks_pvalue (Bonferroni-corrected), _feature_drifting
 * {model, feature}; slipway_drift_share, _detected, _window_records {model}. */
sw_status sw_drift_render_prometheus(const sw_drift_series *s, size_t n, sw_buf *out);

/* ---- the monitor's held-out evaluations (src/eval/monitor.c) ------------------------
 * One cycle per call: each served version evaluated on its held-out split, recorded in
 * the registry (context "monitor"), compared with the promotion baseline, and
 * SlipwayQualityRegression fired or resolved. Used by `slipway serve --eval-every` and
 * the standalone `slipway monitor`. One thread at a time. */

typedef struct {
  const char *model;
  int64_t version;
  const char *ref;     /* what sw_eval_run loads: NAME:V in the registry, or an ONNX path */
  bool is_default;     /* what a request without a version gets (the production alias) */
} sw_monitor_target;

typedef struct {
  sw_registry *registry;           /* borrowed: baselines and recording (NULL: neither, so no drop check) */
  const char *registry_url, *home; /* how sw_eval_run opens the registry for NAME:V refs */
  const char *eval_data;           /* the held-out dataset (NULL: each version's, from the registry's lineage) */
  const sw_policy *policy;         /* borrowed: gate.split, monitor.max_drop (NULL: split test, no drop check) */
  sw_alert_manager *alerts;        /* borrowed (NULL: no alerts) */
  int threads;                     /* evaluation threads (<= 0: 1, so serving keeps its cores) */
  const char *who;                 /* recorded as (NULL: "slipway-monitor") */
} sw_quality_monitor_options;

typedef struct sw_quality_monitor sw_quality_monitor;
/* Strings are copied; the borrowed objects must outlive the monitor. */
sw_status sw_quality_monitor_new(const sw_quality_monitor_options *o, sw_quality_monitor **out);
void sw_quality_monitor_free(sw_quality_monitor *m);
/* Evaluates the targets, the defaults first. The baseline of a version is the
 * evaluation its own promotion recorded (a "promote" event, context
 * "promote:candidate", same split and dataset); for a version put under its alias
 * without a promotion, the newest promotion of any version of the model. A drop beyond
 * monitor.max_drop fires SlipwayQualityRegression{model, version, metric, dataset,
 * severity="page"}; an alert of the last cycle whose condition is gone (quality back,
 * or the version no longer served) is resolved; a version whose evaluation fails keeps
 * its alerts as they were. *results (caller owns): one entry per target,
 * {"model", "version", "ref", "dataset" (16 hex), "metrics", "baseline"?, "drop"?
 * (sw_quality_drop_check's), "baseline_version"} or {"model", "version", "ref", "error"}.
 * Errors of one version are in its entry, not the return value (errors only on memory). */
sw_status sw_quality_monitor_cycle(sw_quality_monitor *m, const sw_monitor_target *t, size_t n, json_t **results);
/* The results' slipway_model_quality, _drop and _drop_allowed families, appended to out. */
sw_status sw_quality_results_render(const json_t *results, sw_buf *out);
/* Which versions to evaluate: for every model in the registry, the versions the server
 * at server_url has loaded (GET /v1/models/{m}), or without a server the version the
 * registry catalog would serve (the production alias, else the latest not rejected or
 * rolled back). *targets (caller owns): [{"model", "version", "ref": "NAME:V",
 * "is_default"}]. IO when the server cannot be reached. */
sw_status sw_monitor_targets(sw_registry *reg, const char *server_url, json_t **targets);

#ifdef __cplusplus
}
#endif
#endif
