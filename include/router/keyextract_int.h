/*
 * keyextract_int.h - internals shared by the fast-path key extractor's
 * files: router/keyextract.c (tokens, the scan, relations, functions, the
 * API), router/keystmt.c (statement kinds, utility statements) and
 * router/keywhere.c (keys in WHERE and INSERT VALUES, verdicts). Not for
 * other modules. Any thread (per-call state).
 */
#ifndef SR_ROUTER_KEYEXTRACT_INT_H
#define SR_ROUTER_KEYEXTRACT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "router/keyextract.h"
#include "router/keylex.h"

#define KX_TOK_INLINE 256
#define KX_TOK_PAD 4 /* KL_EOF sentinels after the last token */
#define KX_MAX_DEPTH 48
#define KX_MAX_TABS 16
#define KX_MAX_CTES 16
#define KX_NAME_MAX 128
#define KX_NONE UINT32_MAX

struct kx_tab {
	const struct sm_table *t; /* NULL: not sharded */
	uint32_t schema_tok, name_tok, alias_tok;
};

struct kx_level {
	uint8_t from;	     /* inside a FROM/USING list at this depth */
	uint8_t special;     /* inside extract(...)/substring(...)...: FROM is syntax */
	uint8_t alias_after; /* a FROM item in parens: an alias may follow ")" */
};

struct kx_cx {
	const struct kx_env *env;
	const char *s;
	struct kl_token *tk;
	uint32_t n;
	struct kx_result *r;
	struct kx_tab top[KX_MAX_TABS];
	uint32_t ntop;
	uint32_t cte[KX_MAX_CTES];
	uint32_t ncte;
	enum kl_kw main_kw; /* SELECT, INSERT, UPDATE, DELETE, MERGE */
	uint32_t where_b, where_e, set_b, set_e, cols_b, cols_e, values_tok;
	unsigned n_where;
	bool in_where, in_set, has_cols, insert_select, insert_default, setop;
	bool nested_sharded, after_target;
	uint32_t pending_paren; /* token index of a FROM item's "(" */
	const char *notsure;	/* first reason to decline */
	int err;
};

static inline bool kx_is_ident(const struct kl_token *t)
{
	return t->type == KL_IDENT || t->type == KL_QIDENT;
}

static inline bool kx_kw(const struct kx_cx *cx, uint32_t i, enum kl_kw kw)
{
	return cx->tk[i].type == KL_IDENT && cx->tk[i].kw == kw;
}

static inline unsigned kx_kwflags(const struct kx_cx *cx, uint32_t i)
{
	return cx->tk[i].kwflags;
}

static inline bool kx_op(const struct kx_cx *cx, uint32_t i, char c)
{
	return cx->tk[i].type == KL_OP && cx->tk[i].len == 1 && cx->s[cx->tk[i].start] == c;
}

/* Shared helpers (router/keyextract.c). */
bool kx_word(const struct kx_cx *cx, uint32_t i, const char *w);
void kx_decline(struct kx_cx *cx, const char *why);
/* Index of the ")" matching the "(" at i, or n if unbalanced. */
uint32_t kx_match(const struct kx_cx *cx, uint32_t i);
/* Is an alias allowed at i (an identifier that is not a reserved word)? */
bool kx_alias_ok(const struct kx_cx *cx, uint32_t i);

/* router/keyextract.c: relations and the scan. */
enum kx_item_mode { KX_ITEM_FROM, KX_ITEM_INSERT, KX_ITEM_UPDATE, KX_ITEM_PLAIN };
/* A relation reference at i; returns where the scan continues. */
uint32_t kx_item(struct kx_cx *cx, uint32_t i, bool top, enum kx_item_mode mode);
/* One pass over the tokens from start (relations, calls, clauses). */
void kx_scan(struct kx_cx *cx, uint32_t start);
/* SELECT/INSERT/UPDATE/DELETE/MERGE (with WITH) from token i, with verdict. */
void kx_dml(struct kx_cx *cx, uint32_t i);

/* router/keystmt.c: the statement kind from the leading keyword(s), and the
 * utility statements; sets the verdict. */
void kx_dispatch(struct kx_cx *cx);

/* router/keywhere.c: values to keys, and the verdicts of the DML shapes. */
struct kx_val {
	uint32_t tok; /* the literal or parameter token */
	bool neg;
	bool has_cast;
	uint32_t cast_tok;
};
uint32_t kx_value(const struct kx_cx *cx, uint32_t i, struct kx_val *v);
void kx_verdict_where(struct kx_cx *cx);
void kx_verdict_insert(struct kx_cx *cx);
void kx_set_verdict(struct kx_cx *cx, enum kx_verdict v, const char *why);

#endif
