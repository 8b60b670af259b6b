/* The dashboard's server side without a server: the reader of the /metrics text that
 * /api/v1/serving is built from (labels with escapes, values that JSON cannot hold left
 * out, malformed lines skipped), and the compiled-in pages (content types, ETag and 304,
 * relative redirects, nothing but the compiled-in names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/serve_int.h"

static void test_prom_parse(void **state) {
  (void)state;
  static const char text[] =
      "# HELP slipway_requests_total Requests.\n"
      "# TYPE slipway_requests_total counter\n"
      "slipway_requests_total{model=\"fm\",version=\"1\",api=\"predict\",code=\"200\"} 20\n"
      "slipway_requests_total{model=\"fm\",version=\"1\",api=\"predict\",code=\"429\"} 2\n"
      "slipway_drift_psi{model=\"fm\",feature=\"a \\\"b\\\" \\\\ c\\nd\"} 0.25\n"
      "slipway_nan{a=\"b\"} NaN\n"
      "slipway_inf +Inf\n"
      "broken{a=b} 1\n"
      "unterminated{a=\"b 1\n"
      "   \n"
      "slipway_ready 1\n"
      "slipway_stamped{x=\"y\"} -3.5 1700000000\n";
  json_t *f = sw__prom_parse(text, sizeof text - 1);
  assert_non_null(f);
  assert_int_equal(json_object_size(f), 4);
  json_t *req = json_object_get(f, "slipway_requests_total");
  assert_int_equal(json_array_size(req), 2);
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(req, 1), "labels"), "code")), "429");
  assert_true(json_number_value(json_object_get(json_array_get(req, 0), "value")) == 20.0);
  json_t *psi = json_array_get(json_object_get(f, "slipway_drift_psi"), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(psi, "labels"), "feature")), "a \"b\" \\ c\nd");
  assert_true(json_number_value(json_object_get(psi, "value")) == 0.25);
  assert_null(json_object_get(f, "slipway_nan"));
  assert_null(json_object_get(f, "slipway_inf"));
  assert_null(json_object_get(f, "broken"));
  assert_null(json_object_get(f, "unterminated"));
  assert_int_equal(json_object_size(json_object_get(json_array_get(json_object_get(f, "slipway_ready"), 0), "labels")), 0);
  assert_true(json_number_value(json_object_get(json_array_get(json_object_get(f, "slipway_stamped"), 0), "value")) == -3.5);
  json_decref(f);
}

static const sw__ui_asset *asset(const char *name) {
  for (size_t i = 0; i < sw__ui_n_assets; i++)
    if (!strcmp(sw__ui_assets[i].name, name)) return &sw__ui_assets[i];
  return NULL;
}

static void test_pages(void **state) {
  (void)state;
  const sw__ui_asset *index = asset("index.html");
  assert_non_null(index);
  assert_non_null(asset("app.js"));
  assert_non_null(asset("chart.js"));
  assert_non_null(asset("app.css"));
  sw__reply r;
  sw__ui_answer("/ui/", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.content_type, "text/html; charset=utf-8");
  assert_int_equal(r.body.len, index->len);
  assert_memory_equal(r.body.data, index->data, index->len);
  assert_int_equal(strlen(r.etag), 34);
  assert_string_equal(r.cache_control, "no-cache");
  char etag[80];
  strcpy(etag, r.etag);
  sw_buf_free(&r.body);
  sw__ui_answer("/ui/index.html", etag, &r); /* the same file by name: unchanged */
  assert_int_equal(r.status, 304);
  assert_int_equal(r.body.len, 0);
  sw__ui_answer("/ui/app.js", etag, &r); /* another file's tag does not match */
  assert_int_equal(r.status, 200);
  assert_string_equal(r.content_type, "text/javascript; charset=utf-8");
  sw_buf_free(&r.body);
  sw__ui_answer("/ui/app.css", NULL, &r);
  assert_string_equal(r.content_type, "text/css; charset=utf-8");
  sw_buf_free(&r.body);
  static const char *const missing[] = {"/ui/nope.js", "/ui/../CMakeLists.txt", "/ui//index.html", "/uix", "/ui/app.js/"};
  for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
    sw__ui_answer(missing[i], NULL, &r);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.etag[0], '\0');
    sw_buf_free(&r.body);
  }
  sw__ui_answer("/ui", NULL, &r);
  assert_int_equal(r.status, 301);
  assert_string_equal(r.location, "ui/"); /* relative: right under any path prefix */
  sw_buf_free(&r.body);
  sw__ui_answer("/", NULL, &r);
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "ui/");
  sw_buf_free(&r.body);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_prom_parse), cmocka_unit_test(test_pages)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
