/*
 * move_apply.c - catch-up of a move (see move.h): decode the pgoutput
 * (protocol 1) messages that pg_logical_slot_peek_binary_changes() returns
 * for the move's slot, keep the changes whose key hash is in the range,
 * and apply them to the target as absolute row states by primary key:
 *
 *   INSERT            upsert the new row
 *   UPDATE            old key in range, new key out: delete the old row;
 *                     new key in range: delete the old row if its primary
 *                     key changed, then upsert the new row (or, when some
 *                     TOASTed values are unchanged and not sent, update the
 *                     sent columns of the existing row)
 *   DELETE            delete by primary key
 *   TRUNCATE          refused (the move fails and is rolled back)
 *
 * Each operation sets the final state of one primary key, so replaying a
 * suffix of the stream after a crash (changes applied on the target but the
 * slot not advanced yet) ends in the same state: the apply is idempotent.
 * A round applies a batch in one target transaction, commits it, and only
 * then advances the slot.
 *
 * Split in two: the pure part (mdec_message decodes a message,
 * mapply_decide turns a decoded change into a plan: skip, delete the old
 * row, upsert or partially update the new one, or refuse) has no libpq and
 * is unit-tested (tests/unit/test_move.c); the rest runs the plans as SQL.
 * Single-threaded.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move.h"
#include "shardmap/hash.h"
#include "shardmap/key.h"

bool lsn_parse(const char *s, uint64_t *out)
{
	unsigned hi, lo;
	char tail;
	if (!s || sscanf(s, "%X/%X%c", &hi, &lo, &tail) != 2)
		return false;
	*out = ((uint64_t)hi << 32) | lo;
	return true;
}

void lsn_format(uint64_t lsn, char out[32])
{
	snprintf(out, 32, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

/* ---- reading pgoutput messages ------------------------------------------ */

struct rd {
	const uint8_t *p, *end;
	bool bad;
};

static uint8_t rd_u8(struct rd *r)
{
	if (r->p + 1 > r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

static uint64_t rd_be(struct rd *r, int n)
{
	if ((size_t)(r->end - r->p) < (size_t)n) {
		r->bad = true;
		r->p = r->end;
		return 0;
	}
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | *r->p++;
	return v;
}

static const char *rd_str(struct rd *r)
{
	const uint8_t *z = r->p < r->end ? memchr(r->p, 0, (size_t)(r->end - r->p)) : NULL;
	if (!z) {
		r->bad = true;
		r->p = r->end;
		return "";
	}
	const char *s = (const char *)r->p;
	r->p = z + 1;
	return s;
}

static int malformed(struct sr_errmsg *em, const char *what)
{
	return sr_errmsg_set(em, SR_ECORRUPT, "malformed pgoutput %s", what);
}

static void tuple_clear(struct mtuple *t, size_t n)
{
	for (size_t i = 0; t->val && i < n; i++) {
		free(t->val[i]);
		t->val[i] = NULL;
		t->unchanged[i] = false;
	}
	t->present = false;
}

int mdec_init(struct mdecoder *d, const struct mtable *ts, size_t n, struct sr_errmsg *em)
{
	memset(d, 0, sizeof(*d));
	d->ts = ts;
	d->n = n;
	for (size_t i = 0; i < n; i++)
		if (ts[i].n_cols > d->max_cols)
			d->max_cols = ts[i].n_cols;
	size_t m = d->max_cols ? d->max_cols : 1;
	d->old.val = calloc(m, sizeof(char *));
	d->new_.val = calloc(m, sizeof(char *));
	d->old.unchanged = calloc(m, sizeof(bool));
	d->new_.unchanged = calloc(m, sizeof(bool));
	if (!d->old.val || !d->new_.val || !d->old.unchanged || !d->new_.unchanged) {
		mdec_free(d);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	return 0;
}

void mdec_free(struct mdecoder *d)
{
	tuple_clear(&d->old, d->max_cols);
	tuple_clear(&d->new_, d->max_cols);
	free(d->old.val);
	free(d->new_.val);
	free(d->old.unchanged);
	free(d->new_.unchanged);
	for (size_t i = 0; i < d->n_rels; i++)
		free(d->rels[i].map);
	free(d->rels);
	memset(d, 0, sizeof(*d));
}

/* TupleData: int16 ncols, then per column 'n' | 'u' | 't'/'b' int32 len
 * bytes, stored by mt column through rel->map. */
static int read_tuple(struct mdecoder *d, struct rd *r, const struct mrel *rel, struct mtuple *t,
		      struct sr_errmsg *em)
{
	int n = (int)rd_be(r, 2);
	tuple_clear(t, d->max_cols);
	t->present = true;
	for (int i = 0; i < n && !r->bad; i++) {
		uint8_t kind = rd_u8(r);
		int col = i < rel->ncols ? rel->map[i] : -1;
		if (kind == 't' || kind == 'b') {
			uint32_t len = (uint32_t)rd_be(r, 4);
			if (r->bad || (size_t)(r->end - r->p) < len) {
				r->bad = true;
				break;
			}
			if (col >= 0) {
				free(t->val[col]); /* a column sent twice: keep the last */
				t->val[col] = malloc((size_t)len + 1);
				if (!t->val[col])
					return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
				memcpy(t->val[col], r->p, len);
				t->val[col][len] = '\0';
			}
			r->p += len;
		} else if (kind == 'u') {
			if (col >= 0)
				t->unchanged[col] = true;
		} else if (kind != 'n') {
			r->bad = true;
		}
	}
	return r->bad ? malformed(em, "tuple") : 0;
}

static const struct mtable *find_table(const struct mdecoder *d, const char *nsp, const char *rel)
{
	const struct mtable *mt = NULL;
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->ts[i].t->schema, nsp) == 0 && strcmp(d->ts[i].t->name, rel) == 0)
			mt = &d->ts[i];
	return mt;
}

static struct mrel *find_rel(const struct mdecoder *d, uint32_t oid)
{
	for (size_t i = 0; i < d->n_rels; i++)
		if (d->rels[i].oid == oid)
			return &d->rels[i];
	return NULL;
}

/* Relation: oid, namespace, name, replica identity, int16 ncols, then per
 * column int8 flags, name, int32 type oid, int32 typmod. Remembered (over
 * an earlier one of the same oid) only when whole. */
static int on_relation(struct mdecoder *d, struct rd *r, struct mmsg *out, struct sr_errmsg *em)
{
	uint32_t oid = (uint32_t)rd_be(r, 4);
	const char *nsp = rd_str(r), *rel = rd_str(r);
	(void)rd_u8(r); /* replica identity */
	int ncols = (int)rd_be(r, 2);
	if (r->bad)
		return malformed(em, "relation");
	const struct mtable *mt = find_table(d, nsp, rel);
	int *map = calloc(ncols > 0 ? (size_t)ncols : 1, sizeof(int));
	if (!map)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	for (int i = 0; i < ncols && !r->bad; i++) {
		(void)rd_u8(r);
		const char *name = rd_str(r);
		(void)rd_be(r, 4);
		(void)rd_be(r, 4);
		map[i] = -1;
		for (size_t j = 0; mt && j < mt->n_cols; j++)
			if (strcmp(mt->cols[j].name, name) == 0)
				map[i] = (int)j;
	}
	if (r->bad) {
		free(map);
		return malformed(em, "relation");
	}
	struct mrel *slot = find_rel(d, oid);
	if (!slot) {
		struct mrel *nr = realloc(d->rels, (d->n_rels + 1) * sizeof(*nr));
		if (!nr) {
			free(map);
			return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
		}
		d->rels = nr;
		slot = &d->rels[d->n_rels++];
		memset(slot, 0, sizeof(*slot));
	}
	free(slot->map);
	*slot = (struct mrel){.oid = oid, .mt = mt, .ncols = ncols, .map = map};
	out->rel_oid = oid;
	return 0;
}

/* Insert: oid 'N' tuple. Update: oid ['K' | 'O' tuple] 'N' tuple.
 * Delete: oid 'K' | 'O' tuple. */
static int on_change(struct mdecoder *d, struct rd *r, uint8_t kind, struct mmsg *out,
		     struct sr_errmsg *em)
{
	out->kind = kind == 'I' ? MMSG_INSERT : kind == 'U' ? MMSG_UPDATE : MMSG_DELETE;
	out->rel_oid = (uint32_t)rd_be(r, 4);
	if (r->bad)
		return malformed(em, "change");
	const struct mrel *rel = find_rel(d, out->rel_oid);
	if (!rel)
		return sr_errmsg_set(em, SR_ECORRUPT, "pgoutput change for an unknown relation");
	out->mt = rel->mt;
	tuple_clear(&d->old, d->max_cols);
	tuple_clear(&d->new_, d->max_cols);
	uint8_t t = rd_u8(r);
	if (kind != 'I' && (t == 'K' || t == 'O')) {
		int rc = read_tuple(d, r, rel, &d->old, em);
		if (rc || kind == 'D')
			return rc;
		t = rd_u8(r);
	}
	if (kind == 'D' || t != 'N')
		return malformed(em, kind == 'I' ? "insert" : kind == 'U' ? "update" : "delete");
	int rc = read_tuple(d, r, rel, &d->new_, em);
	if (rc || !d->old.present)
		return rc;
	/* An unchanged TOAST value is not sent in the new tuple; with REPLICA
	 * IDENTITY FULL the old tuple has it: take it from there. */
	for (size_t i = 0; i < d->max_cols; i++) {
		if (!d->new_.unchanged[i] || d->old.unchanged[i] || !d->old.val[i])
			continue;
		if (!(d->new_.val[i] = strdup(d->old.val[i])))
			return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
		d->new_.unchanged[i] = false;
	}
	return 0;
}

int mdec_message(struct mdecoder *d, const uint8_t *p, size_t len, struct mmsg *out,
		 struct sr_errmsg *em)
{
	struct rd r = {p, p + len, false};
	*out = (struct mmsg){.kind = MMSG_OTHER, .old = &d->old, .new_ = &d->new_};
	if (len == 0)
		return malformed(em, "message (empty)");
	uint8_t kind = rd_u8(&r);
	switch (kind) {
	case 'B': /* final lsn, timestamp, xid */
		out->kind = MMSG_BEGIN;
		(void)rd_be(&r, 8);
		(void)rd_be(&r, 8);
		(void)rd_be(&r, 4);
		return r.bad ? malformed(em, "begin") : 0;
	case 'C': /* flags, commit lsn, end lsn, timestamp */
		out->kind = MMSG_COMMIT;
		(void)rd_u8(&r);
		(void)rd_be(&r, 8);
		out->commit_end = rd_be(&r, 8);
		(void)rd_be(&r, 8);
		return r.bad ? malformed(em, "commit") : 0;
	case 'O': /* origin: lsn, name */
		(void)rd_be(&r, 8);
		(void)rd_str(&r);
		return r.bad ? malformed(em, "origin") : 0;
	case 'Y': /* type: oid, namespace, name */
		(void)rd_be(&r, 4);
		(void)rd_str(&r);
		(void)rd_str(&r);
		return r.bad ? malformed(em, "type") : 0;
	case 'R':
		out->kind = MMSG_RELATION;
		return on_relation(d, &r, out, em);
	case 'T':
		out->kind = MMSG_TRUNCATE;
		return 0;
	case 'I':
	case 'U':
	case 'D':
		return on_change(d, &r, kind, out, em);
	default:
		return 0; /* M and anything newer: nothing to apply */
	}
}

/* ---- deciding ------------------------------------------------------------ */

bool mapply_key_in_range(const struct mtable *mt, const struct mtuple *t, const struct mrange *r)
{
	/* pgoutput sends the type's output text as is (no COPY escapes, and a
	 * text key "\N" is a key): hash it directly, not with mdb_key_hash. */
	const char *k = t->present ? t->val[mt->key_col] : NULL;
	struct sm_key key;
	return k && sm_key_from_text(mt->t->key_type, k, strlen(k), &key, NULL) == 0 &&
	       mrange_has(r, sm_hash_key(&key));
}

static bool any_unchanged(const struct mtable *mt, const struct mtuple *t)
{
	for (size_t i = 0; i < mt->n_cols; i++)
		if (t->unchanged[i])
			return true;
	return false;
}

static bool pk_changed(const struct mtable *mt, const struct mtuple *a, const struct mtuple *b)
{
	for (size_t i = 0; i < mt->n_cols; i++)
		if (mt->cols[i].in_pk &&
		    (!a->val[i] || !b->val[i] || strcmp(a->val[i], b->val[i]) != 0))
			return true;
	return false;
}

/* Old key in range, new out: delete the old row. New in: delete the old
 * row first if its primary key changed, then upsert the new one, or update
 * its sent columns when TOAST values are unchanged (only possible when the
 * row already is on the target: the old key was in range too). */
static int decide_update(const struct mmsg *m, const struct mrange *r, struct mplan *out,
			 struct sr_errmsg *em)
{
	const struct mtable *mt = m->mt;
	const struct mtuple *old = m->old->present ? m->old : m->new_;
	bool in_old = mapply_key_in_range(mt, old, r), in_new = mapply_key_in_range(mt, m->new_, r);
	if (!in_old && !in_new) {
		out->skip = true;
		return 0;
	}
	out->old = old;
	out->del = in_old && (!in_new || (m->old->present && pk_changed(mt, m->old, m->new_)));
	if (!in_new)
		return 0;
	if (!any_unchanged(mt, m->new_)) {
		out->upsert = true;
		return 0;
	}
	if (!in_old) {
		*out = (struct mplan){.old = out->old, .new_ = out->new_};
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "an update moved a row of %s into the range with unchanged "
				     "TOAST values; the move cannot rebuild it (set REPLICA "
				     "IDENTITY FULL on the source and retry)",
				     mt->qname);
	}
	/* The row is on the target (old key in range): update what was sent,
	 * by the old primary key (which also moves it to a new one). */
	out->del = false;
	out->partial = true;
	return 0;
}

int mapply_decide(const struct mmsg *m, const struct mrange *r, struct mplan *out,
		  struct sr_errmsg *em)
{
	*out = (struct mplan){.old = m->old, .new_ = m->new_};
	switch (m->kind) {
	case MMSG_OTHER:
	case MMSG_BEGIN:
	case MMSG_COMMIT:
	case MMSG_RELATION:
		return 0;
	case MMSG_TRUNCATE:
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "a table of the move was TRUNCATEd on the source during the "
				     "move; the move cannot follow that: it is rolled back");
	case MMSG_INSERT:
	case MMSG_UPDATE:
	case MMSG_DELETE:
		break;
	}
	if (!m->mt)
		return 0; /* not one of our tables */
	if (m->kind == MMSG_INSERT) {
		out->upsert = mapply_key_in_range(m->mt, m->new_, r);
		out->skip = !out->upsert;
		return 0;
	}
	if (m->kind == MMSG_DELETE) {
		out->del = mapply_key_in_range(m->mt, m->old, r);
		out->skip = !out->del;
		return 0;
	}
	return decide_update(m, r, out, em);
}

/* ---- applying ------------------------------------------------------------ */

struct round {
	const struct mrange *r;
	PGconn *dst;
	struct mdecoder dec;
	struct mapply_stats *st;
	struct sr_errmsg *em;
};

/* A growing SQL text and its parameters (the numbers live in num). */
struct sqlbuf {
	char *s;
	size_t len, cap;
	const char **params;
	char (*num)[16];
	int n, cap_n;
	bool nomem;
};

static void sb_add(struct sqlbuf *b, const char *fmt, ...) SR_PRINTF(2, 3);
static void sb_add(struct sqlbuf *b, const char *fmt, ...)
{
	for (int tries = 0; tries < 2 && !b->nomem; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int w = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (w < 0) {
			b->nomem = true;
			return;
		}
		if (b->s && (size_t)w < b->cap - b->len) {
			b->len += (size_t)w;
			return;
		}
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + (size_t)w + 1)
			cap *= 2;
		char *ns = realloc(b->s, cap);
		if (!ns) {
			b->nomem = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
}

static const char *sb_param(struct sqlbuf *b, const char *v)
{
	if (b->n == b->cap_n) {
		int cap = b->cap_n ? b->cap_n * 2 : 32;
		const char **np = realloc(b->params, (size_t)cap * sizeof(*np));
		if (np)
			b->params = np;
		char(*nn)[16] = np ? realloc(b->num, (size_t)cap * sizeof(*nn)) : NULL;
		if (!np || !nn) {
			b->nomem = true;
			return "NULL";
		}
		b->num = nn;
		b->cap_n = cap;
	}
	b->params[b->n] = v;
	snprintf(b->num[b->n], sizeof(b->num[0]), "$%d", b->n + 1);
	return b->num[b->n++];
}

static void sb_free(struct sqlbuf *b)
{
	free(b->s);
	free(b->params);
	free(b->num);
}

/* Run and free the statement. */
static int sb_exec(struct round *rd, struct sqlbuf *b, const char *what, long *affected)
{
	if (b->nomem) {
		sb_free(b);
		return sr_errmsg_set(rd->em, SR_ENOMEM, "%s: out of memory", what);
	}
	PGresult *res = mdb_exec(rd->dst, b->s, b->n, b->params, what, rd->em);
	sb_free(b);
	if (!res)
		return SR_EDB;
	if (affected)
		*affected = strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	rd->st->changes++;
	return 0;
}

static void where_pk(struct sqlbuf *b, const struct mtable *mt, const struct mtuple *t)
{
	bool first = true;
	for (size_t i = 0; i < mt->n_cols; i++) {
		if (!mt->cols[i].in_pk)
			continue;
		sb_add(b, first ? " WHERE %s = %s" : " AND %s = %s", mt->cols[i].qname,
		       sb_param(b, t->val[i]));
		first = false;
	}
}

static int apply_delete(struct round *rd, const struct mtable *mt, const struct mtuple *t)
{
	struct sqlbuf b = {0};
	sb_add(&b, "DELETE FROM %s", mt->qname);
	where_pk(&b, mt, t);
	return sb_exec(rd, &b, "apply a delete to the target", NULL);
}

static int apply_upsert(struct round *rd, const struct mtable *mt, const struct mtuple *t)
{
	struct sqlbuf b = {0};
	/* OVERRIDING: identity columns GENERATED ALWAYS take the source's value */
	sb_add(&b, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (", mt->qname,
	       mt->col_list);
	for (size_t i = 0; i < mt->n_cols; i++)
		sb_add(&b, "%s%s", i ? ", " : "", sb_param(&b, t->val[i]));
	sb_add(&b, ") ON CONFLICT (%s) DO ", mt->pk_list);
	bool first = true;
	for (size_t i = 0; i < mt->n_cols; i++) {
		if (mt->cols[i].in_pk)
			continue;
		sb_add(&b, first ? "UPDATE SET %s = EXCLUDED.%s" : ", %s = EXCLUDED.%s",
		       mt->cols[i].qname, mt->cols[i].qname);
		first = false;
	}
	if (first)
		sb_add(&b, "NOTHING");
	return sb_exec(rd, &b, "apply an upsert to the target", NULL);
}

/* An update whose unchanged TOAST values were not sent: set what was
 * (primary key included) on the row with the old primary key. No row is
 * not an error: when a crash made this batch replay, a later change of the
 * batch already deleted or re-keyed it; any real gap fails verification. */
static int apply_partial(struct round *rd, const struct mtable *mt, const struct mtuple *old,
			 const struct mtuple *t)
{
	struct sqlbuf b = {0};
	sb_add(&b, "UPDATE %s SET ", mt->qname);
	bool first = true;
	for (size_t i = 0; i < mt->n_cols; i++) {
		if (t->unchanged[i])
			continue;
		sb_add(&b, first ? "%s = %s" : ", %s = %s", mt->cols[i].qname,
		       sb_param(&b, t->val[i]));
		first = false;
	}
	if (first) {
		sb_free(&b);
		return 0;
	}
	where_pk(&b, mt, old);
	long n = 0;
	int rc = sb_exec(rd, &b, "apply an update to the target", &n);
	if (!rc && n == 0)
		rd->st->absent++;
	return rc;
}

/* Carry out one change's plan. */
static int apply_plan(struct round *rd, const struct mtable *mt, const struct mplan *pl)
{
	if (pl->skip) {
		rd->st->skipped++;
		return 0;
	}
	int rc = 0;
	if (pl->del)
		rc = apply_delete(rd, mt, pl->old);
	if (!rc && pl->upsert)
		rc = apply_upsert(rd, mt, pl->new_);
	if (!rc && pl->partial)
		rc = apply_partial(rd, mt, pl->old, pl->new_);
	return rc;
}

/* One message. *commit_end set on a 'C'. */
static int on_message(struct round *rd, const uint8_t *p, size_t len, uint64_t *commit_end)
{
	struct mmsg m;
	struct mplan pl;
	int rc = mdec_message(&rd->dec, p, len, &m, rd->em);
	if (!rc)
		rc = mapply_decide(&m, rd->r, &pl, rd->em);
	if (rc)
		return rc;
	if (m.kind == MMSG_COMMIT) {
		*commit_end = m.commit_end;
		rd->st->txns++;
		return 0;
	}
	return m.mt ? apply_plan(rd, m.mt, &pl) : 0;
}

static PGresult *peek(PGconn *src, const char *slot, const char *pub, uint64_t upto,
		      int max_changes, struct sr_errmsg *em)
{
	char upto_s[32], max_s[16];
	lsn_format(upto, upto_s);
	snprintf(max_s, sizeof(max_s), "%d", max_changes);
	const char *v[] = {slot, upto ? upto_s : NULL, max_s, pub};
	PGresult *res =
	    PQexecParams(src,
			 "SELECT data FROM pg_catalog.pg_logical_slot_peek_binary_changes("
			 "$1, $2::pg_lsn, $3::int, 'proto_version', '1',"
			 " 'publication_names', $4)",
			 4, NULL, v, NULL, NULL, 1);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	sr_errmsg_set(em, SR_EDB, "read changes from slot %s: %s", slot, PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

static int advance(PGconn *src, const char *slot, uint64_t lsn, struct sr_errmsg *em)
{
	char l[32];
	lsn_format(lsn, l);
	const char *v[] = {slot, l};
	return mdb_cmd(src,
		       "SELECT CASE WHEN confirmed_flush_lsn < $2::pg_lsn THEN"
		       " pg_catalog.pg_replication_slot_advance($1, $2::pg_lsn) END"
		       " FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
		       2, v, "advance the slot", em);
}

static int apply_rows(struct round *rd, PGresult *res, uint64_t *last_commit)
{
	int rc = mdb_cmd(rd->dst, "BEGIN", 0, NULL, "begin on the target", rd->em);
	for (int i = 0; !rc && i < PQntuples(res); i++)
		rc = on_message(rd, (const uint8_t *)PQgetvalue(res, i, 0),
				(size_t)PQgetlength(res, i, 0), last_commit);
	if (!rc)
		return mdb_cmd(rd->dst, "COMMIT", 0, NULL, "commit on the target", rd->em);
	PQclear(PQexec(rd->dst, "ROLLBACK"));
	return rc;
}

int mapply_round(PGconn *src, PGconn *dst, const char *slot, const char *pub,
		 const struct mtable *ts, size_t n, const struct mrange *r, uint64_t upto_lsn,
		 int max_changes, void (*fail_hook)(void), size_t *n_rows, struct mapply_stats *st,
		 struct sr_errmsg *em)
{
	struct round rd = {.r = r, .dst = dst, .st = st, .em = em};
	*n_rows = 0;
	int rc = mdec_init(&rd.dec, ts, n, em);
	PGresult *res = rc ? NULL : peek(src, slot, pub, upto_lsn, max_changes, em);
	if (!rc && !res)
		rc = SR_EDB;
	uint64_t last_commit = 0;
	if (!rc && PQntuples(res) > 0)
		rc = apply_rows(&rd, res, &last_commit);
	if (!rc)
		*n_rows = (size_t)PQntuples(res);
	PQclear(res);
	mdec_free(&rd.dec);
	if (rc)
		return rc;
	if (fail_hook && *n_rows)
		fail_hook();
	/* Everything up to upto_lsn was decoded when the batch was not cut
	 * short by max_changes; otherwise up to the last commit. */
	uint64_t to = upto_lsn && (int)*n_rows < max_changes ? upto_lsn : last_commit;
	if (to > st->last_lsn)
		st->last_lsn = to;
	return to ? advance(src, slot, to, em) : 0;
}
