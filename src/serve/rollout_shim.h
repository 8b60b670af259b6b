/* TEMPORARY: the rollout controller's API as fixed in the round's shared contract, until
 * the "stats" branch lands it in include/slipway/serve.h (src/serve/rollout.c). Deleted
 * at that merge together with rollout_shim.c. */
#ifndef SLIPWAY_ROLLOUT_SHIM_H
#define SLIPWAY_ROLLOUT_SHIM_H

#include "slipway/eval.h"
#include "slipway/serve.h"

typedef enum { SW_ROLLOUT_CANARY, SW_ROLLOUT_AB, SW_ROLLOUT_SHADOW } sw_rollout_mode;
typedef struct {
  sw_rollout_mode mode;
  int steps[16];
  size_t n_steps;
  int64_t min_requests_per_step;
  double max_step_seconds;
  double alpha;
  double slo_p99_ms;
  double slo_error_rate;
  bool quality;
} sw_rollout_config;
void sw_rollout_config_from_policy(const sw_policy *p, sw_rollout_mode mode, sw_rollout_config *out);

typedef struct sw_rollout sw_rollout;
sw_status sw_rollout_new(const sw_rollout_config *cfg, double now_s, sw_rollout **out);
void sw_rollout_free(sw_rollout *r);
bool sw_rollout_route(const sw_rollout *r, const char *user, size_t len, uint64_t key);
int sw_rollout_weight(const sw_rollout *r);
size_t sw_rollout_step(const sw_rollout *r);
const char *sw_rollout_state(const sw_rollout *r);
void sw_rollout_observe_request(sw_rollout *r, bool challenger, double latency_ms, bool error);
void sw_rollout_observe_label(sw_rollout *r, bool challenger, bool correct, int weight_at_request);
void sw_rollout_observe_shadow(sw_rollout *r, double incumbent_ms, bool incumbent_error, double challenger_ms,
                               bool challenger_error, bool outputs_differ);
void sw_rollout_observe_shadow_label(sw_rollout *r, bool incumbent_correct, bool challenger_correct);
typedef enum { SW_ROLLOUT_NONE, SW_ROLLOUT_ADVANCE, SW_ROLLOUT_HOLD, SW_ROLLOUT_ROLLBACK, SW_ROLLOUT_PROMOTE } sw_rollout_action;
sw_rollout_action sw_rollout_tick(sw_rollout *r, double now_s, char *reason, size_t reason_cap);
void sw_rollout_abort(sw_rollout *r, double now_s);
void sw_rollout_promote_now(sw_rollout *r, double now_s);
json_t *sw_rollout_evidence_json(const sw_rollout *r);
json_t *sw_rollout_save(const sw_rollout *r);
sw_status sw_rollout_restore(const sw_rollout_config *cfg, const json_t *saved, double now_s, sw_rollout **out);

#endif
