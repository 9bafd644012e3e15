/*
 * move_db.c - SQL-side pieces of `shardctl move` (see move.h): connecting,
 * checking the tables on both shards, the publication and slot, the
 * filtered snapshot copy, range checksums and the batched range delete.
 *
 * The key filter is done here, client-side, with the shardmap hash: COPY
 * streams every row of a table as text, the key field is hashed and the
 * row is passed on (or summed, or its key queued for deletion) only when
 * the hash is in the range. Nothing is held in memory beyond one row and
 * one batch of keys. Works on any Postgres (no extension needed).
 * Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "move.h"
#include "shardmap/hash.h"

double move_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- progress ---------------------------------------------------------- */

void mprogress_start(struct mprogress *p, const char *what, uint64_t total_est)
{
	memset(p, 0, sizeof(*p));
	p->what = what;
	p->t0 = p->last = move_now_s();
	p->total_est = total_est;
	p->tty = isatty(2);
}

static void human_bytes(uint64_t b, char *out, size_t n)
{
	if (b >= (1u << 30))
		snprintf(out, n, "%.1f GiB", (double)b / (1u << 30));
	else if (b >= (1u << 20))
		snprintf(out, n, "%.1f MiB", (double)b / (1u << 20));
	else
		snprintf(out, n, "%.1f KiB", (double)b / 1024);
}

void mprogress_tick(struct mprogress *p, bool force)
{
	double now = move_now_s();
	if (!force && now - p->last < (p->tty ? 0.2 : 2.0))
		return;
	p->last = now;
	double secs = now - p->t0, rate = secs > 0 ? (double)p->rows / secs : 0;
	char bytes[32], eta[32] = "";
	human_bytes(p->bytes, bytes, sizeof(bytes));
	if (p->total_est > p->rows && rate > 0)
		snprintf(eta, sizeof(eta), " ETA %.0fs", (double)(p->total_est - p->rows) / rate);
	if (p->tty) {
		int width = 24, fill = 0;
		if (p->total_est)
			fill = (int)((double)width * (double)p->rows / (double)p->total_est);
		if (fill > width)
			fill = width;
		fprintf(stderr, "\r  %-14s [%.*s%*s] %llu rows %s %.0f rows/s%s   ", p->what, fill,
			"########################", width - fill, "", (unsigned long long)p->rows,
			bytes, rate, eta);
	} else {
		fprintf(stderr, "  %s: %llu rows %s %.0f rows/s%s\n", p->what,
			(unsigned long long)p->rows, bytes, rate, eta);
	}
	fflush(stderr);
}

void mprogress_end(struct mprogress *p)
{
	p->total_est = 0;
	mprogress_tick(p, true);
	if (p->tty)
		fputc('\n', stderr);
}

/* ---- SQL helpers ------------------------------------------------------- */

static void one_line(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (char *q = s; *q; q++)
		if (*q == '\n' || *q == '\t')
			*q = ' ';
}

PGresult *mdb_exec(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
		   struct sr_errmsg *em)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	char msg[SR_ERRMSG_LEN];
	const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	snprintf(msg, sizeof(msg), "%s", m && *m ? m : PQerrorMessage(c));
	one_line(msg);
	sr_errmsg_set(em, SR_EDB, "%s: %s", what, msg);
	PQclear(res);
	return NULL;
}

int mdb_cmd(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
	    struct sr_errmsg *em)
{
	PGresult *res = mdb_exec(c, sql, n, vals, what, em);
	if (!res)
		return SR_EDB;
	PQclear(res);
	return 0;
}

int mdb_value(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
	      char *out, size_t outsz, struct sr_errmsg *em)
{
	PGresult *res = mdb_exec(c, sql, n, vals, what, em);
	if (!res)
		return SR_EDB;
	if (PQntuples(res) < 1 || PQnfields(res) < 1) {
		PQclear(res);
		return sr_errmsg_set(em, SR_EDB, "%s: no row returned", what);
	}
	snprintf(out, outsz, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

PGconn *mdb_connect(const char *conninfo, bool repl, struct sr_errmsg *em)
{
	const char *const keys[] = {"dbname", "connect_timeout", "application_name",
				    repl ? "replication" : NULL, NULL};
	const char *const vals[] = {conninfo, "10", "shardctl move", "database", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c && PQstatus(c) == CONNECTION_OK)
		return c;
	char msg[SR_ERRMSG_LEN], disp[512];
	snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
	one_line(msg);
	ctl_conninfo_display(conninfo, disp, sizeof(disp));
	sr_errmsg_set(em, SR_EDB, "cannot connect to %s%s: %s", disp,
		      repl ? " (replication=database)" : "", msg);
	PQfinish(c);
	return NULL;
}

int mdb_session_setup(PGconn *c, struct sr_errmsg *em)
{
	static const char *const sets[] = {
	    "SET datestyle = 'ISO, YMD'", "SET timezone = 'UTC'", "SET extra_float_digits = 3",
	    "SET bytea_output = 'hex'",	  "SET intervalstyle = 'postgres'",
	    "SET statement_timeout = 0",  "SET lock_timeout = '10s'",
	    "SET client_min_messages = warning",
	    /* our commits on the target are durable before the cutover, and a
	     * commit of ours on the source flushes every earlier commit record
	     * (logical decoding reads only flushed WAL) */
	    "SET synchronous_commit = on"};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		if (mdb_cmd(c, sets[i], 0, NULL, "session setup", em))
			return SR_EDB;
	return 0;
}

/* ---- COPY text fields and keys ------------------------------------------ */

size_t mdb_copy_unescape(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			out[o++] = s[i];
			continue;
		}
		char c = s[++i];
		int v = 0, d, k;
		switch (c) {
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'v': out[o++] = '\v'; break;
		case 'x':
			for (k = 0; k < 2 && i + 1 < n && (d = sm_hex_digit(s[i + 1])) >= 0; k++, i++)
				v = v * 16 + d;
			out[o++] = k ? (char)v : 'x';
			break;
		case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
			v = c - '0';
			for (k = 1; k < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
				v = v * 8 + (s[++i] - '0');
			out[o++] = (char)v;
			break;
		default:
			out[o++] = c;
			break;
		}
	}
	return o;
}

bool mdb_copy_field(const char *line, size_t len, size_t i, const char **f, size_t *flen)
{
	size_t start = 0, idx = 0;
	for (size_t p = 0; p <= len; p++) {
		if (p < len && line[p] != '\t' && line[p] != '\n')
			continue;
		if (idx == i) {
			*f = line + start;
			*flen = p - start;
			return true;
		}
		if (p == len || line[p] == '\n')
			return false;
		idx++;
		start = p + 1;
	}
	return false;
}

bool mdb_key_hash(enum sm_key_type t, const char *s, size_t n, uint64_t *h)
{
	if (n == 2 && s[0] == '\\' && s[1] == 'N')
		return false; /* NULL: not routable, never moved */
	struct sm_key k;
	struct sr_errmsg em;
	if (t == SM_KEY_TEXT && memchr(s, '\\', n)) {
		char *buf = malloc(n ? n : 1);
		if (!buf)
			return false;
		size_t m = mdb_copy_unescape(s, n, buf);
		bool ok = sm_key_from_text(t, buf, m, &k, &em) == 0;
		if (ok)
			*h = sm_hash_key(&k);
		free(buf);
		return ok;
	}
	if (sm_key_from_text(t, s, n, &k, &em) != 0)
		return false;
	*h = sm_hash_key(&k);
	return true;
}

/* ---- describing and checking the tables ---------------------------------- */

static char *quote_ident(PGconn *c, const char *s)
{
	char *q = PQescapeIdentifier(c, s, strlen(s));
	char *r = q ? strdup(q) : NULL;
	PQfreemem(q);
	return r;
}

void mdb_tables_free(struct mtable *ts, size_t n)
{
	for (size_t i = 0; ts && i < n; i++) {
		for (size_t j = 0; j < ts[i].n_cols; j++) {
			free(ts[i].cols[j].name);
			free(ts[i].cols[j].qname);
			free(ts[i].cols[j].type);
		}
		free(ts[i].cols);
		free(ts[i].qname);
		free(ts[i].col_list);
		free(ts[i].pk_list);
		free(ts[i].key_type);
	}
	free(ts);
}

static const char rel_sql[] =
    "SELECT c.oid, c.relreplident, greatest(c.reltuples, 0)::float8"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')";

static const char cols_sql[] =
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
    " coalesce(a.attnum = ANY (i.indkey), false)"
    " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_index i"
    "  ON i.indrelid = a.attrelid AND i.indisprimary"
    " WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped"
    "  AND a.attgenerated = '' ORDER BY a.attnum";

/* The table's oid, replica identity and row estimate on one side; *found 0
 * when absent. */
static int rel_lookup(PGconn *c, const struct sm_table *t, char *oid, size_t oidsz, char *ident,
		      double *est, int *found, struct sr_errmsg *em)
{
	const char *v[] = {t->schema, t->name};
	PGresult *res = mdb_exec(c, rel_sql, 2, v, "look up table", em);
	if (!res)
		return SR_EDB;
	*found = PQntuples(res) == 1;
	if (*found) {
		snprintf(oid, oidsz, "%s", PQgetvalue(res, 0, 0));
		*ident = PQgetvalue(res, 0, 1)[0];
		*est = strtod(PQgetvalue(res, 0, 2), NULL);
	}
	PQclear(res);
	return 0;
}

static int load_cols(PGconn *c, const char *oid, struct mtable *mt, struct sr_errmsg *em)
{
	const char *v[] = {oid};
	PGresult *res = mdb_exec(c, cols_sql, 1, v, "read columns", em);
	if (!res)
		return SR_EDB;
	size_t n = (size_t)PQntuples(res);
	mt->cols = calloc(n ? n : 1, sizeof(*mt->cols));
	if (!mt->cols) {
		PQclear(res);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	mt->n_cols = n;
	for (size_t i = 0; i < n; i++) {
		struct mcol *col = &mt->cols[i];
		col->name = strdup(PQgetvalue(res, (int)i, 0));
		col->type = strdup(PQgetvalue(res, (int)i, 1));
		col->qname = quote_ident(c, PQgetvalue(res, (int)i, 0));
		col->in_pk = PQgetvalue(res, (int)i, 2)[0] == 't';
		if (!col->name || !col->type || !col->qname) {
			PQclear(res);
			return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
		}
	}
	PQclear(res);
	return 0;
}

/* "a", "b" from the columns (only pk ones when pk_only). */
static char *join_cols(const struct mtable *mt, bool pk_only)
{
	size_t len = 1;
	for (size_t i = 0; i < mt->n_cols; i++)
		len += strlen(mt->cols[i].qname) + 2;
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < mt->n_cols; i++) {
		if (pk_only && !mt->cols[i].in_pk)
			continue;
		if (s[0])
			strcat(s, ", ");
		strcat(s, mt->cols[i].qname);
	}
	return s;
}

/* The target's columns must be the source's: same names, types and key. */
static int compare_target(PGconn *dst, const struct mtable *mt, int32_t dst_id,
			  struct sr_errmsg *em)
{
	char oid[32], ident;
	double est;
	int found;
	int rc = rel_lookup(dst, mt->t, oid, sizeof(oid), &ident, &est, &found, em);
	if (rc)
		return rc;
	if (!found)
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "table %s does not exist on target shard %d; create it there "
				     "with the same columns as on the source, then rerun",
				     mt->qname, dst_id);
	struct mtable tgt = {0};
	rc = load_cols(dst, oid, &tgt, em);
	for (size_t i = 0; !rc && i < mt->n_cols; i++) {
		const struct mcol *s = &mt->cols[i];
		const struct mcol *d = NULL;
		for (size_t j = 0; j < tgt.n_cols; j++)
			if (strcmp(tgt.cols[j].name, s->name) == 0)
				d = &tgt.cols[j];
		if (!d || strcmp(d->type, s->type) != 0)
			rc = sr_errmsg_set(em, SR_EINVAL,
					   "column %s.%s is %s on the source but %s on target "
					   "shard %d; make the table definitions match, then rerun",
					   mt->qname, s->name, s->type, d ? d->type : "missing", dst_id);
		else if (d->in_pk != s->in_pk)
			rc = sr_errmsg_set(em, SR_EINVAL,
					   "table %s has a different primary key on target shard "
					   "%d (column %s); make the primary keys match, then rerun",
					   mt->qname, dst_id, s->name);
	}
	if (!rc && tgt.n_cols != mt->n_cols)
		rc = sr_errmsg_set(em, SR_EINVAL,
				   "table %s has %zu columns on target shard %d but %zu on the "
				   "source; make the table definitions match, then rerun",
				   mt->qname, tgt.n_cols, dst_id, mt->n_cols);
	for (size_t j = 0; j < tgt.n_cols; j++) {
		free(tgt.cols[j].name);
		free(tgt.cols[j].qname);
		free(tgt.cols[j].type);
	}
	free(tgt.cols);
	return rc;
}

/* Primary key and replica identity: the move applies changes by primary
 * key and needs the key column in every decoded change. */
static int check_identity(const struct mtable *mt, char ident, struct sr_errmsg *em)
{
	bool has_pk = false;
	for (size_t i = 0; i < mt->n_cols; i++)
		has_pk |= mt->cols[i].in_pk;
	if (!has_pk)
		return sr_errmsg_set(em, SR_EINVAL,
				     "table %s has no primary key on the source; a move applies "
				     "changes by primary key: add one (on every shard), then rerun",
				     mt->qname);
	/* Changes are applied by primary key on the target, which also holds
	 * its own rows: the key column must be in the primary key, so that a
	 * primary key value can only belong to a row of the range. */
	if (!mt->cols[mt->key_col].in_pk)
		return sr_errmsg_set(em, SR_EINVAL,
				     "table %s: the key column %s is not part of its primary key, "
				     "so a primary key value of the range could also name a row the "
				     "target owns; make %s part of the primary key (on every shard)",
				     mt->qname, mt->t->key_column, mt->t->key_column);
	if (ident == 'f' || ident == 'd')
		return 0;
	return sr_errmsg_set(em, SR_EINVAL,
			     "table %s has replica identity '%c' on the source: changes would not "
			     "carry its primary key; run ALTER TABLE %s REPLICA IDENTITY DEFAULT "
			     "(or FULL) on the source",
			     mt->qname, ident, mt->qname);
}

static int describe_one(PGconn *src, PGconn *dst, const struct sm_table *t, int32_t dst_id,
			struct mtable *mt, struct sr_errmsg *em)
{
	mt->t = t;
	char *qs = quote_ident(src, t->schema), *qt = quote_ident(src, t->name);
	size_t len = (qs ? strlen(qs) : 0) + (qt ? strlen(qt) : 0) + 2;
	mt->qname = qs && qt ? malloc(len) : NULL;
	if (mt->qname)
		snprintf(mt->qname, len, "%s.%s", qs, qt);
	free(qs);
	free(qt);
	if (!mt->qname)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	char oid[32], ident;
	int found;
	int rc = rel_lookup(src, t, oid, sizeof(oid), &ident, &mt->est_rows, &found, em);
	if (rc)
		return rc;
	if (!found)
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "sharded table %s does not exist on the source shard; create "
				     "it there (or remove it from the catalog), then rerun",
				     mt->qname);
	if ((rc = load_cols(src, oid, mt, em)))
		return rc;
	mt->key_col = mt->n_cols;
	for (size_t i = 0; i < mt->n_cols; i++)
		if (strcmp(mt->cols[i].name, t->key_column) == 0)
			mt->key_col = i;
	if (mt->key_col == mt->n_cols)
		return sr_errmsg_set(em, SR_ENOTFOUND, "table %s has no key column %s on the source",
				     mt->qname, t->key_column);
	mt->key_type = strdup(mt->cols[mt->key_col].type);
	mt->col_list = join_cols(mt, false);
	mt->pk_list = join_cols(mt, true);
	if (!mt->key_type || !mt->col_list || !mt->pk_list)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	if ((rc = check_identity(mt, ident, em)))
		return rc;
	return compare_target(dst, mt, dst_id, em);
}

int mdb_describe(PGconn *src, PGconn *dst, const struct sm_map *m, int32_t dst_id,
		 struct mtable **out, size_t *n, struct sr_errmsg *em)
{
	struct mtable *ts = calloc(m->n_tables ? m->n_tables : 1, sizeof(*ts));
	if (!ts)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	int rc = m->n_tables ? 0
			     : sr_errmsg_set(em, SR_ENOTFOUND,
					     "no sharded tables in the catalog: nothing to move");
	for (size_t i = 0; !rc && i < m->n_tables; i++)
		rc = describe_one(src, dst, &m->tables[i], dst_id, &ts[i], em);
	if (rc) {
		mdb_tables_free(ts, m->n_tables);
		return rc;
	}
	*out = ts;
	*n = m->n_tables;
	return 0;
}

int mdb_check_source(PGconn *src, int32_t shard, struct sr_errmsg *em)
{
	char v[64];
	int rc = mdb_value(src, "SHOW wal_level", 0, NULL, "read wal_level", v, sizeof(v), em);
	if (rc)
		return rc;
	if (strcmp(v, "logical") != 0)
		return sr_errmsg_set(em, SR_EINVAL,
				     "source shard %d has wal_level=%s; a move streams changes by "
				     "logical decoding: set wal_level = logical in its "
				     "postgresql.conf (ALTER SYSTEM SET wal_level = logical) and "
				     "restart it, then rerun",
				     shard, v);
	rc = mdb_value(src,
		       "SELECT current_setting('max_replication_slots')::int"
		       " - (SELECT count(*) FROM pg_catalog.pg_replication_slots)",
		       0, NULL, "count replication slots", v, sizeof(v), em);
	if (rc)
		return rc;
	if (atoi(v) < 1)
		return sr_errmsg_set(em, SR_EINVAL,
				     "source shard %d has no free replication slot; raise "
				     "max_replication_slots (restart) or drop an unused slot",
				     shard);
	return 0;
}

/* ---- publication and slot ------------------------------------------------ */

int mdb_create_pub(PGconn *src, const char *pub, const struct mtable *ts, size_t n,
		   struct sr_errmsg *em)
{
	size_t len = 128 + strlen(pub) * 2;
	for (size_t i = 0; i < n; i++)
		len += strlen(ts[i].qname) + 2;
	char *sql = malloc(len), *qp = quote_ident(src, pub);
	if (!sql || !qp) {
		free(sql);
		free(qp);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	int o = snprintf(sql, len, "CREATE PUBLICATION %s FOR TABLE ", qp);
	for (size_t i = 0; i < n; i++)
		o += snprintf(sql + o, len - (size_t)o, "%s%s", i ? ", " : "", ts[i].qname);
	/* changes of a partition arrive under the partitioned table's name */
	snprintf(sql + o, len - (size_t)o, " WITH (publish_via_partition_root = true)");
	int rc = mdb_cmd(src, sql, 0, NULL, "create the publication on the source", em);
	free(sql);
	free(qp);
	return rc;
}

int mdb_drop_slot_pub(PGconn *src, const char *slot, const char *pub, struct sr_errmsg *em)
{
	const char *v[] = {slot};
	for (int attempt = 0; slot && *slot; attempt++) {
		PGresult *res = mdb_exec(src,
					 "SELECT active, active_pid FROM pg_catalog.pg_replication_slots"
					 " WHERE slot_name = $1",
					 1, v, "look up the slot", em);
		if (!res)
			return SR_EDB;
		bool exists = PQntuples(res) == 1;
		bool active = exists && PQgetvalue(res, 0, 0)[0] == 't';
		char pid[16] = "";
		if (active)
			snprintf(pid, sizeof(pid), "%s", PQgetvalue(res, 0, 1));
		PQclear(res);
		if (!exists)
			break;
		if (!active) {
			if (mdb_cmd(src, "SELECT pg_catalog.pg_drop_replication_slot($1)", 1, v,
				    "drop the replication slot", em) == 0)
				break;
		} else if (attempt >= 100) {
			return sr_errmsg_set(em, SR_EBUSY,
					     "replication slot %s is still in use by pid %s; stop "
					     "that process, then rerun",
					     slot, pid);
		} else if (attempt == 20) {
			/* The walsender of a killed shardctl that the server has not
			 * noticed yet: the slot is ours, end it. */
			const char *pv[] = {pid};
			PQclear(PQexecParams(src, "SELECT pg_catalog.pg_terminate_backend($1::int)",
					     1, NULL, pv, NULL, NULL, 0));
		}
		usleep(100 * 1000);
	}
	if (!pub || !*pub)
		return 0;
	char *qp = quote_ident(src, pub);
	if (!qp)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	char sql[512];
	snprintf(sql, sizeof(sql), "DROP PUBLICATION IF EXISTS %s", qp);
	free(qp);
	return mdb_cmd(src, sql, 0, NULL, "drop the publication", em);
}

/* ---- copy, checksums, counts ------------------------------------------- */

static int copy_out_start(PGconn *c, const struct mtable *mt, const char *cols,
			  struct sr_errmsg *em)
{
	size_t len = strlen(mt->qname) + strlen(cols) + 40;
	char *sql = malloc(len);
	if (!sql)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	/* COPY (SELECT ...) also works for partitioned tables */
	snprintf(sql, len, "COPY (SELECT %s FROM %s) TO STDOUT", cols, mt->qname);
	PGresult *res = PQexec(c, sql);
	free(sql);
	int ok = PQresultStatus(res) == PGRES_COPY_OUT;
	if (!ok) {
		char msg[SR_ERRMSG_LEN];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
		one_line(msg);
		sr_errmsg_set(em, SR_EDB, "COPY %s out: %s", mt->qname, msg);
	}
	PQclear(res);
	return ok ? 0 : SR_EDB;
}

/* After PQgetCopyData returned -1 (or -2): the COPY's final result. */
static int copy_out_end(PGconn *c, const struct mtable *mt, int last, struct sr_errmsg *em)
{
	int rc = 0;
	PGresult *res;
	while ((res = PQgetResult(c))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc) {
			char msg[SR_ERRMSG_LEN];
			snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
			one_line(msg);
			rc = sr_errmsg_set(em, SR_EDB, "COPY %s out: %s", mt->qname, msg);
		}
		PQclear(res);
	}
	if (last == -2 && !rc) {
		char msg[SR_ERRMSG_LEN];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
		one_line(msg);
		rc = sr_errmsg_set(em, SR_EDB, "COPY %s out: %s", mt->qname, msg);
	}
	return rc;
}

static int copy_in_end(PGconn *dst, const struct mtable *mt, const char *abort_msg,
		       struct sr_errmsg *em)
{
	int rc = 0;
	if (PQputCopyEnd(dst, abort_msg) != 1)
		rc = sr_errmsg_set(em, SR_EDB, "COPY %s in: %s", mt->qname, PQerrorMessage(dst));
	PGresult *res;
	while ((res = PQgetResult(dst))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc && !abort_msg) {
			char msg[SR_ERRMSG_LEN];
			snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
			one_line(msg);
			rc = sr_errmsg_set(em, SR_EDB, "COPY %s into the target: %s", mt->qname,
					   msg);
		}
		PQclear(res);
	}
	return rc;
}

int mdb_copy_table(PGconn *src, PGconn *dst, const struct mtable *mt, const struct mrange *r,
		   struct mprogress *p, struct sr_errmsg *em)
{
	size_t len = strlen(mt->qname) + strlen(mt->col_list) + 40;
	char *sql = malloc(len);
	if (!sql)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	snprintf(sql, len, "COPY %s (%s) FROM STDIN", mt->qname, mt->col_list);
	PGresult *res = PQexec(dst, sql);
	free(sql);
	int ok = PQresultStatus(res) == PGRES_COPY_IN;
	PQclear(res);
	if (!ok)
		return sr_errmsg_set(em, SR_EDB, "COPY %s into the target: %s", mt->qname,
				     PQerrorMessage(dst));
	int rc = copy_out_start(src, mt, mt->col_list, em);
	if (rc) {
		(void)copy_in_end(dst, mt, "source failed", em);
		return rc;
	}
	char *buf;
	int n;
	while ((n = PQgetCopyData(src, &buf, 0)) > 0) {
		const char *f;
		size_t flen;
		uint64_t h;
		if (!rc && mdb_copy_field(buf, (size_t)n, mt->key_col, &f, &flen) &&
		    mdb_key_hash(mt->t->key_type, f, flen, &h) && mrange_has(r, h)) {
			if (PQputCopyData(dst, buf, n) != 1)
				rc = sr_errmsg_set(em, SR_EDB, "COPY %s into the target: %s",
						   mt->qname, PQerrorMessage(dst));
			p->rows++;
			p->bytes += (uint64_t)n;
			if ((p->rows & 1023) == 0)
				mprogress_tick(p, false);
		}
		PQfreemem(buf);
	}
	int rc2 = copy_out_end(src, mt, n, em);
	int rc3 = copy_in_end(dst, mt, rc || rc2 ? "source failed" : NULL, em);
	return rc ? rc : rc2 ? rc2 : rc3;
}

int mdb_range_sum(PGconn *c, const struct mtable *mt, const struct mrange *r, uint64_t *rows,
		  uint64_t *sum, struct sr_errmsg *em)
{
	int rc = copy_out_start(c, mt, mt->col_list, em);
	if (rc)
		return rc;
	char *buf;
	int n;
	*rows = *sum = 0;
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		const char *f;
		size_t flen;
		uint64_t h;
		if (mdb_copy_field(buf, (size_t)n, mt->key_col, &f, &flen) &&
		    mdb_key_hash(mt->t->key_type, f, flen, &h) && mrange_has(r, h)) {
			(*rows)++;
			*sum += sm_hash_bytes(buf, (size_t)n);
		}
		PQfreemem(buf);
	}
	return copy_out_end(c, mt, n, em);
}

int mdb_range_count(PGconn *c, const struct mtable *ts, size_t n, const struct mrange *r,
		    uint64_t *rows, struct sr_errmsg *em)
{
	*rows = 0;
	for (size_t i = 0; i < n; i++) {
		const struct mtable *mt = &ts[i];
		int rc = copy_out_start(c, mt, mt->cols[mt->key_col].qname, em);
		if (rc)
			return rc;
		char *buf;
		int len;
		while ((len = PQgetCopyData(c, &buf, 0)) > 0) {
			uint64_t h;
			size_t l = (size_t)len;
			if (l && buf[l - 1] == '\n')
				l--;
			if (mdb_key_hash(mt->t->key_type, buf, l, &h) && mrange_has(r, h))
				(*rows)++;
			PQfreemem(buf);
		}
		if ((rc = copy_out_end(c, mt, len, em)))
			return rc;
	}
	return 0;
}

/* ---- deleting a range's rows ------------------------------------------- */

/* A growing array literal {"k1","k2",...} of keys. */
struct keybatch {
	char *s;
	size_t len, cap;
	int n;
};

static int kb_add(struct keybatch *b, const char *k, size_t n)
{
	if (b->len + 2 * n + 8 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + 2 * n + 8)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s)
			return SR_ENOMEM;
		b->s = s;
		b->cap = cap;
	}
	b->s[b->len++] = b->n ? ',' : '{';
	b->s[b->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (k[i] == '"' || k[i] == '\\')
			b->s[b->len++] = '\\';
		b->s[b->len++] = k[i];
	}
	b->s[b->len++] = '"';
	b->n++;
	return 0;
}

static int kb_flush(PGconn *del, const struct mtable *mt, struct keybatch *b, uint64_t *deleted,
		    struct sr_errmsg *em)
{
	if (!b->n)
		return 0;
	b->s[b->len++] = '}';
	b->s[b->len] = '\0';
	char sql[1024];
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = ANY ($1::%s[])", mt->qname,
		 mt->cols[mt->key_col].qname, mt->key_type);
	const char *v[] = {b->s};
	PGresult *res = mdb_exec(del, sql, 1, v, "delete moved rows", em);
	b->len = 0;
	b->n = 0;
	if (!res)
		return SR_EDB;
	*deleted += strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

/* Scan one table's keys on scan, delete the in-range ones through del. */
static int delete_table(PGconn *scan, PGconn *del, const struct mtable *mt,
			const struct mrange *r, int batch, int pause_ms, uint64_t *deleted,
			void (*fail_hook)(void), struct sr_errmsg *em)
{
	int rc = copy_out_start(scan, mt, mt->cols[mt->key_col].qname, em);
	if (rc)
		return rc;
	struct keybatch b = {0};
	char *buf, *key = NULL;
	int len;
	while ((len = PQgetCopyData(scan, &buf, 0)) > 0) {
		uint64_t h;
		size_t l = (size_t)len;
		if (l && buf[l - 1] == '\n')
			l--;
		if (!rc && mdb_key_hash(mt->t->key_type, buf, l, &h) && mrange_has(r, h)) {
			char *k = realloc(key, l + 1);
			if (!k)
				rc = sr_errmsg_set(em, SR_ENOMEM, "out of memory");
			key = k ? k : key;
			if (!rc && kb_add(&b, key, mdb_copy_unescape(buf, l, key)))
				rc = sr_errmsg_set(em, SR_ENOMEM, "out of memory");
			if (!rc && b.n >= batch) {
				rc = kb_flush(del, mt, &b, deleted, em);
				if (fail_hook)
					fail_hook();
				if (pause_ms > 0)
					usleep((useconds_t)pause_ms * 1000);
			}
		}
		PQfreemem(buf);
	}
	int rc2 = copy_out_end(scan, mt, len, em);
	if (!rc && !rc2)
		rc = kb_flush(del, mt, &b, deleted, em);
	free(b.s);
	free(key);
	return rc ? rc : rc2;
}

int mdb_delete_range(const char *conninfo, const struct mtable *ts, size_t n,
		     const struct mrange *r, int batch, int pause_ms, uint64_t *deleted,
		     void (*fail_hook)(void), struct sr_errmsg *em)
{
	PGconn *scan = mdb_connect(conninfo, false, em);
	if (!scan)
		return SR_EDB;
	PGconn *del = mdb_connect(conninfo, false, em);
	if (!del) {
		PQfinish(scan);
		return SR_EDB;
	}
	/* Skip FK and user triggers where we may (superuser): these rows are
	 * copies, not new business events. */
	PQclear(PQexec(del, "SET session_replication_role = replica"));
	int rc = mdb_session_setup(scan, em);
	for (size_t i = 0; !rc && i < n; i++)
		rc = delete_table(scan, del, &ts[i], r, batch, pause_ms, deleted, fail_hook, em);
	PQfinish(scan);
	PQfinish(del);
	return rc;
}
