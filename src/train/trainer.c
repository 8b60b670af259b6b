/* The training loop: a model file and a dataset in, a run directory out (run.json,
 * model.yaml, model.safetensors, metrics.jsonl, TensorBoard events). Each step feeds a
 * batch in the reader's (seed, epoch) order, runs forward and backward, clips, and
 * updates every parameter with the schedule's learning rate; each epoch ends with the
 * validation split. Same seed, data and threads: the same bits. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include "slipway/train.h"
#include "train/train_int.h"

/* One rank's time and gradients over a logging window (doubles: gathered as they are). */
typedef struct {
  double steps;       /* gradients computed */
  double step_s;      /* wall time of those steps */
  double compute_s;   /* forward and backward */
  double wait_s;      /* waiting for the other ranks (sync) or for the coordinator */
  double allreduce_s; /* moving gradients (sync) */
  double kept, dropped;
  double staleness_sum, staleness_max;
} rank_stats;

typedef struct {
  const sw_train_options *opt;
  sw_model_spec *spec;
  sw_dataset *ds;
  sw_model *model;
  sw_reader *train, *val;
  float **m, **v; /* optimizer moments per parameter */
  size_t n_params;
  const sw_node *params;
  FILE *metrics;
  sw_summary_writer *tb;
  sw_checkpointer *ckpt;
  int64_t step, total_steps, epoch;
  json_t *last_val;
  char config_sha256[SW_SHA256_HEX_LEN];
  int64_t checkpointed_step; /* the step of the last checkpoint taken, -1 before */
  /* the distributed job */
  const sw__comm *comm;
  int rank, size, threads;
  float **grads;
  size_t *sizes, n_floats; /* per parameter, and all of them */
  float *flat;             /* an allreduce bucket, or a message (head + floats) */
  size_t flat_cap;         /* bytes */
  float *acc;              /* the coordinator's sum of kept gradients */
  void **pbuf;             /* rank 0: two parameter messages in flight per worker [2 * size] */
  sw__req *preq;           /* and their send requests */
  int *pnext;              /* which of a worker's two is next */
  rank_stats *rs;          /* [size] on rank 0 (per rank); this rank's in rs[0] elsewhere */
  rank_stats *tot;         /* rank 0: the run's kept and dropped gradients per rank */
  int64_t *stale_hist;     /* async: updates applied per staleness 0..max_staleness */
  int64_t max_staleness;
  sw_status pending;       /* rank 0: an error after a step's update, reported at the next */
  /* the loop's bookkeeping */
  sw_lr_schedule sched;
  int64_t n_train, log_every, every_steps, start_step, seen, seen_log, correct;
  double every_s, t0, tlog, last_ckpt, loss_acc;
  bool auto_pending;
  float lr;
  sw_progress *bar;
} trainer;

static void iso_now(char *buf, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sw_status metrics_line(trainer *t, json_t *line) {
  if (!t->metrics) { /* a rank other than 0 writes nothing */
    json_decref(line);
    return SW_STATUS_OK;
  }
  char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(9));
  json_decref(line);
  if (!text) return sw_error(SW_STATUS_NOMEM, "out of memory");
  int ok = fprintf(t->metrics, "%s\n", text) > 0 && fflush(t->metrics) == 0;
  free(text);
  return ok ? SW_STATUS_OK : sw_error(SW_STATUS_IO, "write metrics.jsonl: %s", strerror(errno));
}

/* Metrics of a whole split with the current weights (inference mode). */
static sw_status evaluate_split(trainer *t, sw_reader *r, json_t **out) {
  sw_model *m = t->model;
  sw_graph_set_training(m->g, false);
  int64_t k = t->spec->loss == SW_LOSS_SOFTMAX_CE ? m->classes : 2;
  sw_class_metrics cm = {.k = k};
  cm.confusion = sw_calloc((size_t)(k * k), sizeof *cm.confusion);
  if (!cm.confusion) return sw_error(SW_STATUS_NOMEM, "out of memory");
  double loss_sum = 0;
  int64_t n = 0;
  sw_status st;
  const sw_batch *b;
  sw_reader_pos start = {0, 0};
  sw_reader_seek(r, start);
  float *probs2 = NULL;
  while ((st = sw_reader_next(r, (size_t)t->spec->batch_size, &b)) == SW_STATUS_OK) {
    st = sw_model_feed(m, t->spec, b);
    if (!st) st = sw_graph_forward(m->g);
    if (st) break;
    loss_sum += (double)((float *)sw_graph_data(m->g, m->loss))[0] * (double)b->n;
    n += (int64_t)b->n;
    if (t->spec->loss == SW_LOSS_SOFTMAX_CE) {
      st = sw_metrics_add_classes(&cm, sw_graph_data(m->g, m->output), sw_graph_data(m->g, m->label), (int64_t)b->n);
    } else if (t->spec->loss == SW_LOSS_BCE_WITH_LOGITS) {
      /* two-column probabilities and 0/1 labels for accuracy */
      float *p = sw_graph_data(m->g, m->output), *y = sw_graph_data(m->g, m->label);
      float *pp = sw_realloc(probs2, b->n * 2 * sizeof *pp);
      int64_t lab[512];
      if (!pp) {
        st = sw_error(SW_STATUS_NOMEM, "out of memory");
        break;
      }
      probs2 = pp;
      for (size_t i = 0; i < b->n; i += 512) {
        size_t c = b->n - i < 512 ? b->n - i : 512;
        for (size_t j = 0; j < c; j++) {
          pp[2 * j] = 1 - p[i + j];
          pp[2 * j + 1] = p[i + j];
          lab[j] = y[i + j] > 0.5f;
        }
        st = sw_metrics_add_classes(&cm, pp, lab, (int64_t)c);
        if (st) break;
      }
    }
    if (st) break;
  }
  sw_free(probs2);
  sw_graph_set_training(m->g, true);
  if (st == SW_STATUS_EOF) st = SW_STATUS_OK;
  if (!st) {
    json_t *o = json_object();
    json_object_set_new(o, "loss", json_real(n ? loss_sum / (double)n : NAN));
    if (t->spec->loss != SW_LOSS_MSE) json_object_set_new(o, "accuracy", json_real(sw_metrics_accuracy(&cm)));
    json_object_set_new(o, "examples", json_integer(n));
    *out = o;
  }
  sw_free(cm.confusion);
  return st;
}

/* Validation after a whole epoch (completed) or at the end of a run mid-epoch. */
static sw_status validate(trainer *t, bool completed) {
  if (completed) t->epoch++;
  if (!t->val) return SW_STATUS_OK;
  json_t *v = NULL;
  sw_status st = evaluate_split(t, t->val, &v);
  if (st) return sw_error_prefix(st, "validation: ");
  double loss = json_real_value(json_object_get(v, "loss"));
  const json_t *acc = json_object_get(v, "accuracy");
  if (t->tb) sw_summary_scalar(t->tb, t->step, "val/loss", (float)loss);
  if (acc && t->tb) sw_summary_scalar(t->tb, t->step, "val/accuracy", (float)json_real_value(acc));
  json_t *line = json_pack("{s:I, s:I, s:s, s:f}", "step", (json_int_t)t->step, "epoch", (json_int_t)t->epoch, "split",
                           "val", "loss", loss);
  if (acc) json_object_set_new(line, "accuracy", json_real(json_real_value(acc)));
  if (sw_log_get_level() <= SW_LOG_INFO)
    SW_INFO("epoch %lld: val loss %.4f%s%.4f", (long long)t->epoch, loss, acc ? ", accuracy " : "",
            acc ? json_real_value(acc) : 0.0);
  json_decref(t->last_val);
  t->last_val = v;
  return metrics_line(t, line);
}

static sw_status copy_file(const char *from, const char *to) {
  uint8_t *data;
  size_t len;
  sw_status st = sw_read_file(from, &data, &len);
  if (st) return st;
  st = sw_atomic_write(to, data, len);
  sw_free(data);
  return st;
}

static void trainer_free(trainer *t) {
  for (size_t i = 0; i < t->n_params; i++) {
    if (t->m) sw_free(t->m[i]);
    if (t->v) sw_free(t->v[i]);
  }
  sw_free(t->m);
  sw_free(t->v);
  sw_free(t->grads);
  sw_free(t->sizes);
  sw_free(t->flat);
  sw_free(t->acc);
  /* a send still in flight here means the job is failing (and about to be aborted):
   * its buffer is MPI's, so it is left alone rather than waited for */
  if (t->pbuf)
    for (int i = 0; i < 2 * t->size; i++)
      if (!t->preq[i].active) sw_free(t->pbuf[i]);
  sw_free(t->pbuf);
  sw_free(t->preq);
  sw_free(t->pnext);
  sw_free(t->rs);
  sw_free(t->tot);
  sw_free(t->stale_hist);
  sw_checkpointer_close(t->ckpt);
  if (t->metrics) fclose(t->metrics);
  sw_summary_close(t->tb);
  sw_reader_close(t->train);
  sw_reader_close(t->val);
  sw_model_free(t->model);
  sw_dataset_close(t->ds);
  sw_model_spec_free(t->spec);
  json_decref(t->last_val);
}

/* The identity of a run's configuration: the model file with the overrides applied.
 * A RUN resumes only with the same one (and the same dataset). */
static sw_status config_hash(const trainer *t, char hex[SW_SHA256_HEX_LEN]) {
  json_t *c = json_pack("{s:O, s:I, s:I, s:I}", "model", t->spec->doc, "seed", (json_int_t)t->spec->seed, "steps",
                        (json_int_t)t->total_steps, "batch_size", (json_int_t)t->spec->batch_size);
  char *text = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(c);
  if (!text) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = sw_sha256_hex(text, strlen(text), hex);
  free(text);
  return st;
}

/* An existing RUN: resumable when its run.json names the same config and dataset. */
static sw_status check_existing(trainer *t, bool *resume) {
  const sw_train_options *opt = t->opt;
  *resume = false;
  if (!sw_path_exists(opt->out_dir)) return SW_STATUS_OK;
  if (opt->overwrite) return sw_remove_tree(opt->out_dir);
  char *path = sw_path_join(opt->out_dir, "run.json");
  if (!path) return sw_error(SW_STATUS_NOMEM, "out of memory");
  json_t *run = NULL;
  sw_status st = SW_STATUS_OK;
  if (!sw_path_exists(path)) {
    /* an empty directory is fine; anything else is not ours to write into */
    DIR *d = opendir(opt->out_dir);
    struct dirent *e;
    bool empty = true;
    while (d && (e = readdir(d)) != NULL) empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    if (d) closedir(d);
    if (!empty) st = sw_error(SW_STATUS_EXISTS, "%s exists and is not a run dir (use --force-new to replace it)", opt->out_dir);
    goto out;
  }
  st = sw_json_load_file(path, &run);
  if (st) goto out;
  const char *cfg = json_string_value(json_object_get(run, "config_sha256"));
  const char *data = json_string_value(json_object_get(json_object_get(run, "dataset"), "manifest_sha256"));
  if (!cfg || strcmp(cfg, t->config_sha256) != 0)
    st = sw_error(SW_STATUS_REFUSED, "%s was made with another model, seed, steps or batch size (use --force-new to start over)",
                  opt->out_dir);
  else if (!data || strcmp(data, sw_dataset_sha256(t->ds)) != 0)
    st = sw_error(SW_STATUS_REFUSED, "%s was made with another dataset (use --force-new to start over)", opt->out_dir);
  else
    *resume = true;
out:
  json_decref(run);
  sw_free(path);
  return st;
}

static json_t *run_doc(const trainer *t, const char *started, const char *status) {
  char host[256] = "unknown";
  gethostname(host, sizeof host - 1);
  json_t *doc = json_pack("{s:s, s:i, s:s, s:s, s:s, s:O, s:{s:s, s:s}, s:{s:I, s:I, s:I, s:I, s:i}, s:s, s:s, s:s, s:s}",
                   "format", "slipway-run", "version", 1, "status", status, "name", t->spec->name, "model_file",
                   "model.yaml", "model", t->spec->doc, "dataset", "path", t->opt->data_dir, "manifest_sha256",
                   sw_dataset_sha256(t->ds), "hyperparameters", "batch_size", (json_int_t)t->spec->batch_size, "epochs",
                   (json_int_t)t->spec->epochs, "steps", (json_int_t)t->total_steps, "seed", (json_int_t)t->spec->seed,
                   "threads", t->threads, "code_version", "slipway " SW_VERSION, "host", host, "started_at",
                   started, "config_sha256", t->config_sha256);
  if (doc && t->size > 1) {
    const sw_train_options *o = t->opt;
    json_t *d = json_pack("{s:s, s:i, s:s}", "mode", o->dist == SW_DIST_ASYNC ? "async" : "sync", "ranks", t->size,
                          "reduction", t->comm->ops->name);
    if (d && o->dist == SW_DIST_SYNC) json_object_set_new(d, "backup_workers", json_integer(o->backup_workers));
    if (d && o->dist == SW_DIST_ASYNC) json_object_set_new(d, "max_staleness", json_integer(t->max_staleness));
    if (d) json_object_set_new(doc, "dist", d);
  }
  return doc;
}

static sw_status write_run(const trainer *t, json_t *doc) {
  char *path = sw_path_join(t->opt->out_dir, "run.json");
  sw_status st = path && doc ? sw_json_write_file(path, doc) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(path);
  return st;
}

static sw_status checkpoint(trainer *t) {
  if (t->rank != 0 || t->checkpointed_step == t->step) return SW_STATUS_OK;
  t->checkpointed_step = t->step;
  sw_checkpoint_state s = {.step = t->step, .epoch = t->epoch, .reader = sw_reader_tell(t->train), .seed = t->spec->seed};
  snprintf(s.config_sha256, sizeof s.config_sha256, "%s", t->config_sha256);
  snprintf(s.dataset_sha256, sizeof s.dataset_sha256, "%s", sw_dataset_sha256(t->ds));
  return sw_checkpointer_save(t->ckpt, &s);
}

/* ---- setup ------------------------------------------------------------------------ */

/* Everything before the first step. Every rank builds the model and opens the train
 * split; only rank 0 touches the run dir (checks, resumes, opens metrics and the
 * checkpointer) and the val split. */
static sw_status setup(trainer *t, const char *started) {
  const sw_train_options *opt = t->opt;
  json_t *run = NULL;
  char *path = NULL;
  sw_status st = sw_model_spec_load(opt->model_path, &t->spec);
  if (st) return st;
  if (opt->seed >= 0) t->spec->seed = (uint64_t)opt->seed;
  if (opt->steps > 0) t->spec->steps = opt->steps, t->spec->epochs = 0;
  if (opt->epochs > 0) t->spec->epochs = opt->epochs, t->spec->steps = 0;
  st = sw_dataset_open(opt->data_dir, &t->ds);
  if (st) return st;
  /* one engine thread per rank unless asked: ranks already share the cores */
  t->threads = opt->threads > 0 ? opt->threads : t->size > 1 ? 1 : 0;
  st = sw_model_build(t->spec, t->ds, true, &t->model);
  if (!st) st = sw_graph_alloc(t->model->g, t->spec->batch_size);
  if (!st) st = sw_graph_set_threads(t->model->g, t->threads);
  if (st) return st;
  if (t->spec->init_from) {
    st = sw_model_load(t->model, t->spec->init_from);
    if (st) return st;
  }
  if (t->size > 1 && opt->dist == SW_DIST_ASYNC) {
    const sw_node *bufs;
    if (sw_graph_buffers(t->model->g, &bufs) > 0)
      return sw_error(SW_STATUS_UNSUPPORTED, "--dist async: the model has buffers (batch norm statistics), which only the "
                                             "workers would update; use --dist sync");
  }
  sw_graph_set_training(t->model->g, true);
  sw_reader_options ro = {.seed = t->spec->seed, .shuffle = t->spec->shuffle};
  st = sw_reader_open(t->ds, "train", &ro, &t->train);
  if (st) return st;
  if (t->rank == 0 && sw_dataset_split_examples(t->ds, "val") > 0) {
    sw_reader_options vo = {.seed = 0, .shuffle = false};
    st = sw_reader_open(t->ds, "val", &vo, &t->val);
    if (st) return st;
  }
  t->n_train = (int64_t)sw_reader_examples(t->train);
  if (t->n_train == 0) return sw_error(SW_STATUS_INVALID, "%s: the train split is empty", opt->data_dir);
  int64_t per_epoch = (t->n_train + t->spec->batch_size - 1) / t->spec->batch_size;
  t->total_steps = t->spec->steps > 0 ? t->spec->steps : t->spec->epochs * per_epoch;
  t->sched = t->spec->schedule;
  if (t->sched.kind == SW_LR_COSINE && t->sched.total_steps <= 0) t->sched.total_steps = t->total_steps;
  t->n_params = sw_graph_params(t->model->g, &t->params);
  t->m = sw_calloc(t->n_params + 1, sizeof *t->m);
  t->v = sw_calloc(t->n_params + 1, sizeof *t->v);
  t->grads = sw_calloc(t->n_params + 1, sizeof *t->grads);
  t->sizes = sw_calloc(t->n_params + 1, sizeof *t->sizes);
  t->rs = sw_calloc((size_t)t->size, sizeof *t->rs);
  t->tot = sw_calloc((size_t)t->size, sizeof *t->tot);
  if (!t->m || !t->v || !t->grads || !t->sizes || !t->rs || !t->tot) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < t->n_params; i++) {
    t->sizes[i] = (size_t)sw_graph_elements(t->model->g, t->params[i]);
    t->grads[i] = sw_graph_grad(t->model->g, t->params[i]);
    t->n_floats += t->sizes[i];
    t->m[i] = sw_calloc(t->sizes[i] ? t->sizes[i] : 1, sizeof(float));
    t->v[i] = sw_calloc(t->sizes[i] ? t->sizes[i] : 1, sizeof(float));
    if (!t->m[i] || !t->v[i]) return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  st = config_hash(t, t->config_sha256);
  if (st || t->rank != 0) return st;

  bool resume = false;
  st = check_existing(t, &resume);
  if (!st) st = sw_mkdir_p(opt->out_dir);
  if (st) return st;
  if (resume) {
    sw_checkpoint_state cs;
    st = sw_checkpoint_restore(opt->out_dir, t->model, t->m, t->v, &cs);
    if (st == SW_STATUS_NOT_FOUND) {
      SW_INFO("%s: no checkpoint yet, starting from the beginning", opt->out_dir);
      st = SW_STATUS_OK;
    } else if (st) {
      return st;
    } else {
      t->step = t->checkpointed_step = cs.step;
      t->epoch = cs.epoch;
      st = sw_reader_seek(t->train, cs.reader);
      if (st) return st;
    }
  }
  path = sw_path_join(opt->out_dir, "model.yaml");
  st = path ? copy_file(opt->model_path, path) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(path);
  path = sw_path_join(opt->out_dir, "metrics.jsonl");
  if (!st && !(t->metrics = fopen(path, resume ? "a" : "w"))) st = sw_error(SW_STATUS_IO, "open %s: %s", path, strerror(errno));
  sw_free(path);
  if (!st) st = sw_summary_open(opt->out_dir, &t->tb);
  if (!st) st = write_run(t, run = run_doc(t, started, "running"));
  json_decref(run);
  if (!st) st = sw_checkpointer_open(opt->out_dir, opt->keep, t->model, t->m, t->v, &t->ckpt);
  return st;
}

/* Every rank's status after a phase: each rank learns whether any failed, and all take
 * the same status (their own, or the first failing rank's code with a note), so that
 * every rank leaves together and mpirun exits with that code. */
static sw_status agree(trainer *t, sw_status st, const char *phase) {
  if (t->size == 1) return st;
  float v[SW_STATUS_COUNT_ + 1];
  memset(v, 0, sizeof v);
  if (st) v[st] = 1;
  sw_status cst = t->comm->ops->allreduce_sum(t->comm->ctx, v, SW_STATUS_COUNT_ + 1);
  if (cst) return cst;
  if (st) return st;
  for (int s = 1; s < SW_STATUS_COUNT_; s++)
    if (v[s] > 0)
      return sw_error((sw_status)s, "%s failed on another rank (%s; its own message is in its log)", phase,
                      sw_strerror((sw_status)s));
  return SW_STATUS_OK;
}

/* Rank 0's state to every rank after setup: step, epoch, reader position, then the
 * parameters, buffers and moments (a resumed checkpoint, or init_from). */
static sw_status share_state(trainer *t) {
  if (t->size == 1) return SW_STATUS_OK;
  const sw__comm *c = t->comm;
  sw_reader_pos pos = sw_reader_tell(t->train);
  int64_t head[4] = {t->step, t->epoch, (int64_t)pos.epoch, (int64_t)pos.index};
  sw_status st = c->ops->broadcast(c->ctx, head, sizeof head, 0);
  if (st) return st;
  t->step = head[0];
  t->epoch = head[1];
  t->start_step = t->step;
  st = sw_reader_seek(t->train, (sw_reader_pos){(uint64_t)head[2], (uint64_t)head[3]});
  const sw_node *bufs;
  size_t nb = sw_graph_buffers(t->model->g, &bufs);
  for (size_t i = 0; i < t->n_params && !st; i++) {
    size_t bytes = t->sizes[i] * sizeof(float);
    st = c->ops->broadcast(c->ctx, sw_graph_data(t->model->g, t->params[i]), bytes, 0);
    if (!st) st = c->ops->broadcast(c->ctx, t->m[i], bytes, 0);
    if (!st) st = c->ops->broadcast(c->ctx, t->v[i], bytes, 0);
  }
  for (size_t i = 0; i < nb && !st; i++)
    st = c->ops->broadcast(c->ctx, sw_graph_data(t->model->g, bufs[i]),
                           (size_t)sw_graph_elements(t->model->g, bufs[i]) * sizeof(float), 0);
  return st;
}

/* ---- one rank's gradient ------------------------------------------------------------ */

/* The next global batch of `global` examples (the last of an epoch may be short) and this
 * part of it: examples [part*n/parts, (part+1)*n/parts) read into *b, *n_part of them
 * (0 leaves *b NULL). The reader ends after the whole global batch, as on every rank, so
 * its position is the global one. EOF at the end of an epoch, as sw_reader_next. */
static sw_status next_slice(sw_reader *r, int64_t global, int part, int parts, const sw_batch **b, size_t *n_part,
                            size_t *n_global) {
  *b = NULL;
  *n_part = *n_global = 0;
  sw_reader_pos pos = sw_reader_tell(r);
  uint64_t n = sw_reader_examples(r);
  if (pos.index >= n) return sw_reader_next(r, (size_t)global, b); /* EOF, and on to the next epoch */
  uint64_t take = n - pos.index < (uint64_t)global ? n - pos.index : (uint64_t)global;
  uint64_t lo = take * (uint64_t)part / (uint64_t)parts, hi = take * (uint64_t)(part + 1) / (uint64_t)parts;
  sw_status st = SW_STATUS_OK;
  if (hi > lo) {
    st = sw_reader_seek(r, (sw_reader_pos){pos.epoch, pos.index + lo});
    if (!st) st = sw_reader_next(r, (size_t)(hi - lo), b);
    if (!st && (*b)->n != hi - lo) st = sw_error(SW_STATUS_TRUNCATED, "read %zu examples of %llu", (*b)->n, (unsigned long long)(hi - lo));
  }
  if (!st) st = sw_reader_seek(r, (sw_reader_pos){pos.epoch, pos.index + take});
  *n_part = (size_t)(hi - lo);
  *n_global = (size_t)take;
  return st;
}

/* Forward and backward on b (NULL: no examples, zero gradients), the gradients scaled
 * by weight (a slice's share n_r/n of the global mean); adds loss*examples and the
 * correct predictions. A made straggler sleeps here. */
static sw_status compute(trainer *t, const sw_batch *b, float weight, int64_t step, double *loss_sum, int64_t *correct) {
  sw_graph *g = t->model->g;
  if (t->opt->debug_slow_ms > 0 && t->opt->debug_slow_rank == t->rank) usleep((useconds_t)t->opt->debug_slow_ms * 1000);
  /* a test's dead rank (a node lost): the job dies as it would, mpirun ends the others */
  if (t->size > 1 && t->opt->debug_crash_step > 0 && t->opt->debug_crash_rank == t->rank && step + 1 >= t->opt->debug_crash_step)
    kill(getpid(), SIGKILL);
  if (!b || b->n == 0) {
    for (size_t i = 0; i < t->n_params; i++) memset(t->grads[i], 0, t->sizes[i] * sizeof(float));
    return SW_STATUS_OK;
  }
  sw_status st = sw_model_feed(t->model, t->spec, b);
  sw_graph_set_step(g, t->spec->seed, step);
  if (!st) st = sw_graph_forward(g);
  if (!st) st = sw_graph_backward(g, t->model->loss);
  if (st) return st;
  float loss = ((float *)sw_graph_data(g, t->model->loss))[0];
  if (weight != 1.0f)
    for (size_t i = 0; i < t->n_params; i++)
      for (size_t j = 0; j < t->sizes[i]; j++) t->grads[i][j] *= weight;
  *loss_sum += (double)loss * (double)b->n;
  if (t->spec->loss == SW_LOSS_SOFTMAX_CE) {
    const float *p = sw_graph_data(g, t->model->output);
    const int64_t *y = sw_graph_data(g, t->model->label);
    int64_t k = t->model->classes;
    for (size_t i = 0; i < b->n; i++) {
      int64_t best = 0;
      for (int64_t c = 1; c < k; c++)
        if (p[i * k + c] > p[i * k + best]) best = c;
      *correct += best == y[i];
    }
  }
  return SW_STATUS_OK;
}

/* Clips and applies the gradients now in t->grads: the same bits on every rank that
 * holds the same parameters and gradients. */
static void apply_update(trainer *t) {
  if (t->spec->clip_norm > 0) sw_clip_global_norm(t->grads, t->sizes, t->n_params, t->spec->clip_norm);
  t->lr = sw_lr_at(&t->sched, t->step);
  for (size_t i = 0; i < t->n_params; i++)
    sw_optim_update(&t->spec->optim, t->lr, t->step + 1, sw_graph_data(t->model->g, t->params[i]), t->grads[i], t->m[i],
                    t->v[i], t->sizes[i]);
}

/* ---- after each update: metrics, validation, checkpoints --------------------------- */

/* The per-rank lines of a logging window: rank 0 writes one {"split": "rank"} line per
 * rank. In sync mode every rank calls this at the same step (a gather). */
static sw_status rank_lines(trainer *t, bool gathered_here) {
  sw_status st = SW_STATUS_OK;
  if (!gathered_here && t->size > 1) {
    rank_stats mine = t->rs[0];
    st = t->comm->ops->gather(t->comm->ctx, &mine, t->rs, sizeof mine, 0);
    if (st) return st;
    if (t->rank != 0) {
      memset(t->rs, 0, sizeof *t->rs);
      return SW_STATUS_OK;
    }
  }
  for (int r = 0; r < t->size && !st; r++) {
    rank_stats *s = &t->rs[r];
    double k = s->steps > 0 ? s->steps : 1;
    json_t *line = json_pack("{s:I, s:s, s:i, s:I, s:f, s:f, s:f, s:f, s:I, s:I}", "step", (json_int_t)t->step, "split",
                             "rank", "rank", r, "gradients", (json_int_t)s->steps, "step_time", s->step_s / k,
                             "compute_time", s->compute_s / k, "wait_time", s->wait_s / k, "allreduce_time",
                             s->allreduce_s / k, "kept", (json_int_t)s->kept, "dropped", (json_int_t)s->dropped);
    if (line && t->opt->dist == SW_DIST_ASYNC) {
      json_object_set_new(line, "staleness_mean", json_real(s->kept > 0 ? s->staleness_sum / s->kept : 0));
      json_object_set_new(line, "staleness_max", json_integer((json_int_t)s->staleness_max));
    }
    st = line ? metrics_line(t, line) : sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  for (int r = 0; r < t->size; r++) {
    t->tot[r].kept += t->rs[r].kept;
    t->tot[r].dropped += t->rs[r].dropped;
  }
  memset(t->rs, 0, (size_t)t->size * sizeof *t->rs);
  return st;
}

/* Bookkeeping after update t->step (already counted): the train line every log_every
 * steps, validation at an epoch's end, checkpoints by interval. Ranks other than 0 only
 * keep the epoch and take part in the per-rank gather. */
static sw_status after_step(trainer *t, double loss_sum, int64_t examples, int64_t correct, bool epoch_end,
                            bool gather) {
  sw_status st = SW_STATUS_OK;
  t->loss_acc += loss_sum;
  t->seen += examples;
  t->seen_log += examples;
  t->correct += correct;
  if (t->step % t->log_every == 0 || t->step == t->total_steps) {
    double now = sw_now();
    double sps = (double)t->seen_log / (now - t->tlog);
    double mean = t->seen_log ? t->loss_acc / (double)t->seen_log : NAN;
    if (t->rank == 0) {
      json_t *line = json_pack("{s:I, s:I, s:s, s:f, s:f, s:f}", "step", (json_int_t)t->step, "epoch",
                               (json_int_t)t->epoch, "split", "train", "loss", mean, "lr", (double)t->lr,
                               "samples_per_sec", sps);
      if (t->spec->loss == SW_LOSS_SOFTMAX_CE && t->seen_log)
        json_object_set_new(line, "accuracy", json_real((double)t->correct / (double)t->seen_log));
      sw_summary_scalar(t->tb, t->step, "train/loss", (float)mean);
      sw_summary_scalar(t->tb, t->step, "train/lr", t->lr);
      sw_summary_scalar(t->tb, t->step, "train/samples_per_sec", (float)sps);
      char note[96];
      snprintf(note, sizeof note, "loss %.4f, %.0f samples/s", mean, sps);
      sw_progress_note(t->bar, note);
      st = metrics_line(t, line);
    }
    if (t->size > 1) { /* even after a failure here: in sync every rank is in the gather */
      sw_status rst = rank_lines(t, !gather);
      if (!st) st = rst;
    }
    t->loss_acc = 0;
    t->seen_log = 0;
    t->correct = 0;
    t->tlog = now;
  }
  sw_progress_update(t->bar, (uint64_t)t->step);
  if (!st && epoch_end) st = validate(t, true);
  if (st || t->rank != 0) return st;
  double now = sw_now();
  if (t->auto_pending && t->step - t->start_step == 2) {
    /* measure the cost C of one checkpoint (the time training stalls for its
     * snapshot; the disk write runs beside training), then Young's interval
     * sqrt(2 C MTBF), no shorter than twice the write so writes never queue */
    double c0 = sw_now();
    st = checkpoint(t);
    if (!st) st = sw_checkpointer_wait(t->ckpt);
    double snap = 0, write = 0;
    sw_checkpointer_costs(t->ckpt, &snap, &write);
    double step_s = (c0 - t->t0) / (double)(t->step - t->start_step);
    double mtbf = t->opt->mtbf_seconds > 0 ? t->opt->mtbf_seconds : 86400.0;
    double cost = snap > 1e-4 ? snap : 1e-4;
    double interval = sqrt(2.0 * cost * mtbf);
    if (interval < 2 * write) interval = 2 * write;
    t->every_steps = (int64_t)(interval / (step_s > 0 ? step_s : 1e-3));
    if (t->every_steps < 1) t->every_steps = 1;
    SW_INFO("checkpoint stall %.4fs (write %.3fs beside training), MTBF %.0fs: Young's interval %.1fs = every %lld "
            "steps", snap, write, mtbf, interval, (long long)t->every_steps);
    t->auto_pending = false;
    t->last_ckpt = now;
  } else if ((t->every_steps && t->step % t->every_steps == 0) || (t->every_s > 0 && now - t->last_ckpt >= t->every_s)) {
    st = checkpoint(t);
    t->last_ckpt = now;
  }
  return st;
}

/* Stopped by a signal after a whole step: rank 0 persists it; every rank returns PREEMPTED. */
static sw_status preempted(trainer *t) {
  sw_status st = checkpoint(t);
  if (!st && t->rank == 0) st = sw_checkpointer_wait(t->ckpt);
  if (!st && t->tb) sw_summary_flush(t->tb);
  if (st) return st;
  return sw_error(SW_STATUS_PREEMPTED, "stopped by a signal after step %lld of %lld; checkpoint written, run again to resume",
                  (long long)t->step, (long long)t->total_steps);
}

/* ---- sync: every rank computes its slice, allreduce, the same update everywhere ---- */

/* Sums the gradients over the ranks through flat buckets of bucket_floats. */
static sw_status allreduce_grads(trainer *t, size_t bucket_floats) {
  size_t i = 0, off = 0; /* the parameter and the element next to pack */
  while (i < t->n_params) {
    size_t fill = 0;
    size_t i0 = i, off0 = off;
    while (i < t->n_params && fill < bucket_floats) {
      size_t c = t->sizes[i] - off < bucket_floats - fill ? t->sizes[i] - off : bucket_floats - fill;
      memcpy(t->flat + fill, t->grads[i] + off, c * sizeof(float));
      fill += c;
      off += c;
      if (off == t->sizes[i]) i++, off = 0;
    }
    sw_status st = t->comm->ops->allreduce_sum(t->comm->ctx, t->flat, fill);
    if (st) return st;
    size_t k = 0;
    for (size_t j = i0, o = off0; k < fill;) {
      size_t c = t->sizes[j] - o < fill - k ? t->sizes[j] - o : fill - k;
      memcpy(t->grads[j] + o, t->flat + k, c * sizeof(float));
      k += c;
      o += c;
      if (o == t->sizes[j]) j++, o = 0;
    }
  }
  return SW_STATUS_OK;
}

/* Buffers (batch norm's running statistics) are each rank's, from its slice: their mean
 * over the ranks after every step keeps them the same on every rank (close to, but not
 * the bits of, one process's statistics over the whole batch). */
static sw_status average_buffers(trainer *t) {
  const sw_node *bufs;
  size_t nb = sw_graph_buffers(t->model->g, &bufs);
  sw_status st = SW_STATUS_OK;
  for (size_t i = 0; i < nb && !st; i++) {
    float *d = sw_graph_data(t->model->g, bufs[i]);
    size_t n = (size_t)sw_graph_elements(t->model->g, bufs[i]);
    st = t->comm->ops->allreduce_sum(t->comm->ctx, d, n);
    for (size_t j = 0; j < n && !st; j++) d[j] /= (float)t->size;
  }
  return st;
}

/* Compares params_sha256 over the ranks: a rank that differs is a bug (an update that
 * is not the same everywhere), and the run fails loudly rather than save one of them. */
static sw_status check_same_params(trainer *t) {
  if (t->size == 1) return SW_STATUS_OK;
  char mine[SW_SHA256_HEX_LEN] = {0};
  char *all = t->rank == 0 ? sw_calloc((size_t)t->size, SW_SHA256_HEX_LEN) : NULL;
  char dummy[SW_SHA256_HEX_LEN];
  sw_status st = sw_model_params_sha256(t->model, mine);
  if (st) memset(mine, 0, sizeof mine);
  if (t->rank == 0 && !all) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status gst = t->comm->ops->gather(t->comm->ctx, mine, all ? all : dummy, SW_SHA256_HEX_LEN, 0);
  if (gst) {
    sw_free(all);
    return gst;
  }
  int32_t bad = -1;
  if (t->rank == 0 && all)
    for (int r = 1; r < t->size && bad < 0; r++)
      if (memcmp(all + (size_t)r * SW_SHA256_HEX_LEN, mine, SW_SHA256_HEX_LEN) != 0) bad = r;
  gst = t->comm->ops->broadcast(t->comm->ctx, &bad, sizeof bad, 0);
  sw_free(all);
  if (gst) return gst;
  if (bad >= 0)
    return sw_error(SW_STATUS_CORRUPT, "step %lld: rank %d's parameters differ from rank 0's (params_sha256): the ranks "
                    "diverged; refusing to save", (long long)t->step, (int)bad);
  return st;
}

static sw_status loop_sync(trainer *t) {
  const sw__comm *c = t->comm;
  size_t bucket = (size_t)((t->opt->bucket_mb > 0 ? t->opt->bucket_mb : 4.0) * 1048576.0 / sizeof(float));
  if (bucket < 1024) bucket = 1024;
  if (bucket > t->n_floats) bucket = t->n_floats ? t->n_floats : 1;
  if (t->size > 1) {
    t->flat = sw_malloc(bucket * sizeof(float));
    if (!t->flat) return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  sw_status st = SW_STATUS_OK;
  while (t->step < t->total_steps) {
    double s0 = sw_now();
    const sw_batch *b = NULL;
    size_t n_part = 0, n_glob = 0;
    double loss_sum = 0;
    int64_t correct = 0;
    /* a rank's own failure (or rank 0's from the last step's bookkeeping) travels in
     * the step's flags, so that every rank stops at the same step */
    st = t->pending;
    if (!st) {
      st = next_slice(t->train, t->spec->batch_size, t->rank, t->size, &b, &n_part, &n_glob);
      if (st == SW_STATUS_EOF) continue; /* the same on every rank: the position is global */
    }
    if (!st) st = compute(t, b, n_glob ? (float)n_part / (float)n_glob : 1.0f, t->step, &loss_sum, &correct);
    double s1 = sw_now();
    /* loss*n, correct, stop, then one slot per status code */
    float flags[3 + SW_STATUS_COUNT_];
    memset(flags, 0, sizeof flags);
    flags[0] = (float)loss_sum;
    flags[1] = (float)correct;
    flags[2] = t->opt->stop && *t->opt->stop;
    if (st) flags[3 + st] = 1;
    sw_status cst = c->ops->allreduce_sum(c->ctx, flags, 3 + SW_STATUS_COUNT_);
    if (cst) return cst;
    double s2 = sw_now();
    if (st) return st;
    for (int k = 1; k < SW_STATUS_COUNT_; k++)
      if (flags[3 + k] > 0)
        return sw_error((sw_status)k, "step %lld: another rank failed (%s; its own message is in its log)",
                        (long long)t->step, sw_strerror((sw_status)k));
    if (t->size > 1) {
      st = allreduce_grads(t, bucket);
      if (st) return st;
    }
    double s3 = sw_now();
    double loss = flags[0] / (double)n_glob;
    if (t->size == 1) loss = loss_sum / (double)n_glob;
    if (!isfinite(loss))
      return sw_error(SW_STATUS_RANGE, "step %lld: the loss is %g (diverged); try a lower lr", (long long)t->step, loss);
    apply_update(t);
    t->step++;
    if (t->size > 1) {
      st = average_buffers(t);
      if (st) return st;
    }
    if (t->step == 1 && t->opt->debug_corrupt_rank > 0 && t->opt->debug_corrupt_rank == t->rank && t->n_params)
      ((float *)sw_graph_data(t->model->g, t->params[0]))[0] += 1e-3f; /* a test of check_same_params */
    rank_stats *me = &t->rs[0];
    me->steps++;
    me->kept++;
    me->compute_s += s1 - s0;
    me->wait_s += s2 - s1;
    me->allreduce_s += s3 - s2;
    me->step_s += sw_now() - s0;
    /* exact on every rank: loss sums are added as floats above only for the log */
    st = after_step(t, t->size > 1 ? (double)flags[0] : loss_sum, (int64_t)n_glob,
                    t->size > 1 ? (int64_t)flags[1] : correct,
                    sw_reader_tell(t->train).index >= (uint64_t)t->n_train, true);
    if (t->opt->dist_check_every > 0 && t->step % t->opt->dist_check_every == 0) { /* every rank, whatever st */
      sw_status cst2 = check_same_params(t);
      if (!st) st = cst2;
    }
    if (st) {
      if (t->size == 1 || t->rank != 0) return st; /* gathers fail on every rank alike */
      t->pending = st; /* told to the others at the next step, or after the last */
      continue;
    }
    if (flags[2] > 0 || (t->size == 1 && t->opt->stop && *t->opt->stop)) return preempted(t);
  }
  return t->pending;
}

/* ---- coordinator modes: backup workers and async --------------------------------- */

static size_t msg_bytes(const trainer *t) { return sizeof(sw__msg_head) + t->n_floats * sizeof(float); }

static float *msg_floats(void *msg) { return (float *)((char *)msg + sizeof(sw__msg_head)); }

/* Rank 0's buffers for parameter messages: two per worker, so each can hold the
 * message it computes from and the next one without rank 0 waiting for either. */
static sw_status params_buffers(trainer *t) {
  size_t n = 2 * (size_t)t->size;
  t->pbuf = sw_calloc(n, sizeof *t->pbuf);
  t->preq = sw_calloc(n, sizeof *t->preq);
  t->pnext = sw_calloc((size_t)t->size, sizeof *t->pnext);
  if (!t->pbuf || !t->preq || !t->pnext) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 2; i < n; i++) /* none for rank 0 itself */
    if (!(t->pbuf[i] = sw_malloc(msg_bytes(t)))) return sw_error(SW_STATUS_NOMEM, "out of memory");
  return SW_STATUS_OK;
}

/* Rank 0 to a worker: the current parameters (version t->step) and where its batch
 * starts. The send does not wait for the worker, which may be computing: the buffer
 * used two messages ago is the one reused, and by then the worker has received it. */
static sw_status send_params(trainer *t, int to, sw_reader_pos pos) {
  int slot = 2 * to + t->pnext[to];
  t->pnext[to] ^= 1;
  sw_status st = sw__wait(&t->preq[slot], NULL, NULL);
  if (st) return st;
  void *msg = t->pbuf[slot];
  sw__msg_head *h = msg;
  memset(h, 0, sizeof *h);
  h->kind = SW__MSG_PARAMS;
  h->step = t->step;
  h->pos_epoch = pos.epoch;
  h->pos_index = pos.index;
  float *f = msg_floats(msg);
  for (size_t i = 0; i < t->n_params; i++) {
    memcpy(f, sw_graph_data(t->model->g, t->params[i]), t->sizes[i] * sizeof(float));
    f += t->sizes[i];
  }
  return sw__isend(to, SW__TAG_PARAMS, msg, msg_bytes(t), &t->preq[slot]);
}

static sw_status send_done(int to) {
  sw__msg_head h;
  memset(&h, 0, sizeof h);
  h.kind = SW__MSG_DONE;
  return sw__send(to, SW__TAG_PARAMS, &h, sizeof h);
}

/* A worker: receive parameters, compute the gradient of the batch (sync with backup
 * workers: this rank's slice of the global batch; async: a whole batch), send it back
 * with the version it was computed at; until rank 0 says done. The next parameter
 * message is received while this one's gradient is computed, and the gradient leaves
 * while the next is computed, so a worker waits only when rank 0 has nothing for it. */
static sw_status worker_loop(trainer *t) {
  bool async = t->opt->dist == SW_DIST_ASYNC;
  sw_status st = SW_STATUS_OK, cst = SW_STATUS_OK;
  double waited = 0;
  size_t mb = msg_bytes(t);
  void *in[2] = {sw_malloc(mb), sw_malloc(mb)};
  sw__req rreq[2] = {{{0}, false}, {{0}, false}}, sreq = {{0}, false};
  t->flat = sw_malloc(mb); /* the outgoing gradient */
  if (!in[0] || !in[1] || !t->flat) {
    sw__dist_broken();
    cst = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto done;
  }
  cst = sw__irecv(0, SW__TAG_PARAMS, in[0], mb, &rreq[0]);
  for (int cur = 0; !cst; cur ^= 1) {
    double w0 = sw_now();
    size_t got = 0;
    cst = sw__wait(&rreq[cur], NULL, &got);
    if (cst) break;
    waited += sw_now() - w0;
    sw__msg_head h = *(sw__msg_head *)in[cur];
    if (got >= sizeof h && h.kind == SW__MSG_DONE) break;
    if (got != mb || h.kind != SW__MSG_PARAMS || h.step < 0) {
      sw__dist_broken(); /* rank 0 would wait for this rank's gradient */
      cst = sw_error(SW_STATUS_FORMAT, "rank 0 sent a malformed parameter message (%zu bytes)", got);
      break;
    }
    cst = sw__irecv(0, SW__TAG_PARAMS, in[cur ^ 1], mb, &rreq[cur ^ 1]);
    if (cst) break;
    double c0 = sw_now();
    const float *f = msg_floats(in[cur]);
    for (size_t i = 0; i < t->n_params; i++) {
      memcpy(sw_graph_data(t->model->g, t->params[i]), f, t->sizes[i] * sizeof(float));
      f += t->sizes[i];
    }
    const sw_batch *b = NULL;
    size_t n_part = 0, n_glob = 0;
    double loss_sum = 0;
    int64_t correct = 0;
    if (!st) st = sw_reader_seek(t->train, (sw_reader_pos){h.pos_epoch, h.pos_index});
    if (!st) {
      st = async ? next_slice(t->train, t->spec->batch_size, 0, 1, &b, &n_part, &n_glob)
                 : next_slice(t->train, t->spec->batch_size, t->rank, t->size, &b, &n_part, &n_glob);
      if (st == SW_STATUS_EOF) st = sw_error(SW_STATUS_RANGE, "rank %d: sent past the end of an epoch", t->rank);
    }
    if (!st) st = compute(t, b, n_glob ? (float)n_part / (float)n_glob : 1.0f, h.step, &loss_sum, &correct);
    double c1 = sw_now();
    cst = sw__wait(&sreq, NULL, NULL); /* the previous gradient has left: its buffer is free */
    if (cst) break;
    waited += sw_now() - c1;
    sw__msg_head *out = (sw__msg_head *)t->flat;
    memset(out, 0, sizeof *out);
    out->kind = SW__MSG_GRAD;
    out->rank = t->rank;
    out->step = h.step;
    out->examples = (int64_t)n_part;
    out->correct = correct;
    out->loss_sum = loss_sum;
    out->error = st;
    float *g = msg_floats(t->flat);
    for (size_t i = 0; i < t->n_params && !st; i++) {
      memcpy(g, t->grads[i], t->sizes[i] * sizeof(float));
      g += t->sizes[i];
    }
    out->compute_s = c1 - c0;
    out->wait_s = waited;
    waited = 0;
    cst = sw__isend(0, SW__TAG_GRAD, t->flat, st ? sizeof *out : mb, &sreq);
  }
done:
  if (!cst) cst = sw__wait(&sreq, NULL, NULL);
  sw__cancel(&sreq);
  sw__cancel(&rreq[0]);
  sw__cancel(&rreq[1]);
  sw_free(in[0]);
  sw_free(in[1]);
  return cst ? cst : st;
}

/* Rank 0 ends the workers: collects the gradient of every assignment still out
 * (dropped), then tells each it is done. */
static sw_status stop_workers(trainer *t, const int *busy) {
  sw_status st = SW_STATUS_OK;
  for (int w = 1; w < t->size && !st; w++) {
    for (int k = 0; k < busy[w] && !st; k++) {
      st = sw__recv(w, SW__TAG_GRAD, t->flat, msg_bytes(t), NULL, NULL);
      if (!st && ((sw__msg_head *)t->flat)->error == 0) t->rs[w].dropped++;
    }
    for (int k = 0; k < 2 && !st; k++) st = sw__wait(&t->preq[2 * w + k], NULL, NULL);
    if (!st) st = send_done(w);
  }
  return st;
}

/* A worker's gradient message of `bytes`: its stats into rs, an error into a status.
 * Peers run this same code, but a message that is not what it says is refused. */
static sw_status take_grad(trainer *t, int w, const sw__msg_head *h, size_t bytes) {
  if (bytes < sizeof *h || h->kind != SW__MSG_GRAD || h->rank != w || h->error < 0 || h->error >= SW_STATUS_COUNT_ ||
      (!h->error && (bytes != msg_bytes(t) || h->examples < 0 || h->step < 0 || h->step > t->step)))
    return sw_error(SW_STATUS_FORMAT, "rank %d sent a malformed gradient message (%zu bytes)", w, bytes);
  rank_stats *s = &t->rs[w];
  s->steps++;
  s->compute_s += h->compute_s;
  s->wait_s += h->wait_s;
  s->step_s += h->compute_s + h->wait_s;
  if (h->error)
    return sw_error((sw_status)h->error, "rank %d failed at step %lld (%s; its own message is in its log)", w,
                    (long long)h->step, sw_strerror((sw_status)h->error));
  return SW_STATUS_OK;
}

/* Sync with backup workers (Chen et al. 2016): rank 0 computes its own slice, then takes
 * the first N-B-1 workers' gradients for this step and drops the rest (any gradient
 * for an older step). The update is the mean over the kept examples. */
static sw_status loop_backup(trainer *t) {
  int need = t->size - t->opt->backup_workers; /* gradients per step, rank 0's included */
  int *busy = sw_calloc((size_t)t->size, sizeof *busy); /* assignments out per worker */
  t->acc = sw_malloc((t->n_floats ? t->n_floats : 1) * sizeof(float));
  t->flat = sw_malloc(msg_bytes(t));
  if (!busy || !t->acc || !t->flat) {
    sw_free(busy);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  sw_status st = params_buffers(t);
  while (!st && t->step < t->total_steps) {
    double s0 = sw_now(), step0 = s0;
    sw_reader_pos pos = sw_reader_tell(t->train);
    const sw_batch *b = NULL;
    size_t n_part = 0, n_glob = 0;
    double loss_sum = 0;
    int64_t correct = 0, kept = 0;
    st = next_slice(t->train, t->spec->batch_size, 0, t->size, &b, &n_part, &n_glob);
    if (st == SW_STATUS_EOF) {
      st = SW_STATUS_OK;
      continue;
    }
    for (int w = 1; w < t->size && !st; w++)
      if (!busy[w]) {
        st = send_params(t, w, pos);
        busy[w] = 1;
      }
    double sent = sw_now();
    t->rs[0].allreduce_s += sent - s0;
    s0 = sent;
    if (!st) st = compute(t, b, n_glob ? (float)n_part / (float)n_glob : 1.0f, t->step, &loss_sum, &correct);
    if (st) break;
    double s1 = sw_now();
    float *f = t->acc;
    for (size_t i = 0; i < t->n_params; i++) {
      memcpy(f, t->grads[i], t->sizes[i] * sizeof(float));
      f += t->sizes[i];
    }
    kept = (int64_t)n_part;
    t->rs[0].steps++;
    t->rs[0].kept++;
    t->rs[0].compute_s += s1 - s0;
    for (int have = 1; have < need && !st;) {
      int w = 0;
      size_t got = 0;
      st = sw__recv(-1, SW__TAG_GRAD, t->flat, msg_bytes(t), &w, &got);
      if (st) break;
      const sw__msg_head *h = (const sw__msg_head *)t->flat;
      busy[w]--;
      st = take_grad(t, w, h, got);
      if (st) break;
      if (h->step != t->step) { /* late: its step is done; the worker gets this one's parameters */
        t->rs[w].dropped++;
        st = send_params(t, w, pos);
        busy[w]++;
        continue;
      }
      const float *g = msg_floats(t->flat);
      for (size_t j = 0; j < t->n_floats; j++) t->acc[j] += g[j];
      kept += h->examples;
      loss_sum += h->loss_sum;
      correct += h->correct;
      t->rs[w].kept++;
      have++;
    }
    if (st) break;
    double s2 = sw_now();
    /* each slice was weighted n_r/n: reweight so the kept ones make a mean */
    float scale = kept > 0 ? (float)n_glob / (float)kept : 0.0f;
    f = t->acc;
    for (size_t i = 0; i < t->n_params; i++) {
      for (size_t j = 0; j < t->sizes[i]; j++) t->grads[i][j] = f[j] * scale;
      f += t->sizes[i];
    }
    double loss = kept ? loss_sum / (double)kept : 0;
    if (!isfinite(loss)) {
      st = sw_error(SW_STATUS_RANGE, "step %lld: the loss is %g (diverged); try a lower lr", (long long)t->step, loss);
      break;
    }
    apply_update(t);
    t->step++;
    t->rs[0].wait_s += s2 - s1;
    t->rs[0].step_s += sw_now() - step0;
    st = after_step(t, loss_sum, kept, correct, sw_reader_tell(t->train).index >= (uint64_t)t->n_train, false);
    if (!st && t->opt->stop && *t->opt->stop) st = SW_STATUS_PREEMPTED;
  }
  sw_status sst = stop_workers(t, busy);
  sw_free(busy);
  if (st == SW_STATUS_PREEMPTED && !sst) return preempted(t);
  return st ? st : sst;
}

/* Async (Downpour SGD): rank 0 holds the parameters and applies each worker's gradient
 * as it arrives, unless it was computed more than max_staleness updates ago; the worker
 * gets the current parameters and the next batch at once. */
static sw_status loop_async(trainer *t) {
  int *busy = sw_calloc((size_t)t->size, sizeof *busy); /* assignments out per worker */
  t->flat = sw_malloc(msg_bytes(t));
  t->stale_hist = sw_calloc((size_t)t->max_staleness + 1, sizeof *t->stale_hist);
  if (!busy || !t->flat || !t->stale_hist) {
    sw_free(busy);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  sw_status st = params_buffers(t);
  bool epoch_end = false;
  /* the next batch to hand out; an epoch's end is validated after the update that follows */
  sw_reader_pos pos;
#define ASSIGN(w)                                                                                                   \
  do {                                                                                                              \
    pos = sw_reader_tell(t->train);                                                                                 \
    if (pos.index >= (uint64_t)t->n_train) pos.epoch++, pos.index = 0;                                              \
    uint64_t take = (uint64_t)t->n_train - pos.index < (uint64_t)t->spec->batch_size ? (uint64_t)t->n_train - pos.index \
                                                                                     : (uint64_t)t->spec->batch_size; \
    st = sw_reader_seek(t->train, (sw_reader_pos){pos.epoch, pos.index + take});                                    \
    if (!st && pos.index + take >= (uint64_t)t->n_train) epoch_end = true;                                          \
    if (!st) st = send_params(t, (w), pos);                                                                         \
    if (!st) busy[w]++;                                                                                             \
  } while (0)
  /* two assignments per worker: it computes the second while rank 0 takes the first */
  for (int k = 0; k < 2; k++)
    for (int w = 1; w < t->size && !st; w++) ASSIGN(w);
  double s0 = sw_now();
  while (!st && t->step < t->total_steps) {
    int w = 0;
    double r0 = sw_now();
    size_t got = 0;
    st = sw__recv(-1, SW__TAG_GRAD, t->flat, msg_bytes(t), &w, &got);
    if (st) break;
    t->rs[0].wait_s += sw_now() - r0;
    const sw__msg_head *h = (const sw__msg_head *)t->flat;
    busy[w]--;
    st = take_grad(t, w, h, got);
    if (st) break;
    int64_t staleness = t->step - h->step;
    if (staleness > t->max_staleness) {
      t->rs[w].dropped++;
      ASSIGN(w);
      continue;
    }
    t->rs[w].kept++;
    t->rs[w].staleness_sum += (double)staleness;
    if ((double)staleness > t->rs[w].staleness_max) t->rs[w].staleness_max = (double)staleness;
    t->stale_hist[staleness]++;
    const float *g = msg_floats(t->flat);
    for (size_t i = 0; i < t->n_params; i++) {
      memcpy(t->grads[i], g, t->sizes[i] * sizeof(float));
      g += t->sizes[i];
    }
    double loss = h->examples ? h->loss_sum / (double)h->examples : 0;
    double loss_sum = h->loss_sum;
    int64_t examples = h->examples, correct = h->correct;
    if (!isfinite(loss)) {
      st = sw_error(SW_STATUS_RANGE, "step %lld: the loss is %g (diverged); try a lower lr", (long long)t->step, loss);
      break;
    }
    apply_update(t);
    t->step++;
    bool ended = epoch_end;
    epoch_end = false;
    if (t->step < t->total_steps) ASSIGN(w); /* first, so the worker computes while rank 0 logs */
    if (st) break;
    double now = sw_now();
    t->rs[0].steps++;
    t->rs[0].step_s += now - s0;
    s0 = now;
    st = after_step(t, loss_sum, examples, correct, ended, false);
    if (!st && t->opt->stop && *t->opt->stop) st = SW_STATUS_PREEMPTED;
  }
#undef ASSIGN
  sw_status sst = stop_workers(t, busy);
  sw_free(busy);
  if (st == SW_STATUS_PREEMPTED && !sst) return preempted(t);
  return st ? st : sst;
}

/* Rank 0's totals of a distributed run, into run.json's "dist": gradients kept and
 * dropped per rank, and the staleness of the applied ones (async). */
static void dist_totals(const trainer *t, json_t *run) {
  json_t *o = json_object_get(run, "dist");
  if (!o) return;
  json_t *k = json_array(), *d = json_array();
  for (int r = 0; r < t->size; r++) {
    json_array_append_new(k, json_integer((json_int_t)(t->tot[r].kept + t->rs[r].kept)));
    json_array_append_new(d, json_integer((json_int_t)(t->tot[r].dropped + t->rs[r].dropped)));
  }
  json_object_set_new(o, "kept_per_rank", k);
  json_object_set_new(o, "dropped_per_rank", d);
  if (t->stale_hist) {
    json_t *h = json_array();
    for (int64_t s = 0; s <= t->max_staleness; s++) json_array_append_new(h, json_integer(t->stale_hist[s]));
    json_object_set_new(o, "staleness_histogram", h);
  }
}

sw_status sw_train_run(const sw_train_options *opt, json_t **summary) {
  *summary = NULL;
  const sw__comm *comm = sw__comm_world();
  trainer t = {.opt = opt, .checkpointed_step = -1, .comm = comm, .rank = comm->rank, .size = comm->size};
  char *path = NULL;
  json_t *run = NULL;
  char started[32];
  iso_now(started, sizeof started);
  bool coordinated = t.size > 1 && (opt->dist == SW_DIST_ASYNC || opt->backup_workers > 0);
  t.max_staleness = opt->max_staleness > 0 ? opt->max_staleness : 8;
  sw_status st = SW_STATUS_OK;
  if (t.size > 1 && opt->backup_workers >= t.size)
    st = sw_error(SW_STATUS_INVALID, "--backup-workers %d needs more than %d ranks", opt->backup_workers, opt->backup_workers);
  else if (t.size > 1 && opt->dist == SW_DIST_ASYNC && opt->backup_workers > 0)
    st = sw_error(SW_STATUS_INVALID, "--backup-workers goes with --dist sync");
  else if (coordinated && !sw__p2p_available())
    st = sw_error(SW_STATUS_UNSUPPORTED, "backup workers and async need MPI point-to-point messages");
  if (!st) st = setup(&t, started);
  st = agree(&t, st, "setup");
  if (!st) st = share_state(&t);
  if (st) goto out;
  if (t.rank == 0 && t.size > 1)
    SW_INFO("distributed: %d ranks, %s%s, %d engine thread(s) per rank", t.size,
            opt->dist == SW_DIST_ASYNC ? "async" : "sync", opt->backup_workers > 0 ? " with backup workers" : "",
            t.threads);

  t.log_every = opt->log_every > 0 ? opt->log_every : 50;
  t.every_steps = opt->checkpoint_every_steps;
  t.every_s = opt->checkpoint_every_seconds;
  if (!t.every_steps && !t.every_s && !opt->checkpoint_auto) t.every_s = 60;
  t.auto_pending = opt->checkpoint_auto;
  t.start_step = t.step;
  if (t.rank == 0) t.bar = sw_progress_begin("train", (uint64_t)t.total_steps);
  t.t0 = t.tlog = t.last_ckpt = sw_now();
  if (!coordinated) {
    st = loop_sync(&t);
    /* every rank leaves the loop at the same step (failures travel in the step's
     * flags), except rank 0's failure after the last step: one more agreement */
    if (t.size > 1 && !sw__dist_is_broken()) {
      st = agree(&t, st, "training");
      if (!st) st = check_same_params(&t);
    }
  } else if (t.rank != 0) {
    st = worker_loop(&t);
  } else {
    st = opt->dist == SW_DIST_ASYNC ? loop_async(&t) : loop_backup(&t);
  }
  sw_progress_end(t.bar);
  if (st) goto out;
  if (t.rank != 0) { /* the run dir is rank 0's */
    char hex[SW_SHA256_HEX_LEN];
    st = sw_model_params_sha256(t.model, hex);
    if (!st) *summary = json_pack("{s:i, s:I, s:s}", "rank", t.rank, "steps_done", (json_int_t)t.step, "params_sha256", hex);
    goto out;
  }
  /* a last validation unless the run ended with an epoch's */
  if (t.val && !t.last_val) st = validate(&t, false);
  if (!st) st = checkpoint(&t); /* the finished run is a checkpoint too: running it again does nothing */
  if (!st) st = sw_checkpointer_wait(t.ckpt);
  double elapsed = sw_now() - t.t0;
  char hex[SW_SHA256_HEX_LEN];
  if (!st) st = sw_model_params_sha256(t.model, hex);
  path = sw_path_join(opt->out_dir, "model.safetensors");
  json_t *meta = json_pack("{s:s, s:s}", "format", "slipway", "params_sha256", hex);
  if (!st) st = path ? sw_model_save(t.model, path, meta) : sw_error(SW_STATUS_NOMEM, "out of memory");
  json_decref(meta);
  sw_free(path);
  path = NULL;
  if (st) goto out;
  /* the artifact: the same weights give the same bytes (no timestamps) */
  path = sw_path_join(opt->out_dir, "model.onnx");
  st = path ? sw_model_export_onnx(t.model, t.spec, t.ds, hex, path) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(path);
  path = NULL;
  if (st) goto out;
  char finished[32];
  iso_now(finished, sizeof finished);
  run = run_doc(&t, started, "finished");
  if (!run) {
    st = sw_error(SW_STATUS_NOMEM, "cannot build run.json");
    goto out;
  }
  json_object_set_new(run, "finished_at", json_string(finished));
  json_object_set_new(run, "steps_done", json_integer(t.step));
  json_object_set_new(run, "epochs_done", json_integer(t.epoch));
  json_object_set_new(run, "examples_seen", json_integer(t.seen));
  json_object_set_new(run, "resumed_at_step", json_integer(t.start_step));
  json_object_set_new(run, "seconds", json_real(elapsed));
  json_object_set_new(run, "samples_per_sec", json_real(elapsed > 0 ? (double)t.seen / elapsed : 0));
  json_object_set_new(run, "params_sha256", json_string(hex));
  if (t.last_val) json_object_set(run, "val", t.last_val);
  dist_totals(&t, run);
  st = write_run(&t, run);
  if (!st) st = sw_summary_flush(t.tb);
  if (!st) {
    *summary = run;
    run = NULL;
  }
out:
  sw_free(path);
  json_decref(run);
  trainer_free(&t);
  return st;
}
