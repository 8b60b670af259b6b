/* Unit tests of the thread pool (src/base/threadpool.c): every index is covered exactly
 * once, the ranges are a function of (n, parts) alone, back-to-back loops, nested calls,
 * the serial fallbacks and the NULL conventions. Also prints the dispatch overhead (a
 * figure for docs/BENCHMARKS.md, not a pass/fail threshold). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/base.h"

/* ---- helpers -------------------------------------------------------------- */

#define MAX_RANGES 8192

/* What one loop did: a hit count per index and the ranges it was handed. */
typedef struct {
  atomic_int *hits;
  size_t n;
  pthread_mutex_t mu;
  size_t nranges;
  size_t begin[MAX_RANGES], end[MAX_RANGES];
  atomic_int bad; /* a range outside [0, n) or empty */
} coverage;

static void record(void *ctx, size_t begin, size_t end) {
  coverage *c = ctx;
  if (begin >= end || end > c->n) {
    atomic_fetch_add(&c->bad, 1);
    return;
  }
  for (size_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
  pthread_mutex_lock(&c->mu);
  if (c->nranges < MAX_RANGES) {
    c->begin[c->nranges] = begin;
    c->end[c->nranges] = end;
  }
  c->nranges++;
  pthread_mutex_unlock(&c->mu);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* Runs one loop and checks the coverage; returns the ranges' begins, sorted, in
 * begins[] (MAX_RANGES) and their number. */
static size_t run_and_check(sw_threadpool *tp, size_t n, size_t parts, size_t *begins) {
  coverage *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->hits = calloc(n ? n : 1, sizeof *c->hits);
  assert_non_null(c->hits);
  c->n = n;
  pthread_mutex_init(&c->mu, NULL);
  sw_threadpool_for(tp, n, parts, record, c);
  assert_int_equal(atomic_load(&c->bad), 0);
  for (size_t i = 0; i < n; i++) {
    if (atomic_load(&c->hits[i]) != 1)
      fail_msg("n=%zu parts=%zu threads=%d: index %zu covered %d times", n, parts, sw_threadpool_threads(tp),
               i, atomic_load(&c->hits[i]));
  }
  size_t want = parts ? parts : (size_t)sw_threadpool_threads(tp);
  if (want > n) want = n;
  assert_int_equal(c->nranges, want); /* one call per non-empty range */
  assert_true(c->nranges <= MAX_RANGES);
  /* the documented split: range i = [n*i/parts, n*(i+1)/parts) */
  size_t *ends = malloc((c->nranges + 1) * sizeof *ends);
  assert_non_null(ends);
  memcpy(begins, c->begin, c->nranges * sizeof *begins);
  memcpy(ends, c->end, c->nranges * sizeof *ends);
  qsort(begins, c->nranges, sizeof *begins, cmp_size);
  qsort(ends, c->nranges, sizeof *ends, cmp_size);
  size_t p = parts ? parts : (size_t)sw_threadpool_threads(tp);
  size_t k = 0;
  for (size_t i = 0; i < p; i++) {
    size_t b = (size_t)((unsigned __int128)n * i / p), e = (size_t)((unsigned __int128)n * (i + 1) / p);
    if (b == e) continue;
    assert_true(k < c->nranges);
    assert_int_equal(begins[k], b);
    assert_int_equal(ends[k], e);
    k++;
  }
  assert_int_equal(k, c->nranges);
  size_t count = c->nranges;
  free(ends);
  pthread_mutex_destroy(&c->mu);
  free(c->hits);
  free(c);
  return count;
}

/* ---- coverage ------------------------------------------------------------- */

static void test_every_index_once(void **state) {
  static const int threads[] = {0, 1, 2, 3, 4, 8};
  static const size_t ns[] = {0, 1, 2, 3, 5, 7, 8, 16, 100, 1000, 4097};
  static const size_t parts[] = {0, 1, 2, 3, 4, 7, 8, 64, 1000, 5000};
  size_t *begins = malloc(MAX_RANGES * sizeof *begins);
  assert_non_null(begins);
  for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
    sw_threadpool *tp = NULL;
    assert_int_equal(sw_threadpool_new(threads[t], &tp), SW_STATUS_OK);
    assert_non_null(tp);
    assert_int_equal(sw_threadpool_threads(tp), threads[t] < 1 ? 1 : threads[t]);
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
      for (size_t j = 0; j < sizeof parts / sizeof *parts; j++) run_and_check(tp, ns[i], parts[j], begins);
    sw_threadpool_free(tp);
  }
  free(begins);
}

/* n < parts: only the non-empty ranges are called, each a single index. */
static void test_fewer_items_than_parts(void **state) {
  sw_threadpool *tp = NULL;
  assert_int_equal(sw_threadpool_new(4, &tp), SW_STATUS_OK);
  size_t begins[MAX_RANGES];
  assert_int_equal(run_and_check(tp, 3, 10, begins), 3);
  assert_int_equal(begins[0], 0);
  assert_int_equal(begins[1], 1);
  assert_int_equal(begins[2], 2);
  assert_int_equal(run_and_check(tp, 2, 0, begins), 2); /* parts = 4 threads > n */
  assert_int_equal(run_and_check(tp, 0, 0, begins), 0);
  assert_int_equal(run_and_check(tp, 0, 5, begins), 0);
  sw_threadpool_free(tp);
}

/* The same (n, parts) gives the same ranges with any pool, NULL included. */
static void test_ranges_depend_only_on_n_and_parts(void **state) {
  static const size_t ns[] = {1, 10, 97, 1000};
  static const size_t parts[] = {1, 3, 6, 13};
  sw_threadpool *pools[5] = {NULL};
  static const int threads[] = {1, 2, 3, 5};
  for (int t = 0; t < 4; t++) assert_int_equal(sw_threadpool_new(threads[t], &pools[t + 1]), SW_STATUS_OK);
  size_t *ref = malloc(MAX_RANGES * sizeof *ref), *got = malloc(MAX_RANGES * sizeof *got);
  assert_non_null(ref);
  assert_non_null(got);
  for (size_t i = 0; i < 4; i++) {
    for (size_t j = 0; j < 4; j++) {
      size_t nref = run_and_check(NULL, ns[i], parts[j], ref);
      for (int t = 1; t < 5; t++) {
        for (int rep = 0; rep < 3; rep++) {
          size_t ngot = run_and_check(pools[t], ns[i], parts[j], got);
          assert_int_equal(ngot, nref);
          assert_memory_equal(got, ref, nref * sizeof *ref);
        }
      }
    }
  }
  free(ref);
  free(got);
  for (int t = 1; t < 5; t++) sw_threadpool_free(pools[t]);
}

/* ---- back to back --------------------------------------------------------- */

typedef struct {
  int64_t *acc;
  int64_t round;
} bump_ctx;

static void bump(void *ctx, size_t begin, size_t end) {
  bump_ctx *b = ctx;
  for (size_t i = begin; i < end; i++) b->acc[i] += b->round + (int64_t)i;
}

/* 10,000 loops in a row: each sees the previous one's writes (the wait is a full
 * barrier) and every index gets exactly its sum. */
static void test_back_to_back(void **state) {
  enum { N = 257, ROUNDS = 10000 };
  static const int threads[] = {2, 3};
  for (int t = 0; t < 2; t++) {
    sw_threadpool *tp = NULL;
    assert_int_equal(sw_threadpool_new(threads[t], &tp), SW_STATUS_OK);
    int64_t acc[N] = {0};
    bump_ctx b = {acc, 0};
    for (int r = 0; r < ROUNDS; r++) {
      b.round = r;
      sw_threadpool_for(tp, N, (size_t)(r % 5), bump, &b); /* parts 0..4 */
      /* after round r: acc[i] = sum over k <= r of (k + i) */
      assert_int_equal(acc[r % N], (int64_t)r * (r + 1) / 2 + (int64_t)(r % N) * (r + 1));
    }
    for (int i = 0; i < N; i++)
      assert_int_equal(acc[i], (int64_t)ROUNDS * (ROUNDS - 1) / 2 + (int64_t)i * ROUNDS);
    sw_threadpool_free(tp);
  }
}

/* Loops spaced out enough for the workers to go to sleep in between still complete. */
static void test_after_idle(void **state) {
  sw_threadpool *tp = NULL;
  assert_int_equal(sw_threadpool_new(3, &tp), SW_STATUS_OK);
  int64_t acc[64] = {0};
  bump_ctx b = {acc, 1};
  for (int r = 0; r < 5; r++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    sw_threadpool_for(tp, 64, 0, bump, &b);
  }
  for (int i = 0; i < 64; i++) assert_int_equal(acc[i], 5 * (1 + i));
  sw_threadpool_free(tp);
}

/* ---- nesting -------------------------------------------------------------- */

typedef struct {
  sw_threadpool *tp;
  atomic_int *hits; /* 16 x 16 */
} nested_ctx;

typedef struct {
  nested_ctx *outer;
  size_t row;
} inner_ctx;

static void inner(void *ctx, size_t begin, size_t end) {
  inner_ctx *ic = ctx;
  for (size_t j = begin; j < end; j++) atomic_fetch_add(&ic->outer->hits[ic->row * 16 + j], 1);
}

static void outer(void *ctx, size_t begin, size_t end) {
  nested_ctx *nc = ctx;
  for (size_t i = begin; i < end; i++) {
    inner_ctx ic = {nc, i};
    sw_threadpool_for(nc->tp, 16, 4, inner, &ic); /* runs serially: the pool is busy */
  }
}

static void test_nested_call(void **state) {
  sw_threadpool *tp = NULL;
  assert_int_equal(sw_threadpool_new(2, &tp), SW_STATUS_OK);
  atomic_int hits[256];
  for (int i = 0; i < 256; i++) atomic_init(&hits[i], 0);
  nested_ctx nc = {tp, hits};
  sw_threadpool_for(tp, 16, 0, outer, &nc);
  for (int i = 0; i < 256; i++) assert_int_equal(atomic_load(&hits[i]), 1);
  sw_threadpool_free(tp);
}

/* ---- NULL and serial ------------------------------------------------------ */

typedef struct {
  int calls;
  size_t begin, end;
} serial_ctx;

static void note(void *ctx, size_t begin, size_t end) {
  serial_ctx *s = ctx;
  s->calls++;
  s->begin = begin;
  s->end = end;
}

static void test_null_pool(void **state) {
  serial_ctx s = {0};
  sw_threadpool_for(NULL, 10, 0, note, &s); /* one range per thread: the caller's */
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.begin, 0);
  assert_int_equal(s.end, 10);
  s.calls = 0;
  sw_threadpool_for(NULL, 0, 0, note, &s);
  assert_int_equal(s.calls, 0);
  assert_int_equal(sw_threadpool_threads(NULL), 1);
  sw_threadpool_free(NULL);

  sw_threadpool *tp = NULL;
  assert_int_equal(sw_threadpool_new(1, &tp), SW_STATUS_OK);
  s.calls = 0;
  sw_threadpool_for(tp, 7, 0, note, &s);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.end, 7);
  sw_threadpool_free(tp);
  assert_int_equal(sw_threadpool_new(-3, &tp), SW_STATUS_OK);
  assert_int_equal(sw_threadpool_threads(tp), 1);
  sw_threadpool_free(tp);
}

static void test_new_rejects_absurd_sizes(void **state) {
  sw_threadpool *tp = (sw_threadpool *)&tp;
  assert_int_equal(sw_threadpool_new(1 << 20, &tp), SW_STATUS_INVALID);
  assert_null(tp);
  assert_non_null(strstr(sw_last_error(), "1048576"));
}

/* A pool allocates only in _new: the n-th allocation failing leaves nothing behind,
 * and a loop allocates nothing. */
static void test_allocation_failures(void **state) {
  long live = sw_alloc_live();
  for (long k = 1; k < 10; k++) {
    sw_threadpool *tp = NULL;
    sw_alloc_fail_after(k);
    sw_status st = sw_threadpool_new(4, &tp);
    sw_alloc_fail_after(0);
    if (st == SW_STATUS_OK) {
      assert_non_null(tp);
      long before = sw_alloc_live();
      int64_t acc[32] = {0};
      bump_ctx b = {acc, 0};
      sw_threadpool_for(tp, 32, 0, bump, &b);
      assert_int_equal(sw_alloc_live(), before);
      sw_threadpool_free(tp);
    } else {
      assert_int_equal(st, SW_STATUS_NOMEM);
      assert_null(tp);
    }
    assert_int_equal(sw_alloc_live(), live);
  }
}

/* ---- dispatch overhead (printed, not asserted) ----------------------------- */

static void nothing(void *ctx, size_t begin, size_t end) {
  atomic_fetch_add_explicit((atomic_size_t *)ctx, end - begin, memory_order_relaxed);
}

/* About 1 ns of arithmetic per index, which the compiler cannot drop. */
static void arithmetic(void *ctx, size_t begin, size_t end) {
  double s = 0;
  for (size_t i = begin; i < end; i++) s += (double)i / (1.0 + (double)i);
  atomic_store_explicit((_Atomic double *)ctx, s, memory_order_relaxed);
}

/* Seconds per call of fn over n, the best of 5 rounds of `calls` calls. */
static double per_call(sw_threadpool *tp, size_t n, void (*fn)(void *, size_t, size_t), void *ctx,
                       int calls) {
  double best = 1e9;
  for (int round = 0; round < 5; round++) {
    double t0 = sw_now();
    for (int i = 0; i < calls; i++) sw_threadpool_for(tp, n, 0, fn, ctx);
    double dt = (sw_now() - t0) / calls;
    if (dt < best) best = dt;
  }
  return best;
}

/* The cost of handing a loop to the pool: a call's time minus the serial time divided
 * by the threads. Timings depend on the machine and its load; the figure goes to
 * docs/BENCHMARKS.md, never into an assertion. */
static void test_dispatch_overhead(void **state) {
  _Atomic double sink = 0;
  atomic_size_t total;
  atomic_init(&total, 0);
  for (int threads = 2; threads <= 8; threads *= 2) {
    sw_threadpool *tp = NULL;
    assert_int_equal(sw_threadpool_new(threads, &tp), SW_STATUS_OK);
    double empty = per_call(tp, 64, nothing, &total, 20000);
    for (size_t n = 1000; n <= 16000; n *= 4) {
      double serial = per_call(NULL, n, arithmetic, &sink, 2000);
      double par = per_call(tp, n, arithmetic, &sink, 2000);
      print_message(
          "thread pool: %d threads, n=%5zu: serial %6.2f us, pool %6.2f us, overhead %5.2f us "
          "(empty loop %.2f us)\n",
          threads, n, serial * 1e6, par * 1e6, (par - serial / threads) * 1e6, empty * 1e6);
    }
    sw_threadpool_free(tp);
  }
  assert_int_equal(atomic_load(&total) % 64, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_index_once),
      cmocka_unit_test(test_fewer_items_than_parts),
      cmocka_unit_test(test_ranges_depend_only_on_n_and_parts),
      cmocka_unit_test(test_back_to_back),
      cmocka_unit_test(test_after_idle),
      cmocka_unit_test(test_nested_call),
      cmocka_unit_test(test_null_pool),
      cmocka_unit_test(test_new_rejects_absurd_sizes),
      cmocka_unit_test(test_allocation_failures),
      cmocka_unit_test(test_dispatch_overhead),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
