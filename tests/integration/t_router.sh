#!/usr/bin/env bash
# t_router.sh - the router end to end against 2 shards x (primary + 1 replica)
# (SPEC §4): rows inserted through it (libpq prepared INSERT with text and
# binary parameters, psql literals) land on the shard that owns hash(key) and
# are read back by key; a one-shard transaction commits, a two-shard one fails
# with 0A000 and leaves nothing behind; reads by key are served by replicas
# and writes by primaries (server-side statistics); cancel; session settings
# survive transaction pooling and do not leak to other clients; pgbench in
# simple, extended and prepared mode with more clients than the pool; the
# admin console; hints; refusals of keyless and cross-shard statements.
# Needs: tests/harness, psql, pgbench. Binaries: $BUILD/shardrouter,
# $BUILD/shardctl, $BUILD/tests/integration/pgclient and rawwire.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$SR_ROOT/tests/harness/shop.sh"

CTL=$BUILD/shardctl
PGC=$BUILD/tests/integration/pgclient
RAW=$BUILD/tests/integration/rawwire
FIXTURE=$SR_ROOT/tests/fixtures/pgbench_orders.sql
need_binaries "$BUILD/shardrouter" "$CTL" "$PGC" "$RAW"

cluster_up 2 1
T=$(mktemp -d "${TMPDIR:-/tmp}/t_router.XXXXXX")
shop_trap 'rm -rf "$T"'

shop_setup 2 || t_bail "shop_setup"
RP=$(free_port) || t_bail "found a free port"
router_start "$RP" || t_bail "router starts on port $RP"
t_ok "router starts (2 shards x 1 replica)" kill -0 "$ROUTER_PID"

CI="host=127.0.0.1 port=$RP user=app password=app dbname=shop"
P0=$SHARD0_PRIMARY_PORT R0=$SHARD0_REPLICA1_PORT
P1=$SHARD1_PRIMARY_PORT R1=$SHARD1_REPLICA1_PORT

# rq ARGS...: psql through the router as app, errors with their SQLSTATE; stdout+stderr.
rq() {
	PGPASSWORD=app PGCONNECT_TIMEOUT=10 psql -X -A -t -q -v VERBOSITY=verbose \
		-h 127.0.0.1 -p "$RP" -U app -d shop "$@" 2>&1
}
admin() {
	PGPASSWORD=admin PGCONNECT_TIMEOUT=10 psql -X -A -q -P footer=off -h 127.0.0.1 -p "$RP" \
		-U admin -d shardrouter -c "$1" 2>&1
}
owner() { "$CTL" hash "$1" --json | sed -n 's/.*"shard":\([0-9][0-9]*\).*/\1/p'; }
pport() { eval echo "\$SHARD${1}_PRIMARY_PORT"; }
rport() { eval echo "\$SHARD${1}_REPLICA1_PORT"; }
on_primary() { psql_at "$(pport "$1")" shop "$2"; }
# wait_replicas: every replica has replayed its primary's current WAL position.
wait_replicas() {
	local i
	for ((i = 0; i < SHARDS; i++)); do
		wait_replayed "$(pport $i)" "$(rport $i)" 60 || return 1
	done
}
# stat_sum COLUMN VIEW WHERE PORT...: sum of a statistics column over servers.
stat_sum() {
	local col=$1 view=$2 where=$3 sum=0 p v
	shift 3
	for p in "$@"; do
		v=$(psql_at "$p" shop "SELECT coalesce(sum($col), 0) FROM $view WHERE $where") || return 1
		sum=$((sum + v))
	done
	echo "$sum"
}
idx_scans() { stat_sum idx_scan pg_stat_user_indexes "indexrelname = 'orders_pkey'" "$@"; }
tup_ins() { stat_sum n_tup_ins pg_stat_user_tables "relname = 'orders'" "$@"; }

# --- 1. 1,000 orders by key, libpq (text and binary parameters) and psql literals
FIRST=1000001 LAST=1001000
ins_base=$(tup_ins "$P0" "$P1")
out=$("$PGC" "$CI" insert $FIRST 900 2>&1)
t_is "libpq: 900 prepared INSERTs (450 text, 450 binary params) succeed" "$out" "inserted 900"
for ((id = FIRST + 900; id <= LAST; id++)); do
	case $((id % 3)) in
	0) k=$id ;;
	1) k="'$id'" ;;
	2) k="'$id'::bigint" ;;
	esac
	echo "INSERT INTO orders (order_id, customer_id, status, total) VALUES ($k, $((id % 1000)), 'lit', 1);"
done >"$T/lit.sql"
out=$(rq -v ON_ERROR_STOP=1 -f "$T/lit.sql")
t_is "psql: 100 literal INSERTs (42, '42', '42'::bigint forms) succeed" "$?|$(echo "$out" | grep -c ERROR)" "0|0"
on_primary 0 "SELECT order_id FROM orders ORDER BY 1" >"$T/ids0"
on_primary 1 "SELECT order_id FROM orders ORDER BY 1" >"$T/ids1"
t_diag "shard 0 holds $(wc -l <"$T/ids0") orders, shard 1 holds $(wc -l <"$T/ids1")"
t_is "the two shards' order_id sets are disjoint" "$(comm -12 "$T/ids0" "$T/ids1" | wc -l)" 0
t_is "together they hold exactly the 1,000 inserted ids" \
	"$(sort -n "$T/ids0" "$T/ids1" | md5sum)" "$(seq $FIRST $LAST | md5sum)"
t_ok "both shards got some of them" test -s "$T/ids0" -a -s "$T/ids1"
bad=0 n=0
for id in $(seq $FIRST 9 $LAST); do # every 9th: odd and even ids, literals too
	n=$((n + 1))
	o=$(owner "$id")
	if grep -qx "$id" "$T/ids$o" 2>/dev/null; then :; else
		bad=$((bad + 1))
		[ $bad -gt 5 ] || t_diag "order $id: shardctl says shard '$o', not stored there"
	fi
done
t_is "each of $n sampled ids is stored on the shard shardctl hash names" "$bad" 0

t_ok "replicas catch up" wait_replicas
idx_r0=$(idx_scans "$R0" "$R1") idx_p0=$(idx_scans "$P0" "$P1")
out=$("$PGC" "$CI" read $FIRST 1000 2>&1)
t_is "reads by key through the router return all 1,000 (text and binary params)" "$out" "found 1000 of 1000"

# --- 4. reads by key on replicas, writes on primaries (server statistics;
# idle backends flush their counters within ~1-10 s, a few more reads poke them)
replica_reads_counted() {
	"$PGC" "$CI" read $FIRST 4 >/dev/null 2>&1
	[ $(($(idx_scans "$R0" "$R1") - idx_r0)) -ge 1000 ]
}
t_ok "replicas' orders_pkey idx_scan grew by >= 1000 (the reads ran there)" \
	wait_until 40 replica_reads_counted
t_is "primaries' orders_pkey idx_scan did not grow (no read ran there)" \
	"$(($(idx_scans "$P0" "$P1") - idx_p0))" 0
primary_writes_counted() { [ $(($(tup_ins "$P0" "$P1") - ins_base)) -ge 1000 ]; }
t_ok "primaries' orders n_tup_ins grew by >= 1000 (the writes ran there)" \
	wait_until 40 primary_writes_counted

# --- keys for the transaction tests: A, A2 on shard 0, B on shard 1
A="" A2="" B=""
for ((k = 2000001; k < 2000100; k++)); do
	case $(owner $k) in
	0) if [ -z "$A" ]; then A=$k; elif [ -z "$A2" ]; then A2=$k; fi ;;
	1) [ -n "$B" ] || B=$k ;;
	esac
	[ -n "$A" ] && [ -n "$A2" ] && [ -n "$B" ] && break
done
t_diag "keys: A=$A A2=$A2 (shard 0), B=$B (shard 1)"
K42=$(owner 42)

# --- 2. transactions
out=$(rq <<EOF
BEGIN;
INSERT INTO orders (order_id, customer_id, status, total) VALUES ($A, 1, 'tx', 1);
UPDATE orders SET status = 'tx2' WHERE order_id = $A;
INSERT INTO order_items (order_id, line_no, sku, qty) VALUES ($A, 1, 'sku-1', 2);
COMMIT;
EOF
)
t_is "one-shard transaction runs without error" "$(echo "$out" | grep -c ERROR)" 0
t_is "one-shard transaction committed on shard 0's primary" \
	"$(on_primary 0 "SELECT status, (SELECT count(*) FROM order_items WHERE order_id = $A) FROM orders WHERE order_id = $A")" "tx2|1"
t_is "one-shard transaction left nothing on shard 1" \
	"$(on_primary 1 "SELECT count(*) FROM orders WHERE order_id = $A")" 0

t_ok "replicas catch up" wait_replicas # the SELECT below reads A from a replica
out=$(rq <<EOF
BEGIN;
INSERT INTO orders (order_id, customer_id, status, total) VALUES ($A2, 1, 'x-shard', 1);
INSERT INTO orders (order_id, customer_id, status, total) VALUES ($B, 1, 'x-shard', 1);
COMMIT;
ROLLBACK;
SELECT 'after', status FROM orders WHERE order_id = $A;
EOF
)
t_like "two-shard transaction fails with SQLSTATE 0A000" "$out" "ERROR:  0A000"
t_like "after the failure the session works (ROLLBACK, then a SELECT)" "$out" "after\|tx2"
t_is "nothing of the two-shard transaction on either primary" \
	"$(on_primary 0 "SELECT count(*) FROM orders WHERE order_id IN ($A2, $B)")|$(on_primary 1 "SELECT count(*) FROM orders WHERE order_id IN ($A2, $B)")" "0|0"
[[ $out =~ 0A000 ]] || t_diag "got: $(echo $out)"

out=$(rq <<EOF
BEGIN;
INSERT INTO orders (order_id, customer_id, status, total) VALUES ($A2, 1, 'x-shard-read', 1);
SELECT * FROM orders WHERE order_id = $B;
COMMIT;
SELECT 'after2';
EOF
)
t_like "write on shard 0 then read on shard 1 in one transaction: 0A000" "$out" "ERROR:  0A000"
t_is "... and the write on shard 0 was rolled back" \
	"$(on_primary 0 "SELECT count(*) FROM orders WHERE order_id = $A2")" 0
t_like "... and the session goes on" "$out" "after2"

# --- 7. admin console
out=$(admin "SHOW SHARDS")
t_is "SHOW SHARDS lists 4 backends" "$(echo "$out" | sed 1d | grep -c .)" 4
miss=
for p in "$P0" "$R0" "$P1" "$R1"; do echo "$out" | grep -q "|$p|" || miss="$miss $p"; done
t_is "SHOW SHARDS names every primary and replica port" "$miss" ""
for cmd in "SHOW SHARDMAP" "SHOW POOLS" "SHOW CONFIG" "SHOW VERSION"; do
	out=$(admin "$cmd")
	t_ok "$cmd answers with rows" test "$(echo "$out" | sed 1d | grep -c .)" -ge 1 -a \
		"$(echo "$out" | grep -c ERROR)" = 0
done
out=$(timeout 20 "$RAW" 127.0.0.1 "$RP" login app app shardrouter query "SHOW SHARDS" 2>&1)
t_like "non-admin user app on database shardrouter: error 28000" "$out" "^ERROR 28000 "
t_is "... and no result" "$(echo "$out" | grep -c -e '^ROWS' -e '^LOGIN OK')" 0
out=$(admin "SHOW ROUTE 'SELECT * FROM orders WHERE order_id = 42'")
col=$(echo "$out" | head -n 1 | tr '|' '\n' | grep -nx shard | cut -d: -f1)
t_is "SHOW ROUTE for order_id = 42 names shardctl's owner (shard $K42)" \
	"$(echo "$out" | sed -n 2p | cut -d'|' -f"${col:-99}")" "$K42"

# --- 9. refusals
out=$(rq -c "UPDATE orders SET status = 'x'")
t_like "keyless UPDATE is refused with 0A000" "$out" "ERROR:  0A000"
t_like "... naming table orders and key column order_id" "$out" "orders.*order_id"
t_is "... and changed nothing" \
	"$(on_primary 0 "SELECT count(*) FROM orders WHERE status = 'x'")|$(on_primary 1 "SELECT count(*) FROM orders WHERE status = 'x'")" "0|0"
out=$(rq -c "SELECT * FROM orders")
t_like "keyless SELECT is refused with 0A000 (no fan-out yet)" "$out" "ERROR:  0A000"
out=$(rq -c "SELECT * FROM orders WHERE order_id IN ($A, $B)")
t_like "SELECT ... IN (keys on shards 0 and 1) is refused with 0A000" "$out" "ERROR:  0A000"
out=$(rq -c "DELETE FROM orders WHERE order_id IN ($A, $B)")
t_like "DELETE ... IN (keys on shards 0 and 1) is refused with 0A000" "$out" "ERROR:  0A000"
t_is "... and deleted nothing" "$(on_primary 0 "SELECT count(*) FROM orders WHERE order_id = $A")" 1

# --- 5. cancel (pgclient sends PQcancel after 500 ms of a 10 s sleep)
KB=$(head -n 1 "$T/ids1")
for sql in "SELECT pg_sleep(10)" "SELECT pg_sleep(10) FROM orders WHERE order_id = $KB"; do
	out=$("$PGC" "$CI" cancel 500 "$sql" 2>&1)
	t_like "cancel of '$sql' returns 57014" "$out" "sqlstate 57014 elapsed_ms [0-9]+"
	ms=$(echo "$out" | sed -n 's/.*elapsed_ms \([0-9]*\).*/\1/p')
	t_ok "... well before the sleep ends (${ms:-?} ms after the cancel)" test "${ms:-99999}" -lt 2000
	t_like "... and the connection is usable afterwards" "$out" "after ok"
done

# --- 3. pgbench, more clients (12) than default_pool_size (4)
for mode in simple extended prepared; do
	PGPASSWORD=app timeout 60 pgbench -n -h 127.0.0.1 -p "$RP" -U app -c 12 -j 2 -T 3 \
		-M "$mode" -f "$FIXTURE" shop >"$T/pgbench.$mode" 2>&1
	rc=$?
	out=$(cat "$T/pgbench.$mode")
	t_is "pgbench -M $mode exits 0" "$rc" 0
	t_like "pgbench -M $mode: 0 failed transactions" "$out" "number of failed transactions: 0 "
	t_like "pgbench -M $mode: transactions ran and a tps line was printed" "$out" \
		"actually processed: [1-9][0-9]*.*tps = [0-9]"
	[ "$rc" = 0 ] || t_diag "$(grep -v '^progress' "$T/pgbench.$mode" | tail -n 8)"
done

# --- 6. session state across server connections, under concurrent load
K0a=$(sed -n 1p "$T/ids0") K0b=$(sed -n 2p "$T/ids0")
K1a=$(sed -n 1p "$T/ids1") K1b=$(sed -n 2p "$T/ids1")
DEF_TZ=$(psql_at "$P0" shop "SHOW TimeZone")
PGPASSWORD=app pgbench -n -h 127.0.0.1 -p "$RP" -U app -c 12 -j 2 -T 4 -M extended \
	-f "$FIXTURE" shop >"$T/pgbench.bg" 2>&1 &
BG_PIDS+=($!)
sleep 0.5
"$PGC" "$CI" state set 15 "$K0a" "$K1a" "$K0b" "$K1b" >"$T/state.set" 2>&1 &
BG_PIDS+=($!)
"$PGC" "$CI" state noset 15 "$K0a" "$K1a" "$K0b" "$K1b" >"$T/state.noset" 2>&1
wait "${BG_PIDS[@]}"
BG_PIDS=()
S=$T/state.set N=$T/state.noset
t_is "session-state client: no errors" "$(grep -c -e '^error' "$S")" 0
t_is "session-state client: 60 keyed observations on both shards" "$(grep -c '^seen' "$S")" 60
t_is "SHOW TimeZone returns the SET value every time" "$(grep '^show' "$S" | sort -u)" "show Pacific/Chatham"
t_is "TimeZone kept on every server connection" \
	"$(grep '^seen' "$S" | cut -d'|' -f1 | sort -u)" "seen Pacific/Chatham"
t_is "application_name kept on every server connection" \
	"$(grep '^seen' "$S" | cut -d'|' -f2 | sort -u)" "pgclient_state"
t_is "search_path kept on every server connection" \
	"$(grep '^seen' "$S" | cut -d'|' -f3 | sort -u)" "pgclient_schema, public"
t_diag "the session-state client was served by $(grep '^backend' "$S" | sort -u | wc -l) server connections"
t_is "another client: no errors" "$(grep -c -e '^error' "$N")" 0
t_is "another client always sees the default TimeZone ($DEF_TZ)" \
	"$(grep -e '^show' "$N" | sort -u)|$(grep '^seen' "$N" | cut -d'|' -f1 | sort -u)" "show $DEF_TZ|seen $DEF_TZ"
t_is "another client never sees the other's application_name or search_path" \
	"$(grep -c -e pgclient_state -e pgclient_schema "$N")" 0
bg=$(cat "$T/pgbench.bg")
t_like "the concurrent pgbench had 0 failed transactions" "$bg" "number of failed transactions: 0 "
if grep -q -e pgclient_state -e pgclient_schema "$N" || [ "$(grep '^seen' "$S" | sort -u | wc -l)" != 1 ]; then
	t_diag "session-state observations (count, TimeZone|application_name|search_path):"
	grep '^seen' "$S" | sort | uniq -c | sed 's/^/#   set-client  /'
	grep '^seen' "$N" | sort | uniq -c | sed 's/^/#   other-client/'
fi

# --- 8. hints (last: a router crash here must not hide the results above)
t_ok "replicas catch up" wait_replicas
out=$(rq -c "/* shard_key=42 */ SELECT count(*), inet_server_port() FROM orders")
t_like "/* shard_key=42 */ on a keyless SELECT runs on shard $K42" "$out" \
	"^[0-9]+\|($(pport "$K42")|$(rport "$K42"))$"
n1=$(on_primary 1 "SELECT count(*) FROM orders")
n0=$(on_primary 0 "SELECT count(*) FROM orders")
out=$(rq -c "SET shardrouter.shard = 1" -c "SELECT count(*), inet_server_port() FROM orders" \
	-c "SET shardrouter.shard = 0" -c "SELECT count(*), inet_server_port() FROM orders")
t_like "SET shardrouter.shard = 1: keyless SELECT on orders runs on shard 1" \
	"$(echo "$out" | sed -n 1p)" "^$n1\|($P1|$R1)$"
t_like "SET shardrouter.shard = 0: keyless SELECT on orders runs on shard 0" \
	"$(echo "$out" | sed -n 2p)" "^$n0\|($P0|$R0)$"

t_ok "router process alive at the end" kill -0 "$ROUTER_PID"
t_done
