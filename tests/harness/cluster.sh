#!/usr/bin/env bash
# cluster.sh - start, stop and inspect throw-away Postgres 15 clusters on 127.0.0.1
# for tests, the demo and benchmarks: N shards, each a primary plus M streaming
# replicas (pg_basebackup -R, one replication slot per replica).
#
#   cluster.sh start  --dir DIR --shards N --replicas M [--ports P0p,P0r1,..;P1p,..]
#                     [--auth scram|md5|trust] [--fast|--no-fast]
#   cluster.sh stop   --dir DIR [--purge]     idempotent; --purge also deletes data dirs
#   cluster.sh status --dir DIR               exit 0 only if every server runs
#
# Layout of DIR (everything the cluster owns lives here):
#   DIR/cluster.env    sourceable: CLUSTER_DIR SHARDS REPLICAS SHARD<i>_PRIMARY_PORT
#                      SHARD<i>_REPLICA<j>_PORT (j from 1) and *_CONNINFO, *_DATA,
#                      PGHOST PGUSER PGPASSFILE
#   DIR/pgpass         libpq password file (0600, owned by whoever ran start)
#   DIR/servers        one line per server: name shard role port datadir (stop reads it)
#   DIR/ports          the reserved ports (released by stop)
#   DIR/<name>/data    data dir; DIR/<name>/log/postgres.log its log; names s<i>p, s<i>r<j>
#   DIR/sock           unix sockets of every server
# Superuser postgres / password postgres. pg_hba: local trust; host (and replication)
# from 127.0.0.1/32 with --auth (default scram-sha-256).
#
# As root, every Postgres command runs as an unprivileged OS user (SR_PG_OS_USER, else
# `postgres`, else `shardrouter`; tools/deps.sh makes sure one exists); DIR is owned by it.
# initdb runs once into a cached template (/tmp/shardrouter-pgtemplate-*) under flock;
# every primary is a cp -a of it. Ports, unless --ports is given, are reserved from
# SR_PORT_MIN..SR_PORT_MAX (default 21000..29999) by an atomic mkdir under
# /tmp/shardrouter-ports/<port> (owner pid + DIR inside; dead owners are reclaimed).
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin # runuser, useradd, pgbouncer
umask 022

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
TEMPLATE_VERSION=1
PORT_ROOT=${SR_PORT_ROOT:-/tmp/shardrouter-ports}
PORT_MIN=${SR_PORT_MIN:-21000}
PORT_MAX=${SR_PORT_MAX:-29999}
unset PGSERVICE PGSERVICEFILE PGOPTIONS PGDATABASE PGPORT PGHOST PGUSER PGPASSWORD PGDATA

die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }
note() { printf 'cluster.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
# phase LABEL: with SR_CLUSTER_DEBUG=1, how long start has taken so far.
phase() { [ -z "${SR_CLUSTER_DEBUG:-}" ] || note "$(elapsed "$T0")s $1"; }

usage() {
	sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# --- who runs Postgres ---------------------------------------------------------------
AS_USER=
if [ "$(id -u)" -eq 0 ]; then
	if [ -n "${SR_PG_OS_USER:-}" ]; then AS_USER=$SR_PG_OS_USER
	elif id -u postgres >/dev/null 2>&1; then AS_USER=postgres
	elif id -u shardrouter >/dev/null 2>&1; then AS_USER=shardrouter
	else die "running as root but neither OS user 'postgres' nor 'shardrouter' exists; run tools/deps.sh"
	fi
	id -u "$AS_USER" >/dev/null 2>&1 || die "OS user $AS_USER does not exist"
fi

# pg_as CMD...: run CMD as the Postgres OS user (from /, so no cwd permission noise).
pg_as() {
	if [ -n "$AS_USER" ]; then (cd / && runuser -u "$AS_USER" -- "$@")
	else "$@"
	fi
}

# --- argument parsing ----------------------------------------------------------------
DIR='' SHARDS='' REPLICAS='' PORTS_ARG='' AUTH=scram FAST=1 PURGE=0
parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--dir) DIR=${2:?--dir needs a value}; shift 2 ;;
		--shards) SHARDS=${2:?}; shift 2 ;;
		--replicas) REPLICAS=${2:?}; shift 2 ;;
		--ports) PORTS_ARG=${2:?}; shift 2 ;;
		--auth) AUTH=${2:?}; shift 2 ;;
		--fast) FAST=1; shift ;;
		--no-fast) FAST=0; shift ;;
		--purge) PURGE=1; shift ;;
		-h | --help) usage ;;
		*) note "unknown argument: $1"; usage ;;
		esac
	done
	[ -n "$DIR" ] || { note "--dir is required"; usage; }
	case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
	DIR=${DIR%/}
}

# --- servers list ----------------------------------------------------------------------
# Fills NAMES[], SHARD_OF[], ROLE_OF[], PORT_OF[] from DIR/servers.
load_servers() {
	NAMES=() SHARD_OF=() ROLE_OF=() PORT_OF=()
	[ -f "$DIR/servers" ] || return 1
	local name shard role port
	while read -r name shard role port _; do
		[ -n "$name" ] || continue
		NAMES+=("$name") SHARD_OF+=("$shard") ROLE_OF+=("$role") PORT_OF+=("$port")
	done <"$DIR/servers"
}

datadir() { printf '%s/%s/data' "$DIR" "$1"; }

server_running() { # name
	pg_as "$PGBIN/pg_ctl" status -D "$(datadir "$1")" >/dev/null 2>&1
}

# --- template ---------------------------------------------------------------------------
auth_method() {
	case $AUTH in
	scram) echo scram-sha-256 ;;
	md5) echo md5 ;;
	trust) echo trust ;;
	*) die "--auth must be scram, md5 or trust (got $AUTH)" ;;
	esac
}

# The password as initdb stores it: md5 clusters get a pre-hashed md5 secret so md5
# auth really is md5 (Postgres uses SCRAM when the stored secret is SCRAM).
initdb_password() {
	if [ "$AUTH" = md5 ]; then
		printf 'md5%s\n' "$(printf 'postgrespostgres' | md5sum | cut -d' ' -f1)"
	else
		printf 'postgres\n'
	fi
}

write_template_conf() { # datadir
	local m enc
	m=$(auth_method)
	enc=scram-sha-256
	[ "$AUTH" = md5 ] && enc=md5
	pg_as tee -a "$1/postgresql.conf" >/dev/null <<-EOF

		# --- shardrouter test harness (cluster.sh) ---
		listen_addresses = '127.0.0.1'
		wal_level = logical
		max_replication_slots = 10
		max_wal_senders = 10
		shared_buffers = 32MB
		max_connections = 60
		hot_standby = on
		hot_standby_feedback = on
		wal_receiver_status_interval = 1s
		log_min_messages = warning
		logging_collector = off
		password_encryption = '$enc'
		lc_messages = 'C'
		# per-server settings (port, socket dir, durability) written by cluster.sh
		include_if_exists = 'server.conf'
	EOF
	pg_as tee "$1/pg_hba.conf" >/dev/null <<-EOF
		# written by cluster.sh
		local all all trust
		local replication all trust
		host all all 127.0.0.1/32 $m
		host replication all 127.0.0.1/32 $m
	EOF
}

# ensure_template: sets TEMPLATE to a ready initdb'd data dir, building it once.
ensure_template() {
	local uid
	uid=$(pg_as id -u)
	TEMPLATE=${SR_TEMPLATE_ROOT:-/tmp}/shardrouter-pgtemplate-15-v$TEMPLATE_VERSION-$uid-$AUTH
	[ -f "$TEMPLATE/.complete" ] && return 0
	local lock=$TEMPLATE.lock fd
	[ -e "$lock" ] || : >"$lock" 2>/dev/null
	exec {fd}<"$lock" || die "cannot open $lock"
	flock "$fd"
	if [ ! -f "$TEMPLATE/.complete" ]; then
		local t0 tmp out
		t0=$(now)
		tmp=$TEMPLATE.tmp.$$
		pg_as rm -rf "$tmp"
		local pwfile
		pwfile=$(mktemp) || die "mktemp failed"
		initdb_password >"$pwfile"
		[ -n "$AS_USER" ] && chown "$AS_USER" "$pwfile"
		if ! out=$(pg_as "$PGBIN/initdb" -D "$tmp" -U postgres \
			--pwfile="$pwfile" -E UTF8 --locale=C --no-sync --no-instructions \
			--auth-local=trust --auth-host="$(auth_method)" 2>&1); then
			rm -f "$pwfile"
			pg_as rm -rf "$tmp"
			exec {fd}<&-
			die "initdb failed: $out"
		fi
		rm -f "$pwfile"
		write_template_conf "$tmp"
		pg_as touch "$tmp/.complete"
		pg_as rm -rf "$TEMPLATE"
		pg_as mv "$tmp" "$TEMPLATE" || die "cannot move template into place"
		note "built template $TEMPLATE in $(elapsed "$t0")s"
	fi
	exec {fd}<&-
}

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- ports ------------------------------------------------------------------------------
port_in_use() { # port
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# reservation_live PORT: the reservation exists and its owner pid is alive.
reservation_live() {
	local pid
	[ -d "$PORT_ROOT/$1" ] || return 1
	# (owner is written under the ports lock right after mkdir: no owner = its writer died)
	read -r pid _ 2>/dev/null <"$PORT_ROOT/$1/owner" || return 1
	[ -n "$pid" ] && pid_alive "$pid"
}

# pid_alive PID: exists and is not a zombie (works for other users' processes too).
pid_alive() {
	local st
	st=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# reserve_port PORT: 0 if now ours. Caller holds the ports lock.
reserve_port() {
	local p=$1
	if [ -d "$PORT_ROOT/$p" ]; then
		reservation_live "$p" && return 1
		rm -rf "${PORT_ROOT:?}/$p" 2>/dev/null || return 1 # stale: reclaim
	fi
	port_in_use "$p" && return 1
	mkdir "$PORT_ROOT/$p" 2>/dev/null || return 1
	printf '%s %s\n' "$$" "$DIR" >"$PORT_ROOT/$p/owner"
	chmod 755 "$PORT_ROOT/$p"
	echo "$p" >>"$DIR/ports"
}

# set_port_owner PORT PID: after the server started, its postmaster owns the port.
set_port_owner() {
	[ -d "$PORT_ROOT/$1" ] || return 0
	printf '%s %s\n' "$2" "$DIR" >"$PORT_ROOT/$1/owner.tmp" &&
		mv -f "$PORT_ROOT/$1/owner.tmp" "$PORT_ROOT/$1/owner"
}

release_ports() {
	[ -f "$DIR/ports" ] || return 0
	local p dir
	while read -r p; do
		[ -n "$p" ] || continue
		dir=
		read -r _ dir 2>/dev/null <"$PORT_ROOT/$p/owner"
		[ "$dir" = "$DIR" ] && rm -rf "${PORT_ROOT:?}/$p"
	done <"$DIR/ports"
	rm -f "$DIR/ports"
}

# allocate_ports COUNT: fills WANT_PORTS[] (from --ports or free ones) and reserves them.
allocate_ports() {
	local count=$1 fd p i
	mkdir -p "$PORT_ROOT" 2>/dev/null && chmod 1777 "$PORT_ROOT" 2>/dev/null
	[ -e "$PORT_ROOT/.lock" ] || : >"$PORT_ROOT/.lock" 2>/dev/null
	chmod 666 "$PORT_ROOT/.lock" 2>/dev/null
	exec {fd}<"$PORT_ROOT/.lock" || die "cannot open $PORT_ROOT/.lock"
	flock "$fd"
	if [ ${#WANT_PORTS[@]} -gt 0 ]; then
		for p in "${WANT_PORTS[@]}"; do
			if ! reserve_port "$p"; then
				release_ports
				exec {fd}<&-
				die "port $p is in use or reserved"
			fi
		done
	else
		local span=$((PORT_MAX - PORT_MIN + 1)) start tries=0
		start=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % span))
		i=0
		while [ ${#WANT_PORTS[@]} -lt "$count" ]; do
			if [ $tries -ge $span ]; then
				release_ports
				exec {fd}<&-
				die "no free ports in $PORT_MIN..$PORT_MAX"
			fi
			p=$((PORT_MIN + (start - PORT_MIN + i) % span))
			i=$((i + 1)) tries=$((tries + 1))
			reserve_port "$p" && WANT_PORTS+=("$p")
		done
	fi
	exec {fd}<&-
}

# parse_ports: "--ports 5501,5502;5511,5512" -> WANT_PORTS[] in server order.
parse_ports() {
	WANT_PORTS=()
	[ -n "$PORTS_ARG" ] || return 0
	local IFS=';' groups g
	read -ra groups <<<"$PORTS_ARG"
	[ ${#groups[@]} -eq "$SHARDS" ] || die "--ports has ${#groups[@]} shard groups, expected $SHARDS"
	for g in "${groups[@]}"; do
		local IFS=, list
		read -ra list <<<"$g"
		[ ${#list[@]} -eq $((REPLICAS + 1)) ] ||
			die "--ports group '$g' needs $((REPLICAS + 1)) ports (primary then replicas)"
		for p in "${list[@]}"; do
			[[ $p =~ ^[0-9]+$ ]] || die "bad port '$p' in --ports"
			WANT_PORTS+=("$p")
		done
	done
}

# --- files for clients -----------------------------------------------------------------
write_client_files() {
	local i tmp
	tmp=$(mktemp "$DIR/.pgpass.XXXXXX")
	for i in "${!NAMES[@]}"; do
		echo "127.0.0.1:${PORT_OF[$i]}:*:postgres:postgres" >>"$tmp"
	done
	chmod 600 "$tmp"
	mv -f "$tmp" "$DIR/pgpass"
	if [ -n "$AS_USER" ]; then # the servers' own copy (pg_basebackup, walreceivers)
		cp "$DIR/pgpass" "$DIR/.pgpass-server"
		chown "$AS_USER" "$DIR/.pgpass-server"
		chmod 600 "$DIR/.pgpass-server"
	fi
	{
		echo "# written by tests/harness/cluster.sh; source it"
		echo "export CLUSTER_DIR='$DIR'"
		echo "export SHARDS=$SHARDS"
		echo "export REPLICAS=$REPLICAS"
		echo "export CLUSTER_AUTH=$AUTH"
		echo "export CLUSTER_SOCKET_DIR='$DIR/sock'"
		echo "export PGHOST=127.0.0.1"
		echo "export PGUSER=postgres"
		echo "export PGPASSFILE='$DIR/pgpass'"
		for i in "${!NAMES[@]}"; do
			local s=${SHARD_OF[$i]} role=${ROLE_OF[$i]} var
			if [ "$role" = primary ]; then var=SHARD${s}_PRIMARY
			else var=SHARD${s}_REPLICA${role#replica}
			fi
			echo "export ${var}_PORT=${PORT_OF[$i]}"
			echo "export ${var}_NAME=${NAMES[$i]}"
			echo "export ${var}_DATA='$(datadir "${NAMES[$i]}")'"
			echo "export ${var}_CONNINFO='host=127.0.0.1 port=${PORT_OF[$i]} user=postgres dbname=postgres'"
		done
	} >"$DIR/cluster.env.tmp"
	mv -f "$DIR/cluster.env.tmp" "$DIR/cluster.env"
	chmod 644 "$DIR/cluster.env"
}

server_passfile() {
	if [ -n "$AS_USER" ]; then echo "$DIR/.pgpass-server"; else echo "$DIR/pgpass"; fi
}

# write_server_conf NAME PORT: the per-server settings included by postgresql.conf.
write_server_conf() {
	local d
	d=$(datadir "$1")
	{
		echo "# written by cluster.sh for server $1"
		echo "port = $2"
		echo "cluster_name = '$1'"
		echo "unix_socket_directories = '$DIR/sock'"
		if [ "$FAST" = 1 ]; then
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
	} | pg_as tee "$d/server.conf" >/dev/null
}

start_server() { # name
	local d
	d=$(datadir "$1")
	pg_as "$PGBIN/pg_ctl" start -w -t 60 -D "$d" -l "$DIR/$1/log/postgres.log" -s >/dev/null 2>&1
}

make_primary() { # index
	local n=${NAMES[$1]}
	pg_as cp -a "$TEMPLATE" "$(datadir "$n")" || return 1
	pg_as rm -f "$(datadir "$n")/.complete"
	write_server_conf "$n" "${PORT_OF[$1]}" || return 1
	start_server "$n"
}

make_replica() { # index primary_port
	local n=${NAMES[$1]} d
	d=$(datadir "$n")
	local nosync=
	[ "$FAST" = 1 ] && nosync=--no-sync
	pg_as "$PGBIN/pg_basebackup" -D "$d" -R -X stream -c fast $nosync -C -S "$n" \
		-d "host=127.0.0.1 port=$2 user=postgres passfile=$(server_passfile)" \
		>>"$DIR/$n/log/postgres.log" 2>&1 || return 1
	write_server_conf "$n" "${PORT_OF[$1]}" || return 1
	start_server "$n"
}

# run_parallel FN ARGS-LIST...: runs "FN args" for each quoted arg string in the
# background; returns non-zero if any failed (and names them).
run_parallel() {
	local fn=$1 pids=() args=() a rc=0 k
	shift
	for a in "$@"; do
		# shellcheck disable=SC2086
		$fn $a &
		pids+=($!) args+=("$a")
	done
	for k in "${!pids[@]}"; do
		if ! wait "${pids[$k]}"; then
			note "$fn ${args[$k]} failed"
			rc=1
		fi
	done
	return $rc
}

psql_q() { # port sql
	PGPASSFILE=$DIR/pgpass PGCONNECT_TIMEOUT=5 "$PGBIN/psql" -X -A -t -q \
		-h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null
}

wait_streaming() { # primary_port expected_count
	local deadline got
	deadline=$(($(date +%s) + 60))
	while :; do
		got=$(psql_q "$1" "select count(*) from pg_stat_replication where state = 'streaming'")
		[ "$got" = "$2" ] && return 0
		[ "$(date +%s)" -lt "$deadline" ] || { note "port $1: $got/$2 replicas streaming"; return 1; }
		sleep 0.1
	done
}

show_logs_tail() {
	local n
	for n in "${NAMES[@]}"; do
		[ -s "$DIR/$n/log/postgres.log" ] || continue
		note "--- tail of $DIR/$n/log/postgres.log"
		tail -n 15 "$DIR/$n/log/postgres.log" >&2
	done
}

start_failed() {
	note "start failed: $*"
	show_logs_tail
	note "stopping what was started (logs kept in $DIR)"
	do_stop >/dev/null 2>&1
	exit 1
}

prepare_dir() {
	mkdir -p "$DIR" || die "cannot create $DIR"
	if [ -n "$AS_USER" ]; then
		{ chown "$AS_USER" "$DIR" && chmod 755 "$DIR"; } || die "cannot chown $DIR to $AS_USER"
		pg_as test -w "$DIR" || die "$AS_USER cannot write $DIR (is a parent directory private?)"
	fi
	pg_as mkdir -p "$DIR/sock" || die "cannot create $DIR/sock"
}

# plan_servers: NAMES[] etc. in order s0p s0r1.. s1p ..; writes DIR/servers.
plan_servers() {
	NAMES=() SHARD_OF=() ROLE_OF=() PORT_OF=()
	local s r k=0
	: >"$DIR/servers.tmp"
	for ((s = 0; s < SHARDS; s++)); do
		for ((r = 0; r <= REPLICAS; r++)); do
			local name=s${s}p role=primary
			[ $r -gt 0 ] && name=s${s}r$r role=replica$r
			NAMES+=("$name") SHARD_OF+=("$s") ROLE_OF+=("$role") PORT_OF+=("${WANT_PORTS[$k]}")
			echo "$name $s $role ${WANT_PORTS[$k]} $(datadir "$name")" >>"$DIR/servers.tmp"
			pg_as mkdir -p "$DIR/$name/log" && pg_as touch "$DIR/$name/log/postgres.log"
			k=$((k + 1))
		done
	done
	mv -f "$DIR/servers.tmp" "$DIR/servers"
}

do_start() {
	[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "--shards must be a positive integer"
	[[ $REPLICAS =~ ^[0-9]+$ ]] || die "--replicas must be a non-negative integer"
	auth_method >/dev/null
	local t0 i
	t0=$(now) T0=$t0
	if load_servers 2>/dev/null; then
		local all=1
		for i in "${!NAMES[@]}"; do server_running "${NAMES[$i]}" || all=0; done
		if [ $all = 1 ] && [ ${#NAMES[@]} -gt 0 ]; then
			note "cluster in $DIR is already running"
			return 0
		fi
		die "$DIR holds a cluster that is not (fully) running; run 'cluster.sh stop --dir $DIR' and use a fresh dir"
	fi
	parse_ports
	prepare_dir
	ensure_template
	trap 'start_failed "interrupted"' INT TERM
	allocate_ports $((SHARDS * (REPLICAS + 1)))
	plan_servers
	write_client_files

	local prim=() repl=()
	for i in "${!NAMES[@]}"; do
		if [ "${ROLE_OF[$i]}" = primary ]; then prim+=("$i"); else repl+=("$i"); fi
	done
	phase "prepared"
	run_parallel make_primary "${prim[@]}" || start_failed "a primary did not start"
	phase "primaries up"
	if [ ${#repl[@]} -gt 0 ]; then
		local args=()
		for i in "${repl[@]}"; do args+=("$i $(primary_port_of "${SHARD_OF[$i]}")"); done
		run_parallel make_replica "${args[@]}" || start_failed "a replica did not start"
		phase "replicas up"
		for i in "${prim[@]}"; do
			wait_streaming "${PORT_OF[$i]}" "$REPLICAS" || start_failed "replicas not streaming"
		done
	fi
	for i in "${!NAMES[@]}"; do
		local pid
		pid=$(head -n 1 "$(datadir "${NAMES[$i]}")/postmaster.pid" 2>/dev/null)
		[ -n "$pid" ] && set_port_owner "${PORT_OF[$i]}" "$pid"
	done
	trap - INT TERM
	echo "cluster.sh: cluster up in $DIR: $SHARDS shard(s) x (1 primary + $REPLICAS replica(s)), ports ${PORT_OF[*]}, $(elapsed "$t0")s"
}

primary_port_of() { # shard
	local i
	for i in "${!NAMES[@]}"; do
		[ "${SHARD_OF[$i]}" = "$1" ] && [ "${ROLE_OF[$i]}" = primary ] && { echo "${PORT_OF[$i]}"; return; }
	done
}

# stop_server NAME: immediate stop; SIGKILL the postmaster if pg_ctl could not.
stop_server() {
	local d pid
	d=$(datadir "$1")
	[ -f "$d/postmaster.pid" ] || return 0
	pg_as "$PGBIN/pg_ctl" stop -D "$d" -m immediate -w -t 30 -s >/dev/null 2>&1
	pid=$(head -n 1 "$d/postmaster.pid" 2>/dev/null)
	if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d" ]; then
		note "$1: pg_ctl stop failed, killing postmaster $pid"
		kill -KILL "$pid" 2>/dev/null
	fi
	return 0
}

# Any postgres process still running with its cwd in one of our data dirs.
leftover_pids() {
	local p cwd
	for p in /proc/[0-9]*; do
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		case $cwd in "$DIR"/*/data | "$DIR"/*/data/*) echo "${p#/proc/}" ;; esac
	done
}

do_stop() {
	if [ ! -d "$DIR" ]; then
		note "nothing to stop in $DIR"
		return 0
	fi
	load_servers 2>/dev/null
	local i pids=()
	for i in "${!NAMES[@]}"; do
		stop_server "${NAMES[$i]}" &
		pids+=($!)
	done
	[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
	local left tries=0
	left=$(leftover_pids)
	while [ -n "$left" ] && [ $tries -lt 50 ]; do
		sleep 0.1
		tries=$((tries + 1))
		left=$(leftover_pids)
	done
	if [ -n "$left" ]; then
		note "killing leftover server processes: $left"
		# shellcheck disable=SC2086
		kill -KILL $left 2>/dev/null
	fi
	release_ports
	if [ "$PURGE" = 1 ]; then
		for i in "${!NAMES[@]}"; do rm -rf "$(datadir "${NAMES[$i]}")"; done
	fi
	note "stopped ${#NAMES[@]} server(s) in $DIR"
}

do_status() {
	load_servers || { echo "no cluster in $DIR"; return 3; }
	local i rc=0 state extra
	for i in "${!NAMES[@]}"; do
		extra=
		if server_running "${NAMES[$i]}"; then
			state=running
			if [ "${ROLE_OF[$i]}" = primary ]; then
				extra=" streaming=$(psql_q "${PORT_OF[$i]}" \
					"select coalesce(string_agg(application_name, ',' order by 1), '-') from pg_stat_replication where state = 'streaming'")"
			fi
		else
			state=stopped
			rc=3
		fi
		printf '%-6s shard=%s role=%-8s port=%s %s%s\n' "${NAMES[$i]}" "${SHARD_OF[$i]}" \
			"${ROLE_OF[$i]}" "${PORT_OF[$i]}" "$state" "$extra"
	done
	return $rc
}

main() {
	local cmd=${1:-}
	[ $# -gt 0 ] && shift
	case $cmd in
	start)
		parse_args "$@"
		if [ -z "$SHARDS" ] || [ -z "$REPLICAS" ]; then
			note "start needs --shards and --replicas"
			usage
		fi
		do_start
		;;
	stop) parse_args "$@"; do_stop ;;
	status) parse_args "$@"; do_status ;;
	*) usage ;;
	esac
}

main "$@"
