/* Benchmark (never a test): the CPU Conv kernels on the Fashion-MNIST CNN's shapes at
 * batch 64, forward and backward, with scratch for 1..64 images per sgemm, against a
 * direct convolution and plain sgemm of the same sizes. Calls the kernels directly
 * (nn_int.h), so it can hand the node a larger scratch than ops.c gives it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "nn/nn_int.h"

#define BATCH 64

typedef struct {
  const char *name;
  int64_t c, h, w, m; /* 3x3 kernel, stride 1, same padding */
} shape;

static const shape shapes[] = {
    {"conv1 1->32 28x28", 1, 28, 28, 32},
    {"conv2 32->64 14x14", 32, 14, 14, 64},
};

/* Best wall time of `repeat` runs of fn(ctx). */
static double best_of(int repeat, void (*fn)(void *), void *ctx) {
  fn(ctx); /* warm */
  double best = 1e30;
  for (int r = 0; r < repeat; r++) {
    double t0 = sw_now();
    fn(ctx);
    double t = sw_now() - t0;
    if (t < best) best = t;
  }
  return best;
}

typedef struct {
  sw_graph *g;
  sw__node *node;
  const shape *s;
  float *a, *b, *c; /* sgemm operands */
  int64_t gm, gn, gk, calls;
  bool ta, tb;
} job;

static void run_fwd(void *ctx) {
  job *j = ctx;
  sw__cpu_fwd_CONV(j->g, j->node);
}

static void run_bwd(void *ctx) {
  job *j = ctx;
  sw__cpu_bwd_CONV(j->g, j->node);
}

/* calls x sgemm C[gm, gn] = op(A) op(B) with inner size gk, row major. */
static void run_sgemm(void *ctx) {
  job *j = ctx;
  for (int64_t i = 0; i < j->calls; i++)
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, (int)j->gm,
                (int)j->gn, (int)j->gk, 1.0f, j->a, j->ta ? (int)j->gm : (int)j->gk, j->b,
                j->tb ? (int)j->gk : (int)j->gn, 0.0f, j->c, (int)j->gn);
}

/* A direct 3x3 same-padding convolution, one image per pool item: each output row is
 * a sum of shifted input rows, which the compiler vectorizes along the width. */
typedef struct {
  const shape *s;
  const float *x, *w, *b;
  float *y;
} direct_job;

static void direct_range(void *ctx, size_t begin, size_t end) {
  const direct_job *d = ctx;
  const shape *s = d->s;
  int64_t h = s->h, w = s->w;
  for (size_t n = begin; n < end; n++)
    for (int64_t m = 0; m < s->m; m++) {
      float *y = d->y + ((int64_t)n * s->m + m) * h * w;
      for (int64_t i = 0; i < h * w; i++) y[i] = d->b[m];
      for (int64_t c = 0; c < s->c; c++) {
        const float *x = d->x + ((int64_t)n * s->c + c) * h * w, *k = d->w + (m * s->c + c) * 9;
        for (int64_t oy = 0; oy < h; oy++)
          for (int64_t ki = 0; ki < 3; ki++) {
            int64_t iy = oy + ki - 1;
            if (iy < 0 || iy >= h) continue;
            const float *xr = x + iy * w;
            float *yr = y + oy * w, k0 = k[ki * 3], k1 = k[ki * 3 + 1], k2 = k[ki * 3 + 2];
            yr[0] += k1 * xr[0] + k2 * xr[1];
            for (int64_t ox = 1; ox < w - 1; ox++) yr[ox] += k0 * xr[ox - 1] + k1 * xr[ox] + k2 * xr[ox + 1];
            yr[w - 1] += k0 * xr[w - 2] + k1 * xr[w - 1];
          }
      }
    }
}

typedef struct {
  sw_graph *g;
  direct_job d;
} direct_ctx;

static void run_direct(void *ctx) {
  direct_ctx *dc = ctx;
  sw_threadpool_for(dc->g->pool, BATCH, 0, direct_range, &dc->d);
}

static void fill(float *v, int64_t n, sw_rng *r) {
  for (int64_t i = 0; i < n; i++) v[i] = (float)(2 * sw_rng_uniform(r) - 1);
}

static int bench_shape(const shape *s, int threads, int repeat, bool no_pool) {
  sw_graph *g = NULL;
  sw_node x, wt, b, y;
  sw_threadpool *pool = NULL;
  int64_t xs[4] = {BATCH, s->c, s->h, s->w}, ws[4] = {s->m, s->c, 3, 3}, bs[1] = {s->m};
  int rc = 1;
  if (sw_graph_new(&g) || sw_graph_set_threads(g, threads) || sw_graph_param(g, "x", 4, xs, &x) ||
      sw_graph_param(g, "w", 4, ws, &wt) || sw_graph_param(g, "b", 1, bs, &b))
    goto out;
  sw_op_attrs at;
  sw_op_attrs_default(SW_OP_CONV, &at);
  for (int i = 0; i < 4; i++) at.pad[i] = 1;
  sw_node in[3] = {x, wt, b};
  if (sw_graph_op(g, SW_OP_CONV, in, 3, &at, "conv", &y) || sw_graph_alloc(g, 1)) goto out;
  pool = g->pool;
  if (no_pool) g->pool = NULL; /* kernels without the thread pool (put back before free) */
  sw_rng r;
  sw_rng_init(&r, 1, 0);
  sw__node *node = &g->nodes[y];
  int64_t p = s->h * s->w, ckk = s->c * 9, ny = BATCH * s->m * p;
  fill(sw_graph_data(g, x), BATCH * s->c * p, &r);
  fill(sw_graph_data(g, wt), s->m * ckk, &r);
  fill(sw_graph_data(g, b), s->m, &r);
  fill(node->grad, ny, &r);
  double flops = 2.0 * BATCH * s->m * ckk * p; /* forward; backward is dW and dX, twice it */
  printf("%s, batch %d, %d threads: sgemm M=%lld N=%lld K=%lld per image\n", s->name, BATCH, threads,
         (long long)s->m, (long long)p, (long long)ckk);

  /* plain sgemm of the same sizes */
  int64_t big = ckk > s->m ? ckk : s->m;
  float *ga = malloc((size_t)(big * BATCH * p) * sizeof(float)), *gb = malloc((size_t)(big * BATCH * p) * sizeof(float)),
        *gc = malloc((size_t)(big * BATCH * p) * sizeof(float));
  if (!ga || !gb || !gc) goto out_free;
  fill(ga, big * BATCH * p, &r);
  fill(gb, big * BATCH * p, &r);
  struct {
    const char *what;
    int64_t m, n, k, calls;
    bool ta, tb;
  } gemms[] = {
      {"fwd  W.col, 64 calls of one image", s->m, p, ckk, BATCH, false, false},
      {"fwd  W.col, one call of 64 images", s->m, BATCH * p, ckk, 1, false, false},
      {"bwd  dY.col^T (dW), 64 calls", s->m, ckk, p, BATCH, false, true},
      {"bwd  W^T.dY (dcol), 64 calls", ckk, p, s->m, BATCH, true, false},
      {"bwd  dY.col^T (dW), one call", s->m, ckk, BATCH * p, 1, false, true},
      {"bwd  W^T.dY (dcol), one call", ckk, BATCH * p, s->m, 1, true, false},
  };
  for (size_t i = 0; i < sizeof gemms / sizeof gemms[0]; i++) {
    job j = {g, node, s, ga, gb, gc, gemms[i].m, gemms[i].n, gemms[i].k, gemms[i].calls, gemms[i].ta, gemms[i].tb};
    double t = best_of(repeat, run_sgemm, &j);
    printf("  sgemm %-36s %8.3f ms %7.1f GFLOP/s\n", gemms[i].what, t * 1e3,
           2.0 * gemms[i].m * gemms[i].n * gemms[i].k * gemms[i].calls / t * 1e-9);
  }

  direct_ctx dc = {g, {s, sw_graph_data(g, x), sw_graph_data(g, wt), sw_graph_data(g, b), gc}};
  double td = best_of(repeat, run_direct, &dc);
  printf("  direct conv forward                        %8.3f ms %7.1f GFLOP/s\n", td * 1e3, flops / td * 1e-9);

  void *own = node->scratch;
  size_t own_bytes = node->scratch_bytes;
  int64_t images[] = {1, 2, 4, 8, 16, 32, 64};
  for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
    /* as ops.c lays it out: per thread, the images' columns and outputs, then a dW partial */
    size_t bytes = images[i] == 1 ? own_bytes
                                  : (size_t)(threads * (images[i] * (ckk + s->m) * p + s->m * ckk)) * sizeof(float);
    void *scratch = images[i] == 1 ? own : malloc(bytes);
    if (!scratch) goto out_free;
    node->scratch = scratch;
    node->scratch_bytes = bytes;
    job j = {g, node, s, NULL, NULL, NULL, 0, 0, 0, 0, false, false};
    double tf = best_of(repeat, run_fwd, &j), tb = best_of(repeat, run_bwd, &j);
    printf("  im2col+sgemm, %2lld images/sgemm (%7.2f MB scratch): fwd %7.3f ms %6.1f GFLOP/s, "
           "bwd %7.3f ms %6.1f GFLOP/s\n",
           (long long)images[i], (double)bytes / 1e6, tf * 1e3, flops / tf * 1e-9, tb * 1e3, 2 * flops / tb * 1e-9);
    if (scratch != own) free(scratch);
  }
  node->scratch = own;
  node->scratch_bytes = own_bytes;
  rc = 0;
out_free:
  free(ga);
  free(gb);
  free(gc);
out:
  if (rc) fprintf(stderr, "conv_kernels: %s\n", sw_last_error());
  if (g && no_pool) g->pool = pool;
  sw_graph_free(g);
  return rc;
}

static void peak(int repeat) {
  int64_t n = 1024;
  float *a = malloc((size_t)(n * n) * sizeof(float)), *b = malloc((size_t)(n * n) * sizeof(float)),
        *c = malloc((size_t)(n * n) * sizeof(float));
  if (!a || !b || !c) goto out;
  sw_rng r;
  sw_rng_init(&r, 2, 0);
  fill(a, n * n, &r);
  fill(b, n * n, &r);
  job j = {NULL, NULL, NULL, a, b, c, n, n, n, 1, false, false};
  double t = best_of(repeat, run_sgemm, &j);
  printf("sgemm 1024^3 (the machine's peak): %.3f ms %.1f GFLOP/s\n", t * 1e3, 2.0 * n * n * n / t * 1e-9);
out:
  free(a);
  free(b);
  free(c);
}

int main(int argc, char **argv) {
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), repeat = 20;
  bool no_pool = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--no-pool")) {
      no_pool = true;
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = atoi(argv[++i]);
    } else {
      fprintf(stderr,
              "usage: conv_kernels [--threads N] [--repeat R] [--no-pool]\n"
              "Times the CPU Conv kernels on the Fashion-MNIST CNN's conv shapes at batch %d\n"
              "(best of R, default 20) against direct convolution and plain sgemm. --no-pool:\n"
              "im2col/col2im and the direct loop on the calling thread (OpenBLAS still threads).\n",
              BATCH);
      return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
  }
  if (threads < 1) threads = 1;
  openblas_set_num_threads(threads);
  peak(repeat);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (bench_shape(&shapes[i], threads, repeat, no_pool)) return 1;
  return 0;
}
