/* The logger: the only way the library speaks, always to stderr. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slipway/base.h"

static atomic_int log_level = -1;

static sw_log_level level_from_env(void) {
  const char *v = getenv("SLIPWAY_LOG");
  if (!v) return SW_LOG_INFO;
  if (!strcmp(v, "debug")) return SW_LOG_DEBUG;
  if (!strcmp(v, "warn")) return SW_LOG_WARN;
  if (!strcmp(v, "error")) return SW_LOG_ERROR;
  if (!strcmp(v, "quiet")) return SW_LOG_QUIET;
  return SW_LOG_INFO;
}

void sw_log_set_level(sw_log_level level) { atomic_store(&log_level, (int)level); }

sw_log_level sw_log_get_level(void) {
  int l = atomic_load(&log_level);
  if (l < 0) {
    l = (int)level_from_env();
    atomic_store(&log_level, l);
  }
  return (sw_log_level)l;
}

void sw_log(sw_log_level level, const char *fmt, ...) {
  static const char *const names[] = {"debug", "info", "warning", "error", ""};
  if (level < sw_log_get_level() || level >= SW_LOG_QUIET) return;
  char line[4096];
  int n = snprintf(line, sizeof line, "slipway: %s: ", names[level]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

double sw_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
