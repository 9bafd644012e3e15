/*
 * rawwire.c - a raw-socket Postgres v3 client for the router's bad-input
 * tests (tests/integration/t_router_badinput.sh, t_router.sh): it sends
 * hand-made bytes and prints what comes back, one line per event, so the
 * scripts can check SQLSTATEs that libpq does not expose for failed logins.
 * Single-threaded; SIGPIPE ignored (the peer may close while we write).
 *
 *   rawwire HOST PORT short-startup      4 of an 8-byte startup packet, then
 *                                        half-close (shutdown SHUT_WR) and read
 *   rawwire HOST PORT startup-len LEN    a startup packet whose length field is
 *                                        LEN (8 bytes sent: LEN, protocol 3.0)
 *   rawwire HOST PORT login USER PASSWORD DB [ACTION...]
 *       StartupMessage, then password authentication (trust, cleartext, md5 or
 *       SCRAM-SHA-256 through librouter's auth_backend driver) until
 *       ReadyForQuery; then each ACTION, each followed by reading until
 *       ReadyForQuery, connection close or a 3 s silence:
 *         query SQL     a Simple Query
 *         big N         a Simple Query of N bytes ("SELECT '<x...>'")
 *         unknown       a message with the unknown type byte 'z' and a valid
 *                       length (payload "junk")
 *         garbage       bytes that are not a message: "GET / HTTP/1.1\r\n\r\n"
 *         lenbad        a Query whose length field is 2 (< 4)
 *
 * Output lines: "ERROR <sqlstate> <message>", "NOTICE <sqlstate> <message>",
 * "LOGIN OK", "READY <I|T|E>", "ROWS <n>" (DataRows since the last ready),
 * "CLOSED" (EOF or reset from the peer), "SILENT" (nothing for 3 s),
 * "SENT <n>" (bytes written, fewer than asked if the peer closed).
 * Exit: 0 when the run completed (whatever the server said), 2 on usage or
 * when the TCP connection cannot be made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "router/auth.h"
#include "router/pgwire.h"

#define READ_TIMEOUT_MS 3000
#define MAX_MSG (1u << 20)

enum rd_result { RD_MSG, RD_CLOSED, RD_SILENT };

struct conn {
	int fd;
	uint8_t buf[MAX_MSG + 5];
	size_t have;
};

static int tcp_connect(const char *host, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Write all of p, or as much as the peer takes before closing. */
static size_t send_all(int fd, const void *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	return off;
}

static size_t send_msg(int fd, char type, const void *payload, size_t len)
{
	uint8_t hdr[5];
	hdr[0] = (uint8_t)type;
	pw_put_u32(hdr + 1, (uint32_t)(len + 4));
	size_t n = send_all(fd, hdr, 5);
	if (n == 5 && len)
		n += send_all(fd, payload, len);
	return n;
}

/* Read more bytes into c->buf; RD_MSG when some arrived. */
static enum rd_result fill(struct conn *c)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	int pr = poll(&pfd, 1, READ_TIMEOUT_MS);
	if (pr == 0)
		return RD_SILENT;
	if (pr < 0)
		return errno == EINTR ? RD_MSG : RD_CLOSED;
	if (c->have >= sizeof(c->buf))
		return RD_CLOSED;
	ssize_t r = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
	if (r < 0 && errno == EINTR)
		return RD_MSG;
	if (r <= 0)
		return RD_CLOSED; /* EOF, or ECONNRESET */
	c->have += (size_t)r;
	return RD_MSG;
}

/* Next backend message: type, payload copied to *payload (malloc'd). */
static enum rd_result read_msg(struct conn *c, char *type, uint8_t **payload, size_t *len)
{
	for (;;) {
		if (c->have >= 5) {
			uint32_t l = pw_get_u32(c->buf + 1);
			if (l < 4 || l - 4 > MAX_MSG) {
				printf("BADFRAME type %d length %u\n", c->buf[0], l);
				return RD_CLOSED;
			}
			if (c->have >= (size_t)l + 1) {
				*type = (char)c->buf[0];
				*len = l - 4;
				*payload = malloc(*len + 1);
				if (!*payload)
					return RD_CLOSED;
				memcpy(*payload, c->buf + 5, *len);
				(*payload)[*len] = 0;
				memmove(c->buf, c->buf + l + 1, c->have - l - 1);
				c->have -= (size_t)l + 1;
				return RD_MSG;
			}
		}
		enum rd_result r = fill(c);
		if (r != RD_MSG)
			return r;
	}
}

static void print_error(const char *what, const uint8_t *p, size_t len)
{
	char st[6];
	const char *m;
	size_t ml;
	pw_error_fields(p, len, st, &m, &ml);
	printf("%s %s %.*s\n", what, st, (int)ml, m);
}

/* Print what the server says until ReadyForQuery (true), close or silence. */
static bool read_until_ready(struct conn *c)
{
	long rows = 0;
	for (;;) {
		char type;
		uint8_t *p = NULL;
		size_t len;
		enum rd_result r = read_msg(c, &type, &p, &len);
		if (r == RD_CLOSED || r == RD_SILENT) {
			printf("%s\n", r == RD_CLOSED ? "CLOSED" : "SILENT");
			return false;
		}
		if (type == PW_BE_ERROR)
			print_error("ERROR", p, len);
		else if (type == PW_BE_NOTICE)
			print_error("NOTICE", p, len);
		else if (type == PW_BE_DATA_ROW)
			rows++;
		else if (type == PW_BE_READY) {
			if (rows)
				printf("ROWS %ld\n", rows);
			printf("READY %c\n", len ? p[0] : '?');
			free(p);
			return true;
		}
		free(p);
	}
}

/* StartupMessage + authentication; true at the first ReadyForQuery. */
static bool login(struct conn *c, const char *user, const char *password, const char *db)
{
	uint8_t pkt[1024];
	size_t n = 8;
	const char *kv[] = {"user", user, "database", db, "application_name", "rawwire"};
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		size_t l = strlen(kv[i]) + 1;
		if (n + l + 1 > sizeof(pkt))
			return false;
		memcpy(pkt + n, kv[i], l);
		n += l;
	}
	pkt[n++] = 0;
	pw_put_u32(pkt, (uint32_t)n);
	pw_put_u32(pkt + 4, PW_PROTOCOL_V3);
	send_all(c->fd, pkt, n);

	struct auth_backend_creds creds = {.user = user, .password = password};
	struct auth_backend *ab = NULL;
	struct sr_errmsg em = {""};
	if (auth_backend_new(&creds, &ab, &em) != 0) {
		printf("LOCAL auth setup failed: %s\n", em.text);
		return false;
	}
	bool ok = false;
	for (;;) {
		char type;
		uint8_t *p = NULL;
		size_t len;
		enum rd_result r = read_msg(c, &type, &p, &len);
		if (r != RD_MSG) {
			printf("%s\n", r == RD_CLOSED ? "CLOSED" : "SILENT");
			break;
		}
		if (type == PW_BE_AUTH) {
			const uint8_t *reply = NULL;
			size_t reply_len = 0;
			bool done = false;
			if (auth_backend_handle(ab, p, len, &reply, &reply_len, &done, &em) != 0) {
				printf("LOCAL auth failed: %s\n", em.text);
				free(p);
				break;
			}
			if (reply)
				send_msg(c->fd, PW_FE_PASSWORD, reply, reply_len);
		} else if (type == PW_BE_ERROR) {
			print_error("ERROR", p, len);
		} else if (type == PW_BE_NOTICE) {
			print_error("NOTICE", p, len);
		} else if (type == PW_BE_READY) {
			printf("LOGIN OK\n");
			ok = true;
			free(p);
			break;
		}
		free(p);
	}
	auth_backend_free(ab);
	return ok;
}

/* One ACTION; advances *i past its arguments. false: stop (closed). */
static bool action(struct conn *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	size_t sent = 0, want = 0;
	if (strcmp(a, "query") == 0 && *i + 1 < argc) {
		const char *sql = argv[++*i];
		want = strlen(sql) + 6;
		sent = send_msg(c->fd, PW_FE_QUERY, sql, strlen(sql) + 1);
	} else if (strcmp(a, "big") == 0 && *i + 1 < argc) {
		size_t n = strtoul(argv[++*i], NULL, 10);
		char *sql = malloc(n + 1);
		if (!sql || n < 12) {
			free(sql);
			return false;
		}
		memset(sql, 'x', n);
		memcpy(sql, "SELECT '", 8);
		sql[n - 1] = '\'';
		sql[n] = 0;
		want = n + 6;
		sent = send_msg(c->fd, PW_FE_QUERY, sql, n + 1);
		free(sql);
	} else if (strcmp(a, "unknown") == 0) {
		want = 9;
		sent = send_msg(c->fd, 'z', "junk", 4);
	} else if (strcmp(a, "garbage") == 0) {
		static const char g[] = "GET / HTTP/1.1\r\n\r\n";
		want = sizeof(g) - 1;
		sent = send_all(c->fd, g, want);
	} else if (strcmp(a, "lenbad") == 0) {
		static const uint8_t m[] = {'Q', 0, 0, 0, 2, 'x', 0};
		want = sizeof(m);
		sent = send_all(c->fd, m, want);
	} else {
		fprintf(stderr, "rawwire: unknown action %s\n", a);
		return false;
	}
	if (sent != want)
		printf("SENT %zu of %zu\n", sent, want);
	return read_until_ready(c);
}

static int usage(void)
{
	fprintf(stderr, "usage: rawwire HOST PORT short-startup | startup-len LEN |\n"
			"       login USER PASSWORD DB [query SQL | big N | unknown | garbage | "
			"lenbad]...\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return usage();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	static struct conn c; /* large buffer: not on the stack */
	c.fd = tcp_connect(argv[1], atoi(argv[2]));
	if (c.fd < 0) {
		fprintf(stderr, "rawwire: cannot connect to %s:%s: %s\n", argv[1], argv[2],
			strerror(errno));
		return 2;
	}
	const char *mode = argv[3];
	if (strcmp(mode, "short-startup") == 0) {
		static const uint8_t half[4] = {0, 0, 0, 8};
		send_all(c.fd, half, sizeof(half));
		shutdown(c.fd, SHUT_WR);
		read_until_ready(&c);
	} else if (strcmp(mode, "startup-len") == 0 && argc == 5) {
		uint8_t pkt[8];
		pw_put_u32(pkt, (uint32_t)strtoul(argv[4], NULL, 10));
		pw_put_u32(pkt + 4, PW_PROTOCOL_V3);
		send_all(c.fd, pkt, sizeof(pkt));
		read_until_ready(&c);
	} else if (strcmp(mode, "login") == 0 && argc >= 7) {
		if (login(&c, argv[4], argv[5], argv[6]))
			for (int i = 7; i < argc; i++)
				if (!action(&c, argc, argv, &i))
					break;
	} else {
		close(c.fd);
		return usage();
	}
	close(c.fd);
	return 0;
}
