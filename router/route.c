/*
 * route.c - routing decisions (see router/route.h).
 */
#include "router/route.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shardmap/hash.h"

void route_unit_init(struct route_unit *u)
{
	memset(u, 0, sizeof(*u));
	u->shard = -1;
}

static void fail(struct route_unit *u, const char *sqlstate, const char *hint_text, const char *fmt,
		 ...) SR_PRINTF(4, 5);

static void fail(struct route_unit *u, const char *sqlstate, const char *hint_text, const char *fmt,
		 ...)
{
	if (u->error)
		return;
	u->error = true;
	memcpy(u->sqlstate, sqlstate, 6);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->message, sizeof(u->message), fmt, ap);
	va_end(ap);
	snprintf(u->hint, sizeof(u->hint), "%s", hint_text ? hint_text : "");
}

int route_hash_text(enum sm_key_type type, const char *s, size_t n, uint64_t *out,
		    struct sr_errmsg *em)
{
	struct sm_key k;
	int rc = sm_key_from_text(type, s, n, &k, em);
	if (rc)
		return rc;
	*out = sm_hash_key(&k);
	return 0;
}

static void set_shard(struct route_unit *u, int32_t shard, const char *why)
{
	if (u->has_shard && u->shard != shard) {
		fail(u, "0A000", "A transaction runs on one shard; split the work per shard.",
		     "statements in one request need shards %d and %d; shardrouter runs a "
		     "transaction on one shard only",
		     u->shard, shard);
		return;
	}
	u->has_shard = true;
	u->shard = shard;
	if (why)
		u->reason = why;
}

/* Key type to use for a hint key: the statement's table, else the only key
 * type in the map. */
static bool hint_key_type(const struct topo *t, const struct kx_result *r, enum sm_key_type *out)
{
	if (r->table) {
		*out = r->table->key_type;
		return true;
	}
	const struct sm_map *m = t->map;
	if (m->n_tables == 0)
		return false;
	for (size_t i = 1; i < m->n_tables; i++)
		if (m->tables[i].key_type != m->tables[0].key_type)
			return false;
	*out = m->tables[0].key_type;
	return true;
}

static bool apply_hint_key(struct route_unit *u, const struct topo *t, const struct kx_result *r,
			   const char *key, size_t len)
{
	enum sm_key_type kt;
	if (!hint_key_type(t, r, &kt)) {
		fail(u, "22023", NULL,
		     "shard_key hint cannot be hashed: the statement names no sharded table and "
		     "the sharded tables have different key types");
		return true;
	}
	uint64_t h;
	struct sr_errmsg em;
	if (route_hash_text(kt, key, len, &h, &em)) {
		fail(u, "22P02", em.text, "invalid shard_key hint for key type %s",
		     sm_key_type_name(kt));
		return true;
	}
	const struct sm_range *rg = sm_map_lookup(t->map, h);
	if (!rg) {
		fail(u, "XX000", NULL, "shard map has no range for hash %016llx",
		     (unsigned long long)h);
		return true;
	}
	u->has_hash = true;
	u->hash = h;
	if (rg->read_lsn > u->read_lsn)
		u->read_lsn = rg->read_lsn;
	if (rg->state == SM_RANGE_FROZEN && !u->frozen) {
		u->frozen = true;
		u->frozen_lo = rg->lo;
	}
	set_shard(u, rg->shard_id, "shard_key hint");
	return true;
}

static bool apply_hints(struct route_unit *u, const struct topo *t, const struct kx_result *r,
			const struct route_hints *h)
{
	if (r->has_hint_shard || (h && h->has_shard)) {
		int32_t s = r->has_hint_shard ? r->hint_shard : h->shard;
		if (!topo_shard(t, s)) {
			fail(u, "22023", "Run `shardctl shard list` to see the shards.",
			     "shard hint names shard %d, which does not exist", s);
			return true;
		}
		set_shard(u, s, "shard hint");
		return true;
	}
	if (r->hint_key)
		return apply_hint_key(u, t, r, r->hint_key, r->hint_key_len);
	if (h && h->key)
		return apply_hint_key(u, t, r, h->key, h->key_len);
	return false;
}

static void route_keys(struct route_unit *u, const struct topo *t, const struct kx_result *r,
		       const uint64_t *hashes, size_t n)
{
	int32_t first = -1;
	for (size_t i = 0; i < n; i++) {
		const struct sm_range *rg = sm_map_lookup(t->map, hashes[i]);
		if (!rg) {
			fail(u, "XX000", NULL, "shard map has no range for hash %016llx",
			     (unsigned long long)hashes[i]);
			return;
		}
		if (rg->state == SM_RANGE_FROZEN && !u->frozen) {
			u->frozen = true;
			u->frozen_lo = rg->lo;
		}
		if (rg->read_lsn > u->read_lsn)
			u->read_lsn = rg->read_lsn;
		if (first >= 0 && rg->shard_id != first) {
			fail(u, "0A000",
			     "Send one statement per shard, or one key per statement.",
			     "keys of table \"%s\" (column %s) in one statement live on shards %d "
			     "and %d; cross-shard statements are not supported",
			     r->table->name, r->table->key_column, first, rg->shard_id);
			return;
		}
		first = rg->shard_id;
	}
	if (n > 0) {
		u->has_hash = true;
		u->hash = hashes[0];
		set_shard(u, first, r->reason);
	}
}

static void route_sharded(struct route_unit *u, const struct topo *t, const struct kx_result *r,
			  const uint64_t *hashes, size_t n, bool unresolved)
{
	const struct sm_table *tb = r->table;
	if (r->mixed_colocation) {
		fail(u, "0A000", "Join only tables sharded by the same key column and type.",
		     "statement joins sharded tables that are not co-located with \"%s\" (key %s)",
		     tb->name, tb->key_column);
		return;
	}
	if (r->verdict == KX_KEY) {
		if (!unresolved)
			route_keys(u, t, r, hashes, n);
	} else if (r->is_write) {
		fail(u, "0A000",
		     "Add WHERE <key> = ... (or a /* shard_key=... */ hint) so the write goes to one "
		     "shard.",
		     "write on sharded table \"%s\" without a usable value for key column \"%s\" (%s)",
		     tb->name, tb->key_column, r->reason ? r->reason : "no key");
		return;
	} else {
		fail(u, "0A000",
		     "Add WHERE <key> = ... or a /* shard_key=... */ hint; reads across all shards "
		     "are not supported yet.",
		     "read on sharded table \"%s\" without a usable value for key column \"%s\" (%s)",
		     tb->name, tb->key_column, r->reason ? r->reason : "no key");
		return;
	}
	if (r->names_unsharded && u->has_shard && u->shard != t->home_shard)
		fail(u, "0A000", "Unsharded tables live on the home shard only.",
		     "statement on sharded table \"%s\" (shard %d) also names an unsharded table, "
		     "which lives on shard %d",
		     tb->name, u->shard, t->home_shard);
}

void route_add(struct route_unit *u, const struct topo *t, const struct kx_result *r,
	       const uint64_t *hashes, size_t n_hashes, bool keys_unresolved,
	       const struct route_hints *h)
{
	u->n_statements++;
	if (r->is_write)
		u->needs_primary = true;
	if (u->error)
		return;
	if (r->syntax_error) {
		/* Not valid SQL: it cannot change anything anywhere, so it goes where
		 * the unit goes and Postgres answers 42601 with the position. */
		if (!u->reason)
			u->reason = "syntax error: Postgres will report it";
		return;
	}
	if (!u->table && r->table)
		u->table = r->table;
	if (apply_hints(u, t, r, h))
		return;
	if (r->table) {
		route_sharded(u, t, r, hashes, n_hashes, keys_unresolved);
		return;
	}
	if (r->names_unsharded) {
		set_shard(u, t->home_shard, "unsharded table: home shard");
		return;
	}
	if (!u->reason)
		u->reason = "no table named";
}

int route_pick_backend(const struct topo *t, int32_t shard, bool primary, int64_t min_lsn)
{
	const struct topo_shard *s = topo_shard(t, shard);
	if (!s)
		return -1;
	if (primary || s->n_replicas == 0)
		return s->primary;
	int best = -1, best_load = 0;
	for (int i = 0; i < s->n_replicas; i++) {
		const struct backend *b = &t->backends[s->replicas[i]];
		if (!atomic_load_explicit(&b->live->healthy, memory_order_relaxed) ||
		    !atomic_load_explicit(&b->live->in_rotation, memory_order_relaxed))
			continue;
		if (min_lsn > 0 &&
		    atomic_load_explicit(&b->live->replay_lsn, memory_order_relaxed) < min_lsn)
			continue; /* has not replayed this client's last write yet */
		int load = atomic_load_explicit(&b->live->outstanding, memory_order_relaxed);
		if (best < 0 || load < best_load) {
			best = s->replicas[i];
			best_load = load;
		}
	}
	return best >= 0 ? best : s->primary;
}

int route_home_backend(const struct topo *t)
{
	const struct topo_shard *s = topo_shard(t, t->home_shard);
	return s ? s->primary : 0;
}
