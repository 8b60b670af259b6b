/* slipway model server: the catalog of servable model versions, the model manager
 * (load, warm up, atomic swap, unload), the per-version batcher, the request body
 * parsers and the HTTP front that speaks TensorFlow Serving's REST API and the v2
 * (Open Inference) protocol. Stands on nn and base. */
#ifndef SLIPWAY_SERVE_H
#define SLIPWAY_SERVE_H

#include "slipway/base.h"
#include "slipway/eval.h"
#include "slipway/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- catalog: where servable versions come from ---------------------------------- */

/* One version of one model, as a catalog lists it. */
typedef struct {
  char *name;
  int64_t version;
  char *path;                        /* the ONNX artifact */
  char sha256[SW_SHA256_HEX_LEN];    /* the artifact's expected SHA-256 ("" = not known) */
  bool serve;                        /* the default policy serves this version */
  char **labels;                     /* aliases pointing at it ("production", ...) */
  size_t n_labels;
} sw_catalog_version;

/* A source of model versions behind a table of functions (a set of files today, the
 * registry once it is in). The model manager calls list() at start and whenever
 * generation() changes, from one thread at a time. */
typedef struct {
  /* Every version the catalog knows, into a new array (*out, freed with
   * sw_catalog_versions_free). The catalog sets .serve on the version its default
   * policy serves, at most one per model. */
  sw_status (*list)(void *self, sw_catalog_version **out, size_t *n);
  /* A number that changes whenever list() would answer differently; cheap (the
   * manager calls it every --poll seconds). */
  sw_status (*generation)(void *self, uint64_t *out);
  void (*free)(void *self);
} sw_catalog_ops;

typedef struct {
  const sw_catalog_ops *ops;
  void *self;
} sw_catalog;

void sw_catalog_versions_free(sw_catalog_version *v, size_t n);
/* Deep copy of one entry into *dst (caller frees with sw_catalog_versions_free(dst, 1)
 * semantics: the fields, not dst itself, are freed by sw_catalog_version_clear). */
sw_status sw_catalog_version_copy(const sw_catalog_version *src, sw_catalog_version *dst);
void sw_catalog_version_clear(sw_catalog_version *v);
void sw_catalog_close(sw_catalog *c); /* NULL and a zeroed catalog are no-ops */

/* A catalog of ONNX files named on the command line (`--model-file NAME=PATH`, in
 * order: the versions of one name are numbered 1, 2, ... by the order they come in) and
 * labels (`--label NAME@LABEL=V`). Each file's SHA-256 is taken here, once, and checked
 * again when the version is loaded. The default policy serves the version labelled
 * "production", else the latest. On error *out is untouched. */
typedef struct sw_file_catalog sw_file_catalog;
sw_status sw_file_catalog_new(sw_catalog *out);
sw_status sw_file_catalog_add_file(sw_catalog *c, const char *name, const char *path);
sw_status sw_file_catalog_add_label(sw_catalog *c, const char *name, const char *label, int64_t version);

/* The registry as a catalog (url and home as sw_registry_open takes them: NULL for the
 * defaults): every registered version with its aliases and artifact; the default policy
 * serves the version the production alias points at, else the latest that is not
 * rejected or rolled back; the registry's event counter is the change check, so an
 * alias move is followed at the next poll. On error *out is untouched. */
sw_status sw_registry_catalog_new(const char *url, const char *home, sw_catalog *out);

/* Model names: 1 to 128 characters of [A-Za-z0-9._-], starting with a letter or digit. */
bool sw_serve_name_valid(const char *name, size_t len);

/* ---- request bodies (the parsers a network peer reaches; fuzzed) ------------------- */

/* A rectangular array of numbers found in a JSON body by the fast path. The values are
 * exactly what strtod gives for each literal (integers as jansson reads them: through
 * int64), so a float cast gives the bits `slipway predict` would feed. */
typedef struct {
  double *v;
  size_t n;
  int rank;
  int64_t shape[SW_NN_MAX_RANK];
  bool all_int; /* every literal was an integer within +-2^53 */
} sw_numarr;

/* A JSON value of a parsed body. Rectangular arrays of numbers are NUMARR values
 * (sw_body_numarr gives the numbers, which never become nodes); NaN, Infinity and
 * -Infinity are numbers, as TensorFlow Serving accepts them. */
typedef enum { SW_JV_NULL, SW_JV_FALSE, SW_JV_TRUE, SW_JV_NUMBER, SW_JV_STRING, SW_JV_ARRAY, SW_JV_OBJECT, SW_JV_NUMARR } sw_jv_type;
typedef struct sw_jv sw_jv;
typedef struct sw_jv_member sw_jv_member;
struct sw_jv {
  sw_jv_type type;
  bool is_int;   /* NUMBER: an integer literal, exactly i */
  size_t n;      /* STRING: bytes; ARRAY: items; OBJECT: members */
  int64_t i;     /* NUMBER with is_int; NUMARR: its index in the body's arrays */
  double num;    /* NUMBER */
  const char *str;                /* STRING: UTF-8, NUL-terminated, no NUL inside */
  const sw_jv *items;             /* ARRAY */
  const sw_jv_member *members;    /* OBJECT, in the body's order, duplicates kept */
};
struct sw_jv_member {
  const char *key;
  size_t key_len;
  sw_jv value;
};

/* A parsed body: the tree, in one arena, and its numeric arrays. */
typedef struct {
  const sw_jv *root;
  sw_numarr *arrays;
  size_t n_arrays;
  void *arena;
} sw_body;

/* Parses text (need not be NUL-terminated). FORMAT with "line L column C: why" on bad
 * JSON (the top level is an object or an array; integers fit int64; strings are UTF-8
 * without NUL). On error *out is zeroed. */
sw_status sw_body_parse(const char *text, size_t len, sw_body *out);
void sw_body_free(sw_body *b);
/* The numbers of a NUMARR value; NULL for any other. */
const sw_numarr *sw_body_numarr(const sw_body *b, const sw_jv *v);

/* Reading values (NULL, 0 or false when v is not of the kind asked, or NULL). */
const sw_jv *sw_jv_get(const sw_jv *obj, const char *key); /* the last member of that key */
const sw_jv *sw_jv_single(const sw_jv *obj);               /* the value when one key is all there is */
static inline bool sw_jv_is_array(const sw_jv *v) { return v && v->type == SW_JV_ARRAY; }
static inline bool sw_jv_is_object(const sw_jv *v) { return v && v->type == SW_JV_OBJECT; }
static inline bool sw_jv_is_string(const sw_jv *v) { return v && v->type == SW_JV_STRING; }
static inline bool sw_jv_is_number(const sw_jv *v) { return v && v->type == SW_JV_NUMBER; }
static inline bool sw_jv_is_integer(const sw_jv *v) { return v && v->type == SW_JV_NUMBER && v->is_int; }
static inline bool sw_jv_is_true(const sw_jv *v) { return v && v->type == SW_JV_TRUE; }
static inline size_t sw_jv_size(const sw_jv *v) { return sw_jv_is_array(v) ? v->n : 0; }
static inline const sw_jv *sw_jv_at(const sw_jv *v, size_t i) { return sw_jv_is_array(v) && i < v->n ? &v->items[i] : NULL; }
static inline const char *sw_jv_str(const sw_jv *v) { return sw_jv_is_string(v) ? v->str : NULL; }
static inline int64_t sw_jv_int(const sw_jv *v) { return sw_jv_is_integer(v) ? v->i : 0; }
static inline double sw_jv_num(const sw_jv *v) { return sw_jv_is_number(v) ? v->num : 0.0; }

/* What a model takes and gives, as the request parsers need it. */
#define SW_SERVE_MAX_IO 16
typedef struct {
  const char *name;
  sw_dtype dtype;
  int rank;                      /* per example, without the batch dimension */
  int64_t shape[SW_NN_MAX_RANK]; /* per example */
  int64_t per;                   /* elements per example */
} sw_serve_io;

typedef struct {
  size_t n_in, n_out;
  sw_serve_io in[SW_SERVE_MAX_IO];
  sw_serve_io out[SW_SERVE_MAX_IO];
} sw_serve_signature;

/* The inputs of one request: rows examples, one buffer per model input in its dtype
 * (rows * per elements), in the signature's order. */
typedef struct {
  int64_t rows;
  void *in[SW_SERVE_MAX_IO];
  /* v2: which outputs were asked for (all when none named) and whether as binary */
  bool want_out[SW_SERVE_MAX_IO];
  bool binary_out[SW_SERVE_MAX_IO];
  char *id; /* v2 request "id", echoed */
  bool columnar; /* TF Serving: answer {"outputs": ...} rather than {"predictions": ...} */
} sw_serve_inputs;

void sw_serve_inputs_clear(sw_serve_inputs *in, size_t n_in);

/* TF Serving's :predict body ({"instances": ...} rows or {"inputs": ...} columns) and
 * :classify body ({"examples": [{INPUT: value}]}). FORMAT/INVALID with a message for
 * the client (no paths). */
sw_status sw_serve_parse_predict(const char *body, size_t len, const sw_serve_signature *sig, sw_serve_inputs *out);
sw_status sw_serve_parse_classify(const char *body, size_t len, const sw_serve_signature *sig, sw_serve_inputs *out);
/* v2 infer; header_len is Inference-Header-Content-Length (0: the whole body is JSON),
 * the binary tensors follow the JSON header in the order of the inputs that declare
 * "binary_data_size". */
sw_status sw_serve_parse_infer(const char *body, size_t len, size_t header_len, const sw_serve_signature *sig,
                               sw_serve_inputs *out);

/* The signature of a graph (allocated, its batch set to 1, so output shapes are known):
 * per-example shapes and dtypes of inputs in[] and outputs out[]; in_names, when not
 * NULL, names the inputs (a run dir's inputs are named by their dataset features). The
 * names point into the graph or in_names. UNSUPPORTED for a symbolic dimension other than
 * the batch, uint8 inputs or more than SW_SERVE_MAX_IO of either. */
sw_status sw_serve_signature_of(sw_graph *g, const sw_node *in, const char *const *in_names, size_t n_in,
                                const sw_node *out, size_t n_out, sw_serve_signature *sig);

/* A float as JSON that reads back as the same float (nine significant digits at most);
 * finite values only. Returns the length written (NUL-terminated). */
size_t sw_serve_format_float(float f, char out[32]);
/* TF Serving's :predict answer for rows examples: {"predictions": [...]} (one entry per
 * example; an object by output name with several outputs) or, columnar, {"outputs": ...};
 * outputs[k] holds rows * per values of output k. Appends to out. */
sw_status sw_serve_encode_predict(const sw_serve_signature *sig, int64_t rows, bool columnar, void *const *outputs,
                                  sw_buf *out);

/* One ground-truth label of a feedback body: a class index, a class name or a number. */
typedef struct {
  char *id;
  int64_t row;       /* which example of the request (0 unless labels were a list) */
  bool is_name;
  char *name;        /* class name */
  double value;      /* class index or regression target */
} sw_feedback_item;

/* {"feedback": [{"id": ID, "label": L | [L, ...]}, ...]} into a new array (free with
 * sw_feedback_items_free). */
sw_status sw_serve_parse_feedback(const char *body, size_t len, sw_feedback_item **out, size_t *n);
void sw_feedback_items_free(sw_feedback_item *items, size_t n);

/* ---- rollouts (src/serve/rollout.c, docs/ROLLOUT.md) --------------------------------
 * The rollout controller: the decision logic of a canary, A/B or shadow rollout (which
 * version a request goes to, the evidence, when to advance, hold, roll back or
 * promote). No I/O: the server feeds it what happens and records what it decides. Every
 * function is thread-safe (one mutex inside; observe_* from many threads, tick from one). */

typedef enum { SW_ROLLOUT_CANARY, SW_ROLLOUT_AB, SW_ROLLOUT_SHADOW } sw_rollout_mode;

#define SW_ROLLOUT_MAX_STEPS 16

typedef struct {
  sw_rollout_mode mode;
  int steps[SW_ROLLOUT_MAX_STEPS]; /* percent of traffic (shadow: share mirrored), increasing, last 100 */
  size_t n_steps;
  int64_t min_requests_per_step; /* evidence a step needs before it may advance (see below) */
  double max_step_seconds;       /* then the step holds (never fails for lack of traffic) */
  double alpha;                  /* total false-rollback budget, split evenly across the tests in use */
  bool compare_latency;          /* the challenger-vs-incumbent latency test (policy rollout.compare_latency) */
  double slo_p99_ms;             /* <= 0: no latency objective */
  double slo_error_rate;         /* < 0: no error-rate objective */
  bool quality;                  /* judge quality from feedback labels (classifiers) */
} sw_rollout_config;

/* Defaults from a parsed policy's rollout section (src/eval/policy.c's sw_policy); p may
 * be NULL (the defaults of DESIGN.md: steps 1,5,25,50,100, 500 requests, 600 s, alpha
 * 0.01, no objectives, latency compared). quality is set when the policy's metric is a classifier's
 * (accuracy, auc); the caller may clear it (a regression model has no right/wrong). */
void sw_rollout_config_from_policy(const sw_policy *p, sw_rollout_mode mode, sw_rollout_config *out);
/* "canary" | "ab" | "shadow"; parse: INVALID for anything else. */
const char *sw_rollout_mode_name(sw_rollout_mode m);
sw_status sw_rollout_mode_parse(const char *s, sw_rollout_mode *out);

typedef struct sw_rollout sw_rollout;
/* Starts at steps[0]. INVALID with a message (sw_last_error) for a config that breaks
 * the rules above (steps not increasing in 1..100, last not 100, alpha not in (0, 1),
 * min_requests_per_step < 1, max_step_seconds <= 0); *out is then NULL. The router's
 * salt comes from now_s, so another rollout picks other users; saved and restored. */
sw_status sw_rollout_new(const sw_rollout_config *cfg, double now_s, sw_rollout **out);
void sw_rollout_free(sw_rollout *r); /* NULL ok */

/* Router: true when this request goes to the challenger (shadow: is mirrored to it). user
 * (may be NULL/len 0: then key, a per-request random 64-bit value, is used) is hashed so
 * that one user sees one version within a step and, as the weight grows, users only ever
 * move incumbent -> challenger: bucket = hash(salt, user) mod 10000, challenger when
 * bucket < weight * 100. */
bool sw_rollout_route(const sw_rollout *r, const char *user, size_t len, uint64_t key);
/* The bucket (0..9999) route() compares against weight * 100. */
uint32_t sw_rollout_bucket(const sw_rollout *r, const char *user, size_t len, uint64_t key);
int sw_rollout_weight(const sw_rollout *r); /* percent now (0 once rolled back or aborted) */
size_t sw_rollout_step(const sw_rollout *r);
const char *sw_rollout_state(const sw_rollout *r); /* running|holding|promoted|rolled_back|aborted */
bool sw_rollout_done(const sw_rollout *r);         /* promoted, rolled back or aborted */

/* Evidence as it happens (challenger: which arm served it). latency_ms of a request that
 * failed (error) is not used for latency. A crossing rolls back at once (route() sends
 * nothing more to the challenger); the next tick reports it. */
void sw_rollout_observe_request(sw_rollout *r, bool challenger, double latency_ms, bool error);
/* A feedback label joined to a request: weight_at_request = sw_rollout_weight when the request was routed. */
void sw_rollout_observe_label(sw_rollout *r, bool challenger, bool correct, int weight_at_request);
/* Shadow mode: one mirrored request, both arms' latency and errors; later its label
 * (send the label of every labeled mirrored request, not only of those whose outputs
 * differ: they count toward the step's minimum evidence). */
void sw_rollout_observe_shadow(sw_rollout *r, double incumbent_ms, bool incumbent_error, double challenger_ms,
                               bool challenger_error, bool outputs_differ);
void sw_rollout_observe_shadow_label(sw_rollout *r, bool incumbent_correct, bool challenger_correct);

/* The latency test's threshold (the incumbent's p99, ms): fixed from the incumbent's
 * first 200 successful requests of the rollout unless set here first. INVALID when
 * already fixed or ms is not > 0. latency_threshold: < 0 while not yet fixed. */
sw_status sw_rollout_set_latency_threshold(sw_rollout *r, double ms);
double sw_rollout_latency_threshold(const sw_rollout *r);

typedef enum {
  SW_ROLLOUT_NONE,
  SW_ROLLOUT_ADVANCE,
  SW_ROLLOUT_HOLD,
  SW_ROLLOUT_ROLLBACK,
  SW_ROLLOUT_PROMOTE
} sw_rollout_action;
/* "none" | "advance" | "hold" | "rollback" | "promote" (the decisions' "action"). */
const char *sw_rollout_action_name(sw_rollout_action a);
/* Judges the evidence now; returns a transition (once each) and a sentence saying why
 * ("error_rate: e-value 142 crossed 1/alpha = 100 after 37 challenger errors in 812
 * requests"). ROLLBACK: a test crossed its boundary (weight is 0 from here); ADVANCE: the
 * step's minimum evidence is in and nothing is worse (weight is the next step's);
 * PROMOTE: the last step passed; HOLD: the step's time ran out without its evidence.
 * reason may be NULL; it is always NUL-terminated when reason_cap > 0. */
sw_rollout_action sw_rollout_tick(sw_rollout *r, double now_s, char *reason, size_t reason_cap);
/* By hand: abort (rolled back by a person), promote (skip to promotion). No-ops once
 * done; tick reports nothing for them (the caller records its own decision). */
void sw_rollout_abort(sw_rollout *r, double now_s);
void sw_rollout_promote_now(sw_rollout *r, double now_s);

/* EVIDENCE object of the shared contract (per metric in use). Caller owns; NULL on memory. */
json_t *sw_rollout_evidence_json(const sw_rollout *r);
/* Everything needed to resume exactly (step, weight, state, time into the step, the
 * router's salt, every test's state and counts) and its inverse, which takes the
 * config again (the saved state must fit it: same steps and tests) and now_s (the step's
 * clock resumes from the saved time into the step). Caller owns save's object (NULL on
 * memory). restore: FORMAT/INVALID with a message on a malformed or unfitting object,
 * *out NULL. */
json_t *sw_rollout_save(const sw_rollout *r);
sw_status sw_rollout_restore(const sw_rollout_config *cfg, const json_t *saved, double now_s, sw_rollout **out);

/* ---- the server -------------------------------------------------------------------- */

/* The monitor loop inside the server (docs/MONITORING.md): every every_s, held-out
 * evaluation of each served version, drift of the live inputs per model, live accuracy
 * per version from feedback, exported on /metrics, alerts to webhook_url. */
typedef struct {
  const char *eval_data;     /* the held-out dataset (NULL: each version's from the registry lineage) */
  double every_s;            /* <= 0: the policy's monitor.every */
  const char *policy_path;   /* NULL: the defaults (no max_drop: quality is exported, never alerts) */
  const char *webhook_url;   /* NULL: alerts are logged and recorded only */
  const char *external_url;  /* the alerts' externalURL (NULL: "") */
  bool from_registry;        /* serving from the registry: refs NAME:V, baselines, records */
  const char *registry, *home; /* as sw_registry_open takes them */
} sw_serve_monitor_config;

typedef struct {
  const char *listen;        /* "HOST:PORT"; default "127.0.0.1:8501"; port 0 picks one */
  int http_threads;          /* libmicrohttpd pool threads (0: cores) */
  int compute_threads;       /* engine threads per loaded version (default 1) */
  int max_batch;             /* rows per forward pass (1: batching off; default 32) */
  int64_t batch_timeout_us;  /* how long a batch waits to fill (default 0: take what is queued) */
  int max_queue;             /* requests waiting per version before 429 (default 256) */
  size_t max_body;           /* bytes (default 64 MiB) */
  unsigned timeout_s;        /* idle/slow connection timeout (default 30) */
  double poll_s;             /* how often the catalog is checked (default 2) */
  const char *admin_token;   /* the admin bearer token (required) */
  size_t feedback_capacity;  /* request ids remembered for feedback (default 100000) */
  double feedback_ttl_s;     /* and for how long (default 3600) */
  const char **only;         /* --model NAME[:V|@ALIAS]; NULL/0: every model */
  size_t n_only;
  bool from_registry;        /* the catalog is the registry below (the dashboard reads it) */
  const char *registry_url;  /* as sw_registry_open takes them (NULL: the defaults) */
  const char *registry_home;
  /* test-only fault injection (--debug-delay, --debug-fail): never in production */
  const struct sw_serve_fault *faults;
  size_t n_faults;
  const sw_serve_monitor_config *monitor; /* NULL: no monitor loop */
} sw_serve_config;

/* A fault to inject into one version's answers (tests only): delay_ms more before each
 * answer; fail_fraction of its inference requests answered 500. */
typedef struct sw_serve_fault {
  const char *model;
  int64_t version;
  double delay_ms;
  double fail_fraction;
} sw_serve_fault;

void sw_serve_config_default(sw_serve_config *c);

typedef struct sw_server sw_server;

/* Starts listening, then loads what the catalog says to serve (live at once, ready once
 * every version is loaded and warmed up). The server owns cat from here on, even on
 * error. */
sw_status sw_server_start(const sw_serve_config *cfg, sw_catalog cat, sw_server **out);
uint16_t sw_server_port(const sw_server *s);
/* Follows the catalog: when its generation changed, loads what it now says to serve,
 * swaps, unloads what it no longer serves. Call every poll_s seconds. */
sw_status sw_server_poll(sw_server *s);
double sw_server_poll_interval(const sw_server *s);
/* Stops accepting connections and waits up to timeout_s for requests in flight. */
void sw_server_drain(sw_server *s, double timeout_s);
/* Stops everything and frees every version. NULL is a no-op. */
void sw_server_free(sw_server *s);

/* ---- a /metrics listener of its own (the standalone monitor) ----------------------- */

/* Appends the Prometheus text to out; called on the listener's thread. */
typedef sw_status (*sw_metrics_render_fn)(void *ctx, sw_buf *out);
typedef struct sw_metrics_listener sw_metrics_listener;
/* Listens on "HOST:PORT" (port 0 picks one) and answers GET /metrics with fn's text. */
sw_status sw_metrics_listener_start(const char *listen, sw_metrics_render_fn fn, void *ctx, sw_metrics_listener **out);
uint16_t sw_metrics_listener_port(const sw_metrics_listener *l);
void sw_metrics_listener_free(sw_metrics_listener *l); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
