/* The graph and the core ops: MatMul, Gemm, broadcasting Add/Sub/Mul/Div, Relu,
 * Flatten/Reshape/Cast and the three losses, each against a plain reference and its
 * backward against finite differences; and the graph's own rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>

#include "nn/nn_int.h"
#include "nn_check.h"

#define EPS 1e-2
#define GRAD_TOL 2e-2

static const float *xdata(nn_check *c, int i) { return sw_graph_data(c->g, c->in[i]); }

static void test_matmul(void **state) {
  (void)state;
  nn_check c;
  nn_check_input in[2] = {{SW_DTYPE_F32, 3, {2, 3, 4}, NULL, false}, {SW_DTYPE_F32, 2, {4, 5}, NULL, false}};
  nn_check_build(&c, SW_OP_MATMUL, NULL, in, 2, 1);
  float want[2 * 3 * 5];
  const float *a = xdata(&c, 0), *b = xdata(&c, 1);
  for (int r = 0; r < 6; r++)
    for (int j = 0; j < 5; j++) {
      double s = 0;
      for (int k = 0; k < 4; k++) s += (double)a[r * 4 + k] * b[k * 5 + j];
      want[r * 5 + j] = (float)s;
    }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void gemm_case(int64_t ta, int64_t tb, int c_rank) {
  nn_check c;
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_GEMM, &at);
  at.trans_a = ta;
  at.trans_b = tb;
  at.alpha = 0.5f;
  at.beta = 2.0f;
  const int64_t m = 3, k = 4, n = 5;
  nn_check_input in[3] = {{SW_DTYPE_F32, 2, {ta ? k : m, ta ? m : k}, NULL, false},
                          {SW_DTYPE_F32, 2, {tb ? n : k, tb ? k : n}, NULL, false},
                          {SW_DTYPE_F32, c_rank, {c_rank == 2 ? m : n, n}, NULL, false}};
  if (c_rank == 0) in[2].rank = -1;
  nn_check_build(&c, SW_OP_GEMM, &at, in, 3, 2);
  const float *a = xdata(&c, 0), *b = xdata(&c, 1), *cc = c_rank ? xdata(&c, 2) : NULL;
  float want[15];
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t q = 0; q < k; q++) s += (double)(ta ? a[q * m + i] : a[i * k + q]) * (tb ? b[j * k + q] : b[q * n + j]);
      double cv = !cc ? 0 : c_rank == 1 ? cc[j] : cc[i * n + j];
      want[i * n + j] = (float)(0.5 * s + 2.0 * cv);
    }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void test_gemm(void **state) {
  (void)state;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int cr = 0; cr <= 2; cr++) gemm_case(ta, tb, cr);
}

static void arith_case(sw_op_type op, int ra, const int64_t *sa, int rb, const int64_t *sb) {
  nn_check c;
  nn_check_input in[2] = {{SW_DTYPE_F32, ra, {0}, NULL, false}, {SW_DTYPE_F32, rb, {0}, NULL, false}};
  memcpy(in[0].shape, sa, sizeof(int64_t) * (size_t)ra);
  memcpy(in[1].shape, sb, sizeof(int64_t) * (size_t)rb);
  nn_check_build(&c, op, NULL, in, 2, 3);
  float *b = sw_graph_data(c.g, c.in[1]);
  int64_t nb = sw_graph_elements(c.g, c.in[1]);
  if (op == SW_OP_DIV)
    for (int64_t i = 0; i < nb; i++) b[i] = b[i] >= 0 ? b[i] + 1.0f : b[i] - 1.0f; /* away from 0 */
  /* reference with explicit broadcasting over an output of rank 3 */
  int64_t out[3], ea[3], eb[3];
  for (int d = 0; d < 3; d++) {
    ea[d] = d < 3 - ra ? 1 : sa[d - (3 - ra)];
    eb[d] = d < 3 - rb ? 1 : sb[d - (3 - rb)];
    out[d] = ea[d] > eb[d] ? ea[d] : eb[d];
  }
  const float *a = xdata(&c, 0);
  float want[256];
  for (int64_t i = 0; i < out[0]; i++)
    for (int64_t j = 0; j < out[1]; j++)
      for (int64_t k = 0; k < out[2]; k++) {
        float x = a[((i % ea[0]) * ea[1] + (j % ea[1])) * ea[2] + (k % ea[2])];
        float y = b[((i % eb[0]) * eb[1] + (j % eb[1])) * eb[2] + (k % eb[2])];
        float r = op == SW_OP_ADD ? x + y : op == SW_OP_SUB ? x - y : op == SW_OP_MUL ? x * y : x / y;
        want[(i * out[1] + j) * out[2] + k] = r;
      }
  nn_check_forward(&c, want, 1e-6);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

static void test_arith_broadcast(void **state) {
  (void)state;
  const int64_t s234[3] = {2, 3, 4}, s4[1] = {4}, s31[2] = {3, 1}, s134[3] = {1, 3, 4}, s1[1] = {1};
  sw_op_type ops[4] = {SW_OP_ADD, SW_OP_SUB, SW_OP_MUL, SW_OP_DIV};
  for (int i = 0; i < 4; i++) {
    arith_case(ops[i], 3, s234, 3, s234);
    arith_case(ops[i], 3, s234, 1, s4);
    arith_case(ops[i], 2, s31, 3, s134);
    arith_case(ops[i], 1, s1, 3, s234);
  }
}

static void test_relu(void **state) {
  (void)state;
  nn_check c;
  nn_check_input in[1] = {{SW_DTYPE_F32, 2, {4, 6}, NULL, false}};
  nn_check_build(&c, SW_OP_RELU, NULL, in, 1, 4);
  const float *x = xdata(&c, 0);
  float want[24];
  for (int i = 0; i < 24; i++) want[i] = x[i] > 0 ? x[i] : 0;
  nn_check_forward(&c, want, 0);
  nn_check_gradients(&c, 1e-3, GRAD_TOL);
  nn_check_free(&c);
}

static void test_flatten_reshape(void **state) {
  (void)state;
  nn_check c;
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_RESHAPE, &at);
  at.shape_rank = 3;
  at.shape[0] = 0;
  at.shape[1] = -1;
  at.shape[2] = 2;
  nn_check_input in[1] = {{SW_DTYPE_F32, 3, {2, 3, 4}, NULL, false}};
  nn_check_build(&c, SW_OP_RESHAPE, &at, in, 1, 5);
  assert_int_equal(sw_graph_shape(c.g, c.out)[1], 6);
  nn_check_forward(&c, xdata(&c, 0), 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
  sw_op_attrs_default(SW_OP_FLATTEN, &at);
  nn_check_build(&c, SW_OP_FLATTEN, &at, in, 1, 5);
  assert_int_equal(sw_graph_rank(c.g, c.out), 2);
  assert_int_equal(sw_graph_shape(c.g, c.out)[1], 12);
  nn_check_forward(&c, xdata(&c, 0), 0);
  nn_check_gradients(&c, EPS, GRAD_TOL);
  nn_check_free(&c);
}

/* A loss node's gradient with respect to the n values of x, by central differences. */
static void loss_gradient_check(sw_graph *g, sw_node x, sw_node loss, int n) {
  float *xv = sw_graph_data(g, x);
  const float *gx = sw_graph_grad(g, x);
  for (int i = 0; i < n; i++) {
    float keep = xv[i];
    xv[i] = keep + 1e-2f;
    sw_graph_forward(g);
    double up = ((float *)sw_graph_data(g, loss))[0];
    xv[i] = keep - 1e-2f;
    sw_graph_forward(g);
    double down = ((float *)sw_graph_data(g, loss))[0];
    xv[i] = keep;
    assert_float_equal(gx[i], (up - down) / 2e-2, 2e-3);
  }
}

static void test_softmax_cross_entropy(void **state) {
  (void)state;
  int64_t labels[4] = {0, 3, 2, 1};
  sw_graph *g;
  sw_node x, y, loss;
  int64_t xs[2] = {4, 5}, ys[1] = {4};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "x", 2, xs, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "y", SW_DTYPE_I64, 1, ys, labels, &y), SW_STATUS_OK);
  sw_node in[2] = {x, y};
  assert_int_equal(sw_graph_op(g, SW_OP_SOFTMAX_CROSS_ENTROPY, in, 2, NULL, "ce", &loss), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 1), SW_STATUS_OK);
  float *xv = sw_graph_data(g, x);
  sw_rng r;
  sw_rng_init(&r, 9, 0);
  for (int i = 0; i < 20; i++) xv[i] = (float)(4 * sw_rng_uniform(&r) - 2);
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  double want = 0;
  for (int i = 0; i < 4; i++) {
    double s = 0;
    for (int j = 0; j < 5; j++) s += exp(xv[i * 5 + j]);
    want += log(s) - xv[i * 5 + labels[i]];
  }
  want /= 4;
  assert_float_equal(((float *)sw_graph_data(g, loss))[0], want, 1e-5);
  assert_int_equal(sw_graph_backward(g, loss), SW_STATUS_OK);
  loss_gradient_check(g, x, loss, 20);
  /* a label outside the classes is an error, not a read out of bounds */
  labels[0] = 7;
  ((int64_t *)sw_graph_data(g, y))[0] = 7;
  assert_int_equal(sw_graph_forward(g), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "label 7"));
  sw_graph_free(g);
}

static void pair_loss_case(sw_op_type op) {
  sw_graph *g;
  sw_node x, t, loss;
  int64_t s[2] = {3, 4};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "x", 2, s, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "t", 2, s, &t), SW_STATUS_OK);
  sw_node in[2] = {x, t};
  assert_int_equal(sw_graph_op(g, op, in, 2, NULL, "loss", &loss), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 1), SW_STATUS_OK);
  float *xv = sw_graph_data(g, x), *tv = sw_graph_data(g, t);
  sw_rng r;
  sw_rng_init(&r, 11, 0);
  for (int i = 0; i < 12; i++) {
    xv[i] = (float)(6 * sw_rng_uniform(&r) - 3);
    tv[i] = op == SW_OP_MSE ? (float)sw_rng_uniform(&r) : (float)(sw_rng_uniform(&r) < 0.5);
  }
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  double want = 0;
  for (int i = 0; i < 12; i++) {
    if (op == SW_OP_MSE) want += (xv[i] - tv[i]) * (xv[i] - tv[i]);
    else want += -(tv[i] * log(1 / (1 + exp(-xv[i]))) + (1 - tv[i]) * log(1 - 1 / (1 + exp(-xv[i]))));
  }
  assert_float_equal(((float *)sw_graph_data(g, loss))[0], want / 12, 1e-5);
  assert_int_equal(sw_graph_backward(g, loss), SW_STATUS_OK);
  loss_gradient_check(g, x, loss, 12);
  sw_graph_free(g);
}

static void test_bce_and_mse(void **state) {
  (void)state;
  pair_loss_case(SW_OP_BCE_WITH_LOGITS);
  pair_loss_case(SW_OP_MSE);
}

/* An MLP on a batched input: set_batch changes shapes without allocating. */
static void test_batched_graph(void **state) {
  (void)state;
  sw_graph *g;
  sw_node x, w, b, h, act, y, lab, loss;
  int64_t xs[2] = {-1, 6}, ws[2] = {6, 3}, bs[1] = {3}, ls[1] = {-1};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "x", SW_DTYPE_F32, 2, xs, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "label", SW_DTYPE_I64, 1, ls, &lab), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "w", 2, ws, &w), SW_STATUS_OK);
  assert_int_equal(sw_graph_param(g, "b", 1, bs, &b), SW_STATUS_OK);
  sw_node gin[3] = {x, w, b};
  assert_int_equal(sw_graph_op(g, SW_OP_GEMM, gin, 3, NULL, NULL, &h), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_RELU, &h, 1, NULL, NULL, &act), SW_STATUS_OK);
  y = act;
  sw_node lin[2] = {y, lab};
  assert_int_equal(sw_graph_op(g, SW_OP_SOFTMAX_CROSS_ENTROPY, lin, 2, NULL, "loss", &loss), SW_STATUS_OK);
  /* errors name the node */
  sw_node bad[2] = {x, w};
  sw_node tmp;
  assert_int_equal(sw_graph_op(g, SW_OP_ADD, bad, 2, NULL, "bad_add", &tmp), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "bad_add"));
  assert_int_equal(sw_graph_find(g, "bad_add"), -1);
  assert_int_equal(sw_graph_alloc(g, 8), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_RELU, &h, 1, NULL, NULL, &tmp), SW_STATUS_INVALID);
  assert_int_equal(sw_graph_set_batch(g, 9), SW_STATUS_RANGE);
  assert_int_equal(sw_graph_set_batch(g, 5), SW_STATUS_OK);
  assert_int_equal(sw_graph_shape(g, h)[0], 5);
  const sw_node *params;
  assert_int_equal(sw_graph_params(g, &params), 2);
  assert_int_equal(params[0], w);
  float *xv = sw_graph_data(g, x);
  for (int i = 0; i < 30; i++) xv[i] = (float)(i % 7) / 7.0f;
  int64_t *lv = sw_graph_data(g, lab);
  for (int i = 0; i < 5; i++) lv[i] = i % 3;
  float *wv = sw_graph_data(g, w);
  for (int i = 0; i < 18; i++) wv[i] = (float)((i * 7) % 5) / 5.0f - 0.4f;
  long live = sw_alloc_live();
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_graph_backward(g, loss), SW_STATUS_OK);
  assert_int_equal(sw_alloc_live(), live); /* the step allocates nothing */
  float loss1 = ((float *)sw_graph_data(g, loss))[0];
  assert_true(isfinite(loss1) && loss1 > 0);
  sw_graph_free(g);
}

/* x * k (a one-element constant) into a Gemm with a constant B and bias, then a Relu:
 * the pattern of an imported model. Outside training the Mul is folded into the
 * Gemm's alpha; B is packed once (cpu_gemm_packed.c) on AVX-512 CPUs; in training the
 * Mul runs. Every batch size and thread count must give the plain sums, with
 * panel and row tails (N = 70, odd batches), B as [N][K] and as [K][N]; the pack is
 * made once, on the first pass that needs it. */
static void test_gemm_const_b(void **state) {
  (void)state;
  enum { K = 50, N = 70, MAXB = 256 };
  static float wv[N * K], bv[N];
  for (int i = 0; i < N * K; i++) wv[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
  for (int i = 0; i < N; i++) bv[i] = (float)(i % 9) / 9.0f - 0.4f;
  for (int trans = 0; trans < 2; trans++) {
    sw_graph *g;
    sw_node x, kn, w, b, xs, h, y;
    int64_t xshape[2] = {-1, K}, wshape[2] = {trans ? N : K, trans ? K : N}, bshape[1] = {N}, one[1] = {1};
    float kval = 1.0f / 255.0f, wt[N * K];
    for (int n = 0; n < N; n++)
      for (int kk = 0; kk < K; kk++) wt[trans ? n * K + kk : kk * N + n] = wv[n * K + kk];
    assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
    assert_int_equal(sw_graph_input(g, "x", SW_DTYPE_F32, 2, xshape, &x), SW_STATUS_OK);
    assert_int_equal(sw_graph_const(g, "k", SW_DTYPE_F32, 1, one, &kval, &kn), SW_STATUS_OK);
    assert_int_equal(sw_graph_const(g, "w", SW_DTYPE_F32, 2, wshape, wt, &w), SW_STATUS_OK);
    assert_int_equal(sw_graph_const(g, "b", SW_DTYPE_F32, 1, bshape, bv, &b), SW_STATUS_OK);
    sw_node min[2] = {x, kn};
    assert_int_equal(sw_graph_op(g, SW_OP_MUL, min, 2, NULL, NULL, &xs), SW_STATUS_OK);
    sw_op_attrs at;
    sw_op_attrs_default(SW_OP_GEMM, &at);
    at.trans_b = trans;
    sw_node gin[3] = {xs, w, b};
    assert_int_equal(sw_graph_op(g, SW_OP_GEMM, gin, 3, &at, NULL, &h), SW_STATUS_OK);
    assert_int_equal(sw_graph_op(g, SW_OP_RELU, &h, 1, NULL, NULL, &y), SW_STATUS_OK);
    sw_graph_mark_output(g, y);
    assert_int_equal(sw_graph_alloc(g, MAXB), SW_STATUS_OK);
    static const struct {
      int64_t batch;
      int threads;
      bool training;
    } runs[] = {{1, 1, false}, {37, 1, false}, {256, 1, false}, {256, 2, false}, {17, 2, false}, {37, 1, true}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
      int64_t bt = runs[r].batch;
      assert_int_equal(sw_graph_set_threads(g, runs[r].threads), SW_STATUS_OK);
      sw_graph_set_training(g, runs[r].training);
      assert_int_equal(sw_graph_set_batch(g, bt), SW_STATUS_OK);
      float *xv = sw_graph_data(g, x);
      for (int64_t i = 0; i < bt * K; i++) xv[i] = (float)((i * 13 + r) % 256);
      assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
      long live = sw_alloc_live();
      assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
      assert_int_equal(sw_alloc_live(), live); /* the pack is made once */
      const float *yv = sw_graph_data(g, y);
      double worst = 0, top = 1e-6;
      for (int64_t i = 0; i < bt; i++)
        for (int n = 0; n < N; n++) {
          double s = bv[n];
          for (int kk = 0; kk < K; kk++) s += (double)(xv[i * K + kk] * kval) * wv[n * K + kk];
          s = s > 0 ? s : 0;
          double d = fabs(yv[i * N + n] - s);
          if (!(d <= worst)) worst = d; /* NaN sticks */
          if (fabs(s) > top) top = fabs(s);
        }
      if (!(worst / top <= 1e-5))
        fail_msg("trans %d run %zu (batch %lld): norm-wise error %g", trans, r, (long long)bt, worst / top);
    }
    sw_graph_free(g);
  }
}

/* The packed kernel itself, split as the pool splits it: by runs of rows, and with a
 * small batch by runs of panels; alpha, beta and the Relu applied; nothing written
 * outside the C block asked for. Then row by row, where the row kernel skips the zeros
 * of A (a third of them here, and one row all zeros): the same floats, bit for bit, as
 * the block kernel's, since a zero term adds nothing to a sum. A B with an infinity is
 * reported, so that no zero is skipped against it (0 x inf is NaN). */
static void test_gemm_packed_parts(void **state) {
  (void)state;
  if (!sw__gemm_packed_fits()) {
    print_message("no AVX-512 here (or SLIPWAY_GEMM=openblas): the packed Gemm is not used\n");
    return;
  }
  enum { M = 9, K = 33, N = 150, LDC = N + 3 };
  static float a[M * K], b[K * N], bias[N], c[M * LDC], c_block[M * LDC], bp[3 * K * 64];
  assert_true(sw__gemm_packed_floats(K, N) <= 3 * K * 64);
  for (int i = 0; i < M * K; i++) a[i] = i % 3 == 1 || i / K == 4 ? 0.0f : (float)((i * 29) % 17) / 17.0f - 0.5f;
  for (int i = 0; i < K * N; i++) b[i] = (float)((i * 13) % 23) / 23.0f - 0.5f;
  for (int i = 0; i < N; i++) bias[i] = (float)(i % 5) - 2.0f;
  assert_true(sw__gemm_pack(b, false, K, N, N, bp));
  for (int split = 0; split < 4; split++) {
    for (int i = 0; i < M * LDC; i++) c[i] = NAN;
    if (split == 0) { /* rows [0, 6) and [6, 9), all panels */
      sw__gemm_packed(0, 6, 0, 3, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, true);
      sw__gemm_packed(6, M, 0, 3, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, true);
    } else if (split == 1) { /* panels [0, 1) and [1, 3), all rows */
      sw__gemm_packed(0, M, 0, 1, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, true);
      sw__gemm_packed(0, M, 1, 3, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, true);
    } else { /* one row at a time, by the block kernel (2), then by the row kernel (3) */
      for (int r = 0; r < M; r++) {
        sw__gemm_packed(r, r + 1, 0, 1, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, split == 3);
        sw__gemm_packed(r, r + 1, 1, 3, N, K, 0.5f, a, K, bp, 2.0f, bias, true, c, LDC, split == 3);
      }
      if (split == 2) memcpy(c_block, c, sizeof c);
      else assert_memory_equal(c, c_block, sizeof c);
    }
    for (int r = 0; r < M; r++) {
      for (int j = 0; j < N; j++) {
        double s = 0;
        for (int kk = 0; kk < K; kk++) s += (double)a[r * K + kk] * b[kk * N + j];
        s = 0.5 * s + 2.0 * bias[j];
        s = s > 0 ? s : 0;
        assert_true(fabs(c[r * LDC + j] - s) <= 1e-5 * (1 + fabs(s)));
      }
      for (int j = N; j < LDC; j++) assert_true(isnan(c[r * LDC + j])); /* past N: untouched */
    }
  }
  b[7] = INFINITY;
  assert_false(sw__gemm_pack(b, false, K, N, N, bp));
}

/* A narrow constant B (one output over 4,096 features) would pack into 64 times its
 * size: it keeps the sgemm, so its first pass allocates nothing; the answer is the same. */
static void test_gemm_narrow_const_b(void **state) {
  (void)state;
  enum { K = 4096 };
  static float wv[K];
  for (int i = 0; i < K; i++) wv[i] = (float)(i % 13) / 13.0f - 0.5f;
  sw_graph *g;
  sw_node x, w, y;
  int64_t xshape[2] = {-1, K}, wshape[2] = {1, K};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "x", SW_DTYPE_F32, 2, xshape, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "w", SW_DTYPE_F32, 2, wshape, wv, &w), SW_STATUS_OK);
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_GEMM, &at);
  at.trans_b = true;
  sw_node gin[2] = {x, w};
  assert_int_equal(sw_graph_op(g, SW_OP_GEMM, gin, 2, &at, NULL, &y), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 8), SW_STATUS_OK);
  sw_graph_set_training(g, false);
  assert_int_equal(sw_graph_set_batch(g, 8), SW_STATUS_OK);
  float *xv = sw_graph_data(g, x);
  for (int i = 0; i < 8 * K; i++) xv[i] = (float)(i % 7);
  long live = sw_alloc_live();
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK);
  assert_int_equal(sw_alloc_live(), live);
  const float *yv = sw_graph_data(g, y);
  for (int r = 0; r < 8; r++) {
    double s = 0;
    for (int k = 0; k < K; k++) s += (double)xv[r * K + k] * wv[k];
    assert_true(fabs(yv[r] - s) <= 1e-5 * (1 + fabs(s)));
  }
  sw_graph_free(g);
}

/* A clone runs forward passes beside its source: the MLP pattern (Mul by 1/255, Gemm
 * with a constant B and bias, Relu, Gemm, Reshape of a constant) in two graphs on two
 * threads at once gives each thread's own answer; the clone shares the constants and
 * the packed B (it allocates its values and scratch only), frees only what is its own,
 * and is never trained. */
typedef struct {
  sw_graph *g;
  sw_node x, y;
  float seed;
  int bad;
} clone_run;

static void *clone_runner(void *arg) {
  clone_run *r = arg;
  for (int it = 0; it < 200; it++) {
    int64_t bt = 1 + it % 3;
    if (sw_graph_set_batch(r->g, bt)) r->bad++;
    float *xv = sw_graph_data(r->g, r->x);
    for (int64_t i = 0; i < bt * 64; i++) xv[i] = (float)(((int)r->seed * 7 + it + i) % 5) * 40.0f; /* zeros too */
    if (sw_graph_forward(r->g)) r->bad++;
    const float *yv = sw_graph_data(r->g, r->y);
    for (int64_t i = 0; i < bt; i++) {
      /* the plain sums: y = sum_n relu(sum_k x k w[k][n] + b[n]) * v[n] */
      double s = 0;
      for (int n = 0; n < 96; n++) {
        double h = 0.01 * n;
        for (int kk = 0; kk < 64; kk++) h += (double)(xv[i * 64 + kk] / 255.0f) * (((kk * 31 + n * 7) % 19) / 19.0 - 0.5);
        s += (h > 0 ? h : 0) * ((n % 5) / 5.0 - 0.3);
      }
      if (fabs(yv[i] - s) > 1e-4 * (1 + fabs(s))) r->bad++;
    }
  }
  return NULL;
}

static void test_graph_clone(void **state) {
  (void)state;
  enum { K = 64, N = 96 };
  static float wv[K * N], bv[N], vv[N];
  for (int kk = 0; kk < K; kk++)
    for (int n = 0; n < N; n++) wv[kk * N + n] = (float)(((kk * 31 + n * 7) % 19) / 19.0 - 0.5);
  for (int n = 0; n < N; n++) bv[n] = (float)(0.01 * n), vv[n] = (float)((n % 5) / 5.0 - 0.3);
  sw_graph *g, *c = NULL;
  sw_node x, kn, w, b, v, vr, xs, h, hr, y;
  int64_t xshape[2] = {-1, K}, wshape[2] = {K, N}, bshape[1] = {N}, vshape[1] = {N}, one[1] = {1};
  float kval = 1.0f / 255.0f;
  int64_t vr_shape_data[2] = {N, 1};
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "x", SW_DTYPE_F32, 2, xshape, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "k", SW_DTYPE_F32, 1, one, &kval, &kn), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "w", SW_DTYPE_F32, 2, wshape, wv, &w), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "b", SW_DTYPE_F32, 1, bshape, bv, &b), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "v", SW_DTYPE_F32, 1, vshape, vv, &v), SW_STATUS_OK);
  sw_op_attrs ra;
  sw_op_attrs_default(SW_OP_RESHAPE, &ra);
  ra.shape[0] = vr_shape_data[0], ra.shape[1] = vr_shape_data[1], ra.shape_rank = 2;
  assert_int_equal(sw_graph_op(g, SW_OP_RESHAPE, &v, 1, &ra, NULL, &vr), SW_STATUS_OK);
  sw_node min[2] = {x, kn};
  assert_int_equal(sw_graph_op(g, SW_OP_MUL, min, 2, NULL, NULL, &xs), SW_STATUS_OK);
  sw_node gin[3] = {xs, w, b};
  assert_int_equal(sw_graph_op(g, SW_OP_GEMM, gin, 3, NULL, NULL, &h), SW_STATUS_OK);
  assert_int_equal(sw_graph_op(g, SW_OP_RELU, &h, 1, NULL, NULL, &hr), SW_STATUS_OK);
  sw_node g2[2] = {hr, vr};
  assert_int_equal(sw_graph_op(g, SW_OP_GEMM, g2, 2, NULL, NULL, &y), SW_STATUS_OK);
  sw_graph_mark_output(g, y);
  assert_int_equal(sw_graph_alloc(g, 4), SW_STATUS_OK);
  sw_graph_set_training(g, false);
  assert_int_equal(sw_graph_set_batch(g, 4), SW_STATUS_OK);
  assert_int_equal(sw_graph_forward(g), SW_STATUS_OK); /* packs B */
  long live = sw_alloc_live();
  assert_int_equal(sw_graph_clone(g, &c), SW_STATUS_OK);
  /* the clone's own memory: values and scratch, not the 24 KB of weights again */
  assert_true(sw_alloc_live() - live < (long)sizeof wv);
  assert_int_equal(sw_graph_data(c, w), sw_graph_data(g, w));
  clone_run runs[2] = {{g, x, y, 1, 0}, {c, x, y, 2, 0}};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, clone_runner, &runs[1]), 0);
  clone_runner(&runs[0]);
  pthread_join(t, NULL);
  assert_int_equal(runs[0].bad, 0);
  assert_int_equal(runs[1].bad, 0);
  sw_graph_set_training(c, true); /* refused: stays in inference */
  assert_int_equal(sw_graph_backward(c, y), SW_STATUS_INVALID);
  sw_graph_free(c);
  assert_int_equal(sw_alloc_live(), live);
  /* the source still has its weights */
  assert_true(((float *)sw_graph_data(g, w))[K * N - 1] == wv[K * N - 1]);
  sw_graph_free(g);
  /* a graph in training or not allocated has no clone */
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_clone(g, &c), SW_STATUS_INVALID);
  sw_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul),        cmocka_unit_test(test_gemm),
      cmocka_unit_test(test_arith_broadcast), cmocka_unit_test(test_relu),
      cmocka_unit_test(test_flatten_reshape), cmocka_unit_test(test_softmax_cross_entropy),
      cmocka_unit_test(test_bce_and_mse),   cmocka_unit_test(test_batched_graph),
      cmocka_unit_test(test_gemm_const_b),    cmocka_unit_test(test_gemm_packed_parts),
      cmocka_unit_test(test_gemm_narrow_const_b), cmocka_unit_test(test_graph_clone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
