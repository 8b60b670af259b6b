/* The registry as the server's catalog: every registered version with its aliases and
 * artifact, the default policy (the version the production alias points at, else the
 * latest that is not rejected or rolled back, as TensorFlow Serving serves the latest),
 * and the registry's event counter as the cheap change check, so the server follows an
 * alias move within one --poll. */
#include <string.h>

#include "slipway/registry.h"
#include "slipway/serve.h"

typedef struct {
  sw_registry *reg;
} registry_catalog;

static bool has_label(const sw_catalog_version *v, const char *label) {
  for (size_t i = 0; i < v->n_labels; i++)
    if (!strcmp(v->labels[i], label)) return true;
  return false;
}

static sw_status registry_list(void *self, sw_catalog_version **out, size_t *n_out) {
  registry_catalog *rc = self;
  *out = NULL;
  *n_out = 0;
  json_t *list = NULL;
  sw_status st = sw_registry_list(rc->reg, NULL, &list);
  if (st) return st;
  size_t n = json_array_size(list);
  sw_catalog_version *v = sw_calloc(n ? n : 1, sizeof *v);
  bool *excluded = sw_calloc(n ? n : 1, sizeof *excluded);
  if (!v || !excluded) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n && !st; i++, k++) {
    const json_t *e = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *sha = json_string_value(json_object_get(e, "artifact_sha256"));
    const char *state = json_string_value(json_object_get(e, "state"));
    json_int_t version = json_integer_value(json_object_get(e, "version"));
    const json_t *aliases = json_object_get(e, "aliases");
    if (!name || !sha || strlen(sha) != SW_SHA256_HEX_LEN - 1 || version <= 0) {
      st = sw_error(SW_STATUS_CORRUPT, "the registry lists a version without a name, version or artifact");
      break;
    }
    char ref[SW_MODEL_NAME_MAX + 32];
    snprintf(ref, sizeof ref, "%s:%lld", name, (long long)version);
    json_t *full = NULL;
    st = sw_registry_get_version(rc->reg, ref, &full);
    const char *path = json_string_value(json_object_get(json_object_get(full, "artifact"), "path"));
    if (!st && !path) st = sw_error(SW_STATUS_CORRUPT, "%s: no artifact path", ref);
    if (!st) {
      v[k].name = sw_strdup(name);
      v[k].path = sw_strdup(path);
      v[k].version = version;
      memcpy(v[k].sha256, sha, SW_SHA256_HEX_LEN);
      size_t na = json_array_size(aliases);
      if (na) v[k].labels = sw_calloc(na, sizeof *v[k].labels);
      for (size_t a = 0; a < na && v[k].labels; a++) {
        v[k].labels[a] = sw_strdup(json_string_value(json_array_get(aliases, a)) ?: "");
        if (v[k].labels[a]) v[k].n_labels = a + 1;
      }
      excluded[k] = state && (!strcmp(state, "rejected") || !strcmp(state, "rolled_back"));
      if (!v[k].name || !v[k].path || (na && v[k].n_labels != na)) st = sw_error(SW_STATUS_NOMEM, "out of memory");
    }
    json_decref(full);
  }
  json_decref(list);
  if (st) {
    sw_catalog_versions_free(v, n);
    sw_free(excluded);
    return st;
  }
  /* the default policy, per model */
  for (size_t i = 0; i < n; i++) {
    size_t pick = SIZE_MAX;
    for (size_t j = 0; j < n; j++) {
      if (strcmp(v[j].name, v[i].name)) continue;
      if (has_label(&v[j], "production")) {
        pick = j;
        break;
      }
      if (!excluded[j] && (pick == SIZE_MAX || v[j].version > v[pick].version)) pick = j;
    }
    v[i].serve = pick == i;
  }
  sw_free(excluded);
  *out = v;
  *n_out = n;
  return SW_STATUS_OK;
}

static sw_status registry_generation(void *self, uint64_t *out) {
  registry_catalog *rc = self;
  int64_t id = 0;
  sw_status st = sw_registry_change_counter(rc->reg, &id);
  if (!st) *out = (uint64_t)id;
  return st;
}

static void registry_free(void *self) {
  registry_catalog *rc = self;
  if (!rc) return;
  sw_registry_close(rc->reg);
  sw_free(rc);
}

static const sw_catalog_ops registry_ops = {registry_list, registry_generation, registry_free};

sw_status sw_registry_catalog_new(const char *url, const char *home, sw_catalog *out) {
  registry_catalog *rc = sw_calloc(1, sizeof *rc);
  if (!rc) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_registry_open(url, home, &rc->reg);
  if (st) {
    sw_free(rc);
    return st;
  }
  out->ops = &registry_ops;
  out->self = rc;
  return SW_STATUS_OK;
}
