/*
 * keystmt.c - the fast path's utility statements (see router/keyextract.c):
 * SET / RESET / SHOW (name and raw value), BEGIN / START TRANSACTION modes,
 * COMMIT / ROLLBACK / SAVEPOINT / PREPARE TRANSACTION, LISTEN, NOTIFY,
 * DECLARE (WITH HOLD), EXPLAIN [ANALYZE], COPY, DDL (relations named,
 * CREATE TEMP), maintenance, and the dispatch on the leading keyword.
 * Any thread.
 */
#include <string.h>

#include "router/keyextract_int.h"

/* The name of SET/RESET/SHOW at i (a.b.c, folded) into name_buf; returns
 * the index after it. */
static uint32_t kx_set_name(struct kx_cx *cx, uint32_t i)
{
	struct kx_result *r = cx->r;
	size_t o = 0, cap = sizeof(r->name_buf) - 1;
	for (;;) {
		if (!kx_is_ident(&cx->tk[i]))
			break;
		size_t n = kl_ident_copy(cx->s, &cx->tk[i], r->name_buf + o, cap - o);
		if (n == (size_t)-1) {
			kx_decline(cx, "parameter name too long");
			break;
		}
		o += n;
		i++;
		if (cx->tk[i].type != KL_DOT || o >= cap)
			break;
		r->name_buf[o++] = '.';
		i++;
	}
	r->name_buf[o] = '\0';
	r->set_name = r->name_buf;
	r->set_name_len = o;
	return i;
}

static void kx_fixed_name(struct kx_result *r, const char *name)
{
	size_t n = strlen(name);
	memcpy(r->name_buf, name, n + 1);
	r->set_name = r->name_buf;
	r->set_name_len = n;
}

static void kx_set_value(struct kx_cx *cx, uint32_t i)
{
	if (i >= cx->n)
		return;
	const struct kl_token *last = &cx->tk[cx->n - 1];
	cx->r->set_value = cx->s + cx->tk[i].start;
	cx->r->set_value_len = last->start + last->len - cx->tk[i].start;
}

/* SET [SESSION|LOCAL] name {TO|=} value, SET TIME ZONE v, and friends. */
static void kx_set(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	uint32_t i = 1;
	r->stmt = KX_STMT_SET;
	if (kx_kw(cx, i, KW_LOCAL) || kx_kw(cx, i, KW_SESSION)) {
		bool sess_kw =
		    kx_kw(cx, i + 1, KW_CHARACTERISTICS) || kx_kw(cx, i + 1, KW_AUTHORIZATION);
		if (!sess_kw) {
			r->set_local = kx_kw(cx, i, KW_LOCAL);
			i++;
		}
	}
	if (kx_kw(cx, i, KW_TIME) && kx_kw(cx, i + 1, KW_ZONE)) {
		kx_fixed_name(r, "timezone");
		return kx_set_value(cx, i + 2);
	}
	static const struct {
		enum kl_kw kw, kw2;
		const char *name;
	} special[] = {
	    {KW_SESSION, KW_AUTHORIZATION, "session_authorization"},
	    {KW_SESSION, KW_CHARACTERISTICS, "session_characteristics"},
	    {KW_TRANSACTION, KW_NONE, "transaction"},
	    {KW_ROLE, KW_NONE, "role"},
	    {KW_NAMES, KW_NONE, "client_encoding"},
	    {KW_SCHEMA, KW_NONE, "search_path"},
	};
	for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++) {
		if (kx_kw(cx, i, special[k].kw) &&
		    (special[k].kw2 == KW_NONE || kx_kw(cx, i + 1, special[k].kw2)) &&
		    !kx_kw(cx, i + 1, KW_TO) && !kx_op(cx, i + 1, '=')) {
			kx_fixed_name(r, special[k].name);
			return kx_set_value(cx, i + (special[k].kw2 == KW_NONE ? 1 : 2));
		}
	}
	i = kx_set_name(cx, i);
	if (kx_kw(cx, i, KW_TO) || kx_op(cx, i, '='))
		kx_set_value(cx, i + 1);
	else
		kx_decline(cx, "SET not understood");
}

/* RESET name | ALL | TIME ZONE ...; SHOW likewise. */
static void kx_reset_show(struct kx_cx *cx, enum kx_stmt st)
{
	struct kx_result *r = cx->r;
	r->stmt = st;
	if (kx_kw(cx, 1, KW_ALL))
		kx_fixed_name(r, "all");
	else if (kx_kw(cx, 1, KW_TIME) && kx_kw(cx, 2, KW_ZONE))
		kx_fixed_name(r, "timezone");
	else if (kx_kw(cx, 1, KW_SESSION) && kx_kw(cx, 2, KW_AUTHORIZATION))
		kx_fixed_name(r, "session_authorization");
	else if (kx_kw(cx, 1, KW_TRANSACTION) && kx_word(cx, 2, "isolation"))
		kx_fixed_name(r, "transaction_isolation");
	else
		(void)kx_set_name(cx, 1);
}

/* BEGIN / START TRANSACTION modes: READ ONLY / READ WRITE (last wins). */
static void kx_begin(struct kx_cx *cx)
{
	cx->r->stmt = KX_STMT_BEGIN;
	for (uint32_t i = 1; i + 1 < cx->n; i++) {
		if (kx_kw(cx, i, KW_READ) && kx_kw(cx, i + 1, KW_ONLY))
			cx->r->read_only_txn = true;
		else if (kx_kw(cx, i, KW_READ) && kx_kw(cx, i + 1, KW_WRITE))
			cx->r->read_only_txn = false;
	}
}

/* Relations named by DDL-ish statements: TABLE [IF [NOT] EXISTS] [ONLY] a, b;
 * TRUNCATE/LOCK/VACUUM/ANALYZE [TABLE] a, b; CREATE INDEX ... ON [ONLY] t. */
static void kx_ddl_tables(struct kx_cx *cx)
{
	bool list = kx_kw(cx, 0, KW_TRUNCATE) || kx_kw(cx, 0, KW_LOCK) || kx_kw(cx, 0, KW_VACUUM) ||
		    kx_kw(cx, 0, KW_ANALYZE) || kx_kw(cx, 0, KW_ANALYSE);
	uint32_t i = 1;
	if (!list) {
		while (i < cx->n && !kx_kw(cx, i, KW_TABLE) &&
		       !(kx_kw(cx, i, KW_ON) && kx_kw(cx, 1, KW_INDEX)) &&
		       !(kx_kw(cx, i, KW_ON) && kx_word(cx, 2, "index")))
			i++;
		if (i >= cx->n)
			return;
		i++;
	}
	while (kx_kw(cx, i, KW_TABLE) || kx_kw(cx, i, KW_IF) || kx_kw(cx, i, KW_NOT) ||
	       kx_kw(cx, i, KW_EXISTS) || kx_kw(cx, i, KW_ONLY) || kx_kw(cx, i, KW_VERBOSE) ||
	       kx_kw(cx, i, KW_FREEZE) || kx_kw(cx, i, KW_ANALYZE))
		i++;
	for (;;) {
		if (!kx_is_ident(&cx->tk[i]))
			return;
		i = kx_item(cx, i, true, KX_ITEM_PLAIN);
		if (!list || cx->tk[i].type != KL_COMMA)
			return;
		i++;
	}
}

static void kx_ddl(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	r->stmt = KX_STMT_DDL;
	r->is_write = true;
	if (kx_kw(cx, 0, KW_CREATE)) {
		uint32_t i = 1;
		if (kx_kw(cx, i, KW_OR) && kx_word(cx, i + 1, "replace"))
			i += 2;
		if (kx_kw(cx, i, KW_LOCAL) || kx_kw(cx, i, KW_GLOBAL))
			i++;
		if (kx_kw(cx, i, KW_TEMP) || kx_kw(cx, i, KW_TEMPORARY))
			r->session_flags |= KX_SESS_TEMP_TABLE;
	}
	kx_ddl_tables(cx);
}

/* EXPLAIN [ANALYZE] [VERBOSE] stmt | EXPLAIN (opt [value], ...) stmt. */
static void kx_explain(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	uint32_t i = 1;
	bool analyze = false;
	if (cx->tk[i].type == KL_LPAREN) {
		uint32_t c = kx_match(cx, i);
		for (uint32_t j = i + 1; j < c; j++) {
			if (!kx_kw(cx, j, KW_ANALYZE) && !kx_kw(cx, j, KW_ANALYSE))
				continue;
			analyze = !(kx_kw(cx, j + 1, KW_FALSE) || kx_word(cx, j + 1, "off") ||
				    (cx->tk[j + 1].type == KL_INTEGER &&
				     cx->s[cx->tk[j + 1].start] == '0'));
		}
		i = c + 1;
	} else {
		while (kx_kw(cx, i, KW_ANALYZE) || kx_kw(cx, i, KW_ANALYSE) ||
		       kx_kw(cx, i, KW_VERBOSE)) {
			analyze |= !kx_kw(cx, i, KW_VERBOSE);
			i++;
		}
	}
	kx_dml(cx, i);
	r->stmt = KX_STMT_EXPLAIN;
	r->is_write = analyze && r->is_write;
}

/* DECLARE name [BINARY] [...] CURSOR [WITH|WITHOUT HOLD] FOR query. */
static void kx_declare(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	uint32_t i = 1;
	while (i < cx->n && !kx_kw(cx, i, KW_FOR)) {
		if (kx_kw(cx, i, KW_WITH) && kx_kw(cx, i + 1, KW_HOLD))
			r->session_flags |= KX_SESS_WITH_HOLD;
		i++;
	}
	kx_dml(cx, i + 1);
	r->stmt = KX_STMT_DECLARE;
}

static void kx_simple(struct kx_cx *cx, enum kx_stmt st, bool write)
{
	cx->r->stmt = st;
	cx->r->is_write = write;
}

/* COPY t [(cols)] FROM|TO ..., COPY (query) TO ... */
static void kx_copy(struct kx_cx *cx)
{
	kx_simple(cx, KX_STMT_COPY, false);
	if (cx->tk[1].type == KL_LPAREN) {
		kx_scan(cx, 1);
		return;
	}
	uint32_t i = kx_item(cx, 1, true, KX_ITEM_PLAIN);
	if (cx->tk[i].type == KL_LPAREN)
		i = kx_match(cx, i) + 1;
	cx->r->is_write = kx_kw(cx, i, KW_FROM);
}

static bool kx_transaction(struct kx_cx *cx, enum kl_kw kw)
{
	bool prepared = kx_kw(cx, 1, KW_PREPARED);
	switch ((int)kw) {
	case KW_BEGIN:
		kx_begin(cx);
		return true;
	case KW_START:
		kx_begin(cx);
		return true;
	case KW_COMMIT:
	case KW_END:
		kx_simple(cx, prepared ? KX_STMT_OTHER : KX_STMT_COMMIT, prepared);
		return true;
	case KW_ROLLBACK:
	case KW_ABORT:
		for (uint32_t i = 1; i < cx->n; i++)
			if (kx_kw(cx, i, KW_TO)) {
				kx_simple(cx, KX_STMT_SAVEPOINT, false);
				return true;
			}
		kx_simple(cx, prepared ? KX_STMT_OTHER : KX_STMT_ROLLBACK, prepared);
		return true;
	case KW_SAVEPOINT:
	case KW_RELEASE:
		kx_simple(cx, KX_STMT_SAVEPOINT, false);
		return true;
	case KW_PREPARE:
		if (kx_kw(cx, 1, KW_TRANSACTION)) {
			kx_simple(cx, KX_STMT_OTHER, true);
		} else {
			kx_simple(cx, KX_STMT_PREPARE, false);
			cx->r->session_flags |= KX_SESS_PREPARE;
		}
		return true;
	default:
		return false;
	}
}

static bool kx_session(struct kx_cx *cx, enum kl_kw kw)
{
	switch ((int)kw) {
	case KW_SET:
		kx_set(cx);
		return true;
	case KW_RESET:
		kx_reset_show(cx, KX_STMT_RESET);
		return true;
	case KW_SHOW:
		kx_reset_show(cx, KX_STMT_SHOW);
		return true;
	case KW_DISCARD:
		kx_simple(cx, KX_STMT_DISCARD, false);
		return true;
	case KW_EXECUTE:
		kx_simple(cx, KX_STMT_EXECUTE, true);
		return true;
	case KW_DEALLOCATE:
		kx_simple(cx, KX_STMT_DEALLOCATE, false);
		return true;
	case KW_LISTEN:
		kx_simple(cx, KX_STMT_LISTEN, false);
		cx->r->session_flags |= KX_SESS_LISTEN;
		return true;
	case KW_UNLISTEN:
		kx_simple(cx, KX_STMT_UNLISTEN, false);
		return true;
	case KW_NOTIFY:
		kx_simple(cx, KX_STMT_NOTIFY, true);
		return true;
	case KW_FETCH:
	case KW_MOVE:
	case KW_CLOSE:
		kx_simple(cx, KX_STMT_CURSOR, false);
		return true;
	case KW_CALL:
		kx_simple(cx, KX_STMT_CALL, true);
		return true;
	case KW_DO:
		kx_simple(cx, KX_STMT_DO, true);
		return true;
	case KW_LOCK:
		kx_simple(cx, KX_STMT_LOCK, true);
		kx_ddl_tables(cx);
		return true;
	default:
		return false;
	}
}

static bool kx_is_ddl(const struct kx_cx *cx, enum kl_kw kw)
{
	return kw == KW_CREATE || kw == KW_ALTER || kw == KW_DROP || kw == KW_TRUNCATE ||
	       kw == KW_COMMENT || kw == KW_GRANT || kw == KW_REVOKE || kw == KW_REFRESH ||
	       kx_word(cx, 0, "security") || kx_word(cx, 0, "import") || kx_word(cx, 0, "reassign");
}

void kx_dispatch(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	enum kl_kw kw = cx->tk[0].type == KL_IDENT ? (enum kl_kw)cx->tk[0].kw : KW_NONE;
	if (kw == KW_SELECT || kw == KW_WITH || kw == KW_INSERT || kw == KW_UPDATE ||
	    kw == KW_DELETE || kw == KW_MERGE || kw == KW_VALUES || kw == KW_TABLE ||
	    cx->tk[0].type == KL_LPAREN)
		return kx_dml(cx, 0);
	if (kw == KW_EXPLAIN)
		return kx_explain(cx);
	if (kw == KW_DECLARE)
		return kx_declare(cx);
	if (kw == KW_COPY)
		kx_copy(cx);
	else if (kx_transaction(cx, kw) || kx_session(cx, kw))
		;
	else if (kx_is_ddl(cx, kw))
		kx_ddl(cx);
	else if (kw == KW_VACUUM || kw == KW_ANALYZE || kw == KW_ANALYSE || kw == KW_CLUSTER ||
		 kw == KW_REINDEX || kw == KW_CHECKPOINT) {
		kx_simple(cx, KX_STMT_MAINT, true);
		kx_ddl_tables(cx);
	} else {
		kx_simple(cx, KX_STMT_OTHER, true);
		kx_decline(cx, "statement not understood");
	}
	if (cx->notsure)
		kx_set_verdict(cx, KX_NOT_SURE, cx->notsure);
	else
		kx_set_verdict(cx, KX_NO_KEY,
			       r->names_table ? "utility statement on a relation"
					      : "utility statement");
}
