/* slipway's entry point: finds the subcommand and hands it its arguments. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "cli/cli.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"prep", sw_cmd_prep, "ingest, validate, quarantine and shard raw data into a dataset"},
    {"train", sw_cmd_train, "train a model file on a dataset into a run dir"},
    {"eval", sw_cmd_eval, "metrics of a model on a dataset split, overall and per slice"},
    {"predict", sw_cmd_predict, "run a model on JSON instances and print its outputs"},
    {"export", sw_cmd_export, "write a run's model as an ONNX file"},
    {"registry", sw_cmd_registry, "versioned models: register, list, show, lineage, alias, promote, verify"},
    {"monitor", sw_cmd_monitor, "drift of instances against the training statistics (the loop: to come)"},
    {"serve", sw_cmd_serve, "the model server (TF Serving REST and v2 protocols)"},
    {"rollout", sw_cmd_rollout, "canary, A/B and shadow rollouts on a running server, with automatic rollback"},
    {"pipeline", sw_cmd_pipeline, "the whole flow from one YAML file, each stage cached by its inputs"},
    {"loadgen", sw_cmd_loadgen, "open-loop labeled traffic against a server, with feedback and a latency report"},
};

static void usage(FILE *out) {
  fprintf(out,
          "usage: slipway <command> [flags]\n"
          "\n"
          "slipway carries models from raw data to production.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\n"
          "'slipway <command> --help' describes a command. Exit codes: 0 success, 1 failure,\n"
          "2 usage error, 3 refused by a gate or policy, 75 preempted and resumable.\n");
}

int sw_cli_usage_error(const char *cmd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "slipway %s: %s\nTry 'slipway %s --help'.\n", cmd, msg, cmd);
  return SW_EXIT_USAGE;
}

bool sw_cli_parse_int(const char *s, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno || v < min || v > max) return false;
  *out = v;
  return true;
}

bool sw_cli_parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  if (!*s || *s == '-') return false;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno) return false;
  *out = v;
  return true;
}

bool sw_cli_parse_double(const char *s, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v >= min && v <= max)) return false;
  *out = v;
  return true;
}

int sw_cli_exit_code(sw_status st) {
  switch (st) {
    case SW_STATUS_OK: return SW_EXIT_OK;
    case SW_STATUS_REFUSED: return SW_EXIT_REFUSED;
    case SW_STATUS_INVALID: return SW_EXIT_USAGE;
    case SW_STATUS_PREEMPTED: return SW_EXIT_PREEMPTED;
    default: return SW_EXIT_FAILURE;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return SW_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return SW_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("slipway %s\n", sw_version());
    return SW_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "slipway: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return SW_EXIT_USAGE;
}
