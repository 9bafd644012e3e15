#!/usr/bin/env bash
# run.sh - `make bench`: shardrouter next to direct Postgres and PgBouncer, measured
# side by side on throw-away servers this script starts and stops itself.
#
# Setup: one shard (tests/harness/cluster.sh, 1 primary, no replica, max_connections
# raised to 320), the shop schema + catalog (tests/harness/shop.sh), BENCH_ROWS orders;
# shardrouter with workers=1 and workers=2 (a short trial picks the faster one) and
# PgBouncer (transaction pooling), both with pool size BENCH_POOL and scram-sha-256.
# Measures, interleaving the targets direct, router, pgbouncer in every round:
#   1. pgbench tps (median, min, max over BENCH_ROUNDS) for each workload
#   2. latency p50/p99/p99.9 (pgbench -l) for select simple c8 and select prepared c8
#   3. proxy CPU seconds per 1,000 queries (/proc/PID/stat) during select simple c8
#   4. RSS of each proxy with BENCH_IDLE_CLIENTS idle authenticated clients
#   5. the key-extraction microbenchmark ($BUILD/bench/kx_bench)
# Prints ratios and a table; writes CSVs to bench/results/<timestamp>/ (and latest/).
#
# Environment: BUILD (build dir, default build/release), BENCH_SECONDS (per pgbench run,
# default 15), BENCH_ROUNDS (default 3), BENCH_POOL (default 20), BENCH_ROWS (100000),
# BENCH_IDLE_CLIENTS (10000; 0 skips), BENCH_KX_ITERS (50000), BENCH_WORKLOADS
# (space-separated SCRIPT-MODE-CLIENTS, e.g. "select-simple-8 write-simple-8", or
# "full" for all modes at 8, 64 and 256 clients), BENCH_WORKERS (1 or 2: skip the
# trial), BENCH_LOG_SAMPLING (pgbench --sampling-rate for latency logs, default 1),
# BENCH_KEEP=1 (keep the work dir with logs). Run as root or as a user that can run
# Postgres; needs pgbench, psql, /usr/sbin/pgbouncer.
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin
unset PGSERVICE PGOPTIONS PGDATABASE PGPORT PGHOST PGUSER PGPASSWORD PGDATA PGPASSFILE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-3}
POOL=${BENCH_POOL:-20}
ROWS=${BENCH_ROWS:-100000}
IDLE_N=${BENCH_IDLE_CLIENTS:-10000}
KX_ITERS=${BENCH_KX_ITERS:-50000}
SAMPLING=${BENCH_LOG_SAMPLING:-1}
DEFAULT_WORKLOADS="select-simple-8 select-simple-64 select-simple-256 select-extended-8
select-extended-64 select-prepared-8 select-prepared-64 write-simple-8"
FULL_WORKLOADS="select-simple-8 select-simple-64 select-simple-256 select-extended-8
select-extended-64 select-extended-256 select-prepared-8 select-prepared-64
select-prepared-256 write-simple-8"
WORKLOADS=${BENCH_WORKLOADS:-$DEFAULT_WORKLOADS}
[ "$WORKLOADS" = full ] && WORKLOADS=$FULL_WORKLOADS
TARGETS="direct router pgbouncer"
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
CLK_TCK=$(getconf CLK_TCK)
T_START=$(date +%s)

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*" | tee -a "$OUT/report.txt"; }
info() { printf 'bench: %s\n' "$*" >&2; }

for v in SECS ROUNDS POOL ROWS IDLE_N KX_ITERS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
{ [ "$SECS" -ge 1 ] && [ "$ROUNDS" -ge 1 ]; } || die "BENCH_SECONDS and BENCH_ROUNDS must be >= 1"
case ${BENCH_WORKERS:-} in "" | 1 | 2) ;; *) die "BENCH_WORKERS must be 1 or 2 (got $BENCH_WORKERS)" ;; esac
for w in $WORKLOADS; do
	[[ $w =~ ^(select|write)-(simple|extended|prepared)-[0-9]+$ ]] ||
		die "bad workload '$w' (want SCRIPT-MODE-CLIENTS, SCRIPT select|write)"
done
for f in "$BUILD/shardrouter" "$BUILD/shardctl" "$BUILD/bench/kx_bench" "$BUILD/bench/idle_clients"; do
	[ -x "$f" ] || die "$f missing: run 'make BUILD=${BUILD#"$ROOT"/}' first"
done
command -v pgbench >/dev/null || die "pgbench not found (postgresql-client)"
command -v psql >/dev/null || die "psql not found (postgresql-client)"
[ -x "$PGBOUNCER" ] || die "$PGBOUNCER not found (apt-get install pgbouncer)"

# --- work dir, cleanup ---------------------------------------------------------------
PG_USER=
if [ "$(id -u)" = 0 ]; then
	PG_USER=${SR_PG_OS_USER:-postgres}
	id -u "$PG_USER" >/dev/null 2>&1 || die "OS user $PG_USER missing (tools/deps.sh creates one)"
fi
as_pg() { if [ -n "$PG_USER" ]; then setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups "$@"; else "$@"; fi; }

WORK=$(mktemp -d /tmp/sr-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$WORK"
PORTS_FILE=$WORK/ports
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench/results/$STAMP
mkdir -p "$OUT" || die "cannot create $OUT"
ln -sfn "$STAMP" "$ROOT/bench/results/latest"
declare -A PORT PID
IDLE_PID=
CLUSTER_STARTED=0
FAILED=0

stop_pid() { # pid: TERM, wait up to 5 s, then KILL
	local p=$1 i
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}

cleanup() {
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID"
	local k
	for k in "${!PID[@]}"; do stop_pid "${PID[$k]}"; done
	[ "$CLUSTER_STARTED" = 1 ] && "$ROOT/tests/harness/cluster.sh" stop --dir "$WORK/cluster" >/dev/null 2>&1
	bench_release_ports "$PORTS_FILE"
	if [ -n "${BENCH_KEEP:-}" ] || [ "$FAILED" != 0 ]; then
		info "work dir (logs) kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT
trap 'FAILED=1; exit 143' TERM
fail() { FAILED=1; die "$@"; }

# fd limit: idle clients + 256-client runs need more than the usual 1024.
NEED_FD=$((IDLE_N + 4096))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FD" ]; then
	ulimit -n "$NEED_FD" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null
	[ "$(ulimit -n)" -ge $((IDLE_N + 600)) ] ||
		info "warning: ulimit -n is $(ulimit -n); $IDLE_N idle clients may not fit"
fi

# --- servers ---------------------------------------------------------------------------
psql_pg() { # db sql (as postgres on the shard)
	PGPASSWORD=postgres PGCONNECT_TIMEOUT=10 psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
		-p "${PORT[direct]}" -U postgres -d "$1" -c "$2"
}

start_cluster() {
	local out
	CLUSTER_STARTED=1
	out=$("$ROOT/tests/harness/cluster.sh" start --dir "$WORK/cluster" --shards 1 --replicas 0 2>&1) ||
		fail "cluster start failed: $out"
	# shellcheck disable=SC1091
	. "$WORK/cluster/cluster.env"
	PORT[direct]=$SHARD0_PRIMARY_PORT
	# 256 direct clients + both proxies' pools + catalog connections
	psql_pg postgres "ALTER SYSTEM SET max_connections = 320" || fail "ALTER SYSTEM failed"
	as_pg /usr/lib/postgresql/15/bin/pg_ctl restart -D "$SHARD0_PRIMARY_DATA" -w -t 60 -m fast \
		-l "$WORK/cluster/s0p/log/postgres.log" -s >/dev/null 2>&1 || fail "restart of the shard failed"
	[ "$(psql_pg postgres 'SHOW max_connections')" = 320 ] || fail "max_connections not raised"
}

load_shop() {
	# shellcheck source=tests/harness/shop.sh
	. "$ROOT/tests/harness/shop.sh"
	shop_setup 1 || fail "shop_setup (schema, roles, catalog) failed"
	{ psql_pg shop "TRUNCATE orders;
		INSERT INTO orders (order_id, customer_id, status, total)
		SELECT g, g % 1000, 'open', (g % 500) + 0.99 FROM generate_series(1, $ROWS) g;" &&
		psql_pg shop "VACUUM ANALYZE orders"; } || fail "loading $ROWS orders failed"
}

start_router() { # name workers
	local name=$1 dir=$WORK/$1 p
	mkdir -p "$dir"
	p=$(bench_reserve_port "$PORTS_FILE") || fail "no free port"
	PORT[$name]=$p
	printf '"app" "app"\n"postgres" "postgres"\n' >"$dir/userlist.txt"
	cat >"$dir/shardrouter.ini" <<-EOF
		[router]
		listen_addr = 127.0.0.1
		listen_port = $p
		catalog = $SHARDROUTER_CATALOG password=postgres
		map_cache = $dir/map.cache
		auth_type = scram-sha-256
		auth_file = $dir/userlist.txt
		stats_users = postgres
		pool_mode = transaction
		default_pool_size = $POOL
		max_client_conn = $((IDLE_N + 1000))
		workers = $2
	EOF
	"$BUILD/shardrouter" -c "$dir/shardrouter.ini" >"$dir/router.log" 2>&1 &
	PID[$name]=$!
	wait_tcp_sql "$p" app app shop 20 || { tail -n 20 "$dir/router.log" >&2; fail "$name did not start"; }
}

start_pgbouncer() {
	local dir=$WORK/pgbouncer p
	mkdir -p "$dir"
	p=$(bench_reserve_port "$PORTS_FILE") || fail "no free port"
	PORT[pgbouncer]=$p
	printf '"app" "app"\n' >"$dir/userlist.txt"
	cat >"$dir/pgbouncer.ini" <<-EOF
		[databases]
		shop = host=127.0.0.1 port=${PORT[direct]} dbname=shop
		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $p
		unix_socket_dir =
		auth_type = scram-sha-256
		auth_file = $dir/userlist.txt
		pool_mode = transaction
		default_pool_size = $POOL
		max_client_conn = $((IDLE_N + 1000))
		logfile = $dir/pgbouncer.log
		pidfile = $dir/pgbouncer.pid
	EOF
	[ -n "$PG_USER" ] && chown -R "$PG_USER" "$dir"
	# (setpriv execs: $! is pgbouncer itself, which the CPU and RSS readings need)
	if [ -n "$PG_USER" ]; then
		setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups \
			"$PGBOUNCER" "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
	else
		"$PGBOUNCER" "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
	fi
	PID[pgbouncer]=$!
	wait_tcp_sql "$p" app app shop 20 || { tail -n 20 "$dir/pgbouncer.log" "$dir/stdout.log" >&2; fail "pgbouncer did not start"; }
	local fpid
	fpid=$(cat "$dir/pgbouncer.pid" 2>/dev/null)
	[ "$fpid" = "${PID[pgbouncer]}" ] || fail "pgbouncer pid ${PID[pgbouncer]} but its pidfile says $fpid"
}

# --- pgbench ---------------------------------------------------------------------------
# run_pgbench TARGET PORT WORKLOAD SECS ROUND: appends a row to runs.csv; prints tps.
run_pgbench() {
	local target=$1 port=$2 wl=$3 secs=$4 round=$5 script mode clients
	IFS=- read -r script mode clients <<<"$wl"
	local log=$WORK/pgbench/$wl.$target.r$round extra=() proc=${PID[$target]:-}
	mkdir -p "$WORK/pgbench" "$WORK/lat"
	case $wl in select-simple-8 | select-prepared-8)
		extra=(-l --log-prefix="$WORK/lat/$wl.$target.r$round")
		[ "$SAMPLING" = 1 ] || extra+=(--sampling-rate="$SAMPLING") ;;
	esac
	local c0 c1 load rc run_secs=$secs
	# SCRAM logins of 256 clients can take seconds on a busy machine and pgbench counts them
	# inside -T; tps is reported without that initial connection time, so give it room.
	[ "$clients" -gt 64 ] && run_secs=$((secs + 2 + clients / 128))
	[ "$target" = direct ] && proc=
	load=$(cut -d' ' -f1 /proc/loadavg)
	[ -n "$proc" ] && c0=$(proc_cpu_ticks "$proc")
	PGPASSWORD=app pgbench -n -T "$run_secs" -j 2 -c "$clients" -M "$mode" \
		-f "$ROOT/bench/$script.sql" "${extra[@]}" -h 127.0.0.1 -p "$port" -U app shop \
		>"$log.out" 2>"$log.err"
	rc=$?
	[ -n "$proc" ] && c1=$(proc_cpu_ticks "$proc")
	local tps tx failed cpu=
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$log.out" | head -n 1)
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log.out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log.out")
	local conn_ms
	conn_ms=$(sed -n 's/^initial connection time = \([0-9.]*\) ms/\1/p' "$log.out")
	[ -n "$proc" ] && [ -n "$c0" ] && [ -n "$c1" ] &&
		cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
	local status=ok
	if [ $rc != 0 ] || [ -z "$tps" ] || [ "${tx:-0}" = 0 ]; then
		status=error
		tps=
		info "pgbench $wl against $target failed (exit $rc, ${tx:-0} transactions): $(grep -v '^pgbench: warning' "$log.err" | head -n 3 | tr '\n' ' ')"
	fi
	echo "$round,$wl,$script,$mode,$clients,$target,$run_secs,$tps,${tx:-},${failed:-0},$cpu,$load,$status,${conn_ms:-}" >>"$OUT/runs.csv"
	echo "${tps:-ERR}"
}

# --- phases ----------------------------------------------------------------------------
warm_up() {
	local t
	for t in direct router-w1 router-w2 pgbouncer; do
		[ -n "${PORT[$t]:-}" ] || continue
		PGPASSWORD=app pgbench -n -T 2 -j 2 -c 8 -M simple -f "$ROOT/bench/select.sql" \
			-h 127.0.0.1 -p "${PORT[$t]}" -U app shop >/dev/null 2>&1 ||
			info "warm-up against $t failed"
	done
}

# workers_trial: select simple c64 on router w1 and w2, interleaved; keeps the faster.
workers_trial() {
	local secs=$((SECS / 3)) r t tps w1 w2
	[ $secs -ge 3 ] || secs=3
	: >"$WORK/trial"
	for ((r = 1; r <= 2; r++)); do
		for t in router-w1 router-w2; do
			tps=$(run_pgbench "$t" "${PORT[$t]}" select-simple-64 "$secs" "trial$r")
			echo "$t $tps" >>"$WORK/trial"
		done
	done
	w1=$(awk '$1 == "router-w1" && $2 != "ERR" { print $2 }' "$WORK/trial" | med_min_max | cut -d' ' -f1)
	w2=$(awk '$1 == "router-w2" && $2 != "ERR" { print $2 }' "$WORK/trial" | med_min_max | cut -d' ' -f1)
	BEST=1
	awk -v a="$w1" -v b="$w2" 'BEGIN { exit !(b != "-" && (a == "-" || b + 0 > a + 0)) }' && BEST=2
	say "router workers trial (select simple c64, ${secs}s x 2 each): workers=1 ${w1} tps, workers=2 ${w2} tps -> using workers=$BEST"
}

use_router() { # workers: the chosen router becomes target "router", the other stops
	local other=$((3 - $1))
	PORT[router]=${PORT[router-w$1]}
	PID[router]=${PID[router-w$1]}
	unset "PID[router-w$1]"
	stop_pid "${PID[router-w$other]:-}"
	unset "PID[router-w$other]" "PORT[router-w$other]"
	WORKERS=$1
}

main_rounds() {
	local r wl t tps busy
	for ((r = 1; r <= ROUNDS; r++)); do
		busy=$(busy_pct 1)
		echo "$r,$busy" >>"$OUT/background.csv"
		info "round $r/$ROUNDS (background CPU busy before the round: ${busy}%)"
		for wl in $WORKLOADS; do
			for t in $TARGETS; do
				if [ "$t" = pgbouncer ] && [[ $wl == *-prepared-* ]]; then
					continue # PgBouncer 1.18 cannot do named prepared statements in transaction pooling
				fi
				tps=$(run_pgbench "$t" "${PORT[$t]}" "$wl" "$SECS" "$r")
				info "  $wl $t: ${tps%.*} tps"
			done
		done
	done
}

# --- reports ---------------------------------------------------------------------------
tps_stats() { # workload target -> "median min max n" over the main rounds
	awk -F, -v w="$1" -v t="$2" '$1 ~ /^[0-9]+$/ && $2 == w && $6 == t && $13 == "ok" { print $8 }' \
		"$OUT/runs.csv" | med_min_max
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

pretty() { # select-simple-8 -> "select simple c8"
	local s m c
	IFS=- read -r s m c <<<"$1"
	echo "$s $m c$c"
}

report_throughput() {
	local wl t d r b line
	echo "workload,target,median_tps,min_tps,max_tps,runs,router_over_direct,router_over_pgbouncer" >"$OUT/summary.csv"
	say ""
	say "== throughput: pgbench -n -T $SECS -j 2, median tps over $ROUNDS round(s) [min..max]; router workers=$WORKERS, pool $POOL; runs above 64 clients get +2..4 s for SCRAM logins"
	for wl in $WORKLOADS; do
		read -r d _ <<<"$(tps_stats "$wl" direct)"
		read -r r _ <<<"$(tps_stats "$wl" router)"
		b=-
		[[ $wl == *-prepared-* ]] || read -r b _ <<<"$(tps_stats "$wl" pgbouncer)"
		line="$(pretty "$wl"): router/direct $(ratio "$r" "$d") router/pgbouncer $(ratio "$r" "$b")"
		say "$line"
		for t in $TARGETS; do
			local s=
			if [ "$t" = pgbouncer ] && [[ $wl == *-prepared-* ]]; then s="n/a n/a n/a 0"; else s=$(tps_stats "$wl" "$t"); fi
			echo "$wl,$t,${s// /,},$(ratio "$r" "$d"),$(ratio "$r" "$b")" >>"$OUT/summary.csv"
		done
	done
	say ""
	say "$(printf '%-22s %-26s %-26s %-26s %8s %8s' workload direct router pgbouncer 'r/dir' 'r/pgb')"
	for wl in $WORKLOADS; do
		local cells=() rd rb
		for t in $TARGETS; do
			if [ "$t" = pgbouncer ] && [[ $wl == *-prepared-* ]]; then cells+=("n/a (1.18, txn pooling)"); continue; fi
			read -r m lo hi n <<<"$(tps_stats "$wl" "$t")"
			if [ "$n" = 0 ]; then cells+=("ERR"); else cells+=("$(printf '%.0f [%.0f..%.0f]' "$m" "$lo" "$hi")"); fi
		done
		rd=$(awk -F, -v w="$wl" '$1 == w && $2 == "router" { print $7 }' "$OUT/summary.csv")
		rb=$(awk -F, -v w="$wl" '$1 == w && $2 == "router" { print $8 }' "$OUT/summary.csv")
		say "$(printf '%-22s %-26s %-26s %-26s %8s %8s' "$(pretty "$wl")" "${cells[@]}" "$rd" "$rb")"
	done
}

report_latency() {
	local wl t p50 p99 p999 n dp50="" dp99=""
	echo "workload,target,samples,p50_ms,p99_ms,p999_ms" >"$OUT/latency.csv"
	say ""
	say "== latency (pgbench -l, all rounds pooled; ms): p50 p99 p99.9"
	for wl in select-simple-8 select-prepared-8; do
		[[ " ${WORKLOADS//$'\n'/ } " == *" $wl "* ]] || continue
		for t in $TARGETS; do
			if [ "$t" = pgbouncer ] && [[ $wl == *-prepared-* ]]; then continue; fi
			# shellcheck disable=SC2046
			read -r p50 p99 p999 n <<<"$(percentiles $(ls "$WORK/lat/$wl.$t.r"[0-9]* 2>/dev/null))"
			echo "$wl,$t,$n,$p50,$p99,$p999" >>"$OUT/latency.csv"
			say "$(printf '%-20s %-10s p50 %8s  p99 %8s  p99.9 %8s  (%s samples)' "$(pretty "$wl")" "$t" "$p50" "$p99" "$p999" "$n")"
			[ "$t" = direct ] && dp50=$p50 dp99=$p99
			if [ "$t" = router ]; then
				say "$(printf '%-20s router added latency: p50 %s ms, p99 %s ms' "$(pretty "$wl")" \
					"$(awk -v a="$p50" -v b="$dp50" 'BEGIN { printf "%+.3f", a - b }')" \
					"$(awk -v a="$p99" -v b="$dp99" 'BEGIN { printf "%+.3f", a - b }')")"
			fi
		done
	done
}

report_cpu() {
	local wl t
	echo "workload,target,cpu_s,queries,cpu_s_per_1000_queries,us_per_query" >"$OUT/cpu.csv"
	for wl in $WORKLOADS; do
		local q=1
		[[ $wl == write-* ]] && q=2
		for t in router pgbouncer; do
			awk -F, -v w="$wl" -v t="$t" -v q="$q" '$1 ~ /^[0-9]+$/ && $2 == w && $6 == t && $13 == "ok" && $11 != "" {
				c += $11; n += $9 * q } END { if (n > 0) printf "%s,%s,%.2f,%d,%.4f,%.1f\n", w, t, c, n, 1000 * c / n, 1e6 * c / n }' \
				"$OUT/runs.csv" >>"$OUT/cpu.csv"
		done
	done
	say ""
	say "== proxy CPU (user+sys of the whole process, /proc/PID/stat) per 1,000 queries"
	awk -F, 'NR > 1 && $1 == "select-simple-8" { printf "select simple c8     %-10s %.4f CPU s per 1,000 queries (%.1f us/query; %.2f s over %d queries)\n", $2, $5, $6, $3, $4 }' \
		"$OUT/cpu.csv" | tee -a "$OUT/report.txt"
}

# idle_rss NAME: RSS of proxy NAME before and with IDLE_N idle authenticated clients.
idle_rss() {
	local t=$1 pid=${PID[$1]} base rss f=$WORK/idle.$1 deadline
	base=$(proc_rss_kb "$pid")
	"$BUILD/bench/idle_clients" "host=127.0.0.1 port=${PORT[$t]} user=app password=app dbname=shop connect_timeout=60" \
		"$IDLE_N" 3600 >"$f.out" 2>"$f.err" &
	IDLE_PID=$!
	deadline=$(($(date +%s) + 60 + IDLE_N / 20))
	until grep -q '^connected' "$f.out" 2>/dev/null; do
		if ! kill -0 "$IDLE_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
		sleep 0.2
	done
	sleep 1
	rss=$(proc_rss_kb "$pid")
	local ok=0 bad=$IDLE_N
	read -r _ ok bad <"$f.out" 2>/dev/null
	stop_pid "$IDLE_PID"
	IDLE_PID=
	[ "${bad:-1}" = 0 ] || info "$t: $bad of $IDLE_N idle clients failed: $(head -n 2 "$f.err" | tr '\n' ' ')"
	echo "$t,$IDLE_N,${ok:-0},$base,$rss" | awk -F, '{ per = $3 > 0 ? ($5 - $4) / $3 : 0
		printf "%s,%s,%s,%s,%s,%.2f\n", $1, $2, $3, $4, $5, per }' >>"$OUT/memory.csv"
	sleep 1
}

measure_memory() { # on the fresh proxies, before any benchmark traffic
	[ "$IDLE_N" -gt 0 ] || return 0
	echo "target,idle_clients,connected,base_rss_kb,rss_kb,kb_per_connection" >"$OUT/memory.csv"
	local t
	# (one router is enough: the per-connection cost does not depend on workers, and 2,000
	# SCRAM logins cost a while on a busy 2-core machine)
	for t in router-w1 router-w2 pgbouncer; do
		[ "$t" = router-w2 ] && [ -n "${PID[router-w1]:-}" ] && continue
		if [ -n "${PID[$t]:-}" ]; then idle_rss "$t"; fi
	done
}

report_memory() {
	[ "$IDLE_N" -gt 0 ] || return 0
	say ""
	say "== memory: RSS with $IDLE_N idle authenticated clients, measured on the fresh proxies before any benchmark (base = RSS just before)"
	awk -F, 'NR > 1 { printf "%-10s %s/%s connected: base %d KiB, with clients %d KiB, %.2f KiB per connection\n", $1, $3, $2, $4, $5, $6 }' \
		"$OUT/memory.csv" | tee -a "$OUT/report.txt"
}

report_kx() {
	"$BUILD/bench/kx_bench" "$KX_ITERS" >"$OUT/kx_bench.txt" 2>&1 || info "kx_bench failed"
	say ""
	say "== key extraction (kx_bench $KX_ITERS): $(grep '^mean' "$OUT/kx_bench.txt")"
}

# report_logs: warnings and errors the proxies logged during the whole run (a benchmark
# that "works" while the router logs errors is not a result). Copies them to OUT.
report_logs() {
	local f n
	say ""
	for f in "$WORK"/router-w*/router.log "$WORK/pgbouncer/pgbouncer.log"; do
		[ -f "$f" ] || continue
		n=$(grep -c -E "\\b(WARNING|ERROR|FATAL|PANIC)\\b" "$f")
		say "log ${f#"$WORK"/}: $n warning/error line(s)"
		if [ "$n" -gt 0 ]; then
			grep -E "\\b(WARNING|ERROR|FATAL|PANIC)\\b" "$f" >"$OUT/$(dirname "${f#"$WORK"/}").errors.log"
			grep -E "\\b(WARNING|ERROR|FATAL|PANIC)\\b" "$f" | head -n 3 | sed "s/^/    /" | tee -a "$OUT/report.txt"
		fi
	done
}

# --- main ------------------------------------------------------------------------------
main() {
	: >"$OUT/report.txt"
	echo "round,workload,script,mode,clients,target,seconds,tps,transactions,failed,proxy_cpu_s,load1,status,initial_conn_ms" >"$OUT/runs.csv"
	echo "round,background_busy_pct" >"$OUT/background.csv"
	say "shardrouter bench $STAMP: $(nproc) CPU(s), $(uname -r), $(pgbench --version), $("$PGBOUNCER" --version 2>/dev/null | head -n 1)"
	say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); CPU busy (1 s, before starting anything): $(busy_pct 1)%"
	say "workloads: ${WORKLOADS//$'\n'/ }; ${SECS}s per run, $ROUNDS round(s), targets interleaved: $TARGETS"
	start_cluster
	load_shop
	info "cluster up (shard port ${PORT[direct]}), $ROWS orders loaded"
	start_router router-w1 1
	if [ -n "${BENCH_WORKERS:-}" ]; then
		[ "$BENCH_WORKERS" = 1 ] || start_router router-w2 "$BENCH_WORKERS"
	else
		start_router router-w2 2
	fi
	start_pgbouncer
	info "router w1 :${PORT[router-w1]}, router w2 :${PORT[router-w2]:-}, pgbouncer :${PORT[pgbouncer]}; warming up"
	measure_memory
	warm_up
	if [ -n "${BENCH_WORKERS:-}" ]; then
		if [ "$BENCH_WORKERS" = 1 ]; then use_router 1; else use_router 2; fi
	else
		workers_trial
		use_router "$BEST"
	fi
	main_rounds
	report_throughput
	report_latency
	report_cpu
	report_memory
	report_kx
	report_logs
	say ""
	say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); background CPU busy before each round (%): $(tail -n +2 "$OUT/background.csv" | cut -d, -f2 | tr '\n' ' ')"
	say "elapsed $(($(date +%s) - T_START)) s; results in bench/results/$STAMP/ (runs, summary, latency, cpu, memory CSVs)"
}

main
