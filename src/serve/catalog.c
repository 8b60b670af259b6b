/* Catalogs of servable versions: the shared helpers, and the catalog of ONNX files
 * named on the command line (what `tensorflow_model_server --model_base_path` users
 * expect; the registry-backed catalog sits beside it behind the same table). */
#include <string.h>

#include "slipway/serve.h"

void sw_catalog_version_clear(sw_catalog_version *v) {
  if (!v) return;
  sw_free(v->name);
  sw_free(v->path);
  for (size_t i = 0; i < v->n_labels; i++) sw_free(v->labels[i]);
  sw_free(v->labels);
  memset(v, 0, sizeof *v);
}

void sw_catalog_versions_free(sw_catalog_version *v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) sw_catalog_version_clear(&v[i]);
  sw_free(v);
}

sw_status sw_catalog_version_copy(const sw_catalog_version *src, sw_catalog_version *dst) {
  memset(dst, 0, sizeof *dst);
  dst->version = src->version;
  dst->serve = src->serve;
  memcpy(dst->sha256, src->sha256, sizeof dst->sha256);
  dst->name = sw_strdup(src->name);
  dst->path = sw_strdup(src->path ? src->path : "");
  if (src->n_labels) dst->labels = sw_calloc(src->n_labels, sizeof *dst->labels);
  bool ok = dst->name && dst->path && (!src->n_labels || dst->labels);
  for (size_t i = 0; ok && i < src->n_labels; i++) {
    dst->labels[i] = sw_strdup(src->labels[i]);
    ok = dst->labels[i] != NULL;
    dst->n_labels = i + 1;
  }
  if (ok) return SW_STATUS_OK;
  sw_catalog_version_clear(dst);
  return sw_error(SW_STATUS_NOMEM, "out of memory");
}

void sw_catalog_close(sw_catalog *c) {
  if (!c || !c->ops) return;
  c->ops->free(c->self);
  c->ops = NULL;
  c->self = NULL;
}

/* ---- the file catalog ------------------------------------------------------------ */

struct sw_file_catalog {
  sw_catalog_version *v;
  size_t n;
};

static sw_status file_list(void *self, sw_catalog_version **out, size_t *n) {
  struct sw_file_catalog *fc = self;
  *out = NULL;
  *n = 0;
  sw_catalog_version *v = sw_calloc(fc->n ? fc->n : 1, sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < fc->n; i++) {
    sw_status st = sw_catalog_version_copy(&fc->v[i], &v[i]);
    if (st) {
      sw_catalog_versions_free(v, i);
      return st;
    }
  }
  /* the default policy: the version labelled production, else the latest */
  for (size_t i = 0; i < fc->n; i++) {
    size_t pick = SIZE_MAX;
    for (size_t j = 0; j < fc->n; j++) {
      if (strcmp(v[j].name, v[i].name)) continue;
      bool prod = false;
      for (size_t l = 0; l < v[j].n_labels; l++) prod |= !strcmp(v[j].labels[l], "production");
      if (prod) {
        pick = j;
        break;
      }
      if (pick == SIZE_MAX || v[j].version > v[pick].version) pick = j;
    }
    v[i].serve = pick == i;
  }
  *out = v;
  *n = fc->n;
  return SW_STATUS_OK;
}

static sw_status file_generation(void *self, uint64_t *out) {
  (void)self;
  *out = 1; /* the files are named once, at start */
  return SW_STATUS_OK;
}

static void file_free(void *self) {
  struct sw_file_catalog *fc = self;
  if (!fc) return;
  sw_catalog_versions_free(fc->v, fc->n);
  sw_free(fc);
}

static const sw_catalog_ops file_ops = {file_list, file_generation, file_free};

sw_status sw_file_catalog_new(sw_catalog *out) {
  struct sw_file_catalog *fc = sw_calloc(1, sizeof *fc);
  if (!fc) return sw_error(SW_STATUS_NOMEM, "out of memory");
  out->ops = &file_ops;
  out->self = fc;
  return SW_STATUS_OK;
}

sw_status sw_file_catalog_add_file(sw_catalog *c, const char *name, const char *path) {
  SW_ASSERT(c->ops == &file_ops);
  struct sw_file_catalog *fc = c->self;
  if (!sw_serve_name_valid(name, strlen(name)))
    return sw_error(SW_STATUS_INVALID, "'%s' is not a model name (1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)", name);
  char hex[SW_SHA256_HEX_LEN];
  sw_status st = sw_sha256_file_hex(path, hex);
  if (st) return st;
  int64_t version = 1;
  for (size_t i = 0; i < fc->n; i++)
    if (!strcmp(fc->v[i].name, name)) version++;
  sw_catalog_version *v = sw_realloc(fc->v, (fc->n + 1) * sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  fc->v = v;
  sw_catalog_version e = {.name = (char *)name, .version = version, .path = (char *)path};
  memcpy(e.sha256, hex, sizeof hex);
  st = sw_catalog_version_copy(&e, &fc->v[fc->n]);
  if (!st) fc->n++;
  return st;
}

sw_status sw_file_catalog_add_label(sw_catalog *c, const char *name, const char *label, int64_t version) {
  SW_ASSERT(c->ops == &file_ops);
  struct sw_file_catalog *fc = c->self;
  if (!sw_serve_name_valid(label, strlen(label))) return sw_error(SW_STATUS_INVALID, "'%s' is not a label name", label);
  sw_catalog_version *target = NULL;
  for (size_t i = 0; i < fc->n; i++) {
    sw_catalog_version *v = &fc->v[i];
    if (strcmp(v->name, name)) continue;
    if (v->version == version) target = v;
    for (size_t l = 0; l < v->n_labels; l++)
      if (!strcmp(v->labels[l], label)) return sw_error(SW_STATUS_INVALID, "label %s@%s is given twice", name, label);
  }
  if (!target) return sw_error(SW_STATUS_NOT_FOUND, "label %s@%s: model %s has no version %lld", name, label, name, (long long)version);
  char **l = sw_realloc(target->labels, (target->n_labels + 1) * sizeof *l);
  if (!l) return sw_error(SW_STATUS_NOMEM, "out of memory");
  target->labels = l;
  l[target->n_labels] = sw_strdup(label);
  if (!l[target->n_labels]) return sw_error(SW_STATUS_NOMEM, "out of memory");
  target->n_labels++;
  return SW_STATUS_OK;
}
