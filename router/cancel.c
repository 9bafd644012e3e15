/*
 * cancel.c - CancelRequest routing between workers (see router/cancel.h).
 */
#include "router/cancel.h"

#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>

#include "common/log.h"
#include "router/client.h"
#include "router/pool.h"
#include "router/server.h"
#include "router/worker.h"

struct cancel_item {
	uint32_t pid, secret;
	struct cancel_item *next;
};

/* One inbox per worker, indexed by worker id. */
struct inbox {
	pthread_mutex_t mu;
	struct cancel_item *head;
	struct event *ev;
	struct worker *w;
};

static struct inbox *inboxes;
static int n_inboxes;

void cancel_set_workers(struct worker *workers, int n)
{
	(void)workers;
	inboxes = calloc((size_t)n, sizeof(*inboxes));
	n_inboxes = inboxes ? n : 0;
	for (int i = 0; i < n_inboxes; i++)
		pthread_mutex_init(&inboxes[i].mu, NULL);
}

/* Owner thread: find the client and cancel what its server runs. */
static void do_cancel(struct worker *w, uint32_t pid, uint32_t secret)
{
	uint32_t id = pid & 0xffffffu;
	for (struct client *c = w->clients; c; c = c->next) {
		if ((c->id & 0xffffffu) != id)
			continue;
		if (c->key_pid != pid || c->key_secret != secret) {
			log_warn("cancel request with a wrong secret for client %u", c->id);
			return;
		}
		struct server *s = c->server;
		if (s && s->state == SRV_ACTIVE) {
			log_info("client %u: cancel forwarded to backend %s:%s pid=%u", c->id,
				 s->pool->host, s->pool->port, s->be_pid);
			server_send_cancel(w, s->pool->host, s->pool->port, s->be_pid, s->be_secret);
		}
		return;
	}
}

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct inbox *ib = arg;
	pthread_mutex_lock(&ib->mu);
	struct cancel_item *it = ib->head;
	ib->head = NULL;
	pthread_mutex_unlock(&ib->mu);
	while (it) {
		struct cancel_item *next = it->next;
		do_cancel(ib->w, it->pid, it->secret);
		free(it);
		it = next;
	}
}

int cancel_init(struct worker *w)
{
	if (w->id >= n_inboxes)
		return SR_EINVAL;
	struct inbox *ib = &inboxes[w->id];
	ib->w = w;
	ib->ev = event_new(w->base, -1, 0, inbox_cb, ib);
	return ib->ev ? 0 : SR_ENOMEM;
}

void cancel_destroy(struct worker *w)
{
	if (w->id < n_inboxes && inboxes[w->id].ev) {
		event_free(inboxes[w->id].ev);
		inboxes[w->id].ev = NULL;
	}
}

void cancel_request(struct worker *from, uint32_t pid, uint32_t secret)
{
	int owner = (int)(pid >> 24);
	if (owner >= n_inboxes || !inboxes[owner].ev) {
		log_warn("cancel request for unknown worker %d", owner);
		return;
	}
	if (owner == from->id) {
		do_cancel(from, pid, secret);
		return;
	}
	struct cancel_item *it = malloc(sizeof(*it));
	if (!it)
		return;
	it->pid = pid;
	it->secret = secret;
	struct inbox *ib = &inboxes[owner];
	pthread_mutex_lock(&ib->mu);
	it->next = ib->head;
	ib->head = it;
	pthread_mutex_unlock(&ib->mu);
	event_active(ib->ev, 0, 0);
}
