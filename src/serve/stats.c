/* What the server counts and /metrics shows, in Prometheus's text format (slipway_
 * prefix, base units, _total counters): requests by model, version, API and status;
 * latency histograms (total, queue, compute); batch sizes; loaded versions and their
 * memory; live quality from feedback. */
#include <string.h>

#include "serve/serve_int.h"

static const double hist_le[SW__HIST_BUCKETS] = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
                                                 25e-3, 50e-3,  100e-3, 250e-3, 500e-3, 1,    2.5,    5};
static const double batch_le[SW__BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

typedef struct req_count {
  struct req_count *next;
  char *model;
  int64_t version;
  const char *api; /* a string literal */
  int code;
  uint64_t n;
} req_count;

struct sw__stats {
  pthread_mutex_t mu;
  req_count *requests;
  sw__vstats *versions;
};

sw_status sw__stats_new(sw__stats **out) {
  sw__stats *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  pthread_mutex_init(&s->mu, NULL);
  *out = s;
  return SW_STATUS_OK;
}

void sw__stats_free(sw__stats *s) {
  if (!s) return;
  for (req_count *r = s->requests, *next; r; r = next) {
    next = r->next;
    sw_free(r->model);
    sw_free(r);
  }
  for (sw__vstats *v = s->versions, *next; v; v = next) {
    next = v->next;
    pthread_mutex_destroy(&v->mu);
    for (size_t i = 0; i < v->n_classes; i++) sw_free(v->class_names[i]);
    sw_free(v->class_names);
    sw_free(v->model);
    sw_free(v);
  }
  pthread_mutex_destroy(&s->mu);
  sw_free(s);
}

sw__vstats *sw__stats_version(sw__stats *s, const char *model, int64_t version) {
  pthread_mutex_lock(&s->mu);
  sw__vstats *v = s->versions;
  while (v && (v->version != version || strcmp(v->model, model))) v = v->next;
  if (!v && (v = sw_calloc(1, sizeof *v))) {
    v->model = sw_strdup(model);
    if (!v->model) {
      sw_free(v);
      v = NULL;
    } else {
      v->version = version;
      pthread_mutex_init(&v->mu, NULL);
      v->next = s->versions;
      s->versions = v;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return v;
}

static void hist_add(sw__hist *h, double x) {
  int i = 0;
  while (i < SW__HIST_BUCKETS && x > hist_le[i]) i++;
  h->count[i]++;
  h->sum += x;
}

void sw__stats_request(sw__stats *s, const char *model, int64_t version, const char *api, int code, sw__vstats *vs,
                       double seconds) {
  pthread_mutex_lock(&s->mu);
  req_count *r = s->requests;
  while (r && (r->code != code || r->version != version || r->api != api || strcmp(r->model, model))) r = r->next;
  if (!r && (r = sw_calloc(1, sizeof *r))) {
    r->model = sw_strdup(model);
    if (!r->model) {
      sw_free(r);
      r = NULL;
    } else {
      r->version = version;
      r->api = api;
      r->code = code;
      r->next = s->requests;
      s->requests = r;
    }
  }
  if (r) r->n++;
  pthread_mutex_unlock(&s->mu);
  if (vs) {
    pthread_mutex_lock(&vs->mu);
    hist_add(&vs->total, seconds);
    pthread_mutex_unlock(&vs->mu);
  }
}

void sw__stats_batch(sw__vstats *v, int64_t rows, struct sw__job *const *jobs, size_t n_jobs, double compute_s) {
  if (!v) return;
  pthread_mutex_lock(&v->mu);
  int i = 0;
  while (i < SW__BATCH_BUCKETS && (double)rows > batch_le[i]) i++;
  v->batch_count[i]++;
  v->batch_sum += (double)rows;
  v->batches++;
  hist_add(&v->compute, compute_s);
  for (size_t k = 0; k < n_jobs; k++) hist_add(&v->queue, jobs[k]->t_start - jobs[k]->t_enqueue);
  pthread_mutex_unlock(&v->mu);
}

static void render_hist(sw_buf *out, const char *name, const sw__vstats *v, const sw__hist *h) {
  uint64_t cum = 0;
  for (int i = 0; i <= SW__HIST_BUCKETS; i++) {
    cum += h->count[i];
    if (i < SW__HIST_BUCKETS)
      sw_buf_printf(out, "%s_bucket{model=\"%s\",version=\"%lld\",le=\"%g\"} %llu\n", name, v->model, (long long)v->version,
                    hist_le[i], (unsigned long long)cum);
    else
      sw_buf_printf(out, "%s_bucket{model=\"%s\",version=\"%lld\",le=\"+Inf\"} %llu\n", name, v->model,
                    (long long)v->version, (unsigned long long)cum);
  }
  sw_buf_printf(out, "%s_sum{model=\"%s\",version=\"%lld\"} %.9g\n", name, v->model, (long long)v->version, h->sum);
  sw_buf_printf(out, "%s_count{model=\"%s\",version=\"%lld\"} %llu\n", name, v->model, (long long)v->version,
                (unsigned long long)cum);
}

static void render_loaded(void *ctx, sw__model *md, sw__version *v, bool is_default) {
  sw_buf *out = ctx;
  sw_buf_printf(out, "slipway_model_loaded{model=\"%s\",version=\"%lld\",default=\"%s\"} 1\n", md->name,
                (long long)v->version, is_default ? "true" : "false");
}

static void render_memory(void *ctx, sw__model *md, sw__version *v, bool is_default) {
  sw_buf *out = ctx;
  sw_buf_printf(out, "slipway_model_memory_bytes{model=\"%s\",version=\"%lld\"} %lld\n", md->name, (long long)v->version,
                (long long)v->mem_bytes);
}

sw_status sw__stats_render(sw__stats *s, sw__manager *m, sw_buf *out) {
  pthread_mutex_lock(&s->mu);
  sw_buf_printf(out, "# HELP slipway_requests_total Requests answered, by model, version, API and HTTP status.\n"
                     "# TYPE slipway_requests_total counter\n");
  for (const req_count *r = s->requests; r; r = r->next)
    sw_buf_printf(out, "slipway_requests_total{model=\"%s\",version=\"%lld\",api=\"%s\",code=\"%d\"} %llu\n", r->model,
                  (long long)r->version, r->api, r->code, (unsigned long long)r->n);
  sw__vstats *versions = s->versions;
  pthread_mutex_unlock(&s->mu);
  /* entries are only ever added at the head, so the list from here on is stable */
  static const struct {
    const char *name, *help;
    size_t off;
  } hists[] = {
      {"slipway_request_duration_seconds", "Time from a request's arrival to its answer.", offsetof(sw__vstats, total)},
      {"slipway_queue_duration_seconds", "Time a request waited for its batch.", offsetof(sw__vstats, queue)},
      {"slipway_compute_duration_seconds", "Time of one forward pass of a batch.", offsetof(sw__vstats, compute)},
  };
  for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
    sw_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", hists[h].name, hists[h].help, hists[h].name);
    for (sw__vstats *v = versions; v; v = v->next) {
      pthread_mutex_lock(&v->mu);
      render_hist(out, hists[h].name, v, (const sw__hist *)((const char *)v + hists[h].off));
      pthread_mutex_unlock(&v->mu);
    }
  }
  sw_buf_printf(out, "# HELP slipway_batch_size Rows per forward pass.\n# TYPE slipway_batch_size histogram\n");
  for (sw__vstats *v = versions; v; v = v->next) {
    pthread_mutex_lock(&v->mu);
    uint64_t cum = 0;
    for (int i = 0; i <= SW__BATCH_BUCKETS; i++) {
      cum += v->batch_count[i];
      if (i < SW__BATCH_BUCKETS)
        sw_buf_printf(out, "slipway_batch_size_bucket{model=\"%s\",version=\"%lld\",le=\"%g\"} %llu\n", v->model,
                      (long long)v->version, batch_le[i], (unsigned long long)cum);
      else
        sw_buf_printf(out, "slipway_batch_size_bucket{model=\"%s\",version=\"%lld\",le=\"+Inf\"} %llu\n", v->model,
                      (long long)v->version, (unsigned long long)cum);
    }
    sw_buf_printf(out, "slipway_batch_size_sum{model=\"%s\",version=\"%lld\"} %.0f\n", v->model, (long long)v->version,
                  v->batch_sum);
    sw_buf_printf(out, "slipway_batch_size_count{model=\"%s\",version=\"%lld\"} %llu\n", v->model, (long long)v->version,
                  (unsigned long long)cum);
    pthread_mutex_unlock(&v->mu);
  }
  sw_buf_printf(out, "# HELP slipway_feedback_joined_total Labels joined to the requests they belong to.\n"
                     "# TYPE slipway_feedback_joined_total counter\n");
  for (sw__vstats *v = versions; v; v = v->next) {
    pthread_mutex_lock(&v->mu);
    sw_buf_printf(out, "slipway_feedback_joined_total{model=\"%s\",version=\"%lld\"} %llu\n", v->model, (long long)v->version,
                  (unsigned long long)v->fb_joined);
    pthread_mutex_unlock(&v->mu);
  }
  sw_buf_printf(out, "# HELP slipway_live_accuracy Accuracy of the answers that got feedback.\n"
                     "# TYPE slipway_live_accuracy gauge\n");
  for (sw__vstats *v = versions; v; v = v->next) {
    pthread_mutex_lock(&v->mu);
    if (v->fb_joined && !v->fb_regression)
      sw_buf_printf(out, "slipway_live_accuracy{model=\"%s\",version=\"%lld\"} %.9g\n", v->model, (long long)v->version,
                    (double)v->fb_correct / (double)v->fb_joined);
    pthread_mutex_unlock(&v->mu);
  }
  sw_buf_printf(out, "# HELP slipway_live_mae Mean absolute error of the answers that got feedback (regression).\n"
                     "# TYPE slipway_live_mae gauge\n");
  for (sw__vstats *v = versions; v; v = v->next) {
    pthread_mutex_lock(&v->mu);
    if (v->fb_joined && v->fb_regression)
      sw_buf_printf(out, "slipway_live_mae{model=\"%s\",version=\"%lld\"} %.9g\n", v->model, (long long)v->version,
                    v->fb_abs_err / (double)v->fb_joined);
    pthread_mutex_unlock(&v->mu);
  }
  sw_buf_printf(out, "# HELP slipway_model_loaded Versions loaded now (default: what a request without a version gets).\n"
                     "# TYPE slipway_model_loaded gauge\n");
  sw__manager_each(m, render_loaded, out);
  sw_buf_printf(out, "# HELP slipway_model_memory_bytes Memory a loaded version holds.\n"
                     "# TYPE slipway_model_memory_bytes gauge\n");
  sw__manager_each(m, render_memory, out);
  sw_buf_printf(out, "# HELP slipway_ready Whether every version to serve is loaded and warmed up.\n"
                     "# TYPE slipway_ready gauge\nslipway_ready %d\n",
                atomic_load(&m->ready) ? 1 : 0);
  return out->data ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
}
