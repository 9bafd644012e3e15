/*
 * health.c - the health and replica-lag monitor (see router/health.h): pure
 * rotation/lag logic first, then the monitor thread with its libpq probes.
 *
 * Owns: the monitor thread and everything in `mon` (targets with their
 * PGconn, rotation state and primary LSN rings); only that thread touches
 * the targets. It writes the backend_live atomics; workers read them.
 */
#include "router/health.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/auth.h"
#include "router/config.h"
#include "router/worker.h"

/* ---- pure logic ----------------------------------------------------------- */

const char *health_reason_name(enum health_reason r)
{
	switch (r) {
	case HEALTH_OK:
		return "ok";
	case HEALTH_UNREACHABLE:
		return "unreachable";
	case HEALTH_QUERY_FAILED:
		return "query_failed";
	case HEALTH_PROMOTED:
		return "promoted";
	case HEALTH_IN_RECOVERY:
		return "in_recovery";
	case HEALTH_LAG_BYTES:
		return "lag_bytes";
	case HEALTH_LAG_MS:
		return "lag_ms";
	}
	return "?";
}

bool health_reason_is_healthy(enum health_reason r)
{
	switch (r) {
	case HEALTH_OK:
	case HEALTH_LAG_BYTES:
	case HEALTH_LAG_MS:
		return true;
	case HEALTH_UNREACHABLE:
	case HEALTH_QUERY_FAILED:
	case HEALTH_PROMOTED:
	case HEALTH_IN_RECOVERY:
		return false;
	}
	return false;
}

void health_state_init(struct health_state *st, bool in_rotation)
{
	st->in_rotation = in_rotation;
	st->good_streak = 0;
	st->reason = HEALTH_OK;
}

enum health_reason health_classify(const struct health_obs *obs, enum backend_role role,
				   const struct health_limits *lim)
{
	if (!obs->reachable)
		return HEALTH_UNREACHABLE;
	if (!obs->query_ok)
		return HEALTH_QUERY_FAILED;
	switch (role) {
	case ROLE_PRIMARY:
		return obs->in_recovery ? HEALTH_IN_RECOVERY : HEALTH_OK;
	case ROLE_REPLICA:
		break;
	}
	if (!obs->in_recovery)
		return HEALTH_PROMOTED;
	if (obs->lag_known && obs->lag_bytes > lim->max_lag_bytes)
		return HEALTH_LAG_BYTES;
	if (obs->lag_known && obs->lag_ms > lim->max_lag_ms)
		return HEALTH_LAG_MS;
	return HEALTH_OK;
}

bool health_step(struct health_state *st, const struct health_obs *obs,
		 const struct health_limits *lim)
{
	st->reason = health_classify(obs, ROLE_REPLICA, lim);
	if (st->reason != HEALTH_OK) {
		st->in_rotation = false;
		st->good_streak = 0;
		return false;
	}
	if (st->in_rotation)
		return true;
	bool fit = obs->lag_known && obs->lag_bytes <= lim->max_lag_bytes / 2 &&
		   obs->lag_ms <= lim->max_lag_ms / 2;
	st->good_streak = fit ? st->good_streak + 1 : 0;
	if (st->good_streak >= HEALTH_RETURN_CHECKS) {
		st->in_rotation = true;
		st->good_streak = 0;
	}
	return st->in_rotation;
}

void health_ring_init(struct health_ring *r)
{
	r->n = 0;
	r->head = 0;
}

static const struct health_sample *ring_at(const struct health_ring *r, int i)
{
	return &r->s[(r->head + i) % HEALTH_RING_SIZE];
}

void health_ring_add(struct health_ring *r, int64_t t_ms, int64_t lsn)
{
	if (r->n > 0) {
		int64_t newest = ring_at(r, r->n - 1)->lsn;
		if (lsn == newest)
			return;
		if (lsn < newest)
			health_ring_init(r);
	}
	if (r->n == HEALTH_RING_SIZE) {
		r->head = (r->head + 1) % HEALTH_RING_SIZE;
		r->n--;
	}
	struct health_sample *s = &r->s[(r->head + r->n) % HEALTH_RING_SIZE];
	s->t_ms = t_ms;
	s->lsn = lsn;
	r->n++;
}

bool health_ring_lag(const struct health_ring *r, int64_t now_ms, int64_t replay_lsn,
		     int64_t *lag_bytes, int64_t *lag_ms)
{
	if (r->n == 0)
		return false;
	int64_t newest = ring_at(r, r->n - 1)->lsn;
	if (replay_lsn >= newest) {
		*lag_bytes = 0;
		*lag_ms = 0;
		return true;
	}
	*lag_bytes = newest - replay_lsn;
	/* the oldest sample past replay_lsn (LSNs increase along the ring) */
	int lo = 0, hi = r->n - 1;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (ring_at(r, mid)->lsn > replay_lsn)
			hi = mid;
		else
			lo = mid + 1;
	}
	int64_t d = now_ms - ring_at(r, lo)->t_ms;
	*lag_ms = d > 0 ? d : 0;
	return true;
}

/* ---- the monitor ---------------------------------------------------------- */

struct target {
	struct backend_live *live; /* identity: stable across map versions */
	char *conninfo;
	enum backend_role role;
	int32_t shard_id;
	int replica_no;
	char name[300]; /* "host:port" for logs */
	PGconn *conn;
	bool seen; /* in the current round's topo */
	bool healthy;
	struct health_state st;
	char last_error[256];
	struct health_ring ring; /* primaries: LSN samples */
};

static struct {
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct target **t;
	int n, cap;
	unsigned users_gen; /* g_shared.gen the monitoring user was picked for */
	char *mon_user;	    /* first plain-password user of auth_file, or NULL */
} mon = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t mono_ms(void)
{
	return (int64_t)sr_mono_ms();
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until conn's socket is readable (or writable); false on timeout/error. */
static bool wait_sock(PGconn *c, bool for_write, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return false;
		struct pollfd p = {.fd = PQsocket(c), .events = for_write ? POLLOUT : POLLIN};
		if (p.fd < 0)
			return false;
		int rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

static void set_error(struct target *tg, const char *msg)
{
	snprintf(tg->last_error, sizeof(tg->last_error), "%s", msg ? msg : "");
	/* one log line: libpq's messages span lines; quotes would confuse key="value" */
	for (char *p = tg->last_error; *p; p++)
		if (*p == '\n' || *p == '\t' || *p == '"')
			*p = *p == '"' ? '\'' : ' ';
	size_t n = strlen(tg->last_error);
	while (n && (tg->last_error[n - 1] == '\n' || tg->last_error[n - 1] == ' '))
		tg->last_error[--n] = '\0';
}

/* First user, in auth_file order, with a non-empty plain password. */
static char *first_plain_user(const char *path, const struct auth_userlist *list)
{
	FILE *f = path && *path && list ? fopen(path, "r") : NULL;
	if (!f)
		return NULL;
	char line[1024], name[512];
	char *found = NULL;
	while (!found && fgets(line, sizeof(line), f)) {
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p++ != '"')
			continue;
		size_t n = 0;
		for (; *p && n + 1 < sizeof(name); p++) {
			if (*p == '"' && p[1] == '"')
				p++;
			else if (*p == '"')
				break;
			name[n++] = *p;
		}
		name[n] = '\0';
		const struct auth_user_entry *e = auth_userlist_find(list, name);
		if (e && e->kind == AUTH_SECRET_PLAIN && e->secret[0])
			found = strdup(name);
	}
	fclose(f);
	return found;
}

struct kv {
	const char *k[64];
	const char *v[64];
	int n;
};

static void kv_put(struct kv *kv, const char *k, const char *v)
{
	if (kv->n < 63) {
		kv->k[kv->n] = k;
		kv->v[kv->n] = v;
		kv->n++;
	}
	kv->k[kv->n] = NULL;
	kv->v[kv->n] = NULL;
}

/* Fill kv from the parsed conninfo plus monitoring credentials/defaults. */
static void conn_params(PQconninfoOption *opts, const struct auth_userlist *list, struct kv *kv)
{
	const char *user = NULL, *password = NULL;
	bool has_db = false, has_app = false;
	kv->n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		kv_put(kv, o->keyword, o->val);
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "password") == 0)
			password = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			has_db = true;
		else if (strcmp(o->keyword, "application_name") == 0)
			has_app = true;
	}
	if (!user && mon.mon_user) {
		user = mon.mon_user;
		kv_put(kv, "user", user);
	}
	if (!password && user && list) {
		const struct auth_user_entry *e = auth_userlist_find(list, user);
		if (e && e->kind == AUTH_SECRET_PLAIN && e->secret[0])
			kv_put(kv, "password", e->secret);
	}
	if (!has_db)
		kv_put(kv, "dbname", "postgres");
	if (!has_app)
		kv_put(kv, "application_name", "shardrouter-health");
}

/* Connect tg within timeout_ms; on failure tg->conn stays NULL. */
static void target_connect(struct target *tg, const struct auth_userlist *list, int64_t timeout_ms)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(tg->conninfo, &err);
	if (!opts) {
		set_error(tg, err ? err : "out of memory");
		PQfreemem(err);
		return;
	}
	struct kv kv;
	conn_params(opts, list, &kv);
	PGconn *c = PQconnectStartParams(kv.k, kv.v, 0);
	PQconninfoFree(opts);
	if (!c) {
		set_error(tg, "out of memory");
		return;
	}
	int64_t deadline = mono_ms() + timeout_ms;
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	while (PQstatus(c) != CONNECTION_BAD) {
		switch (ps) {
		case PGRES_POLLING_OK:
			tg->conn = c;
			return;
		case PGRES_POLLING_FAILED:
			break;
		case PGRES_POLLING_READING:
		case PGRES_POLLING_WRITING:
			if (!wait_sock(c, ps == PGRES_POLLING_WRITING, deadline)) {
				set_error(tg, "connect timed out");
				PQfinish(c);
				return;
			}
			break;
		case PGRES_POLLING_ACTIVE:
			break;
		}
		if (ps == PGRES_POLLING_FAILED)
			break;
		ps = PQconnectPoll(c);
	}
	set_error(tg, PQerrorMessage(c));
	PQfinish(c);
}

static void target_disconnect(struct target *tg)
{
	PQfinish(tg->conn);
	tg->conn = NULL;
}

#define PROBE_SQL                                                                                  \
	"SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "                               \
	"THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint "                           \
	"ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END"

/* Run the probe on tg->conn (connecting first if needed). Fills obs
 * (reachable, query_ok, in_recovery) and *lsn (-1 = NULL). */
static void target_probe(struct target *tg, const struct auth_userlist *list, int64_t timeout_ms,
			 struct health_obs *obs, int64_t *lsn)
{
	memset(obs, 0, sizeof(*obs));
	*lsn = -1;
	tg->last_error[0] = '\0';
	if (tg->conn && PQstatus(tg->conn) != CONNECTION_OK)
		target_disconnect(tg);
	if (!tg->conn)
		target_connect(tg, list, timeout_ms);
	if (!tg->conn)
		return;
	int64_t deadline = mono_ms() + timeout_ms;
	PGresult *last = NULL;
	bool done = false;
	if (PQsendQuery(tg->conn, PROBE_SQL)) {
		while (PQconsumeInput(tg->conn)) {
			if (PQisBusy(tg->conn)) {
				if (!wait_sock(tg->conn, false, deadline))
					break;
				continue;
			}
			PGresult *r = PQgetResult(tg->conn);
			if (!r) {
				done = true;
				break;
			}
			PQclear(last);
			last = r;
		}
	}
	if (!done || PQstatus(tg->conn) != CONNECTION_OK) {
		set_error(tg, done || PQstatus(tg->conn) == CONNECTION_BAD
				  ? PQerrorMessage(tg->conn)
				  : "check query timed out");
		PQclear(last);
		target_disconnect(tg);
		return;
	}
	obs->reachable = true;
	if (last && PQresultStatus(last) == PGRES_TUPLES_OK && PQntuples(last) == 1 &&
	    PQnfields(last) == 2) {
		obs->query_ok = true;
		obs->in_recovery = strcmp(PQgetvalue(last, 0, 0), "t") == 0;
		if (!PQgetisnull(last, 0, 1))
			*lsn = strtoll(PQgetvalue(last, 0, 1), NULL, 10);
	} else {
		set_error(tg, last ? PQresultErrorMessage(last) : "no result");
	}
	PQclear(last);
}

/* The target for b (created on first sight), marked seen; NULL on OOM. */
static struct target *target_get(const struct backend *b)
{
	for (int i = 0; i < mon.n; i++)
		if (mon.t[i]->live == b->live && mon.t[i]->role == b->role) {
			mon.t[i]->seen = true;
			mon.t[i]->shard_id = b->shard_id;
			mon.t[i]->replica_no = b->replica_no;
			return mon.t[i];
		}
	if (mon.n == mon.cap) {
		int cap = mon.cap ? mon.cap * 2 : 8;
		struct target **nt = realloc(mon.t, (size_t)cap * sizeof(*nt));
		if (!nt)
			return NULL;
		mon.t = nt;
		mon.cap = cap;
	}
	struct target *tg = calloc(1, sizeof(*tg));
	if (!tg || !(tg->conninfo = strdup(b->conninfo))) {
		free(tg);
		return NULL;
	}
	tg->live = b->live;
	tg->role = b->role;
	tg->shard_id = b->shard_id;
	tg->replica_no = b->replica_no;
	snprintf(tg->name, sizeof(tg->name), "%s:%s", b->host, b->port);
	tg->seen = true;
	tg->healthy = atomic_load(&b->live->healthy);
	health_state_init(&tg->st, atomic_load(&b->live->in_rotation));
	health_ring_init(&tg->ring);
	mon.t[mon.n++] = tg;
	return tg;
}

static void target_free(struct target *tg)
{
	target_disconnect(tg);
	free(tg->conninfo);
	free(tg);
}

/* Drop targets no longer in the map (their live state stays in topo's
 * registry, so a backend that comes back resumes from it). */
static void targets_sweep(bool all)
{
	int k = 0;
	for (int i = 0; i < mon.n; i++) {
		if (mon.t[i]->seen && !all) {
			mon.t[i]->seen = false;
			mon.t[k++] = mon.t[i];
		} else {
			target_free(mon.t[i]);
		}
	}
	mon.n = k;
}

/* Publish what every backend gets from a check that found reason. */
static void publish_common(struct target *tg, enum health_reason reason, int64_t lsn)
{
	struct backend_live *l = tg->live;
	bool healthy = health_reason_is_healthy(reason);
	atomic_store(&l->healthy, healthy);
	atomic_store(&l->health_reason, (int)reason);
	atomic_store(&l->promoted, reason == HEALTH_PROMOTED);
	if (healthy)
		atomic_store(&l->fail_streak, 0);
	else
		atomic_fetch_add(&l->fail_streak, 1);
	if (lsn >= 0)
		atomic_store(&l->replay_lsn, (long long)lsn);
	atomic_store(&l->checked_at_ms, (long long)wall_ms());
}

static void check_primary(struct target *tg, const struct auth_userlist *list, int64_t timeout_ms,
			  const struct health_limits *lim)
{
	struct health_obs obs;
	int64_t lsn;
	target_probe(tg, list, timeout_ms, &obs, &lsn);
	enum health_reason reason = health_classify(&obs, ROLE_PRIMARY, lim);
	if (reason == HEALTH_OK && lsn >= 0)
		health_ring_add(&tg->ring, mono_ms(), lsn);
	bool healthy = health_reason_is_healthy(reason);
	publish_common(tg, reason, lsn);
	atomic_store(&tg->live->in_rotation, healthy);
	atomic_store(&tg->live->lag_bytes, 0);
	atomic_store(&tg->live->lag_ms, 0);
	if (healthy != tg->healthy) {
		if (healthy)
			log_info("health: shard %d primary %s is healthy again", (int)tg->shard_id,
				 tg->name);
		else
			log_warn("health: shard %d primary %s is unhealthy: reason=%s error=\"%s\"",
				 (int)tg->shard_id, tg->name, health_reason_name(reason),
				 reason == HEALTH_IN_RECOVERY ? "" : tg->last_error);
	}
	tg->healthy = healthy;
}

static void log_leave(const struct target *tg, const struct health_obs *obs)
{
	char lag[64] = "lag=unknown";
	if (obs->lag_known)
		snprintf(lag, sizeof(lag), "lag_bytes=%lld lag_ms=%lld", (long long)obs->lag_bytes,
			 (long long)obs->lag_ms);
	bool ok = health_reason_is_healthy(tg->st.reason);
	log_warn("health: shard %d replica %d %s leaves rotation: reason=%s %s%s%s%s",
		 (int)tg->shard_id, tg->replica_no, tg->name, health_reason_name(tg->st.reason),
		 lag, ok ? "" : " error=\"", ok ? "" : tg->last_error, ok ? "" : "\"");
}

static void check_replica(struct target *tg, const struct target *primary,
			  const struct auth_userlist *list, int64_t timeout_ms,
			  const struct health_limits *lim)
{
	struct health_obs obs;
	int64_t lsn;
	target_probe(tg, list, timeout_ms, &obs, &lsn);
	if (obs.query_ok && obs.in_recovery && lsn >= 0 && primary)
		obs.lag_known =
		    health_ring_lag(&primary->ring, mono_ms(), lsn, &obs.lag_bytes, &obs.lag_ms);
	bool was = tg->st.in_rotation;
	bool now = health_step(&tg->st, &obs, lim);
	publish_common(tg, tg->st.reason, lsn);
	if (obs.lag_known) {
		atomic_store(&tg->live->lag_bytes, (long long)obs.lag_bytes);
		atomic_store(&tg->live->lag_ms, (long long)obs.lag_ms);
	}
	atomic_store(&tg->live->in_rotation, now);
	tg->healthy = health_reason_is_healthy(tg->st.reason);
	if (was && !now)
		log_leave(tg, &obs);
	else if (!was && now)
		log_info("health: shard %d replica %d %s returns to rotation: lag_bytes=%lld "
			 "lag_ms=%lld",
			 (int)tg->shard_id, tg->replica_no, tg->name, (long long)obs.lag_bytes,
			 (long long)obs.lag_ms);
}

/* Settings and users for one round, with references held. */
struct round_ctx {
	struct config *cfg;
	struct users_ref *users;
	unsigned gen;
};

static bool round_begin(struct round_ctx *rc)
{
	pthread_mutex_lock(&g_shared.mu);
	rc->cfg = g_shared.cfg ? config_ref(g_shared.cfg) : NULL;
	rc->users = g_shared.users;
	if (rc->users)
		atomic_fetch_add(&rc->users->refs, 1);
	rc->gen = atomic_load(&g_shared.gen);
	pthread_mutex_unlock(&g_shared.mu);
	if (rc->cfg && (!mon.mon_user || rc->gen != mon.users_gen)) {
		free(mon.mon_user);
		mon.mon_user =
		    first_plain_user(rc->cfg->auth_file, rc->users ? rc->users->list : NULL);
		mon.users_gen = rc->gen;
	}
	return rc->cfg != NULL;
}

static void round_end(struct round_ctx *rc)
{
	config_unref(rc->cfg);
	users_ref_unref(rc->users);
}

/* One check of every backend of the current map; returns the interval. */
static int64_t health_round(void)
{
	struct round_ctx rc;
	if (!round_begin(&rc)) {
		round_end(&rc);
		return 1000;
	}
	int64_t interval = rc.cfg->health_check_interval_ms;
	int64_t timeout = interval < HEALTH_MAX_TIMEOUT_MS ? interval : HEALTH_MAX_TIMEOUT_MS;
	struct health_limits lim = {.max_lag_bytes = rc.cfg->replica_max_lag_bytes,
				    .max_lag_ms = rc.cfg->replica_max_lag_ms};
	const struct auth_userlist *list = rc.users ? rc.users->list : NULL;
	struct topo *t = topo_current();
	for (int i = 0; t && i < t->n_shards; i++) {
		struct target *p = target_get(&t->backends[t->shards[i].primary]);
		if (p)
			check_primary(p, list, timeout, &lim);
	}
	for (int i = 0; t && i < t->n_shards; i++) {
		struct target *p = target_get(&t->backends[t->shards[i].primary]);
		for (int r = 0; r < t->shards[i].n_replicas; r++) {
			struct target *tg = target_get(&t->backends[t->shards[i].replicas[r]]);
			if (tg)
				check_replica(tg, p, list, timeout, &lim);
		}
	}
	if (t)
		targets_sweep(false);
	topo_unref(t);
	round_end(&rc);
	return interval;
}

static void *health_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mon.mu);
	while (!mon.stop) {
		pthread_mutex_unlock(&mon.mu);
		int64_t start = mono_ms();
		int64_t next = start + health_round();
		pthread_mutex_lock(&mon.mu);
		while (!mon.stop && mono_ms() < next) {
			struct timespec ts = {.tv_sec = next / 1000,
					      .tv_nsec = (long)(next % 1000) * 1000000L};
			pthread_cond_timedwait(&mon.cv, &mon.mu, &ts);
		}
	}
	pthread_mutex_unlock(&mon.mu);
	targets_sweep(true);
	free(mon.mon_user);
	mon.mon_user = NULL;
	return NULL;
}

int health_start(struct sr_errmsg *em)
{
	if (mon.running)
		return sr_errmsg_set(em, SR_EBUSY, "the health monitor is already running");
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&mon.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		return sr_errmsg_set(em, SR_ENOMEM, "health monitor: pthread_cond_init: %s",
				     strerror(rc));
	mon.stop = false;
	rc = pthread_create(&mon.thread, NULL, health_main, NULL);
	if (rc) {
		pthread_cond_destroy(&mon.cv);
		return sr_errmsg_set(em, SR_ENOMEM, "health monitor: pthread_create: %s",
				     strerror(rc));
	}
	mon.running = true;
	return 0;
}

void health_stop(void)
{
	if (!mon.running)
		return;
	pthread_mutex_lock(&mon.mu);
	mon.stop = true;
	pthread_cond_signal(&mon.cv);
	pthread_mutex_unlock(&mon.mu);
	pthread_join(mon.thread, NULL);
	pthread_cond_destroy(&mon.cv);
	mon.running = false;
}
