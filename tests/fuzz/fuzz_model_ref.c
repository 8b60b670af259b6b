/* libFuzzer target of the registry's REF parser (NAME:VERSION, NAME@ALIAS;
 * src/registry/registry.c), which reads what users type after --model and in registry
 * commands; built with SW_FUZZ=ON and, as replay_fuzz_model_ref, replayed over
 * tests/fuzz/corpus/model_ref/ on every test run. A parsed REF must print back to
 * exactly the input; a refused one leaves the output zeroed. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "slipway/registry.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sw_model_ref ref;
  memset(&ref, 0x5a, sizeof ref);
  sw_status st = sw_model_ref_parse((const char *)data, size, &ref);
  if (st != SW_STATUS_OK) {
    CHECK(st == SW_STATUS_FORMAT);
    CHECK(ref.name[0] == 0 && ref.alias[0] == 0 && ref.version == 0);
    return 0;
  }
  CHECK(sw_model_name_valid(ref.name));
  CHECK((ref.alias[0] != 0) != (ref.version != 0));
  char back[2 * SW_MODEL_NAME_MAX + 32];
  int n = ref.alias[0] ? snprintf(back, sizeof back, "%s@%s", ref.name, ref.alias)
                       : snprintf(back, sizeof back, "%s:%lld", ref.name, (long long)ref.version);
  CHECK(n > 0 && (size_t)n == size && memcmp(back, data, size) == 0);
  if (ref.alias[0]) CHECK(sw_model_name_valid(ref.alias));
  else CHECK(ref.version >= 1 && ref.version <= (INT64_C(1) << 53));
  return 0;
}
