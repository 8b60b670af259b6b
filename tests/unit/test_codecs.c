/* Unit tests of the data codecs (src/data/example.c, tfrecord.c, csv.c): Example
 * round trips and hand-assembled protobuf bytes, TFRecord frames against known bytes
 * with every truncation and every single-bit flip, and RFC 4180 CSV with its
 * malformed cases and resynchronization. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/data.h"

/* ---- helpers -------------------------------------------------------------- */

static char *make_tmpdir(void) {
  char tmpl[] = "/tmp/sw_test_codecs.XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char *d = sw_strdup(tmpl);
  assert_non_null(d);
  return d;
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Protobuf wire format, written by hand. */
static void pb_varint(sw_buf *b, uint64_t v) {
  uint8_t x[10];
  size_t n = 0;
  do {
    x[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) x[n] |= 0x80;
    n++;
  } while (v);
  assert_int_equal(sw_buf_append(b, x, n), SW_STATUS_OK);
}

/* field with wire type 2 (length-delimited) */
static void pb_len(sw_buf *b, unsigned field, const void *data, size_t len) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, len);
  assert_int_equal(sw_buf_append(b, data, len), SW_STATUS_OK);
}

/* Features map entry {key, Feature{int64_list{packed values}}} */
static void pb_int64_entry(sw_buf *features, const char *key, const int64_t *v, size_t n) {
  sw_buf packed = {0}, list = {0}, feature = {0}, entry = {0};
  for (size_t i = 0; i < n; i++) pb_varint(&packed, (uint64_t)v[i]);
  pb_len(&list, 1, packed.data, packed.len);
  pb_len(&feature, 3, list.data, list.len);
  pb_len(&entry, 1, key, strlen(key));
  pb_len(&entry, 2, feature.data, feature.len);
  pb_len(features, 1, entry.data, entry.len);
  sw_buf_free(&packed);
  sw_buf_free(&list);
  sw_buf_free(&feature);
  sw_buf_free(&entry);
}

/* Example{features = <features>} */
static void pb_example(sw_buf *out, const sw_buf *features) {
  pb_len(out, 1, features->data, features->len);
}

static void assert_features_equal(const sw_example *a, const sw_example *b) {
  assert_int_equal(a->n_features, b->n_features);
  for (size_t i = 0; i < a->n_features; i++) {
    const sw_feature *fa = &a->features[i];
    const sw_feature *fb = sw_example_find(b, fa->name);
    if (!fb) fail_msg("feature '%s' lost", fa->name);
    assert_int_equal(fa->kind, fb->kind);
    assert_int_equal(fa->count, fb->count);
    for (size_t k = 0; k < fa->count; k++) {
      switch (fa->kind) {
        case SW_FEATURE_KIND_BYTES:
          assert_int_equal(fa->v.bytes[k].len, fb->v.bytes[k].len);
          if (fa->v.bytes[k].len)
            assert_memory_equal(fa->v.bytes[k].data, fb->v.bytes[k].data, fa->v.bytes[k].len);
          break;
        case SW_FEATURE_KIND_FLOAT:
          if (f32_bits(fa->v.f32[k]) != f32_bits(fb->v.f32[k]))
            fail_msg("'%s'[%zu]: %08x became %08x", fa->name, k, f32_bits(fa->v.f32[k]),
                     f32_bits(fb->v.f32[k]));
          break;
        case SW_FEATURE_KIND_INT64:
          assert_int_equal(fa->v.i64[k], fb->v.i64[k]);
          break;
        default:
          break;
      }
    }
  }
}

/* ---- tf.train.Example ------------------------------------------------------ */

static void build_rich_example(sw_example *ex) {
  static const uint8_t nul_bytes[] = {'a', 0, 'b', 0, 0};
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  const sw_bytes bytes[] = {{(uint8_t *)nul_bytes, sizeof nul_bytes}, {(uint8_t *)"", 0},
                            {all, sizeof all}};
  const float floats[] = {0.0f,
                          -0.0f,
                          bits_f32(0x00000001u), /* smallest denormal */
                          bits_f32(0x807fffffu), /* largest negative denormal */
                          bits_f32(0x7fc12345u), /* quiet NaN with a payload */
                          bits_f32(0xffa00001u), /* negative signalling-pattern NaN */
                          INFINITY,
                          -INFINITY,
                          FLT_MAX,
                          1.0f / 3.0f};
  const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1, 1, 300, -300};
  assert_int_equal(sw_example_add_bytes(ex, "bytes", bytes, 3), SW_STATUS_OK);
  assert_int_equal(sw_example_add_float(ex, "floats", floats, sizeof floats / sizeof floats[0]),
                   SW_STATUS_OK);
  assert_int_equal(sw_example_add_int64(ex, "ints", ints, sizeof ints / sizeof ints[0]),
                   SW_STATUS_OK);
  assert_int_equal(sw_example_add_bytes(ex, "empty_bytes", NULL, 0), SW_STATUS_OK);
  assert_int_equal(sw_example_add_float(ex, "empty_floats", NULL, 0), SW_STATUS_OK);
  assert_int_equal(sw_example_add_int64(ex, "empty_ints", NULL, 0), SW_STATUS_OK);
}

static void test_example_round_trip(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw_example ex = {0}, back = {0};
  build_rich_example(&ex);
  sw_buf wire = {0};
  assert_int_equal(sw_example_encode(&ex, &wire), SW_STATUS_OK);
  assert_int_equal(sw_example_decode(wire.data, wire.len, &back), SW_STATUS_OK);
  assert_features_equal(&ex, &back);
  assert_features_equal(&back, &ex);
  const sw_feature *f = sw_example_find(&back, "bytes");
  assert_non_null(f);
  assert_int_equal(f->v.bytes[0].len, 5);
  assert_memory_equal(f->v.bytes[0].data, "a\0b\0\0", 5);
  f = sw_example_find(&back, "empty_floats");
  assert_int_equal(f->kind, SW_FEATURE_KIND_FLOAT);
  assert_int_equal(f->count, 0);
  f = sw_example_find(&back, "ints");
  assert_int_equal(f->v.i64[0], INT64_MIN);
  assert_int_equal(f->v.i64[1], INT64_MAX);
  assert_null(sw_example_find(&back, "nope"));
  /* and once more: the bytes are stable */
  sw_buf again = {0};
  assert_int_equal(sw_example_encode(&back, &again), SW_STATUS_OK);
  assert_int_equal(again.len, wire.len);
  assert_memory_equal(again.data, wire.data, wire.len);
  sw_buf_free(&again);
  sw_buf_free(&wire);
  sw_example_clear(&back);
  sw_example_clear(&ex);
  sw_example_clear(&ex); /* twice is fine */
  sw_example_clear(NULL);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_example_encode_appends(void **state) {
  (void)state;
  sw_example ex = {0};
  const int64_t one = 1;
  assert_int_equal(sw_example_add_int64(&ex, "a", &one, 1), SW_STATUS_OK);
  sw_buf b = {0};
  assert_int_equal(sw_buf_append(&b, "HDR", 3), SW_STATUS_OK);
  assert_int_equal(sw_example_encode(&ex, &b), SW_STATUS_OK);
  assert_memory_equal(b.data, "HDR", 3);
  sw_example back = {0};
  assert_int_equal(sw_example_decode(b.data + 3, b.len - 3, &back), SW_STATUS_OK);
  assert_int_equal(sw_example_find(&back, "a")->v.i64[0], 1);
  sw_example_clear(&back);
  /* empty example: zero bytes, and zero bytes decode to an empty example */
  sw_example empty = {0};
  sw_buf e = {0};
  assert_int_equal(sw_example_encode(&empty, &e), SW_STATUS_OK);
  assert_true(e.len <= 2); /* Example{} or Example{features{}} */
  assert_int_equal(sw_example_decode((const uint8_t *)"", 0, &back), SW_STATUS_OK);
  assert_int_equal(back.n_features, 0);
  sw_buf_free(&e);
  sw_buf_free(&b);
  sw_example_clear(&ex);
}

static void test_example_order_independent(void **state) {
  (void)state;
  const float x = 1.5f;
  const int64_t y = 7;
  const sw_bytes z = {(uint8_t *)"zz", 2};
  sw_example a = {0}, b = {0};
  assert_int_equal(sw_example_add_float(&a, "x", &x, 1), SW_STATUS_OK);
  assert_int_equal(sw_example_add_int64(&a, "y", &y, 1), SW_STATUS_OK);
  assert_int_equal(sw_example_add_bytes(&a, "z", &z, 1), SW_STATUS_OK);
  assert_int_equal(sw_example_add_bytes(&b, "z", &z, 1), SW_STATUS_OK);
  assert_int_equal(sw_example_add_float(&b, "x", &x, 1), SW_STATUS_OK);
  assert_int_equal(sw_example_add_int64(&b, "y", &y, 1), SW_STATUS_OK);
  sw_buf ea = {0}, eb = {0};
  assert_int_equal(sw_example_encode(&a, &ea), SW_STATUS_OK);
  assert_int_equal(sw_example_encode(&b, &eb), SW_STATUS_OK);
  assert_int_equal(ea.len, eb.len);
  assert_memory_equal(ea.data, eb.data, ea.len);
  /* a name given twice is an error and leaves the example as it was */
  assert_int_equal(sw_example_add_int64(&a, "x", &y, 1), SW_STATUS_INVALID);
  assert_int_equal(a.n_features, 3);
  assert_int_equal(sw_example_find(&a, "x")->kind, SW_FEATURE_KIND_FLOAT);
  sw_buf_free(&ea);
  sw_buf_free(&eb);
  sw_example_clear(&a);
  sw_example_clear(&b);
}

/* Example{features(1)=Features{feature(1)=entry{key(1)="a", value(2)=Feature{
 * int64_list(3)=Int64List{value(1) packed [1,2,300]}}}}} */
static const uint8_t hand_example[] = {
    0x0a, 0x0f,             /* Example.features, 15 bytes */
    0x0a, 0x0d,             /* Features.feature (map entry), 13 bytes */
    0x0a, 0x01, 'a',        /* entry.key = "a" */
    0x12, 0x08,             /* entry.value: Feature, 8 bytes */
    0x1a, 0x06,             /* Feature.int64_list, 6 bytes */
    0x0a, 0x04,             /* Int64List.value, packed, 4 bytes */
    0x01, 0x02, 0xac, 0x02, /* 1, 2, 300 */
};

static void test_example_hand_assembled(void **state) {
  (void)state;
  sw_example ex = {0};
  assert_int_equal(sw_example_decode(hand_example, sizeof hand_example, &ex), SW_STATUS_OK);
  assert_int_equal(ex.n_features, 1);
  assert_string_equal(ex.features[0].name, "a");
  assert_int_equal(ex.features[0].kind, SW_FEATURE_KIND_INT64);
  assert_int_equal(ex.features[0].count, 3);
  assert_int_equal(ex.features[0].v.i64[0], 1);
  assert_int_equal(ex.features[0].v.i64[1], 2);
  assert_int_equal(ex.features[0].v.i64[2], 300);
  sw_example_clear(&ex);

  /* encoding the same example gives exactly those bytes */
  const int64_t v[] = {1, 2, 300};
  assert_int_equal(sw_example_add_int64(&ex, "a", v, 3), SW_STATUS_OK);
  sw_buf b = {0};
  assert_int_equal(sw_example_encode(&ex, &b), SW_STATUS_OK);
  assert_int_equal(b.len, sizeof hand_example);
  assert_memory_equal(b.data, hand_example, sizeof hand_example);
  sw_buf_free(&b);
  sw_example_clear(&ex);

  /* the same built by the helpers, to check them against the literal */
  sw_buf features = {0}, wire = {0};
  pb_int64_entry(&features, "a", v, 3);
  pb_example(&wire, &features);
  assert_int_equal(wire.len, sizeof hand_example);
  assert_memory_equal(wire.data, hand_example, sizeof hand_example);
  sw_buf_free(&features);
  sw_buf_free(&wire);

  /* unpacked repeated int64 (wire type 0 each) is accepted too */
  static const uint8_t unpacked[] = {0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 'b',  0x12, 0x08,
                                     0x1a, 0x06, 0x08, 0x01, 0x08, 0x02, 0x08, 0x07};
  assert_int_equal(sw_example_decode(unpacked, sizeof unpacked, &ex), SW_STATUS_OK);
  assert_int_equal(ex.features[0].count, 3);
  assert_int_equal(ex.features[0].v.i64[2], 7);
  sw_example_clear(&ex);

  /* a float list: Feature.float_list(2) = FloatList{value(1) packed [1.0f]} */
  static const uint8_t floats[] = {0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 'f',  0x12, 0x08,
                                   0x12, 0x06, 0x0a, 0x04, 0x00, 0x00, 0x80, 0x3f};
  assert_int_equal(sw_example_decode(floats, sizeof floats, &ex), SW_STATUS_OK);
  assert_int_equal(ex.features[0].kind, SW_FEATURE_KIND_FLOAT);
  assert_true(ex.features[0].v.f32[0] == 1.0f);
  sw_example_clear(&ex);

  /* an entry without a value is a feature of no kind */
  static const uint8_t novalue[] = {0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'n'};
  assert_int_equal(sw_example_decode(novalue, sizeof novalue, &ex), SW_STATUS_OK);
  assert_int_equal(ex.n_features, 1);
  assert_int_equal(ex.features[0].kind, SW_FEATURE_KIND_NONE);
  assert_int_equal(ex.features[0].count, 0);
  sw_example_clear(&ex);
}

static void test_example_duplicate_keys(void **state) {
  (void)state;
  long live = sw_alloc_live();
  const int64_t one = 1, two = 2;
  sw_buf features = {0}, wire = {0};
  pb_int64_entry(&features, "a", &one, 1);
  pb_int64_entry(&features, "b", &one, 1);
  pb_int64_entry(&features, "a", &two, 1);
  pb_example(&wire, &features);
  sw_example ex = {0};
  assert_int_equal(sw_example_decode(wire.data, wire.len, &ex), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "'a'"));
  assert_int_equal(ex.n_features, 0);
  assert_null(ex.features);
  sw_buf_free(&features);
  sw_buf_free(&wire);

  /* an empty key is refused as well */
  pb_int64_entry(&features, "", &one, 1);
  pb_example(&wire, &features);
  assert_int_equal(sw_example_decode(wire.data, wire.len, &ex), SW_STATUS_FORMAT);
  assert_int_equal(ex.n_features, 0);
  sw_buf_free(&features);
  sw_buf_free(&wire);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_example_garbage(void **state) {
  (void)state;
  long live = sw_alloc_live();
  static const uint8_t g1[] = {0xff, 0xff, 0xff, 0xff};
  static const uint8_t g2[] = {0x0a, 0x20, 0x0a}; /* length past the end */
  static const uint8_t g3[] = {0x0b};             /* wire type 3 (start group) */
  static const uint8_t g4[] = {0x0a, 0x02, 0x0a, 0xff}; /* truncated inner */
  static const uint8_t g5[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                               0x80, 0x80, 0x80, 0x80}; /* over-long varint */
  const struct {
    const uint8_t *p;
    size_t n;
  } cases[] = {{g1, sizeof g1}, {g2, sizeof g2}, {g3, sizeof g3}, {g4, sizeof g4}, {g5, sizeof g5}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sw_example ex = {(size_t)-1, (sw_feature *)&ex};
    assert_int_equal(sw_example_decode(cases[i].p, cases[i].n, &ex), SW_STATUS_FORMAT);
    assert_int_equal(ex.n_features, 0);
    assert_null(ex.features);
  }
  /* every proper prefix of a valid example is rejected or decodes to fewer values */
  for (size_t n = 1; n < sizeof hand_example; n++) {
    sw_example ex = {0};
    sw_status st = sw_example_decode(hand_example, n, &ex);
    if (st == SW_STATUS_OK) {
      /* only possible when the cut falls on a field boundary */
      assert_true(ex.n_features == 0 || ex.features[0].count < 3);
    } else {
      assert_int_equal(st, SW_STATUS_FORMAT);
    }
    sw_example_clear(&ex);
  }
  assert_int_equal(sw_alloc_live(), live);
}

static void test_example_alloc_failures(void **state) {
  (void)state;
  sw_example src = {0};
  build_rich_example(&src);
  sw_buf wire = {0};
  assert_int_equal(sw_example_encode(&src, &wire), SW_STATUS_OK);
  int done_enc = 0, done_dec = 0;
  for (long n = 1; n < 200 && !(done_enc && done_dec); n++) {
    long live = sw_alloc_live();
    sw_buf out = {0};
    sw_alloc_fail_after(n);
    sw_status st = sw_example_encode(&src, &out);
    sw_alloc_fail_after(0);
    assert_true(st == SW_STATUS_OK || st == SW_STATUS_NOMEM);
    if (st == SW_STATUS_OK) {
      assert_int_equal(out.len, wire.len);
      assert_memory_equal(out.data, wire.data, wire.len);
      done_enc = 1;
    }
    sw_buf_free(&out);
    assert_int_equal(sw_alloc_live(), live);

    sw_example ex = {0};
    sw_alloc_fail_after(n);
    st = sw_example_decode(wire.data, wire.len, &ex);
    sw_alloc_fail_after(0);
    if (st != SW_STATUS_OK && st != SW_STATUS_NOMEM)
      fail_msg("decode with allocation %ld failing: %s", n, sw_status_name(st));
    if (st == SW_STATUS_OK) {
      assert_features_equal(&src, &ex);
      done_dec = 1;
    } else {
      assert_int_equal(ex.n_features, 0);
    }
    sw_example_clear(&ex);
    assert_int_equal(sw_alloc_live(), live);

    /* building an example with the n-th allocation failing */
    sw_example b = {0};
    const float f = 1;
    const sw_bytes by = {(uint8_t *)"x", 1};
    sw_alloc_fail_after(n);
    st = sw_example_add_float(&b, "f", &f, 1);
    if (!st) st = sw_example_add_bytes(&b, "b", &by, 1);
    sw_alloc_fail_after(0);
    assert_true(st == SW_STATUS_OK || st == SW_STATUS_NOMEM);
    sw_example_clear(&b);
    assert_int_equal(sw_alloc_live(), live);
  }
  assert_true(done_enc && done_dec);
  sw_buf_free(&wire);
  sw_example_clear(&src);
}

/* ---- TFRecord --------------------------------------------------------------- */

/* "hello" framed: length 5, masked CRC32C of the length, data, masked CRC32C of the
 * data. The CRCs were computed with an independent bitwise Python CRC32C. */
static const uint8_t hello_frame[] = {
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* length */
    0xea, 0xb2, 0x04, 0x3e,                         /* masked crc of length: 0x3e04b2ea */
    'h',  'e',  'l',  'l',  'o',                    /* data */
    0xbb, 0x1f, 0x1c, 0x19,                         /* masked crc of data: 0x191c1fbb */
};

static void test_tfrecord_known_frame(void **state) {
  (void)state;
  sw_buf b = {0};
  assert_int_equal(sw_tfrecord_frame(&b, "hello", 5), SW_STATUS_OK);
  assert_int_equal(b.len, sizeof hello_frame);
  assert_memory_equal(b.data, hello_frame, sizeof hello_frame);
  /* the CRCs follow from the CRC32C function and the mask */
  uint32_t c;
  memcpy(&c, hello_frame + 17, 4);
  assert_int_equal(c, sw_crc32c_mask(sw_crc32c(0, "hello", 5)));
  memcpy(&c, hello_frame + 8, 4);
  assert_int_equal(c, sw_crc32c_mask(sw_crc32c(0, hello_frame, 8)));
  sw_buf_free(&b);

  sw_tfrecord_reader *r = NULL;
  assert_int_equal(sw_tfrecord_open_mem(hello_frame, sizeof hello_frame, "h.tfrecord", &r),
                   SW_STATUS_OK);
  const uint8_t *data;
  size_t len;
  uint64_t off = 99;
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
  assert_int_equal(off, 0);
  assert_int_equal(len, 5);
  assert_memory_equal(data, "hello", 5);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_EOF);
  assert_int_equal(off, sizeof hello_frame);
  assert_string_equal(sw_tfrecord_name(r), "h.tfrecord");
  assert_int_equal(sw_tfrecord_size(r), sizeof hello_frame);
  sw_tfrecord_close(r);
  sw_tfrecord_close(NULL);
}

/* Three records of 5, 0 and 40 bytes. */
#define N_REC 3
static const size_t rec_len[N_REC] = {5, 0, 40};

static void three_records(sw_buf *file, uint8_t payload[N_REC][64], uint64_t offs[N_REC + 1]) {
  for (int i = 0; i < N_REC; i++) {
    for (size_t k = 0; k < rec_len[i]; k++) payload[i][k] = (uint8_t)(i * 50 + k * 7 + 1);
    offs[i] = file->len;
    assert_int_equal(sw_tfrecord_frame(file, payload[i], rec_len[i]), SW_STATUS_OK);
  }
  offs[N_REC] = file->len;
}

static void read_all_expect(sw_tfrecord_reader *r, uint8_t payload[N_REC][64],
                            const uint64_t offs[N_REC + 1]) {
  for (int i = 0; i < N_REC; i++) {
    const uint8_t *data;
    size_t len;
    uint64_t off;
    assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
    assert_int_equal(off, offs[i]);
    assert_int_equal(len, rec_len[i]);
    if (len) assert_memory_equal(data, payload[i], len);
  }
  const uint8_t *data;
  size_t len;
  assert_int_equal(sw_tfrecord_next(r, &data, &len, NULL), SW_STATUS_EOF);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, NULL), SW_STATUS_EOF);
}

static void test_tfrecord_mem_and_file(void **state) {
  (void)state;
  sw_buf file = {0};
  uint8_t payload[N_REC][64];
  uint64_t offs[N_REC + 1];
  three_records(&file, payload, offs);
  assert_int_equal(file.len, 5 + 0 + 40 + 3 * SW_TFRECORD_OVERHEAD);

  sw_tfrecord_reader *r = NULL;
  assert_int_equal(sw_tfrecord_open_mem(file.data, file.len, NULL, &r), SW_STATUS_OK);
  assert_non_null(sw_tfrecord_name(r));
  read_all_expect(r, payload, offs);
  sw_tfrecord_close(r);

  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "train-00000.tfrecord");
  assert_int_equal(sw_atomic_write(path, file.data, file.len), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_open(path, &r), SW_STATUS_OK);
  assert_string_equal(sw_tfrecord_name(r), "train-00000.tfrecord");
  assert_int_equal(sw_tfrecord_size(r), file.len);
  read_all_expect(r, payload, offs);

  /* random access at each record's offset, and seek */
  for (int i = N_REC - 1; i >= 0; i--) {
    const uint8_t *data;
    size_t len;
    assert_int_equal(sw_tfrecord_read_at(r, offs[i], &data, &len), SW_STATUS_OK);
    assert_int_equal(len, rec_len[i]);
    if (len) assert_memory_equal(data, payload[i], len);
  }
  const uint8_t *data;
  size_t len;
  assert_int_equal(sw_tfrecord_read_at(r, offs[N_REC], &data, &len), SW_STATUS_EOF);
  assert_int_equal(sw_tfrecord_read_at(r, offs[N_REC] + 1, &data, &len), SW_STATUS_RANGE);
  assert_non_null(strstr(sw_last_error(), "train-00000.tfrecord"));
  /* an offset inside a frame is not mistaken for one */
  assert_int_not_equal(sw_tfrecord_read_at(r, 1, &data, &len), SW_STATUS_OK);
  sw_tfrecord_seek(r, offs[2]);
  uint64_t off;
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
  assert_int_equal(off, offs[2]);
  assert_int_equal(len, rec_len[2]);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_EOF);
  sw_tfrecord_close(r);

  /* an empty file is EOF at once, in memory and on disk */
  assert_int_equal(sw_atomic_write(path, "", 0), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_open(path, &r), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_size(r), 0);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_EOF);
  assert_int_equal(off, 0);
  sw_tfrecord_close(r);
  assert_int_equal(sw_tfrecord_open_mem(NULL, 0, "e", &r), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_EOF);
  sw_tfrecord_close(r);

  char *missing = sw_path_join(dir, "missing.tfrecord");
  r = (sw_tfrecord_reader *)&r;
  assert_int_equal(sw_tfrecord_open(missing, &r), SW_STATUS_NOT_FOUND);
  assert_null(r);
  assert_non_null(strstr(sw_last_error(), missing));
  sw_free(missing);

  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
  sw_buf_free(&file);
}

static void expect_offset_message(const char *name, uint64_t offset) {
  char want[128];
  snprintf(want, sizeof want, "%s: offset %llu:", name, (unsigned long long)offset);
  if (!strstr(sw_last_error(), want))
    fail_msg("message '%s' does not contain '%s'", sw_last_error(), want);
}

static void test_tfrecord_truncation(void **state) {
  (void)state;
  sw_buf file = {0};
  uint8_t payload[N_REC][64];
  uint64_t offs[N_REC + 1];
  three_records(&file, payload, offs);
  for (size_t cut = 0; cut <= file.len; cut++) {
    /* a private copy of exactly cut bytes, so reading past it would be caught by ASan */
    uint8_t *copy = sw_malloc(cut ? cut : 1);
    assert_non_null(copy);
    memcpy(copy, file.data, cut);
    sw_tfrecord_reader *r = NULL;
    assert_int_equal(sw_tfrecord_open_mem(copy, cut, "cut.tfrecord", &r), SW_STATUS_OK);
    int whole = 0;
    while (whole < N_REC && offs[whole + 1] <= cut) whole++;
    for (int i = 0; i < whole; i++) {
      const uint8_t *data;
      size_t len;
      uint64_t off;
      assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
      assert_int_equal(off, offs[i]);
      assert_int_equal(len, rec_len[i]);
    }
    const uint8_t *data;
    size_t len;
    uint64_t off;
    sw_status st = sw_tfrecord_next(r, &data, &len, &off);
    assert_int_equal(off, offs[whole]);
    if (cut == offs[whole]) {
      if (st != SW_STATUS_EOF) fail_msg("cut at boundary %zu: %s, want EOF", cut, sw_status_name(st));
    } else {
      if (st != SW_STATUS_TRUNCATED)
        fail_msg("cut at %zu: %s (%s), want TRUNCATED", cut, sw_status_name(st), sw_last_error());
      expect_offset_message("cut.tfrecord", offs[whole]);
      assert_null(data);
      /* the reader stays at the failing frame */
      assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_TRUNCATED);
      assert_int_equal(off, offs[whole]);
    }
    sw_tfrecord_close(r);
    sw_free(copy);
  }
  sw_buf_free(&file);
}

static void test_tfrecord_bit_flips(void **state) {
  (void)state;
  sw_buf file = {0};
  uint8_t payload[N_REC][64];
  uint64_t offs[N_REC + 1];
  three_records(&file, payload, offs);
  uint8_t *copy = sw_malloc(file.len);
  assert_non_null(copy);
  for (size_t byte = 0; byte < file.len; byte++) {
    int frame = 0;
    while (offs[frame + 1] <= byte) frame++;
    for (int bit = 0; bit < 8; bit++) {
      memcpy(copy, file.data, file.len);
      copy[byte] ^= (uint8_t)(1u << bit);
      sw_tfrecord_reader *r = NULL;
      assert_int_equal(sw_tfrecord_open_mem(copy, file.len, "flip.tfrecord", &r), SW_STATUS_OK);
      for (int i = 0; i < frame; i++) {
        const uint8_t *data;
        size_t len;
        assert_int_equal(sw_tfrecord_next(r, &data, &len, NULL), SW_STATUS_OK);
        assert_int_equal(len, rec_len[i]);
        if (len) assert_memory_equal(data, payload[i], len);
      }
      const uint8_t *data;
      size_t len;
      uint64_t off;
      sw_status st = sw_tfrecord_next(r, &data, &len, &off);
      if (st != SW_STATUS_CORRUPT && st != SW_STATUS_TRUNCATED)
        fail_msg("bit %d of byte %zu flipped: %s, want CORRUPT or TRUNCATED", bit, byte,
                 sw_status_name(st));
      assert_int_equal(off, offs[frame]);
      expect_offset_message("flip.tfrecord", offs[frame]);
      sw_tfrecord_close(r);
    }
  }
  sw_free(copy);
  sw_buf_free(&file);
}

static void test_tfrecord_huge_length(void **state) {
  (void)state;
  /* a length near 2^64 with a valid header CRC must be TRUNCATED, not wrap around */
  static const uint64_t lens[] = {UINT64_MAX, UINT64_MAX - 15, UINT64_MAX - 11, 1ull << 63, 100};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint8_t frame[12 + 8];
    memset(frame, 0, sizeof frame);
    memcpy(frame, &lens[i], 8);
    uint32_t c = sw_crc32c_mask(sw_crc32c(0, frame, 8));
    memcpy(frame + 8, &c, 4);
    sw_tfrecord_reader *r = NULL;
    assert_int_equal(sw_tfrecord_open_mem(frame, sizeof frame, "huge", &r), SW_STATUS_OK);
    const uint8_t *data;
    size_t len;
    assert_int_equal(sw_tfrecord_next(r, &data, &len, NULL), SW_STATUS_TRUNCATED);
    expect_offset_message("huge", 0);
    sw_tfrecord_close(r);
  }
}

static void test_tfrecord_skip(void **state) {
  (void)state;
  sw_buf file = {0};
  uint8_t payload[N_REC][64];
  uint64_t offs[N_REC + 1];
  three_records(&file, payload, offs);
  /* a bad byte in the first record's data: skip it and read the others */
  file.data[offs[0] + 12 + 2] ^= 0x10;
  sw_tfrecord_reader *r = NULL;
  assert_int_equal(sw_tfrecord_open_mem(file.data, file.len, "skip", &r), SW_STATUS_OK);
  const uint8_t *data;
  size_t len;
  uint64_t off;
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_CORRUPT);
  assert_int_equal(off, offs[0]);
  assert_int_equal(sw_tfrecord_skip(r), SW_STATUS_OK);
  for (int i = 1; i < N_REC; i++) {
    assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
    assert_int_equal(off, offs[i]);
    assert_int_equal(len, rec_len[i]);
    if (len) assert_memory_equal(data, payload[i], len);
  }
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_EOF);
  /* at the end there is nothing to skip */
  assert_int_not_equal(sw_tfrecord_skip(r), SW_STATUS_OK);
  sw_tfrecord_close(r);
  file.data[offs[0] + 12 + 2] ^= 0x10;

  /* a bad length CRC: nothing after it can be found, skip says so */
  file.data[offs[1] + 3] ^= 0x01;
  assert_int_equal(sw_tfrecord_open_mem(file.data, file.len, "skip", &r), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_OK);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_CORRUPT);
  assert_int_equal(off, offs[1]);
  assert_int_equal(sw_tfrecord_skip(r), SW_STATUS_CORRUPT);
  expect_offset_message("skip", offs[1]);
  /* the cursor did not move */
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_CORRUPT);
  assert_int_equal(off, offs[1]);
  sw_tfrecord_close(r);
  file.data[offs[1] + 3] ^= 0x01;

  /* a frame cut short: skip cannot jump past the end */
  assert_int_equal(sw_tfrecord_open_mem(file.data, file.len - 3, "skip", &r), SW_STATUS_OK);
  sw_tfrecord_seek(r, offs[2]);
  assert_int_equal(sw_tfrecord_next(r, &data, &len, &off), SW_STATUS_TRUNCATED);
  assert_int_equal(sw_tfrecord_skip(r), SW_STATUS_TRUNCATED);
  expect_offset_message("skip", offs[2]);
  sw_tfrecord_close(r);
  sw_buf_free(&file);
}

/* ---- CSV -------------------------------------------------------------------- */

/* Reads all of data and describes each record: "L:f1|f2|..." for a good one, "EL:raw"
 * for a FORMAT one (L its line). Fields with '|' or NUL are not used here. */
static int csv_collect(const char *data, size_t len, char delim, char out[][128], int max) {
  sw_csv_reader *r = NULL;
  assert_int_equal(sw_csv_open_mem(data, len, delim, &r), SW_STATUS_OK);
  int n = 0;
  uint64_t last_offset = 0;
  for (;;) {
    sw_csv_record rec;
    sw_status st = sw_csv_next(r, &rec);
    if (st == SW_STATUS_EOF) break;
    assert_true(n < max);
    if (n > 0) assert_true(rec.offset > last_offset);
    last_offset = rec.offset;
    /* raw is the record's bytes in the input */
    assert_true(rec.raw >= data && rec.raw + rec.raw_len <= data + len);
    assert_int_equal(rec.raw - data, (ptrdiff_t)rec.offset);
    if (st == SW_STATUS_FORMAT) {
      char want[32];
      snprintf(want, sizeof want, "line %llu", (unsigned long long)rec.line);
      if (!strstr(sw_last_error(), want)) fail_msg("'%s' does not name %s", sw_last_error(), want);
      snprintf(out[n], 128, "E%llu:%.*s", (unsigned long long)rec.line, (int)rec.raw_len, rec.raw);
    } else {
      assert_int_equal(st, SW_STATUS_OK);
      int k = snprintf(out[n], 128, "%llu:", (unsigned long long)rec.line);
      for (size_t f = 0; f < rec.n_fields; f++) {
        assert_int_equal(rec.fields[f][rec.field_lens[f]], '\0');
        k += snprintf(out[n] + k, 128 - (size_t)k, "%s%s", f ? "|" : "", rec.fields[f]);
      }
    }
    n++;
  }
  sw_csv_close(r);
  return n;
}

static void csv_expect(const char *data, size_t len, const char *const *want, int n_want) {
  char got[32][128];
  int n = csv_collect(data, len, ',', got, 32);
  for (int i = 0; i < n && i < n_want; i++)
    if (strcmp(got[i], want[i]))
      fail_msg("input '%.*s' record %d: got '%s', want '%s'", (int)len, data, i, got[i], want[i]);
  if (n != n_want) fail_msg("input '%.*s': %d records, want %d", (int)len, data, n, n_want);
}

#define CSV_EXPECT(text, ...)                                              \
  do {                                                                     \
    static const char *const w_[] = {__VA_ARGS__};                         \
    csv_expect(text, sizeof(text) - 1, w_, (int)(sizeof w_ / sizeof w_[0])); \
  } while (0)

static void test_csv_rfc4180(void **state) {
  (void)state;
  CSV_EXPECT("a,b,c\n1,2,3\n", "1:a|b|c", "2:1|2|3");
  /* quoted delimiters */
  CSV_EXPECT("a,\"b,c\",d\n", "1:a|b,c|d");
  /* embedded newlines: later line numbers still right */
  CSV_EXPECT("\"x\ny\",1\nz,2\n\"p\n\nq\",3\nlast,4\n", "1:x\ny|1", "3:z|2", "4:p\n\nq|3",
             "7:last|4");
  /* doubled quotes */
  CSV_EXPECT("\"he said \"\"hi\"\"\",2\n\"\"\"\",\"\"\n", "1:he said \"hi\"|2", "2:\"|");
  /* CRLF, including after a quoted field and inside one */
  CSV_EXPECT("a,b\r\nc,d\r\n\"e\",\"f\"\r\n\"g\r\nh\",i\r\nj,k\r\n", "1:a|b", "2:c|d", "3:e|f",
             "4:g\r\nh|i", "6:j|k");
  /* no trailing newline, with and without quotes, and a CR at the very end */
  CSV_EXPECT("a,b\nc,d", "1:a|b", "2:c|d");
  CSV_EXPECT("a,\"b\"", "1:a|b");
  CSV_EXPECT("a,b\r", "1:a|b");
  CSV_EXPECT("a,\"b\"\r", "1:a|b");
  /* empty fields and a trailing delimiter (empty last field) */
  CSV_EXPECT(",,\na,,b\n\"\",x\n", "1:||", "2:a||b", "3:|x");
  CSV_EXPECT("a,b,\nc,d,\r\ne,", "1:a|b|", "2:c|d|", "3:e|");
  /* blank lines (LF and CRLF) are skipped but counted */
  CSV_EXPECT("\n\na\n\r\n\nb\n\n", "3:a", "6:b");
  /* a BOM is not part of the first field */
  CSV_EXPECT("\xEF\xBB\xBF" "a,b\nc,d\n", "1:a|b", "2:c|d");
  /* a lone CR inside an unquoted field is data */
  CSV_EXPECT("a\rb,c\n", "1:a\rb|c");
  /* empty input, BOM only, blank lines only */
  char got[4][128];
  assert_int_equal(csv_collect("", 0, ',', got, 4), 0);
  assert_int_equal(csv_collect("\xEF\xBB\xBF", 3, ',', got, 4), 0);
  assert_int_equal(csv_collect("\n\r\n\n", 4, ',', got, 4), 0);
  /* another delimiter */
  assert_int_equal(csv_collect("a\tb,c\t\"d\te\"\n", 12, '\t', got, 4), 1);
  assert_string_equal(got[0], "1:a|b,c|d\te");
}

static void test_csv_offsets_and_raw(void **state) {
  (void)state;
  static const char text[] = "a,b\r\n\"x\ny\",z\n\nlast";
  sw_csv_reader *r = NULL;
  assert_int_equal(sw_csv_open_mem(text, sizeof text - 1, ',', &r), SW_STATUS_OK);
  sw_csv_record rec;
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.offset, 0);
  assert_int_equal(rec.line, 1);
  assert_int_equal(rec.raw_len, 3);
  assert_memory_equal(rec.raw, "a,b", 3);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.offset, 5);
  assert_int_equal(rec.line, 2);
  assert_int_equal(rec.raw_len, 7);
  assert_memory_equal(rec.raw, "\"x\ny\",z", 7);
  assert_int_equal(rec.n_fields, 2);
  assert_int_equal(rec.field_lens[0], 3);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.offset, 14);
  assert_int_equal(rec.line, 5);
  assert_int_equal(rec.raw_len, 4);
  assert_string_equal(rec.fields[0], "last");
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_EOF);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_EOF);
  sw_csv_close(r);
  sw_csv_close(NULL);
}

static void test_csv_nul_bytes_and_wide_rows(void **state) {
  (void)state;
  static const char text[] = "a\0b,\"c\0\"\n";
  sw_csv_reader *r = NULL;
  assert_int_equal(sw_csv_open_mem(text, sizeof text - 1, ',', &r), SW_STATUS_OK);
  sw_csv_record rec;
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.n_fields, 2);
  assert_int_equal(rec.field_lens[0], 3);
  assert_memory_equal(rec.fields[0], "a\0b", 4);
  assert_int_equal(rec.field_lens[1], 2);
  assert_memory_equal(rec.fields[1], "c\0", 3);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_EOF);
  sw_csv_close(r);

  /* 1000 fields on one row, then a short row: the field arrays grow and are reused */
  sw_buf b = {0};
  for (int i = 0; i < 1000; i++) assert_int_equal(sw_buf_printf(&b, "%s%d", i ? "," : "", i), SW_STATUS_OK);
  assert_int_equal(sw_buf_printf(&b, "\nx,y\n"), SW_STATUS_OK);
  assert_int_equal(sw_csv_open_mem((const char *)b.data, b.len, ',', &r), SW_STATUS_OK);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.n_fields, 1000);
  assert_string_equal(rec.fields[0], "0");
  assert_string_equal(rec.fields[999], "999");
  assert_int_equal(rec.field_lens[999], 3);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.n_fields, 2);
  assert_string_equal(rec.fields[1], "y");
  sw_csv_close(r);
  sw_buf_free(&b);

  /* a quote or line break is not a delimiter */
  r = (sw_csv_reader *)&r;
  assert_int_equal(sw_csv_open_mem("a", 1, '"', &r), SW_STATUS_INVALID);
  assert_null(r);
  assert_int_equal(sw_csv_open_mem("a", 1, '\n', &r), SW_STATUS_INVALID);
}

static void test_csv_malformed(void **state) {
  (void)state;
  /* unterminated quote: the record is reported and the reader resyncs at the next line */
  CSV_EXPECT("a,b\nc,\"d\ne,f\ng,h\n", "1:a|b", "E2:c,\"d", "3:e|f", "4:g|h");
  CSV_EXPECT("\"open\nx,y", "E1:\"open", "2:x|y");
  CSV_EXPECT("a\n\"b", "1:a", "E2:\"b");
  /* text after a closing quote */
  CSV_EXPECT("a,b\n\"c\"x,d\ne,f\n", "1:a|b", "E2:\"c\"x,d", "3:e|f");
  CSV_EXPECT("\"c\" ,d\r\ne,f\r\n", "E1:\"c\" ,d", "2:e|f");
  /* a quote inside an unquoted field */
  CSV_EXPECT("a,b\nc\"d,e\nf,g\n", "1:a|b", "E2:c\"d,e", "3:f|g");
  CSV_EXPECT("x,y\"\n1,2", "E1:x,y\"", "2:1|2");
  /* a bad record after a multi-line one keeps its line number */
  CSV_EXPECT("\"m\nn\",1\nbad\"q\nok,2\n", "1:m\nn|1", "E3:bad\"q", "4:ok|2");
  /* several bad lines in a row */
  CSV_EXPECT("a\"\nb\"\n\"c\"d\nfine\n", "E1:a\"", "E2:b\"", "E3:\"c\"d", "4:fine");
}

/* With the field count known, a quote that "closes" lines later in a record of the
 * wrong width is taken for an unterminated quote on its first line. */
static void test_csv_expect_fields(void **state) {
  (void)state;
  static const char text[] = "a,b,c\n1,\"x\n2,3,4\n5,\"y\",6\n\"multi\nline\",7,8\n";
  sw_csv_reader *r = NULL;
  assert_int_equal(sw_csv_open_mem(text, sizeof text - 1, ',', &r), SW_STATUS_OK);
  sw_csv_expect_fields(r, 3);
  sw_csv_record rec;
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.n_fields, 3);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_FORMAT);
  assert_int_equal(rec.line, 2);
  assert_int_equal(rec.raw_len, 4);
  assert_memory_equal(rec.raw, "1,\"x", 4);
  assert_non_null(strstr(sw_last_error(), "line 2"));
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.line, 3);
  assert_string_equal(rec.fields[2], "4");
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.line, 4);
  assert_string_equal(rec.fields[1], "y");
  /* a multi-line field in a record of the right width is fine */
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.line, 5);
  assert_string_equal(rec.fields[0], "multi\nline");
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_EOF);
  sw_csv_close(r);

  /* without the count, the quote that "closes" on line 4 before text still gives up
   * line 2 alone, so line 3 is read as the record it is */
  assert_int_equal(sw_csv_open_mem(text, sizeof text - 1, ',', &r), SW_STATUS_OK);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_FORMAT);
  assert_int_equal(rec.line, 2);
  assert_int_equal(sw_csv_next(r, &rec), SW_STATUS_OK);
  assert_int_equal(rec.line, 3);
  sw_csv_close(r);
}

static void test_csv_alloc_failures(void **state) {
  (void)state;
  static const char text[] = "a,\"b\"\"c\",d\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18\n";
  int done = 0;
  for (long n = 1; n < 100 && !done; n++) {
    long live = sw_alloc_live();
    sw_csv_reader *r = NULL;
    sw_alloc_fail_after(n);
    sw_status st = sw_csv_open_mem(text, sizeof text - 1, ',', &r);
    int records = 0;
    while (st == SW_STATUS_OK) {
      sw_csv_record rec;
      st = sw_csv_next(r, &rec);
      if (st == SW_STATUS_OK) records++;
    }
    sw_alloc_fail_after(0);
    if (st != SW_STATUS_EOF && st != SW_STATUS_NOMEM)
      fail_msg("allocation %ld failing: %s", n, sw_status_name(st));
    if (st == SW_STATUS_EOF) {
      assert_int_equal(records, 2);
      done = 1;
    }
    sw_csv_close(r);
    assert_int_equal(sw_alloc_live(), live);
  }
  assert_true(done);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_example_round_trip),
      cmocka_unit_test(test_example_encode_appends),
      cmocka_unit_test(test_example_order_independent),
      cmocka_unit_test(test_example_hand_assembled),
      cmocka_unit_test(test_example_duplicate_keys),
      cmocka_unit_test(test_example_garbage),
      cmocka_unit_test(test_example_alloc_failures),
      cmocka_unit_test(test_tfrecord_known_frame),
      cmocka_unit_test(test_tfrecord_mem_and_file),
      cmocka_unit_test(test_tfrecord_truncation),
      cmocka_unit_test(test_tfrecord_bit_flips),
      cmocka_unit_test(test_tfrecord_huge_length),
      cmocka_unit_test(test_tfrecord_skip),
      cmocka_unit_test(test_csv_rfc4180),
      cmocka_unit_test(test_csv_offsets_and_raw),
      cmocka_unit_test(test_csv_nul_bytes_and_wide_rows),
      cmocka_unit_test(test_csv_malformed),
      cmocka_unit_test(test_csv_expect_fields),
      cmocka_unit_test(test_csv_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
