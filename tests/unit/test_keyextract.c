/*
 * test_keyextract.c - cmocka tests for the fast path of the key extractor
 * (router/keyextract.c, keywhere.c over keylex.c): statement kinds, keys from
 * WHERE / IN / INSERT VALUES with literals, casts, parameters and signs,
 * quoting traps (strings, dollar quotes, quoted identifiers and comments that
 * contain fake conditions), the shapes that must NOT be routed by key,
 * functions, locking, SET/SHOW/BEGIN, session features, hints, and
 * multi-statement strings. Tables: see tests/unit/kx_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kx_fixture.h"
#include "router/keylex.h"

static void fast(const char *sql, struct kx_result *r)
{
	int rc = kx_extract_fast(&kxf_env, sql, strlen(sql), 0, r);
	if (rc != 0)
		fail_msg("kx_extract_fast(%s) = %d", sql, rc);
}

/* The fast path's verdict on sql, with r destroyed. */
static enum kx_verdict verdict_of(const char *sql)
{
	struct kx_result r;
	fast(sql, &r);
	enum kx_verdict v = r.verdict;
	kx_result_destroy(&r);
	return v;
}

static void expect_int_keys(const char *sql, const int64_t *v, uint32_t n)
{
	struct kx_result r;
	fast(sql, &r);
	if (r.verdict != KX_KEY)
		fail_msg("%s: %s (%s), want KEY", sql, kx_verdict_name(r.verdict), r.reason);
	assert_int_equal(r.n_keys, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_false(r.keys[i].is_param);
		assert_true(r.keys[i].hash == kxf_hash_int(v[i]));
	}
	kx_result_destroy(&r);
}

static void expect_key1(const char *sql, int64_t v)
{
	expect_int_keys(sql, &v, 1);
}

static void expect_param1(const char *sql, uint16_t p)
{
	struct kx_result r;
	fast(sql, &r);
	if (r.verdict != KX_KEY)
		fail_msg("%s: %s (%s), want KEY", sql, kx_verdict_name(r.verdict), r.reason);
	assert_int_equal(r.n_keys, 1);
	assert_true(r.keys[0].is_param);
	assert_int_equal(r.keys[0].param, p);
	kx_result_destroy(&r);
}

static void expect_not_key(const char *sql)
{
	enum kx_verdict v = verdict_of(sql);
	if (v == KX_KEY)
		fail_msg("%s: claimed a key", sql);
}

static void expect_verdict(const char *sql, enum kx_verdict want)
{
	struct kx_result r;
	fast(sql, &r);
	if (r.verdict != want)
		fail_msg("%s: %s (%s), want %s", sql, kx_verdict_name(r.verdict), r.reason,
			 kx_verdict_name(want));
	kx_result_destroy(&r);
}

/* ---- keys ---- */

static void test_keyextract_simple_where(void **state)
{
	(void)state;
	expect_key1("SELECT * FROM orders WHERE order_id = 42", 42);
	expect_key1("select * from ORDERS where ORDER_ID=42", 42);
	expect_key1("SELECT * FROM orders WHERE 42 = order_id", 42);
	expect_key1("SELECT * FROM public.orders WHERE order_id = 7 AND status = 'x'", 7);
	expect_key1("SELECT * FROM orders o WHERE o.order_id = 9 ORDER BY 1 LIMIT 3", 9);
	expect_key1("SELECT * FROM orders AS o WHERE status <> 'a' AND o.order_id = 9", 9);
	expect_key1("SELECT * FROM orders WHERE orders.order_id = 9", 9);
	expect_key1("SELECT * FROM orders WHERE public.orders.order_id = 9", 9);
	expect_key1("SELECT count(*) FROM orders WHERE order_id = 5 GROUP BY status", 5);
	expect_key1("SELECT * FROM orders WHERE (order_id = 5 AND status = 'a')", 5);
	expect_key1("SELECT * FROM orders WHERE x BETWEEN 1 AND 2 AND order_id = 3", 3);
	expect_key1("DELETE FROM orders WHERE order_id = 11 RETURNING *", 11);
	expect_key1("UPDATE orders SET status = 'x', total = total + 1 WHERE order_id = 12", 12);
	expect_key1("UPDATE orders o SET status = 'x' WHERE o.order_id = 12", 12);
}

static void test_keyextract_literal_forms(void **state)
{
	(void)state;
	expect_key1("SELECT * FROM orders WHERE order_id = -5", -5);
	expect_key1("SELECT * FROM orders WHERE order_id =-5", -5);
	expect_key1("SELECT * FROM orders WHERE order_id = '42'", 42);
	expect_key1("SELECT * FROM orders WHERE order_id = ' 42 '", 42);
	expect_key1("SELECT * FROM orders WHERE order_id = 42::bigint", 42);
	expect_key1("SELECT * FROM orders WHERE order_id = '42'::int8", 42);
	expect_key1("SELECT * FROM orders WHERE order_id = $$42$$", 42);
	expect_key1("SELECT * FROM orders WHERE order_id = 9223372036854775807", INT64_MAX);
	expect_param1("SELECT * FROM orders WHERE order_id = $1", 1);
	expect_param1("SELECT * FROM orders WHERE order_id = $12::bigint", 12);
	expect_param1("SELECT * FROM orders o WHERE o.order_id = $3", 3);
	/* Declined: decimals, out of range, wrong casts, not a number. */
	expect_verdict("SELECT * FROM orders WHERE order_id = 42.0", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = 4e1", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = 99999999999999999999", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = 'abc'", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = $1::text", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = '4'::numeric", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = 0x10", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE order_id = - -5", KX_NOT_SURE);
	struct kx_result r;
	fast("SELECT * FROM orders WHERE order_id = 'abc'", &r);
	assert_string_equal(r.reason, "key literal not valid for type");
	assert_int_equal(r.n_keys, 0);
	kx_result_destroy(&r);
}

static void test_keyextract_text_and_uuid_keys(void **state)
{
	(void)state;
	struct kx_result r;
	fast("SELECT * FROM users WHERE user_id = 'it''s'", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_text(SM_KEY_TEXT, "it's"));
	kx_result_destroy(&r);

	fast("SELECT * FROM users WHERE user_id = E'a\\'b\\\\c\\n\\x41'", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_text(SM_KEY_TEXT, "a'b\\c\nA"));
	kx_result_destroy(&r);

	fast("SELECT * FROM users WHERE user_id = $tag$a'b$tag$", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_text(SM_KEY_TEXT, "a'b"));
	kx_result_destroy(&r);

	fast("SELECT * FROM users WHERE user_id = 'Bob'::text", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_text(SM_KEY_TEXT, "Bob"));
	assert_true(r.keys[0].hash != kxf_hash_text(SM_KEY_TEXT, "bob"));
	kx_result_destroy(&r);

	fast("SELECT * FROM devices WHERE id = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash ==
		    kxf_hash_text(SM_KEY_UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11"));
	kx_result_destroy(&r);

	/* A number for a text key, \u escapes, U&'' and continued strings: declined. */
	expect_verdict("SELECT * FROM users WHERE user_id = 42", KX_NOT_SURE);
	expect_verdict("SELECT * FROM users WHERE user_id = E'\\u0041'", KX_NOT_SURE);
	expect_verdict("SELECT * FROM users WHERE user_id = U&'\\0041'", KX_NOT_SURE);
	expect_verdict("SELECT * FROM users WHERE user_id = 'a'\n'b'", KX_NOT_SURE);
	expect_verdict("SELECT * FROM devices WHERE id = 'not-a-uuid'", KX_NOT_SURE);
}

static void test_keyextract_in_list(void **state)
{
	(void)state;
	int64_t want[] = {1, -2, 3};
	expect_int_keys("SELECT * FROM orders WHERE order_id IN (1, -2, '3')", want, 3);
	struct kx_result r;
	fast("SELECT * FROM orders WHERE order_id IN (1, $2)", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_int_equal(r.n_keys, 2);
	assert_false(r.keys[0].is_param);
	assert_true(r.keys[1].is_param);
	assert_int_equal(r.keys[1].param, 2);
	kx_result_destroy(&r);
	/* Many keys spill to the heap. */
	char sql[512] = "SELECT * FROM orders WHERE order_id IN (";
	int64_t many[20];
	for (int i = 0; i < 20; i++) {
		many[i] = 100 + i;
		snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), "%s%d", i ? "," : "",
			 100 + i);
	}
	strcat(sql, ")");
	expect_int_keys(sql, many, 20);
	expect_not_key("SELECT * FROM orders WHERE order_id IN (SELECT 1)");
	expect_not_key("SELECT * FROM orders WHERE order_id IN (1, 2 + 3)");
	expect_not_key("SELECT * FROM orders WHERE order_id NOT IN (1, 2)");
	/* Two key conditions: both keys (the router sees two shards). */
	int64_t two[] = {1, 2};
	expect_int_keys("SELECT * FROM orders WHERE order_id = 1 AND order_id = 2", two, 2);
}

static void test_keyextract_must_not_route(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "SELECT * FROM orders WHERE order_id = 1 OR x = 2",
	    "SELECT * FROM orders WHERE x = 2 OR order_id = 1",
	    "SELECT * FROM orders WHERE order_id = 1 AND a = 1 OR b = 2",
	    "SELECT * FROM orders WHERE order_id = customer_id",
	    "SELECT * FROM orders WHERE x IN (SELECT y FROM t WHERE order_id = 1)",
	    "SELECT * FROM orders WHERE NOT (order_id = 1)",
	    "SELECT * FROM orders WHERE NOT order_id = 1",
	    "SELECT * FROM orders WHERE order_id <> 1",
	    "SELECT * FROM orders WHERE order_id != 1",
	    "SELECT * FROM orders WHERE order_id = 1 + 1",
	    "SELECT * FROM orders WHERE order_id = 1 * 2",
	    "SELECT * FROM orders WHERE f(order_id) = 1",
	    "SELECT * FROM orders WHERE abs(order_id) = 1",
	    "SELECT * FROM orders WHERE order_id IS DISTINCT FROM 1",
	    "SELECT * FROM orders WHERE order_id = 1 IS TRUE",
	    "SELECT * FROM orders WHERE order_id >= 1",
	    "SELECT * FROM orders WHERE order_id = ANY($1)",
	    "SELECT * FROM orders WHERE order_id = 1::numeric",
	    "SELECT * FROM orders WHERE order_id = (1)",
	    "SELECT * FROM orders WHERE order_id = 1 COLLATE \"C\"",
	    "SELECT * FROM orders WHERE a BETWEEN 1 AND order_id = 5",
	    "SELECT * FROM orders WHERE CASE WHEN a AND order_id = 5 THEN true END",
	    "SELECT * FROM orders WHERE (order_id = 1 OR order_id = 2)",
	    "SELECT * FROM orders WHERE order_id = (SELECT 1)",
	    "SELECT * FROM orders WHERE order_id = 1 UNION SELECT * FROM orders",
	    "SELECT * FROM orders WHERE \"ORDER_ID\" = 1",
	    "SELECT * FROM orders o WHERE x.order_id = 1",
	    "SELECT * FROM orders o, archive a WHERE a.order_id = 1",
	    "SELECT * FROM orders WHERE order_id = 1 AND EXISTS (SELECT 1 FROM order_items)",
	    "SELECT * FROM (SELECT * FROM orders WHERE order_id = 1) s",
	    "WITH x AS (SELECT * FROM orders WHERE order_id = 1) SELECT * FROM x",
	    "SELECT * FROM orders, users WHERE order_id = 1",
	    "UPDATE orders SET order_id = 2 WHERE order_id = 1",
	    "UPDATE orders SET (status, order_id) = ('a', 2) WHERE order_id = 1",
	    "SELECT * FROM orders WHERE order_id = 1 = true",
	    "SELECT * FROM orders WHERE order_id = 'a' 'b'",
	    "SELECT * FROM orders WHERE order_id = bigint '5'",
	    "SELECT * FROM orders WHERE order_id[1] = 5",
	    "SELECT * FROM orders WHERE order_id = 5 AT TIME ZONE 'UTC'",
	    "SELECT * FROM orders WHERE order_id = $1 || 'x'",
	    "SELECT * FROM orders WHERE order_id = 'unterminated",
	    "MERGE INTO orders o USING src s ON o.order_id = 1 WHEN MATCHED THEN DELETE",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_not_key(bad[i]);
	expect_verdict("SELECT * FROM orders WHERE order_id = 1 OR x = 2", KX_NOT_SURE);
	expect_verdict("SELECT * FROM orders WHERE a = 1 OR b = 2", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders WHERE status = 'x'", KX_NO_KEY);
	expect_verdict("SELECT 1", KX_NO_KEY);
	expect_verdict("SELECT * FROM customers WHERE order_id = 1", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders WHERE order_id = customer_id", KX_NOT_SURE);
	expect_verdict("UPDATE orders SET order_id = 2 WHERE order_id = 1", KX_NOT_SURE);
}

static void test_keyextract_quoting_traps(void **state)
{
	(void)state;
	/* Conditions inside strings, dollar quotes and comments are not conditions. */
	expect_verdict("SELECT 'WHERE order_id = 1' FROM orders", KX_NO_KEY);
	expect_verdict("SELECT E'it\\'s WHERE order_id = 1' FROM orders", KX_NO_KEY);
	expect_verdict("SELECT $$ WHERE order_id = 1 $$ FROM orders", KX_NO_KEY);
	expect_verdict("SELECT $q$ x $$ WHERE order_id = 1 $q$ FROM orders", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders /* WHERE order_id = 1 */", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders /* a /* WHERE order_id = 1 */ still */", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders -- WHERE order_id = 1", KX_NO_KEY);
	expect_verdict("SELECT * FROM orders WHERE \"order_id \" = 1", KX_NO_KEY);
	/* The real condition after the traps is found, with the right value. */
	expect_key1("SELECT '; order_id = 1' FROM orders /* order_id = 2 */ WHERE order_id = 3", 3);
	expect_key1("SELECT $a$ ' $a$ AS x FROM orders WHERE order_id = 4", 4);
	expect_key1("SELECT E'\\\\' AS x FROM orders WHERE order_id = 5", 5);
	expect_key1("SELECT * FROM orders WHERE \"order_id\" = 6", 6);
	expect_key1("SELECT * FROM \"orders\" WHERE order_id = 7", 7);
	expect_key1("SELECT * FROM orders WHERE order_id = 8 /* nested /* */ */", 8);
	expect_key1("SELECT * FROM orders WHERE order_id =/**/9", 9);
	/* A quoted ORDER_ID is another column; "Orders" is another table. */
	expect_verdict("SELECT * FROM orders WHERE \"ORDER_ID\" = 1", KX_NO_KEY);
	expect_verdict("SELECT * FROM \"Orders\" WHERE order_id = 1", KX_NO_KEY);
	/* Unterminated quotes and comments: not sure, and the rest is swallowed. */
	struct kx_result r;
	const char *s = "SELECT * FROM orders WHERE order_id = 1 /* open; SELECT 2";
	fast(s, &r);
	assert_int_equal(r.verdict, KX_NOT_SURE);
	assert_int_equal(r.stmt_end, strlen(s));
	kx_result_destroy(&r);
	expect_verdict("SELECT $x$ abc FROM orders WHERE order_id = 1", KX_NOT_SURE);
}

static void test_keyextract_insert(void **state)
{
	(void)state;
	expect_key1("INSERT INTO orders (order_id, status) VALUES (42, 'new')", 42);
	expect_key1("INSERT INTO orders (status, order_id) VALUES ('a,b', '43') RETURNING *", 43);
	expect_key1("insert into public.orders(status,order_id) values (lower('X'), -44)", -44);
	int64_t rows[] = {1, 2, 3};
	expect_int_keys(
	    "INSERT INTO orders (order_id, total) VALUES (1, 1.5), (2, f(1, 2)), (3, 0)", rows, 3);
	struct kx_result r;
	fast("INSERT INTO orders (status, order_id) VALUES ($1, $2), ($3, $4)", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_int_equal(r.n_keys, 2);
	assert_int_equal(r.keys[0].param, 2);
	assert_int_equal(r.keys[1].param, 4);
	assert_true(r.is_write);
	assert_int_equal(r.stmt, KX_STMT_INSERT);
	assert_ptr_equal(r.table, &kxf_tables[0]);
	kx_result_destroy(&r);
	expect_key1("INSERT INTO orders (order_id) VALUES (5) ON CONFLICT (order_id) DO NOTHING",
		    5);
	expect_key1("INSERT INTO orders AS o (order_id, n) VALUES (6, 1) ON CONFLICT (order_id) "
		    "DO UPDATE SET n = o.n + 1",
		    6);
	expect_verdict("INSERT INTO orders (order_id) VALUES (5) ON CONFLICT (order_id) "
		       "DO UPDATE SET order_id = 6",
		       KX_NOT_SURE);
	expect_verdict("INSERT INTO orders VALUES (1, 'x')", KX_NOT_SURE);
	expect_verdict("INSERT INTO orders (status) VALUES ('x')", KX_NO_KEY);
	expect_verdict("INSERT INTO orders (order_id) VALUES (DEFAULT)", KX_NOT_SURE);
	expect_verdict("INSERT INTO orders (order_id) VALUES (nextval('s'))", KX_NOT_SURE);
	expect_verdict("INSERT INTO orders (order_id) VALUES (1 + 1)", KX_NOT_SURE);
	expect_verdict("INSERT INTO orders (order_id, a) VALUES (1)", KX_NOT_SURE);
	expect_verdict("INSERT INTO orders (order_id) SELECT order_id FROM staging", KX_NO_KEY);
	expect_verdict("INSERT INTO orders DEFAULT VALUES", KX_NO_KEY);
	expect_verdict("INSERT INTO archive (order_id) VALUES (1)", KX_NO_KEY);
	expect_verdict("INSERT INTO users (user_id) VALUES (42)", KX_NOT_SURE);
}

static void test_keyextract_joins(void **state)
{
	(void)state;
	expect_key1("SELECT * FROM orders o JOIN order_items i ON i.order_id = o.order_id "
		    "WHERE o.order_id = 42",
		    42);
	expect_key1("SELECT * FROM orders o LEFT OUTER JOIN order_items AS i USING (order_id) "
		    "WHERE i.order_id = 43",
		    43);
	struct kx_result r;
	fast("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.order_id = 1",
	     &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.names_unsharded);
	assert_ptr_equal(r.table, &kxf_tables[0]);
	assert_false(r.mixed_colocation);
	kx_result_destroy(&r);
	fast("SELECT * FROM orders o JOIN users u ON u.user_id = o.x WHERE o.order_id = 1", &r);
	assert_int_not_equal(r.verdict, KX_KEY);
	assert_true(r.mixed_colocation);
	kx_result_destroy(&r);
	/* Table functions and subqueries in FROM: aliases with column lists. */
	fast("SELECT * FROM orders o CROSS JOIN generate_series(1, 3) AS g(n) WHERE o.order_id = 2",
	     &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_false(r.is_write);
	assert_int_equal(r.unknown_function[0], '\0');
	kx_result_destroy(&r);
	fast("DELETE FROM orders o USING archive a WHERE o.order_id = 3 AND a.id = o.id", &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.names_unsharded);
	kx_result_destroy(&r);
}

static void test_keyextract_joins_params(void **state)
{
	(void)state;
	struct kx_result r;
	fast("SELECT * FROM orders o, order_items i WHERE o.order_id = i.order_id AND "
	     "i.order_id = $1::int8 AND o.order_id = 44",
	     &r);
	assert_int_equal(r.verdict, KX_KEY);
	assert_int_equal(r.n_keys, 2);
	assert_true(r.keys[0].is_param);
	assert_true(r.keys[1].hash == kxf_hash_int(44));
	kx_result_destroy(&r);
}

/* ---- statement kinds and flags ---- */

struct kind_case {
	const char *sql;
	enum kx_stmt stmt;
	bool is_write;
};

static void test_keyextract_statement_kinds(void **state)
{
	(void)state;
	static const struct kind_case cases[] = {
	    {"  ;", KX_STMT_EMPTY, false},
	    {"/* only */ -- comments", KX_STMT_EMPTY, false},
	    {"SELECT 1", KX_STMT_SELECT, false},
	    {"VALUES (1), (2)", KX_STMT_SELECT, false},
	    {"TABLE orders", KX_STMT_SELECT, false},
	    {"WITH x AS (SELECT 1) SELECT * FROM x", KX_STMT_SELECT, false},
	    {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", KX_STMT_SELECT, true},
	    {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", KX_STMT_INSERT, true},
	    {"SELECT * FROM t FOR UPDATE", KX_STMT_SELECT, true},
	    {"SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", KX_STMT_SELECT, true},
	    {"SELECT * FROM t FOR SHARE", KX_STMT_SELECT, true},
	    {"SELECT * FROM t FOR KEY SHARE", KX_STMT_SELECT, true},
	    {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", KX_STMT_SELECT, true},
	    {"SELECT * INTO newt FROM t", KX_STMT_SELECT, true},
	    {"SELECT substring(a FROM 1 FOR 2) FROM t", KX_STMT_SELECT, false},
	    {"SELECT extract(year FROM now()) FROM t", KX_STMT_SELECT, false},
	    {"SELECT a IS DISTINCT FROM b FROM t", KX_STMT_SELECT, false},
	    {"INSERT INTO t VALUES (1)", KX_STMT_INSERT, true},
	    {"UPDATE t SET a = 1", KX_STMT_UPDATE, true},
	    {"DELETE FROM t", KX_STMT_DELETE, true},
	    {"MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", KX_STMT_MERGE, true},
	    {"BEGIN", KX_STMT_BEGIN, false},
	    {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", KX_STMT_BEGIN, false},
	    {"COMMIT", KX_STMT_COMMIT, false},
	    {"END", KX_STMT_COMMIT, false},
	    {"COMMIT PREPARED 'x'", KX_STMT_OTHER, true},
	    {"ROLLBACK", KX_STMT_ROLLBACK, false},
	    {"ABORT", KX_STMT_ROLLBACK, false},
	    {"ROLLBACK TO SAVEPOINT a", KX_STMT_SAVEPOINT, false},
	    {"SAVEPOINT a", KX_STMT_SAVEPOINT, false},
	    {"RELEASE SAVEPOINT a", KX_STMT_SAVEPOINT, false},
	    {"SET x = 1", KX_STMT_SET, false},
	    {"RESET ALL", KX_STMT_RESET, false},
	    {"SHOW search_path", KX_STMT_SHOW, false},
	    {"DISCARD ALL", KX_STMT_DISCARD, false},
	    {"PREPARE p AS SELECT 1", KX_STMT_PREPARE, false},
	    {"EXECUTE p(1)", KX_STMT_EXECUTE, true},
	    {"DEALLOCATE p", KX_STMT_DEALLOCATE, false},
	    {"LISTEN ch", KX_STMT_LISTEN, false},
	    {"UNLISTEN *", KX_STMT_UNLISTEN, false},
	    {"NOTIFY ch, 'x'", KX_STMT_NOTIFY, true},
	    {"COPY orders FROM STDIN", KX_STMT_COPY, true},
	    {"COPY orders (a, b) TO STDOUT", KX_STMT_COPY, false},
	    {"COPY (SELECT 1) TO STDOUT", KX_STMT_COPY, false},
	    {"CREATE TABLE x (a int)", KX_STMT_DDL, true},
	    {"ALTER TABLE orders ADD COLUMN z int", KX_STMT_DDL, true},
	    {"DROP TABLE IF EXISTS x", KX_STMT_DDL, true},
	    {"TRUNCATE orders", KX_STMT_DDL, true},
	    {"GRANT SELECT ON orders TO bob", KX_STMT_DDL, true},
	    {"EXPLAIN SELECT 1", KX_STMT_EXPLAIN, false},
	    {"EXPLAIN DELETE FROM t", KX_STMT_EXPLAIN, false},
	    {"EXPLAIN ANALYZE DELETE FROM t", KX_STMT_EXPLAIN, true},
	    {"EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", KX_STMT_EXPLAIN, true},
	    {"EXPLAIN (ANALYZE false) UPDATE t SET a = 1", KX_STMT_EXPLAIN, false},
	    {"EXPLAIN ANALYZE SELECT 1", KX_STMT_EXPLAIN, false},
	    {"CALL p(1)", KX_STMT_CALL, true},
	    {"DO $$ BEGIN END $$", KX_STMT_DO, true},
	    {"LOCK TABLE orders IN EXCLUSIVE MODE", KX_STMT_LOCK, true},
	    {"DECLARE c CURSOR FOR SELECT 1", KX_STMT_DECLARE, false},
	    {"FETCH 10 FROM c", KX_STMT_CURSOR, false},
	    {"CLOSE c", KX_STMT_CURSOR, false},
	    {"VACUUM orders", KX_STMT_MAINT, true},
	    {"CHECKPOINT", KX_STMT_MAINT, true},
	    {"FROBNICATE everything", KX_STMT_OTHER, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kx_result r;
		fast(cases[i].sql, &r);
		if (r.stmt != cases[i].stmt || r.is_write != cases[i].is_write)
			fail_msg("%s: stmt %s write %d, want %s write %d", cases[i].sql,
				 kx_stmt_name(r.stmt), r.is_write, kx_stmt_name(cases[i].stmt),
				 cases[i].is_write);
		kx_result_destroy(&r);
	}
}

static void test_keyextract_explain_and_cursor_keys(void **state)
{
	(void)state;
	struct kx_result r;
	fast("EXPLAIN ANALYZE UPDATE orders SET a = 1 WHERE order_id = 3", &r);
	assert_int_equal(r.stmt, KX_STMT_EXPLAIN);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_int(3));
	kx_result_destroy(&r);
	fast("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM orders WHERE order_id = 4", &r);
	assert_int_equal(r.stmt, KX_STMT_DECLARE);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.session_flags & KX_SESS_WITH_HOLD);
	kx_result_destroy(&r);
	fast("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", &r);
	assert_false(r.session_flags & KX_SESS_WITH_HOLD);
	kx_result_destroy(&r);
}

static void test_keyextract_functions(void **state)
{
	(void)state;
	struct kx_result r;
	fast("SELECT count(*), lower(status), now() FROM orders WHERE order_id = 1", &r);
	assert_false(r.is_write);
	assert_int_equal(r.unknown_function[0], '\0');
	kx_result_destroy(&r);
	fast("SELECT coalesce(a, 1), nullif(a, 2), greatest(1, 2), CAST(a AS numeric(10, 2)), "
	     "a::varchar(3), exists(SELECT 1), a IN (1, 2), ARRAY(SELECT 1), ROW(1, 2) FROM t",
	     &r);
	assert_false(r.is_write);
	assert_int_equal(r.unknown_function[0], '\0');
	kx_result_destroy(&r);
	fast("SELECT My_Schema.Do_Things(1), other(2) FROM orders WHERE order_id = 1", &r);
	assert_true(r.is_write);
	assert_string_equal(r.unknown_function, "my_schema.do_things");
	assert_int_equal(r.verdict, KX_KEY); /* still routed by key, to the primary */
	kx_result_destroy(&r);
	fast("SELECT \"MyFunc\"(1)", &r);
	assert_true(r.is_write);
	assert_string_equal(r.unknown_function, "MyFunc");
	kx_result_destroy(&r);
	fast("SELECT pg_advisory_lock(1)", &r);
	assert_true(r.session_flags & KX_SESS_ADVISORY_LOCK);
	assert_true(r.is_write);
	kx_result_destroy(&r);
	fast("SELECT pg_try_advisory_lock_shared(1)", &r);
	assert_true(r.session_flags & KX_SESS_ADVISORY_LOCK);
	kx_result_destroy(&r);
	fast("SELECT pg_advisory_xact_lock(1)", &r);
	assert_false(r.session_flags & KX_SESS_ADVISORY_LOCK);
	kx_result_destroy(&r);
	/* Not calls: INSERT column lists, CTE column lists, aliases, types. */
	fast("WITH x(a, b) AS (SELECT 1, 2) SELECT * FROM x AS y(c, d)", &r);
	assert_false(r.is_write);
	kx_result_destroy(&r);
}

static void test_keyextract_set_show(void **state)
{
	(void)state;
	struct kx_result r;
	fast("SET search_path TO a, \"B\"", &r);
	assert_int_equal(r.stmt, KX_STMT_SET);
	assert_int_equal(r.set_name_len, 11);
	assert_memory_equal(r.set_name, "search_path", 11);
	assert_int_equal(r.set_value_len, 6);
	assert_memory_equal(r.set_value, "a, \"B\"", 6);
	assert_false(r.set_local);
	kx_result_destroy(&r);
	fast("SET TIME ZONE 'UTC'", &r);
	assert_int_equal(r.set_name_len, 8);
	assert_memory_equal(r.set_name, "timezone", 8);
	assert_memory_equal(r.set_value, "'UTC'", 5);
	kx_result_destroy(&r);
	fast("SET Statement_Timeout = 5000;", &r);
	assert_memory_equal(r.set_name, "statement_timeout", 17);
	assert_int_equal(r.set_value_len, 4);
	assert_memory_equal(r.set_value, "5000", 4);
	kx_result_destroy(&r);
	fast("SET LOCAL x = 1", &r);
	assert_true(r.set_local);
	assert_int_equal(r.set_name_len, 1);
	kx_result_destroy(&r);
	fast("SET SESSION x TO DEFAULT", &r);
	assert_false(r.set_local);
	assert_memory_equal(r.set_value, "DEFAULT", 7);
	kx_result_destroy(&r);
	fast("SET shardrouter.shard_key = '42'", &r);
	assert_int_equal(r.set_name_len, 21);
	assert_memory_equal(r.set_name, "shardrouter.shard_key", 21);
	assert_int_equal(r.set_value_len, 4);
	assert_memory_equal(r.set_value, "'42'", 4);
	kx_result_destroy(&r);
	fast("SET shardrouter.shard = 1", &r);
	assert_memory_equal(r.set_name, "shardrouter.shard", 17);
	assert_memory_equal(r.set_value, "1", 1);
	kx_result_destroy(&r);
	fast("RESET ALL", &r);
	assert_int_equal(r.stmt, KX_STMT_RESET);
	assert_memory_equal(r.set_name, "all", 3);
	kx_result_destroy(&r);
	fast("RESET statement_timeout", &r);
	assert_memory_equal(r.set_name, "statement_timeout", 17);
	kx_result_destroy(&r);
	fast("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", &r);
	assert_true(r.read_only_txn);
	kx_result_destroy(&r);
	fast("START TRANSACTION READ WRITE", &r);
	assert_false(r.read_only_txn);
	kx_result_destroy(&r);
}

static void test_keyextract_session_flags(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		unsigned flag;
	} cases[] = {
	    {"LISTEN ch", KX_SESS_LISTEN},
	    {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", KX_SESS_WITH_HOLD},
	    {"PREPARE p (int) AS SELECT $1", KX_SESS_PREPARE},
	    {"CREATE TEMP TABLE t (a int)", KX_SESS_TEMP_TABLE},
	    {"CREATE TEMPORARY TABLE t (a int)", KX_SESS_TEMP_TABLE},
	    {"CREATE LOCAL TEMPORARY TABLE t (a int)", KX_SESS_TEMP_TABLE},
	    {"SELECT * INTO TEMP t FROM x", KX_SESS_TEMP_TABLE},
	    {"SELECT pg_advisory_lock(42)", KX_SESS_ADVISORY_LOCK},
	    {"CREATE TABLE t (a int)", 0},
	    {"PREPARE TRANSACTION 'x'", 0},
	    {"SELECT 'LISTEN x'", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kx_result r;
		fast(cases[i].sql, &r);
		if (r.session_flags != cases[i].flag)
			fail_msg("%s: flags %#x want %#x", cases[i].sql, r.session_flags,
				 cases[i].flag);
		kx_result_destroy(&r);
	}
}

static void test_keyextract_hints(void **state)
{
	(void)state;
	struct kx_result r;
	fast("/* shard_key=42 */ SELECT * FROM orders", &r);
	assert_int_equal(r.hint_key_len, 2);
	assert_memory_equal(r.hint_key, "42", 2);
	assert_false(r.has_hint_shard);
	kx_result_destroy(&r);
	fast("SELECT * FROM users /* shard_key='a b' */", &r);
	assert_int_equal(r.hint_key_len, 3);
	assert_memory_equal(r.hint_key, "a b", 3);
	kx_result_destroy(&r);
	fast("SELECT 1 -- shard=3\n", &r);
	assert_true(r.has_hint_shard);
	assert_int_equal(r.hint_shard, 3);
	assert_null(r.hint_key);
	kx_result_destroy(&r);
	fast("SELECT 1 /* app=x shard_key = 7, shard=2 */", &r);
	assert_memory_equal(r.hint_key, "7", 1);
	assert_int_equal(r.hint_key_len, 1);
	assert_int_equal(r.hint_shard, 2);
	kx_result_destroy(&r);
	/* Not hints: inside strings, or a longer word. */
	fast("SELECT '/* shard_key=1 */', 'shard=2' /* myshard=3 */", &r);
	assert_null(r.hint_key);
	assert_false(r.has_hint_shard);
	kx_result_destroy(&r);
	fast("SELECT 1 /* shard=x */", &r);
	assert_false(r.has_hint_shard);
	kx_result_destroy(&r);
}

static void test_keyextract_multi_statement(void **state)
{
	(void)state;
	const char *sql = "SELECT * FROM orders WHERE order_id = 1; SELECT ';' /* ; */;"
			  "INSERT INTO orders (order_id) VALUES (3) ;  ";
	size_t len = strlen(sql), off = 0;
	struct kx_result r;
	assert_int_equal(kx_extract_fast(&kxf_env, sql, len, off, &r), 0);
	assert_int_equal(r.verdict, KX_KEY);
	assert_true(r.keys[0].hash == kxf_hash_int(1));
	assert_int_equal(r.stmt_end, strlen("SELECT * FROM orders WHERE order_id = 1;"));
	off = r.stmt_end;
	kx_result_destroy(&r);
	assert_int_equal(kx_extract_fast(&kxf_env, sql, len, off, &r), 0);
	assert_int_equal(r.stmt, KX_STMT_SELECT);
	assert_int_equal(r.verdict, KX_NO_KEY);
	assert_int_equal(sql[r.stmt_end - 1], ';');
	assert_true(r.stmt_end > off + 15);
	off = r.stmt_end;
	kx_result_destroy(&r);
	assert_int_equal(kx_extract_fast(&kxf_env, sql, len, off, &r), 0);
	assert_int_equal(r.stmt, KX_STMT_INSERT);
	assert_true(r.keys[0].hash == kxf_hash_int(3));
	off = r.stmt_end;
	kx_result_destroy(&r);
	assert_int_equal(kx_extract_fast(&kxf_env, sql, len, off, &r), 0);
	assert_int_equal(r.stmt, KX_STMT_EMPTY);
	assert_int_equal(r.stmt_end, len);
	kx_result_destroy(&r);
	/* Not NUL-terminated: len bounds the text. */
	const char *cut = "SELECT * FROM orders WHERE order_id = 12345";
	assert_int_equal(kx_extract_fast(&kxf_env, cut, strlen(cut) - 3, 0, &r), 0);
	assert_true(r.keys[0].hash == kxf_hash_int(12));
	kx_result_destroy(&r);
	/* BEGIN ATOMIC bodies keep their semicolons. */
	const char *fn = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
			 "SELECT CASE WHEN true THEN 2 END; END; SELECT 3";
	assert_int_equal(kx_extract_fast(&kxf_env, fn, strlen(fn), 0, &r), 0);
	assert_int_equal(r.stmt, KX_STMT_DDL);
	assert_int_equal(r.stmt_end, strlen(fn) - strlen(" SELECT 3"));
	kx_result_destroy(&r);
}

static void test_keyextract_tables(void **state)
{
	(void)state;
	struct kx_result r;
	fast("SELECT 1", &r);
	assert_false(r.names_table);
	assert_null(r.table);
	kx_result_destroy(&r);
	fast("SELECT * FROM customers", &r);
	assert_true(r.names_table);
	assert_true(r.names_unsharded);
	assert_null(r.table);
	kx_result_destroy(&r);
	fast("WITH x AS (SELECT 1) SELECT * FROM x", &r);
	assert_false(r.names_unsharded); /* a CTE is not a table */
	kx_result_destroy(&r);
	fast("SELECT * FROM orders WHERE order_id = 1", &r);
	assert_true(r.names_table);
	assert_false(r.names_unsharded);
	assert_ptr_equal(r.table, &kxf_tables[0]);
	assert_string_equal(r.reason, "key in WHERE");
	kx_result_destroy(&r);
	fast("TRUNCATE orders, order_items", &r);
	assert_ptr_equal(r.table, &kxf_tables[0]);
	assert_int_equal(r.verdict, KX_NO_KEY);
	kx_result_destroy(&r);
	fast("SELECT * FROM devices d JOIN users u ON true", &r);
	assert_true(r.mixed_colocation);
	kx_result_destroy(&r);
	fast("SELECT * FROM orders WHERE order_id = 1 /* FROM users */", &r);
	assert_false(r.mixed_colocation);
	kx_result_destroy(&r);
}

static void test_keyextract_keywords_case_insensitive(void **state)
{
	(void)state;
	assert_int_equal(kl_keyword("SeLeCt", 6), KW_SELECT);
	assert_int_equal(kl_keyword("selectx", 7), KW_NONE);
	assert_int_equal(kl_keyword("where", 5), KW_WHERE);
	assert_int_equal(kl_keyword("", 0), KW_NONE);
	expect_key1("sElEcT * FrOm OrDeRs WhErE oRdEr_Id = 1", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keyextract_simple_where),
	    cmocka_unit_test(test_keyextract_literal_forms),
	    cmocka_unit_test(test_keyextract_text_and_uuid_keys),
	    cmocka_unit_test(test_keyextract_in_list),
	    cmocka_unit_test(test_keyextract_must_not_route),
	    cmocka_unit_test(test_keyextract_quoting_traps),
	    cmocka_unit_test(test_keyextract_insert),
	    cmocka_unit_test(test_keyextract_joins),
	    cmocka_unit_test(test_keyextract_joins_params),
	    cmocka_unit_test(test_keyextract_statement_kinds),
	    cmocka_unit_test(test_keyextract_explain_and_cursor_keys),
	    cmocka_unit_test(test_keyextract_functions),
	    cmocka_unit_test(test_keyextract_set_show),
	    cmocka_unit_test(test_keyextract_session_flags),
	    cmocka_unit_test(test_keyextract_hints),
	    cmocka_unit_test(test_keyextract_multi_statement),
	    cmocka_unit_test(test_keyextract_tables),
	    cmocka_unit_test(test_keyextract_keywords_case_insensitive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
