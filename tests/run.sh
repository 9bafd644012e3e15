#!/usr/bin/env bash
# run.sh - the test runner behind `make test`: every cmocka unit test binary
# $BUILD/tests/unit/test_*, then every integration script tests/integration/t_*.sh.
#
#   BUILD=build/release tests/run.sh [unit | integration | PATTERN]
#
# Results are read from TAP ("ok N - name" / "not ok N - name" / "1..N"; unit binaries
# run with CMOCKA_MESSAGE_OUTPUT=TAP; "# SKIP" lines are skips, whatever their ok, since
# cmocka 1.1.5 prints "not ok N # SKIP" for skipped tests). A program that exits non-zero without reporting a
# failure, that reports fewer results than its plan, or that times out (UNIT_TIMEOUT,
# default 120 s; ITEST_TIMEOUT, default 300 s) counts as one more failure. Full output
# goes to $BUILD/test-logs/{unit,integration}/<name>.log; failing ones' tails are shown
# at the end. The last line is always "N passed, N failed" (individual test cases); the
# exit code is 0 only when nothing failed and something passed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export BUILD
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}
ITEST_TIMEOUT=${ITEST_TIMEOUT:-300}
LOGS=$BUILD/test-logs
FILTER=${1:-}

total_pass=0 total_fail=0 total_skip=0
failed_logs=()

# count_tap LOG: sets PASS FAIL SKIP PLANNED from the TAP lines in LOG.
count_tap() {
	read -r PASS FAIL SKIP PLANNED < <(awk '
		/^(not )?ok([ \t]|$)/ && tolower($0) ~ /# *skip/ { s++; next }
		/^ok([ \t]|$)/ { p++ }
		/^not ok([ \t]|$)/ { if (tolower($0) ~ /# *todo/) p++; else f++ }
		/^1\.\.[0-9]+/ { sub(/^1\.\./, ""); n += $0 + 0 }
		END { printf "%d %d %d %d\n", p, f, s, n }' "$1")
}

# run_one KIND NAME LOG TIMEOUT CMD...: runs CMD, echoes its result lines, tallies.
run_one() {
	local kind=$1 name=$2 log=$3 limit=$4 rc extra=0 why=
	shift 4
	mkdir -p "$(dirname "$log")"
	printf '=== %s/%s\n' "$kind" "$name"
	# (the subshell waits for timeout itself, so "Aborted" & co land in the log)
	(timeout -k 10 "$limit" "$@"; exit $?) </dev/null 2>&1 | tee "$log" |
		grep --line-buffered -E '^(not )?ok([ \t]|$)' | sed -u 's/^/    /'
	rc=${PIPESTATUS[0]}
	count_tap "$log"
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		extra=1 why="timed out after ${limit}s"
	elif [ "$PLANNED" -gt $((PASS + FAIL + SKIP)) ]; then
		extra=$((PLANNED - PASS - FAIL - SKIP))
		why="$extra planned test(s) never reported (exit $rc)"
	elif [ "$rc" != 0 ] && [ "$FAIL" = 0 ]; then
		extra=1 why="exit status $rc without a failing test"
	elif [ "$rc" = 0 ] && [ $((PASS + FAIL + SKIP)) = 0 ]; then
		extra=1 why="reported no test at all"
	fi
	FAIL=$((FAIL + extra))
	total_pass=$((total_pass + PASS)) total_fail=$((total_fail + FAIL)) total_skip=$((total_skip + SKIP))
	if [ "$FAIL" = 0 ]; then
		local sk=
		[ "$SKIP" = 0 ] || sk=", $SKIP skipped"
		printf 'PASS %s/%s: %d passed%s\n' "$kind" "$name" "$PASS" "$sk"
	else
		printf 'FAIL %s/%s: %d passed, %d failed%s (log: %s)\n' "$kind" "$name" "$PASS" "$FAIL" \
			"${why:+; $why}" "${log#"$ROOT"/}"
		failed_logs+=("$log")
	fi
}

wanted() { # kind name
	case $FILTER in
	"") return 0 ;;
	unit | integration) [ "$FILTER" = "$1" ] ;;
	*) [[ $2 == *$FILTER* ]] ;;
	esac
}

# Stop any cluster a killed or timed-out script left behind (lib.sh lists them).
reap_clusters() { # file
	local d
	[ -s "$1" ] || return 0
	while read -r d; do
		[ -f "$d/servers" ] || continue
		tests/harness/cluster.sh stop --dir "$d" >/dev/null 2>&1 &&
			echo "    (stopped a cluster left in $d)"
	done <"$1"
}

run_units() {
	local bin name
	for bin in "$BUILD"/tests/unit/test_*; do
		{ [ -f "$bin" ] && [ -x "$bin" ]; } || continue
		case $bin in *.o | *.d) continue ;; esac
		name=$(basename "$bin")
		wanted unit "$name" || continue
		run_one unit "$name" "$LOGS/unit/$name.log" "$UNIT_TIMEOUT" \
			env CMOCKA_MESSAGE_OUTPUT=TAP "$bin"
	done
}

run_integration() {
	local script name list
	for script in "${SR_ITEST_DIR:-tests/integration}"/t_*.sh; do
		[ -f "$script" ] || continue
		name=$(basename "$script" .sh)
		wanted integration "$name" || continue
		mkdir -p "$LOGS/integration"
		list=$LOGS/integration/$name.clusters
		: >"$list"
		run_one integration "$name" "$LOGS/integration/$name.log" "$ITEST_TIMEOUT" \
			env SR_TEST_CLUSTERS="$list" bash "$script"
		reap_clusters "$list"
		rm -f "$list"
	done
}

start=$(date +%s)
run_units
run_integration

if [ ${#failed_logs[@]} -gt 0 ]; then
	echo
	for log in "${failed_logs[@]}"; do
		echo "--- last 40 lines of ${log#"$ROOT"/}"
		tail -n 40 "$log"
	done
	echo
fi
[ "$total_skip" = 0 ] || echo "($total_skip skipped)"
echo "(tests took $(($(date +%s) - start))s; logs in ${LOGS#"$ROOT"/})"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
