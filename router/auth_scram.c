/*
 * auth_scram.c - SCRAM-SHA-256 (RFC 5802 / RFC 7677) without I/O: secrets,
 * the server side (router verifies a client) and the client side (router logs
 * into a backend). Declared in router/auth.h; see there for the contract.
 *
 * Pure: no globals, no I/O; any thread, one state machine per thread at a
 * time. All comparisons of secret-derived bytes use CRYPTO_memcmp, and keys
 * are wiped with OPENSSL_cleanse when a state is freed.
 */
#include "router/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define SCRAM_RAW_NONCE_LEN 18 /* random bytes, base64 -> 24 characters */
#define SCRAM_MAX_NONCE_LEN 1024
#define SCRAM_MAX_MSG_LEN 8192
#define SCRAM_DEFAULT_SALT_LEN 16

/* ---- base64 (strict: padded, no whitespace) ---------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define B64_LEN(n) (4 * (((size_t)(n) + 2) / 3))

/* Writes B64_LEN(n) characters and a NUL. */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64_alphabet, c) : NULL;
	return p ? (int)(p - b64_alphabet) : -1;
}

/* Decode exactly n characters; 0 or -1 (bad character, length, padding or
 * more than cap bytes). */
static int b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	size_t o = 0;
	if (n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad || (v[k] = b64_value(in[i + k])) < 0) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		uint8_t bytes[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
		if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
			return -1; /* non-canonical: bits set under the padding */
		for (int k = 0; k < 3 - pad; k++) {
			if (o >= cap)
				return -1;
			out[o++] = bytes[k];
		}
	}
	*out_len = o;
	return 0;
}

/* ---- crypto primitives ------------------------------------------------ */

static int hmac256(const uint8_t *key, size_t key_len, const void *msg, size_t n,
		   uint8_t out[AUTH_SCRAM_KEY_LEN], struct sr_errmsg *em)
{
	unsigned int olen = 0;
	if (!HMAC(EVP_sha256(), key, (int)key_len, msg, n, out, &olen) ||
	    olen != AUTH_SCRAM_KEY_LEN)
		return sr_errmsg_set(em, SR_ENOMEM, "OpenSSL HMAC-SHA-256 failed");
	return 0;
}

static int sha256(const uint8_t *in, size_t n, uint8_t out[AUTH_SCRAM_KEY_LEN],
		  struct sr_errmsg *em)
{
	unsigned int olen = 0;
	if (!EVP_Digest(in, n, out, &olen, EVP_sha256(), NULL) || olen != AUTH_SCRAM_KEY_LEN)
		return sr_errmsg_set(em, SR_ENOMEM, "OpenSSL SHA-256 failed");
	return 0;
}

/* SaltedPassword -> ClientKey and ServerKey. */
static int keys_from_salted(const uint8_t salted[AUTH_SCRAM_KEY_LEN],
			    uint8_t client_key[AUTH_SCRAM_KEY_LEN],
			    uint8_t server_key[AUTH_SCRAM_KEY_LEN], struct sr_errmsg *em)
{
	int rc = hmac256(salted, AUTH_SCRAM_KEY_LEN, "Client Key", 10, client_key, em);
	if (rc == 0)
		rc = hmac256(salted, AUTH_SCRAM_KEY_LEN, "Server Key", 10, server_key, em);
	return rc;
}

static int salted_password(const char *password, const uint8_t *salt, size_t salt_len,
			   uint32_t iterations, uint8_t out[AUTH_SCRAM_KEY_LEN],
			   struct sr_errmsg *em)
{
	if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
			       (int)iterations, EVP_sha256(), AUTH_SCRAM_KEY_LEN, out))
		return sr_errmsg_set(em, SR_ENOMEM, "OpenSSL PBKDF2 failed");
	return 0;
}

/* A fresh random nonce: 18 random bytes in base64. */
static int random_nonce(char out[SCRAM_MAX_NONCE_LEN + 1], struct sr_errmsg *em)
{
	uint8_t raw[SCRAM_RAW_NONCE_LEN];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return sr_errmsg_set(em, SR_ENOMEM, "OpenSSL RAND_bytes failed");
	b64_encode(raw, sizeof(raw), out);
	return 0;
}

/* RFC 5802: nonce = printable ASCII except ','. */
static bool nonce_valid(const char *s, size_t n)
{
	if (n == 0 || n > SCRAM_MAX_NONCE_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

static int set_nonce(char dst[SCRAM_MAX_NONCE_LEN + 1], const char *nonce, struct sr_errmsg *em)
{
	size_t n = nonce ? strlen(nonce) : 0;
	if (!nonce || !nonce_valid(nonce, n))
		return sr_errmsg_set(em, SR_EINVAL,
				     "SCRAM nonce must be 1..%d printable characters "
				     "other than ','",
				     SCRAM_MAX_NONCE_LEN);
	memcpy(dst, nonce, n + 1);
	return 0;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof,
 * then HMAC(key, AuthMessage). */
static int auth_message_hmac(const uint8_t key[AUTH_SCRAM_KEY_LEN], const char *cfb, const char *sf,
			     const char *cf, size_t cf_len, uint8_t out[AUTH_SCRAM_KEY_LEN],
			     struct sr_errmsg *em)
{
	size_t a = strlen(cfb), b = strlen(sf), n = a + 1 + b + 1 + cf_len;
	char *msg = malloc(n);
	if (!msg)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(msg, cfb, a);
	msg[a] = ',';
	memcpy(msg + a + 1, sf, b);
	msg[a + 1 + b] = ',';
	memcpy(msg + a + b + 2, cf, cf_len);
	int rc = hmac256(key, AUTH_SCRAM_KEY_LEN, msg, n, out, em);
	free(msg);
	return rc;
}

/* ---- attribute parsing ------------------------------------------------ */

/* A cursor over a comma-separated "a=value,b=value" message. */
struct scram_cursor {
	const char *p;
	const char *end;
};

/* Read attribute `name` ("x=value"), stopping at ',' or the end; moves past
 * the ','. `what` names the message in errors. */
static int read_attr(struct scram_cursor *c, char name, const char **val, size_t *len,
		     const char *what, struct sr_errmsg *em)
{
	if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
		return sr_errmsg_set(em, SR_EPROTO,
				     "malformed SCRAM %s: expected attribute "
				     "\"%c=\"",
				     what, name);
	const char *v = c->p + 2;
	const char *comma = memchr(v, ',', (size_t)(c->end - v));
	const char *stop = comma ? comma : c->end;
	*val = v;
	*len = (size_t)(stop - v);
	c->p = comma ? comma + 1 : c->end;
	return 0;
}

/* Message bytes must be non-empty, bounded and free of NUL. */
static int check_message(const uint8_t *data, size_t len, const char *what, struct sr_errmsg *em)
{
	if (!data || len == 0)
		return sr_errmsg_set(em, SR_EPROTO, "empty SCRAM %s", what);
	if (len > SCRAM_MAX_MSG_LEN)
		return sr_errmsg_set(em, SR_ETOOBIG, "SCRAM %s too long (%zu bytes)", what, len);
	if (memchr(data, '\0', len))
		return sr_errmsg_set(em, SR_EPROTO, "SCRAM %s contains a NUL byte", what);
	return 0;
}

static char *strndup_or_null(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* ---- secrets ------------------------------------------------------------ */

static int parse_b64_key(const char *s, size_t n, uint8_t out[AUTH_SCRAM_KEY_LEN], const char *what,
			 struct sr_errmsg *em)
{
	size_t got = 0;
	if (b64_decode(s, n, out, AUTH_SCRAM_KEY_LEN, &got) != 0 || got != AUTH_SCRAM_KEY_LEN)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM secret: %s is not a base64 32-byte key",
				     what);
	return 0;
}

static int parse_iterations(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < 1 || v > AUTH_SCRAM_MAX_ITERATIONS)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int auth_scram_secret_parse(const char *text, struct auth_scram_secret *out, struct sr_errmsg *em)
{
	struct auth_scram_secret s;
	size_t plen = strlen(SCRAM_PREFIX);
	if (strncmp(text, SCRAM_PREFIX, plen) != 0)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM secret must start with \"%s\"",
				     SCRAM_PREFIX);
	const char *it = text + plen;
	const char *colon1 = strchr(it, ':');
	const char *dollar = colon1 ? strchr(colon1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar, ':') : NULL;
	if (!colon2)
		return sr_errmsg_set(em, SR_EINVAL,
				     "SCRAM secret must look like "
				     "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>");
	if (parse_iterations(it, (size_t)(colon1 - it), &s.iterations) != 0)
		return sr_errmsg_set(em, SR_EINVAL,
				     "SCRAM secret: iteration count must be "
				     "1..%d",
				     AUTH_SCRAM_MAX_ITERATIONS);
	if (b64_decode(colon1 + 1, (size_t)(dollar - colon1 - 1), s.salt, sizeof(s.salt),
		       &s.salt_len) != 0 ||
	    s.salt_len == 0)
		return sr_errmsg_set(em, SR_EINVAL,
				     "SCRAM secret: salt is not base64 of 1..%d "
				     "bytes",
				     AUTH_SCRAM_MAX_SALT_LEN);
	int rc =
	    parse_b64_key(dollar + 1, (size_t)(colon2 - dollar - 1), s.stored_key, "StoredKey", em);
	if (rc == 0)
		rc = parse_b64_key(colon2 + 1, strlen(colon2 + 1), s.server_key, "ServerKey", em);
	if (rc == 0)
		*out = s;
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

int auth_scram_secret_build(const char *password, const uint8_t *salt, size_t salt_len,
			    uint32_t iterations, struct auth_scram_secret *out,
			    struct sr_errmsg *em)
{
	struct auth_scram_secret s = {.iterations = iterations, .salt_len = salt_len};
	uint8_t salted[AUTH_SCRAM_KEY_LEN], client_key[AUTH_SCRAM_KEY_LEN];
	if (salt_len == 0 || salt_len > AUTH_SCRAM_MAX_SALT_LEN)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM salt must be 1..%d bytes",
				     AUTH_SCRAM_MAX_SALT_LEN);
	if (iterations < 1 || iterations > AUTH_SCRAM_MAX_ITERATIONS)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM iterations must be 1..%d",
				     AUTH_SCRAM_MAX_ITERATIONS);
	memcpy(s.salt, salt, salt_len);
	int rc = salted_password(password, salt, salt_len, iterations, salted, em);
	if (rc == 0)
		rc = keys_from_salted(salted, client_key, s.server_key, em);
	if (rc == 0)
		rc = sha256(client_key, AUTH_SCRAM_KEY_LEN, s.stored_key, em);
	if (rc == 0)
		*out = s;
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

/* ---- server side -------------------------------------------------------- */

enum scram_server_state {
	SCRAM_SRV_INIT = 0,   /* waiting for client-first */
	SCRAM_SRV_FIRST_SENT, /* waiting for client-final */
	SCRAM_SRV_DONE,	      /* proof verified */
	SCRAM_SRV_FAILED,     /* any error: the exchange is over */
};

struct auth_scram_server {
	enum scram_server_state state;
	struct auth_scram_secret secret;
	char server_nonce[SCRAM_MAX_NONCE_LEN + 1];
	char gs2[4];		 /* "n,," or "y,," as the client sent it */
	char *client_first_bare; /* "n=...,r=..." */
	char *nonce;		 /* client nonce + server nonce */
	char *server_first;	 /* "r=...,s=...,i=..." */
	char *server_final;	 /* "v=..." */
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
};

int auth_scram_server_new_secret(const struct auth_scram_secret *secret,
				 struct auth_scram_server **out, struct sr_errmsg *em)
{
	struct auth_scram_server *st = calloc(1, sizeof(*st));
	if (!st)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	st->secret = *secret;
	int rc = random_nonce(st->server_nonce, em);
	if (rc != 0) {
		auth_scram_server_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

int auth_scram_server_new(const struct auth_user_entry *entry, struct auth_scram_server **out,
			  struct sr_errmsg *em)
{
	switch (entry->kind) {
	case AUTH_SECRET_MD5:
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "user \"%s\" has an md5 secret in "
				     "auth_file, which cannot be used for SCRAM authentication",
				     entry->user);
	case AUTH_SECRET_PLAIN:
	case AUTH_SECRET_SCRAM:
		break;
	}
	if (!entry->has_scram)
		return sr_errmsg_set(em, SR_EAUTH, "user \"%s\" has no usable password",
				     entry->user);
	return auth_scram_server_new_secret(&entry->scram, out, em);
}

void auth_scram_server_free(struct auth_scram_server *st)
{
	if (!st)
		return;
	free(st->client_first_bare);
	free(st->nonce);
	free(st->server_first);
	free(st->server_final);
	OPENSSL_cleanse(st, sizeof(*st));
	free(st);
}

int auth_scram_server_set_nonce(struct auth_scram_server *st, const char *nonce,
				struct sr_errmsg *em)
{
	if (st->state != SCRAM_SRV_INIT)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM server nonce set too late");
	return set_nonce(st->server_nonce, nonce, em);
}

/* gs2-header: cbind-flag "," [authzid] ",". Only "n,," and "y,," pass. */
static int server_parse_gs2(struct auth_scram_server *st, struct scram_cursor *c,
			    struct sr_errmsg *em)
{
	if (c->end - c->p < 3)
		return sr_errmsg_set(em, SR_EPROTO, "malformed SCRAM client-first-message");
	if (c->p[0] == 'p')
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "SCRAM channel binding was requested, "
				     "but SCRAM-SHA-256-PLUS is not offered");
	if ((c->p[0] != 'n' && c->p[0] != 'y') || c->p[1] != ',')
		return sr_errmsg_set(em, SR_EPROTO,
				     "malformed SCRAM client-first-message: "
				     "bad channel binding flag");
	if (c->p[2] != ',')
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "SCRAM authorization identity "
				     "(a=) is not supported");
	memcpy(st->gs2, c->p, 3);
	st->gs2[3] = '\0';
	c->p += 3;
	return 0;
}

/* client-first-bare: ["m=" -> refused] "n=" user "," "r=" nonce ["," ext...]. */
static int server_parse_first_bare(struct auth_scram_server *st, struct scram_cursor *c,
				   struct sr_errmsg *em)
{
	const char *v;
	size_t n;
	if (c->end - c->p >= 2 && c->p[0] == 'm' && c->p[1] == '=')
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "SCRAM mandatory extension (m=) "
				     "is not supported");
	st->client_first_bare = strndup_or_null(c->p, (size_t)(c->end - c->p));
	if (!st->client_first_bare)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	int rc = read_attr(c, 'n', &v, &n, "client-first-message", em); /* user: ignored */
	if (rc == 0)
		rc = read_attr(c, 'r', &v, &n, "client-first-message", em);
	if (rc != 0)
		return rc;
	if (!nonce_valid(v, n))
		return sr_errmsg_set(em, SR_EPROTO,
				     "SCRAM client nonce is empty, too long or "
				     "not printable");
	size_t sn = strlen(st->server_nonce);
	st->nonce = malloc(n + sn + 1);
	if (!st->nonce)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(st->nonce, v, n);
	memcpy(st->nonce + n, st->server_nonce, sn + 1);
	return 0;
}

static int server_build_first(struct auth_scram_server *st, struct sr_errmsg *em)
{
	char salt[B64_LEN(AUTH_SCRAM_MAX_SALT_LEN) + 1];
	b64_encode(st->secret.salt, st->secret.salt_len, salt);
	size_t n = strlen(st->nonce) + strlen(salt) + 32;
	st->server_first = malloc(n);
	if (!st->server_first)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	snprintf(st->server_first, n, "r=%s,s=%s,i=%u", st->nonce, salt,
		 (unsigned)st->secret.iterations);
	return 0;
}

int auth_scram_server_handle_initial(struct auth_scram_server *st, const char *mechanism,
				     const uint8_t *data, size_t len, const uint8_t **out,
				     size_t *out_len, struct sr_errmsg *em)
{
	if (st->state != SCRAM_SRV_INIT)
		return sr_errmsg_set(em, SR_EPROTO, "unexpected SASLInitialResponse");
	st->state = SCRAM_SRV_FAILED;
	if (!mechanism || strcmp(mechanism, AUTH_SCRAM_MECHANISM) != 0)
		return sr_errmsg_set(em, SR_EPROTO,
				     "client selected an invalid SASL "
				     "authentication mechanism");
	int rc = check_message(data, len, "client-first-message", em);
	if (rc != 0)
		return rc;
	struct scram_cursor c = {(const char *)data, (const char *)data + len};
	rc = server_parse_gs2(st, &c, em);
	if (rc == 0)
		rc = server_parse_first_bare(st, &c, em);
	if (rc == 0)
		rc = server_build_first(st, em);
	if (rc != 0)
		return rc;
	st->state = SCRAM_SRV_FIRST_SENT;
	*out = (const uint8_t *)st->server_first;
	*out_len = strlen(st->server_first);
	return 0;
}

/* client-final: "c=" b64(gs2) "," "r=" nonce ["," ext...] "," "p=" proof.
 * Sets *without_proof_len and decodes the proof. */
static int server_parse_final(struct auth_scram_server *st, struct scram_cursor *c,
			      size_t *without_proof_len, uint8_t proof[AUTH_SCRAM_KEY_LEN],
			      struct sr_errmsg *em)
{
	const char *start = c->p, *v;
	size_t n, got = 0;
	uint8_t cbind[16];
	int rc = read_attr(c, 'c', &v, &n, "client-final-message", em);
	if (rc != 0)
		return rc;
	if (b64_decode(v, n, cbind, sizeof(cbind), &got) != 0 || got != 3 ||
	    memcmp(cbind, st->gs2, 3) != 0)
		return sr_errmsg_set(em, SR_EPROTO, "SCRAM channel binding check failed");
	rc = read_attr(c, 'r', &v, &n, "client-final-message", em);
	if (rc != 0)
		return rc;
	if (n != strlen(st->nonce) || memcmp(v, st->nonce, n) != 0)
		return sr_errmsg_set(em, SR_EPROTO,
				     "SCRAM nonce mismatch in "
				     "client-final-message");
	for (;;) { /* extensions, then the proof, which must come last */
		const char *attr = c->p;
		if (c->p >= c->end)
			return sr_errmsg_set(em, SR_EPROTO,
					     "SCRAM client-final-message has no "
					     "proof");
		if (c->end - c->p < 2 || c->p[1] != '=')
			return sr_errmsg_set(em, SR_EPROTO,
					     "malformed SCRAM "
					     "client-final-message attribute");
		rc = read_attr(c, c->p[0], &v, &n, "client-final-message", em);
		if (rc != 0)
			return rc;
		if (attr[0] != 'p')
			continue;
		if (c->p != c->end || v + n != c->end)
			return sr_errmsg_set(em, SR_EPROTO,
					     "SCRAM proof must be the last "
					     "attribute");
		if (b64_decode(v, n, proof, AUTH_SCRAM_KEY_LEN, &got) != 0 ||
		    got != AUTH_SCRAM_KEY_LEN)
			return sr_errmsg_set(em, SR_EPROTO, "malformed SCRAM proof");
		*without_proof_len = (size_t)(attr - 1 - start);
		return 0;
	}
}

/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey? */
static int server_check_proof(struct auth_scram_server *st, const char *cf, size_t cf_len,
			      const uint8_t proof[AUTH_SCRAM_KEY_LEN], struct sr_errmsg *em)
{
	uint8_t sig[AUTH_SCRAM_KEY_LEN], stored[AUTH_SCRAM_KEY_LEN];
	int rc = auth_message_hmac(st->secret.stored_key, st->client_first_bare, st->server_first,
				   cf, cf_len, sig, em);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
		st->client_key[i] = proof[i] ^ sig[i];
	rc = sha256(st->client_key, AUTH_SCRAM_KEY_LEN, stored, em);
	if (rc == 0 && CRYPTO_memcmp(stored, st->secret.stored_key, AUTH_SCRAM_KEY_LEN) != 0)
		rc = sr_errmsg_set(em, SR_EAUTH, "SCRAM proof does not match: wrong password");
	if (rc != 0)
		OPENSSL_cleanse(st->client_key, sizeof(st->client_key));
	OPENSSL_cleanse(sig, sizeof(sig));
	return rc;
}

static int server_build_final(struct auth_scram_server *st, const char *cf, size_t cf_len,
			      struct sr_errmsg *em)
{
	uint8_t sig[AUTH_SCRAM_KEY_LEN];
	int rc = auth_message_hmac(st->secret.server_key, st->client_first_bare, st->server_first,
				   cf, cf_len, sig, em);
	if (rc != 0)
		return rc;
	st->server_final = malloc(2 + B64_LEN(AUTH_SCRAM_KEY_LEN) + 1);
	if (!st->server_final)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(st->server_final, "v=", 2);
	b64_encode(sig, sizeof(sig), st->server_final + 2);
	return 0;
}

int auth_scram_server_handle_final(struct auth_scram_server *st, const uint8_t *data, size_t len,
				   const uint8_t **out, size_t *out_len, struct sr_errmsg *em)
{
	uint8_t proof[AUTH_SCRAM_KEY_LEN];
	size_t cf_len = 0;
	if (st->state != SCRAM_SRV_FIRST_SENT)
		return sr_errmsg_set(em, SR_EPROTO, "unexpected SCRAM client-final-message");
	st->state = SCRAM_SRV_FAILED;
	int rc = check_message(data, len, "client-final-message", em);
	if (rc != 0)
		return rc;
	struct scram_cursor c = {(const char *)data, (const char *)data + len};
	rc = server_parse_final(st, &c, &cf_len, proof, em);
	if (rc == 0)
		rc = server_check_proof(st, (const char *)data, cf_len, proof, em);
	if (rc == 0)
		rc = server_build_final(st, (const char *)data, cf_len, em);
	if (rc != 0)
		return rc;
	st->state = SCRAM_SRV_DONE;
	*out = (const uint8_t *)st->server_final;
	*out_len = strlen(st->server_final);
	return 0;
}

int auth_scram_server_client_key(const struct auth_scram_server *st,
				 uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	if (st->state != SCRAM_SRV_DONE)
		return SR_EINVAL;
	memcpy(out, st->client_key, AUTH_SCRAM_KEY_LEN);
	return 0;
}

int auth_scram_server_server_key(const struct auth_scram_server *st,
				 uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	if (st->state != SCRAM_SRV_DONE)
		return SR_EINVAL;
	memcpy(out, st->secret.server_key, AUTH_SCRAM_KEY_LEN);
	return 0;
}

/* ---- client side -------------------------------------------------------- */

enum scram_client_state {
	SCRAM_CLI_INIT = 0,   /* nothing sent */
	SCRAM_CLI_FIRST_SENT, /* waiting for server-first */
	SCRAM_CLI_FINAL_SENT, /* waiting for server-final */
	SCRAM_CLI_DONE,	      /* server signature verified */
	SCRAM_CLI_FAILED,
};

struct auth_scram_client {
	enum scram_client_state state;
	bool key_mode;
	char *password;	    /* password mode */
	char *user_escaped; /* "" if none */
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
	char nonce[SCRAM_MAX_NONCE_LEN + 1];
	char *client_first; /* "n,,n=...,r=..."; the bare part starts at +3 */
	char *client_final;
	uint8_t server_signature[AUTH_SCRAM_KEY_LEN]; /* expected */
};

/* saslname: ',' -> "=2C", '=' -> "=3D". */
static char *escape_user(const char *user)
{
	size_t n = 0;
	for (const char *p = user; p && *p; p++)
		n += (*p == ',' || *p == '=') ? 3 : 1;
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (const char *p = user; p && *p; p++) {
		if (*p == ',' || *p == '=') {
			memcpy(o, *p == ',' ? "=2C" : "=3D", 3);
			o += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static int client_alloc(const char *user, struct auth_scram_client **out, struct sr_errmsg *em)
{
	struct auth_scram_client *st = calloc(1, sizeof(*st));
	if (!st)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	st->user_escaped = escape_user(user);
	if (!st->user_escaped) {
		free(st);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	int rc = random_nonce(st->nonce, em);
	if (rc != 0) {
		auth_scram_client_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

int auth_scram_client_new_password(const char *user, const char *password,
				   struct auth_scram_client **out, struct sr_errmsg *em)
{
	struct auth_scram_client *st;
	if (!password || !*password)
		return sr_errmsg_set(em, SR_EAUTH, "SCRAM needs a non-empty password");
	int rc = client_alloc(user, &st, em);
	if (rc != 0)
		return rc;
	st->password = strdup(password);
	if (!st->password) {
		auth_scram_client_free(st);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	*out = st;
	return 0;
}

int auth_scram_client_new_keys(const char *user, const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
			       const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
			       struct auth_scram_client **out, struct sr_errmsg *em)
{
	struct auth_scram_client *st;
	if (!client_key || !server_key)
		return sr_errmsg_set(em, SR_EAUTH,
				     "SCRAM key mode needs both ClientKey and "
				     "ServerKey");
	int rc = client_alloc(user, &st, em);
	if (rc != 0)
		return rc;
	st->key_mode = true;
	memcpy(st->client_key, client_key, AUTH_SCRAM_KEY_LEN);
	memcpy(st->server_key, server_key, AUTH_SCRAM_KEY_LEN);
	*out = st;
	return 0;
}

void auth_scram_client_free(struct auth_scram_client *st)
{
	if (!st)
		return;
	if (st->password) {
		OPENSSL_cleanse(st->password, strlen(st->password));
		free(st->password);
	}
	free(st->user_escaped);
	free(st->client_first);
	free(st->client_final);
	OPENSSL_cleanse(st, sizeof(*st));
	free(st);
}

int auth_scram_client_set_nonce(struct auth_scram_client *st, const char *nonce,
				struct sr_errmsg *em)
{
	if (st->state != SCRAM_CLI_INIT)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM client nonce set too late");
	return set_nonce(st->nonce, nonce, em);
}

int auth_scram_client_first(struct auth_scram_client *st, const uint8_t **out, size_t *out_len,
			    struct sr_errmsg *em)
{
	if (st->state != SCRAM_CLI_INIT)
		return sr_errmsg_set(em, SR_EINVAL, "SCRAM client-first-message already sent");
	size_t n = strlen(st->user_escaped) + strlen(st->nonce) + 16;
	st->client_first = malloc(n);
	if (!st->client_first)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	snprintf(st->client_first, n, "n,,n=%s,r=%s", st->user_escaped, st->nonce);
	st->state = SCRAM_CLI_FIRST_SENT;
	*out = (const uint8_t *)st->client_first;
	*out_len = strlen(st->client_first);
	return 0;
}

/* server-first: ["m=" refused] "r=" nonce "," "s=" salt "," "i=" count [,ext]. */
static int client_parse_server_first(struct auth_scram_client *st, struct scram_cursor *c,
				     const char **nonce, size_t *nonce_len, uint8_t *salt,
				     size_t *salt_len, uint32_t *iterations, struct sr_errmsg *em)
{
	const char *v;
	size_t n, mine = strlen(st->nonce);
	if (c->end - c->p >= 2 && c->p[0] == 'm' && c->p[1] == '=')
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "SCRAM mandatory extension (m=) "
				     "is not supported");
	int rc = read_attr(c, 'r', nonce, nonce_len, "server-first-message", em);
	if (rc != 0)
		return rc;
	if (*nonce_len <= mine || memcmp(*nonce, st->nonce, mine) != 0 ||
	    !nonce_valid(*nonce, *nonce_len))
		return sr_errmsg_set(em, SR_EPROTO,
				     "SCRAM server nonce does not extend the "
				     "client nonce");
	rc = read_attr(c, 's', &v, &n, "server-first-message", em);
	if (rc != 0)
		return rc;
	if (b64_decode(v, n, salt, AUTH_SCRAM_MAX_SALT_LEN, salt_len) != 0 || *salt_len == 0)
		return sr_errmsg_set(em, SR_EPROTO, "SCRAM salt is not base64 of 1..%d bytes",
				     AUTH_SCRAM_MAX_SALT_LEN);
	rc = read_attr(c, 'i', &v, &n, "server-first-message", em);
	if (rc != 0)
		return rc;
	if (parse_iterations(v, n, iterations) != 0)
		return sr_errmsg_set(em, SR_EPROTO, "SCRAM iteration count must be 1..%d",
				     AUTH_SCRAM_MAX_ITERATIONS);
	return 0;
}

/* Builds client_final (with proof) and remembers the expected ServerSignature. */
static int client_build_final(struct auth_scram_client *st, const char *server_first,
			      const char *nonce, size_t nonce_len,
			      const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
			      const uint8_t server_key[AUTH_SCRAM_KEY_LEN], struct sr_errmsg *em)
{
	uint8_t stored[AUTH_SCRAM_KEY_LEN], sig[AUTH_SCRAM_KEY_LEN];
	size_t cap = nonce_len + 16 + B64_LEN(AUTH_SCRAM_KEY_LEN);
	st->client_final = malloc(cap);
	if (!st->client_final)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	int len = snprintf(st->client_final, cap, "c=biws,r=%.*s", (int)nonce_len, nonce);
	int rc = sha256(client_key, AUTH_SCRAM_KEY_LEN, stored, em);
	if (rc == 0)
		rc = auth_message_hmac(stored, st->client_first + 3, server_first, st->client_final,
				       (size_t)len, sig, em);
	if (rc == 0)
		rc = auth_message_hmac(server_key, st->client_first + 3, server_first,
				       st->client_final, (size_t)len, st->server_signature, em);
	if (rc == 0) {
		uint8_t proof[AUTH_SCRAM_KEY_LEN];
		for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
			proof[i] = client_key[i] ^ sig[i];
		memcpy(st->client_final + len, ",p=", 3);
		b64_encode(proof, sizeof(proof), st->client_final + len + 3);
	}
	OPENSSL_cleanse(sig, sizeof(sig));
	return rc;
}

int auth_scram_client_handle_server_first(struct auth_scram_client *st, const uint8_t *data,
					  size_t len, const uint8_t **out, size_t *out_len,
					  struct sr_errmsg *em)
{
	const char *nonce;
	size_t nonce_len = 0, salt_len = 0;
	uint8_t salt[AUTH_SCRAM_MAX_SALT_LEN];
	uint8_t salted[AUTH_SCRAM_KEY_LEN], ck[AUTH_SCRAM_KEY_LEN], sk[AUTH_SCRAM_KEY_LEN];
	uint32_t iterations = 0;
	if (st->state != SCRAM_CLI_FIRST_SENT)
		return sr_errmsg_set(em, SR_EPROTO, "unexpected SCRAM server-first-message");
	st->state = SCRAM_CLI_FAILED;
	int rc = check_message(data, len, "server-first-message", em);
	if (rc != 0)
		return rc;
	char *server_first = strndup_or_null((const char *)data, len);
	if (!server_first)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	struct scram_cursor c = {server_first, server_first + len};
	rc =
	    client_parse_server_first(st, &c, &nonce, &nonce_len, salt, &salt_len, &iterations, em);
	if (rc == 0 && !st->key_mode) {
		rc = salted_password(st->password, salt, salt_len, iterations, salted, em);
		if (rc == 0)
			rc = keys_from_salted(salted, ck, sk, em);
	} else if (rc == 0) {
		memcpy(ck, st->client_key, sizeof(ck));
		memcpy(sk, st->server_key, sizeof(sk));
	}
	if (rc == 0)
		rc = client_build_final(st, server_first, nonce, nonce_len, ck, sk, em);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ck, sizeof(ck));
	OPENSSL_cleanse(sk, sizeof(sk));
	free(server_first);
	if (rc != 0)
		return rc;
	st->state = SCRAM_CLI_FINAL_SENT;
	*out = (const uint8_t *)st->client_final;
	*out_len = strlen(st->client_final);
	return 0;
}

int auth_scram_client_handle_server_final(struct auth_scram_client *st, const uint8_t *data,
					  size_t len, struct sr_errmsg *em)
{
	const char *v;
	size_t n, got = 0;
	uint8_t sig[AUTH_SCRAM_KEY_LEN];
	if (st->state != SCRAM_CLI_FINAL_SENT)
		return sr_errmsg_set(em, SR_EPROTO, "unexpected SCRAM server-final-message");
	st->state = SCRAM_CLI_FAILED;
	int rc = check_message(data, len, "server-final-message", em);
	if (rc != 0)
		return rc;
	struct scram_cursor c = {(const char *)data, (const char *)data + len};
	if (len >= 2 && data[0] == 'e' && data[1] == '=')
		return sr_errmsg_set(em, SR_EAUTH, "SCRAM server error: %.*s", (int)(len - 2),
				     (const char *)data + 2);
	rc = read_attr(&c, 'v', &v, &n, "server-final-message", em);
	if (rc != 0)
		return rc;
	if (b64_decode(v, n, sig, sizeof(sig), &got) != 0 || got != AUTH_SCRAM_KEY_LEN)
		return sr_errmsg_set(em, SR_EPROTO, "malformed SCRAM server signature");
	if (CRYPTO_memcmp(sig, st->server_signature, AUTH_SCRAM_KEY_LEN) != 0)
		return sr_errmsg_set(em, SR_EAUTH,
				     "SCRAM server signature is wrong: the server "
				     "does not know the password");
	st->state = SCRAM_CLI_DONE;
	return 0;
}

bool auth_scram_client_verified(const struct auth_scram_client *st)
{
	return st->state == SCRAM_CLI_DONE;
}
