/* Unit and loopback tests of the alert manager (src/eval/alerts.c): the Alertmanager
 * webhook body, fingerprints, and notifications to a real HTTP receiver
 * (tests/data/webhook_receiver.py, Python's http.server): one firing, no repeats while
 * the condition holds, one resolved, retries with back-off past 503s, an unreachable
 * webhook reported and retried, and every change in a SQLite registry's event log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/eval.h"
#include "slipway/registry.h"

extern char **environ;

typedef struct {
  pid_t pid;
  int port;
  char log[256];
} receiver;

/* Starts the receiver, failing its first `fail` requests; reads the port it prints. */
static void receiver_start(receiver *r, int fail) {
  const char *data = getenv("SW_TEST_DATA");
  assert_non_null(data);
  char script[512], fails[16];
  snprintf(script, sizeof script, "%s/webhook_receiver.py", data);
  snprintf(r->log, sizeof r->log, "/tmp/sw_test_webhook.%d.%d.log", (int)getpid(), fail);
  unlink(r->log);
  snprintf(fails, sizeof fails, "%d", fail);
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
  posix_spawn_file_actions_addclose(&fa, fd[0]);
  char *argv[] = {"/usr/bin/python3", script, r->log, fails, NULL};
  assert_int_equal(posix_spawn(&r->pid, argv[0], &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(fd[1]);
  FILE *f = fdopen(fd[0], "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%d", &r->port), 1);
  fclose(f);
}

static void receiver_stop(receiver *r) {
  kill(r->pid, SIGTERM);
  waitpid(r->pid, NULL, 0);
  unlink(r->log);
}

/* The requests the receiver logged so far. */
static json_t *received(const receiver *r) {
  json_t *all = json_array();
  FILE *f = fopen(r->log, "r");
  if (!f) return all;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    json_array_append_new(all, j);
  }
  free(line);
  fclose(f);
  return all;
}

static void test_payload(void **state) {
  (void)state;
  json_t *labels = json_pack("{s:s, s:s, s:s, s:s}", "alertname", "SlipwayQualityRegression", "model", "fmnist", "version",
                             "3", "severity", "page");
  json_t *reordered = json_pack("{s:s, s:s, s:s, s:s}", "severity", "page", "version", "3", "model", "fmnist", "alertname",
                                "SlipwayQualityRegression");
  json_t *ann = json_pack("{s:s}", "summary", "accuracy dropped");
  char a[17], b[17];
  assert_int_equal(sw_alert_fingerprint(labels, a), SW_STATUS_OK);
  assert_int_equal(sw_alert_fingerprint(reordered, b), SW_STATUS_OK);
  assert_string_equal(a, b); /* labels identify an alert, whatever their order */
  assert_int_equal(strlen(a), 16);
  json_object_set_new(reordered, "version", json_string("4"));
  assert_int_equal(sw_alert_fingerprint(reordered, b), SW_STATUS_OK);
  assert_string_not_equal(a, b);

  json_t *p = sw_alert_payload("ops", "http://127.0.0.1:8080", labels, ann, true, "2026-01-01T00:00:00.000Z", "");
  assert_non_null(p);
  assert_string_equal(json_string_value(json_object_get(p, "version")), "4");
  assert_string_equal(json_string_value(json_object_get(p, "status")), "firing");
  assert_string_equal(json_string_value(json_object_get(p, "receiver")), "ops");
  assert_string_equal(json_string_value(json_object_get(p, "groupKey")), "{}:{alertname=\"SlipwayQualityRegression\"}");
  assert_string_equal(json_string_value(json_object_get(json_object_get(p, "groupLabels"), "alertname")),
                      "SlipwayQualityRegression");
  assert_true(json_equal(json_object_get(p, "commonLabels"), labels));
  assert_true(json_equal(json_object_get(p, "commonAnnotations"), ann));
  assert_string_equal(json_string_value(json_object_get(p, "externalURL")), "http://127.0.0.1:8080");
  const json_t *al = json_array_get(json_object_get(p, "alerts"), 0);
  assert_int_equal(json_array_size(json_object_get(p, "alerts")), 1);
  assert_string_equal(json_string_value(json_object_get(al, "status")), "firing");
  assert_string_equal(json_string_value(json_object_get(al, "startsAt")), "2026-01-01T00:00:00.000Z");
  assert_string_equal(json_string_value(json_object_get(al, "endsAt")), "0001-01-01T00:00:00Z");
  assert_string_equal(json_string_value(json_object_get(al, "fingerprint")), a);
  assert_string_equal(json_string_value(json_object_get(al, "generatorURL")), "http://127.0.0.1:8080/metrics");
  json_decref(p);
  p = sw_alert_payload(NULL, NULL, labels, NULL, false, "2026-01-01T00:00:00.000Z", "2026-01-01T00:10:00.000Z");
  al = json_array_get(json_object_get(p, "alerts"), 0);
  assert_string_equal(json_string_value(json_object_get(p, "status")), "resolved");
  assert_string_equal(json_string_value(json_object_get(p, "receiver")), "slipway");
  assert_string_equal(json_string_value(json_object_get(al, "endsAt")), "2026-01-01T00:10:00.000Z");
  json_decref(p);
  json_decref(labels);
  json_decref(reordered);
  json_decref(ann);
}

static size_t count_events(sw_registry *reg, const char *action) {
  json_t *ev;
  assert_int_equal(sw_registry_events(reg, 0, 0, &ev), SW_STATUS_OK);
  size_t n = 0, i;
  const json_t *e;
  json_array_foreach(ev, i, e) {
    if (!strcmp(json_string_value(json_object_get(e, "entity")), "alert") &&
        !strcmp(json_string_value(json_object_get(e, "action")), action)) {
      n++;
      assert_string_equal(json_string_value(json_object_get(e, "model")), "fmnist");
      assert_int_equal(json_integer_value(json_object_get(e, "version")), 2);
    }
  }
  json_decref(ev);
  return n;
}

static void test_fire_dedup_resolve(void **state) {
  (void)state;
  char home[] = "/tmp/sw_test_alerts.XXXXXX";
  assert_non_null(mkdtemp(home));
  char url[300];
  snprintf(url, sizeof url, "%s/registry.db", home);
  sw_registry *reg;
  assert_int_equal(sw_registry_open(url, home, &reg), SW_STATUS_OK);
  receiver r;
  receiver_start(&r, 0);
  char hook[64];
  snprintf(hook, sizeof hook, "http://127.0.0.1:%d/alerts", r.port);
  sw_alert_options opt = {.webhook_url = hook, .registry = reg, .backoff_s = 0.05, .external_url = "http://127.0.0.1:8080"};
  sw_alert_manager *m;
  assert_int_equal(sw_alert_manager_new(&opt, &m), SW_STATUS_OK);
  json_t *labels = json_pack("{s:s, s:s, s:s, s:s}", "alertname", "SlipwayDataDrift", "model", "fmnist", "version", "2",
                             "severity", "warning");
  json_t *ann = json_pack("{s:s}", "summary", "drift in image");
  bool sent;
  /* resolving what never fired sends nothing */
  assert_int_equal(sw_alert_manager_set(m, labels, ann, false, &sent), SW_STATUS_OK);
  assert_false(sent);
  assert_int_equal(sw_alert_manager_set(m, labels, ann, true, &sent), SW_STATUS_OK);
  assert_true(sent);
  for (int i = 0; i < 3; i++) { /* the condition holds: de-duplicated */
    assert_int_equal(sw_alert_manager_set(m, labels, ann, true, &sent), SW_STATUS_OK);
    assert_false(sent);
  }
  assert_int_equal(sw_alert_manager_firing(m), 1);
  assert_int_equal(sw_alert_manager_set(m, labels, ann, false, &sent), SW_STATUS_OK);
  assert_true(sent);
  assert_int_equal(sw_alert_manager_set(m, labels, ann, false, &sent), SW_STATUS_OK);
  assert_false(sent);
  assert_int_equal(sw_alert_manager_firing(m), 0);

  json_t *got = received(&r);
  assert_int_equal(json_array_size(got), 2);
  const json_t *f0 = json_object_get(json_array_get(got, 0), "body"), *f1 = json_object_get(json_array_get(got, 1), "body");
  assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "content_type")), "application/json");
  assert_string_equal(json_string_value(json_object_get(f0, "status")), "firing");
  assert_string_equal(json_string_value(json_object_get(f1, "status")), "resolved");
  const json_t *a0 = json_array_get(json_object_get(f0, "alerts"), 0), *a1 = json_array_get(json_object_get(f1, "alerts"), 0);
  assert_true(json_equal(json_object_get(a0, "labels"), labels));
  assert_string_equal(json_string_value(json_object_get(a0, "fingerprint")), json_string_value(json_object_get(a1, "fingerprint")));
  /* the resolution carries the firing's start and an end after it */
  assert_string_equal(json_string_value(json_object_get(a0, "startsAt")), json_string_value(json_object_get(a1, "startsAt")));
  assert_true(strcmp(json_string_value(json_object_get(a1, "endsAt")), json_string_value(json_object_get(a1, "startsAt"))) >= 0);
  assert_string_equal(json_string_value(json_object_get(a0, "endsAt")), "0001-01-01T00:00:00Z");
  json_decref(got);
  assert_int_equal(count_events(reg, "firing"), 1);
  assert_int_equal(count_events(reg, "resolved"), 1);

  /* firing again is a new notification */
  assert_int_equal(sw_alert_manager_set(m, labels, ann, true, &sent), SW_STATUS_OK);
  assert_true(sent);
  assert_int_equal(count_events(reg, "firing"), 2);

  /* labels without alertname, or not strings, are refused */
  json_t *bad = json_pack("{s:s}", "model", "fmnist");
  assert_int_equal(sw_alert_manager_set(m, bad, NULL, true, &sent), SW_STATUS_INVALID);
  json_decref(bad);
  bad = json_pack("{s:s, s:i}", "alertname", "X", "version", 2);
  assert_int_equal(sw_alert_manager_set(m, bad, NULL, true, &sent), SW_STATUS_INVALID);
  json_decref(bad);

  sw_alert_manager_free(m);
  receiver_stop(&r);
  json_decref(labels);
  json_decref(ann);
  sw_registry_close(reg);
  sw_remove_tree(home);
}

static void test_retries(void **state) {
  (void)state;
  receiver r;
  receiver_start(&r, 2); /* two 503s, then 200 */
  char hook[64];
  snprintf(hook, sizeof hook, "http://127.0.0.1:%d/", r.port);
  sw_alert_options opt = {.webhook_url = hook, .backoff_s = 0.05, .max_attempts = 4};
  sw_alert_manager *m;
  assert_int_equal(sw_alert_manager_new(&opt, &m), SW_STATUS_OK);
  json_t *labels = json_pack("{s:s}", "alertname", "SlipwayLiveAccuracyLow");
  bool sent;
  double t0 = sw_now();
  assert_int_equal(sw_alert_manager_set(m, labels, NULL, true, &sent), SW_STATUS_OK);
  assert_true(sent);
  assert_true(sw_now() - t0 >= 0.05 + 0.1 - 0.01); /* waited 0.05 s, then 0.1 s */
  json_t *got = received(&r);
  assert_int_equal(json_array_size(got), 3);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(got, 2), "status")), 200);
  json_decref(got);
  sw_alert_manager_free(m);
  receiver_stop(&r);

  /* nothing listening: IO after max_attempts, and the next call tries again */
  char home[] = "/tmp/sw_test_alerts.XXXXXX";
  assert_non_null(mkdtemp(home));
  char url[300];
  snprintf(url, sizeof url, "%s/registry.db", home);
  sw_registry *reg;
  assert_int_equal(sw_registry_open(url, home, &reg), SW_STATUS_OK);
  sw_alert_options dead = {.webhook_url = "http://127.0.0.1:1/", .backoff_s = 0.01, .max_attempts = 2, .registry = reg};
  assert_int_equal(sw_alert_manager_new(&dead, &m), SW_STATUS_OK);
  assert_int_equal(sw_alert_manager_set(m, labels, NULL, true, &sent), SW_STATUS_IO);
  assert_false(sent);
  assert_non_null(strstr(sw_last_error(), "2 attempts failed"));
  assert_int_equal(sw_alert_manager_set(m, labels, NULL, true, &sent), SW_STATUS_IO);
  json_t *ev;
  assert_int_equal(sw_registry_events(reg, 0, 0, &ev), SW_STATUS_OK);
  assert_int_equal(json_array_size(ev), 1); /* recorded once, undelivered */
  assert_true(json_is_false(json_object_get(json_object_get(json_array_get(ev, 0), "detail"), "delivered")));
  json_decref(ev);
  sw_alert_manager_free(m);
  sw_alert_manager_free(NULL);
  json_decref(labels);
  sw_registry_close(reg);
  sw_remove_tree(home);
}

/* No webhook, no registry: the state machine alone, with the n-th allocation failing. */
static sw_status op_cycle(void) {
  sw_alert_options opt = {.receiver = "r", .external_url = "http://x"};
  sw_alert_manager *m = NULL;
  json_t *a = json_pack("{s:s, s:s}", "alertname", "A", "model", "m"), *b = json_pack("{s:s}", "alertname", "B");
  json_t *ann = json_pack("{s:s}", "summary", "s");
  sw_status st = sw_alert_manager_new(&opt, &m);
  for (int i = 0; !st && i < 12; i++) { /* past the first growth of the alert table */
    json_object_set_new(b, "n", json_sprintf("%d", i));
    st = sw_alert_manager_set(m, b, ann, true, NULL);
  }
  if (!st) st = sw_alert_manager_set(m, a, ann, true, NULL);
  if (!st) st = sw_alert_manager_set(m, a, ann, false, NULL);
  if (!st && sw_alert_manager_firing(m) != 12) st = SW_STATUS_CORRUPT;
  sw_alert_manager_free(m);
  json_decref(a);
  json_decref(b);
  json_decref(ann);
  return st;
}

static void test_allocation_failures(void **state) {
  (void)state;
  int n;
  for (n = 1; n < 1000; n++) {
    long before = sw_alloc_live();
    sw_alloc_fail_after(n);
    sw_status st = op_cycle();
    sw_alloc_fail_after(0);
    if (sw_alloc_live() != before) fail_msg("allocation %d failing: %ld leaked", n, sw_alloc_live() - before);
    if (st == SW_STATUS_NOMEM) continue;
    assert_int_equal(st, SW_STATUS_OK);
    break;
  }
  assert_true(n > 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_payload),
      cmocka_unit_test(test_fire_dedup_resolve),
      cmocka_unit_test(test_retries),
      cmocka_unit_test(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
