/*
 * pool.h - per-worker pools of server connections, one per
 * (backend, user, database). A client that needs a server calls
 * pool_acquire(): it gets an idle server at once, or a new connection is
 * opened (up to the pool size), or it waits in FIFO order until a server is
 * released or query_wait_timeout passes. Worker thread only.
 */
#ifndef SR_ROUTER_POOL_H
#define SR_ROUTER_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct worker;
struct server;
struct client;
struct kv;

struct pool {
	struct worker *w;
	int backend;           /* index into the topo's backends */
	char host[256];
	char port[16];
	int32_t shard_id;
	int role;              /* enum backend_role */
	char user[64];
	char db[64];
	struct server *idle;   /* LIFO list of idle servers */
	int n_idle;
	int n_total;           /* idle + active + connecting */
	struct client *wait_head, *wait_tail; /* clients waiting for a server */
	int n_waiting;
	struct kv *ps;         /* ParameterStatus of the first login, for new clients */
	int n_ps, cap_ps;
	bool has_keys;         /* SCRAM keys captured from a client login */
	uint8_t client_key[32], server_key[32];
	uint64_t n_tx;
	uint64_t n_queries;
	uint64_t total_wait_us;
};

/* Get a server for c. Returns the server when one is idle and ready;
 * otherwise NULL and c is queued: client_server_ready(c, s) is called later
 * (or client_server_failed(c, ...) on a connect failure). */
struct server *pool_acquire(struct pool *p, struct client *c);

/* Return s to its pool (idle or handed to the next waiter). */
void pool_release(struct pool *p, struct server *s);

/* Forget s (it is closing). Wakes a waiter by opening a new connection. */
void pool_remove(struct pool *p, struct server *s);

/* Remove c from the wait queue if it is there. */
void pool_cancel_wait(struct pool *p, struct client *c);

/* A connect attempt for the pool failed: fail every waiting client. */
void pool_fail_waiters(struct pool *p, const char *sqlstate, const char *msg);

/* Close idle servers older than server_idle_timeout/server_lifetime and
 * time out waiters past query_wait_timeout. Called every second. */
void pool_housekeeping(struct pool *p, uint64_t now_ms);

#endif
