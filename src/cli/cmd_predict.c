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
#include "slipway/serve.h"
#include "slipway/train.h"

#define PREDICT_BATCH 256

static void help(void) {
  printf(
      "usage: slipway predict --model REF --input FILE|- [--data DIR]\n"
      "\n"
      "Runs a model over instances and prints its outputs. REF is a run dir, an .onnx\n"
      "file, or NAME:VERSION / NAME@ALIAS in the registry (its artifact hash-checked).\n"
      "The input is TensorFlow Serving's {\"instances\": [...]}: each instance a number,\n"
      "or a (nested) list of numbers, for a model with one input, or an object\n"
      "{INPUT: value} for several (NaN and Infinity accepted); or columns,\n"
      "{\"inputs\": ...}. The output is {\"predictions\": [...]}, one list per instance (an\n"
      "object per instance, by output name, when the model has several outputs), or\n"
      "{\"outputs\": ...} for columns: what `slipway serve` answers.\n"
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

/* Rows [first, first + n) of the request's inputs into the graph, and the outputs back. */
static void copy_in(predictor *p, const sw_serve_signature *sig, const sw_serve_inputs *in, int64_t first, int64_t n) {
  for (size_t k = 0; k < sig->n_in; k++) {
    size_t row = (size_t)sig->in[k].per * sw_dtype_size(sig->in[k].dtype);
    memcpy(sw_graph_data(p->g, p->in[k]), (const uint8_t *)in->in[k] + (size_t)first * row, (size_t)n * row);
  }
}

static void copy_out(predictor *p, const sw_serve_signature *sig, void **out, int64_t first, int64_t n) {
  for (size_t k = 0; k < sig->n_out; k++) {
    size_t row = (size_t)sig->out[k].per * sw_dtype_size(sig->out[k].dtype);
    memcpy((uint8_t *)out[k] + (size_t)first * row, sw_graph_data(p->g, p->out[k]), (size_t)n * row);
  }
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
  sw_serve_signature sig;
  sw_serve_inputs in = {0};
  void *outs[SW_SERVE_MAX_IO] = {0};
  sw_buf text = {0}, res = {0};
  uint8_t *file = NULL;
  size_t file_len = 0;
  sw_status st = SW_STATUS_OK;
  if (!strcmp(input, "-")) {
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0 && !st) st = sw_buf_append(&text, chunk, got);
    if (!st && ferror(stdin)) st = sw_error(SW_STATUS_IO, "stdin: read error");
  } else {
    st = sw_read_file(input, &file, &file_len);
  }
  if (st) goto out;
  if (sw_model_ref_is_registry(model)) st = load_registry(&p, model, registry, home);
  else st = ends_with(model, ".onnx") ? load_onnx(&p, model, NULL, 0) : load_run(&p, model, data_dir);
  if (!st) st = sw_graph_alloc(p.g, PREDICT_BATCH);
  if (!st) st = sw_graph_set_threads(p.g, threads);
  if (!st) st = sw_graph_set_batch(p.g, 1);
  if (!st) st = sw_serve_signature_of(p.g, p.in, p.in_name, p.n_in, p.out, p.n_out, &sig);
  if (st) goto out;
  sw_graph_set_training(p.g, false);
  /* the server's parser: {"instances": rows} or {"inputs": columns}, NaN and Infinity
   * accepted, numbers read exactly as strtod reads them */
  st = file ? sw_serve_parse_predict((const char *)file, file_len, &sig, &in)
            : sw_serve_parse_predict(text.data ? (const char *)text.data : "", text.len, &sig, &in);
  if (st) {
    sw_error_prefix(st, "%s: ", !strcmp(input, "-") ? "stdin" : input);
    goto out;
  }
  for (size_t k = 0; k < sig.n_out && !st; k++)
    if (!(outs[k] = sw_malloc((size_t)(in.rows * sig.out[k].per) * sw_dtype_size(sig.out[k].dtype))))
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
  for (int64_t first = 0; first < in.rows && !st; first += PREDICT_BATCH) {
    int64_t count = in.rows - first < PREDICT_BATCH ? in.rows - first : PREDICT_BATCH;
    st = sw_graph_set_batch(p.g, count);
    if (!st) copy_in(&p, &sig, &in, first, count);
    if (!st) st = sw_graph_forward(p.g);
    if (!st) copy_out(&p, &sig, outs, first, count);
  }
  if (!st) st = sw_serve_encode_predict(&sig, in.rows, in.columnar, outs, &res);
  if (st) goto out;
  fwrite(res.data, 1, res.len, stdout);
  fputc('\n', stdout);
out:
  if (st) fprintf(stderr, "slipway predict: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  for (size_t k = 0; k < SW_SERVE_MAX_IO; k++) sw_free(outs[k]);
  sw_serve_inputs_clear(&in, SW_SERVE_MAX_IO);
  sw_buf_free(&text);
  sw_buf_free(&res);
  sw_free(file);
  predictor_free(&p);
  return st ? SW_EXIT_FAILURE : SW_EXIT_OK;
}
