/* Tabular sources, CSV and JSON Lines. Two passes over the file in memory: the first
 * profiles every column to infer a schema the way TFDV does (type by majority, presence,
 * shape of lists, string domains, label classes), the second converts each record to an
 * example, quarantining the ones that do not fit with a reason each. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

#define MAX_CLASSES 1000
#define REQUIRED_PRESENCE 0.99   /* present in at least this share of records: required */

typedef enum { CELL_MISSING, CELL_INT, CELL_FLOAT, CELL_NONFINITE, CELL_TEXT, CELL_BOOL, CELL_LIST, CELL_OBJECT } cell_class;

typedef struct {
  char *name;
  uint64_t counts[CELL_OBJECT + 1];
  uint64_t list_int, list_float, list_text, list_other;
  json_t *list_lens; /* length -> count */
  sw__value_counts values;
  int64_t min_int, max_int;
  bool seen_int;
} column;

typedef struct {
  sw__prep *p;
  const char *source;
  const char *text;
  size_t len;
  column *cols;
  size_t n_cols;
  uint64_t rows; /* parsable records seen in the profiling pass */
} tabular;

/* ---- cells ------------------------------------------------------------------- */

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* Trims spaces into a NUL-terminated copy in buf (callers pass short cells only). */
static const char *trimmed(const char *s, size_t n, char *buf, size_t cap) {
  while (n && is_space(*s)) s++, n--;
  while (n && is_space(s[n - 1])) n--;
  if (n >= cap) n = cap - 1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return buf;
}

static bool parse_i64(const char *s, int64_t *out) {
  if (!*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno) return false;
  *out = v;
  return true;
}

static bool parse_f64(const char *s, double *out) {
  if (!*s) return false;
  /* strtod takes hex floats and "infinity"; numbers in data are decimal or nan/inf */
  if (strpbrk(s, "xXpP")) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end || (errno == ERANGE && isfinite(v) && v != 0)) return false;
  *out = v;
  return true;
}

static cell_class classify_text(const char *s, size_t n) {
  char buf[128];
  if (n == 0) return CELL_MISSING;
  if (n >= sizeof buf) return CELL_TEXT;
  const char *t = trimmed(s, n, buf, sizeof buf);
  if (!*t) return CELL_MISSING;
  int64_t i;
  double d;
  if (parse_i64(t, &i)) return CELL_INT;
  if (parse_f64(t, &d)) return isfinite(d) ? CELL_FLOAT : CELL_NONFINITE;
  return CELL_TEXT;
}

static cell_class classify_json(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_NULL: return CELL_MISSING;
    case JSON_INTEGER: return CELL_INT;
    case JSON_REAL: return CELL_FLOAT;
    case JSON_STRING: return CELL_TEXT;
    case JSON_TRUE:
    case JSON_FALSE: return CELL_BOOL;
    case JSON_ARRAY: return CELL_LIST;
    default: return CELL_OBJECT;
  }
}

static column *find_col(tabular *t, const char *name) {
  for (size_t i = 0; i < t->n_cols; i++)
    if (!strcmp(t->cols[i].name, name)) return &t->cols[i];
  return NULL;
}

static sw_status add_col(tabular *t, const char *name, column **out) {
  column *c = sw_realloc(t->cols, (t->n_cols + 1) * sizeof *c);
  if (!c) return sw_error(SW_STATUS_NOMEM, "out of memory");
  t->cols = c;
  c = &t->cols[t->n_cols];
  memset(c, 0, sizeof *c);
  c->name = sw_strdup(name);
  c->list_lens = json_object();
  if (!c->name || !c->list_lens) return sw_error(SW_STATUS_NOMEM, "out of memory");
  t->n_cols++;
  *out = c;
  return SW_STATUS_OK;
}

static void profile_int(column *c, int64_t v) {
  if (!c->seen_int || v < c->min_int) c->min_int = v;
  if (!c->seen_int || v > c->max_int) c->max_int = v;
  c->seen_int = true;
}

static void profile_text_cell(column *c, const char *s, size_t n) {
  cell_class k = classify_text(s, n);
  c->counts[k]++;
  if (k == CELL_TEXT) sw__value_counts_add(&c->values, (const uint8_t *)s, n);
  if (k == CELL_INT) {
    char buf[128];
    int64_t v;
    if (parse_i64(trimmed(s, n, buf, sizeof buf), &v)) profile_int(c, v);
  }
}

static void profile_json_cell(column *c, const json_t *v) {
  cell_class k = classify_json(v);
  c->counts[k]++;
  if (k == CELL_TEXT) sw__value_counts_add(&c->values, (const uint8_t *)json_string_value(v), json_string_length(v));
  if (k == CELL_INT) profile_int(c, json_integer_value(v));
  if (k == CELL_LIST) {
    char key[32];
    snprintf(key, sizeof key, "%zu", json_array_size(v));
    json_object_set_new(c->list_lens, key, json_integer(json_integer_value(json_object_get(c->list_lens, key)) + 1));
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
      cell_class ek = classify_json(e);
      if (ek == CELL_INT) c->list_int++;
      else if (ek == CELL_FLOAT) c->list_float++;
      else if (ek == CELL_TEXT) c->list_text++;
      else c->list_other++;
    }
  }
}

/* ---- schema inference ------------------------------------------------------------ */

static sw_status infer_schema(tabular *t) {
  sw__prep *p = t->p;
  sw_schema *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  s->label = -1;
  s->features = sw_calloc(t->n_cols + 1, sizeof *s->features);
  sw_status st = SW_STATUS_OK;
  if (!s->features) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < t->n_cols; i++) {
    const column *c = &t->cols[i];
    sw_feature_spec *f = &s->features[s->n_features++];
    f->name = sw_strdup(c->name);
    if (!f->name) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    uint64_t present = t->rows - c->counts[CELL_MISSING];
    f->required = (double)present >= REQUIRED_PRESENCE * (double)t->rows;
    bool is_label = p->label && !strcmp(p->label, c->name);
    if (c->counts[CELL_OBJECT] * 2 > present && present) {
      st = sw_error(SW_STATUS_UNSUPPORTED, "%s: '%s' holds nested objects, which a feature cannot",
                    t->source, c->name);
      goto out;
    }
    if (c->counts[CELL_LIST] * 2 > present && present) {
      /* a fixed length when nearly every list has it, else variable */
      f->rank = 1;
      f->shape[0] = -1;
      const char *key;
      json_t *cnt;
      json_object_foreach(c->list_lens, key, cnt) {
        if ((double)json_integer_value(cnt) >= REQUIRED_PRESENCE * (double)c->counts[CELL_LIST] && atol(key) > 0)
          f->shape[0] = atol(key);
      }
      if (c->list_text > c->list_int + c->list_float) f->kind = SW_FEATURE_KIND_BYTES;
      else if (c->list_float) f->kind = SW_FEATURE_KIND_FLOAT;
      else f->kind = SW_FEATURE_KIND_INT64;
      continue;
    }
    uint64_t numeric = c->counts[CELL_INT] + c->counts[CELL_FLOAT] + c->counts[CELL_NONFINITE] + c->counts[CELL_BOOL];
    uint64_t text = c->counts[CELL_TEXT];
    if (numeric > 0 && numeric >= text) {
      f->kind = c->counts[CELL_FLOAT] ? SW_FEATURE_KIND_FLOAT : SW_FEATURE_KIND_INT64;
      if (is_label && f->kind == SW_FEATURE_KIND_INT64 && c->seen_int && c->min_int >= 0 &&
          c->max_int < MAX_CLASSES) {
        st = sw__numbered_classes(f, (size_t)c->max_int + 1);
        if (st) goto out;
      }
    } else if (is_label) {
      /* text labels become class indices; the names are the sorted distinct values */
      if (c->values.too_many || json_object_size(c->values.counts) > MAX_CLASSES) {
        st = sw_error(SW_STATUS_UNSUPPORTED, "%s: label '%s' has more than %d distinct values", t->source,
                      c->name, MAX_CLASSES);
        goto out;
      }
      f->kind = SW_FEATURE_KIND_INT64;
      st = sw__value_counts_list(&c->values, true, &f->class_names, &f->n_classes);
      if (st) goto out;
    } else {
      f->kind = SW_FEATURE_KIND_BYTES;
      st = sw__value_counts_list(&c->values, false, &f->values, &f->n_values);
      if (st) goto out;
    }
    if (is_label) {
      f->is_label = true;
      f->required = true;
      s->label = (int)i;
    }
  }
  if (p->label && s->label < 0) {
    st = sw_error(SW_STATUS_INVALID, "%s: no column named '%s' for --label", t->source, p->label);
    goto out;
  }
out:
  if (st) {
    sw_schema_free(s);
    return st;
  }
  p->schema = s;
  return SW_STATUS_OK;
}

/* ---- conversion ----------------------------------------------------------------- */

typedef struct {
  const char *reason;
  char feature[256];
  char detail[512];
} problem;

static sw_status fail(problem *pr, const char *reason, const char *feature, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static sw_status fail(problem *pr, const char *reason, const char *feature, const char *fmt, ...) {
  pr->reason = reason;
  snprintf(pr->feature, sizeof pr->feature, "%s", feature ? feature : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pr->detail, sizeof pr->detail, fmt, ap);
  va_end(ap);
  return SW_STATUS_FORMAT;
}

static int class_index(const sw_feature_spec *f, const char *s, size_t n) {
  for (size_t k = 0; k < f->n_classes; k++)
    if (strlen(f->class_names[k]) == n && !memcmp(f->class_names[k], s, n)) return (int)k;
  return -1;
}

/* One text cell (CSV) into the example. */
static sw_status text_cell(sw_example *ex, const sw_feature_spec *f, const char *s, size_t n, problem *pr) {
  char buf[128];
  if (f->kind == SW_FEATURE_KIND_BYTES) {
    if (!sw__utf8_valid((const uint8_t *)s, n))
      return fail(pr, SW_REASON_BAD_ENCODING, f->name, "'%s' is not valid UTF-8 text", f->name);
    sw_bytes b = {(uint8_t *)s, n};
    return sw_example_add_bytes(ex, f->name, &b, 1);
  }
  if (f->is_label && f->n_classes) {
    int k = class_index(f, s, n);
    if (k >= 0) {
      int64_t v = k;
      return sw_example_add_int64(ex, f->name, &v, 1);
    }
  }
  const char *t = n < sizeof buf ? trimmed(s, n, buf, sizeof buf) : NULL;
  int64_t i;
  double d;
  if (f->kind == SW_FEATURE_KIND_INT64) {
    if (t && parse_i64(t, &i)) return sw_example_add_int64(ex, f->name, &i, 1);
    if (t && parse_f64(t, &d) && !isfinite(d))
      return fail(pr, SW_REASON_NOT_FINITE, f->name, "'%s' is %s", f->name, t);
    if (f->is_label)
      return fail(pr, SW_REASON_BAD_LABEL, f->name, "label \"%.*s\" is not a known class", (int)(n > 64 ? 64 : n), s);
    return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' = \"%.*s\" is not an integer", f->name,
                (int)(n > 64 ? 64 : n), s);
  }
  if (t && parse_f64(t, &d)) {
    float v = (float)d;
    return sw_example_add_float(ex, f->name, &v, 1);
  }
  return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' = \"%.*s\" is not a number", f->name, (int)(n > 64 ? 64 : n), s);
}

/* One JSON value (scalar) into a typed slot. */
static sw_status json_scalar(const sw_feature_spec *f, const json_t *v, int64_t *i, float *x, problem *pr) {
  switch (json_typeof(v)) {
    case JSON_INTEGER:
      if (f->kind == SW_FEATURE_KIND_INT64) *i = json_integer_value(v);
      else if (f->kind == SW_FEATURE_KIND_FLOAT) *x = (float)json_integer_value(v);
      else return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' holds a number, the schema says text", f->name);
      return SW_STATUS_OK;
    case JSON_REAL: {
      double d = json_real_value(v);
      if (f->kind == SW_FEATURE_KIND_FLOAT) *x = (float)d;
      else if (f->kind == SW_FEATURE_KIND_INT64 && d == floor(d) && fabs(d) < 9e18) *i = (int64_t)d;
      else if (f->kind == SW_FEATURE_KIND_INT64)
        return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' = %g is not an integer", f->name, d);
      else return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' holds a number, the schema says text", f->name);
      return SW_STATUS_OK;
    }
    case JSON_TRUE:
    case JSON_FALSE:
      if (f->kind == SW_FEATURE_KIND_BYTES)
        return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' holds a boolean, the schema says text", f->name);
      *i = json_is_true(v);
      *x = (float)*i;
      return SW_STATUS_OK;
    case JSON_STRING: {
      const char *s = json_string_value(v);
      if (f->kind == SW_FEATURE_KIND_FLOAT &&
          (!strcmp(s, "NaN") || !strcmp(s, "Infinity") || !strcmp(s, "-Infinity"))) {
        *x = s[0] == 'N' ? NAN : s[0] == '-' ? -INFINITY : INFINITY; /* as TF Serving reads them */
        return SW_STATUS_OK;
      }
      if (f->is_label && f->n_classes) {
        int k = class_index(f, s, json_string_length(v));
        if (k >= 0) {
          *i = k;
          return SW_STATUS_OK;
        }
        return fail(pr, SW_REASON_BAD_LABEL, f->name, "label \"%.64s\" is not a known class", s);
      }
      return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' = \"%.64s\" is text, the schema says %s", f->name, s,
                  sw_feature_kind_name(f->kind));
    }
    case JSON_ARRAY:
      return fail(pr, SW_REASON_WRONG_SHAPE, f->name, "'%s' holds a list, the schema says one value", f->name);
    default:
      return fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' holds an object", f->name);
  }
}

static sw_status json_cell(sw_example *ex, const sw_feature_spec *f, const json_t *v, problem *pr) {
  bool list = json_is_array(v);
  if (f->rank >= 1 && !list)
    return fail(pr, SW_REASON_WRONG_SHAPE, f->name, "'%s' holds one value, the schema says a list", f->name);
  if (f->rank == 0 && list)
    return fail(pr, SW_REASON_WRONG_SHAPE, f->name, "'%s' holds a list, the schema says one value", f->name);
  size_t n = list ? json_array_size(v) : 1;
  sw_status st = SW_STATUS_OK;
  if (f->kind == SW_FEATURE_KIND_BYTES) {
    sw_bytes *b = sw_calloc(n ? n : 1, sizeof *b);
    if (!b) return sw_error(SW_STATUS_NOMEM, "out of memory");
    for (size_t k = 0; k < n && !st; k++) {
      const json_t *e = list ? json_array_get(v, k) : v;
      if (!json_is_string(e)) {
        st = fail(pr, SW_REASON_WRONG_TYPE, f->name, "'%s' holds %s, the schema says text", f->name,
                  json_is_array(e) ? "a list" : json_is_object(e) ? "an object" : "a number");
        break;
      }
      b[k].data = (uint8_t *)json_string_value(e);
      b[k].len = json_string_length(e);
    }
    if (!st) st = sw_example_add_bytes(ex, f->name, b, n);
    sw_free(b);
    return st;
  }
  int64_t *iv = sw_malloc((n ? n : 1) * sizeof *iv);
  float *fv = sw_malloc((n ? n : 1) * sizeof *fv);
  if (!iv || !fv) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t k = 0; k < n && !st; k++) {
    const json_t *e = list ? json_array_get(v, k) : v;
    if (json_is_array(e)) st = fail(pr, SW_REASON_WRONG_SHAPE, f->name, "'%s' holds nested lists", f->name);
    else st = json_scalar(f, e, &iv[k], &fv[k], pr);
  }
  if (!st) st = f->kind == SW_FEATURE_KIND_INT64 ? sw_example_add_int64(ex, f->name, iv, n)
                                                 : sw_example_add_float(ex, f->name, fv, n);
  sw_free(iv);
  sw_free(fv);
  return st;
}

/* Quarantines (pr set: FORMAT) or adds the record; other statuses are real errors. */
static sw_status finish_record(tabular *t, sw_status st, problem *pr, sw_example *ex, const sw__location *loc,
                               const char *raw, size_t raw_len) {
  if (st == SW_STATUS_FORMAT && pr->reason) {
    sw_example_clear(ex);
    return sw__quarantine(t->p, loc, pr->reason, pr->feature, pr->detail, raw, raw_len, false);
  }
  if (st) {
    sw_example_clear(ex);
    return st;
  }
  char *copy = sw_strndup(raw, raw_len);
  if (!copy) {
    sw_example_clear(ex);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  return sw__prep_add(t->p, loc, ex, t->p->ingest_split, copy, raw_len);
}

static void tabular_free(tabular *t) {
  for (size_t i = 0; i < t->n_cols; i++) {
    sw_free(t->cols[i].name);
    sw__value_counts_free(&t->cols[i].values);
    json_decref(t->cols[i].list_lens);
  }
  sw_free(t->cols);
}

/* ---- CSV ----------------------------------------------------------------------- */

static sw_status csv_header(tabular *t, sw_csv_reader *r, char ***names, size_t *n) {
  sw_csv_record rec;
  sw_status st = sw_csv_next(r, &rec);
  if (st == SW_STATUS_EOF) return sw_error(SW_STATUS_FORMAT, "%s: empty file (a header row is needed)", t->source);
  if (st) return sw_error_prefix(st, "%s: header: ", t->source);
  char **v = sw_calloc(rec.n_fields + 1, sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  *names = v;
  *n = rec.n_fields;
  for (size_t i = 0; i < rec.n_fields; i++) {
    char buf[256];
    v[i] = sw_strdup(trimmed(rec.fields[i], rec.field_lens[i], buf, sizeof buf));
    if (!v[i]) return sw_error(SW_STATUS_NOMEM, "out of memory");
    if (!*v[i]) return sw_error(SW_STATUS_FORMAT, "%s: header column %zu has no name", t->source, i + 1);
    if (!sw__utf8_valid((const uint8_t *)v[i], strlen(v[i])))
      return sw_error(SW_STATUS_FORMAT, "%s: header column %zu is not UTF-8", t->source, i + 1);
    for (size_t k = 0; k < i; k++)
      if (!strcmp(v[k], v[i])) return sw_error(SW_STATUS_FORMAT, "%s: column '%s' appears twice in the header", t->source, v[i]);
  }
  return SW_STATUS_OK;
}

static void free_names(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) sw_free(v[i]);
  sw_free(v);
}

sw_status sw__ingest_csv(sw__prep *p) {
  tabular t = {.p = p};
  uint8_t *data = NULL;
  size_t len = 0;
  char **names = NULL;
  size_t n_names = 0;
  const sw_feature_spec **specs = NULL;
  sw_csv_reader *r = NULL;
  sw_status st = sw_read_file(p->opt->path, &data, &len);
  if (st) return st;
  st = sw__prep_source(p, p->opt->path, &t.source);
  if (st) goto out;
  if (!p->label && !p->schema) p->label = "label"; /* used only if such a column exists */

  /* pass 1: the header, and a profile of every column unless a schema was given */
  st = sw_csv_open_mem((const char *)data, len, ',', &r);
  if (!st) st = csv_header(&t, r, &names, &n_names);
  if (st) goto out;
  sw_csv_expect_fields(r, n_names);
  if (!p->schema) {
    if (!strcmp(p->label, "label") && !p->opt->label) {
      bool found = false;
      for (size_t i = 0; i < n_names; i++) found |= !strcmp(names[i], "label");
      if (!found) p->label = NULL;
    }
    for (size_t i = 0; i < n_names; i++) {
      column *c;
      st = add_col(&t, names[i], &c);
      if (st) goto out;
    }
    sw_csv_record rec;
    for (;;) {
      st = sw_csv_next(r, &rec);
      if (st == SW_STATUS_EOF) break;
      if (st == SW_STATUS_FORMAT || rec.n_fields != n_names) continue; /* quarantined in pass 2 */
      if (st) goto out;
      t.rows++;
      for (size_t i = 0; i < n_names; i++) profile_text_cell(&t.cols[i], rec.fields[i], rec.field_lens[i]);
    }
    st = infer_schema(&t);
    if (st) goto out;
  }
  /* the header against the schema */
  specs = sw_calloc(n_names + 1, sizeof *specs);
  if (!specs) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n_names; i++) {
    specs[i] = sw_schema_find(p->schema, names[i]);
    if (!specs[i]) {
      st = sw_error(SW_STATUS_FORMAT, "%s: column '%s' is not in the schema", t.source, names[i]);
      goto out;
    }
  }
  for (size_t k = 0; k < p->schema->n_features; k++) {
    const sw_feature_spec *f = &p->schema->features[k];
    bool found = false;
    for (size_t i = 0; i < n_names; i++) found |= specs[i] == f;
    if (!found && f->required) {
      st = sw_error(SW_STATUS_FORMAT, "%s: required feature '%s' has no column", t.source, f->name);
      goto out;
    }
  }
  /* pass 2: convert */
  sw_csv_close(r);
  r = NULL;
  st = sw_csv_open_mem((const char *)data, len, ',', &r);
  if (st) goto out;
  sw_csv_expect_fields(r, n_names);
  sw_csv_record rec;
  st = sw_csv_next(r, &rec); /* the header again */
  if (st) goto out;
  for (;;) {
    st = sw_csv_next(r, &rec);
    if (st == SW_STATUS_EOF) {
      st = SW_STATUS_OK;
      break;
    }
    sw__location loc = {t.source, rec.line, rec.offset};
    problem pr = {0};
    sw_example ex = {0};
    if (st == SW_STATUS_FORMAT) {
      st = fail(&pr, SW_REASON_MALFORMED, NULL, "%s", sw_last_error());
    } else if (st) {
      goto out;
    } else if (rec.n_fields != n_names) {
      st = fail(&pr, SW_REASON_FIELD_COUNT, NULL, "%zu fields, the header has %zu", rec.n_fields, n_names);
    } else {
      for (size_t i = 0; i < n_names && !st; i++) {
        if (classify_text(rec.fields[i], rec.field_lens[i]) == CELL_MISSING) continue;
        st = text_cell(&ex, specs[i], rec.fields[i], rec.field_lens[i], &pr);
      }
    }
    st = finish_record(&t, st, &pr, &ex, &loc, rec.raw, rec.raw_len);
    if (st) goto out;
  }
out:
  sw_csv_close(r);
  sw_free(specs);
  free_names(names, n_names);
  tabular_free(&t);
  sw_free(data);
  return st;
}

/* ---- JSON Lines ------------------------------------------------------------------- */

typedef struct {
  const char *line;
  size_t len;
  uint64_t number;
  uint64_t offset;
} text_line;

/* Next non-blank line; false at the end. */
static bool next_line(const char *data, size_t len, size_t *pos, uint64_t *line_no, text_line *out) {
  while (*pos < len) {
    size_t start = *pos;
    const char *nl = memchr(data + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - data) : len;
    *pos = nl ? end + 1 : len;
    (*line_no)++;
    size_t e = end;
    if (e > start && data[e - 1] == '\r') e--;
    size_t k = start;
    while (k < e && (is_space(data[k]))) k++;
    if (k == e) continue;
    out->line = data + start;
    out->len = e - start;
    out->number = *line_no;
    out->offset = start;
    return true;
  }
  return false;
}

static json_t *parse_object(const text_line *l, problem *pr) {
  json_error_t err;
  json_t *v = json_loadb(l->line, l->len, JSON_REJECT_DUPLICATES, &err);
  if (!v) {
    const char *reason = strstr(err.text, "duplicate") ? SW_REASON_DUPLICATE_KEY : SW_REASON_MALFORMED;
    fail(pr, reason, NULL, "column %d: %s", err.column, err.text);
    return NULL;
  }
  if (!json_is_object(v)) {
    fail(pr, SW_REASON_MALFORMED, NULL, "a line must hold a JSON object, not a %s",
         json_is_array(v) ? "list" : "scalar");
    json_decref(v);
    return NULL;
  }
  return v;
}

sw_status sw__ingest_jsonl(sw__prep *p) {
  tabular t = {.p = p};
  uint8_t *data = NULL;
  size_t len = 0, pos;
  uint64_t line_no;
  text_line l;
  sw_status st = sw_read_file(p->opt->path, &data, &len);
  if (st) return st;
  st = sw__prep_source(p, p->opt->path, &t.source);
  if (st) goto out;
  if (!p->schema) {
    pos = 0;
    line_no = 0;
    while (next_line((const char *)data, len, &pos, &line_no, &l)) {
      problem pr = {0};
      json_t *obj = parse_object(&l, &pr);
      if (!obj) continue;
      t.rows++;
      const char *key;
      json_t *v;
      json_object_foreach(obj, key, v) {
        column *c = find_col(&t, key);
        if (!c) {
          st = add_col(&t, key, &c);
          if (st) {
            json_decref(obj);
            goto out;
          }
          c->counts[CELL_MISSING] = t.rows - 1; /* absent from the records before */
        }
        profile_json_cell(c, v);
      }
      for (size_t i = 0; i < t.n_cols; i++)
        if (!json_object_get(obj, t.cols[i].name)) t.cols[i].counts[CELL_MISSING]++;
      json_decref(obj);
    }
    if (!p->label || !find_col(&t, p->label)) {
      if (p->opt->label) {
        st = sw_error(SW_STATUS_INVALID, "%s: no key named '%s' for --label", t.source, p->opt->label);
        goto out;
      }
      p->label = find_col(&t, "label") ? "label" : NULL;
    }
    st = infer_schema(&t);
    if (st) goto out;
  }
  pos = 0;
  line_no = 0;
  while (next_line((const char *)data, len, &pos, &line_no, &l)) {
    sw__location loc = {t.source, l.number, l.offset};
    problem pr = {0};
    sw_example ex = {0};
    json_t *obj = parse_object(&l, &pr);
    st = obj ? SW_STATUS_OK : SW_STATUS_FORMAT;
    if (obj) {
      const char *key;
      json_t *v;
      json_object_foreach(obj, key, v) {
        const sw_feature_spec *f = sw_schema_find(p->schema, key);
        if (!f) {
          st = fail(&pr, SW_REASON_UNKNOWN_FEATURE, key, "key '%s' is not in the schema", key);
          break;
        }
        if (json_is_null(v)) continue;
        st = json_cell(&ex, f, v, &pr);
        if (st) break;
      }
      json_decref(obj);
    }
    st = finish_record(&t, st, &pr, &ex, &loc, l.line, l.len);
    if (st) goto out;
  }
out:
  tabular_free(&t);
  sw_free(data);
  return st;
}
