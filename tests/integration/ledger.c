/*
 * ledger.c - the oracle of the online-move tests (tests/integration/t_move.sh):
 * loads shop rows straight into the shards that own them, drives a random
 * write workload through the router while recording exactly what committed
 * (the ledger), and checks the shards' final rows against that record.
 *
 *   ledger load  --catalog C --range LO..HI --in N --out M [--items K]
 *                [--first F] [--file FILE]
 *       From key F (default 1) upwards: N orders whose hash is in LO..HI and
 *       M whose hash is outside, each with K order_items (default 1, max 4),
 *       COPY'd into the owning shard's primary (map from the catalog). With
 *       --file, writes their state as a ledger (a --base for check).
 *   ledger write --router C --keys A..B --seconds S --procs P --file PREFIX
 *                [--catalog C] [--stop-file F] [--pause-ms N] [--seed N]
 *       P processes; process i owns the keys k of A..B with k % P == i and
 *       does random inserts (order + 0..3 items), updates (status, total and
 *       one item's qty) and deletes (order and items) through the router:
 *       autocommit and BEGIN..COMMIT, simple and extended protocol. The state
 *       of every owned key at start (read from the owners' primaries with
 *       --catalog, else key by key through the router) and after every commit goes to
 *       PREFIX.<i>. A failed COMMIT (or an autocommit statement failing with
 *       a lost connection) has an unknown outcome: the key is re-read
 *       through the router (in a read-write transaction, so on the primary)
 *       and the outcome logged. Stops after S seconds, when the stop file
 *       exists, or on SIGTERM/SIGINT. Prints totals (see print_totals).
 *   ledger check --catalog C --file PREFIX --procs P --keys A..B [--base FILE]...
 *       Expected state of each key of A..B: its last record in the base
 *       files then in PREFIX.0..P-1 (no record: absent). Compares with the
 *       union of every shard primary's orders and order_items rows: missing,
 *       extra, stale (values differ), duplicated (on two shards) and
 *       misplaced (on a shard that does not own the key per the current map).
 *   ledger count --catalog C --range LO..HI
 *       Rows per shard whose key hashes into LO..HI.
 *
 * Ledger: one line per record, "#" lines are comments:
 *   SEQ UNIX_MS OP MODE KEY STATE
 *   OP   base | load | ins | upd | del | resync | lost
 *   MODE auto-simple | auto-ext | tx-simple | tx-ext | "-" (+ ",resolved"
 *        when an unknown outcome was resolved as committed)
 *   STATE  A                                  absent
 *          P CUST STATUS TOTAL N {LINE SKU QTY}*N   present (values as
 *                                             Postgres prints them, \N = NULL)
 *          U                                  unknown: never resolved; check
 *                                             skips the key
 * Exit: 0 fine; 1 check found differences, or write had anomalies or
 * unresolved outcomes; 2 bad usage or a setup failure.
 * Single-threaded per process; write forks its workers.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "shardmap/catalog.h"
#include "shardmap/hash.h"
#include "shardmap/key.h"
#include "shardmap/map.h"

#define MAX_ITEMS 4
#define TOK 24
#define MAX_PROCS 64
#define MAX_BASE 8
#define MAX_STATES 24
#define EXAMPLES 10

struct item {
	int line;
	char sku[TOK];
	char qty[TOK];
};

struct kstate {
	bool present;
	bool unknown;
	int n_items;
	char cust[TOK], status[TOK], total[TOK];
	struct item items[MAX_ITEMS]; /* sorted by line */
};

struct opts {
	const char *catalog, *router, *file, *stop_file, *range, *keys;
	const char *base[MAX_BASE];
	int n_base;
	long long in, out, items, first, seconds, procs, pause_ms, seed;
};

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop)
		;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

static int rnd(uint64_t *s, int n)
{
	return (int)(rng_next(s) % (uint64_t)n);
}

/* ---- options --------------------------------------------------------------- */

static int num_arg(const char *name, const char *v, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < 0) {
		fprintf(stderr, "ledger: %s needs a number >= 0, not '%s'\n", name, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int opt_one(struct opts *o, const char *n, const char *v)
{
	const char **s = !strcmp(n, "--catalog")     ? &o->catalog
			 : !strcmp(n, "--router")    ? &o->router
			 : !strcmp(n, "--file")      ? &o->file
			 : !strcmp(n, "--stop-file") ? &o->stop_file
			 : !strcmp(n, "--range")     ? &o->range
			 : !strcmp(n, "--keys")      ? &o->keys
						     : NULL;
	if (s) {
		*s = v;
		return 0;
	}
	if (!strcmp(n, "--base")) {
		if (o->n_base == MAX_BASE)
			return -1;
		o->base[o->n_base++] = v;
		return 0;
	}
	long long *x = !strcmp(n, "--in")	   ? &o->in
		       : !strcmp(n, "--out")	   ? &o->out
		       : !strcmp(n, "--items")	   ? &o->items
		       : !strcmp(n, "--first")	   ? &o->first
		       : !strcmp(n, "--seconds")  ? &o->seconds
		       : !strcmp(n, "--procs")	   ? &o->procs
		       : !strcmp(n, "--pause-ms") ? &o->pause_ms
		       : !strcmp(n, "--seed")	   ? &o->seed
						   : NULL;
	if (!x) {
		fprintf(stderr, "ledger: unknown option %s\n", n);
		return -1;
	}
	return num_arg(n, v, x);
}

static int opts_parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->items = 1;
	o->first = 1;
	o->procs = 1;
	o->in = o->out = o->seconds = o->seed = -1;
	for (int i = 0; i < argc; i += 2) {
		if (i + 1 >= argc) {
			fprintf(stderr, "ledger: %s needs a value\n", argv[i]);
			return -1;
		}
		if (opt_one(o, argv[i], argv[i + 1]) < 0)
			return -1;
	}
	if (o->items > MAX_ITEMS || o->procs < 1 || o->procs > MAX_PROCS) {
		fprintf(stderr, "ledger: --items is at most %d, --procs 1..%d\n", MAX_ITEMS,
			MAX_PROCS);
		return -1;
	}
	return 0;
}

/* "A..B" (decimal keys) or "LO..HI" (hex hashes). */
static int parse_pair(const char *s, bool hex, uint64_t *a, uint64_t *b)
{
	const char *dots = s ? strstr(s, "..") : NULL;
	if (!dots)
		return -1;
	char left[40];
	size_t n = (size_t)(dots - s);
	if (n == 0 || n >= sizeof(left))
		return -1;
	memcpy(left, s, n);
	left[n] = '\0';
	if (hex) {
		struct sr_errmsg em;
		if (sm_hash_parse(left, a, &em) < 0 || sm_hash_parse(dots + 2, b, &em) < 0)
			return -1;
	} else {
		char *e1, *e2;
		*a = strtoull(left, &e1, 10);
		*b = strtoull(dots + 2, &e2, 10);
		if (*e1 || *e2 || !dots[2] || *a > (uint64_t)INT64_MAX || *b > (uint64_t)INT64_MAX)
			return -1;
	}
	return *a <= *b ? 0 : -1;
}

/* ---- key states and ledger records -------------------------------------------- */

/* A value as a ledger token: NULL is \N; whitespace, empty or long values
 * cannot be recorded (the test data never has them). */
static int tok_set(char dst[TOK], const char *v, bool is_null)
{
	if (is_null)
		v = "\\N";
	size_t n = strlen(v);
	if (n == 0 || n >= TOK || strpbrk(v, " \t\r\n")) {
		fprintf(stderr, "ledger: value '%s' cannot be recorded in a ledger\n", v);
		return -1;
	}
	memcpy(dst, v, n + 1);
	return 0;
}

static int state_add_item(struct kstate *s, int line, const char *sku, bool sku_null,
			  const char *qty, bool qty_null)
{
	if (s->n_items == MAX_ITEMS || line < 1 || line > MAX_ITEMS)
		return -1;
	int i = s->n_items;
	while (i > 0 && s->items[i - 1].line > line) {
		s->items[i] = s->items[i - 1];
		i--;
	}
	if (i > 0 && s->items[i - 1].line == line)
		return -1;
	struct item *it = &s->items[i];
	it->line = line;
	if (tok_set(it->sku, sku, sku_null) < 0 || tok_set(it->qty, qty, qty_null) < 0)
		return -1;
	s->n_items++;
	return 0;
}

static bool state_eq(const struct kstate *a, const struct kstate *b)
{
	if (a->present != b->present || a->n_items != b->n_items)
		return false;
	if (a->present && (strcmp(a->cust, b->cust) || strcmp(a->status, b->status) ||
			   strcmp(a->total, b->total)))
		return false;
	for (int i = 0; i < a->n_items; i++)
		if (a->items[i].line != b->items[i].line ||
		    strcmp(a->items[i].sku, b->items[i].sku) ||
		    strcmp(a->items[i].qty, b->items[i].qty))
			return false;
	return true;
}

static void state_fmt(const struct kstate *s, char *buf, size_t n)
{
	if (s->unknown) {
		snprintf(buf, n, "U");
		return;
	}
	if (!s->present) {
		snprintf(buf, n, "A");
		return;
	}
	int w = snprintf(buf, n, "P %s %s %s %d", s->cust, s->status, s->total, s->n_items);
	for (int i = 0; i < s->n_items && w > 0 && (size_t)w < n; i++)
		w += snprintf(buf + w, n - (size_t)w, " %d %s %s", s->items[i].line,
			      s->items[i].sku, s->items[i].qty);
}

/* tok[0..nt) = the STATE part of a record. */
static int state_parse(char **tok, int nt, struct kstate *s)
{
	memset(s, 0, sizeof(*s));
	if (nt == 1 && !strcmp(tok[0], "A"))
		return 0;
	if (nt == 1 && !strcmp(tok[0], "U")) {
		s->unknown = true;
		return 0;
	}
	if (nt < 5 || strcmp(tok[0], "P"))
		return -1;
	s->present = true;
	int n = atoi(tok[4]);
	if (tok_set(s->cust, tok[1], false) < 0 || tok_set(s->status, tok[2], false) < 0 ||
	    tok_set(s->total, tok[3], false) < 0 || n < 0 || n > MAX_ITEMS || nt != 5 + 3 * n)
		return -1;
	for (int i = 0; i < n; i++)
		if (state_add_item(s, atoi(tok[5 + 3 * i]), tok[6 + 3 * i], false, tok[7 + 3 * i],
				   false) < 0)
			return -1;
	return 0;
}

static void ledger_put(FILE *f, uint64_t seq, const char *op, const char *mode, int64_t key,
		       const struct kstate *s)
{
	char buf[512];
	state_fmt(s, buf, sizeof(buf));
	fprintf(f, "%" PRIu64 " %lld %s %s %" PRId64 " %s\n", seq, wall_ms(), op, mode, key, buf);
	fflush(f);
}

/* ---- the map, shards, rows ---------------------------------------------------- */

static PGconn *connect_to(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "ledger: cannot connect (%s): %s", conninfo, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

static struct sm_map *map_open(const char *catalog)
{
	if (!catalog) {
		fprintf(stderr, "ledger: --catalog is required\n");
		return NULL;
	}
	PGconn *c = connect_to(catalog);
	if (!c)
		return NULL;
	struct sm_map *m = NULL;
	struct sr_errmsg em;
	if (sm_catalog_load(c, &m, &em) < 0 || m->n_ranges == 0 || m->n_shards > 32) {
		fprintf(stderr, "ledger: cannot load the shard map: %s\n",
			m ? "no ranges or too many shards" : em.text);
		sm_map_free(m);
		m = NULL;
	}
	PQfinish(c);
	return m;
}

static uint64_t key_hash(int64_t k)
{
	struct sm_key key;
	sm_key_from_int64(k, &key);
	return sm_hash_key(&key);
}

/* Index (into m->shards) of the shard that owns key k. */
static int key_owner(const struct sm_map *m, int64_t k)
{
	const struct sm_range *r = sm_map_lookup(m, key_hash(k));
	for (size_t i = 0; r && i < m->n_shards; i++)
		if (m->shards[i].id == r->shard_id)
			return (int)i;
	return -1;
}

static PGresult *query(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "ledger: %s: %s", sql, PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	return r;
}

/* Every orders and order_items row with a key in a..b on c. */
static int fetch_rows(PGconn *c, int64_t a, int64_t b, PGresult **orders, PGresult **items)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "SELECT order_id, customer_id, status, total FROM orders"
		 " WHERE order_id BETWEEN %" PRId64 " AND %" PRId64,
		 a, b);
	*orders = query(c, sql);
	snprintf(sql, sizeof(sql),
		 "SELECT order_id, line_no, sku, qty FROM order_items"
		 " WHERE order_id BETWEEN %" PRId64 " AND %" PRId64,
		 a, b);
	*items = *orders ? query(c, sql) : NULL;
	if (!*items) {
		PQclear(*orders);
		*orders = NULL;
		return -1;
	}
	return 0;
}

static int64_t val_i64(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int set_order(struct kstate *s, const PGresult *r, int row)
{
	s->present = true;
	return tok_set(s->cust, PQgetvalue(r, row, 1), PQgetisnull(r, row, 1)) |
	       tok_set(s->status, PQgetvalue(r, row, 2), PQgetisnull(r, row, 2)) |
	       tok_set(s->total, PQgetvalue(r, row, 3), PQgetisnull(r, row, 3));
}

static int add_item_row(struct kstate *s, const PGresult *r, int row)
{
	return state_add_item(s, atoi(PQgetvalue(r, row, 1)), PQgetvalue(r, row, 2),
			      PQgetisnull(r, row, 2), PQgetvalue(r, row, 3),
			      PQgetisnull(r, row, 3));
}

/* ---- load ---------------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->cap - b->len < 256) {
		b->cap = b->cap ? b->cap * 2 : 1 << 16;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static int copy_in(PGconn *c, const char *table, const struct sbuf *b)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	if (ok && b->len)
		ok = PQputCopyData(c, b->p, (int)b->len) == 1;
	ok = PQputCopyEnd(c, ok ? NULL : "ledger failed") == 1 && ok;
	r = PQgetResult(c);
	ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "ledger: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	while ((r = PQgetResult(c)))
		PQclear(r);
	return ok ? 0 : -1;
}

static void load_key(struct sbuf *ob, struct sbuf *ib, FILE *f, int64_t k, int items)
{
	struct kstate s = {.present = true};
	snprintf(s.cust, TOK, "%" PRId64, k % 1000);
	snprintf(s.status, TOK, "new");
	snprintf(s.total, TOK, "%" PRId64 ".%02" PRId64, k % 500, k % 100);
	sbuf_printf(ob, "%" PRId64 "\t%s\t%s\t%s\t2024-01-01 00:00:00+00\n", k, s.cust, s.status,
		    s.total);
	for (int l = 1; l <= items; l++) {
		char sku[64], qty[TOK];
		snprintf(sku, sizeof(sku), "sku-%" PRId64 "-%d", k, l);
		snprintf(qty, sizeof(qty), "%d", l);
		sbuf_printf(ib, "%" PRId64 "\t%d\t%s\t%s\n", k, l, sku, qty);
		if (state_add_item(&s, l, sku, false, qty, false) < 0)
			abort();
	}
	if (f)
		ledger_put(f, 0, "load", "-", k, &s);
}

static int load_send(const struct sm_map *m, struct sbuf *ob, struct sbuf *ib)
{
	for (size_t i = 0; i < m->n_shards; i++) {
		if (!ob[i].len)
			continue;
		PGconn *c = connect_to(m->shards[i].primary);
		if (!c)
			return -1;
		int rc = copy_in(c, "orders (order_id, customer_id, status, total, created_at)",
				 &ob[i]);
		if (rc == 0 && ib[i].len)
			rc = copy_in(c, "order_items (order_id, line_no, sku, qty)", &ib[i]);
		PQfinish(c);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int cmd_load(const struct opts *o)
{
	uint64_t lo, hi;
	if (parse_pair(o->range, true, &lo, &hi) < 0 || o->in < 0 || o->out < 0) {
		fprintf(stderr, "ledger load: needs --range LO..HI (hex) --in N --out M\n");
		return 2;
	}
	struct sm_map *m = map_open(o->catalog);
	if (!m)
		return 2;
	FILE *f = o->file ? fopen(o->file, "w") : NULL;
	struct sbuf *ob = calloc(m->n_shards, sizeof(*ob)), *ib = calloc(m->n_shards, sizeof(*ib));
	long long nin = 0, nout = 0, per[32] = {0};
	int64_t k = o->first, limit = o->first + 100 * (o->in + o->out) + 1000000;
	double t0 = mono_ms();
	for (; (nin < o->in || nout < o->out) && k < limit; k++) {
		uint64_t h = key_hash(k);
		bool in = h >= lo && h <= hi;
		if (in ? nin >= o->in : nout >= o->out)
			continue;
		*(in ? &nin : &nout) += 1;
		int s = key_owner(m, k);
		per[s]++;
		load_key(&ob[s], &ib[s], f, k, (int)o->items);
	}
	int rc = nin == o->in && nout == o->out && load_send(m, ob, ib) == 0 ? 0 : 2;
	double secs = (mono_ms() - t0) / 1000.0;
	long long rows = (nin + nout) * (1 + o->items);
	if (rc == 0) {
		printf("loaded in=%lld out=%lld rows=%lld keys=%lld..%" PRId64 " secs=%.2f rows_per_s=%.0f",
		       nin, nout, rows, o->first, k - 1, secs, rows / (secs > 0 ? secs : 1e-3));
		for (size_t i = 0; i < m->n_shards; i++)
			printf(" shard%" PRId32 "=%lld", m->shards[i].id, per[i]);
		printf("\n");
	} else {
		fprintf(stderr, "ledger load: failed (found in=%lld out=%lld)\n", nin, nout);
	}
	for (size_t i = 0; i < m->n_shards; i++) {
		free(ob[i].p);
		free(ib[i].p);
	}
	free(ob);
	free(ib);
	if (f && fclose(f) != 0)
		rc = 2;
	sm_map_free(m);
	return rc;
}

/* ---- count --------------------------------------------------------------------- */

static long long count_in(PGconn *c, const char *table, uint64_t lo, uint64_t hi)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT order_id FROM %s WHERE order_id IS NOT NULL", table);
	PGresult *r = query(c, sql);
	if (!r)
		return -1;
	long long n = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		uint64_t h = key_hash(val_i64(r, i, 0));
		n += h >= lo && h <= hi;
	}
	PQclear(r);
	return n;
}

static int cmd_count(const struct opts *o)
{
	uint64_t lo, hi;
	if (parse_pair(o->range, true, &lo, &hi) < 0) {
		fprintf(stderr, "ledger count: needs --range LO..HI (hex)\n");
		return 2;
	}
	struct sm_map *m = map_open(o->catalog);
	if (!m)
		return 2;
	int rc = 0;
	long long tot = 0;
	for (size_t i = 0; i < m->n_shards && rc == 0; i++) {
		PGconn *c = connect_to(m->shards[i].primary);
		long long a = c ? count_in(c, "orders", lo, hi) : -1;
		long long b = a >= 0 ? count_in(c, "order_items", lo, hi) : -1;
		PQfinish(c);
		if (b < 0) {
			rc = 2;
			break;
		}
		printf("count shard=%" PRId32 " orders=%lld items=%lld rows=%lld\n", m->shards[i].id,
		       a, b, a + b);
		tot += a + b;
	}
	if (rc == 0)
		printf("count total rows=%lld\n", tot);
	sm_map_free(m);
	return rc;
}

/* ---- write --------------------------------------------------------------------- */

enum op_kind { OP_INSERT, OP_UPDATE, OP_DELETE };
enum outcome { OUT_COMMITTED, OUT_FAILED, OUT_UNKNOWN, OUT_ANOMALY };
enum res { RES_OK, RES_KNOWN, RES_UNKNOWN, RES_MISMATCH };

struct stmt {
	char sql[512]; /* rendered (simple) or with $1..$n (extended) */
	int n;
	char vals[4][TOK];
	long expect; /* rows affected (or returned); -1: any */
};

struct plan {
	enum op_kind kind;
	bool tx, ext;
	int n;
	struct stmt s[MAX_ITEMS + 3];
	struct kstate old, now;
	int64_t key;
};

struct wstats {
	uint64_t ops, committed, failed, unknown, res_commit, res_abort, unresolved, anomalies,
		reconnects;
	double max_op_ms;
	long long max_op_at;
	char max_op_what[96];
	int n_states;
	struct {
		char code[8];
		uint64_t n;
	} states[MAX_STATES];
	int exit_code;
};

struct wproc {
	const struct opts *o;
	int idx;
	int64_t first, last; /* owned keys: first, first + P, ... <= last */
	size_t n;
	struct kstate *st;
	FILE *led;
	PGconn *c;
	uint64_t seq, rng;
	struct wstats *stats;
};

static const char *const op_names[] = {"ins", "upd", "del"};

static const char *plan_mode(const struct plan *p)
{
	return p->tx ? (p->ext ? "tx-ext" : "tx-simple") : (p->ext ? "auto-ext" : "auto-simple");
}

/* A statement from a template whose $i are vals[i-1]; in simple mode the
 * values are inlined (bit i-1 of quoted: as a string literal). */
static void stmt_make(struct stmt *s, bool ext, const char *tmpl, long expect, int n,
		      const char *const *vals, unsigned quoted)
{
	s->n = ext ? n : 0;
	s->expect = expect;
	for (int i = 0; i < n; i++)
		snprintf(s->vals[i], TOK, "%s", vals[i]);
	if (ext) {
		snprintf(s->sql, sizeof(s->sql), "%s", tmpl);
		return;
	}
	size_t w = 0;
	for (const char *t = tmpl; *t && w + TOK * 2 + 4 < sizeof(s->sql); t++) {
		if (*t != '$' || t[1] < '1' || t[1] > '0' + n) {
			s->sql[w++] = *t;
			continue;
		}
		int i = *++t - '1';
		bool q = quoted & (1u << i);
		if (q)
			s->sql[w++] = '\'';
		for (const char *v = vals[i]; *v; v++) {
			if (*v == '\'')
				s->sql[w++] = '\'';
			s->sql[w++] = *v;
		}
		if (q)
			s->sql[w++] = '\'';
	}
	s->sql[w] = '\0';
}

static void gen_token(struct wproc *w, char out[TOK], char tag, int line)
{
	if (line)
		snprintf(out, TOK, "%c%dx%" PRIu64 "x%d", tag, w->idx, w->seq, line);
	else
		snprintf(out, TOK, "%c%dx%" PRIu64, tag, w->idx, w->seq);
}

static void plan_items_insert(struct wproc *w, struct plan *p, const char *k)
{
	const struct kstate *s = &p->now;
	if (!p->ext && s->n_items >= 2) { /* one multi-row INSERT */
		struct stmt *st = &p->s[p->n++];
		char sql[sizeof(st->sql)];
		int o = snprintf(sql, sizeof(sql),
				 "INSERT INTO order_items (order_id, line_no, sku, qty) VALUES");
		for (int i = 0; i < s->n_items; i++)
			o += snprintf(sql + o, sizeof(sql) - (size_t)o, "%s (%s, %d, '%s', %s)",
				      i ? "," : "", k, s->items[i].line, s->items[i].sku,
				      s->items[i].qty);
		memcpy(st->sql, sql, sizeof(sql));
		st->n = 0;
		st->expect = s->n_items;
		return;
	}
	for (int i = 0; i < s->n_items; i++) {
		char line[8];
		snprintf(line, sizeof(line), "%d", s->items[i].line);
		const char *v[] = {k, line, s->items[i].sku, s->items[i].qty};
		stmt_make(&p->s[p->n++], p->ext,
			  "INSERT INTO order_items (order_id, line_no, sku, qty) VALUES ($1, $2, $3, $4)",
			  1, 4, v, 4u);
	}
	(void)w;
}

static void plan_insert(struct wproc *w, struct plan *p, const char *k)
{
	struct kstate *s = &p->now;
	memset(s, 0, sizeof(*s));
	s->present = true;
	snprintf(s->cust, TOK, "%d", 1 + rnd(&w->rng, 1000));
	gen_token(w, s->status, 'n', 0);
	snprintf(s->total, TOK, "%d.%02d", rnd(&w->rng, 1000), rnd(&w->rng, 100));
	int n = rnd(&w->rng, 4);
	for (int l = 1; l <= n; l++) {
		char sku[TOK], qty[TOK];
		gen_token(w, sku, 's', l);
		snprintf(qty, TOK, "%d", 1 + rnd(&w->rng, 9));
		if (state_add_item(s, l, sku, false, qty, false) < 0)
			abort();
	}
	p->tx = n > 0 || rnd(&w->rng, 2);
	const char *v[] = {k, s->cust, s->status, s->total};
	stmt_make(&p->s[p->n++], p->ext,
		  "INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)",
		  1, 4, v, 4u);
	plan_items_insert(w, p, k);
}

static void plan_update(struct wproc *w, struct plan *p, const char *k)
{
	struct kstate *s = &p->now;
	gen_token(w, s->status, 'u', 0);
	snprintf(s->total, TOK, "%d.%02d", rnd(&w->rng, 1000), rnd(&w->rng, 100));
	int item = s->n_items > 0 && rnd(&w->rng, 3) ? rnd(&w->rng, s->n_items) : -1;
	p->tx = item >= 0 || rnd(&w->rng, 2);
	const char *v[] = {k, s->status, s->total};
	stmt_make(&p->s[p->n++], p->ext,
		  "UPDATE orders SET status = $2, total = $3 WHERE order_id = $1", 1, 3, v, 2u);
	if (item < 0)
		return;
	struct item *it = &s->items[item];
	char line[8];
	snprintf(it->qty, TOK, "%d", 10 + rnd(&w->rng, 90));
	snprintf(line, sizeof(line), "%d", it->line);
	const char *v2[] = {k, it->qty, line};
	stmt_make(&p->s[p->n++], p->ext,
		  "UPDATE order_items SET qty = $2 WHERE order_id = $1 AND line_no = $3", 1, 3, v2,
		  0u);
}

static void plan_delete(struct wproc *w, struct plan *p, const char *k)
{
	const char *v[] = {k};
	p->tx = p->old.n_items > 0 || rnd(&w->rng, 2);
	if (p->tx)
		stmt_make(&p->s[p->n++], p->ext, "DELETE FROM order_items WHERE order_id = $1",
			  p->old.n_items, 1, v, 0u);
	stmt_make(&p->s[p->n++], p->ext, "DELETE FROM orders WHERE order_id = $1", 1, 1, v, 0u);
	memset(&p->now, 0, sizeof(p->now));
}

/* A random operation on owned key number j, from what the ledger says it holds. */
static void plan_make(struct wproc *w, size_t j, struct plan *p)
{
	char k[TOK];
	memset(p, 0, sizeof(*p));
	w->seq++;
	p->key = w->first + (int64_t)j * w->o->procs;
	p->old = p->now = w->st[j];
	p->ext = rnd(&w->rng, 2);
	snprintf(k, sizeof(k), "%" PRId64, p->key);
	p->kind = !p->old.present ? OP_INSERT : rnd(&w->rng, 3) ? OP_UPDATE : OP_DELETE;
	switch (p->kind) {
	case OP_INSERT: plan_insert(w, p, k); break;
	case OP_UPDATE: plan_update(w, p, k); break;
	case OP_DELETE: plan_delete(w, p, k); break;
	}
	if (p->tx && rnd(&w->rng, 4) == 0) { /* first lock the row: checks the ledger too */
		memmove(&p->s[1], &p->s[0], sizeof(p->s[0]) * (size_t)p->n++);
		const char *v[] = {k};
		stmt_make(&p->s[0], p->ext, "SELECT status FROM orders WHERE order_id = $1 FOR UPDATE",
			  p->old.present, 1, v, 0u);
	}
}

static PGresult *stmt_exec(PGconn *c, const struct stmt *s)
{
	if (s->n == 0)
		return PQexec(c, s->sql);
	const char *pv[4];
	for (int i = 0; i < s->n; i++)
		pv[i] = s->vals[i];
	return PQexecParams(c, s->sql, s->n, NULL, pv, NULL, NULL, 0);
}

/* How a statement went; code gets the SQLSTATE ("conn": none, "rows":
 * affected a different number of rows than expected), msg the message. */
static enum res stmt_result(PGconn *c, PGresult *r, long expect, char code[8], char *msg,
			    size_t msz)
{
	ExecStatusType t = PQresultStatus(r);
	if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
		long got = t == PGRES_TUPLES_OK ? PQntuples(r) : atol(PQcmdTuples(r));
		if (expect < 0 || got == expect)
			return RES_OK;
		snprintf(code, 8, "rows");
		snprintf(msg, msz, "affected %ld rows, expected %ld", got, expect);
		return RES_MISMATCH;
	}
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(code, 8, "%s", st ? st : "conn");
	snprintf(msg, msz, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	msg[strcspn(msg, "\n")] = '\0';
	if (!st || PQstatus(c) != CONNECTION_OK || !strncmp(st, "08", 2) || !strncmp(st, "57", 2) ||
	    !strncmp(st, "XX", 2))
		return RES_UNKNOWN;
	return RES_KNOWN;
}

static enum outcome stmt_fail(PGconn *c, bool tx, enum res x)
{
	if (tx) { /* COMMIT was not sent: nothing of the transaction applies */
		PQclear(PQexec(c, "ROLLBACK"));
		return x == RES_MISMATCH ? OUT_ANOMALY : OUT_FAILED;
	}
	return x == RES_KNOWN ? OUT_FAILED : x == RES_UNKNOWN ? OUT_UNKNOWN : OUT_ANOMALY;
}

static enum outcome run_plan(PGconn *c, const struct plan *p, char code[8], char *msg, size_t msz)
{
	PGresult *r;
	enum res x;
	if (p->tx) {
		x = stmt_result(c, r = PQexec(c, "BEGIN"), -1, code, msg, msz);
		PQclear(r);
		if (x != RES_OK)
			return OUT_FAILED;
	}
	for (int i = 0; i < p->n; i++) {
		x = stmt_result(c, r = stmt_exec(c, &p->s[i]), p->s[i].expect, code, msg, msz);
		PQclear(r);
		if (x != RES_OK)
			return stmt_fail(c, p->tx, x);
	}
	if (!p->tx)
		return OUT_COMMITTED;
	r = PQexec(c, "COMMIT");
	x = stmt_result(c, r, -1, code, msg, msz);
	if (x == RES_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
		snprintf(code, 8, "tag");
		snprintf(msg, msz, "COMMIT answered %s", PQcmdStatus(r));
		x = RES_UNKNOWN;
	}
	PQclear(r);
	return x == RES_OK ? OUT_COMMITTED : OUT_UNKNOWN;
}

static int ensure_conn(struct wproc *w, double give_up_ms)
{
	double until = mono_ms() + give_up_ms;
	while (!w->c || PQstatus(w->c) != CONNECTION_OK) {
		PQfinish(w->c);
		w->c = PQconnectdb(w->o->router);
		if (PQstatus(w->c) == CONNECTION_OK) {
			w->stats->reconnects++;
			break;
		}
		if (mono_ms() > until) {
			fprintf(stderr, "ledger write %d: cannot connect to the router: %s", w->idx,
				PQerrorMessage(w->c));
			return -1;
		}
		sleep_ms(100);
	}
	return 0;
}

/* The key's rows, read through the router in a read-write transaction
 * (so from the owner's primary, after any write it waited for). */
static int read_key(PGconn *c, int64_t key, struct kstate *out)
{
	char k[TOK];
	const char *pv[] = {k};
	snprintf(k, sizeof(k), "%" PRId64, key);
	memset(out, 0, sizeof(*out));
	PGresult *r = PQexec(c, "BEGIN"), *o = NULL, *it = NULL;
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (ok)
		o = PQexecParams(c, "SELECT order_id, customer_id, status, total FROM orders"
				    " WHERE order_id = $1", 1, NULL, pv, NULL, NULL, 0);
	ok = ok && PQresultStatus(o) == PGRES_TUPLES_OK && PQntuples(o) <= 1;
	if (ok)
		it = PQexecParams(c, "SELECT order_id, line_no, sku, qty FROM order_items"
				     " WHERE order_id = $1 ORDER BY line_no", 1, NULL, pv, NULL, NULL, 0);
	ok = ok && PQresultStatus(it) == PGRES_TUPLES_OK;
	if (ok && PQntuples(o) == 1 && set_order(out, o, 0) < 0)
		ok = false;
	for (int i = 0; ok && i < PQntuples(it); i++)
		ok = add_item_row(out, it, i) == 0;
	PQclear(o);
	PQclear(it);
	r = PQexec(c, ok ? "COMMIT" : "ROLLBACK");
	ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

static int read_key_retry(struct wproc *w, int64_t key, struct kstate *out)
{
	double until = mono_ms() + 120000;
	while (mono_ms() < until) {
		if (ensure_conn(w, until - mono_ms()) < 0)
			return -1;
		if (read_key(w->c, key, out) == 0)
			return 0;
		fprintf(w->led, "# read of key %" PRId64 " failed: %s", key, PQerrorMessage(w->c));
		sleep_ms(200);
	}
	return -1;
}

static void count_state(struct wstats *s, const char *code)
{
	int i = 0;
	while (i < s->n_states && strcmp(s->states[i].code, code))
		i++;
	if (i == s->n_states && s->n_states < MAX_STATES)
		snprintf(s->states[s->n_states++].code, 8, "%s", code);
	if (i < s->n_states)
		s->states[i].n++;
}

/* A commit whose outcome is unknown: the key's rows say which it was. */
static void resolve(struct wproc *w, const struct plan *p, size_t j)
{
	struct kstate cur;
	char mode[32];
	if (read_key_retry(w, p->key, &cur) < 0) {
		w->st[j].unknown = true;
		w->stats->unresolved++;
		ledger_put(w->led, w->seq, "lost", "-", p->key, &w->st[j]);
		return;
	}
	if (state_eq(&cur, &p->now)) {
		w->stats->res_commit++;
		w->stats->committed++;
		w->st[j] = p->now;
		snprintf(mode, sizeof(mode), "%s,resolved", plan_mode(p));
		ledger_put(w->led, w->seq, op_names[p->kind], mode, p->key, &w->st[j]);
	} else if (state_eq(&cur, &p->old)) {
		w->stats->res_abort++;
		fprintf(w->led, "# seq %" PRIu64 " key %" PRId64 ": resolved as not committed\n", w->seq,
			p->key);
	} else {
		w->stats->unresolved++;
		w->st[j] = cur;
		fprintf(w->led, "# seq %" PRIu64 " key %" PRId64 ": neither old nor new state\n",
			w->seq, p->key);
		ledger_put(w->led, w->seq, "resync", "-", p->key, &cur);
	}
}

static void after_op(struct wproc *w, const struct plan *p, size_t j, enum outcome out,
		     const char *code, const char *msg)
{
	if (out != OUT_COMMITTED) {
		fprintf(w->led, "# seq %" PRIu64 " %s %s key %" PRId64 ": %s %s\n", w->seq,
			op_names[p->kind], plan_mode(p), p->key, code, msg);
		if (out != OUT_ANOMALY)
			count_state(w->stats, code);
	}
	struct kstate cur;
	switch (out) {
	case OUT_COMMITTED:
		w->stats->committed++;
		w->st[j] = p->now;
		ledger_put(w->led, w->seq, op_names[p->kind], plan_mode(p), p->key, &w->st[j]);
		break;
	case OUT_FAILED: w->stats->failed++; break;
	case OUT_UNKNOWN:
		w->stats->failed++;
		w->stats->unknown++;
		resolve(w, p, j);
		break;
	case OUT_ANOMALY: /* the database disagrees with the ledger: take its state */
		w->stats->anomalies++;
		if (read_key_retry(w, p->key, &cur) < 0) {
			w->st[j].unknown = true;
			w->stats->unresolved++;
		} else {
			w->st[j] = cur;
		}
		ledger_put(w->led, w->seq, "resync", "-", p->key, &w->st[j]);
		break;
	}
}

static bool wproc_should_stop(const struct wproc *w, double deadline)
{
	struct stat sb;
	return g_stop || mono_ms() >= deadline || (w->o->stop_file && stat(w->o->stop_file, &sb) == 0);
}

static void wproc_loop(struct wproc *w)
{
	double deadline = mono_ms() + (double)w->o->seconds * 1000.0;
	while (!wproc_should_stop(w, deadline)) {
		if (ensure_conn(w, 20000) < 0) {
			w->stats->exit_code = 2;
			return;
		}
		size_t j = (size_t)(rng_next(&w->rng) % w->n);
		if (w->st[j].unknown)
			continue;
		struct plan p;
		char code[8] = "", msg[256] = "";
		plan_make(w, j, &p);
		double t0 = mono_ms();
		enum outcome out = run_plan(w->c, &p, code, msg, sizeof(msg));
		double ms = mono_ms() - t0;
		w->stats->ops++;
		if (ms > w->stats->max_op_ms) {
			w->stats->max_op_ms = ms;
			w->stats->max_op_at = wall_ms();
			snprintf(w->stats->max_op_what, sizeof(w->stats->max_op_what),
				 "%s %s key %" PRId64 " %s", op_names[p.kind], plan_mode(&p), p.key,
				 out == OUT_COMMITTED ? "committed" : code);
		}
		after_op(w, &p, j, out, code, msg);
		if (w->o->pause_ms)
			sleep_ms((long)w->o->pause_ms);
	}
}

/* Rows of owned keys in res (orders or items) into w->st. Only rows on the
 * key's owner count when shard >= 0 (reading the primaries directly). */
static int base_apply(struct wproc *w, const struct sm_map *m, int shard, PGresult *res,
		      bool items)
{
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t k = val_i64(res, i, 0), d = k - w->first;
		if (k < w->first || k > w->last || d % w->o->procs)
			continue;
		if (shard >= 0 && key_owner(m, k) != shard)
			continue;
		struct kstate *s = &w->st[d / w->o->procs];
		if ((items ? add_item_row(s, res, i) : set_order(s, res, i)) < 0) {
			fprintf(stderr, "ledger write: cannot record key %" PRId64 "\n", k);
			return -1;
		}
	}
	return 0;
}

static int base_from(struct wproc *w, PGconn *c, const struct sm_map *m, int shard)
{
	PGresult *o, *it;
	if (fetch_rows(c, w->first, w->last, &o, &it) < 0)
		return -1;
	int rc = base_apply(w, m, shard, o, false);
	if (rc == 0)
		rc = base_apply(w, m, shard, it, true);
	PQclear(o);
	PQclear(it);
	return rc;
}

/* The state of every owned key at start, as the first records. */
static int base_read(struct wproc *w)
{
	int rc = 0;
	if (!w->o->catalog) { /* key by key: the router does not fan reads out */
		for (size_t j = 0; j < w->n && rc == 0; j++)
			rc = read_key_retry(w, w->first + (int64_t)j * w->o->procs, &w->st[j]);
	} else {
		struct sm_map *m = map_open(w->o->catalog);
		rc = m ? 0 : -1;
		for (size_t i = 0; m && i < m->n_shards && rc == 0; i++) {
			PGconn *c = connect_to(m->shards[i].primary);
			rc = c ? base_from(w, c, m, (int)i) : -1;
			PQfinish(c);
		}
		sm_map_free(m);
	}
	for (size_t j = 0; rc == 0 && j < w->n; j++)
		ledger_put(w->led, 0, "base", "-", w->first + (int64_t)j * w->o->procs, &w->st[j]);
	return rc;
}

static int wproc_main(const struct opts *o, int idx, int64_t a, int64_t b, struct wstats *stats)
{
	struct wproc w = {.o = o, .idx = idx, .stats = stats, .last = b};
	char path[4096];
	w.first = a + ((idx - a % o->procs) % o->procs + o->procs) % o->procs;
	w.n = w.first > b ? 0 : (size_t)((b - w.first) / o->procs + 1);
	w.rng = (o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)wall_ms() ^ (uint64_t)getpid() << 20) *
			UINT64_C(0x9E3779B97F4A7C15) +
		(uint64_t)idx + 1;
	snprintf(path, sizeof(path), "%s.%d", o->file, idx);
	w.st = calloc(w.n ? w.n : 1, sizeof(*w.st));
	w.led = fopen(path, "w");
	if (!w.st || !w.led || w.n == 0 || base_read(&w) < 0) {
		fprintf(stderr, "ledger write %d: setup failed (%s, %zu keys)\n", idx, path, w.n);
		return 2;
	}
	fprintf(w.led, "# ledger write proc %d of %lld keys %" PRId64 "..%" PRId64 " seed %" PRIu64 "\n",
		idx, o->procs, a, b, w.rng);
	wproc_loop(&w);
	PQfinish(w.c);
	int rc = fclose(w.led) == 0 ? stats->exit_code : 2;
	free(w.st);
	return rc;
}

static void print_totals(const struct opts *o, const struct wstats *st, int n)
{
	struct wstats t = {0};
	for (int i = 0; i < n; i++) {
		const struct wstats *s = &st[i];
		t.ops += s->ops, t.committed += s->committed, t.failed += s->failed;
		t.unknown += s->unknown, t.res_commit += s->res_commit, t.res_abort += s->res_abort;
		t.unresolved += s->unresolved, t.anomalies += s->anomalies;
		t.reconnects += s->reconnects;
		for (int k = 0; k < s->n_states; k++)
			for (uint64_t c = 0; c < s->states[k].n; c++)
				count_state(&t, s->states[k].code);
		if (s->max_op_ms >= t.max_op_ms) {
			t.max_op_ms = s->max_op_ms;
			t.max_op_at = s->max_op_at;
			memcpy(t.max_op_what, s->max_op_what, sizeof(t.max_op_what));
		}
	}
	printf("write procs=%lld ops=%" PRIu64 " committed=%" PRIu64 " failed=%" PRIu64
	       " unknown=%" PRIu64 " resolved_committed=%" PRIu64 " resolved_not_committed=%" PRIu64
	       " unresolved=%" PRIu64 " anomalies=%" PRIu64 " reconnects=%" PRIu64 " max_op_ms=%.1f\n",
	       o->procs, t.ops, t.committed, t.failed, t.unknown, t.res_commit, t.res_abort,
	       t.unresolved, t.anomalies, t.reconnects, t.max_op_ms);
	printf("failed_by_sqlstate");
	for (int k = 0; k < t.n_states; k++)
		printf(" %s=%" PRIu64, t.states[k].code, t.states[k].n);
	printf("%s\n", t.n_states ? "" : " none");
	printf("longest_op ms=%.1f at=%lld what=%s\n", t.max_op_ms, t.max_op_at, t.max_op_what);
}

static int write_wait(pid_t *pids, int n)
{
	int rc = 0, left = n;
	bool forwarded = false;
	while (left > 0) {
		int status;
		pid_t p = waitpid(-1, &status, 0);
		if (p < 0 && errno == EINTR) {
			for (int i = 0; g_stop && !forwarded && i < n; i++)
				kill(pids[i], SIGTERM);
			forwarded = forwarded || g_stop;
			continue;
		}
		if (p < 0)
			break;
		left--;
		int x = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
		rc = x > rc ? x : rc;
	}
	return rc;
}

static int cmd_write(const struct opts *o)
{
	uint64_t a, b;
	if (!o->router || !o->file || parse_pair(o->keys, false, &a, &b) < 0 || o->seconds < 0) {
		fprintf(stderr, "ledger write: needs --router C --keys A..B --seconds S --file PREFIX\n");
		return 2;
	}
	int n = (int)o->procs;
	struct wstats *st = mmap(NULL, sizeof(*st) * (size_t)n, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (st == MAP_FAILED)
		return 2;
	memset(st, 0, sizeof(*st) * (size_t)n);
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pid_t pids[MAX_PROCS];
	fflush(NULL);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(wproc_main(o, i, (int64_t)a, (int64_t)b, &st[i]));
		if (pids[i] < 0) {
			perror("fork");
			n = i;
			g_stop = 1;
			break;
		}
	}
	int rc = write_wait(pids, n);
	print_totals(o, st, n);
	for (int i = 0; i < n; i++)
		if (st[i].unresolved || st[i].anomalies)
			rc = rc > 1 ? rc : 1;
	munmap(st, sizeof(*st) * (size_t)o->procs);
	return rc;
}

/* ---- check --------------------------------------------------------------------- */

enum ck_kind { CK_MISSING, CK_EXTRA, CK_STALE, CK_DUP, CK_MISPLACED, CK_N };
static const char *const ck_names[CK_N] = {"missing", "extra", "stale", "duplicated",
					   "misplaced"};

struct check {
	const struct sm_map *m;
	int64_t a, b;
	size_t nk;
	struct kstate **exp;		/* per key - a; NULL: absent */
	uint32_t *omask;		/* shards holding the key's order row */
	uint32_t (*imask)[MAX_ITEMS]; /* shards holding each item line */
	long long n[CK_N], unknown, exp_orders, exp_items, got_orders, got_items;
};

static void ck_note(struct check *ck, enum ck_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ck_note(struct check *ck, enum ck_kind kind, const char *fmt, ...)
{
	if (ck->n[kind]++ >= EXAMPLES)
		return;
	va_list ap;
	va_start(ap, fmt);
	printf("%s: ", ck_names[kind]);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

/* Tokenise one record line; 0 and the key's state, 1 to skip, -1 bad. */
static int record_parse(char *line, int64_t *key, struct kstate *s)
{
	char *tok[12 + 3 * MAX_ITEMS], *save = NULL;
	int nt = 0;
	line[strcspn(line, "\r\n")] = '\0';
	if (line[0] == '#' || line[0] == '\0')
		return 1;
	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (nt == (int)(sizeof(tok) / sizeof(tok[0])))
			return -1;
		tok[nt++] = t;
	}
	if (nt < 6)
		return -1;
	char *end;
	*key = strtoll(tok[4], &end, 10);
	return *end || state_parse(tok + 5, nt - 5, s) < 0 ? -1 : 0;
}

static int ck_read_file(struct check *ck, const char *path, bool must_exist)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (must_exist)
			fprintf(stderr, "ledger check: cannot read %s: %s\n", path, strerror(errno));
		return must_exist ? -1 : 0;
	}
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	int rc = 0;
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		int64_t k;
		struct kstate s;
		lineno++;
		int x = record_parse(line, &k, &s);
		if (x < 0) {
			fprintf(stderr, "ledger check: %s:%ld: bad record\n", path, lineno);
			rc = -1;
		}
		if (x != 0 || k < ck->a || k > ck->b)
			continue;
		struct kstate **e = &ck->exp[k - ck->a];
		if (!s.present && !s.unknown) {
			free(*e);
			*e = NULL;
		} else if (*e || (*e = malloc(sizeof(**e)))) {
			**e = s;
		} else {
			rc = -1;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static const struct item *find_item(const struct kstate *e, int line)
{
	for (int i = 0; e && i < e->n_items; i++)
		if (e->items[i].line == line)
			return &e->items[i];
	return NULL;
}

static const char *val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "\\N" : PQgetvalue(r, row, col);
}

static void ck_orders(struct check *ck, int si, const PGresult *r)
{
	int32_t sid = ck->m->shards[si].id;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t k = val_i64(r, i, 0);
		const struct kstate *e = ck->exp[k - ck->a];
		if (e && e->unknown)
			continue;
		ck->got_orders++;
		ck->omask[k - ck->a] |= 1u << si;
		int own = key_owner(ck->m, k);
		if (own != si)
			ck_note(ck, CK_MISPLACED, "orders %" PRId64 " on shard %" PRId32 ", owner %" PRId32,
				k, sid, own >= 0 ? ck->m->shards[own].id : -1);
		if (!e)
			ck_note(ck, CK_EXTRA, "orders %" PRId64 " on shard %" PRId32 " (expected absent)",
				k, sid);
		else if (strcmp(e->cust, val(r, i, 1)) || strcmp(e->status, val(r, i, 2)) ||
			 strcmp(e->total, val(r, i, 3)))
			ck_note(ck, CK_STALE, "orders %" PRId64 " on shard %" PRId32
				" is (%s, %s, %s), expected (%s, %s, %s)", k, sid, val(r, i, 1),
				val(r, i, 2), val(r, i, 3), e->cust, e->status, e->total);
	}
}

static void ck_items(struct check *ck, int si, const PGresult *r)
{
	int32_t sid = ck->m->shards[si].id;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t k = val_i64(r, i, 0);
		int line = atoi(PQgetvalue(r, i, 1));
		const struct kstate *e = ck->exp[k - ck->a];
		if (e && e->unknown)
			continue;
		ck->got_items++;
		const struct item *it = find_item(e, line);
		if (line >= 1 && line <= MAX_ITEMS)
			ck->imask[k - ck->a][line - 1] |= 1u << si;
		if (key_owner(ck->m, k) != si)
			ck_note(ck, CK_MISPLACED, "order_items %" PRId64 "/%d on shard %" PRId32, k,
				line, sid);
		if (!it)
			ck_note(ck, CK_EXTRA, "order_items %" PRId64 "/%d on shard %" PRId32
				" (expected absent)", k, line, sid);
		else if (strcmp(it->sku, val(r, i, 2)) || strcmp(it->qty, val(r, i, 3)))
			ck_note(ck, CK_STALE, "order_items %" PRId64 "/%d on shard %" PRId32
				" is (%s, %s), expected (%s, %s)", k, line, sid, val(r, i, 2),
				val(r, i, 3), it->sku, it->qty);
	}
}

static void ck_presence(struct check *ck, int64_t k, const char *what, uint32_t mask, bool want)
{
	int n = __builtin_popcount(mask);
	if (want && n == 0)
		ck_note(ck, CK_MISSING, "%s %" PRId64 " is on no shard", what, k);
	if (n > 1)
		ck_note(ck, CK_DUP, "%s %" PRId64 " is on %d shards (mask 0x%x)", what, k, n, mask);
}

static void ck_final(struct check *ck)
{
	for (size_t j = 0; j < ck->nk; j++) {
		const struct kstate *e = ck->exp[j];
		int64_t k = ck->a + (int64_t)j;
		if (e && e->unknown) {
			ck->unknown++;
			continue;
		}
		ck->exp_orders += e != NULL;
		ck->exp_items += e ? e->n_items : 0;
		ck_presence(ck, k, "orders", ck->omask[j], e != NULL);
		for (int l = 1; l <= MAX_ITEMS; l++) {
			char what[32];
			snprintf(what, sizeof(what), "order_items line %d of", l);
			ck_presence(ck, k, what, ck->imask[j][l - 1], find_item(e, l) != NULL);
		}
	}
}

static int ck_scan(struct check *ck)
{
	for (size_t i = 0; i < ck->m->n_shards; i++) {
		PGconn *c = connect_to(ck->m->shards[i].primary);
		PGresult *o, *it;
		if (!c || fetch_rows(c, ck->a, ck->b, &o, &it) < 0) {
			PQfinish(c);
			return -1;
		}
		ck_orders(ck, (int)i, o);
		ck_items(ck, (int)i, it);
		PQclear(o);
		PQclear(it);
		PQfinish(c);
	}
	ck_final(ck);
	return 0;
}

static int ck_load(struct check *ck, const struct opts *o)
{
	for (int i = 0; i < o->n_base; i++)
		if (ck_read_file(ck, o->base[i], true) < 0)
			return -1;
	for (long long i = 0; o->file && i < o->procs; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s.%lld", o->file, i);
		if (ck_read_file(ck, path, true) < 0)
			return -1;
	}
	return 0;
}

static int cmd_check(const struct opts *o)
{
	struct check ck = {0};
	uint64_t a, b;
	if (parse_pair(o->keys, false, &a, &b) < 0 || (!o->file && !o->n_base) || b - a > 50000000) {
		fprintf(stderr, "ledger check: needs --catalog C --keys A..B and --file PREFIX or --base F\n");
		return 2;
	}
	ck.a = (int64_t)a, ck.b = (int64_t)b, ck.nk = (size_t)(b - a + 1);
	ck.exp = calloc(ck.nk, sizeof(*ck.exp));
	ck.omask = calloc(ck.nk, sizeof(*ck.omask));
	ck.imask = calloc(ck.nk, sizeof(*ck.imask));
	struct sm_map *m = ck.exp && ck.omask && ck.imask ? map_open(o->catalog) : NULL;
	ck.m = m;
	int rc = m && ck_load(&ck, o) == 0 && ck_scan(&ck) == 0 ? 0 : 2;
	if (rc == 0) {
		long long bad = ck.unknown;
		printf("check keys=%" PRId64 "..%" PRId64 " expected_orders=%lld expected_items=%lld"
		       " found_orders=%lld found_items=%lld",
		       ck.a, ck.b, ck.exp_orders, ck.exp_items, ck.got_orders, ck.got_items);
		for (int i = 0; i < CK_N; i++) {
			printf(" %s=%lld", ck_names[i], ck.n[i]);
			bad += ck.n[i];
		}
		printf(" unknown=%lld\ncheck %s\n", ck.unknown, bad ? "FAILED" : "ok");
		rc = bad ? 1 : 0;
	}
	for (size_t j = 0; ck.exp && j < ck.nk; j++)
		free(ck.exp[j]);
	free(ck.exp);
	free(ck.omask);
	free(ck.imask);
	sm_map_free(m);
	return rc;
}


static void usage(void)
{
	fprintf(stderr,
		"usage: ledger load  --catalog C --range LO..HI --in N --out M [--items K] [--first F] [--file F]\n"
		"       ledger write --router C --keys A..B --seconds S --procs P --file PREFIX\n"
		"                    [--catalog C] [--stop-file F] [--pause-ms N] [--seed N]\n"
		"       ledger check --catalog C --file PREFIX --procs P --keys A..B [--base F]...\n"
		"       ledger count --catalog C --range LO..HI\n");
}

int main(int argc, char **argv)
{
	struct opts o;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || opts_parse(argc - 2, argv + 2, &o) < 0) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "load"))
		return cmd_load(&o);
	if (!strcmp(argv[1], "write"))
		return cmd_write(&o);
	if (!strcmp(argv[1], "check"))
		return cmd_check(&o);
	if (!strcmp(argv[1], "count"))
		return cmd_count(&o);
	usage();
	return 2;
}
