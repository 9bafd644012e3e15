/*
 * startup.h - the first phase of a client connection: the startup packet
 * (SSLRequest/GSSENCRequest answered 'N', CancelRequest forwarded, protocol
 * version checks), client authentication against auth_file (trust, md5,
 * SCRAM-SHA-256), and the login that learns the server's parameters.
 * Worker thread only.
 */
#ifndef SR_ROUTER_STARTUP_H
#define SR_ROUTER_STARTUP_H

#include <stdbool.h>

struct client;
struct server;

/* Consume what the client sent in CL_STARTUP / CL_AUTH. Returns true when
 * the caller may go on reading (state advanced or more data needed),
 * false when the client was closed. */
bool startup_step(struct client *c);

/* CL_LOGIN: the home-shard server the login was waiting for is ready;
 * copy its parameters, release it and tell the client it is in. */
void startup_login_ready(struct client *c, struct server *s);

/* Finish login with the pool's cached parameters (no server needed). */
void startup_finish(struct client *c);

#endif
