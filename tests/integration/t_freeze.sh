#!/usr/bin/env bash
# t_freeze.sh - the router side of a move's freeze (SPEC 4): a write to a
# frozen range waits; when the map unfreezes it (or cuts over) the write is
# released to the owner the new map names; past freeze_timeout_ms it is
# refused with 55P03 and nothing is applied; reads of the range go on. A
# transaction already running when its range freezes gets 40001 on its next
# write there and is rolled back at once. The router acks a new epoch
# (shardrouter.routers.acked_epoch) only once no request routed by an older
# map is in flight on a primary: a slow write delays the ack until it
# finishes, and then the ack comes at once (the catalog poll is 60 s here,
# so only the drain wake-up can write it).
# The freeze is made by hand in the catalog (what shardctl move will do).
# Needs: tests/harness (2 shards x 0 replicas), psql. Binaries in $BUILD.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

cluster_up 2 0
shop_trap
shop_setup 2
t_is "shop schema and catalog" "$?" 0

CAT=$SHARD0_PRIMARY_PORT
cat_sql() { psql_at "$CAT" shardrouter "$1"; }
# Change the state of the range holding hash H, as one catalog change.
set_state() { # lo state
	cat_sql "BEGIN; SELECT pg_advisory_xact_lock(6001136956863697457);
		UPDATE shardrouter.ranges SET state = '$2' WHERE lo = '$1';
		UPDATE shardrouter.meta SET epoch = epoch + 1;
		SELECT pg_notify('shardrouter_map', (SELECT epoch FROM shardrouter.meta)::text);
		COMMIT;" >/dev/null
}
app() { PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop -c "$1" 2>&1; }
admin() { PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c "$1"; }
cat_epoch() { cat_sql "SELECT epoch FROM shardrouter.meta"; }
acked() { cat_sql "SELECT acked_epoch FROM shardrouter.routers WHERE pid = $ROUTER_PID"; }
map_epoch() { admin 'SHOW SHARDMAP' | head -n 1 | cut -d'|' -f5; }
# is VALUE FUNC [ARGS...]: FUNC's output is VALUE (re-evaluated on each call,
# for wait_until / wait_ms).
is() { [ "$("${@:2}")" = "$1" ]; }

PORT=$(free_port) || t_bail "found a free port"
router_start "$PORT" "freeze_timeout_ms = 2500" "catalog_poll_ms = 60000" \
	"catalog_lease_ms = 120000" "log_level = debug"
t_ok "router starts" kill -0 "${ROUTER_PID:-0}"

KEY=4242
J=$("$BUILD/shardctl" hash "$KEY" --type bigint --json)
LO=$(printf '%s' "$J" | jq -r '.range.lo // .lo')
OWNER=$(printf '%s' "$J" | jq -r '.shard')
t_like "shardctl names the key's range" "$LO" "^[0-9a-f]{16}$"
app "INSERT INTO orders (order_id, status) VALUES ($KEY, 'before')" >/dev/null

set_state "$LO" frozen
wait_until 5 sh -c "PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p $PORT -U admin -d shardrouter -c 'SHOW SHARDMAP' | grep -q '^$LO|.*|frozen|'"
t_like "the router sees the range frozen" \
	"$(PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c 'SHOW SHARDMAP' | grep "^$LO|")" "frozen"

# A write waits; unfreezing releases it.
( PGPASSWORD=app psql -X -A -t -h 127.0.0.1 -p "$PORT" -U app -d shop \
	-c "UPDATE orders SET status = 'released' WHERE order_id = $KEY" >"$CLUSTER_DIR/w1.out" 2>&1 ) &
W1=$!
sleep 1
t_ok "the write is held while the range is frozen" kill -0 "$W1"
t_is "reads of a frozen range go on" "$(app "SELECT status FROM orders WHERE order_id = $KEY")" before
set_state "$LO" active
wait "$W1"
t_is "unfreezing releases the held write" "$(cat "$CLUSTER_DIR/w1.out")" "UPDATE 1"
t_is "and it was applied on the owner" \
	"$(psql_at "$(eval echo "\$SHARD${OWNER}_PRIMARY_PORT")" shop "SELECT status FROM orders WHERE order_id = $KEY")" released

# A write that waits too long is refused and not applied.
set_state "$LO" frozen
wait_until 5 sh -c "PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p $PORT -U admin -d shardrouter -c 'SHOW SHARDMAP' | grep -q '^$LO|.*|frozen|'"
out=$(app "UPDATE orders SET status = 'late' WHERE order_id = $KEY")
t_like "past freeze_timeout_ms the write is refused with a clear error" "$out" "freeze_timeout_ms"
t_is "nothing was applied" \
	"$(psql_at "$(eval echo "\$SHARD${OWNER}_PRIMARY_PORT")" shop "SELECT status FROM orders WHERE order_id = $KEY")" released
out=$(PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop -v VERBOSITY=verbose \
	-c "UPDATE orders SET status = 'late' WHERE order_id = $KEY" 2>&1)
t_like "its SQLSTATE is 55P03" "$out" "55P03"
set_state "$LO" active

# --- a running transaction writes again after its range froze ------------------
OWNER_PORT=$(eval echo "\$SHARD${OWNER}_PRIMARY_PORT")
owner_sql() { psql_at "$OWNER_PORT" shop "$1"; }
idle_in_tx() { owner_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'
	AND usename = 'app' AND state LIKE 'idle in transaction%'"; }
wait_until 5 sh -c "PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p $PORT -U admin -d shardrouter -c 'SHOW SHARDMAP' | grep -q '^$LO|.*|active|'"
app "UPDATE orders SET status = 'base' WHERE order_id = $KEY" >/dev/null
FIFO=$CLUSTER_DIR/tx.fifo
mkfifo "$FIFO"
PGPASSWORD=app psql -X -A -t -h 127.0.0.1 -p "$PORT" -U app -d shop -v VERBOSITY=verbose \
	<"$FIFO" >"$CLUSTER_DIR/tx.out" 2>&1 &
TXP=$!
exec 7>"$FIFO"
echo "BEGIN;" >&7
echo "UPDATE orders SET status = 'in-tx-1' WHERE order_id = $KEY;" >&7
wait_until 10 is 1 idle_in_tx
t_is "the transaction's first write ran on the owner (open transaction there)" "$(idle_in_tx)" 1
set_state "$LO" frozen
wait_until 5 sh -c "PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p $PORT -U admin -d shardrouter -c 'SHOW SHARDMAP' | grep -q '^$LO|.*|frozen|'"
echo "UPDATE orders SET status = 'in-tx-2' WHERE order_id = $KEY;" >&7
wait_until 10 grep -q 40001 "$CLUSTER_DIR/tx.out"
t_like "its next write to the frozen range gets 40001 at once (no wait)" \
	"$(cat "$CLUSTER_DIR/tx.out")" "40001.*frozen for a move; this transaction was rolled back"
wait_until 10 is 0 idle_in_tx
t_is "the router rolled the transaction back on the shard before the client's ROLLBACK" \
	"$(idle_in_tx)" 0
echo "ROLLBACK;" >&7
exec 7>&-
wait "$TXP"
t_is "after ROLLBACK neither write is on the shard" \
	"$(owner_sql "SELECT status FROM orders WHERE order_id = $KEY")" base
set_state "$LO" active

# --- acked_epoch: drained, not just published ----------------------------------
wait_until 10 is "$(cat_epoch)" acked
t_is "idle: acked_epoch = the catalog epoch" "$(acked)" "$(cat_epoch)"
t_is "routers.lease_ms = catalog_lease_ms" \
	"$(cat_sql "SELECT lease_ms FROM shardrouter.routers WHERE pid = $ROUTER_PID")" 120000
slow_active() { owner_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'
	AND state = 'active' AND query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()"; }
other_lo() { admin 'SHOW SHARDMAP' | awk -F'|' -v lo="$LO" '$1 != lo { print $1; exit }'; }
( PGPASSWORD=app psql -X -A -t -h 127.0.0.1 -p "$PORT" -U app -d shop \
	-c "UPDATE orders SET status = 'slow' WHERE order_id = $KEY AND pg_sleep(3) IS NOT NULL" \
	>"$CLUSTER_DIR/slow.out" 2>&1 ) &
SLOW=$!
wait_until 10 is 1 slow_active
ep0=$(cat_epoch)
t_ok "shardctl split $(other_lo) while a write routed by epoch $ep0 runs" \
	"$BUILD/shardctl" split "$(other_lo)"
ep1=$(cat_epoch)
wait_until 5 is "$ep1" map_epoch
a_during=$(acked)
t_is "the router switched to epoch $ep1 but acks $ep0 while that write is in flight" \
	"$(map_epoch)|$a_during|$(slow_active)" "$ep1|$ep0|1"
wait "$SLOW"
t_is "the slow write finished" "$(cat "$CLUSTER_DIR/slow.out")" "UPDATE 1"
ms=$(wait_ms 5000 is "$ep1" acked)
t_is "then acked_epoch = $ep1 without waiting for the 60 s poll" "$(acked)" "$ep1"
t_diag "ack ${ms} ms after the slow write returned"
t_ok "shardctl split $(other_lo) with nothing in flight" "$BUILD/shardctl" split "$(other_lo)"
ep2=$(cat_epoch)
ms=$(wait_ms 5000 is "$ep2" acked)
t_is "with nothing in flight acked_epoch = $ep2 promptly" "$(acked)" "$ep2"
t_diag "split to ack: ${ms} ms (including psql round trips of this script)"

t_ok "router still running" kill -0 "$ROUTER_PID"
t_is "no sanitizer reports in the router log (MODE=asan)" \
	"$(grep -c 'Sanitizer' "$CLUSTER_DIR/router/router.log")" 0
t_done
