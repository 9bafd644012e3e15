/*
 * fio.h - the fast I/O path of plain (non-TLS) sockets once a connection is
 * past its login: a client after startup, a server after its own login.
 *
 * libevent's socket bufferevent costs, per message in each direction, an
 * ioctl(FIONREAD) before every read and two epoll_ctl calls (EPOLLOUT on,
 * then off) around every write, plus an extra loop iteration before the
 * write happens. fio keeps the bufferevent as the owner of the fd and of
 * the two evbuffers (so every bufferevent_enable/disable(EV_READ) and every
 * writer into the output buffer work unchanged) but:
 *   - reads: the bufferevent's read event is re-assigned to fio's callback,
 *     which does one recv() into the input buffer and calls the
 *     bufferevent's read callback (EOF and errors go to its event callback);
 *   - writes: the bufferevent's EV_WRITE stays disabled; data appended to
 *     the output buffer queues the connection on its worker's flush list,
 *     and one worker event (activated, no syscall) writes every queued
 *     buffer with writev() at the end of the current loop iteration, before
 *     the next epoll_wait. Only what the socket does not take is left to
 *     libevent's write event (backlog), which then also calls the
 *     bufferevent's write callback as before (low watermark).
 * The write callback also runs when a direct write takes the output from
 * above the low watermark to at or below it (backpressure resumes).
 *
 * Bare mode (plain clients once logged in): the bufferevent is freed and
 * fio owns the fd, one event and the two buffers, which it borrows from its
 * worker only while they hold bytes - an idle client holds no buffer at
 * all (memory per idle connection). The callbacks are the bufferevent's,
 * called with a NULL bufferevent.
 * Worker thread only.
 */
#ifndef SR_ROUTER_FIO_H
#define SR_ROUTER_FIO_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/event_struct.h>

struct worker;
struct evbuffer;

struct fio {
	struct bufferevent *bev; /* NULL in bare mode */
	struct worker *w;
	struct fio *flush_next; /* worker's flush list */
	bool direct;            /* fio's read and write paths are installed */
	bool queued;            /* on w->flush_head */
	bool backlog;           /* output waits for EPOLLOUT */
	bool bare;              /* bare mode: the fields below */
	bool reading;           /* bare: EV_READ wanted */
	bool closed;            /* bare: EOF or error reported */
	evutil_socket_t fd;
	size_t wm_low;          /* write callback at or below this after a backlog */
	struct evbuffer *in, *out; /* bare: borrowed from the worker while non-empty */
	bufferevent_data_cb on_read, on_write;
	bufferevent_event_cb on_event;
	void *arg;
	struct event ev;        /* bare: EV_READ while reading, EV_WRITE while backlog */
};

/* Switch f (bufferevent bev of worker w, a connected plain socket whose
 * callbacks are already set) to the fast path. Returns false (and leaves
 * libevent's paths in place) when it cannot. */
bool fio_direct_begin(struct fio *f, struct worker *w, struct bufferevent *bev);

/* Bare mode: take over bev's fd and buffered bytes and free bev (safe from
 * bev's own callbacks: libevent frees it when they return). The callbacks
 * and watermark are taken from bev. False (bev untouched) when it cannot. */
bool fio_bare_begin(struct fio *f, struct worker *w, struct bufferevent *bev);
/* Bare mode accessors. The input of an fio that holds none is the worker's
 * shared empty buffer: drain it, never add to it. Getting the output
 * queues a flush. */
struct evbuffer *fio_input(struct fio *f);
struct evbuffer *fio_output(struct fio *f);
size_t fio_output_length(const struct fio *f);
void fio_read_enable(struct fio *f, bool on);
/* Bare mode: close the fd and give the buffers back. */
void fio_bare_free(struct fio *f);

/* From the bufferevent's write callback: the backlog is written. */
void fio_written(struct fio *f);

/* Before freeing the bufferevent: leave the worker's flush list. */
void fio_release(struct fio *f);

/* The worker's flush event: write every queued output buffer. */
void fio_flush_all(struct worker *w);

#endif
