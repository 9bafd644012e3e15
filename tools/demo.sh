#!/usr/bin/env bash
# demo.sh - the local demo behind `make demo` / `make demo-stop` (SPEC §6).
#
#   BUILD=build/release tools/demo.sh start|stop|status
#
# start: two shards, each a primary with one streaming replica, on fixed loopback ports
#   5501/5502 (shard 0 primary/replica) and 5511/5512 (shard 1), durable (no fsync=off),
#   scram-sha-256; roles app/app and admin/admin, database shop with the sample orders /
#   order_items schema on every shard, the catalog database shardrouter on 5501; then,
#   when they are built, the catalog (shardctl), shardrouter on 127.0.0.1:6432 (metrics
#   127.0.0.1:9930) and sample data loaded through the router.
#   Running start again while the demo runs changes nothing. A stopped demo is wiped and
#   created afresh.
# stop: stops the router and every server (data kept until the next start).
#
# Everything lives in SR_DEMO_DIR (default /tmp/shardrouter-demo): cluster/ (see
# tests/harness/cluster.sh; cluster/cluster.env has the ports and conninfos),
# shardrouter.ini, userlist.txt, router.log, router.pid. As root, Postgres and the
# router run as the unprivileged user chosen by cluster.sh (postgres or shardrouter).
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin # runuser, useradd, pgbouncer

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build/release}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
DEMO=${SR_DEMO_DIR:-/tmp/shardrouter-demo}
CDIR=$DEMO/cluster
CLUSTER_SH=$ROOT/tests/harness/cluster.sh
ROUTER_PORT=6432
METRICS=127.0.0.1:9930
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

AS_USER=
if [ "$(id -u)" -eq 0 ]; then
	if [ -n "${SR_PG_OS_USER:-}" ]; then AS_USER=$SR_PG_OS_USER
	elif id -u postgres >/dev/null 2>&1; then AS_USER=postgres
	else AS_USER=shardrouter
	fi
fi
as_user() {
	if [ -n "$AS_USER" ]; then (cd / && runuser -u "$AS_USER" -- "$@"); else "$@"; fi
}

sql() { # port db sql...
	local port=$1 db=$2
	shift 2
	PGPASSFILE=$CDIR/pgpass psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
		-U postgres -d "$db" "$@"
}

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
		PGPASSFILE=/dev/null PGPASSWORD=app psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
			-p "$port" -U app -d shop -c "$SCHEMA" || return 1
	done
	sql "$SHARD0_PRIMARY_PORT" postgres -c "create database shardrouter" || return 1
}

# Hook 1: the catalog, through shardctl (SPEC §5), once it is built.
load_catalog() {
	local ctl=$BUILD/shardctl
	if [ ! -x "$ctl" ]; then
		say "HOOK: $ctl not built yet; catalog left empty (database shardrouter on 5501)"
		return 0
	fi
	export SHARDROUTER_CATALOG="host=127.0.0.1 port=$SHARD0_PRIMARY_PORT user=postgres dbname=shardrouter passfile=$CDIR/pgpass"
	"$ctl" init &&
		"$ctl" shard add --primary "host=127.0.0.1 port=$SHARD0_PRIMARY_PORT dbname=shop" \
			--replica "host=127.0.0.1 port=$SHARD0_REPLICA1_PORT dbname=shop" &&
		"$ctl" shard add --primary "host=127.0.0.1 port=$SHARD1_PRIMARY_PORT dbname=shop" \
			--replica "host=127.0.0.1 port=$SHARD1_REPLICA1_PORT dbname=shop" &&
		"$ctl" table add orders --key order_id --type bigint &&
		"$ctl" table add order_items --key order_id --type bigint &&
		"$ctl" map init --shards 2
}

write_router_files() {
	as_user tee "$DEMO/userlist.txt" >/dev/null <<-EOF
		"app" "app"
		"admin" "admin"
	EOF
	as_user chmod 600 "$DEMO/userlist.txt"
	printf '127.0.0.1:%s:*:postgres:postgres\n' "$SHARD0_PRIMARY_PORT" | as_user tee "$DEMO/router.pgpass" >/dev/null
	as_user chmod 600 "$DEMO/router.pgpass"
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
		metrics_listen = $METRICS
		log_file = $DEMO/router.log
		pidfile = $DEMO/router.pid
	EOF
}

router_pid() { # prints the pid if our router runs
	local pid exe
	read -r pid 2>/dev/null <"$DEMO/router.pid" || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)} # rebuilt while running
	[ "${exe##*/}" = shardrouter ] && echo "$pid"
}

# Hook 2: the router, once it is built.
start_router() {
	local bin=$BUILD/shardrouter
	if [ ! -x "$bin" ]; then
		say "HOOK: $bin not built yet; router not started"
		return 0
	fi
	router_pid >/dev/null && { say "router already running"; return 0; }
	write_router_files
	# shellcheck disable=SC2016 # $$ and $1.. are the inner shell's
	as_user sh -c 'echo $$ >"$1"; exec "$2" -c "$3" >>"$4" 2>&1' _ "$DEMO/router.pid" "$bin" \
		"$DEMO/shardrouter.ini" "$DEMO/router.log" </dev/null &
	for _ in $(seq 100); do
		pg_isready -q -h 127.0.0.1 -p "$ROUTER_PORT" && return 0
		router_pid >/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$DEMO/router.log" >&2
	die "shardrouter did not come up on 127.0.0.1:$ROUTER_PORT (log: $DEMO/router.log)"
}

# Hook 3: sample data, one single-shard INSERT per statement, through the router.
load_data() {
	pg_isready -q -h 127.0.0.1 -p "$ROUTER_PORT" || { say "HOOK: no router; no sample data loaded"; return 0; }
	local n=${DEMO_ORDERS:-1000}
	awk -v n="$n" 'BEGIN {
		srand(42)
		split("new paid shipped delivered cancelled", st, " ")
		for (i = 1; i <= n; i++) {
			printf "insert into orders (order_id, customer_id, status, total) values (%d, %d, '\''%s'\'', %.2f);\n",
				i, 1 + int(rand() * 200), st[1 + int(rand() * 5)], rand() * 500
			lines = 1 + int(rand() * 3)
			for (l = 1; l <= lines; l++)
				printf "insert into order_items values (%d, %d, '\''SKU-%04d'\'', %d);\n",
					i, l, int(rand() * 1000), 1 + int(rand() * 5)
		}
	}' | PGPASSFILE=/dev/null PGPASSWORD=app psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
		-p "$ROUTER_PORT" -U app -d shop >/dev/null || return 1
	say "loaded $n orders through the router"
}

print_howto() {
	cat <<-EOF

		shardrouter demo ($DEMO)
		  shard 0: primary 127.0.0.1:$SHARD0_PRIMARY_PORT  replica 127.0.0.1:$SHARD0_REPLICA1_PORT
		  shard 1: primary 127.0.0.1:$SHARD1_PRIMARY_PORT  replica 127.0.0.1:$SHARD1_REPLICA1_PORT
		  catalog: database shardrouter on 127.0.0.1:$SHARD0_PRIMARY_PORT (user postgres / postgres)
		  connect: psql "host=127.0.0.1 port=$ROUTER_PORT dbname=shop user=app password=app"
		  admin:   psql "host=127.0.0.1 port=$ROUTER_PORT dbname=shardrouter user=admin password=admin" -c 'SHOW SHARDS'
		  metrics: curl http://$METRICS/metrics
		  stop:    make demo-stop
	EOF
}

do_start() {
	if [ -f "$CDIR/cluster.env" ] && "$CLUSTER_SH" status --dir "$CDIR" >/dev/null 2>&1; then
		say "cluster already running in $CDIR"
		. "$CDIR/cluster.env"
	else
		if [ -e "$DEMO" ]; then
			say "wiping the stopped demo in $DEMO"
			"$CLUSTER_SH" stop --dir "$CDIR" >/dev/null 2>&1
			rm -rf "$DEMO"
		fi
		mkdir -p "$DEMO" || die "cannot create $DEMO"
		[ -z "$AS_USER" ] || chown "$AS_USER" "$DEMO"
		"$CLUSTER_SH" start --dir "$CDIR" --shards 2 --replicas 1 --no-fast --auth scram \
			--ports "5501,5502;5511,5512" || die "the cluster did not start"
		. "$CDIR/cluster.env"
		setup_roles_and_schema || { do_stop; die "creating roles, databases and schema failed"; }
		load_catalog || { do_stop; die "loading the catalog with shardctl failed"; }
		touch "$DEMO/.needs-data"
	fi
	start_router
	if [ -f "$DEMO/.needs-data" ] && pg_isready -q -h 127.0.0.1 -p "$ROUTER_PORT"; then
		load_data && rm -f "$DEMO/.needs-data"
	fi
	print_howto
}

do_stop() {
	local pid
	if pid=$(router_pid); then
		kill -TERM "$pid"
		for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
		[ ! -d "/proc/$pid" ] || kill -KILL "$pid"
		say "router stopped"
	fi
	"$CLUSTER_SH" stop --dir "$CDIR"
}

case ${1:-} in
start) do_start ;;
stop) do_stop ;;
status)
	"$CLUSTER_SH" status --dir "$CDIR"
	rc=$?
	if pid=$(router_pid); then echo "router pid $pid on 127.0.0.1:$ROUTER_PORT"; else echo "router not running"; fi
	exit $rc
	;;
*) echo "usage: tools/demo.sh start|stop|status" >&2; exit 2 ;;
esac
