/*
 * config_value.h - the config module's per-value helpers (router/config_value.c):
 * parse a setting's text into its field of struct config, format it back,
 * free it, and a small snprintf-like text buffer. Internal to the config
 * module (config.c); other modules use config.h. Any thread.
 */
#ifndef SR_ROUTER_CONFIG_VALUE_H
#define SR_ROUTER_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "router/config.h"

/* Units of CONFIG_SIZE (bytes) and CONFIG_DURATION (milliseconds) values. */
#define CONFIG_KB INT64_C(1024)
#define CONFIG_MB (CONFIG_KB * 1024)
#define CONFIG_GB (CONFIG_MB * 1024)
#define CONFIG_TB (CONFIG_GB * 1024)
#define CONFIG_SEC INT64_C(1000)
#define CONFIG_MIN (CONFIG_SEC * 60)
#define CONFIG_HOUR (CONFIG_MIN * 60)
#define CONFIG_DAY (CONFIG_HOUR * 24)

/* Text appended into p[len] with snprintf semantics: always NUL-terminated
 * (when len > 0), truncated when full; need counts the bytes the whole text
 * needs (without the NUL). {NULL, 0, 0} only measures. */
struct config_text {
	char *p;
	size_t len;
	size_t need;
};

void config_text_put(struct config_text *t, const char *s, size_t n);
void config_text_puts(struct config_text *t, const char *s);
void config_text_printf(struct config_text *t, const char *fmt, ...) SR_PRINTF(2, 3);

/* Parse v as e's type into cfg's field, replacing (and freeing) the old
 * value. On failure the field is unchanged, why gets what is wrong (the value
 * and what is allowed), and the result is SR_EINVAL, SR_ERANGE or SR_ENOMEM. */
int config_value_set(struct config *cfg, const struct config_entry *e, const char *v,
		     struct config_text *why) SR_MUST_CHECK;

/* Append e's value in canonical form (what config_value_set accepts). mask
 * hides passwords of CONFIG_F_CONNINFO values. */
void config_value_format(struct config_text *t, const struct config *cfg,
			 const struct config_entry *e, bool mask);

/* Append " (allowed: MIN..MAX)" in e's unit. */
void config_value_format_bounds(struct config_text *t, const struct config_entry *e);

/* Free e's owned value in cfg (strings, lists, host). */
void config_value_clear(struct config *cfg, const struct config_entry *e);

#endif
