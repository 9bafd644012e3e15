/*
 * auth.h - password authentication for the router, without I/O.
 *
 * Two directions, both as pure functions / state machines over message
 * *payloads* (the bytes after the Postgres message type and length); the
 * caller does all socket I/O and framing of the type byte and length:
 *
 *  1. Clients -> router. The auth_file (PgBouncer userlist.txt format) is
 *     loaded by auth_userlist_load(); each entry holds a plain password, an
 *     "md5<32 hex>" hash or a "SCRAM-SHA-256$..." secret. auth_type md5 uses
 *     auth_md5_salt()/auth_md5_verify(); auth_type scram-sha-256 uses the
 *     server-side SCRAM state machine struct auth_scram_server, which on
 *     success also recovers the client's ClientKey so the router can log in
 *     to the backend as that user without knowing the plain password.
 *
 *  2. Router -> backend Postgres. struct auth_backend is fed every
 *     Authentication ('R') payload the server sends and answers with the
 *     payload of the 'p' message to send back (PasswordMessage,
 *     SASLInitialResponse or SASLResponse): trust, cleartext, md5 and
 *     SCRAM-SHA-256 (server signature verified: mutual authentication).
 *     Underneath is the client-side SCRAM machine struct auth_scram_client.
 *
 * Crypto is OpenSSL 3 (EVP digests, HMAC(), PKCS5_PBKDF2_HMAC, RAND_bytes,
 * CRYPTO_memcmp for every secret comparison). Passwords are used as raw bytes:
 * for printable-ASCII passwords that is exactly what SASLprep yields; SASLprep
 * normalisation of non-ASCII passwords is not implemented.
 *
 * Threads: no globals. A loaded userlist is immutable and may be shared by
 * any number of threads; each state machine belongs to one thread at a time.
 * Error codes: SR_EAUTH = credentials wrong (tell the client "password
 * authentication failed"); SR_EPROTO = malformed message from the peer;
 * SR_EUNSUPPORTED = valid but not supported (e.g. channel binding, md5
 * secret asked to do SCRAM); SR_EINVAL = bad file or argument; SR_ENOMEM.
 */
#ifndef SR_ROUTER_AUTH_H
#define SR_ROUTER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AUTH_SCRAM_KEY_LEN 32	   /* SHA-256 output: keys, signatures, proofs */
#define AUTH_SCRAM_MAX_SALT_LEN 64 /* decoded salt bytes accepted */
#define AUTH_SCRAM_DEFAULT_ITERATIONS 4096
#define AUTH_SCRAM_MAX_ITERATIONS 10000000
#define AUTH_SCRAM_MECHANISM "SCRAM-SHA-256"
#define AUTH_MD5_SALT_LEN 4
#define AUTH_MD5_RESPONSE_LEN 35 /* "md5" + 32 hex digits, without the NUL */

/* Authentication request codes: the int32 that opens an 'R' payload. */
enum auth_request {
	AUTH_REQ_OK = 0,
	AUTH_REQ_CLEARTEXT = 3,
	AUTH_REQ_MD5 = 5,
	AUTH_REQ_SASL = 10,
	AUTH_REQ_SASL_CONTINUE = 11,
	AUTH_REQ_SASL_FINAL = 12,
};

/* ---- SCRAM secrets --------------------------------------------------- */

/* A parsed "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>". */
struct auth_scram_secret {
	uint32_t iterations;
	size_t salt_len;
	uint8_t salt[AUTH_SCRAM_MAX_SALT_LEN];
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
};

/* Parse a SCRAM secret string (as stored in pg_authid.rolpassword). */
int auth_scram_secret_parse(const char *text, struct auth_scram_secret *out,
			    struct sr_errmsg *em) SR_MUST_CHECK;

/* Derive a SCRAM secret from a plain password, salt and iteration count
 * (PBKDF2-HMAC-SHA-256; costs `iterations` HMACs - ~1 ms for 4096). */
int auth_scram_secret_build(const char *password, const uint8_t *salt, size_t salt_len,
			    uint32_t iterations, struct auth_scram_secret *out,
			    struct sr_errmsg *em) SR_MUST_CHECK;

/* ---- userlist (auth_file) -------------------------------------------- */

enum auth_secret_kind {
	AUTH_SECRET_PLAIN = 0, /* the password itself (may be "") */
	AUTH_SECRET_MD5,       /* "md5" + md5hex(password || user), lower-case hex */
	AUTH_SECRET_SCRAM,     /* "SCRAM-SHA-256$..." */
};

/* One line of the auth_file. For AUTH_SECRET_PLAIN entries with a non-empty
 * password, `scram` holds a secret derived once at load time (random 16-byte
 * salt, 4096 iterations) so SCRAM logins do no PBKDF2 on the event loop; for
 * AUTH_SECRET_SCRAM it is the parsed secret; for md5 it is unused. */
struct auth_user_entry {
	char *user;
	char *secret; /* the secret exactly as written in the file */
	enum auth_secret_kind kind;
	bool has_scram; /* `scram` is valid */
	struct auth_scram_secret scram;
};

struct auth_userlist;

/* Load a PgBouncer userlist.txt: one `"user" "secret"` per line, both
 * double-quoted with "" standing for a quote inside; blank lines and lines
 * starting with ';' or '#' (after optional whitespace) are ignored; trailing
 * whitespace after the secret is allowed, anything else is an error. A user
 * listed twice: the last line wins (as in PgBouncer). Errors name
 * "path:line". On success *out owns the list (auth_userlist_free). */
int auth_userlist_load(const char *path, struct auth_userlist **out,
		       struct sr_errmsg *em) SR_MUST_CHECK;

/* Same, from a NUL-terminated buffer; `name` is used in error messages. */
int auth_userlist_parse(const char *text, const char *name, struct auth_userlist **out,
			struct sr_errmsg *em) SR_MUST_CHECK;

/* The entry for `user` (exact, case-sensitive match) or NULL. O(log n).
 * Valid until the list is freed. */
const struct auth_user_entry *auth_userlist_find(const struct auth_userlist *list,
						 const char *user);

/* Number of distinct users in the list. */
size_t auth_userlist_count(const struct auth_userlist *list);

void auth_userlist_free(struct auth_userlist *list); /* NULL is a no-op */

/* ---- md5 ------------------------------------------------------------- */

/* Four random bytes for AuthenticationMD5Password. */
int auth_md5_salt(uint8_t salt[AUTH_MD5_SALT_LEN]) SR_MUST_CHECK;

/* "md5" + md5hex(md5hex(password || user) || salt) into out (NUL-terminated):
 * the PasswordMessage a client sends. */
int auth_md5_response(const char *user, const char *password, const uint8_t salt[AUTH_MD5_SALT_LEN],
		      char out[AUTH_MD5_RESPONSE_LEN + 1]) SR_MUST_CHECK;

/* Same from a stored "md5<32 hex>" secret instead of the password. */
int auth_md5_response_from_secret(const char *md5_secret, const uint8_t salt[AUTH_MD5_SALT_LEN],
				  char out[AUTH_MD5_RESPONSE_LEN + 1]) SR_MUST_CHECK;

/* Check a client's PasswordMessage text against entry (plain or md5 secret;
 * SCRAM secrets cannot verify md5 and fail with SR_EAUTH and an explanation).
 * `user` is the startup user name (must be the entry's user). 0 or SR_EAUTH. */
int auth_md5_verify(const struct auth_user_entry *entry, const char *user,
		    const uint8_t salt[AUTH_MD5_SALT_LEN], const char *client_response,
		    struct sr_errmsg *em) SR_MUST_CHECK;

/* ---- SASL payload framing -------------------------------------------- */

/* The mechanism list that follows the int32 10 in AuthenticationSASL:
 * "SCRAM-SHA-256\0\0" (15 bytes; *len set). SCRAM-SHA-256-PLUS is not offered. */
const uint8_t *auth_sasl_mechanism_list(size_t *len);

/* Split an Authentication ('R') payload into its code and the rest. */
int auth_request_parse(const uint8_t *payload, size_t len, int32_t *code, const uint8_t **data,
		       size_t *data_len, struct sr_errmsg *em) SR_MUST_CHECK;

/* Split a SASLInitialResponse ('p') payload: mechanism\0, int32 length (-1 =
 * none), data. *mechanism points into payload (NUL-terminated there). */
int auth_sasl_initial_parse(const uint8_t *payload, size_t len, const char **mechanism,
			    const uint8_t **data, size_t *data_len,
			    struct sr_errmsg *em) SR_MUST_CHECK;

/* ---- SCRAM, server side (router verifies a client) ------------------- */

struct auth_scram_server;

/* Start an exchange for `entry` (plain password or SCRAM secret; md5 secrets
 * cannot do SCRAM -> SR_EUNSUPPORTED; empty plain password -> SR_EAUTH).
 * The entry is copied: the list may be freed/reloaded meanwhile. */
int auth_scram_server_new(const struct auth_user_entry *entry, struct auth_scram_server **out,
			  struct sr_errmsg *em) SR_MUST_CHECK;

/* Same from a bare secret (tests, or callers with their own store). */
int auth_scram_server_new_secret(const struct auth_scram_secret *secret,
				 struct auth_scram_server **out,
				 struct sr_errmsg *em) SR_MUST_CHECK;

void auth_scram_server_free(struct auth_scram_server *st); /* NULL is a no-op; wipes keys */

/* Tests only: replace the random server nonce (printable ASCII except ',').
 * Must be called before handle_initial. */
int auth_scram_server_set_nonce(struct auth_scram_server *st, const char *nonce,
				struct sr_errmsg *em) SR_MUST_CHECK;

/* Handle SASLInitialResponse (see auth_sasl_initial_parse): mechanism must be
 * "SCRAM-SHA-256"; gs2 header "n,," or "y,," ("p=" channel binding and "a="
 * authzid are refused). On success *out, *out_len is server-first-message, the
 * payload of AuthenticationSASLContinue after its int32 11; it is owned by st
 * and valid until the next call on st. */
int auth_scram_server_handle_initial(struct auth_scram_server *st, const char *mechanism,
				     const uint8_t *data, size_t len, const uint8_t **out,
				     size_t *out_len, struct sr_errmsg *em) SR_MUST_CHECK;

/* Handle the SASLResponse payload (client-final-message): checks channel
 * binding echo, nonce continuity and the proof (constant time). On success
 * *out, *out_len is server-final-message ("v=..."), for AuthenticationSASLFinal
 * after its int32 12, then send AuthenticationOk. SR_EAUTH = wrong password. */
int auth_scram_server_handle_final(struct auth_scram_server *st, const uint8_t *data, size_t len,
				   const uint8_t **out, size_t *out_len,
				   struct sr_errmsg *em) SR_MUST_CHECK;

/* After a successful handle_final: the ClientKey recovered from the proof and
 * the ServerKey of the secret used - what auth_scram_client_new_keys() needs
 * to log in to a backend whose secret for this user is the same. */
int auth_scram_server_client_key(const struct auth_scram_server *st,
				 uint8_t out[AUTH_SCRAM_KEY_LEN]) SR_MUST_CHECK;
int auth_scram_server_server_key(const struct auth_scram_server *st,
				 uint8_t out[AUTH_SCRAM_KEY_LEN]) SR_MUST_CHECK;

/* ---- SCRAM, client side (router logs into a backend) ----------------- */

struct auth_scram_client;

/* Plain-password mode. `user` may be NULL or "" (Postgres ignores the SCRAM
 * user name and uses the startup one); it is escaped (=2C, =3D) if given. */
int auth_scram_client_new_password(const char *user, const char *password,
				   struct auth_scram_client **out,
				   struct sr_errmsg *em) SR_MUST_CHECK;

/* Key mode: ClientKey captured from a client's SCRAM login plus the ServerKey
 * of the same secret (both required: the server signature is always checked).
 * Works only if the backend stores the same secret (same salt/iterations). */
int auth_scram_client_new_keys(const char *user, const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
			       const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
			       struct auth_scram_client **out, struct sr_errmsg *em) SR_MUST_CHECK;

void auth_scram_client_free(struct auth_scram_client *st); /* NULL is a no-op; wipes keys */

/* Tests only: replace the random client nonce (printable ASCII except ',').
 * Must be called before auth_scram_client_first. */
int auth_scram_client_set_nonce(struct auth_scram_client *st, const char *nonce,
				struct sr_errmsg *em) SR_MUST_CHECK;

/* client-first-message "n,,n=<user>,r=<nonce>" (the data of the
 * SASLInitialResponse; auth_backend frames it). Owned by st, valid until the
 * next call on st. */
int auth_scram_client_first(struct auth_scram_client *st, const uint8_t **out, size_t *out_len,
			    struct sr_errmsg *em) SR_MUST_CHECK;

/* Handle server-first-message (AuthenticationSASLContinue data): checks the
 * nonce extends ours, salt base64, 1 <= i <= AUTH_SCRAM_MAX_ITERATIONS; then
 * client-final-message with the proof (the SASLResponse payload). In password
 * mode this runs PBKDF2 with the server's iteration count. */
int auth_scram_client_handle_server_first(struct auth_scram_client *st, const uint8_t *data,
					  size_t len, const uint8_t **out, size_t *out_len,
					  struct sr_errmsg *em) SR_MUST_CHECK;

/* Verify server-final-message (AuthenticationSASLFinal data): "v=" must be
 * the expected ServerSignature (else SR_EAUTH: the server does not know the
 * secret); "e=<error>" from the server is SR_EAUTH too. */
int auth_scram_client_handle_server_final(struct auth_scram_client *st, const uint8_t *data,
					  size_t len, struct sr_errmsg *em) SR_MUST_CHECK;

/* True after handle_server_final succeeded. */
bool auth_scram_client_verified(const struct auth_scram_client *st);

/* ---- backend login driver --------------------------------------------- */

/* What the router knows about the backend user. Any NULL member is unknown.
 * The method the server asks for decides which one is needed:
 *   cleartext -> password; md5 -> password or md5_secret;
 *   SCRAM -> password, or scram_client_key + scram_server_key. */
struct auth_backend_creds {
	const char *user; /* required: the startup user name */
	const char *password;
	const char *md5_secret;		 /* "md5<32 hex>" */
	const uint8_t *scram_client_key; /* AUTH_SCRAM_KEY_LEN bytes */
	const uint8_t *scram_server_key; /* AUTH_SCRAM_KEY_LEN bytes */
};

struct auth_backend;

/* Copies creds (strings and keys) into the new state. */
int auth_backend_new(const struct auth_backend_creds *creds, struct auth_backend **out,
		     struct sr_errmsg *em) SR_MUST_CHECK;
void auth_backend_free(struct auth_backend *ab); /* NULL is a no-op; wipes secrets */

/* Feed one Authentication ('R') payload from the server. On success:
 *   *reply != NULL: send a 'p' message whose payload is *reply, *reply_len bytes
 *                   (owned by ab, valid until the next call on ab);
 *   *reply == NULL: nothing to send; if *done the login succeeded
 *                   (AuthenticationOk; wait for ParameterStatus/ReadyForQuery).
 * AuthenticationOk is refused (SR_EAUTH) while a SCRAM exchange has not
 * verified the server's signature. Kerberos/GSS/SSPI -> SR_EUNSUPPORTED;
 * the needed credential missing -> SR_EAUTH with an explanation. */
int auth_backend_handle(struct auth_backend *ab, const uint8_t *payload, size_t len,
			const uint8_t **reply, size_t *reply_len, bool *done,
			struct sr_errmsg *em) SR_MUST_CHECK;

#endif
