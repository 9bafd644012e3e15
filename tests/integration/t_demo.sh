#!/usr/bin/env bash
# t_demo.sh - the demo behind `make demo` / `make demo-stop` (SPEC §6), run for real:
# tools/demo.sh start brings up 2 shards x (primary + replica) on 5501/5502/5511/5512
# and shardrouter on 127.0.0.1:6432 in the background, loads the sample data through
# the router; app/app reads and writes through it, admin/admin gets the admin console,
# the printed shardctl command works; start again is harmless (and restarts a router
# that died); stop leaves nothing listening and no process behind.
# The demo's ports are fixed: if any of them is taken (or another t_demo runs), the
# whole script is skipped. It uses a private SR_DEMO_DIR, so a user's own stopped demo
# in /tmp/shardrouter-demo is never touched, and always stops the demo on exit.
# Needs: tests/harness, psql, ss (or bash /dev/tcp); binaries $BUILD/shardrouter, shardctl.
# shellcheck disable=SC2317 # (helpers run via trap / t_ok look unreachable to it)
set -u
# shellcheck source=../harness/lib.sh
. "$(dirname "$0")/../harness/lib.sh"

DEMO_SH=$SR_ROOT/tools/demo.sh
PORTS=(5501 5502 5511 5512 6432 9930)
export DEMO_ORDERS=${DEMO_ORDERS:-5000}

skip_all() {
	echo "ok 1 - # SKIP $*"
	echo "1..1"
	exit 0
}

listening() { # port: something accepts TCP connections on 127.0.0.1:port
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

for b in shardrouter shardctl; do
	if [ ! -x "$BUILD/$b" ]; then
		t_ok "$b is built at $BUILD/$b" test -x "$BUILD/$b"
		t_done
	fi
done

# One t_demo at a time on this machine (the ports are fixed); then the ports must be free.
LOCK=/tmp/shardrouter-t_demo.lock
[ -e "$LOCK" ] || { : >"$LOCK" && chmod 666 "$LOCK"; } 2>/dev/null
exec {lockfd}<"$LOCK" || skip_all "cannot open $LOCK"
flock -n "$lockfd" || skip_all "another t_demo.sh holds /tmp/shardrouter-t_demo.lock"
for p in "${PORTS[@]}"; do
	listening "$p" && skip_all "port $p is in use (a running demo or another server); the demo needs ${PORTS[*]}"
	# a live reservation by tests/harness/cluster.sh (a cluster being set up right now)
	if read -r owner _ 2>/dev/null <"${SR_PORT_ROOT:-/tmp/shardrouter-ports}/$p/owner" &&
		[ -n "$owner" ] && [ -d "/proc/$owner" ]; then
		skip_all "port $p is reserved by process $owner (tests/harness/cluster.sh)"
	fi
done

base=${TMPDIR:-/tmp}
[ "$(id -u)" != 0 ] || base=/tmp # (as root the Postgres OS user must reach the dir)
SR_DEMO_DIR=$(mktemp -d "$base/sr-t_demo.XXXXXX") || { echo "# mktemp failed"; exit 1; }
export SR_DEMO_DIR
[ -z "${SR_TEST_CLUSTERS:-}" ] || echo "$SR_DEMO_DIR/cluster" >>"$SR_TEST_CLUSTERS"
OUT=$SR_DEMO_DIR.out # demo.sh's output, outside the dir it wipes

cleanup() {
	"$DEMO_SH" stop >/dev/null 2>&1
	if [ "$_t_fail" != 0 ] || [ -n "${KEEP_CLUSTER:-}" ]; then
		echo "# demo stopped; its files (router.log, cluster/*/log) kept in $SR_DEMO_DIR"
	else
		rm -rf "$SR_DEMO_DIR" "$OUT"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

router_psql() { # user db sql: -At through the router, password = user name
	PGPASSFILE=/dev/null PGPASSWORD=$1 PGCONNECT_TIMEOUT=10 psql -X -A -t -q \
		-v ON_ERROR_STOP=1 -h 127.0.0.1 -p 6432 -U "$1" -d "$2" -c "$3"
}
all_listening() { local p; for p in "${PORTS[@]}"; do listening "$p" || return 1; done; }
none_listening() {
	local p left=
	for p in "${PORTS[@]}"; do listening "$p" && left+=" $p"; done
	[ -z "$left" ] || { echo "still listening:$left"; return 1; }
}
router_pid() { cat "$SR_DEMO_DIR/router.pid" 2>/dev/null; }
shard_sum() { # sql returning a number, run on both primaries directly: the sum
	echo $(($(psql_at 5501 shop "$1") + $(psql_at 5511 shop "$1")))
}
export PGPASSFILE=/dev/null PGPASSWORD=postgres # psql_at: superuser postgres

# --- start ---
"$DEMO_SH" start >"$OUT" 2>&1
rc=$?
t_is "demo.sh start exits 0" "$rc" 0
if [ "$rc" != 0 ]; then
	sed 's/^/#   /' "$OUT"
	tail -n 20 "$SR_DEMO_DIR/router.log" 2>/dev/null | sed 's/^/#   router.log: /'
	t_done
fi
t_ok "servers on 5501 5502 5511 5512, the router on 6432 and metrics on 9930 listen" all_listening
t_like "metrics are served on 127.0.0.1:9930" \
	"$(curl -s --max-time 5 http://127.0.0.1:9930/metrics | grep '^shardrouter_map_epoch')" \
	"^shardrouter_map_epoch [0-9]+"
pid1=$(router_pid)
t_like "the router runs in the background after start returned" \
	"$(ps -o comm= -p "${pid1:-0}" 2>/dev/null)" "^shardrouter$"
t_like "it prints how to connect as app" "$(cat "$OUT")" \
	'psql "host=127\.0\.0\.1 port=6432 dbname=shop user=app password=app"'
t_like "it prints the admin console command" "$(cat "$OUT")" \
	'port=6432 dbname=shardrouter user=admin password=admin'
t_like "it prints example queries and how to stop" "$(cat "$OUT")" \
	"SELECT \* FROM orders WHERE order_id = 42;.*SHOW SHARDS;.*SHOW ROUTE '.*make demo-stop"

# --- the sample data, on the shards themselves ---
orders=$(shard_sum "select count(*) from orders")
t_is "the shards hold DEMO_ORDERS orders in total" "$orders" "$DEMO_ORDERS"
t_like "every order has 1..3 items" \
	"$(shard_sum "select count(*) from order_items") $(shard_sum "select count(*) from
		(select order_id from order_items group by order_id having count(*) between 1 and 3) x")" \
	"^[0-9]+ $DEMO_ORDERS$"
n0=$(psql_at 5501 shop "select count(*) from orders")
n1=$(psql_at 5511 shop "select count(*) from orders")
t_like "both shards got orders (shard 0: $n0, shard 1: $n1)" "$n0 $n1" "^[1-9][0-9]* [1-9][0-9]*$"
ids1=$(psql_at 5511 shop "select coalesce(string_agg(order_id::text, ','), '0') from orders")
t_is "no order is on both shards" \
	"$(psql_at 5501 shop "select count(*) from orders where order_id in ($ids1)" 2>&1)" 0

# --- through the router as app ---
truth=$(shard_sum "select count(*) from orders where order_id = 42")
t_is "order 42 is stored once" "$truth" 1
want=$( (psql_at 5501 shop "select order_id, customer_id, status, total from orders where order_id = 42"
	psql_at 5511 shop "select order_id, customer_id, status, total from orders where order_id = 42"))
got=
wait_until 10 test -n "$(router_psql app shop "select 1 from orders where order_id = 42")"
got=$(router_psql app shop "SELECT order_id, customer_id, status, total FROM orders WHERE order_id = 42" 2>&1)
t_is "app/app reads order 42 through the router, as stored on its shard" "$got" "$want"
got=$(router_psql app shop "select count(*) from order_items where order_id = 42" 2>&1)
t_is "and its order_items" "$got" "$(shard_sum "select count(*) from order_items where order_id = 42")"
t_nok "a wrong password is refused" env PGPASSFILE=/dev/null PGPASSWORD=wrong psql -X -At \
	-h 127.0.0.1 -p 6432 -U app -d shop -c "select 1"
t_ok "app writes a new order through the router" router_psql app shop \
	"INSERT INTO orders (order_id, customer_id, status, total) VALUES (900001, 7, 'new', 19.90)"
t_is "it lands on exactly one shard's primary" \
	"$(shard_sum "select count(*) from orders where order_id = 900001 and total = 19.90")" 1

# --- admin console and the printed shardctl command ---
shards=$(router_psql admin shardrouter "SHOW SHARDS" 2>&1)
t_is "admin/admin: SHOW SHARDS lists 2 primaries and 2 replicas on the demo ports" \
	"$(printf '%s\n' "$shards" | grep -oE '\|(5501|5502|5511|5512)\|' | sort | tr -d '|' | tr '\n' ' ')" \
	"5501 5502 5511 5512 "
route=$(router_psql admin shardrouter "SHOW ROUTE 'SELECT * FROM orders WHERE order_id = 42'" 2>&1)
t_like "SHOW ROUTE answers for order 42" "$route" "orders\|order_id\|"
t_nok "app is not an admin" router_psql app shardrouter "SHOW SHARDS"
ctl_cmd=$(grep -E 'shardctl status$' "$OUT" | sed 's/^ *//')
ctl_out=$(cd / && env -u PGPASSFILE -u PGPASSWORD bash -c "$ctl_cmd" 2>&1)
t_like "the printed shardctl status command works and counts shard 0's rows" \
	"$(printf '%s\n' "$ctl_out" | grep -m1 'rows:')" \
	"public\.orders=$(psql_at 5501 shop "select count(*) from orders")\b"

# --- start again: harmless ---
"$DEMO_SH" start >"$OUT" 2>&1
rc=$?
t_is "a second start exits 0" "$rc" 0
t_is "it keeps the same router process" "$(router_pid)" "$pid1"
t_is "and the data (no reload, no wipe)" "$(shard_sum "select count(*) from orders")" \
	"$((DEMO_ORDERS + 1))"
t_is "the router still answers" "$(router_psql app shop "select status from orders where order_id = 900001" 2>&1)" new

# --- a router that died is started again by start ---
kill -KILL "$pid1" 2>/dev/null
wait_until 5 test ! -d "/proc/$pid1"
"$DEMO_SH" start >"$OUT" 2>&1
t_is "start after the router died exits 0" "$?" 0
pid2=$(router_pid)
t_like "with a new router process" "$pid2 $(ps -o comm= -p "${pid2:-0}" 2>/dev/null)" \
	"^[0-9]+ shardrouter$"
t_is "that serves the same data" "$(router_psql app shop "select count(*) from order_items where order_id = 42" 2>&1)" \
	"$(shard_sum "select count(*) from order_items where order_id = 42")"

# --- stop ---
"$DEMO_SH" stop >"$OUT" 2>&1
rc=$?
t_is "demo.sh stop exits 0" "$rc" 0
t_ok "nothing listens on ${PORTS[*]} any more" none_listening
t_ok "the router process is gone" test ! -d "/proc/${pid2:-0}"
left=$(for p in /proc/[0-9]*; do
	case $(readlink "$p/cwd" 2>/dev/null) in "$SR_DEMO_DIR"/*) echo "${p#/proc/}" ;; esac
done)
t_is "no server process is left in the demo dir" "$left" ""
"$DEMO_SH" stop >"$OUT" 2>&1
t_is "stop again exits 0" "$?" 0
"$DEMO_SH" status >/dev/null 2>&1
t_is "status reports the demo stopped (exit 3)" "$?" 3

t_done
