/* `slipway prep`: read a source, validate every record against the schema, quarantine
 * the bad ones with a reason, split, shard into TFRecord files, and write the manifest,
 * schema and statistics. The dataset is built in a temporary sibling directory and
 * renamed into place, so a crash never leaves a half dataset that looks complete. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_int.h"

#define DEFAULT_SHARDS 4
#define DEFAULT_MAX_Z 6.0
#define DEFAULT_MAX_QUARANTINE 0.05
#define RAW_BINARY_CAP 65536
#define REPORT_EXAMPLES 5

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static sw_status base64(const uint8_t *in, size_t n, sw_buf *out) {
  sw_status st = sw_buf_reserve(out, (n + 2) / 3 * 4 + 1);
  if (st) return st;
  char *o = (char *)out->data + out->len;
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    o[k++] = b64_alphabet[(v >> 18) & 63];
    o[k++] = b64_alphabet[(v >> 12) & 63];
    o[k++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
    o[k++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
  }
  out->len += k;
  out->data[out->len] = 0;
  return SW_STATUS_OK;
}

bool sw__utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

int sw__prep_split_index(const sw__prep *p, const char *name) {
  for (int i = 0; i < p->n_splits; i++)
    if (!strcmp(p->split_names[i], name)) return i;
  return -1;
}

sw_status sw__prep_source(sw__prep *p, const char *path, const char **name) {
  for (size_t i = 0; i < p->n_source_names; i++)
    if (!strcmp(p->source_names[i], path)) {
      *name = p->source_names[i];
      return SW_STATUS_OK;
    }
  char **v = sw_realloc(p->source_names, (p->n_source_names + 1) * sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  p->source_names = v;
  v[p->n_source_names] = sw_strdup(path);
  if (!v[p->n_source_names]) return sw_error(SW_STATUS_NOMEM, "out of memory");
  *name = v[p->n_source_names++];
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
    char hex[SW_SHA256_HEX_LEN];
    sw_status st = sw_sha256_file_hex(path, hex);
    if (st) return st;
    json_array_append_new(p->source_files, json_pack("{s:s, s:I, s:s}", "path", path, "bytes",
                                                     (json_int_t)sb.st_size, "sha256", hex));
  }
  return SW_STATUS_OK;
}

sw_status sw__prep_add(sw__prep *p, const sw__location *loc, sw_example *ex, int fixed_split,
                       char *raw, size_t raw_len) {
  if (p->n_records == p->cap_records) {
    size_t cap = p->cap_records ? p->cap_records * 2 : 1024;
    sw__record *r = sw_realloc(p->records, cap * sizeof *r);
    if (!r) {
      sw_example_clear(ex);
      sw_free(raw);
      return sw_error(SW_STATUS_NOMEM, "out of memory holding %zu records", p->n_records);
    }
    p->records = r;
    p->cap_records = cap;
  }
  sw__record *r = &p->records[p->n_records++];
  memset(r, 0, sizeof *r);
  r->loc = *loc;
  r->ex = *ex;
  memset(ex, 0, sizeof *ex);
  r->fixed_split = fixed_split;
  r->split = -1;
  r->raw = raw;
  r->raw_len = raw_len;
  p->n_read++;
  return SW_STATUS_OK;
}

sw_status sw__quarantine(sw__prep *p, const sw__location *loc, const char *reason,
                         const char *feature, const char *detail, const void *raw,
                         size_t raw_len, bool binary) {
  json_t *o = json_object();
  json_object_set_new(o, "source", json_string(loc->source));
  if (loc->line) json_object_set_new(o, "line", json_integer((json_int_t)loc->line));
  json_object_set_new(o, "offset", json_integer((json_int_t)loc->offset));
  json_object_set_new(o, "reason", json_string(reason));
  if (feature && *feature) json_object_set_new(o, "feature", json_string(feature));
  json_t *d = json_string(detail ? detail : "");
  if (!d) {
    /* the detail quoted invalid UTF-8 */
    d = json_string("(detail holds bytes that are not UTF-8)");
  }
  json_object_set_new(o, "detail", d);
  sw_buf b64 = {0};
  sw_status st = SW_STATUS_OK;
  if (raw) {
    json_t *text = binary ? NULL : json_stringn(raw, raw_len);
    if (text) {
      json_object_set_new(o, "raw", text);
    } else {
      size_t n = raw_len > RAW_BINARY_CAP ? RAW_BINARY_CAP : raw_len;
      st = base64(raw, n, &b64);
      if (st) goto out;
      json_object_set_new(o, "raw_base64", json_stringn((const char *)b64.data, b64.len));
      if (n < raw_len) json_object_set_new(o, "raw_truncated_from", json_integer((json_int_t)raw_len));
    }
  }
  char *line = json_dumps(o, JSON_COMPACT);
  if (!line) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  if (p->n_quarantine_lines == p->cap_quarantine_lines) {
    size_t cap = p->cap_quarantine_lines ? 2 * p->cap_quarantine_lines : 64;
    sw__quarantined *v = sw_realloc(p->quarantine, cap * sizeof *v);
    if (!v) {
      free(line);
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    p->quarantine = v;
    p->cap_quarantine_lines = cap;
  }
  sw__quarantined *q = &p->quarantine[p->n_quarantine_lines];
  q->source = loc->source;
  q->offset = loc->offset;
  q->line = sw_strdup(line);
  free(line);
  if (!q->line) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  p->n_quarantine_lines++;
  json_object_set_new(p->reasons, reason,
                      json_integer(json_integer_value(json_object_get(p->reasons, reason)) + 1));
  if (json_array_size(p->examples) < REPORT_EXAMPLES) {
    json_object_del(o, "raw");
    json_object_del(o, "raw_base64");
    json_array_append(p->examples, o);
  }
  p->n_read++;
  p->n_quarantined++;
out:
  sw_buf_free(&b64);
  json_decref(o);
  return st;
}

/* Quarantines an already added record (validation, out-of-distribution). */
static sw_status quarantine_record(sw__prep *p, sw__record *r, const char *reason,
                                   const char *feature, const char *detail) {
  sw_status st;
  if (r->raw) {
    st = sw__quarantine(p, &r->loc, reason, feature, detail, r->raw, r->raw_len, false);
  } else {
    sw_buf enc = {0};
    st = sw_example_encode(&r->ex, &enc);
    if (!st) st = sw__quarantine(p, &r->loc, reason, feature, detail, enc.data, enc.len, true);
    sw_buf_free(&enc);
  }
  if (st) return st;
  p->n_read--; /* it was counted when added */
  r->quarantined = true;
  return SW_STATUS_OK;
}

static sw_status parse_splits(sw__prep *p, const char *spec) {
  char *copy = sw_strdup(spec);
  if (!copy) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = SW_STATUS_OK;
  double sum = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq || eq == tok) {
      st = sw_error(SW_STATUS_INVALID, "--split: '%s' is not NAME=FRACTION", tok);
      goto out;
    }
    *eq = '\0';
    char *end;
    double f = strtod(eq + 1, &end);
    if (*end || !(f > 0) || f > 1) {
      st = sw_error(SW_STATUS_INVALID, "--split: fraction of '%s' must be in (0, 1]", tok);
      goto out;
    }
    for (const char *c = tok; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
        st = sw_error(SW_STATUS_INVALID, "--split: name '%s' may hold only a-z, 0-9 and _", tok);
        goto out;
      }
    if (sw__prep_split_index(p, tok) >= 0) {
      st = sw_error(SW_STATUS_INVALID, "--split: '%s' given twice", tok);
      goto out;
    }
    if (p->n_splits == SW__MAX_SPLITS) {
      st = sw_error(SW_STATUS_INVALID, "--split: at most %d splits", SW__MAX_SPLITS);
      goto out;
    }
    p->split_names[p->n_splits] = sw_strdup(tok);
    p->split_fracs[p->n_splits++] = f;
    sum += f;
  }
  if (p->n_splits == 0 || sw__prep_split_index(p, "train") < 0) {
    st = sw_error(SW_STATUS_INVALID, "--split must name a train split");
    goto out;
  }
  if (fabs(sum - 1.0) > 1e-6) {
    st = sw_error(SW_STATUS_INVALID, "--split fractions add up to %g, not 1", sum);
    goto out;
  }
out:
  sw_free(copy);
  return st;
}

/* Assigns each accepted record without a fixed split to a split: a permutation fixed by
 * the seed, cut at the cumulative fractions, so the counts are exact. */
static sw_status assign_splits(sw__prep *p) {
  size_t n = 0;
  for (size_t i = 0; i < p->n_records; i++) {
    sw__record *r = &p->records[i];
    if (r->quarantined) continue;
    if (r->fixed_split >= 0) r->split = r->fixed_split;
    else n++;
  }
  uint64_t *idx = sw_malloc((n ? n : 1) * sizeof *idx);
  uint64_t *perm = sw_malloc((n ? n : 1) * sizeof *perm);
  if (!idx || !perm) {
    sw_free(idx);
    sw_free(perm);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  size_t k = 0;
  for (size_t i = 0; i < p->n_records; i++)
    if (!p->records[i].quarantined && p->records[i].fixed_split < 0) idx[k++] = i;
  sw_rng rng;
  sw_rng_init(&rng, p->opt->seed, 0x5350 /* "SP": the split stream */);
  sw_rng_permutation(&rng, perm, n);
  /* fractions over the splits the source does not fix */
  double total = 0;
  for (int s = 0; s < p->n_splits; s++)
    if (!(p->source_has_test && !strcmp(p->split_names[s], "test"))) total += p->split_fracs[s];
  double cum = 0;
  size_t begin = 0;
  for (int s = 0; s < p->n_splits; s++) {
    if (p->source_has_test && !strcmp(p->split_names[s], "test")) continue;
    cum += p->split_fracs[s] / total;
    size_t end = (size_t)llround(cum * (double)n);
    if (end > n) end = n;
    for (size_t j = begin; j < end; j++) p->records[idx[perm[j]]].split = s;
    begin = end;
  }
  for (size_t j = begin; j < n; j++) p->records[idx[perm[j]]].split = 0;
  sw_free(idx);
  sw_free(perm);
  return SW_STATUS_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_sorted(const double *v, size_t n) {
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double scalar_value_at(const sw_feature *f, size_t k) {
  return f->kind == SW_FEATURE_KIND_FLOAT ? (double)f->v.f32[k] : (double)f->v.i64[k];
}

static double scalar_value(const sw_feature *f) { return scalar_value_at(f, 0); }

/* Quarantines records whose numeric scalar features sit more than max_z robust z-scores
 * (0.6745 (x - median) / MAD, Iglewicz and Hoaglin) from the training split's median.
 * Features with MAD 0 (constant or mostly constant) are not checked. */
static sw_status quarantine_outliers(sw__prep *p) {
  int train = sw__prep_split_index(p, "train");
  sw_status st = SW_STATUS_OK;
  double *vals = sw_malloc((p->n_records ? p->n_records : 1) * sizeof *vals);
  if (!vals) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t fi = 0; fi < p->schema->n_features; fi++) {
    const sw_feature_spec *fs = &p->schema->features[fi];
    if (fs->is_label || fs->rank != 0 ||
        (fs->kind != SW_FEATURE_KIND_FLOAT && fs->kind != SW_FEATURE_KIND_INT64))
      continue;
    size_t n = 0;
    for (size_t i = 0; i < p->n_records; i++) {
      const sw__record *r = &p->records[i];
      if (r->quarantined || r->split != train) continue;
      const sw_feature *f = sw_example_find(&r->ex, fs->name);
      if (f && f->count == 1) vals[n++] = scalar_value(f);
    }
    if (n < 8) continue;
    qsort(vals, n, sizeof *vals, cmp_double);
    double med = median_sorted(vals, n);
    for (size_t i = 0; i < n; i++) vals[i] = fabs(vals[i] - med);
    qsort(vals, n, sizeof *vals, cmp_double);
    double mad = median_sorted(vals, n);
    if (!(mad > 0)) continue;
    for (size_t i = 0; i < p->n_records; i++) {
      sw__record *r = &p->records[i];
      if (r->quarantined) continue;
      const sw_feature *f = sw_example_find(&r->ex, fs->name);
      if (!f || f->count != 1) continue;
      double x = scalar_value(f);
      double z = 0.6745 * (x - med) / mad;
      if (fabs(z) > p->max_z) {
        char detail[256];
        snprintf(detail, sizeof detail,
                 "%s = %.9g is %.1f robust z-scores from the training median %.9g (MAD %.9g, limit %g)",
                 fs->name, x, fabs(z), med, mad, p->max_z);
        st = quarantine_record(p, r, SW_REASON_OOD, fs->name, detail);
        if (st) goto out;
      }
    }
  }
out:
  sw_free(vals);
  return st;
}

/* An inferred schema records the range of each number, as TFDV's does, from the accepted
 * records: data validated later against this schema (--schema, or a tfrecord re-prep)
 * then has a value outside what training saw quarantined as out_of_range. */
static void record_ranges(sw__prep *p) {
  for (size_t fi = 0; fi < p->schema->n_features; fi++) {
    sw_feature_spec *fs = &p->schema->features[fi];
    if (fs->image || fs->n_classes || (fs->kind != SW_FEATURE_KIND_FLOAT && fs->kind != SW_FEATURE_KIND_INT64))
      continue;
    bool any = false;
    double lo = 0, hi = 0;
    for (size_t i = 0; i < p->n_records; i++) {
      const sw__record *r = &p->records[i];
      if (r->quarantined) continue;
      const sw_feature *f = sw_example_find(&r->ex, fs->name);
      for (size_t k = 0; f && k < f->count; k++) {
        double v = scalar_value_at(f, k);
        if (!any || v < lo) lo = v;
        if (!any || v > hi) hi = v;
        any = true;
      }
    }
    fs->has_min = fs->has_max = any;
    fs->min = lo;
    fs->max = hi;
  }
}

/* Writes one split's shards into dir and returns its manifest entry. */
static sw_status write_split(sw__prep *p, const char *dir, int split, int shards, json_t **entry) {
  sw_status st = SW_STATUS_OK;
  size_t n = 0;
  for (size_t i = 0; i < p->n_records; i++)
    if (!p->records[i].quarantined && p->records[i].split == split) n++;
  if ((size_t)shards > n) shards = (int)n;
  json_t *list = json_array();
  sw_buf frame = {0}, enc = {0};
  sw_sha256 *h = NULL;
  FILE *f = NULL;
  char *path = NULL;
  st = sw_sha256_new(&h);
  if (st) goto out;
  size_t i = 0;
  sw_progress *bar = sw_progress_begin(p->split_names[split], n);
  size_t done = 0;
  for (int s = 0; s < shards; s++) {
    size_t count = (n * (size_t)(s + 1)) / (size_t)shards - (n * (size_t)s) / (size_t)shards;
    char name[128];
    snprintf(name, sizeof name, "%s-%05d-of-%05d.tfrecord", p->split_names[split], s, shards);
    sw_free(path);
    path = sw_path_join(dir, name);
    if (!path) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    f = fopen(path, "wb");
    if (!f) {
      st = sw_error(SW_STATUS_IO, "create %s: %s", path, strerror(errno));
      goto out;
    }
    uint64_t bytes = 0;
    for (size_t c = 0; c < count; i++) {
      sw__record *r = &p->records[i];
      if (r->quarantined || r->split != split) continue;
      enc.len = 0;
      frame.len = 0;
      st = sw_example_encode(&r->ex, &enc);
      if (!st) st = sw_tfrecord_frame(&frame, enc.data, enc.len);
      if (!st) st = sw_sha256_update(h, frame.data, frame.len);
      if (st) goto out;
      if (fwrite(frame.data, 1, frame.len, f) != frame.len) {
        st = sw_error(SW_STATUS_IO, "write %s: %s", path, strerror(errno));
        goto out;
      }
      bytes += frame.len;
      c++;
      sw_progress_update(bar, ++done);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
      st = sw_error(SW_STATUS_IO, "write %s: %s", path, strerror(errno));
      goto out;
    }
    fclose(f);
    f = NULL;
    char hex[SW_SHA256_HEX_LEN];
    st = sw_sha256_final_hex(h, hex);
    if (st) goto out;
    json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:s}", "file", name, "examples",
                                          (json_int_t)count, "bytes", (json_int_t)bytes, "sha256", hex));
  }
  sw_progress_end(bar);
  *entry = json_pack("{s:I, s:o}", "examples", (json_int_t)n, "shards", list);
  list = NULL;
out:
  if (f) fclose(f);
  sw_free(path);
  sw_sha256_free(h);
  sw_buf_free(&frame);
  sw_buf_free(&enc);
  json_decref(list);
  return st;
}

static const sw__prep *sort_ctx; /* prep is single-threaded */

static size_t source_rank(const char *source) {
  for (size_t i = 0; i < sort_ctx->n_source_names; i++)
    if (sort_ctx->source_names[i] == source) return i;
  return SIZE_MAX;
}

static int by_position(const void *a, const void *b) {
  const sw__quarantined *x = a, *y = b;
  size_t rx = source_rank(x->source), ry = source_rank(y->source);
  if (rx != ry) return rx < ry ? -1 : 1;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  return strcmp(x->line, y->line);
}

/* quarantine.jsonl in the order of the input: by source file, then byte offset. */
static sw_status write_quarantine(sw__prep *p, const char *dir) {
  sort_ctx = p;
  if (p->n_quarantine_lines) qsort(p->quarantine, p->n_quarantine_lines, sizeof *p->quarantine, by_position);
  sw_buf b = {0};
  sw_status st = sw_buf_append(&b, "", 0);
  for (size_t i = 0; i < p->n_quarantine_lines && !st; i++) {
    st = sw_buf_append(&b, p->quarantine[i].line, strlen(p->quarantine[i].line));
    if (!st) st = sw_buf_append(&b, "\n", 1);
  }
  char *path = st ? NULL : sw_path_join(dir, "quarantine.jsonl");
  if (!st && !path) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw_atomic_write(path, b.data, b.len);
  sw_free(path);
  sw_buf_free(&b);
  return st;
}

static sw_status write_json(const char *dir, const char *name, const json_t *v) {
  char *path = sw_path_join(dir, name);
  if (!path) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_json_write_file(path, v);
  sw_free(path);
  return st;
}

static json_t *settings_json(const sw__prep *p, const char *split_spec) {
  const sw_prep_options *o = p->opt;
  return json_pack("{s:s, s:I, s:s, s:s?, s:f, s:f, s:s?, s:s?}", "kind", o->kind, "seed",
                   (json_int_t)o->seed, "split", split_spec, "label", p->label, "max_z", p->max_z,
                   "max_quarantine_fraction",
                   o->max_quarantine_fraction < 0 ? DEFAULT_MAX_QUARANTINE : o->max_quarantine_fraction,
                   "schema", o->schema_path, "test_input", o->test_path);
}

/* Builds the whole dataset in tmp, then renames it to out_dir. */
static sw_status write_dataset(sw__prep *p, const char *split_spec, json_t *report) {
  const sw_prep_options *o = p->opt;
  sw_status st = SW_STATUS_OK;
  char *parent = sw_path_dirname(o->out_dir);
  char *tmp = sw_asprintf("%s.tmp-XXXXXX", o->out_dir);
  char *old = NULL;
  json_t *splits = json_object(), *stats = json_object(), *schema = NULL, *manifest = NULL;
  if (!parent || !tmp) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  st = sw_mkdir_p(parent);
  if (st) goto out;
  if (!mkdtemp(tmp)) {
    st = sw_error(SW_STATUS_IO, "create %s: %s", tmp, strerror(errno));
    sw_free(tmp);
    tmp = NULL;
    goto out;
  }
  chmod(tmp, 0755);
  int train = sw__prep_split_index(p, "train");
  size_t n_train = 0;
  for (size_t i = 0; i < p->n_records; i++)
    if (!p->records[i].quarantined && p->records[i].split == train) n_train++;
  int train_shards = o->shards > 0 ? o->shards : DEFAULT_SHARDS;
  json_t *split_counts = json_object();
  int total_shards = 0;
  for (int s = 0; s < p->n_splits; s++) {
    size_t n = 0;
    for (size_t i = 0; i < p->n_records; i++)
      if (!p->records[i].quarantined && p->records[i].split == s) n++;
    int shards = train_shards;
    if (s != train && n_train > 0) {
      shards = (int)llround((double)train_shards * (double)n / (double)n_train);
      if (shards < 1) shards = 1;
    }
    json_t *entry = NULL;
    st = write_split(p, tmp, s, shards, &entry);
    if (st) {
      json_decref(split_counts);
      goto out;
    }
    total_shards += (int)json_array_size(json_object_get(entry, "shards"));
    json_object_set_new(split_counts, p->split_names[s], json_integer((json_int_t)n));
    json_object_set_new(splits, p->split_names[s], entry);
    json_object_set_new(stats, p->split_names[s], sw__split_stats(p, s));
  }
  schema = sw_schema_to_json(p->schema);
  json_t *stats_doc = json_pack("{s:i, s:O}", "version", 1, "splits", stats);
  st = write_json(tmp, "schema.json", schema);
  if (!st) st = write_json(tmp, "stats.json", stats_doc);
  if (!st) st = write_quarantine(p, tmp);
  json_t *counts = json_pack("{s:I, s:I, s:I, s:O}", "read", (json_int_t)p->n_read, "accepted",
                             (json_int_t)(p->n_read - p->n_quarantined), "quarantined",
                             (json_int_t)p->n_quarantined, "quarantined_by_reason", p->reasons);
  manifest = json_pack("{s:s, s:i, s:s, s:{s:s, s:s, s:O}, s:o, s:o, s:o, s:o, s:s, s:s, s:s}",
                       "format", "slipway-dataset", "version", 1, "created_by", "slipway " SW_VERSION,
                       "source", "kind", o->kind, "path", o->path, "files", p->source_files,
                       "settings", settings_json(p, split_spec), "counts", counts, "splits", splits,
                       "transform", sw__transform(p, json_object_get(stats, "train")),
                       "schema", "schema.json", "stats", "stats.json", "quarantine",
                       "quarantine.jsonl");
  splits = NULL; /* the manifest holds it now */
  json_decref(stats_doc);
  if (st) goto out;
  if (!manifest) {
    st = sw_error(SW_STATUS_NOMEM, "cannot build the manifest");
    goto out;
  }
  st = write_json(tmp, "manifest.json", manifest);
  if (st) goto out;
  st = sw_fsync_dir(tmp);
  if (st) goto out;
  /* into place: an existing dataset (with --overwrite) is moved aside first */
  if (sw_path_exists(o->out_dir)) {
    old = sw_asprintf("%s.old-%ld", o->out_dir, (long)getpid());
    if (!old) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    if (rename(o->out_dir, old) != 0) {
      st = sw_error(SW_STATUS_IO, "move %s aside: %s", o->out_dir, strerror(errno));
      goto out;
    }
  }
  if (rename(tmp, o->out_dir) != 0) {
    st = sw_error(SW_STATUS_IO, "rename %s to %s: %s", tmp, o->out_dir, strerror(errno));
    if (old) rename(old, o->out_dir);
    goto out;
  }
  sw_free(tmp);
  tmp = NULL;
  st = sw_fsync_dir(parent);
  if (old) sw_remove_tree(old);
  json_object_set_new(report, "splits", split_counts);
  json_object_set_new(report, "shards", json_integer(total_shards));
out:
  if (tmp) sw_remove_tree(tmp);
  json_decref(manifest);
  json_decref(schema);
  json_decref(stats);
  json_decref(splits);
  sw_free(old);
  sw_free(tmp);
  sw_free(parent);
  return st;
}

static void prep_free(sw__prep *p) {
  for (size_t i = 0; i < p->n_records; i++) {
    sw_example_clear(&p->records[i].ex);
    sw_free(p->records[i].raw);
  }
  sw_free(p->records);
  sw_schema_free(p->schema);
  json_decref(p->reasons);
  json_decref(p->examples);
  json_decref(p->source_files);
  for (size_t i = 0; i < p->n_quarantine_lines; i++) sw_free(p->quarantine[i].line);
  sw_free(p->quarantine);
  for (size_t i = 0; i < p->n_source_names; i++) sw_free(p->source_names[i]);
  sw_free(p->source_names);
  for (int i = 0; i < p->n_splits; i++) sw_free(p->split_names[i]);
}

sw_status sw_prep_run(const sw_prep_options *opt, json_t **report_out) {
  *report_out = NULL;
  sw__prep p;
  memset(&p, 0, sizeof p);
  p.opt = opt;
  p.ingest_split = -1;
  p.reasons = json_object();
  p.examples = json_array();
  p.source_files = json_array();
  json_t *report = json_object();
  sw_status st = SW_STATUS_OK;
  char split_spec[256];
  bool tabular = !strcmp(opt->kind, "csv") || !strcmp(opt->kind, "jsonl");

  if (!opt->path || !opt->out_dir) {
    st = sw_error(SW_STATUS_INVALID, "prep needs an input and an output directory");
    goto out;
  }
  if (sw_path_exists(opt->out_dir) && !opt->overwrite) {
    st = sw_error(SW_STATUS_EXISTS, "%s already exists (use --overwrite to replace it)", opt->out_dir);
    goto out;
  }
  if (!sw_path_exists(opt->path)) {
    st = sw_error(SW_STATUS_NOT_FOUND, "input %s does not exist", opt->path);
    goto out;
  }
  p.max_z = opt->max_z < 0 ? (tabular ? DEFAULT_MAX_Z : 0) : opt->max_z;
  if (opt->schema_path) {
    p.schema_given = true;
    st = sw_schema_load(opt->schema_path, &p.schema);
    if (st) goto out;
  }
  p.label = opt->label;

  if (!strcmp(opt->kind, "csv")) st = sw__ingest_csv(&p);
  else if (!strcmp(opt->kind, "jsonl")) st = sw__ingest_jsonl(&p);
  else if (!strcmp(opt->kind, "idx")) st = sw__ingest_idx(&p);
  else if (!strcmp(opt->kind, "wav")) st = sw__ingest_wav(&p);
  else if (!strcmp(opt->kind, "tfrecord")) st = sw__ingest_tfrecord(&p);
  else st = sw_error(SW_STATUS_INVALID, "unknown input kind '%s' (csv, jsonl, idx, wav, tfrecord)", opt->kind);
  if (st) goto out;
  if (!p.schema) {
    st = sw_error(SW_STATUS_FORMAT, "%s: no records to infer a schema from", opt->path);
    goto out;
  }
  if (p.schema->label >= 0) p.label = p.schema->features[p.schema->label].name;
  if (opt->test_path) {
    /* the second input is read against the schema the first one gave, its records fixed
       to the test split; p.opt points at a copy naming it while it is read */
    sw_prep_options topt = *opt;
    topt.path = opt->test_path;
    if (strcmp(opt->kind, "csv") && strcmp(opt->kind, "jsonl") && strcmp(opt->kind, "wav")) {
      st = sw_error(SW_STATUS_INVALID, "--test-input is for csv, jsonl and wav inputs, not %s", opt->kind);
      goto out;
    }
    if (!sw_path_exists(opt->test_path)) {
      st = sw_error(SW_STATUS_NOT_FOUND, "test input %s does not exist", opt->test_path);
      goto out;
    }
    size_t before = p.n_read;
    p.opt = &topt;
    p.ingest_split = SW__SPLIT_TEST;
    if (!strcmp(opt->kind, "csv")) st = sw__ingest_csv(&p);
    else if (!strcmp(opt->kind, "jsonl")) st = sw__ingest_jsonl(&p);
    else st = sw__ingest_wav(&p);
    p.opt = opt;
    p.ingest_split = -1;
    if (st) goto out;
    if (p.n_read == before) {
      st = sw_error(SW_STATUS_FORMAT, "test input %s holds no records", opt->test_path);
      goto out;
    }
    p.source_has_test = true;
  }

  /* splits: the sources that fix some (idx's test, a dataset's shards) did so already */
  if (opt->split_spec) snprintf(split_spec, sizeof split_spec, "%s", opt->split_spec);
  else snprintf(split_spec, sizeof split_spec, "%s",
                p.source_has_test ? "train=0.9,val=0.1" : "train=0.8,val=0.1,test=0.1");
  if (p.n_splits == 0) {
    st = parse_splits(&p, split_spec);
    if (st) goto out;
  }
  if (p.source_has_test) {
    /* the source's own test split comes on top of --split's names */
    if (sw__prep_split_index(&p, "test") >= 0) {
      st = sw_error(SW_STATUS_INVALID,
                    "%s gives the test split: --split may name the other splits only",
                    opt->test_path ? "--test-input" : opt->path);
      goto out;
    }
    if (p.n_splits == SW__MAX_SPLITS) {
      st = sw_error(SW_STATUS_INVALID, "--split: too many splits");
      goto out;
    }
    p.split_names[p.n_splits] = sw_strdup("test");
    p.split_fracs[p.n_splits++] = 0;
  }
  /* resolve the fixed split names the source used */
  for (size_t i = 0; i < p.n_records; i++) {
    sw__record *r = &p.records[i];
    if (r->fixed_split == SW__SPLIT_TEST) r->fixed_split = sw__prep_split_index(&p, "test");
  }

  /* every record against the schema */
  for (size_t i = 0; i < p.n_records; i++) {
    sw__record *r = &p.records[i];
    char feature[256], detail[512];
    const char *reason = sw__validate_example(p.schema, &r->ex, feature, sizeof feature, detail,
                                              sizeof detail);
    if (reason) {
      st = quarantine_record(&p, r, reason, feature, detail);
      if (st) goto out;
    }
  }
  st = assign_splits(&p);
  if (st) goto out;
  if (p.max_z > 0) {
    st = quarantine_outliers(&p);
    if (st) goto out;
  }
  if (!p.schema_given) record_ranges(&p);

  json_object_set_new(report, "input", json_pack("{s:s, s:s}", "kind", opt->kind, "path", opt->path));
  json_object_set_new(report, "read", json_integer((json_int_t)p.n_read));
  json_object_set_new(report, "accepted", json_integer((json_int_t)(p.n_read - p.n_quarantined)));
  json_object_set_new(report, "quarantined", json_integer((json_int_t)p.n_quarantined));
  json_object_set_new(report, "quarantined_by_reason", json_incref(p.reasons));
  json_object_set_new(report, "quarantine_examples", json_incref(p.examples));
  double max_frac = opt->max_quarantine_fraction < 0 ? DEFAULT_MAX_QUARANTINE : opt->max_quarantine_fraction;
  if (p.n_read == 0) {
    st = sw_error(SW_STATUS_FORMAT, "%s holds no records", opt->path);
    goto out;
  }
  double frac = (double)p.n_quarantined / (double)p.n_read;
  if (frac > max_frac) {
    json_object_set_new(report, "refused", json_true());
    st = sw_error(SW_STATUS_REFUSED,
                  "%llu of %llu records (%.2f%%) failed validation, more than --max-quarantine-fraction "
                  "%.2f%%: no dataset written",
                  (unsigned long long)p.n_quarantined, (unsigned long long)p.n_read, 100 * frac,
                  100 * max_frac);
    goto out;
  }
  if (p.n_read == p.n_quarantined) {
    st = sw_error(SW_STATUS_REFUSED, "every record failed validation");
    goto out;
  }
  st = write_dataset(&p, split_spec, report);
  if (st) goto out;
  json_object_set_new(report, "out", json_string(opt->out_dir));
out:
  prep_free(&p);
  if (st && st != SW_STATUS_REFUSED) {
    json_decref(report);
    return st;
  }
  *report_out = report;
  return st;
}
