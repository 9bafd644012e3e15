#!/usr/bin/env bash
# t_freeze.sh - the router side of a move's freeze (SPEC 4): a write to a
# frozen range waits; when the map unfreezes it (or cuts over) the write is
# released to the owner the new map names; past freeze_timeout_ms it is
# refused with 55P03 and nothing is applied; reads of the range go on.
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

PORT=$(free_port) || t_bail "found a free port"
router_start "$PORT" "freeze_timeout_ms = 2500" "catalog_poll_ms = 300"
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
t_ok "router still running" kill -0 "$ROUTER_PID"
t_done
