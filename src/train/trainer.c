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
#include <unistd.h>

#include "slipway/train.h"

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
} trainer;

static void iso_now(char *buf, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sw_status metrics_line(trainer *t, json_t *line) {
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
  sw_summary_scalar(t->tb, t->step, "val/loss", (float)loss);
  if (acc) sw_summary_scalar(t->tb, t->step, "val/accuracy", (float)json_real_value(acc));
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
  return json_pack("{s:s, s:i, s:s, s:s, s:s, s:O, s:{s:s, s:s}, s:{s:I, s:I, s:I, s:I, s:i}, s:s, s:s, s:s, s:s}",
                   "format", "slipway-run", "version", 1, "status", status, "name", t->spec->name, "model_file",
                   "model.yaml", "model", t->spec->doc, "dataset", "path", t->opt->data_dir, "manifest_sha256",
                   sw_dataset_sha256(t->ds), "hyperparameters", "batch_size", (json_int_t)t->spec->batch_size, "epochs",
                   (json_int_t)t->spec->epochs, "steps", (json_int_t)t->total_steps, "seed", (json_int_t)t->spec->seed,
                   "threads", t->opt->threads, "code_version", "slipway " SW_VERSION, "host", host, "started_at",
                   started, "config_sha256", t->config_sha256);
}

static sw_status write_run(const trainer *t, json_t *doc) {
  char *path = sw_path_join(t->opt->out_dir, "run.json");
  sw_status st = path && doc ? sw_json_write_file(path, doc) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(path);
  return st;
}

static sw_status checkpoint(trainer *t) {
  if (t->checkpointed_step == t->step) return SW_STATUS_OK;
  t->checkpointed_step = t->step;
  sw_checkpoint_state s = {.step = t->step, .epoch = t->epoch, .reader = sw_reader_tell(t->train), .seed = t->spec->seed};
  snprintf(s.config_sha256, sizeof s.config_sha256, "%s", t->config_sha256);
  snprintf(s.dataset_sha256, sizeof s.dataset_sha256, "%s", sw_dataset_sha256(t->ds));
  return sw_checkpointer_save(t->ckpt, &s);
}

sw_status sw_train_run(const sw_train_options *opt, json_t **summary) {
  *summary = NULL;
  trainer t = {.opt = opt, .checkpointed_step = -1};
  char *path = NULL;
  json_t *run = NULL;
  float **grads = NULL;
  size_t *sizes = NULL;
  char started[32];
  iso_now(started, sizeof started);
  sw_status st = sw_model_spec_load(opt->model_path, &t.spec);
  if (st) goto out;
  if (opt->seed >= 0) t.spec->seed = (uint64_t)opt->seed;
  if (opt->steps > 0) t.spec->steps = opt->steps, t.spec->epochs = 0;
  if (opt->epochs > 0) t.spec->epochs = opt->epochs, t.spec->steps = 0;
  st = sw_dataset_open(opt->data_dir, &t.ds);
  if (st) goto out;
  st = sw_model_build(t.spec, t.ds, true, &t.model);
  if (!st) st = sw_graph_alloc(t.model->g, t.spec->batch_size);
  if (!st) st = sw_graph_set_threads(t.model->g, opt->threads);
  if (st) goto out;
  if (t.spec->init_from) {
    st = sw_model_load(t.model, t.spec->init_from);
    if (st) goto out;
  }
  sw_graph_set_training(t.model->g, true);
  sw_reader_options ro = {.seed = t.spec->seed, .shuffle = t.spec->shuffle};
  st = sw_reader_open(t.ds, "train", &ro, &t.train);
  if (st) goto out;
  if (sw_dataset_split_examples(t.ds, "val") > 0) {
    sw_reader_options vo = {.seed = 0, .shuffle = false};
    st = sw_reader_open(t.ds, "val", &vo, &t.val);
    if (st) goto out;
  }
  int64_t n_train = (int64_t)sw_reader_examples(t.train);
  if (n_train == 0) {
    st = sw_error(SW_STATUS_INVALID, "%s: the train split is empty", opt->data_dir);
    goto out;
  }
  int64_t per_epoch = (n_train + t.spec->batch_size - 1) / t.spec->batch_size;
  t.total_steps = t.spec->steps > 0 ? t.spec->steps : t.spec->epochs * per_epoch;
  sw_lr_schedule sched = t.spec->schedule;
  if (sched.kind == SW_LR_COSINE && sched.total_steps <= 0) sched.total_steps = t.total_steps;
  bool resume = false;
  st = config_hash(&t, t.config_sha256);
  if (!st) st = check_existing(&t, &resume);
  if (!st) st = sw_mkdir_p(opt->out_dir);
  if (st) goto out;
  t.n_params = sw_graph_params(t.model->g, &t.params);
  t.m = sw_calloc(t.n_params + 1, sizeof *t.m);
  t.v = sw_calloc(t.n_params + 1, sizeof *t.v);
  grads = sw_calloc(t.n_params + 1, sizeof *grads);
  sizes = sw_calloc(t.n_params + 1, sizeof *sizes);
  if (!t.m || !t.v || !grads || !sizes) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < t.n_params; i++) {
    sizes[i] = (size_t)sw_graph_elements(t.model->g, t.params[i]);
    grads[i] = sw_graph_grad(t.model->g, t.params[i]);
    t.m[i] = sw_calloc(sizes[i] ? sizes[i] : 1, sizeof(float));
    t.v[i] = sw_calloc(sizes[i] ? sizes[i] : 1, sizeof(float));
    if (!t.m[i] || !t.v[i]) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  if (resume) {
    sw_checkpoint_state cs;
    st = sw_checkpoint_restore(opt->out_dir, t.model, t.m, t.v, &cs);
    if (st == SW_STATUS_NOT_FOUND) {
      SW_INFO("%s: no checkpoint yet, starting from the beginning", opt->out_dir);
      st = SW_STATUS_OK;
    } else if (st) {
      goto out;
    } else {
      t.step = t.checkpointed_step = cs.step;
      t.epoch = cs.epoch;
      st = sw_reader_seek(t.train, cs.reader);
      if (st) goto out;
    }
  }
  path = sw_path_join(opt->out_dir, "model.yaml");
  st = path ? copy_file(opt->model_path, path) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(path);
  path = sw_path_join(opt->out_dir, "metrics.jsonl");
  if (!st && !(t.metrics = fopen(path, resume ? "a" : "w"))) st = sw_error(SW_STATUS_IO, "open %s: %s", path, strerror(errno));
  sw_free(path);
  path = NULL;
  if (!st) st = sw_summary_open(opt->out_dir, &t.tb);
  if (!st) st = write_run(&t, run = run_doc(&t, started, "running"));
  json_decref(run);
  run = NULL;
  if (!st) st = sw_checkpointer_open(opt->out_dir, opt->keep, t.model, t.m, t.v, &t.ckpt);
  if (st) goto out;

  int64_t log_every = opt->log_every > 0 ? opt->log_every : 50;
  int64_t every_steps = opt->checkpoint_every_steps;
  double every_s = opt->checkpoint_every_seconds;
  if (!every_steps && !every_s && !opt->checkpoint_auto) every_s = 60;
  sw_progress *bar = sw_progress_begin("train", (uint64_t)t.total_steps);
  double t0 = sw_now(), tlog = t0, last_ckpt = t0, loss_acc = 0;
  int64_t seen = 0, seen_log = 0, correct = 0, start_step = t.step;
  bool auto_pending = opt->checkpoint_auto;
  while (!st && t.step < t.total_steps) {
    const sw_batch *b;
    st = sw_reader_next(t.train, (size_t)t.spec->batch_size, &b);
    if (st == SW_STATUS_EOF) { /* the epoch's end was handled after its last batch */
      st = SW_STATUS_OK;
      continue;
    }
    if (st) break;
    sw_graph *g = t.model->g;
    st = sw_model_feed(t.model, t.spec, b);
    sw_graph_set_step(g, t.spec->seed, t.step);
    if (!st) st = sw_graph_forward(g);
    if (!st) st = sw_graph_backward(g, t.model->loss);
    if (st) break;
    float loss = ((float *)sw_graph_data(g, t.model->loss))[0];
    if (!isfinite(loss)) {
      st = sw_error(SW_STATUS_RANGE, "step %lld: the loss is %g (diverged); try a lower lr", (long long)t.step, loss);
      break;
    }
    if (t.spec->clip_norm > 0) sw_clip_global_norm(grads, sizes, t.n_params, t.spec->clip_norm);
    float lr = sw_lr_at(&sched, t.step);
    for (size_t i = 0; i < t.n_params; i++)
      sw_optim_update(&t.spec->optim, lr, t.step + 1, sw_graph_data(g, t.params[i]), grads[i], t.m[i], t.v[i], sizes[i]);
    if (t.spec->loss == SW_LOSS_SOFTMAX_CE) {
      const float *p = sw_graph_data(g, t.model->output);
      const int64_t *y = sw_graph_data(g, t.model->label);
      int64_t k = t.model->classes;
      for (size_t i = 0; i < b->n; i++) {
        int64_t best = 0;
        for (int64_t c = 1; c < k; c++)
          if (p[i * k + c] > p[i * k + best]) best = c;
        correct += best == y[i];
      }
    }
    loss_acc += (double)loss * (double)b->n;
    seen += (int64_t)b->n;
    seen_log += (int64_t)b->n;
    t.step++;
    if (t.step % log_every == 0 || t.step == t.total_steps) {
      double now = sw_now();
      double sps = (double)seen_log / (now - tlog);
      json_t *line = json_pack("{s:I, s:I, s:s, s:f, s:f, s:f}", "step", (json_int_t)t.step, "epoch",
                               (json_int_t)t.epoch, "split", "train", "loss", loss_acc / (double)seen_log, "lr",
                               (double)lr, "samples_per_sec", sps);
      if (t.spec->loss == SW_LOSS_SOFTMAX_CE)
        json_object_set_new(line, "accuracy", json_real((double)correct / (double)seen_log));
      sw_summary_scalar(t.tb, t.step, "train/loss", (float)(loss_acc / (double)seen_log));
      sw_summary_scalar(t.tb, t.step, "train/lr", lr);
      sw_summary_scalar(t.tb, t.step, "train/samples_per_sec", (float)sps);
      char note[96];
      snprintf(note, sizeof note, "loss %.4f, %.0f samples/s", loss_acc / (double)seen_log, sps);
      sw_progress_note(bar, note);
      st = metrics_line(&t, line);
      loss_acc = 0;
      seen_log = 0;
      correct = 0;
      tlog = now;
    }
    sw_progress_update(bar, (uint64_t)t.step);
    if (!st && sw_reader_tell(t.train).index >= (uint64_t)n_train) st = validate(&t, true);
    if (st) break;
    if (opt->stop && *opt->stop) {
      /* preempted: this step is done; persist it and let the caller exit 75 */
      st = checkpoint(&t);
      if (!st) st = sw_checkpointer_wait(t.ckpt);
      if (!st) {
        sw_summary_flush(t.tb);
        st = sw_error(SW_STATUS_PREEMPTED, "stopped by a signal after step %lld of %lld; checkpoint written, run again to resume",
                      (long long)t.step, (long long)t.total_steps);
      }
      break;
    }
    double now = sw_now();
    if (auto_pending && t.step - start_step == 2) {
      /* measure the cost C of one checkpoint (the time training stalls for its
       * snapshot; the disk write runs beside training), then Young's interval
       * sqrt(2 C MTBF), no shorter than twice the write so writes never queue */
      double c0 = sw_now();
      st = checkpoint(&t);
      if (!st) st = sw_checkpointer_wait(t.ckpt);
      double snap = 0, write = 0;
      sw_checkpointer_costs(t.ckpt, &snap, &write);
      double step_s = (c0 - t0) / (double)(t.step - start_step);
      double mtbf = opt->mtbf_seconds > 0 ? opt->mtbf_seconds : 86400.0;
      double cost = snap > 1e-4 ? snap : 1e-4;
      double interval = sqrt(2.0 * cost * mtbf);
      if (interval < 2 * write) interval = 2 * write;
      every_steps = (int64_t)(interval / (step_s > 0 ? step_s : 1e-3));
      if (every_steps < 1) every_steps = 1;
      SW_INFO("checkpoint stall %.4fs (write %.3fs beside training), MTBF %.0fs: Young's interval %.1fs = every %lld "
              "steps", snap, write, mtbf, interval, (long long)every_steps);
      auto_pending = false;
      last_ckpt = now;
    } else if ((every_steps && t.step % every_steps == 0) || (every_s > 0 && now - last_ckpt >= every_s)) {
      st = checkpoint(&t);
      last_ckpt = now;
    }
  }
  sw_progress_end(bar);
  if (st) goto out;
  /* a last validation unless the run ended with an epoch's */
  if (t.val && !t.last_val) st = validate(&t, false);
  if (!st) st = checkpoint(&t); /* the finished run is a checkpoint too: running it again does nothing */
  if (!st) st = sw_checkpointer_wait(t.ckpt);
  double elapsed = sw_now() - t0;
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
  json_object_set_new(run, "examples_seen", json_integer(seen));
  json_object_set_new(run, "resumed_at_step", json_integer(start_step));
  json_object_set_new(run, "seconds", json_real(elapsed));
  json_object_set_new(run, "samples_per_sec", json_real(elapsed > 0 ? (double)seen / elapsed : 0));
  json_object_set_new(run, "params_sha256", json_string(hex));
  if (t.last_val) json_object_set(run, "val", t.last_val);
  st = write_run(&t, run);
  if (!st) st = sw_summary_flush(t.tb);
  if (!st) {
    *summary = run;
    run = NULL;
  }
out:
  sw_free(grads);
  sw_free(sizes);
  sw_free(path);
  json_decref(run);
  trainer_free(&t);
  return st;
}
