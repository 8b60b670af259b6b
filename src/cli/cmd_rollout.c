/* slipway rollout: start, status, abort and promote rollouts on a running server, through
 * its admin API (docs/ROLLOUT.md). Flag parsing and printing only: the router and the
 * controller live in the server. */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "slipway/eval.h"
#include "slipway/registry.h"

static void help(void) {
  printf(
      "usage: slipway rollout start NAME:V [--mode canary|ab|shadow] [--steps 1,5,25,50,100]\n"
      "                             [--min-requests-per-step N] [--max-step-seconds S]\n"
      "                             [--policy FILE] [--keep-previous MIN] [--user-header H]\n"
      "                             [--ab-header H --ab-value V] [--alias A] [--slo-p99-ms MS]\n"
      "                             [--no-compare-latency] [--wait] [--json]\n"
      "       slipway rollout status NAME [--json]\n"
      "       slipway rollout abort NAME\n"
      "       slipway rollout promote NAME\n"
      "\n"
      "Rolls version V of a served model out against what its alias (production) points\n"
      "at, step by step, on a running `slipway serve` (registry catalog): canary splits\n"
      "traffic by weight, sticky per user; ab sends the requests whose header matches to\n"
      "the challenger; shadow mirrors a share of requests to it and discards its answers.\n"
      "The server rolls back by itself when the challenger is measurably worse (errors,\n"
      "latency, quality from feedback labels, the policy's SLOs) and moves the alias when\n"
      "the last step passes. status shows the weight, the step, the evidence per metric and\n"
      "every decision with its reason; abort rolls back by hand, promote skips ahead.\n"
      "\n"
      "flags:\n"
      "  --server URL             the server (default $SLIPWAY_SERVER, else http://127.0.0.1:8501)\n"
      "  --token-file F           the admin token (default $SLIPWAY_ADMIN_TOKEN, else\n"
      "                           $SLIPWAY_HOME/admin.token, else ./.slipway/admin.token)\n"
      "  --mode M                 canary (default), ab or shadow\n"
      "  --steps LIST             the challenger's traffic share per step, in percent,\n"
      "                           increasing, ending at 100 (default 1,5,25,50,100)\n"
      "  --min-requests-per-step N  challenger requests (labels when quality is judged)\n"
      "                           a step needs before it may advance (default 500)\n"
      "  --max-step-seconds S     then the step holds, saying so (default 600)\n"
      "  --policy FILE            a policy file: its rollout section (flags override it)\n"
      "  --keep-previous MIN      minutes the incumbent stays loaded after a promotion (10)\n"
      "  --user-header H          the header that names a user (default X-User-Id)\n"
      "  --ab-header H --ab-value V  ab mode: requests with H: V go to the challenger\n"
      "  --alias A                the alias the rollout moves (default production)\n"
      "  --slo-p99-ms MS          an objective: the challenger's p99 latency at most MS\n"
      "  --no-compare-latency     no latency test against the incumbent (a challenger slower\n"
      "                           by design); --slo-p99-ms still bounds its latency\n"
      "  --wait                   block until a decision: exit 0 promoted, 3 rolled back\n"
      "                           or aborted\n"
      "  --json                   print the server's record as JSON\n"
      "\n"
      "Exit status: 0 done (promoted, with --wait), 3 rolled back or aborted (--wait),\n"
      "2 bad flags or a policy the server refused, 1 other errors.\n");
}

typedef struct {
  const char *server, *token_file, *mode, *steps, *policy, *user_header, *ab_header, *ab_value, *alias;
  long long min_requests;
  double max_step_s, keep_previous, slo_p99_ms;
  bool have_min, have_max, have_keep, have_slo_p99, no_compare_latency, wait, json;
} args;

/* ---- HTTP --------------------------------------------------------------------------------- */

static size_t collect(char *p, size_t size, size_t n, void *arg) {
  sw_buf *b = arg;
  return sw_buf_append(b, p, size * n) ? 0 : size * n;
}

/* method on server+path with the token; *code the HTTP status, *answer the parsed body
 * (NULL when it is not JSON). IO with a message when the server cannot be reached. */
static sw_status http(const char *server, const char *token, const char *method, const char *path, const json_t *body,
                      long *code, json_t **answer) {
  *code = 0;
  *answer = NULL;
  static bool inited;
  if (!inited) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    inited = true;
  }
  size_t sl = strlen(server);
  while (sl && server[sl - 1] == '/') sl--;
  char *url = sw_asprintf("%.*s%s", (int)sl, server, path);
  char *auth = sw_asprintf("Authorization: Bearer %s", token);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  sw_buf resp = {0};
  char err[CURL_ERROR_SIZE] = "";
  sw_status st = SW_STATUS_OK;
  if (!url || !auth || !c || (body && !text)) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  h = curl_slist_append(h, auth);
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (text) curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
  else if (!strcmp(method, "POST")) curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    st = sw_error(SW_STATUS_IO, "%.*s: %s", (int)sl, server, err[0] ? err : curl_easy_strerror(rc));
    goto out;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
  json_error_t jerr;
  *answer = resp.len ? json_loadb((const char *)resp.data, resp.len, 0, &jerr) : NULL;
out:
  sw_buf_free(&resp);
  curl_slist_free_all(h);
  if (c) curl_easy_cleanup(c);
  free(text);
  sw_free(url);
  sw_free(auth);
  return st;
}

static sw_status read_token(const char *path, char **out) {
  *out = NULL;
  const char *env = getenv("SLIPWAY_ADMIN_TOKEN");
  if (!path && env && *env) {
    *out = sw_strdup(env);
    return *out ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  char *def = NULL;
  if (!path) {
    const char *home = getenv("SLIPWAY_HOME");
    def = sw_path_join(home && *home ? home : ".slipway", "admin.token");
    if (!def) return sw_error(SW_STATUS_NOMEM, "out of memory");
    path = def;
  }
  uint8_t *data = NULL;
  size_t len = 0;
  sw_status st = sw_read_file(path, &data, &len);
  if (st) sw_error_prefix(st, "the admin token (--token-file, SLIPWAY_ADMIN_TOKEN or $SLIPWAY_HOME/admin.token): ");
  sw_free(def);
  if (st) return st;
  while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) len--;
  data[len] = '\0';
  *out = (char *)data;
  return SW_STATUS_OK;
}

/* The exit code for an HTTP error answer, after printing it. */
static int http_failure(const char *sub, long code, const json_t *answer) {
  const char *msg = json_string_value(json_object_get(answer, "error"));
  fprintf(stderr, "slipway rollout %s: the server answered %ld: %s\n", sub, code, msg ? msg : "(no message)");
  if (json_is_true(json_object_get(answer, "refused"))) return SW_EXIT_REFUSED; /* e.g. rejected by a gate */
  return code == 400 ? SW_EXIT_USAGE : SW_EXIT_FAILURE;
}

/* ---- printing ------------------------------------------------------------------------------ */

static const char *str(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "-";
}

static void print_evidence(const json_t *ev) {
  const char *metric;
  const json_t *e;
  if (!json_object_size(ev)) {
    printf("  (no evidence yet)\n");
    return;
  }
  json_object_foreach((json_t *)ev, metric, e) {
    const json_t *ch = json_object_get(e, "challenger"), *in = json_object_get(e, "incumbent");
    printf("  %-15s e-value %-10.4g boundary %-8.4g challenger %lld/%lld", metric, json_number_value(json_object_get(e, "e_value")),
           json_number_value(json_object_get(e, "boundary")), (long long)json_integer_value(json_object_get(ch, "events")),
           (long long)json_integer_value(json_object_get(ch, "n")));
    if (json_is_object(in))
      printf("  incumbent %lld/%lld", (long long)json_integer_value(json_object_get(in, "events")),
             (long long)json_integer_value(json_object_get(in, "n")));
    printf("  %s\n", str(e, "verdict"));
  }
}

static void print_record(const json_t *rec) {
  const json_t *pol = json_object_get(rec, "policy"), *live = json_object_get(rec, "live");
  printf("rollout %lld of %s: %s of version %lld against %lld (alias %s)\n", (long long)json_integer_value(json_object_get(rec, "id")),
         str(rec, "model"), str(rec, "mode"), (long long)json_integer_value(json_object_get(rec, "challenger")),
         (long long)json_integer_value(json_object_get(rec, "incumbent")), str(pol, "alias"));
  const json_t *src = json_is_object(live) ? live : rec;
  printf("state %s  weight %g%%  step %lld of [", str(src, "state"), json_number_value(json_object_get(src, "weight")),
         (long long)json_integer_value(json_object_get(src, "step")));
  size_t i;
  const json_t *x;
  json_array_foreach(json_object_get(pol, "steps"), i, x) printf("%s%lld", i ? "," : "", (long long)json_integer_value(x));
  printf("]  started %s  updated %s\n", str(rec, "created_at"), str(rec, "updated_at"));
  if (json_is_false(json_object_get(pol, "compare_latency")))
    printf("latency not compared with the incumbent's (compare_latency: false); p99 objective %s\n",
           json_is_number(json_object_get(json_object_get(pol, "slo"), "p99_ms")) ? "on" : "none");
  const json_t *decisions = json_object_get(rec, "decisions");
  const json_t *ev = json_object_get(live, "evidence");
  size_t n_snap = 0;
  json_array_foreach(decisions, i, x) {
    if (!strcmp(str(x, "action"), "snapshot")) n_snap++;
    if (!json_is_object(live) && json_is_object(json_object_get(x, "evidence"))) ev = json_object_get(x, "evidence");
  }
  printf("evidence%s:\n", json_is_object(live) ? " (live)" : " (as last recorded)");
  print_evidence(ev);
  printf("decisions:\n");
  json_array_foreach(decisions, i, x) {
    if (!strcmp(str(x, "action"), "snapshot")) continue;
    printf("  %s  %-8s step %lld  %3lld%%  %s\n", str(x, "at"), str(x, "action"), (long long)json_integer_value(json_object_get(x, "step")),
           (long long)json_integer_value(json_object_get(x, "weight")), str(x, "reason"));
  }
  if (n_snap) printf("  (and %zu snapshots of the evidence)\n", n_snap);
}

/* ---- subcommands ---------------------------------------------------------------------------- */

/* The policy object the server takes: the file's rollout section, then the flags. */
static int build_policy(const args *a, json_t **out) {
  json_t *p = NULL;
  if (a->policy) {
    sw_policy *pol = NULL;
    char *err = NULL;
    sw_status st = sw_policy_load(a->policy, &pol, &err);
    if (st) {
      fprintf(stderr, "slipway rollout start: %s\n", err ? err : sw_last_error());
      sw_free(err);
      return sw_cli_exit_code(st);
    }
    json_t *whole = sw_policy_to_json(pol);
    sw_policy_free(pol);
    p = json_object_get(whole, "rollout") ? json_deep_copy(json_object_get(whole, "rollout")) : json_object();
    json_decref(whole);
    /* an absent SLO is "none": leave the empty object out */
    if (json_object_size(json_object_get(p, "slo")) == 0) json_object_del(p, "slo");
  } else {
    p = json_object();
  }
  if (a->steps) {
    json_t *steps = json_array();
    const char *s = a->steps;
    while (*s) {
      char *end;
      long v = strtol(s, &end, 10);
      if (end == s || (*end && *end != ',')) {
        json_decref(steps);
        json_decref(p);
        return sw_cli_usage_error("rollout start", "--steps '%s': give increasing percentages like 1,5,25,50,100", a->steps);
      }
      json_array_append_new(steps, json_integer(v));
      s = *end ? end + 1 : end;
    }
    json_object_set_new(p, "steps", steps);
  }
  if (a->have_min) json_object_set_new(p, "min_requests_per_step", json_integer(a->min_requests));
  if (a->have_max) json_object_set_new(p, "max_step_seconds", json_real(a->max_step_s));
  if (a->have_keep) json_object_set_new(p, "keep_previous_minutes", json_real(a->keep_previous));
  if (a->user_header) json_object_set_new(p, "user_header", json_string(a->user_header));
  if (a->ab_header) json_object_set_new(p, "ab", json_pack("{s:s, s:s}", "header", a->ab_header, "value", a->ab_value));
  if (a->alias) json_object_set_new(p, "alias", json_string(a->alias));
  if (a->no_compare_latency) json_object_set_new(p, "compare_latency", json_false());
  if (a->have_slo_p99) {
    json_t *slo = json_object_get(p, "slo");
    if (!json_is_object(slo)) {
      slo = json_object();
      json_object_set_new(p, "slo", slo);
    }
    json_object_set_new(slo, "p99_ms", json_real(a->slo_p99_ms));
  }
  *out = p;
  return SW_EXIT_OK;
}

static bool final_state(const char *s) {
  return s && (!strcmp(s, "promoted") || !strcmp(s, "rolled_back") || !strcmp(s, "aborted"));
}

/* Polls the model's record until rollout id reaches a final state. */
static int wait_decision(const char *server, const char *token, const char *model, int64_t id, bool json) {
  char path[256];
  snprintf(path, sizeof path, "/admin/rollouts/%s", model);
  double unreachable_since = 0;
  for (;;) {
    long code = 0;
    json_t *rec = NULL;
    sw_status st = http(server, token, "GET", path, NULL, &code, &rec);
    if (st) {
      /* a server restarting resumes the rollout: keep asking for a while */
      double now = sw_now();
      if (!unreachable_since) unreachable_since = now;
      if (now - unreachable_since > 120) {
        fprintf(stderr, "slipway rollout start: %s (for 120 s)\n", sw_last_error());
        return SW_EXIT_FAILURE;
      }
    } else {
      unreachable_since = 0;
      if (code != 200) {
        int rc = http_failure("start", code, rec);
        json_decref(rec);
        return rc;
      }
      const char *state = json_string_value(json_object_get(rec, "state"));
      if (json_integer_value(json_object_get(rec, "id")) != id) {
        fprintf(stderr, "slipway rollout start: a newer rollout of %s replaced %lld\n", model, (long long)id);
        json_decref(rec);
        return SW_EXIT_FAILURE;
      }
      if (final_state(state)) {
        if (json) {
          char *t = json_dumps(rec, JSON_INDENT(2));
          if (t) printf("%s\n", t);
          free(t);
        } else {
          const json_t *ds = json_object_get(rec, "decisions");
          const json_t *last = json_array_get(ds, json_array_size(ds) - 1);
          for (size_t i = json_array_size(ds); i-- > 0;)
            if (strcmp(str(json_array_get(ds, i), "action"), "snapshot")) {
              last = json_array_get(ds, i);
              break;
            }
          printf("%s at step %lld: %s\n", state, (long long)json_integer_value(json_object_get(last, "step")), str(last, "reason"));
        }
        int rc = !strcmp(state, "promoted") ? SW_EXIT_OK : SW_EXIT_REFUSED;
        json_decref(rec);
        return rc;
      }
    }
    json_decref(rec);
    struct timespec ts = {0, 250000000};
    nanosleep(&ts, NULL);
  }
}

static int cmd_start(const args *a, const char *ref, const char *token) {
  sw_model_ref r;
  if (sw_model_ref_parse(ref, strlen(ref), &r) || !r.version)
    return sw_cli_usage_error("rollout start", "'%s': give the challenger as NAME:VERSION", ref);
  if (strcmp(a->mode, "canary") && strcmp(a->mode, "ab") && strcmp(a->mode, "shadow"))
    return sw_cli_usage_error("rollout start", "--mode '%s': canary, ab or shadow", a->mode);
  if (!a->ab_header != !a->ab_value) return sw_cli_usage_error("rollout start", "--ab-header and --ab-value go together");
  if (!strcmp(a->mode, "ab") && !a->ab_header)
    return sw_cli_usage_error("rollout start", "--mode ab needs --ab-header H --ab-value V (who gets the challenger)");
  json_t *policy = NULL;
  int rc = build_policy(a, &policy);
  if (rc) return rc;
  json_t *body = json_pack("{s:s, s:I, s:s, s:o}", "model", r.name, "challenger", (json_int_t)r.version, "mode", a->mode, "policy", policy);
  long code = 0;
  json_t *rec = NULL;
  sw_status st = http(a->server, token, "POST", "/admin/rollouts", body, &code, &rec);
  json_decref(body);
  if (st) {
    fprintf(stderr, "slipway rollout start: %s\n", sw_last_error());
    return SW_EXIT_FAILURE;
  }
  if (code != 201) {
    rc = http_failure("start", code, rec);
    json_decref(rec);
    return rc;
  }
  int64_t id = json_integer_value(json_object_get(rec, "id"));
  if (a->json && !a->wait) {
    char *t = json_dumps(rec, JSON_INDENT(2));
    if (t) printf("%s\n", t);
    free(t);
  } else {
    printf("rollout %lld of %s: %s of version %lld against %lld\n", (long long)id, r.name, a->mode, (long long)r.version,
           (long long)json_integer_value(json_object_get(rec, "incumbent")));
  }
  fflush(stdout);
  json_decref(rec);
  if (!a->wait) return SW_EXIT_OK;
  return wait_decision(a->server, token, r.name, id, a->json);
}

static int cmd_model(const args *a, const char *sub, const char *model, const char *token) {
  if (!sw_model_name_valid(model)) return sw_cli_usage_error("rollout", "'%s' is not a model name", model);
  char path[256];
  snprintf(path, sizeof path, "/admin/rollouts/%s%s%s", model, strcmp(sub, "status") ? "/" : "", strcmp(sub, "status") ? sub : "");
  long code = 0;
  json_t *rec = NULL;
  sw_status st = http(a->server, token, strcmp(sub, "status") ? "POST" : "GET", path, NULL, &code, &rec);
  if (st) {
    fprintf(stderr, "slipway rollout %s: %s\n", sub, sw_last_error());
    return SW_EXIT_FAILURE;
  }
  int rc = SW_EXIT_OK;
  if (code != 200) rc = http_failure(sub, code, rec);
  else if (a->json) {
    char *t = json_dumps(rec, JSON_INDENT(2));
    if (t) printf("%s\n", t);
    free(t);
  } else {
    print_record(rec);
  }
  json_decref(rec);
  return rc;
}

int sw_cmd_rollout(int argc, char **argv) {
  enum {
    OPT_SERVER = 256, OPT_TOKEN, OPT_MODE, OPT_STEPS, OPT_MIN, OPT_MAX, OPT_POLICY, OPT_KEEP, OPT_USER, OPT_ABH, OPT_ABV,
    OPT_ALIAS, OPT_WAIT, OPT_JSON, OPT_HELP, OPT_SLO_P99, OPT_NO_CMP_LAT
  };
  static const struct option longopts[] = {{"server", required_argument, 0, OPT_SERVER},
                                           {"token-file", required_argument, 0, OPT_TOKEN},
                                           {"mode", required_argument, 0, OPT_MODE},
                                           {"steps", required_argument, 0, OPT_STEPS},
                                           {"min-requests-per-step", required_argument, 0, OPT_MIN},
                                           {"max-step-seconds", required_argument, 0, OPT_MAX},
                                           {"policy", required_argument, 0, OPT_POLICY},
                                           {"keep-previous", required_argument, 0, OPT_KEEP},
                                           {"user-header", required_argument, 0, OPT_USER},
                                           {"ab-header", required_argument, 0, OPT_ABH},
                                           {"ab-value", required_argument, 0, OPT_ABV},
                                           {"alias", required_argument, 0, OPT_ALIAS},
                                           {"slo-p99-ms", required_argument, 0, OPT_SLO_P99},
                                           {"no-compare-latency", no_argument, 0, OPT_NO_CMP_LAT},
                                           {"wait", no_argument, 0, OPT_WAIT},
                                           {"json", no_argument, 0, OPT_JSON},
                                           {"help", no_argument, 0, OPT_HELP},
                                           {0, 0, 0, 0}};
  args a = {.mode = "canary"};
  a.server = getenv("SLIPWAY_SERVER") && *getenv("SLIPWAY_SERVER") ? getenv("SLIPWAY_SERVER") : "http://127.0.0.1:8501";
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_SERVER: a.server = optarg; break;
      case OPT_TOKEN: a.token_file = optarg; break;
      case OPT_MODE: a.mode = optarg; break;
      case OPT_STEPS: a.steps = optarg; break;
      case OPT_MIN:
        if (!sw_cli_parse_int(optarg, 1, INT64_MAX, &a.min_requests))
          return sw_cli_usage_error("rollout", "--min-requests-per-step: '%s' is not a positive count", optarg);
        a.have_min = true;
        break;
      case OPT_MAX:
        if (!sw_cli_parse_double(optarg, 0.001, 1e9, &a.max_step_s))
          return sw_cli_usage_error("rollout", "--max-step-seconds: '%s' is not a positive number of seconds", optarg);
        a.have_max = true;
        break;
      case OPT_POLICY: a.policy = optarg; break;
      case OPT_KEEP:
        if (!sw_cli_parse_double(optarg, 0, 10080, &a.keep_previous))
          return sw_cli_usage_error("rollout", "--keep-previous: '%s' is not minutes from 0 to 10080", optarg);
        a.have_keep = true;
        break;
      case OPT_USER: a.user_header = optarg; break;
      case OPT_ABH: a.ab_header = optarg; break;
      case OPT_ABV: a.ab_value = optarg; break;
      case OPT_ALIAS: a.alias = optarg; break;
      case OPT_SLO_P99:
        if (!sw_cli_parse_double(optarg, 0.001, 1e9, &a.slo_p99_ms))
          return sw_cli_usage_error("rollout", "--slo-p99-ms: '%s' is not a positive number of milliseconds", optarg);
        a.have_slo_p99 = true;
        break;
      case OPT_NO_CMP_LAT: a.no_compare_latency = true; break;
      case OPT_WAIT: a.wait = true; break;
      case OPT_JSON: a.json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error("rollout", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (argc - optind < 1) return sw_cli_usage_error("rollout", "give a subcommand: start, status, abort or promote");
  const char *sub = argv[optind];
  bool start = !strcmp(sub, "start");
  if (!start && strcmp(sub, "status") && strcmp(sub, "abort") && strcmp(sub, "promote"))
    return sw_cli_usage_error("rollout", "unknown subcommand '%s' (start, status, abort, promote)", sub);
  if (argc - optind != 2)
    return sw_cli_usage_error("rollout", start ? "start takes one NAME:VERSION" : "%s takes one model NAME", sub);
  if (!start && (a.steps || a.have_min || a.have_max || a.policy || a.have_keep || a.user_header || a.ab_header ||
                 a.ab_value || a.alias || a.have_slo_p99 || a.no_compare_latency || a.wait || strcmp(a.mode, "canary")))
    return sw_cli_usage_error("rollout", "the rollout's settings go with start");
  char *token = NULL;
  sw_status st = read_token(a.token_file, &token);
  if (st) {
    fprintf(stderr, "slipway rollout %s: %s\n", sub, sw_last_error());
    return SW_EXIT_FAILURE;
  }
  int rc = start ? cmd_start(&a, argv[optind + 1], token) : cmd_model(&a, sub, argv[optind + 1], token);
  sw_free(token);
  return rc;
}
