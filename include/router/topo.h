/*
 * topo.h - the router's runtime view of the cluster: an immutable snapshot
 * built from a struct sm_map (shards, tables, ranges) plus one struct backend
 * per primary and replica with its host/port and live counters.
 *
 * A snapshot is refcounted; the main/catalog thread builds a new one and
 * swaps it in with topo_publish(); workers take topo_current() at the start
 * of a transaction (pinned until they topo_unref()). Backend counters are
 * atomics shared by all workers; everything else is read-only after build.
 */
#ifndef SR_ROUTER_TOPO_H
#define SR_ROUTER_TOPO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "shardmap/map.h"

enum backend_role { ROLE_PRIMARY = 0, ROLE_REPLICA = 1 };

const char *backend_role_name(enum backend_role r);

/* Live per-backend state shared across map versions (keyed by conninfo):
 * health published by the health thread, load counters by the workers. */
#define TOPO_LAT_BUCKETS 17
/* Upper bounds in microseconds of the latency buckets (last = +Inf). */
extern const uint64_t topo_latency_bounds_us[TOPO_LAT_BUCKETS - 1];

/* Count one unit's latency on l (any thread; relaxed atomics). */
struct backend_live;
void topo_count_latency(struct backend_live *l, uint64_t us);

struct backend_live {
	atomic_int outstanding;      /* queries running now (all workers) */
	atomic_ullong queries;       /* completed transactions routed here */
	atomic_bool healthy;         /* reachable and right role */
	atomic_bool in_rotation;     /* may serve reads (replicas) */
	atomic_llong lag_bytes;
	atomic_llong lag_ms;
	/* Also published by the health thread (router/health.h): */
	atomic_llong replay_lsn;     /* replica: replay LSN; primary: current WAL LSN (bytes) */
	atomic_bool promoted;        /* a replica that is not in recovery */
	atomic_int fail_streak;      /* consecutive checks that found it unhealthy */
	atomic_int health_reason;    /* enum health_reason of the last check */
	atomic_llong checked_at_ms;  /* wall clock (ms since the epoch) of it; 0 = never */
	/* Latency of each unit (Query or batch up to Sync) from forwarding to its
	 * ReadyForQuery, counted by the worker that relayed it. Bucket i counts
	 * units with latency <= topo_latency_bounds_us[i] (and > bucket i-1);
	 * the last bucket is +Inf. Counters only grow. */
	atomic_ullong lat_bucket[TOPO_LAT_BUCKETS];
	atomic_ullong lat_sum_us;
	atomic_ullong lat_count;
};

struct backend {
	int index;             /* position in topo->backends */
	int32_t shard_id;
	enum backend_role role;
	int replica_no;        /* 0 for the primary, 1.. for replicas */
	char host[256];
	char port[16];
	char *conninfo;        /* as in the catalog */
	struct backend_live *live;
};

struct topo_shard {
	int32_t id;
	int primary;           /* backend index */
	int n_replicas;
	int *replicas;         /* backend indexes */
};

struct topo {
	atomic_int refs;
	struct sm_map *map;    /* owned */
	int n_backends;
	struct backend *backends;
	int n_shards;
	struct topo_shard *shards;
	int32_t home_shard;    /* unsharded tables live here: the lowest shard id */
};

/* Build a snapshot from map (ownership of map passes to the topo on
 * success). Live state is found or created in a process-wide registry so
 * counters survive map changes. */
int topo_build(struct sm_map *map, struct topo **out, struct sr_errmsg *em) SR_MUST_CHECK;
void topo_ref(struct topo *t);
void topo_unref(struct topo *t);

const struct topo_shard *topo_shard(const struct topo *t, int32_t id);

/* Publish a new current snapshot (takes the caller's reference) and get
 * the current one with a new reference. Any thread. */
void topo_publish(struct topo *t);
struct topo *topo_current(void);
/* Bumped by every topo_publish (never 0 after the first); lets workers
 * notice a new snapshot with one atomic load. */
unsigned topo_generation(void);

#endif
