/* Unit tests of the metric math (src/nn/metrics.c): hand-computed cases (perfect and
 * all-wrong classifiers, a 3-class confusion matrix, AUC ties, one-class AUC) and one
 * comparison with numbers computed independently in Python with numpy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "slipway/nn.h"

#define K_MAX 4

/* A sw_class_metrics over a zeroed confusion matrix of the test's own. */
typedef struct {
  sw_class_metrics m;
  int64_t confusion[K_MAX * K_MAX];
} class_counts;

static void counts_init(class_counts *c, int64_t k) {
  assert_true(k <= K_MAX);
  memset(c, 0, sizeof *c);
  c->m.k = k;
  c->m.confusion = c->confusion;
}

static void assert_close(double got, double want, double tol) {
  if (!(fabs(got - want) <= tol)) fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

/* ---- classification, by hand ---------------------------------------------------- */

static void test_perfect_classifier(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 2);
  const float probs[] = {0.9f, 0.1f, 0.2f, 0.8f, 1.0f, 0.0f};
  const int64_t labels[] = {0, 1, 0};
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, labels, 3), SW_STATUS_OK);
  assert_int_equal(c.m.n, 3);
  assert_close(sw_metrics_accuracy(&c.m), 1.0, 0.0);
  for (int64_t k = 0; k < 2; k++) {
    assert_close(sw_metrics_precision(&c.m, k), 1.0, 0.0);
    assert_close(sw_metrics_recall(&c.m, k), 1.0, 0.0);
  }
  assert_int_equal(sw_metrics_support(&c.m, 0), 2);
  assert_int_equal(sw_metrics_support(&c.m, 1), 1);
  /* the probabilities as the float32 the function sees; -log(1) = 0 */
  double want = (-log((double)0.9f) - log((double)0.8f) - 0.0) / 3.0;
  assert_close(sw_metrics_log_loss(&c.m), want, 1e-15);
}

static void test_all_wrong_classifier(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 2);
  const float probs[] = {0.0f, 1.0f, 1.0f, 0.0f};
  const int64_t labels[] = {0, 1};
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, labels, 2), SW_STATUS_OK);
  assert_close(sw_metrics_accuracy(&c.m), 0.0, 0.0);
  for (int64_t k = 0; k < 2; k++) {
    assert_close(sw_metrics_precision(&c.m, k), 0.0, 0.0);
    assert_close(sw_metrics_recall(&c.m, k), 0.0, 0.0);
    assert_int_equal(sw_metrics_support(&c.m, k), 1);
  }
  /* p_true = 0 is clipped to 1e-15: the loss is finite, -log(1e-15) = 34.5387763949... */
  assert_close(sw_metrics_log_loss(&c.m), 34.538776394910684, 1e-12);
  assert_int_equal(c.confusion[0 * 2 + 1], 1);
  assert_int_equal(c.confusion[1 * 2 + 0], 1);
}

/* true 0 -> predicted 0, 0, 1; true 1 -> 1, 1, 1, 2; true 2 -> 0, 0, 2:
 *             pred 0  pred 1  pred 2   support  recall
 *   true 0      2       1       0         3      2/3
 *   true 1      0       3       1         4      3/4
 *   true 2      2       0       1         3      1/3
 *   precision  2/4     3/4     1/2       accuracy 6/10
 * Given in two batches, so the counts accumulate. */
static void test_three_class_confusion(void **state) {
  (void)state;
  static const int64_t truth[10] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2};
  static const int64_t predicted[10] = {0, 0, 1, 1, 1, 1, 2, 0, 0, 2};
  float probs[10 * 3];
  for (int i = 0; i < 10; i++)
    for (int j = 0; j < 3; j++) probs[i * 3 + j] = j == predicted[i] ? 0.5f : 0.25f;
  class_counts c;
  counts_init(&c, 3);
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, truth, 4), SW_STATUS_OK);
  assert_int_equal(sw_metrics_add_classes(&c.m, probs + 4 * 3, truth + 4, 6), SW_STATUS_OK);
  assert_int_equal(c.m.n, 10);
  static const int64_t want_confusion[9] = {2, 1, 0, 0, 3, 1, 2, 0, 1};
  for (int i = 0; i < 9; i++) assert_int_equal(c.confusion[i], want_confusion[i]);
  assert_close(sw_metrics_accuracy(&c.m), 0.6, 1e-15);
  assert_close(sw_metrics_precision(&c.m, 0), 2.0 / 4.0, 1e-15);
  assert_close(sw_metrics_precision(&c.m, 1), 3.0 / 4.0, 1e-15);
  assert_close(sw_metrics_precision(&c.m, 2), 1.0 / 2.0, 1e-15);
  assert_close(sw_metrics_recall(&c.m, 0), 2.0 / 3.0, 1e-15);
  assert_close(sw_metrics_recall(&c.m, 1), 3.0 / 4.0, 1e-15);
  assert_close(sw_metrics_recall(&c.m, 2), 1.0 / 3.0, 1e-15);
  assert_int_equal(sw_metrics_support(&c.m, 0), 3);
  assert_int_equal(sw_metrics_support(&c.m, 1), 4);
  assert_int_equal(sw_metrics_support(&c.m, 2), 3);
  /* p_true is 0.5 for the 6 right and 0.25 for the 4 wrong */
  assert_close(sw_metrics_log_loss(&c.m), (6 * log(2.0) + 4 * log(4.0)) / 10.0, 1e-15);
}

/* A class never predicted and never present: precision and recall are 0, not NaN. */
static void test_undefined_precision_recall(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 3);
  const float probs[] = {0.6f, 0.3f, 0.1f, 0.3f, 0.6f, 0.1f};
  const int64_t labels[] = {0, 1};
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, labels, 2), SW_STATUS_OK);
  assert_close(sw_metrics_precision(&c.m, 2), 0.0, 0.0);
  assert_close(sw_metrics_recall(&c.m, 2), 0.0, 0.0);
  assert_int_equal(sw_metrics_support(&c.m, 2), 0);
}

/* Equal top probabilities predict the first of them (as numpy's argmax). */
static void test_argmax_tie_takes_first(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 3);
  const float probs[] = {0.2f, 0.4f, 0.4f};
  const int64_t labels[] = {2};
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, labels, 1), SW_STATUS_OK);
  assert_int_equal(c.confusion[2 * 3 + 1], 1);
  assert_int_equal(c.confusion[2 * 3 + 2], 0);
}

static void test_empty_is_nan(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 2);
  assert_int_equal(sw_metrics_add_classes(&c.m, NULL, NULL, 0), SW_STATUS_OK);
  assert_true(isnan(sw_metrics_accuracy(&c.m)));
  assert_true(isnan(sw_metrics_log_loss(&c.m)));
  assert_true(isnan(sw_metrics_rmse(NULL, NULL, 0)));
  assert_true(isnan(sw_metrics_mae(NULL, NULL, 0)));
}

/* A label out of [0, k) is INVALID, with a message, and nothing of the batch counts. */
static void test_bad_labels(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 2);
  const float probs[] = {0.9f, 0.1f, 0.2f, 0.8f};
  const int64_t too_big[] = {0, 2};
  const int64_t negative[] = {-1, 0};
  sw_clear_error();
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, too_big, 2), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "label 2 of example 1"));
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, negative, 2), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "label -1 of example 0"));
  assert_int_equal(c.m.n, 0);
  assert_close(c.m.log_loss_sum, 0.0, 0.0);
  for (int i = 0; i < 4; i++) assert_int_equal(c.confusion[i], 0);
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, too_big, -1), SW_STATUS_INVALID);
  sw_class_metrics none = {0};
  assert_int_equal(sw_metrics_add_classes(&none, probs, too_big, 2), SW_STATUS_INVALID);
}

/* A NaN probability shows in the loss rather than being clipped away. */
static void test_nan_probability_propagates(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 2);
  const float probs[] = {NAN, 0.5f};
  const int64_t labels[] = {0};
  assert_int_equal(sw_metrics_add_classes(&c.m, probs, labels, 1), SW_STATUS_OK);
  assert_true(isnan(sw_metrics_log_loss(&c.m)));
}

/* ---- AUC, by hand ----------------------------------------------------------------- */

static void test_auc_perfect_and_reversed(void **state) {
  (void)state;
  const float scores[] = {0.1f, 0.2f, 0.7f, 0.9f};
  const int64_t up[] = {0, 0, 1, 1};
  const int64_t down[] = {1, 1, 0, 0};
  assert_close(sw_metrics_auc(scores, up, 4), 1.0, 0.0);
  assert_close(sw_metrics_auc(scores, down, 4), 0.0, 0.0);
}

/* positives 0.4, 0.8; negatives 0.1, 0.4: pairs 0.4>0.1 (1), 0.4=0.4 (1/2), 0.8>0.1 (1),
 * 0.8>0.4 (1): U = 3.5 of 4 pairs. Given unsorted; the caller's arrays stay as they were. */
static void test_auc_ties_count_half(void **state) {
  (void)state;
  float scores[] = {0.8f, 0.4f, 0.1f, 0.4f};
  int64_t labels[] = {1, 0, 0, 1};
  const float scores_before[] = {0.8f, 0.4f, 0.1f, 0.4f};
  const int64_t labels_before[] = {1, 0, 0, 1};
  assert_close(sw_metrics_auc(scores, labels, 4), 0.875, 0.0);
  assert_memory_equal(scores, scores_before, sizeof scores);
  assert_memory_equal(labels, labels_before, sizeof labels);

  const float all_tied[] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
  const int64_t mixed[] = {1, 0, 0, 1, 0};
  assert_close(sw_metrics_auc(all_tied, mixed, 5), 0.5, 0.0);
  /* -0 and +0 are one score */
  const float zeros[] = {-0.0f, 0.0f};
  const int64_t two[] = {1, 0};
  assert_close(sw_metrics_auc(zeros, two, 2), 0.5, 0.0);
}

static void test_auc_one_class_is_nan(void **state) {
  (void)state;
  const float scores[] = {0.1f, 0.5f, 0.9f};
  const int64_t ones[] = {1, 1, 1};
  const int64_t zeros[] = {0, 0, 0};
  assert_true(isnan(sw_metrics_auc(scores, ones, 3)));
  assert_true(isnan(sw_metrics_auc(scores, zeros, 3)));
  assert_true(isnan(sw_metrics_auc(NULL, NULL, 0)));
}

/* Labels other than 0/1 and NaN scores give NaN, with the reason in sw_last_error(). */
static void test_auc_bad_input_is_nan(void **state) {
  (void)state;
  const float scores[] = {0.1f, 0.5f, 0.9f};
  const int64_t labels[] = {0, 2, 1};
  sw_clear_error();
  assert_true(isnan(sw_metrics_auc(scores, labels, 3)));
  assert_non_null(strstr(sw_last_error(), "label 2 of example 1"));
  const float nan_scores[] = {0.1f, NAN, 0.9f};
  const int64_t good[] = {0, 1, 1};
  assert_true(isnan(sw_metrics_auc(nan_scores, good, 3)));
  assert_non_null(strstr(sw_last_error(), "NaN"));
}

/* The copy's allocation failing gives NaN and leaks nothing. */
static void test_auc_out_of_memory(void **state) {
  (void)state;
  const float scores[] = {0.1f, 0.9f};
  const int64_t labels[] = {0, 1};
  long live = sw_alloc_live();
  sw_alloc_fail_after(1);
  double auc = sw_metrics_auc(scores, labels, 2);
  sw_alloc_fail_after(0);
  assert_true(isnan(auc));
  assert_int_equal(sw_alloc_live(), live);
  assert_close(sw_metrics_auc(scores, labels, 2), 1.0, 0.0);
}

/* ---- regression, by hand ------------------------------------------------------------ */

static void test_rmse_mae(void **state) {
  (void)state;
  const float pred[] = {1.0f, 2.0f, 3.0f};
  const float target[] = {1.0f, 4.0f, 0.0f};
  /* differences 0, -2, 3 */
  assert_close(sw_metrics_mae(pred, target, 3), 5.0 / 3.0, 1e-15);
  assert_close(sw_metrics_rmse(pred, target, 3), sqrt(13.0 / 3.0), 1e-15);
  assert_close(sw_metrics_mae(pred, pred, 3), 0.0, 0.0);
  assert_close(sw_metrics_rmse(pred, pred, 3), 0.0, 0.0);
}

/* ---- against numpy ------------------------------------------------------------------ */

/* Produced by /usr/bin/python3 (numpy 1.24) with the script below, which printed the
 * inputs (floats with 9 significant digits, so they read back as the same float32) and
 * the results (17 digits). numpy's argmax, float64 log and mean stand in for
 * sklearn.metrics (not installed); the AUC counts every (positive, negative) pair
 * by brute force, ties as one half, independently of the sort-based code under test.
 *
 * import numpy as np
 * rng = np.random.default_rng(20240611)
 * n, k = 24, 3
 * logits = rng.normal(size=(n, k)).astype(np.float32)
 * e = np.exp(logits - logits.max(axis=1, keepdims=True))
 * probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
 * labels = rng.integers(0, k, size=n)
 * pred = probs.argmax(axis=1)
 * conf = np.zeros((k, k), dtype=np.int64)
 * for t, p in zip(labels, pred): conf[t, p] += 1
 * acc = np.trace(conf) / n
 * prec = [conf[c, c] / conf[:, c].sum() if conf[:, c].sum() else 0.0 for c in range(k)]
 * rec = [conf[c, c] / conf[c, :].sum() if conf[c, :].sum() else 0.0 for c in range(k)]
 * sup = conf.sum(axis=1)
 * p_true = np.clip(probs[np.arange(n), labels].astype(np.float64), 1e-15, 1.0)
 * ll = float(np.mean(-np.log(p_true)))
 * m = 30
 * scores = np.round(rng.uniform(size=m), 1).astype(np.float32)  # rounding makes ties
 * blab = rng.integers(0, 2, size=m)
 * s64 = scores.astype(np.float64)
 * pos = s64[blab == 1]; neg = s64[blab == 0]
 * u = sum((1.0 if a > b else 0.5 if a == b else 0.0) for a in pos for b in neg)
 * auc = u / (len(pos) * len(neg))
 * r = 17
 * pr = rng.normal(size=r).astype(np.float32)
 * tg = rng.normal(size=r).astype(np.float32)
 * d = pr.astype(np.float64) - tg.astype(np.float64)
 * rmse = float(np.sqrt(np.mean(d * d))); mae = float(np.mean(np.abs(d)))
 */
static const float REF_PROBS[24 * 3] = {
    0.315413535f, 0.2321399f, 0.45244652f, 0.0751835406f, 0.598413229f, 0.32640326f, 0.279753685f,
    0.638101339f, 0.0821449906f, 0.300405949f, 0.169400007f, 0.530194044f, 0.663695455f,
    0.168598309f, 0.167706221f, 0.111548796f, 0.220701277f, 0.667749882f, 0.506906211f,
    0.270387292f, 0.222706527f, 0.202069461f, 0.585126996f, 0.212803498f, 0.286136568f,
    0.183873326f, 0.529990137f, 0.210382417f, 0.675384343f, 0.114233226f, 0.240981922f,
    0.141731933f, 0.617286146f, 0.0485232882f, 0.827456236f, 0.124020427f, 0.258625448f,
    0.605263889f, 0.136110693f, 0.18574509f, 0.369967222f, 0.444287717f, 0.104159489f,
    0.291771472f, 0.604069054f, 0.367006034f, 0.215939388f, 0.417054564f, 0.139928102f,
    0.75597024f, 0.104101673f, 0.263632596f, 0.152300805f, 0.584066629f, 0.122735754f,
    0.779135466f, 0.0981287658f, 0.132111803f, 0.299518377f, 0.568369806f, 0.120146088f,
    0.33213535f, 0.547718585f, 0.173694596f, 0.431998491f, 0.394306958f, 0.216364071f,
    0.386667162f, 0.396968722f, 0.0324160308f, 0.873997331f, 0.0935866982f
};
static const int64_t REF_LABELS[24] = {
    2, 0, 2, 1, 1, 2, 0, 1, 1, 2, 1, 0, 2, 1, 2, 0, 2, 0, 0, 1, 2, 1, 2, 1
};
static const int64_t REF_CONFUSION[3 * 3] = {1, 3, 2, 1, 3, 5, 0, 4, 5};
#define REF_ACCURACY 0.375
static const double REF_PRECISION[3] = {0.5, 0.29999999999999999, 0.41666666666666669};
static const double REF_RECALL[3] = {0.16666666666666666, 0.33333333333333331, 0.55555555555555558};
static const int64_t REF_SUPPORT[3] = {6, 9, 9};
#define REF_LOG_LOSS 1.407979821402966
static const float REF_SCORES[30] = {
    0.300000012f, 0.0f, 0.100000001f, 0.600000024f, 0.200000003f, 0.200000003f, 0.800000012f,
    0.600000024f, 0.400000006f, 0.699999988f, 0.600000024f, 0.100000001f, 0.899999976f, 0.5f,
    0.300000012f, 0.5f, 0.400000006f, 0.600000024f, 0.100000001f, 0.400000006f, 0.600000024f,
    0.699999988f, 0.100000001f, 0.699999988f, 0.800000012f, 0.899999976f, 0.300000012f,
    0.400000006f, 0.200000003f, 0.899999976f
};
static const int64_t REF_BINARY[30] = {
    1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1
};
#define REF_AUC 0.46888888888888891
static const float REF_PRED[17] = {
    1.61337745f, -0.368214548f, -0.513043165f, -0.26516512f, 0.0373416021f, 0.701168537f,
    -0.698835731f, -0.8240273f, 0.0381573178f, 0.338946491f, 0.87725544f, -0.476753175f,
    0.96701169f, -1.01989293f, 1.38577819f, -1.09207189f, -0.0862642154f
};
static const float REF_TARGET[17] = {
    0.195294335f, 1.01316845f, 1.46016753f, 0.0492310561f, 1.89564443f, -0.819525421f,
    0.327085793f, -0.236900628f, 0.572426677f, -0.951857686f, -1.09783709f, 1.28316069f,
    1.06403041f, 0.561118245f, -0.70221287f, 0.592070937f, 0.447157562f
};
#define REF_RMSE 1.4145070703066522
#define REF_MAE 1.2719284383689655

static void test_against_numpy(void **state) {
  (void)state;
  class_counts c;
  counts_init(&c, 3);
  /* in three uneven batches: the counts must not depend on the split */
  assert_int_equal(sw_metrics_add_classes(&c.m, REF_PROBS, REF_LABELS, 5), SW_STATUS_OK);
  assert_int_equal(sw_metrics_add_classes(&c.m, REF_PROBS + 5 * 3, REF_LABELS + 5, 11), SW_STATUS_OK);
  assert_int_equal(sw_metrics_add_classes(&c.m, REF_PROBS + 16 * 3, REF_LABELS + 16, 8), SW_STATUS_OK);
  assert_int_equal(c.m.n, 24);
  for (int i = 0; i < 9; i++) assert_int_equal(c.confusion[i], REF_CONFUSION[i]);
  assert_close(sw_metrics_accuracy(&c.m), REF_ACCURACY, 1e-15);
  for (int64_t k = 0; k < 3; k++) {
    assert_close(sw_metrics_precision(&c.m, k), REF_PRECISION[k], 1e-15);
    assert_close(sw_metrics_recall(&c.m, k), REF_RECALL[k], 1e-15);
    assert_int_equal(sw_metrics_support(&c.m, k), REF_SUPPORT[k]);
  }
  /* numpy's mean sums pairwise, ours in index order: a few ulps apart at most */
  assert_close(sw_metrics_log_loss(&c.m), REF_LOG_LOSS, 1e-13);
  assert_close(sw_metrics_auc(REF_SCORES, REF_BINARY, 30), REF_AUC, 1e-15);
  assert_close(sw_metrics_rmse(REF_PRED, REF_TARGET, 17), REF_RMSE, 1e-13);
  assert_close(sw_metrics_mae(REF_PRED, REF_TARGET, 17), REF_MAE, 1e-13);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_perfect_classifier),
      cmocka_unit_test(test_all_wrong_classifier),
      cmocka_unit_test(test_three_class_confusion),
      cmocka_unit_test(test_undefined_precision_recall),
      cmocka_unit_test(test_argmax_tie_takes_first),
      cmocka_unit_test(test_empty_is_nan),
      cmocka_unit_test(test_bad_labels),
      cmocka_unit_test(test_nan_probability_propagates),
      cmocka_unit_test(test_auc_perfect_and_reversed),
      cmocka_unit_test(test_auc_ties_count_half),
      cmocka_unit_test(test_auc_one_class_is_nan),
      cmocka_unit_test(test_auc_bad_input_is_nan),
      cmocka_unit_test(test_auc_out_of_memory),
      cmocka_unit_test(test_rmse_mae),
      cmocka_unit_test(test_against_numpy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
