/*
 * server.c - backend connections: connect, login, relay (see router/server.h).
 */
#include "router/server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/auth.h"
#include "router/client.h"
#include "router/config.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/session.h"
#include "router/topo.h"
#include "router/worker.h"

#define RELAY_HIGH_WATER (4u << 20)

static uint64_t next_server_id = 1;
static atomic_int n_servers;

int server_count(void)
{
	return atomic_load(&n_servers);
}

const char *server_state_name(enum server_state s)
{
	switch (s) {
	case SRV_CONNECTING: return "connecting";
	case SRV_LOGIN: return "login";
	case SRV_IDLE: return "idle";
	case SRV_ACTIVE: return "active";
	case SRV_CLOSING: return "closing";
	}
	return "?";
}

struct evbuffer *server_output(struct server *s)
{
	return bufferevent_get_output(s->bev);
}

int server_push_req(struct server *s, enum srv_req_kind kind, bool drop)
{
	if (s->q_len == s->q_cap) {
		uint32_t nc = s->q_cap ? s->q_cap * 2 : 16;
		struct srv_req *nq = malloc(nc * sizeof(*nq));
		if (!nq)
			return SR_ENOMEM;
		for (uint32_t i = 0; i < s->q_len; i++)
			nq[i] = s->q[(s->q_head + i) % s->q_cap];
		free(s->q);
		s->q = nq;
		s->q_cap = nc;
		s->q_head = 0;
	}
	uint64_t start = !drop && (kind == REQ_QUERY || kind == REQ_SYNC) ? sr_mono_us() : 0;
	s->q[(s->q_head + s->q_len) % s->q_cap] = (struct srv_req){
		.kind = (uint8_t)kind, .drop = drop, .capture = false, .start_us = start,
		.epoch = s->w->topo_epoch
	};
	s->q_len++;
	return 0;
}

bool server_queue_empty(const struct server *s)
{
	return s->q_len == 0;
}

uint64_t server_min_req_epoch(const struct server *s)
{
	uint64_t m = UINT64_MAX;
	for (uint32_t i = 0; i < s->q_len; i++) {
		uint64_t e = s->q[(s->q_head + i) % s->q_cap].epoch;
		if (e < m)
			m = e;
	}
	return m;
}

static struct srv_req *q_head(struct server *s)
{
	return s->q_len ? &s->q[s->q_head] : NULL;
}

static void q_pop(struct server *s)
{
	if (!s->q_len)
		return;
	s->q_head = (s->q_head + 1) % s->q_cap;
	s->q_len--;
}

const struct srv_stmt *server_find_stmt(const struct server *s, const char *name)
{
	for (int i = 0; i < s->n_stmts; i++)
		if (strcmp(s->stmts[i].name, name) == 0)
			return &s->stmts[i];
	return NULL;
}

int server_add_stmt(struct server *s, const char *name, uint64_t fingerprint)
{
	for (int i = 0; i < s->n_stmts; i++)
		if (strcmp(s->stmts[i].name, name) == 0) {
			s->stmts[i].fingerprint = fingerprint;
			return 0;
		}
	if (s->n_stmts == s->cap_stmts) {
		int nc = s->cap_stmts ? s->cap_stmts * 2 : 8;
		struct srv_stmt *na = realloc(s->stmts, (size_t)nc * sizeof(*na));
		if (!na)
			return SR_ENOMEM;
		s->stmts = na;
		s->cap_stmts = nc;
	}
	char *n = strdup(name);
	if (!n)
		return SR_ENOMEM;
	s->stmts[s->n_stmts++] = (struct srv_stmt){ .name = n, .fingerprint = fingerprint };
	return 0;
}

void server_forget_stmt(struct server *s, const char *name)
{
	for (int i = 0; i < s->n_stmts; i++)
		if (strcmp(s->stmts[i].name, name) == 0) {
			free(s->stmts[i].name);
			s->stmts[i] = s->stmts[--s->n_stmts];
			return;
		}
}

const char *server_param(const struct server *s, const char *name)
{
	const struct kv *e = kv_find(s->params, s->n_params, name);
	return e ? e->value : NULL;
}

int server_set_param(struct server *s, const char *name, const char *value)
{
	return kv_set(&s->params, &s->n_params, &s->cap_params, name, strlen(name), value,
		      strlen(value));
}

void server_clear_param(struct server *s, const char *name)
{
	kv_remove(s->params, &s->n_params, name);
}

void server_forget_all(struct server *s)
{
	for (int i = 0; i < s->n_stmts; i++)
		free(s->stmts[i].name);
	s->n_stmts = 0;
	kv_free_all(s->params, s->n_params);
	s->params = NULL;
	s->n_params = s->cap_params = 0;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	worker_remove_server(s->w, s);
	fio_release(&s->fio);
	if (s->bev) {
		bufferevent_free(s->bev);
		atomic_fetch_sub(&n_servers, 1);
	}
	auth_backend_free(s->auth);
	for (int i = 0; i < s->n_stmts; i++)
		free(s->stmts[i].name);
	free(s->stmts);
	kv_free_all(s->params, s->n_params);
	free(s->q);
	free(s);
}

void server_close(struct server *s, const char *why)
{
	if (s->state == SRV_CLOSING)
		return;
	log_debug("server %llu: close backend=%s:%s reason=\"%s\"", (unsigned long long)s->id,
		  s->pool->host, s->pool->port, why);
	struct client *c = s->client;
	enum server_state old = s->state;
	s->state = SRV_CLOSING;
	s->client = NULL;
	if (s->live) {
		atomic_fetch_sub(&s->live->outstanding, 1);
		s->live = NULL;
	}
	if (s->bev)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	pool_remove(s->pool, s);
	if (c && old == SRV_ACTIVE)
		client_server_lost(c, why);
	worker_reap_server(s->w, s);
}

/* ---- login ------------------------------------------------------------ */

static void login_failed(struct server *s, const char *sqlstate, const char *msg)
{
	log_warn("server login failed backend=%s:%s user=%s db=%s sqlstate=%s error=\"%s\"",
		 s->pool->host, s->pool->port, s->pool->user, s->pool->db, sqlstate, msg);
	struct pool *p = s->pool;
	server_close(s, msg);
	pool_fail_waiters(p, sqlstate, msg);
}

static int make_auth(struct server *s, struct sr_errmsg *em)
{
	struct auth_backend_creds cr = { .user = s->pool->user };
	const struct auth_user_entry *e = NULL;
	if (s->w->users && s->w->users->list)
		e = auth_userlist_find(s->w->users->list, s->pool->user);
	if (e && e->kind == AUTH_SECRET_PLAIN)
		cr.password = e->secret;
	else if (e && e->kind == AUTH_SECRET_MD5)
		cr.md5_secret = e->secret;
	if (s->pool->has_keys) {
		cr.scram_client_key = s->pool->client_key;
		cr.scram_server_key = s->pool->server_key;
	}
	return auth_backend_new(&cr, &s->auth, em);
}

static void login_msg(struct server *s, char type, const uint8_t *p, uint32_t len)
{
	struct sr_errmsg em;
	switch (type) {
	case PW_BE_AUTH: {
		const uint8_t *reply;
		size_t rl;
		bool done = false;
		if (!s->auth && make_auth(s, &em)) {
			login_failed(s, "08006", em.text);
			return;
		}
		if (auth_backend_handle(s->auth, p, len, &reply, &rl, &done, &em)) {
			login_failed(s, "28P01", em.text);
			return;
		}
		if (reply && pw_write_msg(server_output(s), PW_FE_PASSWORD, reply, rl))
			login_failed(s, "53200", "out of memory");
		return;
	}
	case PW_BE_PARAM_STATUS: {
		struct pw_reader r;
		pw_reader_init(&r, p, len);
		size_t nl, vl;
		const char *n = pw_read_cstr(&r, &nl);
		const char *v = pw_read_cstr(&r, &vl);
		/* the newest login's values are what new clients are told */
		if (!r.bad &&
		    kv_set(&s->pool->ps, &s->pool->n_ps, &s->pool->cap_ps, n, nl, v, vl) != 0)
			log_warn("server %llu: out of memory keeping ParameterStatus %s",
				 (unsigned long long)s->id, n);
		return;
	}
	case PW_BE_KEY_DATA:
		if (len == 8) {
			s->be_pid = pw_get_u32(p);
			s->be_secret = pw_get_u32(p + 4);
		}
		return;
	case PW_BE_ERROR: {
		char st[6];
		const char *m;
		size_t ml;
		pw_error_fields(p, len, st, &m, &ml);
		char msg[256];
		snprintf(msg, sizeof(msg), "%.*s", (int)ml, m);
		login_failed(s, st, msg);
		return;
	}
	case PW_BE_READY:
		auth_backend_free(s->auth);
		s->auth = NULL;
		s->txstatus = len ? (char)p[0] : 'I';
		s->state = SRV_IDLE;
		bufferevent_set_timeouts(s->bev, NULL, NULL); /* login timeout no longer applies */
		(void)fio_direct_begin(&s->fio, s->w, s->bev);
		log_debug("server %llu: logged in backend=%s:%s pid=%u", (unsigned long long)s->id,
			  s->pool->host, s->pool->port, s->be_pid);
		pool_release(s->pool, s);
		return;
	default:
		return; /* notices, NegotiateProtocolVersion: nothing to do */
	}
}

/* ---- relay ------------------------------------------------------------ */

/* Forward or drop `n` bytes at the front of in. */
static void move_out(struct server *s, struct evbuffer *in, size_t n, bool drop)
{
	struct client *c = s->client;
	if (drop || !c) {
		evbuffer_drain(in, n);
		return;
	}
	evbuffer_remove_buffer(in, client_output(c), n);
}

static void relay_idle(struct server *s)
{
	struct client *c = s->client;
	if (c) {
		client_server_idle(c, s->txstatus);
		return;
	}
	/* Detached (client gone or rolled back by the router): back to the pool
	 * once the server says it is outside a transaction. */
	if (s->state == SRV_ACTIVE) {
		if (s->txstatus == 'I')
			pool_release(s->pool, s);
		else
			server_close(s, "detached server left inside a transaction");
	}
}

/* The request FIFO after a response that completes a request of kind
 * REQ_PARSE/BIND/CLOSE (ParseComplete, ...), a Describe (RowDescription,
 * NoData) or an Execute (CommandComplete, EmptyQueryResponse,
 * PortalSuspended). Shared by the fast and the slow relay path. */
static void note_reply(struct server *s, const struct srv_req *h, char type)
{
	switch (type) {
	case PW_BE_PARSE_COMPLETE:
	case PW_BE_BIND_COMPLETE:
	case PW_BE_CLOSE_COMPLETE:
	case PW_BE_NO_DATA:
		q_pop(s);
		return;
	case PW_BE_ROW_DESC:
		if (h && h->kind == REQ_DESCRIBE)
			q_pop(s);
		return;
	case PW_BE_COMMAND_COMPLETE:
	case PW_BE_EMPTY_QUERY:
	case PW_BE_PORTAL_SUSPENDED:
		if (h && h->kind == REQ_EXECUTE)
			q_pop(s);
		return;
	default:
		return;
	}
}

/* ReadyForQuery with status st ends the request at the head: latency,
 * FIFO, and the drained-epoch check a move's freeze waits for. */
static void note_ready(struct server *s, const struct srv_req *h, char st)
{
	s->txstatus = st;
	if (h && h->start_us && s->live) {
		uint64_t now = sr_mono_us();
		topo_count_latency(s->live, now > h->start_us ? now - h->start_us : 0);
	}
	q_pop(s);
	if (s->w->drain_pending)
		worker_check_drained(s->w);
}

/* Handle one complete response message; returns false if s was closed. */
static bool relay_msg(struct server *s, struct evbuffer *in, char type, uint32_t len)
{
	struct srv_req *h = q_head(s);
	bool drop = h ? h->drop : true;
	size_t total = 5 + (size_t)len;
	switch (type) {
	case PW_BE_READY: {
		uint8_t hdr[6];
		evbuffer_copyout(in, hdr, 6);
		note_ready(s, h, (char)hdr[5]);
		if (!drop && s->client && client_visible_status(s->client, s->txstatus) != s->txstatus) {
			evbuffer_drain(in, total);
			if (pw_write_ready(client_output(s->client),
					   client_visible_status(s->client, s->txstatus)))
				s->broken = true;
		} else {
			move_out(s, in, total, drop);
		}
		if (s->q_len == 0)
			relay_idle(s);
		return s->state != SRV_CLOSING;
	}
	case PW_BE_ERROR: {
		uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
		char st[6];
		const char *m;
		size_t ml;
		pw_error_fields(p + 5, len, st, &m, &ml);
		bool drop_err = h && h->drop && h->kind == REQ_QUERY;
		if (drop_err)
			log_warn("server %llu: injected statement failed sqlstate=%s error=\"%.*s\"",
				 (unsigned long long)s->id, st, (int)ml, m);
		else if (s->client)
			client_saw_error(s->client, st);
		move_out(s, in, total, drop_err);
		if (h && h->kind != REQ_QUERY)
			while (s->q_len && q_head(s)->kind != REQ_SYNC)
				q_pop(s);
		return true;
	}
	case PW_BE_PARSE_COMPLETE:
	case PW_BE_BIND_COMPLETE:
	case PW_BE_CLOSE_COMPLETE:
	case PW_BE_NO_DATA:
	case PW_BE_ROW_DESC:
		note_reply(s, h, type);
		move_out(s, in, total, drop);
		return true;
	case PW_BE_COMMAND_COMPLETE:
		if (!drop && s->client && len < 64) {
			uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
			client_saw_command(s->client, (const char *)p + 5, len ? len - 1 : 0);
		}
		note_reply(s, h, type);
		move_out(s, in, total, drop);
		return true;
	case PW_BE_EMPTY_QUERY:
	case PW_BE_PORTAL_SUSPENDED:
		note_reply(s, h, type);
		move_out(s, in, total, drop);
		return true;
	case PW_BE_NOTIFICATION:
		move_out(s, in, total, false);
		return true;
	case PW_BE_DATA_ROW:
		if (h && h->capture && s->client && len < 64) {
			/* int16 ncols, int32 len, text digits */
			uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
			if (len >= 6 && pw_get_u16(p + 5) == 1) {
				uint32_t vl = pw_get_u32(p + 7);
				char num[32];
				if (vl < sizeof(num) && 6 + vl <= len) {
					memcpy(num, p + 11, vl);
					num[vl] = '\0';
					client_note_write_lsn(s->client, s->pool->shard_id,
							      strtoll(num, NULL, 10));
				}
			}
		}
		move_out(s, in, total, drop);
		return true;
	default:
		move_out(s, in, total, drop);
		return true;
	}
}

/* Copy n bytes that start off bytes into in. */
static void copy_at(struct evbuffer *in, size_t off, void *dst, size_t n)
{
	struct evbuffer_ptr ptr;
	if (evbuffer_ptr_set(in, &ptr, off, EVBUFFER_PTR_SET) != 0 ||
	    evbuffer_copyout_from(in, &ptr, dst, n) != (ev_ssize_t)n)
		memset(dst, 0, n);
}

/*
 * The fast path of the relay: a complete message `off` bytes into in that
 * goes to the client unchanged, for a request of the client's. Does the
 * bookkeeping relay_msg would do and returns true: the caller moves a whole
 * run of such messages with one evbuffer_remove_buffer. False: relay_msg
 * must handle it at the front of the buffer (dropped responses, errors,
 * captures, a ReadyForQuery the client must see with another status).
 */
static bool batch_msg(struct server *s, struct evbuffer *in, size_t off, char type, uint32_t len)
{
	struct srv_req *h = q_head(s);
	if (s->state != SRV_ACTIVE || !s->client || !h || h->drop)
		return false;
	switch (type) {
	case PW_BE_DATA_ROW:
	case PW_BE_COPY_DATA:
	case PW_BE_PARAM_DESC:
	case PW_BE_NOTICE:
	case PW_BE_PARAM_STATUS:
		return true;
	case PW_BE_ROW_DESC:
	case PW_BE_PARSE_COMPLETE:
	case PW_BE_BIND_COMPLETE:
	case PW_BE_CLOSE_COMPLETE:
	case PW_BE_NO_DATA:
	case PW_BE_EMPTY_QUERY:
	case PW_BE_PORTAL_SUSPENDED:
		note_reply(s, h, type);
		return true;
	case PW_BE_COMMAND_COMPLETE:
		if (len < 64) {
			char tag[64];
			copy_at(in, off + 5, tag, len);
			client_saw_command(s->client, tag, len ? len - 1 : 0);
		}
		note_reply(s, h, type);
		return true;
	case PW_BE_READY: {
		uint8_t st = 0;
		if (len < 1)
			return false;
		copy_at(in, off + 5, &st, 1);
		if (client_visible_status(s->client, (char)st) != (char)st)
			return false;
		note_ready(s, h, (char)st);
		return true;
	}
	default:
		return false;
	}
}

void server_process_input(struct server *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t max = (size_t)s->w->cfg->max_packet_size;
	if (max < (1u << 30))
		max = 1u << 30; /* servers may send big rows; trust them more */
	size_t fwd = 0; /* bytes at the front of in that go to the client as they are */
	for (;;) {
		if (s->state == SRV_CLOSING)
			return;
		char type;
		uint32_t len;
		int rc = pw_peek_at(in, fwd, max, &type, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			server_close(s, "malformed message from server");
			return;
		}
		if (batch_msg(s, in, fwd, type, len)) {
			fwd += 5 + (size_t)len;
			if (type != PW_BE_READY)
				continue;
			move_out(s, in, fwd, false);
			fwd = 0;
			if (s->q_len == 0)
				relay_idle(s);
			continue;
		}
		if (fwd > 0) {
			move_out(s, in, fwd, false);
			fwd = 0;
		}
		if (s->state == SRV_LOGIN || s->state == SRV_CONNECTING) {
			uint8_t *p = evbuffer_pullup(in, 5 + (ev_ssize_t)len);
			/* copy: login_msg may free the buffer by closing */
			uint8_t small[512];
			uint8_t *payload = len <= sizeof(small) ? small : malloc(len ? len : 1);
			if (!payload) {
				server_close(s, "out of memory");
				return;
			}
			memcpy(payload, p + 5, len);
			evbuffer_drain(in, 5 + (size_t)len);
			login_msg(s, type, payload, len);
			if (payload != small)
				free(payload);
			continue;
		}
		if (!relay_msg(s, in, type, len))
			return;
	}
	if (fwd > 0)
		move_out(s, in, fwd, false);
	struct client *c = s->client;
	if (c && evbuffer_get_length(client_output(c)) > RELAY_HIGH_WATER)
		bufferevent_disable(s->bev, EV_READ); /* client_write_cb re-enables */
}

static void server_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct server *s = arg;
	s->last_used_ms = sr_mono_ms();
	server_process_input(s);
}

static void server_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct server *s = arg;
	fio_written(&s->fio);
	if (s->client)
		client_resume(s->client);
}

static void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct server *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* Only user and database: everything else is the client's session
		 * state, replayed with SET when a client is attached. */
		const char *kv[] = { "user", s->pool->user, "database", s->pool->db, NULL };
		s->state = SRV_LOGIN;
		evutil_make_socket_closeonexec(bufferevent_getfd(s->bev));
		int one = 1;
		setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pw_write_startup(server_output(s), kv))
			login_failed(s, "53200", "out of memory");
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		char msg[512];
		int err = EVUTIL_SOCKET_ERROR();
		snprintf(msg, sizeof(msg), "%s backend %s:%s (shard %d %s): %s",
			 s->state == SRV_CONNECTING ? "could not connect to" : "lost connection to",
			 s->pool->host, s->pool->port, s->pool->shard_id,
			 backend_role_name((enum backend_role)s->pool->role),
			 (what & BEV_EVENT_TIMEOUT) ? "timeout"
			 : (what & BEV_EVENT_EOF)   ? "server closed the connection"
						    : evutil_socket_error_to_string(err));
		if (s->state == SRV_CONNECTING || s->state == SRV_LOGIN)
			login_failed(s, "08006", msg);
		else
			server_close(s, msg);
	}
}

struct server *server_connect(struct pool *p)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->w = p->w;
	s->pool = p;
	s->id = next_server_id++;
	s->state = SRV_CONNECTING;
	s->txstatus = 'I';
	s->created_ms = s->last_used_ms = sr_mono_ms();
	s->bev = bufferevent_socket_new(p->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev) {
		free(s);
		return NULL;
	}
	atomic_fetch_add(&n_servers, 1);
	bufferevent_setcb(s->bev, server_read_cb, server_write_cb, server_event_cb, s);
	bufferevent_set_max_single_read(s->bev, 256 * 1024);
	bufferevent_setwatermark(s->bev, EV_WRITE, RELAY_HIGH_WATER / 2, 0);
	int64_t to = p->w->cfg->server_connect_timeout_ms;
	if (to > 0) {
		struct timeval tv = { (time_t)(to / 1000), (suseconds_t)((to % 1000) * 1000) };
		bufferevent_set_timeouts(s->bev, &tv, &tv);
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect_hostname(s->bev, NULL, AF_UNSPEC, p->host, atoi(p->port)) != 0) {
		bufferevent_free(s->bev);
		atomic_fetch_sub(&n_servers, 1);
		free(s);
		return NULL;
	}
	worker_add_server(p->w, s);
	return s;
}

/* ---- cancel ------------------------------------------------------------ */

struct cancel_conn {
	struct bufferevent *bev;
};

static void cancel_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cancel_conn *cc = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	bufferevent_free(bev);
	free(cc);
}

static void cancel_write_cb(struct bufferevent *bev, void *arg)
{
	/* Request written; Postgres closes the connection when done. */
	(void)bev;
	(void)arg;
}

void server_send_cancel(struct worker *w, const char *host, const char *port, uint32_t pid,
			uint32_t secret)
{
	struct cancel_conn *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return;
	cc->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!cc->bev) {
		free(cc);
		return;
	}
	uint8_t pkt[16];
	pw_put_u32(pkt, 16);
	pw_put_u32(pkt + 4, PW_CANCEL_CODE);
	pw_put_u32(pkt + 8, pid);
	pw_put_u32(pkt + 12, secret);
	bufferevent_setcb(cc->bev, NULL, cancel_write_cb, cancel_event_cb, cc);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
	evbuffer_add(bufferevent_get_output(cc->bev), pkt, 16);
	if (bufferevent_socket_connect_hostname(cc->bev, NULL, AF_UNSPEC, host, atoi(port)) != 0) {
		bufferevent_free(cc->bev);
		free(cc);
	}
}
