/*
 * cmd_verify.c - `shardctl verify [--json] [--table T] [--list]` (SPEC §5):
 * report every row stored on a shard that does not own its key.
 *
 * Loads the map from the catalog, then for every shard (its primary, as in
 * the catalog; user and password from PGUSER/PGPASSWORD/PGPASSFILE as libpq
 * does) and every sharded table streams the key column with
 * COPY (SELECT key FROM schema.table) TO STDOUT (text format) inside one
 * REPEATABLE READ READ ONLY transaction per shard, so no table is ever held
 * in memory. Each key is made canonical (sm_key_from_text), hashed and
 * looked up; a key whose owner is another shard is misplaced, a NULL key
 * (or one that is not a valid key of the table's type) is "unknown": it
 * cannot be routed at all. Prints per shard and table the rows scanned, the
 * misplaced and unknown counts, up to VERIFY_SAMPLES sample keys (every one
 * with --list, streamed as found) and the scan rate; a total at the end.
 *
 * Exit 0 when every row is where the map says; 1 when a row is misplaced or
 * unknown, a shard or table could not be scanned (missing table,
 * unreachable shard, SQL error) or the map changed during the scan; 2 on
 * bad usage. Passwords never appear in the output. Single-threaded.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "move.h"
#include "shardmap/catalog.h"
#include "shardmap/hash.h"

int cmd_verify(struct ctl *ctl, int argc, char **argv);

#define VERIFY_SAMPLES 10   /* sample misplaced keys kept per shard and table */
#define VERIFY_KEY_SHOWN 64 /* bytes of a sample key kept (the rest is cut) */

static const char verify_help[] =
    "usage: shardctl verify [--table [SCHEMA.]TABLE] [--list] [--json]\n\n"
    "Scan the key column of every sharded table on every shard's primary and\n"
    "report each row stored on a shard that does not own its key (misplaced),\n"
    "and each row whose key is NULL or invalid (unknown: it cannot be routed).\n"
    "Prints per shard and table the rows scanned, the counts, up to 10 sample\n"
    "keys with their hash and owning shard, and the scan rate.\n\n"
    "  --table T  only this sharded table\n"
    "  --list     every misplaced key, not just 10 samples (JSON: \"keys\")\n"
    "  --json     one JSON document\n\n"
    "Shards are reached with the conninfo in the catalog; the user and password\n"
    "come from PGUSER, PGPASSWORD or PGPASSFILE as for psql.\n"
    "exit status: 0 nothing misplaced, 1 rows misplaced or unknown, or a shard\n"
    "or table could not be scanned, 2 bad usage\n";

enum vt_status {
	VT_OK = 0,
	VT_MISSING = 1, /* the table does not exist on the shard */
	VT_ERROR = 2,	/* the scan failed (the error says why) */
};

struct vsample {
	char key[VERIFY_KEY_SHOWN + 4]; /* "..." appended when cut */
	int unknown;			/* NULL (is_null) or not a valid key */
	int is_null;
	uint64_t hash;
	int32_t owner;
};

/* The result of one table on one shard. */
struct vtable {
	enum vt_status status;
	char error[SR_ERRMSG_LEN];
	uint64_t rows;
	uint64_t misplaced; /* owned by another shard */
	uint64_t unknown;   /* NULL or invalid key */
	double secs;
	size_t n_samples;
	struct vsample samples[VERIFY_SAMPLES];
};

struct vrun {
	const struct ctl *ctl;
	const struct sm_map *m;
	const struct sm_table *only; /* --table, or NULL for all */
	int list;		     /* --list */
	struct ctl_json j;
	char *buf; /* unescaped key, reused for every row */
	size_t cap;
	uint64_t rows, misplaced, unknown;
	unsigned failed_tables, failed_shards;
	double secs;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(uint64_t rows, double secs)
{
	return secs > 0 ? (double)rows / secs : 0.0;
}

static const char *status_name(enum vt_status s)
{
	switch (s) {
	case VT_OK:
		return "ok";
	case VT_MISSING:
		return "missing";
	case VT_ERROR:
		return "error";
	}
	return "error";
}

/* libpq's message on one line, without the trailing newline. */
static void pq_error(PGconn *c, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s", PQerrorMessage(c));
	size_t n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
}

/* ---- output ----------------------------------------------------------- */

/* A key for a text line: bytes outside printable ASCII as \xNN. */
static void print_key_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void out_key_json(struct ctl_json *j, const struct vsample *k, const char *key)
{
	json_obj(j, NULL);
	if (k->is_null)
		json_null(j, "key");
	else
		json_str(j, "key", key);
	if (k->unknown) {
		json_null(j, "hash");
		json_null(j, "shard");
		json_str(j, "reason", k->is_null ? "null key" : "invalid key");
	} else {
		json_hex(j, "hash", k->hash);
		json_int(j, "shard", k->owner);
	}
	json_obj_end(j);
}

static void out_key_text(const struct vsample *k, const char *key, size_t n)
{
	printf("    key ");
	if (k->is_null) {
		printf("NULL: unknown, a NULL key cannot be routed\n");
		return;
	}
	print_key_text(key, n);
	if (k->unknown)
		printf(": unknown, not a valid key of this type\n");
	else
		printf("  hash %016" PRIx64 "  belongs to shard %" PRId32 "\n", k->hash, k->owner);
}

static void out_shard_begin(struct vrun *v, const struct sm_shard *s)
{
	if (v->ctl->json) {
		json_obj(&v->j, NULL);
		json_shard_conninfo(&v->j, s);
		json_arr(&v->j, "tables");
		return;
	}
	char disp[1024];
	ctl_conninfo_display(s->primary, disp, sizeof(disp));
	printf("shard %" PRId32 " (%s):\n", s->id, disp);
}

static void out_shard_end(struct vrun *v, const char *error)
{
	if (v->ctl->json) {
		json_arr_end(&v->j);
		json_bool(&v->j, "reachable", error == NULL);
		json_str(&v->j, "error", error);
		json_obj_end(&v->j);
	} else if (error) {
		printf("  UNREACHABLE: %s\n", error);
	}
}

static void out_table_begin(struct vrun *v, const struct sm_table *t)
{
	if (v->ctl->json) {
		json_obj(&v->j, NULL);
		json_str(&v->j, "schema", t->schema);
		json_str(&v->j, "table", t->name);
		json_str(&v->j, "key_column", t->key_column);
		json_str(&v->j, "key_type", sm_key_type_name(t->key_type));
		if (v->list)
			json_arr(&v->j, "keys");
	} else if (v->list) {
		printf("  %s.%s: misplaced keys\n", t->schema, t->name);
	}
}

static void out_table_json(struct vrun *v, const struct vtable *vt)
{
	struct ctl_json *j = &v->j;
	if (v->list)
		json_arr_end(j);
	json_str(j, "status", status_name(vt->status));
	json_str(j, "error", vt->status == VT_OK ? NULL : vt->error);
	json_uint(j, "rows", vt->rows);
	json_uint(j, "misplaced", vt->misplaced);
	json_uint(j, "unknown", vt->unknown);
	json_double(j, "seconds", vt->secs);
	json_double(j, "rows_per_s", rate(vt->rows, vt->secs));
	json_arr(j, "samples");
	for (size_t i = 0; i < vt->n_samples; i++)
		out_key_json(j, &vt->samples[i], vt->samples[i].key);
	json_arr_end(j);
	json_obj_end(j);
}

static void out_table_text(const struct vrun *v, const struct sm_table *t, const struct vtable *vt)
{
	printf("  %s.%s (%s %s): ", t->schema, t->name, t->key_column,
	       sm_key_type_name(t->key_type));
	if (vt->status != VT_OK) {
		printf("%s: %s\n", vt->status == VT_MISSING ? "MISSING" : "ERROR", vt->error);
		if (vt->rows == 0)
			return;
		printf("    before the failure: ");
	}
	printf("%" PRIu64 " rows, %" PRIu64 " misplaced, %" PRIu64
	       " unknown, %.2f s (%.0f rows/s)\n",
	       vt->rows, vt->misplaced, vt->unknown, vt->secs, rate(vt->rows, vt->secs));
	if (v->list)
		return;
	for (size_t i = 0; i < vt->n_samples; i++)
		out_key_text(&vt->samples[i], vt->samples[i].key, strlen(vt->samples[i].key));
	uint64_t bad = vt->misplaced + vt->unknown;
	if (bad > vt->n_samples)
		printf("    ... and %" PRIu64 " more; `shardctl verify --list` prints every one\n",
		       bad - (uint64_t)vt->n_samples);
}

/* ---- classifying keys ------------------------------------------------- */

/* Remember a bad key as a sample and, with --list, print it now. */
static void key_bad(struct vrun *v, struct vtable *vt, struct vsample *k, const char *s, size_t n)
{
	if (k->unknown)
		vt->unknown++;
	else
		vt->misplaced++;
	if (v->list) {
		if (v->ctl->json) {
			char *z = v->buf; /* holds n + 1 bytes (buf_reserve) */
			if (s != z)
				memcpy(z, s, n);
			z[n] = '\0';
			out_key_json(&v->j, k, z);
		} else {
			out_key_text(k, s, n);
		}
	}
	if (vt->n_samples >= VERIFY_SAMPLES)
		return;
	size_t keep = n;
	if (keep > VERIFY_KEY_SHOWN) { /* cut at a UTF-8 character boundary */
		keep = VERIFY_KEY_SHOWN;
		while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
			keep--;
	}
	memcpy(k->key, s, keep);
	memcpy(k->key + keep, keep < n ? "..." : "", keep < n ? 4 : 1);
	vt->samples[vt->n_samples++] = *k;
}

/* Classify one COPY text row (without its newline) of table t on shard. */
static void verify_key(struct vrun *v, const struct sm_table *t, int32_t shard, const char *s,
		       size_t n, struct vtable *vt)
{
	struct vsample k;
	vt->rows++;
	k.is_null = n == 2 && s[0] == '\\' && s[1] == 'N';
	k.unknown = k.is_null;
	k.hash = 0;
	k.owner = -1;
	if (k.is_null) {
		key_bad(v, vt, &k, "", 0);
		return;
	}
	if (memchr(s, '\\', n)) {
		n = mdb_copy_unescape(s, n, v->buf);
		s = v->buf;
	}
	struct sm_key key;
	struct sr_errmsg em;
	if (sm_key_from_text(t->key_type, s, n, &key, &em) != 0) {
		k.unknown = 1;
		key_bad(v, vt, &k, s, n);
		return;
	}
	k.hash = sm_hash_key(&key);
	const struct sm_range *r = sm_map_lookup(v->m, k.hash);
	if (r && r->shard_id == shard)
		return;
	if (r)
		k.owner = r->shard_id;
	else
		k.unknown = 1;
	key_bad(v, vt, &k, s, n);
}

/* ---- scanning --------------------------------------------------------- */

/* 1 if the table exists on the shard, 0 if not, -1 on error (vt->error). */
static int table_exists(PGconn *c, const struct sm_table *t, struct vtable *vt)
{
	const char *p[] = {t->schema, t->name};
	PGresult *res =
	    PQexecParams(c,
			 "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
			 " n ON n.oid = c.relnamespace WHERE n.nspname = $1"
			 " AND c.relname = $2",
			 2, NULL, p, NULL, NULL, 0);
	int rc = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		rc = PQntuples(res) > 0;
	else
		pq_error(c, vt->error, sizeof(vt->error));
	PQclear(res);
	return rc;
}

/* Make sure buf holds n + 1 bytes; 0 or -1 on ENOMEM. */
static int buf_reserve(struct vrun *v, size_t n)
{
	if (n + 1 <= v->cap)
		return 0;
	size_t cap = v->cap ? v->cap : 256;
	while (cap < n + 1)
		cap *= 2;
	char *b = realloc(v->buf, cap);
	if (!b)
		return -1;
	v->buf = b;
	v->cap = cap;
	return 0;
}

static int copy_start(PGconn *c, const struct sm_table *t, struct vtable *vt)
{
	char *sch = PQescapeIdentifier(c, t->schema, strlen(t->schema));
	char *tab = PQescapeIdentifier(c, t->name, strlen(t->name));
	char *col = PQescapeIdentifier(c, t->key_column, strlen(t->key_column));
	size_t sz =
	    (sch ? strlen(sch) : 0) + (tab ? strlen(tab) : 0) + (col ? strlen(col) : 0) + 64;
	char *sql = sch && tab && col ? malloc(sz) : NULL;
	int ok = 0;
	if (sql) {
		snprintf(sql, sz, "COPY (SELECT %s FROM %s.%s) TO STDOUT", col, sch, tab);
		PGresult *res = PQexec(c, sql);
		ok = PQresultStatus(res) == PGRES_COPY_OUT;
		if (!ok)
			pq_error(c, vt->error, sizeof(vt->error));
		PQclear(res);
	} else {
		snprintf(vt->error, sizeof(vt->error), "out of memory");
	}
	free(sql);
	PQfreemem(sch);
	PQfreemem(tab);
	PQfreemem(col);
	return ok ? 0 : -1;
}

/* Stream the key column of t; vt->status VT_ERROR on failure. */
static void scan_copy(struct vrun *v, PGconn *c, int32_t shard, const struct sm_table *t,
		      struct vtable *vt)
{
	if (copy_start(c, t, vt) != 0) {
		vt->status = VT_ERROR;
		return;
	}
	char *row = NULL;
	int len;
	int oom = 0;
	while ((len = PQgetCopyData(c, &row, 0)) > 0) {
		size_t n = (size_t)len;
		if (n > 0 && row[n - 1] == '\n')
			n--;
		if (!oom && buf_reserve(v, n) != 0)
			oom = 1;
		if (!oom)
			verify_key(v, t, shard, row, n, vt);
		PQfreemem(row);
	}
	if (len == -2)
		pq_error(c, vt->error, sizeof(vt->error));
	PGresult *res;
	while ((res = PQgetResult(c)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && len != -2) {
			len = -2;
			pq_error(c, vt->error, sizeof(vt->error));
		}
		PQclear(res);
	}
	if (oom)
		snprintf(vt->error, sizeof(vt->error), "out of memory");
	if (oom || len == -2)
		vt->status = VT_ERROR;
}

static int exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	return ok ? 0 : -1;
}

static const char begin_sql[] = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

static void scan_table(struct vrun *v, PGconn *c, const struct sm_shard *s,
		       const struct sm_table *t, struct vtable *vt)
{
	double t0 = now_s();
	int ex = table_exists(c, t, vt);
	if (ex == 0) {
		vt->status = VT_MISSING;
		snprintf(vt->error, sizeof(vt->error),
			 "table %s.%s does not exist on shard %" PRId32
			 "; create it there with the same definition as on the other shards"
			 " (e.g. from `pg_dump --schema-only -t %s.%s` of another shard), then"
			 " rerun verify",
			 t->schema, t->name, s->id, t->schema, t->name);
	} else if (ex < 0) {
		vt->status = VT_ERROR;
	} else {
		scan_copy(v, c, s->id, t, vt);
	}
	vt->secs = now_s() - t0;
	if (vt->status == VT_ERROR) /* the transaction is aborted: start another */
		if (exec_ok(c, "ROLLBACK") != 0 || exec_ok(c, begin_sql) != 0)
			ctl_warn("shard %" PRId32 ": cannot restart the transaction: %s", s->id,
				 PQerrorMessage(c));
}

static void table_done(struct vrun *v, const struct sm_shard *s, const struct sm_table *t,
		       const struct vtable *vt)
{
	v->rows += vt->rows;
	v->misplaced += vt->misplaced;
	v->unknown += vt->unknown;
	v->secs += vt->secs;
	if (vt->status != VT_OK) {
		v->failed_tables++;
		ctl_warn("cannot scan %s.%s on shard %" PRId32 ": %s", t->schema, t->name, s->id,
			 vt->error);
	}
	if (v->ctl->json)
		out_table_json(v, vt);
	else
		out_table_text(v, t, vt);
}

static void verify_shard(struct vrun *v, const struct sm_shard *s)
{
	struct sr_errmsg em = {{0}};
	out_shard_begin(v, s);
	PGconn *c = ctl_connect(s->primary, 10, &em);
	if (c && exec_ok(c, begin_sql) != 0)
		pq_error(c, em.text, sizeof(em.text));
	if (!c || PQtransactionStatus(c) != PQTRANS_INTRANS) {
		char disp[1024];
		ctl_conninfo_display(s->primary, disp, sizeof(disp));
		v->failed_shards++;
		ctl_warn("cannot scan shard %" PRId32 " (%s): %s; check that its primary is up "
			 "and that PGUSER/PGPASSWORD (or PGPASSFILE) give access to it",
			 s->id, disp, em.text);
		out_shard_end(v, em.text);
		PQfinish(c);
		return;
	}
	for (size_t i = 0; i < v->m->n_tables; i++) {
		const struct sm_table *t = &v->m->tables[i];
		if (v->only && v->only != t)
			continue;
		struct vtable *vt = calloc(1, sizeof(*vt));
		if (!vt) {
			v->failed_tables++;
			ctl_warn("out of memory");
			continue;
		}
		out_table_begin(v, t);
		scan_table(v, c, s, t, vt);
		table_done(v, s, t, vt);
		free(vt);
	}
	(void)exec_ok(c, "COMMIT");
	PQfinish(c);
	out_shard_end(v, NULL);
}

/* ---- the command ------------------------------------------------------ */

static int verify_args(struct ctl *ctl, int argc, char **argv, const char **table, int *list)
{
	struct ctl_args a;
	ctl_args_init(&a, argc, argv, "verify");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--table", table))
			continue;
		if (ctl_args_flag(&a, "--list")) {
			*list = 1;
			continue;
		}
		return ctl_args_unknown(&a);
	}
	int rc;
	if (ctl_args_over(&a, ctl, &rc))
		return rc;
	if (*table && !**table)
		return ctl_usage("--table needs a table name, e.g. --table orders");
	return CTL_EXIT_OK;
}

/* --table [schema.]name: the sharded table, or NULL (unquoted names fold to
 * lower case when the exact name is not found). */
static const struct sm_table *find_table(const struct sm_map *m, const char *arg)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "%s", arg);
	for (int pass = 0; pass < 2; pass++) {
		char *dot = strchr(buf, '.');
		if (dot)
			*dot = '\0';
		const struct sm_table *t =
		    dot ? sm_map_find_table(m, buf, dot + 1) : sm_map_find_table(m, NULL, buf);
		if (dot)
			*dot = '.';
		if (t)
			return t;
		for (char *p = buf; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	return NULL;
}

static void verify_begin(struct vrun *v)
{
	for (size_t i = 0; i < v->m->n_ranges; i++)
		if (v->m->ranges[i].state == SM_RANGE_FROZEN)
			ctl_warn("range %016" PRIx64
				 " is frozen (a move is cutting over): its rows "
				 "may be reported on both shards until the move ends",
				 v->m->ranges[i].lo);
	size_t nt = v->only ? 1 : v->m->n_tables;
	if (v->ctl->json) {
		json_begin(&v->j);
		json_uint(&v->j, "epoch", v->m->epoch);
		json_arr(&v->j, "shards");
	} else {
		printf("verify: map epoch %" PRIu64 ", %zu shards, %zu sharded tables\n",
		       v->m->epoch, v->m->n_shards, nt);
	}
}

/* The totals; the exit code. changed: the map's epoch moved meanwhile. */
static int verify_end(struct vrun *v, int changed, uint64_t epoch_now)
{
	int ok = !v->misplaced && !v->unknown && !v->failed_tables && !v->failed_shards && !changed;
	if (v->ctl->json) {
		json_arr_end(&v->j);
		json_obj(&v->j, "total");
		json_uint(&v->j, "rows", v->rows);
		json_uint(&v->j, "misplaced", v->misplaced);
		json_uint(&v->j, "unknown", v->unknown);
		json_uint(&v->j, "failed_tables", v->failed_tables);
		json_uint(&v->j, "failed_shards", v->failed_shards);
		json_double(&v->j, "seconds", v->secs);
		json_double(&v->j, "rows_per_s", rate(v->rows, v->secs));
		json_obj_end(&v->j);
		json_bool(&v->j, "map_changed", changed);
		json_bool(&v->j, "ok", ok);
		json_end(&v->j);
	} else {
		printf("total: %" PRIu64 " rows scanned in %.2f s (%.0f rows/s): %" PRIu64
		       " misplaced, %" PRIu64 " unknown, %u tables and %u shards not scanned\n",
		       v->rows, v->secs, rate(v->rows, v->secs), v->misplaced, v->unknown,
		       v->failed_tables, v->failed_shards);
	}
	fflush(stdout);
	if (changed)
		ctl_warn("the map changed during verify (epoch %" PRIu64 " -> %" PRIu64
			 "); rerun verify when no change is in progress",
			 v->m->epoch, epoch_now);
	if (v->misplaced || v->unknown)
		ctl_warn("%" PRIu64 " rows misplaced and %" PRIu64 " with a NULL or invalid key; "
			 "move each misplaced row to the shard that owns its key (`--list` names "
			 "them) and fix or delete rows without a valid key",
			 v->misplaced, v->unknown);
	if (v->failed_tables || v->failed_shards)
		ctl_warn("%u tables and %u shards could not be scanned (see above)",
			 v->failed_tables, v->failed_shards);
	return ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int verify_run(struct vrun *v, PGconn *cat)
{
	if (v->m->n_ranges == 0)
		return ctl_fail("no shard map yet; create one with `shardctl map init --shards N`");
	verify_begin(v);
	for (size_t i = 0; i < v->m->n_shards; i++)
		verify_shard(v, &v->m->shards[i]);
	uint64_t epoch = v->m->epoch;
	struct sr_errmsg em = {{0}};
	if (sm_catalog_epoch(cat, &epoch, &em) != 0)
		ctl_warn("cannot re-read the map epoch to check it did not change: %s", em.text);
	return verify_end(v, epoch != v->m->epoch, epoch);
}

int cmd_verify(struct ctl *ctl, int argc, char **argv)
{
	const char *table = NULL;
	int list = 0;
	int rc = verify_args(ctl, argc, argv, &table, &list);
	if (ctl_args_done(ctl, rc, verify_help))
		return rc;
	struct sm_map *m = NULL;
	PGconn *cat = NULL;
	rc = ctl_load_map(ctl, NULL, &cat, &m);
	if (rc != CTL_EXIT_OK)
		return rc;
	struct vrun v = {.ctl = ctl, .m = m, .list = list};
	if (table && !(v.only = find_table(m, table)))
		rc = ctl_fail("'%s' is not a sharded table; `shardctl table list` shows them",
			      table);
	else if (buf_reserve(&v, 256) != 0)
		rc = ctl_fail("out of memory");
	else
		rc = verify_run(&v, cat);
	free(v.buf);
	PQfinish(cat);
	sm_map_free(m);
	return rc;
}
