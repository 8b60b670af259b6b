/* libFuzzer target of the drift inputs (src/eval/drift.c) over JSON text: a request's
 * instance added to a window, or a stats.json turned into a reference; built with
 * SW_FUZZ=ON and, as replay_fuzz_drift, replayed over tests/fuzz/corpus/drift/ on every
 * test run. An instance is taken or refused as a whole; statistics stay finite and in
 * range; a stats file either gives a reference that judges windows or says why; nothing
 * leaks either way. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/eval.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static const char stats_text[] =
    "{\"version\": 1, \"splits\": {\"train\": {\"examples\": 100, \"features\": {"
    "\"x\": {\"type\": \"float\", \"count\": 100, \"quantiles\": [0, 0.1, 0.4, 0.9, 1.6, 2.5, 3.6, 4.9, 6.4, 8.1, 10]},"
    "\"image\": {\"type\": \"image\", \"count\": 100, \"quantiles\": [0, 0, 0, 0, 0, 0, 68, 136, 185, 217, 255]},"
    "\"color\": {\"type\": \"bytes\", \"count\": 100, \"top_values\": [{\"value\": \"red\", \"count\": 60},"
    " {\"value\": \"blue\", \"count\": 30}]},"
    "\"label\": {\"type\": \"int\", \"count\": 100, \"quantiles\": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]}}}}}";

static void judge(const sw_drift_window *w) {
  json_t *rep = NULL;
  CHECK(sw_drift_compute(w, NULL, &rep) == SW_STATUS_OK);
  const char *name;
  json_t *f;
  json_object_foreach(json_object_get(rep, "features"), name, f) {
    double psi = json_number_value(json_object_get(f, "psi")), js = json_number_value(json_object_get(f, "js"));
    CHECK(isfinite(psi) && psi >= -1e-12);
    CHECK(isfinite(js) && js >= 0 && js <= sqrt(log(2.0)) + 1e-9);
    json_t *p = json_object_get(f, "ks_p");
    if (p) CHECK(json_number_value(p) >= 0 && json_number_value(p) <= 1);
  }
  CHECK(json_is_boolean(json_object_get(rep, "drift")));
  json_decref(rep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  if (in && json_object_get(in, "splits")) {
    sw_drift_reference *ref = NULL;
    sw_status st = sw_drift_reference_from_stats(in, NULL, "label", &ref);
    CHECK(st ? ref == NULL && sw_last_error()[0] : ref != NULL);
    if (ref) {
      sw_drift_window *w = NULL;
      CHECK(sw_drift_window_new(ref, 4, &w) == SW_STATUS_OK);
      json_t *inst = json_loads("{\"x\": 1.5, \"image\": [0, 255, 3], \"color\": \"red\", \"c\": [\"v70\", \"zz\"]}", 0, NULL);
      for (int i = 0; i < 6; i++) sw_drift_window_add(w, inst);
      json_decref(inst);
      judge(w);
      sw_drift_window_free(w);
    }
    sw_drift_reference_free(ref);
  } else if (in) {
    json_t *stats = json_loads(stats_text, 0, NULL);
    sw_drift_reference *ref = NULL;
    sw_drift_window *w = NULL;
    CHECK(sw_drift_reference_from_stats(stats, NULL, "label", &ref) == SW_STATUS_OK);
    CHECK(sw_drift_window_new(ref, 3, &w) == SW_STATUS_OK);
    for (int i = 0; i < 4; i++) {
      int64_t before = sw_drift_window_records(w);
      sw_status st = sw_drift_window_add(w, in);
      CHECK(st == SW_STATUS_OK || st == SW_STATUS_INVALID);
      CHECK(sw_drift_window_records(w) == (st ? before : (before < 3 ? before + 1 : 3)));
    }
    judge(w);
    sw_drift_window_free(w);
    sw_drift_reference_free(ref);
    json_decref(stats);
  }
  json_decref(in);
  CHECK(sw_alloc_live() == live);
  return 0;
}
