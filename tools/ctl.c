/*
 * ctl.c - shared shardctl plumbing (see tools/ctl.h): messages and exit
 * codes, argument cursor and --help handling, catalog connection (load the
 * map, apply a change), JSON writer.
 * Single-threaded.
 */
#include "ctl.h"

#include "shardmap/hash.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void vmsg(const char *prefix, const char *fmt, va_list ap) SR_PRINTF(2, 0);

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
	fprintf(stderr, "shardctl: %s", prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int ctl_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
	return CTL_EXIT_USAGE;
}

int ctl_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
	return CTL_EXIT_FAIL;
}

void ctl_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

/* ---- arguments -------------------------------------------------------- */

void ctl_args_init(struct ctl_args *a, int argc, char **argv, const char *cmd)
{
	a->argc = argc;
	a->argv = argv;
	a->i = -1;
	a->no_more = 0;
	a->err = 0;
	a->cmd = cmd;
}

int ctl_args_next(struct ctl_args *a)
{
	if (a->err)
		return 0;
	a->i++;
	if (a->i < a->argc && !a->no_more && strcmp(a->argv[a->i], "--") == 0) {
		a->no_more = 1;
		a->i++;
	}
	return a->i < a->argc;
}

static int is_option(const struct ctl_args *a)
{
	const char *s = a->argv[a->i];
	return !a->no_more && s[0] == '-' && s[1] != '\0' && !(s[1] >= '0' && s[1] <= '9');
}

const char *ctl_args_positional(const struct ctl_args *a)
{
	return is_option(a) ? NULL : a->argv[a->i];
}

int ctl_args_flag(struct ctl_args *a, const char *name)
{
	return is_option(a) && strcmp(a->argv[a->i], name) == 0;
}

int ctl_args_opt(struct ctl_args *a, const char *name, const char **val)
{
	if (!is_option(a))
		return 0;
	const char *s = a->argv[a->i];
	size_t n = strlen(name);
	if (strncmp(s, name, n) != 0)
		return 0;
	if (s[n] == '=') {
		*val = s + n + 1;
		return 1;
	}
	if (s[n] != '\0')
		return 0;
	if (a->i + 1 >= a->argc) {
		a->err = 1;
		ctl_usage("option %s needs a value; see `shardctl %s --help`", name, a->cmd);
		return 1;
	}
	*val = a->argv[++a->i];
	return 1;
}

int ctl_args_common(struct ctl_args *a, struct ctl *ctl)
{
	const char *v;
	if (ctl_args_flag(a, "--json")) {
		ctl->json = 1;
		return 1;
	}
	if (ctl_args_flag(a, "--help") || ctl_args_flag(a, "-h")) {
		ctl->help = 1;
		return 1;
	}
	if (ctl_args_opt(a, "--catalog", &v)) {
		ctl->catalog = v;
		return 1;
	}
	return 0;
}

int ctl_args_unknown(struct ctl_args *a)
{
	a->err = 1;
	if (is_option(a))
		return ctl_usage("unknown option %s for `%s`; see `shardctl %s --help`",
				 a->argv[a->i], a->cmd, a->cmd);
	return ctl_usage("unexpected argument '%s' for `%s`; see `shardctl %s --help`",
			 a->argv[a->i], a->cmd, a->cmd);
}

int ctl_args_none(struct ctl *ctl, int argc, char **argv, const char *cmd, const char *help,
		  int *rc)
{
	struct ctl_args a;
	ctl_args_init(&a, argc, argv, cmd);
	while (ctl_args_next(&a))
		if (!ctl_args_common(&a, ctl)) {
			*rc = ctl_args_unknown(&a);
			return 1;
		}
	*rc = a.err ? CTL_EXIT_USAGE : CTL_EXIT_OK;
	if (!a.err && ctl->help)
		fputs(help, stdout);
	return a.err || ctl->help;
}

int ctl_args_done(const struct ctl *ctl, int rc, const char *help)
{
	if (ctl->help)
		fputs(help, stdout);
	return rc != CTL_EXIT_OK || ctl->help;
}

int ctl_args_over(const struct ctl_args *a, const struct ctl *ctl, int *rc)
{
	*rc = a->err ? CTL_EXIT_USAGE : CTL_EXIT_OK;
	return a->err || ctl->help;
}

int ctl_args_take(const struct ctl_args *a, const char **slot)
{
	const char *p = ctl_args_positional(a);
	if (!p || *slot)
		return 0;
	*slot = p;
	return 1;
}

int ctl_group_run(const struct ctl_group *g, struct ctl *ctl, int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		int ok = argc >= 1 || ctl->help;
		fputs(g->help, ok ? stdout : stderr);
		return ok ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	}
	for (size_t i = 0; i < g->n_subs; i++)
		if (strcmp(argv[0], g->subs[i].name) == 0)
			return g->subs[i].run(ctl, argc - 1, argv + 1);
	return ctl_usage("unknown subcommand '%s %s'; use %s", g->name, argv[0], g->hint);
}

/* ---- connections ------------------------------------------------------ */

PGconn *ctl_connect(const char *conninfo, int timeout_s, struct sr_errmsg *em)
{
	char t[16];
	snprintf(t, sizeof(t), "%d", timeout_s);
	const char *const keys[] = {"dbname", "connect_timeout", "application_name", NULL};
	const char *const vals[] = {conninfo, t, "shardctl", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c && PQstatus(c) == CONNECTION_OK)
		return c;
	char msg[SR_ERRMSG_LEN];
	snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	for (char *p = msg; *p; p++) /* libpq's multi-line messages on one line */
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	sr_errmsg_set(em, SR_EDB, "%s", msg);
	PQfinish(c);
	return NULL;
}

PGconn *ctl_connect_catalog(const struct ctl *ctl, int *exit_code)
{
	if (!ctl->catalog || !*ctl->catalog) {
		*exit_code = ctl_usage("no catalog given; pass --catalog CONNINFO or set "
				       "SHARDROUTER_CATALOG (e.g. 'host=127.0.0.1 port=5501 "
				       "dbname=shardrouter')");
		return NULL;
	}
	struct sr_errmsg em;
	PGconn *c = ctl_connect(ctl->catalog, 10, &em);
	if (!c) {
		char disp[512];
		ctl_conninfo_display(ctl->catalog, disp, sizeof(disp));
		*exit_code = ctl_fail("cannot connect to the catalog (%s): %s; check that the "
				      "server is up and the conninfo is right",
				      disp, em.text);
	}
	return c;
}

int ctl_report(int err, const struct sr_errmsg *em, const char *hint)
{
	const char *text = em && em->text[0] ? em->text : sr_err_name(err);
	if (hint && *hint)
		return ctl_fail("%s; %s", text, hint);
	return ctl_fail("%s", text);
}

int ctl_load_map(const struct ctl *ctl, const char *hint, PGconn **keep, struct sm_map **out)
{
	int rc;
	PGconn *c = ctl_connect_catalog(ctl, &rc);
	if (!c)
		return rc;
	struct sr_errmsg em = {{0}};
	int err = sm_catalog_load(c, out, &em);
	if (keep && !err)
		*keep = c;
	else
		PQfinish(c);
	if (err)
		return ctl_report(err, &em, hint);
	return CTL_EXIT_OK;
}

int ctl_apply(const struct ctl *ctl, sm_catalog_change_fn *fn, void *ctx, uint64_t *epoch)
{
	int rc;
	PGconn *c = ctl_connect_catalog(ctl, &rc);
	if (!c)
		return rc;
	struct sr_errmsg em = {{0}};
	int err = sm_catalog_apply(c, fn, ctx, epoch, &em);
	PQfinish(c);
	if (err)
		return ctl_report(err, &em, NULL);
	return CTL_EXIT_OK;
}

void ctl_conninfo_display(const char *conninfo, char *out, size_t outsz)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (!opts) {
		PQfreemem(err);
		snprintf(out, outsz, "%s", conninfo);
		return;
	}
	size_t n = 0;
	out[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword && n < outsz; o++) {
		if (!o->val || strcmp(o->keyword, "password") == 0)
			continue;
		int w = snprintf(out + n, outsz - n, "%s%s=%s", n ? " " : "", o->keyword, o->val);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	PQconninfoFree(opts);
}

/* ---- numbers ---------------------------------------------------------- */

long long ctl_parse_uint(const char *s, long long max)
{
	if (!s || !*s)
		return -1;
	long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > max)
			return -1;
	}
	return v;
}

int ctl_parse_hash(const char *s, uint64_t *out)
{
	struct sr_errmsg em;
	return sm_hash_parse(s, out, &em);
}

/* ---- JSON ------------------------------------------------------------- */

static void json_key(struct ctl_json *j, const char *key);

static void json_escaped(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_key(struct ctl_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = 0;
	if (key) {
		json_escaped(j->f, key);
		fputc(':', j->f);
	}
}

static void json_open(struct ctl_json *j, const char *key, char c)
{
	json_key(j, key);
	fputc(c, j->f);
	if (j->depth < 31)
		j->depth++;
	j->first[j->depth] = 1;
}

void json_begin(struct ctl_json *j)
{
	j->f = stdout;
	j->depth = 0;
	j->first[0] = 1;
	json_open(j, NULL, '{');
}

void json_end(struct ctl_json *j)
{
	json_obj_end(j);
	fputc('\n', j->f);
}

void json_obj(struct ctl_json *j, const char *key)
{
	json_open(j, key, '{');
}

void json_obj_end(struct ctl_json *j)
{
	fputc('}', j->f);
	if (j->depth > 0)
		j->depth--;
}

void json_arr(struct ctl_json *j, const char *key)
{
	json_open(j, key, '[');
}

void json_arr_end(struct ctl_json *j)
{
	fputc(']', j->f);
	if (j->depth > 0)
		j->depth--;
}

void json_str(struct ctl_json *j, const char *key, const char *val)
{
	json_key(j, key);
	if (val)
		json_escaped(j->f, val);
	else
		fputs("null", j->f);
}

void json_int(struct ctl_json *j, const char *key, long long val)
{
	json_key(j, key);
	fprintf(j->f, "%lld", val);
}

void json_uint(struct ctl_json *j, const char *key, unsigned long long val)
{
	json_key(j, key);
	fprintf(j->f, "%llu", val);
}

void json_double(struct ctl_json *j, const char *key, double val)
{
	json_key(j, key);
	fprintf(j->f, "%.6g", val);
}

void json_bool(struct ctl_json *j, const char *key, int val)
{
	json_key(j, key);
	fputs(val ? "true" : "false", j->f);
}

void json_null(struct ctl_json *j, const char *key)
{
	json_key(j, key);
	fputs("null", j->f);
}

void json_hex(struct ctl_json *j, const char *key, uint64_t val)
{
	char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, val);
	json_str(j, key, hex);
}

void json_shard_conninfo(struct ctl_json *j, const struct sm_shard *s)
{
	char disp[1024];
	json_int(j, "id", s->id);
	ctl_conninfo_display(s->primary, disp, sizeof(disp));
	json_str(j, "primary", disp);
	json_arr(j, "replicas");
	for (size_t r = 0; r < s->n_replicas; r++) {
		ctl_conninfo_display(s->replicas[r], disp, sizeof(disp));
		json_str(j, NULL, disp);
	}
	json_arr_end(j);
}

void json_table(struct ctl_json *j, const char *key, const struct sm_table *t)
{
	json_obj(j, key);
	json_str(j, "schema", t->schema);
	json_str(j, "table", t->name);
	json_str(j, "key_column", t->key_column);
	json_str(j, "key_type", sm_key_type_name(t->key_type));
	json_obj_end(j);
}
