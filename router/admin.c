/*
 * admin.c - admin console commands (see router/admin.h).
 */
#include "router/admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "router/client.h"
#include "router/config.h"
#include "router/keyextract.h"
#include "router/funcs.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/route.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/hash.h"

#define SHARDROUTER_VERSION "0.1.0"

struct reply {
	struct client *c;
	struct evbuffer *out;
	int rows;
	int rc;
};

static void cols(struct reply *r, const char *const *names, size_t n)
{
	r->rc = r->rc ? r->rc : pw_write_row_desc(r->out, names, n);
}

static void row(struct reply *r, const char *const *v, size_t n)
{
	r->rc = r->rc ? r->rc : pw_write_data_row(r->out, v, n);
	r->rows++;
}

static void done(struct reply *r, const char *verb)
{
	char tag[64];
	if (verb)
		snprintf(tag, sizeof(tag), "%s", verb);
	else
		snprintf(tag, sizeof(tag), "SHOW");
	r->rc = r->rc ? r->rc : pw_write_command_complete(r->out, tag);
}

static void show_version(struct reply *r)
{
	const char *n[] = { "version" };
	const char *v[] = { "shardrouter " SHARDROUTER_VERSION };
	cols(r, n, 1);
	row(r, v, 1);
}

static void show_shards(struct reply *r)
{
	const struct topo *t = r->c->w->topo;
	const char *n[] = { "shard", "role", "replica", "host", "port", "healthy", "in_rotation",
			    "outstanding" };
	cols(r, n, 8);
	for (int i = 0; t && i < t->n_backends; i++) {
		const struct backend *b = &t->backends[i];
		char sh[16], rn[16], out[16];
		snprintf(sh, sizeof(sh), "%d", b->shard_id);
		snprintf(rn, sizeof(rn), "%d", b->replica_no);
		snprintf(out, sizeof(out), "%d", atomic_load(&b->live->outstanding));
		const char *v[] = { sh, backend_role_name(b->role), rn, b->host, b->port,
				    atomic_load(&b->live->healthy) ? "yes" : "no",
				    atomic_load(&b->live->in_rotation) ? "yes" : "no", out };
		row(r, v, 8);
	}
}

static void show_shardmap(struct reply *r)
{
	const struct topo *t = r->c->w->topo;
	const char *n[] = { "lo", "hi", "shard", "state", "epoch" };
	cols(r, n, 5);
	for (size_t i = 0; t && i < t->map->n_ranges; i++) {
		const struct sm_range *rg = &t->map->ranges[i];
		char lo[17], hi[17], sh[16], ep[24];
		sm_hash_format(rg->lo, lo);
		sm_hash_format(rg->hi, hi);
		snprintf(sh, sizeof(sh), "%d", rg->shard_id);
		snprintf(ep, sizeof(ep), "%llu", (unsigned long long)t->map->epoch);
		const char *v[] = { lo, hi, sh, sm_range_state_name(rg->state), ep };
		row(r, v, 5);
	}
}

static void show_pools(struct reply *r)
{
	struct worker *w = r->c->w;
	const char *n[] = { "worker", "shard", "role", "host", "port", "user", "database",
			    "sv_total", "sv_idle", "cl_waiting", "queries" };
	cols(r, n, 11);
	for (int i = 0; i < w->n_pools; i++) {
		const struct pool *p = w->pools[i];
		char wk[8], sh[16], tot[16], idl[16], wt[16], q[24];
		snprintf(wk, sizeof(wk), "%d", w->id);
		snprintf(sh, sizeof(sh), "%d", p->shard_id);
		snprintf(tot, sizeof(tot), "%d", p->n_total);
		snprintf(idl, sizeof(idl), "%d", p->n_idle);
		snprintf(wt, sizeof(wt), "%d", p->n_waiting);
		snprintf(q, sizeof(q), "%llu", (unsigned long long)p->n_queries);
		const char *v[] = { wk, sh, backend_role_name((enum backend_role)p->role), p->host,
				    p->port, p->user, p->db, tot, idl, wt, q };
		row(r, v, 11);
	}
}

static int config_row(const struct config_entry *e, const char *value, void *ctx)
{
	struct reply *r = ctx;
	const char *v[] = { e->key, value, e->default_value ? e->default_value : "",
			    e->reloadable ? "yes" : "no" };
	row(r, v, 4);
	return r->rc;
}

static void show_config(struct reply *r)
{
	const char *n[] = { "key", "value", "default", "reloadable" };
	cols(r, n, 4);
	if (config_foreach(r->c->w->cfg, config_row, r) && !r->rc)
		r->rc = SR_ENOMEM;
}

static const struct sm_table *admin_table_cb(void *ctx, const char *schema, size_t sl,
					     const char *name, size_t nl)
{
	const struct topo *t = ctx;
	return sm_map_find_table_n(t->map, schema, sl, name, nl);
}

static bool admin_func_cb(void *ctx, const char *schema, size_t sl, const char *name, size_t nl)
{
	(void)ctx;
	return funcs_is_read_only(schema, sl, name, nl);
}

/* SHOW ROUTE '<statement>': the decision for one statement. */
static void show_route(struct reply *r, const char *lit)
{
	struct topo *t = r->c->w->topo;
	const char *n[] = { "statement", "kind", "table", "key_column", "verdict", "hash", "range",
			    "shard", "role", "reason" };
	cols(r, n, 10);
	struct kx_env env = { admin_table_cb, admin_func_cb, t, true };
	struct kx_result k;
	if (kx_extract(&env, lit, strlen(lit), 0, &k)) {
		r->rc = SR_ENOMEM;
		return;
	}
	uint64_t hashes[64];
	size_t nh = 0;
	bool unresolved = false;
	for (uint32_t i = 0; i < k.n_keys && nh < 64; i++) {
		if (k.keys[i].is_param)
			unresolved = true;
		else
			hashes[nh++] = k.keys[i].hash;
	}
	struct route_unit u;
	route_unit_init(&u);
	route_add(&u, t, &k, hashes, nh, unresolved, NULL);
	char hash[17] = "", range[40] = "", shard[16] = "";
	int32_t s = u.has_shard ? u.shard : t->home_shard;
	if (u.has_hash) {
		sm_hash_format(u.hash, hash);
		const struct sm_range *rg = sm_map_lookup(t->map, u.hash);
		if (rg) {
			char lo[17], hi[17];
			sm_hash_format(rg->lo, lo);
			sm_hash_format(rg->hi, hi);
			snprintf(range, sizeof(range), "%s..%s", lo, hi);
		}
	}
	snprintf(shard, sizeof(shard), "%d", s);
	const char *role = u.error ? "" : u.needs_primary ? "primary" : "replica";
	char reason[400];
	if (u.error)
		snprintf(reason, sizeof(reason), "refused (%s): %s", u.sqlstate, u.message);
	else
		snprintf(reason, sizeof(reason), "%s%s", k.reason ? k.reason : "",
			 u.has_shard ? "" : "; no shard named: home shard");
	const char *v[] = { lit, kx_stmt_name(k.stmt), k.table ? k.table->name : "",
			    k.table ? k.table->key_column : "", kx_verdict_name(k.verdict), hash,
			    range, u.error ? "" : shard, role, reason };
	row(r, v, 10);
	kx_result_destroy(&k);
}

/* Split "SHOW ROUTE '...'" : returns the unquoted literal in buf. */
static bool route_literal(const char *p, char *buf, size_t len)
{
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '\'')
		return false;
	size_t o = 0;
	for (p++; *p; p++) {
		if (*p == '\'') {
			if (p[1] != '\'')
				return o < len;
			p++;
		}
		if (o + 1 >= len)
			return false;
		buf[o++] = *p;
		buf[o] = '\0';
	}
	return false;
}

static bool word(const char **p, const char *w)
{
	while (isspace((unsigned char)**p))
		(*p)++;
	size_t n = strlen(w);
	if (strncasecmp(*p, w, n) != 0 || isalnum((unsigned char)(*p)[n]))
		return false;
	*p += n;
	return true;
}

void admin_query(struct client *c, const char *sql)
{
	struct reply r = { .c = c, .out = client_output(c) };
	worker_refresh(c->w);
	const char *p = sql;
	char lit[4096];
	if (word(&p, "show")) {
		if (word(&p, "version"))
			show_version(&r);
		else if (word(&p, "shards") || word(&p, "replicas"))
			show_shards(&r);
		else if (word(&p, "shardmap"))
			show_shardmap(&r);
		else if (word(&p, "pools"))
			show_pools(&r);
		else if (word(&p, "config"))
			show_config(&r);
		else if (word(&p, "route") && route_literal(p, lit, sizeof(lit)))
			show_route(&r, lit);
		else {
			client_error(c, false, "42601", "unknown SHOW command", NULL,
				     "Try SHOW SHARDS, SHARDMAP, POOLS, CONFIG, VERSION or ROUTE "
				     "'<statement>'.");
			r.rc = pw_write_ready(r.out, 'I');
			return;
		}
		done(&r, "SHOW");
	} else {
		client_error(c, false, "42601", "unknown admin command", NULL,
			     "Try SHOW SHARDS, SHARDMAP, POOLS, CONFIG, VERSION or ROUTE "
			     "'<statement>'.");
	}
	if (!r.rc)
		r.rc = pw_write_ready(r.out, 'I');
	if (r.rc)
		client_close(c, "out of memory");
}
