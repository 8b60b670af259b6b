/* The content-addressed artifact store: a model file lives at
 * HOME/artifacts/sha256/<first two hex digits>/<all 64 hex digits>, written with the
 * atomic-file helpers (temporary name, fsync, rename, fsync of the directory) and
 * hashed again on every load, so a file changed on disk is never run. */
#include <errno.h>
#include <string.h>

#include "registry/registry_int.h"

static bool hex64(const char *s) {
  if (!s || strlen(s) != 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

char *sw__artifact_path(const char *home, const char *sha256) {
  if (!hex64(sha256)) return NULL;
  return sw_asprintf("%s/artifacts/sha256/%.2s/%s", home, sha256, sha256);
}

sw_status sw__artifact_check(const char *home, const char *sha256, char actual[SW_SHA256_HEX_LEN]) {
  actual[0] = 0;
  char *path = sw__artifact_path(home, sha256);
  if (!path) return sw_error(SW_STATUS_INVALID, "'%s' is not a SHA-256 digest", sha256);
  sw_status st = sw_sha256_file_hex(path, actual);
  if (st == SW_STATUS_NOT_FOUND) st = sw_error(SW_STATUS_NOT_FOUND, "artifact %s is missing", path);
  else if (!st && strcmp(actual, sha256) != 0)
    st = sw_error(SW_STATUS_CORRUPT, "artifact %s is corrupt: expected sha256 %s, found %s; refusing to use it", path,
                  sha256, actual);
  sw_free(path);
  return st;
}

sw_status sw__artifact_put(const char *home, const uint8_t *data, size_t len, char hex[SW_SHA256_HEX_LEN]) {
  char *path = NULL, *dir = NULL;
  sw_status st = sw_sha256_hex(data, len, hex);
  if (st) return st;
  path = sw__artifact_path(home, hex);
  dir = path ? sw_path_dirname(path) : NULL;
  if (!dir) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  char have[SW_SHA256_HEX_LEN];
  if (sw_path_exists(path) && sw__artifact_check(home, hex, have) == SW_STATUS_OK) goto out; /* already there */
  sw_clear_error();
  st = sw_mkdir_p(dir);
  if (!st) st = sw_atomic_write(path, data, len);
  if (st) sw_error_prefix(st, "storing artifact %s: ", hex);
out:
  sw_free(dir);
  sw_free(path);
  return st;
}

sw_status sw__artifact_get(const char *home, const char *sha256, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  char *path = sw__artifact_path(home, sha256);
  if (!path) return sw_error(SW_STATUS_INVALID, "'%s' is not a SHA-256 digest", sha256);
  uint8_t *buf = NULL;
  size_t n = 0;
  sw_status st = sw_read_file(path, &buf, &n);
  if (st == SW_STATUS_NOT_FOUND) {
    st = sw_error(SW_STATUS_NOT_FOUND, "artifact %s is missing (expected sha256 %s)", path, sha256);
    goto out;
  }
  if (st) goto out;
  /* hash the very bytes that will be loaded: no window for a change in between */
  char hex[SW_SHA256_HEX_LEN];
  st = sw_sha256_hex(buf, n, hex);
  if (st) goto out;
  if (strcmp(hex, sha256) != 0) {
    st = sw_error(SW_STATUS_CORRUPT, "artifact %s is corrupt: expected sha256 %s, found %s; refusing to load it", path,
                  sha256, hex);
    goto out;
  }
  *data = buf;
  *len = n;
  buf = NULL;
out:
  sw_free(buf);
  sw_free(path);
  return st;
}
