/* slipway monitor: continuous evaluation and alerts. The loop (held-out evaluation of
 * the served versions against their promotion baselines, exported on its own /metrics,
 * alerts to a webhook) and `slipway monitor drift`: a batch of instances against a
 * dataset's training statistics, as the server judges its window of live requests
 * (docs/MONITORING.md). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "slipway/eval.h"
#include "slipway/registry.h"
#include "slipway/serve.h"

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

static void loop_help(void) {
  printf(
      "usage: slipway monitor --policy FILE [--server URL] [--registry URL] [--home DIR]\n"
      "                       [--eval-data DIR] [--alert-webhook URL] [--every D] [--once]\n"
      "                       [--listen HOST:PORT] [--json]\n"
      "       slipway monitor drift ...   (slipway monitor drift --help)\n"
      "\n"
      "Every --every (default: the policy's monitor.every), evaluates each served version on\n"
      "its held-out split, the production alias first: the versions the server at --server\n"
      "has loaded (GET /v1/models/NAME for each model in the registry), or without --server\n"
      "the version the registry serves (production alias, else the latest). Each evaluation\n"
      "is recorded in the registry (context monitor) and compared with the baseline recorded\n"
      "at promotion; a drop beyond monitor.max_drop fires SlipwayQualityRegression, resolved\n"
      "when it clears. The same loop runs inside `slipway serve --eval-every`, which also\n"
      "watches drift and live accuracy (they need the live requests).\n"
      "\n"
      "flags:\n"
      "  --policy FILE         monitor.max_drop, monitor.every, gate.split\n"
      "  --server URL          the server whose loaded versions to evaluate\n"
      "  --registry URL        the registry (default $SLIPWAY_REGISTRY, else $SLIPWAY_HOME/registry.db)\n"
      "  --home DIR            its artifacts (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --eval-data DIR       the held-out dataset (default: each version's, from the lineage)\n"
      "  --alert-webhook URL   POST alerts there (Alertmanager's webhook format, version 4)\n"
      "  --every D             the interval (30s, 10m, 1h)\n"
      "  --once                one cycle, then exit: 0 no regression, 3 a regression, 1 errors\n"
      "  --listen HOST:PORT    serve the quality metrics on GET /metrics there\n"
      "  --json                with --once: print the cycle's results\n");
}

typedef struct {
  pthread_mutex_t mu;
  sw_buf text;
} metrics_text;

static sw_status render_text(void *ctx, sw_buf *out) {
  metrics_text *t = ctx;
  pthread_mutex_lock(&t->mu);
  sw_status st = t->text.len ? sw_buf_append(out, t->text.data, t->text.len) : sw_buf_printf(out, "%s", "");
  pthread_mutex_unlock(&t->mu);
  return st;
}

/* One cycle: which versions, their evaluations, the metrics text. *regressed: a drop. */
static sw_status loop_cycle(sw_registry *reg, const char *server, sw_quality_monitor *qm, metrics_text *mt, json_t **results,
                            bool *regressed) {
  *results = NULL;
  *regressed = false;
  json_t *targets = NULL;
  sw_status st = sw_monitor_targets(reg, server, &targets);
  if (st) return st;
  size_t n = json_array_size(targets);
  sw_monitor_target *t = sw_calloc(n ? n : 1, sizeof *t);
  if (!t) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < n && t; i++) {
    const json_t *e = json_array_get(targets, i);
    t[i] = (sw_monitor_target){json_string_value(json_object_get(e, "model")), json_integer_value(json_object_get(e, "version")),
                               json_string_value(json_object_get(e, "ref")), json_is_true(json_object_get(e, "is_default"))};
  }
  if (!st) st = sw_quality_monitor_cycle(qm, t, n, results);
  size_t i;
  const json_t *r;
  if (!st) json_array_foreach(*results, i, r) {
      if (json_is_true(json_object_get(json_object_get(r, "drop"), "dropped"))) *regressed = true;
      if (json_object_get(r, "error")) st = SW_STATUS_IO;
    }
  sw_buf b = {0};
  if (*results && !sw_quality_results_render(*results, &b)) {
    pthread_mutex_lock(&mt->mu);
    sw_buf old = mt->text;
    mt->text = b;
    pthread_mutex_unlock(&mt->mu);
    sw_buf_free(&old);
  } else {
    sw_buf_free(&b);
  }
  if (st == SW_STATUS_IO && *results) st = sw_error(SW_STATUS_IO, "an evaluation failed (see the log)");
  sw_free(t);
  json_decref(targets);
  return st;
}

static int monitor_loop(int argc, char **argv) {
  enum { OPT_POLICY = 256, OPT_SERVER, OPT_REGISTRY, OPT_HOME, OPT_DATA, OPT_WEBHOOK, OPT_EVERY, OPT_ONCE, OPT_LISTEN, OPT_JSON, OPT_HELP };
  static const struct option longopts[] = {
      {"policy", required_argument, 0, OPT_POLICY},  {"server", required_argument, 0, OPT_SERVER},
      {"registry", required_argument, 0, OPT_REGISTRY}, {"home", required_argument, 0, OPT_HOME},
      {"eval-data", required_argument, 0, OPT_DATA}, {"alert-webhook", required_argument, 0, OPT_WEBHOOK},
      {"every", required_argument, 0, OPT_EVERY},    {"once", no_argument, 0, OPT_ONCE},
      {"listen", required_argument, 0, OPT_LISTEN},  {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, OPT_HELP},            {0, 0, 0, 0}};
  const char *policy_path = NULL, *server = NULL, *registry = NULL, *home = NULL, *data = NULL, *webhook = NULL, *listen = NULL;
  double every = 0;
  bool once = false, as_json = false;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_POLICY: policy_path = optarg; break;
      case OPT_SERVER: server = optarg; break;
      case OPT_REGISTRY: registry = optarg; break;
      case OPT_HOME: home = optarg; break;
      case OPT_DATA: data = optarg; break;
      case OPT_WEBHOOK: webhook = optarg; break;
      case OPT_EVERY:
        if (!sw_duration_parse(optarg, &every)) return sw_cli_usage_error("monitor", "--every: '%s' is not a duration like 30s, 10m, 1h", optarg);
        break;
      case OPT_ONCE: once = true; break;
      case OPT_LISTEN: listen = optarg; break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: loop_help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("monitor", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("monitor", "unexpected argument '%s'", argv[optind]);
  if (!policy_path) return sw_cli_usage_error("monitor", "--policy is required (its monitor: section says what is a regression)");
  if (as_json && !once) return sw_cli_usage_error("monitor", "--json goes with --once");

  sw_policy *pol = NULL;
  sw_registry *reg = NULL;
  sw_alert_manager *alerts = NULL;
  sw_quality_monitor *qm = NULL;
  sw_metrics_listener *ml = NULL;
  metrics_text mt = {.mu = PTHREAD_MUTEX_INITIALIZER};
  json_t *results = NULL;
  char *err = NULL;
  int rc = SW_EXIT_FAILURE;
  sw_status st = sw_policy_load(policy_path, &pol, &err);
  if (st) {
    fprintf(stderr, "slipway monitor: %s\n", err ? err : sw_last_error());
    rc = sw_cli_exit_code(st);
    goto cleanup;
  }
  if (!(every > 0)) every = pol->monitor.every_seconds;
  st = sw_registry_open(registry, home, &reg);
  sw_alert_options ao = {.webhook_url = webhook, .external_url = server, .registry = reg, .who = "slipway-monitor"};
  if (!st) st = sw_alert_manager_new(&ao, &alerts);
  sw_quality_monitor_options qo = {.registry = reg, .registry_url = registry, .home = home, .eval_data = data, .policy = pol,
                                   .alerts = alerts, .threads = 0, .who = "slipway-monitor"};
  if (!st) st = sw_quality_monitor_new(&qo, &qm);
  if (!st && listen) st = sw_metrics_listener_start(listen, render_text, &mt, &ml);
  if (st) goto fail;
  if (ml) SW_INFO("monitor: metrics on %s (port %u)", listen, (unsigned)sw_metrics_listener_port(ml));
  if (once) {
    bool regressed = false;
    st = loop_cycle(reg, server, qm, &mt, &results, &regressed);
    if (as_json && results) {
      json_dumpf(results, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
      fputc('\n', stdout);
    } else if (results) {
      size_t i;
      const json_t *r;
      json_array_foreach(results, i, r) {
        const char *e = json_string_value(json_object_get(r, "error"));
        if (e) {
          printf("%s: ERROR %s\n", json_string_value(json_object_get(r, "ref")), e);
          continue;
        }
        const json_t *drop = json_object_get(r, "drop");
        printf("%s: %s\n", json_string_value(json_object_get(r, "ref")),
               !drop ? "no baseline recorded (nothing to compare with)"
               : json_is_true(json_object_get(drop, "dropped")) ? "REGRESSION" : "ok");
        size_t k;
        const json_t *ck;
        json_array_foreach(json_object_get(drop, "checks"), k, ck) printf("  %s\n", json_string_value(json_object_get(ck, "reason")));
      }
    }
    if (st) goto fail;
    rc = regressed ? SW_EXIT_REFUSED : SW_EXIT_OK;
    goto cleanup;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  SW_INFO("monitor: every %.3g s", every);
  for (;;) {
    bool regressed;
    double t0 = sw_now();
    json_decref(results);
    if (loop_cycle(reg, server, qm, &mt, &results, &regressed)) SW_WARN("monitor: %s", sw_last_error());
    double left = every - (sw_now() - t0);
    if (left < 0.05) left = 0.05;
    struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
    int sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) break;
  }
  rc = SW_EXIT_OK;
  goto cleanup;
fail:
  fprintf(stderr, "slipway monitor: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  rc = sw_cli_exit_code(st);
cleanup:
  sw_metrics_listener_free(ml);
  json_decref(results);
  sw_quality_monitor_free(qm);
  sw_alert_manager_free(alerts);
  sw_registry_close(reg);
  sw_policy_free(pol);
  sw_buf_free(&mt.text);
  sw_free(err);
  return rc;
}

int sw_cmd_monitor(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "drift")) return drift(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    loop_help();
    return SW_EXIT_OK;
  }
  if (argc >= 2 && argv[1][0] != '-') return sw_cli_usage_error("monitor", "unknown subcommand '%s' (drift, or flags for the loop)", argv[1]);
  return monitor_loop(argc, argv);
}
