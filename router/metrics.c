/*
 * metrics.c - the Prometheus endpoint (see router/metrics.h): the rendering
 * of the text exposition from a topo snapshot and the process atomics, and
 * the evhttp thread that serves it.
 */
#include "router/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "router/catwatch.h"
#include "router/config.h"
#include "router/server.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/map.h"

/* ---- rendering ------------------------------------------------------------------------ */

struct render {
	struct evbuffer *out;
	int rc;
};

static void emit(struct render *r, const char *fmt, ...) SR_PRINTF(2, 3);

static void emit(struct render *r, const char *fmt, ...)
{
	if (r->rc)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (evbuffer_add_vprintf(r->out, fmt, ap) < 0)
		r->rc = SR_ENOMEM;
	va_end(ap);
}

static void family(struct render *r, const char *name, const char *type, const char *help)
{
	emit(r, "# HELP shardrouter_%s %s\n# TYPE shardrouter_%s %s\n", name, help, name, type);
}

/* A millionth-unit integer as an exact decimal ("0.00025", "2.5", "10", "-1.5"). */
static void fmt_micro(int64_t v, char *buf, size_t len)
{
	const char *sign = v < 0 ? "-" : "";
	uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	uint64_t frac = a % 1000000u;
	if (frac == 0) {
		snprintf(buf, len, "%s%" PRIu64, sign, a / 1000000u);
		return;
	}
	char f[8];
	snprintf(f, sizeof(f), "%06" PRIu64, frac);
	for (int i = 5; i > 0 && f[i] == '0'; i--)
		f[i] = '\0';
	snprintf(buf, len, "%s%" PRIu64 ".%s", sign, a / 1000000u, f);
}

/* s with \, " and newline escaped as a label value (truncated to fit). */
static void escape_label(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
}

/* The labels identifying backend b: shard, role, replica, backend. */
static void backend_labels(const struct backend *b, char *buf, size_t len)
{
	char hp[sizeof(b->host) + sizeof(b->port) + 2];
	char esc[2 * sizeof(hp) + 1];
	snprintf(hp, sizeof(hp), "%s:%s", b->host, b->port);
	escape_label(hp, esc, sizeof(esc));
	snprintf(buf, len, "shard=\"%d\",role=\"%s\",replica=\"%d\",backend=\"%s\"", b->shard_id,
		 backend_role_name(b->role), b->replica_no, esc);
}

#define LABELS_LEN 1200

/* Per-backend gauges and counters: one value each. */
enum bvalue {
	BV_LAG_BYTES = 0,
	BV_LAG_SECONDS,
	BV_UP,
	BV_IN_ROTATION,
	BV_OUTSTANDING,
	BV_QUERIES,
};

static const struct {
	enum bvalue v;
	const char *name, *type, *help;
	bool replicas_only;
} bfams[] = {
    {BV_LAG_BYTES, "replica_lag_bytes", "gauge",
     "Replay lag of the replica behind its primary in bytes of WAL.", true},
    {BV_LAG_SECONDS, "replica_lag_seconds", "gauge",
     "Replay lag of the replica behind its primary in seconds.", true},
    {BV_UP, "backend_up", "gauge",
     "1 when the last health check found the backend reachable in the right role.", false},
    {BV_IN_ROTATION, "backend_in_rotation", "gauge",
     "1 when the backend may serve reads (replicas within the lag limits; primaries).", false},
    {BV_OUTSTANDING, "backend_outstanding_queries", "gauge",
     "Queries running on the backend now (all workers).", false},
    {BV_QUERIES, "queries_total", "counter", "Transactions routed to the backend and completed.",
     false},
};

static void bvalue_format(enum bvalue v, const struct backend_live *l, char *buf, size_t len)
{
	switch (v) {
	case BV_LAG_BYTES:
		snprintf(buf, len, "%lld", (long long)atomic_load(&l->lag_bytes));
		return;
	case BV_LAG_SECONDS:
		fmt_micro((int64_t)atomic_load(&l->lag_ms) * 1000, buf, len);
		return;
	case BV_UP:
		snprintf(buf, len, "%d", atomic_load(&l->healthy) ? 1 : 0);
		return;
	case BV_IN_ROTATION:
		snprintf(buf, len, "%d", atomic_load(&l->in_rotation) ? 1 : 0);
		return;
	case BV_OUTSTANDING:
		snprintf(buf, len, "%d", atomic_load(&l->outstanding));
		return;
	case BV_QUERIES:
		snprintf(buf, len, "%llu", (unsigned long long)atomic_load(&l->queries));
		return;
	}
	snprintf(buf, len, "0");
}

static void render_backend_values(struct render *r, const struct topo *t)
{
	char labels[LABELS_LEN], val[32];
	for (size_t f = 0; f < sizeof(bfams) / sizeof(bfams[0]); f++) {
		family(r, bfams[f].name, bfams[f].type, bfams[f].help);
		for (int i = 0; t && i < t->n_backends; i++) {
			const struct backend *b = &t->backends[i];
			if (bfams[f].replicas_only && b->role != ROLE_REPLICA)
				continue;
			backend_labels(b, labels, sizeof(labels));
			bvalue_format(bfams[f].v, b->live, val, sizeof(val));
			emit(r, "shardrouter_%s{%s} %s\n", bfams[f].name, labels, val);
		}
	}
}

/* One backend's histogram: cumulative buckets; _count is the +Inf bucket (so
 * the two always agree even while workers add to the counters). */
static void render_histogram_one(struct render *r, const struct backend *b)
{
	char labels[LABELS_LEN], le[32], sum[32];
	backend_labels(b, labels, sizeof(labels));
	unsigned long long cum = 0;
	for (int i = 0; i < TOPO_LAT_BUCKETS; i++) {
		cum += atomic_load(&b->live->lat_bucket[i]);
		if (i < TOPO_LAT_BUCKETS - 1)
			fmt_micro((int64_t)topo_latency_bounds_us[i], le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		emit(r, "shardrouter_query_duration_seconds_bucket{%s,le=\"%s\"} %llu\n", labels,
		     le, cum);
	}
	fmt_micro((int64_t)atomic_load(&b->live->lat_sum_us), sum, sizeof(sum));
	emit(r, "shardrouter_query_duration_seconds_sum{%s} %s\n", labels, sum);
	emit(r, "shardrouter_query_duration_seconds_count{%s} %llu\n", labels, cum);
}

static void render_histograms(struct render *r, const struct topo *t)
{
	family(r, "query_duration_seconds", "histogram",
	       "Latency of each unit (a Query or a batch up to Sync) from forwarding to "
	       "ReadyForQuery.");
	for (int i = 0; t && i < t->n_backends; i++)
		render_histogram_one(r, &t->backends[i]);
}

static void render_global(struct render *r, const struct topo *t, const struct metrics_global *g)
{
	family(r, "client_connections", "gauge", "Client connections open now.");
	emit(r, "shardrouter_client_connections %d\n", g->client_connections);
	family(r, "server_connections", "gauge", "Connections to backends open now.");
	emit(r, "shardrouter_server_connections %d\n", g->server_connections);
	family(r, "routed_units_total", "counter", "Units (queries or batches) routed to a shard.");
	emit(r, "shardrouter_routed_units_total %llu\n", (unsigned long long)g->routed_units);
	family(r, "routing_errors_total", "counter", "Units refused at routing time, by reason.");
	for (int k = 0; k < ROUTE_ERR_KINDS; k++)
		emit(r, "shardrouter_routing_errors_total{reason=\"%s\"} %llu\n",
		     route_err_kind_name((enum route_err_kind)k),
		     (unsigned long long)g->route_errors_by[k]);
	family(r, "map_epoch", "gauge", "Epoch of the shard map the router is using.");
	emit(r, "shardrouter_map_epoch %llu\n",
	     (unsigned long long)(t && t->map ? t->map->epoch : 0));
	family(r, "catalog_lease_ok", "gauge",
	       "1 while the catalog lease is held (writes allowed), 0 once it expired.");
	emit(r, "shardrouter_catalog_lease_ok %d\n", g->lease_ok ? 1 : 0);
	family(r, "paused", "gauge", "1 while new transactions on the shard wait (PAUSE).");
	for (int i = 0; t && i < t->n_shards; i++) {
		int32_t id = t->shards[i].id;
		bool p = g->paused_all || (id >= 0 && id < 64 && (g->paused_shards >> id & 1u));
		emit(r, "shardrouter_paused{shard=\"%d\"} %d\n", (int)id, p ? 1 : 0);
	}
}

int metrics_render(struct evbuffer *out, const struct topo *t, const struct metrics_global *g)
{
	struct render r = {.out = out, .rc = 0};
	render_backend_values(&r, t);
	render_histograms(&r, t);
	render_global(&r, t, g);
	return r.rc;
}

void metrics_collect_global(struct metrics_global *out)
{
	memset(out, 0, sizeof(*out));
	out->client_connections = worker_total_clients();
	out->server_connections = server_count();
	out->routed_units = atomic_load(&g_shared.stat_units);
	for (int k = 0; k < ROUTE_ERR_KINDS; k++)
		out->route_errors_by[k] = atomic_load(&g_shared.stat_route_errors_by[k]);
	out->lease_ok = catwatch_lease_ok();
	out->paused_all = atomic_load(&g_shared.paused_all);
	out->paused_shards = atomic_load(&g_shared.paused_shards);
}

/* ---- the HTTP endpoint ---------------------------------------------------------------- */

static struct event_base *m_base;
static struct evhttp *m_http;
static struct event *m_stop_ev; /* activated by metrics_stop: breaks the loop */
static pthread_t m_thread;
static bool m_started;

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	struct metrics_global g;
	metrics_collect_global(&g);
	struct topo *t = topo_current();
	int rc = metrics_render(body, t, &g);
	topo_unref(t);
	if (rc) {
		evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void notfound_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(m_base);
}

static void *metrics_main(void *arg)
{
	(void)arg;
	event_base_dispatch(m_base);
	return NULL;
}

static void metrics_free(void)
{
	if (m_http)
		evhttp_free(m_http);
	if (m_stop_ev)
		event_free(m_stop_ev);
	m_stop_ev = NULL;
	if (m_base)
		event_base_free(m_base);
	m_http = NULL;
	m_base = NULL;
}

int metrics_start(const struct config_hostport *hp, struct sr_errmsg *em)
{
	if (m_started)
		return sr_errmsg_set(em, SR_EBUSY, "metrics endpoint already started");
	m_base = event_base_new();
	m_http = m_base ? evhttp_new(m_base) : NULL;
	m_stop_ev = m_base ? event_new(m_base, -1, 0, stop_cb, NULL) : NULL;
	if (!m_http || !m_stop_ev) {
		metrics_free();
		return sr_errmsg_set(em, SR_ENOMEM, "metrics endpoint: out of memory");
	}
	evhttp_set_allowed_methods(m_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	if (evhttp_set_cb(m_http, "/metrics", metrics_cb, NULL) != 0) {
		metrics_free();
		return sr_errmsg_set(em, SR_ENOMEM, "metrics endpoint: out of memory");
	}
	evhttp_set_gencb(m_http, notfound_cb, NULL);
	const char *host = hp->host && *hp->host ? hp->host : "0.0.0.0";
	if (!evhttp_bind_socket_with_handle(m_http, host, (ev_uint16_t)hp->port)) {
		metrics_free();
		return sr_errmsg_set(em, SR_EIO, "metrics_listen: cannot listen on %s:%d", host,
				     hp->port);
	}
	if (pthread_create(&m_thread, NULL, metrics_main, NULL) != 0) {
		metrics_free();
		return sr_errmsg_set(em, SR_EIO, "metrics endpoint: cannot start its thread");
	}
	m_started = true;
	log_info("metrics on http://%s:%d/metrics", host, hp->port);
	return 0;
}

void metrics_stop(void)
{
	if (!m_started)
		return;
	/* (an activated event stays queued even if the loop has not started yet,
	 * unlike event_base_loopbreak, which the loop's start would clear) */
	event_active(m_stop_ev, 0, 0);
	pthread_join(m_thread, NULL);
	metrics_free();
	m_started = false;
}
