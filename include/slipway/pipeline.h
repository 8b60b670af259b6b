/* slipway pipeline: the whole flow from one YAML file (docs/PIPELINE.md). Stages prep ->
 * train -> eval -> register (with the gate) -> rollout, each skipped when its cache key
 * (SHA-256 of its inputs' content, its settings and the code version) matches a complete
 * execution whose outputs still verify; every stage's execution is recorded in the
 * registry. Stands above data, train, eval and registry, and drives them through their
 * library calls. */
#ifndef SLIPWAY_PIPELINE_H
#define SLIPWAY_PIPELINE_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The stages, in the order they run. */
#define SW_PIPELINE_STAGES 5
extern const char *const sw_pipeline_stage_names[SW_PIPELINE_STAGES]; /* prep, train, eval, register, rollout */

/* Checks a parsed pipeline document (after --set overrides) and fills in nothing: unknown
 * stages, unknown keys, wrong types, missing required keys and stages whose input no
 * earlier stage makes are INVALID, with *err (caller frees with sw_free; may be NULL)
 * naming the file and the key's path: "p.yaml: stages.train.epochs: expected an integer". */
sw_status sw_pipeline_check(const json_t *doc, const char *file_name, char **err);

/* Applies one "KEY.PATH=VALUE" override to doc (VALUE read as a YAML scalar or flow
 * collection: "1" an integer, "[1, 5]" a list, "x" a string); intermediate mappings are
 * created. INVALID with *err on a malformed override. */
sw_status sw_pipeline_set(json_t *doc, const char *assignment, char **err);

typedef struct {
  const char *path;             /* the pipeline YAML */
  const char *const *sets;      /* --set KEY.PATH=VALUE overrides, applied in order */
  size_t n_sets;
  const char *const *force;     /* --force STAGE: rerun these even when cached */
  size_t n_force;
  const char *until;            /* the last stage to run (NULL: all) */
  const char *workdir;          /* where `out` paths go (NULL: the file's workdir key,
                                   relative to the file's folder; else the folder itself) */
  const char *registry, *home;  /* NULL: $SLIPWAY_REGISTRY / $SLIPWAY_HOME, else ./.slipway */
  const char *who;              /* NULL: $USER */
  int threads;                  /* train and eval (0: all cores) */
  volatile int *stop;           /* set by a signal handler: training checkpoints and stops */
} sw_pipeline_options;

/* Runs the pipeline. Returns OK when every stage completed or was cached, REFUSED when the
 * gate refused the candidate or the rollout rolled back, INVALID for a bad file, another
 * status when a stage failed (PREEMPTED when training was stopped). Whenever the file
 * loaded, *report (caller owns) says what happened:
 *   {"pipeline", "file", "workdir", "status": "complete"|"failed"|"refused",
 *    "stages": [{"stage", "state": "complete"|"cached"|"failed"|"refused"|"not run",
 *                "cache_key", "execution", "seconds", "outputs", "error"}],
 *    "failed_stage"?, "error"?}
 * Progress goes to the logger (one INFO line per stage). */
sw_status sw_pipeline_run(const sw_pipeline_options *opt, json_t **report);

#ifdef __cplusplus
}
#endif
#endif
