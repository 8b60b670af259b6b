/* slipway export: a finished run's model (weights verified against run.json) as an ONNX
 * file, the same artifact training writes to RUN/model.onnx. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/train.h"

static void help(void) {
  printf(
      "usage: slipway export --model RUN --out FILE.onnx [--data DIR]\n"
      "\n"
      "Writes a trained model (a run dir) as ONNX: inference mode, the dataset's input\n"
      "normalization as its first nodes, a symbolic batch dimension \"N\", and metadata_props\n"
      "slipway.class_names, slipway.input_features, slipway.run and slipway.model. The same\n"
      "weights give the same bytes. docs/ONNX.md lists the operators.\n"
      "\n"
      "flags:\n"
      "  --model RUN   the run dir (run.json, model.safetensors)\n"
      "  --out FILE    the ONNX file to write (atomically)\n"
      "  --data DIR    the dataset (default: the one run.json names)\n");
}

static sw_status export_run(const char *ref, const char *data_dir, const char *out) {
  json_t *run = NULL;
  sw_model_spec *spec = NULL;
  sw_dataset *ds = NULL;
  sw_model *m = NULL;
  char *path = sw_path_join(ref, "run.json");
  sw_status st = !path ? sw_error(SW_STATUS_NOMEM, "out of memory")
                 : sw_path_is_dir(ref) ? sw_json_load_file(path, &run)
                                       : sw_error(SW_STATUS_NOT_FOUND, "model %s: not a run dir (no such directory)", ref);
  sw_free(path);
  path = NULL;
  if (st) goto out;
  const char *want = json_string_value(json_object_get(run, "params_sha256"));
  if (!want) {
    st = sw_error(SW_STATUS_FORMAT, "%s/run.json: the run did not finish (no params_sha256)", ref);
    goto out;
  }
  if (!data_dir) data_dir = json_string_value(json_object_get(json_object_get(run, "dataset"), "path"));
  if (!data_dir) {
    st = sw_error(SW_STATUS_FORMAT, "%s/run.json names no dataset path: give --data", ref);
    goto out;
  }
  st = sw_model_spec_from_json(json_object_get(run, "model"), ref, &spec);
  if (!st) st = sw_dataset_open(data_dir, &ds);
  if (!st) st = sw_model_build(spec, ds, false, &m);
  if (st) goto out;
  path = sw_path_join(ref, "model.safetensors");
  st = path ? sw_model_load(m, path) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  char hex[SW_SHA256_HEX_LEN];
  st = sw_model_params_sha256(m, hex);
  if (!st && strcmp(hex, want) != 0)
    st = sw_error(SW_STATUS_CORRUPT, "%s: the parameters hash to %s, run.json says %s", path, hex, want);
  if (!st) st = sw_model_export_onnx(m, spec, ds, hex, out);
out:
  sw_free(path);
  sw_model_free(m);
  sw_dataset_close(ds);
  sw_model_spec_free(spec);
  json_decref(run);
  return st;
}

int sw_cmd_export(int argc, char **argv) {
  enum { OPT_MODEL = 256, OPT_OUT, OPT_DATA, OPT_HELP };
  static const struct option longopts[] = {{"model", required_argument, 0, OPT_MODEL},
                                           {"out", required_argument, 0, OPT_OUT},
                                           {"data", required_argument, 0, OPT_DATA},
                                           {"help", no_argument, 0, OPT_HELP},
                                           {0, 0, 0, 0}};
  const char *model = NULL, *out = NULL, *data = NULL;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL: model = optarg; break;
      case OPT_OUT: out = optarg; break;
      case OPT_DATA: data = optarg; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("export", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
  if (!model || !out) return sw_cli_usage_error("export", "--model and --out are required");
  sw_status st = export_run(model, data, out);
  if (st) {
    fprintf(stderr, "slipway export: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    return sw_cli_exit_code(st);
  }
  return SW_EXIT_OK;
}
