/*
 * key.h - canonical key bytes for the three key types (SPEC §2).
 *
 *   bigint: 8 bytes, little-endian two's complement of the int64
 *           (int2/int4/int8 values are widened first)
 *   text:   the UTF-8 bytes as given (no copy: data points at the input)
 *   uuid:   the 16 raw bytes
 *
 * The same key gives the same bytes whether it comes from a SQL literal's
 * content, a text-format Bind value, or a binary-format Bind value.
 * Pure functions, any thread.
 */
#ifndef SR_SHARDMAP_KEY_H
#define SR_SHARDMAP_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum sm_key_type {
	SM_KEY_BIGINT = 1,
	SM_KEY_TEXT = 2,
	SM_KEY_UUID = 3,
};

/* "bigint", "text", "uuid". */
const char *sm_key_type_name(enum sm_key_type t);

/* Parse a type name as a user or pg_catalog would write it (case-insensitive):
 * bigint, int8, integer, int, int4, smallint, int2 -> SM_KEY_BIGINT;
 * text, varchar, character varying -> SM_KEY_TEXT; uuid -> SM_KEY_UUID.
 * Unknown names: SR_EINVAL with a message listing the accepted names. */
int sm_key_type_parse(const char *name, enum sm_key_type *out, struct sr_errmsg *em) SR_MUST_CHECK;

/* A canonical key. For SM_KEY_TEXT, data points into the caller's input and
 * is valid only as long as that input; for the other types data == buf. */
struct sm_key {
	enum sm_key_type type;
	uint32_t len;
	const uint8_t *data;
	uint8_t buf[16];
};

/* From the text form Postgres' input function would accept: the value of a
 * text-format Bind parameter, or a SQL literal's content after unquoting.
 *   bigint: optional surrounding whitespace, optional sign, decimal digits,
 *           must fit int64 (as int8in in Postgres 15)
 *   uuid:   32 hex digits, either case, optional braces, optional '-'
 *           after any group of four digits (as uuid_in)
 *   text:   any bytes (not validated as UTF-8 here: Postgres did that)
 * Errors: SR_EINVAL / SR_ERANGE, message names the type and the value. */
int sm_key_from_text(enum sm_key_type t, const char *s, size_t n, struct sm_key *out,
		     struct sr_errmsg *em) SR_MUST_CHECK;

/* From a binary-format Bind value. bigint: 2, 4 or 8 bytes big-endian
 * (int2/int4/int8 send format); uuid: 16 bytes; text: raw bytes.
 * Any other length is SR_EINVAL. */
int sm_key_from_binary(enum sm_key_type t, const uint8_t *b, size_t n, struct sm_key *out,
		       struct sr_errmsg *em) SR_MUST_CHECK;

/* A bigint key from an int64. Never fails. */
void sm_key_from_int64(int64_t v, struct sm_key *out);

#endif
