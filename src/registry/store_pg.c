/* The PostgreSQL store (libpq), for registries shared by several hosts. Transactions run
 * at READ COMMITTED; registry.c locks a model's row (SELECT ... FOR UPDATE) before it
 * allocates a version number or moves an alias, so writers to one model queue behind
 * each other, and a unique-key race, a serialization failure or a deadlock makes the
 * whole transaction run again. */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "registry/registry_int.h"

typedef struct {
  sw__store base;
  PGconn *conn;
  char sqlstate[6];
} pg_store;

/* The password, if any, is not repeated in messages. */
static void redacted(const char *url, char *buf, size_t n) {
  const char *at = strchr(url, '@'), *scheme = strstr(url, "://");
  const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
  if (at && colon && colon < at) snprintf(buf, n, "%.*s:***%s", (int)(colon - url), url, at);
  else snprintf(buf, n, "%s", url);
}

static void quiet_notices(void *arg, const PGresult *res) {
  (void)arg;
  SW_DEBUG("postgres: %s", PQresultErrorMessage(res));
}

static void pg_close(sw__store *base) {
  pg_store *s = (pg_store *)base;
  if (!s) return;
  if (s->conn) PQfinish(s->conn);
  sw_free(s);
}

static sw_status pg_open(const char *target, sw__store **out) {
  *out = NULL;
  pg_store *s = sw_calloc(1, sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "out of memory");
  s->base.ops = &sw__store_pg;
  sw_status st = SW_STATUS_OK;
  s->conn = PQconnectdb(target);
  if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
    char where[512];
    redacted(target, where, sizeof where);
    const char *msg = s->conn ? PQerrorMessage(s->conn) : "out of memory";
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
    st = sw_error(SW_STATUS_IO, "registry %s: cannot connect: %.*s", where, (int)len, msg);
    goto out;
  }
  PQsetNoticeReceiver(s->conn, quiet_notices, NULL);
out:
  if (st) pg_close(&s->base);
  else *out = &s->base;
  return st;
}

static sw_status pg_exec(sw__store *base, const char *sql, const char *const *params, size_t n, json_t **rows) {
  pg_store *s = (pg_store *)base;
  if (rows) *rows = NULL;
  s->sqlstate[0] = 0;
  PGresult *res = PQexecParams(s->conn, sql, (int)n, NULL, params, NULL, NULL, 0);
  ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  sw_status st = SW_STATUS_OK;
  if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", code ? code : "");
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
    st = sw_error(SW_STATUS_IO, "registry (postgres): %.*s", (int)len, msg);
    goto out;
  }
  if (rows) {
    json_t *all = json_array();
    int nr = PQntuples(res), nc = PQnfields(res);
    for (int r = 0; r < nr; r++) {
      json_t *row = json_array();
      for (int c = 0; c < nc; c++)
        json_array_append_new(row, PQgetisnull(res, r, c) ? json_null() : json_string(PQgetvalue(res, r, c)));
      json_array_append_new(all, row);
    }
    *rows = all;
  }
out:
  PQclear(res);
  return st;
}

static sw_status pg_begin(sw__store *base, bool write) {
  return pg_exec(base, write ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                 NULL, 0, NULL);
}

static sw_status pg_commit(sw__store *base) { return pg_exec(base, "COMMIT", NULL, 0, NULL); }

static void pg_rollback(sw__store *base) {
  pg_store *s = (pg_store *)base;
  if (PQtransactionStatus(s->conn) == PQTRANS_IDLE) return;
  char keep[6];
  memcpy(keep, s->sqlstate, sizeof keep);
  PGresult *res = PQexec(s->conn, "ROLLBACK");
  PQclear(res);
  memcpy(s->sqlstate, keep, sizeof keep);
}

static bool pg_retryable(const sw__store *base) {
  const pg_store *s = (const pg_store *)base;
  /* 40001 serialization_failure, 40P01 deadlock_detected, 23505 unique_violation (a
   * concurrent insert of the same key won; the retry sees its row) */
  return !strcmp(s->sqlstate, "40001") || !strcmp(s->sqlstate, "40P01") || !strcmp(s->sqlstate, "23505");
}

const sw__store_ops sw__store_pg = {
    .name = "postgres",
    .id_column = "BIGSERIAL PRIMARY KEY",
    .for_update = " FOR UPDATE",
    .migrate_lock = "SELECT pg_advisory_xact_lock(7434201)",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .retryable = pg_retryable,
};
