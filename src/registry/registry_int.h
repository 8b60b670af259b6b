/* The registry's own header: the store interface its SQLite and PostgreSQL backends
 * implement (a table of function pointers, as ggml's backends and curl's vtls do), and
 * what registry.c and artifacts.c share. Entity logic is written once, in registry.c,
 * in SQL both backends accept; a backend only runs statements and transactions. */
#ifndef SLIPWAY_REGISTRY_INT_H
#define SLIPWAY_REGISTRY_INT_H

#include "slipway/registry.h"

typedef struct sw__store sw__store;

typedef struct {
  const char *name;      /* "sqlite", "postgres" */
  const char *id_column; /* DDL of an auto-increment 64-bit primary key */
  const char *for_update; /* appended to a SELECT that must lock its rows until commit;
                             "" where write transactions are serialized anyway (SQLite) */
  const char *migrate_lock; /* a statement that serializes migrations across processes,
                               or NULL when the write transaction already does */
  /* target: a file path or a URL. On error *out is NULL. */
  sw_status (*open)(const char *target, sw__store **out);
  void (*close)(sw__store *s);
  /* Runs one statement with text parameters $1..$n (a NULL is SQL NULL). With rows not
   * NULL, *rows (caller owns) is an array of rows, each an array of strings and nulls. */
  sw_status (*exec)(sw__store *s, const char *sql, const char *const *params, size_t n, json_t **rows);
  /* write: takes the write lock at once (SQLite BEGIN IMMEDIATE). */
  sw_status (*begin)(sw__store *s, bool write);
  sw_status (*commit)(sw__store *s);
  void (*rollback)(sw__store *s);
  /* True when the last failure was a transient conflict between writers (busy,
   * serialization failure, deadlock, a unique key taken by a concurrent insert): the
   * transaction is to be run again. */
  bool (*retryable)(const sw__store *s);
} sw__store_ops;

/* Every backend's handle begins with this. */
struct sw__store {
  const sw__store_ops *ops;
};

extern const sw__store_ops sw__store_sqlite;
extern const sw__store_ops sw__store_pg;

/* ---- artifacts.c: the content-addressed store -------------------------------------- */

/* HOME/artifacts/sha256/ab/abcdef... for a 64-digit hex digest (caller frees). */
char *sw__artifact_path(const char *home, const char *sha256);
/* Writes data under its SHA-256 (atomically; an existing file with the right content is
 * kept, one with the wrong content replaced). hex receives the digest. */
sw_status sw__artifact_put(const char *home, const uint8_t *data, size_t len, char hex[SW_SHA256_HEX_LEN]);
/* Reads the artifact of that digest and checks its hash: SW_STATUS_CORRUPT names the
 * expected and the actual hash, SW_STATUS_NOT_FOUND a missing file. */
sw_status sw__artifact_get(const char *home, const char *sha256, uint8_t **data, size_t *len);
/* Re-hashes one artifact: OK, NOT_FOUND or CORRUPT (actual digest in hex). */
sw_status sw__artifact_check(const char *home, const char *sha256, char actual[SW_SHA256_HEX_LEN]);

#endif
