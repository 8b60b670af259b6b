/* Promotion, after TFX's Evaluator: the candidate and the alias's current version are
 * evaluated on the same split of the same dataset, the gate judges, and the registry
 * records both evaluations and the outcome in one transaction that also checks the alias
 * has not moved since the baseline was read (if it has, judge again). */
#include <string.h>

#include "slipway/eval.h"
#include "slipway/registry.h"

#define PROMOTE_ATTEMPTS 8

/* The slice features the gate's per-slice thresholds name ("FEATURE=VALUE" keys), in a
 * new array of strings. */
static json_t *slice_features(const sw_gate_policy *gate) {
  json_t *f = json_array();
  for (size_t i = 0; i < gate->n_slices; i++) {
    const char *key = gate->slices[i].slice, *eq = strchr(key, '=');
    json_t *name = json_stringn(key, eq ? (size_t)(eq - key) : strlen(key));
    bool seen = false;
    size_t k;
    json_t *e;
    json_array_foreach(f, k, e) seen |= json_equal(e, name);
    if (seen) json_decref(name);
    else json_array_append_new(f, name);
  }
  return f;
}

/* One evaluation of ref with every slice feature the gate needs (one pass per feature,
 * the slices merged into the first pass's result). */
static sw_status evaluate(const sw_promote_options *o, const char *ref, const char *data, const char *split,
                          const json_t *features, json_t **out) {
  *out = NULL;
  sw_eval_options eo = {.model_ref = ref, .registry = o->registry, .home = o->home, .data_dir = data, .split = split,
                        .threads = o->threads};
  size_t n = json_array_size(features);
  eo.slice = n ? json_string_value(json_array_get(features, 0)) : NULL;
  sw_status st = sw_eval_run(&eo, out);
  for (size_t i = 1; i < n && !st; i++) {
    json_t *more = NULL;
    eo.slice = json_string_value(json_array_get(features, i));
    st = sw_eval_run(&eo, &more);
    if (!st) json_object_update(json_object_get(*out, "slices"), json_object_get(more, "slices"));
    json_decref(more);
  }
  if (st) {
    json_decref(*out);
    *out = NULL;
  }
  return st;
}

sw_status sw_promote(const sw_promote_options *o, json_t **result) {
  *result = NULL;
  const char *alias = o->alias ? o->alias : "production";
  sw_registry *reg = NULL;
  sw_policy *policy = NULL;
  json_t *cand = NULL, *cand_eval = NULL, *base_eval = NULL, *decision = NULL, *features = NULL;
  char *perr = NULL, *base_ref = NULL;
  int64_t base_version = -1;
  sw_status st = sw_policy_load(o->policy_path, &policy, &perr);
  if (st) {
    st = sw_error(st, "%s", perr ? perr : sw_last_error());
    goto out;
  }
  st = sw_registry_open(o->registry, o->home, &reg);
  if (!st) st = sw_registry_get_version(reg, o->ref, &cand);
  if (st) goto out;
  const char *name = json_string_value(json_object_get(cand, "name"));
  const char *ref = json_string_value(json_object_get(cand, "ref"));
  int64_t version = json_integer_value(json_object_get(cand, "version"));
  const char *data = o->data_dir ? o->data_dir : json_string_value(json_object_get(json_object_get(cand, "dataset"), "path"));
  if (!data) {
    st = sw_error(SW_STATUS_INVALID, "%s has no recorded dataset: pass --data DIR", ref);
    goto out;
  }
  const char *split = policy->gate.split ? policy->gate.split : "test";
  features = slice_features(&policy->gate);
  for (int attempt = 1;; attempt++) {
    int64_t current = 0;
    st = sw_registry_alias_get(reg, name, alias, &current);
    if (st) goto out;
    if (current == version) {
      *result = json_pack("{s:s, s:s, s:b, s:s, s:s, s:O}", "ref", ref, "alias", alias, "passed", 1, "note",
                          "the alias already points to this version", "state",
                          json_string_value(json_object_get(cand, "state")), "baseline", json_object_get(cand, "ref"));
      goto out;
    }
    if (!cand_eval) {
      st = evaluate(o, ref, data, split, features, &cand_eval);
      if (st) goto out;
    }
    if (current != base_version) { /* a baseline not evaluated yet */
      json_decref(base_eval);
      base_eval = NULL;
      sw_free(base_ref);
      base_ref = current ? sw_asprintf("%s:%lld", name, (long long)current) : NULL;
      if (current) {
        st = evaluate(o, base_ref, data, split, features, &base_eval);
        if (st) {
          sw_error_prefix(st, "the baseline %s: ", base_ref);
          goto out;
        }
      }
      base_version = current;
    }
    json_decref(decision);
    decision = NULL;
    st = sw_gate_judge(&policy->gate, cand_eval, base_eval, &decision);
    if (st) goto out;
    bool passed = json_is_true(json_object_get(decision, "passed"));
    const char *state = json_string_value(json_object_get(cand, "state"));
    bool prod = !strcmp(alias, "production");
    const char *new_state;
    if (passed) new_state = prod ? "production" : !strcmp(state, "production") ? NULL : "blessed";
    else new_state = !strcmp(state, "registered") || !strcmp(state, "blessed") || !strcmp(state, "rejected") ? "rejected" : NULL;
    sw_registry_promotion p = {.name = name, .version = version, .alias = alias, .expect_version = current,
                               .candidate_eval = cand_eval, .baseline_eval = base_eval, .decision = decision,
                               .passed = passed, .new_state = new_state, .old_state = prod ? "archived" : NULL,
                               .who = o->who, .why = o->why};
    st = sw_registry_promotion_record(reg, &p);
    if (st == SW_STATUS_EXISTS && attempt < PROMOTE_ATTEMPTS) {
      SW_INFO("%s; judging %s again", sw_last_error(), ref);
      continue;
    }
    if (st) goto out;
    *result = json_pack("{s:s, s:s, s:b, s:o, s:O, s:o, s:O, s:s}", "ref", ref, "alias", alias, "passed", passed, "baseline",
                        base_ref ? json_string(base_ref) : json_null(), "candidate_eval", cand_eval, "baseline_eval",
                        base_eval ? json_incref(base_eval) : json_null(), "decision", decision, "state",
                        new_state ? new_state : state);
    if (!passed) st = sw_error(SW_STATUS_REFUSED, "%s refused for %s@%s", ref, name, alias);
    break;
  }
out:
  json_decref(features);
  json_decref(decision);
  json_decref(cand_eval);
  json_decref(base_eval);
  json_decref(cand);
  sw_free(base_ref);
  sw_free(perr);
  sw_policy_free(policy);
  sw_registry_close(reg);
  return st;
}
