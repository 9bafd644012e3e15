/*
 * fio.c - the fast I/O path of plain sockets (see router/fio.h). Owns the
 * worker's flush list. Worker thread only.
 */
#include "router/fio.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "router/worker.h"

/* One recv() reads up to this much (libevent reads at most 4096). */
#define FIO_READ_MAX (64u * 1024)

static void fio_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct bufferevent *bev = arg;
	uint8_t buf[FIO_READ_MAX];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	if (n > 0) {
		/* (a socket bufferevent keeps the end of its input frozen but for
		 * its own reader, and the front of its output but for its writer) */
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_unfreeze(in, 0);
		int rc = evbuffer_add(in, buf, (size_t)n);
		evbuffer_freeze(in, 0);
		if (rc != 0) {
			bufferevent_disable(bev, EV_READ);
			if (bev->errorcb)
				bev->errorcb(bev, BEV_EVENT_READING | BEV_EVENT_ERROR, bev->cbarg);
			return;
		}
		if (bev->readcb)
			bev->readcb(bev, bev->cbarg);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	bufferevent_disable(bev, EV_READ);
	if (bev->errorcb)
		bev->errorcb(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR),
			     bev->cbarg);
}

static void queue_flush(struct fio *f);

static void fio_out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	(void)b;
	struct fio *f = arg;
	if (info->n_added == 0 || f->queued || f->backlog || !f->direct)
		return;
	queue_flush(f);
}

bool fio_direct_begin(struct fio *f, struct worker *w, struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (f->direct || fd < 0 || !w->flush)
		return false;
	f->bev = bev;
	f->w = w;
	f->queued = f->backlog = false;
	struct evbuffer *out = bufferevent_get_output(bev);
	if (!evbuffer_add_cb(out, fio_out_cb, f))
		return false;
	/* Take over the read event; keep its enabled state. Its argument stays
	 * the bufferevent: libevent's finalizer (bufferevent_free) reads it. */
	bool reading = (bufferevent_get_enabled(bev) & EV_READ) != 0;
	event_del(&bev->ev_read);
	event_assign(&bev->ev_read, bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST | EV_FINALIZE,
		     fio_read_cb, bev);
	if (reading)
		event_add(&bev->ev_read, NULL);
	f->direct = true;
	if (evbuffer_get_length(out) > 0) {
		f->backlog = true; /* libevent's write event already owns it */
		bufferevent_enable(bev, EV_WRITE);
	} else {
		bufferevent_disable(bev, EV_WRITE);
	}
	return true;
}

void fio_written(struct fio *f)
{
	if (f->bare || !f->direct || !f->backlog || evbuffer_get_length(bufferevent_get_output(f->bev)) > 0)
		return;
	f->backlog = false;
	bufferevent_disable(f->bev, EV_WRITE);
}

void fio_release(struct fio *f)
{
	if (f->queued) {
		for (struct fio **pp = &f->w->flush_head; *pp; pp = &(*pp)->flush_next)
			if (*pp == f) {
				*pp = f->flush_next;
				break;
			}
		f->queued = false;
	}
	f->direct = false;
}

static bool bare_write(struct fio *f);
static void bare_trim(struct fio *f);

static void fio_flush(struct fio *f)
{
	if (!f->direct || f->backlog)
		return;
	if (f->bare) {
		if (bare_write(f))
			bare_trim(f);
		return;
	}
	struct bufferevent *bev = f->bev;
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t before = evbuffer_get_length(out);
	if (before == 0)
		return;
	evbuffer_unfreeze(out, 1);
	int n = evbuffer_write(out, bufferevent_getfd(bev));
	evbuffer_freeze(out, 1);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		if (bev->errorcb)
			bev->errorcb(bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR, bev->cbarg);
		return;
	}
	size_t left = evbuffer_get_length(out);
	if (left > 0) {
		f->backlog = true;
		bufferevent_enable(bev, EV_WRITE);
	}
	if (before > bev->wm_write.low && left <= bev->wm_write.low && bev->writecb)
		bev->writecb(bev, bev->cbarg);
}

void fio_flush_all(struct worker *w)
{
	struct fio *f;
	while ((f = w->flush_head) != NULL) {
		w->flush_head = f->flush_next;
		f->flush_next = NULL;
		f->queued = false;
		fio_flush(f);
	}
}

/* ---- bare mode ------------------------------------------------------------ */

static struct evbuffer *buf_get(struct worker *w)
{
	if (w->n_buf_pool > 0)
		return w->buf_pool[--w->n_buf_pool];
	return evbuffer_new();
}

static void buf_put(struct worker *w, struct evbuffer *b)
{
	if (!b)
		return;
	if (evbuffer_get_length(b) == 0 &&
	    w->n_buf_pool < (int)(sizeof(w->buf_pool) / sizeof(w->buf_pool[0])))
		w->buf_pool[w->n_buf_pool++] = b;
	else
		evbuffer_free(b);
}

static void bare_cb(evutil_socket_t fd, short what, void *arg);

/* (Re)arm f->ev for what f waits for now. */
static void bare_arm(struct fio *f)
{
	short want = (short)((f->reading && !f->closed ? EV_READ : 0) | (f->backlog ? EV_WRITE : 0));
	short have = event_initialized(&f->ev) ? event_get_events(&f->ev) & (EV_READ | EV_WRITE) : 0;
	bool pending = event_initialized(&f->ev) && event_pending(&f->ev, EV_READ | EV_WRITE, NULL);
	if (want == have && pending == (want != 0))
		return;
	if (pending)
		event_del(&f->ev);
	if (want == 0)
		return;
	if (want != have)
		event_assign(&f->ev, f->w->base, f->fd, (short)(want | EV_PERSIST), bare_cb, f);
	event_add(&f->ev, NULL);
}

bool fio_bare_begin(struct fio *f, struct worker *w, struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (f->direct || fd < 0 || !w->flush || !w->empty_in)
		return false;
	struct evbuffer *bin = bufferevent_get_input(bev), *bout = bufferevent_get_output(bev);
	struct evbuffer *in = NULL, *out = NULL;
	if ((evbuffer_get_length(bin) > 0 && !(in = buf_get(w))) ||
	    (evbuffer_get_length(bout) > 0 && !(out = buf_get(w)))) {
		buf_put(w, in);
		return false;
	}
	/* (a socket bufferevent freezes the front of its output) */
	evbuffer_unfreeze(bout, 1);
	if ((in && evbuffer_add_buffer(in, bin) != 0) || (out && evbuffer_add_buffer(out, bout) != 0)) {
		/* (nothing moved: add_buffer moves all or nothing) */
		buf_put(w, in);
		buf_put(w, out);
		return false;
	}
	memset(f, 0, sizeof(*f));
	f->w = w;
	f->fd = fd;
	f->bare = f->direct = true;
	f->in = in;
	f->out = out;
	f->wm_low = bev->wm_write.low;
	f->on_read = bev->readcb;
	f->on_write = bev->writecb;
	f->on_event = bev->errorcb;
	f->arg = bev->cbarg;
	f->reading = (bufferevent_get_enabled(bev) & EV_READ) != 0;
	/* the fd is ours now: the bufferevent must not close it */
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_setfd(bev, -1);
	bufferevent_free(bev);
	bare_arm(f);
	if (out)
		(void)fio_output(f); /* queue the flush */
	return true;
}

struct evbuffer *fio_input(struct fio *f)
{
	if (!f->bare)
		return bufferevent_get_input(f->bev);
	return f->in ? f->in : f->w->empty_in;
}

static void queue_flush(struct fio *f)
{
	struct worker *w = f->w;
	f->queued = true;
	f->flush_next = w->flush_head;
	if (!w->flush_head)
		event_active(w->flush, EV_TIMEOUT, 0);
	w->flush_head = f;
}

struct evbuffer *fio_output(struct fio *f)
{
	if (!f->bare)
		return bufferevent_get_output(f->bev);
	if (!f->out)
		f->out = buf_get(f->w);
	if (!f->out)
		return f->w->empty_in; /* out of memory: writers fail nowhere; the client stalls */
	if (!f->queued && !f->backlog)
		queue_flush(f);
	return f->out;
}

size_t fio_output_length(const struct fio *f)
{
	if (!f->bare)
		return evbuffer_get_length(bufferevent_get_output(f->bev));
	return f->out ? evbuffer_get_length(f->out) : 0;
}

void fio_read_enable(struct fio *f, bool on)
{
	if (!f->bare) {
		if (on)
			bufferevent_enable(f->bev, EV_READ);
		else
			bufferevent_disable(f->bev, EV_READ);
		return;
	}
	if (f->reading == on)
		return;
	f->reading = on;
	bare_arm(f);
}

void fio_bare_free(struct fio *f)
{
	if (!f->bare)
		return;
	fio_release(f);
	if (event_initialized(&f->ev))
		event_del(&f->ev);
	if (f->fd >= 0)
		evutil_closesocket(f->fd);
	f->fd = -1;
	if (f->in)
		evbuffer_drain(f->in, evbuffer_get_length(f->in));
	if (f->out)
		evbuffer_drain(f->out, evbuffer_get_length(f->out));
	buf_put(f->w, f->in);
	buf_put(f->w, f->out);
	f->in = f->out = NULL;
	f->bare = false;
}

/* Give back buffers that hold nothing. */
static void bare_trim(struct fio *f)
{
	if (f->in && evbuffer_get_length(f->in) == 0) {
		buf_put(f->w, f->in);
		f->in = NULL;
	}
	if (f->out && !f->queued && evbuffer_get_length(f->out) == 0) {
		buf_put(f->w, f->out);
		f->out = NULL;
	}
}

static void bare_error(struct fio *f, short what)
{
	f->closed = true;
	bare_arm(f);
	if (f->on_event)
		f->on_event(NULL, what, f->arg);
}

static void bare_read(struct fio *f)
{
	uint8_t buf[FIO_READ_MAX];
	ssize_t n = recv(f->fd, buf, sizeof(buf), 0);
	if (n > 0) {
		if (!f->in)
			f->in = buf_get(f->w);
		if (!f->in || evbuffer_add(f->in, buf, (size_t)n) != 0) {
			bare_error(f, BEV_EVENT_READING | BEV_EVENT_ERROR);
			return;
		}
		if (f->on_read)
			f->on_read(NULL, f->arg);
		if (f->bare)
			bare_trim(f);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	bare_error(f, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
}

/* Write f->out; returns false after reporting an error. */
static bool bare_write(struct fio *f)
{
	size_t before = f->out ? evbuffer_get_length(f->out) : 0;
	if (before == 0 || f->closed)
		return true;
	int n = evbuffer_write(f->out, f->fd);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		bare_error(f, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
		return false;
	}
	size_t left = evbuffer_get_length(f->out);
	bool was = f->backlog;
	f->backlog = left > 0;
	if (was != f->backlog)
		bare_arm(f);
	if (before > f->wm_low && left <= f->wm_low && f->on_write)
		f->on_write(NULL, f->arg);
	return true;
}

static void bare_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct fio *f = arg;
	if ((what & EV_WRITE) && !bare_write(f))
		return;
	if ((what & EV_READ) && f->bare && f->reading && !f->closed)
		bare_read(f);
	else if (f->bare)
		bare_trim(f);
}
