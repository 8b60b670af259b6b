/* Benchmark (never a test): how fast the data pipeline reads a prepped dataset's shards
 * from the page cache, at three depths -- framing with both CRCs, Example decoding, and
 * whole batches as training gets them. bench/prep_read.sh compares it with `cat`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/base.h"
#include "slipway/data.h"

#define BATCH 256

typedef enum { MODE_FRAMES, MODE_EXAMPLES, MODE_BATCHES } mode;

static const char *const mode_names[] = {"frames", "examples", "batches"};

typedef struct {
  char *path;
  const char *file;
  uint64_t examples; /* what the manifest says */
  uint64_t bytes;
} shard;

/* What one pass over the dataset read. */
typedef struct {
  uint64_t bytes;
  uint64_t records;
  double open_s; /* batches: time in sw_dataset_open + sw_reader_open (the index pass) */
} pass;

/* Keeps the compiler from dropping reads whose results are otherwise unused. */
static volatile uint64_t sink;

static void usage(FILE *f) {
  fprintf(f,
          "usage: read_shards [--mode frames|examples|batches] [--repeat N] DATASET_DIR\n"
          "       read_shards --info\n"
          "Reads every shard of a prepped dataset N times (default 5) and prints one JSON\n"
          "line: bytes, records, best and median seconds and MB/s (1 MB = 10^6 bytes).\n"
          "  frames    sw_tfrecord_next over every record (both CRCs checked)\n"
          "  examples  frames, and sw_example_decode of each record\n"
          "  batches   sw_reader_open per split and one epoch of sw_reader_next(%d)\n"
          "--info prints whether CRC32C uses the SSE4.2 instruction.\n",
          BATCH);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Lists the shards of every split from the manifest, in its order. On success the
 * caller frees each path and the array; on error nothing is left allocated. */
static sw_status list_shards(const sw_dataset *ds, const char *dir, shard **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  sw_status st = SW_STATUS_OK;
  const json_t *splits = json_object_get(sw_dataset_manifest(ds), "splits");
  shard *list = NULL;
  size_t n = 0, cap = 0;
  const char *split;
  json_t *sv;
  if (!json_is_object(splits)) {
    st = sw_error(SW_STATUS_FORMAT, "%s: manifest.json has no \"splits\" object", dir);
    goto out;
  }
  json_object_foreach((json_t *)splits, split, sv) {
    const json_t *shards = json_object_get(sv, "shards");
    size_t i;
    json_t *jv;
    json_array_foreach(shards, i, jv) {
      const char *file = json_string_value(json_object_get(jv, "file"));
      const json_t *ex = json_object_get(jv, "examples"), *by = json_object_get(jv, "bytes");
      if (!file || !json_is_integer(ex) || !json_is_integer(by)) {
        st = sw_error(SW_STATUS_FORMAT, "%s: split %s: shard %zu lacks file/examples/bytes", dir,
                      split, i);
        goto out;
      }
      if (n == cap) {
        cap = cap ? 2 * cap : 16;
        shard *grown = sw_realloc(list, cap * sizeof *list);
        if (!grown) {
          st = sw_error(SW_STATUS_NOMEM, "out of memory");
          goto out;
        }
        list = grown;
      }
      list[n].path = sw_path_join(dir, file);
      if (!list[n].path) {
        st = sw_error(SW_STATUS_NOMEM, "out of memory");
        goto out;
      }
      list[n].file = file; /* owned by the manifest, which outlives the list */
      list[n].examples = (uint64_t)json_integer_value(ex);
      list[n].bytes = (uint64_t)json_integer_value(by);
      n++;
    }
  }
  if (n == 0) st = sw_error(SW_STATUS_FORMAT, "%s: the manifest lists no shards", dir);
out:
  if (st) {
    for (size_t i = 0; i < n; i++) sw_free(list[i].path);
    sw_free(list);
    return st;
  }
  *out = list;
  *n_out = n;
  return SW_STATUS_OK;
}

/* One pass of frames or examples mode over every shard. */
static sw_status read_frames(const shard *shards, size_t n, bool decode, pass *p) {
  sw_status st = SW_STATUS_OK;
  sw_tfrecord_reader *r = NULL;
  sw_example ex = {0};
  uint64_t touched = 0;
  for (size_t s = 0; s < n; s++) {
    uint64_t count = 0;
    st = sw_tfrecord_open(shards[s].path, &r);
    if (st) goto out;
    for (;;) {
      const uint8_t *data;
      size_t len;
      st = sw_tfrecord_next(r, &data, &len, NULL);
      if (st == SW_STATUS_EOF) {
        st = SW_STATUS_OK;
        break;
      }
      if (st) goto out;
      count++;
      /* The CRC has read every byte; this keeps a use of the record in the loop. */
      touched += len ? data[0] ^ data[len - 1] : 0;
      if (decode) {
        st = sw_example_decode(data, len, &ex);
        if (st) {
          sw_error_prefix(st, "%s: record %llu: ", shards[s].file, (unsigned long long)count - 1);
          goto out;
        }
        touched += ex.n_features;
        sw_example_clear(&ex);
      }
    }
    if (count != shards[s].examples) {
      st = sw_error(SW_STATUS_CORRUPT, "%s: read %llu records, the manifest says %llu",
                    shards[s].file, (unsigned long long)count,
                    (unsigned long long)shards[s].examples);
      goto out;
    }
    p->bytes += sw_tfrecord_size(r);
    p->records += count;
    sw_tfrecord_close(r);
    r = NULL;
  }
out:
  sw_tfrecord_close(r);
  sink += touched;
  return st;
}

/* One pass of batches mode: every split as training reads it, one epoch, no shuffle. */
static sw_status read_batches(const char *dir, pass *p) {
  sw_status st = SW_STATUS_OK;
  sw_dataset *ds = NULL;
  sw_reader *r = NULL;
  uint64_t touched = 0;
  double t0 = sw_now(), opened = 0;
  st = sw_dataset_open(dir, &ds);
  if (st) goto out;
  opened += sw_now() - t0;
  const json_t *splits = json_object_get(sw_dataset_manifest(ds), "splits");
  const char *split;
  json_t *sv;
  json_object_foreach((json_t *)splits, split, sv) {
    sw_reader_options opt = {.seed = 0, .shuffle = false};
    double t1 = sw_now();
    st = sw_reader_open(ds, split, &opt, &r);
    if (st) goto out;
    opened += sw_now() - t1;
    uint64_t count = 0;
    for (;;) {
      const sw_batch *b;
      st = sw_reader_next(r, BATCH, &b);
      if (st == SW_STATUS_EOF) {
        st = SW_STATUS_OK;
        break;
      }
      if (st) goto out;
      count += b->n;
      for (size_t t = 0; t < b->n_tensors; t++) touched += ((const uint8_t *)b->tensors[t].data)[0];
    }
    int64_t want = sw_dataset_split_examples(ds, split);
    if (want < 0 || count != (uint64_t)want) {
      st = sw_error(SW_STATUS_CORRUPT, "split %s: read %llu examples, the manifest says %lld", split,
                    (unsigned long long)count, (long long)want);
      goto out;
    }
    size_t i;
    json_t *jv;
    json_array_foreach(json_object_get(sv, "shards"), i, jv) {
      p->bytes += (uint64_t)json_integer_value(json_object_get(jv, "bytes"));
    }
    p->records += count;
    sw_reader_close(r);
    r = NULL;
  }
out:
  sw_reader_close(r);
  sw_dataset_close(ds);
  p->open_s = opened;
  sink += touched;
  return st;
}

static int print_info(void) {
  json_t *j = json_pack("{s:s, s:b}", "slipway", sw_version(), "crc32c_hw", sw_crc32c_hw());
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  int rc = s ? 0 : 1;
  if (s) printf("%s\n", s);
  free(s);
  json_decref(j);
  return rc;
}

int main(int argc, char **argv) {
  int rc = 1;
  mode m = MODE_FRAMES;
  long repeat = 5;
  const char *dir = NULL;
  sw_dataset *ds = NULL;
  shard *shards = NULL;
  size_t n_shards = 0;
  double *times = NULL, *opens = NULL;
  json_t *report = NULL;
  char *line = NULL;
  sw_status st = SW_STATUS_OK;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--info")) return print_info();
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      const char *v = argv[++i];
      int found = -1;
      for (int k = 0; k < 3; k++)
        if (!strcmp(v, mode_names[k])) found = k;
      if (found < 0) goto bad_usage;
      m = (mode)found;
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
      char *end;
      repeat = strtol(argv[++i], &end, 10);
      if (*end || repeat < 1 || repeat > 1000) goto bad_usage;
    } else if (argv[i][0] != '-' && !dir) {
      dir = argv[i];
    } else {
      goto bad_usage;
    }
  }
  if (!dir) goto bad_usage;

  sw_log_set_level(SW_LOG_WARN);
  /* Opened once to list the shards and the counts to check against. */
  st = sw_dataset_open(dir, &ds);
  if (!st) st = list_shards(ds, dir, &shards, &n_shards);
  if (st) goto fail;
  times = sw_calloc((size_t)repeat, sizeof *times);
  opens = sw_calloc((size_t)repeat, sizeof *opens);
  if (!times || !opens) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto fail;
  }

  pass p = {0};
  for (long k = 0; k < repeat; k++) {
    p = (pass){0};
    double t0 = sw_now();
    if (m == MODE_BATCHES)
      st = read_batches(dir, &p);
    else
      st = read_frames(shards, n_shards, m == MODE_EXAMPLES, &p);
    times[k] = sw_now() - t0;
    opens[k] = p.open_s;
    if (st) goto fail;
  }
  double best = times[0], best_open = opens[0];
  for (long k = 1; k < repeat; k++)
    if (times[k] < best) {
      best = times[k];
      best_open = opens[k];
    }
  qsort(times, (size_t)repeat, sizeof *times, cmp_double);
  double median = repeat % 2 ? times[repeat / 2] : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  double mb = (double)p.bytes / 1e6;

  report = json_pack("{s:s, s:s, s:i, s:I, s:I, s:i, s:f, s:f, s:f, s:f, s:b}", "mode",
                     mode_names[m], "dir", dir, "shards", (int)n_shards, "bytes",
                     (json_int_t)p.bytes, "records", (json_int_t)p.records, "repeat", (int)repeat,
                     "best_s", best, "median_s", median, "mb_s", mb / best, "median_mb_s",
                     mb / median, "crc32c_hw", sw_crc32c_hw());
  if (report && m == MODE_BATCHES) json_object_set_new(report, "best_open_s", json_real(best_open));
  line = report ? json_dumps(report, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
  if (!line) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto fail;
  }
  printf("%s\n", line);
  rc = 0;
  goto out;

bad_usage:
  usage(stderr);
  rc = 2;
  goto out;
fail:
  fprintf(stderr, "read_shards: %s: %s\n", sw_status_name(st), sw_last_error());
  rc = 1;
out:
  free(line);
  json_decref(report);
  sw_free(times);
  sw_free(opens);
  for (size_t i = 0; i < n_shards; i++) sw_free(shards[i].path);
  sw_free(shards);
  sw_dataset_close(ds);
  return rc;
}
