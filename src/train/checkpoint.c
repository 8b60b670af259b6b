/* Checkpoints (layout drawn in train.h): a fast in-memory snapshot of parameters,
 * buffers and optimizer moments, persisted by a writer thread so training does not wait
 * for the disk (CheckFreq's snapshot-then-persist), and restore from the newest
 * checkpoint that verifies. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/train.h"

typedef struct {
  char name[192]; /* "param:NAME", ... */
  sw_dtype dtype;
  int rank;
  int64_t shape[SW_NN_MAX_RANK];
  const float *live; /* the tensor in training */
  float *snap;       /* its copy in the snapshot */
  size_t count;
} slot;

struct sw_checkpointer {
  char *run_dir, *ckpt_dir;
  int keep;
  sw_model *model;
  slot *slots;
  size_t n_slots;
  float *snapshot; /* one allocation for every slot */
  sw_checkpoint_state state;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool pending, busy, quit;
  sw_status last;
  char last_error[512];
  double snapshot_s, write_s;
};

static sw_status add_slot(slot *s, const char *prefix, const char *name, int rank, const int64_t *shape, const float *live) {
  snprintf(s->name, sizeof s->name, "%s:%s", prefix, name);
  s->dtype = SW_DTYPE_F32;
  s->rank = rank;
  memcpy(s->shape, shape, (size_t)rank * sizeof *shape);
  s->live = live;
  s->count = 1;
  for (int i = 0; i < rank; i++) s->count *= (size_t)shape[i];
  return SW_STATUS_OK;
}

/* The slots of a model: params, buffers, then the moments of each param. */
static sw_status list_slots(sw_model *m, float *const *mom_m, float *const *mom_v, slot **out, size_t *n) {
  const sw_node *params, *buffers;
  size_t np = sw_graph_params(m->g, &params), nb = sw_graph_buffers(m->g, &buffers);
  size_t cap = np * 3 + nb;
  slot *s = sw_calloc(cap ? cap : 1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  size_t k = 0;
  sw_graph *g = m->g;
  for (size_t i = 0; i < np; i++)
    add_slot(&s[k++], "param", sw_graph_name(g, params[i]), sw_graph_rank(g, params[i]), sw_graph_shape(g, params[i]),
             sw_graph_data(g, params[i]));
  for (size_t i = 0; i < nb; i++)
    add_slot(&s[k++], "buffer", sw_graph_name(g, buffers[i]), sw_graph_rank(g, buffers[i]),
             sw_graph_shape(g, buffers[i]), sw_graph_data(g, buffers[i]));
  for (size_t i = 0; i < np; i++) {
    if (mom_m)
      add_slot(&s[k++], "adam_m", sw_graph_name(g, params[i]), sw_graph_rank(g, params[i]), sw_graph_shape(g, params[i]),
               mom_m[i]);
    if (mom_v)
      add_slot(&s[k++], "adam_v", sw_graph_name(g, params[i]), sw_graph_rank(g, params[i]), sw_graph_shape(g, params[i]),
               mom_v[i]);
  }
  *out = s;
  *n = k;
  return SW_STATUS_OK;
}

static int cmp_desc(const void *a, const void *b) { return strcmp(*(char *const *)b, *(char *const *)a); }

/* Names of the checkpoints (step-*), newest first. */
static sw_status list_checkpoints(const char *dir, char ***names, size_t *n) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? SW_STATUS_OK : sw_error(SW_STATUS_IO, "opendir %s: %s", dir, strerror(errno));
  struct dirent *e;
  sw_status st = SW_STATUS_OK;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "step-", 5) != 0 || strlen(e->d_name) != 13) continue;
    char **v = sw_realloc(*names, (*n + 1) * sizeof *v);
    if (!v || !(v[*n] = sw_strdup(e->d_name))) {
      if (v) *names = v;
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    *names = v;
    (*n)++;
  }
  closedir(d);
  if (*n) qsort(*names, *n, sizeof **names, cmp_desc);
  return st;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) sw_free(v[i]);
  sw_free(v);
}

/* Writes the snapshot as checkpoint step-N (the layout of train.h). */
static sw_status persist(sw_checkpointer *c) {
  char name[32], tmpname[64];
  snprintf(name, sizeof name, "step-%08lld", (long long)c->state.step);
  snprintf(tmpname, sizeof tmpname, ".tmp-%s-%ld", name, (long)getpid());
  char *tmp = sw_path_join(c->ckpt_dir, tmpname), *final = sw_path_join(c->ckpt_dir, name);
  char *tensors = NULL, *state_path = NULL, *latest = NULL;
  sw_named_tensor *t = sw_calloc(c->n_slots + 1, sizeof *t);
  json_t *state = NULL;
  sw_status st = (tmp && final && t) ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  sw_remove_tree(tmp);
  st = sw_mkdir_p(tmp);
  if (st) goto out;
  for (size_t i = 0; i < c->n_slots; i++) {
    t[i].name = c->slots[i].name;
    t[i].dtype = SW_DTYPE_F32;
    t[i].rank = c->slots[i].rank;
    memcpy(t[i].shape, c->slots[i].shape, sizeof t[i].shape);
    t[i].data = c->slots[i].snap;
  }
  tensors = sw_path_join(tmp, "model.safetensors");
  state_path = sw_path_join(tmp, "state.json");
  if (!tensors || !state_path) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  st = sw_safetensors_write(tensors, t, c->n_slots, NULL);
  char hex[SW_SHA256_HEX_LEN];
  if (!st) st = sw_sha256_file_hex(tensors, hex);
  if (st) goto out;
  const sw_checkpoint_state *s = &c->state;
  state = json_pack("{s:s, s:i, s:I, s:I, s:{s:I, s:I}, s:I, s:s, s:s, s:s}", "format", "slipway-checkpoint", "version",
                    1, "step", (json_int_t)s->step, "epoch", (json_int_t)s->epoch, "reader", "epoch",
                    (json_int_t)s->reader.epoch, "index", (json_int_t)s->reader.index, "seed", (json_int_t)s->seed,
                    "config_sha256", s->config_sha256, "dataset_sha256", s->dataset_sha256, "tensors_sha256", hex);
  st = state ? sw_json_write_file(state_path, state) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw_fsync_dir(tmp);
  if (st) goto out;
  sw_remove_tree(final); /* a checkpoint of the same step from a run that died after it */
  if (rename(tmp, final) != 0) {
    st = sw_error(SW_STATUS_IO, "rename %s to %s: %s", tmp, final, strerror(errno));
    goto out;
  }
  st = sw_fsync_dir(c->ckpt_dir);
  latest = sw_path_join(c->ckpt_dir, "latest");
  if (!st) st = latest ? sw_atomic_write(latest, name, strlen(name)) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  /* keep the newest `keep` */
  char **names;
  size_t n;
  if (!list_checkpoints(c->ckpt_dir, &names, &n)) {
    for (size_t i = (size_t)c->keep; i < n; i++) {
      char *old = sw_path_join(c->ckpt_dir, names[i]);
      if (old) sw_remove_tree(old);
      sw_free(old);
    }
    free_names(names, n);
  }
out:
  if (st && tmp) sw_remove_tree(tmp);
  json_decref(state);
  sw_free(t);
  sw_free(latest);
  sw_free(tensors);
  sw_free(state_path);
  sw_free(tmp);
  sw_free(final);
  return st;
}

/* Temporary checkpoints of processes that died while writing them. */
static void remove_leftovers(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, ".tmp-step-", 10) != 0) continue;
    char *path = sw_path_join(dir, e->d_name);
    if (path && !sw_remove_tree(path)) SW_DEBUG("removed the unfinished checkpoint %s", path);
    sw_free(path);
  }
  closedir(d);
}

static void *writer(void *arg) {
  sw_checkpointer *c = arg;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->pending && !c->quit) pthread_cond_wait(&c->cv, &c->mu);
    if (!c->pending && c->quit) break;
    c->pending = false;
    c->busy = true;
    pthread_mutex_unlock(&c->mu);
    double t0 = sw_now();
    sw_status st = persist(c);
    char err[512];
    snprintf(err, sizeof err, "%s", st ? sw_last_error() : "");
    pthread_mutex_lock(&c->mu);
    c->write_s = sw_now() - t0;
    c->last = st;
    snprintf(c->last_error, sizeof c->last_error, "%s", err);
    c->busy = false;
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

sw_status sw_checkpointer_open(const char *run_dir, int keep, sw_model *m, float *const *mom_m, float *const *mom_v,
                               sw_checkpointer **out) {
  *out = NULL;
  sw_checkpointer *c = sw_calloc(1, sizeof *c);
  if (!c) return sw_error(SW_STATUS_NOMEM, "out of memory");
  c->keep = keep > 0 ? keep : 3;
  c->model = m;
  c->run_dir = sw_strdup(run_dir);
  c->ckpt_dir = sw_path_join(run_dir, "checkpoints");
  sw_status st = (c->run_dir && c->ckpt_dir) ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw_mkdir_p(c->ckpt_dir);
  if (!st) remove_leftovers(c->ckpt_dir);
  if (!st) st = list_slots(m, mom_m, mom_v, &c->slots, &c->n_slots);
  size_t total = 0;
  for (size_t i = 0; !st && i < c->n_slots; i++) total += c->slots[i].count;
  if (!st && !(c->snapshot = sw_malloc((total ? total : 1) * sizeof(float))))
    st = sw_error(SW_STATUS_NOMEM, "out of memory for a checkpoint snapshot of %zu values", total);
  if (st) {
    sw_free(c->slots);
    sw_free(c->run_dir);
    sw_free(c->ckpt_dir);
    sw_free(c);
    return st;
  }
  size_t off = 0;
  for (size_t i = 0; i < c->n_slots; i++) {
    c->slots[i].snap = c->snapshot + off;
    off += c->slots[i].count;
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  if (pthread_create(&c->thread, NULL, writer, c) != 0) {
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    sw_free(c->snapshot);
    sw_free(c->slots);
    sw_free(c->run_dir);
    sw_free(c->ckpt_dir);
    sw_free(c);
    return sw_error(SW_STATUS_IO, "cannot start the checkpoint writer thread");
  }
  *out = c;
  return SW_STATUS_OK;
}

sw_status sw_checkpointer_wait(sw_checkpointer *c) {
  pthread_mutex_lock(&c->mu);
  while (c->pending || c->busy) pthread_cond_wait(&c->cv, &c->mu);
  sw_status st = c->last;
  if (st) sw_error(st, "checkpoint: %s", c->last_error);
  c->last = SW_STATUS_OK;
  pthread_mutex_unlock(&c->mu);
  return st;
}

sw_status sw_checkpointer_save(sw_checkpointer *c, const sw_checkpoint_state *state) {
  sw_status st = sw_checkpointer_wait(c); /* the snapshot buffer is free again */
  if (st) return st;
  double t0 = sw_now();
  for (size_t i = 0; i < c->n_slots; i++) memcpy(c->slots[i].snap, c->slots[i].live, c->slots[i].count * sizeof(float));
  pthread_mutex_lock(&c->mu);
  c->snapshot_s = sw_now() - t0;
  c->state = *state;
  c->pending = true;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return SW_STATUS_OK;
}

void sw_checkpointer_costs(const sw_checkpointer *c, double *snapshot_s, double *write_s) {
  *snapshot_s = c->snapshot_s;
  *write_s = c->write_s;
}

void sw_checkpointer_close(sw_checkpointer *c) {
  if (!c) return;
  sw_checkpointer_wait(c);
  pthread_mutex_lock(&c->mu);
  c->quit = true;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thread, NULL);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  sw_free(c->snapshot);
  sw_free(c->slots);
  sw_free(c->run_dir);
  sw_free(c->ckpt_dir);
  sw_free(c);
}

/* Loads one checkpoint dir, checking everything before touching the model. */
static sw_status try_restore(const char *dir, sw_model *m, float *const *mom_m, float *const *mom_v,
                             sw_checkpoint_state *state) {
  char *sp = sw_path_join(dir, "state.json"), *tp = sw_path_join(dir, "model.safetensors");
  json_t *j = NULL;
  sw_safetensors *sf = NULL;
  slot *slots = NULL;
  size_t n = 0;
  sw_status st = (sp && tp) ? sw_json_load_file(sp, &j) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  const char *want = json_string_value(json_object_get(j, "tensors_sha256"));
  const char *cfg = json_string_value(json_object_get(j, "config_sha256"));
  const char *data = json_string_value(json_object_get(j, "dataset_sha256"));
  const json_t *reader = json_object_get(j, "reader");
  if (strcmp(json_string_value(json_object_get(j, "format")) ?: "", "slipway-checkpoint") || !want || !cfg || !data ||
      !json_is_integer(json_object_get(j, "step")) || !json_is_integer(json_object_get(reader, "index"))) {
    st = sw_error(SW_STATUS_FORMAT, "%s: not a checkpoint state", sp);
    goto out;
  }
  char hex[SW_SHA256_HEX_LEN];
  st = sw_sha256_file_hex(tp, hex);
  if (st) goto out;
  if (strcmp(hex, want) != 0) {
    st = sw_error(SW_STATUS_CORRUPT, "%s: SHA-256 %s, the state says %s", tp, hex, want);
    goto out;
  }
  st = sw_safetensors_open(tp, &sf);
  if (!st) st = list_slots(m, mom_m, mom_v, &slots, &n);
  for (size_t i = 0; !st && i < n; i++) {
    const sw_named_tensor *t = sw_safetensors_find(sf, slots[i].name);
    if (!t || t->dtype != SW_DTYPE_F32 || t->rank != slots[i].rank ||
        memcmp(t->shape, slots[i].shape, (size_t)t->rank * sizeof(int64_t)))
      st = sw_error(SW_STATUS_FORMAT, "%s: tensor '%s' is missing or has another shape", tp, slots[i].name);
  }
  if (st) goto out;
  for (size_t i = 0; i < n; i++)
    memcpy((float *)slots[i].live, sw_safetensors_find(sf, slots[i].name)->data, slots[i].count * sizeof(float));
  memset(state, 0, sizeof *state);
  state->step = json_integer_value(json_object_get(j, "step"));
  state->epoch = json_integer_value(json_object_get(j, "epoch"));
  state->reader.epoch = (uint64_t)json_integer_value(json_object_get(reader, "epoch"));
  state->reader.index = (uint64_t)json_integer_value(json_object_get(reader, "index"));
  state->seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
  snprintf(state->config_sha256, sizeof state->config_sha256, "%s", cfg);
  snprintf(state->dataset_sha256, sizeof state->dataset_sha256, "%s", data);
out:
  sw_free(slots);
  sw_safetensors_close(sf);
  json_decref(j);
  sw_free(sp);
  sw_free(tp);
  return st;
}

sw_status sw_checkpoint_restore(const char *run_dir, sw_model *m, float *const *mom_m, float *const *mom_v,
                                sw_checkpoint_state *state) {
  char *dir = sw_path_join(run_dir, "checkpoints");
  char **names = NULL;
  size_t n = 0;
  sw_status st = dir ? list_checkpoints(dir, &names, &n) : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  st = SW_STATUS_NOT_FOUND;
  for (size_t i = 0; i < n; i++) {
    char *path = sw_path_join(dir, names[i]);
    if (!path) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      break;
    }
    sw_status r = try_restore(path, m, mom_m, mom_v, state);
    if (!r) {
      SW_INFO("resuming from %s (step %lld)", path, (long long)state->step);
      sw_free(path);
      st = SW_STATUS_OK;
      break;
    }
    SW_WARN("checkpoint %s is unusable, skipping it: %s", path, sw_last_error());
    sw_free(path);
    if (r == SW_STATUS_NOMEM) {
      st = r;
      break;
    }
  }
  if (st == SW_STATUS_NOT_FOUND) sw_error(st, "%s holds no usable checkpoint", run_dir);
out:
  free_names(names, n);
  sw_free(dir);
  return st;
}
