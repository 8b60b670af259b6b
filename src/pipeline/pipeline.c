/* `slipway pipeline run`: the file format and its checks, cache keys, the stages and the
 * loop that runs them. A stage's cache key is the SHA-256 of a canonical JSON document
 * (sorted keys, compact) holding the stage's name, the code version, its resolved
 * settings and the identities of what it reads; the registry's executions table is the
 * cache (the newest complete execution with that key), so the cache is shared by every
 * host that shares the registry, and a cached output is reused only after it verifies. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/pipeline_int.h"
#include "slipway/data.h"
#include "slipway/eval.h"
#include "slipway/registry.h"
#include "slipway/train.h"

const char *const sw_pipeline_stage_names[SW_PIPELINE_STAGES] = {"prep", "train", "eval", "register", "rollout"};
enum { PREP, TRAIN, EVAL, REGISTER, ROLLOUT };

/* ---- the file format ------------------------------------------------------------------ */

typedef enum { K_STR, K_INT, K_NUM, K_BOOL, K_INT_LIST } key_kind;
typedef struct {
  const char *key;
  key_kind kind;
  bool required;
} key_spec;

static const key_spec TOP_KEYS[] = {{"name", K_STR, true}, {"description", K_STR, false}, {"workdir", K_STR, false},
                                    {"stages", K_STR, true}, {NULL, K_STR, false}};
static const key_spec PREP_KEYS[] = {
    {"input", K_STR, true},        {"out", K_STR, true},       {"test_input", K_STR, false},
    {"schema", K_STR, false},      {"split", K_STR, false},    {"label", K_STR, false},
    {"shards", K_INT, false},      {"seed", K_INT, false},     {"max_z", K_NUM, false},
    {"max_quarantine_fraction", K_NUM, false}, {"mfcc_frames", K_INT, false}, {"mfcc_coeffs", K_INT, false},
    {"mel_bands", K_INT, false},   {NULL, K_STR, false}};
static const key_spec TRAIN_KEYS[] = {
    {"model", K_STR, true},       {"out", K_STR, true},      {"data", K_STR, false},
    {"epochs", K_INT, false},     {"steps", K_INT, false},   {"seed", K_INT, false},
    {"log_every", K_INT, false},  {"keep", K_INT, false},    {"checkpoint_every_steps", K_INT, false},
    {"checkpoint_every_seconds", K_NUM, false}, {NULL, K_STR, false}};
static const key_spec EVAL_KEYS[] = {{"split", K_STR, false}, {"slice", K_STR, false}, {"out", K_STR, false},
                                     {NULL, K_STR, false}};
static const key_spec REGISTER_KEYS[] = {{"name", K_STR, false}, {"policy", K_STR, false}, {"alias", K_STR, false},
                                         {"description", K_STR, false}, {NULL, K_STR, false}};
static const key_spec ROLLOUT_KEYS[] = {
    {"server", K_STR, false},        {"token_file", K_STR, false},           {"mode", K_STR, false},
    {"policy", K_STR, false},        {"steps", K_INT_LIST, false},           {"min_requests_per_step", K_INT, false},
    {"max_step_seconds", K_NUM, false}, {"alpha", K_NUM, false},             {"keep_previous_minutes", K_NUM, false},
    {"timeout", K_NUM, false},       {"poll", K_NUM, false},                 {"compare_latency", K_BOOL, false},
    {NULL, K_STR, false}};
static const key_spec *const STAGE_KEYS[SW_PIPELINE_STAGES] = {PREP_KEYS, TRAIN_KEYS, EVAL_KEYS, REGISTER_KEYS, ROLLOUT_KEYS};

static const char *kind_name(key_kind k) {
  switch (k) {
    case K_STR: return "a string";
    case K_INT: return "an integer >= 0";
    case K_NUM: return "a number >= 0";
    case K_BOOL: return "true or false";
    case K_INT_LIST: return "a list of integers";
  }
  return "?";
}

static bool kind_ok(key_kind k, const json_t *v) {
  switch (k) {
    case K_STR: return json_is_string(v) && json_string_length(v) > 0;
    case K_INT: return json_is_integer(v) && json_integer_value(v) >= 0;
    case K_NUM: return json_is_number(v) && json_number_value(v) >= 0;
    case K_BOOL: return json_is_boolean(v);
    case K_INT_LIST: {
      if (!json_is_array(v) || json_array_size(v) == 0) return false;
      size_t i;
      json_t *e;
      json_array_foreach(v, i, e) if (!json_is_integer(e)) return false;
      return true;
    }
  }
  return false;
}

static char *key_list(const key_spec *ks) {
  sw_buf b = {0};
  for (size_t i = 0; ks[i].key; i++) sw_buf_printf(&b, "%s%s", i ? ", " : "", ks[i].key);
  sw_buf_append(&b, "", 1);
  return (char *)b.data;
}

static sw_status check_keys(const json_t *obj, const key_spec *ks, const char *path, const char *file, char **err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    const key_spec *k = NULL;
    for (size_t i = 0; ks[i].key && !k; i++)
      if (!strcmp(ks[i].key, key)) k = &ks[i];
    if (!k) {
      char *known = key_list(ks);
      *err = sw_asprintf("%s: %s%s: unknown key (known: %s)", file, path, key, known ? known : "");
      sw_free(known);
      return SW_STATUS_INVALID;
    }
    if (strcmp(key, "stages") != 0 && !kind_ok(k->kind, v)) {
      *err = sw_asprintf("%s: %s%s: expected %s", file, path, key, kind_name(k->kind));
      return SW_STATUS_INVALID;
    }
  }
  for (size_t i = 0; ks[i].key; i++)
    if (ks[i].required && !json_object_get(obj, ks[i].key)) {
      *err = sw_asprintf("%s: %s%s: required", file, path, ks[i].key);
      return SW_STATUS_INVALID;
    }
  return SW_STATUS_OK;
}

static sw_status check_doc(const json_t *doc, const char *file, char **err) {
  if (!json_is_object(doc)) {
    *err = sw_asprintf("%s: a pipeline is a mapping with name and stages", file);
    return SW_STATUS_INVALID;
  }
  sw_status st = check_keys(doc, TOP_KEYS, "", file, err);
  if (st) return st;
  const char *name = json_string_value(json_object_get(doc, "name"));
  if (!sw_model_name_valid(name)) {
    *err = sw_asprintf("%s: name: '%s' is not a name (1..128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)", file, name);
    return SW_STATUS_INVALID;
  }
  const json_t *stages = json_object_get(doc, "stages");
  if (!json_is_object(stages) || json_object_size(stages) == 0) {
    *err = sw_asprintf("%s: stages: expected a mapping of stages (prep, train, eval, register, rollout)", file);
    return SW_STATUS_INVALID;
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)stages, key, v) {
    int s = sw__pipeline_stage_index(key);
    if (s < 0) {
      *err = sw_asprintf("%s: stages.%s: unknown stage (prep, train, eval, register, rollout)", file, key);
      return SW_STATUS_INVALID;
    }
    if (!json_is_object(v)) {
      *err = sw_asprintf("%s: stages.%s: expected a mapping of settings", file, key);
      return SW_STATUS_INVALID;
    }
    char *path = sw_asprintf("stages.%s.", key);
    if (!path) return SW_STATUS_NOMEM;
    st = check_keys(v, STAGE_KEYS[s], path, file, err);
    sw_free(path);
    if (st) return st;
  }
  const json_t *train = json_object_get(stages, "train");
  if (train && !json_object_get(stages, "prep") && !json_object_get(train, "data")) {
    *err = sw_asprintf("%s: stages.train.data: required without a prep stage (the dataset to train on)", file);
    return SW_STATUS_INVALID;
  }
  if (train && json_object_get(stages, "prep") && json_object_get(train, "data")) {
    *err = sw_asprintf("%s: stages.train.data: the prep stage makes the dataset; leave data out", file);
    return SW_STATUS_INVALID;
  }
  static const char *const needs[][2] = {{"eval", "train"}, {"register", "train"}, {"rollout", "register"}};
  for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
    if (json_object_get(stages, needs[i][0]) && !json_object_get(stages, needs[i][1])) {
      *err = sw_asprintf("%s: stages.%s: needs a %s stage before it", file, needs[i][0], needs[i][1]);
      return SW_STATUS_INVALID;
    }
  const char *rname = json_string_value(json_object_get(json_object_get(stages, "register"), "name"));
  if (rname && !sw_model_name_valid(rname)) {
    *err = sw_asprintf("%s: stages.register.name: '%s' is not a model name", file, rname);
    return SW_STATUS_INVALID;
  }
  const char *alias = json_string_value(json_object_get(json_object_get(stages, "register"), "alias"));
  if (alias && !sw_model_name_valid(alias)) {
    *err = sw_asprintf("%s: stages.register.alias: '%s' is not an alias name", file, alias);
    return SW_STATUS_INVALID;
  }
  if (alias && !json_object_get(json_object_get(stages, "register"), "policy")) {
    *err = sw_asprintf("%s: stages.register.alias: an alias is moved through a gate: give policy too", file);
    return SW_STATUS_INVALID;
  }
  const char *mode = json_string_value(json_object_get(json_object_get(stages, "rollout"), "mode"));
  if (mode && strcmp(mode, "canary") && strcmp(mode, "ab") && strcmp(mode, "shadow")) {
    *err = sw_asprintf("%s: stages.rollout.mode: '%s' is not canary, ab or shadow", file, mode);
    return SW_STATUS_INVALID;
  }
  const char *input = json_string_value(json_object_get(json_object_get(stages, "prep"), "input"));
  if (input && (!strchr(input, ':') || strchr(input, ':') == input || !strchr(input, ':')[1])) {
    *err = sw_asprintf("%s: stages.prep.input: '%s' is not KIND:PATH (csv, jsonl, idx, wav, tfrecord)", file, input);
    return SW_STATUS_INVALID;
  }
  return SW_STATUS_OK;
}

int sw__pipeline_stage_index(const char *name) {
  for (int i = 0; i < SW_PIPELINE_STAGES; i++)
    if (!strcmp(sw_pipeline_stage_names[i], name)) return i;
  return -1;
}

sw_status sw_pipeline_check(const json_t *doc, const char *file_name, char **err) {
  char *msg = NULL;
  sw_status st = check_doc(doc, file_name ? file_name : "pipeline", &msg);
  if (st && !msg) msg = sw_asprintf("%s: %s", file_name ? file_name : "pipeline", sw_strerror(st));
  if (st) sw_error(st, "%s", msg ? msg : "invalid pipeline");
  if (err) *err = msg;
  else sw_free(msg);
  return st;
}

sw_status sw_pipeline_set(json_t *doc, const char *assignment, char **err) {
  *err = NULL;
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment) {
    *err = sw_asprintf("--set '%s': expected KEY.PATH=VALUE", assignment);
    return SW_STATUS_INVALID;
  }
  json_t *value = NULL;
  sw_status st = SW_STATUS_OK;
  if (!eq[1]) {
    *err = sw_asprintf("--set '%s': the value is empty", assignment);
    return SW_STATUS_INVALID;
  }
  if (sw_yaml_parse(eq + 1, strlen(eq + 1), "--set", &value) || !value || json_is_null(value) || json_is_object(value)) {
    sw_clear_error();
    *err = sw_asprintf("--set '%s': the value is not a YAML scalar or list", assignment);
    json_decref(value);
    return SW_STATUS_INVALID;
  }
  char *path = sw_strndup(assignment, (size_t)(eq - assignment));
  if (!path) {
    json_decref(value);
    return SW_STATUS_NOMEM;
  }
  json_t *node = doc;
  char *save = NULL, *part = strtok_r(path, ".", &save);
  while (part && !st) {
    char *next = strtok_r(NULL, ".", &save);
    if (!json_is_object(node)) {
      *err = sw_asprintf("--set '%s': '%s' is not inside a mapping", assignment, part);
      st = SW_STATUS_INVALID;
    } else if (!next) {
      json_object_set(node, part, value);
    } else {
      json_t *child = json_object_get(node, part);
      if (!child) {
        child = json_object();
        json_object_set_new(node, part, child);
      }
      node = child;
    }
    part = next;
  }
  if (!st && path[0] == '.') st = SW_STATUS_INVALID;
  sw_free(path);
  json_decref(value);
  return st;
}

/* ---- paths and content hashes ------------------------------------------------------------ */

static char *absolute_path(const char *base, const char *path) {
  if (path[0] == '/') return sw_strdup(path);
  return sw_path_join(base, path);
}

/* Replaces every ${workdir} in s (a new string). */
static char *expand(const char *s, const char *workdir) {
  sw_buf b = {0};
  const char *p = s, *at;
  while ((at = strstr(p, "${workdir}")) != NULL) {
    sw_buf_append(&b, p, (size_t)(at - p));
    sw_buf_append(&b, workdir, strlen(workdir));
    p = at + strlen("${workdir}");
  }
  sw_buf_append(&b, p, strlen(p) + 1);
  return (char *)b.data;
}

static int entry_cmp(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* Feeds "relpath\0sha256\n" of every regular file under dir (sorted, recursively) to h. */
static sw_status hash_dir(sw_sha256 *h, const char *dir, const char *rel) {
  struct dirent **names = NULL;
  int n = scandir(dir, &names, NULL, entry_cmp);
  if (n < 0) return sw_error(SW_STATUS_IO, "read %s: %s", dir, strerror(errno));
  sw_status st = SW_STATUS_OK;
  for (int i = 0; i < n; i++) {
    const char *nm = names[i]->d_name;
    if (!st && strcmp(nm, ".") && strcmp(nm, "..")) {
      char *full = sw_path_join(dir, nm), *r = rel[0] ? sw_asprintf("%s/%s", rel, nm) : sw_strdup(nm);
      struct stat sb;
      if (!full || !r) st = sw_error(SW_STATUS_NOMEM, "out of memory");
      else if (stat(full, &sb) != 0) st = sw_error(SW_STATUS_IO, "stat %s: %s", full, strerror(errno));
      else if (S_ISDIR(sb.st_mode)) st = hash_dir(h, full, r);
      else if (S_ISREG(sb.st_mode)) {
        char hex[SW_SHA256_HEX_LEN];
        st = sw_sha256_file_hex(full, hex);
        if (!st) st = sw_sha256_update(h, r, strlen(r) + 1);
        if (!st) st = sw_sha256_update(h, hex, 64);
        if (!st) st = sw_sha256_update(h, "\n", 1);
      }
      sw_free(full);
      sw_free(r);
    }
    free(names[i]);
  }
  free(names);
  return st;
}

/* The content hash of a file, or of a directory tree (names and contents). */
static sw_status hash_path(const char *path, char hex[SW_SHA256_HEX_LEN]) {
  struct stat sb;
  if (stat(path, &sb) != 0) return sw_error(SW_STATUS_NOT_FOUND, "%s: %s", path, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return sw_sha256_file_hex(path, hex);
  sw_sha256 *h = NULL;
  sw_status st = sw_sha256_new(&h);
  if (!st) st = hash_dir(h, path, "");
  if (!st) st = sw_sha256_final_hex(h, hex);
  sw_sha256_free(h);
  return st;
}

static sw_status canonical_sha(const json_t *v, char hex[SW_SHA256_HEX_LEN]) {
  char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
  if (!text) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_sha256_hex(text, strlen(text), hex);
  free(text);
  return st;
}

/* ---- the run --------------------------------------------------------------------------- */

typedef struct {
  const sw_pipeline_options *opt;
  json_t *doc;          /* the file after --set */
  const char *name;     /* the pipeline's */
  char *file;           /* absolute */
  char *dir;            /* the file's folder */
  char *workdir;        /* absolute */
  char *home;           /* the registry's home (for the admin token) */
  sw_registry *reg;
  json_t *settings[SW_PIPELINE_STAGES]; /* resolved: paths absolute, ${workdir} expanded */
  json_t *outputs[SW_PIPELINE_STAGES];  /* of the stages done so far */
  bool force[SW_PIPELINE_STAGES];
  int until;            /* the last stage to run */
} pipeline;

static const char *setting(const pipeline *p, int stage, const char *key) {
  return json_string_value(json_object_get(p->settings[stage], key));
}

static int64_t setting_int(const pipeline *p, int stage, const char *key, int64_t dflt) {
  const json_t *v = json_object_get(p->settings[stage], key);
  return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static double setting_num(const pipeline *p, int stage, const char *key, double dflt) {
  const json_t *v = json_object_get(p->settings[stage], key);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

/* Keys whose values are paths read (against the file's folder) or written (against the
 * workdir); prep's input is KIND:PATH. */
static bool is_input_path(int stage, const char *key) {
  return (stage == PREP && (!strcmp(key, "test_input") || !strcmp(key, "schema"))) ||
         (stage == TRAIN && (!strcmp(key, "model") || !strcmp(key, "data"))) ||
         ((stage == REGISTER || stage == ROLLOUT) && !strcmp(key, "policy")) || (stage == ROLLOUT && !strcmp(key, "token_file"));
}

static sw_status resolve_settings(pipeline *p) {
  const json_t *stages = json_object_get(p->doc, "stages");
  for (int s = 0; s < SW_PIPELINE_STAGES; s++) {
    const json_t *in = json_object_get(stages, sw_pipeline_stage_names[s]);
    if (!in) continue;
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)in, key, v) {
      if (!json_is_string(v)) {
        json_object_set(out, key, v);
        continue;
      }
      char *x = expand(json_string_value(v), p->workdir), *r = NULL;
      if (!x) return sw_error(SW_STATUS_NOMEM, "out of memory");
      if (is_input_path(s, key)) r = absolute_path(p->dir, x);
      else if (!strcmp(key, "out")) r = absolute_path(p->workdir, x);
      else if (s == PREP && !strcmp(key, "input")) {
        const char *colon = strchr(x, ':');
        char *kind = sw_strndup(x, (size_t)(colon - x)), *path = absolute_path(p->dir, colon + 1);
        r = kind && path ? sw_asprintf("%s:%s", kind, path) : NULL;
        sw_free(kind);
        sw_free(path);
      } else r = sw_strdup(x);
      sw_free(x);
      if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
      json_object_set_new(out, key, json_string(r));
      sw_free(r);
    }
    p->settings[s] = out;
  }
  return SW_STATUS_OK;
}

/* A stage's result while it runs. */
typedef struct {
  json_t *inputs;    /* identities of what it reads */
  json_t *outputs;
  char *summary;     /* one line a person reads */
  const char *model; /* the version it concerns, for the event log */
  int64_t version;
} stage_result;

static void result_clear(stage_result *r) {
  json_decref(r->inputs);
  json_decref(r->outputs);
  sw_free(r->summary);
  memset(r, 0, sizeof *r);
}

static const char *out_str(const pipeline *p, int stage, const char *key) {
  return json_string_value(json_object_get(p->outputs[stage], key));
}

static sw_status file_identity(const char *path, json_t *inputs, const char *key) {
  char hex[SW_SHA256_HEX_LEN];
  sw_status st = hash_path(path, hex);
  if (st) return sw_error_prefix(st, "%s: ", key);
  json_object_set_new(inputs, key, json_string(hex));
  return SW_STATUS_OK;
}

/* The dataset train reads: prep's output, or train.data. */
static const char *train_data(const pipeline *p) {
  return p->outputs[PREP] ? out_str(p, PREP, "dataset") : setting(p, TRAIN, "data");
}

static const char *policy_of(const pipeline *p, int stage) {
  const char *s = setting(p, stage, "policy");
  if (!s && stage == ROLLOUT) s = setting(p, REGISTER, "policy");
  return s;
}

/* What a stage reads, as identities (content hashes, upstream outputs' hashes). */
static sw_status stage_inputs(const pipeline *p, int s, json_t **out) {
  json_t *in = json_object();
  sw_status st = SW_STATUS_OK;
  switch (s) {
    case PREP: {
      const char *input = strchr(setting(p, PREP, "input"), ':') + 1;
      st = file_identity(input, in, "input");
      if (!st && setting(p, PREP, "test_input")) st = file_identity(setting(p, PREP, "test_input"), in, "test_input");
      if (!st && setting(p, PREP, "schema")) st = file_identity(setting(p, PREP, "schema"), in, "schema");
      break;
    }
    case TRAIN: {
      st = file_identity(setting(p, TRAIN, "model"), in, "model");
      if (st) break;
      if (p->outputs[PREP]) {
        json_object_set(in, "dataset", json_object_get(p->outputs[PREP], "manifest_sha256"));
      } else {
        char *m = sw_path_join(setting(p, TRAIN, "data"), "manifest.json");
        st = m ? file_identity(m, in, "dataset") : SW_STATUS_NOMEM;
        sw_free(m);
      }
      break;
    }
    case EVAL:
      json_object_set(in, "params_sha256", json_object_get(p->outputs[TRAIN], "params_sha256"));
      json_object_set(in, "dataset", json_object_get(p->outputs[TRAIN], "manifest_sha256"));
      break;
    case REGISTER:
      json_object_set(in, "params_sha256", json_object_get(p->outputs[TRAIN], "params_sha256"));
      json_object_set(in, "onnx_sha256", json_object_get(p->outputs[TRAIN], "onnx_sha256"));
      json_object_set(in, "dataset", json_object_get(p->outputs[TRAIN], "manifest_sha256"));
      if (p->outputs[EVAL]) json_object_set(in, "eval", json_object_get(p->outputs[EVAL], "sha256"));
      if (policy_of(p, REGISTER)) st = file_identity(policy_of(p, REGISTER), in, "policy");
      break;
    case ROLLOUT:
      json_object_set(in, "ref", json_object_get(p->outputs[REGISTER], "ref"));
      json_object_set(in, "artifact_sha256", json_object_get(p->outputs[REGISTER], "artifact_sha256"));
      if (policy_of(p, ROLLOUT)) st = file_identity(policy_of(p, ROLLOUT), in, "policy");
      break;
  }
  if (st) {
    json_decref(in);
    in = NULL;
  }
  *out = in;
  return st;
}

static sw_status cache_key(const pipeline *p, int s, const json_t *inputs, char hex[SW_SHA256_HEX_LEN]) {
  json_t *k = json_pack("{s:s, s:s, s:O, s:O}", "stage", sw_pipeline_stage_names[s], "code", "slipway " SW_VERSION,
                        "settings", p->settings[s], "inputs", inputs);
  if (!k) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = canonical_sha(k, hex);
  json_decref(k);
  return st;
}

/* Whether a cached stage's outputs are still there and the same. */
static bool outputs_verify(pipeline *p, int s, const json_t *o) {
  bool ok = false;
  switch (s) {
    case PREP: {
      const char *dir = json_string_value(json_object_get(o, "dataset"));
      char *m = dir ? sw_path_join(dir, "manifest.json") : NULL;
      char hex[SW_SHA256_HEX_LEN];
      sw_dataset *ds = NULL;
      ok = m && !sw_sha256_file_hex(m, hex) && !strcmp(hex, json_string_value(json_object_get(o, "manifest_sha256"))) &&
           !sw_dataset_open(dir, &ds) && !sw_dataset_verify(ds);
      sw_dataset_close(ds);
      sw_free(m);
      break;
    }
    case TRAIN: {
      const char *dir = json_string_value(json_object_get(o, "run"));
      char *rj = dir ? sw_path_join(dir, "run.json") : NULL, *onnx = dir ? sw_path_join(dir, "model.onnx") : NULL;
      json_t *run = NULL;
      char hex[SW_SHA256_HEX_LEN];
      ok = rj && onnx && !sw_json_load_file(rj, &run) &&
           json_equal(json_object_get(run, "params_sha256"), json_object_get(o, "params_sha256")) &&
           !sw_sha256_file_hex(onnx, hex) && !strcmp(hex, json_string_value(json_object_get(o, "onnx_sha256")));
      json_decref(run);
      sw_free(rj);
      sw_free(onnx);
      break;
    }
    case EVAL: {
      const char *f = json_string_value(json_object_get(o, "out"));
      ok = !f || sw_path_exists(f);
      break;
    }
    case REGISTER: {
      json_t *v = NULL;
      const char *ref = json_string_value(json_object_get(o, "ref"));
      ok = ref && !sw_registry_get_version(p->reg, ref, &v) &&
           json_equal(json_object_get(json_object_get(v, "artifact"), "sha256"), json_object_get(o, "artifact_sha256"));
      json_decref(v);
      break;
    }
    case ROLLOUT: {
      json_t *r = NULL;
      ok = json_is_integer(json_object_get(o, "rollout")) &&
           !sw_registry_rollout_get(p->reg, json_integer_value(json_object_get(o, "rollout")), &r) &&
           !strcmp(json_string_value(json_object_get(r, "state")) ? json_string_value(json_object_get(r, "state")) : "",
                   "promoted");
      json_decref(r);
      break;
    }
  }
  sw_clear_error();
  return ok;
}

/* ---- the stages ------------------------------------------------------------------------ */

/* The SHA-256 of dir/name (a stage's output file), as hex. */
static sw_status file_sha256_in(const char *dir, const char *name, char hex[SW_SHA256_HEX_LEN]) {
  char *path = sw_path_join(dir, name);
  sw_status st = path ? sw_sha256_file_hex(path, hex) : SW_STATUS_NOMEM;
  sw_free(path);
  return st;
}

static sw_status run_prep(pipeline *p, stage_result *r) {
  const char *input = setting(p, PREP, "input"), *colon = strchr(input, ':');
  char *kind = sw_strndup(input, (size_t)(colon - input));
  sw_prep_options o = {.kind = kind, .path = colon + 1, .out_dir = setting(p, PREP, "out"),
                       .schema_path = setting(p, PREP, "schema"), .test_path = setting(p, PREP, "test_input"),
                       .split_spec = setting(p, PREP, "split"), .label = setting(p, PREP, "label"),
                       .shards = (int)setting_int(p, PREP, "shards", 0), .seed = (uint64_t)setting_int(p, PREP, "seed", 0),
                       .max_z = setting_num(p, PREP, "max_z", -1),
                       .max_quarantine_fraction = setting_num(p, PREP, "max_quarantine_fraction", -1), .overwrite = true,
                       .mfcc_frames = (int)setting_int(p, PREP, "mfcc_frames", 0),
                       .mfcc_coeffs = (int)setting_int(p, PREP, "mfcc_coeffs", 0),
                       .mel_bands = (int)setting_int(p, PREP, "mel_bands", 0)};
  json_t *report = NULL;
  sw_status st = kind ? sw_prep_run(&o, &report) : SW_STATUS_NOMEM;
  sw_free(kind);
  if (st) {
    json_decref(report);
    return st;
  }
  char hex[SW_SHA256_HEX_LEN];
  st = file_sha256_in(o.out_dir, "manifest.json", hex);
  if (!st) {
    r->outputs = json_pack("{s:s, s:s, s:O?, s:O?}", "dataset", o.out_dir, "manifest_sha256", hex, "splits",
                           json_object_get(report, "splits"), "quarantined", json_object_get(report, "quarantined"));
    r->summary = sw_asprintf("dataset %s (manifest %.12s, %lld read, %lld quarantined)", o.out_dir, hex,
                             (long long)json_integer_value(json_object_get(report, "read")),
                             (long long)json_integer_value(json_object_get(report, "quarantined")));
  }
  json_decref(report);
  return st;
}

static sw_status run_train(pipeline *p, stage_result *r) {
  sw_train_options o = {.model_path = setting(p, TRAIN, "model"), .data_dir = train_data(p), .out_dir = setting(p, TRAIN, "out"),
                        .steps = setting_int(p, TRAIN, "steps", 0), .epochs = setting_int(p, TRAIN, "epochs", 0),
                        .threads = p->opt->threads, .seed = setting_int(p, TRAIN, "seed", -1),
                        .log_every = setting_int(p, TRAIN, "log_every", 0), .overwrite = p->force[TRAIN],
                        .checkpoint_every_steps = setting_int(p, TRAIN, "checkpoint_every_steps", 0),
                        .checkpoint_every_seconds = setting_num(p, TRAIN, "checkpoint_every_seconds", 0),
                        .keep = (int)setting_int(p, TRAIN, "keep", 0), .stop = p->opt->stop, .debug_slow_rank = -1,
                        .debug_crash_rank = -1, .debug_corrupt_rank = -1};
  json_t *run = NULL;
  sw_status st = sw_train_run(&o, &run);
  if (st == SW_STATUS_REFUSED && !o.overwrite) {
    /* the run dir holds a run of another model file or dataset: this stage's key changed,
     * so that run is stale (a run of the same config would have resumed) */
    SW_INFO("pipeline %s: train: %s; starting over", p->name, sw_last_error());
    o.overwrite = true;
    st = sw_train_run(&o, &run);
  }
  if (st) {
    json_decref(run);
    return st;
  }
  char hex[SW_SHA256_HEX_LEN];
  st = file_sha256_in(o.out_dir, "model.onnx", hex);
  if (!st) {
    json_int_t resumed = json_integer_value(json_object_get(run, "resumed_at_step"));
    r->outputs = json_pack("{s:s, s:O, s:s, s:O, s:O, s:O, s:O?}", "run", o.out_dir, "params_sha256",
                           json_object_get(run, "params_sha256"), "onnx_sha256", hex, "manifest_sha256",
                           json_object_get(json_object_get(run, "dataset"), "manifest_sha256"), "steps",
                           json_object_get(run, "steps_done"), "resumed_at_step", json_object_get(run, "resumed_at_step"),
                           "val", json_object_get(run, "val"));
    const json_t *acc = json_object_get(json_object_get(run, "val"), "accuracy");
    char accs[48] = "";
    if (json_is_number(acc)) snprintf(accs, sizeof accs, ", val accuracy %.4f", json_number_value(acc));
    char res[48] = "";
    if (resumed > 0) snprintf(res, sizeof res, ", resumed at step %lld", (long long)resumed);
    r->summary = sw_asprintf("run %s (%lld steps%s%s)", o.out_dir, (long long)json_integer_value(json_object_get(run, "steps_done")),
                             res, accs);
  }
  json_decref(run);
  return st;
}

static void metrics_text(const json_t *metrics, char *buf, size_t cap) {
  size_t n = 0;
  const char *k;
  json_t *v;
  buf[0] = '\0';
  json_object_foreach((json_t *)metrics, k, v) {
    if (n < cap) n += (size_t)snprintf(buf + n, cap - n, "%s%s %.4f", n ? ", " : "", k, json_number_value(v));
  }
}

static sw_status run_eval(pipeline *p, stage_result *r) {
  sw_eval_options o = {.model_ref = out_str(p, TRAIN, "run"), .data_dir = train_data(p), .split = setting(p, EVAL, "split"),
                       .slice = setting(p, EVAL, "slice"), .threads = p->opt->threads};
  json_t *res = NULL;
  sw_status st = sw_eval_run(&o, &res);
  char hex[SW_SHA256_HEX_LEN];
  if (!st) st = canonical_sha(res, hex);
  const char *out = setting(p, EVAL, "out");
  if (!st && out) {
    char *d = sw_path_dirname(out);
    st = d ? sw_mkdir_p(d) : SW_STATUS_NOMEM;
    sw_free(d);
    if (!st) st = sw_json_write_file(out, res);
  }
  if (!st) {
    r->outputs = json_pack("{s:O, s:O, s:O, s:O, s:O, s:s, s:s?}", "split", json_object_get(res, "split"), "examples",
                           json_object_get(res, "examples"), "metrics", json_object_get(res, "metrics"), "params_sha256",
                           json_object_get(p->outputs[TRAIN], "params_sha256"), "manifest_sha256", json_object_get(res, "dataset"),
                           "sha256", hex, "out", out);
    char m[256];
    metrics_text(json_object_get(res, "metrics"), m, sizeof m);
    r->summary = sw_asprintf("%s split, %lld examples: %s", json_string_value(json_object_get(res, "split")),
                             (long long)json_integer_value(json_object_get(res, "examples")), m);
  }
  json_decref(res);
  return st;
}

/* The version of name holding this artifact, if one was registered before (a rerun after
 * the gate refused reuses it rather than adding a copy). */
static sw_status find_version(pipeline *p, const char *name, const char *artifact, char **ref) {
  *ref = NULL;
  json_t *all = NULL;
  sw_status st = sw_registry_list(p->reg, name, &all);
  size_t i;
  json_t *v;
  json_array_foreach(all, i, v) {
    if (!strcmp(json_string_value(json_object_get(v, "artifact_sha256")), artifact)) {
      sw_free(*ref);
      *ref = sw_asprintf("%s:%lld", name, (long long)json_integer_value(json_object_get(v, "version")));
    }
  }
  json_decref(all);
  return st;
}

static sw_status run_register(pipeline *p, stage_result *r) {
  const char *name = setting(p, REGISTER, "name") ? setting(p, REGISTER, "name") : p->name;
  const char *policy = setting(p, REGISTER, "policy");
  /* with a rollout after it, the gate blesses and the rollout moves production */
  const char *alias = setting(p, REGISTER, "alias") ? setting(p, REGISTER, "alias")
                      : p->settings[ROLLOUT]                     ? "candidate"
                                                                 : "production";
  char *ref = NULL, *why = NULL;
  json_t *ver = NULL, *promo = NULL;
  sw_status st = find_version(p, name, out_str(p, TRAIN, "onnx_sha256"), &ref);
  if (st == SW_STATUS_NOT_FOUND) {
    sw_clear_error();
    st = SW_STATUS_OK;
  }
  if (st) goto out;
  if (ref) {
    st = sw_registry_get_version(p->reg, ref, &ver);
    SW_INFO("pipeline %s: register: %s already holds this model; judging it again", p->name, ref);
  } else {
    char *desc = sw_asprintf("pipeline %s", p->name);
    sw_register_options o = {.name = name, .run_dir = out_str(p, TRAIN, "run"), .dataset_dir = train_data(p),
                             .description = setting(p, REGISTER, "description") ? setting(p, REGISTER, "description") : desc,
                             .who = p->opt->who};
    st = sw_registry_register(p->reg, &o, &ver);
    sw_free(desc);
    if (!st) ref = sw_strdup(json_string_value(json_object_get(ver, "ref")));
  }
  if (st) goto out;
  int64_t version = json_integer_value(json_object_get(ver, "version"));
  r->model = json_string_value(json_object_get(ver, "name"));
  r->version = version;
  bool passed = false;
  const char *state = json_string_value(json_object_get(ver, "state"));
  if (policy) {
    why = sw_asprintf("pipeline %s: gate of %s", p->name, policy);
    sw_promote_options po = {.registry = p->opt->registry, .home = p->opt->home, .ref = ref, .alias = alias,
                             .policy_path = policy, .data_dir = train_data(p), .who = p->opt->who, .why = why,
                             .threads = p->opt->threads};
    st = sw_promote(&po, &promo);
    if (st && st != SW_STATUS_REFUSED) goto out;
    passed = !st;
    if (promo) state = json_string_value(json_object_get(promo, "state"));
  }
  r->outputs = json_pack("{s:s, s:s, s:I, s:O, s:s, s:s?, s:b, s:O?}", "ref", ref, "name", name, "version", (json_int_t)version,
                         "artifact_sha256", json_object_get(json_object_get(ver, "artifact"), "sha256"), "state", state,
                         "alias", policy ? alias : NULL, "promoted", passed,
                         "failed", promo ? json_object_get(json_object_get(promo, "decision"), "failed") : NULL);
  if (!policy) r->summary = sw_asprintf("%s registered (no gate)", ref);
  else if (passed) r->summary = sw_asprintf("%s %s: gate passed, %s@%s -> %lld", ref, state, name, alias, (long long)version);
  else {
    sw_buf b = {0};
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(json_object_get(promo, "decision"), "failed"), i, f)
        sw_buf_printf(&b, "%s%s", i ? "; " : "", json_string_value(f));
    sw_buf_append(&b, "", 1);
    st = sw_error(SW_STATUS_REFUSED, "the gate refused %s: %s", ref, b.data ? (char *)b.data : "");
    r->summary = sw_strdup(sw_last_error());
    sw_buf_free(&b);
  }
out:
  json_decref(ver);
  json_decref(promo);
  sw_free(ref);
  sw_free(why);
  return st;
}

static sw_status run_rollout(pipeline *p, stage_result *r) {
  const char *ref = out_str(p, REGISTER, "ref"), *model = out_str(p, REGISTER, "name");
  int64_t version = json_integer_value(json_object_get(p->outputs[REGISTER], "version"));
  r->model = model;
  r->version = version;
  if (!json_is_true(json_object_get(p->outputs[REGISTER], "promoted")) && policy_of(p, REGISTER))
    return sw_error(SW_STATUS_REFUSED, "%s did not pass the gate", ref);
  json_t *policy = json_object();
  const char *pf = policy_of(p, ROLLOUT);
  if (pf) {
    sw_policy *pol = NULL;
    char *perr = NULL;
    sw_status st = sw_policy_load(pf, &pol, &perr);
    if (st) {
      json_decref(policy);
      st = sw_error(st, "%s", perr ? perr : sw_last_error());
      sw_free(perr);
      return st;
    }
    json_t *all = sw_policy_to_json(pol);
    json_t *section = json_object_get(all, "rollout");
    if (section) json_object_update(policy, section);
    json_decref(all);
    sw_policy_free(pol);
  }
  static const char *const overrides[] = {"steps", "min_requests_per_step", "max_step_seconds", "alpha",
                                          "keep_previous_minutes", "compare_latency"};
  for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
    if (json_object_get(p->settings[ROLLOUT], overrides[i]))
      json_object_set(policy, overrides[i], json_object_get(p->settings[ROLLOUT], overrides[i]));
  sw__rollout_request rq = {.server = setting(p, ROLLOUT, "server") ? setting(p, ROLLOUT, "server") : "http://127.0.0.1:8501",
                            .token_file = setting(p, ROLLOUT, "token_file"), .home = p->home, .model = model,
                            .challenger = version, .mode = setting(p, ROLLOUT, "mode") ? setting(p, ROLLOUT, "mode") : "canary",
                            .policy = policy, .timeout_s = setting_num(p, ROLLOUT, "timeout", 1800),
                            .poll_s = setting_num(p, ROLLOUT, "poll", 1), .stop = p->opt->stop};
  json_t *record = NULL;
  sw_status st = sw__rollout_run(&rq, &record);
  json_decref(policy);
  if (record) {
    const char *state = json_string_value(json_object_get(record, "state"));
    const json_t *dec = json_array_get(json_object_get(record, "decisions"), json_array_size(json_object_get(record, "decisions")) - 1);
    const char *reason = json_string_value(json_object_get(dec, "reason"));
    r->outputs = json_pack("{s:s, s:O, s:s, s:O, s:s?}", "ref", ref, "rollout", json_object_get(record, "id"), "state",
                           state ? state : "?", "weight", json_object_get(record, "weight"), "reason", reason);
    r->summary = sw_asprintf("rollout %lld of %s %s%s%s", (long long)json_integer_value(json_object_get(record, "id")), ref,
                             state ? state : "?", reason ? ": " : "", reason ? reason : "");
  }
  json_decref(record);
  return st;
}

static sw_status (*const RUNNERS[SW_PIPELINE_STAGES])(pipeline *, stage_result *) = {run_prep, run_train, run_eval, run_register,
                                                                                     run_rollout};

/* Executions this host started whose process is gone (killed mid-stage) end as failed, so
 * the record says what happened to them. */
static void end_orphans(pipeline *p) {
  json_t *all = NULL;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  if (sw_registry_executions(p->reg, p->name, &all)) {
    sw_clear_error();
    return;
  }
  size_t i;
  json_t *e;
  json_array_foreach(all, i, e) {
    const char *h = json_string_value(json_object_get(e, "host"));
    pid_t pid = (pid_t)json_integer_value(json_object_get(e, "pid"));
    if (strcmp(json_string_value(json_object_get(e, "state")), "running") || !h || strcmp(h, host) || pid <= 0) continue;
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    char *why = sw_asprintf("interrupted: process %d on %s ended without finishing the stage", (int)pid, host);
    if (sw_registry_execution_end(p->reg, json_integer_value(json_object_get(e, "id")), "failed", NULL, why, p->opt->who))
      sw_clear_error();
    sw_free(why);
  }
  json_decref(all);
}

static void pipeline_free(pipeline *p) {
  json_decref(p->doc);
  sw_free(p->file);
  sw_free(p->dir);
  sw_free(p->workdir);
  sw_free(p->home);
  sw_registry_close(p->reg);
  for (int s = 0; s < SW_PIPELINE_STAGES; s++) {
    json_decref(p->settings[s]);
    json_decref(p->outputs[s]);
  }
}

static sw_status load(pipeline *p, const sw_pipeline_options *opt) {
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return sw_error(SW_STATUS_IO, "getcwd: %s", strerror(errno));
  p->file = absolute_path(cwd, opt->path);
  if (!p->file) return SW_STATUS_NOMEM;
  sw_status st = sw_yaml_load_file(opt->path, &p->doc);
  if (st) return st;
  for (size_t i = 0; i < opt->n_sets; i++) {
    char *err = NULL;
    st = sw_pipeline_set(p->doc, opt->sets[i], &err);
    if (st) {
      st = sw_error(SW_STATUS_INVALID, "%s", err ? err : "bad --set");
      sw_free(err);
      return st;
    }
  }
  st = sw_pipeline_check(p->doc, opt->path, NULL);
  if (st) return st;
  p->name = json_string_value(json_object_get(p->doc, "name"));
  p->dir = sw_path_dirname(p->file);
  const char *wd = json_string_value(json_object_get(p->doc, "workdir"));
  p->workdir = opt->workdir ? absolute_path(cwd, opt->workdir) : wd ? absolute_path(p->dir, wd) : sw_strdup(p->dir);
  const char *home = opt->home && *opt->home ? opt->home : getenv("SLIPWAY_HOME");
  p->home = absolute_path(cwd, home && *home ? home : ".slipway");
  if (!p->dir || !p->workdir || !p->home) return SW_STATUS_NOMEM;
  for (size_t i = 0; i < opt->n_force; i++) {
    int s = sw__pipeline_stage_index(opt->force[i]);
    if (s < 0) return sw_error(SW_STATUS_INVALID, "--force %s: not a stage (prep, train, eval, register, rollout)", opt->force[i]);
    if (!json_object_get(json_object_get(p->doc, "stages"), opt->force[i]))
      return sw_error(SW_STATUS_INVALID, "--force %s: %s has no %s stage", opt->force[i], opt->path, opt->force[i]);
    p->force[s] = true;
  }
  p->until = SW_PIPELINE_STAGES - 1;
  if (opt->until) {
    p->until = sw__pipeline_stage_index(opt->until);
    if (p->until < 0) return sw_error(SW_STATUS_INVALID, "--until %s: not a stage (prep, train, eval, register, rollout)", opt->until);
    if (!json_object_get(json_object_get(p->doc, "stages"), opt->until))
      return sw_error(SW_STATUS_INVALID, "--until %s: %s has no %s stage", opt->until, opt->path, opt->until);
  }
  st = resolve_settings(p);
  if (!st) st = sw_mkdir_p(p->workdir);
  return st;
}

sw_status sw_pipeline_run(const sw_pipeline_options *opt, json_t **report) {
  *report = NULL;
  pipeline p = {.opt = opt};
  sw_status st = load(&p, opt);
  if (st) goto out;
  st = sw_registry_open(opt->registry, opt->home, &p.reg);
  if (st) goto out;
  end_orphans(&p);
  json_t *stages = json_array();
  *report = json_pack("{s:s, s:s, s:s, s:s, s:o}", "pipeline", p.name, "file", p.file, "workdir", p.workdir, "status", "complete",
                      "stages", stages);
  for (int s = 0; s < SW_PIPELINE_STAGES; s++) {
    if (!p.settings[s] || s > p.until) continue;
    const char *stage = sw_pipeline_stage_names[s];
    json_t *entry = json_pack("{s:s, s:s}", "stage", stage, "state", "not run");
    json_array_append_new(stages, entry);
    if (st) continue; /* after a failure the rest are listed as not run */
    double t0 = sw_now();
    stage_result r = {0};
    char key[SW_SHA256_HEX_LEN];
    int64_t exec_id = 0;
    json_t *hit = NULL;
    st = stage_inputs(&p, s, &r.inputs);
    if (!st) st = cache_key(&p, s, r.inputs, key);
    if (!st) json_object_set_new(entry, "cache_key", json_string(key));
    if (!st && !p.force[s]) {
      /* any pipeline's: the key already holds every input and setting, out paths included */
      if (sw_registry_execution_find(p.reg, NULL, stage, key, &hit) == SW_STATUS_OK &&
          outputs_verify(&p, s, json_object_get(hit, "outputs"))) {
        r.outputs = json_incref(json_object_get(hit, "outputs"));
      } else if (hit) {
        SW_INFO("pipeline %s: %s: execution %lld had this key but its outputs changed or are gone: running again", p.name, stage,
                (long long)json_integer_value(json_object_get(hit, "id")));
      }
      sw_clear_error();
    }
    if (!st && r.outputs) { /* cached */
      const char *ref = json_string_value(json_object_get(r.outputs, "ref"));
      sw_model_ref mr = {0};
      bool named = ref && !sw_model_ref_parse(ref, strlen(ref), &mr);
      sw_clear_error();
      sw_registry_execution e = {.pipeline = p.name, .stage = stage, .cache_key = key, .state = "cached", .inputs = r.inputs,
                                 .outputs = r.outputs, .model = named ? mr.name : NULL, .version = named ? mr.version : 0,
                                 .who = opt->who};
      st = sw_registry_execution_start(p.reg, &e, &exec_id);
      json_object_set_new(entry, "state", json_string("cached"));
      const char *was = json_string_value(json_object_get(r.outputs, "summary"));
      r.summary = sw_asprintf("%s (execution %lld)", was ? was : "reused", (long long)json_integer_value(json_object_get(hit, "id")));
      json_object_set_new(entry, "reused", json_incref(json_object_get(hit, "id")));
      SW_INFO("pipeline %s: %s: cached (key %.12s, execution %lld)", p.name, stage, key,
              (long long)json_integer_value(json_object_get(hit, "id")));
    } else if (!st) {
      sw_registry_execution e = {.pipeline = p.name, .stage = stage, .cache_key = key, .state = "running", .inputs = r.inputs,
                                 .who = opt->who};
      if (s == ROLLOUT) {
        e.model = out_str(&p, REGISTER, "name");
        e.version = json_integer_value(json_object_get(p.outputs[REGISTER], "version"));
      }
      st = sw_registry_execution_start(p.reg, &e, &exec_id);
      if (!st) {
        SW_INFO("pipeline %s: %s: running (key %.12s%s)", p.name, stage, key, p.force[s] ? ", forced" : "");
        st = RUNNERS[s](&p, &r);
        if (r.outputs && r.summary) json_object_set_new(r.outputs, "summary", json_string(r.summary));
        char *err = st ? sw_strdup(sw_last_error()[0] ? sw_last_error() : sw_strerror(st)) : NULL;
        sw_status end = sw_registry_execution_end(p.reg, exec_id, st ? "failed" : "complete", r.outputs, err, opt->who);
        if (st) {
          json_object_set_new(entry, "state", json_string(st == SW_STATUS_REFUSED ? "refused" : "failed"));
          json_object_set_new(entry, "error", json_string(err ? err : sw_strerror(st)));
          sw_error(st, "%s", err ? err : sw_strerror(st)); /* the stage's reason, not the record's */
        } else {
          json_object_set_new(entry, "state", json_string("complete"));
          st = end;
        }
        sw_free(err);
      }
    }
    json_object_set_new(entry, "seconds", json_real(sw_now() - t0));
    if (exec_id) json_object_set_new(entry, "execution", json_integer(exec_id));
    if (r.outputs) json_object_set(entry, "outputs", r.outputs);
    if (r.summary) json_object_set_new(entry, "summary", json_string(r.summary));
    if (st) {
      if (!json_object_get(entry, "error")) {
        json_object_set_new(entry, "state", json_string("failed"));
        json_object_set_new(entry, "error", json_string(sw_last_error()[0] ? sw_last_error() : sw_strerror(st)));
      }
      json_object_set_new(*report, "status", json_string(st == SW_STATUS_REFUSED ? "refused" : "failed"));
      json_object_set_new(*report, "failed_stage", json_string(stage));
      json_object_set(*report, "error", json_object_get(entry, "error"));
      SW_INFO("pipeline %s: %s: %s", p.name, stage, json_string_value(json_object_get(entry, "error")));
    } else {
      p.outputs[s] = json_incref(r.outputs);
      if (json_is_string(json_object_get(entry, "summary")) && strcmp(json_string_value(json_object_get(entry, "state")), "cached"))
        SW_INFO("pipeline %s: %s: %s", p.name, stage, json_string_value(json_object_get(entry, "summary")));
    }
    json_decref(hit);
    result_clear(&r);
  }
  if (st) sw_error(st, "%s", json_string_value(json_object_get(*report, "error")) ? json_string_value(json_object_get(*report, "error")) : sw_strerror(st));
out:
  pipeline_free(&p);
  return st;
}
