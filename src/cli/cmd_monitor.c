/* slipway monitor: continuous evaluation and alerts. For now its offline part,
 * `slipway monitor drift`: a batch of instances against a dataset's training
 * statistics, as the monitor loop judges a window of live requests (docs/MONITORING.md). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/eval.h"

static void help(void) {
  printf(
      "usage: slipway monitor drift --data DIR --input FILE|- [--split train] [--policy FILE]\n"
      "                             [--window N] [--json]\n"
      "\n"
      "Compares instances with the training statistics prep recorded (stats.json): PSI and\n"
      "Jensen-Shannon distance per feature on the training deciles (strings: top values and\n"
      "\"other\"), a Kolmogorov-Smirnov test for numbers (Bonferroni-corrected), and a\n"
      "decision for the dataset: drift when the share of drifting features reaches the\n"
      "policy's monitor.drift.share. The input is {\"instances\": [...]} (as predict and the\n"
      "server take it) or JSON Lines, one instance a line; raw values (pixels 0..255).\n"
      "The last --window instances count, as the server's window of recent requests.\n"
      "\n"
      "flags:\n"
      "  --data DIR       the dataset (its stats.json and schema.json)\n"
      "  --input FILE     the instances; '-' reads stdin\n"
      "  --split NAME     the statistics to compare with (train)\n"
      "  --policy FILE    thresholds from monitor.drift (default psi 0.1, js 0.1, share 0.5,\n"
      "                   window 2000)\n"
      "  --window N       instances that count (default: the policy's window)\n"
      "  --json           print the report as JSON\n"
      "\n"
      "Exit status: 0 no drift, 3 drift (the policy's share reached), 1 or 2 on errors.\n");
}

/* Feeds every instance of text (a {"instances": [...]} document, or JSON Lines). */
static sw_status feed(sw_drift_window *w, const char *text, size_t len) {
  json_error_t e;
  json_t *doc = json_loadb(text, len, 0, &e);
  if (doc && json_is_array(json_object_get(doc, "instances"))) {
    size_t i;
    json_t *inst;
    sw_status st = SW_STATUS_OK;
    json_array_foreach(json_object_get(doc, "instances"), i, inst) {
      st = sw_drift_window_add(w, inst);
      if (st) {
        sw_error_prefix(st, "instance %zu: ", i);
        break;
      }
    }
    json_decref(doc);
    return st;
  }
  json_decref(doc);
  size_t line = 0;
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t end = nl ? (size_t)(nl - text) : len;
    line++;
    size_t k = at;
    while (k < end && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
    if (k < end) {
      json_t *inst = json_loadb(text + at, end - at, JSON_DECODE_ANY, &e);
      if (!inst) return sw_error(SW_STATUS_FORMAT, "line %zu: not JSON (%s)", line, e.text);
      sw_status st = sw_drift_window_add(w, inst);
      json_decref(inst);
      if (st) return sw_error_prefix(st, "line %zu: ", line);
    }
    at = end + 1;
  }
  return SW_STATUS_OK;
}

static int drift(int argc, char **argv) {
  enum { OPT_DATA = 256, OPT_INPUT, OPT_SPLIT, OPT_POLICY, OPT_WINDOW, OPT_JSON, OPT_HELP };
  static const struct option longopts[] = {
      {"data", required_argument, 0, OPT_DATA},     {"input", required_argument, 0, OPT_INPUT},
      {"split", required_argument, 0, OPT_SPLIT},   {"policy", required_argument, 0, OPT_POLICY},
      {"window", required_argument, 0, OPT_WINDOW}, {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, OPT_HELP},           {0, 0, 0, 0}};
  const char *data = NULL, *input = NULL, *split = NULL, *policy_path = NULL;
  long long window = 0;
  bool as_json = false;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_DATA: data = optarg; break;
      case OPT_INPUT: input = optarg; break;
      case OPT_SPLIT: split = optarg; break;
      case OPT_POLICY: policy_path = optarg; break;
      case OPT_WINDOW:
        if (!sw_cli_parse_int(optarg, 1, 100000000, &window))
          return sw_cli_usage_error("monitor drift", "--window: '%s' is not a count from 1 to 100000000", optarg);
        break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("monitor drift", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("monitor drift", "unexpected argument '%s'", argv[optind]);
  if (!data || !input) return sw_cli_usage_error("monitor drift", "--data and --input are required");

  sw_policy *pol = NULL;
  sw_drift_reference *ref = NULL;
  sw_drift_window *w = NULL;
  json_t *rep = NULL;
  uint8_t *text = NULL;
  size_t len = 0;
  char *err = NULL;
  int rc = SW_EXIT_FAILURE;
  sw_status st = SW_STATUS_OK;
  if (policy_path) {
    st = sw_policy_load(policy_path, &pol, &err);
    if (st) {
      fprintf(stderr, "slipway monitor drift: %s\n", err ? err : sw_last_error());
      rc = sw_cli_exit_code(st);
      goto cleanup;
    }
  }
  if (!window) window = pol ? pol->monitor.drift_window : 2000;
  st = sw_drift_reference_load(data, split, &ref);
  if (!st && sw_drift_reference_features(ref) == 0)
    st = sw_error(SW_STATUS_NOT_FOUND, "%s: the statistics record no feature drift could be checked on", data);
  if (!st) st = sw_drift_window_new(ref, window, &w);
  if (!st) {
    if (!strcmp(input, "-")) {
      sw_buf b = {0};
      char chunk[65536];
      size_t n;
      while (!st && (n = fread(chunk, 1, sizeof chunk, stdin)) > 0) st = sw_buf_append(&b, chunk, n);
      text = b.data;
      len = b.len;
    } else {
      st = sw_read_file(input, &text, &len);
    }
  }
  if (!st) {
    st = feed(w, (const char *)text, len);
    if (!st && sw_drift_window_records(w) == 0) st = sw_error(SW_STATUS_INVALID, "no instances");
    if (st) sw_error_prefix(st, "%s: ", strcmp(input, "-") ? input : "stdin");
  }
  if (!st) st = sw_drift_compute(w, pol ? &pol->monitor : NULL, &rep);
  if (st) {
    fprintf(stderr, "slipway monitor drift: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    rc = sw_cli_exit_code(st);
    goto cleanup;
  }
  bool drifted = json_is_true(json_object_get(rep, "drift"));
  if (as_json) {
    json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
  } else {
    printf("%s: %lld of %lld features drift (share %.2f, threshold %.2f) over %lld instances%s\n",
           drifted ? "DRIFT" : "no drift", (long long)json_integer_value(json_object_get(rep, "drifting")),
           (long long)json_integer_value(json_object_get(rep, "checked")), json_real_value(json_object_get(rep, "share")),
           json_real_value(json_object_get(rep, "threshold_share")), (long long)json_integer_value(json_object_get(rep, "records")),
           json_is_true(json_object_get(rep, "ready")) ? "" : " (too few to decide)");
    const char *name;
    json_t *f;
    json_object_foreach(json_object_get(rep, "features"), name, f) {
      printf("  %-20s %-11s psi %.4f  js %.4f", name, json_string_value(json_object_get(f, "kind")),
             json_real_value(json_object_get(f, "psi")), json_real_value(json_object_get(f, "js")));
      if (json_object_get(f, "ks_p_bonferroni"))
        printf("  ks %.4f (p %.3g)", json_real_value(json_object_get(f, "ks_d")),
               json_real_value(json_object_get(f, "ks_p_bonferroni")));
      printf("%s\n", json_is_true(json_object_get(f, "drift")) ? "  DRIFT" : "");
    }
  }
  rc = drifted ? SW_EXIT_REFUSED : SW_EXIT_OK;
cleanup:
  json_decref(rep);
  sw_free(text);
  sw_free(err);
  sw_drift_window_free(w);
  sw_drift_reference_free(ref);
  sw_policy_free(pol);
  return rc;
}

int sw_cmd_monitor(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    help();
    return argc < 2 ? SW_EXIT_USAGE : SW_EXIT_OK;
  }
  if (!strcmp(argv[1], "drift")) return drift(argc - 1, argv + 1);
  return sw_cli_usage_error("monitor", "unknown subcommand '%s' (drift; the monitor loop is not built yet)", argv[1]);
}
