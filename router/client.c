/*
 * client.c - the client side of the proxy: read messages, route each unit
 * of work, attach a pooled server, forward (see router/client.h).
 *
 * A "unit" is one Query/FunctionCall message, or an extended-protocol batch
 * up to and including Sync or Flush. Messages stay in the client's input
 * buffer until their unit can be routed and forwarded, so waiting for a
 * server costs no copy and re-routing after a wait is just a re-read.
 */
#include "router/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/auth.h"
#include "router/config.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/unit.h"
#include "router/session.h"
#include "router/startup.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/hash.h"

#define CLIENT_HIGH_WATER (4u << 20)
#define UNIT_MAX_BYTES (8u << 20) /* route a batch without Sync past this */

const char *client_state_name(enum client_state s)
{
	switch (s) {
	case CL_STARTUP: return "startup";
	case CL_AUTH: return "auth";
	case CL_LOGIN: return "login";
	case CL_IDLE: return "idle";
	case CL_WAIT: return "waiting";
	case CL_ACTIVE: return "active";
	case CL_CLOSING: return "closing";
	}
	return "?";
}

struct evbuffer *client_output(struct client *c)
{
	return c->fio.bare ? fio_output(&c->fio) : bufferevent_get_output(c->bev);
}

struct evbuffer *client_input(struct client *c)
{
	return c->fio.bare ? fio_input(&c->fio) : bufferevent_get_input(c->bev);
}

size_t client_output_length(struct client *c)
{
	return c->fio.bare ? fio_output_length(&c->fio)
			   : evbuffer_get_length(bufferevent_get_output(c->bev));
}

void client_read_enable(struct client *c, bool on)
{
	if (c->fio.bare)
		fio_read_enable(&c->fio, on);
	else if (on)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

void client_go_bare(struct client *c)
{
	if (c->tls || !c->bev)
		return;
	if (fio_bare_begin(&c->fio, c->w, c->bev))
		c->bev = NULL;
}

static void client_process(struct client *c);

/* ---- errors and closing ------------------------------------------------- */

void client_error(struct client *c, bool fatal, const char *sqlstate, const char *message,
		  const char *detail, const char *hint)
{
	if (c->state == CL_CLOSING)
		return;
	if (pw_write_error(client_output(c), false, fatal ? "FATAL" : "ERROR", sqlstate, message,
			   detail && *detail ? detail : NULL, hint && *hint ? hint : NULL))
		fatal = true;
	log_at(fatal ? LOG_LVL_INFO : LOG_LVL_DEBUG,
	       "client %u: %s user=%s db=%s peer=%s sqlstate=%s error=\"%s\"", c->id,
	       fatal ? "fatal" : "error", c->user, c->db, c->peer, sqlstate, message);
	if (fatal)
		client_close(c, message);
}

void client_detach_server(struct client *c)
{
	struct server *s = c->server;
	if (!s)
		return;
	c->server = NULL;
	s->client = NULL;
	if (s->live) {
		atomic_fetch_sub(&s->live->outstanding, 1);
		s->live = NULL;
	}
	bufferevent_enable(s->bev, EV_READ);
	if (s->state != SRV_ACTIVE)
		return;
	const char *reset = c->w->cfg->server_reset_query;
	if (c->w->cfg->pool_mode == CONFIG_POOL_SESSION && reset && *reset &&
	    server_queue_empty(s) && s->txstatus == 'I') {
		/* Session pooling: wipe the session before anyone else gets it;
		 * the server goes back to the pool when the reset completes. */
		if (pw_write_query(server_output(s), reset) || server_push_req(s, REQ_QUERY, true))
			s->broken = true;
		server_forget_all(s);
		return;
	}
	if (server_queue_empty(s) && s->txstatus == 'I') {
		pool_release(s->pool, s);
		return;
	}
	/* Responses still due: the server finishes them detached and returns to
	 * the pool on its own (server.c relay_idle) if it ends outside a
	 * transaction. */
}

void client_close(struct client *c, const char *why)
{
	if (c->state == CL_CLOSING)
		return;
	log_debug("client %u: close reason=\"%s\"", c->id, why);
	if (c->wait_pool)
		pool_cancel_wait(c->wait_pool, c);
	c->wait_pool = NULL;
	if (c->server) {
		struct server *s = c->server;
		if (!server_queue_empty(s) || s->txstatus != 'I') {
			/* Mid-transaction: roll back on the server, then it is reusable. */
			if (s->txstatus != 'I' && server_queue_empty(s) &&
			    pw_write_query(server_output(s), "ROLLBACK") == 0 &&
			    server_push_req(s, REQ_QUERY, true) == 0) {
				client_detach_server(c);
			} else {
				c->server = NULL;
				s->client = NULL;
				server_close(s, "client closed with a request in flight");
			}
		} else {
			client_detach_server(c);
		}
	}
	c->state = CL_CLOSING;
	/* Flush what we owe the client (e.g. a FATAL error), then free. */
	client_read_enable(c, false);
	worker_reap_client(c->w, c);
}

void client_server_failed(struct client *c, const char *sqlstate, const char *message)
{
	c->wait_pool = NULL;
	if (c->state == CL_LOGIN) {
		client_error(c, true, sqlstate, message, NULL, NULL);
		return;
	}
	if (c->state != CL_WAIT)
		return;
	c->state = CL_IDLE;
	client_read_enable(c, true);
	/* The unit that waited is still in the input buffer: answer it with the
	 * error and drop it. */
	c->blocked = false;
	client_error(c, false, sqlstate, message, NULL, NULL);
	struct evbuffer *in = client_input(c);
	char type;
	uint32_t len;
	bool sync_seen = false;
	while (pw_peek(in, (size_t)c->w->cfg->max_packet_size, &type, &len) == 1) {
		evbuffer_drain(in, 5 + (size_t)len);
		if (type == PW_FE_QUERY || type == PW_FE_FUNCTION_CALL || type == PW_FE_SYNC) {
			sync_seen = true;
			break;
		}
		if (type == PW_FE_FLUSH)
			break;
	}
	if (!sync_seen && evbuffer_get_length(in) > 0)
		c->skip_to_sync = true;
	if (c->in_tx) {
		free(c->held_begin);
		c->held_begin = NULL;
		c->tx_failed_local = true;
		c->txstatus = 'E';
	}
	if (sync_seen && pw_write_ready(client_output(c), c->txstatus)) {
		client_close(c, "out of memory");
		return;
	}
	client_process(c);
}

void client_server_lost(struct client *c, const char *why)
{
	c->server = NULL;
	client_error(c, true, "08006", "server connection lost", why, NULL);
}

/* ---- server callbacks ----------------------------------------------------- */

void client_server_ready(struct client *c, struct server *s)
{
	c->wait_pool = NULL;
	if (c->state == CL_LOGIN) {
		startup_login_ready(c, s);
		if (c->state == CL_IDLE)
			client_go_bare(c); /* (a pool callback: not inside c's input processing) */
		return;
	}
	if (c->state != CL_WAIT) {
		pool_release(s->pool, s);
		return;
	}
	unit_attach(c, s);
	client_read_enable(c, true);
	client_process(c);
}

void client_saw_command(struct client *c, const char *tag, size_t len)
{
	if (len >= 8 && memcmp(tag, "ROLLBACK", 8) == 0)
		c->tx_error = true;
	else if (len == 11 && memcmp(tag, "DISCARD ALL", 11) == 0) {
		if (session_note_set(c, "all", 3, NULL, 0))
			log_warn("client %u: out of memory tracking DISCARD ALL", c->id);
	}
}

void client_saw_error(struct client *c, const char *sqlstate)
{
	(void)sqlstate;
	c->tx_error = true;
}

static bool ask_write_lsn(struct client *c);

void client_server_idle(struct client *c, char txstatus)
{
	if (c->held_begin) {
		/* a prepare-only batch ran outside the held transaction */
		c->defer_held = false;
		if (txstatus == 'I' && c->server) {
			client_detach_server(c);
			c->state = CL_IDLE;
		}
		if (c->blocked) {
			c->blocked = false;
			client_read_enable(c, true);
		}
		client_process(c);
		return;
	}
	c->txstatus = txstatus;
	c->in_tx = txstatus != 'I';
	c->ryw_pending = false;
	if (txstatus == 'I' && ask_write_lsn(c)) {
		client_process(c); /* pipelined units may go on to this primary */
		return;
	}
	if (txstatus == 'I') {
		c->tx_wrote = false;
		if (c->tx_error)
			session_drop_pending(c);
		else if (c->n_pending)
			session_commit_pending(c);
		c->tx_error = false;
		c->tx_read_only = false;
		c->n_tx++;
		if (c->w->cfg->pool_mode == CONFIG_POOL_TRANSACTION && c->server) {
			client_detach_server(c);
			c->state = CL_IDLE;
		}
	}
	if (c->blocked) {
		c->blocked = false;
		client_read_enable(c, true);
	}
	client_process(c);
}

char client_visible_status(const struct client *c, char server_status)
{
	if (c->held_begin)
		return 'T';
	return server_status;
}

int64_t client_ryw_lsn(const struct client *c, int32_t shard)
{
	if (!c->w->cfg->read_your_writes)
		return 0;
	for (int i = 0; i < c->n_ryw; i++)
		if (c->ryw[i].shard == shard)
			return c->ryw[i].lsn;
	return 0;
}

void client_note_write_lsn(struct client *c, int32_t shard, int64_t lsn)
{
	int n = CLIENT_RYW_MAX;
	if (!c->ryw && !(c->ryw = calloc(CLIENT_RYW_MAX, sizeof(*c->ryw)))) {
		log_warn("client %u: out of memory noting a write LSN", c->id);
		return;
	}
	for (int i = 0; i < c->n_ryw; i++)
		if (c->ryw[i].shard == shard) {
			if (lsn > c->ryw[i].lsn)
				c->ryw[i].lsn = lsn;
			return;
		}
	if (c->n_ryw == n) { /* forget the oldest shard */
		memmove(&c->ryw[0], &c->ryw[1], sizeof(c->ryw[0]) * (size_t)(n - 1));
		c->n_ryw--;
	}
	c->ryw[c->n_ryw].shard = shard;
	c->ryw[c->n_ryw].lsn = lsn;
	c->n_ryw++;
}

/* read_your_writes: after a transaction on a primary, ask it for its WAL
 * insert position before letting the server go - the insert position, not
 * the write position, because with synchronous_commit = off the commit
 * record may not be written yet when the commit returns; later reads on
 * that shard only use replicas that have replayed it. One extra round trip
 * per write transaction, on the same connection (none on a shard without
 * replicas). True when the question
 * was sent (the server stays attached until it is answered). */
static bool ask_write_lsn(struct client *c)
{
	struct server *s = c->server;
	if (!c->w->cfg->read_your_writes || !c->tx_wrote || !s ||
	    s->pool->role != ROLE_PRIMARY || c->tx_error)
		return false;
	c->tx_wrote = false;
	/* A shard without replicas serves every read from its primary: no
	 * replica can be behind, so no question (and no round trip). */
	const struct topo_shard *ts = topo_shard(c->w->topo, s->pool->shard_id);
	if (!ts || ts->n_replicas == 0)
		return false;
	if (pw_write_query(server_output(s),
			   "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint") ||
	    server_push_req(s, REQ_QUERY, true)) {
		s->broken = true;
		return false;
	}
	s->q[(s->q_head + s->q_len - 1) % s->q_cap].capture = true;
	c->ryw_pending = true;
	return true;
}

void client_retry_route(struct client *c)
{
	if (c->state != CL_WAIT)
		return;
	c->state = CL_IDLE;
	client_read_enable(c, true);
	client_process(c);
}

void client_resume_paused(struct client *c)
{
	if (c->state == CL_CLOSING)
		return;
	client_read_enable(c, true);
	client_process(c);
}

void client_resume(struct client *c)
{
	if (c->state == CL_CLOSING)
		return;
	struct evbuffer *out = c->server ? server_output(c->server) : NULL;
	if (!out || evbuffer_get_length(out) < CLIENT_HIGH_WATER / 2)
		client_read_enable(c, true);
}

/* ---- the read loop ---------------------------------------------------------- */

static void client_process(struct client *c)
{
	for (;;) {
		switch (c->state) {
		case CL_STARTUP:
		case CL_AUTH: {
			enum client_state before = c->state;
			size_t had = evbuffer_get_length(client_input(c));
			if (!startup_step(c))
				return;
			if (c->state == CL_IDLE)
				client_go_bare(c); /* logged in; the login messages are consumed */
			if (c->state == before &&
			    evbuffer_get_length(client_input(c)) == had)
				return; /* need more bytes */
			continue;
		}
		case CL_IDLE:
		case CL_ACTIVE:
			if (c->blocked)
				return;
			if (!unit_step(c))
				return;
			continue;
		case CL_LOGIN:
		case CL_WAIT:
		case CL_CLOSING:
			return;
		}
	}
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct client *c = arg;
	c->last_active_ms = sr_mono_ms();
	client_process(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct client *c = arg;
	fio_written(&c->fio);
	if (c->server && c->server->state == SRV_ACTIVE)
		bufferevent_enable(c->server->bev, EV_READ);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct client *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		client_close(c, (what & BEV_EVENT_EOF) ? "client disconnected" : "client socket error");
}

void client_accept(struct worker *w, int fd, const char *peer)
{
	struct client *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !bev) {
		free(c);
		if (bev)
			bufferevent_free(bev);
		else
			evutil_closesocket(fd);
		return;
	}
	c->w = w;
	c->bev = bev;
	c->id = ++w->next_client_id;
	c->state = CL_STARTUP;
	c->txstatus = 'I';
	c->want_backend = -1;
	c->connected_ms = c->last_active_ms = sr_mono_ms();
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->next = w->clients;
	if (w->clients)
		w->clients->prev = c;
	w->clients = c;
	w->n_clients++;
	worker_client_count(1);
	client_setup_bev(c);
}

void client_setup_bev(struct client *c)
{
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_set_max_single_read(c->bev, 256 * 1024);
	bufferevent_setwatermark(c->bev, EV_WRITE, CLIENT_HIGH_WATER / 2, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void client_free(struct client *c)
{
	if (!c)
		return;
	struct worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else if (w->clients == c)
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_clients--;
	worker_client_count(-1);
	fio_release(&c->fio);
	fio_bare_free(&c->fio);
	if (c->bev)
		bufferevent_free(c->bev);
	auth_scram_server_free(c->scram);
	session_free_all(c);
	free(c->held_begin);
	free(c->hint_key);
	free(c->ryw);
	free(c);
}
