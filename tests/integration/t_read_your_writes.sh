#!/usr/bin/env bash
# t_read_your_writes.sh - read_your_writes: with WAL replay paused on every
# replica (so replicas stay in rotation but never see new rows), a loop of
# "insert a key, read it back at once" through the router never misses its
# row when read_your_writes = on, and does miss when it is off - which shows
# the check can fail.
# Needs: tests/harness (2 shards x 1 replica), psql. Binary: $BUILD/shardrouter.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

cluster_up 2 1
shop_trap resume_all
shop_setup 2
t_is "shop schema and catalog" "$?" 0

replay() { # pause|resume
	local i
	for ((i = 0; i < SHARDS; i++)); do
		psql_at "$(eval echo "\$SHARD${i}_REPLICA1_PORT")" postgres "SELECT pg_wal_replay_$1()" >/dev/null
	done
}
resume_all() { replay resume 2>/dev/null; }

# Insert-then-read N times in one session; print how many reads missed.
misses() { # port n
	local port=$1 n=$2 i sql=""
	for ((i = 0; i < n; i++)); do
		local k=$((3000000 + RANDOM * 7 + i))
		sql+="INSERT INTO orders (order_id, status) VALUES ($k, 'ryw') ON CONFLICT DO NOTHING;"$'\n'
		sql+="SELECT 'seen', count(*) FROM orders WHERE order_id = $k;"$'\n'
	done
	# one statement per line, each its own Query message
	printf '%s' "$sql" | PGPASSWORD=app psql -X -A -t -q -h 127.0.0.1 -p "$port" -U app -d shop \
		-v ON_ERROR_STOP=1 2>&1 | awk -F'|' '$1=="seen" && $2!="1" {m++} END {print m+0}'
}

PORT=$(free_port) || t_bail "found a free port"
COMMON=("replica_max_lag_bytes = 1GB" "replica_max_lag_ms = 1h" "health_check_interval_ms = 200")
replay pause

router_start "$PORT" "read_your_writes = on" "${COMMON[@]}"
t_ok "router starts (read_your_writes = on)" kill -0 "${ROUTER_PID:-0}"
t_is "read_your_writes on: 100 insert-then-read pairs, no read misses its row" "$(misses "$PORT" 100)" 0
t_like "the replicas are still in rotation (they were eligible)" \
	"$(PGPASSWORD=admin psql -X -A -t -h 127.0.0.1 -p "$PORT" -U admin -d shardrouter -c 'SHOW REPLICAS' | cut -d'|' -f6 | sort -u | tr '\n' ' ')" "^yes $"
router_stop

router_start "$PORT" "read_your_writes = off" "${COMMON[@]}"
t_ok "router starts (read_your_writes = off)" kill -0 "${ROUTER_PID:-0}"
m=$(misses "$PORT" 100)
t_diag "read_your_writes off: $m of 100 reads missed their row"
t_ok "read_your_writes off: reads on the paused replicas miss rows (the check can fail)" test "$m" -gt 0
router_stop

replay resume
t_done
