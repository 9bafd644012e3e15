# shellcheck shell=bash
# shop.sh - sourceable helpers that turn a harness cluster (cluster.env
# loaded) into the sample "shop": roles app/admin, database shop with the
# orders/order_items schema on every primary, the catalog in database
# shardrouter on shard 0's primary, and a running shardrouter.
#
#   shop_setup [NSHARDS]      schema, roles, catalog, map (NSHARDS equal ranges)
#   router_start PORT [EXTRA_INI_LINES]   start shardrouter, wait until it accepts
#   router_stop               SIGTERM, then SIGKILL after 5 s
#   free_port [NOT...]        a free TCP port on 127.0.0.1 for the router or its metrics:
#                             not listened on, not reserved by cluster.sh in
#                             /tmp/shardrouter-ports, none of NOT; 1 if none found
#   need_binaries PATH...     for a PATH that is not executable: "not ok - PATH is built"
#                             and t_done (the script ends)
#   shop_trap [CMD]           trap EXIT/INT/TERM (exit 130/143 on the signals) to run
#                             shop_cleanup: CMD (eval'd first, e.g. 'rm -rf "$T"'), kill
#                             and reap every pid in BG_PIDS, on a failed test the last
#                             30 lines of the router log, router_stop, cluster_down.
#                             Call it after cluster_up (it replaces cluster_up's traps).
# Needs: BUILD (build dir with shardrouter and shardctl), CLUSTER_DIR; lib.sh sourced.

SHOP_SCHEMA="
CREATE TABLE IF NOT EXISTS orders (order_id bigint PRIMARY KEY, customer_id bigint,
  status text, total numeric, created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS order_items (order_id bigint, line_no int, sku text, qty int,
  PRIMARY KEY (order_id, line_no));
CREATE TABLE IF NOT EXISTS customers (customer_id bigint PRIMARY KEY, name text);
GRANT ALL ON orders, order_items, customers TO app;"

_shop_psql() { # port db sql
	PGCONNECT_TIMEOUT=10 psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" \
		-U postgres -d "$2" -c "$3"
}

shop_setup() {
	local n=${1:-$SHARDS} i port
	for ((i = 0; i < SHARDS; i++)); do
		port=$(eval echo "\$SHARD${i}_PRIMARY_PORT")
		_shop_psql "$port" postgres "DO \$\$BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='app') THEN
				CREATE ROLE app LOGIN PASSWORD 'app'; END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='admin') THEN
				CREATE ROLE admin LOGIN PASSWORD 'admin'; END IF; END\$\$;" || return 1
		if [ -z "$(_shop_psql "$port" postgres "SELECT 1 FROM pg_database WHERE datname='shop'")" ]; then
			_shop_psql "$port" postgres "CREATE DATABASE shop OWNER app" || return 1
		fi
		_shop_psql "$port" shop "$SHOP_SCHEMA" || return 1
	done
	if [ -z "$(_shop_psql "$SHARD0_PRIMARY_PORT" postgres "SELECT 1 FROM pg_database WHERE datname='shardrouter'")" ]; then
		_shop_psql "$SHARD0_PRIMARY_PORT" postgres "CREATE DATABASE shardrouter" || return 1
	fi
	export SHARDROUTER_CATALOG="host=127.0.0.1 port=$SHARD0_PRIMARY_PORT user=postgres dbname=shardrouter"
	local ctl="$BUILD/shardctl"
	"$ctl" init >/dev/null || return 1
	if [ -z "$("$ctl" shard list 2>/dev/null | grep -v '^shard' | head -1)" ] ||
		[ "$(_shop_psql "$SHARD0_PRIMARY_PORT" shardrouter 'SELECT count(*) FROM shardrouter.shards')" = 0 ]; then
		for ((i = 0; i < SHARDS; i++)); do
			local p r args
			p=$(eval echo "\$SHARD${i}_PRIMARY_PORT")
			args=(--primary "host=127.0.0.1 port=$p dbname=shop")
			for ((r = 1; r <= REPLICAS; r++)); do
				args+=(--replica "host=127.0.0.1 port=$(eval echo "\$SHARD${i}_REPLICA${r}_PORT") dbname=shop")
			done
			"$ctl" shard add --id "$i" "${args[@]}" >/dev/null || return 1
		done
		"$ctl" table add orders --key order_id --type bigint >/dev/null || return 1
		"$ctl" table add order_items --key order_id --type bigint >/dev/null || return 1
		"$ctl" map init --shards "$n" >/dev/null || return 1
	fi
	# wait until replicas have the schema
	local deadline=$(($(date +%s) + 20))
	for ((i = 0; i < SHARDS; i++)); do
		for ((r = 1; r <= REPLICAS; r++)); do
			port=$(eval echo "\$SHARD${i}_REPLICA${r}_PORT")
			until [ "$(_shop_psql "$port" shop "SELECT count(*) FROM pg_tables WHERE tablename='order_items'" 2>/dev/null)" = 1 ]; do
				[ "$(date +%s)" -lt "$deadline" ] || return 1
				sleep 0.1
			done
		done
	done
}

ROUTER_PID=
router_start() { # port [extra ini lines...]
	local port=$1
	shift
	local dir=$CLUSTER_DIR/router
	mkdir -p "$dir"
	printf '"app" "app"\n"admin" "admin"\n"postgres" "postgres"\n' >"$dir/userlist.txt"
	{
		echo "[router]"
		echo "listen_addr = 127.0.0.1"
		echo "listen_port = $port"
		echo "catalog = $SHARDROUTER_CATALOG password=postgres"
		echo "map_cache = $dir/map.cache"
		echo "auth_type = scram-sha-256"
		echo "auth_file = $dir/userlist.txt"
		echo "admin_users = admin"
		echo "stats_users = postgres"
		# defaults, unless the caller sets them
		printf '%s\n' "$@" | grep -q '^default_pool_size' || echo "default_pool_size = 4"
		printf '%s\n' "$@" | grep -q '^workers' || echo "workers = 2"
		for l in "$@"; do echo "$l"; done
	} >"$dir/shardrouter.ini"
	"$BUILD/shardrouter" -c "$dir/shardrouter.ini" >"$dir/router.log" 2>&1 &
	ROUTER_PID=$!
	local deadline=$(($(date +%s) + 10))
	until PGPASSWORD=app PGCONNECT_TIMEOUT=2 psql -X -A -t -q -h 127.0.0.1 -p "$port" -U app -d shop -c 'SELECT 1' >/dev/null 2>&1; do
		if ! kill -0 "$ROUTER_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
			cat "$dir/router.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

router_stop() {
	[ -n "$ROUTER_PID" ] || return 0
	kill -TERM "$ROUTER_PID" 2>/dev/null
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$ROUTER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$ROUTER_PID" 2>/dev/null
	wait "$ROUTER_PID" 2>/dev/null
	ROUTER_PID=
}

free_port() { # [not...]
	local p i x
	for ((i = 0; i < 200; i++)); do
		p=$((26100 + RANDOM % 2400))
		[ -e "/tmp/shardrouter-ports/$p" ] && continue
		ss -ltnH "sport = :$p" | grep -q . && continue
		for x in "$@"; do
			[ "$p" = "$x" ] && continue 2
		done
		echo "$p"
		return 0
	done
	return 1
}

need_binaries() { # path...
	local b
	for b in "$@"; do
		if [ ! -x "$b" ]; then
			t_ok "$b is built" test -x "$b"
			t_done
		fi
	done
}

BG_PIDS=()
_shop_trap_cmd=

shop_cleanup() {
	local p
	[ -z "$_shop_trap_cmd" ] || eval "$_shop_trap_cmd"
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	BG_PIDS=()
	if [ "$_t_fail" != 0 ] && [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/router/router.log" ]; then
		t_diag "last lines of the router log:"
		tail -n 30 "$CLUSTER_DIR/router/router.log" | sed 's/^/#   /'
	fi
	router_stop
	cluster_down
}

shop_trap() { # [cmd]
	_shop_trap_cmd=${1:-}
	trap shop_cleanup EXIT
	trap 'shop_cleanup; exit 130' INT
	trap 'shop_cleanup; exit 143' TERM
}
