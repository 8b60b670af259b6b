/* Statistics per split and feature (stats.json) and the transform derived from the
 * training split (manifest.json). The training split's statistics are the reference
 * that drift checks compare live inputs with, so they describe raw values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

#define QUANTILE_SAMPLE_MAX 1000000
#define HIST_BINS 10
#define TOP_VALUES 10

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Running moments, summed in record order so results are reproducible. */
typedef struct {
  uint64_t n;
  double sum, sumsq, min, max;
} moments;

static void moments_add(moments *m, double v, uint64_t times) {
  if (m->n == 0 || v < m->min) m->min = v;
  if (m->n == 0 || v > m->max) m->max = v;
  m->n += times;
  m->sum += v * (double)times;
  m->sumsq += v * v * (double)times;
}

static json_t *num(double v) { return json_real(v); }

static void put_moments(json_t *o, const moments *m) {
  double mean = m->n ? m->sum / (double)m->n : 0;
  double var = m->n ? m->sumsq / (double)m->n - mean * mean : 0;
  if (var < 0) var = 0;
  json_object_set_new(o, "values", json_integer((json_int_t)m->n));
  if (!m->n) return;
  json_object_set_new(o, "min", num(m->min));
  json_object_set_new(o, "max", num(m->max));
  json_object_set_new(o, "mean", num(mean));
  json_object_set_new(o, "std", num(sqrt(var)));
}

static json_t *histogram_from(const double *lo_hi, const uint64_t *counts) {
  json_t *edges = json_array(), *c = json_array();
  for (int b = 0; b <= HIST_BINS; b++)
    json_array_append_new(edges, num(lo_hi[0] + (lo_hi[1] - lo_hi[0]) * b / HIST_BINS));
  for (int b = 0; b < HIST_BINS; b++) json_array_append_new(c, json_integer((json_int_t)counts[b]));
  return json_pack("{s:o, s:o}", "edges", edges, "counts", c);
}

static int hist_bin(double v, double lo, double hi) {
  if (!(hi > lo)) return 0;
  int b = (int)((v - lo) / (hi - lo) * HIST_BINS);
  return b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b;
}

static double feature_value(const sw_feature *f, size_t k) {
  return f->kind == SW_FEATURE_KIND_FLOAT ? (double)f->v.f32[k] : (double)f->v.i64[k];
}

/* Numeric features: moments over every value, quantile edges (deciles) from the sorted
 * values, or an even-stride sample of at most a million of them, and a histogram. */
static json_t *numeric_stats(const sw__prep *p, int split, const sw_feature_spec *fs) {
  json_t *o = json_object();
  moments m = {0};
  uint64_t present = 0, missing = 0;
  for (size_t i = 0; i < p->n_records; i++) {
    const sw__record *r = &p->records[i];
    if (r->quarantined || r->split != split) continue;
    const sw_feature *f = sw_example_find(&r->ex, fs->name);
    if (!f || !f->count) {
      missing++;
      continue;
    }
    present++;
    for (size_t k = 0; k < f->count; k++) moments_add(&m, feature_value(f, k), 1);
  }
  json_object_set_new(o, "count", json_integer((json_int_t)present));
  json_object_set_new(o, "missing", json_integer((json_int_t)missing));
  put_moments(o, &m);
  if (!m.n) return o;
  uint64_t stride = (m.n + QUANTILE_SAMPLE_MAX - 1) / QUANTILE_SAMPLE_MAX;
  size_t cap = (size_t)(m.n / stride + 1);
  double *sample = sw_malloc(cap * sizeof *sample);
  uint64_t hist[HIST_BINS] = {0};
  if (!sample) return o;
  size_t ns = 0;
  uint64_t idx = 0;
  for (size_t i = 0; i < p->n_records; i++) {
    const sw__record *r = &p->records[i];
    if (r->quarantined || r->split != split) continue;
    const sw_feature *f = sw_example_find(&r->ex, fs->name);
    if (!f) continue;
    for (size_t k = 0; k < f->count; k++, idx++) {
      double v = feature_value(f, k);
      hist[hist_bin(v, m.min, m.max)]++;
      if (idx % stride == 0 && ns < cap) sample[ns++] = v;
    }
  }
  qsort(sample, ns, sizeof *sample, cmp_double);
  json_t *q = json_array();
  for (int d = 0; d <= 10; d++) {
    size_t at = (size_t)llround((double)(ns - 1) * d / 10.0);
    json_array_append_new(q, num(sample[at]));
  }
  json_object_set_new(o, "quantiles", q);
  if (stride > 1) json_object_set_new(o, "quantile_sample", json_integer((json_int_t)ns));
  double lohi[2] = {m.min, m.max};
  json_object_set_new(o, "histogram", histogram_from(lohi, hist));
  sw_free(sample);
  return o;
}

/* Images: exact statistics of the pixel values from a 256-bin count. */
static json_t *image_stats(const sw__prep *p, int split, const sw_feature_spec *fs) {
  json_t *o = json_object();
  uint64_t counts[256] = {0}, present = 0, missing = 0;
  for (size_t i = 0; i < p->n_records; i++) {
    const sw__record *r = &p->records[i];
    if (r->quarantined || r->split != split) continue;
    const sw_feature *f = sw_example_find(&r->ex, fs->name);
    if (!f || !f->count) {
      missing++;
      continue;
    }
    present++;
    const uint8_t *px = f->v.bytes[0].data;
    for (size_t k = 0; k < f->v.bytes[0].len; k++) counts[px[k]]++;
  }
  json_object_set_new(o, "count", json_integer((json_int_t)present));
  json_object_set_new(o, "missing", json_integer((json_int_t)missing));
  moments m = {0};
  for (int v = 0; v < 256; v++)
    if (counts[v]) moments_add(&m, v, counts[v]);
  put_moments(o, &m);
  if (!m.n) return o;
  json_t *q = json_array();
  for (int d = 0; d <= 10; d++) {
    uint64_t rank = (uint64_t)llround((double)(m.n - 1) * d / 10.0), seen = 0;
    int v = 0;
    for (; v < 256; v++) {
      seen += counts[v];
      if (seen > rank) break;
    }
    json_array_append_new(q, num(v));
  }
  json_object_set_new(o, "quantiles", q);
  uint64_t hist[HIST_BINS] = {0};
  for (int v = 0; v < 256; v++) hist[hist_bin(v, m.min, m.max)] += counts[v];
  double lohi[2] = {m.min, m.max};
  json_object_set_new(o, "histogram", histogram_from(lohi, hist));
  return o;
}

static int cmp_top(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  json_int_t cx = json_integer_value(json_object_get(x, "count"));
  json_int_t cy = json_integer_value(json_object_get(y, "count"));
  if (cx != cy) return cx < cy ? 1 : -1;
  return strcmp(json_string_value(json_object_get(x, "value")), json_string_value(json_object_get(y, "value")));
}

/* Strings: distinct values and the most frequent ones (UTF-8 values only). */
static json_t *bytes_stats(const sw__prep *p, int split, const sw_feature_spec *fs) {
  json_t *o = json_object(), *counts = json_object();
  uint64_t present = 0, missing = 0, binary = 0;
  for (size_t i = 0; i < p->n_records; i++) {
    const sw__record *r = &p->records[i];
    if (r->quarantined || r->split != split) continue;
    const sw_feature *f = sw_example_find(&r->ex, fs->name);
    if (!f || !f->count) {
      missing++;
      continue;
    }
    present++;
    for (size_t k = 0; k < f->count; k++) {
      const sw_bytes *b = &f->v.bytes[k];
      if (memchr(b->data, 0, b->len) || !sw__utf8_valid(b->data, b->len)) {
        binary++;
        continue;
      }
      const char *key = (const char *)b->data;
      json_object_set_new(counts, key, json_integer(json_integer_value(json_object_get(counts, key)) + 1));
    }
  }
  json_object_set_new(o, "count", json_integer((json_int_t)present));
  json_object_set_new(o, "missing", json_integer((json_int_t)missing));
  json_object_set_new(o, "unique", json_integer((json_int_t)json_object_size(counts)));
  if (binary) json_object_set_new(o, "binary_values", json_integer((json_int_t)binary));
  size_t n = json_object_size(counts), k = 0;
  json_t **items = sw_malloc((n ? n : 1) * sizeof *items);
  if (items) {
    const char *key;
    json_t *val;
    json_object_foreach(counts, key, val) {
      items[k++] = json_pack("{s:s, s:O}", "value", key, "count", val);
    }
    qsort(items, n, sizeof *items, cmp_top);
    json_t *top = json_array();
    for (size_t i = 0; i < n; i++) {
      if (i < TOP_VALUES) json_array_append(top, items[i]);
      json_decref(items[i]);
    }
    json_object_set_new(o, "top_values", top);
    sw_free(items);
  }
  json_decref(counts);
  return o;
}

/* Class counts of an int label with class names. */
static void add_class_counts(const sw__prep *p, int split, const sw_feature_spec *fs, json_t *o) {
  uint64_t *c = sw_calloc(fs->n_classes, sizeof *c);
  if (!c) return;
  for (size_t i = 0; i < p->n_records; i++) {
    const sw__record *r = &p->records[i];
    if (r->quarantined || r->split != split) continue;
    const sw_feature *f = sw_example_find(&r->ex, fs->name);
    if (f && f->count == 1 && f->v.i64[0] >= 0 && f->v.i64[0] < (int64_t)fs->n_classes) c[f->v.i64[0]]++;
  }
  json_t *arr = json_array();
  for (size_t k = 0; k < fs->n_classes; k++)
    json_array_append_new(arr, json_pack("{s:s, s:I}", "class", fs->class_names[k], "count", (json_int_t)c[k]));
  json_object_set_new(o, "classes", arr);
  sw_free(c);
}

json_t *sw__split_stats(const sw__prep *p, int split) {
  uint64_t n = 0;
  for (size_t i = 0; i < p->n_records; i++)
    if (!p->records[i].quarantined && p->records[i].split == split) n++;
  json_t *feats = json_object();
  for (size_t i = 0; i < p->schema->n_features; i++) {
    const sw_feature_spec *fs = &p->schema->features[i];
    json_t *o;
    if (fs->image) o = image_stats(p, split, fs);
    else if (fs->kind == SW_FEATURE_KIND_BYTES) o = bytes_stats(p, split, fs);
    else o = numeric_stats(p, split, fs);
    json_object_set_new(o, "type", json_string(fs->image ? "image" : sw_feature_kind_name(fs->kind)));
    if (fs->is_label && fs->n_classes && fs->kind == SW_FEATURE_KIND_INT64) add_class_counts(p, split, fs, o);
    json_object_set_new(feats, fs->name, o);
  }
  return json_pack("{s:I, s:o}", "examples", (json_int_t)n, "features", feats);
}

json_t *sw__transform(const sw__prep *p, const json_t *train_stats) {
  json_t *feats = json_object();
  const json_t *fstats = json_object_get(train_stats, "features");
  for (size_t i = 0; i < p->schema->n_features; i++) {
    const sw_feature_spec *fs = &p->schema->features[i];
    if (fs->is_label) continue;
    const json_t *st = json_object_get(fstats, fs->name);
    json_t *t = NULL;
    if (fs->image) {
      t = json_pack("{s:s, s:f, s:f}", "kind", "scale", "scale", 1.0 / 255.0, "offset", 0.0);
    } else if (fs->kind == SW_FEATURE_KIND_BYTES) {
      if (fs->n_values) {
        json_t *v = json_array();
        for (size_t k = 0; k < fs->n_values; k++) json_array_append_new(v, json_string(fs->values[k]));
        t = json_pack("{s:s, s:o, s:i}", "kind", "vocabulary", "values", v, "unknown", -1);
      }
    } else {
      double mean = json_real_value(json_object_get(st, "mean"));
      double sd = json_real_value(json_object_get(st, "std"));
      if (!(sd > 0)) sd = 1.0;
      t = json_pack("{s:s, s:f, s:f}", "kind", "standardize", "mean", mean, "std", sd);
    }
    if (t) json_object_set_new(feats, fs->name, t);
  }
  return json_pack("{s:s, s:o}", "applied_by", "model", "features", feats);
}
