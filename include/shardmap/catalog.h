/*
 * catalog.h - the shard map's home in Postgres: schema `shardrouter` (SPEC §3).
 *
 * The only libpq user in shardmap/. Installs the schema, loads the whole
 * cluster description (shards, replicas, tables, ranges, epoch) into a
 * struct sm_map from one consistent snapshot, and applies changes safely:
 * every change runs in one transaction that takes the catalog advisory lock
 * (SM_CATALOG_LOCK_KEY), reloads the map, lets a caller-supplied function
 * edit it with the pure map.h functions, validates the result, writes only
 * the difference, bumps shardrouter.meta.epoch by one and sends
 * NOTIFY shardrouter_map, '<new epoch>'. So the catalog never holds an
 * invalid map and concurrent changes serialise.
 *
 * The schema itself is documented at the top of shardmap/catalog.c.
 *
 * Blocking (libpq, synchronous). Any thread, one PGconn per thread; never on
 * a router worker thread. Functions leave the connection outside any
 * transaction (they ROLLBACK on failure).
 */
#ifndef SR_SHARDMAP_CATALOG_H
#define SR_SHARDMAP_CATALOG_H

#include <stdint.h>

#include <libpq-fe.h>

#include "common/err.h"
#include "shardmap/map.h"

/* The version of the schema this code creates and understands. */
#define SM_CATALOG_SCHEMA_VERSION 1

/* pg_advisory_xact_lock key serialising every catalog change (and init).
 * The ASCII bytes "SHRDRTR1" = 0x5348524452545231 = 6001136956863697457.
 * A DBA can block all changes with SELECT pg_advisory_lock(6001136956863697457). */
#define SM_CATALOG_LOCK_KEY INT64_C(0x5348524452545231)
#define SM_CATALOG_LOCK_KEY_STR "6001136956863697457"

/* LISTEN/NOTIFY channel; the payload is the new epoch in decimal. */
#define SM_CATALOG_CHANNEL "shardrouter_map"

/* Create schema shardrouter and its tables if missing (idempotent; every
 * statement IF NOT EXISTS / guarded, run under the advisory lock).
 * Does not bump the epoch. An existing catalog with a newer schema_version
 * is refused (SR_EUNSUPPORTED); an older one is migrated. */
int sm_catalog_install(PGconn *conn, struct sr_errmsg *em) SR_MUST_CHECK;

/* Load the whole map (epoch, shards with replicas, tables, ranges) in one
 * REPEATABLE READ READ ONLY snapshot. The map is validated when it has
 * ranges (a catalog with no ranges yet - before `map init` - loads with
 * n_ranges == 0). *out is the caller's to sm_map_free. Errors: SR_ENOTFOUND
 * (no catalog schema: run `shardctl init`), SR_EDB, SR_ECORRUPT (invalid map
 * in the catalog), SR_ENOMEM. */
int sm_catalog_load(PGconn *conn, struct sm_map **out, struct sr_errmsg *em) SR_MUST_CHECK;

/* Read just the current epoch (cheap; for polling). */
int sm_catalog_epoch(PGconn *conn, uint64_t *out, struct sr_errmsg *em) SR_MUST_CHECK;

/* A change: edit m in place with map.h functions. Return 0 to commit, or a
 * negative enum sr_err (with em set) to abort the whole transaction.
 * Runs with the advisory lock held: keep it short and do no network I/O. */
typedef int sm_catalog_change_fn(struct sm_map *m, void *ctx, struct sr_errmsg *em);

/* Run one change as described at the top of this file. On success
 * *new_epoch is the epoch after the change; if the change left the map
 * identical nothing is written, the epoch is not bumped and *new_epoch is
 * the current epoch. On any failure the transaction is rolled back and the
 * catalog is unchanged; the error is fn's, or SR_EDB / validation errors
 * (SR_EGAP, SR_EOVERLAP, SR_ENOTFOUND, ...) with the reason in em. */
int sm_catalog_apply(PGconn *conn, sm_catalog_change_fn *fn, void *ctx, uint64_t *new_epoch,
		     struct sr_errmsg *em) SR_MUST_CHECK;

#endif
