/* The feedback join buffer: what each recent request predicted, by request id, in a
 * bounded ring (the oldest entry goes when a new one comes), so ground-truth labels that
 * arrive later can be joined to the version that answered, giving live quality. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "serve/serve_int.h"

#define ID_MAX 72

typedef struct {
  char id[ID_MAX];
  sw__vstats *stats; /* NULL: an empty slot */
  double *pred;      /* rows values */
  bool *joined;
  int64_t rows;
  bool regression;
  double at;
  int64_t hnext; /* the next slot in its hash chain, -1 at the end */
  double pred_one; /* pred and joined of one-row requests (most): no allocation */
  bool joined_one;
  sw__arm arm;     /* the rollout arm that answered (epoch 0: none) */
  double *spred;   /* shadow: the mirrored challenger's predictions (rows), NULL until in */
  double spred_one;
  int64_t early_label; /* shadow, one row: a label that came before the mirror's answer (-1: none) */
} entry;

static void entry_release(entry *e) {
  if (e->pred != &e->pred_one) sw_free(e->pred);
  if (e->joined != &e->joined_one) sw_free(e->joined);
  if (e->spred != &e->spred_one) sw_free(e->spred);
  e->pred = NULL;
  e->joined = NULL;
  e->spred = NULL;
}

struct sw__feedback {
  pthread_mutex_t mu;
  entry *ring;
  size_t cap, next;
  int64_t *heads;
  size_t n_heads; /* a power of two */
  double ttl;
  uint32_t nonce;
  atomic_uint_fast64_t counter;
  sw__label_hook hook;
  void *hook_ctx;
  void (*observe)(void *ctx, const char *model, int64_t version, bool correct); /* the monitor's */
  void *observe_ctx;
};

void sw__feedback_observe(sw__feedback *f, void (*fn)(void *ctx, const char *model, int64_t version, bool correct), void *ctx) {
  f->observe = fn;
  f->observe_ctx = ctx;
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

sw_status sw__feedback_new(size_t capacity, double ttl_s, sw__feedback **out) {
  sw__feedback *f = sw_calloc(1, sizeof *f);
  if (!f) return sw_error(SW_STATUS_NOMEM, "out of memory");
  f->cap = capacity ? capacity : 1;
  f->n_heads = 1;
  while (f->n_heads < 2 * f->cap) f->n_heads *= 2;
  f->ring = sw_calloc(f->cap, sizeof *f->ring);
  f->heads = sw_malloc(f->n_heads * sizeof *f->heads);
  if (!f->ring || !f->heads) {
    sw__feedback_free(f);
    return sw_error(SW_STATUS_NOMEM, "out of memory for a feedback buffer of %zu requests", capacity);
  }
  for (size_t i = 0; i < f->n_heads; i++) f->heads[i] = -1;
  f->ttl = ttl_s > 0 ? ttl_s : 3600;
  if (getrandom(&f->nonce, sizeof f->nonce, 0) != sizeof f->nonce) f->nonce = (uint32_t)(sw_now() * 1e6);
  pthread_mutex_init(&f->mu, NULL);
  atomic_init(&f->counter, 0);
  *out = f;
  return SW_STATUS_OK;
}

void sw__feedback_free(sw__feedback *f) {
  if (!f) return;
  if (f->ring)
    for (size_t i = 0; i < f->cap; i++) entry_release(&f->ring[i]);
  sw_free(f->ring);
  sw_free(f->heads);
  if (f->heads) pthread_mutex_destroy(&f->mu);
  sw_free(f);
}

void sw__feedback_new_id(sw__feedback *f, char id[40]) {
  uint64_t c = atomic_fetch_add(&f->counter, 1) + 1;
  /* "%08x-%012llx", written out: this runs for every request */
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 8; i++) id[i] = hex[(f->nonce >> (28 - 4 * i)) & 15];
  id[8] = '-';
  int n = 12;
  while (n < 16 && c >> (4 * n)) n++;
  for (int i = 0; i < n; i++) id[9 + i] = hex[(c >> (4 * (n - 1 - i))) & 15];
  id[9 + n] = '\0';
}

/* Under f->mu. */
static void unlink_slot(sw__feedback *f, size_t slot) {
  int64_t *p = &f->heads[hash(f->ring[slot].id) & (f->n_heads - 1)];
  while (*p >= 0 && (size_t)*p != slot) p = &f->ring[*p].hnext;
  if (*p >= 0) *p = f->ring[slot].hnext;
}

void sw__feedback_set_hook(sw__feedback *f, sw__label_hook hook, void *ctx) {
  pthread_mutex_lock(&f->mu);
  f->hook = hook;
  f->hook_ctx = ctx;
  pthread_mutex_unlock(&f->mu);
}

void sw__feedback_record(sw__feedback *f, const char *id, sw__vstats *stats, const double *pred, int64_t rows,
                         bool regression) {
  sw__feedback_record_arm(f, id, stats, pred, rows, regression, NULL);
}

void sw__feedback_record_arm(sw__feedback *f, const char *id, sw__vstats *stats, const double *pred, int64_t rows,
                             bool regression, const sw__arm *arm) {
  size_t id_len = strlen(id);
  if (!stats || rows <= 0 || id_len >= ID_MAX) return;
  double *p = NULL;
  bool *j = NULL;
  if (rows > 1) {
    p = sw_malloc((size_t)rows * sizeof *p);
    j = sw_calloc((size_t)rows, sizeof *j);
    if (!p || !j) {
      sw_free(p);
      sw_free(j);
      return;
    }
    memcpy(p, pred, (size_t)rows * sizeof *p);
  }
  pthread_mutex_lock(&f->mu);
  size_t slot = f->next;
  f->next = (f->next + 1) % f->cap;
  entry *e = &f->ring[slot];
  if (e->stats) unlink_slot(f, slot);
  entry_release(e);
  memcpy(e->id, id, id_len + 1);
  e->stats = stats;
  if (rows == 1) {
    e->pred_one = pred[0];
    e->joined_one = false;
    p = &e->pred_one;
    j = &e->joined_one;
  }
  e->pred = p;
  e->joined = j;
  e->rows = rows;
  e->regression = regression;
  e->at = sw_now();
  if (arm) e->arm = *arm;
  else memset(&e->arm, 0, sizeof e->arm);
  e->early_label = -1;
  int64_t *head = &f->heads[hash(e->id) & (f->n_heads - 1)];
  e->hnext = *head;
  *head = (int64_t)slot;
  pthread_mutex_unlock(&f->mu);
}

/* Under f->mu: the live entry of id, or NULL. */
static entry *lookup(sw__feedback *f, const char *id) {
  int64_t s = f->heads[hash(id) & (f->n_heads - 1)];
  while (s >= 0 && strcmp(f->ring[s].id, id)) s = f->ring[s].hnext;
  return s >= 0 ? &f->ring[s] : NULL;
}

void sw__feedback_attach_shadow(sw__feedback *f, const char *id, const double *pred, int64_t rows) {
  double *p = NULL;
  if (rows > 1 && !(p = sw_malloc((size_t)rows * sizeof *p))) return;
  pthread_mutex_lock(&f->mu);
  entry *e = lookup(f, id);
  if (e && e->rows == rows && !e->spred) {
    if (rows == 1) {
      e->spred_one = pred[0];
      e->spred = &e->spred_one;
    } else {
      memcpy(p, pred, (size_t)rows * sizeof *p);
      e->spred = p;
      p = NULL;
    }
    /* the label was quicker than the mirror: judge the pair now */
    if (e->early_label >= 0 && f->hook) {
      int64_t c = e->early_label;
      f->hook(f->hook_ctx, e->stats->model, &e->arm, c == (int64_t)e->pred[0], c == (int64_t)e->spred[0]);
    }
    e->early_label = -1;
  }
  pthread_mutex_unlock(&f->mu);
  sw_free(p);
}

/* Whether id is one this process gave out (then a miss means it expired). */
static bool ours(sw__feedback *f, const char *id) {
  unsigned nonce;
  unsigned long long c;
  char tail;
  if (sscanf(id, "%8x-%12llx%c", &nonce, &c, &tail) != 2) return false;
  return nonce == f->nonce && c >= 1 && c <= atomic_load(&f->counter);
}

static int64_t class_index(const sw__vstats *v, const sw_feedback_item *it) {
  if (!it->is_name) return it->value == (double)(int64_t)it->value ? (int64_t)it->value : -1;
  for (size_t i = 0; i < v->n_classes; i++)
    if (!strcmp(v->class_names[i], it->name)) return (int64_t)i;
  return -1;
}

void sw__feedback_join(sw__feedback *f, const char *model, const sw_feedback_item *items, size_t n,
                       sw__feedback_result *r) {
  memset(r, 0, sizeof *r);
  double now = sw_now();
  pthread_mutex_lock(&f->mu);
  for (size_t i = 0; i < n; i++) {
    const sw_feedback_item *it = &items[i];
    entry *e = lookup(f, it->id);
    if (e && strcmp(e->stats->model, model)) e = NULL; /* another model's request */
    if (!e) {
      if (ours(f, it->id)) r->expired++;
      else r->unknown++;
      continue;
    }
    if (now - e->at > f->ttl) {
      r->expired++;
      continue;
    }
    if (it->row < 0 || it->row >= e->rows) {
      r->invalid++;
      continue;
    }
    if (e->joined[it->row]) {
      r->duplicate++;
      continue;
    }
    sw__vstats *v = e->stats;
    bool rollout_label = false, label_correct = false;
    int shadow = -1;
    pthread_mutex_lock(&v->mu);
    if (e->regression) {
      if (it->is_name) {
        r->invalid++;
      } else {
        v->fb_regression = true;
        v->fb_abs_err += it->value > e->pred[it->row] ? it->value - e->pred[it->row] : e->pred[it->row] - it->value;
        v->fb_joined++;
        e->joined[it->row] = true;
        r->joined++;
      }
    } else {
      int64_t c = class_index(v, it);
      if (c < 0) {
        r->invalid++;
      } else {
        bool correct = c == (int64_t)e->pred[it->row];
        v->fb_correct += correct;
        if (f->observe) f->observe(f->observe_ctx, v->model, v->version, correct);
        v->fb_joined++;
        e->joined[it->row] = true;
        r->joined++;
        if (e->arm.epoch && f->hook) {
          rollout_label = true;
          label_correct = correct;
          shadow = e->spred ? c == (int64_t)e->spred[it->row] : -1;
          if (e->arm.arm == SW__ARM_SHADOW && !e->spred && e->rows == 1) e->early_label = c;
        }
      }
    }
    pthread_mutex_unlock(&v->mu);
    /* a mirrored request whose challenger answer is not in yet is judged when it comes */
    if (rollout_label && (e->arm.arm != SW__ARM_SHADOW || shadow >= 0))
      f->hook(f->hook_ctx, v->model, &e->arm, label_correct, shadow);
  }
  pthread_mutex_unlock(&f->mu);
}
