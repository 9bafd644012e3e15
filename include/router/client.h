/*
 * client.h - one application connection: startup and authentication, then
 * the loop that reads client messages, routes each unit of work (a Query, or
 * an extended-protocol batch up to Sync/Flush) to a shard, attaches a pooled
 * server connection and forwards; responses come back through server.c.
 *
 * Session state that must survive transaction pooling lives here: the
 * startup parameters and committed SETs (replayed on whichever server serves
 * the client next), named prepared statements (re-prepared on demand), the
 * held BEGIN, and routing hints. Worker thread only.
 */
#ifndef SR_ROUTER_CLIENT_H
#define SR_ROUTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/fio.h"
#include "router/keyextract.h"
#include "router/server.h"

struct worker;
struct pool;
struct bufferevent;
struct auth_scram_server;

enum client_state {
	CL_STARTUP = 0, /* waiting for the startup packet */
	CL_AUTH,        /* challenge sent, waiting for the password message */
	CL_LOGIN,       /* authenticated, learning server parameters */
	CL_IDLE,        /* no server attached */
	CL_WAIT,        /* waiting for a server from a pool */
	CL_ACTIVE,      /* server attached */
	CL_CLOSING,     /* queued for the reaper */
};

const char *client_state_name(enum client_state s);

/* A named prepared statement as the client sees it. */
struct pstmt {
	char *name;
	char *sql;
	uint32_t sql_len;
	uint16_t n_types;
	uint32_t *types;
	uint64_t fingerprint;   /* of sql + types: servers compare by this */
	unsigned kx_gen;        /* topo generation the analysis belongs to */
	struct kx_result kx;    /* cached analysis */
};

#define CLIENT_RYW_MAX 8

struct client {
	struct worker *w;
	struct client *next, *prev;   /* worker's client list */
	struct client *reap_next;
	struct client *wait_next;     /* pool wait queue */
	struct bufferevent *bev;
	struct fio fio;               /* fast path once logged in (plain sockets) */
	enum client_state state;
	uint32_t id;
	char peer[64];
	char user[64];
	char db[64];
	bool tls;                     /* the connection is wrapped in TLS */
	bool admin;                   /* connected to the admin console */
	bool admin_write;             /* admin_users (not just stats_users) */
	int auth_step;                /* 0 = first message, 1 = SCRAM final */
	struct auth_scram_server *scram;
	uint8_t md5_salt[4];
	uint32_t key_pid, key_secret;
	uint64_t connected_ms;
	uint64_t last_active_ms;

	struct kv *startup;           /* startup packet parameters (raw values) */
	int n_startup, cap_startup;
	struct kv *sparams;           /* desired session parameters (SQL values) */
	int n_sparams, cap_sparams;
	struct kv *pending_sets;      /* SET/RESET forwarded, not yet committed */
	int n_pending, cap_pending;

	struct server *server;
	struct pool *wait_pool;
	uint64_t wait_start_ms;
	int want_backend;             /* backend chosen for the next unit */
	bool want_primary;

	char txstatus;                /* as last told to the client */
	bool in_tx;                   /* explicit transaction open */
	bool tx_read_only;
	char *held_begin;             /* BEGIN (and SETs) not sent yet */
	bool defer_held;              /* current unit runs outside the held BEGIN */
	bool tx_failed_local;         /* rolled back by the router; wait for ROLLBACK */
	bool tx_error;                /* an error happened in the current transaction */
	bool skip_to_sync;            /* extended error: discard until Sync */
	bool blocked;                 /* next unit needs another server: wait for drain */
	bool paused_wait;             /* the next transaction waits for RESUME */
	uint64_t frozen_since_ms;     /* a write has waited on a frozen range since */
	bool tx_wrote;                /* this transaction ran on a primary */
	bool ryw_pending;             /* asking the primary for its WAL position */
	struct client_ryw {
		int32_t shard;
		int64_t lsn;
	} *ryw;                       /* read_your_writes: last write LSN per shard
				       * (CLIENT_RYW_MAX, allocated at the first write) */
	int n_ryw;
	bool unit_routed;             /* the current extended batch already routed */
	bool admin_pending;

	struct pstmt **stmts;         /* each allocated alone: kx keeps self-pointers */
	int n_stmts, cap_stmts;

	bool hint_has_shard;
	int32_t hint_shard;
	char *hint_key;

	uint64_t n_queries;
	uint64_t n_tx;
};

/* Accept a new connection on worker w (fd is non-blocking). */
void client_accept(struct worker *w, int fd, const char *peer);

/* Pool callbacks: a server is ready for c / no server could be had. */
void client_server_ready(struct client *c, struct server *s);
void client_server_failed(struct client *c, const char *sqlstate, const char *message);

/* From server.c: a response has been relayed and the server queue drained
 * with ReadyForQuery status txstatus. */
void client_server_idle(struct client *c, char txstatus);
/* From server.c: the attached server died. */
void client_server_lost(struct client *c, const char *why);
/* From server.c: a CommandComplete/ErrorResponse seen for c's request. */
void client_saw_command(struct client *c, const char *tag, size_t len);
void client_saw_error(struct client *c, const char *sqlstate);
/* The transaction status to show the client for a server's ReadyForQuery. */
char client_visible_status(const struct client *c, char server_status);

/* Send an ErrorResponse (FATAL closes the connection after flushing). */
void client_error(struct client *c, bool fatal, const char *sqlstate, const char *message,
		  const char *detail, const char *hint);
void client_close(struct client *c, const char *why);
/* Give the attached server back: to the pool when it is clean (after the
 * server_reset_query in session mode), else it finishes detached. */
void client_detach_server(struct client *c);
void client_free(struct client *c);

/* read_your_writes: the WAL position a replica of shard must have replayed
 * before it may serve c (0 = any). */
int64_t client_ryw_lsn(const struct client *c, int32_t shard);
/* From server.c: the primary's WAL position after c's write transaction. */
void client_note_write_lsn(struct client *c, int32_t shard, int64_t lsn);

/* The pool c waited on could not connect to its replica: route again. */
void client_retry_route(struct client *c);

/* PAUSE ended (or re-check): process the waiting unit again. */
void client_resume_paused(struct client *c);

/* Resume reading after backpressure or a wait. */
void client_resume(struct client *c);

/* c's connection buffers (whether c runs on its bufferevent or on fio's
 * bare mode): the output (writing to it schedules the flush), the input
 * (drain only), the bytes not yet written, reading on/off. */
struct evbuffer *client_output(struct client *c);
struct evbuffer *client_input(struct client *c);
size_t client_output_length(struct client *c);
void client_read_enable(struct client *c, bool on);
/* After login: a plain connection switches to fio's bare mode (c->bev is
 * freed; an idle client then holds no buffers). */
void client_go_bare(struct client *c);

/* (Re)install c's callbacks, watermarks and read/write on c->bev. */
void client_setup_bev(struct client *c);

#endif
