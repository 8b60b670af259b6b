/* Unit tests of the anytime-valid tests (src/eval/sequential.c) and the rollout
 * controller (src/serve/rollout.c): e-values worked out by hand, the supermartingale
 * property under the composite null, save/restore; seeded simulations of A/A rollouts
 * checked after every event (false rollbacks <= alpha within the binomial margin, per
 * test and for the whole controller, with sticky users too) and of the bad
 * challengers (power and requests to rollback, printed: docs/ROLLOUT.md's table); the
 * controller's transitions; the router. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"
#include "slipway/serve.h"

/* Debug and sanitizer builds run the library ~10x slower: fewer streams there (the
 * margins below scale with the count). */
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
#define AA_STREAMS 1000
#define POWER_STREAMS 40
#else
#define AA_STREAMS 10000
#define POWER_STREAMS 200
#endif

/* The simulations' generator: splitmix64 (Steele et al. 2014), a few ns a draw (the
 * library's Philox costs more than the controller itself here). */
typedef struct {
  uint64_t s;
} fast_rng;

static void rng_init(fast_rng *g, uint64_t seed, uint64_t stream) {
  g->s = seed * 0x9e3779b97f4a7c15ull ^ (stream + 1) * 0xd1b54a32d192ed03ull;
}

static uint64_t rng_u64(fast_rng *g) {
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_uniform(fast_rng *g) {
  return (double)(rng_u64(g) >> 11) * 0x1.0p-53;
}

static double rng_normal(fast_rng *g) {
  double u1 = rng_uniform(g), u2 = rng_uniform(g);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* ---- the e-process by hand ----------------------------------------------------------- */

/* mixture of prod over observations of (q/p)^x ((1-q)/(1-p))^(1-x), q = p r/(p r + 1 - p) */
static double hand_e(const bool *x, const double *p, int n) {
  const double *r = sw_seq_grid_ratios();
  const double *lw = sw_seq_grid_log_weights();
  double e = 0;
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    double lr = 1;
    for (int i = 0; i < n; i++) {
      double q = p[i] * r[j] / (p[i] * r[j] + 1 - p[i]);
      lr *= x[i] ? q / p[i] : (1 - q) / (1 - p[i]);
    }
    e += exp(lw[j]) * lr;
  }
  return e;
}

static void test_grid(void **state) {
  (void)state;
  const double *r = sw_seq_grid_ratios();
  const double *lw = sw_seq_grid_log_weights();
  double wsum = 0;
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    wsum += exp(lw[j]);
    if (j > 0) assert_true(r[j] > r[j - 1]);
  }
  assert_true(fabs(wsum - 1) < 1e-12);
  assert_true(fabs(r[0] - 1.05) < 1e-12);
  assert_true(fabs(r[SW_SEQ_GRID - 1] - 1000) < 1e-9);
}

static void test_hand_values(void **state) {
  (void)state;
  sw_seq_test t;
  sw_seq_init(&t);
  assert_true(sw_seq_log_e(&t) == 0); /* no evidence: e = 1 */
  assert_false(sw_seq_crossed(&t, 0.5));

  /* one challenger event at rho = 1/2: each alternative's ratio is 2r/(1+r) */
  sw_seq_observe(&t, true, 0.5);
  const double *r = sw_seq_grid_ratios();
  double e = 0;
  for (int j = 0; j < SW_SEQ_GRID; j++) e += 2 * r[j] / (1 + r[j]) / SW_SEQ_GRID;
  assert_true(fabs(sw_seq_e(&t) - e) < 1e-12 * e);
  assert_int_equal(t.n, 1);
  assert_int_equal(t.events, 1);
  /* the r = 1000 alternative alone: 2000/1001 */
  assert_true(fabs(exp(t.log_lr[SW_SEQ_GRID - 1]) - 2000.0 / 1001.0) < 1e-12);

  /* a mixed sequence under changing rho, zeros deferred across a change of p */
  bool xs[] = {false, false, true, false, true, false, false, false, true, false};
  double ps[] = {0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.25, 0.25, 0.5, 0.5};
  sw_seq_init(&t);
  for (int i = 0; i < 10; i++) {
    sw_seq_observe(&t, xs[i], ps[i]);
    double want = hand_e(xs, ps, i + 1);
    assert_true(fabs(sw_seq_e(&t) - want) < 1e-10 * want);
  }
  /* e.g. after the first three (0, 0, 1 at rho 1 %) the e-value is about 3.3 */
  sw_seq_init(&t);
  for (int i = 0; i < 3; i++) sw_seq_observe(&t, xs[i], ps[i]);
  assert_true(sw_seq_e(&t) > 3 && sw_seq_e(&t) < 40);

  /* p >= 1 and NaN carry nothing; p = 0 with an event refutes the null outright */
  sw_seq_init(&t);
  sw_seq_observe(&t, true, 1.0);
  sw_seq_observe(&t, false, NAN);
  sw_seq_observe(&t, false, 0.0);
  assert_int_equal(t.n, 0);
  assert_true(sw_seq_log_e(&t) == 0);
  sw_seq_observe(&t, true, 0.0);
  assert_true(t.certain);
  assert_true(isinf(sw_seq_log_e(&t)));
  assert_true(sw_seq_e(&t) == 1e300);
  assert_true(sw_seq_crossed(&t, 1e-12));

  /* an objective test: 3 errors in 10 against an allowed 1 %: e = mean of
   * (q/p)^3 ((1-q)/(1-p))^7 = clearly more than 1/alpha for alpha = 0.01 */
  bool ox[10] = {true, false, false, true, false, false, false, true, false, false};
  double op[10];
  for (int i = 0; i < 10; i++) op[i] = 0.01;
  sw_seq_init(&t);
  for (int i = 0; i < 10; i++) sw_seq_observe(&t, ox[i], op[i]);
  double want = hand_e(ox, op, 10);
  assert_true(fabs(sw_seq_e(&t) - want) < 1e-10 * want);
  assert_true(want > 100);
  assert_true(sw_seq_crossed(&t, 0.01));
  assert_false(sw_seq_crossed(&t, 1.0 / (want * 1.01)));
}

/* The composite null "P(x = 1) <= p": one more observation's expected e-value is at most
 * the current one, with equality at P(x = 1) = p exactly (the boundary of the null),
 * and more when the challenger is worse. */
static void test_supermartingale(void **state) {
  (void)state;
  bool xs[] = {true, false, true, true, false};
  double ps[] = {0.1, 0.1, 0.3, 0.05, 0.05};
  sw_seq_test t;
  sw_seq_init(&t);
  for (int i = 0; i < 5; i++) sw_seq_observe(&t, xs[i], ps[i]);
  double e0 = sw_seq_e(&t);
  double rhos[] = {0.01, 0.2, 0.5, 0.9};
  for (int k = 0; k < 4; k++) {
    double rho = rhos[k];
    sw_seq_test a = t, b = t;
    sw_seq_observe(&a, true, rho);
    sw_seq_observe(&b, false, rho);
    double ea = sw_seq_e(&a), eb = sw_seq_e(&b);
    double at_boundary = rho * ea + (1 - rho) * eb;
    assert_true(fabs(at_boundary - e0) < 1e-9 * e0);
    double better = 0.7 * rho * ea + (1 - 0.7 * rho) * eb;
    assert_true(better < e0);
    double worse = 1.3 * rho * ea + (1 - 1.3 * rho) * eb;
    assert_true(worse > e0);
  }
}

static void test_seq_save_restore(void **state) {
  (void)state;
  sw_seq_test a, b;
  sw_seq_init(&a);
  fast_rng g;
  rng_init(&g, 7, 0);
  for (int i = 0; i < 500; i++) sw_seq_observe(&a, rng_uniform(&g) < 0.2, i < 250 ? 0.1 : 0.25);
  sw_seq_observe(&a, false, 0.25);
  assert_true(a.pending_zeros > 0); /* the saved state has deferred zeros */
  json_t *s = sw_seq_save(&a);
  assert_non_null(s);
  char *text = json_dumps(s, JSON_COMPACT);
  json_decref(s);
  json_t *back = json_loads(text, 0, NULL);
  free(text);
  assert_int_equal(sw_seq_restore(back, &b), SW_STATUS_OK);
  json_decref(back);
  assert_true(sw_seq_log_e(&a) == sw_seq_log_e(&b));
  for (int i = 0; i < 500; i++) {
    bool x = rng_uniform(&g) < 0.3;
    sw_seq_observe(&a, x, 0.25);
    sw_seq_observe(&b, x, 0.25);
    assert_true(sw_seq_log_e(&a) == sw_seq_log_e(&b));
  }
  /* malformed: wrong grid size, inconsistent counts, missing key; b stays as it was */
  double before = sw_seq_log_e(&b);
  const char *bad[] = {
      "{\"n\": 1, \"events\": 0, \"pending_zeros\": 0, \"pending_p\": 0, \"certain\": false, \"log_lr\": [0]}",
      "{\"n\": 1, \"events\": 2, \"pending_zeros\": 0, \"pending_p\": 0, \"certain\": false, \"log_lr\": []}",
      "{\"n\": 1, \"events\": 0, \"pending_zeros\": 0, \"pending_p\": 2, \"certain\": false, \"log_lr\": []}",
      "{\"n\": 1}",
      "[]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *v = json_loads(bad[i], 0, NULL);
    assert_non_null(v);
    assert_int_equal(sw_seq_restore(v, &b), SW_STATUS_FORMAT);
    assert_true(strlen(sw_last_error()) > 0);
    json_decref(v);
  }
  assert_true(sw_seq_log_e(&b) == before);
}

/* ---- the tests alone at the boundary of their nulls ---------------------------------- */

/* Count test: events fall on the challenger with exactly the probability the test is
 * told (the worst case of "no worse"), rho changing as a canary's steps do; objective
 * test: the challenger breaks the objective exactly as often as allowed. Each stream is
 * looked at after every observation, 10,000 streams, alpha 0.002 (0.01 split 5 ways). */
static void test_aa_tests_at_null_boundary(void **state) {
  (void)state;
  const double alpha = 0.002;
  const double rhos[] = {0.01, 0.05, 0.25, 0.5};
  int count_rej = 0, obj_rej = 0, obj0_rej = 0;
  for (int s = 0; s < AA_STREAMS; s++) {
    fast_rng g;
    rng_init(&g, 1000 + (uint64_t)s, 1);
    sw_seq_test t;
    sw_seq_init(&t);
    /* 3,000 events per stream: a rollout's incumbent errors or wrong predictions */
    for (int i = 0; i < 3000; i++) {
      double rho = rhos[i / 750];
      bool x = rng_uniform(&g) < rho;
      sw_seq_observe(&t, x, rho);
      if (x && sw_seq_crossed(&t, alpha)) {
        count_rej++;
        break;
      }
    }
    /* 5,000 challenger requests against "at most 1 % over the p99 objective" */
    sw_seq_init(&t);
    for (int i = 0; i < 5000; i++) {
      bool x = rng_uniform(&g) < 0.01;
      sw_seq_observe(&t, x, 0.01);
      if (x && sw_seq_crossed(&t, alpha)) {
        obj_rej++;
        break;
      }
    }
    /* and against an error objective of 0: a challenger that never fails never rolls back */
    sw_seq_init(&t);
    for (int i = 0; i < 100; i++) sw_seq_observe(&t, false, 0.0);
    obj0_rej += sw_seq_crossed(&t, alpha);
  }
  double margin = 3 * sqrt(alpha * (1 - alpha) * AA_STREAMS);
  printf("A/A at the null's boundary, %d streams, alpha %.3g: count test %d, objective test %d rejections "
         "(allowed %.1f)\n",
         AA_STREAMS, alpha, count_rej, obj_rej, alpha * AA_STREAMS + margin);
  assert_true(count_rej <= alpha * AA_STREAMS + margin);
  assert_true(obj_rej <= alpha * AA_STREAMS + margin);
  assert_int_equal(obj0_rej, 0);
}

/* ---- simulated rollouts ---------------------------------------------------------------- */

typedef struct {
  double err_i, err_c;                     /* error probability per request */
  double lat_median, lat_sigma, lat_shift; /* lognormal latency (ms); the challenger's + shift */
  double acc_i, acc_c;                     /* accuracy on labeled requests */
  double label_frac;                       /* share of requests that get a label */
  int n_users;                             /* 0: a random key per request; else sticky users */
} world;

typedef struct {
  bool rolled_back, promoted;
  char metric[32]; /* the test that rolled back */
  int64_t requests, ch_requests, ch_labels;
  sw_rollout_action last;
} outcome;

static double latency_draw(fast_rng *g, const world *w, bool challenger) {
  return w->lat_median * exp(w->lat_sigma * rng_normal(g)) + (challenger ? w->lat_shift : 0);
}

/* P(an incumbent request is slower than x) */
static double latency_sf(const world *w, double x) {
  if (x <= 0) return 1;
  return 0.5 * erfc(log(x / w->lat_median) / (w->lat_sigma * sqrt(2.0)));
}

#define MAX_USERS 10000

/* One rollout against a simulated world, every event observed in order, the controller
 * ticked after every challenger request. Incumbent requests that carry no event (no
 * error, not slower than the threshold, no wrong label) are skipped in bulk once the
 * latency threshold is fixed (a geometric draw of how many): they change no test and no
 * step's count, only the clock, which advances by them all the same. */
static outcome run_stream(const sw_rollout_config *cfg, const world *w, uint64_t seed, int64_t max_requests) {
  outcome o;
  memset(&o, 0, sizeof o);
  fast_rng g;
  rng_init(&g, seed, 2);
  sw_rollout *r = NULL;
  double t0 = (double)seed; /* also seeds the router's salt */
  const double rps = 1000;
  assert_int_equal(sw_rollout_new(cfg, t0, &r), SW_STATUS_OK);
  static float activity[MAX_USERS];
  static double total_activity = 0;
  if (total_activity == 0) {
    /* one population for every stream: users send lognormal amounts of traffic (the
     * busiest of 10,000 send ~40x the median); which of them the challenger gets
     * depends on each stream's salt */
    fast_rng pg;
    rng_init(&pg, 77, 77);
    for (int u = 0; u < MAX_USERS; u++) {
      activity[u] = (float)exp(1.0 * rng_normal(&pg));
      total_activity += activity[u];
    }
  }
  /* the traffic of the users in each percent of buckets */
  double pct_activity[100] = {0}, all_activity = 0;
  for (int u = 0; u < w->n_users; u++) {
    uint64_t id = (uint64_t)u * 2654435761u + 17;
    pct_activity[sw_rollout_bucket(r, (const char *)&id, sizeof id, 0) / 100] += activity[u];
    all_activity += activity[u];
  }
  int cur_w = -1;
  double rho = 0, thr = -1, boring = 0, slow_p = 0, skip = 0, log_skip = 0;
  int64_t n = 0;
  while (n < max_requests && !sw_rollout_done(r)) {
    int wt = sw_rollout_weight(r);
    if (wt != cur_w) {
      cur_w = wt;
      if (w->n_users > 0) {
        /* the challenger's real share: the traffic of the users in its buckets */
        double a = 0;
        for (int b = 0; b < wt && b < 100; b++) a += pct_activity[b];
        rho = a / all_activity;
      } else {
        rho = wt / 100.0;
      }
    }
    if (thr < 0) {
      thr = sw_rollout_latency_threshold(r);
      if (thr >= 0) {
        slow_p = latency_sf(w, thr);
        boring = (1 - w->err_i) * (1 - slow_p) * (1 - w->label_frac * (1 - w->acc_i));
      }
    }
    bool ch;
    if (thr >= 0) {
      if (skip != (1 - rho) * boring) {
        skip = (1 - rho) * boring;
        log_skip = log(skip);
      }
      if (skip > 0) {
        double u = 1 - rng_uniform(&g);
        double k = floor(log(u) / log_skip);
        n += k > (double)max_requests ? max_requests : (int64_t)k;
        if (n >= max_requests) break;
      }
      ch = rng_uniform(&g) * (1 - skip) < rho;
    } else {
      ch = rng_uniform(&g) < rho;
    }
    n++;
    if (ch || thr < 0) {
      bool err = rng_uniform(&g) < (ch ? w->err_c : w->err_i);
      sw_rollout_observe_request(r, ch, latency_draw(&g, w, ch), err);
      if (rng_uniform(&g) < w->label_frac) {
        sw_rollout_observe_label(r, ch, rng_uniform(&g) < (ch ? w->acc_c : w->acc_i), wt);
        o.ch_labels += ch;
      }
      o.ch_requests += ch;
    } else {
      /* an incumbent request with an event (error, slow or a wrong label), drawn
       * conditionally on having one */
      double lw = w->label_frac * (1 - w->acc_i);
      bool err = rng_uniform(&g) * (1 - boring) < w->err_i;
      bool slow = false, labeled, wrong;
      if (!err) slow = rng_uniform(&g) * (1 - (1 - slow_p) * (1 - lw)) < slow_p;
      if (err || slow) {
        labeled = rng_uniform(&g) < w->label_frac;
        wrong = labeled && rng_uniform(&g) >= w->acc_i;
      } else {
        labeled = wrong = true;
      }
      /* only its side of the threshold matters to the latency test; a request whose
       * only event is its wrong label changes no request test and is left out */
      if (err || slow) sw_rollout_observe_request(r, false, slow ? thr * 1.5 + 1 : thr * 0.5, err);
      if (labeled) sw_rollout_observe_label(r, false, !wrong, wt);
    }
    if (ch || sw_rollout_done(r)) {
      char reason[512];
      sw_rollout_action a = sw_rollout_tick(r, t0 + (double)n / rps, reason, sizeof reason);
      if (a != SW_ROLLOUT_NONE) o.last = a;
      if (a == SW_ROLLOUT_ROLLBACK) {
        o.rolled_back = true;
        size_t len = strcspn(reason, ":");
        snprintf(o.metric, sizeof o.metric, "%.*s", (int)(len < 31 ? len : 31), reason);
      }
      if (a == SW_ROLLOUT_PROMOTE) o.promoted = true;
    }
  }
  o.requests = n;
  sw_rollout_free(r);
  return o;
}

static const char *const metrics[] = {"error_rate", "latency", "quality", "slo_p99", "slo_error_rate"};

static sw_rollout_config default_config(void) {
  sw_rollout_config c;
  sw_rollout_config_from_policy(NULL, SW_ROLLOUT_CANARY, &c);
  c.quality = true;
  c.slo_p99_ms = 50;
  c.slo_error_rate = 0.01;
  return c;
}

/* The incumbent: 86 % accurate, 0.5 % errors, ~10 ms median latency. */
static world aa_world(void) {
  world w = {.err_i = 0.005, .err_c = 0.005, .lat_median = 10, .lat_sigma = 0.3, .lat_shift = 0,
             .acc_i = 0.86, .acc_c = 0.86, .label_frac = 1.0, .n_users = 0};
  return w;
}

/* 10,000 A/A rollouts through the default steps (1, 5, 25, 50, 100 %), five tests
 * (alpha 0.01 / 5 each), every request labeled, half with a random key per request and
 * half with sticky users: false rollbacks <= alpha within 3 binomial standard deviations,
 * for the whole controller and per test. min_requests_per_step is 200 (63,500 requests a
 * stream would take 2.5x the time for the same looks per step). */
static void test_aa_controller(void **state) {
  (void)state;
  sw_rollout_config c = default_config();
  c.min_requests_per_step = 200;
  world w = aa_world();
  int rollbacks = 0, promoted = 0, per_metric[5] = {0}, sticky_rb = 0;
  int64_t requests = 0;
  for (int s = 0; s < AA_STREAMS; s++) {
    w.n_users = s % 2 ? MAX_USERS : 0;
    outcome o = run_stream(&c, &w, 100000 + (uint64_t)s, 2000000);
    requests += o.requests;
    promoted += o.promoted;
    if (o.rolled_back) {
      rollbacks++;
      sticky_rb += w.n_users > 0;
      for (int k = 0; k < 5; k++)
        if (!strcmp(o.metric, metrics[k])) per_metric[k]++;
    }
  }
  double alpha = c.alpha, alpha_k = c.alpha / 5;
  double allowed = alpha * AA_STREAMS + 3 * sqrt(alpha * (1 - alpha) * AA_STREAMS);
  double allowed_k = alpha_k * AA_STREAMS + 3 * sqrt(alpha_k * (1 - alpha_k) * AA_STREAMS);
  double allowed_half = alpha * AA_STREAMS / 2 + 3 * sqrt(alpha * (1 - alpha) * AA_STREAMS / 2);
  printf("A/A controller, %d streams (%.0f requests each on average): %d false rollbacks (%.3f%%, allowed %.0f), "
         "%d of them with sticky users (allowed %.0f), %d promoted; per test:",
         AA_STREAMS, (double)requests / AA_STREAMS, rollbacks, 100.0 * rollbacks / AA_STREAMS, allowed, sticky_rb,
         allowed_half, promoted);
  for (int k = 0; k < 5; k++) printf(" %s %d", metrics[k], per_metric[k]);
  printf(" (allowed %.0f each)\n", allowed_k);
  assert_true(rollbacks <= allowed);
  assert_true(sticky_rb <= allowed_half);
  for (int k = 0; k < 5; k++) assert_true(per_metric[k] <= allowed_k);
  /* the good challenger gets through: every stream not rolled back was promoted */
  assert_int_equal(promoted + rollbacks, AA_STREAMS);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

typedef struct {
  const char *name;
  world w;
  const char *metric, *metric2; /* the tests expected to catch it */
} bad_case;

/* Power: the fraction of bad challengers rolled back within the cap, and the median
 * requests to rollback, at fixed traffic shares (steps {share, 100} that never advance)
 * and through the default steps. Printed as docs/ROLLOUT.md's table. */
static void power_row(const bad_case *bc, int share, int64_t min_per_step, int64_t cap, int streams,
                      double min_power) {
  sw_rollout_config c = default_config();
  if (min_per_step > 0) c.min_requests_per_step = min_per_step;
  if (share > 0) {
    c.steps[0] = share;
    c.steps[1] = 100;
    c.n_steps = 2;
    c.min_requests_per_step = INT64_MAX / 4;
    c.max_step_seconds = 1e12;
  }
  int64_t *ch = calloc((size_t)streams, sizeof *ch), *all = calloc((size_t)streams, sizeof *all);
  assert_non_null(ch);
  assert_non_null(all);
  int caught = 0, by_expected = 0;
  for (int s = 0; s < streams; s++) {
    outcome o = run_stream(&c, &bc->w, 500000 + (uint64_t)s * 7 + (uint64_t)share, cap);
    if (!o.rolled_back) continue;
    by_expected += !strcmp(o.metric, bc->metric) || (bc->metric2 && !strcmp(o.metric, bc->metric2));
    ch[caught] = strcmp(bc->metric, "quality") ? o.ch_requests : o.ch_labels;
    all[caught] = o.requests;
    caught++;
  }
  qsort(ch, (size_t)caught, sizeof *ch, cmp_i64);
  qsort(all, (size_t)caught, sizeof *all, cmp_i64);
  char where[32], med_ch[24] = "-", med_all[24] = "-";
  if (share > 0) snprintf(where, sizeof where, "%d%%", share);
  else snprintf(where, sizeof where, "steps/%lld", (long long)c.min_requests_per_step);
  if (caught) {
    snprintf(med_ch, sizeof med_ch, "%lld", (long long)ch[caught / 2]);
    snprintf(med_all, sizeof med_all, "%lld", (long long)all[caught / 2]);
  }
  printf("| %-24s | %-10s | %5.1f%% | %10s | %10s | %5.1f%% |\n", bc->name, where, 100.0 * caught / streams, med_ch,
         med_all, caught ? 100.0 * by_expected / caught : 0.0);
  assert_true((double)caught / streams >= min_power);
  assert_true(by_expected * 10 >= caught * 8); /* the right test does the catching */
  free(ch);
  free(all);
}

static void test_power(void **state) {
  (void)state;
  world base = aa_world();
  bad_case cases[4];
  cases[0] = (bad_case){"10 points less accurate", base, "quality", NULL};
  cases[0].w.acc_c = 0.76;
  cases[1] = (bad_case){"5 ms slower", base, "latency", NULL};
  cases[1].w.lat_shift = 5;
  cases[2] = (bad_case){"fails 5% of requests", base, "error_rate", "slo_error_rate"};
  cases[2].w.err_c = 0.05;
  cases[3] = (bad_case){"2 points less accurate", base, "quality", NULL};
  cases[3].w.acc_c = 0.84;
  printf("power, %d streams a row; requests to rollback are medians over the streams rolled back "
         "(challenger: its requests, or its labeled requests for accuracy)\n",
         POWER_STREAMS);
  printf("| %-24s | %-10s | %6s | %10s | %10s | %6s |\n", "challenger", "share", "caught", "challenger", "all", "by");
  printf("|--------------------------|------------|--------|------------|------------|--------|\n");
  const int shares[] = {1, 5, 25, 50, 0};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 5; k++) power_row(&cases[i], shares[k], 0, 2000000, POWER_STREAMS, 0.95);
  /* the small effect needs thousands of labels: fewer streams, larger caps */
  const int small_shares[] = {1, 5, 25, 50};
  for (int k = 0; k < 4; k++) power_row(&cases[3], small_shares[k], 0, 4000000, POWER_STREAMS / 4, 0.8);
  /* through the default steps it is promoted first: 500 labels a step are far fewer than
   * it takes (reported, not asserted); 5,000 labels a step catch it */
  power_row(&cases[3], 0, 0, 4000000, POWER_STREAMS / 4, 0.0);
  power_row(&cases[3], 0, 5000, 4000000, POWER_STREAMS / 4, 0.8);
}

/* Shadow: paired tests on mirrored requests; an A/A shadow rollout rarely rolls back,
 * a challenger erring more on the same requests is caught. */
static void test_shadow(void **state) {
  (void)state;
  sw_rollout_config c = default_config();
  c.mode = SW_ROLLOUT_SHADOW;
  c.min_requests_per_step = 200;
  int streams = AA_STREAMS / 5, aa_rb = 0, bad_rb = 0, promoted = 0;
  for (int s = 0; s < 2 * streams; s++) {
    bool bad = s >= streams;
    fast_rng g;
    rng_init(&g, 900000 + (uint64_t)s, 3);
    sw_rollout *r;
    assert_int_equal(sw_rollout_new(&c, 1.0, &r), SW_STATUS_OK);
    for (int i = 0; i < 20000 && !sw_rollout_done(r); i++) {
      /* the same request to both: errors and latency partly shared (a hard input is
       * hard for both), correctness correlated */
      double common = rng_normal(&g);
      double li = 10 * exp(0.3 * (0.7 * common + 0.71 * rng_normal(&g)));
      double lc = 10 * exp(0.3 * (0.7 * common + 0.71 * rng_normal(&g)));
      bool ei = rng_uniform(&g) < 0.005;
      bool ec = rng_uniform(&g) < (bad ? 0.05 : 0.005);
      bool hard = rng_uniform(&g) < 0.10;
      bool ci = !hard && rng_uniform(&g) < 0.955, cc = !hard && rng_uniform(&g) < 0.955;
      sw_rollout_observe_shadow(r, li, ei, lc, ec, ci != cc);
      sw_rollout_observe_shadow_label(r, ci, cc);
      char reason[512];
      sw_rollout_action a = sw_rollout_tick(r, 1.0 + i * 0.01, reason, sizeof reason);
      if (a == SW_ROLLOUT_ROLLBACK) {
        if (bad) bad_rb++;
        else aa_rb++;
      }
      if (a == SW_ROLLOUT_PROMOTE) promoted += !bad;
    }
    sw_rollout_free(r);
  }
  double allowed = c.alpha * streams + 3 * sqrt(c.alpha * streams);
  printf("shadow: A/A %d of %d rolled back (allowed %.0f), %d promoted; a challenger failing 5%% caught in %d of %d\n",
         aa_rb, streams, allowed, promoted, bad_rb, streams);
  assert_true(aa_rb <= allowed);
  assert_int_equal(aa_rb + promoted, streams);
  assert_true(bad_rb >= streams * 95 / 100);
}

/* ---- transitions ------------------------------------------------------------------------ */

static sw_rollout_config small_config(void) {
  sw_rollout_config c;
  memset(&c, 0, sizeof c);
  c.mode = SW_ROLLOUT_CANARY;
  c.steps[0] = 10;
  c.steps[1] = 50;
  c.steps[2] = 100;
  c.n_steps = 3;
  c.min_requests_per_step = 100;
  c.max_step_seconds = 60;
  c.alpha = 0.01;
  c.slo_p99_ms = -1;
  c.slo_error_rate = -1;
  c.quality = false;
  c.compare_latency = true;
  return c;
}

static void feed_good(sw_rollout *r, int challenger_requests, int incumbent_requests) {
  for (int i = 0; i < incumbent_requests; i++) sw_rollout_observe_request(r, false, 10 + (i % 7), false);
  for (int i = 0; i < challenger_requests; i++) sw_rollout_observe_request(r, true, 10 + (i % 5), false);
}

static void test_transitions(void **state) {
  (void)state;
  sw_rollout_config c = small_config();
  sw_rollout *r;
  char reason[512];
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  assert_int_equal(sw_rollout_weight(r), 10);
  assert_string_equal(sw_rollout_state(r), "running");
  assert_true(sw_rollout_latency_threshold(r) < 0);

  /* the minimum evidence, but no latency threshold yet (199 incumbent requests): waits */
  feed_good(r, 100, 199);
  assert_int_equal(sw_rollout_tick(r, 1010, reason, sizeof reason), SW_ROLLOUT_NONE);
  feed_good(r, 0, 1);
  assert_true(sw_rollout_latency_threshold(r) > 10);
  assert_int_equal(sw_rollout_tick(r, 1011, reason, sizeof reason), SW_ROLLOUT_ADVANCE);
  assert_non_null(strstr(reason, "advanced to step 1 (50%)"));
  assert_non_null(strstr(reason, "100 challenger requests"));
  assert_int_equal(sw_rollout_weight(r), 50);
  assert_int_equal(sw_rollout_step(r), 1);

  /* per-step counters start over: 99 is not enough; after 60 s it holds, once */
  feed_good(r, 99, 100);
  assert_int_equal(sw_rollout_tick(r, 1050, reason, sizeof reason), SW_ROLLOUT_NONE);
  assert_int_equal(sw_rollout_tick(r, 1071, reason, sizeof reason), SW_ROLLOUT_HOLD);
  assert_non_null(strstr(reason, "only 99 of 100 challenger requests"));
  assert_non_null(strstr(reason, "still serving 50%"));
  assert_string_equal(sw_rollout_state(r), "holding");
  assert_int_equal(sw_rollout_weight(r), 50);
  assert_int_equal(sw_rollout_tick(r, 1200, reason, sizeof reason), SW_ROLLOUT_NONE);
  /* the evidence comes late: it advances all the same */
  feed_good(r, 1, 0);
  assert_int_equal(sw_rollout_tick(r, 1300, reason, sizeof reason), SW_ROLLOUT_ADVANCE);
  assert_string_equal(sw_rollout_state(r), "running");
  assert_int_equal(sw_rollout_weight(r), 100);

  /* the last step passes: promoted, then nothing more */
  feed_good(r, 100, 0);
  assert_int_equal(sw_rollout_tick(r, 1301, reason, sizeof reason), SW_ROLLOUT_PROMOTE);
  assert_non_null(strstr(reason, "promoted: the last step (100%)"));
  assert_string_equal(sw_rollout_state(r), "promoted");
  assert_true(sw_rollout_done(r));
  assert_int_equal(sw_rollout_tick(r, 1302, reason, sizeof reason), SW_ROLLOUT_NONE);
  assert_string_equal(reason, "");
  sw_rollout_free(r);

  /* rollback at once: challenger errors at 10 % while the incumbent has none */
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  int i = 0;
  for (; i < 1000 && !sw_rollout_done(r); i++) {
    sw_rollout_observe_request(r, false, 10, false);
    if (i % 9 == 0) sw_rollout_observe_request(r, true, 10, i % 2 == 0);
  }
  assert_true(sw_rollout_done(r));
  assert_true(i < 400);
  assert_int_equal(sw_rollout_weight(r), 0);
  assert_string_equal(sw_rollout_state(r), "rolled_back");
  for (uint64_t k = 0; k < 100; k++) assert_false(sw_rollout_route(r, NULL, 0, k * 7919));
  json_t *ev = sw_rollout_evidence_json(r);
  assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "error_rate"), "verdict")), "worse");
  /* fewer than 200 incumbent requests: no latency threshold yet */
  assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "latency"), "verdict")), "waiting");
  json_decref(ev);
  assert_int_equal(sw_rollout_tick(r, 1001, reason, sizeof reason), SW_ROLLOUT_ROLLBACK);
  printf("rollback reason: %s\n", reason);
  assert_non_null(strstr(reason, "error_rate: e-value "));
  assert_non_null(strstr(reason, "crossed 1/alpha = 200"));
  assert_non_null(strstr(reason, "challenger errors"));
  assert_int_equal(sw_rollout_tick(r, 1002, reason, sizeof reason), SW_ROLLOUT_NONE);
  sw_rollout_free(r);

  /* abort and promote_now, and nothing after them */
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  sw_rollout_abort(r, 1001);
  assert_string_equal(sw_rollout_state(r), "aborted");
  assert_int_equal(sw_rollout_weight(r), 0);
  sw_rollout_promote_now(r, 1002);
  assert_string_equal(sw_rollout_state(r), "aborted");
  assert_int_equal(sw_rollout_tick(r, 1003, reason, sizeof reason), SW_ROLLOUT_NONE);
  sw_rollout_free(r);
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  sw_rollout_promote_now(r, 1001);
  assert_string_equal(sw_rollout_state(r), "promoted");
  assert_int_equal(sw_rollout_weight(r), 100);
  assert_true(sw_rollout_route(r, "anyone", 6, 0));
  sw_rollout_free(r);

  /* an SLO: a challenger over the p99 objective in 20 % of its requests */
  c.slo_p99_ms = 30;
  c.slo_error_rate = 0.001;
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  for (i = 0; i < 2000 && !sw_rollout_done(r); i++) sw_rollout_observe_request(r, true, i % 5 ? 10 : 40, false);
  assert_int_equal(sw_rollout_tick(r, 1001, reason, sizeof reason), SW_ROLLOUT_ROLLBACK);
  assert_non_null(strstr(reason, "slo_p99: e-value"));
  assert_non_null(strstr(reason, "p99 <= 30 ms"));
  sw_rollout_free(r);
}

static void test_quality_labels_and_evidence(void **state) {
  (void)state;
  sw_rollout_config c = small_config();
  c.quality = true;
  c.slo_error_rate = 0.01;
  sw_rollout *r;
  char reason[512];
  assert_int_equal(sw_rollout_new(&c, 0, &r), SW_STATUS_OK);
  assert_int_equal(sw_rollout_set_latency_threshold(r, 25), SW_STATUS_OK);
  assert_int_equal(sw_rollout_set_latency_threshold(r, 30), SW_STATUS_INVALID);
  assert_true(sw_rollout_latency_threshold(r) == 25);
  /* requests alone do not advance a step judged by labels */
  feed_good(r, 300, 300);
  assert_int_equal(sw_rollout_tick(r, 1, reason, sizeof reason), SW_ROLLOUT_NONE);
  for (int i = 0; i < 1000; i++) sw_rollout_observe_label(r, i % 10 == 0, (i / 10) % 7 != 0 || i % 10 == 5, 10);
  assert_int_equal(sw_rollout_tick(r, 2, reason, sizeof reason), SW_ROLLOUT_ADVANCE);
  assert_non_null(strstr(reason, "100 labeled challenger requests"));
  json_t *ev = sw_rollout_evidence_json(r);
  assert_int_equal(json_object_size(ev), 4); /* error_rate, latency, quality, slo_error_rate */
  json_t *q = json_object_get(ev, "quality");
  assert_string_equal(json_string_value(json_object_get(q, "verdict")), "ok");
  assert_true(json_real_value(json_object_get(q, "boundary")) == 400);
  assert_true(fabs(json_real_value(json_object_get(q, "alpha")) - 0.0025) < 1e-15);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(q, "challenger"), "n")), 100);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(q, "challenger"), "events")), 15);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(q, "incumbent"), "n")), 900);
  assert_true(json_real_value(json_object_get(q, "e_value")) < 2);
  assert_true(json_real_value(json_object_get(json_object_get(ev, "latency"), "threshold_ms")) == 25);
  json_decref(ev);
  /* labels routed at a weight with one possible arm are not compared */
  sw_rollout_observe_label(r, true, false, 100);
  sw_rollout_observe_label(r, true, false, 0);
  ev = sw_rollout_evidence_json(r);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(ev, "quality"), "challenger"),
                                                      "events")),
                   15);
  json_decref(ev);
  sw_rollout_free(r);
}

/* A controller saved (through JSON text) and restored answers the rest of the rollout
 * exactly as the one that went on: same actions, reasons and evidence. */
static void test_save_restore(void **state) {
  (void)state;
  sw_rollout_config c = default_config();
  c.min_requests_per_step = 150;
  sw_rollout *a, *b = NULL;
  assert_int_equal(sw_rollout_new(&c, 50, &a), SW_STATUS_OK);
  fast_rng g;
  rng_init(&g, 42, 4);
  double now = 50;
  int advances = 0;
  /* a challenger 10 points less accurate: saved at the first step, then steps and a rollback */
  for (int i = 0; i < 200000 && !sw_rollout_done(a); i++) {
    if (i == 5000) {
      json_t *s = sw_rollout_save(a);
      assert_non_null(s);
      char *text = json_dumps(s, JSON_COMPACT);
      json_decref(s);
      json_t *back = json_loads(text, 0, NULL);
      free(text);
      assert_non_null(back);
      assert_int_equal(sw_rollout_restore(&c, back, now, &b), SW_STATUS_OK);
      json_decref(back);
      assert_int_equal(sw_rollout_weight(b), sw_rollout_weight(a));
      assert_int_equal(sw_rollout_step(b), sw_rollout_step(a));
      assert_true(sw_rollout_latency_threshold(b) == sw_rollout_latency_threshold(a));
      for (uint64_t k = 0; k < 1000; k++)
        assert_int_equal(sw_rollout_route(a, NULL, 0, k), sw_rollout_route(b, NULL, 0, k));
    }
    int wt = sw_rollout_weight(a);
    bool ch = rng_uniform(&g) * 100 < wt;
    double lat = 10 * exp(0.3 * rng_normal(&g));
    bool err = rng_uniform(&g) < 0.005;
    bool correct = rng_uniform(&g) < (ch ? 0.76 : 0.86);
    now += 0.001;
    sw_rollout *both[2] = {a, b};
    sw_rollout_action act[2] = {SW_ROLLOUT_NONE, SW_ROLLOUT_NONE};
    char reason[2][512];
    for (int k = 0; k < 2; k++) {
      if (!both[k]) continue;
      sw_rollout_observe_request(both[k], ch, lat, err);
      sw_rollout_observe_label(both[k], ch, correct, wt);
      act[k] = sw_rollout_tick(both[k], now, reason[k], sizeof reason[k]);
    }
    advances += act[0] == SW_ROLLOUT_ADVANCE;
    if (b) {
      assert_int_equal(act[0], act[1]);
      assert_string_equal(reason[0], reason[1]);
    }
  }
  assert_non_null(b);
  assert_true(advances >= 1);
  assert_string_equal(sw_rollout_state(a), "rolled_back");
  assert_string_equal(sw_rollout_state(b), "rolled_back");
  json_t *ea = sw_rollout_evidence_json(a), *eb = sw_rollout_evidence_json(b);
  assert_true(json_equal(ea, eb));
  json_decref(ea);
  json_decref(eb);
  json_t *sa = sw_rollout_save(a), *sb = sw_rollout_save(b);
  assert_true(json_equal(sa, sb));

  /* a saved state that does not fit the config, or is malformed */
  sw_rollout *x = NULL;
  sw_rollout_config other = c;
  other.quality = false;
  assert_int_equal(sw_rollout_restore(&other, sa, 0, &x), SW_STATUS_INVALID);
  assert_null(x);
  other = c;
  other.mode = SW_ROLLOUT_SHADOW;
  assert_int_equal(sw_rollout_restore(&other, sa, 0, &x), SW_STATUS_INVALID);
  json_object_set_new(sa, "salt", json_string("xyz"));
  assert_int_equal(sw_rollout_restore(&c, sa, 0, &x), SW_STATUS_FORMAT);
  json_object_del(sa, "salt");
  assert_int_equal(sw_rollout_restore(&c, sa, 0, &x), SW_STATUS_FORMAT);
  json_t *arr = json_array();
  assert_int_equal(sw_rollout_restore(&c, arr, 0, &x), SW_STATUS_FORMAT);
  assert_null(x);
  json_decref(arr);
  json_decref(sa);
  json_decref(sb);
  sw_rollout_free(a);
  sw_rollout_free(b);
}

static void test_config(void **state) {
  (void)state;
  sw_rollout_config c;
  sw_rollout_config_from_policy(NULL, SW_ROLLOUT_AB, &c);
  assert_int_equal(c.mode, SW_ROLLOUT_AB);
  assert_int_equal(c.n_steps, 5);
  assert_int_equal(c.steps[0], 1);
  assert_int_equal(c.steps[4], 100);
  assert_int_equal(c.min_requests_per_step, 500);
  assert_true(c.max_step_seconds == 600);
  assert_true(c.alpha == 0.01);
  assert_true(c.slo_p99_ms < 0 && c.slo_error_rate < 0);
  assert_true(c.quality);
  assert_true(c.compare_latency);

  sw_rollout *r = (sw_rollout *)&c;
  sw_rollout_config bad = c;
  bad.steps[4] = 90;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  assert_null(r);
  assert_non_null(strstr(sw_last_error(), "ends at 100"));
  bad = c;
  bad.steps[2] = 5;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  bad = c;
  bad.alpha = 1;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  bad = c;
  bad.n_steps = 0;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  bad = c;
  bad.min_requests_per_step = 0;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  bad = c;
  bad.max_step_seconds = 0;
  assert_int_equal(sw_rollout_new(&bad, 0, &r), SW_STATUS_INVALID);
  sw_rollout_free(NULL);

  sw_rollout_mode m;
  assert_int_equal(sw_rollout_mode_parse("shadow", &m), SW_STATUS_OK);
  assert_int_equal(m, SW_ROLLOUT_SHADOW);
  assert_string_equal(sw_rollout_mode_name(m), "shadow");
  assert_int_equal(sw_rollout_mode_parse("blue-green", &m), SW_STATUS_INVALID);
  assert_string_equal(sw_rollout_action_name(SW_ROLLOUT_HOLD), "hold");
}

/* rollout.compare_latency: false (a challenger slower by design, the demo's CNN against
 * the MLP): no latency test against the incumbent, alpha split over the others, and the
 * p99 objective still judges the challenger's latency. */
static void test_no_latency_comparison(void **state) {
  (void)state;
  sw_policy *pol = NULL;
  json_t *tree = json_pack("{s:{s:b, s:{s:f}}}", "rollout", "compare_latency", 0, "slo", "p99_ms", 50.0);
  assert_int_equal(sw_policy_from_json(tree, &pol, NULL), SW_STATUS_OK);
  json_decref(tree);
  sw_rollout_config c;
  sw_rollout_config_from_policy(pol, SW_ROLLOUT_CANARY, &c);
  sw_policy_free(pol);
  assert_false(c.compare_latency);
  assert_true(c.slo_p99_ms == 50);
  c.quality = false;
  c.steps[0] = 10;
  c.steps[1] = 100;
  c.n_steps = 2;
  c.min_requests_per_step = 100;

  /* the challenger takes 30 ms against the incumbent's 10: the comparison would catch it
   * (the control below), but it meets p99 <= 50 ms, so it is promoted; no threshold to
   * wait for (100 challenger requests suffice with only 20 incumbent ones) */
  sw_rollout *r;
  char reason[512];
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  for (int i = 0; i < 20; i++) sw_rollout_observe_request(r, false, 10, false);
  for (int i = 0; i < 100; i++) sw_rollout_observe_request(r, true, 30, false);
  assert_int_equal(sw_rollout_tick(r, 1001, reason, sizeof reason), SW_ROLLOUT_ADVANCE);
  json_t *ev = sw_rollout_evidence_json(r);
  assert_null(json_object_get(ev, "latency"));
  assert_non_null(json_object_get(ev, "slo_p99"));
  /* two tests (error_rate, slo_p99): alpha 0.01 / 2 */
  assert_true(fabs(json_real_value(json_object_get(json_object_get(ev, "error_rate"), "boundary")) - 200) < 1e-9);
  json_decref(ev);
  for (int i = 0; i < 100; i++) sw_rollout_observe_request(r, true, 30, false);
  assert_int_equal(sw_rollout_tick(r, 1002, reason, sizeof reason), SW_ROLLOUT_PROMOTE);
  assert_null(strstr(reason, "latency e="));
  /* saved without a latency test, restored under the same config; not under one that compares */
  json_t *saved = sw_rollout_save(r);
  sw_rollout_free(r);
  assert_int_equal(sw_rollout_restore(&c, saved, 2000, &r), SW_STATUS_OK);
  sw_rollout_free(r);
  sw_rollout_config other = c;
  other.compare_latency = true;
  assert_int_equal(sw_rollout_restore(&other, saved, 2000, &r), SW_STATUS_INVALID);
  json_decref(saved);

  /* the same challenger with the comparison on: rolled back on latency */
  assert_int_equal(sw_rollout_new(&other, 1000, &r), SW_STATUS_OK);
  for (int i = 0; i < 2000 && !sw_rollout_done(r); i++) {
    sw_rollout_observe_request(r, false, 10 + (i % 3), false);
    if (i % 9 == 0) sw_rollout_observe_request(r, true, 30, false);
  }
  assert_string_equal(sw_rollout_state(r), "rolled_back");
  assert_int_equal(sw_rollout_tick(r, 1001, reason, sizeof reason), SW_ROLLOUT_ROLLBACK);
  assert_non_null(strstr(reason, "latency: e-value"));
  sw_rollout_free(r);

  /* comparison off, but the challenger breaks its objective (80 ms > 50): rolled back by slo_p99 */
  assert_int_equal(sw_rollout_new(&c, 1000, &r), SW_STATUS_OK);
  int n = 0;
  for (; n < 100 && !sw_rollout_done(r); n++) sw_rollout_observe_request(r, true, 80, false);
  assert_string_equal(sw_rollout_state(r), "rolled_back");
  assert_int_equal(sw_rollout_tick(r, 1001, reason, sizeof reason), SW_ROLLOUT_ROLLBACK);
  assert_non_null(strstr(reason, "slo_p99: e-value"));
  assert_true(n < 10);
  sw_rollout_free(r);
}

/* ---- the router ------------------------------------------------------------------------ */

static void test_router(void **state) {
  (void)state;
  sw_rollout_config c = small_config();
  c.steps[0] = 5;
  c.steps[1] = 25;
  sw_rollout *r, *other;
  assert_int_equal(sw_rollout_new(&c, 123.5, &r), SW_STATUS_OK);
  assert_int_equal(sw_rollout_new(&c, 999.25, &other), SW_STATUS_OK);
  enum { USERS = 40000 };
  int ch = 0, same_other = 0, keys = 0;
  char id[32];
  for (int u = 0; u < USERS; u++) {
    int len = snprintf(id, sizeof id, "user-%d", u);
    uint32_t b = sw_rollout_bucket(r, id, (size_t)len, 0);
    assert_true(b < 10000);
    /* sticky: the key is ignored when there is a user, and the answer never changes */
    assert_int_equal(sw_rollout_bucket(r, id, (size_t)len, (uint64_t)u * 31), b);
    bool in = sw_rollout_route(r, id, (size_t)len, 12345);
    assert_int_equal(in, b < 500);
    ch += in;
    same_other += (sw_rollout_bucket(other, id, (size_t)len, 0) < 500) && in;
    keys += sw_rollout_route(r, NULL, 0, (uint64_t)u * 0x9e3779b97f4a7c15ull + 1);
  }
  /* share within tolerance: 5 % of 40,000 users, sd 44 */
  assert_true(ch > USERS * 5 / 100 - 250 && ch < USERS * 5 / 100 + 250);
  assert_true(keys > USERS * 5 / 100 - 250 && keys < USERS * 5 / 100 + 250);
  /* another rollout (another salt) picks other users: overlap near 5 % of 5 % */
  assert_true(same_other < 250);
  /* a user on the challenger stays there when the weight grows (advance to 25 %) */
  int before[200], n_before = 0;
  for (int u = 0; u < USERS && n_before < 200; u++) {
    int len = snprintf(id, sizeof id, "user-%d", u);
    if (sw_rollout_route(r, id, (size_t)len, 0)) before[n_before++] = u;
  }
  feed_good(r, 100, 200);
  char reason[512];
  assert_int_equal(sw_rollout_tick(r, 130, reason, sizeof reason), SW_ROLLOUT_ADVANCE);
  assert_int_equal(sw_rollout_weight(r), 25);
  int ch25 = 0;
  for (int i = 0; i < n_before; i++) {
    int len = snprintf(id, sizeof id, "user-%d", before[i]);
    assert_true(sw_rollout_route(r, id, (size_t)len, 0));
  }
  for (int u = 0; u < USERS; u++) {
    int len = snprintf(id, sizeof id, "user-%d", u);
    ch25 += sw_rollout_route(r, id, (size_t)len, 0);
  }
  assert_true(ch25 > USERS / 4 - 450 && ch25 < USERS / 4 + 450);
  /* ids that differ only in length land apart */
  assert_int_not_equal(sw_rollout_bucket(r, "a", 1, 0), sw_rollout_bucket(r, "a\0", 2, 0));
  sw_rollout_free(r);
  sw_rollout_free(other);
}

/* Many threads observe while one ticks (as the server does): nothing is lost. */
typedef struct {
  sw_rollout *r;
  int id;
} observer;

static void *observe_many(void *arg) {
  observer *o = arg;
  for (int i = 0; i < 20000; i++) {
    bool ch = (i + o->id) % 10 == 0;
    sw_rollout_observe_request(o->r, ch, 10 + i % 9, false);
    sw_rollout_observe_label(o->r, ch, i % 7 != 0, 10);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  sw_rollout_config c = small_config();
  c.quality = true;
  c.min_requests_per_step = 1000000;
  sw_rollout *r;
  assert_int_equal(sw_rollout_new(&c, 0, &r), SW_STATUS_OK);
  pthread_t th[4];
  observer obs[4];
  for (int k = 0; k < 4; k++) {
    obs[k] = (observer){r, k};
    assert_int_equal(pthread_create(&th[k], NULL, observe_many, &obs[k]), 0);
  }
  for (int i = 0; i < 2000; i++) {
    sw_rollout_tick(r, i * 0.001, NULL, 0);
    json_decref(sw_rollout_evidence_json(r));
  }
  for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
  json_t *ev = sw_rollout_evidence_json(r);
  json_t *e = json_object_get(ev, "error_rate");
  int64_t n = json_integer_value(json_object_get(json_object_get(e, "challenger"), "n")) +
              json_integer_value(json_object_get(json_object_get(e, "incumbent"), "n"));
  assert_int_equal(n, 80000);
  json_t *q = json_object_get(ev, "quality");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(q, "challenger"), "n")), 8000);
  json_decref(ev);
  sw_rollout_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grid),
      cmocka_unit_test(test_hand_values),
      cmocka_unit_test(test_supermartingale),
      cmocka_unit_test(test_seq_save_restore),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_no_latency_comparison),
      cmocka_unit_test(test_transitions),
      cmocka_unit_test(test_quality_labels_and_evidence),
      cmocka_unit_test(test_save_restore),
      cmocka_unit_test(test_router),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_aa_tests_at_null_boundary),
      cmocka_unit_test(test_aa_controller),
      cmocka_unit_test(test_shadow),
      cmocka_unit_test(test_power),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
