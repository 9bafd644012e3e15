/*
 * keywhere.c - the keys of the fast path (see router/keyextract.c): a value
 * ([-]number, string, $n, with one ::type) turned into a key of the table's
 * type; the top-level AND chain of a WHERE clause (key = v, v = key,
 * key IN (v, ...), parentheses that only group ANDs); INSERT ... VALUES rows;
 * and the verdict of SELECT/UPDATE/DELETE/INSERT. Any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "router/keyextract_int.h"
#include "shardmap/hash.h"
#include "shardmap/key.h"

/* Parse a value at i; returns the index after it, or KX_NONE. */
uint32_t kx_value(const struct kx_cx *cx, uint32_t i, struct kx_val *v)
{
	memset(v, 0, sizeof(*v));
	if (kx_op(cx, i, '-') || kx_op(cx, i, '+')) {
		v->neg = kx_op(cx, i, '-');
		i++;
		if (cx->tk[i].type != KL_INTEGER && cx->tk[i].type != KL_NUMERIC)
			return KX_NONE;
	}
	switch ((enum kl_type)cx->tk[i].type) {
	case KL_INTEGER:
	case KL_NUMERIC:
	case KL_STRING:
	case KL_ESTRING:
	case KL_DOLLAR:
	case KL_PARAM:
		break;
	case KL_EOF:
	case KL_IDENT:
	case KL_QIDENT:
	case KL_XSTRING:
	case KL_OP:
	case KL_TYPECAST:
	case KL_LPAREN:
	case KL_RPAREN:
	case KL_LBRACKET:
	case KL_RBRACKET:
	case KL_COMMA:
	case KL_DOT:
	case KL_COLON:
	case KL_SEMI:
	case KL_ERROR:
		return KX_NONE;
	}
	v->tok = i++;
	if (cx->tk[i].type == KL_TYPECAST) {
		if (cx->tk[i + 1].type != KL_IDENT || cx->tk[i + 2].type == KL_LPAREN ||
		    cx->tk[i + 2].type == KL_LBRACKET || cx->tk[i + 2].type == KL_DOT ||
		    cx->tk[i + 2].type == KL_TYPECAST)
			return KX_NONE;
		v->has_cast = true;
		v->cast_tok = i + 1;
		i += 2;
	}
	return i;
}

/* Turn a value into a key for a table of type kt. Returns 0 and fills *k,
 * or sets a decline reason and returns -1. */
static int kx_value_key(struct kx_cx *cx, const struct kx_val *v, enum sm_key_type kt,
			struct kx_keyref *k)
{
	const struct kl_token *t = &cx->tk[v->tok];
	if (v->has_cast) {
		char name[32];
		size_t n = kl_ident_copy(cx->s, &cx->tk[v->cast_tok], name, sizeof(name));
		if (n == (size_t)-1 || !kx_cast_fits(kt, name, n)) {
			kx_decline(cx, "key cast to another type");
			return -1;
		}
	}
	memset(k, 0, sizeof(*k));
	if (t->type == KL_PARAM) {
		unsigned long p = strtoul(cx->s + t->start + 1, NULL, 10);
		if (t->len > 6 || p < 1 || p > UINT16_MAX) {
			kx_decline(cx, "parameter number out of range");
			return -1;
		}
		k->is_param = true;
		k->param = (uint16_t)p;
		return 0;
	}
	char buf[256];
	const char *val;
	size_t vn;
	if (t->type == KL_NUMERIC) {
		kx_decline(cx, "decimal literal for the key");
		return -1;
	}
	if (t->type == KL_INTEGER) {
		if (kt != SM_KEY_BIGINT) {
			kx_decline(cx, "number literal for a non-integer key");
			return -1;
		}
		if (t->len + 1 > sizeof(buf)) {
			kx_decline(cx, "key literal not valid for type");
			return -1;
		}
		buf[0] = '-';
		memcpy(buf + 1, cx->s + t->start, t->len);
		val = v->neg ? buf : buf + 1;
		vn = t->len + (v->neg ? 1 : 0);
	} else if (kl_string_value(cx->s, t, buf, sizeof(buf), &val, &vn) != 0) {
		kx_decline(cx, "key string literal not decoded");
		return -1;
	}
	struct sm_key key;
	if (sm_key_from_text(kt, val, vn, &key, NULL) != 0) {
		kx_decline(cx, "key literal not valid for type");
		return -1;
	}
	k->hash = sm_hash_key(&key);
	return 0;
}

static void kx_add_key(struct kx_cx *cx, const struct kx_keyref *k)
{
	if (kx_result_add_key(cx->r, k) != 0)
		cx->err = SR_ENOMEM;
}

/* ---- keys in the top-level WHERE ---- */

static bool kx_tok_eq(const struct kx_cx *cx, uint32_t a, uint32_t b)
{
	char buf[KX_NAME_MAX];
	size_t n = kl_ident_copy(cx->s, &cx->tk[a], buf, sizeof(buf));
	return n != (size_t)-1 && kl_ident_eq(cx->s, &cx->tk[b], buf, n);
}

static bool kx_is_key_col(const struct kx_cx *cx, uint32_t i, const struct sm_table *t)
{
	return kl_ident_eq(cx->s, &cx->tk[i], t->key_column, strlen(t->key_column));
}

/* Does the qualifier parts[0..np-2] name the top relation e? */
static bool kx_qual_matches(const struct kx_cx *cx, const struct kx_tab *e, const uint32_t *parts,
			    unsigned np)
{
	if (np == 1)
		return true;
	if (np == 2)
		return kx_tok_eq(cx, e->alias_tok != KX_NONE ? e->alias_tok : e->name_tok,
				 parts[0]);
	if (e->alias_tok != KX_NONE || !kx_tok_eq(cx, e->name_tok, parts[1]))
		return false;
	if (e->schema_tok != KX_NONE)
		return kx_tok_eq(cx, e->schema_tok, parts[0]);
	return kl_ident_eq(cx->s, &cx->tk[parts[0]], e->t->schema, strlen(e->t->schema));
}

/* A column reference [a.[b.]]col at i that is not a call or subscript:
 * returns the top sharded table whose key column it names (or NULL);
 * *next is the index after it, KX_NONE when i is no plain column reference. */
static const struct sm_table *kx_colref(const struct kx_cx *cx, uint32_t i, uint32_t *next)
{
	uint32_t parts[3], j = i + 1;
	unsigned np = 0;
	*next = KX_NONE;
	if (!kx_is_ident(&cx->tk[i]) || (kx_kwflags(cx, i) & KWF_NOALIAS))
		return NULL;
	parts[np++] = i;
	while (cx->tk[j].type == KL_DOT && kx_is_ident(&cx->tk[j + 1]) && np < 3) {
		parts[np++] = j + 1;
		j += 2;
	}
	enum kl_type nt = (enum kl_type)cx->tk[j].type;
	if (nt == KL_DOT || nt == KL_LPAREN || nt == KL_LBRACKET)
		return NULL;
	*next = j;
	for (uint32_t k = 0; k < cx->ntop; k++) {
		const struct kx_tab *e = &cx->top[k];
		if (e->t && kx_is_key_col(cx, parts[np - 1], e->t) &&
		    kx_qual_matches(cx, e, parts, np))
			return e->t;
	}
	return NULL;
}

/* Any identifier in [b, e) spelled like a top sharded table's key column? */
static bool kx_mentions_key(const struct kx_cx *cx, uint32_t b, uint32_t e)
{
	for (uint32_t i = b; i < e; i++) {
		if (!kx_is_ident(&cx->tk[i]))
			continue;
		for (uint32_t k = 0; k < cx->ntop; k++)
			if (cx->top[k].t && kx_is_key_col(cx, i, cx->top[k].t))
				return true;
	}
	return false;
}

/* OR at depth 0 of [b, e) (parentheses and CASE ... END nest). */
static bool kx_top_or(const struct kx_cx *cx, uint32_t b, uint32_t e)
{
	int depth = 0;
	for (uint32_t i = b; i < e; i++) {
		const struct kl_token *t = &cx->tk[i];
		if (t->type == KL_LPAREN || kx_kw(cx, i, KW_CASE))
			depth++;
		else if (t->type == KL_RPAREN || kx_kw(cx, i, KW_END))
			depth--;
		else if (depth == 0 && kx_kw(cx, i, KW_OR))
			return true;
	}
	return false;
}

struct kx_wstate {
	bool found; /* a key comparison */
	bool other; /* the key column in some other condition */
};

/* key IN (v, v, ...) from the "(" at i to ce; all or nothing. */
static bool kx_in_list(struct kx_cx *cx, uint32_t i, uint32_t ce, const struct sm_table *t)
{
	if (cx->tk[i].type != KL_LPAREN || kx_match(cx, i) != ce - 1)
		return false;
	uint32_t j = i + 1;
	for (;;) {
		struct kx_val v;
		uint32_t end = kx_value(cx, j, &v);
		if (end == KX_NONE || (cx->tk[end].type != KL_COMMA && end != ce - 1))
			return false;
		j = end + 1;
		if (end == ce - 1)
			break;
	}
	for (j = i + 1; j < ce;) {
		struct kx_val v;
		struct kx_keyref k;
		j = kx_value(cx, j, &v) + 1;
		if (kx_value_key(cx, &v, t->key_type, &k) == 0)
			kx_add_key(cx, &k);
	}
	return true;
}

/* One conjunct [cb, ce): key = v, v = key, key IN (...). */
static bool kx_key_cond(struct kx_cx *cx, uint32_t cb, uint32_t ce)
{
	struct kx_val v;
	struct kx_keyref k;
	uint32_t j;
	const struct sm_table *t = kx_colref(cx, cb, &j);
	if (t && kx_op(cx, j, '=')) {
		if (kx_value(cx, j + 1, &v) != ce)
			return false;
		if (kx_value_key(cx, &v, t->key_type, &k) == 0)
			kx_add_key(cx, &k);
		return true;
	}
	if (t && kx_kw(cx, j, KW_IN))
		return kx_in_list(cx, j + 1, ce, t);
	j = kx_value(cx, cb, &v);
	if (j == KX_NONE || !kx_op(cx, j, '='))
		return false;
	uint32_t end;
	t = kx_colref(cx, j + 1, &end);
	if (!t || end != ce)
		return false;
	if (kx_value_key(cx, &v, t->key_type, &k) == 0)
		kx_add_key(cx, &k);
	return true;
}

static void kx_where(struct kx_cx *cx, uint32_t b, uint32_t e, int nest, struct kx_wstate *ws);

static void kx_conjunct(struct kx_cx *cx, uint32_t cb, uint32_t ce, int nest, struct kx_wstate *ws)
{
	if (cb >= ce) {
		kx_decline(cx, "empty condition");
		return;
	}
	if (cx->tk[cb].type == KL_LPAREN && kx_match(cx, cb) == ce - 1 && nest < 8 &&
	    !kx_top_or(cx, cb + 1, ce - 1)) {
		kx_where(cx, cb + 1, ce - 1, nest + 1, ws); /* ( a AND b ) */
		return;
	}
	if (kx_key_cond(cx, cb, ce))
		ws->found = true;
	else if (kx_mentions_key(cx, cb, ce))
		ws->other = true;
}

/* Split [b, e) at AND on depth 0 (not the AND of BETWEEN). */
static void kx_where(struct kx_cx *cx, uint32_t b, uint32_t e, int nest, struct kx_wstate *ws)
{
	int depth = 0;
	bool between = false;
	uint32_t cb = b;
	for (uint32_t i = b; i <= e; i++) {
		if (i < e) {
			if (cx->tk[i].type == KL_LPAREN || kx_kw(cx, i, KW_CASE))
				depth++;
			else if (cx->tk[i].type == KL_RPAREN || kx_kw(cx, i, KW_END))
				depth--;
			if (depth == 0 && kx_kw(cx, i, KW_BETWEEN))
				between = true;
			if (depth != 0 || !kx_kw(cx, i, KW_AND))
				continue;
			if (between) {
				between = false;
				continue;
			}
		}
		kx_conjunct(cx, cb, i, nest, ws);
		cb = i + 1;
	}
}

/* ---- verdicts ---- */

void kx_set_verdict(struct kx_cx *cx, enum kx_verdict v, const char *why)
{
	cx->r->verdict = v;
	cx->r->reason = why;
}

/* The first top relation, if sharded; else a verdict is set and NULL. */
static const struct sm_table *kx_common_checks(struct kx_cx *cx)
{
	struct kx_result *r = cx->r;
	const struct sm_table *t = NULL;
	for (uint32_t k = 0; k < cx->ntop && !t; k++)
		t = cx->top[k].t;
	if (cx->notsure)
		kx_set_verdict(cx, KX_NOT_SURE, cx->notsure);
	else if (cx->nested_sharded)
		kx_set_verdict(cx, KX_NOT_SURE, "sharded table in a subquery");
	else if (!t)
		kx_set_verdict(cx, KX_NO_KEY, r->names_table ? "no sharded table" : "no table");
	else if (r->mixed_colocation)
		kx_set_verdict(cx, KX_NOT_SURE, "tables not co-located");
	else
		return t;
	return NULL;
}

/* Does the SET list [set_b, set_e) assign t's key column (as "key = ..."
 * or inside "(a, key) = ...")? */
static bool kx_set_touches_key(const struct kx_cx *cx, const struct sm_table *t)
{
	uint32_t i = cx->set_b;
	while (i < cx->set_e) {
		if (cx->tk[i].type == KL_LPAREN) {
			uint32_t c = kx_match(cx, i);
			for (uint32_t j = i + 1; j < c; j++)
				if (kx_is_ident(&cx->tk[j]) && kx_is_key_col(cx, j, t))
					return true;
		} else if (kx_is_ident(&cx->tk[i]) && kx_is_key_col(cx, i, t)) {
			return true;
		}
		int depth = 0;
		for (; i < cx->set_e; i++) {
			if (cx->tk[i].type == KL_LPAREN)
				depth++;
			else if (cx->tk[i].type == KL_RPAREN)
				depth--;
			else if (depth == 0 && cx->tk[i].type == KL_COMMA)
				break;
		}
		i++;
	}
	return false;
}

void kx_verdict_where(struct kx_cx *cx)
{
	const struct sm_table *t = kx_common_checks(cx);
	if (!t)
		return;
	if (cx->main_kw == KW_UPDATE && cx->set_e > cx->set_b && kx_set_touches_key(cx, t))
		return kx_set_verdict(cx, KX_NOT_SURE, "UPDATE changes the key");
	if (cx->setop)
		return kx_set_verdict(cx, KX_NOT_SURE, "set operation");
	if (cx->n_where == 0)
		return kx_set_verdict(cx, KX_NO_KEY, "no WHERE clause");
	if (cx->n_where > 1)
		return kx_set_verdict(cx, KX_NOT_SURE, "several WHERE clauses");
	if (kx_top_or(cx, cx->where_b, cx->where_e)) {
		if (kx_mentions_key(cx, cx->where_b, cx->where_e))
			return kx_set_verdict(cx, KX_NOT_SURE, "OR at top level");
		return kx_set_verdict(cx, KX_NO_KEY, "no key in WHERE");
	}
	struct kx_wstate ws = {false, false};
	kx_where(cx, cx->where_b, cx->where_e, 0, &ws);
	if (cx->notsure)
		return kx_set_verdict(cx, KX_NOT_SURE, cx->notsure);
	if (ws.found)
		return kx_set_verdict(cx, KX_KEY, "key in WHERE");
	if (ws.other)
		return kx_set_verdict(cx, KX_NOT_SURE, "key compared to an expression");
	kx_set_verdict(cx, KX_NO_KEY, "no key in WHERE");
}

/* Position of t's key in the INSERT column list, -1 if absent, -2 if odd. */
static int kx_insert_key_pos(const struct kx_cx *cx, const struct sm_table *t, int *ncols)
{
	int pos = -1, col = 0;
	for (uint32_t i = cx->cols_b; i < cx->cols_e; i += 2) {
		if (!kx_is_ident(&cx->tk[i]))
			return -2;
		if (kx_is_key_col(cx, i, t)) {
			if (pos != -1)
				return -2;
			pos = col;
		}
		col++;
		if (i + 1 < cx->cols_e && cx->tk[i + 1].type != KL_COMMA)
			return -2; /* col.field or col[1] */
	}
	*ncols = col;
	return pos;
}

/* VALUES (...), (...): the key at position pos of each row. */
static void kx_insert_rows(struct kx_cx *cx, const struct sm_table *t, int pos, int ncols)
{
	uint32_t i = cx->values_tok + 1;
	for (;;) {
		if (cx->tk[i].type != KL_LPAREN)
			return kx_decline(cx, "VALUES row not understood");
		uint32_t close = kx_match(cx, i), j = i + 1;
		int col = 0, depth = 0;
		uint32_t eb = j;
		for (; j <= close; j++) {
			enum kl_type ty = (enum kl_type)cx->tk[j].type;
			if (ty == KL_LPAREN)
				depth++;
			else if (ty == KL_RPAREN && j != close)
				depth--;
			if (depth != 0 || (ty != KL_COMMA && j != close))
				continue;
			if (col == pos) {
				struct kx_val v;
				struct kx_keyref k;
				if (kx_value(cx, eb, &v) != j)
					return kx_decline(cx, "key value is an expression");
				if (kx_value_key(cx, &v, t->key_type, &k) == 0)
					kx_add_key(cx, &k);
			}
			col++;
			eb = j + 1;
		}
		if (col != ncols)
			return kx_decline(cx, "VALUES row length differs from column list");
		i = close + 1;
		if (cx->tk[i].type != KL_COMMA)
			break;
		i++;
	}
	if (cx->tk[i].type != KL_EOF && !kx_kw(cx, i, KW_ON) && !kx_kw(cx, i, KW_RETURNING))
		kx_decline(cx, "INSERT tail not understood");
}

void kx_verdict_insert(struct kx_cx *cx)
{
	const struct sm_table *t = kx_common_checks(cx);
	if (!t)
		return;
	if (cx->top[0].t != t)
		return kx_set_verdict(cx, KX_NOT_SURE, "INSERT target not understood");
	if (cx->insert_default)
		return kx_set_verdict(cx, KX_NO_KEY, "INSERT DEFAULT VALUES");
	if (cx->insert_select)
		return kx_set_verdict(cx, KX_NO_KEY, "INSERT ... SELECT");
	if (!cx->has_cols)
		return kx_set_verdict(cx, KX_NOT_SURE, "INSERT without column list");
	int ncols = 0, pos = kx_insert_key_pos(cx, t, &ncols);
	if (pos == -2)
		return kx_set_verdict(cx, KX_NOT_SURE, "INSERT column list not understood");
	if (pos == -1)
		return kx_set_verdict(cx, KX_NO_KEY, "INSERT column list lacks key");
	if (cx->values_tok == KX_NONE)
		return kx_set_verdict(cx, KX_NOT_SURE, "INSERT source not understood");
	kx_insert_rows(cx, t, pos, ncols);
	if (cx->notsure)
		return kx_set_verdict(cx, KX_NOT_SURE, cx->notsure);
	if (cx->set_e > cx->set_b && kx_set_touches_key(cx, t))
		return kx_set_verdict(cx, KX_NOT_SURE, "ON CONFLICT changes the key");
	kx_set_verdict(cx, KX_KEY, "key in INSERT VALUES");
}
