/*
 * config.h - the router's settings: loading the INI file, validating it, and
 * sharing one immutable, refcounted snapshot between threads.
 *
 * One table (config_entries()) describes every key: its section, type, where
 * it lives in struct config, default, whether SIGHUP may change it, bounds and
 * a one-line description. The same table drives the INI handler, validation,
 * the reload check, SHOW CONFIG (config_foreach) and the README table
 * (config_print_markdown, `shardrouter --print-config-doc`).
 *
 * Value syntax (see also config_print_markdown):
 *   bool      on/off, true/false, yes/no, 1/0 (any case)
 *   int       decimal integer within the key's bounds
 *   size      bytes, optionally with a unit B, kB, MB, GB, TB (1 kB = 1024 B)
 *   duration  a number with an optional unit ms, s, min, h, d; a bare number
 *             means seconds for pgbouncer-named keys (server_connect_timeout,
 *             ...; fractions allowed, e.g. 0.5) and milliseconds for keys
 *             ending in _ms. Stored in milliseconds.
 *   enum      one of the listed words (any case)
 *   list      comma-separated, items trimmed, empty items ignored
 *   host:port "host:port" or "[ipv6]:port"; empty = off
 * Lines starting with ';' or '#' are comments; there are no inline comments
 * (as in pgbouncer), so a value may contain ';' or '#'. Keys and section names
 * are case-insensitive. Lines may be at most CONFIG_MAX_LINE bytes.
 *
 * Ownership and threads:
 *   - config_load builds a NEW config with one reference owned by the caller.
 *     It must run on one thread at a time (it sets inih's process-wide parse
 *     options); in the router that is the main thread.
 *   - A loaded config is never modified. Any thread may read it, and take or
 *     drop references (config_ref/config_unref are atomic); the last
 *     config_unref frees it.
 *   - struct config_slot is the shared "current config" pointer: the main
 *     thread swaps a new snapshot in on SIGHUP, workers take a reference with
 *     config_slot_get (mutex-protected, so a swap can never free a config
 *     between a reader's load and its ref).
 */
#ifndef SR_ROUTER_CONFIG_H
#define SR_ROUTER_CONFIG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/log.h"

/* Longest accepted line in the INI file, including the newline. */
#define CONFIG_MAX_LINE 8192

enum config_type {
	CONFIG_BOOL,	 /* bool */
	CONFIG_INT,	 /* int, within [min, max] */
	CONFIG_SIZE,	 /* int64_t bytes, within [min, max] */
	CONFIG_DURATION, /* int64_t milliseconds, within [min, max] */
	CONFIG_STRING,	 /* char *, owned, never NULL ("" when unset) */
	CONFIG_ENUM,	 /* an enum (int-sized): index into enum_values */
	CONFIG_LIST,	 /* struct config_list */
	CONFIG_HOSTPORT, /* struct config_hostport */
};

enum config_auth_type {
	CONFIG_AUTH_SCRAM_SHA_256 = 0,
	CONFIG_AUTH_MD5 = 1,
	CONFIG_AUTH_TRUST = 2,
};

enum config_pool_mode {
	CONFIG_POOL_TRANSACTION = 0,
	CONFIG_POOL_SESSION = 1,
};

enum config_sslmode {
	CONFIG_SSLMODE_DISABLE = 0,
	CONFIG_SSLMODE_ALLOW = 1,
	CONFIG_SSLMODE_PREFER = 2,
	CONFIG_SSLMODE_REQUIRE = 3,
};

/* A comma-separated list; items are owned, trimmed and non-empty. */
struct config_list {
	char **items;
	size_t count;
};

/* host:port; host is "" and port 0 when the setting is off. */
struct config_hostport {
	char *host; /* owned; without the [] of an IPv6 literal */
	int port;
};

/* Every setting of the [router] section. Field names are the INI keys,
 * durations get an _ms suffix when the key has none. Treat as read-only. */
struct config {
	atomic_int refs;
	char *path; /* the file it was loaded from */

	struct config_list listen_addr; /* empty = no TCP listener; "*" = all */
	int listen_port;
	char *unix_socket_dir; /* "" = no Unix socket */
	int workers;	       /* 0 = one per online CPU */

	char *catalog;	 /* libpq conninfo; "" only when map_cache is set */
	char *map_cache; /* "" = no cache file */

	enum config_auth_type auth_type;
	char *auth_file;
	struct config_list admin_users;
	struct config_list stats_users;

	enum config_pool_mode pool_mode;
	int default_pool_size;
	int max_client_conn;
	int64_t server_connect_timeout_ms;
	int64_t query_wait_timeout_ms;	/* 0 = wait forever */
	int64_t client_idle_timeout_ms; /* 0 = off */
	int64_t server_idle_timeout_ms; /* 0 = off */
	int64_t server_lifetime_ms;	/* 0 = unlimited */
	char *server_reset_query;	/* session mode; "" = none */
	int64_t max_packet_size;

	struct config_list read_only_functions; /* lower-cased "f" or "schema.f" */

	int64_t replica_max_lag_bytes;
	int64_t replica_max_lag_ms;
	int64_t health_check_interval_ms;
	bool read_your_writes;
	int64_t freeze_timeout_ms;
	int64_t catalog_lease_ms;
	int64_t catalog_poll_ms;

	struct config_hostport metrics_listen;
	char *log_file; /* "" = stderr */
	bool syslog;
	enum log_level log_level;
	char *pidfile; /* "" = none */

	enum config_sslmode client_tls_sslmode;
	char *client_tls_cert_file;
	char *client_tls_key_file;
};

/* One row of the settings table. */
struct config_entry {
	const char *section;
	const char *key;
	enum config_type type;
	size_t offset;			/* of the field in struct config */
	const char *default_value;	/* in the canonical format of config_format_value */
	bool reloadable;		/* may change on SIGHUP without a restart */
	int64_t min, max;		/* CONFIG_INT, CONFIG_SIZE, CONFIG_DURATION */
	int64_t bare_unit_ms;		/* CONFIG_DURATION: what a bare number means, in ms */
	const char *const *enum_values; /* CONFIG_ENUM: NULL-terminated, index = value */
	unsigned flags;			/* CONFIG_F_* */
	const char *description;
};

#define CONFIG_F_CONNINFO 1u /* a libpq conninfo: passwords masked when shown */
#define CONFIG_F_FUNCNAME 2u /* list of [schema.]function names, lower-cased */

/* The settings table, in documentation order. *count receives its length. */
const struct config_entry *config_entries(size_t *count);

/* The entry for section/key (case-insensitive), or NULL. */
const struct config_entry *config_entry_find(const char *section, const char *key);

/* Load and validate path. On success *out is a new config holding one
 * reference for the caller. On failure *out is untouched and em says
 * "FILE:LINE: KEY: what is wrong (allowed: ...)" for the first error (and how
 * many more there were). Main thread only (see above). */
int config_load(const char *path, struct config **out, struct sr_errmsg *em) SR_MUST_CHECK;

/* The same from an in-memory INI text; origin names it in messages. */
int config_load_string(const char *origin, const char *text, struct config **out,
		       struct sr_errmsg *em) SR_MUST_CHECK;

/* Frees cfg regardless of its count; for a config never shared. Prefer
 * config_unref. NULL is a no-op. */
void config_free(struct config *cfg);

/* Take a reference; returns cfg. Any thread. */
struct config *config_ref(struct config *cfg);

/* Drop a reference; the last one frees. NULL is a no-op. Any thread. */
void config_unref(struct config *cfg);

/* 0 when every key that differs between old and new is reloadable; otherwise
 * SR_EINVAL and em names the first such key, both values, and that a restart
 * is needed. Any thread. */
int config_check_reload(const struct config *old, const struct config *new_cfg,
			struct sr_errmsg *em) SR_MUST_CHECK;

/* Write e's value in cfg, in canonical form (what config_load accepts), into
 * buf (always NUL-terminated when len > 0). Conninfo passwords are masked.
 * Returns the length the full text needs, like snprintf. */
size_t config_format_value(const struct config *cfg, const struct config_entry *e, char *buf,
			   size_t len);

/* Called by config_foreach for each entry, in table order; value is the
 * formatted (masked) value. Return nonzero to stop. */
typedef int (*config_foreach_fn)(const struct config_entry *e, const char *value, void *ctx);

/* Iterate the table with cfg's values (for SHOW CONFIG). Returns the first
 * nonzero callback result, 0 when all were visited, or SR_ENOMEM. */
int config_foreach(const struct config *cfg, config_foreach_fn fn, void *ctx) SR_MUST_CHECK;

/* Print the settings as a Markdown table (key, type, default, reload,
 * description) for the README; `shardrouter --print-config-doc`. */
void config_print_markdown(FILE *out);

/* Exact (case-sensitive, like Postgres roles) membership in admin_users /
 * stats_users. An admin user is not implicitly a stats user here. */
bool config_is_admin_user(const struct config *cfg, const char *name);
bool config_is_stats_user(const struct config *cfg, const char *name);

/* Is schema.name listed in read_only_functions? Both are compared lower-cased.
 * schema may be NULL/0 for an unqualified call. An unqualified list entry
 * matches any schema; a qualified one only that schema (an unqualified call
 * of a function listed as "s.f" does not match: unknown means write). */
bool config_function_is_read_only(const struct config *cfg, const char *schema, size_t schema_len,
				  const char *name, size_t name_len);

/* The shared "current config" pointer (see the top of this file). */
struct config_slot {
	pthread_mutex_t lock;
	struct config *cur; /* holds one reference */
};

/* Takes over the caller's reference to initial (may be NULL). */
void config_slot_init(struct config_slot *slot, struct config *initial);
/* Drops the slot's reference. */
void config_slot_destroy(struct config_slot *slot);
/* A new reference to the current config (NULL if none); config_unref it. */
struct config *config_slot_get(struct config_slot *slot);
/* Installs next (taking over the caller's reference) and drops the slot's
 * reference to the previous one; users still holding it keep it alive. */
void config_slot_swap(struct config_slot *slot, struct config *next);

#endif
