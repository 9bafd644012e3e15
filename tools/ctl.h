/*
 * ctl.h - what every shardctl command shares: the global options, argument
 * parsing (long options only, so negative numbers stay positional), the
 * exit codes, error printing, the catalog connection (load the map, apply
 * a change) and a small JSON writer. shardctl is single-threaded; nothing here is thread-safe.
 */
#ifndef SR_TOOLS_CTL_H
#define SR_TOOLS_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "common/err.h"
#include "shardmap/catalog.h"

enum ctl_exit {
	CTL_EXIT_OK = 0,    /* success */
	CTL_EXIT_FAIL = 1,  /* the operation failed: DB error, validation, unknown shard */
	CTL_EXIT_USAGE = 2, /* bad usage: unknown command/option, missing or bad argument */
};

struct ctl {
	const char *catalog; /* --catalog, else SHARDROUTER_CATALOG, else NULL */
	int json;	     /* --json */
	int help;	     /* --help seen after the command */
};

/* Print "shardctl: <message>" to stderr and return the exit code. */
int ctl_usage(const char *fmt, ...) SR_PRINTF(1, 2);
int ctl_fail(const char *fmt, ...) SR_PRINTF(1, 2);
void ctl_warn(const char *fmt, ...) SR_PRINTF(1, 2);

/* Argument cursor over one command's arguments (after the command words). */
struct ctl_args {
	int argc;
	char **argv;
	int i;		 /* index of the current argument */
	int no_more;	 /* "--" seen: the rest is positional */
	int err;	 /* a usage error was printed */
	const char *cmd; /* "shard add", for messages */
};

void ctl_args_init(struct ctl_args *a, int argc, char **argv, const char *cmd);
/* Advance to the next argument; 0 when done. */
int ctl_args_next(struct ctl_args *a);
/* --json, --catalog X, --help: handled into ctl; returns 1 if consumed. */
int ctl_args_common(struct ctl_args *a, struct ctl *ctl);
/* "--name VALUE" or "--name=VALUE": 1 and *val set if matched (a missing
 * value sets a->err and prints a usage error). */
int ctl_args_opt(struct ctl_args *a, const char *name, const char **val);
/* "--name" flag: 1 if matched. */
int ctl_args_flag(struct ctl_args *a, const char *name);
/* The current argument as a positional one, or NULL if it is an option. */
const char *ctl_args_positional(const struct ctl_args *a);
/* Report the current argument as unknown; returns CTL_EXIT_USAGE. */
int ctl_args_unknown(struct ctl_args *a);
/* Parse the arguments of a command that takes only the common options.
 * 1 when the command is done, with *rc its exit code (a usage error, or
 * --help given: help printed to stdout); 0 to go on. */
int ctl_args_none(struct ctl *ctl, int argc, char **argv, const char *cmd, const char *help,
		  int *rc);
/* After a command's own argument parsing returned rc: 1 when the command
 * is done (rc is not CTL_EXIT_OK, or --help was given); prints help to
 * stdout when --help was given. */
int ctl_args_done(const struct ctl *ctl, int rc, const char *help);
/* After a command's argument loop: 1 when parsing is over, with *rc
 * CTL_EXIT_USAGE (a usage error was printed) or CTL_EXIT_OK (--help given);
 * 0 to go on checking the arguments. */
int ctl_args_over(const struct ctl_args *a, const struct ctl *ctl, int *rc);
/* Take the current argument as the command's single positional one into
 * *slot: 1 if taken, 0 if it is an option or *slot is already set. */
int ctl_args_take(const struct ctl_args *a, const char **slot);

/* A command group ("shard add|list"): its subcommands, its help and what
 * an unknown subcommand's message suggests ("`shard add` or `shard list`"). */
struct ctl_subcmd {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char **argv);
};
struct ctl_group {
	const char *name;
	const char *help;
	const char *hint;
	const struct ctl_subcmd *subs;
	size_t n_subs;
};
/* Run the subcommand argv[0] of group g. No subcommand or --help/-h as one
 * prints the help (to stderr with exit 2 when nothing at all was given
 * without --help); an unknown one is a usage error. */
int ctl_group_run(const struct ctl_group *g, struct ctl *ctl, int argc, char **argv);

/* Connect to the catalog. On failure prints what to do and returns NULL
 * with *exit_code set (2 when no catalog is configured, 1 when unreachable). */
PGconn *ctl_connect_catalog(const struct ctl *ctl, int *exit_code);
/* Connect to any conninfo with a connect timeout in seconds; NULL and a
 * message (without trailing newline) in em when it fails. */
PGconn *ctl_connect(const char *conninfo, int timeout_s, struct sr_errmsg *em);
/* Turn an sr_err from the catalog or map into an exit code and print it. */
int ctl_report(int err, const struct sr_errmsg *em, const char *hint);
/* Connect to the catalog and load the map into *out (the caller frees it
 * with sm_map_free). A failure is printed (with hint, may be NULL) and its
 * exit code returned. With keep non-NULL the open connection is handed to
 * the caller in *keep on success (the caller PQfinish()es it). */
int ctl_load_map(const struct ctl *ctl, const char *hint, PGconn **keep, struct sm_map **out);
/* Connect to the catalog and run sm_catalog_apply(fn, ctx): an exit code,
 * with *epoch the new epoch on success; a failure is printed. */
int ctl_apply(const struct ctl *ctl, sm_catalog_change_fn *fn, void *ctx, uint64_t *epoch);

/* conninfo for display: password=... removed. */
void ctl_conninfo_display(const char *conninfo, char *out, size_t outsz);

/* Parse an unsigned decimal integer in [0, max]; -1 if not one. */
long long ctl_parse_uint(const char *s, long long max);
/* Parse a hash: exactly 1..16 hex digits (optional 0x), as sm_hash_parse.
 * 0 or a negative sr_err. */
int ctl_parse_hash(const char *s, uint64_t *out);

/* A streaming JSON writer: one document to stdout. Keys are ignored
 * inside arrays (pass NULL). */
struct ctl_json {
	FILE *f;
	int depth;
	int first[32];
};
void json_begin(struct ctl_json *j);
void json_end(struct ctl_json *j);
void json_obj(struct ctl_json *j, const char *key);
void json_obj_end(struct ctl_json *j);
void json_arr(struct ctl_json *j, const char *key);
void json_arr_end(struct ctl_json *j);
void json_str(struct ctl_json *j, const char *key, const char *val); /* NULL = null */
void json_int(struct ctl_json *j, const char *key, long long val);
void json_uint(struct ctl_json *j, const char *key, unsigned long long val);
void json_double(struct ctl_json *j, const char *key, double val);
void json_bool(struct ctl_json *j, const char *key, int val);
void json_null(struct ctl_json *j, const char *key);
/* A hash or range bound as a string of 16 hex digits. */
void json_hex(struct ctl_json *j, const char *key, uint64_t val);
/* Inside an open object: "id", "primary" and "replicas" (passwords removed). */
void json_shard_conninfo(struct ctl_json *j, const struct sm_shard *s);
/* One sharded table as an object: schema, table, key_column, key_type. */
void json_table(struct ctl_json *j, const char *key, const struct sm_table *t);

/* The commands: each returns an exit code. argv[0] is the first argument
 * after the command word(s). */
int cmd_init(struct ctl *ctl, int argc, char **argv);
int cmd_shard(struct ctl *ctl, int argc, char **argv);
int cmd_table(struct ctl *ctl, int argc, char **argv);
int cmd_map(struct ctl *ctl, int argc, char **argv);
int cmd_status(struct ctl *ctl, int argc, char **argv);
int cmd_hash(struct ctl *ctl, int argc, char **argv);
int cmd_split(struct ctl *ctl, int argc, char **argv);
int cmd_verify(struct ctl *ctl, int argc, char **argv);
int cmd_move(struct ctl *ctl, int argc, char **argv);
int cmd_rebalance(struct ctl *ctl, int argc, char **argv);

#endif
