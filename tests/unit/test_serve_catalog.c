/* The server's catalogs: the registry's default policy (production alias, else the latest
 * version that is not rejected or rolled back), labels from aliases, the change counter;
 * the file catalog's numbering, labels and policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slipway/registry.h"
#include "slipway/serve.h"

static char dir[256];

static void write_model(const char *path, float scale) {
  sw_graph *g = NULL;
  sw_node x, w, y;
  int64_t in_shape[2] = {-1, 4}, w_shape[2] = {4, 3};
  float wv[12];
  for (int i = 0; i < 12; i++) wv[i] = scale * (float)i;
  assert_int_equal(sw_graph_new(&g), SW_STATUS_OK);
  assert_int_equal(sw_graph_input(g, "x", SW_DTYPE_F32, 2, in_shape, &x), SW_STATUS_OK);
  assert_int_equal(sw_graph_const(g, "w", SW_DTYPE_F32, 2, w_shape, wv, &w), SW_STATUS_OK);
  sw_node ins[2] = {x, w};
  assert_int_equal(sw_graph_op(g, SW_OP_MATMUL, ins, 2, NULL, "y", &y), SW_STATUS_OK);
  assert_int_equal(sw_graph_alloc(g, 1), SW_STATUS_OK);
  assert_int_equal(sw_onnx_export(g, &y, 1, NULL, 0, path), SW_STATUS_OK);
  sw_graph_free(g);
}

static const sw_catalog_version *find(const sw_catalog_version *v, size_t n, const char *name, int64_t version) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].name, name) && v[i].version == version) return &v[i];
  fprintf(stderr, "no version %s:%lld in the list\n", name, (long long)version);
  abort();
}

static int64_t served(const sw_catalog_version *v, size_t n, const char *name) {
  int64_t s = 0;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].name, name) && v[i].serve) {
      assert_int_equal(s, 0); /* at most one per model */
      s = v[i].version;
    }
  return s;
}

static void test_registry_catalog(void **state) {
  (void)state;
  char model[300], db[300], home[300];
  snprintf(model, sizeof model, "%s/m.onnx", dir);
  snprintf(db, sizeof db, "%s/registry.db", dir);
  snprintf(home, sizeof home, "%s/home", dir);
  sw_registry *reg = NULL;
  assert_int_equal(sw_registry_open(db, home, &reg), SW_STATUS_OK);
  for (int i = 1; i <= 3; i++) {
    write_model(model, (float)i);
    sw_register_options o = {.name = "m", .onnx_path = model, .source = "test"};
    json_t *v = NULL;
    assert_int_equal(sw_registry_register(reg, &o, &v), SW_STATUS_OK);
    json_decref(v);
  }
  sw_catalog cat = {0};
  assert_int_equal(sw_registry_catalog_new(db, home, &cat), SW_STATUS_OK);
  uint64_t g0, g1;
  assert_int_equal(cat.ops->generation(cat.self, &g0), SW_STATUS_OK);
  sw_catalog_version *v = NULL;
  size_t n = 0;
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(n, 3);
  assert_int_equal(served(v, n, "m"), 3); /* the latest */
  const sw_catalog_version *v1 = find(v, n, "m", 1);
  assert_int_equal(strlen(v1->sha256), 64);
  char hex[SW_SHA256_HEX_LEN];
  assert_int_equal(sw_sha256_file_hex(v1->path, hex), SW_STATUS_OK);
  assert_string_equal(hex, v1->sha256);
  sw_catalog_versions_free(v, n);

  /* rejected and rolled back versions are passed over; the production alias wins */
  assert_int_equal(sw_registry_state_set(reg, "m", 3, "rejected", "test", "bad"), SW_STATUS_OK);
  assert_int_equal(cat.ops->generation(cat.self, &g1), SW_STATUS_OK);
  assert_true(g1 != g0);
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(served(v, n, "m"), 2);
  sw_catalog_versions_free(v, n);
  assert_int_equal(sw_registry_state_set(reg, "m", 2, "rolled_back", "test", "bad"), SW_STATUS_OK);
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(served(v, n, "m"), 1);
  sw_catalog_versions_free(v, n);
  assert_int_equal(sw_registry_alias_set(reg, "m", "production", 2, "test", "why"), SW_STATUS_OK);
  assert_int_equal(sw_registry_alias_set(reg, "m", "canary", 3, "test", "why"), SW_STATUS_OK);
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(served(v, n, "m"), 2);
  const sw_catalog_version *v3 = find(v, n, "m", 3);
  assert_true(v3->n_labels == 1 && !strcmp(v3->labels[0], "canary"));
  sw_catalog_versions_free(v, n);
  sw_catalog_close(&cat);
  sw_registry_close(reg);
}

static void test_file_catalog(void **state) {
  (void)state;
  char a[300], b[300];
  snprintf(a, sizeof a, "%s/a.onnx", dir);
  snprintf(b, sizeof b, "%s/b.onnx", dir);
  write_model(a, 1);
  write_model(b, 2);
  long live = sw_alloc_live();
  sw_catalog cat = {0};
  assert_int_equal(sw_file_catalog_new(&cat), SW_STATUS_OK);
  assert_int_equal(sw_file_catalog_add_file(&cat, "m", a), SW_STATUS_OK);
  assert_int_equal(sw_file_catalog_add_file(&cat, "m", b), SW_STATUS_OK);
  assert_int_equal(sw_file_catalog_add_file(&cat, "bad/name", a), SW_STATUS_INVALID);
  assert_int_equal(sw_file_catalog_add_label(&cat, "m", "canary", 9), SW_STATUS_NOT_FOUND);
  sw_catalog_version *v = NULL;
  size_t n = 0;
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(served(v, n, "m"), 2);
  const sw_catalog_version *f1 = find(v, n, "m", 1);
  assert_string_equal(f1->path, a);
  sw_catalog_versions_free(v, n);
  assert_int_equal(sw_file_catalog_add_label(&cat, "m", "production", 1), SW_STATUS_OK);
  assert_int_equal(sw_file_catalog_add_label(&cat, "m", "production", 2), SW_STATUS_INVALID);
  assert_int_equal(cat.ops->list(cat.self, &v, &n), SW_STATUS_OK);
  assert_int_equal(served(v, n, "m"), 1);
  sw_catalog_versions_free(v, n);
  sw_catalog_close(&cat);
  assert_int_equal(sw_alloc_live(), live);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/sw_test_serve_catalog_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return sw_remove_tree(dir) == SW_STATUS_OK ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_registry_catalog), cmocka_unit_test(test_file_catalog)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
