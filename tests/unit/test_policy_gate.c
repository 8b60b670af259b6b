/* Unit tests of policy files (src/eval/policy.c) and promotion gates (src/eval/gate.c):
 * the DESIGN.md example read field by field, defaults, every kind of bad input naming its
 * key, YAML and JSON giving the same policy, and the gate's decisions on hand-written
 * evaluations (pass, each failing kind, relative and lower-is-better change thresholds,
 * slices, no baseline, nothing to judge by), with allocation failures injected. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/eval.h"

static const char design_example[] =
    "metric: accuracy                 # the primary quality metric\n"
    "gate:                            # slipway registry promote\n"
    "  split: test\n"
    "  min: {accuracy: 0.88}          # value thresholds\n"
    "  max: {log_loss: 0.40}\n"
    "  max_drop: {accuracy: 0.005}    # change threshold against the alias's current version\n"
    "  slices: {}                     # per-slice value thresholds, same form\n"
    "rollout:                         # slipway rollout start\n"
    "  steps: [1, 5, 25, 50, 100]\n"
    "  min_requests_per_step: 500\n"
    "  max_step_seconds: 600\n"
    "  alpha: 0.01                    # total false-rollback budget, split across the metrics\n"
    "  slo: {p99_ms: 50, error_rate: 0.01}\n"
    "monitor:                         # slipway monitor / serve --eval-every\n"
    "  every: 10m\n"
    "  max_drop: {accuracy: 0.02}\n"
    "  drift: {psi: 0.1, js: 0.1, window: 2000, share: 0.5}\n";

/* A policy exercising what the example does not: slices, relative drops, other units. */
static const char rich_policy[] =
    "metric: log_loss\n"
    "gate:\n"
    "  split: val\n"
    "  min: {accuracy: 0.5, auc: 0.7}\n"
    "  max: {log_loss: 1, rmse: 2.5}\n"
    "  max_drop: {accuracy: \"1%\", log_loss: 0.05, auc: \"0.5%\"}\n"
    "  slices:\n"
    "    label=T-shirt/top: {min: {accuracy: 0.6}, max: {log_loss: 0.9}}\n"
    "    color=dark.blue: {min: {accuracy: 0.4}}\n"
    "rollout:\n"
    "  steps: [10, 100]\n"
    "  max_step_seconds: 2m\n"
    "  slo: {p99_ms: 12.5}\n"
    "  compare_latency: false\n"
    "monitor:\n"
    "  every: 90\n"
    "  max_drop: {mae: \"2%\"}\n"
    "  drift: {window: 100}\n";

static char *write_temp(const char *text) {
  char tmpl[] = "/tmp/sw_test_policy.XXXXXX";
  int fd = mkstemp(tmpl);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
  char *path = sw_strdup(tmpl);
  assert_non_null(path);
  return path;
}

/* Parses YAML text through the same path a file takes, minus the file. */
static sw_status parse_text(const char *text, sw_policy **out, char **err) {
  json_t *tree = NULL;
  sw_status st = sw_yaml_parse(text, strlen(text), "policy.yaml", &tree);
  if (st) {
    *out = NULL;
    *err = sw_strdup(sw_last_error());
    return st;
  }
  st = sw_policy_from_json(tree, out, err);
  json_decref(tree);
  return st;
}

static sw_policy *parse_ok(const char *text) {
  sw_policy *p = NULL;
  char *err = NULL;
  sw_status st = parse_text(text, &p, &err);
  if (st) fail_msg("policy did not parse: %s\n%s", err ? err : sw_status_name(st), text);
  assert_null(err);
  assert_non_null(p);
  return p;
}

static void assert_threshold(const sw_threshold *t, const char *metric, double value, bool relative) {
  assert_string_equal(t->metric, metric);
  assert_true(fabs(t->value - value) < 1e-15);
  assert_int_equal(t->relative, relative);
}

/* ---- parsing ------------------------------------------------------------------------ */

static void test_design_example(void **state) {
  (void)state;
  char *path = write_temp(design_example);
  sw_policy *p = NULL;
  char *err = NULL;
  assert_int_equal(sw_policy_load(path, &p, &err), SW_STATUS_OK);
  assert_null(err);
  assert_string_equal(p->metric, "accuracy");

  assert_true(p->gate.present);
  assert_string_equal(p->gate.split, "test");
  assert_int_equal(p->gate.n_min, 1);
  assert_threshold(&p->gate.min[0], "accuracy", 0.88, false);
  assert_int_equal(p->gate.n_max, 1);
  assert_threshold(&p->gate.max[0], "log_loss", 0.40, false);
  assert_int_equal(p->gate.n_max_drop, 1);
  assert_threshold(&p->gate.max_drop[0], "accuracy", 0.005, false);
  assert_int_equal(p->gate.n_slices, 0);

  assert_true(p->rollout.present);
  assert_int_equal(p->rollout.n_steps, 5);
  const int steps[] = {1, 5, 25, 50, 100};
  for (int i = 0; i < 5; i++) assert_int_equal(p->rollout.steps[i], steps[i]);
  assert_int_equal(p->rollout.min_requests_per_step, 500);
  assert_true(p->rollout.max_step_seconds == 600);
  assert_true(p->rollout.alpha == 0.01);
  assert_true(p->rollout.slo_p99_ms == 50);
  assert_true(p->rollout.slo_error_rate == 0.01);

  assert_true(p->monitor.present);
  assert_true(p->monitor.every_seconds == 600);
  assert_int_equal(p->monitor.n_max_drop, 1);
  assert_threshold(&p->monitor.max_drop[0], "accuracy", 0.02, false);
  assert_true(p->monitor.drift_psi == 0.1);
  assert_true(p->monitor.drift_js == 0.1);
  assert_int_equal(p->monitor.drift_window, 2000);
  assert_true(p->monitor.drift_share == 0.5);
  sw_policy_free(p);
  unlink(path);
  sw_free(path);
}

static void test_rich_policy(void **state) {
  (void)state;
  sw_policy *p = parse_ok(rich_policy);
  assert_string_equal(p->metric, "log_loss");
  assert_string_equal(p->gate.split, "val");
  assert_int_equal(p->gate.n_min, 2);
  assert_threshold(&p->gate.min[1], "auc", 0.7, false);
  assert_int_equal(p->gate.n_max, 2);
  assert_threshold(&p->gate.max[0], "log_loss", 1, false);
  assert_int_equal(p->gate.n_max_drop, 3);
  assert_threshold(&p->gate.max_drop[0], "accuracy", 0.01, true);
  assert_threshold(&p->gate.max_drop[1], "log_loss", 0.05, false);
  assert_threshold(&p->gate.max_drop[2], "auc", 0.005, true);
  assert_int_equal(p->gate.n_slices, 2);
  assert_string_equal(p->gate.slices[0].slice, "label=T-shirt/top");
  assert_int_equal(p->gate.slices[0].n_min, 1);
  assert_threshold(&p->gate.slices[0].min[0], "accuracy", 0.6, false);
  assert_int_equal(p->gate.slices[0].n_max, 1);
  assert_threshold(&p->gate.slices[0].max[0], "log_loss", 0.9, false);
  assert_string_equal(p->gate.slices[1].slice, "color=dark.blue");
  assert_int_equal(p->gate.slices[1].n_max, 0);
  assert_int_equal(p->rollout.n_steps, 2);
  assert_int_equal(p->rollout.steps[0], 10);
  assert_true(p->rollout.max_step_seconds == 120);
  assert_int_equal(p->rollout.min_requests_per_step, 500);
  assert_true(p->rollout.slo_p99_ms == 12.5);
  assert_true(p->rollout.slo_error_rate < 0);
  assert_false(p->rollout.compare_latency);
  assert_true(p->monitor.every_seconds == 90);
  assert_threshold(&p->monitor.max_drop[0], "mae", 0.02, true);
  assert_int_equal(p->monitor.drift_window, 100);
  assert_true(p->monitor.drift_psi == 0.1);
  sw_policy_free(p);
}

static void test_defaults(void **state) {
  (void)state;
  sw_policy *p = parse_ok("{}");
  assert_string_equal(p->metric, "accuracy");
  assert_false(p->gate.present);
  assert_false(p->rollout.present);
  assert_false(p->monitor.present);
  /* the defaults are there even for absent sections, so a caller may read them */
  assert_string_equal(p->gate.split, "test");
  assert_int_equal(p->gate.n_min + p->gate.n_max + p->gate.n_max_drop + p->gate.n_slices, 0);
  assert_int_equal(p->rollout.n_steps, 5);
  assert_int_equal(p->rollout.steps[4], 100);
  assert_int_equal(p->rollout.min_requests_per_step, 500);
  assert_true(p->rollout.max_step_seconds == 600);
  assert_true(p->rollout.alpha == 0.01);
  assert_true(p->rollout.slo_p99_ms < 0 && p->rollout.slo_error_rate < 0);
  assert_true(p->rollout.compare_latency);
  assert_true(p->monitor.every_seconds == 600);
  assert_int_equal(p->monitor.n_max_drop, 0);
  assert_true(p->monitor.drift_psi == 0.1 && p->monitor.drift_js == 0.1);
  assert_int_equal(p->monitor.drift_window, 2000);
  assert_true(p->monitor.drift_share == 0.5);
  json_t *j = sw_policy_to_json(p);
  assert_non_null(j);
  char *s = json_dumps(j, JSON_COMPACT);
  assert_string_equal(s, "{\"metric\":\"accuracy\"}");
  free(s);
  json_decref(j);
  sw_policy_free(p);

  /* an empty section is present, with its defaults filled in */
  p = parse_ok("rollout:\nmonitor: {}\ngate:\n");
  assert_true(p->gate.present && p->rollout.present && p->monitor.present);
  j = sw_policy_to_json(p);
  json_t *want = json_loads("{\"metric\": \"accuracy\","
                            " \"gate\": {\"split\": \"test\", \"min\": {}, \"max\": {}, \"max_drop\": {}, \"slices\": {}},"
                            " \"rollout\": {\"steps\": [1, 5, 25, 50, 100], \"slo\": {}, \"min_requests_per_step\": 500,"
                            "   \"max_step_seconds\": 600.0, \"alpha\": 0.01, \"compare_latency\": true},"
                            " \"monitor\": {\"every\": 600.0, \"max_drop\": {},"
                            "   \"drift\": {\"psi\": 0.1, \"js\": 0.1, \"window\": 2000, \"share\": 0.5}}}",
                            0, NULL);
  assert_non_null(want);
  if (!json_equal(j, want)) {
    char *got = json_dumps(j, JSON_COMPACT);
    fail_msg("to_json gave %s", got);
  }
  json_decref(want);
  json_decref(j);
  sw_policy_free(p);
}

static void test_durations_and_drops(void **state) {
  (void)state;
  static const struct {
    const char *every;
    double seconds;
  } durations[] = {{"30s", 30}, {"10m", 600}, {"1h", 3600}, {"90", 90}, {"\"90\"", 90}, {"1.5h", 5400}, {"0.5", 0.5}};
  for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
    char text[128];
    snprintf(text, sizeof text, "monitor: {every: %s}\nrollout: {max_step_seconds: %s}", durations[i].every,
             durations[i].every);
    sw_policy *p = parse_ok(text);
    assert_true(p->monitor.every_seconds == durations[i].seconds);
    assert_true(p->rollout.max_step_seconds == durations[i].seconds);
    sw_policy_free(p);
  }
  static const struct {
    const char *drop;
    double value;
    bool relative;
  } drops[] = {{"0.005", 0.005, false}, {"0", 0, false}, {"\"1%\"", 0.01, true}, {"\"0.5%\"", 0.005, true},
               {"1%", 0.01, true},      {"\"0%\"", 0, true}, {"3", 3, false}};
  for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
    char text[128];
    snprintf(text, sizeof text, "gate: {max_drop: {log_loss: %s}}", drops[i].drop);
    sw_policy *p = parse_ok(text);
    assert_threshold(&p->gate.max_drop[0], "log_loss", drops[i].value, drops[i].relative);
    sw_policy_free(p);
  }
}

/* Each bad policy is refused with INVALID (FORMAT for YAML syntax), *out NULL, and a
 * message that starts with the key path. */
static void test_bad_input(void **state) {
  (void)state;
  static const struct {
    const char *yaml, *message;
  } cases[] = {
      {"gate: {min: {acurracy: 0.9}}", "gate.min.acurracy: unknown metric"},
      {"metric: acuracy", "metric: unknown metric \"acuracy\""},
      {"metric: 3", "metric: expected a metric name, got an integer"},
      {"gaet: {}", "gaet: unknown key"},
      {"gate: {minimum: {accuracy: 0.9}}", "gate.minimum: unknown key"},
      {"gate: {min: {accuracy: -0.1}}", "gate.min.accuracy: -0.1 is negative"},
      {"gate: {max: {log_loss: -1}}", "gate.max.log_loss: -1 is negative"},
      {"gate: {min: {accuracy: 1.5}}", "gate.min.accuracy: 1.5 is outside [0, 1]"},
      {"gate: {min: {accuracy: high}}", "gate.min.accuracy: expected a number, got a string"},
      {"gate: {min: {accuracy: true}}", "gate.min.accuracy: expected a number, got a boolean"},
      {"gate: {min: [accuracy]}", "gate.min: expected a mapping of metric: threshold, got a list"},
      {"gate: {min: {accuracy: 0.9}, max: {accuracy: 0.8}}", "gate.max.accuracy: 0.8 is below min 0.9"},
      {"gate: {split: \"\"}", "gate.split: expected a split name"},
      {"gate: {split: [test]}", "gate.split: expected a split name (train, val, test), got a list"},
      {"gate: {max_drop: {accuracy: -0.01}}", "gate.max_drop.accuracy: -0.01 is negative"},
      {"gate: {max_drop: {accuracy: \"-1%\"}}", "gate.max_drop.accuracy: -1% is negative"},
      {"gate: {max_drop: {accuracy: \"1\"}}", "gate.max_drop.accuracy: expected a number (absolute) or a percentage"},
      {"gate: {max_drop: {accuracy: \"1 %\"}}", "gate.max_drop.accuracy: expected a number (absolute) or a percentage"},
      {"gate: {max_drop: {accuracy: \"x%\"}}", "gate.max_drop.accuracy: expected a number (absolute) or a percentage"},
      {"gate: {max_drop: {accuracy: \"0x1%\"}}", "gate.max_drop.accuracy: expected a number (absolute) or a percentage"},
      {"gate: {max_drop: {acc: 0.1}}", "gate.max_drop.acc: unknown metric"},
      {"gate: {slices: {red: {min: {accuracy: 0.5}}}}", "gate.slices.\"red\": a slice is named FEATURE=VALUE"},
      {"gate: {slices: {=red: {}}}", "gate.slices.\"=red\": a slice is named FEATURE=VALUE"},
      {"gate: {slices: {color=red: {min: {acurracy: 0.5}}}}", "gate.slices.\"color=red\".min.acurracy: unknown metric"},
      {"gate: {slices: {color=red: {max_drop: {accuracy: 0.5}}}}", "gate.slices.\"color=red\".max_drop: unknown key"},
      {"gate: {slices: {color=red: 0.5}}", "gate.slices.\"color=red\": expected a mapping of min and max, got a number"},
      {"gate: {slices: {c=r: {min: {auc: 0.9}, max: {auc: 0.1}}}}", "gate.slices.\"c=r\".max.auc: 0.1 is below min 0.9"},
      {"gate: [1]", "gate: expected a mapping"},
      {"rollout: {steps: [1, 5, 5, 100]}", "rollout.steps[2]: 5 does not increase on the step before (5)"},
      {"rollout: {steps: [50, 25, 100]}", "rollout.steps[1]: 25 does not increase"},
      {"rollout: {steps: [1, 5, 50]}", "rollout.steps: the last step is 50: a rollout ends at 100"},
      {"rollout: {steps: [0, 100]}", "rollout.steps[0]: 0 is outside 1..100"},
      {"rollout: {steps: [1, 101]}", "rollout.steps[1]: 101 is outside 1..100"},
      {"rollout: {steps: [1, 2.5, 100]}", "rollout.steps[1]: expected an integer, got a number"},
      {"rollout: {steps: []}", "rollout.steps: at least one step"},
      {"rollout: {steps: 100}", "rollout.steps: expected a list"},
      {"rollout: {min_requests_per_step: 0}", "rollout.min_requests_per_step: 0 is outside 1.."},
      {"rollout: {min_requests_per_step: -5}", "rollout.min_requests_per_step: -5 is outside"},
      {"rollout: {max_step_seconds: 10x}", "rollout.max_step_seconds: expected a duration like 30s"},
      {"rollout: {max_step_seconds: 0}", "rollout.max_step_seconds: a duration must be positive"},
      {"rollout: {max_step_seconds: -5s}", "rollout.max_step_seconds: a duration must be positive"},
      {"rollout: {alpha: 1}", "rollout.alpha: 1 is outside (0, 1)"},
      {"rollout: {alpha: 0}", "rollout.alpha: 0 is outside (0, 1)"},
      {"rollout: {slo: {p99: 50}}", "rollout.slo.p99: unknown key"},
      {"rollout: {slo: {p99_ms: 0}}", "rollout.slo.p99_ms: 0 must be above 0"},
      {"rollout: {slo: {error_rate: 1.5}}", "rollout.slo.error_rate: 1.5 is outside [0, 1]"},
      {"rollout: {slo: {error_rate: -0.1}}", "rollout.slo.error_rate: -0.1 is negative"},
      {"rollout: {stepz: [100]}", "rollout.stepz: unknown key"},
      {"rollout: {compare_latency: no}", "rollout.compare_latency: expected true or false, got a string"},
      {"rollout: {compare_latency: 0}", "rollout.compare_latency: expected true or false, got an integer"},
      {"monitor: {every: 10 minutes}", "monitor.every: expected a duration like 30s, 10m, 1h"},
      {"monitor: {every: m}", "monitor.every: expected a duration"},
      {"monitor: {every: [1]}", "monitor.every: expected a duration like 30s, 10m, 1h or a number of seconds, got a list"},
      {"monitor: {max_drop: {accuracy: \"2\"}}", "monitor.max_drop.accuracy: expected a number (absolute) or a percentage"},
      {"monitor: {drift: {psi: -0.1}}", "monitor.drift.psi: -0.1 is negative"},
      {"monitor: {drift: {window: 0}}", "monitor.drift.window: 0 is outside 1.."},
      {"monitor: {drift: {share: 0}}", "monitor.drift.share: 0 is outside (0, 1]"},
      {"monitor: {drift: {share: 1.5}}", "monitor.drift.share: 1.5 is outside (0, 1]"},
      {"monitor: {drift: {kl: 0.1}}", "monitor.drift.kl: unknown key"},
      {"monitor: {evry: 10m}", "monitor.evry: unknown key"},
      {"[1, 2]", "policy: expected a mapping of metric, gate, rollout and monitor, got a list"},
      {"", "policy: expected a mapping of metric, gate, rollout and monitor, got null (an empty file?)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sw_policy *p = (sw_policy *)&p;
    char *err = NULL;
    sw_status st = parse_text(cases[i].yaml, &p, &err);
    if (st != SW_STATUS_INVALID)
      fail_msg("'%s': %s (%s), want INVALID", cases[i].yaml, sw_status_name(st), err ? err : "");
    assert_null(p);
    assert_non_null(err);
    if (strncmp(err, cases[i].message, strlen(cases[i].message)))
      fail_msg("'%s': error\n  %s\nwant it to start with\n  %s", cases[i].yaml, err, cases[i].message);
    /* the thread's error says the same */
    assert_string_equal(sw_last_error(), err);
    sw_free(err);
  }
}

static void test_load_errors(void **state) {
  (void)state;
  /* a file: its name prefixes the key path */
  char *path = write_temp("gate:\n  min: {acurracy: 0.9}\n");
  sw_policy *p = NULL;
  char *err = NULL;
  assert_int_equal(sw_policy_load(path, &p, &err), SW_STATUS_INVALID);
  assert_null(p);
  char *want = sw_asprintf("%s: gate.min.acurracy: unknown metric (known: accuracy, auc, log_loss, rmse, mae)", path);
  assert_string_equal(err, want);
  sw_free(want);
  sw_free(err);
  unlink(path);
  sw_free(path);

  /* YAML syntax: the loader's message, with line and column */
  path = write_temp("gate: {min: [\n");
  assert_int_equal(sw_policy_load(path, &p, &err), SW_STATUS_FORMAT);
  assert_null(p);
  assert_non_null(err);
  assert_non_null(strstr(err, path));
  sw_free(err);
  unlink(path);

  /* a missing file; and err may be NULL */
  assert_int_not_equal(sw_policy_load(path, &p, &err), SW_STATUS_OK);
  assert_null(p);
  assert_non_null(err);
  assert_non_null(strstr(err, path));
  sw_free(err);
  assert_int_not_equal(sw_policy_load(path, &p, NULL), SW_STATUS_OK);
  sw_free(path);

  /* duplicate keys are the YAML loader's error */
  assert_int_equal(parse_text("gate: {}\ngate: {}\n", &p, &err), SW_STATUS_FORMAT);
  assert_non_null(strstr(err, "duplicate key 'gate'"));
  sw_free(err);
}

static void test_metric_direction(void **state) {
  (void)state;
  bool known = false;
  assert_true(sw_metric_higher_is_better("accuracy", &known) && known);
  assert_true(sw_metric_higher_is_better("auc", &known) && known);
  assert_false(sw_metric_higher_is_better("log_loss", &known));
  assert_true(known);
  assert_false(sw_metric_higher_is_better("rmse", &known));
  assert_true(known);
  assert_false(sw_metric_higher_is_better("mae", NULL));
  assert_false(sw_metric_higher_is_better("f1", &known));
  assert_false(known);
  assert_false(sw_metric_higher_is_better(NULL, &known));
  assert_false(known);
}

/* sw_policy_load on a file, sw_policy_from_json on the same content as JSON text, and a
 * trip through sw_policy_to_json all give the same policy. */
static void test_json_equals_yaml(void **state) {
  (void)state;
  const char *texts[] = {design_example, rich_policy, "{}", "gate: {max_drop: {auc: \"0.1%\"}}"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    char *path = write_temp(texts[i]);
    sw_policy *from_file = NULL, *from_json = NULL, *again = NULL;
    char *err = NULL;
    assert_int_equal(sw_policy_load(path, &from_file, &err), SW_STATUS_OK);
    json_t *a = sw_policy_to_json(from_file);
    assert_non_null(a);

    /* the same content written as JSON (as the admin API would post it) */
    json_t *tree = NULL;
    assert_int_equal(sw_yaml_parse(texts[i], strlen(texts[i]), "t", &tree), SW_STATUS_OK);
    char *json_text = json_dumps(tree, 0);
    json_decref(tree);
    tree = json_loads(json_text, 0, NULL);
    free(json_text);
    assert_non_null(tree);
    assert_int_equal(sw_policy_from_json(tree, &from_json, &err), SW_STATUS_OK);
    json_decref(tree);
    json_t *b = sw_policy_to_json(from_json);
    assert_true(json_equal(a, b));

    /* and back from its own JSON */
    assert_int_equal(sw_policy_from_json(a, &again, &err), SW_STATUS_OK);
    json_t *c = sw_policy_to_json(again);
    assert_true(json_equal(a, c));
    assert_int_equal(again->gate.n_max_drop, from_file->gate.n_max_drop);
    for (size_t k = 0; k < again->gate.n_max_drop; k++)
      assert_true(again->gate.max_drop[k].value == from_file->gate.max_drop[k].value);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    sw_policy_free(from_file);
    sw_policy_free(from_json);
    sw_policy_free(again);
    unlink(path);
    sw_free(path);
  }
  sw_policy_free(NULL);
  assert_null(sw_policy_to_json(NULL));
  sw_policy *p = (sw_policy *)&p;
  char *err = NULL;
  assert_int_equal(sw_policy_from_json(NULL, &p, &err), SW_STATUS_INVALID);
  assert_null(p);
  assert_string_equal(err, "policy: expected a mapping of metric, gate, rollout and monitor, got nothing");
  sw_free(err);
}

/* ---- judging --------------------------------------------------------------------------- */

static const char candidate_json[] =
    "{\"model\": \"runs/b\", \"dataset\": \"aaaa1111\", \"split\": \"test\", \"examples\": 10000,"
    " \"metrics\": {\"accuracy\": 0.8960, \"log_loss\": 0.31},"
    " \"slices\": {\"label=Shirt\": {\"examples\": 1000, \"metrics\": {\"accuracy\": 0.62, \"log_loss\": 0.9}},"
    "              \"label=Bag\": {\"examples\": 1000, \"metrics\": {\"accuracy\": 0.97, \"log_loss\": 0.1}}}}";
static const char baseline_json[] =
    "{\"model\": \"runs/a\", \"dataset\": \"aaaa1111\", \"split\": \"test\", \"examples\": 10000,"
    " \"metrics\": {\"accuracy\": 0.9010, \"log_loss\": 0.29}}";

static json_t *load_json(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j) fail_msg("bad test JSON: %s", e.text);
  return j;
}

/* Judges cand (and base, NULL for none) by the gate of policy_yaml. */
static json_t *judge(const char *policy_yaml, const char *cand, const char *base) {
  sw_policy *p = parse_ok(policy_yaml);
  json_t *c = load_json(cand), *b = base ? load_json(base) : NULL;
  json_t *d = NULL;
  sw_status st = sw_gate_judge(&p->gate, c, b, &d);
  if (st) fail_msg("judge: %s: %s", sw_status_name(st), sw_last_error());
  assert_non_null(d);
  json_decref(c);
  json_decref(b);
  sw_policy_free(p);
  return d;
}

static bool passed(const json_t *d) { return json_is_true(json_object_get(d, "passed")); }

static const json_t *check_at(const json_t *d, size_t i) {
  const json_t *c = json_array_get(json_object_get(d, "checks"), i);
  assert_non_null(c);
  return c;
}

static const char *reason_at(const json_t *d, size_t i) {
  return json_string_value(json_object_get(check_at(d, i), "reason"));
}

static size_t n_failed(const json_t *d) { return json_array_size(json_object_get(d, "failed")); }

static void test_judge_design_example_shape(void **state) {
  (void)state;
  /* accuracy 0.896 >= 0.88, log_loss 0.31 <= 0.40, dropped 0.005 from 0.901: exactly
   * the allowance, which passes (the subtraction's rounding does not decide) */
  json_t *d = judge(design_example, candidate_json, baseline_json);
  assert_true(passed(d));
  assert_string_equal(json_string_value(json_object_get(d, "split")), "test");
  assert_int_equal(json_object_size(d), 4);
  assert_int_equal(n_failed(d), 0);
  assert_int_equal(json_array_size(json_object_get(d, "checks")), 3);

  const json_t *c = check_at(d, 0);
  assert_string_equal(json_string_value(json_object_get(c, "metric")), "accuracy");
  assert_string_equal(json_string_value(json_object_get(c, "kind")), "min");
  assert_true(json_real_value(json_object_get(c, "threshold")) == 0.88);
  assert_true(json_real_value(json_object_get(c, "value")) == 0.896);
  assert_true(json_is_true(json_object_get(c, "passed")));
  assert_null(json_object_get(c, "slice"));
  assert_null(json_object_get(c, "baseline"));
  assert_null(json_object_get(c, "relative"));
  assert_string_equal(reason_at(d, 0), "accuracy 0.8960 >= min 0.88");
  assert_string_equal(reason_at(d, 1), "log_loss 0.3100 <= max 0.4");

  c = check_at(d, 2);
  assert_string_equal(json_string_value(json_object_get(c, "kind")), "max_drop");
  assert_true(json_is_false(json_object_get(c, "relative")));
  assert_true(json_real_value(json_object_get(c, "baseline")) == 0.901);
  assert_true(json_real_value(json_object_get(c, "value")) == 0.896);
  assert_true(json_real_value(json_object_get(c, "allowed")) == 0.005);
  assert_true(json_is_true(json_object_get(c, "passed")));
  assert_null(json_object_get(c, "skipped"));
  assert_string_equal(reason_at(d, 2), "accuracy dropped 0.0050 from baseline 0.9010, within max_drop 0.005");
  json_decref(d);
}

static void test_judge_failures(void **state) {
  (void)state;
  /* min */
  json_t *d = judge("gate: {min: {accuracy: 0.9}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "accuracy 0.8960 < min 0.9");
  assert_int_equal(n_failed(d), 1);
  assert_string_equal(json_string_value(json_array_get(json_object_get(d, "failed"), 0)), "accuracy 0.8960 < min 0.9");
  json_decref(d);
  /* just under: more digits rather than "0.8800 < min 0.88" */
  d = judge("gate: {min: {accuracy: 0.88}}", "{\"metrics\": {\"accuracy\": 0.87996}}", NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "accuracy 0.87996 < min 0.88");
  json_decref(d);
  /* max */
  d = judge("gate: {max: {log_loss: 0.3}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "log_loss 0.3100 > max 0.3");
  json_decref(d);
  /* a value on the threshold passes both ways */
  d = judge("gate: {min: {accuracy: 0.896}, max: {log_loss: 0.31}}", candidate_json, NULL);
  assert_true(passed(d));
  json_decref(d);
  /* absolute max_drop: 0.005 is over 0.004; the message from the brief */
  d = judge("gate: {max_drop: {accuracy: 0.004}}", candidate_json, baseline_json);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "accuracy dropped 0.0050 from baseline 0.9010 (max_drop 0.004)");
  json_decref(d);
  /* several failures: each listed, in the order of the checks */
  d = judge("gate: {min: {accuracy: 0.95}, max: {log_loss: 0.2}, max_drop: {accuracy: 0.001}}", candidate_json,
            baseline_json);
  assert_false(passed(d));
  assert_int_equal(n_failed(d), 3);
  json_decref(d);
  /* one passing check does not outweigh a failing one */
  d = judge("gate: {min: {accuracy: 0.5}, max: {log_loss: 0.2}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_int_equal(n_failed(d), 1);
  json_decref(d);
}

static void test_judge_relative_and_direction(void **state) {
  (void)state;
  /* 1% of 0.901 = 0.00901 allowed: a drop of 0.005 passes; 0.5% = 0.004505 does not */
  json_t *d = judge("gate: {max_drop: {accuracy: \"1%\"}}", candidate_json, baseline_json);
  assert_true(passed(d));
  const json_t *c = check_at(d, 0);
  assert_true(json_is_true(json_object_get(c, "relative")));
  assert_true(json_real_value(json_object_get(c, "threshold")) == 0.01);
  assert_true(fabs(json_real_value(json_object_get(c, "allowed")) - 0.00901) < 1e-15);
  json_decref(d);
  d = judge("gate: {max_drop: {accuracy: \"0.5%\"}}", candidate_json, baseline_json);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0),
                      "accuracy dropped 0.0050 from baseline 0.9010 (max_drop 0.5% of 0.9010 = 0.0045)");
  json_decref(d);

  /* log_loss: lower is better, so 0.29 -> 0.31 is 0.02 worse */
  d = judge("gate: {max_drop: {log_loss: 0.01}}", candidate_json, baseline_json);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "log_loss rose 0.0200 from baseline 0.2900 (max_drop 0.01)");
  json_decref(d);
  d = judge("gate: {max_drop: {log_loss: \"10%\"}}", candidate_json, baseline_json);
  assert_true(passed(d)); /* 0.02 <= 0.029 */
  json_decref(d);
  /* the other way round, the candidate improved: log_loss went down, accuracy up */
  d = judge("gate: {max_drop: {log_loss: 0, accuracy: 0}}", baseline_json, candidate_json);
  assert_true(passed(d));
  assert_string_equal(reason_at(d, 0), "log_loss improved by 0.0200 on baseline 0.3100 (max_drop 0)");
  assert_string_equal(reason_at(d, 1), "accuracy improved by 0.0050 on baseline 0.8960 (max_drop 0)");
  json_decref(d);

  /* regression metrics */
  const char *cand = "{\"split\": \"test\", \"metrics\": {\"rmse\": 1.25, \"mae\": 0.8}}";
  const char *base = "{\"split\": \"test\", \"metrics\": {\"rmse\": 1.0, \"mae\": 0.9}}";
  d = judge("gate: {max: {rmse: 1.5}, max_drop: {rmse: \"20%\", mae: 0.01}}", cand, base);
  assert_false(passed(d));
  assert_true(json_is_true(json_object_get(check_at(d, 0), "passed")));
  assert_string_equal(reason_at(d, 1), "rmse rose 0.2500 from baseline 1.0000 (max_drop 20% of 1.0000 = 0.2000)");
  assert_string_equal(reason_at(d, 2), "mae improved by 0.1000 on baseline 0.9000 (max_drop 0.01)");
  assert_int_equal(n_failed(d), 1);
  json_decref(d);
  d = judge("gate: {max_drop: {rmse: \"25%\"}}", cand, base);
  assert_true(passed(d));
  json_decref(d);
  /* an unchanged metric */
  d = judge("gate: {max_drop: {mae: 0}}", base, base);
  assert_true(passed(d));
  assert_string_equal(reason_at(d, 0), "mae unchanged from baseline 0.9000 (max_drop 0)");
  json_decref(d);
}

static void test_judge_slices(void **state) {
  (void)state;
  json_t *d = judge("gate:\n  slices:\n    label=Bag: {min: {accuracy: 0.9}, max: {log_loss: 0.2}}\n"
                    "    label=Shirt: {min: {accuracy: 0.6}}\n",
                    candidate_json, NULL);
  assert_true(passed(d));
  assert_int_equal(json_array_size(json_object_get(d, "checks")), 3);
  assert_string_equal(json_string_value(json_object_get(check_at(d, 0), "slice")), "label=Bag");
  assert_string_equal(reason_at(d, 0), "label=Bag: accuracy 0.9700 >= min 0.9");
  json_decref(d);

  d = judge("gate: {min: {accuracy: 0.8}, slices: {label=Shirt: {min: {accuracy: 0.7}}}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 1), "label=Shirt: accuracy 0.6200 < min 0.7");
  assert_int_equal(n_failed(d), 1);
  json_decref(d);

  /* a slice the evaluation lacks fails each of its thresholds */
  d = judge("gate: {slices: {label=Coat: {min: {accuracy: 0.1}, max: {log_loss: 5}}}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_int_equal(n_failed(d), 2);
  assert_string_equal(reason_at(d, 0),
                      "label=Coat: slice missing from the candidate's evaluation (evaluate with --slice label)");
  assert_true(json_is_null(json_object_get(check_at(d, 0), "value")));
  json_decref(d);
  /* and so does every slice when the evaluation has no slices at all */
  d = judge("gate: {slices: {label=Bag: {min: {accuracy: 0.1}}}}", baseline_json, NULL);
  assert_false(passed(d));
  json_decref(d);
  /* a metric missing in a slice */
  d = judge("gate: {slices: {label=Bag: {min: {auc: 0.1}}}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "label=Bag: auc is missing from the candidate's evaluation (it has: accuracy, log_loss)");
  json_decref(d);
}

static void test_judge_no_baseline_and_refusals(void **state) {
  (void)state;
  /* max_drop without a baseline: listed as skipped, not failing; the min decides */
  json_t *d = judge("gate: {min: {accuracy: 0.8}, max_drop: {accuracy: 0.001}}", candidate_json, NULL);
  assert_true(passed(d));
  const json_t *c = check_at(d, 1);
  assert_true(json_is_true(json_object_get(c, "skipped")));
  assert_true(json_is_true(json_object_get(c, "passed")));
  assert_null(json_object_get(c, "baseline"));
  assert_string_equal(reason_at(d, 1), "accuracy max_drop 0.001 not checked: no baseline to compare with");
  json_decref(d);

  /* a JSON null baseline is no baseline */
  sw_policy *p = parse_ok("gate: {min: {accuracy: 0.8}, max_drop: {accuracy: 0.001}}");
  json_t *cand = load_json(candidate_json), *null_base = json_null();
  assert_int_equal(sw_gate_judge(&p->gate, cand, null_base, &d), SW_STATUS_OK);
  assert_true(passed(d));
  json_decref(d);
  sw_policy_free(p);

  /* nothing to judge by: no gate, an empty gate, max_drop alone without a baseline */
  const char *blind[] = {"metric: accuracy", "gate: {}", "gate:\n  split: test\n", "gate: {max_drop: {accuracy: 0.01}}",
                         "gate: {slices: {label=Bag: {}}}"};
  for (size_t i = 0; i < sizeof blind / sizeof blind[0]; i++) {
    d = judge(blind[i], candidate_json, NULL);
    assert_false(passed(d));
    assert_int_equal(n_failed(d), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "failed"), 0)),
                        "no threshold to judge by: refusing to bless blindly");
    json_decref(d);
  }
  /* a NULL gate is no gate */
  assert_int_equal(sw_gate_judge(NULL, cand, NULL, &d), SW_STATUS_OK);
  assert_false(passed(d));
  assert_string_equal(json_string_value(json_object_get(d, "split")), "test");
  json_decref(d);
  json_decref(cand);
  json_decref(null_base);
  /* with a baseline, max_drop alone is a threshold */
  d = judge("gate: {max_drop: {accuracy: 0.01}}", candidate_json, baseline_json);
  assert_true(passed(d));
  json_decref(d);
}

static void test_judge_missing_and_mismatched(void **state) {
  (void)state;
  /* a metric the evaluation lacks (or holds as null) fails its check */
  json_t *d = judge("gate: {min: {auc: 0.9}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "auc is missing from the candidate's evaluation (it has: accuracy, log_loss)");
  assert_true(json_is_null(json_object_get(check_at(d, 0), "value")));
  json_decref(d);
  d = judge("gate: {max: {rmse: 1}}", "{\"metrics\": {\"rmse\": null}}", NULL);
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "rmse is missing from the candidate's evaluation (it has: no metrics)");
  json_decref(d);
  /* in the baseline */
  d = judge("gate: {max_drop: {auc: 0.01}}", "{\"metrics\": {\"auc\": 0.9}}", "{\"metrics\": {\"accuracy\": 0.9}}");
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0), "auc is missing from the baseline's evaluation (it has: accuracy)");
  json_decref(d);

  /* the candidate on another split than the gate's */
  d = judge("gate: {split: val, min: {accuracy: 0.5}}", candidate_json, NULL);
  assert_false(passed(d));
  assert_string_equal(json_string_value(json_object_get(d, "split")), "val");
  assert_string_equal(json_string_value(json_array_get(json_object_get(d, "failed"), 0)),
                      "the candidate was evaluated on split 'test', the gate judges 'val'");
  json_decref(d);
  /* a baseline on another split or dataset cannot measure a change */
  d = judge("gate: {max_drop: {accuracy: 0.5}}", candidate_json,
            "{\"split\": \"val\", \"metrics\": {\"accuracy\": 0.9}}");
  assert_false(passed(d));
  assert_string_equal(reason_at(d, 0),
                      "accuracy max_drop 0.5 not checked: the baseline was evaluated on split 'val', the gate judges 'test'");
  json_decref(d);
  d = judge("gate: {max_drop: {accuracy: 0.5}}", candidate_json,
            "{\"dataset\": \"bbbb2222\", \"metrics\": {\"accuracy\": 0.9}}");
  assert_false(passed(d));
  assert_non_null(strstr(reason_at(d, 0), "on dataset bbbb2222..., the candidate on aaaa1111..."));
  json_decref(d);
}

static void test_judge_malformed(void **state) {
  (void)state;
  sw_policy *p = parse_ok("gate: {min: {accuracy: 0.5}, slices: {a=b: {min: {accuracy: 0.5}}}}");
  const char *bad[] = {"[]", "{}", "{\"metrics\": [1]}", "{\"metrics\": {}, \"slices\": 3}",
                       "{\"metrics\": {}, \"slices\": {\"a=b\": {\"examples\": 3}}}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *c = load_json(bad[i]);
    json_t *d = (json_t *)&d;
    sw_status st = sw_gate_judge(&p->gate, c, NULL, &d);
    if (st != SW_STATUS_INVALID && st != SW_STATUS_FORMAT) fail_msg("%s: %s", bad[i], sw_status_name(st));
    assert_null(d);
    /* the same object as a baseline is refused too */
    json_t *good = load_json(candidate_json);
    if (i < 4) assert_int_not_equal(sw_gate_judge(&p->gate, good, c, &d), SW_STATUS_OK);
    json_decref(good);
    json_decref(c);
  }
  sw_policy_free(p);
}

/* ---- allocation failures ------------------------------------------------------------- */

typedef sw_status (*alloc_op)(void *ctx);

static void check_alloc_failures(const char *what, alloc_op op, void *ctx, sw_status want) {
  int n;
  for (n = 1; n < 10000; n++) {
    long before = sw_alloc_live();
    sw_alloc_fail_after(n);
    sw_status st = op(ctx);
    sw_alloc_fail_after(0);
    if (sw_alloc_live() != before) fail_msg("%s, allocation %d failing: %ld leaked", what, n, sw_alloc_live() - before);
    if (st == SW_STATUS_NOMEM) continue;
    if (st != want) fail_msg("%s, allocation %d failing: %s (%s)", what, n, sw_status_name(st), sw_last_error());
    break;
  }
  assert_true(n > 1); /* the operation allocates, so some failure was injected */
  print_message("%s: %d allocation points, all handled\n", what, n - 1);
}

static sw_status op_load(void *ctx) {
  sw_policy *p = NULL;
  char *err = NULL;
  sw_status st = sw_policy_load(ctx, &p, &err);
  json_t *j = st ? NULL : sw_policy_to_json(p);
  sw_policy_free(p);
  sw_free(err);
  json_decref(j);
  return st;
}

typedef struct {
  const sw_gate_policy *gate;
  json_t *cand, *base;
} judge_ctx;

static sw_status op_judge(void *ctx) {
  judge_ctx *j = ctx;
  json_t *d = NULL;
  sw_status st = sw_gate_judge(j->gate, j->cand, j->base, &d);
  json_decref(d);
  return st;
}

static void test_allocation_failures(void **state) {
  (void)state;
  char *good = write_temp(rich_policy);
  check_alloc_failures("load rich policy", op_load, good, SW_STATUS_OK);
  char *ex = write_temp(design_example);
  check_alloc_failures("load DESIGN example", op_load, ex, SW_STATUS_OK);
  char *bad = write_temp("gate:\n  slices: {c=r: {min: {accuracy: 0.5}, max: {acurracy: 1}}}\n");
  check_alloc_failures("load bad policy", op_load, bad, SW_STATUS_INVALID);

  sw_policy *p = parse_ok(rich_policy);
  judge_ctx j = {&p->gate, load_json(candidate_json), load_json(baseline_json)};
  check_alloc_failures("judge", op_judge, &j, SW_STATUS_OK);
  json_decref(j.base);
  j.base = NULL;
  check_alloc_failures("judge, no baseline", op_judge, &j, SW_STATUS_OK);
  json_decref(j.cand);
  sw_policy_free(p);
  const char *files[] = {good, ex, bad};
  for (int i = 0; i < 3; i++) {
    unlink(files[i]);
    sw_free((char *)files[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_design_example),
      cmocka_unit_test(test_rich_policy),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_durations_and_drops),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_metric_direction),
      cmocka_unit_test(test_json_equals_yaml),
      cmocka_unit_test(test_judge_design_example_shape),
      cmocka_unit_test(test_judge_failures),
      cmocka_unit_test(test_judge_relative_and_direction),
      cmocka_unit_test(test_judge_slices),
      cmocka_unit_test(test_judge_no_baseline_and_refusals),
      cmocka_unit_test(test_judge_missing_and_mismatched),
      cmocka_unit_test(test_judge_malformed),
      cmocka_unit_test(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
