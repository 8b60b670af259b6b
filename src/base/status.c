/* Status codes and the per-thread error detail that goes with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/base.h"

static const char *const status_messages[] = {
#define SW__STATUS_MSG(name, msg) msg,
    SW_STATUS_MAP(SW__STATUS_MSG)
#undef SW__STATUS_MSG
};

static const char *const status_names[] = {
#define SW__STATUS_NAME(name, msg) #name,
    SW_STATUS_MAP(SW__STATUS_NAME)
#undef SW__STATUS_NAME
};

static _Thread_local char last_error[2048];

const char *sw_strerror(sw_status st) {
  if ((unsigned)st >= SW_STATUS_COUNT_) return "unknown status";
  return status_messages[st];
}

const char *sw_status_name(sw_status st) {
  if ((unsigned)st >= SW_STATUS_COUNT_) return "UNKNOWN";
  return status_names[st];
}

sw_status sw_error(sw_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return st;
}

sw_status sw_error_prefix(sw_status st, const char *fmt, ...) {
  char prefix[512];
  char old[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_error, sizeof old);
  const char *rest = old[0] ? old : sw_strerror(st);
  size_t np = strlen(prefix), nr = strlen(rest);
  if (np > sizeof last_error - 1) np = sizeof last_error - 1;
  if (nr > sizeof last_error - 1 - np) nr = sizeof last_error - 1 - np;
  memcpy(last_error, prefix, np);
  memcpy(last_error + np, rest, nr);
  last_error[np + nr] = '\0';
  return st;
}

const char *sw_last_error(void) { return last_error; }

void sw_clear_error(void) { last_error[0] = '\0'; }

void sw__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "slipway: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
  abort();
}

const char *sw_version(void) {
#ifdef SW_VERSION
  return SW_VERSION;
#else
  return "0.0.0";
#endif
}

size_t sw_dtype_size(sw_dtype t) {
  switch (t) {
    case SW_DTYPE_F32: return 4;
    case SW_DTYPE_I64: return 8;
    case SW_DTYPE_U8: return 1;
  }
  return 0;
}

const char *sw_dtype_name(sw_dtype t) {
  switch (t) {
    case SW_DTYPE_F32: return "f32";
    case SW_DTYPE_I64: return "i64";
    case SW_DTYPE_U8: return "u8";
  }
  return "?";
}
