#!/usr/bin/env bash
# routing.sh - `make bench-routing`: what routing by key costs.
#   1. Instructions per statement of key extraction + hash + map lookup for the ~20
#      statements of bench/kx_bench.c, counted by valgrind's callgrind: the instruction
#      total of `kx_bench --only I 2N` minus that of `kx_bench --only I N`, over N (so
#      start-up cancels out). Also the ns/op table of kx_bench itself.
#   2. End to end: perf samples (cpu-clock) of a running router under pgbench
#      select-by-key (bench/select.sql, simple protocol, 8 clients): the share of the
#      router's CPU spent in key extraction, hashing and map lookup, next to the router's
#      CPU per query, i.e. what parsing costs in throughput.
# Environment: BUILD (default build/release), BENCH_SECONDS (default 10), BENCH_KX_N
# (default 2000). Results: bench/results/routing-<timestamp>.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
SECS=${BENCH_SECONDS:-10}
N=${BENCH_KX_N:-2000}
KX=$BUILD/bench/kx_bench
OUTF=$ROOT/bench/results/routing-$(date +%Y%m%d-%H%M%S).txt
mkdir -p "$ROOT/bench/results"
say() { printf '%s\n' "$*" | tee -a "$OUTF"; }
[ -x "$KX" ] || { echo "bench-routing: $KX is not built (make all)" >&2; exit 1; }

# --- 1. instructions per statement -------------------------------------------------
ir() { # statement reps -> total instructions
	local f
	f=$(mktemp)
	valgrind --tool=callgrind --callgrind-out-file="$f" "$KX" --only "$1" "$2" >/dev/null 2>&1
	awk '/^(summary|totals):/ { print $2; exit }' "$f"
	rm -f "$f"
}
if command -v valgrind >/dev/null 2>&1; then
	say "== key extraction + hash + map lookup: instructions per statement (callgrind, $N vs $((2 * N)) reps)"
	"$KX" 20000 >"$OUTF.kx" 2>&1
	total=0 n=0
	while read -r num bytes verdict fast parser stmt; do
		[[ $num =~ ^[0-9]+$ ]] || continue
		a=$(ir "$num" "$N") b=$(ir "$num" $((2 * N)))
		per=$(((b - a) / N))
		total=$((total + per)) n=$((n + 1))
		say "$(printf '%-3s %5s %-9s %7s ns %7s instr  %s' "$num" "$bytes" "$verdict" "$fast" "$per" "$stmt")"
	done <"$OUTF.kx"
	say "mean $((total / (n > 0 ? n : 1))) instructions per statement over $n statements; $(grep '^mean' "$OUTF.kx")"
	rm -f "$OUTF.kx"
else
	say "valgrind not installed: instruction counts skipped"
fi

# --- 2. the share of the router's CPU ------------------------------------------------
command -v perf >/dev/null 2>&1 || { say "perf not installed: end-to-end share skipped"; exit 0; }
# shellcheck source=tests/harness/lib.sh
. "$ROOT/tests/harness/lib.sh"
# shellcheck source=tests/harness/shop.sh
. "$ROOT/tests/harness/shop.sh"
cluster_up 1 0
shop_trap
shop_setup 1 || exit 1
PORT=$(free_port) || exit 1
router_start "$PORT" "workers = 1" "default_pool_size = 8" || exit 1
"$BUILD/tests/integration/ledger" load --catalog "$SHARDROUTER_CATALOG" \
	--range 0000000000000000..ffffffffffffffff --in 100000 --out 0 >/dev/null || exit 1
ticks() { awk '{ print $14 + $15 }' "/proc/$ROUTER_PID/stat"; }
c0=$(ticks)
perf record -F 2000 -o "$CLUSTER_DIR/perf.data" -p "$ROUTER_PID" -- sleep "$SECS" >/dev/null 2>&1 &
PERF=$!
PGPASSWORD=app pgbench -n -h 127.0.0.1 -p "$PORT" -U app -c 8 -j 2 -T "$SECS" -M simple \
	-f "$ROOT/bench/select.sql" shop >"$CLUSTER_DIR/pgbench.out" 2>&1
wait "$PERF"
c1=$(ticks)
q=$(awk '/actually processed/ { print $NF }' "$CLUSTER_DIR/pgbench.out")
perf report -i "$CLUSTER_DIR/perf.data" --stdio --sort sym 2>/dev/null |
	awk '/^ +[0-9.]+%/ { gsub("%", "", $1); sym = $NF; all += $1;
		if (sym ~ /^(kx_|kl_|kp_)/) kx += $1;
		else if (sym ~ /XXH|sm_hash|sm_key_/) h += $1;
		else if (sym ~ /sm_map_lookup|route_/) m += $1 }
		END { printf "%.1f %.1f %.1f %.1f\n", kx, h, m, all }' >"$CLUSTER_DIR/share"
read -r KXS HS MS ALL <"$CLUSTER_DIR/share"
HZ=$(getconf CLK_TCK)
say "== end to end: router under pgbench select-by-key, simple protocol, 8 clients, ${SECS}s"
say "router CPU $(awk -v t=$((c1 - c0)) -v hz="$HZ" -v q="${q:-0}" 'BEGIN { if (q > 0) printf "%.1f us per query (%d queries)", t / hz * 1e6 / q, q }')"
say "share of the router's CPU samples: key extraction ${KXS}%, key hashing ${HS}%, map lookup and route ${MS}% (of ${ALL}% attributed)"
say "results in $OUTF"
