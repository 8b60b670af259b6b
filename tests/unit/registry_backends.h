/* The two backends of the registry tests (test_registry.c, test_registry_executions.c):
 * a fresh, empty store per test, a new SQLite file or a new PostgreSQL database on the
 * throwaway server tests/postgres.sh starts ($SW_TEST_PG_URL; a missing one fails the
 * run, it never skips). Included by each test file (static: one copy per test binary). */
#ifndef SW_TEST_REGISTRY_BACKENDS_H
#define SW_TEST_REGISTRY_BACKENDS_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/registry.h"

typedef struct {
  bool pg;
  char url[512];
  char home[256];
} backend;

static backend SQLITE = {.pg = false}, PG = {.pg = true};
static int db_counter;

static inline const char *onnx_file(const char *name) {
  static char path[1024];
  const char *data = getenv("SW_TEST_DATA");
  snprintf(path, sizeof path, "%s/../fuzz/corpus/onnx/%s", data ? data : "tests/data", name);
  return path;
}

/* A fresh, empty store for one test: a new SQLite file, or a new PostgreSQL database. */
static inline int setup(void **state) {
  backend *b = *state;
  char tmpl[] = "/tmp/sw_test_registry.XXXXXX"; /* mkdtemp's template */
  if (!mkdtemp(tmpl)) return -1;
  snprintf(b->home, sizeof b->home, "%s", tmpl);
  if (!b->pg) {
    snprintf(b->url, sizeof b->url, "%s/registry.db", tmpl);
    return 0;
  }
  const char *base = getenv("SW_TEST_PG_URL");
  if (!base) {
    fprintf(stderr, "SW_TEST_PG_URL is not set: run this test through tests/postgres.sh run (ctest does)\n");
    return -1;
  }
  PGconn *c = PQconnectdb(base);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "cannot connect to %s: %s", base, PQerrorMessage(c));
    PQfinish(c);
    return -1;
  }
  char sql[128], name[64];
  snprintf(name, sizeof name, "reg_%d_%d", (int)getpid(), ++db_counter);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  PQfinish(c);
  if (!ok) return -1;
  const char *slash = strrchr(base, '/');
  snprintf(b->url, sizeof b->url, "%.*s/%s", (int)(slash - base), base, name);
  return 0;
}

static inline int teardown(void **state) {
  backend *b = *state;
  sw_remove_tree(b->home);
  return 0;
}

static inline sw_registry *open_reg(const backend *b) {
  sw_registry *r = NULL;
  sw_status st = sw_registry_open(b->url, b->home, &r);
  if (st) fprintf(stderr, "open: %s\n", sw_last_error());
  assert_int_equal(st, SW_STATUS_OK);
  return r;
}

#endif
