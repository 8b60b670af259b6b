/* slipway registry: register, list, show, lineage, alias, promote, verify, events. Flags
 * in; the registry library (and eval's promotion) does the work; text or --json out. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/eval.h"
#include "slipway/registry.h"

static void help(void) {
  printf(
      "usage: slipway registry <command> [flags]\n"
      "\n"
      "A versioned store of models with their lineage, aliases and promotion gates.\n"
      "\n"
      "commands:\n"
      "  register --run RUN --name NAME            a finished run (RUN/model.onnx, RUN/run.json)\n"
      "  register --onnx FILE --name NAME [--dataset DIR] [--source TEXT] [--code-version TEXT]\n"
      "                                            a model trained elsewhere, with its provenance\n"
      "  list [NAME]                               every version (of one model)\n"
      "  show NAME:V|NAME@ALIAS                    metrics, lineage, aliases, state, events\n"
      "  lineage NAME:V                            upstream: dataset, run, config, code version\n"
      "  lineage --dataset SHA256                  downstream: every version trained on it\n"
      "  promote NAME:V --policy FILE [--alias production] [--data DIR]\n"
      "                                            evaluate against the alias's version, judge\n"
      "                                            with the policy's gate, move the alias or\n"
      "                                            refuse (exit 3, every failed check listed)\n"
      "  alias NAME:V ALIAS --why TEXT             move an alias by hand\n"
      "  verify                                    re-hash every artifact (exit 1 on a problem)\n"
      "  events [--after ID]                       the event log\n"
      "\n"
      "flags:\n"
      "  --registry URL   a SQLite file or postgres://... (default $SLIPWAY_REGISTRY, else\n"
      "                   $SLIPWAY_HOME/registry.db)\n"
      "  --home DIR       where artifacts live (default $SLIPWAY_HOME, else ./.slipway)\n"
      "  --who NAME       recorded as the actor (default $USER)\n"
      "  --why TEXT       recorded as the reason (alias, promote)\n"
      "  --description T  a note on the version (register)\n"
      "  --threads T      CPU threads for evaluation (promote; default all cores)\n"
      "  --json           print the result as JSON\n");
}

typedef struct {
  const char *sub;
  const char *registry, *home, *who, *why;
  const char *run, *onnx, *name, *dataset, *source, *code_version, *description;
  const char *policy, *alias, *data;
  long long after;
  int threads;
  bool json;
  const char *pos[3];
  int n_pos;
} args;

static int fail(const char *sub, sw_status st) {
  fprintf(stderr, "slipway registry %s: %s\n", sub, sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  return sw_cli_exit_code(st);
}

static void print_json(const json_t *v) {
  json_dumpf(v, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
  fputc('\n', stdout);
}

static const char *s(const json_t *o, const char *key) {
  const char *v = json_string_value(json_object_get(o, key));
  return v ? v : "-";
}

static void print_aliases(const json_t *aliases) {
  size_t i;
  json_t *a;
  if (!json_array_size(aliases)) printf("-");
  json_array_foreach(aliases, i, a) printf("%s%s", i ? "," : "", json_string_value(a));
}

static void print_metrics(const json_t *m) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)m, k, v) printf(" %s %.4f", k, json_number_value(v));
}

static int cmd_register(sw_registry *reg, const args *a) {
  if (!a->name) return sw_cli_usage_error("registry register", "--name is required");
  if (!a->run == !a->onnx) return sw_cli_usage_error("registry register", "give either --run RUN or --onnx FILE");
  if (a->n_pos) return sw_cli_usage_error("registry register", "unexpected argument '%s'", a->pos[0]);
  sw_register_options o = {.name = a->name, .run_dir = a->run, .onnx_path = a->onnx, .dataset_dir = a->dataset,
                           .source = a->source, .code_version = a->code_version, .description = a->description, .who = a->who};
  json_t *v = NULL;
  sw_status st = sw_registry_register(reg, &o, &v);
  if (st) return fail("register", st);
  if (a->json) print_json(v);
  else
    printf("registered %s (artifact sha256 %s, state %s)\n", s(v, "ref"), s(json_object_get(v, "artifact"), "sha256"),
           s(v, "state"));
  json_decref(v);
  return SW_EXIT_OK;
}

static int cmd_list(sw_registry *reg, const args *a) {
  if (a->n_pos > 1) return sw_cli_usage_error("registry list", "unexpected argument '%s'", a->pos[1]);
  json_t *all = NULL;
  sw_status st = sw_registry_list(reg, a->n_pos ? a->pos[0] : NULL, &all);
  if (st) return fail("list", st);
  if (a->json) print_json(all);
  else {
    printf("%-32s %-12s %-20s %-24s %s\n", "VERSION", "STATE", "ALIASES", "CREATED", "ARTIFACT");
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v) {
      char ref[200];
      snprintf(ref, sizeof ref, "%s:%lld", s(v, "name"), (long long)json_integer_value(json_object_get(v, "version")));
      printf("%-32s %-12s ", ref, s(v, "state"));
      char al[256] = "";
      size_t k;
      json_t *x;
      json_array_foreach(json_object_get(v, "aliases"), k, x) {
        size_t n = strlen(al);
        snprintf(al + n, sizeof al - n, "%s%s", k ? "," : "", json_string_value(x));
      }
      printf("%-20s %-24s %.12s\n", al[0] ? al : "-", s(v, "created_at"), s(v, "artifact_sha256"));
    }
  }
  json_decref(all);
  return SW_EXIT_OK;
}

static void print_lineage_run(const json_t *run) {
  if (!json_is_object(run)) {
    printf("  run         none (registered from a file)\n");
    return;
  }
  printf("  run         %s\n", s(run, "path"));
  printf("  checkpoint  %s\n", s(run, "checkpoint"));
  printf("  config      sha256 %s\n", s(run, "config_sha256"));
  char *cfg = json_dumps(json_object_get(run, "config"), JSON_COMPACT | JSON_SORT_KEYS);
  char *hp = json_dumps(json_object_get(run, "hyperparameters"), JSON_COMPACT | JSON_SORT_KEYS);
  printf("  model       %s\n", cfg ? cfg : "-");
  printf("  hyperparams %s\n", hp ? hp : "-");
  free(cfg);
  free(hp);
  printf("  code        %s\n", s(run, "code_version"));
  printf("  host        %s\n", s(run, "host"));
  printf("  params      sha256 %s\n", s(run, "params_sha256"));
}

static int cmd_show(sw_registry *reg, const args *a) {
  if (a->n_pos != 1) return sw_cli_usage_error("registry show", "give one NAME:VERSION or NAME@ALIAS");
  json_t *v = NULL;
  sw_status st = sw_registry_show(reg, a->pos[0], &v);
  if (st) return fail("show", st);
  /* the rollouts this version took part in, as challenger or incumbent */
  json_t *all = NULL, *rollouts = json_array();
  int64_t ver = json_integer_value(json_object_get(v, "version"));
  if (!sw_registry_rollout_list(reg, s(v, "name"), &all)) {
    size_t k;
    json_t *ro;
    json_array_foreach(all, k, ro) {
      if (json_integer_value(json_object_get(ro, "challenger")) == ver || json_integer_value(json_object_get(ro, "incumbent")) == ver)
        json_array_append(rollouts, ro);
    }
  }
  json_decref(all);
  json_object_set_new(v, "rollouts", rollouts);
  if (a->json) {
    print_json(v);
    json_decref(v);
    return SW_EXIT_OK;
  }
  printf("%s  state %s  aliases ", s(v, "ref"), s(v, "state"));
  print_aliases(json_object_get(v, "aliases"));
  printf("\n  created     %s by %s\n", s(v, "created_at"), s(v, "created_by"));
  const json_t *art = json_object_get(v, "artifact");
  printf("  artifact    sha256 %s (%lld bytes)\n", s(art, "sha256"), (long long)json_integer_value(json_object_get(art, "size")));
  const json_t *ds = json_object_get(v, "dataset");
  if (json_is_object(ds)) printf("  dataset     %s (manifest sha256 %s)\n", s(ds, "path"), s(ds, "manifest_sha256"));
  const json_t *run = json_object_get(v, "run");
  if (json_is_object(run)) printf("  run         %s (%s)\n", s(run, "path"), s(run, "code_version"));
  if (json_is_string(json_object_get(v, "source"))) printf("  source      %s\n", s(v, "source"));
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(v, "evaluations"), i, e) {
    printf("  eval        %s %s%s%s (%lld examples):", s(e, "context"), s(e, "split"), json_is_string(json_object_get(e, "slice")) ? " " : "",
           json_is_string(json_object_get(e, "slice")) ? s(e, "slice") : "", (long long)json_integer_value(json_object_get(e, "examples")));
    print_metrics(json_object_get(e, "metrics"));
    printf("\n");
  }
  json_array_foreach(json_object_get(v, "alias_history"), i, e) {
    printf("  alias       %s %s -> %lld by %s at %s: %s\n", s(e, "alias"),
           json_is_integer(json_object_get(e, "from")) ? "moved" : "set", (long long)json_integer_value(json_object_get(e, "to")),
           s(e, "who"), s(e, "at"), s(e, "why"));
  }
  json_array_foreach(json_object_get(v, "rollouts"), i, e) {
    printf("  rollout     %lld: %s of version %lld against %lld, %s at %g%% (step %lld), started %s\n",
           (long long)json_integer_value(json_object_get(e, "id")), s(e, "mode"),
           (long long)json_integer_value(json_object_get(e, "challenger")), (long long)json_integer_value(json_object_get(e, "incumbent")),
           s(e, "state"), json_number_value(json_object_get(e, "weight")), (long long)json_integer_value(json_object_get(e, "step")),
           s(e, "created_at"));
    size_t k, n_snap = 0;
    json_t *d;
    json_array_foreach(json_object_get(e, "decisions"), k, d) {
      if (!strcmp(s(d, "action"), "snapshot")) {
        n_snap++;
        continue;
      }
      printf("    %s %-8s step %lld %3lld%%  %s\n", s(d, "at"), s(d, "action"), (long long)json_integer_value(json_object_get(d, "step")),
             (long long)json_integer_value(json_object_get(d, "weight")), s(d, "reason"));
    }
    if (n_snap) printf("    (%zu snapshots of the evidence: slipway rollout status, or --json)\n", n_snap);
  }
  json_array_foreach(json_object_get(v, "events"), i, e) {
    if (!strcmp(s(e, "entity"), "rollout") && !strcmp(s(e, "action"), "snapshot")) continue;
    printf("  event %-5lld %s %s %s by %s\n", (long long)json_integer_value(json_object_get(e, "id")), s(e, "at"), s(e, "entity"),
           s(e, "action"), s(e, "who"));
  }
  json_decref(v);
  return SW_EXIT_OK;
}

static int cmd_lineage(sw_registry *reg, const args *a) {
  json_t *v = NULL;
  sw_status st;
  if (a->dataset) {
    if (a->n_pos) return sw_cli_usage_error("registry lineage", "give NAME:VERSION or --dataset SHA256, not both");
    st = sw_registry_lineage_dataset(reg, a->dataset, &v);
  } else {
    if (a->n_pos != 1) return sw_cli_usage_error("registry lineage", "give one NAME:VERSION (or --dataset SHA256)");
    st = sw_registry_lineage(reg, a->pos[0], &v);
  }
  if (st) return fail("lineage", st);
  if (a->json) print_json(v);
  else if (a->dataset) {
    const json_t *ds = json_object_get(v, "dataset");
    printf("dataset %s (%s)\n", s(ds, "manifest_sha256"), s(ds, "path"));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(v, "versions"), i, e) printf("  %-32s %-12s run %s\n", s(e, "ref"), s(e, "state"), s(e, "run_path"));
    if (!json_array_size(json_object_get(v, "versions"))) printf("  no version was trained on it\n");
  } else {
    printf("%s  artifact sha256 %s\n", s(v, "ref"), s(v, "artifact_sha256"));
    const json_t *ds = json_object_get(v, "dataset");
    if (json_is_object(ds)) printf("  dataset     %s (manifest sha256 %s)\n", s(ds, "path"), s(ds, "manifest_sha256"));
    else printf("  dataset     unknown\n");
    print_lineage_run(json_object_get(v, "run"));
    if (!json_is_object(json_object_get(v, "run"))) {
      printf("  code        %s\n", s(v, "code_version"));
      printf("  source      %s\n", s(v, "source"));
    }
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(v, "executions"), i, e) {
      printf("  execution   %-5lld %s/%-8s %-8s %s  key %.12s%s%s\n", (long long)json_integer_value(json_object_get(e, "id")),
             s(e, "pipeline"), s(e, "stage"), s(e, "state"), s(e, "started_at"), s(e, "cache_key"),
             json_is_string(json_object_get(e, "error")) ? "  " : "", json_is_string(json_object_get(e, "error")) ? s(e, "error") : "");
    }
  }
  json_decref(v);
  return SW_EXIT_OK;
}

static int cmd_alias(sw_registry *reg, const args *a) {
  if (a->n_pos != 2) return sw_cli_usage_error("registry alias", "give NAME:VERSION and ALIAS");
  if (!a->why) return sw_cli_usage_error("registry alias", "--why is required: the reason is recorded in the alias history");
  sw_model_ref ref;
  sw_status st = sw_model_ref_parse(a->pos[0], strlen(a->pos[0]), &ref);
  if (st || !ref.version) return sw_cli_usage_error("registry alias", "'%s' is not NAME:VERSION", a->pos[0]);
  int64_t before = 0;
  st = sw_registry_alias_get(reg, ref.name, a->pos[1], &before);
  if (st == SW_STATUS_NOT_FOUND) sw_clear_error();
  else if (st) return fail("alias", st);
  st = sw_registry_alias_set(reg, ref.name, a->pos[1], ref.version, a->who, a->why);
  if (st) return fail("alias", st);
  if (a->json) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:o}", "name", ref.name, "alias", a->pos[1], "version", (json_int_t)ref.version, "previous",
                          before ? json_integer(before) : json_null());
    print_json(o);
    json_decref(o);
  } else if (before == ref.version) {
    printf("%s@%s already points to version %lld\n", ref.name, a->pos[1], (long long)ref.version);
  } else if (before) {
    printf("%s@%s -> %lld (was %lld)\n", ref.name, a->pos[1], (long long)ref.version, (long long)before);
  } else {
    printf("%s@%s -> %lld\n", ref.name, a->pos[1], (long long)ref.version);
  }
  return SW_EXIT_OK;
}

static int cmd_promote(const args *a) {
  if (a->n_pos != 1) return sw_cli_usage_error("registry promote", "give one NAME:VERSION");
  if (!a->policy) return sw_cli_usage_error("registry promote", "--policy FILE is required");
  if (a->alias && !sw_model_name_valid(a->alias)) return sw_cli_usage_error("registry promote", "--alias: '%s' is not an alias name", a->alias);
  sw_promote_options o = {.registry = a->registry, .home = a->home, .ref = a->pos[0], .alias = a->alias, .policy_path = a->policy,
                          .data_dir = a->data, .who = a->who, .why = a->why, .threads = a->threads};
  json_t *res = NULL;
  sw_status st = sw_promote(&o, &res);
  if (!res) return fail("promote", st);
  if (a->json) print_json(res);
  else {
    const json_t *d = json_object_get(res, "decision");
    const char *name = s(res, "ref");
    if (json_is_string(json_object_get(res, "note"))) printf("%s: %s\n", name, s(res, "note"));
    else if (!st)
      printf("promoted %s to @%s (baseline %s), state %s\n", name, s(res, "alias"), s(res, "baseline"), s(res, "state"));
    else
      printf("refused %s for @%s (baseline %s):\n", name, s(res, "alias"), s(res, "baseline"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(d, "checks"), i, c) {
      const char *mark = json_is_true(json_object_get(c, "skipped")) ? "skip" : json_is_true(json_object_get(c, "passed")) ? "ok" : "FAIL";
      printf("  %-4s %s %s%s%s", mark, s(c, "kind"), s(c, "metric"),
             json_is_string(json_object_get(c, "slice")) ? " on " : "", json_is_string(json_object_get(c, "slice")) ? s(c, "slice") : "");
      if (json_is_string(json_object_get(c, "reason"))) printf(": %s", s(c, "reason"));
      printf("\n");
    }
    json_array_foreach(json_object_get(d, "failed"), i, c) printf("  failed: %s\n", json_string_value(c));
  }
  if (st) fprintf(stderr, "slipway registry promote: %s\n", sw_last_error());
  json_decref(res);
  return sw_cli_exit_code(st);
}

static int cmd_verify(sw_registry *reg, const args *a) {
  if (a->n_pos) return sw_cli_usage_error("registry verify", "unexpected argument '%s'", a->pos[0]);
  json_t *rep = NULL;
  sw_status st = sw_registry_verify(reg, &rep);
  if (st) return fail("verify", st);
  size_t bad = json_array_size(json_object_get(rep, "problems"));
  if (a->json) print_json(rep);
  else {
    printf("checked %lld artifacts: %lld ok, %zu with problems\n", (long long)json_integer_value(json_object_get(rep, "checked")),
           (long long)json_integer_value(json_object_get(rep, "ok")), bad);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rep, "problems"), i, p) {
      printf("  %s %s (%s)", s(p, "problem"), s(p, "path"), s(p, "sha256"));
      if (json_is_string(json_object_get(p, "actual_sha256"))) printf(", hashes to %s", s(p, "actual_sha256"));
      printf(", used by");
      size_t k;
      json_t *r;
      json_array_foreach(json_object_get(p, "versions"), k, r) printf(" %s", json_string_value(r));
      printf("\n");
    }
  }
  if (bad) fprintf(stderr, "slipway registry verify: %zu artifact(s) missing or corrupt\n", bad);
  json_decref(rep);
  return bad ? SW_EXIT_FAILURE : SW_EXIT_OK;
}

static int cmd_events(sw_registry *reg, const args *a) {
  if (a->n_pos) return sw_cli_usage_error("registry events", "unexpected argument '%s'", a->pos[0]);
  json_t *ev = NULL;
  sw_status st = sw_registry_events(reg, a->after, 0, &ev);
  if (st) return fail("events", st);
  if (a->json) print_json(ev);
  else {
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
      char *d = json_dumps(json_object_get(e, "detail"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
      printf("%-5lld %s %-10s %-9s %s:%lld by %s %s\n", (long long)json_integer_value(json_object_get(e, "id")), s(e, "at"),
             s(e, "entity"), s(e, "action"), s(e, "model"), (long long)json_integer_value(json_object_get(e, "version")), s(e, "who"),
             d ? d : "");
      free(d);
    }
  }
  json_decref(ev);
  return SW_EXIT_OK;
}

int sw_cmd_registry(int argc, char **argv) {
  enum {
    OPT_REGISTRY = 256, OPT_HOME, OPT_WHO, OPT_WHY, OPT_RUN, OPT_ONNX, OPT_NAME, OPT_DATASET, OPT_SOURCE, OPT_CODE,
    OPT_DESC, OPT_POLICY, OPT_ALIAS, OPT_DATA, OPT_AFTER, OPT_THREADS, OPT_JSON, OPT_HELP
  };
  static const struct option longopts[] = {
      {"registry", required_argument, 0, OPT_REGISTRY}, {"home", required_argument, 0, OPT_HOME},
      {"who", required_argument, 0, OPT_WHO},           {"why", required_argument, 0, OPT_WHY},
      {"run", required_argument, 0, OPT_RUN},           {"onnx", required_argument, 0, OPT_ONNX},
      {"name", required_argument, 0, OPT_NAME},         {"dataset", required_argument, 0, OPT_DATASET},
      {"source", required_argument, 0, OPT_SOURCE},     {"code-version", required_argument, 0, OPT_CODE},
      {"description", required_argument, 0, OPT_DESC},  {"policy", required_argument, 0, OPT_POLICY},
      {"alias", required_argument, 0, OPT_ALIAS},       {"data", required_argument, 0, OPT_DATA},
      {"after", required_argument, 0, OPT_AFTER},       {"threads", required_argument, 0, OPT_THREADS},
      {"json", no_argument, 0, OPT_JSON},               {"help", no_argument, 0, OPT_HELP},
      {0, 0, 0, 0}};
  /* which flags each command takes, beyond --registry, --home, --json and --help */
  static const struct {
    const char *name;
    int flags[12];
  } allowed[] = {
      {"register", {OPT_WHO, OPT_RUN, OPT_ONNX, OPT_NAME, OPT_DATASET, OPT_SOURCE, OPT_CODE, OPT_DESC}},
      {"list", {0}},
      {"show", {0}},
      {"lineage", {OPT_DATASET}},
      {"promote", {OPT_WHO, OPT_WHY, OPT_POLICY, OPT_ALIAS, OPT_DATA, OPT_THREADS}},
      {"alias", {OPT_WHO, OPT_WHY}},
      {"verify", {0}},
      {"events", {OPT_AFTER}},
  };
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    if (argc < 2) {
      help();
      return SW_EXIT_USAGE;
    }
    help();
    return SW_EXIT_OK;
  }
  args a = {.sub = argv[1]};
  int which = -1;
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
    if (!strcmp(a.sub, allowed[i].name)) which = (int)i;
  if (which < 0) return sw_cli_usage_error("registry", "unknown command '%s'", a.sub);
  char cmdname[64];
  snprintf(cmdname, sizeof cmdname, "registry %s", a.sub);
  argc--;
  argv++;
  long long n;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c >= OPT_WHO && c <= OPT_THREADS) {
      bool ok = false;
      for (int k = 0; k < 12 && allowed[which].flags[k]; k++) ok |= allowed[which].flags[k] == c;
      if (!ok) return sw_cli_usage_error(cmdname, "flag '%s' does not apply to %s", argv[optind - 1], a.sub);
    }
    switch (c) {
      case OPT_REGISTRY: a.registry = optarg; break;
      case OPT_HOME: a.home = optarg; break;
      case OPT_WHO: a.who = optarg; break;
      case OPT_WHY: a.why = optarg; break;
      case OPT_RUN: a.run = optarg; break;
      case OPT_ONNX: a.onnx = optarg; break;
      case OPT_NAME: a.name = optarg; break;
      case OPT_DATASET: a.dataset = optarg; break;
      case OPT_SOURCE: a.source = optarg; break;
      case OPT_CODE: a.code_version = optarg; break;
      case OPT_DESC: a.description = optarg; break;
      case OPT_POLICY: a.policy = optarg; break;
      case OPT_ALIAS: a.alias = optarg; break;
      case OPT_DATA: a.data = optarg; break;
      case OPT_AFTER:
        if (!sw_cli_parse_int(optarg, 0, INT64_MAX, &n)) return sw_cli_usage_error(cmdname, "--after: '%s' is not an event id", optarg);
        a.after = n;
        break;
      case OPT_THREADS:
        if (!sw_cli_parse_int(optarg, 1, 1024, &n)) return sw_cli_usage_error(cmdname, "--threads: '%s' is not a count from 1 to 1024", optarg);
        a.threads = (int)n;
        break;
      case OPT_JSON: a.json = true; break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default: return sw_cli_usage_error(cmdname, "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  for (int i = optind; i < argc; i++) {
    if (a.n_pos == 3) return sw_cli_usage_error(cmdname, "unexpected argument '%s'", argv[i]);
    a.pos[a.n_pos++] = argv[i];
  }
  if (!strcmp(a.sub, "promote")) return cmd_promote(&a);
  sw_registry *reg = NULL;
  sw_status st = sw_registry_open(a.registry, a.home, &reg);
  if (st) return fail(a.sub, st);
  int rc;
  if (!strcmp(a.sub, "register")) rc = cmd_register(reg, &a);
  else if (!strcmp(a.sub, "list")) rc = cmd_list(reg, &a);
  else if (!strcmp(a.sub, "show")) rc = cmd_show(reg, &a);
  else if (!strcmp(a.sub, "lineage")) rc = cmd_lineage(reg, &a);
  else if (!strcmp(a.sub, "alias")) rc = cmd_alias(reg, &a);
  else if (!strcmp(a.sub, "verify")) rc = cmd_verify(reg, &a);
  else rc = cmd_events(reg, &a);
  sw_registry_close(reg);
  return rc;
}
