/* slipway pipeline run: flags in, sw_pipeline_run does the work, one line per stage (or
 * --json) out. SIGINT/SIGTERM stop training after a checkpoint, as `slipway train` does. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/pipeline.h"

#define MAX_LIST 64

static volatile int stop_requested;
static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void help(void) {
  printf(
      "usage: slipway pipeline run FILE.yaml [--force STAGE]... [--set KEY=VALUE]... [--until STAGE]\n"
      "                                      [--json] [--workdir DIR] [--registry URL] [--home DIR]\n"
      "\n"
      "Runs the stages of a pipeline file in order: prep -> train -> eval -> register (with the\n"
      "policy's gate) -> rollout (docs/PIPELINE.md). A stage whose cache key (SHA-256 of its\n"
      "inputs' content, its settings and the code version) matches a complete execution whose\n"
      "outputs still verify is skipped and reported as cached. Every stage's execution is\n"
      "recorded in the registry (slipway registry lineage NAME:V shows them). A failing stage\n"
      "stops the pipeline with its reason; running it again continues from that stage.\n"
      "\n"
      "flags:\n"
      "  --force STAGE     run STAGE even if cached (repeatable); later stages rerun only if\n"
      "                    its output changed\n"
      "  --set K=V         override a setting, e.g. --set stages.train.epochs=1 (repeatable)\n"
      "  --until STAGE     run the stages up to STAGE and stop there\n"
      "  --workdir DIR     where the stages' outputs go (default: the file's workdir, relative\n"
      "                    to the file's folder, else that folder)\n"
      "  --registry URL    a SQLite file or postgres://... (default $SLIPWAY_REGISTRY, else\n"
      "                    $SLIPWAY_HOME/registry.db)\n"
      "  --home DIR        the registry's artifacts (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --who NAME        recorded as the actor (default $USER)\n"
      "  --threads T       CPU threads for training and evaluation (default: all cores)\n"
      "  --json            print the report as JSON\n"
      "\n"
      "exit status: 0 every stage complete or cached, 1 a stage failed, 2 usage error or a bad\n"
      "pipeline file, 3 the gate refused or the rollout rolled back, 75 stopped by a signal\n"
      "after a checkpoint (run again to resume)\n");
}

static void print_report(const json_t *rep) {
  printf("pipeline %s (%s)\n", json_string_value(json_object_get(rep, "pipeline")), json_string_value(json_object_get(rep, "file")));
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(rep, "stages"), i, s) {
    const char *state = json_string_value(json_object_get(s, "state"));
    const char *summary = json_string_value(json_object_get(s, "summary"));
    const char *err = json_string_value(json_object_get(s, "error"));
    printf("  %-9s %-9s", json_string_value(json_object_get(s, "stage")), state);
    if (json_is_number(json_object_get(s, "seconds"))) printf(" %7.1f s", json_number_value(json_object_get(s, "seconds")));
    else printf("          ");
    const char *key = json_string_value(json_object_get(s, "cache_key"));
    printf("  %.12s  %s\n", key ? key : "-", err ? err : summary ? summary : "");
  }
}

int sw_cmd_pipeline(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    if (argc < 2) return sw_cli_usage_error("pipeline", "give a subcommand: run FILE.yaml");
    help();
    return SW_EXIT_OK;
  }
  if (strcmp(argv[1], "run") != 0) return sw_cli_usage_error("pipeline", "unknown subcommand '%s' (run)", argv[1]);
  argc--;
  argv++;
  enum { OPT_FORCE = 256, OPT_SET, OPT_UNTIL, OPT_WORKDIR, OPT_REGISTRY, OPT_HOME, OPT_WHO, OPT_THREADS, OPT_JSON, OPT_HELP };
  static const struct option longopts[] = {
      {"force", required_argument, 0, OPT_FORCE},       {"set", required_argument, 0, OPT_SET}, {"until", required_argument, 0, OPT_UNTIL},
      {"workdir", required_argument, 0, OPT_WORKDIR},   {"registry", required_argument, 0, OPT_REGISTRY},
      {"home", required_argument, 0, OPT_HOME},         {"who", required_argument, 0, OPT_WHO},
      {"threads", required_argument, 0, OPT_THREADS},   {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, OPT_HELP},               {0, 0, 0, 0}};
  const char *force[MAX_LIST], *sets[MAX_LIST];
  sw_pipeline_options o = {.force = force, .sets = sets, .stop = &stop_requested};
  bool as_json = false;
  long long n;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_FORCE:
        if (o.n_force >= MAX_LIST) return sw_cli_usage_error("pipeline run", "too many --force flags");
        force[o.n_force++] = optarg;
        break;
      case OPT_SET:
        if (o.n_sets >= MAX_LIST) return sw_cli_usage_error("pipeline run", "too many --set flags");
        sets[o.n_sets++] = optarg;
        break;
      case OPT_UNTIL: o.until = optarg; break;
      case OPT_WORKDIR: o.workdir = optarg; break;
      case OPT_REGISTRY: o.registry = optarg; break;
      case OPT_HOME: o.home = optarg; break;
      case OPT_WHO: o.who = optarg; break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n))
          return sw_cli_usage_error("pipeline run", "--threads: '%s' is not a count from 1 to 1024", optarg);
        o.threads = (int)n;
        break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("pipeline run", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return sw_cli_usage_error("pipeline run", "give the pipeline file");
  if (optind + 1 < argc) return sw_cli_usage_error("pipeline run", "unexpected argument '%s'", argv[optind + 1]);
  o.path = argv[optind];
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  json_t *rep = NULL;
  sw_status st = sw_pipeline_run(&o, &rep);
  if (rep) {
    if (as_json) {
      json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
      fputc('\n', stdout);
    } else {
      print_report(rep);
    }
  }
  if (st) {
    const char *stage = json_string_value(json_object_get(rep, "failed_stage"));
    if (stage) fprintf(stderr, "slipway pipeline: stopped at %s: %s\n", stage, sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    else fprintf(stderr, "slipway pipeline: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  }
  /* a stage that failed is a failure (1), whatever its status; only a bad file or flag is 2 */
  int rc = sw_cli_exit_code(st);
  if (st && json_object_get(rep, "failed_stage") && st != SW_STATUS_REFUSED && st != SW_STATUS_PREEMPTED) rc = SW_EXIT_FAILURE;
  json_decref(rep);
  return rc;
}
