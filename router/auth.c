/*
 * auth.c - the auth_file (PgBouncer userlist.txt), md5 authentication, SASL
 * payload framing and the backend login driver. SCRAM itself lives in
 * auth_scram.c. Declared in router/auth.h; see there for the contract.
 *
 * Pure: no globals; no I/O except reading the auth_file in
 * auth_userlist_load(). A loaded list is immutable (share it between
 * threads); an auth_backend belongs to one thread at a time.
 */
#include "router/auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MD5_HEX_LEN 32
#define USERLIST_MAX_FILE (64u * 1024 * 1024)

/* ---- userlist ------------------------------------------------------------ */

struct auth_userlist {
	struct auth_user_entry *storage; /* file order; some slots freed duplicates */
	size_t n_storage;
	struct auth_user_entry **sorted; /* unique users, by strcmp */
	size_t n_sorted;
};

static bool is_md5_secret(const char *s)
{
	if (strlen(s) != 3 + MD5_HEX_LEN || strncmp(s, "md5", 3) != 0)
		return false;
	return strspn(s + 3, "0123456789abcdef") == MD5_HEX_LEN;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Parse one "..." field starting at *pp (which points at the opening quote)
 * into a fresh string; "" inside is a quote. NULL + *err on failure. */
static char *parse_quoted(const char **pp, const char *eol, int *err)
{
	const char *p = *pp + 1;
	size_t n = 0;
	char *out = malloc((size_t)(eol - p) + 1);
	if (!out) {
		*err = SR_ENOMEM;
		return NULL;
	}
	for (;;) {
		if (p >= eol) {
			free(out);
			*err = SR_EINVAL;
			return NULL;
		}
		if (*p == '"' && p + 1 < eol && p[1] == '"') {
			out[n++] = '"';
			p += 2;
		} else if (*p == '"') {
			break;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
	*pp = p + 1;
	return out;
}

static void entry_destroy(struct auth_user_entry *e)
{
	free(e->user);
	if (e->secret) {
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
	}
	OPENSSL_cleanse(e, sizeof(*e));
}

/* Classify the secret; parse SCRAM secrets (plain ones are derived later). */
static int entry_classify(struct auth_user_entry *e, struct sr_errmsg *em)
{
	if (is_md5_secret(e->secret)) {
		e->kind = AUTH_SECRET_MD5;
		return 0;
	}
	if (strncmp(e->secret, "SCRAM-SHA-256$", 14) == 0) {
		e->kind = AUTH_SECRET_SCRAM;
		e->has_scram = true;
		return auth_scram_secret_parse(e->secret, &e->scram, em);
	}
	e->kind = AUTH_SECRET_PLAIN;
	return 0;
}

/* One line [line, eol): blank/comment -> *e untouched and *got = false. */
static int parse_line(const char *line, const char *eol, struct auth_user_entry *e, bool *got,
		      struct sr_errmsg *em)
{
	const char *p = line;
	int err = 0;
	*got = false;
	while (p < eol && is_blank(*p))
		p++;
	if (p == eol || *p == ';' || *p == '#')
		return 0;
	if (*p != '"')
		return sr_errmsg_set(em, SR_EINVAL, "expected a double-quoted user name");
	e->user = parse_quoted(&p, eol, &err);
	if (!e->user)
		return sr_errmsg_set(em, err, "%s",
				     err == SR_ENOMEM ? "out of memory"
						      : "unterminated quoted user name");
	if (!*e->user)
		return sr_errmsg_set(em, SR_EINVAL, "empty user name");
	while (p < eol && is_blank(*p))
		p++;
	if (p == eol || *p != '"')
		return sr_errmsg_set(em, SR_EINVAL,
				     "expected a double-quoted password after "
				     "the user name");
	e->secret = parse_quoted(&p, eol, &err);
	if (!e->secret)
		return sr_errmsg_set(em, err, "%s",
				     err == SR_ENOMEM ? "out of memory"
						      : "unterminated quoted password");
	while (p < eol && is_blank(*p))
		p++;
	if (p != eol)
		return sr_errmsg_set(em, SR_EINVAL, "unexpected text after the password");
	*got = true;
	return entry_classify(e, em);
}

static int cmp_entry_ptr(const void *a, const void *b)
{
	const struct auth_user_entry *x = *(struct auth_user_entry *const *)a;
	const struct auth_user_entry *y = *(struct auth_user_entry *const *)b;
	int c = strcmp(x->user, y->user);
	if (c != 0)
		return c;
	return x < y ? -1 : x > y; /* file order: the array never moves */
}

/* Sort, drop all but the last line of each user, derive SCRAM secrets for
 * plain passwords. */
static int userlist_finish(struct auth_userlist *l, struct sr_errmsg *em)
{
	size_t n = 0;
	if (l->n_storage == 0)
		return 0;
	l->sorted = malloc(l->n_storage * sizeof(*l->sorted));
	if (!l->sorted)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	for (size_t i = 0; i < l->n_storage; i++)
		l->sorted[i] = &l->storage[i];
	qsort(l->sorted, l->n_storage, sizeof(*l->sorted), cmp_entry_ptr);
	for (size_t i = 0; i < l->n_storage; i++) {
		if (i + 1 < l->n_storage && strcmp(l->sorted[i]->user, l->sorted[i + 1]->user) == 0)
			entry_destroy(l->sorted[i]); /* a later line overrides it */
		else
			l->sorted[n++] = l->sorted[i];
	}
	l->n_sorted = n;
	for (size_t i = 0; i < n; i++) {
		struct auth_user_entry *e = l->sorted[i];
		uint8_t salt[16];
		if (e->kind != AUTH_SECRET_PLAIN || !*e->secret)
			continue;
		if (RAND_bytes(salt, sizeof(salt)) != 1)
			return sr_errmsg_set(em, SR_ENOMEM, "OpenSSL RAND_bytes failed");
		int rc = auth_scram_secret_build(e->secret, salt, sizeof(salt),
						 AUTH_SCRAM_DEFAULT_ITERATIONS, &e->scram, em);
		if (rc != 0)
			return rc;
		e->has_scram = true;
	}
	return 0;
}

static int userlist_add_line(struct auth_userlist *l, size_t *cap, const char *line,
			     const char *eol, const char *name, size_t lineno, struct sr_errmsg *em)
{
	struct auth_user_entry e = {0};
	bool got = false;
	struct sr_errmsg sub;
	int rc = parse_line(line, eol, &e, &got, &sub);
	if (rc != 0) {
		entry_destroy(&e);
		return sr_errmsg_set(em, rc, "%s:%zu: %s", name, lineno, sub.text);
	}
	if (!got)
		return 0;
	if (l->n_storage == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct auth_user_entry *s = realloc(l->storage, ncap * sizeof(*s));
		if (!s) {
			entry_destroy(&e);
			return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
		}
		l->storage = s;
		*cap = ncap;
	}
	l->storage[l->n_storage++] = e;
	return 0;
}

int auth_userlist_parse(const char *text, const char *name, struct auth_userlist **out,
			struct sr_errmsg *em)
{
	struct auth_userlist *l = calloc(1, sizeof(*l));
	size_t cap = 0, lineno = 0;
	int rc = 0;
	if (!l)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	for (const char *line = text; *line && rc == 0;) {
		const char *eol = strchr(line, '\n');
		if (!eol)
			eol = line + strlen(line);
		rc = userlist_add_line(l, &cap, line, eol, name, ++lineno, em);
		line = *eol ? eol + 1 : eol;
	}
	if (rc == 0)
		rc = userlist_finish(l, em);
	if (rc != 0) {
		auth_userlist_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int auth_userlist_load(const char *path, struct auth_userlist **out, struct sr_errmsg *em)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return sr_errmsg_set(em, SR_EIO, "cannot open auth_file %s: %s", path,
				     strerror(errno));
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int rc = buf ? 0 : sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	while (rc == 0) {
		if (n + 1 == cap) {
			char *nb = cap >= USERLIST_MAX_FILE ? NULL : realloc(buf, cap * 2);
			if (!nb) {
				rc = sr_errmsg_set(em, SR_ETOOBIG, "auth_file %s too large", path);
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - 1 - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = sr_errmsg_set(em, SR_EIO, "cannot read auth_file %s", path);
	if (rc == 0 && memchr(buf, '\0', n))
		rc = sr_errmsg_set(em, SR_EINVAL, "auth_file %s contains a NUL byte", path);
	fclose(f);
	if (rc == 0) {
		buf[n] = '\0';
		rc = auth_userlist_parse(buf, path, out, em);
	}
	if (buf) {
		OPENSSL_cleanse(buf, n);
		free(buf);
	}
	return rc;
}

static int cmp_find(const void *key, const void *elem)
{
	return strcmp((const char *)key, (*(struct auth_user_entry *const *)elem)->user);
}

const struct auth_user_entry *auth_userlist_find(const struct auth_userlist *list, const char *user)
{
	if (!list || !user || list->n_sorted == 0)
		return NULL;
	struct auth_user_entry **e =
	    bsearch(user, list->sorted, list->n_sorted, sizeof(*list->sorted), cmp_find);
	return e ? *e : NULL;
}

size_t auth_userlist_count(const struct auth_userlist *list)
{
	return list ? list->n_sorted : 0;
}

void auth_userlist_free(struct auth_userlist *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n_sorted; i++)
		entry_destroy(list->sorted[i]);
	if (!list->sorted) /* failed before sorting: storage entries are all live */
		for (size_t i = 0; i < list->n_storage; i++)
			entry_destroy(&list->storage[i]);
	free(list->sorted);
	free(list->storage);
	free(list);
}

/* ---- md5 ------------------------------------------------------------------ */

/* md5hex(a || b) into out (32 hex + NUL). */
static int md5_hex2(const void *a, size_t alen, const void *b, size_t blen,
		    char out[MD5_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
		 EVP_DigestUpdate(ctx, b, blen) && EVP_DigestFinal_ex(ctx, md, &mdlen) &&
		 mdlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return SR_ENOMEM;
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[MD5_HEX_LEN] = '\0';
	return 0;
}

int auth_md5_salt(uint8_t salt[AUTH_MD5_SALT_LEN])
{
	return RAND_bytes(salt, AUTH_MD5_SALT_LEN) == 1 ? 0 : SR_ENOMEM;
}

int auth_md5_response_from_secret(const char *md5_secret, const uint8_t salt[AUTH_MD5_SALT_LEN],
				  char out[AUTH_MD5_RESPONSE_LEN + 1])
{
	if (!is_md5_secret(md5_secret))
		return SR_EINVAL;
	memcpy(out, "md5", 3);
	return md5_hex2(md5_secret + 3, MD5_HEX_LEN, salt, AUTH_MD5_SALT_LEN, out + 3);
}

int auth_md5_response(const char *user, const char *password, const uint8_t salt[AUTH_MD5_SALT_LEN],
		      char out[AUTH_MD5_RESPONSE_LEN + 1])
{
	char secret[3 + MD5_HEX_LEN + 1] = "md5";
	int rc = md5_hex2(password, strlen(password), user, strlen(user), secret + 3);
	if (rc == 0)
		rc = auth_md5_response_from_secret(secret, salt, out);
	OPENSSL_cleanse(secret, sizeof(secret));
	return rc;
}

int auth_md5_verify(const struct auth_user_entry *entry, const char *user,
		    const uint8_t salt[AUTH_MD5_SALT_LEN], const char *client_response,
		    struct sr_errmsg *em)
{
	char expect[AUTH_MD5_RESPONSE_LEN + 1];
	int rc = 0;
	switch (entry->kind) {
	case AUTH_SECRET_SCRAM:
		return sr_errmsg_set(em, SR_EAUTH,
				     "user \"%s\" has a SCRAM secret in auth_file, "
				     "which cannot verify md5 authentication (use auth_type "
				     "scram-sha-256 or store a plain or md5 password)",
				     user);
	case AUTH_SECRET_PLAIN:
		if (!*entry->secret)
			return sr_errmsg_set(em, SR_EAUTH, "user \"%s\" has an empty password",
					     user);
		rc = auth_md5_response(user, entry->secret, salt, expect);
		break;
	case AUTH_SECRET_MD5:
		rc = auth_md5_response_from_secret(entry->secret, salt, expect);
		break;
	}
	if (rc != 0)
		return sr_errmsg_set(em, rc, "OpenSSL MD5 failed");
	if (strlen(client_response) != AUTH_MD5_RESPONSE_LEN ||
	    CRYPTO_memcmp(client_response, expect, AUTH_MD5_RESPONSE_LEN) != 0)
		rc = sr_errmsg_set(em, SR_EAUTH, "password authentication failed for user \"%s\"",
				   user);
	OPENSSL_cleanse(expect, sizeof(expect));
	return rc;
}

/* ---- SASL framing --------------------------------------------------------- */

static const uint8_t sasl_mechanisms[] = "SCRAM-SHA-256\0"; /* + the literal's NUL */

const uint8_t *auth_sasl_mechanism_list(size_t *len)
{
	*len = sizeof(sasl_mechanisms);
	return sasl_mechanisms;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int auth_request_parse(const uint8_t *payload, size_t len, int32_t *code, const uint8_t **data,
		       size_t *data_len, struct sr_errmsg *em)
{
	if (len < 4)
		return sr_errmsg_set(em, SR_EPROTO, "authentication request shorter than 4 bytes");
	*code = (int32_t)get_u32(payload);
	*data = payload + 4;
	*data_len = len - 4;
	return 0;
}

int auth_sasl_initial_parse(const uint8_t *payload, size_t len, const char **mechanism,
			    const uint8_t **data, size_t *data_len, struct sr_errmsg *em)
{
	const uint8_t *nul = memchr(payload, '\0', len);
	if (!nul)
		return sr_errmsg_set(em, SR_EPROTO, "SASLInitialResponse: unterminated mechanism");
	size_t off = (size_t)(nul - payload) + 1;
	if (len - off < 4)
		return sr_errmsg_set(em, SR_EPROTO, "SASLInitialResponse: missing data length");
	int32_t n = (int32_t)get_u32(payload + off);
	off += 4;
	if (n < -1 || (n >= 0 && (size_t)n != len - off))
		return sr_errmsg_set(em, SR_EPROTO,
				     "SASLInitialResponse: data length %d does "
				     "not match the message (%zu bytes left)",
				     n, len - off);
	if (n == -1 && len != off)
		return sr_errmsg_set(em, SR_EPROTO, "SASLInitialResponse: trailing bytes");
	*mechanism = (const char *)payload;
	*data = n >= 0 ? payload + off : NULL;
	*data_len = n >= 0 ? (size_t)n : 0;
	return 0;
}

/* ---- backend login driver -------------------------------------------------- */

struct auth_backend {
	char *user;
	char *password;	  /* may be NULL */
	char *md5_secret; /* may be NULL */
	bool have_keys;
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
	struct auth_scram_client *scram; /* non-NULL once SASL started */
	uint8_t *reply;
	size_t reply_cap;
};

static char *dup_opt(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*oom = true;
	return d;
}

int auth_backend_new(const struct auth_backend_creds *creds, struct auth_backend **out,
		     struct sr_errmsg *em)
{
	bool oom = false;
	if (!creds->user)
		return sr_errmsg_set(em, SR_EINVAL, "backend login needs a user name");
	struct auth_backend *ab = calloc(1, sizeof(*ab));
	if (!ab)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	ab->user = dup_opt(creds->user, &oom);
	ab->password = dup_opt(creds->password, &oom);
	ab->md5_secret = dup_opt(creds->md5_secret, &oom);
	if (oom) {
		auth_backend_free(ab);
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	}
	if (creds->scram_client_key && creds->scram_server_key) {
		ab->have_keys = true;
		memcpy(ab->client_key, creds->scram_client_key, AUTH_SCRAM_KEY_LEN);
		memcpy(ab->server_key, creds->scram_server_key, AUTH_SCRAM_KEY_LEN);
	}
	*out = ab;
	return 0;
}

static void free_secret_str(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void auth_backend_free(struct auth_backend *ab)
{
	if (!ab)
		return;
	free(ab->user);
	free_secret_str(ab->password);
	free_secret_str(ab->md5_secret);
	auth_scram_client_free(ab->scram);
	if (ab->reply) {
		OPENSSL_cleanse(ab->reply, ab->reply_cap);
		free(ab->reply);
	}
	OPENSSL_cleanse(ab, sizeof(*ab));
	free(ab);
}

/* Make the reply buffer hold n bytes; returns it or NULL. */
static uint8_t *reply_reserve(struct auth_backend *ab, size_t n)
{
	if (n > ab->reply_cap) {
		uint8_t *r = malloc(n);
		if (!r)
			return NULL;
		if (ab->reply) {
			OPENSSL_cleanse(ab->reply, ab->reply_cap);
			free(ab->reply);
		}
		ab->reply = r;
		ab->reply_cap = n;
	}
	return ab->reply;
}

/* PasswordMessage payload: text + NUL. */
static int reply_text(struct auth_backend *ab, const char *text, size_t *len, struct sr_errmsg *em)
{
	size_t n = strlen(text) + 1;
	uint8_t *r = reply_reserve(ab, n);
	if (!r)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(r, text, n);
	*len = n;
	return 0;
}

static int backend_md5(struct auth_backend *ab, const uint8_t *data, size_t n, size_t *len,
		       struct sr_errmsg *em)
{
	char resp[AUTH_MD5_RESPONSE_LEN + 1];
	int rc;
	if (n != AUTH_MD5_SALT_LEN)
		return sr_errmsg_set(em, SR_EPROTO, "AuthenticationMD5Password: salt of %zu bytes",
				     n);
	if (ab->password)
		rc = auth_md5_response(ab->user, ab->password, data, resp);
	else if (ab->md5_secret)
		rc = auth_md5_response_from_secret(ab->md5_secret, data, resp);
	else
		return sr_errmsg_set(em, SR_EAUTH,
				     "server asks for md5 authentication, but no "
				     "password or md5 secret is known for user \"%s\"",
				     ab->user);
	if (rc != 0)
		return sr_errmsg_set(em, rc, "cannot compute the md5 response");
	rc = reply_text(ab, resp, len, em);
	OPENSSL_cleanse(resp, sizeof(resp));
	return rc;
}

/* AuthenticationSASL: pick SCRAM-SHA-256, answer SASLInitialResponse. */
static int backend_sasl(struct auth_backend *ab, const uint8_t *data, size_t n, size_t *len,
			struct sr_errmsg *em)
{
	bool found = false;
	const uint8_t *first;
	size_t first_len;
	int rc;
	if (ab->scram)
		return sr_errmsg_set(em, SR_EPROTO, "server restarted SASL authentication");
	for (size_t off = 0; off < n;) {
		const uint8_t *nul = memchr(data + off, '\0', n - off);
		if (!nul)
			return sr_errmsg_set(em, SR_EPROTO,
					     "AuthenticationSASL: unterminated "
					     "mechanism list");
		if (nul == data + off)
			break; /* the empty string ends the list */
		found = found || strcmp((const char *)data + off, AUTH_SCRAM_MECHANISM) == 0;
		off = (size_t)(nul - data) + 1;
	}
	if (!found)
		return sr_errmsg_set(em, SR_EUNSUPPORTED,
				     "server offers no SASL mechanism the "
				     "router supports (needs SCRAM-SHA-256)");
	if (ab->password)
		rc = auth_scram_client_new_password(NULL, ab->password, &ab->scram, em);
	else if (ab->have_keys)
		rc = auth_scram_client_new_keys(NULL, ab->client_key, ab->server_key, &ab->scram,
						em);
	else
		return sr_errmsg_set(em, SR_EAUTH,
				     "server asks for SCRAM authentication, but "
				     "neither a password nor SCRAM keys are known for user "
				     "\"%s\"",
				     ab->user);
	if (rc == 0)
		rc = auth_scram_client_first(ab->scram, &first, &first_len, em);
	if (rc != 0)
		return rc;
	size_t mlen = sizeof(AUTH_SCRAM_MECHANISM); /* with its NUL */
	uint8_t *r = reply_reserve(ab, mlen + 4 + first_len);
	if (!r)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(r, AUTH_SCRAM_MECHANISM, mlen);
	r[mlen] = (uint8_t)(first_len >> 24);
	r[mlen + 1] = (uint8_t)(first_len >> 16);
	r[mlen + 2] = (uint8_t)(first_len >> 8);
	r[mlen + 3] = (uint8_t)first_len;
	memcpy(r + mlen + 4, first, first_len);
	*len = mlen + 4 + first_len;
	return 0;
}

static int backend_sasl_continue(struct auth_backend *ab, const uint8_t *data, size_t n,
				 size_t *len, struct sr_errmsg *em)
{
	const uint8_t *msg;
	size_t mlen;
	if (!ab->scram)
		return sr_errmsg_set(em, SR_EPROTO, "AuthenticationSASLContinue without SASL");
	int rc = auth_scram_client_handle_server_first(ab->scram, data, n, &msg, &mlen, em);
	if (rc != 0)
		return rc;
	uint8_t *r = reply_reserve(ab, mlen);
	if (!r)
		return sr_errmsg_set(em, SR_ENOMEM, "out of memory");
	memcpy(r, msg, mlen);
	*len = mlen;
	return 0;
}

int auth_backend_handle(struct auth_backend *ab, const uint8_t *payload, size_t len,
			const uint8_t **reply, size_t *reply_len, bool *done, struct sr_errmsg *em)
{
	int32_t code = 0;
	const uint8_t *data = NULL;
	size_t n = 0, rlen = 0;
	int rc = auth_request_parse(payload, len, &code, &data, &n, em);
	if (rc != 0)
		return rc;
	switch (code) {
	case AUTH_REQ_OK:
		if (ab->scram && !auth_scram_client_verified(ab->scram))
			return sr_errmsg_set(em, SR_EAUTH,
					     "server sent AuthenticationOk before "
					     "proving it knows the SCRAM secret");
		*reply = NULL;
		*reply_len = 0;
		*done = true;
		return 0;
	case AUTH_REQ_CLEARTEXT:
		if (!ab->password)
			return sr_errmsg_set(em, SR_EAUTH,
					     "server asks for a cleartext password, "
					     "which is not known for user \"%s\"",
					     ab->user);
		rc = reply_text(ab, ab->password, &rlen, em);
		break;
	case AUTH_REQ_MD5:
		rc = backend_md5(ab, data, n, &rlen, em);
		break;
	case AUTH_REQ_SASL:
		rc = backend_sasl(ab, data, n, &rlen, em);
		break;
	case AUTH_REQ_SASL_CONTINUE:
		rc = backend_sasl_continue(ab, data, n, &rlen, em);
		break;
	case AUTH_REQ_SASL_FINAL:
		if (!ab->scram)
			return sr_errmsg_set(em, SR_EPROTO, "AuthenticationSASLFinal without SASL");
		rc = auth_scram_client_handle_server_final(ab->scram, data, n, em);
		if (rc != 0)
			return rc;
		*reply = NULL;
		*reply_len = 0;
		*done = false;
		return 0;
	default:
		if (code == 2 || (code >= 6 && code <= 9))
			return sr_errmsg_set(em, SR_EUNSUPPORTED,
					     "server asks for authentication "
					     "method %d (Kerberos/GSSAPI/SSPI), not supported",
					     (int)code);
		return sr_errmsg_set(em, SR_EPROTO, "unknown authentication request %d", (int)code);
	}
	if (rc != 0)
		return rc;
	*reply = ab->reply;
	*reply_len = rlen;
	*done = false;
	return 0;
}
