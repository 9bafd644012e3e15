/*
 * cmd_hash.c - `shardctl hash KEY [--type T]`: the hash of a key (SPEC §2)
 * and, when a catalog is configured, the range and shard that own it.
 * Without a catalog it prints only the 16 hex digits. Single-threaded.
 */
#include <inttypes.h>
#include <string.h>

#include "ctl.h"
#include "shardmap/catalog.h"
#include "shardmap/hash.h"

static const char hash_help[] =
    "usage: shardctl hash KEY [--type bigint|text|uuid] [--json]\n\n"
    "Print XXH3_64bits of KEY's canonical bytes as 16 hex digits, and with a\n"
    "catalog (--catalog or SHARDROUTER_CATALOG) the range and owning shard.\n"
    "The type defaults to the first sharded table's key type, else bigint.\n"
    "Negative keys: `shardctl hash -- -5` also works.\n";

struct hash_req {
	const char *key;
	const char *type_name;
	enum sm_key_type type;
	uint64_t hash;
};

static int hash_args(struct ctl *ctl, struct hash_req *h, int argc, char **argv)
{
	struct ctl_args a;
	ctl_args_init(&a, argc, argv, "hash");
	while (ctl_args_next(&a)) {
		if (ctl_args_common(&a, ctl) || ctl_args_opt(&a, "--type", &h->type_name))
			continue;
		if (!ctl_args_take(&a, &h->key))
			return ctl_args_unknown(&a);
	}
	int rc;
	if (ctl_args_over(&a, ctl, &rc))
		return rc;
	if (!h->key)
		return ctl_usage("hash needs a KEY, e.g. `shardctl hash 42 --type bigint`");
	struct sr_errmsg em = {{0}};
	if (h->type_name && sm_key_type_parse(h->type_name, &h->type, &em) != 0)
		return ctl_usage("bad --type: %s", em.text);
	return CTL_EXIT_OK;
}

static int hash_compute(struct hash_req *h)
{
	struct sm_key k;
	struct sr_errmsg em = {{0}};
	if (sm_key_from_text(h->type, h->key, strlen(h->key), &k, &em) != 0)
		return ctl_usage("'%s' is not a valid %s key: %s; pass --type to choose another "
				 "type",
				 h->key, sm_key_type_name(h->type), em.text);
	h->hash = sm_hash_key(&k);
	return CTL_EXIT_OK;
}

static void hash_print(const struct ctl *ctl, const struct hash_req *h, const struct sm_map *m)
{
	char hex[SM_HASH_HEX_LEN + 1];
	sm_hash_format(h->hash, hex);
	const struct sm_range *r = m ? sm_map_lookup(m, h->hash) : NULL;
	if (ctl->json) {
		struct ctl_json j;
		json_begin(&j);
		json_str(&j, "key", h->key);
		json_str(&j, "type", sm_key_type_name(h->type));
		json_str(&j, "hash", hex);
		if (m)
			json_uint(&j, "epoch", m->epoch);
		if (r) {
			json_obj(&j, "range");
			json_hex(&j, "lo", r->lo);
			json_hex(&j, "hi", r->hi);
			json_str(&j, "state", sm_range_state_name(r->state));
			json_obj_end(&j);
			json_int(&j, "shard", r->shard_id);
		} else {
			json_null(&j, "range");
			json_null(&j, "shard");
		}
		json_end(&j);
		return;
	}
	if (!m) {
		printf("%s\n", hex);
		return;
	}
	printf("key    %s (%s)\nhash   %s\n", h->key, sm_key_type_name(h->type), hex);
	if (r)
		printf("range  %016" PRIx64 "..%016" PRIx64 " (%s)\nshard  %" PRId32 "\n", r->lo,
		       r->hi, sm_range_state_name(r->state), r->shard_id);
	else
		printf("range  none: no map yet; create one with `shardctl map init --shards N`\n");
}

int cmd_hash(struct ctl *ctl, int argc, char **argv)
{
	struct hash_req h = {.key = NULL, .type_name = NULL, .type = SM_KEY_BIGINT, .hash = 0};
	int rc = hash_args(ctl, &h, argc, argv);
	if (ctl_args_done(ctl, rc, hash_help))
		return rc;
	struct sm_map *m = NULL;
	if (ctl->catalog && *ctl->catalog) {
		rc = ctl_load_map(ctl, "unset SHARDROUTER_CATALOG to hash without the map", NULL,
				  &m);
		if (rc != CTL_EXIT_OK)
			return rc;
		if (!h.type_name && m->n_tables > 0)
			h.type = m->tables[0].key_type;
	}
	rc = hash_compute(&h);
	if (rc == CTL_EXIT_OK)
		hash_print(ctl, &h, m);
	sm_map_free(m);
	return rc;
}
