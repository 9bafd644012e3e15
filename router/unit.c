/*
 * unit.c - route and forward one unit of client work (see router/unit.h).
 */
#include "router/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pg_query.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/admin.h"
#include "router/analyse.h"
#include "router/catwatch.h"
#include "router/client.h"
#include "router/config.h"
#include "router/funcs.h"
#include "router/keyextract.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/route.h"
#include "router/server.h"
#include "router/session.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/hash.h"

#define UNIT_MAX_BYTES (8u << 20) /* route a batch without Sync past this */


/* ---- framing ---------------------------------------------------------------- */

struct unit {
	size_t len;       /* bytes of the unit at the front of the input */
	char first;       /* type of the first message */
	bool simple;      /* Query or FunctionCall */
	bool ends_sync;
	bool ends_flush;
};

static bool is_extended(char t)
{
	return t == PW_FE_PARSE || t == PW_FE_BIND || t == PW_FE_DESCRIBE || t == PW_FE_EXECUTE ||
	       t == PW_FE_CLOSE || t == PW_FE_SYNC || t == PW_FE_FLUSH;
}

/* 1: a unit is complete; 0: need more bytes; -1: protocol error (closed). */
static int scan_unit(struct client *c, struct evbuffer *in, struct unit *u)
{
	size_t total = evbuffer_get_length(in), off = 0;
	size_t max = (size_t)c->w->cfg->max_packet_size;
	memset(u, 0, sizeof(*u));
	while (off + 5 <= total) {
		struct evbuffer_ptr ptr;
		uint8_t hdr[5];
		evbuffer_ptr_set(in, &ptr, off, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &ptr, hdr, 5);
		uint32_t l = pw_get_u32(hdr + 1);
		char type = (char)hdr[0];
		if (l < 4) {
			client_error(c, true, "08P01", "invalid message length", NULL, NULL);
			return -1;
		}
		if (l - 4 > max) {
			char msg[128];
			snprintf(msg, sizeof(msg), "message of %u bytes exceeds max_packet_size (%zu)",
				 l - 4, max);
			client_error(c, true, "08P01", msg, NULL, NULL);
			return -1;
		}
		if (off == 0)
			u->first = type;
		if (off > 0 && !is_extended(type))
			break; /* end the batch before a non-extended message */
		if (off + 1 + l > total)
			goto incomplete;
		off += 1 + (size_t)l;
		if (!is_extended(type)) {
			u->len = off;
			u->simple = type == PW_FE_QUERY || type == PW_FE_FUNCTION_CALL;
			return 1;
		}
		if (type == PW_FE_SYNC || type == PW_FE_FLUSH) {
			u->ends_sync = type == PW_FE_SYNC;
			u->ends_flush = type == PW_FE_FLUSH;
			u->len = off;
			return 1;
		}
	}
	if (off > 0 && off == total && total >= UNIT_MAX_BYTES) {
		u->len = off;
		return 1;
	}
	if (off > 0 && off < total && !is_extended(u->first))
		return 0;
	if (off > 0 && off + 5 <= total) {
		/* stopped before a non-extended message: the batch so far is a unit */
		u->len = off;
		return 1;
	}
incomplete:
	if (off > 0 && total >= UNIT_MAX_BYTES) {
		u->len = off;
		return 1;
	}
	return 0;
}

/* ---- local answers --------------------------------------------------------- */

static void drain_unit(struct client *c, const struct unit *u)
{
	evbuffer_drain(client_input(c), u->len);
}

static void reply_done(struct client *c, const struct unit *u, const char *tag)
{
	struct evbuffer *out = client_output(c);
	int rc = tag ? pw_write_command_complete(out, tag) : 0;
	if (!rc && (u->simple || u->ends_sync))
		rc = pw_write_ready(out, c->txstatus);
	if (rc)
		client_close(c, "out of memory");
}

/* Answer an extended batch that runs one statement locally: the responses
 * Postgres would send, with `tag` for the Execute. Consumes the unit. */
static void reply_ext(struct client *c, const struct unit *u, const uint8_t *data,
		      const char *tag)
{
	struct evbuffer *out = client_output(c);
	int rc = 0;
	for (size_t off = 0; off + 5 <= u->len && !rc;) {
		char type = (char)data[off];
		uint32_t l = pw_get_u32(data + off + 1) - 4;
		static const uint8_t no_params[2] = { 0, 0 };
		switch (type) {
		case PW_FE_PARSE: rc = pw_write_msg(out, PW_BE_PARSE_COMPLETE, NULL, 0); break;
		case PW_FE_BIND: rc = pw_write_msg(out, PW_BE_BIND_COMPLETE, NULL, 0); break;
		case PW_FE_DESCRIBE:
			if (l > 0 && data[off + 5] == 'S')
				rc = pw_write_msg(out, PW_BE_PARAM_DESC, no_params, 2);
			rc = rc ? rc : pw_write_msg(out, PW_BE_NO_DATA, NULL, 0);
			break;
		case PW_FE_EXECUTE: rc = pw_write_command_complete(out, tag); break;
		case PW_FE_CLOSE: rc = pw_write_msg(out, PW_BE_CLOSE_COMPLETE, NULL, 0); break;
		case PW_FE_SYNC: rc = pw_write_ready(out, c->txstatus); break;
		default: break;
		}
		off += 5 + (size_t)l;
	}
	drain_unit(c, u);
	if (rc)
		client_close(c, "out of memory");
}

/* Answer a unit locally with `tag`, simple or extended. */
static void local_done(struct client *c, const struct unit *u, const uint8_t *data,
		       const char *tag)
{
	if (u->simple) {
		drain_unit(c, u);
		reply_done(c, u, tag);
	} else {
		reply_ext(c, u, data, tag);
	}
}

/* Answer a unit with an error (the unit is consumed). */
static void reply_error(struct client *c, const struct unit *u, const char *sqlstate,
			const char *msg, const char *detail, const char *hint)
{
	worker_count_route_error(sqlstate);
	drain_unit(c, u);
	client_error(c, false, sqlstate, msg, detail, hint);
	if (!u->simple && !u->ends_sync)
		c->skip_to_sync = true;
	reply_done(c, u, NULL);
}

/* The transaction can no longer go on: roll it back where it runs. */
static void abort_transaction(struct client *c)
{
	if (c->server) {
		struct server *s = c->server;
		if (s->txstatus != 'I' &&
		    (pw_write_query(server_output(s), "ROLLBACK") || server_push_req(s, REQ_QUERY, true)))
			s->broken = true;
		client_detach_server(c);
	}
	free(c->held_begin);
	c->held_begin = NULL;
	session_drop_pending(c);
	c->tx_failed_local = true;
	c->in_tx = true;
	c->txstatus = 'E';
	c->state = CL_IDLE;
}

static bool set_hint(struct client *c, const struct analysis *a, const struct unit *u,
		     const uint8_t *data)
{
	char val[256];
	size_t vl = a->sr_value_len < sizeof(val) - 1 ? a->sr_value_len : sizeof(val) - 1;
	memcpy(val, a->sr_value ? a->sr_value : "", vl);
	val[vl] = '\0';
	/* strip one level of quotes */
	char *v = val;
	if (vl >= 2 && (v[0] == '\'' || v[0] == '"') && v[vl - 1] == v[0]) {
		v[vl - 1] = '\0';
		v++;
	}
	bool reset = a->sr_reset || strcasecmp(v, "default") == 0;
	if (analyse_name_is(a->sr_name, a->sr_name_len, "shard_key")) {
		free(c->hint_key);
		c->hint_key = reset ? NULL : strdup(v);
	} else if (analyse_name_is(a->sr_name, a->sr_name_len, "shard")) {
		char *end;
		long s = strtol(v, &end, 10);
		if (!reset && (*v == '\0' || *end != '\0' || s < 0 || s > INT32_MAX)) {
			reply_error(c, u, "22023", "invalid value for shardrouter.shard", NULL,
				    "Give a shard id, e.g. SET shardrouter.shard = 1.");
			return true;
		}
		c->hint_has_shard = !reset;
		c->hint_shard = (int32_t)s;
	} else {
		reply_error(c, u, "42704", "unrecognized configuration parameter", NULL,
			    "shardrouter knows shardrouter.shard_key and shardrouter.shard.");
		return true;
	}
	local_done(c, u, data, a->sr_reset ? "RESET" : "SET");
	return true;
}

static bool hold_append(struct client *c, const char *sql)
{
	size_t a = strlen(c->held_begin), b = strlen(sql);
	char *n = realloc(c->held_begin, a + b + 2);
	if (!n)
		return false;
	n[a] = ';';
	memcpy(n + a + 1, sql, b + 1);
	c->held_begin = n;
	return true;
}

/* The SQL of a single-statement unit (simple: the query; extended: the
 * bound statement's text). */
static const char *unit_sql(struct client *c, const uint8_t *data, const struct unit *u,
			    const struct analysis *a)
{
	if (u->simple)
		return (const char *)data + 5;
	const struct pstmt *p = session_find_stmt(c, a->ext_stmt);
	return p ? p->sql : NULL;
}

static bool end_held(struct client *c, const struct unit *u, const uint8_t *data, bool commit)
{
	free(c->held_begin);
	c->held_begin = NULL;
	if (commit)
		session_commit_pending(c);
	else
		session_drop_pending(c);
	c->in_tx = false;
	c->tx_read_only = false;
	c->txstatus = 'I';
	local_done(c, u, data, commit ? "COMMIT" : "ROLLBACK");
	return true;
}

/* Answers that need no server. True when the unit was consumed. */
static bool try_local(struct client *c, const struct unit *u, const uint8_t *data,
		      struct analysis *a)
{
	bool single = a->n_stmts == 1 && (u->simple || (a->n_execs == 1 && u->ends_sync));
	if (c->tx_failed_local) {
		if (single && (a->first == KX_STMT_ROLLBACK || a->first == KX_STMT_COMMIT)) {
			c->tx_failed_local = false;
			c->in_tx = false;
			c->txstatus = 'I';
			local_done(c, u, data, "ROLLBACK");
			return true;
		}
		reply_error(c, u, "25P02",
			    "current transaction is aborted, commands ignored until end of "
			    "transaction block",
			    NULL, NULL);
		return true;
	}
	if (a->sr_set) {
		if (!single) {
			reply_error(c, u, "0A000",
				    "SET shardrouter.* must be sent as a statement of its own", NULL,
				    NULL);
			return true;
		}
		return set_hint(c, a, u, data);
	}
	/* Local answers only when no server is busy for c (session pooling keeps
	 * an idle server attached between transactions). */
	if (c->server && !(server_queue_empty(c->server) && c->server->txstatus == 'I'))
		return false;
	if (u->simple && a->n_stmts == 0) {
		drain_unit(c, u);
		if (pw_write_msg(client_output(c), PW_BE_EMPTY_QUERY, NULL, 0))
			client_close(c, "out of memory");
		reply_done(c, u, NULL);
		return true;
	}
	if (!single)
		return false;
	const char *sql = unit_sql(c, data, u, a);
	if (!sql)
		return false;
	if (a->first == KX_STMT_BEGIN && !c->in_tx) {
		c->held_begin = strdup(sql);
		if (!c->held_begin) {
			client_close(c, "out of memory");
			return true;
		}
		c->in_tx = true;
		c->tx_read_only = a->begin_ro;
		c->txstatus = 'T';
		local_done(c, u, data, "BEGIN");
		return true;
	}
	if (!c->held_begin)
		return false;
	if (u->simple && (a->first == KX_STMT_SET || a->first == KX_STMT_RESET)) {
		for (int i = 0; i < a->n_sets; i++)
			if (session_note_set(c, a->sets[i].name, a->sets[i].name_len, a->sets[i].value,
					     a->sets[i].value_len))
				break;
		if (!hold_append(c, sql)) {
			client_close(c, "out of memory");
			return true;
		}
		local_done(c, u, data, a->first == KX_STMT_SET ? "SET" : "RESET");
		return true;
	}
	if (a->first == KX_STMT_COMMIT || a->first == KX_STMT_ROLLBACK)
		return end_held(c, u, data, a->first == KX_STMT_COMMIT);
	return false;
}

/*
 * A batch of only Parse (and Sync/Flush) messages with no server attached is
 * answered here: the statements are registered for re-preparing on demand
 * and checked with Postgres' own grammar (libpg_query), so syntax errors
 * still come back at Parse time; errors that need the catalog (unknown
 * table) come with the first execution instead. This keeps a prepare from
 * needing a pooled server - important inside a held transaction, where a
 * client that prepares synchronously could otherwise wait on its own pool.
 */
static bool parse_only(const uint8_t *data, size_t len)
{
	bool any = false;
	for (size_t off = 0; off + 5 <= len;) {
		char t = (char)data[off];
		if (t == PW_FE_PARSE)
			any = true;
		else if (t != PW_FE_SYNC && t != PW_FE_FLUSH)
			return false;
		off += 1 + (size_t)pw_get_u32(data + off + 1);
	}
	return any;
}

static bool local_prepare(struct client *c, const struct unit *u, const uint8_t *data)
{
	struct evbuffer *out = client_output(c);
	int rc = 0;
	bool failed = false;
	for (size_t off = 0; off + 5 <= u->len && !rc;) {
		char t = (char)data[off];
		uint32_t l = pw_get_u32(data + off + 1) - 4;
		if (t == PW_FE_PARSE && !failed) {
			struct pw_reader rd;
			pw_reader_init(&rd, data + off + 5, l);
			(void)pw_read_cstr(&rd, NULL);
			const char *sql = pw_read_cstr(&rd, NULL);
			PgQueryParseResult pr = pg_query_parse(sql);
			if (pr.error) {
				failed = true;
				rc = pw_write_error(out, false, "ERROR", "42601", pr.error->message, NULL,
						    NULL);
				c->tx_error = true;
			} else {
				rc = pw_write_msg(out, PW_BE_PARSE_COMPLETE, NULL, 0);
			}
			pg_query_free_parse_result(pr);
		} else if (t == PW_FE_SYNC) {
			failed = false;
			rc = pw_write_ready(out, c->txstatus);
		}
		off += 5 + (size_t)l;
	}
	drain_unit(c, u);
	if (!u->ends_sync && failed)
		c->skip_to_sync = true;
	if (rc)
		client_close(c, "out of memory");
	return true;
}

/* ---- attach and forward ----------------------------------------------------- */

/* Send the held BEGIN (and the SETs that followed it) ahead of the unit. */
static void inject_held(struct client *c, struct server *s)
{
	if (!c->held_begin)
		return;
	if (pw_write_query(server_output(s), c->held_begin) || server_push_req(s, REQ_QUERY, true))
		s->broken = true;
	free(c->held_begin);
	c->held_begin = NULL;
}

void unit_attach(struct client *c, struct server *s)
{
	c->server = s;
	s->client = c;
	s->state = SRV_ACTIVE;
	c->state = CL_ACTIVE;
	struct topo *t = c->w->topo;
	if (t && s->pool->backend < t->n_backends) {
		s->live = t->backends[s->pool->backend].live;
		atomic_fetch_add(&s->live->outstanding, 1);
	}
	char *sql = NULL;
	struct evbuffer *out = server_output(s);
	if (session_sync_sql(c, s, &sql) == 0 && sql && *sql) {
		if (pw_write_query(out, sql) || server_push_req(s, REQ_QUERY, true))
			s->broken = true;
	}
	free(sql);
	if (!c->defer_held)
		inject_held(c, s);
}

/* Make sure server s has the client's statement `name` as the client knows it. */
static int ensure_stmt(struct client *c, struct server *s, const char *name)
{
	struct pstmt *p = session_find_stmt(c, name);
	if (!p)
		return 0;
	const struct srv_stmt *have = server_find_stmt(s, name);
	if (have && have->fingerprint == p->fingerprint)
		return 0;
	struct evbuffer *out = server_output(s);
	int rc = 0;
	if (have && *name) {
		rc = pw_write_close_stmt(out, name);
		rc = rc ? rc : server_push_req(s, REQ_CLOSE, true);
	}
	rc = rc ? rc : session_write_parse(out, p);
	rc = rc ? rc : server_push_req(s, REQ_PARSE, true);
	rc = rc ? rc : server_add_stmt(s, name, p->fingerprint);
	return rc;
}

static void note_bind_set(struct client *c, const char *stmt)
{
	struct pstmt *p = session_find_stmt(c, stmt);
	if (!p || p->kx_gen != c->w->topo_gen)
		return;
	const struct kx_result *r = &p->kx;
	/* r is the statement's cached analysis: its name_buf lives as long as p */
	if ((r->stmt != KX_STMT_SET && r->stmt != KX_STMT_RESET) || r->set_local || !r->set_name)
		return;
	if (session_note_set(c, r->set_name, r->set_name_len,
			     r->stmt == KX_STMT_SET ? r->set_value : NULL,
			     r->stmt == KX_STMT_SET ? r->set_value_len : 0))
		log_warn("client %u: out of memory tracking SET", c->id);
}

/* Per-message bookkeeping before moving it to the server. */
static int forward_prepare(struct client *c, struct server *s, char type, const uint8_t *p,
			   uint32_t len)
{
	struct pw_reader rd;
	pw_reader_init(&rd, p, len);
	switch (type) {
	case PW_FE_QUERY:
	case PW_FE_FUNCTION_CALL:
		server_forget_stmt(s, ""); /* a simple query replaces the unnamed statement */
		return server_push_req(s, REQ_QUERY, false);
	case PW_FE_PARSE: {
		const char *name = pw_read_cstr(&rd, NULL);
		struct pstmt *ps = session_find_stmt(c, name);
		int rc = 0;
		if (*name && server_find_stmt(s, name)) {
			rc = pw_write_close_stmt(server_output(s), name);
			rc = rc ? rc : server_push_req(s, REQ_CLOSE, true);
		}
		rc = rc ? rc : server_push_req(s, REQ_PARSE, false);
		if (!rc && ps)
			rc = server_add_stmt(s, name, ps->fingerprint);
		return rc;
	}
	case PW_FE_BIND: {
		(void)pw_read_cstr(&rd, NULL);
		const char *stmt = pw_read_cstr(&rd, NULL);
		int rc = ensure_stmt(c, s, stmt);
		note_bind_set(c, stmt);
		return rc ? rc : server_push_req(s, REQ_BIND, false);
	}
	case PW_FE_DESCRIBE: {
		uint8_t what = pw_read_u8(&rd);
		const char *name = pw_read_cstr(&rd, NULL);
		int rc = what == 'S' ? ensure_stmt(c, s, name) : 0;
		return rc ? rc : server_push_req(s, REQ_DESCRIBE, false);
	}
	case PW_FE_CLOSE: {
		uint8_t what = pw_read_u8(&rd);
		const char *name = pw_read_cstr(&rd, NULL);
		if (what == 'S') {
			session_remove_stmt(c, name);
			server_forget_stmt(s, name);
		}
		return server_push_req(s, REQ_CLOSE, false);
	}
	case PW_FE_EXECUTE:
		return server_push_req(s, REQ_EXECUTE, false);
	case PW_FE_SYNC:
		return server_push_req(s, REQ_SYNC, false);
	default:
		return 0; /* Flush, CopyData/Done/Fail: no response of their own */
	}
}

static void forward_unit(struct client *c, const struct unit *u, const struct analysis *a)
{
	struct server *s = c->server;
	struct evbuffer *in = client_input(c);
	struct evbuffer *out = server_output(s);
	for (int i = 0; a && i < a->n_sets; i++)
		if (session_note_set(c, a->sets[i].name, a->sets[i].name_len, a->sets[i].value,
				     a->sets[i].value_len))
			break;
	size_t left = u->len;
	while (left > 0) {
		uint8_t hdr[5];
		evbuffer_copyout(in, hdr, 5);
		size_t total = 1 + (size_t)pw_get_u32(hdr + 1);
		char type = (char)hdr[0];
		if (type != PW_FE_EXECUTE && type != PW_FE_SYNC && type != PW_FE_FLUSH) {
			uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
			if (forward_prepare(c, s, type, p + 5, (uint32_t)(total - 5))) {
				s->broken = true;
				client_error(c, true, "53200", "out of memory", NULL, NULL);
				return;
			}
		} else if (forward_prepare(c, s, type, NULL, 0)) {
			s->broken = true;
			client_error(c, true, "53200", "out of memory", NULL, NULL);
			return;
		}
		evbuffer_remove_buffer(in, out, total);
		left -= total;
	}
	c->n_queries++;
	s->pool->n_queries++;
	if (evbuffer_get_length(out) > (4u << 20))
		client_read_enable(c, false); /* server_write_cb resumes */
}

/* Copy-protocol and other single messages while a server is attached. */
static bool forward_raw(struct client *c, const struct unit *u)
{
	if (!c->server) {
		/* Postgres ignores CopyData/CopyDone/CopyFail outside COPY. */
		drain_unit(c, u);
		return true;
	}
	evbuffer_remove_buffer(client_input(c), server_output(c->server), u->len);
	return true;
}

/* ---- routing ------------------------------------------------------------------ */

static bool route_failed(struct client *c, const struct unit *u, const struct analysis *a)
{
	if (c->server && !server_queue_empty(c->server)) {
		c->blocked = true; /* answer in order, after what is in flight */
		return false;
	}
	if (c->in_tx)
		abort_transaction(c);
	reply_error(c, u, a->ru.sqlstate, a->ru.message, NULL, a->ru.hint);
	return true;
}

static bool acquire(struct client *c, int backend)
{
	struct pool *p = worker_pool(c->w, backend, c->user, c->db);
	if (!p) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return false;
	}
	struct server *s = pool_acquire(p, c);
	if (s) {
		unit_attach(c, s);
		return true;
	}
	c->state = CL_WAIT;
	client_read_enable(c, false);
	return false;
}

/*
 * A write to a range that a move has frozen. A new transaction waits (like
 * PAUSE) until the map changes - cutover makes the target the owner, or an
 * abort unfreezes - and is refused after freeze_timeout_ms. A transaction
 * that already runs cannot wait for a cutover that would move its range
 * away: it is refused at once with a retryable error. Returns true when the
 * unit may go on (the range is not frozen any more).
 */
static bool frozen_check(struct client *c, const struct unit *u, const struct analysis *a,
			 bool in_bound_tx)
{
	char lo[17], msg[320];
	sm_hash_format(a->ru.frozen_lo, lo);
	if (in_bound_tx) {
		snprintf(msg, sizeof(msg),
			 "key range %s is frozen for a move; this transaction was rolled back", lo);
		abort_transaction(c);
		reply_error(c, u, "40001", msg, NULL, "Retry the transaction.");
		return false;
	}
	uint64_t now = sr_mono_ms();
	if (!c->frozen_since_ms)
		c->frozen_since_ms = now;
	if (now - c->frozen_since_ms > (uint64_t)c->w->cfg->freeze_timeout_ms) {
		c->frozen_since_ms = 0;
		snprintf(msg, sizeof(msg),
			 "write on key range %s waited longer than freeze_timeout_ms (%lld ms) for a "
			 "move to finish; nothing was applied",
			 lo, (long long)c->w->cfg->freeze_timeout_ms);
		if (c->held_begin || c->in_tx)
			abort_transaction(c);
		reply_error(c, u, "55P03", msg, NULL, "Retry the transaction.");
		return false;
	}
	c->paused_wait = true; /* kick_cb re-runs the unit on a map change or each second */
	client_read_enable(c, false);
	return false;
}

/*
 * The guards every write by key passes before it is sent anywhere (SPEC 3,
 * 4): the catalog lease, and frozen ranges. `bound`: the transaction already
 * runs on a server (its earlier statements were sent), so a refusal rolls it
 * back. Returns true when the unit may go on; false when it was answered
 * with an error or waits (paused_wait / blocked).
 */
static bool write_guard(struct client *c, const struct unit *u, const struct analysis *a,
			const struct topo *t, bool bound)
{
	bool lease = !a->ru.has_hash || catwatch_lease_ok();
	if (lease && !a->ru.frozen && (!a->ru.has_hash || catwatch_lease_covers(t->map->epoch)))
		return true;
	if (bound && !server_queue_empty(c->server)) {
		c->blocked = true; /* answer in order, after what is in flight */
		return false;
	}
	if (!lease) {
		/* Without the catalog for longer than catalog_lease_ms the router
		 * cannot know whether this range moved: no writes to it. */
		if (c->in_tx)
			abort_transaction(c);
		reply_error(c, u, "25006",
			    "shardrouter cannot confirm the owner of this key's range: the catalog "
			    "has been unreachable for longer than catalog_lease_ms; writes are "
			    "refused, reads go on",
			    NULL, "Check the catalog database and the router log.");
		return false;
	}
	if (a->ru.frozen)
		return frozen_check(c, u, a, bound);
	/* The lease was just regained with a newer map than this worker routes
	 * by: wait for it (the watcher kicks every worker after publishing). */
	c->paused_wait = true;
	client_read_enable(c, false);
	return false;
}

/* Decide where the unit runs; attach a server if needed. True when c has
 * the right server attached and the unit can be forwarded now. */
static bool place_unit(struct client *c, const struct unit *u, const struct analysis *a)
{
	struct topo *t = c->w->topo;
	struct server *s = c->server;
	bool in_tx = c->in_tx || (s && s->txstatus != 'I');
	/* A batch that only prepares/describes (no Execute) runs nothing: inside
	 * a held transaction it must not decide the transaction's shard, so it
	 * goes to the home shard outside the transaction. */
	c->defer_held = !u->simple && a->n_execs == 0 && c->held_begin && !s;
	if (c->defer_held) {
		int hb = route_pick_backend(t, t->home_shard, true, 0);
		return hb >= 0 && acquire(c, hb);
	}
	int32_t shard = a->ru.has_shard ? a->ru.shard : s ? s->pool->shard_id : t->home_shard;
	bool primary = a->ru.needs_primary || (a->has_begin && !a->begin_ro) ||
		       (in_tx && !c->tx_read_only);
	/* A held BEGIN is not bound to the attached (session) server yet. */
	bool bound = s && in_tx && !c->held_begin;
	log_debug("client %u: route unit=%c stmts=%d execs=%d shard=%d primary=%d in_tx=%d "
		  "attached=%d reason=\"%s\"",
		  c->id, u->first, a->n_stmts, a->n_execs, shard, primary, in_tx, s != NULL,
		  a->ru.reason ? a->ru.reason : "");
	/* Inside a bound transaction only statements that write are guarded
	 * (its reads of a frozen range go on); a new transaction that will run
	 * on the primary is guarded as a whole. Checked before anything below
	 * may forward the unit to the server already attached. */
	bool guarded = bound ? a->ru.needs_primary : primary;
	if (guarded && !write_guard(c, u, a, t, bound))
		return false;
	c->frozen_since_ms = 0;
	if (s) {
		bool same = s->pool->shard_id == shard;
		bool role_ok = s->pool->role == ROLE_PRIMARY || !primary;
		if (c->held_begin && same && role_ok && server_queue_empty(s)) {
			inject_held(c, s);
			return true;
		}
		if (bound && !same) {
			if (!server_queue_empty(s)) {
				c->blocked = true;
				return false;
			}
			char msg[320];
			snprintf(msg, sizeof(msg),
				 "transaction started on shard %d cannot touch shard %d; it was rolled "
				 "back",
				 s->pool->shard_id, shard);
			abort_transaction(c);
			reply_error(c, u, "0A000", msg, NULL,
				    "Keep each transaction on one shard (same key range).");
			return false;
		}
		if (bound || (same && role_ok && !c->held_begin))
			return true;
		if (!server_queue_empty(s) || s->txstatus != 'I') {
			c->blocked = true;
			return false;
		}
		client_detach_server(c);
		c->state = CL_IDLE;
	}
	if (worker_shard_paused(shard)) {
		/* PAUSE: the transaction starts after RESUME (kick_cb re-runs it). */
		c->paused_wait = true;
		client_read_enable(c, false);
		return false;
	}
	/* A range a move cut over has a read LSN: replicas serve its keyed reads
	 * only once they have replayed past it (like read_your_writes). */
	int64_t min_lsn = client_ryw_lsn(c, shard);
	if (!primary && a->ru.read_lsn) {
		int64_t rl = a->ru.read_lsn > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)a->ru.read_lsn;
		if (rl > min_lsn)
			min_lsn = rl;
	}
	int b = route_pick_backend(t, shard, primary, min_lsn);
	if (b < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "shard %d is not in the shard map", shard);
		reply_error(c, u, "08006", msg, NULL, NULL);
		return false;
	}
	return acquire(c, b);
}

static bool admin_unit(struct client *c, const struct unit *u, const uint8_t *data)
{
	if (u->first != PW_FE_QUERY) {
		reply_error(c, u, "0A000", "the admin console speaks the simple query protocol only",
			    NULL, NULL);
		return true;
	}
	uint32_t len = pw_get_u32(data + 1) - 4;
	if (len == 0 || data[5 + len - 1] != '\0') {
		client_error(c, true, "08P01", "invalid Query message", NULL, NULL);
		return false;
	}
	admin_query(c, (const char *)data + 5);
	drain_unit(c, u);
	return c->state != CL_CLOSING;
}

static bool skip_until_sync(struct client *c)
{
	struct evbuffer *in = client_input(c);
	char type;
	uint32_t len;
	int rc;
	while ((rc = pw_peek(in, (size_t)c->w->cfg->max_packet_size, &type, &len)) == 1) {
		evbuffer_drain(in, 5 + (size_t)len);
		if (type == PW_FE_SYNC) {
			c->skip_to_sync = false;
			if (pw_write_ready(client_output(c), c->txstatus))
				client_close(c, "out of memory");
			return c->state != CL_CLOSING;
		}
	}
	if (rc < 0)
		client_error(c, true, "08P01", "invalid message length", NULL, NULL);
	return false;
}

bool unit_step(struct client *c)
{
	if (c->skip_to_sync && !skip_until_sync(c))
		return false;
	struct evbuffer *in = client_input(c);
	struct unit u;
	int rc = scan_unit(c, in, &u);
	if (rc <= 0)
		return false;
	const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)u.len);
	switch (u.first) {
	case PW_FE_TERMINATE:
		client_close(c, "client sent Terminate");
		return false;
	case PW_FE_COPY_DATA:
	case PW_FE_COPY_DONE:
	case PW_FE_COPY_FAIL:
		return forward_raw(c, &u);
	case PW_FE_QUERY:
	case PW_FE_FUNCTION_CALL:
	case PW_FE_PARSE:
	case PW_FE_BIND:
	case PW_FE_DESCRIBE:
	case PW_FE_EXECUTE:
	case PW_FE_CLOSE:
	case PW_FE_SYNC:
	case PW_FE_FLUSH:
		break;
	default: {
		char msg[64];
		snprintf(msg, sizeof(msg), "invalid frontend message type %d", (int)(uint8_t)u.first);
		client_error(c, true, "08P01", msg, NULL, NULL);
		return false;
	}
	}
	if (c->admin)
		return admin_unit(c, &u, data);
	worker_refresh(c->w);
	struct analysis a;
	memset(&a, 0, sizeof(a));
	route_unit_init(&a.ru);
	bool ok = u.first == PW_FE_QUERY ? analyse_query(c, data + 5, pw_get_u32(data + 1) - 4, &a)
		  : u.first == PW_FE_FUNCTION_CALL ? true
						   : analyse_extended(c, data, u.len, &a);
	if (!ok)
		return false;
	if (u.first == PW_FE_FUNCTION_CALL)
		a.ru.needs_primary = true;
	/* Wait for what must finish first: the answer to the read_your_writes
	 * question (the next unit may start a transaction elsewhere), or
	 * responses due before a local answer. */
	if (c->server && !server_queue_empty(c->server) &&
	    (c->ryw_pending || c->tx_failed_local || a.sr_set)) {
		c->blocked = true;
		return false;
	}
	if (try_local(c, &u, data, &a))
		return c->state != CL_CLOSING;
	if (!c->server && !u.simple && !a.ru.error && parse_only(data, u.len))
		return local_prepare(c, &u, data) && c->state != CL_CLOSING;
	if (a.unsupported) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%s is not supported in transaction pooling mode",
			 a.unsupported);
		a.ru.error = true;
		memcpy(a.ru.sqlstate, "0A000", 6);
		snprintf(a.ru.message, sizeof(a.ru.message), "%s", msg);
		snprintf(a.ru.hint, sizeof(a.ru.hint),
			 "The next transaction may run on another server connection.");
	}
	if (a.ru.error)
		return route_failed(c, &u, &a) && c->state != CL_CLOSING;
	if (!place_unit(c, &u, &a))
		/* answered with an error: go on; waiting, paused or blocked: stop */
		return !c->blocked && !c->paused_wait &&
		       (c->state == CL_IDLE || c->state == CL_ACTIVE);
	if (c->server && c->server->pool->role == ROLE_PRIMARY &&
	    (a.ru.needs_primary || c->in_tx || a.has_begin))
		c->tx_wrote = true;
	forward_unit(c, &u, &a);
	atomic_fetch_add_explicit(&g_shared.stat_units, 1, memory_order_relaxed);
	return c->state != CL_CLOSING;
}
