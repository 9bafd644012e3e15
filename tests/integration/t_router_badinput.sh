#!/usr/bin/env bash
# t_router_badinput.sh - the router against malformed and hostile clients
# (SPEC §4 "Malformed or oversized messages get an ErrorResponse and a closed
# connection, never a crash; one bad client never disturbs another"):
# truncated startup packets, a startup length field of 3 and of 100000, a
# Query larger than max_packet_size (16kB here), a wrong password (28P01),
# an unknown database (3D000), an unknown message type byte, HTTP garbage,
# a message length field of 2, and 20 garbage clients at once. Throughout, a
# libpq client (pgclient loop) runs queries on one connection and must see
# no failure; after each case psql still works and the router still runs.
# Needs: tests/harness (1 shard x 0 replicas), psql. Binaries: $BUILD/shardrouter,
# $BUILD/shardctl, $BUILD/tests/integration/{rawwire,pgclient}.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$SR_ROOT/tests/harness/shop.sh"

RAW=$BUILD/tests/integration/rawwire
PGC=$BUILD/tests/integration/pgclient
need_binaries "$BUILD/shardrouter" "$BUILD/shardctl" "$RAW" "$PGC"

cluster_up 1 0
T=$(mktemp -d "${TMPDIR:-/tmp}/t_router_badinput.XXXXXX")
LOOP_PID=
stop_loop() {
	if [ -n "$LOOP_PID" ]; then
		touch "$T/stop"
		kill "$LOOP_PID" 2>/dev/null
		wait "$LOOP_PID" 2>/dev/null
		LOOP_PID=
	fi
}
shop_trap 'stop_loop; rm -rf "$T"'

shop_setup 1 || t_bail "shop_setup"
RP=$(free_port) || t_bail "found a free port"
router_start "$RP" "max_packet_size = 16kB" || t_bail "router starts on port $RP"
t_ok "router starts with max_packet_size = 16kB" kill -0 "$ROUTER_PID"

psql_at "$SHARD0_PRIMARY_PORT" shop \
	"INSERT INTO orders (order_id, customer_id, status, total) VALUES (1, 1, 'seed', 1)" >/dev/null

# The healthy client: one libpq connection querying every 20 ms all along.
"$PGC" "host=127.0.0.1 port=$RP user=app password=app dbname=shop" loop "$T/stop" \
	>"$T/loop.out" 2>&1 &
LOOP_PID=$!

healthy() {
	[ "$(PGPASSWORD=app PGCONNECT_TIMEOUT=5 psql -X -A -t -q -h 127.0.0.1 -p "$RP" -U app -d shop \
		-c 'SELECT order_id FROM orders WHERE order_id = 1' 2>&1)" = 1 ]
}
# closed_with_error OUT: OUT ends with CLOSED and every other line is an
# ErrorResponse with SQLSTATE 08P01 (at least one when $2 = need).
closed_with_error() {
	local out=$1 need=${2:-need}
	[ "$(printf '%s\n' "$out" | tail -n 1)" = CLOSED ] || return 1
	[ -z "$(printf '%s\n' "$out" | sed '$d' | grep -v '^ERROR 08P01 ')" ] || return 1
	[ "$need" != need ] || printf '%s\n' "$out" | grep -q '^ERROR 08P01 '
}
# after CASE: the router is alive and a fresh client works.
after() {
	t_ok "$1: router still running" kill -0 "$ROUTER_PID"
	t_ok "$1: a new psql client still works" healthy
}
raw() { timeout 20 "$RAW" 127.0.0.1 "$RP" "$@" 2>&1; }

# 1. 4 of the 8 bytes of a startup packet, then the client closes its side.
out=$(raw short-startup)
t_ok "truncated startup packet (4 of 8 bytes, then EOF): connection closed, no other reply" \
	closed_with_error "$out" optional
t_diag "reply: $(echo $out)"
after "truncated startup"

# 2. A startup length field of 3 (less than the 8-byte minimum).
out=$(raw startup-len 3)
t_ok "startup length 3: ErrorResponse 08P01 then close" closed_with_error "$out"
t_diag "reply: $(echo $out)"
after "startup length 3"

# 3. A startup length field far above any valid startup packet.
out=$(raw startup-len 100000)
t_ok "startup length 100000: ErrorResponse 08P01 then close" closed_with_error "$out"
after "startup length 100000"

# 4. A Query of 20 kB with max_packet_size = 16kB; 15 kB is fine.
out=$(raw login app app shop big 15000 query "SELECT 1")
t_like "a 15 kB Query under the limit is answered" "$(echo $out)" "^LOGIN OK ROWS 1 READY I ROWS 1 READY I$"
out=$(raw login app app shop big 20000)
t_is "20 kB Query: logged in first" "$(printf '%s\n' "$out" | head -n 1)" "LOGIN OK"
t_ok "20 kB Query > max_packet_size: ErrorResponse 08P01 then close" \
	closed_with_error "$(printf '%s\n' "$out" | sed 1d)"
t_diag "reply: $(echo $out)"
after "oversized message"

# 5. Wrong password.
out=$(raw login app wrong shop query "SELECT 1")
t_like "wrong password: ErrorResponse 28P01" "$out" "ERROR 28P01 "
t_is "wrong password: no login, connection closed" "$(printf '%s\n' "$out" | grep -c -e '^LOGIN OK' -e '^READY')|$(printf '%s\n' "$out" | tail -n 1)" "0|CLOSED"
out=$(raw login nosuchuser whatever shop query "SELECT 1")
t_like "unknown user: ErrorResponse 28P01 or 28000" "$out" "ERROR 28(P01|000) "
t_is "unknown user: no login" "$(printf '%s\n' "$out" | grep -c '^LOGIN OK')" 0
after "wrong password"

# 6. A database the backend does not have.
out=$(raw login app app nosuchdb query "SELECT 1")
t_like "unknown database: ErrorResponse 3D000 from the backend" "$out" "ERROR 3D000 "
t_is "unknown database: no query answered" "$(printf '%s\n' "$out" | grep -c '^ROWS')" 0
t_diag "reply: $(echo $out)"
after "unknown database"

# 7. After login: an unknown message type byte ('z'), with a valid length.
out=$(raw login app app shop unknown query "SELECT 1")
t_is "unknown message type: logged in first" "$(printf '%s\n' "$out" | head -n 1)" "LOGIN OK"
t_ok "unknown message type 'z': ErrorResponse 08P01 then close" \
	closed_with_error "$(printf '%s\n' "$out" | sed 1d)"
t_diag "reply: $(echo $out)"
after "unknown message type"

# 8. After login: bytes that are not a message at all.
out=$(raw login app app shop garbage query "SELECT 1")
t_ok "HTTP garbage after login: ErrorResponse 08P01 then close" \
	closed_with_error "$(printf '%s\n' "$out" | sed 1d)"
t_diag "reply: $(echo $out)"
after "garbage"

# 9. After login: a Query whose length field is 2 (< 4).
out=$(raw login app app shop lenbad query "SELECT 1")
t_ok "message length 2: ErrorResponse 08P01 then close" \
	closed_with_error "$(printf '%s\n' "$out" | sed 1d)"
after "message length 2"

# 10. 20 bad clients at once (each kind several times).
pids=()
for ((i = 0; i < 20; i++)); do
	case $((i % 4)) in
	0) raw login app app shop garbage >"$T/bad.$i" & ;;
	1) raw login app app shop big 30000 >"$T/bad.$i" & ;;
	2) raw startup-len 3 >"$T/bad.$i" & ;;
	3) raw login app app shop unknown >"$T/bad.$i" & ;;
	esac
	pids+=($!)
done
wait "${pids[@]}"
bad=0
for ((i = 0; i < 20; i++)); do
	o=$(cat "$T/bad.$i")
	[ $((i % 4)) = 2 ] || o=$(printf '%s\n' "$o" | sed 1d)
	closed_with_error "$o" || { bad=$((bad + 1)); t_diag "client $i got: $(echo $o)"; }
done
t_is "20 concurrent bad clients each get 08P01 and a close" "$bad" 0
after "20 concurrent bad clients"

# The healthy client saw no failure during all of the above.
touch "$T/stop"
wait "$LOOP_PID"
LOOP_PID=
loop=$(grep '^ok ' "$T/loop.out")
t_like "the concurrent libpq client ran queries the whole time" "$loop" "^ok [1-9][0-9]* failed [0-9]+$"
t_like "the concurrent libpq client saw no failure" "$loop" " failed 0$"
[ -z "$(grep '^error' "$T/loop.out")" ] || t_diag "$(grep '^error' "$T/loop.out" | head -5)"
t_ok "admin console still answers" env PGPASSWORD=admin psql -X -q -h 127.0.0.1 -p "$RP" \
	-U admin -d shardrouter -c 'SHOW VERSION'
t_ok "router process alive at the end" kill -0 "$ROUTER_PID"

t_done
