/*
 * catwatch.c - the catalog watcher thread (see router/catwatch.h).
 *
 * One thread, one PGconn (blocking queries; the connect itself is
 * non-blocking so catwatch_stop can interrupt it). The loop:
 *   disconnected: wait for the backoff timer (or the stop pipe), connect,
 *                 LISTEN, sync;
 *   connected:    poll() the socket and the stop pipe until the next tick
 *                 (catalog_poll_ms); on a notification or at the tick, sync.
 * A sync reads the catalog epoch, reloads and publishes the map when the
 * catalog is ahead (or when the lease had expired), writes the cache file,
 * and heartbeats with acked_epoch = the workers' smallest drained epoch (and
 * lease_ms). Between ticks a worker's catwatch_wake() makes the loop
 * heartbeat at once when that epoch advanced. Any failure drops
 * the connection; reconnecting starts over (LISTEN before reading the epoch,
 * so no change can slip between the two).
 *
 * Lease state is three process-wide atomics read lock-free by
 * catwatch_lease_ok() on any thread; everything else belongs to the thread
 * (catwatch_start/stop touch it only before the thread starts / after it
 * has been joined).
 */
#include "router/catwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/version.h"
#include "router/config.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/catalog.h"
#include "shardmap/map.h"


#define CW_APP_NAME "shardrouter-catwatch"
#define CW_BACKOFF_FIRST_MS 100
#define CW_BACKOFF_MAX_MS 5000
#define CW_CONNECT_TIMEOUT_MS 5000

struct catwatch {
	pthread_t thread;
	int wake[2]; /* stop pipe: catwatch_stop writes, the thread polls */
	atomic_bool stop;
	char *catalog;	 /* conninfo (copy) */
	char *map_cache; /* "" = none (copy) */
	char router_id[300];
	char host[256];
	char pid[16];
	char started[24]; /* Unix seconds of catwatch_start */
	PGconn *conn;	  /* NULL while disconnected */
	int64_t poll_ms, lease_ms;
	uint64_t next_tick; /* monotonic ms of the next epoch poll + heartbeat */
	uint64_t next_connect;
	uint64_t backoff_ms;
	bool registered; /* a sync has succeeded since start */
	char last_err[SR_ERRMSG_LEN]; /* last failure logged ("" = healthy) */
	uint64_t warned_epoch;	      /* catalog epoch behind ours, logged once */
	uint64_t acked_sent;	      /* acked_epoch of the last heartbeat written */
	int64_t written_lease_ms;     /* lease_ms of the last heartbeat written */
};

static struct catwatch cw;
static bool cw_running;

static atomic_bool cw_enabled;	   /* false: no catalog, lease always held */
static atomic_bool cw_expired;	   /* the watcher noticed the lease ran out */
static atomic_llong cw_last_ok_ms; /* monotonic ms of the last confirmation */
static atomic_llong cw_lease_ms;
static atomic_ullong cw_confirmed_epoch; /* epoch of the last confirmation */
static atomic_int cw_wake_fd = -1;	   /* write end of the wake pipe, -1 = none */

void catwatch_wake(void)
{
	int fd = atomic_load_explicit(&cw_wake_fd, memory_order_acquire);
	if (fd >= 0) {
		ssize_t n = write(fd, "d", 1); /* non-blocking: a full pipe wakes anyway */
		(void)n;
	}
}

bool catwatch_lease_covers(uint64_t epoch)
{
	if (!atomic_load_explicit(&cw_enabled, memory_order_acquire))
		return true;
	return epoch >= atomic_load_explicit(&cw_confirmed_epoch, memory_order_acquire);
}

bool catwatch_lease_ok(void)
{
	if (!atomic_load_explicit(&cw_enabled, memory_order_acquire))
		return true;
	if (atomic_load_explicit(&cw_expired, memory_order_acquire))
		return false;
	long long last = atomic_load_explicit(&cw_last_ok_ms, memory_order_acquire);
	long long lease = atomic_load_explicit(&cw_lease_ms, memory_order_relaxed);
	return (long long)sr_mono_ms() - last <= lease;
}

static uint64_t published_epoch(void)
{
	struct topo *t = topo_current();
	uint64_t e = t && t->map ? t->map->epoch : 0;
	topo_unref(t);
	return e;
}

/* The lease length this router holds itself to: a longer catalog_lease_ms
 * (SIGHUP) applies only once a heartbeat has written it to
 * shardrouter.routers.lease_ms, so that the router's lease never ends later
 * than heartbeat_at + lease_ms as the catalog shows them; a shorter one at
 * once. */
static void cw_publish_lease_ms(const struct catwatch *w)
{
	int64_t l = w->lease_ms < w->written_lease_ms ? w->lease_ms : w->written_lease_ms;
	atomic_store_explicit(&cw_lease_ms, (long long)l, memory_order_release);
}

/* Current poll/lease settings (reloadable) from the shared config. */
static void cw_read_settings(struct catwatch *w)
{
	pthread_mutex_lock(&g_shared.mu);
	if (g_shared.cfg) {
		w->poll_ms = g_shared.cfg->catalog_poll_ms;
		w->lease_ms = g_shared.cfg->catalog_lease_ms;
	}
	pthread_mutex_unlock(&g_shared.mu);
	if (w->poll_ms < 10)
		w->poll_ms = 10;
	cw_publish_lease_ms(w);
}

static void cw_lease_check(const struct catwatch *w, uint64_t now)
{
	if (atomic_load(&cw_expired))
		return;
	long long last = atomic_load(&cw_last_ok_ms);
	if ((long long)now - last <= w->lease_ms)
		return;
	atomic_store(&cw_expired, true);
	log_warn("catalog lease expired: the catalog has not been confirmed for %lld ms "
		 "(catalog_lease_ms = %lld); writes to unconfirmed ranges are refused until it is "
		 "reachable again",
		 (long long)now - last, (long long)w->lease_ms);
}

/* Wait up to timeout_ms for fd (may be -1) to get events, or for the stop
 * pipe. 1 = fd ready, 0 = timeout, -1 = stop requested. */
static int cw_wait(struct catwatch *w, int fd, short events, int64_t timeout_ms)
{
	struct pollfd p[2] = {{.fd = w->wake[0], .events = POLLIN}, {.fd = fd, .events = events}};
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (timeout_ms > 60000)
		timeout_ms = 60000;
	int n = poll(p, fd >= 0 ? 2 : 1, (int)timeout_ms);
	if (atomic_load(&w->stop))
		return -1;
	if (n < 0 && errno != EINTR)
		log_warn("catalog watcher: poll: %s", strerror(errno));
	if (n > 0 && (p[0].revents & POLLIN)) {
		char buf[16];
		while (read(w->wake[0], buf, sizeof(buf)) > 0) {
		}
	}
	return n > 0 && fd >= 0 && p[1].revents ? 1 : 0;
}

/* Copy text into em without libpq's trailing newline. */
static int cw_err(struct sr_errmsg *em, const char *what, const char *text)
{
	size_t n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		n--;
	return sr_errmsg_set(em, SR_EDB, "%s: %.*s", what, (int)n, text);
}

/* Drop the connection and schedule a reconnect with backoff; log the
 * reason unless it is the one logged last. */
static void cw_fail(struct catwatch *w, const struct sr_errmsg *em)
{
	if (strcmp(w->last_err, em->text) != 0) {
		log_warn("catalog watcher: %s; retrying in the background", em->text);
		snprintf(w->last_err, sizeof(w->last_err), "%s", em->text);
	} else {
		log_debug("catalog watcher: %s", em->text);
	}
	PQfinish(w->conn);
	w->conn = NULL;
	uint64_t cap =
	    (uint64_t)w->poll_ms < CW_BACKOFF_MAX_MS ? (uint64_t)w->poll_ms : CW_BACKOFF_MAX_MS;
	if (cap < 250)
		cap = 250;
	w->next_connect = sr_mono_ms() + w->backoff_ms;
	w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : CW_BACKOFF_FIRST_MS;
	if (w->backoff_ms > cap)
		w->backoff_ms = cap;
}

/* Drive a non-blocking connect to completion (or timeout / stop). */
static int cw_connect_poll(struct catwatch *w, PGconn *c, struct sr_errmsg *em)
{
	uint64_t deadline = sr_mono_ms() + CW_CONNECT_TIMEOUT_MS;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			return cw_err(em, "cannot connect to the catalog", PQerrorMessage(c));
		uint64_t now = sr_mono_ms();
		cw_lease_check(w, now);
		if (now >= deadline)
			return sr_errmsg_set(em, SR_EDB,
					     "cannot connect to the catalog: timeout after %d ms",
					     CW_CONNECT_TIMEOUT_MS);
		int64_t left = (int64_t)(deadline - now);
		int r = cw_wait(w, PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
				left < 200 ? left : 200);
		if (r < 0)
			return sr_errmsg_set(em, SR_EDB, "stopping");
		if (r > 0)
			st = PQconnectPoll(c);
	}
	return 0;
}

static int cw_connect(struct catwatch *w, struct sr_errmsg *em)
{
	char tcp_timeout[24];
	snprintf(tcp_timeout, sizeof(tcp_timeout), "%lld", (long long)w->lease_ms);
	/* Our defaults first; the catalog conninfo (expanded from dbname) may
	 * override them. tcp_user_timeout bounds a blocking query on a dead host. */
	const char *kw[] = {"application_name",
			    "tcp_user_timeout",
			    "keepalives_idle",
			    "keepalives_interval",
			    "keepalives_count",
			    "dbname",
			    NULL};
	const char *val[] = {CW_APP_NAME, tcp_timeout, "5", "2", "3", w->catalog, NULL};
	PGconn *c = PQconnectStartParams(kw, val, 1);
	if (!c)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory connecting to the catalog");
	int rc = PQstatus(c) == CONNECTION_BAD
		     ? cw_err(em, "cannot connect to the catalog", PQerrorMessage(c))
		     : cw_connect_poll(w, c, em);
	if (rc) {
		PQfinish(c);
		return rc;
	}
	w->conn = c;
	PGresult *res = PQexec(c, "LISTEN " SM_CATALOG_CHANNEL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = cw_err(em, "LISTEN " SM_CATALOG_CHANNEL, PQerrorMessage(c));
	PQclear(res);
	return rc;
}

/* The epoch this router acks: the smallest drained epoch of its workers
 * (router/worker.h), never more than the published one. */
static uint64_t cw_ack_epoch(void)
{
	uint64_t pub = published_epoch(), d = worker_min_drained_epoch();
	return d < pub ? d : pub;
}

/* Register / heartbeat: upsert our row with acked_epoch = cw_ack_epoch()
 * and lease_ms. heartbeat_at is the catalog's now(), which is later than
 * the t0 any lease this router holds was counted from (cw_sync), so the
 * router's lease always ends by heartbeat_at + lease_ms. */
static int cw_heartbeat(struct catwatch *w, struct sr_errmsg *em)
{
	char acked[24], lease[24];
	uint64_t ack = cw_ack_epoch();
	int64_t lease_ms = w->lease_ms;
	snprintf(acked, sizeof(acked), "%" PRIu64, ack);
	snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
	const char *v[] = {w->router_id, w->host,  w->pid, SHARDROUTER_VERSION, w->started,
			   acked,	 lease};
	PGresult *res = PQexecParams(
	    w->conn,
	    "INSERT INTO shardrouter.routers"
	    " (router_id, host, pid, version, started_at, heartbeat_at, acked_epoch, lease_ms)"
	    " VALUES ($1, $2, $3::int, $4, to_timestamp($5::double precision), now(), $6::bigint,"
	    " $7::bigint)"
	    " ON CONFLICT (router_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
	    " version = EXCLUDED.version, started_at = EXCLUDED.started_at,"
	    " heartbeat_at = now(), acked_epoch = EXCLUDED.acked_epoch,"
	    " lease_ms = EXCLUDED.lease_ms",
	    7, NULL, v, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = cw_err(em, "heartbeat (shardrouter.routers)", PQerrorMessage(w->conn));
	} else {
		if (ack != w->acked_sent)
			log_debug("catalog watcher: acked epoch %" PRIu64, ack);
		w->acked_sent = ack;
		w->written_lease_ms = lease_ms;
		cw_publish_lease_ms(w);
	}
	PQclear(res);
	return rc;
}

/* Heartbeat at once when the workers have drained a newer epoch than the
 * last one acked (the move waits on it); otherwise nothing. */
static void cw_ack_if_drained(struct catwatch *w)
{
	if (!w->conn || cw_ack_epoch() <= w->acked_sent)
		return;
	struct sr_errmsg em;
	if (cw_heartbeat(w, &em))
		cw_fail(w, &em);
}

static void cw_save_cache(const struct catwatch *w, const struct sm_map *m)
{
	struct sr_errmsg em;
	if (w->map_cache[0] && sm_map_save(m, w->map_cache, &em))
		log_warn("could not write map cache %s: %s", w->map_cache, em.text);
}

/* Load the catalog's map; publish it when it is newer than pub. *confirmed
 * is false when the catalog holds an older epoch than ours (kept, logged). */
static int cw_reload(struct catwatch *w, uint64_t pub, const char *why, bool *confirmed,
		     struct sr_errmsg *em)
{
	struct sm_map *m;
	int rc = sm_catalog_load(w->conn, &m, em);
	if (rc)
		return rc;
	uint64_t ep = m->epoch;
	*confirmed = ep >= pub;
	if (ep < pub && w->warned_epoch != ep) {
		w->warned_epoch = ep;
		log_error("the catalog's map epoch %" PRIu64 " is behind this router's %" PRIu64
			  "; keeping the current map (was the catalog restored or re-created?)",
			  ep, pub);
	}
	if (ep <= pub) {
		sm_map_free(m);
		return 0;
	}
	struct topo *t;
	rc = topo_build(m, &t, em);
	if (rc) {
		sm_map_free(m);
		*confirmed = false;
		return rc;
	}
	topo_ref(t);
	topo_publish(t);
	worker_kick_all(); /* writes waiting on a frozen range see the new map now */
	log_info("map epoch %" PRIu64 " -> %" PRIu64 " (%s)", pub, ep, why);
	cw_save_cache(w, t->map);
	topo_unref(t);
	return 0;
}

/* One sync: epoch, reload if behind (or the lease expired), heartbeat/ack,
 * and renew the lease when the map is confirmed current. */
static int cw_sync(struct catwatch *w, const char *why, struct sr_errmsg *em)
{
	uint64_t t0 = sr_mono_ms(), cat;
	/* Notice an expired lease before anything (e.g. after SIGSTOP), so the
	 * map is reloaded before the lease is renewed. */
	cw_lease_check(w, t0);
	int rc = sm_catalog_epoch(w->conn, &cat, em);
	if (rc)
		return rc;
	uint64_t pub = published_epoch();
	bool expired = atomic_load(&cw_expired);
	bool confirmed = cat == pub;
	if (cat > pub || expired) {
		rc = cw_reload(w, pub, why, &confirmed, em);
		if (rc)
			return rc;
	} else if (cat < pub && w->warned_epoch != cat) {
		w->warned_epoch = cat;
		log_error("the catalog's map epoch %" PRIu64 " is behind this router's %" PRIu64
			  "; keeping the current map",
			  cat, pub);
	}
	rc = cw_heartbeat(w, em);
	if (rc || !confirmed)
		return rc;
	/* Workers check the confirmed epoch against the map they route by
	 * (catwatch_lease_covers): store it before renewing the lease. */
	atomic_store(&cw_confirmed_epoch, published_epoch());
	atomic_store(&cw_last_ok_ms, (long long)t0);
	if (expired) {
		atomic_store(&cw_expired, false);
		if (w->registered)
			log_info("catalog lease regained: map epoch %" PRIu64 " confirmed",
				 published_epoch());
		else
			log_info("registered as router %s; map epoch %" PRIu64 " confirmed, writes "
				 "allowed",
				 w->router_id, published_epoch());
		w->registered = true;
	}
	return 0;
}

static void cw_tick(struct catwatch *w, const char *why)
{
	struct sr_errmsg em;
	w->next_tick = sr_mono_ms() + (uint64_t)w->poll_ms;
	if (cw_sync(w, why, &em))
		cw_fail(w, &em);
}

static void cw_step_disconnected(struct catwatch *w, uint64_t now)
{
	if (now < w->next_connect) {
		int64_t left = (int64_t)(w->next_connect - now);
		(void)cw_wait(w, -1, 0, left < w->poll_ms ? left : w->poll_ms);
		return;
	}
	struct sr_errmsg em;
	if (cw_connect(w, &em)) {
		if (atomic_load(&w->stop))
			return;
		cw_fail(w, &em);
		return;
	}
	cw_tick(w, "connect");
	if (!w->conn)
		return;
	if (w->last_err[0])
		log_info("catalog watcher: connected to the catalog again");
	w->last_err[0] = '\0';
	w->backoff_ms = 0;
}

/* Drain queued notifications; true when there was at least one. */
static bool cw_drain_notifies(struct catwatch *w)
{
	bool any = false;
	PGnotify *n;
	while ((n = PQnotifies(w->conn)) != NULL) {
		log_debug("catalog watcher: NOTIFY %s '%s'", n->relname, n->extra);
		any = true;
		PQfreemem(n);
	}
	return any;
}

static void cw_step_connected(struct catwatch *w, uint64_t now)
{
	bool notified = cw_drain_notifies(w);
	if (!notified && now < w->next_tick) {
		int r = cw_wait(w, PQsocket(w->conn), POLLIN, (int64_t)(w->next_tick - now));
		if (r < 0)
			return;
		if (r > 0 && (!PQconsumeInput(w->conn) || PQstatus(w->conn) == CONNECTION_BAD)) {
			struct sr_errmsg em;
			(void)cw_err(&em, "catalog connection lost", PQerrorMessage(w->conn));
			cw_fail(w, &em);
			return;
		}
		notified = r > 0 && cw_drain_notifies(w);
		if (!notified && sr_mono_ms() < w->next_tick) {
			cw_ack_if_drained(w); /* woken by a worker (catwatch_wake) */
			return;
		}
	}
	cw_tick(w, notified ? "notify" : "poll");
}

static void cw_unregister(struct catwatch *w)
{
	if (!w->conn || PQstatus(w->conn) != CONNECTION_OK)
		return;
	const char *v[] = {w->router_id};
	PGresult *res =
	    PQexecParams(w->conn, "DELETE FROM shardrouter.routers WHERE router_id = $1", 1, NULL,
			 v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warn("catalog watcher: could not unregister %s: %s", w->router_id,
			 PQerrorMessage(w->conn));
	PQclear(res);
}

static void *cw_main(void *arg)
{
	struct catwatch *w = arg;
	while (!atomic_load(&w->stop)) {
		cw_read_settings(w);
		uint64_t now = sr_mono_ms();
		cw_lease_check(w, now);
		if (w->conn)
			cw_step_connected(w, now);
		else
			cw_step_disconnected(w, now);
	}
	cw_unregister(w);
	PQfinish(w->conn);
	w->conn = NULL;
	return NULL;
}

static void cw_identity(struct catwatch *w, const struct config *cfg)
{
	if (gethostname(w->host, sizeof(w->host)) != 0 || !w->host[0])
		snprintf(w->host, sizeof(w->host), "localhost");
	w->host[sizeof(w->host) - 1] = '\0';
	snprintf(w->pid, sizeof(w->pid), "%ld", (long)getpid());
	snprintf(w->router_id, sizeof(w->router_id), "%s:%d:%s", w->host, cfg->listen_port, w->pid);
	snprintf(w->started, sizeof(w->started), "%lld", (long long)time(NULL));
}

static void cw_free(struct catwatch *w)
{
	free(w->catalog);
	free(w->map_cache);
	w->catalog = w->map_cache = NULL;
	for (int i = 0; i < 2; i++)
		if (w->wake[i] >= 0)
			close(w->wake[i]);
	w->wake[0] = w->wake[1] = -1;
}

bool catwatch_wait_lease(int timeout_ms)
{
	for (int waited = 0; !catwatch_lease_ok(); waited += 5) {
		if (waited >= timeout_ms)
			return false;
		usleep(5000);
	}
	return true;
}

int catwatch_start(const struct config *cfg, struct sr_errmsg *em)
{
	if (cw_running)
		return sr_errmsg_set(em, SR_EINVAL, "catalog watcher already started");
	if (!cfg->catalog || !cfg->catalog[0]) {
		atomic_store(&cw_enabled, false);
		log_info("no catalog configured: the map from %s stays as loaded",
			 cfg->map_cache ? cfg->map_cache : "the cache file");
		return 0;
	}
	struct catwatch *w = &cw;
	memset(w, 0, sizeof(*w));
	w->wake[0] = w->wake[1] = -1;
	w->catalog = strdup(cfg->catalog);
	w->map_cache = strdup(cfg->map_cache ? cfg->map_cache : "");
	if (!w->catalog || !w->map_cache) {
		cw_free(w);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory starting the catalog watcher");
	}
	if (pipe2(w->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		int e = errno;
		cw_free(w);
		return sr_errmsg_set(em, SR_EIO, "catalog watcher: pipe: %s", strerror(e));
	}
	cw_identity(w, cfg);
	w->poll_ms = cfg->catalog_poll_ms;
	w->lease_ms = cfg->catalog_lease_ms;
	w->written_lease_ms = cfg->catalog_lease_ms;
	atomic_store(&cw_confirmed_epoch, 0);
	atomic_store(&w->stop, false);
	atomic_store(&cw_lease_ms, (long long)w->lease_ms);
	/* No lease until the first sync has registered this router (so a move
	 * can see it and wait for its ack) and confirmed the map: a router that
	 * started from the cache file, or whose map a move changed between its
	 * load and its registration, must not write by it. Reads go on. */
	atomic_store(&cw_last_ok_ms, (long long)sr_mono_ms() - w->lease_ms - 1);
	atomic_store(&cw_expired, true);
	atomic_store(&cw_enabled, true);
	atomic_store(&cw_wake_fd, w->wake[1]);
	int rc = pthread_create(&w->thread, NULL, cw_main, w);
	if (rc != 0) {
		atomic_store(&cw_enabled, false);
		atomic_store(&cw_wake_fd, -1);
		cw_free(w);
		return sr_errmsg_set(em, SR_EIO, "catalog watcher: pthread_create: %s",
				     strerror(rc));
	}
	cw_running = true;
	log_info("catalog watcher started: router_id=%s poll=%lldms lease=%lldms", w->router_id,
		 (long long)w->poll_ms, (long long)w->lease_ms);
	return 0;
}

void catwatch_stop(void)
{
	if (!cw_running)
		return;
	atomic_store(&cw.stop, true);
	ssize_t n = write(cw.wake[1], "x", 1);
	(void)n;
	pthread_join(cw.thread, NULL);
	atomic_store(&cw_wake_fd, -1);
	cw_free(&cw);
	cw_running = false;
}
