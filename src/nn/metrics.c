/* Metric math of the engine: classification counts (confusion matrix, log-loss), binary
 * AUC by Mann-Whitney, and regression errors. Pure functions over the caller's arrays;
 * the trainer feeds them batch by batch and reports what they return. Every sum runs in
 * double and in index order, so a result depends on the data alone. */
#include <math.h>
#include <stdlib.h>

#include "slipway/nn.h"

#define SW__LOG_LOSS_EPS 1e-15

/* ---- classification ----------------------------------------------------------- */

/* Index of the largest probability of one row; the first one on ties. NaN never wins
 * (every comparison with it is false), so a row of NaN predicts class 0. */
static int64_t argmax_row(const float *row, int64_t k) {
  int64_t best = 0;
  for (int64_t j = 1; j < k; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

sw_status sw_metrics_add_classes(sw_class_metrics *m, const float *probs, const int64_t *labels,
                                 int64_t n) {
  if (!m || m->k <= 0 || !m->confusion)
    return sw_error(SW_STATUS_INVALID, "metrics: no class counts (k = %lld)",
                    m ? (long long)m->k : 0LL);
  if (n < 0) return sw_error(SW_STATUS_INVALID, "metrics: negative batch size %lld", (long long)n);
  if (n == 0) return SW_STATUS_OK;
  if (!probs || !labels) return sw_error(SW_STATUS_INVALID, "metrics: batch of %lld without data", (long long)n);

  const int64_t k = m->k;
  /* All labels are checked before anything is counted, so a bad batch leaves m as it was. */
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= k)
      return sw_error(SW_STATUS_INVALID, "metrics: label %lld of example %lld is not in [0, %lld)",
                      (long long)labels[i], (long long)i, (long long)k);

  double loss = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const float *row = probs + (size_t)i * (size_t)k;
    int64_t truth = labels[i];
    m->confusion[truth * k + argmax_row(row, k)]++;
    /* Clipped by comparisons rather than fmin/fmax, so a NaN probability stays NaN and
     * shows in the loss instead of being clipped into a finite number. */
    double p = row[truth];
    if (p < SW__LOG_LOSS_EPS) p = SW__LOG_LOSS_EPS;
    if (p > 1.0) p = 1.0;
    loss += -log(p);
  }
  m->log_loss_sum += loss;
  m->n += n;
  return SW_STATUS_OK;
}

double sw_metrics_accuracy(const sw_class_metrics *m) {
  if (m->n == 0) return NAN;
  int64_t correct = 0;
  for (int64_t c = 0; c < m->k; c++) correct += m->confusion[c * m->k + c];
  return (double)correct / (double)m->n;
}

double sw_metrics_log_loss(const sw_class_metrics *m) {
  if (m->n == 0) return NAN;
  return m->log_loss_sum / (double)m->n;
}

double sw_metrics_precision(const sw_class_metrics *m, int64_t c) {
  SW_ASSERT(c >= 0 && c < m->k);
  int64_t predicted = 0; /* column c */
  for (int64_t t = 0; t < m->k; t++) predicted += m->confusion[t * m->k + c];
  if (predicted == 0) return 0.0;
  return (double)m->confusion[c * m->k + c] / (double)predicted;
}

double sw_metrics_recall(const sw_class_metrics *m, int64_t c) {
  SW_ASSERT(c >= 0 && c < m->k);
  int64_t support = sw_metrics_support(m, c);
  if (support == 0) return 0.0;
  return (double)m->confusion[c * m->k + c] / (double)support;
}

int64_t sw_metrics_support(const sw_class_metrics *m, int64_t c) {
  SW_ASSERT(c >= 0 && c < m->k);
  int64_t support = 0; /* row c */
  for (int64_t p = 0; p < m->k; p++) support += m->confusion[c * m->k + p];
  return support;
}

/* ---- AUC ------------------------------------------------------------------------ */

typedef struct {
  float score;
  int64_t label;
} scored_label;

static int compare_score(const void *a, const void *b) {
  float x = ((const scored_label *)a)->score;
  float y = ((const scored_label *)b)->score;
  return (x > y) - (x < y);
}

/* AUC = U / (P * N), where U counts the (positive, negative) pairs with the positive
 * scored higher, and half of those scored equal. After sorting by score, each group of
 * equal scores adds pos_in_group * (negatives below it + neg_in_group / 2). */
double sw_metrics_auc(const float *scores, const int64_t *labels, size_t n) {
  double auc = NAN;
  scored_label *sorted = NULL;
  if (n == 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (labels[i] != 0 && labels[i] != 1) {
      sw_error(SW_STATUS_INVALID, "auc: label %lld of example %zu is not 0 or 1",
               (long long)labels[i], i);
      goto out;
    }
    if (isnan(scores[i])) {
      sw_error(SW_STATUS_INVALID, "auc: score of example %zu is NaN", i);
      goto out;
    }
  }
  sorted = sw_malloc(n * sizeof *sorted);
  if (!sorted) {
    sw_error(SW_STATUS_NOMEM, "auc: out of memory for %zu scores", n);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    sorted[i].score = scores[i];
    sorted[i].label = labels[i];
  }
  qsort(sorted, n, sizeof *sorted, compare_score);

  double u = 0.0, neg_below = 0.0, pos = 0.0;
  size_t i = 0;
  while (i < n) {
    double pos_g = 0.0, neg_g = 0.0;
    size_t j = i;
    for (; j < n && sorted[j].score == sorted[i].score; j++) {
      if (sorted[j].label) pos_g += 1.0;
      else neg_g += 1.0;
    }
    u += pos_g * (neg_below + 0.5 * neg_g);
    neg_below += neg_g;
    pos += pos_g;
    i = j;
  }
  if (pos > 0.0 && neg_below > 0.0) auc = u / (pos * neg_below);
out:
  sw_free(sorted);
  return auc;
}

/* ---- regression ----------------------------------------------------------------- */

double sw_metrics_rmse(const float *pred, const float *target, size_t n) {
  if (n == 0) return NAN;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)pred[i] - (double)target[i];
    sum += d * d;
  }
  return sqrt(sum / (double)n);
}

double sw_metrics_mae(const float *pred, const float *target, size_t n) {
  if (n == 0) return NAN;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += fabs((double)pred[i] - (double)target[i]);
  return sum / (double)n;
}
