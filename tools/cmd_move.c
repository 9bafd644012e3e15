/*
 * cmd_move.c - `shardctl move RANGE --to SHARD [--abort]` (SPEC §5): move a
 * key range to another shard online, in steps journaled in
 * shardrouter.moves so that a rerun resumes and --abort rolls back.
 *
 *   prepare   check both shards (tables, columns, primary keys, replica
 *             identity, wal_level=logical, a free slot), create the
 *             publication and the logical slot (pgoutput) on the source,
 *             exporting a snapshot
 *   copy      in that snapshot, COPY every sharded table's rows whose key
 *             hash is in the range to the target (one target transaction)
 *   catchup   apply the slot's changes in the range to the target until a
 *             round brings little
 *   freeze    range state frozen (new epoch); wait until every live router
 *             acked that epoch (its workers route by the frozen map and no
 *             request routed by an older map is in flight) or its lease
 *             expired; then wait until every transaction that had an xid on
 *             the source before that point has ended
 *   verify    apply the changes up to the source's WAL position, then
 *             compare row count and checksum of every table's range rows
 *             on both sides
 *   cutover   one catalog transaction: owner = target, state active,
 *             read_lsn = the target's WAL position (replicas serve the
 *             range only once they have replayed past it)
 *   cleanup   drop slot and publication, delete the range's rows from the
 *             source in throttled batches, mark the move done
 *
 * Any failure before cutover rolls back: unfreeze, drop the slot and the
 * publication, delete the copied rows from the target. After cutover the
 * move can only go forward. A session advisory lock on the catalog allows
 * one move at a time. From the freeze to the cutover a sentinel child
 * (move_sentinel.c) unfreezes the range if this process dies.
 * SHARDCTL_FAIL_AT=<step> kills the process in the middle of that step
 * (crash tests). Single-threaded (plus that child).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "move.h"
#include "shardmap/catalog.h"
#include "shardmap/hash.h"

#define MOVE_LOCK_SQL "SELECT pg_try_advisory_lock(6001136956863697458)"
#define FENCE_MARGIN_MS 1000
#define MAX_ROUND_ROWS 20000 /* pgoutput messages peeked per catch-up round */
#define CAUGHT_UP_S 0.1	     /* a catch-up round this short ends the catch-up */ /* added to a router's lease before it counts as fenced */

static const char move_help[] =
    "usage: shardctl move RANGE --to SHARD [--abort] [--freeze-timeout MS]\n"
    "                     [--cleanup-batch N] [--cleanup-pause MS] [--json]\n\n"
    "Move a key range (named by its lo, 16 hex digits, see `shardctl status`) to\n"
    "another shard while applications keep writing: snapshot copy of every\n"
    "sharded table's rows in the range, catch-up by logical decoding, a short\n"
    "freeze acknowledged by every live router, final catch-up, verification\n"
    "(row counts and checksums), atomic cutover, then removal of the rows from\n"
    "the source. Rerun the same command after an interruption to resume;\n"
    "--abort rolls a running move back (before cutover; after it, it finishes).\n\n"
    "  --freeze-timeout MS  longest time the range stays frozen waiting for\n"
    "                       routers and open transactions (default 5000); past\n"
    "                       it the move is rolled back\n"
    "  --cleanup-batch N    keys deleted per statement on the source (default 1000)\n"
    "  --cleanup-pause MS   pause between cleanup batches (default 5)\n"
    "  --json               print the result as one JSON object\n\n"
    "The source needs wal_level=logical and a free replication slot; the user\n"
    "(PGUSER/PGPASSWORD) needs the REPLICATION attribute there.\n"
    "exit status: 0 moved (or rolled back with --abort), 1 failed (rolled back\n"
    "where possible; the message says what to do), 2 bad usage\n";

static const char *const steps[] = {"prepare", "copy",	"catchup", "freeze",
				    "verify",  "cutover", "cleanup", "done"};
enum step { ST_PREPARE, ST_COPY, ST_CATCHUP, ST_FREEZE, ST_VERIFY, ST_CUTOVER, ST_CLEANUP, ST_DONE };

struct move {
	const struct ctl *ctl;
	PGconn *cat, *src, *dst, *repl;
	struct sm_map *m;
	struct mrange r;
	const struct sm_shard *from, *to;
	struct mtable *ts;
	size_t n_ts;
	long long id;
	enum step step;
	bool resumed, abort_req, json;
	char slot[64], pub[64], snapshot[128];
	int freeze_timeout_ms, cleanup_batch, cleanup_pause_ms;
	uint64_t rows_copied, bytes_copied, rows_deleted, cutover_lsn;
	double copy_secs, frozen_at, freeze_ms, t0;
	struct mapply_stats ap;
	struct sr_errmsg em;
};

static volatile sig_atomic_t interrupted;
static const char *fail_at;
static enum step hook_step;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* SHARDCTL_FAIL_AT: die like kill -9 in the middle of a step. */
static void fail_point(enum step s)
{
	if (fail_at && strcmp(fail_at, steps[s]) == 0) {
		fprintf(stderr, "shardctl: SHARDCTL_FAIL_AT=%s: killing myself\n", fail_at);
		fflush(stderr);
		raise(SIGKILL);
	}
}

static void fail_hook(void)
{
	fail_point(hook_step);
}

static void say(const struct move *mv, const char *fmt, ...) SR_PRINTF(2, 3);
static void say(const struct move *mv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "move %016" PRIx64 " [%5.1fs] ", mv->r.lo, move_now_s() - mv->t0);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- journal ------------------------------------------------------------- */

static int journal(struct move *mv, enum step s)
{
	char id[24], rows[24], bytes[24], ch[24], del[24];
	snprintf(id, sizeof(id), "%lld", mv->id);
	snprintf(rows, sizeof(rows), "%" PRIu64, mv->rows_copied);
	snprintf(bytes, sizeof(bytes), "%" PRIu64, mv->bytes_copied);
	snprintf(ch, sizeof(ch), "%" PRIu64, mv->ap.changes);
	snprintf(del, sizeof(del), "%" PRIu64, mv->rows_deleted);
	const char *v[] = {id, steps[s], mv->slot, mv->pub, rows, bytes, ch, del};
	mv->step = s;
	return mdb_cmd(mv->cat,
		       "UPDATE shardrouter.moves SET step = $2, slot_name = $3, publication = $4,"
		       " rows_copied = $5, bytes_copied = $6, changes_applied = $7,"
		       " rows_deleted = $8, updated_at = now() WHERE move_id = $1",
		       8, v, "write the move journal", &mv->em);
}

static void journal_finish(struct move *mv, const char *state, const char *error)
{
	char id[24], del[24];
	snprintf(id, sizeof(id), "%lld", mv->id);
	snprintf(del, sizeof(del), "%" PRIu64, mv->rows_deleted);
	const char *v[] = {id, state, error, del};
	struct sr_errmsg em;
	if (mdb_cmd(mv->cat,
		    "UPDATE shardrouter.moves SET state = $2, error = $3, rows_deleted = $4,"
		    " step = CASE WHEN $2 = 'done' THEN 'done' ELSE step END,"
		    " updated_at = now(), finished_at = now() WHERE move_id = $1",
		    4, v, "finish the move journal", &em))
		ctl_warn("%s", em.text);
}

/* ---- catalog changes ----------------------------------------------------- */

struct range_change {
	const struct move *mv;
	enum sm_range_state state;
	int32_t owner;
	uint64_t read_lsn;
	bool set_lsn;
};

static int range_change_fn(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	struct range_change *rc = ctx;
	const struct mrange *r = &rc->mv->r;
	struct sm_range *sr = sm_map_find_range(m, r->lo);
	if (!sr || sr->hi != r->hi)
		return sr_errmsg_set(em, SR_EBUSY,
				     "range %016" PRIx64 "..%016" PRIx64 " changed in the catalog "
				     "during the move (split?)",
				     r->lo, r->hi);
	if (sr->shard_id != r->from && sr->shard_id != rc->owner)
		return sr_errmsg_set(em, SR_EBUSY,
				     "range %016" PRIx64 " is owned by shard %d, not %d", r->lo,
				     sr->shard_id, r->from);
	int e = 0;
	if (sr->shard_id != rc->owner)
		e = sm_map_reassign(m, r->lo, rc->owner, em);
	if (!e && rc->set_lsn)
		e = sm_map_set_read_lsn(m, r->lo, rc->read_lsn, em);
	return e ? e : sm_map_set_state(m, r->lo, rc->state, em);
}

static int set_range(struct move *mv, int32_t owner, enum sm_range_state st, uint64_t read_lsn,
		     bool set_lsn, uint64_t *epoch)
{
	struct range_change rc = {mv, st, owner, read_lsn, set_lsn};
	return sm_catalog_apply(mv->cat, range_change_fn, &rc, epoch, &mv->em);
}

/* The range's current owner and state in the catalog. */
static int range_now(struct move *mv, int32_t *owner, enum sm_range_state *st)
{
	struct sm_map *m;
	int rc = sm_catalog_load(mv->cat, &m, &mv->em);
	if (rc)
		return rc;
	const struct sm_range *r = sm_map_find_range(m, mv->r.lo);
	if (!r || r->hi != mv->r.hi)
		rc = sr_errmsg_set(&mv->em, SR_EBUSY,
				   "range %016" PRIx64 "..%016" PRIx64 " is not in the catalog any "
				   "more",
				   mv->r.lo, mv->r.hi);
	else {
		*owner = r->shard_id;
		*st = r->state;
	}
	sm_map_free(m);
	return rc;
}

/* ---- connections and checks ---------------------------------------------- */

static int connect_shards(struct move *mv)
{
	if (!mv->src && !(mv->src = mdb_connect(mv->from->primary, false, &mv->em)))
		return SR_EDB;
	if (!mv->dst && !(mv->dst = mdb_connect(mv->to->primary, false, &mv->em)))
		return SR_EDB;
	int rc = mdb_session_setup(mv->src, &mv->em);
	if (!rc)
		rc = mdb_session_setup(mv->dst, &mv->em);
	/* Copies are not new business events: skip FK checks and user
	 * triggers on the target where allowed (superuser). */
	if (!rc)
		PQclear(PQexec(mv->dst, "SET session_replication_role = replica"));
	return rc;
}

/* Everything `prepare` checks before it changes anything. */
static int check_all(struct move *mv, bool source_checks)
{
	int rc = connect_shards(mv);
	if (!rc && source_checks)
		rc = mdb_check_source(mv->src, mv->r.from, &mv->em);
	if (!rc && !mv->ts)
		rc = mdb_describe(mv->src, mv->dst, mv->m, mv->r.to, &mv->ts, &mv->n_ts, &mv->em);
	return rc;
}

/* ---- steps ---------------------------------------------------------------- */

static int create_slot(struct move *mv)
{
	if (!(mv->repl = mdb_connect(mv->from->primary, true, &mv->em)))
		return SR_EDB;
	char sql[160];
	snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT",
		 mv->slot);
	PGresult *res = PQexec(mv->repl, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		int rc = sr_errmsg_set(&mv->em, SR_EDB,
				       "create replication slot %s on shard %d: %s (the user needs "
				       "the REPLICATION attribute)",
				       mv->slot, mv->r.from, PQresultErrorMessage(res));
		PQclear(res);
		return rc;
	}
	snprintf(mv->snapshot, sizeof(mv->snapshot), "%s", PQgetvalue(res, 0, 2));
	PQclear(res);
	return 0;
}

static int step_prepare(struct move *mv)
{
	int rc = mdb_drop_slot_pub(mv->src, mv->slot, mv->pub, &mv->em);
	uint64_t leftover = 0;
	if (!rc)
		rc = mdb_range_count(mv->dst, mv->ts, mv->n_ts, &mv->r, &leftover, &mv->em);
	if (!rc && leftover) {
		/* Only our own earlier attempt can have put them there (prepare
		 * refuses a new move onto a target holding rows of the range). */
		say(mv, "removing %" PRIu64 " rows of an earlier attempt from shard %d", leftover,
		    mv->r.to);
		uint64_t d = 0;
		rc = mdb_delete_range(mv->to->primary, mv->ts, mv->n_ts, &mv->r, 1000, 0, &d, NULL,
				      &mv->em);
	}
	if (!rc)
		rc = mdb_create_pub(mv->src, mv->pub, mv->ts, mv->n_ts, &mv->em);
	if (!rc)
		rc = create_slot(mv);
	if (rc)
		return rc;
	say(mv, "prepare: slot %s and publication %s on shard %d, snapshot %s", mv->slot, mv->pub,
	    mv->r.from, mv->snapshot);
	fail_point(ST_PREPARE);
	return journal(mv, ST_COPY);
}

static double est_rows(const struct move *mv)
{
	/* Rows in the range ~ the source's rows x the range's share of the
	 * hash space the source owns. */
	double owned = 0, total = 0;
	for (size_t i = 0; i < mv->m->n_ranges; i++)
		if (mv->m->ranges[i].shard_id == mv->r.from)
			owned += (double)(mv->m->ranges[i].hi - mv->m->ranges[i].lo) + 1;
	for (size_t i = 0; i < mv->n_ts; i++)
		total += mv->ts[i].est_rows;
	return owned > 0 ? total * ((double)(mv->r.hi - mv->r.lo) + 1) / owned : 0;
}

static int step_copy(struct move *mv)
{
	if (!mv->repl) /* the exported snapshot died with an earlier run */
		return step_prepare(mv) ? SR_EDB : step_copy(mv);
	PGconn *snap = mdb_connect(mv->from->primary, false, &mv->em);
	if (!snap)
		return SR_EDB;
	int rc = mdb_session_setup(snap, &mv->em);
	if (!rc)
		rc = mdb_cmd(snap, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL,
			     "begin the snapshot", &mv->em);
	if (!rc) {
		char sql[200];
		snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT '%s'", mv->snapshot);
		rc = mdb_cmd(snap, sql, 0, NULL, "import the slot's snapshot", &mv->em);
	}
	if (!rc)
		rc = mdb_cmd(mv->dst, "BEGIN", 0, NULL, "begin on the target", &mv->em);
	struct mprogress p;
	mprogress_start(&p, "copy", (uint64_t)est_rows(mv));
	double t0 = move_now_s();
	for (size_t i = 0; !rc && i < mv->n_ts; i++) {
		rc = mdb_copy_table(snap, mv->dst, &mv->ts[i], &mv->r, &p, &mv->em);
		if (!rc && i == 0)
			fail_point(ST_COPY); /* one table copied, not committed */
	}
	if (!rc)
		rc = mdb_cmd(mv->dst, "COMMIT", 0, NULL, "commit the copy on the target", &mv->em);
	else
		PQclear(PQexec(mv->dst, "ROLLBACK"));
	mprogress_end(&p);
	PQfinish(snap);
	PQfinish(mv->repl); /* the snapshot is not needed any more */
	mv->repl = NULL;
	if (rc)
		return rc;
	mv->copy_secs = move_now_s() - t0;
	mv->rows_copied = p.rows;
	mv->bytes_copied = p.bytes;
	say(mv, "copy: %" PRIu64 " rows (%" PRIu64 " bytes) in %.2fs, %.0f rows/s", p.rows,
	    p.bytes, mv->copy_secs, mv->copy_secs > 0 ? (double)p.rows / mv->copy_secs : 0);
	return journal(mv, ST_CATCHUP);
}

/* The WAL position up to which every commit so far is flushed (so logical
 * decoding can read it). With asynchronous commit a committed transaction's
 * record may not be flushed yet: a commit of our own that wrote WAL, with
 * synchronous_commit on (session setup), flushes it and everything before.
 * A transactional logical message is such a write (pgoutput ignores it). */
static int wal_lsn(PGconn *c, uint64_t *lsn, struct sr_errmsg *em)
{
	char v[40];
	int rc = mdb_value(c,
			   "SELECT pg_catalog.pg_logical_emit_message(true, 'shardrouter', 'flush')",
			   0, NULL, "flush the WAL", v, sizeof(v), em);
	if (!rc)
		rc = mdb_value(c, "SELECT pg_catalog.pg_current_wal_flush_lsn()", 0, NULL,
			       "read the WAL position", v, sizeof(v), em);
	if (!rc && !lsn_parse(v, lsn))
		rc = sr_errmsg_set(em, SR_EDB, "bad LSN %s", v);
	return rc;
}

/* Apply rounds up to the current WAL position until one is quick (final:
 * until one brings nothing, up to the position read once at the start). */
static int catch_up(struct move *mv, bool final, enum step s)
{
	uint64_t upto = 0;
	int rc = final ? wal_lsn(mv->src, &upto, &mv->em) : 0;
	hook_step = s;
	double prev = 1e9;
	for (int round = 0; !rc; round++) {
		if (!final && (rc = wal_lsn(mv->src, &upto, &mv->em)))
			break;
		size_t rows = 0;
		double t0 = move_now_s();
		rc = mapply_round(mv->src, mv->dst, mv->slot, mv->pub, mv->ts, mv->n_ts, &mv->r, upto,
				  MAX_ROUND_ROWS, fail_hook, &rows, &mv->ap, &mv->em);
		/* Caught up when a round was quick, or rounds stopped getting
		 * shorter (steady write load): the final round, run while the
		 * range is frozen and nothing new comes in, will be as short. */
		double took = move_now_s() - t0;
		if (rc || rows == 0 ||
		    (!final && rows < MAX_ROUND_ROWS &&
		     (took < CAUGHT_UP_S || (round >= 2 && took < 1.0 && took > 0.8 * prev))))
			break;
		prev = took;
		if (interrupted)
			return sr_errmsg_set(&mv->em, SR_EBUSY, "interrupted");
	}
	return rc;
}

static int step_catchup(struct move *mv)
{
	int rc = catch_up(mv, false, ST_CATCHUP);
	if (rc)
		return rc;
	fail_point(ST_CATCHUP); /* when no round had changes to die in */
	say(mv, "catch-up: %" PRIu64 " changes applied, %" PRIu64 " outside the range skipped",
	    mv->ap.changes, mv->ap.skipped);
	return journal(mv, ST_FREEZE);
}

/* Routers that have neither acked epoch nor lost their lease (by the
 * catalog's clock, with a margin): *waiting their count, names in out. */
static int routers_pending(struct move *mv, uint64_t epoch, int *waiting, char *out, size_t outsz)
{
	char e[24], margin[16];
	snprintf(e, sizeof(e), "%" PRIu64, epoch);
	snprintf(margin, sizeof(margin), "%d", FENCE_MARGIN_MS);
	const char *v[] = {e, margin};
	PGresult *res = mdb_exec(mv->cat,
				 "SELECT router_id FROM shardrouter.routers WHERE acked_epoch < $1::bigint"
				 " AND now() - heartbeat_at <= make_interval(secs =>"
				 " (coalesce(lease_ms, 10000) + $2::int) / 1000.0) ORDER BY 1",
				 2, v, "read router acks", &mv->em);
	if (!res)
		return SR_EDB;
	*waiting = PQntuples(res);
	out[0] = '\0';
	for (int i = 0; i < PQntuples(res) && strlen(out) + 80 < outsz; i++) {
		strcat(out, i ? ", " : "");
		strncat(out, PQgetvalue(res, i, 0), 64);
	}
	PQclear(res);
	return 0;
}

static int wait_acks(struct move *mv, uint64_t epoch, double deadline)
{
	char names[512];
	int waiting = 0;
	for (;;) {
		int rc = routers_pending(mv, epoch, &waiting, names, sizeof(names));
		if (rc || waiting == 0)
			return rc;
		if (interrupted)
			return sr_errmsg_set(&mv->em, SR_EBUSY, "interrupted while waiting for routers");
		if (move_now_s() > deadline)
			return sr_errmsg_set(&mv->em, SR_EBUSY,
					     "%d router(s) did not acknowledge the freeze (epoch %" PRIu64
					     ") within --freeze-timeout %d ms: %s; check them "
					     "(SHOW SHARDMAP on their admin console) and retry",
					     waiting, epoch, mv->freeze_timeout_ms, names);
		usleep(10 * 1000);
	}
}

/* Wait until every transaction that had an xid on the source when the
 * routers acked has ended, and every statement that was already running
 * then has finished: their writes are then all in the WAL. (A statement
 * that has not written yet has no xid; the routers' ack covers those they
 * still wait for, but not one whose client and connection went away.) */
static const char old_work_sql[] =
    "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) >= $1::xid8"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE state = 'active'"
    "  AND backend_type = 'client backend' AND datname = current_database()"
    "  AND pid <> pg_catalog.pg_backend_pid() AND query_start < $2::timestamptz)";

static int wait_old_xids(struct move *mv, double deadline)
{
	char xmax[32], t0[64], done[8];
	PGresult *res = mdb_exec(mv->src,
				 "SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()),"
				 " pg_catalog.clock_timestamp()",
				 0, NULL, "read the source's xid horizon", &mv->em);
	if (!res)
		return SR_EDB;
	snprintf(xmax, sizeof(xmax), "%s", PQgetvalue(res, 0, 0));
	snprintf(t0, sizeof(t0), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	const char *v[] = {xmax, t0};
	for (;;) {
		int rc = mdb_value(mv->src, old_work_sql, 2, v, "check open transactions", done,
				   sizeof(done), &mv->em);
		if (rc || done[0] == 't')
			return rc;
		if (interrupted)
			return sr_errmsg_set(&mv->em, SR_EBUSY, "interrupted");
		if (move_now_s() > deadline) {
			char who[256] = "";
			if (mdb_value(mv->src,
				      "SELECT coalesce(string_agg(pid::text, ', '), '') FROM"
				      " pg_catalog.pg_stat_activity WHERE pid <> pg_backend_pid() AND"
				      " (backend_xid IS NOT NULL OR (state = 'active' AND"
				      "  backend_type = 'client backend' AND query_start < $1::timestamptz))",
				      1, v + 1, "list open transactions", who, sizeof(who), &mv->em))
				snprintf(who, sizeof(who), "unknown");
			return sr_errmsg_set(&mv->em, SR_EBUSY,
					     "transactions or statements running on shard %d since "
					     "before the freeze did not end within --freeze-timeout %d "
					     "ms (backend pids: %s); retry when they are done",
					     mv->r.from, mv->freeze_timeout_ms, who);
		}
		usleep(5 * 1000);
	}
}

/* A child that unfreezes the range if this process dies before cutover. */
static void start_sentinel(struct move *mv)
{
	int fds[] = {mv->cat ? PQsocket(mv->cat) : -1, mv->src ? PQsocket(mv->src) : -1,
		     mv->dst ? PQsocket(mv->dst) : -1, mv->repl ? PQsocket(mv->repl) : -1};
	if (move_sentinel_start(mv->ctl->catalog, mv->r.lo, mv->r.hi, mv->r.from, fds, 4))
		ctl_warn("could not start the sentinel process: if this shardctl dies while the "
			 "range is frozen, rerun it (or --abort) to unfreeze the range");
}

static int step_freeze(struct move *mv)
{
	uint64_t epoch = 0;
	start_sentinel(mv);
	int rc = set_range(mv, mv->r.from, SM_RANGE_FROZEN, 0, false, &epoch);
	if (rc)
		return rc;
	mv->frozen_at = move_now_s();
	say(mv, "freeze: range frozen at epoch %" PRIu64 "; waiting for routers", epoch);
	fail_point(ST_FREEZE);
	double deadline = mv->frozen_at + mv->freeze_timeout_ms / 1000.0;
	rc = wait_acks(mv, epoch, deadline);
	if (!rc)
		rc = wait_old_xids(mv, deadline);
	if (rc)
		return rc;
	say(mv, "freeze: acknowledged by every live router after %.0f ms",
	    (move_now_s() - mv->frozen_at) * 1000);
	return journal(mv, ST_VERIFY);
}

static int verify_table(struct move *mv, const struct mtable *mt)
{
	uint64_t sr = 0, ss = 0, dr = 0, ds = 0;
	int rc = mdb_range_sum(mv->src, mt, &mv->r, &sr, &ss, &mv->em);
	if (!rc)
		rc = mdb_range_sum(mv->dst, mt, &mv->r, &dr, &ds, &mv->em);
	if (!rc && (sr != dr || ss != ds))
		rc = sr_errmsg_set(&mv->em, SR_ECORRUPT,
				   "verification failed for %s: source shard %d has %" PRIu64
				   " rows (checksum %016" PRIx64 "), target shard %d has %" PRIu64
				   " (checksum %016" PRIx64 "); the move is rolled back",
				   mt->qname, mv->r.from, sr, ss, mv->r.to, dr, ds);
	if (!rc)
		say(mv, "verify: %s %" PRIu64 " rows, checksum %016" PRIx64 " on both shards",
		    mt->qname, sr, ss);
	return rc;
}

static int step_verify(struct move *mv)
{
	int rc = catch_up(mv, true, ST_VERIFY);
	if (rc)
		return rc;
	fail_point(ST_VERIFY);
	for (size_t i = 0; !rc && i < mv->n_ts; i++)
		rc = verify_table(mv, &mv->ts[i]);
	if (!rc)
		rc = wal_lsn(mv->dst, &mv->cutover_lsn, &mv->em);
	return rc ? rc : journal(mv, ST_CUTOVER);
}

static int step_cutover(struct move *mv)
{
	uint64_t epoch;
	int rc = set_range(mv, mv->r.to, SM_RANGE_ACTIVE, mv->cutover_lsn, true, &epoch);
	if (rc)
		return rc;
	move_sentinel_release(); /* the range is the target's: nothing to unfreeze */
	if (mv->frozen_at > 0)
		mv->freeze_ms = (move_now_s() - mv->frozen_at) * 1000;
	char l[32];
	lsn_format(mv->cutover_lsn, l);
	say(mv, "cutover: shard %d owns the range at epoch %" PRIu64 " (read_lsn %s), frozen for %.0f ms",
	    mv->r.to, epoch, l, mv->freeze_ms);
	fail_point(ST_CUTOVER);
	return journal(mv, ST_CLEANUP);
}

static int step_cleanup(struct move *mv)
{
	int rc = mdb_drop_slot_pub(mv->src, mv->slot, mv->pub, &mv->em);
	hook_step = ST_CLEANUP;
	if (!rc)
		rc = mdb_delete_range(mv->from->primary, mv->ts, mv->n_ts, &mv->r, mv->cleanup_batch,
				      mv->cleanup_pause_ms, &mv->rows_deleted, fail_hook, &mv->em);
	if (rc)
		return rc;
	say(mv, "cleanup: %" PRIu64 " rows deleted from shard %d", mv->rows_deleted, mv->r.from);
	journal_finish(mv, "done", NULL);
	mv->step = ST_DONE;
	return 0;
}

/* ---- rollback and the driver ---------------------------------------------- */

/* Undo a move that has not cut over: unfreeze, drop slot and publication,
 * delete the copied rows from the target, close the journal. */
static int rollback(struct move *mv, const char *state, const char *why)
{
	int32_t owner = -1;
	enum sm_range_state st = SM_RANGE_ACTIVE;
	struct sr_errmsg keep = mv->em;
	int rc = range_now(mv, &owner, &st);
	if (!rc && owner == mv->r.to)
		return sr_errmsg_set(&mv->em, SR_EBUSY, "the move is past its cutover");
	if (!rc && st == SM_RANGE_FROZEN) {
		uint64_t epoch;
		rc = set_range(mv, mv->r.from, SM_RANGE_ACTIVE, 0, false, &epoch);
		if (!rc)
			say(mv, "rollback: range unfrozen (epoch %" PRIu64 ")", epoch);
	}
	if (!rc)
		move_sentinel_release();
	if (!rc && mv->repl) {
		PQfinish(mv->repl);
		mv->repl = NULL;
	}
	if (!rc && !mv->src && !(mv->src = mdb_connect(mv->from->primary, false, &mv->em)))
		rc = SR_EDB;
	if (!rc)
		rc = mdb_drop_slot_pub(mv->src, mv->slot, mv->pub, &mv->em);
	uint64_t d = 0;
	if (!rc && mv->ts)
		rc = mdb_delete_range(mv->to->primary, mv->ts, mv->n_ts, &mv->r, 1000, 0, &d, NULL,
				      &mv->em);
	if (rc)
		return rc;
	say(mv, "rollback: slot and publication dropped, %" PRIu64 " copied rows removed from shard %d",
	    d, mv->r.to);
	journal_finish(mv, state, why);
	mv->em = keep;
	return 0;
}

static int run_step(struct move *mv)
{
	switch (mv->step) {
	case ST_PREPARE:
		return step_prepare(mv);
	case ST_COPY:
		return step_copy(mv);
	case ST_CATCHUP:
		return step_catchup(mv);
	case ST_FREEZE:
		return step_freeze(mv);
	case ST_VERIFY:
		return step_verify(mv);
	case ST_CUTOVER:
		return step_cutover(mv);
	case ST_CLEANUP:
		return step_cleanup(mv);
	case ST_DONE:
		return 0;
	}
	return 0;
}

static int run_steps(struct move *mv)
{
	while (mv->step != ST_DONE) {
		if (interrupted && mv->step < ST_CUTOVER)
			return sr_errmsg_set(&mv->em, SR_EBUSY, "interrupted");
		if (interrupted)
			return sr_errmsg_set(&mv->em, SR_EBUSY, "interrupted during the cleanup");
		int rc = run_step(mv);
		if (rc)
			return rc;
	}
	return 0;
}

/* Where a rerun picks up, from the journal and the catalog. */
static enum step resume_step(const char *journal_step, int32_t owner, int32_t to)
{
	if (owner == to)
		return ST_CLEANUP; /* cut over: only forward */
	for (int s = ST_PREPARE; s <= ST_DONE; s++) {
		if (strcmp(journal_step, steps[s]) != 0)
			continue;
		if (s <= ST_COPY)
			return ST_PREPARE; /* the exported snapshot is gone: start again */
		if (s == ST_CATCHUP)
			return ST_CATCHUP;
		return ST_FREEZE; /* freeze again (idempotent), then verify and cut over */
	}
	return ST_PREPARE;
}

static void set_names(struct move *mv)
{
	snprintf(mv->slot, sizeof(mv->slot), "shardrouter_move_%lld", mv->id);
	snprintf(mv->pub, sizeof(mv->pub), "shardrouter_move_%lld", mv->id);
}

/* A running move of the range: 1 found (mv->id, step set), 0 none. */
static int find_running(struct move *mv, char *step, size_t stepsz, int32_t *to)
{
	char lo[17];
	sm_hash_format(mv->r.lo, lo);
	const char *v[] = {lo};
	PGresult *res = mdb_exec(mv->cat,
				 "SELECT move_id, step, to_shard, from_shard FROM shardrouter.moves"
				 " WHERE range_lo = $1 AND state = 'running'",
				 1, v, "read the move journal", &mv->em);
	if (!res)
		return SR_EDB;
	int found = PQntuples(res) == 1;
	if (found) {
		mv->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(step, stepsz, "%s", PQgetvalue(res, 0, 1));
		*to = (int32_t)atoi(PQgetvalue(res, 0, 2));
		mv->r.from = (int32_t)atoi(PQgetvalue(res, 0, 3));
	}
	PQclear(res);
	return found;
}

static int start_new(struct move *mv)
{
	int rc = check_all(mv, true);
	uint64_t there = 0;
	if (!rc)
		rc = mdb_range_count(mv->dst, mv->ts, mv->n_ts, &mv->r, &there, &mv->em);
	if (!rc && there)
		return sr_errmsg_set(&mv->em, SR_EEXIST,
				     "target shard %d already holds %" PRIu64 " rows whose keys are "
				     "in this range (misplaced: see `shardctl verify --list`); "
				     "remove them first",
				     mv->r.to, there);
	if (rc)
		return rc;
	char lo[17], hi[17], from[16], to[16], id[24];
	sm_hash_format(mv->r.lo, lo);
	sm_hash_format(mv->r.hi, hi);
	snprintf(from, sizeof(from), "%d", mv->r.from);
	snprintf(to, sizeof(to), "%d", mv->r.to);
	const char *v[] = {lo, hi, from, to};
	rc = mdb_value(mv->cat,
		       "INSERT INTO shardrouter.moves (range_lo, range_hi, from_shard, to_shard, step)"
		       " VALUES ($1, $2, $3::int, $4::int, 'prepare') RETURNING move_id",
		       4, v, "start the move journal", id, sizeof(id), &mv->em);
	if (rc)
		return rc;
	mv->id = strtoll(id, NULL, 10);
	set_names(mv);
	mv->step = ST_PREPARE;
	say(mv, "move %lld: range %s..%s from shard %d to shard %d", mv->id, lo, hi, mv->r.from,
	    mv->r.to);
	return 0;
}

/* ---- the command ------------------------------------------------------------ */

struct move_args {
	const char *range, *to, *freeze, *batch, *pause;
	int abort;
};

static int move_args(struct ctl *ctl, int argc, char **argv, struct move_args *a)
{
	struct ctl_args ca;
	ctl_args_init(&ca, argc, argv, "move");
	while (ctl_args_next(&ca)) {
		if (ctl_args_common(&ca, ctl) || ctl_args_opt(&ca, "--to", &a->to) ||
		    ctl_args_opt(&ca, "--freeze-timeout", &a->freeze) ||
		    ctl_args_opt(&ca, "--cleanup-batch", &a->batch) ||
		    ctl_args_opt(&ca, "--cleanup-pause", &a->pause) || ctl_args_take(&ca, &a->range))
			continue;
		if (ctl_args_flag(&ca, "--abort")) {
			a->abort = 1;
			continue;
		}
		return ctl_args_unknown(&ca);
	}
	int rc;
	if (ctl_args_over(&ca, ctl, &rc))
		return rc;
	if (!a->range)
		return ctl_usage("move needs RANGE (its lo, 16 hex digits; see `shardctl status`)");
	if (!a->to && !a->abort)
		return ctl_usage("move needs --to SHARD");
	return CTL_EXIT_OK;
}

static int move_opts(struct move *mv, const struct move_args *a)
{
	long long v;
	mv->freeze_timeout_ms = 5000;
	mv->cleanup_batch = 1000;
	mv->cleanup_pause_ms = 5;
	if (ctl_parse_hash(a->range, &mv->r.lo) != 0)
		return ctl_usage("'%s' is not a range: write its lo as 16 hex digits", a->range);
	if (a->to && (v = ctl_parse_uint(a->to, INT32_MAX)) < 0)
		return ctl_usage("--to needs a shard id, got '%s'", a->to);
	mv->r.to = a->to ? (int32_t)v : -1;
	if (a->freeze && (v = ctl_parse_uint(a->freeze, 3600000)) < 100)
		return ctl_usage("--freeze-timeout needs milliseconds (100..3600000), got '%s'",
				 a->freeze);
	if (a->freeze)
		mv->freeze_timeout_ms = (int)v;
	if (a->batch && (v = ctl_parse_uint(a->batch, 1000000)) < 1)
		return ctl_usage("--cleanup-batch needs 1..1000000, got '%s'", a->batch);
	if (a->batch)
		mv->cleanup_batch = (int)v;
	if (a->pause && (v = ctl_parse_uint(a->pause, 60000)) < 0)
		return ctl_usage("--cleanup-pause needs milliseconds, got '%s'", a->pause);
	if (a->pause)
		mv->cleanup_pause_ms = (int)v;
	mv->abort_req = a->abort;
	return CTL_EXIT_OK;
}

static void print_result(const struct move *mv, const char *outcome)
{
	double rate = mv->copy_secs > 0 ? (double)mv->rows_copied / mv->copy_secs : 0;
	if (mv->json) {
		struct ctl_json j;
		json_begin(&j);
		json_int(&j, "move_id", mv->id);
		json_hex(&j, "range_lo", mv->r.lo);
		json_hex(&j, "range_hi", mv->r.hi);
		json_int(&j, "from", mv->r.from);
		json_int(&j, "to", mv->r.to);
		json_str(&j, "outcome", outcome);
		json_uint(&j, "rows_copied", mv->rows_copied);
		json_uint(&j, "bytes_copied", mv->bytes_copied);
		json_uint(&j, "changes_applied", mv->ap.changes);
		json_double(&j, "copy_rows_per_s", rate);
		json_double(&j, "freeze_ms", mv->freeze_ms);
		json_uint(&j, "rows_deleted", mv->rows_deleted);
		json_double(&j, "duration_s", move_now_s() - mv->t0);
		json_end(&j);
		return;
	}
	printf("move %016" PRIx64 "..%016" PRIx64 " shard %d -> %d %s: rows_copied=%" PRIu64
	       " changes_applied=%" PRIu64 " copy_rows_per_s=%.0f freeze_ms=%.0f rows_deleted=%" PRIu64
	       "\n",
	       mv->r.lo, mv->r.hi, mv->r.from, mv->r.to, outcome, mv->rows_copied, mv->ap.changes,
	       rate, mv->freeze_ms, mv->rows_deleted);
}

static void move_free(struct move *mv)
{
	/* A live process that leaves a range frozen (a failed rollback) says
	 * so; only a dead one is the sentinel's business. */
	move_sentinel_release();
	mdb_tables_free(mv->ts, mv->n_ts);
	PQfinish(mv->repl);
	PQfinish(mv->src);
	PQfinish(mv->dst);
	PQfinish(mv->cat);
	sm_map_free(mv->m);
}

/* Locate range, shards and any running move; decide the first step. */
static int move_setup(struct move *mv)
{
	const struct sm_range *r = sm_map_find_range(mv->m, mv->r.lo);
	if (!r)
		return sr_errmsg_set(&mv->em, SR_ENOTFOUND,
				     "no range starts at %016" PRIx64 "; `shardctl status` lists "
				     "the ranges (split one with `shardctl split`)",
				     mv->r.lo);
	mv->r.hi = r->hi;
	mv->r.from = r->shard_id;
	char step[32];
	int32_t to = -1;
	int found = find_running(mv, step, sizeof(step), &to);
	if (found < 0)
		return found;
	if (found && mv->r.to >= 0 && to != mv->r.to)
		return sr_errmsg_set(&mv->em, SR_EBUSY,
				     "move %lld of this range to shard %d is running; rerun with "
				     "--to %d to resume it, or with --abort",
				     mv->id, to, to);
	if (found)
		mv->r.to = to;
	if (!found && mv->abort_req)
		return sr_errmsg_set(&mv->em, SR_ENOTFOUND,
				     "no running move of range %016" PRIx64 " to abort", mv->r.lo);
	if (mv->r.to == mv->r.from && !found)
		return 1; /* nothing to do */
	mv->from = sm_map_find_shard(mv->m, mv->r.from);
	mv->to = sm_map_find_shard(mv->m, mv->r.to);
	if (!mv->to)
		return sr_errmsg_set(&mv->em, SR_ENOTFOUND,
				     "no shard %d; `shardctl shard list` shows the shards", mv->r.to);
	if (!mv->from)
		return sr_errmsg_set(&mv->em, SR_ENOTFOUND, "no shard %d", mv->r.from);
	if (!found)
		return start_new(mv);
	mv->resumed = true;
	set_names(mv);
	mv->step = resume_step(step, r->shard_id, mv->r.to);
	say(mv, "resuming move %lld (journal step %s) at step %s", mv->id, step, steps[mv->step]);
	return check_all(mv, mv->step != ST_CLEANUP && !mv->abort_req);
}

static int move_fail(struct move *mv)
{
	char err[SR_ERRMSG_LEN];
	snprintf(err, sizeof(err), "%s", mv->em.text);
	if (mv->step >= ST_CLEANUP || mv->step == ST_DONE)
		return ctl_fail("move %lld: %s; the range is owned by shard %d now: rerun `shardctl "
				"move %016" PRIx64 " --to %d` to finish removing its rows from shard %d",
				mv->id, err, mv->r.to, mv->r.lo, mv->r.to, mv->r.from);
	if (!mv->id)
		return ctl_fail("%s", err);
	say(mv, "failed at step %s: %s; rolling back", steps[mv->step], err);
	if (rollback(mv, "failed", err) != 0) {
		move_sentinel_abandon(); /* it keeps trying to unfreeze */
		return ctl_fail("move %lld failed at step %s: %s; the rollback failed too: %s; rerun "
				"`shardctl move %016" PRIx64 " --to %d` to resume, or add --abort "
				"to roll back",
				mv->id, steps[mv->step], err, mv->em.text, mv->r.lo, mv->r.to);
	}
	print_result(mv, "rolled back");
	return ctl_fail("move %lld failed at step %s and was rolled back: %s", mv->id,
			steps[mv->step], err);
}

static int move_abort(struct move *mv)
{
	if (mv->step == ST_CLEANUP) {
		say(mv, "--abort: the move is past its cutover; finishing it instead");
		if (run_steps(mv))
			return move_fail(mv);
		print_result(mv, "done");
		return CTL_EXIT_OK;
	}
	if (rollback(mv, "rolled_back", "aborted with --abort") != 0) {
		move_sentinel_abandon();
		return ctl_fail("move %lld: the rollback failed: %s; rerun with --abort", mv->id,
				mv->em.text);
	}
	print_result(mv, "rolled back");
	return CTL_EXIT_OK;
}

static int move_lock(struct move *mv)
{
	char got[8];
	int rc = mdb_value(mv->cat, MOVE_LOCK_SQL, 0, NULL, "take the move lock", got, sizeof(got),
			   &mv->em);
	if (!rc && got[0] != 't')
		rc = sr_errmsg_set(&mv->em, SR_EBUSY,
				   "another shardctl move (or rebalance) is running; one move at a "
				   "time: wait for it (`shardctl status` shows moves)");
	return rc;
}

int cmd_move(struct ctl *ctl, int argc, char **argv)
{
	struct move_args a = {0};
	int rc = move_args(ctl, argc, argv, &a);
	if (ctl_args_done(ctl, rc, move_help))
		return rc;
	struct move mv = {.ctl = ctl, .json = ctl->json, .t0 = move_now_s()};
	if ((rc = move_opts(&mv, &a)) != CTL_EXIT_OK)
		return rc;
	fail_at = getenv("SHARDCTL_FAIL_AT");
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a dead sentinel must not kill us */
	if (!(mv.cat = ctl_connect_catalog(ctl, &rc)))
		return rc;
	int err = move_lock(&mv);
	if (!err)
		err = sm_catalog_load(mv.cat, &mv.m, &mv.em);
	if (!err)
		err = move_setup(&mv);
	if (err == 1) {
		say(&mv, "range is already on shard %d: nothing to do", mv.r.to);
		print_result(&mv, "done");
		move_free(&mv);
		return CTL_EXIT_OK;
	}
	if (err)
		rc = move_fail(&mv);
	else if (mv.abort_req)
		rc = move_abort(&mv);
	else if (run_steps(&mv))
		rc = move_fail(&mv);
	else {
		print_result(&mv, "done");
		rc = CTL_EXIT_OK;
	}
	move_free(&mv);
	return rc;
}
