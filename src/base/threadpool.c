/* The thread pool behind sw_threadpool_for: workers that wait for a generation counter
 * to move, claim the ranges of the current loop one by one, and check out when none are
 * left. The data-parallel loops of nn and data call it thousands of times a second, so a
 * call costs a few atomics while the workers are spinning, and a futex wake after they
 * have gone to sleep. Everything is allocated in sw_threadpool_new. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "slipway/base.h"

/* Waiting for a shared counter to move goes in three stages: PAUSE_SPINS polls with the
 * CPU's pause hint (back-to-back loops on free cores meet here, in well under a
 * microsecond), then YIELD_SPINS polls with sched_yield between them (so that with more
 * threads than cores the thread we wait for gets the core), then a condition variable,
 * so an idle pool sleeps. The two spins cover some tens of microseconds. With more
 * threads than cores the pause stage is skipped: a spinning thread would only hold the
 * core that the one it waits for needs. */
#define PAUSE_SPINS 2000
#define YIELD_SPINS 200
#define MAX_THREADS 1024

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How a loop is handed over. The job fields are plain: the caller writes them before it
 * bumps `generation` (release) and each worker reads them after seeing the bump
 * (acquire); the caller touches them again only once every worker has checked out. */
struct sw_threadpool {
  int threads; /* including the caller */
  int workers; /* threads - 1 */
  int pause_spins; /* PAUSE_SPINS, or 0 with more threads than cores: then only yield */
  pthread_t *tids;

  /* the current loop */
  void (*fn)(void *ctx, size_t begin, size_t end);
  void *ctx;
  size_t n, parts;
  /* Padding keeps the counters that different threads hammer on separate cache lines
   * (padding rather than _Alignas: sw_malloc only promises malloc's alignment). */
  char pad0_[64];
  atomic_size_t next_part; /* the next range nobody has claimed */
  char pad1_[64];
  atomic_uint generation; /* bumped once per loop, and to stop */
  char pad2_[64];
  atomic_int checked_out; /* workers done with the current generation */
  char pad3_[64];
  atomic_int sleepers;                  /* workers blocked on `wake` */
  atomic_bool caller_sleeping;          /* the caller blocked on `done` */
  atomic_bool busy;                     /* a loop is running (nested or concurrent calls) */
  atomic_bool stop;                     /* set before the last generation bump */

  pthread_mutex_t mu;
  pthread_cond_t wake; /* workers: a new generation */
  pthread_cond_t done; /* caller: the last worker checked out */
};

static inline void spin_pause(const sw_threadpool *tp, int spins) {
  if (spins < tp->pause_spins)
    cpu_relax();
  else
    sched_yield();
}

/* Range i of `parts` over [0, n): [n*i/parts, n*(i+1)/parts), in 128 bits so that n*i
 * cannot overflow. */
static inline size_t range_start(size_t n, size_t parts, size_t i) {
  return (size_t)((unsigned __int128)n * i / parts);
}

static void run_serial(size_t n, size_t parts, void (*fn)(void *, size_t, size_t), void *ctx) {
  for (size_t i = 0; i < parts; i++) {
    size_t b = range_start(n, parts, i), e = range_start(n, parts, i + 1);
    if (b < e) fn(ctx, b, e);
  }
}

/* Claims and runs ranges of the current loop until none are left. */
static void run_parts(sw_threadpool *tp) {
  size_t n = tp->n, parts = tp->parts;
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&tp->next_part, 1, memory_order_relaxed);
    if (i >= parts) return;
    size_t b = range_start(n, parts, i), e = range_start(n, parts, i + 1);
    if (b < e) tp->fn(tp->ctx, b, e);
  }
}

static void *worker_main(void *arg) {
  sw_threadpool *tp = arg;
  unsigned seen = 0; /* the generation at creation: a loop may start before we run */
  for (;;) {
    unsigned gen = seen;
    for (int spins = 0; spins < tp->pause_spins + YIELD_SPINS; spins++) {
      gen = atomic_load_explicit(&tp->generation, memory_order_acquire);
      if (gen != seen) break;
      spin_pause(tp, spins);
    }
    if (gen == seen) {
      /* Dekker with the caller: we publish `sleepers` then re-read `generation`, it
       * publishes `generation` then reads `sleepers` (all seq_cst), so at least one of
       * us sees the other; the mutex makes its broadcast land after our wait began. */
      pthread_mutex_lock(&tp->mu);
      atomic_fetch_add(&tp->sleepers, 1);
      while ((gen = atomic_load(&tp->generation)) == seen) pthread_cond_wait(&tp->wake, &tp->mu);
      atomic_fetch_sub(&tp->sleepers, 1);
      pthread_mutex_unlock(&tp->mu);
    }
    seen = gen;
    if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return NULL; /* after the acquire */
    run_parts(tp);
    /* The last one out wakes the caller if it went to sleep (the same handshake). */
    if (atomic_fetch_add(&tp->checked_out, 1) + 1 == tp->workers && atomic_load(&tp->caller_sleeping)) {
      pthread_mutex_lock(&tp->mu);
      pthread_cond_signal(&tp->done);
      pthread_mutex_unlock(&tp->mu);
    }
  }
}

sw_status sw_threadpool_new(int threads, sw_threadpool **out) {
  *out = NULL;
  if (threads > MAX_THREADS)
    return sw_error(SW_STATUS_INVALID, "a thread pool of %d threads (at most %d)", threads,
                    MAX_THREADS);
  if (threads < 1) threads = 1;
  sw_threadpool *tp = sw_calloc(1, sizeof *tp);
  if (!tp) return sw_error(SW_STATUS_NOMEM, "out of memory");
  tp->threads = threads;
  tp->workers = 0;
  cpu_set_t cpus;
  int cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  tp->pause_spins = threads <= cores ? PAUSE_SPINS : 0;
  atomic_init(&tp->next_part, 0);
  atomic_init(&tp->generation, 0);
  atomic_init(&tp->checked_out, 0);
  atomic_init(&tp->sleepers, 0);
  atomic_init(&tp->caller_sleeping, false);
  atomic_init(&tp->busy, false);
  atomic_init(&tp->stop, false);
  pthread_mutex_init(&tp->mu, NULL);
  pthread_cond_init(&tp->wake, NULL);
  pthread_cond_init(&tp->done, NULL);
  if (threads == 1) {
    *out = tp;
    return SW_STATUS_OK;
  }
  tp->tids = sw_calloc((size_t)threads - 1, sizeof *tp->tids);
  if (!tp->tids) {
    sw_threadpool_free(tp);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  for (int i = 0; i < threads - 1; i++) {
    int rc = pthread_create(&tp->tids[i], NULL, worker_main, tp);
    if (rc != 0) {
      sw_threadpool_free(tp); /* joins the tp->workers already started */
      return sw_error(rc == EAGAIN ? SW_STATUS_NOMEM : SW_STATUS_IO,
                      "starting thread %d of a pool of %d: %s", i + 2, threads, strerror(rc));
    }
    tp->workers = i + 1;
  }
  *out = tp;
  return SW_STATUS_OK;
}

void sw_threadpool_free(sw_threadpool *tp) {
  if (!tp) return;
  if (tp->workers > 0) {
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, true);
    atomic_fetch_add(&tp->generation, 1);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->workers; i++) pthread_join(tp->tids[i], NULL);
  }
  pthread_cond_destroy(&tp->done);
  pthread_cond_destroy(&tp->wake);
  pthread_mutex_destroy(&tp->mu);
  sw_free(tp->tids);
  sw_free(tp);
}

int sw_threadpool_threads(const sw_threadpool *tp) { return tp ? tp->threads : 1; }

void sw_threadpool_for(sw_threadpool *tp, size_t n, size_t parts,
                       void (*fn)(void *ctx, size_t begin, size_t end), void *ctx) {
  if (parts == 0) parts = (size_t)sw_threadpool_threads(tp);
  /* With parts >= n every non-empty range is a single index, whatever parts is. */
  if (parts > n) parts = n;
  if (n == 0) return;
  if (parts == 1 || !tp || tp->workers == 0) {
    run_serial(n, parts, fn, ctx);
    return;
  }
  /* A call from inside a range (or from a second thread while a loop runs) gets the
   * same ranges, run on its own thread. */
  if (atomic_exchange_explicit(&tp->busy, true, memory_order_acquire)) {
    run_serial(n, parts, fn, ctx);
    return;
  }

  tp->fn = fn;
  tp->ctx = ctx;
  tp->n = n;
  tp->parts = parts;
  atomic_store_explicit(&tp->next_part, 0, memory_order_relaxed);
  atomic_store_explicit(&tp->checked_out, 0, memory_order_relaxed);
  atomic_fetch_add(&tp->generation, 1); /* seq_cst: publishes the job, then... */
  if (atomic_load(&tp->sleepers) > 0) { /* ...reads sleepers (see worker_main) */
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
  }

  run_parts(tp);

  for (int spins = 0; spins < tp->pause_spins + YIELD_SPINS; spins++) {
    if (atomic_load_explicit(&tp->checked_out, memory_order_acquire) == tp->workers) break;
    spin_pause(tp, spins);
  }
  if (atomic_load(&tp->checked_out) != tp->workers) {
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->caller_sleeping, true);
    while (atomic_load(&tp->checked_out) != tp->workers) pthread_cond_wait(&tp->done, &tp->mu);
    atomic_store(&tp->caller_sleeping, false);
    pthread_mutex_unlock(&tp->mu);
  }
  atomic_store_explicit(&tp->busy, false, memory_order_release);
}
