/* Unit tests of the load generator's pieces (src/serve/loadgen.c): the Poisson arrival
 * schedule (rate, exponential gaps by a Kolmogorov-Smirnov test, determinism per seed),
 * the nearest-rank percentile, and the parsers of the server's metadata, predictions and
 * feedback answers, with allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/loadgen.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void test_poisson_rate_and_gaps(void **state) {
  (void)state;
  const double rate = 1000, horizon = 100; /* 100,000 arrivals expected, sd 316 */
  sw_poisson p;
  sw_poisson_init(&p, rate, 42);
  size_t cap = 200000, n = 0;
  double *gaps = malloc(cap * sizeof *gaps), prev = 0, t;
  assert_non_null(gaps);
  while ((t = sw_poisson_next(&p)) < horizon) {
    assert_true(t > prev);
    assert_true(n < cap);
    gaps[n++] = t - prev;
    prev = t;
  }
  assert_true(fabs((double)n - rate * horizon) < 5 * sqrt(rate * horizon));
  double mean = 0, var = 0;
  for (size_t i = 0; i < n; i++) mean += gaps[i];
  mean /= (double)n;
  for (size_t i = 0; i < n; i++) var += (gaps[i] - mean) * (gaps[i] - mean);
  var /= (double)(n - 1);
  assert_true(fabs(mean * rate - 1) < 0.02);
  assert_true(fabs(sqrt(var) / mean - 1) < 0.03); /* an exponential's coefficient of variation is 1 */
  /* Kolmogorov-Smirnov against Exp(rate): D below the 0.1 % critical value 1.95 / sqrt(n) */
  qsort(gaps, n, sizeof *gaps, cmp_double);
  double d = 0;
  for (size_t i = 0; i < n; i++) {
    double cdf = 1 - exp(-rate * gaps[i]);
    double lo = cdf - (double)i / (double)n, hi = (double)(i + 1) / (double)n - cdf;
    if (lo > d) d = lo;
    if (hi > d) d = hi;
  }
  assert_true(d < 1.95 / sqrt((double)n));
  free(gaps);
}

static void test_poisson_is_seeded(void **state) {
  (void)state;
  sw_poisson a, b, c;
  sw_poisson_init(&a, 50, 7);
  sw_poisson_init(&b, 50, 7);
  sw_poisson_init(&c, 50, 8);
  int differ = 0;
  for (int i = 0; i < 1000; i++) {
    double x = sw_poisson_next(&a), y = sw_poisson_next(&b), z = sw_poisson_next(&c);
    assert_true(x == y);
    differ += x != z;
  }
  assert_true(differ > 990);
}

static void test_percentile(void **state) {
  (void)state;
  double v[1000];
  for (int i = 0; i < 1000; i++) v[i] = i + 1;
  /* nearest rank: the smallest value with at least q*n values at or below it */
  assert_true(sw_loadgen_percentile(v, 10, 0.5) == 5);
  assert_true(sw_loadgen_percentile(v, 10, 0.9) == 9);
  assert_true(sw_loadgen_percentile(v, 10, 0.91) == 10);
  assert_true(sw_loadgen_percentile(v, 10, 0.99) == 10);
  assert_true(sw_loadgen_percentile(v, 10, 0) == 1);
  assert_true(sw_loadgen_percentile(v, 10, 1) == 10);
  assert_true(sw_loadgen_percentile(v, 1000, 0.99) == 990);
  assert_true(sw_loadgen_percentile(v, 1000, 0.999) == 999);
  assert_true(sw_loadgen_percentile(v, 1000, 0.5) == 500);
  assert_true(sw_loadgen_percentile(v, 1, 0.999) == 1);
  assert_true(isnan(sw_loadgen_percentile(v, 0, 0.5)));
  /* a tail that the p99 must see */
  for (int i = 0; i < 100; i++) v[i] = i < 98 ? 1.0 : 50.0;
  assert_true(sw_loadgen_percentile(v, 100, 0.98) == 1.0);
  assert_true(sw_loadgen_percentile(v, 100, 0.99) == 50.0);
}

#define S(x) x, strlen(x)

static const char *META_V1 =
    "{\"model_spec\":{\"name\":\"fm\",\"signature_name\":\"\",\"version\":\"2\"},\"metadata\":{\"signature_def\":"
    "{\"signature_def\":{\"serving_default\":{\"inputs\":{\"image\":{\"dtype\":\"DT_FLOAT\",\"tensor_shape\":{\"dim\":"
    "[{\"size\":\"-1\",\"name\":\"\"},{\"size\":\"28\",\"name\":\"\"},{\"size\":\"28\",\"name\":\"\"}],"
    "\"unknown_rank\":false},\"name\":\"image\"},\"cat\":{\"dtype\":\"DT_INT64\",\"tensor_shape\":{\"dim\":"
    "[{\"size\":\"-1\"},{\"size\":\"1\"}]}}},\"outputs\":{\"probabilities\":{\"dtype\":\"DT_FLOAT\","
    "\"tensor_shape\":{\"dim\":[{\"size\":\"-1\"},{\"size\":\"10\"}]}},\"z\":{}},"
    "\"method_name\":\"tensorflow/serving/predict\"}}},\"class_names\":[],\"sha256\":\"\"}}";

static const char *META_V2 =
    "{\"name\":\"fm\",\"versions\":[\"1\"],\"platform\":\"onnx\",\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
    "\"shape\":[-1,4]}],\"outputs\":[{\"name\":\"out\",\"datatype\":\"FP32\",\"shape\":[-1,3]}]}";

static void test_parse_metadata(void **state) {
  (void)state;
  sw_loadgen_signature sig;
  assert_int_equal(sw_loadgen_parse_metadata(S(META_V1), SW_LOADGEN_V1, &sig), SW_STATUS_OK);
  assert_int_equal(sig.n_in, 2);
  assert_string_equal(sig.in[0].name, "image");
  assert_int_equal(sig.in[0].dtype, SW_DTYPE_F32);
  assert_int_equal(sig.in[0].rank, 2);
  assert_int_equal(sig.in[0].per, 784);
  assert_string_equal(sig.in[1].name, "cat");
  assert_int_equal(sig.in[1].dtype, SW_DTYPE_I64);
  assert_int_equal(sig.in[1].per, 1);
  assert_string_equal(sig.output, "probabilities");

  assert_int_equal(sw_loadgen_parse_metadata(S(META_V2), SW_LOADGEN_V2, &sig), SW_STATUS_OK);
  assert_int_equal(sig.n_in, 1);
  assert_string_equal(sig.in[0].name, "x");
  assert_int_equal(sig.in[0].per, 4);
  assert_string_equal(sig.output, "out");

  /* the wrong protocol's document, a variable dimension, strings, not JSON */
  assert_int_equal(sw_loadgen_parse_metadata(S(META_V2), SW_LOADGEN_V1, &sig), SW_STATUS_FORMAT);
  assert_int_equal(sig.n_in, 0);
  assert_int_equal(sw_loadgen_parse_metadata(S("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,-1]}]}"),
                                             SW_LOADGEN_V2, &sig),
                   SW_STATUS_FORMAT);
  assert_true(strstr(sw_last_error(), "variable") != NULL);
  assert_int_equal(sw_loadgen_parse_metadata(S("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BYTES\",\"shape\":[-1]}]}"),
                                             SW_LOADGEN_V2, &sig),
                   SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_metadata(S("{\"inputs\": ["), SW_LOADGEN_V2, &sig), SW_STATUS_FORMAT);
}

static void test_parse_answer(void **state) {
  (void)state;
  double pred[4];
  int64_t k;
  /* argmax as eval takes it: the first on ties, a null (NaN) is passed over by comparisons */
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[[0.1,0.7,0.2],[0.5,0.5,0.0],[0.1,null,0.3],[null,0.1,0.3]]}"),
                                           SW_LOADGEN_V1, "out", 4, pred, &k),
                   SW_STATUS_OK);
  assert_int_equal(k, 3);
  assert_true(pred[0] == 1 && pred[1] == 0 && pred[2] == 2 && pred[3] == 0);
  /* nested per-example shapes are flattened; several outputs: the named one */
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[{\"a\":[9,9],\"out\":[[1,2],[3,0]]}]}"), SW_LOADGEN_V1,
                                           "out", 1, pred, &k),
                   SW_STATUS_OK);
  assert_int_equal(k, 4);
  assert_true(pred[0] == 2);
  /* one value per example: the value */
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[2.5,-1]}"), SW_LOADGEN_V1, "", 2, pred, &k), SW_STATUS_OK);
  assert_int_equal(k, 1);
  assert_true(pred[0] == 2.5 && pred[1] == -1);
  /* v2: flat data of rows * k */
  assert_int_equal(sw_loadgen_parse_answer(S("{\"outputs\":[{\"name\":\"other\",\"data\":[1]},{\"name\":\"out\",\"shape\":[2,3],"
                                             "\"data\":[0,0,1,3,2,1]}]}"),
                                           SW_LOADGEN_V2, "out", 2, pred, &k),
                   SW_STATUS_OK);
  assert_int_equal(k, 3);
  assert_true(pred[0] == 2 && pred[1] == 0);
  /* wrong counts, ragged rows, strings, not JSON */
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[[1,2]]}"), SW_LOADGEN_V1, "", 2, pred, &k), SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[[1,2],[1]]}"), SW_LOADGEN_V1, "", 2, pred, &k),
                   SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\":[[\"a\"]]}"), SW_LOADGEN_V1, "", 1, pred, &k), SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_answer(S("{\"outputs\":[{\"data\":[1,2,3]}]}"), SW_LOADGEN_V2, "", 2, pred, &k),
                   SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_answer(S("{\"error\":\"x\"}"), SW_LOADGEN_V1, "", 1, pred, &k), SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_answer(S("{\"predictions\": [1,"), SW_LOADGEN_V1, "", 1, pred, &k), SW_STATUS_FORMAT);
  /* a prediction larger than the first buffer grows it */
  char *big = malloc(64 * 1024);
  assert_non_null(big);
  size_t n = (size_t)sprintf(big, "{\"predictions\":[[");
  for (int i = 0; i < 5000; i++) n += (size_t)sprintf(big + n, "%s%d", i ? "," : "", i == 4321 ? 9 : 1);
  n += (size_t)sprintf(big + n, "]]}");
  assert_int_equal(sw_loadgen_parse_answer(big, n, SW_LOADGEN_V1, "", 1, pred, &k), SW_STATUS_OK);
  assert_int_equal(k, 5000);
  assert_true(pred[0] == 4321);
  free(big);
}

static void test_parse_feedback_answer(void **state) {
  (void)state;
  int64_t c[5];
  assert_int_equal(sw_loadgen_parse_feedback_answer(
                       S("{\"joined\": 5, \"unknown\": 1, \"expired\": 2, \"duplicate\": 3, \"invalid\": 4}"), c),
                   SW_STATUS_OK);
  assert_true(c[0] == 5 && c[1] == 1 && c[2] == 2 && c[3] == 3 && c[4] == 4);
  assert_int_equal(sw_loadgen_parse_feedback_answer(S("{\"unknown\": 1}"), c), SW_STATUS_FORMAT);
  assert_true(c[1] == 0);
  assert_int_equal(sw_loadgen_parse_feedback_answer(S("{\"joined\": -1}"), c), SW_STATUS_FORMAT);
  assert_int_equal(sw_loadgen_parse_feedback_answer(S("[]"), c), SW_STATUS_FORMAT);
}

/* Every allocation of the answer parser failing in turn: NOMEM or a result, no leak. */
static void test_allocation_failures(void **state) {
  (void)state;
  double pred[2];
  int64_t k;
  int n;
  for (n = 1; n < 100; n++) {
    long before = sw_alloc_live();
    sw_alloc_fail_after(n);
    sw_status st = sw_loadgen_parse_answer(S("{\"predictions\":[[1,2,3],[3,2,1]]}"), SW_LOADGEN_V1, "", 2, pred, &k);
    sw_alloc_fail_after(0);
    assert_int_equal(sw_alloc_live(), before);
    if (st == SW_STATUS_NOMEM) continue;
    assert_int_equal(st, SW_STATUS_OK);
    assert_true(pred[0] == 2 && pred[1] == 0);
    break;
  }
  assert_true(n > 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_poisson_rate_and_gaps), cmocka_unit_test(test_poisson_is_seeded),
      cmocka_unit_test(test_percentile),            cmocka_unit_test(test_parse_metadata),
      cmocka_unit_test(test_parse_answer),          cmocka_unit_test(test_parse_feedback_answer),
      cmocka_unit_test(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
