/* Alerts: one notification per change of an alert's condition, POSTed with libcurl in
 * Alertmanager's webhook format (version "4") and recorded in the registry's event log.
 * The manager remembers each alert by its fingerprint (a hash of its labels) so a
 * condition that persists is not re-sent every cycle. */
#include <curl/curl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slipway/eval.h"
#include "slipway/registry.h"

/* Alertmanager writes endsAt of a firing alert as Go's zero time. */
#define ZERO_TIME "0001-01-01T00:00:00Z"

typedef struct {
  char fingerprint[17];
  json_t *labels, *annotations;
  char starts_at[32], ends_at[32];
  bool firing;      /* the condition as last reported */
  bool delivered;   /* the notification for that condition went out */
  bool recorded;    /* the change is in the registry's event log (once per change) */
} alert_state;

struct sw_alert_manager {
  char *url, *receiver, *external_url, *who;
  int max_attempts;
  double backoff_s, timeout_s;
  sw_registry *registry;
  alert_state *alerts;
  size_t n, cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void now_rfc3339(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char base[24];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 32, "%.20s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sw_status sw_alert_fingerprint(const json_t *labels, char out[17]) {
  size_t n = json_object_size(labels), i = 0;
  const char **keys = sw_malloc((n ? n : 1) * sizeof *keys);
  sw_buf b = {0};
  sw_status st = keys ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  const char *k;
  const json_t *v;
  if (!st) json_object_foreach((json_t *)labels, k, v) keys[i++] = k;
  if (!st) qsort(keys, n, sizeof *keys, cmp_str);
  /* NUL-separated, so "a=b,c" and "a=b" + "c" cannot collide */
  for (i = 0; !st && i < n; i++) {
    const char *val = json_string_value(json_object_get(labels, keys[i]));
    st = sw_buf_append(&b, keys[i], strlen(keys[i]) + 1);
    if (!st) st = sw_buf_append(&b, val ? val : "", strlen(val ? val : "") + 1);
  }
  char hex[SW_SHA256_HEX_LEN];
  if (!st) st = sw_sha256_hex(b.data ? b.data : (const uint8_t *)"", b.len, hex);
  if (!st) {
    memcpy(out, hex, 16);
    out[16] = 0;
  }
  sw_buf_free(&b);
  sw_free(keys);
  return st;
}

json_t *sw_alert_payload(const char *receiver, const char *external_url, const json_t *labels, const json_t *annotations,
                         bool firing, const char *starts_at, const char *ends_at) {
  char fp[17];
  if (sw_alert_fingerprint(labels, fp)) return NULL;
  const char *name = json_string_value(json_object_get(labels, "alertname"));
  if (!receiver) receiver = "slipway";
  if (!external_url) external_url = "";
  json_t *ann = annotations ? json_deep_copy(annotations) : json_object();
  json_t *group_key = json_sprintf("{}:{alertname=\"%s\"}", name ? name : "");
  json_t *generator = json_sprintf("%s%s", external_url, *external_url ? "/metrics" : "");
  const char *status = firing ? "firing" : "resolved";
  json_t *alert = json_pack("{s:s, s:O, s:O, s:s, s:s, s:o, s:s}", "status", status, "labels", labels, "annotations",
                            ann ? ann : json_null(), "startsAt", starts_at, "endsAt", firing ? ZERO_TIME : ends_at,
                            "generatorURL", generator ? generator : json_string(""), "fingerprint", fp);
  json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:s, s:{s:s}, s:O, s:O, s:s, s:[o]}", "version", "4", "groupKey",
                          json_string_value(group_key) ? json_string_value(group_key) : "", "truncatedAlerts", (json_int_t)0,
                          "status", status, "receiver", receiver, "groupLabels", "alertname", name ? name : "",
                          "commonLabels", labels, "commonAnnotations", ann ? ann : json_null(), "externalURL",
                          external_url, "alerts", alert);
  json_decref(group_key);
  json_decref(ann);
  return out;
}

sw_status sw_alert_manager_new(const sw_alert_options *opt, sw_alert_manager **out) {
  *out = NULL;
  pthread_once(&curl_once, curl_init);
  sw_alert_manager *m = sw_calloc(1, sizeof *m);
  if (!m) return sw_error(SW_STATUS_NOMEM, "out of memory");
  m->url = opt->webhook_url ? sw_strdup(opt->webhook_url) : NULL;
  m->receiver = sw_strdup(opt->receiver ? opt->receiver : "slipway");
  m->external_url = sw_strdup(opt->external_url ? opt->external_url : "");
  m->who = sw_strdup(opt->who ? opt->who : "slipway-monitor");
  m->max_attempts = opt->max_attempts > 0 ? opt->max_attempts : 4;
  m->backoff_s = opt->backoff_s > 0 ? opt->backoff_s : 0.5;
  m->timeout_s = opt->timeout_s > 0 ? opt->timeout_s : 5;
  m->registry = opt->registry;
  if ((opt->webhook_url && !m->url) || !m->receiver || !m->external_url || !m->who) {
    sw_alert_manager_free(m);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  *out = m;
  return SW_STATUS_OK;
}

void sw_alert_manager_free(sw_alert_manager *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++) {
    json_decref(m->alerts[i].labels);
    json_decref(m->alerts[i].annotations);
  }
  sw_free(m->alerts);
  sw_free(m->url);
  sw_free(m->receiver);
  sw_free(m->external_url);
  sw_free(m->who);
  sw_free(m);
}

size_t sw_alert_manager_firing(const sw_alert_manager *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->n; i++) n += m->alerts[i].firing;
  return n;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

/* One POST, retried on a connection error or an answer outside 2xx, waiting backoff_s,
 * then twice that, and so on. */
static sw_status post(sw_alert_manager *m, const char *body) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  sw_status st = SW_STATUS_OK;
  if (!c || !h) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory for an HTTP client");
    goto cleanup;
  }
  curl_easy_setopt(c, CURLOPT_URL, m->url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(m->timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  double wait = m->backoff_s;
  char why[CURL_ERROR_SIZE + 64] = "";
  for (int attempt = 1; attempt <= m->max_attempts; attempt++) {
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && code >= 200 && code < 300) goto cleanup;
    if (rc != CURLE_OK) snprintf(why, sizeof why, "%s", *err ? err : curl_easy_strerror(rc));
    else snprintf(why, sizeof why, "HTTP status %ld", code);
    SW_WARN("alert webhook %s: attempt %d of %d: %s", m->url, attempt, m->max_attempts, why);
    if (attempt < m->max_attempts) {
      usleep((useconds_t)(wait * 1e6));
      wait *= 2;
    }
  }
  st = sw_error(SW_STATUS_IO, "alert webhook %s: %d attempts failed, the last: %s", m->url, m->max_attempts, why);
cleanup:
  curl_slist_free_all(h);
  if (c) curl_easy_cleanup(c);
  return st;
}

static alert_state *find_or_add(sw_alert_manager *m, const char *fp, bool add) {
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->alerts[i].fingerprint, fp)) return &m->alerts[i];
  if (!add) return NULL;
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 8;
    alert_state *a = sw_realloc(m->alerts, cap * sizeof *a);
    if (!a) return NULL;
    m->alerts = a;
    m->cap = cap;
  }
  alert_state *a = &m->alerts[m->n++];
  memset(a, 0, sizeof *a);
  memcpy(a->fingerprint, fp, sizeof a->fingerprint);
  return a;
}

static int64_t label_version(const json_t *labels) {
  const char *v = json_string_value(json_object_get(labels, "version"));
  char *end = NULL;
  long long x = v ? strtoll(v, &end, 10) : 0;
  return v && *v && end && !*end && x > 0 ? (int64_t)x : 0;
}

/* Sends the alert's current condition and records it; delivered says whether it went. */
static sw_status notify(sw_alert_manager *m, alert_state *a) {
  sw_status st = SW_STATUS_OK;
  json_t *body = sw_alert_payload(m->receiver, m->external_url, a->labels, a->annotations, a->firing, a->starts_at,
                                  a->ends_at);
  char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if (!text) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto cleanup;
  }
  const char *name = json_string_value(json_object_get(a->labels, "alertname"));
  SW_INFO("alert %s %s (%s)", name, a->firing ? "firing" : "resolved", a->fingerprint);
  if (m->url) st = post(m, text);
  a->delivered = st == SW_STATUS_OK;
  if (m->registry && !a->recorded) {
    json_t *d = json_pack("{s:O, s:O?, s:s, s:s, s:s, s:b}", "labels", a->labels, "annotations", a->annotations,
                          "fingerprint", a->fingerprint, "startsAt", a->starts_at, "endsAt",
                          a->firing ? ZERO_TIME : a->ends_at, "delivered", a->delivered);
    sw_status rs = d ? sw_registry_event_add(m->registry, m->who, "alert", a->firing ? "firing" : "resolved",
                                             json_string_value(json_object_get(a->labels, "model")), label_version(a->labels), d)
                     : sw_error(SW_STATUS_NOMEM, "out of memory");
    json_decref(d);
    a->recorded = rs == SW_STATUS_OK;
    if (!st) st = rs;
  }
cleanup:
  free(text);
  json_decref(body);
  return st;
}

sw_status sw_alert_manager_set(sw_alert_manager *m, const json_t *labels, const json_t *annotations, bool firing,
                               bool *sent) {
  if (sent) *sent = false;
  const char *key;
  const json_t *v;
  if (!json_is_string(json_object_get(labels, "alertname")))
    return sw_error(SW_STATUS_INVALID, "an alert's labels need an \"alertname\" string");
  json_object_foreach((json_t *)labels, key, v) {
    if (!json_is_string(v)) return sw_error(SW_STATUS_INVALID, "alert label '%s' is not a string", key);
  }
  char fp[17];
  sw_status st = sw_alert_fingerprint(labels, fp);
  if (st) return st;
  alert_state *a = find_or_add(m, fp, firing);
  if (!a) {
    if (!firing) return SW_STATUS_OK; /* never fired: nothing to resolve */
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  if (a->labels && a->firing == firing) {
    if (a->delivered) return SW_STATUS_OK; /* already told: de-duplicated */
  } else {
    /* a change of condition: a new firing starts now, a resolution ends now */
    if (firing) {
      json_t *l = json_deep_copy(labels), *an = annotations ? json_deep_copy(annotations) : NULL;
      if (!l || (annotations && !an)) {
        json_decref(l);
        json_decref(an);
        return sw_error(SW_STATUS_NOMEM, "out of memory");
      }
      json_decref(a->labels);
      json_decref(a->annotations);
      a->labels = l;
      a->annotations = an;
      now_rfc3339(a->starts_at);
      a->ends_at[0] = 0;
    } else {
      if (annotations) {
        json_t *an = json_deep_copy(annotations);
        if (!an) return sw_error(SW_STATUS_NOMEM, "out of memory");
        json_decref(a->annotations);
        a->annotations = an;
      }
      now_rfc3339(a->ends_at);
    }
    a->firing = firing;
    a->delivered = a->recorded = false;
  }
  st = notify(m, a);
  if (sent) *sent = a->delivered && m->url;
  return st;
}
