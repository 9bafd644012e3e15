/*
 * map.h - the cluster description a router routes by: shards (with primary
 * and replica conninfo), sharded tables (key column and type), and the range
 * map that tiles the 64-bit hash space, under one epoch.
 *
 * A struct sm_map is plain owned data: sm_map_free() frees everything it
 * points to. Mutating functions keep the map valid or leave it unchanged
 * on error. Not thread-safe; the router shares a map read-only after
 * building it (immutable snapshot, refcounted by the router).
 */
#ifndef SR_SHARDMAP_MAP_H
#define SR_SHARDMAP_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shardmap/key.h"

enum sm_range_state {
	SM_RANGE_ACTIVE = 0, /* owner serves reads and writes */
	SM_RANGE_FROZEN = 1, /* a move is cutting over: writes wait */
};

/* "active", "frozen"; sm_range_state_parse is the inverse (SR_EINVAL). */
const char *sm_range_state_name(enum sm_range_state s);
int sm_range_state_parse(const char *s, enum sm_range_state *out, struct sr_errmsg *em) SR_MUST_CHECK;

struct sm_range {
	uint64_t lo; /* inclusive */
	uint64_t hi; /* inclusive */
	int32_t shard_id;
	enum sm_range_state state;
	/* 0, or the owner primary's WAL LSN at a move's cutover: replicas serve
	 * keyed reads of the range only once they have replayed past it. Kept by
	 * splits (both halves), cleared by nothing but sm_map_set_read_lsn. */
	uint64_t read_lsn;
};

struct sm_shard {
	int32_t id;
	char *primary;     /* libpq conninfo */
	size_t n_replicas;
	char **replicas;   /* libpq conninfo each */
};

struct sm_table {
	char *schema;      /* "public" unless given */
	char *name;        /* as stored in the catalog (lower case unless quoted) */
	char *key_column;
	enum sm_key_type key_type;
};

struct sm_map {
	uint64_t epoch;
	size_t n_shards;
	struct sm_shard *shards;   /* sorted by id */
	size_t n_tables;
	struct sm_table *tables;   /* sorted by (schema, name) */
	size_t n_ranges;
	struct sm_range *ranges;   /* sorted by lo; tile 0..UINT64_MAX when valid */
};

struct sm_map *sm_map_new(void);             /* empty map, epoch 0; NULL on ENOMEM */
void sm_map_free(struct sm_map *m);          /* NULL is a no-op */
int sm_map_clone(const struct sm_map *m, struct sm_map **out) SR_MUST_CHECK;

/* Check: ranges sorted, no overlap (SR_EOVERLAP), no gap and full coverage
 * (SR_EGAP), lo <= hi, every owner is a known shard (SR_ENOTFOUND), shard ids
 * unique, table names unique. The message names the offending range/shard. */
int sm_map_validate(const struct sm_map *m, struct sr_errmsg *em) SR_MUST_CHECK;

/* O(log n) lookup of the range containing h; NULL only if the map has no
 * ranges or is not valid at h. */
const struct sm_range *sm_map_lookup(const struct sm_map *m, uint64_t h);

const struct sm_shard *sm_map_find_shard(const struct sm_map *m, int32_t id);

/* Find a sharded table. schema may be NULL (then any schema matches, first
 * in order; "public" preferred). Names compared exactly (caller folds case). */
const struct sm_table *sm_map_find_table(const struct sm_map *m, const char *schema,
					 const char *name);
/* Same with a counted name (no NUL needed). */
const struct sm_table *sm_map_find_table_n(const struct sm_map *m, const char *schema,
					   size_t schema_len, const char *name, size_t name_len);

/* Find the range whose lo is exactly lo (how users name ranges). */
struct sm_range *sm_map_find_range(struct sm_map *m, uint64_t lo);

/* Editing. Each keeps the map valid or returns an error leaving it unchanged. */
int sm_map_add_shard(struct sm_map *m, int32_t id, const char *primary,
		     const char *const *replicas, size_t n_replicas, struct sr_errmsg *em) SR_MUST_CHECK;
int sm_map_add_table(struct sm_map *m, const char *schema, const char *name,
		     const char *key_column, enum sm_key_type t, struct sr_errmsg *em) SR_MUST_CHECK;
/* Replace all ranges with n equal ranges owned by shards 0..n-1 (each must
 * exist). Range i is [i*step, (i+1)*step-1], the last ends at UINT64_MAX. */
int sm_map_init_ranges(struct sm_map *m, uint32_t n, struct sr_errmsg *em) SR_MUST_CHECK;
/* Split the range starting at lo into [lo, at-1] and [at, hi]; needs
 * lo < at <= hi (else SR_EINVAL naming the range). Both halves keep the owner
 * and state. at == 0 means "the midpoint": lo + (hi - lo) / 2 + 1. */
int sm_map_split(struct sm_map *m, uint64_t lo, uint64_t at, uint64_t *at_out,
		 struct sr_errmsg *em) SR_MUST_CHECK;
int sm_map_reassign(struct sm_map *m, uint64_t lo, int32_t shard_id, struct sr_errmsg *em) SR_MUST_CHECK;
int sm_map_set_state(struct sm_map *m, uint64_t lo, enum sm_range_state st, struct sr_errmsg *em) SR_MUST_CHECK;
/* Set the read LSN of the range starting at lo (0 = none). SR_ENOTFOUND. */
int sm_map_set_read_lsn(struct sm_map *m, uint64_t lo, uint64_t lsn, struct sr_errmsg *em) SR_MUST_CHECK;

/* pg_lsn text "X/Y" (1-8 hex digits each, as Postgres prints it) <-> uint64.
 * sm_lsn_parse also accepts exactly 16 hex digits; SR_EINVAL otherwise.
 * sm_lsn_format writes "X/Y" (uppercase, like Postgres) into buf[>= 18]. */
int sm_lsn_parse(const char *s, size_t n, uint64_t *out) SR_MUST_CHECK;
void sm_lsn_format(uint64_t lsn, char *buf);

/*
 * Cache file: a text file a router writes after each map it loads and reads
 * when the catalog is down. Format (version 1), one record per line:
 *   shardrouter-map 1
 *   epoch <n>
 *   shard <id> <primary-conninfo, percent-encoded>
 *   replica <shard-id> <conninfo, percent-encoded>
 *   table <schema> <name> <key_column> <bigint|text|uuid>
 *   range <lo-hex16> <hi-hex16> <shard-id> <active|frozen> [<read-lsn X/Y>]
 *   checksum <hex16 XXH3_64bits of every byte before this line>
 * Written to path.tmp, fsync'd, renamed over path, directory fsync'd.
 * The read LSN field is written only when the range has one (files written
 * before it existed load with read_lsn 0; on load it may also be 16 hex
 * digits). Loading checks the version, the checksum (SR_ECORRUPT) and validates.
 */
int sm_map_save(const struct sm_map *m, const char *path, struct sr_errmsg *em) SR_MUST_CHECK;
int sm_map_load_file(const char *path, struct sm_map **out, struct sr_errmsg *em) SR_MUST_CHECK;
/* The same format to/from memory (used by save/load and by tests).
 * *out is malloc'd, NUL-terminated; *out_len excludes the NUL. */
int sm_map_serialize(const struct sm_map *m, char **out, size_t *out_len, struct sr_errmsg *em) SR_MUST_CHECK;
int sm_map_deserialize(const char *buf, size_t len, struct sm_map **out, struct sr_errmsg *em) SR_MUST_CHECK;

#endif
