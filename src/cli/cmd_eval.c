/* slipway eval: flags in, sw_eval_run does the work, the metrics (or --json) out. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/eval.h"

static void help(void) {
  printf(
      "usage: slipway eval --model REF --data DIR [--split test] [--slice FEATURE] [--json]\n"
      "\n"
      "Runs a model (a run dir, an ONNX file, or NAME:VERSION / NAME@ALIAS in the registry,\n"
      "its artifact hash-checked before it is loaded) over a dataset split and prints its metrics:\n"
      "classification accuracy, log-loss, per-class precision and recall, the confusion\n"
      "matrix; binary AUC; regression RMSE and MAE; and the same per value of --slice.\n"
      "\n"
      "flags:\n"
      "  --split NAME     the split (test)\n"
      "  --registry URL   the registry for NAME:V refs (default $SLIPWAY_REGISTRY, else\n"
      "                   $SLIPWAY_HOME/registry.db)\n"
      "  --home DIR       the registry's artifacts (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --slice FEATURE  metrics per value of this feature as well\n"
      "  --threads T      CPU threads (default: all cores)\n"
      "  --batch N        examples per forward pass (256)\n"
      "  --json           print the result as JSON (DESIGN.md's shape)\n");
}

int sw_cmd_eval(int argc, char **argv) {
  enum { OPT_MODEL = 256, OPT_DATA, OPT_SPLIT, OPT_SLICE, OPT_THREADS, OPT_BATCH, OPT_JSON, OPT_REGISTRY, OPT_HOME, OPT_HELP };
  static const struct option longopts[] = {
      {"model", required_argument, 0, OPT_MODEL}, {"data", required_argument, 0, OPT_DATA},
      {"split", required_argument, 0, OPT_SPLIT}, {"slice", required_argument, 0, OPT_SLICE},
      {"threads", required_argument, 0, OPT_THREADS}, {"batch", required_argument, 0, OPT_BATCH},
      {"json", no_argument, 0, OPT_JSON},         {"help", no_argument, 0, OPT_HELP},
      {"registry", required_argument, 0, OPT_REGISTRY}, {"home", required_argument, 0, OPT_HOME},
      {0, 0, 0, 0}};
  sw_eval_options o = {0};
  bool as_json = false;
  long long n;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL: o.model_ref = optarg; break;
      case OPT_DATA: o.data_dir = optarg; break;
      case OPT_SPLIT: o.split = optarg; break;
      case OPT_SLICE: o.slice = optarg; break;
      case OPT_REGISTRY: o.registry = optarg; break;
      case OPT_HOME: o.home = optarg; break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("eval", "--threads: '%s' is not a count from 1 to 1024", optarg);
        o.threads = (int)n;
        break;
      case OPT_BATCH:
        if (!sw_cli_parse_int(optarg, 1, 1 << 20, &n)) return sw_cli_usage_error("eval", "--batch: '%s' is not a count >= 1", optarg);
        o.batch_size = n;
        break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("eval", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
  if (!o.model_ref || !o.data_dir) return sw_cli_usage_error("eval", "--model and --data are required");
  json_t *res = NULL;
  sw_status st = sw_eval_run(&o, &res);
  if (st) {
    fprintf(stderr, "slipway eval: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    return sw_cli_exit_code(st);
  }
  if (as_json) {
    json_dumpf(res, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
  } else {
    printf("%s on %s split (%lld examples)\n", o.model_ref, json_string_value(json_object_get(res, "split")),
           (long long)json_integer_value(json_object_get(res, "examples")));
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(res, "metrics"), key, v) { printf("  %-10s %.4f\n", key, json_real_value(v)); }
    size_t i;
    json_array_foreach(json_object_get(res, "per_class"), i, v) {
      printf("  class %-14s precision %.4f recall %.4f support %lld\n", json_string_value(json_object_get(v, "class")),
             json_real_value(json_object_get(v, "precision")), json_real_value(json_object_get(v, "recall")),
             (long long)json_integer_value(json_object_get(v, "support")));
    }
    json_object_foreach(json_object_get(res, "slices"), key, v) {
      printf("  slice %s (%lld):", key, (long long)json_integer_value(json_object_get(v, "examples")));
      const char *mk;
      json_t *mv;
      json_object_foreach(json_object_get(v, "metrics"), mk, mv) { printf(" %s %.4f", mk, json_real_value(mv)); }
      printf("\n");
    }
  }
  json_decref(res);
  return SW_EXIT_OK;
}
