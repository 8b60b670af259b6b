/* JSON files through jansson: loading with a precise error, writing atomically. */
#include <errno.h>
#include <string.h>

#include "slipway/base.h"

sw_status sw_json_load_file(const char *path, json_t **out) {
  *out = NULL;
  uint8_t *data;
  size_t len;
  sw_status st = sw_read_file(path, &data, &len);
  if (st) return st;
  json_error_t err;
  json_t *v = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
  sw_free(data);
  if (!v) return sw_error(SW_STATUS_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
  *out = v;
  return SW_STATUS_OK;
}

sw_status sw_json_write_file(const char *path, const json_t *v) {
  char *text = json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  if (!text) return sw_error(SW_STATUS_NOMEM, "cannot serialize JSON for %s", path);
  size_t n = strlen(text);
  sw_buf b = {0};
  sw_status st = sw_buf_append(&b, text, n);
  if (!st) st = sw_buf_append(&b, "\n", 1);
  free(text);
  if (!st) st = sw_atomic_write(path, b.data, b.len);
  sw_buf_free(&b);
  return st;
}
