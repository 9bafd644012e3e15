#!/usr/bin/env bash
# t_replica_lag.sh - the health and replica-lag monitor (router/health.c) end to
# end against 2 shards x (primary + 1 replica), health_check_interval_ms = 300,
# replica_max_lag_bytes = 64 kB, replica_max_lag_ms = 1000:
#   - reads by key on shard 0 go to its replica while it keeps up;
#   - WAL replay paused on that replica + ~2 MB of WAL on the primary: the reads
#     move to the primary (reason lag_bytes); after pg_wal_replay_resume() they
#     come back to the replica;
#   - replay paused + one small write (lag under the byte limit): the reads
#     move once the replay delay passes 1 s (reason lag_ms), and come back;
#   - an idle primary causes no false lag: the replica stays in rotation;
#   - the replica stopped (pg_ctl stop -m immediate) under a pgbench read load:
#     the number of failed transactions / aborted clients is reported, and a
#     second pgbench run after it left rotation has no failure at all.
# Where a read ran is read from the read itself: SELECT inet_server_port() ...
# WHERE order_id = K (inet_server_port is a built-in read-only function, so the
# router treats it as a read); exact and immediate, unlike statistics counters.
# Reaction times are measured and reported (t_diag), never asserted; polls are
# bounded (3 s for leaving, 10 s for returning).
# Needs: tests/harness, psql, pgbench. Binaries: $BUILD/shardrouter, $BUILD/shardctl.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$SR_ROOT/tests/harness/shop.sh"

need_binaries "$BUILD/shardrouter" "$BUILD/shardctl"

cluster_up 2 1
T=$(mktemp -d "${TMPDIR:-/tmp}/t_replica_lag.XXXXXX")
shop_trap 'rm -rf "$T"'

shop_setup 2 || t_bail "shop_setup"
RP=$(free_port) || t_bail "found a free port"
MP=$(free_port "$RP") || t_bail "found a free metrics port"
INTERVAL=300
if ! router_start "$RP" "health_check_interval_ms = $INTERVAL" "replica_max_lag_bytes = 65536" \
	"replica_max_lag_ms = 1000" "metrics_listen = 127.0.0.1:$MP"; then
	t_bail "router starts on port $RP"
fi
t_ok "router starts (health_check_interval_ms = $INTERVAL)" kill -0 "$ROUTER_PID"
LOG=$CLUSTER_DIR/router/router.log
P0=$SHARD0_PRIMARY_PORT R0=$SHARD0_REPLICA1_PORT

rq() { # psql through the router as app
	PGPASSWORD=app PGCONNECT_TIMEOUT=10 psql -X -A -t -q -h 127.0.0.1 -p "$RP" -U app -d shop "$@" 2>&1
}
ms_now() { echo $(($(date +%s%N) / 1000000)); }
# served_by K: the port of the server that ran one read of order K through the router.
served_by() { rq -c "SELECT inet_server_port() FROM orders WHERE order_id = $1"; }
# reads K N: N reads of K in one session (each its own transaction); prints
# "<reads answered by P0> <by R0> <anything else>".
reads() {
	local i
	for ((i = 0; i < $2; i++)); do
		echo "SELECT inet_server_port() FROM orders WHERE order_id = $1;"
	done >"$T/reads.sql"
	rq -f "$T/reads.sql" >"$T/reads.out"
	echo "$(grep -cx "$P0" "$T/reads.out") $(grep -cx "$R0" "$T/reads.out") $(grep -vcxE "$P0|$R0" "$T/reads.out")"
}
# wait_served K PORT SECS: poll one read a time until PORT answers; prints the ms waited.
wait_served() {
	local t0 deadline
	t0=$(ms_now)
	deadline=$((t0 + $3 * 1000))
	until [ "$(served_by "$1")" = "$2" ]; do
		[ "$(ms_now)" -lt "$deadline" ] || { echo "timeout"; return 1; }
		sleep 0.05
	done
	echo $(($(ms_now) - t0))
}
log_count() { grep -c -- "$1" "$LOG"; }
log_grew() { [ "$(log_count "$1")" -gt "$2" ]; } # pattern old_count
# log_ms LINE: the router log line's timestamp in ms since the epoch.
log_ms() { date -d "$(echo "$1" | cut -d' ' -f1,2)" +%s%3N; }
N=50

# --- orders on both shards, one key K on shard 0
for ((id = 1; id <= 200; id++)); do
	echo "INSERT INTO orders (order_id, customer_id, status, total) VALUES ($id, 1, 'new', 1);"
done >"$T/ins.sql"
out=$(rq -v ON_ERROR_STOP=1 -f "$T/ins.sql")
t_is "200 orders inserted through the router" "$?|$(echo "$out" | grep -c ERROR)" "0|0"
K=$(psql_at "$P0" shop "SELECT min(order_id) FROM orders")
t_like "shard 0 holds some order (K=$K)" "$K" '^[0-9]+$'
psql_at "$P0" shop "CREATE TABLE scratch (id int, pad text)" >/dev/null
t_ok "shard 0's replica caught up" wait_replayed "$P0" "$R0"

# --- 1. keeping up: reads by key on shard 0 go to the replica
t_is "$N reads of K before any lag: all served by shard 0's replica" "$(reads "$K" $N)" "0 $N 0"

# --- 2. replay paused, ~2 MB of WAL: over replica_max_lag_bytes
psql_at "$R0" postgres "SELECT pg_wal_replay_pause()" >/dev/null
leaves0=$(log_count "replica 1 127.0.0.1:$R0 leaves rotation: reason=lag_bytes")
t_ok "2,000 rows of 1 kB written on shard 0's primary" \
	psql_at "$P0" shop "INSERT INTO scratch SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g"
if ms=$(wait_served "$K" "$P0" 3); then
	t_diag "paused replica (lag_bytes): reads moved to the primary ${ms} ms after the write (interval ${INTERVAL} ms)"
	t_ok "reads of K move to shard 0's primary while the replica lags (bytes)" true
else
	t_ok "reads of K move to shard 0's primary within 3 s while the replica lags (bytes)" false
fi
t_is "$N reads of K while lagging: all served by the primary, none failed" "$(reads "$K" $N)" "$N 0 0"
t_ok "the router logged the replica leaving rotation with reason lag_bytes" \
	test "$(log_count "replica 1 127.0.0.1:$R0 leaves rotation: reason=lag_bytes")" -gt "$leaves0"
grep -- "127.0.0.1:$R0 leaves rotation" "$LOG" | tail -n 1 | sed 's/^/# log: /'
# What operators see while it lags: the admin console and /metrics.
row=$(PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p "$RP" -U admin -d shardrouter \
	-c 'SHOW REPLICAS' | awk -F'|' -v p="$R0" '$4==p')
t_like "SHOW REPLICAS shows the lag and the replica out of rotation" "$row" \
	"^0\|1\|127\.0\.0\.1\|$R0\|(yes|no)\|no\|[1-9][0-9]+\|"
mlag=$(curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" |
	awk -v b="127.0.0.1:$R0" '/^shardrouter_replica_lag_bytes\{/ && index($0, b) {print $NF}')
t_like "/metrics shows the replica's lag in bytes" "$mlag" "^[1-9][0-9]{4,}$"
t_is "/metrics shows it out of rotation" \
	"$(curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" |
		awk -v b="127.0.0.1:$R0" '/^shardrouter_backend_in_rotation\{/ && index($0, b) {print $NF}')" 0

returns0=$(log_count "127.0.0.1:$R0 returns to rotation")
psql_at "$R0" postgres "SELECT pg_wal_replay_resume()" >/dev/null
if ms=$(wait_served "$K" "$R0" 10); then
	t_diag "replay resumed: reads back on the replica after ${ms} ms (needs 2 checks under half the limits)"
	t_ok "after pg_wal_replay_resume() reads of K come back to the replica" true
else
	t_ok "after pg_wal_replay_resume() reads of K come back to the replica within 10 s" false
fi
t_is "$N reads of K after catching up: all served by the replica" "$(reads "$K" $N)" "0 $N 0"
t_ok "the router logged the replica returning to rotation" \
	test "$(log_count "127.0.0.1:$R0 returns to rotation")" -gt "$returns0"

# --- 3. replay paused, one small write: under the byte limit, over the time limit
psql_at "$R0" postgres "SELECT pg_wal_replay_pause()" >/dev/null
leaves0=$(log_count "127.0.0.1:$R0 leaves rotation: reason=lag_ms")
t_ok "one small row written on shard 0's primary" \
	psql_at "$P0" shop "INSERT INTO scratch VALUES (0, 'small')"
if ms=$(wait_served "$K" "$P0" 4); then
	t_diag "paused replica (small write, lag_ms): reads moved to the primary ${ms} ms after the write (replica_max_lag_ms 1000)"
	t_ok "reads of K move to the primary once the replay delay passes replica_max_lag_ms" true
else
	t_ok "reads of K move to the primary within 4 s once the replay delay passes replica_max_lag_ms" false
fi
t_ok "the router logged the replica leaving rotation with reason lag_ms" \
	test "$(log_count "127.0.0.1:$R0 leaves rotation: reason=lag_ms")" -gt "$leaves0"
psql_at "$R0" postgres "SELECT pg_wal_replay_resume()" >/dev/null
t_ok "after resuming, reads of K come back to the replica" wait_served "$K" "$R0" 10

# --- 4. an idle primary is no lag: 3 s (3x replica_max_lag_ms) without writes
t_ok "shard 0's replica caught up" wait_replayed "$P0" "$R0"
leaves0=$(log_count "127.0.0.1:$R0 leaves rotation")
sleep 3
t_is "$N reads of K after 3 idle seconds: all served by the replica" "$(reads "$K" $N)" "0 $N 0"
t_is "no replica left rotation while the primary was idle" \
	"$(log_count "127.0.0.1:$R0 leaves rotation")" "$leaves0"

# --- 5. the replica stops under a read load
cat >"$T/read.pgb" <<EOF
\\set k random(1, 200)
SELECT inet_server_port() FROM orders WHERE order_id = :k;
EOF
pgb() { # seconds clients
	PGPASSWORD=app pgbench -n -h 127.0.0.1 -p "$RP" -U app -f "$T/read.pgb" -c "$2" -j 2 -T "$1" shop
}
leaves0=$(log_count "127.0.0.1:$R0 leaves rotation: reason=unreachable")
pgb 4 4 >"$T/pgb1.out" 2>&1 &
pgb_pid=$!
BG_PIDS+=("$pgb_pid")
sleep 1.5
PG_CTL=/usr/lib/postgresql/15/bin/pg_ctl
t_stop=$(ms_now)
if [ "$(id -u)" = 0 ]; then
	(cd / && runuser -u "${SR_PG_OS_USER:-postgres}" -- "$PG_CTL" stop -m immediate -D "$SHARD0_REPLICA1_DATA") >"$T/stop.out" 2>&1
else
	"$PG_CTL" stop -m immediate -D "$SHARD0_REPLICA1_DATA" >"$T/stop.out" 2>&1
fi
stop_rc=$?
t_is "shard 0's replica stopped (pg_ctl stop -m immediate)" "$stop_rc" 0
t_ok "the stopped replica left rotation (reason unreachable) within 3 s" \
	wait_until 3 log_grew "127.0.0.1:$R0 leaves rotation: reason=unreachable" "$leaves0"
line=$(grep -- "127.0.0.1:$R0 leaves rotation: reason=unreachable" "$LOG" | tail -n 1)
echo "$line" | sed 's/^/# log: /'
t_diag "stopped replica: the leave was logged $(($(log_ms "$line") - t_stop)) ms after pg_ctl stop was started (interval ${INTERVAL} ms)"
wait "$pgb_pid"
BG_PIDS=()
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$T/pgb1.out")
aborted=$(grep -c "aborted in command" "$T/pgb1.out")
done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/pgb1.out")
t_diag "pgbench (4 clients, 4 s) across the stop: ${done_tx:-?} transactions processed, failed transactions ${failed:-?}, clients aborted by an error ${aborted}"
grep "aborted in command" "$T/pgb1.out" | head -n 4 | sed 's/^/#   /'
t_ok "pgbench across the stop processed transactions before it" test "${done_tx:-0}" -gt 0

pgb 3 4 >"$T/pgb2.out" 2>&1
rc=$?
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$T/pgb2.out")
done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/pgb2.out")
t_diag "pgbench (4 clients, 3 s) after the replica left rotation: ${done_tx:-?} transactions, ${failed:-?} failed"
t_is "pgbench after the replica left rotation: exit 0, 0 failed, no aborted client" \
	"$rc|${failed:-?}|$(grep -c "aborted" "$T/pgb2.out")" "0|0|0"
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/pgb2.out" | tail -n 15
t_is "$N reads of K with the replica down: all served by the primary" "$(reads "$K" $N)" "$N 0 0"

# --- 6. the replica starts again (returns), then is promoted (leaves for good)
pg_as() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "${SR_PG_OS_USER:-postgres}" -- "$@"); else "$@"; fi; }
t_ok "shard 0's replica started again" pg_as "$PG_CTL" start -w -t 60 -D "$SHARD0_REPLICA1_DATA" \
	-l "$CLUSTER_DIR/$SHARD0_REPLICA1_NAME/log/postgres.log" -s
t_stop=$(ms_now)
if ms=$(wait_served "$K" "$R0" 10); then
	t_diag "restarted replica: reads back on it ${ms} ms after pg_ctl start returned"
	t_ok "the restarted replica returns to rotation" true
else
	t_ok "the restarted replica returns to rotation within 10 s" false
fi
leaves0=$(log_count "127.0.0.1:$R0 leaves rotation: reason=promoted")
t_is "pg_promote() on shard 0's replica" "$(psql_at "$R0" postgres "SELECT pg_promote(true, 30)")" t
t_ok "the promoted replica left rotation (reason promoted) within 3 s" \
	wait_until 3 log_grew "127.0.0.1:$R0 leaves rotation: reason=promoted" "$leaves0"
t_is "$N reads of K with the replica promoted: all served by the primary" "$(reads "$K" $N)" "$N 0 0"

t_done
