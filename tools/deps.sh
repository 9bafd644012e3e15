#!/usr/bin/env bash
# deps.sh - make sure everything needed to build, test and run the demo is present
# (Debian 12). Runs before every `make test` / `make demo`, so the all-present path
# is a handful of cheap probes and one line of output.
#
# Missing pieces map to Debian packages. As root: apt-get update + apt-get install of
# just those packages. Otherwise: print the one apt-get command to run and exit 1.
#
# Postgres OS user: test and demo servers never run as root (initdb refuses). We use
# the `postgres` user that postgresql-common creates; if it does not exist (postgres
# installed some other way), deps.sh creates a `shardrouter` system user instead, and
# tests/harness/cluster.sh picks `postgres`, else `shardrouter` (override:
# SR_PG_OS_USER). None of our scripts use the Debian default cluster 15/main; if
# installing postgresql-15 just started it, deps.sh stops it again.
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin # runuser, useradd, pgbouncer

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
missing=()

need() { # package: add once
	local p
	for p in "${missing[@]}"; do [ "$p" = "$1" ] && return; done
	missing+=("$1")
}

probe_commands() {
	local spec cmd pkgs p
	for spec in cc:build-essential make:build-essential pkg-config:pkg-config \
		xxhsum:xxhash psql:postgresql-client-15 pgbench:postgresql-15,postgresql-client-15 \
		pgbouncer:pgbouncer curl:curl runuser:util-linux flock:util-linux \
		pgrep:procps ss:iproute2 timeout:coreutils jq:jq; do
		cmd=${spec%%:*} pkgs=${spec#*:}
		command -v "$cmd" >/dev/null 2>&1 && continue
		for p in ${pkgs//,/ }; do need "$p"; done
	done
	for spec in initdb:postgresql-15 pg_ctl:postgresql-15 postgres:postgresql-15 \
		pg_basebackup:postgresql-client-15 pg_isready:postgresql-client-15; do
		[ -x "$PGBIN/${spec%%:*}" ] || need "${spec#*:}"
	done
}

probe_files() {
	local spec
	for spec in /usr/include/pg_query.h:libpg-query-dev \
		/usr/include/protobuf-c/protobuf-c.h:libprotobuf-c-dev \
		/usr/include/postgresql/15/server/postgres.h:postgresql-server-dev-15 \
		/usr/share/postgresql/15/extension/pg_stat_statements.control:postgresql-contrib; do
		[ -e "${spec%%:*}" ] || need "${spec#*:}"
	done
}

probe_pkgconfig() {
	local all="libevent libevent_pthreads libpq libxxhash inih cmocka openssl" spec
	if command -v pkg-config >/dev/null 2>&1; then
		# shellcheck disable=SC2086
		pkg-config --exists $all && return 0
		for spec in libevent:libevent-dev libevent_pthreads:libevent-dev libpq:libpq-dev \
			libxxhash:libxxhash-dev inih:libinih-dev cmocka:libcmocka-dev openssl:libssl-dev; do
			pkg-config --exists "${spec%%:*}" || need "${spec#*:}"
		done
	else
		for spec in libevent-dev libpq-dev libxxhash-dev libinih-dev libcmocka-dev libssl-dev; do
			need "$spec"
		done
	fi
}

# The 15/main cluster that the postgresql packages may create: stop it if it runs and
# was not running before we installed anything (we never use it; tests pick their own
# ports, the demo uses 5501..).
main_was_running=0
main_running() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 1
	pg_lsclusters -h 2>/dev/null | awk '$1 == 15 && $2 == "main" && $4 == "online" { f = 1 } END { exit !f }'
}

stop_new_main_cluster() {
	[ "$main_was_running" = 0 ] || return 0
	if main_running; then
		echo "deps: stopping the Debian default cluster 15/main that the install started (unused)"
		pg_ctlcluster 15 main stop >/dev/null 2>&1 || pg_ctlcluster 15 main stop -m immediate || true
	fi
}

ensure_pg_os_user() {
	[ "$(id -u)" -eq 0 ] || return 0
	id -u postgres >/dev/null 2>&1 && return 0
	id -u shardrouter >/dev/null 2>&1 && return 0
	echo "deps: creating system user 'shardrouter' to run test and demo Postgres servers"
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin shardrouter
}

install_missing() {
	local cmd="apt-get install -y --no-install-recommends ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages: ${missing[*]}" >&2
		echo "deps: as root, run:" >&2
		echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive $cmd" >&2
		return 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "deps: missing: ${missing[*]} (Debian package names), and there is no apt-get here" >&2
		return 1
	fi
	main_running && main_was_running=1
	echo "deps: installing ${missing[*]}"
	apt-get update -q >/dev/null || { echo "deps: apt-get update failed" >&2; return 1; }
	DEBIAN_FRONTEND=noninteractive $cmd || { echo "deps: apt-get install failed" >&2; return 1; }
	stop_new_main_cluster
}

probe_all() {
	missing=()
	probe_commands
	probe_files
	probe_pkgconfig
}

probe_all
if [ ${#missing[@]} -gt 0 ]; then
	install_missing || exit 1
	probe_all
	if [ ${#missing[@]} -gt 0 ]; then
		echo "deps: still missing after install: ${missing[*]}" >&2
		exit 1
	fi
fi
ensure_pg_os_user || exit 1
echo "deps: all build and test dependencies present"
