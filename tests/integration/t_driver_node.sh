#!/usr/bin/env bash
# t_driver_node.sh - a real third-party driver, node-postgres (npm `pg`, pinned in
# tests/drivers/node/package.json), against the router on 2 shards x (primary +
# 1 replica) with default_pool_size = 2: parameterised queries (extended protocol),
# named prepared statements from a 10-client pg.Pool, transactions (one-shard
# commits, a two-shard one fails with 0A000), queued queries, errors, session
# settings, uuid/bytea/jsonb and binary parameters. The checks themselves are in
# tests/drivers/node/driver_test.js, whose TAP lines are passed through as they are.
# Skips (one "ok 1 - # SKIP" line, exit 0) when node or npm is missing or the
# packages cannot be installed (no network); node_modules is kept between runs.
# Needs: tests/harness, psql. Binaries: $BUILD/shardrouter, $BUILD/shardctl.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$SR_ROOT/tests/harness/shop.sh"

DRV=$SR_ROOT/tests/drivers/node
skip() {
	echo "ok 1 - # SKIP $*"
	echo "1..1"
	exit 0
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	skip "node or npm not available"
fi
# npm ci when the lockfile is there (it wipes node_modules, so only when the
# installed tree is missing or older than the lockfile), npm install otherwise.
npm_ready() {
	local lock=$DRV/package-lock.json stamp=$DRV/node_modules/.package-lock.json
	if [ -f "$lock" ]; then
		[ -f "$stamp" ] && [ -d "$DRV/node_modules/pg" ] && [ ! "$lock" -nt "$stamp" ] && return 0
		(cd "$DRV" && timeout 120 npm ci --no-audit --no-fund --loglevel=error) >&2
	else
		(cd "$DRV" && timeout 120 npm install --no-audit --no-fund --loglevel=error) >&2
	fi
}
npm_ready 2>"${TMPDIR:-/tmp}/t_driver_node.npm.$$" || {
	sed 's/^/# npm: /' "${TMPDIR:-/tmp}/t_driver_node.npm.$$" | tail -n 5
	rm -f "${TMPDIR:-/tmp}/t_driver_node.npm.$$"
	skip "node or npm not available (npm ci failed)"
}
rm -f "${TMPDIR:-/tmp}/t_driver_node.npm.$$"
(cd "$DRV" && node -e 'require("pg")') >/dev/null 2>&1 || skip "node or npm not available (pg does not load)"

CTL=$BUILD/shardctl
need_binaries "$BUILD/shardrouter" "$CTL"

cluster_up 2 1
shop_trap

shop_setup 2 || t_bail "shop_setup"
# blobs: an unsharded table (so its statements go to the home shard, 0), on both
# primaries like the rest of the schema.
BLOBS="CREATE TABLE IF NOT EXISTS blobs (id bigint PRIMARY KEY, u uuid, b bytea, j jsonb);
GRANT ALL ON blobs TO app;"
for ((i = 0; i < SHARDS; i++)); do
	psql_at "$(eval echo "\$SHARD${i}_PRIMARY_PORT")" shop "$BLOBS" >/dev/null ||
		t_bail "create table blobs on shard $i"
done

# owners KEY...: "key:shard,..." from shardctl hash (the router's own hashing
# is what is being tested; shardctl shares only the library).
owners() {
	local k s out=
	for k in "$@"; do
		s=$("$CTL" hash "$k" --json | sed -n 's/.*"shard":\([0-9][0-9]*\).*/\1/p')
		[ -n "$s" ] || return 1
		out="$out${out:+,}$k:$s"
	done
	echo "$out"
}
BIG=9007199254740993 # 2^53 + 1: not a JS number
OWNERS=$(owners $(seq 3000001 3000200) $(seq 3100001 3100050) $(seq 3200001 3200040) "$BIG") ||
	t_bail "shardctl hash names an owner for every test key"

RP=$(free_port) || t_bail "found a free port"
router_start "$RP" "default_pool_size = 2" || t_bail "router starts on port $RP"

# driver_test.js numbers its own TAP lines and prints its plan; nothing is
# added here after it runs, so its output is this script's whole TAP stream.
PGHOST=127.0.0.1 PGPORT=$RP PGUSER=app PGPASSWORD=app PGDATABASE=shop \
	SR_OWNERS=$OWNERS SR_BIG_KEY=$BIG \
	SR_PRIMARY_PORTS="$SHARD0_PRIMARY_PORT,$SHARD1_PRIMARY_PORT" \
	SR_REPLICA_PORTS="$SHARD0_REPLICA1_PORT,$SHARD1_REPLICA1_PORT" \
	SR_DIRECT_USER=postgres SR_DIRECT_PASSWORD=postgres \
	timeout -k 5 120 node "$DRV/driver_test.js"
rc=$?
if [ $rc != 0 ]; then
	_t_fail=1 # keep the cluster logs, show the router log
	t_diag "driver_test.js exited with status $rc"
	t_diag "router log: $CLUSTER_DIR/router/router.log"
fi
exit $rc
