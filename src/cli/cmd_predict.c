/* slipway predict: a model (a run dir or an .onnx file) over JSON instances in
 * TensorFlow Serving's form, {"instances": [...]}, printing {"predictions": [...]}. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/data.h"
#include "slipway/nn.h"
#include "slipway/registry.h"
#include "slipway/train.h"

#define PREDICT_BATCH 256

static void help(void) {
  printf(
      "usage: slipway predict --model REF --input FILE|- [--data DIR]\n"
      "\n"
      "Runs a model over instances and prints its outputs. REF is a run dir, an .onnx\n"
      "file, or NAME:VERSION / NAME@ALIAS in the registry (its artifact hash-checked). The input is {\"instances\": [...]}: each instance a number, or a (nested) list\n"
      "of numbers, for a model with one input, or an object {INPUT: value} for several.\n"
      "The output is {\"predictions\": [...]}, one list per instance (an object per\n"
      "instance, by output name, when the model has several outputs).\n"
      "\n"
      "flags:\n"
      "  --model REF      a run dir, an .onnx file, NAME:VERSION or NAME@ALIAS\n"
      "  --registry URL   the registry for NAME:V refs (default $SLIPWAY_REGISTRY, else\n"
      "                   $SLIPWAY_HOME/registry.db)\n"
      "  --home DIR       the registry's artifacts (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --input FILE     the instances; '-' reads stdin\n"
      "  --data DIR       a run dir's dataset (its transform is part of the model;\n"
      "                   default: the path in run.json)\n"
      "  --threads T      CPU threads (default: all cores)\n");
}

typedef struct {
  sw_graph *g;
  size_t n_in, n_out;
  sw_node in[SW_MODEL_MAX_INPUTS];
  const char *in_name[SW_MODEL_MAX_INPUTS];
  sw_node *out;
  /* run dirs */
  sw_model *model;
  sw_model_spec *spec;
  sw_dataset *ds;
  json_t *run;
} predictor;

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* bytes: the model file already in memory (a registry artifact), NULL: read ref. */
static sw_status load_onnx(predictor *p, const char *ref, const uint8_t *bytes, size_t len) {
  sw_status st = bytes ? sw_onnx_import_mem(bytes, len, ref, &p->g, &p->out, &p->n_out, NULL)
                       : sw_onnx_import(ref, &p->g, &p->out, &p->n_out, NULL);
  if (st) return st;
  for (size_t i = 0; i < sw_graph_size(p->g); i++) {
    if (sw_graph_op_type(p->g, (sw_node)i) != SW_OP_INPUT) continue;
    if (p->n_in == SW_MODEL_MAX_INPUTS) return sw_error(SW_STATUS_UNSUPPORTED, "%s: more than %d inputs", ref, SW_MODEL_MAX_INPUTS);
    p->in[p->n_in] = (sw_node)i;
    p->in_name[p->n_in++] = sw_graph_name(p->g, (sw_node)i);
  }
  if (!p->n_in) return sw_error(SW_STATUS_UNSUPPORTED, "%s: the model has no inputs", ref);
  return SW_STATUS_OK;
}

static sw_status load_run(predictor *p, const char *ref, const char *data_dir) {
  char *path = sw_path_join(ref, "run.json"), *weights = sw_path_join(ref, "model.safetensors");
  sw_status st = path && weights ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st && !sw_path_is_dir(ref)) st = sw_error(SW_STATUS_NOT_FOUND, "model %s: neither a run dir nor an .onnx file", ref);
  if (!st) st = sw_json_load_file(path, &p->run);
  const char *data = NULL;
  if (!st) {
    data = data_dir ? data_dir : json_string_value(json_object_get(json_object_get(p->run, "dataset"), "path"));
    if (!data) st = sw_error(SW_STATUS_FORMAT, "%s: no dataset path (pass --data DIR)", path);
    else if (!sw_path_is_dir(data))
      st = sw_error(SW_STATUS_NOT_FOUND, "the run's dataset %s is not there (its transform is part of the model): pass --data DIR", data);
  }
  if (!st) st = sw_model_spec_from_json(json_object_get(p->run, "model"), ref, &p->spec);
  if (!st) st = sw_dataset_open(data, &p->ds);
  if (!st) st = sw_model_build(p->spec, p->ds, false, &p->model);
  if (!st) st = sw_model_load(p->model, weights);
  char hex[SW_SHA256_HEX_LEN];
  if (!st) st = sw_model_params_sha256(p->model, hex);
  const char *want = json_string_value(json_object_get(p->run, "params_sha256"));
  if (!st && (!want || strcmp(hex, want)))
    st = sw_error(SW_STATUS_CORRUPT, "%s: the parameters hash to %s, run.json says %s", weights, hex, want ? want : "nothing (the run did not finish)");
  if (!st) {
    p->g = p->model->g;
    p->n_in = p->model->n_inputs;
    for (size_t i = 0; i < p->n_in; i++) {
      p->in[i] = p->model->inputs[i];
      p->in_name[i] = p->spec->inputs[i].feature;
    }
    p->out = sw_calloc(1, sizeof *p->out);
    if (!p->out) st = sw_error(SW_STATUS_NOMEM, "out of memory");
    else {
      p->out[0] = p->model->output;
      p->n_out = 1;
    }
  }
  sw_free(path);
  sw_free(weights);
  return st;
}

/* A registry version: its artifact, checked against its SHA-256 in memory, then loaded. */
static sw_status load_registry(predictor *p, const char *ref, const char *url, const char *home) {
  sw_registry *reg = NULL;
  uint8_t *bytes = NULL;
  size_t len = 0;
  sw_status st = sw_registry_open(url, home, &reg);
  if (!st) st = sw_registry_load_artifact(reg, ref, &bytes, &len, NULL);
  if (!st) st = load_onnx(p, ref, bytes, len);
  sw_free(bytes);
  sw_registry_close(reg);
  return st;
}

static void predictor_free(predictor *p) {
  if (p->model) sw_model_free(p->model);
  else sw_graph_free(p->g);
  sw_free(p->out);
  sw_model_spec_free(p->spec);
  sw_dataset_close(p->ds);
  json_decref(p->run);
}

/* Writes the numbers of a (nested) list in order; false when something else is there
 * or there are more than cap. */
static bool flatten(const json_t *j, sw_dtype dt, void *dst, int64_t cap, int64_t *n, const char **why) {
  if (json_is_array(j)) {
    size_t i;
    const json_t *e;
    json_array_foreach(j, i, e) if (!flatten(e, dt, dst, cap, n, why)) return false;
    return true;
  }
  if (!json_is_number(j)) {
    *why = "holds something other than numbers";
    return false;
  }
  if (*n >= cap) {
    *n = cap + 1;
    return true;
  }
  double v = json_number_value(j);
  if (dt == SW_DTYPE_F32) ((float *)dst)[*n] = (float)v;
  else {
    if (!json_is_integer(j)) {
      *why = "needs integers";
      return false;
    }
    ((int64_t *)dst)[*n] = json_integer_value(j);
  }
  (*n)++;
  return true;
}

static int64_t per_example(const sw_graph *g, sw_node n) {
  int64_t k = 1;
  for (int d = 1; d < sw_graph_rank(g, n); d++) k *= sw_graph_shape(g, n)[d];
  return k;
}

static sw_status feed(predictor *p, const json_t *instances, size_t first, size_t count) {
  sw_status st = sw_graph_set_batch(p->g, (int64_t)count);
  if (st) return st;
  for (size_t k = 0; k < p->n_in; k++) {
    sw_dtype dt = sw_graph_dtype(p->g, p->in[k]);
    int64_t per = per_example(p->g, p->in[k]);
    uint8_t *data = sw_graph_data(p->g, p->in[k]);
    for (size_t i = 0; i < count; i++) {
      const json_t *inst = json_array_get(instances, first + i), *v = inst;
      if (json_is_object(inst)) {
        v = json_object_get(inst, p->in_name[k]);
        if (!v) return sw_error(SW_STATUS_FORMAT, "instance %zu: no value for input '%s'", first + i, p->in_name[k]);
      } else if (p->n_in > 1) {
        return sw_error(SW_STATUS_FORMAT, "instance %zu: the model has %zu inputs: give an object {input: value}", first + i, p->n_in);
      }
      int64_t n = 0;
      const char *why = "";
      if (!flatten(v, dt, data + (size_t)(i * per) * 8 / (dt == SW_DTYPE_F32 ? 2 : 1), per, &n, &why))
        return sw_error(SW_STATUS_FORMAT, "instance %zu: input '%s' %s", first + i, p->in_name[k], why);
      if (n != per)
        return sw_error(SW_STATUS_FORMAT, "instance %zu: input '%s' needs %lld values, got %s%lld", first + i, p->in_name[k],
                        (long long)per, n > per ? "more than " : "", (long long)(n > per ? per : n));
    }
  }
  return SW_STATUS_OK;
}

/* Example i of an output as a nested list in the output's per-example shape. */
static json_t *nested(const sw_graph *g, sw_node n, const void *data, int dim, int64_t *pos) {
  int rank = sw_graph_rank(g, n);
  if (dim == rank) {
    int64_t k = (*pos)++;
    if (sw_graph_dtype(g, n) != SW_DTYPE_F32) return json_integer(((const int64_t *)data)[k]);
    float f = ((const float *)data)[k];
    return isfinite(f) ? json_real(f) : json_null(); /* JSON has no NaN or infinity */
  }
  json_t *a = json_array();
  for (int64_t i = 0; i < sw_graph_shape(g, n)[dim]; i++) json_array_append_new(a, nested(g, n, data, dim + 1, pos));
  return a;
}

static json_t *example_output(predictor *p, size_t k, size_t i) {
  sw_node n = p->out[k];
  const void *data = sw_graph_data(p->g, n);
  if (sw_graph_rank(p->g, n) == 0) {
    int64_t pos = 0;
    return nested(p->g, n, data, 0, &pos);
  }
  int64_t pos = (int64_t)i * per_example(p->g, n);
  return nested(p->g, n, data, 1, &pos);
}

int sw_cmd_predict(int argc, char **argv) {
  enum { OPT_MODEL = 256, OPT_INPUT, OPT_DATA, OPT_THREADS, OPT_REGISTRY, OPT_HOME, OPT_HELP };
  static const struct option longopts[] = {{"model", required_argument, 0, OPT_MODEL},
                                           {"input", required_argument, 0, OPT_INPUT},
                                           {"data", required_argument, 0, OPT_DATA},
                                           {"threads", required_argument, 0, OPT_THREADS},
                                           {"registry", required_argument, 0, OPT_REGISTRY},
                                           {"home", required_argument, 0, OPT_HOME},
                                           {"help", no_argument, 0, OPT_HELP},
                                           {0, 0, 0, 0}};
  const char *model = NULL, *input = NULL, *data_dir = NULL, *registry = NULL, *home = NULL;
  int threads = 0;
  long long n;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL: model = optarg; break;
      case OPT_INPUT: input = optarg; break;
      case OPT_DATA: data_dir = optarg; break;
      case OPT_REGISTRY: registry = optarg; break;
      case OPT_HOME: home = optarg; break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("predict", "--threads: '%s' is not a count from 1 to 1024", optarg);
        threads = (int)n;
        break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("predict", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("predict", "unexpected argument '%s'", argv[optind]);
  if (!model || !input) return sw_cli_usage_error("predict", "--model and --input are required");

  predictor p = {0};
  json_t *doc = NULL, *preds = NULL;
  json_error_t jerr;
  sw_status st = SW_STATUS_OK;
  doc = !strcmp(input, "-") ? json_loadf(stdin, 0, &jerr) : json_load_file(input, 0, &jerr);
  if (!doc) {
    st = sw_error(SW_STATUS_FORMAT, "%s: line %d: %s", !strcmp(input, "-") ? "stdin" : input, jerr.line, jerr.text);
    goto out;
  }
  const json_t *instances = json_object_get(doc, "instances");
  if (!json_is_array(instances) || json_array_size(instances) == 0) {
    st = sw_error(SW_STATUS_FORMAT, "%s: needs {\"instances\": [...]} with at least one instance", input);
    goto out;
  }
  if (sw_model_ref_is_registry(model)) st = load_registry(&p, model, registry, home);
  else st = ends_with(model, ".onnx") ? load_onnx(&p, model, NULL, 0) : load_run(&p, model, data_dir);
  size_t total = json_array_size(instances);
  int64_t max_batch = total < PREDICT_BATCH ? (int64_t)total : PREDICT_BATCH;
  if (!st) st = sw_graph_alloc(p.g, max_batch);
  if (!st) st = sw_graph_set_threads(p.g, threads);
  if (st) goto out;
  sw_graph_set_training(p.g, false);
  preds = json_array();
  for (size_t first = 0; first < total && !st; first += (size_t)max_batch) {
    size_t count = total - first < (size_t)max_batch ? total - first : (size_t)max_batch;
    st = feed(&p, instances, first, count);
    if (!st) st = sw_graph_forward(p.g);
    for (size_t i = 0; i < count && !st; i++) {
      if (p.n_out == 1) {
        json_array_append_new(preds, example_output(&p, 0, i));
        continue;
      }
      json_t *o = json_object();
      for (size_t k = 0; k < p.n_out; k++) json_object_set_new(o, sw_graph_name(p.g, p.out[k]), example_output(&p, k, i));
      json_array_append_new(preds, o);
    }
  }
  if (st) goto out;
  json_t *res = json_pack("{s:O}", "predictions", preds);
  json_dumpf(res, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9));
  fputc('\n', stdout);
  json_decref(res);
out:
  if (st) fprintf(stderr, "slipway predict: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  json_decref(preds);
  json_decref(doc);
  predictor_free(&p);
  return st ? SW_EXIT_FAILURE : SW_EXIT_OK;
}
