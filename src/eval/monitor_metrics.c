/* The monitor's numbers in Prometheus text format (held-out quality against the
 * promotion baseline, live accuracy bounds, drift per feature), for `slipway serve`'s
 * /metrics and `slipway monitor`'s. Every family is written whole, its samples for all
 * models together, since the text format wants a family's samples in one run. */
#include <math.h>
#include <string.h>

#include "slipway/eval.h"

/* A label value with \, " and newline escaped, as the text format requires. */
static sw_status put_label(sw_buf *b, const char *name, const char *value) {
  sw_status st = sw_buf_printf(b, "%s=\"", name);
  for (const char *p = value ? value : ""; !st && *p; p++) {
    if (*p == '\\') st = sw_buf_append(b, "\\\\", 2);
    else if (*p == '"') st = sw_buf_append(b, "\\\"", 2);
    else if (*p == '\n') st = sw_buf_append(b, "\\n", 2);
    else st = sw_buf_append(b, p, 1);
  }
  return st ? st : sw_buf_append(b, "\"", 1);
}

static sw_status put_value(sw_buf *b, double v) {
  if (isnan(v)) return sw_buf_printf(b, "} NaN\n");
  if (isinf(v)) return sw_buf_printf(b, "} %sInf\n", v > 0 ? "+" : "-");
  return sw_buf_printf(b, "} %.17g\n", v);
}

static sw_status header(sw_buf *b, const char *name, const char *help) {
  return sw_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static const char *const quality_families[][2] = {
    {"slipway_model_quality", "Held-out metric of a served version, from the monitor's latest evaluation."},
    {"slipway_model_quality_drop", "How much worse than the baseline recorded at promotion (positive: worse)."},
    {"slipway_model_quality_drop_allowed", "The policy's monitor.max_drop for the metric, as an absolute allowance."},
};

sw_status sw_quality_render_prometheus(const sw_quality_series *s, size_t n, sw_buf *out) {
  sw_status st = SW_STATUS_OK;
  for (int fam = 0; fam < 3 && !st; fam++) {
    st = header(out, quality_families[fam][0], quality_families[fam][1]);
    for (size_t i = 0; i < n && !st; i++) {
      char version[24];
      snprintf(version, sizeof version, "%lld", (long long)s[i].version);
      const char *metric;
      const json_t *v;
      size_t k;
      if (fam == 0) {
        json_object_foreach((json_t *)s[i].metrics, metric, v) {
          if (!json_is_number(v) || st) continue;
          st = sw_buf_printf(out, "%s{", quality_families[fam][0]);
          if (!st) st = put_label(out, "model", s[i].model);
          if (!st) st = sw_buf_append(out, ",", 1);
          if (!st) st = put_label(out, "version", version);
          if (!st) st = sw_buf_append(out, ",", 1);
          if (!st) st = put_label(out, "metric", metric);
          if (!st) st = sw_buf_append(out, ",", 1);
          if (!st) st = put_label(out, "dataset", s[i].dataset);
          if (!st) st = put_value(out, json_number_value(v));
        }
        continue;
      }
      json_array_foreach(json_object_get(s[i].drop, "checks"), k, v) {
        const json_t *x = json_object_get(v, fam == 1 ? "drop" : "allowed");
        if (!json_is_number(x) || st) continue; /* skipped checks have neither */
        st = sw_buf_printf(out, "%s{", quality_families[fam][0]);
        if (!st) st = put_label(out, "model", s[i].model);
        if (!st) st = sw_buf_append(out, ",", 1);
        if (!st) st = put_label(out, "version", version);
        if (!st) st = sw_buf_append(out, ",", 1);
        if (!st) st = put_label(out, "metric", json_string_value(json_object_get(v, "metric")));
        if (!st) st = sw_buf_append(out, ",", 1);
        if (!st) st = put_label(out, "dataset", s[i].dataset);
        if (!st) st = put_value(out, json_number_value(x));
      }
    }
  }
  return st;
}

static const char *const live_families[][3] = {
    {"slipway_live_accuracy_lower", "lower", "Lower end of the 95% Wilson interval of the live accuracy."},
    {"slipway_live_accuracy_upper", "upper", "Upper end of the 95% Wilson interval of the live accuracy."},
    {"slipway_live_accuracy_floor", "floor", "The promotion baseline minus the policy's monitor.max_drop."},
};

sw_status sw_live_quality_render_prometheus(const sw_live_quality_series *s, size_t n, sw_buf *out) {
  sw_status st = SW_STATUS_OK;
  for (int fam = 0; fam < 3 && !st; fam++) {
    st = header(out, live_families[fam][0], live_families[fam][2]);
    for (size_t i = 0; i < n && !st; i++) {
      const json_t *x = json_object_get(s[i].judge, live_families[fam][1]);
      if (!json_is_number(x) || json_integer_value(json_object_get(s[i].judge, "n")) <= 0) continue;
      char version[24];
      snprintf(version, sizeof version, "%lld", (long long)s[i].version);
      st = sw_buf_printf(out, "%s{", live_families[fam][0]);
      if (!st) st = put_label(out, "model", s[i].model);
      if (!st) st = sw_buf_append(out, ",", 1);
      if (!st) st = put_label(out, "version", version);
      if (!st) st = put_value(out, json_number_value(x));
    }
  }
  return st;
}

static const char *const drift_feature_families[][3] = {
    {"slipway_drift_psi", "psi", "Population stability index of a feature's live inputs against training."},
    {"slipway_drift_js", "js", "Jensen-Shannon distance of a feature's live inputs against training."},
    {"slipway_drift_ks_pvalue", "ks_p_bonferroni", "Kolmogorov-Smirnov p-value of a numeric feature, Bonferroni-corrected."},
    {"slipway_drift_feature_drifting", "drift", "1 when the feature passes a drift threshold."},
};
static const char *const drift_model_families[][3] = {
    {"slipway_drift_share", "share", "Share of the checked features that drift."},
    {"slipway_drift_detected", "drift", "1 when the share of drifting features reaches the policy's share."},
    {"slipway_drift_window_records", "records", "Records in the drift window."},
};

static double as_number(const json_t *v) {
  return json_is_boolean(v) ? (json_is_true(v) ? 1.0 : 0.0) : json_number_value(v);
}

sw_status sw_drift_render_prometheus(const sw_drift_series *s, size_t n, sw_buf *out) {
  sw_status st = SW_STATUS_OK;
  for (int fam = 0; fam < 4 && !st; fam++) {
    st = header(out, drift_feature_families[fam][0], drift_feature_families[fam][2]);
    for (size_t i = 0; i < n && !st; i++) {
      const char *feature;
      const json_t *f;
      json_object_foreach(json_object_get(s[i].report, "features"), feature, f) {
        const json_t *x = json_object_get(f, drift_feature_families[fam][1]);
        if (!x || st) continue;
        st = sw_buf_printf(out, "%s{", drift_feature_families[fam][0]);
        if (!st) st = put_label(out, "model", s[i].model);
        if (!st) st = sw_buf_append(out, ",", 1);
        if (!st) st = put_label(out, "feature", feature);
        if (!st) st = put_value(out, as_number(x));
      }
    }
  }
  for (int fam = 0; fam < 3 && !st; fam++) {
    st = header(out, drift_model_families[fam][0], drift_model_families[fam][2]);
    for (size_t i = 0; i < n && !st; i++) {
      const json_t *x = json_object_get(s[i].report, drift_model_families[fam][1]);
      if (!x) continue;
      st = sw_buf_printf(out, "%s{", drift_model_families[fam][0]);
      if (!st) st = put_label(out, "model", s[i].model);
      if (!st) st = put_value(out, as_number(x));
    }
  }
  return st;
}
