/*
 * test_keylex.c - cmocka tests for router/keylex.c: token boundaries and
 * types as Postgres 15's scanner draws them (strings and their escapes,
 * dollar quotes, quoted identifiers, nested comments, numbers, operators
 * with the trailing +/- rule, casts, parameters), string/identifier decoding,
 * hints in comments, and unterminated input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "router/keylex.h"

#define MAXT 32

struct lexed {
	struct kl_token t[MAXT];
	int n;
	struct kl_lexer lx;
};

static void lex_all(const char *s, struct lexed *out)
{
	kl_init(&out->lx, s, strlen(s), 0);
	out->n = 0;
	for (;;) {
		assert_true(out->n < MAXT);
		kl_next(&out->lx, &out->t[out->n]);
		if (out->t[out->n].type == KL_EOF || out->t[out->n].type == KL_ERROR) {
			out->n++;
			return;
		}
		out->n++;
	}
}

/* Check the token types and texts: want is "TYPE:text" separated by '|'. */
static void expect_tokens(const char *s, const enum kl_type *types, const char *const *texts, int n)
{
	struct lexed l;
	lex_all(s, &l);
	if (l.n != n + 1)
		fail_msg("%s: %d tokens, want %d", s, l.n - 1, n);
	for (int i = 0; i < n; i++) {
		if (l.t[i].type != types[i])
			fail_msg("%s: token %d type %d want %d", s, i, l.t[i].type, types[i]);
		if (strlen(texts[i]) != l.t[i].len ||
		    memcmp(s + l.t[i].start, texts[i], l.t[i].len) != 0)
			fail_msg("%s: token %d is '%.*s' want '%s'", s, i, (int)l.t[i].len,
				 s + l.t[i].start, texts[i]);
	}
	assert_int_equal(l.t[n].type, KL_EOF);
}

static void test_keylex_basic_tokens(void **state)
{
	(void)state;
	const char *s = "SELECT a.b, \"X\"\"y\" FROM t WHERE c=$1::int8;";
	enum kl_type ty[] = {KL_IDENT,	KL_IDENT, KL_DOT,      KL_IDENT, KL_COMMA,
			     KL_QIDENT, KL_IDENT, KL_IDENT,    KL_IDENT, KL_IDENT,
			     KL_OP,	KL_PARAM, KL_TYPECAST, KL_IDENT, KL_SEMI};
	const char *tx[] = {"SELECT", "a", ".", "b",  ",",  "\"X\"\"y\"", "FROM", "t",
			    "WHERE",  "c", "=", "$1", "::", "int8",	  ";"};
	expect_tokens(s, ty, tx, 15);
	struct lexed l;
	lex_all(s, &l);
	assert_int_equal(l.t[0].kw, KW_SELECT);
	assert_int_equal(l.t[1].kw, KW_NONE);
	assert_int_equal(l.t[5].kw, KW_NONE); /* quoted: never a keyword */
	assert_true(l.t[5].flags & KLF_ESC);
}

static void test_keylex_operators(void **state)
{
	(void)state;
	/* "=-5" is "=", "-", "5": a multi-char operator cannot end in - ... */
	enum kl_type t1[] = {KL_IDENT, KL_OP, KL_OP, KL_INTEGER};
	const char *x1[] = {"a", "=", "-", "5"};
	expect_tokens("a=-5", t1, x1, 4);
	/* ... unless it holds one of ~!@#%^&|`? */
	const char *x2[] = {"a", "@-", "5"};
	enum kl_type t2[] = {KL_IDENT, KL_OP, KL_INTEGER};
	expect_tokens("a @-5", t2, x2, 3);
	/* Comments cut operators. */
	const char *x3[] = {"a", "=", "1"};
	enum kl_type t3[] = {KL_IDENT, KL_OP, KL_INTEGER};
	expect_tokens("a =-- c\n1", t3, x3, 3);
	expect_tokens("a =/* c */1", t3, x3, 3);
	const char *x4[] = {"a", "<>", "b", "||", "c", ">=", "d"};
	enum kl_type t4[] = {KL_IDENT, KL_OP, KL_IDENT, KL_OP, KL_IDENT, KL_OP, KL_IDENT};
	expect_tokens("a<>b||c>=d", t4, x4, 7);
}

static void test_keylex_numbers(void **state)
{
	(void)state;
	const char *x[] = {"1", "1.5", ".5", "1e10", "2.5E-3", "3", "e"};
	enum kl_type t[] = {KL_INTEGER, KL_NUMERIC, KL_NUMERIC, KL_NUMERIC,
			    KL_NUMERIC, KL_INTEGER, KL_IDENT};
	expect_tokens("1 1.5 .5 1e10 2.5E-3 3e", t, x, 7);
	/* 0x10 is 0 then an identifier in Postgres 15; 1..2 keeps the integer. */
	const char *y[] = {"0", "x10", "1", "..", "2"};
	enum kl_type u[] = {KL_INTEGER, KL_IDENT, KL_INTEGER, KL_DOT, KL_INTEGER};
	expect_tokens("0x10 1..2", u, y, 5);
}

static void test_keylex_strings(void **state)
{
	(void)state;
	const char *x[] = {"'a''b'", "E'c\\'d'", "$$e'f$$", "$t$ $$ $t$", "U&'x'", "B'01'", "N'z'"};
	enum kl_type t[] = {KL_STRING,	KL_ESTRING, KL_DOLLAR, KL_DOLLAR,
			    KL_XSTRING, KL_XSTRING, KL_XSTRING};
	expect_tokens("'a''b' E'c\\'d' $$e'f$$ $t$ $$ $t$ U&'x' B'01' N'z'", t, x, 7);
	/* An identifier ending in e followed by a string is not an E'' string. */
	const char *y[] = {"abe", "'x'"};
	enum kl_type u[] = {KL_IDENT, KL_STRING};
	expect_tokens("abe'x'", u, y, 2);
	/* Continued over a newline: one token, flagged. */
	struct lexed l;
	lex_all("'a'\n  'b' x", &l);
	assert_int_equal(l.t[0].type, KL_STRING);
	assert_true(l.t[0].flags & KLF_CONT);
	assert_int_equal(l.t[1].type, KL_IDENT);
	/* Not continued without a newline: two strings. */
	lex_all("'a' 'b'", &l);
	assert_int_equal(l.n, 3);
	/* Identifier with $ inside; $1 directly after an identifier char. */
	const char *z[] = {"a$b", "$2"};
	enum kl_type v[] = {KL_IDENT, KL_PARAM};
	expect_tokens("a$b $2", v, z, 2);
}

static void test_keylex_string_values(void **state)
{
	(void)state;
	static const struct {
		const char *src, *val;
		int rc;
	} cases[] = {
	    {"'plain'", "plain", 0},
	    {"'it''s'", "it's", 0},
	    {"''", "", 0},
	    {"E'a\\tb\\nc\\\\d\\'e'''", "a\tb\nc\\d'e'", 0},
	    {"E'\\x41\\x4a\\101\\q'", "AJAq", 0},
	    {"E'\\u0041'", NULL, -1},
	    {"E'\\0'", NULL, -1},
	    {"$q$a$b$q$", "a$b", 0},
	    {"$$$$", "", 0},
	    {"U&'x'", NULL, -1},
	    {"'a'\n'b'", NULL, -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kl_lexer lx;
		struct kl_token t;
		char buf[64];
		const char *out = NULL;
		size_t n = 0;
		kl_init(&lx, cases[i].src, strlen(cases[i].src), 0);
		kl_next(&lx, &t);
		int rc = kl_string_value(cases[i].src, &t, buf, sizeof(buf), &out, &n);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d want %d", cases[i].src, rc, cases[i].rc);
		if (rc == 0 && (n != strlen(cases[i].val) || memcmp(out, cases[i].val, n) != 0))
			fail_msg("%s: value '%.*s' want '%s'", cases[i].src, (int)n, out,
				 cases[i].val);
	}
}

static void test_keylex_identifiers(void **state)
{
	(void)state;
	const char *s = "OrDeR_Id \"ORDER_ID\" \"a\"\"b\" \"order_id\"";
	struct lexed l;
	lex_all(s, &l);
	char buf[32];
	assert_int_equal(kl_ident_copy(s, &l.t[0], buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "order_id", 8);
	assert_true(kl_ident_eq(s, &l.t[0], "order_id", 8));
	assert_false(kl_ident_eq(s, &l.t[1], "order_id", 8));
	assert_true(kl_ident_eq(s, &l.t[1], "ORDER_ID", 8));
	assert_int_equal(kl_ident_copy(s, &l.t[2], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "a\"b", 3);
	assert_true(kl_ident_eq(s, &l.t[2], "a\"b", 3));
	assert_true(kl_ident_eq(s, &l.t[3], "order_id", 8));
	assert_int_equal(kl_ident_copy(s, &l.t[0], buf, 4), (size_t)-1);
}

static void test_keylex_comments_and_hints(void **state)
{
	(void)state;
	const char *s =
	    "/* a /* nested shard_key=9 */ still */ x -- shard=4\n y /*shard_key='q r'*/";
	struct lexed l;
	lex_all(s, &l);
	assert_int_equal(l.n, 3);
	assert_memory_equal(s + l.t[0].start, "x", 1);
	assert_memory_equal(s + l.t[1].start, "y", 1);
	assert_true(l.lx.has_hint_shard);
	assert_int_equal(l.lx.hint_shard, 4);
	assert_int_equal(l.lx.hint_key_len, 3); /* the last one wins */
	assert_memory_equal(l.lx.hint_key, "q r", 3);
}

static void test_keylex_unterminated(void **state)
{
	(void)state;
	static const char *const bad[] = {"'abc",   "E'abc\\'",	    "\"abc", "$$abc", "$a$ x $b$",
					  "/* abc", "/* a /* b */", "U&'x",  "$x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lexed l;
		lex_all(bad[i], &l);
		if (l.t[l.n - 1].type != KL_ERROR)
			fail_msg("%s: not an error", bad[i]);
	}
	struct lexed l;
	lex_all("\"\"", &l);
	assert_int_equal(l.t[0].type, KL_ERROR); /* zero-length identifier */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keylex_basic_tokens),
	    cmocka_unit_test(test_keylex_operators),
	    cmocka_unit_test(test_keylex_numbers),
	    cmocka_unit_test(test_keylex_strings),
	    cmocka_unit_test(test_keylex_string_values),
	    cmocka_unit_test(test_keylex_identifiers),
	    cmocka_unit_test(test_keylex_comments_and_hints),
	    cmocka_unit_test(test_keylex_unterminated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
