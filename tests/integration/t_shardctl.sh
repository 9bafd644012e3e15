#!/usr/bin/env bash
# t_shardctl.sh - shardctl's metadata commands against a real catalog (SPEC §3, §5):
# init (idempotent), shard/table add and list, map init, status (--json, row counts,
# replication, routers), hash (cross-checked with xxhsum), split, serialisation of
# concurrent changes by the advisory lock, NOTIFY, and bad input that must exit 1/2
# with a clear message and leave the catalog unchanged.
# Needs: tests/harness (cluster of 2 shards x 1 replica), psql, pg_dump, jq; xxhsum
# optional (that check is skipped without it). Binary: $BUILD/shardctl.
set -u
. "$(dirname "$0")/../harness/lib.sh"

SHARDCTL=$BUILD/shardctl
LOCK_KEY=6001136956863697457 # SM_CATALOG_LOCK_KEY in include/shardmap/catalog.h
LOCK_HI=$((LOCK_KEY >> 32))
LOCK_LO=$((LOCK_KEY & 0xffffffff))

if [ ! -x "$SHARDCTL" ]; then
	t_ok "shardctl is built at $SHARDCTL" test -x "$SHARDCTL"
	t_done
fi

cluster_up 2 1
T=$(mktemp -d "${TMPDIR:-/tmp}/t_shardctl.XXXXXX")
trap 'rm -rf "$T"; cluster_down' EXIT

CAT_PORT=$SHARD0_PRIMARY_PORT
psql_at "$CAT_PORT" postgres "create database shardrouter" >/dev/null
psql_at "$SHARD1_PRIMARY_PORT" postgres "create database shard2" >/dev/null
psql_at "$SHARD1_PRIMARY_PORT" postgres "create database shard3" >/dev/null
export SHARDROUTER_CATALOG="host=127.0.0.1 port=$CAT_PORT user=postgres dbname=shardrouter"

# run ARGS...: run shardctl; sets OUT, ERR, RC.
run() {
	OUT=$("$SHARDCTL" "$@" 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
}
cat_sql() { psql_at "$CAT_PORT" shardrouter "$1"; }
epoch() { cat_sql "select epoch from shardrouter.meta"; }
dump_catalog() { # schema and data of schema shardrouter, stable across runs
	pg_dump -h 127.0.0.1 -p "$CAT_PORT" -U postgres -d shardrouter -n shardrouter \
		--no-owner 2>&1 | grep -vE '^(-- Dumped|\\(un)?restrict )'
}
# ranges_tile: the ranges start at 0, end at ffffffffffffffff and are contiguous.
ranges_tile() {
	local lo hi prev= first=1
	while IFS='|' read -r lo hi; do
		if [ $first = 1 ]; then
			[ "$lo" = 0000000000000000 ] || { echo "first lo $lo"; return 1; }
			first=0
		elif [ $((0x$prev + 1)) != $((0x$lo)) ]; then
			echo "gap or overlap: ..$prev then $lo.."
			return 1
		fi
		prev=$hi
	done < <(cat_sql "select lo, hi from shardrouter.ranges order by lo")
	[ "$prev" = ffffffffffffffff ] || { echo "last hi $prev"; return 1; }
}

# --- usage and help ---
run --help
t_is "--help exits 0" "$RC" 0
t_like "--help lists the commands" "$OUT" "split RANGE"
run split --help
t_is "split --help exits 0" "$RC" 0
run frobnicate
t_is "unknown command exits 2" "$RC" 2
t_like "unknown command says what to do" "$ERR" "unknown command 'frobnicate'.*shardctl --help"
SHARDROUTER_CATALOG= run status
t_is "no catalog configured exits 2" "$RC" 2
t_like "no catalog message says how to set it" "$ERR" "--catalog.*SHARDROUTER_CATALOG"
run status
t_is "status before init exits 1" "$RC" 1
t_like "status before init says to run init" "$ERR" "shardctl init"

# --- init ---
run init
t_is "init exits 0" "$RC" 0
t_is "meta has one row at epoch 0" "$(cat_sql "select count(*), max(epoch), max(schema_version) from shardrouter.meta")" "1|0|1"
before=$(dump_catalog)
run init
t_is "second init exits 0" "$RC" 0
t_is "second init leaves schema and data unchanged" "$(dump_catalog)" "$before"
t_is "all seven catalog tables exist" \
	"$(cat_sql "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'shardrouter'")" \
	"meta,moves,ranges,replicas,routers,shards,tables"

# --- shards ---
run shard add --primary "$SHARD0_PRIMARY_CONNINFO" --replica "$SHARD0_REPLICA1_CONNINFO"
t_is "shard add (0) exits 0" "$RC" 0
t_like "shard add reports id 0 and epoch 1" "$OUT" "shard 0 added.*epoch 1"
run shard add --primary "$SHARD1_PRIMARY_CONNINFO" --replica "$SHARD1_REPLICA1_CONNINFO"
t_like "shard add (1) gets the next id" "$OUT" "shard 1 added"
t_is "catalog holds 2 shards and 2 replicas" \
	"$(cat_sql "select (select count(*) from shardrouter.shards) || '/' || (select count(*) from shardrouter.replicas)")" "2/2"
run shard list
t_like "shard list shows shard 1's primary port" "$OUT" "1 +primary .*port=$SHARD1_PRIMARY_PORT"
run shard list --json
t_is "shard list --json: 2 shards, 1 replica each" \
	"$(jq -c '[.shards[] | [.id, (.replicas | length)]]' <<<"$OUT")" "[[0,1],[1,1]]"
t_is "epoch is 2 after two shard adds" "$(epoch)" 2

# --- tables ---
run table add orders --key order_id --type bigint
t_is "table add orders exits 0" "$RC" 0
run table add order_items --key order_id --type bigint
t_is "table add order_items exits 0" "$RC" 0
t_is "tables in SQL" \
	"$(cat_sql "select string_agg(schema_name || '.' || table_name || ':' || key_column || ':' || key_type, ',' order by table_name) from shardrouter.tables")" \
	"public.order_items:order_id:bigint,public.orders:order_id:bigint"
run table list --json
t_is "table list --json names both" "$(jq -r '[.tables[].table] | join(",")' <<<"$OUT")" "order_items,orders"

# --- map init ---
before=$(dump_catalog)
run map init --shards 4
t_is "map init --shards 4 with 2 shards exits 1" "$RC" 1
t_like "map init names the missing shard and what to do" "$ERR" "shard 2 is not registered.*shard add"
t_is "failed map init leaves the catalog unchanged" "$(dump_catalog)" "$before"
run shard add --primary "host=127.0.0.1 port=$SHARD1_PRIMARY_PORT user=postgres dbname=shard2"
t_like "shard 2 added" "$OUT" "shard 2 added"
run shard add --id 3 --primary "host=127.0.0.1 port=$SHARD1_PRIMARY_PORT user=postgres dbname=shard3"
t_like "shard 3 added with --id" "$OUT" "shard 3 added"
run map init --shards 4
t_is "map init --shards 4 with 4 shards exits 0" "$RC" 0
t_is "4 ranges owned by shards 0..3" \
	"$(cat_sql "select string_agg(shard_id::text, ',' order by lo) from shardrouter.ranges")" "0,1,2,3"
t_ok "ranges tile 0000000000000000..ffffffffffffffff" ranges_tile
run map init --shards 4
t_is "second map init without --force exits 1" "$RC" 1
t_like "second map init says a map exists" "$ERR" "already exists.*--force"

# --- status ---
psql_at "$SHARD0_PRIMARY_PORT" postgres \
	"create table orders (order_id bigint primary key); insert into orders select generate_series(1, 37)" >/dev/null
cat_sql "insert into shardrouter.routers (router_id, host, pid, version, acked_epoch) values ('r1', 'h1', 4242, 'test', 5)" >/dev/null
run status --json
t_is "status --json exits 0" "$RC" 0
t_ok "status --json is one JSON document" jq -e . <<<"$OUT"
t_is "status: epoch matches the catalog" "$(jq .epoch <<<"$OUT")" "$(epoch)"
t_is "status: shard 0 counts 37 orders" "$(jq '.shards[0].rows["public.orders"]' <<<"$OUT")" 37
t_is "status: missing table reported as null" "$(jq '.shards[1].rows["public.orders"]' <<<"$OUT")" null
t_is "status: shard 0 replication has one streaming replica with numeric lag" \
	"$(jq -r '.shards[0].replication | map(.state + ":" + (.lag_bytes | type)) | join(",")' <<<"$OUT")" \
	"streaming:number"
t_is "status: router r1 with acked epoch 5" "$(jq -c '[.routers[] | [.router_id, .acked_epoch]]' <<<"$OUT")" '[["r1",5]]'
run status
t_like "status text shows the ranges and routers" "$OUT" "c000000000000000  ffffffffffffffff  3 .*r1 host=h1"

# --- hash ---
if command -v xxhsum >/dev/null 2>&1; then
	want=$(printf '\x2a\0\0\0\0\0\0\0' | xxhsum -H3 | grep -oE '[0-9a-f]{16}' | head -n 1)
	SHARDROUTER_CATALOG= run hash 42 --type bigint
	t_is "hash 42 without a catalog prints xxhsum -H3 of its 8 LE bytes" "$OUT" "$want"
else
	echo "ok $((_t_n += 1)) # SKIP xxhsum not installed (apt-get install xxhash)"
	_t_pass=$((_t_pass + 1))
	SHARDROUTER_CATALOG= run hash 42 --type bigint
	want=$OUT
fi
run hash 42 --type bigint --json
t_is "hash --json gives the same hash" "$(jq -r .hash <<<"$OUT")" "$want"
owner=$(cat_sql "select shard_id from shardrouter.ranges where lo <= '$want' and hi >= '$want'")
t_is "hash --json names the owning shard" "$(jq .shard <<<"$OUT")" "$owner"
run hash 42
t_like "hash defaults to the tables' key type (bigint)" "$OUT" "hash +$want"

# --- split ---
e0=$(epoch)
run split 4000000000000000
t_is "split exits 0" "$RC" 0
run status --json
t_is "status shows the two halves owned by shard 1" \
	"$(jq -c '[.ranges[] | select(.shard == 1) | [.lo, .hi]]' <<<"$OUT")" \
	'[["4000000000000000","5fffffffffffffff"],["6000000000000000","7fffffffffffffff"]]'
t_is "split bumped the epoch by one" "$(jq .epoch <<<"$OUT")" $((e0 + 1))
run split 0000000000000000..3fffffffffffffff --at 1000
t_like "split lo..hi --at prints both halves" "$OUT" "0000000000000000..0000000000000fff shard 0.*0000000000001000..3fffffffffffffff shard 0"

# --- NOTIFY carries the new epoch ---
mkfifo "$T/listen"
psql -X -q -h 127.0.0.1 -p "$CAT_PORT" -U postgres -d shardrouter <"$T/listen" >"$T/listen.out" 2>&1 &
lpid=$!
exec 3>"$T/listen"
echo "LISTEN shardrouter_map; SELECT 'listening';" >&3
wait_until 30 grep -q listening "$T/listen.out"
run split 8000000000000000
echo "SELECT 'done';" >&3
exec 3>&-
wait $lpid
t_like "a change sends NOTIFY shardrouter_map with the new epoch" "$(cat "$T/listen.out")" \
	"\"shardrouter_map\" with payload \"$(epoch)\""

# --- concurrent changes serialise ---
e1=$(epoch)
"$SHARDCTL" split 0000000000001000 >"$T/a.out" 2>&1 &
pa=$!
"$SHARDCTL" split c000000000000000 >"$T/b.out" 2>&1 &
pb=$!
wait $pa
ra=$?
wait $pb
rb=$?
t_is "two parallel splits both succeed" "$ra/$rb" "0/0"
t_is "the epoch rose by exactly 2" "$(epoch)" $((e1 + 2))
t_ok "ranges still tile the space" ranges_tile

# --- the advisory lock is really taken ---
mkfifo "$T/lock"
psql -X -q -h 127.0.0.1 -p "$CAT_PORT" -U postgres -d shardrouter <"$T/lock" >"$T/lock.out" 2>&1 &
lockpid=$!
exec 4>"$T/lock"
echo "SELECT pg_advisory_lock($LOCK_KEY);" >&4
lock_rows() { # granted: t|f
	[ "$(cat_sql "select count(*) from pg_locks where locktype = 'advisory' and classid = $LOCK_HI and objid = $LOCK_LO and granted = $1")" -ge 1 ]
}
t_ok "a psql session holds pg_advisory_lock($LOCK_KEY)" wait_until 30 lock_rows true
e2=$(epoch)
"$SHARDCTL" split a000000000000000 >"$T/c.out" 2>&1 &
pc=$!
t_ok "shardctl waits for the advisory lock" wait_until 30 lock_rows false
t_ok "shardctl is still running while the lock is held" kill -0 $pc
t_is "no change was made while the lock is held" "$(epoch)" "$e2"
echo "SELECT pg_advisory_unlock($LOCK_KEY);" >&4
exec 4>&-
wait $lockpid
wait $pc
rc=$?
t_is "shardctl finishes once the lock is released" "$rc" 0
t_is "and bumps the epoch by one" "$(epoch)" $((e2 + 1))

# --- bad input exits 1 or 2, says what to do, changes nothing ---
before=$(dump_catalog)
run split 4000000000000000 --at 0000000000000001
t_is "split point below the range exits 1" "$RC" 1
t_like "split point outside: clear message" "$ERR" "not inside range 4000000000000000..5fffffffffffffff"
run split 4000000000000000 --at 4000000000000000
t_is "split point at the range's lo exits 1" "$RC" 1
run split 00000000deadbeef
t_is "split of an unknown range exits 1" "$RC" 1
t_like "unknown range: says to run status" "$ERR" "no such range 00000000deadbeef.*shardctl status"
run split 4000000000000000..7fffffffffffffff
t_is "split lo..hi that is not a range exits 1" "$RC" 1
run split 4000000000000000 --at xyz
t_is "bad hash literal for --at exits 2" "$RC" 2
t_like "bad hash literal: clear message" "$ERR" "not a hash"
run split 12345678901234567
t_is "17-digit range exits 2" "$RC" 2
run hash 12abc --type bigint
t_is "bad bigint key exits 2" "$RC" 2
run table add t1 --key k --type blob
t_is "bad type name exits 2" "$RC" 2
t_like "bad type name lists the accepted types" "$ERR" "bigint.*text.*uuid"
run table add orders --key order_id --type bigint
t_is "adding a table twice exits 1" "$RC" 1
run shard add --id 1 --primary "$SHARD1_PRIMARY_CONNINFO"
t_is "shard add with a taken id exits 1" "$RC" 1
run shard add --primary "host=127.0.0.1 port=1 user=postgres dbname=x"
t_is "shard add with an unreachable primary exits 1" "$RC" 1
t_like "unreachable primary: says what to do" "$ERR" "--no-check"
run map init --shards 5 --force
t_is "map init referencing unknown shard 4 exits 1" "$RC" 1
t_like "unknown shard 4 is named" "$ERR" "shard 4 is not registered"
run status --bogus
t_is "unknown option exits 2" "$RC" 2
run map init
t_is "missing --shards exits 2" "$RC" 2
t_is "the catalog is unchanged after all bad input" "$(dump_catalog)" "$before"

# --- an unreachable shard does not break status ---
run shard add --no-check --primary "host=127.0.0.1 port=1 user=postgres dbname=x"
t_like "shard add --no-check registers an unreachable shard" "$OUT" "shard 4 added"
run status --json
t_is "status with an unreachable shard still exits 0" "$RC" 0
t_is "status marks only shard 4 unreachable" \
	"$(jq -c '[.shards[] | select(.reachable | not) | .id]' <<<"$OUT")" "[4]"
t_like "status says why" "$(jq -r '.shards[4].error' <<<"$OUT")" "Connection refused|could not connect|failed"

t_done
