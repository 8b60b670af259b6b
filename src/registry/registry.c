/* The registry's entities, written once over the store interface (registry_int.h):
 * schema migrations, model references, registering, aliases and their history,
 * evaluations, promotions, rollouts, lineage both ways and the event log. Every write
 * is one transaction that also appends its event, and is run again whole when the
 * store reports a transient conflict with another writer. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "registry/registry_int.h"
#include "slipway/data.h"
#include "slipway/nn.h"

#define TXN_ATTEMPTS 50

struct sw_registry {
  sw__store *store;
  const sw__store_ops *ops;
  char *home; /* absolute */
  char *url;
  int schema_version;
};

static const char *const STATES[] = {"registered", "blessed", "rejected", "production", "archived", "rolled_back"};

/* ---- small helpers ------------------------------------------------------------------ */

static void now_iso(char buf[32]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

const char *sw_registry_default_who(void) {
  const char *u = getenv("USER");
  if (!u || !*u) u = getenv("LOGNAME");
  return u && *u ? u : "unknown";
}

static const char *who_or_default(const char *who) { return who && *who ? who : sw_registry_default_who(); }

static char *i64s(char buf[24], int64_t v) {
  snprintf(buf, 24, "%lld", (long long)v);
  return buf;
}

static sw_status q(sw_registry *r, json_t **rows, const char *sql, const char *const *params, size_t n) {
  return r->ops->exec(r->store, sql, params, n, rows);
}
#define NPARAMS(...) (sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))
#define QP(r, rows, sql, ...) q((r), (rows), (sql), (const char *const[]){__VA_ARGS__}, NPARAMS(__VA_ARGS__))
#define Q0(r, rows, sql) q((r), (rows), (sql), NULL, 0)

static const char *cell(const json_t *rows, size_t row, size_t col) {
  return json_string_value(json_array_get(json_array_get(rows, row), col));
}

static int64_t cell_i64(const json_t *rows, size_t row, size_t col) {
  const char *s = cell(rows, row, col);
  return s ? strtoll(s, NULL, 10) : 0;
}

static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* A JSON text stored by us, back as a tree (null when absent or unreadable). */
static json_t *jparse(const char *s) {
  json_t *v = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
  return v ? v : json_null();
}

static char *jdump(const json_t *v) { return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL; }

/* The test hook of the crash-safety test: with SLIPWAY_TEST_PAUSE=POINT the process
 * stops at POINT for good, after saying so, so a test can kill -9 it there. Test only. */
static void test_pause(const char *point) {
  const char *p = getenv("SLIPWAY_TEST_PAUSE");
  if (!p || strcmp(p, point) != 0) return;
  SW_WARN("test hook: paused at %s (SLIPWAY_TEST_PAUSE)", point);
  for (;;) sleep(60);
}

/* ---- transactions ------------------------------------------------------------------- */

typedef sw_status (*txn_body)(sw_registry *r, void *ctx);

/* Runs body inside a transaction, again from the start (after a short random wait) while
 * the store says the failure was a conflict with another writer. */
static sw_status txn(sw_registry *r, bool write, txn_body body, void *ctx) {
  unsigned seed = (unsigned)getpid() ^ (unsigned)(uintptr_t)ctx;
  for (int attempt = 1;; attempt++) {
    sw_status st = r->ops->begin(r->store, write);
    if (!st) st = body(r, ctx);
    if (!st) st = r->ops->commit(r->store);
    if (!st) return SW_STATUS_OK;
    bool again = r->ops->retryable(r->store);
    r->ops->rollback(r->store);
    if (!again || attempt >= TXN_ATTEMPTS) return st;
    SW_DEBUG("registry: conflict with another writer, attempt %d: %s", attempt, sw_last_error());
    usleep((useconds_t)(1000 + rand_r(&seed) % (2000 * (attempt < 10 ? attempt : 10))));
  }
}

/* ---- schema ------------------------------------------------------------------------- */

/* {ID} is the backend's auto-increment primary key. Every other type is one both
 * SQLite and PostgreSQL take; JSON documents are TEXT, timestamps ISO-8601 UTC TEXT. */
static const char *const MIGRATION_1[] = {
    "CREATE TABLE models (id {ID}, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE datasets (id {ID}, manifest_sha256 TEXT NOT NULL UNIQUE, path TEXT, created_at TEXT NOT NULL)",
    "CREATE TABLE runs (id {ID}, path TEXT, run_json TEXT NOT NULL, config_sha256 TEXT, code_version TEXT, host TEXT,"
    " params_sha256 TEXT, dataset_id BIGINT REFERENCES datasets(id), created_at TEXT NOT NULL)",
    "CREATE TABLE versions (id {ID}, model_id BIGINT NOT NULL REFERENCES models(id), version BIGINT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('registered','blessed','rejected','production','archived','rolled_back')),"
    " artifact_sha256 TEXT NOT NULL, artifact_size BIGINT NOT NULL, run_id BIGINT REFERENCES runs(id),"
    " dataset_id BIGINT REFERENCES datasets(id), source TEXT, code_version TEXT, description TEXT,"
    " created_at TEXT NOT NULL, created_by TEXT NOT NULL, UNIQUE (model_id, version))",
    "CREATE INDEX versions_dataset ON versions(dataset_id)",
    "CREATE TABLE aliases (model_id BIGINT NOT NULL REFERENCES models(id), alias TEXT NOT NULL, version BIGINT NOT NULL,"
    " updated_at TEXT NOT NULL, PRIMARY KEY (model_id, alias))",
    "CREATE TABLE alias_history (id {ID}, model_id BIGINT NOT NULL REFERENCES models(id), alias TEXT NOT NULL,"
    " from_version BIGINT, to_version BIGINT NOT NULL, who TEXT NOT NULL, at TEXT NOT NULL, why TEXT)",
    "CREATE TABLE evaluations (id {ID}, version_id BIGINT NOT NULL REFERENCES versions(id), dataset_sha256 TEXT,"
    " split TEXT NOT NULL, slice TEXT NOT NULL, examples BIGINT, metrics TEXT NOT NULL, context TEXT, who TEXT,"
    " at TEXT NOT NULL)",
    "CREATE INDEX evaluations_version ON evaluations(version_id)",
    "CREATE TABLE rollouts (id {ID}, model_id BIGINT NOT NULL REFERENCES models(id), incumbent BIGINT,"
    " challenger BIGINT NOT NULL, mode TEXT NOT NULL, state TEXT NOT NULL, weight DOUBLE PRECISION NOT NULL,"
    " step BIGINT NOT NULL, policy TEXT, decisions TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE events (id {ID}, at TEXT NOT NULL, who TEXT NOT NULL, entity TEXT NOT NULL, action TEXT NOT NULL,"
    " model TEXT, version BIGINT, detail TEXT)",
    "CREATE INDEX events_model ON events(model, version)",
};

/* Pipeline executions, as ML Metadata records them: one row per stage run (or reuse from
 * the cache), what it read and what it made; see "pipeline executions" below. */
static const char *const MIGRATION_EXECUTIONS[] = {
    "CREATE TABLE executions (id {ID}, pipeline TEXT NOT NULL, stage TEXT NOT NULL, cache_key TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('running','complete','failed','cached')), inputs TEXT NOT NULL, outputs TEXT,"
    " started_at TEXT NOT NULL, ended_at TEXT, error TEXT, who TEXT NOT NULL, host TEXT, pid BIGINT)",
    "CREATE INDEX executions_key ON executions(pipeline, stage, cache_key)",
};

static const struct {
  const char *const *statements;
  size_t n;
} MIGRATIONS[] = {
    {MIGRATION_1, sizeof MIGRATION_1 / sizeof MIGRATION_1[0]},
    {MIGRATION_EXECUTIONS, sizeof MIGRATION_EXECUTIONS / sizeof MIGRATION_EXECUTIONS[0]},
};
#define SCHEMA_LATEST ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

typedef struct {
  int target;    /* the migration to apply */
  int found;     /* the version the store was at */
} migrate_ctx;

static sw_status read_schema_version(sw_registry *r, int *v) {
  json_t *rows = NULL;
  sw_status st = Q0(r, &rows, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  *v = st ? 0 : (int)cell_i64(rows, 0, 0);
  json_decref(rows);
  return st;
}

static sw_status migrate_one(sw_registry *r, void *arg) {
  migrate_ctx *m = arg;
  sw_status st = SW_STATUS_OK;
  if (r->ops->migrate_lock) st = Q0(r, NULL, r->ops->migrate_lock);
  if (!st) st = Q0(r, NULL, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
  if (!st) st = read_schema_version(r, &m->found);
  if (st || m->found >= m->target) return st;
  const char *const *stmts = MIGRATIONS[m->target - 1].statements;
  for (size_t i = 0; i < MIGRATIONS[m->target - 1].n && !st; i++) {
    const char *s = stmts[i], *at = strstr(s, "{ID}");
    char *sql = NULL;
    while (at) { /* replace every {ID} */
      char *next = sw_asprintf("%.*s%s%s", (int)(at - s), s, r->ops->id_column, at + 4);
      sw_free(sql);
      sql = next;
      if (!sql) break;
      s = sql;
      at = strstr(s, "{ID}");
    }
    st = Q0(r, NULL, sql ? sql : stmts[i]);
    sw_free(sql);
  }
  char v[24], now[32];
  now_iso(now);
  if (!st) st = QP(r, NULL, "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", i64s(v, m->target), now);
  if (st) sw_error_prefix(st, "schema migration %d: ", m->target);
  return st;
}

static sw_status migrate(sw_registry *r) {
  int have = 0;
  sw_status st = read_schema_version(r, &have);
  if (st) sw_clear_error(); /* a new store: no schema_version table yet */
  for (int v = st ? 1 : have + 1; v <= SCHEMA_LATEST; v++) {
    migrate_ctx m = {.target = v};
    st = txn(r, true, migrate_one, &m);
    if (st) return st;
  }
  st = read_schema_version(r, &r->schema_version);
  if (!st && r->schema_version > SCHEMA_LATEST)
    st = sw_error(SW_STATUS_UNSUPPORTED, "registry %s is at schema version %d, newer than this slipway knows (%d)", r->url,
                  r->schema_version, SCHEMA_LATEST);
  return st;
}

/* ---- opening -------------------------------------------------------------------------- */

static bool is_postgres(const char *url) {
  return !strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13);
}

static char *absolute(const char *path) {
  if (path[0] == '/') return sw_strdup(path);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return NULL;
  if (!strncmp(path, "./", 2)) path += 2;
  return sw_path_join(cwd, path);
}

sw_status sw_registry_open(const char *url, const char *home, sw_registry **out) {
  *out = NULL;
  sw_registry *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_status st = SW_STATUS_OK;
  if (!home || !*home) home = getenv("SLIPWAY_HOME");
  if (!home || !*home) home = ".slipway";
  if (!url || !*url) url = getenv("SLIPWAY_REGISTRY");
  r->home = absolute(home);
  if (!r->home) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  if (url && *url) {
    if (!strncmp(url, "sqlite:", 7)) url += 7;
    r->url = sw_strdup(url);
  } else {
    r->url = sw_path_join(r->home, "registry.db");
  }
  if (!r->url) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  r->ops = is_postgres(r->url) ? &sw__store_pg : &sw__store_sqlite;
  if (r->ops == &sw__store_sqlite) {
    char *dir = sw_path_dirname(r->url);
    st = dir ? sw_mkdir_p(dir) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(dir);
    if (st) goto out;
  }
  st = r->ops->open(r->url, &r->store);
  if (!st) st = migrate(r);
out:
  if (st) sw_registry_close(r);
  else *out = r;
  return st;
}

void sw_registry_close(sw_registry *r) {
  if (!r) return;
  if (r->store) r->ops->close(r->store);
  sw_free(r->home);
  sw_free(r->url);
  sw_free(r);
}

const char *sw_registry_backend(const sw_registry *r) { return r->ops->name; }
int sw_registry_schema_version(const sw_registry *r) { return r->schema_version; }

/* ---- references ----------------------------------------------------------------------- */

static bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool name_valid_n(const char *s, size_t n) {
  if (n == 0 || n > SW_MODEL_NAME_MAX || s[0] == '.' || s[0] == '_' || s[0] == '-') return false;
  for (size_t i = 0; i < n; i++)
    if (!name_char(s[i])) return false;
  return true;
}

bool sw_model_name_valid(const char *name) { return name && name_valid_n(name, strlen(name)); }

sw_status sw_model_ref_parse(const char *text, size_t len, sw_model_ref *out) {
  memset(out, 0, sizeof *out);
  int shown = (int)(len > 200 ? 200 : len); /* messages quote at most this much */
  size_t sep = 0;
  while (sep < len && text[sep] != ':' && text[sep] != '@') sep++;
  if (sep == len) return sw_error(SW_STATUS_FORMAT, "'%.*s' is not NAME:VERSION or NAME@ALIAS", shown, text);
  if (!name_valid_n(text, sep))
    return sw_error(SW_STATUS_FORMAT,
                    "'%.*s': the model name is 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", shown,
                    text, SW_MODEL_NAME_MAX);
  const char *rest = text + sep + 1;
  size_t n = len - sep - 1;
  if (text[sep] == '@') {
    if (!name_valid_n(rest, n))
      return sw_error(SW_STATUS_FORMAT,
                      "'%.*s': the alias is 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", shown,
                      text, SW_MODEL_NAME_MAX);
    memcpy(out->name, text, sep);
    memcpy(out->alias, rest, n);
    return SW_STATUS_OK;
  }
  int64_t v = 0;
  bool ok = n > 0 && n <= 16 && rest[0] != '0';
  for (size_t i = 0; i < n && ok; i++) {
    if (rest[i] < '0' || rest[i] > '9') ok = false;
    else v = v * 10 + (rest[i] - '0');
  }
  if (!ok || v < 1 || v > (INT64_C(1) << 53))
    return sw_error(SW_STATUS_FORMAT, "'%.*s': the version is a whole number from 1", shown, text);
  memcpy(out->name, text, sep);
  out->version = v;
  return SW_STATUS_OK;
}

bool sw_model_ref_is_registry(const char *ref) {
  sw_model_ref m;
  if (!ref || sw_path_exists(ref)) return false;
  bool yes = sw_model_ref_parse(ref, strlen(ref), &m) == SW_STATUS_OK;
  sw_clear_error();
  return yes;
}

bool sw_registry_state_valid(const char *state) {
  for (size_t i = 0; state && i < sizeof STATES / sizeof STATES[0]; i++)
    if (!strcmp(state, STATES[i])) return true;
  return false;
}

/* ---- entity helpers (inside a transaction) ------------------------------------------- */

/* The model's id; create: insert it when missing; lock: hold its row until commit, which
 * serializes version numbering and alias moves of one model across writers. */
static sw_status model_id(sw_registry *r, const char *name, bool create, bool lock, const char *who, int64_t *id) {
  json_t *rows = NULL;
  char now[32];
  now_iso(now);
  sw_status st = SW_STATUS_OK;
  if (create)
    st = QP(r, NULL, "INSERT INTO models (name, created_at, created_by) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            name, now, who_or_default(who));
  char *sql = st ? NULL : sw_asprintf("SELECT id FROM models WHERE name = $1%s", lock ? r->ops->for_update : "");
  if (!st) st = sql ? QP(r, &rows, sql, name) : sw_error(SW_STATUS_NOMEM, "out of memory");
  sw_free(sql);
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "the registry has no model named '%s'", name);
  if (!st) *id = cell_i64(rows, 0, 0);
  json_decref(rows);
  return st;
}

static sw_status event(sw_registry *r, const char *who, const char *entity, const char *action, const char *model,
                       int64_t version, json_t *detail /* stolen */) {
  char now[32], v[24];
  now_iso(now);
  char *d = jdump(detail);
  json_decref(detail);
  sw_status st = QP(r, NULL,
                    "INSERT INTO events (at, who, entity, action, model, version, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    now, who_or_default(who), entity, action, model, version > 0 ? i64s(v, version) : NULL, d);
  free(d);
  return st;
}

static sw_status alias_current(sw_registry *r, int64_t mid, const char *alias, int64_t *version) {
  json_t *rows = NULL;
  char m[24];
  sw_status st = QP(r, &rows, "SELECT version FROM aliases WHERE model_id = $1 AND alias = $2", i64s(m, mid), alias);
  *version = st ? 0 : cell_i64(rows, 0, 0);
  json_decref(rows);
  return st;
}

static sw_status version_id(sw_registry *r, int64_t mid, const char *name, int64_t version, int64_t *vid) {
  json_t *rows = NULL;
  char m[24], v[24];
  sw_status st = QP(r, &rows, "SELECT id FROM versions WHERE model_id = $1 AND version = $2", i64s(m, mid), i64s(v, version));
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "model '%s' has no version %lld", name, (long long)version);
  if (!st) *vid = cell_i64(rows, 0, 0);
  json_decref(rows);
  return st;
}

/* A REF to (model id, version number, version row id). */
static sw_status resolve(sw_registry *r, const char *ref, int64_t *mid, int64_t *version, int64_t *vid) {
  sw_model_ref m;
  sw_status st = sw_model_ref_parse(ref, strlen(ref), &m);
  if (!st) st = model_id(r, m.name, false, false, NULL, mid);
  if (st) return st;
  *version = m.version;
  if (m.alias[0]) {
    st = alias_current(r, *mid, m.alias, version);
    if (!st && *version == 0) return sw_error(SW_STATUS_NOT_FOUND, "model '%s' has no alias '%s'", m.name, m.alias);
  }
  if (!st) st = version_id(r, *mid, m.name, *version, vid);
  return st;
}

static sw_status set_state(sw_registry *r, int64_t mid, const char *name, int64_t version, const char *state,
                           const char *who, const char *why) {
  char m[24], v[24];
  json_t *rows = NULL;
  sw_status st = QP(r, &rows, "SELECT state FROM versions WHERE model_id = $1 AND version = $2", i64s(m, mid), i64s(v, version));
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "model '%s' has no version %lld", name, (long long)version);
  if (!st && !strcmp(cell(rows, 0, 0), state)) { /* already so: nothing to record */
    json_decref(rows);
    return SW_STATUS_OK;
  }
  json_t *detail = st ? NULL : json_pack("{s:s, s:s, s:s?}", "from", cell(rows, 0, 0), "to", state, "why", why);
  if (!st) st = QP(r, NULL, "UPDATE versions SET state = $3 WHERE model_id = $1 AND version = $2", m, v, state);
  if (!st) st = event(r, who, "version", "state", name, version, detail);
  else json_decref(detail);
  json_decref(rows);
  return st;
}

/* Moves (or sets) an alias, with its history row and event; states are applied when not
 * NULL: new_state to the version it now points at, old_state to the one it left. */
static sw_status move_alias(sw_registry *r, int64_t mid, const char *name, const char *alias, int64_t from, int64_t to,
                            const char *who, const char *why, const char *new_state, const char *old_state) {
  char m[24], f[24], t[24], now[32];
  now_iso(now);
  i64s(m, mid);
  i64s(t, to);
  sw_status st = QP(r, NULL,
                    "INSERT INTO aliases (model_id, alias, version, updated_at) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                    m, alias, t, now);
  if (!st)
    st = QP(r, NULL,
            "INSERT INTO alias_history (model_id, alias, from_version, to_version, who, at, why) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            m, alias, from ? i64s(f, from) : NULL, t, who_or_default(who), now, why);
  if (!st) {
    json_t *d = json_pack("{s:s, s:I, s:I, s:s?}", "alias", alias, "to", (json_int_t)to, "from", (json_int_t)from, "why", why);
    if (!from) json_object_set_new(d, "from", json_null());
    st = event(r, who, "alias", "move", name, to, d);
  }
  if (!st && new_state) st = set_state(r, mid, name, to, new_state, who, why);
  if (!st && old_state && from && from != to) st = set_state(r, mid, name, from, old_state, who, why);
  return st;
}

/* The version object of sw_registry_get_version. */
static sw_status version_json(sw_registry *r, int64_t vid, json_t **out) {
  json_t *rows = NULL, *al = NULL;
  char v[24];
  *out = NULL;
  sw_status st = QP(r, &rows,
                    "SELECT m.name, v.version, v.state, v.created_at, v.created_by, v.source, v.description,"
                    " v.artifact_sha256, v.artifact_size, d.manifest_sha256, d.path, ru.path, ru.code_version, ru.host,"
                    " ru.params_sha256, ru.config_sha256, v.code_version, v.model_id, ru.id"
                    " FROM versions v JOIN models m ON m.id = v.model_id LEFT JOIN datasets d ON d.id = v.dataset_id"
                    " LEFT JOIN runs ru ON ru.id = v.run_id WHERE v.id = $1",
                    i64s(v, vid));
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "no version with id %lld", (long long)vid);
  if (st) goto out;
  st = QP(r, &al, "SELECT alias FROM aliases WHERE model_id = $1 AND version = $2 ORDER BY alias", cell(rows, 0, 17),
          cell(rows, 0, 1));
  if (st) goto out;
  json_t *aliases = json_array();
  for (size_t i = 0; i < json_array_size(al); i++) json_array_append_new(aliases, json_string(cell(al, i, 0)));
  char *path = sw__artifact_path(r->home, cell(rows, 0, 7));
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(cell(rows, 0, 0)));
  json_object_set_new(o, "version", json_integer(cell_i64(rows, 0, 1)));
  char *ref = sw_asprintf("%s:%s", cell(rows, 0, 0), cell(rows, 0, 1));
  json_object_set_new(o, "ref", jstr_or_null(ref));
  sw_free(ref);
  json_object_set_new(o, "state", json_string(cell(rows, 0, 2)));
  json_object_set_new(o, "created_at", json_string(cell(rows, 0, 3)));
  json_object_set_new(o, "created_by", json_string(cell(rows, 0, 4)));
  json_object_set_new(o, "source", jstr_or_null(cell(rows, 0, 5)));
  json_object_set_new(o, "description", jstr_or_null(cell(rows, 0, 6)));
  json_object_set_new(o, "code_version", jstr_or_null(cell(rows, 0, 12) ? cell(rows, 0, 12) : cell(rows, 0, 16)));
  json_object_set_new(o, "artifact", json_pack("{s:s, s:I, s:s?}", "sha256", cell(rows, 0, 7), "size",
                                               (json_int_t)cell_i64(rows, 0, 8), "path", path));
  sw_free(path);
  json_object_set_new(o, "aliases", aliases);
  json_object_set_new(o, "dataset", cell(rows, 0, 9) ? json_pack("{s:s, s:o}", "manifest_sha256", cell(rows, 0, 9), "path",
                                                                 jstr_or_null(cell(rows, 0, 10)))
                                                     : json_null());
  json_object_set_new(o, "run", cell(rows, 0, 18) ? json_pack("{s:o, s:o, s:o, s:o, s:o}", "path", jstr_or_null(cell(rows, 0, 11)),
                                                              "code_version", jstr_or_null(cell(rows, 0, 12)), "host",
                                                              jstr_or_null(cell(rows, 0, 13)), "params_sha256",
                                                              jstr_or_null(cell(rows, 0, 14)), "config_sha256",
                                                              jstr_or_null(cell(rows, 0, 15)))
                                                  : json_null());
  *out = o;
out:
  json_decref(rows);
  json_decref(al);
  return st;
}

/* ---- registering ---------------------------------------------------------------------- */

typedef struct {
  const sw_register_options *opt;
  const char *artifact_sha256;
  size_t artifact_size;
  const char *dataset_sha256, *dataset_path; /* NULL when unknown */
  const json_t *run_json;                    /* NULL for --onnx */
  const char *run_path;
  json_t *result;
} register_ctx;

static sw_status register_body(sw_registry *r, void *arg) {
  register_ctx *c = arg;
  const sw_register_options *o = c->opt;
  json_decref(c->result);
  c->result = NULL;
  int64_t mid = 0, did = 0, rid = 0, next = 0, vid = 0;
  json_t *rows = NULL;
  char now[32], m[24], d[24], ru[24], v[24], size[24];
  char *run_text = NULL;
  now_iso(now);
  sw_status st = model_id(r, o->name, true, true, o->who, &mid);
  if (!st && c->dataset_sha256) {
    st = QP(r, NULL,
            "INSERT INTO datasets (manifest_sha256, path, created_at) VALUES ($1, $2, $3) ON CONFLICT (manifest_sha256)"
            " DO UPDATE SET path = COALESCE(excluded.path, datasets.path)",
            c->dataset_sha256, c->dataset_path, now);
    if (!st) st = QP(r, &rows, "SELECT id FROM datasets WHERE manifest_sha256 = $1", c->dataset_sha256);
    did = st ? 0 : cell_i64(rows, 0, 0);
    json_decref(rows);
    rows = NULL;
  }
  if (!st && c->run_json) {
    run_text = jdump(c->run_json);
    const json_t *rj = c->run_json;
    st = QP(r, &rows,
            "INSERT INTO runs (path, run_json, config_sha256, code_version, host, params_sha256, dataset_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            c->run_path, run_text, json_string_value(json_object_get(rj, "config_sha256")),
            json_string_value(json_object_get(rj, "code_version")), json_string_value(json_object_get(rj, "host")),
            json_string_value(json_object_get(rj, "params_sha256")), did ? i64s(d, did) : NULL, now);
    rid = st ? 0 : cell_i64(rows, 0, 0);
    json_decref(rows);
    rows = NULL;
  }
  /* the next number, read and used under the model's lock (or SQLite's write lock) */
  if (!st) st = QP(r, &rows, "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE model_id = $1", i64s(m, mid));
  next = st ? 0 : cell_i64(rows, 0, 0);
  json_decref(rows);
  rows = NULL;
  if (!st)
    st = QP(r, &rows,
            "INSERT INTO versions (model_id, version, state, artifact_sha256, artifact_size, run_id, dataset_id, source,"
            " code_version, description, created_at, created_by) VALUES ($1, $2, 'registered', $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " RETURNING id",
            m, i64s(v, next), c->artifact_sha256, i64s(size, (int64_t)c->artifact_size), rid ? i64s(ru, rid) : NULL,
            did ? i64s(d, did) : NULL, o->source, o->code_version, o->description, now, who_or_default(o->who));
  vid = st ? 0 : cell_i64(rows, 0, 0);
  json_decref(rows);
  rows = NULL;
  if (!st) {
    json_t *detail = json_pack("{s:s, s:s?, s:s?, s:s?}", "artifact_sha256", c->artifact_sha256, "run", c->run_path,
                               "dataset_sha256", c->dataset_sha256, "source", o->source);
    st = event(r, o->who, "version", "register", o->name, next, detail);
  }
  if (!st) st = version_json(r, vid, &c->result);
  if (!st) test_pause("register-before-commit");
  free(run_text);
  return st;
}

/* run.json's dataset path, absolute when it can be made so (train records it as given). */
static char *dataset_path_of(const char *p) {
  if (!p) return NULL;
  char buf[PATH_MAX];
  if (realpath(p, buf)) return sw_strdup(buf);
  return sw_strdup(p);
}

sw_status sw_registry_register(sw_registry *r, const sw_register_options *o, json_t **version) {
  *version = NULL;
  uint8_t *bytes = NULL;
  size_t len = 0;
  json_t *run = NULL;
  char *onnx = NULL, *run_json_path = NULL, *ds_path = NULL, *run_abs = NULL;
  sw_dataset *ds = NULL;
  sw_graph *g = NULL;
  sw_node *outs = NULL;
  size_t n_outs = 0;
  register_ctx c = {.opt = o};
  sw_status st = SW_STATUS_OK;
  if (!sw_model_name_valid(o->name)) {
    st = sw_error(SW_STATUS_INVALID, "'%s' is not a model name (1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit)",
                  o->name ? o->name : "", SW_MODEL_NAME_MAX);
    goto out;
  }
  if (!o->run_dir == !o->onnx_path) {
    st = sw_error(SW_STATUS_INVALID, "give either a run dir or an ONNX file");
    goto out;
  }
  if (o->run_dir) {
    run_json_path = sw_path_join(o->run_dir, "run.json");
    onnx = sw_path_join(o->run_dir, "model.onnx");
    if (!run_json_path || !onnx) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
    if (!sw_path_is_dir(o->run_dir)) {
      st = sw_error(SW_STATUS_NOT_FOUND, "run %s: no such directory", o->run_dir);
      goto out;
    }
    st = sw_json_load_file(run_json_path, &run);
    if (st) goto out;
    const json_t *dsj = json_object_get(run, "dataset");
    if (!json_is_object(run) || !json_is_string(json_object_get(run, "params_sha256")) ||
        !json_is_string(json_object_get(dsj, "manifest_sha256"))) {
      st = sw_error(SW_STATUS_FORMAT, "%s: not a finished run (no params_sha256 or dataset manifest_sha256)", run_json_path);
      goto out;
    }
    c.run_json = run;
    c.dataset_sha256 = json_string_value(json_object_get(dsj, "manifest_sha256"));
    ds_path = dataset_path_of(json_string_value(json_object_get(dsj, "path")));
    run_abs = dataset_path_of(o->run_dir);
    c.run_path = run_abs;
  } else {
    onnx = sw_strdup(o->onnx_path);
  }
  if (!onnx || (c.run_json && !run_abs) ||
      (c.run_json && json_string_value(json_object_get(json_object_get(run, "dataset"), "path")) && !ds_path)) {
    st = sw_error(SW_STATUS_NOMEM, "out of memory");
    goto out;
  }
  if (o->dataset_dir) {
    st = sw_dataset_open(o->dataset_dir, &ds);
    if (st) goto out;
    if (c.dataset_sha256 && strcmp(c.dataset_sha256, sw_dataset_sha256(ds)) != 0) {
      st = sw_error(SW_STATUS_INVALID, "--dataset %s has manifest sha256 %s, but the run was trained on %s", o->dataset_dir,
                    sw_dataset_sha256(ds), c.dataset_sha256);
      goto out;
    }
    c.dataset_sha256 = sw_dataset_sha256(ds);
    sw_free(ds_path);
    ds_path = dataset_path_of(o->dataset_dir);
    if (!ds_path) {
      st = sw_error(SW_STATUS_NOMEM, "out of memory");
      goto out;
    }
  }
  c.dataset_path = ds_path;
  st = sw_read_file(onnx, &bytes, &len);
  if (st) {
    if (st == SW_STATUS_NOT_FOUND && o->run_dir) st = sw_error(SW_STATUS_NOT_FOUND, "run %s has no model.onnx", o->run_dir);
    goto out;
  }
  /* load it back: a file the engine cannot run is not registered */
  st = sw_onnx_import_mem(bytes, len, onnx, &g, &outs, &n_outs, NULL);
  if (st) {
    sw_error_prefix(st, "not registered: ");
    goto out;
  }
  char hex[SW_SHA256_HEX_LEN];
  st = sw__artifact_put(r->home, bytes, len, hex); /* first the artifact, atomically ... */
  if (st) goto out;
  c.artifact_sha256 = hex;
  c.artifact_size = len;
  st = txn(r, true, register_body, &c); /* ... then one transaction for the rest */
  if (st) goto out;
  *version = c.result;
  c.result = NULL;
out:
  json_decref(c.result);
  sw_graph_free(g);
  sw_free(outs);
  sw_dataset_close(ds);
  sw_free(bytes);
  json_decref(run);
  sw_free(onnx);
  sw_free(run_json_path);
  sw_free(ds_path);
  sw_free(run_abs);
  return st;
}

/* ---- reading -------------------------------------------------------------------------- */

typedef struct {
  const char *ref;
  const char *name;
  const char *extra;
  json_t *result;
} read_ctx;

static sw_status get_body(sw_registry *r, void *arg) {
  read_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  int64_t mid, v, vid;
  sw_status st = resolve(r, c->ref, &mid, &v, &vid);
  if (!st) st = version_json(r, vid, &c->result);
  return st;
}

sw_status sw_registry_get_version(sw_registry *r, const char *ref, json_t **out) {
  read_ctx c = {.ref = ref};
  sw_status st = txn(r, false, get_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status show_body(sw_registry *r, void *arg) {
  read_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  int64_t mid, v, vid;
  json_t *ev = NULL, *hist = NULL, *log = NULL;
  char vb[24], mb[24], verb[24];
  sw_status st = resolve(r, c->ref, &mid, &v, &vid);
  if (!st) st = version_json(r, vid, &c->result);
  if (!st)
    st = QP(r, &ev,
            "SELECT split, slice, examples, metrics, context, dataset_sha256, at, who FROM evaluations WHERE version_id = $1"
            " ORDER BY at DESC, id", /* newest first; within one, the split before its slices */
            i64s(vb, vid));
  if (!st)
    st = QP(r, &hist,
            "SELECT alias, from_version, to_version, who, at, why FROM alias_history WHERE model_id = $1"
            " AND (from_version = $2 OR to_version = $2) ORDER BY id",
            i64s(mb, mid), i64s(verb, v));
  const char *name = st ? NULL : json_string_value(json_object_get(c->result, "name"));
  if (!st)
    st = QP(r, &log, "SELECT id, at, who, entity, action, detail FROM events WHERE model = $1 AND version = $2 ORDER BY id", name,
            verb);
  if (st) goto out;
  json_t *a = json_array();
  for (size_t i = 0; i < json_array_size(ev); i++)
    json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:o, s:o, s:o, s:s, s:o}", "split", cell(ev, i, 0), "slice",
                                       cell(ev, i, 1)[0] ? json_string(cell(ev, i, 1)) : json_null(), "examples",
                                       (json_int_t)cell_i64(ev, i, 2), "metrics", jparse(cell(ev, i, 3)), "context",
                                       jstr_or_null(cell(ev, i, 4)), "dataset", jstr_or_null(cell(ev, i, 5)), "at",
                                       cell(ev, i, 6), "who", jstr_or_null(cell(ev, i, 7))));
  json_object_set_new(c->result, "evaluations", a);
  a = json_array();
  for (size_t i = 0; i < json_array_size(hist); i++)
    json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:s, s:s, s:o}", "alias", cell(hist, i, 0), "from",
                                       cell(hist, i, 1) ? json_integer(cell_i64(hist, i, 1)) : json_null(), "to",
                                       (json_int_t)cell_i64(hist, i, 2), "who", cell(hist, i, 3), "at", cell(hist, i, 4), "why",
                                       jstr_or_null(cell(hist, i, 5))));
  json_object_set_new(c->result, "alias_history", a);
  a = json_array();
  for (size_t i = 0; i < json_array_size(log); i++)
    json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o}", "id", (json_int_t)cell_i64(log, i, 0), "at",
                                       cell(log, i, 1), "who", cell(log, i, 2), "entity", cell(log, i, 3), "action",
                                       cell(log, i, 4), "detail", jparse(cell(log, i, 5))));
  json_object_set_new(c->result, "events", a);
out:
  json_decref(ev);
  json_decref(hist);
  json_decref(log);
  return st;
}

sw_status sw_registry_show(sw_registry *r, const char *ref, json_t **out) {
  read_ctx c = {.ref = ref};
  sw_status st = txn(r, false, show_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status list_body(sw_registry *r, void *arg) {
  read_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *rows = NULL, *al = NULL;
  sw_status st = c->name ? QP(r, &rows,
                              "SELECT m.name, v.version, v.state, v.artifact_sha256, v.created_at, v.model_id FROM versions v"
                              " JOIN models m ON m.id = v.model_id WHERE m.name = $1 ORDER BY m.name, v.version",
                              c->name)
                         : Q0(r, &rows,
                              "SELECT m.name, v.version, v.state, v.artifact_sha256, v.created_at, v.model_id FROM versions v"
                              " JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version");
  if (!st) st = Q0(r, &al, "SELECT model_id, version, alias FROM aliases ORDER BY alias");
  if (st) goto out;
  c->result = json_array();
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *aliases = json_array();
    for (size_t k = 0; k < json_array_size(al); k++)
      if (!strcmp(cell(al, k, 0), cell(rows, i, 5)) && !strcmp(cell(al, k, 1), cell(rows, i, 1)))
        json_array_append_new(aliases, json_string(cell(al, k, 2)));
    json_array_append_new(c->result, json_pack("{s:s, s:I, s:s, s:o, s:s, s:s}", "name", cell(rows, i, 0), "version",
                                               (json_int_t)cell_i64(rows, i, 1), "state", cell(rows, i, 2), "aliases", aliases,
                                               "artifact_sha256", cell(rows, i, 3), "created_at", cell(rows, i, 4)));
  }
out:
  json_decref(rows);
  json_decref(al);
  return st;
}

sw_status sw_registry_list(sw_registry *r, const char *name, json_t **out) {
  read_ctx c = {.name = name};
  sw_status st = txn(r, false, list_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status lineage_executions(sw_registry *r, json_t *lineage);

static sw_status lineage_body(sw_registry *r, void *arg) {
  read_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  int64_t mid, v, vid;
  json_t *rows = NULL, *ver = NULL;
  char vb[24];
  sw_status st = resolve(r, c->ref, &mid, &v, &vid);
  if (!st) st = version_json(r, vid, &ver);
  if (!st)
    st = QP(r, &rows, "SELECT ru.run_json, ru.path FROM versions v JOIN runs ru ON ru.id = v.run_id WHERE v.id = $1",
            i64s(vb, vid));
  if (st) goto out;
  json_t *o = json_pack("{s:O, s:O, s:O, s:O, s:O}", "ref", json_object_get(ver, "ref"), "artifact_sha256",
                        json_object_get(json_object_get(ver, "artifact"), "sha256"), "source", json_object_get(ver, "source"),
                        "code_version", json_object_get(ver, "code_version"), "dataset", json_object_get(ver, "dataset"));
  if (json_array_size(rows)) {
    json_t *rj = jparse(cell(rows, 0, 0));
    const char *path = cell(rows, 0, 1);
    json_int_t steps = json_integer_value(json_object_get(rj, "steps_done"));
    char *ckpt = sw_asprintf("%s/checkpoints/step-%08lld", path ? path : ".", (long long)steps);
    json_object_set_new(o, "run", json_pack("{s:o, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:s?, s:I}", "path", jstr_or_null(path),
                                            "config", json_object_get(rj, "model") ? json_object_get(rj, "model") : json_null(),
                                            "config_sha256", json_object_get(json_object_get(ver, "run"), "config_sha256"),
                                            "hyperparameters",
                                            json_object_get(rj, "hyperparameters") ? json_object_get(rj, "hyperparameters") : json_null(),
                                            "code_version", json_object_get(json_object_get(ver, "run"), "code_version"), "host",
                                            json_object_get(json_object_get(ver, "run"), "host"), "params_sha256",
                                            json_object_get(json_object_get(ver, "run"), "params_sha256"), "dataset_manifest_sha256",
                                            json_object_get(json_object_get(rj, "dataset"), "manifest_sha256")
                                                ? json_object_get(json_object_get(rj, "dataset"), "manifest_sha256")
                                                : json_null(),
                                            "checkpoint", steps > 0 ? ckpt : NULL, "steps", steps));
    sw_free(ckpt);
    json_decref(rj);
  } else {
    json_object_set_new(o, "run", json_null());
  }
  c->result = o;
  st = lineage_executions(r, o);
out:
  json_decref(rows);
  json_decref(ver);
  return st;
}

sw_status sw_registry_lineage(sw_registry *r, const char *ref, json_t **out) {
  read_ctx c = {.ref = ref};
  sw_status st = txn(r, false, lineage_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status lineage_ds_body(sw_registry *r, void *arg) {
  read_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *ds = NULL, *rows = NULL;
  sw_status st = QP(r, &ds, "SELECT id, path FROM datasets WHERE manifest_sha256 = $1", c->extra);
  if (!st && json_array_size(ds) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "the registry knows no dataset with manifest sha256 %s", c->extra);
  if (!st)
    st = QP(r, &rows,
            "SELECT m.name, v.version, v.state, ru.path FROM versions v JOIN models m ON m.id = v.model_id"
            " LEFT JOIN runs ru ON ru.id = v.run_id WHERE v.dataset_id = $1 ORDER BY m.name, v.version",
            cell(ds, 0, 0));
  if (st) goto out;
  json_t *vs = json_array();
  for (size_t i = 0; i < json_array_size(rows); i++) {
    char *ref = sw_asprintf("%s:%s", cell(rows, i, 0), cell(rows, i, 1));
    json_array_append_new(vs, json_pack("{s:s, s:I, s:s?, s:s, s:o}", "name", cell(rows, i, 0), "version",
                                        (json_int_t)cell_i64(rows, i, 1), "ref", ref, "state", cell(rows, i, 2), "run_path",
                                        jstr_or_null(cell(rows, i, 3))));
    sw_free(ref);
  }
  c->result = json_pack("{s:{s:s, s:o}, s:o}", "dataset", "manifest_sha256", c->extra, "path", jstr_or_null(cell(ds, 0, 1)),
                        "versions", vs);
out:
  json_decref(ds);
  json_decref(rows);
  return st;
}

sw_status sw_registry_lineage_dataset(sw_registry *r, const char *sha256, json_t **out) {
  read_ctx c = {.extra = sha256};
  sw_status st = txn(r, false, lineage_ds_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

sw_status sw_registry_alias_get(sw_registry *r, const char *name, const char *alias, int64_t *version) {
  *version = 0;
  int64_t mid;
  sw_status st = r->ops->begin(r->store, false);
  if (!st) st = model_id(r, name, false, false, NULL, &mid);
  if (!st) st = alias_current(r, mid, alias, version);
  if (!st) st = r->ops->commit(r->store);
  if (st) r->ops->rollback(r->store);
  return st;
}

sw_status sw_registry_load_artifact(sw_registry *r, const char *ref, uint8_t **data, size_t *len, json_t **version) {
  *data = NULL;
  *len = 0;
  if (version) *version = NULL;
  json_t *v = NULL;
  sw_status st = sw_registry_get_version(r, ref, &v);
  if (!st) st = sw__artifact_get(r->home, json_string_value(json_object_get(json_object_get(v, "artifact"), "sha256")), data, len);
  if (st) sw_error_prefix(st, "%s: ", ref);
  if (!st && version) *version = v;
  else json_decref(v);
  return st;
}

sw_status sw_registry_verify(sw_registry *r, json_t **report) {
  *report = NULL;
  json_t *rows = NULL;
  sw_status st = Q0(r, &rows,
                    "SELECT v.artifact_sha256, m.name, v.version FROM versions v JOIN models m ON m.id = v.model_id"
                    " ORDER BY v.artifact_sha256, m.name, v.version");
  if (st) return st;
  json_t *problems = json_array();
  int64_t checked = 0, ok = 0;
  for (size_t i = 0; i < json_array_size(rows);) {
    const char *sha = cell(rows, i, 0);
    json_t *refs = json_array();
    size_t j = i;
    for (; j < json_array_size(rows) && !strcmp(cell(rows, j, 0), sha); j++) {
      char *ref = sw_asprintf("%s:%s", cell(rows, j, 1), cell(rows, j, 2));
      json_array_append_new(refs, jstr_or_null(ref));
      sw_free(ref);
    }
    char actual[SW_SHA256_HEX_LEN];
    sw_status cs = sw__artifact_check(r->home, sha, actual);
    checked++;
    char *path = sw__artifact_path(r->home, sha);
    if (cs == SW_STATUS_OK) {
      ok++;
      json_decref(refs);
    } else {
      json_array_append_new(problems, json_pack("{s:s, s:s?, s:s, s:o, s:o}", "sha256", sha, "path", path, "problem",
                                                cs == SW_STATUS_NOT_FOUND ? "missing" : cs == SW_STATUS_CORRUPT ? "corrupt" : "unreadable",
                                                "actual_sha256", actual[0] ? json_string(actual) : json_null(), "versions", refs));
    }
    sw_clear_error();
    sw_free(path);
    i = j;
  }
  json_decref(rows);
  *report = json_pack("{s:I, s:I, s:o}", "checked", (json_int_t)checked, "ok", (json_int_t)ok, "problems", problems);
  return SW_STATUS_OK;
}

/* ---- writing -------------------------------------------------------------------------- */

typedef struct {
  const char *name, *alias, *state, *who, *why;
  int64_t version;
  const json_t *evaluation;
  const char *context;
  const sw_registry_promotion *promotion;
} write_ctx;

static sw_status alias_body(sw_registry *r, void *arg) {
  write_ctx *c = arg;
  int64_t mid, vid, cur;
  sw_status st = model_id(r, c->name, false, true, c->who, &mid);
  if (!st) st = version_id(r, mid, c->name, c->version, &vid);
  if (!st) st = alias_current(r, mid, c->alias, &cur);
  if (st || cur == c->version) return st;
  bool prod = !strcmp(c->alias, "production");
  return move_alias(r, mid, c->name, c->alias, cur, c->version, c->who, c->why, prod ? "production" : NULL,
                    prod ? "archived" : NULL);
}

sw_status sw_registry_alias_set(sw_registry *r, const char *name, const char *alias, int64_t version, const char *who,
                                const char *why) {
  if (!sw_model_name_valid(alias))
    return sw_error(SW_STATUS_INVALID, "'%s' is not an alias name (letters, digits, '.', '_' or '-')", alias ? alias : "");
  write_ctx c = {.name = name, .alias = alias, .version = version, .who = who, .why = why};
  return txn(r, true, alias_body, &c);
}

static sw_status state_body(sw_registry *r, void *arg) {
  write_ctx *c = arg;
  int64_t mid;
  sw_status st = model_id(r, c->name, false, true, c->who, &mid);
  if (!st) st = set_state(r, mid, c->name, c->version, c->state, c->who, c->why);
  return st;
}

sw_status sw_registry_state_set(sw_registry *r, const char *name, int64_t version, const char *state, const char *who,
                                const char *why) {
  if (!sw_registry_state_valid(state))
    return sw_error(SW_STATUS_INVALID, "'%s' is not a state (registered, blessed, rejected, production, archived, rolled_back)",
                    state ? state : "");
  write_ctx c = {.name = name, .version = version, .state = state, .who = who, .why = why};
  return txn(r, true, state_body, &c);
}

/* One evaluation row for the split and one per slice. */
static sw_status add_evaluation(sw_registry *r, int64_t vid, const json_t *ev, const char *context, const char *who) {
  char vb[24], ex[24], now[32];
  now_iso(now);
  if (!json_is_object(ev) || !json_is_object(json_object_get(ev, "metrics")))
    return sw_error(SW_STATUS_INVALID, "an evaluation needs a \"metrics\" object");
  const char *split = json_string_value(json_object_get(ev, "split"));
  const char *ds = json_string_value(json_object_get(ev, "dataset"));
  char *m = jdump(json_object_get(ev, "metrics"));
  sw_status st = QP(r, NULL,
                    "INSERT INTO evaluations (version_id, dataset_sha256, split, slice, examples, metrics, context, who, at)"
                    " VALUES ($1, $2, $3, '', $4, $5, $6, $7, $8)",
                    i64s(vb, vid), ds, split ? split : "test", i64s(ex, json_integer_value(json_object_get(ev, "examples"))), m,
                    context, who_or_default(who), now);
  free(m);
  const char *key;
  json_t *sl;
  json_object_foreach(json_object_get(ev, "slices"), key, sl) {
    if (st) break;
    m = jdump(json_object_get(sl, "metrics"));
    st = QP(r, NULL,
            "INSERT INTO evaluations (version_id, dataset_sha256, split, slice, examples, metrics, context, who, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vb, ds, split ? split : "test", key, i64s(ex, json_integer_value(json_object_get(sl, "examples"))), m ? m : "{}",
            context, who_or_default(who), now);
    free(m);
  }
  return st;
}

static sw_status evaluation_body(sw_registry *r, void *arg) {
  write_ctx *c = arg;
  int64_t mid, vid;
  sw_status st = model_id(r, c->name, false, false, c->who, &mid);
  if (!st) st = version_id(r, mid, c->name, c->version, &vid);
  if (!st) st = add_evaluation(r, vid, c->evaluation, c->context, c->who);
  json_t *d = json_pack("{s:s?, s:s?, s:O?}", "context", c->context, "split", json_string_value(json_object_get(c->evaluation, "split")),
                        "metrics", json_object_get(c->evaluation, "metrics"));
  if (!st) st = event(r, c->who, "evaluation", "add", c->name, c->version, d);
  else json_decref(d);
  return st;
}

sw_status sw_registry_evaluation_add(sw_registry *r, const char *name, int64_t version, const json_t *evaluation,
                                     const char *context, const char *who) {
  write_ctx c = {.name = name, .version = version, .evaluation = evaluation, .context = context, .who = who};
  return txn(r, true, evaluation_body, &c);
}

static sw_status promotion_body(sw_registry *r, void *arg) {
  const sw_registry_promotion *p = ((write_ctx *)arg)->promotion;
  int64_t mid, vid, bvid = 0, cur;
  sw_status st = model_id(r, p->name, false, true, p->who, &mid);
  if (!st) st = version_id(r, mid, p->name, p->version, &vid);
  if (!st && p->baseline_eval && p->expect_version) st = version_id(r, mid, p->name, p->expect_version, &bvid);
  if (!st) st = alias_current(r, mid, p->alias, &cur);
  if (st) return st;
  if (cur != p->expect_version)
    return sw_error(SW_STATUS_EXISTS, "%s@%s moved to version %lld while %s:%lld was judged against %lld", p->name, p->alias,
                    (long long)cur, p->name, (long long)p->version, (long long)p->expect_version);
  st = add_evaluation(r, vid, p->candidate_eval, "promote:candidate", p->who);
  if (!st && bvid) st = add_evaluation(r, bvid, p->baseline_eval, "promote:baseline", p->who);
  if (!st) {
    json_t *d = json_pack("{s:s, s:b, s:o, s:O?, s:s?}", "alias", p->alias, "passed", p->passed, "baseline",
                          p->expect_version ? json_integer(p->expect_version) : json_null(), "decision", p->decision, "why", p->why);
    st = event(r, p->who, "version", p->passed ? "promote" : "refuse", p->name, p->version, d);
  }
  if (st) return st;
  if (p->passed && cur != p->version)
    return move_alias(r, mid, p->name, p->alias, cur, p->version, p->who, p->why, p->new_state, p->old_state);
  if (p->new_state) return set_state(r, mid, p->name, p->version, p->new_state, p->who, p->why);
  return SW_STATUS_OK;
}

sw_status sw_registry_promotion_record(sw_registry *r, const sw_registry_promotion *p) {
  if (!sw_model_name_valid(p->alias)) return sw_error(SW_STATUS_INVALID, "'%s' is not an alias name", p->alias ? p->alias : "");
  if ((p->new_state && !sw_registry_state_valid(p->new_state)) || (p->old_state && !sw_registry_state_valid(p->old_state)))
    return sw_error(SW_STATUS_INVALID, "not a version state");
  write_ctx c = {.promotion = p};
  return txn(r, true, promotion_body, &c);
}

/* ---- rollouts ------------------------------------------------------------------------- */

typedef struct {
  const json_t *spec;
  const char *who;
  int64_t id;
  json_t *result;
  const char *model;
} rollout_ctx;

static const char *num_text(const json_t *v, char buf[40]) {
  if (json_is_integer(v)) snprintf(buf, 40, "%lld", (long long)json_integer_value(v));
  else if (json_is_real(v)) snprintf(buf, 40, "%.17g", json_real_value(v));
  else return NULL;
  return buf;
}

static sw_status rollout_create_body(sw_registry *r, void *arg) {
  rollout_ctx *c = arg;
  const json_t *s = c->spec;
  const char *model = json_string_value(json_object_get(s, "model"));
  int64_t mid;
  json_t *rows = NULL;
  char inc[40], ch[40], w[40], step[40], now[32], m[24];
  now_iso(now);
  sw_status st = model_id(r, model, false, true, c->who, &mid);
  char *policy = json_object_get(s, "policy") ? jdump(json_object_get(s, "policy")) : NULL;
  char *decisions = json_object_get(s, "decisions") ? jdump(json_object_get(s, "decisions")) : NULL;
  const char *state = json_string_value(json_object_get(s, "state"));
  if (!st)
    st = QP(r, &rows,
            "INSERT INTO rollouts (model_id, incumbent, challenger, mode, state, weight, step, policy, decisions, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
            i64s(m, mid), num_text(json_object_get(s, "incumbent"), inc), num_text(json_object_get(s, "challenger"), ch),
            json_string_value(json_object_get(s, "mode")), state ? state : "pending",
            json_object_get(s, "weight") ? num_text(json_object_get(s, "weight"), w) : "0",
            json_object_get(s, "step") ? num_text(json_object_get(s, "step"), step) : "0", policy, decisions ? decisions : "[]",
            now);
  c->id = st ? 0 : cell_i64(rows, 0, 0);
  if (!st)
    st = event(r, c->who, "rollout", "create", model, json_integer_value(json_object_get(s, "challenger")),
               json_pack("{s:I, s:O}", "rollout", (json_int_t)c->id, "spec", s));
  free(policy);
  free(decisions);
  json_decref(rows);
  return st;
}

sw_status sw_registry_rollout_create(sw_registry *r, const json_t *spec, const char *who, int64_t *id) {
  *id = 0;
  if (!json_is_object(spec) || !json_is_string(json_object_get(spec, "model")) ||
      !json_is_integer(json_object_get(spec, "challenger")) || !json_is_string(json_object_get(spec, "mode")))
    return sw_error(SW_STATUS_INVALID, "a rollout needs \"model\" (a name), \"challenger\" (a version) and \"mode\"");
  const json_t *inc = json_object_get(spec, "incumbent");
  if (inc && !json_is_integer(inc) && !json_is_null(inc)) return sw_error(SW_STATUS_INVALID, "rollout \"incumbent\" is a version number");
  if (json_object_get(spec, "weight") && !json_is_number(json_object_get(spec, "weight")))
    return sw_error(SW_STATUS_INVALID, "rollout \"weight\" is a number");
  if (json_object_get(spec, "step") && !json_is_integer(json_object_get(spec, "step")))
    return sw_error(SW_STATUS_INVALID, "rollout \"step\" is an integer");
  if (json_object_get(spec, "state") && !json_is_string(json_object_get(spec, "state")))
    return sw_error(SW_STATUS_INVALID, "rollout \"state\" is a string");
  rollout_ctx c = {.spec = spec, .who = who};
  sw_status st = txn(r, true, rollout_create_body, &c);
  if (!st) *id = c.id;
  return st;
}

static json_t *rollout_row(const json_t *rows, size_t i) {
  return json_pack("{s:I, s:s, s:o, s:I, s:s, s:s, s:f, s:I, s:o, s:o, s:s, s:s}", "id", (json_int_t)cell_i64(rows, i, 0), "model",
                   cell(rows, i, 1), "incumbent", cell(rows, i, 2) ? json_integer(cell_i64(rows, i, 2)) : json_null(),
                   "challenger", (json_int_t)cell_i64(rows, i, 3), "mode", cell(rows, i, 4), "state", cell(rows, i, 5), "weight",
                   strtod(cell(rows, i, 6), NULL), "step", (json_int_t)cell_i64(rows, i, 7), "policy", jparse(cell(rows, i, 8)),
                   "decisions", jparse(cell(rows, i, 9)), "created_at", cell(rows, i, 10), "updated_at", cell(rows, i, 11));
}

#define ROLLOUT_COLUMNS                                                                                                 \
  "SELECT ro.id, m.name, ro.incumbent, ro.challenger, ro.mode, ro.state, ro.weight, ro.step, ro.policy, ro.decisions," \
  " ro.created_at, ro.updated_at FROM rollouts ro JOIN models m ON m.id = ro.model_id"

static sw_status rollout_get_body(sw_registry *r, void *arg) {
  rollout_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *rows = NULL;
  char id[24];
  sw_status st = QP(r, &rows, ROLLOUT_COLUMNS " WHERE ro.id = $1", i64s(id, c->id));
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "no rollout %lld", (long long)c->id);
  if (!st) c->result = rollout_row(rows, 0);
  json_decref(rows);
  return st;
}

sw_status sw_registry_rollout_get(sw_registry *r, int64_t id, json_t **out) {
  rollout_ctx c = {.id = id};
  sw_status st = txn(r, false, rollout_get_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status rollout_update_body(sw_registry *r, void *arg) {
  rollout_ctx *c = arg;
  json_t *rows = NULL;
  char id[24], now[32], buf[40];
  now_iso(now);
  i64s(id, c->id);
  sw_status st = QP(r, &rows, "SELECT m.name, ro.challenger FROM rollouts ro JOIN models m ON m.id = ro.model_id WHERE ro.id = $1", id);
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "no rollout %lld", (long long)c->id);
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)c->spec, key, v) {
    if (st) break;
    char *text = NULL;
    const char *val;
    if (!strcmp(key, "state")) val = json_string_value(v);
    else if (!strcmp(key, "weight") || !strcmp(key, "step")) val = num_text(v, buf);
    else val = text = jdump(v);
    char *sql = sw_asprintf("UPDATE rollouts SET %s = $2, updated_at = $3 WHERE id = $1", key);
    st = sql ? QP(r, NULL, sql, id, val, now) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(sql);
    free(text);
  }
  if (!st)
    st = event(r, c->who, "rollout", "update", cell(rows, 0, 0), cell_i64(rows, 0, 1),
               json_pack("{s:I, s:O}", "rollout", (json_int_t)c->id, "changes", c->spec));
  json_decref(rows);
  return st;
}

sw_status sw_registry_rollout_update(sw_registry *r, int64_t id, const json_t *fields, const char *who) {
  if (!json_is_object(fields) || json_object_size(fields) == 0) return sw_error(SW_STATUS_INVALID, "a rollout update needs fields");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)fields, key, v) {
    bool ok = (!strcmp(key, "state") && json_is_string(v)) || (!strcmp(key, "weight") && json_is_number(v)) ||
              (!strcmp(key, "step") && json_is_integer(v)) || !strcmp(key, "policy") ||
              (!strcmp(key, "decisions") && json_is_array(v));
    if (!ok)
      return sw_error(SW_STATUS_INVALID, "rollout field '%s' cannot be set that way (state: string, weight: number, step: integer,"
                                         " policy: object, decisions: array)", key);
  }
  rollout_ctx c = {.spec = fields, .who = who, .id = id};
  return txn(r, true, rollout_update_body, &c);
}

typedef struct {
  int64_t id;
  const json_t *decision, *fields;
  size_t max_snapshots;
  const char *who;
} rollout_append_ctx;

static bool is_snapshot(const json_t *d) {
  const char *a = json_string_value(json_object_get(d, "action"));
  return a && !strcmp(a, "snapshot");
}

/* Drops every second snapshot of the older half when there are more than max. */
static void thin_snapshots(json_t *decisions, size_t max) {
  size_t n_snap = 0;
  for (size_t i = 0; i < json_array_size(decisions); i++) n_snap += is_snapshot(json_array_get(decisions, i));
  if (n_snap <= max) return;
  size_t seen = 0;
  for (size_t i = 0; i < json_array_size(decisions) && seen < n_snap / 2;) {
    if (!is_snapshot(json_array_get(decisions, i))) {
      i++;
      continue;
    }
    if (seen++ % 2 == 1) json_array_remove(decisions, i);
    else i++;
  }
}

static sw_status rollout_append_body(sw_registry *r, void *arg) {
  rollout_append_ctx *c = arg;
  json_t *rows = NULL, *decisions = NULL;
  char id[24], now[32], buf[40];
  now_iso(now);
  i64s(id, c->id);
  sw_status st = QP(r, &rows,
                    "SELECT m.name, ro.challenger, ro.decisions FROM rollouts ro JOIN models m ON m.id = ro.model_id"
                    " WHERE ro.id = $1",
                    id);
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "no rollout %lld", (long long)c->id);
  if (!st) {
    decisions = jparse(cell(rows, 0, 2));
    if (!json_is_array(decisions)) {
      json_decref(decisions);
      decisions = json_array();
    }
    if (!decisions || json_array_append(decisions, (json_t *)c->decision)) st = sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  if (!st && c->max_snapshots) thin_snapshots(decisions, c->max_snapshots);
  if (!st) {
    char *text = jdump(decisions);
    st = text ? QP(r, NULL, "UPDATE rollouts SET decisions = $2, updated_at = $3 WHERE id = $1", id, text, now)
              : sw_error(SW_STATUS_NOMEM, "out of memory");
    free(text);
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)c->fields, key, v) {
    if (st) break;
    const char *val = !strcmp(key, "state") ? json_string_value(v) : num_text(v, buf);
    char *sql = sw_asprintf("UPDATE rollouts SET %s = $2 WHERE id = $1", key);
    st = sql ? QP(r, NULL, sql, id, val) : sw_error(SW_STATUS_NOMEM, "out of memory");
    sw_free(sql);
  }
  if (!st) {
    const json_t *d = c->decision;
    st = event(r, c->who, "rollout", json_string_value(json_object_get(d, "action")), cell(rows, 0, 0), cell_i64(rows, 0, 1),
               json_pack("{s:I, s:O?, s:O?, s:O?}", "rollout", (json_int_t)c->id, "step", json_object_get(d, "step"), "weight",
                         json_object_get(d, "weight"), "reason", json_object_get(d, "reason")));
  }
  json_decref(decisions);
  json_decref(rows);
  return st;
}

sw_status sw_registry_rollout_append(sw_registry *r, int64_t id, const json_t *decision, const json_t *fields,
                                     size_t max_snapshots, const char *who) {
  if (!json_is_object(decision) || !json_is_string(json_object_get(decision, "action")))
    return sw_error(SW_STATUS_INVALID, "a rollout decision is an object with an \"action\"");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)fields, key, v) {
    bool ok = (!strcmp(key, "state") && json_is_string(v)) || (!strcmp(key, "weight") && json_is_number(v)) ||
              (!strcmp(key, "step") && json_is_integer(v));
    if (!ok) return sw_error(SW_STATUS_INVALID, "rollout field '%s' cannot be set with a decision (state, weight, step)", key);
  }
  rollout_append_ctx c = {.id = id, .decision = decision, .fields = fields, .max_snapshots = max_snapshots, .who = who};
  return txn(r, true, rollout_append_body, &c);
}

static sw_status rollout_list_body(sw_registry *r, void *arg) {
  rollout_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *rows = NULL;
  sw_status st = c->model ? QP(r, &rows, ROLLOUT_COLUMNS " WHERE m.name = $1 ORDER BY ro.id DESC", c->model)
                          : Q0(r, &rows, ROLLOUT_COLUMNS " ORDER BY ro.id DESC");
  if (!st) {
    c->result = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) json_array_append_new(c->result, rollout_row(rows, i));
  }
  json_decref(rows);
  return st;
}

sw_status sw_registry_rollout_list(sw_registry *r, const char *model, json_t **out) {
  rollout_ctx c = {.model = model};
  sw_status st = txn(r, false, rollout_list_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

/* ---- the event log -------------------------------------------------------------------- */

/* An event that is not a side effect of another write (an alert firing or resolving). */
typedef struct {
  const char *who, *entity, *action, *model;
  int64_t version;
  const json_t *detail;
} event_ctx;

static sw_status event_body(sw_registry *r, void *arg) {
  event_ctx *c = arg;
  json_t *d = c->detail ? json_deep_copy(c->detail) : json_object();
  if (!d) return sw_error(SW_STATUS_NOMEM, "out of memory");
  return event(r, c->who, c->entity, c->action, c->model, c->version, d);
}

sw_status sw_registry_event_add(sw_registry *r, const char *who, const char *entity, const char *action, const char *model,
                                int64_t version, const json_t *detail) {
  if (!entity || !*entity || !action || !*action)
    return sw_error(SW_STATUS_INVALID, "an event needs an entity and an action");
  event_ctx c = {.who = who, .entity = entity, .action = action, .model = model, .version = version, .detail = detail};
  return txn(r, true, event_body, &c);
}

sw_status sw_registry_change_counter(sw_registry *r, int64_t *latest) {
  json_t *rows = NULL;
  sw_status st = Q0(r, &rows, "SELECT COALESCE(MAX(id), 0) FROM events");
  *latest = st ? 0 : cell_i64(rows, 0, 0);
  json_decref(rows);
  return st;
}

sw_status sw_registry_events(sw_registry *r, int64_t after, int64_t limit, json_t **out) {
  *out = NULL;
  json_t *rows = NULL;
  char a[24], l[24];
  sw_status st = QP(r, &rows,
                    "SELECT id, at, who, entity, action, model, version, detail FROM events WHERE id > $1 ORDER BY id LIMIT CAST($2 AS BIGINT)",
                    i64s(a, after), i64s(l, limit > 0 ? limit : INT64_MAX));
  if (st) return st;
  json_t *all = json_array();
  for (size_t i = 0; i < json_array_size(rows); i++)
    json_array_append_new(all, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", (json_int_t)cell_i64(rows, i, 0), "at",
                                         cell(rows, i, 1), "who", cell(rows, i, 2), "entity", cell(rows, i, 3), "action",
                                         cell(rows, i, 4), "model", jstr_or_null(cell(rows, i, 5)), "version",
                                         cell(rows, i, 6) ? json_integer(cell_i64(rows, i, 6)) : json_null(), "detail",
                                         jparse(cell(rows, i, 7))));
  json_decref(rows);
  *out = all;
  return SW_STATUS_OK;
}

/* ---- pipeline executions ------------------------------------------------------------------
 * `slipway pipeline run` records every stage it runs, or reuses from its cache, as an
 * execution (ML Metadata's term): the stage, its cache key, what it read and what it made
 * (JSON documents), when, by whom and how it ended. The pipeline's cache is a lookup here:
 * the newest complete execution of the same stage with the same key. */

typedef struct {
  const sw_registry_execution *e;
  int64_t id;
  const char *state, *error, *who;
  const json_t *outputs;
  const char *pipeline, *stage, *cache_key;
  json_t *result;
} exec_ctx;

static bool exec_state_valid(const char *s) {
  return s && (!strcmp(s, "running") || !strcmp(s, "complete") || !strcmp(s, "failed") || !strcmp(s, "cached"));
}

#define EXEC_COLUMNS                                                                                          \
  "SELECT id, pipeline, stage, cache_key, state, inputs, outputs, started_at, ended_at, error, who, host, pid" \
  " FROM executions"

static json_t *exec_row(const json_t *rows, size_t i) {
  return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:s, s:o, s:o}", "id", (json_int_t)cell_i64(rows, i, 0),
                   "pipeline", cell(rows, i, 1), "stage", cell(rows, i, 2), "cache_key", cell(rows, i, 3), "state",
                   cell(rows, i, 4), "inputs", jparse(cell(rows, i, 5)), "outputs", jparse(cell(rows, i, 6)), "started_at",
                   cell(rows, i, 7), "ended_at", jstr_or_null(cell(rows, i, 8)), "error", jstr_or_null(cell(rows, i, 9)), "who",
                   cell(rows, i, 10), "host", jstr_or_null(cell(rows, i, 11)), "pid",
                   cell(rows, i, 12) ? json_integer(cell_i64(rows, i, 12)) : json_null());
}

static sw_status exec_start_body(sw_registry *r, void *arg) {
  exec_ctx *c = arg;
  const sw_registry_execution *e = c->e;
  json_t *rows = NULL;
  char now[32], pid[24], host[256] = "";
  now_iso(now);
  gethostname(host, sizeof host - 1);
  bool cached = !strcmp(e->state, "cached");
  char *inputs = jdump(e->inputs), *outputs = e->outputs ? jdump(e->outputs) : NULL;
  sw_status st = inputs ? SW_STATUS_OK : sw_error(SW_STATUS_NOMEM, "out of memory");
  if (!st)
    st = QP(r, &rows,
            "INSERT INTO executions (pipeline, stage, cache_key, state, inputs, outputs, started_at, ended_at, who, host, pid)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            e->pipeline, e->stage, e->cache_key, e->state, inputs, outputs, now, cached ? now : NULL, who_or_default(e->who),
            host, i64s(pid, (int64_t)getpid()));
  c->id = st ? 0 : cell_i64(rows, 0, 0);
  if (!st)
    st = event(r, e->who, "execution", cached ? "cached" : "start", e->model, e->version,
               json_pack("{s:I, s:s, s:s, s:s}", "execution", (json_int_t)c->id, "pipeline", e->pipeline, "stage", e->stage,
                         "cache_key", e->cache_key));
  free(inputs);
  free(outputs);
  json_decref(rows);
  return st;
}

sw_status sw_registry_execution_start(sw_registry *r, const sw_registry_execution *e, int64_t *id) {
  *id = 0;
  if (!e->pipeline || !*e->pipeline || !e->stage || !*e->stage || !e->cache_key || !*e->cache_key)
    return sw_error(SW_STATUS_INVALID, "an execution needs a pipeline, a stage and a cache key");
  if (!e->state || (strcmp(e->state, "running") && strcmp(e->state, "cached")))
    return sw_error(SW_STATUS_INVALID, "an execution starts \"running\" or is recorded \"cached\"");
  if (!json_is_object(e->inputs)) return sw_error(SW_STATUS_INVALID, "an execution's inputs are a JSON object");
  exec_ctx c = {.e = e};
  sw_status st = txn(r, true, exec_start_body, &c);
  if (!st) *id = c.id;
  return st;
}

static sw_status exec_end_body(sw_registry *r, void *arg) {
  exec_ctx *c = arg;
  json_t *rows = NULL;
  char id[24], now[32];
  now_iso(now);
  i64s(id, c->id);
  char *outputs = c->outputs ? jdump(c->outputs) : NULL;
  sw_status st = QP(r, &rows, "SELECT pipeline, stage, state FROM executions WHERE id = $1", id);
  if (!st && json_array_size(rows) == 0) st = sw_error(SW_STATUS_NOT_FOUND, "no execution %lld", (long long)c->id);
  if (!st && strcmp(cell(rows, 0, 2), "running") != 0)
    st = sw_error(SW_STATUS_INVALID, "execution %lld has already ended (%s)", (long long)c->id, cell(rows, 0, 2));
  if (!st)
    st = QP(r, NULL, "UPDATE executions SET state = $2, outputs = $3, ended_at = $4, error = $5 WHERE id = $1", id, c->state,
            outputs, now, c->error);
  if (!st) {
    json_t *d = json_pack("{s:I, s:s, s:s, s:s?}", "execution", (json_int_t)c->id, "pipeline", cell(rows, 0, 0), "stage",
                          cell(rows, 0, 1), "error", c->error);
    const json_t *ref = json_object_get(c->outputs, "ref");
    sw_model_ref mr;
    bool named = json_is_string(ref) && !sw_model_ref_parse(json_string_value(ref), strlen(json_string_value(ref)), &mr) &&
                 mr.version > 0;
    if (!named) sw_clear_error();
    st = event(r, c->who, "execution", c->state, named ? mr.name : NULL, named ? mr.version : 0, d);
  }
  free(outputs);
  json_decref(rows);
  return st;
}

sw_status sw_registry_execution_end(sw_registry *r, int64_t id, const char *state, const json_t *outputs, const char *error,
                                    const char *who) {
  if (!exec_state_valid(state) || !strcmp(state, "running") || !strcmp(state, "cached"))
    return sw_error(SW_STATUS_INVALID, "an execution ends \"complete\" or \"failed\"");
  if (outputs && !json_is_object(outputs)) return sw_error(SW_STATUS_INVALID, "an execution's outputs are a JSON object");
  exec_ctx c = {.id = id, .state = state, .outputs = outputs, .error = error, .who = who};
  return txn(r, true, exec_end_body, &c);
}

static sw_status exec_find_body(sw_registry *r, void *arg) {
  exec_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *rows = NULL;
  sw_status st = c->pipeline ? QP(r, &rows,
                                  EXEC_COLUMNS " WHERE pipeline = $1 AND stage = $2 AND cache_key = $3 AND state = 'complete'"
                                               " ORDER BY id DESC LIMIT 1",
                                  c->pipeline, c->stage, c->cache_key)
                             : QP(r, &rows,
                                  EXEC_COLUMNS " WHERE stage = $1 AND cache_key = $2 AND state = 'complete' ORDER BY id DESC LIMIT 1",
                                  c->stage, c->cache_key);
  if (!st && json_array_size(rows) == 0)
    st = sw_error(SW_STATUS_NOT_FOUND, "no complete execution of %s/%s with key %.12s", c->pipeline ? c->pipeline : "*", c->stage,
                  c->cache_key);
  if (!st) c->result = exec_row(rows, 0);
  json_decref(rows);
  return st;
}

sw_status sw_registry_execution_find(sw_registry *r, const char *pipeline, const char *stage, const char *cache_key,
                                     json_t **out) {
  exec_ctx c = {.pipeline = pipeline, .stage = stage, .cache_key = cache_key};
  sw_status st = txn(r, false, exec_find_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

static sw_status exec_list_body(sw_registry *r, void *arg) {
  exec_ctx *c = arg;
  json_decref(c->result);
  c->result = NULL;
  json_t *rows = NULL;
  sw_status st = c->pipeline ? QP(r, &rows, EXEC_COLUMNS " WHERE pipeline = $1 ORDER BY id DESC", c->pipeline)
                             : Q0(r, &rows, EXEC_COLUMNS " ORDER BY id DESC");
  if (!st) {
    c->result = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) json_array_append_new(c->result, exec_row(rows, i));
  }
  json_decref(rows);
  return st;
}

sw_status sw_registry_executions(sw_registry *r, const char *pipeline, json_t **out) {
  exec_ctx c = {.pipeline = pipeline};
  sw_status st = txn(r, false, exec_list_body, &c);
  *out = st ? NULL : c.result;
  if (st) json_decref(c.result);
  return st;
}

/* '%' + text with LIKE's wildcards escaped (ESCAPE '\') + '%', in a new string. */
static char *like_pattern(const char *text) {
  sw_buf b = {0};
  sw_status st = sw_buf_append(&b, "%", 1);
  for (const char *p = text; *p && !st; p++) {
    if (*p == '%' || *p == '_' || *p == '\\') st = sw_buf_append(&b, "\\", 1);
    if (!st) st = sw_buf_append(&b, p, 1);
  }
  if (!st) st = sw_buf_append(&b, "%", 2); /* with the NUL */
  if (st) {
    sw_buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}

/* The executions that made or used what a version is built from: the prep executions of its
 * dataset (manifest SHA-256 in their outputs), those that made or evaluated its run
 * (params_sha256) and those that name the version itself ("ref"), oldest first, as
 * lineage["executions"]. */
static sw_status lineage_executions(sw_registry *r, json_t *lineage) {
  const char *ds = json_string_value(json_object_get(json_object_get(lineage, "dataset"), "manifest_sha256"));
  const char *params = json_string_value(json_object_get(json_object_get(lineage, "run"), "params_sha256"));
  const char *ref = json_string_value(json_object_get(lineage, "ref"));
  char *frag[3] = {NULL, NULL, NULL}, *pat[3] = {NULL, NULL, NULL};
  frag[0] = ds ? sw_asprintf("\"manifest_sha256\":\"%s\"", ds) : NULL;
  frag[1] = params ? sw_asprintf("\"params_sha256\":\"%s\"", params) : NULL;
  frag[2] = ref ? sw_asprintf("\"ref\":\"%s\"", ref) : NULL;
  for (int i = 0; i < 3; i++) pat[i] = frag[i] ? like_pattern(frag[i]) : NULL;
  json_t *rows = NULL;
  /* a NULL parameter matches nothing (LIKE NULL is never true) */
  sw_status st = QP(r, &rows,
                    EXEC_COLUMNS " WHERE (stage = 'prep' AND outputs LIKE $1 ESCAPE '\\') OR outputs LIKE $2 ESCAPE '\\' OR outputs LIKE $3 ESCAPE '\\'"
                                 " OR inputs LIKE $3 ESCAPE '\\' ORDER BY id",
                    pat[0], pat[1], pat[2]);
  if (!st) {
    json_t *all = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) json_array_append_new(all, exec_row(rows, i));
    json_object_set_new(lineage, "executions", all);
  }
  for (int i = 0; i < 3; i++) {
    sw_free(frag[i]);
    sw_free(pat[i]);
  }
  json_decref(rows);
  return st;
}
