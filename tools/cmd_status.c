/*
 * cmd_status.c - `shardctl status [--json]`: the epoch, the ranges with
 * owners and states, each shard (reachable or not, ranges and share of the
 * hash space, row count per sharded table on its primary, replication lag
 * in bytes from the primary's pg_stat_replication) and the registered
 * routers with their acknowledged epochs, running moves with their step
 * (and the last five finished ones). Unreachable shards and missing
 * tables are reported, never fatal. Single-threaded.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "shardmap/catalog.h"

static const char status_help[] =
    "usage: shardctl status [--json]\n\n"
    "Show the map (epoch, ranges, owners, states), every shard with its row\n"
    "counts per sharded table and its replicas' lag in bytes, and the routers\n"
    "with the epoch each has acknowledged. Shards are contacted with a 3 s\n"
    "connect timeout; unreachable ones are marked, not fatal.\n";

#define ROWS_MISSING (-1LL) /* table absent on that shard */
#define ROWS_ERROR (-2LL)   /* count failed */

struct shard_status {
	int reachable;
	char error[SR_ERRMSG_LEN];
	long long *rows; /* per table, or ROWS_* */
	PGresult *repl;	 /* application_name, client_addr, state, lag_bytes; may be NULL */
	size_t n_ranges;
	double share; /* fraction of the hash space */
};

static long long count_rows(PGconn *c, const struct sm_table *t)
{
	const char *v[] = {t->schema, t->name};
	PGresult *res = PQexecParams(c,
				     "SELECT 1 FROM pg_catalog.pg_tables"
				     " WHERE schemaname = $1 AND tablename = $2",
				     2, NULL, v, NULL, NULL, 0);
	int exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	int failed = PQresultStatus(res) != PGRES_TUPLES_OK;
	PQclear(res);
	if (!exists)
		return failed ? ROWS_ERROR : ROWS_MISSING;
	char *sch = PQescapeIdentifier(c, t->schema, strlen(t->schema));
	char *tab = PQescapeIdentifier(c, t->name, strlen(t->name));
	char sql[600];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.%s", sch ? sch : "", tab ? tab : "");
	PQfreemem(sch);
	PQfreemem(tab);
	res = PQexec(c, sql);
	long long n = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
			  ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
			  : ROWS_ERROR;
	PQclear(res);
	return n;
}

static void shard_probe(const struct sm_map *m, const struct sm_shard *s, struct shard_status *st)
{
	struct sr_errmsg em = {{0}};
	PGconn *c = ctl_connect(s->primary, 3, &em);
	if (!c) {
		snprintf(st->error, sizeof(st->error), "%s", em.text);
		return;
	}
	st->reachable = 1;
	for (size_t t = 0; t < m->n_tables; t++)
		st->rows[t] = count_rows(c, &m->tables[t]);
	st->repl = PQexec(c, "SELECT application_name, coalesce(client_addr::text, 'local'),"
			     " state, CASE WHEN pg_is_in_recovery() THEN NULL ELSE"
			     " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END"
			     " FROM pg_stat_replication ORDER BY application_name, client_port");
	if (PQresultStatus(st->repl) != PGRES_TUPLES_OK) {
		PQclear(st->repl);
		st->repl = NULL;
	}
	PQfinish(c);
}

static struct shard_status *status_collect(const struct sm_map *m)
{
	struct shard_status *st = calloc(m->n_shards + 1, sizeof(*st));
	if (!st)
		return NULL;
	for (size_t i = 0; i < m->n_shards; i++) {
		st[i].rows = calloc(m->n_tables + 1, sizeof(long long));
		if (!st[i].rows)
			continue; /* treated as unreachable */
		shard_probe(m, &m->shards[i], &st[i]);
		for (size_t r = 0; r < m->n_ranges; r++) {
			if (m->ranges[r].shard_id != m->shards[i].id)
				continue;
			st[i].n_ranges++;
			st[i].share += ((double)(m->ranges[r].hi - m->ranges[r].lo) + 1.0) /
				       18446744073709551616.0;
		}
	}
	return st;
}

static void status_free(const struct sm_map *m, struct shard_status *st)
{
	for (size_t i = 0; st && i < m->n_shards; i++) {
		free(st[i].rows);
		PQclear(st[i].repl);
	}
	free(st);
}

/* ---- JSON ------------------------------------------------------------- */

static void json_ranges(struct ctl_json *j, const struct sm_map *m)
{
	json_arr(j, "ranges");
	for (size_t i = 0; i < m->n_ranges; i++) {
		const struct sm_range *r = &m->ranges[i];
		json_obj(j, NULL);
		json_hex(j, "lo", r->lo);
		json_hex(j, "hi", r->hi);
		json_int(j, "shard", r->shard_id);
		json_str(j, "state", sm_range_state_name(r->state));
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void json_shard_detail(struct ctl_json *j, const struct sm_map *m,
			      const struct shard_status *st)
{
	char qn[300];
	json_obj(j, "rows");
	for (size_t t = 0; t < m->n_tables && st->reachable; t++) {
		snprintf(qn, sizeof(qn), "%s.%s", m->tables[t].schema, m->tables[t].name);
		if (st->rows[t] >= 0)
			json_int(j, qn, st->rows[t]);
		else
			json_null(j, qn);
	}
	json_obj_end(j);
	json_arr(j, "replication");
	for (int r = 0; st->repl && r < PQntuples(st->repl); r++) {
		json_obj(j, NULL);
		json_str(j, "application_name", PQgetvalue(st->repl, r, 0));
		json_str(j, "client_addr", PQgetvalue(st->repl, r, 1));
		json_str(j, "state", PQgetvalue(st->repl, r, 2));
		if (PQgetisnull(st->repl, r, 3))
			json_null(j, "lag_bytes");
		else
			json_int(j, "lag_bytes", strtoll(PQgetvalue(st->repl, r, 3), NULL, 10));
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void json_shards(struct ctl_json *j, const struct sm_map *m, const struct shard_status *st)
{
	json_arr(j, "shards");
	for (size_t i = 0; i < m->n_shards; i++) {
		json_obj(j, NULL);
		json_shard_conninfo(j, &m->shards[i]);
		json_int(j, "ranges", (long long)st[i].n_ranges);
		json_double(j, "share", st[i].share);
		json_bool(j, "reachable", st[i].reachable);
		json_str(j, "error", st[i].reachable ? NULL : st[i].error);
		json_shard_detail(j, m, &st[i]);
		json_obj_end(j);
	}
	json_arr_end(j);
}

static PGresult *routers_query(PGconn *c)
{
	PGresult *res = PQexec(c, "SELECT router_id, coalesce(host, ''), coalesce(pid, 0),"
				  " coalesce(version, ''), acked_epoch,"
				  " to_char(heartbeat_at, 'YYYY-MM-DD\"T\"HH24:MI:SSOF'),"
				  " round(extract(epoch FROM now() - heartbeat_at))::bigint"
				  " FROM shardrouter.routers ORDER BY router_id");
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	ctl_warn("cannot read shardrouter.routers: %s", PQerrorMessage(c));
	PQclear(res);
	return NULL;
}

static void json_routers(struct ctl_json *j, PGresult *rt)
{
	json_arr(j, "routers");
	for (int i = 0; rt && i < PQntuples(rt); i++) {
		json_obj(j, NULL);
		json_str(j, "router_id", PQgetvalue(rt, i, 0));
		json_str(j, "host", PQgetvalue(rt, i, 1));
		json_int(j, "pid", strtoll(PQgetvalue(rt, i, 2), NULL, 10));
		json_str(j, "version", PQgetvalue(rt, i, 3));
		json_uint(j, "acked_epoch", strtoull(PQgetvalue(rt, i, 4), NULL, 10));
		json_str(j, "heartbeat_at", PQgetvalue(rt, i, 5));
		json_int(j, "heartbeat_age_s", strtoll(PQgetvalue(rt, i, 6), NULL, 10));
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void json_moves(struct ctl_json *j, PGresult *mv);

static void status_json(const struct sm_map *m, const struct shard_status *st, PGresult *rt,
			PGresult *mv)
{
	struct ctl_json j;
	json_begin(&j);
	json_uint(&j, "epoch", m->epoch);
	json_ranges(&j, m);
	json_shards(&j, m, st);
	json_arr(&j, "tables");
	for (size_t t = 0; t < m->n_tables; t++)
		json_table(&j, NULL, &m->tables[t]);
	json_arr_end(&j);
	json_routers(&j, rt);
	json_moves(&j, mv);
	json_end(&j);
}

/* ---- text ------------------------------------------------------------- */

static void text_ranges(const struct sm_map *m)
{
	printf("epoch %" PRIu64 "\n\nranges (%zu):\n", m->epoch, m->n_ranges);
	if (m->n_ranges == 0)
		printf("  none; create the map with `shardctl map init --shards N`\n");
	else
		printf("  %-16s  %-16s  %-5s  %s\n", "lo", "hi", "shard", "state");
	for (size_t i = 0; i < m->n_ranges; i++) {
		const struct sm_range *r = &m->ranges[i];
		printf("  %016" PRIx64 "  %016" PRIx64 "  %-5" PRId32 "  %s\n", r->lo, r->hi,
		       r->shard_id, sm_range_state_name(r->state));
	}
}

static void text_shard_detail(const struct sm_map *m, const struct shard_status *st)
{
	printf("    rows:");
	for (size_t t = 0; t < m->n_tables; t++) {
		printf(" %s.%s=", m->tables[t].schema, m->tables[t].name);
		if (st->rows[t] >= 0)
			printf("%lld", st->rows[t]);
		else
			printf("%s", st->rows[t] == ROWS_MISSING ? "(missing)" : "(error)");
	}
	printf("%s\n", m->n_tables ? "" : " (no sharded tables)");
	for (int r = 0; st->repl && r < PQntuples(st->repl); r++)
		printf("    replication: %s from %s %s lag_bytes=%s\n", PQgetvalue(st->repl, r, 0),
		       PQgetvalue(st->repl, r, 1), PQgetvalue(st->repl, r, 2),
		       PQgetisnull(st->repl, r, 3) ? "?" : PQgetvalue(st->repl, r, 3));
}

static void text_shards(const struct sm_map *m, const struct shard_status *st)
{
	char disp[1024];
	printf("\nshards (%zu):\n", m->n_shards);
	for (size_t i = 0; i < m->n_shards; i++) {
		const struct sm_shard *s = &m->shards[i];
		ctl_conninfo_display(s->primary, disp, sizeof(disp));
		printf("  shard %" PRId32 ": %zu ranges, %.2f%% of the hash space, primary %s %s\n",
		       s->id, st[i].n_ranges, st[i].share * 100.0, disp,
		       st[i].reachable ? "[up]" : "[UNREACHABLE]");
		for (size_t r = 0; r < s->n_replicas; r++) {
			ctl_conninfo_display(s->replicas[r], disp, sizeof(disp));
			printf("    replica %zu: %s\n", r, disp);
		}
		if (st[i].reachable)
			text_shard_detail(m, &st[i]);
		else
			printf("    error: %s\n", st[i].error);
	}
}

static void text_routers(const struct sm_map *m, PGresult *rt)
{
	int n = rt ? PQntuples(rt) : 0;
	printf("\nrouters (%d):\n", n);
	if (n == 0)
		printf("  none registered\n");
	for (int i = 0; i < n; i++) {
		uint64_t acked = strtoull(PQgetvalue(rt, i, 4), NULL, 10);
		printf("  %s host=%s pid=%s version=%s acked_epoch=%" PRIu64 "%s heartbeat %ss "
		       "ago\n",
		       PQgetvalue(rt, i, 0), PQgetvalue(rt, i, 1), PQgetvalue(rt, i, 2),
		       PQgetvalue(rt, i, 3), acked, acked == m->epoch ? "" : " (behind)",
		       PQgetvalue(rt, i, 6));
	}
}

/* Running moves, then the last 5 finished ones. */
static PGresult *moves_query(PGconn *c)
{
	PGresult *res = PQexec(c,
			       "(SELECT move_id, range_lo, range_hi, from_shard, to_shard, step, state,"
			       " rows_copied, changes_applied, rows_deleted,"
			       " extract(epoch FROM now() - started_at)::bigint, coalesce(error, '')"
			       " FROM shardrouter.moves WHERE state = 'running' ORDER BY move_id)"
			       " UNION ALL (SELECT move_id, range_lo, range_hi, from_shard, to_shard,"
			       " step, state, rows_copied, changes_applied, rows_deleted,"
			       " extract(epoch FROM coalesce(finished_at, updated_at) - started_at)::bigint,"
			       " coalesce(error, '') FROM shardrouter.moves WHERE state <> 'running'"
			       " ORDER BY move_id DESC LIMIT 5)");
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	PQclear(res);
	return NULL;
}

static void json_moves(struct ctl_json *j, PGresult *mv)
{
	json_arr(j, "moves");
	for (int i = 0; mv && i < PQntuples(mv); i++) {
		json_obj(j, NULL);
		json_int(j, "move_id", strtoll(PQgetvalue(mv, i, 0), NULL, 10));
		json_str(j, "range_lo", PQgetvalue(mv, i, 1));
		json_str(j, "range_hi", PQgetvalue(mv, i, 2));
		json_int(j, "from", strtoll(PQgetvalue(mv, i, 3), NULL, 10));
		json_int(j, "to", strtoll(PQgetvalue(mv, i, 4), NULL, 10));
		json_str(j, "step", PQgetvalue(mv, i, 5));
		json_str(j, "state", PQgetvalue(mv, i, 6));
		json_int(j, "rows_copied", strtoll(PQgetvalue(mv, i, 7), NULL, 10));
		json_int(j, "changes_applied", strtoll(PQgetvalue(mv, i, 8), NULL, 10));
		json_int(j, "rows_deleted", strtoll(PQgetvalue(mv, i, 9), NULL, 10));
		json_int(j, "seconds", strtoll(PQgetvalue(mv, i, 10), NULL, 10));
		json_str(j, "error", *PQgetvalue(mv, i, 11) ? PQgetvalue(mv, i, 11) : NULL);
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void text_moves(PGresult *mv)
{
	int n = mv ? PQntuples(mv) : 0;
	printf("\nmoves (%d shown):\n", n);
	if (n == 0)
		printf("  none\n");
	for (int i = 0; i < n; i++) {
		bool running = strcmp(PQgetvalue(mv, i, 6), "running") == 0;
		printf("  move %s %s..%s shard %s -> %s: %s%s%s copied=%s changes=%s deleted=%s "
		       "%ss%s%s\n",
		       PQgetvalue(mv, i, 0), PQgetvalue(mv, i, 1), PQgetvalue(mv, i, 2),
		       PQgetvalue(mv, i, 3), PQgetvalue(mv, i, 4), PQgetvalue(mv, i, 6),
		       running ? " at step " : "", running ? PQgetvalue(mv, i, 5) : "",
		       PQgetvalue(mv, i, 7), PQgetvalue(mv, i, 8), PQgetvalue(mv, i, 9),
		       PQgetvalue(mv, i, 10), *PQgetvalue(mv, i, 11) ? ": " : "",
		       PQgetvalue(mv, i, 11));
		if (running)
			printf("    resume: shardctl move %s --to %s   roll back: shardctl move %s "
			       "--abort\n",
			       PQgetvalue(mv, i, 1), PQgetvalue(mv, i, 4), PQgetvalue(mv, i, 1));
	}
}

int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	int rc;
	if (ctl_args_none(ctl, argc, argv, "status", status_help, &rc))
		return rc;
	struct sm_map *m = NULL;
	PGconn *c = NULL;
	rc = ctl_load_map(ctl, NULL, &c, &m);
	if (rc != CTL_EXIT_OK)
		return rc;
	PGresult *rt = routers_query(c);
	PGresult *mv = moves_query(c);
	PQfinish(c);
	struct shard_status *st = status_collect(m);
	if (!st)
		rc = ctl_fail("out of memory");
	else if (ctl->json)
		status_json(m, st, rt, mv);
	else {
		text_ranges(m);
		text_shards(m, st);
		text_routers(m, rt);
		text_moves(mv);
	}
	status_free(m, st);
	PQclear(rt);
	PQclear(mv);
	sm_map_free(m);
	return st ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
