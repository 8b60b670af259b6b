/* The thread pool behind sw_threadpool_for: workers wait for a generation counter to
 * move, then claim the ranges of the current loop one by one alongside the caller. The
 * data-parallel loops of nn and data call it thousands of times a second, so a call costs
 * a few atomics while the workers are spinning, and a futex wake after they have gone to
 * sleep. Everything is allocated in sw_threadpool_new. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "slipway/base.h"

/* A thread waiting for a shared counter to move polls it for a while before it blocks
 * on a condition variable: waking a blocked thread costs tens of microseconds (a futex
 * and the scheduler), more than a whole small loop. It polls with the CPU's pause hint
 * for SPIN_NS, which covers the gap between the loops of a training step, so those meet
 * a spinning worker; an idle pool sleeps after that. With more threads than cores it
 * polls with sched_yield instead, and for less time, since a spinning thread would hold
 * the core that the thread it waits for needs. */
#define SPIN_NS 50000 /* 50 us: long enough for back-to-back loops, short enough not to steal
                         * the cores from the BLAS call that usually follows */
#define SPIN_NS_OVERSUBSCRIBED 200000
#define MAX_THREADS 1024

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How a loop is handed over. The job fields are plain: the caller writes them, then
 * stores `remaining` (release); a thread reads them only after it has claimed a range
 * by decrementing `remaining` (acquire). The caller rewrites them only once `finished`
 * says every range is done, so a claimed range always reads its own loop's fields,
 * however late its worker woke up. Nobody waits for a worker that claimed nothing. */
struct sw_threadpool {
  int threads;         /* including the caller */
  int workers;         /* threads - 1, started */
  bool oversubscribed; /* more threads than cores: yield rather than pause */
  uint64_t spin_ns;    /* how long to poll before blocking */
  pthread_t *tids;

  /* the current loop */
  void (*fn)(void *ctx, size_t begin, size_t end);
  void *ctx;
  size_t n, parts;
  /* Padding keeps the counters that different threads hammer on separate cache lines
   * (padding rather than _Alignas: sw_malloc only promises malloc's alignment). */
  char pad0_[64];
  atomic_size_t remaining; /* ranges not yet claimed; range parts - remaining is next */
  char pad1_[64];
  atomic_size_t finished; /* ranges done */
  char pad2_[64];
  atomic_uint generation; /* bumped once per loop, and to stop: what workers wait on */
  char pad3_[64];
  atomic_int sleepers;         /* workers blocked on `wake` */
  atomic_bool caller_sleeping; /* the caller blocked on `done` */
  atomic_bool busy;            /* a loop is running (nested or concurrent calls) */
  atomic_bool stop;            /* set before the last generation bump */

  pthread_mutex_t mu;
  pthread_cond_t wake; /* workers: a new generation */
  pthread_cond_t done; /* caller: the last range finished */
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One poll of a spin-wait; false once the wait has lasted tp->spin_ns. The clock is
 * read every 64 polls only, and not at all when the wait ends within the first 64. */
static inline bool keep_spinning(const sw_threadpool *tp, unsigned *polls, uint64_t *deadline) {
  if (tp->oversubscribed)
    sched_yield();
  else
    cpu_relax();
  if (++*polls % 64 != 0) return true;
  uint64_t now = now_ns();
  if (*deadline == 0) *deadline = now + tp->spin_ns;
  return now < *deadline;
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

/* Claims and runs ranges of the current loop until none are left. Returns true when
 * the caller must be woken: this thread finished the last range while it slept. */
static bool run_parts(sw_threadpool *tp) {
  bool wake_caller = false;
  size_t r = atomic_load_explicit(&tp->remaining, memory_order_acquire);
  for (;;) {
    while (r > 0 && !atomic_compare_exchange_weak_explicit(&tp->remaining, &r, r - 1, memory_order_acquire,
                                                           memory_order_acquire)) {
    }
    if (r == 0) return wake_caller;
    size_t n = tp->n, parts = tp->parts, i = parts - r;
    size_t b = range_start(n, parts, i), e = range_start(n, parts, i + 1);
    if (b < e) tp->fn(tp->ctx, b, e);
    /* seq_cst: the handshake with the caller's caller_sleeping (sw_threadpool_for) */
    if (atomic_fetch_add(&tp->finished, 1) + 1 == parts && atomic_load(&tp->caller_sleeping))
      wake_caller = true;
    r = atomic_load_explicit(&tp->remaining, memory_order_acquire);
  }
}

static void *worker_main(void *arg) {
  sw_threadpool *tp = arg;
  unsigned seen = 0; /* the generation at creation: a loop may start before we run */
  for (;;) {
    unsigned gen, polls = 0;
    uint64_t deadline = 0;
    while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
           keep_spinning(tp, &polls, &deadline)) {
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
    if (run_parts(tp)) {
      pthread_mutex_lock(&tp->mu);
      pthread_cond_signal(&tp->done);
      pthread_mutex_unlock(&tp->mu);
    }
  }
}

sw_status sw_threadpool_new(int threads, sw_threadpool **out) {
  *out = NULL;
  if (threads > MAX_THREADS)
    return sw_error(SW_STATUS_INVALID, "a thread pool of %d threads (at most %d)", threads, MAX_THREADS);
  if (threads < 1) threads = 1;
  sw_threadpool *tp = sw_calloc(1, sizeof *tp);
  if (!tp) return sw_error(SW_STATUS_NOMEM, "out of memory");
  tp->threads = threads;
  tp->workers = 0;
  cpu_set_t cpus;
  int cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  tp->oversubscribed = threads > cores;
  tp->spin_ns = tp->oversubscribed ? SPIN_NS_OVERSUBSCRIBED : SPIN_NS;
  atomic_init(&tp->remaining, 0);
  atomic_init(&tp->finished, 0);
  atomic_init(&tp->generation, 0);
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
      return sw_error(rc == EAGAIN ? SW_STATUS_NOMEM : SW_STATUS_IO, "starting thread %d of a pool of %d: %s",
                      i + 2, threads, strerror(rc));
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
  atomic_store_explicit(&tp->finished, 0, memory_order_relaxed);
  atomic_store_explicit(&tp->remaining, parts, memory_order_release); /* publishes the job */
  atomic_fetch_add(&tp->generation, 1); /* seq_cst: wakes the spinners, then... */
  if (atomic_load(&tp->sleepers) > 0) { /* ...reads sleepers (see worker_main) */
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
  }

  run_parts(tp); /* the caller finishing the last range has nobody to wake */

  unsigned polls = 0;
  uint64_t deadline = 0;
  while (atomic_load_explicit(&tp->finished, memory_order_acquire) != parts &&
         keep_spinning(tp, &polls, &deadline)) {
  }
  if (atomic_load(&tp->finished) != parts) {
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->caller_sleeping, true);
    while (atomic_load(&tp->finished) != parts) pthread_cond_wait(&tp->done, &tp->mu);
    atomic_store(&tp->caller_sleeping, false);
    pthread_mutex_unlock(&tp->mu);
  }
  atomic_store_explicit(&tp->busy, false, memory_order_release);
}
