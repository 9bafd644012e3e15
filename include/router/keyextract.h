/*
 * keyextract.h - find the statement kind, the sharded table and the order
 * key(s) of one SQL statement, without I/O.
 *
 * A Postgres-correct lexer (identifiers folded to lower case unless "quoted",
 * '' / E'' / U&'' strings, $tag$ dollar quotes $tag$, nested block comments,
 * -- comments, casts ::type, $n parameters, numbers with sign) feeds a small
 * recognizer for the usual shapes:
 *   SELECT ... FROM t [alias] [JOIN co-located u ON ...] WHERE ... key = lit|$n
 *       (the comparison in a top-level AND chain; key may be qualified by
 *        table or alias; literal on either side; key IN (lit|$n, ...))
 *   INSERT INTO t (c1, key, ...) VALUES (...), (...) [ON CONFLICT ...] [RETURNING]
 *   UPDATE t SET ... WHERE ... key = ...        DELETE FROM t WHERE ... key = ...
 * It answers KX_KEY (all keys found), KX_NO_KEY (statement names a sharded
 * table but has no usable key, or names no sharded table) or KX_NOT_SURE
 * (could not tell). kx_extract() tries the fast path first and, on
 * KX_NOT_SURE, a full parse with libpg_query; never guesses.
 *
 * Pure and re-entrant: any thread; the callbacks are called synchronously.
 */
#ifndef SR_ROUTER_KEYEXTRACT_H
#define SR_ROUTER_KEYEXTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shardmap/map.h"

enum kx_stmt {
	KX_STMT_EMPTY = 0, /* only whitespace/comments/";" */
	KX_STMT_SELECT,    /* also VALUES, TABLE, WITH ... SELECT without data-modifying CTE */
	KX_STMT_INSERT,
	KX_STMT_UPDATE,
	KX_STMT_DELETE,
	KX_STMT_MERGE,
	KX_STMT_BEGIN,     /* BEGIN / START TRANSACTION */
	KX_STMT_COMMIT,    /* COMMIT / END / COMMIT PREPARED is OTHER */
	KX_STMT_ROLLBACK,  /* ROLLBACK / ABORT (not ROLLBACK TO) */
	KX_STMT_SAVEPOINT, /* SAVEPOINT, RELEASE, ROLLBACK TO */
	KX_STMT_SET,       /* SET [SESSION|LOCAL] name =|TO value, SET TIME ZONE ... */
	KX_STMT_RESET,     /* RESET name / RESET ALL */
	KX_STMT_SHOW,
	KX_STMT_DISCARD,
	KX_STMT_PREPARE,   /* SQL-level PREPARE name AS ... */
	KX_STMT_EXECUTE,
	KX_STMT_DEALLOCATE,
	KX_STMT_LISTEN,
	KX_STMT_UNLISTEN,
	KX_STMT_NOTIFY,
	KX_STMT_COPY,
	KX_STMT_DDL,       /* CREATE/ALTER/DROP/TRUNCATE/COMMENT/GRANT/REVOKE ... */
	KX_STMT_EXPLAIN,
	KX_STMT_CALL,
	KX_STMT_DO,
	KX_STMT_LOCK,
	KX_STMT_DECLARE,   /* DECLARE cursor */
	KX_STMT_CURSOR,    /* FETCH / MOVE / CLOSE */
	KX_STMT_MAINT,     /* VACUUM / ANALYZE / CLUSTER / REINDEX / CHECKPOINT */
	KX_STMT_OTHER,
};

enum kx_verdict {
	KX_KEY = 0,     /* keys[] holds every key the statement is restricted to */
	KX_NO_KEY = 1,  /* definitely no usable key */
	KX_NOT_SURE = 2,
};

/* One key: a literal already hashed with the table's key type, or a
 * parameter reference $n whose Bind value must be hashed later. */
struct kx_keyref {
	bool is_param;
	uint16_t param;  /* 1-based $n when is_param */
	uint64_t hash;   /* when !is_param */
};

/* Session-state features that transaction pooling cannot carry. */
enum kx_session_flag {
	KX_SESS_LISTEN = 1u << 0,        /* LISTEN */
	KX_SESS_ADVISORY_LOCK = 1u << 1, /* pg_advisory_lock & co (session-level) */
	KX_SESS_WITH_HOLD = 1u << 2,     /* DECLARE ... WITH HOLD */
	KX_SESS_PREPARE = 1u << 3,       /* SQL-level PREPARE */
	KX_SESS_TEMP_TABLE = 1u << 4,    /* CREATE TEMP TABLE */
};

#define KX_INLINE_KEYS 8

struct kx_result {
	enum kx_stmt stmt;
	enum kx_verdict verdict;
	bool is_write;        /* must run on a primary: INSERT/UPDATE/DELETE/MERGE,
				 SELECT ... FOR UPDATE/SHARE/..., data-modifying CTE,
				 DDL, COPY FROM, CALL, DO, LOCK, a function not known
				 read-only, SELECT INTO, NOTIFY, anything unknown */
	bool read_only_txn;   /* BEGIN/START TRANSACTION ... READ ONLY */
	bool names_table;     /* any relation referenced */
	bool names_unsharded; /* a relation that is not a sharded table */
	const struct sm_table *table; /* first sharded table named, or NULL */
	bool mixed_colocation; /* two sharded tables that are not co-located
				  (different key column name or type) */
	uint32_t n_keys;
	struct kx_keyref *keys;        /* == inline_keys unless n_keys > KX_INLINE_KEYS */
	struct kx_keyref inline_keys[KX_INLINE_KEYS];

	/* Hints in comments anywhere in the statement:
	 *   shard_key=VALUE (VALUE bare, or '...' quoted) and shard=N.
	 * Pointers into the statement text. */
	const char *hint_key;
	size_t hint_key_len;
	bool has_hint_shard;
	int32_t hint_shard;

	/* For KX_STMT_SET / KX_STMT_RESET: the (lower-cased, unquoted unless it
	 * was "quoted") parameter name and the raw value text (as written, with
	 * quotes, may be a list "a, b"); set_local for SET LOCAL. Pointers into
	 * the statement text or into name_buf. RESET ALL: name "all". */
	const char *set_name;
	size_t set_name_len;
	const char *set_value;
	size_t set_value_len;
	bool set_local;
	char name_buf[64];

	unsigned session_flags; /* enum kx_session_flag bits */

	/* The first function called that is not known read-only (schema-qualified
	 * as written, lower-cased), for the error/SHOW ROUTE text. */
	char unknown_function[64];

	/* Why: a static English phrase for SHOW ROUTE and errors, e.g.
	 * "key order_id = 42 in WHERE", "OR at top level", "no WHERE clause". */
	const char *reason;
	bool used_parser;   /* the libpg_query fallback decided */
	bool syntax_error;  /* the parser rejected the statement: it cannot run
			       anywhere, so Postgres may report the error */

	size_t stmt_end;    /* offset just past this statement (after its ';') */
};

/* Ask whether a relation is a sharded table. schema is NULL when unqualified.
 * Names are already case-folded/unquoted. Returns NULL if not sharded. */
typedef const struct sm_table *(*kx_table_fn)(void *ctx, const char *schema, size_t schema_len,
					       const char *name, size_t name_len);
/* Ask whether a function is known to have no side effects (built-in
 * immutable/stable functions, pure volatile ones like random/now, and the
 * read_only_functions config list). schema NULL when unqualified. */
typedef bool (*kx_function_fn)(void *ctx, const char *schema, size_t schema_len, const char *name,
			       size_t name_len);

struct kx_env {
	kx_table_fn table;
	kx_function_fn function_is_read_only;
	void *ctx;
	bool use_parser; /* allow the libpg_query fallback (default true) */
};

void kx_result_init(struct kx_result *r);
void kx_result_destroy(struct kx_result *r); /* frees keys when heap-allocated */

/*
 * Analyse the statement that starts at sql[offset] (sql is len bytes, need
 * not be NUL-terminated). Fills *r (init'ed by the callee; caller destroys).
 * Returns 0, or SR_ENOMEM; an unterminated quote/comment is not an error
 * here: verdict KX_NOT_SURE, stmt as far as known, stmt_end = len.
 * Literal keys that are not valid for the key type (e.g. 'abc' for bigint)
 * give KX_NOT_SURE with reason "key literal not valid for type".
 */
int kx_extract(const struct kx_env *env, const char *sql, size_t len, size_t offset,
	       struct kx_result *r) SR_MUST_CHECK;

/* Just the fast path (no libpg_query); for tests and benchmarks. */
int kx_extract_fast(const struct kx_env *env, const char *sql, size_t len, size_t offset,
		    struct kx_result *r) SR_MUST_CHECK;

/* Just the libpg_query path on a single statement; for tests (differential
 * testing against the fast path). */
int kx_extract_parsed(const struct kx_env *env, const char *sql, size_t len,
		      struct kx_result *r) SR_MUST_CHECK;

const char *kx_stmt_name(enum kx_stmt s);
const char *kx_verdict_name(enum kx_verdict v);

/* Shared by keyextract.c and keyparse.c (not for other callers). */

/* Append a key to r (inline up to KX_INLINE_KEYS, then on the heap). */
int kx_result_add_key(struct kx_result *r, const struct kx_keyref *k) SR_MUST_CHECK;

/* Does a cast to the type named name (lower case, no modifiers) keep a key
 * of type t the same value? bigint: int2/int4/int8/smallint/int/integer/
 * bigint; text: text/varchar; uuid: uuid. */
bool kx_cast_fits(enum sm_key_type t, const char *name, size_t n);

/* Is name one of the session-level advisory lock functions? */
bool kx_is_session_advisory_lock(const char *name, size_t n);

#endif
