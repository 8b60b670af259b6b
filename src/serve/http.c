/* The HTTP front of slipway serve on libmicrohttpd (a pool of epoll threads): routing,
 * TensorFlow Serving's REST API and the v2 protocol, /metrics, feedback and the admin
 * endpoints. An inference request is parsed on the pool thread, its connection
 * suspended while the version's batcher runs it, and resumed to answer, so a pool
 * thread never waits on the engine. */
#include <microhttpd.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/serve_int.h"

#define MAX_CONNECTIONS 4096

struct sw_server {
  sw_serve_config cfg;
  char *token;
  struct MHD_Daemon *d;
  uint16_t port;
  sw__stats *stats;
  sw__manager mgr;
  bool mgr_ready;
  sw__feedback *fb;
  sw__rollouts *ro;
  atomic_long in_flight;
  atomic_bool draining;
  sw__api *api; /* the dashboard's read-only API */
  sw__monitor *monitor; /* NULL without --eval-every */
};

typedef enum {
  R_NONE,
  R_TF_STATUS,
  R_TF_META,
  R_TF_PREDICT,
  R_TF_CLASSIFY,
  R_FEEDBACK,
  R_V2_SERVER,
  R_V2_LIVE,
  R_V2_READY,
  R_V2_MODEL,
  R_V2_MODEL_READY,
  R_V2_INFER,
  R_METRICS,
  R_ADMIN_LOAD,
  R_ADMIN_UNLOAD,
  R_ADMIN_RELOAD,
  R_ADMIN_ROLLOUT,
  R_API,
  R_UI
} route_kind;

static const char *const api_names[] = {"other",     "tf_status", "tf_metadata", "predict",  "classify", "feedback",
                                        "v2_server", "v2_health", "v2_health",   "v2_metadata", "v2_ready", "infer",
                                        "metrics",   "admin",     "admin",       "admin",    "admin",
                                        "api",       "ui"};

typedef struct {
  route_kind kind;
  char model[129];
  int64_t version;
  char label[129];
  int error; /* an HTTP status when the path is wrong */
  const char *why;
} route;

typedef enum { ST_NEW, ST_BODY, ST_WAITING, ST_DONE, ST_ANSWERED } conn_state;

typedef struct {
  sw_server *s;
  struct MHD_Connection *conn;
  conn_state state;
  sw_buf body;
  size_t body_limit;
  bool too_large;
  double t0;
  char id[80];
  route r;
  sw__version *v;
  sw__job job;
  int64_t model_version; /* for X-Model-Version; 0 none */
  const char *method;      /* this callback's method (MHD's, valid during the callback) */
  sw__route rt;            /* how a rollout routed it */
  const char *url;        /* this callback's URL path (MHD's, valid during the callback) */
  const sw__reply *reply; /* the dashboard's caching headers for send_buf */
} conn_ctx;

/* ---- responses ------------------------------------------------------------------- */

static void free_buf(void *p) { sw_free(p); }

static enum MHD_Result send_buf(conn_ctx *c, int code, const char *type, sw_buf *b, size_t header_len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer_with_free_callback(b->len, b->data ? (void *)b->data : (void *)"", b->data ? free_buf : NULL);
  if (!resp) {
    sw_buf_free(b);
    return MHD_NO;
  }
  b->data = NULL;
  b->len = b->cap = 0;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(resp, "X-Request-Id", c->id);
  char num[24];
  if (c->model_version > 0) sw__fmt_int(num, c->model_version);
  MHD_add_response_header(resp, "X-Model-Version", c->model_version > 0 ? num : "none");
  if (header_len) {
    sw__fmt_int(num, (int64_t)header_len);
    MHD_add_response_header(resp, "Inference-Header-Content-Length", num);
  }
  if (code == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  if (c->reply && c->reply->etag[0]) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, c->reply->etag);
  if (c->reply && c->reply->cache_control) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, c->reply->cache_control);
  if (c->reply && c->reply->location) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, c->reply->location);
  if (atomic_load(&c->s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result r = MHD_queue_response(c->conn, (unsigned)code, resp);
  MHD_destroy_response(resp);
  double took = sw_now() - c->t0;
  sw__stats_request(c->s->stats, c->r.model, c->model_version, api_names[c->r.kind], code, c->v ? c->v->stats : NULL, took);
  /* the rollout's evidence: answers and server errors, not the client's mistakes or 429s */
  if (c->rt.slot && (code == MHD_HTTP_OK || code >= 500)) sw__rollouts_observe(c->s->ro, &c->rt, took * 1e3, code >= 500);
  return r;
}

static enum MHD_Result send_json(conn_ctx *c, int code, json_t *j) {
  sw_buf b = {0};
  char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
  json_decref(j);
  if (text) sw_buf_append(&b, text, strlen(text));
  free(text);
  return send_buf(c, code, "application/json", &b, 0);
}

static enum MHD_Result send_error(conn_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(conn_ctx *c, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return send_json(c, code, json_pack("{s:s}", "error", msg));
}

/* ---- routing ------------------------------------------------------------------------ */

static bool parse_version(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 18) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return v > 0;
}

/* Splits path into at most max segments (pointers into it, with lengths); the count
 * goes one past max when there are more. */
size_t sw__path_segments(const char *path, const char **seg, size_t *len, size_t max) {
  size_t n = 0;
  while (*path == '/') path++;
  while (*path && n < max + 1) {
    const char *e = strchr(path, '/');
    size_t l = e ? (size_t)(e - path) : strlen(path);
    if (n < max) {
      seg[n] = path;
      len[n] = l;
    }
    n++;
    path += l;
    while (*path == '/') path++;
  }
  return n;
}

/* model [versions V | labels L] from segments; returns how many it used, 0 on error. */
static size_t model_ref(route *r, const char **seg, size_t *len, size_t n, bool labels_ok) {
  if (n < 1) return 0;
  if (!sw_serve_name_valid(seg[0], len[0])) {
    r->error = MHD_HTTP_BAD_REQUEST;
    r->why = "invalid model name (1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)";
    return 0;
  }
  memcpy(r->model, seg[0], len[0]);
  r->model[len[0]] = '\0';
  if (n >= 3 && sw__seg_is(seg[1], len[1], "versions")) {
    if (!parse_version(seg[2], len[2], &r->version)) {
      r->error = MHD_HTTP_BAD_REQUEST;
      r->why = "a version is a positive integer";
      return 0;
    }
    return 3;
  }
  if (labels_ok && n >= 3 && sw__seg_is(seg[1], len[1], "labels")) {
    if (!sw_serve_name_valid(seg[2], len[2])) {
      r->error = MHD_HTTP_BAD_REQUEST;
      r->why = "invalid label";
      return 0;
    }
    memcpy(r->label, seg[2], len[2]);
    r->label[len[2]] = '\0';
    return 3;
  }
  return 1;
}

static void parse_route(const char *url, const char *method, route *r) {
  memset(r, 0, sizeof *r);
  bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
  const char *seg[8];
  size_t len[8];
  size_t n = sw__path_segments(url, seg, len, 8);
  /* the dashboard: its pages (GET or HEAD) and its read-only API (GET) */
  if (n == 0 || sw__seg_is(seg[0], len[0], "ui") || sw__seg_is(seg[0], len[0], "api")) {
    r->kind = n && sw__seg_is(seg[0], len[0], "api") ? R_API : R_UI;
    if (!get && !(r->kind == R_UI && !strcmp(method, "HEAD"))) {
      r->error = MHD_HTTP_METHOD_NOT_ALLOWED;
      r->why = "use GET";
    }
    return;
  }
  if (n > 8) goto not_found;
  route_kind want_get = R_NONE, want_post = R_NONE;
  if (n >= 3 && sw__seg_is(seg[0], len[0], "v1") && sw__seg_is(seg[1], len[1], "models")) {
    /* the verb follows the last segment after ':' (model names and labels have none) */
    const char *colon = memchr(seg[n - 1], ':', len[n - 1]);
    size_t verb_len = 0;
    const char *verb = NULL;
    if (colon) {
      verb = colon + 1;
      verb_len = len[n - 1] - (size_t)(verb - seg[n - 1]);
      len[n - 1] = (size_t)(colon - seg[n - 1]);
    }
    size_t used = model_ref(r, seg + 2, len + 2, n - 2, true);
    if (!used) goto bad;
    size_t rest = n - 2 - used;
    if (verb) {
      if (rest) goto not_found;
      if (sw__seg_is(verb, verb_len, "predict")) want_post = R_TF_PREDICT;
      else if (sw__seg_is(verb, verb_len, "classify")) want_post = R_TF_CLASSIFY;
      else if (sw__seg_is(verb, verb_len, "feedback") && used == 1) want_post = R_FEEDBACK;
      else goto not_found;
    } else if (rest == 0) {
      want_get = R_TF_STATUS;
    } else if (rest == 1 && sw__seg_is(seg[n - 1], len[n - 1], "metadata")) {
      want_get = R_TF_META;
    } else {
      goto not_found;
    }
  } else if (n >= 1 && sw__seg_is(seg[0], len[0], "v2")) {
    if (n == 1) want_get = R_V2_SERVER;
    else if (n == 3 && sw__seg_is(seg[1], len[1], "health") && sw__seg_is(seg[2], len[2], "live")) want_get = R_V2_LIVE;
    else if (n == 3 && sw__seg_is(seg[1], len[1], "health") && sw__seg_is(seg[2], len[2], "ready")) want_get = R_V2_READY;
    else if (n >= 3 && sw__seg_is(seg[1], len[1], "models")) {
      size_t used = model_ref(r, seg + 2, len + 2, n - 2, false);
      if (!used) goto bad;
      size_t rest = n - 2 - used;
      if (rest == 0) want_get = R_V2_MODEL;
      else if (rest == 1 && sw__seg_is(seg[n - 1], len[n - 1], "ready")) want_get = R_V2_MODEL_READY;
      else if (rest == 1 && sw__seg_is(seg[n - 1], len[n - 1], "infer")) want_post = R_V2_INFER;
      else goto not_found;
    } else {
      goto not_found;
    }
  } else if (n == 1 && sw__seg_is(seg[0], len[0], "metrics")) {
    want_get = R_METRICS;
  } else if (n >= 1 && sw__seg_is(seg[0], len[0], "admin")) {
    if (n == 4 && sw__seg_is(seg[1], len[1], "models") && sw__seg_is(seg[3], len[3], "load")) want_post = R_ADMIN_LOAD;
    else if (n == 4 && sw__seg_is(seg[1], len[1], "models") && sw__seg_is(seg[3], len[3], "unload")) want_post = R_ADMIN_UNLOAD;
    else if (n == 2 && sw__seg_is(seg[1], len[1], "reload")) want_post = R_ADMIN_RELOAD;
    else if (n >= 2 && n <= 4 && sw__seg_is(seg[1], len[1], "rollouts")) {
      /* /admin/rollouts, /admin/rollouts/{m}, /admin/rollouts/{m}/abort|promote; the
       * action goes in label, the method is checked by the rollouts' own handler */
      if (n >= 3 && !model_ref(r, seg + 2, len + 2, 1, false)) goto bad;
      if (n == 4) {
        if (sw__seg_is(seg[3], len[3], "abort")) strcpy(r->label, "abort");
        else if (sw__seg_is(seg[3], len[3], "promote")) strcpy(r->label, "promote");
        else goto not_found;
      }
      r->kind = R_ADMIN_ROLLOUT;
      return;
    } else goto not_found;
    if (want_post != R_ADMIN_RELOAD) {
      if (!model_ref(r, seg + 2, len + 2, 1, false)) goto bad;
    }
  } else {
    goto not_found;
  }
  if ((want_get && get) || (want_post && post)) {
    r->kind = want_get && get ? want_get : want_post;
    return;
  }
  r->kind = want_get ? want_get : want_post;
  r->error = MHD_HTTP_METHOD_NOT_ALLOWED;
  r->why = want_get ? "use GET" : "use POST";
  return;
not_found:
  r->kind = R_NONE;
  r->error = MHD_HTTP_NOT_FOUND;
  r->why = "no such endpoint";
  r->model[0] = '\0';
  return;
bad:
  r->kind = R_NONE;
  r->model[0] = '\0';
}

/* ---- encoding outputs --------------------------------------------------------------- */

static void encode_predict(const sw__version *v, const sw__job *job, sw_buf *b) {
  sw_serve_encode_predict(&v->sig, job->inputs.rows, job->inputs.columnar, job->out, b);
}

/* Class probabilities of row r of the first output: itself when it is a softmax, else
 * softmax of it; one value p is a sigmoid logit of class 1. */
static void encode_classify(const sw__version *v, const sw__job *job, sw_buf *b) {
  const sw_serve_io *io = &v->sig.out[0];
  sw_buf_append(b, "{\"results\":[", 12);
  for (int64_t r = 0; r < job->inputs.rows; r++) {
    if (r) sw_buf_append(b, ",", 1);
    sw_buf_append(b, "[", 1);
    int64_t k = io->per;
    double probs_small[2], *probs = NULL;
    if (io->dtype != SW_DTYPE_F32) {
      sw_buf_append(b, "]", 1);
      continue;
    }
    const float *x = (const float *)job->out[0] + r * k;
    if (k == 1) {
      double p = v->probs ? x[0] : 1 / (1 + exp(-(double)x[0]));
      probs_small[0] = 1 - p;
      probs_small[1] = p;
      probs = probs_small;
      k = 2;
    } else {
      probs = sw_malloc((size_t)k * sizeof *probs);
      if (!probs) {
        sw_buf_append(b, "]", 1);
        continue;
      }
      double mx = -INFINITY, sum = 0;
      for (int64_t i = 0; i < k; i++) mx = x[i] > mx ? x[i] : mx;
      for (int64_t i = 0; i < k; i++) {
        probs[i] = v->probs ? x[i] : exp((double)x[i] - mx);
        sum += probs[i];
      }
      if (!v->probs)
        for (int64_t i = 0; i < k; i++) probs[i] /= sum;
    }
    for (int64_t i = 0; i < k; i++) {
      if (i) sw_buf_append(b, ",", 1);
      sw_buf_append(b, "[", 1);
      if ((size_t)i < v->n_classes) sw__put_string(b, v->class_names[i]);
      else sw_buf_printf(b, "\"%lld\"", (long long)i);
      if (isfinite(probs[i])) sw_buf_printf(b, ",%.9g]", probs[i]);
      else sw_buf_append(b, ",null]", 6);
    }
    if (probs != probs_small) sw_free(probs);
    sw_buf_append(b, "]", 1);
  }
  sw_buf_append(b, "]}", 2);
}

/* The v2 answer: JSON, then the binary outputs' bytes in order; *header_len is the JSON's
 * length when any output is binary (0 otherwise). */
static void encode_infer(const sw__version *v, const sw__job *job, sw_buf *b, size_t *header_len) {
  const sw_serve_signature *sig = &v->sig;
  int64_t rows = job->inputs.rows;
  sw_buf_append(b, "{\"model_name\":", 14);
  sw__put_string(b, v->model);
  static const char mv[] = ",\"model_version\":\"";
  sw_buf_append(b, mv, sizeof mv - 1);
  sw__put_int(b, v->version);
  sw_buf_append(b, "\"", 1);
  if (job->inputs.id) {
    sw_buf_append(b, ",\"id\":", 6);
    sw__put_string(b, job->inputs.id);
  }
  sw_buf_append(b, ",\"outputs\":[", 12);
  bool first = true, any_binary = false;
  for (size_t k = 0; k < sig->n_out; k++) {
    if (!job->inputs.want_out[k]) continue;
    const sw_serve_io *io = &sig->out[k];
    if (!first) sw_buf_append(b, ",", 1);
    first = false;
    sw_buf_append(b, "{\"name\":", 8);
    sw__put_string(b, io->name);
    const char *dt = io->dtype == SW_DTYPE_F32 ? ",\"datatype\":\"FP32\",\"shape\":[" : ",\"datatype\":\"INT64\",\"shape\":[";
    sw_buf_append(b, dt, strlen(dt));
    sw__put_int(b, rows);
    for (int d = 0; d < io->rank; d++) {
      sw_buf_append(b, ",", 1);
      sw__put_int(b, io->shape[d]);
    }
    sw_buf_append(b, "]", 1);
    int64_t n = rows * io->per;
    if (job->inputs.binary_out[k]) {
      any_binary = true;
      static const char bds[] = ",\"parameters\":{\"binary_data_size\":";
      sw_buf_append(b, bds, sizeof bds - 1);
      sw__put_int(b, n * (int64_t)sw_dtype_size(io->dtype));
      sw_buf_append(b, "}}", 2);
      continue;
    }
    sw_buf_append(b, ",\"data\":[", 9);
    for (int64_t i = 0; i < n; i++) {
      if (i) sw_buf_append(b, ",", 1);
      sw__put_number(b, io->dtype, job->out[k], i);
    }
    sw_buf_append(b, "]}", 2);
  }
  sw_buf_append(b, "]}", 2);
  *header_len = any_binary ? b->len : 0;
  for (size_t k = 0; any_binary && k < sig->n_out; k++)
    if (job->inputs.want_out[k] && job->inputs.binary_out[k])
      sw_buf_append(b, job->out[k], (size_t)(rows * sig->out[k].per) * sw_dtype_size(sig->out[k].dtype));
}

/* What each row predicted, for the feedback buffer. */
static void record_feedback(conn_ctx *c) {
  const sw__version *v = c->v;
  const sw_serve_io *io = &v->sig.out[0];
  int64_t rows = c->job.inputs.rows;
  if (rows > 4096 || io->dtype != SW_DTYPE_F32) return;
  double pred[4096];
  const float *x = c->job.out[0];
  bool regression = io->per == 1;
  for (int64_t r = 0; r < rows; r++) {
    if (regression) {
      pred[r] = x[r];
      continue;
    }
    int64_t best = 0;
    for (int64_t i = 1; i < io->per; i++)
      if (x[r * io->per + i] > x[r * io->per + best]) best = i;
    pred[r] = (double)best;
  }
  sw__feedback_record_arm(c->s->fb, c->id, v->stats, pred, rows, regression, c->rt.slot ? &c->rt.arm : NULL);
}

/* ---- metadata answers ---------------------------------------------------------------- */

static const char *tf_dtype(sw_dtype t) { return t == SW_DTYPE_F32 ? "DT_FLOAT" : "DT_INT64"; }

static json_t *tf_tensor(const sw_serve_io *io) {
  json_t *dims = json_array();
  json_array_append_new(dims, json_pack("{s:s,s:s}", "size", "-1", "name", ""));
  for (int d = 0; d < io->rank; d++) {
    char sz[32];
    snprintf(sz, sizeof sz, "%lld", (long long)io->shape[d]);
    json_array_append_new(dims, json_pack("{s:s,s:s}", "size", sz, "name", ""));
  }
  return json_pack("{s:s,s:{s:o,s:b},s:s}", "dtype", tf_dtype(io->dtype), "tensor_shape", "dim", dims, "unknown_rank", 0,
                   "name", io->name);
}

static json_t *v2_tensor(const sw_serve_io *io) {
  json_t *shape = json_array();
  json_array_append_new(shape, json_integer(-1));
  for (int d = 0; d < io->rank; d++) json_array_append_new(shape, json_integer(io->shape[d]));
  return json_pack("{s:s,s:s,s:o}", "name", io->name, "datatype", io->dtype == SW_DTYPE_F32 ? "FP32" : "INT64", "shape", shape);
}

static enum MHD_Result answer_tf_status(conn_ctx *c) {
  json_t *list = json_array();
  if (c->r.version || c->r.label[0]) {
    char ver[32];
    snprintf(ver, sizeof ver, "%lld", (long long)c->v->version);
    json_array_append_new(list, json_pack("{s:s,s:s,s:{s:s,s:s}}", "version", ver, "state", "AVAILABLE", "status",
                                          "error_code", "OK", "error_message", ""));
  } else {
    sw__model *md = sw__manager_find(&c->s->mgr, c->r.model);
    pthread_mutex_lock(&md->mu);
    for (size_t i = 0; i < md->n_versions; i++) {
      char ver[32];
      snprintf(ver, sizeof ver, "%lld", (long long)md->versions[i]->version);
      json_array_append_new(list, json_pack("{s:s,s:s,s:{s:s,s:s}}", "version", ver, "state", "AVAILABLE", "status",
                                            "error_code", "OK", "error_message", ""));
    }
    pthread_mutex_unlock(&md->mu);
  }
  return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "model_version_status", list));
}

static enum MHD_Result answer_tf_meta(conn_ctx *c) {
  const sw_serve_signature *sig = &c->v->sig;
  json_t *ins = json_object(), *outs = json_object();
  for (size_t k = 0; k < sig->n_in; k++) json_object_set_new(ins, sig->in[k].name, tf_tensor(&sig->in[k]));
  for (size_t k = 0; k < sig->n_out; k++) json_object_set_new(outs, sig->out[k].name, tf_tensor(&sig->out[k]));
  char ver[32];
  snprintf(ver, sizeof ver, "%lld", (long long)c->v->version);
  json_t *classes = json_array();
  for (size_t i = 0; i < c->v->n_classes; i++) json_array_append_new(classes, json_string(c->v->class_names[i]));
  return send_json(c, MHD_HTTP_OK,
                   json_pack("{s:{s:s,s:s,s:s},s:{s:{s:{s:{s:o,s:o,s:s}}},s:o,s:s}}", "model_spec", "name", c->r.model,
                             "signature_name", "", "version", ver, "metadata", "signature_def", "signature_def",
                             "serving_default", "inputs", ins, "outputs", outs, "method_name",
                             "tensorflow/serving/predict", "class_names", classes, "sha256", c->v->sha256));
}

static enum MHD_Result answer_v2_model(conn_ctx *c) {
  const sw_serve_signature *sig = &c->v->sig;
  json_t *versions = json_array();
  if (c->r.version) {
    char ver[32];
    snprintf(ver, sizeof ver, "%lld", (long long)c->v->version);
    json_array_append_new(versions, json_string(ver));
  } else {
    sw__model *md = sw__manager_find(&c->s->mgr, c->r.model);
    pthread_mutex_lock(&md->mu);
    for (size_t i = 0; i < md->n_versions; i++) {
      char ver[32];
      snprintf(ver, sizeof ver, "%lld", (long long)md->versions[i]->version);
      json_array_append_new(versions, json_string(ver));
    }
    pthread_mutex_unlock(&md->mu);
  }
  json_t *ins = json_array(), *outs = json_array();
  for (size_t k = 0; k < sig->n_in; k++) json_array_append_new(ins, v2_tensor(&sig->in[k]));
  for (size_t k = 0; k < sig->n_out; k++) json_array_append_new(outs, v2_tensor(&sig->out[k]));
  return send_json(c, MHD_HTTP_OK,
                   json_pack("{s:s,s:o,s:s,s:o,s:o}", "name", c->r.model, "versions", versions, "platform", "onnx", "inputs",
                             ins, "outputs", outs));
}

/* ---- admin ------------------------------------------------------------------------------- */

static bool token_ok(conn_ctx *c) {
  const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncmp(h, "Bearer ", 7)) return false;
  const char *given = h + 7, *want = c->s->token;
  size_t n = strlen(want);
  if (strlen(given) != n) return false;
  unsigned char diff = 0; /* the same time whatever the first wrong byte */
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(given[i] ^ want[i]);
  return diff == 0;
}

static enum MHD_Result answer_admin(conn_ctx *c) {
  if (!token_ok(c)) return send_error(c, MHD_HTTP_UNAUTHORIZED, "admin endpoints need Authorization: Bearer TOKEN");
  sw_server *s = c->s;
  if (c->r.kind == R_ADMIN_ROLLOUT) {
    json_t *answer = NULL;
    int code = sw__rollouts_admin(s->ro, c->method, c->r.model, c->r.label, c->body.data ? (const char *)c->body.data : "",
                                  c->body.len, &answer);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
      json_decref(answer);
      return send_error(c, code, "%s", strcmp(c->method, "GET") ? "use GET" : "use POST");
    }
    return answer ? send_json(c, code, answer) : send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  }
  sw_status st;
  if (c->r.kind == R_ADMIN_RELOAD) {
    st = sw__manager_reload(&s->mgr);
    if (st) return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "reload failed (see the server's log)");
    return send_json(c, MHD_HTTP_OK, json_pack("{s:b}", "reloaded", 1));
  }
  json_error_t jerr;
  json_t *j = json_loadb((const char *)c->body.data, c->body.len, 0, &jerr);
  const json_t *ver = json_object_get(j, "version");
  int64_t version = 0;
  if (json_is_integer(ver)) version = json_integer_value(ver);
  else if (json_is_string(ver)) parse_version(json_string_value(ver), strlen(json_string_value(ver)), &version);
  json_decref(j);
  if (version <= 0) return send_error(c, MHD_HTTP_BAD_REQUEST, "the body needs {\"version\": V} with V a positive integer");
  if (c->r.kind == R_ADMIN_LOAD) st = sw__manager_load(&s->mgr, c->r.model, version);
  else st = sw__manager_unload(&s->mgr, c->r.model, version);
  if (st == SW_STATUS_NOT_FOUND) return send_error(c, MHD_HTTP_NOT_FOUND, "%s", sw_last_error());
  if (st) return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", sw_last_error());
  return send_json(c, MHD_HTTP_OK,
                   json_pack("{s:s,s:I,s:s}", "model", c->r.model, "version", (json_int_t)version, "state",
                             c->r.kind == R_ADMIN_LOAD ? "AVAILABLE" : "END"));
}

/* ---- the dashboard ------------------------------------------------------------------------- */

/* The /metrics text: the server's counters, then the monitor's families, then the
 * rollouts'. */
static sw_status render_metrics(sw_server *s, sw_buf *b) {
  sw_status st = sw__stats_render(s->stats, &s->mgr, b);
  if (!st && s->monitor) st = sw__monitor_render(s->monitor, b);
  if (!st) sw__rollouts_render(s->ro, b);
  if (!st && !b->data) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  return st;
}

static sw_status api_metrics(void *ctx, sw_buf *b) { return render_metrics(((conn_ctx *)ctx)->s, b); }

static const char *query_arg(void *ctx, const char *name) {
  return MHD_lookup_connection_value(((conn_ctx *)ctx)->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result answer_dashboard(conn_ctx *c) {
  sw__reply rep;
  if (c->r.kind == R_UI) {
    sw__ui_answer(c->url, MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH), &rep);
  } else if (strncmp(c->url, "/api/v1", 7) || (c->url[7] && c->url[7] != '/')) {
    return send_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint (the dashboard's API is /api/v1/)");
  } else {
    sw_server *s = c->s;
    sw__api_request rq = {api_metrics, query_arg, c, s->mgr_ready && atomic_load(&s->mgr.ready) && !atomic_load(&s->draining)};
    sw__api_answer(s->api, c->url + 7, &rq, &rep);
  }
  c->reply = &rep;
  enum MHD_Result r = send_buf(c, rep.status, rep.content_type, &rep.body, 0);
  c->reply = NULL;
  return r;
}

/* ---- inference -------------------------------------------------------------------------- */

static void job_done(void *arg) {
  conn_ctx *c = arg;
  MHD_resume_connection(c->conn);
}

static int status_code(sw_status st) {
  switch (st) {
    case SW_STATUS_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
    case SW_STATUS_FORMAT:
    case SW_STATUS_INVALID:
    case SW_STATUS_RANGE: return MHD_HTTP_BAD_REQUEST;
    case SW_STATUS_NOMEM: return MHD_HTTP_SERVICE_UNAVAILABLE;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
  }
}

static enum MHD_Result finish_inference(conn_ctx *c);

static enum MHD_Result start_inference(conn_ctx *c) {
  const char *body = c->body.data ? (const char *)c->body.data : "";
  sw_status st;
  if (c->r.kind == R_TF_PREDICT) st = sw_serve_parse_predict(body, c->body.len, &c->v->sig, &c->job.inputs);
  else if (c->r.kind == R_TF_CLASSIFY) st = sw_serve_parse_classify(body, c->body.len, &c->v->sig, &c->job.inputs);
  else {
    size_t header_len = 0;
    const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (h) {
      char *end;
      unsigned long long v = strtoull(h, &end, 10);
      if (!*h || *end || v > c->body.len) return send_error(c, MHD_HTTP_BAD_REQUEST, "bad Inference-Header-Content-Length");
      header_len = (size_t)v;
    }
    st = sw_serve_parse_infer(body, c->body.len, header_len, &c->v->sig, &c->job.inputs);
  }
  if (st) return send_error(c, status_code(st), "%s", sw_last_error());
  if (c->s->cfg.n_faults && sw__fault_fails(&c->s->cfg, c->v->model, c->v->version))
    return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "injected failure (--debug-fail, for tests)");
  if (c->s->monitor) sw__monitor_observe(c->s->monitor, c->v, &c->job.inputs);
  if (sw__version_run_inline(c->v, &c->job)) {
    c->state = ST_DONE;
    return finish_inference(c);
  }
  c->job.notify = job_done;
  c->job.arg = c;
  c->state = ST_WAITING;
  /* suspended before it is queued: the batcher may resume it at once */
  MHD_suspend_connection(c->conn);
  if (sw__version_submit(c->v, &c->job)) {
    c->state = ST_DONE;
    c->job.status = SW_STATUS_REFUSED;
    MHD_resume_connection(c->conn);
  }
  return MHD_YES;
}

static enum MHD_Result finish_inference(conn_ctx *c) {
  if (c->job.status == SW_STATUS_REFUSED)
    return send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "the queue of model '%s' version %lld is full", c->r.model,
                      (long long)c->v->version);
  if (c->job.status) return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", c->job.error);
  sw_buf b = {0};
  size_t header_len = 0;
  if (c->r.kind == R_TF_PREDICT) encode_predict(c->v, &c->job, &b);
  else if (c->r.kind == R_TF_CLASSIFY) encode_classify(c->v, &c->job, &b);
  else encode_infer(c->v, &c->job, &b, &header_len);
  record_feedback(c);
  if (c->rt.mirror) sw__rollouts_mirror(c->s->ro, &c->rt, c->v, &c->job, c->id);
  if (c->s->cfg.n_faults) {
    double ms = sw__fault_delay_ms(&c->s->cfg, c->v->model, c->v->version);
    if (ms > 0) usleep((useconds_t)(ms * 1e3)); /* --debug-delay, for tests: this thread waits */
  }
  if (!b.data) return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  return send_buf(c, MHD_HTTP_OK, header_len ? "application/octet-stream" : "application/json", &b, header_len);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const char *conn_header(void *ctx, const char *name) {
  conn_ctx *c = ctx;
  return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

static enum MHD_Result dispatch(conn_ctx *c) {
  sw_server *s = c->s;
  route *r = &c->r;
  if (r->error) return send_error(c, r->error, "%s", r->why);
  switch (r->kind) {
    case R_V2_SERVER:
      return send_json(c, MHD_HTTP_OK,
                       json_pack("{s:s,s:s,s:[s]}", "name", "slipway", "version", sw_version(), "extensions", "binary_tensor_data"));
    case R_V2_LIVE: return send_json(c, MHD_HTTP_OK, json_pack("{s:b}", "live", 1));
    case R_V2_READY: {
      bool ready = s->mgr_ready && atomic_load(&s->mgr.ready) && !atomic_load(&s->draining);
      return send_json(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, json_pack("{s:b}", "ready", ready));
    }
    case R_METRICS: {
      sw_buf b = {0};
      if (render_metrics(s, &b)) {
        sw_buf_free(&b);
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
      }
      return send_buf(c, MHD_HTTP_OK, "text/plain; version=0.0.4", &b, 0);
    }
    case R_FEEDBACK: {
      if (!sw__manager_find(&s->mgr, r->model)) return send_error(c, MHD_HTTP_NOT_FOUND, "model '%s' is not served", r->model);
      sw_feedback_item *items = NULL;
      size_t n = 0;
      sw_status st = sw_serve_parse_feedback(c->body.data ? (const char *)c->body.data : "", c->body.len, &items, &n);
      if (st) return send_error(c, status_code(st), "%s", sw_last_error());
      sw__feedback_result fr;
      sw__feedback_join(s->fb, r->model, items, n, &fr);
      sw_feedback_items_free(items, n);
      return send_json(c, MHD_HTTP_OK,
                       json_pack("{s:I,s:I,s:I,s:I,s:I}", "joined", (json_int_t)fr.joined, "unknown", (json_int_t)fr.unknown,
                                 "expired", (json_int_t)fr.expired, "duplicate", (json_int_t)fr.duplicate, "invalid",
                                 (json_int_t)fr.invalid));
    }
    case R_ADMIN_LOAD:
    case R_ADMIN_UNLOAD:
    case R_ADMIN_RELOAD:
    case R_ADMIN_ROLLOUT: return answer_admin(c);
    case R_API:
    case R_UI: return answer_dashboard(c);
    default: break;
  }
  /* the rest name a model version; inference that names none (or the rollout's alias) is
   * the rollout router's to place */
  int64_t version = r->version;
  const char *label = r->label[0] ? r->label : NULL;
  bool infer = r->kind == R_TF_PREDICT || r->kind == R_TF_CLASSIFY || r->kind == R_V2_INFER;
  const char *asked_label = label;
  if (infer && !version && sw__rollouts_route(s->ro, r->model, label, conn_header, c, &version, &c->rt)) label = NULL;
  sw_status st = sw__manager_acquire(&s->mgr, r->model, version, label, &c->v);
  if (st == SW_STATUS_NOT_FOUND && c->rt.slot) {
    /* the rollout ended (and its version went) between routing and here: this request
     * is served as if there had been no rollout, and is no evidence */
    memset(&c->rt, 0, sizeof c->rt);
    st = sw__manager_acquire(&s->mgr, r->model, 0, asked_label, &c->v);
  }
  if (st) {
    if (r->kind == R_V2_MODEL_READY && st == SW_STATUS_NOT_FOUND && sw__manager_find(&s->mgr, r->model))
      return send_json(c, MHD_HTTP_OK, json_pack("{s:s,s:b}", "name", r->model, "ready", 0));
    return send_error(c, status_code(st), "%s", sw_last_error());
  }
  c->model_version = c->v->version;
  switch (r->kind) {
    case R_TF_STATUS: return answer_tf_status(c);
    case R_TF_META: return answer_tf_meta(c);
    case R_V2_MODEL: return answer_v2_model(c);
    case R_V2_MODEL_READY: return send_json(c, MHD_HTTP_OK, json_pack("{s:s,s:b}", "name", r->model, "ready", 1));
    case R_TF_PREDICT:
    case R_TF_CLASSIFY:
    case R_V2_INFER: return start_inference(c);
    default: return send_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
  }
}

static bool request_id_ok(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 64) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
      return false;
  }
  return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *http_version, const char *upload, size_t *upload_size, void **con_cls) {
  sw_server *s = cls;
  conn_ctx *c = *con_cls;
  if (!c) {
    c = sw_calloc(1, sizeof *c);
    if (!c) return MHD_NO;
    *con_cls = c;
    atomic_fetch_add(&s->in_flight, 1);
    c->s = s;
    c->conn = conn;
    c->t0 = sw_now();
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_ok(rid)) snprintf(c->id, sizeof c->id, "%s", rid);
    else sw__feedback_new_id(s->fb, c->id);
    parse_route(url, method, &c->r);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
      char *end;
      unsigned long long n = strtoull(cl, &end, 10);
      if (n > s->cfg.max_body) {
        c->state = ST_ANSWERED;
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes", s->cfg.max_body);
      }
      if (n && sw_buf_reserve(&c->body, (size_t)n + 1)) c->too_large = true;
    }
    c->state = ST_BODY;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!c->too_large) {
      if (c->body.len + *upload_size > s->cfg.max_body || sw_buf_append(&c->body, upload, *upload_size)) {
        c->too_large = true;
        sw_buf_free(&c->body);
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (c->state == ST_WAITING) {
    c->state = ST_DONE;
    return finish_inference(c);
  }
  if (c->state == ST_DONE) return finish_inference(c);
  if (c->state == ST_ANSWERED) return MHD_YES;
  if (c->too_large) return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes", s->cfg.max_body);
  c->url = url;
  c->method = method;
  return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
  sw_server *s = cls;
  conn_ctx *c = *con_cls;
  if (!c) return;
  sw__job_clear(&c->job, c->v);
  sw__version_unref(c->v);
  sw_buf_free(&c->body);
  sw_free(c);
  *con_cls = NULL;
  atomic_fetch_sub(&s->in_flight, 1);
}

/* ---- the server ------------------------------------------------------------------------ */

void sw_serve_config_default(sw_serve_config *c) {
  memset(c, 0, sizeof *c);
  c->listen = "127.0.0.1:8501";
  c->compute_threads = 1;
  c->max_batch = 32;
  c->max_queue = 256;
  c->max_body = 64u << 20;
  c->timeout_s = 30;
  c->poll_s = 2;
  c->feedback_capacity = 100000;
  c->feedback_ttl_s = 3600;
}

sw_status sw__resolve_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len) {
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || !colon[1]) return sw_error(SW_STATUS_INVALID, "--listen '%s': give HOST:PORT", listen);
  char host[256];
  size_t hl = (size_t)(colon - listen);
  if (hl >= sizeof host) return sw_error(SW_STATUS_INVALID, "--listen '%s': host too long", listen);
  memcpy(host, listen, hl);
  host[hl] = '\0';
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = '\0';
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc || !res) return sw_error(SW_STATUS_INVALID, "--listen '%s': %s", listen, gai_strerror(rc));
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return SW_STATUS_OK;
}

sw_status sw_server_start(const sw_serve_config *cfg, sw_catalog cat, sw_server **out) {
  *out = NULL;
  sw_server *s = sw_calloc(1, sizeof *s);
  if (!s) {
    sw_catalog_close(&cat);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  s->cfg = *cfg;
  atomic_init(&s->in_flight, 0);
  atomic_init(&s->draining, false);
  sw_status st = SW_STATUS_OK;
  if (!cfg->admin_token || strlen(cfg->admin_token) < 16) st = sw_error(SW_STATUS_INVALID, "the admin token must have at least 16 characters");
  if (!st && !(s->token = sw_strdup(cfg->admin_token))) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st) st = sw__stats_new(&s->stats);
  if (!st) st = sw__api_new(cfg->from_registry, cfg->registry_url, cfg->registry_home, &s->api);
  if (!st) st = sw__feedback_new(cfg->feedback_capacity, cfg->feedback_ttl_s, &s->fb);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned pool = (unsigned)(cfg->http_threads > 0 ? cfg->http_threads : (cores > 0 ? cores : 2));
  /* a lane per HTTP thread: a request runs on the thread that parsed it */
  sw__version_opts o = {cfg->compute_threads, cfg->max_batch, cfg->max_queue, cfg->batch_timeout_us, (int)pool};
  if (!st) st = sw__manager_init(&s->mgr, cat, &o, s->stats, cfg->only, cfg->n_only);
  if (st) {
    sw_catalog_close(&cat);
    sw_server_free(s);
    return st;
  }
  s->mgr_ready = true;
  st = sw__rollouts_new(&s->cfg, &s->mgr, s->fb, &s->ro);
  if (st) {
    sw_server_free(s);
    return st;
  }
  if (cfg->monitor) {
    st = sw__monitor_new(cfg->monitor, &s->mgr, &s->monitor);
    if (!st) sw__feedback_observe(s->fb, sw__monitor_outcome, s->monitor);
    if (st) {
      sw_server_free(s);
      return st;
    }
  }
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  st = sw__resolve_listen(cfg->listen ? cfg->listen : "127.0.0.1:8501", &ss, &sl);
  if (st) {
    sw_server_free(s);
    return st;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                          MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s ? cfg->timeout_s : 30u,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                          MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                          /* each connection's pool is zeroed between requests: keep it small (bodies
                           * are copied out chunk by chunk, headers are small) */
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
  if (!s->d) {
    st = sw_error(SW_STATUS_IO, "cannot listen on %s (in use, or not an address of this host)", cfg->listen);
    sw_server_free(s);
    return st;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : 0;
  SW_INFO("serve: listening on %s (port %u), %u HTTP threads", cfg->listen, (unsigned)s->port, pool);
  st = sw__manager_reconcile(&s->mgr, true);
  if (st) SW_LOGERR("serve: the catalog: %s", sw_last_error());
  st = sw__rollouts_start(s->ro);
  if (st) {
    sw_server_free(s);
    return st;
  }
  if (s->monitor && sw__monitor_start(s->monitor)) SW_LOGERR("serve: %s", sw_last_error());
  *out = s;
  return SW_STATUS_OK;
}

uint16_t sw_server_port(const sw_server *s) { return s->port; }

double sw_server_poll_interval(const sw_server *s) { return s->cfg.poll_s > 0 ? s->cfg.poll_s : 2; }

sw_status sw_server_poll(sw_server *s) { return sw__manager_reconcile(&s->mgr, false); }

void sw_server_drain(sw_server *s, double timeout_s) {
  if (!s || !s->d) return;
  atomic_store(&s->draining, true);
  MHD_socket fd = MHD_quiesce_daemon(s->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  double until = sw_now() + timeout_s;
  while (atomic_load(&s->in_flight) > 0 && sw_now() < until) usleep(2000);
  long left = atomic_load(&s->in_flight);
  if (left) SW_WARN("serve: %ld requests still in flight after %.0f s", left, timeout_s);
  else SW_INFO("serve: drained");
}

void sw_server_free(sw_server *s) {
  if (!s) return;
  sw__monitor_stop(s->monitor); /* it reads the manager */
  if (s->d) MHD_stop_daemon(s->d);
  sw__rollouts_free(s->ro); /* before the versions its mirrors hold */
  sw__monitor_free(s->monitor); /* after the last request that could observe */
  if (s->mgr_ready) sw__manager_destroy(&s->mgr);
  sw__feedback_free(s->fb);
  sw__stats_free(s->stats);
  sw__api_free(s->api);
  sw_free(s->token);
  sw_free(s);
}
