/*
 * session.c - session state carried across pooled server connections
 * (see router/session.h).
 */
#include "router/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/client.h"
#include "router/pgwire.h"
#include "router/server.h"
#include "shardmap/hash.h"

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int kv_index(const struct kv *arr, int n, const char *name, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strncasecmp(arr[i].name, name, len) == 0 && arr[i].name[len] == '\0')
			return i;
	return -1;
}

int kv_set(struct kv **arr, int *n, int *cap, const char *name, size_t name_len,
	   const char *value, size_t value_len)
{
	char *v = NULL;
	if (value && !(v = dupn(value, value_len)))
		return SR_ENOMEM;
	int i = kv_index(*arr, *n, name, name_len);
	if (i >= 0) {
		free((*arr)[i].value);
		(*arr)[i].value = v;
		return 0;
	}
	if (*n == *cap) {
		int nc = *cap ? *cap * 2 : 4;
		struct kv *na = realloc(*arr, (size_t)nc * sizeof(*na));
		if (!na) {
			free(v);
			return SR_ENOMEM;
		}
		*arr = na;
		*cap = nc;
	}
	char *nm = dupn(name, name_len);
	if (!nm) {
		free(v);
		return SR_ENOMEM;
	}
	for (char *q = nm; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	(*arr)[*n].name = nm;
	(*arr)[*n].value = v;
	(*n)++;
	return 0;
}

const struct kv *kv_find(const struct kv *arr, int n, const char *name)
{
	int i = kv_index(arr, n, name, strlen(name));
	return i >= 0 ? &arr[i] : NULL;
}

void kv_remove(struct kv *arr, int *n, const char *name)
{
	int i = kv_index(arr, *n, name, strlen(name));
	if (i < 0)
		return;
	free(arr[i].name);
	free(arr[i].value);
	arr[i] = arr[*n - 1];
	(*n)--;
}

void kv_free_all(struct kv *arr, int n)
{
	for (int i = 0; i < n; i++) {
		free(arr[i].name);
		free(arr[i].value);
	}
	free(arr);
}

int session_set_startup_param(struct client *c, const char *name, const char *value)
{
	size_t vl = strlen(value);
	char *q = malloc(2 * vl + 3);
	if (!q)
		return SR_ENOMEM;
	int rc = pw_quote_literal(value, q, 2 * vl + 3);
	if (!rc)
		rc = kv_set(&c->startup, &c->n_startup, &c->cap_startup, name, strlen(name), value, vl);
	if (!rc)
		rc = kv_set(&c->sparams, &c->n_sparams, &c->cap_sparams, name, strlen(name), q,
			    strlen(q));
	free(q);
	return rc;
}

const char *session_startup_value(const struct client *c, const char *name)
{
	const struct kv *e = kv_find(c->startup, c->n_startup, name);
	return e ? e->value : NULL;
}

int session_note_set(struct client *c, const char *name, size_t name_len, const char *value,
		     size_t value_len)
{
	/* Pending entries are kept in order; a later one for the same name wins. */
	return kv_set(&c->pending_sets, &c->n_pending, &c->cap_pending, name, name_len, value,
		      value_len);
}

static void reset_all(struct client *c)
{
	kv_free_all(c->sparams, c->n_sparams);
	c->sparams = NULL;
	c->n_sparams = c->cap_sparams = 0;
	for (int i = 0; i < c->n_startup; i++)
		if (session_set_startup_param(c, c->startup[i].name, c->startup[i].value))
			break;
}

void session_commit_pending(struct client *c)
{
	for (int i = 0; i < c->n_pending; i++) {
		struct kv *e = &c->pending_sets[i];
		if (strcmp(e->name, "all") == 0 && !e->value) {
			reset_all(c);
			continue;
		}
		if (e->value) {
			if (kv_set(&c->sparams, &c->n_sparams, &c->cap_sparams, e->name,
				   strlen(e->name), e->value, strlen(e->value)))
				continue;
		} else {
			kv_remove(c->sparams, &c->n_sparams, e->name);
		}
		/* The attached server now carries this value too. */
		if (c->server) {
			if (e->value) {
				if (server_set_param(c->server, e->name, e->value))
					c->server->broken = true;
			} else
				server_clear_param(c->server, e->name);
		}
	}
	session_drop_pending(c);
}

void session_drop_pending(struct client *c)
{
	kv_free_all(c->pending_sets, c->n_pending);
	c->pending_sets = NULL;
	c->n_pending = c->cap_pending = 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t l = strlen(s);
	if (*len + l + 1 > *cap) {
		size_t nc = (*cap ? *cap * 2 : 256) + l;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return SR_ENOMEM;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, s, l + 1);
	*len += l;
	return 0;
}

/* Quote a parameter name as an identifier. */
static void quote_ident(const char *name, char *out, size_t out_len)
{
	size_t o = 0;
	out[o++] = '"';
	for (const char *p = name; *p && o + 3 < out_len; p++) {
		if (*p == '"')
			out[o++] = '"';
		out[o++] = *p;
	}
	out[o++] = '"';
	out[o] = '\0';
}

int session_sync_sql(struct client *c, struct server *s, char **sql)
{
	*sql = NULL;
	if (c->n_sparams == 0 && s->n_params == 0)
		return 0; /* the common case: nothing to replay, no allocation */
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = append(&buf, &len, &cap, "");
	char id[160];
	for (int i = 0; !rc && i < c->n_sparams; i++) {
		const struct kv *e = &c->sparams[i];
		const char *have = server_param(s, e->name);
		if (have && strcmp(have, e->value) == 0)
			continue;
		/* Dotted names (custom GUCs) are written unquoted part by part. */
		if (strchr(e->name, '.'))
			snprintf(id, sizeof(id), "%s", e->name);
		else
			quote_ident(e->name, id, sizeof(id));
		rc = append(&buf, &len, &cap, "SET ");
		rc = rc ? rc : append(&buf, &len, &cap, id);
		rc = rc ? rc : append(&buf, &len, &cap, " = ");
		rc = rc ? rc : append(&buf, &len, &cap, e->value);
		rc = rc ? rc : append(&buf, &len, &cap, ";");
		rc = rc ? rc : server_set_param(s, e->name, e->value);
	}
	for (int i = 0; !rc && i < s->n_params;) {
		const struct kv *e = &s->params[i];
		if (kv_find(c->sparams, c->n_sparams, e->name)) {
			i++;
			continue;
		}
		if (strchr(e->name, '.'))
			snprintf(id, sizeof(id), "%s", e->name);
		else
			quote_ident(e->name, id, sizeof(id));
		rc = append(&buf, &len, &cap, "RESET ");
		rc = rc ? rc : append(&buf, &len, &cap, id);
		rc = rc ? rc : append(&buf, &len, &cap, ";");
		server_clear_param(s, e->name); /* moves the last entry to i */
	}
	if (rc) {
		free(buf);
		return rc;
	}
	*sql = buf;
	return 0;
}

struct pstmt *session_find_stmt(struct client *c, const char *name)
{
	for (int i = 0; i < c->n_stmts; i++)
		if (strcmp(c->stmts[i]->name, name) == 0)
			return c->stmts[i];
	return NULL;
}

static void pstmt_destroy(struct pstmt *p)
{
	free(p->name);
	free(p->sql);
	free(p->types);
	if (p->kx_gen)
		kx_result_destroy(&p->kx);
	memset(p, 0, sizeof(*p));
}

int session_add_stmt(struct client *c, const char *name, const char *sql, size_t sql_len,
		     const uint8_t *types_be, uint16_t n_types, struct pstmt **out)
{
	/* Fingerprint: text and parameter types; servers compare by it. */
	uint64_t fp = sm_hash_bytes(sql, sql_len) ^
		      (sm_hash_bytes(types_be, 4u * n_types) * 0x9e3779b97f4a7c15ull);
	struct pstmt *old = session_find_stmt(c, name);
	if (old && old->fingerprint == fp && old->sql_len == sql_len &&
	    memcmp(old->sql, sql, sql_len) == 0) {
		*out = old; /* same statement again: keep the cached analysis */
		return 0;
	}
	struct pstmt np;
	memset(&np, 0, sizeof(np));
	np.name = strdup(name);
	np.sql = dupn(sql, sql_len);
	np.types = calloc(n_types ? n_types : 1, sizeof(uint32_t));
	if (!np.name || !np.sql || !np.types) {
		pstmt_destroy(&np);
		return SR_ENOMEM;
	}
	np.sql_len = (uint32_t)sql_len;
	np.n_types = n_types;
	np.fingerprint = fp;
	for (uint16_t i = 0; i < n_types; i++)
		np.types[i] = pw_get_u32(types_be + 4u * i);
	if (old) {
		pstmt_destroy(old);
		*old = np; /* np has no analysis yet: no self-pointers to move */
		*out = old;
		return 0;
	}
	if (c->n_stmts == c->cap_stmts) {
		int nc = c->cap_stmts ? c->cap_stmts * 2 : 4;
		struct pstmt **na = realloc(c->stmts, (size_t)nc * sizeof(*na));
		if (!na) {
			pstmt_destroy(&np);
			return SR_ENOMEM;
		}
		c->stmts = na;
		c->cap_stmts = nc;
	}
	struct pstmt *slot = malloc(sizeof(*slot));
	if (!slot) {
		pstmt_destroy(&np);
		return SR_ENOMEM;
	}
	*slot = np;
	c->stmts[c->n_stmts++] = slot;
	*out = slot;
	return 0;
}

void session_remove_stmt(struct client *c, const char *name)
{
	for (int i = 0; i < c->n_stmts; i++) {
		if (strcmp(c->stmts[i]->name, name) != 0)
			continue;
		pstmt_destroy(c->stmts[i]);
		free(c->stmts[i]);
		c->stmts[i] = c->stmts[--c->n_stmts];
		return;
	}
}

void session_free_all(struct client *c)
{
	for (int i = 0; i < c->n_stmts; i++) {
		pstmt_destroy(c->stmts[i]);
		free(c->stmts[i]);
	}
	free(c->stmts);
	c->stmts = NULL;
	c->n_stmts = c->cap_stmts = 0;
	kv_free_all(c->startup, c->n_startup);
	kv_free_all(c->sparams, c->n_sparams);
	kv_free_all(c->pending_sets, c->n_pending);
	c->startup = c->sparams = c->pending_sets = NULL;
	c->n_startup = c->n_sparams = c->n_pending = 0;
}

int session_write_parse(struct evbuffer *out, const struct pstmt *p)
{
	return pw_write_parse(out, p->name, p->sql, p->sql_len, p->types, p->n_types);
}
