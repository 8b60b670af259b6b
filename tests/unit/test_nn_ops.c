/* The activation, normalization and shape ops: Sigmoid, Tanh, Gelu, Softmax,
 * LogSoftmax, Dropout, BatchNormalization, LayerNormalization, Transpose, Concat,
 * Gather and GlobalAveragePool, each against a plain reference (and PyTorch's numbers
 * where the formula has conventions to get right) and its backward against finite
 * differences. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "nn_check.h"

#define EPS 1e-2
#define GRAD_TOL 2e-2

/* ---- PyTorch's numbers ---------------------------------------------------------------
 * Produced by `/usr/bin/python3 tests/unit/nn_ops_reference.py` (torch 1.13, CPU,
 * float32; layer_norm_y in float64, rounded once); the inputs come from a fixed
 * sequence in that script and are pasted with them. */
static const float gelu_x[16] = {
    0.138700783f, -3.24258685f, -1.91348481f, 0.345338881f, 4.47627926f, -3.28263688f,
    2.02231169f, -2.73569322f, -0.0522655323f, -3.75279689f, -4.16101217f, -1.10352874f,
    -2.22774196f, -1.31929278f, 4.83437204f, 0.353979409f,
};
static const float gelu_y[16] = {
    0.077000685f, -0.00192065281f, -0.0532770418f, 0.219317853f, 4.47626209f, -0.00168815802f,
    1.97868633f, -0.00851483177f, -0.0250434745f, -0.000328256458f, -6.59721627e-05f, -0.148864776f,
    -0.0288466103f, -0.123400964f, 4.83436871f, 0.225953117f,
};
static const float log_softmax_x[15] = {
    -44.4531174f, 89.2657089f, 12.4977417f, 28.8214283f, 107.697472f, 115.379631f,
    132.959198f, 120.077835f, 73.9184265f, 148.554718f, 108.723083f, 140.741852f,
    26.3463364f, 37.6659164f, 14.6687441f,
};
static const float log_softmax_y[15] = {
    -152.150589f, -18.4317627f, -95.1997299f, -78.8760452f, 0.0f, -33.175087f,
    -15.59552f, -28.4768829f, -74.6362915f, -1.19209282e-07f, -32.0187683f, 0.0f,
    -114.395515f, -103.075935f, -126.073105f,
};
static const float layer_norm_x[24] = {
    10.1663952f, 8.86766338f, 9.26530361f, 9.01472187f, 10.5173874f, 9.92823982f,
    8.50944328f, 9.89739037f, 10.977643f, 11.4433069f, 10.0133276f, 10.0710859f,
    9.9449501f, 10.0343542f, 10.6530008f, 8.10753632f, 9.28569221f, 9.35311127f,
    9.49160862f, 9.05085373f, 8.87147331f, 11.8232517f, 9.87461662f, 10.045949f,
};
static const float layer_norm_scale[4] = {
    0.555463076f, 1.23750305f, 0.820163071f, 0.613253653f,
};
static const float layer_norm_b[4] = {
    0.0693273991f, -0.241909683f, -0.175999716f, 0.472826898f,
};
static const float layer_norm_y[24] = {
    0.992363393f, -1.3730011f, -0.278830111f, 0.0911670029f, 0.675035238f, 0.119035564f,
    -1.51448405f, 0.626045644f, 0.390673429f, 1.42298675f, -1.00395525f, -0.0879233778f,
    0.221236035f, 0.212903023f, 0.659150839f, -0.544732213f, 0.0358114541f, 0.206489503f,
    0.833329558f, -0.467074931f, -0.60066843f, 1.70132291f, -0.391394675f, 0.410601705f,
};
static const float batch_norm_x[24] = {
    -1.58404136f, 1.89338791f, -0.360812604f, 2.16200066f, -1.24037433f, 0.237727866f,
    1.82527649f, -0.26888451f, -1.40566552f, 0.324933141f, 1.16240895f, -0.950210869f,
    1.99877596f, 1.59682524f, 1.41484928f, -0.679433644f, 1.27517498f, 2.37992287f,
    -0.592263103f, 2.93214154f, 2.05121827f, 1.3081708f, -0.832899034f, -0.466545016f,
};
static const float batch_norm_scale[2] = {
    1.09705603f, 0.799264848f,
};
static const float batch_norm_b[2] = {
    -0.389079601f, 0.319852084f,
};
static const float batch_norm_running_mean[2] = {
    0.0499138869f, -0.0638242662f,
};
static const float batch_norm_running_var[2] = {
    0.638649046f, 1.36102664f,
};
static const float batch_norm_train_y[24] = {
    -1.98548508f, 0.552729666f, -1.0926367f, 0.748793125f, -0.908274412f, 0.089634724f,
    1.16143429f, -0.252393812f, -1.8552866f, -0.592103124f, 0.0191798992f, -1.52284515f,
    1.27856874f, 1.00720024f, 0.884343088f, -0.529567301f, 0.101489097f, 0.907857001f,
    -1.26157498f, 1.31092763f, 1.31397402f, 0.812321424f, -0.633176148f, -0.385840058f,
};
static const float batch_norm_train_running_mean[2] = {
    0.105230637f, 0.000430725515f,
};
static const float batch_norm_train_running_var[2] = {
    0.82122004f, 1.37781918f,
};
static const float batch_norm_eval_y[24] = {
    -2.63210607f, 2.1415658f, -0.952908039f, 2.51030612f, -0.486205757f, 0.526446283f,
    1.61408043f, 0.179364711f, -2.38723922f, -0.0115444912f, 1.1381079f, -1.76200974f,
    1.73294544f, 1.45756781f, 1.33289564f, -0.101903684f, 1.29290843f, 2.80946088f,
    -1.27063382f, 3.56752396f, 1.76887381f, 1.25980985f, -0.20704326f, 0.0439469256f,
};

static const float *xdata(nn_check *c, int i) { return sw_graph_data(c->g, c->in[i]); }
static float *ydata(nn_check *c) { return sw_graph_data(c->g, c->out); }

/* ---- Sigmoid, Tanh, Gelu -------------------------------------------------------------- */

static void unary_case(sw_op_type op, double (*ref)(double), uint64_t seed, float spread) {
  nn_check c;
  nn_check_input in[1] = {{SW_DTYPE_F32, 3, {2, 3, 5}, NULL, false}};
  nn_check_build(&c, op, NULL, in, 1, seed);
  float *x = sw_graph_data(c.g, c.in[0]);
  float want[30];
  for (int i = 0; i < 30; i++) {
    x[i] *= spread;
    want[i] = (float)ref(x[i]);
  }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static void test_sigmoid_tanh(void **state) {
  (void)state;
  unary_case(SW_OP_SIGMOID, ref_sigmoid, 21, 4.0f);
  unary_case(SW_OP_TANH, tanh, 22, 3.0f);
  /* the tails saturate instead of overflowing to NaN */
  nn_check c;
  const float big[4] = {-200.0f, -90.0f, 90.0f, 200.0f};
  nn_check_input in[1] = {{SW_DTYPE_F32, 1, {4}, big, false}};
  nn_check_build(&c, SW_OP_SIGMOID, NULL, in, 1, 23);
  const float want[4] = {0.0f, 0.0f, 1.0f, 1.0f};
  nn_check_forward(&c, want, 1e-7);
  assert_true(ydata(&c)[1] > 0.0f); /* e^-90 is a normal float, not flushed to 0 */
  nn_check_free(&c);
}

static void test_gelu(void **state) {
  (void)state;
  unary_case(SW_OP_GELU, ref_gelu, 24, 4.0f);
  nn_check c;
  nn_check_input in[1] = {{SW_DTYPE_F32, 2, {4, 4}, gelu_x, false}};
  nn_check_build(&c, SW_OP_GELU, NULL, in, 1, 25);
  nn_check_forward(&c, gelu_y, 1e-6);
  nn_check_gradients(&c, 1e-3, GRAD_TOL);
  nn_check_free(&c);
}

/* ---- Softmax, LogSoftmax ------------------------------------------------------------------ */

static void softmax_case(sw_op_type op, int rank, const int64_t *shape, float spread, uint64_t seed) {
  nn_check c;
  nn_check_input in[1] = {{SW_DTYPE_F32, rank, {0}, NULL, false}};
  memcpy(in[0].shape, shape, sizeof(int64_t) * (size_t)rank);
  nn_check_build(&c, op, NULL, in, 1, seed);
  float *x = sw_graph_data(c.g, c.in[0]);
  int64_t n = sw_graph_elements(c.g, c.in[0]), cols = shape[rank - 1];
  float *want = malloc((size_t)n * sizeof *want);
  for (int64_t i = 0; i < n; i++) x[i] *= spread;
  for (int64_t r = 0; r < n / cols; r++) {
    double sum = 0;
    for (int64_t j = 0; j < cols; j++) sum += exp((double)x[r * cols + j]);
    for (int64_t j = 0; j < cols; j++) {
      double v = x[r * cols + j];
      want[r * cols + j] = (float)(op == SW_OP_SOFTMAX ? exp(v) / sum : v - log(sum));
    }
  }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  free(want);
  nn_check_free(&c);
}

static void test_softmax(void **state) {
  (void)state;
  const int64_t s345[3] = {3, 4, 5}, s7[1] = {7}, s21[2] = {2, 1};
  sw_op_type ops[2] = {SW_OP_SOFTMAX, SW_OP_LOG_SOFTMAX};
  for (int i = 0; i < 2; i++) {
    softmax_case(ops[i], 3, s345, 3.0f, 31);
    softmax_case(ops[i], 1, s7, 1.0f, 32);
    softmax_case(ops[i], 2, s21, 1.0f, 33); /* a single column: softmax is 1 */
  }
  /* an axis other than the last is refused at build */
  sw_graph *g;
  sw_node x, y;
  int64_t s[2] = {2, 3};
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_SOFTMAX, &at);
  at.axis = 0;
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "x", 2, s, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_SOFTMAX, &x, 1, &at, "sm", &y), SW_STATUS_INVALID);
  sw_graph_free(g);
}

/* Logits in the hundreds: exp would overflow without the shift by the row's maximum. */
static void test_softmax_large_logits(void **state) {
  (void)state;
  nn_check c;
  nn_check_input in[1] = {{SW_DTYPE_F32, 2, {3, 5}, log_softmax_x, false}};
  nn_check_build(&c, SW_OP_LOG_SOFTMAX, NULL, in, 1, 34);
  nn_check_forward(&c, log_softmax_y, 1e-6);
  for (int i = 0; i < 15; i++) assert_true(isfinite(ydata(&c)[i]));
  nn_check_free(&c);
  nn_check_build(&c, SW_OP_SOFTMAX, NULL, in, 1, 34);
  float want[15];
  for (int i = 0; i < 15; i++) want[i] = expf(log_softmax_y[i]);
  nn_check_forward(&c, want, 1e-6);
  for (int r = 0; r < 3; r++) {
    double sum = 0;
    for (int j = 0; j < 5; j++) sum += ydata(&c)[r * 5 + j];
    assert_float_equal(sum, 1.0, 1e-6);
  }
  nn_check_free(&c);
}

/* ---- Dropout ------------------------------------------------------------------------------ */

#define DROP_N 100000

/* A dropout of ratio over DROP_N ones, in training mode at (seed, step). */
static void dropout_build(nn_check *c, float ratio, const float *ones) {
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_DROPOUT, &at);
  at.ratio = ratio;
  nn_check_input in[1] = {{SW_DTYPE_F32, 2, {100, DROP_N / 100}, ones, false}};
  nn_check_build(c, SW_OP_DROPOUT, &at, in, 1, 41);
  sw_graph_set_training(c->g, true);
}

static void test_dropout_mask(void **state) {
  (void)state;
  float *ones = malloc(DROP_N * sizeof *ones);
  uint8_t *first = malloc(DROP_N);
  for (int i = 0; i < DROP_N; i++) ones[i] = 1.0f;
  const float ratio = 0.3f, scale = 1.0f / (1.0f - ratio);
  nn_check c;
  dropout_build(&c, ratio, ones);
  sw_graph_set_step(c.g, 1234, 7);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  const float *y = ydata(&c);
  int64_t kept = 0;
  for (int i = 0; i < DROP_N; i++) {
    assert_true(y[i] == 0.0f || y[i] == scale); /* dropped, or scaled by 1 / (1 - ratio) */
    first[i] = y[i] != 0.0f;
    kept += first[i];
  }
  /* 1 - ratio kept; the binomial's standard deviation here is 0.0015 */
  assert_float_equal((double)kept / DROP_N, 1.0 - ratio, 0.01);

  /* the mask is the documented pure function: draw i of the stream (node << 40) ^ step */
  sw_rng r;
  sw_rng_init(&r, 1234, ((uint64_t)c.out << 40) ^ 7u);
  uint64_t threshold = (uint64_t)ldexp(ratio, 32);
  for (int i = 0; i < DROP_N; i++) assert_int_equal(first[i], sw_rng_u32(&r) >= threshold);

  /* the same (seed, step) again, after another step: the same mask */
  sw_graph_set_step(c.g, 1234, 8);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  int64_t same = 0;
  for (int i = 0; i < DROP_N; i++) same += (y[i] != 0.0f) == first[i];
  assert_true(same < DROP_N * 0.7); /* a different step: a different mask (~58% agree) */
  sw_graph_set_step(c.g, 1234, 7);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  for (int i = 0; i < DROP_N; i++) assert_int_equal(y[i] != 0.0f, first[i]);
  sw_graph_set_step(c.g, 1235, 7);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  same = 0;
  for (int i = 0; i < DROP_N; i++) same += (y[i] != 0.0f) == first[i];
  assert_true(same < DROP_N * 0.7); /* a different seed too */

  /* backward: dx = mask * scale * dy, with dy = 2 (y - t) / n from the MSE */
  sw_graph_set_step(c.g, 1234, 7);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  assert_int_equal(sw_graph_backward(c.g, c.loss), SW_STATUS_OK);
  const float *t = sw_graph_data(c.g, c.target), *dx = sw_graph_grad(c.g, c.in[0]);
  float *want = malloc(DROP_N * sizeof *want);
  for (int i = 0; i < DROP_N; i++) want[i] = first[i] ? scale * (2.0f * (y[i] - t[i]) / DROP_N) : 0.0f;
  nn_check_close(dx, want, DROP_N, 1e-6);
  for (int i = 0; i < DROP_N; i++)
    if (!first[i]) assert_true(dx[i] == 0.0f);

  /* inference: the identity, forward and backward */
  sw_graph_set_training(c.g, false);
  nn_check_forward(&c, ones, 0);
  assert_int_equal(sw_graph_backward(c.g, c.loss), SW_STATUS_OK);
  for (int i = 0; i < DROP_N; i++) want[i] = 2.0f * (1.0f - t[i]) / DROP_N;
  nn_check_close(dx, want, DROP_N, 1e-6);
  nn_check_free(&c);

  /* ratio 0 keeps everything; 1 and above are refused when the graph is built (ONNX: [0, 1)) */
  dropout_build(&c, 0.0f, ones);
  nn_check_forward(&c, ones, 0);
  nn_check_free(&c);
  float bad_ratios[2] = {1.0f, 1.5f};
  for (int i = 0; i < 2; i++) {
    sw_graph *g;
    sw_node x, dropped;
    int64_t shape[1] = {4};
    sw_op_attrs at;
    sw_op_attrs_default(SW_OP_DROPOUT, &at);
    at.ratio = bad_ratios[i];
    assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
    assert_int_equal(sw_graph_param(g, "x", 1, shape, &x), SW_STATUS_OK);
    assert_int_equal(sw_graph_op(g, SW_OP_DROPOUT, &x, 1, &at, "d", &dropped), SW_STATUS_INVALID);
    assert_non_null(strstr(sw_last_error(), "ratio"));
    sw_graph_free(g);
  }
  free(want);
  free(first);
  free(ones);
}

static void test_dropout_gradients(void **state) {
  (void)state;
  nn_check c;
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_DROPOUT, &at);
  at.ratio = 0.4f;
  nn_check_input in[1] = {{SW_DTYPE_F32, 2, {4, 8}, NULL, false}};
  nn_check_build(&c, SW_OP_DROPOUT, &at, in, 1, 42);
  sw_graph_set_step(c.g, 99, 3);
  sw_graph_set_training(c.g, true); /* the mask stays fixed across the perturbed passes */
  nn_check_gradients(&c, EPS, GRAD_TOL);
  sw_graph_set_training(c.g, false);
  nn_check_forward(&c, xdata(&c, 0), 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

/* ---- BatchNormalization ------------------------------------------------------------------ */

/* Plain batch norm over [n, ch, sp] in double: training uses (and updates) the batch
 * statistics, inference the running ones. */
static void ref_batch_norm(const float *x, const float *scale, const float *b, float *rm, float *rv, int64_t n,
                           int64_t ch, int64_t sp, bool training, float eps, float momentum, float *y) {
  for (int64_t c = 0; c < ch; c++) {
    double mean = rm[c], var = rv[c];
    if (training) {
      double s = 0, q = 0, m = (double)(n * sp);
      for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < sp; k++) s += x[(i * ch + c) * sp + k];
      mean = s / m;
      for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < sp; k++) q += pow(x[(i * ch + c) * sp + k] - mean, 2);
      var = q / m;
      rm[c] = (float)(rm[c] * (double)momentum + mean * (1 - (double)momentum));
      rv[c] = (float)(rv[c] * (double)momentum + q / (m - 1) * (1 - (double)momentum));
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t k = 0; k < sp; k++) {
        int64_t at = (i * ch + c) * sp + k;
        y[at] = (float)((x[at] - mean) / sqrt(var + eps) * scale[c] + b[c]);
      }
  }
}

static void test_batch_norm_torch(void **state) {
  (void)state;
  nn_check c;
  nn_check_input in[5] = {{SW_DTYPE_F32, 4, {3, 2, 2, 2}, batch_norm_x, false},
                          {SW_DTYPE_F32, 1, {2}, batch_norm_scale, false},
                          {SW_DTYPE_F32, 1, {2}, batch_norm_b, false},
                          {SW_DTYPE_F32, 1, {2}, batch_norm_running_mean, true},
                          {SW_DTYPE_F32, 1, {2}, batch_norm_running_var, true}};
  nn_check_build(&c, SW_OP_BATCH_NORM, NULL, in, 5, 51);
  nn_check_forward(&c, batch_norm_eval_y, 1e-6); /* inference by default */
  nn_check_close(xdata(&c, 3), batch_norm_running_mean, 2, 0); /* untouched */
  nn_check_close(xdata(&c, 4), batch_norm_running_var, 2, 0);
  sw_graph_set_training(c.g, true);
  nn_check_forward(&c, batch_norm_train_y, 1e-6);
  nn_check_close(xdata(&c, 3), batch_norm_train_running_mean, 2, 1e-6);
  nn_check_close(xdata(&c, 4), batch_norm_train_running_var, 2, 1e-6);
  nn_check_free(&c);
}

static void batch_norm_case(int rank, const int64_t *shape, bool training, uint64_t seed) {
  int64_t n = shape[0], ch = shape[1], sp = 1;
  for (int d = 2; d < rank; d++) sp *= shape[d];
  float rm[8], rv[8], rm_want[8], rv_want[8];
  for (int64_t c = 0; c < ch; c++) {
    rm[c] = rm_want[c] = 0.1f * (float)c - 0.2f;
    rv[c] = rv_want[c] = 0.5f + 0.25f * (float)c;
  }
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_BATCH_NORM, &at);
  at.epsilon = 1e-3f;
  at.momentum = 0.8f;
  /* in inference the running statistics are parameters too: their gradient is checked */
  nn_check_input in[5] = {{SW_DTYPE_F32, rank, {0}, NULL, false},
                          {SW_DTYPE_F32, 1, {ch}, NULL, false},
                          {SW_DTYPE_F32, 1, {ch}, NULL, false},
                          {SW_DTYPE_F32, 1, {ch}, rm, training},
                          {SW_DTYPE_F32, 1, {ch}, rv, training}};
  memcpy(in[0].shape, shape, sizeof(int64_t) * (size_t)rank);
  nn_check c;
  nn_check_build(&c, SW_OP_BATCH_NORM, &at, in, 5, seed);
  sw_graph_set_training(c.g, training);
  float want[256];
  ref_batch_norm(xdata(&c, 0), xdata(&c, 1), xdata(&c, 2), rm_want, rv_want, n, ch, sp, training, at.epsilon,
                 at.momentum, want);
  nn_check_forward(&c, want, 1e-5);
  nn_check_close(xdata(&c, 3), rm_want, ch, 1e-6);
  nn_check_close(xdata(&c, 4), rv_want, ch, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void test_batch_norm(void **state) {
  (void)state;
  const int64_t s4[4] = {3, 2, 2, 3}, s3[3] = {2, 3, 5}, s2[2] = {6, 4};
  for (int training = 0; training < 2; training++) {
    batch_norm_case(4, s4, training, 52);
    batch_norm_case(3, s3, training, 53);
    batch_norm_case(2, s2, training, 54);
  }
  /* one value per channel has no batch variance: refused in training, as PyTorch does */
  nn_check c;
  nn_check_input in[5] = {{SW_DTYPE_F32, 2, {1, 3}, NULL, false},
                          {SW_DTYPE_F32, 1, {3}, NULL, false},
                          {SW_DTYPE_F32, 1, {3}, NULL, false},
                          {SW_DTYPE_F32, 1, {3}, NULL, true},
                          {SW_DTYPE_F32, 1, {3}, NULL, true}};
  nn_check_build(&c, SW_OP_BATCH_NORM, NULL, in, 5, 55);
  float *var = sw_graph_data(c.g, c.in[4]);
  for (int i = 0; i < 3; i++) var[i] = 1.0f;
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  sw_graph_set_training(c.g, true);
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "more than one value"));
  nn_check_free(&c);
}

/* ---- LayerNormalization --------------------------------------------------------------------- */

static void test_layer_norm_torch(void **state) {
  (void)state;
  nn_check c;
  nn_check_input in[3] = {{SW_DTYPE_F32, 3, {2, 3, 4}, layer_norm_x, false},
                          {SW_DTYPE_F32, 1, {4}, layer_norm_scale, false},
                          {SW_DTYPE_F32, 1, {4}, layer_norm_b, false}};
  nn_check_build(&c, SW_OP_LAYER_NORM, NULL, in, 3, 61);
  nn_check_forward(&c, layer_norm_y, 1e-6);
  /* the mean near 10 makes a one-pass variance lose digits; the gradients still hold */
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void layer_norm_case(int rank, const int64_t *shape, bool with_bias, uint64_t seed) {
  int64_t d = shape[rank - 1], rows = 1;
  for (int i = 0; i < rank - 1; i++) rows *= shape[i];
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_LAYER_NORM, &at);
  at.epsilon = 1e-3f;
  nn_check_input in[3] = {{SW_DTYPE_F32, rank, {0}, NULL, false},
                          {SW_DTYPE_F32, 1, {d}, NULL, false},
                          {SW_DTYPE_F32, with_bias ? 1 : -1, {d}, NULL, false}};
  memcpy(in[0].shape, shape, sizeof(int64_t) * (size_t)rank);
  nn_check c;
  nn_check_build(&c, SW_OP_LAYER_NORM, &at, in, 3, seed);
  const float *x = xdata(&c, 0), *s = xdata(&c, 1), *b = with_bias ? xdata(&c, 2) : NULL;
  float want[256];
  for (int64_t r = 0; r < rows; r++) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < d; j++) mean += x[r * d + j] / (double)d;
    for (int64_t j = 0; j < d; j++) var += pow(x[r * d + j] - mean, 2) / (double)d;
    for (int64_t j = 0; j < d; j++)
      want[r * d + j] = (float)((x[r * d + j] - mean) / sqrt(var + at.epsilon) * s[j] + (b ? b[j] : 0));
  }
  nn_check_forward(&c, want, 1e-5);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void test_layer_norm(void **state) {
  (void)state;
  const int64_t s3[3] = {2, 3, 6}, s2[2] = {5, 7}, s1[1] = {9};
  for (int b = 0; b < 2; b++) {
    layer_norm_case(3, s3, b, 62);
    layer_norm_case(2, s2, b, 63);
    layer_norm_case(1, s1, b, 64);
  }
}

/* ---- Transpose ---------------------------------------------------------------------------- */

/* Plain reference: output multi-index i reads input at index j with j[perm[d]] = i[d]. */
static void ref_transpose(const void *x, void *y, size_t esize, int rank, const int64_t *shape, const int64_t *perm) {
  int64_t out_shape[SW_NN_MAX_RANK], in_stride[SW_NN_MAX_RANK], total = 1;
  for (int d = rank - 1; d >= 0; d--) {
    in_stride[d] = total;
    total *= shape[d];
  }
  for (int d = 0; d < rank; d++) out_shape[d] = shape[perm[d]];
  for (int64_t o = 0; o < total; o++) {
    int64_t rest = o, src = 0;
    for (int d = rank - 1; d >= 0; d--) {
      src += (rest % out_shape[d]) * in_stride[perm[d]];
      rest /= out_shape[d];
    }
    memcpy((char *)y + o * esize, (const char *)x + src * esize, esize);
  }
}

static void transpose_case(int rank, const int64_t *shape, const int64_t *perm, uint64_t seed) {
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_TRANSPOSE, &at);
  int64_t rev[SW_NN_MAX_RANK];
  if (perm) {
    at.perm_rank = rank;
    memcpy(at.perm, perm, sizeof(int64_t) * (size_t)rank);
  } else {
    for (int d = 0; d < rank; d++) rev[d] = rank - 1 - d; /* the ONNX default: reversed */
    perm = rev;
  }
  nn_check_input in[1] = {{SW_DTYPE_F32, rank, {0}, NULL, false}};
  memcpy(in[0].shape, shape, sizeof(int64_t) * (size_t)rank);
  nn_check c;
  nn_check_build(&c, SW_OP_TRANSPOSE, &at, in, 1, seed);
  for (int d = 0; d < rank; d++) assert_int_equal(sw_graph_shape(c.g, c.out)[d], shape[perm[d]]);
  int64_t n = sw_graph_elements(c.g, c.out);
  float *want = malloc((size_t)n * sizeof *want);
  ref_transpose(xdata(&c, 0), want, sizeof(float), rank, shape, perm);
  nn_check_forward(&c, want, 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  free(want);
  nn_check_free(&c);

  /* int64 values move the same way (a constant: no gradient) */
  int64_t *iv = malloc((size_t)n * sizeof *iv), *iwant = malloc((size_t)n * sizeof *iwant);
  for (int64_t i = 0; i < n; i++) iv[i] = i * 1000003 - 7;
  sw_graph *g;
  sw_node xi, yi;
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "x", SW_DTYPE_I64, rank, shape, iv, &xi), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_TRANSPOSE, &xi, 1, &at, "t", &yi), SW_STATUS_OK);
  assert_int_equal(sw_graph_dtype(g, yi), SW_DTYPE_I64);
  assert_int_equal(sw_graph_alloc(g, 1), SW_STATUS_OK);
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  ref_transpose(iv, iwant, sizeof(int64_t), rank, shape, perm);
  assert_memory_equal(sw_graph_data(g, yi), iwant, (size_t)n * sizeof *iwant);
  sw_graph_free(g);
  free(iv);
  free(iwant);
}

static void test_transpose(void **state) {
  (void)state;
  const int64_t s2[2] = {3, 5}, s3[3] = {2, 3, 4}, s4[4] = {2, 3, 2, 4}, s6[6] = {2, 1, 3, 2, 2, 3};
  const int64_t p3[3] = {1, 0, 2}, p4[4] = {0, 2, 3, 1}, p6[6] = {4, 2, 0, 5, 1, 3}, p6id[6] = {0, 1, 2, 3, 4, 5};
  const int64_t s1[1] = {4}, p1[1] = {0};
  transpose_case(2, s2, NULL, 71);
  transpose_case(3, s3, NULL, 72);
  transpose_case(3, s3, p3, 73);
  transpose_case(4, s4, p4, 74);
  transpose_case(6, s6, p6, 75);
  transpose_case(6, s6, p6id, 76);
  transpose_case(1, s1, p1, 77);
}

/* ---- Concat ------------------------------------------------------------------------------- */

static void concat_case(int rank, int64_t axis, int n_in, const int64_t *sizes, const int64_t *base, uint64_t seed) {
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_CONCAT, &at);
  at.axis = axis;
  int64_t ax = axis < 0 ? axis + rank : axis;
  nn_check_input in[4];
  for (int i = 0; i < n_in; i++) {
    in[i] = (nn_check_input){SW_DTYPE_F32, rank, {0}, NULL, i == 1}; /* the second: no gradient */
    memcpy(in[i].shape, base, sizeof(int64_t) * (size_t)rank);
    in[i].shape[ax] = sizes[i];
  }
  nn_check c;
  nn_check_build(&c, SW_OP_CONCAT, &at, in, n_in, seed);
  int64_t total_axis = 0;
  for (int i = 0; i < n_in; i++) total_axis += sizes[i];
  assert_int_equal(sw_graph_shape(c.g, c.out)[ax], total_axis);
  /* reference: output element (outer, a, inner) comes from the input whose range holds a */
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= base[d];
  for (int d = (int)ax + 1; d < rank; d++) inner *= base[d];
  int64_t n = sw_graph_elements(c.g, c.out);
  float *want = malloc((size_t)n * sizeof *want);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t a = 0; a < total_axis; a++) {
      int i = 0;
      int64_t local = a;
      while (local >= sizes[i]) local -= sizes[i++];
      const float *x = xdata(&c, i);
      for (int64_t k = 0; k < inner; k++)
        want[(o * total_axis + a) * inner + k] = x[(o * sizes[i] + local) * inner + k];
    }
  nn_check_forward(&c, want, 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  assert_null(sw_graph_grad(c.g, c.in[1]));
  free(want);
  nn_check_free(&c);
}

static void test_concat(void **state) {
  (void)state;
  const int64_t base[4] = {2, 3, 4, 2}, sizes[3] = {2, 1, 3}, sizes2[2] = {1, 2};
  concat_case(4, 0, 3, sizes, base, 81);
  concat_case(4, 1, 3, sizes, base, 82);
  concat_case(4, 2, 3, sizes, base, 83);
  concat_case(4, -1, 3, sizes, base, 84);
  concat_case(2, 1, 2, sizes2, base, 85);
  concat_case(1, 0, 3, sizes, base, 86);

  /* int64 columns concatenate too */
  int64_t a[4] = {1, 2, 3, 4}, b[2] = {10, 20}, sa[2] = {2, 2}, sb[2] = {2, 1};
  const int64_t want[6] = {1, 2, 10, 3, 4, 20};
  sw_graph *g;
  sw_node in[2], y;
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "a", SW_DTYPE_I64, 2, sa, a, &in[0]), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "b", SW_DTYPE_I64, 2, sb, b, &in[1]), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_CONCAT, in, 2, NULL, "cat", &y), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 1), SW_STATUS_OK);
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_memory_equal(sw_graph_data(g, y), want, sizeof want);
  sw_graph_free(g);
}

/* ---- Gather (embedding lookup) -------------------------------------------------------------- */

static void test_gather(void **state) {
  (void)state;
  /* repeated indices add up in the gradient; -1 is the last row, as in ONNX */
  int64_t idx[6] = {3, 0, 3, 1, -1, 3};
  nn_check_input in[2] = {{SW_DTYPE_F32, 2, {6, 4}, NULL, false}, {SW_DTYPE_I64, 2, {2, 3}, idx, false}};
  nn_check c;
  nn_check_build(&c, SW_OP_GATHER, NULL, in, 2, 91);
  assert_int_equal(sw_graph_rank(c.g, c.out), 3);
  assert_int_equal(sw_graph_shape(c.g, c.out)[2], 4);
  const float *table = xdata(&c, 0);
  float want[24];
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 4; j++) want[i * 4 + j] = table[(idx[i] < 0 ? idx[i] + 6 : idx[i]) * 4 + j];
  nn_check_forward(&c, want, 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  /* the rows nobody looked up get nothing */
  const float *grad = sw_graph_grad(c.g, c.in[0]);
  for (int j = 0; j < 4; j++) {
    assert_true(grad[2 * 4 + j] == 0.0f);
    assert_true(grad[4 * 4 + j] == 0.0f);
    assert_true(grad[3 * 4 + j] != 0.0f);
  }
  /* an index outside the table is bad input: an error naming it and the size */
  int64_t *live = sw_graph_data(c.g, c.in[1]);
  live[4] = 6;
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "index 6"));
  assert_non_null(strstr(sw_last_error(), "6 rows"));
  live[4] = -7;
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "index -7"));
  live[4] = INT64_MIN;
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_INVALID);
  /* the backward pass checks again before it writes */
  live[4] = 0;
  assert_int_equal(sw_graph_forward(c.g), SW_STATUS_OK);
  live[4] = 100;
  assert_int_equal(sw_graph_backward(c.g, c.loss), SW_STATUS_INVALID);
  nn_check_free(&c);

  /* a rank-1 table: the output takes the indices' shape */
  int64_t idx1[3] = {2, 2, 0};
  nn_check_input in1[2] = {{SW_DTYPE_F32, 1, {3}, NULL, false}, {SW_DTYPE_I64, 1, {3}, idx1, false}};
  nn_check_build(&c, SW_OP_GATHER, NULL, in1, 2, 92);
  const float *t1 = xdata(&c, 0);
  float want1[3] = {t1[2], t1[2], t1[0]};
  nn_check_forward(&c, want1, 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

/* ---- GlobalAveragePool ---------------------------------------------------------------------- */

static void gap_case(int rank, const int64_t *shape, uint64_t seed) {
  nn_check_input in[1] = {{SW_DTYPE_F32, rank, {0}, NULL, false}};
  memcpy(in[0].shape, shape, sizeof(int64_t) * (size_t)rank);
  nn_check c;
  nn_check_build(&c, SW_OP_GLOBAL_AVERAGE_POOL, NULL, in, 1, seed);
  int64_t planes = shape[0] * shape[1], sp = 1;
  for (int d = 2; d < rank; d++) {
    sp *= shape[d];
    assert_int_equal(sw_graph_shape(c.g, c.out)[d], 1);
  }
  const float *x = xdata(&c, 0);
  float want[64];
  for (int64_t p = 0; p < planes; p++) {
    double s = 0;
    for (int64_t k = 0; k < sp; k++) s += x[p * sp + k];
    want[p] = (float)(s / (double)sp);
  }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void test_global_average_pool(void **state) {
  (void)state;
  const int64_t s4[4] = {2, 3, 4, 5}, s3[3] = {2, 3, 7}, s5[5] = {1, 2, 2, 3, 2};
  gap_case(4, s4, 101);
  gap_case(3, s3, 102);
  gap_case(5, s5, 103);
}

/* ---- the ops in a batched graph ------------------------------------------------------------- */

/* Embedding -> LayerNorm -> Gelu -> Dropout -> Transpose -> Concat -> BatchNorm ->
 * GlobalAveragePool -> Tanh/Sigmoid -> Softmax/LogSoftmax: at a batch below the
 * maximum, a training step runs without allocating and gives finite numbers. */
static void test_batched_graph(void **state) {
  (void)state;
  sw_graph *g;
  sw_node tok, emb, ln_s, ln_b, bn_s, bn_b, bn_m, bn_v, e, ln, ge, dr, tr, cat, bn, gap, fl, th, sg, sm, lsm, sum,
      lab, loss;
  int64_t ts[2] = {-1, 5}, es[2] = {10, 4}, s4[1] = {4}, ls[1] = {-1};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "tok", SW_DTYPE_I64, 2, ts, &tok), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "label", SW_DTYPE_I64, 1, ls, &lab), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "emb", 2, es, &emb), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "ln_s", 1, s4, &ln_s), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "ln_b", 1, s4, &ln_b), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "bn_s", 1, s4, &bn_s), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "bn_b", 1, s4, &bn_b), SW_STATUS_OK);
  assert_int_equal(sw_graph_buffer(g, "bn_m", 1, s4, &bn_m), SW_STATUS_OK);
  assert_int_equal(sw_graph_buffer(g, "bn_v", 1, s4, &bn_v), SW_STATUS_OK);
  sw_node in_e[2] = {emb, tok};
  assert_int_equal(sw_graph_op(g, SW_OP_GATHER, in_e, 2, NULL, "e", &e), SW_STATUS_OK); /* [N, 5, 4] */
  sw_node in_ln[3] = {e, ln_s, ln_b};
  assert_int_equal(sw_graph_op(g, SW_OP_LAYER_NORM, in_ln, 3, NULL, "ln", &ln), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_GELU, &ln, 1, NULL, "gelu", &ge), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_DROPOUT, &ge, 1, NULL, "drop", &dr), SW_STATUS_OK);
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_TRANSPOSE, &at);
  at.perm_rank = 3;
  at.perm[0] = 0, at.perm[1] = 2, at.perm[2] = 1;
  assert_int_equal(sw_graph_op(g, SW_OP_TRANSPOSE, &dr, 1, &at, "tr", &tr), SW_STATUS_OK); /* [N, 4, 5] */
  sw_op_attrs_default(SW_OP_CONCAT, &at);
  at.axis = 2;
  sw_node in_cat[2] = {tr, tr};
  assert_int_equal(sw_graph_op(g, SW_OP_CONCAT, in_cat, 2, &at, "cat", &cat), SW_STATUS_OK); /* [N, 4, 10] */
  sw_node in_bn[5] = {cat, bn_s, bn_b, bn_m, bn_v};
  assert_int_equal(sw_graph_op(g, SW_OP_BATCH_NORM, in_bn, 5, NULL, "bn", &bn), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_GLOBAL_AVERAGE_POOL, &bn, 1, NULL, "gap", &gap), SW_STATUS_OK);
  sw_op_attrs_default(SW_OP_FLATTEN, &at);
  assert_int_equal(sw_graph_op(g, SW_OP_FLATTEN, &gap, 1, &at, "fl", &fl), SW_STATUS_OK); /* [N, 4] */
  assert_int_equal(sw_graph_op(g, SW_OP_TANH, &fl, 1, NULL, "tanh", &th), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_SIGMOID, &th, 1, NULL, "sig", &sg), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_SOFTMAX, &sg, 1, NULL, "sm", &sm), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_LOG_SOFTMAX, &sm, 1, NULL, "lsm", &lsm), SW_STATUS_OK);
  sw_node in_sum[2] = {lsm, th};
  assert_int_equal(sw_graph_op(g, SW_OP_ADD, in_sum, 2, NULL, "sum", &sum), SW_STATUS_OK);
  sw_node in_loss[2] = {sum, lab};
  assert_int_equal(sw_graph_op(g, SW_OP_SOFTMAX_CROSS_ENTROPY, in_loss, 2, NULL, "loss", &loss), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 8), SW_STATUS_OK);
  assert_int_equal(sw_graph_set_batch(g, 3), SW_STATUS_OK);
  float *ev = sw_graph_data(g, emb), *lsv = sw_graph_data(g, ln_s), *bsv = sw_graph_data(g, bn_s);
  float *bvv = sw_graph_data(g, bn_v);
  sw_rng r;
  sw_rng_init(&r, 5, 0);
  for (int i = 0; i < 40; i++) ev[i] = (float)(2 * sw_rng_uniform(&r) - 1);
  for (int i = 0; i < 4; i++) lsv[i] = bsv[i] = bvv[i] = 1.0f;
  int64_t *tv = sw_graph_data(g, tok), *lv = sw_graph_data(g, lab);
  for (int i = 0; i < 15; i++) tv[i] = (i * 7) % 10;
  for (int i = 0; i < 3; i++) lv[i] = i;
  sw_graph_set_training(g, true);
  sw_graph_set_step(g, 1, 1);
  long before = sw_alloc_live();
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_graph_backward(g, loss), SW_STATUS_OK);
  assert_int_equal(sw_alloc_live(), before);
  assert_true(isfinite(((float *)sw_graph_data(g, loss))[0]));
  const float *ge_grad = sw_graph_grad(g, emb);
  double norm = 0;
  for (int i = 0; i < 40; i++) {
    assert_true(isfinite(ge_grad[i]));
    norm += fabs(ge_grad[i]);
  }
  assert_true(norm > 0);
  /* rows of the table no token reaches get no gradient: tokens are (7 i) % 10 for i < 15,
   * every row; use a smaller batch where row 9 (i = 7) is absent */
  assert_int_equal(sw_graph_set_batch(g, 1), SW_STATUS_OK); /* tokens 0, 7, 4, 1, 8 */
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_graph_backward(g, loss), SW_STATUS_OK);
  for (int j = 0; j < 4; j++) assert_true(ge_grad[9 * 4 + j] == 0.0f);
  sw_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigmoid_tanh),     cmocka_unit_test(test_gelu),
      cmocka_unit_test(test_softmax),          cmocka_unit_test(test_softmax_large_logits),
      cmocka_unit_test(test_dropout_mask),     cmocka_unit_test(test_dropout_gradients),
      cmocka_unit_test(test_batch_norm_torch), cmocka_unit_test(test_batch_norm),
      cmocka_unit_test(test_layer_norm_torch), cmocka_unit_test(test_layer_norm),
      cmocka_unit_test(test_transpose),        cmocka_unit_test(test_concat),
      cmocka_unit_test(test_gather),           cmocka_unit_test(test_global_average_pool),
      cmocka_unit_test(test_batched_graph),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
