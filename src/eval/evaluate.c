/* The evaluator: a run's model over a dataset split, with the metric math of nn,
 * overall and per slice of one feature. */
#include <math.h>
#include <string.h>

#include "slipway/eval.h"
#include "slipway/registry.h"
#include "slipway/train.h"

typedef struct {
  char *key;             /* "FEATURE=VALUE", NULL for the whole split */
  sw_class_metrics cm;   /* classification (binary as two classes) */
  float *scores;         /* binary: positive-class probabilities, for the AUC */
  int64_t *labels;
  size_t n, cap;
  double se, ae;         /* regression: squared and absolute errors */
  int64_t count;
} accumulator;

typedef struct {
  sw_loss_kind loss;
  int64_t k;
  accumulator *acc;
  size_t n_acc;
} evaluation;

static sw_status acc_init(accumulator *a, int64_t k, const char *key) {
  memset(a, 0, sizeof *a);
  a->cm.k = k;
  a->cm.confusion = sw_calloc((size_t)(k * k), sizeof *a->cm.confusion);
  a->key = key ? sw_strdup(key) : NULL;
  if (!a->cm.confusion || (key && !a->key)) return sw_error(SW_STATUS_NOMEM, "out of memory");
  return SW_STATUS_OK;
}

static void acc_free(accumulator *a) {
  sw_free(a->cm.confusion);
  sw_free(a->scores);
  sw_free(a->labels);
  sw_free(a->key);
}

static accumulator *slice_acc(evaluation *e, const char *key) {
  for (size_t i = 1; i < e->n_acc; i++)
    if (!strcmp(e->acc[i].key, key)) return &e->acc[i];
  accumulator *v = sw_realloc(e->acc, (e->n_acc + 1) * sizeof *v);
  if (!v) return NULL;
  e->acc = v;
  if (acc_init(&e->acc[e->n_acc], e->k, key)) return NULL;
  return &e->acc[e->n_acc++];
}

/* Adds example i of the batch to an accumulator. */
static sw_status acc_add(evaluation *e, accumulator *a, const float *out, const void *label, size_t i) {
  a->count++;
  if (e->loss == SW_LOSS_MSE) {
    double d = (double)out[i] - (double)((const float *)label)[i];
    a->se += d * d;
    a->ae += fabs(d);
    return SW_STATUS_OK;
  }
  if (e->loss == SW_LOSS_SOFTMAX_CE) return sw_metrics_add_classes(&a->cm, out + i * (size_t)e->k, (const int64_t *)label + i, 1);
  float p = out[i], probs[2] = {1 - p, p};
  int64_t y = ((const float *)label)[i] > 0.5f;
  if (a->n == a->cap) {
    size_t cap = a->cap ? 2 * a->cap : 1024;
    float *s = sw_realloc(a->scores, cap * sizeof *s);
    if (s) a->scores = s;
    int64_t *l = sw_realloc(a->labels, cap * sizeof *l);
    if (l) a->labels = l;
    if (!s || !l) return sw_error(SW_STATUS_NOMEM, "out of memory");
    a->cap = cap;
  }
  a->scores[a->n] = p;
  a->labels[a->n++] = y;
  return sw_metrics_add_classes(&a->cm, probs, &y, 1);
}

static json_t *acc_metrics(const evaluation *e, const accumulator *a) {
  json_t *m = json_object();
  if (e->loss == SW_LOSS_MSE) {
    json_object_set_new(m, "rmse", json_real(a->count ? sqrt(a->se / (double)a->count) : NAN));
    json_object_set_new(m, "mae", json_real(a->count ? a->ae / (double)a->count : NAN));
    return m;
  }
  json_object_set_new(m, "accuracy", json_real(sw_metrics_accuracy(&a->cm)));
  json_object_set_new(m, "log_loss", json_real(sw_metrics_log_loss(&a->cm)));
  if (e->loss == SW_LOSS_BCE_WITH_LOGITS) {
    double auc = sw_metrics_auc(a->scores, a->labels, a->n);
    if (isfinite(auc)) json_object_set_new(m, "auc", json_real(auc));
  }
  return m;
}

/* The metrics, per-class table, confusion matrix and slices of an evaluation into res. */
static void add_results(json_t *res, const evaluation *e, const sw_feature_spec *lf, bool slices) {
  json_object_set_new(res, "metrics", acc_metrics(e, &e->acc[0]));
  if (e->loss == SW_LOSS_SOFTMAX_CE) {
    json_t *pc = json_array(), *conf = json_array();
    for (int64_t c = 0; c < e->k; c++) {
      char name[32];
      snprintf(name, sizeof name, "%lld", (long long)c);
      json_array_append_new(pc, json_pack("{s:s, s:f, s:f, s:I}", "class",
                                          lf && (int64_t)lf->n_classes > c ? lf->class_names[c] : name, "precision",
                                          sw_metrics_precision(&e->acc[0].cm, c), "recall",
                                          sw_metrics_recall(&e->acc[0].cm, c), "support",
                                          (json_int_t)sw_metrics_support(&e->acc[0].cm, c)));
      json_t *row = json_array();
      for (int64_t d = 0; d < e->k; d++) json_array_append_new(row, json_integer(e->acc[0].cm.confusion[c * e->k + d]));
      json_array_append_new(conf, row);
    }
    json_object_set_new(res, "per_class", pc);
    json_object_set_new(res, "confusion", conf);
  }
  if (slices) {
    json_t *sl = json_object();
    for (size_t i = 1; i < e->n_acc; i++)
      json_object_set_new(sl, e->acc[i].key, json_pack("{s:I, s:o}", "examples", (json_int_t)e->acc[i].count,
                                                       "metrics", acc_metrics(e, &e->acc[i])));
    json_object_set_new(res, "slices", sl);
  }
}

/* The slice key of example i: the feature's value, by its name when it has one. */
static void slice_key(const sw_dataset *ds, const char *feature, const sw_batch_tensor *t, size_t i, char *buf, size_t n) {
  const sw_feature_spec *fs = sw_schema_find(sw_dataset_schema(ds), feature);
  if (t->dtype == SW_DTYPE_F32) {
    snprintf(buf, n, "%s=%g", feature, ((const float *)t->data)[i]);
    return;
  }
  int64_t v = ((const int64_t *)t->data)[i];
  if (fs && fs->n_values && v >= 0 && v < (int64_t)fs->n_values) snprintf(buf, n, "%s=%s", feature, fs->values[v]);
  else if (fs && fs->n_classes && v >= 0 && v < (int64_t)fs->n_classes) snprintf(buf, n, "%s=%s", feature, fs->class_names[v]);
  else snprintf(buf, n, "%s=%lld", feature, (long long)v);
}

/* One evaluated batch into the overall accumulator and, with a slice feature, into the
 * accumulator of each example's slice. The same for run dirs and ONNX files. */
static sw_status add_batch(evaluation *e, const sw_dataset *ds, const char *slice_name, const sw_batch *b,
                           const float *out, const void *label) {
  const sw_batch_tensor *slice = NULL;
  if (slice_name) {
    slice = sw_batch_find(b, slice_name);
    int64_t per = 1;
    for (int d = 1; slice && d < slice->rank; d++) per *= slice->shape[d];
    if (!slice || per != 1)
      return sw_error(SW_STATUS_INVALID,
                      "--slice %s: the dataset has no single-valued numeric or categorical feature of that name",
                      slice_name);
  }
  sw_status st = SW_STATUS_OK;
  for (size_t i = 0; i < b->n && !st; i++) {
    st = acc_add(e, &e->acc[0], out, label, i);
    if (slice && !st) {
      char key[256];
      slice_key(ds, slice_name, slice, i, key, sizeof key);
      accumulator *a = slice_acc(e, key);
      st = a ? acc_add(e, a, out, label, i) : sw_error(SW_STATUS_NOMEM, "out of memory");
    }
  }
  return st;
}

/* The `eval --json` object of a finished evaluation (caller owns; NULL on no memory). */
static json_t *results(const sw_eval_options *opt, const sw_dataset *ds, const char *split, const evaluation *e,
                       const sw_feature_spec *lf) {
  json_t *res = json_pack("{s:s, s:s, s:s, s:I}", "model", opt->model_ref, "dataset", sw_dataset_sha256(ds), "split",
                          split, "examples", (json_int_t)e->acc[0].count);
  if (res) add_results(res, e, lf, opt->slice != NULL);
  return res;
}

static sw_status load_run(const char *ref, json_t **run, sw_model_spec **spec) {
  char *path = sw_path_join(ref, "run.json");
  if (!path) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_path_is_dir(ref) ? sw_json_load_file(path, run)
                                     : sw_error(SW_STATUS_NOT_FOUND, "model %s: not a run dir (no such directory)", ref);
  if (st == SW_STATUS_NOT_FOUND && sw_path_is_dir(ref)) st = sw_error(SW_STATUS_NOT_FOUND, "model %s: not a run dir (no run.json)", ref);
  sw_free(path);
  if (st) return st;
  if (!json_is_string(json_object_get(*run, "params_sha256")))
    return sw_error(SW_STATUS_FORMAT, "%s/run.json: the run did not finish (no params_sha256)", ref);
  return sw_model_spec_from_json(json_object_get(*run, "model"), ref, spec);
}

static bool is_onnx(const char *ref) {
  size_t n = strlen(ref);
  return n >= 5 && !strcmp(ref + n - 5, ".onnx");
}

static sw_status eval_onnx(const sw_eval_options *opt, const uint8_t *bytes, size_t len, json_t **result);

/* A registry version: its artifact, hash-checked in memory, is evaluated from there. */
static sw_status eval_registry(const sw_eval_options *opt, json_t **result) {
  sw_registry *reg = NULL;
  uint8_t *bytes = NULL;
  size_t len = 0;
  json_t *version = NULL;
  sw_status st = sw_registry_open(opt->registry, opt->home, &reg);
  if (!st) st = sw_registry_load_artifact(reg, opt->model_ref, &bytes, &len, &version);
  if (!st) st = eval_onnx(opt, bytes, len, result);
  if (!st) json_object_set(*result, "version", json_object_get(version, "ref"));
  json_decref(version);
  sw_free(bytes);
  sw_registry_close(reg);
  return st;
}

sw_status sw_eval_run(const sw_eval_options *opt, json_t **result) {
  *result = NULL;
  if (sw_model_ref_is_registry(opt->model_ref)) return eval_registry(opt, result);
  if (is_onnx(opt->model_ref)) return eval_onnx(opt, NULL, 0, result);
  json_t *run = NULL;
  sw_model_spec *spec = NULL;
  sw_dataset *ds = NULL;
  sw_model *m = NULL;
  sw_reader *r = NULL;
  evaluation e = {0};
  char *weights = NULL;
  const char *split = opt->split ? opt->split : "test";
  int64_t batch = opt->batch_size > 0 ? opt->batch_size : 256;
  sw_status st = load_run(opt->model_ref, &run, &spec);
  if (!st) st = sw_dataset_open(opt->data_dir, &ds);
  if (!st) st = sw_model_build(spec, ds, true, &m);
  if (!st) st = sw_graph_alloc(m->g, batch);
  if (!st) st = sw_graph_set_threads(m->g, opt->threads);
  if (st) goto out;
  sw_graph_set_training(m->g, false);
  weights = sw_path_join(opt->model_ref, "model.safetensors");
  st = weights ? sw_model_load(m, weights) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  char hex[SW_SHA256_HEX_LEN];
  st = sw_model_params_sha256(m, hex);
  if (st) goto out;
  if (strcmp(hex, json_string_value(json_object_get(run, "params_sha256"))) != 0) {
    st = sw_error(SW_STATUS_CORRUPT, "%s: the parameters hash to %s, run.json says %s", weights, hex,
                  json_string_value(json_object_get(run, "params_sha256")));
    goto out;
  }
  sw_reader_options ro = {0};
  st = sw_reader_open(ds, split, &ro, &r);
  if (st) goto out;
  e.loss = spec->loss;
  e.k = spec->loss == SW_LOSS_SOFTMAX_CE ? m->classes : 2;
  e.acc = sw_calloc(1, sizeof *e.acc);
  if (!e.acc) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  e.n_acc = 1;
  st = acc_init(&e.acc[0], e.k, NULL);
  const sw_batch *b;
  while (!st && (st = sw_reader_next(r, (size_t)batch, &b)) == SW_STATUS_OK) {
    st = sw_model_feed(m, spec, b);
    if (!st) st = sw_graph_forward(m->g);
    if (st) break;
    st = add_batch(&e, ds, opt->slice, b, sw_graph_data(m->g, m->output), sw_graph_data(m->g, m->label));
  }
  if (st == SW_STATUS_EOF) st = SW_STATUS_OK;
  if (st) goto out;
  *result = results(opt, ds, split, &e, sw_schema_find(sw_dataset_schema(ds), spec->label));
  if (!*result) st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  for (size_t i = 0; i < e.n_acc; i++) acc_free(&e.acc[i]);
  sw_free(e.acc);
  sw_free(weights);
  sw_reader_close(r);
  sw_model_free(m);
  sw_dataset_close(ds);
  sw_model_spec_free(spec);
  json_decref(run);
  return st;
}

/* ---- ONNX models ---------------------------------------------------------------------- */

/* The dataset feature each graph input is fed from: the file's metadata
 * "slipway.input_features" (a JSON list or comma-separated names, in input order), else
 * features named like the inputs, else the one feature that is not the label. */
static sw_status onnx_features(const sw_schema *schema, const json_t *meta, const sw_graph *g, const sw_node *inputs,
                               size_t n_in, const char **features, json_t **hold) {
  const char *spec = json_string_value(json_object_get(meta, "slipway.input_features"));
  if (spec) {
    json_t *list = spec[0] == '[' ? json_loads(spec, 0, NULL) : NULL;
    if (!list) {
      list = json_array();
      const char *p = spec;
      while (*p) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        json_array_append_new(list, json_stringn(p, len));
        p += len + (q ? 1 : 0);
      }
    }
    *hold = list;
    if (!json_is_array(list) || json_array_size(list) != n_in)
      return sw_error(SW_STATUS_INVALID, "the model's slipway.input_features names %zu features for %zu inputs",
                      json_is_array(list) ? json_array_size(list) : 0, n_in);
    for (size_t i = 0; i < n_in; i++) {
      features[i] = json_string_value(json_array_get(list, i));
      if (!features[i] || !sw_schema_find(schema, features[i]))
        return sw_error(SW_STATUS_INVALID, "the dataset has no feature '%s' (the model's slipway.input_features)", features[i] ? features[i] : "?");
    }
    return SW_STATUS_OK;
  }
  bool by_name = true;
  for (size_t i = 0; i < n_in; i++) {
    const sw_feature_spec *fs = sw_schema_find(schema, sw_graph_name(g, inputs[i]));
    by_name &= fs && !fs->is_label;
    features[i] = sw_graph_name(g, inputs[i]);
  }
  if (by_name) return SW_STATUS_OK;
  const char *only = NULL;
  size_t count = 0;
  for (size_t i = 0; i < schema->n_features; i++)
    if (!schema->features[i].is_label && (int)i != schema->label) {
      only = schema->features[i].name;
      count++;
    }
  if (n_in != 1 || count != 1)
    return sw_error(SW_STATUS_INVALID, "the model's inputs do not name dataset features and it has no slipway.input_features metadata");
  features[0] = only;
  return SW_STATUS_OK;
}

static sw_status onnx_feed(sw_graph *g, sw_node node, const sw_batch_tensor *t) {
  int64_t want = sw_graph_elements(g, node), have = 1;
  for (int d = 0; d < t->rank; d++) have *= t->shape[d];
  if (want != have)
    return sw_error(SW_STATUS_INVALID, "feature '%s' has %lld values in this batch, input '%s' takes %lld", t->name,
                    (long long)have, sw_graph_name(g, node), (long long)want);
  void *dst = sw_graph_data(g, node);
  sw_dtype dt = sw_graph_dtype(g, node);
  if (dt == t->dtype) memcpy(dst, t->data, (size_t)want * sw_dtype_size(dt));
  else if (dt == SW_DTYPE_F32)
    for (int64_t i = 0; i < want; i++) ((float *)dst)[i] = (float)((const int64_t *)t->data)[i];
  else
    for (int64_t i = 0; i < want; i++) ((int64_t *)dst)[i] = (int64_t)((const float *)t->data)[i];
  return SW_STATUS_OK;
}

/* Rows of k scores as probabilities: kept when every row already sums to 1 (within
 * 1e-4, none negative), else softmax of each row. k = 1: a sigmoid unless in [0, 1]. */
static void as_probabilities(float *v, size_t n, int64_t k) {
  bool probs = true;
  for (size_t i = 0; i < n && probs; i++) {
    double sum = 0;
    for (int64_t j = 0; j < k; j++) {
      float x = v[i * (size_t)k + (size_t)j];
      if (!(x >= 0 && x <= 1)) probs = false;
      sum += x;
    }
    if (k > 1 && fabs(sum - 1) > 1e-4) probs = false;
  }
  if (probs) return;
  for (size_t i = 0; i < n; i++) {
    float *row = v + i * (size_t)k;
    if (k == 1) {
      row[0] = 1.0f / (1.0f + expf(-row[0]));
      continue;
    }
    float mx = row[0];
    for (int64_t j = 1; j < k; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < k; j++) sum += exp((double)(row[j] - mx));
    for (int64_t j = 0; j < k; j++) row[j] = (float)(exp((double)(row[j] - mx)) / sum);
  }
}

/* bytes: the model file already in memory (NULL: read model_ref). */
static sw_status eval_onnx(const sw_eval_options *opt, const uint8_t *bytes, size_t len, json_t **result) {
  sw_graph *g = NULL;
  sw_node *outputs = NULL, inputs[16];
  size_t n_out = 0, n_in = 0;
  json_t *meta = NULL, *hold = NULL;
  sw_dataset *ds = NULL;
  sw_reader *r = NULL;
  evaluation e = {0};
  float *out = NULL;
  void *label = NULL;
  const char *features[16];
  const char *split = opt->split ? opt->split : "test";
  int64_t batch = opt->batch_size > 0 ? opt->batch_size : 256;
  sw_status st = bytes ? sw_onnx_import_mem(bytes, len, opt->model_ref, &g, &outputs, &n_out, &meta)
                      : sw_onnx_import(opt->model_ref, &g, &outputs, &n_out, &meta);
  if (!st) st = sw_dataset_open(opt->data_dir, &ds);
  if (st) goto out;
  for (size_t i = 0; i < sw_graph_size(g) && !st; i++)
    if (sw_graph_op_type(g, (sw_node)i) == SW_OP_INPUT) {
      if (n_in == 16) st = sw_error(SW_STATUS_UNSUPPORTED, "%s: more than 16 inputs", opt->model_ref);
      else inputs[n_in++] = (sw_node)i;
    }
  const sw_schema *schema = sw_dataset_schema(ds);
  if (!st && (schema->label < 0 || (size_t)schema->label >= schema->n_features))
    st = sw_error(SW_STATUS_INVALID, "the dataset has no label feature");
  if (!st) st = onnx_features(schema, meta, g, inputs, n_in, features, &hold);
  if (!st && sw_graph_dtype(g, outputs[0]) != SW_DTYPE_F32)
    st = sw_error(SW_STATUS_UNSUPPORTED, "%s: the first output is not float", opt->model_ref);
  if (!st) st = sw_graph_alloc(g, batch);
  if (!st) st = sw_graph_set_threads(g, opt->threads);
  if (st) goto out;
  sw_graph_set_training(g, false);
  const sw_feature_spec *lf = &schema->features[schema->label];
  int64_t k = 1;
  for (int d = 1; d < sw_graph_rank(g, outputs[0]); d++) k *= sw_graph_shape(g, outputs[0])[d];
  bool int_label = lf->kind == SW_FEATURE_KIND_INT64 || lf->n_classes > 0;
  e.loss = !int_label ? SW_LOSS_MSE : k > 1 ? SW_LOSS_SOFTMAX_CE : SW_LOSS_BCE_WITH_LOGITS;
  e.k = e.loss == SW_LOSS_SOFTMAX_CE ? k : 2;
  if (!int_label && k != 1) {
    st = sw_error(SW_STATUS_UNSUPPORTED, "%s: %lld outputs per example for a numeric label", opt->model_ref, (long long)k);
    goto out;
  }
  out = sw_malloc((size_t)(batch * k) * sizeof *out);
  label = sw_malloc((size_t)batch * 8);
  e.acc = sw_calloc(1, sizeof *e.acc);
  if (!out || !label || !e.acc) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  e.n_acc = 1;
  st = acc_init(&e.acc[0], e.k, NULL);
  sw_reader_options ro = {0};
  if (!st) st = sw_reader_open(ds, split, &ro, &r);
  const sw_batch *b;
  while (!st && (st = sw_reader_next(r, (size_t)batch, &b)) == SW_STATUS_OK) {
    st = sw_graph_set_batch(g, (int64_t)b->n);
    for (size_t i = 0; i < n_in && !st; i++) {
      const sw_batch_tensor *t = sw_batch_find(b, features[i]);
      st = t ? onnx_feed(g, inputs[i], t) : sw_error(SW_STATUS_INVALID, "the batch has no feature '%s'", features[i]);
    }
    const sw_batch_tensor *lt = sw_batch_find(b, lf->name);
    if (!st && (!lt || (size_t)sw_graph_elements(g, outputs[0]) != b->n * (size_t)k))
      st = sw_error(SW_STATUS_INVALID, "the batch has no label '%s' or the output has the wrong size", lf->name);
    if (!st) st = sw_graph_forward(g);
    if (st) break;
    memcpy(out, sw_graph_data(g, outputs[0]), b->n * (size_t)k * sizeof *out);
    if (e.loss != SW_LOSS_MSE) as_probabilities(out, b->n, k);
    for (size_t i = 0; i < b->n; i++) {
      double y = lt->dtype == SW_DTYPE_F32 ? ((const float *)lt->data)[i] : (double)((const int64_t *)lt->data)[i];
      if (e.loss == SW_LOSS_SOFTMAX_CE) ((int64_t *)label)[i] = (int64_t)y;
      else ((float *)label)[i] = (float)y;
    }
    st = add_batch(&e, ds, opt->slice, b, out, label);
  }
  if (st == SW_STATUS_EOF) st = SW_STATUS_OK;
  if (st) goto out;
  *result = results(opt, ds, split, &e, lf);
  if (!*result) st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  for (size_t i = 0; i < e.n_acc; i++) acc_free(&e.acc[i]);
  sw_free(e.acc);
  sw_free(out);
  sw_free(label);
  json_decref(hold);
  json_decref(meta);
  sw_reader_close(r);
  sw_dataset_close(ds);
  sw_free(outputs);
  sw_graph_free(g);
  return st;
}
