#!/usr/bin/env bash
# t_harness.sh - the cluster harness itself: streaming replicas, settings, auth, and
# teardown (normal stop, a failing test, a killed test, a start that fails halfway).
set -u
. "$(dirname "$0")/../harness/lib.sh"

# dir_procs DIR: pids of processes whose cwd is inside DIR (Postgres backends chdir to
# their data dir, so this finds every server process of a cluster).
dir_procs() {
	local p cwd
	for p in /proc/[0-9]*; do
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		case $cwd in "$1" | "$1"/*) echo "${p#/proc/}" ;; esac
	done
}

port_listening() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }

ports_free() { # ports...: not listening and not reserved
	local p
	for p in "$@"; do
		port_listening "$p" && { echo "port $p still listening"; return 1; }
		[ -e "/tmp/shardrouter-ports/$p" ] && { echo "port $p still reserved"; return 1; }
	done
	return 0
}

query_is() { # port sql expected
	[ "$(psql_at "$1" postgres "$2" 2>/dev/null)" = "$3" ]
}

pids_gone() { # pids...: none exists except as a zombie
	local p
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		[ "$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$p/stat" 2>/dev/null)" = Z ] || { echo "pid $p alive"; return 1; }
	done
}

no_procs() { # dir
	local left
	left=$(dir_procs "$1")
	[ -z "$left" ] || { echo "still running in $1: $left"; return 1; }
}

# --- a 2-shard cluster with one replica each ---
cluster_up 2 1
dir=$CLUSTER_DIR
ports=("$SHARD0_PRIMARY_PORT" "$SHARD0_REPLICA1_PORT" "$SHARD1_PRIMARY_PORT" "$SHARD1_REPLICA1_PORT")
t_is "cluster.env names 2 shards x 1 replica" "$SHARDS/$REPLICAS" "2/1"
t_ok "pgpass is mode 600 and readable by us" test "$(stat -c %a "$PGPASSFILE")" = 600 -a -r "$PGPASSFILE"

for s in 0 1; do
	pp=SHARD${s}_PRIMARY_PORT rp=SHARD${s}_REPLICA1_PORT rn=SHARD${s}_REPLICA1_NAME
	pp=${!pp} rp=${!rp} rn=${!rn}
	t_is "shard $s: replica $rn is streaming" \
		"$(psql_at "$pp" postgres "select state from pg_stat_replication where application_name = '$rn'")" \
		streaming
	t_is "shard $s: primary is not in recovery" "$(psql_at "$pp" postgres 'select pg_is_in_recovery()')" f
	t_is "shard $s: replica is in recovery" "$(psql_at "$rp" postgres 'select pg_is_in_recovery()')" t
	t_is "shard $s: wal_level is logical" "$(psql_at "$pp" postgres 'show wal_level')" logical
	t_is "shard $s: replica uses a replication slot" \
		"$(psql_at "$pp" postgres "select active from pg_replication_slots where slot_name = '$rn'")" t
	t_ok "shard $s: write a row on the primary" \
		psql_at "$pp" postgres "create table h(id int primary key, v text); insert into h values ($s, 'shard$s')"
	t_ok "shard $s: the row appears on the replica" \
		wait_until 30 query_is "$rp" "select v from h where id = $s" "shard$s"
done
t_is "shards are separate servers" "$(psql_at "$SHARD1_PRIMARY_PORT" postgres 'select count(*) from h where id = 0')" 0
t_is "password auth is enforced (scram)" \
	"$(PGPASSFILE=/dev/null PGPASSWORD=wrong psql_at "$SHARD0_PRIMARY_PORT" postgres 'select 1' >/dev/null 2>&1; echo $?)" 2
t_ok "status reports every server running" "$CLUSTER_SH" status --dir "$dir"

pids=$(dir_procs "$dir")
t_ok "server processes are visible before stop" test -n "$pids"
t_ok "stop succeeds" "$CLUSTER_SH" stop --dir "$dir"
t_ok "no server process of the cluster is left" no_procs "$dir"
# shellcheck disable=SC2086
t_ok "the old pids are gone" pids_gone $pids
t_ok "ports are released" ports_free "${ports[@]}"
t_ok "stop again is harmless" "$CLUSTER_SH" stop --dir "$dir"
t_nok "status after stop is non-zero" "$CLUSTER_SH" status --dir "$dir"
cluster_down

# --- md5 auth really stores md5 secrets; fixed ports; reservations ---
cluster_up 1 0 --auth md5
t_like "md5 cluster stores an md5 secret" \
	"$(psql_at "$SHARD0_PRIMARY_PORT" postgres "select rolpassword from pg_authid where rolname = 'postgres'")" '^md5[0-9a-f]{32}$'
port=$SHARD0_PRIMARY_PORT
odir=$(mktemp -d)
chmod 755 "$odir"
t_nok "a second cluster cannot take a port in use" \
	"$CLUSTER_SH" start --dir "$odir/busy" --shards 1 --replicas 0 --ports "$port"
t_is "the first cluster is unaffected" "$(psql_at "$port" postgres 'select 1')" 1
cluster_down
# a reservation whose owner died is reclaimed
true &
deadpid=$!
wait $deadpid
mkdir -p "/tmp/shardrouter-ports/$port" && echo "$deadpid /nonexistent" >"/tmp/shardrouter-ports/$port/owner"
t_ok "--ports reclaims a stale reservation" \
	"$CLUSTER_SH" start --dir "$odir/fixed" --shards 1 --replicas 0 --ports "$port"
t_is "the fixed-port server answers" "$(PGPASSFILE=$odir/fixed/pgpass psql_at "$port" postgres 'select 1')" 1
t_ok "stop the fixed-port cluster" "$CLUSTER_SH" stop --dir "$odir/fixed"
t_ok "its port is released" ports_free "$port"
t_nok "--ports with the wrong count is refused" \
	"$CLUSTER_SH" start --dir "$odir/bad" --shards 2 --replicas 1 --ports "$port,$((port + 1))"
rm -rf "$odir"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- a test that fails after cluster_up leaves nothing running (EXIT trap) ---
bash -c '. "$1/tests/harness/lib.sh"; cluster_up 1 1
	echo "$CLUSTER_DIR" >"$2/dir"; echo "$SHARD0_PRIMARY_PORT $SHARD0_REPLICA1_PORT" >"$2/ports"
	exit 1' _ "$SR_ROOT" "$tmp" >"$tmp/out" 2>&1
t_is "failing test script exits 1" "$?" 1
fdir=$(cat "$tmp/dir" 2>/dev/null)
t_ok "failing test had started a cluster" test -n "$fdir"
t_ok "failing test left no server running" no_procs "${fdir:-/nonexistent}"
# shellcheck disable=SC2046
t_ok "failing test released its ports" ports_free $(cat "$tmp/ports" 2>/dev/null)

# --- a test killed with SIGTERM while waiting leaves nothing running ---
rm -f "$tmp/dir"
bash -c '. "$1/tests/harness/lib.sh"; cluster_up 1 1; echo "$CLUSTER_DIR" >"$2/dir"
	sleep 300 & wait' _ "$SR_ROOT" "$tmp" >"$tmp/out2" 2>&1 &
kpid=$!
wait_until 60 test -s "$tmp/dir"
kdir=$(cat "$tmp/dir" 2>/dev/null)
t_ok "killed test had started a cluster" test -n "$kdir"
kill -TERM "$kpid"
wait "$kpid"
t_is "killed test exits 143" "$?" 143
t_ok "killed test left no server running" no_procs "${kdir:-/nonexistent}"

# --- a start that fails halfway (replicas cannot be made) cleans up after itself ---
fakebin=$tmp/bin
mkdir "$fakebin" && chmod 755 "$tmp" "$fakebin"
for b in /usr/lib/postgresql/15/bin/*; do ln -s "$b" "$fakebin/"; done
rm "$fakebin/pg_basebackup" && printf '#!/bin/sh\necho simulated failure >&2\nexit 1\n' >"$fakebin/pg_basebackup"
chmod 755 "$fakebin/pg_basebackup"
hdir=$tmp/half
PGBIN=$fakebin "$CLUSTER_SH" start --dir "$hdir" --shards 2 --replicas 1 >"$tmp/out3" 2>&1
t_is "start with a broken pg_basebackup fails" "$?" 1
t_like "its error says what failed" "$(cat "$tmp/out3")" "replica did not start"
t_ok "the primaries it started are stopped" no_procs "$hdir"
# shellcheck disable=SC2046
t_ok "its ports are released" ports_free $(awk '{ print $4 }' "$hdir/servers" 2>/dev/null)
t_ok "stop after a failed start is harmless" "$CLUSTER_SH" stop --dir "$hdir"

t_done
