/*
 * cmd_init.c - `shardctl init`: create the catalog schema shardrouter
 * (idempotent; see shardmap/catalog.c for the tables). Single-threaded.
 */
#include "ctl.h"
#include "shardmap/catalog.h"

static const char init_help[] =
    "usage: shardctl [--catalog CONNINFO] init\n\n"
    "Create schema shardrouter and its tables in the catalog database if they\n"
    "are missing. Running it again is harmless.\n";

int cmd_init(struct ctl *ctl, int argc, char **argv)
{
	int rc;
	if (ctl_args_none(ctl, argc, argv, "init", init_help, &rc))
		return rc;
	PGconn *c = ctl_connect_catalog(ctl, &rc);
	if (!c)
		return rc;
	struct sr_errmsg em = {{0}};
	int err = sm_catalog_install(c, &em);
	PQfinish(c);
	if (err)
		return ctl_report(err, &em, "check that the catalog user may create schemas");
	printf("catalog ready (schema shardrouter, schema_version %d)\n",
	       SM_CATALOG_SCHEMA_VERSION);
	return CTL_EXIT_OK;
}
