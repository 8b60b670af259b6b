/* slipway train: flags in, sw_train_run does the work, a summary (or --json) out. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/train.h"

static void help(void) {
  printf(
      "usage: slipway train --model MODEL.yaml --data DIR --out RUN [flags]\n"
      "\n"
      "Trains the model file on a dataset made by `slipway prep` and writes the run dir:\n"
      "run.json (config, dataset SHA-256, code version, host, params_sha256), model.yaml,\n"
      "model.safetensors, metrics.jsonl and TensorBoard event files. Validation metrics on\n"
      "the val split after every epoch.\n"
      "\n"
      "flags:\n"
      "  --steps N        train N steps (overrides the model file)\n"
      "  --epochs E       train E epochs (overrides the model file)\n"
      "  --threads T      CPU threads (default: all cores)\n"
      "  --seed S         seed of initialization, shuffling and dropout (overrides the model file)\n"
      "  --log-every N    steps between metrics lines (50)\n"
      "  --overwrite      replace RUN if it exists\n"
      "  --json           print the run summary as JSON\n");
}

int sw_cmd_train(int argc, char **argv) {
  enum { OPT_MODEL = 256, OPT_DATA, OPT_OUT, OPT_STEPS, OPT_EPOCHS, OPT_THREADS, OPT_SEED, OPT_LOG, OPT_OVERWRITE, OPT_JSON, OPT_HELP };
  static const struct option longopts[] = {
      {"model", required_argument, 0, OPT_MODEL},     {"data", required_argument, 0, OPT_DATA},
      {"out", required_argument, 0, OPT_OUT},         {"steps", required_argument, 0, OPT_STEPS},
      {"epochs", required_argument, 0, OPT_EPOCHS},   {"threads", required_argument, 0, OPT_THREADS},
      {"seed", required_argument, 0, OPT_SEED},       {"log-every", required_argument, 0, OPT_LOG},
      {"overwrite", no_argument, 0, OPT_OVERWRITE},   {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, OPT_HELP},             {0, 0, 0, 0}};
  sw_train_options o = {0};
  o.seed = -1;
  bool as_json = false;
  long long n;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL: o.model_path = optarg; break;
      case OPT_DATA: o.data_dir = optarg; break;
      case OPT_OUT: o.out_dir = optarg; break;
      case OPT_STEPS:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 50, &n)) return sw_cli_usage_error("train", "--steps: '%s' is not a count >= 1", optarg);
        o.steps = n;
        break;
      case OPT_EPOCHS:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("train", "--epochs: '%s' is not a count >= 1", optarg);
        o.epochs = n;
        break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("train", "--threads: '%s' is not a count from 1 to 1024", optarg);
        o.threads = (int)n;
        break;
      case OPT_SEED:
        if (!sw_cli_parse_int(optarg, 0, (long long)1 << 62, &n)) return sw_cli_usage_error("train", "--seed: '%s' is not a non-negative integer", optarg);
        o.seed = n;
        break;
      case OPT_LOG:
        if (!sw_cli_parse_int(optarg, 1, (long long)1 << 40, &n)) return sw_cli_usage_error("train", "--log-every: '%s' is not a count >= 1", optarg);
        o.log_every = n;
        break;
      case OPT_OVERWRITE: o.overwrite = true; break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("train", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  if (!o.model_path || !o.data_dir || !o.out_dir) return sw_cli_usage_error("train", "--model, --data and --out are required");
  if (o.steps && o.epochs) return sw_cli_usage_error("train", "give --steps or --epochs, not both");
  json_t *summary = NULL;
  sw_status st = sw_train_run(&o, &summary);
  if (st) {
    fprintf(stderr, "slipway train: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    return sw_cli_exit_code(st);
  }
  if (as_json) {
    json_dumpf(summary, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
  } else {
    const json_t *val = json_object_get(summary, "val");
    printf("trained %lld steps (%lld epochs) in %.1fs, %.0f samples/s\n",
           (long long)json_integer_value(json_object_get(summary, "steps_done")),
           (long long)json_integer_value(json_object_get(summary, "epochs_done")),
           json_real_value(json_object_get(summary, "seconds")), json_real_value(json_object_get(summary, "samples_per_sec")));
    if (val && json_object_get(val, "accuracy"))
      printf("val accuracy %.4f, loss %.4f\n", json_real_value(json_object_get(val, "accuracy")),
             json_real_value(json_object_get(val, "loss")));
    printf("params_sha256 %s\nwrote %s\n", json_string_value(json_object_get(summary, "params_sha256")), o.out_dir);
  }
  json_decref(summary);
  return SW_EXIT_OK;
}
