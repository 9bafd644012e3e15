#!/usr/bin/env bash
# t_router_config.sh - the router's settings at start and on SIGHUP, and TLS
# towards clients: a bad value keeps the old settings on reload, a reloadable
# change takes effect without dropping connections, a non-reloadable one is
# refused; client_tls_sslmode prefer/require with a self-signed certificate.
# Needs: tests/harness (1 shard, 0 replicas), psql, openssl. Binary: $BUILD/shardrouter.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

cluster_up 1 0
shop_trap
shop_setup 1; t_is "shop schema and catalog" "$?" 0

PORT=$(free_port) || t_bail "found a free port"
INI=$CLUSTER_DIR/router/shardrouter.ini
admin() { PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c "$1"; }
app() { PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop "$@"; }

router_start "$PORT"
t_ok "router starts" kill -0 "${ROUTER_PID:-0}"
t_is "SHOW CONFIG has the pool size from the file" \
	"$(admin 'SHOW CONFIG' | awk -F'|' '$1=="default_pool_size"{print $2}')" 4

# A session that stays open across the reloads.
coproc HELD { PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U app -d shop 2>&1; }
echo "SELECT 'before';" >&"${HELD[1]}"
read -r -t 10 line <&"${HELD[0]}"
t_is "long-lived session works" "$line" before

sed -i 's/^default_pool_size = .*/default_pool_size = 9/' "$INI"
kill -HUP "$ROUTER_PID"
wait_until 5 sh -c "PGPASSWORD=admin psql -X -A -t -q -h 127.0.0.1 -p $PORT -U admin -d shardrouter -c 'SHOW CONFIG' | grep -q '^default_pool_size|9|'"
t_is "SIGHUP applies a reloadable change" \
	"$(admin 'SHOW CONFIG' | awk -F'|' '$1=="default_pool_size"{print $2}')" 9

echo "no_such_key = 1" >>"$INI"
kill -HUP "$ROUTER_PID"
wait_until 5 grep -q "reload failed" "$CLUSTER_DIR/router/router.log"
t_like "a bad reload is refused naming file, line and key" \
	"$(grep 'reload failed' "$CLUSTER_DIR/router/router.log")" "shardrouter.ini:[0-9]+: no_such_key"
t_is "the old settings stay" \
	"$(admin 'SHOW CONFIG' | awk -F'|' '$1=="default_pool_size"{print $2}')" 9
sed -i '/^no_such_key/d' "$INI"

sed -i "s/^listen_port = .*/listen_port = $((PORT + 1))/" "$INI"
kill -HUP "$ROUTER_PID"
wait_until 5 grep -q "reload refused" "$CLUSTER_DIR/router/router.log"
t_like "a non-reloadable change is refused" \
	"$(grep 'reload refused' "$CLUSTER_DIR/router/router.log")" "listen_port"
sed -i "s/^listen_port = .*/listen_port = $PORT/" "$INI"

echo "SELECT 'after';" >&"${HELD[1]}"
read -r -t 10 line <&"${HELD[0]}"
t_is "the session survived three reloads" "$line" after
echo '\q' >&"${HELD[1]}"

# Admin console: permissions, PAUSE/RESUME, SHOW REPLICAS/STATS.
stats() { PGPASSWORD=postgres psql -X -A -t -q -h 127.0.0.1 -p "$PORT" -U postgres -d shardrouter -c "$1" 2>&1; }
t_like "stats_users may SHOW" "$(stats 'SHOW STATS')" "^[0-9]+\|"
t_like "stats_users may not RELOAD (42501)" "$(stats 'RELOAD')" "permission denied"
t_like "unknown admin command lists the commands" "$(admin 'FROBNICATE' 2>&1)" "SHOW SHARDS"
t_is "PAUSE answers PAUSE" "$(PGPASSWORD=admin psql -X -q -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c 'PAUSE' 2>&1)" ""
( app -c "SELECT 'ran'" >"$CLUSTER_DIR/paused.out" 2>&1 ) &
PAUSED_PID=$!
sleep 1
t_is "while paused, a new transaction waits" "$(cat "$CLUSTER_DIR/paused.out")" ""
admin 'RESUME' >/dev/null
wait "$PAUSED_PID"
t_is "after RESUME it runs" "$(cat "$CLUSTER_DIR/paused.out")" ran
router_stop

# Bad settings at start: file, line and key in the message, exit non-zero.
printf '[router]\nlisten_port = 99999\n' >"$CLUSTER_DIR/bad.ini"
out=$("$BUILD/shardrouter" -c "$CLUSTER_DIR/bad.ini" 2>&1)
rc=$?
t_ok "out-of-range port: refuses to start" test "$rc" -ne 0
t_like "the error names file:line: key" "$out" "bad.ini:2: listen_port"

# TLS towards clients.
D=$CLUSTER_DIR/router
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/key.pem" -out "$D/cert.pem" -days 2 \
	-subj "/CN=127.0.0.1" >/dev/null 2>&1
router_start "$PORT" "client_tls_sslmode = prefer" "client_tls_cert_file = $D/cert.pem" \
	"client_tls_key_file = $D/key.pem"
t_ok "router starts with client_tls_sslmode = prefer" kill -0 "${ROUTER_PID:-0}"
t_like "sslmode=require gets a TLS session" \
	"$(PGPASSWORD=app psql -X "host=127.0.0.1 port=$PORT user=app dbname=shop sslmode=require" -c '\conninfo' 2>&1)" \
	"SSL connection \(protocol: TLS"
t_is "queries work over TLS" \
	"$(PGPASSWORD=app psql -X -A -t "host=127.0.0.1 port=$PORT user=app dbname=shop sslmode=require" -c 'SELECT 40+2' 2>&1)" 42
t_is "plain connections still work with prefer" "$(app -c 'SELECT 1')" 1
router_stop
sed -i 's/^client_tls_sslmode = .*/client_tls_sslmode = require/' "$INI"
"$BUILD/shardrouter" -c "$INI" >"$D/router.log" 2>&1 &
ROUTER_PID=$!
wait_until 10 sh -c "PGPASSWORD=app psql -X -A -t 'host=127.0.0.1 port=$PORT user=app dbname=shop sslmode=require' -c 'SELECT 1'"
t_like "with require, a plain connection is refused with 28000-class text" \
	"$(PGPASSWORD=app psql -X "host=127.0.0.1 port=$PORT user=app dbname=shop sslmode=disable" -c 'SELECT 1' 2>&1)" \
	"TLS is required"
t_is "with require, TLS connections work" \
	"$(PGPASSWORD=app psql -X -A -t "host=127.0.0.1 port=$PORT user=app dbname=shop sslmode=require" -c 'SELECT 7' 2>&1)" 7
t_ok "router still running" kill -0 "$ROUTER_PID"
t_done
