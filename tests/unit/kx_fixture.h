/*
 * kx_fixture.h - the test/bench environment for the key extractor:
 * sharded tables orders(order_id bigint), order_items(order_id bigint),
 * users(user_id text), devices(id uuid) (schema public); everything else is
 * unsharded. Read-only functions: a short list of built-ins; everything else
 * (pg_advisory_lock, nextval, my_func ...) is unknown. Included by
 * tests/unit/test_keyextract.c, test_keyparse.c and bench/kx_bench.c.
 */
#ifndef SR_TESTS_KX_FIXTURE_H
#define SR_TESTS_KX_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "router/keyextract.h"
#include "shardmap/hash.h"
#include "shardmap/key.h"

static struct sm_table kxf_tables[] = {
    {"public", "orders", "order_id", SM_KEY_BIGINT},
    {"public", "order_items", "order_id", SM_KEY_BIGINT},
    {"public", "users", "user_id", SM_KEY_TEXT},
    {"public", "devices", "id", SM_KEY_UUID},
};

static int kxf_table_calls;

static const struct sm_table *kxf_table(void *ctx, const char *schema, size_t schema_len,
					const char *name, size_t name_len)
{
	(void)ctx;
	kxf_table_calls++;
	for (size_t i = 0; i < sizeof(kxf_tables) / sizeof(kxf_tables[0]); i++) {
		const struct sm_table *t = &kxf_tables[i];
		if (schema &&
		    (strlen(t->schema) != schema_len || memcmp(t->schema, schema, schema_len)))
			continue;
		if (strlen(t->name) == name_len && memcmp(t->name, name, name_len) == 0)
			return t;
	}
	return NULL;
}

static bool kxf_function_ro(void *ctx, const char *schema, size_t schema_len, const char *name,
			    size_t name_len)
{
	static const char *const ro[] = {"count",
					 "sum",
					 "min",
					 "max",
					 "now",
					 "lower",
					 "upper",
					 "length",
					 "abs",
					 "random",
					 "generate_series",
					 "date_trunc",
					 "array_agg",
					 "unnest",
					 "to_char",
					 NULL};
	(void)ctx;
	if (schema && !(schema_len == 10 && memcmp(schema, "pg_catalog", 10) == 0))
		return false;
	for (size_t i = 0; ro[i]; i++)
		if (strlen(ro[i]) == name_len && memcmp(ro[i], name, name_len) == 0)
			return true;
	return false;
}

static const struct kx_env kxf_env = {kxf_table, kxf_function_ro, NULL, true};

__attribute__((unused)) static uint64_t kxf_hash_int(int64_t v)
{
	struct sm_key k;
	sm_key_from_int64(v, &k);
	return sm_hash_key(&k);
}

__attribute__((unused)) static uint64_t kxf_hash_text(enum sm_key_type t, const char *s)
{
	struct sm_key k;
	if (sm_key_from_text(t, s, strlen(s), &k, NULL) != 0)
		return 0;
	return sm_hash_key(&k);
}

#endif
