/* Validation of one example against the schema: presence, type, shape, finiteness,
 * range, domain and label. The first failure wins and names its reason code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"


static bool in_domain(const sw_feature_spec *fs, const sw_bytes *b) {
  /* domain values are text without NUL, so a value with a NUL is never in it */
  if (memchr(b->data, 0, b->len)) return false;
  const char *key = (const char *)b->data; /* NUL-terminated by sw_example_add_bytes */
  for (size_t i = 0; i < fs->n_values; i++) /* short lists: linear beats sorting a copy */
    if (!strcmp(fs->values[i], key)) return true;
  return false;
}

static void shape_text(const sw_feature_spec *fs, char *out, size_t n) {
  size_t k = (size_t)snprintf(out, n, "[");
  for (int d = 0; d < fs->rank && k < n; d++)
    k += (size_t)snprintf(out + k, n - k, d ? ",%lld" : "%lld", (long long)fs->shape[d]);
  if (k < n) snprintf(out + k, n - k, "]");
}

const char *sw__validate_example(const sw_schema *s, const sw_example *ex, char *feature,
                                 size_t feature_len, char *detail, size_t detail_len) {
  feature[0] = detail[0] = '\0';
  for (size_t i = 0; i < ex->n_features; i++) {
    const sw_feature *f = &ex->features[i];
    if (!sw_schema_find(s, f->name)) {
      snprintf(feature, feature_len, "%s", f->name);
      snprintf(detail, detail_len, "feature '%s' is not in the schema", f->name);
      return SW_REASON_UNKNOWN_FEATURE;
    }
  }
  for (size_t i = 0; i < s->n_features; i++) {
    const sw_feature_spec *fs = &s->features[i];
    const sw_feature *f = sw_example_find(ex, fs->name);
    snprintf(feature, feature_len, "%s", fs->name);
    if (!f || f->count == 0 || f->kind == SW_FEATURE_KIND_NONE) {
      if (!fs->required) continue;
      snprintf(detail, detail_len, "required feature '%s' is missing", fs->name);
      return SW_REASON_MISSING;
    }
    if (f->kind != fs->kind) {
      snprintf(detail, detail_len, "'%s' holds %s values, the schema says %s", fs->name,
               sw_feature_kind_name(f->kind), sw_feature_kind_name(fs->kind));
      return SW_REASON_WRONG_TYPE;
    }
    int64_t elems = sw_feature_spec_elements(fs);
    char shape[96];
    shape_text(fs, shape, sizeof shape);
    if (fs->image) {
      if (f->count != 1 || (int64_t)f->v.bytes[0].len != elems) {
        snprintf(detail, detail_len, "'%s' holds %zu value(s) of %zu bytes, the schema says one of %lld bytes (shape %s)",
                 fs->name, f->count, f->count ? f->v.bytes[0].len : 0, (long long)elems, shape);
        return SW_REASON_WRONG_SHAPE;
      }
      continue; /* uint8 pixels are in range by construction */
    }
    if (elems >= 0 && (int64_t)f->count != elems) {
      snprintf(detail, detail_len, "'%s' holds %zu value(s), the schema says %lld (shape %s)", fs->name,
               f->count, (long long)elems, shape);
      return SW_REASON_WRONG_SHAPE;
    }
    if (elems < 0) {
      int64_t fixed = 1;
      for (int d = 0; d < fs->rank; d++)
        if (fs->shape[d] > 0) fixed *= fs->shape[d];
      if (fixed > 1 && (int64_t)f->count % fixed != 0) {
        snprintf(detail, detail_len, "'%s' holds %zu values, not a multiple of %lld (shape %s)", fs->name,
                 f->count, (long long)fixed, shape);
        return SW_REASON_WRONG_SHAPE;
      }
    }
    for (size_t k = 0; k < f->count; k++) {
      double v;
      if (f->kind == SW_FEATURE_KIND_FLOAT) {
        v = f->v.f32[k];
        if (!isfinite(v)) {
          snprintf(detail, detail_len, "'%s'%s is %s", fs->name, f->count > 1 ? "[...]" : "",
                   isnan(v) ? "NaN" : "infinite");
          return SW_REASON_NOT_FINITE;
        }
      } else if (f->kind == SW_FEATURE_KIND_INT64) {
        v = (double)f->v.i64[k];
      } else {
        if (fs->n_values && !in_domain(fs, &f->v.bytes[k])) {
          snprintf(detail, detail_len, "'%s' = \"%.*s\" is not one of the %zu known values", fs->name,
                   (int)(f->v.bytes[k].len > 64 ? 64 : f->v.bytes[k].len), (const char *)f->v.bytes[k].data,
                   fs->n_values);
          return SW_REASON_OUT_OF_DOMAIN;
        }
        continue;
      }
      if (fs->is_label && fs->n_classes && f->kind == SW_FEATURE_KIND_INT64 &&
          (f->v.i64[k] < 0 || f->v.i64[k] >= (int64_t)fs->n_classes)) {
        snprintf(detail, detail_len, "label %lld is not a class index (0..%zu)", (long long)f->v.i64[k],
                 fs->n_classes - 1);
        return SW_REASON_BAD_LABEL;
      }
      if ((fs->has_min && v < fs->min) || (fs->has_max && v > fs->max)) {
        snprintf(detail, detail_len, "'%s' = %.9g is outside [%.9g, %.9g]", fs->name, v,
                 fs->has_min ? fs->min : -INFINITY, fs->has_max ? fs->max : INFINITY);
        return fs->is_label ? SW_REASON_BAD_LABEL : SW_REASON_OUT_OF_RANGE;
      }
    }
  }
  feature[0] = '\0';
  return NULL;
}
