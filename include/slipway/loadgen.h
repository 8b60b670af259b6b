/* slipway load generator: labeled examples of a prepared dataset replayed against a
 * model server at Poisson arrival times (open loop), with their labels posted back as
 * feedback, and a report of latency, errors, versions and accuracy. Part of the server
 * part (src/serve/loadgen.c); `slipway loadgen` is its command line. */
#ifndef SLIPWAY_LOADGEN_H
#define SLIPWAY_LOADGEN_H

#include <signal.h>

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SW_LOADGEN_V1, /* TF Serving REST: :predict with "instances" */
  SW_LOADGEN_V2  /* Open Inference Protocol v2: /infer with JSON tensors */
} sw_loadgen_protocol;

typedef struct {
  const char *server;        /* base URL; NULL: http://127.0.0.1:8501 */
  const char *model;         /* required */
  int64_t version;           /* > 0: that version (/versions/V); 0: the server's choice */
  const char *data_dir;      /* a dataset dir of `slipway prep`; required */
  const char *split;         /* NULL: "test" */
  sw_loadgen_protocol protocol;
  double rps;                /* mean arrival rate, > 0 */
  double duration_s;         /* arrivals in [0, duration); 0: no limit (needs max_requests) */
  int64_t max_requests;      /* > 0: at most that many arrivals; -1: the split once; 0: no limit */
  int batch;                 /* examples per request (<= 0: 1) */
  uint64_t seed;             /* arrival times and user ids */
  int max_in_flight;         /* <= 0: 512; an arrival past it is dropped, not delayed */
  int64_t timeout_ms;        /* per request, connecting included (<= 0: 10000) */
  int users;                 /* > 0: X-User-Id: user-K, K uniform in [0, users) */
  bool feedback;             /* post each answered request's labels */
  int64_t feedback_delay_ms; /* how long after the answer (>= 0) */
  const char *const *headers; /* extra "Name: value" headers on every inference request */
  size_t n_headers;
  volatile sig_atomic_t *stop; /* when set to nonzero (a signal handler): stop sending, finish */
} sw_loadgen_options;

/* Runs the load: reads the model's signature from the server, the split from the
 * dataset, sends, waits for every answer (or its timeout) and every feedback post, and
 * gives the report (caller owns; docs/LOADGEN.md draws it). Answers that are errors are
 * counted in the report, not failures of the run. Fails with IO when the server cannot be
 * reached at the start, NOT_FOUND when it does not serve the model, INVALID for bad
 * options, and the dataset's errors; the detail is in sw_last_error(). */
sw_status sw_loadgen_run(const sw_loadgen_options *opt, json_t **report);

/* ---- pieces, public for the tests ------------------------------------------------- */

/* Arrival times of a Poisson process of a given rate: independent exponential gaps,
 * drawn from the counter-based RNG, so a seed gives the same schedule everywhere. */
typedef struct {
  sw_rng rng;
  double rate;
  double t;
} sw_poisson;

void sw_poisson_init(sw_poisson *p, double rate, uint64_t seed);
/* The next arrival, in seconds from the start; strictly increasing. */
double sw_poisson_next(sw_poisson *p);

/* The q-quantile (0 <= q <= 1) of n sorted values by the nearest-rank rule: the
 * smallest value with at least q*n values at or below it (q = 0: the minimum). NAN when
 * n is 0. */
double sw_loadgen_percentile(const double *sorted, size_t n, double q);

/* What the load generator needs of a model's signature. */
#define SW_LOADGEN_MAX_IO 16
#define SW_LOADGEN_MAX_RANK 8
typedef struct {
  char name[256];
  sw_dtype dtype; /* F32 or I64 */
  int rank;       /* per example */
  int64_t shape[SW_LOADGEN_MAX_RANK];
  int64_t per;    /* values per example */
} sw_loadgen_input;

typedef struct {
  size_t n_in;
  sw_loadgen_input in[SW_LOADGEN_MAX_IO];
  char output[256]; /* the first output's name ("" when the server names none) */
} sw_loadgen_signature;

/* Parsers of what the server says (outside input; fuzzed by tests/fuzz/fuzz_loadgen.c).
 * FORMAT with the reason on anything unexpected. */
/* GET /v1/models/M/metadata (v1) or GET /v2/models/M (v2). */
sw_status sw_loadgen_parse_metadata(const char *text, size_t len, sw_loadgen_protocol p, sw_loadgen_signature *out);
/* A :predict or /infer answer for rows examples: pred[i] is the index of the largest value
 * of example i's first output (as `slipway eval` and the server take it: the first on
 * ties; null reads as NaN, which no comparison prefers), or its value when the output has
 * one value per example (*k = 1); *k is the number of values per example. */
sw_status sw_loadgen_parse_answer(const char *text, size_t len, sw_loadgen_protocol p, const char *output,
                                  int64_t rows, double *pred, int64_t *k);
/* The :feedback answer: counts[0..4] = joined, unknown, expired, duplicate, invalid. */
sw_status sw_loadgen_parse_feedback_answer(const char *text, size_t len, int64_t counts[5]);

#ifdef __cplusplus
}
#endif
#endif
