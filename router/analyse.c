/*
 * analyse.c - analysis of a unit before routing (see router/analyse.h).
 */
#include "router/analyse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/client.h"
#include "router/config.h"
#include "router/funcs.h"
#include "router/pgwire.h"
#include "router/session.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/hash.h"

struct kx_ctx {
	struct topo *topo;
	const struct config *cfg;
};

static const struct sm_table *kx_table_cb(void *ctx, const char *schema, size_t schema_len,
					  const char *name, size_t name_len)
{
	const struct kx_ctx *k = ctx;
	return sm_map_find_table_n(k->topo->map, schema, schema_len, name, name_len);
}

static bool kx_func_cb(void *ctx, const char *schema, size_t schema_len, const char *name,
		       size_t name_len)
{
	const struct kx_ctx *k = ctx;
	return funcs_is_read_only(schema, schema_len, name, name_len) ||
	       config_function_is_read_only(k->cfg, schema, schema_len, name, name_len);
}

static void kx_env_for(struct client *c, struct kx_ctx *k, struct kx_env *env)
{
	k->topo = c->w->topo;
	k->cfg = c->w->cfg;
	env->table = kx_table_cb;
	env->function_is_read_only = kx_func_cb;
	env->ctx = k;
	env->use_parser = true;
}

static struct route_hints hints_of(const struct client *c)
{
	struct route_hints h = { .has_shard = c->hint_has_shard, .shard = c->hint_shard };
	if (c->hint_key) {
		h.key = c->hint_key;
		h.key_len = strlen(c->hint_key);
	}
	return h;
}

bool analyse_name_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static void note_session_flags(struct client *c, struct analysis *a, const struct kx_result *r)
{
	if (c->w->cfg->pool_mode != CONFIG_POOL_TRANSACTION || a->unsupported)
		return;
	if (r->session_flags & KX_SESS_LISTEN)
		a->unsupported = "LISTEN";
	else if (r->session_flags & KX_SESS_ADVISORY_LOCK)
		a->unsupported = "session-level advisory locks";
	else if (r->session_flags & KX_SESS_WITH_HOLD)
		a->unsupported = "cursors WITH HOLD";
	else if (r->session_flags & KX_SESS_PREPARE)
		a->unsupported = "SQL-level PREPARE";
}

/* Literal key hashes of r; false when a key is a parameter. */
static bool literal_hashes(const struct kx_result *r, uint64_t *out, size_t cap, size_t *n)
{
	*n = 0;
	for (uint32_t i = 0; i < r->n_keys && *n < cap; i++) {
		if (r->keys[i].is_param)
			return false;
		out[(*n)++] = r->keys[i].hash;
	}
	return r->n_keys <= cap;
}

/* Record what a statement means for local answers and session tracking. */
static void note_kind(struct client *c, struct analysis *a, const struct kx_result *r)
{
	a->n_stmts++;
	if (a->n_stmts == 1)
		a->first = r->stmt;
	note_session_flags(c, a, r);
	if (r->stmt == KX_STMT_BEGIN) {
		a->has_begin = true;
		a->begin_ro = r->read_only_txn;
	}
	if ((r->stmt == KX_STMT_SET || r->stmt == KX_STMT_RESET) && r->set_name &&
	    r->set_name_len > 12 && strncasecmp(r->set_name, "shardrouter.", 12) == 0) {
		a->sr_set = true;
		a->sr_reset = r->stmt == KX_STMT_RESET || !r->set_value;
		/* r (and a name it folded into r->name_buf) dies before a is used */
		a->sr_name_len = r->set_name_len - 12;
		if (a->sr_name_len >= sizeof(a->sr_name_buf))
			a->sr_name_len = sizeof(a->sr_name_buf) - 1;
		memcpy(a->sr_name_buf, r->set_name + 12, a->sr_name_len);
		a->sr_name_buf[a->sr_name_len] = '\0';
		a->sr_name = a->sr_name_buf;
		a->sr_value = r->set_value;
		a->sr_value_len = r->set_value_len;
	}
}

static void analyse_statement(struct client *c, struct analysis *a, const struct kx_result *r)
{
	note_kind(c, a, r);
	if (a->sr_set)
		return;
	if ((r->stmt == KX_STMT_SET || r->stmt == KX_STMT_RESET) && !r->set_local && r->set_name &&
	    a->n_sets < MAX_NOTED_SETS) {
		struct noted_set *ns = &a->sets[a->n_sets];
		if (r->set_name_len < sizeof(ns->name)) {
			memcpy(ns->name, r->set_name, r->set_name_len);
			ns->name[r->set_name_len] = '\0';
			ns->name_len = r->set_name_len;
			ns->value = r->stmt == KX_STMT_SET ? r->set_value : NULL;
			ns->value_len = r->stmt == KX_STMT_SET ? r->set_value_len : 0;
			a->n_sets++;
		}
	}
	uint64_t hashes[64];
	size_t n;
	bool resolved = literal_hashes(r, hashes, 64, &n);
	struct route_hints h = hints_of(c);
	route_add(&a->ru, c->w->topo, r, hashes, n, !resolved, &h);
}

bool analyse_query(struct client *c, const uint8_t *p, uint32_t len, struct analysis *a)
{
	if (len == 0 || p[len - 1] != '\0') {
		client_error(c, true, "08P01", "invalid Query message: missing terminator", NULL, NULL);
		return false;
	}
	const char *sql = (const char *)p;
	size_t sql_len = len - 1, off = 0;
	struct kx_ctx k;
	struct kx_env env;
	kx_env_for(c, &k, &env);
	while (off < sql_len) {
		struct kx_result r;
		if (kx_extract(&env, sql, sql_len, off, &r)) {
			client_error(c, true, "53200", "out of memory", NULL, NULL);
			return false;
		}
		size_t end = r.stmt_end > off ? r.stmt_end : sql_len;
		if (r.stmt != KX_STMT_EMPTY)
			analyse_statement(c, a, &r);
		kx_result_destroy(&r);
		off = end;
	}
	return true;
}

/* Analyse (and cache on p) a prepared statement's text. */
static const struct kx_result *pstmt_kx(struct client *c, struct pstmt *p)
{
	if (p->kx_gen == c->w->topo_gen)
		return &p->kx;
	if (p->kx_gen)
		kx_result_destroy(&p->kx);
	p->kx_gen = 0;
	struct kx_ctx k;
	struct kx_env env;
	kx_env_for(c, &k, &env);
	if (kx_extract(&env, p->sql, p->sql_len, 0, &p->kx))
		return NULL;
	p->kx_gen = c->w->topo_gen;
	return &p->kx;
}

static uint32_t param_type(const struct pstmt *p, uint16_t i)
{
	return i < p->n_types ? p->types[i] : 0;
}

/* Hash one Bind parameter with the table's key type. */
static int hash_param(const struct pstmt *p, enum sm_key_type kt, uint16_t idx, int16_t fmt,
		      const uint8_t *v, int32_t vlen, uint64_t *out, struct sr_errmsg *em)
{
	struct sm_key key;
	int rc;
	uint32_t oid = param_type(p, idx);
	bool textual_oid = oid == 25 || oid == 1043 || oid == 705; /* text, varchar, unknown */
	if (fmt == 1 && !textual_oid)
		rc = sm_key_from_binary(kt, v, (size_t)vlen, &key, em);
	else
		rc = sm_key_from_text(kt, (const char *)v, (size_t)vlen, &key, em);
	if (rc)
		return rc;
	*out = sm_hash_key(&key);
	return 0;
}

/* Resolve the key hashes of a Bind against its statement. Returns false and
 * fills a routing error in a when a value is invalid. */
static bool bind_hashes(struct analysis *a, const struct pstmt *p, const struct kx_result *r,
			struct pw_reader *rd, uint64_t *out, size_t cap, size_t *n)
{
	int16_t nfmt = pw_read_i16(rd);
	if (nfmt < 0 || (size_t)nfmt * 2 > pw_reader_left(rd))
		return false;
	const uint8_t *fmts = pw_read_bytes(rd, (size_t)nfmt * 2);
	int16_t nparams = pw_read_i16(rd);
	const uint8_t *vals[256];
	int32_t lens[256];
	for (int i = 0; i < nparams && !rd->bad; i++) {
		int32_t l = pw_read_i32(rd);
		if (i < 256) {
			lens[i] = l;
			vals[i] = l > 0 ? pw_read_bytes(rd, (size_t)l) : NULL;
		} else if (l > 0) {
			(void)pw_read_bytes(rd, (size_t)l);
		}
	}
	if (rd->bad)
		return false;
	*n = 0;
	for (uint32_t i = 0; i < r->n_keys && *n < cap; i++) {
		if (!r->keys[i].is_param) {
			out[(*n)++] = r->keys[i].hash;
			continue;
		}
		uint16_t idx = (uint16_t)(r->keys[i].param - 1);
		if (idx >= nparams || idx >= 256)
			return false;
		if (lens[idx] < 0) {
			if (r->is_write) {
				snprintf(a->ru.message, sizeof(a->ru.message),
					 "NULL value for key column \"%s\" of table \"%s\"",
					 r->table->key_column, r->table->name);
				memcpy(a->ru.sqlstate, "23502", 6);
				a->ru.error = true;
				return false;
			}
			continue; /* key = NULL matches nothing: any shard answers */
		}
		int16_t fmt = nfmt == 0 ? 0 : nfmt == 1 ? (int16_t)pw_get_u16(fmts)
							: (int16_t)pw_get_u16(fmts + 2 * idx);
		struct sr_errmsg em;
		if (hash_param(p, r->table->key_type, idx, fmt, lens[idx] ? vals[idx] : (const uint8_t *)"",
			       lens[idx], &out[*n], &em)) {
			snprintf(a->ru.message, sizeof(a->ru.message),
				 "invalid value for key column \"%s\" in parameter $%u: %.200s",
				 r->table->key_column, idx + 1, em.text);
			memcpy(a->ru.sqlstate, "22P02", 6);
			a->ru.error = true;
			return false;
		}
		(*n)++;
	}
	return true;
}

static bool analyse_parse(struct client *c, struct analysis *a, const uint8_t *p, uint32_t len)
{
	struct pw_reader rd;
	pw_reader_init(&rd, p, len);
	const char *name = pw_read_cstr(&rd, NULL);
	size_t sql_len;
	const char *sql = pw_read_cstr(&rd, &sql_len);
	int16_t nt = pw_read_i16(&rd);
	const uint8_t *types = nt > 0 ? pw_read_bytes(&rd, (size_t)nt * 4) : NULL;
	if (rd.bad || nt < 0) {
		client_error(c, true, "08P01", "invalid Parse message", NULL, NULL);
		return false;
	}
	struct pstmt *ps;
	if (session_add_stmt(c, name, sql, sql_len, types, (uint16_t)nt, &ps)) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return false;
	}
	const struct kx_result *r = pstmt_kx(c, ps);
	if (!r) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return false;
	}
	note_session_flags(c, a, r);
	/* Parse alone decides a shard only through literal keys or hints. */
	uint64_t hashes[64];
	size_t n;
	bool resolved = literal_hashes(r, hashes, 64, &n);
	struct route_hints h = hints_of(c);
	route_add(&a->ru, c->w->topo, r, hashes, n, !resolved, &h);
	if (!resolved)
		a->ru.n_statements--; /* counted again at Bind */
	return true;
}

static bool analyse_bind(struct client *c, struct analysis *a, const uint8_t *p, uint32_t len)
{
	struct pw_reader rd;
	pw_reader_init(&rd, p, len);
	(void)pw_read_cstr(&rd, NULL);
	const char *stmt = pw_read_cstr(&rd, NULL);
	if (rd.bad) {
		client_error(c, true, "08P01", "invalid Bind message", NULL, NULL);
		return false;
	}
	struct pstmt *ps = session_find_stmt(c, stmt);
	if (!ps)
		return true; /* the server reports the missing statement */
	const struct kx_result *r = pstmt_kx(c, ps);
	if (!r) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return false;
	}
	note_kind(c, a, r);
	if (a->n_stmts == 1)
		snprintf(a->ext_stmt, sizeof(a->ext_stmt), "%s", stmt);
	uint64_t hashes[64];
	size_t n = 0;
	bool keyed = r->verdict == KX_KEY && r->table;
	if (keyed && !bind_hashes(a, ps, r, &rd, hashes, 64, &n)) {
		if (!a->ru.error) {
			client_error(c, true, "08P01", "invalid Bind message", NULL, NULL);
			return false;
		}
		return true;
	}
	struct route_hints h = hints_of(c);
	if (keyed && n == 0) {
		/* only NULL keys: any shard gives the same (empty) answer */
		struct kx_result copy = *r;
		copy.verdict = KX_NO_KEY;
		copy.table = NULL;
		copy.names_unsharded = true;
		route_add(&a->ru, c->w->topo, &copy, NULL, 0, false, &h);
		return true;
	}
	route_add(&a->ru, c->w->topo, r, hashes, n, false, &h);
	return true;
}

bool analyse_extended(struct client *c, const uint8_t *data, size_t len, struct analysis *a)
{
	size_t off = 0;
	while (off + 5 <= len) {
		char type = (char)data[off];
		uint32_t l = pw_get_u32(data + off + 1) - 4;
		const uint8_t *p = data + off + 5;
		bool ok = true;
		if (type == PW_FE_PARSE)
			ok = analyse_parse(c, a, p, l);
		else if (type == PW_FE_BIND)
			ok = analyse_bind(c, a, p, l);
		else if (type == PW_FE_EXECUTE)
			a->n_execs++;
		if (!ok)
			return false;
		off += 5 + (size_t)l;
	}
	return true;
}
