/* The model server's body parsers: the JSON parser accepts and refuses what jansson
 * does and builds the same tree, the fast number path gives strtod's values for every
 * literal form (and jansson's for integers), and the predict / infer / feedback shapes
 * are read as documented. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/serve_int.h"
#include "../json_like_jansson.h"

static sw_serve_signature sig4(void) {
  sw_serve_signature s;
  memset(&s, 0, sizeof s);
  s.n_in = 1;
  s.in[0] = (sw_serve_io){.name = "x", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {4}, .per = 4};
  s.n_out = 1;
  s.out[0] = (sw_serve_io){.name = "out", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {3}, .per = 3};
  return s;
}

/* A random number literal: integer part of 1 to 12 digits, now and then up to 25 (or 0), maybe a fraction of 1 to
 * 25 digits, maybe an exponent in [-340, 340]. */
static void literal(sw_rng *r, char *out, bool *is_int) {
  char *p = out;
  if (sw_rng_below(r, 2)) *p++ = '-';
  int n = 1 + (int)(sw_rng_below(r, 8) ? sw_rng_below(r, 12) : sw_rng_below(r, 25));
  if (sw_rng_below(r, 4) == 0) *p++ = '0';
  else {
    *p++ = (char)('1' + sw_rng_below(r, 9));
    for (int i = 1; i < n; i++) *p++ = (char)('0' + sw_rng_below(r, 10));
  }
  *is_int = true;
  if (sw_rng_below(r, 3)) {
    *is_int = false;
    *p++ = '.';
    int f = 1 + (int)sw_rng_below(r, 25);
    for (int i = 0; i < f; i++) *p++ = (char)('0' + sw_rng_below(r, 10));
  }
  if (sw_rng_below(r, 3) == 0) {
    *is_int = false;
    p += sprintf(p, "%s%d", sw_rng_below(r, 2) ? "e" : "E", (int)sw_rng_below(r, 681) - 340);
  }
  *p = '\0';
}

static void test_numbers_are_strtods(void **state) {
  (void)state;
  sw_rng r;
  sw_rng_init(&r, 42, 0);
  long live = sw_alloc_live();
  int fast = 0;
  for (int round = 0; round < 2000; round++) {
    char lits[8][128];
    bool is_int[8];
    sw_buf text = {0};
    sw_buf_printf(&text, "[");
    for (int i = 0; i < 8; i++) {
      literal(&r, lits[i], &is_int[i]);
      sw_buf_printf(&text, "%s%s", i ? ", " : "", lits[i]);
    }
    sw_buf_printf(&text, "]");
    sw_body b;
    sw_status st = sw_body_parse((const char *)text.data, text.len, &b);
    json_t *ref = json_loadb((const char *)text.data, text.len, 0, NULL);
    if (!ref) {
      /* jansson refuses it (overflow, too big an integer): so must we */
      assert_int_equal(st, SW_STATUS_FORMAT);
    } else {
      assert_int_equal(st, SW_STATUS_OK);
      const sw_numarr *a = sw_body_numarr(&b, b.root);
      for (int i = 0; i < 8; i++) {
        double want = json_number_value(json_array_get(ref, (size_t)i));
        double got = a ? a->v[i] : sw_jv_num(sw_jv_at(b.root, (size_t)i));
        if (!is_int[i]) assert_true(want == strtod(lits[i], NULL)); /* jansson is strtod too */
        if (memcmp(&got, &want, sizeof got)) fail_msg("%s: got %.17g, want %.17g", lits[i], got, want);
      }
      fast += a != NULL;
    }
    json_decref(ref);
    sw_body_free(&b);
    sw_buf_free(&text);
  }
  if (fast < 200) fail_msg("the fast path took only %d arrays of 2000", fast);
  assert_int_equal(sw_alloc_live(), live);
}

/* Accepts and refuses what jansson does (text without NaN or Infinity, which jansson
 * does not take) and builds the same tree: documents written to reach each rule, then
 * random ones (and random corruptions of them). */
static void check_like_jansson(const char *text, size_t len) {
  if (!sw_test_like_jansson(text, len)) fail_msg("%.*s: not as jansson reads it", (int)len, text);
}

static void random_value(sw_rng *r, sw_buf *t, int depth) {
  static const char *const atoms[] = {"true", "false", "null", "0", "-0", "12", "-7.5e3", "1e-2", "9223372036854775807",
                                      "-9223372036854775808", "9223372036854775808", "\"\"", "\"a\\\"b\\\\c\\/d\"",
                                      "\"\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"",
                                      "\"\\u0001\"", "1.5", "[]", "{}", "[1, 2]", "[[1, 2], [3, 4]]", "[[1], [2, 3]]", "[1, \"x\"]"};
  unsigned k = (unsigned)sw_rng_below(r, depth > 4 ? 24 : 30);
  if (k < 24) {
    sw_buf_printf(t, "%s", atoms[k]);
  } else if (k < 27) {
    sw_buf_printf(t, "[");
    int n = (int)sw_rng_below(r, 4);
    for (int i = 0; i < n; i++) {
      if (i) sw_buf_printf(t, ",%s", sw_rng_below(r, 2) ? " " : "\n");
      random_value(r, t, depth + 1);
    }
    sw_buf_printf(t, "]");
  } else {
    sw_buf_printf(t, "{");
    int n = (int)sw_rng_below(r, 4);
    for (int i = 0; i < n; i++) {
      sw_buf_printf(t, "%s\"%c\": ", i ? ", " : "", (char)('a' + sw_rng_below(r, 3))); /* duplicates too */
      random_value(r, t, depth + 1);
    }
    sw_buf_printf(t, "}");
  }
}

static void test_json_like_jansson(void **state) {
  (void)state;
  long live = sw_alloc_live();
  static const char *const docs[] = {
      "{}", "[]", " \n{\"a\": 1}\t", "{\"a\": 1, \"a\": [1, 2]}", "[1, 2,]", "[1 2]", "{\"a\" 1}", "{\"a\": 1,}", "{1: 2}",
      "1", "\"x\"", "null", "", "   ", "{\"a\": 1} x", "[01]", "[-]", "[1.]", "[.5]", "[1e]", "[+1]", "[0x10]",
      "[9223372036854775807]", "[9223372036854775808]", "[-9223372036854775809]", "[1e999]", "[tru]", "[nul]",
      "[\"\\u0000\"]", "[\"\\ud800\"]", "[\"\\udc00x\"]", "[\"\\ud83d\\ude00\"]", "[\"\\x\"]", "[\"a\nb\"]", "[\"a\x1f\"]", "[\"\xff\"]",
      "[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xe4\xb8\"]", "{\"\\u00e9\": [[1, 2], [3, 4]]}",
      "[[1, 2], [3]]", "[[], []]", "[[[1]], [[2]]]", "{\"x\": \"\\u0001\"}", "[\"unterminated", "{\"a\": [1, 2}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) check_like_jansson(docs[i], strlen(docs[i]));
  char deep[2 * 600 + 1];
  for (int i = 0; i < 600; i++) deep[i] = '[', deep[600 + i] = ']';
  sw_body b;
  assert_int_equal(sw_body_parse(deep, 1200, &b), SW_STATUS_FORMAT); /* nested past 512: refused, not a crash */
  sw_rng r;
  sw_rng_init(&r, 7, 0);
  for (int round = 0; round < 3000; round++) {
    sw_buf t = {0};
    if (sw_rng_below(&r, 2)) random_value(&r, &t, 0);
    else {
      sw_buf_printf(&t, "{\"k\": ");
      random_value(&r, &t, 0);
      sw_buf_printf(&t, "}");
    }
    check_like_jansson((const char *)t.data, t.len);
    if (t.len > 1) { /* a corruption: one byte changed, or the text cut */
      size_t at = (size_t)sw_rng_below(&r, t.len);
      if (sw_rng_below(&r, 2)) t.data[at] = (uint8_t)"[]{}\",:0a\\ \x80"[sw_rng_below(&r, 12)];
      else t.len = at;
      check_like_jansson((const char *)t.data, t.len);
    }
    sw_buf_free(&t);
  }
  assert_int_equal(sw_alloc_live(), live);
}

static void test_special_values(void **state) {
  (void)state;
  sw_body b;
  const char *t = "{\"a\": [-0, -0.0, 1e-400, NaN, Infinity, -Infinity], \"b\": NaN, \"c\": [[1, 2], [3, 4], [5, 6]]}";
  assert_int_equal(sw_body_parse(t, strlen(t), &b), SW_STATUS_OK);
  const sw_numarr *a = sw_body_numarr(&b, sw_jv_get(b.root, "a"));
  assert_non_null(a);
  assert_false(signbit(a->v[0])); /* jansson reads -0 as the integer 0 */
  assert_true(signbit(a->v[1]) && a->v[1] == 0);
  assert_true(a->v[2] == 0);
  assert_true(isnan(a->v[3]) && a->v[4] == INFINITY && a->v[5] == -INFINITY);
  assert_false(a->all_int);
  const sw_jv *nan = sw_jv_get(b.root, "b");
  assert_true(sw_jv_is_number(nan) && isnan(sw_jv_num(nan)) && !sw_body_numarr(&b, nan));
  const sw_numarr *c = sw_body_numarr(&b, sw_jv_get(b.root, "c"));
  assert_true(c && c->rank == 2 && c->shape[0] == 3 && c->shape[1] == 2 && c->all_int && c->v[5] == 6);
  sw_body_free(&b);
  /* too big for a double: jansson's error, with a line and column of the client's text */
  t = "{\"instances\":\n [[1, 2, 3, 1e999]]}";
  assert_int_equal(sw_body_parse(t, strlen(t), &b), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "line 2"));
}

static void test_placeholder_cannot_be_forged(void **state) {
  (void)state;
  sw_serve_signature s = sig4();
  sw_serve_inputs in;
  /* a client string that looks like a placeholder is a string, not an array */
  const char *t = "{\"instances\": [[1, 2, 3, 4]], \"x\": \"\\u00010\"}";
  assert_int_equal(sw_serve_parse_predict(t, strlen(t), &s, &in), SW_STATUS_OK);
  assert_true(((float *)in.in[0])[3] == 4);
  sw_serve_inputs_clear(&in, 1);
  t = "{\"instances\": \"\\u00010\"}";
  assert_int_equal(sw_serve_parse_predict(t, strlen(t), &s, &in), SW_STATUS_FORMAT);
}

static void test_predict_shapes(void **state) {
  (void)state;
  sw_serve_signature s = sig4();
  sw_serve_inputs in;
  const char *ok[] = {"{\"instances\": [[1, 2, 3, 4], [5, 6, 7, 8]]}", "{\"instances\": [[[1, 2], [3, 4]], [5, 6, 7, 8]]}",
                      "{\"inputs\": [[1, 2, 3, 4], [5, 6, 7, 8]]}", "{\"inputs\": {\"x\": [[1, 2, 3, 4], [5, 6, 7, 8]]}}",
                      "{\"instances\": [{\"x\": [1, 2, 3, 4]}, {\"x\": [5, 6, 7, 8]}]}",
                      "{\"instances\": [[1, 2, 3, 4], [5, 6, 7, \"8\"]]}"};
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(sw_serve_parse_predict(ok[i], strlen(ok[i]), &s, &in), SW_STATUS_OK);
    assert_int_equal(in.rows, 2);
    assert_int_equal(in.columnar, ok[i][2] == 'i' && ok[i][3] == 'n' && ok[i][4] == 'p');
    for (int k = 0; k < 8; k++) assert_true(((float *)in.in[0])[k] == (float)(k + 1));
    sw_serve_inputs_clear(&in, 1);
  }
  assert_int_equal(sw_serve_parse_predict(ok[5], strlen(ok[5]), &s, &in), SW_STATUS_FORMAT);
  assert_non_null(strstr(sw_last_error(), "instance 1"));
}

static void test_infer_binary(void **state) {
  (void)state;
  sw_serve_signature s = sig4();
  sw_serve_inputs in;
  const char *head = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 4], \"datatype\": \"FP32\", "
                     "\"parameters\": {\"binary_data_size\": 16}}], \"outputs\": [{\"name\": \"out\", "
                     "\"parameters\": {\"binary_data\": true}}]}";
  float x[4] = {0.5f, -1, 3e38f, 7};
  char body[512];
  size_t hl = strlen(head);
  memcpy(body, head, hl);
  memcpy(body + hl, x, sizeof x);
  assert_int_equal(sw_serve_parse_infer(body, hl + sizeof x, hl, &s, &in), SW_STATUS_OK);
  assert_memory_equal(in.in[0], x, sizeof x);
  assert_true(in.want_out[0] && in.binary_out[0]);
  sw_serve_inputs_clear(&in, 1);
  assert_int_equal(sw_serve_parse_infer(body, hl + 8, hl, &s, &in), SW_STATUS_FORMAT);  /* cut short */
  assert_int_equal(sw_serve_parse_infer(body, hl + sizeof x, 0, &s, &in), SW_STATUS_FORMAT); /* no header length */
}

static void test_feedback(void **state) {
  (void)state;
  sw_feedback_item *items;
  size_t n;
  const char *t = "{\"feedback\": [{\"id\": \"a\", \"label\": 3}, {\"id\": \"b\", \"label\": \"cat\"}, "
                  "{\"id\": \"c\", \"label\": [1, 0.5]}]}";
  assert_int_equal(sw_serve_parse_feedback(t, strlen(t), &items, &n), SW_STATUS_OK);
  assert_int_equal(n, 4);
  assert_string_equal(items[0].id, "a");
  assert_true(items[0].value == 3 && !items[0].is_name);
  assert_true(items[1].is_name && !strcmp(items[1].name, "cat"));
  assert_true(items[3].row == 1 && items[3].value == 0.5 && !strcmp(items[3].id, "c"));
  sw_feedback_items_free(items, n);
  t = "{\"feedback\": [{\"id\": \"a\"}]}";
  assert_int_equal(sw_serve_parse_feedback(t, strlen(t), &items, &n), SW_STATUS_FORMAT);
}

static void test_model_names(void **state) {
  (void)state;
  assert_true(sw_serve_name_valid("fashion-mnist_v2.1", 18));
  assert_false(sw_serve_name_valid("..", 2));
  assert_false(sw_serve_name_valid("-x", 2));
  assert_false(sw_serve_name_valid("a/b", 3));
  assert_false(sw_serve_name_valid("a:b", 3));
  assert_false(sw_serve_name_valid("", 0));
}

/* Strings and integers in responses are written as jansson writes them. */
static void test_encode_like_jansson(void **state) {
  (void)state;
  static const char *const strs[] = {"", "plain", "a\"b\\c/d", "\b\f\n\r\t\x01\x1f", "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80",
                                     "bad \xff", "cut \xe4\xb8", "\xed\xa0\x80", "x\x7f"};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    sw_buf b = {0};
    sw__put_string(&b, strs[i]);
    json_t *j = json_string(strs[i]);
    char *want = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    const char *w = want ? want : "\"\"";
    if (b.len != strlen(w) || memcmp(b.data, w, b.len)) fail_msg("string %zu: %.*s, jansson %s", i, (int)b.len, (const char *)b.data, w);
    free(want);
    json_decref(j);
    sw_buf_free(&b);
  }
  static const int64_t ints[] = {0, 7, -7, 1234567890123, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    char got[24], want[24];
    assert_int_equal(sw__fmt_int(got, ints[i]), (size_t)snprintf(want, sizeof want, "%lld", (long long)ints[i]));
    assert_string_equal(got, want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numbers_are_strtods), cmocka_unit_test(test_json_like_jansson), cmocka_unit_test(test_special_values),
      cmocka_unit_test(test_placeholder_cannot_be_forged), cmocka_unit_test(test_predict_shapes),
      cmocka_unit_test(test_infer_binary), cmocka_unit_test(test_feedback), cmocka_unit_test(test_model_names), cmocka_unit_test(test_encode_like_jansson),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
