/*
 * tls.c - client-side TLS (see router/tls.h).
 */
#include "router/tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "router/client.h"
#include "router/config.h"
#include "router/worker.h"

static SSL_CTX *ctx;

int tls_init(const struct config *cfg, struct sr_errmsg *em)
{
	if (cfg->client_tls_sslmode == CONFIG_SSLMODE_DISABLE)
		return 0;
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	if (!c)
		return sr_errmsg_set(em, SR_ENOMEM, "cannot create a TLS context");
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(c, cfg->client_tls_cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c) != 1) {
		char buf[256];
		ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
		SSL_CTX_free(c);
		return sr_errmsg_set(em, SR_EINVAL,
				     "client_tls_cert_file %s / client_tls_key_file %s: %s",
				     cfg->client_tls_cert_file, cfg->client_tls_key_file, buf);
	}
	ctx = c;
	return 0;
}

bool tls_available(void)
{
	return ctx != NULL;
}

bool tls_start(struct client *c)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl) {
		client_close(c, "cannot create a TLS session");
		return false;
	}
	if (evbuffer_add(bufferevent_get_output(c->bev), "S", 1) != 0) {
		SSL_free(ssl);
		client_close(c, "out of memory");
		return false;
	}
	struct bufferevent *f = bufferevent_openssl_filter_new(
		c->w->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!f) {
		SSL_free(ssl);
		client_close(c, "cannot start TLS");
		return false;
	}
	c->bev = f;
	c->tls = true;
	client_setup_bev(c);
	return true;
}
