/*
 * err.c - error names and the message buffer helper (see common/err.h).
 */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *sr_err_name(int err)
{
	switch ((enum sr_err)err) {
	case SR_OK: return "OK";
	case SR_ENOMEM: return "ENOMEM";
	case SR_EINVAL: return "EINVAL";
	case SR_ERANGE: return "ERANGE";
	case SR_ENOTFOUND: return "ENOTFOUND";
	case SR_EOVERLAP: return "EOVERLAP";
	case SR_EGAP: return "EGAP";
	case SR_EIO: return "EIO";
	case SR_ECORRUPT: return "ECORRUPT";
	case SR_EPROTO: return "EPROTO";
	case SR_ETOOBIG: return "ETOOBIG";
	case SR_EAUTH: return "EAUTH";
	case SR_EUNSUPPORTED: return "EUNSUPPORTED";
	case SR_EDB: return "EDB";
	case SR_EEXIST: return "EEXIST";
	case SR_EBUSY: return "EBUSY";
	}
	return "EUNKNOWN";
}

int sr_errmsg_set(struct sr_errmsg *em, int err, const char *fmt, ...)
{
	if (em) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(em->text, sizeof(em->text), fmt, ap);
		va_end(ap);
	}
	return err;
}
