#!/usr/bin/env bash
# move.sh - `make bench-move`: the longer variant of t_move's main scenario. One move of
# a range holding BENCH_MOVE_ROWS orders (+1 item each) between two shards while pgbench
# (BENCH_MOVE_CLIENTS clients, simple protocol) upserts and deletes keys across the whole
# key space through the router. Reports the copy rate, how long the range was frozen,
# pgbench's failed transactions and its slowest transaction, and checks the result with
# `shardctl verify`. Starts and stops its own servers (tests/harness).
#
# Environment: BUILD (default build/release), BENCH_MOVE_ROWS (default 1000000),
# BENCH_MOVE_CLIENTS (default 4). Results: bench/results/move-<timestamp>.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
ROWS=${BENCH_MOVE_ROWS:-1000000}
CLIENTS=${BENCH_MOVE_CLIENTS:-4}
[[ $ROWS =~ ^[0-9]+$ && $CLIENTS =~ ^[0-9]+$ ]] || { echo "bench-move: numbers please" >&2; exit 2; }
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/shop.sh
. "$ROOT/tests/harness/shop.sh"
need_binaries "$BUILD/shardrouter" "$BUILD/shardctl" "$BUILD/tests/integration/ledger"

OUTF=$ROOT/bench/results/move-$(date +%Y%m%d-%H%M%S).txt
mkdir -p "$ROOT/bench/results"
say() { printf '%s\n' "$*" | tee -a "$OUTF"; }

cluster_up 2 1
shop_trap
shop_setup 2 || { echo "bench-move: shop_setup failed" >&2; exit 1; }
PORT=$(free_port) || exit 1
router_start "$PORT" "freeze_timeout_ms = 20000" "default_pool_size = 8" || exit 1
LO=4000000000000000 HI=7fffffffffffffff
"$BUILD/shardctl" split 0000000000000000 --at $LO >/dev/null || exit 1
t0=$(date +%s%N)
LOAD=$("$BUILD/tests/integration/ledger" load --catalog "$SHARDROUTER_CATALOG" \
	--range $LO..$HI --in "$ROWS" --out $((ROWS / 5)) --items 1) || exit 1
say "bench-move: $(nproc) cores, $ROWS orders + $ROWS items in range $LO..$HI on shard 0," \
	"$((ROWS / 5)) orders outside; loaded in $((($(date +%s%N) - t0) / 1000000)) ms ($LOAD)"
for t in orders order_items; do psql_at "$SHARD0_PRIMARY_PORT" shop "VACUUM ANALYZE $t" >/dev/null; done

KEYMAX=$((ROWS * 3))
cat >"$CLUSTER_DIR/pgbench.sql" <<EOF
\\set id random(1, $KEYMAX)
INSERT INTO orders (order_id, customer_id, status, total) VALUES (:id, 1, 'pgb', 1) ON CONFLICT (order_id) DO UPDATE SET total = orders.total + 1;
\\set id2 random(1, $KEYMAX)
DELETE FROM orders WHERE order_id = :id2 AND status = 'pgb';
EOF
# pgbench in 5 s runs until the move is over (a run's summary is only printed at its end)
(while [ ! -e "$CLUSTER_DIR/stop" ]; do
	PGPASSWORD=app pgbench -n -h 127.0.0.1 -p "$PORT" -U app -c "$CLIENTS" -j 2 -T 5 \
		-l --log-prefix="$CLUSTER_DIR/pgb" -f "$CLUSTER_DIR/pgbench.sql" shop
done >"$CLUSTER_DIR/pgbench.out" 2>&1) &
PGB=$!
BG_PIDS+=("$PGB")
sleep 3
t0=$(date +%s%N)
OUT=$("$BUILD/shardctl" move $LO --to 1 --json 2>"$CLUSTER_DIR/move.err")
RC=$?
MOVE_MS=$((($(date +%s%N) - t0) / 1000000))
sleep 2
touch "$CLUSTER_DIR/stop"
wait "$PGB" 2>/dev/null
say "move: exit $RC in $MOVE_MS ms: $OUT"
[ "$RC" = 0 ] || tail -n 20 "$CLUSTER_DIR/move.err" | tee -a "$OUTF"
grep -E "^move .*(copy|freeze|cutover|cleanup|catch-up)" "$CLUSTER_DIR/move.err" | sed 's/^/  /' | tee -a "$OUTF"
say "pgbench: $(awk -F': ' '/actually processed/ { n += $2 } /number of failed/ { split($2, a, " "); f += a[1] }
	END { printf "%d transactions, %d failed", n, f }' "$CLUSTER_DIR/pgbench.out")"
# pgbench -l: column 3 is the transaction's latency in microseconds
say "pgbench slowest transaction: $(cat "$CLUSTER_DIR"/pgb.* 2>/dev/null | awk '$3 > m { m = $3 } END { printf "%.1f ms", m / 1000 }')"
"$BUILD/shardctl" verify >"$CLUSTER_DIR/verify.out" 2>&1
say "verify: exit $? ($(tail -n 1 "$CLUSTER_DIR/verify.out"))"
say "results in $OUTF"
