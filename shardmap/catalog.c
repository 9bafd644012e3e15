/*
 * catalog.c - the shard map in Postgres (see shardmap/catalog.h).
 *
 * The only libpq user in shardmap/. Blocking; any thread with its own PGconn.
 *
 * Schema `shardrouter` (schema_version 1), readable with plain SQL:
 *
 *   meta      one row (singleton = true): epoch bigint (grows by one per
 *             change), schema_version int, created_at.
 *   shards    shard_id int PK (>= 0), primary_conninfo text, created_at.
 *   replicas  (shard_id -> shards, replica_no int) PK, conninfo text;
 *             replica_no counts 0.. in registration order.
 *   tables    (schema_name default 'public', table_name) PK, key_column,
 *             key_type in ('bigint','text','uuid'), created_at. Tables with
 *             the same key column name and type are co-located.
 *   ranges    lo text PK, hi text, shard_id -> shards, state in
 *             ('active','frozen'), updated_at, read_lsn (NULL, or the
 *             owner primary's LSN at a move's cutover: replicas serve reads
 *             of the range only once they have replayed past it). lo/hi are exactly 16
 *             lowercase hex digits with COLLATE "C", so text order is numeric
 *             order; ranges are inclusive and tile 0000000000000000 ..
 *             ffffffffffffffff with no gap or overlap (checked by the code
 *             that writes them: sm_catalog_apply validates the whole map).
 *   routers   router_id text PK, host, pid, version, started_at,
 *             heartbeat_at, acked_epoch, lease_ms: written by routers.
 *             acked_epoch is the newest epoch whose map every worker uses
 *             with no request routed by an older map still in flight.
 *   moves     move_id bigserial PK, range_lo/range_hi, from_shard,
 *             to_shard, step, state in ('running','done','failed',
 *             'rolled_back'), slot_name, snapshot, rows_copied, started_at,
 *             updated_at, error, publication, applied_lsn, freeze_epoch,
 *             frozen_at, cutover_lsn, bytes_copied, changes_applied,
 *             rows_deleted, finished_at: the journal of `shardctl move`; at
 *             most one running move per range_lo.
 *
 * Every change is one READ COMMITTED transaction: pg_advisory_xact_lock(
 * SM_CATALOG_LOCK_KEY), load the map (each statement after the lock sees
 * every earlier change), edit it with map.h, sm_map_validate, write the
 * difference with parameterised SQL, UPDATE meta SET epoch = epoch + 1,
 * pg_notify('shardrouter_map', '<new epoch>'), COMMIT.
 */
#include "shardmap/catalog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_SQL "SELECT pg_advisory_xact_lock(" SM_CATALOG_LOCK_KEY_STR ")"

static const char *const install_sql[] = {
    "SET LOCAL client_min_messages = warning",
    LOCK_SQL,
    "CREATE SCHEMA IF NOT EXISTS shardrouter",
    ("CREATE TABLE IF NOT EXISTS shardrouter.meta ("
     " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
     " epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),"
     " schema_version int NOT NULL,"
     " created_at timestamptz NOT NULL DEFAULT now())"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.shards ("
     " shard_id int PRIMARY KEY CHECK (shard_id >= 0),"
     " primary_conninfo text NOT NULL,"
     " created_at timestamptz NOT NULL DEFAULT now())"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.replicas ("
     " shard_id int NOT NULL REFERENCES shardrouter.shards ON DELETE CASCADE,"
     " replica_no int NOT NULL CHECK (replica_no >= 0),"
     " conninfo text NOT NULL,"
     " PRIMARY KEY (shard_id, replica_no))"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.tables ("
     " schema_name text NOT NULL DEFAULT 'public',"
     " table_name text NOT NULL,"
     " key_column text NOT NULL,"
     " key_type text NOT NULL CHECK (key_type IN ('bigint', 'text', 'uuid')),"
     " created_at timestamptz NOT NULL DEFAULT now(),"
     " PRIMARY KEY (schema_name, table_name))"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.ranges ("
     " lo text COLLATE \"C\" PRIMARY KEY CHECK (lo ~ '^[0-9a-f]{16}$'),"
     " hi text COLLATE \"C\" NOT NULL CHECK (hi ~ '^[0-9a-f]{16}$'),"
     " shard_id int NOT NULL REFERENCES shardrouter.shards,"
     " state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'frozen')),"
     " updated_at timestamptz NOT NULL DEFAULT now(),"
     " CHECK (lo <= hi))"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.routers ("
     " router_id text PRIMARY KEY,"
     " host text, pid int, version text,"
     " started_at timestamptz NOT NULL DEFAULT now(),"
     " heartbeat_at timestamptz NOT NULL DEFAULT now(),"
     " acked_epoch bigint NOT NULL DEFAULT 0)"),
    ("CREATE TABLE IF NOT EXISTS shardrouter.moves ("
     " move_id bigserial PRIMARY KEY,"
     " range_lo text COLLATE \"C\" NOT NULL CHECK (range_lo ~ '^[0-9a-f]{16}$'),"
     " range_hi text COLLATE \"C\" NOT NULL CHECK (range_hi ~ '^[0-9a-f]{16}$'),"
     " from_shard int NOT NULL REFERENCES shardrouter.shards,"
     " to_shard int NOT NULL REFERENCES shardrouter.shards,"
     " step text NOT NULL DEFAULT 'planned',"
     " state text NOT NULL DEFAULT 'running'"
     "  CHECK (state IN ('running', 'done', 'failed', 'rolled_back')),"
     " slot_name text, snapshot text,"
     " rows_copied bigint NOT NULL DEFAULT 0,"
     " started_at timestamptz NOT NULL DEFAULT now(),"
     " updated_at timestamptz NOT NULL DEFAULT now(),"
     " error text)"),
    ("CREATE UNIQUE INDEX IF NOT EXISTS moves_one_running"
     " ON shardrouter.moves (range_lo) WHERE state = 'running'"),
    /* Columns added after the first release of schema 1 (idempotent). */
    ("ALTER TABLE shardrouter.ranges"
     " ADD COLUMN IF NOT EXISTS read_lsn pg_lsn"),
    ("ALTER TABLE shardrouter.routers"
     " ADD COLUMN IF NOT EXISTS lease_ms bigint"),
    ("ALTER TABLE shardrouter.moves"
     " ADD COLUMN IF NOT EXISTS publication text,"
     " ADD COLUMN IF NOT EXISTS applied_lsn pg_lsn,"
     " ADD COLUMN IF NOT EXISTS freeze_epoch bigint,"
     " ADD COLUMN IF NOT EXISTS frozen_at timestamptz,"
     " ADD COLUMN IF NOT EXISTS cutover_lsn pg_lsn,"
     " ADD COLUMN IF NOT EXISTS bytes_copied bigint NOT NULL DEFAULT 0,"
     " ADD COLUMN IF NOT EXISTS changes_applied bigint NOT NULL DEFAULT 0,"
     " ADD COLUMN IF NOT EXISTS rows_deleted bigint NOT NULL DEFAULT 0,"
     " ADD COLUMN IF NOT EXISTS finished_at timestamptz"),
    "INSERT INTO shardrouter.meta (schema_version) VALUES (1) ON CONFLICT DO NOTHING",
};

/* ---- small libpq helpers ---------------------------------------------- */

static int db_fail(PGconn *conn, const PGresult *res, const char *what, struct sr_errmsg *em)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!msg || !*msg)
		msg = PQerrorMessage(conn);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	return sr_errmsg_set(em, SR_EDB, "catalog %s failed: %.*s", what, (int)n, msg);
}

/* Run a statement with text parameters; NULL (em set) unless it returned
 * COMMAND_OK or TUPLES_OK. The caller PQclear()s the result. */
static PGresult *db_exec(PGconn *conn, const char *sql, int n, const char *const *vals,
			 const char *what, struct sr_errmsg *em)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	(void)db_fail(conn, res, what, em);
	PQclear(res);
	return NULL;
}

static int db_cmd(PGconn *conn, const char *sql, int n, const char *const *vals, const char *what,
		  struct sr_errmsg *em)
{
	PGresult *res = db_exec(conn, sql, n, vals, what, em);
	if (!res)
		return SR_EDB;
	PQclear(res);
	return 0;
}

static void db_rollback(PGconn *conn)
{
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
}

static int hex16_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return SR_ECORRUPT;
		v = v << 4 | (uint64_t)d;
	}
	if (s[16] != '\0')
		return SR_ECORRUPT;
	*out = v;
	return 0;
}

static void hex16_format(uint64_t v, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, v);
}

/* SR_ENOTFOUND when schema shardrouter has not been installed. */
static int catalog_check_installed(PGconn *conn, struct sr_errmsg *em)
{
	PGresult *res = db_exec(conn, "SELECT to_regclass('shardrouter.meta') IS NOT NULL", 0, NULL,
				"check", em);
	if (!res)
		return SR_EDB;
	int ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!ok)
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "no shardrouter catalog in this database; run `shardctl init` "
				     "(or check --catalog / SHARDROUTER_CATALOG)");
	return 0;
}

/* ---- install ---------------------------------------------------------- */

static int install_check_version(PGconn *conn, struct sr_errmsg *em)
{
	PGresult *res =
	    db_exec(conn, "SELECT schema_version FROM shardrouter.meta", 0, NULL, "install", em);
	if (!res)
		return SR_EDB;
	int v = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
	PQclear(res);
	if (v > SM_CATALOG_SCHEMA_VERSION)
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "catalog schema_version %d is newer than this shardctl "
				     "understands (%d); upgrade shardctl",
				     v, SM_CATALOG_SCHEMA_VERSION);
	if (v < 1)
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "shardrouter.meta must hold exactly one row; inspect it with "
				     "SELECT * FROM shardrouter.meta");
	/* Migrations from older versions go here, one step per version. */
	return 0;
}

int sm_catalog_install(PGconn *conn, struct sr_errmsg *em)
{
	int rc = db_cmd(conn, "BEGIN", 0, NULL, "install", em);
	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(install_sql) / sizeof(install_sql[0]); i++) {
		rc = db_cmd(conn, install_sql[i], 0, NULL, "install", em);
		if (rc)
			goto fail;
	}
	rc = install_check_version(conn, em);
	if (rc)
		goto fail;
	rc = db_cmd(conn, "COMMIT", 0, NULL, "install commit", em);
	if (rc)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	return rc;
}

/* ---- load ------------------------------------------------------------- */

static int load_meta(PGconn *conn, struct sm_map *m, struct sr_errmsg *em)
{
	PGresult *res = db_exec(conn, "SELECT epoch, schema_version FROM shardrouter.meta", 0, NULL,
				"load meta", em);
	if (!res)
		return SR_EDB;
	int rc = 0;
	if (PQntuples(res) != 1)
		rc = sr_errmsg_set(
		    em, SR_ECORRUPT,
		    "shardrouter.meta must hold exactly one row; run `shardctl init`");
	else if (atoi(PQgetvalue(res, 0, 1)) > SM_CATALOG_SCHEMA_VERSION)
		rc = sr_errmsg_set(
		    em, SR_EUNSUPPORTED,
		    "catalog schema_version %s is newer than this build (%d); upgrade",
		    PQgetvalue(res, 0, 1), SM_CATALOG_SCHEMA_VERSION);
	else
		m->epoch = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

/* Add every shard of `shards` with its replicas from `reps` (both sorted by
 * shard_id). */
static int load_shards_from(struct sm_map *m, PGresult *shards, PGresult *reps,
			    struct sr_errmsg *em)
{
	int nr = PQntuples(reps), r = 0;
	const char **list = calloc((size_t)nr + 1, sizeof(*list));
	if (!list)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory loading shards");
	int rc = 0;
	for (int i = 0; i < PQntuples(shards) && rc == 0; i++) {
		int32_t id = (int32_t)atoi(PQgetvalue(shards, i, 0));
		size_t n = 0;
		while (r < nr && atoi(PQgetvalue(reps, r, 0)) < id)
			r++;
		while (r < nr && atoi(PQgetvalue(reps, r, 0)) == id)
			list[n++] = PQgetvalue(reps, r++, 1);
		rc = sm_map_add_shard(m, id, PQgetvalue(shards, i, 1), list, n, em);
	}
	free(list);
	return rc;
}

static int load_shards(PGconn *conn, struct sm_map *m, struct sr_errmsg *em)
{
	PGresult *shards = db_exec(conn,
				   "SELECT shard_id, primary_conninfo FROM shardrouter.shards"
				   " ORDER BY shard_id",
				   0, NULL, "load shards", em);
	if (!shards)
		return SR_EDB;
	PGresult *reps = db_exec(conn,
				 "SELECT shard_id, conninfo FROM shardrouter.replicas"
				 " ORDER BY shard_id, replica_no",
				 0, NULL, "load replicas", em);
	if (!reps) {
		PQclear(shards);
		return SR_EDB;
	}
	int rc = load_shards_from(m, shards, reps, em);
	PQclear(shards);
	PQclear(reps);
	return rc;
}

static int load_tables(PGconn *conn, struct sm_map *m, struct sr_errmsg *em)
{
	PGresult *res = db_exec(conn,
				"SELECT schema_name, table_name, key_column, key_type"
				" FROM shardrouter.tables"
				" ORDER BY schema_name COLLATE \"C\", table_name COLLATE \"C\"",
				0, NULL, "load tables", em);
	if (!res)
		return SR_EDB;
	int rc = 0;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
		enum sm_key_type t;
		rc = sm_key_type_parse(PQgetvalue(res, i, 3), &t, em);
		if (rc == 0)
			rc = sm_map_add_table(m, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
					      PQgetvalue(res, i, 2), t, em);
	}
	PQclear(res);
	return rc;
}

static int load_range_row(PGresult *res, int i, struct sm_range *r, struct sr_errmsg *em)
{
	if (hex16_parse(PQgetvalue(res, i, 0), &r->lo) ||
	    hex16_parse(PQgetvalue(res, i, 1), &r->hi))
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "bad range bounds %s..%s in shardrouter.ranges",
				     PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	r->shard_id = (int32_t)atoi(PQgetvalue(res, i, 2));
	r->read_lsn = 0;
	if (!PQgetisnull(res, i, 4)) {
		const char *lsn = PQgetvalue(res, i, 4);
		if (sm_lsn_parse(lsn, strlen(lsn), &r->read_lsn))
			return sr_errmsg_set(em, SR_ECORRUPT,
					     "bad read_lsn \"%s\" of range %s in shardrouter.ranges",
					     lsn, PQgetvalue(res, i, 0));
	}
	return sm_range_state_parse(PQgetvalue(res, i, 3), &r->state, em);
}

static int load_ranges(PGconn *conn, struct sm_map *m, struct sr_errmsg *em)
{
	PGresult *res = db_exec(conn,
				"SELECT lo, hi, shard_id, state, read_lsn FROM shardrouter.ranges"
				" ORDER BY lo COLLATE \"C\"",
				0, NULL, "load ranges", em);
	if (!res)
		return SR_EDB;
	size_t n = (size_t)PQntuples(res);
	struct sm_range *rs = n ? calloc(n, sizeof(*rs)) : NULL;
	int rc = n && !rs ? sr_errmsg_set(em, SR_ENOMEM, "out of memory loading ranges") : 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = load_range_row(res, (int)i, &rs[i], em);
	PQclear(res);
	if (rc) {
		free(rs);
		return rc;
	}
	free(m->ranges);
	m->ranges = rs;
	m->n_ranges = n;
	return 0;
}

/* Read everything inside the caller's transaction. */
static int load_in_tx(PGconn *conn, struct sm_map **out, struct sr_errmsg *em)
{
	int rc = catalog_check_installed(conn, em);
	if (rc)
		return rc;
	struct sm_map *m = sm_map_new();
	if (!m)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory loading the catalog");
	rc = load_meta(conn, m, em);
	if (rc == 0)
		rc = load_shards(conn, m, em);
	if (rc == 0)
		rc = load_tables(conn, m, em);
	if (rc == 0)
		rc = load_ranges(conn, m, em);
	if (rc) {
		sm_map_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* A map before `map init` has no ranges; sm_map_validate demands full
 * coverage, so only maps with ranges are validated. */
static int map_check(const struct sm_map *m, struct sr_errmsg *em)
{
	if (m->n_ranges == 0)
		return 0;
	return sm_map_validate(m, em);
}

int sm_catalog_load(PGconn *conn, struct sm_map **out, struct sr_errmsg *em)
{
	struct sm_map *m = NULL;
	int rc =
	    db_cmd(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, "load", em);
	if (rc)
		return rc;
	rc = load_in_tx(conn, &m, em);
	if (rc == 0)
		rc = db_cmd(conn, "COMMIT", 0, NULL, "load commit", em);
	if (rc) {
		db_rollback(conn);
		sm_map_free(m);
		return rc;
	}
	struct sr_errmsg verr;
	if (map_check(m, &verr) != 0) {
		sm_map_free(m);
		return sr_errmsg_set(
		    em, SR_ECORRUPT,
		    "the map in the catalog is invalid: %s; fix shardrouter.ranges "
		    "with SQL",
		    verr.text);
	}
	*out = m;
	return 0;
}

int sm_catalog_epoch(PGconn *conn, uint64_t *out, struct sr_errmsg *em)
{
	PGresult *res =
	    db_exec(conn, "SELECT epoch FROM shardrouter.meta", 0, NULL, "read epoch", em);
	if (!res)
		return SR_EDB;
	int rc = 0;
	if (PQntuples(res) != 1)
		rc = sr_errmsg_set(em, SR_ENOTFOUND,
				   "shardrouter.meta is empty; run `shardctl init`");
	else
		*out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return rc;
}

/* ---- writing the difference ------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int replicas_equal(const struct sm_shard *a, const struct sm_shard *b)
{
	if (a->n_replicas != b->n_replicas)
		return 0;
	for (size_t i = 0; i < a->n_replicas; i++)
		if (!str_eq(a->replicas[i], b->replicas[i]))
			return 0;
	return 1;
}

static int write_replicas(PGconn *conn, const struct sm_shard *s, struct sr_errmsg *em)
{
	char id[16], no[24];
	snprintf(id, sizeof(id), "%" PRId32, s->id);
	const char *del[] = {id};
	int rc = db_cmd(conn, "DELETE FROM shardrouter.replicas WHERE shard_id = $1", 1, del,
			"write replicas", em);
	for (size_t i = 0; i < s->n_replicas && rc == 0; i++) {
		snprintf(no, sizeof(no), "%zu", i);
		const char *v[] = {id, no, s->replicas[i]};
		rc = db_cmd(conn,
			    "INSERT INTO shardrouter.replicas (shard_id, replica_no, conninfo)"
			    " VALUES ($1, $2, $3)",
			    3, v, "write replicas", em);
	}
	return rc;
}

/* Insert new shards, update changed ones (deletions come after ranges). */
static int write_shards(PGconn *conn, const struct sm_map *b, const struct sm_map *a, int *changes,
			struct sr_errmsg *em)
{
	for (size_t i = 0; i < a->n_shards; i++) {
		const struct sm_shard *s = &a->shards[i], *old = sm_map_find_shard(b, s->id);
		char id[16];
		snprintf(id, sizeof(id), "%" PRId32, s->id);
		const char *v[] = {id, s->primary};
		int rc = 0;
		if (!old)
			rc = db_cmd(conn,
				    "INSERT INTO shardrouter.shards (shard_id, primary_conninfo)"
				    " VALUES ($1, $2)",
				    2, v, "write shards", em);
		else if (!str_eq(old->primary, s->primary))
			rc = db_cmd(conn,
				    "UPDATE shardrouter.shards SET primary_conninfo = $2"
				    " WHERE shard_id = $1",
				    2, v, "write shards", em);
		if (rc == 0 && (!old || !replicas_equal(old, s)))
			rc = write_replicas(conn, s, em);
		if (rc)
			return rc;
		*changes += !old || !str_eq(old->primary, s->primary) || !replicas_equal(old, s);
	}
	return 0;
}

static int delete_shards(PGconn *conn, const struct sm_map *b, const struct sm_map *a, int *changes,
			 struct sr_errmsg *em)
{
	for (size_t i = 0; i < b->n_shards; i++) {
		if (sm_map_find_shard(a, b->shards[i].id))
			continue;
		char id[16];
		snprintf(id, sizeof(id), "%" PRId32, b->shards[i].id);
		const char *v[] = {id};
		int rc = db_cmd(conn, "DELETE FROM shardrouter.shards WHERE shard_id = $1", 1, v,
				"delete shard", em);
		if (rc)
			return rc;
		(*changes)++;
	}
	return 0;
}

static int write_tables(PGconn *conn, const struct sm_map *b, const struct sm_map *a, int *changes,
			struct sr_errmsg *em)
{
	for (size_t i = 0; i < a->n_tables; i++) {
		const struct sm_table *t = &a->tables[i];
		const struct sm_table *old = sm_map_find_table(b, t->schema, t->name);
		const char *v[] = {t->schema, t->name, t->key_column,
				   sm_key_type_name(t->key_type)};
		int rc = 0;
		if (!old)
			rc = db_cmd(conn,
				    "INSERT INTO shardrouter.tables"
				    " (schema_name, table_name, key_column, key_type)"
				    " VALUES ($1, $2, $3, $4)",
				    4, v, "write tables", em);
		else if (!str_eq(old->key_column, t->key_column) || old->key_type != t->key_type)
			rc = db_cmd(conn,
				    "UPDATE shardrouter.tables SET key_column = $3, key_type = $4"
				    " WHERE schema_name = $1 AND table_name = $2",
				    4, v, "write tables", em);
		else
			continue;
		if (rc)
			return rc;
		(*changes)++;
	}
	for (size_t i = 0; i < b->n_tables; i++) {
		const struct sm_table *t = &b->tables[i];
		if (sm_map_find_table(a, t->schema, t->name))
			continue;
		const char *v[] = {t->schema, t->name};
		int rc = db_cmd(conn,
				"DELETE FROM shardrouter.tables WHERE schema_name = $1"
				" AND table_name = $2",
				2, v, "delete table", em);
		if (rc)
			return rc;
		(*changes)++;
	}
	return 0;
}

static const struct sm_range *range_by_lo(const struct sm_map *m, uint64_t lo)
{
	size_t l = 0, h = m->n_ranges;
	while (l < h) {
		size_t mid = l + (h - l) / 2;
		if (m->ranges[mid].lo < lo)
			l = mid + 1;
		else
			h = mid;
	}
	return l < m->n_ranges && m->ranges[l].lo == lo ? &m->ranges[l] : NULL;
}

static int write_one_range(PGconn *conn, const struct sm_range *r, const struct sm_range *old,
			   struct sr_errmsg *em)
{
	char lo[17], hi[17], id[16], lsn[18];
	hex16_format(r->lo, lo);
	hex16_format(r->hi, hi);
	snprintf(id, sizeof(id), "%" PRId32, r->shard_id);
	sm_lsn_format(r->read_lsn, lsn);
	/* read_lsn 0 is stored as NULL ("no read LSN") */
	const char *v[] = {lo, hi, id, sm_range_state_name(r->state), r->read_lsn ? lsn : NULL};
	if (!old)
		return db_cmd(conn,
			      "INSERT INTO shardrouter.ranges (lo, hi, shard_id, state, read_lsn)"
			      " VALUES ($1, $2, $3, $4, $5::pg_lsn)",
			      5, v, "write ranges", em);
	return db_cmd(conn,
		      "UPDATE shardrouter.ranges SET hi = $2, shard_id = $3, state = $4,"
		      " read_lsn = $5::pg_lsn, updated_at = now() WHERE lo = $1",
		      5, v, "write ranges", em);
}

static int write_ranges(PGconn *conn, const struct sm_map *b, const struct sm_map *a, int *changes,
			struct sr_errmsg *em)
{
	for (size_t i = 0; i < b->n_ranges; i++) {
		if (range_by_lo(a, b->ranges[i].lo))
			continue;
		char lo[17];
		hex16_format(b->ranges[i].lo, lo);
		const char *v[] = {lo};
		int rc = db_cmd(conn, "DELETE FROM shardrouter.ranges WHERE lo = $1", 1, v,
				"delete range", em);
		if (rc)
			return rc;
		(*changes)++;
	}
	for (size_t i = 0; i < a->n_ranges; i++) {
		const struct sm_range *r = &a->ranges[i], *old = range_by_lo(b, r->lo);
		if (old && old->hi == r->hi && old->shard_id == r->shard_id &&
		    old->state == r->state && old->read_lsn == r->read_lsn)
			continue;
		int rc = write_one_range(conn, r, old, em);
		if (rc)
			return rc;
		(*changes)++;
	}
	return 0;
}

static int write_diff(PGconn *conn, const struct sm_map *b, const struct sm_map *a, int *changes,
		      struct sr_errmsg *em)
{
	int rc = write_shards(conn, b, a, changes, em);
	if (rc == 0)
		rc = write_tables(conn, b, a, changes, em);
	if (rc == 0)
		rc = write_ranges(conn, b, a, changes, em);
	if (rc == 0)
		rc = delete_shards(conn, b, a, changes, em);
	return rc;
}

/* ---- apply ------------------------------------------------------------ */

static int bump_epoch(PGconn *conn, uint64_t *epoch, struct sr_errmsg *em)
{
	PGresult *res =
	    db_exec(conn, "UPDATE shardrouter.meta SET epoch = epoch + 1 RETURNING epoch", 0, NULL,
		    "bump epoch", em);
	if (!res)
		return SR_EDB;
	char ep[32];
	snprintf(ep, sizeof(ep), "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	if (!ep[0])
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "shardrouter.meta is empty; run `shardctl init`");
	*epoch = strtoull(ep, NULL, 10);
	const char *v[] = {SM_CATALOG_CHANNEL, ep};
	return db_cmd(conn, "SELECT pg_notify($1, $2)", 2, v, "notify", em);
}

/* Under the lock: load, edit a clone, validate, write. */
static int apply_locked(PGconn *conn, sm_catalog_change_fn *fn, void *ctx, uint64_t *epoch,
			struct sr_errmsg *em)
{
	struct sm_map *before = NULL, *after = NULL;
	int changes = 0;
	int rc = load_in_tx(conn, &before, em);
	if (rc == 0)
		rc = sm_map_clone(before, &after);
	if (rc == 0)
		rc = fn(after, ctx, em);
	if (rc == 0)
		rc = map_check(after, em);
	if (rc == 0)
		rc = write_diff(conn, before, after, &changes, em);
	if (rc == 0) {
		*epoch = before->epoch;
		if (changes)
			rc = bump_epoch(conn, epoch, em);
	}
	sm_map_free(before);
	sm_map_free(after);
	return rc;
}

int sm_catalog_apply(PGconn *conn, sm_catalog_change_fn *fn, void *ctx, uint64_t *new_epoch,
		     struct sr_errmsg *em)
{
	uint64_t epoch = 0;
	int rc = db_cmd(conn, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, "begin", em);
	if (rc)
		return rc;
	rc = db_cmd(conn, LOCK_SQL, 0, NULL, "advisory lock", em);
	if (rc == 0)
		rc = apply_locked(conn, fn, ctx, &epoch, em);
	if (rc == 0)
		rc = db_cmd(conn, "COMMIT", 0, NULL, "commit", em);
	if (rc) {
		db_rollback(conn);
		return rc;
	}
	*new_epoch = epoch;
	return 0;
}
