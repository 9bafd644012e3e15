/*
 * pgwire.c - Postgres v3 message codec (see router/pgwire.h). No I/O.
 */
#include "router/pgwire.h"

#include <string.h>

#include <event2/buffer.h>

void pw_reader_init(struct pw_reader *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->bad = false;
}

static bool need(struct pw_reader *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return false;
	}
	return true;
}

uint32_t pw_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint16_t pw_get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

void pw_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint8_t pw_read_u8(struct pw_reader *r)
{
	if (!need(r, 1))
		return 0;
	return r->p[r->off++];
}

int16_t pw_read_i16(struct pw_reader *r)
{
	if (!need(r, 2))
		return 0;
	uint16_t v = pw_get_u16(r->p + r->off);
	r->off += 2;
	return (int16_t)v;
}

int32_t pw_read_i32(struct pw_reader *r)
{
	if (!need(r, 4))
		return 0;
	uint32_t v = pw_get_u32(r->p + r->off);
	r->off += 4;
	return (int32_t)v;
}

const char *pw_read_cstr(struct pw_reader *r, size_t *len)
{
	if (r->bad)
		goto bad;
	const uint8_t *start = r->p + r->off;
	const uint8_t *nul = memchr(start, 0, r->len - r->off);
	if (!nul) {
		r->bad = true;
		goto bad;
	}
	if (len)
		*len = (size_t)(nul - start);
	r->off += (size_t)(nul - start) + 1;
	return (const char *)start;
bad:
	if (len)
		*len = 0;
	return "";
}

const uint8_t *pw_read_bytes(struct pw_reader *r, size_t n)
{
	if (!need(r, n))
		return NULL;
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

size_t pw_reader_left(const struct pw_reader *r)
{
	return r->bad ? 0 : r->len - r->off;
}

int pw_write_msg(struct evbuffer *out, char type, const void *payload, size_t len)
{
	uint8_t hdr[5];
	hdr[0] = (uint8_t)type;
	pw_put_u32(hdr + 1, (uint32_t)(len + 4));
	if (evbuffer_add(out, hdr, 5) != 0)
		return SR_ENOMEM;
	if (len && evbuffer_add(out, payload, len) != 0)
		return SR_ENOMEM;
	return 0;
}

int pw_write_ready(struct evbuffer *out, char txstatus)
{
	return pw_write_msg(out, PW_BE_READY, &txstatus, 1);
}

int pw_write_command_complete(struct evbuffer *out, const char *tag)
{
	return pw_write_msg(out, PW_BE_COMMAND_COMPLETE, tag, strlen(tag) + 1);
}

int pw_write_param_status(struct evbuffer *out, const char *name, const char *value)
{
	size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
	uint8_t hdr[5];
	hdr[0] = PW_BE_PARAM_STATUS;
	pw_put_u32(hdr + 1, (uint32_t)(4 + nl + vl));
	if (evbuffer_add(out, hdr, 5) || evbuffer_add(out, name, nl) || evbuffer_add(out, value, vl))
		return SR_ENOMEM;
	return 0;
}

int pw_write_key_data(struct evbuffer *out, uint32_t pid, uint32_t secret)
{
	uint8_t p[8];
	pw_put_u32(p, pid);
	pw_put_u32(p + 4, secret);
	return pw_write_msg(out, PW_BE_KEY_DATA, p, 8);
}

int pw_write_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len)
{
	uint8_t hdr[9];
	hdr[0] = PW_BE_AUTH;
	pw_put_u32(hdr + 1, (uint32_t)(8 + len));
	pw_put_u32(hdr + 5, code);
	if (evbuffer_add(out, hdr, 9) != 0)
		return SR_ENOMEM;
	if (len && evbuffer_add(out, data, len) != 0)
		return SR_ENOMEM;
	return 0;
}

static int add_field(struct evbuffer *b, char code, const char *s)
{
	if (!s)
		return 0;
	if (evbuffer_add(b, &code, 1) || evbuffer_add(b, s, strlen(s) + 1))
		return SR_ENOMEM;
	return 0;
}

int pw_write_error(struct evbuffer *out, bool notice, const char *severity, const char *sqlstate,
		   const char *message, const char *detail, const char *hint)
{
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return SR_ENOMEM;
	int rc = add_field(b, 'S', severity);
	rc = rc ? rc : add_field(b, 'V', severity);
	rc = rc ? rc : add_field(b, 'C', sqlstate);
	rc = rc ? rc : add_field(b, 'M', message);
	rc = rc ? rc : add_field(b, 'D', detail);
	rc = rc ? rc : add_field(b, 'H', hint);
	if (!rc && evbuffer_add(b, "", 1) != 0)
		rc = SR_ENOMEM;
	if (!rc) {
		size_t len = evbuffer_get_length(b);
		uint8_t hdr[5];
		hdr[0] = notice ? PW_BE_NOTICE : PW_BE_ERROR;
		pw_put_u32(hdr + 1, (uint32_t)(len + 4));
		if (evbuffer_add(out, hdr, 5) || evbuffer_add_buffer(out, b))
			rc = SR_ENOMEM;
	}
	evbuffer_free(b);
	return rc;
}

int pw_write_query(struct evbuffer *out, const char *sql)
{
	return pw_write_msg(out, PW_FE_QUERY, sql, strlen(sql) + 1);
}

int pw_write_terminate(struct evbuffer *out)
{
	return pw_write_msg(out, PW_FE_TERMINATE, NULL, 0);
}

int pw_write_close_stmt(struct evbuffer *out, const char *name)
{
	size_t nl = strlen(name) + 1;
	uint8_t hdr[6];
	hdr[0] = PW_FE_CLOSE;
	pw_put_u32(hdr + 1, (uint32_t)(4 + 1 + nl));
	hdr[5] = 'S';
	if (evbuffer_add(out, hdr, 6) || evbuffer_add(out, name, nl))
		return SR_ENOMEM;
	return 0;
}

int pw_write_parse(struct evbuffer *out, const char *name, const char *sql, size_t sql_len,
		   const uint32_t *types, uint16_t n_types)
{
	size_t nl = strlen(name) + 1;
	uint8_t hdr[5];
	hdr[0] = PW_FE_PARSE;
	pw_put_u32(hdr + 1, (uint32_t)(4 + nl + sql_len + 1 + 2 + 4u * n_types));
	uint8_t nt[2] = { (uint8_t)(n_types >> 8), (uint8_t)n_types };
	if (evbuffer_add(out, hdr, 5) || evbuffer_add(out, name, nl) ||
	    evbuffer_add(out, sql, sql_len) || evbuffer_add(out, "", 1) || evbuffer_add(out, nt, 2))
		return SR_ENOMEM;
	for (uint16_t i = 0; i < n_types; i++) {
		uint8_t t[4];
		pw_put_u32(t, types[i]);
		if (evbuffer_add(out, t, 4) != 0)
			return SR_ENOMEM;
	}
	return 0;
}

int pw_write_startup(struct evbuffer *out, const char *const *kv)
{
	size_t len = 4 + 4 + 1;
	for (size_t i = 0; kv[i]; i++)
		len += strlen(kv[i]) + 1;
	uint8_t hdr[8];
	pw_put_u32(hdr, (uint32_t)len);
	pw_put_u32(hdr + 4, PW_PROTOCOL_V3);
	if (evbuffer_add(out, hdr, 8) != 0)
		return SR_ENOMEM;
	for (size_t i = 0; kv[i]; i++)
		if (evbuffer_add(out, kv[i], strlen(kv[i]) + 1) != 0)
			return SR_ENOMEM;
	return evbuffer_add(out, "", 1) ? SR_ENOMEM : 0;
}

/* Type byte, length, and the int16 count that opens RowDescription/DataRow. */
static int add_counted_header(struct evbuffer *out, char type, size_t len, size_t n)
{
	uint8_t hdr[7];
	hdr[0] = (uint8_t)type;
	pw_put_u32(hdr + 1, (uint32_t)len);
	hdr[5] = (uint8_t)(n >> 8);
	hdr[6] = (uint8_t)n;
	return evbuffer_add(out, hdr, 7);
}

int pw_write_row_desc(struct evbuffer *out, const char *const *names, size_t n)
{
	size_t len = 4 + 2;
	for (size_t i = 0; i < n; i++)
		len += strlen(names[i]) + 1 + 18;
	if (add_counted_header(out, PW_BE_ROW_DESC, len, n) != 0)
		return SR_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		/* table oid 0, attnum 0, type oid 25 (text), typlen -1, typmod -1, format 0 */
		static const uint8_t col[18] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff,
						 0xff, 0xff, 0xff, 0xff, 0, 0 };
		if (evbuffer_add(out, names[i], strlen(names[i]) + 1) || evbuffer_add(out, col, 18))
			return SR_ENOMEM;
	}
	return 0;
}

int pw_write_data_row(struct evbuffer *out, const char *const *values, size_t n)
{
	size_t len = 4 + 2;
	for (size_t i = 0; i < n; i++)
		len += 4 + (values[i] ? strlen(values[i]) : 0);
	if (add_counted_header(out, PW_BE_DATA_ROW, len, n) != 0)
		return SR_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint8_t l[4];
		size_t vl = values[i] ? strlen(values[i]) : 0;
		pw_put_u32(l, values[i] ? (uint32_t)vl : 0xffffffffu);
		if (evbuffer_add(out, l, 4) || (vl && evbuffer_add(out, values[i], vl)))
			return SR_ENOMEM;
	}
	return 0;
}

int pw_peek(struct evbuffer *buf, size_t max_len, char *type, uint32_t *len)
{
	uint8_t hdr[5];
	size_t have = evbuffer_get_length(buf);
	if (have < 5)
		return 0;
	if (evbuffer_copyout(buf, hdr, 5) != 5)
		return 0;
	uint32_t l = pw_get_u32(hdr + 1);
	if (l < 4)
		return SR_EPROTO;
	if (l - 4 > max_len)
		return SR_ETOOBIG;
	*type = (char)hdr[0];
	*len = l - 4;
	return have >= (size_t)l + 1 ? 1 : 0;
}

int pw_peek_at(struct evbuffer *buf, size_t off, size_t max_len, char *type, uint32_t *len)
{
	if (off == 0)
		return pw_peek(buf, max_len, type, len);
	uint8_t hdr[5];
	size_t have = evbuffer_get_length(buf);
	if (have < off + 5)
		return 0;
	struct evbuffer_ptr ptr;
	if (evbuffer_ptr_set(buf, &ptr, off, EVBUFFER_PTR_SET) != 0 ||
	    evbuffer_copyout_from(buf, &ptr, hdr, 5) != 5)
		return 0;
	uint32_t l = pw_get_u32(hdr + 1);
	if (l < 4)
		return SR_EPROTO;
	if (l - 4 > max_len)
		return SR_ETOOBIG;
	*type = (char)hdr[0];
	*len = l - 4;
	return have - off >= (size_t)l + 1 ? 1 : 0;
}

void pw_error_fields(const uint8_t *p, size_t len, char sqlstate[6], const char **message,
		     size_t *message_len)
{
	struct pw_reader r;
	pw_reader_init(&r, p, len);
	memcpy(sqlstate, "XX000", 6);
	*message = "";
	*message_len = 0;
	while (pw_reader_left(&r) > 0) {
		uint8_t code = pw_read_u8(&r);
		if (code == 0)
			break;
		size_t l;
		const char *s = pw_read_cstr(&r, &l);
		if (r.bad)
			break;
		if (code == 'C' && l == 5)
			memcpy(sqlstate, s, 6);
		else if (code == 'M') {
			*message = s;
			*message_len = l;
		}
	}
}

int pw_quote_literal(const char *s, char *out, size_t out_len)
{
	size_t o = 0;
	if (out_len < 3)
		return SR_ETOOBIG;
	out[o++] = '\'';
	for (; *s; s++) {
		size_t need = *s == '\'' ? 2 : 1;
		if (o + need + 2 > out_len) /* the character(s), closing quote, NUL */
			return SR_ETOOBIG;
		if (*s == '\'')
			out[o++] = '\'';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = '\0';
	return 0;
}
