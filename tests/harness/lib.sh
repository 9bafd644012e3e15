# shellcheck shell=bash
# lib.sh - sourced by tests/integration/t_*.sh: TAP helpers and a throw-away cluster.
#
#   t_ok NAME CMD...        run CMD; "ok N - NAME", or "not ok" plus its output as diagnostics
#   t_nok NAME CMD...       the same, but CMD must fail
#   t_is NAME GOT EXPECTED  string equality
#   t_like NAME GOT REGEX   bash =~ match
#   t_diag MSG...           a "# " diagnostic line
#   t_bail NAME             "not ok - NAME", then t_done (the script ends)
#   t_done                  prints the plan and "# N passed, N failed"; exits 1 on failures
#   cluster_up N M [cluster.sh start options]
#                           starts N shards x (1 primary + M replicas) in a fresh temp dir,
#                           sources its cluster.env (CLUSTER_DIR, SHARD0_PRIMARY_PORT, ...)
#                           and traps EXIT/INT/TERM so the cluster is always stopped
#   cluster_down            stop it (idempotent); keeps the logs if a test failed
#   psql_at PORT DB SQL     psql -At (unaligned, tuples only) as postgres on 127.0.0.1
#   wait_until SECS CMD...  poll CMD every 0.1 s until it succeeds (1 on timeout)
#   wait_ms MS CMD...       poll CMD every 20 ms for up to MS; prints the elapsed ms
#   now_ms                  monotonic-enough wall clock in ms (date +%s%N)
#   replayed_past PORT LSN  the replica on PORT has replayed WAL up to LSN
#   wait_replayed PRIMARY_PORT REPLICA_PORT [SECS]
#                           the replica replays the primary's current WAL position
#                           within SECS (default 20); 1 otherwise
#
# Environment: BUILD (build dir, default build/release), SR_ROOT (repo root, set here),
# SR_TEST_CLUSTERS (file; run.sh sets it) gets every cluster dir so the runner can stop
# leftovers after a killed script, KEEP_CLUSTER=1 keeps the whole cluster dir
# (data too; a failed test keeps only the logs).
# Not thread-safe in any sense: one test script, one shell.

SR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SR_ROOT
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$SR_ROOT/$BUILD ;; esac
export BUILD
CLUSTER_SH=$SR_ROOT/tests/harness/cluster.sh

_t_n=0
_t_pass=0
_t_fail=0

_t_report() { # status name [diagnostics]
	_t_n=$((_t_n + 1))
	if [ "$1" = 0 ]; then
		_t_pass=$((_t_pass + 1))
		echo "ok $_t_n - $2"
	else
		_t_fail=$((_t_fail + 1))
		echo "not ok $_t_n - $2"
		[ -z "${3:-}" ] || printf '%s\n' "$3" | sed 's/^/#   /'
	fi
}

t_diag() { echo "# $*"; }

t_ok() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	_t_report "$rc" "$name" "$( [ $rc = 0 ] || printf 'command: %s\nexit: %s\n%s' "$*" "$rc" "$out")"
}

t_nok() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc = 0 ]; then _t_report 1 "$name" "command unexpectedly succeeded: $*"$'\n'"$out"
	else _t_report 0 "$name"
	fi
}

t_is() {
	if [ "$2" = "$3" ]; then _t_report 0 "$1"
	else _t_report 1 "$1" "got:      '$2'"$'\n'"expected: '$3'"
	fi
}

t_like() {
	if [[ $2 =~ $3 ]]; then _t_report 0 "$1"
	else _t_report 1 "$1" "got:      '$2'"$'\n'"expected to match: $3"
	fi
}

t_done() {
	echo "1..$_t_n"
	echo "# $_t_pass passed, $_t_fail failed"
	[ "$_t_fail" = 0 ] && [ "$_t_n" -gt 0 ]
	exit $?
}

t_bail() { # name
	t_ok "$1" false
	t_done
}

psql_at() { # port db sql
	PGCONNECT_TIMEOUT=10 psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" \
		-U postgres -d "$2" -c "$3"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_ms MS CMD...: poll CMD every 20 ms for up to MS; prints the elapsed ms.
wait_ms() {
	local limit=$1 t0 t
	shift
	t0=$(now_ms)
	while :; do
		t=$(($(now_ms) - t0))
		if "$@" >/dev/null 2>&1; then
			echo "$t"
			return 0
		fi
		[ "$t" -lt "$limit" ] || { echo "$t"; return 1; }
		sleep 0.02
	done
}

wait_until() { # secs cmd...
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

replayed_past() { # port lsn
	[ "$(psql_at "$1" postgres "SELECT pg_last_wal_replay_lsn() >= '$2'::pg_lsn")" = t ]
}

wait_replayed() { # primary_port replica_port [secs]
	local lsn
	lsn=$(psql_at "$1" postgres "SELECT pg_current_wal_lsn()") || return 1
	wait_until "${3:-20}" replayed_past "$2" "$lsn"
}

_cluster_dir=

cluster_up() { # shards replicas [options]
	local shards=$1 replicas=$2 out
	shift 2
	# (as root, /tmp: the Postgres OS user must reach the dir, and $TMPDIR may be private)
	local base=${TMPDIR:-/tmp}
	[ "$(id -u)" != 0 ] || base=/tmp
	_cluster_dir=$(mktemp -d "$base/sr-test.XXXXXX") || { echo "# mktemp failed"; exit 1; }
	[ -z "${SR_TEST_CLUSTERS:-}" ] || echo "$_cluster_dir" >>"$SR_TEST_CLUSTERS"
	trap cluster_down EXIT
	trap 'cluster_down; exit 130' INT
	trap 'cluster_down; exit 143' TERM
	if ! out=$("$CLUSTER_SH" start --dir "$_cluster_dir" --shards "$shards" \
		--replicas "$replicas" "$@" 2>&1); then
		_t_report 1 "cluster_up $shards $replicas" "$out"
		t_done
	fi
	t_diag "$(printf '%s\n' "$out" | tail -n 1)"
	# shellcheck disable=SC1091
	. "$_cluster_dir/cluster.env"
}

cluster_down() {
	[ -n "$_cluster_dir" ] || return 0
	local d=$_cluster_dir
	_cluster_dir=
	if [ -n "${KEEP_CLUSTER:-}" ]; then
		"$CLUSTER_SH" stop --dir "$d" >/dev/null 2>&1
		echo "# cluster stopped; kept in $d"
	elif [ "$_t_fail" != 0 ]; then
		"$CLUSTER_SH" stop --dir "$d" --purge >/dev/null 2>&1
		echo "# cluster stopped; logs kept in $d"
	else
		"$CLUSTER_SH" stop --dir "$d" >/dev/null 2>&1
		rm -rf "$d"
	fi
}
