/*
 * cmd_split.c - `shardctl split RANGE [--at HASH]`: split one range in two
 * (metadata only: both halves keep the owner and state, so no row moves).
 * Single-threaded.
 */
#include <inttypes.h>
#include <string.h>

#include "ctl.h"
#include "shardmap/catalog.h"

static const char split_help[] =
    "usage: shardctl split RANGE [--at HASH] [--json]\n\n"
    "Split RANGE (its lo as 16 hex digits, or lo..hi as shown by `shardctl\n"
    "status`) into [lo, HASH-1] and [HASH, hi]. HASH defaults to the midpoint\n"
    "and must satisfy lo < HASH <= hi. Both halves keep the owner.\n";

struct split_req {
	uint64_t lo, hi, at;
	int has_hi, has_at;
	/* results */
	uint64_t old_hi, new_at;
	int32_t shard;
};

static int split_change(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	struct split_req *s = ctx;
	struct sm_range *r = sm_map_find_range(m, s->lo);
	if (!r || (s->has_hi && r->hi != s->hi))
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "no such range %016" PRIx64 "%s; run `shardctl status` to "
				     "list ranges",
				     s->lo, r ? " with that hi" : "");
	if (r->state != SM_RANGE_ACTIVE)
		return sr_errmsg_set(em, SR_EBUSY,
				     "range %016" PRIx64 " is %s by a move; wait for the move to "
				     "finish",
				     r->lo, sm_range_state_name(r->state));
	if (r->lo == r->hi)
		return sr_errmsg_set(em, SR_EINVAL,
				     "range %016" PRIx64 " holds a single hash and cannot be split",
				     r->lo);
	if (s->has_at && (s->at <= r->lo || s->at > r->hi))
		return sr_errmsg_set(em, SR_EINVAL,
				     "split point %016" PRIx64 " is not inside range %016" PRIx64
				     "..%016" PRIx64 "; pass --at with lo < HASH <= hi",
				     s->at, r->lo, r->hi);
	s->old_hi = r->hi;
	s->shard = r->shard_id;
	return sm_map_split(m, s->lo, s->has_at ? s->at : 0, &s->new_at, em);
}

static int split_parse_range(struct split_req *s, const char *range)
{
	char lo[40];
	const char *dots = strstr(range, "..");
	size_t n = dots ? (size_t)(dots - range) : strlen(range);
	if (n >= sizeof(lo))
		n = sizeof(lo) - 1;
	memcpy(lo, range, n);
	lo[n] = '\0';
	if (ctl_parse_hash(lo, &s->lo) != 0 || (dots && ctl_parse_hash(dots + 2, &s->hi) != 0))
		return ctl_usage("'%s' is not a range: write its lo as 16 hex digits or lo..hi "
				 "(see `shardctl status`)",
				 range);
	s->has_hi = dots != NULL;
	return CTL_EXIT_OK;
}

static int split_args(struct ctl *ctl, struct split_req *s, int argc, char **argv)
{
	struct ctl_args a;
	const char *range = NULL, *at = NULL;
	ctl_args_init(&a, argc, argv, "split");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--at", &at))
			continue;
		if (!ctl_args_take(&a, &range))
			return ctl_args_unknown(&a);
	}
	int rc;
	if (ctl_args_over(&a, ctl, &rc))
		return rc;
	if (!range)
		return ctl_usage("split needs a RANGE, e.g. `shardctl split 4000000000000000`");
	rc = split_parse_range(s, range);
	if (rc)
		return rc;
	s->has_at = at != NULL;
	if (at && ctl_parse_hash(at, &s->at) != 0)
		return ctl_usage("--at '%s' is not a hash: write 1 to 16 hex digits", at);
	return CTL_EXIT_OK;
}

static void split_print(const struct ctl *ctl, const struct split_req *s, uint64_t epoch)
{
	char a[17], b[17], c[17], d[17];
	snprintf(a, sizeof(a), "%016" PRIx64, s->lo);
	snprintf(b, sizeof(b), "%016" PRIx64, s->new_at - 1);
	snprintf(c, sizeof(c), "%016" PRIx64, s->new_at);
	snprintf(d, sizeof(d), "%016" PRIx64, s->old_hi);
	if (!ctl->json) {
		printf("split %s..%s into\n  %s..%s shard %" PRId32 "\n  %s..%s shard %" PRId32
		       "\nepoch %" PRIu64 "\n",
		       a, d, a, b, s->shard, c, d, s->shard, epoch);
		return;
	}
	struct ctl_json j;
	json_begin(&j);
	json_uint(&j, "epoch", epoch);
	json_arr(&j, "ranges");
	const char *bounds[2][2] = {{a, b}, {c, d}};
	for (int i = 0; i < 2; i++) {
		json_obj(&j, NULL);
		json_str(&j, "lo", bounds[i][0]);
		json_str(&j, "hi", bounds[i][1]);
		json_int(&j, "shard", s->shard);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_end(&j);
}

int cmd_split(struct ctl *ctl, int argc, char **argv)
{
	struct split_req s;
	memset(&s, 0, sizeof(s));
	int rc = split_args(ctl, &s, argc, argv);
	if (ctl_args_done(ctl, rc, split_help))
		return rc;
	uint64_t epoch = 0;
	rc = ctl_apply(ctl, split_change, &s, &epoch);
	if (rc != CTL_EXIT_OK)
		return rc;
	split_print(ctl, &s, epoch);
	return CTL_EXIT_OK;
}
