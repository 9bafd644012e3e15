/*
 * keyextract.c - the fast path of the key extractor (see
 * include/router/keyextract.h): lex one statement into a token array
 * (router/keylex.c), then a recognizer walks the tokens once, tracking
 * parenthesis depth, for the statement kind, the relations, the function
 * calls, the locking clauses, and the top-level WHERE / SET / VALUES ranges;
 * a second look at those ranges finds the keys (router/keywhere.c); the
 * utility statements are in router/keystmt.c. Anything it cannot prove
 * gives KX_NOT_SURE, which kx_extract() hands to libpg_query
 * (router/keyparse.c).
 *
 * No allocation on the common path: tokens live on the stack (heap only past
 * KX_TOK_INLINE tokens), keys inline (heap only past KX_INLINE_KEYS).
 * Pure and re-entrant: any thread.
 */
#include "router/keyextract.h"

#include <stdlib.h>
#include <string.h>

#include "shardmap/hash.h"
#include "shardmap/key.h"

#include "router/keyextract_int.h"

/* ---- small helpers ---- */

bool kx_word(const struct kx_cx *cx, uint32_t i, const char *w)
{
	return cx->tk[i].type == KL_IDENT && kl_ident_eq(cx->s, &cx->tk[i], w, strlen(w));
}

void kx_decline(struct kx_cx *cx, const char *why)
{
	if (!cx->notsure)
		cx->notsure = why;
}

/* Index of the ")" matching the "(" at i, or n if unbalanced. */
uint32_t kx_match(const struct kx_cx *cx, uint32_t i)
{
	int depth = 0;
	for (; i < cx->n; i++) {
		if (cx->tk[i].type == KL_LPAREN)
			depth++;
		else if (cx->tk[i].type == KL_RPAREN && --depth == 0)
			return i;
	}
	return cx->n;
}

/* Is an alias allowed at i (an identifier that is not a reserved word)? */
bool kx_alias_ok(const struct kx_cx *cx, uint32_t i)
{
	return kx_is_ident(&cx->tk[i]) && !(kx_kwflags(cx, i) & KWF_NOALIAS);
}

/* ---- keys ---- */

int kx_result_add_key(struct kx_result *r, const struct kx_keyref *k)
{
	if (r->n_keys < KX_INLINE_KEYS) {
		r->keys[r->n_keys++] = *k;
		return 0;
	}
	if (r->n_keys == UINT32_MAX)
		return SR_ENOMEM;
	/* Grow on powers of two from the first spill. */
	if ((r->n_keys & (r->n_keys - 1)) == 0) {
		struct kx_keyref *nk;
		if (r->keys == r->inline_keys) {
			nk = malloc(sizeof(*nk) * r->n_keys * 2);
			if (nk)
				memcpy(nk, r->inline_keys, sizeof(*nk) * r->n_keys);
		} else {
			nk = realloc(r->keys, sizeof(*nk) * r->n_keys * 2);
		}
		if (!nk)
			return SR_ENOMEM;
		r->keys = nk;
	}
	r->keys[r->n_keys++] = *k;
	return 0;
}

static bool kx_name_in(const char *name, size_t n, const char *const *list)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, name, n) == 0)
			return true;
	return false;
}

bool kx_cast_fits(enum sm_key_type t, const char *name, size_t n)
{
	static const char *const ints[] = {"int8",    "bigint", "int4",	    "int",
					   "integer", "int2",	"smallint", NULL};
	static const char *const texts[] = {"text", "varchar", NULL};
	static const char *const uuids[] = {"uuid", NULL};
	switch (t) {
	case SM_KEY_BIGINT:
		return kx_name_in(name, n, ints);
	case SM_KEY_TEXT:
		return kx_name_in(name, n, texts);
	case SM_KEY_UUID:
		return kx_name_in(name, n, uuids);
	}
	return false;
}

bool kx_is_session_advisory_lock(const char *name, size_t n)
{
	static const char *const fns[] = {"pg_advisory_lock", "pg_advisory_lock_shared",
					  "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
					  NULL};
	return kx_name_in(name, n, fns);
}

/* ---- relations ---- */

static void kx_note_sharded(struct kx_cx *cx, const struct sm_table *t, bool top)
{
	struct kx_result *r = cx->r;
	if (!top)
		cx->nested_sharded = true;
	if (!r->table) {
		r->table = t;
		return;
	}
	if (r->table->key_type != t->key_type || strcmp(r->table->key_column, t->key_column) != 0)
		r->mixed_colocation = true;
}

static bool kx_is_cte(const struct kx_cx *cx, uint32_t name_tok)
{
	for (uint32_t j = 0; j < cx->ncte; j++) {
		const struct kl_token *c = &cx->tk[cx->cte[j]];
		char a[KX_NAME_MAX];
		size_t an = kl_ident_copy(cx->s, c, a, sizeof(a));
		if (an != (size_t)-1 && kl_ident_eq(cx->s, &cx->tk[name_tok], a, an))
			return true;
	}
	return false;
}

/* Record the relation [schema_tok.]name_tok; returns its top entry or NULL. */
static struct kx_tab *kx_relation(struct kx_cx *cx, uint32_t schema_tok, uint32_t name_tok,
				  bool top)
{
	if (schema_tok == KX_NONE && kx_is_cte(cx, name_tok))
		return NULL;
	char sch[KX_NAME_MAX], name[KX_NAME_MAX];
	size_t sn = 0, nn = kl_ident_copy(cx->s, &cx->tk[name_tok], name, sizeof(name));
	if (schema_tok != KX_NONE)
		sn = kl_ident_copy(cx->s, &cx->tk[schema_tok], sch, sizeof(sch));
	if (nn == (size_t)-1 || sn == (size_t)-1) {
		kx_decline(cx, "relation name too long");
		return NULL;
	}
	const struct sm_table *t = NULL;
	if (cx->env->table)
		t = cx->env->table(cx->env->ctx, schema_tok == KX_NONE ? NULL : sch, sn, name, nn);
	cx->r->names_table = true;
	if (t)
		kx_note_sharded(cx, t, top);
	else
		cx->r->names_unsharded = true;
	if (!top)
		return NULL;
	if (cx->ntop == KX_MAX_TABS) {
		kx_decline(cx, "too many relations");
		return NULL;
	}
	struct kx_tab *e = &cx->top[cx->ntop++];
	e->t = t;
	e->schema_tok = schema_tok;
	e->name_tok = name_tok;
	e->alias_tok = KX_NONE;
	return e;
}

/* Optional [AS] alias [(cols)] at i for a FROM item; returns next index. */
static uint32_t kx_alias(struct kx_cx *cx, uint32_t i, enum kx_item_mode mode, uint32_t *alias)
{
	bool as = kx_kw(cx, i, KW_AS);
	uint32_t a = as ? i + 1 : i;
	bool ok = false;
	switch (mode) {
	case KX_ITEM_FROM:
		ok = as ? kx_is_ident(&cx->tk[a]) : kx_alias_ok(cx, a);
		break;
	case KX_ITEM_INSERT:
		ok = as && kx_is_ident(&cx->tk[a]);
		break;
	case KX_ITEM_UPDATE:
		ok = as ? kx_is_ident(&cx->tk[a]) : kx_alias_ok(cx, a) && !kx_kw(cx, a, KW_SET);
		break;
	case KX_ITEM_PLAIN:
		ok = false;
		break;
	}
	if (!ok)
		return i;
	cx->tk[a].flags |= KLF_NAME;
	*alias = a;
	return a + 1;
}

/* A relation reference at i (after FROM, JOIN, ",", INTO, UPDATE, ...).
 * Returns the index where the scan continues. */
uint32_t kx_item(struct kx_cx *cx, uint32_t i, bool top, enum kx_item_mode mode)
{
	while (kx_kw(cx, i, KW_LATERAL) || kx_kw(cx, i, KW_ONLY))
		i++;
	if (cx->tk[i].type == KL_LPAREN) {
		cx->pending_paren = i; /* subquery or join: alias after ")" */
		return i;
	}
	if (!kx_is_ident(&cx->tk[i]) || (kx_kwflags(cx, i) & KWF_NOALIAS))
		return i;
	uint32_t schema = KX_NONE, name = i, j = i + 1;
	if (cx->tk[j].type == KL_DOT && kx_is_ident(&cx->tk[j + 1])) {
		schema = i;
		name = j + 1;
		j += 2;
		if (cx->tk[j].type == KL_DOT) {
			kx_decline(cx, "three-part relation name");
			return j;
		}
	}
	if (cx->tk[j].type == KL_LPAREN && mode == KX_ITEM_FROM) {
		cx->pending_paren = j; /* a table function; alias after ")" */
		return i;
	}
	cx->tk[name].flags |= KLF_NAME;
	if (schema != KX_NONE)
		cx->tk[schema].flags |= KLF_NAME;
	struct kx_tab *e = kx_relation(cx, schema, name, top);
	if (kx_op(cx, j, '*'))
		j++;
	uint32_t alias = KX_NONE;
	j = kx_alias(cx, j, mode, &alias);
	if (e)
		e->alias_tok = alias;
	return j;
}

/* ---- functions ---- */

static void kx_function(struct kx_cx *cx, uint32_t i)
{
	char sch[KX_NAME_MAX], name[KX_NAME_MAX];
	size_t sn = 0, nn = kl_ident_copy(cx->s, &cx->tk[i], name, sizeof(name));
	bool has_schema = i >= 2 && cx->tk[i - 1].type == KL_DOT && kx_is_ident(&cx->tk[i - 2]);
	if (has_schema)
		sn = kl_ident_copy(cx->s, &cx->tk[i - 2], sch, sizeof(sch));
	if (nn == (size_t)-1 || sn == (size_t)-1) {
		kx_decline(cx, "function name too long");
		return;
	}
	struct kx_result *r = cx->r;
	if ((!has_schema || (sn == 10 && memcmp(sch, "pg_catalog", 10) == 0)) &&
	    kx_is_session_advisory_lock(name, nn))
		r->session_flags |= KX_SESS_ADVISORY_LOCK;
	const struct kx_env *env = cx->env;
	if (env->function_is_read_only &&
	    env->function_is_read_only(env->ctx, has_schema ? sch : NULL, sn, name, nn))
		return;
	r->is_write = true;
	if (r->unknown_function[0])
		return;
	size_t cap = sizeof(r->unknown_function) - 1, o = 0;
	if (has_schema) {
		memcpy(r->unknown_function, sch, sn < cap ? sn : cap);
		o = sn < cap ? sn : cap;
		if (o < cap)
			r->unknown_function[o++] = '.';
	}
	size_t take = nn < cap - o ? nn : cap - o;
	memcpy(r->unknown_function + o, name, take);
	r->unknown_function[o + take] = '\0';
}

/* ---- the scan: one pass over the statement's tokens ---- */

static bool kx_is_lock_target(const struct kx_cx *cx, uint32_t i)
{
	return i > 0 && (kx_kw(cx, i - 1, KW_FOR) || kx_kw(cx, i - 1, KW_KEY));
}

/* DML keyword at i: a target relation (and, nested, a data-modifying CTE). */
static uint32_t kx_scan_dml(struct kx_cx *cx, uint32_t i, bool top)
{
	struct kx_result *r = cx->r;
	enum kl_kw kw = (enum kl_kw)cx->tk[i].kw;
	uint32_t j = i + 1;
	r->is_write = true;
	if (kw == KW_UPDATE)
		return kx_item(cx, j, top, KX_ITEM_UPDATE);
	if (kw == KW_DELETE && kx_kw(cx, j, KW_FROM))
		return kx_item(cx, j + 1, top, KX_ITEM_UPDATE);
	if ((kw == KW_INSERT || kw == KW_MERGE) && kx_kw(cx, j, KW_INTO)) {
		j = kx_item(cx, j + 1, top, kw == KW_INSERT ? KX_ITEM_INSERT : KX_ITEM_UPDATE);
		if (top && kw == KW_INSERT)
			cx->after_target = true;
		if (top && kw == KW_INSERT && cx->tk[j].type == KL_LPAREN) {
			cx->has_cols = true;
			cx->cols_b = j + 1;
			cx->cols_e = kx_match(cx, j);
		}
		return j;
	}
	return j;
}

/* Clause boundaries at depth 0 of the analysed statement. */
static void kx_scan_top(struct kx_cx *cx, uint32_t i)
{
	enum kl_kw kw = (enum kl_kw)cx->tk[i].kw;
	unsigned fl = cx->tk[i].kwflags;
	if (cx->in_where && ((fl & KWF_CLAUSE) || kw == KW_DO)) {
		cx->in_where = false;
		cx->where_e = i;
	}
	if (cx->in_set && (kw == KW_FROM || kw == KW_WHERE || kw == KW_RETURNING)) {
		cx->in_set = false;
		cx->set_e = i;
	}
	if (kw == KW_WHERE) {
		cx->n_where++;
		cx->in_where = true;
		cx->where_b = i + 1;
		cx->where_e = cx->n;
	} else if (kw == KW_SET && (cx->main_kw == KW_UPDATE || kx_kw(cx, i - 1, KW_UPDATE))) {
		cx->in_set = true;
		cx->set_b = i + 1;
		cx->set_e = cx->n;
	} else if (kw == KW_UNION || kw == KW_INTERSECT || kw == KW_EXCEPT) {
		cx->setop = true;
	} else if (cx->main_kw == KW_INSERT && kw == KW_VALUES && cx->values_tok == KX_NONE) {
		cx->values_tok = i;
	} else if (cx->main_kw == KW_INSERT && cx->after_target &&
		   (kw == KW_SELECT || kw == KW_WITH)) {
		cx->insert_select = true;
	} else if (cx->main_kw == KW_INSERT && kw == KW_DEFAULT && kx_kw(cx, i + 1, KW_VALUES)) {
		cx->insert_default = true;
	}
}

/* SELECT ... INTO [TEMP] t: creates a table. */
static void kx_scan_into(struct kx_cx *cx, uint32_t i)
{
	if (i > 0 && (kx_kw(cx, i - 1, KW_INSERT) || kx_kw(cx, i - 1, KW_MERGE)))
		return;
	cx->r->is_write = true;
	if (kx_kw(cx, i + 1, KW_TEMP) || kx_kw(cx, i + 1, KW_TEMPORARY) ||
	    ((kx_kw(cx, i + 1, KW_LOCAL) || kx_kw(cx, i + 1, KW_GLOBAL)) &&
	     (kx_kw(cx, i + 2, KW_TEMP) || kx_kw(cx, i + 2, KW_TEMPORARY))))
		cx->r->session_flags |= KX_SESS_TEMP_TABLE;
	for (uint32_t j = i + 1; j < i + 5 && kx_is_ident(&cx->tk[j]); j++)
		cx->tk[j].flags |= KLF_NAME;
}

/* extract(... FROM ...), substring(... FROM ...), trim(... FROM ...),
 * overlay(... FROM ...): FROM inside is syntax, not a relation list. */
static bool kx_special_call(const struct kx_cx *cx, uint32_t i)
{
	return kx_kw(cx, i, KW_EXTRACT) || kx_kw(cx, i, KW_SUBSTRING) || kx_kw(cx, i, KW_TRIM) ||
	       kx_kw(cx, i, KW_OVERLAY);
}

/* One word at i; returns the index of the next token to look at. */
static uint32_t kx_scan_word(struct kx_cx *cx, uint32_t i, struct kx_level *lv, int depth)
{
	const struct kl_token *t = &cx->tk[i];
	bool top = depth == 0;
	enum kl_kw kw = t->type == KL_IDENT ? (enum kl_kw)t->kw : KW_NONE;
	if (top && kw != KW_NONE)
		kx_scan_top(cx, i);
	if (cx->tk[i + 1].type == KL_LPAREN && !(t->flags & KLF_NAME) &&
	    !(t->kwflags & KWF_NOFUNC) && !(i > 0 && cx->tk[i - 1].type == KL_TYPECAST) &&
	    !(i > 0 && kx_kw(cx, i - 1, KW_AS))) {
		kx_function(cx, i);
		return i + 1;
	}
	switch ((int)kw) { /* a few of the many keywords */
	case KW_TABLESAMPLE:
		if (kx_is_ident(&cx->tk[i + 1]))
			cx->tk[i + 1].flags |= KLF_NAME; /* the sampling method */
		return i + 1;
	case KW_FROM:
		if (lv->special || (i >= 2 && kx_kw(cx, i - 1, KW_DISTINCT) &&
				    (kx_kw(cx, i - 2, KW_IS) || kx_kw(cx, i - 2, KW_NOT))))
			return i + 1;
		if (i > 0 && kx_kw(cx, i - 1, KW_DELETE))
			return i + 1; /* handled with DELETE */
		lv->from = 1;
		return kx_item(cx, i + 1, top, KX_ITEM_FROM);
	case KW_JOIN:
		return kx_item(cx, i + 1, top, KX_ITEM_FROM);
	case KW_USING:
		if (cx->tk[i + 1].type == KL_LPAREN)
			return i + 1; /* JOIN ... USING (cols) */
		lv->from = 1;
		return kx_item(cx, i + 1, top, KX_ITEM_FROM);
	case KW_INTO:
		kx_scan_into(cx, i);
		return i + 1;
	case KW_UPDATE:
	case KW_SHARE:
		if (kx_is_lock_target(cx, i)) {
			cx->r->is_write = true;
			return i + 1;
		}
		if (kw == KW_SHARE ||
		    (i > 0 && (kx_kw(cx, i - 1, KW_DO) || kx_kw(cx, i - 1, KW_THEN))))
			return i + 1;
		return kx_scan_dml(cx, i, top);
	case KW_INSERT:
	case KW_DELETE:
	case KW_MERGE:
		if (i > 0 && kx_kw(cx, i - 1, KW_THEN))
			return i + 1; /* MERGE ... THEN INSERT / DELETE */
		return kx_scan_dml(cx, i, top);
	default:
		break;
	}
	if ((t->kwflags & KWF_CLAUSE) || kw == KW_WHERE || kw == KW_SET)
		lv->from = 0;
	return i + 1;
}

void kx_scan(struct kx_cx *cx, uint32_t start)
{
	struct kx_level lv[KX_MAX_DEPTH + 1];
	int depth = 0;
	memset(&lv[0], 0, sizeof(lv[0]));
	cx->pending_paren = KX_NONE;
	uint32_t i = start;
	while (i < cx->n) {
		const struct kl_token *t = &cx->tk[i];
		switch ((enum kl_type)t->type) {
		case KL_IDENT:
		case KL_QIDENT:
			i = kx_scan_word(cx, i, &lv[depth], depth);
			continue;
		case KL_LPAREN:
			if (depth == KX_MAX_DEPTH) {
				kx_decline(cx, "nesting too deep");
				return;
			}
			depth++;
			memset(&lv[depth], 0, sizeof(lv[depth]));
			lv[depth].alias_after = cx->pending_paren == i;
			lv[depth].special = i > 0 && kx_special_call(cx, i - 1);
			break;
		case KL_RPAREN:
			if (depth == 0) {
				kx_decline(cx, "unbalanced parentheses");
				return;
			}
			if (lv[depth--].alias_after) {
				uint32_t alias = KX_NONE;
				i = kx_alias(cx, i + 1, KX_ITEM_FROM, &alias);
				continue;
			}
			break;
		case KL_COMMA:
			if (lv[depth].from) {
				i = kx_item(cx, i + 1, depth == 0, KX_ITEM_FROM);
				continue;
			}
			break;
		case KL_ERROR:
			kx_decline(cx, "unterminated quote or comment");
			break;
		case KL_EOF:
		case KL_STRING:
		case KL_ESTRING:
		case KL_XSTRING:
		case KL_DOLLAR:
		case KL_INTEGER:
		case KL_NUMERIC:
		case KL_PARAM:
		case KL_OP:
		case KL_TYPECAST:
		case KL_LBRACKET:
		case KL_RBRACKET:
		case KL_DOT:
		case KL_COLON:
		case KL_SEMI:
			break;
		}
		i++;
	}
	if (depth != 0)
		kx_decline(cx, "unbalanced parentheses");
}

/* ---- statements ---- */

/* WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body), ...:
 * records the CTE names; returns the index of the main statement. */
static uint32_t kx_with(struct kx_cx *cx, uint32_t i)
{
	i++;
	if (kx_kw(cx, i, KW_RECURSIVE))
		i++;
	for (;;) {
		if (!kx_is_ident(&cx->tk[i]) || cx->ncte == KX_MAX_CTES) {
			kx_decline(cx, "WITH clause not understood");
			return i;
		}
		cx->tk[i].flags |= KLF_NAME;
		cx->cte[cx->ncte++] = i++;
		if (cx->tk[i].type == KL_LPAREN)
			i = kx_match(cx, i) + 1;
		if (!kx_kw(cx, i, KW_AS)) {
			kx_decline(cx, "WITH clause not understood");
			return i;
		}
		i++;
		if (kx_kw(cx, i, KW_NOT))
			i++;
		if (kx_kw(cx, i, KW_MATERIALIZED))
			i++;
		if (cx->tk[i].type != KL_LPAREN) {
			kx_decline(cx, "WITH clause not understood");
			return i;
		}
		i = kx_match(cx, i) + 1;
		if (cx->tk[i].type != KL_COMMA)
			return i;
		i++;
	}
}

/* SELECT / INSERT / UPDATE / DELETE / MERGE (with WITH) from token i. */
void kx_dml(struct kx_cx *cx, uint32_t i)
{
	struct kx_result *r = cx->r;
	uint32_t m = kx_kw(cx, i, KW_WITH) ? kx_with(cx, i) : i;
	enum kl_kw kw = cx->tk[m].type == KL_IDENT ? (enum kl_kw)cx->tk[m].kw : KW_NONE;
	cx->values_tok = KX_NONE;
	if (kw == KW_SELECT || kw == KW_VALUES || kw == KW_TABLE || cx->tk[m].type == KL_LPAREN) {
		r->stmt = KX_STMT_SELECT;
		cx->main_kw = KW_SELECT;
		if (kw == KW_TABLE)
			(void)kx_item(cx, m + 1, true, KX_ITEM_PLAIN);
	} else if (kw == KW_INSERT || kw == KW_UPDATE || kw == KW_DELETE || kw == KW_MERGE) {
		r->stmt = kw == KW_INSERT   ? KX_STMT_INSERT
			  : kw == KW_UPDATE ? KX_STMT_UPDATE
			  : kw == KW_DELETE ? KX_STMT_DELETE
					    : KX_STMT_MERGE;
		cx->main_kw = kw;
		r->is_write = true;
	} else {
		r->stmt = KX_STMT_OTHER;
		r->is_write = true;
		kx_decline(cx, "statement not understood");
	}
	if (cx->tk[m].type == KL_LPAREN)
		kx_decline(cx, "parenthesized query");
	kx_scan(cx, i);
	if (cx->main_kw == KW_INSERT)
		kx_verdict_insert(cx);
	else if (cx->main_kw == KW_MERGE)
		kx_set_verdict(cx, KX_NOT_SURE, cx->notsure ? cx->notsure : "MERGE not analysed");
	else if (cx->main_kw != KW_NONE)
		kx_verdict_where(cx);
	else
		kx_set_verdict(cx, KX_NOT_SURE, cx->notsure);
}

/* ---- tokens ---- */

struct kx_toks {
	struct kl_token *v;
	uint32_t n, cap;
	struct kl_token inl[KX_TOK_INLINE];
};

static int kx_toks_push(struct kx_toks *tb, const struct kl_token *t)
{
	if (tb->n + KX_TOK_PAD >= tb->cap) {
		if (tb->cap > UINT32_MAX / 4)
			return SR_ENOMEM;
		uint32_t nc = tb->cap * 2;
		struct kl_token *nv =
		    tb->v == tb->inl ? malloc(sizeof(*nv) * nc) : realloc(tb->v, sizeof(*nv) * nc);
		if (!nv)
			return SR_ENOMEM;
		if (tb->v == tb->inl)
			memcpy(nv, tb->inl, sizeof(*nv) * tb->n);
		tb->v = nv;
		tb->cap = nc;
	}
	tb->v[tb->n++] = *t;
	return 0;
}

/* Lex one statement (up to ";" outside BEGIN ATOMIC ... END). Sets
 * stmt_end and the hints; returns 0 or SR_ENOMEM; *lex_error on an
 * unterminated quote or comment. */
static int kx_lex(struct kx_toks *tb, const char *sql, size_t len, size_t offset,
		  struct kx_result *r, bool *lex_error)
{
	struct kl_lexer lx;
	struct kl_token t;
	int atomic = 0;
	kl_init(&lx, sql, len, offset);
	for (;;) {
		kl_next(&lx, &t);
		if (t.type == KL_EOF || (t.type == KL_SEMI && atomic == 0))
			break;
		if (t.type == KL_ERROR && lx.pos >= len)
			*lex_error = true;
		if (t.type == KL_IDENT && tb->n > 0 && tb->v[0].kw == KW_CREATE) {
			if (t.kw == KW_ATOMIC && tb->v[tb->n - 1].kw == KW_BEGIN)
				atomic = 1;
			else if (atomic && t.kw == KW_CASE)
				atomic++;
			else if (atomic && t.kw == KW_END)
				atomic--;
		}
		if (kx_toks_push(tb, &t) != 0)
			return SR_ENOMEM;
	}
	r->stmt_end = lx.pos;
	memset(&tb->v[tb->n], 0, sizeof(t) * KX_TOK_PAD); /* KL_EOF sentinels */
	for (uint32_t k = 0; k < KX_TOK_PAD; k++)
		tb->v[tb->n + k].start = (uint32_t)lx.pos;
	r->hint_key = lx.hint_key;
	r->hint_key_len = lx.hint_key_len;
	r->has_hint_shard = lx.has_hint_shard;
	r->hint_shard = lx.hint_shard;
	return 0;
}

/* ---- API ---- */

void kx_result_init(struct kx_result *r)
{
	memset(r, 0, sizeof(*r));
	r->keys = r->inline_keys;
	r->verdict = KX_NOT_SURE;
	r->reason = "";
}

void kx_result_destroy(struct kx_result *r)
{
	if (r->keys != r->inline_keys)
		free(r->keys);
	r->keys = r->inline_keys;
	r->n_keys = 0;
}

int kx_extract_fast(const struct kx_env *env, const char *sql, size_t len, size_t offset,
		    struct kx_result *r)
{
	kx_result_init(r);
	if (len >= UINT32_MAX - 16)
		return SR_ETOOBIG;
	struct kx_toks tb;
	tb.v = tb.inl;
	tb.n = 0;
	tb.cap = KX_TOK_INLINE;
	bool lex_error = false;
	int rc = kx_lex(&tb, sql, len, offset, r, &lex_error);
	if (rc == 0) {
		struct kx_cx cx;
		memset(&cx, 0, sizeof(cx));
		cx.env = env;
		cx.s = sql;
		cx.tk = tb.v;
		cx.n = tb.n;
		cx.r = r;
		if (lex_error)
			kx_decline(&cx, "unterminated quote or comment");
		if (tb.n == 0) {
			r->stmt = KX_STMT_EMPTY;
			kx_set_verdict(&cx, lex_error ? KX_NOT_SURE : KX_NO_KEY,
				       lex_error ? cx.notsure : "empty statement");
		} else {
			kx_dispatch(&cx);
		}
		rc = cx.err;
	}
	if (tb.v != tb.inl)
		free(tb.v);
	if (r->verdict != KX_KEY)
		kx_result_destroy(r); /* keys only mean something with KX_KEY */
	return rc;
}

const char *kx_stmt_name(enum kx_stmt s)
{
	switch (s) {
	case KX_STMT_EMPTY:
		return "EMPTY";
	case KX_STMT_SELECT:
		return "SELECT";
	case KX_STMT_INSERT:
		return "INSERT";
	case KX_STMT_UPDATE:
		return "UPDATE";
	case KX_STMT_DELETE:
		return "DELETE";
	case KX_STMT_MERGE:
		return "MERGE";
	case KX_STMT_BEGIN:
		return "BEGIN";
	case KX_STMT_COMMIT:
		return "COMMIT";
	case KX_STMT_ROLLBACK:
		return "ROLLBACK";
	case KX_STMT_SAVEPOINT:
		return "SAVEPOINT";
	case KX_STMT_SET:
		return "SET";
	case KX_STMT_RESET:
		return "RESET";
	case KX_STMT_SHOW:
		return "SHOW";
	case KX_STMT_DISCARD:
		return "DISCARD";
	case KX_STMT_PREPARE:
		return "PREPARE";
	case KX_STMT_EXECUTE:
		return "EXECUTE";
	case KX_STMT_DEALLOCATE:
		return "DEALLOCATE";
	case KX_STMT_LISTEN:
		return "LISTEN";
	case KX_STMT_UNLISTEN:
		return "UNLISTEN";
	case KX_STMT_NOTIFY:
		return "NOTIFY";
	case KX_STMT_COPY:
		return "COPY";
	case KX_STMT_DDL:
		return "DDL";
	case KX_STMT_EXPLAIN:
		return "EXPLAIN";
	case KX_STMT_CALL:
		return "CALL";
	case KX_STMT_DO:
		return "DO";
	case KX_STMT_LOCK:
		return "LOCK";
	case KX_STMT_DECLARE:
		return "DECLARE";
	case KX_STMT_CURSOR:
		return "CURSOR";
	case KX_STMT_MAINT:
		return "MAINT";
	case KX_STMT_OTHER:
		return "OTHER";
	}
	return "?";
}

const char *kx_verdict_name(enum kx_verdict v)
{
	switch (v) {
	case KX_KEY:
		return "KEY";
	case KX_NO_KEY:
		return "NO_KEY";
	case KX_NOT_SURE:
		return "NOT_SURE";
	}
	return "?";
}
