/* Unit tests of the WAV decoder and the MFCC front end (src/data/wav.c, mfcc.c): WAV
 * files are built byte by byte here, MFCCs are checked for shape, spectral sense,
 * trimming and padding, and against reference numbers from tests/unit/mfcc_reference.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

/* ---- building WAV files -------------------------------------------------- */

static void put_u16(sw_buf *b, unsigned v) {
  uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  assert_int_equal(sw_buf_append(b, x, 2), SW_STATUS_OK);
}

static void put_u32(sw_buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  assert_int_equal(sw_buf_append(b, x, 4), SW_STATUS_OK);
}

static void put_tag(sw_buf *b, const char *tag) {
  assert_int_equal(sw_buf_append(b, tag, 4), SW_STATUS_OK);
}

/* "RIFF" <size patched by wav_end> "WAVE" */
static void wav_begin(sw_buf *b) {
  put_tag(b, "RIFF");
  put_u32(b, 0);
  put_tag(b, "WAVE");
}

static void wav_end(sw_buf *b) {
  uint32_t riff = (uint32_t)(b->len - 8);
  for (int i = 0; i < 4; i++) b->data[4 + i] = (uint8_t)(riff >> (8 * i));
}

/* A chunk with its pad byte when len is odd. */
static void wav_chunk(sw_buf *b, const char *id, const void *body, size_t len) {
  put_tag(b, id);
  put_u32(b, (uint32_t)len);
  if (len) assert_int_equal(sw_buf_append(b, body, len), SW_STATUS_OK);
  if (len & 1) assert_int_equal(sw_buf_append(b, "", 1), SW_STATUS_OK); /* pad byte */
}

static void wav_fmt(sw_buf *b, unsigned tag, unsigned channels, uint32_t rate, unsigned bits) {
  unsigned align = channels * bits / 8;
  put_tag(b, "fmt ");
  put_u32(b, 16);
  put_u16(b, tag);
  put_u16(b, channels);
  put_u32(b, rate);
  put_u32(b, rate * align);
  put_u16(b, align);
  put_u16(b, bits);
}

/* WAVE_FORMAT_EXTENSIBLE whose subformat GUID is derived from subtag. */
static void wav_fmt_ext(sw_buf *b, unsigned subtag, unsigned channels, uint32_t rate,
                        unsigned bits) {
  static const uint8_t tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                   0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
  unsigned align = channels * bits / 8;
  put_tag(b, "fmt ");
  put_u32(b, 40);
  put_u16(b, 0xFFFE);
  put_u16(b, channels);
  put_u32(b, rate);
  put_u32(b, rate * align);
  put_u16(b, align);
  put_u16(b, bits);
  put_u16(b, 22);                        /* cbSize */
  put_u16(b, bits);                      /* valid bits */
  put_u32(b, channels == 1 ? 0x4 : 0x3); /* channel mask */
  put_u16(b, subtag);
  assert_int_equal(sw_buf_append(b, tail, sizeof tail), SW_STATUS_OK);
}

static void wav_data16(sw_buf *b, const int16_t *s, size_t n) {
  put_tag(b, "data");
  put_u32(b, (uint32_t)(2 * n));
  for (size_t i = 0; i < n; i++) put_u16(b, (uint16_t)s[i]);
}

/* A mono 16-bit file of n samples at rate, with an odd-sized LIST chunk before fmt
 * and another between fmt and data when with_list. */
static void make_mono16(sw_buf *b, const int16_t *s, size_t n, uint32_t rate, bool with_list) {
  wav_begin(b);
  if (with_list) wav_chunk(b, "LIST", "INFOISFT\x05\x00\x00\x00test", 17);
  wav_fmt(b, 1, 1, rate, 16);
  if (with_list) wav_chunk(b, "junk", "abc", 3);
  wav_data16(b, s, n);
  wav_end(b);
}

/* Decodes a copy of the first len bytes in an allocation of exactly len bytes, so the
 * sanitizer sees any read past the end. */
static sw_status decode_exact(const uint8_t *data, size_t len, float **s, size_t *n, int *rate) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len) memcpy(copy, data, len);
  sw_status st = sw__wav_decode(len ? copy : NULL, len, s, n, rate);
  free(copy);
  return st;
}

static const int16_t test_pcm[] = {0,   1,    -1, 32767, -32768, 12345, -12345,
                                   256, -257, 7,  1000,  -30000, 16384};
#define TEST_PCM_N (sizeof test_pcm / sizeof test_pcm[0])

/* ---- WAV tests ----------------------------------------------------------- */

static void test_wav_mono_roundtrip(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 16000, false);
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  assert_int_equal(n, TEST_PCM_N);
  assert_int_equal(rate, 16000);
  for (size_t i = 0; i < n; i++) assert_true(s[i] == (float)test_pcm[i] / 32768.0f);
  assert_true(s[4] == -1.0f);
  assert_true(s[3] < 1.0f);
  sw_free(s);
  sw_buf_free(&b);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_wav_stereo_mixdown(void **state) {
  (void)state;
  const int16_t lr[] = {100, 300, -32768, -32768, 32767, 32767, 1000, -1000, -5, 2};
  sw_buf b = {0};
  wav_begin(&b);
  wav_fmt(&b, 1, 2, 44100, 16);
  wav_data16(&b, lr, 10);
  wav_end(&b);
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  assert_int_equal(n, 5);
  assert_int_equal(rate, 44100);
  for (size_t i = 0; i < 5; i++) assert_true(s[i] == (float)(lr[2 * i] + lr[2 * i + 1]) / 65536.0f);
  sw_free(s);
  sw_buf_free(&b);

  /* Three channels average too. */
  const int16_t three[] = {300, 600, 900, -3, -6, -9};
  wav_begin(&b);
  wav_fmt(&b, 1, 3, 8000, 16);
  wav_data16(&b, three, 6);
  wav_end(&b);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  assert_int_equal(n, 2);
  assert_float_equal(s[0], 600.0 / 32768.0, 1e-7);
  assert_float_equal(s[1], -6.0 / 32768.0, 1e-7);
  sw_free(s);
  sw_buf_free(&b);
}

static void test_wav_list_chunk_skipped(void **state) {
  (void)state;
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 22050, true);
  /* A trailing chunk after data is ignored as well. */
  wav_chunk(&b, "LIST", "INFO", 4);
  wav_end(&b);
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  assert_int_equal(n, TEST_PCM_N);
  assert_int_equal(rate, 22050);
  for (size_t i = 0; i < n; i++) assert_true(s[i] == (float)test_pcm[i] / 32768.0f);
  sw_free(s);
  sw_buf_free(&b);
}

static void test_wav_extensible(void **state) {
  (void)state;
  sw_buf b = {0};
  wav_begin(&b);
  wav_fmt_ext(&b, 1, 1, 48000, 16);
  wav_data16(&b, test_pcm, TEST_PCM_N);
  wav_end(&b);
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  assert_int_equal(n, TEST_PCM_N);
  assert_int_equal(rate, 48000);
  assert_true(s[5] == 12345.0f / 32768.0f);
  sw_free(s);
  sw_buf_free(&b);

  /* Extensible wrapping IEEE float is refused. */
  const uint8_t zeros[8] = {0};
  wav_begin(&b);
  wav_fmt_ext(&b, 3, 1, 48000, 32);
  wav_chunk(&b, "data", zeros, sizeof zeros);
  wav_end(&b);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_UNSUPPORTED);
  assert_null(s);
  assert_int_equal(n, 0);
  sw_buf_free(&b);
}

static void test_wav_truncated_data(void **state) {
  (void)state;
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 16000, false);
  b.len -= 6; /* drop the last three samples: 26 declared, 20 present */
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_null(s);
  assert_string_equal(sw_last_error(), "wav: data chunk declares 26 bytes, file has 20");
  sw_buf_free(&b);

  /* A LIST chunk that runs past the end. */
  wav_begin(&b);
  wav_fmt(&b, 1, 1, 16000, 16);
  put_tag(&b, "LIST");
  put_u32(&b, 1000);
  put_tag(&b, "INFO");
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "LIST"));
  sw_buf_free(&b);
}

static void test_wav_bad_structure(void **state) {
  (void)state;
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 16000, false);

  b.data[3] = 'X'; /* RIFX: big-endian RIFF, not supported */
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "not a RIFF"));
  b.data[3] = 'F';
  b.data[11] = 'X'; /* WAVX */
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "WAVE"));
  b.data[11] = 'E';
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_OK);
  sw_free(s);
  sw_buf_free(&b);

  /* data before fmt */
  wav_begin(&b);
  wav_data16(&b, test_pcm, 2);
  wav_fmt(&b, 1, 1, 16000, 16);
  wav_end(&b);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "before fmt"));
  sw_buf_free(&b);

  /* no data chunk at all */
  wav_begin(&b);
  wav_fmt(&b, 1, 1, 16000, 16);
  wav_end(&b);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "no data chunk"));
  sw_buf_free(&b);

  /* zero channels, zero rate, inconsistent block align */
  wav_begin(&b);
  wav_fmt(&b, 1, 0, 16000, 16);
  wav_data16(&b, test_pcm, 2);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  sw_buf_free(&b);
  wav_begin(&b);
  wav_fmt(&b, 1, 1, 0, 16);
  wav_data16(&b, test_pcm, 2);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  sw_buf_free(&b);
  wav_begin(&b);
  wav_fmt(&b, 1, 1, 16000, 16);
  b.data[b.len - 4] = 4; /* block align 4 for one 16-bit channel */
  wav_data16(&b, test_pcm, 2);
  assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_FORMAT);
  sw_buf_free(&b);

  assert_int_equal(decode_exact(NULL, 0, &s, &n, &rate), SW_STATUS_FORMAT);
}

static void test_wav_unsupported_formats(void **state) {
  (void)state;
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  const uint8_t body[48] = {0};
  static const struct {
    unsigned tag, bits;
    const char *needle;
  } cases[] = {
      {1, 8, "8-bit"}, {1, 24, "24-bit"}, {1, 32, "32-bit"}, {3, 32, "float"}, {2, 4, "0x0002"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sw_buf b = {0};
    wav_begin(&b);
    wav_fmt(&b, cases[i].tag, 1, 16000, cases[i].bits);
    wav_chunk(&b, "data", body, sizeof body);
    wav_end(&b);
    assert_int_equal(decode_exact(b.data, b.len, &s, &n, &rate), SW_STATUS_UNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(sw_last_error(), cases[i].needle));
    sw_buf_free(&b);
  }
}

static void test_wav_every_prefix(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 16000, true);
  /* 12 RIFF + 26 LIST (17 + pad) + 24 fmt + 12 junk (3 + pad) + 8 + 26 data */
  const size_t data_body = b.len - 2 * TEST_PCM_N;
  int ok = 0;
  for (size_t len = 0; len <= b.len; len++) {
    float *s = NULL;
    size_t n = 0;
    int rate = 0;
    sw_status st = decode_exact(b.data, len, &s, &n, &rate);
    if (st == SW_STATUS_OK) {
      ok++;
      assert_int_equal(len, b.len);
      assert_int_equal(n, TEST_PCM_N);
      sw_free(s);
    } else {
      assert_int_equal(st, SW_STATUS_FORMAT);
      assert_null(s);
      assert_int_equal(n, 0);
      assert_true(sw_last_error()[0] != '\0');
      if (len >= data_body && len < b.len)
        assert_non_null(strstr(sw_last_error(), "data chunk declares"));
    }
  }
  assert_int_equal(ok, 1);
  sw_buf_free(&b);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_wav_out_of_memory(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw_buf b = {0};
  make_mono16(&b, test_pcm, TEST_PCM_N, 16000, false);
  float *s = NULL;
  size_t n = 0;
  int rate = 0;
  sw_alloc_fail_after(1);
  assert_int_equal(sw__wav_decode(b.data, b.len, &s, &n, &rate), SW_STATUS_NOMEM);
  sw_alloc_fail_after(0);
  assert_null(s);
  sw_buf_free(&b);
  assert_int_equal(sw_alloc_live(), live);
}

/* ---- MFCC tests ---------------------------------------------------------- */

static sw__mfcc_options mfcc_opts(int frames, int coeffs, int bands, double trim_db) {
  sw__mfcc_options o = {frames, coeffs, bands, 25.0, 10.0, trim_db};
  return o;
}

static float *sine(int rate, size_t n, double hz, double amp) {
  float *x = malloc(n * sizeof *x);
  assert_non_null(x);
  for (size_t i = 0; i < n; i++) x[i] = (float)(amp * sin(2 * M_PI * hz * (double)i / rate));
  return x;
}

/* Runs one MFCC computation; out is a new malloc'd [frames][coeffs] array. */
static sw_status run_mfcc(const sw__mfcc_options *o, int rate, const float *x, size_t n,
                          float **out) {
  sw__mfcc *m = NULL;
  sw_status st = sw__mfcc_new(o, rate, &m);
  assert_int_equal(st, SW_STATUS_OK);
  *out = malloc((size_t)o->frames * o->coeffs * sizeof **out);
  assert_non_null(*out);
  st = sw__mfcc_compute(m, x, n, *out);
  sw__mfcc_free(m);
  return st;
}

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }

/* The filter whose centre lies nearest hz: centres are points 1..bands of bands+2
 * points evenly spaced in mel between 20 Hz and rate/2. */
static int band_nearest(double hz, int rate, int bands) {
  double lo = hz_to_mel(20.0), hi = hz_to_mel(rate / 2.0), target = hz_to_mel(hz);
  int best = 0;
  for (int b = 0; b < bands; b++) {
    double c = lo + (hi - lo) * (b + 1) / (bands + 1);
    double cb = lo + (hi - lo) * (best + 1) / (bands + 1);
    if (fabs(c - target) < fabs(cb - target)) best = b;
  }
  return best;
}

static void test_mfcc_sine_shape(void **state) {
  (void)state;
  long live = sw_alloc_live();
  const int rate = 16000;
  const size_t n = 16000;
  float *x = sine(rate, n, 1000.0, 0.5);
  sw__mfcc_options o = mfcc_opts(120, 13, 40, 0.0);
  float *out = NULL;
  assert_int_equal(run_mfcc(&o, rate, x, n, &out), SW_STATUS_OK);
  /* 1 + (16000 - 400) / 160 = 98 frames of audio, then 22 of padding. */
  for (int f = 0; f < 120; f++) {
    bool any = false;
    for (int c = 0; c < 13; c++) {
      float v = out[f * 13 + c];
      assert_true(isfinite(v));
      any |= v != 0.0f;
    }
    assert_true(any == (f < 98));
  }
  free(out);
  free(x);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_mfcc_band_dominates(void **state) {
  (void)state;
  const int rate = 16000, bands = 26;
  const size_t n = 8000;
  float *loud = sine(rate, n, 1000.0, 0.5);
  float *quiet = sine(rate, n, 1000.0, 0.005);
  /* With every coefficient kept the orthonormal DCT inverts exactly (DCT-III), giving
   * back the log mel energies. */
  sw__mfcc_options o = mfcc_opts(10, bands, bands, 0.0);
  float *out = NULL, *out_quiet = NULL;
  assert_int_equal(run_mfcc(&o, rate, loud, n, &out), SW_STATUS_OK);
  assert_int_equal(run_mfcc(&o, rate, quiet, n, &out_quiet), SW_STATUS_OK);
  int want = band_nearest(1000.0, rate, bands);
  for (int f = 0; f < 10; f++) {
    double logmel[26];
    for (int b = 0; b < bands; b++) {
      double s = out[f * bands] * sqrt(1.0 / bands);
      for (int k = 1; k < bands; k++)
        s += out[f * bands + k] * sqrt(2.0 / bands) * cos(M_PI * k * (2.0 * b + 1) / (2.0 * bands));
      logmel[b] = s;
    }
    int best = 0;
    for (int b = 1; b < bands; b++)
      if (logmel[b] > logmel[best]) best = b;
    assert_int_equal(best, want);
    /* The tone's band stands far above the bands an octave away. */
    assert_true(logmel[want] - logmel[want > 5 ? want - 5 : want + 5] > 5.0);
    /* 40 dB quieter: every band's log energy drops by ln(1e4) = 9.2, c0 by 9.2*sqrt(26). */
    assert_true(out[f * bands] - out_quiet[f * bands] > 40.0);
  }
  free(out);
  free(out_quiet);
  free(loud);
  free(quiet);
}

static void test_mfcc_trim(void **state) {
  (void)state;
  const int rate = 16000;
  const size_t tone_n = 4000, pad = 160 * 12; /* silence a whole number of hops long */
  float *tone = sine(rate, tone_n, 1000.0, 0.5);
  float *padded = calloc(tone_n + 2 * pad, sizeof *padded);
  assert_non_null(padded);
  memcpy(padded + pad, tone, tone_n * sizeof *tone);
  /* 1 + (4000 - 400) / 160 = 23 frames of tone. The frames that straddle an edge of
   * the tone hold at most 74% of a full frame's windowed energy (-1.3 dB), so a 1 dB
   * threshold trims them and the first kept frame starts exactly where the tone does. */
  sw__mfcc_options o = mfcc_opts(23, 13, 26, 1.0);
  float *a = NULL, *b = NULL;
  assert_int_equal(run_mfcc(&o, rate, tone, tone_n, &a), SW_STATUS_OK);
  assert_int_equal(run_mfcc(&o, rate, padded, tone_n + 2 * pad, &b), SW_STATUS_OK);
  for (int i = 0; i < 23 * 13; i++) assert_float_equal(a[i], b[i], 1e-4);
  assert_true(a[0] != 0.0f);
  free(a);
  free(b);

  /* Without trimming the padded clip starts with silence: c0 at the log floor. */
  o.trim_db = 0;
  assert_int_equal(run_mfcc(&o, rate, padded, tone_n + 2 * pad, &b), SW_STATUS_OK);
  assert_float_equal(b[0], log(1e-10) * sqrt(26.0), 1e-2);
  free(b);
  free(tone);
  free(padded);
}

static void test_mfcc_padding(void **state) {
  (void)state;
  const int rate = 16000;
  const size_t n = 1600; /* 1 + 1200 / 160 = 8 frames */
  float *x = sine(rate, n, 440.0, 0.3);
  sw__mfcc_options o = mfcc_opts(20, 13, 26, 0.0);
  float *out = NULL;
  assert_int_equal(run_mfcc(&o, rate, x, n, &out), SW_STATUS_OK);
  for (int f = 0; f < 20; f++)
    for (int c = 0; c < 13; c++) {
      if (f < 8)
        assert_true(out[f * 13 + c] != 0.0f && isfinite(out[f * 13 + c]));
      else
        assert_true(out[f * 13 + c] == 0.0f);
    }
  free(out);

  /* Exactly one frame. */
  assert_int_equal(run_mfcc(&o, rate, x, 400, &out), SW_STATUS_OK);
  assert_true(out[0] != 0.0f);
  assert_true(out[13] == 0.0f);
  free(out);
  free(x);
}

static void test_mfcc_truncated(void **state) {
  (void)state;
  const int rate = 16000;
  float *zeros = calloc(16000, sizeof *zeros);
  assert_non_null(zeros);
  sw__mfcc_options o = mfcc_opts(10, 13, 26, 20.0);
  float *out = NULL;
  assert_int_equal(run_mfcc(&o, rate, zeros, 16000, &out), SW_STATUS_TRUNCATED);
  assert_non_null(strstr(sw_last_error(), "silent"));
  free(out);
  o.trim_db = 0;
  assert_int_equal(run_mfcc(&o, rate, zeros, 16000, &out), SW_STATUS_TRUNCATED);
  free(out);
  /* One sample short of a frame. */
  float *x = sine(rate, 399, 440.0, 0.3);
  assert_int_equal(run_mfcc(&o, rate, x, 399, &out), SW_STATUS_TRUNCATED);
  assert_non_null(strstr(sw_last_error(), "shorter than one"));
  free(out);
  assert_int_equal(run_mfcc(&o, rate, x, 0, &out), SW_STATUS_TRUNCATED);
  free(out);
  free(x);
  free(zeros);
}

static void test_mfcc_options(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw__mfcc *m = (sw__mfcc *)1;
  sw__mfcc_options o = mfcc_opts(10, 13, 26, 0);
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_OK);
  sw__mfcc_free(m);
  o.coeffs = 27;
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_INVALID);
  assert_null(m);
  o = mfcc_opts(0, 13, 26, 0);
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_INVALID);
  o = mfcc_opts(10, 13, 26, 0);
  assert_int_equal(sw__mfcc_new(&o, 0, &m), SW_STATUS_INVALID);
  assert_int_equal(sw__mfcc_new(&o, 40, &m), SW_STATUS_INVALID);
  o.frame_ms = 0;
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_INVALID);
  o = mfcc_opts(10, 13, 26, 0);
  o.hop_ms = NAN;
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_INVALID);
  o = mfcc_opts(10, 13, 26, 0);
  o.frame_ms = 1e9;
  assert_int_equal(sw__mfcc_new(&o, 16000, &m), SW_STATUS_INVALID);
  sw__mfcc_free(NULL);
  assert_int_equal(sw_alloc_live(), live);
}

static void test_mfcc_out_of_memory(void **state) {
  (void)state;
  long live = sw_alloc_live();
  sw__mfcc_options o = mfcc_opts(10, 13, 26, 0);
  float *x = sine(16000, 4000, 440.0, 0.3);
  float out[10 * 13];
  int failures = 0;
  for (long k = 1; k < 100; k++) {
    sw__mfcc *m = NULL;
    sw_alloc_fail_after(k);
    sw_status st = sw__mfcc_new(&o, 16000, &m);
    if (st == SW_STATUS_OK) st = sw__mfcc_compute(m, x, 4000, out);
    sw_alloc_fail_after(0);
    sw__mfcc_free(m);
    assert_int_equal(sw_alloc_live(), live);
    if (st == SW_STATUS_OK) break;
    assert_int_equal(st, SW_STATUS_NOMEM);
    failures++;
  }
  assert_true(failures >= 5);
  free(x);
}

static void test_mfcc_deterministic(void **state) {
  (void)state;
  const int rate = 8000;
  const size_t n = 6000, shorter = 2000;
  float *x = sine(rate, n, 700.0, 0.4);
  for (size_t i = 0; i < n; i++) x[i] += (float)(0.01 * sin(0.37 * (double)i * i));
  sw__mfcc_options o = mfcc_opts(50, 13, 26, 30.0);
  sw__mfcc *m = NULL;
  assert_int_equal(sw__mfcc_new(&o, rate, &m), SW_STATUS_OK);
  float *a = malloc(50 * 13 * sizeof *a), *b = malloc(50 * 13 * sizeof *b);
  float *c = malloc(50 * 13 * sizeof *c);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  /* The same object reused, after a shorter and a longer clip: the same bits. */
  assert_int_equal(sw__mfcc_compute(m, x, n, a), SW_STATUS_OK);
  assert_int_equal(sw__mfcc_compute(m, x, shorter, c), SW_STATUS_OK);
  assert_int_equal(sw__mfcc_compute(m, x, n, b), SW_STATUS_OK);
  assert_memory_equal(a, b, 50 * 13 * sizeof *a);
  assert_memory_equal(a, c, 10 * 13 * sizeof *a); /* shared prefix of frames */
  sw__mfcc_free(m);
  /* A fresh object gives the same bits. */
  free(c);
  assert_int_equal(run_mfcc(&o, rate, x, n, &c), SW_STATUS_OK);
  assert_memory_equal(a, c, 50 * 13 * sizeof *a);
  free(a);
  free(b);
  free(c);
  free(x);
}

/* ---- reference numbers --------------------------------------------------- */

/* Produced by `/usr/bin/python3 tests/unit/mfcc_reference.py` (numpy, float64, written
 * apart from mfcc.c from the pipeline's description) and pasted unchanged. */
/* 16 kHz, seed 12345, 3200 tone samples; frames 10 coeffs 13 bands 26, trim off; 10 frames computed
 */
static const float ref_a[10][13] = {
    {-36.84905f, -6.517569f, -1.570808f, -0.6715667f, 0.7104554f, -5.545349f, -10.1083f, -5.130292f,
     2.00667f, 0.3354905f, -0.4088437f, 3.716051f, 5.573398f},
    {-36.36511f, -5.829264f, -1.042806f, -1.814038f, 1.039528f, -5.172044f, -9.529133f, -4.501645f,
     1.643542f, 0.6505153f, -1.094526f, 3.677782f, 6.254753f},
    {-35.70501f, -5.165871f, -0.8544727f, -0.4139815f, 1.505804f, -4.573685f, -9.324193f, -4.30911f,
     1.68083f, 0.5966044f, -1.061694f, 3.484984f, 6.048569f},
    {-36.5577f, -5.661292f, -1.249065f, -1.147039f, 0.7458804f, -4.668848f, -10.21411f, -4.313354f,
     1.888957f, 0.8184942f, -1.03395f, 3.03528f, 6.129313f},
    {-36.1113f, -5.843852f, -2.234002f, -1.174623f, -0.1461269f, -4.870448f, -9.748549f, -5.167151f,
     2.110609f, 0.7334858f, -1.16525f, 3.301598f, 5.52691f},
    {-36.30931f, -6.700443f, -1.621159f, -1.142073f, 0.5933961f, -5.686272f, -9.996302f, -4.80744f,
     1.652609f, 0.7134169f, -1.12905f, 3.117615f, 5.798488f},
    {-36.05419f, -6.164674f, -1.082283f, -0.7737528f, 0.3207327f, -5.815868f, -9.306972f,
     -3.941233f, 1.571243f, 1.192048f, -1.561823f, 2.829254f, 6.042877f},
    {-35.99923f, -5.577244f, -0.8285055f, 0.6343287f, 1.609386f, -5.819644f, -8.690208f, -4.501937f,
     1.599804f, 0.9224233f, -1.128682f, 3.165912f, 6.140303f},
    {-35.95574f, -5.739493f, -1.595291f, -1.250353f, 0.7714378f, -6.091891f, -8.653009f, -4.028463f,
     1.925541f, 0.2409056f, -1.398764f, 3.164991f, 6.510046f},
    {-36.40502f, -6.123232f, -1.507664f, -2.599359f, 0.534234f, -5.238329f, -9.983752f, -4.545034f,
     1.919434f, 0.5472981f, -0.8451578f, 2.561929f, 6.135755f},
};
/* 22050 Hz, seed 777, 2205 quiet + 5513 tone + 2205 zero samples; frames 28 coeffs 12 bands 20,
 * trim 20 dB; 27 frames kept, rest padding */
static const float ref_b[28][12] = {
    {-36.80205f, 0.6670436f, -1.457894f, -0.8068503f, 3.013825f, -0.2006127f, -3.672266f,
     -3.465693f, -1.149281f, 1.410021f, 0.4524872f, -0.3290454f},
    {-25.64571f, -0.8776494f, -0.8098801f, -1.650563f, 2.845123f, -0.3467191f, -5.242836f,
     -5.869195f, -1.502809f, 1.339698f, 0.4568073f, -1.057139f},
    {-29.45995f, -4.867664f, -1.068072f, -2.907502f, 1.341608f, -0.3564272f, -6.661416f, -8.32132f,
     -2.639151f, 1.61245f, -0.3270946f, -1.674946f},
    {-29.79068f, -5.469438f, -1.592511f, -1.672681f, 2.159427f, -0.641921f, -7.174631f, -8.354249f,
     -2.756582f, 1.008045f, -0.03189022f, -1.401499f},
    {-29.76937f, -4.869377f, -1.163955f, -2.432596f, 1.914239f, -0.5487648f, -6.584135f, -8.18684f,
     -2.858442f, 1.419993f, 0.1936353f, -1.717944f},
    {-29.65555f, -4.776652f, -1.066054f, -1.438929f, 2.303402f, -0.3662439f, -6.362342f, -8.526801f,
     -2.755397f, 1.565634f, 0.3207294f, -1.669492f},
    {-29.59094f, -5.127802f, -1.294482f, -1.204813f, 3.377156f, 0.1840531f, -6.26582f, -8.587855f,
     -3.35649f, 0.8236345f, 0.03591608f, -1.033675f},
    {-29.63876f, -5.824398f, -1.810229f, -2.597897f, 1.649097f, -1.195769f, -7.113469f, -8.835198f,
     -2.986253f, 1.166573f, -0.3613342f, -1.284992f},
    {-29.93102f, -5.355893f, -1.430943f, -2.404097f, 1.783546f, -1.092565f, -6.865626f, -8.581441f,
     -3.147659f, 1.43013f, 0.317376f, -1.837128f},
    {-29.38415f, -4.708212f, -1.159894f, -1.823232f, 2.478965f, -0.168329f, -6.84957f, -7.785105f,
     -2.741904f, 1.007711f, 0.05486744f, -1.405257f},
    {-29.94516f, -5.361129f, -1.786473f, -2.598206f, 1.54225f, -0.2539711f, -7.415617f, -8.618745f,
     -2.652055f, 0.7721743f, 0.2205015f, -1.100865f},
    {-29.39144f, -4.651737f, -0.3754511f, -0.9714878f, 3.25757f, -0.134207f, -6.628751f, -7.830311f,
     -2.984308f, 1.490172f, 0.4187245f, -1.586436f},
    {-29.39712f, -5.323716f, -2.093393f, -2.98853f, 1.522009f, -1.008771f, -6.984923f, -8.366603f,
     -2.979155f, 1.177351f, -0.3488732f, -1.188489f},
    {-29.2705f, -4.890786f, -1.190511f, -2.491094f, 1.876517f, -0.588938f, -6.565112f, -8.109f,
     -2.712506f, 1.747833f, -0.5000054f, -1.282833f},
    {-29.77518f, -4.859191f, -1.260458f, -1.625552f, 1.888589f, -0.952957f, -6.631027f, -8.498957f,
     -2.661084f, 1.559694f, 0.09557395f, -1.804963f},
    {-29.09271f, -5.295619f, -2.056794f, -2.039483f, 1.54895f, -0.9370287f, -6.961758f, -7.866219f,
     -3.037829f, 0.9888228f, 0.2914418f, -1.517013f},
    {-29.22916f, -4.726587f, -1.029849f, -1.396539f, 2.361465f, 0.1574364f, -6.304794f, -8.273356f,
     -2.998347f, 1.349671f, 0.0339306f, -1.113042f},
    {-29.77634f, -4.974623f, -0.7209021f, -1.55703f, 2.72424f, -0.371474f, -7.304451f, -8.415388f,
     -2.619519f, 1.699406f, 0.1964478f, -1.179684f},
    {-29.43379f, -4.890216f, -1.846557f, -2.488699f, 1.529477f, -0.9396741f, -7.021927f, -7.995614f,
     -2.695009f, 1.516284f, -0.03117261f, -1.242201f},
    {-30.00232f, -5.155921f, -1.967656f, -2.559729f, 1.720027f, -0.7401651f, -7.114243f, -8.479281f,
     -2.953748f, 1.073836f, -0.4522697f, -1.738659f},
    {-29.42006f, -4.601442f, -1.603018f, -2.037333f, 2.385426f, -0.1869257f, -6.67542f, -8.107192f,
     -2.88012f, 0.8396339f, 0.3175277f, -1.202163f},
    {-29.50963f, -5.347206f, -2.029209f, -2.014154f, 1.618525f, -0.8711886f, -6.966014f, -8.473786f,
     -2.619612f, 1.188679f, 0.087576f, -1.388375f},
    {-29.43049f, -4.86927f, -0.3378244f, -0.7295881f, 2.949194f, 0.2340588f, -6.440812f, -8.45954f,
     -2.565145f, 1.469844f, 0.2334686f, -1.644834f},
    {-29.77839f, -5.636153f, -1.930359f, -2.638963f, 1.246607f, -1.298694f, -7.035497f, -8.674964f,
     -2.545277f, 1.323739f, -0.1319853f, -1.426459f},
    {-29.19804f, -5.004187f, -1.389587f, -1.573807f, 2.407593f, -0.4448176f, -6.856026f, -8.205017f,
     -2.521058f, 1.074543f, 0.3677734f, -1.096485f},
    {-26.9577f, -2.495465f, -0.3243194f, -1.429295f, 2.949595f, -0.4345014f, -6.234371f, -7.093144f,
     -1.844584f, 1.661852f, 0.2752918f, -1.226879f},
    {-28.67692f, -0.2561373f, -1.518216f, -0.8682136f, 2.467073f, -0.5556884f, -4.223222f,
     -4.665615f, -0.8038879f, 1.006265f, 0.3750161f, -0.7431652f},
    {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
};

/* The reference signal of mfcc_reference.py: `quiet` samples of faint LCG noise, `tone`
 * samples of 440 Hz + 1800 Hz sines with noise, then `silence` zeros. */
static float *reference_signal(int rate, uint32_t seed, size_t quiet, size_t tone, size_t silence) {
  float *x = calloc(quiet + tone + silence, sizeof *x);
  assert_non_null(x);
  uint32_t lcg = seed;
  for (size_t i = 0; i < quiet + tone; i++) {
    lcg = lcg * 1664525u + 1013904223u;
    double noise = (double)(lcg >> 8) / 16777216.0 - 0.5;
    if (i < quiet) {
      x[i] = (float)(0.002 * noise);
    } else {
      double t = (double)(i - quiet) / rate;
      x[i] = (float)(0.4 * sin(2 * M_PI * 440 * t) + 0.2 * sin(2 * M_PI * 1800 * t + 0.5) +
                     0.05 * noise);
    }
  }
  return x;
}

/* max|got - want| / max(max|want|, 1e-6) */
static double relative_error(const float *got, const float *want, size_t n) {
  double diff = 0, scale = 1e-6;
  for (size_t i = 0; i < n; i++) {
    diff = fmax(diff, fabs((double)got[i] - want[i]));
    scale = fmax(scale, fabs((double)want[i]));
  }
  return diff / scale;
}

static void test_mfcc_reference(void **state) {
  (void)state;
  float *x = reference_signal(16000, 12345, 0, 3200, 0);
  sw__mfcc_options o = mfcc_opts(10, 13, 26, 0.0);
  float *out = NULL;
  assert_int_equal(run_mfcc(&o, 16000, x, 3200, &out), SW_STATUS_OK);
  double err = relative_error(out, &ref_a[0][0], 10 * 13);
  print_message("reference A: relative error %.3g\n", err);
  assert_true(err < 1e-3);
  free(out);
  free(x);

  x = reference_signal(22050, 777, 2205, 5513, 2205);
  o = mfcc_opts(28, 12, 20, 20.0);
  assert_int_equal(run_mfcc(&o, 22050, x, 2205 + 5513 + 2205, &out), SW_STATUS_OK);
  err = relative_error(out, &ref_b[0][0], 28 * 12);
  print_message("reference B: relative error %.3g\n", err);
  assert_true(err < 1e-3);
  for (int c = 0; c < 12; c++) assert_true(out[27 * 12 + c] == 0.0f);
  free(out);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wav_mono_roundtrip),
      cmocka_unit_test(test_wav_stereo_mixdown),
      cmocka_unit_test(test_wav_list_chunk_skipped),
      cmocka_unit_test(test_wav_extensible),
      cmocka_unit_test(test_wav_truncated_data),
      cmocka_unit_test(test_wav_bad_structure),
      cmocka_unit_test(test_wav_unsupported_formats),
      cmocka_unit_test(test_wav_every_prefix),
      cmocka_unit_test(test_wav_out_of_memory),
      cmocka_unit_test(test_mfcc_sine_shape),
      cmocka_unit_test(test_mfcc_band_dominates),
      cmocka_unit_test(test_mfcc_trim),
      cmocka_unit_test(test_mfcc_padding),
      cmocka_unit_test(test_mfcc_truncated),
      cmocka_unit_test(test_mfcc_options),
      cmocka_unit_test(test_mfcc_out_of_memory),
      cmocka_unit_test(test_mfcc_deterministic),
      cmocka_unit_test(test_mfcc_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
