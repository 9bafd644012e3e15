# shellcheck shell=bash
# lib.sh - helpers sourced by bench/run.sh: port reservation (the same protocol as
# tests/harness/cluster.sh, so benchmarks never collide with tests running at the same
# time), /proc readings (CPU ticks, RSS, background CPU use) and small statistics
# (median/min/max, percentiles) in awk. No python; bash, awk, sort only.
#
#   bench_reserve_port FILE   prints a free port, reserved until bench_release_ports FILE
#   bench_release_ports FILE  releases every port listed in FILE
#   proc_cpu_ticks PID        utime+stime of the whole process (all threads), in ticks
#   proc_rss_kb PID           VmRSS in KiB
#   busy_pct SECONDS          % of all CPUs busy over SECONDS (whoever uses them)
#   med_min_max               reads numbers (one a line) -> "median min max n"
#   percentiles FILES...      pgbench -l logs -> "p50_ms p99_ms p999_ms samples"
#   wait_tcp_sql PORT USER PASSWORD DB SECS   until "SELECT 1" works there

BENCH_PORT_ROOT=${SR_PORT_ROOT:-/tmp/shardrouter-ports}
BENCH_PORT_MIN=${SR_PORT_MIN:-21000}
BENCH_PORT_MAX=${SR_PORT_MAX:-29999}

_bench_port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

_bench_reservation_live() { # port
	local pid st
	[ -d "$BENCH_PORT_ROOT/$1" ] || return 1
	read -r pid _ 2>/dev/null <"$BENCH_PORT_ROOT/$1/owner" || return 1
	[ -n "$pid" ] || return 1
	st=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

bench_reserve_port() { # listfile
	local list=$1 fd p i span start
	mkdir -p "$BENCH_PORT_ROOT" 2>/dev/null && chmod 1777 "$BENCH_PORT_ROOT" 2>/dev/null
	[ -e "$BENCH_PORT_ROOT/.lock" ] || : >"$BENCH_PORT_ROOT/.lock" 2>/dev/null
	exec {fd}<"$BENCH_PORT_ROOT/.lock" || return 1
	flock "$fd"
	span=$((BENCH_PORT_MAX - BENCH_PORT_MIN + 1))
	start=$(((RANDOM * 32768 + RANDOM) % span))
	for ((i = 0; i < span; i++)); do
		p=$((BENCH_PORT_MIN + (start + i) % span))
		if [ -d "$BENCH_PORT_ROOT/$p" ]; then
			_bench_reservation_live "$p" && continue
			rm -rf "${BENCH_PORT_ROOT:?}/$p" 2>/dev/null || continue
		fi
		_bench_port_in_use "$p" && continue
		mkdir "$BENCH_PORT_ROOT/$p" 2>/dev/null || continue
		printf '%s %s\n' "$$" "$list" >"$BENCH_PORT_ROOT/$p/owner"
		chmod 755 "$BENCH_PORT_ROOT/$p"
		echo "$p" >>"$list"
		exec {fd}<&-
		echo "$p"
		return 0
	done
	exec {fd}<&-
	return 1
}

bench_release_ports() { # listfile
	local p owner
	[ -f "$1" ] || return 0
	while read -r p; do
		[ -n "$p" ] || continue
		owner=
		read -r _ owner 2>/dev/null <"$BENCH_PORT_ROOT/$p/owner"
		[ "$owner" = "$1" ] && rm -rf "${BENCH_PORT_ROOT:?}/$p"
	done <"$1"
	rm -f "$1"
}

proc_cpu_ticks() { # pid
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

proc_rss_kb() { # pid
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

_cpu_sample() { awk '/^cpu / { idle = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i; print t, idle }' /proc/stat; }

busy_pct() { # seconds
	local a b
	a=$(_cpu_sample)
	sleep "$1"
	b=$(_cpu_sample)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
		t = y[1] - x[1]; i = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (t - i) / t : 0) }'
}

med_min_max() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- - - 0"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.1f %.1f %.1f %d\n", m, v[1], v[NR], NR }'
}

# pgbench -l lines: client_id transaction_no time_us script_no epoch epoch_us [lag]
percentiles() { # files...
	[ $# -gt 0 ] || { echo "- - - 0"; return; }
	cat "$@" | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- - - 0"; exit }
		split("0.5 0.99 0.999", p, " ")
		for (i = 1; i <= 3; i++) {
			k = int(p[i] * NR); if (k < p[i] * NR) k++; if (k < 1) k = 1; if (k > NR) k = NR
			printf "%.3f ", v[k] / 1000
		}
		print NR }'
}

wait_tcp_sql() { # port user password db secs
	local deadline=$(($(date +%s) + $5))
	until PGPASSWORD=$3 PGCONNECT_TIMEOUT=2 psql -X -A -t -q -h 127.0.0.1 -p "$1" -U "$2" \
		-d "$4" -c 'SELECT 1' >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}
