/*
 * startup.c - startup packet, client authentication and login
 * (see router/startup.h).
 */
#include "router/startup.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "router/auth.h"
#include "router/cancel.h"
#include "router/client.h"
#include "router/config.h"
#include "router/pgwire.h"
#include "router/pool.h"
#include "router/route.h"
#include "router/topo.h"
#include "router/worker.h"
#include "router/session.h"
#include "router/tls.h"

static bool user_in(const struct config_list *l, const char *user)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i], user) == 0)
			return true;
	return false;
}

static void send_negotiate(struct client *c, const char *const *unknown, int n)
{
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return;
	uint8_t v[8];
	pw_put_u32(v, 0); /* newest minor we support: 3.0 */
	pw_put_u32(v + 4, (uint32_t)n);
	evbuffer_add(b, v, 8);
	for (int i = 0; i < n; i++)
		evbuffer_add(b, unknown[i], strlen(unknown[i]) + 1);
	size_t len = evbuffer_get_length(b);
	uint8_t *p = evbuffer_pullup(b, -1);
	if (pw_write_msg(client_output(c), PW_BE_NEGOTIATE, p, len))
		log_warn("client %u: out of memory", c->id);
	evbuffer_free(b);
}

/* Parse the parameter list of a v3 startup packet. */
static bool parse_params(struct client *c, struct pw_reader *r, int minor)
{
	const char *unknown[16];
	int n_unknown = 0;
	while (pw_reader_left(r) > 1) {
		const char *k = pw_read_cstr(r, NULL);
		const char *v = pw_read_cstr(r, NULL);
		if (r->bad)
			break;
		if (strcmp(k, "user") == 0)
			snprintf(c->user, sizeof(c->user), "%s", v);
		else if (strcmp(k, "database") == 0)
			snprintf(c->db, sizeof(c->db), "%s", v);
		else if (strcmp(k, "replication") == 0) {
			if (strcmp(v, "false") != 0 && strcmp(v, "0") != 0 && strcmp(v, "off") != 0) {
				client_error(c, true, "08P01",
					     "replication connections are not supported by shardrouter",
					     NULL, "Connect to the shard's primary directly.");
				return false;
			}
		} else if (strncmp(k, "_pq_.", 5) == 0) {
			if (n_unknown < 16)
				unknown[n_unknown++] = k;
		} else if (strcmp(k, "options") == 0) {
			if (*v) {
				client_error(c, true, "08P01",
					     "startup parameter \"options\" is not supported by "
					     "shardrouter",
					     NULL, "Use SET after connecting instead of PGOPTIONS.");
				return false;
			}
		} else if (session_set_startup_param(c, k, v) != 0) {
			client_error(c, true, "53200", "out of memory", NULL, NULL);
			return false;
		}
	}
	if (r->bad || pw_reader_left(r) != 1) {
		client_error(c, true, "08P01", "invalid startup packet layout", NULL, NULL);
		return false;
	}
	if (!c->user[0]) {
		client_error(c, true, "28000", "no PostgreSQL user name specified in startup packet",
			     NULL, NULL);
		return false;
	}
	if (!c->db[0])
		snprintf(c->db, sizeof(c->db), "%s", c->user);
	if (minor > 0 || n_unknown > 0)
		send_negotiate(c, unknown, n_unknown);
	return true;
}

static bool begin_auth(struct client *c);

/* Returns true to continue reading, false when closed. */
static bool handle_startup(struct client *c)
{
	struct evbuffer *in = client_input(c);
	while (c->state == CL_STARTUP) {
		uint8_t hdr[8];
		if (evbuffer_copyout(in, hdr, 8) < 8)
			return true;
		uint32_t len = pw_get_u32(hdr), code = pw_get_u32(hdr + 4);
		if (len < PW_MIN_STARTUP_LEN || len > PW_MAX_STARTUP_LEN) {
			client_error(c, true, "08P01", "invalid length of startup packet", NULL, NULL);
			return false;
		}
		if (evbuffer_get_length(in) < len)
			return true;
		if (code == PW_SSL_CODE || code == PW_GSSENC_CODE) {
			if (len != 8) {
				client_error(c, true, "08P01", "invalid length of SSL request", NULL, NULL);
				return false;
			}
			evbuffer_drain(in, 8);
			if (code == PW_SSL_CODE && tls_available() && !c->tls) {
				if (evbuffer_get_length(in) > 0) {
					/* bytes after SSLRequest before the handshake: not TLS */
					client_close(c, "data after SSLRequest");
					return false;
				}
				return tls_start(c);
			}
			/* GSSAPI never; TLS when not configured: 'N' and go on in clear. */
			evbuffer_add(client_output(c), "N", 1);
			continue;
		}
		if (code == PW_CANCEL_CODE) {
			uint8_t body[16];
			if (len != 16 || evbuffer_remove(in, body, 16) != 16) {
				client_close(c, "bad cancel request");
				return false;
			}
			cancel_request(c->w, pw_get_u32(body + 8), pw_get_u32(body + 12));
			client_close(c, "cancel request handled");
			return false;
		}
		if (code >> 16 != 3) {
			client_error(c, true, "0A000", "unsupported frontend protocol", NULL,
				     "shardrouter speaks protocol 3.0.");
			return false;
		}
		if (!c->tls && c->w->cfg->client_tls_sslmode == CONFIG_SSLMODE_REQUIRE &&
		    code != PW_CANCEL_CODE) {
			client_error(c, true, "28000", "TLS is required (client_tls_sslmode = require)",
				     NULL, "Connect with sslmode=require.");
			return false;
		}
		uint8_t *p = evbuffer_pullup(in, len);
		struct pw_reader r;
		pw_reader_init(&r, p + 8, len - 8);
		bool ok = parse_params(c, &r, (int)(code & 0xffff));
		evbuffer_drain(in, len);
		if (!ok)
			return false;
		return begin_auth(c);
	}
	return true;
}

static const struct auth_user_entry *find_user(struct client *c)
{
	if (!c->w->users || !c->w->users->list)
		return NULL;
	return auth_userlist_find(c->w->users->list, c->user);
}

static void auth_failed(struct client *c, const char *why)
{
	log_info("client %u: authentication failed user=%s db=%s peer=%s reason=\"%s\"", c->id,
		 c->user, c->db, c->peer, why);
	char msg[160];
	snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", c->user);
	client_error(c, true, "28P01", msg, NULL, NULL);
}

static void auth_ok(struct client *c);

static bool begin_auth(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	c->admin = strcmp(c->db, "shardrouter") == 0;
	if (c->admin) {
		c->admin_write = user_in(&cfg->admin_users, c->user);
		if (!c->admin_write && !user_in(&cfg->stats_users, c->user)) {
			client_error(c, true, "28000",
				     "not allowed to connect to the admin console", NULL,
				     "Add the user to admin_users or stats_users.");
			return false;
		}
	}
	if (cfg->auth_type == CONFIG_AUTH_TRUST) {
		auth_ok(c);
		return c->state != CL_CLOSING;
	}
	const struct auth_user_entry *e = find_user(c);
	if (!e) {
		auth_failed(c, "user not in auth_file");
		return false;
	}
	c->state = CL_AUTH;
	c->auth_step = 0;
	if (cfg->auth_type == CONFIG_AUTH_MD5) {
		if (auth_md5_salt(c->md5_salt) || pw_write_auth(client_output(c), PW_AUTH_MD5, c->md5_salt, 4)) {
			client_error(c, true, "53200", "out of memory", NULL, NULL);
			return false;
		}
		return true;
	}
	struct sr_errmsg em;
	if (auth_scram_server_new(e, &c->scram, &em)) {
		auth_failed(c, em.text);
		return false;
	}
	size_t ml;
	const uint8_t *mech = auth_sasl_mechanism_list(&ml);
	if (pw_write_auth(client_output(c), PW_AUTH_SASL, mech, ml)) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return false;
	}
	return true;
}

static bool auth_scram_step(struct client *c, const uint8_t *p, size_t len)
{
	struct sr_errmsg em;
	const uint8_t *out;
	size_t out_len;
	if (c->auth_step == 0) {
		const char *mech;
		const uint8_t *data;
		size_t dl;
		if (auth_sasl_initial_parse(p, len, &mech, &data, &dl, &em) ||
		    auth_scram_server_handle_initial(c->scram, mech, data, dl, &out, &out_len, &em)) {
			auth_failed(c, em.text);
			return false;
		}
		c->auth_step = 1;
		if (pw_write_auth(client_output(c), PW_AUTH_SASL_CONTINUE, out, out_len))
			return false;
		return true;
	}
	if (auth_scram_server_handle_final(c->scram, p, len, &out, &out_len, &em)) {
		auth_failed(c, em.text);
		return false;
	}
	if (pw_write_auth(client_output(c), PW_AUTH_SASL_FINAL, out, out_len))
		return false;
	auth_ok(c); /* (takes the pool's SCRAM keys from c->scram) */
	auth_scram_server_free(c->scram);
	c->scram = NULL;
	return c->state != CL_CLOSING;
}

static bool handle_auth(struct client *c)
{
	struct evbuffer *in = client_input(c);
	char type;
	uint32_t len;
	int rc = pw_peek(in, 8192, &type, &len);
	if (rc == 0)
		return true;
	if (rc < 0 || type != PW_FE_PASSWORD) {
		client_error(c, true, "08P01", "expected password response", NULL, NULL);
		return false;
	}
	evbuffer_drain(in, 5);
	uint8_t *p = evbuffer_pullup(in, len);
	bool ok;
	if (c->w->cfg->auth_type == CONFIG_AUTH_MD5) {
		struct sr_errmsg em;
		const struct auth_user_entry *e = find_user(c);
		ok = len > 0 && p[len - 1] == '\0' && e &&
		     auth_md5_verify(e, c->user, c->md5_salt, (const char *)p, &em) == 0;
		evbuffer_drain(in, len);
		if (!ok) {
			auth_failed(c, "md5 response did not match");
			return false;
		}
		auth_ok(c);
		return c->state != CL_CLOSING;
	}
	ok = auth_scram_step(c, p, len);
	evbuffer_drain(in, len);
	return ok;
}

bool startup_step(struct client *c)
{
	switch (c->state) {
	case CL_STARTUP:
		return handle_startup(c);
	case CL_AUTH:
		return handle_auth(c);
	case CL_LOGIN:
	case CL_IDLE:
	case CL_WAIT:
	case CL_ACTIVE:
	case CL_CLOSING:
		return true;
	}
	return true;
}

static void new_cancel_key(struct client *c)
{
	uint32_t secret;
	if (RAND_bytes((unsigned char *)&secret, sizeof(secret)) != 1)
		secret = (uint32_t)random();
	c->key_pid = ((uint32_t)c->w->id << 24) | (c->id & 0xffffffu);
	c->key_secret = secret;
}

static void auth_ok(struct client *c)
{
	if (pw_write_auth(client_output(c), PW_AUTH_OK, NULL, 0)) {
		client_close(c, "out of memory");
		return;
	}
	new_cancel_key(c);
	log_info("client %u: login user=%s db=%s peer=%s%s", c->id, c->user, c->db, c->peer,
		 c->admin ? " admin=1" : "");
	if (c->admin) {
		static const char *const ps[][2] = {
			{ "server_version", "15.0 (shardrouter)" }, { "server_encoding", "UTF8" },
			{ "client_encoding", "UTF8" }, { "DateStyle", "ISO, MDY" },
			{ "integer_datetimes", "on" }, { "standard_conforming_strings", "on" },
			{ "application_name", "" },
		};
		int rc = 0;
		for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]) && !rc; i++)
			rc = pw_write_param_status(client_output(c), ps[i][0], ps[i][1]);
		rc = rc ? rc : pw_write_key_data(client_output(c), c->key_pid, c->key_secret);
		rc = rc ? rc : pw_write_ready(client_output(c), 'I');
		if (rc) {
			client_close(c, "out of memory");
			return;
		}
		c->txstatus = 'I';
		c->state = CL_IDLE;
		return;
	}
	/* Learn the server parameters from the home shard's primary pool. */
	struct topo *t = c->w->topo;
	if (!t) {
		client_error(c, true, "08006", "no shard map loaded", NULL,
			     "Check the router log: the catalog could not be read.");
		return;
	}
	int b = route_home_backend(t);
	struct pool *p = worker_pool(c->w, b, c->user, c->db);
	if (!p) {
		client_error(c, true, "53200", "out of memory", NULL, NULL);
		return;
	}
	uint8_t ck[32], sk[32];
	if (c->scram && !p->has_keys && auth_scram_server_client_key(c->scram, ck) == 0 &&
	    auth_scram_server_server_key(c->scram, sk) == 0) {
		memcpy(p->client_key, ck, 32);
		memcpy(p->server_key, sk, 32);
		p->has_keys = true;
	}
	if (p->n_ps > 0) {
		startup_finish(c);
		return;
	}
	c->state = CL_LOGIN;
	struct server *s = pool_acquire(p, c);
	if (s)
		startup_login_ready(c, s);
}

void startup_login_ready(struct client *c, struct server *s)
{
	struct pool *p = s->pool;
	pool_release(p, s);
	if (p->n_ps == 0) {
		client_error(c, true, "08006", "server login gave no parameters", NULL, NULL);
		return;
	}
	startup_finish(c);
}

void startup_finish(struct client *c)
{
	struct topo *t = c->w->topo;
	struct pool *p = worker_pool(c->w, route_home_backend(t), c->user, c->db);
	struct evbuffer *out = client_output(c);
	for (int i = 0; p && i < p->n_ps; i++) {
		const char *v = session_startup_value(c, p->ps[i].name);
		if (pw_write_param_status(out, p->ps[i].name, v ? v : p->ps[i].value)) {
			client_close(c, "out of memory");
			return;
		}
	}
	if (pw_write_key_data(out, c->key_pid, c->key_secret) || pw_write_ready(out, 'I')) {
		client_close(c, "out of memory");
		return;
	}
	c->txstatus = 'I';
	c->state = CL_IDLE;
}
