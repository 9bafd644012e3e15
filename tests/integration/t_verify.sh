#!/usr/bin/env bash
# t_verify.sh - `shardctl verify` (SPEC §5) against a real 2-shard shop cluster:
# 10,000 orders (and 12,000 co-located order_items) all inserted on shard 0; verify
# must flag exactly the rows whose key shard 1 owns (cross-checked key by key against
# `shardctl hash` for 200 keys, and orders vs order_items), --list names every one;
# moving those rows to shard 1 makes verify pass. Also: text keys with characters
# COPY escapes, a NULL key (unknown), a table missing on one shard, an unreachable
# shard whose conninfo holds a password (masked), --table, and bad usage (exit 2).
# Needs: tests/harness (cluster of 2 shards, no replicas), psql, jq. Binary:
# $BUILD/shardctl.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

SHARDCTL=$BUILD/shardctl
if [ ! -x "$SHARDCTL" ]; then
	t_ok "shardctl is built at $SHARDCTL" test -x "$SHARDCTL"
	t_done
fi

cluster_up 2 0
T=$(mktemp -d "${TMPDIR:-/tmp}/t_verify.XXXXXX")
trap 'rm -rf "$T"; cluster_down' EXIT
if ! shop_setup 2; then
	t_ok "shop_setup 2" false
	t_done
fi
P0=$SHARD0_PRIMARY_PORT
P1=$SHARD1_PRIMARY_PORT

# run ARGS...: run shardctl; sets OUT, ERR, RC.
run() {
	OUT=$("$SHARDCTL" "$@" 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
}
shop0() { psql_at "$P0" shop "$1"; }
shop1() { psql_at "$P1" shop "$1"; }
# jq over the last JSON output
jqo() { jq -r "$@" <<<"$OUT"; }
# tbl SHARD TABLE FIELD: one field of a table's result in the last --json output
tbl() { jqo --argjson s "$1" --arg t "$2" ".shards[] | select(.id == \$s) | .tables[] | select(.table == \$t) | .$3"; }

# --- usage ---
run verify --bogus
t_is "unknown option exits 2" "$RC" 2
t_like "unknown option is named" "$ERR" "unknown option --bogus.*verify --help"
run verify extra
t_is "a positional argument exits 2" "$RC" 2
run verify --table
t_is "--table without a value exits 2" "$RC" 2
run verify --help
t_is "verify --help exits 0" "$RC" 0
t_like "verify --help describes --list" "$OUT" "--list"
run --help
t_like "shardctl --help lists verify" "$OUT" "verify"
run verify --table nosuch
t_is "--table with an unknown table exits 1" "$RC" 1
t_like "unknown table says where to look" "$ERR" "'nosuch' is not a sharded table.*table list"

# --- empty cluster ---
run verify --json
t_is "empty shards: verify exits 0" "$RC" 0
t_is "empty shards: 0 rows, ok" "$(jqo '[.total.rows, .total.misplaced, .ok] | join(",")')" "0,0,true"
t_is "empty shards: both shards x both tables scanned" \
	"$(jqo '[.shards[] | .id as $i | .tables[] | "\($i):\(.table):\(.status)"] | join(" ")')" \
	"0:order_items:ok 0:orders:ok 1:order_items:ok 1:orders:ok"

# --- everything on shard 0 ---
shop0 "INSERT INTO orders (order_id, customer_id, status, total)
	SELECT g, g % 100, 'new', g FROM generate_series(1, 10000) g;
	INSERT INTO order_items SELECT g, 1, 'sku-' || g, 1 FROM generate_series(1, 10000) g;
	INSERT INTO order_items SELECT g, 2, 'sku-x', 2 FROM generate_series(1, 2000) g" >/dev/null
run verify --json --list
t_is "misplaced rows: verify exits 1" "$RC" 1
t_ok "verify --json --list is one JSON document" jq -e . <<<"$OUT"
jqo '.shards[] | select(.id == 0) | .tables[] | select(.table == "orders") | .keys[].key' | sort -n >"$T/keys"
jqo '.shards[] | select(.id == 0) | .tables[] | select(.table == "order_items") | .keys[].key' | sort -n | uniq >"$T/item_keys"
M=$(tbl 0 orders misplaced)
N_KEYS=$(wc -l <"$T/keys")
t_diag "shard 0: $M of 10000 orders misplaced; $(jqo '.total.rows_per_s | floor') rows/s"
t_is "shard 0 orders: 10000 rows scanned" "$(tbl 0 orders rows)" 10000
t_ok "misplaced count is > 0 and < 10000 ($M)" test "$M" -gt 0 -a "$M" -lt 10000
t_is "--list gives every misplaced key, once" "$(sort -u "$T/keys" | wc -l)" "$M"
t_is "every listed orders key belongs to shard 1" \
	"$(tbl 0 orders 'keys | map(.shard) | unique | map(tostring) | join(",")')" 1
t_is "listed hashes are 16 hex digits" \
	"$(tbl 0 orders 'keys | map(.hash | test("^[0-9a-f]{16}$")) | all')" true
t_is "10 samples" "$(tbl 0 orders 'samples | length')" 10
t_is "no unknown keys" "$(tbl 0 orders unknown)" 0
t_is "shard 1: nothing there, nothing misplaced" "$(tbl 1 orders rows),$(tbl 1 orders misplaced)" "0,0"
# co-located order_items: exactly the items of the misplaced orders
t_is "order_items misplaced keys == orders misplaced keys" "$(cat "$T/item_keys")" "$(cat "$T/keys")"
EXP_ITEMS=$((M + $(awk '$1 <= 2000' "$T/keys" | wc -l)))
t_is "order_items misplaced count (2 lines for orders <= 2000)" "$(tbl 0 order_items misplaced)" "$EXP_ITEMS"
t_is "total misplaced = orders + order_items" "$(jqo .total.misplaced)" "$((M + EXP_ITEMS))"
t_is "total rows 22000, ok false" "$(jqo '[.total.rows, .ok] | join(",")')" "22000,false"

# cross-check 200 keys with `shardctl hash` (independent path: argv -> key -> hash -> map)
bad=0 own1=0
for ((k = 37; k <= 10000; k += 50)); do
	owner=$("$SHARDCTL" hash "$k" --json | jq -r .shard)
	if grep -qx "$k" "$T/keys"; then listed=1; else listed=0; fi
	[ "$owner" = 1 ] && own1=$((own1 + 1))
	if { [ "$owner" = 1 ] && [ $listed = 0 ]; } || { [ "$owner" = 0 ] && [ $listed = 1 ]; } ||
		{ [ "$owner" != 0 ] && [ "$owner" != 1 ]; }; then
		bad=$((bad + 1))
		t_diag "key $k: shardctl hash says shard $owner, verify listed=$listed"
	fi
done
t_is "200 sample keys: verify's verdict matches shardctl hash" "$bad" 0
t_ok "the sample has keys of both shards ($own1 of 200 on shard 1)" test "$own1" -gt 0 -a "$own1" -lt 200

run verify
t_is "text: exits 1" "$RC" 1
t_like "text: per-table counts" "$OUT" "public.orders \(order_id bigint\): 10000 rows, $M misplaced, 0 unknown"
t_like "text: samples name the owner" "$OUT" "key [0-9]+  hash [0-9a-f]{16}  belongs to shard 1"
t_like "text: says how to see the rest" "$OUT" "and $((M - 10)) more; .shardctl verify --list"
t_like "text: total line" "$OUT" "total: 22000 rows scanned in .* rows/s\): $((M + EXP_ITEMS)) misplaced"
t_like "text: stderr says what to do" "$ERR" "move each misplaced row to the shard that owns its key"

run verify --json --table orders
t_is "--table orders scans only orders" "$(jqo '[.shards[].tables[].table] | unique | join(",")')" orders
t_is "--table orders: total is the orders count" "$(jqo .total.misplaced)" "$M"
run verify --json --table public.ORDERS
t_is "--table public.ORDERS folds case" "$(jqo '[.shards[].tables[].table] | unique | join(",")')" orders

# --- move the misplaced rows to shard 1 with the keys verify listed ---
ARR="{$(paste -sd, "$T/keys")}"
for tab in orders order_items; do
	psql_at "$P0" shop "COPY (SELECT * FROM $tab WHERE order_id = ANY('$ARR'::bigint[])) TO STDOUT" |
		psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$P1" -U postgres -d shop -c "COPY $tab FROM STDIN"
	shop0 "DELETE FROM $tab WHERE order_id = ANY('$ARR'::bigint[])" >/dev/null
done
t_is "shard 1 now holds the $M orders" "$(shop1 'SELECT count(*) FROM orders')" "$M"
run verify --json
t_is "after the move: verify exits 0" "$RC" 0
t_is "after the move: 22000 rows, 0 misplaced, ok" \
	"$(jqo '[.total.rows, .total.misplaced, .total.unknown, .ok] | join(",")')" "22000,0,0,true"
t_is "after the move: shard 1 orders scanned, all in place" "$(tbl 1 orders rows),$(tbl 1 orders misplaced)" "$M,0"
run verify
t_is "after the move: text exits 0" "$RC" 0
t_like "after the move: text total" "$OUT" "total: 22000 rows scanned .* 0 misplaced, 0 unknown"

# --- text keys that COPY escapes ---
for p in "$P0" "$P1"; do
	psql_at "$p" shop "CREATE TABLE tags (tag text, note text)" >/dev/null
done
run table add tags --key tag --type text
t_is "table add tags (text key)" "$RC" 0
printf '%s\n' 'plain' 'tab	in' 'back\slash' 'back\\two' 'sp ace' "quote'd" 'üñí' 'x\N' '\N' \
	k{1..30} >"$T/tags"
printf 'new\nline' >>"$T/tags.nl"
# (load with psql variables so every byte arrives as is)
while IFS= read -r tag; do
	psql -X -q -v ON_ERROR_STOP=1 -v t="$tag" -h 127.0.0.1 -p "$P0" -U postgres -d shop \
		<<<"INSERT INTO tags VALUES (:'t', 'x');"
done <"$T/tags"
psql -X -q -v ON_ERROR_STOP=1 -v t="$(cat "$T/tags.nl")" -h 127.0.0.1 -p "$P0" -U postgres -d shop \
	<<<"INSERT INTO tags VALUES (:'t', 'x');"
t_is "40 text keys loaded on shard 0" "$(shop0 'SELECT count(*) FROM tags')" 40
run verify --json --list --table tags
jqo '.shards[] | select(.id == 0) | .tables[0].keys[].key | @json' | sort >"$T/tag_listed"
: >"$T/tag_expected"
bad=0
while IFS= read -r tag; do
	owner=$("$SHARDCTL" hash --type text --json -- "$tag" | jq -r .shard)
	[ "$owner" = 1 ] && jq -rn --arg k "$tag" '$k | @json' >>"$T/tag_expected"
done <"$T/tags"
owner=$("$SHARDCTL" hash --type text --json -- "$(cat "$T/tags.nl")" | jq -r .shard)
[ "$owner" = 1 ] && jq -rn --arg k "$(cat "$T/tags.nl")" '$k | @json' >>"$T/tag_expected"
sort -o "$T/tag_expected" "$T/tag_expected"
t_is "text keys: the listed keys are exactly those shardctl hash puts on shard 1" \
	"$(cat "$T/tag_listed")" "$(cat "$T/tag_expected")"
t_is "text keys: exit 1 iff some key is misplaced" "$RC" "$([ -s "$T/tag_expected" ] && echo 1 || echo 0)"
t_is "text keys: no key unknown (a literal \\N is not NULL)" "$(tbl 0 tags unknown)" 0
shop0 "DROP TABLE tags" >/dev/null
psql_at "$P0" shop "CREATE TABLE tags (tag text, note text)" >/dev/null

# --- NULL key ---
shop1 "INSERT INTO tags VALUES (NULL, 'orphan')" >/dev/null
run verify --json
t_is "NULL key: verify exits 1" "$RC" 1
t_is "NULL key: counted as unknown on shard 1" "$(tbl 1 tags unknown),$(tbl 1 tags misplaced)" "1,0"
t_is "NULL key: sample has key null, reason" \
	"$(tbl 1 tags 'samples[0] | [(.key == null), .reason] | map(tostring) | join(",")')" "true,null key"
t_is "NULL key: total unknown 1, misplaced 0" "$(jqo '[.total.unknown, .total.misplaced] | join(",")')" "1,0"
run verify
t_like "NULL key: text names it" "$OUT" "key NULL: unknown, a NULL key cannot be routed"
t_like "NULL key: stderr says to fix rows without a valid key" "$ERR" "1 with a NULL or invalid key"
shop1 "DELETE FROM tags WHERE tag IS NULL" >/dev/null
run verify
t_is "NULL row deleted: verify exits 0" "$RC" 0

# --- a table missing on one shard ---
shop1 "DROP TABLE order_items" >/dev/null
run verify --json
t_is "missing table: verify exits 1" "$RC" 1
t_is "missing table: status missing on shard 1" "$(tbl 1 order_items status)" missing
t_like "missing table: stderr names table, shard and what to do" "$ERR" \
	"order_items does not exist on shard 1; create it there .*pg_dump --schema-only"
t_is "missing table: the other tables are still scanned" "$(tbl 1 orders status),$(tbl 1 orders rows)" "ok,$M"
run verify
t_like "missing table: text report says MISSING" "$OUT" "order_items \(order_id bigint\): MISSING"
shop1 "CREATE TABLE order_items (order_id bigint, line_no int, sku text, qty int, PRIMARY KEY (order_id, line_no))" >/dev/null
run verify
t_is "recreated (empty) table: verify exits 0" "$RC" 0

# --- an unreachable shard whose conninfo has a password ---
FREE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 1)
run shard add --no-check --id 2 --primary "host=127.0.0.1 port=$FREE_PORT dbname=shop password=sekrit-pw"
t_is "shard 2 (no ranges, unreachable) added" "$RC" 0
run verify
t_is "unreachable shard: verify exits 1" "$RC" 1
t_like "unreachable shard: stderr says which and why" "$ERR" "cannot scan shard 2 \([^)]*port=$FREE_PORT[^)]*\): .*check that its primary is up"
t_like "unreachable shard: text report" "$OUT" "shard 2 .*UNREACHABLE"
t_nok "unreachable shard: the password is not printed" grep -q sekrit <<<"$OUT$ERR"
run verify --json
t_is "unreachable shard: json reachable false, others fine" \
	"$(jqo '[.shards[] | "\(.id):\(.reachable)"] | join(" ")') $(jqo .total.misplaced)" "0:true 1:true 2:false 0"
t_nok "unreachable shard (json): the password is not printed" grep -q sekrit <<<"$OUT$ERR"

t_done
