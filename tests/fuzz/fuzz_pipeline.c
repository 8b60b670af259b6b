/* libFuzzer target of the pipeline file's checks (src/pipeline/pipeline.c) over YAML text,
 * as `slipway pipeline run FILE` reads it; built with SW_FUZZ=ON and, as
 * replay_fuzz_pipeline, replayed over tests/fuzz/corpus/pipeline/ on every test run. A file
 * the checks accept gives no message; one they refuse names the file and a key; a --set
 * override on an accepted file is applied or refused without damage; nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/pipeline.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  json_t *doc = NULL;
  if (sw_yaml_parse((const char *)data, size, "fuzz", &doc) == SW_STATUS_OK) {
    char *err = NULL;
    sw_status st = sw_pipeline_check(doc, "fuzz.yaml", &err);
    if (st) {
      CHECK(st == SW_STATUS_INVALID || st == SW_STATUS_NOMEM);
      CHECK(err != NULL && !strncmp(err, "fuzz.yaml: ", 11));
    } else {
      CHECK(err == NULL);
      /* an override of a known key keeps the file valid */
      json_t *copy = json_deep_copy(doc);
      CHECK(copy != NULL);
      CHECK(sw_pipeline_set(copy, "stages.prep.seed=7", &err) == SW_STATUS_OK && err == NULL);
      if (json_object_get(json_object_get(copy, "stages"), "prep")) CHECK(sw_pipeline_check(copy, "fuzz.yaml", NULL) == SW_STATUS_OK);
      /* one of the wrong type does not */
      if (json_object_get(json_object_get(doc, "stages"), "train")) {
        CHECK(sw_pipeline_set(copy, "stages.train.epochs=many", &err) == SW_STATUS_OK);
        CHECK(sw_pipeline_check(copy, "fuzz.yaml", &err) == SW_STATUS_INVALID && err != NULL);
        CHECK(strstr(err, "stages.train.epochs") != NULL);
      }
      sw_free(err);
      err = NULL;
      CHECK(sw_pipeline_set(copy, "=x", &err) == SW_STATUS_INVALID && err != NULL);
      json_decref(copy);
    }
    sw_free(err);
    json_decref(doc);
  }
  sw_clear_error();
  CHECK(sw_alloc_live() == live);
  return 0;
}
