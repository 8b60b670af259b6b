/* Quality in production: rolling accuracy from feedback labels with a Wilson interval,
 * and held-out metrics now against the baseline recorded at promotion, judged with the
 * policy's monitor.max_drop (the same arithmetic as the gate's max_drop). */
#include <math.h>
#include <string.h>

#include "slipway/eval.h"

void sw_wilson_interval(int64_t correct, int64_t n, double z, double *lo, double *hi) {
  if (n <= 0) {
    *lo = 0;
    *hi = 1;
    return;
  }
  double nn = (double)n, p = (double)correct / nn, z2 = z * z;
  double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
  double half = z / (1 + z2 / nn) * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  *lo = fmax(0.0, centre - half);
  *hi = fmin(1.0, centre + half);
}

struct sw_accuracy_window {
  int64_t capacity, n, next, correct;
  uint8_t *outcome;
};

sw_status sw_accuracy_window_new(int64_t capacity, sw_accuracy_window **out) {
  *out = NULL;
  if (capacity <= 0) return sw_error(SW_STATUS_INVALID, "an accuracy window needs a positive size, not %lld", (long long)capacity);
  sw_accuracy_window *w = sw_calloc(1, sizeof *w);
  if (w) w->outcome = sw_calloc((size_t)capacity, 1);
  if (!w || !w->outcome) {
    sw_accuracy_window_free(w);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  w->capacity = capacity;
  *out = w;
  return SW_STATUS_OK;
}

void sw_accuracy_window_free(sw_accuracy_window *w) {
  if (!w) return;
  sw_free(w->outcome);
  sw_free(w);
}

void sw_accuracy_window_add(sw_accuracy_window *w, bool correct) {
  if (w->n == w->capacity) w->correct -= w->outcome[w->next];
  else w->n++;
  w->outcome[w->next] = correct;
  w->correct += correct;
  w->next = (w->next + 1) % w->capacity;
}

void sw_accuracy_window_get(const sw_accuracy_window *w, int64_t *n, int64_t *correct) {
  *n = w->n;
  *correct = w->correct;
}

sw_status sw_quality_baseline(const json_t *shown_version, const char *split, json_t **metrics) {
  *metrics = NULL;
  if (!split) split = "test";
  const json_t *evals = json_object_get(shown_version, "evaluations"), *any = NULL, *promoted = NULL, *e;
  size_t i;
  /* newest first (sw_registry_show's order): the first match is the newest */
  json_array_foreach(evals, i, e) {
    const char *sp = json_string_value(json_object_get(e, "split"));
    const char *sl = json_string_value(json_object_get(e, "slice"));
    const char *ctx = json_string_value(json_object_get(e, "context"));
    if (!sp || strcmp(sp, split) || (sl && *sl) || !json_is_object(json_object_get(e, "metrics"))) continue;
    if (!any) any = e;
    if (!promoted && ctx && !strcmp(ctx, "promote:candidate")) promoted = e;
  }
  const json_t *use = promoted ? promoted : any;
  if (!use) return sw_error(SW_STATUS_NOT_FOUND, "no evaluation on split '%s' recorded for this version", split);
  *metrics = json_deep_copy(json_object_get(use, "metrics"));
  return *metrics ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
}

sw_status sw_quality_drop_check(const sw_monitor_policy *monitor, const json_t *baseline, const json_t *current,
                                json_t **result) {
  *result = NULL;
  json_t *checks = json_array();
  bool dropped = false;
  if (!checks) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < monitor->n_max_drop; i++) {
    const sw_threshold *t = &monitor->max_drop[i];
    const json_t *b = json_object_get(baseline, t->metric), *c = json_object_get(current, t->metric);
    json_t *o;
    if (!json_is_number(b) || !json_is_number(c)) {
      o = json_pack("{s:s, s:b, s:b, s:s+}", "metric", t->metric, "skipped", 1, "dropped", 0, "reason", t->metric,
                    !json_is_number(b) ? " not checked: the baseline lacks it" : " not checked: the evaluation lacks it");
    } else {
      double bv = json_number_value(b), cv = json_number_value(c);
      double worse = sw_metric_higher_is_better(t->metric, NULL) ? bv - cv : cv - bv;
      double allowed = t->relative ? t->value * fabs(bv) : t->value;
      bool d = worse > allowed + 1e-12 * fmax(1.0, fabs(bv));
      dropped |= d;
      json_t *reason = d ? json_sprintf("%s %.4f is %.4f worse than the baseline %.4f (max_drop %.4f)", t->metric, cv, worse, bv, allowed)
                         : json_sprintf("%s %.4f within max_drop %.4f of the baseline %.4f", t->metric, cv, allowed, bv);
      o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:b, s:o}", "metric", t->metric, "baseline", bv, "value", cv, "drop", worse,
                    "allowed", allowed, "dropped", d, "reason", reason ? reason : json_string(""));
    }
    if (!o || json_array_append_new(checks, o)) {
      json_decref(checks);
      return sw_error(SW_STATUS_NOMEM, "out of memory");
    }
  }
  *result = json_pack("{s:b, s:o}", "dropped", dropped, "checks", checks);
  return *result ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
}

json_t *sw_live_quality_judge(int64_t correct, int64_t n, double baseline, double allowed) {
  double lo, hi;
  sw_wilson_interval(correct, n, 1.959963984540054, &lo, &hi);
  double floor = baseline - allowed;
  return json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:b}", "n", (json_int_t)n, "correct", (json_int_t)correct,
                   "accuracy", n ? (double)correct / (double)n : 0.0, "lower", lo, "upper", hi, "baseline", baseline,
                   "allowed", allowed, "floor", floor, "below", n > 0 && hi < floor);
}
