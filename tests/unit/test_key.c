/*
 * test_key.c - cmocka tests for shardmap/key.c: canonical key bytes from
 * text (as Postgres 15's int8in / uuid_in accept it), from binary Bind values
 * and from int64; the same key must give the same bytes (and hash) from every
 * source; invalid input is rejected with the right code and a message, and
 * leaves the output untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "shardmap/hash.h"
#include "shardmap/key.h"

/* Parse NUL-terminated text into *k; fail the test if it is rejected.
 * (Out-parameters, not return by value: a copied struct sm_key's data still
 * points at the original's buf.) */
static void key_text_ok(enum sm_key_type t, const char *s, struct sm_key *k)
{
	struct sr_errmsg em = {{0}};
	int rc = sm_key_from_text(t, s, strlen(s), k, &em);
	if (rc != 0)
		fail_msg("\"%s\" rejected: %s", s, em.text);
}

static void key_binary_ok(enum sm_key_type t, const uint8_t *b, size_t n, struct sm_key *k)
{
	struct sr_errmsg em = {{0}};
	int rc = sm_key_from_binary(t, b, n, k, &em);
	if (rc != 0)
		fail_msg("binary value of %zu bytes rejected: %s", n, em.text);
}

static void assert_same_key(const struct sm_key *a, const struct sm_key *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->data, b->data, a->len);
	assert_true(sm_hash_key(a) == sm_hash_key(b));
}

/* Expect rejection with code want; check output untouched and message. */
static void expect_text_error(enum sm_key_type t, const char *s, size_t n, int want,
			      const char *msg_part)
{
	struct sm_key k;
	struct sr_errmsg em;
	memset(&k, 0xab, sizeof(k));
	memset(&em, 0, sizeof(em));
	int rc = sm_key_from_text(t, s, n, &k, &em);
	if (rc != want)
		fail_msg("\"%.*s\": got %s, want %s (%s)", (int)n, s, sr_err_name(rc),
			 sr_err_name(want), em.text);
	for (size_t i = 0; i < sizeof(k); i++)
		assert_int_equal(((const uint8_t *)&k)[i], 0xab);
	assert_non_null(strstr(em.text, sm_key_type_name(t)));
	if (msg_part && !strstr(em.text, msg_part))
		fail_msg("message \"%s\" lacks \"%s\"", em.text, msg_part);
}

static void test_key_bigint_canonical_bytes_little_endian(void **state)
{
	(void)state;
	static const uint8_t b42[8] = {0x2a, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t bx[8] = {8, 7, 6, 5, 4, 3, 2, 1};
	static const uint8_t bm1[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	struct sm_key k;
	sm_key_from_int64(42, &k);
	assert_int_equal(k.type, SM_KEY_BIGINT);
	assert_int_equal(k.len, 8);
	assert_ptr_equal(k.data, k.buf);
	assert_memory_equal(k.data, b42, 8);
	sm_key_from_int64(0x0102030405060708, &k);
	assert_memory_equal(k.data, bx, 8);
	sm_key_from_int64(-1, &k);
	assert_memory_equal(k.data, bm1, 8);
}

static void test_key_bigint_42_same_from_every_source(void **state)
{
	(void)state;
	static const uint8_t i2[2] = {0x00, 0x2a};
	static const uint8_t i4[4] = {0x00, 0x00, 0x00, 0x2a};
	static const uint8_t i8[8] = {0, 0, 0, 0, 0, 0, 0, 0x2a};
	struct sm_key want, k;
	sm_key_from_int64(42, &want);
	const char *texts[] = {"42", " 42 ", "+42", "\t\n42\r\v\f", "0042", "  +0000042"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		key_text_ok(SM_KEY_BIGINT, texts[i], &k);
		assert_same_key(&k, &want);
	}
	key_binary_ok(SM_KEY_BIGINT, i2, 2, &k);
	assert_same_key(&k, &want);
	key_binary_ok(SM_KEY_BIGINT, i4, 4, &k);
	assert_same_key(&k, &want);
	key_binary_ok(SM_KEY_BIGINT, i8, 8, &k);
	assert_same_key(&k, &want);
	/* a counted value need not be NUL-terminated */
	assert_int_equal(sm_key_from_text(SM_KEY_BIGINT, "4213", 2, &k, NULL), 0);
	assert_same_key(&k, &want);
}

static void test_key_bigint_negative_sign_extends(void **state)
{
	(void)state;
	static const uint8_t m1_2[2] = {0xff, 0xff};
	static const uint8_t m1_4[4] = {0xff, 0xff, 0xff, 0xff};
	static const uint8_t m1_8[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t min2[2] = {0x80, 0x00};
	static const uint8_t min4[4] = {0x80, 0x00, 0x00, 0x00};
	static const uint8_t pos2[2] = {0x7f, 0xff};
	static const uint8_t hi4[4] = {0x00, 0x00, 0x80, 0x00}; /* 32768, no sign bit */
	struct sm_key k, t;
	key_text_ok(SM_KEY_BIGINT, "-1", &t);
	key_binary_ok(SM_KEY_BIGINT, m1_2, 2, &k);
	assert_same_key(&k, &t);
	key_binary_ok(SM_KEY_BIGINT, m1_4, 4, &k);
	assert_same_key(&k, &t);
	key_binary_ok(SM_KEY_BIGINT, m1_8, 8, &k);
	assert_same_key(&k, &t);
	key_text_ok(SM_KEY_BIGINT, "-32768", &t);
	key_binary_ok(SM_KEY_BIGINT, min2, 2, &k);
	assert_same_key(&k, &t);
	key_text_ok(SM_KEY_BIGINT, "-2147483648", &t);
	key_binary_ok(SM_KEY_BIGINT, min4, 4, &k);
	assert_same_key(&k, &t);
	key_text_ok(SM_KEY_BIGINT, "32767", &t);
	key_binary_ok(SM_KEY_BIGINT, pos2, 2, &k);
	assert_same_key(&k, &t);
	key_text_ok(SM_KEY_BIGINT, "32768", &t);
	key_binary_ok(SM_KEY_BIGINT, hi4, 4, &k);
	assert_same_key(&k, &t);
	sm_key_from_int64(-42, &t);
	key_text_ok(SM_KEY_BIGINT, " -42", &k);
	assert_same_key(&k, &t);
}

static void test_key_bigint_range_limits(void **state)
{
	(void)state;
	static const uint8_t min8[8] = {0x80, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t max8[8] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	struct sm_key k, want;
	sm_key_from_int64(INT64_MIN, &want);
	key_text_ok(SM_KEY_BIGINT, "-9223372036854775808", &k);
	assert_same_key(&k, &want);
	key_binary_ok(SM_KEY_BIGINT, min8, 8, &k);
	assert_same_key(&k, &want);
	sm_key_from_int64(INT64_MAX, &want);
	key_text_ok(SM_KEY_BIGINT, "9223372036854775807", &k);
	assert_same_key(&k, &want);
	key_text_ok(SM_KEY_BIGINT, "+9223372036854775807", &k);
	assert_same_key(&k, &want);
	key_binary_ok(SM_KEY_BIGINT, max8, 8, &k);
	assert_same_key(&k, &want);
	sm_key_from_int64(0, &want);
	key_text_ok(SM_KEY_BIGINT, "-0", &k);
	assert_same_key(&k, &want);
}

static void test_key_bigint_out_of_range_is_erange(void **state)
{
	(void)state;
	const char *s[] = {"9223372036854775808", "-9223372036854775809", "99999999999999999999",
			   "  18446744073709551616  "};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		expect_text_error(SM_KEY_BIGINT, s[i], strlen(s[i]), SR_ERANGE, "out of range");
	expect_text_error(SM_KEY_BIGINT, "99999999999999999999", 20, SR_ERANGE,
			  "\"99999999999999999999\"");
}

static void test_key_bigint_bad_syntax_is_einval(void **state)
{
	(void)state;
	const char *s[] = {"",	  "   ", "4x2", "1.5", "- 1", "--1", "+-1",  "0x10",
			   "1e3", "4 2", "+",	"-",   "١٢",  "42;", "'42'", "abc"};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		expect_text_error(SM_KEY_BIGINT, s[i], strlen(s[i]), SR_EINVAL,
				  "invalid input syntax");
	expect_text_error(SM_KEY_BIGINT, "4x2", 3, SR_EINVAL, "\"4x2\"");
	/* an embedded NUL is not a terminator here */
	expect_text_error(SM_KEY_BIGINT, "42\0", 3, SR_EINVAL, "\\x00");
	expect_text_error(SM_KEY_BIGINT, NULL, 2, SR_EINVAL, NULL);
}

static void test_key_error_message_truncates_long_value(void **state)
{
	(void)state;
	char big[2000];
	memset(big, '7', sizeof(big));
	big[0] = 'x';
	struct sm_key k;
	struct sr_errmsg em;
	assert_int_equal(sm_key_from_text(SM_KEY_BIGINT, big, sizeof(big), &k, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "bigint"));
	assert_non_null(strstr(em.text, "\"x777"));
	assert_non_null(strstr(em.text, "777...\""));
	assert_true(strlen(em.text) < 200);
	char bad[300];
	memset(bad, 'z', sizeof(bad));
	assert_int_equal(sm_key_from_text(SM_KEY_UUID, bad, sizeof(bad), &k, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "uuid"));
	assert_non_null(strstr(em.text, "zzz..."));
}

static const uint8_t uuid_bytes[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
				       0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};

static void test_key_uuid_all_forms_equal(void **state)
{
	(void)state;
	const char *forms[] = {
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",   "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
	    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
	    "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",     "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
	    "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",    "A0eEbC99-9c0B-4ef8-bB6D-6bb9bD380a11",
	};
	struct sm_key want;
	key_binary_ok(SM_KEY_UUID, uuid_bytes, 16, &want);
	assert_int_equal(want.type, SM_KEY_UUID);
	assert_int_equal(want.len, 16);
	assert_ptr_equal(want.data, want.buf);
	assert_memory_equal(want.data, uuid_bytes, 16);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct sm_key k;
		key_text_ok(SM_KEY_UUID, forms[i], &k);
		assert_same_key(&k, &want);
	}
}

static void test_key_uuid_rejects_malformed(void **state)
{
	(void)state;
	const char *s[] = {
	    "",
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",   /* 31 digits */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111", /* 33 digits */
	    "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",  /* hyphen after 7 digits */
	    "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11", /* hyphen after 5 digits */
	    "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", /* two hyphens */
	    "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* leading hyphen */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", /* trailing hyphen */
	    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* unclosed brace */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", /* stray brace */
	    " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* uuid_in allows no spaces */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
	    "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* not hex */
	    "{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}}",
	    "0xa0eebc999c0b4ef8bb6d6bb9bd380a11",
	};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		expect_text_error(SM_KEY_UUID, s[i], strlen(s[i]), SR_EINVAL,
				  "invalid input syntax");
	expect_text_error(SM_KEY_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", 35, SR_EINVAL,
			  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1");
	/* a counted value shorter than its NUL-terminated text */
	expect_text_error(SM_KEY_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 35, SR_EINVAL, NULL);
}

static void test_key_text_points_at_input(void **state)
{
	(void)state;
	const char *s = "customer-17 with spaces";
	struct sm_key k;
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, s, 11, &k, NULL), 0);
	assert_int_equal(k.type, SM_KEY_TEXT);
	assert_int_equal(k.len, 11);
	assert_ptr_equal(k.data, (const uint8_t *)s);
	struct sm_key b;
	assert_int_equal(sm_key_from_binary(SM_KEY_TEXT, (const uint8_t *)s, 11, &b, NULL), 0);
	assert_ptr_equal(b.data, (const uint8_t *)s);
	assert_same_key(&k, &b);
	/* text is taken as is: no trimming, embedded NUL allowed */
	struct sm_key sp;
	key_text_ok(SM_KEY_TEXT, " 42 ", &sp);
	struct sm_key n42;
	key_text_ok(SM_KEY_TEXT, "42", &n42);
	assert_int_equal(sp.len, 4);
	assert_true(sm_hash_key(&sp) != sm_hash_key(&n42));
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, "a\0b", 3, &k, NULL), 0);
	assert_int_equal(k.len, 3);
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, "", 0, &k, NULL), 0);
	assert_int_equal(k.len, 0);
	assert_int_equal(sm_key_from_text(SM_KEY_TEXT, NULL, 0, &k, NULL), 0);
	assert_int_equal(k.len, 0);
	/* text 42 and bigint 42 are different keys */
	struct sm_key i42;
	key_text_ok(SM_KEY_BIGINT, "42", &i42);
	assert_true(sm_hash_key(&i42) != sm_hash_key(&n42));
}

static void expect_binary_error(enum sm_key_type t, const uint8_t *b, size_t n)
{
	struct sm_key k;
	struct sr_errmsg em;
	memset(&k, 0xab, sizeof(k));
	memset(&em, 0, sizeof(em));
	assert_int_equal(sm_key_from_binary(t, b, n, &k, &em), SR_EINVAL);
	for (size_t i = 0; i < sizeof(k); i++)
		assert_int_equal(((const uint8_t *)&k)[i], 0xab);
	assert_non_null(strstr(em.text, sm_key_type_name(t)));
	assert_non_null(strstr(em.text, "length"));
}

static void test_key_binary_bad_lengths_rejected(void **state)
{
	(void)state;
	static const uint8_t b[17] = {0};
	static const size_t int_bad[] = {0, 1, 3, 5, 6, 7, 9, 16};
	for (size_t i = 0; i < sizeof(int_bad) / sizeof(int_bad[0]); i++)
		expect_binary_error(SM_KEY_BIGINT, b, int_bad[i]);
	expect_binary_error(SM_KEY_UUID, b, 15);
	expect_binary_error(SM_KEY_UUID, b, 17);
	expect_binary_error(SM_KEY_UUID, b, 0);
	struct sr_errmsg em;
	struct sm_key k;
	assert_int_equal(sm_key_from_binary(SM_KEY_BIGINT, b, 3, &k, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "3"));
}

static void test_key_unknown_type_rejected(void **state)
{
	(void)state;
	struct sm_key k;
	struct sr_errmsg em;
	assert_int_equal(sm_key_from_text((enum sm_key_type)0, "1", 1, &k, &em), SR_EINVAL);
	assert_int_equal(sm_key_from_binary((enum sm_key_type)9, (const uint8_t *)"1", 1, &k, &em),
			 SR_EINVAL);
	assert_string_equal(sm_key_type_name((enum sm_key_type)0), "unknown");
}

static void test_key_type_parse_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		enum sm_key_type t;
	} ok[] = {
	    {"bigint", SM_KEY_BIGINT},
	    {"INT8", SM_KEY_BIGINT},
	    {"integer", SM_KEY_BIGINT},
	    {"int", SM_KEY_BIGINT},
	    {"Int4", SM_KEY_BIGINT},
	    {"smallint", SM_KEY_BIGINT},
	    {"int2", SM_KEY_BIGINT},
	    {"text", SM_KEY_TEXT},
	    {"VARCHAR", SM_KEY_TEXT},
	    {"character varying", SM_KEY_TEXT},
	    {"Character Varying", SM_KEY_TEXT},
	    {"uuid", SM_KEY_UUID},
	    {"UUID", SM_KEY_UUID},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		enum sm_key_type t = (enum sm_key_type)0;
		assert_int_equal(sm_key_type_parse(ok[i].name, &t, NULL), 0);
		assert_int_equal(t, ok[i].t);
	}
	const char *bad[] = {"", "float8", "numeric", "bigint ", "char", "int16"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum sm_key_type t = SM_KEY_UUID;
		struct sr_errmsg em = {{0}};
		assert_int_equal(sm_key_type_parse(bad[i], &t, &em), SR_EINVAL);
		assert_int_equal(t, SM_KEY_UUID);
		assert_non_null(strstr(em.text, "bigint"));
		assert_non_null(strstr(em.text, "uuid"));
	}
	assert_string_equal(sm_key_type_name(SM_KEY_BIGINT), "bigint");
	assert_string_equal(sm_key_type_name(SM_KEY_TEXT), "text");
	assert_string_equal(sm_key_type_name(SM_KEY_UUID), "uuid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_bigint_canonical_bytes_little_endian),
	    cmocka_unit_test(test_key_bigint_42_same_from_every_source),
	    cmocka_unit_test(test_key_bigint_negative_sign_extends),
	    cmocka_unit_test(test_key_bigint_range_limits),
	    cmocka_unit_test(test_key_bigint_out_of_range_is_erange),
	    cmocka_unit_test(test_key_bigint_bad_syntax_is_einval),
	    cmocka_unit_test(test_key_error_message_truncates_long_value),
	    cmocka_unit_test(test_key_uuid_all_forms_equal),
	    cmocka_unit_test(test_key_uuid_rejects_malformed),
	    cmocka_unit_test(test_key_text_points_at_input),
	    cmocka_unit_test(test_key_binary_bad_lengths_rejected),
	    cmocka_unit_test(test_key_unknown_type_rejected),
	    cmocka_unit_test(test_key_type_parse_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
