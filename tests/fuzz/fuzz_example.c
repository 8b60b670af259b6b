/* libFuzzer target of the tf.train.Example decoder (src/data/example.c); built with
 * SW_FUZZ=ON and, as replay_fuzz_example, replayed over tests/fuzz/corpus/example/ on
 * every test run. Whatever decodes must survive encode -> decode unchanged, bit for bit,
 * and encode to the same bytes the second time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/data.h"

#define CHECK(cond)                 \
  do {                              \
    if (!(cond)) __builtin_trap();  \
  } while (0)

static void check_same(const sw_example *a, const sw_example *b) {
  CHECK(a->n_features == b->n_features);
  for (size_t i = 0; i < a->n_features; i++) {
    const sw_feature *fa = &a->features[i];
    const sw_feature *fb = sw_example_find(b, fa->name);
    CHECK(fb != NULL);
    CHECK(fa->kind == fb->kind);
    CHECK(fa->count == fb->count);
    for (size_t k = 0; k < fa->count; k++) {
      switch (fa->kind) {
        case SW_FEATURE_KIND_BYTES:
          CHECK(fa->v.bytes[k].len == fb->v.bytes[k].len);
          CHECK(fa->v.bytes[k].len == 0 ||
                memcmp(fa->v.bytes[k].data, fb->v.bytes[k].data, fa->v.bytes[k].len) == 0);
          break;
        case SW_FEATURE_KIND_FLOAT: /* bitwise: NaN payloads and -0.0 included */
          CHECK(memcmp(&fa->v.f32[k], &fb->v.f32[k], sizeof(float)) == 0);
          break;
        case SW_FEATURE_KIND_INT64:
          CHECK(fa->v.i64[k] == fb->v.i64[k]);
          break;
        default:
          CHECK(0);
      }
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  sw_example first, second;
  if (sw_example_decode(data, size, &first) != SW_STATUS_OK) {
    CHECK(first.n_features == 0 && first.features == NULL);
    CHECK(sw_alloc_live() == live);
    return 0;
  }
  for (size_t i = 0; i < first.n_features; i++) {
    CHECK(first.features[i].name != NULL && first.features[i].name[0] != '\0');
    CHECK(first.features[i].kind >= SW_FEATURE_KIND_NONE &&
          first.features[i].kind <= SW_FEATURE_KIND_INT64);
  }
  sw_buf wire = {0}, wire2 = {0};
  CHECK(sw_example_encode(&first, &wire) == SW_STATUS_OK);
  CHECK(sw_example_decode(wire.data, wire.len, &second) == SW_STATUS_OK);
  check_same(&first, &second);
  check_same(&second, &first);
  CHECK(sw_example_encode(&second, &wire2) == SW_STATUS_OK);
  CHECK(wire.len == wire2.len && (wire.len == 0 || memcmp(wire.data, wire2.data, wire.len) == 0));
  sw_buf_free(&wire2);
  sw_buf_free(&wire);
  sw_example_clear(&second);
  sw_example_clear(&first);
  CHECK(sw_alloc_live() == live);
  return 0;
}
