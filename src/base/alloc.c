/* The one allocation wrapper: lets tests fail the Nth allocation and count leaks. */
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/base.h"

static atomic_long fail_countdown; /* 0: off; n: the n-th allocation from now fails */
static atomic_long live;

static bool should_fail(void) {
  long c = atomic_load(&fail_countdown);
  if (c <= 0) return false;
  c = atomic_fetch_sub(&fail_countdown, 1);
  return c == 1;
}

/* Bytes allocated by this thread go to this counter while it is set (the model
 * server measures what a version's load allocates). */
static _Thread_local int64_t *byte_counter;

void sw_alloc_count_bytes(int64_t *counter) { byte_counter = counter; }

static void *counted(void *p) {
  if (p && byte_counter) *byte_counter += (int64_t)malloc_usable_size(p);
  return p;
}

void sw_alloc_fail_after(long n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }

long sw_alloc_live(void) { return atomic_load(&live); }

void *sw_malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = malloc(n ? n : 1);
  if (p) atomic_fetch_add(&live, 1);
  return counted(p);
}

void *sw_calloc(size_t count, size_t size) {
  if (should_fail()) return NULL;
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p) atomic_fetch_add(&live, 1);
  return counted(p);
}

void *sw_realloc(void *p, size_t n) {
  if (!p) return sw_malloc(n);
  if (should_fail()) return NULL;
  if (byte_counter) *byte_counter -= (int64_t)malloc_usable_size(p);
  void *q = realloc(p, n ? n : 1);
  if (!q && byte_counter) *byte_counter += (int64_t)malloc_usable_size(p);
  return counted(q);
}

void sw_free(void *p) {
  if (!p) return;
  if (byte_counter) *byte_counter -= (int64_t)malloc_usable_size(p);
  atomic_fetch_sub(&live, 1);
  free(p);
}

char *sw_strndup(const char *s, size_t n) {
  char *d = sw_malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *sw_strdup(const char *s) { return sw_strndup(s, strlen(s)); }

char *sw_asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = sw_malloc((size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

sw_status sw_buf_reserve(sw_buf *b, size_t extra) {
  if (extra > SIZE_MAX / 2 - b->len)
    return sw_error(SW_STATUS_NOMEM, "a buffer of %zu + %zu bytes is too large", b->len, extra);
  if (b->len + extra <= b->cap) return SW_STATUS_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra) cap *= 2;
  uint8_t *d = sw_realloc(b->data, cap);
  if (!d) return sw_error(SW_STATUS_NOMEM, "out of memory growing a buffer to %zu bytes", cap);
  b->data = d;
  b->cap = cap;
  return SW_STATUS_OK;
}

sw_status sw_buf_append(sw_buf *b, const void *data, size_t n) {
  sw_status st = sw_buf_reserve(b, n + 1);
  if (st) return st;
  if (n) memcpy(b->data + b->len, data, n);
  b->len += n;
  b->data[b->len] = 0; /* always NUL-terminated past len, so text can be used as a string */
  return SW_STATUS_OK;
}

sw_status sw_buf_printf(sw_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return sw_error(SW_STATUS_INVALID, "bad format string");
  sw_status st = sw_buf_reserve(b, (size_t)n + 1);
  if (st) return st;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return SW_STATUS_OK;
}

void sw_buf_free(sw_buf *b) {
  if (!b) return;
  sw_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

size_t sw_utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n;
  unsigned v;
  if (c >= 0xc2 && c <= 0xdf) n = 2, v = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, v = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, v = c & 0x07;
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if ((n == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) || (n == 4 && (v < 0x10000 || v > 0x10ffff))) return 0;
  return n;
}
