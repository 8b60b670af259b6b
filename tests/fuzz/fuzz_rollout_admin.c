/* libFuzzer target of the body of POST /admin/rollouts (src/serve/rollout_srv.c): the
 * JSON, its model, challenger and mode, and the policy with the server's own keys
 * (user_header, ab, keep_previous_minutes, alias) through sw_policy_from_json. Built with
 * SW_FUZZ=ON and, as replay_fuzz_rollout_admin, replayed over
 * tests/fuzz/corpus/rollout_admin/ on every test run. Without a registry every body is
 * answered 400 (it says why) or 409 (a good body: rollouts need the registry), never
 * anything else, always with an error message; nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sw__rollouts *rs;
  static sw_serve_config cfg;
  if (!rs) {
    sw_serve_config_default(&cfg);
    CHECK(sw__rollouts_new(&cfg, NULL, NULL, &rs) == SW_STATUS_OK);
  }
  json_t *answer = NULL;
  int code = sw__rollouts_admin(rs, "POST", "", "", (const char *)data, size, &answer);
  CHECK(code == 400 || code == 409);
  CHECK(json_is_string(json_object_get(answer, "error")));
  CHECK(strlen(json_string_value(json_object_get(answer, "error"))) > 0);
  json_decref(answer);
  return 0;
}
