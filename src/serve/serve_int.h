/* The model server's own header: loaded versions and their batchers, the model
 * manager, statistics for /metrics, the feedback join buffer. */
#ifndef SLIPWAY_SERVE_INT_H
#define SLIPWAY_SERVE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "slipway/serve.h"

/* ---- statistics (stats.c) ------------------------------------------------------- */

#define SW__HIST_BUCKETS 16
#define SW__BATCH_BUCKETS 10

typedef struct {
  uint64_t count[SW__HIST_BUCKETS + 1]; /* the last is +Inf */
  double sum;
} sw__hist;

/* What /metrics says about one (model, version); lives as long as the server, so the
 * counters of an unloaded version stay (Prometheus counters never go back). */
typedef struct sw__vstats {
  struct sw__vstats *next;
  char *model;
  int64_t version;
  pthread_mutex_t mu;
  sw__hist total, queue, compute;
  uint64_t batch_count[SW__BATCH_BUCKETS + 1];
  double batch_sum;
  uint64_t batches;
  /* live quality from feedback */
  uint64_t fb_joined, fb_correct;
  double fb_abs_err;
  bool fb_regression;
  char **class_names; /* the version's, kept so labels by name join after it is unloaded */
  size_t n_classes;
} sw__vstats;

typedef struct sw__stats sw__stats;
sw_status sw__stats_new(sw__stats **out);
void sw__stats_free(sw__stats *s);
/* The entry of (model, version), made on first use. Never freed before the server. */
sw__vstats *sw__stats_version(sw__stats *s, const char *model, int64_t version);
/* One answered request (model "" and version 0: none resolved); vs, when the request
 * reached a version, gets its latency. */
void sw__stats_request(sw__stats *s, const char *model, int64_t version, const char *api, int code, sw__vstats *vs,
                       double seconds);
struct sw__job;
/* One forward pass over the jobs' rows: batch size, each job's queue time, compute. */
void sw__stats_batch(sw__vstats *v, int64_t rows, struct sw__job *const *jobs, size_t n_jobs, double compute_s);
/* The Prometheus text exposition of everything, appended to out. */
struct sw__manager;
sw_status sw__stats_render(sw__stats *s, struct sw__manager *m, sw_buf *out);

/* ---- a loaded version and its batcher (version.c) -------------------------------- */

/* One request's work for the batcher. The HTTP thread owns it; the compute thread
 * fills the outputs, sets done and calls notify(arg). */
typedef struct sw__job {
  struct sw__job *next;
  sw_serve_inputs inputs;
  void *out[SW_SERVE_MAX_IO]; /* rows * per elements each, in the output's dtype */
  sw_status status;
  char error[256];
  double t_enqueue, t_start, t_end;
  void (*notify)(void *arg);
  void *arg;
} sw__job;

#define SW__MAX_LANES 8

typedef struct sw__version {
  atomic_int refs;
  char *model;
  int64_t version;
  char sha256[SW_SHA256_HEX_LEN];
  sw_serve_signature sig;
  char **class_names;
  size_t n_classes;
  bool probs; /* the first output is a softmax already */
  int64_t mem_bytes;
  double loaded_at;
  sw__vstats *stats;
  /* the engine: lanes of the graph, lane 0 the loaded one and the others clones of it
   * sharing its weights, so that as many passes as lanes run at once; a lane is run by
   * whoever holds it (an HTTP thread inline, or the compute thread) */
  sw_graph *g;
  sw_graph *lane[SW__MAX_LANES];
  bool lane_busy[SW__MAX_LANES];
  int n_lanes;
  sw_node in[SW_SERVE_MAX_IO];
  sw_node out[SW_SERVE_MAX_IO];
  json_t *meta;
  /* the batcher */
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sw__job *head, *tail;
  sw__job **leader_batch; /* per lane, max_batch each: for an HTTP thread that takes the queue */
  int queued;
  int64_t queued_rows; /* the rows of the queued jobs */
  int lanes_busy;
  bool stop;
  int max_batch, max_queue;
  int64_t chunk; /* rows per forward pass: the cheapest per row at warm-up, <= max_batch */
  int64_t timeout_us;
} sw__version;

typedef struct {
  int compute_threads, max_batch, max_queue;
  int64_t timeout_us;
  int lanes; /* graphs that run at once (1..SW__MAX_LANES; with a batch wait, 1) */
} sw__version_opts;

/* Loads path (its SHA-256 checked against sha256 unless that is ""), allocates for
 * max_batch rows, warms it up and starts its compute thread. One reference, the
 * caller's. Errors name the path: for logs, never for clients. */
sw_status sw__version_load(const char *model, int64_t version, const char *path, const char *sha256,
                           const sw__version_opts *o, sw__stats *stats, sw__version **out);
void sw__version_ref(sw__version *v);
/* Drops a reference; the last one stops the compute thread and frees everything. */
void sw__version_unref(sw__version *v);
/* Runs job at once on the calling thread when nothing is queued, the graph is free and
 * batches do not wait to fill (batch timeout 0): no hand-off to the compute thread and
 * back. False when the caller must submit it instead. */
bool sw__version_run_inline(sw__version *v, sw__job *job);
/* Queues a job; REFUSED when the queue is full (the caller answers 429 at once). */
sw_status sw__version_submit(sw__version *v, sw__job *job);
void sw__job_clear(sw__job *job, const sw__version *v);

/* ---- the model manager (manager.c) ----------------------------------------------- */

typedef struct {
  char *label;
  int64_t version;
} sw__label;

typedef struct sw__model {
  char *name;
  pthread_mutex_t mu; /* guards the fields below; held for pointer work only */
  sw__version **versions; /* loaded, by version number ascending */
  bool *by_admin;
  size_t n_versions;
  sw__version *dflt;      /* what a request without a version gets */
  int64_t policy_version; /* what the catalog's policy (or --model) serves; 0 none */
  sw__label *labels;
  size_t n_labels;
  bool hold; /* an admin unloaded the policy's version: leave the model alone */
} sw__model;

typedef struct sw__manager {
  sw_catalog cat;
  sw__version_opts opts;
  sw__stats *stats;
  const char **only;
  size_t n_only;
  pthread_rwlock_t lock; /* guards the models array (models are never removed) */
  sw__model **models;
  size_t n_models;
  pthread_mutex_t op; /* one load/unload/reconcile at a time */
  uint64_t generation;
  bool have_generation;
  atomic_bool ready;
  sw_catalog_version *known; /* the catalog's last list */
  size_t n_known;
} sw__manager;

sw_status sw__manager_init(sw__manager *m, sw_catalog cat, const sw__version_opts *o, sw__stats *stats,
                           const char **only, size_t n_only);
void sw__manager_destroy(sw__manager *m);
/* Follows the catalog (force: even when its generation did not change). */
sw_status sw__manager_reconcile(sw__manager *m, bool force);
/* A reference to the version a request names: version > 0 by number, label by label,
 * else the default. NOT_FOUND with a client message when there is none. */
sw_status sw__manager_acquire(sw__manager *m, const char *model, int64_t version, const char *label, sw__version **out);
sw__model *sw__manager_find(sw__manager *m, const char *model);
/* Admin: load a version the catalog knows and keep it loaded; unload one. */
sw_status sw__manager_load(sw__manager *m, const char *model, int64_t version);
sw_status sw__manager_unload(sw__manager *m, const char *model, int64_t version);
/* Admin reload: forget admin choices, follow the catalog again. */
sw_status sw__manager_reload(sw__manager *m);
/* Calls fn for every loaded version under the locks (for /metrics and listings). */
void sw__manager_each(sw__manager *m, void (*fn)(void *ctx, sw__model *model, sw__version *v, bool is_default),
                      void *ctx);

/* ---- JSON writing (encode.c) ------------------------------------------------------- */

/* v in decimal, NUL-terminated; returns its length. */
size_t sw__fmt_int(char out[24], int64_t v);
void sw__put_int(sw_buf *b, int64_t v);
void sw__put_number(sw_buf *b, sw_dtype dt, const void *data, int64_t i);
/* Example values from *pos on as a nested list in io's per-example shape. */
void sw__put_nested(sw_buf *b, const sw_serve_io *io, const void *data, int dim, int64_t *pos);
void sw__put_string(sw_buf *b, const char *s);

/* ---- feedback join buffer (feedback.c) -------------------------------------------- */

typedef struct sw__feedback sw__feedback;
sw_status sw__feedback_new(size_t capacity, double ttl_s, sw__feedback **out);
void sw__feedback_free(sw__feedback *f);
/* Remembers what a request predicted: per row, the argmax class (classification) or
 * the value (regression). */
void sw__feedback_record(sw__feedback *f, const char *id, sw__vstats *stats, const double *pred, int64_t rows,
                         bool regression);
/* A new request id, unique to this server process ("NONCE-COUNTER" in hex). */
void sw__feedback_new_id(sw__feedback *f, char id[40]);
typedef struct {
  uint64_t joined, unknown, expired, duplicate, invalid;
} sw__feedback_result;
void sw__feedback_join(sw__feedback *f, const char *model, const sw_feedback_item *items, size_t n,
                       sw__feedback_result *r);

/* What a request routed by a rollout was, so that its labels reach the controller. */
enum { SW__ARM_NONE, SW__ARM_INCUMBENT, SW__ARM_CHALLENGER, SW__ARM_SHADOW };
typedef struct {
  uint64_t epoch; /* which rollout (sw__rollouts' numbering; 0: none) */
  int arm;        /* SW__ARM_*; SHADOW: the incumbent answered, the challenger ran a mirror */
  int weight;     /* the challenger's share when the request was routed */
} sw__arm;
/* sw__feedback_record, remembering the arm too (NULL: none). */
void sw__feedback_record_arm(sw__feedback *f, const char *id, sw__vstats *stats, const double *pred, int64_t rows,
                             bool regression, const sw__arm *arm);
/* The challenger's predictions of a mirrored request (shadow mode), joined later with the
 * incumbent's (a label that came first, for a one-row request, is judged here, through
 * the hook); nothing when the id has left the buffer. */
void sw__feedback_attach_shadow(sw__feedback *f, const char *id, const double *pred, int64_t rows);
/* Called (under the buffer's lock: it must not call back into it) for every label joined
 * to a classification request that carried an arm: correct says whether the answer the
 * user got was right; shadow is -1, or whether the mirrored challenger was right. */
typedef void (*sw__label_hook)(void *ctx, const char *model, const sw__arm *arm, bool correct, int shadow);
void sw__feedback_set_hook(sw__feedback *f, sw__label_hook hook, void *ctx);

/* ---- the manager's side of rollouts (manager.c) ------------------------------------- */

/* Lets go of a version an admin or a rollout loaded: unloads it unless the catalog's
 * policy serves it (then it only stops being pinned). NOT_FOUND when not loaded. */
sw_status sw__manager_release(sw__manager *m, const char *model, int64_t version);

/* ---- rollouts: router, controller thread, admin API (rollout_srv.c) ------------------ */

typedef struct sw__rollouts sw__rollouts;
struct sw__rslot;

/* How the router sent one request. */
typedef struct {
  struct sw__rslot *slot; /* NULL: not routed (no rollout, or the request named a version) */
  sw__arm arm;
  bool mirror; /* shadow: run it on the challenger too, after the user's answer */
} sw__route;

/* The rollouts of a server. cfg's registry settings say where records go (no registry
 * catalog: every rollout request answers 409). On error *out is NULL. */
sw_status sw__rollouts_new(const sw_serve_config *cfg, sw__manager *m, sw__feedback *fb, sw__rollouts **out);
/* Resumes the rollouts the registry has running for served models, then starts the
 * controller thread. Failures to resume are logged, not fatal. */
sw_status sw__rollouts_start(sw__rollouts *rs);
/* Stops the controller, waits for mirrored requests in flight, frees. NULL is a no-op. */
void sw__rollouts_free(sw__rollouts *rs);
/* For an inference request that names no version (label: NULL, or the label it named):
 * true and *version when a rollout routes it; header(ctx, NAME) gives request headers. */
bool sw__rollouts_route(sw__rollouts *rs, const char *model, const char *label,
                        const char *(*header)(void *ctx, const char *name), void *ctx, int64_t *version, sw__route *rt);
/* The answer of a routed request: its latency (arrival to answer) and whether it failed
 * (5xx). */
void sw__rollouts_observe(sw__rollouts *rs, const sw__route *rt, double latency_ms, bool error);
/* Shadow: runs the request's inputs on the challenger in the background; the comparison
 * (latency, errors, outputs) and the challenger's prediction are taken when it is done. */
void sw__rollouts_mirror(sw__rollouts *rs, const sw__route *rt, const sw__version *incumbent, const sw__job *job,
                         const char *request_id);
/* /admin/rollouts[/{model}[/abort|/promote]]: the HTTP status and the JSON answer
 * (caller owns). action: "" for the collection or a model's record. */
int sw__rollouts_admin(sw__rollouts *rs, const char *method, const char *model, const char *action, const char *body,
                       size_t len, json_t **answer);
/* The rollout metrics, Prometheus text, appended to out. */
void sw__rollouts_render(sw__rollouts *rs, sw_buf *out);
/* Test-only faults of a version (--debug-delay/--debug-fail): 0 when none. */
double sw__fault_delay_ms(const sw_serve_config *cfg, const char *model, int64_t version);
bool sw__fault_fails(const sw_serve_config *cfg, const char *model, int64_t version);

/* ---- the dashboard: its read-only JSON API (api.c) and its pages (ui.c) ------------- */

/* An answer the HTTP front sends as it is: status, type, body and caching headers. */
typedef struct {
  int status;
  const char *content_type; /* a string literal */
  sw_buf body;
  char etag[80];             /* quoted; "" for none */
  const char *cache_control; /* a string literal; NULL for none */
  const char *location;      /* a string literal; NULL for none */
} sw__reply;

/* The API reads the registry the catalog serves from, through a handle of its own (one
 * request at a time). registry false: the catalog is --model-file files, and the
 * registry's views answer 404. Failing to open the registry is logged, not fatal: those
 * views then answer 503. NULL url/home: the defaults, as sw_registry_open takes them. */
typedef struct sw__api sw__api;
sw_status sw__api_new(bool registry, const char *url, const char *home, sw__api **out);
void sw__api_free(sw__api *a);
/* What the API needs of the request and the server. */
typedef struct {
  sw_status (*render_metrics)(void *ctx, sw_buf *out); /* exactly what /metrics serves */
  const char *(*arg)(void *ctx, const char *name);      /* a query argument, or NULL */
  void *ctx;
  bool ready; /* /v2/health/ready's answer */
} sw__api_request;
/* Answers GET /api/v1/PATH (path: what follows "/api/v1", e.g. "/models"). Never touches
 * a path a client gave. */
void sw__api_answer(sw__api *a, const char *path, const sw__api_request *rq, sw__reply *out);
/* The Prometheus text exposition in text (len bytes) as {NAME: [{"labels": {...},
 * "value": x}]} (comments skipped; a line it cannot read is skipped). Caller owns. */
json_t *sw__prom_parse(const char *text, size_t len);

/* The dashboard's files under ui/, compiled in at build time (ui_assets.c). */
typedef struct {
  const char *name;
  const unsigned char *data;
  size_t len;
} sw__ui_asset;
extern const sw__ui_asset sw__ui_assets[];
extern const size_t sw__ui_n_assets;
/* Answers GET /ui/NAME (path: the URL path, "/", "/ui" or "/ui/..."); if_none_match:
 * the request's If-None-Match or NULL (an unchanged file answers 304). */
void sw__ui_answer(const char *path, const char *if_none_match, sw__reply *out);
/* "HOST:PORT" (IPv6 as [::1]:PORT) to a socket address; INVALID naming the flag. */
struct sockaddr_storage;
sw_status sw__resolve_listen(const char *listen, struct sockaddr_storage *ss, unsigned *len);

/* ---- the monitor inside the server (monitor.c) ------------------------------------ */

typedef struct sw__monitor sw__monitor;
/* Loads the policy, opens the registry (from_registry) and the alert manager; the
 * thread starts with sw__monitor_start. mgr must outlive it. */
sw_status sw__monitor_new(const sw_serve_monitor_config *c, sw__manager *mgr, sw__monitor **out);
sw_status sw__monitor_start(sw__monitor *m);
/* Stops the thread (waiting for a cycle in progress); free stops it too. */
void sw__monitor_stop(sw__monitor *m);
void sw__monitor_free(sw__monitor *m);
/* The request path: copies the rows' inputs into the model's drift inbox. */
void sw__monitor_observe(sw__monitor *m, const sw__version *v, const sw_serve_inputs *in);
/* A feedback label joined to a classification answer of model:version. */
void sw__monitor_outcome(void *ctx, const char *model, int64_t version, bool correct);
/* Appends the last cycle's quality, drift and live-accuracy families to out. */
sw_status sw__monitor_render(sw__monitor *m, sw_buf *out);
/* The feedback buffer tells fn of each classification label it joins (set before
 * traffic; fn runs under the buffer's locks and must take only its own). */
void sw__feedback_observe(sw__feedback *f, void (*fn)(void *ctx, const char *model, int64_t version, bool correct), void *ctx);

/* A URL path's segments (http.c): at most max of them into seg/len, the count going one
 * past max when there are more; and whether a segment is a given word. */
size_t sw__path_segments(const char *path, const char **seg, size_t *len, size_t max);
static inline bool sw__seg_is(const char *seg, size_t len, const char *word) {
  return strlen(word) == len && !memcmp(seg, word, len);
}

#endif
