/* TEMPORARY stand-in for the rollout controller's statistics (the "stats" branch writes
 * the real, anytime-valid ones in rollout.c): crude fixed thresholds, so the server's
 * wiring can be exercised before that lands. Deleted at that merge. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "serve/rollout_shim.h"

typedef struct {
  int64_t n, err, slow, labels, wrong;
} arm_counts;

struct sw_rollout {
  pthread_mutex_t mu;
  sw_rollout_config cfg;
  size_t step;
  int weight;
  const char *state;
  double step_start;
  bool held, done;
  arm_counts arm[2], step_arm[2];
  double base[100];
  int n_base;
  double p99;
  int64_t disc_ch, disc_inc, sh_slow, sh_n, sh_err_ch, sh_err_inc;
};

void sw_rollout_config_from_policy(const sw_policy *p, sw_rollout_mode mode, sw_rollout_config *out) {
  memset(out, 0, sizeof *out);
  out->mode = mode;
  const sw_rollout_policy *r = &p->rollout;
  out->n_steps = r->n_steps < 16 ? r->n_steps : 16;
  for (size_t i = 0; i < out->n_steps; i++) out->steps[i] = r->steps[i];
  out->min_requests_per_step = r->min_requests_per_step;
  out->max_step_seconds = r->max_step_seconds;
  out->alpha = r->alpha;
  out->slo_p99_ms = r->slo_p99_ms;
  out->slo_error_rate = r->slo_error_rate;
  out->quality = true;
}

sw_status sw_rollout_new(const sw_rollout_config *cfg, double now_s, sw_rollout **out) {
  sw_rollout *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
  pthread_mutex_init(&r->mu, NULL);
  r->cfg = *cfg;
  r->weight = cfg->steps[0];
  r->state = "running";
  r->step_start = now_s;
  *out = r;
  return SW_STATUS_OK;
}

void sw_rollout_free(sw_rollout *r) {
  if (!r) return;
  pthread_mutex_destroy(&r->mu);
  sw_free(r);
}

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h;
}

bool sw_rollout_route(const sw_rollout *r, const char *user, size_t len, uint64_t key) {
  uint64_t h = user && len ? fnv(user, len) : key * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return (int)(h % 100) < r->weight;
}
int sw_rollout_weight(const sw_rollout *r) { return r->weight; }
size_t sw_rollout_step(const sw_rollout *r) { return r->step; }
const char *sw_rollout_state(const sw_rollout *r) { return r->state; }

void sw_rollout_observe_request(sw_rollout *r, bool challenger, double latency_ms, bool error) {
  pthread_mutex_lock(&r->mu);
  if (!challenger && r->n_base < 100) {
    r->base[r->n_base++] = latency_ms;
    if (r->n_base == 100) {
      double mx = 0;
      for (int i = 0; i < 100; i++) mx = r->base[i] > mx ? r->base[i] : mx;
      r->p99 = mx;
    }
  }
  for (int k = 0; k < 2; k++) {
    arm_counts *a = k ? &r->step_arm[challenger] : &r->arm[challenger];
    a->n++;
    a->err += error;
    a->slow += r->p99 > 0 && latency_ms > r->p99;
  }
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_label(sw_rollout *r, bool challenger, bool correct, int weight_at_request) {
  (void)weight_at_request;
  pthread_mutex_lock(&r->mu);
  for (int k = 0; k < 2; k++) {
    arm_counts *a = k ? &r->step_arm[challenger] : &r->arm[challenger];
    a->labels++;
    a->wrong += !correct;
  }
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_shadow(sw_rollout *r, double incumbent_ms, bool incumbent_error, double challenger_ms,
                               bool challenger_error, bool outputs_differ) {
  (void)outputs_differ;
  pthread_mutex_lock(&r->mu);
  if (r->n_base < 100) {
    r->base[r->n_base++] = incumbent_ms;
    if (r->n_base == 100) {
      double mx = 0;
      for (int i = 0; i < 100; i++) mx = r->base[i] > mx ? r->base[i] : mx;
      r->p99 = mx;
    }
  }
  r->sh_n++;
  r->step_arm[1].n++;
  r->sh_slow += r->p99 > 0 && challenger_ms > r->p99;
  r->sh_err_ch += challenger_error;
  r->sh_err_inc += incumbent_error;
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_shadow_label(sw_rollout *r, bool incumbent_correct, bool challenger_correct) {
  pthread_mutex_lock(&r->mu);
  r->disc_ch += incumbent_correct && !challenger_correct;
  r->disc_inc += !incumbent_correct && challenger_correct;
  r->step_arm[1].labels++;
  pthread_mutex_unlock(&r->mu);
}

static bool worse(sw_rollout *r, char *reason, size_t cap) {
  const arm_counts *c = &r->arm[1], *i = &r->arm[0];
  bool shadow = r->cfg.mode == SW_ROLLOUT_SHADOW;
  if (shadow) {
    if (r->sh_err_ch >= 5 && r->sh_err_ch > 3 * r->sh_err_inc + 4) {
      snprintf(reason, cap, "error_rate: %lld challenger errors in %lld mirrored requests (shim)", (long long)r->sh_err_ch, (long long)r->sh_n);
      return true;
    }
    if (r->sh_n >= 60 && r->sh_slow > 0.1 * (double)r->sh_n) {
      snprintf(reason, cap, "latency: %lld of %lld mirrored requests slower than the incumbent's p99 (shim)", (long long)r->sh_slow, (long long)r->sh_n);
      return true;
    }
    if (r->disc_ch >= 10 && r->disc_ch > 2 * r->disc_inc + 5) {
      snprintf(reason, cap, "quality: challenger wrong on %lld pairs the incumbent got right, the reverse %lld (shim)", (long long)r->disc_ch, (long long)r->disc_inc);
      return true;
    }
    return false;
  }
  double ir = i->n ? (double)i->err / (double)i->n : 0;
  if (c->err >= 5 && (double)c->err / (double)c->n > 2 * ir + 0.01) {
    snprintf(reason, cap, "error_rate: %lld challenger errors in %lld requests (shim)", (long long)c->err, (long long)c->n);
    return true;
  }
  if (c->n >= 60 && (double)c->slow > 0.1 * (double)c->n) {
    snprintf(reason, cap, "latency: %lld of %lld challenger requests slower than the incumbent's p99 (shim)", (long long)c->slow, (long long)c->n);
    return true;
  }
  if (c->labels >= 40 && i->labels >= 40 &&
      (double)c->wrong / (double)c->labels > (double)i->wrong / (double)i->labels + 0.06) {
    snprintf(reason, cap, "quality: challenger wrong on %lld of %lld labels (shim)", (long long)c->wrong, (long long)c->labels);
    return true;
  }
  return false;
}

sw_rollout_action sw_rollout_tick(sw_rollout *r, double now_s, char *reason, size_t cap) {
  sw_rollout_action a = SW_ROLLOUT_NONE;
  pthread_mutex_lock(&r->mu);
  if (r->done) goto out;
  if (worse(r, reason, cap)) {
    r->weight = 0;
    r->state = "rolled_back";
    r->done = true;
    a = SW_ROLLOUT_ROLLBACK;
    goto out;
  }
  int64_t have = r->cfg.quality ? r->step_arm[1].labels : r->step_arm[1].n;
  if (have >= r->cfg.min_requests_per_step) {
    if (r->step + 1 >= r->cfg.n_steps) {
      snprintf(reason, cap, "the last step (%d%%) passed with %lld challenger %s (shim)", r->weight, (long long)have,
               r->cfg.quality ? "labels" : "requests");
      r->state = "promoted";
      r->done = true;
      a = SW_ROLLOUT_PROMOTE;
      goto out;
    }
    snprintf(reason, cap, "step %zu (%d%%) passed with %lld challenger %s (shim)", r->step, r->weight, (long long)have,
             r->cfg.quality ? "labels" : "requests");
    r->step++;
    r->weight = r->cfg.steps[r->step];
    r->step_start = now_s;
    r->held = false;
    r->state = "running";
    memset(r->step_arm, 0, sizeof r->step_arm);
    a = SW_ROLLOUT_ADVANCE;
    goto out;
  }
  if (!r->held && now_s - r->step_start > r->cfg.max_step_seconds) {
    snprintf(reason, cap, "step %zu: %lld of %lld challenger %s after %.0f s: holding (shim)", r->step, (long long)have,
             (long long)r->cfg.min_requests_per_step, r->cfg.quality ? "labels" : "requests", now_s - r->step_start);
    r->held = true;
    r->state = "holding";
    a = SW_ROLLOUT_HOLD;
  }
out:
  pthread_mutex_unlock(&r->mu);
  return a;
}

void sw_rollout_abort(sw_rollout *r, double now_s) {
  (void)now_s;
  pthread_mutex_lock(&r->mu);
  r->weight = 0;
  r->state = "aborted";
  r->done = true;
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_promote_now(sw_rollout *r, double now_s) {
  (void)now_s;
  pthread_mutex_lock(&r->mu);
  r->weight = 100;
  r->state = "promoted";
  r->done = true;
  pthread_mutex_unlock(&r->mu);
}

json_t *sw_rollout_evidence_json(const sw_rollout *r) {
  sw_rollout *m = (sw_rollout *)r;
  pthread_mutex_lock(&m->mu);
  json_t *e = json_pack("{s:{s:f,s:f,s:f,s:{s:I,s:I},s:{s:I,s:I},s:s},s:{s:f,s:f,s:f,s:{s:I,s:I},s:{s:I,s:I},s:s}}",
                        "error_rate", "e_value", 1.0, "boundary", 100.0, "alpha", 0.01, "challenger", "n", (json_int_t)r->arm[1].n,
                        "events", (json_int_t)r->arm[1].err, "incumbent", "n", (json_int_t)r->arm[0].n, "events",
                        (json_int_t)r->arm[0].err, "verdict", "waiting", "quality", "e_value", 1.0, "boundary", 100.0, "alpha",
                        0.01, "challenger", "n", (json_int_t)r->arm[1].labels, "events", (json_int_t)r->arm[1].wrong, "incumbent",
                        "n", (json_int_t)r->arm[0].labels, "events", (json_int_t)r->arm[0].wrong, "verdict", "waiting");
  pthread_mutex_unlock(&m->mu);
  return e;
}

json_t *sw_rollout_save(const sw_rollout *r) {
  sw_rollout *m = (sw_rollout *)r;
  pthread_mutex_lock(&m->mu);
  json_t *s = json_pack("{s:I,s:I,s:s,s:[I,I,I,I,I],s:[I,I,I,I,I],s:f}", "step", (json_int_t)r->step, "weight",
                        (json_int_t)r->weight, "state", r->state, "inc", (json_int_t)r->arm[0].n, (json_int_t)r->arm[0].err,
                        (json_int_t)r->arm[0].slow, (json_int_t)r->arm[0].labels, (json_int_t)r->arm[0].wrong, "ch",
                        (json_int_t)r->arm[1].n, (json_int_t)r->arm[1].err, (json_int_t)r->arm[1].slow,
                        (json_int_t)r->arm[1].labels, (json_int_t)r->arm[1].wrong, "p99", r->p99);
  pthread_mutex_unlock(&m->mu);
  return s;
}

sw_status sw_rollout_restore(const sw_rollout_config *cfg, const json_t *saved, double now_s, sw_rollout **out) {
  sw_status st = sw_rollout_new(cfg, now_s, out);
  if (st) return st;
  sw_rollout *r = *out;
  json_int_t step = json_integer_value(json_object_get(saved, "step"));
  if (step < 0 || (size_t)step >= cfg->n_steps) {
    sw_rollout_free(r);
    *out = NULL;
    return sw_error(SW_STATUS_CORRUPT, "saved rollout step %lld is out of range", (long long)step);
  }
  r->step = (size_t)step;
  r->weight = cfg->steps[r->step];
  const json_t *inc = json_object_get(saved, "inc"), *ch = json_object_get(saved, "ch");
  int64_t *fi = &r->arm[0].n, *fc = &r->arm[1].n;
  for (size_t i = 0; i < 5; i++) {
    fi[i] = json_integer_value(json_array_get(inc, i));
    fc[i] = json_integer_value(json_array_get(ch, i));
  }
  r->p99 = json_real_value(json_object_get(saved, "p99"));
  if (r->p99 > 0) r->n_base = 100;
  return SW_STATUS_OK;
}
