#!/usr/bin/env bash
# t_move.sh - `shardctl move RANGE --to SHARD` (SPEC 5) end to end, with the
# ledger (tests/integration/ledger.c) as the oracle: every write that the
# router acknowledged must be on the range's owner after the move, exactly
# once, with the values the writer committed last.
#   0. the oracle itself: load, write, check ok; a hand-made stale row fails it
#   a. refusals: target lacks order_items; source wal_level=replica
#      (exit 1, catalog, epoch and slots unchanged)
#   b. the main move of a 100,000-order range under ledger writers and pgbench
#   c. kill -9 in every step (SHARDCTL_FAIL_AT), then resume or --abort
#   d. a SIGSTOPped second router: the move waits out its lease; after
#      SIGCONT its writes never land on the old owner
# The move parts are skipped when `shardctl move --help` fails.
# Needs: tests/harness (2 shards x 1 replica), psql, pgbench, jq.
# Binaries: $BUILD/shardrouter, $BUILD/shardctl, $BUILD/tests/integration/ledger.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/shop.sh"

SHARDCTL=$BUILD/shardctl
LEDGER=$BUILD/tests/integration/ledger
need_binaries "$BUILD/shardrouter" "$SHARDCTL" "$LEDGER"

cluster_up 2 1
T=$CLUSTER_DIR/t_move
mkdir -p "$T"
R2_PID=
shop_trap '[ -z "$R2_PID" ] || kill -KILL "$R2_PID" 2>/dev/null'
shop_setup 2 || t_bail "shop_setup 2"
P0=$SHARD0_PRIMARY_PORT
P1=$SHARD1_PRIMARY_PORT
PORT=$(free_port) || t_bail "found a free port"
router_start "$PORT" "freeze_timeout_ms = 20000" "catalog_poll_ms = 200" ||
	t_bail "router starts"
APP="host=127.0.0.1 port=$PORT user=app password=app dbname=shop connect_timeout=5"
CAT=$SHARDROUTER_CATALOG

cat_sql() { psql_at "$P0" shardrouter "$1"; }
port_of() { eval echo "\$SHARD${1}_PRIMARY_PORT"; }
epoch() { cat_sql "SELECT epoch FROM shardrouter.meta"; }
owner_of() { cat_sql "SELECT shard_id FROM shardrouter.ranges WHERE lo = '$1'"; }
state_of() { cat_sql "SELECT state FROM shardrouter.ranges WHERE lo = '$1'"; }
running_moves() { cat_sql "SELECT count(*) FROM shardrouter.moves WHERE state = 'running'"; }
# move slots and publications left on both primaries: "slots,publications"
leftovers() {
	local s=0 p=0 port
	for port in "$P0" "$P1"; do
		s=$((s + $(psql_at "$port" postgres "SELECT count(*) FROM pg_replication_slots
			WHERE slot_name LIKE 'shardrouter\_move\_%'")))
		p=$((p + $(psql_at "$port" shop "SELECT count(*) FROM pg_publication
			WHERE pubname LIKE 'shardrouter\_move\_%'")))
	done
	echo "$s,$p"
}
# run_ctl ARGS...: shardctl; sets OUT, ERR, RC
run_ctl() {
	OUT=$("$SHARDCTL" "$@" 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
}
field() { grep -o "\(^\| \)$1=[^ ]*" <<<"$2" | tail -n 1 | cut -d= -f2; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
t_skip() {
	_t_n=$((_t_n + 1))
	_t_pass=$((_t_pass + 1))
	echo "ok $_t_n - $1 # SKIP $2"
}

# writer_start PREFIX KEYS PROCS: ledger writers in the background (WPID)
writer_start() {
	WPREFIX=$1
	rm -f "$T/stop"
	"$LEDGER" write --router "$APP" --catalog "$CAT" --keys "$2" --seconds 170 \
		--stop-file "$T/stop" --procs "$3" --pause-ms 3 --file "$1" >"$1.out" 2>"$1.err" &
	WPID=$!
	BG_PIDS+=("$WPID")
}
# writer_stop NAME: stop them; their totals must show no anomaly and no
# unresolved outcome. Sets WOUT.
writer_stop() {
	touch "$T/stop"
	wait "$WPID"
	local rc=$?
	WOUT=$(cat "$WPREFIX.out" 2>/dev/null)
	t_is "$1: ledger writers exit 0 (no anomaly, every outcome resolved)" "$rc" 0
	[ "$rc" = 0 ] || t_diag "$(tail -n 5 "$WPREFIX.err")"
	t_diag "$1: $(head -n 1 <<<"$WOUT" | cut -d' ' -f2-6); $(sed -n 2p <<<"$WOUT")"
}

# --- 0. the oracle -------------------------------------------------------------------
L0=$("$LEDGER" load --catalog "$CAT" --range 0000000000000000..7fffffffffffffff --in 300 \
	--out 300 --items 2 --first 5000001 --file "$T/o.base")
t_is "ledger load exits 0" "$?" 0
t_like "ledger load reports its keys" "$L0" "loaded in=300 out=300 rows=1800 keys=5000001\.\."
OK=$(field keys "$L0")
t_is "300 loaded orders on shard 0, 300 on shard 1" \
	"$(psql_at "$P0" shop "SELECT count(*) FROM orders WHERE order_id BETWEEN ${OK/../ AND }"),$(psql_at "$P1" shop "SELECT count(*) FROM orders WHERE order_id BETWEEN ${OK/../ AND }")" \
	"300,300"
writer_start "$T/o" "$OK" 2
sleep 2
writer_stop "oracle"
t_like "oracle: the writers committed something" "$(field committed "$WOUT")" "^[1-9][0-9]*$"
t_ok "oracle: ledger check passes after the writers" \
	"$LEDGER" check --catalog "$CAT" --file "$T/o" --procs 2 --keys "$OK"
K=$(psql_at "$P1" shop "SELECT min(order_id) FROM orders WHERE order_id BETWEEN ${OK/../ AND }")
psql_at "$P1" shop "UPDATE orders SET total = total + 1 WHERE order_id = $K" >/dev/null
out=$("$LEDGER" check --catalog "$CAT" --file "$T/o" --procs 2 --keys "$OK")
t_is "oracle: a row changed behind the writers' back fails the check" "$?" 1
t_like "oracle: ... as stale, naming the key" "$out" "stale: orders $K on shard 1"
for p in "$P0" "$P1"; do
	psql_at "$p" shop "DELETE FROM orders WHERE order_id BETWEEN ${OK/../ AND };
		DELETE FROM order_items WHERE order_id BETWEEN ${OK/../ AND }" >/dev/null
done

if ! "$SHARDCTL" move --help >/dev/null 2>&1; then
	t_skip "move scenarios" "shardctl move is not built yet"
	t_done
fi

# --- a. refusals -------------------------------------------------------------------------
E0=$(epoch)
psql_at "$P1" shop "DROP TABLE order_items" >/dev/null
run_ctl move 0000000000000000 --to 1
t_is "a: target without order_items: exit 1" "$RC" 1
t_like "a: the message names the table and the shard" "$ERR" "order_items.*shard 1|shard 1.*order_items"
t_is "a: no running move, no slot, no publication" "$(running_moves);$(leftovers)" "0;0,0"
t_is "a: epoch and owner unchanged" "$(epoch),$(owner_of 0000000000000000)" "$E0,0"
psql_at "$P1" shop "CREATE TABLE order_items (order_id bigint, line_no int, sku text, qty int,
	PRIMARY KEY (order_id, line_no)); GRANT ALL ON order_items TO app" >/dev/null

pg_restart0() {
	local ctl=(/usr/lib/postgresql/15/bin/pg_ctl restart -D "$SHARD0_PRIMARY_DATA" -m fast -w -t 60
		-l "$CLUSTER_DIR/$SHARD0_PRIMARY_NAME/log/postgres.log" -s)
	if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$(stat -c %U "$SHARD0_PRIMARY_DATA")" -- "${ctl[@]}")
	else "${ctl[@]}"
	fi >/dev/null 2>&1 && wait_until 30 psql_at "$P0" postgres "SELECT 1"
}
psql_at "$P0" postgres "ALTER SYSTEM SET wal_level = replica" >/dev/null
t_ok "a: shard 0 primary restarts with wal_level=replica" pg_restart0
t_is "a: wal_level is replica" "$(psql_at "$P0" postgres 'SHOW wal_level')" replica
run_ctl move 0000000000000000 --to 1
t_is "a: source wal_level=replica: exit 1" "$RC" 1
t_like "a: the message says to set wal_level=logical and restart" "$ERR" "wal_level.*logical.*restart"
t_is "a: no running move, no slot, no publication" "$(running_moves);$(leftovers)" "0;0,0"
t_is "a: epoch and owner unchanged" "$(epoch),$(owner_of 0000000000000000)" "$E0,0"
psql_at "$P0" postgres "ALTER SYSTEM SET wal_level = logical" >/dev/null
t_ok "a: shard 0 primary restarts with wal_level=logical" pg_restart0
t_is "a: wal_level is logical again" "$(psql_at "$P0" postgres 'SHOW wal_level')" logical
wait_until 20 sh -c "PGPASSWORD=app psql -X -At -h 127.0.0.1 -p $PORT -U app -d shop -c \
	'SELECT 1 FROM orders WHERE order_id = 1 FOR UPDATE'" ||
	t_diag "the router does not write to shard 0 again yet"
kill -0 "$ROUTER_PID" 2>/dev/null || t_bail "a: the router survived two restarts of shard 0's primary"

# --- b. the main move ----------------------------------------------------------------------
LO=4000000000000000 HI=7fffffffffffffff
run_ctl split 0000000000000000 --at $LO
t_is "b: split range 0 at $LO" "$RC" 0
LB=$("$LEDGER" load --catalog "$CAT" --range $LO..$HI --in 100000 --out 20000 --items 1 \
	--file "$T/b.base")
t_is "b: loaded 100,000 orders in the range and 20,000 outside" "$?" 0
t_diag "b: $LB"
BK=$(field keys "$LB")
IN0=$("$LEDGER" count --catalog "$CAT" --range $LO..$HI | sed -n 's/^count shard=0 .*rows=//p')
t_is "b: 200,000 rows of the range on shard 0" "$IN0" 200000
# Count what the move deletes on shard 0 (as user postgres, whatever
# session_replication_role it uses); unlogged, so never decoded.
psql_at "$P0" shop "CREATE UNLOGGED TABLE t_move_deleted (tab text, n bigint);
	CREATE FUNCTION t_move_count() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN
	IF current_user = 'postgres' THEN
		INSERT INTO t_move_deleted SELECT TG_TABLE_NAME, count(*) FROM old_rows; END IF;
	RETURN NULL; END\$\$;
	CREATE TRIGGER t_move_del AFTER DELETE ON orders REFERENCING OLD TABLE AS old_rows
		FOR EACH STATEMENT EXECUTE FUNCTION t_move_count();
	CREATE TRIGGER t_move_del AFTER DELETE ON order_items REFERENCING OLD TABLE AS old_rows
		FOR EACH STATEMENT EXECUTE FUNCTION t_move_count();
	ALTER TABLE orders ENABLE ALWAYS TRIGGER t_move_del;
	ALTER TABLE order_items ENABLE ALWAYS TRIGGER t_move_del" >/dev/null
cat >"$T/pgbench.sql" <<-'EOF'
	\set id random(600001, 700000)
	INSERT INTO orders (order_id, customer_id, status, total) VALUES (:id, 1, 'pgb', 1) ON CONFLICT (order_id) DO UPDATE SET total = orders.total + 1;
	\set id2 random(600001, 700000)
	DELETE FROM orders WHERE order_id = :id2;
EOF
writer_start "$T/b" 1..40000 3
PGPASSWORD=app timeout 120 pgbench -n -h 127.0.0.1 -p "$PORT" -U app -c 2 -j 1 -T 14 \
	-M extended -f "$T/pgbench.sql" shop >"$T/pgbench.out" 2>&1 &
PGB=$!
BG_PIDS+=("$PGB")
sleep 1.5
t0=$(date +%s%N)
run_ctl move $LO --to 1
t_diag "b: move took $(ms_since "$t0") ms"
t_is "b: move exits 0" "$RC" 0
[ "$RC" = 0 ] || t_diag "$(tail -n 15 <<<"$ERR")"
LAST=$(tail -n 1 <<<"$OUT")
t_like "b: last line: move LO..HI shard 0 -> 1 done with the counters" "$LAST" \
	"^move $LO\.\.$HI shard 0 -> 1 done: rows_copied=[0-9]+ changes_applied=[0-9]+ copy_rows_per_s=[0-9.]+ freeze_ms=[0-9.]+ rows_deleted=[0-9]+$"
t_diag "b: copy rate $(field copy_rows_per_s "$LAST") rows/s, freeze $(field freeze_ms "$LAST") ms, $(field rows_copied "$LAST") rows copied, $(field changes_applied "$LAST") changes applied"
wait "$PGB"
PGB_RC=$?
writer_stop "b"
t_is "b: pgbench exits 0" "$PGB_RC" 0
t_like "b: pgbench: 0 failed transactions" "$(cat "$T/pgbench.out")" "number of failed transactions: 0 "
[ "$PGB_RC" = 0 ] || t_diag "$(grep -v '^progress' "$T/pgbench.out" | tail -n 8)"
t_diag "b: pgbench $(grep -o 'number of transactions actually processed: [0-9]*' "$T/pgbench.out")"
t_diag "b: ledger write failures: $(sed -n 2p <<<"$WOUT") (55P03 = freeze timeout, 40001 = frozen mid-transaction)"
t_diag "b: longest write wait $(sed -n 's/^longest_op ms=\([^ ]*\) .*what=/\1 ms: /p' <<<"$WOUT")"
run_ctl verify
t_is "b: shardctl verify exits 0" "$RC" 0
[ "$RC" = 0 ] || t_diag "$(tail -n 5 <<<"$OUT$ERR")"
out=$("$LEDGER" check --catalog "$CAT" --base "$T/b.base" --file "$T/b" --procs 3 --keys "$BK")
rc=$?
t_is "b: ledger check: every acknowledged write is on the owner, once" "$rc" 0
[ "$rc" = 0 ] && t_diag "b: $(grep '^check keys' <<<"$out")" || t_diag "$(head -n 25 <<<"$out")"
t_is "b: no slot or publication left" "$(leftovers)" "0,0"
t_is "b: no running move" "$(running_moves)" 0
run_ctl status --json
t_is "b: shardctl status: the range is shard 1's, active" \
	"$(jq -r --arg lo $LO '.ranges[] | select(.lo == $lo) | "\(.shard) \(.state)"' <<<"$OUT")" "1 active"
DEL=$(psql_at "$P0" shop "SELECT coalesce(sum(n), 0) FROM t_move_deleted")
t_is "b: rows_deleted = the rows the move deleted from shard 0" "$(field rows_deleted "$LAST")" "$DEL"
t_is "b: no row of the range left on shard 0" \
	"$("$LEDGER" count --catalog "$CAT" --range $LO..$HI | sed -n 's/^count shard=0 .*rows=//p')" 0
t_is "b: shardrouter.moves: done, same counters" \
	"$(cat_sql "SELECT state || ' ' || rows_deleted FROM shardrouter.moves WHERE range_lo = '$LO' ORDER BY move_id DESC LIMIT 1")" \
	"done $(field rows_deleted "$LAST")"
psql_at "$P0" shop "DROP TRIGGER t_move_del ON orders; DROP TRIGGER t_move_del ON order_items;
	DROP FUNCTION t_move_count(); DROP TABLE t_move_deleted" >/dev/null

# --- c. kill -9 in each step, then resume or abort --------------------------------------------
CLO=8000000000000000 CHI=bfffffffffffffff
run_ctl split $CLO --at c000000000000000
t_is "c: split range $CLO" "$RC" 0
LC=$("$LEDGER" load --catalog "$CAT" --range $CLO..$CHI --in 3000 --out 0 --items 1 \
	--first 2000001)
t_is "c: loaded 3,000 orders into $CLO..$CHI" "$?" 0
CK=$(field keys "$LC")
i=0
for step in prepare copy catchup freeze verify cutover cleanup; do
	i=$((i + 1))
	src=$(owner_of $CLO)
	dst=$((1 - src))
	writer_start "$T/c_$step" "$CK" 2
	sleep 0.5
	SHARDCTL_FAIL_AT=$step "$SHARDCTL" move $CLO --to $dst >"$T/c_$step.move1" 2>&1
	rc=$?
	t_is "c/$step: shardctl killed itself with SIGKILL" "$rc" 137
	t_like "c/$step: after the kill the range is the source's or the target's" \
		"$(owner_of $CLO)" "^($src|$dst)$"
	# Killed while the range was frozen: the move's sentinel unfreezes it.
	range_active() { [ "$(state_of $CLO)" = active ]; }
	t_ok "c/$step: the range is not left frozen (sentinel)" wait_until 10 range_active
	t_diag "c/$step: after the kill: owner $(owner_of $CLO), $(state_of $CLO), journal: $(cat_sql "SELECT step || ' ' || state FROM shardrouter.moves WHERE range_lo = '$CLO' ORDER BY move_id DESC LIMIT 1")"
	if ((i % 2)); then
		how=resume
		run_ctl move $CLO --to $dst --json
	else
		how=abort
		run_ctl move $CLO --to $dst --abort --json
	fi
	t_is "c/$step: $how exits 0" "$RC" 0
	[ "$RC" = 0 ] || t_diag "$(tail -n 8 <<<"$ERR")"
	t_is "c/$step: $how: JSON result has the counters" \
		"$(jq -r '[has("rows_copied"), has("changes_applied"), has("copy_rows_per_s"), has("freeze_ms"), has("rows_deleted")] | all' <<<"$OUT" 2>&1)" true
	writer_stop "c/$step"
	case $how/$step in
	resume/*) want=$dst ;;
	abort/cutover) want=$(owner_of $CLO) ;; # after cutover, --abort finishes
	abort/*) want=$src ;;
	esac
	t_is "c/$step: $how: owner $want, range active, no running move, no slot/publication" \
		"$(owner_of $CLO) $(state_of $CLO) $(running_moves) $(leftovers)" "$want active 0 0,0"
	run_ctl verify
	t_is "c/$step: shardctl verify exits 0" "$RC" 0
	out=$("$LEDGER" check --catalog "$CAT" --file "$T/c_$step" --procs 2 --keys "$CK")
	rc=$?
	t_is "c/$step: ledger check exits 0" "$rc" 0
	[ "$rc" = 0 ] || t_diag "$(head -n 20 <<<"$out")"
done

# --- d. a stopped router ----------------------------------------------------------------------------
R2_PORT=$(free_port "$PORT") || t_bail "d: a free port"
R2_DIR=$CLUSTER_DIR/router2
mkdir -p "$R2_DIR"
sed -e "s/^listen_port = .*/listen_port = $R2_PORT/" -e "s|^map_cache = .*|map_cache = $R2_DIR/map.cache|" \
	-e '/^catalog_lease_ms/d' -e '/^catalog_poll_ms/d' "$CLUSTER_DIR/router/shardrouter.ini" >"$R2_DIR/shardrouter.ini"
printf 'catalog_lease_ms = 2000\ncatalog_poll_ms = 200\n' >>"$R2_DIR/shardrouter.ini"
"$BUILD/shardrouter" -c "$R2_DIR/shardrouter.ini" >"$R2_DIR/router.log" 2>&1 &
R2_PID=$!
app2() { PGPASSWORD=app PGCONNECT_TIMEOUT=5 psql -X -A -t -q -h 127.0.0.1 -p "$R2_PORT" -U app -d shop -v VERBOSITY=verbose -c "$1" 2>&1; }
t_ok "d: a second router starts" wait_until 10 app2 "SELECT 1"
t_ok "d: both routers are registered and heartbeating" wait_until 10 test \
	"$(cat_sql "SELECT count(*) FROM shardrouter.routers WHERE now() - heartbeat_at < interval '2 s'")" -ge 2
DK=
for ((k = 3000001; k < 3000200; k++)); do
	h=$("$SHARDCTL" hash $k --json | jq -r .hash)
	[[ $h > $CLO || $h == "$CLO" ]] && [[ $h < $CHI || $h == "$CHI" ]] && { DK=$k; break; }
done
t_like "d: a fresh key in $CLO..$CHI" "$DK" "^[0-9]+$"
src=$(owner_of $CLO)
dst=$((1 - src))
kill -STOP "$R2_PID"
t0=$(date +%s%N)
run_ctl move $CLO --to $dst --freeze-timeout 15000
t_is "d: with the second router stopped, the move finishes" "$RC" 0
[ "$RC" = 0 ] || t_diag "$(tail -n 6 <<<"$ERR")"
t_diag "d: move took $(ms_since "$t0") ms; $(grep -o 'freeze: acknowledged.*' <<<"$ERR")"
kill -CONT "$R2_PID"
ok=0 refused=0 other=0
for ((n = 0; n < 30; n++)); do
	out=$(app2 "INSERT INTO orders (order_id, status) VALUES ($DK, 'r2-$n')
		ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status")
	rc=$?
	if [ "$rc" = 0 ]; then ok=$((ok + 1))
	elif [[ $out =~ 25006 ]]; then refused=$((refused + 1))
	else other=$((other + 1)); t_diag "d: write $n: $out"
	fi
	sleep 0.1
done
t_diag "d: after SIGCONT: $ok writes succeeded, $refused refused with 25006"
t_is "d: every write through the second router succeeded or was refused with 25006" "$other" 0
t_is "d: nothing landed on the old owner (shard $src)" \
	"$(psql_at "$(port_of "$src")" shop "SELECT count(*) FROM orders WHERE order_id = $DK")" 0
t_is "d: after reloading the map it writes to the new owner (shard $dst)" \
	"$(psql_at "$(port_of "$dst")" shop "SELECT status FROM orders WHERE order_id = $DK")" "r2-29"
kill -TERM "$R2_PID"
wait "$R2_PID" 2>/dev/null
R2_PID=
run_ctl verify
t_is "d: shardctl verify exits 0" "$RC" 0
t_ok "router 1 still running" kill -0 "$ROUTER_PID"
t_done
