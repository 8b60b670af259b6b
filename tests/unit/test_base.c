/* Unit tests of the foundation (src/base/): CRC32C and SHA-256 known answers, the
 * Philox generator against Random123's vectors, atomic files, status and error
 * messages, allocation-failure injection, YAML/JSON loading and the path helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/base.h"

/* ---- helpers -------------------------------------------------------------- */

/* A fresh directory under /tmp; the caller removes it with sw_remove_tree. */
static char *make_tmpdir(void) {
  char tmpl[] = "/tmp/sw_test_base.XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char *d = sw_strdup(tmpl);
  assert_non_null(d);
  return d;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  assert_int_equal(fclose(f), 0);
}

/* The whole content of path as a new string (sw_free it). */
static char *slurp(const char *path) {
  uint8_t *data = NULL;
  size_t len = 0;
  assert_int_equal(sw_read_file(path, &data, &len), SW_STATUS_OK);
  assert_int_equal(strlen((char *)data), len);
  return (char *)data;
}

/* Entries of dir whose name contains needle. */
static int count_entries(const char *dir, const char *needle) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, needle)) n++;
  closedir(d);
  return n;
}

static void fill_random(uint8_t *buf, size_t n, uint64_t seed) {
  sw_rng r;
  sw_rng_init(&r, seed, 0);
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)sw_rng_u32(&r);
}

/* ---- CRC32C --------------------------------------------------------------- */

static void test_crc32c_known_answers(void **state) {
  (void)state;
  uint8_t zeros[32], ones[32], ascending[32];
  memset(zeros, 0, sizeof zeros);
  memset(ones, 0xff, sizeof ones);
  for (int i = 0; i < 32; i++) ascending[i] = (uint8_t)i;
  uint32_t (*impl[2])(uint32_t, const void *, size_t) = {sw_crc32c, sw_crc32c_portable};
  for (int k = 0; k < 2; k++) {
    assert_int_equal(impl[k](0, "123456789", 9), 0xE3069283u);
    assert_int_equal(impl[k](0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(impl[k](0, ones, 32), 0x62A8AB43u);
    assert_int_equal(impl[k](0, ascending, 32), 0x46DD794Eu);
    assert_int_equal(impl[k](0, "", 0), 0u);
    assert_int_equal(impl[k](0x12345678u, NULL, 0), 0x12345678u);
  }
}

static void test_crc32c_hw_matches_portable(void **state) {
  (void)state;
  uint8_t buf[300 + 8];
  fill_random(buf, sizeof buf, 42);
  print_message("crc32c hardware path: %s\n", sw_crc32c_hw() ? "yes" : "no");
  for (size_t off = 0; off < 8; off++) {
    for (size_t len = 0; len <= 300; len++) {
      uint32_t a = sw_crc32c(0, buf + off, len);
      uint32_t b = sw_crc32c_portable(0, buf + off, len);
      if (a != b) fail_msg("crc32c differs at offset %zu length %zu: %08x vs %08x", off, len, a, b);
      /* continuing from a non-zero crc as well */
      a = sw_crc32c(0xDEADBEEFu, buf + off, len);
      b = sw_crc32c_portable(0xDEADBEEFu, buf + off, len);
      if (a != b) fail_msg("crc32c(seeded) differs at offset %zu length %zu", off, len);
    }
  }
}

static void test_crc32c_incremental(void **state) {
  (void)state;
  uint8_t buf[300];
  fill_random(buf, sizeof buf, 7);
  uint32_t (*impl[2])(uint32_t, const void *, size_t) = {sw_crc32c, sw_crc32c_portable};
  for (int k = 0; k < 2; k++) {
    uint32_t whole = impl[k](0, buf, sizeof buf);
    for (size_t split = 0; split <= sizeof buf; split++) {
      uint32_t c = impl[k](0, buf, split);
      c = impl[k](c, buf + split, sizeof buf - split);
      if (c != whole) fail_msg("impl %d: split at %zu gives %08x, want %08x", k, split, c, whole);
    }
    /* byte by byte */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++) c = impl[k](c, buf + i, 1);
    assert_int_equal(c, whole);
  }
}

static void test_crc32c_mask(void **state) {
  (void)state;
  assert_int_equal(sw_crc32c_mask(0), 0xa282ead8u);
  assert_int_equal(sw_crc32c_mask(0xffffffffu), 0xa282ead7u);
  /* the masked CRC of "123456789" (checked with an independent Python CRC32C) */
  assert_int_equal(sw_crc32c_mask(0xE3069283u), 0xc78ab0e5u);
  sw_rng r;
  sw_rng_init(&r, 1, 0);
  for (int i = 0; i < 1000; i++) {
    uint32_t c = sw_rng_u32(&r);
    uint32_t want = (uint32_t)(((c >> 15) | (c << 17)) + 0xa282ead8u);
    assert_int_equal(sw_crc32c_mask(c), want);
  }
}

/* ---- SHA-256 -------------------------------------------------------------- */

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void test_sha256_known_answers(void **state) {
  (void)state;
  char hex[SW_SHA256_HEX_LEN];
  assert_int_equal(sw_sha256_hex("", 0, hex), SW_STATUS_OK);
  assert_string_equal(hex, SHA_EMPTY);
  assert_int_equal(sw_sha256_hex("abc", 3, hex), SW_STATUS_OK);
  assert_string_equal(hex, SHA_ABC);
  /* two-block message from FIPS 180-2 */
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  assert_int_equal(sw_sha256_hex(m, strlen(m), hex), SW_STATUS_OK);
  assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_sha256_streaming(void **state) {
  (void)state;
  uint8_t buf[1000];
  fill_random(buf, sizeof buf, 99);
  char one[SW_SHA256_HEX_LEN], streamed[SW_SHA256_HEX_LEN];
  assert_int_equal(sw_sha256_hex(buf, sizeof buf, one), SW_STATUS_OK);
  sw_sha256 *h = NULL;
  assert_int_equal(sw_sha256_new(&h), SW_STATUS_OK);
  for (size_t piece = 1; piece <= 130; piece += 43) {
    for (size_t i = 0; i < sizeof buf; i += piece) {
      size_t n = sizeof buf - i < piece ? sizeof buf - i : piece;
      assert_int_equal(sw_sha256_update(h, buf + i, n), SW_STATUS_OK);
    }
    /* final resets h, so each round starts afresh */
    assert_int_equal(sw_sha256_final_hex(h, streamed), SW_STATUS_OK);
    assert_string_equal(streamed, one);
  }
  assert_int_equal(sw_sha256_update(h, "abc", 3), SW_STATUS_OK);
  assert_int_equal(sw_sha256_final_hex(h, streamed), SW_STATUS_OK);
  assert_string_equal(streamed, SHA_ABC);
  sw_sha256_free(h);
  sw_sha256_free(NULL);
}

static void test_sha256_file(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "f.bin");
  /* larger than the 64 KiB read chunk */
  size_t n = 200000;
  uint8_t *buf = sw_malloc(n);
  assert_non_null(buf);
  fill_random(buf, n, 5);
  assert_int_equal(sw_atomic_write(path, buf, n), SW_STATUS_OK);
  char a[SW_SHA256_HEX_LEN], b[SW_SHA256_HEX_LEN];
  assert_int_equal(sw_sha256_file_hex(path, a), SW_STATUS_OK);
  assert_int_equal(sw_sha256_hex(buf, n, b), SW_STATUS_OK);
  assert_string_equal(a, b);
  assert_int_equal(sw_atomic_write(path, "abc", 3), SW_STATUS_OK);
  assert_int_equal(sw_sha256_file_hex(path, a), SW_STATUS_OK);
  assert_string_equal(a, SHA_ABC);
  char *missing = sw_path_join(dir, "missing");
  assert_int_equal(sw_sha256_file_hex(missing, a), SW_STATUS_NOT_FOUND);
  assert_non_null(strstr(sw_last_error(), missing));
  sw_free(missing);
  sw_free(buf);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

/* ---- Philox and sw_rng ---------------------------------------------------- */

static void test_philox_kat(void **state) {
  (void)state;
  /* Random123 kat_vectors, philox4x32 10 rounds */
  static const struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    uint32_t out[4];
    sw_philox4x32(kat[i].ctr, kat[i].key, out);
    for (int j = 0; j < 4; j++)
      if (out[j] != kat[i].out[j])
        fail_msg("vector %zu word %d: %08x, want %08x", i, j, out[j], kat[i].out[j]);
  }
}

static void test_rng_is_philox_stream(void **state) {
  (void)state;
  /* output j of (seed, stream) is lane j%4 of philox((j/4, stream), seed) */
  const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  sw_rng r;
  sw_rng_init(&r, seed, stream);
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  for (uint64_t j = 0; j < 64; j++) {
    uint32_t ctr[4] = {(uint32_t)(j / 4), (uint32_t)((j / 4) >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    uint32_t out[4];
    sw_philox4x32(ctr, key, out);
    assert_int_equal(sw_rng_u32(&r), out[j % 4]);
  }
  assert_int_equal(r.counter, 64);
}

static void test_rng_save_restore(void **state) {
  (void)state;
  sw_rng r;
  sw_rng_init(&r, 2024, 3);
  for (int i = 0; i < 37; i++) (void)sw_rng_u32(&r); /* mid-block on purpose */
  const uint64_t seed = r.seed, stream = r.stream, counter = r.counter;
  double a_u[50];
  uint64_t a_b[50];
  uint32_t a_w[50];
  for (int i = 0; i < 50; i++) {
    a_w[i] = sw_rng_u32(&r);
    a_u[i] = sw_rng_uniform(&r);
    a_b[i] = sw_rng_below(&r, 1000 + (uint64_t)i);
  }
  sw_rng back = {.seed = seed, .stream = stream, .counter = counter};
  for (int i = 0; i < 50; i++) {
    assert_int_equal(sw_rng_u32(&back), a_w[i]);
    double u = sw_rng_uniform(&back);
    assert_memory_equal(&u, &a_u[i], sizeof u);
    assert_int_equal(sw_rng_below(&back, 1000 + (uint64_t)i), a_b[i]);
  }
  assert_int_equal(back.counter, r.counter);
}

static void test_rng_streams_differ(void **state) {
  (void)state;
  sw_rng a, b, c;
  sw_rng_init(&a, 7, 0);
  sw_rng_init(&b, 7, 1);
  sw_rng_init(&c, 8, 0);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 256; i++) {
    uint32_t x = sw_rng_u32(&a), y = sw_rng_u32(&b), z = sw_rng_u32(&c);
    same_ab += x == y;
    same_ac += x == z;
  }
  assert_true(same_ab <= 1);
  assert_true(same_ac <= 1);
  /* streams beyond 32 bits are distinct too */
  sw_rng_init(&a, 7, 1ull << 32);
  sw_rng_init(&b, 7, 0);
  int same = 0;
  for (int i = 0; i < 64; i++) same += sw_rng_u32(&a) == sw_rng_u32(&b);
  assert_true(same <= 1);
}

static void test_rng_below(void **state) {
  (void)state;
  sw_rng r;
  sw_rng_init(&r, 11, 0);
  static const uint64_t ns[] = {1, 2, 3, 7, 10, 1000, 0xffffffffull, 0x100000000ull,
                                0x100000001ull, 0xffffffffffffull, UINT64_MAX / 3 * 2,
                                UINT64_MAX};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
    for (int i = 0; i < 2000; i++) {
      uint64_t v = sw_rng_below(&r, ns[k]);
      if (v >= ns[k]) fail_msg("sw_rng_below(%llu) gave %llu", (unsigned long long)ns[k],
                               (unsigned long long)v);
    }
  /* chi-square over 10 bins with 100k draws: 9 degrees of freedom, mean 9; 40 is far
   * beyond the 0.9999 quantile (~33.7) yet far below what a stuck or biased
   * generator gives. */
  enum { BINS = 10, DRAWS = 100000 };
  long count[BINS] = {0};
  for (int i = 0; i < DRAWS; i++) count[sw_rng_below(&r, BINS)]++;
  double chi2 = 0, expect = (double)DRAWS / BINS;
  for (int i = 0; i < BINS; i++) chi2 += (count[i] - expect) * (count[i] - expect) / expect;
  print_message("chi-square (9 dof) = %.2f\n", chi2);
  assert_true(chi2 < 40.0);
  /* a bound above 2^32: top and bottom halves about equally often */
  long low = 0;
  const uint64_t big = 0x300000000ull;
  for (int i = 0; i < 20000; i++) low += sw_rng_below(&r, big) < big / 2;
  assert_true(low > 9400 && low < 10600);
}

static void test_rng_permutation(void **state) {
  (void)state;
  sw_rng r;
  sw_rng_init(&r, 5, 9);
  static const size_t ns[] = {0, 1, 2, 3, 17, 1000};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    size_t n = ns[k];
    uint64_t *perm = sw_malloc((n ? n : 1) * sizeof *perm);
    uint8_t *seen = sw_calloc(n ? n : 1, 1);
    assert_non_null(perm);
    assert_non_null(seen);
    sw_rng_permutation(&r, perm, n);
    for (size_t i = 0; i < n; i++) {
      assert_true(perm[i] < n);
      assert_false(seen[perm[i]]);
      seen[perm[i]] = 1;
    }
    sw_free(seen);
    sw_free(perm);
  }
  /* not the identity, and another seed gives another order */
  uint64_t p1[100], p2[100];
  sw_rng_init(&r, 1, 0);
  sw_rng_permutation(&r, p1, 100);
  sw_rng_init(&r, 2, 0);
  sw_rng_permutation(&r, p2, 100);
  int fixed = 0, same = 0;
  for (int i = 0; i < 100; i++) {
    fixed += p1[i] == (uint64_t)i;
    same += p1[i] == p2[i];
  }
  assert_true(fixed < 10);
  assert_true(same < 10);
  /* every one of the 6 orders of 3 items turns up */
  int orders[3][3][3] = {{{0}}};
  for (int i = 0; i < 600; i++) {
    uint64_t p[3];
    sw_rng_permutation(&r, p, 3);
    orders[p[0]][p[1]][p[2]]++;
  }
  int distinct = 0;
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 3; c++)
        if (orders[a][b][c]) distinct++;
  assert_int_equal(distinct, 6);
}

static void test_rng_uniform_and_normal(void **state) {
  (void)state;
  sw_rng r;
  sw_rng_init(&r, 123, 4);
  enum { N = 100000 };
  double sum = 0;
  for (int i = 0; i < N; i++) {
    double u = sw_rng_uniform(&r);
    assert_true(u >= 0.0 && u < 1.0);
    sum += u;
  }
  assert_true(fabs(sum / N - 0.5) < 0.01);
  double s = 0, s2 = 0;
  for (int i = 0; i < N; i++) {
    double x = sw_rng_normal(&r);
    assert_true(isfinite(x));
    s += x;
    s2 += x * x;
  }
  double mean = s / N, sd = sqrt(s2 / N - mean * mean);
  print_message("normal: mean %.4f sd %.4f\n", mean, sd);
  assert_true(fabs(mean) < 0.03);
  assert_true(fabs(sd - 1.0) < 0.03);
  /* u64 uses both halves: the top bit is set about half the time */
  int top = 0;
  for (int i = 0; i < 10000; i++) top += (int)(sw_rng_u64(&r) >> 63);
  assert_true(top > 4500 && top < 5500);
}

/* ---- atomic files --------------------------------------------------------- */

static void test_atomic_write(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "out.txt");
  assert_int_equal(sw_atomic_write(path, "first\n", 6), SW_STATUS_OK);
  char *got = slurp(path);
  assert_string_equal(got, "first\n");
  sw_free(got);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0644);

  assert_int_equal(sw_atomic_write(path, "second, longer\n", 15), SW_STATUS_OK);
  got = slurp(path);
  assert_string_equal(got, "second, longer\n");
  sw_free(got);

  assert_int_equal(sw_atomic_write(path, "", 0), SW_STATUS_OK);
  got = slurp(path);
  assert_string_equal(got, "");
  sw_free(got);
  assert_int_equal(count_entries(dir, ".tmp."), 0);
  assert_int_equal(count_entries(dir, "out.txt"), 1);

  /* written bit by bit through the stream */
  sw_atomic_file *af = NULL;
  assert_int_equal(sw_atomic_file_open(path, &af), SW_STATUS_OK);
  assert_int_equal(count_entries(dir, ".tmp."), 1);
  FILE *f = sw_atomic_file_stream(af);
  assert_non_null(f);
  for (int i = 0; i < 3; i++) fprintf(f, "line %d\n", i);
  /* not visible before commit */
  got = slurp(path);
  assert_string_equal(got, "");
  sw_free(got);
  assert_int_equal(sw_atomic_file_commit(af), SW_STATUS_OK);
  got = slurp(path);
  assert_string_equal(got, "line 0\nline 1\nline 2\n");
  sw_free(got);
  assert_int_equal(count_entries(dir, ".tmp."), 0);

  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

static void test_atomic_abort(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "keep.txt");
  assert_int_equal(sw_atomic_write(path, "original", 8), SW_STATUS_OK);
  sw_atomic_file *af = NULL;
  assert_int_equal(sw_atomic_file_open(path, &af), SW_STATUS_OK);
  fputs("replacement that must not land", sw_atomic_file_stream(af));
  fflush(sw_atomic_file_stream(af));
  sw_atomic_file_abort(af);
  char *got = slurp(path);
  assert_string_equal(got, "original");
  sw_free(got);
  assert_int_equal(count_entries(dir, ".tmp."), 0);
  sw_atomic_file_abort(NULL);

  /* a file never created stays absent after abort */
  char *fresh = sw_path_join(dir, "fresh.txt");
  assert_int_equal(sw_atomic_file_open(fresh, &af), SW_STATUS_OK);
  sw_atomic_file_abort(af);
  assert_false(sw_path_exists(fresh));
  assert_int_equal(count_entries(dir, ".tmp."), 0);
  sw_free(fresh);

  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

static void test_atomic_write_missing_dir(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_asprintf("%s/no/such/dir/file.txt", dir);
  sw_clear_error();
  assert_int_equal(sw_atomic_write(path, "x", 1), SW_STATUS_IO);
  const char *msg = sw_last_error();
  if (!strstr(msg, path)) fail_msg("message does not name %s: %s", path, msg);
  assert_false(sw_path_exists(path));
  sw_atomic_file *af = (sw_atomic_file *)&af; /* must be reset to NULL */
  assert_int_equal(sw_atomic_file_open(path, &af), SW_STATUS_IO);
  assert_null(af);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

/* ---- status and errors ---------------------------------------------------- */

static void test_status_messages(void **state) {
  (void)state;
  for (int a = 0; a < SW_STATUS_COUNT_; a++) {
    const char *m = sw_strerror((sw_status)a), *n = sw_status_name((sw_status)a);
    assert_non_null(m);
    assert_non_null(n);
    assert_true(strlen(m) > 0);
    assert_true(strlen(n) > 0);
    for (int b = 0; b < a; b++) {
      if (!strcmp(m, sw_strerror((sw_status)b))) fail_msg("statuses %d and %d share '%s'", a, b, m);
      if (!strcmp(n, sw_status_name((sw_status)b))) fail_msg("statuses %d and %d share '%s'", a, b, n);
    }
  }
  assert_string_equal(sw_strerror(SW_STATUS_OK), "success");
  assert_string_equal(sw_strerror(SW_STATUS_TRUNCATED), "truncated data");
  assert_string_equal(sw_status_name(SW_STATUS_TRUNCATED), "TRUNCATED");
  assert_string_equal(sw_status_name(SW_STATUS_EOF), "EOF");
  assert_string_equal(sw_status_name(SW_STATUS_NOMEM), "NOMEM");
  /* out of range: still a string */
  assert_non_null(sw_strerror(SW_STATUS_COUNT_));
  assert_non_null(sw_strerror((sw_status)-1));
  assert_non_null(sw_status_name((sw_status)999));
}

static void test_error_messages(void **state) {
  (void)state;
  sw_clear_error();
  assert_string_equal(sw_last_error(), "");
  assert_int_equal(sw_error(SW_STATUS_IO, "open %s: %d", "x.bin", 42), SW_STATUS_IO);
  assert_string_equal(sw_last_error(), "open x.bin: 42");
  assert_int_equal(sw_error_prefix(SW_STATUS_IO, "shard %d: ", 3), SW_STATUS_IO);
  assert_string_equal(sw_last_error(), "shard 3: open x.bin: 42");
  assert_int_equal(sw_error_prefix(SW_STATUS_CORRUPT, "ds: "), SW_STATUS_CORRUPT);
  assert_string_equal(sw_last_error(), "ds: shard 3: open x.bin: 42");
  /* with no message yet, the prefix goes before the status's own message */
  sw_clear_error();
  assert_int_equal(sw_error_prefix(SW_STATUS_TRUNCATED, "f: "), SW_STATUS_TRUNCATED);
  assert_string_equal(sw_last_error(), "f: truncated data");
  /* a very long message is cut, not overflowed */
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  sw_error(SW_STATUS_INVALID, "%s", big);
  assert_true(strlen(sw_last_error()) < sizeof big - 1);
  assert_int_equal(sw_last_error()[0], 'x');
  sw_error_prefix(SW_STATUS_INVALID, "%s", big);
  assert_true(strlen(sw_last_error()) < sizeof big - 1);
  sw_clear_error();
}

/* ---- allocation failure injection ----------------------------------------- */

/* Runs op with the n-th allocation failing for n = 1, 2, ... until a run succeeds with
 * the failure never reached. Each run must return OK or NOMEM and free what it took. */
typedef sw_status (*alloc_op)(void *ctx);

static void check_alloc_failures(const char *what, alloc_op op, void *ctx, int max_n) {
  int nomem = 0;
  for (int n = 1; n <= max_n; n++) {
    long before = sw_alloc_live();
    sw_alloc_fail_after(n);
    sw_status st = op(ctx);
    sw_alloc_fail_after(0);
    long after = sw_alloc_live();
    if (st != SW_STATUS_OK && st != SW_STATUS_NOMEM)
      fail_msg("%s with allocation %d failing: %s (%s), want OK or NOMEM", what, n,
               sw_status_name(st), sw_last_error());
    if (after != before)
      fail_msg("%s with allocation %d failing: %ld allocations leaked", what, n, after - before);
    if (st == SW_STATUS_NOMEM) {
      nomem++;
      continue;
    }
    print_message("%s: %d allocation points, all handled\n", what, nomem);
    return;
  }
  fail_msg("%s still failing after %d allocations", what, max_n);
}

typedef struct {
  char *path;
} path_ctx;

static sw_status op_json_load(void *ctx) {
  json_t *v = NULL;
  sw_status st = sw_json_load_file(((path_ctx *)ctx)->path, &v);
  if (!st) {
    if (json_integer_value(json_object_get(v, "a")) != 1) st = SW_STATUS_INVALID;
    json_decref(v);
  } else if (v) {
    st = SW_STATUS_INVALID; /* *out must be NULL on error */
  }
  return st;
}

static const char yaml_text[] =
    "name: run\nlr: 0.01\nlayers: [64, 32]\nopt:\n  kind: adam\n  betas: [0.9, 0.999]\n"
    "tags:\n  - a\n  - b\n";

static sw_status op_yaml_parse(void *ctx) {
  (void)ctx;
  json_t *v = NULL;
  sw_status st = sw_yaml_parse(yaml_text, strlen(yaml_text), "cfg.yaml", &v);
  if (!st) {
    if (!json_is_object(v) || json_object_size(v) != 5) st = SW_STATUS_INVALID;
    json_decref(v);
  } else if (v) {
    st = SW_STATUS_INVALID;
  }
  return st;
}

static sw_status op_atomic_write(void *ctx) {
  return sw_atomic_write(((path_ctx *)ctx)->path, "payload", 7);
}

static sw_status op_buf_append(void *ctx) {
  (void)ctx;
  sw_buf b = {0};
  sw_status st = SW_STATUS_OK;
  for (int i = 0; i < 200 && !st; i++) st = sw_buf_append(&b, "0123456789", 10);
  if (!st) st = sw_buf_printf(&b, "%d-%s", 7, "x");
  if (!st && (b.len != 2003 || memcmp(b.data + 2000, "7-x", 4) != 0)) st = SW_STATUS_INVALID;
  sw_buf_free(&b);
  return st;
}

static void test_alloc_failure_json(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  path_ctx c = {sw_path_join(dir, "x.json")};
  write_file(c.path, "{\"a\": 1, \"b\": [1, 2, 3]}\n");
  check_alloc_failures("sw_json_load_file", op_json_load, &c, 50);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(c.path);
  sw_free(dir);
}

static void test_alloc_failure_yaml(void **state) {
  (void)state;
  check_alloc_failures("sw_yaml_parse", op_yaml_parse, NULL, 200);
}

static void test_alloc_failure_atomic_write(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  path_ctx c = {sw_path_join(dir, "x.bin")};
  check_alloc_failures("sw_atomic_write", op_atomic_write, &c, 50);
  assert_int_equal(count_entries(dir, ".tmp."), 0);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(c.path);
  sw_free(dir);
}

static void test_alloc_failure_buf(void **state) {
  (void)state;
  check_alloc_failures("sw_buf_append", op_buf_append, NULL, 100);
}

/* sw_atomic_write's contract: "On failure path is untouched". */
static void test_atomic_write_failure_leaves_path_untouched(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "x.txt");
  char problem[512] = "";
  for (int n = 1; n <= 20 && !problem[0]; n++) {
    assert_int_equal(sw_atomic_write(path, "old", 3), SW_STATUS_OK);
    sw_alloc_fail_after(n);
    sw_status st = sw_atomic_write(path, "new", 3);
    sw_alloc_fail_after(0);
    char *got = slurp(path);
    int done = st == SW_STATUS_OK;
    if (done && strcmp(got, "new") != 0)
      snprintf(problem, sizeof problem, "sw_atomic_write returned OK but the file holds '%s'", got);
    else if (!done && strcmp(got, "old") != 0)
      snprintf(problem, sizeof problem,
               "allocation %d failing: sw_atomic_write returned %s but the file now holds '%s'", n,
               sw_status_name(st), got);
    sw_free(got);
    if (done) break;
  }
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
  if (problem[0]) fail_msg("%s", problem);
}

/* ---- YAML and JSON -------------------------------------------------------- */

static json_t *yaml_ok(const char *text) {
  json_t *v = NULL;
  sw_status st = sw_yaml_parse(text, strlen(text), "t.yaml", &v);
  if (st) fail_msg("yaml '%s': %s: %s", text, sw_status_name(st), sw_last_error());
  assert_non_null(v);
  return v;
}

static void test_yaml_structures(void **state) {
  (void)state;
  json_t *v = yaml_ok(
      "model:\n  layers: [64, 32]\n  act: relu\n"
      "data:\n  - name: a\n    w: 1\n  - name: b\n    w: 2\n"
      "flow: {x: 1, y: [true, ~]}\n");
  assert_true(json_is_object(v));
  json_t *model = json_object_get(v, "model");
  assert_true(json_is_object(model));
  json_t *layers = json_object_get(model, "layers");
  assert_int_equal(json_array_size(layers), 2);
  assert_int_equal(json_integer_value(json_array_get(layers, 0)), 64);
  assert_int_equal(json_integer_value(json_array_get(layers, 1)), 32);
  assert_string_equal(json_string_value(json_object_get(model, "act")), "relu");
  json_t *data = json_object_get(v, "data");
  assert_int_equal(json_array_size(data), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(data, 1), "name")), "b");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(data, 1), "w")), 2);
  json_t *flow = json_object_get(v, "flow");
  assert_int_equal(json_integer_value(json_object_get(flow, "x")), 1);
  assert_true(json_is_true(json_array_get(json_object_get(flow, "y"), 0)));
  assert_true(json_is_null(json_array_get(json_object_get(flow, "y"), 1)));
  json_decref(v);

  /* a top-level sequence and a top-level scalar */
  v = yaml_ok("- 1\n- two\n- [3]\n");
  assert_int_equal(json_array_size(v), 3);
  assert_string_equal(json_string_value(json_array_get(v, 1)), "two");
  assert_int_equal(json_integer_value(json_array_get(json_array_get(v, 2), 0)), 3);
  json_decref(v);
  v = yaml_ok("hello\n");
  assert_string_equal(json_string_value(v), "hello");
  json_decref(v);
}

static void test_yaml_scalar_typing(void **state) {
  (void)state;
  json_t *v = yaml_ok(
      "i: 42\nneg: -17\nplus: +5\nhex: 0x1F\nf: 2.5\nnegf: -0.125\nexp: 1e3\n"
      "t: true\nT: True\nf2: false\nn: null\ntilde: ~\nempty:\n"
      "q: \"123\"\nsq: '4.5'\nqt: \"true\"\ns: hello world\nver: 1.2.3\nword: nan\n"
      "dots: ...x\n");
  assert_true(json_is_integer(json_object_get(v, "i")));
  assert_int_equal(json_integer_value(json_object_get(v, "i")), 42);
  assert_int_equal(json_integer_value(json_object_get(v, "neg")), -17);
  assert_int_equal(json_integer_value(json_object_get(v, "plus")), 5);
  assert_int_equal(json_integer_value(json_object_get(v, "hex")), 31);
  assert_true(json_is_real(json_object_get(v, "f")));
  assert_true(json_real_value(json_object_get(v, "f")) == 2.5);
  assert_true(json_real_value(json_object_get(v, "negf")) == -0.125);
  assert_true(json_is_real(json_object_get(v, "exp")));
  assert_true(json_real_value(json_object_get(v, "exp")) == 1000.0);
  assert_true(json_is_true(json_object_get(v, "t")));
  assert_true(json_is_true(json_object_get(v, "T")));
  assert_true(json_is_false(json_object_get(v, "f2")));
  assert_true(json_is_null(json_object_get(v, "n")));
  assert_true(json_is_null(json_object_get(v, "tilde")));
  assert_true(json_is_null(json_object_get(v, "empty")));
  assert_true(json_is_string(json_object_get(v, "q")));
  assert_string_equal(json_string_value(json_object_get(v, "q")), "123");
  assert_string_equal(json_string_value(json_object_get(v, "sq")), "4.5");
  assert_string_equal(json_string_value(json_object_get(v, "qt")), "true");
  assert_string_equal(json_string_value(json_object_get(v, "s")), "hello world");
  assert_string_equal(json_string_value(json_object_get(v, "ver")), "1.2.3");
  assert_string_equal(json_string_value(json_object_get(v, "dots")), "...x");
  assert_string_equal(json_string_value(json_object_get(v, "word")), "nan");
  json_decref(v);
}

/* YAML 1.2 core schema: [-+]?[0-9]+ is a base-10 integer, so a leading zero does not
 * make it octal (0o17 is the octal form). */
static void test_yaml_leading_zero_is_decimal(void **state) {
  (void)state;
  json_t *v = yaml_ok("a: 010\nb: 08\nc: 007\n");
  char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
  int ok = !strcmp(text, "{\"a\": 10, \"b\": 8, \"c\": 7}") ||
           !strcmp(text, "{\"a\":10,\"b\":8,\"c\":7}");
  char got[128];
  snprintf(got, sizeof got, "%s", text);
  free(text);
  json_decref(v);
  if (!ok) fail_msg("'a: 010, b: 08, c: 007' loaded as %s, want a=10 b=8 c=7 (integers)", got);
}

static void test_yaml_errors(void **state) {
  (void)state;
  json_t *v = (json_t *)&v;
  const char *dup = "a: 1\nb: 2\na: 3\n";
  assert_int_equal(sw_yaml_parse(dup, strlen(dup), "dup.yaml", &v), SW_STATUS_FORMAT);
  assert_null(v);
  assert_non_null(strstr(sw_last_error(), "dup.yaml:3"));
  assert_non_null(strstr(sw_last_error(), "duplicate"));
  /* nested duplicate */
  const char *dup2 = "outer:\n  x: 1\n  y: 2\n  x: 3\n";
  assert_int_equal(sw_yaml_parse(dup2, strlen(dup2), "dup2.yaml", &v), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "dup2.yaml:4"));

  const char *bad = "a: [1, 2\nb: 3\n";
  assert_int_equal(sw_yaml_parse(bad, strlen(bad), "bad.yaml", &v), SW_STATUS_FORMAT);
  assert_null(v);
  unsigned line = 0, col = 0;
  const char *msg = sw_last_error();
  if (sscanf(msg, "bad.yaml:%u:%u:", &line, &col) != 2)
    fail_msg("syntax error without line:column: %s", msg);
  assert_true(line >= 1 && col >= 1);

  const char *bad2 = "key: value\n  - broken: [\n";
  assert_int_equal(sw_yaml_parse(bad2, strlen(bad2), "b2.yaml", &v), SW_STATUS_FORMAT);
  assert_int_equal(sscanf(sw_last_error(), "b2.yaml:%u:%u:", &line, &col), 2);
}

/* sw_yaml_parse loads one document; a second one must be an error (yaml.c has the
 * check), not silently dropped. */
static void test_yaml_multiple_documents(void **state) {
  (void)state;
  json_t *v = NULL;
  const char *two = "a: 1\n---\nb: 2\n";
  sw_status st = sw_yaml_parse(two, strlen(two), "two.yaml", &v);
  if (st == SW_STATUS_OK) {
    char *text = json_dumps(v, JSON_COMPACT);
    char got[128];
    snprintf(got, sizeof got, "%s", text);
    free(text);
    json_decref(v);
    fail_msg("two YAML documents loaded as %s: the second was silently dropped", got);
  }
  assert_int_equal(st, SW_STATUS_FORMAT);
  assert_null(v);
}

/* .inf and .nan are core-schema floats, but jansson cannot hold them (json_real gives
 * NULL): the result must be a clear error or a value, never "out of memory". */
static void test_yaml_non_finite(void **state) {
  (void)state;
  static const char *const docs[] = {"lr: .inf\n", "lr: -.inf\n", "lr: .nan\n"};
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    json_t *v = NULL;
    sw_clear_error();
    sw_status st = sw_yaml_parse(docs[i], strlen(docs[i]), "nf.yaml", &v);
    if (st == SW_STATUS_OK) {
      assert_non_null(json_object_get(v, "lr"));
      json_decref(v);
      continue;
    }
    const char *msg = sw_last_error();
    if (st == SW_STATUS_NOMEM || strstr(msg, "out of memory") || !strstr(msg, "nf.yaml"))
      fail_msg("'%.*s' gave %s: '%s'; want a value or an error naming nf.yaml:1",
               (int)strlen(docs[i]) - 1, docs[i], sw_status_name(st), msg);
  }
}

/* An alias is reported as UNSUPPORTED by parse_node; the status must reach the caller. */
static void test_yaml_alias_status(void **state) {
  (void)state;
  json_t *v = NULL;
  const char *alias = "a: &x 1\nb: *x\n";
  sw_status st = sw_yaml_parse(alias, strlen(alias), "alias.yaml", &v);
  assert_null(v);
  assert_non_null(strstr(sw_last_error(), "alias"));
  if (st != SW_STATUS_UNSUPPORTED)
    fail_msg("alias gave %s with message '%s', want UNSUPPORTED", sw_status_name(st),
             sw_last_error());
}

static void test_yaml_empty_document(void **state) {
  (void)state;
  json_t *v = NULL;
  assert_int_equal(sw_yaml_parse("", 0, "e.yaml", &v), SW_STATUS_OK);
  assert_true(json_is_null(v));
  json_decref(v);
  v = yaml_ok("# only a comment\n");
  assert_true(json_is_null(v));
  json_decref(v);
  v = yaml_ok("---\n");
  assert_true(json_is_null(v));
  json_decref(v);
}

static void test_yaml_load_file(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "c.yaml");
  write_file(path, "epochs: 3\nname: x\n");
  json_t *v = NULL;
  assert_int_equal(sw_yaml_load_file(path, &v), SW_STATUS_OK);
  assert_int_equal(json_integer_value(json_object_get(v, "epochs")), 3);
  json_decref(v);
  write_file(path, "a: 1\na: 2\n");
  assert_int_equal(sw_yaml_load_file(path, &v), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), path));
  char *missing = sw_path_join(dir, "none.yaml");
  assert_int_equal(sw_yaml_load_file(missing, &v), SW_STATUS_NOT_FOUND);
  sw_free(missing);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

static void test_json_load(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "m.json");
  write_file(path, "{\n  \"a\": 1,\n  \"b\": [1, 2,]\n}\n");
  json_t *v = (json_t *)&v;
  assert_int_equal(sw_json_load_file(path, &v), SW_STATUS_FORMAT);
  assert_null(v);
  const char *msg = sw_last_error();
  size_t pl = strlen(path);
  if (strncmp(msg, path, pl) != 0) fail_msg("message does not start with the path: %s", msg);
  unsigned line = 0, col = 0;
  if (sscanf(msg + pl, ":%u:%u:", &line, &col) != 2) fail_msg("no line:column in '%s'", msg);
  assert_int_equal(line, 3);
  assert_true(col >= 1);

  write_file(path, "{\"k\": 1, \"k\": 2}");
  assert_int_equal(sw_json_load_file(path, &v), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), path));

  write_file(path, "{\"k\": [true, null, 2.5]}");
  assert_int_equal(sw_json_load_file(path, &v), SW_STATUS_OK);
  assert_true(json_real_value(json_array_get(json_object_get(v, "k"), 2)) == 2.5);
  /* and back through the atomic writer */
  char *copy = sw_path_join(dir, "copy.json");
  assert_int_equal(sw_json_write_file(copy, v), SW_STATUS_OK);
  json_t *w = NULL;
  assert_int_equal(sw_json_load_file(copy, &w), SW_STATUS_OK);
  assert_true(json_equal(v, w));
  char *text = slurp(copy);
  assert_int_equal(text[strlen(text) - 1], '\n');
  sw_free(text);
  json_decref(w);
  json_decref(v);
  sw_free(copy);

  char *missing = sw_path_join(dir, "none.json");
  assert_int_equal(sw_json_load_file(missing, &v), SW_STATUS_NOT_FOUND);
  assert_non_null(strstr(sw_last_error(), missing));
  sw_free(missing);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

/* ---- buffers and paths ---------------------------------------------------- */

static void test_buf(void **state) {
  (void)state;
  sw_buf b = {0};
  assert_int_equal(sw_buf_printf(&b, "%s=%d", "x", 5), SW_STATUS_OK);
  assert_int_equal(b.len, 3);
  assert_string_equal((char *)b.data, "x=5");
  assert_int_equal(sw_buf_printf(&b, ", %.2f", 1.5), SW_STATUS_OK);
  assert_string_equal((char *)b.data, "x=5, 1.50");
  assert_int_equal(sw_buf_printf(&b, "%s", ""), SW_STATUS_OK);
  assert_int_equal(b.len, 9);
  /* appending keeps a NUL past len */
  assert_int_equal(sw_buf_append(&b, "ab\0c", 4), SW_STATUS_OK);
  assert_int_equal(b.len, 13);
  assert_memory_equal(b.data + 9, "ab\0c", 4);
  assert_int_equal(b.data[b.len], 0);
  /* growing well past the first capacity */
  for (int i = 0; i < 1000; i++) assert_int_equal(sw_buf_printf(&b, "%04d", i), SW_STATUS_OK);
  assert_int_equal(b.len, 13 + 4000);
  assert_memory_equal(b.data + 13 + 4 * 999, "0999", 4);
  assert_true(b.cap >= b.len + 1);
  sw_buf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  sw_buf_free(&b);
  sw_buf_free(NULL);
  char *s = sw_asprintf("%d-%s", 12, "ab");
  assert_string_equal(s, "12-ab");
  sw_free(s);
  s = sw_strndup("abcdef", 3);
  assert_string_equal(s, "abc");
  sw_free(s);
}

/* A request so large that len + extra wraps around must fail, not report success
 * with nothing reserved. */
static void test_buf_reserve_overflow(void **state) {
  (void)state;
  sw_buf b = {0};
  assert_int_equal(sw_buf_append(&b, "0123456789abcdef", 16), SW_STATUS_OK);
  size_t cap = b.cap, new_cap;
  sw_status st = sw_buf_reserve(&b, SIZE_MAX - 8);
  new_cap = b.cap;
  sw_buf_free(&b);
  if (st == SW_STATUS_OK)
    fail_msg("sw_buf_reserve(len=16, extra=SIZE_MAX-8) returned OK with cap %zu (was %zu)",
             new_cap, cap);
  assert_int_equal(st, SW_STATUS_NOMEM);
}

static void test_paths(void **state) {
  (void)state;
  static const struct {
    const char *in, *dir;
  } dn[] = {{"a/b/c.txt", "a/b"}, {"c.txt", "."}, {"/c.txt", "/"}, {"/x/y", "/x"},
            {"a/", "a"},          {"./f", "."}};
  for (size_t i = 0; i < sizeof dn / sizeof dn[0]; i++) {
    char *d = sw_path_dirname(dn[i].in);
    assert_non_null(d);
    if (strcmp(d, dn[i].dir)) fail_msg("dirname(%s) = %s, want %s", dn[i].in, d, dn[i].dir);
    sw_free(d);
  }
  char *j = sw_path_join("a/b", "c");
  assert_string_equal(j, "a/b/c");
  sw_free(j);
  j = sw_path_join("a/b/", "c");
  assert_string_equal(j, "a/b/c");
  sw_free(j);
  j = sw_path_join("/", "etc");
  assert_string_equal(j, "/etc");
  sw_free(j);
}

static void test_mkdir_and_remove_tree(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *deep = sw_asprintf("%s/a/b/c/d", dir);
  assert_int_equal(sw_mkdir_p(deep), SW_STATUS_OK);
  assert_true(sw_path_is_dir(deep));
  /* again: already there is fine; a trailing slash too */
  assert_int_equal(sw_mkdir_p(deep), SW_STATUS_OK);
  char *slash = sw_asprintf("%s/a/b/e/", dir);
  assert_int_equal(sw_mkdir_p(slash), SW_STATUS_OK);
  assert_true(sw_path_is_dir(slash));
  struct stat sb;
  assert_int_equal(stat(deep, &sb), 0);
  assert_int_equal(sb.st_mode & 0700, 0700);

  /* a file in the way */
  char *file = sw_asprintf("%s/a/file", dir);
  write_file(file, "x");
  assert_true(sw_path_exists(file));
  assert_false(sw_path_is_dir(file));
  assert_int_equal(sw_mkdir_p(file), SW_STATUS_IO);
  char *under = sw_asprintf("%s/a/file/sub", dir);
  assert_int_equal(sw_mkdir_p(under), SW_STATUS_IO);

  /* files at several depths, then remove everything */
  char *f2 = sw_asprintf("%s/a/b/c/d/leaf.txt", dir);
  write_file(f2, "leaf");
  char *a = sw_path_join(dir, "a");
  assert_int_equal(sw_remove_tree(a), SW_STATUS_OK);
  assert_false(sw_path_exists(a));
  assert_true(sw_path_is_dir(dir));
  /* missing is not an error; a single file is removed */
  assert_int_equal(sw_remove_tree(a), SW_STATUS_OK);
  char *single = sw_path_join(dir, "single");
  write_file(single, "s");
  assert_int_equal(sw_remove_tree(single), SW_STATUS_OK);
  assert_false(sw_path_exists(single));
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  assert_false(sw_path_exists(dir));

  sw_free(single);
  sw_free(a);
  sw_free(f2);
  sw_free(under);
  sw_free(file);
  sw_free(slash);
  sw_free(deep);
  sw_free(dir);
}

/* sw_mkdir_p("") must fail cleanly (there is no directory to make). It runs in a child
 * process inside a scratch directory, since the call reads (and writes NULs) past the
 * 1-byte copy of the path: under ASan the child dies, elsewhere it may mkdir garbage. */
static void test_mkdir_p_empty_path(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (chdir(dir) != 0) _exit(3);
    sw_status st = sw_mkdir_p("");
    _exit(st == SW_STATUS_OK ? 4 : 0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(dir);
  if (WIFSIGNALED(status)) fail_msg("sw_mkdir_p(\"\") killed by signal %d", WTERMSIG(status));
  if (WEXITSTATUS(status) == 4) fail_msg("sw_mkdir_p(\"\") returned OK");
  if (WEXITSTATUS(status) != 0)
    fail_msg("sw_mkdir_p(\"\") child exited with %d (a sanitizer report above?)",
             WEXITSTATUS(status));
}

static void test_read_file(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char *path = sw_path_join(dir, "r.bin");
  const uint8_t content[] = {1, 0, 2, 0, 3};
  assert_int_equal(sw_atomic_write(path, content, sizeof content), SW_STATUS_OK);
  uint8_t *data = NULL;
  size_t len = 0;
  assert_int_equal(sw_read_file(path, &data, &len), SW_STATUS_OK);
  assert_int_equal(len, sizeof content);
  assert_memory_equal(data, content, sizeof content);
  assert_int_equal(data[len], 0);
  sw_free(data);
  assert_int_equal(sw_atomic_write(path, "", 0), SW_STATUS_OK);
  assert_int_equal(sw_read_file(path, &data, &len), SW_STATUS_OK);
  assert_int_equal(len, 0);
  assert_non_null(data);
  assert_int_equal(data[0], 0);
  sw_free(data);
  char *missing = sw_path_join(dir, "missing");
  assert_int_equal(sw_read_file(missing, &data, &len), SW_STATUS_NOT_FOUND);
  assert_null(data);
  sw_free(missing);
  assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  sw_free(path);
  sw_free(dir);
}

static void test_dtype_and_version(void **state) {
  (void)state;
  assert_int_equal(sw_dtype_size(SW_DTYPE_F32), 4);
  assert_int_equal(sw_dtype_size(SW_DTYPE_I64), 8);
  assert_int_equal(sw_dtype_size(SW_DTYPE_U8), 1);
  assert_string_equal(sw_dtype_name(SW_DTYPE_I64), "i64");
  assert_non_null(sw_version());
  assert_true(strlen(sw_version()) > 0);
  double t0 = sw_now(), t1 = sw_now();
  assert_true(t1 >= t0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c_known_answers),
      cmocka_unit_test(test_crc32c_hw_matches_portable),
      cmocka_unit_test(test_crc32c_incremental),
      cmocka_unit_test(test_crc32c_mask),
      cmocka_unit_test(test_sha256_known_answers),
      cmocka_unit_test(test_sha256_streaming),
      cmocka_unit_test(test_sha256_file),
      cmocka_unit_test(test_philox_kat),
      cmocka_unit_test(test_rng_is_philox_stream),
      cmocka_unit_test(test_rng_save_restore),
      cmocka_unit_test(test_rng_streams_differ),
      cmocka_unit_test(test_rng_below),
      cmocka_unit_test(test_rng_permutation),
      cmocka_unit_test(test_rng_uniform_and_normal),
      cmocka_unit_test(test_atomic_write),
      cmocka_unit_test(test_atomic_abort),
      cmocka_unit_test(test_atomic_write_missing_dir),
      cmocka_unit_test(test_status_messages),
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_alloc_failure_json),
      cmocka_unit_test(test_alloc_failure_yaml),
      cmocka_unit_test(test_alloc_failure_atomic_write),
      cmocka_unit_test(test_alloc_failure_buf),
      cmocka_unit_test(test_atomic_write_failure_leaves_path_untouched),
      cmocka_unit_test(test_yaml_structures),
      cmocka_unit_test(test_yaml_scalar_typing),
      cmocka_unit_test(test_yaml_leading_zero_is_decimal),
      cmocka_unit_test(test_yaml_errors),
      cmocka_unit_test(test_yaml_multiple_documents),
      cmocka_unit_test(test_yaml_non_finite),
      cmocka_unit_test(test_yaml_alias_status),
      cmocka_unit_test(test_yaml_empty_document),
      cmocka_unit_test(test_yaml_load_file),
      cmocka_unit_test(test_json_load),
      cmocka_unit_test(test_buf),
      cmocka_unit_test(test_buf_reserve_overflow),
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_mkdir_and_remove_tree),
      cmocka_unit_test(test_mkdir_p_empty_path),
      cmocka_unit_test(test_read_file),
      cmocka_unit_test(test_dtype_and_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
