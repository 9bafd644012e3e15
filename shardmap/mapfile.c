/*
 * mapfile.c - the shard-map cache file (format version 1, see shardmap/map.h):
 * serialize to / deserialize from memory, and save / load a file atomically
 * (write path.tmp, fsync, rename, fsync the directory).
 *
 * Strings that could contain spaces or control bytes (conninfo, identifiers)
 * are percent-encoded: '%', '"', '\'', '\\', bytes <= 0x20 and >= 0x7f
 * become %XX. The last line carries XXH3_64bits of every byte before it.
 * Owns no state; any thread (each call works on its own map and buffers).
 */
#include "shardmap/map.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardmap/hash.h"

#define MAPFILE_MAGIC "shardrouter-map"
#define MAPFILE_VERSION 1
#define MAPFILE_MAX_BYTES (256u << 20)
#define MAPFILE_MAX_FIELDS 6

/* ---- serialize ---------------------------------------------------------- */

static bool mapfile_needs_escape(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f || c == '%' || c == '"' || c == '\'' || c == '\\';
}

static void mapfile_put_encoded(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (mapfile_needs_escape(*p))
			fprintf(f, "%%%02X", *p);
		else
			fputc(*p, f);
	}
}

static void mapfile_put_shard(FILE *f, const struct sm_shard *s)
{
	fprintf(f, "shard %" PRId32 " ", s->id);
	mapfile_put_encoded(f, s->primary);
	fputc('\n', f);
	for (size_t r = 0; r < s->n_replicas; r++) {
		fprintf(f, "replica %" PRId32 " ", s->id);
		mapfile_put_encoded(f, s->replicas[r]);
		fputc('\n', f);
	}
}

static void mapfile_put_body(FILE *f, const struct sm_map *m)
{
	fprintf(f, "%s %d\nepoch %" PRIu64 "\n", MAPFILE_MAGIC, MAPFILE_VERSION, m->epoch);
	for (size_t i = 0; i < m->n_shards; i++)
		mapfile_put_shard(f, &m->shards[i]);
	for (size_t i = 0; i < m->n_tables; i++) {
		const struct sm_table *t = &m->tables[i];
		fputs("table ", f);
		mapfile_put_encoded(f, t->schema);
		fputc(' ', f);
		mapfile_put_encoded(f, t->name);
		fputc(' ', f);
		mapfile_put_encoded(f, t->key_column);
		fprintf(f, " %s\n", sm_key_type_name(t->key_type));
	}
	for (size_t i = 0; i < m->n_ranges; i++) {
		const struct sm_range *r = &m->ranges[i];
		fprintf(f, "range %016" PRIx64 " %016" PRIx64 " %" PRId32 " %s", r->lo, r->hi,
			r->shard_id, sm_range_state_name(r->state));
		if (r->read_lsn) {
			char lsn[18];
			sm_lsn_format(r->read_lsn, lsn);
			fprintf(f, " %s", lsn);
		}
		fputc('\n', f);
	}
}

int sm_map_serialize(const struct sm_map *m, char **out, size_t *out_len, struct sr_errmsg *em)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory serializing the map");
	mapfile_put_body(f, m);
	int bad = fflush(f) != 0 || ferror(f);
	if (!bad) {
		char hex[SM_HASH_HEX_LEN + 1];
		sm_hash_format(sm_hash_bytes(buf, len), hex);
		fprintf(f, "checksum %s\n", hex);
	}
	bad |= fclose(f) != 0;
	if (bad || !buf) {
		free(buf);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory serializing the map");
	}
	*out = buf;
	*out_len = len;
	return 0;
}

/* ---- deserialize --------------------------------------------------------- */

struct mapfile_field {
	const char *p;
	size_t n;
};

/* The parse state: the map being built and where we are, for messages. */
struct mapfile_parser {
	struct sm_map *m;
	size_t lineno;
	bool have_epoch;
	size_t ranges_cap;
	struct sr_errmsg *em;
};

static int mapfile_corrupt(struct mapfile_parser *ps, const char *what)
{
	return sr_errmsg_set(ps->em, SR_ECORRUPT, "map cache file line %zu: %s", ps->lineno, what);
}

/* Percent-decode a field into a new string; NULL on a bad escape, a %00 or
 * out of memory (*nomem says which). */
static char *mapfile_decode(struct mapfile_field f, bool *nomem)
{
	char *s = malloc(f.n + 1);
	*nomem = s == NULL;
	if (!s)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < f.n; i++) {
		if (f.p[i] != '%') {
			s[o++] = f.p[i];
			continue;
		}
		int hi = i + 2 < f.n ? sm_hex_digit(f.p[i + 1]) : -1;
		int lo = hi >= 0 ? sm_hex_digit(f.p[i + 2]) : -1;
		if (lo < 0 || (hi | lo) == 0) {
			free(s);
			return NULL;
		}
		s[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	s[o] = '\0';
	return s;
}

static bool mapfile_parse_u64(struct mapfile_field f, uint64_t *out)
{
	uint64_t v = 0;
	if (f.n == 0 || f.n > 20)
		return false;
	for (size_t i = 0; i < f.n; i++) {
		if (f.p[i] < '0' || f.p[i] > '9')
			return false;
		uint64_t d = (uint64_t)(f.p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool mapfile_parse_id(struct mapfile_field f, int32_t *out)
{
	uint64_t v;
	if (!mapfile_parse_u64(f, &v) || v > INT32_MAX)
		return false;
	*out = (int32_t)v;
	return true;
}

static bool mapfile_parse_hex16(struct mapfile_field f, uint64_t *out)
{
	uint64_t v = 0;
	if (f.n != SM_HASH_HEX_LEN)
		return false;
	for (size_t i = 0; i < f.n; i++) {
		int d = sm_hex_digit(f.p[i]);
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

static bool mapfile_field_is(struct mapfile_field f, const char *s)
{
	return f.n == strlen(s) && memcmp(f.p, s, f.n) == 0;
}

static int mapfile_line_epoch(struct mapfile_parser *ps, const struct mapfile_field *fl, int nf)
{
	if (nf != 2 || ps->have_epoch || !mapfile_parse_u64(fl[1], &ps->m->epoch))
		return mapfile_corrupt(ps, ps->have_epoch ? "second epoch line" : "bad epoch line");
	ps->have_epoch = true;
	return 0;
}

static int mapfile_line_shard(struct mapfile_parser *ps, const struct mapfile_field *fl, int nf)
{
	int32_t id;
	bool nomem;
	if (nf != 3 || !mapfile_parse_id(fl[1], &id))
		return mapfile_corrupt(ps, "bad shard line");
	char *primary = mapfile_decode(fl[2], &nomem);
	if (!primary)
		return nomem ? SR_ENOMEM : mapfile_corrupt(ps, "bad percent-encoding");
	struct sr_errmsg inner;
	int rc = sm_map_add_shard(ps->m, id, primary, NULL, 0, &inner);
	free(primary);
	if (rc == SR_ENOMEM)
		return rc;
	return rc ? mapfile_corrupt(ps, inner.text) : 0;
}

static int mapfile_line_replica(struct mapfile_parser *ps, const struct mapfile_field *fl, int nf)
{
	int32_t id;
	bool nomem;
	if (nf != 3 || !mapfile_parse_id(fl[1], &id))
		return mapfile_corrupt(ps, "bad replica line");
	struct sm_shard *s = (struct sm_shard *)sm_map_find_shard(ps->m, id);
	if (!s)
		return mapfile_corrupt(ps, "replica of a shard not listed before it");
	char *conninfo = mapfile_decode(fl[2], &nomem);
	if (!conninfo)
		return nomem ? SR_ENOMEM : mapfile_corrupt(ps, "bad percent-encoding");
	char **grown = realloc(s->replicas, (s->n_replicas + 1) * sizeof(*grown));
	if (!grown) {
		free(conninfo);
		return SR_ENOMEM;
	}
	s->replicas = grown;
	s->replicas[s->n_replicas++] = conninfo;
	return 0;
}

static int mapfile_line_table(struct mapfile_parser *ps, const struct mapfile_field *fl, int nf)
{
	enum sm_key_type t = SM_KEY_TEXT;
	bool nomem = false;
	if (nf != 5)
		return mapfile_corrupt(ps, "bad table line");
	if (mapfile_field_is(fl[4], "bigint"))
		t = SM_KEY_BIGINT;
	else if (mapfile_field_is(fl[4], "uuid"))
		t = SM_KEY_UUID;
	else if (!mapfile_field_is(fl[4], "text"))
		return mapfile_corrupt(ps, "unknown key type");
	char *schema = mapfile_decode(fl[1], &nomem);
	char *name = schema ? mapfile_decode(fl[2], &nomem) : NULL;
	char *key = name ? mapfile_decode(fl[3], &nomem) : NULL;
	int rc = 0;
	struct sr_errmsg inner;
	if (!key)
		rc = nomem ? SR_ENOMEM : mapfile_corrupt(ps, "bad percent-encoding");
	else if ((rc = sm_map_add_table(ps->m, schema, name, key, t, &inner)) != 0)
		rc = rc == SR_ENOMEM ? rc : mapfile_corrupt(ps, inner.text);
	free(schema);
	free(name);
	free(key);
	return rc;
}

static int mapfile_line_range(struct mapfile_parser *ps, const struct mapfile_field *fl, int nf)
{
	struct sm_range r = {0};
	if ((nf != 5 && nf != 6) || !mapfile_parse_hex16(fl[1], &r.lo) ||
	    !mapfile_parse_hex16(fl[2], &r.hi) || !mapfile_parse_id(fl[3], &r.shard_id))
		return mapfile_corrupt(ps, "bad range line");
	if (nf == 6 && (sm_lsn_parse(fl[5].p, fl[5].n, &r.read_lsn) || r.read_lsn == 0))
		return mapfile_corrupt(ps, "bad read LSN on range line");
	if (mapfile_field_is(fl[4], "active"))
		r.state = SM_RANGE_ACTIVE;
	else if (mapfile_field_is(fl[4], "frozen"))
		r.state = SM_RANGE_FROZEN;
	else
		return mapfile_corrupt(ps, "unknown range state");
	struct sm_map *m = ps->m;
	if (m->n_ranges == ps->ranges_cap) {
		size_t cap = ps->ranges_cap ? ps->ranges_cap * 2 : 16;
		struct sm_range *grown = realloc(m->ranges, cap * sizeof(*grown));
		if (!grown)
			return SR_ENOMEM;
		m->ranges = grown;
		ps->ranges_cap = cap;
	}
	m->ranges[m->n_ranges++] = r;
	return 0;
}

static int mapfile_parse_line(struct mapfile_parser *ps, const char *p, size_t n)
{
	struct mapfile_field fl[MAPFILE_MAX_FIELDS];
	int nf = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && p[i] != ' ')
			continue;
		if (nf == MAPFILE_MAX_FIELDS)
			return mapfile_corrupt(ps, "too many fields");
		fl[nf].p = p + start;
		fl[nf++].n = i - start;
		start = i + 1;
	}
	if (mapfile_field_is(fl[0], "epoch"))
		return mapfile_line_epoch(ps, fl, nf);
	if (mapfile_field_is(fl[0], "shard"))
		return mapfile_line_shard(ps, fl, nf);
	if (mapfile_field_is(fl[0], "replica"))
		return mapfile_line_replica(ps, fl, nf);
	if (mapfile_field_is(fl[0], "table"))
		return mapfile_line_table(ps, fl, nf);
	if (mapfile_field_is(fl[0], "range"))
		return mapfile_line_range(ps, fl, nf);
	return mapfile_corrupt(ps, "unknown record");
}

/* Check the header line and the trailing checksum line; on success *body_end
 * is the offset of the checksum line and *body the offset after the header. */
static int mapfile_check_frame(const char *buf, size_t len, size_t *body, size_t *body_end,
			       struct sr_errmsg *em)
{
	const char *nl = memchr(buf, '\n', len);
	size_t mlen = strlen(MAPFILE_MAGIC);
	if (!nl || (size_t)(nl - buf) < mlen + 1 || memcmp(buf, MAPFILE_MAGIC " ", mlen + 1) != 0)
		return sr_errmsg_set(em, SR_ECORRUPT, "not a shardrouter map cache file");
	struct mapfile_field ver = {buf + mlen + 1, (size_t)(nl - buf) - mlen - 1};
	uint64_t v;
	if (!mapfile_parse_u64(ver, &v) || v != MAPFILE_VERSION)
		return sr_errmsg_set(
		    em, SR_ECORRUPT,
		    "unsupported map cache file version \"%.*s\" (this build reads "
		    "version %d); delete the file, the router rewrites it",
		    (int)(ver.n > 20 ? 20 : ver.n), ver.p, MAPFILE_VERSION);
	*body = (size_t)(nl - buf) + 1;
	if (len == 0 || buf[len - 1] != '\n')
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "map cache file is truncated (no final newline)");
	size_t last = len - 1;
	while (last > *body && buf[last - 1] != '\n')
		last--;
	struct mapfile_field ck = {buf + last, len - 1 - last};
	uint64_t want;
	if (ck.n != 9 + SM_HASH_HEX_LEN || memcmp(ck.p, "checksum ", 9) != 0 ||
	    !mapfile_parse_hex16((struct mapfile_field){ck.p + 9, SM_HASH_HEX_LEN}, &want))
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "map cache file is truncated (no checksum line)");
	uint64_t got = sm_hash_bytes(buf, last);
	if (got != want)
		return sr_errmsg_set(em, SR_ECORRUPT,
				     "map cache file checksum mismatch: stored %016" PRIx64
				     ", computed %016" PRIx64,
				     want, got);
	*body_end = last;
	return 0;
}

static int mapfile_parse_body(struct mapfile_parser *ps, const char *buf, size_t at, size_t end)
{
	ps->lineno = 1;
	while (at < end) {
		const char *nl = memchr(buf + at, '\n', end - at);
		size_t n = (size_t)(nl - (buf + at)); /* end is just after a '\n' */
		ps->lineno++;
		int rc = mapfile_parse_line(ps, buf + at, n);
		if (rc != 0)
			return rc;
		at += n + 1;
	}
	if (!ps->have_epoch)
		return sr_errmsg_set(ps->em, SR_ECORRUPT, "map cache file has no epoch line");
	return 0;
}

int sm_map_deserialize(const char *buf, size_t len, struct sm_map **out, struct sr_errmsg *em)
{
	size_t body = 0, body_end = 0;
	if (!buf)
		return sr_errmsg_set(em, SR_EINVAL, "no map cache buffer");
	if (memchr(buf, '\0', len))
		return sr_errmsg_set(em, SR_ECORRUPT, "map cache file contains a NUL byte");
	int rc = mapfile_check_frame(buf, len, &body, &body_end, em);
	if (rc != 0)
		return rc;
	struct mapfile_parser ps = {.m = sm_map_new(), .em = em};
	if (!ps.m)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory loading the map");
	rc = mapfile_parse_body(&ps, buf, body, body_end);
	if (rc == SR_ENOMEM)
		sr_errmsg_set(em, SR_ENOMEM, "out of memory loading the map");
	if (rc == 0) {
		struct sr_errmsg inner;
		rc = sm_map_validate(ps.m, &inner);
		if (rc != 0)
			sr_errmsg_set(em, rc, "map cache file holds an invalid map: %s",
				      inner.text);
	}
	if (rc != 0) {
		sm_map_free(ps.m);
		return rc;
	}
	*out = ps.m;
	return 0;
}

/* ---- files --------------------------------------------------------------- */

static int mapfile_io_error(struct sr_errmsg *em, const char *what, const char *path)
{
	int e = errno;
	return sr_errmsg_set(em, SR_EIO, "%s %s: %s", what, path, strerror(e));
}

static int mapfile_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync the directory holding path, so a rename into it is durable. */
static int mapfile_sync_dir(const char *path, struct sr_errmsg *em)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0 || fsync(fd) != 0)
		rc = mapfile_io_error(em, "cannot fsync directory", dir);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

static int mapfile_write_tmp(const char *tmp, const char *buf, size_t len, struct sr_errmsg *em)
{
	/* 0600: conninfo strings may hold passwords. */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return mapfile_io_error(em, "cannot create", tmp);
	if (mapfile_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		int rc = mapfile_io_error(em, "cannot write", tmp);
		close(fd);
		unlink(tmp);
		return rc;
	}
	if (close(fd) != 0) {
		int rc = mapfile_io_error(em, "cannot close", tmp);
		unlink(tmp);
		return rc;
	}
	return 0;
}

int sm_map_save(const struct sm_map *m, const char *path, struct sr_errmsg *em)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = sm_map_serialize(m, &buf, &len, em);
	if (rc != 0)
		return rc;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	if (!tmp) {
		free(buf);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	rc = mapfile_write_tmp(tmp, buf, len, em);
	free(buf);
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = mapfile_io_error(em, "cannot rename over", path);
		unlink(tmp);
	}
	free(tmp);
	if (rc == 0)
		rc = mapfile_sync_dir(path, em);
	return rc;
}

static int mapfile_read_all(int fd, const char *path, char **out, size_t *out_len,
			    struct sr_errmsg *em)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return mapfile_io_error(em, "cannot stat", path);
	if (st.st_size < 0 || (uint64_t)st.st_size > MAPFILE_MAX_BYTES)
		return sr_errmsg_set(em, SR_ETOOBIG, "map cache file %s is larger than %u bytes",
				     path, MAPFILE_MAX_BYTES);
	size_t cap = (size_t)st.st_size, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory reading %s", path);
	while (len < cap) {
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return mapfile_io_error(em, "cannot read", path);
		}
		if (r == 0)
			break; /* shrank under us: the checksum will tell */
		len += (size_t)r;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

int sm_map_load_file(const char *path, struct sm_map **out, struct sr_errmsg *em)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return sr_errmsg_set(em, SR_ENOTFOUND, "no map cache file at %s", path);
		return mapfile_io_error(em, "cannot open", path);
	}
	char *buf = NULL;
	size_t len = 0;
	int rc = mapfile_read_all(fd, path, &buf, &len, em);
	close(fd);
	if (rc != 0)
		return rc;
	rc = sm_map_deserialize(buf, len, out, em);
	free(buf);
	return rc;
}
