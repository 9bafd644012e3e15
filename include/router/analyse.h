/*
 * analyse.h - what one unit of client work asks for, before it is routed:
 * each statement's key extraction (cached per prepared statement), Bind
 * values turned into key hashes, the statements the router answers itself
 * (BEGIN, SET shardrouter.*), SETs to carry in the session, and session
 * features transaction pooling cannot carry. Feeds struct route_unit.
 * Worker thread only.
 */
#ifndef SR_ROUTER_ANALYSE_H
#define SR_ROUTER_ANALYSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/keyextract.h"
#include "router/route.h"

struct client;

#define MAX_NOTED_SETS 16

struct noted_set {
	const char *value;       /* into the statement text */
	size_t name_len, value_len;
	char name[64];           /* copied: the extractor may fold it into its own buffer */
};

struct analysis {
	struct route_unit ru;
	int n_stmts;
	enum kx_stmt first;          /* first statement's kind (simple) */
	bool has_begin, begin_ro;
	bool sr_set;                 /* SET/RESET shardrouter.* */
	const char *sr_name, *sr_value;
	char sr_name_buf[64];
	size_t sr_name_len, sr_value_len;
	bool sr_reset;
	const char *unsupported;     /* session feature refused in transaction pooling */
	int n_sets;
	struct noted_set sets[MAX_NOTED_SETS];
	int n_execs;                 /* Execute messages (extended) */
	char ext_stmt[64];           /* statement of the first Bind (extended) */
};

/* A Query message's payload (SQL with its NUL). False when c was closed
 * (malformed message, out of memory). */
bool analyse_query(struct client *c, const uint8_t *p, uint32_t len, struct analysis *a);
/* An extended batch (whole messages, len bytes): Parse registers the
 * statement, Bind resolves its key parameters. False when c was closed. */
bool analyse_extended(struct client *c, const uint8_t *data, size_t len, struct analysis *a);
/* Case-insensitive compare of a counted name with a literal. */
bool analyse_name_is(const char *s, size_t n, const char *lit);

#endif
