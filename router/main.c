/*
 * main.c - shardrouter: parse arguments, load the config, the auth file and
 * the shard map (catalog, else the cache file), start the workers, and
 * handle signals: SIGHUP reloads, SIGTERM drains, SIGINT stops at once.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <libpq-fe.h>

#include "common/log.h"
#include "common/version.h"
#include "router/auth.h"
#include "router/cancel.h"
#include "router/catwatch.h"
#include "router/config.h"
#include "router/health.h"
#include "router/metrics.h"
#include "router/tls.h"
#include "router/topo.h"
#include "router/worker.h"
#include "shardmap/catalog.h"
#include "shardmap/map.h"


extern int g_n_workers;

static struct worker *workers;
static int n_workers;

static void usage(FILE *f)
{
	fprintf(f, "usage: shardrouter -c FILE [-d] [-v] [--version] [--help] [--print-config-doc]\n"
		   "  -c FILE   configuration file (INI, section [router])\n"
		   "  -d        run in the background (daemonise)\n"
		   "  -v        more log output (debug)\n");
}

static int load_users(const struct config *cfg, struct users_ref **out, struct sr_errmsg *em)
{
	struct users_ref *u = calloc(1, sizeof(*u));
	if (!u)
		return SR_ENOMEM;
	atomic_init(&u->refs, 1);
	if (cfg->auth_file && *cfg->auth_file) {
		int rc = auth_userlist_load(cfg->auth_file, &u->list, em);
		if (rc) {
			free(u);
			return rc;
		}
	}
	*out = u;
	return 0;
}

/* The map from the catalog (writing the cache), else from the cache. */
static int load_map(const struct config *cfg, struct sm_map **out, struct sr_errmsg *em)
{
	struct sr_errmsg cem = { "" };
	if (cfg->catalog && *cfg->catalog) {
		/* connect_timeout first: the catalog's own setting wins if it has one. */
		const char *keys[] = { "connect_timeout", "dbname", NULL };
		const char *vals[] = { "5", cfg->catalog, NULL };
		PGconn *conn = PQconnectdbParams(keys, vals, 1);
		if (PQstatus(conn) == CONNECTION_OK) {
			int rc = sm_catalog_load(conn, out, &cem);
			PQfinish(conn);
			if (rc == 0) {
				if (cfg->map_cache && *cfg->map_cache &&
				    sm_map_save(*out, cfg->map_cache, &cem))
					log_warn("could not write map cache %s: %s", cfg->map_cache,
						 cem.text);
				return 0;
			}
		} else {
			sr_errmsg_set(&cem, SR_EDB, "%s", PQerrorMessage(conn));
			PQfinish(conn);
		}
		log_warn("catalog unavailable: %s", cem.text);
	}
	if (cfg->map_cache && *cfg->map_cache) {
		struct sr_errmsg fem;
		if (sm_map_load_file(cfg->map_cache, out, &fem) == 0) {
			log_warn("started from the map cache %s (epoch %llu); the catalog could not "
				 "be read",
				 cfg->map_cache, (unsigned long long)(*out)->epoch);
			return 0;
		}
		return sr_errmsg_set(em, SR_ENOTFOUND,
				     "no shard map: catalog: %s; cache file %s: %s", cem.text,
				     cfg->map_cache, fem.text);
	}
	return sr_errmsg_set(em, SR_ENOTFOUND, "no shard map: catalog: %s (and no map_cache set)",
			     cem.text[0] ? cem.text : "not configured");
}

static void reload(const char *path)
{
	struct config *ncfg;
	struct sr_errmsg em;
	if (config_load(path, &ncfg, &em)) {
		log_error("reload failed, keeping the old settings: %s", em.text);
		return;
	}
	if (config_check_reload(g_shared.cfg, ncfg, &em)) {
		log_error("reload refused, keeping the old settings: %s", em.text);
		config_unref(ncfg);
		return;
	}
	struct users_ref *nu;
	if (load_users(ncfg, &nu, &em)) {
		log_error("reload failed (auth_file), keeping the old settings: %s", em.text);
		config_unref(ncfg);
		return;
	}
	log_set_level(ncfg->log_level);
	pthread_mutex_lock(&g_shared.mu);
	struct config *old = g_shared.cfg;
	struct users_ref *oldu = g_shared.users;
	g_shared.cfg = ncfg;
	g_shared.users = nu;
	atomic_fetch_add(&g_shared.gen, 1);
	pthread_mutex_unlock(&g_shared.mu);
	config_unref(old);
	users_ref_unref(oldu);
	log_info("configuration reloaded from %s", path);
}

static const char *cfg_path;
static struct event_base *main_base;

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		reload(cfg_path);
		return;
	}
	if (sig == SIGTERM) {
		log_info("SIGTERM: no new connections; waiting for clients to finish");
		atomic_store(&g_shared.shutting_down, true);
		for (int i = 0; i < n_workers; i++)
			worker_stop(&workers[i]);
		event_base_loopexit(main_base, NULL);
		return;
	}
	log_info("SIGINT: stopping now");
	exit(0);
}

static int start(const char *path, bool daemonize, bool verbose)
{
	struct config *cfg;
	struct sr_errmsg em;
	if (config_load(path, &cfg, &em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	log_set_level(verbose ? LOG_LVL_DEBUG : cfg->log_level);
	/* Refuse settings this build cannot honour rather than ignore them. */
	if (tls_init(cfg, &em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir) {
		fprintf(stderr, "shardrouter: %s: unix_socket_dir: Unix sockets are not supported "
				"in this version; remove the setting\n", path);
		return 1;
	}
	if (log_open(cfg->log_file, cfg->syslog, "shardrouter")) {
		fprintf(stderr, "shardrouter: cannot open log_file %s: %s\n", cfg->log_file,
			strerror(errno));
		return 1;
	}
	struct users_ref *users;
	if (load_users(cfg, &users, &em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	struct sm_map *map;
	if (load_map(cfg, &map, &em)) {
		log_error("%s", em.text);
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	struct topo *t;
	if (topo_build(map, &t, &em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		sm_map_free(map);
		return 1;
	}
	topo_publish(t);
	if (daemonize && daemon(1, 0) != 0) {
		fprintf(stderr, "shardrouter: daemon: %s\n", strerror(errno));
		return 1;
	}
	if (cfg->pidfile && *cfg->pidfile) {
		FILE *pf = fopen(cfg->pidfile, "w");
		if (!pf || fprintf(pf, "%d\n", (int)getpid()) < 0 || fclose(pf) != 0) {
			fprintf(stderr, "shardrouter: cannot write pidfile %s: %s\n", cfg->pidfile,
				strerror(errno));
			return 1;
		}
	}
	g_shared.cfg = cfg;
	g_shared.users = users;
	atomic_store(&g_shared.gen, 1);
	if (health_start(&em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	n_workers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n_workers < 1)
		n_workers = 1;
	g_n_workers = n_workers;
	workers = calloc((size_t)n_workers, sizeof(*workers));
	cancel_set_workers(workers, n_workers);
	worker_set_all(workers, n_workers);
	const char *addr = cfg->listen_addr.count ? cfg->listen_addr.items[0] : "127.0.0.1";
	int lfd = worker_listen_socket(addr, cfg->listen_port);
	if (lfd < 0) {
		fprintf(stderr, "shardrouter: cannot listen on %s:%d: %s\n", addr, cfg->listen_port,
			strerror(errno));
		log_error("cannot listen on %s:%d: %s", addr, cfg->listen_port, strerror(errno));
		return 1;
	}
	for (int i = 0; i < n_workers; i++)
		if (worker_start(&workers[i], i, lfd)) {
			fprintf(stderr, "shardrouter: cannot start worker %d on %s:%d\n", i, addr,
				cfg->listen_port);
			return 1;
		}
	if (catwatch_start(cfg, &em)) {
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	if (!catwatch_wait_lease(5000))
		log_warn("no catalog lease yet (catalog unreachable?): writes by key are refused "
			 "until this router has registered and confirmed its map; reads go on");
	if (cfg->metrics_listen.port > 0 && metrics_start(&cfg->metrics_listen, &em)) {
		log_error("%s", em.text);
		fprintf(stderr, "shardrouter: %s\n", em.text);
		return 1;
	}
	log_info("shardrouter %s listening on %s:%d workers=%d shards=%d epoch=%llu",
		 SHARDROUTER_VERSION, addr, cfg->listen_port, n_workers, t->n_shards,
		 (unsigned long long)t->map->epoch);
	main_base = event_base_new();
	struct event *sh = evsignal_new(main_base, SIGHUP, signal_cb, NULL);
	struct event *st = evsignal_new(main_base, SIGTERM, signal_cb, NULL);
	struct event *si = evsignal_new(main_base, SIGINT, signal_cb, NULL);
	event_add(sh, NULL);
	event_add(st, NULL);
	event_add(si, NULL);
	event_base_dispatch(main_base);
	for (int i = 0; i < n_workers; i++)
		worker_join(&workers[i]);
	metrics_stop();
	catwatch_stop();
	health_stop();
	log_info("shardrouter stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "print-config-doc", no_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool daemonize = false, verbose = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:dvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'd': daemonize = true; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("shardrouter %s\n", SHARDROUTER_VERSION); return 0;
		case 'P': config_print_markdown(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	cfg_path = path;
	return start(path, daemonize, verbose);
}
