/* The load generator behind `slipway loadgen`: examples of a dataset split replayed at
 * Poisson arrival times against a model server, on one thread driving libcurl's multi
 * interface (no thread per request), with latency measured from each request's scheduled
 * time so a client that falls behind shows it (no coordinated omission), the labels
 * posted back as feedback, and a report. docs/LOADGEN.md describes it for users. */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "slipway/data.h"
#include "slipway/loadgen.h"
#include "slipway/serve.h"

/* ---- the pieces: arrivals, percentiles ------------------------------------------------ */

void sw_poisson_init(sw_poisson *p, double rate, uint64_t seed) {
  sw_rng_init(&p->rng, seed, 0);
  p->rate = rate;
  p->t = 0;
}

double sw_poisson_next(sw_poisson *p) {
  /* inverse transform of an exponential gap; 1 - u is in (0, 1], so the log is finite,
   * and a zero gap is nudged so times strictly increase */
  double gap = -log(1.0 - sw_rng_uniform(&p->rng)) / p->rate;
  double t = p->t + gap;
  p->t = t > p->t ? t : nextafter(p->t, INFINITY);
  return p->t;
}

double sw_loadgen_percentile(const double *sorted, size_t n, double q) {
  if (n == 0) return NAN;
  if (!(q > 0)) return sorted[0];
  if (q >= 1) return sorted[n - 1];
  /* nearest rank: ceil(q * n), 1-based; the epsilon keeps 0.9 * 10 from reading as 9.000001 */
  double r = ceil(q * (double)n - 1e-9);
  size_t rank = r < 1 ? 1 : (size_t)r;
  return sorted[(rank > n ? n : rank) - 1];
}

/* ---- parsers of the server's answers ---------------------------------------------- */

static bool copy_name(char dst[256], const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (!src || n >= 256) return false;
  memcpy(dst, src, n + 1);
  return true;
}

static sw_status set_shape(sw_loadgen_input *in, const int64_t *dims, int n_dims, const char *where) {
  /* dims[0] is the batch dimension */
  if (n_dims < 1 || n_dims - 1 > SW_LOADGEN_MAX_RANK)
    return sw_error(SW_STATUS_FORMAT, "%s: input '%s' has %d dimensions", where, in->name, n_dims);
  in->rank = n_dims - 1;
  in->per = 1;
  for (int d = 1; d < n_dims; d++) {
    if (dims[d] < 0 || dims[d] > (1 << 24))
      return sw_error(SW_STATUS_FORMAT, "%s: input '%s' has a variable or huge dimension (%lld)", where, in->name,
                      (long long)dims[d]);
    in->shape[d - 1] = dims[d];
    in->per *= dims[d];
    if (in->per > (1 << 24)) return sw_error(SW_STATUS_FORMAT, "%s: input '%s' is too large", where, in->name);
  }
  return SW_STATUS_OK;
}

static sw_status meta_v1(const json_t *root, sw_loadgen_signature *sig) {
  const json_t *sd = json_object_get(
      json_object_get(json_object_get(json_object_get(root, "metadata"), "signature_def"), "signature_def"),
      "serving_default");
  const json_t *ins = json_object_get(sd, "inputs"), *outs = json_object_get(sd, "outputs");
  if (!json_is_object(ins) || !json_object_size(ins))
    return sw_error(SW_STATUS_FORMAT, "metadata: no metadata.signature_def.signature_def.serving_default.inputs");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)ins, key, v) {
    if (sig->n_in == SW_LOADGEN_MAX_IO) return sw_error(SW_STATUS_FORMAT, "metadata: more than %d inputs", SW_LOADGEN_MAX_IO);
    sw_loadgen_input *in = &sig->in[sig->n_in++];
    if (!copy_name(in->name, key)) return sw_error(SW_STATUS_FORMAT, "metadata: an input name is too long");
    const char *dt = json_string_value(json_object_get(v, "dtype"));
    if (dt && (!strcmp(dt, "DT_FLOAT") || !strcmp(dt, "DT_DOUBLE") || !strcmp(dt, "DT_HALF"))) in->dtype = SW_DTYPE_F32;
    else if (dt && (!strcmp(dt, "DT_INT64") || !strcmp(dt, "DT_INT32"))) in->dtype = SW_DTYPE_I64;
    else return sw_error(SW_STATUS_FORMAT, "metadata: input '%s' has dtype %s (float and integer inputs are sent)", key, dt ? dt : "(none)");
    const json_t *dim = json_object_get(json_object_get(v, "tensor_shape"), "dim");
    int64_t dims[SW_LOADGEN_MAX_RANK + 2];
    int n = 0;
    size_t i;
    const json_t *d;
    if (!json_is_array(dim)) return sw_error(SW_STATUS_FORMAT, "metadata: input '%s' has no tensor_shape.dim", key);
    json_array_foreach(dim, i, d) {
      if (n == SW_LOADGEN_MAX_RANK + 2) return sw_error(SW_STATUS_FORMAT, "metadata: input '%s' has too many dimensions", key);
      const json_t *size = json_object_get(d, "size");
      char *end = NULL;
      if (json_is_integer(size)) dims[n++] = json_integer_value(size);
      else if (json_is_string(size) && *json_string_value(size)) {
        dims[n++] = strtoll(json_string_value(size), &end, 10);
        if (*end) return sw_error(SW_STATUS_FORMAT, "metadata: input '%s' has a dimension that is not a number", key);
      } else
        return sw_error(SW_STATUS_FORMAT, "metadata: input '%s' has a dimension without a size", key);
    }
    sw_status st = set_shape(in, dims, n, "metadata");
    if (st) return st;
  }
  sig->output[0] = '\0';
  if (json_is_object(outs) && json_object_size(outs)) {
    void *it = json_object_iter((json_t *)outs);
    if (!copy_name(sig->output, json_object_iter_key(it))) return sw_error(SW_STATUS_FORMAT, "metadata: an output name is too long");
  }
  return SW_STATUS_OK;
}

static sw_status meta_v2(const json_t *root, sw_loadgen_signature *sig) {
  const json_t *ins = json_object_get(root, "inputs"), *outs = json_object_get(root, "outputs");
  if (!json_is_array(ins) || !json_array_size(ins)) return sw_error(SW_STATUS_FORMAT, "model metadata: no \"inputs\"");
  size_t i;
  const json_t *v;
  json_array_foreach(ins, i, v) {
    if (sig->n_in == SW_LOADGEN_MAX_IO) return sw_error(SW_STATUS_FORMAT, "model metadata: more than %d inputs", SW_LOADGEN_MAX_IO);
    sw_loadgen_input *in = &sig->in[sig->n_in++];
    if (!copy_name(in->name, json_string_value(json_object_get(v, "name"))))
      return sw_error(SW_STATUS_FORMAT, "model metadata: input %zu has no name (or a too long one)", i);
    const char *dt = json_string_value(json_object_get(v, "datatype"));
    if (dt && (!strcmp(dt, "FP32") || !strcmp(dt, "FP64") || !strcmp(dt, "FP16"))) in->dtype = SW_DTYPE_F32;
    else if (dt && (!strcmp(dt, "INT64") || !strcmp(dt, "INT32"))) in->dtype = SW_DTYPE_I64;
    else return sw_error(SW_STATUS_FORMAT, "model metadata: input '%s' has datatype %s", in->name, dt ? dt : "(none)");
    const json_t *shape = json_object_get(v, "shape"), *d;
    int64_t dims[SW_LOADGEN_MAX_RANK + 2];
    int n = 0;
    size_t j;
    if (!json_is_array(shape)) return sw_error(SW_STATUS_FORMAT, "model metadata: input '%s' has no shape", in->name);
    json_array_foreach(shape, j, d) {
      if (n == SW_LOADGEN_MAX_RANK + 2 || !json_is_integer(d))
        return sw_error(SW_STATUS_FORMAT, "model metadata: input '%s' has a bad shape", in->name);
      dims[n++] = json_integer_value(d);
    }
    sw_status st = set_shape(in, dims, n, "model metadata");
    if (st) return st;
  }
  sig->output[0] = '\0';
  const char *out0 = json_string_value(json_object_get(json_array_get(outs, 0), "name"));
  if (out0 && !copy_name(sig->output, out0)) return sw_error(SW_STATUS_FORMAT, "model metadata: an output name is too long");
  return SW_STATUS_OK;
}

sw_status sw_loadgen_parse_metadata(const char *text, size_t len, sw_loadgen_protocol p, sw_loadgen_signature *out) {
  memset(out, 0, sizeof *out);
  json_error_t e;
  json_t *root = json_loadb(text, len, 0, &e);
  if (!root) return sw_error(SW_STATUS_FORMAT, "model metadata is not JSON (line %d: %s)", e.line, e.text);
  sw_status st = p == SW_LOADGEN_V2 ? meta_v2(root, out) : meta_v1(root, out);
  json_decref(root);
  if (st) memset(out, 0, sizeof *out);
  return st;
}

/* Appends the numbers of a (nested) array, or one number, to vals (null: NaN). */
static bool flatten(const json_t *v, double *vals, int64_t cap, int64_t *n, int depth) {
  if (json_is_array(v)) {
    if (depth > 32) return false;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) if (!flatten(e, vals, cap, n, depth + 1)) return false;
    return true;
  }
  if (*n >= cap) return false;
  if (json_is_number(v)) vals[(*n)++] = json_number_value(v);
  else if (json_is_null(v)) vals[(*n)++] = NAN;
  else return false;
  return true;
}

#define SW_LOADGEN_MAX_VALUES (1 << 22)
/* flatten() of v into *vals, doubled (up to SW_LOADGEN_MAX_VALUES) until it fits: FORMAT
 * (the caller says what was wrong) when v is not numbers or has too many, NOMEM. */
static sw_status flatten_all(const json_t *v, double **vals, int64_t *cap, int64_t *got) {
  for (;;) {
    *got = 0;
    if (flatten(v, *vals, *cap, got, 0)) return SW_STATUS_OK;
    if (*got < *cap || *cap >= SW_LOADGEN_MAX_VALUES) return SW_STATUS_FORMAT;
    double *bigger = sw_realloc(*vals, sizeof **vals * (size_t)*cap * 2);
    if (!bigger) return sw_error(SW_STATUS_NOMEM, "out of memory");
    *vals = bigger;
    *cap *= 2;
  }
}

/* The prediction of one example's values: the argmax exactly as `slipway eval` and the
 * server's feedback take it (strictly greater wins, so the first on ties, and nothing
 * beats a NaN in first place), or the value itself when there is one. */
static double predict_of(const double *v, int64_t k) {
  if (k == 1) return v[0];
  int64_t best = 0;
  for (int64_t j = 1; j < k; j++)
    if (v[j] > v[best]) best = j;
  return (double)best;
}

sw_status sw_loadgen_parse_answer(const char *text, size_t len, sw_loadgen_protocol p, const char *output, int64_t rows,
                                  double *pred, int64_t *k) {
  *k = 0;
  if (rows <= 0) return sw_error(SW_STATUS_INVALID, "no rows");
  json_error_t e;
  json_t *root = json_loadb(text, len, 0, &e);
  double *vals = NULL;
  int64_t n = 0, per = 0;
  sw_status st = SW_STATUS_OK;
  if (!root) {
    st = sw_error(SW_STATUS_FORMAT, "the answer is not JSON (line %d: %s)", e.line, e.text);
    goto out;
  }
  vals = sw_malloc(sizeof *vals * 1024);
  int64_t cap = 1024;
  if (!vals) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  if (p == SW_LOADGEN_V1) {
    const json_t *preds = json_object_get(root, "predictions");
    if (!json_is_array(preds) || (int64_t)json_array_size(preds) != rows) {
      st = sw_error(SW_STATUS_FORMAT, "the answer has no \"predictions\" list of %lld entries", (long long)rows);
      goto out;
    }
    for (int64_t i = 0; i < rows; i++) {
      const json_t *row = json_array_get(preds, (size_t)i);
      if (json_is_object(row)) { /* several outputs: the first one's */
        const json_t *o = output && *output ? json_object_get(row, output) : NULL;
        row = o ? o : json_object_iter_value(json_object_iter((json_t *)row));
      }
      int64_t got = 0;
      if ((st = flatten_all(row, &vals, &cap, &got))) {
        if (st == SW_STATUS_FORMAT)
          sw_error(SW_STATUS_FORMAT, "prediction %lld is not a number or a list of numbers", (long long)i);
        goto out;
      }
      if (got == 0 || (i > 0 && got != per)) {
        st = sw_error(SW_STATUS_FORMAT, "prediction %lld has %lld values", (long long)i, (long long)got);
        goto out;
      }
      per = got;
      pred[i] = predict_of(vals, per);
    }
  } else {
    const json_t *outs = json_object_get(root, "outputs"), *o = NULL, *x;
    size_t i;
    json_array_foreach(outs, i, x) {
      const char *name = json_string_value(json_object_get(x, "name"));
      if (!o || (output && *output && name && !strcmp(name, output))) o = x;
    }
    const json_t *data = json_object_get(o, "data");
    if (!o || !json_is_array(data)) {
      st = sw_error(SW_STATUS_FORMAT, "the answer has no \"outputs\" with \"data\"");
      goto out;
    }
    if ((st = flatten_all(data, &vals, &cap, &n))) {
      if (st == SW_STATUS_FORMAT) sw_error(SW_STATUS_FORMAT, "the output's data is not a list of numbers");
      goto out;
    }
    if (n == 0 || n % rows) {
      st = sw_error(SW_STATUS_FORMAT, "the output has %lld values for %lld examples", (long long)n, (long long)rows);
      goto out;
    }
    per = n / rows;
    for (int64_t r = 0; r < rows; r++) pred[r] = predict_of(vals + r * per, per);
  }
  *k = per;
out:
  sw_free(vals);
  json_decref(root);
  return st;
}

sw_status sw_loadgen_parse_feedback_answer(const char *text, size_t len, int64_t counts[5]) {
  static const char *const keys[5] = {"joined", "unknown", "expired", "duplicate", "invalid"};
  json_t *root = json_loadb(text, len, 0, NULL);
  sw_status st = SW_STATUS_OK;
  for (int i = 0; i < 5; i++) counts[i] = 0;
  if (!json_is_object(root)) {
    st = sw_error(SW_STATUS_FORMAT, "the feedback answer is not a JSON object");
    goto out;
  }
  for (int i = 0; i < 5; i++) {
    const json_t *v = json_object_get(root, keys[i]);
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
      st = sw_error(SW_STATUS_FORMAT, "the feedback answer's \"%s\" is not a count", keys[i]);
      goto out;
    }
    counts[i] = v ? json_integer_value(v) : 0;
  }
  if (!json_object_get(root, "joined")) st = sw_error(SW_STATUS_FORMAT, "the feedback answer has no \"joined\" count");
out:
  if (st)
    for (int i = 0; i < 5; i++) counts[i] = 0;
  json_decref(root);
  return st;
}

/* ---- the examples --------------------------------------------------------------------- */

typedef struct {
  sw_dtype dtype; /* the model input's */
  int64_t per;
  void *data;     /* n * per values */
  char *json_name; /* the input's name as a JSON string, quotes included */
} column;

typedef struct {
  size_t n, cap;
  size_t n_cols;
  column cols[SW_LOADGEN_MAX_IO];
  bool has_label, label_int;
  int64_t *label_i;
  double *label_f;
  char **text;       /* per example and column: its values as "v,v,...", made on first use */
  size_t *text_len;
} examples;

static void examples_free(examples *ex) {
  for (size_t k = 0; k < ex->n_cols; k++) {
    sw_free(ex->cols[k].data);
    free(ex->cols[k].json_name); /* jansson's allocator */
  }
  if (ex->text)
    for (size_t i = 0; i < ex->n * ex->n_cols; i++) sw_free(ex->text[i]);
  sw_free(ex->text);
  sw_free(ex->text_len);
  sw_free(ex->label_i);
  sw_free(ex->label_f);
  memset(ex, 0, sizeof *ex);
}

static sw_status examples_grow(examples *ex, size_t need) {
  if (need <= ex->cap) return SW_STATUS_OK;
  size_t cap = ex->cap ? ex->cap : 1024;
  while (cap < need) cap *= 2;
  for (size_t k = 0; k < ex->n_cols; k++) {
    void *d = sw_realloc(ex->cols[k].data, cap * (size_t)ex->cols[k].per * sw_dtype_size(ex->cols[k].dtype));
    if (!d) return sw_error(SW_STATUS_NOMEM, "out of memory");
    ex->cols[k].data = d;
  }
  if (ex->has_label) {
    if (ex->label_int) {
      int64_t *l = sw_realloc(ex->label_i, cap * sizeof *l);
      if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
      ex->label_i = l;
    } else {
      double *l = sw_realloc(ex->label_f, cap * sizeof *l);
      if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
      ex->label_f = l;
    }
  }
  ex->cap = cap;
  return SW_STATUS_OK;
}

/* The dataset feature each model input is fed from: the feature of the input's name,
 * else (one input) the only feature that is not the label, as `slipway eval` does. */
static sw_status map_features(const sw_schema *schema, const sw_loadgen_signature *sig, const char **features) {
  for (size_t k = 0; k < sig->n_in; k++) {
    const sw_feature_spec *fs = sw_schema_find(schema, sig->in[k].name);
    bool is_label = fs && (fs->is_label || (schema->label >= 0 && fs == &schema->features[schema->label]));
    features[k] = fs && !is_label ? fs->name : NULL;
  }
  if (sig->n_in == 1 && !features[0]) {
    size_t count = 0;
    for (size_t i = 0; i < schema->n_features; i++)
      if (!schema->features[i].is_label && (int)i != schema->label) {
        features[0] = schema->features[i].name;
        count++;
      }
    if (count != 1) features[0] = NULL;
  }
  for (size_t k = 0; k < sig->n_in; k++)
    if (!features[k])
      return sw_error(SW_STATUS_INVALID, "the model's input '%s' is not a feature of the dataset (and the dataset has not "
                      "exactly one feature besides the label)", sig->in[k].name);
  return SW_STATUS_OK;
}

/* Reads the whole split into memory, in the dataset's order, converted to the inputs'
 * types. */
static sw_status load_examples(const char *dir, const char *split, const sw_loadgen_signature *sig, examples *ex) {
  sw_dataset *ds = NULL;
  sw_reader *r = NULL;
  const char *features[SW_LOADGEN_MAX_IO];
  sw_status st = sw_dataset_open(dir, &ds);
  if (st) goto out;
  const sw_schema *schema = sw_dataset_schema(ds);
  if (sw_dataset_split_examples(ds, split) < 0) {
    st = sw_error(SW_STATUS_NOT_FOUND, "%s: the dataset has no split '%s'", dir, split);
    goto out;
  }
  st = map_features(schema, sig, features);
  if (st) goto out;
  const char *label = schema->label >= 0 && (size_t)schema->label < schema->n_features ? schema->features[schema->label].name : NULL;
  ex->n_cols = sig->n_in;
  for (size_t k = 0; k < sig->n_in; k++) {
    ex->cols[k].dtype = sig->in[k].dtype;
    ex->cols[k].per = sig->in[k].per;
    json_t *s = json_string(sig->in[k].name);
    ex->cols[k].json_name = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (!ex->cols[k].json_name) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  sw_reader_options ro = {0};
  st = sw_reader_open(ds, split, &ro, &r);
  if (st) goto out;
  const sw_batch *b;
  bool first = true;
  while ((st = sw_reader_next(r, 1024, &b)) == SW_STATUS_OK) {
    const sw_batch_tensor *lt = label ? sw_batch_find(b, label) : NULL;
    if (first) {
      ex->has_label = lt != NULL;
      ex->label_int = lt && lt->dtype == SW_DTYPE_I64;
      if (lt) {
        int64_t per = 1;
        for (int d = 1; d < lt->rank; d++) per *= lt->shape[d];
        if (per != 1) ex->has_label = false;
      }
      first = false;
    }
    st = examples_grow(ex, ex->n + b->n);
    if (st) goto out;
    for (size_t k = 0; k < sig->n_in; k++) {
      const sw_batch_tensor *t = sw_batch_find(b, features[k]);
      int64_t per = 1;
      for (int d = 1; t && d < t->rank; d++) per *= t->shape[d];
      if (!t) {
        st = sw_error(SW_STATUS_INVALID, "feature '%s' (the model's input '%s') has no numeric form in the dataset",
                      features[k], sig->in[k].name);
        goto out;
      }
      if (per != sig->in[k].per) {
        st = sw_error(SW_STATUS_INVALID, "the model's input '%s' takes %lld values per example, feature '%s' has %lld",
                      sig->in[k].name, (long long)sig->in[k].per, features[k], (long long)per);
        goto out;
      }
      size_t count = b->n * (size_t)per;
      if (sig->in[k].dtype == SW_DTYPE_F32) {
        float *dst = (float *)ex->cols[k].data + ex->n * (size_t)per;
        for (size_t i = 0; i < count; i++)
          dst[i] = t->dtype == SW_DTYPE_F32 ? ((const float *)t->data)[i] : (float)((const int64_t *)t->data)[i];
      } else {
        int64_t *dst = (int64_t *)ex->cols[k].data + ex->n * (size_t)per;
        for (size_t i = 0; i < count; i++)
          dst[i] = t->dtype == SW_DTYPE_I64 ? ((const int64_t *)t->data)[i] : (int64_t)((const float *)t->data)[i];
      }
    }
    if (ex->has_label) {
      for (size_t i = 0; i < b->n; i++) {
        if (ex->label_int) ex->label_i[ex->n + i] = ((const int64_t *)lt->data)[i];
        else ex->label_f[ex->n + i] = ((const float *)lt->data)[i];
      }
    }
    ex->n += b->n;
  }
  if (st == SW_STATUS_EOF) st = SW_STATUS_OK;
  if (st) goto out;
  if (ex->n == 0) {
    st = sw_error(SW_STATUS_INVALID, "%s: split '%s' has no examples", dir, split);
    goto out;
  }
  ex->text = sw_calloc(ex->n * ex->n_cols, sizeof *ex->text);
  ex->text_len = sw_calloc(ex->n * ex->n_cols, sizeof *ex->text_len);
  if (!ex->text || !ex->text_len) st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  sw_reader_close(r);
  sw_dataset_close(ds);
  return st;
}

static void put_float(sw_buf *b, float f) {
  char text[40];
  size_t n;
  if (isnan(f)) n = (size_t)snprintf(text, sizeof text, "NaN");
  else if (isinf(f)) n = (size_t)snprintf(text, sizeof text, f > 0 ? "Infinity" : "-Infinity");
  else if (f == truncf(f) && fabsf(f) < 16777216.0f && !(f == 0 && signbit(f)))
    n = (size_t)snprintf(text, sizeof text, "%d", (int)f); /* pixels: "255" reads back as the same float */
  else n = sw_serve_format_float(f, text);
  sw_buf_append(b, text, n);
}

/* Example i's values for column k as "v,v,...", formatted on first use and kept. */
static sw_status example_text(examples *ex, size_t i, size_t k, const char **text, size_t *len) {
  size_t at = i * ex->n_cols + k;
  if (!ex->text[at]) {
    const column *c = &ex->cols[k];
    sw_buf b = {0};
    for (int64_t j = 0; j < c->per; j++) {
      if (j) sw_buf_append(&b, ",", 1);
      if (c->dtype == SW_DTYPE_F32) put_float(&b, ((const float *)c->data)[i * (size_t)c->per + (size_t)j]);
      else sw_buf_printf(&b, "%lld", (long long)((const int64_t *)c->data)[i * (size_t)c->per + (size_t)j]);
    }
    if (sw_buf_append(&b, "", 1)) { /* the NUL; also tells whether every append fitted */
      sw_buf_free(&b);
      return sw_error(SW_STATUS_NOMEM, "out of memory");
    }
    ex->text[at] = (char *)b.data;
    ex->text_len[at] = b.len - 1;
  }
  *text = ex->text[at];
  *len = ex->text_len[at];
  return SW_STATUS_OK;
}

/* The body of a request for rows examples from first (wrapping around). */
static sw_status build_body(examples *ex, const sw_loadgen_signature *sig, sw_loadgen_protocol p, size_t first,
                            int64_t rows, sw_buf *b) {
  b->len = 0;
  const char *t;
  size_t n;
  sw_status st = SW_STATUS_OK;
  if (p == SW_LOADGEN_V1) {
    sw_buf_append(b, "{\"instances\":[", 14);
    for (int64_t r = 0; r < rows && !st; r++) {
      size_t i = (first + (size_t)r) % ex->n;
      if (r) sw_buf_append(b, ",", 1);
      if (ex->n_cols > 1) sw_buf_append(b, "{", 1);
      for (size_t k = 0; k < ex->n_cols && !st; k++) {
        if (k) sw_buf_append(b, ",", 1);
        if (ex->n_cols > 1) sw_buf_printf(b, "%s:", ex->cols[k].json_name);
        st = example_text(ex, i, k, &t, &n);
        if (st) break;
        sw_buf_append(b, "[", 1);
        sw_buf_append(b, t, n);
        sw_buf_append(b, "]", 1);
      }
      if (ex->n_cols > 1) sw_buf_append(b, "}", 1);
    }
    sw_buf_append(b, "]}", 2);
  } else {
    sw_buf_append(b, "{\"inputs\":[", 11);
    for (size_t k = 0; k < ex->n_cols && !st; k++) {
      const sw_loadgen_input *in = &sig->in[k];
      if (k) sw_buf_append(b, ",", 1);
      sw_buf_printf(b, "{\"name\":%s,\"datatype\":\"%s\",\"shape\":[%lld", ex->cols[k].json_name,
                    in->dtype == SW_DTYPE_F32 ? "FP32" : "INT64", (long long)rows);
      for (int d = 0; d < in->rank; d++) sw_buf_printf(b, ",%lld", (long long)in->shape[d]);
      sw_buf_append(b, "],\"data\":[", 10);
      for (int64_t r = 0; r < rows && !st; r++) {
        st = example_text(ex, (first + (size_t)r) % ex->n, k, &t, &n);
        if (st) break;
        if (r) sw_buf_append(b, ",", 1);
        sw_buf_append(b, t, n);
      }
      sw_buf_append(b, "]}", 2);
    }
    sw_buf_append(b, "]}", 2);
  }
  if (!st && sw_buf_reserve(b, 1)) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  return st;
}

/* ---- the engine ------------------------------------------------------------------------ */

#define FEEDBACK_SLOTS 2      /* feedback posts in flight at once; more ids wait and batch */
#define FEEDBACK_MAX_IDS 500  /* ids per post */
#define FEEDBACK_COALESCE_S 0.02 /* a due label waits up to this long for others to share its post */
#define MAX_ANSWER (64u << 20)

typedef struct {
  CURL *easy;
  struct curl_slist *headers;
  sw_buf body, resp;
  char version[32];
  char request_id[72];
  bool busy, is_feedback, resp_too_big;
  double sched, sent;
  size_t first;   /* first example */
  int64_t rows;
  size_t fb_ids;  /* ids in a feedback post */
} slot;

typedef struct {
  char name[32];
  int64_t requests, answered, examples, correct, values;
  double abs_err;
} version_stats;

typedef struct {
  double due;
  char id[72];
  size_t first;
  int64_t rows;
} pending_feedback;

typedef struct {
  const sw_loadgen_options *o;
  const sw_loadgen_signature *sig;
  examples *ex;
  CURLM *multi;
  slot *slots;
  size_t n_slots;
  size_t *free_slots, n_free;
  int in_flight, fb_in_flight;
  char *infer_url, *feedback_url;
  struct curl_slist *base_headers; /* never sent itself: copied per request */
  sw_rng users;
  double t0;
  size_t next_example;
  /* counts */
  int64_t scheduled, sent, answered, dropped, timeouts, conn_errors, other_errors, bad_answers;
  int64_t by_code[600];
  double *lat_sched, *lat_service;
  size_t n_lat, cap_lat;
  double max_lag;
  version_stats *versions;
  size_t n_versions;
  /* feedback */
  pending_feedback *pending;
  size_t pend_head, pend_tail, pend_cap;
  int64_t fb_posts, fb_ids, fb_labels, fb_counts[5], fb_failed, fb_no_id;
  double last_send;
  sw_status fatal;
} engine;

static size_t on_write(char *data, size_t size, size_t n, void *ud) {
  slot *s = ud;
  size_t len = size * n;
  if (s->resp.len + len > MAX_ANSWER) {
    s->resp_too_big = true;
    return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
  }
  return sw_buf_append(&s->resp, data, len) ? 0 : len;
}

/* Keeps the two headers that matter: which version answered and the request's id. */
static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  slot *s = ud;
  size_t len = size * n;
  static const struct {
    const char *name;
    size_t off, cap;
  } want[] = {{"x-model-version:", offsetof(slot, version), sizeof(((slot *)0)->version)},
              {"x-request-id:", offsetof(slot, request_id), sizeof(((slot *)0)->request_id)}};
  for (size_t w = 0; w < 2; w++) {
    size_t nl = strlen(want[w].name);
    if (len < nl || strncasecmp(data, want[w].name, nl)) continue;
    const char *v = data + nl, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t vl = (size_t)(end - v);
    char *dst = (char *)s + want[w].off;
    if (vl >= want[w].cap) vl = 0; /* longer than any we give out: treated as absent */
    memcpy(dst, v, vl);
    dst[vl] = '\0';
  }
  return len;
}

static slot *take_slot(engine *g) {
  if (!g->n_free) return NULL;
  slot *s = &g->slots[g->free_slots[--g->n_free]];
  if (!s->easy) s->easy = curl_easy_init();
  if (!s->easy) {
    g->n_free++;
    return NULL;
  }
  s->busy = true;
  s->resp.len = 0;
  s->resp_too_big = false;
  s->version[0] = s->request_id[0] = '\0';
  return s;
}

static void give_slot(engine *g, slot *s) {
  curl_multi_remove_handle(g->multi, s->easy);
  curl_slist_free_all(s->headers);
  s->headers = NULL;
  s->busy = false;
  g->free_slots[g->n_free++] = (size_t)(s - g->slots);
}

static struct curl_slist *copy_headers(const struct curl_slist *h, const char *extra) {
  struct curl_slist *out = NULL, *t;
  for (; h; h = h->next) {
    t = curl_slist_append(out, h->data);
    if (!t) goto fail;
    out = t;
  }
  if (extra) {
    t = curl_slist_append(out, extra);
    if (!t) goto fail;
    out = t;
  }
  return out;
fail:
  curl_slist_free_all(out);
  return NULL;
}

static sw_status start_transfer(engine *g, slot *s, const char *url) {
  CURL *e = s->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)s->body.data);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body.len);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)g->o->timeout_ms);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
  curl_easy_setopt(e, CURLOPT_PRIVATE, s);
  if (curl_multi_add_handle(g->multi, e) != CURLM_OK) return sw_error(SW_STATUS_NOMEM, "curl cannot add a transfer");
  return SW_STATUS_OK;
}

static sw_status send_request(engine *g, double sched, double now) {
  slot *s = take_slot(g);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory (curl handle)");
  const sw_loadgen_options *o = g->o;
  s->is_feedback = false;
  s->sched = sched;
  s->first = g->next_example;
  s->rows = o->batch;
  if (o->max_requests < 0 && s->first + (size_t)s->rows > g->ex->n) s->rows = (int64_t)(g->ex->n - s->first); /* the split once */
  g->next_example = (g->next_example + (size_t)s->rows) % g->ex->n;
  char user[64];
  if (o->users > 0) snprintf(user, sizeof user, "X-User-Id: user-%llu", (unsigned long long)sw_rng_below(&g->users, (uint64_t)o->users));
  s->headers = copy_headers(g->base_headers, o->users > 0 ? user : NULL);
  sw_status st = s->headers ? build_body(g->ex, g->sig, o->protocol, s->first, s->rows, &s->body)
                            : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) {
    s->sent = sw_now() - g->t0;
    st = start_transfer(g, s, g->infer_url);
  }
  if (st) {
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    s->busy = false;
    g->free_slots[g->n_free++] = (size_t)(s - g->slots);
    return st;
  }
  g->in_flight++;
  g->sent++;
  g->last_send = s->sent;
  if (now - sched > g->max_lag) g->max_lag = now - sched;
  return SW_STATUS_OK;
}

static version_stats *version_of(engine *g, const char *name) {
  if (!*name) name = "none";
  for (size_t i = 0; i < g->n_versions; i++)
    if (!strcmp(g->versions[i].name, name)) return &g->versions[i];
  version_stats *v = sw_realloc(g->versions, (g->n_versions + 1) * sizeof *v);
  if (!v) return NULL;
  g->versions = v;
  v = &g->versions[g->n_versions++];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  return v;
}

static bool id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static sw_status queue_feedback(engine *g, const slot *s, double now) {
  if (!id_ok(s->request_id)) {
    g->fb_no_id++;
    return SW_STATUS_OK;
  }
  if (g->pend_tail == g->pend_cap) {
    if (g->pend_head > 0) { /* slide the live part down before growing */
      memmove(g->pending, g->pending + g->pend_head, (g->pend_tail - g->pend_head) * sizeof *g->pending);
      g->pend_tail -= g->pend_head;
      g->pend_head = 0;
    }
    if (g->pend_tail == g->pend_cap) {
      size_t cap = g->pend_cap ? g->pend_cap * 2 : 1024;
      pending_feedback *p = sw_realloc(g->pending, cap * sizeof *p);
      if (!p) return sw_error(SW_STATUS_NOMEM, "out of memory");
      g->pending = p;
      g->pend_cap = cap;
    }
  }
  pending_feedback *p = &g->pending[g->pend_tail++];
  p->due = now + (double)g->o->feedback_delay_ms / 1000.0;
  snprintf(p->id, sizeof p->id, "%s", s->request_id);
  p->first = s->first;
  p->rows = s->rows;
  return SW_STATUS_OK;
}

static void put_label(engine *g, sw_buf *b, size_t i) {
  if (g->ex->label_int) sw_buf_printf(b, "%lld", (long long)g->ex->label_i[i]);
  else sw_buf_printf(b, "%.9g", g->ex->label_f[i]);
}

/* When the next feedback post goes: once its oldest label has waited FEEDBACK_COALESCE_S
 * past its due time, or as soon as a full post is due; INFINITY when nothing waits. */
static double feedback_post_time(const engine *g) {
  size_t waiting = g->pend_tail - g->pend_head;
  if (!waiting) return INFINITY;
  if (waiting >= FEEDBACK_MAX_IDS) return g->pending[g->pend_head + FEEDBACK_MAX_IDS - 1].due;
  return g->pending[g->pend_head].due + FEEDBACK_COALESCE_S;
}

/* Posts the feedback that is due, in batches, while a feedback slot is free. */
static sw_status flush_feedback(engine *g, double now) {
  while (feedback_post_time(g) <= now && g->fb_in_flight < FEEDBACK_SLOTS) {
    slot *s = take_slot(g);
    if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory (curl handle)");
    s->is_feedback = true;
    s->fb_ids = 0;
    s->body.len = 0;
    sw_buf_append(&s->body, "{\"feedback\":[", 13);
    while (g->pend_head < g->pend_tail && g->pending[g->pend_head].due <= now && s->fb_ids < FEEDBACK_MAX_IDS) {
      const pending_feedback *p = &g->pending[g->pend_head++];
      if (s->fb_ids++) sw_buf_append(&s->body, ",", 1);
      g->fb_labels += p->rows;
      sw_buf_printf(&s->body, "{\"id\":\"%s\",\"label\":", p->id);
      if (p->rows == 1) put_label(g, &s->body, p->first);
      else {
        sw_buf_append(&s->body, "[", 1);
        for (int64_t r = 0; r < p->rows; r++) {
          if (r) sw_buf_append(&s->body, ",", 1);
          put_label(g, &s->body, (p->first + (size_t)r) % g->ex->n);
        }
        sw_buf_append(&s->body, "]", 1);
      }
      sw_buf_append(&s->body, "}", 1);
    }
    sw_buf_append(&s->body, "]}", 2);
    s->headers = copy_headers(g->base_headers, NULL);
    sw_status st = s->headers && !sw_buf_reserve(&s->body, 1) ? start_transfer(g, s, g->feedback_url)
                                                               : sw_error(SW_STATUS_NOMEM, "out of memory");
    if (st) {
      give_slot(g, s);
      return st;
    }
    g->fb_in_flight++;
    g->fb_posts++;
    g->fb_ids += (int64_t)s->fb_ids;
  }
  if (g->pend_head == g->pend_tail) g->pend_head = g->pend_tail = 0;
  return SW_STATUS_OK;
}

static sw_status record_latency(engine *g, double sched, double service) {
  if (g->n_lat == g->cap_lat) {
    size_t cap = g->cap_lat ? g->cap_lat * 2 : 4096;
    double *a = sw_realloc(g->lat_sched, cap * sizeof *a);
    if (a) g->lat_sched = a;
    double *b = sw_realloc(g->lat_service, cap * sizeof *b);
    if (b) g->lat_service = b;
    if (!a || !b) return sw_error(SW_STATUS_NOMEM, "out of memory");
    g->cap_lat = cap;
  }
  g->lat_sched[g->n_lat] = sched;
  g->lat_service[g->n_lat++] = service;
  return SW_STATUS_OK;
}

static sw_status finish_request(engine *g, slot *s, CURLcode rc, double now) {
  g->in_flight--;
  if (rc != CURLE_OK) {
    if (rc == CURLE_OPERATION_TIMEDOUT) g->timeouts++;
    else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
             rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_PARTIAL_FILE)
      g->conn_errors++;
    else g->other_errors++;
    return SW_STATUS_OK;
  }
  long code = 0;
  curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
  sw_status st = record_latency(g, now - s->sched, now - s->sent);
  if (st) return st;
  version_stats *v = version_of(g, s->version);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  v->requests++;
  if (code < 200 || code > 299) {
    g->by_code[code > 0 && code < 600 ? code : 0]++;
    return SW_STATUS_OK;
  }
  g->answered++;
  v->answered++;
  double preds[256], *pred = preds;
  if (s->rows > 256 && !(pred = sw_malloc((size_t)s->rows * sizeof *pred))) return sw_error(SW_STATUS_NOMEM, "out of memory");
  int64_t k = 0;
  sw_status pst = sw_loadgen_parse_answer((const char *)s->resp.data, s->resp.len, g->o->protocol, g->sig->output, s->rows,
                                          pred, &k);
  if (pst) {
    if (g->bad_answers++ == 0) SW_WARN("loadgen: an answer could not be read (%s); such answers are counted", sw_last_error());
    sw_clear_error();
  } else if (g->ex->has_label) {
    v->examples += s->rows;
    for (int64_t r = 0; r < s->rows; r++) {
      size_t i = (s->first + (size_t)r) % g->ex->n;
      if (k == 1) {
        double truth = g->ex->label_int ? (double)g->ex->label_i[i] : g->ex->label_f[i];
        v->abs_err += fabs(pred[r] - truth);
        v->values++;
      } else if (g->ex->label_int && (int64_t)pred[r] == g->ex->label_i[i]) {
        v->correct++;
      }
    }
  }
  if (pred != preds) sw_free(pred);
  if (g->o->feedback && g->ex->has_label) return queue_feedback(g, s, now);
  return SW_STATUS_OK;
}

static void finish_feedback(engine *g, slot *s, CURLcode rc) {
  g->fb_in_flight--;
  long code = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
  int64_t counts[5];
  if (code == 200 && !sw_loadgen_parse_feedback_answer((const char *)s->resp.data, s->resp.len, counts)) {
    for (int i = 0; i < 5; i++) g->fb_counts[i] += counts[i];
    return;
  }
  sw_clear_error();
  if (g->fb_failed == 0)
    SW_WARN("loadgen: a feedback post failed (%s); its ids are counted as failed",
            rc != CURLE_OK ? curl_easy_strerror(rc) : "the server's answer");
  g->fb_failed += (int64_t)s->fb_ids;
}

static sw_status drain_done(engine *g) {
  CURLMsg *m;
  int left;
  double now = sw_now() - g->t0;
  sw_status st = SW_STATUS_OK;
  while ((m = curl_multi_info_read(g->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    slot *s = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    CURLcode rc = m->data.result;
    if (s->is_feedback) finish_feedback(g, s, rc);
    else if (!st) st = finish_request(g, s, rc, now);
    else g->in_flight--;
    give_slot(g, s); /* m is invalid from here on */
  }
  return st;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  nanosleep(&ts, NULL);
}

static sw_status drive(engine *g) {
  const sw_loadgen_options *o = g->o;
  sw_poisson pois;
  sw_poisson_init(&pois, o->rps, o->seed);
  double next_t = sw_poisson_next(&pois);
  bool sending = true;
  sw_status st = SW_STATUS_OK;
  g->t0 = sw_now();
  while (!st) {
    double now = sw_now() - g->t0;
    if (sending && o->stop && *o->stop) sending = false;
    while (sending) {
      if ((o->duration_s > 0 && next_t >= o->duration_s) || (o->max_requests > 0 && g->scheduled >= o->max_requests) ||
          (o->max_requests < 0 && g->scheduled * (int64_t)o->batch >= (int64_t)g->ex->n)) {
        sending = false;
        break;
      }
      if (next_t > now) break;
      g->scheduled++;
      if (g->in_flight < o->max_in_flight) st = send_request(g, next_t, now);
      else g->dropped++;
      if (st) break;
      next_t = sw_poisson_next(&pois);
    }
    if (!st && o->feedback) st = flush_feedback(g, now);
    int running = 0;
    if (!st && curl_multi_perform(g->multi, &running) != CURLM_OK) st = sw_error(SW_STATUS_IO, "curl multi failed");
    if (!st) st = drain_done(g);
    if (st) break;
    bool pending = g->pend_head < g->pend_tail;
    if (!sending && g->in_flight == 0 && !pending && g->fb_in_flight == 0) break;
    now = sw_now() - g->t0;
    double wake = 0.1; /* at least this often: the stop flag */
    if (sending && next_t - now < wake) wake = next_t - now;
    if (pending && g->fb_in_flight < FEEDBACK_SLOTS && feedback_post_time(g) - now < wake)
      wake = feedback_post_time(g) - now;
    if (wake >= 0.001) curl_multi_poll(g->multi, NULL, 0, (int)(wake * 1000), NULL);
    else if (wake > 0) sleep_s(wake); /* under a millisecond: poll's unit is too coarse */
  }
  return st;
}

/* ---- setup and the report --------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* GET url into body; *code the HTTP status, 0 when nothing answered (err says why). */
static sw_status http_get(const char *url, int64_t timeout_ms, sw_buf *body, long *code) {
  slot s;
  memset(&s, 0, sizeof s);
  char err[CURL_ERROR_SIZE] = "";
  CURL *e = curl_easy_init();
  if (!e) return sw_error(SW_STATUS_NOMEM, "out of memory (curl)");
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
  CURLcode rc = curl_easy_perform(e);
  sw_status st = SW_STATUS_OK;
  *code = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
  else st = sw_error(SW_STATUS_IO, "cannot reach the server (%s)", *err ? err : curl_easy_strerror(rc));
  curl_easy_cleanup(e);
  *body = s.resp;
  if (st) sw_buf_free(body);
  return st;
}

static sw_status fetch_signature(const sw_loadgen_options *o, const char *base, const char *path_model,
                                 sw_loadgen_signature *sig) {
  char *url = o->protocol == SW_LOADGEN_V1 ? sw_asprintf("%s/v1/models/%s/metadata", base, path_model)
                                           : sw_asprintf("%s/v2/models/%s", base, path_model);
  sw_buf body = {0};
  long code = 0;
  if (!url) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = http_get(url, o->timeout_ms, &body, &code);
  if (st) {
    sw_error_prefix(st, "%s: ", base);
    goto out;
  }
  if (code != 200) {
    json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
    const char *why = json_string_value(json_object_get(j, "error"));
    st = sw_error(code == 404 ? SW_STATUS_NOT_FOUND : SW_STATUS_IO, "%s: %s model '%s' (HTTP %ld%s%s)", base,
                  code == 404 ? "the server does not serve" : "cannot read the metadata of", path_model, code,
                  why ? ": " : "", why ? why : "");
    json_decref(j);
    goto out;
  }
  st = sw_loadgen_parse_metadata((const char *)body.data, body.len, o->protocol, sig);
  if (st) sw_error_prefix(st, "%s: ", url);
out:
  sw_buf_free(&body);
  sw_free(url);
  return st;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static json_t *latency_json(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  json_t *j = json_pack("{s:I}", "count", (json_int_t)n);
  if (!j || !n) return j;
  static const struct {
    const char *name;
    double q;
  } qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}, {"max", 1.0}};
  json_object_set_new(j, "mean", json_real(sum / (double)n * 1e3));
  for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
    json_object_set_new(j, qs[i].name, json_real(sw_loadgen_percentile(v, n, qs[i].q) * 1e3));
  return j;
}

static json_t *report_json(engine *g, const char *base, double window) {
  const sw_loadgen_options *o = g->o;
  json_t *http = json_object();
  for (int c = 0; c < 600; c++)
    if (g->by_code[c]) {
      char k[16];
      snprintf(k, sizeof k, "%d", c);
      json_object_set_new(http, k, json_integer(g->by_code[c]));
    }
  json_t *rep = json_pack("{s:s, s:s, s:s, s:s, s:I, s:f, s:f, s:i, s:I, s:i, s:b}", "server", base, "model", o->model,
                          "protocol", o->protocol == SW_LOADGEN_V2 ? "v2" : "v1", "split", o->split ? o->split : "test",
                          "examples", (json_int_t)g->ex->n, "target_rps", o->rps, "duration_s", window, "batch",
                          o->batch, "seed", (json_int_t)o->seed, "users", o->users, "stopped",
                          o->stop && *o->stop);
  if (!rep || !http) {
    json_decref(http);
    json_decref(rep);
    return NULL;
  }
  if (o->version > 0) json_object_set_new(rep, "version", json_integer(o->version));
  json_object_set_new(rep, "requests",
                      json_pack("{s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I}", "scheduled", (json_int_t)g->scheduled,
                                "sent", (json_int_t)g->sent, "answered", (json_int_t)g->answered, "dropped",
                                (json_int_t)g->dropped, "http_errors", http, "timeouts", (json_int_t)g->timeouts,
                                "connection_errors", (json_int_t)g->conn_errors, "other_errors",
                                (json_int_t)g->other_errors, "bad_answers", (json_int_t)g->bad_answers));
  json_object_set_new(rep, "achieved_rps", json_real(window > 0 ? (double)g->sent / window : 0));
  json_object_set_new(rep, "max_send_lag_ms", json_real(g->max_lag * 1e3));
  json_object_set_new(rep, "latency_ms", json_pack("{s:o, s:o}", "scheduled", latency_json(g->lat_sched, g->n_lat),
                                                   "service", latency_json(g->lat_service, g->n_lat)));
  json_t *vers = json_object();
  int64_t all_ex = 0, all_correct = 0, all_values = 0;
  double all_err = 0;
  for (size_t i = 0; i < g->n_versions; i++) {
    const version_stats *v = &g->versions[i];
    json_t *vj = json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)v->requests, "answered", (json_int_t)v->answered,
                           "examples", (json_int_t)v->examples);
    if (v->values) json_object_set_new(vj, "mae", json_real(v->abs_err / (double)v->values));
    else if (v->examples && g->ex->label_int) {
      json_object_set_new(vj, "correct", json_integer(v->correct));
      json_object_set_new(vj, "accuracy", json_real((double)v->correct / (double)v->examples));
    }
    json_object_set_new(vers, v->name, vj);
    all_ex += v->examples;
    all_correct += v->correct;
    all_values += v->values;
    all_err += v->abs_err;
  }
  json_object_set_new(rep, "versions", vers);
  if (all_values) json_object_set_new(rep, "mae", json_real(all_err / (double)all_values));
  else if (all_ex && g->ex->label_int) json_object_set_new(rep, "accuracy", json_real((double)all_correct / (double)all_ex));
  if (o->feedback)
    json_object_set_new(rep, "feedback",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "posted", (json_int_t)g->fb_ids, "labels",
                                  (json_int_t)g->fb_labels, "posts",
                                  (json_int_t)g->fb_posts, "joined", (json_int_t)g->fb_counts[0], "unknown",
                                  (json_int_t)g->fb_counts[1], "expired", (json_int_t)g->fb_counts[2], "duplicate",
                                  (json_int_t)g->fb_counts[3], "invalid", (json_int_t)g->fb_counts[4], "failed",
                                  (json_int_t)g->fb_failed, "no_request_id", (json_int_t)g->fb_no_id));
  return rep;
}

static sw_status check_options(const sw_loadgen_options *o) {
  if (!o->model || !sw_serve_name_valid(o->model, strlen(o->model)))
    return sw_error(SW_STATUS_INVALID, "model name '%s': 1 to 128 of A-Za-z0-9._-, starting with a letter or digit",
                    o->model ? o->model : "");
  if (!o->data_dir) return sw_error(SW_STATUS_INVALID, "no dataset dir");
  if (!(o->rps > 0 && o->rps <= 1e6)) return sw_error(SW_STATUS_INVALID, "the rate must be in (0, 1e6] requests a second");
  if (!(o->duration_s >= 0) || (o->duration_s == 0 && o->max_requests == 0))
    return sw_error(SW_STATUS_INVALID, "a duration or a number of requests is needed");
  if (o->feedback_delay_ms < 0) return sw_error(SW_STATUS_INVALID, "the feedback delay must be >= 0");
  if (o->users < 0) return sw_error(SW_STATUS_INVALID, "the number of users must be >= 0");
  for (size_t i = 0; i < o->n_headers; i++) {
    const char *h = o->headers[i], *colon = strchr(h, ':');
    if (!colon || colon == h || strpbrk(h, "\r\n"))
      return sw_error(SW_STATUS_INVALID, "header '%s' is not 'Name: value'", h);
  }
  return SW_STATUS_OK;
}

sw_status sw_loadgen_run(const sw_loadgen_options *opt, json_t **report) {
  *report = NULL;
  sw_loadgen_options o = *opt;
  if (!o.server) o.server = "http://127.0.0.1:8501";
  if (!o.split) o.split = "test";
  if (o.batch <= 0) o.batch = 1;
  if (o.max_in_flight <= 0) o.max_in_flight = 512;
  if (o.timeout_ms <= 0) o.timeout_ms = 10000;
  sw_status st = check_options(&o);
  if (st) return st;
  pthread_once(&curl_once, curl_init);

  engine g;
  memset(&g, 0, sizeof g);
  examples ex;
  memset(&ex, 0, sizeof ex);
  sw_loadgen_signature sig;
  char *base = sw_strdup(o.server), *path_model = NULL;
  if (!base) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--) base[n - 1] = '\0';
  path_model = o.version > 0 ? sw_asprintf("%s/versions/%lld", o.model, (long long)o.version) : sw_strdup(o.model);
  if (!path_model) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  st = fetch_signature(&o, base, path_model, &sig);
  if (!st) st = load_examples(o.data_dir, o.split, &sig, &ex);
  if (st) goto out;
  if (o.feedback && !ex.has_label) {
    st = sw_error(SW_STATUS_INVALID, "%s: split '%s' has no single-valued label to post as feedback", o.data_dir, o.split);
    goto out;
  }
  if (o.max_requests < 0) o.batch = o.batch > (int)ex.n ? (int)ex.n : o.batch;
  SW_INFO("loadgen: %s model %s: %zu examples of split %s, %g requests a second%s", base, path_model, ex.n, o.split, o.rps,
          o.feedback ? ", with feedback" : "");

  g.o = &o;
  g.sig = &sig;
  g.ex = &ex;
  sw_rng_init(&g.users, o.seed, 1);
  g.infer_url = o.protocol == SW_LOADGEN_V1 ? sw_asprintf("%s/v1/models/%s:predict", base, path_model)
                                            : sw_asprintf("%s/v2/models/%s/infer", base, path_model);
  g.feedback_url = sw_asprintf("%s/v1/models/%s:feedback", base, o.model);
  g.n_slots = (size_t)o.max_in_flight + FEEDBACK_SLOTS;
  g.slots = sw_calloc(g.n_slots, sizeof *g.slots);
  g.free_slots = sw_calloc(g.n_slots, sizeof *g.free_slots);
  g.multi = curl_multi_init();
  /* "Expect:" turns off curl's 100-continue round trip for bodies over 1 KiB */
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  if (h) g.base_headers = h;
  if (h) h = curl_slist_append(g.base_headers, "Expect:");
  for (size_t i = 0; h && i < o.n_headers; i++) h = curl_slist_append(g.base_headers, o.headers[i]);
  if (!g.infer_url || !g.feedback_url || !g.slots || !g.free_slots || !g.multi || !h) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < g.n_slots; i++) g.free_slots[g.n_free++] = g.n_slots - 1 - i;
  curl_multi_setopt(g.multi, CURLMOPT_MAXCONNECTS, (long)g.n_slots);
  st = drive(&g);
  if (st) goto out;
  double end = sw_now() - g.t0;
  double window = o.duration_s > 0 && !(o.stop && *o.stop) ? o.duration_s : g.last_send;
  if (window <= 0) window = end;
  *report = report_json(&g, base, window);
  if (!*report) st = sw_error(SW_STATUS_NOMEM, "out of memory");
out:
  if (g.slots) {
    for (size_t i = 0; i < g.n_slots; i++) {
      slot *s = &g.slots[i];
      if (s->busy) curl_multi_remove_handle(g.multi, s->easy);
      curl_slist_free_all(s->headers);
      if (s->easy) curl_easy_cleanup(s->easy);
      sw_buf_free(&s->body);
      sw_buf_free(&s->resp);
    }
  }
  if (g.multi) curl_multi_cleanup(g.multi);
  curl_slist_free_all(g.base_headers);
  sw_free(g.slots);
  sw_free(g.free_slots);
  sw_free(g.infer_url);
  sw_free(g.feedback_url);
  sw_free(g.lat_sched);
  sw_free(g.lat_service);
  sw_free(g.versions);
  sw_free(g.pending);
  examples_free(&ex);
  sw_free(path_model);
  sw_free(base);
  return st;
}
