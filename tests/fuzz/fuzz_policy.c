/* libFuzzer target of the policy parser (src/eval/policy.c) over YAML text, as
 * `--policy FILE` reads it; built with SW_FUZZ=ON and, as replay_fuzz_policy, replayed
 * over tests/fuzz/corpus/policy/ on every test run. A policy that parses must survive a
 * trip through JSON unchanged and be judged (src/eval/gate.c) without error; one that
 * does not must say why; nothing leaks either way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static const char candidate[] =
    "{\"split\": \"test\", \"dataset\": \"d\", \"metrics\": {\"accuracy\": 0.9, \"log_loss\": 0.3, \"auc\": 0.95},"
    " \"slices\": {\"label=a\": {\"examples\": 5, \"metrics\": {\"accuracy\": 0.8}}}}";
static const char baseline[] = "{\"split\": \"test\", \"dataset\": \"d\", \"metrics\": {\"accuracy\": 0.91, \"log_loss\": 0.2}}";

static void judge(const sw_policy *p, const json_t *cand, const json_t *base) {
  json_t *d = NULL;
  CHECK(sw_gate_judge(&p->gate, cand, base, &d) == SW_STATUS_OK);
  CHECK(json_is_boolean(json_object_get(d, "passed")));
  /* passed exactly when nothing failed */
  CHECK(json_is_true(json_object_get(d, "passed")) == (json_array_size(json_object_get(d, "failed")) == 0));
  json_decref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  json_t *tree = NULL;
  if (sw_yaml_parse((const char *)data, size, "fuzz", &tree) == SW_STATUS_OK) {
    sw_policy *p = (sw_policy *)&tree;
    char *err = NULL;
    sw_status st = sw_policy_from_json(tree, &p, &err);
    if (st) {
      CHECK(p == NULL);
      CHECK(err != NULL && err[0] != '\0');
      sw_free(err);
    } else {
      CHECK(p != NULL && err == NULL);
      CHECK(p->metric && p->gate.split && p->rollout.n_steps >= 1 &&
            p->rollout.steps[p->rollout.n_steps - 1] == 100);
      json_t *j = sw_policy_to_json(p), *j2 = NULL;
      CHECK(j != NULL);
      sw_policy *again = NULL;
      CHECK(sw_policy_from_json(j, &again, &err) == SW_STATUS_OK);
      j2 = sw_policy_to_json(again);
      CHECK(json_equal(j, j2));
      json_t *cand = json_loads(candidate, 0, NULL), *base = json_loads(baseline, 0, NULL);
      CHECK(cand && base);
      judge(p, cand, base);
      judge(p, cand, NULL);
      json_decref(cand);
      json_decref(base);
      json_decref(j);
      json_decref(j2);
      sw_policy_free(again);
      sw_policy_free(p);
    }
    json_decref(tree);
  }
  CHECK(sw_alloc_live() == live);
  return 0;
}
