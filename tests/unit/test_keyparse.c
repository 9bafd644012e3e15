/*
 * test_keyparse.c - differential tests of the key extractor's fast path
 * (kx_extract_fast) against the libpg_query path (kx_extract_parsed, in
 * router/keyparse.c), plus kx_extract()'s fallback.
 *
 * Invariant: whenever the fast path says KX_KEY, the parser must say KX_KEY
 * too with the same keys (hashes / $n, in order), the same statement kind,
 * write flag and table. The corpus is generated: shapes x key literals for
 * the bigint, text and uuid tables (>= 150 statements) plus quoting traps.
 * A seeded, bounded fuzz loop mutates corpus strings (truncation, byte
 * flips, insertions of quote/comment/paren characters, splices) and checks
 * the same invariant statement by statement (run it under MODE=asan too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kx_fixture.h"

struct keyspace {
	const char *table, *col, *co_table;
	const char *const *values;
};

static const char *const bigint_values[] = {"42",
					    "-7",
					    "'42'",
					    "' 13 '",
					    "$1",
					    "$2::bigint",
					    "42::int8",
					    "'9'::int4",
					    "$$5$$",
					    "9223372036854775807",
					    "-9223372036854775808",
					    "42.0",
					    "'abc'",
					    "1+1",
					    "$1::text",
					    "E'12'",
					    "+3",
					    NULL};
static const char *const text_values[] = {
    "'abc'",	    "'it''s'", "E'a\\nb'",   "E'\\x41z'",    "$q$x'y$q$", "$1",	   "'x'::text",
    "'y'::varchar", "42",      "E'\\u0041'", "'a'::char(3)", "''",	  "'Ünï'", NULL};
static const char *const uuid_values[] = {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
					  "'{A0EEBC999C0B4EF8BB6D6BB9BD380A11}'",
					  "$1::uuid",
					  "'zz'",
					  "$3",
					  NULL};

static const struct keyspace spaces[] = {
    {"orders", "order_id", "order_items", bigint_values},
    {"users", "user_id", "users", text_values},
    {"devices", "id", "devices", uuid_values},
};

/* T table, C key column, U co-located table, V value (every %s is V). */
static const char *const shapes[] = {
    "SELECT * FROM T WHERE C = %s",
    "SELECT * FROM T WHERE %s = C",
    "SELECT a, b FROM T t WHERE t.C = %s AND b > 1",
    "select * from T where x = 1 and C = %s order by 1 limit 5",
    "SELECT * FROM T WHERE C IN (%s, %s)",
    "SELECT * FROM T WHERE (C = %s AND y = 2)",
    "SELECT * FROM T WHERE C = %s OR y = 2",
    "UPDATE T SET s = 1 WHERE C = %s",
    "DELETE FROM T WHERE C = %s RETURNING *",
    "INSERT INTO T (C, s) VALUES (%s, 1)",
    "INSERT INTO T (s, C) VALUES (1, %s), (2, %s) ON CONFLICT DO NOTHING",
    "SELECT * FROM T WHERE C = %s FOR UPDATE",
    "EXPLAIN SELECT * FROM T WHERE C = %s",
    "SELECT count(*) FROM T t JOIN other o ON o.id = t.x WHERE t.C = %s",
    "/* c */ SELECT * FROM T WHERE C = %s -- tail",
    "SELECT * FROM T WHERE C = %s AND z IN (SELECT 1)",
    "WITH w AS (SELECT 1) SELECT * FROM T, w WHERE C = %s",
    "SELECT * FROM T WHERE C = %s AND s BETWEEN 1 AND 2",
    "UPDATE T SET C = %s WHERE C = 1",
    "SELECT * FROM T WHERE NOT C = %s",
    "SELECT * FROM T a JOIN U b USING (C) WHERE b.C = %s",
    "SELECT my_func(C) FROM T WHERE C = %s",
    "SELECT * FROM T WHERE C = %s AND f(C) > 0",
    "SELECT * FROM ONLY public.T WHERE T.C = %s",
    "DELETE FROM T USING other o WHERE o.id = T.x AND T.C = %s",
};

static const char *const extra[] = {
    "SELECT 'WHERE order_id = 1' FROM orders WHERE order_id = 2",
    "SELECT $$ order_id = 1 $$ FROM orders WHERE order_id = 3",
    "SELECT * FROM orders /* WHERE order_id = 1 */ WHERE order_id = 4",
    "SELECT * FROM orders WHERE \"order_id\" = 5",
    "SELECT * FROM orders WHERE \"ORDER_ID\" = 5",
    "SELECT * FROM \"orders\" o WHERE \"o\".order_id = 6",
    "SELECT * FROM orders WHERE order_id = 1 OR order_id = 2",
    "SELECT * FROM orders WHERE order_id = ANY('{1,2}')",
    "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = 1)",
    "SELECT * FROM orders WHERE order_id = 7 UNION SELECT * FROM orders WHERE order_id = 7",
    "INSERT INTO orders SELECT * FROM staging",
    "INSERT INTO orders VALUES (1)",
    "INSERT INTO orders (order_id) VALUES (DEFAULT)",
    "MERGE INTO orders o USING s ON o.order_id = s.id WHEN MATCHED THEN DELETE",
    "SELECT * FROM orders WHERE order_id = $1 AND order_id = $2",
    "SELECT * FROM orders, order_items WHERE orders.order_id = 8 AND order_items.order_id = 8",
    "SELECT * FROM orders o JOIN users u ON u.user_id = o.x WHERE o.order_id = 9",
    "SELECT * FROM (SELECT * FROM orders WHERE order_id = 10) s",
    "SELECT pg_advisory_lock(1) FROM orders WHERE order_id = 11",
    "SELECT substring(s FROM 2 FOR 3) FROM orders WHERE order_id = 12",
    "SELECT extract(epoch FROM t) FROM orders WHERE order_id = 13",
    "SELECT * FROM orders WHERE order_id = 14 AND s IS DISTINCT FROM 'x'",
    "SELECT * FROM orders WHERE order_id = 15 AND CASE WHEN a THEN b ELSE c END",
    "UPDATE orders o SET (a, b) = (1, 2) WHERE o.order_id = 16",
    "DELETE FROM orders WHERE order_id = 17 AND id IN (SELECT id FROM other)",
    "SELECT * FROM orders WHERE order_id = 18 FOR NO KEY UPDATE OF orders SKIP LOCKED",
    "EXPLAIN ANALYZE DELETE FROM orders WHERE order_id = 19",
    "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM orders WHERE order_id = 20",
    "SELECT * FROM generate_series(1, 3) g(x), orders WHERE order_id = 21",
    "SELECT * FROM orders WHERE order_id = 22 AND x = ANY(ARRAY[1, 2])",
    "SELECT * FROM orders o LEFT JOIN LATERAL (SELECT 1) s ON true WHERE o.order_id = 23",
    "SELECT * FROM orders WHERE order_id = 24 GROUP BY a HAVING count(*) > 1",
    "SELECT DISTINCT ON (a) a FROM orders WHERE order_id = 25 ORDER BY a",
    "SELECT * FROM orders WHERE order_id = 26 AND t > now() - interval '1 day'",
    "SELECT * FROM orders WHERE order_id = 27 AND s LIKE 'a%' ESCAPE '!'",
    "SELECT * FROM orders WHERE order_id = 28 AND s COLLATE \"C\" > 'a'",
    "SELECT * INTO TEMP tt FROM orders WHERE order_id = 29",
    "WITH d AS (DELETE FROM other RETURNING *) SELECT * FROM orders WHERE order_id = 30",
    "SELECT * FROM orders WHERE order_id = 31 AND x = (SELECT max(y) FROM other)",
    "SELECT * FROM orders WHERE order_id = 32 AND a::text = 'x'",
    "SELECT * FROM orders TABLESAMPLE SYSTEM (10) WHERE order_id = 33",
    "SELECT * FROM orders WHERE order_id = 34 WINDOW w AS (PARTITION BY a)",
    "SELECT * FROM orders WHERE order_id = 35 OFFSET 1 ROWS FETCH FIRST 2 ROWS ONLY",
    "SELECT a FROM orders WHERE order_id = 36 AND a = b AND (c OR d)",
    "UPDATE orders SET a = a || 'x' FROM other o WHERE o.id = orders.x AND order_id = 37",
    "SELECT * FROM orders WHERE ((order_id = 38))",
    "SELECT * FROM orders WHERE order_id = 39 AND (a = 1 AND (b = 2 OR c = 3))",
    "SELECT * FROM orders WHERE order_id = 40 AND NOT EXISTS (SELECT 1)",
    "SELECT * FROM orders WHERE order_id = E'4\\061'",
    "SELECT * FROM orders WHERE order_id = U&'42'",
};

#define CORPUS_MAX 1024
static char *corpus[CORPUS_MAX];
static size_t corpus_n;

/* Expand one shape for one key space. */
static void add_shape(const char *shape, const struct keyspace *ks, const char *v)
{
	char out[512];
	size_t o = 0;
	for (const char *p = shape; *p && o < sizeof(out) - 64; p++) {
		const char *ins = NULL;
		if (*p == 'T' && (p == shape || p[-1] == ' ' || p[-1] == '.') &&
		    (p[1] == ' ' || p[1] == '.' || p[1] == ',' || !p[1]))
			ins = ks->table;
		else if (*p == 'U' && p > shape && p[-1] == ' ' && p[1] == ' ')
			ins = ks->co_table;
		else if (*p == 'C' && p > shape && (p[-1] == ' ' || p[-1] == '.' || p[-1] == '(') &&
			 (p[1] == ' ' || p[1] == ',' || p[1] == ')'))
			ins = ks->col;
		else if (*p == '%' && p[1] == 's') {
			ins = v;
			p++;
		}
		if (ins) {
			size_t n = strlen(ins);
			memcpy(out + o, ins, n);
			o += n;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	if (corpus_n < CORPUS_MAX)
		corpus[corpus_n++] = strdup(out);
}

static int corpus_setup(void **state)
{
	(void)state;
	for (size_t s = 0; s < sizeof(spaces) / sizeof(spaces[0]); s++)
		for (size_t h = 0; h < sizeof(shapes) / sizeof(shapes[0]); h++)
			for (const char *const *v = spaces[s].values; *v; v++)
				add_shape(shapes[h], &spaces[s], *v);
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]) && corpus_n < CORPUS_MAX; i++)
		corpus[corpus_n++] = strdup(extra[i]);
	return 0;
}

static int corpus_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < corpus_n; i++)
		free(corpus[i]);
	corpus_n = 0;
	return 0;
}

struct diff_stats {
	unsigned total, fast_key, fast_no_key, fast_not_sure, parse_errors, missed_keys, compared;
};

/* Check one statement [off, fast.stmt_end) of sql. Returns false on a
 * disagreement (after printing it). */
static bool check_one(const char *sql, size_t len, size_t off, struct diff_stats *st, size_t *next,
		      bool verbose)
{
	struct kx_result f, p;
	assert_int_equal(kx_extract_fast(&kxf_env, sql, len, off, &f), 0);
	assert_true(f.stmt_end > off || f.stmt_end == len);
	assert_true(f.stmt_end <= len);
	assert_true(f.reason != NULL);
	*next = f.stmt_end;
	st->total++;
	bool ok = true;
	if (f.verdict == KX_NOT_SURE)
		st->fast_not_sure++;
	else if (f.verdict == KX_NO_KEY)
		st->fast_no_key++;
	else
		st->fast_key++;
	assert_int_equal(kx_extract_parsed(&kxf_env, sql + off, f.stmt_end - off, &p), 0);
	bool parse_error = p.reason && strncmp(p.reason, "parser: syntax", 14) == 0;
	st->parse_errors += parse_error;
	if (f.verdict == KX_NO_KEY && p.verdict == KX_KEY) {
		st->missed_keys++;
		if (verbose)
			printf("  note: fast NO_KEY (%s), parser KEY: %.*s\n", f.reason,
			       (int)(f.stmt_end - off), sql + off);
	}
	if (f.verdict == KX_KEY && !parse_error) {
		st->compared++;
		bool same = p.verdict == KX_KEY && p.n_keys == f.n_keys && p.stmt == f.stmt &&
			    p.is_write == f.is_write && p.table == f.table;
		for (uint32_t i = 0; same && i < f.n_keys; i++)
			same = f.keys[i].is_param == p.keys[i].is_param &&
			       (f.keys[i].is_param ? f.keys[i].param == p.keys[i].param
						   : f.keys[i].hash == p.keys[i].hash);
		if (!same) {
			printf("DISAGREE: %.*s\n  fast %s %s write=%d keys=%u (%s); parser %s %s "
			       "write=%d keys=%u (%s)\n",
			       (int)(f.stmt_end - off), sql + off, kx_verdict_name(f.verdict),
			       kx_stmt_name(f.stmt), f.is_write, f.n_keys, f.reason,
			       kx_verdict_name(p.verdict), kx_stmt_name(p.stmt), p.is_write,
			       p.n_keys, p.reason);
			ok = false;
		}
	}
	kx_result_destroy(&f);
	kx_result_destroy(&p);
	return ok;
}

static void test_keyparse_differential_corpus(void **state)
{
	(void)state;
	struct diff_stats st = {0};
	unsigned bad = 0;
	assert_true(corpus_n >= 150);
	for (size_t i = 0; i < corpus_n; i++) {
		size_t next;
		bad += !check_one(corpus[i], strlen(corpus[i]), 0, &st, &next, true);
	}
	printf("corpus: %u statements, fast KEY %u, NO_KEY %u, NOT_SURE %u; parser syntax "
	       "errors %u; fast NO_KEY where parser found a key %u; disagreements %u\n",
	       st.total, st.fast_key, st.fast_no_key, st.fast_not_sure, st.parse_errors,
	       st.missed_keys, bad);
	assert_int_equal(bad, 0);
	assert_true(st.fast_key >= 100); /* the corpus exercises the KEY path */
	assert_int_equal(st.missed_keys, 0);
}

static uint64_t rng_state;

static uint32_t rng(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 33);
}

/* One mutation of buf (len n, capacity cap); returns the new length. */
static size_t mutate(char *buf, size_t n, size_t cap)
{
	static const char alphabet[] = "'\"$()/*-;,.:= \nE\\0aOR19";
	uint32_t kind = rng() % 5;
	size_t pos = n ? rng() % n : 0;
	switch (kind) {
	case 0:
		return pos; /* truncate */
	case 1:
		if (n)
			buf[pos] = alphabet[rng() % (sizeof(alphabet) - 1)];
		return n;
	case 2:
		if (n)
			buf[pos] = (char)(rng() & 0xff);
		return n;
	case 3:
		if (n + 1 < cap) {
			memmove(buf + pos + 1, buf + pos, n - pos);
			buf[pos] = alphabet[rng() % (sizeof(alphabet) - 1)];
			n++;
		}
		return n;
	default: { /* splice: append a piece of another corpus entry after ';' or not */
		const char *o = corpus[rng() % corpus_n];
		size_t on = strlen(o), take = on ? rng() % on : 0;
		if (n + take + 2 < cap) {
			if (rng() & 1)
				buf[n++] = ';';
			memcpy(buf + n, o + (on - take), take);
			n += take;
		}
		return n;
	}
	}
}

static void test_keyparse_fuzz(void **state)
{
	(void)state;
	struct diff_stats st = {0};
	unsigned bad = 0;
	char buf[2048];
	rng_state = 20240601;
	for (int iter = 0; iter < 30000; iter++) {
		const char *src = corpus[rng() % corpus_n];
		size_t n = strlen(src);
		memcpy(buf, src, n);
		for (uint32_t m = 1 + (rng() % 4 == 0); m > 0; m--)
			n = mutate(buf, n, sizeof(buf));
		/* Not NUL-terminated on purpose: put garbage after the end. */
		if (n < sizeof(buf))
			buf[n] = '\'';
		size_t off = 0;
		int guard = 0;
		do {
			size_t next;
			bad += !check_one(buf, n, off, &st, &next, false);
			assert_true(next > off || next == n);
			off = next;
		} while (off < n && ++guard < 100);
		struct kx_result r;
		assert_int_equal(kx_extract(&kxf_env, buf, n, 0, &r), 0);
		kx_result_destroy(&r);
	}
	printf("fuzz: %u statements, fast KEY %u (%u compared with a valid parse), parser syntax "
	       "errors %u, disagreements %u\n",
	       st.total, st.fast_key, st.compared, st.parse_errors, bad);
	assert_int_equal(bad, 0);
}

static void test_keyparse_fallback(void **state)
{
	(void)state;
	struct kx_result r;
	const char *sql = "SELECT * FROM orders WHERE order_id = 1 OR order_id = 2; SELECT 1";
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_true(r.used_parser);
	assert_int_equal(r.verdict, KX_KEY);
	assert_int_equal(r.n_keys, 2);
	assert_true(r.keys[0].hash == kxf_hash_int(1));
	assert_true(r.keys[1].hash == kxf_hash_int(2));
	assert_int_equal(r.stmt_end,
			 strlen("SELECT * FROM orders WHERE order_id = 1 OR order_id = 2;"));
	kx_result_destroy(&r);
	/* The fast path decides alone when it can. */
	sql = "SELECT * FROM orders WHERE order_id = 1";
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_false(r.used_parser);
	kx_result_destroy(&r);
	/* use_parser = false: NOT_SURE stays. */
	struct kx_env env = kxf_env;
	env.use_parser = false;
	sql = "SELECT * FROM users WHERE user_id = E'\\u0041'";
	assert_int_equal(kx_extract(&env, sql, strlen(sql), 0, &r), 0);
	assert_int_equal(r.verdict, KX_NOT_SURE);
	assert_false(r.used_parser);
	kx_result_destroy(&r);
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_text(SM_KEY_TEXT, "A"));
	kx_result_destroy(&r);
	/* Parser: key compared to a column is definitely no key. */
	sql = "SELECT * FROM orders WHERE order_id = customer_id";
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_int_equal(r.verdict, KX_NO_KEY);
	kx_result_destroy(&r);
	/* Syntax errors stay NOT_SURE with the parser's reason. */
	sql = "SELECT * FROM orders WHERE order_id = (1";
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_int_equal(r.verdict, KX_NOT_SURE);
	assert_true(r.used_parser);
	assert_string_equal(r.reason, "parser: syntax error");
	kx_result_destroy(&r);
	/* Many keys from the parser move to the caller's result. */
	sql = "SELECT * FROM orders WHERE order_id IN (1,2,3,4,5,6,7,8,9,10) OR order_id = 11";
	assert_int_equal(kx_extract(&kxf_env, sql, strlen(sql), 0, &r), 0);
	assert_int_equal(r.n_keys, 11);
	assert_true(r.keys[10].hash == kxf_hash_int(11));
	kx_result_destroy(&r);
}

static void test_keyparse_parsed_statements(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		enum kx_stmt stmt;
		bool write;
		unsigned flags;
	} cases[] = {
	    {"BEGIN READ ONLY", KX_STMT_BEGIN, false, 0},
	    {"LISTEN x", KX_STMT_LISTEN, false, KX_SESS_LISTEN},
	    {"CREATE TEMP TABLE t (a int)", KX_STMT_DDL, true, KX_SESS_TEMP_TABLE},
	    {"SELECT pg_advisory_lock(1)", KX_STMT_SELECT, true, KX_SESS_ADVISORY_LOCK},
	    {"SELECT * FROM t FOR SHARE", KX_STMT_SELECT, true, 0},
	    {"WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", KX_STMT_SELECT, true, 0},
	    {"EXPLAIN ANALYZE DELETE FROM t", KX_STMT_EXPLAIN, true, 0},
	    {"EXPLAIN DELETE FROM t", KX_STMT_EXPLAIN, false, 0},
	    {"COPY t FROM STDIN", KX_STMT_COPY, true, 0},
	    {"SET x = 1", KX_STMT_SET, false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kx_result r;
		assert_int_equal(
		    kx_extract_parsed(&kxf_env, cases[i].sql, strlen(cases[i].sql), &r), 0);
		if (r.stmt != cases[i].stmt || r.is_write != cases[i].write ||
		    r.session_flags != cases[i].flags)
			fail_msg("%s: %s write %d flags %#x", cases[i].sql, kx_stmt_name(r.stmt),
				 r.is_write, r.session_flags);
		kx_result_destroy(&r);
	}
	struct kx_result r;
	assert_int_equal(kx_extract_parsed(&kxf_env, "BEGIN READ ONLY", 15, &r), 0);
	assert_true(r.read_only_txn);
	kx_result_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keyparse_differential_corpus),
	    cmocka_unit_test(test_keyparse_fuzz),
	    cmocka_unit_test(test_keyparse_fallback),
	    cmocka_unit_test(test_keyparse_parsed_statements),
	};
	return cmocka_run_group_tests(tests, corpus_setup, corpus_teardown);
}
