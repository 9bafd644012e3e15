/*
 * ctl.h - what every shardctl command shares: the global options, argument
 * parsing (long options only, so negative numbers stay positional), the
 * exit codes, error printing, the catalog connection and a small JSON
 * writer. shardctl is single-threaded; nothing here is thread-safe.
 */
#ifndef SR_TOOLS_CTL_H
#define SR_TOOLS_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "common/err.h"

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

/* Connect to the catalog. On failure prints what to do and returns NULL
 * with *exit_code set (2 when no catalog is configured, 1 when unreachable). */
PGconn *ctl_connect_catalog(const struct ctl *ctl, int *exit_code);
/* Connect to any conninfo with a connect timeout in seconds; NULL and a
 * message (without trailing newline) in em when it fails. */
PGconn *ctl_connect(const char *conninfo, int timeout_s, struct sr_errmsg *em);
/* Turn an sr_err from the catalog or map into an exit code and print it. */
int ctl_report(int err, const struct sr_errmsg *em, const char *hint);

/* conninfo for display: password=... removed. */
void ctl_conninfo_display(const char *conninfo, char *out, size_t outsz);

/* Parse an unsigned decimal integer in [0, max]; -1 if not one. */
long long ctl_parse_uint(const char *s, long long max);
/* Parse a hash: exactly 1..16 hex digits (optional 0x). 0 or SR_EINVAL. */
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

/* The commands: each returns an exit code. argv[0] is the first argument
 * after the command word(s). */
int cmd_init(struct ctl *ctl, int argc, char **argv);
int cmd_shard(struct ctl *ctl, int argc, char **argv);
int cmd_table(struct ctl *ctl, int argc, char **argv);
int cmd_map(struct ctl *ctl, int argc, char **argv);
int cmd_status(struct ctl *ctl, int argc, char **argv);
int cmd_hash(struct ctl *ctl, int argc, char **argv);
int cmd_split(struct ctl *ctl, int argc, char **argv);

#endif
