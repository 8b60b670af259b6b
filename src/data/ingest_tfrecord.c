/* TFRecord sources: one file, a directory of them, or a slipway dataset (whose schema
 * and splits are kept), re-validated record by record. A record whose data CRC fails
 * is quarantined and reading goes on after it; a bad header or a truncated end
 * quarantines what is left of that file, since no later frame can be found. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

#define MAX_CLASSES 1000

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

typedef struct {
  char *path;
  int split; /* fixed split index, or -1 */
} input_file;

static sw_status add_file(input_file **v, size_t *n, char *path, int split) {
  if (!path) return sw_error(SW_STATUS_NOMEM, "out of memory");
  input_file *f = sw_realloc(*v, (*n + 1) * sizeof *f);
  if (!f) {
    sw_free(path);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  *v = f;
  f[*n].path = path;
  f[*n].split = split;
  (*n)++;
  return SW_STATUS_OK;
}

/* A slipway dataset: its shards with their splits, and its schema unless one was given. */
static sw_status list_dataset(sw__prep *p, const char *dir, input_file **files, size_t *n) {
  char *mpath = sw_path_join(dir, "manifest.json");
  json_t *m = NULL;
  sw_status st = mpath ? sw_json_load_file(mpath, &m) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  const json_t *splits = json_object_get(m, "splits");
  if (!json_is_object(splits)) {
    st = sw_error(SW_STATUS_FORMAT, "%s: no \"splits\"", mpath);
    goto out;
  }
  const char *name;
  const json_t *sj;
  json_object_foreach((json_t *)splits, name, sj) {
    if (p->n_splits == SW__MAX_SPLITS) {
      st = sw_error(SW_STATUS_FORMAT, "%s: too many splits", mpath);
      goto out;
    }
    p->split_names[p->n_splits] = sw_strdup(name);
    p->split_fracs[p->n_splits] = json_real_value(json_object_get(sj, "fraction"));
    int split = p->n_splits++;
    size_t i;
    const json_t *sh;
    json_array_foreach(json_object_get(sj, "shards"), i, sh) {
      const char *file = json_string_value(json_object_get(sh, "file"));
      if (!file || strchr(file, '/') || !strcmp(file, "..")) {
        st = sw_error(SW_STATUS_FORMAT, "%s: a shard of '%s' has no plain file name", mpath, name);
        goto out;
      }
      st = add_file(files, n, sw_path_join(dir, file), split);
      if (st) goto out;
    }
  }
  if (!p->schema) {
    const char *sname = json_string_value(json_object_get(m, "schema"));
    if (!sname || strchr(sname, '/')) {
      st = sw_error(SW_STATUS_FORMAT, "%s: \"schema\" must be a plain file name", mpath);
      goto out;
    }
    char *spath = sw_path_join(dir, sname);
    st = spath ? sw_schema_load(spath, &p->schema) : sw_error(SW_STATUS_NOMEM, "out of memory");
    p->schema_given = true;
    sw_free(spath);
  }
out:
  json_decref(m);
  sw_free(mpath);
  return st;
}

static sw_status list_dir(const char *dir, input_file **files, size_t *n) {
  DIR *d = opendir(dir);
  if (!d) return sw_error(SW_STATUS_IO, "opendir %s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t k = 0;
  sw_status st = SW_STATUS_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!has_suffix(e->d_name, ".tfrecord") && !has_suffix(e->d_name, ".tfrecords")) continue;
    char **v = sw_realloc(names, (k + 1) * sizeof *v);
    if (!v || !(v[k] = sw_strdup(e->d_name))) {
      if (v) names = v;
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    names = v;
    k++;
  }
  closedir(d);
  if (!st && k == 0) st = sw_error(SW_STATUS_NOT_FOUND, "%s holds no .tfrecord files", dir);
  if (!st) qsort(names, k, sizeof *names, cmp_strp);
  for (size_t i = 0; i < k; i++) {
    if (!st) st = add_file(files, n, sw_path_join(dir, names[i]), -1);
    sw_free(names[i]);
  }
  sw_free(names);
  return st;
}

/* ---- schema inference from examples ------------------------------------------------ */

typedef struct {
  char *name;
  uint64_t present, by_kind[4];
  int64_t count; /* common value count, -1 when it varies, -2 before the first */
  sw__value_counts values;
  int64_t max_int, min_int;
} profile;

static sw_status infer(sw__prep *p, const sw__record *recs, size_t n_recs) {
  profile *pf = NULL;
  size_t n_pf = 0;
  sw_status st = SW_STATUS_OK;
  sw_schema *s = NULL;
  for (size_t r = 0; r < n_recs; r++) {
    const sw_example *ex = &recs[r].ex;
    for (size_t i = 0; i < ex->n_features; i++) {
      const sw_feature *f = &ex->features[i];
      profile *q = NULL;
      for (size_t k = 0; k < n_pf; k++)
        if (!strcmp(pf[k].name, f->name)) q = &pf[k];
      if (!q) {
        profile *v = sw_realloc(pf, (n_pf + 1) * sizeof *v);
        if (!v) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto out;
        }
        pf = v;
        q = &pf[n_pf++];
        memset(q, 0, sizeof *q);
        q->name = sw_strdup(f->name);
        q->count = -2;
        if (!q->name) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto out;
        }
      }
      if (f->count == 0) continue;
      q->present++;
      q->by_kind[f->kind]++;
      q->count = q->count == -2 || q->count == (int64_t)f->count ? (int64_t)f->count : -1;
      if (f->kind == SW_FEATURE_KIND_INT64)
        for (size_t k = 0; k < f->count; k++) {
          if (q->present == 1 && k == 0) q->min_int = q->max_int = f->v.i64[0];
          if (f->v.i64[k] < q->min_int) q->min_int = f->v.i64[k];
          if (f->v.i64[k] > q->max_int) q->max_int = f->v.i64[k];
        }
      if (f->kind == SW_FEATURE_KIND_BYTES)
        for (size_t k = 0; k < f->count; k++) sw__value_counts_add(&q->values, f->v.bytes[k].data, f->v.bytes[k].len);
    }
  }
  s = sw_calloc(1, sizeof *s);
  if (!s || !(s->features = sw_calloc(n_pf + 1, sizeof *s->features))) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  s->label = -1;
  const char *label = p->opt->label ? p->opt->label : "label";
  for (size_t k = 0; k < n_pf; k++) {
    profile *q = &pf[k];
    sw_feature_spec *f = &s->features[s->n_features++];
    f->name = sw_strdup(q->name);
    if (!f->name) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    int best = 1;
    for (int kind = 1; kind <= 3; kind++)
      if (q->by_kind[kind] > q->by_kind[best]) best = kind;
    f->kind = (sw_feature_kind)best;
    f->required = (double)q->present >= 0.99 * (double)n_recs;
    if (q->count != 1) {
      f->rank = 1;
      f->shape[0] = q->count > 0 ? q->count : -1;
    }
    if (f->kind == SW_FEATURE_KIND_BYTES) {
      st = sw__value_counts_list(&q->values, false, &f->values, &f->n_values);
      if (st) goto out;
    }
    if (!strcmp(q->name, label)) {
      if (f->rank != 0 || (f->kind != SW_FEATURE_KIND_INT64 && f->kind != SW_FEATURE_KIND_FLOAT)) {
        st = sw_error(SW_STATUS_UNSUPPORTED, "label '%s' must be one int or float per example", label);
        goto out;
      }
      f->is_label = true;
      f->required = true;
      s->label = (int)k;
      if (f->kind == SW_FEATURE_KIND_INT64 && q->min_int >= 0 && q->max_int < MAX_CLASSES) {
        st = sw__numbered_classes(f, (size_t)q->max_int + 1);
        if (st) goto out;
      }
    }
  }
  if (p->opt->label && s->label < 0) {
    st = sw_error(SW_STATUS_INVALID, "no feature named '%s' for --label", p->opt->label);
    goto out;
  }
  if (s->n_features == 0) {
    st = sw_error(SW_STATUS_FORMAT, "%s: no features to infer a schema from", p->opt->path);
    goto out;
  }
  p->schema = s;
  s = NULL;
out:
  sw_schema_free(s);
  for (size_t k = 0; k < n_pf; k++) {
    sw_free(pf[k].name);
    sw__value_counts_free(&pf[k].values);
  }
  sw_free(pf);
  return st;
}

static sw_status read_file(sw__prep *p, const input_file *in) {
  sw_tfrecord_reader *r = NULL;
  const char *source;
  sw_status st = sw__prep_source(p, in->path, &source);
  if (st) return st;
  st = sw_tfrecord_open(in->path, &r);
  if (st) return st;
  for (;;) {
    const uint8_t *data;
    size_t len;
    uint64_t off;
    st = sw_tfrecord_next(r, &data, &len, &off);
    if (st == SW_STATUS_EOF) {
      st = SW_STATUS_OK;
      break;
    }
    sw__location loc = {source, 0, off};
    if (st == SW_STATUS_CORRUPT || st == SW_STATUS_TRUNCATED) {
      char detail[512];
      snprintf(detail, sizeof detail, "%s", sw_last_error());
      const char *reason = st == SW_STATUS_CORRUPT ? SW_REASON_CORRUPT : SW_REASON_TRUNCATED;
      sw_status skip = sw_tfrecord_skip(r);
      if (skip) {
        /* nothing after this point can be framed: one entry for the rest of the file */
        size_t rest = (size_t)(sw_tfrecord_size(r) - off);
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail),
                 "; the last %zu bytes of the file cannot be read", rest);
      }
      st = sw__quarantine(p, &loc, reason, NULL, detail, NULL, 0, true);
      if (st) break;
      if (skip) break;
      continue;
    }
    if (st) break;
    sw_example ex;
    st = sw_example_decode(data, len, &ex);
    if (st == SW_STATUS_FORMAT) {
      const char *reason = strstr(sw_last_error(), "twice") ? SW_REASON_DUPLICATE_KEY : SW_REASON_MALFORMED;
      st = sw__quarantine(p, &loc, reason, NULL, sw_last_error(), data, len, true);
      if (st) break;
      continue;
    }
    if (st) break;
    st = sw__prep_add(p, &loc, &ex, in->split, NULL, 0);
    if (st) break;
  }
  sw_tfrecord_close(r);
  return st;
}

sw_status sw__ingest_tfrecord(sw__prep *p) {
  input_file *files = NULL;
  size_t n = 0;
  sw_status st = SW_STATUS_OK;
  const char *path = p->opt->path;
  if (sw_path_is_dir(path)) {
    char *m = sw_path_join(path, "manifest.json");
    bool dataset = m && sw_path_exists(m);
    sw_free(m);
    st = dataset ? list_dataset(p, path, &files, &n) : list_dir(path, &files, &n);
  } else {
    st = add_file(&files, &n, sw_strdup(path), -1);
  }
  for (size_t i = 0; i < n && !st; i++) st = read_file(p, &files[i]);
  if (!st && !p->schema && p->n_records > 0) st = infer(p, p->records, p->n_records);
  for (size_t i = 0; i < n; i++) sw_free(files[i].path);
  sw_free(files);
  return st;
}
