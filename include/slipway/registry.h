/* slipway registry: a versioned store of models that remembers where each came from.
 * Versions of named models (ONNX artifacts, content-addressed under
 * $SLIPWAY_HOME/artifacts/sha256/), their runs and datasets (lineage both ways), aliases
 * with their history, evaluations, rollouts and an append-only event log, in SQLite
 * ($SLIPWAY_HOME/registry.db) or PostgreSQL (postgres://...). It stores and loads back;
 * it decides nothing (promotion gates live in eval). Stands on base, data and nn. */
#ifndef SLIPWAY_REGISTRY_H
#define SLIPWAY_REGISTRY_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A handle is one connection: use it from one thread at a time (open one per thread;
 * processes and threads may share the store itself freely). */
typedef struct sw_registry sw_registry;

/* Opens (and creates or migrates) a registry. url: a SQLite file path or a
 * postgres:// (postgresql://) URL; NULL means $SLIPWAY_REGISTRY, else
 * HOME/registry.db. home: where artifacts live; NULL means $SLIPWAY_HOME, else
 * ./.slipway. Safe to call from several processes at once. On error *out is NULL and
 * sw_last_error() says why. Close with sw_registry_close (NULL is a no-op). */
sw_status sw_registry_open(const char *url, const char *home, sw_registry **out);
void sw_registry_close(sw_registry *reg);
/* "sqlite" or "postgres". */
const char *sw_registry_backend(const sw_registry *reg);
/* The schema version the store is at (the highest migration applied). */
int sw_registry_schema_version(const sw_registry *reg);

/* ---- model references ------------------------------------------------------------- */

#define SW_MODEL_NAME_MAX 128

/* NAME:VERSION or NAME@ALIAS. NAME and ALIAS: 1..128 characters of [A-Za-z0-9._-],
 * starting with a letter or digit; VERSION: a decimal integer from 1 to 2^53. */
typedef struct {
  char name[SW_MODEL_NAME_MAX + 1];
  char alias[SW_MODEL_NAME_MAX + 1]; /* "" for NAME:VERSION */
  int64_t version;                   /* 0 for NAME@ALIAS */
} sw_model_ref;

/* Parses text (len bytes, not necessarily NUL-terminated) as a registry reference.
 * SW_STATUS_FORMAT with a message naming what is wrong otherwise. */
sw_status sw_model_ref_parse(const char *text, size_t len, sw_model_ref *out);
/* True when a REF given on the command line names a registry version rather than a
 * path: it parses as NAME:V or NAME@ALIAS and no file or directory of that name exists. */
bool sw_model_ref_is_registry(const char *ref);
/* True for a valid model or alias name. */
bool sw_model_name_valid(const char *name);

/* ---- registering ------------------------------------------------------------------- */

typedef struct {
  const char *name;         /* the model's name */
  const char *run_dir;      /* a finished run dir: RUN/run.json and RUN/model.onnx; or */
  const char *onnx_path;    /* an ONNX file made elsewhere */
  const char *dataset_dir;  /* the dataset it was trained on (required provenance for
                               onnx_path when known; overrides run.json's path for runs) */
  const char *source;       /* free text: where an --onnx model came from */
  const char *code_version; /* for --onnx models: the code that trained it */
  const char *description;
  const char *who;          /* NULL: $USER */
} sw_register_options;

/* Copies the artifact into the content-addressed store (atomically), then records run,
 * dataset, version and event in one transaction, allocating the next version number
 * of the model inside it. A crash at any point leaves either no version or a complete
 * one; an artifact written before a crash is reused by the retry. The model file is
 * loaded back (ONNX import) before anything is written, so a file the engine cannot
 * run is refused. On success *version (caller owns) is the new version as
 * sw_registry_get_version returns it. */
sw_status sw_registry_register(sw_registry *reg, const sw_register_options *opt, json_t **version);

/* ---- reading ----------------------------------------------------------------------- */

/* The version a REF names (NAME@ALIAS resolved now), as
 *   {"name", "version", "ref": "NAME:V", "state", "created_at", "created_by",
 *    "source", "description", "artifact": {"sha256", "size", "path"},
 *    "aliases": [ALIAS...], "dataset": {"manifest_sha256", "path"} | null,
 *    "run": {"path", "code_version", "host", "params_sha256", "config_sha256"} | null}
 * SW_STATUS_NOT_FOUND naming what is missing. Caller owns *out. */
sw_status sw_registry_get_version(sw_registry *reg, const char *ref, json_t **out);
/* The version above plus "evaluations" (every one recorded, newest first), "alias_history"
 * (moves of any alias to or from this version) and "events" (this version's). */
sw_status sw_registry_show(sw_registry *reg, const char *ref, json_t **out);
/* Every version of every model (or of one model when name is not NULL), oldest first:
 * [{"name", "version", "state", "aliases", "artifact_sha256", "created_at"}]. */
sw_status sw_registry_list(sw_registry *reg, const char *name, json_t **out);
/* Upstream lineage of a version: {"ref", "artifact_sha256", "source",
 * "dataset": {"manifest_sha256", "path"} | null, "run": {"path", "config",
 * "config_sha256", "hyperparameters", "code_version", "host", "params_sha256",
 * "checkpoint", "steps"} | null, "executions": [the pipeline executions that made or used
 * them, oldest first; see sw_registry_executions]}. */
sw_status sw_registry_lineage(sw_registry *reg, const char *ref, json_t **out);
/* Downstream lineage of a dataset (its manifest SHA-256): {"dataset": {"manifest_sha256",
 * "path"}, "versions": [{"name", "version", "ref", "state", "run_path"}]} for every version
 * trained on it. SW_STATUS_NOT_FOUND when the registry never saw the dataset. */
sw_status sw_registry_lineage_dataset(sw_registry *reg, const char *sha256, json_t **out);
/* The alias's current version of a model; 0 when the alias is not set. */
sw_status sw_registry_alias_get(sw_registry *reg, const char *name, const char *alias, int64_t *version);

/* Loads a version's artifact into memory (caller frees *data with sw_free) after checking
 * its SHA-256 against the registry's: a missing or changed file is refused
 * (SW_STATUS_CORRUPT naming the expected and the actual hash). *version (may be NULL;
 * caller owns) is the version as sw_registry_get_version gives it. */
sw_status sw_registry_load_artifact(sw_registry *reg, const char *ref, uint8_t **data, size_t *len, json_t **version);
/* Re-hashes every artifact the registry refers to: {"checked": N, "ok": N,
 * "problems": [{"sha256", "path", "problem", "versions": [REF...]}]}. Returns OK even
 * when problems are found (the report says so); errors only when it cannot read the store. */
sw_status sw_registry_verify(sw_registry *reg, json_t **report);

/* ---- writing ----------------------------------------------------------------------- */

/* Points NAME@ALIAS at version (moving it if set), recording who, when and why in the
 * alias history and the event log. A "production" alias also sets the new version's
 * state to production and the one it leaves to archived. */
sw_status sw_registry_alias_set(sw_registry *reg, const char *name, const char *alias, int64_t version, const char *who,
                                const char *why);
/* Sets a version's state (registered, blessed, rejected, production, archived,
 * rolled_back), with an event. */
sw_status sw_registry_state_set(sw_registry *reg, const char *name, int64_t version, const char *state, const char *who,
                                const char *why);
/* True for one of the six state names. */
bool sw_registry_state_valid(const char *state);
/* Records an evaluation (an `eval --json` object) of NAME:V: one row for the whole split
 * and one per slice. context says why it was run ("promote:candidate", "manual"). */
sw_status sw_registry_evaluation_add(sw_registry *reg, const char *name, int64_t version, const json_t *evaluation,
                                     const char *context, const char *who);

/* The outcome of a promotion, judged elsewhere (eval), recorded in one transaction:
 * both evaluations, the decision, the candidate's new state and, when passed, the alias
 * move (with the previous holder's state). The alias must still point at
 * expect_version (0: unset), the version the judgement compared against; if it moved
 * meanwhile nothing is written and SW_STATUS_EXISTS says so (judge again). */
typedef struct {
  const char *name;
  int64_t version;
  const char *alias;
  int64_t expect_version;
  const json_t *candidate_eval;
  const json_t *baseline_eval; /* NULL without a baseline */
  const json_t *decision;      /* sw_gate_judge's object */
  bool passed;
  const char *new_state;       /* the candidate's state afterwards */
  const char *old_state;       /* the previous holder's state when the alias moves; NULL: kept */
  const char *who, *why;
} sw_registry_promotion;
sw_status sw_registry_promotion_record(sw_registry *reg, const sw_registry_promotion *p);

/* ---- rollouts (records only; the controller lives in serve) ------------------------ */

/* spec: {"model", "incumbent", "challenger", "mode", "state", "weight", "step",
 * "policy", "decisions"} (model, challenger and mode required; state default "pending",
 * weight 0, step 0, decisions []). *id is the new rollout's id. */
sw_status sw_registry_rollout_create(sw_registry *reg, const json_t *spec, const char *who, int64_t *id);
/* Changes any of "state", "weight", "step", "policy", "decisions" (other keys are an
 * error). */
sw_status sw_registry_rollout_update(sw_registry *reg, int64_t id, const json_t *fields, const char *who);
/* Appends one decision ({"at", "step", "weight", "action", "reason", "evidence", ...}) to
 * a rollout's "decisions" and sets fields ("state", "weight", "step"; may be NULL) in one
 * transaction, with one event whose action is the decision's ("advance", "rollback",
 * "snapshot", ...) and whose detail is small ({"rollout", "step", "weight", "reason"}), so
 * the event log does not grow with the evidence. When more than max_snapshots decisions
 * are "snapshot" entries, every second one of the older half is dropped (the history
 * stays, coarser); other decisions are never dropped. NOT_FOUND for no such rollout. */
sw_status sw_registry_rollout_append(sw_registry *reg, int64_t id, const json_t *decision, const json_t *fields,
                                     size_t max_snapshots, const char *who);
/* {"id", "model", "incumbent", "challenger", "mode", "state", "weight", "step", "policy",
 * "decisions", "created_at", "updated_at"}; caller owns. */
sw_status sw_registry_rollout_get(sw_registry *reg, int64_t id, json_t **out);
/* Rollouts of a model (NULL: all), newest first. */
sw_status sw_registry_rollout_list(sw_registry *reg, const char *model, json_t **out);

/* ---- pipeline executions (ML Metadata's executions) ------------------------------------
 * One row per stage that `slipway pipeline run` ran or reused from its cache:
 *   {"id", "pipeline", "stage", "cache_key", "state": "running"|"complete"|"failed"|"cached",
 *    "inputs": {...}, "outputs": {...} | null, "started_at", "ended_at" | null,
 *    "error" | null, "who", "host", "pid"}
 * Each start and end adds an event (entity "execution", action "start", "cached",
 * "complete" or "failed"; an execution whose outputs name a version ("ref": "NAME:V")
 * files its end event under that version). */
typedef struct {
  const char *pipeline, *stage;
  const char *cache_key;  /* the stage's cache key (64 hex digits) */
  const char *state;      /* "running" (end it with sw_registry_execution_end) or "cached" */
  const json_t *inputs;   /* an object: what the stage read (copied) */
  const json_t *outputs;  /* "cached": what it reuses; may be NULL */
  const char *model;      /* the model the start event is filed under (may be NULL) */
  int64_t version;        /* and its version (<= 0: none) */
  const char *who;        /* NULL: $USER */
} sw_registry_execution;
/* Records a new execution (with this host and process id); *id is its id. */
sw_status sw_registry_execution_start(sw_registry *reg, const sw_registry_execution *e, int64_t *id);
/* Ends a running execution: state "complete" (outputs, an object) or "failed" (error, a
 * sentence). INVALID when it has already ended. */
sw_status sw_registry_execution_end(sw_registry *reg, int64_t id, const char *state, const json_t *outputs, const char *error,
                                    const char *who);
/* The newest complete execution of (pipeline, stage) with that cache key (pipeline NULL:
 * of any pipeline); NOT_FOUND when none. Caller owns *out. */
sw_status sw_registry_execution_find(sw_registry *reg, const char *pipeline, const char *stage, const char *cache_key,
                                     json_t **out);
/* Every execution (of one pipeline when not NULL), newest first. Caller owns *out.
 * sw_registry_lineage's result has "executions" too: those whose outputs hold the
 * version's dataset or run, or that name the version. */
sw_status sw_registry_executions(sw_registry *reg, const char *pipeline, json_t **out);

/* ---- the event log ----------------------------------------------------------------- */

/* The id of the newest event (0 when none): a cheap change counter. Every write to the
 * registry adds an event in the same transaction, so a poller that sees the counter
 * unchanged knows nothing changed (aliases included). */
sw_status sw_registry_change_counter(sw_registry *reg, int64_t *latest_event_id);
/* Events with id > after (oldest first, at most limit, 0 = no limit):
 * [{"id", "at", "who", "entity", "action", "model", "version", "detail"}]. */
sw_status sw_registry_events(sw_registry *reg, int64_t after, int64_t limit, json_t **out);

/* Appends an event of its own (entity "alert", action "firing"...; model may be NULL,
 * version <= 0 for none; detail, copied, may be NULL), in its own transaction. */
sw_status sw_registry_event_add(sw_registry *reg, const char *who, const char *entity, const char *action,
                                const char *model, int64_t version, const json_t *detail);

/* The user name recorded when none is given: $USER, else "unknown". */
const char *sw_registry_default_who(void);

#ifdef __cplusplus
}
#endif
#endif
