/*
 * move.h - the pieces of `shardctl move` (and what `rebalance` reuses):
 *
 *   move_db.c     connections and SQL helpers, table checks (columns,
 *                 primary key, replica identity), the publication and the
 *                 logical slot, the snapshot copy with the key filter done
 *                 client-side, per-range row count + checksum, and the
 *                 batched delete of a range's rows from one shard.
 *   move_apply.c  catch-up: peek pgoutput changes from the slot, keep those
 *                 whose key hash is in the range, apply them to the target
 *                 idempotently in one transaction, then advance the slot.
 *   cmd_move.c    the journaled state machine (prepare, copy, catchup,
 *                 freeze, verify, cutover, cleanup), resume and --abort,
 *                 the CLI.
 *
 * Single-threaded, blocking libpq.
 */
#ifndef SR_TOOLS_MOVE_H
#define SR_TOOLS_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/err.h"
#include "shardmap/map.h"

/* One column of a moved table, as on the source (attnum order). */
struct mcol {
	char *name;  /* as stored */
	char *qname; /* quoted identifier */
	char *type;  /* format_type(), e.g. "numeric(10,2)" */
	bool in_pk;
};

/* One co-located (sharded) table of the move. */
struct mtable {
	const struct sm_table *t; /* in the map */
	char *qname;		  /* "schema"."table" */
	size_t n_cols;
	struct mcol *cols;
	size_t key_col;	  /* index of the key column in cols */
	char *col_list;	  /* "c1", "c2", ... (quoted, in cols order) */
	char *pk_list;	  /* pk columns, quoted */
	char *key_type;	  /* the key column's SQL type, for casts */
	double est_rows;  /* pg_class.reltuples on the source */
};

/* The range being moved and how to reach both shards. */
struct mrange {
	uint64_t lo, hi;
	int32_t from, to;
};

static inline bool mrange_has(const struct mrange *r, uint64_t h)
{
	return h >= r->lo && h <= r->hi;
}

/* Progress: bytes and rows so far, printed as a bar on a tty, lines else. */
struct mprogress {
	const char *what;
	double t0, last;
	uint64_t rows, bytes, total_est;
	bool tty;
};
void mprogress_start(struct mprogress *p, const char *what, uint64_t total_est);
void mprogress_tick(struct mprogress *p, bool force);
void mprogress_end(struct mprogress *p);

double move_now_s(void);

/* ---- move_db.c ---------------------------------------------------------- */

/* Run SQL with text params; NULL result (em set, naming what) unless
 * COMMAND_OK/TUPLES_OK. The caller PQclear()s. */
PGresult *mdb_exec(PGconn *c, const char *sql, int n, const char *const *vals,
		   const char *what, struct sr_errmsg *em);
int mdb_cmd(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
	    struct sr_errmsg *em) SR_MUST_CHECK;
/* A one-value query into out; "" for NULL. */
int mdb_value(PGconn *c, const char *sql, int n, const char *const *vals, const char *what,
	      char *out, size_t outsz, struct sr_errmsg *em) SR_MUST_CHECK;
/* Connect to a shard's conninfo (replication=database when repl). */
PGconn *mdb_connect(const char *conninfo, bool repl, struct sr_errmsg *em);
/* The same text output on both sides of a copy or checksum. */
int mdb_session_setup(PGconn *c, struct sr_errmsg *em) SR_MUST_CHECK;

/* Describe every sharded table of m on the source and check the target
 * has it with the same columns and types, and a primary key, and that the
 * source can publish its changes with the key (replica identity). Fills
 * *out (n = m->n_tables); on failure the message says what to fix. */
int mdb_describe(PGconn *src, PGconn *dst, const struct sm_map *m, int32_t dst_id,
		 struct mtable **out, size_t *n, struct sr_errmsg *em) SR_MUST_CHECK;
void mdb_tables_free(struct mtable *ts, size_t n);

/* Source checks: wal_level=logical, a free replication slot. */
int mdb_check_source(PGconn *src, int32_t shard, struct sr_errmsg *em) SR_MUST_CHECK;

/* Drop slot and publication if they exist (retries while the slot is
 * still active for a few seconds). */
int mdb_drop_slot_pub(PGconn *src, const char *slot, const char *pub,
		      struct sr_errmsg *em) SR_MUST_CHECK;
int mdb_create_pub(PGconn *src, const char *pub, const struct mtable *ts, size_t n,
		   struct sr_errmsg *em) SR_MUST_CHECK;

/* Copy every table's rows in the range from src (in the snapshot already
 * set on src's open transaction) to dst (in one transaction the caller
 * commits). Adds to *rows and *bytes. */
int mdb_copy_table(PGconn *src, PGconn *dst, const struct mtable *mt, const struct mrange *r,
		   struct mprogress *p, struct sr_errmsg *em) SR_MUST_CHECK;

/* Count and an order-independent checksum (sum of XXH3 of each row's
 * text form) of the table's rows in the range on one side. */
int mdb_range_sum(PGconn *c, const struct mtable *mt, const struct mrange *r, uint64_t *rows,
		  uint64_t *sum, struct sr_errmsg *em) SR_MUST_CHECK;

/* Count the rows in the range (all tables) on c. */
int mdb_range_count(PGconn *c, const struct mtable *ts, size_t n, const struct mrange *r,
		    uint64_t *rows, struct sr_errmsg *em) SR_MUST_CHECK;

/* Delete every row of every table whose key is in the range from the
 * shard at conninfo, in batches of `batch` keys, sleeping pause_ms between
 * batches; *deleted counts rows. fail_hook (may be NULL) runs after the
 * first batch. */
int mdb_delete_range(const char *conninfo, const struct mtable *ts, size_t n,
		     const struct mrange *r, int batch, int pause_ms, uint64_t *deleted,
		     void (*fail_hook)(void), struct sr_errmsg *em) SR_MUST_CHECK;

/* COPY text-format unescape of s[0..n) into out (>= n bytes); length.
 * (Also used by `verify`.) */
size_t mdb_copy_unescape(const char *s, size_t n, char *out);
/* Field i (0-based) of a COPY text line: pointer and length. false if absent. */
bool mdb_copy_field(const char *line, size_t len, size_t i, const char **f, size_t *flen);
/* Hash of a key given in text form; false (no hash) for NULL / invalid. */
bool mdb_key_hash(enum sm_key_type t, const char *s, size_t n, uint64_t *h);

/* ---- move_sentinel.c ---------------------------------------------------- */

/* Fork a sentinel that sets range lo..hi (owned by from) active again in
 * the catalog if this process dies before move_sentinel_release(). fds: this
 * process's sockets, closed in the child. 0, or SR_EIO (no sentinel). */
int move_sentinel_start(const char *catalog, uint64_t lo, uint64_t hi, int32_t from,
			const int *fds, size_t n_fds) SR_MUST_CHECK;
/* Stand the sentinel down and reap it (no-op without one). */
void move_sentinel_release(void);
/* Leave without standing it down: it unfreezes the range if it is still
 * frozen by this move (used when our own rollback could not). */
void move_sentinel_abandon(void);

/* ---- move_apply.c ------------------------------------------------------- */

struct mapply_stats {
	uint64_t changes;   /* changes applied to the target */
	uint64_t skipped;   /* changes outside the range */
	uint64_t txns;	    /* source transactions seen */
	uint64_t last_lsn;  /* end of the last transaction applied */
	uint64_t absent;    /* partial updates that found no row (replay) */
};

/* One round: peek up to max_changes changes (whole transactions) from the
 * slot up to upto_lsn (0 = no limit), apply the in-range ones to dst in one
 * transaction, commit, then advance the slot. *n_rows = rows peeked (0:
 * caught up to upto_lsn / to the end). fail_hook (may be NULL) runs after
 * the target commit and before the slot advance. */
int mapply_round(PGconn *src, PGconn *dst, const char *slot, const char *pub,
		 const struct mtable *ts, size_t n, const struct mrange *r, uint64_t upto_lsn,
		 int max_changes, void (*fail_hook)(void), size_t *n_rows,
		 struct mapply_stats *st, struct sr_errmsg *em) SR_MUST_CHECK;

/* "X/Y" <-> uint64. */
bool lsn_parse(const char *s, uint64_t *out);
void lsn_format(uint64_t lsn, char out[32]);

/* ---- move_apply.c, the pure part (no libpq; unit-tested) ----------------
 *
 * mdec_message() decodes one pgoutput (protocol 1) message; mapply_decide()
 * says what a decoded change means for the target. mapply_round() is
 * these two plus the SQL. */

enum mmsg_kind {
	MMSG_OTHER,    /* origin, type, unknown: nothing to do */
	MMSG_BEGIN,    /* 'B' */
	MMSG_COMMIT,   /* 'C': commit_end set */
	MMSG_RELATION, /* 'R': remembered by the decoder */
	MMSG_INSERT,   /* 'I' */
	MMSG_UPDATE,   /* 'U' */
	MMSG_DELETE,   /* 'D' */
	MMSG_TRUNCATE, /* 'T' (not decoded further) */
};

/* One decoded tuple, indexed by the mtable's columns: values as
 * NUL-terminated text, NULL for SQL NULL (or a column the message did not
 * carry); unchanged[i]: an unchanged TOASTed value that was not sent. */
struct mtuple {
	bool present;
	char **val;
	bool *unchanged;
};

/* A relation announced by an 'R' message, mapped onto one of our tables. */
struct mrel {
	uint32_t oid;
	const struct mtable *mt; /* NULL: not one of ours */
	int ncols;
	int *map; /* message column -> mt column index, -1: none */
};

/* Decoder state across the messages of one round (relations seen, the
 * tuples of the last change). */
struct mdecoder {
	const struct mtable *ts;
	size_t n;
	struct mrel *rels;
	size_t n_rels;
	size_t max_cols;
	struct mtuple old, new_;
};

/* One decoded message. old/new_ point into the decoder and are valid until
 * its next mdec_message(); old->present only when the message had a 'K' or
 * 'O' tuple. */
struct mmsg {
	enum mmsg_kind kind;
	uint32_t rel_oid;	  /* I/U/D/R */
	const struct mtable *mt;  /* I/U/D: the table, NULL when not one of ours */
	const struct mtuple *old; /* I/U/D */
	const struct mtuple *new_;
	uint64_t commit_end; /* C: end LSN of the transaction */
};

int mdec_init(struct mdecoder *d, const struct mtable *ts, size_t n,
	      struct sr_errmsg *em) SR_MUST_CHECK;
void mdec_free(struct mdecoder *d);
/* Decode p[0..len). SR_ECORRUPT for a truncated or malformed message or a
 * change of a relation not announced before; SR_ENOMEM. */
int mdec_message(struct mdecoder *d, const uint8_t *p, size_t len, struct mmsg *out,
		 struct sr_errmsg *em) SR_MUST_CHECK;

/* What to do on the target for one change, in this order. */
struct mplan {
	bool skip;	/* a change outside the range: nothing (counted) */
	bool del;	/* delete the row with old's primary key */
	bool upsert;	/* upsert new_ (all columns) */
	bool partial;	/* update new_'s sent columns (some TOAST values unchanged)
			 * on the row with old's primary key */
	const struct mtuple *old, *new_;
};

/* Is the tuple's key (pgoutput text, not COPY-escaped) in the range? false
 * for a NULL, absent or invalid key. */
bool mapply_key_in_range(const struct mtable *mt, const struct mtuple *t,
			 const struct mrange *r);

/* The plan for a decoded message; all false for messages that change
 * nothing (B, C, R, other, changes of tables not ours). SR_EUNSUPPORTED for
 * a TRUNCATE, SR_ECORRUPT for an update that moves a row into the range
 * with unchanged TOAST values (the move cannot rebuild the row). */
int mapply_decide(const struct mmsg *m, const struct mrange *r, struct mplan *out,
		  struct sr_errmsg *em) SR_MUST_CHECK;

#endif
