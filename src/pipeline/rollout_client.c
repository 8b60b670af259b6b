/* The pipeline's rollout stage as a client of the server's admin API (DESIGN.md): start
 * a rollout of the registered version, then watch its record until the controller has
 * decided. The decision is the server's; this only asks and waits. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/pipeline_int.h"

static size_t collect(char *data, size_t size, size_t n, void *ctx) {
  return sw_buf_append(ctx, data, size * n) ? 0 : size * n;
}

/* One request; *status is the HTTP status (0 when nothing came back), *body the answer
 * parsed as JSON (NULL when it is not). */
static sw_status http(const char *method, const char *url, const char *token, const json_t *body, long *status, json_t **answer) {
  *status = 0;
  *answer = NULL;
  CURL *c = curl_easy_init();
  if (!c) return sw_error(SW_STATUS_NOMEM, "curl_easy_init failed");
  sw_buf got = {0};
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  char *auth = sw_asprintf("Authorization: Bearer %s", token);
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  h = curl_slist_append(h, auth ? auth : "");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (text) curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
  CURLcode rc = curl_easy_perform(c);
  sw_status st = SW_STATUS_OK;
  if (rc != CURLE_OK) st = sw_error(SW_STATUS_IO, "%s %s: %s", method, url, curl_easy_strerror(rc));
  else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (got.len) *answer = json_loadb((const char *)got.data, got.len, 0, NULL);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  sw_buf_free(&got);
  free(text);
  sw_free(auth);
  return st;
}

/* The admin token: the file named, else $SLIPWAY_ADMIN_TOKEN, else HOME/admin.token. */
static sw_status read_token(const sw__rollout_request *rq, char **token) {
  *token = NULL;
  const char *env = getenv("SLIPWAY_ADMIN_TOKEN");
  if (!rq->token_file && env && *env) {
    *token = sw_strdup(env);
    return *token ? SW_STATUS_OK : SW_STATUS_NOMEM;
  }
  char *path = rq->token_file ? sw_strdup(rq->token_file) : sw_path_join(rq->home, "admin.token");
  uint8_t *data = NULL;
  size_t len = 0;
  sw_status st = path ? sw_read_file(path, &data, &len) : SW_STATUS_NOMEM;
  if (st) sw_error_prefix(st, "the admin token (rollout.token_file, $SLIPWAY_ADMIN_TOKEN or %s): ", path ? path : "?");
  while (!st && len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) data[--len] = '\0';
  if (!st && !len) st = sw_error(SW_STATUS_INVALID, "the admin token file %s is empty", path);
  if (!st) *token = (char *)data;
  else sw_free(data);
  sw_free(path);
  return st;
}

static const char *answer_error(const json_t *a) {
  const char *e = json_string_value(json_object_get(a, "error"));
  return e ? e : "no reason given";
}

/* The record in an answer: the object itself, or its "rollout" member. */
static json_t *record_of(json_t *a) {
  json_t *inner = json_object_get(a, "rollout");
  return json_is_object(inner) ? inner : a;
}

static bool decided(const char *state) {
  return state && (!strcmp(state, "promoted") || !strcmp(state, "rolled_back") || !strcmp(state, "aborted"));
}

sw_status sw__rollout_run(const sw__rollout_request *rq, json_t **record) {
  *record = NULL;
  char *token = NULL, *start_url = NULL, *get_url = NULL;
  json_t *answer = NULL;
  long status = 0;
  sw_status st = read_token(rq, &token);
  if (st) goto out;
  start_url = sw_asprintf("%s/admin/rollouts", rq->server);
  get_url = sw_asprintf("%s/admin/rollouts/%s", rq->server, rq->model);
  if (!start_url || !get_url) {
    st = SW_STATUS_NOMEM;
    goto out;
  }
  json_t *body = json_pack("{s:s, s:I, s:s, s:O}", "model", rq->model, "challenger", (json_int_t)rq->challenger, "mode", rq->mode,
                           "policy", rq->policy);
  st = http("POST", start_url, token, body, &status, &answer);
  json_decref(body);
  if (st) goto out;
  if (status == 409) {
    /* 409 is also "refused" (a gate rejected the challenger), "already what the alias
     * names", "no alias", "no registry": only a rollout of this challenger that is still
     * running is followed (a pipeline run again after it was interrupted while waiting) */
    char why[512];
    snprintf(why, sizeof why, "%s", answer_error(answer));
    bool refused = json_is_true(json_object_get(answer, "refused"));
    json_decref(answer);
    answer = NULL;
    if (refused) {
      st = sw_error(SW_STATUS_REFUSED, "the server refused the rollout of %s:%lld: %s", rq->model,
                    (long long)rq->challenger, why);
      goto out;
    }
    st = http("GET", get_url, token, NULL, &status, &answer);
    if (st) goto out;
    const json_t *rec = record_of(answer);
    const char *state = json_string_value(json_object_get(rec, "state"));
    bool running = state && (!strcmp(state, "running") || !strcmp(state, "holding"));
    if (status != 200 || !running || json_integer_value(json_object_get(rec, "challenger")) != rq->challenger) {
      st = sw_error(SW_STATUS_IO, "the server answered 409 to the rollout of %s:%lld: %s", rq->model,
                    (long long)rq->challenger, why);
      goto out;
    }
    SW_INFO("rollout: following the rollout of %s:%lld the server already runs", rq->model, (long long)rq->challenger);
  } else if (status != 200 && status != 201) {
    st = sw_error(SW_STATUS_IO, "POST %s: HTTP %ld: %s", start_url, status, answer_error(answer));
    goto out;
  } else {
    SW_INFO("rollout: %s:%lld started (%s), rollout %lld", rq->model, (long long)rq->challenger, rq->mode,
            (long long)json_integer_value(json_object_get(record_of(answer), "id")));
  }
  double t0 = sw_now(), last_note = 0;
  for (;;) {
    json_t *rec = record_of(answer);
    const char *state = json_string_value(json_object_get(rec, "state"));
    json_decref(*record);
    *record = json_incref(rec);
    if (decided(state)) break;
    if (rq->stop && *rq->stop) {
      st = sw_error(SW_STATUS_PREEMPTED, "stopped while waiting for the rollout of %s:%lld (it goes on on the server)", rq->model,
                    (long long)rq->challenger);
      goto out;
    }
    if (sw_now() - t0 > rq->timeout_s) {
      st = sw_error(SW_STATUS_IO, "no decision on %s:%lld within %.0f s (state %s, weight %g%%)", rq->model, (long long)rq->challenger,
                    rq->timeout_s, state ? state : "?", json_number_value(json_object_get(rec, "weight")));
      goto out;
    }
    if (sw_now() - last_note >= 10) {
      SW_INFO("rollout: %s:%lld %s at %g%% (step %lld)", rq->model, (long long)rq->challenger, state ? state : "?",
              json_number_value(json_object_get(rec, "weight")), (long long)json_integer_value(json_object_get(rec, "step")));
      last_note = sw_now();
    }
    usleep((useconds_t)(rq->poll_s * 1e6));
    json_decref(answer);
    answer = NULL;
    st = http("GET", get_url, token, NULL, &status, &answer);
    if (st) goto out;
    if (status != 200) {
      st = sw_error(SW_STATUS_IO, "GET %s: HTTP %ld: %s", get_url, status, answer_error(answer));
      goto out;
    }
  }
  const char *state = json_string_value(json_object_get(*record, "state"));
  if (strcmp(state, "promoted") != 0) {
    const json_t *ds = json_object_get(*record, "decisions");
    const char *reason = json_string_value(json_object_get(json_array_get(ds, json_array_size(ds) - 1), "reason"));
    st = sw_error(SW_STATUS_REFUSED, "the rollout of %s:%lld was %s: %s", rq->model, (long long)rq->challenger,
                  !strcmp(state, "aborted") ? "aborted" : "rolled back", reason ? reason : "no reason recorded");
  }
out:
  json_decref(answer);
  sw_free(token);
  sw_free(start_url);
  sw_free(get_url);
  return st;
}
