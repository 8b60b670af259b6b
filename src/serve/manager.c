/* The model manager: which versions are loaded, which one a request gets, and the swap.
 * A new version is loaded and warmed up while the old one serves; the swap is one
 * pointer change under the model's mutex; the old version is freed by whoever drops its
 * last reference, so requests that started on it finish on it. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

sw_status sw__manager_init(sw__manager *m, sw_catalog cat, const sw__version_opts *o, sw__stats *stats,
                           const char **only, size_t n_only) {
  memset(m, 0, sizeof *m);
  m->cat = cat;
  m->opts = *o;
  m->stats = stats;
  m->only = only;
  m->n_only = n_only;
  pthread_rwlock_init(&m->lock, NULL);
  pthread_mutex_init(&m->op, NULL);
  atomic_init(&m->ready, false);
  return SW_STATUS_OK;
}

static void model_free(sw__model *md) {
  if (!md) return;
  for (size_t i = 0; i < md->n_versions; i++) sw__version_unref(md->versions[i]);
  sw_free(md->versions);
  sw_free(md->by_admin);
  for (size_t i = 0; i < md->n_labels; i++) sw_free(md->labels[i].label);
  sw_free(md->labels);
  pthread_mutex_destroy(&md->mu);
  sw_free(md->name);
  sw_free(md);
}

void sw__manager_destroy(sw__manager *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_models; i++) model_free(m->models[i]);
  sw_free(m->models);
  sw_catalog_versions_free(m->known, m->n_known);
  sw_catalog_close(&m->cat);
  pthread_rwlock_destroy(&m->lock);
  pthread_mutex_destroy(&m->op);
  memset(m, 0, sizeof *m);
}

sw__model *sw__manager_find(sw__manager *m, const char *model) {
  sw__model *found = NULL;
  pthread_rwlock_rdlock(&m->lock);
  for (size_t i = 0; i < m->n_models && !found; i++)
    if (!strcmp(m->models[i]->name, model)) found = m->models[i];
  pthread_rwlock_unlock(&m->lock);
  return found;
}

static sw__model *find_or_add(sw__manager *m, const char *name) {
  sw__model *md = sw__manager_find(m, name);
  if (md) return md;
  md = sw_calloc(1, sizeof *md);
  if (!md || !(md->name = sw_strdup(name))) {
    sw_free(md);
    return NULL;
  }
  pthread_mutex_init(&md->mu, NULL);
  pthread_rwlock_wrlock(&m->lock);
  sw__model **a = sw_realloc(m->models, (m->n_models + 1) * sizeof *a);
  if (a) {
    m->models = a;
    a[m->n_models++] = md;
  }
  pthread_rwlock_unlock(&m->lock);
  if (!a) {
    model_free(md);
    return NULL;
  }
  return md;
}

/* Under md->mu. */
static void pick_default(sw__model *md) {
  sw__version *d = NULL;
  for (size_t i = 0; i < md->n_versions; i++) {
    if (md->versions[i]->version == md->policy_version) {
      d = md->versions[i];
      break;
    }
    d = md->versions[i]; /* ascending: the last is the latest */
  }
  md->dflt = d;
}

static sw__version *loaded(sw__model *md, int64_t version) {
  for (size_t i = 0; i < md->n_versions; i++)
    if (md->versions[i]->version == version) return md->versions[i];
  return NULL;
}

/* Adds a loaded version (the manager's reference) and picks the default again: the
 * swap. Under m->op. */
static sw_status insert(sw__model *md, sw__version *v, bool by_admin) {
  pthread_mutex_lock(&md->mu);
  sw__version **a = sw_realloc(md->versions, (md->n_versions + 1) * sizeof *a);
  bool *b = a ? sw_realloc(md->by_admin, (md->n_versions + 1) * sizeof *b) : NULL;
  if (a) md->versions = a;
  if (b) md->by_admin = b;
  if (!a || !b) {
    pthread_mutex_unlock(&md->mu);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  size_t pos = md->n_versions;
  while (pos > 0 && md->versions[pos - 1]->version > v->version) {
    md->versions[pos] = md->versions[pos - 1];
    md->by_admin[pos] = md->by_admin[pos - 1];
    pos--;
  }
  md->versions[pos] = v;
  md->by_admin[pos] = by_admin;
  md->n_versions++;
  pick_default(md);
  pthread_mutex_unlock(&md->mu);
  return SW_STATUS_OK;
}

/* Takes version out of the table; returns the manager's reference for the caller to
 * drop outside the lock (NULL when it was not loaded). */
static sw__version *take_out(sw__model *md, int64_t version) {
  sw__version *v = NULL;
  pthread_mutex_lock(&md->mu);
  for (size_t i = 0; i < md->n_versions; i++) {
    if (md->versions[i]->version != version) continue;
    v = md->versions[i];
    memmove(md->versions + i, md->versions + i + 1, (md->n_versions - i - 1) * sizeof *md->versions);
    memmove(md->by_admin + i, md->by_admin + i + 1, (md->n_versions - i - 1) * sizeof *md->by_admin);
    md->n_versions--;
    break;
  }
  pick_default(md);
  pthread_mutex_unlock(&md->mu);
  return v;
}

static const sw_catalog_version *known(const sw__manager *m, const char *model, int64_t version) {
  for (size_t i = 0; i < m->n_known; i++)
    if (!strcmp(m->known[i].name, model) && m->known[i].version == version) return &m->known[i];
  return NULL;
}

/* The version --model and the catalog's policy serve for model (0: none). */
static int64_t desired(const sw__manager *m, const char *model) {
  const char *sel = NULL;
  if (m->n_only) {
    for (size_t i = 0; i < m->n_only && !sel; i++) {
      size_t n = strcspn(m->only[i], ":@");
      if (strlen(model) == n && !strncmp(m->only[i], model, n)) sel = m->only[i] + n;
    }
    if (!sel) return 0;
  }
  for (size_t i = 0; i < m->n_known; i++) {
    const sw_catalog_version *v = &m->known[i];
    if (strcmp(v->name, model)) continue;
    if (sel && sel[0] == ':') {
      if (v->version == strtoll(sel + 1, NULL, 10)) return v->version;
    } else if (sel && sel[0] == '@') {
      for (size_t l = 0; l < v->n_labels; l++)
        if (!strcmp(v->labels[l], sel + 1)) return v->version;
    } else if (v->serve) {
      return v->version;
    }
  }
  return 0;
}

static sw_status load_version(sw__manager *m, const sw_catalog_version *cv, sw__version **out) {
  double t0 = sw_now();
  sw_status st = sw__version_load(cv->name, cv->version, cv->path, cv->sha256, &m->opts, m->stats, out);
  if (st) SW_LOGERR("serve: model %s version %lld: %s", cv->name, (long long)cv->version, sw_last_error());
  else SW_INFO("serve: loaded model %s version %lld (%.1f ms, %lld bytes, forward passes of up to %lld rows)", cv->name,
               (long long)cv->version, (sw_now() - t0) * 1e3, (long long)(*out)->mem_bytes, (long long)(*out)->chunk);
  return st;
}

static void set_labels(sw__manager *m, sw__model *md) {
  size_t n = 0;
  for (size_t i = 0; i < m->n_known; i++)
    if (!strcmp(m->known[i].name, md->name)) n += m->known[i].n_labels;
  sw__label *l = n ? sw_calloc(n, sizeof *l) : NULL;
  size_t k = 0;
  for (size_t i = 0; l && i < m->n_known; i++)
    if (!strcmp(m->known[i].name, md->name))
      for (size_t j = 0; j < m->known[i].n_labels; j++) {
        l[k].label = sw_strdup(m->known[i].labels[j]);
        l[k++].version = m->known[i].version;
      }
  pthread_mutex_lock(&md->mu);
  sw__label *old = md->labels;
  size_t n_old = md->n_labels;
  md->labels = l;
  md->n_labels = k;
  pthread_mutex_unlock(&md->mu);
  for (size_t i = 0; i < n_old; i++) sw_free(old[i].label);
  sw_free(old);
}

static sw_status reconcile_locked(sw__manager *m, bool force) {
  uint64_t gen = 0;
  sw_status st = m->cat.ops->generation(m->cat.self, &gen);
  if (st) return st;
  if (!force && m->have_generation && gen == m->generation) return SW_STATUS_OK;
  sw_catalog_version *list = NULL;
  size_t n = 0;
  st = m->cat.ops->list(m->cat.self, &list, &n);
  if (st) return st;
  sw_catalog_versions_free(m->known, m->n_known);
  m->known = list;
  m->n_known = n;
  bool all = true;
  /* every model the catalog names, and every model already here */
  for (size_t i = 0; i < n; i++) {
    bool first = true;
    for (size_t j = 0; j < i && first; j++) first = strcmp(list[j].name, list[i].name) != 0;
    if (first && desired(m, list[i].name) && !find_or_add(m, list[i].name)) return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  pthread_rwlock_rdlock(&m->lock);
  size_t n_models = m->n_models;
  pthread_rwlock_unlock(&m->lock);
  for (size_t i = 0; i < n_models; i++) {
    pthread_rwlock_rdlock(&m->lock);
    sw__model *md = m->models[i];
    pthread_rwlock_unlock(&m->lock);
    set_labels(m, md);
    if (md->hold) continue;
    int64_t want = desired(m, md->name);
    pthread_mutex_lock(&md->mu);
    bool have = want && loaded(md, want);
    pthread_mutex_unlock(&md->mu);
    if (want && !have) {
      sw__version *v = NULL;
      if (load_version(m, known(m, md->name, want), &v) || insert(md, v, false)) {
        sw__version_unref(v);
        all = false;
        continue; /* keep serving what is there */
      }
    }
    pthread_mutex_lock(&md->mu);
    md->policy_version = want;
    pick_default(md);
    int64_t drop[64];
    size_t n_drop = 0;
    for (size_t k = 0; k < md->n_versions && n_drop < 64; k++)
      if (md->versions[k]->version != want && !md->by_admin[k]) drop[n_drop++] = md->versions[k]->version;
    pthread_mutex_unlock(&md->mu);
    for (size_t k = 0; k < n_drop; k++) {
      sw__version *old = take_out(md, drop[k]);
      if (old) SW_INFO("serve: unloaded model %s version %lld", md->name, (long long)old->version);
      sw__version_unref(old);
    }
  }
  m->generation = gen;
  m->have_generation = true;
  atomic_store(&m->ready, all);
  return SW_STATUS_OK;
}

sw_status sw__manager_reconcile(sw__manager *m, bool force) {
  pthread_mutex_lock(&m->op);
  sw_status st = reconcile_locked(m, force);
  pthread_mutex_unlock(&m->op);
  return st;
}

sw_status sw__manager_acquire(sw__manager *m, const char *model, int64_t version, const char *label, sw__version **out) {
  *out = NULL;
  sw__model *md = sw__manager_find(m, model);
  if (!md) return sw_error(SW_STATUS_NOT_FOUND, "model '%s' is not served", model);
  sw_status st = SW_STATUS_OK;
  pthread_mutex_lock(&md->mu);
  sw__version *v = NULL;
  if (label) {
    int64_t want = 0;
    for (size_t i = 0; i < md->n_labels; i++)
      if (!strcmp(md->labels[i].label, label)) want = md->labels[i].version;
    if (!want) st = sw_error(SW_STATUS_NOT_FOUND, "model '%s' has no label '%s'", model, label);
    else if (!(v = loaded(md, want)))
      st = sw_error(SW_STATUS_NOT_FOUND, "label '%s' of model '%s' points at version %lld, which is not loaded", label, model, (long long)want);
  } else if (version > 0) {
    if (!(v = loaded(md, version))) st = sw_error(SW_STATUS_NOT_FOUND, "version %lld of model '%s' is not loaded", (long long)version, model);
  } else {
    v = md->dflt;
    if (!v) st = sw_error(SW_STATUS_NOT_FOUND, "model '%s' has no version loaded", model);
  }
  if (v) sw__version_ref(v);
  pthread_mutex_unlock(&md->mu);
  *out = v;
  return st;
}

sw_status sw__manager_load(sw__manager *m, const char *model, int64_t version) {
  pthread_mutex_lock(&m->op);
  sw_status st = SW_STATUS_OK;
  const sw_catalog_version *cv = known(m, model, version);
  sw__model *md = cv ? find_or_add(m, model) : NULL;
  if (!cv) {
    st = sw_error(SW_STATUS_NOT_FOUND, "the catalog has no version %lld of model '%s'", (long long)version, model);
    goto out;
  }
  if (!md) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  pthread_mutex_lock(&md->mu);
  bool have = false;
  for (size_t i = 0; i < md->n_versions; i++)
    if (md->versions[i]->version == version) {
      md->by_admin[i] = true;
      have = true;
    }
  pthread_mutex_unlock(&md->mu);
  if (have) goto out;
  sw__version *v = NULL;
  st = load_version(m, cv, &v);
  if (st) {
    st = sw_error(SW_STATUS_IO, "version %lld of model '%s' failed to load (see the server's log)", (long long)version, model);
    goto out;
  }
  st = insert(md, v, true);
  if (st) sw__version_unref(v);
out:
  pthread_mutex_unlock(&m->op);
  return st;
}

sw_status sw__manager_unload(sw__manager *m, const char *model, int64_t version) {
  pthread_mutex_lock(&m->op);
  sw_status st = SW_STATUS_OK;
  sw__model *md = sw__manager_find(m, model);
  sw__version *v = md ? take_out(md, version) : NULL;
  if (!v) st = sw_error(SW_STATUS_NOT_FOUND, "version %lld of model '%s' is not loaded", (long long)version, model);
  else {
    if (version == md->policy_version) md->hold = true;
    SW_INFO("serve: unloaded model %s version %lld", model, (long long)version);
  }
  pthread_mutex_unlock(&m->op);
  sw__version_unref(v);
  return st;
}

sw_status sw__manager_reload(sw__manager *m) {
  pthread_mutex_lock(&m->op);
  pthread_rwlock_rdlock(&m->lock);
  for (size_t i = 0; i < m->n_models; i++) {
    sw__model *md = m->models[i];
    pthread_mutex_lock(&md->mu);
    md->hold = false;
    for (size_t k = 0; k < md->n_versions; k++) md->by_admin[k] = false;
    pthread_mutex_unlock(&md->mu);
  }
  pthread_rwlock_unlock(&m->lock);
  sw_status st = reconcile_locked(m, true);
  pthread_mutex_unlock(&m->op);
  return st;
}

void sw__manager_each(sw__manager *m, void (*fn)(void *ctx, sw__model *model, sw__version *v, bool is_default),
                      void *ctx) {
  pthread_rwlock_rdlock(&m->lock);
  for (size_t i = 0; i < m->n_models; i++) {
    sw__model *md = m->models[i];
    pthread_mutex_lock(&md->mu);
    for (size_t k = 0; k < md->n_versions; k++) fn(ctx, md, md->versions[k], md->versions[k] == md->dflt);
    pthread_mutex_unlock(&md->mu);
  }
  pthread_rwlock_unlock(&m->lock);
}

sw_status sw__manager_release(sw__manager *m, const char *model, int64_t version) {
  pthread_mutex_lock(&m->op);
  sw_status st = SW_STATUS_OK;
  sw__model *md = sw__manager_find(m, model);
  sw__version *v = NULL;
  bool found = false;
  if (md) {
    pthread_mutex_lock(&md->mu);
    for (size_t k = 0; k < md->n_versions; k++)
      if (md->versions[k]->version == version) {
        md->by_admin[k] = false;
        found = true;
      }
    bool keep = version == md->policy_version;
    pthread_mutex_unlock(&md->mu);
    if (found && !keep) v = take_out(md, version);
  }
  if (!found) st = sw_error(SW_STATUS_NOT_FOUND, "version %lld of model '%s' is not loaded", (long long)version, model);
  else if (v) SW_INFO("serve: unloaded model %s version %lld", model, (long long)version);
  pthread_mutex_unlock(&m->op);
  sw__version_unref(v);
  return st;
}
