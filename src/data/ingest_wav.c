/* Audio: a folder of class-named subfolders of 16-bit PCM WAV files becomes MFCC
 * features (float [frames, coeffs]) and a label whose class names are the folder names
 * in sorted order. A file that cannot be decoded is quarantined with its reason. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data_int.h"

typedef struct {
  int rate;
  sw__mfcc *m;
} mfcc_plan;

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted entries of dir: subdirectories (want_dirs) or *.wav files. */
static sw_status list(const char *dir, bool want_dirs, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return sw_error(SW_STATUS_IO, "opendir %s: %s", dir, strerror(errno));
  sw_status st = SW_STATUS_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char *path = sw_path_join(dir, e->d_name);
    if (!path) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    size_t len = strlen(e->d_name);
    bool keep = want_dirs ? sw_path_is_dir(path)
                          : (!sw_path_is_dir(path) && len > 4 && !strcasecmp(e->d_name + len - 4, ".wav"));
    sw_free(path);
    if (!keep) continue;
    char **v = sw_realloc(*out, (*n + 1) * sizeof *v);
    if (!v || !(v[*n] = sw_strdup(e->d_name))) {
      if (v) *out = v;
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    *out = v;
    (*n)++;
  }
  closedir(d);
  if (!st && *n) qsort(*out, *n, sizeof **out, cmp_strp);
  return st;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) sw_free(v[i]);
  sw_free(v);
}

static sw_status build_schema(sw__prep *p, char **classes, size_t n_classes, int frames, int coeffs) {
  sw_schema *s = sw_calloc(1, sizeof *s);
  if (!s || !(s->features = sw_calloc(2, sizeof *s->features))) {
    sw_free(s);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  s->n_features = 2;
  s->label = 1;
  sw_feature_spec *m = &s->features[0], *l = &s->features[1];
  m->name = sw_strdup("mfcc");
  m->kind = SW_FEATURE_KIND_FLOAT;
  m->rank = 2;
  m->shape[0] = frames;
  m->shape[1] = coeffs;
  m->required = true;
  l->name = sw_strdup("label");
  l->kind = SW_FEATURE_KIND_INT64;
  l->required = l->is_label = true;
  l->class_names = sw_calloc(n_classes, sizeof *l->class_names);
  sw_status st = (m->name && l->name && l->class_names) ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t k = 0; !st && k < n_classes; k++) {
    l->class_names[k] = sw_strdup(classes[k]);
    if (!l->class_names[k]) st = sw_error(SW_STATUS_NOMEM, "out of memory");
    l->n_classes = k + 1;
  }
  if (st) {
    sw_schema_free(s);
    return st;
  }
  p->schema = s;
  return SW_STATUS_OK;
}

sw_status sw__ingest_wav(sw__prep *p) {
  const sw_prep_options *o = p->opt;
  sw__mfcc_options mo = {.frames = o->mfcc_frames > 0 ? o->mfcc_frames : 100,
                         .coeffs = o->mfcc_coeffs > 0 ? o->mfcc_coeffs : 13,
                         .mel_bands = o->mel_bands > 0 ? o->mel_bands : 40,
                         .frame_ms = 25,
                         .hop_ms = 10,
                         .trim_db = 40};
  char **classes = NULL;
  size_t n_classes = 0;
  mfcc_plan *plans = NULL;
  size_t n_plans = 0;
  float *feat = NULL;
  sw_status st;
  if (!sw_path_is_dir(o->path)) return sw_error(SW_STATUS_INVALID, "wav input %s must be a directory of class folders", o->path);
  st = list(o->path, true, &classes, &n_classes);
  if (st) goto out;
  if (n_classes == 0) {
    st = sw_error(SW_STATUS_NOT_FOUND, "%s holds no class folders", o->path);
    goto out;
  }
  if (!p->schema) {
    st = build_schema(p, classes, n_classes, mo.frames, mo.coeffs);
    if (st) goto out;
  }
  feat = sw_malloc((size_t)mo.frames * (size_t)mo.coeffs * sizeof *feat);
  if (!feat) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  const sw_feature_spec *lf = p->schema->label >= 0 ? &p->schema->features[p->schema->label] : NULL;
  for (size_t c = 0; c < n_classes; c++) {
    /* the label is the folder's index among the schema's class names, which are this
       folder's own names only when the schema came from it: a --test-input folder or a
       --schema may lack some classes */
    int64_t y = -1;
    for (size_t k = 0; lf && k < lf->n_classes; k++)
      if (!strcmp(lf->class_names[k], classes[c])) y = (int64_t)k;
    char *cdir = sw_path_join(o->path, classes[c]);
    char **files = NULL;
    size_t n_files = 0;
    st = cdir ? list(cdir, false, &files, &n_files) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_progress *bar = sw_progress_begin(classes[c], n_files);
    for (size_t f = 0; !st && f < n_files; f++) {
      char *path = sw_path_join(cdir, files[f]);
      const char *source;
      uint8_t *data = NULL;
      size_t len = 0;
      float *samples = NULL;
      size_t n = 0;
      int rate = 0;
      st = path ? sw__prep_source(p, path, &source) : sw_error(SW_STATUS_NOMEM, "out of memory");
      if (!st) st = sw_read_file(path, &data, &len);
      sw__location loc = {st ? path : source, 0, 0};
      sw_status dec = st ? st : sw__wav_decode(data, len, &samples, &n, &rate);
      if (!st && (dec == SW_STATUS_FORMAT || dec == SW_STATUS_UNSUPPORTED)) {
        st = sw__quarantine(p, &loc, dec == SW_STATUS_FORMAT ? SW_REASON_MALFORMED : SW_REASON_UNSUPPORTED, NULL,
                            sw_last_error(), data, len, true);
      } else if (!st && dec) {
        st = dec;
      } else if (!st && y < 0) {
        char detail[320];
        snprintf(detail, sizeof detail, "class folder '%.256s' is not one of the schema's classes", classes[c]);
        st = sw__quarantine(p, &loc, SW_REASON_BAD_LABEL, "label", detail, data, len, true);
      } else if (!st) {
        sw__mfcc *m = NULL;
        for (size_t k = 0; k < n_plans; k++)
          if (plans[k].rate == rate) m = plans[k].m;
        if (!m) {
          mfcc_plan *v = sw_realloc(plans, (n_plans + 1) * sizeof *v);
          st = v ? sw__mfcc_new(&mo, rate, &m) : sw_error(SW_STATUS_NOMEM, "out of memory");
          if (v) plans = v;
          if (!st) plans[n_plans++] = (mfcc_plan){rate, m};
        }
        sw_status mst = st ? st : sw__mfcc_compute(m, samples, n, feat);
        if (!st && mst == SW_STATUS_TRUNCATED) {
          st = sw__quarantine(p, &loc, SW_REASON_TOO_SHORT, NULL, sw_last_error(), data, len, true);
        } else if (!st && mst) {
          st = mst;
        } else if (!st) {
          sw_example ex = {0};
          st = sw_example_add_float(&ex, "mfcc", feat, (size_t)mo.frames * (size_t)mo.coeffs);
          if (!st) st = sw_example_add_int64(&ex, "label", &y, 1);
          if (!st) st = sw__prep_add(p, &loc, &ex, p->ingest_split, NULL, 0);
          sw_example_clear(&ex);
        }
      }
      sw_free(samples);
      sw_free(data);
      sw_free(path);
      sw_progress_update(bar, f + 1);
    }
    sw_progress_end(bar);
    free_list(files, n_files);
    sw_free(cdir);
    if (st) goto out;
  }
out:
  for (size_t k = 0; k < n_plans; k++) sw__mfcc_free(plans[k].m);
  sw_free(plans);
  sw_free(feat);
  free_list(classes, n_classes);
  return st;
}
