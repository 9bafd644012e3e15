/*
 * shardctl.c - entry point of `shardctl`, the shard-map CLI (SPEC §5):
 * global options (--catalog, --json, --help, --version) and dispatch to
 * one cmd_<name>() per command (tools/cmd_*.c). Exit codes: 0 success,
 * 1 failed operation, 2 bad usage. Single-threaded.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define SHARDCTL_VERSION "0.1.0"


struct command {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
    {"init", cmd_init, "create the catalog schema (idempotent)"},
    {"shard", cmd_shard, "shard add --primary CONNINFO [--replica CONNINFO]... | shard list"},
    {"table", cmd_table, "table add TABLE --key COLUMN --type bigint|text|uuid | table list"},
    {"map", cmd_map, "map init --shards N [--force]"},
    {"status", cmd_status, "ranges, owners, epoch, shards, row counts, routers, lag"},
    {"hash", cmd_hash, "hash KEY [--type T]: the hash, range and owner of a key"},
    {"split", cmd_split, "split RANGE [--at HASH]: split a range in two"},
    {"verify", cmd_verify, "verify [--table T] [--list]: rows on a shard not owning their key"},
    {"move", cmd_move, "move RANGE --to SHARD [--abort]: move a range online"},
    {"rebalance", cmd_rebalance, "rebalance [--dry-run]: even out rows across shards"},
};

static void print_help(void)
{
	printf("shardctl - manage the shardrouter shard map\n\n"
	       "usage: shardctl [--catalog CONNINFO] [--json] COMMAND [ARGS...]\n\n"
	       "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %-8s %s\n", commands[i].name, commands[i].summary);
	printf("\noptions:\n"
	       "  --catalog CONNINFO  catalog database (default: $SHARDROUTER_CATALOG)\n"
	       "  --json              print one JSON document (read commands)\n"
	       "  --help              this help; `shardctl COMMAND --help` for a command\n"
	       "  --version           print the version\n\n"
	       "exit status: 0 success, 1 operation failed, 2 bad usage\n");
}

/* Global options before the command; returns the index of the command
 * word, or -1 with *rc set when shardctl should exit. */
static int parse_global(struct ctl *ctl, int argc, char **argv, int *rc)
{
	struct ctl_args a;
	ctl_args_init(&a, argc - 1, argv + 1, "");
	while (ctl_args_next(&a)) {
		if (ctl_args_flag(&a, "--version")) {
			printf("shardctl %s\n", SHARDCTL_VERSION);
			*rc = CTL_EXIT_OK;
			return -1;
		}
		if (ctl_args_common(&a, ctl))
			continue;
		if (ctl_args_positional(&a))
			return a.i + 1;
		*rc = ctl_usage("unknown option %s; run `shardctl --help`", a.argv[a.i]);
		return -1;
	}
	if (a.err) {
		*rc = CTL_EXIT_USAGE;
		return -1;
	}
	if (ctl->help) {
		print_help();
		*rc = CTL_EXIT_OK;
		return -1;
	}
	*rc = ctl_usage("no command given; run `shardctl --help` for the list");
	return -1;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {.catalog = getenv("SHARDROUTER_CATALOG"), .json = 0, .help = 0};
	int rc = 0;
	int at = parse_global(&ctl, argc, argv, &rc);
	if (at < 0)
		return rc;
	const char *name = argv[at];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return commands[i].run(&ctl, argc - at - 1, argv + at + 1);
	if (strcmp(name, "help") == 0) {
		print_help();
		return CTL_EXIT_OK;
	}
	return ctl_usage("unknown command '%s'; run `shardctl --help` for the list", name);
}
