/*
 * session.h - the per-client session state that transaction pooling must
 * carry from one server connection to the next: run-time parameters
 * (startup packet values and committed SETs), and named prepared statements.
 * Small arrays searched linearly: clients hold a handful of each.
 * Worker thread only.
 */
#ifndef SR_ROUTER_SESSION_H
#define SR_ROUTER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct client;
struct server;
struct kv;
struct pstmt;
struct evbuffer;

/* kv arrays: set (replace), find, remove, free. Names compare
 * case-insensitively. value NULL is allowed (a pending RESET). */
int kv_set(struct kv **arr, int *n, int *cap, const char *name, size_t name_len,
	   const char *value, size_t value_len) SR_MUST_CHECK;
const struct kv *kv_find(const struct kv *arr, int n, const char *name);
void kv_remove(struct kv *arr, int *n, const char *name);
void kv_free_all(struct kv *arr, int n);

/* A startup packet parameter: kept raw for ParameterStatus and as a quoted
 * SQL value in the desired session parameters. */
int session_set_startup_param(struct client *c, const char *name, const char *value) SR_MUST_CHECK;
const char *session_startup_value(const struct client *c, const char *name);

/* A SET (value != NULL) or RESET (value == NULL; name "all" for RESET ALL)
 * the client sent; applied by session_commit_pending when its transaction
 * commits, dropped by session_drop_pending when it rolls back. */
int session_note_set(struct client *c, const char *name, size_t name_len, const char *value,
		     size_t value_len) SR_MUST_CHECK;
void session_commit_pending(struct client *c);
void session_drop_pending(struct client *c);

/* Build the SQL that makes server s carry c's session parameters ("" when
 * nothing differs; NULL when neither side has any) and record the new
 * values on s. *sql is malloc'd or NULL. */
int session_sync_sql(struct client *c, struct server *s, char **sql) SR_MUST_CHECK;

/* Prepared statements of a client. */
struct pstmt *session_find_stmt(struct client *c, const char *name);
/* Register (or replace) a statement from a Parse payload's parts. */
int session_add_stmt(struct client *c, const char *name, const char *sql, size_t sql_len,
		     const uint8_t *types_be, uint16_t n_types, struct pstmt **out) SR_MUST_CHECK;
void session_remove_stmt(struct client *c, const char *name);
void session_free_all(struct client *c);

/* Append a Parse for p (named as p->name) to out. */
int session_write_parse(struct evbuffer *out, const struct pstmt *p) SR_MUST_CHECK;

#endif
