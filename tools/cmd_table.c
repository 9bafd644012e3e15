/*
 * cmd_table.c - `shardctl table add|list`: declare sharded tables (key
 * column and type) in the catalog and list them. Identifiers follow SQL:
 * unquoted names fold to lower case, "Quoted" ones keep their case.
 * Single-threaded.
 */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>

#include "ctl.h"
#include "shardmap/catalog.h"

#define IDENT_MAX 64 /* NAMEDATALEN */

static const char table_help[] =
    "usage: shardctl table add TABLE --key COLUMN --type bigint|text|uuid\n"
    "       shardctl table list [--json]\n\n"
    "add   declare TABLE (optionally schema-qualified: shop.orders) as sharded by\n"
    "      COLUMN. Tables with the same key column name and type are co-located.\n"
    "      Types: bigint (also int8, integer, int4, smallint, int2), text (also\n"
    "      varchar), uuid.\n"
    "list  the sharded tables.\n";

/* Parse one SQL identifier at *sp into out; advances *sp. 0 or -1. */
static int ident_parse(const char **sp, char *out)
{
	const char *s = *sp;
	size_t n = 0;
	if (*s == '"') {
		for (s++;; s++) {
			if (*s == '\0')
				return -1;
			if (*s == '"' && s[1] != '"')
				break;
			if (*s == '"')
				s++;
			if (n + 1 >= IDENT_MAX)
				return -1;
			out[n++] = *s;
		}
		s++;
	} else {
		for (; *s && *s != '.'; s++) {
			if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '$' ||
			      (unsigned char)*s >= 0x80) ||
			    n + 1 >= IDENT_MAX)
				return -1;
			out[n++] = (char)tolower((unsigned char)*s);
		}
		if (n > 0 && isdigit((unsigned char)out[0]))
			return -1;
	}
	out[n] = '\0';
	*sp = s;
	return n > 0 ? 0 : -1;
}

/* "name" or "schema.name" into schema (default public) and name. */
static int qualified_parse(const char *s, char *schema, char *name)
{
	char first[IDENT_MAX];
	if (ident_parse(&s, first) != 0)
		return -1;
	if (*s == '\0') {
		strcpy(schema, "public");
		strcpy(name, first);
		return 0;
	}
	if (*s != '.')
		return -1;
	s++;
	if (ident_parse(&s, name) != 0 || *s != '\0')
		return -1;
	strcpy(schema, first);
	return 0;
}

struct table_add {
	char schema[IDENT_MAX], name[IDENT_MAX], column[IDENT_MAX];
	enum sm_key_type type;
};

static int table_add_change(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	struct table_add *ta = ctx;
	const struct sm_table *t = sm_map_find_table(m, ta->schema, ta->name);
	if (t)
		return sr_errmsg_set(em, SR_EEXIST,
				     "table %s.%s is already sharded by %s (%s); run `shardctl "
				     "table list`",
				     t->schema, t->name, t->key_column,
				     sm_key_type_name(t->key_type));
	return sm_map_add_table(m, ta->schema, ta->name, ta->column, ta->type, em);
}

static int table_add_args(struct ctl *ctl, struct table_add *ta, int argc, char **argv)
{
	struct ctl_args a;
	const char *table = NULL, *key = NULL, *type = NULL, *p;
	ctl_args_init(&a, argc, argv, "table");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--key", &key) ||
		    ctl_args_opt(&a, "--type", &type))
			continue;
		if (!ctl_args_take(&a, &table))
			return ctl_args_unknown(&a);
	}
	int rc;
	if (ctl_args_over(&a, ctl, &rc))
		return rc;
	if (!table || !key || !type)
		return ctl_usage("table add needs TABLE --key COLUMN --type bigint|text|uuid, e.g. "
				 "`shardctl table add orders --key order_id --type bigint`");
	if (qualified_parse(table, ta->schema, ta->name) != 0)
		return ctl_usage("'%s' is not a table name; write name or schema.name", table);
	p = key;
	if (ident_parse(&p, ta->column) != 0 || *p != '\0')
		return ctl_usage("'%s' is not a column name", key);
	struct sr_errmsg em = {{0}};
	if (sm_key_type_parse(type, &ta->type, &em) != 0)
		return ctl_usage("bad --type: %s", em.text);
	return CTL_EXIT_OK;
}

static int table_add(struct ctl *ctl, int argc, char **argv)
{
	struct table_add ta;
	int rc = table_add_args(ctl, &ta, argc, argv);
	if (ctl_args_done(ctl, rc, table_help))
		return rc;
	uint64_t epoch = 0;
	rc = ctl_apply(ctl, table_add_change, &ta, &epoch);
	if (rc != CTL_EXIT_OK)
		return rc;
	printf("table %s.%s sharded by %s (%s); epoch %" PRIu64 "\n", ta.schema, ta.name, ta.column,
	       sm_key_type_name(ta.type), epoch);
	return CTL_EXIT_OK;
}

static void table_list_print(const struct ctl *ctl, const struct sm_map *m)
{
	if (ctl->json) {
		struct ctl_json j;
		json_begin(&j);
		json_uint(&j, "epoch", m->epoch);
		json_arr(&j, "tables");
		for (size_t i = 0; i < m->n_tables; i++)
			json_table(&j, NULL, &m->tables[i]);
		json_arr_end(&j);
		json_end(&j);
		return;
	}
	if (m->n_tables == 0) {
		printf("no sharded tables; add one with `shardctl table add TABLE --key COLUMN "
		       "--type T`\n");
		return;
	}
	printf("%-32s %-24s %s\n", "table", "key_column", "key_type");
	for (size_t i = 0; i < m->n_tables; i++) {
		const struct sm_table *t = &m->tables[i];
		char qn[2 * IDENT_MAX + 2];
		snprintf(qn, sizeof(qn), "%s.%s", t->schema, t->name);
		printf("%-32s %-24s %s\n", qn, t->key_column, sm_key_type_name(t->key_type));
	}
}

static int table_list(struct ctl *ctl, int argc, char **argv)
{
	int rc;
	if (ctl_args_none(ctl, argc, argv, "table", table_help, &rc))
		return rc;
	struct sm_map *m = NULL;
	rc = ctl_load_map(ctl, NULL, NULL, &m);
	if (rc != CTL_EXIT_OK)
		return rc;
	table_list_print(ctl, m);
	sm_map_free(m);
	return CTL_EXIT_OK;
}

int cmd_table(struct ctl *ctl, int argc, char **argv)
{
	static const struct ctl_subcmd subs[] = {{"add", table_add}, {"list", table_list}};
	static const struct ctl_group g = {"table", table_help, "`table add` or `table list`", subs,
					   sizeof(subs) / sizeof(subs[0])};
	return ctl_group_run(&g, ctl, argc, argv);
}
