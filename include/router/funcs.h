/*
 * funcs.h - which functions a SELECT may call and still be a read. Built-in
 * functions known to have no side effects are listed here (sorted, binary
 * search); anything else - user functions, nextval, set_config, session
 * advisory locks - makes the statement a write unless it is named in the
 * read_only_functions setting. Pure, any thread.
 */
#ifndef SR_ROUTER_FUNCS_H
#define SR_ROUTER_FUNCS_H

#include <stdbool.h>
#include <stddef.h>

/* A built-in (pg_catalog) function without side effects. schema may be NULL
 * (unqualified) or "pg_catalog". Names are lower case. */
bool funcs_is_read_only(const char *schema, size_t schema_len, const char *name, size_t name_len);

#endif
