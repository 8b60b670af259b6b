/* slipway serve: the model server's flags, its admin token, and the main thread, which
 * polls the catalog and waits for SIGTERM/SIGINT to drain and exit. */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "slipway/eval.h"
#include "slipway/serve.h"

#define MAX_REPEAT 256

static void help(void) {
  printf(
      "usage: slipway serve [--registry URL | --model-file NAME=PATH.onnx...] [--model NAME[:V|@ALIAS]]...\n"
      "\n"
      "Serves ONNX models over HTTP: TensorFlow Serving's REST API (/v1/models/...) and the\n"
      "v2 inference protocol (/v2/...), with /metrics, feedback and admin endpoints\n"
      "(docs/SERVING.md). SIGTERM stops accepting, finishes the requests in flight, exits.\n"
      "\n"
      "models:\n"
      "  --model-file NAME=PATH  serve an ONNX file as a version of NAME (repeatable: the\n"
      "                          versions of a name are 1, 2, ... in the order given)\n"
      "  --label NAME@LABEL=V    give version V of NAME a label (/labels/LABEL; the\n"
      "                          version labelled production is served by default, else\n"
      "                          the latest)\n"
      "  --model NAME[:V|@ALIAS] serve only these models, at this version or label\n"
      "                          (repeatable; default: every model, by the policy above)\n"
      "  --registry URL          the registry to serve from: a SQLite file or postgres://...\n"
      "                          (default, without --model-file: $SLIPWAY_REGISTRY, else\n"
      "                          $SLIPWAY_HOME/registry.db); every model at its production\n"
      "                          alias, else its latest version not rejected or rolled back\n"
      "  --home DIR              the registry's artifacts (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --poll S                seconds between checks of the catalog: alias moves are\n"
      "                          followed within this (default 2)\n"
      "\n"
      "serving:\n"
      "  --listen HOST:PORT      address to listen on (default 127.0.0.1:8501; port 0 picks one)\n"
      "  --max-batch N           rows per forward pass (default 32; 1 turns batching off)\n"
      "  --batch-timeout-us N    how long a batch waits to fill (default 0: it takes what is\n"
      "                          queued when the engine is free)\n"
      "  --max-queue N           requests waiting per version before 429 (default 256)\n"
      "  --threads N             engine threads per loaded version (default 1)\n"
      "  --http-threads N        HTTP threads (default: cores)\n"
      "  --max-body BYTES        larger bodies get 413 (default 67108864)\n"
      "  --timeout S             idle or slow connections are closed after S s (default 30)\n"
      "  --drain-timeout S       how long SIGTERM waits for requests in flight (default 30)\n"
      "  --feedback-capacity N   request ids kept for feedback (default 100000)\n"
      "  --admin-token-file F    the bearer token of /admin/... (default: a random one,\n"
      "                          written to HOME/admin.token with mode 0600, HOME being\n"
      "                          --home, else $SLIPWAY_HOME, else ./.slipway)\n"
      "\n"
      "fault injection, for tests only (docs/ROLLOUT.md; never in production):\n"
      "  --debug-delay NAME:V=MS      answers of that version wait MS milliseconds more\n"
      "  --debug-fail NAME:V=FRACTION that share of its inference requests answer 500\n"
      "\n"
      "monitoring (docs/MONITORING.md):\n"
      "  --eval-every DURATION   run the monitor loop every DURATION (30s, 10m, ...): held-out\n"
      "                          evaluation of every served version against its promotion\n"
      "                          baseline, drift of the live inputs, live accuracy from\n"
      "                          feedback; exported on /metrics, alerts on a change\n"
      "  --eval-data DIR         the held-out dataset (default: each version's, from the\n"
      "                          registry's lineage; required with --model-file)\n"
      "  --policy FILE           thresholds from its monitor: section (max_drop, drift)\n"
      "  --alert-webhook URL     POST alerts there in Alertmanager's webhook format\n");
}

static sw_status read_token(const char *path, char **out) {
  uint8_t *data = NULL;
  size_t len = 0;
  sw_status st = sw_read_file(path, &data, &len);
  if (st) return st;
  while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' || data[len - 1] == '\t')) len--;
  data[len] = '\0';
  if (len < 16) {
    sw_free(data);
    return sw_error(SW_STATUS_INVALID, "%s: the admin token must have at least 16 characters", path);
  }
  *out = (char *)data;
  return SW_STATUS_OK;
}

static sw_status make_token(const char *home, char **out) {
  uint8_t raw[32];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return sw_error(SW_STATUS_IO, "getrandom: %s", strerror(errno));
  char *hex = sw_malloc(2 * sizeof raw + 2);
  if (!hex) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < sizeof raw; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  if (!home) home = getenv("SLIPWAY_HOME");
  if (!home || !*home) home = ".slipway";
  char *path = sw_path_join(home, "admin.token");
  sw_status st = path ? sw_mkdir_p(home) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) {
    /* 0600 from the first byte: the temporary file is created under this umask */
    mode_t old = umask(077);
    size_t n = strlen(hex);
    hex[n] = '\n';
    st = sw_atomic_write(path, hex, n + 1);
    hex[n] = '\0';
    umask(old);
    if (!st && chmod(path, 0600)) st = sw_error(SW_STATUS_IO, "chmod %s: %s", path, strerror(errno));
  }
  if (!st) SW_INFO("serve: admin token written to %s", path);
  sw_free(path);
  if (st) {
    sw_free(hex);
    return st;
  }
  *out = hex;
  return SW_STATUS_OK;
}

#define SW_FAULT_NAME_MAX 129

/* NAME:V=X into f (the name copied into name): --debug-delay X in ms, --debug-fail a share. */
static bool parse_fault(const char *arg, bool delay, sw_serve_fault *f, char name[SW_FAULT_NAME_MAX]) {
  const char *colon = strchr(arg, ':'), *eq = colon ? strchr(colon, '=') : NULL;
  if (!colon || !eq || colon == arg || (size_t)(colon - arg) >= SW_FAULT_NAME_MAX) return false;
  memcpy(name, arg, (size_t)(colon - arg));
  name[colon - arg] = '\0';
  if (!sw_serve_name_valid(name, strlen(name))) return false;
  char ver[32];
  size_t vl = (size_t)(eq - colon - 1);
  if (vl == 0 || vl >= sizeof ver) return false;
  memcpy(ver, colon + 1, vl);
  ver[vl] = '\0';
  long long v;
  double x;
  if (!sw_cli_parse_int(ver, 1, INT64_MAX, &v)) return false;
  if (!sw_cli_parse_double(eq + 1, 0, delay ? 60000 : 1, &x)) return false;
  memset(f, 0, sizeof *f);
  f->model = name;
  f->version = v;
  if (delay) f->delay_ms = x;
  else f->fail_fraction = x;
  return true;
}

int sw_cmd_serve(int argc, char **argv) {
  enum {
    OPT_MODEL_FILE = 256,
    OPT_LABEL,
    OPT_MODEL,
    OPT_REGISTRY,
    OPT_HOME,
    OPT_POLL,
    OPT_LISTEN,
    OPT_MAX_BATCH,
    OPT_BATCH_TIMEOUT,
    OPT_MAX_QUEUE,
    OPT_THREADS,
    OPT_HTTP_THREADS,
    OPT_MAX_BODY,
    OPT_TIMEOUT,
    OPT_DRAIN,
    OPT_FEEDBACK,
    OPT_TOKEN_FILE,
    OPT_DEBUG_DELAY,
    OPT_DEBUG_FAIL,
    OPT_EVAL_DATA,
    OPT_EVAL_EVERY,
    OPT_POLICY,
    OPT_ALERT_WEBHOOK,
    OPT_HELP
  };
  static const struct option longopts[] = {{"model-file", required_argument, 0, OPT_MODEL_FILE},
                                           {"eval-data", required_argument, 0, OPT_EVAL_DATA},
                                           {"eval-every", required_argument, 0, OPT_EVAL_EVERY},
                                           {"policy", required_argument, 0, OPT_POLICY},
                                           {"alert-webhook", required_argument, 0, OPT_ALERT_WEBHOOK},
                                           {"label", required_argument, 0, OPT_LABEL},
                                           {"model", required_argument, 0, OPT_MODEL},
                                           {"registry", required_argument, 0, OPT_REGISTRY},
                                           {"home", required_argument, 0, OPT_HOME},
                                           {"poll", required_argument, 0, OPT_POLL},
                                           {"listen", required_argument, 0, OPT_LISTEN},
                                           {"max-batch", required_argument, 0, OPT_MAX_BATCH},
                                           {"batch-timeout-us", required_argument, 0, OPT_BATCH_TIMEOUT},
                                           {"max-queue", required_argument, 0, OPT_MAX_QUEUE},
                                           {"threads", required_argument, 0, OPT_THREADS},
                                           {"http-threads", required_argument, 0, OPT_HTTP_THREADS},
                                           {"max-body", required_argument, 0, OPT_MAX_BODY},
                                           {"timeout", required_argument, 0, OPT_TIMEOUT},
                                           {"drain-timeout", required_argument, 0, OPT_DRAIN},
                                           {"feedback-capacity", required_argument, 0, OPT_FEEDBACK},
                                           {"admin-token-file", required_argument, 0, OPT_TOKEN_FILE},
                                           {"debug-delay", required_argument, 0, OPT_DEBUG_DELAY},
                                           {"debug-fail", required_argument, 0, OPT_DEBUG_FAIL},
                                           {"help", no_argument, 0, OPT_HELP},
                                           {0, 0, 0, 0}};
  sw_serve_config cfg;
  sw_serve_config_default(&cfg);
  const char *files[MAX_REPEAT], *labels[MAX_REPEAT], *only[MAX_REPEAT];
  size_t n_files = 0, n_labels = 0, n_only = 0;
  sw_serve_fault faults[MAX_REPEAT];
  char fault_names[MAX_REPEAT][SW_FAULT_NAME_MAX];
  size_t n_faults = 0;
  const char *token_file = NULL, *registry = NULL, *home = NULL;
  sw_serve_monitor_config mon = {0};
  double drain_s = 30;
  long long n;
  double d;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_MODEL_FILE:
        if (n_files == MAX_REPEAT) return sw_cli_usage_error("serve", "at most %d --model-file", MAX_REPEAT);
        files[n_files++] = optarg;
        break;
      case OPT_LABEL:
        if (n_labels == MAX_REPEAT) return sw_cli_usage_error("serve", "at most %d --label", MAX_REPEAT);
        labels[n_labels++] = optarg;
        break;
      case OPT_MODEL: {
        if (n_only == MAX_REPEAT) return sw_cli_usage_error("serve", "at most %d --model", MAX_REPEAT);
        size_t k = strcspn(optarg, ":@");
        bool ok = sw_serve_name_valid(optarg, k);
        if (ok && optarg[k] == ':') ok = sw_cli_parse_int(optarg + k + 1, 1, INT64_MAX, &n);
        else if (ok && optarg[k] == '@') ok = sw_serve_name_valid(optarg + k + 1, strlen(optarg + k + 1));
        if (!ok) return sw_cli_usage_error("serve", "--model '%s': give NAME, NAME:VERSION or NAME@ALIAS", optarg);
        only[n_only++] = optarg;
        break;
      }
      case OPT_REGISTRY: registry = optarg; break;
      case OPT_HOME: home = optarg; break;
      case OPT_POLL:
        if (!sw_cli_parse_double(optarg, 0.05, 86400, &d)) return sw_cli_usage_error("serve", "--poll: '%s' is not seconds from 0.05 to 86400", optarg);
        cfg.poll_s = d;
        break;
      case OPT_LISTEN: cfg.listen = optarg; break;
      case OPT_MAX_BATCH:
        if (!sw_cli_parse_int(optarg, 1, 4096, &n)) return sw_cli_usage_error("serve", "--max-batch: '%s' is not a count from 1 to 4096", optarg);
        cfg.max_batch = (int)n;
        break;
      case OPT_BATCH_TIMEOUT:
        if (!sw_cli_parse_int(optarg, 0, 10000000, &n)) return sw_cli_usage_error("serve", "--batch-timeout-us: '%s' is not microseconds from 0 to 10000000", optarg);
        cfg.batch_timeout_us = n;
        break;
      case OPT_MAX_QUEUE:
        if (!sw_cli_parse_int(optarg, 1, 1000000, &n)) return sw_cli_usage_error("serve", "--max-queue: '%s' is not a count from 1 to 1000000", optarg);
        cfg.max_queue = (int)n;
        break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("serve", "--threads: '%s' is not a count from 1 to 1024", optarg);
        cfg.compute_threads = (int)n;
        break;
      case OPT_HTTP_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error("serve", "--http-threads: '%s' is not a count from 1 to 1024", optarg);
        cfg.http_threads = (int)n;
        break;
      case OPT_MAX_BODY:
        if (!sw_cli_parse_int(optarg, 64, (long long)1 << 34, &n)) return sw_cli_usage_error("serve", "--max-body: '%s' is not bytes from 64 to 2^34", optarg);
        cfg.max_body = (size_t)n;
        break;
      case OPT_TIMEOUT:
        if (!sw_cli_parse_int(optarg, 1, 86400, &n)) return sw_cli_usage_error("serve", "--timeout: '%s' is not seconds from 1 to 86400", optarg);
        cfg.timeout_s = (unsigned)n;
        break;
      case OPT_DRAIN:
        if (!sw_cli_parse_double(optarg, 0, 86400, &drain_s)) return sw_cli_usage_error("serve", "--drain-timeout: '%s' is not seconds from 0 to 86400", optarg);
        break;
      case OPT_FEEDBACK:
        if (!sw_cli_parse_int(optarg, 1, 100000000, &n)) return sw_cli_usage_error("serve", "--feedback-capacity: '%s' is not a count from 1 to 10^8", optarg);
        cfg.feedback_capacity = (size_t)n;
        break;
      case OPT_TOKEN_FILE: token_file = optarg; break;
      case OPT_DEBUG_DELAY:
      case OPT_DEBUG_FAIL: {
        bool delay = c == OPT_DEBUG_DELAY;
        const char *flag = delay ? "--debug-delay" : "--debug-fail";
        if (n_faults == MAX_REPEAT) return sw_cli_usage_error("serve", "at most %d %s", MAX_REPEAT, flag);
        if (!parse_fault(optarg, delay, &faults[n_faults], fault_names[n_faults]))
          return sw_cli_usage_error("serve", "%s '%s': give NAME:VERSION=%s", flag, optarg,
                                    delay ? "MILLISECONDS (0 to 60000)" : "FRACTION (0 to 1)");
        n_faults++;
        break;
      }
      case OPT_EVAL_DATA: mon.eval_data = optarg; break;
      case OPT_EVAL_EVERY:
        if (!sw_duration_parse(optarg, &mon.every_s)) return sw_cli_usage_error("serve", "--eval-every: '%s' is not a duration like 30s, 10m, 1h", optarg);
        break;
      case OPT_POLICY: mon.policy_path = optarg; break;
      case OPT_ALERT_WEBHOOK: mon.webhook_url = optarg; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("serve", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
  if (n_files && (registry || home)) return sw_cli_usage_error("serve", "--model-file and --registry/--home do not mix");
  if (n_labels && !n_files) return sw_cli_usage_error("serve", "--label goes with --model-file (the registry has aliases)");
  cfg.only = only;
  cfg.n_only = n_only;
  cfg.from_registry = n_files == 0;
  cfg.registry_url = registry;
  cfg.registry_home = home;
  cfg.faults = faults;
  cfg.n_faults = n_faults;
  if (n_faults) SW_WARN("serve: fault injection is on (--debug-delay/--debug-fail): for tests only");
  bool monitoring = mon.eval_data || mon.every_s > 0 || mon.policy_path || mon.webhook_url;
  if (monitoring && !(mon.every_s > 0)) return sw_cli_usage_error("serve", "--eval-data, --policy and --alert-webhook go with --eval-every");
  if (monitoring && n_files && !mon.eval_data) return sw_cli_usage_error("serve", "--eval-every with --model-file needs --eval-data (no registry lineage)");
  mon.from_registry = !n_files;
  mon.registry = registry;
  mon.home = home;
  if (monitoring) cfg.monitor = &mon;

  sw_catalog cat = {0};
  sw_server *server = NULL;
  char *token = NULL;
  int rc = SW_EXIT_OK;
  sw_status st = n_files ? sw_file_catalog_new(&cat) : sw_registry_catalog_new(registry, home, &cat);
  for (size_t i = 0; i < n_files && !st; i++) {
    const char *eq = strchr(files[i], '=');
    if (!eq || eq == files[i] || !eq[1]) {
      rc = sw_cli_usage_error("serve", "--model-file '%s': give NAME=PATH", files[i]);
      goto out;
    }
    char *name = sw_strndup(files[i], (size_t)(eq - files[i]));
    st = name ? sw_file_catalog_add_file(&cat, name, eq + 1) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(name);
  }
  for (size_t i = 0; i < n_labels && !st; i++) {
    const char *at = strchr(labels[i], '@'), *eq = at ? strchr(at, '=') : NULL;
    if (!at || !eq || !sw_cli_parse_int(eq + 1, 1, INT64_MAX, &n)) {
      rc = sw_cli_usage_error("serve", "--label '%s': give NAME@LABEL=VERSION", labels[i]);
      goto out;
    }
    char *name = sw_strndup(labels[i], (size_t)(at - labels[i])), *label = sw_strndup(at + 1, (size_t)(eq - at - 1));
    st = name && label ? sw_file_catalog_add_label(&cat, name, label, n) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(name);
    sw_free(label);
  }
  if (!st) st = token_file ? read_token(token_file, &token) : make_token(home, &token);
  if (st) goto out;
  cfg.admin_token = token;

  /* signals are taken by sigtimedwait in this thread alone: block them before any other
   * thread exists, so every thread inherits the mask */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  st = sw_server_start(&cfg, cat, &server);
  cat.ops = NULL; /* the server owns it now */
  if (st) goto out;
  double every = sw_server_poll_interval(server);
  for (;;) {
    struct timespec ts = {.tv_sec = (time_t)every, .tv_nsec = (long)((every - (double)(time_t)every) * 1e9)};
    int sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      SW_INFO("serve: %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    }
    if (sw_server_poll(server)) SW_WARN("serve: polling the catalog: %s", sw_last_error());
  }
  sw_server_drain(server, drain_s);
out:
  if (st) {
    fprintf(stderr, "slipway serve: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    rc = sw_cli_exit_code(st);
  }
  sw_server_free(server);
  sw_catalog_close(&cat);
  sw_free(token);
  return rc;
}
