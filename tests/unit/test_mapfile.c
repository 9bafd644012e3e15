/*
 * test_mapfile.c - cmocka tests for shardmap/mapfile.c: the map cache file
 * (format version 1 in shardmap/map.h). Pins the exact bytes of a
 * hand-written file, round-trips awkward conninfo strings, and checks that
 * corrupt, truncated, wrong-version and invalid files are refused without
 * touching the output. File tests run in a private mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shardmap/hash.h"
#include "shardmap/map.h"

/*
 * A cache file written by hand (also in tests/fixtures/shardmap_cache_v1.map).
 * Its checksum was computed independently of this library: the lines before
 * "checksum" were written to head.txt with printf '%s\n' ... and hashed with
 * `xxhsum -H3 head.txt` (Debian xxhash 0.8.1) -> 9c71146c40022bf1.
 */
static const char fixture_v1[] = "shardrouter-map 1\n"
				 "epoch 7\n"
				 "shard 0 host=127.0.0.1%20port=5501%20dbname=shop\n"
				 "replica 0 host=127.0.0.1%20port=5502%20dbname=shop\n"
				 "shard 1 host=127.0.0.1%20port=5511%20password=%27a%20b%25c%27\n"
				 "table public order_items order_id bigint\n"
				 "table public orders order_id bigint\n"
				 "range 0000000000000000 7fffffffffffffff 0 active\n"
				 "range 8000000000000000 bfffffffffffffff 1 frozen\n"
				 "range c000000000000000 ffffffffffffffff 0 active\n"
				 "checksum 9c71146c40022bf1\n";

static struct sm_map *sentinel(void)
{
	return (struct sm_map *)(uintptr_t)0x5eed;
}

static struct sm_map *parse_ok(const char *buf, size_t len)
{
	struct sm_map *m = NULL;
	struct sr_errmsg em = {{0}};
	int rc = sm_map_deserialize(buf, len, &m, &em);
	if (rc != 0)
		fail_msg("deserialize: %s: %s", sr_err_name(rc), em.text);
	return m;
}

static void expect_parse_error(const char *buf, size_t len, int want, const char *msg_part)
{
	struct sm_map *m = sentinel();
	struct sr_errmsg em = {{0}};
	int rc = sm_map_deserialize(buf, len, &m, &em);
	if (rc != want)
		fail_msg("got %s want %s (%s) for:\n%.*s", sr_err_name(rc), sr_err_name(want),
			 em.text, (int)len, buf);
	assert_ptr_equal(m, sentinel());
	if (msg_part && !strstr(em.text, msg_part))
		fail_msg("message \"%s\" lacks \"%s\"", em.text, msg_part);
}

/* body + a correct checksum line, in a malloc'd buffer. */
static char *with_checksum(const char *body, size_t *len)
{
	size_t n = strlen(body);
	char *buf = malloc(n + 32);
	assert_non_null(buf);
	memcpy(buf, body, n);
	char hex[SM_HASH_HEX_LEN + 1];
	sm_hash_format(sm_hash_bytes(body, n), hex);
	*len = n + (size_t)sprintf(buf + n, "checksum %s\n", hex);
	return buf;
}

static void expect_body_error(const char *body, int want, const char *msg_part)
{
	size_t len;
	char *buf = with_checksum(body, &len);
	expect_parse_error(buf, len, want, msg_part);
	free(buf);
}

static void test_mapfile_fixture_parses(void **state)
{
	(void)state;
	struct sm_map *m = parse_ok(fixture_v1, strlen(fixture_v1));
	assert_true(m->epoch == 7);
	assert_int_equal(m->n_shards, 2);
	assert_string_equal(m->shards[0].primary, "host=127.0.0.1 port=5501 dbname=shop");
	assert_int_equal(m->shards[0].n_replicas, 1);
	assert_string_equal(m->shards[0].replicas[0], "host=127.0.0.1 port=5502 dbname=shop");
	assert_string_equal(m->shards[1].primary, "host=127.0.0.1 port=5511 password='a b%c'");
	assert_int_equal(m->shards[1].n_replicas, 0);
	assert_int_equal(m->n_tables, 2);
	assert_string_equal(m->tables[1].name, "orders");
	assert_int_equal(m->tables[1].key_type, SM_KEY_BIGINT);
	assert_int_equal(m->n_ranges, 3);
	assert_int_equal(m->ranges[1].shard_id, 1);
	assert_int_equal(m->ranges[1].state, SM_RANGE_FROZEN);
	for (size_t i = 0; i < m->n_ranges; i++)
		assert_true(m->ranges[i].read_lsn == 0); /* lines without the field */
	assert_int_equal(sm_map_lookup(m, UINT64_MAX)->shard_id, 0);
	sm_map_free(m);
}

static void test_mapfile_serialize_reproduces_fixture_bytes(void **state)
{
	(void)state;
	struct sm_map *m = parse_ok(fixture_v1, strlen(fixture_v1));
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(sm_map_serialize(m, &out, &len, NULL), 0);
	assert_int_equal(len, strlen(fixture_v1));
	assert_string_equal(out, fixture_v1);
	free(out);
	sm_map_free(m);
}

static struct sm_map *awkward_map(void)
{
	struct sm_map *m = sm_map_new();
	assert_non_null(m);
	m->epoch = UINT64_MAX;
	const char *reps[] = {"host=r1 password='it''s 100%'", "", "a\\b\"c\td\ne\r%25 é"};
	assert_int_equal(
	    sm_map_add_shard(m, 0, "host=p0 options='-c x=1' application_name=%", reps, 3, NULL),
	    0);
	assert_int_equal(sm_map_add_shard(m, 2147483647, "", NULL, 0, NULL), 0);
	assert_int_equal(sm_map_add_table(m, "My Schema", "Odd%Name", "key col", SM_KEY_UUID, NULL),
			 0);
	assert_int_equal(sm_map_add_table(m, NULL, "users", "email", SM_KEY_TEXT, NULL), 0);
	assert_int_equal(sm_map_add_shard(m, 1, "host=p1", NULL, 0, NULL), 0);
	assert_int_equal(sm_map_init_ranges(m, 2, NULL), 0);
	assert_int_equal(sm_map_split(m, 0, 0, NULL, NULL), 0);
	assert_int_equal(sm_map_reassign(m, 0x4000000000000000u, 2147483647, NULL), 0);
	assert_int_equal(sm_map_set_state(m, 0x8000000000000000u, SM_RANGE_FROZEN, NULL), 0);
	assert_int_equal(sm_map_validate(m, NULL), 0);
	return m;
}

static void test_mapfile_roundtrip_awkward_strings(void **state)
{
	(void)state;
	struct sm_map *m = awkward_map();
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(sm_map_serialize(m, &buf, &len, NULL), 0);
	assert_int_equal(strlen(buf), len);
	/* one record per line: no raw spaces, quotes or newlines leaked */
	assert_non_null(
	    strstr(buf, "shard 0 host=p0%20options=%27-c%20x=1%27%20application_name=%25\n"));
	assert_non_null(strstr(buf, "replica 0 \n"));
	assert_non_null(strstr(buf, "table My%20Schema Odd%25Name key%20col uuid\n"));
	assert_non_null(strstr(buf, "range 4000000000000000 7fffffffffffffff 2147483647 active\n"));
	assert_non_null(strstr(buf, "range 8000000000000000 ffffffffffffffff 1 frozen\n"));
	assert_non_null(strstr(buf, "epoch 18446744073709551615\n"));
	struct sm_map *back = parse_ok(buf, len);
	assert_true(back->epoch == UINT64_MAX);
	assert_int_equal(back->n_shards, 3);
	assert_int_equal(back->shards[0].n_replicas, 3);
	assert_string_equal(back->shards[0].replicas[2], "a\\b\"c\td\ne\r%25 é");
	assert_string_equal(back->shards[0].replicas[1], "");
	assert_string_equal(back->shards[2].primary, "");
	assert_string_equal(back->tables[0].schema, "My Schema");
	assert_int_equal(back->n_ranges, 3);
	assert_int_equal(back->ranges[1].shard_id, 2147483647);
	char *again = NULL;
	size_t again_len = 0;
	assert_int_equal(sm_map_serialize(back, &again, &again_len, NULL), 0);
	assert_int_equal(again_len, len);
	assert_memory_equal(again, buf, len);
	free(again);
	free(buf);
	sm_map_free(back);
	sm_map_free(m);
}

static void test_mapfile_checksum_mismatch_is_corrupt(void **state)
{
	(void)state;
	char *buf = strdup(fixture_v1);
	assert_non_null(buf);
	char *e = strstr(buf, "epoch 7");
	e[6] = '8';
	expect_parse_error(buf, strlen(buf), SR_ECORRUPT, "checksum");
	e[6] = '7';
	char *ck = strstr(buf, "checksum ") + 9;
	ck[0] = ck[0] == '0' ? '1' : '0';
	expect_parse_error(buf, strlen(buf), SR_ECORRUPT, "checksum");
	free(buf);
}

static void test_mapfile_wrong_version_is_corrupt(void **state)
{
	(void)state;
	char *buf = strdup(fixture_v1);
	assert_non_null(buf);
	buf[16] = '2'; /* "shardrouter-map 2" */
	expect_parse_error(buf, strlen(buf), SR_ECORRUPT, "version \"2\"");
	free(buf);
	expect_body_error("shardrouter-map 10\nepoch 1\n", SR_ECORRUPT, "version");
	expect_body_error("shardrouter-map \nepoch 1\n", SR_ECORRUPT, "version");
	expect_parse_error("hello\n", 6, SR_ECORRUPT, "not a shardrouter map");
	expect_parse_error("", 0, SR_ECORRUPT, NULL);
}

static void test_mapfile_every_truncation_is_corrupt(void **state)
{
	(void)state;
	size_t n = strlen(fixture_v1);
	for (size_t len = 0; len < n; len++) {
		char *cut = malloc(len + 1); /* exact size so ASan sees overreads */
		assert_non_null(cut);
		memcpy(cut, fixture_v1, len);
		expect_parse_error(cut, len, SR_ECORRUPT, NULL);
		free(cut);
	}
	/* trailing bytes after the checksum line */
	char longer[sizeof(fixture_v1) + 8];
	snprintf(longer, sizeof(longer), "%sepoch 9\n", fixture_v1);
	expect_parse_error(longer, strlen(longer), SR_ECORRUPT, NULL);
	/* an embedded NUL */
	char *nul = strdup(fixture_v1);
	nul[20] = '\0';
	expect_parse_error(nul, n, SR_ECORRUPT, "NUL");
	free(nul);
}

static void test_mapfile_bad_records_are_corrupt(void **state)
{
	(void)state;
	const char *head = "shardrouter-map 1\nepoch 1\nshard 0 a\n";
	const char *tail = "range 0000000000000000 ffffffffffffffff 0 active\n";
	const char *bad[] = {
	    "bogus 1\n",
	    "\n",
	    "epoch 2\n",
	    "replica 5 host=x\n",
	    "shard 0 dup\n",
	    "shard -1 x\n",
	    "shard 1 a b\n",
	    "shard 1 %G1\n",
	    "shard 1 ab%4\n",
	    "shard 1 a%00b\n",
	    "table public t k float8\n",
	    "table public t k\n",
	    "table public t%2 k text\n",
	    "range 0000000000000000 ffffffffffffff 0 active\n",
	    "range 000000000000000g ffffffffffffffff 0 active\n",
	    "range 0000000000000000 ffffffffffffffff 0 moving\n",
	    "range 0000000000000000 ffffffffffffffff 0 active x y\n",
	    "epoch 99999999999999999999\n",
	};
	char body[512];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body), "%s%s%s", head, bad[i], tail);
		expect_body_error(body, SR_ECORRUPT, "line");
	}
	expect_body_error("shardrouter-map 1\nshard 0 a\n"
			  "range 0000000000000000 ffffffffffffffff 0 active\n",
			  SR_ECORRUPT, "no epoch");
	/* a well-formed file must still hold a valid map */
	expect_body_error("shardrouter-map 1\nepoch 1\nshard 0 a\n"
			  "range 0000000000000000 7fffffffffffffff 0 active\n",
			  SR_EGAP, "ffffffffffffffff");
	expect_body_error("shardrouter-map 1\nepoch 1\nshard 0 a\n"
			  "range 0000000000000000 ffffffffffffffff 3 active\n",
			  SR_ENOTFOUND, "unknown shard 3");
	expect_body_error("shardrouter-map 1\nepoch 1\nshard 0 a\n", SR_EGAP, "no ranges");
	/* and the same body with a good record parses */
	size_t len;
	char *ok = with_checksum("shardrouter-map 1\nepoch 1\nshard 0 a\nreplica 0 b\n"
				 "range 0000000000000000 ffffffffffffffff 0 active\n",
				 &len);
	struct sm_map *m = parse_ok(ok, len);
	assert_string_equal(m->shards[0].replicas[0], "b");
	sm_map_free(m);
	free(ok);
}

/* ---- files ---- */

struct tmpdir {
	char dir[64];
	char path[128];
	char tmp[136];
};

static void test_mapfile_read_lsn_roundtrip_and_old_lines(void **state)
{
	(void)state;
	struct sm_map *m = parse_ok(fixture_v1, strlen(fixture_v1));
	assert_int_equal(sm_map_set_read_lsn(m, 0x8000000000000000u, 0x16B374D848u, NULL), 0);
	assert_int_equal(sm_map_set_read_lsn(m, 0xc000000000000000u, UINT64_MAX, NULL), 0);
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(sm_map_serialize(m, &buf, &len, NULL), 0);
	/* the field only where there is a read LSN; still format version 1 */
	assert_non_null(strstr(buf, "shardrouter-map 1\n"));
	assert_non_null(strstr(buf, "range 0000000000000000 7fffffffffffffff 0 active\n"));
	assert_non_null(strstr(buf, "range 8000000000000000 bfffffffffffffff 1 frozen 16/B374D848\n"));
	assert_non_null(
	    strstr(buf, "range c000000000000000 ffffffffffffffff 0 active FFFFFFFF/FFFFFFFF\n"));
	struct sm_map *back = parse_ok(buf, len);
	assert_true(back->ranges[0].read_lsn == 0);
	assert_true(back->ranges[1].read_lsn == 0x16B374D848u);
	assert_true(back->ranges[2].read_lsn == UINT64_MAX);
	assert_int_equal(back->ranges[1].state, SM_RANGE_FROZEN);
	free(buf);
	sm_map_free(back);
	sm_map_free(m);
	/* 16 hex digits are accepted too */
	size_t n;
	char *hex = with_checksum("shardrouter-map 1\nepoch 3\nshard 0 host=a\n"
				  "range 0000000000000000 ffffffffffffffff 0 active 00000016b374d848\n",
				  &n);
	back = parse_ok(hex, n);
	assert_true(back->ranges[0].read_lsn == 0x16B374D848u);
	free(hex);
	sm_map_free(back);
}

static void test_mapfile_bad_read_lsn_is_corrupt(void **state)
{
	(void)state;
	static const char *bad[] = {"zz/1", "1/2/3", "0/0", "123", "1/", "1/2 x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body),
			 "shardrouter-map 1\nepoch 3\nshard 0 host=a\n"
			 "range 0000000000000000 ffffffffffffffff 0 active %s\n",
			 bad[i]);
		expect_body_error(body, SR_ECORRUPT, NULL);
	}
}

static int tmpdir_setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/test_mapfile.XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->path, sizeof(t->path), "%s/map.cache", t->dir);
	snprintf(t->tmp, sizeof(t->tmp), "%s.tmp", t->path);
	*state = t;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	struct tmpdir *t = *state;
	unlink(t->path);
	rmdir(t->tmp);
	unlink(t->tmp);
	int rc = rmdir(t->dir);
	free(t);
	return rc;
}

static void test_mapfile_save_load_roundtrip(void **state)
{
	struct tmpdir *t = *state;
	struct sm_map *m = awkward_map();
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_save(m, t->path, &em), 0);
	struct stat st;
	assert_int_equal(stat(t->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* conninfo may hold passwords */
	assert_int_not_equal(access(t->tmp, F_OK), 0);
	struct sm_map *back = NULL;
	assert_int_equal(sm_map_load_file(t->path, &back, &em), 0);
	assert_true(back->epoch == m->epoch);
	assert_int_equal(back->n_ranges, m->n_ranges);
	assert_string_equal(back->shards[0].replicas[0], m->shards[0].replicas[0]);
	sm_map_free(back);

	/* saving again replaces the file */
	m->epoch = 5;
	assert_int_equal(sm_map_split(m, 0, 0, NULL, NULL), 0);
	assert_int_equal(sm_map_save(m, t->path, &em), 0);
	assert_int_equal(sm_map_load_file(t->path, &back, &em), 0);
	assert_true(back->epoch == 5);
	assert_int_equal(back->n_ranges, 4);
	sm_map_free(back);
	sm_map_free(m);
}

static void write_file(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void test_mapfile_load_rejects_bad_files(void **state)
{
	struct tmpdir *t = *state;
	struct sm_map *m = sentinel();
	struct sr_errmsg em = {{0}};
	assert_int_equal(sm_map_load_file(t->path, &m, &em), SR_ENOTFOUND);
	assert_non_null(strstr(em.text, t->path));
	assert_int_equal(sm_map_load_file(t->dir, &m, &em), SR_EIO); /* a directory */

	write_file(t->path, fixture_v1, strlen(fixture_v1) - 5);
	assert_int_equal(sm_map_load_file(t->path, &m, &em), SR_ECORRUPT);
	char *bad = strdup(fixture_v1);
	bad[strlen(bad) - 3] ^= 1;
	write_file(t->path, bad, strlen(bad));
	assert_int_equal(sm_map_load_file(t->path, &m, &em), SR_ECORRUPT);
	free(bad);
	/* load validates: a file with a correct checksum but a gap */
	size_t len;
	char *gap = with_checksum("shardrouter-map 1\nepoch 1\nshard 0 a\n"
				  "range 0000000000000001 ffffffffffffffff 0 active\n",
				  &len);
	write_file(t->path, gap, len);
	free(gap);
	assert_int_equal(sm_map_load_file(t->path, &m, &em), SR_EGAP);
	assert_ptr_equal(m, sentinel());

	write_file(t->path, fixture_v1, strlen(fixture_v1));
	assert_int_equal(sm_map_load_file(t->path, &m, &em), 0);
	assert_true(m->epoch == 7);
	sm_map_free(m);
}

static void test_mapfile_save_failure_keeps_old_file(void **state)
{
	struct tmpdir *t = *state;
	struct sm_map *m = awkward_map();
	struct sr_errmsg em = {{0}};
	write_file(t->path, fixture_v1, strlen(fixture_v1));
	/* path.tmp cannot be created: the old file must survive intact */
	assert_int_equal(mkdir(t->tmp, 0700), 0);
	assert_int_equal(sm_map_save(m, t->path, &em), SR_EIO);
	assert_non_null(strstr(em.text, ".tmp"));
	struct sm_map *back = NULL;
	assert_int_equal(sm_map_load_file(t->path, &back, &em), 0);
	assert_true(back->epoch == 7);
	sm_map_free(back);
	assert_int_equal(rmdir(t->tmp), 0);
	/* a missing directory */
	char nodir[200];
	snprintf(nodir, sizeof(nodir), "%s/missing/map.cache", t->dir);
	assert_int_equal(sm_map_save(m, nodir, &em), SR_EIO);
	assert_non_null(strstr(em.text, "missing"));
	sm_map_free(m);
}

static void test_mapfile_save_relative_path(void **state)
{
	struct tmpdir *t = *state;
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(t->dir), 0);
	struct sm_map *m = awkward_map();
	struct sr_errmsg em = {{0}};
	int rc = sm_map_save(m, "map.cache", &em);
	struct sm_map *back = NULL;
	int rc2 = rc ? rc : sm_map_load_file("map.cache", &back, &em);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rc, 0);
	assert_int_equal(rc2, 0);
	assert_true(back->epoch == m->epoch);
	sm_map_free(back);
	sm_map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mapfile_fixture_parses),
	    cmocka_unit_test(test_mapfile_serialize_reproduces_fixture_bytes),
	    cmocka_unit_test(test_mapfile_roundtrip_awkward_strings),
	    cmocka_unit_test(test_mapfile_checksum_mismatch_is_corrupt),
	    cmocka_unit_test(test_mapfile_wrong_version_is_corrupt),
	    cmocka_unit_test(test_mapfile_every_truncation_is_corrupt),
	    cmocka_unit_test(test_mapfile_bad_records_are_corrupt),
	    cmocka_unit_test(test_mapfile_read_lsn_roundtrip_and_old_lines),
	    cmocka_unit_test(test_mapfile_bad_read_lsn_is_corrupt),
	    cmocka_unit_test_setup_teardown(test_mapfile_save_load_roundtrip, tmpdir_setup,
					    tmpdir_teardown),
	    cmocka_unit_test_setup_teardown(test_mapfile_load_rejects_bad_files, tmpdir_setup,
					    tmpdir_teardown),
	    cmocka_unit_test_setup_teardown(test_mapfile_save_failure_keeps_old_file, tmpdir_setup,
					    tmpdir_teardown),
	    cmocka_unit_test_setup_teardown(test_mapfile_save_relative_path, tmpdir_setup,
					    tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
