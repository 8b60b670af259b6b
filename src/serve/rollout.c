/* The rollout controller (docs/ROLLOUT.md): routes requests between incumbent and
 * challenger, feeds what happens into anytime-valid tests (src/eval/sequential.c) and
 * decides when a step advances, holds, rolls back or promotes. No I/O: the server calls
 * it and records its decisions. One mutex guards everything but the router's reads. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/serve.h"

enum { M_ERROR, M_LATENCY, M_QUALITY, M_SLO_P99, M_SLO_ERROR, M_COUNT };
static const char *const metric_name[M_COUNT] = {"error_rate", "latency", "quality", "slo_p99", "slo_error_rate"};
/* what an event is, for the reasons a person reads */
static const char *const event_noun[M_COUNT] = {"errors", "slow requests", "wrong predictions",
                                                "requests over the p99 objective", "errors"};

enum { ST_RUNNING, ST_HOLDING, ST_PROMOTED, ST_ROLLED_BACK, ST_ABORTED, ST_COUNT };
static const char *const state_name[ST_COUNT] = {"running", "holding", "promoted", "rolled_back", "aborted"};

/* The incumbent's first successful requests fix the latency test's threshold (their p99):
 * 200 puts the estimate between the 97th and 99.7th percentile most of the time, enough
 * for "clearly slower" and quick to gather at any weight below 100. */
#define LATENCY_SAMPLES 200
/* the share of requests a p99 objective allows over it */
#define SLO_P99_SHARE 0.01

typedef struct {
  bool used;
  sw_seq_test test;
  int64_t ch_n, ch_events, in_n, in_events;
} metric;

struct sw_rollout {
  pthread_mutex_t mu;
  sw_rollout_config cfg;
  uint64_t salt;
  int weight; /* atomic: the router reads it without the lock */
  int state;  /* atomic */
  size_t step;
  double step_start;     /* the caller's clock */
  double last_now;       /* latest time seen (tick, new, restore): save's reference */
  bool step_held;        /* HOLD reported for this step */
  int64_t step_requests; /* challenger requests (shadow: mirrored) in this step */
  int64_t step_labels;   /* challenger labels in this step */
  metric m[M_COUNT];
  int n_tests;
  double alpha_k;
  double latency_threshold; /* < 0: not fixed yet */
  double latency_samples[LATENCY_SAMPLES];
  int n_latency_samples;
  int64_t disagreements; /* shadow: mirrored requests whose outputs differed */
  sw_rollout_action pending;
  char pending_reason[512];
};

/* ---- small things ------------------------------------------------------------------ */

static int load_int(const int *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static void store_int(int *p, int v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

const char *sw_rollout_mode_name(sw_rollout_mode m) {
  switch (m) {
  case SW_ROLLOUT_CANARY: return "canary";
  case SW_ROLLOUT_AB: return "ab";
  case SW_ROLLOUT_SHADOW: return "shadow";
  }
  return "?";
}

sw_status sw_rollout_mode_parse(const char *s, sw_rollout_mode *out) {
  if (s && !strcmp(s, "canary")) *out = SW_ROLLOUT_CANARY;
  else if (s && !strcmp(s, "ab")) *out = SW_ROLLOUT_AB;
  else if (s && !strcmp(s, "shadow")) *out = SW_ROLLOUT_SHADOW;
  else return sw_error(SW_STATUS_INVALID, "rollout mode '%s': expected canary, ab or shadow", s ? s : "");
  return SW_STATUS_OK;
}

const char *sw_rollout_action_name(sw_rollout_action a) {
  switch (a) {
  case SW_ROLLOUT_NONE: return "none";
  case SW_ROLLOUT_ADVANCE: return "advance";
  case SW_ROLLOUT_HOLD: return "hold";
  case SW_ROLLOUT_ROLLBACK: return "rollback";
  case SW_ROLLOUT_PROMOTE: return "promote";
  }
  return "?";
}

void sw_rollout_config_from_policy(const sw_policy *p, sw_rollout_mode mode, sw_rollout_config *out) {
  static const int default_steps[] = {1, 5, 25, 50, 100};
  memset(out, 0, sizeof *out);
  out->mode = mode;
  out->min_requests_per_step = 500;
  out->max_step_seconds = 600;
  out->alpha = 0.01;
  out->slo_p99_ms = -1;
  out->slo_error_rate = -1;
  out->compare_latency = true;
  if (!p || !p->rollout.steps || p->rollout.n_steps == 0) {
    memcpy(out->steps, default_steps, sizeof default_steps);
    out->n_steps = sizeof default_steps / sizeof default_steps[0];
  } else {
    size_t n = p->rollout.n_steps;
    if (n > SW_ROLLOUT_MAX_STEPS) {
      /* the policy allows up to 100 steps; keep the first 15 and the last (100) */
      SW_WARN("rollout policy has %zu steps: only the first %d and the last are used", n, SW_ROLLOUT_MAX_STEPS - 1);
      memcpy(out->steps, p->rollout.steps, (SW_ROLLOUT_MAX_STEPS - 1) * sizeof(int));
      out->steps[SW_ROLLOUT_MAX_STEPS - 1] = p->rollout.steps[n - 1];
      out->n_steps = SW_ROLLOUT_MAX_STEPS;
    } else {
      memcpy(out->steps, p->rollout.steps, n * sizeof(int));
      out->n_steps = n;
    }
  }
  if (p) {
    out->min_requests_per_step = p->rollout.min_requests_per_step;
    out->max_step_seconds = p->rollout.max_step_seconds;
    out->alpha = p->rollout.alpha;
    out->slo_p99_ms = p->rollout.slo_p99_ms;
    out->slo_error_rate = p->rollout.slo_error_rate;
    out->compare_latency = p->rollout.compare_latency;
  }
  const char *primary = p && p->metric ? p->metric : "accuracy";
  out->quality = !strcmp(primary, "accuracy") || !strcmp(primary, "auc");
}

/* ---- router -------------------------------------------------------------------------- */

/* splitmix64's finalizer (Steele, Lea & Flood 2014): every input bit reaches every
 * output bit */
static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A user id to 64 bits: 8 bytes at a time, each block mixed in fully, the length in the
 * seed so "a" and "a\0" differ. */
static uint64_t hash_bytes(const char *s, size_t len, uint64_t seed) {
  uint64_t h = mix64(seed ^ (uint64_t)len);
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = mix64(h ^ w);
    s += 8;
    len -= 8;
  }
  if (len > 0) {
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = mix64(h ^ w ^ 0xff00000000000000ull);
  }
  return mix64(h);
}

uint32_t sw_rollout_bucket(const sw_rollout *r, const char *user, size_t len, uint64_t key) {
  uint64_t h = user && len > 0 ? hash_bytes(user, len, r->salt) : mix64(key ^ r->salt);
  return (uint32_t)(h % 10000u);
}

bool sw_rollout_route(const sw_rollout *r, const char *user, size_t len, uint64_t key) {
  int w = load_int(&r->weight);
  if (w <= 0) return false;
  if (w >= 100) return true;
  return sw_rollout_bucket(r, user, len, key) < (uint32_t)w * 100u;
}

int sw_rollout_weight(const sw_rollout *r) {
  return load_int(&r->weight);
}

size_t sw_rollout_step(const sw_rollout *r) {
  pthread_mutex_lock((pthread_mutex_t *)&r->mu);
  size_t s = r->step;
  pthread_mutex_unlock((pthread_mutex_t *)&r->mu);
  return s;
}

const char *sw_rollout_state(const sw_rollout *r) {
  int s = load_int(&r->state);
  return s >= 0 && s < ST_COUNT ? state_name[s] : "?";
}

static bool state_done(int s) {
  return s == ST_PROMOTED || s == ST_ROLLED_BACK || s == ST_ABORTED;
}

bool sw_rollout_done(const sw_rollout *r) {
  return state_done(load_int(&r->state));
}

/* ---- construction -------------------------------------------------------------------- */

static sw_status check_config(const sw_rollout_config *c) {
  if (c->mode != SW_ROLLOUT_CANARY && c->mode != SW_ROLLOUT_AB && c->mode != SW_ROLLOUT_SHADOW)
    return sw_error(SW_STATUS_INVALID, "rollout: unknown mode %d", (int)c->mode);
  if (c->n_steps < 1 || c->n_steps > SW_ROLLOUT_MAX_STEPS)
    return sw_error(SW_STATUS_INVALID, "rollout: %zu steps (1 to %d)", c->n_steps, SW_ROLLOUT_MAX_STEPS);
  for (size_t i = 0; i < c->n_steps; i++) {
    if (c->steps[i] < 1 || c->steps[i] > 100)
      return sw_error(SW_STATUS_INVALID, "rollout: step %zu is %d%%, outside 1..100", i, c->steps[i]);
    if (i > 0 && c->steps[i] <= c->steps[i - 1])
      return sw_error(SW_STATUS_INVALID, "rollout: step %zu (%d%%) does not increase on the one before (%d%%)", i,
                      c->steps[i], c->steps[i - 1]);
  }
  if (c->steps[c->n_steps - 1] != 100)
    return sw_error(SW_STATUS_INVALID, "rollout: the last step is %d%%: a rollout ends at 100",
                    c->steps[c->n_steps - 1]);
  if (!(c->alpha > 0 && c->alpha < 1))
    return sw_error(SW_STATUS_INVALID, "rollout: alpha %g is outside (0, 1)", c->alpha);
  if (c->min_requests_per_step < 1)
    return sw_error(SW_STATUS_INVALID, "rollout: min_requests_per_step %lld is below 1",
                    (long long)c->min_requests_per_step);
  if (!(c->max_step_seconds > 0))
    return sw_error(SW_STATUS_INVALID, "rollout: max_step_seconds %g is not positive", c->max_step_seconds);
  if (isnan(c->slo_p99_ms) || isnan(c->slo_error_rate) || c->slo_error_rate >= 1)
    return sw_error(SW_STATUS_INVALID, "rollout: the objectives must be numbers (error_rate below 1)");
  return SW_STATUS_OK;
}

static sw_status rollout_alloc(const sw_rollout_config *cfg, sw_rollout **out) {
  *out = NULL;
  sw_status st = check_config(cfg);
  if (st) return st;
  sw_rollout *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "rollout: out of memory");
  if (pthread_mutex_init(&r->mu, NULL)) {
    sw_free(r);
    return sw_error(SW_STATUS_NOMEM, "rollout: cannot create a mutex");
  }
  r->cfg = *cfg;
  r->m[M_ERROR].used = true;
  /* off for a challenger slower by design: its absolute objective (slo_p99) still judges it,
   * and alpha is split over one test fewer */
  r->m[M_LATENCY].used = cfg->compare_latency;
  r->m[M_QUALITY].used = cfg->quality;
  r->m[M_SLO_P99].used = cfg->slo_p99_ms > 0;
  r->m[M_SLO_ERROR].used = cfg->slo_error_rate >= 0;
  for (int k = 0; k < M_COUNT; k++) {
    sw_seq_init(&r->m[k].test);
    r->n_tests += r->m[k].used;
  }
  r->alpha_k = cfg->alpha / r->n_tests;
  r->latency_threshold = -1;
  r->pending = SW_ROLLOUT_NONE;
  *out = r;
  return SW_STATUS_OK;
}

sw_status sw_rollout_new(const sw_rollout_config *cfg, double now_s, sw_rollout **out) {
  sw_rollout *r;
  *out = NULL;
  sw_status st = rollout_alloc(cfg, &r);
  if (st) return st;
  uint64_t bits;
  memcpy(&bits, &now_s, sizeof bits);
  r->salt = mix64(bits);
  r->step = 0;
  r->weight = cfg->steps[0];
  r->state = ST_RUNNING;
  r->step_start = now_s;
  r->last_now = now_s;
  *out = r;
  return SW_STATUS_OK;
}

void sw_rollout_free(sw_rollout *r) {
  if (!r) return;
  pthread_mutex_destroy(&r->mu);
  sw_free(r);
}

/* ---- evidence ------------------------------------------------------------------------ */

/* A number for a person: 3 significant digits, no exponent below a million. */
static void fmt_num(char *buf, size_t cap, double x) {
  if (isinf(x)) snprintf(buf, cap, "infinity");
  else if (fabs(x) >= 1e6 || (x != 0 && fabs(x) < 1e-3)) snprintf(buf, cap, "%.3g", x);
  else if (fabs(x) >= 100) snprintf(buf, cap, "%.0f", x);
  else snprintf(buf, cap, "%.3g", x);
}

/* Called with the lock held after an observation that could raise test k: a crossing
 * rolls back at once. */
static void check_crossing(sw_rollout *r, int k) {
  metric *m = &r->m[k];
  if (!sw_seq_crossed(&m->test, r->alpha_k)) return;
  char e[32], b[32];
  fmt_num(e, sizeof e, sw_seq_e(&m->test));
  fmt_num(b, sizeof b, 1 / r->alpha_k);
  int w = r->weight;
  if (k == M_SLO_P99 || k == M_SLO_ERROR) {
    char objective[64];
    if (k == M_SLO_P99) snprintf(objective, sizeof objective, "p99 <= %g ms allows 1%% over it", r->cfg.slo_p99_ms);
    else snprintf(objective, sizeof objective, "error rate <= %g%%", 100 * r->cfg.slo_error_rate);
    snprintf(r->pending_reason, sizeof r->pending_reason,
             "%s: e-value %s crossed 1/alpha = %s after %lld challenger %s in %lld requests (%.2f%%; the objective "
             "%s) at step %zu (%d%%); rolled back",
             metric_name[k], e, b, (long long)m->ch_events, event_noun[k], (long long)m->ch_n,
             m->ch_n ? 100.0 * (double)m->ch_events / (double)m->ch_n : 0.0, objective, r->step, w);
  } else {
    snprintf(r->pending_reason, sizeof r->pending_reason,
             "%s: e-value %s crossed 1/alpha = %s after %lld challenger %s in %lld %s (%.2f%%) against the "
             "incumbent's %lld in %lld (%.2f%%) at step %zu (%d%%); rolled back",
             metric_name[k], e, b, (long long)m->ch_events, event_noun[k], (long long)m->ch_n,
             k == M_QUALITY ? "labels" : "requests", m->ch_n ? 100.0 * (double)m->ch_events / (double)m->ch_n : 0.0,
             (long long)m->in_events, (long long)m->in_n,
             m->in_n ? 100.0 * (double)m->in_events / (double)m->in_n : 0.0, r->step, w);
  }
  r->pending = SW_ROLLOUT_ROLLBACK;
  store_int(&r->state, ST_ROLLED_BACK);
  store_int(&r->weight, 0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One successful incumbent latency toward the threshold (lock held). */
static void latency_sample(sw_rollout *r, double ms) {
  if (r->latency_threshold >= 0 || !isfinite(ms) || ms < 0) return;
  r->latency_samples[r->n_latency_samples++] = ms;
  if (r->n_latency_samples < LATENCY_SAMPLES) return;
  double sorted[LATENCY_SAMPLES];
  memcpy(sorted, r->latency_samples, sizeof sorted);
  qsort(sorted, LATENCY_SAMPLES, sizeof sorted[0], cmp_double);
  /* the p99: the smallest sample with at least 99 % of the samples at or below it */
  r->latency_threshold = sorted[(int)ceil(0.99 * LATENCY_SAMPLES) - 1];
}

/* A count-test event (lock held): x = it fell on the challenger, p = the challenger's
 * share under which it was routed. */
static void count_event(sw_rollout *r, int k, bool challenger, double p) {
  metric *m = &r->m[k];
  if (challenger) m->ch_events++;
  else m->in_events++;
  sw_seq_observe(&m->test, challenger, p);
  if (challenger) check_crossing(r, k);
}

static void objective(sw_rollout *r, int k, bool broke, double allowed) {
  metric *m = &r->m[k];
  m->ch_n++;
  m->ch_events += broke;
  sw_seq_observe(&m->test, broke, allowed);
  if (broke) check_crossing(r, k);
}

void sw_rollout_observe_request(sw_rollout *r, bool challenger, double latency_ms, bool error) {
  pthread_mutex_lock(&r->mu);
  if (state_done(r->state) || r->cfg.mode == SW_ROLLOUT_SHADOW) goto out;
  double rho = r->weight / 100.0;
  if (challenger) r->step_requests++;
  metric *e = &r->m[M_ERROR];
  if (challenger) e->ch_n++;
  else e->in_n++;
  if (error) count_event(r, M_ERROR, challenger, rho);
  if (!error && r->m[M_LATENCY].used && !state_done(r->state)) {
    if (r->latency_threshold < 0) {
      if (!challenger) latency_sample(r, latency_ms);
    } else {
      metric *l = &r->m[M_LATENCY];
      if (challenger) l->ch_n++;
      else l->in_n++;
      if (latency_ms > r->latency_threshold) count_event(r, M_LATENCY, challenger, rho);
    }
  }
  if (challenger && !error && r->m[M_SLO_P99].used && !state_done(r->state))
    objective(r, M_SLO_P99, latency_ms > r->cfg.slo_p99_ms, SLO_P99_SHARE);
  if (challenger && r->m[M_SLO_ERROR].used && !state_done(r->state))
    objective(r, M_SLO_ERROR, error, r->cfg.slo_error_rate);
out:
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_label(sw_rollout *r, bool challenger, bool correct, int weight_at_request) {
  pthread_mutex_lock(&r->mu);
  if (state_done(r->state) || r->cfg.mode == SW_ROLLOUT_SHADOW || !r->m[M_QUALITY].used) goto out;
  if (challenger) r->step_labels++;
  /* a request routed at weight 0 or 100 had one possible arm: nothing to compare */
  if (weight_at_request <= 0 || weight_at_request >= 100) goto out;
  metric *q = &r->m[M_QUALITY];
  if (challenger) q->ch_n++;
  else q->in_n++;
  if (!correct) count_event(r, M_QUALITY, challenger, weight_at_request / 100.0);
out:
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_shadow(sw_rollout *r, double incumbent_ms, bool incumbent_error, double challenger_ms,
                               bool challenger_error, bool outputs_differ) {
  pthread_mutex_lock(&r->mu);
  if (state_done(r->state) || r->cfg.mode != SW_ROLLOUT_SHADOW) goto out;
  r->step_requests++;
  r->disagreements += outputs_differ;
  /* paired: only discordant pairs say anything, and under "challenger no worse" the
   * challenger is the one that failed in at most half of them (McNemar) */
  metric *e = &r->m[M_ERROR];
  e->ch_n++;
  e->in_n++;
  e->ch_events += challenger_error;
  e->in_events += incumbent_error;
  if (incumbent_error != challenger_error) {
    sw_seq_observe(&e->test, challenger_error, 0.5);
    if (challenger_error) check_crossing(r, M_ERROR);
  }
  if (r->m[M_LATENCY].used && !state_done(r->state)) {
    if (r->latency_threshold < 0) {
      if (!incumbent_error) latency_sample(r, incumbent_ms);
    } else if (!incumbent_error && !challenger_error) {
      metric *l = &r->m[M_LATENCY];
      bool slow_i = incumbent_ms > r->latency_threshold, slow_c = challenger_ms > r->latency_threshold;
      l->ch_n++;
      l->in_n++;
      l->ch_events += slow_c;
      l->in_events += slow_i;
      if (slow_i != slow_c) {
        sw_seq_observe(&l->test, slow_c, 0.5);
        if (slow_c) check_crossing(r, M_LATENCY);
      }
    }
  }
  if (!challenger_error && r->m[M_SLO_P99].used && !state_done(r->state))
    objective(r, M_SLO_P99, challenger_ms > r->cfg.slo_p99_ms, SLO_P99_SHARE);
  if (r->m[M_SLO_ERROR].used && !state_done(r->state))
    objective(r, M_SLO_ERROR, challenger_error, r->cfg.slo_error_rate);
out:
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_observe_shadow_label(sw_rollout *r, bool incumbent_correct, bool challenger_correct) {
  pthread_mutex_lock(&r->mu);
  if (state_done(r->state) || r->cfg.mode != SW_ROLLOUT_SHADOW || !r->m[M_QUALITY].used) goto out;
  r->step_labels++;
  metric *q = &r->m[M_QUALITY];
  q->ch_n++;
  q->in_n++;
  q->ch_events += !challenger_correct;
  q->in_events += !incumbent_correct;
  if (incumbent_correct != challenger_correct) {
    sw_seq_observe(&q->test, !challenger_correct, 0.5);
    if (!challenger_correct) check_crossing(r, M_QUALITY);
  }
out:
  pthread_mutex_unlock(&r->mu);
}

sw_status sw_rollout_set_latency_threshold(sw_rollout *r, double ms) {
  sw_status st = SW_STATUS_OK;
  if (!(ms > 0) || !isfinite(ms)) return sw_error(SW_STATUS_INVALID, "latency threshold %g ms is not positive", ms);
  pthread_mutex_lock(&r->mu);
  if (r->latency_threshold >= 0)
    st = sw_error(SW_STATUS_INVALID, "the latency threshold is already fixed (%g ms)", r->latency_threshold);
  else r->latency_threshold = ms;
  pthread_mutex_unlock(&r->mu);
  return st;
}

double sw_rollout_latency_threshold(const sw_rollout *r) {
  pthread_mutex_lock((pthread_mutex_t *)&r->mu);
  double t = r->latency_threshold;
  pthread_mutex_unlock((pthread_mutex_t *)&r->mu);
  return t;
}

/* ---- decisions ----------------------------------------------------------------------- */

static size_t put_reason(char *reason, size_t cap, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put_reason(char *reason, size_t cap, size_t at, const char *fmt, ...) {
  if (!reason || cap == 0 || at >= cap) return at;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(reason + at, cap - at, fmt, ap);
  va_end(ap);
  if (n < 0) return at;
  return at + (size_t)n >= cap ? cap : at + (size_t)n;
}

/* "error_rate e=0.41, latency e=1.2 (boundary 500 each)" */
static size_t put_tests(const sw_rollout *r, char *reason, size_t cap, size_t at) {
  bool first = true;
  for (int k = 0; k < M_COUNT; k++) {
    if (!r->m[k].used) continue;
    char e[32];
    fmt_num(e, sizeof e, sw_seq_e(&r->m[k].test));
    at = put_reason(reason, cap, at, "%s%s e=%s", first ? "" : ", ", metric_name[k], e);
    first = false;
  }
  char b[32];
  fmt_num(b, sizeof b, 1 / r->alpha_k);
  return put_reason(reason, cap, at, " (boundary %s each)", b);
}

static int64_t step_evidence(const sw_rollout *r) {
  return r->cfg.quality ? r->step_labels : r->step_requests;
}

sw_rollout_action sw_rollout_tick(sw_rollout *r, double now_s, char *reason, size_t reason_cap) {
  sw_rollout_action a = SW_ROLLOUT_NONE;
  if (reason && reason_cap) reason[0] = '\0';
  pthread_mutex_lock(&r->mu);
  if (now_s > r->last_now) r->last_now = now_s;
  if (r->pending != SW_ROLLOUT_NONE) {
    a = r->pending;
    r->pending = SW_ROLLOUT_NONE;
    put_reason(reason, reason_cap, 0, "%s", r->pending_reason);
    goto out;
  }
  if (state_done(r->state)) goto out;
  int64_t have = step_evidence(r), need = r->cfg.min_requests_per_step;
  const char *unit = r->cfg.quality ? "labeled challenger requests" : "challenger requests";
  if (r->cfg.mode == SW_ROLLOUT_SHADOW) unit = r->cfg.quality ? "labeled mirrored requests" : "mirrored requests";
  /* the latency test needs its threshold before a step counts as seen, except at 100 %
   * where the incumbent gets nothing to fix it from */
  bool threshold_missing = r->m[M_LATENCY].used && r->latency_threshold < 0 && r->weight < 100;
  double elapsed = now_s - r->step_start;
  size_t at = 0;
  if (have >= need && !threshold_missing) {
    int w = r->weight;
    if (r->step + 1 >= r->cfg.n_steps) {
      a = SW_ROLLOUT_PROMOTE;
      at = put_reason(reason, reason_cap, at,
                      "promoted: the last step (%d%%) passed with %lld %s (minimum %lld) in %.0f s; nothing worse: ",
                      w, (long long)have, unit, (long long)need, elapsed);
      put_tests(r, reason, reason_cap, at);
      store_int(&r->state, ST_PROMOTED);
      store_int(&r->weight, 100);
    } else {
      a = SW_ROLLOUT_ADVANCE;
      int next = r->cfg.steps[r->step + 1];
      at = put_reason(reason, reason_cap, at,
                      "advanced to step %zu (%d%%): step %zu (%d%%) had %lld %s (minimum %lld) in %.0f s; "
                      "nothing worse: ",
                      r->step + 1, next, r->step, w, (long long)have, unit, (long long)need, elapsed);
      put_tests(r, reason, reason_cap, at);
      r->step++;
      r->step_start = now_s;
      r->step_held = false;
      r->step_requests = 0;
      r->step_labels = 0;
      store_int(&r->state, ST_RUNNING);
      store_int(&r->weight, next);
    }
  } else if (!r->step_held && elapsed >= r->cfg.max_step_seconds) {
    a = SW_ROLLOUT_HOLD;
    at = put_reason(reason, reason_cap, at, "holding at step %zu (%d%%): after %.0f s (limit %.0f s) ", r->step,
                    r->weight,
                    elapsed, r->cfg.max_step_seconds);
    if (have < need)
      at = put_reason(reason, reason_cap, at, "only %lld of %lld %s", (long long)have, (long long)need, unit);
    else at = put_reason(reason, reason_cap, at, "the %lld %s are in", (long long)have, unit);
    if (threshold_missing)
      at = put_reason(reason, reason_cap, at, "%s the latency threshold still needs %d more incumbent requests",
                      have < need ? " and" : " but", LATENCY_SAMPLES - r->n_latency_samples);
    at = put_reason(reason, reason_cap, at,
                    "; too little traffic is not a failure: still serving %d%%, advancing when the evidence is in; ",
                    r->weight);
    put_tests(r, reason, reason_cap, at);
    r->step_held = true;
    store_int(&r->state, ST_HOLDING);
  }
out:
  pthread_mutex_unlock(&r->mu);
  return a;
}

void sw_rollout_abort(sw_rollout *r, double now_s) {
  pthread_mutex_lock(&r->mu);
  if (now_s > r->last_now) r->last_now = now_s;
  if (!state_done(r->state)) {
    store_int(&r->state, ST_ABORTED);
    store_int(&r->weight, 0);
  }
  pthread_mutex_unlock(&r->mu);
}

void sw_rollout_promote_now(sw_rollout *r, double now_s) {
  pthread_mutex_lock(&r->mu);
  if (now_s > r->last_now) r->last_now = now_s;
  if (!state_done(r->state)) {
    store_int(&r->state, ST_PROMOTED);
    store_int(&r->weight, 100);
  }
  pthread_mutex_unlock(&r->mu);
}

/* ---- evidence, save, restore --------------------------------------------------------- */

static json_t *arm_json(int64_t n, int64_t events) {
  return json_pack("{s:I, s:I}", "n", (json_int_t)n, "events", (json_int_t)events);
}

json_t *sw_rollout_evidence_json(const sw_rollout *r) {
  sw_rollout *rw = (sw_rollout *)r;
  json_t *o = json_object();
  if (!o) return NULL;
  pthread_mutex_lock(&rw->mu);
  for (int k = 0; k < M_COUNT; k++) {
    const metric *m = &r->m[k];
    if (!m->used) continue;
    bool crossed = sw_seq_crossed(&m->test, r->alpha_k);
    const char *verdict = "ok";
    if (crossed) verdict = "worse";
    else if ((k == M_LATENCY && r->latency_threshold < 0) || m->ch_n == 0) verdict = "waiting";
    json_t *e = json_pack("{s:f, s:f, s:f, s:o, s:o, s:s}", "e_value", sw_seq_e(&m->test), "boundary", 1 / r->alpha_k,
                          "alpha", r->alpha_k, "challenger", arm_json(m->ch_n, m->ch_events), "incumbent",
                          arm_json(m->in_n, m->in_events), "verdict", verdict);
    int bad = !e;
    if (!bad && k == M_LATENCY && r->latency_threshold >= 0)
      bad = json_object_set_new(e, "threshold_ms", json_real(r->latency_threshold));
    if (!bad && k == M_SLO_P99) bad = json_object_set_new(e, "objective_ms", json_real(r->cfg.slo_p99_ms));
    if (!bad && k == M_SLO_ERROR) bad = json_object_set_new(e, "objective", json_real(r->cfg.slo_error_rate));
    if (bad || json_object_set_new(o, metric_name[k], e)) {
      if (bad) json_decref(e);
      json_decref(o);
      o = NULL;
      break;
    }
  }
  pthread_mutex_unlock(&rw->mu);
  return o;
}

json_t *sw_rollout_save(const sw_rollout *r) {
  sw_rollout *rw = (sw_rollout *)r;
  json_t *o = NULL, *tests = NULL, *samples = NULL;
  char salt[17];
  pthread_mutex_lock(&rw->mu);
  tests = json_object();
  samples = json_array();
  if (!tests || !samples) goto fail;
  for (int k = 0; k < M_COUNT; k++) {
    const metric *m = &r->m[k];
    if (!m->used) continue;
    json_t *t = json_pack("{s:o, s:o, s:o}", "test", sw_seq_save(&m->test), "challenger",
                          arm_json(m->ch_n, m->ch_events),
                          "incumbent", arm_json(m->in_n, m->in_events));
    if (!t || json_object_set_new(tests, metric_name[k], t)) goto fail;
  }
  for (int i = 0; i < r->n_latency_samples; i++)
    if (json_array_append_new(samples, json_real(r->latency_samples[i]))) goto fail;
  snprintf(salt, sizeof salt, "%016llx", (unsigned long long)r->salt);
  o = json_pack("{s:i, s:s, s:I, s:i, s:s, s:f, s:b, s:I, s:I, s:s, s:f, s:o, s:I, s:s, s:s, s:o}", "version", 1,
                "mode", sw_rollout_mode_name(r->cfg.mode), "step", (json_int_t)r->step, "weight", r->weight, "state",
                state_name[r->state], "step_elapsed_s", r->last_now - r->step_start, "step_held", (int)r->step_held,
                "step_requests", (json_int_t)r->step_requests, "step_labels", (json_int_t)r->step_labels, "salt", salt,
                "latency_threshold_ms", r->latency_threshold, "latency_samples", samples, "disagreements",
                (json_int_t)r->disagreements, "pending", sw_rollout_action_name(r->pending), "pending_reason",
                r->pending_reason, "tests", tests);
  samples = tests = NULL; /* taken by json_pack */
fail:
  json_decref(samples);
  json_decref(tests);
  pthread_mutex_unlock(&rw->mu);
  return o;
}

static sw_status restore_arm(const json_t *t, const char *key, int64_t *n, int64_t *events) {
  json_int_t a = 0, b = 0;
  if (json_unpack((json_t *)json_object_get(t, key), "{s:I, s:I}", "n", &a, "events", &b) || a < 0 || b < 0 || b > a)
    return sw_error(SW_STATUS_FORMAT, "saved rollout: %s counts are malformed", key);
  *n = a;
  *events = b;
  return SW_STATUS_OK;
}

sw_status sw_rollout_restore(const sw_rollout_config *cfg, const json_t *saved, double now_s, sw_rollout **out) {
  sw_rollout *r = NULL;
  sw_status st = rollout_alloc(cfg, &r);
  if (st) return st;
  json_int_t version = 0, step = 0, step_requests = 0, step_labels = 0, disagreements = 0;
  int weight = 0, held = 0;
  const char *mode = NULL, *state = NULL, *salt = NULL, *pending = NULL, *pending_reason = NULL;
  double elapsed = 0, threshold = -1;
  json_t *samples = NULL, *tests = NULL;
  json_error_t err;
  if (json_unpack_ex((json_t *)saved, &err, 0,
                     "{s:I, s:s, s:I, s:i, s:s, s:F, s:b, s:I, s:I, s:s, s:F, s:o, s:I, s:s, s:s, s:o}", "version",
                     &version, "mode", &mode, "step", &step, "weight", &weight, "state", &state, "step_elapsed_s",
                     &elapsed, "step_held", &held, "step_requests", &step_requests, "step_labels", &step_labels, "salt",
                     &salt, "latency_threshold_ms", &threshold, "latency_samples", &samples, "disagreements",
                     &disagreements, "pending", &pending, "pending_reason", &pending_reason, "tests", &tests)) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: %s", err.text);
    goto fail;
  }
  if (version != 1) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: version %lld (this build reads 1)", (long long)version);
    goto fail;
  }
  if (strcmp(mode, sw_rollout_mode_name(cfg->mode))) {
    st = sw_error(SW_STATUS_INVALID, "saved rollout: mode %s, but the config says %s", mode,
                  sw_rollout_mode_name(cfg->mode));
    goto fail;
  }
  int s = -1;
  for (int i = 0; i < ST_COUNT; i++)
    if (!strcmp(state, state_name[i])) s = i;
  if (s < 0) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: unknown state '%s'", state);
    goto fail;
  }
  if (step < 0 || (size_t)step >= cfg->n_steps) {
    st = sw_error(SW_STATUS_INVALID, "saved rollout: step %lld, but the config has %zu", (long long)step, cfg->n_steps);
    goto fail;
  }
  int want = s == ST_PROMOTED ? 100 : s == ST_ROLLED_BACK || s == ST_ABORTED ? 0 : cfg->steps[step];
  if (weight != want) {
    st = sw_error(SW_STATUS_INVALID, "saved rollout: weight %d does not fit step %lld (%s) of the config (%d%%)",
                  weight,
                  (long long)step, state, want);
    goto fail;
  }
  char *end = NULL;
  unsigned long long salt_v = strtoull(salt, &end, 16);
  if (strlen(salt) != 16 || *end) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: salt '%s' is not 16 hex digits", salt);
    goto fail;
  }
  if (!isfinite(elapsed) || step_requests < 0 || step_labels < 0 || disagreements < 0 || !json_is_array(samples) ||
      json_array_size(samples) > LATENCY_SAMPLES || !json_is_object(tests) || !isfinite(threshold)) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: malformed counts, latency samples or tests");
    goto fail;
  }
  if (threshold < 0 ? json_array_size(samples) >= LATENCY_SAMPLES : threshold == 0) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: latency threshold and samples disagree");
    goto fail;
  }
  sw_rollout_action pa = SW_ROLLOUT_NONE;
  if (!strcmp(pending, "rollback") && s == ST_ROLLED_BACK) pa = SW_ROLLOUT_ROLLBACK;
  else if (strcmp(pending, "none")) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: pending action '%s' in state %s", pending, state);
    goto fail;
  }
  size_t n_used = 0;
  for (int k = 0; k < M_COUNT; k++) {
    json_t *t = json_object_get(tests, metric_name[k]);
    if (!r->m[k].used) {
      if (t) {
        st = sw_error(SW_STATUS_INVALID, "saved rollout: has a %s test the config does not use", metric_name[k]);
        goto fail;
      }
      continue;
    }
    if (!t) {
      st = sw_error(SW_STATUS_INVALID, "saved rollout: lacks the %s test the config uses", metric_name[k]);
      goto fail;
    }
    n_used++;
    metric *m = &r->m[k];
    st = sw_seq_restore(json_object_get(t, "test"), &m->test);
    if (!st) st = restore_arm(t, "challenger", &m->ch_n, &m->ch_events);
    if (!st) st = restore_arm(t, "incumbent", &m->in_n, &m->in_events);
    if (st) {
      sw_error_prefix(st, "%s: ", metric_name[k]);
      goto fail;
    }
  }
  if (n_used != json_object_size(tests)) {
    st = sw_error(SW_STATUS_FORMAT, "saved rollout: unknown tests");
    goto fail;
  }
  for (size_t i = 0; i < json_array_size(samples); i++) {
    json_t *v = json_array_get(samples, i);
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
      st = sw_error(SW_STATUS_FORMAT, "saved rollout: latency_samples[%zu] is not a number", i);
      goto fail;
    }
    r->latency_samples[i] = json_number_value(v);
  }
  r->n_latency_samples = (int)json_array_size(samples);
  r->latency_threshold = threshold < 0 ? -1 : threshold;
  r->salt = salt_v;
  r->step = (size_t)step;
  r->weight = weight;
  r->state = s;
  r->step_held = held != 0;
  r->step_requests = step_requests;
  r->step_labels = step_labels;
  r->disagreements = disagreements;
  r->step_start = now_s - elapsed;
  r->last_now = now_s;
  r->pending = pa;
  snprintf(r->pending_reason, sizeof r->pending_reason, "%s", pending_reason);
  *out = r;
  return SW_STATUS_OK;
fail:
  sw_rollout_free(r);
  *out = NULL;
  return st;
}
