/* The registry's pipeline executions (ML Metadata's executions), on SQLite and on
 * PostgreSQL ($SW_TEST_PG_URL from tests/postgres.sh, as test_registry): start and end,
 * the cache lookup (newest complete with the key, of one pipeline or any), the list, the
 * events, lineage's executions, and the refusals (bad states, ending twice). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/registry.h"

#define KEY_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

#include "registry_backends.h"

static int64_t start(sw_registry *r, const char *pipeline, const char *stage, const char *key, const char *state,
                     const json_t *outputs) {
  json_t *in = json_pack("{s:s}", "model", "sha-of-model");
  sw_registry_execution e = {.pipeline = pipeline, .stage = stage, .cache_key = key, .state = state, .inputs = in,
                             .outputs = outputs, .who = "unit"};
  int64_t id = 0;
  sw_status st = sw_registry_execution_start(r, &e, &id);
  if (st) fprintf(stderr, "start: %s\n", sw_last_error());
  assert_int_equal(st, SW_STATUS_OK);
  assert_true(id > 0);
  json_decref(in);
  return id;
}

static void test_executions(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  assert_int_equal(sw_registry_schema_version(r), 2);
  json_t *found = NULL, *all = NULL, *out = json_pack("{s:s, s:s}", "run", "/r", "params_sha256", "p1");

  /* nothing yet */
  assert_int_equal(sw_registry_execution_find(r, "pl", "train", KEY_A, &found), SW_STATUS_NOT_FOUND);
  assert_null(found);

  int64_t a = start(r, "pl", "train", KEY_A, "running", NULL);
  /* running is not a cache hit */
  assert_int_equal(sw_registry_execution_find(r, "pl", "train", KEY_A, &found), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_execution_end(r, a, "complete", out, NULL, "unit"), SW_STATUS_OK);
  /* ending twice, or to a state that is not an end, is refused */
  assert_int_equal(sw_registry_execution_end(r, a, "failed", NULL, "x", "unit"), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_execution_end(r, a, "cached", NULL, NULL, "unit"), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_execution_end(r, 9999, "complete", NULL, NULL, "unit"), SW_STATUS_NOT_FOUND);

  assert_int_equal(sw_registry_execution_find(r, "pl", "train", KEY_A, &found), SW_STATUS_OK);
  assert_int_equal(json_integer_value(json_object_get(found, "id")), a);
  assert_string_equal(json_string_value(json_object_get(found, "state")), "complete");
  assert_true(json_equal(json_object_get(found, "outputs"), out));
  assert_string_equal(json_string_value(json_object_get(json_object_get(found, "inputs"), "model")), "sha-of-model");
  assert_int_equal(json_integer_value(json_object_get(found, "pid")), (json_int_t)getpid());
  assert_true(json_is_string(json_object_get(found, "ended_at")));
  json_decref(found);
  /* another pipeline finds it only when it asks for any pipeline's; another key never */
  assert_int_equal(sw_registry_execution_find(r, "other", "train", KEY_A, &found), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_execution_find(r, NULL, "train", KEY_A, &found), SW_STATUS_OK);
  json_decref(found);
  assert_int_equal(sw_registry_execution_find(r, NULL, "train", KEY_B, &found), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_execution_find(r, NULL, "eval", KEY_A, &found), SW_STATUS_NOT_FOUND);

  /* a failed one with the same key does not replace the complete one */
  int64_t f = start(r, "pl", "train", KEY_A, "running", NULL);
  assert_int_equal(sw_registry_execution_end(r, f, "failed", NULL, "the model file does not load", "unit"), SW_STATUS_OK);
  assert_int_equal(sw_registry_execution_find(r, "pl", "train", KEY_A, &found), SW_STATUS_OK);
  assert_int_equal(json_integer_value(json_object_get(found, "id")), a);
  json_decref(found);
  int64_t c = start(r, "pl", "train", KEY_A, "cached", out);

  assert_int_equal(sw_registry_executions(r, "pl", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 3);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 0), "id")), c); /* newest first */
  assert_string_equal(json_string_value(json_object_get(json_array_get(all, 0), "state")), "cached");
  assert_string_equal(json_string_value(json_object_get(json_array_get(all, 1), "error")), "the model file does not load");
  json_decref(all);
  assert_int_equal(sw_registry_executions(r, "nope", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 0);
  json_decref(all);

  /* events: start, complete, start, failed, cached */
  assert_int_equal(sw_registry_events(r, 0, 0, &all), SW_STATUS_OK);
  const char *want[] = {"start", "complete", "start", "failed", "cached"};
  assert_int_equal(json_array_size(all), 5);
  for (size_t i = 0; i < 5; i++) {
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, i), "entity")), "execution");
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, i), "action")), want[i]);
  }
  json_decref(all);

  /* bad input */
  sw_registry_execution bad = {.pipeline = "pl", .stage = "train", .cache_key = KEY_A, .state = "complete", .inputs = out};
  int64_t id = 0;
  assert_int_equal(sw_registry_execution_start(r, &bad, &id), SW_STATUS_INVALID);
  bad.state = "running";
  bad.cache_key = "";
  assert_int_equal(sw_registry_execution_start(r, &bad, &id), SW_STATUS_INVALID);
  bad.cache_key = KEY_A;
  bad.inputs = NULL;
  assert_int_equal(sw_registry_execution_start(r, &bad, &id), SW_STATUS_INVALID);
  assert_int_equal(id, 0);
  json_decref(out);
  sw_registry_close(r);
}

/* lineage lists the executions of a version's dataset (prep), run and the version itself */
static void test_lineage_executions(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  sw_register_options o = {.name = "m_x", .onnx_path = onnx_file("mlp.onnx"), .source = "unit test", .code_version = "t"};
  json_t *v = NULL, *lin = NULL;
  sw_status st = sw_registry_register(r, &o, &v);
  if (st) fprintf(stderr, "register: %s\n", sw_last_error());
  assert_int_equal(st, SW_STATUS_OK);
  json_t *reg_out = json_pack("{s:s}", "ref", "m_x:1"), *other = json_pack("{s:s}", "ref", "m_x:10");
  int64_t e1 = start(r, "pl", "register", KEY_A, "running", NULL);
  assert_int_equal(sw_registry_execution_end(r, e1, "complete", reg_out, NULL, "unit"), SW_STATUS_OK);
  int64_t e2 = start(r, "pl", "register", KEY_B, "running", NULL);
  assert_int_equal(sw_registry_execution_end(r, e2, "complete", other, NULL, "unit"), SW_STATUS_OK);
  assert_int_equal(sw_registry_lineage(r, "m_x:1", &lin), SW_STATUS_OK);
  json_t *ex = json_object_get(lin, "executions");
  assert_int_equal(json_array_size(ex), 1); /* not m_x:10's: the ref is matched whole */
  assert_int_equal(json_integer_value(json_object_get(json_array_get(ex, 0), "id")), e1);
  /* the end event is filed under the version */
  json_t *shown = NULL;
  assert_int_equal(sw_registry_show(r, "m_x:1", &shown), SW_STATUS_OK);
  bool seen = false;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(shown, "events"), i, e) seen |= !strcmp(json_string_value(json_object_get(e, "entity")), "execution");
  assert_true(seen);
  json_decref(shown);
  json_decref(lin);
  json_decref(v);
  json_decref(reg_out);
  json_decref(other);
  sw_registry_close(r);
}

#define BOTH(fn)                                                            \
  cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &SQLITE), \
      cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &PG)

int main(void) {
  const struct CMUnitTest tests[] = {BOTH(test_executions), BOTH(test_lineage_executions)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
