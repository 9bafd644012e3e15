/*
 * route.h - the routing decision for one unit of client work (a simple Query
 * message, or an extended-protocol batch up to Sync/Flush): which shard,
 * and whether it needs the primary. Pure logic over key-extraction results
 * and the map snapshot; the caller resolves Bind parameters to hashes and
 * picks the backend (route_pick_backend). Worker thread (no shared state
 * but the backend_live atomics).
 */
#ifndef SR_ROUTER_ROUTE_H
#define SR_ROUTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/keyextract.h"
#include "router/topo.h"

struct route_unit {
	bool has_shard;        /* a statement named a shard */
	int32_t shard;
	bool needs_primary;    /* some statement writes */
	bool error;
	char sqlstate[6];
	char message[320];
	char hint[320];
	/* for SHOW ROUTE / logs: the statement that decided */
	const char *reason;
	const struct sm_table *table;
	bool has_hash;
	uint64_t hash;
	bool frozen;           /* a key lies in a range frozen by a move */
	uint64_t frozen_lo;    /* that range */
	uint64_t read_lsn;     /* max read_lsn of the keys' ranges (0 = none) */
	int n_statements;
};

/* Session-level hints (SET shardrouter.shard / shardrouter.shard_key). */
struct route_hints {
	bool has_shard;
	int32_t shard;
	const char *key;   /* NULL when unset */
	size_t key_len;
};

void route_unit_init(struct route_unit *u);

/*
 * Add one analysed statement. hashes/n_hashes are the key hashes with any
 * $n parameters already resolved (literal keys copied from r->keys); pass
 * n_hashes = 0 with keys_unresolved = true when parameters are not known
 * yet (Parse without Bind): then only the table decides nothing about the
 * shard. Sets u->error (with SQLSTATE and message naming table, key column
 * and shards) when the statement cannot be routed exactly.
 */
void route_add(struct route_unit *u, const struct topo *t, const struct kx_result *r,
	       const uint64_t *hashes, size_t n_hashes, bool keys_unresolved,
	       const struct route_hints *h);

/* Choose the backend for shard/primary: the primary, or the healthy
 * in-rotation replica with the fewest outstanding queries whose replay LSN
 * (as last published by the health monitor) is at least min_lsn (0 = any);
 * the primary when none qualifies. Returns the backend index or -1 for an
 * unknown shard. */
int route_pick_backend(const struct topo *t, int32_t shard, bool primary, int64_t min_lsn);

/* The primary of the home shard (unsharded tables, logins). */
int route_home_backend(const struct topo *t);

/* Hash a key given as text (hint or parameter) with a key type. */
int route_hash_text(enum sm_key_type type, const char *s, size_t n, uint64_t *out,
		    struct sr_errmsg *em) SR_MUST_CHECK;

#endif
