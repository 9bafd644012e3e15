/*
 * worker.c - event-loop threads (see router/worker.h).
 */
#include "router/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/auth.h"
#include "router/catwatch.h"
#include "router/cancel.h"
#include "router/client.h"
#include "router/config.h"
#include "router/fio.h"
#include "router/pool.h"
#include "router/server.h"
#include "router/topo.h"

struct shared g_shared = { .mu = PTHREAD_MUTEX_INITIALIZER };
int g_n_workers = 1;
/* Clients of all workers, for max_client_conn. */
static atomic_int g_n_clients;
static atomic_llong g_shutdown_ms;

void users_ref_unref(struct users_ref *u)
{
	if (u && atomic_fetch_sub(&u->refs, 1) == 1) {
		auth_userlist_free(u->list);
		free(u);
	}
}

void worker_refresh(struct worker *w)
{
	unsigned g = atomic_load_explicit(&g_shared.gen, memory_order_acquire);
	if (g == w->gen && w->topo && topo_generation() == w->topo_gen)
		return;
	pthread_mutex_lock(&g_shared.mu);
	if (w->gen != g) {
		config_unref(w->cfg);
		users_ref_unref(w->users);
		w->cfg = config_ref(g_shared.cfg);
		w->users = g_shared.users;
		if (w->users)
			atomic_fetch_add(&w->users->refs, 1);
		w->gen = g;
	}
	pthread_mutex_unlock(&g_shared.mu);
	unsigned tg = topo_generation();
	if (!w->topo || tg != w->topo_gen) {
		struct topo *t = topo_current();
		if (t) {
			topo_unref(w->topo);
			w->topo = t;
			w->topo_gen = tg;
			w->topo_epoch = t->map ? t->map->epoch : 0;
			worker_check_drained(w);
		}
	}
}

/* ---- drained epochs (see worker.h) ------------------------------------------ */

#define DRAIN_RECHECK_MS 20

void worker_add_server(struct worker *w, struct server *s)
{
	s->all_prev = NULL;
	s->all_next = w->servers;
	if (w->servers)
		w->servers->all_prev = s;
	w->servers = s;
}

void worker_remove_server(struct worker *w, struct server *s)
{
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else if (w->servers == s)
		w->servers = s->all_next;
	else
		return; /* not linked */
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	s->all_prev = s->all_next = NULL;
}

void worker_check_drained(struct worker *w)
{
	uint64_t d = w->topo_epoch;
	for (struct server *s = w->servers; s && d > 0; s = s->all_next) {
		if (s->state == SRV_CLOSING || s->pool->role != ROLE_PRIMARY)
			continue;
		uint64_t m = server_min_req_epoch(s);
		if (m < d)
			d = m;
	}
	if (d > atomic_load_explicit(&w->drained_epoch, memory_order_relaxed)) {
		atomic_store_explicit(&w->drained_epoch, d, memory_order_release);
		catwatch_wake();
	}
	w->drain_pending = d < w->topo_epoch;
	if (w->drain_pending && w->drain_timer && !event_pending(w->drain_timer, EV_TIMEOUT, NULL)) {
		struct timeval tv = { 0, DRAIN_RECHECK_MS * 1000 };
		event_add(w->drain_timer, &tv);
	}
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	worker_refresh(w);
	if (w->drain_pending)
		worker_check_drained(w);
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	while (w->reap_servers) {
		struct server *s = w->reap_servers;
		w->reap_servers = s->next;
		server_free(s);
	}
	struct client *keep = NULL;
	while (w->reap_clients) {
		struct client *c = w->reap_clients;
		w->reap_clients = c->reap_next;
		/* Let a FATAL error reach the client before closing. */
		if (client_output_length(c) > 0 &&
		    sr_mono_ms() - c->last_active_ms < 2000) {
			c->reap_next = keep;
			keep = c;
			continue;
		}
		client_free(c);
	}
	w->reap_clients = keep;
	if (keep) {
		struct timeval tv = { 0, 20000 };
		event_add(w->reaper, &tv);
	}
}

void worker_reap_client(struct worker *w, struct client *c)
{
	c->reap_next = w->reap_clients;
	w->reap_clients = c;
	c->last_active_ms = sr_mono_ms();
	event_active(w->reaper, 0, 0);
}

void worker_reap_server(struct worker *w, struct server *s)
{
	s->next = w->reap_servers;
	w->reap_servers = s;
	event_active(w->reaper, 0, 0);
}

struct pool *worker_pool(struct worker *w, int backend, const char *user, const char *db)
{
	for (int i = 0; i < w->n_pools; i++) {
		struct pool *p = w->pools[i];
		if (p->backend == backend && strcmp(p->user, user) == 0 && strcmp(p->db, db) == 0 &&
		    w->topo && backend < w->topo->n_backends &&
		    strcmp(p->host, w->topo->backends[backend].host) == 0 &&
		    strcmp(p->port, w->topo->backends[backend].port) == 0)
			return p;
	}
	if (!w->topo || backend < 0 || backend >= w->topo->n_backends)
		return NULL;
	if (w->n_pools == w->cap_pools) {
		int nc = w->cap_pools ? w->cap_pools * 2 : 8;
		struct pool **np = realloc(w->pools, (size_t)nc * sizeof(*np));
		if (!np)
			return NULL;
		w->pools = np;
		w->cap_pools = nc;
	}
	struct pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	const struct backend *b = &w->topo->backends[backend];
	p->w = w;
	p->backend = backend;
	p->shard_id = b->shard_id;
	p->role = (int)b->role;
	snprintf(p->host, sizeof(p->host), "%s", b->host);
	snprintf(p->port, sizeof(p->port), "%s", b->port);
	snprintf(p->user, sizeof(p->user), "%s", user);
	snprintf(p->db, sizeof(p->db), "%s", db);
	w->pools[w->n_pools++] = p;
	return p;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg);

/* SIGTERM: idle clients are told and closed at once; clients inside a
 * transaction get SHUTDOWN_GRACE_MS to finish; then the loop ends. */
#define SHUTDOWN_GRACE_MS 30000
static void shutdown_tick(struct worker *w, uint64_t now)
{
	long long expected = 0;
	atomic_compare_exchange_strong(&g_shutdown_ms, &expected, (long long)now);
	bool late = now - (uint64_t)atomic_load(&g_shutdown_ms) > SHUTDOWN_GRACE_MS;
	for (struct client *c = w->clients; c; c = c->next) {
		bool idle = c->state == CL_IDLE && !c->in_tx;
		if ((idle || late) && c->state != CL_CLOSING)
			client_error(c, true, "57P01",
				     "terminating connection due to administrator command", NULL,
				     NULL);
	}
	if (w->n_clients == 0 || late)
		event_base_loopexit(w->base, NULL);
}

static void housekeeping_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	worker_refresh(w);
	uint64_t now = sr_mono_ms();
	for (int i = 0; i < w->n_pools; i++)
		pool_housekeeping(w->pools[i], now);
	kick_cb(-1, 0, w);
	int64_t idle = w->cfg->client_idle_timeout_ms;
	for (struct client *c = w->clients; c; c = c->next) {
		if (idle > 0 && c->state == CL_IDLE && now - c->last_active_ms > (uint64_t)idle)
			client_error(c, true, "57P01", "client_idle_timeout", NULL, NULL);
		else if ((c->state == CL_STARTUP || c->state == CL_AUTH) &&
			 now - c->connected_ms > 60000)
			client_error(c, true, "08P01", "startup timeout", NULL, NULL);
	}
	if (atomic_load(&g_shared.shutting_down))
		shutdown_tick(w, now);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	(void)l;
	(void)len;
	struct worker *w = arg;
	char peer[64] = "unix";
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(peer, sizeof(peer), "%s:%u", a, ntohs(in->sin_port));
	}
	worker_refresh(w);
	if (atomic_load(&g_shared.shutting_down) ||
	    atomic_load(&g_n_clients) >= w->cfg->max_client_conn) {
		log_warn("refusing connection from %s: %s", peer,
			 atomic_load(&g_shared.shutting_down) ? "shutting down" : "max_client_conn reached");
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	client_accept(w, fd, peer);
}

const char *route_err_kind_name(enum route_err_kind k)
{
	switch (k) {
	case ROUTE_ERR_NOT_SUPPORTED: return "not_supported";
	case ROUTE_ERR_BAD_KEY: return "bad_key";
	case ROUTE_ERR_LEASE: return "catalog_lease";
	case ROUTE_ERR_ABORTED: return "aborted_transaction";
	case ROUTE_ERR_OTHER: return "other";
	case ROUTE_ERR_KINDS: break;
	}
	return "other";
}

void worker_count_route_error(const char *sqlstate)
{
	enum route_err_kind k = ROUTE_ERR_OTHER;
	if (strcmp(sqlstate, "0A000") == 0)
		k = ROUTE_ERR_NOT_SUPPORTED;
	else if (strcmp(sqlstate, "22P02") == 0 || strcmp(sqlstate, "23502") == 0 ||
		 strcmp(sqlstate, "22023") == 0)
		k = ROUTE_ERR_BAD_KEY;
	else if (strcmp(sqlstate, "25006") == 0)
		k = ROUTE_ERR_LEASE;
	else if (strcmp(sqlstate, "25P02") == 0)
		k = ROUTE_ERR_ABORTED;
	atomic_fetch_add_explicit(&g_shared.stat_route_errors, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&g_shared.stat_route_errors_by[k], 1, memory_order_relaxed);
}

static struct worker *all_workers;
static int n_all_workers;

uint64_t worker_min_drained_epoch(void)
{
	uint64_t m = UINT64_MAX;
	for (int i = 0; i < n_all_workers; i++) {
		uint64_t d = atomic_load_explicit(&all_workers[i].drained_epoch, memory_order_acquire);
		if (d < m)
			m = d;
	}
	return m == UINT64_MAX ? 0 : m;
}

void worker_set_all(struct worker *workers, int n)
{
	all_workers = workers;
	n_all_workers = n;
}

int worker_total_clients(void)
{
	return atomic_load(&g_n_clients);
}

bool worker_shard_paused(int32_t shard)
{
	if (atomic_load_explicit(&g_shared.paused_all, memory_order_relaxed))
		return true;
	unsigned long long m = atomic_load_explicit(&g_shared.paused_shards, memory_order_relaxed);
	return m && shard >= 0 && shard < 64 && (m >> shard & 1u);
}

void worker_pause(int32_t shard)
{
	if (shard < 0)
		atomic_store(&g_shared.paused_all, true);
	else if (shard < 64)
		atomic_fetch_or(&g_shared.paused_shards, 1ull << shard);
}

void worker_kick_all(void)
{
	for (int i = 0; i < n_all_workers; i++)
		if (all_workers[i].kick)
			event_active(all_workers[i].kick, 0, 0);
}

void worker_resume(int32_t shard)
{
	if (shard < 0) {
		atomic_store(&g_shared.paused_all, false);
		atomic_store(&g_shared.paused_shards, 0);
	} else if (shard < 64) {
		atomic_fetch_and(&g_shared.paused_shards, ~(1ull << shard));
	}
	for (int i = 0; i < n_all_workers; i++)
		if (all_workers[i].kick)
			event_active(all_workers[i].kick, 0, 0);
}

/* Worker thread: give paused clients another go. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	/* A kick follows every map publish: switch to the new map now, so an
	 * idle worker acks (drains) it without waiting for a client. */
	worker_refresh(w);
	for (struct client *c = w->clients; c; c = c->next)
		if (c->paused_wait) {
			c->paused_wait = false;
			client_resume_paused(c);
		}
}

void worker_client_count(int delta)
{
	atomic_fetch_add(&g_n_clients, delta);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fio_flush_all(arg);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_dispatch(w->base);
	return NULL;
}

int worker_listen_socket(const char *addr, int port)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (strcmp(addr, "*") == 0)
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	/* One socket shared by every worker (dup'd): a second router on the same
	 * port fails with EADDRINUSE instead of silently sharing it, as it would
	 * with SO_REUSEPORT. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1024) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int worker_start(struct worker *w, int id, int listen_fd)
{
	w->id = id;
	w->base = event_base_new();
	if (!w->base)
		return SR_ENOMEM;
	worker_refresh(w);
	w->listen_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
	if (w->listen_fd < 0)
		return SR_EIO;
	w->listener = evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1,
					 w->listen_fd);
	w->reaper = event_new(w->base, -1, 0, reaper_cb, w);
	w->housekeeping = event_new(w->base, -1, EV_PERSIST, housekeeping_cb, w);
	w->kick = event_new(w->base, -1, 0, kick_cb, w);
	w->drain_timer = evtimer_new(w->base, drain_timer_cb, w);
	w->flush = event_new(w->base, -1, 0, flush_cb, w);
	w->empty_in = evbuffer_new();
	if (!w->listener || !w->reaper || !w->housekeeping || !w->kick || !w->drain_timer ||
	    !w->flush || !w->empty_in ||
	    cancel_init(w))
		return SR_ENOMEM;
	struct timeval sec = { 1, 0 };
	event_add(w->housekeeping, &sec);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return SR_ENOMEM;
	return 0;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	if (w->listener) {
		evconnlistener_free(w->listener);
		w->listener = NULL;
	}
}

/* Graceful: stop accepting; the housekeeping timer exits the loop once
 * every client is gone. */
void worker_stop(struct worker *w)
{
	event_base_once(w->base, -1, EV_TIMEOUT, stop_cb, w, NULL);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}
