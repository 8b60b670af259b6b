/* Benchmark (never a test): the training step of a model file on a few batches read
 * once, timed exactly as the trainer runs it (feed, forward, backward, Adam on every
 * parameter), with the step's GEMM/Conv FLOPs; and OpenBLAS sgemm's own rate, the peak the step is held to.
 * bench/train_vs_torch.sh compares both with PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "slipway/train.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: train_step --model M.yaml --data DATASET_DIR [--threads T] [--steps N] [--warmup W]\n"
          "                  [--rounds R] [--batches K]\n"
          "       train_step --sgemm-peak [--threads T] [--rounds R]\n"
          "Times N training steps (default 200, after W = 20 untimed ones) on the first K batches\n"
          "of the train split (default 16, read once and fed in turn), R times (default 3), and\n"
          "prints one JSON line from the best round:\n"
          "samples_per_sec, step_ms, flops_per_step, gflops (GEMM/MatMul/Conv only).\n"
          "--sgemm-peak times cblas_sgemm at 1024^3 and at the MLP's shapes instead, and\n"
          "prints each shape's best GFLOP/s and the highest as peak_gflops.\n");
}

/* FLOPs of one training step's matrix products: 2*M*N*K per GEMM/MatMul and
 * 2*(C/group*kh*kw)*M*Ho*Wo*N per Conv forward; backward adds as much again for the
 * weight gradient, and again for the input gradient when that input has one (the first
 * layer's input is data, so its dX is never computed). Elementwise ops are left out.
 * Call after a backward pass so the gradients exist. */
static double step_flops(sw_graph *g) {
  double total = 0;
  for (size_t i = 0; i < sw_graph_size(g); i++) {
    sw_node n = (sw_node)i;
    sw_op_type op = sw_graph_op_type(g, n);
    const sw_node *in;
    int n_in = sw_graph_inputs(g, n, &in);
    if (n_in < 2) continue;
    double fwd;
    if (op == SW_OP_GEMM || op == SW_OP_MATMUL) {
      /* output [.., M, N]; A's inner dimension is K (its first when transposed) */
      const int64_t *a = sw_graph_shape(g, in[0]);
      int ra = sw_graph_rank(g, in[0]);
      int64_t k = a[ra - 1];
      if (op == SW_OP_GEMM && sw_graph_attrs(g, n)->trans_a) k = a[0];
      fwd = 2.0 * (double)sw_graph_elements(g, n) * (double)k;
    } else if (op == SW_OP_CONV) {
      /* weight [M, C/group, kh, kw]; output [N, M, Ho, Wo] */
      const int64_t *w = sw_graph_shape(g, in[1]);
      int rw = sw_graph_rank(g, in[1]);
      double per_out = 1;
      for (int d = 1; d < rw; d++) per_out *= (double)w[d];
      fwd = 2.0 * per_out * (double)sw_graph_elements(g, n);
    } else {
      continue;
    }
    total += fwd;
    if (sw_graph_grad(g, in[1])) total += fwd; /* dW (or dB of a MatMul) */
    if (sw_graph_grad(g, in[0])) total += fwd; /* dX */
  }
  return total;
}

typedef struct {
  int m, n, k;
} gemm_shape;

/* The sgemm rate OpenBLAS reaches here: 1024^3 and the MLP's forward and backward
 * products at batch 64 (row major, as the CPU backend calls it). */
static int sgemm_peak(int threads, int rounds) {
  static const gemm_shape shapes[] = {
      {1024, 1024, 1024}, {64, 256, 784}, {64, 784, 256}, {784, 256, 64}, {64, 128, 256}, {256, 128, 64},
  };
  size_t n_shapes = sizeof shapes / sizeof shapes[0];
  size_t max = (size_t)1024 * 1024;
  float *a = malloc(max * sizeof *a), *b = malloc(max * sizeof *b), *c = malloc(max * sizeof *c);
  int rc = 1;
  if (!a || !b || !c) {
    fprintf(stderr, "train_step: out of memory\n");
    goto out;
  }
  for (size_t i = 0; i < max; i++) {
    a[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    b[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
    c[i] = 0;
  }
  openblas_set_num_threads(threads);
  double peak = 0;
  printf("{\"what\":\"sgemm\",\"threads\":%d,\"shapes\":[", threads);
  for (size_t s = 0; s < n_shapes; s++) {
    const gemm_shape *sh = &shapes[s];
    double flops = 2.0 * sh->m * sh->n * sh->k;
    /* about 0.2 s of work per round, at least 3 calls */
    int calls = (int)(2e10 / flops);
    if (calls < 3) calls = 3;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sh->m, sh->n, sh->k, 1, a, sh->k, b, sh->n, 0, c, sh->n);
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
      double t0 = sw_now();
      for (int i = 0; i < calls; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sh->m, sh->n, sh->k, 1, a, sh->k, b, sh->n, 0, c,
                    sh->n);
      double t = (sw_now() - t0) / calls;
      if (t < best) best = t;
    }
    double gf = flops / best / 1e9;
    if (gf > peak) peak = gf;
    printf("%s{\"m\":%d,\"n\":%d,\"k\":%d,\"gflops\":%.2f}", s ? "," : "", sh->m, sh->n, sh->k, gf);
  }
  printf("],\"peak_gflops\":%.2f}\n", peak);
  rc = 0;
out:
  free(a);
  free(b);
  free(c);
  return rc;
}

typedef struct {
  const char *model_path, *data_dir;
  int threads;
  int64_t steps, warmup, rounds;
  int64_t batches; /* distinct batches fed in turn */
} bench_options;

/* Everything one step needs, as the trainer holds it. */
typedef struct {
  sw_model_spec *spec;
  sw_dataset *ds;
  sw_reader *reader;
  sw_model *model;
  sw_batch *batches; /* copies: the reader's batch lives only until its next call */
  int64_t n_batches;
  const sw_node *params;
  size_t n_params;
  float **m, **v;
  float **grads;
  size_t *sizes;
  int64_t step;
} bench_state;

static void bench_free(bench_state *b) {
  for (size_t i = 0; i < b->n_params; i++) {
    if (b->m) sw_free(b->m[i]);
    if (b->v) sw_free(b->v[i]);
  }
  sw_free(b->m);
  sw_free(b->v);
  sw_free(b->grads);
  sw_free(b->sizes);
  for (int64_t i = 0; b->batches && i < b->n_batches; i++) {
    for (size_t t = 0; b->batches[i].tensors && t < b->batches[i].n_tensors; t++) sw_free(b->batches[i].tensors[t].data);
    sw_free(b->batches[i].tensors);
  }
  sw_free(b->batches);
  sw_reader_close(b->reader);
  sw_model_free(b->model);
  sw_dataset_close(b->ds);
  sw_model_spec_free(b->spec);
}

/* One training step as sw_train_run takes it (trainer.c), on the next batch in turn. More
 * than one batch keeps the net from fitting a single batch to a vanishing loss, where
 * the gradients and Adam's moments underflow to subnormals and the step slows down. */
static sw_status train_one(bench_state *b) {
  sw_graph *g = b->model->g;
  sw_status st = sw_model_feed(b->model, b->spec, &b->batches[b->step % b->n_batches]);
  sw_graph_set_step(g, b->spec->seed, b->step);
  if (!st) st = sw_graph_forward(g);
  if (!st) st = sw_graph_backward(g, b->model->loss);
  if (st) return st;
  if (b->spec->clip_norm > 0) sw_clip_global_norm(b->grads, b->sizes, b->n_params, b->spec->clip_norm);
  float lr = sw_lr_at(&b->spec->schedule, b->step);
  for (size_t i = 0; i < b->n_params; i++)
    sw_optim_update(&b->spec->optim, lr, b->step + 1, sw_graph_data(g, b->params[i]), b->grads[i], b->m[i], b->v[i],
                    b->sizes[i]);
  b->step++;
  return SW_STATUS_OK;
}

/* A deep copy of a reader's batch into *to (zeroed; freed by bench_free even when
 * half made). */
static sw_status copy_batch(const sw_batch *from, sw_batch *to) {
  to->tensors = sw_calloc(from->n_tensors + 1, sizeof *to->tensors);
  if (!to->tensors) return sw_error(SW_STATUS_NOMEM, "out of memory");
  to->n = from->n;
  to->n_tensors = from->n_tensors;
  for (size_t t = 0; t < from->n_tensors; t++) {
    const sw_batch_tensor *f = &from->tensors[t];
    sw_batch_tensor *c = &to->tensors[t];
    *c = *f;
    c->data = NULL;
    size_t bytes = sw_dtype_size(f->dtype);
    for (int d = 0; d < f->rank; d++) bytes *= (size_t)f->shape[d];
    c->data = sw_malloc(bytes ? bytes : 1);
    if (!c->data) return sw_error(SW_STATUS_NOMEM, "out of memory");
    memcpy(c->data, f->data, bytes);
  }
  return SW_STATUS_OK;
}

static sw_status bench_open(const bench_options *o, bench_state *b) {
  sw_status st = sw_model_spec_load(o->model_path, &b->spec);
  if (!st) st = sw_dataset_open(o->data_dir, &b->ds);
  if (!st) st = sw_model_build(b->spec, b->ds, true, &b->model);
  if (!st) st = sw_graph_alloc(b->model->g, b->spec->batch_size);
  if (!st) st = sw_graph_set_threads(b->model->g, o->threads);
  if (st) return st;
  sw_graph_set_training(b->model->g, true);
  /* the split's stored order: the examples bench/torch_train.py trains on */
  sw_reader_options ro = {.seed = b->spec->seed, .shuffle = false};
  st = sw_reader_open(b->ds, "train", &ro, &b->reader);
  if (st) return st;
  b->batches = sw_calloc((size_t)o->batches, sizeof *b->batches);
  if (!b->batches) return sw_error(SW_STATUS_NOMEM, "out of memory");
  b->n_batches = o->batches;
  for (int64_t i = 0; i < o->batches; i++) {
    const sw_batch *next;
    st = sw_reader_next(b->reader, (size_t)b->spec->batch_size, &next);
    if (st == SW_STATUS_EOF || (!st && (int64_t)next->n != b->spec->batch_size))
      return sw_error(SW_STATUS_INVALID, "%s: the train split has fewer than %lld full batches", o->data_dir,
                      (long long)o->batches);
    if (st) return st;
    st = copy_batch(next, &b->batches[i]);
    if (st) return st;
  }
  b->n_params = sw_graph_params(b->model->g, &b->params);
  b->m = sw_calloc(b->n_params + 1, sizeof *b->m);
  b->v = sw_calloc(b->n_params + 1, sizeof *b->v);
  b->grads = sw_calloc(b->n_params + 1, sizeof *b->grads);
  b->sizes = sw_calloc(b->n_params + 1, sizeof *b->sizes);
  if (!b->m || !b->v || !b->grads || !b->sizes) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (size_t i = 0; i < b->n_params; i++) {
    b->sizes[i] = (size_t)sw_graph_elements(b->model->g, b->params[i]);
    b->grads[i] = sw_graph_grad(b->model->g, b->params[i]);
    b->m[i] = sw_calloc(b->sizes[i] ? b->sizes[i] : 1, sizeof(float));
    b->v[i] = sw_calloc(b->sizes[i] ? b->sizes[i] : 1, sizeof(float));
    if (!b->m[i] || !b->v[i]) return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  return SW_STATUS_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int train_bench(const bench_options *o) {
  bench_state b = {0};
  double *round_s = calloc((size_t)o->rounds, sizeof *round_s);
  int rc = 1;
  sw_status st = round_s ? bench_open(o, &b) : sw_error(SW_STATUS_NOMEM, "out of memory");
  for (int64_t i = 0; !st && i < o->warmup; i++) st = train_one(&b);
  for (int64_t r = 0; !st && r < o->rounds; r++) {
    double t0 = sw_now();
    for (int64_t i = 0; !st && i < o->steps; i++) st = train_one(&b);
    round_s[r] = sw_now() - t0;
  }
  if (st) {
    fprintf(stderr, "train_step: %s: %s\n", sw_strerror(st), sw_last_error());
    goto out;
  }
  float loss = ((float *)sw_graph_data(b.model->g, b.model->loss))[0];
  double flops = step_flops(b.model->g);
  qsort(round_s, (size_t)o->rounds, sizeof *round_s, cmp_double);
  double best_ms = round_s[0] / (double)o->steps * 1e3;
  double median_ms = round_s[o->rounds / 2] / (double)o->steps * 1e3;
  double batch = (double)b.spec->batch_size;
  printf("{\"what\":\"train_step\",\"model\":\"%s\",\"threads\":%d,\"batch\":%lld,\"steps\":%lld,\"warmup\":%lld,"
         "\"rounds\":%lld,\"batches\":%lld,\"samples_per_sec\":%.1f,\"step_ms\":%.4f,\"median_step_ms\":%.4f,"
         "\"flops_per_step\":%.0f,\"gflops\":%.2f,\"final_loss\":%.6g}\n",
         b.spec->name, o->threads, (long long)b.spec->batch_size, (long long)o->steps, (long long)o->warmup,
         (long long)o->rounds, (long long)o->batches, batch / best_ms * 1e3, best_ms, median_ms, flops, flops / best_ms / 1e6, (double)loss);
  rc = 0;
out:
  free(round_s);
  bench_free(&b);
  return rc;
}

int main(int argc, char **argv) {
  bench_options o = {.threads = 1, .steps = 200, .warmup = 20, .rounds = 3, .batches = 16};
  int peak = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--sgemm-peak")) {
      peak = 1;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!val) {
      usage(stderr);
      return 2;
    }
    if (!strcmp(a, "--model")) o.model_path = val;
    else if (!strcmp(a, "--data")) o.data_dir = val;
    else if (!strcmp(a, "--threads")) o.threads = atoi(val);
    else if (!strcmp(a, "--steps")) o.steps = atoll(val);
    else if (!strcmp(a, "--warmup")) o.warmup = atoll(val);
    else if (!strcmp(a, "--rounds")) o.rounds = atoll(val);
    else if (!strcmp(a, "--batches")) o.batches = atoll(val);
    else {
      usage(stderr);
      return 2;
    }
    i++;
  }
  if (o.threads < 1 || o.steps < 1 || o.warmup < 0 || o.rounds < 1 || o.batches < 1) {
    usage(stderr);
    return 2;
  }
  sw_log_set_level(SW_LOG_WARN);
  if (peak) return sgemm_peak(o.threads, (int)o.rounds);
  if (!o.model_path || !o.data_dir) {
    usage(stderr);
    return 2;
  }
  return train_bench(&o);
}
