/* Anytime-valid sequential tests (docs/ROLLOUT.md): a Bernoulli e-process against a
 * per-observation null bound p, mixed over a fixed grid of odds ratios, in log space.
 * The rollout controller (src/serve/rollout.c) builds its count tests (challenger vs
 * incumbent) and its objective tests (challenger vs an SLO) on it. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "slipway/eval.h"

/* Grid: SW_SEQ_GRID odds ratios spaced evenly in log r from 1.05 to 1000, equal weights.
 * The lower end is about the smallest effect worth finding (a 2-point accuracy drop from
 * 86 % is a ratio of 1.14 in wrong predictions), the upper end covers a challenger that
 * fails where the incumbent almost never does. */
#define GRID_LO 1.05
#define GRID_HI 1000.0

static double g_ratio[SW_SEQ_GRID];
static double g_log_ratio[SW_SEQ_GRID];
static double g_log_weight[SW_SEQ_GRID];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void grid_init(void) {
  double lo = log(GRID_LO), hi = log(GRID_HI);
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    g_log_ratio[j] = lo + (hi - lo) * j / (SW_SEQ_GRID - 1);
    g_ratio[j] = exp(g_log_ratio[j]);
    g_log_weight[j] = -log((double)SW_SEQ_GRID);
  }
}

const double *sw_seq_grid_ratios(void) {
  pthread_once(&g_once, grid_init);
  return g_ratio;
}

const double *sw_seq_grid_log_weights(void) {
  pthread_once(&g_once, grid_init);
  return g_log_weight;
}

void sw_seq_init(sw_seq_test *t) {
  pthread_once(&g_once, grid_init);
  memset(t, 0, sizeof *t);
  t->cache_p = -1;
}

/* Under alternative r the probability of x = 1 is q = p r / (p r + 1 - p), so
 *   log(q / p)             = log r - log1p(p (r - 1))
 *   log((1 - q) / (1 - p)) =       - log1p(p (r - 1))
 * both exact in floating point for p near 0 and near 1. */
static void cache_for(sw_seq_test *t, double p) {
  if (t->cache_p == p) return;
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    double l = log1p(p * (g_ratio[j] - 1));
    t->inc0[j] = -l;
    t->inc1[j] = g_log_ratio[j] - l;
  }
  t->cache_p = p;
}

static void flush(sw_seq_test *t) {
  if (t->pending_zeros == 0) return;
  cache_for(t, t->pending_p);
  double k = (double)t->pending_zeros;
  for (int j = 0; j < SW_SEQ_GRID; j++) t->log_lr[j] += k * t->inc0[j];
  t->pending_zeros = 0;
}

void sw_seq_observe(sw_seq_test *t, bool x, double p) {
  /* p >= 1: the null allows x = 1 always, nothing to learn; NaN: nothing known */
  if (!(p < 1)) return;
  if (p <= 0) {
    if (!x) return;
    t->n++;
    t->events++;
    t->certain = true;
    return;
  }
  t->n++;
  if (!x) {
    /* every ratio only falls on x = 0: count now, add when next needed */
    if (t->pending_zeros > 0 && t->pending_p != p) flush(t);
    t->pending_p = p;
    t->pending_zeros++;
    return;
  }
  flush(t);
  cache_for(t, p);
  for (int j = 0; j < SW_SEQ_GRID; j++) t->log_lr[j] += t->inc1[j];
  t->events++;
}

double sw_seq_log_e(const sw_seq_test *t) {
  pthread_once(&g_once, grid_init);
  if (t->certain) return INFINITY;
  double term[SW_SEQ_GRID];
  double m = -INFINITY;
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    double l = t->log_lr[j];
    if (t->pending_zeros > 0) l -= (double)t->pending_zeros * log1p(t->pending_p * (g_ratio[j] - 1));
    term[j] = g_log_weight[j] + l;
    if (term[j] > m) m = term[j];
  }
  double s = 0;
  for (int j = 0; j < SW_SEQ_GRID; j++) s += exp(term[j] - m);
  return m + log(s);
}

double sw_seq_e(const sw_seq_test *t) {
  double l = sw_seq_log_e(t);
  if (l > log(1e300)) return 1e300;
  return exp(l);
}

bool sw_seq_crossed(const sw_seq_test *t, double alpha) {
  if (t->certain) return true;
  double bound = -log(alpha);
  /* the mixture is at most its largest ratio (weights sum to 1) and pending zeros only
   * lower it: most looks end here without an exp */
  double m = -INFINITY;
  for (int j = 0; j < SW_SEQ_GRID; j++)
    if (t->log_lr[j] > m) m = t->log_lr[j];
  if (m < bound) return false;
  return sw_seq_log_e(t) >= bound;
}

json_t *sw_seq_save(const sw_seq_test *t) {
  json_t *lr = json_array();
  json_t *o = NULL;
  if (!lr) return NULL;
  for (int j = 0; j < SW_SEQ_GRID; j++)
    if (json_array_append_new(lr, json_real(t->log_lr[j]))) goto fail;
  o = json_pack("{s:I, s:I, s:I, s:f, s:b, s:o}", "n", (json_int_t)t->n, "events", (json_int_t)t->events,
                "pending_zeros", (json_int_t)t->pending_zeros, "pending_p", t->pending_p, "certain", (int)t->certain,
                "log_lr", lr);
  return o; /* json_pack's "o" took lr even on failure */
fail:
  json_decref(lr);
  return NULL;
}

sw_status sw_seq_restore(const json_t *saved, sw_seq_test *t) {
  json_t *lr = NULL;
  json_int_t n = 0, events = 0, pending = 0;
  double pending_p = 0;
  int certain = 0;
  json_error_t err;
  if (json_unpack_ex((json_t *)saved, &err, JSON_STRICT, "{s:I, s:I, s:I, s:F, s:b, s:o}", "n", &n, "events",
                     &events, "pending_zeros", &pending, "pending_p", &pending_p, "certain", &certain, "log_lr", &lr))
    return sw_error(SW_STATUS_FORMAT, "sequential test: %s", err.text);
  if (n < 0 || events < 0 || events > n || pending < 0 || pending > n - events)
    return sw_error(SW_STATUS_FORMAT, "sequential test: inconsistent counts (n %lld, events %lld, pending %lld)",
                    (long long)n, (long long)events, (long long)pending);
  if (!(pending_p >= 0 && pending_p < 1))
    return sw_error(SW_STATUS_FORMAT, "sequential test: pending_p %g is outside [0, 1)", pending_p);
  if (!json_is_array(lr) || json_array_size(lr) != SW_SEQ_GRID)
    return sw_error(SW_STATUS_FORMAT, "sequential test: log_lr must be a list of %d numbers", SW_SEQ_GRID);
  sw_seq_test tmp;
  sw_seq_init(&tmp);
  for (int j = 0; j < SW_SEQ_GRID; j++) {
    json_t *v = json_array_get(lr, (size_t)j);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
      return sw_error(SW_STATUS_FORMAT, "sequential test: log_lr[%d] is not a finite number", j);
    tmp.log_lr[j] = json_number_value(v);
  }
  tmp.n = n;
  tmp.events = events;
  tmp.pending_zeros = pending;
  tmp.pending_p = pending_p;
  tmp.certain = certain != 0;
  *t = tmp;
  return SW_STATUS_OK;
}
