/* The SQLite store: one file in WAL mode (readers never block the writer), a busy
 * timeout so processes wait for each other instead of failing, and BEGIN IMMEDIATE for
 * every write transaction, so writers are serialized from their first statement and a
 * read-then-write (the next version number) can never race another process. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/registry_int.h"

/* How long a writer waits for another process's transaction before giving up. */
#define SQLITE_BUSY_MS 60000

typedef struct {
  sw__store base;
  sqlite3 *db;
  char *path;
  int last_rc;
} sqlite_store;

static sw_status fail(sqlite_store *s, int rc, const char *what) {
  s->last_rc = rc;
  return sw_error(SW_STATUS_IO, "registry %s: %s: %s", s->path, what, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static void sq_close(sw__store *base) {
  sqlite_store *s = (sqlite_store *)base;
  if (!s) return;
  sqlite3_close(s->db);
  sw_free(s->path);
  sw_free(s);
}

static sw_status sq_exec(sw__store *base, const char *sql, const char *const *params, size_t n, json_t **rows) {
  sqlite_store *s = (sqlite_store *)base;
  sqlite3_stmt *stmt = NULL;
  json_t *out = rows ? json_array() : NULL;
  sw_status st = SW_STATUS_OK;
  if (rows) *rows = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
  if (rc != SQLITE_OK) {
    st = fail(s, rc, "prepare");
    goto out;
  }
  /* the statements are written with PostgreSQL's $1..$n; SQLite reads those as named
   * parameters "$1".."$n" */
  for (size_t i = 0; i < n; i++) {
    char name[24];
    snprintf(name, sizeof name, "$%zu", i + 1);
    int idx = sqlite3_bind_parameter_index(stmt, name);
    if (idx == 0) continue;
    rc = params[i] ? sqlite3_bind_text(stmt, idx, params[i], -1, SQLITE_TRANSIENT) : sqlite3_bind_null(stmt, idx);
    if (rc != SQLITE_OK) {
      st = fail(s, rc, "bind");
      goto out;
    }
  }
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!out) continue;
    int cols = sqlite3_column_count(stmt);
    json_t *row = json_array();
    for (int c = 0; c < cols; c++) {
      const unsigned char *t = sqlite3_column_text(stmt, c);
      json_array_append_new(row, t ? json_string((const char *)t) : json_null());
    }
    json_array_append_new(out, row);
  }
  if (rc != SQLITE_DONE) {
    st = fail(s, rc, "step");
    goto out;
  }
  s->last_rc = SQLITE_OK;
  if (rows) {
    *rows = out;
    out = NULL;
  }
out:
  sqlite3_finalize(stmt);
  json_decref(out);
  return st;
}

static sw_status sq_open(const char *target, sw__store **out) {
  *out = NULL;
  sqlite_store *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  s->base.ops = &sw__store_sqlite;
  s->path = sw_strdup(target);
  sw_status st = s->path ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (st) goto out;
  int rc = sqlite3_open_v2(target, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
  if (rc != SQLITE_OK) {
    st = fail(s, rc, "open");
    goto out;
  }
  sqlite3_busy_timeout(s->db, SQLITE_BUSY_MS);
  /* WAL: readers and one writer at once, across processes. synchronous=FULL: a commit
   * that returned is on disk. foreign_keys: the schema's references are enforced. */
  static const char *const pragmas[] = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                                        "PRAGMA foreign_keys=ON"};
  for (size_t i = 0; i < sizeof pragmas / sizeof pragmas[0] && !st; i++) {
    json_t *rows = NULL;
    st = sq_exec(&s->base, pragmas[i], NULL, 0, &rows);
    /* switching a new file to WAL needs it to itself and does not call the busy
     * handler: processes opening a fresh store together retry it (the first to get it
     * switches the file; the others then find WAL already) */
    double t0 = sw_now();
    unsigned seed = (unsigned)getpid();
    while (st && i == 0 && (s->last_rc & 0xff) == SQLITE_BUSY && sw_now() - t0 < SQLITE_BUSY_MS / 1e3) {
      sw_clear_error();
      usleep((useconds_t)(1000 + rand_r(&seed) % 4000));
      st = sq_exec(&s->base, pragmas[i], NULL, 0, &rows);
    }
    if (!st && i == 0) {
      const char *mode = json_string_value(json_array_get(json_array_get(rows, 0), 0));
      if (!mode || strcmp(mode, "wal") != 0)
        st = sw_error(SW_STATUS_IO, "registry %s: cannot switch to WAL mode (got %s)", target, mode ? mode : "nothing");
    }
    json_decref(rows);
  }
out:
  if (st) sq_close(&s->base);
  else *out = &s->base;
  return st;
}

static sw_status sq_begin(sw__store *base, bool write) {
  return sq_exec(base, write ? "BEGIN IMMEDIATE" : "BEGIN", NULL, 0, NULL);
}

static sw_status sq_commit(sw__store *base) { return sq_exec(base, "COMMIT", NULL, 0, NULL); }

static void sq_rollback(sw__store *base) {
  sqlite_store *s = (sqlite_store *)base;
  if (sqlite3_get_autocommit(s->db)) return; /* nothing open (a failed BEGIN or COMMIT ended it) */
  int rc = s->last_rc;
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  s->last_rc = rc;
}

static bool sq_retryable(const sw__store *base) {
  const sqlite_store *s = (const sqlite_store *)base;
  int rc = s->last_rc & 0xff;
  return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

const sw__store_ops sw__store_sqlite = {
    .name = "sqlite",
    .id_column = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .for_update = "",
    .migrate_lock = NULL,
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .retryable = sq_retryable,
};
