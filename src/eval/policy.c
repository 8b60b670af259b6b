/* Policy files (DESIGN.md, docs/POLICY.md): the primary metric and the gate, rollout and
 * monitor sections, validated strictly into an sw_policy, so that a misspelt key or metric
 * is an error naming it rather than a threshold silently not applied. gate.c judges
 * evaluations with the gate section; rollout and monitor read their own sections. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"

/* The metrics of `eval --json`, their direction, and the range a value threshold on them
 * can take (a min accuracy of 1.5 could never pass: an error, not a gate that always
 * refuses). */
static const struct {
  const char *name;
  bool higher_is_better;
  double max_value;
} metric_table[] = {
    {"accuracy", true, 1.0}, {"auc", true, 1.0}, {"log_loss", false, INFINITY},
    {"rmse", false, INFINITY}, {"mae", false, INFINITY},
};
#define N_METRICS (sizeof metric_table / sizeof metric_table[0])
#define KNOWN_METRICS "accuracy, auc, log_loss, rmse, mae"

static int metric_index(const char *name) {
  for (size_t i = 0; i < N_METRICS; i++)
    if (!strcmp(metric_table[i].name, name)) return (int)i;
  return -1;
}

bool sw_metric_higher_is_better(const char *metric, bool *known) {
  int i = metric ? metric_index(metric) : -1;
  if (known) *known = i >= 0;
  return i >= 0 && metric_table[i].higher_is_better;
}

/* ---- the parser's state: where it is (for messages) and the first error ----------- */

#define MAX_DEPTH 8

typedef struct {
  const char *source; /* the file name, or NULL for a tree from JSON */
  const char *seg[MAX_DEPTH];
  bool quoted[MAX_DEPTH]; /* slice names hold dots: written "color=red" in the path */
  int depth;
  char *err;
} parser;

static void push(parser *p, const char *seg, bool quoted) {
  SW_ASSERT(p->depth < MAX_DEPTH);
  p->seg[p->depth] = seg;
  p->quoted[p->depth] = quoted;
  p->depth++;
}

static void pop(parser *p) {
  SW_ASSERT(p->depth > 0);
  p->depth--;
}

/* Records "SOURCE: a.b.c: message" as the error and returns st (NOMEM when even the
 * message cannot be allocated). Only the first error is kept. */
static sw_status fail(parser *p, sw_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static sw_status fail(parser *p, sw_status st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (p->err) return st;
  sw_buf b = {0};
  sw_status bst = SW_STATUS_OK;
  if (p->source) bst = sw_buf_printf(&b, "%s: ", p->source);
  if (p->depth == 0 && !bst) bst = sw_buf_printf(&b, "policy");
  for (int i = 0; i < p->depth && !bst; i++) {
    const char *dot = i == 0 || p->seg[i][0] == '[' ? "" : ".";
    bst = p->quoted[i] ? sw_buf_printf(&b, "%s\"%s\"", dot, p->seg[i]) : sw_buf_printf(&b, "%s%s", dot, p->seg[i]);
  }
  if (!bst) bst = sw_buf_printf(&b, ": %s", msg);
  if (bst) {
    sw_buf_free(&b);
    return sw_error(SW_STATUS_NOMEM, "out of memory reporting a policy error");
  }
  p->err = (char *)b.data;
  return sw_error(st, "%s", p->err);
}

static const char *type_name(const json_t *v) {
  if (!v) return "nothing";
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
  }
}

static sw_status nomem(void) { return sw_error(SW_STATUS_NOMEM, "out of memory reading a policy"); }

/* A mapping, where an empty YAML value (`gate:` with nothing under it, null) reads as an
 * empty one. */
static sw_status need_mapping(parser *p, const json_t *v, const char *what) {
  if (json_is_object(v) || json_is_null(v)) return SW_STATUS_OK;
  return fail(p, SW_STATUS_INVALID, "expected a mapping of %s, got %s", what, type_name(v));
}

static sw_status get_number(parser *p, const json_t *v, double *out) {
  if (!json_is_number(v)) return fail(p, SW_STATUS_INVALID, "expected a number, got %s", type_name(v));
  *out = json_number_value(v);
  return SW_STATUS_OK;
}

/* A number in [lo, hi] (lo_open: lo itself excluded). */
static sw_status get_range(parser *p, const json_t *v, double lo, bool lo_open, double hi, double *out) {
  sw_status st = get_number(p, v, out);
  if (st) return st;
  if (*out < 0 && lo >= 0) return fail(p, SW_STATUS_INVALID, "%g is negative", *out);
  if (*out < lo || (lo_open && *out == lo) || *out > hi) {
    if (isinf(hi)) return fail(p, SW_STATUS_INVALID, "%g must be %s %g", *out, lo_open ? "above" : "at least", lo);
    return fail(p, SW_STATUS_INVALID, "%g is outside %s%g, %g]", *out, lo_open ? "(" : "[", lo, hi);
  }
  return SW_STATUS_OK;
}

/* An integer in [lo, hi]; a real with an integral value counts (JSON writers differ). */
static sw_status get_int(parser *p, const json_t *v, int64_t lo, int64_t hi, int64_t *out) {
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
  } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15) {
    *out = (int64_t)json_real_value(v);
  } else {
    return fail(p, SW_STATUS_INVALID, "expected an integer, got %s", type_name(v));
  }
  if (*out < lo || *out > hi)
    return fail(p, SW_STATUS_INVALID, "%lld is outside %lld..%lld", (long long)*out, (long long)lo, (long long)hi);
  return SW_STATUS_OK;
}

/* A duration: a number of seconds, or a string "90", "30s", "10m", "1.5h". Positive. */
static sw_status get_duration(parser *p, const json_t *v, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    /* decimal only: strtod would also take hexadecimal ("0x1p4") */
    bool decimal = (isdigit((unsigned char)s[0]) || s[0] == '.' || s[0] == '-') && !strpbrk(s, "xX");
    double x = decimal ? strtod(s, &end) : NAN;
    double unit = 0;
    if (end && end != s) {
      if (!strcmp(end, "") || !strcmp(end, "s")) unit = 1;
      else if (!strcmp(end, "m")) unit = 60;
      else if (!strcmp(end, "h")) unit = 3600;
    }
    if (unit == 0 || !isfinite(x))
      return fail(p, SW_STATUS_INVALID, "expected a duration like 30s, 10m, 1h or a number of seconds, got \"%.64s\"", s);
    *out = x * unit;
  } else {
    return fail(p, SW_STATUS_INVALID, "expected a duration like 30s, 10m, 1h or a number of seconds, got %s",
                type_name(v));
  }
  if (!(*out > 0) || !isfinite(*out)) return fail(p, SW_STATUS_INVALID, "a duration must be positive, got %g s", *out);
  return SW_STATUS_OK;
}

static sw_status set_string(char **field, const char *value) {
  char *s = sw_strdup(value);
  if (!s) return nomem();
  sw_free(*field);
  *field = s;
  return SW_STATUS_OK;
}

/* ---- thresholds ---------------------------------------------------------------- */

typedef enum { KIND_MIN, KIND_MAX, KIND_DROP } threshold_kind;

/* A max_drop value: a number (absolute) or "N%" (relative to the baseline's value). */
static sw_status get_drop(parser *p, const json_t *v, sw_threshold *t) {
  if (json_is_number(v)) {
    t->value = json_number_value(v);
    t->relative = false;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    bool decimal = (isdigit((unsigned char)s[0]) || s[0] == '.' || s[0] == '-' || s[0] == '+') && !strpbrk(s, "xX");
    double x = decimal ? strtod(s, &end) : NAN;
    if (!end || end == s || strcmp(end, "%") || !isfinite(x))
      return fail(p, SW_STATUS_INVALID, "expected a number (absolute) or a percentage like \"1%%\", got \"%.64s\"", s);
    t->value = x / 100.0;
    t->relative = true;
  } else {
    return fail(p, SW_STATUS_INVALID, "expected a number (absolute) or a percentage like \"1%%\", got %s",
                type_name(v));
  }
  if (t->value < 0)
    return fail(p, SW_STATUS_INVALID, "%g%s is negative: max_drop says how much worse is allowed",
                t->relative ? t->value * 100 : t->value, t->relative ? "%" : "");
  return SW_STATUS_OK;
}

/* `name: {metric: threshold, ...}` into (*arr, *n); the array is stored before it is
 * filled, so whatever was parsed is freed with the policy on error. */
static sw_status parse_thresholds(parser *p, const char *name, const json_t *v, threshold_kind kind,
                                  sw_threshold **arr, size_t *n) {
  push(p, name, false);
  sw_status st = need_mapping(p, v, "metric: threshold");
  if (st) goto out;
  size_t count = json_is_object(v) ? json_object_size(v) : 0;
  *arr = sw_calloc(count ? count : 1, sizeof **arr);
  *n = 0;
  if (!*arr) {
    st = nomem();
    goto out;
  }
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    push(p, key, false);
    int m = metric_index(key);
    if (m < 0) {
      st = fail(p, SW_STATUS_INVALID, "unknown metric (known: " KNOWN_METRICS ")");
      goto out;
    }
    sw_threshold t = {0};
    if (kind == KIND_DROP) {
      st = get_drop(p, val, &t);
    } else {
      st = get_range(p, val, 0, false, metric_table[m].max_value, &t.value);
    }
    if (st) goto out;
    t.metric = sw_strdup(key);
    if (!t.metric) {
      st = nomem();
      goto out;
    }
    (*arr)[(*n)++] = t;
    pop(p);
  }
  pop(p);
  return SW_STATUS_OK;
out:
  return st;
}

/* min above max on one metric: no value could pass, certainly a mistake. */
static sw_status check_min_max(parser *p, const sw_threshold *min, size_t n_min, const sw_threshold *max,
                               size_t n_max) {
  for (size_t i = 0; i < n_max; i++)
    for (size_t j = 0; j < n_min; j++)
      if (!strcmp(max[i].metric, min[j].metric) && max[i].value < min[j].value) {
        push(p, "max", false);
        push(p, max[i].metric, false);
        return fail(p, SW_STATUS_INVALID, "%g is below min %g: no value could pass", max[i].value, min[j].value);
      }
  return SW_STATUS_OK;
}

/* ---- sections ------------------------------------------------------------------ */

static sw_status parse_slice(parser *p, const char *name, const json_t *v, sw_slice_thresholds *s) {
  push(p, name, true);
  const char *eq = strchr(name, '=');
  if (!eq || eq == name)
    return fail(p, SW_STATUS_INVALID, "a slice is named FEATURE=VALUE, as `eval --slice FEATURE` writes it");
  sw_status st = need_mapping(p, v, "min and max");
  if (st) return st;
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    if (!strcmp(key, "min")) {
      st = parse_thresholds(p, key, val, KIND_MIN, &s->min, &s->n_min);
    } else if (!strcmp(key, "max")) {
      st = parse_thresholds(p, key, val, KIND_MAX, &s->max, &s->n_max);
    } else {
      push(p, key, false);
      st = fail(p, SW_STATUS_INVALID,
                "unknown key (a slice takes min and max; max_drop applies to the whole split)");
    }
    if (st) return st;
  }
  st = check_min_max(p, s->min, s->n_min, s->max, s->n_max);
  if (st) return st;
  pop(p);
  return SW_STATUS_OK;
}

static sw_status parse_gate(parser *p, const json_t *v, sw_gate_policy *g) {
  push(p, "gate", false);
  g->present = true;
  sw_status st = need_mapping(p, v, "split, min, max, max_drop and slices");
  if (st) return st;
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    if (!strcmp(key, "split")) {
      push(p, key, false);
      if (!json_is_string(val) || !json_string_length(val))
        return fail(p, SW_STATUS_INVALID, "expected a split name (train, val, test), got %s",
                    json_is_string(val) ? "an empty string" : type_name(val));
      st = set_string(&g->split, json_string_value(val));
      pop(p);
    } else if (!strcmp(key, "min")) {
      st = parse_thresholds(p, key, val, KIND_MIN, &g->min, &g->n_min);
    } else if (!strcmp(key, "max")) {
      st = parse_thresholds(p, key, val, KIND_MAX, &g->max, &g->n_max);
    } else if (!strcmp(key, "max_drop")) {
      st = parse_thresholds(p, key, val, KIND_DROP, &g->max_drop, &g->n_max_drop);
    } else if (!strcmp(key, "slices")) {
      push(p, key, false);
      st = need_mapping(p, val, "FEATURE=VALUE: {min, max}");
      if (st) return st;
      size_t count = json_is_object(val) ? json_object_size(val) : 0;
      g->slices = sw_calloc(count ? count : 1, sizeof *g->slices);
      g->n_slices = 0;
      if (!g->slices) return nomem();
      const char *name;
      json_t *sv;
      json_object_foreach(val, name, sv) {
        sw_slice_thresholds *s = &g->slices[g->n_slices++];
        s->slice = sw_strdup(name);
        if (!s->slice) return nomem();
        st = parse_slice(p, name, sv, s);
        if (st) return st;
      }
      pop(p);
    } else {
      push(p, key, false);
      return fail(p, SW_STATUS_INVALID, "unknown key (a gate takes split, min, max, max_drop and slices)");
    }
    if (st) return st;
  }
  st = check_min_max(p, g->min, g->n_min, g->max, g->n_max);
  if (st) return st;
  pop(p);
  return SW_STATUS_OK;
}

static sw_status parse_steps(parser *p, const json_t *v, sw_rollout_policy *r) {
  push(p, "steps", false);
  if (!json_is_array(v)) return fail(p, SW_STATUS_INVALID, "expected a list of traffic percentages, got %s", type_name(v));
  size_t n = json_array_size(v);
  if (n == 0) return fail(p, SW_STATUS_INVALID, "at least one step is needed (the last one, 100)");
  if (n > 100) return fail(p, SW_STATUS_INVALID, "%zu steps: increasing percentages in 1..100 are at most 100", n);
  int *steps = sw_calloc(n, sizeof *steps);
  if (!steps) return nomem();
  sw_free(r->steps);
  r->steps = steps;
  r->n_steps = 0;
  for (size_t i = 0; i < n; i++) {
    char idx[32];
    snprintf(idx, sizeof idx, "[%zu]", i);
    push(p, idx, false);
    int64_t x;
    sw_status st = get_int(p, json_array_get(v, i), 1, 100, &x);
    if (st) return st;
    if (i > 0 && x <= steps[i - 1])
      return fail(p, SW_STATUS_INVALID, "%lld does not increase on the step before (%d)", (long long)x, steps[i - 1]);
    steps[r->n_steps++] = (int)x;
    pop(p);
  }
  if (steps[n - 1] != 100)
    return fail(p, SW_STATUS_INVALID, "the last step is %d: a rollout ends at 100 (all traffic)", steps[n - 1]);
  pop(p);
  return SW_STATUS_OK;
}

static sw_status parse_rollout(parser *p, const json_t *v, sw_rollout_policy *r) {
  push(p, "rollout", false);
  r->present = true;
  sw_status st = need_mapping(p, v, "steps, min_requests_per_step, max_step_seconds, alpha, slo and compare_latency");
  if (st) return st;
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    if (!strcmp(key, "steps")) {
      st = parse_steps(p, val, r);
      if (st) return st;
      continue;
    }
    push(p, key, false);
    if (!strcmp(key, "min_requests_per_step")) {
      st = get_int(p, val, 1, INT64_MAX, &r->min_requests_per_step);
    } else if (!strcmp(key, "max_step_seconds")) {
      st = get_duration(p, val, &r->max_step_seconds);
    } else if (!strcmp(key, "alpha")) {
      double a = 0;
      st = get_number(p, val, &a);
      if (!st && !(a > 0 && a < 1))
        st = fail(p, SW_STATUS_INVALID, "%g is outside (0, 1): alpha is the false-rollback probability", a);
      if (!st) r->alpha = a;
    } else if (!strcmp(key, "compare_latency")) {
      if (json_is_boolean(val)) r->compare_latency = json_is_true(val);
      else st = fail(p, SW_STATUS_INVALID, "expected true or false, got %s", type_name(val));
    } else if (!strcmp(key, "slo")) {
      st = need_mapping(p, val, "p99_ms and error_rate");
      const char *k;
      json_t *x;
      json_object_foreach(val, k, x) {
        if (st) break;
        push(p, k, false);
        if (!strcmp(k, "p99_ms")) {
          st = get_range(p, x, 0, true, INFINITY, &r->slo_p99_ms);
        } else if (!strcmp(k, "error_rate")) {
          st = get_range(p, x, 0, false, 1, &r->slo_error_rate);
        } else {
          st = fail(p, SW_STATUS_INVALID, "unknown key (an slo takes p99_ms and error_rate)");
        }
        if (!st) pop(p);
      }
    } else {
      st = fail(p, SW_STATUS_INVALID,
                "unknown key (a rollout takes steps, min_requests_per_step, max_step_seconds, alpha, slo and "
                "compare_latency)");
    }
    if (st) return st;
    pop(p);
  }
  pop(p);
  return SW_STATUS_OK;
}

static sw_status parse_monitor(parser *p, const json_t *v, sw_monitor_policy *m) {
  push(p, "monitor", false);
  m->present = true;
  sw_status st = need_mapping(p, v, "every, max_drop and drift");
  if (st) return st;
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    if (!strcmp(key, "max_drop")) {
      st = parse_thresholds(p, key, val, KIND_DROP, &m->max_drop, &m->n_max_drop);
      if (st) return st;
      continue;
    }
    push(p, key, false);
    if (!strcmp(key, "every")) {
      st = get_duration(p, val, &m->every_seconds);
    } else if (!strcmp(key, "drift")) {
      st = need_mapping(p, val, "psi, js, window and share");
      const char *k;
      json_t *x;
      json_object_foreach(val, k, x) {
        if (st) break;
        push(p, k, false);
        if (!strcmp(k, "psi")) {
          st = get_range(p, x, 0, false, INFINITY, &m->drift_psi);
        } else if (!strcmp(k, "js")) {
          st = get_range(p, x, 0, false, INFINITY, &m->drift_js);
        } else if (!strcmp(k, "window")) {
          st = get_int(p, x, 1, INT64_MAX, &m->drift_window);
        } else if (!strcmp(k, "share")) {
          st = get_range(p, x, 0, true, 1, &m->drift_share);
        } else {
          st = fail(p, SW_STATUS_INVALID, "unknown key (drift takes psi, js, window and share)");
        }
        if (!st) pop(p);
      }
    } else {
      st = fail(p, SW_STATUS_INVALID, "unknown key (a monitor takes every, max_drop and drift)");
    }
    if (st) return st;
    pop(p);
  }
  pop(p);
  return SW_STATUS_OK;
}

/* ---- the policy ------------------------------------------------------------------ */

static const int default_steps[] = {1, 5, 25, 50, 100};

static sw_status set_defaults(sw_policy *pol) {
  pol->metric = sw_strdup("accuracy");
  pol->gate.split = sw_strdup("test");
  pol->rollout.steps = sw_malloc(sizeof default_steps);
  if (!pol->metric || !pol->gate.split || !pol->rollout.steps) return nomem();
  memcpy(pol->rollout.steps, default_steps, sizeof default_steps);
  pol->rollout.n_steps = sizeof default_steps / sizeof default_steps[0];
  pol->rollout.min_requests_per_step = 500;
  pol->rollout.max_step_seconds = 600;
  pol->rollout.alpha = 0.01;
  pol->rollout.slo_p99_ms = -1;
  pol->rollout.slo_error_rate = -1;
  pol->rollout.compare_latency = true;
  pol->monitor.every_seconds = 600;
  pol->monitor.drift_psi = 0.1;
  pol->monitor.drift_js = 0.1;
  pol->monitor.drift_window = 2000;
  pol->monitor.drift_share = 0.5;
  return SW_STATUS_OK;
}

static sw_status parse_policy(parser *p, const json_t *v, sw_policy *pol) {
  if (!json_is_object(v))
    return fail(p, SW_STATUS_INVALID, "expected a mapping of metric, gate, rollout and monitor, got %s%s",
                type_name(v), json_is_null(v) ? " (an empty file?)" : "");
  const char *key;
  json_t *val;
  sw_status st = SW_STATUS_OK;
  json_object_foreach((json_t *)v, key, val) {
    if (!strcmp(key, "metric")) {
      push(p, key, false);
      if (!json_is_string(val)) return fail(p, SW_STATUS_INVALID, "expected a metric name, got %s", type_name(val));
      if (metric_index(json_string_value(val)) < 0)
        return fail(p, SW_STATUS_INVALID, "unknown metric \"%.64s\" (known: " KNOWN_METRICS ")",
                    json_string_value(val));
      st = set_string(&pol->metric, json_string_value(val));
      pop(p);
    } else if (!strcmp(key, "gate")) {
      st = parse_gate(p, val, &pol->gate);
    } else if (!strcmp(key, "rollout")) {
      st = parse_rollout(p, val, &pol->rollout);
    } else if (!strcmp(key, "monitor")) {
      st = parse_monitor(p, val, &pol->monitor);
    } else {
      push(p, key, false);
      return fail(p, SW_STATUS_INVALID, "unknown key (a policy takes metric, gate, rollout and monitor)");
    }
    if (st) return st;
  }
  return SW_STATUS_OK;
}

static sw_status policy_from_tree(const json_t *tree, const char *source, sw_policy **out, char **err) {
  parser p = {.source = source};
  sw_policy *pol = sw_calloc(1, sizeof *pol);
  sw_status st = pol ? set_defaults(pol) : nomem();
  if (!st) st = parse_policy(&p, tree, pol);
  if (st) {
    sw_policy_free(pol);
    pol = NULL;
    if (err && !p.err && st != SW_STATUS_NOMEM) p.err = sw_strdup(sw_last_error());
    if (err) *err = p.err;
    else sw_free(p.err);
    return st;
  }
  *out = pol;
  return SW_STATUS_OK;
}

sw_status sw_policy_from_json(const json_t *policy, sw_policy **out, char **err) {
  *out = NULL;
  if (err) *err = NULL;
  return policy_from_tree(policy, NULL, out, err);
}

sw_status sw_policy_load(const char *path, sw_policy **out, char **err) {
  *out = NULL;
  if (err) *err = NULL;
  json_t *tree = NULL;
  sw_status st = sw_yaml_load_file(path, &tree);
  if (st) {
    /* the loader's message already names the file, line and column */
    if (err && st != SW_STATUS_NOMEM) *err = sw_strdup(sw_last_error());
    return st;
  }
  st = policy_from_tree(tree, path, out, err);
  json_decref(tree);
  return st;
}

static void free_thresholds(sw_threshold *t, size_t n) {
  for (size_t i = 0; i < n && t; i++) sw_free(t[i].metric);
  sw_free(t);
}

void sw_policy_free(sw_policy *p) {
  if (!p) return;
  sw_free(p->metric);
  sw_free(p->gate.split);
  free_thresholds(p->gate.min, p->gate.n_min);
  free_thresholds(p->gate.max, p->gate.n_max);
  free_thresholds(p->gate.max_drop, p->gate.n_max_drop);
  for (size_t i = 0; i < p->gate.n_slices; i++) {
    sw_free(p->gate.slices[i].slice);
    free_thresholds(p->gate.slices[i].min, p->gate.slices[i].n_min);
    free_thresholds(p->gate.slices[i].max, p->gate.slices[i].n_max);
  }
  sw_free(p->gate.slices);
  sw_free(p->rollout.steps);
  free_thresholds(p->monitor.max_drop, p->monitor.n_max_drop);
  sw_free(p);
}

/* ---- back to JSON ------------------------------------------------------------------ */

/* Takes ownership of v (jansson frees it when it cannot be stored, o NULL included);
 * false when either is NULL. */
static bool put(json_t *o, const char *key, json_t *v) { return json_object_set_new(o, key, v) == 0; }

static json_t *thresholds_json(const sw_threshold *t, size_t n) {
  json_t *o = json_object();
  for (size_t i = 0; i < n && o; i++) {
    json_t *v;
    if (t[i].relative) {
      /* the fewest digits that parse back to the same fraction: "0.5%", as written,
       * rather than the "0.50000000000000011%" that value * 100 holds */
      char pct[64];
      for (int prec = 15; prec <= 17; prec++) {
        snprintf(pct, sizeof pct, "%.*g%%", prec, t[i].value * 100.0);
        if (strtod(pct, NULL) / 100.0 == t[i].value) break;
      }
      v = json_string(pct);
    } else {
      v = json_real(t[i].value);
    }
    if (!put(o, t[i].metric, v)) {
      json_decref(o);
      o = NULL;
    }
  }
  return o;
}

static json_t *gate_json(const sw_gate_policy *g) {
  json_t *o = json_object();
  bool ok = put(o, "split", json_string(g->split ? g->split : "test")) &&
            put(o, "min", thresholds_json(g->min, g->n_min)) && put(o, "max", thresholds_json(g->max, g->n_max)) &&
            put(o, "max_drop", thresholds_json(g->max_drop, g->n_max_drop));
  json_t *slices = NULL;
  if (ok) {
    slices = json_object();
    ok = put(o, "slices", slices);
  }
  for (size_t i = 0; ok && i < g->n_slices; i++) {
    const sw_slice_thresholds *s = &g->slices[i];
    json_t *so = json_object();
    ok = put(slices, s->slice, so) && put(so, "min", thresholds_json(s->min, s->n_min)) &&
         put(so, "max", thresholds_json(s->max, s->n_max));
  }
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static json_t *rollout_json(const sw_rollout_policy *r) {
  json_t *o = json_object(), *steps = json_array(), *slo = NULL;
  bool ok = put(o, "steps", steps);
  if (ok) {
    slo = json_object();
    ok = put(o, "slo", slo);
  }
  for (size_t i = 0; ok && i < r->n_steps; i++) ok = json_array_append_new(steps, json_integer(r->steps[i])) == 0;
  ok = ok && put(o, "min_requests_per_step", json_integer(r->min_requests_per_step)) &&
       put(o, "max_step_seconds", json_real(r->max_step_seconds)) && put(o, "alpha", json_real(r->alpha)) &&
       put(o, "compare_latency", json_boolean(r->compare_latency));
  if (ok && r->slo_p99_ms >= 0) ok = put(slo, "p99_ms", json_real(r->slo_p99_ms));
  if (ok && r->slo_error_rate >= 0) ok = put(slo, "error_rate", json_real(r->slo_error_rate));
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static json_t *monitor_json(const sw_monitor_policy *m) {
  json_t *o = json_object();
  bool ok = put(o, "every", json_real(m->every_seconds)) &&
            put(o, "max_drop", thresholds_json(m->max_drop, m->n_max_drop)) &&
            put(o, "drift", json_pack("{s:f, s:f, s:I, s:f}", "psi", m->drift_psi, "js", m->drift_js, "window",
                                      (json_int_t)m->drift_window, "share", m->drift_share));
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *sw_policy_to_json(const sw_policy *p) {
  if (!p) return NULL;
  json_t *o = json_object();
  bool ok = put(o, "metric", json_string(p->metric ? p->metric : "accuracy"));
  /* only the sections the policy has: "present" survives a trip through JSON */
  if (ok && p->gate.present) ok = put(o, "gate", gate_json(&p->gate));
  if (ok && p->rollout.present) ok = put(o, "rollout", rollout_json(&p->rollout));
  if (ok && p->monitor.present) ok = put(o, "monitor", monitor_json(&p->monitor));
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

bool sw_duration_parse(const char *s, double *seconds) {
  json_t *v = json_string(s);
  parser p = {0};
  bool ok = v && get_duration(&p, v, seconds) == SW_STATUS_OK;
  json_decref(v);
  sw_free(p.err);
  return ok;
}
