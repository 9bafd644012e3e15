/*
 * idle_clients.c - opens N authenticated libpq connections to one server (the
 * router, PgBouncer or Postgres) and holds them idle, so bench/run.sh can read
 * the server process's RSS with N idle clients. Connections are opened
 * non-blocking, at most BATCH in flight at a time, each one checked with a
 * "SELECT 1" round trip (so the proxy really finished authentication).
 *
 * Usage: idle_clients CONNINFO N [HOLD_SECONDS]   (HOLD_SECONDS default 600)
 * Prints "connected OK FAILED" on stdout (flushed) once every attempt ended,
 * then holds the connections until SIGTERM/SIGINT or HOLD_SECONDS, closes them
 * and exits 0 if all N connected, 1 otherwise. Needs `ulimit -n` > N.
 * Single-threaded; a benchmark helper, not part of the router.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

enum { BATCH = 64 };

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* One connection attempt: its PGconn and the last PQconnectPoll status. */
struct attempt {
	PGconn *conn;
	PostgresPollingStatusType st;
};

/* check_ready: 0 if CONN answers SELECT 1, else -1 (message on stderr once). */
static int check_ready(PGconn *conn, int *reported)
{
	PGresult *r = PQexec(conn, "SELECT 1");
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok && !*reported) {
		fprintf(stderr, "idle_clients: SELECT 1 failed: %s", PQerrorMessage(conn));
		*reported = 1;
	}
	PQclear(r);
	return ok ? 0 : -1;
}

/* step: advance one attempt after poll() said it is ready; 1 when it ended. */
static int step(struct attempt *a)
{
	a->st = PQconnectPoll(a->conn);
	return a->st == PGRES_POLLING_OK || a->st == PGRES_POLLING_FAILED;
}

/* open_batch: run COUNT attempts from CONNS[0..COUNT) to completion; returns how many
 * connected (failed ones are PQfinish'ed and set to NULL). */
static int open_batch(const char *conninfo, PGconn **conns, int count, int *reported)
{
	struct attempt at[BATCH];
	struct pollfd pfd[BATCH];
	int pending = count, ok = 0;
	time_t deadline = time(NULL) + 120; /* libpq leaves connect_timeout to us here */
	for (int i = 0; i < count; i++) {
		at[i].conn = PQconnectStart(conninfo);
		at[i].st = at[i].conn && PQstatus(at[i].conn) != CONNECTION_BAD
			       ? PGRES_POLLING_WRITING
			       : PGRES_POLLING_FAILED;
		if (at[i].st == PGRES_POLLING_FAILED)
			pending--;
	}
	while (pending > 0 && !g_stop && time(NULL) < deadline) {
		int map[BATCH], n = 0;
		for (int i = 0; i < count; i++) {
			if (at[i].st != PGRES_POLLING_READING && at[i].st != PGRES_POLLING_WRITING)
				continue;
			pfd[n].fd = PQsocket(at[i].conn);
			pfd[n].events = at[i].st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			pfd[n].revents = 0;
			map[n++] = i;
		}
		if (poll(pfd, (nfds_t)n, 1000) < 0 && errno != EINTR)
			break;
		for (int k = 0; k < n; k++)
			if (pfd[k].revents && step(&at[map[k]]))
				pending--;
	}
	for (int i = 0; i < count; i++) {
		conns[i] = at[i].conn;
		if (at[i].st == PGRES_POLLING_OK && check_ready(conns[i], reported) == 0) {
			ok++;
			continue;
		}
		if (conns[i] && !*reported) {
			fprintf(stderr, "idle_clients: connect failed: %s",
				PQerrorMessage(conns[i]));
			*reported = 1;
		}
		PQfinish(conns[i]);
		conns[i] = NULL;
	}
	return ok;
}

static void hold(long seconds)
{
	time_t end = time(NULL) + seconds;
	while (!g_stop && time(NULL) < end)
		sleep(1);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: idle_clients CONNINFO N [HOLD_SECONDS]\n");
		return 2;
	}
	long n = atol(argv[2]);
	long hold_s = argc > 3 ? atol(argv[3]) : 600;
	if (n < 1) {
		fprintf(stderr, "idle_clients: N must be positive\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	PGconn **conns = calloc((size_t)n, sizeof(*conns));
	if (!conns)
		return 2;
	long ok = 0;
	int reported = 0;
	for (long i = 0; i < n && !g_stop; i += BATCH) {
		int count = n - i < BATCH ? (int)(n - i) : BATCH;
		ok += open_batch(argv[1], conns + i, count, &reported);
	}
	printf("connected %ld %ld\n", ok, n - ok);
	fflush(stdout);
	hold(hold_s);
	for (long i = 0; i < n; i++)
		PQfinish(conns[i]);
	free(conns);
	return ok == n ? 0 : 1;
}
