/*
 * hash.c - the key hash (see shardmap/hash.h, SPEC §2): XXH3_64bits with
 * seed 0 over the canonical key bytes, and its 16-hex-digit text form.
 * Owns no state; pure functions, any thread.
 */
#include "shardmap/hash.h"

#include <stdbool.h>
#include <string.h>
#include <xxhash.h>

uint64_t sm_hash_bytes(const void *p, size_t n)
{
	if (n == 0)
		p = "";
	return (uint64_t)XXH3_64bits(p, n);
}

uint64_t sm_hash_key(const struct sm_key *k)
{
	/* Fixed-size keys hash their own buf, so a struct copy (whose data
	 * still points at the original's buf) hashes correctly too. */
	switch (k->type) {
	case SM_KEY_BIGINT:
		return sm_hash_bytes(k->buf, 8);
	case SM_KEY_UUID:
		return sm_hash_bytes(k->buf, 16);
	case SM_KEY_TEXT:
		return sm_hash_bytes(k->data, k->len);
	}
	return sm_hash_bytes(k->data, k->len);
}

void sm_hash_format(uint64_t h, char out[SM_HASH_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = SM_HASH_HEX_LEN - 1; i >= 0; i--) {
		out[i] = hex[h & 15];
		h >>= 4;
	}
	out[SM_HASH_HEX_LEN] = '\0';
}

int sm_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int sm_hash_parse(const char *s, uint64_t *out, struct sr_errmsg *em)
{
	if (!s)
		return sr_errmsg_set(em, SR_EINVAL, "missing hash value");
	const char *p = s;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	size_t n = strlen(p);
	if (n == 0)
		return sr_errmsg_set(em, SR_EINVAL,
				     "invalid hash \"%.64s\": expected 1 to 16 hex digits", s);
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		int d = sm_hex_digit(p[i]);
		if (d < 0)
			return sr_errmsg_set(em, SR_EINVAL,
					     "invalid hash \"%.64s\": expected 1 to 16 hex digits",
					     s);
		v = v << 4 | (uint64_t)d;
	}
	if (n > SM_HASH_HEX_LEN)
		return sr_errmsg_set(em, SR_ERANGE,
				     "hash \"%.64s\" has %zu hex digits, at most 16 allowed", s, n);
	*out = v;
	return 0;
}
