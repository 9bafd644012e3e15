/*
 * pgwire.h - the Postgres v3 wire codec: message type bytes, a bounds-checked
 * reader over one message payload, and writers that append whole messages to
 * an evbuffer. No I/O, no state: any thread.
 *
 * A message on the wire is: type byte, int32 length (counting itself, not the
 * type byte), payload. The startup-phase packets have no type byte.
 */
#ifndef SR_ROUTER_PGWIRE_H
#define SR_ROUTER_PGWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct evbuffer;

/* Frontend (client -> server) message types. */
enum pw_fe_msg {
	PW_FE_BIND = 'B',
	PW_FE_CLOSE = 'C',
	PW_FE_COPY_DATA = 'd',
	PW_FE_COPY_DONE = 'c',
	PW_FE_COPY_FAIL = 'f',
	PW_FE_DESCRIBE = 'D',
	PW_FE_EXECUTE = 'E',
	PW_FE_FLUSH = 'H',
	PW_FE_FUNCTION_CALL = 'F',
	PW_FE_PARSE = 'P',
	PW_FE_PASSWORD = 'p', /* also SASLInitialResponse / SASLResponse */
	PW_FE_QUERY = 'Q',
	PW_FE_SYNC = 'S',
	PW_FE_TERMINATE = 'X',
};

/* Backend (server -> client) message types. */
enum pw_be_msg {
	PW_BE_AUTH = 'R',
	PW_BE_KEY_DATA = 'K',
	PW_BE_BIND_COMPLETE = '2',
	PW_BE_CLOSE_COMPLETE = '3',
	PW_BE_COMMAND_COMPLETE = 'C',
	PW_BE_COPY_DATA = 'd',
	PW_BE_COPY_DONE = 'c',
	PW_BE_COPY_IN = 'G',
	PW_BE_COPY_OUT = 'H',
	PW_BE_COPY_BOTH = 'W',
	PW_BE_DATA_ROW = 'D',
	PW_BE_EMPTY_QUERY = 'I',
	PW_BE_ERROR = 'E',
	PW_BE_FUNCTION_RESULT = 'V',
	PW_BE_NEGOTIATE = 'v',
	PW_BE_NO_DATA = 'n',
	PW_BE_NOTICE = 'N',
	PW_BE_NOTIFICATION = 'A',
	PW_BE_PARAM_DESC = 't',
	PW_BE_PARAM_STATUS = 'S',
	PW_BE_PARSE_COMPLETE = '1',
	PW_BE_PORTAL_SUSPENDED = 's',
	PW_BE_READY = 'Z',
	PW_BE_ROW_DESC = 'T',
};

/* Authentication request codes inside 'R'. */
enum pw_auth_code {
	PW_AUTH_OK = 0,
	PW_AUTH_CLEARTEXT = 3,
	PW_AUTH_MD5 = 5,
	PW_AUTH_SASL = 10,
	PW_AUTH_SASL_CONTINUE = 11,
	PW_AUTH_SASL_FINAL = 12,
};

#define PW_PROTOCOL_V3 196608u    /* 3.0 */
#define PW_CANCEL_CODE 80877102u  /* 1234.5678 */
#define PW_SSL_CODE 80877103u     /* 1234.5679 */
#define PW_GSSENC_CODE 80877104u  /* 1234.5680 */
#define PW_HEADER_LEN 5
#define PW_MIN_STARTUP_LEN 8
#define PW_MAX_STARTUP_LEN 10000

/* A bounds-checked cursor over one payload. Reading past the end sets
 * `bad` and returns zero/empty values; check `bad` once at the end. */
struct pw_reader {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool bad;
};

void pw_reader_init(struct pw_reader *r, const void *p, size_t len);
uint8_t pw_read_u8(struct pw_reader *r);
int16_t pw_read_i16(struct pw_reader *r);
int32_t pw_read_i32(struct pw_reader *r);
/* NUL-terminated string; returns a pointer into the payload and its length
 * (without NUL) in *len (len may be NULL). "" and bad on a missing NUL. */
const char *pw_read_cstr(struct pw_reader *r, size_t *len);
/* n raw bytes; NULL and bad when fewer remain. */
const uint8_t *pw_read_bytes(struct pw_reader *r, size_t n);
size_t pw_reader_left(const struct pw_reader *r);

/* Big-endian helpers over raw bytes. */
uint32_t pw_get_u32(const uint8_t *p);
uint16_t pw_get_u16(const uint8_t *p);
void pw_put_u32(uint8_t *p, uint32_t v);

/*
 * Writers: each appends one complete message to out. They return 0 or
 * SR_ENOMEM. Strings are written with their NUL.
 */
int pw_write_msg(struct evbuffer *out, char type, const void *payload, size_t len) SR_MUST_CHECK;
int pw_write_ready(struct evbuffer *out, char txstatus) SR_MUST_CHECK;
int pw_write_command_complete(struct evbuffer *out, const char *tag) SR_MUST_CHECK;
int pw_write_param_status(struct evbuffer *out, const char *name, const char *value) SR_MUST_CHECK;
int pw_write_key_data(struct evbuffer *out, uint32_t pid, uint32_t secret) SR_MUST_CHECK;
int pw_write_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len) SR_MUST_CHECK;
/* ErrorResponse (or NoticeResponse when notice) with S/V severity, C code,
 * M message and optional D detail / H hint (NULL to omit). */
int pw_write_error(struct evbuffer *out, bool notice, const char *severity, const char *sqlstate,
		   const char *message, const char *detail, const char *hint) SR_MUST_CHECK;
/* Simple Query / Terminate / Sync / Close(statement) from the router. */
int pw_write_query(struct evbuffer *out, const char *sql) SR_MUST_CHECK;
int pw_write_terminate(struct evbuffer *out) SR_MUST_CHECK;
int pw_write_close_stmt(struct evbuffer *out, const char *name) SR_MUST_CHECK;
int pw_write_parse(struct evbuffer *out, const char *name, const char *sql, size_t sql_len,
		   const uint32_t *types, uint16_t n_types) SR_MUST_CHECK;
/* StartupMessage v3 with NULL-terminated name/value pairs. */
int pw_write_startup(struct evbuffer *out, const char *const *kv) SR_MUST_CHECK;

/* RowDescription with all-text columns, and DataRow of strings (NULL = SQL
 * NULL). For the admin console and synthesized results. */
int pw_write_row_desc(struct evbuffer *out, const char *const *names, size_t n) SR_MUST_CHECK;
int pw_write_data_row(struct evbuffer *out, const char *const *values, size_t n) SR_MUST_CHECK;

/*
 * Peek the next framed message in buf: returns 1 and fills *type and *len
 * (payload length) when a complete message is buffered, 0 when more bytes
 * are needed, SR_EPROTO when the length is < 4, SR_ETOOBIG when the payload
 * exceeds max_len (the caller must answer with an error and close).
 */
int pw_peek(struct evbuffer *buf, size_t max_len, char *type, uint32_t *len) SR_MUST_CHECK;
/* The same for the message that starts `off` bytes into buf. */
int pw_peek_at(struct evbuffer *buf, size_t off, size_t max_len, char *type,
	       uint32_t *len) SR_MUST_CHECK;

/* Extract fields of an ErrorResponse/NoticeResponse payload. */
void pw_error_fields(const uint8_t *p, size_t len, char sqlstate[6], const char **message,
		     size_t *message_len);

/* Quote s as a SQL string literal ('...' with '' doubled) into out. */
int pw_quote_literal(const char *s, char *out, size_t out_len) SR_MUST_CHECK;

#endif
