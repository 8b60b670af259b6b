/* The monitor inside slipway serve: a thread that, every --eval-every, judges a drift
 * window per model (fed with the raw inputs of live requests), the live accuracy of each
 * version (fed by /feedback labels) and the held-out quality of every served version
 * (sw_quality_monitor), exports them for /metrics and fires or resolves alerts.
 * The request path only copies a request's input floats into the model's inbox under a
 * short lock; counting them into the window happens on the monitor thread. */
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"
#include "slipway/eval.h"
#include "slipway/registry.h"

#define MAX_MODELS 256
#define NAME_MAX_LEN 128

/* The drift state of one model. name is set before the entry is published and never
 * changes; mu guards the layout and the inbox; the rest is the monitor thread's. */
typedef struct {
  char name[NAME_MAX_LEN + 1];
  pthread_mutex_t mu;
  /* which request inputs feed which feature: input slot_input[j], slot_per[j] values */
  size_t n_slots;
  char slot_input[SW_SERVE_MAX_IO][NAME_MAX_LEN + 1];
  int64_t slot_per[SW_SERVE_MAX_IO];
  size_t rec;          /* floats per record: the sum of slot_per */
  float *inbox;        /* cap records, a ring: the latest requests' rows */
  int64_t cap, next, count;
  uint64_t skipped;    /* requests whose inputs did not fit the layout */
  /* the monitor thread's */
  char *slot_feature[SW_SERVE_MAX_IO]; /* NULL: the reference's only feature */
  char *dataset;
  sw_drift_reference *ref;
  sw_drift_window *win;
  float *spare;
  json_t *report;
  bool warned;
} drift_model;

typedef struct {
  char *model;
  int64_t version;
  sw_accuracy_window *w;
} acc_entry;

/* A loaded version as the monitor thread sees it at the start of a cycle. */
typedef struct {
  char model[NAME_MAX_LEN + 1];
  int64_t version;
  bool is_default;
  char *path; /* file catalog: the ONNX file */
  size_t n_in;
  char in_name[SW_SERVE_MAX_IO][NAME_MAX_LEN + 1];
  int64_t in_per[SW_SERVE_MAX_IO];
  sw_dtype in_dtype[SW_SERVE_MAX_IO];
} served;

struct sw__monitor {
  sw__manager *mgr;
  char *eval_data, *registry_url, *home;
  bool from_registry;
  double every;
  sw_policy *policy;
  sw_registry *reg;
  sw_alert_manager *alerts;
  sw_quality_monitor *quality;
  json_t *quality_results; /* the last cycle's (the monitor thread's) */
  /* drift entries, published by the monitor thread, read lock-free by requests */
  drift_model *models[MAX_MODELS];
  atomic_size_t n_models;
  /* live accuracy per version */
  pthread_mutex_t acc_mu;
  acc_entry *acc;
  size_t n_acc, cap_acc;
  json_t *live_firing;
  /* the text /metrics appends */
  pthread_mutex_t text_mu;
  sw_buf text;
  /* the thread */
  pthread_t thread;
  bool started, stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

/* ---- the request path ------------------------------------------------------------------ */

static drift_model *find_model(sw__monitor *m, const char *name) {
  size_t n = atomic_load_explicit(&m->n_models, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(m->models[i]->name, name)) return m->models[i];
  return NULL;
}

void sw__monitor_observe(sw__monitor *m, const sw__version *v, const sw_serve_inputs *in) {
  drift_model *d = find_model(m, v->model);
  if (!d || in->rows <= 0) return;
  pthread_mutex_lock(&d->mu);
  int k_of[SW_SERVE_MAX_IO];
  bool fits = d->inbox && d->n_slots;
  for (size_t j = 0; fits && j < d->n_slots; j++) {
    k_of[j] = -1;
    for (size_t k = 0; k < v->sig.n_in && k_of[j] < 0; k++)
      if (v->sig.in[k].per == d->slot_per[j] && !strcmp(v->sig.in[k].name, d->slot_input[j])) k_of[j] = (int)k;
    fits = k_of[j] >= 0;
  }
  if (!fits) {
    d->skipped++;
    pthread_mutex_unlock(&d->mu);
    return;
  }
  for (int64_t r = 0; r < in->rows; r++) {
    float *dst = d->inbox + (size_t)d->next * d->rec;
    for (size_t j = 0; j < d->n_slots; j++) {
      const sw_serve_io *io = &v->sig.in[k_of[j]];
      size_t per = (size_t)io->per;
      if (io->dtype == SW_DTYPE_F32) {
        memcpy(dst, (const float *)in->in[k_of[j]] + (size_t)r * per, per * sizeof *dst);
      } else {
        const int64_t *src = (const int64_t *)in->in[k_of[j]] + (size_t)r * per;
        for (size_t e = 0; e < per; e++) dst[e] = (float)src[e];
      }
      dst += per;
    }
    d->next = (d->next + 1) % d->cap;
    if (d->count < d->cap) d->count++;
  }
  pthread_mutex_unlock(&d->mu);
}

void sw__monitor_outcome(void *ctx, const char *model, int64_t version, bool correct) {
  sw__monitor *m = ctx;
  pthread_mutex_lock(&m->acc_mu);
  acc_entry *e = NULL;
  for (size_t i = 0; i < m->n_acc && !e; i++)
    if (m->acc[i].version == version && !strcmp(m->acc[i].model, model)) e = &m->acc[i];
  if (!e && m->n_acc == m->cap_acc) {
    size_t cap = m->cap_acc ? 2 * m->cap_acc : 8;
    acc_entry *a = sw_realloc(m->acc, cap * sizeof *a);
    if (a) {
      m->acc = a;
      m->cap_acc = cap;
    }
  }
  if (!e && m->n_acc < m->cap_acc) {
    acc_entry n = {.model = sw_strdup(model), .version = version};
    if (n.model && !sw_accuracy_window_new(m->policy->monitor.drift_window, &n.w)) {
      m->acc[m->n_acc] = n;
      e = &m->acc[m->n_acc++];
    } else {
      sw_free(n.model);
    }
  }
  if (e) sw_accuracy_window_add(e->w, correct);
  pthread_mutex_unlock(&m->acc_mu);
}

sw_status sw__monitor_render(sw__monitor *m, sw_buf *out) {
  pthread_mutex_lock(&m->text_mu);
  sw_status st = m->text.len ? sw_buf_append(out, m->text.data, m->text.len) : SW_STATUS_OK;
  pthread_mutex_unlock(&m->text_mu);
  return st;
}

/* ---- the monitor thread: what is served ---------------------------------------------- */

typedef struct {
  served *list;
  size_t n, cap;
  bool nomem;
} served_list;

static void collect_served(void *ctx, sw__model *md, sw__version *v, bool is_default) {
  served_list *l = ctx;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    served *p = sw_realloc(l->list, cap * sizeof *p);
    if (!p) {
      l->nomem = true;
      return;
    }
    l->list = p;
    l->cap = cap;
  }
  served *s = &l->list[l->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->model, sizeof s->model, "%s", md->name);
  s->version = v->version;
  s->is_default = is_default;
  s->n_in = v->sig.n_in;
  for (size_t k = 0; k < v->sig.n_in; k++) {
    snprintf(s->in_name[k], sizeof s->in_name[k], "%s", v->sig.in[k].name ? v->sig.in[k].name : "");
    s->in_per[k] = v->sig.in[k].per;
    s->in_dtype[k] = v->sig.in[k].dtype;
  }
}

static void served_free(served_list *l) {
  for (size_t i = 0; i < l->n; i++) sw_free(l->list[i].path);
  sw_free(l->list);
}

static sw_status snapshot(sw__monitor *m, served_list *l) {
  memset(l, 0, sizeof *l);
  /* op keeps the catalog's list (the files' paths) still while we read it */
  pthread_mutex_lock(&m->mgr->op);
  sw__manager_each(m->mgr, collect_served, l);
  for (size_t i = 0; i < l->n && !l->nomem; i++)
    for (size_t k = 0; k < m->mgr->n_known; k++)
      if (m->mgr->known[k].version == l->list[i].version && !strcmp(m->mgr->known[k].name, l->list[i].model)) {
        if (!(l->list[i].path = sw_strdup(m->mgr->known[k].path))) l->nomem = true;
        break;
      }
  pthread_mutex_unlock(&m->mgr->op);
  return l->nomem ? sw_error(SW_STATUS_NOMEM, "out of memory") : SW_STATUS_OK;
}

/* ---- drift ------------------------------------------------------------------------------ */

static void drift_model_free(drift_model *d) {
  if (!d) return;
  pthread_mutex_destroy(&d->mu);
  sw_free(d->inbox);
  sw_free(d->spare);
  for (size_t j = 0; j < SW_SERVE_MAX_IO; j++) sw_free(d->slot_feature[j]);
  sw_free(d->dataset);
  sw_drift_window_free(d->win);
  sw_drift_reference_free(d->ref);
  json_decref(d->report);
  sw_free(d);
}

static drift_model *model_entry(sw__monitor *m, const char *name) {
  drift_model *d = find_model(m, name);
  size_t n = atomic_load(&m->n_models);
  if (d || n == MAX_MODELS) return d;
  if (!(d = sw_calloc(1, sizeof *d))) return NULL;
  snprintf(d->name, sizeof d->name, "%s", name);
  pthread_mutex_init(&d->mu, NULL);
  m->models[n] = d;
  atomic_store_explicit(&m->n_models, n + 1, memory_order_release);
  return d;
}

/* The dataset whose training statistics the model's inputs are compared with: the
 * default version's lineage in the registry, else --eval-data. Caller frees. */
static char *reference_dataset(sw__monitor *m, const served *s) {
  if (m->reg) {
    char ref[NAME_MAX_LEN + 32];
    snprintf(ref, sizeof ref, "%s:%lld", s->model, (long long)s->version);
    json_t *v = NULL;
    if (!sw_registry_get_version(m->reg, ref, &v)) {
      const char *p = json_string_value(json_object_get(json_object_get(v, "dataset"), "path"));
      char *out = p ? sw_strdup(p) : NULL;
      json_decref(v);
      if (out) return out;
    }
  }
  return m->eval_data ? sw_strdup(m->eval_data) : NULL;
}

/* Points the model's drift state at the default version's dataset and inputs; a change
 * of either starts an empty window. */
static void drift_setup(sw__monitor *m, drift_model *d, const served *s) {
  char *dataset = reference_dataset(m, s);
  if (!dataset) {
    if (!d->warned) SW_WARN("monitor: %s: no dataset to compare inputs with (no lineage, no --eval-data): no drift check", s->model);
    d->warned = true;
    return;
  }
  bool same_data = d->dataset && !strcmp(d->dataset, dataset);
  if (!same_data) {
    sw_drift_reference *ref = NULL;
    if (sw_drift_reference_load(dataset, "train", &ref)) {
      if (!d->warned) SW_WARN("monitor: %s: drift reference: %s", s->model, sw_last_error());
      d->warned = true;
      sw_free(dataset);
      return;
    }
    sw_drift_reference_free(d->ref);
    d->ref = ref;
    sw_free(d->dataset);
    d->dataset = dataset;
    dataset = NULL;
  }
  sw_free(dataset);
  /* the layout: each numeric feature from the input of its name, or the only input for
   * a reference of one feature */
  size_t n_slots = 0;
  char input[SW_SERVE_MAX_IO][NAME_MAX_LEN + 1];
  const char *feature[SW_SERVE_MAX_IO];
  int64_t per[SW_SERVE_MAX_IO];
  size_t nf = sw_drift_reference_features(d->ref);
  for (size_t i = 0; i < nf && n_slots < SW_SERVE_MAX_IO; i++) {
    bool numeric;
    const char *name = sw_drift_reference_feature(d->ref, i, &numeric);
    if (!numeric) continue; /* strings never reach a model as tensors */
    int k = -1;
    if (nf == 1 && s->n_in == 1) k = 0;
    for (size_t j = 0; j < s->n_in && k < 0; j++)
      if (!strcmp(s->in_name[j], name)) k = (int)j;
    if (k < 0) continue;
    snprintf(input[n_slots], sizeof input[n_slots], "%s", s->in_name[k]);
    feature[n_slots] = nf == 1 ? NULL : name;
    per[n_slots++] = s->in_per[k];
  }
  bool same_layout = same_data && d->win && n_slots == d->n_slots;
  for (size_t j = 0; same_layout && j < n_slots; j++)
    same_layout = per[j] == d->slot_per[j] && !strcmp(input[j], d->slot_input[j]);
  if (same_layout) return;
  size_t rec = 0;
  for (size_t j = 0; j < n_slots; j++) rec += (size_t)per[j];
  int64_t cap = m->policy->monitor.drift_window;
  sw_drift_window *win = NULL;
  float *inbox = rec ? sw_calloc((size_t)cap * rec, sizeof *inbox) : NULL;
  float *spare = rec ? sw_calloc((size_t)cap * rec, sizeof *spare) : NULL;
  if ((rec && (!inbox || !spare)) || sw_drift_window_new(d->ref, cap, &win)) {
    SW_WARN("monitor: %s: no memory for a drift window of %lld records", s->model, (long long)cap);
    sw_free(inbox);
    sw_free(spare);
    if (!same_data) { /* the old window was built on the reference just replaced: it goes too */
      pthread_mutex_lock(&d->mu);
      d->n_slots = 0;
      d->next = d->count = 0;
      pthread_mutex_unlock(&d->mu);
      sw_drift_window_free(d->win);
      d->win = NULL;
      sw_free(d->dataset); /* so the next cycle tries again */
      d->dataset = NULL;
    }
    return;
  }
  if (!n_slots && !d->warned) {
    SW_WARN("monitor: %s: no model input matches a numeric feature of %s: no drift check", s->model, d->dataset);
    d->warned = true;
  }
  pthread_mutex_lock(&d->mu);
  float *old = d->inbox;
  d->inbox = inbox;
  d->n_slots = n_slots;
  for (size_t j = 0; j < n_slots; j++) {
    memcpy(d->slot_input[j], input[j], sizeof input[j]);
    d->slot_per[j] = per[j];
  }
  d->rec = rec;
  d->cap = cap;
  d->next = d->count = 0;
  pthread_mutex_unlock(&d->mu);
  sw_free(old);
  sw_free(d->spare);
  d->spare = spare;
  for (size_t j = 0; j < SW_SERVE_MAX_IO; j++) {
    sw_free(d->slot_feature[j]);
    d->slot_feature[j] = j < n_slots && feature[j] ? sw_strdup(feature[j]) : NULL;
  }
  sw_drift_window_free(d->win);
  d->win = win;
  SW_INFO("monitor: %s: drift against %s (%zu of %zu features fed by the inputs, window %lld)", s->model, d->dataset,
          n_slots, nf, (long long)cap);
}

/* Moves the requests copied since the last cycle into the window. */
static void drift_feed(drift_model *d) {
  pthread_mutex_lock(&d->mu);
  float *got = d->inbox;
  int64_t n = d->count, start = (d->next - d->count + d->cap) % (d->cap ? d->cap : 1), cap = d->cap;
  size_t rec = d->rec, n_slots = d->n_slots;
  int64_t per[SW_SERVE_MAX_IO];
  memcpy(per, d->slot_per, sizeof per);
  d->inbox = d->spare;
  d->next = d->count = 0;
  pthread_mutex_unlock(&d->mu);
  d->spare = got;
  const char *names[SW_SERVE_MAX_IO];
  const float *vals[SW_SERVE_MAX_IO];
  size_t counts[SW_SERVE_MAX_IO];
  for (int64_t r = 0; r < n && got; r++) {
    const float *p = got + (size_t)((start + r) % cap) * rec;
    for (size_t j = 0; j < n_slots; j++) {
      names[j] = d->slot_feature[j];
      vals[j] = p;
      counts[j] = (size_t)per[j];
      p += per[j];
    }
    /* a value that is not finite: that request is left out of the window */
    sw_drift_window_add_numbers(d->win, n_slots, names, vals, counts);
  }
}

static void drift_alert(sw__monitor *m, drift_model *d) {
  json_t *labels = json_pack("{s:s, s:s, s:s}", "alertname", "SlipwayDataDrift", "model", d->name, "severity", "warning");
  bool drift = json_is_true(json_object_get(d->report, "drift"));
  sw_buf desc = {0}, worst = {0};
  size_t i;
  const json_t *w;
  json_array_foreach(json_object_get(d->report, "worst"), i, w) {
    const char *f = json_string_value(w);
    const json_t *fr = json_object_get(json_object_get(d->report, "features"), f);
    sw_buf_printf(&worst, "%s%s", i ? ", " : "", f);
    sw_buf_printf(&desc, "%s%s (psi %.3f, js %.3f)", i ? ", " : "", f, json_real_value(json_object_get(fr, "psi")),
                  json_real_value(json_object_get(fr, "js")));
  }
  json_t *ann = json_pack("{s:s, s:s, s:s, s:s}", "summary",
                          drift ? "live inputs drift from the training data" : "live inputs match the training data",
                          "description", "", "worst", worst.data ? (const char *)worst.data : "", "dataset",
                          d->dataset ? d->dataset : "");
  if (ann && drift) {
    json_t *text = json_sprintf("%lld of %lld features drift (share %.2f >= %.2f) over the last %lld requests; worst: %s",
                                (long long)json_integer_value(json_object_get(d->report, "drifting")),
                                (long long)json_integer_value(json_object_get(d->report, "checked")),
                                json_real_value(json_object_get(d->report, "share")),
                                json_real_value(json_object_get(d->report, "threshold_share")),
                                (long long)json_integer_value(json_object_get(d->report, "records")),
                                desc.data ? (const char *)desc.data : "");
    if (text) json_object_set_new(ann, "description", text);
  }
  if (labels && ann && sw_alert_manager_set(m->alerts, labels, ann, drift, NULL)) SW_WARN("monitor: %s", sw_last_error());
  json_decref(labels);
  json_decref(ann);
  sw_buf_free(&desc);
  sw_buf_free(&worst);
}

static void drift_cycle(sw__monitor *m, const served_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    const served *s = &l->list[i];
    if (!s->is_default) continue; /* one window per model, on the default version's inputs */
    drift_model *d = model_entry(m, s->model);
    if (!d) continue;
    drift_setup(m, d, s);
    if (!d->win) continue;
    drift_feed(d);
    json_t *rep = NULL;
    if (sw_drift_compute(d->win, &m->policy->monitor, &rep)) continue;
    json_decref(d->report);
    d->report = rep;
    /* a window too small to decide keeps the alert as it was */
    if (json_is_true(json_object_get(rep, "ready"))) drift_alert(m, d);
  }
}

/* ---- live accuracy -------------------------------------------------------------------- */

/* The accuracy the version is held to and how much below it is allowed: from the last
 * held-out cycle's baseline and monitor.max_drop. False when there is none. */
static bool live_floor(sw__monitor *m, const char *model, int64_t version, double *baseline, double *allowed) {
  size_t i;
  const json_t *r;
  json_array_foreach(m->quality_results, i, r) {
    if (json_integer_value(json_object_get(r, "version")) != version || strcmp(json_string_value(json_object_get(r, "model")), model))
      continue;
    const json_t *b = json_object_get(json_object_get(r, "baseline"), "accuracy");
    if (!json_is_number(b)) return false;
    *baseline = json_number_value(b);
    *allowed = 0;
    for (size_t k = 0; k < m->policy->monitor.n_max_drop; k++) {
      const sw_threshold *t = &m->policy->monitor.max_drop[k];
      if (!strcmp(t->metric, "accuracy")) *allowed = t->relative ? t->value * *baseline : t->value;
    }
    return true;
  }
  return false;
}

static void live_cycle(sw__monitor *m, const served_list *l, json_t *judged) {
  json_t *firing = json_array();
  pthread_mutex_lock(&m->acc_mu);
  size_t n = m->n_acc;
  int64_t *cnt = sw_calloc(n ? 3 * n : 1, sizeof *cnt);
  const char **names = sw_calloc(n ? n : 1, sizeof *names);
  for (size_t i = 0; i < n && cnt && names; i++) {
    /* the names live as long as the monitor; the array may move once unlocked */
    sw_accuracy_window_get(m->acc[i].w, &cnt[3 * i], &cnt[3 * i + 1]);
    cnt[3 * i + 2] = m->acc[i].version;
    names[i] = m->acc[i].model;
  }
  pthread_mutex_unlock(&m->acc_mu);
  for (size_t i = 0; i < n && cnt && names && firing; i++) {
    const char *model = names[i];
    int64_t version = cnt[3 * i + 2];
    bool loaded = false;
    for (size_t k = 0; k < l->n; k++) loaded |= l->list[k].version == version && !strcmp(l->list[k].model, model);
    double baseline, allowed;
    if (!loaded || !live_floor(m, model, version, &baseline, &allowed)) continue;
    json_t *j = sw_live_quality_judge(cnt[3 * i + 1], cnt[3 * i], baseline, allowed);
    if (!j) continue;
    json_object_set_new(j, "model", json_string(model));
    json_object_set_new(j, "version", json_integer(version));
    json_array_append(judged, j);
    if (json_is_true(json_object_get(j, "below"))) {
      char ver[24];
      snprintf(ver, sizeof ver, "%lld", (long long)version);
      json_t *labels = json_pack("{s:s, s:s, s:s, s:s}", "alertname", "SlipwayLiveAccuracyLow", "model", model, "version", ver,
                                 "severity", "page");
      json_t *ann = json_pack("{s:s, s:o}", "summary", "live accuracy from feedback is under the policy's floor", "description",
                              json_sprintf("accuracy %.4f over the last %lld labels, 95%% interval [%.4f, %.4f] under the floor %.4f",
                                           json_real_value(json_object_get(j, "accuracy")), (long long)cnt[3 * i],
                                           json_real_value(json_object_get(j, "lower")),
                                           json_real_value(json_object_get(j, "upper")),
                                           json_real_value(json_object_get(j, "floor"))));
      if (labels && ann && sw_alert_manager_set(m->alerts, labels, ann, true, NULL)) SW_WARN("monitor: %s", sw_last_error());
      if (labels) json_array_append(firing, labels);
      json_decref(labels);
      json_decref(ann);
    }
    json_decref(j);
  }
  sw_free(cnt);
  sw_free(names);
  if (!firing) return;
  size_t k;
  json_t *old;
  json_array_foreach(m->live_firing, k, old) {
    bool still = false;
    size_t q;
    json_t *x;
    json_array_foreach(firing, q, x) still |= json_equal(x, old);
    if (!still && sw_alert_manager_set(m->alerts, old, NULL, false, NULL)) SW_WARN("monitor: %s", sw_last_error());
  }
  json_decref(m->live_firing);
  m->live_firing = firing;
}

/* ---- the cycle ---------------------------------------------------------------------------- */

static void render(sw__monitor *m, const json_t *judged) {
  sw_buf b = {0};
  sw_status st = sw_quality_results_render(m->quality_results, &b);
  size_t n = atomic_load(&m->n_models), k = 0;
  sw_drift_series ds[MAX_MODELS];
  for (size_t i = 0; i < n; i++)
    if (m->models[i]->report) ds[k++] = (sw_drift_series){m->models[i]->name, m->models[i]->report};
  if (!st) st = sw_drift_render_prometheus(ds, k, &b);
  size_t nl = json_array_size(judged);
  sw_live_quality_series *ls = sw_calloc(nl ? nl : 1, sizeof *ls);
  for (size_t i = 0; i < nl && ls; i++) {
    const json_t *j = json_array_get(judged, i);
    ls[i] = (sw_live_quality_series){json_string_value(json_object_get(j, "model")),
                                     json_integer_value(json_object_get(j, "version")), j};
  }
  if (!st) st = ls ? sw_live_quality_render_prometheus(ls, nl, &b) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(ls);
  if (st) {
    SW_WARN("monitor: rendering the metrics: %s", sw_last_error());
    sw_buf_free(&b);
    return;
  }
  pthread_mutex_lock(&m->text_mu);
  sw_buf old = m->text;
  m->text = b;
  pthread_mutex_unlock(&m->text_mu);
  sw_buf_free(&old);
}

static void cycle(sw__monitor *m) {
  served_list l;
  if (snapshot(m, &l)) {
    SW_WARN("monitor: %s", sw_last_error());
    served_free(&l);
    return;
  }
  json_t *judged = json_array();
  drift_cycle(m, &l);
  if (judged) live_cycle(m, &l, judged);
  render(m, judged); /* drift and live numbers out before the slower evaluations */
  sw_monitor_target *t = sw_calloc(l.n ? l.n : 1, sizeof *t);
  char (*refs)[NAME_MAX_LEN + 32] = sw_calloc(l.n ? l.n : 1, sizeof *refs);
  for (size_t i = 0; i < l.n && t && refs; i++) {
    snprintf(refs[i], sizeof refs[i], "%s:%lld", l.list[i].model, (long long)l.list[i].version);
    t[i] = (sw_monitor_target){l.list[i].model, l.list[i].version, m->from_registry ? refs[i] : l.list[i].path,
                               l.list[i].is_default};
    if (!t[i].ref) t[i].ref = refs[i];
  }
  json_t *results = NULL;
  if (t && refs && !sw_quality_monitor_cycle(m->quality, t, l.n, &results)) {
    json_decref(m->quality_results);
    m->quality_results = results;
  }
  render(m, judged);
  json_decref(judged);
  sw_free(t);
  sw_free(refs);
  served_free(&l);
}

static bool wait_for(sw__monitor *m, double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double end = (double)ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
  ts.tv_sec = (time_t)end;
  ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&m->mu);
  while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0) {
  }
  bool stop = m->stop;
  pthread_mutex_unlock(&m->mu);
  return !stop;
}

static void *monitor_main(void *arg) {
  sw__monitor *m = arg;
  /* the first cycle once the versions to serve are loaded */
  while (!atomic_load(&m->mgr->ready))
    if (!wait_for(m, 0.1)) return NULL;
  SW_INFO("monitor: every %.3g s", m->every);
  do {
    double t0 = sw_now();
    cycle(m);
    double left = m->every - (sw_now() - t0);
    if (left < 0.05) left = 0.05;
    if (!wait_for(m, left)) break;
  } while (true);
  return NULL;
}

/* ---- life -------------------------------------------------------------------------------- */

sw_status sw__monitor_new(const sw_serve_monitor_config *c, sw__manager *mgr, sw__monitor **out) {
  *out = NULL;
  sw__monitor *m = sw_calloc(1, sizeof *m);
  if (!m) return sw_error(SW_STATUS_NOMEM, "out of memory");
  m->mgr = mgr;
  pthread_mutex_init(&m->acc_mu, NULL);
  pthread_mutex_init(&m->text_mu, NULL);
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  atomic_init(&m->n_models, 0);
  char *err = NULL;
  sw_status st = SW_STATUS_OK;
  if (c->policy_path) {
    st = sw_policy_load(c->policy_path, &m->policy, &err);
    if (st) st = sw_error(st, "%s", err ? err : sw_last_error());
    sw_free(err);
  } else {
    json_t *empty = json_object();
    st = sw_policy_from_json(empty, &m->policy, NULL);
    json_decref(empty);
  }
  if (st) goto fail;
  m->every = c->every_s > 0 ? c->every_s : m->policy->monitor.every_seconds;
  m->from_registry = c->from_registry;
  if ((c->eval_data && !(m->eval_data = sw_strdup(c->eval_data))) || (c->registry && !(m->registry_url = sw_strdup(c->registry))) ||
      (c->home && !(m->home = sw_strdup(c->home))) || !(m->live_firing = json_array())) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto fail;
  }
  if (c->from_registry && (st = sw_registry_open(c->registry, c->home, &m->reg))) goto fail;
  sw_alert_options ao = {.webhook_url = c->webhook_url, .external_url = c->external_url, .registry = m->reg,
                         .who = "slipway-serve"};
  if ((st = sw_alert_manager_new(&ao, &m->alerts))) goto fail;
  sw_quality_monitor_options qo = {.registry = m->reg, .registry_url = c->registry, .home = c->home, .eval_data = c->eval_data,
                                   .policy = m->policy, .alerts = m->alerts, .threads = 1, .who = "slipway-serve"};
  if ((st = sw_quality_monitor_new(&qo, &m->quality))) goto fail;
  *out = m;
  return SW_STATUS_OK;
fail:
  sw__monitor_free(m);
  return st;
}

sw_status sw__monitor_start(sw__monitor *m) {
  if (pthread_create(&m->thread, NULL, monitor_main, m)) return sw_error(SW_STATUS_IO, "cannot start the monitor thread");
  m->started = true;
  return SW_STATUS_OK;
}

void sw__monitor_stop(sw__monitor *m) {
  if (!m || !m->started) return;
  pthread_mutex_lock(&m->mu);
  m->stop = true;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
  pthread_join(m->thread, NULL);
  m->started = false;
}

void sw__monitor_free(sw__monitor *m) {
  if (!m) return;
  sw__monitor_stop(m);
  sw_quality_monitor_free(m->quality);
  sw_alert_manager_free(m->alerts);
  sw_registry_close(m->reg);
  sw_policy_free(m->policy);
  json_decref(m->quality_results);
  json_decref(m->live_firing);
  for (size_t i = 0; i < atomic_load(&m->n_models); i++) drift_model_free(m->models[i]);
  for (size_t i = 0; i < m->n_acc; i++) {
    sw_free(m->acc[i].model);
    sw_accuracy_window_free(m->acc[i].w);
  }
  sw_free(m->acc);
  sw_buf_free(&m->text);
  sw_free(m->eval_data);
  sw_free(m->registry_url);
  sw_free(m->home);
  pthread_mutex_destroy(&m->acc_mu);
  pthread_mutex_destroy(&m->text_mu);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  sw_free(m);
}
