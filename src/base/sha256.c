/* SHA-256 through OpenSSL's EVP interface: shard, artifact and manifest digests. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "slipway/base.h"

struct sw_sha256 {
  EVP_MD_CTX *ctx;
};

sw_status sw_sha256_new(sw_sha256 **out) {
  *out = NULL;
  sw_sha256 *h = sw_calloc(1, sizeof *h);
  if (!h) return sw_error(SW_STATUS_NOMEM, "out of memory");
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
    sw_sha256_free(h);
    return sw_error(SW_STATUS_NOMEM, "cannot start a SHA-256 digest");
  }
  *out = h;
  return SW_STATUS_OK;
}

sw_status sw_sha256_update(sw_sha256 *h, const void *data, size_t len) {
  if (EVP_DigestUpdate(h->ctx, data, len) != 1) return sw_error(SW_STATUS_IO, "SHA-256 update failed");
  return SW_STATUS_OK;
}

sw_status sw_sha256_final_hex(sw_sha256 *h, char hex[SW_SHA256_HEX_LEN]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != SW_SHA256_LEN)
    return sw_error(SW_STATUS_IO, "SHA-256 final failed");
  for (unsigned i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    return sw_error(SW_STATUS_IO, "SHA-256 reset failed");
  return SW_STATUS_OK;
}

void sw_sha256_free(sw_sha256 *h) {
  if (!h) return;
  EVP_MD_CTX_free(h->ctx);
  sw_free(h);
}

sw_status sw_sha256_hex(const void *data, size_t len, char hex[SW_SHA256_HEX_LEN]) {
  sw_sha256 *h;
  sw_status st = sw_sha256_new(&h);
  if (st) return st;
  st = sw_sha256_update(h, data, len);
  if (!st) st = sw_sha256_final_hex(h, hex);
  sw_sha256_free(h);
  return st;
}

sw_status sw_sha256_file_hex(const char *path, char hex[SW_SHA256_HEX_LEN]) {
  FILE *f = fopen(path, "rb");
  if (!f) return sw_error(errno == ENOENT ? SW_STATUS_NOT_FOUND : SW_STATUS_IO, "open %s: %s", path,
                          strerror(errno));
  sw_sha256 *h = NULL;
  sw_status st = sw_sha256_new(&h);
  if (st) goto out;
  static _Thread_local unsigned char chunk[1 << 16];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    st = sw_sha256_update(h, chunk, n);
    if (st) goto out;
  }
  if (ferror(f)) {
    st = sw_error(SW_STATUS_IO, "read %s: %s", path, strerror(errno));
    goto out;
  }
  st = sw_sha256_final_hex(h, hex);
out:
  sw_sha256_free(h);
  fclose(f);
  return st;
}
