/* libFuzzer target of the rollout controller's saved state (src/serve/rollout.c's
 * sw_rollout_restore, src/eval/sequential.c's sw_seq_restore), which the server reads
 * back from the registry; built with SW_FUZZ=ON and, as replay_fuzz_rollout, replayed
 * over tests/fuzz/corpus/rollout/ on every test run. A state that restores must keep
 * working (observations, ticks, evidence) and survive another save/restore unchanged;
 * one that does not must say why; nothing leaks either way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/serve.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  json_t *saved = json_loadb((const char *)data, size, 0, NULL);
  if (!saved) return 0;
  sw_rollout_config cfg;
  sw_rollout_config_from_policy(NULL, SW_ROLLOUT_CANARY, &cfg);
  cfg.slo_p99_ms = 50;
  cfg.slo_error_rate = 0.01;
  for (int mode = 0; mode < 2; mode++) {
    cfg.mode = mode ? SW_ROLLOUT_SHADOW : SW_ROLLOUT_CANARY;
    sw_rollout *r = NULL;
    sw_status st = sw_rollout_restore(&cfg, saved, 100, &r);
    if (st) {
      CHECK(r == NULL);
      CHECK(sw_last_error()[0] != '\0');
      continue;
    }
    int w = sw_rollout_weight(r);
    CHECK(w >= 0 && w <= 100);
    for (int i = 0; i < 50; i++) {
      sw_rollout_observe_request(r, i % 3 == 0, 5 + i, i % 7 == 0);
      sw_rollout_observe_label(r, i % 3 == 0, i % 5 != 0, w);
      sw_rollout_observe_shadow(r, 5 + i, i % 11 == 0, 6 + i, i % 7 == 0, i % 2 == 0);
      sw_rollout_observe_shadow_label(r, i % 4 != 0, i % 5 != 0);
    }
    char reason[512];
    sw_rollout_action a = sw_rollout_tick(r, 1e9, reason, sizeof reason);
    CHECK(a >= SW_ROLLOUT_NONE && a <= SW_ROLLOUT_PROMOTE);
    json_t *ev = sw_rollout_evidence_json(r);
    CHECK(ev != NULL);
    json_decref(ev);
    json_t *s1 = sw_rollout_save(r);
    CHECK(s1 != NULL);
    sw_rollout *r2 = NULL;
    CHECK(sw_rollout_restore(&cfg, s1, 1e9, &r2) == SW_STATUS_OK);
    json_t *s2 = sw_rollout_save(r2);
    CHECK(json_equal(s1, s2));
    json_decref(s1);
    json_decref(s2);
    sw_rollout_free(r2);
    sw_rollout_free(r);
  }
  json_decref(saved);
  CHECK(sw_alloc_live() == live);
  return 0;
}
