/*
 * cmd_rebalance.c - `shardctl rebalance [--dry-run] [--tolerance PCT]`
 * (SPEC §5): plan, and unless --dry-run run, the splits and moves that bring
 * every shard within PCT (default 10) percent of the mean row count.
 *
 * Counting: every sharded table's key column is streamed from every
 * shard's primary (COPY, text), hashed with the shardmap hash and counted
 * per range in a histogram of RB_BUCKETS equal slices of the range, so a
 * split point that carves off a wanted number of rows can be chosen without
 * holding keys in memory. Rows of all sharded tables count alike.
 *
 * Planning (greedy, at most RB_MAX_STEPS steps): take the most loaded shard
 * H and the least loaded L; move want = min(load(H) - mean, mean - load(L))
 * rows from H to L: H's fullest range as a whole when it holds no more than
 * 1.2 x want, else its top part split off at the histogram point where the
 * rows above reach want. Stop when every shard is within tolerance.
 *
 * Running: each step is `shardctl split` then `shardctl move` (the same
 * code paths, journaled and resumable); the first failure stops the run.
 * Single-threaded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "move.h"
#include "shardmap/catalog.h"
#include "shardmap/hash.h"

#define RB_BUCKETS 4096
#define RB_MAX_STEPS 32

int cmd_rebalance(struct ctl *ctl, int argc, char **argv);

static const char rebalance_help[] =
    "usage: shardctl rebalance [--dry-run] [--tolerance PCT] [--json]\n\n"
    "Count the rows of every sharded table per range on every shard, plan the\n"
    "splits and moves that bring every shard within PCT percent (default 10)\n"
    "of the mean row count, print the plan and, without --dry-run, run it:\n"
    "each step is `shardctl split` and `shardctl move` (online, resumable).\n\n"
    "  --dry-run        print the plan only\n"
    "  --tolerance PCT  allowed distance from the mean, 1..100 (default 10)\n"
    "  --json           print the plan (and counts) as one JSON object\n"
    "exit status: 0 balanced (or plan printed), 1 a count, split or move failed,\n"
    "2 bad usage\n";

/* A range during planning, with its histogram. */
struct rb_range {
	uint64_t lo, hi;
	int32_t shard;
	uint64_t rows;
	uint64_t *hist; /* RB_BUCKETS counts, owned (shared by split halves: see split_range) */
	uint64_t hist_lo, hist_hi; /* the span the histogram covers */
};

struct rb_step {
	uint64_t split_lo, split_at; /* split range split_lo at split_at first (0: no split) */
	uint64_t lo, hi;		   /* then move this range */
	int32_t from, to;
	uint64_t rows;
};

struct rb {
	struct sm_map *m;
	struct rb_range *rs;
	size_t n_rs, cap_rs;
	uint64_t **hists; /* every histogram allocated, for freeing */
	size_t n_hists;
	struct rb_step steps[RB_MAX_STEPS];
	size_t n_steps;
	double tol;
	struct sr_errmsg em;
};

static size_t bucket_of(const struct rb_range *r, uint64_t h)
{
	uint64_t width = (r->hist_hi - r->hist_lo) / RB_BUCKETS + 1;
	size_t b = (size_t)((h - r->hist_lo) / width);
	return b < RB_BUCKETS ? b : RB_BUCKETS - 1;
}

static uint64_t bucket_start(const struct rb_range *r, size_t b)
{
	uint64_t width = (r->hist_hi - r->hist_lo) / RB_BUCKETS + 1;
	return r->hist_lo + (uint64_t)b * width;
}

static struct rb_range *find_rb(struct rb *rb, uint64_t h)
{
	size_t l = 0, u = rb->n_rs;
	while (l < u) {
		size_t mid = (l + u) / 2;
		if (rb->rs[mid].hi < h)
			l = mid + 1;
		else
			u = mid;
	}
	return l < rb->n_rs && rb->rs[l].lo <= h ? &rb->rs[l] : NULL;
}

/* Stream one table's keys from one shard into the ranges it owns. */
static int count_table(struct rb *rb, PGconn *c, const struct sm_table *t, int32_t shard)
{
	char *qs = PQescapeIdentifier(c, t->schema, strlen(t->schema));
	char *qt = PQescapeIdentifier(c, t->name, strlen(t->name));
	char *qk = PQescapeIdentifier(c, t->key_column, strlen(t->key_column));
	char sql[1024];
	snprintf(sql, sizeof(sql), "COPY %s.%s (%s) TO STDOUT", qs ? qs : "", qt ? qt : "",
		 qk ? qk : "");
	PQfreemem(qs);
	PQfreemem(qt);
	PQfreemem(qk);
	PGresult *res = PQexec(c, sql);
	int ok = PQresultStatus(res) == PGRES_COPY_OUT;
	PQclear(res);
	if (!ok)
		return sr_errmsg_set(&rb->em, SR_EDB, "count %s.%s on shard %d: %s", t->schema,
				     t->name, shard, PQerrorMessage(c));
	char *buf;
	int n;
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		size_t l = (size_t)n;
		uint64_t h;
		if (l && buf[l - 1] == '\n')
			l--;
		struct rb_range *r;
		if (mdb_key_hash(t->key_type, buf, l, &h) && (r = find_rb(rb, h)) && r->shard == shard) {
			r->rows++;
			r->hist[bucket_of(r, h)]++;
		}
		PQfreemem(buf);
	}
	int rc = 0;
	while ((res = PQgetResult(c))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc)
			rc = sr_errmsg_set(&rb->em, SR_EDB, "count %s.%s on shard %d: %s", t->schema,
					   t->name, shard, PQresultErrorMessage(res));
		PQclear(res);
	}
	return rc;
}

static int count_all(struct rb *rb)
{
	for (size_t s = 0; s < rb->m->n_shards; s++) {
		const struct sm_shard *sh = &rb->m->shards[s];
		PGconn *c = mdb_connect(sh->primary, false, &rb->em);
		if (!c)
			return SR_EDB;
		int rc = 0;
		for (size_t t = 0; !rc && t < rb->m->n_tables; t++)
			rc = count_table(rb, c, &rb->m->tables[t], sh->id);
		PQfinish(c);
		if (rc)
			return rc;
	}
	return 0;
}

static int rb_init(struct rb *rb)
{
	rb->cap_rs = rb->m->n_ranges + RB_MAX_STEPS + 1;
	rb->rs = calloc(rb->cap_rs, sizeof(*rb->rs));
	rb->hists = calloc(rb->m->n_ranges + 1, sizeof(*rb->hists));
	if (!rb->rs || !rb->hists)
		return sr_errmsg_set(&rb->em, SR_ENOMEM, "out of memory");
	for (size_t i = 0; i < rb->m->n_ranges; i++) {
		const struct sm_range *r = &rb->m->ranges[i];
		struct rb_range *x = &rb->rs[rb->n_rs++];
		x->lo = x->hist_lo = r->lo;
		x->hi = x->hist_hi = r->hi;
		x->shard = r->shard_id;
		x->hist = calloc(RB_BUCKETS, sizeof(uint64_t));
		if (!x->hist)
			return sr_errmsg_set(&rb->em, SR_ENOMEM, "out of memory");
		rb->hists[rb->n_hists++] = x->hist;
		if (r->state != SM_RANGE_ACTIVE)
			return sr_errmsg_set(&rb->em, SR_EBUSY,
					     "range %016" PRIx64 " is frozen by a move; let it finish "
					     "(or `shardctl move %016" PRIx64 " --abort`) first",
					     r->lo, r->lo);
	}
	return 0;
}

static void rb_free(struct rb *rb)
{
	for (size_t i = 0; i < rb->n_hists; i++)
		free(rb->hists[i]);
	free(rb->hists);
	free(rb->rs);
	sm_map_free(rb->m);
}

/* ---- planning ------------------------------------------------------------ */

static uint64_t range_rows(const struct rb_range *r)
{
	uint64_t n = 0;
	for (size_t b = bucket_of(r, r->lo); b <= bucket_of(r, r->hi); b++)
		n += r->hist[b];
	return n;
}

static void loads(const struct rb *rb, uint64_t *load, uint64_t *total)
{
	*total = 0;
	for (size_t s = 0; s < rb->m->n_shards; s++)
		load[s] = 0;
	for (size_t i = 0; i < rb->n_rs; i++)
		for (size_t s = 0; s < rb->m->n_shards; s++)
			if (rb->m->shards[s].id == rb->rs[i].shard) {
				load[s] += rb->rs[i].rows;
				*total += rb->rs[i].rows;
			}
}

/* Split rs[i] so that [at, hi] becomes a new range right after it. */
static struct rb_range *split_range(struct rb *rb, size_t i, uint64_t at)
{
	if (rb->n_rs >= rb->cap_rs)
		return NULL;
	memmove(&rb->rs[i + 2], &rb->rs[i + 1], (rb->n_rs - i - 1) * sizeof(*rb->rs));
	rb->n_rs++;
	rb->rs[i + 1] = rb->rs[i];
	rb->rs[i].hi = at - 1;
	rb->rs[i + 1].lo = at;
	rb->rs[i].rows = range_rows(&rb->rs[i]);
	rb->rs[i + 1].rows = range_rows(&rb->rs[i + 1]);
	return &rb->rs[i + 1];
}

/* The point that leaves about `want` rows in [point, hi]; 0 if none
 * inside (lo, hi]. */
static uint64_t split_point(const struct rb_range *r, uint64_t want)
{
	uint64_t acc = 0;
	size_t first = bucket_of(r, r->lo);
	for (size_t b = bucket_of(r, r->hi); b > first; b--) {
		acc += r->hist[b];
		if (acc >= want)
			return bucket_start(r, b);
	}
	return 0;
}

/* One greedy step; 0 when balanced (or nothing more can be done). */
static int plan_step(struct rb *rb, uint64_t *load)
{
	uint64_t total;
	loads(rb, load, &total);
	size_t ns = rb->m->n_shards, H = 0, L = 0;
	if (ns < 2 || total == 0)
		return 0;
	for (size_t s = 1; s < ns; s++) {
		if (load[s] > load[H])
			H = s;
		if (load[s] < load[L])
			L = s;
	}
	double mean = (double)total / (double)ns;
	if ((double)load[H] <= mean * (1 + rb->tol) && (double)load[L] >= mean * (1 - rb->tol))
		return 0;
	double a = (double)load[H] - mean, b = mean - (double)load[L];
	uint64_t want = (uint64_t)(a < b ? a : b);
	size_t best = rb->n_rs;
	for (size_t i = 0; i < rb->n_rs; i++)
		if (rb->rs[i].shard == rb->m->shards[H].id &&
		    (best == rb->n_rs || rb->rs[i].rows > rb->rs[best].rows))
			best = i;
	if (want == 0 || best == rb->n_rs || rb->rs[best].rows == 0)
		return 0;
	struct rb_step *st = &rb->steps[rb->n_steps];
	memset(st, 0, sizeof(*st));
	struct rb_range *x = &rb->rs[best];
	st->lo = x->lo;
	if ((double)x->rows > 1.2 * (double)want) {
		uint64_t at = split_point(x, want);
		if (at == 0 || !(x = split_range(rb, best, at)))
			return 0; /* cannot carve finer than one histogram bucket */
		st->split_at = at;
	}
	st->split_lo = st->lo;
	st->lo = x->lo;
	st->hi = x->hi;
	st->rows = x->rows;
	st->from = x->shard;
	st->to = rb->m->shards[L].id;
	x->shard = st->to;
	rb->n_steps++;
	return 1;
}

/* ---- output and running ---------------------------------------------------- */

static void print_plan(const struct ctl *ctl, struct rb *rb, const uint64_t *before,
		       uint64_t total, int dry)
{
	double mean = rb->m->n_shards ? (double)total / (double)rb->m->n_shards : 0;
	if (ctl->json) {
		struct ctl_json j;
		json_begin(&j);
		json_bool(&j, "dry_run", dry);
		json_double(&j, "mean_rows", mean);
		json_double(&j, "tolerance", rb->tol);
		json_arr(&j, "shards");
		for (size_t s = 0; s < rb->m->n_shards; s++) {
			json_obj(&j, NULL);
			json_int(&j, "id", rb->m->shards[s].id);
			json_uint(&j, "rows", before[s]);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_arr(&j, "steps");
		for (size_t i = 0; i < rb->n_steps; i++) {
			const struct rb_step *st = &rb->steps[i];
			json_obj(&j, NULL);
			if (st->split_at) {
				json_hex(&j, "split", st->split_lo);
				json_hex(&j, "at", st->split_at);
			}
			json_hex(&j, "range_lo", st->lo);
			json_hex(&j, "range_hi", st->hi);
			json_int(&j, "from", st->from);
			json_int(&j, "to", st->to);
			json_uint(&j, "rows", st->rows);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_end(&j);
		return;
	}
	printf("rows per shard (mean %.0f, tolerance %.0f%%):\n", mean, rb->tol * 100);
	for (size_t s = 0; s < rb->m->n_shards; s++)
		printf("  shard %d: %" PRIu64 "\n", rb->m->shards[s].id, before[s]);
	if (rb->n_steps == 0) {
		printf("balanced: every shard is within %.0f%% of the mean; nothing to do\n",
		       rb->tol * 100);
		return;
	}
	printf("plan (%zu step%s)%s:\n", rb->n_steps, rb->n_steps == 1 ? "" : "s",
	       dry ? " [dry run]" : "");
	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rb_step *st = &rb->steps[i];
		if (st->split_at)
			printf("  %zu. split %016" PRIx64 " at %016" PRIx64 "\n", i + 1, st->split_lo,
			       st->split_at);
		printf("  %zu. move %016" PRIx64 "..%016" PRIx64 " (%" PRIu64 " rows) shard %d -> %d\n",
		       i + 1, st->lo, st->hi, st->rows, st->from, st->to);
	}
	fflush(stdout);
}

static int run_plan(struct ctl *ctl, const struct rb *rb)
{
	struct ctl quiet = *ctl;
	quiet.json = 0;
	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rb_step *st = &rb->steps[i];
		char lo[17], at[17], to[16];
		int rc;
		if (st->split_at) {
			sm_hash_format(st->split_lo, lo);
			sm_hash_format(st->split_at, at);
			char *sargv[] = {lo, "--at", at, NULL};
			if ((rc = cmd_split(&quiet, 3, sargv)) != CTL_EXIT_OK)
				return ctl_fail("rebalance stopped at step %zu (split): fix the error "
						"above and run `shardctl rebalance` again",
						i + 1);
		}
		sm_hash_format(st->lo, lo);
		snprintf(to, sizeof(to), "%d", st->to);
		char *margv[] = {lo, "--to", to, NULL};
		if ((rc = cmd_move(&quiet, 3, margv)) != CTL_EXIT_OK)
			return ctl_fail("rebalance stopped at step %zu (move %s to shard %s): fix the "
					"error above and run `shardctl rebalance` again",
					i + 1, lo, to);
	}
	return CTL_EXIT_OK;
}

int cmd_rebalance(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_args a;
	const char *tol = NULL;
	int dry = 0, rc;
	ctl_args_init(&a, argc, argv, "rebalance");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--tolerance", &tol))
			continue;
		if (ctl_args_flag(&a, "--dry-run")) {
			dry = 1;
			continue;
		}
		rc = ctl_args_unknown(&a);
		break;
	}
	if (a.err)
		rc = CTL_EXIT_USAGE;
	else
		rc = CTL_EXIT_OK;
	if (ctl_args_done(ctl, rc, rebalance_help))
		return rc;
	long long pct = tol ? ctl_parse_uint(tol, 100) : 10;
	if (pct < 1)
		return ctl_usage("--tolerance needs a percentage 1..100, got '%s'", tol);
	struct rb rb = {.tol = (double)pct / 100.0};
	if ((rc = ctl_load_map(ctl, NULL, NULL, &rb.m)) != CTL_EXIT_OK)
		return rc;
	int err = rb_init(&rb);
	if (!err)
		err = count_all(&rb);
	if (err) {
		rb_free(&rb);
		return ctl_report(err, &rb.em, NULL);
	}
	size_t ns = rb.m->n_shards;
	uint64_t *load = calloc(ns ? ns : 1, sizeof(uint64_t)), *before = calloc(ns ? ns : 1, sizeof(uint64_t));
	uint64_t total = 0;
	if (!load || !before) {
		free(load);
		free(before);
		rb_free(&rb);
		return ctl_fail("out of memory");
	}
	loads(&rb, before, &total);
	while (rb.n_steps < RB_MAX_STEPS && plan_step(&rb, load))
		;
	print_plan(ctl, &rb, before, total, dry);
	rc = dry || rb.n_steps == 0 ? CTL_EXIT_OK : run_plan(ctl, &rb);
	if (!dry && rb.n_steps && rc == CTL_EXIT_OK && !ctl->json)
		printf("rebalance done: %zu step%s\n", rb.n_steps, rb.n_steps == 1 ? "" : "s");
	free(load);
	free(before);
	rb_free(&rb);
	return rc;
}
