/* The model server's body parsers: the fast number path gives strtod's values for every
 * literal form (and jansson's for integers), falls back to jansson where it must, and the
 * predict / infer / feedback shapes are read as documented. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slipway/serve.h"

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
        double got = a ? a->v[i] : json_number_value(json_array_get(b.root, (size_t)i));
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

static void test_special_values(void **state) {
  (void)state;
  sw_body b;
  const char *t = "{\"a\": [-0, -0.0, 1e-400, NaN, Infinity, -Infinity], \"b\": NaN, \"c\": [[1, 2], [3, 4], [5, 6]]}";
  assert_int_equal(sw_body_parse(t, strlen(t), &b), SW_STATUS_OK);
  const sw_numarr *a = sw_body_numarr(&b, json_object_get(b.root, "a"));
  assert_non_null(a);
  assert_false(signbit(a->v[0])); /* jansson reads -0 as the integer 0 */
  assert_true(signbit(a->v[1]) && a->v[1] == 0);
  assert_true(a->v[2] == 0);
  assert_true(isnan(a->v[3]) && a->v[4] == INFINITY && a->v[5] == -INFINITY);
  assert_false(a->all_int);
  const sw_numarr *nan = sw_body_numarr(&b, json_object_get(b.root, "b"));
  assert_true(nan && nan->rank == 0 && isnan(nan->v[0]));
  const sw_numarr *c = sw_body_numarr(&b, json_object_get(b.root, "c"));
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numbers_are_strtods), cmocka_unit_test(test_special_values),
      cmocka_unit_test(test_placeholder_cannot_be_forged), cmocka_unit_test(test_predict_shapes),
      cmocka_unit_test(test_infer_binary), cmocka_unit_test(test_feedback), cmocka_unit_test(test_model_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
