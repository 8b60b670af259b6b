/* Drift: live inputs against the training split's statistics (stats.json). A window of
 * recent records is kept as counts per "cell" of each feature, cells being the regions
 * the recorded quantiles (or top values) cut the line into, so PSI, JS and the KS bound
 * come out of running sums without keeping any value. docs/MONITORING.md has the math. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"

#define DEFAULT_WINDOW 2000
#define READY_RECORDS 100
#define KS_ALPHA 0.05
#define MAX_EDGES 11 /* deciles: q0 (min) .. q10 (max) */
#define MAX_TOP 64
/* cells of one feature: 2k+1 for k <= 11 distinct deciles, or top values + other */
#define MAX_CELLS (2 * MAX_EDGES + 1 > MAX_TOP + 1 ? 2 * MAX_EDGES + 1 : MAX_TOP + 1)

typedef enum { FEAT_NUMERIC, FEAT_IMAGE, FEAT_CATEGORICAL } feat_kind;

/* One feature's reference.
 * Numeric: the distinct decile values u[0..k-1] cut the line into 2k+1 cells:
 *   cell 2i   : u[i-1] < v < u[i]   (cell 0: v < u[0])
 *   cell 2i+1 : v == u[i]
 *   cell 2k   : v > u[k-1]
 * PSI/JS bins are the right-closed intervals between the distinct interior deciles
 * q1..q9: (-inf, e0], (e0, e1], ..., (e_last, inf); every cell lies in one bin.
 * Categorical: one cell per top value, then "other". */
typedef struct {
  char *name;
  feat_kind kind;
  int n_cells, n_bins;
  int cell_bin[MAX_CELLS];
  double expected[MAX_TOP + 1];     /* per bin: training proportion */
  /* numeric */
  int k;
  double u[MAX_EDGES];
  double q[MAX_EDGES];              /* the 11 recorded deciles */
  int q_cell[MAX_EDGES];            /* decile d's value is u[q_cell[d]] */
  double train_records;             /* records with the feature in training */
  /* categorical */
  char **top;
  int n_top;
} feat_ref;

struct sw_drift_reference {
  feat_ref *f;
  size_t n;
  int total_cells;
  int *cell_offset; /* per feature: its first cell in a record's row */
};

struct sw_drift_window {
  const sw_drift_reference *ref;
  int64_t capacity, records, next;
  uint32_t *rows;   /* capacity rows of total_cells counts */
  uint64_t *sum;    /* total_cells running sums over the window */
  int64_t *present; /* per feature: records in the window with it */
  uint32_t *scratch;
};

/* ---- the statistics --------------------------------------------------------------- */

static double clean(double p) { return p > 0 ? p : SW_DRIFT_EMPTY_BIN; }

double sw_drift_psi(const double *expected, const double *actual, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double e = clean(expected[i]), a = clean(actual[i]);
    s += (a - e) * log(a / e);
  }
  return s;
}

double sw_drift_js(const double *expected, const double *actual, size_t n) {
  double se = 0, sa = 0, d = 0;
  for (size_t i = 0; i < n; i++) {
    se += clean(expected[i]);
    sa += clean(actual[i]);
  }
  for (size_t i = 0; i < n; i++) {
    double p = clean(expected[i]) / se, q = clean(actual[i]) / sa, m = (p + q) / 2;
    d += p * log(p / m) + q * log(q / m);
  }
  d /= 2;
  return d > 0 ? sqrt(d) : 0;
}

/* Kolmogorov's limiting survival function Q(x) = 2 sum_{j>=1} (-1)^{j-1} exp(-2 j^2 x^2);
 * for small x the series converges slowly, so use the dual form
 * 1 - sqrt(2 pi)/x sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 x^2)). */
static double kolmogorov_sf(double x) {
  if (!(x > 0)) return 1.0;
  if (x < 1.0) {
    double s = 0;
    for (int j = 1; j <= 8; j++) {
      double t = (2.0 * j - 1) * M_PI;
      s += exp(-t * t / (8 * x * x));
    }
    double p = 1 - sqrt(2 * M_PI) / x * s;
    return p < 0 ? 0 : p > 1 ? 1 : p;
  }
  double s = 0, sign = 1;
  for (int j = 1; j <= 100; j++) {
    double term = exp(-2.0 * j * j * x * x);
    s += sign * term;
    if (term < 1e-300) break;
    sign = -sign;
  }
  double p = 2 * s;
  return p < 0 ? 0 : p > 1 ? 1 : p;
}

double sw_ks_pvalue(double d, double n) {
  if (!(n > 0)) return 1.0;
  return kolmogorov_sf(sqrt(n) * d);
}

/* ---- the reference ------------------------------------------------------------------ */

static void feat_ref_clear(feat_ref *f) {
  sw_free(f->name);
  for (int i = 0; i < f->n_top; i++) sw_free(f->top[i]);
  sw_free(f->top);
}

void sw_drift_reference_free(sw_drift_reference *ref) {
  if (!ref) return;
  for (size_t i = 0; i < ref->n; i++) feat_ref_clear(&ref->f[i]);
  sw_free(ref->f);
  sw_free(ref->cell_offset);
  sw_free(ref);
}

size_t sw_drift_reference_features(const sw_drift_reference *ref) { return ref ? ref->n : 0; }

/* Numeric reference from 11 deciles (see feat_ref). The training CDF at a distinct
 * interior decile e is taken as d/10 for the largest d with q_d == e: with prep's
 * rank-based deciles, F(e) lies between that and the next decile's level. */
static sw_status numeric_ref(feat_ref *f, const json_t *q) {
  for (int d = 0; d < MAX_EDGES; d++) {
    const json_t *v = json_array_get(q, (size_t)d);
    if (!json_is_number(v)) return sw_error(SW_STATUS_FORMAT, "stats.json: feature '%s': quantiles are not 11 numbers", f->name);
    f->q[d] = json_number_value(v);
    if (d && f->q[d] < f->q[d - 1])
      return sw_error(SW_STATUS_FORMAT, "stats.json: feature '%s': quantiles decrease", f->name);
  }
  f->k = 0;
  for (int d = 0; d < MAX_EDGES; d++) {
    if (!f->k || f->q[d] != f->u[f->k - 1]) f->u[f->k++] = f->q[d];
    f->q_cell[d] = f->k - 1;
  }
  f->n_cells = 2 * f->k + 1;
  /* interior edges and their CDF levels */
  double e[MAX_EDGES], cdf[MAX_EDGES + 1];
  int ne = 0;
  for (int d = 1; d <= 9; d++) {
    if (ne && f->q[d] == e[ne - 1]) continue;
    e[ne++] = f->q[d];
  }
  for (int b = 0; b < ne; b++) {
    int last = 0;
    for (int d = 0; d < MAX_EDGES; d++)
      if (f->q[d] == e[b]) last = d;
    cdf[b] = last / 10.0;
  }
  f->n_bins = ne + 1;
  for (int b = 0; b < f->n_bins; b++) {
    double hi = b < ne ? cdf[b] : 1.0, lo = b ? cdf[b - 1] : 0.0;
    f->expected[b] = hi - lo;
  }
  /* which bin each cell lies in: the number of interior edges below the cell's values */
  for (int c = 0; c < f->n_cells; c++) {
    int bin = 0;
    if (c % 2 == 1) { /* v == u[c/2] */
      double v = f->u[c / 2];
      for (int b = 0; b < ne; b++) bin += e[b] < v;
    } else if (c > 0) { /* u[c/2-1] < v (< u[c/2]) */
      double lo = f->u[c / 2 - 1];
      for (int b = 0; b < ne; b++) bin += e[b] <= lo;
    }
    f->cell_bin[c] = bin;
  }
  return SW_STATUS_OK;
}

static sw_status categorical_ref(feat_ref *f, const json_t *st) {
  const json_t *top = json_object_get(st, "top_values");
  size_t n = json_array_size(top);
  if (n > MAX_TOP) n = MAX_TOP;
  double total = (double)json_integer_value(json_object_get(st, "count")), sum = 0;
  f->top = sw_calloc(n ? n : 1, sizeof *f->top);
  if (!f->top) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const json_t *t = json_array_get(top, i);
    const char *v = json_string_value(json_object_get(t, "value"));
    const json_t *c = json_object_get(t, "count");
    if (!v || !json_is_integer(c))
      return sw_error(SW_STATUS_FORMAT, "stats.json: feature '%s': top_values[%zu] needs a value and a count", f->name, i);
    if (!(f->top[f->n_top++] = sw_strdup(v))) return sw_error(SW_STATUS_NOMEM, "out of memory");
    f->expected[i] = (double)json_integer_value(c);
    sum += f->expected[i];
  }
  if (total < sum) total = sum;
  if (!(total > 0)) return sw_error(SW_STATUS_FORMAT, "stats.json: feature '%s': no values counted", f->name);
  for (size_t i = 0; i < n; i++) {
    f->expected[i] /= total;
    f->cell_bin[i] = (int)i;
  }
  f->expected[n] = (total - sum) / total;
  f->cell_bin[n] = (int)n;
  f->n_cells = f->n_bins = (int)n + 1;
  return SW_STATUS_OK;
}

sw_status sw_drift_reference_from_stats(const json_t *stats, const char *split, const char *label,
                                        sw_drift_reference **out) {
  *out = NULL;
  if (!split) split = "train";
  const json_t *feats = json_object_get(json_object_get(json_object_get(stats, "splits"), split), "features");
  if (!json_is_object(feats)) return sw_error(SW_STATUS_NOT_FOUND, "stats.json has no features for split '%s'", split);
  sw_status st = SW_STATUS_OK;
  sw_drift_reference *ref = sw_calloc(1, sizeof *ref);
  size_t cap = json_object_size(feats);
  if (ref) ref->f = sw_calloc(cap ? cap : 1, sizeof *ref->f);
  if (ref) ref->cell_offset = sw_calloc(cap ? cap : 1, sizeof *ref->cell_offset);
  if (!ref || !ref->f || !ref->cell_offset) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto cleanup;
  }
  const char *name;
  const json_t *fs;
  json_object_foreach((json_t *)feats, name, fs) {
    if (label && !strcmp(name, label)) continue;
    const char *type = json_string_value(json_object_get(fs, "type"));
    const json_t *q = json_object_get(fs, "quantiles");
    bool numeric = json_is_array(q), categorical = type && !strcmp(type, "bytes") && json_is_array(json_object_get(fs, "top_values"));
    /* nothing recorded to compare with: no values in training, or of no usable kind */
    if (categorical && json_array_size(json_object_get(fs, "top_values")) == 0) continue;
    if (!numeric && !categorical) continue;
    feat_ref *f = &ref->f[ref->n];
    memset(f, 0, sizeof *f);
    if (!(f->name = sw_strdup(name))) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto cleanup;
    }
    ref->n++;
    f->train_records = (double)json_integer_value(json_object_get(fs, "count"));
    if (numeric) {
      f->kind = type && !strcmp(type, "image") ? FEAT_IMAGE : FEAT_NUMERIC;
      st = numeric_ref(f, q);
    } else {
      f->kind = FEAT_CATEGORICAL;
      st = categorical_ref(f, fs);
    }
    if (st) goto cleanup;
    ref->cell_offset[ref->n - 1] = ref->total_cells;
    ref->total_cells += f->n_cells;
  }
cleanup:
  if (st) sw_drift_reference_free(ref);
  else *out = ref;
  return st;
}

sw_status sw_drift_reference_load(const char *data_dir, const char *split, sw_drift_reference **out) {
  *out = NULL;
  char *sp = sw_path_join(data_dir, "stats.json"), *sc = sw_path_join(data_dir, "schema.json");
  json_t *stats = NULL, *schema = NULL;
  sw_status st = sp && sc ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw_json_load_file(sp, &stats);
  /* without a schema every feature is checked; with one, its label is left out */
  if (!st && sw_path_exists(sc)) st = sw_json_load_file(sc, &schema);
  if (!st) st = sw_drift_reference_from_stats(stats, split, json_string_value(json_object_get(schema, "label")), out);
  if (st) sw_error_prefix(st, "%s: ", data_dir);
  json_decref(stats);
  json_decref(schema);
  sw_free(sp);
  sw_free(sc);
  return st;
}

/* ---- the window --------------------------------------------------------------------- */

sw_status sw_drift_window_new(const sw_drift_reference *ref, int64_t capacity, sw_drift_window **out) {
  *out = NULL;
  if (capacity <= 0) capacity = DEFAULT_WINDOW;
  size_t cells = (size_t)(ref->total_cells ? ref->total_cells : 1);
  sw_drift_window *w = sw_calloc(1, sizeof *w);
  if (w) {
    w->ref = ref;
    w->capacity = capacity;
    w->rows = sw_calloc((size_t)capacity * cells, sizeof *w->rows);
    w->sum = sw_calloc(cells, sizeof *w->sum);
    w->scratch = sw_calloc(cells, sizeof *w->scratch);
    w->present = sw_calloc(ref->n ? ref->n : 1, sizeof *w->present);
  }
  if (!w || !w->rows || !w->sum || !w->scratch || !w->present) {
    sw_drift_window_free(w);
    return sw_error(SW_STATUS_NOMEM, "out of memory for a drift window of %lld records", (long long)capacity);
  }
  *out = w;
  return SW_STATUS_OK;
}

void sw_drift_window_free(sw_drift_window *w) {
  if (!w) return;
  sw_free(w->rows);
  sw_free(w->sum);
  sw_free(w->scratch);
  sw_free(w->present);
  sw_free(w);
}

int64_t sw_drift_window_records(const sw_drift_window *w) { return w ? w->records : 0; }

static void commit_record(sw_drift_window *w);

static int numeric_cell(const feat_ref *f, double v) {
  int lo = 0, hi = f->k; /* first u[i] >= v */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (f->u[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < f->k && f->u[lo] == v ? 2 * lo + 1 : 2 * lo;
}

/* Counts a (nested) array or a number into cells; the depth guard keeps a hostile body
 * from recursing without bound. */
static sw_status count_numbers(const feat_ref *f, const json_t *v, uint32_t *cells, int depth) {
  if (json_is_number(v)) {
    double x = json_number_value(v);
    if (!isfinite(x)) return sw_error(SW_STATUS_INVALID, "feature '%s': a value is not finite", f->name);
    cells[numeric_cell(f, x)]++;
    return SW_STATUS_OK;
  }
  if (!json_is_array(v) || depth > 8)
    return sw_error(SW_STATUS_INVALID, "feature '%s': expected a number or an array of numbers", f->name);
  size_t i;
  const json_t *e;
  json_array_foreach(v, i, e) {
    sw_status st = count_numbers(f, e, cells, depth + 1);
    if (st) return st;
  }
  return SW_STATUS_OK;
}

static sw_status count_strings(const feat_ref *f, const json_t *v, uint32_t *cells) {
  const json_t *one = v;
  size_t n = json_is_array(v) ? json_array_size(v) : 1;
  for (size_t i = 0; i < n; i++) {
    if (json_is_array(v)) one = json_array_get(v, i);
    const char *s = json_string_value(one);
    if (!s) return sw_error(SW_STATUS_INVALID, "feature '%s': expected a string", f->name);
    int c = f->n_top;
    for (int t = 0; t < f->n_top; t++)
      if (!strcmp(f->top[t], s)) {
        c = t;
        break;
      }
    cells[c]++;
  }
  return SW_STATUS_OK;
}

sw_status sw_drift_window_add(sw_drift_window *w, const json_t *instance) {
  const sw_drift_reference *ref = w->ref;
  /* a model with one input takes bare values ({"instances": [[...pixels...]]}) */
  bool bare = !json_is_object(instance);
  if (bare && ref->n != 1)
    return sw_error(SW_STATUS_INVALID, "an instance must be a JSON object of features when %zu features are checked", ref->n);
  memset(w->scratch, 0, (size_t)ref->total_cells * sizeof *w->scratch);
  for (size_t i = 0; i < ref->n; i++) {
    const feat_ref *f = &ref->f[i];
    const json_t *v = bare ? instance : json_object_get(instance, f->name);
    if (!v || json_is_null(v)) continue;
    uint32_t *cells = w->scratch + ref->cell_offset[i];
    sw_status st = f->kind == FEAT_CATEGORICAL ? count_strings(f, v, cells) : count_numbers(f, v, cells, 0);
    if (st) return st;
  }
  commit_record(w);
  return SW_STATUS_OK;
}

/* Moves the record counted in w->scratch into the ring, dropping the oldest when full. */
static void commit_record(sw_drift_window *w) {
  const sw_drift_reference *ref = w->ref;
  uint32_t *row = w->rows + (size_t)w->next * (size_t)ref->total_cells;
  for (size_t i = 0; i < ref->n; i++) {
    const feat_ref *f = &ref->f[i];
    int off = ref->cell_offset[i];
    uint64_t old = 0, now = 0;
    for (int c = 0; c < f->n_cells; c++) {
      old += row[off + c];
      now += w->scratch[off + c];
    }
    if (w->records == w->capacity && old) w->present[i]--;
    if (now) w->present[i]++;
  }
  for (int c = 0; c < ref->total_cells; c++) {
    if (w->records == w->capacity) w->sum[c] -= row[c];
    w->sum[c] += w->scratch[c];
    row[c] = w->scratch[c];
  }
  w->next = (w->next + 1) % w->capacity;
  if (w->records < w->capacity) w->records++;
}

const char *sw_drift_reference_feature(const sw_drift_reference *ref, size_t i, bool *numeric) {
  if (!ref || i >= ref->n) return NULL;
  if (numeric) *numeric = ref->f[i].kind != FEAT_CATEGORICAL;
  return ref->f[i].name;
}

sw_status sw_drift_window_add_numbers(sw_drift_window *w, size_t n, const char *const *names, const float *const *values,
                                      const size_t *counts) {
  const sw_drift_reference *ref = w->ref;
  memset(w->scratch, 0, (size_t)ref->total_cells * sizeof *w->scratch);
  for (size_t j = 0; j < n; j++) {
    size_t i = ref->n;
    if (!names[j] && ref->n == 1) i = 0; /* a one-feature reference takes a bare input */
    for (size_t k = 0; names[j] && k < ref->n && i == ref->n; k++)
      if (!strcmp(ref->f[k].name, names[j])) i = k;
    if (i == ref->n) continue; /* not a checked feature */
    const feat_ref *f = &ref->f[i];
    if (f->kind == FEAT_CATEGORICAL)
      return sw_error(SW_STATUS_INVALID, "feature '%s': expected strings, not numbers", f->name);
    uint32_t *cells = w->scratch + ref->cell_offset[i];
    for (size_t v = 0; v < counts[j]; v++) {
      double x = values[j][v];
      if (!isfinite(x)) return sw_error(SW_STATUS_INVALID, "feature '%s': a value is not finite", f->name);
      cells[numeric_cell(f, x)]++;
    }
  }
  commit_record(w);
  return SW_STATUS_OK;
}

/* ---- the judgement ------------------------------------------------------------------ */

typedef struct {
  double psi, js, ks_d, ks_p;
  bool has_ks;
  uint64_t values;
} feat_result;

/* The KS statistic against the training CDF, as far as the deciles tell it: prep's
 * decile q_d satisfies F(q_d-) <= d/10 <= F(q_d), so at each decile the live CDF's
 * distance from the training one is at least d/10 - Fn(q_d) and Fn(q_d-) - d/10. The
 * maximum is a lower bound of the true sup distance (no interpolation guessed), so the
 * p-value computed from it is conservative. */
static double ks_bound(const feat_ref *f, const uint64_t *cells, double total) {
  double d = 0;
  for (int dec = 0; dec < MAX_EDGES; dec++) {
    int i = f->q_cell[dec];
    uint64_t below = 0, upto;
    for (int c = 0; c < 2 * i + 1; c++) below += cells[c];
    upto = below + cells[2 * i + 1];
    double level = dec / 10.0;
    double a = level - (double)upto / total, b = (double)below / total - level;
    if (a > d) d = a;
    if (b > d) d = b;
  }
  return d;
}

static void judge_feature(const sw_drift_window *w, size_t i, feat_result *r) {
  const feat_ref *f = &w->ref->f[i];
  const uint64_t *cells = w->sum + w->ref->cell_offset[i];
  double actual[MAX_TOP + 1] = {0};
  uint64_t total = 0;
  for (int c = 0; c < f->n_cells; c++) total += cells[c];
  r->values = total;
  if (!total) return;
  for (int c = 0; c < f->n_cells; c++) actual[f->cell_bin[c]] += (double)cells[c] / (double)total;
  r->psi = sw_drift_psi(f->expected, actual, (size_t)f->n_bins);
  r->js = sw_drift_js(f->expected, actual, (size_t)f->n_bins);
  if (f->kind != FEAT_CATEGORICAL) {
    r->has_ks = true;
    r->ks_d = ks_bound(f, cells, (double)total);
    /* the sample size is the records, not the values: an image's pixels are not
     * independent draws; the training side's size enters as in the two-sample test */
    double n = (double)w->present[i], m = f->train_records;
    double ne = m > 0 ? n * m / (n + m) : n;
    r->ks_p = sw_ks_pvalue(r->ks_d, ne);
  }
}

static const char *kind_name(feat_kind k) {
  return k == FEAT_IMAGE ? "image" : k == FEAT_CATEGORICAL ? "categorical" : "numeric";
}

sw_status sw_drift_compute(const sw_drift_window *w, const sw_monitor_policy *policy, json_t **report) {
  *report = NULL;
  const sw_drift_reference *ref = w->ref;
  double psi_t = policy ? policy->drift_psi : 0.1, js_t = policy ? policy->drift_js : 0.1;
  double share_t = policy ? policy->drift_share : 0.5;
  sw_status st = SW_STATUS_OK;
  feat_result *res = sw_calloc(ref->n ? ref->n : 1, sizeof *res);
  size_t *order = sw_calloc(ref->n ? ref->n : 1, sizeof *order);
  json_t *feats = json_object(), *worst = json_array(), *out = NULL;
  if (!res || !order || !feats || !worst) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto cleanup;
  }
  size_t n_ks = 0, checked = 0, drifting = 0, n_order = 0;
  for (size_t i = 0; i < ref->n; i++) {
    judge_feature(w, i, &res[i]);
    n_ks += res[i].has_ks;
  }
  for (size_t i = 0; i < ref->n; i++) {
    const feat_result *r = &res[i];
    if (!r->values) continue;
    checked++;
    json_t *reasons = json_array(), *o = json_pack("{s:s, s:I, s:I, s:f, s:f}", "kind", kind_name(ref->f[i].kind),
                                                     "records", (json_int_t)w->present[i], "values", (json_int_t)r->values,
                                                     "psi", r->psi, "js", r->js);
    if (!o || !reasons) {
      json_decref(o);
      json_decref(reasons);
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto cleanup;
    }
    bool drift = false;
    if (r->psi >= psi_t) {
      drift = true;
      json_array_append_new(reasons, json_sprintf("psi %.4f >= %g", r->psi, psi_t));
    }
    if (r->js >= js_t) {
      drift = true;
      json_array_append_new(reasons, json_sprintf("js %.4f >= %g", r->js, js_t));
    }
    if (r->has_ks) {
      double adj = fmin(1.0, r->ks_p * (double)n_ks);
      json_object_set_new(o, "ks_d", json_real(r->ks_d));
      json_object_set_new(o, "ks_p", json_real(r->ks_p));
      json_object_set_new(o, "ks_p_bonferroni", json_real(adj));
      if (adj < KS_ALPHA) {
        drift = true;
        json_array_append_new(reasons, json_sprintf("ks p %.3g < %g (Bonferroni over %zu)", adj, KS_ALPHA, n_ks));
      }
    }
    json_object_set_new(o, "drift", json_boolean(drift));
    json_object_set_new(o, "reasons", reasons);
    json_object_set_new(feats, ref->f[i].name, o);
    if (drift) {
      drifting++;
      order[n_order++] = i;
    }
  }
  /* the worst drifting features by PSI (insertion sort: a handful of features) */
  for (size_t a = 1; a < n_order; a++)
    for (size_t b = a; b > 0 && res[order[b]].psi > res[order[b - 1]].psi; b--) {
      size_t t = order[b];
      order[b] = order[b - 1];
      order[b - 1] = t;
    }
  for (size_t a = 0; a < n_order && a < 3; a++) json_array_append_new(worst, json_string(ref->f[order[a]].name));
  int64_t need = w->capacity < READY_RECORDS ? w->capacity : READY_RECORDS;
  bool ready = w->records >= need;
  double share = checked ? (double)drifting / (double)checked : 0;
  out = json_pack("{s:I, s:I, s:b, s:O, s:I, s:I, s:f, s:f, s:b, s:O}", "records", (json_int_t)w->records, "window",
                  (json_int_t)w->capacity, "ready", ready, "features", feats, "checked", (json_int_t)checked, "drifting",
                  (json_int_t)drifting, "share", share, "threshold_share", share_t, "drift",
                  ready && checked && share >= share_t, "worst", worst);
  if (!out) st = sw_error(SW_STATUS_NOMEM, "out of memory");
cleanup:
  *report = out;
  json_decref(feats);
  json_decref(worst);
  sw_free(res);
  sw_free(order);
  return st;
}
