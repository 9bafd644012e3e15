/*
 * test_move.c - cmocka tests for the pure parts of `shardctl move`:
 * tools/move_apply.c's pgoutput decoder (mdec_message) and apply decisions
 * (mapply_decide), its LSN helpers, and tools/move_db.c's COPY text helpers
 * and key hashing. No database: pgoutput protocol-1 messages are built
 * byte by byte (big-endian) as Postgres 15's pgoutput writes them.
 *
 * Ranges are never hard-coded: each test hashes its keys with sm_hash_key
 * and builds a range that contains exactly the keys it wants in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/move.h"
#include "shardmap/hash.h"
#include "shardmap/key.h"

/* ---- the tables ----------------------------------------------------------- */

enum {
	OID_ITEMS = 16401,
	OID_EVENTS = 16402,
	OID_DOCS = 16403,
	OID_FULL = 16404,
	OID_OTHER = 16405
};

/* public.items: id bigint (pk, key), name text, body text (TOASTable) */
static struct sm_table t_items = {"public", "items", "id", SM_KEY_BIGINT};
static struct mcol c_items[] = {
    {"id", "\"id\"", "bigint", true},
    {"name", "\"name\"", "text", false},
    {"body", "\"body\"", "text", false},
};
/* app.events: tenant text (pk, key), seq bigint (pk), note text */
static struct sm_table t_events = {"app", "events", "tenant", SM_KEY_TEXT};
static struct mcol c_events[] = {
    {"tenant", "\"tenant\"", "text", true},
    {"seq", "\"seq\"", "bigint", true},
    {"note", "\"note\"", "text", false},
};
/* public.docs: u uuid (pk, key), v text */
static struct sm_table t_docs = {"public", "docs", "u", SM_KEY_UUID};
static struct mcol c_docs[] = {
    {"u", "\"u\"", "uuid", true},
    {"v", "\"v\"", "text", false},
};
/* public.full_t (REPLICA IDENTITY FULL): id bigint (pk), region bigint
 * (key, not in the pk), payload text */
static struct sm_table t_full = {"public", "full_t", "region", SM_KEY_BIGINT};
static struct mcol c_full[] = {
    {"id", "\"id\"", "bigint", true},
    {"region", "\"region\"", "bigint", false},
    {"payload", "\"payload\"", "text", false},
};

#define MT(tab, cs, key)                                                                           \
	{                                                                                          \
		.t = &(tab), .qname = "tbl", .n_cols = sizeof(cs) / sizeof((cs)[0]), .cols = (cs), \
		.key_col = (key), .col_list = "", .pk_list = "", .key_type = ""                    \
	}
static struct mtable tabs[] = {
    MT(t_items, c_items, 0),
    MT(t_events, c_events, 0),
    MT(t_docs, c_docs, 0),
    MT(t_full, c_full, 1),
};
#define N_TABS (sizeof(tabs) / sizeof(tabs[0]))

/* ---- building pgoutput messages ---------------------------------------------- */

struct mbuf {
	uint8_t b[2048];
	size_t n;
};

/* Marks an unchanged TOAST value ('u') in a tuple; NULL marks 'n'. */
static const char UNCH[] = "<unchanged toast>";

static void p8(struct mbuf *m, uint8_t v)
{
	assert_true(m->n < sizeof(m->b));
	m->b[m->n++] = v;
}

static void pbe(struct mbuf *m, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		p8(m, (uint8_t)(v >> (8 * i)));
}

static void pstr(struct mbuf *m, const char *s)
{
	for (; *s; s++)
		p8(m, (uint8_t)*s);
	p8(m, 0);
}

static void ptuple(struct mbuf *m, size_t n, const char *const *v)
{
	pbe(m, n, 2);
	for (size_t i = 0; i < n; i++) {
		if (!v[i]) {
			p8(m, 'n');
		} else if (v[i] == UNCH) {
			p8(m, 'u');
		} else {
			size_t l = strlen(v[i]);
			p8(m, 't');
			pbe(m, l, 4);
			for (size_t j = 0; j < l; j++)
				p8(m, (uint8_t)v[i][j]);
		}
	}
}

static struct mbuf msg_relation(uint32_t oid, const char *nsp, const char *rel, size_t n,
				const char *const *names)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'R');
	pbe(&m, oid, 4);
	pstr(&m, nsp);
	pstr(&m, rel);
	p8(&m, 'd'); /* replica identity */
	pbe(&m, n, 2);
	for (size_t i = 0; i < n; i++) {
		p8(&m, i == 0); /* flags: part of the key */
		pstr(&m, names[i]);
		pbe(&m, 25, 4);		/* type oid (text) */
		pbe(&m, 0xffffffff, 4); /* typmod -1 */
	}
	return m;
}

static struct mbuf msg_insert(uint32_t oid, size_t n, const char *const *v)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'I');
	pbe(&m, oid, 4);
	p8(&m, 'N');
	ptuple(&m, n, v);
	return m;
}

/* oldtag 0: no old tuple; 'K' or 'O' with oldv. */
static struct mbuf msg_update(uint32_t oid, char oldtag, size_t n, const char *const *oldv,
			      const char *const *newv)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'U');
	pbe(&m, oid, 4);
	if (oldtag) {
		p8(&m, (uint8_t)oldtag);
		ptuple(&m, n, oldv);
	}
	p8(&m, 'N');
	ptuple(&m, n, newv);
	return m;
}

static struct mbuf msg_delete(uint32_t oid, char tag, size_t n, const char *const *v)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'D');
	pbe(&m, oid, 4);
	p8(&m, (uint8_t)tag);
	ptuple(&m, n, v);
	return m;
}

static struct mbuf msg_commit(uint64_t lsn, uint64_t end, uint64_t ts)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'C');
	p8(&m, 0);
	pbe(&m, lsn, 8);
	pbe(&m, end, 8);
	pbe(&m, ts, 8);
	return m;
}

static struct mbuf msg_begin(uint64_t final_lsn, uint64_t ts, uint32_t xid)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'B');
	pbe(&m, final_lsn, 8);
	pbe(&m, ts, 8);
	pbe(&m, xid, 4);
	return m;
}

static struct mbuf msg_truncate(uint32_t oid)
{
	struct mbuf m = {.n = 0};
	p8(&m, 'T');
	pbe(&m, 1, 4);
	p8(&m, 0);
	pbe(&m, oid, 4);
	return m;
}

#define V(...) ((const char *const[]){__VA_ARGS__})

/* ---- fixture: a decoder that has seen every table's Relation --------------- */

struct fx {
	struct mdecoder d;
	struct mmsg m;
	struct mplan pl;
	struct sr_errmsg em;
};

/* Decode a copy of b[0..len) held in a buffer of exactly len bytes (so
 * that ASan sees any read past the end). */
static int decode_n(struct fx *f, const struct mbuf *b, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	assert_non_null(p);
	memcpy(p, b->b, len);
	int rc = mdec_message(&f->d, p, len, &f->m, &f->em);
	free(p);
	return rc;
}

/* Decode b, then decide for range r. */
static int feed(struct fx *f, const struct mbuf *b, const struct mrange *r)
{
	int rc = decode_n(f, b, b->n);
	if (rc)
		return rc;
	return mapply_decide(&f->m, r, &f->pl, &f->em);
}

static void announce(struct fx *f, uint32_t oid, const char *nsp, const char *rel, size_t n,
		     const char *const *names)
{
	struct mbuf b = msg_relation(oid, nsp, rel, n, names);
	assert_int_equal(decode_n(f, &b, b.n), 0);
	assert_int_equal(f->m.kind, MMSG_RELATION);
	assert_int_equal(f->m.rel_oid, oid);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(mdec_init(&f->d, tabs, N_TABS, &f->em), 0);
	announce(f, OID_ITEMS, "public", "items", 3, V("id", "name", "body"));
	announce(f, OID_EVENTS, "app", "events", 3, V("tenant", "seq", "note"));
	announce(f, OID_DOCS, "public", "docs", 2, V("u", "v"));
	announce(f, OID_FULL, "public", "full_t", 3, V("id", "region", "payload"));
	announce(f, OID_OTHER, "public", "not_sharded", 2, V("id", "x"));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	mdec_free(&f->d);
	free(f);
	return 0;
}

/* ---- keys and ranges ---------------------------------------------------------- */

static uint64_t hkey(enum sm_key_type t, const char *s)
{
	struct sm_key k;
	assert_int_equal(sm_key_from_text(t, s, strlen(s), &k, NULL), 0);
	return sm_hash_key(&k);
}

static uint64_t hb(const char *s)
{
	return hkey(SM_KEY_BIGINT, s);
}

/* A range holding hash hin but not hout (as wide as possible). */
static struct mrange range_in_out(uint64_t hin, uint64_t hout)
{
	assert_true(hin != hout);
	struct mrange r = {.lo = 0, .hi = UINT64_MAX, .from = 1, .to = 2};
	if (hin < hout)
		r.hi = hout - 1;
	else
		r.lo = hout + 1;
	assert_true(mrange_has(&r, hin));
	assert_false(mrange_has(&r, hout));
	return r;
}

/* A one-hash range holding neither a nor b. */
static struct mrange range_neither(uint64_t a, uint64_t b)
{
	uint64_t h = hb("987654321");
	assert_true(h != a && h != b);
	return (struct mrange){.lo = h, .hi = h, .from = 1, .to = 2};
}

static const struct mrange everything = {.lo = 0, .hi = UINT64_MAX, .from = 1, .to = 2};

static void expect_plan(const struct fx *f, bool skip, bool del, bool upsert, bool partial)
{
	assert_int_equal(f->pl.skip, skip);
	assert_int_equal(f->pl.del, del);
	assert_int_equal(f->pl.upsert, upsert);
	assert_int_equal(f->pl.partial, partial);
}

/* ---- inserts ------------------------------------------------------------------ */

static void test_move_insert_in_range_upserts(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("1", "one", "body1"));
	assert_int_equal(feed(f, &b, &r), 0);
	assert_int_equal(f->m.kind, MMSG_INSERT);
	assert_ptr_equal(f->m.mt, &tabs[0]);
	expect_plan(f, false, false, true, false);
	assert_string_equal(f->pl.new_->val[0], "1");
	assert_string_equal(f->pl.new_->val[1], "one");
	assert_string_equal(f->pl.new_->val[2], "body1");
	assert_false(f->m.old->present);
}

static void test_move_insert_out_of_range_skips(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("2", "two", NULL));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
}

static void test_move_insert_range_bounds_inclusive(void **state)
{
	struct fx *f = *state;
	uint64_t h = hb("77");
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("77", NULL, NULL));
	struct mrange r = {.lo = h, .hi = h};
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	if (h < UINT64_MAX) {
		r = (struct mrange){.lo = h + 1, .hi = UINT64_MAX};
		assert_int_equal(feed(f, &b, &r), 0);
		expect_plan(f, true, false, false, false);
	}
	if (h > 0) {
		r = (struct mrange){.lo = 0, .hi = h - 1};
		assert_int_equal(feed(f, &b, &r), 0);
		expect_plan(f, true, false, false, false);
	}
}

static void test_move_insert_null_or_invalid_key_skips(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_insert(OID_FULL, 3, V("1", NULL, "p"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, true, false, false, false);
	b = msg_insert(OID_ITEMS, 3, V("12abc", NULL, NULL));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, true, false, false, false);
	b = msg_insert(OID_DOCS, 2, V("not-a-uuid", "v"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, true, false, false, false);
}

static void test_move_change_of_other_table_does_nothing(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_insert(OID_OTHER, 2, V("1", "x"));
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_null(f->m.mt);
	expect_plan(f, false, false, false, false);
	b = msg_delete(OID_OTHER, 'K', 2, V("1", NULL));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, false, false, false, false);
}

/* ---- updates ------------------------------------------------------------------ */

static void test_move_update_in_to_in_same_pk_upserts(void **state)
{
	struct fx *f = *state;
	/* replica identity default, pk unchanged: no old tuple */
	struct mbuf b = msg_update(OID_ITEMS, 0, 3, NULL, V("1", "new", "b"));
	struct mrange r = range_in_out(hb("1"), hb("2"));
	assert_int_equal(feed(f, &b, &r), 0);
	assert_int_equal(f->m.kind, MMSG_UPDATE);
	expect_plan(f, false, false, true, false);
	assert_string_equal(f->pl.new_->val[1], "new");
	/* an old tuple with the same pk (identity FULL) changes nothing */
	b = msg_update(OID_FULL, 'O', 3, V("5", "1", "a"), V("5", "1", "b"));
	r = range_in_out(hb("1"), hb("2"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
}

static void test_move_update_in_to_in_pk_change_deletes_then_upserts(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("3", "n", "b"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, false, true, true, false);
	assert_string_equal(f->pl.old->val[0], "1");
	assert_string_equal(f->pl.new_->val[0], "3");
	/* composite pk, only the non-key pk column changes */
	b = msg_update(OID_EVENTS, 'K', 3, V("acme", "1", NULL), V("acme", "2", "x"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, false, true, true, false);
	assert_string_equal(f->pl.old->val[1], "1");
	assert_string_equal(f->pl.new_->val[1], "2");
}

static void test_move_update_in_to_out_deletes_old(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("2", "n", "b"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
	assert_string_equal(f->pl.old->val[0], "1");
	/* identity FULL, key not in pk: same pk, key moves out */
	r = range_in_out(hb("10"), hb("11"));
	b = msg_update(OID_FULL, 'O', 3, V("5", "10", "p"), V("5", "11", "p"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
	assert_string_equal(f->pl.old->val[0], "5");
	assert_string_equal(f->pl.old->val[1], "10");
}

static void test_move_update_out_to_in_upserts_new(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("2", NULL, NULL), V("1", "n", "b"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	assert_string_equal(f->pl.new_->val[0], "1");
	/* from a NULL key into the range */
	r = range_in_out(hb("11"), hb("10"));
	b = msg_update(OID_FULL, 'O', 3, V("5", NULL, "p"), V("5", "11", "p"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
}

static void test_move_update_out_to_out_skips(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_neither(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("2", NULL, NULL), V("1", "n", "b"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
	b = msg_update(OID_ITEMS, 0, 3, NULL, V("2", "n", "b"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
}

static void test_move_update_unchanged_toast_in_to_in_is_partial(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 0, 3, NULL, V("1", "renamed", UNCH));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, false, true);
	assert_true(f->pl.new_->unchanged[2]);
	assert_null(f->pl.new_->val[2]);
	assert_false(f->pl.new_->unchanged[1]);
	assert_string_equal(f->pl.new_->val[1], "renamed");
}

static void test_move_update_unchanged_toast_out_to_in_refused(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("2", NULL, NULL), V("1", "n", UNCH));
	assert_int_equal(feed(f, &b, &r), SR_ECORRUPT);
	expect_plan(f, false, false, false, false);
	assert_non_null(strstr(f->em.text, "TOAST"));
}

/* REPLICA IDENTITY FULL: the old tuple carries the unchanged TOAST value,
 * so a row moving into the range can be rebuilt and upserted whole. */
static void test_move_update_unchanged_toast_filled_from_full_old(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("11"), hb("10"));
	struct mbuf b = msg_update(OID_FULL, 'O', 3, V("5", "10", "p"), V("5", "11", UNCH));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	assert_false(f->pl.new_->unchanged[2]);
	assert_string_equal(f->pl.new_->val[2], "p");
	assert_string_equal(f->pl.new_->val[1], "11");
}

/* A primary-key change with an unchanged TOAST value: one UPDATE of the
 * sent columns (the new key included) on the row with the old key - not a
 * delete followed by an update that would find no row. */
static void test_move_update_pk_change_with_unchanged_toast_rekeys(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	/* both keys in range: range_in_out puts "1" in; make "3" in too */
	uint64_t h1 = hb("1"), h3 = hb("3");
	r.lo = h1 < h3 ? h1 : h3;
	r.hi = h1 < h3 ? h3 : h1;
	if (mrange_has(&r, hb("2")))
		skip(); /* the hashes do not allow a range with 1 and 3 but not 2 */
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("3", "x", UNCH));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, false, true);
	assert_string_equal(f->pl.old->val[0], "1");
	assert_string_equal(f->pl.new_->val[0], "3");
	assert_true(f->pl.new_->unchanged[2]);
}

static void test_move_update_unchanged_toast_in_to_out_deletes(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("2", "n", UNCH));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
}

/* ---- deletes ------------------------------------------------------------------ */

static void test_move_delete_in_range_deletes_by_old_key(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_delete(OID_ITEMS, 'K', 3, V("1", NULL, NULL));
	assert_int_equal(feed(f, &b, &r), 0);
	assert_int_equal(f->m.kind, MMSG_DELETE);
	expect_plan(f, false, true, false, false);
	assert_string_equal(f->pl.old->val[0], "1");
	assert_false(f->m.new_->present);
}

static void test_move_delete_out_of_range_skips(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hb("1"), hb("2"));
	struct mbuf b = msg_delete(OID_ITEMS, 'K', 3, V("2", NULL, NULL));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
	r = range_in_out(hb("10"), hb("11"));
	b = msg_delete(OID_FULL, 'O', 3, V("5", "11", "p"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
	b = msg_delete(OID_FULL, 'O', 3, V("5", "10", "p"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
}

static void test_move_delete_null_key_skips(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_delete(OID_FULL, 'O', 3, V("5", NULL, "p"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, true, false, false, false);
}

/* ---- key types ------------------------------------------------------------------ */

static void test_move_text_key_in_and_out(void **state)
{
	struct fx *f = *state;
	struct mrange r = range_in_out(hkey(SM_KEY_TEXT, "acme"), hkey(SM_KEY_TEXT, "globex"));
	struct mbuf b = msg_insert(OID_EVENTS, 3, V("acme", "1", "x"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	b = msg_insert(OID_EVENTS, 3, V("globex", "1", "x"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
	b = msg_update(OID_EVENTS, 'K', 3, V("acme", "1", NULL), V("globex", "1", "x"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
}

/* pgoutput sends a text value as is: a backslash is a backslash (not a
 * COPY escape) and "\N" is a key, not NULL. */
static void test_move_text_key_is_not_copy_escaped(void **state)
{
	struct fx *f = *state;
	const char *raw = "a\\tb"; /* 4 bytes: a, backslash, t, b */
	struct mrange r = range_in_out(hkey(SM_KEY_TEXT, raw), hkey(SM_KEY_TEXT, "a\tb"));
	struct mbuf b = msg_insert(OID_EVENTS, 3, V(raw, "1", NULL));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	r = range_in_out(hkey(SM_KEY_TEXT, "\\N"), hkey(SM_KEY_TEXT, "N"));
	b = msg_delete(OID_EVENTS, 'K', 3, V("\\N", "1", NULL));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, true, false, false);
}

static void test_move_uuid_key_in_and_out(void **state)
{
	struct fx *f = *state;
	const char *u1 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
	const char *u2 = "6f1c2e0a-3b7d-4c55-9e2a-0d9f5b3c7e41";
	struct mrange r = range_in_out(hkey(SM_KEY_UUID, u1), hkey(SM_KEY_UUID, u2));
	struct mbuf b = msg_insert(OID_DOCS, 2, V(u1, "v"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	b = msg_insert(OID_DOCS, 2, V(u2, "v"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
}

/* ---- relations ------------------------------------------------------------------ */

static void test_move_relation_column_order_is_mapped(void **state)
{
	struct fx *f = *state;
	/* re-announced with another order, an extra column and no "name" */
	announce(f, OID_ITEMS, "public", "items", 3, V("body", "extra", "id"));
	struct mrange r = range_in_out(hb("7"), hb("8"));
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("B", "E", "7"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, false, false, true, false);
	assert_string_equal(f->pl.new_->val[0], "7");
	assert_null(f->pl.new_->val[1]);
	assert_string_equal(f->pl.new_->val[2], "B");
	b = msg_insert(OID_ITEMS, 3, V("B", "E", "8"));
	assert_int_equal(feed(f, &b, &r), 0);
	expect_plan(f, true, false, false, false);
}

static void test_move_unknown_relation_refused(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_insert(4242, 3, V("1", NULL, NULL));
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	assert_non_null(strstr(f->em.text, "unknown relation"));
}

/* ---- other messages ---------------------------------------------------------------- */

static void test_move_commit_end_lsn(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_commit(UINT64_C(0x16B374D848), UINT64_C(0x16B374D8F0),
				   UINT64_C(0x0002a1b2c3d4e5f6));
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_int_equal(f->m.kind, MMSG_COMMIT);
	assert_true(f->m.commit_end == UINT64_C(0x16B374D8F0));
	expect_plan(f, false, false, false, false);
	b = msg_commit(1, UINT64_C(0xFFFFFFFF00000001), 0);
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_true(f->m.commit_end == UINT64_C(0xFFFFFFFF00000001));
}

static void test_move_begin_changes_nothing(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_begin(100, 200, 733);
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_int_equal(f->m.kind, MMSG_BEGIN);
	expect_plan(f, false, false, false, false);
}

static void test_move_truncate_refused(void **state)
{
	struct fx *f = *state;
	struct mbuf b = msg_truncate(OID_ITEMS);
	assert_int_equal(feed(f, &b, &everything), SR_EUNSUPPORTED);
	assert_non_null(strstr(f->em.text, "TRUNCATE"));
}

/* ---- malformed input ------------------------------------------------------------------ */

/* Every proper prefix of msg fails (in the decoder, or for a TRUNCATE in
 * the decision); the whole message succeeds. */
static void check_prefixes(struct fx *f, const struct mbuf *msg, bool whole_ok)
{
	for (size_t len = 0; len < msg->n; len++) {
		int rc = decode_n(f, msg, len);
		if (!rc)
			rc = mapply_decide(&f->m, &everything, &f->pl, &f->em);
		if (rc == 0)
			fail_msg("prefix of %zu of %zu bytes of a '%c' message was accepted", len,
				 msg->n, msg->b[0]);
		assert_true(rc == SR_ECORRUPT || rc == SR_EUNSUPPORTED);
	}
	int rc = decode_n(f, msg, msg->n);
	if (!rc)
		rc = mapply_decide(&f->m, &everything, &f->pl, &f->em);
	assert_int_equal(rc == 0, whole_ok);
}

static void test_move_every_prefix_is_an_error(void **state)
{
	struct fx *f = *state;
	struct mbuf msgs[] = {
	    msg_begin(1, 2, 3),
	    msg_commit(1, 2, 3),
	    msg_relation(OID_ITEMS, "public", "items", 3, V("id", "name", "body")),
	    msg_insert(OID_ITEMS, 3, V("1", "one", UNCH)),
	    msg_insert(OID_ITEMS, 3, V("1", NULL, "")),
	    msg_update(OID_ITEMS, 0, 3, NULL, V("1", "one", "b")),
	    msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("2", "two", "b")),
	    msg_update(OID_FULL, 'O', 3, V("5", "10", "p"), V("5", "10", "q")),
	    msg_delete(OID_ITEMS, 'K', 3, V("1", NULL, NULL)),
	    msg_delete(OID_FULL, 'O', 3, V("5", "10", "p")),
	    msg_insert(OID_OTHER, 2, V("1", "x")),
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		check_prefixes(f, &msgs[i], true);
	struct mbuf t = msg_truncate(OID_ITEMS);
	check_prefixes(f, &t, false);
	/* a failed Relation left the earlier one in place */
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("1", "one", "b"));
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_string_equal(f->pl.new_->val[1], "one");
}

static void test_move_malformed_messages_are_errors(void **state)
{
	struct fx *f = *state;
	/* a tuple value kind that does not exist */
	struct mbuf b = msg_insert(OID_ITEMS, 3, V("1", "one", "b"));
	b.b[8] = 'x'; /* 'I' oid(4) 'N' ncols(2): the first kind byte */
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	/* a value length past the end (and one that would wrap a pointer) */
	b = msg_insert(OID_ITEMS, 1, V("1"));
	b.b[9] = 0xff;
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	b.b[10] = b.b[11] = b.b[12] = 0xff;
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	/* insert without 'N', delete with 'N', update with a bad tag */
	b = msg_insert(OID_ITEMS, 1, V("1"));
	b.b[5] = 'K';
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	b = msg_delete(OID_ITEMS, 'N', 3, V("1", NULL, NULL));
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	b = msg_update(OID_ITEMS, 'K', 3, V("1", NULL, NULL), V("2", NULL, NULL));
	b.b[5 + 1 + 2 + 1 + 4 + 1 + 1 + 1] = 'X'; /* the 'N' after the old tuple */
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
	/* an empty message */
	assert_int_equal(decode_n(f, &b, 0), SR_ECORRUPT);
	/* a relation claiming many columns but ending early */
	b = msg_relation(OID_DOCS, "public", "docs", 2, V("u", "v"));
	b.b[1 + 4 + 7 + 5 + 1] = 0xff;
	b.b[1 + 4 + 7 + 5 + 2] = 0xff;
	assert_int_equal(feed(f, &b, &everything), SR_ECORRUPT);
}

static void test_move_fewer_or_more_tuple_columns(void **state)
{
	struct fx *f = *state;
	/* fewer values than columns: the rest are NULL */
	struct mbuf b = msg_insert(OID_ITEMS, 1, V("1"));
	assert_int_equal(feed(f, &b, &everything), 0);
	expect_plan(f, false, false, true, false);
	assert_null(f->pl.new_->val[1]);
	/* more values than the relation announced: ignored */
	b = msg_insert(OID_DOCS, 3, V("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "v", "zzz"));
	assert_int_equal(feed(f, &b, &everything), 0);
	assert_string_equal(f->pl.new_->val[1], "v");
}

/* ---- move_db.c helpers ------------------------------------------------------------------ */

static void expect_field(const char *line, size_t i, const char *want)
{
	const char *fp = NULL;
	size_t fl = 0;
	assert_true(mdb_copy_field(line, strlen(line), i, &fp, &fl));
	assert_int_equal(fl, strlen(want));
	assert_memory_equal(fp, want, fl);
}

static void test_move_copy_field_positions(void **state)
{
	(void)state;
	const char *line = "10\tab\\tc\tlast\n";
	expect_field(line, 0, "10");
	expect_field(line, 1, "ab\\tc");
	expect_field(line, 2, "last"); /* not the newline */
	expect_field("10\tx\tlast", 2, "last");
	expect_field("\t\t", 1, "");
	expect_field("\t\t", 2, "");
	expect_field("only", 0, "only");
	expect_field("", 0, "");
	const char *fp;
	size_t fl;
	assert_false(mdb_copy_field(line, strlen(line), 3, &fp, &fl));
	assert_false(mdb_copy_field("a\tb", 3, 2, &fp, &fl));
	/* nothing after the newline is a field */
	assert_false(mdb_copy_field("a\nb\tc", 5, 1, &fp, &fl));
	/* len bounds the line, not the NUL */
	assert_true(mdb_copy_field("a\tbcdef", 4, 1, &fp, &fl));
	assert_int_equal(fl, 2);
	assert_memory_equal(fp, "bc", 2);
}

static void expect_unescape(const char *in, const char *want, size_t want_len)
{
	char out[64];
	size_t n = mdb_copy_unescape(in, strlen(in), out);
	assert_int_equal(n, want_len);
	assert_memory_equal(out, want, want_len);
}

static void test_move_copy_unescape(void **state)
{
	(void)state;
	expect_unescape("plain", "plain", 5);
	expect_unescape("a\\tb\\nc\\\\d", "a\tb\nc\\d", 7);
	expect_unescape("\\b\\f\\r\\v", "\b\f\r\v", 4);
	expect_unescape("\\x41\\x4a\\x7", "AJ\x07", 3);
	expect_unescape("\\xg", "xg", 2);
	expect_unescape("\\101\\60\\0z", "A0\0z", 4);
	expect_unescape("\\q", "q", 1);
	expect_unescape("end\\", "end\\", 4);
	expect_unescape("", "", 0);
}

static void test_move_key_hash(void **state)
{
	(void)state;
	uint64_t h = 0;
	/* \N is NULL: no key */
	assert_false(mdb_key_hash(SM_KEY_BIGINT, "\\N", 2, &h));
	assert_false(mdb_key_hash(SM_KEY_TEXT, "\\N", 2, &h));
	assert_true(mdb_key_hash(SM_KEY_BIGINT, "42", 2, &h));
	assert_true(h == hb("42"));
	assert_true(mdb_key_hash(SM_KEY_BIGINT, "-9223372036854775808", 20, &h));
	assert_true(h == hb("-9223372036854775808"));
	/* COPY escapes in a text key hash like the bytes they stand for */
	assert_true(mdb_key_hash(SM_KEY_TEXT, "a\\tb", 4, &h));
	assert_true(h == hkey(SM_KEY_TEXT, "a\tb"));
	assert_true(mdb_key_hash(SM_KEY_TEXT, "\\\\N", 3, &h));
	assert_true(h == hkey(SM_KEY_TEXT, "\\N"));
	assert_true(mdb_key_hash(SM_KEY_TEXT, "caf\\303\\251", 11, &h));
	assert_true(h == hkey(SM_KEY_TEXT, "caf\xc3\xa9"));
	assert_true(mdb_key_hash(SM_KEY_TEXT, "plain", 5, &h));
	assert_true(h == hkey(SM_KEY_TEXT, "plain"));
	/* only n bytes count */
	assert_true(mdb_key_hash(SM_KEY_BIGINT, "123456", 3, &h));
	assert_true(h == hb("123"));
	/* invalid keys */
	assert_false(mdb_key_hash(SM_KEY_BIGINT, "12x", 3, &h));
	assert_false(mdb_key_hash(SM_KEY_BIGINT, "9223372036854775808", 19, &h));
	assert_false(mdb_key_hash(SM_KEY_BIGINT, "", 0, &h));
	assert_false(mdb_key_hash(SM_KEY_UUID, "a0eebc99", 8, &h));
	assert_true(mdb_key_hash(SM_KEY_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 36, &h));
	assert_true(h == hkey(SM_KEY_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
}

static void test_move_lsn_round_trip(void **state)
{
	(void)state;
	uint64_t v = 0;
	assert_true(lsn_parse("16/B374D848", &v));
	assert_true(v == UINT64_C(0x16B374D848));
	assert_true(lsn_parse("0/0", &v));
	assert_true(v == 0);
	assert_true(lsn_parse("ffffffff/ffffffff", &v));
	assert_true(v == UINT64_MAX);
	const uint64_t vals[] = {
	    0, 1, UINT64_C(0x16B374D848), UINT64_C(0x100000000), UINT64_C(0xFFFFFFFF), UINT64_MAX};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char s[32];
		lsn_format(vals[i], s);
		assert_true(lsn_parse(s, &v));
		assert_true(v == vals[i]);
	}
	char s[32];
	lsn_format(UINT64_C(0x16B374D848), s);
	assert_string_equal(s, "16/B374D848");
	lsn_format(0, s);
	assert_string_equal(s, "0/0");
}

static void test_move_lsn_parse_bad_input(void **state)
{
	(void)state;
	uint64_t v = 7;
	assert_false(lsn_parse(NULL, &v));
	assert_false(lsn_parse("", &v));
	assert_false(lsn_parse("16", &v));
	assert_false(lsn_parse("16/", &v));
	assert_false(lsn_parse("/16", &v));
	assert_false(lsn_parse("g/1", &v));
	assert_false(lsn_parse("1/2x", &v));
	assert_false(lsn_parse("1/2 ", &v));
	assert_true(v == 7);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_move_insert_in_range_upserts),
	    T(test_move_insert_out_of_range_skips),
	    T(test_move_insert_range_bounds_inclusive),
	    T(test_move_insert_null_or_invalid_key_skips),
	    T(test_move_change_of_other_table_does_nothing),
	    T(test_move_update_in_to_in_same_pk_upserts),
	    T(test_move_update_in_to_in_pk_change_deletes_then_upserts),
	    T(test_move_update_in_to_out_deletes_old),
	    T(test_move_update_out_to_in_upserts_new),
	    T(test_move_update_out_to_out_skips),
	    T(test_move_update_unchanged_toast_in_to_in_is_partial),
	    T(test_move_update_unchanged_toast_out_to_in_refused),
	    T(test_move_update_unchanged_toast_filled_from_full_old),
	    T(test_move_update_pk_change_with_unchanged_toast_rekeys),
	    T(test_move_update_unchanged_toast_in_to_out_deletes),
	    T(test_move_delete_in_range_deletes_by_old_key),
	    T(test_move_delete_out_of_range_skips),
	    T(test_move_delete_null_key_skips),
	    T(test_move_text_key_in_and_out),
	    T(test_move_text_key_is_not_copy_escaped),
	    T(test_move_uuid_key_in_and_out),
	    T(test_move_relation_column_order_is_mapped),
	    T(test_move_unknown_relation_refused),
	    T(test_move_commit_end_lsn),
	    T(test_move_begin_changes_nothing),
	    T(test_move_truncate_refused),
	    T(test_move_every_prefix_is_an_error),
	    T(test_move_malformed_messages_are_errors),
	    T(test_move_fewer_or_more_tuple_columns),
	    cmocka_unit_test(test_move_copy_field_positions),
	    cmocka_unit_test(test_move_copy_unescape),
	    cmocka_unit_test(test_move_key_hash),
	    cmocka_unit_test(test_move_lsn_round_trip),
	    cmocka_unit_test(test_move_lsn_parse_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
