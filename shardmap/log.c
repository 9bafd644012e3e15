/*
 * log.c - leveled logging (see common/log.h). One write(2) per line so lines
 * from several threads never interleave.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int log_current_level = LOG_LVL_INFO;
static int log_fd = 2;
static int log_syslog;

int log_open(const char *path, int use_syslog, const char *ident)
{
	if (path && *path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return SR_EIO;
		int old = log_fd;
		log_fd = fd;
		if (old > 2)
			close(old);
	}
	if (use_syslog && !log_syslog)
		openlog(ident ? ident : "shardrouter", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!use_syslog && log_syslog)
		closelog();
	log_syslog = use_syslog;
	return 0;
}

void log_close(void)
{
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
	if (log_syslog)
		closelog();
	log_syslog = 0;
}

void log_set_level(enum log_level lvl)
{
	log_current_level = (int)lvl;
}

static const char *level_name(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERROR: return "ERROR";
	case LOG_LVL_WARN: return "WARNING";
	case LOG_LVL_INFO: return "LOG";
	case LOG_LVL_DEBUG: return "DEBUG";
	}
	return "LOG";
}

void log_write(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ld %d %s ", ts.tv_nsec / 1000000L,
		      (int)getpid(), level_name(lvl));
	int body_at = n;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, (size_t)n);
	(void)w;
	if (log_syslog) {
		int pri = lvl == LOG_LVL_ERROR ? LOG_ERR
			  : lvl == LOG_LVL_WARN ? LOG_WARNING
			  : lvl == LOG_LVL_INFO ? LOG_INFO
						: LOG_DEBUG;
		line[n - 1] = '\0';
		syslog(pri, "%s", line + body_at);
	}
}
