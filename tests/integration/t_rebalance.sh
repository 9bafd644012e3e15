#!/usr/bin/env bash
# t_rebalance.sh - `shardctl rebalance [--dry-run]` (SPEC 5): on 3 shards whose map
# gives all ranges to shards 0 and 1, the plan splits and moves ranges onto shard 2
# until every shard is within the tolerance of the mean row count; --dry-run changes
# nothing; the real run leaves no row misplaced and every row exactly once; a second
# run finds nothing to do. Writers keep going through the router meanwhile.
# Needs: tests/harness (3 shards x 0 replicas), psql, jq. Binaries in $BUILD.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

SHARDCTL=$BUILD/shardctl
LEDGER=$BUILD/tests/integration/ledger
need_binaries "$BUILD/shardrouter" "$SHARDCTL" "$LEDGER"

cluster_up 3 0
T=$CLUSTER_DIR/t_rebalance
mkdir -p "$T"
shop_trap
shop_setup 2 || t_bail "shop_setup with the map on shards 0 and 1"
PORT=$(free_port) || t_bail "found a free port"
router_start "$PORT" "freeze_timeout_ms = 20000" || t_bail "router starts"
CAT=$SHARDROUTER_CATALOG
cat_sql() { psql_at "$SHARD0_PRIMARY_PORT" shardrouter "$1"; }
rows_on() { # shard -> orders + order_items on its primary
	local p
	p=$(eval echo "\$SHARD${1}_PRIMARY_PORT")
	psql_at "$p" shop "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items)"
}

L=$("$LEDGER" load --catalog "$CAT" --range 0000000000000000..ffffffffffffffff --in 6000 \
	--out 0 --items 1 --file "$T/base")
t_is "loaded 6,000 orders (+1 item each) on shards 0 and 1" "$?" 0
KEYS=$(sed -n 's/.*keys=\([0-9]*\.\.[0-9]*\).*/\1/p' <<<"$L")
t_is "shard 2 starts empty" "$(rows_on 2)" 0

ep0=$(cat_sql "SELECT epoch FROM shardrouter.meta")
out=$("$SHARDCTL" rebalance --dry-run 2>&1)
t_is "--dry-run exits 0" "$?" 0
t_like "--dry-run prints a plan that moves ranges to shard 2" "$out" "move [0-9a-f]{16}\.\.[0-9a-f]{16} \([0-9]+ rows\) shard [01] -> 2"
t_like "--dry-run says so" "$out" "dry run"
t_is "--dry-run changed nothing (epoch)" "$(cat_sql "SELECT epoch FROM shardrouter.meta")" "$ep0"
t_is "--dry-run moved nothing" "$(rows_on 2)" 0
j=$("$SHARDCTL" rebalance --dry-run --json)
t_is "--json: mean and steps" "$(jq -r '(.mean_rows | floor) > 0 and (.steps | length) > 0 and (.shards | length) == 3' <<<"$j")" true

"$LEDGER" write --router "host=127.0.0.1 port=$PORT user=app password=app dbname=shop" \
	--catalog "$CAT" --keys "$KEYS" --seconds 600 --procs 2 --pause-ms 2 --file "$T/w" \
	--stop-file "$T/stop" >"$T/writer.out" 2>&1 &
WPID=$!
BG_PIDS+=("$WPID")
writing() { [ -s "$T/w.0" ] && [ "$(wc -l <"$T/w.0")" -gt 3100 ]; } # start state + some ops
wait_until 20 writing
out=$("$SHARDCTL" rebalance 2>&1)
rc=$?
t_is "rebalance exits 0" "$rc" 0
[ "$rc" = 0 ] || t_diag "$(tail -n 20 <<<"$out")"
t_like "it reports done" "$out" "rebalance done: [0-9]+ step"
touch "$T/stop"
wait "$WPID"
t_is "the writers saw no failure or anomaly" "$?" 0
t_diag "writers: $(grep -m1 '^write' "$T/writer.out")"
t_like "the writers committed while the moves ran" "$(grep -m1 '^write' "$T/writer.out")" "committed=[1-9]"

total=0
for s in 0 1 2; do total=$((total + $(rows_on $s))); done
mean=$((total / 3))
for s in 0 1 2; do
	n=$(rows_on $s)
	t_ok "shard $s holds $n rows, within 10% of the mean $mean (+ what the writers added)" \
		test $((n * 100)) -ge $((mean * 88)) -a $((n * 100)) -le $((mean * 112))
done
"$SHARDCTL" verify >/dev/null 2>&1
t_is "shardctl verify: nothing misplaced" "$?" 0
out=$("$LEDGER" check --catalog "$CAT" --file "$T/w" --procs 2 --keys "$KEYS" 2>&1)
rc=$?
t_is "ledger check: every row once, on its owner, with its last committed values" "$rc" 0
[ "$rc" = 0 ] || t_diag "$(head -n 20 <<<"$out")"
t_is "no move left running" "$(cat_sql "SELECT count(*) FROM shardrouter.moves WHERE state <> 'done'")" 0
out=$("$SHARDCTL" rebalance 2>&1)
t_like "a second rebalance finds nothing to do" "$out" "balanced: every shard is within 10%"
t_done
