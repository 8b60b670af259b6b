/* Test harness for ops (ggml's test-backend-ops in spirit): build a one-op graph whose
 * float inputs are parameters, compare its forward with a reference the test computes
 * by hand, and check every input gradient against central finite differences of
 * loss = mean((op(x) - t)^2) for a random target t. Include after cmocka.h. */
#ifndef SW_NN_CHECK_H
#define SW_NN_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "slipway/nn.h"

typedef struct {
  sw_dtype dtype;       /* F32: a parameter (its gradient is checked); I64: a constant */
  int rank;
  int64_t shape[SW_NN_MAX_RANK];
  const void *data;     /* NULL: F32 uniform in [-1, 1) from the seed */
  bool no_grad;         /* F32 constant: gradient not checked */
} nn_check_input;

typedef struct {
  sw_graph *g;
  sw_node in[8];
  int n_in;
  sw_node out, target, loss;
} nn_check;

/* Builds input nodes, the op, and the loss; allocates for batch 1. */
static void nn_check_build(nn_check *c, sw_op_type op, const sw_op_attrs *attrs, const nn_check_input *in, int n_in,
                           uint64_t seed) {
  memset(c, 0, sizeof *c);
  assert_int_equal(sw_graph_new(&c->g), SW_STATUS_OK);
  sw_rng rng;
  sw_rng_init(&rng, seed, 0);
  c->n_in = n_in;
  for (int i = 0; i < n_in; i++) {
    char name[32];
    snprintf(name, sizeof name, "x%d", i);
    if (in[i].rank < 0) { /* an absent optional input */
      c->in[i] = -1;
      continue;
    }
    if (in[i].dtype == SW_DTYPE_F32 && !in[i].no_grad) {
      assert_int_equal(sw_graph_param(c->g, name, in[i].rank, in[i].shape, &c->in[i]), SW_STATUS_OK);
      float *d = sw_graph_data(c->g, c->in[i]);
      int64_t n = sw_graph_elements(c->g, c->in[i]);
      for (int64_t k = 0; k < n; k++) d[k] = in[i].data ? ((const float *)in[i].data)[k] : (float)(2 * sw_rng_uniform(&rng) - 1);
    } else {
      int64_t n = 1;
      for (int d = 0; d < in[i].rank; d++) n *= in[i].shape[d];
      float *tmp = NULL;
      const void *data = in[i].data;
      if (!data) {
        tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
        for (int64_t k = 0; k < n; k++) tmp[k] = (float)(2 * sw_rng_uniform(&rng) - 1);
        data = tmp;
      }
      assert_int_equal(sw_graph_const(c->g, name, in[i].dtype, in[i].rank, in[i].shape, data, &c->in[i]), SW_STATUS_OK);
      free(tmp);
    }
  }
  sw_status st = sw_graph_op(c->g, op, c->in, n_in, attrs, "op", &c->out);
  if (st) fprintf(stderr, "nn_check: %s\n", sw_last_error());
  assert_int_equal(st, SW_STATUS_OK);
  int rank = sw_graph_rank(c->g, c->out);
  int64_t n = sw_graph_elements(c->g, c->out);
  float *t = malloc((size_t)(n ? n : 1) * sizeof *t);
  for (int64_t k = 0; k < n; k++) t[k] = (float)(2 * sw_rng_uniform(&rng) - 1);
  assert_int_equal(sw_graph_const(c->g, "target", SW_DTYPE_F32, rank, sw_graph_shape(c->g, c->out), t, &c->target),
                   SW_STATUS_OK);
  free(t);
  sw_node pair[2] = {c->out, c->target};
  assert_int_equal(sw_graph_op(c->g, SW_OP_MSE, pair, 2, NULL, "loss", &c->loss), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(c->g, 1), SW_STATUS_OK);
}

static void nn_check_free(nn_check *c) { sw_graph_free(c->g); }

/* Norm-wise comparison (DESIGN.md): max|a - b| / max(max|b|, 1e-6) <= tol. */
static void nn_check_close(const float *got, const float *want, int64_t n, double tol) {
  double md = 0, mb = 0;
  int64_t worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (d > md) md = d, worst = i;
    if (fabs(want[i]) > mb) mb = fabs(want[i]);
  }
  double rel = md / (mb > 1e-6 ? mb : 1e-6);
  if (rel > tol) fprintf(stderr, "nn_check: element %lld: got %.8g want %.8g (rel %.3g > %.3g)\n", (long long)worst,
                         got[worst], want[worst], rel, tol);
  assert_true(rel <= tol);
}

/* Runs forward and compares the op's output with want (n values). */
static void nn_check_forward(nn_check *c, const float *want, double tol) {
  assert_int_equal(sw_graph_forward(c->g), SW_STATUS_OK);
  nn_check_close(sw_graph_data(c->g, c->out), want, sw_graph_elements(c->g, c->out), tol);
}

/* Checks d loss / d input for every parameter input against central differences. */
static void nn_check_gradients(nn_check *c, double eps, double tol) {
  assert_int_equal(sw_graph_forward(c->g), SW_STATUS_OK);
  assert_int_equal(sw_graph_backward(c->g, c->loss), SW_STATUS_OK);
  for (int i = 0; i < c->n_in; i++) {
    if (c->in[i] < 0) continue;
    float *grad = sw_graph_grad(c->g, c->in[i]);
    if (!grad || sw_graph_op_type(c->g, c->in[i]) != SW_OP_PARAM) continue;
    int64_t n = sw_graph_elements(c->g, c->in[i]);
    float *x = sw_graph_data(c->g, c->in[i]);
    float *analytic = malloc((size_t)n * sizeof *analytic), *numeric = malloc((size_t)n * sizeof *numeric);
    memcpy(analytic, grad, (size_t)n * sizeof *analytic);
    for (int64_t k = 0; k < n; k++) {
      float keep = x[k];
      x[k] = keep + (float)eps;
      assert_int_equal(sw_graph_forward(c->g), SW_STATUS_OK);
      double up = ((float *)sw_graph_data(c->g, c->loss))[0];
      x[k] = keep - (float)eps;
      assert_int_equal(sw_graph_forward(c->g), SW_STATUS_OK);
      double down = ((float *)sw_graph_data(c->g, c->loss))[0];
      x[k] = keep;
      numeric[k] = (float)((up - down) / (2 * eps));
    }
    fprintf(stderr, "nn_check: gradient of input %d (%lld values)\n", i, (long long)n);
    nn_check_close(analytic, numeric, n, tol);
    free(analytic);
    free(numeric);
  }
}

#endif
