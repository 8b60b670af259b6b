/* The monitor's held-out evaluations: every cycle, each served version is evaluated on
 * its held-out split (sw_eval_run), the evaluation recorded in the registry (context
 * "monitor"), compared with the baseline recorded when the model was promoted, and
 * SlipwayQualityRegression fired or resolved through the alert manager. Shared by the
 * server's monitor thread and the standalone `slipway monitor`. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"
#include "slipway/registry.h"

struct sw_quality_monitor {
  sw_quality_monitor_options o;
  char *registry_url, *home, *eval_data, *who;
  json_t *firing; /* labels of the regression alerts reported firing in the last cycle */
};

sw_status sw_quality_monitor_new(const sw_quality_monitor_options *o, sw_quality_monitor **out) {
  *out = NULL;
  sw_quality_monitor *m = sw_calloc(1, sizeof *m);
  if (!m) return sw_error(SW_STATUS_NOMEM, "out of memory");
  m->o = *o;
  bool ok = (m->firing = json_array()) != NULL;
  if (ok && o->registry_url) ok = (m->registry_url = sw_strdup(o->registry_url)) != NULL;
  if (ok && o->home) ok = (m->home = sw_strdup(o->home)) != NULL;
  if (ok && o->eval_data) ok = (m->eval_data = sw_strdup(o->eval_data)) != NULL;
  if (ok) ok = (m->who = sw_strdup(o->who ? o->who : "slipway-monitor")) != NULL;
  if (!ok) {
    sw_quality_monitor_free(m);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  m->o.registry_url = m->registry_url;
  m->o.home = m->home;
  m->o.eval_data = m->eval_data;
  m->o.who = m->who;
  *out = m;
  return SW_STATUS_OK;
}

void sw_quality_monitor_free(sw_quality_monitor *m) {
  if (!m) return;
  json_decref(m->firing);
  sw_free(m->registry_url);
  sw_free(m->home);
  sw_free(m->eval_data);
  sw_free(m->who);
  sw_free(m);
}

static bool was_promoted(const json_t *shown) {
  size_t i;
  const json_t *e;
  json_array_foreach(json_object_get(shown, "events"), i, e) {
    const char *a = json_string_value(json_object_get(e, "action"));
    if (a && !strcmp(a, "promote")) return true;
  }
  return false;
}

/* The newest whole-split evaluation made by a promotion of this version, on split and
 * (when known) the same dataset; NULL when none. Borrowed from shown. */
static const json_t *promotion_eval(const json_t *shown, const char *split, const char *dataset) {
  size_t i;
  const json_t *e;
  json_array_foreach(json_object_get(shown, "evaluations"), i, e) { /* newest first */
    const char *sp = json_string_value(json_object_get(e, "split"));
    const char *sl = json_string_value(json_object_get(e, "slice"));
    const char *ctx = json_string_value(json_object_get(e, "context"));
    const char *ds = json_string_value(json_object_get(e, "dataset"));
    if (!sp || strcmp(sp, split) || (sl && *sl) || !ctx || strcmp(ctx, "promote:candidate")) continue;
    if (dataset && ds && strcmp(ds, dataset)) continue;
    if (json_is_object(json_object_get(e, "metrics"))) return e;
  }
  return NULL;
}

/* The bar a served version is held to: the evaluation its own promotion recorded; for a
 * version that reached its alias without a promotion (moved by hand), the newest
 * promotion of any version of the model, so slipping a worse model under the alias is
 * measured against the quality the alias was last promoted at. *metrics NULL: none. */
static sw_status find_baseline(sw_quality_monitor *m, const char *model, int64_t version, const char *split,
                               const char *dataset, json_t **metrics, int64_t *from) {
  *metrics = NULL;
  *from = 0;
  char ref[SW_MODEL_NAME_MAX + 32];
  snprintf(ref, sizeof ref, "%s:%lld", model, (long long)version);
  json_t *shown = NULL, *list = NULL;
  const json_t *best = NULL;
  json_t *best_owner = NULL;
  sw_status st = sw_registry_show(m->o.registry, ref, &shown);
  if (st) goto cleanup;
  if (was_promoted(shown) && (best = promotion_eval(shown, split, dataset))) {
    *from = version;
    goto found;
  }
  st = sw_registry_list(m->o.registry, model, &list);
  size_t i;
  const json_t *e;
  if (!st) json_array_foreach(list, i, e) {
      int64_t v = json_integer_value(json_object_get(e, "version"));
      if (v == version) continue;
      json_t *other = NULL;
      snprintf(ref, sizeof ref, "%s:%lld", model, (long long)v);
      if (sw_registry_show(m->o.registry, ref, &other)) continue;
      const json_t *pe = was_promoted(other) ? promotion_eval(other, split, dataset) : NULL;
      const char *at = json_string_value(json_object_get(pe, "at"));
      const char *best_at = json_string_value(json_object_get(best, "at"));
      if (pe && at && (!best || !best_at || strcmp(at, best_at) > 0)) {
        json_decref(best_owner);
        best_owner = other;
        best = pe;
        *from = v;
      } else {
        json_decref(other);
      }
    }
  if (st || !best) goto cleanup;
found:
  if (!(*metrics = json_deep_copy(json_object_get(best, "metrics")))) st = sw_error(SW_STATUS_NOMEM, "out of memory");
cleanup:
  json_decref(best_owner);
  json_decref(shown);
  json_decref(list);
  return st;
}

/* The dataset a version is evaluated on: --eval-data, else its lineage's. Caller frees. */
static sw_status data_dir_of(sw_quality_monitor *m, const sw_monitor_target *t, char **out) {
  *out = NULL;
  if (m->o.eval_data) {
    *out = sw_strdup(m->o.eval_data);
    return *out ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  if (!m->o.registry)
    return sw_error(SW_STATUS_INVALID, "%s:%lld: no held-out data (give --eval-data, or serve from the registry)", t->model,
                    (long long)t->version);
  char ref[SW_MODEL_NAME_MAX + 32];
  snprintf(ref, sizeof ref, "%s:%lld", t->model, (long long)t->version);
  json_t *v = NULL;
  sw_status st = sw_registry_get_version(m->o.registry, ref, &v);
  const char *path = json_string_value(json_object_get(json_object_get(v, "dataset"), "path"));
  if (!st && !path) st = sw_error(SW_STATUS_NOT_FOUND, "%s: the registry records no dataset (give --eval-data)", ref);
  if (!st && !(*out = sw_strdup(path))) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  json_decref(v);
  return st;
}

static bool labels_in(const json_t *list, const json_t *labels) {
  size_t i;
  const json_t *l;
  json_array_foreach(list, i, l) if (json_equal(l, labels)) return true;
  return false;
}

/* One version: evaluate, record, compare, alert. Adds the alerts firing now to firing. */
static sw_status one_target(sw_quality_monitor *m, const sw_monitor_target *t, json_t *firing, json_t **result) {
  *result = NULL;
  const char *split = m->o.policy && m->o.policy->gate.split ? m->o.policy->gate.split : "test";
  char *data = NULL;
  json_t *ev = NULL, *baseline = NULL, *drop = NULL;
  int64_t from = 0;
  sw_status st = data_dir_of(m, t, &data);
  if (!st) {
    sw_eval_options eo = {.model_ref = t->ref, .registry = m->o.registry_url, .home = m->o.home, .data_dir = data,
                          .split = split, .threads = m->o.threads > 0 ? m->o.threads : 1};
    st = sw_eval_run(&eo, &ev);
  }
  if (st) goto cleanup;
  json_object_set_new(ev, "model", json_sprintf("%s:%lld", t->model, (long long)t->version));
  const char *dataset = json_string_value(json_object_get(ev, "dataset"));
  if (m->o.registry) {
    if (sw_registry_evaluation_add(m->o.registry, t->model, t->version, ev, "monitor", m->o.who))
      SW_WARN("monitor: recording the evaluation of %s:%lld: %s", t->model, (long long)t->version, sw_last_error());
    st = find_baseline(m, t->model, t->version, split, dataset, &baseline, &from);
    if (st) goto cleanup;
  }
  if (baseline && m->o.policy) st = sw_quality_drop_check(&m->o.policy->monitor, baseline, json_object_get(ev, "metrics"), &drop);
  if (st) goto cleanup;
  char version[24], dshort[17];
  snprintf(version, sizeof version, "%lld", (long long)t->version);
  snprintf(dshort, sizeof dshort, "%.16s", dataset ? dataset : "");
  size_t i;
  const json_t *c;
  json_array_foreach(json_object_get(drop, "checks"), i, c) {
    if (!json_is_true(json_object_get(c, "dropped"))) continue;
    const char *metric = json_string_value(json_object_get(c, "metric"));
    json_t *labels = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "alertname", "SlipwayQualityRegression", "model", t->model,
                               "version", version, "metric", metric, "dataset", dshort, "severity", "page");
    json_t *ann = json_pack("{s:s+, s:s, s:I}", "summary", "held-out quality of ", t->ref, "description",
                            json_string_value(json_object_get(c, "reason")), "baseline_version", (json_int_t)from);
    if (!labels || !ann) {
      json_decref(labels);
      json_decref(ann);
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto cleanup;
    }
    json_array_append(firing, labels);
    if (m->o.alerts && sw_alert_manager_set(m->o.alerts, labels, ann, true, NULL))
      SW_WARN("monitor: %s", sw_last_error());
    json_decref(labels);
    json_decref(ann);
  }
  *result = json_pack("{s:s, s:I, s:s, s:s, s:O, s:O?, s:O?, s:I}", "model", t->model, "version", (json_int_t)t->version, "ref",
                      t->ref, "dataset", dshort, "metrics", json_object_get(ev, "metrics"), "baseline", baseline, "drop", drop,
                      "baseline_version", (json_int_t)from);
  if (!*result) st = sw_error(SW_STATUS_NOMEM, "out of memory");
cleanup:
  if (st) {
    json_t *err = json_pack("{s:s, s:I, s:s, s:s}", "model", t->model, "version", (json_int_t)t->version, "ref", t->ref, "error",
                            sw_last_error());
    SW_WARN("monitor: %s:%lld: %s", t->model, (long long)t->version, sw_last_error());
    *result = err;
  }
  sw_free(data);
  json_decref(ev);
  json_decref(baseline);
  json_decref(drop);
  return st;
}

sw_status sw_quality_monitor_cycle(sw_quality_monitor *m, const sw_monitor_target *t, size_t n, json_t **results) {
  *results = NULL;
  json_t *out = json_array(), *firing = json_array(), *kept = json_array();
  if (!out || !firing || !kept) {
    json_decref(out);
    json_decref(firing);
    json_decref(kept);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  /* the versions requests get by default (the production alias) first, then the rest */
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < n; i++) {
      if (t[i].is_default != (pass == 0)) continue;
      json_t *r = NULL;
      if (one_target(m, &t[i], firing, &r)) {
        /* an evaluation that failed decides nothing: its alerts stay as they were */
        size_t k;
        json_t *l;
        json_array_foreach(m->firing, k, l) {
          const char *ver = json_string_value(json_object_get(l, "version"));
          if (!strcmp(json_string_value(json_object_get(l, "model")), t[i].model) && ver && atoll(ver) == t[i].version)
            json_array_append(kept, l);
        }
      }
      if (r) json_array_append_new(out, r);
    }
  json_array_extend(firing, kept);
  json_decref(kept);
  /* what fired last cycle and not now has cleared (fixed, or no longer served) */
  size_t k;
  json_t *l;
  json_array_foreach(m->firing, k, l) {
    if (labels_in(firing, l)) continue;
    json_t *ann = json_pack("{s:s}", "summary", "held-out quality is back within the policy, or the version is no longer served");
    if (m->o.alerts && sw_alert_manager_set(m->o.alerts, l, ann, false, NULL)) SW_WARN("monitor: %s", sw_last_error());
    json_decref(ann);
  }
  json_decref(m->firing);
  m->firing = firing;
  *results = out;
  return SW_STATUS_OK;
}

sw_status sw_quality_results_render(const json_t *results, sw_buf *out) {
  size_t n = json_array_size(results), k = 0;
  sw_quality_series *s = sw_calloc(n ? n : 1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  size_t i;
  const json_t *r;
  json_array_foreach(results, i, r) {
    if (!json_is_object(json_object_get(r, "metrics"))) continue; /* failed evaluations export nothing */
    s[k].model = json_string_value(json_object_get(r, "model"));
    s[k].version = json_integer_value(json_object_get(r, "version"));
    s[k].dataset = json_string_value(json_object_get(r, "dataset"));
    s[k].metrics = json_object_get(r, "metrics");
    s[k].drop = json_object_get(r, "drop");
    k++;
  }
  sw_status st = sw_quality_render_prometheus(s, k, out);
  sw_free(s);
  return st;
}

/* ---- which versions are served (the standalone monitor) ------------------------------ */

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  return sw_buf_append(ud, p, size * n) ? 0 : size * n;
}

/* The versions the server at url has loaded for model: GET /v1/models/{m} (TF Serving's
 * model status). A model the server does not serve (404) gives none. */
static sw_status server_versions(const char *url, const char *model, json_t **versions) {
  *versions = NULL;
  CURL *c = curl_easy_init();
  sw_buf body = {0};
  char *u = NULL;
  sw_status st = c ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory for an HTTP client");
  size_t ul = strlen(url);
  while (ul && url[ul - 1] == '/') ul--;
  if (!st && !(u = sw_malloc(ul + strlen(model) + 16))) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto cleanup;
  sprintf(u, "%.*s/v1/models/%s", (int)ul, url, model);
  curl_easy_setopt(c, CURLOPT_URL, u);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (rc != CURLE_OK) {
    st = sw_error(SW_STATUS_IO, "%s: %s", u, curl_easy_strerror(rc));
    goto cleanup;
  }
  *versions = json_array();
  if (!*versions) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st || code == 404) goto cleanup;
  json_error_t e;
  json_t *doc = code == 200 ? json_loadb((const char *)body.data, body.len, 0, &e) : NULL;
  const json_t *list = json_object_get(doc, "model_version_status");
  if (!json_is_array(list)) {
    st = sw_error(SW_STATUS_FORMAT, "%s: answered %ld without model_version_status", u, code);
  } else {
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
      const char *s = json_string_value(json_object_get(v, "version"));
      if (s && atoll(s) > 0) json_array_append_new(*versions, json_integer(atoll(s)));
    }
  }
  json_decref(doc);
cleanup:
  if (st) {
    json_decref(*versions);
    *versions = NULL;
  }
  sw_buf_free(&body);
  sw_free(u);
  if (c) curl_easy_cleanup(c);
  return st;
}

sw_status sw_monitor_targets(sw_registry *reg, const char *server_url, json_t **targets) {
  *targets = NULL;
  json_t *list = NULL, *out = json_array(), *models = json_array();
  sw_status st = out && models ? sw_registry_list(reg, NULL, &list) : sw_error(SW_STATUS_NOMEM, "out of memory");
  size_t i;
  const json_t *e;
  if (!st) json_array_foreach(list, i, e) {
      const char *name = json_string_value(json_object_get(e, "name"));
      bool seen = false;
      size_t k;
      const json_t *x;
      json_array_foreach(models, k, x) seen |= !strcmp(json_string_value(x), name);
      if (!seen) json_array_append_new(models, json_string(name));
    }
  json_array_foreach(models, i, e) {
    if (st) break;
    const char *name = json_string_value(e);
    int64_t prod = 0, latest = 0;
    st = sw_registry_alias_get(reg, name, "production", &prod);
    if (st) break;
    /* without a production alias the catalog serves the latest not rejected or rolled back */
    size_t k;
    const json_t *v;
    json_array_foreach(list, k, v) {
      const char *state = json_string_value(json_object_get(v, "state"));
      int64_t ver = json_integer_value(json_object_get(v, "version"));
      if (strcmp(json_string_value(json_object_get(v, "name")), name)) continue;
      if (state && (!strcmp(state, "rejected") || !strcmp(state, "rolled_back"))) continue;
      if (ver > latest) latest = ver;
    }
    int64_t dflt = prod ? prod : latest;
    json_t *served = NULL;
    if (server_url) {
      st = server_versions(server_url, name, &served);
      if (st) break;
    } else {
      served = dflt ? json_pack("[I]", (json_int_t)dflt) : json_array();
    }
    json_array_foreach(served, k, v) {
      int64_t ver = json_integer_value(v);
      char ref[SW_MODEL_NAME_MAX + 32];
      snprintf(ref, sizeof ref, "%s:%lld", name, (long long)ver);
      json_array_append_new(out, json_pack("{s:s, s:I, s:s, s:b}", "model", name, "version", (json_int_t)ver, "ref", ref,
                                           "is_default", ver == dflt));
    }
    json_decref(served);
  }
  json_decref(list);
  json_decref(models);
  if (st) json_decref(out);
  else *targets = out;
  return st;
}
