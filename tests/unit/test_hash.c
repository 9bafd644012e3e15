/*
 * test_hash.c - cmocka tests for shardmap/hash.c: XXH3_64bits known answers
 * over canonical key bytes, hex formatting and parsing.
 *
 * The known-answer vectors were NOT produced by this library. They come from
 * the xxhsum command-line tool (Debian package xxhash 0.8.1) run over files
 * holding the canonical bytes:
 *
 *   : > empty.bin                                            -> 2d06800538d394c2
 *   printf '\x2a\x00\x00\x00\x00\x00\x00\x00' > b42.bin      -> d5a6f8c838df27c8
 *   printf '\xff\xff\xff\xff\xff\xff\xff\xff' > bm1.bin      -> 5111c7e47d784413
 *   printf '\x00\x00\x00\x00\x00\x00\x00\x80' > bmin.bin     -> 828f2476789a0e5f
 *   printf '\xff\xff\xff\xff\xff\xff\xff\x7f' > bmax.bin     -> a233cf376558df46
 *   printf 'hello' > hello.bin                               -> 9555e8555c62dcfd
 *   printf '42' > t42.bin                                    -> 1217cb28c0ef2191
 *   printf '\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11' > uuid.bin
 *                                                            -> 55df69482c6d3767
 *   xxhsum -H3 empty.bin b42.bin ...   (prints "XXH3 (file) = <hex of the u64>")
 *
 * (b42 = bigint 42, bm1 = -1, bmin = INT64_MIN, bmax = INT64_MAX, each as 8
 * little-endian bytes; uuid.bin = a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11.)
 * The empty-input value also equals the published XXH3_64bits("") constant.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "shardmap/hash.h"
#include "shardmap/key.h"

static void test_hash_bytes_empty_known_answer(void **state)
{
	(void)state;
	assert_true(sm_hash_bytes("", 0) == UINT64_C(0x2d06800538d394c2));
	assert_true(sm_hash_bytes(NULL, 0) == UINT64_C(0x2d06800538d394c2));
}

static void test_hash_bytes_known_answers(void **state)
{
	(void)state;
	static const uint8_t b42[8] = {0x2a, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t uuid[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
					 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
	assert_true(sm_hash_bytes(b42, 8) == UINT64_C(0xd5a6f8c838df27c8));
	assert_true(sm_hash_bytes("hello", 5) == UINT64_C(0x9555e8555c62dcfd));
	assert_true(sm_hash_bytes("42", 2) == UINT64_C(0x1217cb28c0ef2191));
	assert_true(sm_hash_bytes(uuid, 16) == UINT64_C(0x55df69482c6d3767));
}

static void test_hash_key_bigint_known_answers(void **state)
{
	(void)state;
	struct sm_key k;
	sm_key_from_int64(42, &k);
	assert_true(sm_hash_key(&k) == UINT64_C(0xd5a6f8c838df27c8));
	sm_key_from_int64(-1, &k);
	assert_true(sm_hash_key(&k) == UINT64_C(0x5111c7e47d784413));
	sm_key_from_int64(INT64_MIN, &k);
	assert_true(sm_hash_key(&k) == UINT64_C(0x828f2476789a0e5f));
	sm_key_from_int64(INT64_MAX, &k);
	assert_true(sm_hash_key(&k) == UINT64_C(0xa233cf376558df46));

	assert_int_equal(sm_key_from_text(SM_KEY_BIGINT, " 42 ", 4, &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0xd5a6f8c838df27c8));
	assert_int_equal(sm_key_from_text(SM_KEY_BIGINT, "-9223372036854775808", 20, &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0x828f2476789a0e5f));
}

static void test_hash_key_text_and_uuid_known_answers(void **state)
{
	(void)state;
	struct sm_key k;
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, "hello", 5, &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0x9555e8555c62dcfd));
	/* text "42" is not bigint 42 */
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, "42", 2, &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0x1217cb28c0ef2191));
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, "", 0, &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0x2d06800538d394c2));
	const char *u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
	assert_int_equal(sm_key_from_text(SM_KEY_UUID, u, strlen(u), &k, NULL), 0);
	assert_true(sm_hash_key(&k) == UINT64_C(0x55df69482c6d3767));
}

static void test_hash_key_survives_struct_copy(void **state)
{
	(void)state;
	struct sm_key a, b;
	sm_key_from_int64(42, &a);
	b = a;
	memset(&a, 0, sizeof(a)); /* b.data still points at a.buf */
	assert_true(sm_hash_key(&b) == UINT64_C(0xd5a6f8c838df27c8));
}

static void test_hash_format_writes_16_lowercase_digits(void **state)
{
	(void)state;
	char out[SM_HASH_HEX_LEN + 1];
	memset(out, 'X', sizeof(out));
	sm_hash_format(0, out);
	assert_string_equal(out, "0000000000000000");
	sm_hash_format(UINT64_MAX, out);
	assert_string_equal(out, "ffffffffffffffff");
	sm_hash_format(UINT64_C(0xd5a6f8c838df27c8), out);
	assert_string_equal(out, "d5a6f8c838df27c8");
	sm_hash_format(UINT64_C(0x00000000000000ab), out);
	assert_string_equal(out, "00000000000000ab");
}

static void test_hash_parse_accepts_forms(void **state)
{
	(void)state;
	uint64_t v = 0;
	assert_int_equal(sm_hash_parse("d5a6f8c838df27c8", &v, NULL), 0);
	assert_true(v == UINT64_C(0xd5a6f8c838df27c8));
	assert_int_equal(sm_hash_parse("0xD5A6F8C838DF27C8", &v, NULL), 0);
	assert_true(v == UINT64_C(0xd5a6f8c838df27c8));
	assert_int_equal(sm_hash_parse("0X1f", &v, NULL), 0);
	assert_true(v == 0x1f);
	assert_int_equal(sm_hash_parse("7", &v, NULL), 0);
	assert_true(v == 7);
	assert_int_equal(sm_hash_parse("ffffffffffffffff", &v, NULL), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(sm_hash_parse("0", &v, NULL), 0);
	assert_true(v == 0);
}

static void test_hash_parse_rejects_bad_input(void **state)
{
	(void)state;
	static const char *bad[] = {"", "0x", "g", "12 ", " 12", "-1", "0x-1", "1.5", "0xx1"};
	struct sr_errmsg em;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 12345;
		em.text[0] = '\0';
		assert_int_equal(sm_hash_parse(bad[i], &v, &em), SR_EINVAL);
		assert_true(v == 12345);
		assert_non_null(strstr(em.text, "hash"));
	}
	uint64_t v = 12345;
	assert_int_equal(sm_hash_parse("10000000000000000", &v, &em), SR_ERANGE);
	assert_true(v == 12345);
	assert_non_null(strstr(em.text, "10000000000000000"));
	assert_int_equal(sm_hash_parse(NULL, &v, NULL), SR_EINVAL);
}

static void test_hash_format_parse_roundtrip(void **state)
{
	(void)state;
	uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
	for (int i = 0; i < 1000; i++) {
		char hex[SM_HASH_HEX_LEN + 1];
		uint64_t back = 0;
		x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
		sm_hash_format(x, hex);
		assert_int_equal(sm_hash_parse(hex, &back, NULL), 0);
		assert_true(back == x);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash_bytes_empty_known_answer),
	    cmocka_unit_test(test_hash_bytes_known_answers),
	    cmocka_unit_test(test_hash_key_bigint_known_answers),
	    cmocka_unit_test(test_hash_key_text_and_uuid_known_answers),
	    cmocka_unit_test(test_hash_key_survives_struct_copy),
	    cmocka_unit_test(test_hash_format_writes_16_lowercase_digits),
	    cmocka_unit_test(test_hash_parse_accepts_forms),
	    cmocka_unit_test(test_hash_parse_rejects_bad_input),
	    cmocka_unit_test(test_hash_format_parse_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
