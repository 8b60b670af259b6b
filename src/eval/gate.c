/* Promotion gates: a candidate's evaluation (sw_eval_run's object) judged against a
 * policy's gate section, value thresholds overall and per slice, change thresholds
 * against the baseline's evaluation. Every threshold becomes one check with a reason a
 * person can read; `slipway registry promote` refuses unless all pass (docs/POLICY.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"

#define REFUSE_BLIND "no threshold to judge by: refusing to bless blindly"

typedef struct {
  json_t *checks, *failed;
  size_t judged;  /* checks that were not skipped */
  bool passed;    /* no check or precondition failed so far */
  sw_status st;   /* NOMEM once anything could not be built */
} judge;

/* Formats v with 4 decimals, or more where 4 would make it read as equal to (or on the
 * other side of) ref: "0.87996 < min 0.88", never "0.8800 < min 0.88". */
static void fmt_against(char *buf, size_t n, double v, double ref) {
  int want = (v > ref) - (v < ref);
  for (int prec = 4; prec <= 17; prec++) {
    snprintf(buf, n, "%.*f", prec, v);
    double r = strtod(buf, NULL);
    if ((r > ref) - (r < ref) == want) return;
  }
}

/* Appends a reason to "failed"; takes ownership of reason (NULL: out of memory). */
static void add_failure(judge *j, char *reason) {
  j->passed = false;
  if (!reason || json_array_append_new(j->failed, json_string(reason))) j->st = SW_STATUS_NOMEM;
  sw_free(reason);
}

/* One check into "checks" (and its reason into "failed" when it fails). value and base
 * may be NULL (missing); takes ownership of reason. */
static void add_check(judge *j, const char *slice, const char *kind, const sw_threshold *t, const json_t *value,
                      const json_t *base, double allowed, bool skipped, bool passed, char *reason) {
  json_t *c = json_pack("{s:s, s:s, s:f}", "metric", t->metric, "kind", kind, "threshold", t->value);
  bool ok = c != NULL && reason != NULL;
  if (ok && slice) ok = json_object_set_new(c, "slice", json_string(slice)) == 0;
  if (ok && !strcmp(kind, "max_drop")) ok = json_object_set_new(c, "relative", json_boolean(t->relative)) == 0;
  if (ok) ok = json_object_set_new(c, "value", value ? json_deep_copy(value) : json_null()) == 0;
  if (ok && !strcmp(kind, "max_drop") && !skipped)
    ok = json_object_set_new(c, "baseline", base ? json_deep_copy(base) : json_null()) == 0;
  if (ok && !isnan(allowed)) ok = json_object_set_new(c, "allowed", json_real(allowed)) == 0;
  if (ok && skipped) ok = json_object_set_new(c, "skipped", json_true()) == 0;
  if (ok) ok = json_object_set_new(c, "passed", json_boolean(passed)) == 0;
  if (ok) ok = json_object_set_new(c, "reason", json_string(reason)) == 0;
  if (ok) {
    ok = json_array_append_new(j->checks, c) == 0;
    c = NULL;
  }
  json_decref(c);
  if (!ok) j->st = SW_STATUS_NOMEM;
  if (!skipped) j->judged++;
  if (!passed) {
    add_failure(j, reason);
  } else {
    sw_free(reason);
  }
}

/* The numeric value of metric in a "metrics" object, or NULL when absent or not a number
 * (jansson has no NaN: an evaluation leaves such a metric out or writes null). */
static const json_t *metric_value(const json_t *metrics, const char *metric) {
  const json_t *v = metrics ? json_object_get(metrics, metric) : NULL;
  return json_is_number(v) ? v : NULL;
}

/* "what" prefixes every reason: "" overall, "color=red: " on a slice. */
static char *missing_reason(const char *what, const char *metric, const char *whose, const json_t *metrics) {
  sw_buf b = {0};
  sw_status st = sw_buf_printf(&b, "%s%s is missing from the %s evaluation (it has:", what, metric, whose);
  const char *key;
  json_t *v;
  size_t listed = 0;
  json_object_foreach((json_t *)metrics, key, v) {
    if (!st && json_is_number(v)) st = sw_buf_printf(&b, "%s %s", listed++ ? "," : "", key);
  }
  if (!st) st = sw_buf_printf(&b, "%s)", listed ? "" : " no metrics");
  if (st) {
    sw_buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}

/* min and max of one metrics object (the whole split or a slice). */
static void value_check(judge *j, const char *slice, const char *kind, const sw_threshold *t, const json_t *metrics) {
  const char *what = slice ? slice : "";
  const char *sep = slice ? ": " : "";
  const json_t *v = metric_value(metrics, t->metric);
  if (!v) {
    char *prefix = sw_asprintf("%s%s", what, sep);
    add_check(j, slice, kind, t, NULL, NULL, NAN, false, false,
              prefix ? missing_reason(prefix, t->metric, "candidate's", metrics) : NULL);
    sw_free(prefix);
    return;
  }
  double x = json_number_value(v);
  bool is_min = !strcmp(kind, "min");
  bool passed = is_min ? x >= t->value : x <= t->value;
  char xs[64];
  fmt_against(xs, sizeof xs, x, t->value);
  const char *op = is_min ? (passed ? ">=" : "<") : (passed ? "<=" : ">");
  add_check(j, slice, kind, t, v, NULL, NAN, false, passed,
            sw_asprintf("%s%s%s %s %s %s %.15g", what, sep, t->metric, xs, op, kind, t->value));
}

/* A change threshold: how much worse than the baseline, in the metric's direction. */
static void drop_check(judge *j, const sw_threshold *t, const json_t *cand_metrics, const json_t *base_metrics,
                       const char *base_problem) {
  const json_t *c = metric_value(cand_metrics, t->metric);
  char limit[256];
  if (t->relative) snprintf(limit, sizeof limit, "%.15g%%", t->value * 100);
  else snprintf(limit, sizeof limit, "%.15g", t->value);
  if (!base_metrics) {
    add_check(j, NULL, "max_drop", t, c, NULL, NAN, true, true,
              sw_asprintf("%s max_drop %s not checked: no baseline to compare with", t->metric, limit));
    return;
  }
  if (base_problem) {
    add_check(j, NULL, "max_drop", t, c, metric_value(base_metrics, t->metric), NAN, false, false,
              sw_asprintf("%s max_drop %s not checked: %s", t->metric, limit, base_problem));
    return;
  }
  const json_t *b = metric_value(base_metrics, t->metric);
  if (!c || !b) {
    add_check(j, NULL, "max_drop", t, c, b, NAN, false, false,
              c ? missing_reason("", t->metric, "baseline's", base_metrics)
                : missing_reason("", t->metric, "candidate's", cand_metrics));
    return;
  }
  double cv = json_number_value(c), bv = json_number_value(b);
  bool higher = sw_metric_higher_is_better(t->metric, NULL);
  double worse = higher ? bv - cv : cv - bv;
  double allowed = t->relative ? t->value * fabs(bv) : t->value;
  /* the subtraction rounds: 0.901 - 0.896 is 0.005000000000000004, which must not fail
   * a max_drop of 0.005 */
  bool passed = worse <= allowed + 1e-12 * fmax(1.0, fabs(bv));
  const char *dir = higher ? "dropped" : "rose";
  char ws[64], bs[64], as[64];
  fmt_against(ws, sizeof ws, worse, allowed);
  snprintf(bs, sizeof bs, "%.4f", bv);
  snprintf(as, sizeof as, "%.4f", allowed);
  char *reason;
  if (t->relative)
    snprintf(limit, sizeof limit, "%.15g%% of %s = %s", t->value * 100, bs, as);
  if (!passed)
    reason = sw_asprintf("%s %s %s from baseline %s (max_drop %s)", t->metric, dir, ws, bs, limit);
  else if (worse > 0)
    reason = sw_asprintf("%s %s %.4f from baseline %s, within max_drop %s", t->metric, dir, worse, bs, limit);
  else if (worse < 0)
    reason = sw_asprintf("%s improved by %.4f on baseline %s (max_drop %s)", t->metric, -worse, bs, limit);
  else
    reason = sw_asprintf("%s unchanged from baseline %s (max_drop %s)", t->metric, bs, limit);
  add_check(j, NULL, "max_drop", t, c, b, allowed, false, passed, reason);
}

/* The "metrics" object of an evaluation, or an error naming whose it is. */
static sw_status eval_metrics(const json_t *e, const char *whose, const json_t **metrics) {
  if (!json_is_object(e)) return sw_error(SW_STATUS_INVALID, "the %s evaluation is not an object", whose);
  *metrics = json_object_get(e, "metrics");
  if (!json_is_object(*metrics))
    return sw_error(SW_STATUS_FORMAT, "the %s evaluation has no \"metrics\" object", whose);
  const json_t *slices = json_object_get(e, "slices");
  if (slices && !json_is_object(slices) && !json_is_null(slices))
    return sw_error(SW_STATUS_FORMAT, "the %s evaluation's \"slices\" is not an object", whose);
  return SW_STATUS_OK;
}

/* Why a baseline cannot be compared with the candidate (another split or dataset), in a
 * new string, or NULL when it can. *st is set to NOMEM when the string cannot be made. */
static char *baseline_problem(const json_t *cand, const json_t *base, const char *split, sw_status *st) {
  const char *bsplit = json_string_value(json_object_get(base, "split"));
  const char *cdata = json_string_value(json_object_get(cand, "dataset"));
  const char *bdata = json_string_value(json_object_get(base, "dataset"));
  char *s = NULL;
  if (bsplit && strcmp(bsplit, split))
    s = sw_asprintf("the baseline was evaluated on split '%s', the gate judges '%s'", bsplit, split);
  else if (cdata && bdata && strcmp(cdata, bdata))
    s = sw_asprintf("the baseline was evaluated on dataset %.12s..., the candidate on %.12s...: a change is only "
                    "measured on the same data",
                    bdata, cdata);
  else
    return NULL;
  if (!s) *st = SW_STATUS_NOMEM;
  return s;
}

sw_status sw_gate_judge(const sw_gate_policy *gate, const json_t *candidate, const json_t *baseline,
                        json_t **decision) {
  *decision = NULL;
  const json_t *cm = NULL, *bm = NULL;
  sw_status st = eval_metrics(candidate, "candidate's", &cm);
  if (st) return st;
  if (baseline && !json_is_null(baseline)) {
    st = eval_metrics(baseline, "baseline's", &bm);
    if (st) return st;
  }
  const char *split = gate && gate->split ? gate->split : "test";
  judge j = {.checks = json_array(), .failed = json_array(), .passed = true};
  char *base_problem = NULL;
  if (!j.checks || !j.failed) {
    j.st = SW_STATUS_NOMEM;
    goto out;
  }
  if (!gate || !gate->present) goto decide;

  /* a candidate judged on another split than the gate names is judged on the wrong data */
  const char *csplit = json_string_value(json_object_get(candidate, "split"));
  if (csplit && strcmp(csplit, split))
    add_failure(&j, sw_asprintf("the candidate was evaluated on split '%s', the gate judges '%s'", csplit, split));
  if (bm) base_problem = baseline_problem(candidate, baseline, split, &j.st);

  for (size_t i = 0; i < gate->n_min; i++) value_check(&j, NULL, "min", &gate->min[i], cm);
  for (size_t i = 0; i < gate->n_max; i++) value_check(&j, NULL, "max", &gate->max[i], cm);
  for (size_t i = 0; i < gate->n_max_drop; i++) drop_check(&j, &gate->max_drop[i], cm, bm, base_problem);

  const json_t *slices = json_object_get(candidate, "slices");
  for (size_t s = 0; s < gate->n_slices; s++) {
    const sw_slice_thresholds *sl = &gate->slices[s];
    const json_t *entry = json_object_get(slices, sl->slice);
    const json_t *sm = json_is_object(entry) ? json_object_get(entry, "metrics") : NULL;
    if (entry && !json_is_object(sm)) {
      st = sw_error(SW_STATUS_FORMAT, "the candidate's evaluation has slice '%s' without a \"metrics\" object",
                    sl->slice);
      goto out;
    }
    if (!entry) {
      /* every threshold of a slice the evaluation lacks fails: a gate on a slice that was
       * not measured is no gate */
      const char *eq = strchr(sl->slice, '=');
      int flen = eq ? (int)(eq - sl->slice) : (int)strlen(sl->slice);
      for (size_t k = 0; k < sl->n_min + sl->n_max; k++) {
        bool is_min = k < sl->n_min;
        const sw_threshold *t = is_min ? &sl->min[k] : &sl->max[k - sl->n_min];
        add_check(&j, sl->slice, is_min ? "min" : "max", t, NULL, NULL, NAN, false, false,
                  sw_asprintf("%s: slice missing from the candidate's evaluation (evaluate with --slice %.*s)",
                              sl->slice, flen, sl->slice));
      }
      continue;
    }
    for (size_t i = 0; i < sl->n_min; i++) value_check(&j, sl->slice, "min", &sl->min[i], sm);
    for (size_t i = 0; i < sl->n_max; i++) value_check(&j, sl->slice, "max", &sl->max[i], sm);
  }

decide:
  if (j.judged == 0) {
    /* an empty gate, or one of max_drop alone with no baseline, would pass anything */
    add_failure(&j, sw_strdup(REFUSE_BLIND));
  }
  if (j.st) goto out;
  *decision = json_pack("{s:b, s:s, s:O, s:O}", "passed", j.passed, "split", split, "checks", j.checks, "failed",
                        j.failed);
  if (!*decision) j.st = SW_STATUS_NOMEM;
out:
  sw_free(base_problem);
  json_decref(j.checks);
  json_decref(j.failed);
  if (st) return st;
  if (j.st) return sw_error(j.st, "out of memory judging a gate");
  return SW_STATUS_OK;
}
