/* Benchmark (never a test): the cost of one checkpoint of a model file, through the
 * trainer's own checkpointer (src/train/checkpoint.c): the stall training sees
 * (sw_checkpointer_save: the in-memory snapshot copy), the writer thread's disk write
 * (safetensors + fsync, SHA-256 of the file read back, state.json, renames, fsyncs) and
 * sw_checkpoint_restore (read, SHA-256 check, copy into the model), warm and, with
 * --drop-caches (root), after dropping the page cache. bench/checkpoint_overhead.sh
 * compares the MB/s with dd and cat of the same size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slipway/train.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: checkpoint_io --model M.yaml --data DATASET_DIR --dir RUN_DIR [--rounds R] [--drop-caches]\n"
          "Builds the model with its Adam moments, writes R checkpoints (default 5) into\n"
          "RUN_DIR/checkpoints with the trainer's checkpointer, restores R times (warm page\n"
          "cache) and, with --drop-caches, once more after `sync; echo 3 > drop_caches`;\n"
          "prints one JSON line: bytes of model.safetensors, best/median seconds of the\n"
          "snapshot stall, the write and the restore, and MB/s (10^6 bytes) of the best.\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double best(const double *v, int n) {
  double b = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] < b) b = v[i];
  return b;
}

/* sync, then drop the page cache; true when it worked (root only). */
static bool drop_caches(void) {
  sync();
  FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
  if (!f) return false;
  bool ok = fputs("3\n", f) >= 0;
  return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *data = NULL, *dir = NULL;
  int rounds = 5;
  bool drop = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--drop-caches")) drop = true;
    else if (!strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!model_path || !data || !dir || rounds < 1 || rounds > 1000) {
    usage(stderr);
    return 2;
  }
  sw_model_spec *spec = NULL;
  sw_dataset *ds = NULL;
  sw_model *m = NULL;
  sw_checkpointer *ck = NULL;
  float **mm = NULL, **vv = NULL;
  size_t np = 0;
  int rc = 1;
  double *stall = calloc((size_t)rounds, sizeof *stall), *snap = calloc((size_t)rounds, sizeof *snap),
         *wr = calloc((size_t)rounds, sizeof *wr), *rs = calloc((size_t)rounds, sizeof *rs);
  sw_status st = stall && snap && wr && rs ? SW_STATUS_OK : SW_STATUS_NOMEM;
  if (!st) st = sw_model_spec_load(model_path, &spec);
  if (!st) st = sw_dataset_open(data, &ds);
  if (!st) st = sw_model_build(spec, ds, true, &m);
  if (!st) st = sw_graph_alloc(m->g, spec->batch_size);
  if (st) goto out;
  const sw_node *params;
  np = sw_graph_params(m->g, &params);
  mm = calloc(np + 1, sizeof *mm);
  vv = calloc(np + 1, sizeof *vv);
  if (!mm || !vv) goto out;
  for (size_t i = 0; i < np; i++) {
    size_t n = (size_t)sw_graph_elements(m->g, params[i]);
    mm[i] = malloc((n ? n : 1) * sizeof(float));
    vv[i] = malloc((n ? n : 1) * sizeof(float));
    if (!mm[i] || !vv[i]) goto out;
    for (size_t j = 0; j < n; j++) mm[i][j] = 1e-3f * (float)(j % 97), vv[i][j] = 1e-6f * (float)(j % 89);
  }
  st = sw_mkdir_p(dir);
  if (!st) st = sw_checkpointer_open(dir, rounds + 1, m, mm, vv, &ck);
  for (int r = 0; !st && r < rounds; r++) {
    sw_checkpoint_state s = {.step = r + 1, .seed = spec->seed};
    snprintf(s.config_sha256, sizeof s.config_sha256, "bench");
    snprintf(s.dataset_sha256, sizeof s.dataset_sha256, "%s", sw_dataset_sha256(ds));
    double t0 = sw_now();
    st = sw_checkpointer_save(ck, &s); /* returns once the snapshot is copied */
    double t1 = sw_now();
    if (!st) st = sw_checkpointer_wait(ck);
    stall[r] = t1 - t0;
    sw_checkpointer_costs(ck, &snap[r], &wr[r]);
  }
  if (st) goto out;
  char *file = sw_asprintf("%s/checkpoints/step-%08d/model.safetensors", dir, rounds);
  struct stat sb;
  if (!file || stat(file, &sb) != 0) {
    fprintf(stderr, "checkpoint_io: no %s\n", file ? file : "checkpoint");
    sw_free(file);
    goto out;
  }
  sw_free(file);
  sw_checkpoint_state got;
  for (int r = 0; !st && r < rounds; r++) {
    double t0 = sw_now();
    st = sw_checkpoint_restore(dir, m, mm, vv, &got);
    rs[r] = sw_now() - t0;
  }
  double cold = -1;
  bool dropped = false;
  if (!st && drop && (dropped = drop_caches())) {
    double t0 = sw_now();
    st = sw_checkpoint_restore(dir, m, mm, vv, &got);
    cold = sw_now() - t0;
  }
  if (st) goto out;
  double mb = (double)sb.st_size / 1e6;
  printf("{\"what\":\"checkpoint_io\",\"model\":\"%s\",\"bytes\":%lld,\"rounds\":%d,"
         "\"stall_best_ms\":%.3f,\"stall_median_ms\":%.3f,\"snapshot_best_ms\":%.3f,"
         "\"write_best_s\":%.4f,\"write_median_s\":%.4f,\"write_MBps\":%.1f,"
         "\"restore_best_s\":%.4f,\"restore_median_s\":%.4f,\"restore_MBps\":%.1f,"
         "\"drop_caches\":%s,\"restore_cold_s\":%.4f,\"restore_cold_MBps\":%.1f}\n",
         spec->name, (long long)sb.st_size, rounds, 1e3 * best(stall, rounds), 1e3 * median(stall, rounds),
         1e3 * best(snap, rounds), best(wr, rounds), median(wr, rounds), mb / best(wr, rounds), best(rs, rounds),
         median(rs, rounds), mb / best(rs, rounds), dropped ? "true" : "false", cold, cold > 0 ? mb / cold : 0);
  rc = 0;
out:
  if (st) fprintf(stderr, "checkpoint_io: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
  sw_checkpointer_close(ck);
  for (size_t i = 0; mm && vv && i < np; i++) free(mm[i]), free(vv[i]);
  free(mm);
  free(vv);
  sw_model_free(m);
  sw_dataset_close(ds);
  sw_model_spec_free(spec);
  free(stall);
  free(snap);
  free(wr);
  free(rs);
  return rc;
}
