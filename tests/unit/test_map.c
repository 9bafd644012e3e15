/*
 * test_map.c - cmocka tests for shardmap/map.c: validation of the range
 * tiling, O(log n) lookup at every boundary, equal-range init, split,
 * reassign, state changes, shard/table registration, clone and free.
 * Every failing edit must leave the map exactly as it was.
 * (The cache-file format is tested in test_mapfile.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shardmap/map.h"

/* A map with shards 0..n_shards-1 and, when n_ranges > 0, equal ranges. */
static struct sm_map *map_make(int n_shards, uint32_t n_ranges)
{
	struct sm_map *m = sm_map_new();
	assert_non_null(m);
	for (int i = 0; i < n_shards; i++) {
		char primary[64], replica[64];
		snprintf(primary, sizeof(primary), "host=p%d port=%d", i, 5500 + i);
		snprintf(replica, sizeof(replica), "host=r%d", i);
		const char *reps[] = {replica};
		assert_int_equal(sm_map_add_shard(m, i, primary, reps, 1, NULL), 0);
	}
	if (n_ranges)
		assert_int_equal(sm_map_init_ranges(m, n_ranges, NULL), 0);
	return m;
}

static void assert_maps_equal(const struct sm_map *a, const struct sm_map *b)
{
	assert_true(a->epoch == b->epoch);
	assert_int_equal(a->n_shards, b->n_shards);
	for (size_t i = 0; i < a->n_shards; i++) {
		const struct sm_shard *x = &a->shards[i], *y = &b->shards[i];
		assert_int_equal(x->id, y->id);
		assert_string_equal(x->primary, y->primary);
		assert_int_equal(x->n_replicas, y->n_replicas);
		for (size_t r = 0; r < x->n_replicas; r++)
			assert_string_equal(x->replicas[r], y->replicas[r]);
	}
	assert_int_equal(a->n_tables, b->n_tables);
	for (size_t i = 0; i < a->n_tables; i++) {
		assert_string_equal(a->tables[i].schema, b->tables[i].schema);
		assert_string_equal(a->tables[i].name, b->tables[i].name);
		assert_string_equal(a->tables[i].key_column, b->tables[i].key_column);
		assert_int_equal(a->tables[i].key_type, b->tables[i].key_type);
	}
	assert_int_equal(a->n_ranges, b->n_ranges);
	for (size_t i = 0; i < a->n_ranges; i++) {
		assert_true(a->ranges[i].lo == b->ranges[i].lo);
		assert_true(a->ranges[i].hi == b->ranges[i].hi);
		assert_int_equal(a->ranges[i].shard_id, b->ranges[i].shard_id);
		assert_int_equal(a->ranges[i].state, b->ranges[i].state);
		assert_true(a->ranges[i].read_lsn == b->ranges[i].read_lsn);
	}
}

static struct sm_map *map_snapshot(const struct sm_map *m)
{
	struct sm_map *c = NULL;
	assert_int_equal(sm_map_clone(m, &c), 0);
	return c;
}

static void expect_invalid(const struct sm_map *m, int want, const char *msg_part)
{
	struct sr_errmsg em = {{0}};
	int rc = sm_map_validate(m, &em);
	if (rc != want)
		fail_msg("validate: got %s want %s (%s)", sr_err_name(rc), sr_err_name(want),
			 em.text);
	if (msg_part && !strstr(em.text, msg_part))
		fail_msg("message \"%s\" lacks \"%s\"", em.text, msg_part);
}

static void test_map_free_null_and_new_empty(void **state)
{
	(void)state;
	sm_map_free(NULL);
	struct sm_map *m = sm_map_new();
	assert_non_null(m);
	assert_true(m->epoch == 0);
	assert_int_equal(m->n_shards + m->n_tables + m->n_ranges, 0);
	assert_null(sm_map_lookup(m, 0));
	assert_null(sm_map_lookup(m, UINT64_MAX));
	assert_null(sm_map_find_shard(m, 0));
	assert_null(sm_map_find_range(m, 0));
	assert_null(sm_map_find_table(m, NULL, "orders"));
	expect_invalid(m, SR_EGAP, "no ranges");
	sm_map_free(m);
}

static void test_map_init_ranges_one_covers_all(void **state)
{
	(void)state;
	struct sm_map *m = map_make(1, 1);
	assert_int_equal(m->n_ranges, 1);
	assert_true(m->ranges[0].lo == 0);
	assert_true(m->ranges[0].hi == UINT64_MAX);
	assert_int_equal(m->ranges[0].shard_id, 0);
	assert_int_equal(m->ranges[0].state, SM_RANGE_ACTIVE);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	assert_ptr_equal(sm_map_lookup(m, 0), &m->ranges[0]);
	assert_ptr_equal(sm_map_lookup(m, UINT64_MAX), &m->ranges[0]);
	sm_map_free(m);
}

static void test_map_init_ranges_three_and_four_exact(void **state)
{
	(void)state;
	/* 2^64 / 3 = 0x5555555555555555 (floor); 2^64 / 4 = 0x4000000000000000 */
	static const uint64_t lo3[] = {0, 0x5555555555555555u, 0xaaaaaaaaaaaaaaaau};
	static const uint64_t hi3[] = {0x5555555555555554u, 0xaaaaaaaaaaaaaaa9u, UINT64_MAX};
	static const uint64_t lo4[] = {0, 0x4000000000000000u, 0x8000000000000000u,
				       0xc000000000000000u};
	static const uint64_t hi4[] = {0x3fffffffffffffffu, 0x7fffffffffffffffu,
				       0xbfffffffffffffffu, UINT64_MAX};
	struct sm_map *m = map_make(4, 3);
	assert_int_equal(m->n_ranges, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(m->ranges[i].lo == lo3[i]);
		assert_true(m->ranges[i].hi == hi3[i]);
		assert_int_equal(m->ranges[i].shard_id, i);
	}
	assert_int_equal(sm_map_validate(m, NULL), 0);
	assert_int_equal(sm_map_init_ranges(m, 4, NULL), 0);
	assert_int_equal(m->n_ranges, 4);
	for (int i = 0; i < 4; i++) {
		assert_true(m->ranges[i].lo == lo4[i]);
		assert_true(m->ranges[i].hi == hi4[i]);
		assert_int_equal(m->ranges[i].shard_id, i);
		assert_int_equal(m->ranges[i].state, SM_RANGE_ACTIVE);
	}
	assert_int_equal(sm_map_validate(m, NULL), 0);
	sm_map_free(m);
}

static void test_map_init_ranges_many_tile(void **state)
{
	(void)state;
	static const uint32_t ns[] = {2, 5, 7, 16, 100, 255};
	struct sm_map *m = map_make(255, 0);
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
		assert_int_equal(sm_map_init_ranges(m, ns[k], NULL), 0);
		assert_int_equal(m->n_ranges, ns[k]);
		assert_int_equal(sm_map_validate(m, NULL), 0);
		/* equal sizes: all but the last are exactly floor(2^64/n) wide */
		uint64_t w0 = m->ranges[0].hi - m->ranges[0].lo;
		for (size_t i = 0; i + 1 < m->n_ranges; i++)
			assert_true(m->ranges[i].hi - m->ranges[i].lo == w0);
		assert_true(m->ranges[m->n_ranges - 1].hi - m->ranges[m->n_ranges - 1].lo >= w0);
		assert_true(m->ranges[m->n_ranges - 1].hi - m->ranges[m->n_ranges - 1].lo <
			    w0 + ns[k]);
	}
	sm_map_free(m);
}

static void test_map_init_ranges_errors_leave_map(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_init_ranges(m, 0, &em), SR_EINVAL);
	assert_maps_equal(m, snap);
	assert_int_equal(sm_map_init_ranges(m, 3, &em), SR_ENOTFOUND);
	assert_non_null(strstr(em.text, "shard 2"));
	assert_maps_equal(m, snap);
	assert_int_equal(sm_map_init_ranges(m, UINT32_MAX, &em), SR_ENOTFOUND);
	assert_maps_equal(m, snap);
	sm_map_free(snap);
	sm_map_free(m);
}

static void test_map_validate_detects_gap_overlap_owner(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	struct sm_range *r = m->ranges;

	r[1].lo++; /* gap of one hash right at the boundary */
	expect_invalid(m, SR_EGAP, "8000000000000000..8000000000000000");
	r[1].lo -= 2; /* overlap of one hash */
	expect_invalid(m, SR_EOVERLAP, "overlaps");
	r[1].lo++;
	r[0].lo = 1; /* nothing covers 0 */
	expect_invalid(m, SR_EGAP, "0000000000000000..0000000000000000");
	r[0].lo = 0;
	r[1].hi = UINT64_MAX - 1; /* nothing covers UINT64_MAX */
	expect_invalid(m, SR_EGAP, "ffffffffffffffff");
	r[1].hi = UINT64_MAX;
	r[1].shard_id = 7;
	expect_invalid(m, SR_ENOTFOUND, "unknown shard 7");
	r[1].shard_id = 1;
	r[0].hi = 0;
	r[0].lo = 5; /* lo > hi */
	expect_invalid(m, SR_EINVAL, "lo > hi");
	r[0].lo = 0;
	r[0].hi = 0x7fffffffffffffffu;
	assert_int_equal(sm_map_validate(m, NULL), 0);

	struct sm_range tmp = r[0]; /* unsorted */
	r[0] = r[1];
	r[1] = tmp;
	assert_int_not_equal(sm_map_validate(m, NULL), 0);
	r[1] = r[0];
	r[0] = tmp;
	assert_int_equal(sm_map_validate(m, NULL), 0);
	sm_map_free(m);
}

static void test_map_validate_detects_duplicates(void **state)
{
	(void)state;
	struct sm_map *m = map_make(3, 3);
	assert_int_equal(sm_map_add_table(m, NULL, "orders", "order_id", SM_KEY_BIGINT, NULL), 0);
	assert_int_equal(sm_map_add_table(m, NULL, "users", "id", SM_KEY_UUID, NULL), 0);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	m->shards[1].id = 0; /* as if built by hand with a duplicate id */
	expect_invalid(m, SR_EEXIST, "duplicate shard id 0");
	m->shards[1].id = 1;
	char *saved = m->tables[1].name;
	m->tables[1].name = m->tables[0].name;
	expect_invalid(m, SR_EEXIST, "duplicate table public.orders");
	m->tables[1].name = saved;
	assert_int_equal(sm_map_validate(m, NULL), 0);
	sm_map_free(m);
}

/* The range holding h by linear scan, for comparison with the lookup. */
static const struct sm_range *lookup_linear(const struct sm_map *m, uint64_t h)
{
	for (size_t i = 0; i < m->n_ranges; i++)
		if (m->ranges[i].lo <= h && h <= m->ranges[i].hi)
			return &m->ranges[i];
	return NULL;
}

static void test_map_lookup_boundaries(void **state)
{
	(void)state;
	struct sm_map *m = map_make(4, 4);
	assert_ptr_equal(sm_map_lookup(m, 0), &m->ranges[0]);
	assert_ptr_equal(sm_map_lookup(m, UINT64_MAX), &m->ranges[3]);
	for (size_t i = 0; i < 4; i++) {
		assert_ptr_equal(sm_map_lookup(m, m->ranges[i].lo), &m->ranges[i]);
		assert_ptr_equal(sm_map_lookup(m, m->ranges[i].hi), &m->ranges[i]);
		assert_ptr_equal(sm_map_lookup(m, m->ranges[i].lo + 1), &m->ranges[i]);
	}
	assert_ptr_equal(sm_map_lookup(m, 0x3fffffffffffffffu), &m->ranges[0]);
	assert_ptr_equal(sm_map_lookup(m, 0x4000000000000000u), &m->ranges[1]);
	assert_int_equal(sm_map_lookup(m, 0xc000000000000000u)->shard_id, 3);
	sm_map_free(m);
}

static uint64_t lcg_next(uint64_t *x)
{
	*x = *x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return *x ^ (*x >> 29);
}

static void test_map_lookup_many_ranges_matches_linear(void **state)
{
	(void)state;
	struct sm_map *m = map_make(4, 4);
	uint64_t x = 12345;
	for (int i = 0; i < 3000; i++) {
		uint64_t at = lcg_next(&x);
		const struct sm_range *r = sm_map_lookup(m, at);
		assert_non_null(r);
		if (r->lo == at)
			continue;
		uint64_t lo = r->lo, got = 0;
		assert_int_equal(sm_map_split(m, lo, at, &got, NULL), 0);
		assert_true(got == at);
		assert_int_equal(sm_map_reassign(m, at, (int32_t)(i % 4), NULL), 0);
	}
	assert_true(m->n_ranges > 2000);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	for (size_t i = 0; i < m->n_ranges; i++) {
		const struct sm_range *r = &m->ranges[i];
		assert_ptr_equal(sm_map_lookup(m, r->lo), r);
		assert_ptr_equal(sm_map_lookup(m, r->hi), r);
		assert_ptr_equal(sm_map_find_range(m, r->lo), r);
		if (r->lo != r->hi)
			assert_null(sm_map_find_range(m, r->lo + 1));
	}
	for (int i = 0; i < 2000; i++) {
		uint64_t h = lcg_next(&x);
		assert_ptr_equal(sm_map_lookup(m, h), lookup_linear(m, h));
	}
	sm_map_free(m);
}

static void test_map_split_midpoint_and_explicit(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	m->ranges[0].state = SM_RANGE_FROZEN;
	uint64_t at = 0;
	assert_int_equal(sm_map_split(m, 0, 0, &at, NULL), 0);
	assert_true(at == 0x4000000000000000u); /* 0 + 0x7fff.../2 + 1 */
	assert_int_equal(m->n_ranges, 3);
	assert_true(m->ranges[0].hi == 0x3fffffffffffffffu);
	assert_true(m->ranges[1].lo == 0x4000000000000000u);
	assert_true(m->ranges[1].hi == 0x7fffffffffffffffu);
	assert_int_equal(m->ranges[1].shard_id, 0);
	assert_int_equal(m->ranges[0].state, SM_RANGE_FROZEN);
	assert_int_equal(m->ranges[1].state, SM_RANGE_FROZEN);
	assert_int_equal(sm_map_validate(m, NULL), 0);

	/* explicit split point, and at == hi leaves a one-hash range on top */
	assert_int_equal(sm_map_split(m, 0x8000000000000000u, 0x9000000000000000u, NULL, NULL), 0);
	assert_int_equal(sm_map_split(m, 0x9000000000000000u, UINT64_MAX, &at, NULL), 0);
	assert_true(at == UINT64_MAX);
	assert_int_equal(m->n_ranges, 5);
	assert_true(m->ranges[4].lo == UINT64_MAX && m->ranges[4].hi == UINT64_MAX);
	assert_int_equal(m->ranges[4].shard_id, 1);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	assert_ptr_equal(sm_map_lookup(m, UINT64_MAX), &m->ranges[4]);

	/* midpoint of a two-hash range is its hi */
	assert_int_equal(sm_map_split(m, 0, 2, NULL, NULL), 0);
	assert_int_equal(sm_map_split(m, 0, 0, &at, NULL), 0);
	assert_true(at == 1);
	assert_true(m->ranges[0].lo == 0 && m->ranges[0].hi == 0);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	sm_map_free(m);
}

static void expect_split_error(struct sm_map *m, uint64_t lo, uint64_t at, int want)
{
	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	uint64_t out = 777;
	assert_int_equal(sm_map_split(m, lo, at, &out, &em), want);
	assert_true(out == 777);
	assert_true(strlen(em.text) > 0);
	assert_maps_equal(m, snap);
	sm_map_free(snap);
}

static void test_map_split_rejects_bad_points(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	uint64_t lo1 = 0x8000000000000000u;
	expect_split_error(m, lo1, lo1, SR_EINVAL);	/* at == lo */
	expect_split_error(m, lo1, lo1 - 1, SR_EINVAL); /* at < lo */
	expect_split_error(m, 0, lo1, SR_EINVAL);	/* at > hi */
	expect_split_error(m, 0, UINT64_MAX, SR_EINVAL);
	expect_split_error(m, 1, 5, SR_ENOTFOUND); /* no range starts at 1 */
	expect_split_error(m, lo1 + 1, lo1 + 5, SR_ENOTFOUND);
	struct sr_errmsg em;
	assert_int_equal(sm_map_split(m, lo1, lo1, NULL, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "8000000000000000..ffffffffffffffff"));
	/* a one-hash range cannot be split, not even at its midpoint */
	assert_int_equal(sm_map_split(m, lo1, UINT64_MAX, NULL, NULL), 0);
	expect_split_error(m, UINT64_MAX, 0, SR_EINVAL);
	assert_int_equal(sm_map_split(m, 0, 1, NULL, NULL), 0);
	expect_split_error(m, 0, 0, SR_EINVAL);
	struct sm_map *empty = sm_map_new();
	expect_split_error(empty, 0, 0, SR_ENOTFOUND);
	sm_map_free(empty);
	sm_map_free(m);
}

static void test_map_reassign_and_set_state(void **state)
{
	(void)state;
	struct sm_map *m = map_make(3, 2);
	uint64_t lo1 = 0x8000000000000000u;
	assert_int_equal(sm_map_reassign(m, lo1, 2, NULL), 0);
	assert_int_equal(sm_map_lookup(m, UINT64_MAX)->shard_id, 2);
	assert_int_equal(sm_map_set_state(m, lo1, SM_RANGE_FROZEN, NULL), 0);
	assert_int_equal(sm_map_find_range(m, lo1)->state, SM_RANGE_FROZEN);
	assert_int_equal(sm_map_validate(m, NULL), 0);

	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_reassign(m, lo1, 9, &em), SR_ENOTFOUND);
	assert_non_null(strstr(em.text, "shard 9"));
	assert_int_equal(sm_map_reassign(m, UINT64_MAX, 9, &em), SR_ENOTFOUND);
	assert_int_equal(sm_map_reassign(m, 5, 1, &em), SR_ENOTFOUND);
	assert_non_null(strstr(em.text, "0000000000000005"));
	assert_int_equal(sm_map_set_state(m, 5, SM_RANGE_ACTIVE, &em), SR_ENOTFOUND);
	assert_int_equal(sm_map_set_state(m, lo1, (enum sm_range_state)7, &em), SR_EINVAL);
	assert_maps_equal(m, snap);
	assert_int_equal(sm_map_set_state(m, lo1, SM_RANGE_ACTIVE, NULL), 0);
	assert_int_equal(sm_map_find_range(m, lo1)->state, SM_RANGE_ACTIVE);
	sm_map_free(snap);
	sm_map_free(m);
}

static void test_map_range_state_names(void **state)
{
	(void)state;
	enum sm_range_state s = SM_RANGE_ACTIVE;
	assert_string_equal(sm_range_state_name(SM_RANGE_ACTIVE), "active");
	assert_string_equal(sm_range_state_name(SM_RANGE_FROZEN), "frozen");
	assert_int_equal(sm_range_state_parse("frozen", &s, NULL), 0);
	assert_int_equal(s, SM_RANGE_FROZEN);
	assert_int_equal(sm_range_state_parse("active", &s, NULL), 0);
	assert_int_equal(s, SM_RANGE_ACTIVE);
	struct sr_errmsg em;
	assert_int_equal(sm_range_state_parse("moving", &s, &em), SR_EINVAL);
	assert_int_equal(s, SM_RANGE_ACTIVE);
	assert_non_null(strstr(em.text, "moving"));
	assert_int_equal(sm_range_state_parse(NULL, &s, NULL), SR_EINVAL);
}

static void test_map_add_shard_sorted_and_duplicates(void **state)
{
	(void)state;
	struct sm_map *m = sm_map_new();
	const char *reps[] = {"host=r1 port=1", "host=r2 port=2"};
	char primary[] = "host=p5";
	assert_int_equal(sm_map_add_shard(m, 5, primary, reps, 2, NULL), 0);
	assert_int_equal(sm_map_add_shard(m, 1, "host=p1", NULL, 0, NULL), 0);
	assert_int_equal(sm_map_add_shard(m, 3, "", NULL, 0, NULL), 0);
	primary[5] = 'X'; /* the map holds its own copies */
	assert_int_equal(m->n_shards, 3);
	assert_int_equal(m->shards[0].id, 1);
	assert_int_equal(m->shards[1].id, 3);
	assert_int_equal(m->shards[2].id, 5);
	const struct sm_shard *s = sm_map_find_shard(m, 5);
	assert_non_null(s);
	assert_string_equal(s->primary, "host=p5");
	assert_int_equal(s->n_replicas, 2);
	assert_string_equal(s->replicas[1], "host=r2 port=2");
	assert_ptr_not_equal(s->replicas[0], reps[0]);
	assert_null(sm_map_find_shard(m, 2));
	assert_null(sm_map_find_shard(m, 6));

	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_add_shard(m, 3, "host=other", NULL, 0, &em), SR_EEXIST);
	assert_non_null(strstr(em.text, "shard 3"));
	assert_int_equal(sm_map_add_shard(m, -1, "host=x", NULL, 0, &em), SR_EINVAL);
	assert_int_equal(sm_map_add_shard(m, 9, NULL, NULL, 0, &em), SR_EINVAL);
	const char *bad[] = {"host=a", NULL};
	assert_int_equal(sm_map_add_shard(m, 9, "host=x", bad, 2, &em), SR_EINVAL);
	assert_maps_equal(m, snap);
	sm_map_free(snap);
	sm_map_free(m);
}

static void test_map_add_table_sorted_and_find(void **state)
{
	(void)state;
	struct sm_map *m = sm_map_new();
	assert_int_equal(sm_map_add_table(m, NULL, "orders", "order_id", SM_KEY_BIGINT, NULL), 0);
	assert_int_equal(sm_map_add_table(m, "app", "orders", "id", SM_KEY_UUID, NULL), 0);
	assert_int_equal(
	    sm_map_add_table(m, "public", "order_items", "order_id", SM_KEY_BIGINT, NULL), 0);
	assert_int_equal(sm_map_add_table(m, "app", "users", "email", SM_KEY_TEXT, NULL), 0);
	assert_int_equal(m->n_tables, 4);
	/* sorted by (schema, name) */
	assert_string_equal(m->tables[0].schema, "app");
	assert_string_equal(m->tables[0].name, "orders");
	assert_string_equal(m->tables[1].name, "users");
	assert_string_equal(m->tables[2].name, "order_items");
	assert_string_equal(m->tables[3].schema, "public");
	assert_string_equal(m->tables[3].name, "orders");

	const struct sm_table *t = sm_map_find_table(m, NULL, "orders");
	assert_non_null(t);
	assert_string_equal(t->schema, "public"); /* public preferred */
	t = sm_map_find_table(m, "app", "orders");
	assert_non_null(t);
	assert_int_equal(t->key_type, SM_KEY_UUID);
	t = sm_map_find_table(m, NULL, "users"); /* any schema */
	assert_non_null(t);
	assert_string_equal(t->schema, "app");
	assert_null(sm_map_find_table(m, "public", "users"));
	assert_null(sm_map_find_table(m, NULL, "Orders"));
	assert_null(sm_map_find_table(m, NULL, "order"));
	/* counted names need no NUL */
	const char *sql = "app.orders_x";
	t = sm_map_find_table_n(m, sql, 3, sql + 4, 6);
	assert_non_null(t);
	assert_string_equal(t->key_column, "id");
	assert_null(sm_map_find_table_n(m, sql, 3, sql + 4, 8));
	t = sm_map_find_table_n(m, NULL, 0, "order_items!", 11);
	assert_non_null(t);
	assert_string_equal(t->name, "order_items");

	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_add_table(m, "public", "orders", "x", SM_KEY_TEXT, &em), SR_EEXIST);
	assert_non_null(strstr(em.text, "public.orders"));
	assert_int_equal(sm_map_add_table(m, NULL, "orders", "x", SM_KEY_TEXT, &em), SR_EEXIST);
	assert_int_equal(sm_map_add_table(m, NULL, "", "x", SM_KEY_TEXT, &em), SR_EINVAL);
	assert_int_equal(sm_map_add_table(m, NULL, "t", NULL, SM_KEY_TEXT, &em), SR_EINVAL);
	assert_int_equal(sm_map_add_table(m, NULL, "t", "k", (enum sm_key_type)0, &em), SR_EINVAL);
	assert_maps_equal(m, snap);
	sm_map_free(snap);
	sm_map_free(m);
}

static void test_map_clone_is_deep(void **state)
{
	(void)state;
	struct sm_map *m = map_make(3, 3);
	m->epoch = 41;
	assert_int_equal(sm_map_add_table(m, NULL, "orders", "order_id", SM_KEY_BIGINT, NULL), 0);
	struct sm_map *c = NULL;
	assert_int_equal(sm_map_clone(m, &c), 0);
	assert_maps_equal(m, c);
	assert_ptr_not_equal(c->shards[0].primary, m->shards[0].primary);
	assert_ptr_not_equal(c->shards[0].replicas[0], m->shards[0].replicas[0]);
	assert_ptr_not_equal(c->tables[0].name, m->tables[0].name);
	assert_ptr_not_equal(c->ranges, m->ranges);
	assert_int_equal(sm_map_split(c, 0, 0, NULL, NULL), 0);
	c->shards[0].primary[0] = 'X';
	assert_int_equal(m->n_ranges, 3);
	assert_string_equal(m->shards[0].primary, "host=p0 port=5500");
	sm_map_free(c);

	struct sm_map *e = sm_map_new();
	assert_int_equal(sm_map_clone(e, &c), 0);
	assert_maps_equal(e, c);
	sm_map_free(c);
	sm_map_free(e);
	sm_map_free(m);
}

static void test_map_set_read_lsn_and_split_keeps_it(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	assert_true(m->ranges[0].read_lsn == 0 && m->ranges[1].read_lsn == 0);
	assert_int_equal(sm_map_set_read_lsn(m, 0x8000000000000000u, 0x16B374D848u, NULL), 0);
	assert_true(m->ranges[1].read_lsn == 0x16B374D848u);
	assert_true(m->ranges[0].read_lsn == 0);
	/* both halves of a split keep the read LSN; the other range is untouched */
	assert_int_equal(sm_map_split(m, 0x8000000000000000u, 0xc000000000000000u, NULL, NULL), 0);
	assert_int_equal(m->n_ranges, 3);
	assert_true(m->ranges[1].read_lsn == 0x16B374D848u);
	assert_true(m->ranges[2].read_lsn == 0x16B374D848u);
	assert_true(m->ranges[0].read_lsn == 0);
	/* a clone keeps it */
	struct sm_map *c = map_snapshot(m);
	assert_maps_equal(m, c);
	assert_true(c->ranges[2].read_lsn == 0x16B374D848u);
	sm_map_free(c);
	/* cleared with 0 */
	assert_int_equal(sm_map_set_read_lsn(m, 0xc000000000000000u, 0, NULL), 0);
	assert_true(m->ranges[2].read_lsn == 0);
	assert_true(m->ranges[1].read_lsn == 0x16B374D848u);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	sm_map_free(m);
}

static void test_map_set_read_lsn_unknown_range_leaves_map(void **state)
{
	(void)state;
	struct sm_map *m = map_make(2, 2);
	struct sm_map *snap = map_snapshot(m);
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_set_read_lsn(m, 1, 42, &em), SR_ENOTFOUND);
	assert_non_null(strstr(em.text, "0000000000000001"));
	assert_maps_equal(m, snap);
	sm_map_free(snap);
	sm_map_free(m);
}

static void test_map_lsn_parse_and_format(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t v;
	} ok[] = {
	    {"0/0", 0},
	    {"16/B374D848", 0x16B374D848u},
	    {"16/b374d848", 0x16B374D848u},
	    {"FFFF/0", 0xFFFF00000000u},
	    {"FFFFFFFF/FFFFFFFF", UINT64_MAX},
	    {"0/1", 1},
	    {"000000ffffffffff", 0xffffffffffu},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 7;
		if (sm_lsn_parse(ok[i].text, strlen(ok[i].text), &v) != 0 || v != ok[i].v)
			fail_msg("\"%s\" parsed wrong", ok[i].text);
	}
	static const char *bad[] = {"", "/", "1/", "/1", "1//2", "g/0", "123456789/0",
				    "0/123456789", "0x1/2", "1/2 ", "ffff", "1-2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;
		if (sm_lsn_parse(bad[i], strlen(bad[i]), &v) != SR_EINVAL || v != 7)
			fail_msg("\"%s\" accepted", bad[i]);
	}
	/* counted: only n bytes are read */
	uint64_t v = 0;
	assert_int_equal(sm_lsn_parse("1/2XYZ", 3, &v), 0);
	assert_true(v == 0x100000002u);
	char buf[18];
	sm_lsn_format(0x16B374D848u, buf);
	assert_string_equal(buf, "16/B374D848");
	sm_lsn_format(0, buf);
	assert_string_equal(buf, "0/0");
	sm_lsn_format(UINT64_MAX, buf);
	assert_string_equal(buf, "FFFFFFFF/FFFFFFFF");
	assert_int_equal(sm_lsn_parse(buf, strlen(buf), &v), 0);
	assert_true(v == UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_free_null_and_new_empty),
	    cmocka_unit_test(test_map_init_ranges_one_covers_all),
	    cmocka_unit_test(test_map_init_ranges_three_and_four_exact),
	    cmocka_unit_test(test_map_init_ranges_many_tile),
	    cmocka_unit_test(test_map_init_ranges_errors_leave_map),
	    cmocka_unit_test(test_map_validate_detects_gap_overlap_owner),
	    cmocka_unit_test(test_map_validate_detects_duplicates),
	    cmocka_unit_test(test_map_lookup_boundaries),
	    cmocka_unit_test(test_map_lookup_many_ranges_matches_linear),
	    cmocka_unit_test(test_map_split_midpoint_and_explicit),
	    cmocka_unit_test(test_map_split_rejects_bad_points),
	    cmocka_unit_test(test_map_reassign_and_set_state),
	    cmocka_unit_test(test_map_range_state_names),
	    cmocka_unit_test(test_map_add_shard_sorted_and_duplicates),
	    cmocka_unit_test(test_map_add_table_sorted_and_find),
	    cmocka_unit_test(test_map_clone_is_deep),
	    cmocka_unit_test(test_map_set_read_lsn_and_split_keeps_it),
	    cmocka_unit_test(test_map_set_read_lsn_unknown_range_leaves_map),
	    cmocka_unit_test(test_map_lsn_parse_and_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
