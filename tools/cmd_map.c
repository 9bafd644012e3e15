/*
 * cmd_map.c - `shardctl map init --shards N [--force]`: replace the range
 * map with N equal ranges owned by shards 0..N-1. Metadata only: it moves
 * no rows, so it refuses to replace an existing map unless --force.
 * Single-threaded.
 */
#include <inttypes.h>

#include "ctl.h"
#include "shardmap/catalog.h"

#define MAP_MAX_SHARDS 65536

static const char map_help[] =
    "usage: shardctl map init --shards N [--force]\n\n"
    "Create the range map: N equal ranges over the hash space, range i owned by\n"
    "shard i (shards 0..N-1 must be registered). Refused when a map exists,\n"
    "unless --force (which moves no data: use it only on an empty cluster).\n";

struct map_init {
	uint32_t n;
	int force;
};

static int map_init_change(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	const struct map_init *mi = ctx;
	if (m->n_ranges > 0 && !mi->force)
		return sr_errmsg_set(em, SR_EEXIST,
				     "a map already exists (%zu ranges, epoch %" PRIu64
				     "); see `shardctl status`, or pass --force to replace it "
				     "(moves no rows)",
				     m->n_ranges, m->epoch);
	for (size_t i = 0; i < m->n_ranges; i++)
		if (m->ranges[i].state == SM_RANGE_FROZEN)
			return sr_errmsg_set(em, SR_EBUSY,
					     "range %016" PRIx64 " is frozen by a move; finish or "
					     "roll back the move first",
					     m->ranges[i].lo);
	for (uint32_t i = 0; i < mi->n; i++)
		if (!sm_map_find_shard(m, (int32_t)i))
			return sr_errmsg_set(em, SR_ENOTFOUND,
					     "cannot map %" PRIu32 " shards: shard %" PRIu32
					     " is not registered (%zu shards registered); add "
					     "shards with `shardctl shard add` or lower --shards",
					     mi->n, i, m->n_shards);
	return sm_map_init_ranges(m, mi->n, em);
}

static int map_init_args(struct ctl *ctl, struct map_init *mi, int argc, char **argv)
{
	struct ctl_args a;
	const char *n = NULL;
	ctl_args_init(&a, argc, argv, "map init");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--shards", &n))
			continue;
		if (ctl_args_flag(&a, "--force")) {
			mi->force = 1;
			continue;
		}
		return ctl_args_unknown(&a);
	}
	int rc;
	if (ctl_args_over(&a, ctl, &rc))
		return rc;
	if (!n)
		return ctl_usage("map init needs --shards N, e.g. `shardctl map init --shards 2`");
	long long v = ctl_parse_uint(n, MAP_MAX_SHARDS);
	if (v < 1)
		return ctl_usage("--shards '%s' must be a number from 1 to %d", n, MAP_MAX_SHARDS);
	mi->n = (uint32_t)v;
	return CTL_EXIT_OK;
}

static int map_init(struct ctl *ctl, int argc, char **argv)
{
	struct map_init mi = {.n = 0, .force = 0};
	int rc = map_init_args(ctl, &mi, argc, argv);
	if (ctl_args_done(ctl, rc, map_help))
		return rc;
	uint64_t epoch = 0;
	rc = ctl_apply(ctl, map_init_change, &mi, &epoch);
	if (rc != CTL_EXIT_OK)
		return rc;
	printf("map initialised: %" PRIu32 " ranges over shards 0..%" PRIu32 "; epoch %" PRIu64
	       "\n",
	       mi.n, mi.n - 1, epoch);
	return CTL_EXIT_OK;
}

int cmd_map(struct ctl *ctl, int argc, char **argv)
{
	static const struct ctl_subcmd subs[] = {{"init", map_init}};
	static const struct ctl_group g = {"map", map_help, "`map init --shards N`", subs,
					   sizeof(subs) / sizeof(subs[0])};
	return ctl_group_run(&g, ctl, argc, argv);
}
