/*
 * server.h - one connection from the router to a backend Postgres: connect,
 * startup and authentication (as the client's user, with the credentials in
 * auth_file), then the relay of responses back to the attached client.
 *
 * Every request forwarded to the server is recorded in a FIFO (struct
 * srv_req) so each response can be matched to its request: that is how the
 * router drops the responses of messages it injected itself (re-preparing a
 * statement, replaying SETs, a held BEGIN) and knows when a pipeline is
 * drained. Worker thread only.
 */
#ifndef SR_ROUTER_SERVER_H
#define SR_ROUTER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "router/fio.h"

struct worker;
struct pool;
struct client;
struct bufferevent;
struct evbuffer;
struct auth_backend;
struct backend_live;

enum server_state {
	SRV_CONNECTING = 0, /* TCP connect in progress */
	SRV_LOGIN,          /* startup sent, authenticating, waiting for 'Z' */
	SRV_IDLE,           /* in its pool's idle list */
	SRV_ACTIVE,         /* attached to a client */
	SRV_CLOSING,        /* queued for the reaper */
};

const char *server_state_name(enum server_state s);

/* Request kinds: what a forwarded message will be answered with. */
enum srv_req_kind {
	REQ_QUERY = 0, /* 'Q' or 'F': everything until 'Z' */
	REQ_PARSE,     /* '1' */
	REQ_BIND,      /* '2' */
	REQ_DESCRIBE,  /* ['t'] then 'T' or 'n' */
	REQ_EXECUTE,   /* rows, then 'C', 'I' or 's' */
	REQ_CLOSE,     /* '3' */
	REQ_SYNC,      /* 'Z' */
};

struct srv_req {
	uint8_t kind; /* enum srv_req_kind */
	bool drop;    /* injected by the router: do not forward the response */
	bool capture; /* its one-column DataRow is the client's write LSN */
	uint64_t start_us; /* REQ_QUERY/REQ_SYNC sent by the client: when forwarded */
	uint64_t epoch;    /* map epoch the worker routed by when it was queued */
};

/* A statement prepared on this server: name and a hash of text + types. */
struct srv_stmt {
	char *name;
	uint64_t fingerprint;
};

/* A run-time parameter the router SET on this server (name lower-case,
 * value as SQL text). */
struct kv {
	char *name;
	char *value;
};

struct server {
	struct worker *w;
	struct pool *pool;
	struct bufferevent *bev;
	struct fio fio;            /* fast path once logged in */
	enum server_state state;
	struct server *next;       /* idle list / reap list */
	struct server *all_prev, *all_next; /* worker's list of all servers */
	struct client *client;     /* attached client or NULL */
	uint64_t id;
	uint32_t be_pid, be_secret;
	char txstatus;             /* from the last 'Z' */
	struct auth_backend *auth;

	struct srv_req *q;
	uint32_t q_head, q_len, q_cap;

	struct srv_stmt *stmts;
	int n_stmts, cap_stmts;
	struct kv *params;          /* what the router SET here */
	int n_params, cap_params;

	struct backend_live *live;  /* counters of the backend while attached */
	uint64_t created_ms;
	uint64_t last_used_ms;
	bool reset_pending;         /* session mode: run server_reset_query */
	bool broken;                /* protocol state unknown: never reuse */
};

/* Server connections of the whole process (all workers). Any thread. */
int server_count(void);

/* Open a new connection for pool p. The server enters SRV_CONNECTING; when
 * logged in it is handed to pool via pool_server_ready(). NULL on ENOMEM. */
struct server *server_connect(struct pool *p);

/* Queue a request record (when forwarding or injecting a message). */
int server_push_req(struct server *s, enum srv_req_kind kind, bool drop) SR_MUST_CHECK;
bool server_queue_empty(const struct server *s);
/* Smallest epoch among the requests still queued on s; UINT64_MAX if none. */
uint64_t server_min_req_epoch(const struct server *s);

/* The server's output buffer, to forward messages into. */
struct evbuffer *server_output(struct server *s);

/* Prepared-statement bookkeeping. */
const struct srv_stmt *server_find_stmt(const struct server *s, const char *name);
int server_add_stmt(struct server *s, const char *name, uint64_t fingerprint) SR_MUST_CHECK;
void server_forget_stmt(struct server *s, const char *name);

/* Parameter bookkeeping: what value (SQL text) the router last SET. */
const char *server_param(const struct server *s, const char *name);
int server_set_param(struct server *s, const char *name, const char *value) SR_MUST_CHECK;
void server_clear_param(struct server *s, const char *name);
/* After DISCARD ALL / server_reset_query: no statements, no parameters. */
void server_forget_all(struct server *s);

/* Close and queue for freeing; detaches from its client and pool. */
void server_close(struct server *s, const char *why);
void server_free(struct server *s);

/* Process buffered responses now (after attaching a client whose server
 * already has input, e.g. a notice). */
void server_process_input(struct server *s);

/* Send a CancelRequest for the backend running on s (new connection). */
void server_send_cancel(struct worker *w, const char *host, const char *port, uint32_t pid,
			uint32_t secret);

#endif
