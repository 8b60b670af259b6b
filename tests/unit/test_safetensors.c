/* Unit tests of safetensors (src/nn/safetensors.c): round trips of every dtype, scalars
 * and empty tensors, the exact bytes of a known file, byte-identical output whatever the
 * order of the input, and the rejection of each kind of malformed file. With
 * SW_SAFETENSORS_OUT / SW_SAFETENSORS_IN set, also writes the known file to / checks it
 * in a file from tests/integration/test_safetensors_interop.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/nn.h"

/* ---- helpers -------------------------------------------------------------- */

static char *make_tmpdir(void) {
  char tmpl[] = "/tmp/sw_test_safetensors.XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char *d = sw_strdup(tmpl);
  assert_non_null(d);
  return d;
}

static uint8_t *slurp(const char *path, size_t *len) {
  uint8_t *data = NULL;
  assert_int_equal(sw_read_file(path, &data, len), SW_STATUS_OK);
  return data;
}

/* A file of the given header text (unpadded) and data bytes, in a new buffer. */
static uint8_t *make_file(const char *header, const void *data, size_t data_len, size_t *len) {
  size_t n = strlen(header);
  *len = 8 + n + data_len;
  uint8_t *f = malloc(*len ? *len : 1);
  assert_non_null(f);
  for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(f + 8, header, n);
  if (data_len) memcpy(f + 8 + n, data, data_len);
  return f;
}

/* Parses a hand-made file and checks it is refused with `want`, the message naming
 * `needle`; nothing leaks. */
static void expect_refused(const char *header, size_t data_len, sw_status want, const char *needle) {
  uint8_t data[256];
  assert_true(data_len <= sizeof data);
  for (size_t i = 0; i < data_len; i++) data[i] = (uint8_t)i;
  size_t len;
  uint8_t *f = make_file(header, data, data_len, &len);
  long live = sw_alloc_live();
  sw_safetensors *st = (sw_safetensors *)f;
  sw_status got = sw_safetensors_parse(f, len, &st);
  if (got != want)
    fail_msg("header %s: got %s (%s), want %s", header, sw_status_name(got), sw_last_error(),
             sw_status_name(want));
  assert_null(st);
  if (needle && !strstr(sw_last_error(), needle))
    fail_msg("header %s: message \"%s\" does not mention \"%s\"", header, sw_last_error(), needle);
  assert_int_equal(sw_alloc_live(), live);
  free(f);
}

static void expect_accepted(const char *header, size_t data_len, size_t count) {
  uint8_t data[256] = {0};
  size_t len;
  uint8_t *f = make_file(header, data, data_len, &len);
  sw_safetensors *st = NULL;
  sw_status got = sw_safetensors_parse(f, len, &st);
  if (got != SW_STATUS_OK) fail_msg("header %s: %s (%s)", header, sw_status_name(got), sw_last_error());
  assert_int_equal(sw_safetensors_count(st), count);
  sw_safetensors_close(st);
  free(f);
}

/* ---- the known file --------------------------------------------------------- */

/* Also built, independently, by tests/integration/test_safetensors_interop.py. */
static const float known_weight[6] = {-1.25f, -0.75f, -0.25f, 0.25f, 0.75f, 1.25f}; /* (i - 2.5) / 2 */
static const float known_bias[3] = {0.25f, -1.0f, 3.0f};
static const int64_t known_step = 1234567890123;
static const uint8_t known_labels[5] = {0, 1, 2, 254, 255};
static const char known_header[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"slipway\"},"
    "\"bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[20,20]},"
    "\"labels\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[44,49]},"
    "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
    "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[20,44]}}";

/* The known tensors, in a deliberately unsorted order. */
static size_t known_tensors(sw_named_tensor *t) {
  memset(t, 0, 5 * sizeof *t);
  t[0] = (sw_named_tensor){
      .name = "weight", .dtype = SW_DTYPE_F32, .rank = 2, .shape = {2, 3}, .data = known_weight};
  t[1] = (sw_named_tensor){
      .name = "labels", .dtype = SW_DTYPE_U8, .rank = 1, .shape = {5}, .data = known_labels};
  t[2] = (sw_named_tensor){.name = "step", .dtype = SW_DTYPE_I64, .rank = 0, .data = &known_step};
  t[3] =
      (sw_named_tensor){.name = "bias", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {3}, .data = known_bias};
  t[4] = (sw_named_tensor){.name = "empty", .dtype = SW_DTYPE_F32, .rank = 2, .shape = {0, 4}, .data = NULL};
  return 5;
}

static json_t *known_metadata(void) {
  json_t *m = json_pack("{s:s, s:s}", "note", "slipway", "format", "pt");
  assert_non_null(m);
  return m;
}

/* The whole expected file: length, header padded with spaces, data in layout order. */
static uint8_t *known_bytes(size_t *len) {
  size_t n = strlen(known_header), padded = (n + 7) / 8 * 8;
  *len = 8 + padded + 49;
  uint8_t *f = malloc(*len);
  assert_non_null(f);
  for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  memcpy(f + 8, known_header, n);
  memset(f + 8 + n, ' ', padded - n);
  uint8_t *d = f + 8 + padded;
  memcpy(d + 0, &known_step, 8);
  memcpy(d + 8, known_bias, 12);
  memcpy(d + 20, known_weight, 24);
  memcpy(d + 44, known_labels, 5);
  return f;
}

static void write_known(const char *path) {
  sw_named_tensor t[5];
  size_t n = known_tensors(t);
  json_t *m = known_metadata();
  sw_status st = sw_safetensors_write(path, t, n, m);
  if (st) fail_msg("write %s: %s", path, sw_last_error());
  json_decref(m);
}

/* Checks that st holds the known tensors and metadata. */
static void check_known(const sw_safetensors *st) {
  assert_int_equal(sw_safetensors_count(st), 5);
  static const char *names[] = {"bias", "empty", "labels", "step", "weight"}; /* get() is by name */
  for (size_t i = 0; i < 5; i++) assert_string_equal(sw_safetensors_get(st, i)->name, names[i]);
  assert_null(sw_safetensors_get(st, 5));

  const sw_named_tensor *w = sw_safetensors_find(st, "weight");
  assert_non_null(w);
  assert_int_equal(w->dtype, SW_DTYPE_F32);
  assert_int_equal(w->rank, 2);
  assert_int_equal(w->shape[0], 2);
  assert_int_equal(w->shape[1], 3);
  assert_int_equal((uintptr_t)w->data % 4, 0);
  assert_memory_equal(w->data, known_weight, sizeof known_weight);

  const sw_named_tensor *b = sw_safetensors_find(st, "bias");
  assert_non_null(b);
  assert_int_equal(b->rank, 1);
  assert_int_equal(b->shape[0], 3);
  assert_memory_equal(b->data, known_bias, sizeof known_bias);

  const sw_named_tensor *s = sw_safetensors_find(st, "step");
  assert_non_null(s);
  assert_int_equal(s->dtype, SW_DTYPE_I64);
  assert_int_equal(s->rank, 0);
  assert_int_equal((uintptr_t)s->data % 8, 0);
  assert_int_equal(*(const int64_t *)s->data, known_step);

  const sw_named_tensor *l = sw_safetensors_find(st, "labels");
  assert_non_null(l);
  assert_int_equal(l->dtype, SW_DTYPE_U8);
  assert_int_equal(l->shape[0], 5);
  assert_memory_equal(l->data, known_labels, 5);

  const sw_named_tensor *e = sw_safetensors_find(st, "empty");
  assert_non_null(e);
  assert_int_equal(e->rank, 2);
  assert_int_equal(e->shape[0], 0);
  assert_int_equal(e->shape[1], 4);

  assert_null(sw_safetensors_find(st, "missing"));
  assert_null(sw_safetensors_find(st, "__metadata__"));
  const json_t *m = sw_safetensors_metadata(st);
  assert_non_null(m);
  assert_int_equal(json_object_size(m), 2);
  assert_string_equal(json_string_value(json_object_get(m, "format")), "pt");
  assert_string_equal(json_string_value(json_object_get(m, "note")), "slipway");
}

/* ---- writing ---------------------------------------------------------------- */

static void test_known_bytes(void **state) {
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "known.safetensors");
  write_known(path);
  size_t len, want_len;
  uint8_t *got = slurp(path, &len);
  uint8_t *want = known_bytes(&want_len);
  assert_int_equal(len, want_len);
  assert_memory_equal(got, want, len);
  assert_int_equal((len - 49) % 8, 0); /* the data section starts on a multiple of 8 */
  free(want);
  sw_free(got);

  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_OK);
  check_known(st);
  sw_safetensors_close(st);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

/* Every order of the same tensors, and metadata built in either key order, give the
 * same bytes. */
static void test_same_bytes_whatever_the_order(void **state) {
  char *dir = make_tmpdir();
  char *ref_path = sw_path_join(dir, "ref.safetensors"), *path = sw_path_join(dir, "perm.safetensors");
  write_known(ref_path);
  size_t ref_len;
  uint8_t *ref = slurp(ref_path, &ref_len);
  sw_named_tensor base[5], perm[5];
  known_tensors(base);
  json_t *m = json_pack("{s:s, s:s}", "format", "pt", "note", "slipway"); /* other key order */
  assert_non_null(m);
  sw_rng r;
  sw_rng_init(&r, 7, 0);
  for (int k = 0; k < 20; k++) {
    uint64_t p[5];
    sw_rng_permutation(&r, p, 5);
    for (int i = 0; i < 5; i++) perm[i] = base[p[i]];
    assert_int_equal(sw_safetensors_write(path, perm, 5, m), SW_STATUS_OK);
    size_t len;
    uint8_t *got = slurp(path, &len);
    assert_int_equal(len, ref_len);
    assert_memory_equal(got, ref, len);
    sw_free(got);
  }
  json_decref(m);
  sw_free(ref);
  sw_free(ref_path);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

/* Round trips through a file: every dtype, ranks 0 to the maximum, empty tensors, no
 * tensors at all, no metadata. */
static void test_round_trip(void **state) {
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "rt.safetensors");
  long live = sw_alloc_live();

  float f[24];
  int64_t i64[7];
  uint8_t u8[11];
  for (int i = 0; i < 24; i++) f[i] = (float)i * 0.37f - 3.0f;
  for (int i = 0; i < 7; i++) i64[i] = (int64_t)i * -1000000000007LL;
  for (int i = 0; i < 11; i++) u8[i] = (uint8_t)(i * 23);
  float scalar = 42.5f;
  sw_named_tensor t[] = {
      {.name = "f/rank6", .dtype = SW_DTYPE_F32, .rank = 6, .shape = {1, 2, 1, 3, 2, 2}, .data = f},
      {.name = "i64", .dtype = SW_DTYPE_I64, .rank = 1, .shape = {7}, .data = i64},
      {.name = "u8.odd", .dtype = SW_DTYPE_U8, .rank = 2, .shape = {1, 11}, .data = u8},
      {.name = "scalar", .dtype = SW_DTYPE_F32, .rank = 0, .data = &scalar},
      {.name = "u8.empty", .dtype = SW_DTYPE_U8, .rank = 1, .shape = {0}, .data = NULL},
      {.name = "i64.empty", .dtype = SW_DTYPE_I64, .rank = 3, .shape = {5, 0, 2}, .data = NULL},
      {.name = "f.second", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {3}, .data = f + 20},
      {.name = "caf\xc3\xa9", .dtype = SW_DTYPE_U8, .rank = 1, .shape = {1}, .data = u8 + 3}, /* UTF-8 */
  };
  size_t n = sizeof t / sizeof *t;
  assert_int_equal(sw_safetensors_write(path, t, n, NULL), SW_STATUS_OK);
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_OK);
  assert_int_equal(sw_safetensors_count(st), n);
  assert_null(sw_safetensors_metadata(st));
  for (size_t i = 0; i < n; i++) {
    const sw_named_tensor *g = sw_safetensors_find(st, t[i].name);
    assert_non_null(g);
    assert_string_equal(g->name, t[i].name);
    assert_int_equal(g->dtype, t[i].dtype);
    assert_int_equal(g->rank, t[i].rank);
    assert_memory_equal(g->shape, t[i].shape, (size_t)t[i].rank * sizeof(int64_t));
    assert_int_equal((uintptr_t)g->data % sw_dtype_size(g->dtype), 0);
    uint64_t bytes = sw_dtype_size(t[i].dtype);
    for (int d = 0; d < t[i].rank; d++) bytes *= (uint64_t)t[i].shape[d];
    if (bytes) assert_memory_equal(g->data, t[i].data, bytes);
  }
  for (size_t i = 1; i < n; i++) /* get() walks the names in byte order */
    assert_true(strcmp(sw_safetensors_get(st, i - 1)->name, sw_safetensors_get(st, i)->name) < 0);
  sw_safetensors_close(st);

  /* no tensors: a header of "{}" and six spaces */
  assert_int_equal(sw_safetensors_write(path, NULL, 0, NULL), SW_STATUS_OK);
  size_t len;
  uint8_t *bytes = slurp(path, &len);
  assert_int_equal(len, 16);
  assert_memory_equal(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16);
  sw_free(bytes);
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_OK);
  assert_int_equal(sw_safetensors_count(st), 0);
  assert_null(sw_safetensors_get(st, 0));
  sw_safetensors_close(st);

  /* empty metadata is left out */
  json_t *empty = json_object();
  assert_int_equal(sw_safetensors_write(path, t, 1, empty), SW_STATUS_OK);
  json_decref(empty);
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_OK);
  assert_null(sw_safetensors_metadata(st));
  sw_safetensors_close(st);

  assert_int_equal(sw_alloc_live(), live);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

/* Metadata: any string values, escapes included, come back as written. */
static void test_metadata_round_trip(void **state) {
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "meta.safetensors");
  json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "format", "pt", "quote\"back\\slash", "line\nbreak\ttab",
                        "unicode", "\xce\xbb \xe2\x86\x92 \xf0\x9f\x9a\xa2", "", "empty key");
  assert_non_null(m);
  uint8_t one = 1;
  sw_named_tensor t = {.name = "x", .dtype = SW_DTYPE_U8, .rank = 1, .shape = {1}, .data = &one};
  assert_int_equal(sw_safetensors_write(path, &t, 1, m), SW_STATUS_OK);
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_OK);
  assert_true(json_equal((json_t *)sw_safetensors_metadata(st), m));
  sw_safetensors_close(st);
  json_decref(m);

  /* metadata must be strings; the file is left as it was */
  size_t before_len;
  uint8_t *before = slurp(path, &before_len);
  json_t *bad = json_pack("{s:i}", "epoch", 3);
  assert_int_equal(sw_safetensors_write(path, &t, 1, bad), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "epoch"));
  json_decref(bad);
  bad = json_array();
  assert_int_equal(sw_safetensors_write(path, &t, 1, bad), SW_STATUS_INVALID);
  json_decref(bad);
  size_t after_len;
  uint8_t *after = slurp(path, &after_len);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  sw_free(before);
  sw_free(after);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

static void test_write_rejects_bad_tensors(void **state) {
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "bad.safetensors");
  float v[4] = {0};
  sw_named_tensor t[2] = {
      {.name = "a", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {4}, .data = v},
      {.name = "a", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {2}, .data = v},
  };
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), "'a' given twice"));
  t[1].name = "__metadata__";
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].name = NULL;
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].name = "b";
  t[1].shape[0] = -1;
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].shape[0] = 2;
  t[1].rank = SW_NN_MAX_RANK + 1;
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].rank = 2;
  t[1].shape[0] = INT64_MAX;
  t[1].shape[1] = 4;
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].rank = 1;
  t[1].shape[0] = 2;
  t[1].data = NULL;
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  t[1].data = v;
  t[1].name = "\xff\xfe";
  assert_int_equal(sw_safetensors_write(path, t, 2, NULL), SW_STATUS_INVALID);
  assert_int_equal(sw_safetensors_write(path, NULL, 2, NULL), SW_STATUS_INVALID);
  assert_false(sw_path_exists(path)); /* nothing was written */
  assert_int_equal(sw_safetensors_write("/nonexistent-dir/x.safetensors", t, 1, NULL), SW_STATUS_IO);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

/* ---- reading ---------------------------------------------------------------- */

/* Every proper prefix of a valid file is TRUNCATED, never anything worse. */
static void test_truncated_at_every_length(void **state) {
  size_t len;
  uint8_t *f = known_bytes(&len);
  long live = sw_alloc_live();
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_parse(f, len, &st), SW_STATUS_OK);
  check_known(st);
  sw_safetensors_close(st);
  for (size_t cut = 0; cut < len; cut++) {
    uint8_t *prefix = malloc(cut ? cut : 1); /* exactly cut bytes, so ASan sees overreads */
    assert_non_null(prefix);
    memcpy(prefix, f, cut);
    sw_status got = sw_safetensors_parse(prefix, cut, &st);
    if (got != SW_STATUS_TRUNCATED)
      fail_msg("%zu of %zu bytes: %s (%s)", cut, len, sw_status_name(got), sw_last_error());
    assert_null(st);
    assert_true(sw_last_error()[0] != '\0');
    free(prefix);
  }
  /* a byte too many is not truncation but data that belongs to no tensor */
  uint8_t *longer = malloc(len + 1);
  assert_non_null(longer);
  memcpy(longer, f, len);
  longer[len] = 0;
  assert_int_equal(sw_safetensors_parse(longer, len + 1, &st), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "cover only 49"));
  free(longer);
  assert_int_equal(sw_alloc_live(), live);
  free(f);
}

static void test_rejects_bad_header_length(void **state) {
  /* longer than the file */
  uint8_t f[24] = {0};
  f[0] = 200;
  memcpy(f + 8, "{}", 2);
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_parse(f, sizeof f, &st), SW_STATUS_TRUNCATED);
  assert_non_null(strstr(sw_last_error(), "200"));
  /* beyond Hugging Face's 100 MB limit: malformed, whatever the file's size */
  uint64_t huge = 100000001;
  for (int i = 0; i < 8; i++) f[i] = (uint8_t)(huge >> (8 * i));
  assert_int_equal(sw_safetensors_parse(f, sizeof f, &st), SW_STATUS_FORMAT);
  memset(f, 0xff, 8);
  assert_int_equal(sw_safetensors_parse(f, sizeof f, &st), SW_STATUS_FORMAT);
  /* zero */
  memset(f, 0, 8);
  assert_int_equal(sw_safetensors_parse(f, sizeof f, &st), SW_STATUS_FORMAT);
  assert_int_equal(sw_safetensors_parse(f, 0, &st), SW_STATUS_TRUNCATED);
  assert_int_equal(sw_safetensors_parse(NULL, 0, &st), SW_STATUS_TRUNCATED);
  assert_null(st);
}

static void test_rejects_bad_json(void **state) {
  expect_refused("[1, 2]", 0, SW_STATUS_FORMAT, "'{'");
  expect_refused("\"a string\"", 0, SW_STATUS_FORMAT, "'{'");
  expect_refused(" {}", 0, SW_STATUS_FORMAT, "'{'");
  expect_refused("{not json}", 0, SW_STATUS_FORMAT, "header JSON");
  expect_refused("{} {}", 0, SW_STATUS_FORMAT, "header JSON");
  expect_refused("{\"a\": {\"dtype\": \"U8\"", 0, SW_STATUS_FORMAT, "header JSON");
  expect_refused("{\"\xff\": 1}", 0, SW_STATUS_FORMAT, "header JSON"); /* not UTF-8 */
  expect_refused(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
      2, SW_STATUS_FORMAT, "duplicate");
  expect_accepted("{}", 0, 0);
  expect_accepted("{}      ", 0, 0);
  expect_accepted("{\"__metadata__\":{}}", 0, 0);
}

static void test_rejects_bad_entries(void **state) {
  expect_refused("{\"w\": 3}", 0, SW_STATUS_FORMAT, "'w'");
  expect_refused("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT, "'w': no dtype");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT, "'w': no shape");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SW_STATUS_FORMAT, "'w': no data_offsets");
  expect_refused("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT, "'w'");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w'");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w': dimension 0");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w'");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w'");
  expect_refused(
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
      "\"data_offsets\":[0,0]}}",
      0, SW_STATUS_FORMAT, "'w': the size of its shape overflows");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
                 SW_STATUS_FORMAT, NULL); /* beyond int64: jansson refuses it */
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 SW_STATUS_UNSUPPORTED, "'w': rank 7");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SW_STATUS_FORMAT,
                 "'w': data_offsets");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, SW_STATUS_FORMAT,
                 "'w': data_offsets");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, SW_STATUS_FORMAT,
                 "'w': data_offsets");
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, SW_STATUS_FORMAT,
                 "'w': data_offsets [4, 0] end before");
  expect_refused("{\"__metadata__\":[\"a\"]}", 0, SW_STATUS_FORMAT, "__metadata__");
  expect_refused("{\"__metadata__\":{\"epoch\":3}}", 0, SW_STATUS_FORMAT, "'epoch'");
}

static void test_rejects_bad_dtype(void **state) {
  expect_refused("{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SW_STATUS_UNSUPPORTED,
                 "'h': dtype F16");
  expect_refused("{\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                 SW_STATUS_UNSUPPORTED, "BF16");
  expect_refused("{\"h\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, SW_STATUS_UNSUPPORTED,
                 "F64");
  expect_refused("{\"h\":{\"dtype\":\"float32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'h': unknown dtype \"float32\"");
  expect_refused("{\"h\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "unknown dtype");
}

static void test_rejects_size_mismatch(void **state) {
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w': shape and dtype F32 make 8 bytes but data_offsets [0, 4] hold 4");
  expect_refused("{\"w\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, SW_STATUS_FORMAT,
                 "'w'");
  expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,1]}}", 1, SW_STATUS_FORMAT,
                 "'w'");
  /* the sizes agree but the data is not there */
  expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, SW_STATUS_TRUNCATED,
                 "'w': data_offsets [0, 8] reach past the 4 bytes");
}

static void test_rejects_overlaps_and_holes(void **state) {
  expect_refused(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
      6, SW_STATUS_FORMAT, "'b' [2, 6) overlaps tensor 'a' [0, 4)");
  expect_refused(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
      4, SW_STATUS_FORMAT, "overlaps");
  /* an empty tensor inside another one */
  expect_refused(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
      4, SW_STATUS_FORMAT, "'e' [2, 2) overlaps tensor 'a'");
  expect_refused(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}",
      6, SW_STATUS_FORMAT, "bytes [2, 4) of the data belong to no tensor (the next is 'b')");
  expect_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, SW_STATUS_FORMAT,
                 "bytes [0, 2)");
  expect_refused("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 3, SW_STATUS_FORMAT,
                 "3 bytes of data, but the tensors cover only 2");
  expect_refused("{}", 1, SW_STATUS_FORMAT, "cover only 0");
  /* empty tensors at the ends and between others are fine, in any header order */
  expect_accepted(
      "{\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"m\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,1]}}",
      2, 5);
}

/* Files from other writers: unpadded headers, unknown fields, tensors that break their
 * alignment. Data comes back aligned to its element size all the same. */
static void test_foreign_layouts(void **state) {
  /* header of 61 bytes: unpadded, so the data section is not 8-aligned in the file */
  const char *h = "{\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8],\"x\":1}}";
  int64_t v = -5;
  size_t len;
  uint8_t *f = make_file(h, &v, 8, &len);
  assert_int_not_equal((8 + strlen(h)) % 8, 0);
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_parse(f, len, &st), SW_STATUS_OK);
  const sw_named_tensor *t = sw_safetensors_find(st, "i");
  assert_non_null(t);
  assert_int_equal((uintptr_t)t->data % 8, 0);
  assert_int_equal(*(const int64_t *)t->data, -5);
  sw_safetensors_close(st);
  free(f);

  /* a U8 first, then an F32 and an I64 at odd offsets */
  uint8_t data[13];
  float fv = 1.5f;
  int64_t iv = INT64_MIN + 3;
  data[0] = 9;
  memcpy(data + 1, &fv, 4);
  memcpy(data + 5, &iv, 8);
  f = make_file(
      "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[1,5]},"
      "\"i\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[5,13]}}",
      data, sizeof data, &len);
  long live = sw_alloc_live();
  assert_int_equal(sw_safetensors_parse(f, len, &st), SW_STATUS_OK);
  const sw_named_tensor *tf = sw_safetensors_find(st, "f"), *ti = sw_safetensors_find(st, "i");
  assert_int_equal((uintptr_t)tf->data % 4, 0);
  assert_int_equal((uintptr_t)ti->data % 8, 0);
  assert_true(*(const float *)tf->data == 1.5f);
  assert_true(*(const int64_t *)ti->data == INT64_MIN + 3);
  assert_int_equal(*(const uint8_t *)sw_safetensors_find(st, "u")->data, 9);
  sw_safetensors_close(st);
  assert_int_equal(sw_alloc_live(), live);
  free(f);
}

/* parse copies: the caller's buffer may go away. */
static void test_parse_copies(void **state) {
  size_t len;
  uint8_t *f = known_bytes(&len);
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_parse(f, len, &st), SW_STATUS_OK);
  memset(f, 0xAA, len);
  free(f);
  check_known(st);
  sw_safetensors_close(st);
}

static void test_open_errors(void **state) {
  sw_safetensors *st = NULL;
  assert_int_equal(sw_safetensors_open("/nonexistent/x.safetensors", &st), SW_STATUS_NOT_FOUND);
  assert_null(st);
  assert_int_equal(sw_safetensors_open("/tmp", &st), SW_STATUS_IO);
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "bad.safetensors");
  assert_int_equal(sw_atomic_write(path, "\x02\0\0\0\0\0\0\0[]", 10), SW_STATUS_OK);
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), path)); /* the message names the file */
  assert_int_equal(sw_atomic_write(path, "\x02\0\0", 3), SW_STATUS_OK);
  assert_int_equal(sw_safetensors_open(path, &st), SW_STATUS_TRUNCATED);
  assert_null(st);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
  /* NULL conventions */
  sw_safetensors_close(NULL);
  assert_int_equal(sw_safetensors_count(NULL), 0);
  assert_null(sw_safetensors_find(NULL, "x"));
  assert_null(sw_safetensors_metadata(NULL));
}

/* The n-th allocation failing gives NOMEM and leaks nothing, reading and writing. */
static void test_allocation_failures(void **state) {
  size_t len;
  uint8_t *f = known_bytes(&len);
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "oom.safetensors");
  long live = sw_alloc_live();
  bool parsed = false, written = false;
  for (long k = 1; k < 40 && !(parsed && written); k++) {
    sw_safetensors *st = NULL;
    sw_alloc_fail_after(k);
    sw_status got = sw_safetensors_parse(f, len, &st);
    sw_alloc_fail_after(0);
    if (got == SW_STATUS_OK) {
      check_known(st);
      sw_safetensors_close(st);
      parsed = true;
    } else {
      assert_int_equal(got, SW_STATUS_NOMEM);
      assert_null(st);
    }
    assert_int_equal(sw_alloc_live(), live);

    sw_named_tensor t[5];
    size_t n = known_tensors(t);
    json_t *m = known_metadata();
    sw_alloc_fail_after(k);
    got = sw_safetensors_write(path, t, n, m);
    sw_alloc_fail_after(0);
    json_decref(m);
    if (got == SW_STATUS_OK)
      written = true;
    else
      assert_int_equal(got, SW_STATUS_NOMEM);
    assert_int_equal(sw_alloc_live(), live);
  }
  assert_true(parsed && written);
  free(f);
  sw_free(path);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
}

/* ---- the interoperability hooks --------------------------------------------- */

/* Run by tests/integration/test_safetensors_interop.py: writes the known tensors to
 * $SW_SAFETENSORS_OUT, and checks that $SW_SAFETENSORS_IN (written by the Python side
 * in its own layout) holds them. Does nothing when neither is set. */
static void test_interop_files(void **state) {
  const char *out = getenv("SW_SAFETENSORS_OUT"), *in = getenv("SW_SAFETENSORS_IN");
  if (!out && !in) return; /* a plain unit-test run */
  if (out && *out) write_known(out);
  if (in && *in) {
    sw_safetensors *st = NULL;
    sw_status got = sw_safetensors_open(in, &st);
    if (got) fail_msg("%s", sw_last_error());
    check_known(st);
    sw_safetensors_close(st);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_bytes),
      cmocka_unit_test(test_same_bytes_whatever_the_order),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_metadata_round_trip),
      cmocka_unit_test(test_write_rejects_bad_tensors),
      cmocka_unit_test(test_truncated_at_every_length),
      cmocka_unit_test(test_rejects_bad_header_length),
      cmocka_unit_test(test_rejects_bad_json),
      cmocka_unit_test(test_rejects_bad_entries),
      cmocka_unit_test(test_rejects_bad_dtype),
      cmocka_unit_test(test_rejects_size_mismatch),
      cmocka_unit_test(test_rejects_overlaps_and_holes),
      cmocka_unit_test(test_foreign_layouts),
      cmocka_unit_test(test_parse_copies),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_allocation_failures),
      cmocka_unit_test(test_interop_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
