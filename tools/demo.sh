#!/usr/bin/env bash
# demo.sh - the local demo behind `make demo` / `make demo-stop` (SPEC §6).
#
#   BUILD=build/release tools/demo.sh start|stop|status
#
# start: two shards, each a primary with one streaming replica, on fixed loopback ports
#   5501/5502 (shard 0 primary/replica) and 5511/5512 (shard 1), durable (no fsync=off),
#   scram-sha-256; roles app/app and admin/admin, database shop with the sample orders /
#   order_items schema on every shard, the catalog database shardrouter on 5501 (filled
#   by shardctl), shardrouter on 127.0.0.1:6432 in the background, and sample data
#   (DEMO_ORDERS orders, default 5000, with 1..3 order_items each) loaded through the
#   router. Then it prints how to connect.
#   Running start again while the demo runs changes nothing (a router that died is
#   started again). A stopped or broken demo is wiped and created afresh.
# stop: stops the router (SIGTERM, SIGKILL after 5 s) and every server; the data stays
#   until the next start wipes it.
# status: the servers and the router; exit 0 only if all of them run.
#
# Everything lives in SR_DEMO_DIR (default /tmp/shardrouter-demo): cluster/ (see
# tests/harness/cluster.sh; cluster/cluster.env has the ports), shardrouter.ini,
# userlist.txt, router.pgpass, router.log (the router's log and its stderr), router.pid.
# As root, Postgres and the router run as the unprivileged OS user cluster.sh picks
# (SR_PG_OS_USER, else postgres, else shardrouter), which owns SR_DEMO_DIR.
# Metrics: GET http://127.0.0.1:9930/metrics (Prometheus text format).
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin:/usr/lib/postgresql/15/bin # runuser, setpriv, pg_isready

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
DEMO=${SR_DEMO_DIR:-/tmp/shardrouter-demo}
case $DEMO in /*) ;; *) DEMO=$PWD/$DEMO ;; esac
CDIR=$DEMO/cluster
CLUSTER_SH=$ROOT/tests/harness/cluster.sh
ROUTER_PORT=6432
PORTS="5501,5502;5511,5512"
ORDERS=${DEMO_ORDERS:-5000}
LOADERS=4 # parallel psql sessions loading the sample data
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGOPTIONS

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

AS_USER=
if [ "$(id -u)" -eq 0 ]; then
	if [ -n "${SR_PG_OS_USER:-}" ]; then AS_USER=$SR_PG_OS_USER
	elif id -u postgres >/dev/null 2>&1; then AS_USER=postgres
	elif id -u shardrouter >/dev/null 2>&1; then AS_USER=shardrouter
	else die "running as root but neither OS user postgres nor shardrouter exists; run tools/deps.sh"
	fi
fi
as_user() {
	if [ -n "$AS_USER" ]; then (cd / && runuser -u "$AS_USER" -- "$@"); else "$@"; fi
}

sql() { # port db psql-args...: as the superuser postgres
	local port=$1 db=$2
	shift 2
	PGPASSFILE=$CDIR/pgpass PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

app_psql() { # port psql-args...: as app/app
	local port=$1
	shift
	PGPASSFILE=/dev/null PGPASSWORD=app PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$port" -U app -d shop "$@"
}

router_up() { app_psql "$ROUTER_PORT" -At -c 'select 1' >/dev/null 2>&1; }

SCHEMA="
create table if not exists orders (
	order_id bigint primary key,
	customer_id bigint,
	status text,
	total numeric,
	created_at timestamptz default now()
);
create table if not exists order_items (
	order_id bigint,
	line_no int,
	sku text,
	qty int,
	primary key (order_id, line_no)
);
"

setup_roles_and_schema() {
	local port
	for port in "$SHARD0_PRIMARY_PORT" "$SHARD1_PRIMARY_PORT"; do
		sql "$port" postgres -c "create role app login password 'app'" \
			-c "create role admin login password 'admin' in role pg_monitor" \
			-c "create database shop owner app" || return 1
		app_psql "$port" -c "$SCHEMA" || return 1
	done
	sql "$SHARD0_PRIMARY_PORT" postgres -c "create database shardrouter" || return 1
}

# The catalog, through shardctl (SPEC §5). Shard conninfos carry no user: the router
# logs in to shards as its client's user; shardctl uses PGUSER (see print_howto).
load_catalog() {
	local ctl=$BUILD/shardctl out
	[ -x "$ctl" ] || { say "$ctl is not built (run make BUILD=${BUILD#"$ROOT"/})"; return 1; }
	# (PGUSER, PGPASSFILE: for shard add's check that it can reach the servers)
	export SHARDROUTER_CATALOG="host=127.0.0.1 port=$SHARD0_PRIMARY_PORT dbname=shardrouter"
	out=$({ export PGUSER=postgres PGPASSFILE=$CDIR/pgpass; "$ctl" init &&
		"$ctl" shard add --primary "host=127.0.0.1 port=$SHARD0_PRIMARY_PORT dbname=shop" \
			--replica "host=127.0.0.1 port=$SHARD0_REPLICA1_PORT dbname=shop" &&
		"$ctl" shard add --primary "host=127.0.0.1 port=$SHARD1_PRIMARY_PORT dbname=shop" \
			--replica "host=127.0.0.1 port=$SHARD1_REPLICA1_PORT dbname=shop" &&
		"$ctl" table add orders --key order_id --type bigint &&
		"$ctl" table add order_items --key order_id --type bigint &&
		"$ctl" map init --shards 2; } 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
	say "catalog loaded: 2 shards, tables orders and order_items by order_id"
}

# The router's files, owned by the user it runs as (its passwords: 0600).
write_router_files() {
	as_user tee "$DEMO/userlist.txt" >/dev/null <<-EOF
		"app" "app"
		"admin" "admin"
	EOF
	printf '127.0.0.1:%s:*:postgres:postgres\n' "$SHARD0_PRIMARY_PORT" |
		as_user tee "$DEMO/router.pgpass" >/dev/null
	as_user chmod 600 "$DEMO/userlist.txt" "$DEMO/router.pgpass"
	as_user tee "$DEMO/shardrouter.ini" >/dev/null <<-EOF
		; written by tools/demo.sh
		[router]
		listen_addr = 127.0.0.1
		listen_port = $ROUTER_PORT
		catalog = host=127.0.0.1 port=$SHARD0_PRIMARY_PORT user=postgres dbname=shardrouter passfile=$DEMO/router.pgpass
		map_cache = $DEMO/shardmap.cache
		auth_type = scram-sha-256
		auth_file = $DEMO/userlist.txt
		admin_users = admin
		pool_mode = transaction
		default_pool_size = 8
		log_file = $DEMO/router.log
		metrics_listen = 127.0.0.1:9930
	EOF
}

router_pid() { # prints the pid if our router runs
	local pid exe
	read -r pid 2>/dev/null <"$DEMO/router.pid" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)} # rebuilt while running
	[ "${exe##*/}" = shardrouter ] && echo "$pid"
}

# launch CMD...: CMD in its own session (no terminal, so no SIGINT/SIGHUP from it), as
# the demo's OS user when root (setpriv execs: no root parent lingers), stdio detached.
launch() {
	if [ -n "$AS_USER" ]; then
		setsid setpriv --reuid="$AS_USER" --regid="$AS_USER" --init-groups \
			--reset-env "$@" </dev/null >/dev/null 2>&1 &
	else
		setsid "$@" </dev/null >/dev/null 2>&1 &
	fi
}

start_router() {
	local bin=$BUILD/shardrouter pid
	[ -x "$bin" ] || die "$bin is not built (run make BUILD=${BUILD#"$ROOT"/})"
	if pid=$(router_pid); then
		say "router already running (pid $pid)"
		return 0
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$ROUTER_PORT") 2>/dev/null; then
		die "127.0.0.1:$ROUTER_PORT is taken by another program; stop it first"
	fi
	write_router_files
	as_user rm -f "$DEMO/router.pid"
	# (the pid is the shell's, which execs the router: no -d, whose fork would change it)
	# shellcheck disable=SC2016 # $$ and $1.. are the inner shell's
	launch sh -c 'cd / && echo $$ >"$1" && exec "$2" -c "$3" >>"$4" 2>&1' _ \
		"$DEMO/router.pid" "$bin" "$DEMO/shardrouter.ini" "$DEMO/router.log"
	for _ in $(seq 150); do
		router_up && { say "router running (pid $(router_pid)) on 127.0.0.1:$ROUTER_PORT"; return 0; }
		sleep 0.1
		pid=
		read -r pid 2>/dev/null <"$DEMO/router.pid"
		[ -n "$pid" ] && [ ! -d "/proc/$pid" ] && break # it exited
	done
	tail -n 20 "$DEMO/router.log" >&2
	stop_router
	die "shardrouter did not come up on 127.0.0.1:$ROUTER_PORT (log: $DEMO/router.log); the servers keep running: 'make demo' retries, 'make demo-stop' stops them"
}

stop_router() {
	local pid
	pid=$(router_pid) || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
	if [ -d "/proc/$pid" ]; then
		say "router $pid ignored SIGTERM for 5 s; killing it"
		kill -KILL "$pid" 2>/dev/null
		for _ in $(seq 20); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
	fi
	rm -f "$DEMO/router.pid"
	say "router stopped"
}

# gen_data CHUNK: the sample data for orders i with i % LOADERS == CHUNK: one
# transaction per order (its row and its 1..3 items: one key, so one shard).
# Deterministic (fixed seed per order).
gen_data() {
	awk -v n="$ORDERS" -v k="$LOADERS" -v chunk="$1" 'BEGIN {
		split("new paid shipped delivered cancelled", st, " ")
		for (i = 1; i <= n; i++) {
			if (i % k != chunk) continue
			srand(i)
			printf "begin;\ninsert into orders (order_id, customer_id, status, total) values (%d, %d, '\''%s'\'', %.2f);\n",
				i, 1 + int(rand() * 500), st[1 + int(rand() * 5)], 5 + rand() * 495
			lines = 1 + int(rand() * 3)
			for (l = 1; l <= lines; l++)
				printf "insert into order_items (order_id, line_no, sku, qty) values (%d, %d, '\''SKU-%04d'\'', %d);\n",
					i, l, int(rand() * 1000), 1 + int(rand() * 5)
			print "commit;"
		}
	}'
}

# Sample data through the router, LOADERS sessions in parallel. Starts from empty
# tables (truncated on the shards directly), so an interrupted load can be redone.
load_data() {
	local port c pids=() rc=0 t0=$SECONDS
	for port in "$SHARD0_PRIMARY_PORT" "$SHARD1_PRIMARY_PORT"; do
		sql "$port" shop -c "truncate orders, order_items" || return 1
	done
	for ((c = 0; c < LOADERS; c++)); do
		gen_data "$c" | app_psql "$ROUTER_PORT" >/dev/null &
		pids+=($!)
	done
	for c in "${pids[@]}"; do wait "$c" || rc=1; done
	[ $rc = 0 ] || return 1
	say "loaded $ORDERS orders and their order_items through the router in $((SECONDS - t0)) s"
}

print_howto() {
	local ctl=$BUILD/shardctl
	cat <<-EOF

		shardrouter demo is running ($DEMO)
		  shard 0: primary 127.0.0.1:$SHARD0_PRIMARY_PORT  replica 127.0.0.1:$SHARD0_REPLICA1_PORT
		  shard 1: primary 127.0.0.1:$SHARD1_PRIMARY_PORT  replica 127.0.0.1:$SHARD1_REPLICA1_PORT
		  catalog: database shardrouter on 127.0.0.1:$SHARD0_PRIMARY_PORT (superuser postgres / postgres)
		  router:  127.0.0.1:$ROUTER_PORT, auth scram-sha-256, log $DEMO/router.log
		  metrics: curl -s http://127.0.0.1:9930/metrics  (Grafana dashboard: tools/grafana-dashboard.json)

		Connect through the router (database shop, user app, password app):
		  psql "host=127.0.0.1 port=$ROUTER_PORT dbname=shop user=app password=app"
		    SELECT * FROM orders WHERE order_id = 42;
		    SELECT * FROM order_items WHERE order_id = 42;
		    INSERT INTO orders (order_id, customer_id, status, total) VALUES (100001, 7, 'new', 19.90);

		Admin console (user admin, password admin):
		  psql "host=127.0.0.1 port=$ROUTER_PORT dbname=shardrouter user=admin password=admin"
		    SHOW SHARDS;
		    SHOW ROUTE 'SELECT * FROM orders WHERE order_id = 42';

		Shard map and row counts:
		  PGUSER=postgres PGPASSWORD=postgres SHARDROUTER_CATALOG='host=127.0.0.1 port=$SHARD0_PRIMARY_PORT dbname=shardrouter' $ctl status

		Stop it all: make demo-stop   (or BUILD=${BUILD#"$ROOT"/} tools/demo.sh stop)
	EOF
}

cluster_running() {
	[ -f "$CDIR/cluster.env" ] && "$CLUSTER_SH" status --dir "$CDIR" >/dev/null 2>&1
}

do_start() {
	if cluster_running && [ ! -e "$DEMO/.setting-up" ]; then
		say "cluster already running in $CDIR"
		# shellcheck disable=SC1091
		. "$CDIR/cluster.env"
		unset PGHOST PGUSER PGPASSFILE
	else
		if [ -n "$(ls -A "$DEMO" 2>/dev/null)" ]; then
			say "wiping the stopped demo in $DEMO"
			do_stop >/dev/null 2>&1
			rm -rf "$DEMO" || die "cannot remove $DEMO"
		fi
		mkdir -p "$DEMO" || die "cannot create $DEMO"
		[ -z "$AS_USER" ] || chown "$AS_USER" "$DEMO" || die "cannot chown $DEMO to $AS_USER"
		chmod 755 "$DEMO"
		touch "$DEMO/.setting-up" "$DEMO/.needs-data"
		"$CLUSTER_SH" start --dir "$CDIR" --shards 2 --replicas 1 --no-fast --auth scram \
			--ports "$PORTS" || { do_stop >/dev/null 2>&1; die "the cluster did not start"; }
		# shellcheck disable=SC1091
		. "$CDIR/cluster.env"
		unset PGHOST PGUSER PGPASSFILE
		setup_roles_and_schema || { do_stop; die "creating roles, databases and schema failed"; }
		load_catalog || { do_stop; die "loading the catalog with shardctl failed"; }
		rm -f "$DEMO/.setting-up"
	fi
	start_router
	if [ -f "$DEMO/.needs-data" ]; then
		load_data || die "loading the sample data failed (router log: $DEMO/router.log); the demo keeps running, 'make demo' again retries"
		rm -f "$DEMO/.needs-data"
	fi
	print_howto
}

do_stop() {
	stop_router
	"$CLUSTER_SH" stop --dir "$CDIR"
}

do_status() {
	local rc pid
	"$CLUSTER_SH" status --dir "$CDIR"
	rc=$?
	if pid=$(router_pid); then
		echo "router pid $pid on 127.0.0.1:$ROUTER_PORT"
	else
		echo "router not running"
		rc=3
	fi
	return $rc
}

case ${1:-} in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) echo "usage: tools/demo.sh start|stop|status" >&2; exit 2 ;;
esac
