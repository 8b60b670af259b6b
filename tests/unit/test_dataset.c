/* prep end to end from C, and the dataset reader: typed batches, the order fixed by
 * (seed, epoch), saving and restoring the position, corrupt and truncated shards named
 * with their offsets, unsafe names in a manifest refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_int.h"

#define ROWS 200

static char tmpdir[256];

static void write_csv(const char *path, bool with_bad_row) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "id,x,color,note,label\n");
  for (int i = 0; i < ROWS; i++)
    fprintf(f, "%d,%.3f,%s,note %d,%d\n", i, (i % 17) * 0.5, i % 3 == 0 ? "red" : i % 3 == 1 ? "green" : "blue", i,
            i % 2);
  if (with_bad_row) fprintf(f, "%d,not-a-number,red,x,1\n", ROWS);
  fclose(f);
}

static char *path_in(const char *name) { return sw_path_join(tmpdir, name); }

static sw_status prep(const char *csv, const char *out, uint64_t seed, double max_q) {
  sw_prep_options o = {0};
  o.kind = "csv";
  o.path = csv;
  o.out_dir = out;
  o.seed = seed;
  o.shards = 3;
  o.max_z = -1;
  o.max_quarantine_fraction = max_q;
  o.overwrite = true;
  json_t *report = NULL;
  sw_status st = sw_prep_run(&o, &report);
  json_decref(report);
  return st;
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sw_test_dataset_XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  char *csv = path_in("rows.csv"), *out = path_in("ds");
  write_csv(csv, false);
  assert_int_equal(prep(csv, out, 7, -1), SW_STATUS_OK);
  sw_free(csv);
  sw_free(out);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  sw_remove_tree(tmpdir);
  return 0;
}

static sw_dataset *open_ds(void) {
  char *dir = path_in("ds");
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open(dir, &ds), SW_STATUS_OK);
  sw_free(dir);
  return ds;
}

/* Reads a whole epoch's ids in order. */
static void read_ids(sw_reader *r, size_t batch, int64_t *ids, size_t *n) {
  const sw_batch *b;
  sw_status st;
  *n = 0;
  while ((st = sw_reader_next(r, batch, &b)) == SW_STATUS_OK) {
    const sw_batch_tensor *t = sw_batch_find(b, "id");
    assert_non_null(t);
    assert_int_equal(t->dtype, SW_DTYPE_I64);
    memcpy(ids + *n, t->data, b->n * sizeof *ids);
    *n += b->n;
  }
  assert_int_equal(st, SW_STATUS_EOF);
}

static void test_splits_and_types(void **state) {
  (void)state;
  sw_dataset *ds = open_ds();
  int64_t total = 0;
  const char *splits[] = {"train", "val", "test"};
  for (int i = 0; i < 3; i++) total += sw_dataset_split_examples(ds, splits[i]);
  assert_int_equal(total, ROWS);
  assert_int_equal(sw_dataset_split_examples(ds, "train"), 160); /* exact: 0.8 of 200 */
  assert_int_equal(sw_dataset_split_examples(ds, "nope"), -1);
  assert_int_equal(strlen(sw_dataset_sha256(ds)), 64);
  assert_int_equal(sw_dataset_verify(ds), SW_STATUS_OK);

  sw_reader *r = NULL;
  sw_reader_options opt = {.seed = 1, .shuffle = false};
  assert_int_equal(sw_reader_open(ds, "train", &opt, &r), SW_STATUS_OK);
  const sw_batch *b;
  assert_int_equal(sw_reader_next(r, 32, &b), SW_STATUS_OK);
  assert_int_equal(b->n, 32);
  const sw_batch_tensor *x = sw_batch_find(b, "x"), *color = sw_batch_find(b, "color"),
                        *label = sw_batch_find(b, "label"), *id = sw_batch_find(b, "id");
  assert_non_null(x);
  assert_non_null(color);
  assert_non_null(label);
  assert_null(sw_batch_find(b, "note")); /* free text has no numeric form */
  assert_int_equal(x->dtype, SW_DTYPE_F32);
  assert_int_equal(x->rank, 1);
  assert_int_equal(x->shape[0], 32);
  assert_int_equal(color->dtype, SW_DTYPE_I64);
  /* raw values, and the vocabulary index of each color (domain sorted: blue green red) */
  for (size_t i = 0; i < b->n; i++) {
    int64_t row = ((int64_t *)id->data)[i];
    assert_float_equal(((float *)x->data)[i], (row % 17) * 0.5f, 1e-6);
    int64_t want = row % 3 == 0 ? 2 : row % 3 == 1 ? 1 : 0;
    assert_int_equal(((int64_t *)color->data)[i], want);
    assert_int_equal(((int64_t *)label->data)[i], row % 2);
  }
  sw_reader_close(r);
  sw_dataset_close(ds);
}

static void test_order_fixed_by_seed_and_epoch(void **state) {
  (void)state;
  sw_dataset *ds = open_ds();
  sw_reader *a = NULL, *b = NULL;
  sw_reader_options opt = {.seed = 42, .shuffle = true};
  assert_int_equal(sw_reader_open(ds, "train", &opt, &a), SW_STATUS_OK);
  assert_int_equal(sw_reader_open(ds, "train", &opt, &b), SW_STATUS_OK);
  int64_t e0a[ROWS], e0b[ROWS], e1a[ROWS], sorted[ROWS];
  size_t n0a, n0b, n1a;
  read_ids(a, 7, e0a, &n0a);
  read_ids(b, 50, e0b, &n0b); /* another batch size, the same order */
  read_ids(a, 7, e1a, &n1a);
  assert_int_equal(n0a, 160);
  assert_int_equal(n0b, 160);
  assert_int_equal(n1a, 160);
  assert_memory_equal(e0a, e0b, sizeof(int64_t) * 160);
  assert_memory_not_equal(e0a, e1a, sizeof(int64_t) * 160); /* a new order each epoch */
  /* every example once per epoch */
  memcpy(sorted, e1a, sizeof(int64_t) * 160);
  for (size_t i = 0; i < 160; i++)
    for (size_t k = i + 1; k < 160; k++) assert_true(sorted[i] != sorted[k]);
  sw_reader_close(a);
  sw_reader_close(b);
  sw_dataset_close(ds);
}

static void test_tell_and_seek_resume_exactly(void **state) {
  (void)state;
  sw_dataset *ds = open_ds();
  sw_reader_options opt = {.seed = 9, .shuffle = true};
  sw_reader *r = NULL, *s = NULL;
  assert_int_equal(sw_reader_open(ds, "train", &opt, &r), SW_STATUS_OK);
  const sw_batch *b;
  int64_t tmp[ROWS];
  size_t n;
  read_ids(r, 16, tmp, &n); /* into epoch 1 */
  for (int i = 0; i < 3; i++) assert_int_equal(sw_reader_next(r, 16, &b), SW_STATUS_OK);
  sw_reader_pos pos = sw_reader_tell(r);
  assert_int_equal(pos.epoch, 1);
  assert_int_equal(pos.index, 48);
  assert_int_equal(sw_reader_next(r, 16, &b), SW_STATUS_OK);
  int64_t want[16];
  memcpy(want, sw_batch_find(b, "id")->data, sizeof want);

  assert_int_equal(sw_reader_open(ds, "train", &opt, &s), SW_STATUS_OK);
  assert_int_equal(sw_reader_seek(s, pos), SW_STATUS_OK);
  assert_int_equal(sw_reader_next(s, 16, &b), SW_STATUS_OK);
  assert_memory_equal(sw_batch_find(b, "id")->data, want, sizeof want);
  sw_reader_pos bad = {0, 100000};
  assert_int_equal(sw_reader_seek(s, bad), SW_STATUS_RANGE);
  sw_reader_close(r);
  sw_reader_close(s);
  sw_dataset_close(ds);
}

/* Copies the dataset and damages one shard of the copy. */
static char *damaged_copy(const char *name, bool truncate_it, long *offset_out) {
  char *src = path_in("ds"), *dst = path_in(name);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
  assert_int_equal(system(cmd), 0);
  char *shard = sw_path_join(dst, "train-00001-of-00003.tfrecord");
  uint8_t *data;
  size_t len;
  assert_int_equal(sw_read_file(shard, &data, &len), SW_STATUS_OK);
  /* the second frame of the shard */
  uint64_t first;
  memcpy(&first, data, 8);
  long second = (long)(first + SW_TFRECORD_OVERHEAD);
  *offset_out = second;
  if (truncate_it) {
    assert_int_equal(truncate(shard, second + 20), 0);
  } else {
    data[second + 12 + 5] ^= 0x10; /* a bit inside the payload */
    assert_int_equal(sw_atomic_write(shard, data, len), SW_STATUS_OK);
  }
  sw_free(data);
  sw_free(shard);
  sw_free(src);
  return dst;
}

static void test_bit_flip_names_shard_and_offset(void **state) {
  (void)state;
  long off;
  char *dir = damaged_copy("flipped", false, &off);
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open(dir, &ds), SW_STATUS_OK); /* sizes still match */
  assert_int_equal(sw_dataset_verify(ds), SW_STATUS_CORRUPT);
  assert_non_null(strstr(sw_last_error(), "train-00001-of-00003.tfrecord"));
  /* opening the split indexes (and so checks) every frame */
  sw_reader *r = NULL;
  sw_reader_options opt = {0};
  assert_int_equal(sw_reader_open(ds, "train", &opt, &r), SW_STATUS_CORRUPT);
  assert_null(r);
  char want[128];
  snprintf(want, sizeof want, "train-00001-of-00003.tfrecord: offset %ld:", off);
  assert_non_null(strstr(sw_last_error(), want));
  /* other splits still read */
  assert_int_equal(sw_reader_open(ds, "test", &opt, &r), SW_STATUS_OK);
  sw_reader_close(r);
  sw_dataset_close(ds);
  sw_free(dir);
}

static void test_truncated_shard_is_refused(void **state) {
  (void)state;
  long off;
  char *dir = damaged_copy("truncated", true, &off);
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open(dir, &ds), SW_STATUS_TRUNCATED);
  assert_null(ds);
  assert_non_null(strstr(sw_last_error(), "train-00001-of-00003.tfrecord"));
  /* the frame reader on its own names the frame's offset */
  char *shard = sw_path_join(dir, "train-00001-of-00003.tfrecord");
  sw_tfrecord_reader *tr = NULL;
  assert_int_equal(sw_tfrecord_open(shard, &tr), SW_STATUS_OK);
  const uint8_t *data;
  size_t len;
  uint64_t at;
  assert_int_equal(sw_tfrecord_next(tr, &data, &len, &at), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_next(tr, &data, &len, &at), SW_STATUS_TRUNCATED);
  assert_int_equal((long)at, off);
  char want[128];
  snprintf(want, sizeof want, "offset %ld", off);
  assert_non_null(strstr(sw_last_error(), want));
  sw_tfrecord_close(tr);
  sw_free(shard);
  sw_free(dir);
}

static void test_unsafe_names_in_manifest_refused(void **state) {
  (void)state;
  long off;
  char *dir = damaged_copy("unsafe", false, &off);
  char *mpath = sw_path_join(dir, "manifest.json");
  json_t *m = NULL;
  assert_int_equal(sw_json_load_file(mpath, &m), SW_STATUS_OK);
  json_t *shard = json_array_get(json_object_get(json_object_get(json_object_get(m, "splits"), "train"), "shards"), 0);
  json_object_set_new(shard, "file", json_string("../rows.csv"));
  assert_int_equal(sw_json_write_file(mpath, m), SW_STATUS_OK);
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open(dir, &ds), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "plain file name"));
  json_decref(m);
  sw_free(mpath);
  sw_free(dir);
}

static void test_missing_dataset(void **state) {
  (void)state;
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open("/nonexistent/dataset", &ds), SW_STATUS_NOT_FOUND);
  assert_non_null(strstr(sw_last_error(), "/nonexistent/dataset"));
}

static void test_same_seed_same_bytes_and_refusal(void **state) {
  (void)state;
  char *csv = path_in("rows.csv"), *a = path_in("again"), *ds = path_in("ds");
  assert_int_equal(prep(csv, a, 7, -1), SW_STATUS_OK);
  char h1[SW_SHA256_HEX_LEN], h2[SW_SHA256_HEX_LEN];
  char *m1 = sw_path_join(ds, "manifest.json"), *m2 = sw_path_join(a, "manifest.json");
  assert_int_equal(sw_sha256_file_hex(m1, h1), SW_STATUS_OK);
  assert_int_equal(sw_sha256_file_hex(m2, h2), SW_STATUS_OK);
  assert_string_not_equal(h1, ""); /* manifest paths are the same input path, so equal */
  assert_string_equal(h1, h2);

  char *bad = path_in("bad.csv"), *out = path_in("refused");
  write_csv(bad, true);
  assert_int_equal(prep(bad, out, 7, 0.0), SW_STATUS_REFUSED);
  assert_false(sw_path_exists(out));
  assert_int_equal(prep(bad, out, 7, 0.01), SW_STATUS_OK);
  sw_free(m1);
  sw_free(m2);
  sw_free(csv);
  sw_free(a);
  sw_free(ds);
  sw_free(bad);
  sw_free(out);
}

/* --test-input: every record of the second file goes to test, none to train or val; a
 * value outside the main input's domain is quarantined; --split may not name test. */
static void test_test_input_is_the_test_split(void **state) {
  (void)state;
  char *csv = path_in("rows.csv"), *held = path_in("held.csv"), *out = path_in("with_test");
  FILE *f = fopen(held, "w");
  assert_non_null(f);
  fprintf(f, "id,x,color,note,label\n");
  for (int i = 0; i < 10; i++) fprintf(f, "%d,1.5,%s,held %d,%d\n", 1000 + i, i == 9 ? "purple" : "red", i, i % 2);
  fclose(f);
  sw_prep_options o = {0};
  o.kind = "csv";
  o.path = csv;
  o.test_path = held;
  o.out_dir = out;
  o.max_z = 0; /* ids 1000+ would be far out of the training distribution */
  o.max_quarantine_fraction = 0.05;
  json_t *report = NULL;
  assert_int_equal(sw_prep_run(&o, &report), SW_STATUS_OK);
  assert_int_equal(json_integer_value(json_object_get(report, "quarantined")), 1);
  json_decref(report);
  sw_dataset *ds = NULL;
  assert_int_equal(sw_dataset_open(out, &ds), SW_STATUS_OK);
  assert_int_equal(sw_dataset_split_examples(ds, "train"), 180); /* train=0.9,val=0.1 of 200 */
  assert_int_equal(sw_dataset_split_examples(ds, "val"), 20);
  const char *splits[] = {"train", "val", "test"};
  for (int s = 0; s < 3; s++) {
    sw_reader *r = NULL;
    sw_reader_options ro = {.seed = 1, .shuffle = false};
    assert_int_equal(sw_reader_open(ds, splits[s], &ro, &r), SW_STATUS_OK);
    int64_t ids[ROWS];
    size_t n = 0;
    read_ids(r, 16, ids, &n);
    if (s == 2) assert_int_equal(n, 9);
    for (size_t i = 0; i < n; i++) assert_true(s == 2 ? (ids[i] >= 1000 && ids[i] < 1009) : ids[i] < ROWS);
    sw_reader_close(r);
  }
  sw_dataset_close(ds);

  o.split_spec = "train=0.8,test=0.2";
  o.overwrite = true;
  assert_int_equal(sw_prep_run(&o, &report), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "--test-input gives the test split"));
  json_decref(report);
  sw_free(csv);
  sw_free(held);
  sw_free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_splits_and_types),
      cmocka_unit_test(test_order_fixed_by_seed_and_epoch),
      cmocka_unit_test(test_tell_and_seek_resume_exactly),
      cmocka_unit_test(test_bit_flip_names_shard_and_offset),
      cmocka_unit_test(test_truncated_shard_is_refused),
      cmocka_unit_test(test_unsafe_names_in_manifest_refused),
      cmocka_unit_test(test_missing_dataset),
      cmocka_unit_test(test_same_seed_same_bytes_and_refusal),
      cmocka_unit_test(test_test_input_is_the_test_split),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
