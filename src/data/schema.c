/* The dataset schema (schema.json): per feature its type, shape, presence, and domain
 * (numeric range, string values, class names), like TFDV's schema in JSON. */
#include <math.h>
#include <string.h>

#include "data/data_int.h"

static sw_feature_kind kind_from_name(const char *s) {
  if (!strcmp(s, "int")) return SW_FEATURE_KIND_INT64;
  if (!strcmp(s, "float")) return SW_FEATURE_KIND_FLOAT;
  if (!strcmp(s, "bytes")) return SW_FEATURE_KIND_BYTES;
  return SW_FEATURE_KIND_NONE;
}

int64_t sw_feature_spec_elements(const sw_feature_spec *f) {
  int64_t n = 1;
  for (int i = 0; i < f->rank; i++) {
    if (f->shape[i] < 0) return -1;
    n *= f->shape[i];
  }
  return n;
}

const sw_feature_spec *sw_schema_find(const sw_schema *s, const char *name) {
  for (size_t i = 0; i < s->n_features; i++)
    if (!strcmp(s->features[i].name, name)) return &s->features[i];
  return NULL;
}

static void free_strings(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) sw_free(v[i]);
  sw_free(v);
}

void sw_schema_free(sw_schema *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_features; i++) {
    sw_feature_spec *f = &s->features[i];
    sw_free(f->name);
    free_strings(f->values, f->n_values);
    free_strings(f->class_names, f->n_classes);
  }
  sw_free(s->features);
  sw_free(s);
}

static sw_status load_strings(const json_t *arr, const char *what, const char *fname,
                              char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!arr) return SW_STATUS_OK;
  if (!json_is_array(arr))
    return sw_error(SW_STATUS_FORMAT, "feature '%s': %s must be a list of strings", fname, what);
  size_t cnt = json_array_size(arr);
  char **v = sw_calloc(cnt ? cnt : 1, sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < cnt; i++) {
    const json_t *e = json_array_get(arr, i);
    if (!json_is_string(e)) {
      free_strings(v, cnt);
      return sw_error(SW_STATUS_FORMAT, "feature '%s': %s[%zu] is not a string", fname, what, i);
    }
    v[i] = sw_strdup(json_string_value(e));
    if (!v[i]) {
      free_strings(v, cnt);
      return sw_error(SW_STATUS_NOMEM, "out of memory");
    }
  }
  *out = v;
  *n = cnt;
  return SW_STATUS_OK;
}

static sw_status load_feature(const json_t *j, const char *src, size_t idx, sw_feature_spec *f) {
  if (!json_is_object(j)) return sw_error(SW_STATUS_FORMAT, "%s: features[%zu] is not an object", src, idx);
  const char *name = json_string_value(json_object_get(j, "name"));
  if (!name || !*name) return sw_error(SW_STATUS_FORMAT, "%s: features[%zu] has no name", src, idx);
  f->name = sw_strdup(name);
  if (!f->name) return sw_error(SW_STATUS_NOMEM, "out of memory");
  const char *type = json_string_value(json_object_get(j, "type"));
  f->kind = type ? kind_from_name(type) : SW_FEATURE_KIND_NONE;
  if (f->kind == SW_FEATURE_KIND_NONE)
    return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': type must be int, float or bytes", src, name);
  const json_t *shape = json_object_get(j, "shape");
  if (shape) {
    if (!json_is_array(shape) || json_array_size(shape) > SW_MAX_RANK)
      return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': shape must be a list of at most %d sizes",
                      src, name, SW_MAX_RANK);
    f->rank = (int)json_array_size(shape);
    for (int d = 0; d < f->rank; d++) {
      const json_t *e = json_array_get(shape, (size_t)d);
      if (!json_is_integer(e) || json_integer_value(e) < -1 || json_integer_value(e) == 0)
        return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': shape[%d] must be a positive size or -1",
                        src, name, d);
      f->shape[d] = json_integer_value(e);
    }
  }
  const json_t *req = json_object_get(j, "required");
  f->required = req ? json_is_true(req) : true;
  const char *enc = json_string_value(json_object_get(j, "encoding"));
  if (enc) {
    if (strcmp(enc, "raw_uint8") != 0)
      return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': unknown encoding '%s' (known: raw_uint8)",
                      src, name, enc);
    if (f->kind != SW_FEATURE_KIND_BYTES || sw_feature_spec_elements(f) <= 0)
      return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': raw_uint8 needs type bytes and a fixed shape",
                      src, name);
    f->image = true;
  }
  const json_t *mn = json_object_get(j, "min"), *mx = json_object_get(j, "max");
  if (mn) {
    if (!json_is_number(mn)) return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': min must be a number", src, name);
    f->has_min = true;
    f->min = json_number_value(mn);
  }
  if (mx) {
    if (!json_is_number(mx)) return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': max must be a number", src, name);
    f->has_max = true;
    f->max = json_number_value(mx);
  }
  sw_status st = load_strings(json_object_get(j, "values"), "values", name, &f->values, &f->n_values);
  if (st) return st;
  if (f->n_values && f->kind != SW_FEATURE_KIND_BYTES)
    return sw_error(SW_STATUS_FORMAT, "%s: feature '%s': values apply to bytes features only", src, name);
  st = load_strings(json_object_get(j, "class_names"), "class_names", name, &f->class_names,
                    &f->n_classes);
  if (st) return st;
  return SW_STATUS_OK;
}

sw_status sw_schema_from_json(const json_t *j, const char *src, sw_schema **out) {
  *out = NULL;
  if (!json_is_object(j)) return sw_error(SW_STATUS_FORMAT, "%s: a schema is a JSON object", src);
  const json_t *feats = json_object_get(j, "features");
  if (!json_is_array(feats) || json_array_size(feats) == 0)
    return sw_error(SW_STATUS_FORMAT, "%s: schema needs a non-empty \"features\" list", src);
  sw_schema *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  s->label = -1;
  size_t n = json_array_size(feats);
  sw_status st = SW_STATUS_OK;
  s->features = sw_calloc(n, sizeof *s->features);
  if (!s->features) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    s->n_features = i + 1;
    st = load_feature(json_array_get(feats, i), src, i, &s->features[i]);
    if (st) goto out;
    for (size_t k = 0; k < i; k++)
      if (!strcmp(s->features[k].name, s->features[i].name)) {
        st = sw_error(SW_STATUS_FORMAT, "%s: feature '%s' is listed twice", src, s->features[i].name);
        goto out;
      }
  }
  const json_t *label = json_object_get(j, "label");
  if (label && !json_is_null(label)) {
    const char *ln = json_string_value(label);
    for (size_t i = 0; ln && i < n; i++)
      if (!strcmp(s->features[i].name, ln)) s->label = (int)i;
    if (s->label < 0) {
      st = sw_error(SW_STATUS_FORMAT, "%s: label '%s' is not one of the features", src, ln ? ln : "?");
      goto out;
    }
    sw_feature_spec *lf = &s->features[s->label];
    lf->is_label = true;
    if (lf->kind != SW_FEATURE_KIND_INT64 && lf->kind != SW_FEATURE_KIND_FLOAT) {
      st = sw_error(SW_STATUS_FORMAT, "%s: label '%s' must be int (classes) or float (regression)",
                    src, lf->name);
      goto out;
    }
  }
out:
  if (st) {
    sw_schema_free(s);
    return st;
  }
  *out = s;
  return SW_STATUS_OK;
}

sw_status sw_schema_load(const char *path, sw_schema **out) {
  json_t *j;
  sw_status st = sw_json_load_file(path, &j);
  if (st) return st;
  st = sw_schema_from_json(j, path, out);
  json_decref(j);
  return st;
}

static json_t *number(double v) {
  if (v == floor(v) && fabs(v) < 9e15) return json_integer((json_int_t)v);
  return json_real(v);
}

json_t *sw_schema_to_json(const sw_schema *s) {
  json_t *root = json_object();
  json_object_set_new(root, "version", json_integer(1));
  json_object_set_new(root, "label", s->label >= 0 ? json_string(s->features[s->label].name) : json_null());
  json_t *feats = json_array();
  for (size_t i = 0; i < s->n_features; i++) {
    const sw_feature_spec *f = &s->features[i];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(f->name));
    json_object_set_new(o, "type", json_string(sw_feature_kind_name(f->kind)));
    if (f->image) json_object_set_new(o, "encoding", json_string("raw_uint8"));
    json_t *shape = json_array();
    for (int d = 0; d < f->rank; d++) json_array_append_new(shape, json_integer(f->shape[d]));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "required", json_boolean(f->required));
    if (f->has_min) json_object_set_new(o, "min", number(f->min));
    if (f->has_max) json_object_set_new(o, "max", number(f->max));
    if (f->n_values) {
      json_t *v = json_array();
      for (size_t k = 0; k < f->n_values; k++) json_array_append_new(v, json_string(f->values[k]));
      json_object_set_new(o, "values", v);
    }
    if (f->n_classes) {
      json_t *v = json_array();
      for (size_t k = 0; k < f->n_classes; k++) json_array_append_new(v, json_string(f->class_names[k]));
      json_object_set_new(o, "class_names", v);
    }
    json_array_append_new(feats, o);
  }
  json_object_set_new(root, "features", feats);
  return root;
}
