/*
 * worker.h - one event-loop thread: its event_base, its listening socket
 * (a dup of one shared socket: the kernel wakes the workers and one
 * accept wins; no lock of ours), its clients, its server pools, and a reaper
 * that frees connections outside the callback chains that could see them.
 *
 * Everything in a struct worker is owned by its thread; other threads only
 * touch the atomics in struct shared and call worker_wakeup-style libevent
 * functions that are thread-safe (event_active on an event of this base).
 */
#ifndef SR_ROUTER_WORKER_H
#define SR_ROUTER_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct event_base;
struct event;
struct evconnlistener;
struct config;
struct topo;
struct client;
struct server;
struct pool;
struct auth_userlist;
struct fio;

/* Why a unit was refused at routing time (metrics label "reason"). */
enum route_err_kind {
	ROUTE_ERR_NOT_SUPPORTED = 0, /* 0A000: keyless, cross-shard, session feature */
	ROUTE_ERR_BAD_KEY,           /* 22P02/23502/22023: key value or hint invalid */
	ROUTE_ERR_LEASE,             /* 25006: catalog lease expired */
	ROUTE_ERR_ABORTED,           /* 25P02: transaction already rolled back */
	ROUTE_ERR_OTHER,
	ROUTE_ERR_KINDS,
};
const char *route_err_kind_name(enum route_err_kind k);
void worker_count_route_error(const char *sqlstate);

/* Process-wide state the main thread swaps on reload; workers pick up a new
 * generation at the start of a client session or transaction. */
struct shared {
	pthread_mutex_t mu;
	struct config *cfg;          /* current config (one ref held here) */
	struct users_ref *users;     /* current userlist (one ref held here) */
	atomic_uint gen;             /* bumped on every swap */
	atomic_bool shutting_down;   /* SIGTERM: stop accepting, drain */
	atomic_bool paused_all;      /* PAUSE: new transactions wait */
	atomic_ullong paused_shards; /* PAUSE <shard>: bit per shard id < 64 */
	atomic_ullong stat_units;    /* routed units (queries/batches) */
	atomic_ullong stat_route_errors;
	atomic_ullong stat_route_errors_by[ROUTE_ERR_KINDS]; /* enum route_err_kind */
	atomic_ullong stat_logins;
};

struct users_ref {
	atomic_int refs;
	struct auth_userlist *list;
};

void users_ref_unref(struct users_ref *u);

extern struct shared g_shared;

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	int listen_fd;
	struct evconnlistener *listener;
	struct event *reaper;
	struct event *housekeeping; /* 1 s timer: timeouts, idle recycling */
	struct event *kick;         /* RESUME: re-run paused clients (any thread may activate) */
	struct event *flush;        /* fio: write queued output at the end of the iteration */
	struct fio *flush_head;     /* fio: connections with output to write */
	struct evbuffer *empty_in;  /* fio: the input of bare connections holding none */
	struct evbuffer *buf_pool[64]; /* fio: empty buffers to lend to bare connections */
	int n_buf_pool;

	unsigned gen;               /* of cfg/users below */
	struct config *cfg;
	struct users_ref *users;
	unsigned topo_gen;
	struct topo *topo;
	uint64_t topo_epoch;        /* topo->map->epoch: stamped on every server request */

	/* Drain tracking (see worker_drained_epoch). drain_pending is true while
	 * drained_epoch < topo_epoch: then every ReadyForQuery from a server and
	 * a DRAIN_RECHECK_MS timer re-check. */
	atomic_ullong drained_epoch;
	bool drain_pending;
	struct event *drain_timer;
	struct server *servers;     /* every server connection of this worker */

	struct client *clients;     /* all clients of this worker (list) */
	struct client *reap_clients;
	struct server *reap_servers;
	uint32_t next_client_id;
	int n_clients;

	struct pool **pools;
	int n_pools;
	int cap_pools;
};

/* A non-blocking listening socket on addr:port ("*" = any), or -1 (errno). */
int worker_listen_socket(const char *addr, int port);
/* Start worker thread id accepting on (a dup of) listen_fd. */
int worker_start(struct worker *w, int id, int listen_fd) SR_MUST_CHECK;
void worker_stop(struct worker *w);   /* from another thread: breaks the loop */
void worker_join(struct worker *w);

/* True when new transactions on shard must wait (PAUSE). Any thread. */
bool worker_shard_paused(int32_t shard);
/* PAUSE / RESUME (shard < 0: all). Any thread; RESUME wakes every worker. */
void worker_pause(int32_t shard);
void worker_resume(int32_t shard);
/* Re-run every waiting (paused, frozen) client, e.g. after a map change. */
void worker_kick_all(void);
/* All workers, for RESUME and the admin console. */
void worker_set_all(struct worker *workers, int n);
int worker_total_clients(void);

/* Adjust the process-wide client count (max_client_conn). Any thread. */
void worker_client_count(int delta);

/* Refresh cfg/users/topo if the shared generation changed. Worker thread. */
void worker_refresh(struct worker *w);

/*
 * Drained epochs, the router's ack of a map change (SPEC 3; written to
 * shardrouter.routers.acked_epoch by the catalog watcher). A worker has
 * drained epoch E when it routes by a map of epoch >= E and no request
 * routed under an older map is still in flight on any of its PRIMARY server
 * connections (each server request records the epoch of the map that routed
 * it). Replica connections do not count. Requests on a connection the router
 * has closed do not count either (their responses can no longer arrive).
 *
 * worker_check_drained: recompute w's drained epoch (worker thread; cheap
 * when nothing is pending); wakes the catalog watcher when it advances.
 * worker_min_drained_epoch: min over all workers (any thread); 0 before
 * workers run.
 */
void worker_check_drained(struct worker *w);
uint64_t worker_min_drained_epoch(void);
/* Link / unlink a server in w->servers (server.c). */
void worker_add_server(struct worker *w, struct server *s);
void worker_remove_server(struct worker *w, struct server *s);

/* Queue a client or server for freeing after the current callbacks return. */
void worker_reap_client(struct worker *w, struct client *c);
void worker_reap_server(struct worker *w, struct server *s);

/* Find or create the pool for (backend, user, database). */
struct pool *worker_pool(struct worker *w, int backend, const char *user, const char *db);

#endif
