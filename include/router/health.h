/*
 * health.h - the health and replica-lag monitor: one thread of its own that
 * checks every primary and replica of the current shard map each
 * health_check_interval_ms and publishes the result in each backend's
 * struct backend_live (healthy, in_rotation, lag_bytes, lag_ms, replay_lsn,
 * promoted, fail_streak, checked_at_ms, health_reason). Workers only read those
 * atomics (route_pick_backend: healthy && in_rotation); they never block on
 * this module. Blocking libpq runs only on the monitor's thread.
 *
 * What one check does, per backend (primaries of every shard first, then the
 * replicas, so each replica is compared with a primary sample taken just
 * before it):
 *   - keep one persistent PGconn per backend; (re)connect when there is none
 *     or it broke. Connect and query time out after min(interval, 2 s), using
 *     libpq's non-blocking API and poll(): a hung server costs one timeout per
 *     round, never a stuck monitor. A timeout or error closes the connection.
 *   - one query: pg_is_in_recovery(), and as a number of bytes
 *     (pg_wal_lsn_diff(x, '0/0')::bigint) pg_current_wal_lsn() on a server not
 *     in recovery, pg_last_wal_replay_lsn() on one in recovery.
 *   - a primary must say "not in recovery"; a replica must say "in recovery".
 *     A replica that says otherwise was promoted: unhealthy, never a replica.
 *
 * Credentials (no config key of its own): the backend's catalog conninfo is
 * used as is (host, port, sslmode, ...), completed with
 *   user:     the conninfo's user=, else the FIRST user, in auth_file order,
 *             whose auth_file secret is a plain (non-empty) password;
 *   password: the conninfo's password=, else that user's plain password from
 *             auth_file (when it has one), else libpq's usual sources
 *             (PGPASSWORD, ~/.pgpass);
 *   dbname:   the conninfo's dbname=, else "postgres";
 *   application_name: "shardrouter-health" unless the conninfo sets one.
 * The functions used need no privilege, so an ordinary application user works.
 *
 * Lag in bytes: the primary's current WAL LSN minus the replica's replay LSN,
 * clamped at 0.
 *
 * Lag in time, without false lag on an idle primary: the monitor remembers,
 * per primary, a ring of (time first seen, LSN) samples, one added each round
 * in which the primary's LSN moved past the newest sample (an idle primary adds
 * nothing, so history is not pushed out). For a replica with replay LSN R:
 *   - if R >= the newest primary LSN: lag 0 - the replica has everything the
 *     primary had, however long ago the last transaction was;
 *   - else lag_ms = now - (time of the oldest sample whose LSN > R), i.e. how
 *     long ago the primary first had WAL the replica still has not replayed.
 * Samples are taken once per interval, so the time is an under-estimate by at
 * most one interval; when even the oldest remembered sample is past R the
 * result is a lower bound (the ring holds HEALTH_RING_SIZE samples). When the
 * primary cannot be reached, the same computation against the last samples it
 * gave still yields a lower bound that grows while the replica stands still.
 * Without any primary sample yet, lag is unknown: it neither removes a replica
 * nor lets it return.
 *
 * Rotation with hysteresis (replicas; health_step): a replica leaves rotation
 * at once when it is unreachable, its check query fails, it was promoted, or
 * its lag is over replica_max_lag_bytes or replica_max_lag_ms (0 = any lag is
 * too much). It returns only after HEALTH_RETURN_CHECKS (2) consecutive checks
 * in which it was healthy and under HALF of both thresholds. A primary's
 * in_rotation simply follows its health. Each change of a replica's rotation
 * is logged as one line with the reason and the lag.
 *
 * Threads: health_start/health_stop from the main thread only; the pure
 * functions (health_classify, health_step, health_ring_*) from any thread on
 * their own data.
 */
#ifndef SR_ROUTER_HEALTH_H
#define SR_ROUTER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "router/topo.h"

#define HEALTH_RETURN_CHECKS 2 /* good checks in a row before a replica returns */
#define HEALTH_RING_SIZE 256   /* primary (time, LSN) samples remembered */
#define HEALTH_MAX_TIMEOUT_MS 2000

/* Why a backend is not fully fit; HEALTH_OK when it is. The first four make
 * it unhealthy; the lag reasons only take a replica out of rotation. */
enum health_reason {
	HEALTH_OK = 0,
	HEALTH_UNREACHABLE,  /* cannot connect (or connection lost / timed out) */
	HEALTH_QUERY_FAILED, /* connected, but the check query failed */
	HEALTH_PROMOTED,     /* a replica that is not in recovery */
	HEALTH_IN_RECOVERY,  /* a primary that is in recovery */
	HEALTH_LAG_BYTES,    /* replica over replica_max_lag_bytes */
	HEALTH_LAG_MS,	     /* replica over replica_max_lag_ms */
};

/* Short stable name, e.g. "lag_bytes". Never NULL. */
const char *health_reason_name(enum health_reason r);

/* What one check saw. */
struct health_obs {
	bool reachable; /* a connection exists */
	bool query_ok;	/* the check query returned its row */
	bool in_recovery;
	bool lag_known; /* lag_bytes/lag_ms are meaningful (replicas) */
	int64_t lag_bytes;
	int64_t lag_ms;
};

struct health_limits {
	int64_t max_lag_bytes; /* replica_max_lag_bytes */
	int64_t max_lag_ms;    /* replica_max_lag_ms */
};

/* Rotation state of one replica across checks (health_state_init). */
struct health_state {
	bool in_rotation;
	int good_streak;	   /* consecutive checks fit to return */
	enum health_reason reason; /* of the last check */
};

void health_state_init(struct health_state *st, bool in_rotation);

/* The first problem obs shows for a backend of role, HEALTH_OK if none.
 * Unknown lag is no problem. Pure. */
enum health_reason health_classify(const struct health_obs *obs, enum backend_role role,
				   const struct health_limits *lim);

/* True when reason leaves the backend healthy (OK or a lag reason). */
bool health_reason_is_healthy(enum health_reason r);

/* One check of a replica: updates st (reason, streak, rotation) and returns
 * the new in_rotation. Leaves at once on any problem; returns after
 * HEALTH_RETURN_CHECKS consecutive checks that are healthy with known lag
 * at most half of each limit. Pure. */
bool health_step(struct health_state *st, const struct health_obs *obs,
		 const struct health_limits *lim);

/* ---- primary LSN samples and lag computation (pure) --------------------- */

struct health_sample {
	int64_t t_ms; /* when first seen (monotonic ms) */
	int64_t lsn;  /* bytes */
};

struct health_ring {
	int n;	  /* samples held, <= HEALTH_RING_SIZE */
	int head; /* index of the oldest */
	struct health_sample s[HEALTH_RING_SIZE];
};

void health_ring_init(struct health_ring *r);

/* Record the primary's LSN seen at t_ms. Adds a sample only when lsn is past
 * the newest one; an LSN that went backwards (a different server now)
 * restarts the ring with this sample. */
void health_ring_add(struct health_ring *r, int64_t t_ms, int64_t lsn);

/* Lag of a replica whose replay LSN is replay_lsn, at now_ms, against the
 * samples in r (see the header comment). false (outputs untouched) when r is
 * empty. */
bool health_ring_lag(const struct health_ring *r, int64_t now_ms, int64_t replay_lsn,
		     int64_t *lag_bytes, int64_t *lag_ms);

/* ---- the monitor thread -------------------------------------------------- */

/* Start the monitor thread. Needs g_shared.cfg set (include/router/worker.h)
 * and a published topo. Main thread; at most one monitor per process. */
int health_start(struct sr_errmsg *em) SR_MUST_CHECK;

/* Stop and join it, closing its connections. No-op if not running. */
void health_stop(void);

#endif
