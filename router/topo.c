/*
 * topo.c - runtime topology snapshots (see router/topo.h).
 */
#include "router/topo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

const uint64_t topo_latency_bounds_us[TOPO_LAT_BUCKETS - 1] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

void topo_count_latency(struct backend_live *l, uint64_t us)
{
	int i = 0;
	while (i < TOPO_LAT_BUCKETS - 1 && us > topo_latency_bounds_us[i])
		i++;
	atomic_fetch_add_explicit(&l->lat_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->lat_sum_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->lat_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->queries, 1, memory_order_relaxed);
}

const char *backend_role_name(enum backend_role r)
{
	switch (r) {
	case ROLE_PRIMARY: return "primary";
	case ROLE_REPLICA: return "replica";
	}
	return "?";
}

/* Registry of live state by conninfo; entries are never freed while the
 * process runs (a handful per backend ever configured). */
struct live_entry {
	char *conninfo;
	struct backend_live live;
	struct live_entry *next;
};
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct live_entry *live_head;

static struct backend_live *live_get(const char *conninfo)
{
	pthread_mutex_lock(&live_mu);
	struct live_entry *e;
	for (e = live_head; e; e = e->next)
		if (strcmp(e->conninfo, conninfo) == 0)
			break;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (e)
			e->conninfo = strdup(conninfo);
		if (e && !e->conninfo) {
			free(e);
			e = NULL;
		}
		if (e) {
			atomic_init(&e->live.healthy, true);
			atomic_init(&e->live.in_rotation, true);
			e->next = live_head;
			live_head = e;
		}
	}
	pthread_mutex_unlock(&live_mu);
	return e ? &e->live : NULL;
}

static int parse_hostport(struct backend *b, struct sr_errmsg *em)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(b->conninfo, &err);
	if (!opts) {
		int rc = sr_errmsg_set(em, SR_EINVAL, "shard %d: bad conninfo \"%s\": %s", b->shard_id,
				       b->conninfo, err ? err : "out of memory");
		PQfreemem(err);
		return rc;
	}
	snprintf(b->host, sizeof(b->host), "127.0.0.1");
	snprintf(b->port, sizeof(b->port), "5432");
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
			snprintf(b->host, sizeof(b->host), "%s", o->val);
		else if (strcmp(o->keyword, "port") == 0)
			snprintf(b->port, sizeof(b->port), "%s", o->val);
	}
	PQconninfoFree(opts);
	return 0;
}

static int add_backend(struct topo *t, int32_t shard, enum backend_role role, int no,
		       const char *conninfo, struct sr_errmsg *em)
{
	struct backend *b = &t->backends[t->n_backends];
	memset(b, 0, sizeof(*b));
	b->index = t->n_backends;
	b->shard_id = shard;
	b->role = role;
	b->replica_no = no;
	b->conninfo = strdup(conninfo);
	if (!b->conninfo)
		return SR_ENOMEM;
	t->n_backends++;
	int rc = parse_hostport(b, em);
	if (rc)
		return rc;
	b->live = live_get(conninfo);
	return b->live ? 0 : SR_ENOMEM;
}

static void topo_free(struct topo *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->n_backends; i++)
		free(t->backends[i].conninfo);
	for (int i = 0; i < t->n_shards; i++)
		free(t->shards[i].replicas);
	free(t->backends);
	free(t->shards);
	sm_map_free(t->map);
	free(t);
}

int topo_build(struct sm_map *map, struct topo **out, struct sr_errmsg *em)
{
	size_t nb = 0;
	for (size_t i = 0; i < map->n_shards; i++)
		nb += 1 + map->shards[i].n_replicas;
	struct topo *t = calloc(1, sizeof(*t));
	if (!t)
		return SR_ENOMEM;
	t->backends = calloc(nb ? nb : 1, sizeof(*t->backends));
	t->shards = calloc(map->n_shards ? map->n_shards : 1, sizeof(*t->shards));
	if (!t->backends || !t->shards) {
		topo_free(t);
		return SR_ENOMEM;
	}
	int rc = 0;
	t->home_shard = map->n_shards ? map->shards[0].id : 0;
	for (size_t i = 0; i < map->n_shards && !rc; i++) {
		const struct sm_shard *s = &map->shards[i];
		struct topo_shard *ts = &t->shards[t->n_shards++];
		ts->id = s->id;
		ts->primary = t->n_backends;
		rc = add_backend(t, s->id, ROLE_PRIMARY, 0, s->primary, em);
		ts->replicas = calloc(s->n_replicas ? s->n_replicas : 1, sizeof(int));
		if (!rc && !ts->replicas)
			rc = SR_ENOMEM;
		for (size_t r = 0; r < s->n_replicas && !rc; r++) {
			ts->replicas[ts->n_replicas++] = t->n_backends;
			rc = add_backend(t, s->id, ROLE_REPLICA, (int)r + 1, s->replicas[r], em);
		}
	}
	if (rc) {
		t->map = NULL;
		topo_free(t);
		return rc;
	}
	t->map = map;
	atomic_init(&t->refs, 1);
	*out = t;
	return 0;
}

void topo_ref(struct topo *t)
{
	atomic_fetch_add(&t->refs, 1);
}

void topo_unref(struct topo *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		topo_free(t);
}

const struct topo_shard *topo_shard(const struct topo *t, int32_t id)
{
	for (int i = 0; i < t->n_shards; i++)
		if (t->shards[i].id == id)
			return &t->shards[i];
	return NULL;
}

/* The current snapshot. Readers take a reference under a tiny lock; the
 * lock is held for a pointer copy and one atomic add, once per transaction. */
static pthread_mutex_t cur_mu = PTHREAD_MUTEX_INITIALIZER;
static struct topo *cur;
static atomic_uint cur_gen;

unsigned topo_generation(void)
{
	return atomic_load_explicit(&cur_gen, memory_order_acquire);
}

void topo_publish(struct topo *t)
{
	pthread_mutex_lock(&cur_mu);
	struct topo *old = cur;
	cur = t;
	atomic_fetch_add_explicit(&cur_gen, 1, memory_order_release);
	pthread_mutex_unlock(&cur_mu);
	topo_unref(old);
}

struct topo *topo_current(void)
{
	pthread_mutex_lock(&cur_mu);
	struct topo *t = cur;
	if (t)
		topo_ref(t);
	pthread_mutex_unlock(&cur_mu);
	return t;
}
