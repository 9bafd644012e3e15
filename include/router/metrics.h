/*
 * metrics.h - the Prometheus endpoint (SPEC §4 Metrics): `GET /metrics` on
 * metrics_listen, text exposition format 0.0.4, every name prefixed
 * "shardrouter_".
 *
 * The endpoint runs on its own thread with its own event_base and evhttp; a
 * scrape renders from the current topo snapshot (topo_current, unref after)
 * and process-wide atomics only (g_shared, worker_total_clients,
 * server_count, catwatch_lease_ok) - it never touches structures a worker
 * owns. Any other path answers 404; methods other than GET/HEAD answer 405.
 *
 * The rendering is split from the HTTP part so it can be tested against a
 * hand-built topo: metrics_collect_global reads the process-wide values into
 * a plain struct, metrics_render writes the exposition of a topo plus those
 * values into a buffer.
 *
 * Threads: metrics_render / metrics_collect_global from any thread;
 * metrics_start / metrics_stop from the main thread only (after
 * evthread_use_pthreads and after daemonising: the thread would not survive
 * a fork).
 */
#ifndef SR_ROUTER_METRICS_H
#define SR_ROUTER_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "router/worker.h"

struct evbuffer;
struct topo;
struct config_hostport;

/* The process-wide values of one scrape (everything not per backend). */
struct metrics_global {
	int client_connections;
	int server_connections;
	uint64_t routed_units;			   /* g_shared.stat_units */
	uint64_t route_errors_by[ROUTE_ERR_KINDS]; /* by enum route_err_kind */
	bool lease_ok;				   /* catwatch_lease_ok() */
	bool paused_all;
	uint64_t paused_shards; /* bit per shard id < 64 */
};

/* The Content-Type of the exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Read the process-wide atomics now. Any thread. */
void metrics_collect_global(struct metrics_global *out);

/* Append the whole exposition for topo t (NULL: no map yet, so no
 * per-backend or per-shard series and epoch 0) and g to out. Every metric
 * family has its # HELP and # TYPE lines and its samples together.
 * SR_ENOMEM when out cannot grow. Any thread. */
int metrics_render(struct evbuffer *out, const struct topo *t,
		   const struct metrics_global *g) SR_MUST_CHECK;

/* Bind hp (host:port; port > 0) and start the endpoint thread. SR_EIO with
 * em set when the address cannot be bound or the thread not started,
 * SR_EBUSY when already started, SR_ENOMEM. */
int metrics_start(const struct config_hostport *hp, struct sr_errmsg *em) SR_MUST_CHECK;

/* Stop and join the endpoint thread and free it; a no-op when not started. */
void metrics_stop(void);

#endif
