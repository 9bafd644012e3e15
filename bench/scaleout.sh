#!/usr/bin/env bash
# scaleout.sh - `make bench-scaleout`: the routing picture under load, on the demo
# topology (2 shards x (primary + 1 streaming replica)). pgbench runs a read-mostly mix
# through the router (BENCH_READ_PCT % reads by key, the rest updates by key) and the
# script reports, per backend, the transactions it served: counted by Postgres itself
# (pg_stat_database.xact_commit on each server, before/after) and by the router
# (shardrouter_queries_total in /metrics). It shows reads going to the replicas and
# writes to the primaries, split by key across the shards. On 2 cores it cannot show a
# throughput gain from scaling out: every server shares the same two cores.
#
# Environment: BUILD (default build/release), BENCH_SECONDS (default 15),
# BENCH_CLIENTS (default 16), BENCH_ROWS (orders, default 100000), BENCH_READ_PCT (90).
# Results: bench/results/scaleout-<timestamp>.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
SECS=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-16}
ROWS=${BENCH_ROWS:-100000}
READ_PCT=${BENCH_READ_PCT:-90}
for v in SECS CLIENTS ROWS READ_PCT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench-scaleout: $v must be a number" >&2; exit 2; }
done
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/shop.sh
. "$ROOT/tests/harness/shop.sh"
need_binaries "$BUILD/shardrouter" "$BUILD/shardctl" "$BUILD/tests/integration/ledger"

OUTF=$ROOT/bench/results/scaleout-$(date +%Y%m%d-%H%M%S).txt
mkdir -p "$ROOT/bench/results"
say() { printf '%s\n' "$*" | tee -a "$OUTF"; }

cluster_up 2 1
shop_trap
shop_setup 2 || { echo "bench-scaleout: shop_setup failed" >&2; exit 1; }
PORT=$(free_port) || exit 1
MPORT=$(free_port "$PORT") || exit 1
router_start "$PORT" "default_pool_size = 8" "metrics_listen = 127.0.0.1:$MPORT" \
	"read_your_writes = off" || exit 1
"$BUILD/tests/integration/ledger" load --catalog "$SHARDROUTER_CATALOG" \
	--range 0000000000000000..ffffffffffffffff --in "$ROWS" --out 0 >/dev/null || exit 1
KEYMAX=$(psql_at "$SHARD0_PRIMARY_PORT" shop "SELECT max(order_id) FROM orders")
K1=$(psql_at "$SHARD1_PRIMARY_PORT" shop "SELECT max(order_id) FROM orders")
[ "$K1" -gt "$KEYMAX" ] && KEYMAX=$K1
for p in "$SHARD0_PRIMARY_PORT" "$SHARD1_PRIMARY_PORT"; do
	wait_replayed "$p" "$([ "$p" = "$SHARD0_PRIMARY_PORT" ] && echo "$SHARD0_REPLICA1_PORT" || echo "$SHARD1_REPLICA1_PORT")" 60
done

BACKENDS="s0-primary:$SHARD0_PRIMARY_PORT s0-replica:$SHARD0_REPLICA1_PORT s1-primary:$SHARD1_PRIMARY_PORT s1-replica:$SHARD1_REPLICA1_PORT"
xacts() { # port
	psql_at "$1" postgres "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'shop'"
}
declare -A X0
for b in $BACKENDS; do X0[${b%%:*}]=$(xacts "${b#*:}"); done
metric() { # shard role
	curl -s "http://127.0.0.1:$MPORT/metrics" 2>/dev/null | awk -v s="shard=\"$1\"" -v r="role=\"$2\"" \
		'/^shardrouter_queries_total\{/ && index($0, s) && index($0, r) { n += $NF } END { printf "%d", n }'
}
declare -A M0
for s in 0 1; do for r in primary replica; do M0[$s$r]=$(metric $s $r); done; done

cat >"$CLUSTER_DIR/mix.sql" <<EOF
\\set id random(1, $KEYMAX)
\\set r random(1, 100)
\\if :r <= $READ_PCT
SELECT status, total FROM orders WHERE order_id = :id;
\\else
UPDATE orders SET total = total + 1 WHERE order_id = :id;
\\endif
EOF
PGPASSWORD=app pgbench -n -h 127.0.0.1 -p "$PORT" -U app -c "$CLIENTS" -j 2 -T "$SECS" \
	-f "$CLUSTER_DIR/mix.sql" shop >"$CLUSTER_DIR/pgbench.out" 2>&1
say "bench-scaleout: $(nproc) cores; 2 shards x (primary + replica); $ROWS orders; $CLIENTS clients;" \
	"$READ_PCT % reads by key, the rest updates by key; ${SECS}s"
say "pgbench: $(grep -E '^tps|failed transactions' "$CLUSTER_DIR/pgbench.out" | tr '\n' ' ')"
declare -A M1
for s in 0 1; do for r in primary replica; do M1[$s$r]=$(metric $s $r); done; done
# Server backends flush their statistics when they exit: stop the router first.
router_stop
sleep 1
say "$(printf '%-12s %14s %14s' backend 'postgres xacts' 'router queries')"
for b in $BACKENDS; do
	n=${b%%:*}
	s=${n:1:1}
	r=${n#*-}
	say "$(printf '%-12s %14d %14d' "$n" $(($(xacts "${b#*:}") - X0[$n])) $((M1[$s$r] - M0[$s$r])))"
done
say "(postgres counts include the router's health checks and pool resets; the router"
say " counts the transactions it routed there)"
say "results in $OUTF"
