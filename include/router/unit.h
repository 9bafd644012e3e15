/*
 * unit.h - routing and forwarding of one unit of client work: a Query or
 * FunctionCall message, or an extended-protocol batch up to Sync/Flush.
 * Decides the shard and role (route.c), answers locally what needs no
 * server (held BEGIN, routing errors, shardrouter.* SETs), acquires and
 * attaches a pooled server, replays session state, re-prepares statements,
 * and forwards the messages. Worker thread only.
 */
#ifndef SR_ROUTER_UNIT_H
#define SR_ROUTER_UNIT_H

#include <stdbool.h>

struct client;
struct server;

/* Handle the next unit in c's input. True when progress was made and the
 * caller should call again; false when more bytes are needed, the client
 * waits for a server or was closed. */
bool unit_step(struct client *c);

/* Attach s to c (from a pool) and send the session replay it needs. */
void unit_attach(struct client *c, struct server *s);

#endif
