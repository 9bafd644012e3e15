/*
 * cmd_shard.c - `shardctl shard add|list`: register shards (primary and
 * replica conninfo) in the catalog and list them. Single-threaded.
 */
#include <inttypes.h>

#include "ctl.h"
#include "shardmap/catalog.h"

#define MAX_REPLICAS 32

static const char shard_help[] =
    "usage: shardctl shard add --primary CONNINFO [--replica CONNINFO]... [--id N]\n"
    "                          [--no-check]\n"
    "       shardctl shard list [--json]\n\n"
    "add   register a shard; the id defaults to the lowest free one. The primary\n"
    "      must be reachable unless --no-check is given.\n"
    "list  the registered shards with their primary and replicas.\n";

struct shard_add {
	long long id; /* -1: the lowest free id */
	const char *primary;
	const char *replicas[MAX_REPLICAS];
	size_t n_replicas;
	int32_t chosen;
};

static int shard_add_change(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	struct shard_add *sa = ctx;
	int32_t id = (int32_t)sa->id;
	if (sa->id < 0)
		for (id = 0; sm_map_find_shard(m, id); id++)
			;
	else if (sm_map_find_shard(m, id))
		return sr_errmsg_set(em, SR_EEXIST,
				     "shard %" PRId32 " already exists; run `shardctl shard list` "
				     "and pick another --id (or omit it)",
				     id);
	sa->chosen = id;
	return sm_map_add_shard(m, id, sa->primary, sa->replicas, sa->n_replicas, em);
}

/* 0 if reachable; prints why not. */
static int shard_check_reachable(const char *what, const char *conninfo)
{
	struct sr_errmsg em;
	PGconn *c = ctl_connect(conninfo, 5, &em);
	if (c) {
		PQfinish(c);
		return 0;
	}
	char disp[512];
	ctl_conninfo_display(conninfo, disp, sizeof(disp));
	ctl_warn("cannot connect to %s (%s): %s", what, disp, em.text);
	return -1;
}

static int shard_add_args(struct ctl *ctl, struct shard_add *sa, int *no_check, int argc,
			  char **argv)
{
	struct ctl_args a;
	const char *v = NULL;
	ctl_args_init(&a, argc, argv, "shard");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl))
			continue;
		if (ctl_args_flag(&a, "--no-check")) {
			*no_check = 1;
		} else if (ctl_args_opt(&a, "--primary", &v)) {
			sa->primary = v;
		} else if (ctl_args_opt(&a, "--replica", &v)) {
			if (sa->n_replicas == MAX_REPLICAS)
				return ctl_usage("at most %d --replica options", MAX_REPLICAS);
			sa->replicas[sa->n_replicas++] = v;
		} else if (ctl_args_opt(&a, "--id", &v)) {
			sa->id = a.err ? 0 : ctl_parse_uint(v, INT32_MAX);
			if (!a.err && sa->id < 0)
				return ctl_usage("--id '%s' is not a shard id (0..%d); see "
						 "`shardctl shard --help`",
						 v, INT32_MAX);
		} else {
			return ctl_args_unknown(&a);
		}
	}
	if (a.err)
		return CTL_EXIT_USAGE;
	if (!ctl->help && (!sa->primary || !*sa->primary))
		return ctl_usage("shard add needs --primary CONNINFO, e.g. --primary "
				 "'host=127.0.0.1 port=5501 dbname=shop'");
	return CTL_EXIT_OK;
}

static int shard_add(struct ctl *ctl, int argc, char **argv)
{
	struct shard_add sa = {.id = -1, .primary = NULL, .n_replicas = 0, .chosen = -1};
	int no_check = 0;
	int rc = shard_add_args(ctl, &sa, &no_check, argc, argv);
	if (ctl_args_done(ctl, rc, shard_help))
		return rc;
	if (!no_check && shard_check_reachable("the primary", sa.primary) != 0)
		return ctl_fail("shard not added; fix the primary conninfo, start the server, or "
				"pass --no-check to register it anyway");
	for (size_t i = 0; i < sa.n_replicas && !no_check; i++)
		(void)shard_check_reachable("a replica", sa.replicas[i]);
	uint64_t epoch = 0;
	rc = ctl_apply(ctl, shard_add_change, &sa, &epoch);
	if (rc != CTL_EXIT_OK)
		return rc;
	printf("shard %" PRId32 " added with %zu replica(s); epoch %" PRIu64 "\n", sa.chosen,
	       sa.n_replicas, epoch);
	return CTL_EXIT_OK;
}

static void shard_list_json(const struct sm_map *m)
{
	struct ctl_json j;
	json_begin(&j);
	json_uint(&j, "epoch", m->epoch);
	json_arr(&j, "shards");
	for (size_t i = 0; i < m->n_shards; i++) {
		json_obj(&j, NULL);
		json_shard_conninfo(&j, &m->shards[i]);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_end(&j);
}

static void shard_list_text(const struct sm_map *m)
{
	char disp[1024];
	if (m->n_shards == 0) {
		printf("no shards; add one with `shardctl shard add --primary CONNINFO`\n");
		return;
	}
	printf("%-6s %-8s %s\n", "shard", "role", "conninfo");
	for (size_t i = 0; i < m->n_shards; i++) {
		const struct sm_shard *s = &m->shards[i];
		ctl_conninfo_display(s->primary, disp, sizeof(disp));
		printf("%-6" PRId32 " %-8s %s\n", s->id, "primary", disp);
		for (size_t r = 0; r < s->n_replicas; r++) {
			ctl_conninfo_display(s->replicas[r], disp, sizeof(disp));
			printf("%-6" PRId32 " %-8s %s\n", s->id, "replica", disp);
		}
	}
}

static int shard_list(struct ctl *ctl, int argc, char **argv)
{
	int rc;
	if (ctl_args_none(ctl, argc, argv, "shard", shard_help, &rc))
		return rc;
	struct sm_map *m = NULL;
	rc = ctl_load_map(ctl, NULL, NULL, &m);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl->json)
		shard_list_json(m);
	else
		shard_list_text(m);
	sm_map_free(m);
	return CTL_EXIT_OK;
}

int cmd_shard(struct ctl *ctl, int argc, char **argv)
{
	static const struct ctl_subcmd subs[] = {{"add", shard_add}, {"list", shard_list}};
	static const struct ctl_group g = {"shard", shard_help, "`shard add` or `shard list`", subs,
					   sizeof(subs) / sizeof(subs[0])};
	return ctl_group_run(&g, ctl, argc, argv);
}
