/*
 * config.c - the settings table, INI loading and validation, formatting for
 * SHOW CONFIG and the README, the reload check, refcounting (see config.h).
 *
 * Parsing uses inih (Debian libinih 55) through ini_parse_stream with our own
 * line reader. inih's handler gets no line number (the library is built
 * without INI_HANDLER_LINENO), so the reader counts lines: inih calls the
 * handler for a line before it reads the next one, so the reader's count is
 * the handler's line. The reader also rejects over-long lines (inih would
 * silently split them) and reports unknown sections even when they hold no
 * keys. Debian's inih makes its compile-time options runtime globals; we set
 * them to pgbouncer-like rules: no multi-line values (an indented key would
 * otherwise continue the previous value), no inline comments.
 *
 * config_load: one thread at a time (inih globals). Everything else: any thread.
 */
#include "router/config.h"
#include "router/config_value.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

_Static_assert(sizeof(enum config_auth_type) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum config_pool_mode) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum config_sslmode) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum stored as int");

#define SECTION "router"
#define STR_VALUE(x) #x
#define STR_OF(x) STR_VALUE(x)
#define OFF(field) offsetof(struct config, field)

static const char *const auth_types[] = {"scram-sha-256", "md5", "trust", NULL};
static const char *const pool_modes[] = {"transaction", "session", NULL};
static const char *const sslmodes[] = {"disable", "allow", "prefer", "require", NULL};
/* Index = enum log_level. */
static const char *const log_levels[] = {"error", "warning", "info", "debug", NULL};

#define R .section = SECTION
#define BOOL_(f) .type = CONFIG_BOOL, .offset = OFF(f)
#define INT_(f, lo, hi) .type = CONFIG_INT, .offset = OFF(f), .min = (lo), .max = (hi)
#define SIZE_(f, lo, hi) .type = CONFIG_SIZE, .offset = OFF(f), .min = (lo), .max = (hi)
#define SECS_(f, lo, hi)                                                                           \
	.type = CONFIG_DURATION, .offset = OFF(f), .min = (lo), .max = (hi),                       \
	.bare_unit_ms = CONFIG_SEC
#define MSEC_(f, lo, hi)                                                                           \
	.type = CONFIG_DURATION, .offset = OFF(f), .min = (lo), .max = (hi), .bare_unit_ms = 1
#define STR_(f) .type = CONFIG_STRING, .offset = OFF(f)
#define ENUM_(f, vals) .type = CONFIG_ENUM, .offset = OFF(f), .enum_values = (vals)
#define LIST_(f) .type = CONFIG_LIST, .offset = OFF(f)
#define HOSTPORT_(f) .type = CONFIG_HOSTPORT, .offset = OFF(f)

static const struct config_entry entries[] = {
    {R, .key = "listen_addr", LIST_(listen_addr), .default_value = "127.0.0.1",
     .description = "Addresses to accept TCP clients on, comma-separated; * = all; empty = "
		    "Unix socket only"},
    {R, .key = "listen_port", INT_(listen_port, 1, 65535), .default_value = "6432",
     .description = "TCP port (the Unix socket is named .s.PGSQL.PORT)"},
    {R, .key = "unix_socket_dir", STR_(unix_socket_dir), .default_value = "",
     .description = "Directory for the Unix socket; empty = no Unix socket"},
    {R, .key = "workers", INT_(workers, 0, 256), .default_value = "2",
     .description = "Event-loop threads; 0 = one per online CPU"},
    {R, .key = "catalog", STR_(catalog), .default_value = "", .flags = CONFIG_F_CONNINFO,
     .description = "libpq conninfo of the catalog database; required unless map_cache "
		    "names an existing cache file"},
    {R, .key = "map_cache", STR_(map_cache), .default_value = "",
     .description = "File caching the last shard map, to start while the catalog is down; "
		    "empty = none"},
    {R, .key = "auth_type", ENUM_(auth_type, auth_types), .default_value = "scram-sha-256",
     .reloadable = true, .description = "How clients authenticate"},
    {R, .key = "auth_file", STR_(auth_file), .default_value = "", .reloadable = true,
     .description = "pgbouncer userlist.txt with client passwords; required unless "
		    "auth_type = trust"},
    {R, .key = "admin_users", LIST_(admin_users), .default_value = "", .reloadable = true,
     .description = "Users allowed every admin console command"},
    {R, .key = "stats_users", LIST_(stats_users), .default_value = "", .reloadable = true,
     .description = "Users allowed the read-only SHOW commands of the admin console"},
    {R, .key = "pool_mode", ENUM_(pool_mode, pool_modes), .default_value = "transaction",
     .reloadable = true,
     .description = "When a server connection returns to the pool (applies to new clients)"},
    {R, .key = "default_pool_size", INT_(default_pool_size, 1, 10000), .default_value = "20",
     .reloadable = true,
     .description = "Server connections per backend, database and user, per worker"},
    {R, .key = "max_client_conn", INT_(max_client_conn, 1, 1000000), .default_value = "10000",
     .reloadable = true, .description = "Client connections accepted in total"},
    {R, .key = "server_connect_timeout", SECS_(server_connect_timeout_ms, 1, CONFIG_HOUR),
     .default_value = "15s", .reloadable = true,
     .description = "Time allowed to connect and log in to a backend"},
    {R, .key = "query_wait_timeout", SECS_(query_wait_timeout_ms, 0, CONFIG_DAY),
     .default_value = "2min", .reloadable = true,
     .description = "Longest wait for a server connection; 0 = forever"},
    {R, .key = "client_idle_timeout", SECS_(client_idle_timeout_ms, 0, 30 * CONFIG_DAY),
     .default_value = "0", .reloadable = true,
     .description = "Close clients idle this long; 0 = never"},
    {R, .key = "server_idle_timeout", SECS_(server_idle_timeout_ms, 0, 30 * CONFIG_DAY),
     .default_value = "10min", .reloadable = true,
     .description = "Close pooled server connections idle this long; 0 = never"},
    {R, .key = "server_lifetime", SECS_(server_lifetime_ms, 0, 30 * CONFIG_DAY),
     .default_value = "1h", .reloadable = true,
     .description = "Close pooled server connections older than this when released; "
		    "0 = never"},
    {R, .key = "server_reset_query", STR_(server_reset_query), .default_value = "DISCARD ALL",
     .reloadable = true,
     .description = "Run on a server connection released in session mode; empty = none"},
    {R, .key = "max_packet_size", SIZE_(max_packet_size, 8 * CONFIG_KB, CONFIG_GB),
     .default_value = "64MB", .reloadable = true,
     .description = "Largest protocol message accepted from a client or server"},
    {R, .key = "read_only_functions", LIST_(read_only_functions), .default_value = "",
     .reloadable = true, .flags = CONFIG_F_FUNCNAME,
     .description = "Functions ([schema.]name) that do not write, so a SELECT calling them "
		    "may go to a replica"},
    {R, .key = "replica_max_lag_bytes", SIZE_(replica_max_lag_bytes, 0, CONFIG_TB),
     .default_value = "16MB", .reloadable = true,
     .description = "A replica further behind its primary (WAL bytes) gets no reads"},
    {R, .key = "replica_max_lag_ms", MSEC_(replica_max_lag_ms, 0, CONFIG_DAY),
     .default_value = "5000", .reloadable = true,
     .description = "A replica further behind (replay delay) gets no reads"},
    {R, .key = "health_check_interval_ms", MSEC_(health_check_interval_ms, 10, CONFIG_HOUR),
     .default_value = "1000", .reloadable = true,
     .description = "How often backends' health and replica lag are measured"},
    {R, .key = "read_your_writes", BOOL_(read_your_writes), .default_value = "on",
     .reloadable = true,
     .description = "After a client's write, its reads go only to replicas that replayed "
		    "it"},
    {R, .key = "freeze_timeout_ms", MSEC_(freeze_timeout_ms, 1, CONFIG_HOUR),
     .default_value = "5000", .reloadable = true,
     .description = "Longest a write waits on a range frozen for a move, then errors"},
    {R, .key = "catalog_lease_ms", MSEC_(catalog_lease_ms, 100, CONFIG_DAY),
     .default_value = "10000", .reloadable = true,
     .description = "Without the catalog this long, stop writes to unconfirmed ranges"},
    {R, .key = "catalog_poll_ms", MSEC_(catalog_poll_ms, 10, CONFIG_HOUR), .default_value = "2000",
     .reloadable = true,
     .description = "Epoch poll interval (fallback for LISTEN/NOTIFY); below "
		    "catalog_lease_ms"},
    {R, .key = "metrics_listen", HOSTPORT_(metrics_listen), .default_value = "",
     .description = "host:port of the Prometheus /metrics endpoint; empty = off"},
    {R, .key = "log_file", STR_(log_file), .default_value = "", .reloadable = true,
     .description = "Log file (reopened on reload); empty = stderr"},
    {R, .key = "syslog", BOOL_(syslog), .default_value = "off", .reloadable = true,
     .description = "Also log to syslog"},
    {R, .key = "log_level", ENUM_(log_level, log_levels), .default_value = "info",
     .reloadable = true, .description = "Least severe level logged"},
    {R, .key = "pidfile", STR_(pidfile), .default_value = "",
     .description = "Write the process id here; empty = none"},
    {R, .key = "client_tls_sslmode", ENUM_(client_tls_sslmode, sslmodes),
     .default_value = "disable", .description = "TLS for client connections"},
    {R, .key = "client_tls_cert_file", STR_(client_tls_cert_file), .default_value = "",
     .description = "PEM certificate for client TLS; required unless sslmode is disable"},
    {R, .key = "client_tls_key_file", STR_(client_tls_key_file), .default_value = "",
     .description = "PEM private key for client TLS; required unless sslmode is disable"},
};

#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))
#define MAX_ENTRIES 64
_Static_assert(N_ENTRIES <= MAX_ENTRIES, "raise MAX_ENTRIES");

const struct config_entry *config_entries(size_t *count)
{
	*count = N_ENTRIES;
	return entries;
}

const struct config_entry *config_entry_find(const char *section, const char *key)
{
	for (size_t i = 0; i < N_ENTRIES; i++)
		if (!strcasecmp(entries[i].section, section) && !strcasecmp(entries[i].key, key))
			return &entries[i];
	return NULL;
}

size_t config_format_value(const struct config *cfg, const struct config_entry *e, char *buf,
			   size_t len)
{
	struct config_text sb = {buf, len, 0};
	if (len)
		buf[0] = '\0';
	config_value_format(&sb, cfg, e, true);
	return sb.need;
}

/* The formatted value in a new string (NULL when out of memory). */
static char *format_alloc(const struct config *cfg, const struct config_entry *e, bool mask)
{
	struct config_text sb = {NULL, 0, 0};
	config_value_format(&sb, cfg, e, mask);
	sb.len = sb.need + 1;
	if (!(sb.p = malloc(sb.len)))
		return NULL;
	sb.need = 0;
	sb.p[0] = '\0';
	config_value_format(&sb, cfg, e, mask);
	return sb.p;
}

int config_foreach(const struct config *cfg, config_foreach_fn fn, void *ctx)
{
	for (size_t i = 0; i < N_ENTRIES; i++) {
		char *v = format_alloc(cfg, &entries[i], true);
		if (!v)
			return SR_ENOMEM;
		int rc = fn(&entries[i], v, ctx);
		free(v);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- lifetime ---- */

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_ENTRIES; i++)
		config_value_clear(cfg, &entries[i]);
	free(cfg->path);
	free(cfg);
}

struct config *config_ref(struct config *cfg)
{
	atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

/* A config with every default set; *out untouched on failure. */
static int config_new_defaults(const char *origin, struct config **out, struct sr_errmsg *em)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg || !(cfg->path = strdup(origin))) {
		free(cfg);
		return sr_errmsg_set(em, SR_ENOMEM, "%s: out of memory", origin);
	}
	atomic_init(&cfg->refs, 1);
	for (size_t i = 0; i < N_ENTRIES; i++) {
		char why[256];
		struct config_text sb = {why, sizeof(why), 0};
		int rc = config_value_set(cfg, &entries[i], entries[i].default_value, &sb);
		if (rc) {
			config_free(cfg);
			return sr_errmsg_set(em, rc, "%s: internal error: default of %s: %s",
					     origin, entries[i].key, why);
		}
	}
	*out = cfg;
	return 0;
}

/* ---- loading ---- */

struct load_ctx {
	struct config *cfg;
	const char *origin;
	FILE *file;	  /* source: a file, or */
	const char *text; /* the rest of an in-memory text */
	char *line;	  /* the current line (getline buffer) */
	size_t cap;
	int lineno;		   /* line being parsed */
	int section_line;	   /* first [router] header, 0 if none */
	int key_line[MAX_ENTRIES]; /* where each key was set, 0 = default */
	int err;		   /* first error, 0 if none */
	int err_line;
	int nerrors;
	char msg[SR_ERRMSG_LEN];
};

/* Record an error at line (0 = no line) about key (NULL = the line itself).
 * Only the first is kept; later ones are counted. */
static void ctx_error(struct load_ctx *c, int err, int line, const char *key, const char *fmt, ...)
    SR_PRINTF(5, 6);
static void ctx_error(struct load_ctx *c, int err, int line, const char *key, const char *fmt, ...)
{
	if (c->nerrors++)
		return;
	struct config_text sb = {c->msg, sizeof(c->msg), 0};
	char tmp[SR_ERRMSG_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	config_text_puts(&sb, c->origin);
	if (line)
		config_text_printf(&sb, ":%d", line);
	config_text_puts(&sb, ": ");
	if (key) {
		config_text_puts(&sb, key);
		config_text_puts(&sb, ": ");
	}
	config_text_puts(&sb, tmp);
	c->err = err;
	c->err_line = line;
}

/* The next line into c->line; its length, or -1 at the end. */
static ssize_t ctx_getline(struct load_ctx *c)
{
	if (c->file)
		return getline(&c->line, &c->cap, c->file);
	if (!*c->text)
		return -1;
	size_t n = strcspn(c->text, "\n");
	n += c->text[n] == '\n';
	if (n + 1 > c->cap) {
		char *p = realloc(c->line, n + 1);
		if (!p)
			return -2;
		c->line = p, c->cap = n + 1;
	}
	memcpy(c->line, c->text, n);
	c->line[n] = '\0';
	c->text += n;
	return (ssize_t)n;
}

/* Reports [name] headers other than [router], even if no key follows. */
static void check_section_header(struct load_ctx *c, const char *s)
{
	if (c->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	const char *close = *s == '[' ? strchr(s, ']') : NULL;
	if (!close)
		return; /* not a header, or one inih reports as a syntax error */
	size_t n = (size_t)(close - s - 1);
	if (n == strlen(SECTION) && !strncasecmp(s + 1, SECTION, n)) {
		if (!c->section_line)
			c->section_line = c->lineno;
		return;
	}
	ctx_error(c, SR_EINVAL, c->lineno, NULL, "[%.*s]: unknown section (allowed: [%s])",
		  (int)(n > 60 ? 60 : n), s + 1, SECTION);
}

/* inih's fgets-like reader: counts lines, refuses over-long ones. */
static char *ini_read_line(char *str, int num, void *stream)
{
	struct load_ctx *c = stream;
	ssize_t n = ctx_getline(c);
	if (n == -2)
		ctx_error(c, SR_ENOMEM, c->lineno + 1, NULL, "out of memory");
	if (n < 0)
		return NULL;
	c->lineno++;
	if (n >= num || strlen(c->line) != (size_t)n) {
		ctx_error(c, SR_EINVAL, c->lineno, NULL, "%s",
			  n >= num ? "line too long (at most " STR_OF(CONFIG_MAX_LINE) " bytes)"
				   : "line contains a NUL byte");
		memcpy(str, "\n", 2);
		return str;
	}
	check_section_header(c, c->line);
	memcpy(str, c->line, (size_t)n + 1);
	return str;
}

/* inih's handler for one name=value. Always returns 1 ("go on"): errors are
 * recorded in the context, so inih's result means syntax errors only. */
static int ini_on_value(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;
	if (!*section) {
		ctx_error(c, SR_EINVAL, c->lineno, name,
			  "key outside of a section (put it under [%s])", SECTION);
		return 1;
	}
	if (strcasecmp(section, SECTION))
		return 1; /* the unknown section was reported at its header */
	const struct config_entry *e = config_entry_find(section, name);
	if (!e) {
		ctx_error(c, SR_EINVAL, c->lineno, name, "unknown key in [%s]", SECTION);
		return 1;
	}
	size_t idx = (size_t)(e - entries);
	if (c->key_line[idx]) {
		ctx_error(c, SR_EINVAL, c->lineno, e->key, "duplicate key (first set on line %d)",
			  c->key_line[idx]);
		return 1;
	}
	c->key_line[idx] = c->lineno;
	char why[SR_ERRMSG_LEN];
	struct config_text sb = {why, sizeof(why), 0};
	why[0] = '\0';
	int rc = config_value_set(c->cfg, e, value, &sb);
	if (rc)
		ctx_error(c, rc, c->lineno, e->key, "%s", rc == SR_ENOMEM ? "out of memory" : why);
	return 1;
}

/* Where key was set, else the [router] header (0 if neither). */
static int line_of(const struct load_ctx *c, const char *key)
{
	const struct config_entry *e = config_entry_find(SECTION, key);
	int line = e ? c->key_line[e - entries] : 0;
	return line ? line : c->section_line;
}

/* Rules between keys, checked once every key parsed. */
static void validate(struct load_ctx *c)
{
	const struct config *cfg = c->cfg;
	if (cfg->auth_type != CONFIG_AUTH_TRUST && !cfg->auth_file[0])
		ctx_error(c, SR_EINVAL, line_of(c, "auth_type"), "auth_file",
			  "required when auth_type = %s (a pgbouncer userlist.txt)",
			  auth_types[cfg->auth_type]);
	if (!cfg->catalog[0] && !cfg->map_cache[0])
		ctx_error(c, SR_EINVAL, line_of(c, "catalog"), "catalog",
			  "required (a libpq conninfo, e.g. \"host=127.0.0.1 port=5501 "
			  "dbname=shardrouter\") unless map_cache names an existing cache file");
	else if (!cfg->catalog[0] && access(cfg->map_cache, R_OK) != 0)
		ctx_error(c, SR_EINVAL, line_of(c, "map_cache"), "catalog",
			  "required: it is empty and map_cache \"%s\" cannot be read (%s)",
			  cfg->map_cache, strerror(errno));
	if (cfg->client_tls_sslmode != CONFIG_SSLMODE_DISABLE) {
		const char *need = !cfg->client_tls_cert_file[0]  ? "client_tls_cert_file"
				   : !cfg->client_tls_key_file[0] ? "client_tls_key_file"
								  : NULL;
		if (need)
			ctx_error(c, SR_EINVAL, line_of(c, "client_tls_sslmode"), need,
				  "required when client_tls_sslmode = %s",
				  sslmodes[cfg->client_tls_sslmode]);
	}
	if (cfg->listen_addr.count == 0 && !cfg->unix_socket_dir[0])
		ctx_error(c, SR_EINVAL, line_of(c, "listen_addr"), "listen_addr",
			  "empty while unix_socket_dir is empty: nothing to listen on");
	if (cfg->catalog_poll_ms >= cfg->catalog_lease_ms)
		ctx_error(c, SR_EINVAL, line_of(c, "catalog_lease_ms"), "catalog_lease_ms",
			  "%" PRId64 " must be greater than catalog_poll_ms (%" PRId64 ")",
			  cfg->catalog_lease_ms, cfg->catalog_poll_ms);
}

/* Debian's inih exposes its build options as globals: set pgbouncer-like rules. */
static void ini_set_options(void)
{
	ini_use_stack = false;	   /* heap buffer of ini_initial_alloc bytes, */
	ini_allow_realloc = false; /* never grown: the reader refuses longer lines */
	ini_initial_alloc = CONFIG_MAX_LINE + 1;
	ini_max_line = CONFIG_MAX_LINE + 1;
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_allow_no_value = false;
	ini_allow_bom = true;
	ini_stop_on_first_error = false;
}

/* Parse c's source over the defaults in c->cfg; 0 or the first error. */
static int ctx_parse(struct load_ctx *c)
{
	ini_set_options();
	int r = ini_parse_stream(ini_read_line, c, ini_on_value, c);
	if (r == -2 || c->err == SR_ENOMEM)
		return SR_ENOMEM;
	if (r > 0 && (!c->err || r < c->err_line)) {
		int more = c->nerrors;
		c->nerrors = 0;
		ctx_error(c, SR_EINVAL, r, NULL,
			  "syntax error (expected \"key = value\", \"[section]\" or a comment "
			  "starting with ; or #)");
		c->nerrors += more;
	} else if (r > 0) {
		c->nerrors++;
	}
	if (r < 0)
		return SR_EIO;
	if (!c->err)
		validate(c);
	return c->err;
}

static int load_from(struct load_ctx *c, struct config **out, struct sr_errmsg *em)
{
	int rc = config_new_defaults(c->origin, &c->cfg, em);
	if (rc)
		return rc;
	rc = ctx_parse(c);
	free(c->line);
	if (rc == SR_ENOMEM && !c->err)
		sr_errmsg_set(em, rc, "%s: out of memory", c->origin);
	else if (rc == SR_EIO)
		sr_errmsg_set(em, rc, "%s: read error", c->origin);
	else if (rc && c->nerrors > 1)
		sr_errmsg_set(em, rc, "%s (and %d more error%s)", c->msg, c->nerrors - 1,
			      c->nerrors > 2 ? "s" : "");
	else if (rc)
		sr_errmsg_set(em, rc, "%s", c->msg);
	if (rc) {
		config_free(c->cfg);
		return rc;
	}
	*out = c->cfg;
	return 0;
}

int config_load(const char *path, struct config **out, struct sr_errmsg *em)
{
	struct load_ctx c = {.origin = path};
	if (!(c.file = fopen(path, "r")))
		return sr_errmsg_set(em, SR_EIO, "%s: cannot open: %s", path, strerror(errno));
	struct config *cfg = NULL;
	int rc = load_from(&c, &cfg, em);
	if (rc == 0 && ferror(c.file)) {
		config_free(cfg);
		rc = sr_errmsg_set(em, SR_EIO, "%s: read error", path);
	}
	fclose(c.file);
	if (rc == 0)
		*out = cfg;
	return rc;
}

int config_load_string(const char *origin, const char *text, struct config **out,
		       struct sr_errmsg *em)
{
	struct load_ctx c = {.origin = origin, .text = text};
	return load_from(&c, out, em);
}

/* ---- reload ---- */

int config_check_reload(const struct config *old, const struct config *new_cfg,
			struct sr_errmsg *em)
{
	int rc = 0, changed = 0;
	for (size_t i = 0; i < N_ENTRIES; i++) {
		const struct config_entry *e = &entries[i];
		if (e->reloadable)
			continue;
		char *a = format_alloc(old, e, false), *b = format_alloc(new_cfg, e, false);
		if (!a || !b) {
			rc = sr_errmsg_set(em, SR_ENOMEM, "%s: out of memory", new_cfg->path);
		} else if (strcmp(a, b) && changed++ == 0) {
			free(a), free(b);
			a = format_alloc(old, e, true), b = format_alloc(new_cfg, e, true);
			rc =
			    sr_errmsg_set(em, SR_EINVAL,
					  "%s: %s: changed from \"%s\" to \"%s\", which needs a "
					  "restart of shardrouter; the old settings stay in effect",
					  new_cfg->path, e->key, a ? a : "?", b ? b : "?");
		}
		free(a), free(b);
		if (rc == SR_ENOMEM)
			return rc;
	}
	if (changed > 1) {
		size_t n = strlen(em ? em->text : "");
		if (em)
			snprintf(em->text + n, sizeof(em->text) - n,
				 " (and %d more key%s that need a restart)", changed - 1,
				 changed > 2 ? "s" : "");
	}
	return rc;
}

/* ---- documentation ---- */

static void sb_type_doc(struct config_text *sb, const struct config_entry *e)
{
	switch (e->type) {
	case CONFIG_BOOL:
		config_text_puts(sb, "bool");
		return;
	case CONFIG_INT:
		config_text_puts(sb, "integer");
		config_value_format_bounds(sb, e);
		return;
	case CONFIG_SIZE:
		config_text_puts(sb, "size");
		config_value_format_bounds(sb, e);
		return;
	case CONFIG_DURATION:
		config_text_puts(sb, e->bare_unit_ms == 1 ? "duration, bare number = ms"
							  : "duration, bare number = s");
		config_value_format_bounds(sb, e);
		return;
	case CONFIG_STRING:
		config_text_puts(sb, (e->flags & CONFIG_F_CONNINFO) ? "conninfo" : "string");
		return;
	case CONFIG_ENUM:
		config_text_puts(sb, "one of ");
		for (int i = 0; e->enum_values[i]; i++)
			config_text_printf(sb, "%s`%s`", i ? ", " : "", e->enum_values[i]);
		return;
	case CONFIG_LIST:
		config_text_puts(sb, "list");
		return;
	case CONFIG_HOSTPORT:
		config_text_puts(sb, "host:port");
		return;
	}
}

void config_print_markdown(FILE *out)
{
	fprintf(out, "| key | type | default | reload | description |\n"
		     "|---|---|---|---|---|\n");
	for (size_t i = 0; i < N_ENTRIES; i++) {
		const struct config_entry *e = &entries[i];
		char type[256];
		struct config_text sb = {type, sizeof(type), 0};
		type[0] = '\0';
		sb_type_doc(&sb, e);
		fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", e->key, type,
			*e->default_value ? "`" : "",
			*e->default_value ? e->default_value : "(empty)",
			*e->default_value ? "`" : "", e->reloadable ? "yes" : "restart",
			e->description);
	}
	fprintf(out,
		"\nAll keys live in the `[router]` section. Lines starting with `;` or `#` are "
		"comments (there are no inline comments). bool: on/off, true/false, yes/no, 1/0. "
		"size: bytes with an optional unit B, kB, MB, GB, TB (1kB = 1024 B). duration: a "
		"number with an optional unit ms, s, min, h, d; a bare number means seconds for "
		"pgbouncer-named keys (fractions allowed, e.g. 0.5) and milliseconds for keys "
		"ending in `_ms`. list: comma-separated. Unknown sections or keys, duplicate keys "
		"and bad values are errors naming file, line and key. `reload = restart` keys "
		"cannot change on SIGHUP/RELOAD: such a reload is refused and the old settings "
		"stay.\n");
}

/* ---- lookups ---- */

static bool list_has(const struct config_list *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (!strcmp(l->items[i], name))
			return true;
	return false;
}

bool config_is_admin_user(const struct config *cfg, const char *name)
{
	return list_has(&cfg->admin_users, name);
}

bool config_is_stats_user(const struct config *cfg, const char *name)
{
	return list_has(&cfg->stats_users, name);
}

/* Does s (n bytes, any case) equal lower-case item exactly? */
static bool lower_eq(const char *item, size_t item_len, const char *s, size_t n)
{
	if (item_len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (item[i] != (char)tolower((unsigned char)s[i]))
			return false;
	return true;
}

bool config_function_is_read_only(const struct config *cfg, const char *schema, size_t schema_len,
				  const char *name, size_t name_len)
{
	const struct config_list *l = &cfg->read_only_functions;
	if (!schema)
		schema_len = 0;
	for (size_t i = 0; i < l->count; i++) {
		const char *it = l->items[i], *dot = strchr(it, '.');
		if (!dot) {
			if (lower_eq(it, strlen(it), name, name_len))
				return true;
		} else if (schema_len && lower_eq(it, (size_t)(dot - it), schema, schema_len) &&
			   lower_eq(dot + 1, strlen(dot + 1), name, name_len)) {
			return true;
		}
	}
	return false;
}

/* ---- the shared current config ---- */

void config_slot_init(struct config_slot *slot, struct config *initial)
{
	pthread_mutex_init(&slot->lock, NULL);
	slot->cur = initial;
}

void config_slot_destroy(struct config_slot *slot)
{
	config_unref(slot->cur);
	slot->cur = NULL;
	pthread_mutex_destroy(&slot->lock);
}

struct config *config_slot_get(struct config_slot *slot)
{
	pthread_mutex_lock(&slot->lock);
	struct config *cfg = slot->cur ? config_ref(slot->cur) : NULL;
	pthread_mutex_unlock(&slot->lock);
	return cfg;
}

void config_slot_swap(struct config_slot *slot, struct config *next)
{
	pthread_mutex_lock(&slot->lock);
	struct config *old = slot->cur;
	slot->cur = next;
	pthread_mutex_unlock(&slot->lock);
	config_unref(old);
}
