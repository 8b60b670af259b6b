/* One loaded model version: its graph, allocated once for the largest batch, warmed
 * up before anyone may call it, and the batcher. A graph runs one forward pass at a
 * time, so a version keeps lanes: the graph and clones of it that share its weights,
 * one per HTTP thread, each run by whoever holds it. A request finds a free lane and
 * runs on its own HTTP thread (no hand-off); when every lane is busy it queues, and
 * whoever frees a lane takes the queue as a batch, or the compute thread does (always,
 * when batches wait to fill). Reference counted: the last request to finish on a
 * version that was swapped out frees it. */
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"

static void class_names(sw__version *v) {
  const char *s = json_string_value(json_object_get(v->meta, "slipway.class_names"));
  json_t *list = s ? json_loads(s, 0, NULL) : NULL;
  size_t n = json_array_size(list);
  if (n) v->class_names = sw_calloc(n, sizeof *v->class_names);
  if (v->class_names) {
    for (size_t i = 0; i < n; i++) {
      const char *c = json_string_value(json_array_get(list, i));
      v->class_names[i] = sw_strdup(c ? c : "");
    }
    v->n_classes = n;
  }
  json_decref(list);
}

static sw_status run_rows(sw__version *v, sw_graph *g, sw__job **jobs, size_t n_jobs, int64_t total);
static size_t take_batch(sw__version *v, sw__job **batch, size_t cap, int64_t *rows);
static void run_batch(sw__version *v, int lane, sw__job **batch, size_t n, int64_t rows);
static void *compute_main(void *arg);

static void warm_input(sw__version *v, sw_graph *g, size_t k, int64_t rows) {
  size_t n = (size_t)(rows * v->sig.in[k].per);
  void *x = sw_graph_data(g, v->in[k]);
  if (v->sig.in[k].dtype == SW_DTYPE_F32)
    for (size_t i = 0; i < n; i++) ((float *)x)[i] = 1.0f;
  else
    memset(x, 0, n * sw_dtype_size(v->sig.in[k].dtype));
}

sw_status sw__version_load(const char *model, int64_t version, const char *path, const char *sha256,
                           const sw__version_opts *o, sw__stats *stats, sw__version **out) {
  *out = NULL;
  uint8_t *data = NULL;
  size_t len = 0;
  sw_node *outs = NULL;
  size_t n_outs = 0;
  sw__version *v = sw_calloc(1, sizeof *v);
  if (!v) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_alloc_count_bytes(&v->mem_bytes);
  atomic_init(&v->refs, 1);
  v->model = sw_strdup(model);
  v->version = version;
  v->max_batch = o->max_batch > 0 ? o->max_batch : 1;
  v->max_queue = o->max_queue > 0 ? o->max_queue : 1;
  v->timeout_us = o->timeout_us;
  pthread_mutex_init(&v->mu, NULL);
  pthread_cond_init(&v->cv, NULL);
  sw_status st = v->model ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw_read_file(path, &data, &len);
  if (!st) st = sw_sha256_hex(data, len, v->sha256);
  if (!st && sha256 && sha256[0] && strcmp(sha256, v->sha256))
    st = sw_error(SW_STATUS_CORRUPT, "%s: SHA-256 %s, the catalog says %s", path, v->sha256, sha256);
  if (!st) st = sw_onnx_import_mem(data, len, path, &v->g, &outs, &n_outs, &v->meta);
  sw_free(data);
  data = NULL;
  if (st) goto out;
  for (size_t i = 0; i < sw_graph_size(v->g); i++) {
    if (sw_graph_op_type(v->g, (sw_node)i) != SW_OP_INPUT) continue;
    if (v->sig.n_in == SW_SERVE_MAX_IO) {
      st = sw_error(SW_STATUS_UNSUPPORTED, "%s: more than %d inputs", path, SW_SERVE_MAX_IO);
      goto out;
    }
    v->in[v->sig.n_in++] = (sw_node)i;
  }
  if (!v->sig.n_in || !n_outs || n_outs > SW_SERVE_MAX_IO) {
    st = sw_error(SW_STATUS_UNSUPPORTED, "%s: %zu inputs and %zu outputs (1 to %d each are served)", path, v->sig.n_in,
                  n_outs, SW_SERVE_MAX_IO);
    goto out;
  }
  for (size_t k = 0; k < n_outs; k++) v->out[k] = outs[k];
  v->sig.n_out = n_outs;
  st = sw_graph_alloc(v->g, v->max_batch);
  if (!st) st = sw_graph_set_threads(v->g, o->compute_threads > 0 ? o->compute_threads : 1);
  if (st) goto out;
  sw_graph_set_training(v->g, false);
  st = sw_graph_set_batch(v->g, 1);
  if (!st) st = sw_serve_signature_of(v->g, v->in, NULL, v->sig.n_in, v->out, v->sig.n_out, &v->sig);
  if (st) {
    sw_error_prefix(st, "%s: ", path);
    goto out;
  }
  class_names(v);
  v->probs = sw_graph_op_type(v->g, v->out[0]) == SW_OP_SOFTMAX;
  /* warm-up: every batch size the batcher will use goes through once, so the first
   * client pays no first-touch cost, with ones for float inputs (zeros would time the
   * single-row Gemm that skips them, not a real input) and zeros for integer ones
   * (valid for embeddings) */
  double best = 0;
  v->chunk = 1;
  for (int64_t b = v->max_batch; !st; b /= 2) {
    st = sw_graph_set_batch(v->g, b);
    for (size_t k = 0; k < v->sig.n_in && !st; k++) warm_input(v, v->g, k, b);
    /* and times it: the pass per row is not always cheaper at a larger batch (OpenBLAS
     * leaves its small-matrix kernel past a size, and a batch of 8 can cost more per row
     * than one of 4), so batches run in chunks of the size that was cheapest per row */
    double fastest = 0;
    for (int rep = 0; rep < 4 && !st; rep++) {
      double t0 = sw_now();
      st = sw_graph_forward(v->g);
      double t = sw_now() - t0;
      if (rep > 0 && (fastest == 0 || t < fastest)) fastest = t;
    }
    if (!st && (best == 0 || fastest / (double)b < best * 0.9)) {
      best = fastest / (double)b;
      v->chunk = b;
    }
    if (b <= 1) break;
  }
  if (st) {
    sw_error_prefix(st, "%s: warm-up: ", path);
    goto out;
  }
  /* the other lanes, each warmed up at the largest batch (its own values and scratch) */
  v->lane[0] = v->g;
  v->n_lanes = 1;
  int lanes = v->timeout_us > 0 ? 1 : o->lanes < 1 ? 1 : o->lanes > SW__MAX_LANES ? SW__MAX_LANES : o->lanes;
  while (!st && v->n_lanes < lanes) {
    sw_graph *c;
    st = sw_graph_clone(v->g, &c);
    if (st) break;
    v->lane[v->n_lanes++] = c;
    st = sw_graph_set_batch(c, v->max_batch);
    for (size_t k = 0; k < v->sig.n_in && !st; k++) warm_input(v, c, k, v->max_batch);
    if (!st) st = sw_graph_forward(c);
  }
  if (st) {
    sw_error_prefix(st, "%s: lanes: ", path);
    goto out;
  }
  v->leader_batch = sw_calloc((size_t)(v->max_batch * v->n_lanes), sizeof *v->leader_batch); /* NULL: no inline runs */
  /* the statistics outlive the version (and keep its class names for feedback): not
   * its memory */
  sw_alloc_count_bytes(NULL);
  v->stats = sw__stats_version(stats, model, version);
  if (v->stats) {
    pthread_mutex_lock(&v->stats->mu);
    if (!v->stats->class_names && v->n_classes && (v->stats->class_names = sw_calloc(v->n_classes, sizeof(char *)))) {
      for (size_t i = 0; i < v->n_classes; i++) v->stats->class_names[i] = sw_strdup(v->class_names[i] ? v->class_names[i] : "");
      v->stats->n_classes = v->n_classes;
    }
    pthread_mutex_unlock(&v->stats->mu);
  }
  v->loaded_at = sw_now();
  if (pthread_create(&v->thread, NULL, compute_main, v)) {
    st = sw_error(SW_STATUS_NOMEM, "cannot start a compute thread");
    goto out;
  }
  v->thread_started = true;
out:
  sw_free(outs);
  sw_alloc_count_bytes(NULL);
  if (st) {
    sw__version_unref(v);
    return st;
  }
  *out = v;
  return SW_STATUS_OK;
}

void sw__version_ref(sw__version *v) { atomic_fetch_add(&v->refs, 1); }

void sw__version_unref(sw__version *v) {
  if (!v || atomic_fetch_sub(&v->refs, 1) != 1) return;
  if (v->thread_started) {
    pthread_mutex_lock(&v->mu);
    v->stop = true;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    pthread_join(v->thread, NULL);
  }
  SW_ASSERT(!v->head); /* every job holds a reference */
  pthread_mutex_destroy(&v->mu);
  pthread_cond_destroy(&v->cv);
  for (int i = v->n_lanes - 1; i > 0; i--) sw_graph_free(v->lane[i]); /* clones before their source */
  sw_graph_free(v->g);
  sw_free(v->leader_batch);
  json_decref(v->meta);
  for (size_t i = 0; i < v->n_classes; i++) sw_free(v->class_names[i]);
  sw_free(v->class_names);
  sw_free(v->model);
  sw_free(v);
  /* give the version's pages back to the system: the load ran on whichever thread asked
   * for it, and glibc would otherwise keep them in that thread's arena */
  malloc_trim(0);
}

/* Under v->mu: a free lane, now held, or -1. */
static int grab_lane(sw__version *v) {
  for (int i = 0; i < v->n_lanes; i++)
    if (!v->lane_busy[i]) {
      v->lane_busy[i] = true;
      v->lanes_busy++;
      return i;
    }
  return -1;
}

static void drop_lane(sw__version *v, int lane) {
  v->lane_busy[lane] = false;
  v->lanes_busy--;
}

bool sw__version_run_inline(sw__version *v, sw__job *job) {
  if (v->timeout_us > 0 || !v->leader_batch) return false;
  pthread_mutex_lock(&v->mu);
  int lane = v->head || v->stop ? -1 : grab_lane(v);
  pthread_mutex_unlock(&v->mu);
  if (lane < 0) return false;
  job->t_enqueue = sw_now();
  job->notify = NULL;
  run_batch(v, lane, &job, 1, job->inputs.rows);
  /* what queued meanwhile runs here too, a few batches at most, rather than waking the
   * compute thread: a hand-off costs more than the pass at small batches */
  sw__job **batch = v->leader_batch + (size_t)lane * (size_t)v->max_batch;
  pthread_mutex_lock(&v->mu);
  for (int round = 0; round < 4 && v->head; round++) {
    int64_t rows = 0;
    size_t n = take_batch(v, batch, (size_t)v->max_batch, &rows);
    pthread_mutex_unlock(&v->mu);
    run_batch(v, lane, batch, n, rows);
    pthread_mutex_lock(&v->mu);
  }
  drop_lane(v, lane);
  if (v->head) pthread_cond_signal(&v->cv); /* the rest goes to the compute thread */
  pthread_mutex_unlock(&v->mu);
  return true;
}

sw_status sw__version_submit(sw__version *v, sw__job *job) {
  pthread_mutex_lock(&v->mu);
  if (v->queued >= v->max_queue) {
    pthread_mutex_unlock(&v->mu);
    return SW_STATUS_REFUSED;
  }
  job->next = NULL;
  job->t_enqueue = sw_now();
  bool first = !v->head;
  if (v->tail) v->tail->next = job;
  else v->head = job;
  v->tail = job;
  v->queued++;
  v->queued_rows += job->inputs.rows;
  /* whoever runs the graph now takes the queue when done: waking the compute thread
   * only to find the graph busy would cost a context switch a request. While it waits
   * for a batch to fill, it needs waking only for the first job (its deadline starts)
   * and when the batch is full. */
  int64_t fill = v->chunk > 0 ? v->chunk : v->max_batch;
  if (v->lanes_busy < v->n_lanes && (v->timeout_us <= 0 || first || v->queued_rows >= fill)) pthread_cond_signal(&v->cv);
  pthread_mutex_unlock(&v->mu);
  return SW_STATUS_OK;
}

void sw__job_clear(sw__job *job, const sw__version *v) {
  for (size_t k = 0; k < SW_SERVE_MAX_IO; k++) sw_free(job->out[k]);
  sw_serve_inputs_clear(&job->inputs, v ? v->sig.n_in : SW_SERVE_MAX_IO);
  memset(job, 0, sizeof *job);
}

/* Under v->mu: takes the oldest jobs that fit in one batch (at least one). */
static size_t take_batch(sw__version *v, sw__job **batch, size_t cap, int64_t *rows) {
  size_t n = 0;
  *rows = 0;
  /* no more rows than one forward pass takes: a job is answered when its batch is done */
  int64_t limit = v->chunk > 0 ? v->chunk : v->max_batch;
  while (v->head && n < cap && (n == 0 || *rows + v->head->inputs.rows <= limit)) {
    sw__job *j = v->head;
    v->head = j->next;
    if (!v->head) v->tail = NULL;
    v->queued--;
    v->queued_rows -= j->inputs.rows;
    *rows += j->inputs.rows;
    batch[n++] = j;
  }
  return n;
}

/* Runs one batch on a lane the caller holds and tells each job's owner. */
static void run_batch(sw__version *v, int lane, sw__job **batch, size_t n, int64_t rows) {
  double t0 = sw_now();
  for (size_t i = 0; i < n; i++) batch[i]->t_start = t0;
  sw_status st = run_rows(v, v->lane[lane], batch, n, rows);
  double t1 = sw_now();
  sw__stats_batch(v->stats, rows, batch, n, t1 - t0);
  for (size_t i = 0; i < n; i++) {
    sw__job *j = batch[i];
    j->t_end = t1;
    if (st && !j->status) {
      j->status = st;
      snprintf(j->error, sizeof j->error, "inference failed: %s", sw_strerror(st));
    }
    if (j->notify) j->notify(j->arg);
  }
}

static void *compute_main(void *arg) {
  sw__version *v = arg;
  sw__job *one[1];
  sw__job **batch = sw_calloc((size_t)v->max_batch, sizeof *batch);
  size_t cap = batch ? (size_t)v->max_batch : 1; /* out of memory: one job at a time */
  if (!batch) batch = one;
  pthread_mutex_lock(&v->mu);
  for (;;) {
    while ((!v->head || v->lanes_busy == v->n_lanes) && !v->stop) pthread_cond_wait(&v->cv, &v->mu);
    if (!v->head || v->lanes_busy == v->n_lanes) break;
    int64_t fill = v->chunk > 0 ? v->chunk : v->max_batch;
    if (v->timeout_us > 0 && fill > 1 && v->queued_rows < fill) {
      /* wait a little for the batch to fill, from the oldest job's arrival */
      double deadline = v->head->t_enqueue + (double)v->timeout_us * 1e-6;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double wait = deadline - sw_now();
      while (wait > 0 && v->queued_rows < fill && !v->stop) {
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + wait;
        struct timespec until = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (double)(time_t)t) * 1e9)};
        if (pthread_cond_timedwait(&v->cv, &v->mu, &until) == ETIMEDOUT) break;
        clock_gettime(CLOCK_REALTIME, &ts);
        wait = deadline - sw_now();
      }
    }
    /* the wait let others in: a lane and a job are checked again */
    int lane = v->head ? grab_lane(v) : -1;
    if (lane < 0) continue;
    int64_t rows = 0;
    size_t n = take_batch(v, batch, cap, &rows);
    pthread_mutex_unlock(&v->mu);
    run_batch(v, lane, batch, n, rows);
    pthread_mutex_lock(&v->mu);
    drop_lane(v, lane);
  }
  pthread_mutex_unlock(&v->mu);
  if (batch != one) sw_free(batch);
  return NULL;
}

/* Rows [first, first + n) of the concatenation of the jobs' rows, copied in or out of
 * a graph buffer of per elements of size esz per row. */
static void copy_rows(sw__job **jobs, size_t n_jobs, int64_t first, int64_t n, size_t k, bool in, uint8_t *graph_buf,
                      int64_t per, size_t esz) {
  int64_t base = 0;
  for (size_t i = 0; i < n_jobs && n > 0; i++) {
    int64_t r = jobs[i]->inputs.rows;
    if (first < base + r) {
      int64_t from = first - base, take = r - from < n ? r - from : n;
      uint8_t *job_buf = in ? jobs[i]->inputs.in[k] : jobs[i]->out[k];
      size_t bytes = (size_t)(take * per) * esz;
      if (in) memcpy(graph_buf, job_buf + (size_t)(from * per) * esz, bytes);
      else memcpy(job_buf + (size_t)(from * per) * esz, graph_buf, bytes);
      graph_buf += bytes;
      first += take;
      n -= take;
    }
    base += r;
  }
}

static sw_status run_rows(sw__version *v, sw_graph *g, sw__job **jobs, size_t n_jobs, int64_t total) {
  for (size_t i = 0; i < n_jobs; i++)
    for (size_t k = 0; k < v->sig.n_out; k++) {
      jobs[i]->out[k] = sw_malloc((size_t)(jobs[i]->inputs.rows * v->sig.out[k].per) * sw_dtype_size(v->sig.out[k].dtype));
      if (!jobs[i]->out[k]) return SW_STATUS_NOMEM;
    }
  int64_t chunk = v->chunk > 0 ? v->chunk : v->max_batch;
  for (int64_t first = 0; first < total; first += chunk) {
    int64_t n = total - first < chunk ? total - first : chunk;
    sw_status st = sw_graph_set_batch(g, n);
    if (st) return st;
    for (size_t k = 0; k < v->sig.n_in; k++)
      copy_rows(jobs, n_jobs, first, n, k, true, sw_graph_data(g, v->in[k]), v->sig.in[k].per,
                sw_dtype_size(v->sig.in[k].dtype));
    st = sw_graph_forward(g);
    if (st) return st;
    for (size_t k = 0; k < v->sig.n_out; k++)
      copy_rows(jobs, n_jobs, first, n, k, false, sw_graph_data(g, v->out[k]), v->sig.out[k].per,
                sw_dtype_size(v->sig.out[k].dtype));
  }
  return SW_STATUS_OK;
}
