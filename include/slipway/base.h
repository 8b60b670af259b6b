/* slipway foundation: status codes, logging, allocation, atomic files, checksums,
 * the counter-based RNG, JSON/YAML loading and the progress bar. Every other part
 * stands on this header and on nothing else of slipway's. */
#ifndef SLIPWAY_BASE_H
#define SLIPWAY_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status -------------------------------------------------------------- */

/* One status enum for the whole library; X(NAME, message). */
#define SW_STATUS_MAP(X)                                              \
  X(OK, "success")                                                    \
  X(NOMEM, "out of memory")                                           \
  X(IO, "input/output error")                                         \
  X(INVALID, "invalid argument")                                      \
  X(FORMAT, "malformed input")                                        \
  X(CORRUPT, "corrupt data")                                          \
  X(TRUNCATED, "truncated data")                                      \
  X(NOT_FOUND, "not found")                                           \
  X(EXISTS, "already exists")                                         \
  X(UNSUPPORTED, "unsupported")                                       \
  X(REFUSED, "refused by policy")                                     \
  X(RANGE, "out of range")                                            \
  X(EOF, "end of data")                                              \
  X(PREEMPTED, "preempted after a checkpoint, resumable")

typedef enum {
#define SW__STATUS_ENUM(name, msg) SW_STATUS_##name,
  SW_STATUS_MAP(SW__STATUS_ENUM)
#undef SW__STATUS_ENUM
  SW_STATUS_COUNT_
} sw_status;

/* The fixed message of a status ("truncated data"). Never NULL. */
const char *sw_strerror(sw_status st);
/* The symbolic name of a status ("TRUNCATED"). Never NULL. */
const char *sw_status_name(sw_status st);

/* Records a detailed message for the calling thread and returns st, so a failing
 * function can `return sw_error(SW_STATUS_IO, "open %s: %s", path, strerror(errno));`. */
sw_status sw_error(sw_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current thread's message with more context ("shard x: " + old). */
sw_status sw_error_prefix(sw_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The detail of the calling thread's last error; "" when none. Owned by the library,
 * valid until the next sw_error on this thread. */
const char *sw_last_error(void);
void sw_clear_error(void);

/* Bugs abort; bad input never reaches an assert. */
#define SW_ASSERT(cond)                                                          \
  do {                                                                           \
    if (!(cond)) sw__assert_fail(#cond, __FILE__, __LINE__);                     \
  } while (0)
void sw__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- logging ------------------------------------------------------------- */

typedef enum {
  SW_LOG_DEBUG,
  SW_LOG_INFO,
  SW_LOG_WARN,
  SW_LOG_ERROR,
  SW_LOG_QUIET
} sw_log_level;

/* Messages below the level are dropped. Default INFO, or $SLIPWAY_LOG
 * (debug, info, warn, error, quiet) when set. */
void sw_log_set_level(sw_log_level level);
sw_log_level sw_log_get_level(void);
/* Writes "slipway: LEVEL: message\n" to stderr (one write, so lines never interleave). */
void sw_log(sw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define SW_DEBUG(...) sw_log(SW_LOG_DEBUG, __VA_ARGS__)
#define SW_INFO(...) sw_log(SW_LOG_INFO, __VA_ARGS__)
#define SW_WARN(...) sw_log(SW_LOG_WARN, __VA_ARGS__)
#define SW_LOGERR(...) sw_log(SW_LOG_ERROR, __VA_ARGS__)

/* ---- allocation ---------------------------------------------------------- */

/* Every allocation of the library goes through these, so tests can make the Nth one
 * fail and count what is still live. They return NULL on failure (never abort);
 * sw_free(NULL) is a no-op. */
void *sw_malloc(size_t n);
void *sw_calloc(size_t count, size_t size);
void *sw_realloc(void *p, size_t n);
void sw_free(void *p);
char *sw_strdup(const char *s);
char *sw_strndup(const char *s, size_t n);
/* printf into a new string (sw_free it); NULL on failure. */
char *sw_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Test hook: the n-th allocation from now fails (1 = the next one); n <= 0 disables. */
void sw_alloc_fail_after(long n);
/* Number of allocations made through sw_malloc & co. not yet freed. */
long sw_alloc_live(void);
/* While counter is set (NULL: stop), the bytes the calling thread allocates through
 * sw_malloc & co. (as malloc_usable_size counts them) are added to *counter: what a
 * model version's load allocated is its memory. */
void sw_alloc_count_bytes(int64_t *counter);

/* A growable array of bytes, used as a string builder too. */
typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} sw_buf;
sw_status sw_buf_reserve(sw_buf *b, size_t extra);
sw_status sw_buf_append(sw_buf *b, const void *data, size_t n);
sw_status sw_buf_printf(sw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sw_buf_free(sw_buf *b);

/* The length of the UTF-8 sequence at p (whose first byte is >= 0x80), 0 when it is not
 * valid UTF-8 (overlong forms, surrogates and values past U+10FFFF are not). */
size_t sw_utf8_len(const unsigned char *p, const unsigned char *end);

/* ---- files --------------------------------------------------------------- */

/* Writes data to path atomically: temporary name in the same directory, fsync,
 * rename over path, fsync the directory. On failure path is untouched and the
 * temporary file removed. */
sw_status sw_atomic_write(const char *path, const void *data, size_t len);

/* A file being written atomically, for content produced bit by bit. */
typedef struct sw_atomic_file sw_atomic_file;
/* Opens a temporary file beside path. *out owns it until commit or abort. */
sw_status sw_atomic_file_open(const char *path, sw_atomic_file **out);
FILE *sw_atomic_file_stream(sw_atomic_file *af);
/* Flushes, fsyncs, renames into place, fsyncs the directory, frees af (even on error;
 * on error the temporary is removed and path untouched). */
sw_status sw_atomic_file_commit(sw_atomic_file *af);
/* Removes the temporary file and frees af. NULL is a no-op. */
void sw_atomic_file_abort(sw_atomic_file *af);

/* fsync of a directory, so a rename inside it is durable. */
sw_status sw_fsync_dir(const char *dir);
/* mkdir -p with mode 0755. */
sw_status sw_mkdir_p(const char *dir);
/* rm -rf; a missing path is not an error. */
sw_status sw_remove_tree(const char *path);
/* Reads a whole file into a new buffer (sw_free it), NUL-terminated past len. */
sw_status sw_read_file(const char *path, uint8_t **data, size_t *len);
/* The directory part of path, in a new string ("." when none). */
char *sw_path_dirname(const char *path);
/* a + "/" + b, in a new string. */
char *sw_path_join(const char *a, const char *b);
bool sw_path_exists(const char *path);
bool sw_path_is_dir(const char *path);

/* ---- checksums ----------------------------------------------------------- */

/* CRC32C (Castagnoli), continuing from crc (0 to start). Uses the SSE4.2 instruction
 * when the CPU has it and a table otherwise; both give the same answers. */
uint32_t sw_crc32c(uint32_t crc, const void *data, size_t len);
/* The table implementation alone (tests compare the two). */
uint32_t sw_crc32c_portable(uint32_t crc, const void *data, size_t len);
/* True when sw_crc32c uses the hardware instruction. */
bool sw_crc32c_hw(void);
/* TFRecord's masked CRC: ((c >> 15) | (c << 17)) + 0xa282ead8. */
static inline uint32_t sw_crc32c_mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

#define SW_SHA256_LEN 32
#define SW_SHA256_HEX_LEN 65 /* 64 hex digits and a NUL */
typedef struct sw_sha256 sw_sha256;
sw_status sw_sha256_new(sw_sha256 **out);
sw_status sw_sha256_update(sw_sha256 *h, const void *data, size_t len);
/* Writes the digest as 64 lower-case hex digits and a NUL; h may be reused after. */
sw_status sw_sha256_final_hex(sw_sha256 *h, char hex[SW_SHA256_HEX_LEN]);
void sw_sha256_free(sw_sha256 *h);
sw_status sw_sha256_hex(const void *data, size_t len, char hex[SW_SHA256_HEX_LEN]);
sw_status sw_sha256_file_hex(const char *path, char hex[SW_SHA256_HEX_LEN]);

/* ---- random numbers ------------------------------------------------------ */

/* Philox-4x32-10 (Salmon et al., SC'11), a counter-based generator: output block i of
 * stream s under seed k is a pure function of (k, s, i). Its whole state is the three
 * integers below, so a checkpoint saves it exactly. */
typedef struct {
  uint64_t seed;    /* the key */
  uint64_t stream;  /* independent sequences under one seed (high counter words) */
  uint64_t counter; /* number of 32-bit outputs drawn so far */
} sw_rng;

/* One Philox-4x32-10 block: out = philox(ctr, key). */
void sw_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
void sw_rng_init(sw_rng *r, uint64_t seed, uint64_t stream);
uint32_t sw_rng_u32(sw_rng *r);
uint64_t sw_rng_u64(sw_rng *r);
/* Uniform in [0, n), unbiased (Lemire); n > 0. */
uint64_t sw_rng_below(sw_rng *r, uint64_t n);
/* Uniform in [0, 1) with 53 random bits. */
double sw_rng_uniform(sw_rng *r);
/* Standard normal (Box-Muller). */
double sw_rng_normal(sw_rng *r);
/* Fills perm with a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void sw_rng_permutation(sw_rng *r, uint64_t *perm, size_t n);

/* ---- JSON and YAML ------------------------------------------------------- */

/* Loads a JSON file; the error names the file, line and column. Caller owns *out. */
sw_status sw_json_load_file(const char *path, json_t **out);
/* Writes v as indented JSON with a trailing newline, atomically. */
sw_status sw_json_write_file(const char *path, const json_t *v);
/* Loads a YAML document into the same tree type as JSON: mappings become objects,
 * sequences arrays, plain scalars integers, reals, true/false or null where they read
 * as such (YAML 1.2 core schema), everything else strings. Caller owns *out. */
sw_status sw_yaml_load_file(const char *path, json_t **out);
sw_status sw_yaml_parse(const char *text, size_t len, const char *name, json_t **out);

/* ---- progress ------------------------------------------------------------ */

/* A progress bar on stderr, drawn only when stderr is a terminal, at most ~10 times a
 * second. All functions accept NULL. */
typedef struct sw_progress sw_progress;
sw_progress *sw_progress_begin(const char *label, uint64_t total);
void sw_progress_update(sw_progress *p, uint64_t done);
/* A short note drawn after the counts from the next update on ("loss 0.31"). */
void sw_progress_note(sw_progress *p, const char *note);
void sw_progress_end(sw_progress *p);

/* ---- element types ------------------------------------------------------- */

/* Element types of the typed buffers that parts hand each other (data to nn). */
typedef enum { SW_DTYPE_F32, SW_DTYPE_I64, SW_DTYPE_U8 } sw_dtype;
size_t sw_dtype_size(sw_dtype t);
const char *sw_dtype_name(sw_dtype t);

/* ---- thread pool ------------------------------------------------------------ */

/* A fixed set of worker threads for data-parallel loops. Work is split into contiguous
 * ranges by index alone (never by which thread is free), so results that depend on the
 * split are reproducible for a given thread count. */
typedef struct sw_threadpool sw_threadpool;
/* threads <= 1: no workers, sw_threadpool_for runs on the caller. */
sw_status sw_threadpool_new(int threads, sw_threadpool **out);
void sw_threadpool_free(sw_threadpool *tp);
int sw_threadpool_threads(const sw_threadpool *tp);
/* Calls fn(ctx, begin, end) for `parts` contiguous ranges covering [0, n) and waits for
 * all of them; the caller's thread takes one range. tp may be NULL (serial). parts = 0
 * means one range per thread. */
void sw_threadpool_for(sw_threadpool *tp, size_t n, size_t parts,
                       void (*fn)(void *ctx, size_t begin, size_t end), void *ctx);

/* ---- misc ---------------------------------------------------------------- */

/* Seconds on a monotonic clock; for reporting, never for computation. */
double sw_now(void);
const char *sw_version(void);

#ifdef __cplusplus
}
#endif
#endif
