/*
 * test_metrics.c - cmocka tests for router/metrics.c: the Prometheus text
 * exposition rendered from a hand-built topo (one shard, a primary and a
 * replica; live counters set directly or through topo_count_latency) and
 * hand-set process values, checked line by line; and the HTTP endpoint
 * itself on a free loopback port (200 on /metrics, 404 elsewhere).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/thread.h>

#include "router/config.h"
#include "router/metrics.h"
#include "router/topo.h"
#include "shardmap/map.h"

struct fake {
	struct sm_map map;
	struct backend_live live[3];
	struct backend backends[3];
	int replicas[2];
	struct topo_shard shards[2];
	struct topo topo;
};

static void fake_backend(struct fake *f, int i, int32_t shard, enum backend_role role, int no,
			 const char *host, const char *port)
{
	struct backend *b = &f->backends[i];
	b->index = i;
	b->shard_id = shard;
	b->role = role;
	b->replica_no = no;
	snprintf(b->host, sizeof(b->host), "%s", host);
	snprintf(b->port, sizeof(b->port), "%s", port);
	b->live = &f->live[i];
	atomic_store(&f->live[i].healthy, true);
	atomic_store(&f->live[i].in_rotation, true);
}

/* Shard 0: primary 127.0.0.1:5501 and replica 1 127.0.0.1:5502; shard 1:
 * primary 127.0.0.1:5511. Map epoch 7. */
static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->map.epoch = 7;
	fake_backend(f, 0, 0, ROLE_PRIMARY, 0, "127.0.0.1", "5501");
	fake_backend(f, 1, 0, ROLE_REPLICA, 1, "127.0.0.1", "5502");
	fake_backend(f, 2, 1, ROLE_PRIMARY, 0, "127.0.0.1", "5511");
	f->replicas[0] = 1;
	f->shards[0] = (struct topo_shard){
	    .id = 0, .primary = 0, .n_replicas = 1, .replicas = &f->replicas[0]};
	f->shards[1] = (struct topo_shard){
	    .id = 1, .primary = 2, .n_replicas = 0, .replicas = &f->replicas[1]};
	f->topo.map = &f->map;
	f->topo.n_backends = 3;
	f->topo.backends = f->backends;
	f->topo.n_shards = 2;
	f->topo.shards = f->shards;
	return f;
}

/* The exposition as a NUL-terminated string (caller frees). */
static char *render(const struct topo *t, const struct metrics_global *g)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	assert_int_equal(metrics_render(b, t, g), 0);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	assert_non_null(s);
	assert_int_equal(evbuffer_remove(b, s, n), (int)n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

/* True when text has exactly this line. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static int count_prefix(const char *text, const char *prefix)
{
	int c = 0;
	size_t n = strlen(prefix);
	for (const char *p = text; *p;) {
		if (strncmp(p, prefix, n) == 0)
			c++;
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	return c;
}

#define R1 "shard=\"0\",role=\"replica\",replica=\"1\",backend=\"127.0.0.1:5502\""
#define P0 "shard=\"0\",role=\"primary\",replica=\"0\",backend=\"127.0.0.1:5501\""

static void test_metrics_render_replica_lag_only_for_replicas(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	atomic_store(&f->live[1].lag_bytes, 4096);
	atomic_store(&f->live[1].lag_ms, 1500);
	struct metrics_global g = {0};
	char *s = render(&f->topo, &g);
	assert_true(has_line(s, "# TYPE shardrouter_replica_lag_bytes gauge"));
	assert_true(has_line(s, "shardrouter_replica_lag_bytes{" R1 "} 4096"));
	assert_true(has_line(s, "shardrouter_replica_lag_seconds{" R1 "} 1.5"));
	assert_int_equal(count_prefix(s, "shardrouter_replica_lag_bytes{"), 1);
	assert_int_equal(count_prefix(s, "shardrouter_replica_lag_seconds{"), 1);
	free(s);
	free(f);
}

static void test_metrics_render_backend_gauges_and_counter(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	atomic_store(&f->live[1].healthy, false);
	atomic_store(&f->live[1].in_rotation, false);
	atomic_store(&f->live[0].outstanding, 3);
	atomic_store(&f->live[0].queries, 42);
	struct metrics_global g = {0};
	char *s = render(&f->topo, &g);
	assert_true(has_line(s, "shardrouter_backend_up{" R1 "} 0"));
	assert_true(has_line(s, "shardrouter_backend_up{" P0 "} 1"));
	assert_true(has_line(s, "shardrouter_backend_in_rotation{" R1 "} 0"));
	assert_true(has_line(s, "shardrouter_backend_outstanding_queries{" P0 "} 3"));
	assert_true(has_line(s, "# TYPE shardrouter_queries_total counter"));
	assert_true(has_line(s, "shardrouter_queries_total{" P0 "} 42"));
	assert_true(has_line(s, "shardrouter_queries_total{" R1 "} 0"));
	assert_int_equal(count_prefix(s, "shardrouter_backend_up{"), 3);
	free(s);
	free(f);
}

static void test_metrics_render_histogram_cumulative(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	const uint64_t us[] = {50, 100, 101, 3000000, 20000000};
	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++)
		topo_count_latency(&f->live[1], us[i]);
	struct metrics_global g = {0};
	char *s = render(&f->topo, &g);
	const char *h = "shardrouter_query_duration_seconds";
	char line[512];
	assert_true(has_line(s, "# TYPE shardrouter_query_duration_seconds histogram"));
	const struct {
		const char *le;
		int n;
	} want[] = {{"0.0001", 2}, {"0.00025", 3}, {"1", 3},   {"2.5", 3},
		    {"5", 4},	   {"10", 4},	   {"+Inf", 5}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(line, sizeof(line), "%s_bucket{" R1 ",le=\"%s\"} %d", h, want[i].le,
			 want[i].n);
		assert_true(has_line(s, line));
	}
	snprintf(line, sizeof(line), "%s_sum{" R1 "} 23.000251", h);
	assert_true(has_line(s, line));
	snprintf(line, sizeof(line), "%s_count{" R1 "} 5", h);
	assert_true(has_line(s, line));
	snprintf(line, sizeof(line), "%s_count{" P0 "} 0", h);
	assert_true(has_line(s, line));
	/* one bucket line per bound plus +Inf, for each of the three backends */
	assert_int_equal(count_prefix(s, "shardrouter_query_duration_seconds_bucket{"),
			 3 * TOPO_LAT_BUCKETS);
	free(s);
	free(f);
}

static void test_metrics_render_global_values(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	struct metrics_global g = {.client_connections = 5,
				   .server_connections = 2,
				   .routed_units = 99,
				   .lease_ok = true,
				   .paused_shards = 1u << 1};
	g.route_errors_by[ROUTE_ERR_NOT_SUPPORTED] = 4;
	g.route_errors_by[ROUTE_ERR_LEASE] = 1;
	char *s = render(&f->topo, &g);
	assert_true(has_line(s, "shardrouter_client_connections 5"));
	assert_true(has_line(s, "shardrouter_server_connections 2"));
	assert_true(has_line(s, "shardrouter_routed_units_total 99"));
	assert_true(has_line(s, "shardrouter_routing_errors_total{reason=\"not_supported\"} 4"));
	assert_true(has_line(s, "shardrouter_routing_errors_total{reason=\"catalog_lease\"} 1"));
	assert_true(has_line(s, "shardrouter_routing_errors_total{reason=\"bad_key\"} 0"));
	assert_int_equal(count_prefix(s, "shardrouter_routing_errors_total{"), ROUTE_ERR_KINDS);
	assert_true(has_line(s, "shardrouter_map_epoch 7"));
	assert_true(has_line(s, "shardrouter_catalog_lease_ok 1"));
	assert_true(has_line(s, "shardrouter_paused{shard=\"0\"} 0"));
	assert_true(has_line(s, "shardrouter_paused{shard=\"1\"} 1"));
	free(s);
	g.lease_ok = false;
	g.paused_all = true;
	s = render(&f->topo, &g);
	assert_true(has_line(s, "shardrouter_catalog_lease_ok 0"));
	assert_true(has_line(s, "shardrouter_paused{shard=\"0\"} 1"));
	free(s);
	free(f);
}

/* Every sample's family has HELP then TYPE before its first sample, and the
 * samples of one family are contiguous. */
static void test_metrics_render_help_type_before_samples(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	struct metrics_global g = {0};
	char *s = render(&f->topo, &g);
	char seen[64][80];
	int n_seen = 0;
	char help[80] = "", type[80] = "", cur[80] = "";
	char *save = NULL;
	for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (sscanf(l, "# HELP %79s", help) == 1 || sscanf(l, "# TYPE %79s", type) == 1)
			continue;
		char name[80];
		assert_int_equal(sscanf(l, "%79[a-z_]", name), 1);
		char *suf;
		if ((suf = strstr(name, "_bucket")) || (suf = strstr(name, "_sum")) ||
		    (suf = strstr(name, "_count")))
			if (strcmp(type, name) != 0 &&
			    strncmp(type, name, (size_t)(suf - name)) == 0)
				*suf = '\0';
		assert_string_equal(help, name);
		assert_string_equal(type, name);
		if (strcmp(cur, name) != 0) {
			for (int i = 0; i < n_seen; i++)
				assert_string_not_equal(seen[i], name);
			assert_true(n_seen < 64);
			snprintf(seen[n_seen++], sizeof(seen[0]), "%s", name);
			snprintf(cur, sizeof(cur), "%s", name);
		}
	}
	assert_true(n_seen >= 14);
	free(s);
	free(f);
}

static void test_metrics_render_without_topo(void **state)
{
	(void)state;
	struct metrics_global g = {.lease_ok = true};
	char *s = render(NULL, &g);
	assert_true(has_line(s, "shardrouter_map_epoch 0"));
	assert_true(has_line(s, "# TYPE shardrouter_backend_up gauge"));
	assert_int_equal(count_prefix(s, "shardrouter_backend_up{"), 0);
	assert_int_equal(count_prefix(s, "shardrouter_query_duration_seconds_bucket{"), 0);
	free(s);
}

static void test_metrics_render_escapes_label_values(void **state)
{
	(void)state;
	struct fake *f = fake_new();
	snprintf(f->backends[1].host, sizeof(f->backends[1].host), "we\"ird\\host");
	struct metrics_global g = {0};
	char *s = render(&f->topo, &g);
	assert_true(has_line(s, "shardrouter_backend_up{shard=\"0\",role=\"replica\",replica=\"1\","
				"backend=\"we\\\"ird\\\\host:5502\"} 1"));
	free(s);
	free(f);
}

/* ---- HTTP ---- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Send one HTTP/1.0 request, return the whole response (caller frees). */
static char *http_get(int port, const char *method, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	char req[256];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	ssize_t r;
	while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

static void test_metrics_http_serves_metrics_and_404(void **state)
{
	(void)state;
	int port = free_port();
	struct config_hostport hp = {.host = (char *)"127.0.0.1", .port = port};
	struct sr_errmsg em;
	int rc = metrics_start(&hp, &em);
	if (rc)
		fail_msg("metrics_start: %s", em.text);
	assert_int_equal(metrics_start(&hp, NULL), SR_EBUSY);
	char *r = http_get(port, "GET", "/metrics");
	assert_non_null(strstr(r, "HTTP/1.0 200") ? r : strstr(r, "HTTP/1.1 200"));
	assert_non_null(strstr(r, "Content-Type: " METRICS_CONTENT_TYPE "\r\n"));
	assert_non_null(strstr(r, "\nshardrouter_map_epoch 0\n"));
	assert_non_null(strstr(r, "\n# TYPE shardrouter_routing_errors_total counter\n"));
	free(r);
	r = http_get(port, "GET", "/metrics?x=1");
	assert_non_null(strstr(r, " 200 "));
	free(r);
	r = http_get(port, "GET", "/");
	assert_non_null(strstr(r, " 404 "));
	free(r);
	r = http_get(port, "POST", "/metrics");
	assert_null(strstr(r, " 200 "));
	free(r);
	metrics_stop();
	metrics_stop(); /* idempotent */
	/* the port is released and the endpoint can start again */
	assert_int_equal(metrics_start(&hp, NULL), 0);
	metrics_stop();
}

static void test_metrics_http_bind_failure(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	struct config_hostport hp = {.host = (char *)"127.0.0.1", .port = ntohs(a.sin_port)};
	struct sr_errmsg em = {""};
	assert_int_equal(metrics_start(&hp, &em), SR_EIO);
	assert_non_null(strstr(em.text, "metrics_listen"));
	close(fd);
	metrics_stop(); /* not started: no-op */
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metrics_render_replica_lag_only_for_replicas),
	    cmocka_unit_test(test_metrics_render_backend_gauges_and_counter),
	    cmocka_unit_test(test_metrics_render_histogram_cumulative),
	    cmocka_unit_test(test_metrics_render_global_values),
	    cmocka_unit_test(test_metrics_render_help_type_before_samples),
	    cmocka_unit_test(test_metrics_render_without_topo),
	    cmocka_unit_test(test_metrics_render_escapes_label_values),
	    cmocka_unit_test(test_metrics_http_serves_metrics_and_404),
	    cmocka_unit_test(test_metrics_http_bind_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
