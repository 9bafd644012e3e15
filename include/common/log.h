/*
 * log.h - leveled, printf-checked logging to stderr, a file or syslog.
 *
 * One line per event: "TIME LEVEL [component] message key=value...".
 * The level is checked before arguments are evaluated. Thread-safe: each
 * line is formatted into a local buffer and written with one write(2).
 * Never log passwords; log query text only at LOG_DEBUG.
 */
#ifndef SR_COMMON_LOG_H
#define SR_COMMON_LOG_H

#include "common/err.h"

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

extern int log_current_level;

/* Configure the sink. path NULL = stderr. use_syslog adds syslog output.
 * Safe to call again on reload (reopens the file). */
int log_open(const char *path, int use_syslog, const char *ident) SR_MUST_CHECK;
void log_close(void);
void log_set_level(enum log_level lvl);

void log_write(enum log_level lvl, const char *fmt, ...) SR_PRINTF(2, 3);

#define log_at(lvl, ...)                                                                           \
	do {                                                                                       \
		if ((int)(lvl) <= log_current_level)                                               \
			log_write((lvl), __VA_ARGS__);                                             \
	} while (0)

#define log_error(...) log_at(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
