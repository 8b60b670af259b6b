/* The dashboard's read-only JSON API under /api/v1/: the registry's models, versions with
 * their lineage, gate decisions and training curves, rollouts, the event log, and what
 * the server counts (the very text /metrics renders, parsed back, so whatever another
 * part adds to /metrics shows up here too). Nothing here writes; no token is needed.
 * Paths on disk come from the registry's records only, never from a request. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"
#include "slipway/registry.h"

/* metrics.jsonl: read at most this much, keep at most this many points per split */
#define METRICS_MAX_BYTES ((size_t)32 << 20)
#define METRICS_MAX_POINTS 5000
#define EVENTS_MAX 1000
#define ROLLOUTS_MAX 200
#define EVALS_PER_VERSION 20

struct sw__api {
  bool registry;
  sw_registry *reg; /* NULL: not a registry catalog, or it could not be opened */
  pthread_mutex_t mu; /* one registry call at a time; guards the caches below */
  json_t *models;      /* the /models answer at models_change */
  int64_t models_change;
  json_t *alerts;      /* open alerts by fingerprint, from the event log */
  int64_t alerts_after;
};

sw_status sw__api_new(bool registry, const char *url, const char *home, sw__api **out) {
  *out = NULL;
  sw__api *a = sw_calloc(1, sizeof *a);
  if (!a) return sw_error(SW_STATUS_NOMEM, "out of memory");
  pthread_mutex_init(&a->mu, NULL);
  a->registry = registry;
  a->models_change = -1;
  if (registry && sw_registry_open(url, home, &a->reg)) {
    SW_WARN("serve: the dashboard cannot open the registry: %s", sw_last_error());
    a->reg = NULL;
  }
  *out = a;
  return SW_STATUS_OK;
}

void sw__api_free(sw__api *a) {
  if (!a) return;
  sw_registry_close(a->reg);
  json_decref(a->models);
  json_decref(a->alerts);
  pthread_mutex_destroy(&a->mu);
  sw_free(a);
}

/* ---- answers ------------------------------------------------------------------------ */

static void reply_json(sw__reply *out, int status, json_t *j) {
  out->status = status;
  out->content_type = "application/json";
  out->cache_control = "no-store";
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(j);
  if (!text || sw_buf_append(&out->body, text, strlen(text))) {
    sw_buf_free(&out->body);
    out->status = 503;
    sw_buf_append(&out->body, "{\"error\":\"out of memory\"}", 25);
  }
  free(text);
}

static void reply_error(sw__reply *out, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_error(sw__reply *out, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  reply_json(out, status, json_pack("{s:s}", "error", msg));
}

static int http_status(sw_status st) {
  switch (st) {
    case SW_STATUS_NOT_FOUND: return 404;
    case SW_STATUS_INVALID:
    case SW_STATUS_FORMAT: return 400;
    default: return 500;
  }
}

/* The registry's failure as an answer: NOT_FOUND says what is missing (a name the client
 * gave, never a path); anything else is logged and stays in the log. */
static void reply_registry_error(sw__reply *out, sw_status st) {
  if (st == SW_STATUS_NOT_FOUND) return reply_error(out, 404, "%s", sw_last_error());
  SW_WARN("serve: dashboard: the registry: %s", sw_last_error());
  reply_error(out, http_status(st) == 400 ? 400 : 500, "the registry could not answer (see the server's log)");
}

/* ---- small parsers for path segments and query arguments ------------------------------ */

static bool parse_id(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 18) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

/* ---- /models -------------------------------------------------------------------------- */

/* Every model: its versions (state, aliases, evaluations), its aliases now and their
 * history. Built from list + show and kept until the registry's change counter moves. */
static sw_status build_models(sw_registry *reg, json_t **out) {
  json_t *list = NULL, *models = json_object(), *result = NULL;
  sw_status st = sw_registry_list(reg, NULL, &list);
  if (st) goto out;
  for (size_t i = 0; i < json_array_size(list); i++) {
    const json_t *e = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(e, "name"));
    json_int_t version = json_integer_value(json_object_get(e, "version"));
    if (!name) continue;
    json_t *m = json_object_get(models, name);
    if (!m) {
      m = json_pack("{s:s, s:[], s:{}, s:[]}", "name", name, "versions", "aliases", "alias_history");
      json_object_set_new(models, name, m);
    }
    char ref[SW_MODEL_NAME_MAX + 32];
    snprintf(ref, sizeof ref, "%s:%lld", name, (long long)version);
    json_t *show = NULL;
    st = sw_registry_show(reg, ref, &show);
    if (st) goto out;
    json_t *evals = json_array(), *all = json_object_get(show, "evaluations");
    for (size_t k = 0; k < json_array_size(all) && k < EVALS_PER_VERSION; k++) {
      json_t *ev = json_deep_copy(json_array_get(all, k));
      json_object_del(ev, "dataset");
      json_array_append_new(evals, ev);
    }
    json_t *v = json_pack("{s:I, s:s, s:O, s:O, s:O, s:O, s:O, s:o}", "version", version, "ref", ref, "state",
                          json_object_get(e, "state"), "aliases", json_object_get(e, "aliases"), "created_at",
                          json_object_get(e, "created_at"), "created_by", json_object_get(show, "created_by"),
                          "artifact_sha256", json_object_get(e, "artifact_sha256"), "evaluations", evals);
    /* why it is in its state: the last state change's reason */
    json_t *events = json_object_get(show, "events");
    for (size_t k = json_array_size(events); k > 0; k--) {
      const json_t *ev = json_array_get(events, k - 1);
      if (strcmp(json_string_value(json_object_get(ev, "action")) ?: "", "state")) continue;
      const json_t *why = json_object_get(json_object_get(ev, "detail"), "why");
      if (json_is_string(why)) json_object_set(v, "state_reason", (json_t *)why);
      break;
    }
    json_array_append_new(json_object_get(m, "versions"), v);
    size_t k;
    json_t *alias;
    json_array_foreach(json_object_get(e, "aliases"), k, alias) {
      json_object_set_new(json_object_get(m, "aliases"), json_string_value(alias), json_integer(version));
    }
    /* a move from A to B is in the history of both A and B: keep it once */
    json_t *hist = json_object_get(m, "alias_history"), *h;
    json_array_foreach(json_object_get(show, "alias_history"), k, h) {
      bool seen = false;
      for (size_t j = 0; j < json_array_size(hist) && !seen; j++) seen = json_equal(json_array_get(hist, j), h);
      if (!seen) json_array_append(hist, h);
    }
    json_decref(show);
  }
  /* histories in time order (ISO-8601 UTC text sorts as time) */
  result = json_array();
  const char *key;
  json_t *m;
  json_object_foreach(models, key, m) {
    json_t *hist = json_object_get(m, "alias_history");
    size_t n = json_array_size(hist);
    for (size_t a = 1; a < n; a++)
      for (size_t b = a; b > 0; b--) {
        const char *x = json_string_value(json_object_get(json_array_get(hist, b - 1), "at"));
        const char *y = json_string_value(json_object_get(json_array_get(hist, b), "at"));
        if (!x || !y || strcmp(x, y) <= 0) break;
        json_t *t = json_incref(json_array_get(hist, b - 1));
        json_array_set(hist, b - 1, json_array_get(hist, b));
        json_array_set_new(hist, b, t);
      }
    json_array_append(result, m);
  }
out:
  json_decref(list);
  json_decref(models);
  if (st) {
    json_decref(result);
    result = NULL;
  }
  *out = result;
  return st;
}

static void answer_models(sw__api *a, sw__reply *out) {
  int64_t change = 0;
  sw_status st = sw_registry_change_counter(a->reg, &change);
  if (!st && (!a->models || change != a->models_change)) {
    json_t *models = NULL;
    st = build_models(a->reg, &models);
    if (!st) {
      json_decref(a->models);
      a->models = models;
      a->models_change = change;
    }
  }
  if (st) return reply_registry_error(out, st);
  reply_json(out, 200, json_pack("{s:I, s:s, s:O}", "change", (json_int_t)change, "backend", sw_registry_backend(a->reg),
                                 "models", a->models));
}

/* A rollout record as the pages get it: each decision without "saved", the controller's
 * state kept for a restart (up to 200 latency samples and the router's salt per decision,
 * hundreds of KiB per record over its snapshots), which no page shows and none should
 * poll every 2 s. Takes rec; returns it. */
static json_t *rollout_public(json_t *rec) {
  json_t *d;
  size_t i;
  json_array_foreach(json_object_get(rec, "decisions"), i, d) json_object_del(d, "saved");
  return rec;
}

static void rollouts_public(json_t *list) {
  json_t *r;
  size_t i;
  json_array_foreach(list, i, r) rollout_public(r);
}

/* ---- /models/{m}/versions/{v} ------------------------------------------------------- */

static void answer_version(sw__api *a, const char *ref, const char *name, int64_t version, sw__reply *out) {
  json_t *show = NULL, *lineage = NULL, *rollouts = NULL;
  sw_status st = sw_registry_show(a->reg, ref, &show);
  if (!st) st = sw_registry_lineage(a->reg, ref, &lineage);
  if (!st) st = sw_registry_rollout_list(a->reg, name, &rollouts);
  if (st) {
    json_decref(show);
    json_decref(lineage);
    return reply_registry_error(out, st);
  }
  /* the rollouts this version took part in, and its gate decisions from the event log */
  json_t *mine = json_array(), *gate = json_array(), *r, *e;
  size_t i;
  json_array_foreach(rollouts, i, r) {
    if (json_integer_value(json_object_get(r, "challenger")) == version ||
        json_integer_value(json_object_get(r, "incumbent")) == version)
      json_array_append(mine, r);
  }
  json_array_foreach(json_object_get(show, "events"), i, e) {
    const char *action = json_string_value(json_object_get(e, "action"));
    if (!action || (strcmp(action, "promote") && strcmp(action, "refuse"))) continue;
    const json_t *d = json_object_get(e, "detail");
    json_array_append_new(gate, json_pack("{s:O, s:O, s:O, s:s, s:O, s:O, s:O, s:O}", "event", json_object_get(e, "id"), "at",
                                          json_object_get(e, "at"), "who", json_object_get(e, "who"), "action", action, "alias",
                                          json_object_get(d, "alias") ?: json_null(), "baseline",
                                          json_object_get(d, "baseline") ?: json_null(), "passed",
                                          json_object_get(d, "passed") ?: json_false(), "decision",
                                          json_object_get(d, "decision") ?: json_null()));
  }
  json_decref(rollouts);
  rollouts_public(mine);
  reply_json(out, 200, json_pack("{s:o, s:o, s:o, s:o}", "version", show, "lineage", lineage, "gate", gate, "rollouts", mine));
}

/* ---- /models/{m}/versions/{v}/metrics: the run's training curves -------------------- */

typedef struct {
  json_t *step, *loss, *accuracy;
  size_t lines;
} curve;

static void curve_add(curve *c, const json_t *line) {
  const json_t *loss = json_object_get(line, "loss"), *acc = json_object_get(line, "accuracy");
  json_array_append_new(c->step, json_integer(json_integer_value(json_object_get(line, "step"))));
  json_array_append_new(c->loss, json_is_number(loss) ? json_real(json_number_value(loss)) : json_null());
  json_array_append_new(c->accuracy, json_is_number(acc) ? json_real(json_number_value(acc)) : json_null());
}

/* Keeps every k-th point (and the last) when a split has more than the limit. */
static json_t *curve_json(curve *c) {
  size_t n = json_array_size(c->step);
  if (n > METRICS_MAX_POINTS) {
    size_t k = (n + METRICS_MAX_POINTS - 1) / METRICS_MAX_POINTS;
    json_t *s = json_array(), *l = json_array(), *a = json_array();
    for (size_t i = 0; i < n; i++) {
      if (i % k && i != n - 1) continue;
      json_array_append(s, json_array_get(c->step, i));
      json_array_append(l, json_array_get(c->loss, i));
      json_array_append(a, json_array_get(c->accuracy, i));
    }
    json_decref(c->step);
    json_decref(c->loss);
    json_decref(c->accuracy);
    c->step = s;
    c->loss = l;
    c->accuracy = a;
  }
  json_t *o = json_pack("{s:I, s:o, s:o, s:o}", "lines", (json_int_t)c->lines, "step", c->step, "loss", c->loss, "accuracy",
                        c->accuracy);
  c->step = c->loss = c->accuracy = NULL;
  return o;
}

static void answer_metrics(sw__api *a, const char *ref, sw__reply *out) {
  json_t *ver = NULL;
  sw_status st = sw_registry_get_version(a->reg, ref, &ver);
  if (st) return reply_registry_error(out, st);
  const char *run = json_string_value(json_object_get(json_object_get(ver, "run"), "path"));
  if (!run) {
    json_decref(ver);
    return reply_error(out, 404, "%s has no training run in the registry (registered from an ONNX file)", ref);
  }
  char *path = sw_path_join(run, "metrics.jsonl");
  json_decref(ver);
  FILE *f = path ? fopen(path, "rb") : NULL;
  if (!f) {
    if (path) SW_INFO("serve: dashboard: %s: %s", path, strerror(errno));
    sw_free(path);
    return reply_error(out, 404, "the training metrics of %s (its run's metrics.jsonl) cannot be read on this host", ref);
  }
  sw_free(path);
  curve train = {json_array(), json_array(), json_array(), 0}, val = {json_array(), json_array(), json_array(), 0};
  size_t bytes = 0, lines = 0, bad = 0;
  bool truncated = false;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (bytes + (size_t)n > METRICS_MAX_BYTES) {
      truncated = true;
      break;
    }
    bytes += (size_t)n;
    json_error_t jerr;
    json_t *j = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &jerr);
    const char *split = json_string_value(json_object_get(j, "split"));
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "step"))) {
      if (n > 1) bad++;
    } else {
      lines++;
      curve *c = split && !strcmp(split, "val") ? &val : &train;
      c->lines++;
      curve_add(c, j);
    }
    json_decref(j);
  }
  free(line);
  fclose(f);
  reply_json(out, 200,
             json_pack("{s:s, s:I, s:I, s:b, s:o, s:o}", "ref", ref, "lines", (json_int_t)lines, "bad_lines", (json_int_t)bad,
                       "truncated", truncated, "train", curve_json(&train), "val", curve_json(&val)));
}

/* ---- /serving: the server's own counters, from its /metrics text --------------------- */

static bool prom_name_char(char ch, bool first) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' || (!first && ch >= '0' && ch <= '9');
}

json_t *sw__prom_parse(const char *text, size_t len) {
  json_t *fams = json_object();
  const char *p = text, *end = text + len;
  char name[256], lname[256];
  sw_buf value = {0};
  while (p < end && fams) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *q = p;
    p = eol < end ? eol + 1 : end;
    while (q < eol && (*q == ' ' || *q == '\t')) q++;
    if (q == eol || *q == '#') continue;
    size_t nl = 0;
    while (q < eol && prom_name_char(*q, nl == 0) && nl < sizeof name - 1) name[nl++] = *q++;
    name[nl] = '\0';
    if (!nl) continue;
    json_t *labels = json_object();
    bool ok = true;
    if (q < eol && *q == '{') {
      q++;
      for (;;) {
        while (q < eol && (*q == ' ' || *q == ',')) q++;
        if (q < eol && *q == '}') {
          q++;
          break;
        }
        size_t ln = 0;
        while (q < eol && prom_name_char(*q, ln == 0) && ln < sizeof lname - 1) lname[ln++] = *q++;
        lname[ln] = '\0';
        if (!ln || q + 1 >= eol || q[0] != '=' || q[1] != '"') {
          ok = false;
          break;
        }
        q += 2;
        value.len = 0;
        while (q < eol && *q != '"') {
          char ch = *q++;
          if (ch == '\\' && q < eol) {
            ch = *q++;
            if (ch == 'n') ch = '\n';
          }
          sw_buf_append(&value, &ch, 1);
        }
        if (q >= eol) {
          ok = false;
          break;
        }
        q++; /* the closing quote */
        json_t *s = json_stringn(value.data ? (const char *)value.data : "", value.len);
        if (!s) {
          ok = false; /* not UTF-8 */
          break;
        }
        json_object_set_new(labels, lname, s);
      }
    }
    char num[64];
    size_t k = 0;
    while (q < eol && (*q == ' ' || *q == '\t')) q++;
    while (q < eol && *q != ' ' && *q != '\t' && k < sizeof num - 1) num[k++] = *q++;
    num[k] = '\0';
    char *e = NULL;
    double v = k ? strtod(num, &e) : 0;
    if (!ok || !k || *e || !isfinite(v)) { /* JSON has no NaN or infinity: such samples are left out */
      json_decref(labels);
      continue;
    }
    json_t *list = json_object_get(fams, name);
    if (!list) {
      list = json_array();
      json_object_set_new(fams, name, list);
    }
    json_array_append_new(list, json_pack("{s:o, s:f}", "labels", labels, "value", v));
  }
  sw_buf_free(&value);
  return fams;
}

/* Prometheus's histogram_quantile: linear within the bucket that holds the rank. */
static double quantile(double q, const double *le, const double *cum, size_t n, double count) {
  if (count <= 0 || n == 0) return NAN;
  double rank = q * count, prev_le = 0, prev = 0;
  for (size_t i = 0; i < n; i++) {
    if (cum[i] >= rank) {
      double in = cum[i] - prev;
      return in > 0 ? prev_le + (le[i] - prev_le) * (rank - prev) / in : le[i];
    }
    prev_le = le[i];
    prev = cum[i];
  }
  return prev_le; /* in the +Inf bucket: the highest finite bound, as Prometheus says */
}

static json_t *version_entry(json_t *versions, const char *model, const char *version) {
  char key[300];
  snprintf(key, sizeof key, "%s:%s", model, version);
  json_t *v = json_object_get(versions, key);
  if (!v) {
    char *end;
    long long n = strtoll(version, &end, 10);
    v = json_pack("{s:s, s:I, s:b, s:b, s:I, s:I, s:I, s:{}, s:{}}", "model", model, "version", (json_int_t)n, "loaded", 0,
                  "default", 0, "requests", (json_int_t)0, "errors_4xx", (json_int_t)0, "errors_5xx", (json_int_t)0,
                  "histograms", "values");
    json_object_set_new(versions, key, v);
  }
  return v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Per (model, version): requests and errors, each histogram with its quantiles, and
 * every other per-version value; what has more labels stays in "metrics". */
static json_t *serving_versions(json_t *fams, json_t *rest) {
  json_t *versions = json_object();
  const char *name;
  json_t *list;
  /* buckets first, so a histogram's _sum finds its entry */
  for (int pass = 0; pass < 2; pass++) json_object_foreach(fams, name, list) {
    size_t nl = strlen(name), i;
    json_t *s;
    bool bucket = nl > 7 && !strcmp(name + nl - 7, "_bucket");
    if (bucket != (pass == 0)) continue;
    const char *base = !strncmp(name, "slipway_", 8) ? name + 8 : name;
    if (!strcmp(name, "slipway_requests_total")) {
      json_array_foreach(list, i, s) {
        const json_t *l = json_object_get(s, "labels");
        const char *m = json_string_value(json_object_get(l, "model")), *v = json_string_value(json_object_get(l, "version"));
        const char *code = json_string_value(json_object_get(l, "code"));
        if (!m || !v || !*m || !strcmp(v, "0")) continue;
        json_t *e = version_entry(versions, m, v);
        json_int_t n = (json_int_t)json_number_value(json_object_get(s, "value"));
        json_object_set_new(e, "requests", json_integer(json_integer_value(json_object_get(e, "requests")) + n));
        const char *cls = code && code[0] == '4' ? "errors_4xx" : code && code[0] == '5' ? "errors_5xx" : NULL;
        if (cls) json_object_set_new(e, cls, json_integer(json_integer_value(json_object_get(e, cls)) + n));
      }
      json_object_set(rest, name, list);
      continue;
    }
    if (bucket) {
      char hname[256];
      snprintf(hname, sizeof hname, "%.*s", (int)(strlen(base) - 7), base);
      /* group the buckets by version */
      json_t *by = json_object();
      json_array_foreach(list, i, s) {
        const json_t *l = json_object_get(s, "labels");
        const char *m = json_string_value(json_object_get(l, "model")), *v = json_string_value(json_object_get(l, "version"));
        const char *le = json_string_value(json_object_get(l, "le"));
        if (!m || !v || !le || json_object_size(l) != 3) continue;
        json_t *e = version_entry(versions, m, v);
        char key[300];
        snprintf(key, sizeof key, "%s:%s", m, v);
        json_t *b = json_object_get(by, key);
        if (!b) {
          b = json_pack("{s:[], s:[], s:f}", "le", "counts", "count", 0.0);
          json_object_set_new(by, key, b);
          json_object_set(json_object_get(e, "histograms"), hname, b);
        }
        double bound = strtod(le, NULL), cnt = json_number_value(json_object_get(s, "value"));
        if (isinf(bound)) json_object_set_new(b, "count", json_real(cnt));
        else {
          json_array_append_new(json_object_get(b, "le"), json_real(bound));
          json_array_append_new(json_object_get(b, "counts"), json_real(cnt));
        }
      }
      const char *key;
      json_t *b;
      json_object_foreach(by, key, b) {
        size_t n = json_array_size(json_object_get(b, "le"));
        double *le = sw_calloc(n + 1, 2 * sizeof *le), *cum = le ? le + n + 1 : NULL;
        if (!le) continue;
        /* buckets sorted by bound (the text has them in order; a parse of anything else
         * should still give sound numbers) */
        double *pairs = sw_calloc(n + 1, 2 * sizeof *pairs);
        for (size_t k = 0; pairs && k < n; k++) {
          pairs[2 * k] = json_number_value(json_array_get(json_object_get(b, "le"), k));
          pairs[2 * k + 1] = json_number_value(json_array_get(json_object_get(b, "counts"), k));
        }
        if (pairs) qsort(pairs, n, 2 * sizeof *pairs, cmp_double);
        for (size_t k = 0; pairs && k < n; k++) {
          le[k] = pairs[2 * k];
          cum[k] = pairs[2 * k + 1];
        }
        sw_free(pairs);
        double count = json_number_value(json_object_get(b, "count"));
        static const struct {
          const char *name;
          double q;
        } qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
        for (size_t k = 0; k < 3; k++) {
          double x = quantile(qs[k].q, le, cum, n, count);
          json_object_set_new(b, qs[k].name, isfinite(x) ? json_real(x) : json_null());
        }
        sw_free(le);
      }
      json_decref(by);
      continue;
    }
    size_t sl = strlen(name);
    if ((sl > 4 && !strcmp(name + sl - 4, "_sum")) || (sl > 6 && !strcmp(name + sl - 6, "_count"))) {
      /* a histogram's sum and count: the sum goes beside its buckets */
      bool is_sum = sl > 4 && !strcmp(name + sl - 4, "_sum");
      char hname[256];
      snprintf(hname, sizeof hname, "%.*s", (int)(strlen(base) - (is_sum ? 4 : 6)), base);
      bool any = false;
      json_array_foreach(list, i, s) {
        const json_t *l = json_object_get(s, "labels");
        const char *m = json_string_value(json_object_get(l, "model")), *v = json_string_value(json_object_get(l, "version"));
        if (!m || !v || json_object_size(l) != 2) continue;
        json_t *h = json_object_get(json_object_get(version_entry(versions, m, v), "histograms"), hname);
        if (!h) continue;
        any = true;
        if (is_sum) json_object_set(h, "sum", json_object_get(s, "value"));
      }
      if (any) continue;
    }
    /* other per-version values, and everything with more labels as it is */
    bool kept = false;
    json_array_foreach(list, i, s) {
      const json_t *l = json_object_get(s, "labels");
      const char *m = json_string_value(json_object_get(l, "model")), *v = json_string_value(json_object_get(l, "version"));
      size_t nlab = json_object_size(l);
      if (!strcmp(name, "slipway_model_loaded") && m && v) {
        json_t *e = version_entry(versions, m, v);
        json_object_set_new(e, "loaded", json_true());
        const char *d = json_string_value(json_object_get(l, "default"));
        json_object_set_new(e, "default", json_boolean(d && !strcmp(d, "true")));
      } else if (m && v && nlab == 2) {
        json_object_set(json_object_get(version_entry(versions, m, v), "values"), base, json_object_get(s, "value"));
      } else if (!kept) {
        json_object_set(rest, name, list);
        kept = true;
      }
    }
  }
  json_t *arr = json_array();
  const char *key;
  json_t *v;
  json_object_foreach(versions, key, v) json_array_append(arr, v);
  json_decref(versions);
  return arr;
}

/* Reads the alert events that came since the last call into the open-alert map. */
static sw_status update_alerts(sw__api *a) {
  if (!a->alerts && !(a->alerts = json_object())) return sw_error(SW_STATUS_NOMEM, "out of memory");
  for (;;) {
    json_t *events = NULL;
    sw_status st = sw_registry_events(a->reg, a->alerts_after, EVENTS_MAX, &events);
    if (st) return st;
    size_t i, n = json_array_size(events);
    json_t *e;
    json_array_foreach(events, i, e) {
      a->alerts_after = json_integer_value(json_object_get(e, "id"));
      if (strcmp(json_string_value(json_object_get(e, "entity")) ?: "", "alert")) continue;
      const json_t *d = json_object_get(e, "detail");
      const char *fp = json_string_value(json_object_get(d, "fingerprint"));
      const char *action = json_string_value(json_object_get(e, "action")) ?: "";
      if (!fp) continue;
      if (!strcmp(action, "firing"))
        json_object_set_new(a->alerts, fp,
                            json_pack("{s:s, s:O, s:O, s:O, s:O, s:O}", "fingerprint", fp, "labels",
                                      json_object_get(d, "labels") ?: json_null(), "annotations",
                                      json_object_get(d, "annotations") ?: json_null(), "startsAt",
                                      json_object_get(d, "startsAt") ?: json_null(), "at", json_object_get(e, "at"),
                                      "event", json_object_get(e, "id")));
      else if (!strcmp(action, "resolved"))
        json_object_del(a->alerts, fp);
    }
    json_decref(events);
    if (n < EVENTS_MAX) return SW_STATUS_OK;
  }
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void answer_serving(sw__api *a, const sw__api_request *rq, sw__reply *out) {
  sw_buf text = {0};
  if (rq->render_metrics(rq->ctx, &text)) {
    sw_buf_free(&text);
    return reply_error(out, 503, "out of memory");
  }
  json_t *fams = sw__prom_parse(text.data ? (const char *)text.data : "", text.len);
  sw_buf_free(&text);
  json_t *rest = json_object();
  json_t *versions = serving_versions(fams, rest);
  json_decref(fams);
  json_t *alerts = json_array(), *rollouts = json_array();
  if (a->reg) {
    pthread_mutex_lock(&a->mu);
    sw_status st = update_alerts(a);
    const char *k;
    json_t *al;
    if (!st) json_object_foreach(a->alerts, k, al) json_array_append(alerts, al);
    json_t *all = NULL;
    if (!st) st = sw_registry_rollout_list(a->reg, NULL, &all);
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r) {
      const char *state = json_string_value(json_object_get(r, "state")) ?: "";
      if (!strcmp(state, "running") || !strcmp(state, "holding") || !strcmp(state, "pending"))
        json_array_append_new(rollouts, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(r, "id"), "model",
                                                  json_object_get(r, "model"), "incumbent", json_object_get(r, "incumbent"),
                                                  "challenger", json_object_get(r, "challenger"), "mode", json_object_get(r, "mode"),
                                                  "state", json_object_get(r, "state"), "weight", json_object_get(r, "weight"),
                                                  "step", json_object_get(r, "step")));
    }
    json_decref(all);
    pthread_mutex_unlock(&a->mu);
    if (st) SW_WARN("serve: dashboard: the registry: %s", sw_last_error());
  }
  reply_json(out, 200,
             json_pack("{s:I, s:b, s:b, s:o, s:o, s:o, s:o}", "at_ms", (json_int_t)(wall_now() * 1000), "registry", a->registry, "ready",
                       rq->ready, "versions", versions, "metrics", rest, "alerts", alerts, "rollouts", rollouts));
}

/* ---- dispatch --------------------------------------------------------------------- */

static bool registry_view(sw__api *a, sw__reply *out) {
  if (!a->registry) {
    reply_error(out, 404,
                "this server serves --model-file files, not a registry: the registry's views (models, versions, "
                "rollouts, events) need slipway serve --registry");
    return false;
  }
  if (!a->reg) {
    reply_error(out, 503, "the registry cannot be opened (see the server's log)");
    return false;
  }
  return true;
}

void sw__api_answer(sw__api *a, const char *path, const sw__api_request *rq, sw__reply *out) {
  memset(out, 0, sizeof *out);
  const char *seg[8];
  size_t len[8];
  size_t n = sw__path_segments(path, seg, len, 8);
  if (n == 0 || (n == 1 && sw__seg_is(seg[0], len[0], "info"))) {
    return reply_json(out, 200,
                      json_pack("{s:s, s:s, s:b, s:s?, s:[s,s,s,s,s,s,s]}", "name", "slipway", "version", sw_version(),
                                "registry", a->registry, "backend", a->reg ? sw_registry_backend(a->reg) : NULL, "endpoints",
                                "models", "models/{m}/versions/{v}", "models/{m}/versions/{v}/metrics", "rollouts",
                                "rollouts/{id}", "serving", "events"));
  }
  if (n == 1 && sw__seg_is(seg[0], len[0], "serving")) return answer_serving(a, rq, out);
  bool models = sw__seg_is(seg[0], len[0], "models"), rollouts = sw__seg_is(seg[0], len[0], "rollouts"),
       events = sw__seg_is(seg[0], len[0], "events");
  if (!(models && (n == 1 || n == 4 || n == 5)) && !(rollouts && n <= 2) && !(events && n == 1))
    return reply_error(out, 404, "no such endpoint (see /api/v1/info)");
  char ref[SW_MODEL_NAME_MAX + 32], name[SW_MODEL_NAME_MAX + 1];
  int64_t version = 0, id = 0, after = 0, limit = 200;
  if (models && n >= 4) {
    if (!sw_serve_name_valid(seg[1], len[1]))
      return reply_error(out, 400, "invalid model name (1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)");
    if (!sw__seg_is(seg[2], len[2], "versions") || (n == 5 && !sw__seg_is(seg[4], len[4], "metrics")))
      return reply_error(out, 404, "no such endpoint (see /api/v1/info)");
    if (!parse_id(seg[3], len[3], &version) || version <= 0) return reply_error(out, 400, "a version is a positive integer");
    snprintf(name, sizeof name, "%.*s", (int)len[1], seg[1]);
    snprintf(ref, sizeof ref, "%s:%lld", name, (long long)version);
  }
  if (rollouts && n == 2 && (!parse_id(seg[1], len[1], &id) || id <= 0))
    return reply_error(out, 400, "a rollout id is a positive integer");
  const char *model_arg = rollouts ? rq->arg(rq->ctx, "model") : NULL;
  if (model_arg && !sw_serve_name_valid(model_arg, strlen(model_arg))) return reply_error(out, 400, "invalid model name in ?model=");
  if (events) {
    const char *s = rq->arg(rq->ctx, "after"), *l = rq->arg(rq->ctx, "limit");
    if (s && !parse_id(s, strlen(s), &after)) return reply_error(out, 400, "?after= is an event id (a whole number)");
    if (l && (!parse_id(l, strlen(l), &limit) || limit < 1 || limit > EVENTS_MAX))
      return reply_error(out, 400, "?limit= is a count from 1 to %d", EVENTS_MAX);
  }
  if (!registry_view(a, out)) return;
  pthread_mutex_lock(&a->mu);
  sw_status st = SW_STATUS_OK;
  json_t *j = NULL;
  if (models && n == 1) answer_models(a, out);
  else if (models && n == 4) answer_version(a, ref, name, version, out);
  else if (models) answer_metrics(a, ref, out);
  else if (rollouts && n == 2) {
    st = sw_registry_rollout_get(a->reg, id, &j);
    if (st) reply_registry_error(out, st);
    else reply_json(out, 200, rollout_public(j));
  } else if (rollouts) {
    st = sw_registry_rollout_list(a->reg, model_arg, &j);
    while (!st && json_array_size(j) > ROLLOUTS_MAX) json_array_remove(j, json_array_size(j) - 1);
    if (st) reply_registry_error(out, st);
    else {
      rollouts_public(j);
      reply_json(out, 200, json_pack("{s:o}", "rollouts", j));
    }
  } else {
    int64_t latest = 0;
    st = sw_registry_events(a->reg, after, limit, &j);
    if (!st) st = sw_registry_change_counter(a->reg, &latest);
    if (st) {
      json_decref(j);
      reply_registry_error(out, st);
    } else {
      reply_json(out, 200, json_pack("{s:I, s:o}", "latest", (json_int_t)latest, "events", j));
    }
  }
  pthread_mutex_unlock(&a->mu);
}
