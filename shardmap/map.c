/*
 * map.c - the in-memory shard map (see shardmap/map.h): construction, deep
 * copy, validation, lookups and edits of shards, tables and ranges.
 * The cache-file format lives in mapfile.c.
 *
 * A struct sm_map owns everything it points to. Edits check their own
 * preconditions first and only then mutate, so an error leaves the map as
 * it was. Not thread-safe; a finished map may be shared read-only.
 */
#include "shardmap/map.h"

#include "shardmap/hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const char *sm_range_state_name(enum sm_range_state s)
{
	switch (s) {
	case SM_RANGE_ACTIVE:
		return "active";
	case SM_RANGE_FROZEN:
		return "frozen";
	}
	return "unknown";
}

int sm_range_state_parse(const char *s, enum sm_range_state *out, struct sr_errmsg *em)
{
	if (s && strcmp(s, "active") == 0) {
		*out = SM_RANGE_ACTIVE;
		return 0;
	}
	if (s && strcmp(s, "frozen") == 0) {
		*out = SM_RANGE_FROZEN;
		return 0;
	}
	return sr_errmsg_set(em, SR_EINVAL, "unknown range state \"%.64s\": use active or frozen",
			     s ? s : "(null)");
}

struct sm_map *sm_map_new(void)
{
	return calloc(1, sizeof(struct sm_map));
}

static void shard_destroy(struct sm_shard *s)
{
	free(s->primary);
	for (size_t i = 0; i < s->n_replicas; i++)
		free(s->replicas[i]);
	free(s->replicas);
	memset(s, 0, sizeof(*s));
}

static void table_destroy(struct sm_table *t)
{
	free(t->schema);
	free(t->name);
	free(t->key_column);
	memset(t, 0, sizeof(*t));
}

void sm_map_free(struct sm_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_shards; i++)
		shard_destroy(&m->shards[i]);
	for (size_t i = 0; i < m->n_tables; i++)
		table_destroy(&m->tables[i]);
	free(m->shards);
	free(m->tables);
	free(m->ranges);
	free(m);
}

/* Fill dst (zeroed by the caller) with a deep copy of the given fields. On
 * failure dst is left destroyed (all zero) and SR_ENOMEM returned. */
static int shard_init(struct sm_shard *dst, int32_t id, const char *primary,
		      const char *const *replicas, size_t n_replicas)
{
	dst->id = id;
	dst->primary = strdup(primary);
	if (!dst->primary)
		goto fail;
	if (n_replicas > 0) {
		dst->replicas = calloc(n_replicas, sizeof(char *));
		if (!dst->replicas)
			goto fail;
		for (size_t i = 0; i < n_replicas; i++) {
			dst->replicas[i] = strdup(replicas[i]);
			if (!dst->replicas[i])
				goto fail;
			dst->n_replicas = i + 1;
		}
	}
	return 0;
fail:
	shard_destroy(dst);
	return SR_ENOMEM;
}

static int table_init(struct sm_table *dst, const char *schema, const char *name,
		      const char *key_column, enum sm_key_type t)
{
	dst->schema = strdup(schema);
	dst->name = strdup(name);
	dst->key_column = strdup(key_column);
	dst->key_type = t;
	if (!dst->schema || !dst->name || !dst->key_column) {
		table_destroy(dst);
		return SR_ENOMEM;
	}
	return 0;
}

static int map_clone_arrays(const struct sm_map *m, struct sm_map *c)
{
	if (m->n_shards) {
		c->shards = calloc(m->n_shards, sizeof(*c->shards));
		if (!c->shards)
			return SR_ENOMEM;
	}
	for (size_t i = 0; i < m->n_shards; i++) {
		const struct sm_shard *s = &m->shards[i];
		if (shard_init(&c->shards[i], s->id, s->primary, (const char *const *)s->replicas,
			       s->n_replicas) != 0)
			return SR_ENOMEM;
		c->n_shards = i + 1;
	}
	if (m->n_tables) {
		c->tables = calloc(m->n_tables, sizeof(*c->tables));
		if (!c->tables)
			return SR_ENOMEM;
	}
	for (size_t i = 0; i < m->n_tables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (table_init(&c->tables[i], t->schema, t->name, t->key_column, t->key_type) != 0)
			return SR_ENOMEM;
		c->n_tables = i + 1;
	}
	if (m->n_ranges) {
		c->ranges = malloc(m->n_ranges * sizeof(*c->ranges));
		if (!c->ranges)
			return SR_ENOMEM;
		memcpy(c->ranges, m->ranges, m->n_ranges * sizeof(*c->ranges));
		c->n_ranges = m->n_ranges;
	}
	return 0;
}

int sm_map_clone(const struct sm_map *m, struct sm_map **out)
{
	struct sm_map *c = sm_map_new();
	if (!c)
		return SR_ENOMEM;
	c->epoch = m->epoch;
	if (map_clone_arrays(m, c) != 0) {
		sm_map_free(c);
		return SR_ENOMEM;
	}
	*out = c;
	return 0;
}

static bool key_type_known(enum sm_key_type t)
{
	switch (t) {
	case SM_KEY_BIGINT:
	case SM_KEY_TEXT:
	case SM_KEY_UUID:
		return true;
	}
	return false;
}

static int table_cmp(const struct sm_table *a, const struct sm_table *b)
{
	int c = strcmp(a->schema, b->schema);
	return c ? c : strcmp(a->name, b->name);
}

static int validate_shards(const struct sm_map *m, struct sr_errmsg *em)
{
	for (size_t i = 0; i < m->n_shards; i++) {
		const struct sm_shard *s = &m->shards[i];
		if (s->id < 0 || !s->primary)
			return sr_errmsg_set(em, SR_EINVAL, "shard %" PRId32 ": %s", s->id,
					     s->id < 0 ? "negative id" : "no primary conninfo");
		for (size_t r = 0; r < s->n_replicas; r++)
			if (!s->replicas[r])
				return sr_errmsg_set(em, SR_EINVAL,
						     "shard %" PRId32 ": replica %zu is NULL",
						     s->id, r);
		if (i > 0 && m->shards[i - 1].id == s->id)
			return sr_errmsg_set(em, SR_EEXIST, "duplicate shard id %" PRId32, s->id);
		if (i > 0 && m->shards[i - 1].id > s->id)
			return sr_errmsg_set(em, SR_EINVAL,
					     "shards not sorted by id at shard %" PRId32, s->id);
	}
	return 0;
}

static int validate_tables(const struct sm_map *m, struct sr_errmsg *em)
{
	for (size_t i = 0; i < m->n_tables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (!t->schema || !t->name || !t->key_column)
			return sr_errmsg_set(em, SR_EINVAL, "table %zu: missing schema/name/key",
					     i);
		if (!key_type_known(t->key_type))
			return sr_errmsg_set(em, SR_EINVAL, "table %.64s.%.64s: bad key type %d",
					     t->schema, t->name, (int)t->key_type);
		if (i == 0)
			continue;
		int c = table_cmp(&m->tables[i - 1], t);
		if (c == 0)
			return sr_errmsg_set(em, SR_EEXIST, "duplicate table %.64s.%.64s",
					     t->schema, t->name);
		if (c > 0)
			return sr_errmsg_set(em, SR_EINVAL,
					     "tables not sorted by (schema, name) at %.64s.%.64s",
					     t->schema, t->name);
	}
	return 0;
}

static int validate_range(const struct sm_map *m, size_t i, struct sr_errmsg *em)
{
	const struct sm_range *r = &m->ranges[i];
	if (r->lo > r->hi)
		return sr_errmsg_set(em, SR_EINVAL, "range %016" PRIx64 "..%016" PRIx64 ": lo > hi",
				     r->lo, r->hi);
	if (!sm_map_find_shard(m, r->shard_id))
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "range %016" PRIx64 "..%016" PRIx64 ": unknown shard %" PRId32,
				     r->lo, r->hi, r->shard_id);
	if (r->state != SM_RANGE_ACTIVE && r->state != SM_RANGE_FROZEN)
		return sr_errmsg_set(em, SR_EINVAL, "range %016" PRIx64 ": bad state %d", r->lo,
				     (int)r->state);
	if (i == 0) {
		if (r->lo != 0)
			return sr_errmsg_set(em, SR_EGAP,
					     "gap 0000000000000000..%016" PRIx64
					     " before the first range",
					     r->lo - 1);
		return 0;
	}
	const struct sm_range *p = &m->ranges[i - 1];
	if (r->lo < p->lo)
		return sr_errmsg_set(em, SR_EINVAL,
				     "ranges not sorted: %016" PRIx64 " comes after %016" PRIx64,
				     r->lo, p->lo);
	if (r->lo <= p->hi)
		return sr_errmsg_set(em, SR_EOVERLAP,
				     "range %016" PRIx64 "..%016" PRIx64 " overlaps %016" PRIx64
				     "..%016" PRIx64,
				     r->lo, r->hi, p->lo, p->hi);
	if (r->lo != p->hi + 1)
		return sr_errmsg_set(em, SR_EGAP,
				     "gap %016" PRIx64 "..%016" PRIx64 " between ranges", p->hi + 1,
				     r->lo - 1);
	return 0;
}

int sm_map_validate(const struct sm_map *m, struct sr_errmsg *em)
{
	int rc = validate_shards(m, em);
	if (rc == 0)
		rc = validate_tables(m, em);
	if (rc != 0)
		return rc;
	if (m->n_ranges == 0)
		return sr_errmsg_set(em, SR_EGAP, "the map has no ranges");
	for (size_t i = 0; i < m->n_ranges; i++) {
		rc = validate_range(m, i, em);
		if (rc != 0)
			return rc;
	}
	const struct sm_range *last = &m->ranges[m->n_ranges - 1];
	if (last->hi != UINT64_MAX)
		return sr_errmsg_set(em, SR_EGAP,
				     "gap %016" PRIx64 "..ffffffffffffffff after the last range",
				     last->hi + 1);
	return 0;
}

/* Index of the last range with lo <= h, or n_ranges if none. */
static size_t range_index_at(const struct sm_map *m, uint64_t h)
{
	size_t lo = 0, hi = m->n_ranges; /* answer in [lo-1, hi-1] */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->ranges[mid].lo <= h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? m->n_ranges : lo - 1;
}

const struct sm_range *sm_map_lookup(const struct sm_map *m, uint64_t h)
{
	size_t i = range_index_at(m, h);
	if (i >= m->n_ranges || h > m->ranges[i].hi)
		return NULL;
	return &m->ranges[i];
}

struct sm_range *sm_map_find_range(struct sm_map *m, uint64_t lo)
{
	size_t i = range_index_at(m, lo);
	if (i >= m->n_ranges || m->ranges[i].lo != lo)
		return NULL;
	return &m->ranges[i];
}

/* Index of the first shard with id >= id (n_shards if none). */
static size_t shard_lower_bound(const struct sm_map *m, int32_t id)
{
	size_t lo = 0, hi = m->n_shards;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->shards[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct sm_shard *sm_map_find_shard(const struct sm_map *m, int32_t id)
{
	size_t i = shard_lower_bound(m, id);
	return i < m->n_shards && m->shards[i].id == id ? &m->shards[i] : NULL;
}

/* strcmp() of a counted string against a NUL-terminated one. */
static int cmp_counted(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Index of the first table >= (schema, name) in sort order. */
static size_t table_lower_bound(const struct sm_map *m, const char *schema, size_t schema_len,
				const char *name, size_t name_len)
{
	size_t lo = 0, hi = m->n_tables;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct sm_table *t = &m->tables[mid];
		int c = -cmp_counted(schema, schema_len, t->schema);
		if (c == 0)
			c = -cmp_counted(name, name_len, t->name);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct sm_table *table_find_exact(const struct sm_map *m, const char *schema,
					       size_t schema_len, const char *name, size_t name_len)
{
	size_t i = table_lower_bound(m, schema, schema_len, name, name_len);
	if (i < m->n_tables && cmp_counted(schema, schema_len, m->tables[i].schema) == 0 &&
	    cmp_counted(name, name_len, m->tables[i].name) == 0)
		return &m->tables[i];
	return NULL;
}

const struct sm_table *sm_map_find_table_n(const struct sm_map *m, const char *schema,
					   size_t schema_len, const char *name, size_t name_len)
{
	if (!name)
		return NULL;
	if (schema)
		return table_find_exact(m, schema, schema_len, name, name_len);
	const struct sm_table *t = table_find_exact(m, "public", 6, name, name_len);
	if (t)
		return t;
	for (size_t i = 0; i < m->n_tables; i++)
		if (cmp_counted(name, name_len, m->tables[i].name) == 0)
			return &m->tables[i];
	return NULL;
}

const struct sm_table *sm_map_find_table(const struct sm_map *m, const char *schema,
					 const char *name)
{
	if (!name)
		return NULL;
	return sm_map_find_table_n(m, schema, schema ? strlen(schema) : 0, name, strlen(name));
}

int sm_map_add_shard(struct sm_map *m, int32_t id, const char *primary, const char *const *replicas,
		     size_t n_replicas, struct sr_errmsg *em)
{
	if (id < 0)
		return sr_errmsg_set(em, SR_EINVAL, "shard id %" PRId32 " is negative", id);
	if (!primary)
		return sr_errmsg_set(em, SR_EINVAL, "shard %" PRId32 ": no primary conninfo", id);
	for (size_t r = 0; r < n_replicas; r++)
		if (!replicas[r])
			return sr_errmsg_set(em, SR_EINVAL,
					     "shard %" PRId32 ": replica %zu is NULL", id, r);
	size_t at = shard_lower_bound(m, id);
	if (at < m->n_shards && m->shards[at].id == id)
		return sr_errmsg_set(em, SR_EEXIST, "shard %" PRId32 " already exists", id);

	struct sm_shard s = {0};
	if (shard_init(&s, id, primary, replicas, n_replicas) != 0)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory adding shard %" PRId32, id);
	struct sm_shard *grown = realloc(m->shards, (m->n_shards + 1) * sizeof(*grown));
	if (!grown) {
		shard_destroy(&s);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory adding shard %" PRId32, id);
	}
	m->shards = grown;
	memmove(&m->shards[at + 1], &m->shards[at], (m->n_shards - at) * sizeof(*grown));
	m->shards[at] = s;
	m->n_shards++;
	return 0;
}

int sm_map_add_table(struct sm_map *m, const char *schema, const char *name, const char *key_column,
		     enum sm_key_type t, struct sr_errmsg *em)
{
	if (!schema)
		schema = "public";
	if (!name || !*name || !*schema || !key_column || !*key_column)
		return sr_errmsg_set(em, SR_EINVAL,
				     "table needs a non-empty schema, name and key column");
	if (!key_type_known(t))
		return sr_errmsg_set(em, SR_EINVAL, "table %.64s.%.64s: unknown key type %d",
				     schema, name, (int)t);
	size_t at = table_lower_bound(m, schema, strlen(schema), name, strlen(name));
	if (at < m->n_tables && strcmp(m->tables[at].schema, schema) == 0 &&
	    strcmp(m->tables[at].name, name) == 0)
		return sr_errmsg_set(em, SR_EEXIST, "table %.64s.%.64s already exists", schema,
				     name);

	struct sm_table tab = {0};
	if (table_init(&tab, schema, name, key_column, t) != 0)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory adding table %.64s", name);
	struct sm_table *grown = realloc(m->tables, (m->n_tables + 1) * sizeof(*grown));
	if (!grown) {
		table_destroy(&tab);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory adding table %.64s", name);
	}
	m->tables = grown;
	memmove(&m->tables[at + 1], &m->tables[at], (m->n_tables - at) * sizeof(*grown));
	m->tables[at] = tab;
	m->n_tables++;
	return 0;
}

int sm_map_init_ranges(struct sm_map *m, uint32_t n, struct sr_errmsg *em)
{
	if (n == 0)
		return sr_errmsg_set(em, SR_EINVAL, "the map needs at least one range");
	for (uint32_t i = 0; i < n; i++)
		if (i > INT32_MAX || !sm_map_find_shard(m, (int32_t)i))
			return sr_errmsg_set(em, SR_ENOTFOUND,
					     "shard %" PRIu32
					     " does not exist (map init over %" PRIu32
					     " shards needs shards 0..%" PRIu32 ")",
					     i, n, n - 1);
	struct sm_range *r = calloc(n, sizeof(*r));
	if (!r)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory for %" PRIu32 " ranges", n);
	/* step = floor(2^64 / n), computed without 128-bit arithmetic; n == 1 makes
	 * the single range [0, UINT64_MAX] whatever step is. */
	uint64_t step = UINT64_MAX / n + (UINT64_MAX % n == (uint64_t)n - 1 ? 1 : 0);
	for (uint32_t i = 0; i < n; i++) {
		r[i].lo = (uint64_t)i * step;
		r[i].hi = i + 1 == n ? UINT64_MAX : (uint64_t)(i + 1) * step - 1;
		r[i].shard_id = (int32_t)i;
		r[i].state = SM_RANGE_ACTIVE;
	}
	free(m->ranges);
	m->ranges = r;
	m->n_ranges = n;
	return 0;
}

static int range_not_found(uint64_t lo, struct sr_errmsg *em)
{
	return sr_errmsg_set(em, SR_ENOTFOUND,
			     "no range starts at %016" PRIx64 " (name a range by its lo)", lo);
}

int sm_map_split(struct sm_map *m, uint64_t lo, uint64_t at, uint64_t *at_out, struct sr_errmsg *em)
{
	struct sm_range *r = sm_map_find_range(m, lo);
	if (!r)
		return range_not_found(lo, em);
	if (r->lo == r->hi)
		return sr_errmsg_set(em, SR_EINVAL,
				     "range %016" PRIx64 "..%016" PRIx64
				     " holds one hash: cannot split",
				     r->lo, r->hi);
	if (at == 0)
		at = r->lo + (r->hi - r->lo) / 2 + 1;
	if (at <= r->lo || at > r->hi)
		return sr_errmsg_set(em, SR_EINVAL,
				     "split point %016" PRIx64 " is not inside range %016" PRIx64
				     "..%016" PRIx64 " (need lo < at <= hi)",
				     at, r->lo, r->hi);
	size_t i = (size_t)(r - m->ranges);
	struct sm_range *grown = realloc(m->ranges, (m->n_ranges + 1) * sizeof(*grown));
	if (!grown)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory splitting a range");
	m->ranges = grown;
	memmove(&m->ranges[i + 2], &m->ranges[i + 1], (m->n_ranges - i - 1) * sizeof(*grown));
	m->ranges[i + 1] = m->ranges[i];
	m->ranges[i + 1].lo = at;
	m->ranges[i].hi = at - 1;
	m->n_ranges++;
	if (at_out)
		*at_out = at;
	return 0;
}

int sm_map_reassign(struct sm_map *m, uint64_t lo, int32_t shard_id, struct sr_errmsg *em)
{
	struct sm_range *r = sm_map_find_range(m, lo);
	if (!r)
		return range_not_found(lo, em);
	if (!sm_map_find_shard(m, shard_id))
		return sr_errmsg_set(em, SR_ENOTFOUND, "shard %" PRId32 " does not exist",
				     shard_id);
	r->shard_id = shard_id;
	return 0;
}

int sm_map_set_state(struct sm_map *m, uint64_t lo, enum sm_range_state st, struct sr_errmsg *em)
{
	struct sm_range *r = sm_map_find_range(m, lo);
	if (!r)
		return range_not_found(lo, em);
	switch (st) {
	case SM_RANGE_ACTIVE:
	case SM_RANGE_FROZEN:
		r->state = st;
		return 0;
	}
	return sr_errmsg_set(em, SR_EINVAL, "unknown range state %d", (int)st);
}

int sm_map_set_read_lsn(struct sm_map *m, uint64_t lo, uint64_t lsn, struct sr_errmsg *em)
{
	struct sm_range *r = sm_map_find_range(m, lo);
	if (!r)
		return range_not_found(lo, em);
	r->read_lsn = lsn;
	return 0;
}

/* n hex digits at s (1 <= n <= max) into *out. */
static bool lsn_hex(const char *s, size_t n, size_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		int d = sm_hex_digit((unsigned char)s[i]);
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

int sm_lsn_parse(const char *s, size_t n, uint64_t *out)
{
	const char *slash = memchr(s, '/', n);
	uint64_t hi, lo;
	if (!slash)
		return n == 16 && lsn_hex(s, n, 16, out) ? 0 : SR_EINVAL;
	size_t hn = (size_t)(slash - s);
	if (!lsn_hex(s, hn, 8, &hi) || !lsn_hex(slash + 1, n - hn - 1, 8, &lo))
		return SR_EINVAL;
	*out = hi << 32 | lo;
	return 0;
}

void sm_lsn_format(uint64_t lsn, char *buf)
{
	snprintf(buf, 18, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}
