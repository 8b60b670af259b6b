/* libFuzzer target of the dashboard's reader of the Prometheus text exposition
 * (sw__prom_parse in src/serve/api.c), which turns what /metrics renders back into JSON
 * for /api/v1/serving; label values come from model names, datasets' feature names and
 * alert labels, so it is fuzzed like any parser. Built with SW_FUZZ=ON and, as
 * replay_fuzz_prom_text, replayed over tests/fuzz/corpus/prom_text/. Every sample kept has
 * a finite value and string labels; nothing leaks. */
#include <math.h>
#include <stdint.h>

#include "serve/serve_int.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *fams = sw__prom_parse((const char *)data, size);
  CHECK(json_is_object(fams));
  const char *name;
  json_t *list;
  json_object_foreach(fams, name, list) {
    CHECK(json_is_array(list) && json_array_size(list) > 0);
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
      CHECK(isfinite(json_number_value(json_object_get(s, "value"))));
      const char *k;
      json_t *v;
      json_object_foreach(json_object_get(s, "labels"), k, v) CHECK(json_is_string(v));
    }
  }
  json_decref(fams);
  return 0;
}
