/*
 * tls.h - TLS towards clients (client_tls_sslmode, client_tls_cert_file,
 * client_tls_key_file). One server-side SSL_CTX built at start by the main
 * thread; workers only create SSL objects from it (thread-safe in OpenSSL).
 * A client that sends SSLRequest gets 'S' and its connection is wrapped in
 * a libevent OpenSSL filter; with sslmode require, a client that does not
 * ask for TLS is refused.
 */
#ifndef SR_ROUTER_TLS_H
#define SR_ROUTER_TLS_H

#include <stdbool.h>

#include "common/err.h"

struct config;
struct client;

/* Build the context when sslmode is not disable. Main thread, at start. */
int tls_init(const struct config *cfg, struct sr_errmsg *em) SR_MUST_CHECK;
bool tls_available(void);

/* Answer an SSLRequest with 'S' and wrap c's connection. Worker thread.
 * Returns false when the client was closed. */
bool tls_start(struct client *c);

#endif
