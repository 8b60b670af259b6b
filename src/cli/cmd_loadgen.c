/* slipway loadgen: flags in, sw_loadgen_run sends the traffic, the report (or --json) out. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/loadgen.h"
#include "slipway/serve.h"

static void help(void) {
  printf(
      "usage: slipway loadgen --model NAME --data DIR --rps R (--duration S | --requests N | --once)\n"
      "                       [--server URL] [--split test] [--feedback] [--users U] [--json] ...\n"
      "\n"
      "Replays the labeled examples of a dataset split (in order, wrapping around) against a\n"
      "model server at Poisson arrival times: open loop, so a slow server cannot slow the\n"
      "client down and hide its latency (each request's latency counts from its scheduled\n"
      "time). Reports requests sent, answered, errors by HTTP status, timeouts, connection\n"
      "errors, requests dropped at --max-in-flight, the achieved rate, latency percentiles\n"
      "(from the scheduled time, and the service time from the actual send), and per\n"
      "version (X-Model-Version) the requests and the accuracy of the answers against the\n"
      "labels. With --feedback each answered request's labels are posted to the server's\n"
      ":feedback endpoint under its X-Request-Id.\n"
      "\n"
      "flags:\n"
      "  --server URL           the server (http://127.0.0.1:8501)\n"
      "  --model NAME           the model to call\n"
      "  --version V            call that version (/versions/V) instead of the server's choice\n"
      "  --data DIR             a dataset dir of 'slipway prep'\n"
      "  --split NAME           the split to replay (test)\n"
      "  --protocol v1|v2       TF Serving :predict with instances (v1), or v2 infer\n"
      "  --rps R                mean arrival rate, requests a second\n"
      "  --duration S           seconds of arrivals\n"
      "  --requests N           stop after N arrivals (with --duration: whichever comes first)\n"
      "  --once                 replay the split exactly once, then stop\n"
      "  --batch N              examples per request (1)\n"
      "  --seed N               seed of the arrival times and user ids (1)\n"
      "  --max-in-flight N      requests in flight at most (512); arrivals past it are dropped\n"
      "  --timeout-ms N         per request, connecting included (10000)\n"
      "  --users U              send X-User-Id: user-K, K drawn uniformly among U users\n"
      "  --header 'NAME: VALUE' an extra header on every request (repeatable)\n"
      "  --feedback             post the labels of answered requests as feedback\n"
      "  --feedback-delay-ms D  how long after each answer (0)\n"
      "  --json                 print the report as one JSON object\n"
      "\n"
      "Exit status: 0 when it ran (errors in the answers are part of the report), 1 when it\n"
      "could not run (server unreachable at the start, unknown model, unreadable dataset),\n"
      "2 on usage errors. SIGINT/SIGTERM stop the arrivals; the report covers what ran.\n");
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static double num(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }
static long long cnt(const json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static void print_text(const json_t *r) {
  const json_t *req = json_object_get(r, "requests"), *lat = json_object_get(r, "latency_ms");
  printf("loadgen: model %s at %s (%s), %g requests/s target over %.2f s\n", json_string_value(json_object_get(r, "model")),
         json_string_value(json_object_get(r, "server")), json_string_value(json_object_get(r, "protocol")),
         num(r, "target_rps"), num(r, "duration_s"));
  printf("requests   scheduled %lld  sent %lld  answered %lld  dropped %lld  achieved %.1f/s\n", cnt(req, "scheduled"),
         cnt(req, "sent"), cnt(req, "answered"), cnt(req, "dropped"), num(r, "achieved_rps"));
  printf("errors     timeouts %lld  connection %lld  other %lld  unreadable answers %lld  http", cnt(req, "timeouts"),
         cnt(req, "connection_errors"), cnt(req, "other_errors"), cnt(req, "bad_answers"));
  const char *k;
  const json_t *v;
  json_object_foreach(json_object_get(req, "http_errors"), k, v) printf(" %s:%lld", k, (long long)json_integer_value(v));
  if (!json_object_size(json_object_get(req, "http_errors"))) printf(" none");
  printf("\nlatency ms        mean      p50      p90      p99    p99.9      max\n");
  static const char *const kinds[] = {"scheduled", "service"};
  for (int i = 0; i < 2; i++) {
    const json_t *l = json_object_get(lat, kinds[i]);
    if (!cnt(l, "count")) {
      printf("  %-10s (no answers)\n", kinds[i]);
      continue;
    }
    printf("  %-10s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n", kinds[i], num(l, "mean"), num(l, "p50"), num(l, "p90"),
           num(l, "p99"), num(l, "p999"), num(l, "max"));
  }
  json_object_foreach(json_object_get(r, "versions"), k, v) {
    printf("version %-6s %lld requests, %lld answered", k, cnt(v, "requests"), cnt(v, "answered"));
    if (json_object_get(v, "accuracy")) printf(", accuracy %.4f over %lld examples", num(v, "accuracy"), cnt(v, "examples"));
    if (json_object_get(v, "mae")) printf(", mae %.6g over %lld examples", num(v, "mae"), cnt(v, "examples"));
    printf("\n");
  }
  if (json_object_get(r, "accuracy")) printf("accuracy   %.4f\n", num(r, "accuracy"));
  if (json_object_get(r, "mae")) printf("mae        %.6g\n", num(r, "mae"));
  const json_t *fb = json_object_get(r, "feedback");
  if (fb)
    printf("feedback   %lld request ids (%lld labels) in %lld posts: joined %lld, unknown %lld, expired %lld, "
           "duplicate %lld, invalid %lld, failed %lld\n",
           cnt(fb, "posted"), cnt(fb, "labels"), cnt(fb, "posts"), cnt(fb, "joined"), cnt(fb, "unknown"), cnt(fb, "expired"),
           cnt(fb, "duplicate"), cnt(fb, "invalid"), cnt(fb, "failed"));
  if (json_is_true(json_object_get(r, "stopped"))) printf("(stopped by a signal)\n");
}

#define MAX_HEADERS 32

int sw_cmd_loadgen(int argc, char **argv) {
  enum {
    OPT_SERVER = 256, OPT_MODEL, OPT_VERSION, OPT_DATA, OPT_SPLIT, OPT_PROTOCOL, OPT_RPS, OPT_DURATION, OPT_REQUESTS,
    OPT_ONCE, OPT_BATCH, OPT_SEED, OPT_MAX_IN_FLIGHT, OPT_TIMEOUT, OPT_USERS, OPT_HEADER, OPT_FEEDBACK, OPT_FB_DELAY,
    OPT_JSON, OPT_HELP
  };
  static const struct option longopts[] = {
      {"server", required_argument, 0, OPT_SERVER},       {"model", required_argument, 0, OPT_MODEL},
      {"version", required_argument, 0, OPT_VERSION},     {"data", required_argument, 0, OPT_DATA},
      {"split", required_argument, 0, OPT_SPLIT},         {"protocol", required_argument, 0, OPT_PROTOCOL},
      {"rps", required_argument, 0, OPT_RPS},             {"duration", required_argument, 0, OPT_DURATION},
      {"requests", required_argument, 0, OPT_REQUESTS},   {"once", no_argument, 0, OPT_ONCE},
      {"batch", required_argument, 0, OPT_BATCH},         {"seed", required_argument, 0, OPT_SEED},
      {"max-in-flight", required_argument, 0, OPT_MAX_IN_FLIGHT},
      {"timeout-ms", required_argument, 0, OPT_TIMEOUT},  {"users", required_argument, 0, OPT_USERS},
      {"header", required_argument, 0, OPT_HEADER},       {"feedback", no_argument, 0, OPT_FEEDBACK},
      {"feedback-delay-ms", required_argument, 0, OPT_FB_DELAY},
      {"json", no_argument, 0, OPT_JSON},                 {"help", no_argument, 0, OPT_HELP},
      {0, 0, 0, 0}};
  sw_loadgen_options o = {0};
  const char *headers[MAX_HEADERS];
  bool as_json = false, once = false;
  long long n;
  double d;
  int c;
  o.seed = 1;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_SERVER:
        if (strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8))
          return sw_cli_usage_error("loadgen", "--server: '%s' is not an http:// or https:// URL", optarg);
        o.server = optarg;
        break;
      case OPT_MODEL: o.model = optarg; break;
      case OPT_VERSION:
        if (!sw_cli_parse_int(optarg, 1, INT64_MAX, &n)) return sw_cli_usage_error("loadgen", "--version: '%s' is not a positive integer", optarg);
        o.version = n;
        break;
      case OPT_DATA: o.data_dir = optarg; break;
      case OPT_SPLIT: o.split = optarg; break;
      case OPT_PROTOCOL:
        if (!strcmp(optarg, "v1")) o.protocol = SW_LOADGEN_V1;
        else if (!strcmp(optarg, "v2")) o.protocol = SW_LOADGEN_V2;
        else return sw_cli_usage_error("loadgen", "--protocol: '%s' is not v1 or v2", optarg);
        break;
      case OPT_RPS:
        if (!sw_cli_parse_double(optarg, 1e-6, 1e6, &d) || !(d > 0))
          return sw_cli_usage_error("loadgen", "--rps: '%s' is not a rate above 0 and at most 1000000", optarg);
        o.rps = d;
        break;
      case OPT_DURATION:
        if (!sw_cli_parse_double(optarg, 1e-6, 1e7, &d) || !(d > 0))
          return sw_cli_usage_error("loadgen", "--duration: '%s' is not a number of seconds above 0", optarg);
        o.duration_s = d;
        break;
      case OPT_REQUESTS:
        if (!sw_cli_parse_int(optarg, 1, INT64_MAX, &n)) return sw_cli_usage_error("loadgen", "--requests: '%s' is not a count >= 1", optarg);
        o.max_requests = n;
        break;
      case OPT_ONCE: once = true; break;
      case OPT_BATCH:
        if (!sw_cli_parse_int(optarg, 1, 65536, &n)) return sw_cli_usage_error("loadgen", "--batch: '%s' is not a count from 1 to 65536", optarg);
        o.batch = (int)n;
        break;
      case OPT_SEED:
        if (!sw_cli_parse_u64(optarg, &o.seed)) return sw_cli_usage_error("loadgen", "--seed: '%s' is not a non-negative integer", optarg);
        break;
      case OPT_MAX_IN_FLIGHT:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("loadgen", "--max-in-flight: '%s' is not a count from 1 to 100000", optarg);
        o.max_in_flight = (int)n;
        break;
      case OPT_TIMEOUT:
        if (!sw_cli_parse_int(optarg, 1, 86400000, &n)) return sw_cli_usage_error("loadgen", "--timeout-ms: '%s' is not a number of milliseconds >= 1", optarg);
        o.timeout_ms = n;
        break;
      case OPT_USERS:
        if (!sw_cli_parse_int(optarg, 1, 1000000000, &n)) return sw_cli_usage_error("loadgen", "--users: '%s' is not a count from 1 to 1000000000", optarg);
        o.users = (int)n;
        break;
      case OPT_HEADER:
        if (o.n_headers == MAX_HEADERS) return sw_cli_usage_error("loadgen", "--header: at most %d", MAX_HEADERS);
        if (!strchr(optarg, ':') || optarg[0] == ':' || strpbrk(optarg, "\r\n"))
          return sw_cli_usage_error("loadgen", "--header: '%s' is not 'NAME: VALUE'", optarg);
        headers[o.n_headers++] = optarg;
        break;
      case OPT_FEEDBACK: o.feedback = true; break;
      case OPT_FB_DELAY:
        if (!sw_cli_parse_int(optarg, 0, 86400000, &n)) return sw_cli_usage_error("loadgen", "--feedback-delay-ms: '%s' is not a number of milliseconds >= 0", optarg);
        o.feedback_delay_ms = n;
        break;
      case OPT_JSON: as_json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("loadgen", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("loadgen", "unexpected argument '%s'", argv[optind]);
  if (!o.model || !o.data_dir || !(o.rps > 0)) return sw_cli_usage_error("loadgen", "--model, --data and --rps are required");
  if (!sw_serve_name_valid(o.model, strlen(o.model)))
    return sw_cli_usage_error("loadgen", "--model: '%s' is not a model name (1 to 128 of A-Za-z0-9._-)", o.model);
  if (once && o.max_requests) return sw_cli_usage_error("loadgen", "--once and --requests exclude each other");
  if (once) o.max_requests = -1;
  if (!o.duration_s && !o.max_requests) return sw_cli_usage_error("loadgen", "one of --duration, --requests or --once is needed");
  o.headers = headers;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  o.stop = &stop_flag;

  json_t *rep = NULL;
  sw_status st = sw_loadgen_run(&o, &rep);
  if (st) {
    fprintf(stderr, "slipway loadgen: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    /* the options were checked above: whatever the library refuses now is a failure to run */
    return SW_EXIT_FAILURE;
  }
  if (as_json) {
    json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
  } else {
    print_text(rep);
  }
  json_decref(rep);
  return SW_EXIT_OK;
}
