/* Benchmark (never a test): inference of an ONNX model with our engine, as
 * bench/ort_infer.js does it with ONNX Runtime, for bench/infer_vs_ort.sh. The model is
 * imported (sw_onnx_import), allocated and set for batch B, its input filled with
 * deterministic pseudo-random pixels 0..255 (f32); W warm-up forwards, then N forwards
 * timed one by one (sw_now). One JSON line: batch, threads, p50_ms, p99_ms, mean_ms,
 * samples_per_sec (B / mean). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/nn.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: infer_onnx MODEL.onnx --batch B [--threads T] [--iters N] [--warmup W]\n"
          "Times N forward passes (default 200, after W = 20 untimed ones) of the model at batch B\n"
          "with T threads (default 1) on pseudo-random pixels 0..255, and prints one JSON line:\n"
          "batch, threads, p50_ms, p99_ms, mean_ms, samples_per_sec.\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n), nearest rank. */
static double quantile(const double *v, int n, double q) {
  int i = (int)ceil(q * n) - 1;
  if (i < 0) i = 0;
  if (i >= n) i = n - 1;
  return v[i];
}

static long parse_long(const char *s, const char *flag, long min) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min) {
    fprintf(stderr, "infer_onnx: %s needs an integer >= %ld, not '%s'\n", flag, min, s);
    exit(2);
  }
  return v;
}

static int fail(const char *what, sw_status st) {
  fprintf(stderr, "infer_onnx: %s: %s%s%s\n", what, sw_strerror(st), *sw_last_error() ? ": " : "",
          sw_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *model = NULL;
  long batch = 0, threads = 1, iters = 200, warmup = 20;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (a[0] == '-' && a[1] == '-') {
      if (i + 1 >= argc) {
        usage(stderr);
        return 2;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--batch")) batch = parse_long(v, a, 1);
      else if (!strcmp(a, "--threads")) threads = parse_long(v, a, 1);
      else if (!strcmp(a, "--iters")) iters = parse_long(v, a, 1);
      else if (!strcmp(a, "--warmup")) warmup = parse_long(v, a, 0);
      else {
        usage(stderr);
        return 2;
      }
    } else if (!model) {
      model = a;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!model || batch < 1) {
    usage(stderr);
    return 2;
  }

  sw_graph *g = NULL;
  sw_node *outputs = NULL;
  size_t n_outputs = 0;
  json_t *meta = NULL;
  sw_status st = sw_onnx_import(model, &g, &outputs, &n_outputs, &meta);
  if (st != SW_STATUS_OK) return fail(model, st);
  json_decref(meta);
  sw_free(outputs);

  sw_node input = -1;
  for (size_t i = 0; i < sw_graph_size(g); i++)
    if (sw_graph_op_type(g, (sw_node)i) == SW_OP_INPUT) {
      input = (sw_node)i;
      break;
    }
  if (input < 0 || sw_graph_dtype(g, input) != SW_DTYPE_F32) {
    fprintf(stderr, "infer_onnx: %s has no f32 input\n", model);
    sw_graph_free(g);
    return 1;
  }
  if ((st = sw_graph_alloc(g, batch)) != SW_STATUS_OK || (st = sw_graph_set_batch(g, batch)) != SW_STATUS_OK ||
      (st = sw_graph_set_threads(g, (int)threads)) != SW_STATUS_OK) {
    sw_graph_free(g);
    return fail("allocate", st);
  }
  sw_graph_set_training(g, false);

  /* Pixels 0..255 from a 64-bit LCG (fixed seed): the same input every run. */
  float *x = sw_graph_data(g, input);
  int64_t n_in = sw_graph_elements(g, input);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < n_in; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)(s >> 56);
  }

  for (long i = 0; i < warmup; i++)
    if ((st = sw_graph_forward(g)) != SW_STATUS_OK) {
      sw_graph_free(g);
      return fail("forward", st);
    }
  double *ms = malloc((size_t)iters * sizeof *ms);
  if (!ms) {
    sw_graph_free(g);
    fprintf(stderr, "infer_onnx: out of memory\n");
    return 1;
  }
  double total = 0;
  for (long i = 0; i < iters; i++) {
    double t0 = sw_now();
    st = sw_graph_forward(g);
    double t1 = sw_now();
    if (st != SW_STATUS_OK) {
      free(ms);
      sw_graph_free(g);
      return fail("forward", st);
    }
    ms[i] = (t1 - t0) * 1e3;
    total += ms[i];
  }
  qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
  double mean = total / (double)iters;
  printf("{\"engine\":\"slipway\",\"batch\":%ld,\"threads\":%ld,\"iters\":%ld,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
         "\"mean_ms\":%.4f,\"min_ms\":%.4f,\"samples_per_sec\":%.1f}\n",
         batch, threads, iters, quantile(ms, (int)iters, 0.5), quantile(ms, (int)iters, 0.99), mean, ms[0],
         (double)batch / (mean / 1e3));
  free(ms);
  sw_graph_free(g);
  return 0;
}
