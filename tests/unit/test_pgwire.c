/*
 * test_pgwire.c - cmocka tests for router/pgwire.c, the Postgres v3 codec:
 * the bounds-checked reader, the big-endian helpers, pw_peek on truncated
 * headers / lengths < 4 / oversized / incomplete / complete frames, the exact
 * bytes every writer produces, pw_error_fields and pw_quote_literal.
 *
 * The expected byte strings are written out by hand from the protocol
 * documentation (PostgreSQL 15, "Message Formats"), not produced by the code
 * under test. Inputs that the reader must not overrun are copied into
 * exact-size heap blocks so that ASan catches any read past their end.
 * Single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "router/pgwire.h"

/* An exact-size heap copy of n bytes (ASan flags any access past it). */
static uint8_t *dup_exact(const void *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	assert_non_null(d);
	if (n)
		memcpy(d, p, n);
	return d;
}

/* Assert that buf holds exactly the n bytes of want, then empty it. */
static void assert_buf_is(struct evbuffer *buf, const void *want, size_t n)
{
	size_t have = evbuffer_get_length(buf);
	assert_int_equal(have, n);
	uint8_t *got = malloc(have ? have : 1);
	assert_non_null(got);
	assert_int_equal(evbuffer_remove(buf, got, have), (int)have);
	assert_memory_equal(got, want, n);
	free(got);
}

/* The bytes as a C string literal minus its terminating NUL. */
#define WANT(buf, lit) assert_buf_is((buf), (lit), sizeof(lit) - 1)

static int setup_buf(void **state)
{
	*state = evbuffer_new();
	return *state ? 0 : -1;
}

static int teardown_buf(void **state)
{
	evbuffer_free(*state);
	return 0;
}

/* ---- reader ---------------------------------------------------------- */

static void test_pgwire_reader_reads_big_endian_values(void **state)
{
	(void)state;
	static const uint8_t src[] = {0x7f, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x01, 0xff};
	uint8_t *p = dup_exact(src, sizeof(src));
	struct pw_reader r;
	pw_reader_init(&r, p, sizeof(src));
	assert_int_equal(pw_reader_left(&r), 8);
	assert_int_equal(pw_read_u8(&r), 0x7f);
	assert_int_equal(pw_read_i16(&r), -2);		  /* ff fe */
	assert_int_equal(pw_read_i32(&r), INT32_MIN + 1); /* 80 00 00 01 */
	assert_int_equal(pw_reader_left(&r), 1);
	assert_false(r.bad);
	free(p);
}

static void test_pgwire_reader_past_end_sets_bad(void **state)
{
	(void)state;
	static const uint8_t src[] = {0x00, 0x01, 0x02};
	uint8_t *p = dup_exact(src, sizeof(src));
	struct pw_reader r;

	pw_reader_init(&r, p, sizeof(src));
	assert_int_equal(pw_read_i32(&r), 0); /* 3 bytes left, 4 wanted */
	assert_true(r.bad);
	assert_int_equal(pw_reader_left(&r), 0);
	/* once bad, everything reads as zero/empty even if bytes remain */
	assert_int_equal(pw_read_u8(&r), 0);
	assert_int_equal(pw_read_i16(&r), 0);
	assert_null(pw_read_bytes(&r, 1));
	size_t l = 99;
	assert_string_equal(pw_read_cstr(&r, &l), "");
	assert_int_equal(l, 0);

	pw_reader_init(&r, p, sizeof(src));
	assert_int_equal(pw_read_i16(&r), 1);
	assert_int_equal(pw_read_i16(&r), 0); /* 1 byte left */
	assert_true(r.bad);

	pw_reader_init(&r, p, sizeof(src));
	assert_int_equal(pw_read_u8(&r), 0);
	assert_int_equal(pw_read_u8(&r), 1);
	assert_int_equal(pw_read_u8(&r), 2);
	assert_false(r.bad);
	assert_int_equal(pw_read_u8(&r), 0);
	assert_true(r.bad);

	pw_reader_init(&r, p, 0);
	assert_int_equal(pw_read_u8(&r), 0);
	assert_true(r.bad);
	free(p);
}

static void test_pgwire_reader_cstr_and_bytes(void **state)
{
	(void)state;
	static const uint8_t src[] = {'a', 'b', 0, 0, 'x', 'y', 'z'};
	uint8_t *p = dup_exact(src, sizeof(src));
	struct pw_reader r;
	size_t l = 99;

	pw_reader_init(&r, p, sizeof(src));
	const char *s = pw_read_cstr(&r, &l);
	assert_string_equal(s, "ab");
	assert_int_equal(l, 2);
	assert_ptr_equal(s, (const char *)p); /* points into the payload */
	s = pw_read_cstr(&r, NULL);	      /* len may be NULL */
	assert_string_equal(s, "");
	assert_int_equal(pw_reader_left(&r), 3);
	const uint8_t *b = pw_read_bytes(&r, 2);
	assert_ptr_equal(b, p + 4);
	assert_false(r.bad);
	/* "z" with no NUL before the end: empty, bad, nothing read past the end */
	l = 99;
	assert_string_equal(pw_read_cstr(&r, &l), "");
	assert_int_equal(l, 0);
	assert_true(r.bad);

	pw_reader_init(&r, p, sizeof(src));
	assert_null(pw_read_bytes(&r, sizeof(src) + 1));
	assert_true(r.bad);
	pw_reader_init(&r, p, sizeof(src));
	assert_ptr_equal(pw_read_bytes(&r, sizeof(src)), p);
	assert_int_equal(pw_reader_left(&r), 0);
	assert_false(r.bad);
	/* a cstr at the very end of the payload */
	assert_string_equal(pw_read_cstr(&r, &l), "");
	assert_true(r.bad);
	free(p);
}

static void test_pgwire_get_put_helpers(void **state)
{
	(void)state;
	uint8_t b[4];
	pw_put_u32(b, 0x01020304u);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1], 2);
	assert_int_equal(b[2], 3);
	assert_int_equal(b[3], 4);
	assert_int_equal(pw_get_u32(b), 0x01020304u);
	pw_put_u32(b, 0xfffffffeu);
	assert_int_equal(pw_get_u32(b), 0xfffffffeu);
	static const uint8_t h[2] = {0xab, 0xcd};
	assert_int_equal(pw_get_u16(h), 0xabcd);
}

/* ---- pw_peek --------------------------------------------------------- */

static void test_pgwire_peek_truncated_header_needs_more(void **state)
{
	struct evbuffer *buf = *state;
	char type = 0;
	uint32_t len = 0;
	static const uint8_t hdr[5] = {'Q', 0, 0, 0, 9};
	for (size_t n = 0; n < 5; n++) {
		assert_int_equal(evbuffer_get_length(buf), n);
		assert_int_equal(pw_peek(buf, 1024, &type, &len), 0);
		assert_int_equal(evbuffer_add(buf, hdr + n, 1), 0);
	}
	/* full header, 4 of 5 payload bytes */
	assert_int_equal(evbuffer_add(buf, "SELE", 4), 0);
	assert_int_equal(pw_peek(buf, 1024, &type, &len), 0);
	assert_int_equal(evbuffer_get_length(buf), 9); /* peek consumes nothing */
}

static void test_pgwire_peek_length_below_four_is_eproto(void **state)
{
	struct evbuffer *buf = *state;
	char type;
	uint32_t len;
	for (uint8_t l = 0; l < 4; l++) {
		uint8_t m[5] = {'Q', 0, 0, 0, l};
		assert_int_equal(evbuffer_add(buf, m, 5), 0);
		assert_int_equal(pw_peek(buf, 1024, &type, &len), SR_EPROTO);
		assert_int_equal(evbuffer_drain(buf, 5), 0);
	}
}

static void test_pgwire_peek_oversized_is_etoobig(void **state)
{
	struct evbuffer *buf = *state;
	char type;
	uint32_t len;
	/* payload 101 > max 100: refused from the header alone, body not needed */
	uint8_t m[5] = {'Q', 0, 0, 0, 105};
	assert_int_equal(evbuffer_add(buf, m, 5), 0);
	assert_int_equal(pw_peek(buf, 100, &type, &len), SR_ETOOBIG);
	assert_int_equal(evbuffer_drain(buf, 5), 0);
	/* the largest possible length */
	uint8_t big[5] = {'Q', 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(evbuffer_add(buf, big, 5), 0);
	assert_int_equal(pw_peek(buf, 64u << 20, &type, &len), SR_ETOOBIG);
	assert_int_equal(evbuffer_drain(buf, 5), 0);
	/* exactly max: fine, but incomplete until the body is there */
	m[4] = 104;
	assert_int_equal(evbuffer_add(buf, m, 5), 0);
	assert_int_equal(pw_peek(buf, 100, &type, &len), 0);
	uint8_t body[100];
	memset(body, 'x', sizeof(body));
	assert_int_equal(evbuffer_add(buf, body, sizeof(body)), 0);
	assert_int_equal(pw_peek(buf, 100, &type, &len), 1);
	assert_int_equal(len, 100);
	assert_int_equal(type, 'Q');
}

static void test_pgwire_peek_complete_frames(void **state)
{
	struct evbuffer *buf = *state;
	char type = 0;
	uint32_t len = 99;
	/* Sync: empty payload */
	assert_int_equal(evbuffer_add(buf, "S\0\0\0\4", 5), 0);
	assert_int_equal(pw_peek(buf, 0, &type, &len), 1);
	assert_int_equal(type, 'S');
	assert_int_equal(len, 0);
	assert_int_equal(evbuffer_get_length(buf), 5);
	assert_int_equal(evbuffer_drain(buf, 5), 0);
	/* Query "SELECT 1" followed by the first byte of the next message */
	assert_int_equal(evbuffer_add(buf, "Q\0\0\0\15SELECT 1\0X", 15), 0);
	assert_int_equal(pw_peek(buf, 1024, &type, &len), 1);
	assert_int_equal(type, 'Q');
	assert_int_equal(len, 9);
	assert_int_equal(evbuffer_get_length(buf), 15);
	/* after the caller drains the first message, the next is incomplete */
	assert_int_equal(evbuffer_drain(buf, 14), 0);
	assert_int_equal(pw_peek(buf, 1024, &type, &len), 0);
}

/* ---- writers --------------------------------------------------------- */

static void test_pgwire_write_simple_messages_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	assert_int_equal(pw_write_ready(buf, 'I'), 0);
	WANT(buf, "Z\0\0\0\5I");
	assert_int_equal(pw_write_command_complete(buf, "SELECT 1"), 0);
	WANT(buf, "C\0\0\0\15SELECT 1\0");
	assert_int_equal(pw_write_param_status(buf, "TimeZone", "UTC"), 0);
	WANT(buf, "S\0\0\0\21TimeZone\0UTC\0");
	assert_int_equal(pw_write_key_data(buf, 0x01020304u, 0xa0b0c0d0u), 0);
	WANT(buf, "K\0\0\0\14\1\2\3\4\xa0\xb0\xc0\xd0");
	assert_int_equal(pw_write_query(buf, "SELECT 1"), 0);
	WANT(buf, "Q\0\0\0\15SELECT 1\0");
	assert_int_equal(pw_write_query(buf, ""), 0);
	WANT(buf, "Q\0\0\0\5\0");
	assert_int_equal(pw_write_terminate(buf), 0);
	WANT(buf, "X\0\0\0\4");
	assert_int_equal(pw_write_close_stmt(buf, "s1"), 0);
	WANT(buf, "C\0\0\0\10Ss1\0");
	assert_int_equal(pw_write_msg(buf, 'd', "ab", 2), 0);
	WANT(buf, "d\0\0\0\6ab");
	assert_int_equal(pw_write_msg(buf, 'H', NULL, 0), 0);
	WANT(buf, "H\0\0\0\4");
}

static void test_pgwire_write_auth_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	assert_int_equal(pw_write_auth(buf, PW_AUTH_OK, NULL, 0), 0);
	WANT(buf, "R\0\0\0\10\0\0\0\0");
	static const uint8_t salt[4] = {1, 2, 3, 4};
	assert_int_equal(pw_write_auth(buf, PW_AUTH_MD5, salt, 4), 0);
	WANT(buf, "R\0\0\0\14\0\0\0\5\1\2\3\4");
	assert_int_equal(pw_write_auth(buf, PW_AUTH_SASL, "SCRAM-SHA-256\0", 15), 0);
	WANT(buf, "R\0\0\0\27\0\0\0\12SCRAM-SHA-256\0\0");
}

static void test_pgwire_write_error_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	assert_int_equal(pw_write_error(buf, false, "ERROR", "0A000", "no", NULL, NULL), 0);
	/* 4 + "SERROR\0"(7) + "VERROR\0"(7) + "C0A000\0"(7) + "Mno\0"(4) + "\0"(1) = 30 */
	WANT(buf, "E\0\0\0\36SERROR\0VERROR\0C0A000\0Mno\0\0");
	assert_int_equal(pw_write_error(buf, true, "NOTICE", "00000", "m", "d", "h"), 0);
	/* 4 + 8 + 8 + 7 + 3 + 3 + 3 + 1 = 37 */
	WANT(buf, "N\0\0\0\45SNOTICE\0VNOTICE\0C00000\0Mm\0Dd\0Hh\0\0");
	/* detail omitted, hint given */
	assert_int_equal(pw_write_error(buf, false, "FATAL", "08P01", "x", NULL, "y"), 0);
	WANT(buf, "E\0\0\0\40SFATAL\0VFATAL\0C08P01\0Mx\0Hy\0\0");
}

static void test_pgwire_write_parse_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	/* the SQL is taken by length: the trailing "XYZ" must not be written */
	assert_int_equal(pw_write_parse(buf, "", "SELECT $1XYZ", 9, NULL, 0), 0);
	WANT(buf, "P\0\0\0\21\0SELECT $1\0\0\0");
	static const uint32_t types[2] = {20, 0x01020304u};
	assert_int_equal(pw_write_parse(buf, "st", "q", 1, types, 2), 0);
	/* 4 + "st\0"(3) + "q\0"(2) + 2 + 8 = 19 */
	WANT(buf, "P\0\0\0\23st\0q\0\0\2\0\0\0\24\1\2\3\4");
}

static void test_pgwire_write_startup_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	const char *const kv[] = {"user", "app", "database", "shop", NULL};
	assert_int_equal(pw_write_startup(buf, kv), 0);
	/* 4 + 4 + "user\0app\0database\0shop\0"(23) + "\0" = 32 */
	WANT(buf, "\0\0\0\40\0\3\0\0user\0app\0database\0shop\0\0");
	const char *const none[] = {NULL};
	assert_int_equal(pw_write_startup(buf, none), 0);
	WANT(buf, "\0\0\0\11\0\3\0\0\0");
}

static void test_pgwire_write_rows_exact_bytes(void **state)
{
	struct evbuffer *buf = *state;
	const char *const names[] = {"a", "bc"};
	assert_int_equal(pw_write_row_desc(buf, names, 2), 0);
	/* 4 + 2 + ("a\0" + 18) + ("bc\0" + 18) = 47; columns: table oid 0,
	 * attnum 0, type 25 (text), typlen -1, typmod -1, format 0 */
	WANT(buf, "T\0\0\0\57\0\2"
		  "a\0\0\0\0\0\0\0\0\0\0\31\377\377\377\377\377\377\0\0"
		  "bc\0\0\0\0\0\0\0\0\0\0\31\377\377\377\377\377\377\0\0");
	const char *const vals[] = {"42", NULL, ""};
	assert_int_equal(pw_write_data_row(buf, vals, 3), 0);
	/* 4 + 2 + (4+2) + 4 + 4 = 20; NULL is length -1, "" is length 0 */
	WANT(buf, "D\0\0\0\24\0\3\0\0\0\2"
		  "42\377\377\377\377\0\0\0\0");
	assert_int_equal(pw_write_row_desc(buf, NULL, 0), 0);
	WANT(buf, "T\0\0\0\6\0\0");
}

/* ---- pw_error_fields ------------------------------------------------- */

static void error_fields(const void *src, size_t n, char st[6], char *msg, size_t msg_cap)
{
	uint8_t *p = dup_exact(src, n);
	const char *m = NULL;
	size_t ml = 12345;
	pw_error_fields(p, n, st, &m, &ml);
	assert_non_null(m);
	assert_true(ml < msg_cap);
	memcpy(msg, m, ml);
	msg[ml] = '\0';
	free(p);
}

static void test_pgwire_error_fields_extracts_code_and_message(void **state)
{
	(void)state;
	char st[6], msg[64];
	static const char e[] = "SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0P15\0\0";
	error_fields(e, sizeof(e) - 1, st, msg, sizeof(msg));
	assert_string_equal(st, "42P01");
	assert_string_equal(msg, "relation \"x\" does not exist");
}

static void test_pgwire_error_fields_defaults_and_malformed(void **state)
{
	(void)state;
	char st[6], msg[64];
	/* no C and no M: XX000 and "" */
	static const char none[] = "SERROR\0\0";
	error_fields(none, sizeof(none) - 1, st, msg, sizeof(msg));
	assert_string_equal(st, "XX000");
	assert_string_equal(msg, "");
	/* a C field that is not 5 characters is ignored */
	static const char badc[] = "C1234\0C123456\0Mok\0\0";
	error_fields(badc, sizeof(badc) - 1, st, msg, sizeof(msg));
	assert_string_equal(st, "XX000");
	assert_string_equal(msg, "ok");
	/* truncated: the message has no NUL before the end of the payload */
	static const char trunc[] = {'C', '5', '7', '0', '1', '4', 0, 'M', 'c', 'a', 'n'};
	error_fields(trunc, sizeof(trunc), st, msg, sizeof(msg));
	assert_string_equal(st, "57014");
	assert_string_equal(msg, "");
	/* truncated inside the code */
	static const char trunc2[] = {'C', '5', '7'};
	error_fields(trunc2, sizeof(trunc2), st, msg, sizeof(msg));
	assert_string_equal(st, "XX000");
	/* empty payload */
	error_fields("", 0, st, msg, sizeof(msg));
	assert_string_equal(st, "XX000");
	assert_string_equal(msg, "");
	/* fields after the terminating NUL are not read */
	static const char after[] = "Mfirst\0\0C22012\0";
	error_fields(after, sizeof(after) - 1, st, msg, sizeof(msg));
	assert_string_equal(st, "XX000");
	assert_string_equal(msg, "first");
}

/* ---- pw_quote_literal ------------------------------------------------ */

static void test_pgwire_quote_literal_doubles_quotes(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(pw_quote_literal("abc", out, sizeof(out)), 0);
	assert_string_equal(out, "'abc'");
	assert_int_equal(pw_quote_literal("", out, sizeof(out)), 0);
	assert_string_equal(out, "''");
	assert_int_equal(pw_quote_literal("it's", out, sizeof(out)), 0);
	assert_string_equal(out, "'it''s'");
	assert_int_equal(pw_quote_literal("''", out, sizeof(out)), 0);
	assert_string_equal(out, "''''''");
	assert_int_equal(pw_quote_literal("a\\b", out, sizeof(out)), 0);
	assert_string_equal(out, "'a\\b'"); /* standard_conforming_strings: backslash is plain */
}

static void test_pgwire_quote_literal_too_small_never_overflows(void **state)
{
	(void)state;
	/* every size from 0 up: either ETOOBIG or the right answer, and never a
	 * write past out_len (heap blocks of exactly that size, checked by ASan) */
	const char *inputs[] = {"", "x", "abc", "it's", "''", "a'b'c"};
	const char *want[] = {"''", "'x'", "'abc'", "'it''s'", "''''''", "'a''b''c'"};
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		size_t need = strlen(want[i]) + 1;
		for (size_t n = 0; n < need; n++) {
			char *out = malloc(n ? n : 1);
			assert_non_null(out);
			assert_int_equal(pw_quote_literal(inputs[i], out, n), SR_ETOOBIG);
			free(out);
		}
		for (size_t n = need + 1; n < need + 3; n++) {
			char *out = malloc(n);
			assert_non_null(out);
			assert_int_equal(pw_quote_literal(inputs[i], out, n), 0);
			assert_string_equal(out, want[i]);
			free(out);
		}
	}
}

static void test_pgwire_quote_literal_exact_fit(void **state)
{
	(void)state;
	/* strlen(result) + 1 bytes are enough for the result and its NUL */
	const char *inputs[] = {"", "x", "abc", "it's", "''", "a'b'c"};
	const char *want[] = {"''", "'x'", "'abc'", "'it''s'", "''''''", "'a''b''c'"};
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		size_t need = strlen(want[i]) + 1;
		char *out = malloc(need);
		assert_non_null(out);
		int rc = pw_quote_literal(inputs[i], out, need);
		if (rc != 0) {
			free(out);
			fail_msg("pw_quote_literal(\"%s\", out, %zu) = %d, want 0 and %s",
				 inputs[i], need, rc, want[i]);
		}
		assert_string_equal(out, want[i]);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pgwire_reader_reads_big_endian_values),
	    cmocka_unit_test(test_pgwire_reader_past_end_sets_bad),
	    cmocka_unit_test(test_pgwire_reader_cstr_and_bytes),
	    cmocka_unit_test(test_pgwire_get_put_helpers),
	    cmocka_unit_test_setup_teardown(test_pgwire_peek_truncated_header_needs_more, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_peek_length_below_four_is_eproto, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_peek_oversized_is_etoobig, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_peek_complete_frames, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_simple_messages_exact_bytes,
					    setup_buf, teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_auth_exact_bytes, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_error_exact_bytes, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_parse_exact_bytes, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_startup_exact_bytes, setup_buf,
					    teardown_buf),
	    cmocka_unit_test_setup_teardown(test_pgwire_write_rows_exact_bytes, setup_buf,
					    teardown_buf),
	    cmocka_unit_test(test_pgwire_error_fields_extracts_code_and_message),
	    cmocka_unit_test(test_pgwire_error_fields_defaults_and_malformed),
	    cmocka_unit_test(test_pgwire_quote_literal_doubles_quotes),
	    cmocka_unit_test(test_pgwire_quote_literal_too_small_never_overflows),
	    cmocka_unit_test(test_pgwire_quote_literal_exact_fit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
