/*
 * config_value.c - one setting's value: parsing text into its field of
 * struct config (with a message saying what is wrong), formatting it back in
 * canonical form, freeing it. Part of the config module; see config.h for the
 * syntax of each type and config_value.h for the contract. Any thread.
 */
#include "router/config_value.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void *field_of(const struct config *cfg, const struct config_entry *e)
{
	return (char *)cfg + e->offset;
}

/* ---- text buffer ---- */

void config_text_put(struct config_text *sb, const char *s, size_t n)
{
	if (sb->need < sb->len) {
		size_t room = sb->len - 1 - sb->need;
		memcpy(sb->p + sb->need, s, n < room ? n : room);
	}
	sb->need += n;
	if (sb->len)
		sb->p[sb->need < sb->len ? sb->need : sb->len - 1] = '\0';
}

void config_text_puts(struct config_text *sb, const char *s)
{
	config_text_put(sb, s, strlen(s));
}

void config_text_printf(struct config_text *sb, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		config_text_put(sb, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ---- units ---- */

struct unit {
	const char *name;
	int64_t mult;
};

static const struct unit size_units[] = {
    {"TB", CONFIG_TB}, {"GB", CONFIG_GB}, {"MB", CONFIG_MB}, {"kB", CONFIG_KB}, {"B", 1}, {NULL, 0},
};
static const struct unit time_units[] = {
    {"d", CONFIG_DAY}, {"h", CONFIG_HOUR}, {"min", CONFIG_MIN},
    {"s", CONFIG_SEC}, {"ms", 1},	   {NULL, 0},
};

static void format_units(struct config_text *sb, int64_t v, const struct unit *units)
{
	if (v == 0) {
		config_text_puts(sb, "0");
		return;
	}
	for (const struct unit *u = units; u->name; u++) {
		if (v % u->mult == 0) {
			bool bytes = units == size_units && u->mult == 1;
			config_text_printf(sb, "%" PRId64 "%s", v / u->mult, bytes ? "" : u->name);
			return;
		}
	}
}

static void format_number(struct config_text *sb, const struct config_entry *e, int64_t v)
{
	switch (e->type) {
	case CONFIG_SIZE:
		format_units(sb, v, size_units);
		return;
	case CONFIG_DURATION:
		if (e->bare_unit_ms == 1)
			config_text_printf(sb, "%" PRId64, v);
		else
			format_units(sb, v, time_units);
		return;
	case CONFIG_INT:
	case CONFIG_BOOL:
	case CONFIG_STRING:
	case CONFIG_ENUM:
	case CONFIG_LIST:
	case CONFIG_HOSTPORT:
		config_text_printf(sb, "%" PRId64, v);
		return;
	}
}

/* "(allowed: 8kB..1GB)" */
void config_value_format_bounds(struct config_text *sb, const struct config_entry *e)
{
	config_text_puts(sb, " (allowed: ");
	format_number(sb, e, e->min);
	config_text_puts(sb, "..");
	format_number(sb, e, e->max);
	config_text_puts(sb, ")");
}

/* ---- value parsers: 0 or SR_E*, with what is wrong written to why ---- */

/* Shows a value in a message: quoted, cut at 60 bytes. */
static void sb_quote(struct config_text *sb, const char *v)
{
	size_t n = strlen(v);
	config_text_puts(sb, "\"");
	config_text_put(sb, v, n > 60 ? 60 : n);
	config_text_puts(sb, n > 60 ? "...\"" : "\"");
}

static int parse_bool(const char *v, bool *out, struct config_text *why)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
			*out = !strcasecmp(v, yes[i]);
			return 0;
		}
	}
	sb_quote(why, v);
	config_text_puts(why, " is not a boolean (allowed: on, off, true, false, yes, no, 1, 0)");
	return SR_EINVAL;
}

/* Decimal digits with an optional fraction, then an optional unit word.
 * ip gets the integer part (at most 10^15), frac / scale the fraction. */
static int split_number(const char *v, int64_t *ip, int64_t *frac, int64_t *scale,
			const char **unit)
{
	const char *p = v;
	*ip = 0, *frac = 0, *scale = 1;
	if (!isdigit((unsigned char)*p))
		return SR_EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (*ip > INT64_C(100000000000000))
			return SR_ERANGE;
		*ip = *ip * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++) {
			if (*scale >= INT64_C(1000000000))
				return SR_EINVAL;
			*frac = *frac * 10 + (*p - '0');
			*scale *= 10;
		}
	}
	while (*p == ' ' || *p == '\t')
		p++;
	*unit = p;
	return 0;
}

static const struct unit *find_unit(const struct unit *units, const char *name)
{
	for (const struct unit *u = units; u->name; u++)
		if (!strcasecmp(u->name, name))
			return u;
	return NULL;
}

/* " (allowed units: B, kB, ...)", smallest first. */
static void why_units(struct config_text *why, const struct unit *units)
{
	const struct unit *u = units;
	while (u[1].name)
		u++;
	config_text_puts(why, " (allowed units: ");
	for (; u >= units; u--)
		config_text_printf(why, "%s%s", u[1].name ? ", " : "", u->name);
	config_text_puts(why, ")");
}

/* Size or duration; the result is checked against e's bounds. */
static int parse_quantity(const struct config_entry *e, const char *v, int64_t *out,
			  struct config_text *why)
{
	bool is_size = e->type == CONFIG_SIZE;
	const struct unit *units = is_size ? size_units : time_units;
	int64_t ip, frac, scale, mult = is_size ? 1 : e->bare_unit_ms;
	const char *uname;
	int rc = split_number(v, &ip, &frac, &scale, &uname);
	if (rc == 0 && *uname) {
		const struct unit *u = find_unit(units, uname);
		if (!u) {
			sb_quote(why, v);
			config_text_puts(why, ": unknown unit");
			why_units(why, units);
			return SR_EINVAL;
		}
		mult = u->mult;
	}
	if (rc == SR_EINVAL || (is_size && scale != 1) || (rc == 0 && frac * mult % scale)) {
		sb_quote(why, v);
		config_text_puts(why, is_size
					  ? " is not a size (a whole number, optional unit)"
					  : " is not a duration (a number of whole milliseconds, "
					    "optional unit)");
		why_units(why, units);
		return SR_EINVAL;
	}
	if (rc == 0 && ip > (e->max - frac * mult / scale) / mult)
		rc = SR_ERANGE;
	int64_t val = rc ? 0 : ip * mult + frac * mult / scale;
	if (rc || val < e->min || val > e->max) {
		sb_quote(why, v);
		config_text_puts(why, " is out of range");
		config_value_format_bounds(why, e);
		return SR_ERANGE;
	}
	*out = val;
	return 0;
}

static int parse_int(const struct config_entry *e, const char *v, int *out, struct config_text *why)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (end == v || *end != '\0' || isspace((unsigned char)*v)) {
		sb_quote(why, v);
		config_text_puts(why, " is not an integer");
		config_value_format_bounds(why, e);
		return SR_EINVAL;
	}
	if (errno == ERANGE || n < e->min || n > e->max) {
		sb_quote(why, v);
		config_text_puts(why, " is out of range");
		config_value_format_bounds(why, e);
		return SR_ERANGE;
	}
	*out = (int)n;
	return 0;
}

static int parse_enum(const struct config_entry *e, const char *v, int *out,
		      struct config_text *why)
{
	for (int i = 0; e->enum_values[i]; i++) {
		if (!strcasecmp(v, e->enum_values[i])) {
			*out = i;
			return 0;
		}
	}
	sb_quote(why, v);
	config_text_puts(why, " is not valid (allowed: ");
	for (int i = 0; e->enum_values[i]; i++)
		config_text_printf(why, "%s%s", i ? ", " : "", e->enum_values[i]);
	config_text_puts(why, ")");
	return SR_EINVAL;
}

static void list_clear(struct config_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* [a-z_][a-z0-9_$]* after lower-casing, once or twice joined by '.'. */
static bool is_func_name(char *s)
{
	int parts = 0;
	for (char *p = s; *p;) {
		if (!(isalpha((unsigned char)*p) || *p == '_'))
			return false;
		while (isalnum((unsigned char)*p) || *p == '_' || *p == '$') {
			*p = (char)tolower((unsigned char)*p);
			p++;
		}
		parts++;
		if (*p == '.' && p[1])
			p++;
		else if (*p)
			return false;
	}
	return parts >= 1 && parts <= 2;
}

static int list_add(struct config_list *l, const char *s, size_t n)
{
	char **items = realloc(l->items, (l->count + 1) * sizeof(*items));
	if (!items)
		return SR_ENOMEM;
	l->items = items;
	if (!(items[l->count] = strndup(s, n)))
		return SR_ENOMEM;
	l->count++;
	return 0;
}

static int parse_list(const struct config_entry *e, const char *v, struct config_list *out,
		      struct config_text *why)
{
	struct config_list l = {NULL, 0};
	for (const char *p = v; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		while (n && isspace((unsigned char)*p))
			p++, n--;
		while (n && isspace((unsigned char)p[n - 1]))
			n--;
		if (n && list_add(&l, p, n)) {
			list_clear(&l);
			return SR_ENOMEM;
		}
		if (n && (e->flags & CONFIG_F_FUNCNAME) && !is_func_name(l.items[l.count - 1])) {
			sb_quote(why, l.items[l.count - 1]);
			config_text_puts(why,
					 " is not a function name (allowed: name or schema.name)");
			list_clear(&l);
			return SR_EINVAL;
		}
		p = end ? end + 1 : p + n;
	}
	*out = l;
	return 0;
}

static int parse_hostport(const char *v, struct config_hostport *out, struct config_text *why)
{
	const char *host = v, *colon = strrchr(v, ':');
	size_t hlen = colon ? (size_t)(colon - v) : 0;
	if (!*v) {
		out->host = NULL, out->port = 0;
		return (out->host = strdup("")) ? 0 : SR_ENOMEM;
	}
	if (*v == '[' && colon && colon > v + 1 && colon[-1] == ']')
		host = v + 1, hlen -= 2;
	bool bad = !colon || hlen == 0 || (host == v && memchr(host, ':', hlen));
	for (size_t i = 0; !bad && i < hlen; i++)
		bad = isspace((unsigned char)host[i]) || host[i] == '[' || host[i] == ']';
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (bad || !isdigit((unsigned char)colon[1]) || *end || port < 1 || port > 65535) {
		sb_quote(why, v);
		config_text_puts(why, " is not host:port (allowed: host:port, [ipv6]:port, port "
				      "1..65535, or empty for off)");
		return SR_EINVAL;
	}
	if (!(out->host = strndup(host, hlen)))
		return SR_ENOMEM;
	out->port = (int)port;
	return 0;
}

/* Parse v for e and store it in cfg, replacing (and freeing) the old value. */
int config_value_set(struct config *cfg, const struct config_entry *e, const char *v,
		     struct config_text *why)
{
	void *f = field_of(cfg, e);
	int rc = 0;
	switch (e->type) {
	case CONFIG_BOOL:
		return parse_bool(v, f, why);
	case CONFIG_INT:
		return parse_int(e, v, f, why);
	case CONFIG_SIZE:
	case CONFIG_DURATION:
		return parse_quantity(e, v, f, why);
	case CONFIG_ENUM:
		return parse_enum(e, v, f, why);
	case CONFIG_STRING: {
		char *s = strdup(v);
		if (!s)
			return SR_ENOMEM;
		free(*(char **)f);
		*(char **)f = s;
		return 0;
	}
	case CONFIG_LIST: {
		struct config_list l;
		if ((rc = parse_list(e, v, &l, why)) == 0) {
			list_clear(f);
			*(struct config_list *)f = l;
		}
		return rc;
	}
	case CONFIG_HOSTPORT: {
		struct config_hostport hp;
		if ((rc = parse_hostport(v, &hp, why)) == 0) {
			free(((struct config_hostport *)f)->host);
			*(struct config_hostport *)f = hp;
		}
		return rc;
	}
	}
	return SR_EINVAL;
}

/* ---- formatting ---- */

/* Appends conninfo s with every password replaced by ***: keyword/value
 * "password=..." (quoted or not) and URI "scheme://user:secret@host". */
static void sb_conninfo_masked(struct config_text *sb, const char *s)
{
	const char *p = s;
	if (!strncmp(p, "postgresql://", 13) || !strncmp(p, "postgres://", 11)) {
		const char *auth = strstr(p, "://") + 3;
		size_t alen = strcspn(auth, "/?");
		const char *at = memrchr(auth, '@', alen);
		const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (colon) {
			config_text_put(sb, p, (size_t)(colon - p) + 1);
			config_text_puts(sb, "***");
			p = at;
		}
	}
	while (*p) {
		bool start =
		    p == s || isspace((unsigned char)p[-1]) || p[-1] == '&' || p[-1] == '?';
		const char *q = p + 8;
		if (start && !strncasecmp(p, "password", 8)) {
			while (*q == ' ')
				q++;
		}
		if (!start || strncasecmp(p, "password", 8) || *q != '=') {
			config_text_put(sb, p++, 1);
			continue;
		}
		for (q++; *q == ' '; q++)
			;
		config_text_put(sb, p, (size_t)(q - p));
		config_text_puts(sb, "***");
		if (*q == '\'') {
			for (q++; *q && *q != '\''; q++)
				q += (*q == '\\' && q[1]);
			q += (*q == '\'');
		} else {
			q += strcspn(q, " \t\n&");
		}
		p = q;
	}
}

void config_value_format(struct config_text *sb, const struct config *cfg,
			 const struct config_entry *e, bool mask)
{
	const void *f = field_of(cfg, e);
	switch (e->type) {
	case CONFIG_BOOL:
		config_text_puts(sb, *(const bool *)f ? "on" : "off");
		return;
	case CONFIG_INT:
		config_text_printf(sb, "%d", *(const int *)f);
		return;
	case CONFIG_SIZE:
	case CONFIG_DURATION:
		format_number(sb, e, *(const int64_t *)f);
		return;
	case CONFIG_ENUM:
		config_text_puts(sb, e->enum_values[*(const int *)f]);
		return;
	case CONFIG_STRING:
		if (mask && (e->flags & CONFIG_F_CONNINFO))
			sb_conninfo_masked(sb, *(char *const *)f);
		else
			config_text_puts(sb, *(char *const *)f);
		return;
	case CONFIG_LIST: {
		const struct config_list *l = f;
		for (size_t i = 0; i < l->count; i++) {
			config_text_puts(sb, i ? ", " : "");
			config_text_puts(sb, l->items[i]);
		}
		return;
	}
	case CONFIG_HOSTPORT: {
		const struct config_hostport *hp = f;
		if (hp->port == 0)
			return;
		bool v6 = strchr(hp->host, ':') != NULL;
		config_text_printf(sb, "%s", v6 ? "[" : "");
		config_text_puts(sb, hp->host);
		config_text_printf(sb, "%s:%d", v6 ? "]" : "", hp->port);
		return;
	}
	}
}

void config_value_clear(struct config *cfg, const struct config_entry *e)
{
	void *f = field_of(cfg, e);
	switch (e->type) {
	case CONFIG_STRING:
		free(*(char **)f);
		*(char **)f = NULL;
		return;
	case CONFIG_LIST:
		list_clear(f);
		return;
	case CONFIG_HOSTPORT:
		free(((struct config_hostport *)f)->host);
		((struct config_hostport *)f)->host = NULL;
		return;
	case CONFIG_BOOL:
	case CONFIG_INT:
	case CONFIG_SIZE:
	case CONFIG_DURATION:
	case CONFIG_ENUM:
		return;
	}
}
