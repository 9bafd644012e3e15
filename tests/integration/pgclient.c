/*
 * pgclient.c - a libpq test client for the router integration tests
 * (tests/integration/t_router*.sh). One connection per run; every mode
 * prints plain result lines on stdout that the scripts check, and errors as
 * "error SQLSTATE message" lines. Single-threaded.
 *
 *   pgclient CONNINFO insert FIRST COUNT
 *       prepared INSERT INTO orders (order_id, customer_id, status, total)
 *       VALUES ($1..$4) for order_id FIRST..FIRST+COUNT-1: even ids with all
 *       parameters in text format, odd ids with order_id and customer_id in
 *       binary (int8) format. Prints "inserted N".
 *   pgclient CONNINFO read FIRST COUNT
 *       prepared SELECT order_id, customer_id FROM orders WHERE order_id = $1,
 *       text and binary parameter alternately; a row counts as found when
 *       order_id matches and customer_id = order_id % 1000. "found N of COUNT".
 *   pgclient CONNINFO cancel AFTER_MS SQL
 *       sends SQL, PQcancel after AFTER_MS ms; prints "sqlstate S elapsed_ms N"
 *       (N = from the cancel request to the result) and then "after ok" if a
 *       SELECT 1 on the same connection works.
 *   pgclient CONNINFO state set|noset ROUNDS KEY...
 *       with "set": SET application_name, search_path and TimeZone first.
 *       Each round: SHOW TimeZone (simple query) and, for each KEY, a keyed
 *       SELECT of current_setting(...) FROM orders (extended query), 20 ms
 *       apart. Prints "seen TZ|APP|PATH" for every observation and
 *       "backend PORT PID" lines (server connections actually used).
 *   pgclient CONNINFO loop STOPFILE
 *       SELECT 1 and a keyed read every 20 ms until STOPFILE exists,
 *       reconnecting after a failure. Prints "ok N failed M" (and each
 *       failure as an "error" line).
 * Exit: 0 when the mode ran (its output says how it went), 2 on bad usage
 * or when the first connection fails (then "error SQLSTATE message").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define INT8OID 20
#define TEXTOID 25
#define NUMERICOID 1700

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void print_error(const PGresult *res, const PGconn *conn)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
	char one[512];
	snprintf(one, sizeof(one), "%s", msg ? msg : "");
	one[strcspn(one, "\n")] = '\0';
	printf("error %s %s\n", st ? st : "-----", one);
}

/* A statement whose result must be ok (PGRES_COMMAND_OK or TUPLES_OK). */
static int exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		print_error(res, conn);
	PQclear(res);
	return ok ? 0 : -1;
}

static void put_be64(char *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (int i = 7; i >= 0; i--) {
		p[i] = (char)(u & 0xff);
		u >>= 8;
	}
}

static int mode_insert(PGconn *conn, long long first, long long count)
{
	static const Oid types[4] = {INT8OID, INT8OID, TEXTOID, NUMERICOID};
	PGresult *res = PQprepare(conn, "ins",
				  "INSERT INTO orders (order_id, customer_id, status, total) "
				  "VALUES ($1, $2, $3, $4)",
				  4, types);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		print_error(res, conn);
		PQclear(res);
		return 1;
	}
	PQclear(res);
	long long inserted = 0;
	for (long long id = first; id < first + count; id++) {
		char t_id[32], t_cust[32], b_id[8], b_cust[8];
		const char *vals[4] = {t_id, t_cust, "new", "9.50"};
		int lens[4] = {0, 0, 0, 0};
		int fmts[4] = {0, 0, 0, 0};
		snprintf(t_id, sizeof(t_id), "%lld", id);
		snprintf(t_cust, sizeof(t_cust), "%lld", id % 1000);
		if (id % 2) { /* binary int8 for the key and customer_id */
			put_be64(b_id, id);
			put_be64(b_cust, id % 1000);
			vals[0] = b_id;
			vals[1] = b_cust;
			lens[0] = lens[1] = 8;
			fmts[0] = fmts[1] = 1;
		}
		res = PQexecPrepared(conn, "ins", 4, vals, lens, fmts, 0);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			inserted++;
		else
			print_error(res, conn);
		PQclear(res);
	}
	printf("inserted %lld\n", inserted);
	return 0;
}

static int mode_read(PGconn *conn, long long first, long long count)
{
	static const Oid types[1] = {INT8OID};
	PGresult *res = PQprepare(
	    conn, "rd", "SELECT order_id, customer_id FROM orders WHERE order_id = $1", 1, types);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		print_error(res, conn);
		PQclear(res);
		return 1;
	}
	PQclear(res);
	long long found = 0;
	for (long long id = first; id < first + count; id++) {
		char t_id[32], b_id[8];
		const char *vals[1] = {t_id};
		int lens[1] = {0}, fmts[1] = {0};
		snprintf(t_id, sizeof(t_id), "%lld", id);
		if (id % 2) {
			put_be64(b_id, id);
			vals[0] = b_id;
			lens[0] = 8;
			fmts[0] = 1;
		}
		res = PQexecPrepared(conn, "rd", 1, vals, lens, fmts, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			print_error(res, conn);
		else if (PQntuples(res) == 1 && atoll(PQgetvalue(res, 0, 0)) == id &&
			 atoll(PQgetvalue(res, 0, 1)) == id % 1000)
			found++;
		PQclear(res);
	}
	printf("found %lld of %lld\n", found, count);
	return 0;
}

static int mode_cancel(PGconn *conn, long after_ms, const char *sql)
{
	if (!PQsendQuery(conn, sql)) {
		print_error(NULL, conn);
		return 1;
	}
	sleep_ms(after_ms);
	PGcancel *cancel = PQgetCancel(conn);
	char errbuf[256] = "";
	double t0 = now_ms();
	if (!cancel || !PQcancel(cancel, errbuf, sizeof(errbuf)))
		printf("cancel request failed: %s\n", errbuf);
	PQfreeCancel(cancel);
	char sqlstate[6] = "-----";
	PGresult *res;
	while ((res = PQgetResult(conn)) != NULL) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (st)
			snprintf(sqlstate, sizeof(sqlstate), "%s", st);
		PQclear(res);
	}
	printf("sqlstate %s elapsed_ms %.0f\n", sqlstate, now_ms() - t0);
	if (exec_ok(conn, "SELECT 1") == 0)
		printf("after ok\n");
	return 0;
}

/* One keyed observation of the session settings. */
static void state_observe_key(PGconn *conn, const char *key)
{
	const char *vals[1] = {key};
	PGresult *res =
	    PQexecParams(conn,
			 "SELECT current_setting('TimeZone'), current_setting('application_name'), "
			 "current_setting('search_path'), inet_server_port(), pg_backend_pid() "
			 "FROM orders WHERE order_id = $1",
			 1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		print_error(res, conn);
	else if (PQntuples(res) != 1)
		printf("error ----- key %s: %d rows\n", key, PQntuples(res));
	else {
		printf("seen %s|%s|%s\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
		       PQgetvalue(res, 0, 2));
		printf("backend %s %s\n", PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
	}
	PQclear(res);
}

static int mode_state(PGconn *conn, int set, int rounds, int nkeys, char **keys)
{
	if (set && (exec_ok(conn, "SET application_name = 'pgclient_state'") ||
		    exec_ok(conn, "SET search_path = pgclient_schema, public") ||
		    exec_ok(conn, "SET TimeZone = 'Pacific/Chatham'")))
		return 1;
	for (int r = 0; r < rounds; r++) {
		PGresult *res = PQexec(conn, "SHOW TimeZone");
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			printf("show %s\n", PQgetvalue(res, 0, 0));
		else
			print_error(res, conn);
		PQclear(res);
		for (int k = 0; k < nkeys; k++)
			state_observe_key(conn, keys[k]);
		sleep_ms(20);
	}
	return 0;
}

static int mode_loop(const char *conninfo, PGconn *conn, const char *stopfile)
{
	long ok = 0, failed = 0;
	while (access(stopfile, F_OK) != 0) {
		if (!conn || PQstatus(conn) != CONNECTION_OK) {
			PQfinish(conn);
			conn = PQconnectdb(conninfo);
			if (PQstatus(conn) != CONNECTION_OK) {
				failed++;
				print_error(NULL, conn);
				sleep_ms(100);
				continue;
			}
		}
		if (exec_ok(conn, "SELECT 1") == 0 &&
		    exec_ok(conn, "SELECT order_id FROM orders WHERE order_id = 1") == 0)
			ok++;
		else
			failed++;
		sleep_ms(20);
	}
	printf("ok %ld failed %ld\n", ok, failed);
	PQfinish(conn);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pgclient CONNINFO insert|read FIRST COUNT\n"
			"       pgclient CONNINFO cancel AFTER_MS SQL\n"
			"       pgclient CONNINFO state set|noset ROUNDS KEY...\n"
			"       pgclient CONNINFO loop STOPFILE\n");
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		usage();
		return 2;
	}
	const char *mode = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	PGconn *conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		print_error(NULL, conn);
		if (strcmp(mode, "loop") == 0)
			return mode_loop(argv[1], conn, argv[3]);
		PQfinish(conn);
		return 2;
	}
	int rc = 2;
	if ((strcmp(mode, "insert") == 0 || strcmp(mode, "read") == 0) && argc == 5) {
		long long first = atoll(argv[3]), count = atoll(argv[4]);
		rc = mode[0] == 'i' ? mode_insert(conn, first, count)
				    : mode_read(conn, first, count);
	} else if (strcmp(mode, "cancel") == 0 && argc == 5) {
		rc = mode_cancel(conn, atol(argv[3]), argv[4]);
	} else if (strcmp(mode, "state") == 0 && argc >= 6) {
		rc = mode_state(conn, strcmp(argv[3], "set") == 0, atoi(argv[4]), argc - 5,
				argv + 5);
	} else if (strcmp(mode, "loop") == 0 && argc == 4) {
		return mode_loop(argv[1], conn, argv[3]);
	} else {
		usage();
	}
	PQfinish(conn);
	return rc;
}
