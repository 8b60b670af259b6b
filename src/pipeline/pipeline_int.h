/* The pipeline's own header: what pipeline.c and the rollout client share. */
#ifndef SLIPWAY_PIPELINE_INT_H
#define SLIPWAY_PIPELINE_INT_H

#include "slipway/pipeline.h"

/* The index of a stage name in sw_pipeline_stage_names, or -1. */
int sw__pipeline_stage_index(const char *name);

/* A canary (A/B, shadow) rollout on a running server, through its admin API. */
typedef struct {
  const char *server;      /* http://HOST:PORT */
  const char *token_file;  /* NULL: $SLIPWAY_ADMIN_TOKEN, else HOME/admin.token */
  const char *home;
  const char *model;
  int64_t challenger;
  const char *mode;
  const json_t *policy;    /* the rollout settings (the policy file's rollout section) */
  double timeout_s;        /* how long to wait for a decision */
  double poll_s;           /* between looks */
  volatile int *stop;
} sw__rollout_request;

/* POSTs /admin/rollouts (or, when the server already runs a rollout of this challenger,
 * follows that one), then polls GET /admin/rollouts/{model} until the state is promoted,
 * rolled_back or aborted. OK when promoted; REFUSED when rolled back or aborted (the last
 * decision's reason in sw_last_error()); IO when the server cannot be reached or gives no
 * decision in time. *record (caller owns; NULL when the server never answered with one)
 * is the rollout record last seen. */
sw_status sw__rollout_run(const sw__rollout_request *rq, json_t **record);

#endif
