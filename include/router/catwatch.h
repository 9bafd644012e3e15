/*
 * catwatch.h - the catalog watcher: one background thread per router that
 * keeps the published shard map in step with the catalog (SPEC §3).
 *
 * It owns one libpq connection to the catalog (application_name
 * "shardrouter-catwatch"; blocking libpq, never on a worker thread) and:
 *   - registers the router in shardrouter.routers (router_id
 *     "HOSTNAME:PORT:PID") and heartbeats every catalog_poll_ms, writing
 *     lease_ms (its catalog_lease_ms) and acked_epoch = the smallest
 *     drained epoch of the workers (worker_min_drained_epoch, router/worker.h:
 *     every worker routes by a map of at least that epoch and no request
 *     routed by an older map is still in flight on a primary connection).
 *     After a swap every worker is kicked, switches to the new map and
 *     re-checks until drained; each advance wakes the watcher
 *     (catwatch_wake), which heartbeats at once - that write is the
 *     router's "ack" of the new epoch;
 *   - LISTENs on SM_CATALOG_CHANNEL and also reads shardrouter.meta.epoch
 *     every catalog_poll_ms (the fallback when a NOTIFY is lost); when the
 *     catalog's epoch is greater than the published one it loads the map,
 *     topo_build + topo_publish, writes the map_cache file, acks, and logs
 *     "map epoch A -> B (WHY)", WHY being notify, poll or connect (the
 *     check made right after each (re)connect);
 *   - reconnects with backoff (first retry at once, then doubling up to
 *     catalog_poll_ms, at most 5 s) when the connection fails;
 *   - tracks the catalog lease (below).
 * On a clean stop it deletes its row from shardrouter.routers.
 * catalog_poll_ms and catalog_lease_ms are re-read from g_shared.cfg on every
 * tick, so SIGHUP changes apply; catalog and map_cache need a restart.
 *
 * Threads: catwatch_start/catwatch_stop from the main thread only (after the
 * first topo_publish, after daemonising); catwatch_lease_ok from any thread.
 */
#ifndef SR_ROUTER_CATWATCH_H
#define SR_ROUTER_CATWATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct config;

/* Start the watcher thread for cfg (cfg->catalog, cfg->map_cache,
 * cfg->listen_port are read once). With no catalog configured (map_cache
 * only) no thread is started, the map stays static and the lease is always
 * held. Needs a published topo. SR_ENOMEM / SR_EIO (thread or pipe creation)
 * with em set. Call once. */
int catwatch_start(const struct config *cfg, struct sr_errmsg *em) SR_MUST_CHECK;
/* Main thread, after catwatch_start: wait up to timeout_ms for the first
 * lease (registered and map confirmed). false when it did not come: the
 * router starts anyway, refusing writes by key until it does. */
bool catwatch_wait_lease(int timeout_ms);

/* Stop and join the thread (unregistering the router when connected).
 * A no-op when not started. */
void catwatch_stop(void);

/* The catalog lease (SPEC §3). true while the router may trust its map for
 * writes: the catalog was confirmed reachable (epoch read, map current)
 * within the last catalog_lease_ms. false once that time has passed (the
 * watcher logs "catalog lease expired" when it notices; this function checks
 * the clock itself too, so it turns false on time even if the watcher is
 * stuck in a blocking call); it becomes true again only after the catalog is
 * reachable AND the map has been reloaded from it. While false, the router
 * must refuse writes to ranges it cannot confirm (reads go on).
 * A router that starts from the cache file gets one lease period of grace
 * counted from catwatch_start. Always true when no catalog is configured.
 * Lock-free (two atomic loads and a CLOCK_MONOTONIC read); any thread. */
bool catwatch_lease_ok(void);

/* False while the last confirmation was of a newer map than `epoch` (a
 * worker that has not switched to it yet must not write by its older map:
 * re-run after its kick). Always true without a catalog. Any thread. */
bool catwatch_lease_covers(uint64_t epoch);

/* A worker's drained epoch advanced: make the watcher heartbeat soon.
 * Non-blocking (one byte into a pipe); any thread; no-op when not running. */
void catwatch_wake(void);

#endif
