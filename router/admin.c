/*
 * admin.c - admin console commands (see router/admin.h).
 */
#include "router/admin.h"

#include <ctype.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/version.h"
#include "router/client.h"
#include "router/config.h"
#include "router/keyextract.h"
#include "router/funcs.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/server.h"
#include "router/route.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/hash.h"


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

static void show_replicas(struct reply *r)
{
	const struct topo *t = r->c->w->topo;
	const char *n[] = { "shard", "replica", "host", "port", "healthy", "in_rotation",
			    "lag_bytes", "lag_seconds", "outstanding", "transactions" };
	cols(r, n, 10);
	for (int i = 0; t && i < t->n_backends; i++) {
		const struct backend *b = &t->backends[i];
		if (b->role != ROLE_REPLICA)
			continue;
		char sh[16], rn[16], lb[24], ls[32], out[16], tx[24];
		snprintf(sh, sizeof(sh), "%d", b->shard_id);
		snprintf(rn, sizeof(rn), "%d", b->replica_no);
		snprintf(lb, sizeof(lb), "%lld", (long long)atomic_load(&b->live->lag_bytes));
		snprintf(ls, sizeof(ls), "%.3f", (double)atomic_load(&b->live->lag_ms) / 1000.0);
		snprintf(out, sizeof(out), "%d", atomic_load(&b->live->outstanding));
		snprintf(tx, sizeof(tx), "%llu", (unsigned long long)atomic_load(&b->live->queries));
		const char *v[] = { sh, rn, b->host, b->port,
				    atomic_load(&b->live->healthy) ? "yes" : "no",
				    atomic_load(&b->live->in_rotation) ? "yes" : "no", lb, ls, out, tx };
		row(r, v, 10);
	}
}

static void show_stats(struct reply *r)
{
	const char *n[] = { "clients", "units_routed", "routing_errors", "map_epoch", "paused" };
	cols(r, n, 5);
	char cl[16], u[24], e[24], ep[24];
	snprintf(cl, sizeof(cl), "%d", worker_total_clients());
	snprintf(u, sizeof(u), "%llu", (unsigned long long)atomic_load(&g_shared.stat_units));
	snprintf(e, sizeof(e), "%llu", (unsigned long long)atomic_load(&g_shared.stat_route_errors));
	snprintf(ep, sizeof(ep), "%llu",
		 (unsigned long long)(r->c->w->topo ? r->c->w->topo->map->epoch : 0));
	const char *v[] = { cl, u, e, ep, atomic_load(&g_shared.paused_all) ? "all" : atomic_load(&g_shared.paused_shards) ? "some shards" : "no" };
	row(r, v, 5);
}

/* This worker's clients (each worker owns its connections; the column says which). */
static void show_clients(struct reply *r)
{
	struct worker *w = r->c->w;
	const char *n[] = { "worker", "id", "user", "database", "peer", "state", "tls", "in_tx",
			    "server_shard", "server_role" };
	cols(r, n, 10);
	for (struct client *c = w->clients; c; c = c->next) {
		char wk[8], id[16], sh[16];
		snprintf(wk, sizeof(wk), "%d", w->id);
		snprintf(id, sizeof(id), "%u", c->id);
		snprintf(sh, sizeof(sh), "%d", c->server ? c->server->pool->shard_id : -1);
		const char *v[] = { wk, id, c->user, c->db, c->peer, client_state_name(c->state),
				    c->tls ? "yes" : "no", c->in_tx ? "yes" : "no",
				    c->server ? sh : NULL,
				    c->server ? backend_role_name((enum backend_role)c->server->pool->role)
					      : NULL };
		row(r, v, 10);
	}
}

static void show_servers(struct reply *r)
{
	struct worker *w = r->c->w;
	const char *n[] = { "worker", "id", "shard", "role", "host", "port", "user", "database",
			    "state", "backend_pid", "client" };
	cols(r, n, 11);
	for (int i = 0; i < w->n_pools; i++) {
		struct pool *p = w->pools[i];
		for (struct client *c = w->clients; c; c = c->next) {
			struct server *s = c->server;
			if (!s || s->pool != p)
				continue;
			char wk[8], id[24], sh[16], pid[16], cid[16];
			snprintf(wk, sizeof(wk), "%d", w->id);
			snprintf(id, sizeof(id), "%llu", (unsigned long long)s->id);
			snprintf(sh, sizeof(sh), "%d", p->shard_id);
			snprintf(pid, sizeof(pid), "%u", s->be_pid);
			snprintf(cid, sizeof(cid), "%u", c->id);
			const char *v[] = { wk, id, sh, backend_role_name((enum backend_role)p->role),
					    p->host, p->port, p->user, p->db,
					    server_state_name(s->state), pid, cid };
			row(r, v, 11);
		}
		for (struct server *s = p->idle; s; s = s->next) {
			char wk[8], id[24], sh[16], pid[16];
			snprintf(wk, sizeof(wk), "%d", w->id);
			snprintf(id, sizeof(id), "%llu", (unsigned long long)s->id);
			snprintf(sh, sizeof(sh), "%d", p->shard_id);
			snprintf(pid, sizeof(pid), "%u", s->be_pid);
			const char *v[] = { wk, id, sh, backend_role_name((enum backend_role)p->role),
					    p->host, p->port, p->user, p->db,
					    server_state_name(s->state), pid, NULL };
			row(r, v, 11);
		}
	}
}

static void show_shardmap(struct reply *r)
{
	const struct topo *t = r->c->w->topo;
	const char *n[] = { "lo", "hi", "shard", "state", "epoch", "read_lsn" };
	cols(r, n, 6);
	for (size_t i = 0; t && i < t->map->n_ranges; i++) {
		const struct sm_range *rg = &t->map->ranges[i];
		char lo[17], hi[17], sh[16], ep[24], lsn[18] = "";
		sm_hash_format(rg->lo, lo);
		sm_hash_format(rg->hi, hi);
		snprintf(sh, sizeof(sh), "%d", rg->shard_id);
		snprintf(ep, sizeof(ep), "%llu", (unsigned long long)t->map->epoch);
		if (rg->read_lsn)
			sm_lsn_format(rg->read_lsn, lsn);
		const char *v[] = { lo, hi, sh, sm_range_state_name(rg->state), ep, lsn };
		row(r, v, 6);
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

#define ADMIN_HELP                                                                                 \
	"Commands: SHOW SHARDS | REPLICAS | SHARDMAP | POOLS | CLIENTS | SERVERS | STATS | CONFIG "  \
	"| VERSION | ROUTE '<statement>', RELOAD, PAUSE [shard], RESUME [shard], SHUTDOWN."

struct reply;
static void admin_command(struct client *c, struct reply *r, const char *p);

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
	if (!word(&p, "show")) {
		admin_command(c, &r, p);
		return;
	}
	{
		if (word(&p, "version"))
			show_version(&r);
		else if (word(&p, "shards"))
			show_shards(&r);
		else if (word(&p, "replicas"))
			show_replicas(&r);
		else if (word(&p, "stats"))
			show_stats(&r);
		else if (word(&p, "clients"))
			show_clients(&r);
		else if (word(&p, "servers"))
			show_servers(&r);
		else if (word(&p, "shardmap"))
			show_shardmap(&r);
		else if (word(&p, "pools"))
			show_pools(&r);
		else if (word(&p, "config"))
			show_config(&r);
		else if (word(&p, "route") && route_literal(p, lit, sizeof(lit)))
			show_route(&r, lit);
		else {
			client_error(c, false, "42601", "unknown SHOW command", NULL, ADMIN_HELP);
			r.rc = pw_write_ready(r.out, 'I');
			return;
		}
		done(&r, "SHOW");
	}
	if (!r.rc)
		r.rc = pw_write_ready(r.out, 'I');
	if (r.rc)
		client_close(c, "out of memory");
}

/* An optional shard number after PAUSE/RESUME; -1 when absent. */
static bool shard_arg(const char *p, int32_t *out)
{
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == ';') {
		*out = -1;
		return true;
	}
	char *end;
	long v = strtol(p, &end, 10);
	while (isspace((unsigned char)*end) || *end == ';')
		end++;
	if (end == p || *end || v < 0 || v > 63)
		return false;
	*out = (int32_t)v;
	return true;
}

/* RELOAD, PAUSE, RESUME, SHUTDOWN: admin_users only. */
static void admin_command(struct client *c, struct reply *r, const char *p)
{
	const char *verb = NULL;
	int32_t shard = -1;
	bool known = true;
	if (!c->admin_write && (word(&p, "reload") || word(&p, "pause") || word(&p, "resume") ||
				word(&p, "shutdown"))) {
		client_error(c, false, "42501", "permission denied: admin_users only", NULL,
			     "stats_users may run SHOW commands.");
	} else if (word(&p, "reload")) {
		verb = "RELOAD";
		kill(getpid(), SIGHUP);
	} else if (word(&p, "pause")) {
		verb = "PAUSE";
		if (!shard_arg(p, &shard))
			known = false;
		else
			worker_pause(shard);
	} else if (word(&p, "resume")) {
		verb = "RESUME";
		if (!shard_arg(p, &shard))
			known = false;
		else
			worker_resume(shard);
	} else if (word(&p, "shutdown")) {
		verb = "SHUTDOWN";
		kill(getpid(), SIGTERM);
	} else {
		known = false;
	}
	if (!known)
		client_error(c, false, "42601", "unknown admin command", NULL, ADMIN_HELP);
	else if (verb) {
		log_info("admin %s by %s%s", verb, c->user, shard >= 0 ? " (one shard)" : "");
		done(r, verb);
	}
	if (!r->rc)
		r->rc = pw_write_ready(r->out, 'I');
	if (r->rc)
		client_close(c, "out of memory");
}
