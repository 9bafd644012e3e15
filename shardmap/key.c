/*
 * key.c - canonical key bytes (see shardmap/key.h, SPEC §2).
 *
 * Parses key values exactly as Postgres 15's input functions would accept
 * them (int8in via pg_strtoint64, uuid_in via string_to_uuid) and the binary
 * send formats of int2/int4/int8/uuid, and turns them into the canonical
 * bytes that get hashed. Owns no state; pure functions, any thread.
 */
#include "shardmap/key.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shardmap/hash.h"

/* Longest part of an offending value quoted in an error message. */
#define KEY_MSG_MAX 64

const char *sm_key_type_name(enum sm_key_type t)
{
	switch (t) {
	case SM_KEY_BIGINT:
		return "bigint";
	case SM_KEY_TEXT:
		return "text";
	case SM_KEY_UUID:
		return "uuid";
	}
	return "unknown";
}

static const struct {
	const char *name;
	enum sm_key_type type;
} key_type_names[] = {
    {"bigint", SM_KEY_BIGINT},	{"int8", SM_KEY_BIGINT},
    {"integer", SM_KEY_BIGINT}, {"int", SM_KEY_BIGINT},
    {"int4", SM_KEY_BIGINT},	{"smallint", SM_KEY_BIGINT},
    {"int2", SM_KEY_BIGINT},	{"text", SM_KEY_TEXT},
    {"varchar", SM_KEY_TEXT},	{"character varying", SM_KEY_TEXT},
    {"uuid", SM_KEY_UUID},
};

int sm_key_type_parse(const char *name, enum sm_key_type *out, struct sr_errmsg *em)
{
	if (!name)
		return sr_errmsg_set(em, SR_EINVAL, "missing key type");
	for (size_t i = 0; i < sizeof(key_type_names) / sizeof(key_type_names[0]); i++) {
		if (strcasecmp(name, key_type_names[i].name) == 0) {
			*out = key_type_names[i].type;
			return 0;
		}
	}
	char shown[KEY_MSG_MAX + 8];
	snprintf(shown, sizeof(shown), "%.*s%s", KEY_MSG_MAX, name,
		 strlen(name) > KEY_MSG_MAX ? "..." : "");
	return sr_errmsg_set(em, SR_EINVAL,
			     "unknown key type \"%s\": use bigint (int8, integer, int, int4, "
			     "smallint, int2), text (varchar, character varying) or uuid",
			     shown);
}

/* Quote at most KEY_MSG_MAX bytes of s for a message; bytes outside printable
 * ASCII (and '"', '\\') are written as \xNN. Always NUL-terminates out. */
static void key_show(const char *s, size_t n, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	size_t lim = n > KEY_MSG_MAX ? KEY_MSG_MAX : n;
	for (size_t i = 0; i < lim && o + 5 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (n > lim && o + 4 < outsz) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static int key_bad_syntax(enum sm_key_type t, const char *s, size_t n, struct sr_errmsg *em)
{
	char shown[KEY_MSG_MAX * 4 + 8];
	key_show(s, n, shown, sizeof(shown));
	return sr_errmsg_set(em, SR_EINVAL, "invalid input syntax for type %s: \"%s\"",
			     sm_key_type_name(t), shown);
}

/* C-locale isspace(), as Postgres uses for int8in. */
static bool key_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool key_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void key_set_int64(int64_t v, struct sm_key *out)
{
	uint64_t u = (uint64_t)v;
	out->type = SM_KEY_BIGINT;
	out->len = 8;
	for (int i = 0; i < 8; i++)
		out->buf[i] = (uint8_t)(u >> (8 * i));
	memset(out->buf + 8, 0, sizeof(out->buf) - 8);
	out->data = out->buf;
}

void sm_key_from_int64(int64_t v, struct sm_key *out)
{
	key_set_int64(v, out);
}

/* pg_strtoint64 of Postgres 15: whitespace, sign, >= 1 digit, whitespace.
 * Accumulates negatively so INT64_MIN fits; overflow is reported as soon as
 * it happens (as Postgres does, before looking at trailing bytes). */
static int key_parse_bigint(const char *s, size_t n, struct sm_key *out, struct sr_errmsg *em)
{
	size_t i = 0;
	bool neg = false;
	int64_t acc = 0;

	while (i < n && key_is_space(s[i]))
		i++;
	if (i < n && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	if (i >= n || !key_is_digit(s[i]))
		return key_bad_syntax(SM_KEY_BIGINT, s, n, em);
	for (; i < n && key_is_digit(s[i]); i++) {
		int digit = s[i] - '0';
		if (acc < (INT64_MIN + digit) / 10) {
			char shown[KEY_MSG_MAX * 4 + 8];
			key_show(s, n, shown, sizeof(shown));
			return sr_errmsg_set(em, SR_ERANGE,
					     "value \"%s\" is out of range for type bigint", shown);
		}
		acc = acc * 10 - digit;
	}
	while (i < n && key_is_space(s[i]))
		i++;
	if (i != n)
		return key_bad_syntax(SM_KEY_BIGINT, s, n, em);
	if (!neg) {
		if (acc == INT64_MIN) {
			char shown[KEY_MSG_MAX * 4 + 8];
			key_show(s, n, shown, sizeof(shown));
			return sr_errmsg_set(em, SR_ERANGE,
					     "value \"%s\" is out of range for type bigint", shown);
		}
		acc = -acc;
	}
	key_set_int64(acc, out);
	return 0;
}

/* string_to_uuid of Postgres 15: optional {braces}, 16 hex pairs, one
 * optional '-' after each even byte (every 4 hex digits) but the last. */
static int key_parse_uuid(const char *s, size_t n, struct sm_key *out, struct sr_errmsg *em)
{
	uint8_t bytes[16];
	size_t i = 0;
	bool braces = false;

	if (i < n && s[i] == '{') {
		braces = true;
		i++;
	}
	for (int b = 0; b < 16; b++) {
		if (n - i < 2)
			return key_bad_syntax(SM_KEY_UUID, s, n, em);
		int hi = sm_hex_digit(s[i]), lo = sm_hex_digit(s[i + 1]);
		if (hi < 0 || lo < 0)
			return key_bad_syntax(SM_KEY_UUID, s, n, em);
		bytes[b] = (uint8_t)(hi << 4 | lo);
		i += 2;
		if (i < n && s[i] == '-' && (b % 2) == 1 && b < 15)
			i++;
	}
	if (braces) {
		if (i >= n || s[i] != '}')
			return key_bad_syntax(SM_KEY_UUID, s, n, em);
		i++;
	}
	if (i != n)
		return key_bad_syntax(SM_KEY_UUID, s, n, em);
	out->type = SM_KEY_UUID;
	out->len = 16;
	memcpy(out->buf, bytes, 16);
	out->data = out->buf;
	return 0;
}

static int key_set_text(const char *s, size_t n, struct sm_key *out, struct sr_errmsg *em)
{
	if (n > UINT32_MAX)
		return sr_errmsg_set(em, SR_ETOOBIG, "text key of %zu bytes is too long", n);
	if (!s && n > 0)
		return sr_errmsg_set(em, SR_EINVAL, "text key: NULL data");
	out->type = SM_KEY_TEXT;
	out->len = (uint32_t)n;
	out->data = (const uint8_t *)(s ? s : "");
	return 0;
}

int sm_key_from_text(enum sm_key_type t, const char *s, size_t n, struct sm_key *out,
		     struct sr_errmsg *em)
{
	if (!s && n > 0)
		return sr_errmsg_set(em, SR_EINVAL, "%s key value: NULL data", sm_key_type_name(t));
	if (!s)
		s = "";
	switch (t) {
	case SM_KEY_BIGINT:
		return key_parse_bigint(s, n, out, em);
	case SM_KEY_TEXT:
		return key_set_text(s, n, out, em);
	case SM_KEY_UUID:
		return key_parse_uuid(s, n, out, em);
	}
	return sr_errmsg_set(em, SR_EINVAL, "unknown key type %d", (int)t);
}

static int key_bad_binary(enum sm_key_type t, size_t n, const char *expect, struct sr_errmsg *em)
{
	return sr_errmsg_set(em, SR_EINVAL,
			     "invalid binary value for type %s: length %zu, expected %s",
			     sm_key_type_name(t), n, expect);
}

static int key_binary_bigint(const uint8_t *b, size_t n, struct sm_key *out, struct sr_errmsg *em)
{
	if (n != 2 && n != 4 && n != 8)
		return key_bad_binary(SM_KEY_BIGINT, n, "2, 4 or 8 bytes (int2/int4/int8)", em);
	uint64_t u = 0;
	for (size_t i = 0; i < n; i++)
		u = u << 8 | b[i];
	/* sign-extend from n bytes */
	if (n < 8 && (b[0] & 0x80))
		u |= UINT64_MAX << (8 * n);
	key_set_int64((int64_t)u, out);
	return 0;
}

int sm_key_from_binary(enum sm_key_type t, const uint8_t *b, size_t n, struct sm_key *out,
		       struct sr_errmsg *em)
{
	if (!b && n > 0)
		return sr_errmsg_set(em, SR_EINVAL, "%s key value: NULL data", sm_key_type_name(t));
	switch (t) {
	case SM_KEY_BIGINT:
		return key_binary_bigint(b, n, out, em);
	case SM_KEY_TEXT:
		return key_set_text((const char *)b, n, out, em);
	case SM_KEY_UUID:
		if (n != 16)
			return key_bad_binary(SM_KEY_UUID, n, "16 bytes", em);
		out->type = SM_KEY_UUID;
		out->len = 16;
		memcpy(out->buf, b, 16);
		out->data = out->buf;
		return 0;
	}
	return sr_errmsg_set(em, SR_EINVAL, "unknown key type %d", (int)t);
}
