/* The server's side of rollouts: the router (canary by sticky hash, A/B by header,
 * shadow mirrors), the evidence it feeds the controller (latency and errors per arm,
 * labels through the feedback join), the controller thread that acts on the
 * controller's decisions (weight, rollback, promotion), the record of every decision in
 * the registry (so a restarted server resumes), the admin API and the metrics. The
 * statistics themselves are sw_rollout's (rollout.c); this file decides nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "serve/serve_int.h"
#include "slipway/registry.h"

#define TICK_S 0.1          /* the controller looks at the evidence this often */
#define SNAPSHOT_EVERY_S 2.0 /* and records it (and its state, to resume from) this often */
#define PROMOTE_RETRY_S 5.0 /* between tries to move the alias of a won rollout */
#define MAX_SNAPSHOTS 200   /* snapshot entries kept per rollout (older ones thinned) */

/* One model's rollouts, one at a time; lives as long as the server (its counters too). */
typedef struct sw__rslot {
  char *model;
  pthread_rwlock_t lock; /* guards what the router reads: r, active, epoch and the settings */
  pthread_mutex_t op;    /* one transition (tick, start, abort, promote) at a time */
  sw_rollout *r;         /* the current or last rollout's controller */
  bool active;           /* running or holding: the router splits traffic */
  uint64_t epoch;        /* changes with every rollout, so late evidence of an old one is dropped */
  int64_t id;            /* the registry's rollout id (0: none yet) */
  int64_t incumbent, challenger;
  sw_rollout_mode mode;
  char *user_header, *ab_header, *ab_value, *alias;
  double keep_previous_min;
  bool quality;
  double last_snapshot;
  bool promote_pending;     /* won, but the alias could not be moved yet: retried by the ticks */
  char promote_reason[512]; /* and why it won */
  char promote_who[16];
  double promote_tried;
  int64_t release_version; /* the incumbent a promotion left loaded, until release_at */
  double release_at;
  atomic_uint_fast64_t rollbacks, promotions; /* read by /metrics without op */
} rslot;

typedef struct shadow_req {
  struct shadow_req *next;
  struct sw__rollouts *rs;
  rslot *slot;
  uint64_t epoch;
  sw__version *ch; /* a reference, dropped by the controller thread (never the compute thread) */
  sw__job job;
  sw__version *inc; /* the incumbent's twin run of the same inputs, for the latency */
  sw__job twin;
  atomic_int remaining; /* jobs not yet done (the last one hands it to the controller) */
  bool refused;         /* the challenger's queue was full: nothing to compare */
  float *inc_out;  /* the answer the user got: the incumbent's first output, rows * per */
  int64_t per;
  char id[80];
} shadow_req;

struct sw__rollouts {
  const sw_serve_config *cfg;
  sw__manager *m;
  sw__feedback *fb;
  sw_registry *reg; /* NULL without the registry catalog */
  pthread_mutex_t reg_mu;
  pthread_mutex_t mu; /* guards slots (only ever appended) */
  rslot **slots;
  size_t n_slots;
  uint64_t next_epoch;
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv;
  bool stop;
  pthread_mutex_t done_mu;
  shadow_req *done;
  atomic_long pending;
  atomic_long mirrors_skipped; /* shadow mirrors left out because the incumbent's queue was filling */
  atomic_uint_fast64_t counter;
  uint64_t seed;
};

static const char *const mode_names[] = {"canary", "ab", "shadow"};

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static uint64_t next_key(sw__rollouts *rs) { return mix64(rs->seed ^ atomic_fetch_add(&rs->counter, 1)); }

/* Milliseconds, as the registry's own timestamps: decisions can come 100 ms apart (a
 * tick), and the dashboard draws them on a time axis against the record's created_at. */
static void now_rfc3339(char out[32]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static bool header_name_ok(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return true;
}

static rslot *find_slot(sw__rollouts *rs, const char *model) {
  rslot *found = NULL;
  pthread_mutex_lock(&rs->mu);
  for (size_t i = 0; i < rs->n_slots && !found; i++)
    if (!strcmp(rs->slots[i]->model, model)) found = rs->slots[i];
  pthread_mutex_unlock(&rs->mu);
  return found;
}

static rslot *slot_for(sw__rollouts *rs, const char *model) {
  rslot *sl = find_slot(rs, model);
  if (sl) return sl;
  sl = sw_calloc(1, sizeof *sl);
  if (!sl || !(sl->model = sw_strdup(model))) {
    sw_free(sl);
    return NULL;
  }
  pthread_rwlock_init(&sl->lock, NULL);
  pthread_mutex_init(&sl->op, NULL);
  atomic_init(&sl->rollbacks, 0);
  atomic_init(&sl->promotions, 0);
  pthread_mutex_lock(&rs->mu);
  rslot **a = sw_realloc(rs->slots, (rs->n_slots + 1) * sizeof *a);
  if (a) {
    rs->slots = a;
    a[rs->n_slots++] = sl;
  }
  pthread_mutex_unlock(&rs->mu);
  if (a) return sl;
  pthread_rwlock_destroy(&sl->lock);
  pthread_mutex_destroy(&sl->op);
  sw_free(sl->model);
  sw_free(sl);
  return NULL;
}

static void slot_free(rslot *sl) {
  if (!sl) return;
  sw_rollout_free(sl->r);
  sw_free(sl->user_header);
  sw_free(sl->ab_header);
  sw_free(sl->ab_value);
  sw_free(sl->alias);
  sw_free(sl->model);
  pthread_rwlock_destroy(&sl->lock);
  pthread_mutex_destroy(&sl->op);
  sw_free(sl);
}

/* ---- faults (tests only) -------------------------------------------------------------- */

double sw__fault_delay_ms(const sw_serve_config *cfg, const char *model, int64_t version) {
  double ms = 0;
  for (size_t i = 0; cfg && i < cfg->n_faults; i++)
    if (cfg->faults[i].version == version && !strcmp(cfg->faults[i].model, model)) ms += cfg->faults[i].delay_ms;
  return ms;
}

bool sw__fault_fails(const sw_serve_config *cfg, const char *model, int64_t version) {
  double f = 0;
  for (size_t i = 0; cfg && i < cfg->n_faults; i++)
    if (cfg->faults[i].version == version && !strcmp(cfg->faults[i].model, model)) f += cfg->faults[i].fail_fraction;
  if (f <= 0) return false;
  static _Thread_local uint64_t state;
  if (!state && getrandom(&state, sizeof state, 0) != sizeof state) state = (uint64_t)(sw_now() * 1e9);
  state = mix64(state);
  return (double)(state >> 11) * 0x1p-53 < f;
}

/* ---- settings: the effective policy of a rollout ------------------------------------- */

typedef struct {
  sw_rollout_config cfg;
  char user_header[65], ab_header[65], ab_value[257], alias[SW_MODEL_NAME_MAX + 1];
  double keep_previous_min;
} settings;

/* The record's "policy" object from a parsed policy and the server's own settings. */
static json_t *effective_policy(const sw_rollout_config *c, const settings *s) {
  json_t *steps = json_array(), *slo = json_object();
  for (size_t i = 0; i < c->n_steps; i++) json_array_append_new(steps, json_integer(c->steps[i]));
  if (c->slo_p99_ms > 0) json_object_set_new(slo, "p99_ms", json_real(c->slo_p99_ms));
  if (c->slo_error_rate >= 0) json_object_set_new(slo, "error_rate", json_real(c->slo_error_rate));
  json_t *p = json_pack("{s:o, s:I, s:f, s:f, s:o, s:s, s:f, s:s, s:b, s:b}", "steps", steps,
                        "min_requests_per_step", (json_int_t)c->min_requests_per_step, "max_step_seconds",
                        c->max_step_seconds, "alpha", c->alpha, "slo", slo, "user_header", s->user_header,
                        "keep_previous_minutes", s->keep_previous_min, "alias", s->alias, "quality", c->quality,
                        "compare_latency", c->compare_latency);
  if (p && c->mode == SW_ROLLOUT_AB)
    json_object_set_new(p, "ab", json_pack("{s:s, s:s}", "header", s->ab_header, "value", s->ab_value));
  return p;
}

/* Reads a rollout's settings from a policy object: the rollout section's keys (steps,
 * min_requests_per_step, max_step_seconds, alpha, slo, compare_latency) flat, or a whole policy file's
 * tree (metric, gate, rollout, monitor), plus the server's own keys user_header, ab,
 * keep_previous_minutes and alias. 400-worthy problems go into msg. */
static bool read_settings(const json_t *given, sw_rollout_mode mode, settings *s, char *msg, size_t cap) {
  memset(s, 0, sizeof *s);
  snprintf(s->user_header, sizeof s->user_header, "X-User-Id");
  snprintf(s->alias, sizeof s->alias, "production");
  s->keep_previous_min = 10;
  if (given && !json_is_object(given)) {
    snprintf(msg, cap, "\"policy\" is an object of rollout settings");
    return false;
  }
  json_t *rest = given ? json_deep_copy(given) : json_object();
  bool ok = rest != NULL;
  const json_t *v;
  if (ok && (v = json_object_get(rest, "user_header"))) {
    ok = json_is_string(v) && header_name_ok(json_string_value(v));
    if (ok) snprintf(s->user_header, sizeof s->user_header, "%s", json_string_value(v));
    else snprintf(msg, cap, "policy: user_header: a header name (1 to 64 of A-Z a-z 0-9 - _)");
    json_object_del(rest, "user_header");
  }
  if (ok && (v = json_object_get(rest, "alias"))) {
    ok = json_is_string(v) && sw_model_name_valid(json_string_value(v));
    if (ok) snprintf(s->alias, sizeof s->alias, "%s", json_string_value(v));
    else snprintf(msg, cap, "policy: alias: an alias name (1 to 128 of A-Z a-z 0-9 . _ -)");
    json_object_del(rest, "alias");
  }
  if (ok && (v = json_object_get(rest, "keep_previous_minutes"))) {
    ok = json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 10080;
    if (ok) s->keep_previous_min = json_number_value(v);
    else snprintf(msg, cap, "policy: keep_previous_minutes: minutes from 0 to 10080");
    json_object_del(rest, "keep_previous_minutes");
  }
  if (ok && (v = json_object_get(rest, "ab"))) {
    const json_t *h = json_object_get(v, "header"), *val = json_object_get(v, "value");
    ok = json_is_object(v) && json_object_size(v) == 2 && json_is_string(h) && header_name_ok(json_string_value(h)) &&
         json_is_string(val) && strlen(json_string_value(val)) > 0 && strlen(json_string_value(val)) < sizeof s->ab_value;
    if (ok) {
      snprintf(s->ab_header, sizeof s->ab_header, "%s", json_string_value(h));
      snprintf(s->ab_value, sizeof s->ab_value, "%s", json_string_value(val));
    } else {
      snprintf(msg, cap, "policy: ab: {\"header\": NAME, \"value\": TEXT} (a header name, a non-empty value)");
    }
    json_object_del(rest, "ab");
  }
  bool quality_given = false, quality = true;
  if (ok && (v = json_object_get(rest, "quality"))) {
    ok = json_is_boolean(v);
    quality_given = true;
    quality = json_is_true(v);
    if (!ok) snprintf(msg, cap, "policy: quality: true or false");
    json_object_del(rest, "quality");
  }
  if (ok && mode == SW_ROLLOUT_AB && !s->ab_header[0]) {
    ok = false;
    snprintf(msg, cap, "policy: ab mode needs \"ab\": {\"header\": NAME, \"value\": TEXT} (who gets the challenger)");
  }
  sw_policy *pol = NULL;
  if (ok) {
    bool whole = json_object_get(rest, "rollout") || json_object_get(rest, "metric") || json_object_get(rest, "gate") ||
                 json_object_get(rest, "monitor");
    json_t *tree = whole ? json_incref(rest) : json_pack("{s:O}", "rollout", rest);
    char *err = NULL;
    sw_status st = sw_policy_from_json(tree, &pol, &err);
    json_decref(tree);
    if (st) {
      ok = false;
      snprintf(msg, cap, "policy: %s", err ? err : sw_last_error());
    }
    sw_free(err);
  }
  if (ok && pol->rollout.n_steps > 16) {
    ok = false;
    snprintf(msg, cap, "policy: steps: at most 16 steps");
  }
  if (ok) {
    sw_rollout_config_from_policy(pol, mode, &s->cfg);
    if (quality_given) s->cfg.quality = quality;
  }
  sw_policy_free(pol);
  json_decref(rest);
  return ok;
}

/* ---- the record ----------------------------------------------------------------------- */

/* One decision, as the shared contract has it, plus "saved" (the controller's state, to
 * resume from). Caller owns. */
static json_t *decision(const rslot *sl, const char *action, const char *reason) {
  char at[32];
  now_rfc3339(at);
  json_t *ev = sl->r ? sw_rollout_evidence_json(sl->r) : NULL;
  json_t *saved = sl->r ? sw_rollout_save(sl->r) : NULL;
  json_t *d = json_pack("{s:s, s:I, s:I, s:s, s:s, s:o, s:o}", "at", at, "step", (json_int_t)(sl->r ? sw_rollout_step(sl->r) : 0),
                        "weight", (json_int_t)(sl->r ? sw_rollout_weight(sl->r) : 0), "action", action, "reason", reason,
                        "evidence", ev ? ev : json_object(), "saved", saved ? saved : json_null());
  return d;
}

/* Appends a decision with the state it leaves; under sl->op. Registry trouble is logged:
 * what the router does never waits on it. */
static void record(sw__rollouts *rs, rslot *sl, const char *action, const char *reason, const char *who) {
  if (!sl->id) return;
  json_t *d = decision(sl, action, reason);
  json_t *fields = json_pack("{s:s, s:I, s:I}", "state", sw_rollout_state(sl->r), "weight",
                             (json_int_t)sw_rollout_weight(sl->r), "step", (json_int_t)sw_rollout_step(sl->r));
  pthread_mutex_lock(&rs->reg_mu);
  sw_status st = d && fields ? sw_registry_rollout_append(rs->reg, sl->id, d, fields, MAX_SNAPSHOTS, who)
                             : sw_error(SW_STATUS_NOMEM, "out of memory");
  pthread_mutex_unlock(&rs->reg_mu);
  if (st) SW_WARN("rollout %lld of %s: recording '%s': %s", (long long)sl->id, sl->model, action, sw_last_error());
  if (strcmp(action, "snapshot"))
    SW_INFO("rollout %lld of %s: %s at step %zu (%d%%): %s", (long long)sl->id, sl->model, action, sw_rollout_step(sl->r),
            sw_rollout_weight(sl->r), reason);
  json_decref(d);
  json_decref(fields);
}

static void set_inactive(rslot *sl) {
  pthread_rwlock_wrlock(&sl->lock);
  sl->active = false;
  pthread_rwlock_unlock(&sl->lock);
}

/* Lets go of the two versions a rollout pinned (sw__manager_load at its start): the
 * challenger is unloaded, the incumbent stays as long as the catalog serves it. */
static void release_pair(sw__rollouts *rs, const char *model, int64_t incumbent, int64_t challenger) {
  if (sw__manager_release(rs->m, model, challenger) && sw_last_error()[0])
    SW_DEBUG("rollout of %s: releasing version %lld: %s", model, (long long)challenger, sw_last_error());
  if (sw__manager_release(rs->m, model, incumbent) && sw_last_error()[0])
    SW_DEBUG("rollout of %s: releasing version %lld: %s", model, (long long)incumbent, sw_last_error());
}

/* The end of a rollout the challenger lost (rollback, abort): traffic back first, then
 * the records, then the challenger unloaded. Under sl->op. */
static void finish_lost(sw__rollouts *rs, rslot *sl, const char *action, const char *reason, const char *who) {
  set_inactive(sl);
  sl->promote_pending = false;
  record(rs, sl, action, reason, who);
  if (!strcmp(action, "rollback")) {
    atomic_fetch_add(&sl->rollbacks, 1);
    pthread_mutex_lock(&rs->reg_mu);
    sw_status st = sw_registry_state_set(rs->reg, sl->model, sl->challenger, "rolled_back", "rollout", reason);
    pthread_mutex_unlock(&rs->reg_mu);
    if (st) SW_WARN("rollout of %s: marking version %lld rolled back: %s", sl->model, (long long)sl->challenger, sw_last_error());
  }
  release_pair(rs, sl->model, sl->incumbent, sl->challenger);
  sw__manager_reconcile(rs->m, false);
}

/* The challenger won: the alias moves to it (the server follows at once), the incumbent
 * stays loaded keep_previous minutes. Under sl->op. */
static void finish_won(sw__rollouts *rs, rslot *sl, const char *reason, const char *who) {
  pthread_mutex_lock(&rs->reg_mu);
  sw_status st = sw_registry_alias_set(rs->reg, sl->model, sl->alias, sl->challenger, "rollout", reason);
  pthread_mutex_unlock(&rs->reg_mu);
  if (st) {
    /* the alias did not move: the rollout stays on (the router keeps the challenger's
     * weight) and the ticks try again, rather than a record saying "promoted" while
     * the alias still names the incumbent */
    char why[768];
    snprintf(why, sizeof why, "promotion pending: moving %s to version %lld failed (%s); retrying", sl->alias,
             (long long)sl->challenger, sw_last_error());
    SW_LOGERR("rollout of %s: %s", sl->model, why);
    if (!sl->promote_pending) record(rs, sl, "hold", why, who);
    if (reason != sl->promote_reason) snprintf(sl->promote_reason, sizeof sl->promote_reason, "%s", reason);
    snprintf(sl->promote_who, sizeof sl->promote_who, "%s", who);
    sl->promote_pending = true;
    sl->promote_tried = sw_now();
    return;
  }
  sl->promote_pending = false;
  record(rs, sl, "promote", reason, who);
  /* follow the alias now, so requests that name no version keep getting the challenger
   * when the router lets go of them below */
  sw__manager_reconcile(rs->m, false);
  /* the catalog serves it now: no longer pinned, so a later alias move is followed */
  sw__model *md = sw__manager_find(rs->m, sl->model);
  bool followed = false;
  if (md) {
    pthread_mutex_lock(&md->mu);
    followed = md->policy_version == sl->challenger;
    pthread_mutex_unlock(&md->mu);
  }
  if (followed) sw__manager_release(rs->m, sl->model, sl->challenger);
  atomic_fetch_add(&sl->promotions, 1);
  sl->release_version = sl->incumbent;
  sl->release_at = sw_now() + sl->keep_previous_min * 60;
  set_inactive(sl);
}

/* ---- the controller thread -------------------------------------------------------------- */

static bool outputs_differ(const float *a, const float *b, int64_t rows, int64_t per) {
  for (int64_t r = 0; r < rows; r++) {
    const float *x = a + r * per, *y = b + r * per;
    if (per > 1) {
      int64_t ia = 0, ib = 0;
      for (int64_t i = 1; i < per; i++) {
        if (x[i] > x[ia]) ia = i;
        if (y[i] > y[ib]) ib = i;
      }
      if (ia != ib) return true;
    } else if (fabsf(x[0] - y[0]) > 1e-4f * fmaxf(1.0f, fabsf(y[0]))) {
      return true;
    }
  }
  return false;
}

static void shadow_settle(sw__rollouts *rs, shadow_req *q) {
  rslot *sl = q->slot;
  int64_t rows = q->job.inputs.rows;
  const sw__version *ch = q->ch, *inc = q->inc;
  if (q->refused) return;
  /* both timed on the same path (queued on their compute threads, beside each other): the
   * user's own answer ran another way (inline, usually) and would not compare fairly */
  double ch_ms = (q->job.t_end - q->job.t_start) * 1e3 + sw__fault_delay_ms(rs->cfg, ch->model, ch->version);
  double inc_ms = (q->twin.t_end - q->twin.t_start) * 1e3 + sw__fault_delay_ms(rs->cfg, inc->model, inc->version);
  bool ch_err = q->job.status != SW_STATUS_OK || sw__fault_fails(rs->cfg, ch->model, ch->version);
  bool inc_err = q->twin.status != SW_STATUS_OK || sw__fault_fails(rs->cfg, inc->model, inc->version);
  bool comparable = !ch_err && q->inc_out && ch->sig.out[0].dtype == SW_DTYPE_F32 && ch->sig.out[0].per == q->per;
  bool differ = comparable && outputs_differ(q->inc_out, q->job.out[0], rows, q->per);
  pthread_rwlock_rdlock(&sl->lock);
  if (sl->active && sl->epoch == q->epoch && sl->r) sw_rollout_observe_shadow(sl->r, inc_ms, inc_err, ch_ms, ch_err, differ);
  pthread_rwlock_unlock(&sl->lock);
  if (comparable && q->per > 1 && rows <= 4096) {
    double pred[4096];
    const float *x = q->job.out[0];
    for (int64_t r = 0; r < rows; r++) {
      int64_t best = 0;
      for (int64_t i = 1; i < q->per; i++)
        if (x[r * q->per + i] > x[r * q->per + best]) best = i;
      pred[r] = (double)best;
    }
    sw__feedback_attach_shadow(rs->fb, q->id, pred, rows);
  }
}

static void shadow_free(shadow_req *q) {
  sw__job_clear(&q->job, q->ch);
  sw__job_clear(&q->twin, q->inc);
  sw__version_unref(q->ch);
  sw__version_unref(q->inc);
  sw_free(q->inc_out);
  sw_free(q);
}

static void drain_shadows(sw__rollouts *rs, bool settle) {
  pthread_mutex_lock(&rs->done_mu);
  shadow_req *q = rs->done;
  rs->done = NULL;
  pthread_mutex_unlock(&rs->done_mu);
  while (q) {
    shadow_req *next = q->next;
    if (settle) shadow_settle(rs, q);
    shadow_free(q);
    atomic_fetch_sub(&rs->pending, 1);
    q = next;
  }
}

static void tick_slot(sw__rollouts *rs, rslot *sl, double now) {
  pthread_mutex_lock(&sl->op);
  if (sl->release_version && now >= sl->release_at) {
    SW_INFO("rollout of %s: the previous version %lld has been kept %.0f min: releasing it", sl->model,
            (long long)sl->release_version, sl->keep_previous_min);
    sw__manager_release(rs->m, sl->model, sl->release_version);
    sl->release_version = 0;
  }
  if (!sl->active || !sl->r) {
    pthread_mutex_unlock(&sl->op);
    return;
  }
  if (sl->promote_pending) {
    if (now - sl->promote_tried >= PROMOTE_RETRY_S) finish_won(rs, sl, sl->promote_reason, sl->promote_who);
    pthread_mutex_unlock(&sl->op);
    return;
  }
  char reason[512] = "";
  sw_rollout_action a = sw_rollout_tick(sl->r, now, reason, sizeof reason);
  switch (a) {
    case SW_ROLLOUT_ADVANCE: record(rs, sl, "advance", reason, "rollout"); break;
    case SW_ROLLOUT_HOLD: record(rs, sl, "hold", reason, "rollout"); break;
    case SW_ROLLOUT_ROLLBACK: finish_lost(rs, sl, "rollback", reason, "rollout"); break;
    case SW_ROLLOUT_PROMOTE: finish_won(rs, sl, reason, "rollout"); break;
    default:
      if (now - sl->last_snapshot >= SNAPSHOT_EVERY_S) {
        record(rs, sl, "snapshot", "periodic evidence", "rollout");
        sl->last_snapshot = now;
      }
      break;
  }
  if (a != SW_ROLLOUT_NONE) sl->last_snapshot = now;
  pthread_mutex_unlock(&sl->op);
}

static void *controller_main(void *arg) {
  sw__rollouts *rs = arg;
  pthread_mutex_lock(&rs->stop_mu);
  while (!rs->stop) {
    pthread_mutex_unlock(&rs->stop_mu);
    drain_shadows(rs, true);
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->n_slots;
    pthread_mutex_unlock(&rs->mu);
    double now = sw_now();
    for (size_t i = 0; i < n; i++) {
      pthread_mutex_lock(&rs->mu);
      rslot *sl = rs->slots[i];
      pthread_mutex_unlock(&rs->mu);
      tick_slot(rs, sl, now);
    }
    pthread_mutex_lock(&rs->stop_mu);
    if (rs->stop) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(TICK_S * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&rs->stop_cv, &rs->stop_mu, &ts);
  }
  pthread_mutex_unlock(&rs->stop_mu);
  return NULL;
}

/* ---- routing and evidence ---------------------------------------------------------------- */

static bool header_is(const char *v, const char *want) { return v && !strcmp(v, want); }

bool sw__rollouts_route(sw__rollouts *rs, const char *model, const char *label,
                        const char *(*header)(void *ctx, const char *name), void *ctx, int64_t *version, sw__route *rt) {
  memset(rt, 0, sizeof *rt);
  if (!rs) return false;
  rslot *sl = find_slot(rs, model);
  if (!sl) return false;
  bool routed = false;
  pthread_rwlock_rdlock(&sl->lock);
  if (sl->active && sl->r && (!label || !strcmp(label, sl->alias))) {
    routed = true;
    int w = sw_rollout_weight(sl->r);
    bool ch = false;
    if (sl->mode == SW_ROLLOUT_SHADOW) {
      *version = sl->incumbent;
      if (w > 0 && sw_rollout_route(sl->r, NULL, 0, next_key(rs))) {
        rt->slot = sl;
        rt->mirror = true;
        rt->arm = (sw__arm){.epoch = sl->epoch, .arm = SW__ARM_SHADOW, .weight = w};
      }
    } else if (sl->mode == SW_ROLLOUT_AB && !header_is(header(ctx, sl->ab_header), sl->ab_value)) {
      /* outside the experiment: the incumbent, and no evidence (another population) */
      *version = sl->incumbent;
    } else {
      /* canary, and A/B within the population the header selects: by the step's weight,
       * sticky per user, so each request's chance of the challenger is the weight the
       * statistics assume */
      const char *user = header(ctx, sl->user_header);
      ch = sw_rollout_route(sl->r, user, user ? strlen(user) : 0, next_key(rs));
      *version = ch ? sl->challenger : sl->incumbent;
      rt->slot = sl;
      rt->arm = (sw__arm){.epoch = sl->epoch, .arm = ch ? SW__ARM_CHALLENGER : SW__ARM_INCUMBENT, .weight = w};
    }
  }
  pthread_rwlock_unlock(&sl->lock);
  return routed;
}

void sw__rollouts_observe(sw__rollouts *rs, const sw__route *rt, double latency_ms, bool error) {
  (void)rs;
  rslot *sl = rt->slot;
  if (!sl || rt->arm.arm == SW__ARM_SHADOW) return;
  pthread_rwlock_rdlock(&sl->lock);
  if (sl->active && sl->epoch == rt->arm.epoch && sl->r)
    sw_rollout_observe_request(sl->r, rt->arm.arm == SW__ARM_CHALLENGER, latency_ms, error);
  pthread_rwlock_unlock(&sl->lock);
}

static void on_label(void *ctx, const char *model, const sw__arm *arm, bool correct, int shadow) {
  sw__rollouts *rs = ctx;
  rslot *sl = find_slot(rs, model);
  if (!sl) return;
  pthread_rwlock_rdlock(&sl->lock);
  if (sl->active && sl->epoch == arm->epoch && sl->r && sl->quality) {
    if (arm->arm == SW__ARM_SHADOW) sw_rollout_observe_shadow_label(sl->r, correct, shadow == 1);
    else sw_rollout_observe_label(sl->r, arm->arm == SW__ARM_CHALLENGER, correct, arm->weight);
  }
  pthread_rwlock_unlock(&sl->lock);
}

static void shadow_job_done(void *arg) {
  shadow_req *q = arg;
  sw__rollouts *rs = q->rs;
  if (atomic_fetch_sub(&q->remaining, 1) != 1) return;
  pthread_mutex_lock(&rs->done_mu);
  q->next = rs->done;
  rs->done = q;
  pthread_mutex_unlock(&rs->done_mu);
}

void sw__rollouts_mirror(sw__rollouts *rs, const sw__route *rt, const sw__version *inc, const sw__job *job,
                         const char *request_id) {
  rslot *sl = rt->slot;
  if (!rs || !sl || !rt->mirror) return;
  pthread_rwlock_rdlock(&sl->lock);
  bool live = sl->active && sl->epoch == rt->arm.epoch;
  int64_t ch_version = sl->challenger;
  pthread_rwlock_unlock(&sl->lock);
  sw__version *ch = NULL, *twin = NULL;
  if (!live || sw__manager_acquire(rs->m, sl->model, ch_version, NULL, &ch)) return;
  if (sw__manager_acquire(rs->m, sl->model, inc->version, NULL, &twin)) {
    sw__version_unref(ch);
    return;
  }
  /* the twin shares the incumbent's queue with its users: when that queue is filling,
   * the mirror is left out (shadow evidence is a sample; users' answers come first) */
  pthread_mutex_lock(&twin->mu);
  bool busy = twin->queued > twin->max_queue / 4;
  pthread_mutex_unlock(&twin->mu);
  if (busy) {
    atomic_fetch_add(&rs->mirrors_skipped, 1);
    sw__version_unref(ch);
    sw__version_unref(twin);
    return;
  }
  bool same = ch->sig.n_in == inc->sig.n_in;
  for (size_t k = 0; same && k < inc->sig.n_in; k++)
    same = ch->sig.in[k].dtype == inc->sig.in[k].dtype && ch->sig.in[k].per == inc->sig.in[k].per;
  shadow_req *q = same ? sw_calloc(1, sizeof *q) : NULL;
  if (!q) {
    sw__version_unref(ch);
    sw__version_unref(twin);
    return;
  }
  q->slot = sl;
  q->epoch = rt->arm.epoch;
  q->ch = ch;
  q->inc = twin;
  snprintf(q->id, sizeof q->id, "%s", request_id);
  int64_t rows = job->inputs.rows;
  q->job.inputs.rows = q->twin.inputs.rows = rows;
  bool ok = true;
  for (size_t k = 0; ok && k < inc->sig.n_in; k++) {
    size_t bytes = (size_t)(rows * inc->sig.in[k].per) * sw_dtype_size(inc->sig.in[k].dtype);
    q->job.inputs.in[k] = sw_malloc(bytes ? bytes : 1);
    q->twin.inputs.in[k] = sw_malloc(bytes ? bytes : 1);
    ok = q->job.inputs.in[k] && q->twin.inputs.in[k];
    if (ok) memcpy(q->job.inputs.in[k], job->inputs.in[k], bytes);
    if (ok) memcpy(q->twin.inputs.in[k], job->inputs.in[k], bytes);
  }
  for (size_t k = 0; k < SW_SERVE_MAX_IO; k++) q->job.inputs.want_out[k] = q->twin.inputs.want_out[k] = true;
  if (ok && inc->sig.out[0].dtype == SW_DTYPE_F32) {
    q->per = inc->sig.out[0].per;
    size_t bytes = (size_t)(rows * q->per) * sizeof(float);
    q->inc_out = sw_malloc(bytes ? bytes : 1);
    ok = q->inc_out != NULL;
    if (ok) memcpy(q->inc_out, job->out[0], bytes);
  }
  q->job.notify = q->twin.notify = shadow_job_done;
  q->job.arg = q->twin.arg = q;
  q->rs = rs;
  atomic_init(&q->remaining, 2);
  /* full queues shed mirrors: the users never wait on them */
  if (!ok || sw__version_submit(twin, &q->twin)) {
    shadow_free(q);
    return;
  }
  atomic_fetch_add(&rs->pending, 1);
  if (sw__version_submit(ch, &q->job)) {
    q->refused = true;
    shadow_job_done(q); /* the twin's completion hands it over */
  }
}

/* ---- admin ------------------------------------------------------------------------------ */

static int answer_error(json_t **answer, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int answer_error(json_t **answer, int code, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  *answer = json_pack("{s:s}", "error", msg);
  return code;
}

/* 500 for a failure of the server's own (the registry): the detail, which may name
 * paths, goes to the log, as the server's other answers keep it. */
static int answer_internal(json_t **answer, const char *what) {
  SW_LOGERR("rollouts: %s: %s", what, sw_last_error());
  return answer_error(answer, 500, "%s failed (see the server's log)", what);
}

/* The record of a rollout with the live state of its controller when it is the slot's. */
static int answer_record(sw__rollouts *rs, rslot *sl, int64_t id, int code, json_t **answer) {
  json_t *rec = NULL;
  pthread_mutex_lock(&rs->reg_mu);
  sw_status st = sw_registry_rollout_get(rs->reg, id, &rec);
  pthread_mutex_unlock(&rs->reg_mu);
  if (st) return answer_internal(answer, "reading the rollout from the registry");
  if (sl) pthread_rwlock_rdlock(&sl->lock);
  if (sl && sl->id == id && sl->r) {
    json_t *ev = sw_rollout_evidence_json(sl->r);
    json_object_set_new(rec, "live", json_pack("{s:s, s:I, s:I, s:b, s:o}", "state", sw_rollout_state(sl->r), "weight",
                                               (json_int_t)sw_rollout_weight(sl->r), "step", (json_int_t)sw_rollout_step(sl->r),
                                               "routing", sl->active, "evidence", ev ? ev : json_object()));
  }
  if (sl) pthread_rwlock_unlock(&sl->lock);
  *answer = rec;
  return code;
}

/* Puts a started or resumed rollout into its model's slot, where the router reads it
 * (the slot takes r); false when the settings could not be copied (the slot then stays
 * inactive). */
static bool install(sw__rollouts *rs, rslot *sl, sw_rollout *r, int64_t id, int64_t incumbent, int64_t challenger,
                    sw_rollout_mode mode, const settings *s) {
  pthread_rwlock_wrlock(&sl->lock);
  sw_rollout_free(sl->r);
  sl->r = r;
  sl->id = id;
  sl->incumbent = incumbent;
  sl->challenger = challenger;
  sl->mode = mode;
  sw_free(sl->user_header);
  sw_free(sl->ab_header);
  sw_free(sl->ab_value);
  sw_free(sl->alias);
  sl->user_header = sw_strdup(s->user_header);
  sl->ab_header = sw_strdup(s->ab_header);
  sl->ab_value = sw_strdup(s->ab_value);
  sl->alias = sw_strdup(s->alias);
  sl->keep_previous_min = s->keep_previous_min;
  sl->quality = s->cfg.quality;
  sl->promote_pending = false;
  pthread_mutex_lock(&rs->mu);
  sl->epoch = ++rs->next_epoch;
  pthread_mutex_unlock(&rs->mu);
  bool ok = sl->user_header && sl->ab_header && sl->ab_value && sl->alias;
  sl->active = ok;
  pthread_rwlock_unlock(&sl->lock);
  return ok;
}

static int admin_start(sw__rollouts *rs, const char *body, size_t len, json_t **answer) {
  json_error_t jerr;
  json_t *j = json_loadb(body, len, 0, &jerr);
  if (!json_is_object(j)) {
    json_decref(j);
    return answer_error(answer, 400, "the body is a JSON object {\"model\", \"challenger\", \"mode\", \"policy\"}%s%s",
                        j ? "" : ": ", j ? "" : jerr.text);
  }
  int code = 0;
  const char *model = json_string_value(json_object_get(j, "model"));
  const json_t *chv = json_object_get(j, "challenger");
  const char *mode_name = json_string_value(json_object_get(j, "mode"));
  int64_t challenger = 0;
  if (json_is_integer(chv)) {
    challenger = json_integer_value(chv);
  } else if (json_is_string(chv)) {
    const char *t = json_string_value(chv);
    size_t n = strlen(t);
    bool digits = n > 0 && n <= 15;
    for (size_t i = 0; digits && i < n; i++) digits = t[i] >= '0' && t[i] <= '9';
    challenger = digits ? strtoll(t, NULL, 10) : 0;
  }
  sw_rollout_mode mode = SW_ROLLOUT_CANARY;
  if (mode_name && !strcmp(mode_name, "ab")) mode = SW_ROLLOUT_AB;
  else if (mode_name && !strcmp(mode_name, "shadow")) mode = SW_ROLLOUT_SHADOW;
  else if (mode_name && strcmp(mode_name, "canary")) mode_name = NULL;
  if (!json_object_get(j, "mode")) mode_name = "canary";
  settings s;
  char msg[600] = "";
  rslot *sl = NULL;
  if (!model || !sw_serve_name_valid(model, strlen(model))) {
    code = answer_error(answer, 400, "\"model\" is a model name");
    goto out;
  }
  if (challenger <= 0) {
    code = answer_error(answer, 400, "\"challenger\" is a version number (a positive integer)");
    goto out;
  }
  if (!mode_name) {
    code = answer_error(answer, 400, "\"mode\" is canary, ab or shadow");
    goto out;
  }
  if (!read_settings(json_object_get(j, "policy"), mode, &s, msg, sizeof msg)) {
    code = answer_error(answer, 400, "%s", msg);
    goto out;
  }
  if (json_is_string(json_object_get(j, "alias"))) {
    const char *a = json_string_value(json_object_get(j, "alias"));
    if (!sw_model_name_valid(a)) {
      code = answer_error(answer, 400, "\"alias\" is an alias name");
      goto out;
    }
    snprintf(s.alias, sizeof s.alias, "%s", a);
  }
  if (!rs->reg) {
    code = answer_error(answer, 409,
                        "rollouts need the registry as the catalog (this server serves --model-file files): the "
                        "rollout's record, the challenger's state and the alias move live in the registry");
    goto out;
  }
  if (!sw__manager_find(rs->m, model)) {
    code = answer_error(answer, 404, "model '%s' is not served here", model);
    goto out;
  }
  /* the registry's view: the alias (the incumbent) and the challenger */
  int64_t incumbent = 0;
  char ref[SW_MODEL_NAME_MAX + 32];
  snprintf(ref, sizeof ref, "%s:%lld", model, (long long)challenger);
  json_t *ver = NULL;
  pthread_mutex_lock(&rs->reg_mu);
  sw_status st = sw_registry_alias_get(rs->reg, model, s.alias, &incumbent);
  sw_status st2 = st ? SW_STATUS_OK : sw_registry_get_version(rs->reg, ref, &ver);
  pthread_mutex_unlock(&rs->reg_mu);
  const char *ver_state = json_string_value(json_object_get(ver, "state"));
  bool rejected = ver_state && !strcmp(ver_state, "rejected");
  json_decref(ver);
  if (st) {
    code = answer_internal(answer, "reading the registry");
    goto out;
  }
  if (st2 == SW_STATUS_NOT_FOUND) {
    code = answer_error(answer, 404, "the registry has no version %lld of model '%s'", (long long)challenger, model);
    goto out;
  }
  if (st2) {
    code = answer_internal(answer, "reading the registry");
    goto out;
  }
  if (!incumbent) {
    code = answer_error(answer, 409,
                        "model '%s' has no alias '%s': a rollout moves that alias from the version it points at to "
                        "the challenger (set it with slipway registry alias)",
                        model, s.alias);
    goto out;
  }
  if (incumbent == challenger) {
    code = answer_error(answer, 409, "version %lld is what %s@%s points at already", (long long)challenger, model, s.alias);
    goto out;
  }
  if (rejected) {
    code = answer_error(answer, 409, "version %lld of model '%s' was rejected by a promotion gate", (long long)challenger, model);
    /* for clients: refused by a policy (the CLI exits 3), not a conflict to retry */
    if (*answer) json_object_set_new(*answer, "refused", json_true());
    goto out;
  }
  sl = slot_for(rs, model);
  if (!sl) {
    code = answer_error(answer, 503, "out of memory");
    goto out;
  }
  pthread_mutex_lock(&sl->op);
  if (sl->active) {
    code = answer_error(answer, 409, "rollout %lld of model '%s' (version %lld against %lld) is %s: abort or promote it first",
                        (long long)sl->id, model, (long long)sl->challenger, (long long)sl->incumbent,
                        sw_rollout_state(sl->r));
    goto unlock;
  }
  /* both versions loaded (the catalog may not have seen a new registration yet) */
  sw__manager_reconcile(rs->m, false);
  st = sw__manager_load(rs->m, model, incumbent);
  if (!st) st = sw__manager_load(rs->m, model, challenger);
  if (st) {
    code = answer_error(answer, st == SW_STATUS_NOT_FOUND ? 404 : 500, "%s", sw_last_error());
    release_pair(rs, model, incumbent, challenger);
    goto unlock;
  }
  if (sl->release_version == incumbent || sl->release_version == challenger) sl->release_version = 0;
  sw__version *iv = NULL, *cv = NULL;
  sw__manager_acquire(rs->m, model, incumbent, NULL, &iv);
  sw__manager_acquire(rs->m, model, challenger, NULL, &cv);
  bool classifier = iv && cv && iv->sig.out[0].per > 1 && cv->sig.out[0].per == iv->sig.out[0].per;
  bool same_inputs = iv && cv && iv->sig.n_in == cv->sig.n_in;
  for (size_t k = 0; same_inputs && k < iv->sig.n_in; k++)
    same_inputs = iv->sig.in[k].dtype == cv->sig.in[k].dtype && iv->sig.in[k].per == cv->sig.in[k].per;
  sw__version_unref(iv);
  sw__version_unref(cv);
  if (mode == SW_ROLLOUT_SHADOW && !same_inputs) {
    release_pair(rs, model, incumbent, challenger);
    code = answer_error(answer, 400, "shadow mode runs the incumbent's inputs on the challenger: their inputs differ");
    goto unlock;
  }
  s.cfg.quality = s.cfg.quality && classifier;
  sw_rollout *r = NULL;
  double now = sw_now();
  st = sw_rollout_new(&s.cfg, now, &r);
  if (st) {
    release_pair(rs, model, incumbent, challenger);
    code = answer_error(answer, 400, "%s", sw_last_error());
    goto unlock;
  }
  json_t *policy = effective_policy(&s.cfg, &s);
  json_t *spec = json_pack("{s:s, s:I, s:I, s:s, s:s, s:I, s:I, s:O, s:[]}", "model", model, "incumbent", (json_int_t)incumbent,
                           "challenger", (json_int_t)challenger, "mode", mode_names[mode], "state", "running", "weight",
                           (json_int_t)sw_rollout_weight(r), "step", (json_int_t)0, "policy", policy, "decisions");
  int64_t id = 0;
  pthread_mutex_lock(&rs->reg_mu);
  st = spec ? sw_registry_rollout_create(rs->reg, spec, "admin", &id) : sw_error(SW_STATUS_NOMEM, "out of memory");
  pthread_mutex_unlock(&rs->reg_mu);
  json_decref(spec);
  json_decref(policy);
  if (st) {
    sw_rollout_free(r);
    release_pair(rs, model, incumbent, challenger);
    code = answer_internal(answer, "recording the rollout in the registry");
    goto unlock;
  }
  bool ok = install(rs, sl, r, id, incumbent, challenger, mode, &s);
  char reason[512];
  if (ok) {
    char steps[128] = "";
    for (size_t i = 0; i < s.cfg.n_steps; i++)
      snprintf(steps + strlen(steps), sizeof steps - strlen(steps), "%s%d", i ? "," : "", s.cfg.steps[i]);
    /* the tests in use, as the controller makes them (alpha is split over these) */
    char judged[160];
    snprintf(judged, sizeof judged, "errors%s%s%s%s", s.cfg.compare_latency ? ", latency" : "",
             s.cfg.quality ? ", quality" : "", s.cfg.slo_p99_ms > 0 ? ", the p99 objective" : "",
             s.cfg.slo_error_rate >= 0 ? ", the error-rate objective" : "");
    snprintf(reason, sizeof reason, "%s of version %lld against version %lld (%s@%s), steps %s%%, judging %s%s",
             mode_names[mode], (long long)challenger, (long long)incumbent, model, s.alias, steps, judged,
             s.cfg.compare_latency ? "" : " (latency not compared with the incumbent's)");
  } else {
    snprintf(reason, sizeof reason, "out of memory at start");
    sw_rollout_abort(r, now);
  }
  sl->last_snapshot = now;
  record(rs, sl, ok ? "start" : "abort", reason, "admin");
  if (!ok) {
    release_pair(rs, model, incumbent, challenger);
    code = answer_error(answer, 503, "out of memory");
    goto unlock;
  }
  code = answer_record(rs, sl, id, 201, answer);
unlock:
  pthread_mutex_unlock(&sl->op);
out:
  json_decref(j);
  return code;
}

/* The newest rollout of a model in the registry (0: none). */
static sw_status latest_id(sw__rollouts *rs, const char *model, int64_t *id) {
  json_t *list = NULL;
  *id = 0;
  pthread_mutex_lock(&rs->reg_mu);
  sw_status st = sw_registry_rollout_list(rs->reg, model, &list);
  pthread_mutex_unlock(&rs->reg_mu);
  if (!st && json_array_size(list)) *id = json_integer_value(json_object_get(json_array_get(list, 0), "id"));
  json_decref(list);
  return st;
}

static int admin_by_hand(sw__rollouts *rs, const char *model, bool promote, json_t **answer) {
  rslot *sl = find_slot(rs, model);
  if (!sl) return answer_error(answer, 409, "model '%s' has no rollout running here", model);
  pthread_mutex_lock(&sl->op);
  int code;
  if (!sl->active || !sl->r) {
    code = answer_error(answer, 409, "model '%s' has no rollout running (the last, %lld, is %s)", model, (long long)sl->id,
                        sl->r ? sw_rollout_state(sl->r) : "unknown");
    goto out;
  }
  double now = sw_now();
  char reason[256];
  if (promote) {
    sw_rollout_promote_now(sl->r, now);
    snprintf(reason, sizeof reason, "promoted by hand (admin API) at step %zu", sw_rollout_step(sl->r));
    finish_won(rs, sl, reason, "admin");
  } else {
    sw_rollout_abort(sl->r, now);
    snprintf(reason, sizeof reason, "aborted by hand (admin API) at step %zu", sw_rollout_step(sl->r));
    finish_lost(rs, sl, "abort", reason, "admin");
  }
  code = answer_record(rs, sl, sl->id, 200, answer);
out:
  pthread_mutex_unlock(&sl->op);
  return code;
}

int sw__rollouts_admin(sw__rollouts *rs, const char *method, const char *model, const char *action, const char *body,
                       size_t len, json_t **answer) {
  *answer = NULL;
  bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
  if (!model[0]) {
    if (!post) return answer_error(answer, 405, "use POST");
    return admin_start(rs, body, len, answer);
  }
  if (!action[0] && !get) return answer_error(answer, 405, "use GET");
  if (action[0] && !post) return answer_error(answer, 405, "use POST");
  if (!rs->reg)
    return answer_error(answer, 409, "rollouts need the registry as the catalog (this server serves --model-file files)");
  if (action[0]) return admin_by_hand(rs, model, !strcmp(action, "promote"), answer);
  int64_t id = 0;
  if (latest_id(rs, model, &id)) return answer_internal(answer, "reading the registry");
  if (!id) return answer_error(answer, 404, "model '%s' has had no rollout", model);
  return answer_record(rs, find_slot(rs, model), id, 200, answer);
}

/* ---- metrics ------------------------------------------------------------------------------ */

void sw__rollouts_render(sw__rollouts *rs, sw_buf *out) {
  if (!rs) return;
  pthread_mutex_lock(&rs->mu);
  size_t n = rs->n_slots;
  pthread_mutex_unlock(&rs->mu);
  static const char *const heads[] = {
      "# HELP slipway_rollout_weight The challenger's share of traffic in percent (shadow: the share mirrored).\n"
      "# TYPE slipway_rollout_weight gauge\n",
      "# HELP slipway_rollout_step The rollout's step (an index into its steps).\n# TYPE slipway_rollout_step gauge\n",
      "# HELP slipway_rollout_evidence The e-value of each test of the rollout (rollback at 1/alpha).\n"
      "# TYPE slipway_rollout_evidence gauge\n",
      "# HELP slipway_rollbacks_total Rollouts rolled back automatically.\n# TYPE slipway_rollbacks_total counter\n",
      "# HELP slipway_rollout_promotions_total Rollouts that promoted their challenger.\n"
      "# TYPE slipway_rollout_promotions_total counter\n"};
  for (int h = 0; h < 5; h++) {
    sw_buf_printf(out, "%s", heads[h]);
    for (size_t i = 0; i < n; i++) {
      pthread_mutex_lock(&rs->mu);
      rslot *sl = rs->slots[i];
      pthread_mutex_unlock(&rs->mu);
      pthread_rwlock_rdlock(&sl->lock);
      if (h == 3) {
        sw_buf_printf(out, "slipway_rollbacks_total{model=\"%s\"} %llu\n", sl->model, (unsigned long long)atomic_load(&sl->rollbacks));
      } else if (h == 4) {
        sw_buf_printf(out, "slipway_rollout_promotions_total{model=\"%s\"} %llu\n", sl->model, (unsigned long long)atomic_load(&sl->promotions));
      } else if (sl->r && h == 0) {
        sw_buf_printf(out, "slipway_rollout_weight{model=\"%s\",challenger=\"%lld\"} %d\n", sl->model, (long long)sl->challenger,
                      sw_rollout_weight(sl->r));
      } else if (sl->r && h == 1) {
        sw_buf_printf(out, "slipway_rollout_step{model=\"%s\",challenger=\"%lld\"} %zu\n", sl->model, (long long)sl->challenger,
                      sw_rollout_step(sl->r));
      } else if (sl->r && h == 2) {
        json_t *ev = sw_rollout_evidence_json(sl->r);
        const char *metric;
        json_t *e;
        json_object_foreach(ev, metric, e) {
          double x = json_number_value(json_object_get(e, "e_value"));
          if (isfinite(x))
            sw_buf_printf(out, "slipway_rollout_evidence{model=\"%s\",challenger=\"%lld\",metric=\"%s\"} %.9g\n", sl->model,
                          (long long)sl->challenger, metric, x);
        }
        json_decref(ev);
      }
      pthread_rwlock_unlock(&sl->lock);
    }
  }
  sw_buf_printf(out,
                "# HELP slipway_shadow_mirrors_skipped_total Shadow mirrors left out because the incumbent's queue "
                "was filling.\n# TYPE slipway_shadow_mirrors_skipped_total counter\n"
                "slipway_shadow_mirrors_skipped_total %ld\n",
                (long)atomic_load(&rs->mirrors_skipped));
}

/* ---- life cycle ---------------------------------------------------------------------------- */

sw_status sw__rollouts_new(const sw_serve_config *cfg, sw__manager *m, sw__feedback *fb, sw__rollouts **out) {
  *out = NULL;
  sw__rollouts *rs = sw_calloc(1, sizeof *rs);
  if (!rs) return sw_error(SW_STATUS_NOMEM, "out of memory");
  rs->cfg = cfg;
  rs->m = m;
  rs->fb = fb;
  pthread_mutex_init(&rs->reg_mu, NULL);
  pthread_mutex_init(&rs->mu, NULL);
  pthread_mutex_init(&rs->stop_mu, NULL);
  pthread_cond_init(&rs->stop_cv, NULL);
  pthread_mutex_init(&rs->done_mu, NULL);
  atomic_init(&rs->pending, 0);
  atomic_init(&rs->mirrors_skipped, 0);
  atomic_init(&rs->counter, 0);
  if (getrandom(&rs->seed, sizeof rs->seed, 0) != sizeof rs->seed) rs->seed = (uint64_t)(sw_now() * 1e9);
  if (cfg->from_registry) {
    sw_status st = sw_registry_open(cfg->registry_url, cfg->registry_home, &rs->reg);
    if (st) {
      sw__rollouts_free(rs);
      return st;
    }
  }
  if (fb) sw__feedback_set_hook(fb, on_label, rs);
  *out = rs;
  return SW_STATUS_OK;
}

/* Resumes one record found running: its settings from its policy, its controller from the
 * newest saved state among its decisions. */
static void resume(sw__rollouts *rs, const json_t *rec) {
  const char *model = json_string_value(json_object_get(rec, "model"));
  int64_t id = json_integer_value(json_object_get(rec, "id"));
  int64_t incumbent = json_integer_value(json_object_get(rec, "incumbent"));
  int64_t challenger = json_integer_value(json_object_get(rec, "challenger"));
  const char *mode_name = json_string_value(json_object_get(rec, "mode"));
  sw_rollout_mode mode = SW_ROLLOUT_CANARY;
  if (mode_name && !strcmp(mode_name, "ab")) mode = SW_ROLLOUT_AB;
  else if (mode_name && !strcmp(mode_name, "shadow")) mode = SW_ROLLOUT_SHADOW;
  if (!model || !sw__manager_find(rs->m, model)) {
    SW_INFO("rollout %lld of %s: the model is not served here; left as it is", (long long)id, model ? model : "?");
    return;
  }
  settings s;
  char msg[600];
  if (!read_settings(json_object_get(rec, "policy"), mode, &s, msg, sizeof msg)) {
    SW_LOGERR("rollout %lld of %s: cannot resume: its recorded %s", (long long)id, model, msg);
    return;
  }
  const json_t *ds = json_object_get(rec, "decisions"), *saved = NULL, *from = NULL;
  for (size_t i = json_array_size(ds); i-- > 0 && !saved;) {
    const json_t *d = json_array_get(ds, i);
    if (json_is_object(json_object_get(d, "saved"))) {
      saved = json_object_get(d, "saved");
      from = d;
    }
  }
  if (!saved) {
    SW_LOGERR("rollout %lld of %s: cannot resume: no saved state among its decisions", (long long)id, model);
    return;
  }
  rslot *sl = slot_for(rs, model);
  if (!sl) return;
  pthread_mutex_lock(&sl->op);
  sw_rollout *r = NULL;
  sw_status st = sw__manager_load(rs->m, model, incumbent);
  if (!st) st = sw__manager_load(rs->m, model, challenger);
  if (!st) st = sw_rollout_restore(&s.cfg, saved, sw_now(), &r);
  if (st) {
    SW_LOGERR("rollout %lld of %s: cannot resume: %s", (long long)id, model, sw_last_error());
    release_pair(rs, model, incumbent, challenger);
    pthread_mutex_unlock(&sl->op);
    return;
  }
  install(rs, sl, r, id, incumbent, challenger, mode, &s);
  char reason[256];
  snprintf(reason, sizeof reason, "resumed after a restart at step %zu (%d%%) from the state recorded at %s (%s)",
           sw_rollout_step(r), sw_rollout_weight(r), json_string_value(json_object_get(from, "at")) ?: "?",
           json_string_value(json_object_get(from, "action")) ?: "?");
  sl->last_snapshot = sw_now();
  record(rs, sl, "resume", reason, "rollout");
  pthread_mutex_unlock(&sl->op);
}

sw_status sw__rollouts_start(sw__rollouts *rs) {
  if (rs->reg) {
    json_t *list = NULL;
    pthread_mutex_lock(&rs->reg_mu);
    sw_status st = sw_registry_rollout_list(rs->reg, NULL, &list);
    pthread_mutex_unlock(&rs->reg_mu);
    if (st) SW_WARN("rollouts: reading the registry: %s", sw_last_error());
    /* newest first: the first record of a model is its current one */
    for (size_t i = 0; i < json_array_size(list); i++) {
      const json_t *rec = json_array_get(list, i);
      const char *model = json_string_value(json_object_get(rec, "model"));
      bool newest = true;
      for (size_t k = 0; k < i && newest; k++)
        newest = strcmp(json_string_value(json_object_get(json_array_get(list, k), "model")) ?: "", model ?: "") != 0;
      const char *state = json_string_value(json_object_get(rec, "state"));
      if (newest && state && (!strcmp(state, "running") || !strcmp(state, "holding"))) resume(rs, rec);
    }
    json_decref(list);
  }
  if (pthread_create(&rs->thread, NULL, controller_main, rs)) return sw_error(SW_STATUS_IO, "cannot start the rollout controller thread");
  rs->thread_started = true;
  return SW_STATUS_OK;
}

void sw__rollouts_free(sw__rollouts *rs) {
  if (!rs) return;
  if (rs->thread_started) {
    pthread_mutex_lock(&rs->stop_mu);
    rs->stop = true;
    pthread_cond_signal(&rs->stop_cv);
    pthread_mutex_unlock(&rs->stop_mu);
    pthread_join(rs->thread, NULL);
  }
  /* the evidence as it is at the stop, so a restarted server resumes from here */
  for (size_t i = 0; i < rs->n_slots; i++) {
    rslot *sl = rs->slots[i];
    pthread_mutex_lock(&sl->op);
    if (sl->active && sl->r) record(rs, sl, "snapshot", "the server is stopping", "rollout");
    pthread_mutex_unlock(&sl->op);
  }
  /* mirrors still queued finish on their versions (each holds a reference) */
  double until = sw_now() + 10;
  while (atomic_load(&rs->pending) > 0 && sw_now() < until) {
    drain_shadows(rs, false);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  drain_shadows(rs, false);
  if (rs->fb) sw__feedback_set_hook(rs->fb, NULL, NULL);
  if (atomic_load(&rs->pending) > 0) {
    /* their compute threads would still call back into rs: it stays (the process is
     * ending; freeing it would be a use after free) */
    SW_WARN("rollouts: %ld mirrored requests still queued at exit", (long)atomic_load(&rs->pending));
    return;
  }
  for (size_t i = 0; i < rs->n_slots; i++) slot_free(rs->slots[i]);
  sw_free(rs->slots);
  sw_registry_close(rs->reg);
  pthread_mutex_destroy(&rs->reg_mu);
  pthread_mutex_destroy(&rs->mu);
  pthread_mutex_destroy(&rs->stop_mu);
  pthread_cond_destroy(&rs->stop_cv);
  pthread_mutex_destroy(&rs->done_mu);
  sw_free(rs);
}
