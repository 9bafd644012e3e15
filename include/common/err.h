/*
 * err.h - the one error vocabulary shared by shardmap, router and tools.
 *
 * Fallible functions return 0 or a negative enum sr_err and are marked
 * SR_MUST_CHECK. Human-readable detail goes into an optional struct sr_errmsg
 * (always the last parameter; may be NULL). Pure data, any thread.
 */
#ifndef SR_COMMON_ERR_H
#define SR_COMMON_ERR_H

#include <stddef.h>

#define SR_MUST_CHECK __attribute__((warn_unused_result))
#define SR_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))

enum sr_err {
	SR_OK = 0,
	SR_ENOMEM = -1,      /* allocation failed */
	SR_EINVAL = -2,      /* bad input: literal, argument, syntax */
	SR_ERANGE = -3,      /* value out of range for its type */
	SR_ENOTFOUND = -4,   /* unknown shard, table, range */
	SR_EOVERLAP = -5,    /* ranges overlap */
	SR_EGAP = -6,        /* ranges leave a gap */
	SR_EIO = -7,         /* file or socket I/O failed */
	SR_ECORRUPT = -8,    /* checksum or format mismatch */
	SR_EPROTO = -9,      /* protocol violation */
	SR_ETOOBIG = -10,    /* message or value larger than allowed */
	SR_EAUTH = -11,      /* authentication failed */
	SR_EUNSUPPORTED = -12, /* valid but not supported */
	SR_EDB = -13,        /* database (libpq) error */
	SR_EEXIST = -14,     /* already exists */
	SR_EBUSY = -15,      /* held by someone else (lock, move) */
};

/* Short stable name of an error code, e.g. "EINVAL". Never NULL. */
const char *sr_err_name(int err);

#define SR_ERRMSG_LEN 512

/* A message buffer for the detail of one failure. */
struct sr_errmsg {
	char text[SR_ERRMSG_LEN];
};

/* Format into em (no-op when em is NULL). Returns err so callers can write
 * `return sr_errmsg_set(em, SR_EINVAL, "bad literal %s", s);`. */
int sr_errmsg_set(struct sr_errmsg *em, int err, const char *fmt, ...) SR_PRINTF(3, 4);

#endif
