/*
 * test_config.c - unit tests of router/config.c: loading fixtures and INI
 * texts, defaults, every error class (with file:line:key), value syntax,
 * formatting, the reload check, lookups and refcounting.
 *
 * Fixtures are read from $SR_FIXTURE_DIR, else tests/fixtures (run from the
 * repository root, as `make test` does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/config.h"

static char fixture_buf[512];

static const char *fixture(const char *name)
{
	const char *dir = getenv("SR_FIXTURE_DIR");
	snprintf(fixture_buf, sizeof(fixture_buf), "%s/%s", dir ? dir : "tests/fixtures", name);
	return fixture_buf;
}

static struct config *load_ok(const char *text)
{
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	int rc = config_load_string("t.ini", text, &cfg, &em);
	if (rc)
		print_error("unexpected error: %s\n", em.text);
	assert_int_equal(rc, 0);
	assert_non_null(cfg);
	return cfg;
}

/* The base every text test needs: a section and the two required keys. */
#define BASE "[router]\ncatalog = dbname=sr\nauth_file = users.txt\n"

/* Loading must fail with rc, and the message must start with prefix and
 * contain each of the NULL-terminated further strings. */
static void expect_error_msg(int rc, const struct sr_errmsg *em, int want_rc, const char *prefix,
			     va_list ap)
{
	if (strncmp(em->text, prefix, strlen(prefix)))
		print_error("message \"%s\" does not start with \"%s\"\n", em->text, prefix);
	assert_int_equal(rc, want_rc);
	assert_true(strncmp(em->text, prefix, strlen(prefix)) == 0);
	for (const char *s; (s = va_arg(ap, const char *));) {
		if (!strstr(em->text, s))
			print_error("message \"%s\" lacks \"%s\"\n", em->text, s);
		assert_non_null(strstr(em->text, s));
	}
}

static void expect_text_error(const char *text, int want_rc, const char *prefix, ...)
{
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	int rc = config_load_string("t.ini", text, &cfg, &em);
	assert_null(cfg);
	va_list ap;
	va_start(ap, prefix);
	expect_error_msg(rc, &em, want_rc, prefix, ap);
	va_end(ap);
}

static void expect_file_error(const char *name, int line, const char *key, int want_rc, ...)
{
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	char prefix[600];
	int rc = config_load(fixture(name), &cfg, &em);
	snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", fixture(name), line, key);
	assert_null(cfg);
	va_list ap;
	va_start(ap, want_rc);
	expect_error_msg(rc, &em, want_rc, prefix, ap);
	va_end(ap);
}

static const char *value_of(const struct config *cfg, const char *key, char *buf, size_t len)
{
	const struct config_entry *e = config_entry_find("router", key);
	assert_non_null(e);
	size_t need = config_format_value(cfg, e, buf, len);
	assert_true(need < len);
	return buf;
}

/* ---- valid files ---- */

static void test_config_full_fixture_loads_every_value(void **state)
{
	(void)state;
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	int rc = config_load(fixture("config_full.ini"), &cfg, &em);
	if (rc)
		print_error("%s\n", em.text);
	assert_int_equal(rc, 0);
	assert_int_equal(cfg->listen_addr.count, 2);
	assert_string_equal(cfg->listen_addr.items[0], "127.0.0.1");
	assert_string_equal(cfg->listen_addr.items[1], "::1");
	assert_int_equal(cfg->listen_port, 6543);
	assert_string_equal(cfg->unix_socket_dir, "/tmp/sr-sock");
	assert_int_equal(cfg->workers, 4);
	assert_string_equal(cfg->catalog,
			    "host=127.0.0.1 port=5501 dbname=shardrouter user=sr password=s3cret");
	assert_string_equal(cfg->map_cache, "/var/lib/shardrouter/map.cache");
	assert_int_equal(cfg->auth_type, CONFIG_AUTH_MD5);
	assert_string_equal(cfg->auth_file, "/etc/shardrouter/userlist.txt");
	assert_int_equal(cfg->admin_users.count, 2);
	assert_string_equal(cfg->admin_users.items[0], "admin");
	assert_string_equal(cfg->admin_users.items[1], "root");
	assert_int_equal(cfg->stats_users.count, 1);
	assert_string_equal(cfg->stats_users.items[0], "monitor");
	assert_int_equal(cfg->pool_mode, CONFIG_POOL_SESSION);
	assert_int_equal(cfg->default_pool_size, 35);
	assert_int_equal(cfg->max_client_conn, 5000);
	assert_int_equal(cfg->server_connect_timeout_ms, 2500);
	assert_int_equal(cfg->query_wait_timeout_ms, 30000);
	assert_int_equal(cfg->client_idle_timeout_ms, 300000);
	assert_int_equal(cfg->server_idle_timeout_ms, 300000);
	assert_int_equal(cfg->server_lifetime_ms, 7200000);
	assert_string_equal(cfg->server_reset_query, "RESET ALL; SET search_path = public");
	assert_int_equal(cfg->max_packet_size, 16 * 1024 * 1024);
	assert_int_equal(cfg->read_only_functions.count, 3);
	assert_string_equal(cfg->read_only_functions.items[0], "lower");
	assert_string_equal(cfg->read_only_functions.items[1], "public.now_utc");
	assert_string_equal(cfg->read_only_functions.items[2], "pg_catalog.pg_sleep");
	assert_int_equal(cfg->replica_max_lag_bytes, INT64_C(1) << 30);
	assert_int_equal(cfg->replica_max_lag_ms, 2000);
	assert_int_equal(cfg->health_check_interval_ms, 250);
	assert_false(cfg->read_your_writes);
	assert_int_equal(cfg->freeze_timeout_ms, 7500);
	assert_int_equal(cfg->catalog_lease_ms, 20000);
	assert_int_equal(cfg->catalog_poll_ms, 500);
	assert_string_equal(cfg->metrics_listen.host, "::1");
	assert_int_equal(cfg->metrics_listen.port, 9931);
	assert_string_equal(cfg->log_file, "/var/log/shardrouter.log");
	assert_true(cfg->syslog);
	assert_int_equal(cfg->log_level, LOG_LVL_DEBUG);
	assert_string_equal(cfg->pidfile, "/run/shardrouter.pid");
	assert_int_equal(cfg->client_tls_sslmode, CONFIG_SSLMODE_REQUIRE);
	assert_string_equal(cfg->client_tls_cert_file, "/etc/shardrouter/server.crt");
	assert_string_equal(cfg->client_tls_key_file, "/etc/shardrouter/server.key");
	assert_string_equal(cfg->path, fixture("config_full.ini"));
	config_unref(cfg);
}

static void test_config_defaults_when_keys_absent(void **state)
{
	(void)state;
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_load(fixture("config_minimal.ini"), &cfg, &em), 0);
	assert_int_equal(cfg->listen_addr.count, 1);
	assert_string_equal(cfg->listen_addr.items[0], "127.0.0.1");
	assert_int_equal(cfg->listen_port, 6432);
	assert_string_equal(cfg->unix_socket_dir, "");
	assert_int_equal(cfg->workers, 2);
	assert_string_equal(cfg->map_cache, "");
	assert_int_equal(cfg->auth_type, CONFIG_AUTH_SCRAM_SHA_256);
	assert_int_equal(cfg->admin_users.count, 0);
	assert_int_equal(cfg->pool_mode, CONFIG_POOL_TRANSACTION);
	assert_int_equal(cfg->default_pool_size, 20);
	assert_int_equal(cfg->max_client_conn, 10000);
	assert_int_equal(cfg->server_connect_timeout_ms, 15000);
	assert_int_equal(cfg->query_wait_timeout_ms, 120000);
	assert_int_equal(cfg->client_idle_timeout_ms, 0);
	assert_int_equal(cfg->server_idle_timeout_ms, 600000);
	assert_int_equal(cfg->server_lifetime_ms, 3600000);
	assert_string_equal(cfg->server_reset_query, "DISCARD ALL");
	assert_int_equal(cfg->max_packet_size, 64 * 1024 * 1024);
	assert_int_equal(cfg->read_only_functions.count, 0);
	assert_int_equal(cfg->replica_max_lag_bytes, 16 * 1024 * 1024);
	assert_int_equal(cfg->replica_max_lag_ms, 5000);
	assert_int_equal(cfg->health_check_interval_ms, 1000);
	assert_true(cfg->read_your_writes);
	assert_int_equal(cfg->freeze_timeout_ms, 5000);
	assert_int_equal(cfg->catalog_lease_ms, 10000);
	assert_int_equal(cfg->catalog_poll_ms, 2000);
	assert_int_equal(cfg->metrics_listen.port, 0);
	assert_string_equal(cfg->metrics_listen.host, "");
	assert_string_equal(cfg->log_file, "");
	assert_false(cfg->syslog);
	assert_int_equal(cfg->log_level, LOG_LVL_INFO);
	assert_int_equal(cfg->client_tls_sslmode, CONFIG_SSLMODE_DISABLE);
	assert_string_equal(cfg->pidfile, "");
	config_unref(cfg);
}

/* Every default in the table is written the way config_format_value writes
 * the value it parses to, so SHOW CONFIG's value and default columns agree. */
static void test_config_default_strings_are_canonical(void **state)
{
	(void)state;
	struct config *cfg = load_ok(BASE);
	size_t n;
	const struct config_entry *e = config_entries(&n);
	assert_true(n >= 30);
	for (size_t i = 0; i < n; i++) {
		char buf[256];
		if (!strcmp(e[i].key, "catalog") || !strcmp(e[i].key, "auth_file"))
			continue;
		config_format_value(cfg, &e[i], buf, sizeof(buf));
		if (strcmp(buf, e[i].default_value))
			print_error("%s: formatted \"%s\", default \"%s\"\n", e[i].key, buf,
				    e[i].default_value);
		assert_string_equal(buf, e[i].default_value);
		assert_ptr_equal(config_entry_find("ROUTER", e[i].key), &e[i]);
	}
	config_unref(cfg);
}

static void test_config_comments_and_whitespace(void **state)
{
	(void)state;
	struct config *cfg = load_ok("\xEF\xBB\xBF; leading comment\r\n"
				     "# another\r\n"
				     "\r\n"
				     "  [router]  \r\n"
				     "catalog=dbname=sr ; not a comment\r\n"
				     "  auth_file   =   users.txt   \r\n"
				     "\tworkers\t=\t3\t\r\n"
				     "    ; indented comment\r\n"
				     "Listen_Port = 7000\r\n"
				     "admin_users = ,  a ,, b c ,\r\n"
				     "log_file =\r\n"
				     "server_reset_query = #not a comment either");
	assert_string_equal(cfg->catalog, "dbname=sr ; not a comment");
	assert_string_equal(cfg->auth_file, "users.txt");
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->listen_port, 7000);
	assert_int_equal(cfg->admin_users.count, 2);
	assert_string_equal(cfg->admin_users.items[0], "a");
	assert_string_equal(cfg->admin_users.items[1], "b c");
	assert_string_equal(cfg->log_file, "");
	assert_string_equal(cfg->server_reset_query, "#not a comment either");
	config_unref(cfg);
}

/* ---- error classes, from fixtures ---- */

static void test_config_error_unknown_key(void **state)
{
	(void)state;
	expect_file_error("config_bad_unknown_key.ini", 4, "listen_prot", SR_EINVAL,
			  "unknown key in [router]", NULL);
}

static void test_config_error_bad_int(void **state)
{
	(void)state;
	expect_file_error("config_bad_int.ini", 4, "workers", SR_EINVAL,
			  "\"four\" is not an integer", "(allowed: 0..256)", NULL);
}

static void test_config_error_out_of_range(void **state)
{
	(void)state;
	expect_file_error("config_bad_out_of_range.ini", 4, "listen_port", SR_ERANGE,
			  "\"70000\" is out of range", "(allowed: 1..65535)", NULL);
}

static void test_config_error_bad_enum(void **state)
{
	(void)state;
	expect_file_error("config_bad_enum.ini", 4, "pool_mode", SR_EINVAL,
			  "\"statement\" is not valid (allowed: transaction, session)", NULL);
}

static void test_config_error_bad_bool(void **state)
{
	(void)state;
	expect_file_error("config_bad_bool.ini", 4, "read_your_writes", SR_EINVAL,
			  "\"maybe\" is not a boolean", "on, off", NULL);
}

static void test_config_error_duplicate_key(void **state)
{
	(void)state;
	expect_file_error("config_bad_duplicate.ini", 5, "workers", SR_EINVAL,
			  "duplicate key (first set on line 3)", NULL);
}

static void test_config_error_bad_size_unit(void **state)
{
	(void)state;
	expect_file_error("config_bad_size_unit.ini", 4, "max_packet_size", SR_EINVAL,
			  "unknown unit", "B, kB, MB, GB", NULL);
}

static void test_config_error_md5_without_auth_file(void **state)
{
	(void)state;
	expect_file_error("config_bad_md5_no_auth_file.ini", 5, "auth_file", SR_EINVAL,
			  "required when auth_type = md5", NULL);
}

static void test_config_error_missing_file(void **state)
{
	(void)state;
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_load(fixture("no_such_file.ini"), &cfg, &em), SR_EIO);
	assert_null(cfg);
	assert_non_null(strstr(em.text, "no_such_file.ini: cannot open"));
}

/* ---- error classes, from texts ---- */

static void test_config_error_syntax_and_sections(void **state)
{
	(void)state;
	expect_text_error(BASE "workers 4\n", SR_EINVAL, "t.ini:4: syntax error", NULL);
	expect_text_error(BASE "[router\nworkers = 4\n", SR_EINVAL, "t.ini:4: syntax error", NULL);
	expect_text_error(BASE "[pgbouncer]\n", SR_EINVAL,
			  "t.ini:4: [pgbouncer]: unknown section (allowed: [router])", NULL);
	expect_text_error("workers = 4\n" BASE, SR_EINVAL,
			  "t.ini:1: workers: key outside of a section", NULL);
	/* An indented line is a key of its own, not a continuation. */
	expect_text_error(BASE "workers = 4\n  workers = 5\n", SR_EINVAL,
			  "t.ini:5: workers: duplicate key (first set on line 4)", NULL);
}

static void test_config_error_first_of_several_is_reported(void **state)
{
	(void)state;
	expect_text_error(BASE "bogus = 1\nworkers = x\nlisten_port = 0\n", SR_EINVAL,
			  "t.ini:4: bogus: unknown key", "(and 2 more errors)", NULL);
	/* A syntax error before a value error comes first. */
	expect_text_error(BASE "oops\nworkers = x\n", SR_EINVAL, "t.ini:4: syntax error",
			  "(and 1 more error)", NULL);
}

/* BASE, then a server_reset_query line of exactly line_len bytes with its newline. */
static char *text_with_long_line(size_t line_len)
{
	static const char key[] = "server_reset_query = ";
	size_t k = line_len - (sizeof(key) - 1) - 1;
	char *text = malloc(sizeof(BASE) + line_len + 32);
	assert_non_null(text);
	char *p = text + sprintf(text, "%s%s", BASE, key);
	memset(p, 'x', k);
	strcpy(p + k, "\nworkers = 3\n");
	return text;
}

static void test_config_error_line_too_long(void **state)
{
	(void)state;
	char *text = text_with_long_line(CONFIG_MAX_LINE + 1);
	expect_text_error(text, SR_EINVAL, "t.ini:4: line too long (at most 8192 bytes)", NULL);
	free(text);
	text = text_with_long_line(CONFIG_MAX_LINE);
	struct config *cfg = load_ok(text);
	assert_int_equal(strlen(cfg->server_reset_query), CONFIG_MAX_LINE - 22);
	assert_int_equal(cfg->workers, 3); /* the next line is read as its own */
	config_unref(cfg);
	free(text);
}

static void test_config_error_cross_key_rules(void **state)
{
	(void)state;
	expect_text_error("[router]\nauth_type = trust\n", SR_EINVAL, "t.ini:1: catalog: required",
			  NULL);
	expect_text_error("[router]\nauth_type = trust\nmap_cache = /nonexistent/map\n", SR_EINVAL,
			  "t.ini:3: catalog: required", "cannot be read", NULL);
	expect_text_error(
	    BASE "client_tls_sslmode = prefer\nclient_tls_key_file = k.pem\n", SR_EINVAL,
	    "t.ini:4: client_tls_cert_file: required when client_tls_sslmode = prefer", NULL);
	expect_text_error(BASE "listen_addr =\n", SR_EINVAL,
			  "t.ini:4: listen_addr: ", "nothing to listen on", NULL);
	expect_text_error(BASE "catalog_poll_ms = 10s\n", SR_EINVAL,
			  "t.ini:1: catalog_lease_ms: ", "greater than catalog_poll_ms", NULL);
}

static void test_config_map_cache_allows_empty_catalog(void **state)
{
	(void)state;
	char text[1024];
	snprintf(text, sizeof(text), "[router]\nauth_type = trust\nmap_cache = %s\n",
		 fixture("config_minimal.ini"));
	struct config *cfg = load_ok(text);
	assert_string_equal(cfg->catalog, "");
	assert_int_equal(cfg->auth_type, CONFIG_AUTH_TRUST);
	config_unref(cfg);
}

/* ---- value syntax ---- */

struct value_case {
	const char *line;
	int rc;
	const char *key;
	const char *formatted; /* expected canonical value, or expected error text */
};

static void check_cases_after(const char *base, const struct value_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char text[512], buf[256];
		struct config *cfg = NULL;
		struct sr_errmsg em = {{0}};
		snprintf(text, sizeof(text), "%s%s\n", base, cases[i].line);
		int rc = config_load_string("t.ini", text, &cfg, &em);
		if (rc != cases[i].rc)
			print_error("case \"%s\": rc %d (%s)\n", cases[i].line, rc, em.text);
		assert_int_equal(rc, cases[i].rc);
		if (rc) {
			assert_non_null(strstr(em.text, cases[i].formatted));
			continue;
		}
		assert_string_equal(value_of(cfg, cases[i].key, buf, sizeof(buf)),
				    cases[i].formatted);
		config_unref(cfg);
	}
}

static void check_value_cases(const struct value_case *cases, size_t n)
{
	check_cases_after(BASE, cases, n);
}

static void test_config_durations(void **state)
{
	(void)state;
	static const struct value_case cases[] = {
	    {"server_connect_timeout = 1.5", 0, "server_connect_timeout", "1500ms"},
	    {"server_connect_timeout = 250ms", 0, "server_connect_timeout", "250ms"},
	    {"server_connect_timeout = 60 s", 0, "server_connect_timeout", "1min"},
	    {"query_wait_timeout = 0", 0, "query_wait_timeout", "0"},
	    {"query_wait_timeout = 1d", 0, "query_wait_timeout", "1d"},
	    {"server_lifetime = 0.5h", 0, "server_lifetime", "30min"},
	    {"freeze_timeout_ms = 1500", 0, "freeze_timeout_ms", "1500"},
	    {"freeze_timeout_ms = 2s", 0, "freeze_timeout_ms", "2000"},
	    {"server_connect_timeout = 0.0001", SR_EINVAL, NULL, "whole milliseconds"},
	    {"server_connect_timeout = 10 sec", SR_EINVAL, NULL,
	     "t.ini:4: server_connect_timeout: \"10 sec\": unknown unit"},
	    {"server_connect_timeout = 0", SR_ERANGE, NULL, "(allowed: 1ms..1h)"},
	    {"query_wait_timeout = 2d", SR_ERANGE, NULL, "(allowed: 0..1d)"},
	    {"query_wait_timeout = -1", SR_EINVAL, NULL, "is not a duration"},
	    {"query_wait_timeout = 99999999999999999999", SR_ERANGE, NULL, "out of range"},
	    {"freeze_timeout_ms = 1.5", SR_EINVAL, NULL, "whole milliseconds"},
	};
	check_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_config_sizes_bools_ints(void **state)
{
	(void)state;
	static const struct value_case cases[] = {
	    {"max_packet_size = 8kB", 0, "max_packet_size", "8kB"},
	    {"max_packet_size = 1GB", 0, "max_packet_size", "1GB"},
	    {"max_packet_size = 100 mb", 0, "max_packet_size", "100MB"},
	    {"max_packet_size = 10000", 0, "max_packet_size", "10000"},
	    {"replica_max_lag_bytes = 0", 0, "replica_max_lag_bytes", "0"},
	    {"max_packet_size = 8191", SR_ERANGE, NULL, "(allowed: 8kB..1GB)"},
	    {"max_packet_size = 2GB", SR_ERANGE, NULL, "out of range"},
	    {"max_packet_size = 1.5MB", SR_EINVAL, NULL, "is not a size"},
	    {"read_your_writes = TRUE", 0, "read_your_writes", "on"},
	    {"read_your_writes = 0", 0, "read_your_writes", "off"},
	    {"syslog = No", 0, "syslog", "off"},
	    {"workers = 0", 0, "workers", "0"},
	    {"workers = 257", SR_ERANGE, NULL, "(allowed: 0..256)"},
	    {"workers = 4x", SR_EINVAL, NULL, "is not an integer"},
	    {"workers = 99999999999999999999", SR_ERANGE, NULL, "out of range"},
	    {"workers =", SR_EINVAL, NULL, "\"\" is not an integer"},
	    {"auth_type = TRUST", 0, "auth_type", "trust"},
	    {"log_level = warning", 0, "log_level", "warning"},
	    {"log_level = verbose", SR_EINVAL, NULL, "error, warning, info, debug"},
	};
	check_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_config_hostport_and_lists(void **state)
{
	(void)state;
	static const struct value_case cases[] = {
	    {"metrics_listen = 127.0.0.1:9930", 0, "metrics_listen", "127.0.0.1:9930"},
	    {"metrics_listen = [::1]:9930", 0, "metrics_listen", "[::1]:9930"},
	    {"metrics_listen = localhost:1", 0, "metrics_listen", "localhost:1"},
	    {"metrics_listen =", 0, "metrics_listen", ""},
	    {"metrics_listen = :9930", SR_EINVAL, NULL, "is not host:port"},
	    {"metrics_listen = localhost", SR_EINVAL, NULL, "is not host:port"},
	    {"metrics_listen = ::1:80", SR_EINVAL, NULL, "is not host:port"},
	    {"metrics_listen = h:0", SR_EINVAL, NULL, "is not host:port"},
	    {"metrics_listen = h:80x", SR_EINVAL, NULL, "is not host:port"},
	    {"metrics_listen = [::1]", SR_EINVAL, NULL, "is not host:port"},
	    {"read_only_functions = a.b.c", SR_EINVAL, NULL, "\"a.b.c\" is not a function name"},
	    {"read_only_functions = f(x)", SR_EINVAL, NULL, "is not a function name"},
	    {"read_only_functions = s.", SR_EINVAL, NULL, "is not a function name"},
	    {"read_only_functions = F1, S.G$", 0, "read_only_functions", "f1, s.g$"},
	    {"stats_users = Mon, x", 0, "stats_users", "Mon, x"},
	};
	check_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- formatting, SHOW CONFIG, README ---- */

static void test_config_format_masks_passwords(void **state)
{
	(void)state;
	static const struct value_case cases[] = {
	    {"catalog = host=h password=s3cret dbname=x", 0, "catalog",
	     "host=h password=*** dbname=x"},
	    {"catalog = password = 'a b\\' c' host=h", 0, "catalog", "password = *** host=h"},
	    {"catalog = postgresql://u:pw@h:5432/db?password=x&sslmode=require", 0, "catalog",
	     "postgresql://u:***@h:5432/db?password=***&sslmode=require"},
	    {"catalog = dbname=x mypassword=keep", 0, "catalog", "dbname=x mypassword=keep"},
	};
	check_cases_after("[router]\nauth_file = u\n", cases, sizeof(cases) / sizeof(cases[0]));
}

struct foreach_ctx {
	size_t seen;
	bool saw_catalog_secret;
	size_t stop_after;
};

static int count_entry(const struct config_entry *e, const char *value, void *arg)
{
	struct foreach_ctx *fc = arg;
	if (!strcmp(e->key, "catalog") && strstr(value, "s3cret"))
		fc->saw_catalog_secret = true;
	fc->seen++;
	return fc->seen == fc->stop_after ? 7 : 0;
}

static void test_config_foreach_visits_every_entry(void **state)
{
	(void)state;
	struct config *cfg = NULL;
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_load(fixture("config_full.ini"), &cfg, &em), 0);
	size_t n;
	config_entries(&n);
	struct foreach_ctx fc = {0, false, 0};
	assert_int_equal(config_foreach(cfg, count_entry, &fc), 0);
	assert_int_equal(fc.seen, n);
	assert_false(fc.saw_catalog_secret);
	struct foreach_ctx stop = {0, false, 3};
	assert_int_equal(config_foreach(cfg, count_entry, &stop), 7);
	assert_int_equal(stop.seen, 3);
	char small[8];
	const struct config_entry *e = config_entry_find("router", "server_reset_query");
	size_t need = config_format_value(cfg, e, small, sizeof(small));
	assert_int_equal(need, strlen(cfg->server_reset_query));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	config_unref(cfg);
}

static void test_config_markdown_lists_every_key(void **state)
{
	(void)state;
	char *doc = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&doc, &len);
	assert_non_null(f);
	config_print_markdown(f);
	fclose(f);
	size_t n;
	const struct config_entry *e = config_entries(&n);
	for (size_t i = 0; i < n; i++) {
		char cell[128];
		snprintf(cell, sizeof(cell), "| `%s` |", e[i].key);
		assert_non_null(strstr(doc, cell));
	}
	assert_non_null(strstr(doc, "| `listen_port` | integer (allowed: 1..65535) | `6432` | "
				    "restart |"));
	assert_non_null(strstr(doc, "| `max_packet_size` | size (allowed: 8kB..1GB) | `64MB` | "
				    "yes |"));
	size_t rows = 0;
	for (const char *p = doc; (p = strstr(p, "\n| `")); p++)
		rows++;
	assert_int_equal(rows, n);
	free(doc);
}

/* ---- reload ---- */

static void test_config_reload_rejects_non_reloadable_change(void **state)
{
	(void)state;
	struct config *a = load_ok(BASE "listen_port = 6432\nworkers = 2\n");
	struct config *b = load_ok(BASE "listen_port = 6433\nworkers = 2\n");
	struct config *c = load_ok(BASE "listen_port = 6433\nworkers = 3\nmetrics_listen = h:1\n");
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_check_reload(a, b, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "listen_port: changed from \"6432\" to \"6433\""));
	assert_non_null(strstr(em.text, "restart"));
	assert_int_equal(config_check_reload(a, c, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "(and 2 more keys that need a restart)"));
	config_unref(a);
	config_unref(b);
	config_unref(c);
}

static void test_config_reload_accepts_reloadable_change(void **state)
{
	(void)state;
	struct config *a = load_ok(BASE "pool_mode = transaction\ndefault_pool_size = 5\n");
	struct config *b = load_ok(BASE "pool_mode = session\ndefault_pool_size = 50\n"
					"admin_users = x\nlog_level = debug\n"
					"replica_max_lag_ms = 1\n");
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_check_reload(a, b, &em), 0);
	assert_int_equal(config_check_reload(a, a, &em), 0);
	config_unref(a);
	config_unref(b);
}

static void test_config_reload_hides_catalog_password(void **state)
{
	(void)state;
	struct config *a = load_ok("[router]\nauth_file = u\ncatalog = dbname=x password=old\n"
				   "[router]\n"); /* a second [router] header is fine */
	struct config *b = load_ok("[router]\nauth_file = u\ncatalog = dbname=x password=new\n");
	struct sr_errmsg em = {{0}};
	assert_int_equal(config_check_reload(a, b, &em), SR_EINVAL);
	assert_non_null(strstr(em.text, "catalog: changed"));
	assert_non_null(strstr(em.text, "\"dbname=x password=***\""));
	assert_null(strstr(em.text, "password=old"));
	assert_null(strstr(em.text, "password=new"));
	config_unref(a);
	config_unref(b);
}

/* ---- lookups ---- */

static void test_config_users_lookup(void **state)
{
	(void)state;
	struct config *cfg = load_ok(BASE "admin_users = admin, Root\nstats_users = mon\n");
	assert_true(config_is_admin_user(cfg, "admin"));
	assert_true(config_is_admin_user(cfg, "Root"));
	assert_false(config_is_admin_user(cfg, "root")); /* role names are case-sensitive */
	assert_false(config_is_admin_user(cfg, "mon"));
	assert_false(config_is_admin_user(cfg, "adm"));
	assert_true(config_is_stats_user(cfg, "mon"));
	assert_false(config_is_stats_user(cfg, "admin"));
	config_unref(cfg);
}

static bool ro(const struct config *cfg, const char *schema, const char *name)
{
	return config_function_is_read_only(cfg, schema, schema ? strlen(schema) : 0, name,
					    strlen(name));
}

static void test_config_function_is_read_only(void **state)
{
	(void)state;
	struct config *cfg = load_ok(BASE "read_only_functions = Lower, public.Now_UTC\n");
#define RO(schema, name) ro(cfg, schema, name)
	assert_true(RO(NULL, "lower"));
	assert_true(RO(NULL, "LOWER"));
	assert_true(RO("pg_catalog", "lower")); /* unqualified entry: any schema */
	assert_true(RO("public", "now_utc"));
	assert_true(RO("PUBLIC", "NOW_UTC"));
	assert_false(RO(NULL, "now_utc")); /* qualified entry needs its schema */
	assert_false(RO("other", "now_utc"));
	assert_false(RO(NULL, "lowe"));
	assert_false(RO(NULL, "lowerx"));
	assert_false(RO("public", "now"));
	/* lengths, not NUL terminators, delimit the names */
	assert_true(config_function_is_read_only(cfg, "publicXX", 6, "now_utc()", 7));
#undef RO
	config_unref(cfg);
}

/* ---- lifetime ---- */

static void test_config_refcount_frees_on_last_unref(void **state)
{
	(void)state;
	struct config *cfg = load_ok(BASE "admin_users = a, b\nmetrics_listen = h:1\n");
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(atomic_load(&cfg->refs), 2);
	config_unref(cfg);
	assert_int_equal(atomic_load(&cfg->refs), 1);
	assert_string_equal(cfg->admin_users.items[1], "b"); /* still alive */
	config_unref(cfg); /* freed here: ASan reports a leak or a double free */
	config_unref(NULL);
	config_free(NULL);
}

static void test_config_slot_swap_keeps_readers_alive(void **state)
{
	(void)state;
	struct config_slot slot;
	config_slot_init(&slot, load_ok(BASE "workers = 1\n"));
	struct config *r1 = config_slot_get(&slot);
	assert_int_equal(r1->workers, 1);
	config_slot_swap(&slot, load_ok(BASE "workers = 2\n"));
	assert_int_equal(r1->workers, 1); /* the reader's snapshot survives the swap */
	assert_int_equal(atomic_load(&r1->refs), 1);
	struct config *r2 = config_slot_get(&slot);
	assert_int_equal(r2->workers, 2);
	assert_int_equal(atomic_load(&r2->refs), 2);
	config_unref(r1);
	config_unref(r2);
	config_slot_destroy(&slot);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_full_fixture_loads_every_value),
	    cmocka_unit_test(test_config_defaults_when_keys_absent),
	    cmocka_unit_test(test_config_default_strings_are_canonical),
	    cmocka_unit_test(test_config_comments_and_whitespace),
	    cmocka_unit_test(test_config_error_unknown_key),
	    cmocka_unit_test(test_config_error_bad_int),
	    cmocka_unit_test(test_config_error_out_of_range),
	    cmocka_unit_test(test_config_error_bad_enum),
	    cmocka_unit_test(test_config_error_bad_bool),
	    cmocka_unit_test(test_config_error_duplicate_key),
	    cmocka_unit_test(test_config_error_bad_size_unit),
	    cmocka_unit_test(test_config_error_md5_without_auth_file),
	    cmocka_unit_test(test_config_error_missing_file),
	    cmocka_unit_test(test_config_error_syntax_and_sections),
	    cmocka_unit_test(test_config_error_first_of_several_is_reported),
	    cmocka_unit_test(test_config_error_line_too_long),
	    cmocka_unit_test(test_config_error_cross_key_rules),
	    cmocka_unit_test(test_config_map_cache_allows_empty_catalog),
	    cmocka_unit_test(test_config_durations),
	    cmocka_unit_test(test_config_sizes_bools_ints),
	    cmocka_unit_test(test_config_hostport_and_lists),
	    cmocka_unit_test(test_config_format_masks_passwords),
	    cmocka_unit_test(test_config_foreach_visits_every_entry),
	    cmocka_unit_test(test_config_markdown_lists_every_key),
	    cmocka_unit_test(test_config_reload_rejects_non_reloadable_change),
	    cmocka_unit_test(test_config_reload_accepts_reloadable_change),
	    cmocka_unit_test(test_config_reload_hides_catalog_password),
	    cmocka_unit_test(test_config_users_lookup),
	    cmocka_unit_test(test_config_function_is_read_only),
	    cmocka_unit_test(test_config_refcount_frees_on_last_unref),
	    cmocka_unit_test(test_config_slot_swap_keeps_readers_alive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
