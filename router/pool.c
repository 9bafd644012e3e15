/*
 * pool.c - per-worker server pools (see router/pool.h).
 */
#include "router/pool.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/client.h"
#include "router/config.h"
#include "router/server.h"
#include "router/topo.h"
#include "router/worker.h"

extern int g_n_workers;

/* The per-worker share of default_pool_size (rounded up). */
static int pool_limit(const struct pool *p)
{
	int n = g_n_workers > 0 ? g_n_workers : 1;
	int size = p->w->cfg->default_pool_size;
	int share = (size + n - 1) / n;
	return share > 0 ? share : 1;
}

static void enqueue(struct pool *p, struct client *c)
{
	c->wait_next = NULL;
	c->wait_start_ms = sr_mono_ms();
	c->wait_pool = p;
	if (p->wait_tail)
		p->wait_tail->wait_next = c;
	else
		p->wait_head = c;
	p->wait_tail = c;
	p->n_waiting++;
}

static struct client *dequeue(struct pool *p)
{
	struct client *c = p->wait_head;
	if (!c)
		return NULL;
	p->wait_head = c->wait_next;
	if (!p->wait_head)
		p->wait_tail = NULL;
	c->wait_next = NULL;
	c->wait_pool = NULL;
	p->n_waiting--;
	return c;
}

void pool_cancel_wait(struct pool *p, struct client *c)
{
	struct client **pp = &p->wait_head, *prev = NULL;
	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->wait_next;
	}
	if (!*pp)
		return;
	*pp = c->wait_next;
	if (p->wait_tail == c)
		p->wait_tail = prev;
	c->wait_next = NULL;
	c->wait_pool = NULL;
	p->n_waiting--;
}

static void open_one(struct pool *p)
{
	struct server *s = server_connect(p);
	if (!s) {
		pool_fail_waiters(p, "08006", "could not start a server connection");
		return;
	}
	p->n_total++;
}

struct server *pool_acquire(struct pool *p, struct client *c)
{
	if (p->idle) {
		struct server *s = p->idle;
		p->idle = s->next;
		s->next = NULL;
		p->n_idle--;
		s->state = SRV_ACTIVE;
		return s;
	}
	enqueue(p, c);
	log_debug("client %u: waits for %s:%s total=%d limit=%d waiting=%d", c->id, p->host, p->port,
		  p->n_total, pool_limit(p), p->n_waiting);
	if (p->n_total < pool_limit(p))
		open_one(p);
	return NULL;
}

void pool_release(struct pool *p, struct server *s)
{
	s->client = NULL;
	if (s->broken || s->txstatus != 'I' || !server_queue_empty(s)) {
		server_close(s, s->broken ? "broken" : "released inside a transaction");
		return;
	}
	struct client *c = dequeue(p);
	if (c) {
		s->state = SRV_ACTIVE;
		client_server_ready(c, s);
		return;
	}
	s->state = SRV_IDLE;
	s->next = p->idle;
	p->idle = s;
	p->n_idle++;
}

void pool_remove(struct pool *p, struct server *s)
{
	/* Unlink from the idle list if it is there - also as its last element,
	 * whose next is NULL (a server idle at the tail that dies must not stay
	 * in the list once freed). */
	struct server **pp = &p->idle;
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = s->next;
		p->n_idle--;
		s->next = NULL;
	}
	p->n_total--;
	/* Someone still waiting: replace the lost connection. */
	if (p->wait_head && p->n_total < pool_limit(p))
		open_one(p);
}

void pool_fail_waiters(struct pool *p, const char *sqlstate, const char *msg)
{
	struct client *c;
	/* A replica that cannot be reached: take it out of rotation now (the
	 * health monitor puts it back) and route the waiting reads again -
	 * nothing was sent for them, so another replica or the primary can
	 * serve them. */
	if (strcmp(sqlstate, "08006") == 0 && p->role == ROLE_REPLICA) {
		const struct topo *t = p->w->topo;
		if (t && p->backend < t->n_backends &&
		    strcmp(t->backends[p->backend].host, p->host) == 0 &&
		    strcmp(t->backends[p->backend].port, p->port) == 0) {
			struct backend_live *l = t->backends[p->backend].live;
			atomic_store(&l->healthy, false);
			atomic_store(&l->in_rotation, false);
		}
		log_warn("replica %s:%s (shard %d) unreachable, rerouting %d waiting client(s): %s",
			 p->host, p->port, p->shard_id, p->n_waiting, msg);
		while ((c = dequeue(p)) != NULL)
			client_retry_route(c);
		return;
	}
	/* Everyone waiting here would get the same failure. */
	while ((c = dequeue(p)) != NULL)
		client_server_failed(c, sqlstate, msg);
}

void pool_housekeeping(struct pool *p, uint64_t now_ms)
{
	const struct config *cfg = p->w->cfg;
	struct server **pp = &p->idle;
	while (*pp) {
		struct server *s = *pp;
		bool idle_long = cfg->server_idle_timeout_ms > 0 &&
				 now_ms - s->last_used_ms > (uint64_t)cfg->server_idle_timeout_ms;
		bool too_old = cfg->server_lifetime_ms > 0 &&
			       now_ms - s->created_ms > (uint64_t)cfg->server_lifetime_ms;
		if (idle_long || too_old) {
			*pp = s->next;
			s->next = NULL;
			p->n_idle--;
			s->state = SRV_ACTIVE; /* not in the idle list any more */
			server_close(s, idle_long ? "idle timeout" : "lifetime");
			continue;
		}
		pp = &s->next;
	}
	if (cfg->query_wait_timeout_ms > 0) {
		struct client *c = p->wait_head;
		while (c) {
			struct client *next = c->wait_next;
			if (now_ms - c->wait_start_ms > (uint64_t)cfg->query_wait_timeout_ms) {
				log_warn("client %u: query_wait_timeout after %llu ms waiting for "
					 "%s:%s (pool size %d, %d waiting)",
					 c->id, (unsigned long long)(now_ms - c->wait_start_ms), p->host,
					 p->port, p->n_total, p->n_waiting);
				pool_cancel_wait(p, c);
				client_server_failed(c, "57014",
						     "query_wait_timeout: no server connection became "
						     "free in time");
			}
			c = next;
		}
	}
}
