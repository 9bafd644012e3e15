/*
 * admin.h - the admin console: the virtual database "shardrouter". Each
 * command is answered with an ordinary result set (psql prints a table).
 * stats_users may run SHOW commands; admin_users everything. Worker thread.
 */
#ifndef SR_ROUTER_ADMIN_H
#define SR_ROUTER_ADMIN_H

struct client;

/* Run one admin command (a NUL-terminated simple-query text) and write the
 * complete reply, ending with ReadyForQuery, to the client. */
void admin_query(struct client *c, const char *sql);

#endif
