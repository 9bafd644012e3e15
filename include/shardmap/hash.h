/*
 * hash.h - the key hash (SPEC §2): XXH3_64bits of the canonical bytes,
 * seed 0, read as an unsigned 64-bit number; written as 16 lowercase hex
 * digits. Pure functions, any thread.
 */
#ifndef SR_SHARDMAP_HASH_H
#define SR_SHARDMAP_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shardmap/key.h"

#define SM_HASH_HEX_LEN 16

uint64_t sm_hash_bytes(const void *p, size_t n);
uint64_t sm_hash_key(const struct sm_key *k);

/* Write h as exactly 16 lowercase hex digits plus NUL into out. */
void sm_hash_format(uint64_t h, char out[SM_HASH_HEX_LEN + 1]);

/* The value 0..15 of one hex digit (either case), -1 if c is not one. */
int sm_hex_digit(int c);

/* Parse 1..16 hex digits (either case, optional "0x" prefix). */
int sm_hash_parse(const char *s, uint64_t *out, struct sr_errmsg *em) SR_MUST_CHECK;

#endif
