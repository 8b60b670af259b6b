/* The registry's store conformance suite: the same tests on SQLite (a file under /tmp)
 * and on PostgreSQL ($SW_TEST_PG_URL, a throwaway server that tests/postgres.sh starts
 * for ctest; a missing one fails the run, it never skips). Each backend gets a fresh
 * store per test. Covers migrations, references, registering, artifacts and tampering,
 * aliases with history and states, evaluations, the promotion record's alias check,
 * rollouts, the event log and change counter, and 8 threads registering at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/registry.h"

#include "registry_backends.h"

static int64_t reg_onnx(sw_registry *r, const char *name, const char *file) {
  sw_register_options o = {.name = name, .onnx_path = onnx_file(file), .source = "unit test", .code_version = "test 1"};
  json_t *v = NULL;
  sw_status st = sw_registry_register(r, &o, &v);
  if (st) fprintf(stderr, "register: %s\n", sw_last_error());
  assert_int_equal(st, SW_STATUS_OK);
  int64_t ver = json_integer_value(json_object_get(v, "version"));
  json_decref(v);
  return ver;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_open_migrates_once(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b), *again = open_reg(b);
  assert_int_equal(sw_registry_schema_version(r), 2);
  assert_int_equal(sw_registry_schema_version(again), 2);
  assert_string_equal(sw_registry_backend(r), b->pg ? "postgres" : "sqlite");
  int64_t c = -1;
  assert_int_equal(sw_registry_change_counter(r, &c), SW_STATUS_OK);
  assert_int_equal(c, 0);
  sw_registry_close(again);
  sw_registry_close(r);
  sw_registry_close(NULL);
  /* a registry written by a newer slipway is refused, not half-understood */
  const char *bump = "INSERT INTO schema_version (version, applied_at) VALUES (99, 'future')";
  if (b->pg) {
    PGconn *conn = PQconnectdb(b->url);
    PGresult *res = PQexec(conn, bump);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);
  } else {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(b->url, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, bump, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
  }
  assert_int_equal(sw_registry_open(b->url, b->home, &r), SW_STATUS_UNSUPPORTED);
  assert_null(r);
  assert_non_null(strstr(sw_last_error(), "newer than this slipway"));
}

static void test_refs(void **state) {
  (void)state;
  sw_model_ref m;
  assert_int_equal(sw_model_ref_parse("fm:12", 5, &m), SW_STATUS_OK);
  assert_string_equal(m.name, "fm");
  assert_int_equal(m.version, 12);
  assert_string_equal(m.alias, "");
  assert_int_equal(sw_model_ref_parse("a.b-c_d@prod-1", 14, &m), SW_STATUS_OK);
  assert_string_equal(m.name, "a.b-c_d");
  assert_string_equal(m.alias, "prod-1");
  assert_int_equal(m.version, 0);
  const char *bad[] = {"fm", "fm:", ":1", "fm:0", "fm:01", "fm:-1", "fm:1x", "fm@", "@p", "f m:1", "fm@a b", "-x:1",
                       "fm:99999999999999999", "fm:1:2", "fm@a@b", "fm@.x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(sw_model_ref_parse(bad[i], strlen(bad[i]), &m), SW_STATUS_FORMAT);
    assert_string_equal(m.name, "");
  }
  char longname[200];
  memset(longname, 'a', 129);
  strcpy(longname + 129, ":1");
  assert_int_equal(sw_model_ref_parse(longname, strlen(longname), &m), SW_STATUS_FORMAT);
  /* not NUL-terminated: only len bytes count */
  assert_int_equal(sw_model_ref_parse("fm:3garbage", 4, &m), SW_STATUS_OK);
  assert_int_equal(m.version, 3);
  assert_true(sw_model_ref_is_registry("fm@production"));
  assert_false(sw_model_ref_is_registry("/tmp"));
  assert_false(sw_model_ref_is_registry("run-dir"));
}

static void test_register_get_list(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  assert_int_equal(reg_onnx(r, "mlp", "mlp.onnx"), 1);
  assert_int_equal(reg_onnx(r, "mlp", "cnn.onnx"), 2);
  assert_int_equal(reg_onnx(r, "other", "mlp.onnx"), 1);
  json_t *v = NULL, *all = NULL;
  assert_int_equal(sw_registry_get_version(r, "mlp:2", &v), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(v, "state")), "registered");
  assert_string_equal(json_string_value(json_object_get(v, "ref")), "mlp:2");
  assert_string_equal(json_string_value(json_object_get(v, "source")), "unit test");
  assert_string_equal(json_string_value(json_object_get(v, "code_version")), "test 1");
  assert_true(json_is_null(json_object_get(v, "run")));
  char hex[SW_SHA256_HEX_LEN];
  assert_int_equal(sw_sha256_file_hex(onnx_file("cnn.onnx"), hex), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(json_object_get(v, "artifact"), "sha256")), hex);
  json_decref(v);
  assert_int_equal(sw_registry_list(r, NULL, &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 3);
  json_decref(all);
  assert_int_equal(sw_registry_list(r, "mlp", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 2);
  json_decref(all);
  assert_int_equal(sw_registry_get_version(r, "mlp:3", &v), SW_STATUS_NOT_FOUND);
  assert_non_null(strstr(sw_last_error(), "no version 3"));
  assert_int_equal(sw_registry_get_version(r, "nope:1", &v), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_get_version(r, "mlp@production", &v), SW_STATUS_NOT_FOUND);
  assert_non_null(strstr(sw_last_error(), "no alias 'production'"));
  /* a file the engine cannot load is not registered */
  sw_register_options o = {.name = "mlp", .onnx_path = onnx_file("bad_cycle.onnx")};
  assert_int_not_equal(sw_registry_register(r, &o, &v), SW_STATUS_OK);
  assert_null(v);
  o.onnx_path = onnx_file("mlp.onnx");
  o.name = "bad name";
  assert_int_equal(sw_registry_register(r, &o, &v), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_list(r, "mlp", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 2);
  json_decref(all);
  sw_registry_close(r);
}

static void test_artifact_tamper(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  uint8_t *data = NULL;
  size_t len = 0;
  json_t *v = NULL, *rep = NULL;
  assert_int_equal(sw_registry_load_artifact(r, "m:1", &data, &len, &v), SW_STATUS_OK);
  const char *sha = json_string_value(json_object_get(json_object_get(v, "artifact"), "sha256"));
  char *path = sw_asprintf("%s/artifacts/sha256/%.2s/%s", b->home, sha, sha);
  assert_string_equal(json_string_value(json_object_get(json_object_get(v, "artifact"), "path")), path);
  data[len / 2] ^= 1;
  assert_int_equal(sw_atomic_write(path, data, len), SW_STATUS_OK);
  sw_free(data);
  assert_int_equal(sw_registry_load_artifact(r, "m:1", &data, &len, NULL), SW_STATUS_CORRUPT);
  assert_null(data);
  assert_non_null(strstr(sw_last_error(), sha));
  assert_non_null(strstr(sw_last_error(), "expected sha256"));
  assert_int_equal(sw_registry_verify(r, &rep), SW_STATUS_OK);
  assert_int_equal(json_integer_value(json_object_get(rep, "checked")), 1);
  assert_int_equal(json_array_size(json_object_get(rep, "problems")), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(rep, "problems"), 0), "problem")), "corrupt");
  json_decref(rep);
  /* registering the same file again repairs the artifact */
  reg_onnx(r, "m", "mlp.onnx");
  assert_int_equal(sw_registry_verify(r, &rep), SW_STATUS_OK);
  assert_int_equal(json_array_size(json_object_get(rep, "problems")), 0);
  json_decref(rep);
  unlink(path);
  assert_int_equal(sw_registry_load_artifact(r, "m:2", &data, &len, NULL), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_verify(r, &rep), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(rep, "problems"), 0), "problem")), "missing");
  assert_int_equal(json_array_size(json_object_get(json_array_get(json_object_get(rep, "problems"), 0), "versions")), 2);
  json_decref(rep);
  sw_free(path);
  json_decref(v);
  sw_registry_close(r);
}

static void test_aliases_history_states(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  reg_onnx(r, "m", "mlp.onnx");
  int64_t before, after, v;
  assert_int_equal(sw_registry_change_counter(r, &before), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_set(r, "m", "production", 1, "alice", "first"), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_set(r, "m", "production", 2, "bob", "better"), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_set(r, "m", "staging", 1, "carol", "try"), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_set(r, "m", "production", 9, "bob", "nope"), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_alias_set(r, "m", "bad alias", 1, "bob", "nope"), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_change_counter(r, &after), SW_STATUS_OK);
  assert_true(after > before);
  assert_int_equal(sw_registry_alias_get(r, "m", "production", &v), SW_STATUS_OK);
  assert_int_equal(v, 2);
  assert_int_equal(sw_registry_alias_get(r, "m", "canary", &v), SW_STATUS_OK);
  assert_int_equal(v, 0);
  json_t *s1 = NULL, *s2 = NULL;
  assert_int_equal(sw_registry_show(r, "m:1", &s1), SW_STATUS_OK);
  assert_int_equal(sw_registry_show(r, "m@production", &s2), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(s1, "state")), "archived");
  assert_string_equal(json_string_value(json_object_get(s2, "state")), "production");
  const json_t *h = json_object_get(s1, "alias_history");
  assert_int_equal(json_array_size(h), 3); /* set to 1, moved 1 -> 2, staging set to 1 */
  assert_string_equal(json_string_value(json_object_get(json_array_get(h, 1), "who")), "bob");
  assert_string_equal(json_string_value(json_object_get(json_array_get(h, 1), "why")), "better");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 1), "from")), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 1), "to")), 2);
  assert_true(json_is_null(json_object_get(json_array_get(h, 0), "from")));
  json_decref(s1);
  json_decref(s2);
  assert_int_equal(sw_registry_state_set(r, "m", 2, "rolled_back", "ops", "incident"), SW_STATUS_OK);
  assert_int_equal(sw_registry_state_set(r, "m", 2, "weird", "ops", "x"), SW_STATUS_INVALID);
  json_t *ev = NULL;
  assert_int_equal(sw_registry_events(r, before, 0, &ev), SW_STATUS_OK);
  size_t moves = 0, i;
  json_t *e;
  json_array_foreach(ev, i, e) moves += !strcmp(json_string_value(json_object_get(e, "action")), "move");
  assert_int_equal(moves, 3);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, json_array_size(ev) - 1), "id")), after + 1);
  json_decref(ev);
  sw_registry_close(r);
}

static void test_evaluations_and_promotion_record(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  reg_onnx(r, "m", "mlp.onnx");
  json_t *ev = json_pack("{s:s, s:s, s:i, s:{s:f, s:f}, s:{s:{s:i, s:{s:f}}}}", "dataset", "ab", "split", "test", "examples", 100,
                         "metrics", "accuracy", 0.9, "log_loss", 0.3, "slices", "color=red", "examples", 40, "metrics", "accuracy", 0.8);
  assert_int_equal(sw_registry_evaluation_add(r, "m", 1, ev, "manual", "t"), SW_STATUS_OK);
  json_t *decision = json_pack("{s:b}", "passed", 1);
  int64_t c0, c1;
  assert_int_equal(sw_registry_change_counter(r, &c0), SW_STATUS_OK);
  /* judged against version 1 while the alias is unset: refused, nothing written */
  sw_registry_promotion p = {.name = "m", .version = 2, .alias = "production", .expect_version = 1, .candidate_eval = ev,
                             .baseline_eval = ev, .decision = decision, .passed = true, .new_state = "production",
                             .old_state = "archived", .who = "t", .why = "w"};
  assert_int_equal(sw_registry_promotion_record(r, &p), SW_STATUS_EXISTS);
  assert_int_equal(sw_registry_change_counter(r, &c1), SW_STATUS_OK);
  assert_int_equal(c0, c1);
  p.expect_version = 0;
  p.baseline_eval = NULL;
  assert_int_equal(sw_registry_promotion_record(r, &p), SW_STATUS_OK);
  int64_t v;
  assert_int_equal(sw_registry_alias_get(r, "m", "production", &v), SW_STATUS_OK);
  assert_int_equal(v, 2);
  json_t *s = NULL;
  assert_int_equal(sw_registry_show(r, "m:1", &s), SW_STATUS_OK);
  const json_t *evs = json_object_get(s, "evaluations");
  assert_int_equal(json_array_size(evs), 2); /* the split and one slice */
  bool slice_seen = false;
  size_t i;
  json_t *e;
  json_array_foreach(evs, i, e) if (json_is_string(json_object_get(e, "slice"))) {
    slice_seen = true;
    assert_string_equal(json_string_value(json_object_get(e, "slice")), "color=red");
    assert_int_equal(json_integer_value(json_object_get(e, "examples")), 40);
  }
  assert_true(slice_seen);
  json_decref(s);
  assert_int_equal(sw_registry_show(r, "m:2", &s), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(s, "state")), "production");
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(s, "evaluations"), 0), "context")),
                      "promote:candidate");
  json_decref(s);
  /* refused: the state changes, the alias does not */
  reg_onnx(r, "m", "mlp.onnx");
  p.version = 3;
  p.expect_version = 2;
  p.baseline_eval = ev;
  p.passed = false;
  p.new_state = "rejected";
  assert_int_equal(sw_registry_promotion_record(r, &p), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_get(r, "m", "production", &v), SW_STATUS_OK);
  assert_int_equal(v, 2);
  assert_int_equal(sw_registry_get_version(r, "m:3", &s), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(s, "state")), "rejected");
  json_decref(s);
  json_decref(decision);
  json_decref(ev);
  sw_registry_close(r);
}

static void test_rollouts(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  reg_onnx(r, "m", "mlp.onnx");
  json_t *spec = json_pack("{s:s, s:i, s:i, s:s, s:{s:[i,i]}}", "model", "m", "incumbent", 1, "challenger", 2, "mode", "canary",
                           "policy", "steps", 5, 100);
  int64_t id = 0, id2 = 0;
  assert_int_equal(sw_registry_rollout_create(r, spec, "t", &id), SW_STATUS_OK);
  assert_true(id > 0);
  json_t *ro = NULL;
  assert_int_equal(sw_registry_rollout_get(r, id, &ro), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(ro, "state")), "pending");
  assert_string_equal(json_string_value(json_object_get(ro, "mode")), "canary");
  assert_int_equal(json_integer_value(json_object_get(ro, "incumbent")), 1);
  assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(ro, "policy"), "steps"), 1)), 100);
  json_decref(ro);
  json_t *upd = json_pack("{s:s, s:f, s:i, s:[{s:s}]}", "state", "running", "weight", 0.05, "step", 1, "decisions", "action", "advance");
  assert_int_equal(sw_registry_rollout_update(r, id, upd, "ctl"), SW_STATUS_OK);
  assert_int_equal(sw_registry_rollout_get(r, id, &ro), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(ro, "state")), "running");
  assert_true(json_real_value(json_object_get(ro, "weight")) > 0.0499 && json_real_value(json_object_get(ro, "weight")) < 0.0501);
  assert_int_equal(json_integer_value(json_object_get(ro, "step")), 1);
  assert_int_equal(json_array_size(json_object_get(ro, "decisions")), 1);
  json_decref(ro);
  json_t *bad = json_pack("{s:s}", "model", "x");
  assert_int_equal(sw_registry_rollout_update(r, id, bad, "ctl"), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_rollout_update(r, id + 100, upd, "ctl"), SW_STATUS_NOT_FOUND);
  assert_int_equal(sw_registry_rollout_create(r, bad, "t", &id2), SW_STATUS_INVALID);
  json_decref(bad);
  json_object_set_new(spec, "mode", json_string("shadow"));
  assert_int_equal(sw_registry_rollout_create(r, spec, "t", &id2), SW_STATUS_OK);
  json_t *all = NULL;
  assert_int_equal(sw_registry_rollout_list(r, "m", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 0), "id")), id2); /* newest first */
  json_decref(all);
  assert_int_equal(sw_registry_rollout_list(r, "other", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), 0);
  json_decref(all);
  json_object_set_new(spec, "model", json_string("nomodel"));
  assert_int_equal(sw_registry_rollout_create(r, spec, "t", &id2), SW_STATUS_NOT_FOUND);
  json_decref(upd);
  json_decref(spec);
  sw_registry_close(r);
}

/* Events of their own (the monitor's alerts): appended with their detail, for a model
 * or none, and listed after the writes that preceded them. */
/* Decisions appended one by one: snapshots thinned past the bound (the first and the
 * newest kept), other decisions never; one event per decision, named by its action. */
static void test_rollout_append(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  reg_onnx(r, "m", "mlp.onnx");
  json_t *spec = json_pack("{s:s, s:i, s:i, s:s, s:s}", "model", "m", "incumbent", 1, "challenger", 2, "mode", "canary", "state",
                           "running");
  int64_t id = 0;
  assert_int_equal(sw_registry_rollout_create(r, spec, "t", &id), SW_STATUS_OK);
  json_t *d = json_pack("{s:s, s:i, s:i, s:s, s:{}}", "action", "start", "step", 0, "weight", 5, "reason", "go", "evidence");
  assert_int_equal(sw_registry_rollout_append(r, id, d, NULL, 10, "ctl"), SW_STATUS_OK);
  json_decref(d);
  for (int i = 0; i < 40; i++) {
    d = json_pack("{s:s, s:i, s:i, s:s, s:i}", "action", "snapshot", "step", 0, "weight", 5, "reason", "periodic", "n", i);
    assert_int_equal(sw_registry_rollout_append(r, id, d, NULL, 10, "ctl"), SW_STATUS_OK);
    json_decref(d);
  }
  d = json_pack("{s:s, s:i, s:i, s:s}", "action", "rollback", "step", 0, "weight", 0, "reason", "error_rate: worse");
  json_t *fields = json_pack("{s:s, s:i, s:i}", "state", "rolled_back", "weight", 0, "step", 0);
  int64_t before = 0, after = 0;
  assert_int_equal(sw_registry_change_counter(r, &before), SW_STATUS_OK);
  assert_int_equal(sw_registry_rollout_append(r, id, d, fields, 10, "ctl"), SW_STATUS_OK);
  assert_int_equal(sw_registry_change_counter(r, &after), SW_STATUS_OK);
  assert_int_equal(after, before + 1);
  json_t *ev = NULL;
  assert_int_equal(sw_registry_events(r, before, 0, &ev), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "rollback");
  assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "entity")), "rollout");
  json_decref(ev);
  json_t *ro = NULL;
  assert_int_equal(sw_registry_rollout_get(r, id, &ro), SW_STATUS_OK);
  assert_string_equal(json_string_value(json_object_get(ro, "state")), "rolled_back");
  const json_t *ds = json_object_get(ro, "decisions");
  size_t n_snap = 0;
  for (size_t i = 0; i < json_array_size(ds); i++)
    n_snap += !strcmp(json_string_value(json_object_get(json_array_get(ds, i), "action")), "snapshot");
  assert_true(n_snap >= 5 && n_snap <= 10);
  assert_string_equal(json_string_value(json_object_get(json_array_get(ds, 0), "action")), "start");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(ds, 1), "n")), 0);
  assert_string_equal(json_string_value(json_object_get(json_array_get(ds, json_array_size(ds) - 1), "action")), "rollback");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(ds, json_array_size(ds) - 2), "n")), 39);
  json_decref(ro);
  json_t *no_action = json_pack("{s:s}", "reason", "x");
  assert_int_equal(sw_registry_rollout_append(r, id, no_action, NULL, 10, "ctl"), SW_STATUS_INVALID);
  json_t *bad_field = json_pack("{s:s}", "policy", "x");
  assert_int_equal(sw_registry_rollout_append(r, id, d, bad_field, 10, "ctl"), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_rollout_append(r, id + 100, d, NULL, 10, "ctl"), SW_STATUS_NOT_FOUND);
  json_decref(no_action);
  json_decref(bad_field);
  json_decref(fields);
  json_decref(d);
  json_decref(spec);
  sw_registry_close(r);
}

static void test_event_add(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b);
  reg_onnx(r, "m", "mlp.onnx");
  int64_t before = 0, after = 0;
  assert_int_equal(sw_registry_change_counter(r, &before), SW_STATUS_OK);
  json_t *d = json_pack("{s:{s:s}, s:b}", "labels", "alertname", "SlipwayDataDrift", "delivered", 1);
  assert_int_equal(sw_registry_event_add(r, "monitor", "alert", "firing", "m", 1, d), SW_STATUS_OK);
  assert_int_equal(sw_registry_event_add(r, NULL, "alert", "resolved", NULL, 0, NULL), SW_STATUS_OK);
  assert_int_equal(sw_registry_event_add(r, "monitor", "", "firing", "m", 1, d), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_event_add(r, "monitor", "alert", NULL, "m", 1, d), SW_STATUS_INVALID);
  assert_int_equal(sw_registry_change_counter(r, &after), SW_STATUS_OK);
  assert_int_equal(after, before + 2);
  json_t *ev = NULL;
  assert_int_equal(sw_registry_events(r, before, 0, &ev), SW_STATUS_OK);
  assert_int_equal(json_array_size(ev), 2);
  const json_t *e0 = json_array_get(ev, 0), *e1 = json_array_get(ev, 1);
  assert_string_equal(json_string_value(json_object_get(e0, "entity")), "alert");
  assert_string_equal(json_string_value(json_object_get(e0, "action")), "firing");
  assert_string_equal(json_string_value(json_object_get(e0, "who")), "monitor");
  assert_string_equal(json_string_value(json_object_get(e0, "model")), "m");
  assert_int_equal(json_integer_value(json_object_get(e0, "version")), 1);
  assert_true(json_equal(json_object_get(e0, "detail"), d));
  assert_string_equal(json_string_value(json_object_get(e1, "action")), "resolved");
  assert_true(json_is_null(json_object_get(e1, "model")) || !json_object_get(e1, "model"));
  json_decref(ev);
  json_decref(d);
  sw_registry_close(r);
}

typedef struct {
  const backend *b;
  int64_t version;
  sw_status st;
} worker;

static void *register_worker(void *arg) {
  worker *w = arg;
  sw_registry *r = NULL;
  w->st = sw_registry_open(w->b->url, w->b->home, &r);
  json_t *v = NULL;
  sw_register_options o = {.name = "race", .onnx_path = onnx_file("mlp.onnx")};
  if (!w->st) w->st = sw_registry_register(r, &o, &v);
  w->version = json_integer_value(json_object_get(v, "version"));
  json_decref(v);
  sw_registry_close(r);
  return NULL;
}

static void test_concurrent_registration(void **state) {
  backend *b = *state;
  sw_registry *r = open_reg(b); /* create the schema first; migrations race in the integration test */
  enum { N = 8 };
  pthread_t t[N];
  worker w[N];
  for (int i = 0; i < N; i++) {
    w[i] = (worker){.b = b};
    assert_int_equal(pthread_create(&t[i], NULL, register_worker, &w[i]), 0);
  }
  bool seen[N + 1] = {false};
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].st, SW_STATUS_OK);
    assert_true(w[i].version >= 1 && w[i].version <= N);
    assert_false(seen[w[i].version]);
    seen[w[i].version] = true;
  }
  json_t *all = NULL;
  assert_int_equal(sw_registry_list(r, "race", &all), SW_STATUS_OK);
  assert_int_equal(json_array_size(all), N);
  json_decref(all);
  sw_registry_close(r);
}

/* The n-th allocation failing anywhere in open, register, show, lineage or verify: a
 * clean error (never a crash), nothing leaked, and the store still whole afterwards. */
static void test_allocation_failures(void **state) {
  backend *b = *state;
  sw_registry *seed = open_reg(b);
  reg_onnx(seed, "m", "mlp.onnx");
  sw_registry_close(seed);
  int failures = 0;
  for (long n = 1; n < 400; n++) {
    long before = sw_alloc_live();
    sw_alloc_fail_after(n);
    sw_registry *r = NULL;
    json_t *v = NULL, *s = NULL, *l = NULL, *rep = NULL;
    sw_register_options o = {.name = "m", .onnx_path = onnx_file("mlp.onnx")};
    sw_status st = sw_registry_open(b->url, b->home, &r);
    if (!st) st = sw_registry_register(r, &o, &v);
    if (!st) st = sw_registry_show(r, "m:1", &s);
    if (!st) st = sw_registry_lineage(r, "m@none", &l) == SW_STATUS_NOT_FOUND ? SW_STATUS_OK : SW_STATUS_NOMEM;
    if (!st) st = sw_registry_verify(r, &rep);
    json_t *ev = json_pack("{s:s, s:i, s:{s:f}, s:{s:{s:i, s:{s:f}}}}", "split", "test", "examples", 3, "metrics", "accuracy", 0.5,
                           "slices", "k=v", "examples", 1, "metrics", "accuracy", 1.0);
    json_t *spec = json_pack("{s:s, s:i, s:s}", "model", "m", "challenger", 1, "mode", "canary");
    int64_t id = 0;
    if (!st) st = sw_registry_alias_set(r, "m", n % 2 ? "production" : "staging", 1 + n % 2, "t", "why");
    if (!st) st = sw_registry_evaluation_add(r, "m", 1, ev, "manual", "t");
    if (!st) st = sw_registry_rollout_create(r, spec, "t", &id);
    if (!st) st = sw_registry_rollout_update(r, id, ev, "t") == SW_STATUS_INVALID ? SW_STATUS_OK : SW_STATUS_NOMEM;
    json_decref(ev);
    json_decref(spec);
    sw_alloc_fail_after(0);
    if (st) {
      if (st != SW_STATUS_NOMEM) fprintf(stderr, "allocation %ld: %s: %s\n", n, sw_status_name(st), sw_last_error());
      assert_int_equal(st, SW_STATUS_NOMEM);
      failures++;
    }
    json_decref(v);
    json_decref(s);
    json_decref(l);
    json_decref(rep);
    sw_registry_close(r);
    assert_int_equal(sw_alloc_live(), before);
    if (!st) break; /* every allocation on the path has failed once */
  }
  assert_true(failures > 10);
  sw_registry *r = open_reg(b);
  json_t *rep = NULL;
  assert_int_equal(sw_registry_verify(r, &rep), SW_STATUS_OK);
  assert_int_equal(json_array_size(json_object_get(rep, "problems")), 0);
  json_decref(rep);
  sw_registry_close(r);
}

static void test_bad_urls(void **state) {
  (void)state;
  sw_registry *r = NULL;
  assert_int_equal(sw_registry_open("postgres://nobody@127.0.0.1:1/none", "/tmp/sw_no_home", &r), SW_STATUS_IO);
  assert_null(r);
  assert_non_null(strstr(sw_last_error(), "cannot connect"));
  assert_int_equal(sw_registry_open("/proc/no/such/dir/registry.db", "/tmp/sw_no_home", &r) == SW_STATUS_OK, false);
  assert_null(r);
}

#define BOTH(fn)                                                       \
  cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &SQLITE), \
      cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &PG)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refs),
      cmocka_unit_test(test_bad_urls),
      BOTH(test_open_migrates_once),
      BOTH(test_register_get_list),
      BOTH(test_artifact_tamper),
      BOTH(test_aliases_history_states),
      BOTH(test_evaluations_and_promotion_record),
      BOTH(test_rollouts),
      BOTH(test_rollout_append),
      BOTH(test_event_add),
      BOTH(test_concurrent_registration),
      BOTH(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
