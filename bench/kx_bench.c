/*
 * kx_bench.c - microbenchmark of routing a statement: key extraction (the
 * fast path, kx_extract_fast, which also hashes literal keys) plus the map
 * lookup of every key, in ns per statement over ~20 representative
 * statements (short and long, with comments, quotes, casts, IN lists,
 * multi-row INSERTs), next to the libpg_query path (kx_extract_parsed) for
 * comparison. Prints a table.
 * Usage: kx_bench [iterations-per-statement] (default 200000);
 *        kx_bench --only I N: statement I (1-based) N times on the fast path,
 *        no output (for instruction counts under callgrind: bench/routing.sh).
 * Single-threaded; timing only, no assertions (those live in tests/unit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/unit/kx_fixture.h"
#include "shardmap/map.h"

static const char *const stmts[] = {
    "SELECT * FROM orders WHERE order_id = 42",
    "SELECT * FROM orders WHERE order_id = $1",
    "select status, total from orders o where o.order_id = $1::bigint",
    "UPDATE orders SET status = 'paid' WHERE order_id = 42",
    "DELETE FROM orders WHERE order_id = -5 RETURNING order_id",
    "INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)",
    "INSERT INTO order_items (order_id, line_no, sku, qty) VALUES (7, 1, 'A-1', 2), "
    "(7, 2, 'B''2', 1), (7, 3, E'C\\n3', 5), (7, 4, $$D$$, 1)",
    "SELECT * FROM users WHERE user_id = 'alice@example.com'",
    "SELECT * FROM devices WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    "SELECT * FROM orders WHERE order_id IN (1, 2, 3, 4, 5, 6, 7, 8)",
    "/* app=web, shard_key=42 */ SELECT o.*, i.sku FROM orders o JOIN order_items i "
    "ON i.order_id = o.order_id WHERE o.order_id = 42 AND i.qty > 0 ORDER BY i.line_no",
    "SELECT count(*), sum(total) FROM orders -- nightly report\nWHERE order_id = 9 AND "
    "created_at > now() - interval '1 day' AND status <> 'void'",
    "SELECT * FROM orders WHERE order_id = 42 FOR UPDATE",
    "SELECT * FROM orders WHERE status = 'open'",
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "SET statement_timeout = 5000",
    "SELECT \"Order_Id\", 'it''s a \"quoted\" string; WHERE order_id = 1', $tag$ $$ $tag$ "
    "FROM orders WHERE order_id = '42' AND note = E'line\\nbreak'",
    "WITH recent AS (SELECT id FROM customers WHERE created_at > now() - interval '7 days') "
    "SELECT o.order_id, o.total, c.name FROM orders o JOIN customers c ON c.id = "
    "o.customer_id WHERE o.order_id = $1 AND o.status IN ('open', 'paid', 'shipped') AND "
    "c.id IN (SELECT id FROM recent) /* long one */ ORDER BY o.created_at DESC LIMIT 10",
    "SELECT * FROM orders WHERE order_id = 1 OR order_id = 2",
};

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static struct sm_map *bench_map; /* 16 shards, 16 ranges */
static volatile int32_t sink;

static void build_map(void)
{
	struct sr_errmsg em;
	bench_map = sm_map_new();
	if (!bench_map)
		abort();
	for (int32_t i = 0; i < 16; i++)
		if (sm_map_add_shard(bench_map, i, "host=127.0.0.1", NULL, 0, &em))
			abort();
	if (sm_map_init_ranges(bench_map, 16, &em))
		abort();
}

static double bench_fast(const char *sql, long iters, struct kx_result *out)
{
	size_t len = strlen(sql);
	double t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		if (kx_extract_fast(&kxf_env, sql, len, 0, out) != 0)
			abort();
		for (uint32_t k = 0; k < out->n_keys; k++)
			if (!out->keys[k].is_param)
				sink = sm_map_lookup(bench_map, out->keys[k].hash)->shard_id;
		kx_result_destroy(out);
	}
	return (now_ns() - t0) / (double)iters;
}

static double bench_parsed(const char *sql, long iters)
{
	struct kx_result r;
	size_t len = strlen(sql);
	double t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		if (kx_extract_parsed(&kxf_env, sql, len, &r) != 0)
			abort();
		kx_result_destroy(&r);
	}
	return (now_ns() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
	build_map();
	size_t n_stmts = sizeof(stmts) / sizeof(stmts[0]);
	if (argc == 4 && strcmp(argv[1], "--only") == 0) {
		long which = atol(argv[2]), reps = atol(argv[3]);
		if (which < 1 || (size_t)which > n_stmts || reps < 1)
			return 2;
		struct kx_result r;
		(void)bench_fast(stmts[which - 1], reps, &r);
		return 0;
	}
	long iters = argc > 1 ? atol(argv[1]) : 200000;
	if (iters < 1)
		iters = 1;
	long piters = iters / 20 > 0 ? iters / 20 : 1;
	double sum = 0, psum = 0, worst = 0;
	size_t n = sizeof(stmts) / sizeof(stmts[0]);
	printf("%-4s %5s %-9s %9s %11s  %s\n", "#", "bytes", "verdict", "fast ns", "parser ns",
	       "statement");
	for (size_t i = 0; i < n; i++) {
		struct kx_result r;
		(void)bench_fast(stmts[i], iters / 10 + 1, &r); /* warm up */
		double ns = bench_fast(stmts[i], iters, &r);
		if (kx_extract_fast(&kxf_env, stmts[i], strlen(stmts[i]), 0, &r) != 0)
			abort();
		const char *v = kx_verdict_name(r.verdict);
		kx_result_destroy(&r);
		double pns = bench_parsed(stmts[i], piters);
		sum += ns;
		psum += pns;
		if (ns > worst)
			worst = ns;
		printf("%-4zu %5zu %-9s %9.0f %11.0f  %.60s%s\n", i + 1, strlen(stmts[i]), v, ns,
		       pns, stmts[i], strlen(stmts[i]) > 60 ? "..." : "");
	}
	sm_map_free(bench_map);
	printf("mean fast path %.0f ns/op (worst %.0f), mean libpg_query path %.0f ns/op, "
	       "%ld iterations each\n",
	       sum / (double)n, worst, psum / (double)n, iters);
	return 0;
}
