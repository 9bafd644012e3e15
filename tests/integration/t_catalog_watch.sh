#!/usr/bin/env bash
# t_catalog_watch.sh - the router's catalog watcher (router/catwatch.c, SPEC §3):
# registration and heartbeats in shardrouter.routers; a shardctl change reaches the
# running router by NOTIFY (admin SHOW SHARDMAP) and is acked (acked_epoch); after the
# watcher's connection is killed it reconnects and still gets changes; a change made
# without NOTIFY arrives by the epoch poll; the catalog lease expires while the catalog
# refuses connections and is regained when it is back; the watcher rewrites the map
# cache, so the router starts from it with the catalog down and serves queries by key;
# with neither catalog nor cache it refuses to start, naming the cache; a range's
# read_lsn (set by a move's cutover) sends its keyed reads to the primary until the
# replica has replayed past it, and shardctl split keeps it on both halves; a router
# stopped (SIGSTOP) for longer than the lease refuses keyed writes (25006) after it
# resumes until it has reloaded the map, and then writes by the new map.
# Needs: tests/harness (2 shards x 1 replica), psql. Binaries: $BUILD/shardrouter,
# $BUILD/shardctl. Propagation times are printed as diagnostics ("# ... ms").
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

cluster_up 2 1
shop_trap
shop_setup 2
t_is "shop schema and catalog" "$?" 0

PORT=$(free_port) || t_bail "found a free port"
DIR=$CLUSTER_DIR/router
LOG=$DIR/router.log
admin() { PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c "$1"; }
app() { PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop -c "$1"; }
cat_sql() { psql_at "$SHARD0_PRIMARY_PORT" shardrouter "$1"; }
cat_epoch() { cat_sql "SELECT epoch FROM shardrouter.meta"; }
map_rows() { admin 'SHOW SHARDMAP' | wc -l; }
map_epoch() { admin 'SHOW SHARDMAP' | head -n 1 | cut -d'|' -f5; }
acked() { cat_sql "SELECT acked_epoch FROM shardrouter.routers WHERE pid = $ROUTER_PID"; }
watcher_pid() {
	cat_sql "SELECT pid FROM pg_stat_activity WHERE datname = 'shardrouter'
		 AND application_name = 'shardrouter-catwatch'"
}

# map_at ROWS EPOCH: the router's map has ROWS ranges at EPOCH, and it acked EPOCH.
map_at() { [ "$(map_rows)" = "$1" ] && [ "$(map_epoch)" = "$2" ] && [ "$(acked)" = "$2" ]; }

router_start "$PORT" "catalog_poll_ms = 500" "catalog_lease_ms = 3000"
t_is "router starts" "$?" 0

# --- registration and heartbeat -------------------------------------------------
wait_until 3 test "$(acked)" = "$(cat_epoch)"
t_is "registered in shardrouter.routers with acked_epoch = the catalog epoch" \
	"$(acked)" "$(cat_epoch)"
t_like "router_id is host:port:pid" \
	"$(cat_sql "SELECT router_id FROM shardrouter.routers WHERE pid = $ROUTER_PID")" \
	":$PORT:$ROUTER_PID\$"
t_is "version 0.1.0" \
	"$(cat_sql "SELECT version FROM shardrouter.routers WHERE pid = $ROUTER_PID")" 0.1.0
hb1=$(cat_sql "SELECT heartbeat_at FROM shardrouter.routers WHERE pid = $ROUTER_PID")
sleep 1.2
t_is "heartbeat_at advances (catalog_poll_ms = 500)" \
	"$(cat_sql "SELECT heartbeat_at > '$hb1' FROM shardrouter.routers WHERE pid = $ROUTER_PID")" t
t_is "the watcher LISTENs on its own connection" "$(watcher_pid | wc -l)" 1
t_is "a row to read by key later" "$(app "INSERT INTO orders (order_id, status) VALUES (42, 'new')
	RETURNING order_id")" 42

# --- (a) a shardctl change arrives by NOTIFY ------------------------------------
rows0=$(map_rows)
ep0=$(cat_epoch)
t_is "the router serves the catalog's map" "$(map_epoch)" "$ep0"
lo=$(admin 'SHOW SHARDMAP' | head -n 1 | cut -d'|' -f1)
t_ok "shardctl split $lo" "$BUILD/shardctl" split "$lo"
ep1=$(cat_epoch)
t_is "the split bumped the catalog epoch" "$ep1" $((ep0 + 1))
ms=$(wait_ms 1000 map_at $((rows0 + 1)) "$ep1")
t_is "(a) within 1 s: SHOW SHARDMAP has one more range at epoch $ep1, acked_epoch = $ep1" \
	"$(map_rows)|$(map_epoch)|$(acked)" "$((rows0 + 1))|$ep1|$ep1"
t_diag "split reached the router and was acked in ${ms} ms"
t_like "the swap was triggered by the NOTIFY (logged)" "$(grep 'map epoch' "$LOG")" \
	"map epoch $ep0 -> $ep1 \\(notify\\)"

# --- (b) the LISTEN connection is killed ----------------------------------------
wpid=$(watcher_pid)
t_is "terminate the watcher's connection" \
	"$(cat_sql "SELECT pg_terminate_backend($wpid)")" t
lo2=$(admin 'SHOW SHARDMAP' | sed -n 2p | cut -d'|' -f1)
t_ok "shardctl split $lo2 right after" "$BUILD/shardctl" split "$lo2"
ep2=$(cat_epoch)
ms=$(wait_ms 3000 map_at $((rows0 + 2)) "$ep2")
t_is "(b) the change still arrives (within 3 s)" \
	"$(map_rows)|$(map_epoch)|$(acked)" "$((rows0 + 2))|$ep2|$ep2"
t_diag "change after the kill arrived in ${ms} ms"
t_like "... found by the check after reconnecting or by NOTIFY on the new connection" \
	"$(grep 'map epoch' "$LOG")" "map epoch $ep1 -> $ep2 \\((connect|notify)\\)"
wait_until 3 test -n "$(watcher_pid)"
new=$(watcher_pid)
t_ok "the watcher reconnected (new backend $new, was $wpid)" \
	test -n "$new" -a "$new" != "$wpid"

# A change that sends no NOTIFY at all (as if it were lost): only the poll finds it.
cat_sql "UPDATE shardrouter.ranges SET state = 'frozen' WHERE lo = '$lo';
	 UPDATE shardrouter.meta SET epoch = epoch + 1" >/dev/null
ep3=$(cat_epoch)
ms=$(wait_ms 3000 map_at $((rows0 + 2)) "$ep3")
t_is "(b) a change without NOTIFY arrives by the epoch poll" "$(map_epoch)|$(acked)" "$ep3|$ep3"
t_diag "change without NOTIFY arrived in ${ms} ms (poll 500 ms)"
t_like "... found by the poll (logged)" "$(grep 'map epoch' "$LOG")" "map epoch $ep2 -> $ep3 \\(poll\\)"
t_is "... with its content (range $lo frozen)" \
	"$(admin 'SHOW SHARDMAP' | awk -F'|' -v lo="$lo" '$1 == lo { print $4 }')" frozen
cat_sql "UPDATE shardrouter.ranges SET state = 'active' WHERE lo = '$lo';
	 UPDATE shardrouter.meta SET epoch = epoch + 1" >/dev/null
ep4=$(cat_epoch)
wait_ms 3000 map_at $((rows0 + 2)) "$ep4" >/dev/null
t_is "and back to active" "$(map_epoch)|$(acked)" "$ep4|$ep4"

# --- lease: the catalog refuses connections for longer than catalog_lease_ms ----
t_is "no lease message so far" "$(grep -c 'catalog lease' "$LOG")" 0
psql_at "$SHARD0_PRIMARY_PORT" postgres \
	"ALTER DATABASE shardrouter WITH ALLOW_CONNECTIONS false" >/dev/null
psql_at "$SHARD0_PRIMARY_PORT" postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE datname = 'shardrouter' AND application_name = 'shardrouter-catwatch'" >/dev/null
ms=$(wait_ms 8000 grep -q 'catalog lease expired' "$LOG")
t_ok "the lease expires (logged) while the catalog is unreachable" \
	grep -q 'catalog lease expired' "$LOG"
t_diag "lease expiry logged ${ms} ms after the catalog went away (lease 3000 ms)"
t_is "reads still work without the catalog" "$(app 'SELECT order_id FROM orders WHERE order_id = 42')" 42
psql_at "$SHARD0_PRIMARY_PORT" postgres \
	"ALTER DATABASE shardrouter WITH ALLOW_CONNECTIONS true" >/dev/null
ms=$(wait_ms 8000 grep -q 'catalog lease regained' "$LOG")
t_ok "the lease is regained once the catalog is back" grep -q 'catalog lease regained' "$LOG"
t_diag "lease regained ${ms} ms after the catalog came back"
wait_until 3 test "$(acked)" = "$ep4"
t_is "still acked at epoch $ep4" "$(acked)" "$ep4"

# --- (c) start from the cache file with the catalog down ------------------------
old_pid=$ROUTER_PID
router_stop
t_is "a clean stop unregisters the router" \
	"$(cat_sql "SELECT count(*) FROM shardrouter.routers WHERE pid = $old_pid")" 0
t_like "the cache file holds the latest map (written by the watcher)" \
	"$(grep '^epoch ' "$DIR/map.cache")" "^epoch $ep4\$"
sed "s|^catalog = .*|catalog = host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2|" \
	"$DIR/shardrouter.ini" >"$DIR/down.ini"
"$BUILD/shardrouter" -c "$DIR/down.ini" >"$DIR/down.log" 2>&1 &
ROUTER_PID=$!
LOG=$DIR/down.log
wait_until 10 app 'SELECT 1'
t_is "(c) starts with the catalog down and serves a query by key" \
	"$(app 'SELECT order_id FROM orders WHERE order_id = 42')" 42
t_is "... with the cached map (epoch $ep4)" "$(map_epoch)" "$ep4"
t_like "... and says it started from the cache" "$(cat "$LOG")" "started from the map cache"
sleep 1
t_ok "... and keeps running while the watcher retries" kill -0 "$ROUTER_PID"
t_like "... the watcher logged why it cannot reach the catalog" "$(cat "$LOG")" \
	"catalog watcher: cannot connect to the catalog"
router_stop

sed "s|^map_cache = .*|map_cache = $DIR/no-such.cache|" "$DIR/down.ini" >"$DIR/none.ini"
out=$(timeout 30 "$BUILD/shardrouter" -c "$DIR/none.ini" 2>&1)
rc=$?
t_ok "(c) with neither catalog nor cache it refuses to start (exit $rc)" \
	test "$rc" -ne 0 -a "$rc" -ne 124
t_like "... with a message naming the cache file" "$out" "cache file .*no-such.cache"

# --- read_lsn: reads of a cut-over range wait for the replica to replay past it --
cp "$DIR/router.log" "$DIR/router1.log"
router_start "$PORT" "catalog_poll_ms = 500" "catalog_lease_ms = 3000"
t_is "router restarted with the catalog" "$?" 0
LOG=$DIR/router.log
J=$("$BUILD/shardctl" hash 42 --type bigint --json)
RLO=$(printf '%s' "$J" | jq -r '.range.lo // .lo')
OWN=$(printf '%s' "$J" | jq -r '.shard')
OWN_P=$(eval echo "\$SHARD${OWN}_PRIMARY_PORT")
OWN_R=$(eval echo "\$SHARD${OWN}_REPLICA1_PORT")
wait_replayed "$OWN_P" "$OWN_R"
# is VALUE FUNC [ARGS...]: FUNC's output is VALUE (re-evaluated on every call).
is() { [ "$("${@:2}")" = "$1" ]; }
rep_tx() { admin 'SHOW REPLICAS' | awk -F'|' -v s="$OWN" '$1 == s { print $10 }'; }
range_lsn() { admin 'SHOW SHARDMAP' | awk -F'|' -v lo="$1" '$1 == lo { print $6 }'; }
reads() { # N: N keyed reads of order 42; prints how many found it
	local i n=0
	for ((i = 0; i < $1; i++)); do
		[ "$(app 'SELECT order_id FROM orders WHERE order_id = 42')" = 42 ] && n=$((n + 1))
	done
	echo "$n"
}
set_read_lsn() { # lo lsn|NULL
	cat_sql "BEGIN; SELECT pg_advisory_xact_lock(6001136956863697457);
		UPDATE shardrouter.ranges SET read_lsn = $2 WHERE lo = '$1';
		UPDATE shardrouter.meta SET epoch = epoch + 1;
		SELECT pg_notify('shardrouter_map', (SELECT epoch FROM shardrouter.meta)::text);
		COMMIT;" >/dev/null
}
t_is "baseline: reads of order 42 are served by the replica" \
	"$(b=$(rep_tx); r=$(reads 10); echo "$r $(($(rep_tx) - b))")" "10 10"
set_read_lsn "$RLO" "'FFFF/0'"
wait_until 5 is FFFF/0 range_lsn "$RLO"
t_is "SHOW SHARDMAP shows the range's read_lsn" "$(range_lsn "$RLO")" FFFF/0
t_is "with read_lsn past every replica, reads go to the primary (replica count unchanged)" \
	"$(b=$(rep_tx); r=$(reads 10); echo "$r $(($(rep_tx) - b))")" "10 0"
t_ok "shardctl split $RLO (a catalog change that rewrites the range)" \
	"$BUILD/shardctl" split "$RLO"
t_is "both halves keep the read_lsn in the catalog" \
	"$(cat_sql "SELECT count(*) FROM shardrouter.ranges WHERE read_lsn = 'FFFF/0'")" 2
wait_until 5 is 2 sh -c "PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p $PORT -U admin \
	-d shardrouter -c 'SHOW SHARDMAP' | grep -c '|FFFF/0\$'"
t_is "... and in the router's map" \
	"$(admin 'SHOW SHARDMAP' | grep -c '|FFFF/0$')" 2
t_like "... and in its cache file" "$(grep -c '^range .* FFFF/0$' "$DIR/map.cache")" "^2$"
RLO=$(printf '%s' "$("$BUILD/shardctl" hash 42 --type bigint --json)" | jq -r '.range.lo // .lo')
lsn=$(psql_at "$OWN_P" postgres "SELECT pg_current_wal_lsn()")
set_read_lsn "$RLO" "'$lsn'"
wait_until 5 is "$lsn" range_lsn "$RLO"
wait_replayed "$OWN_P" "$OWN_R"
rep_grows() { local b; b=$(rep_tx); reads 1 >/dev/null; [ "$(rep_tx)" -gt "$b" ]; }
t_ok "read_lsn = the primary's LSN $lsn: reads go to the replica once it replayed past it" \
	wait_until 10 rep_grows
for lo in $(cat_sql "SELECT lo FROM shardrouter.ranges WHERE read_lsn IS NOT NULL"); do
	set_read_lsn "$lo" NULL
done
wait_until 5 is 0 sh -c "PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p $PORT -U admin \
	-d shardrouter -c 'SHOW SHARDMAP' | grep -c '/'"
t_is "read_lsn reset: reads of order 42 are served by the replica again" \
	"$(b=$(rep_tx); r=$(reads 10); echo "$r $(($(rep_tx) - b))")" "10 10"

# --- a router resumed after SIGSTOP longer than the lease -----------------------
K2=777001
J=$("$BUILD/shardctl" hash "$K2" --type bigint --json)
K2LO=$(printf '%s' "$J" | jq -r '.range.lo // .lo')
K2OLD=$(printf '%s' "$J" | jq -r '.shard')
K2NEW=$((1 - K2OLD))
regained() { grep -c 'catalog lease regained' "$LOG"; }
r0=$(regained)
kill -STOP "$ROUTER_PID"
# While it sleeps, the range of K2 gets a new owner (as a move's cutover would).
cat_sql "BEGIN; SELECT pg_advisory_xact_lock(6001136956863697457);
	UPDATE shardrouter.ranges SET shard_id = $K2NEW WHERE lo = '$K2LO';
	UPDATE shardrouter.meta SET epoch = epoch + 1;
	SELECT pg_notify('shardrouter_map', (SELECT epoch FROM shardrouter.meta)::text);
	COMMIT;" >/dev/null
sleep 3.5 # > catalog_lease_ms
# Keep the watcher from reading the catalog for a while after the resume.
psql_at "$SHARD0_PRIMARY_PORT" shardrouter "BEGIN; LOCK TABLE shardrouter.meta IN ACCESS
	EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;" >/dev/null 2>&1 &
LOCKER=$!
meta_locked() { cat_sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
	WHERE c.relname = 'meta' AND l.mode = 'AccessExclusiveLock' AND l.granted"; }
wait_until 5 is 1 meta_locked
kill -CONT "$ROUTER_PID"
out=$(PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop -v VERBOSITY=verbose \
	-c "INSERT INTO orders (order_id, status) VALUES ($K2, 'resumed')" 2>&1)
t_like "resumed past its lease, before reloading the map: keyed write refused with 25006" \
	"$out" "25006"
t_is "... and it was not applied on the old owner" \
	"$(psql_at "$(eval echo "\$SHARD${K2OLD}_PRIMARY_PORT")" shop \
		"SELECT count(*) FROM orders WHERE order_id = $K2")" 0
t_is "reads go on meanwhile" "$(app 'SELECT order_id FROM orders WHERE order_id = 42')" 42
wait "$LOCKER"
# At least once: a sync that itself took longer than the lease (it waited on
# the lock) renews the lease from its start, which can expire again at once.
regained_since() { [ "$(regained)" -gt "$r0" ]; }
wait_until 10 regained_since
t_ok "the lease is regained once the catalog answers (map reloaded)" regained_since
k2_written() { [ "$(app "INSERT INTO orders (order_id, status) VALUES ($K2, 'resumed')
	ON CONFLICT (order_id) DO NOTHING RETURNING order_id")" = "$K2" ]; }
wait_until 10 k2_written
t_is "then the write goes to the range's new owner" \
	"$(app "SELECT order_id FROM orders WHERE order_id = $K2 FOR UPDATE")" "$K2"
t_is "... shard $K2NEW has it, shard $K2OLD does not" \
	"$(psql_at "$(eval echo "\$SHARD${K2NEW}_PRIMARY_PORT")" shop \
		"SELECT count(*) FROM orders WHERE order_id = $K2")|$(psql_at \
		"$(eval echo "\$SHARD${K2OLD}_PRIMARY_PORT")" shop \
		"SELECT count(*) FROM orders WHERE order_id = $K2")" "1|0"
router_stop

t_is "no sanitizer reports in the router logs (MODE=asan)" \
	"$(cat "$DIR"/router1.log "$DIR"/router.log "$DIR"/down.log | grep -c 'Sanitizer')" 0

t_done
