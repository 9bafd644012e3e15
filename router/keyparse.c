/*
 * keyparse.c - the libpg_query fallback of the key extractor (see
 * include/router/keyextract.h) and kx_extract(), which tries the fast path
 * (router/keyextract.c) first and asks this file only on KX_NOT_SURE.
 *
 * Why protobuf and not JSON: the JSON output is cheaper to produce
 * (1.8-6.7 us against 6-24 us here) but we would need a JSON decoder and
 * would walk untyped maps by string key; protobuf-c gives typed structs and,
 * through its descriptors, a generic walk over every sub-node (to find all
 * function calls, relations and locking clauses at any depth) in a few lines.
 * This path only runs for statements the fast path declined, so its cost
 * matters less than its correctness.
 *
 * The rules mirror the fast path: keys only from a top-level AND chain (here
 * an OR of key conditions is also understood) of key = const|$n, key IN
 * (...), INSERT ... VALUES rows with a column list; a sharded table in a
 * subquery or CTE, tables that are not co-located, a set operation, or an
 * UPDATE of the key column give KX_NOT_SURE. Any thread (libpg_query keeps
 * per-thread state).
 */
#include "router/keyextract.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardmap/hash.h"
#include "shardmap/key.h"

#define KP_MAX_TOP 16
#define KP_MAX_CTES 32
#define KP_MAX_DEPTH 1000

struct kp_cx {
	const struct kx_env *env;
	struct kx_result *r;
	const PgQuery__RangeVar *top[KP_MAX_TOP];
	const struct sm_table *top_t[KP_MAX_TOP];
	size_t ntop;
	const char *cte[KP_MAX_CTES];
	size_t ncte;
	bool collecting_ctes;
	bool nested_sharded;
	bool setop;
	const char *notsure;
	int err;
};

typedef PgQuery__Node kp_node;

static void kp_decline(struct kp_cx *cx, const char *why)
{
	if (!cx->notsure)
		cx->notsure = why;
}

static const char *kp_str(const kp_node *n)
{
	return n && n->node_case == PG_QUERY__NODE__NODE_STRING ? n->string->sval : NULL;
}

/* ---- relations ---- */

static bool kp_is_cte(const struct kp_cx *cx, const PgQuery__RangeVar *rv)
{
	if (rv->schemaname && rv->schemaname[0])
		return false;
	for (size_t i = 0; i < cx->ncte; i++)
		if (strcmp(cx->cte[i], rv->relname) == 0)
			return true;
	return false;
}

static const struct sm_table *kp_relation(struct kp_cx *cx, const PgQuery__RangeVar *rv, bool top)
{
	struct kx_result *r = cx->r;
	if (kp_is_cte(cx, rv))
		return NULL;
	const char *sch = rv->schemaname && rv->schemaname[0] ? rv->schemaname : NULL;
	const struct sm_table *t = NULL;
	if (cx->env->table)
		t = cx->env->table(cx->env->ctx, sch, sch ? strlen(sch) : 0, rv->relname,
				   strlen(rv->relname));
	r->names_table = true;
	if (!t) {
		r->names_unsharded = true;
	} else {
		if (!top)
			cx->nested_sharded = true;
		if (!r->table)
			r->table = t;
		else if (r->table->key_type != t->key_type ||
			 strcmp(r->table->key_column, t->key_column) != 0)
			r->mixed_colocation = true;
	}
	if (top) {
		if (cx->ntop == KP_MAX_TOP) {
			kp_decline(cx, "parser: too many relations");
		} else {
			cx->top[cx->ntop] = rv;
			cx->top_t[cx->ntop++] = t;
		}
	}
	return t;
}

/* FROM items at the top: relations and joins of relations. */
static void kp_from_item(struct kp_cx *cx, const kp_node *n)
{
	if (!n)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR) {
		kp_relation(cx, n->range_var, true);
	} else if (n->node_case == PG_QUERY__NODE__NODE_RANGE_TABLE_SAMPLE) {
		kp_from_item(cx, n->range_table_sample->relation);
	} else if (n->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR) {
		kp_from_item(cx, n->join_expr->larg);
		kp_from_item(cx, n->join_expr->rarg);
	}
}

static bool kp_is_top(const struct kp_cx *cx, const PgQuery__RangeVar *rv)
{
	for (size_t i = 0; i < cx->ntop; i++)
		if (cx->top[i] == rv)
			return true;
	return false;
}

/* ---- the generic walk ---- */

static void kp_func(struct kp_cx *cx, const PgQuery__FuncCall *f)
{
	struct kx_result *r = cx->r;
	if (f->funcformat == PG_QUERY__COERCION_FORM__COERCE_SQL_SYNTAX || f->n_funcname == 0)
		return; /* extract(), substring(), AT TIME ZONE ...: built-in syntax */
	const char *name = kp_str(f->funcname[f->n_funcname - 1]);
	const char *sch = f->n_funcname >= 2 ? kp_str(f->funcname[f->n_funcname - 2]) : NULL;
	if (!name)
		return;
	/* LIKE ... ESCAPE and SIMILAR TO: calls the grammar writes itself. */
	if (sch && strcmp(sch, "pg_catalog") == 0 &&
	    (strcmp(name, "like_escape") == 0 || strcmp(name, "similar_to_escape") == 0))
		return;
	size_t nn = strlen(name), sn = sch ? strlen(sch) : 0;
	if ((!sch || strcmp(sch, "pg_catalog") == 0) && kx_is_session_advisory_lock(name, nn))
		r->session_flags |= KX_SESS_ADVISORY_LOCK;
	if (cx->env->function_is_read_only &&
	    cx->env->function_is_read_only(cx->env->ctx, sch, sn, name, nn))
		return;
	r->is_write = true;
	if (!r->unknown_function[0])
		snprintf(r->unknown_function, sizeof(r->unknown_function), "%s%s%s", sch ? sch : "",
			 sch ? "." : "", name);
}

/* Returns true when the walk must not descend into m. */
static bool kp_visit(struct kp_cx *cx, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (cx->collecting_ctes) {
		if (d == &pg_query__common_table_expr__descriptor && cx->ncte < KP_MAX_CTES)
			cx->cte[cx->ncte++] = ((const PgQuery__CommonTableExpr *)m)->ctename;
		return false;
	}
	if (d == &pg_query__func_call__descriptor) {
		kp_func(cx, (const PgQuery__FuncCall *)m);
	} else if (d == &pg_query__range_var__descriptor) {
		const PgQuery__RangeVar *rv = (const PgQuery__RangeVar *)m;
		if (!kp_is_top(cx, rv))
			kp_relation(cx, rv, false);
		return true;
	} else if (d == &pg_query__locking_clause__descriptor) {
		cx->r->is_write = true;
		return true; /* FOR UPDATE OF t: t is already in FROM */
	} else if (d == &pg_query__into_clause__descriptor) {
		const PgQuery__IntoClause *ic = (const PgQuery__IntoClause *)m;
		cx->r->is_write = true;
		if (ic->rel && ic->rel->relpersistence && ic->rel->relpersistence[0] == 't')
			cx->r->session_flags |= KX_SESS_TEMP_TABLE;
		return true;
	} else if (d == &pg_query__insert_stmt__descriptor ||
		   d == &pg_query__update_stmt__descriptor ||
		   d == &pg_query__delete_stmt__descriptor ||
		   d == &pg_query__merge_stmt__descriptor) {
		cx->r->is_write = true;
	}
	return false;
}

static void kp_walk(struct kp_cx *cx, const ProtobufCMessage *m, int depth)
{
	if (!m)
		return;
	if (depth > KP_MAX_DEPTH) {
		kp_decline(cx, "parser: tree too deep");
		return;
	}
	if (kp_visit(cx, m))
		return;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned f = 0; f < d->n_fields; f++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[f];
		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(const void *)(base + fd->quantifier_offset) != fd->id)
			continue;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(const void *)(base + fd->quantifier_offset);
			ProtobufCMessage *const *arr =
			    *(ProtobufCMessage *const *const *)(const void *)(base + fd->offset);
			for (size_t k = 0; k < n; k++)
				kp_walk(cx, arr[k], depth + 1);
		} else {
			kp_walk(cx, *(ProtobufCMessage *const *)(const void *)(base + fd->offset),
				depth + 1);
		}
	}
}

/* ---- keys ---- */

/* The top sharded table whose key column c names, or NULL. */
static const struct sm_table *kp_colref(const struct kp_cx *cx, const kp_node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return NULL;
	const PgQuery__ColumnRef *c = n->column_ref;
	size_t np = c->n_fields;
	if (np == 0 || np > 3)
		return NULL;
	const char *parts[3];
	for (size_t i = 0; i < np; i++)
		if (!(parts[i] = kp_str(c->fields[i])))
			return NULL;
	for (size_t k = 0; k < cx->ntop; k++) {
		const struct sm_table *t = cx->top_t[k];
		const PgQuery__RangeVar *rv = cx->top[k];
		if (!t || strcmp(parts[np - 1], t->key_column) != 0)
			continue;
		const char *alias = rv->alias ? rv->alias->aliasname : NULL;
		const char *sch = rv->schemaname && rv->schemaname[0] ? rv->schemaname : t->schema;
		if (np == 1 || (np == 2 && strcmp(parts[0], alias ? alias : rv->relname) == 0) ||
		    (np == 3 && !alias && strcmp(parts[1], rv->relname) == 0 &&
		     strcmp(parts[0], sch) == 0))
			return t;
	}
	return NULL;
}

static bool kp_int_text(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* A constant or $n (optionally cast) as a key of type kt. Returns 1 with
 * *k filled, 0 if n is not such a value, -1 if it is but unusable. */
static int kp_value(struct kp_cx *cx, const kp_node *n, enum sm_key_type kt, struct kx_keyref *k)
{
	if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST) {
		const PgQuery__TypeName *tn = n->type_cast->type_name;
		const char *name = tn && tn->n_names ? kp_str(tn->names[tn->n_names - 1]) : NULL;
		const kp_node *a = n->type_cast->arg;
		if (!a || (a->node_case != PG_QUERY__NODE__NODE_A_CONST &&
			   a->node_case != PG_QUERY__NODE__NODE_PARAM_REF))
			return 0;
		if (!name || tn->n_typmods || tn->n_array_bounds || tn->setof ||
		    !kx_cast_fits(kt, name, strlen(name))) {
			kp_decline(cx, "key cast to another type");
			return -1;
		}
		n = a;
	}
	/* +3: the raw parse tree keeps a unary plus (a minus is folded). */
	if (n && n->node_case == PG_QUERY__NODE__NODE_A_EXPR && !n->a_expr->lexpr &&
	    n->a_expr->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP && n->a_expr->n_name == 1 &&
	    kp_str(n->a_expr->name[0]) && strcmp(kp_str(n->a_expr->name[0]), "+") == 0 &&
	    n->a_expr->rexpr && n->a_expr->rexpr->node_case == PG_QUERY__NODE__NODE_A_CONST &&
	    (n->a_expr->rexpr->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL ||
	     n->a_expr->rexpr->a_const->val_case == PG_QUERY__A__CONST__VAL_FVAL))
		n = n->a_expr->rexpr;
	memset(k, 0, sizeof(*k));
	if (n && n->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
		int32_t p = n->param_ref->number;
		if (p < 1 || p > UINT16_MAX) {
			kp_decline(cx, "parameter number out of range");
			return -1;
		}
		k->is_param = true;
		k->param = (uint16_t)p;
		return 1;
	}
	if (!n || n->node_case != PG_QUERY__NODE__NODE_A_CONST)
		return 0;
	const PgQuery__AConst *c = n->a_const;
	char num[24];
	const char *val = NULL;
	bool is_num = false;
	if (c->isnull) {
		return 0;
	} else if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL) {
		snprintf(num, sizeof(num), "%d", c->ival ? c->ival->ival : 0);
		val = num;
		is_num = true;
	} else if (c->val_case == PG_QUERY__A__CONST__VAL_FVAL && c->fval) {
		if (!kp_int_text(c->fval->fval)) {
			kp_decline(cx, "decimal literal for the key");
			return -1;
		}
		val = c->fval->fval;
		is_num = true;
	} else if (c->val_case == PG_QUERY__A__CONST__VAL_SVAL && c->sval) {
		val = c->sval->sval;
	} else {
		return 0;
	}
	if (is_num && kt != SM_KEY_BIGINT) {
		kp_decline(cx, "number literal for a non-integer key");
		return -1;
	}
	struct sm_key key;
	if (sm_key_from_text(kt, val, strlen(val), &key, NULL) != 0) {
		kp_decline(cx, "key literal not valid for type");
		return -1;
	}
	k->hash = sm_hash_key(&key);
	return 1;
}

static void kp_add(struct kp_cx *cx, const struct kx_keyref *k)
{
	if (kx_result_add_key(cx->r, k) != 0)
		cx->err = SR_ENOMEM;
}

static bool kp_is_eq(const PgQuery__AExpr *e)
{
	const char *op = e->n_name == 1 ? kp_str(e->name[0]) : NULL;
	return op && strcmp(op, "=") == 0;
}

/* key = v, v = key, key IN (v, ...): true (keys added) or false. */
static bool kp_key_cond(struct kp_cx *cx, const PgQuery__AExpr *e)
{
	struct kx_keyref k;
	const struct sm_table *t;
	if (!kp_is_eq(e))
		return false;
	if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP) {
		const kp_node *v = e->rexpr;
		if (!(t = kp_colref(cx, e->lexpr))) {
			t = kp_colref(cx, e->rexpr);
			v = e->lexpr;
		}
		if (!t || kp_value(cx, v, t->key_type, &k) <= 0)
			return false;
		kp_add(cx, &k);
		return true;
	}
	if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_IN || !(t = kp_colref(cx, e->lexpr)) ||
	    !e->rexpr || e->rexpr->node_case != PG_QUERY__NODE__NODE_LIST)
		return false;
	const PgQuery__List *l = e->rexpr->list;
	for (size_t i = 0; i < l->n_items; i++)
		if (kp_value(cx, l->items[i], t->key_type, &k) <= 0)
			return false;
	for (size_t i = 0; i < l->n_items; i++) {
		(void)kp_value(cx, l->items[i], t->key_type, &k);
		kp_add(cx, &k);
	}
	return true;
}

/* Does the condition n restrict the rows to the keys it appends? */
static bool kp_keyset(struct kp_cx *cx, const kp_node *n, int depth)
{
	if (!n || depth > 64)
		return false;
	if (n->node_case == PG_QUERY__NODE__NODE_A_EXPR)
		return kp_key_cond(cx, n->a_expr);
	if (n->node_case != PG_QUERY__NODE__NODE_BOOL_EXPR)
		return false;
	const PgQuery__BoolExpr *b = n->bool_expr;
	bool any = false;
	uint32_t saved = cx->r->n_keys;
	switch (b->boolop) {
	case PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR:
		for (size_t i = 0; i < b->n_args; i++)
			any |= kp_keyset(cx, b->args[i], depth + 1);
		return any;
	case PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR:
		for (size_t i = 0; i < b->n_args; i++) {
			if (!kp_keyset(cx, b->args[i], depth + 1)) {
				cx->r->n_keys = saved;
				return false;
			}
		}
		return b->n_args > 0;
	case PG_QUERY__BOOL_EXPR_TYPE__NOT_EXPR:
	case PG_QUERY__BOOL_EXPR_TYPE__BOOL_EXPR_TYPE_UNDEFINED:
	case _PG_QUERY__BOOL_EXPR_TYPE_IS_INT_SIZE:
		return false;
	}
	return false;
}

/* ---- verdicts ---- */

static void kp_verdict(struct kp_cx *cx, enum kx_verdict v, const char *why)
{
	cx->r->verdict = v;
	cx->r->reason = why;
}

/* The first top sharded table, or NULL with the verdict set. */
static const struct sm_table *kp_common(struct kp_cx *cx)
{
	const struct sm_table *t = NULL;
	for (size_t k = 0; k < cx->ntop && !t; k++)
		t = cx->top_t[k];
	if (cx->notsure)
		kp_verdict(cx, KX_NOT_SURE, cx->notsure);
	else if (cx->nested_sharded)
		kp_verdict(cx, KX_NOT_SURE, "sharded table in a subquery");
	else if (!t)
		kp_verdict(cx, KX_NO_KEY, cx->r->names_table ? "no sharded table" : "no table");
	else if (cx->r->mixed_colocation)
		kp_verdict(cx, KX_NOT_SURE, "tables not co-located");
	else
		return t;
	return NULL;
}

static bool kp_targets_key(kp_node *const *tl, size_t n, const struct sm_table *t)
{
	for (size_t i = 0; i < n; i++)
		if (tl[i]->node_case == PG_QUERY__NODE__NODE_RES_TARGET &&
		    tl[i]->res_target->name && strcmp(tl[i]->res_target->name, t->key_column) == 0)
			return true;
	return false;
}

static void kp_where_verdict(struct kp_cx *cx, const kp_node *where, const struct sm_table *t)
{
	if (!t)
		return;
	if (cx->setop)
		return kp_verdict(cx, KX_NOT_SURE, "set operation");
	if (!where)
		return kp_verdict(cx, KX_NO_KEY, "no WHERE clause");
	bool found = kp_keyset(cx, where, 0);
	if (cx->notsure)
		return kp_verdict(cx, KX_NOT_SURE, cx->notsure);
	kp_verdict(cx, found ? KX_KEY : KX_NO_KEY, found ? "key in WHERE" : "no key in WHERE");
}

/* ---- statements ---- */

static void kp_stmt(struct kp_cx *cx, const kp_node *n, int depth);

static void kp_select(struct kp_cx *cx, const PgQuery__SelectStmt *s)
{
	cx->r->stmt = KX_STMT_SELECT;
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE)
		cx->setop = true;
	for (size_t i = 0; i < s->n_from_clause; i++)
		kp_from_item(cx, s->from_clause[i]);
	kp_walk(cx, &s->base, 0);
	kp_where_verdict(cx, s->where_clause, kp_common(cx));
}

static void kp_update(struct kp_cx *cx, const PgQuery__UpdateStmt *s)
{
	cx->r->stmt = KX_STMT_UPDATE;
	cx->r->is_write = true;
	kp_relation(cx, s->relation, true);
	for (size_t i = 0; i < s->n_from_clause; i++)
		kp_from_item(cx, s->from_clause[i]);
	kp_walk(cx, &s->base, 0);
	const struct sm_table *t = kp_common(cx);
	if (t && kp_targets_key(s->target_list, s->n_target_list, t))
		return kp_verdict(cx, KX_NOT_SURE, "UPDATE changes the key");
	kp_where_verdict(cx, s->where_clause, t);
}

static void kp_delete(struct kp_cx *cx, const PgQuery__DeleteStmt *s)
{
	cx->r->stmt = KX_STMT_DELETE;
	cx->r->is_write = true;
	kp_relation(cx, s->relation, true);
	for (size_t i = 0; i < s->n_using_clause; i++)
		kp_from_item(cx, s->using_clause[i]);
	kp_walk(cx, &s->base, 0);
	kp_where_verdict(cx, s->where_clause, kp_common(cx));
}

/* VALUES rows: the key at position pos of each. */
static void kp_rows(struct kp_cx *cx, const PgQuery__SelectStmt *v, size_t pos, size_t ncols,
		    const struct sm_table *t)
{
	for (size_t i = 0; i < v->n_values_lists; i++) {
		const kp_node *row = v->values_lists[i];
		struct kx_keyref k;
		if (row->node_case != PG_QUERY__NODE__NODE_LIST || row->list->n_items != ncols)
			return kp_decline(cx, "VALUES row length differs from column list");
		int rc = kp_value(cx, row->list->items[pos], t->key_type, &k);
		if (rc == 0)
			kp_decline(cx, "key value is an expression");
		if (rc <= 0)
			return;
		kp_add(cx, &k);
	}
}

static void kp_insert(struct kp_cx *cx, const PgQuery__InsertStmt *s)
{
	cx->r->stmt = KX_STMT_INSERT;
	cx->r->is_write = true;
	kp_relation(cx, s->relation, true);
	kp_walk(cx, &s->base, 0);
	const struct sm_table *t = kp_common(cx);
	if (!t)
		return;
	const kp_node *src = s->select_stmt;
	if (!src)
		return kp_verdict(cx, KX_NO_KEY, "INSERT DEFAULT VALUES");
	const PgQuery__SelectStmt *v =
	    src->node_case == PG_QUERY__NODE__NODE_SELECT_STMT ? src->select_stmt : NULL;
	if (!v || v->n_values_lists == 0 || v->op != PG_QUERY__SET_OPERATION__SETOP_NONE)
		return kp_verdict(cx, KX_NO_KEY, "INSERT ... SELECT");
	if (s->n_cols == 0)
		return kp_verdict(cx, KX_NOT_SURE, "INSERT without column list");
	size_t pos = SIZE_MAX;
	for (size_t i = 0; i < s->n_cols; i++) {
		const PgQuery__ResTarget *rt =
		    s->cols[i]->node_case == PG_QUERY__NODE__NODE_RES_TARGET
			? s->cols[i]->res_target
			: NULL;
		if (!rt || !rt->name || rt->n_indirection)
			return kp_verdict(cx, KX_NOT_SURE, "INSERT column list not understood");
		if (strcmp(rt->name, t->key_column) == 0)
			pos = i;
	}
	if (pos == SIZE_MAX)
		return kp_verdict(cx, KX_NO_KEY, "INSERT column list lacks key");
	kp_rows(cx, v, pos, s->n_cols, t);
	if (cx->notsure)
		return kp_verdict(cx, KX_NOT_SURE, cx->notsure);
	const PgQuery__OnConflictClause *oc = s->on_conflict_clause;
	if (oc && kp_targets_key(oc->target_list, oc->n_target_list, t))
		return kp_verdict(cx, KX_NOT_SURE, "ON CONFLICT changes the key");
	kp_verdict(cx, KX_KEY, "key in INSERT VALUES");
}

static bool kp_defelem_true(const PgQuery__DefElem *d)
{
	const kp_node *a = d->arg;
	if (!a)
		return true;
	if (a->node_case == PG_QUERY__NODE__NODE_STRING)
		return !(strcmp(a->string->sval, "false") == 0 ||
			 strcmp(a->string->sval, "off") == 0 ||
			 strcmp(a->string->sval, "no") == 0 || strcmp(a->string->sval, "0") == 0);
	if (a->node_case == PG_QUERY__NODE__NODE_INTEGER)
		return a->integer->ival != 0;
	if (a->node_case == PG_QUERY__NODE__NODE_BOOLEAN)
		return a->boolean->boolval;
	if (a->node_case == PG_QUERY__NODE__NODE_A_CONST && a->a_const->ival)
		return a->a_const->ival->ival != 0;
	return true;
}

static void kp_explain(struct kp_cx *cx, const PgQuery__ExplainStmt *s, int depth)
{
	bool analyze = false;
	for (size_t i = 0; i < s->n_options; i++) {
		const kp_node *o = s->options[i];
		if (o->node_case == PG_QUERY__NODE__NODE_DEF_ELEM &&
		    strcmp(o->def_elem->defname, "analyze") == 0)
			analyze = kp_defelem_true(o->def_elem);
	}
	kp_stmt(cx, s->query, depth + 1);
	cx->r->stmt = KX_STMT_EXPLAIN;
	cx->r->is_write = analyze && cx->r->is_write;
}

static void kp_transaction(struct kp_cx *cx, const PgQuery__TransactionStmt *s)
{
	struct kx_result *r = cx->r;
	switch (s->kind) {
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
		r->stmt = KX_STMT_BEGIN;
		for (size_t i = 0; i < s->n_options; i++) {
			const kp_node *o = s->options[i];
			if (o->node_case == PG_QUERY__NODE__NODE_DEF_ELEM &&
			    strcmp(o->def_elem->defname, "transaction_read_only") == 0)
				r->read_only_txn = kp_defelem_true(o->def_elem);
		}
		return;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
		r->stmt = KX_STMT_COMMIT;
		return;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
		r->stmt = KX_STMT_ROLLBACK;
		return;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
		r->stmt = KX_STMT_SAVEPOINT;
		return;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANSACTION_STMT_KIND_UNDEFINED:
	case _PG_QUERY__TRANSACTION_STMT_KIND_IS_INT_SIZE:
		r->stmt = KX_STMT_OTHER;
		r->is_write = true;
		return;
	}
}

static void kp_simple(struct kp_cx *cx, enum kx_stmt st, bool write)
{
	cx->r->stmt = st;
	cx->r->is_write = write;
}

/* Statements that are not SELECT/INSERT/UPDATE/DELETE/MERGE/EXPLAIN. The
 * node enum has ~240 members, so this switches on int with a default. */
static void kp_utility(struct kp_cx *cx, const kp_node *n)
{
	struct kx_result *r = cx->r;
	switch ((int)n->node_case) {
	case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
		kp_transaction(cx, n->transaction_stmt);
		break;
	case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
		kp_simple(cx,
			  n->variable_set_stmt->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET ||
				  n->variable_set_stmt->kind ==
				      PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL
			      ? KX_STMT_RESET
			      : KX_STMT_SET,
			  false);
		r->set_local = n->variable_set_stmt->is_local;
		break;
	case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
		kp_simple(cx, KX_STMT_SHOW, false);
		break;
	case PG_QUERY__NODE__NODE_DISCARD_STMT:
		kp_simple(cx, KX_STMT_DISCARD, false);
		break;
	case PG_QUERY__NODE__NODE_PREPARE_STMT:
		kp_simple(cx, KX_STMT_PREPARE, false);
		r->session_flags |= KX_SESS_PREPARE;
		break;
	case PG_QUERY__NODE__NODE_EXECUTE_STMT:
		kp_simple(cx, KX_STMT_EXECUTE, true);
		break;
	case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
		kp_simple(cx, KX_STMT_DEALLOCATE, false);
		break;
	case PG_QUERY__NODE__NODE_LISTEN_STMT:
		kp_simple(cx, KX_STMT_LISTEN, false);
		r->session_flags |= KX_SESS_LISTEN;
		break;
	case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
		kp_simple(cx, KX_STMT_UNLISTEN, false);
		break;
	case PG_QUERY__NODE__NODE_NOTIFY_STMT:
		kp_simple(cx, KX_STMT_NOTIFY, true);
		break;
	case PG_QUERY__NODE__NODE_COPY_STMT:
		kp_simple(cx, KX_STMT_COPY, n->copy_stmt->is_from);
		if (n->copy_stmt->relation)
			kp_relation(cx, n->copy_stmt->relation, true);
		kp_walk(cx, n->copy_stmt->query ? &n->copy_stmt->query->base : NULL, 0);
		break;
	case PG_QUERY__NODE__NODE_CALL_STMT:
		kp_simple(cx, KX_STMT_CALL, true);
		break;
	case PG_QUERY__NODE__NODE_DO_STMT:
		kp_simple(cx, KX_STMT_DO, true);
		break;
	case PG_QUERY__NODE__NODE_LOCK_STMT:
		kp_simple(cx, KX_STMT_LOCK, true);
		kp_walk(cx, &n->base, 0);
		break;
	case PG_QUERY__NODE__NODE_FETCH_STMT:
	case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
		kp_simple(cx, KX_STMT_CURSOR, false);
		break;
	case PG_QUERY__NODE__NODE_VACUUM_STMT:
	case PG_QUERY__NODE__NODE_CLUSTER_STMT:
	case PG_QUERY__NODE__NODE_REINDEX_STMT:
	case PG_QUERY__NODE__NODE_CHECK_POINT_STMT:
		kp_simple(cx, KX_STMT_MAINT, true);
		break;
	default:
		kp_simple(cx, KX_STMT_DDL, true);
		if ((n->node_case == PG_QUERY__NODE__NODE_CREATE_STMT &&
		     n->create_stmt->relation->relpersistence[0] == 't') ||
		    (n->node_case == PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT &&
		     n->create_table_as_stmt->into->rel->relpersistence[0] == 't') ||
		    (n->node_case == PG_QUERY__NODE__NODE_VIEW_STMT &&
		     n->view_stmt->view->relpersistence[0] == 't'))
			r->session_flags |= KX_SESS_TEMP_TABLE;
		break;
	}
	if (cx->notsure)
		kp_verdict(cx, KX_NOT_SURE, cx->notsure);
	else
		kp_verdict(cx, KX_NO_KEY, "utility statement");
}

static void kp_stmt(struct kp_cx *cx, const kp_node *n, int depth)
{
	if (!n || depth > 4)
		return kp_verdict(cx, KX_NOT_SURE, "parser: statement not understood");
	switch ((int)n->node_case) {
	case PG_QUERY__NODE__NODE_SELECT_STMT:
		return kp_select(cx, n->select_stmt);
	case PG_QUERY__NODE__NODE_INSERT_STMT:
		return kp_insert(cx, n->insert_stmt);
	case PG_QUERY__NODE__NODE_UPDATE_STMT:
		return kp_update(cx, n->update_stmt);
	case PG_QUERY__NODE__NODE_DELETE_STMT:
		return kp_delete(cx, n->delete_stmt);
	case PG_QUERY__NODE__NODE_MERGE_STMT:
		cx->r->stmt = KX_STMT_MERGE;
		cx->r->is_write = true;
		kp_walk(cx, &n->base, 0);
		return kp_verdict(cx, KX_NOT_SURE, "MERGE not analysed");
	case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
		return kp_explain(cx, n->explain_stmt, depth);
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
		if (n->declare_cursor_stmt->options & 0x0020) /* CURSOR_OPT_HOLD */
			cx->r->session_flags |= KX_SESS_WITH_HOLD;
		kp_stmt(cx, n->declare_cursor_stmt->query, depth + 1);
		cx->r->stmt = KX_STMT_DECLARE;
		return;
	default:
		return kp_utility(cx, n);
	}
}

int kx_extract_parsed(const struct kx_env *env, const char *sql, size_t len, struct kx_result *r)
{
	kx_result_init(r);
	r->used_parser = true;
	r->stmt_end = len;
	r->stmt = KX_STMT_OTHER;
	r->is_write = true;
	char *buf = malloc(len + 1);
	if (!buf)
		return SR_ENOMEM;
	memcpy(buf, sql, len);
	buf[len] = '\0';
	PgQueryProtobufParseResult pr = pg_query_parse_protobuf(buf);
	free(buf);
	PgQuery__ParseResult *res = NULL;
	if (pr.error) {
		r->reason = "parser: syntax error";
		r->syntax_error = true;
	} else if (!(res = pg_query__parse_result__unpack(NULL, pr.parse_tree.len,
							  (const uint8_t *)pr.parse_tree.data))) {
		r->reason = "parser: cannot decode the parse tree";
	} else if (res->n_stmts == 0) {
		r->stmt = KX_STMT_EMPTY;
		r->is_write = false;
		r->verdict = KX_NO_KEY;
		r->reason = "empty statement";
	} else {
		struct kp_cx cx;
		memset(&cx, 0, sizeof(cx));
		cx.env = env;
		cx.r = r;
		r->is_write = false;
		cx.collecting_ctes = true;
		kp_walk(&cx, &res->base, 0);
		cx.collecting_ctes = false;
		if (res->n_stmts > 1)
			kp_decline(&cx, "parser: several statements");
		kp_stmt(&cx, res->stmts[0]->stmt, 0);
		if (cx.err) {
			pg_query__parse_result__free_unpacked(res, NULL);
			pg_query_free_protobuf_parse_result(pr);
			return cx.err;
		}
	}
	if (res)
		pg_query__parse_result__free_unpacked(res, NULL);
	pg_query_free_protobuf_parse_result(pr);
	if (r->verdict != KX_KEY)
		kx_result_destroy(r);
	return 0;
}

/* Move the parser's findings into the fast path's result, keeping what only
 * the fast path knows (hints, SET name/value, stmt_end). */
static void kx_merge(struct kx_result *r, struct kx_result *p)
{
	kx_result_destroy(r);
	r->verdict = p->verdict;
	r->reason = p->reason;
	r->used_parser = true;
	r->syntax_error = p->syntax_error;
	if (p->reason && strncmp(p->reason, "parser: ", 8) == 0 && p->stmt == KX_STMT_OTHER)
		return; /* the parser failed: keep the rest of the fast path's view */
	r->stmt = p->stmt;
	r->is_write = p->is_write;
	r->read_only_txn = p->read_only_txn;
	r->names_table = p->names_table;
	r->names_unsharded = p->names_unsharded;
	r->table = p->table;
	r->mixed_colocation = p->mixed_colocation;
	r->session_flags |= p->session_flags;
	memcpy(r->unknown_function, p->unknown_function, sizeof(r->unknown_function));
	r->n_keys = p->n_keys;
	if (p->keys == p->inline_keys) {
		memcpy(r->inline_keys, p->inline_keys, sizeof(r->inline_keys));
		r->keys = r->inline_keys;
	} else {
		r->keys = p->keys;
		p->keys = p->inline_keys;
		p->n_keys = 0;
	}
}

int kx_extract(const struct kx_env *env, const char *sql, size_t len, size_t offset,
	       struct kx_result *r)
{
	int rc = kx_extract_fast(env, sql, len, offset, r);
	if (rc != 0 || r->verdict != KX_NOT_SURE || !env->use_parser)
		return rc;
	struct kx_result p;
	size_t b = offset < len ? offset : len;
	rc = kx_extract_parsed(env, sql + b, r->stmt_end - b, &p);
	if (rc == 0)
		kx_merge(r, &p);
	kx_result_destroy(&p);
	return rc;
}
