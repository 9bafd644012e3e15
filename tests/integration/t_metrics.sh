#!/usr/bin/env bash
# t_metrics.sh - the Prometheus endpoint (router/metrics.c, SPEC §4 Metrics) end to
# end against 2 shards x (primary + 1 replica) with metrics_listen set:
#   - GET /metrics answers 200 with the text format 0.0.4 content type, and the
#     body is valid: checked by our own awk rules (every sample line is
#     name{labels} value, every family has # HELP and # TYPE before its samples,
#     histogram buckets are cumulative and end with +Inf equal to _count) and,
#     when promtool is installed, by `promtool check metrics` too; other paths 404;
#   - map epoch, catalog lease, and replica_lag_bytes/seconds series for both
#     replicas are exposed;
#   - after N reads by key on shard 0 (served by its replica, checked through
#     inet_server_port()), queries_total and the latency histogram _count of that
#     replica rose by >= N, and routed_units_total by >= N;
#   - a keyless UPDATE (refused with 0A000) increments
#     routing_errors_total{reason="not_supported"};
#   - no counter (including histogram buckets, _sum, _count) of a later scrape is
#     lower than in an earlier one;
#   - tools/grafana-dashboard.json parses (jq), every metric its queries name is
#     exposed, and (with promtool) every query parses as PromQL.
# Counters are polled for up to 5 s after the client got its answer (the worker
# may count a unit just after relaying its ReadyForQuery); nothing is timed.
# Needs: tests/harness, psql, curl, awk, jq. Binaries: $BUILD/shardrouter, $BUILD/shardctl.
set -u
. "$(dirname "$0")/../harness/lib.sh"
. "$SR_ROOT/tests/harness/shop.sh"

CTL=$BUILD/shardctl
need_binaries "$BUILD/shardrouter" "$CTL"

cluster_up 2 1
T=$(mktemp -d "${TMPDIR:-/tmp}/t_metrics.XXXXXX")
shop_trap 'rm -rf "$T"'

shop_setup 2 || t_bail "shop_setup"
RP=$(free_port) || t_bail "found a free port"
MP=$(free_port "$RP") || t_bail "found a free port"
router_start "$RP" "metrics_listen = 127.0.0.1:$MP" "health_check_interval_ms = 300" ||
	t_bail "router starts on port $RP with metrics on $MP"
t_ok "router starts with metrics_listen = 127.0.0.1:$MP" kill -0 "$ROUTER_PID"
URL=http://127.0.0.1:$MP/metrics
P0=$SHARD0_PRIMARY_PORT R0=$SHARD0_REPLICA1_PORT R1=$SHARD1_REPLICA1_PORT

rq() {
	PGPASSWORD=app PGCONNECT_TIMEOUT=10 psql -X -A -t -q -v VERBOSITY=verbose \
		-h 127.0.0.1 -p "$RP" -U app -d shop "$@" 2>&1
}
# scrape FILE: the body of GET /metrics into FILE.
scrape() { curl -sf --max-time 10 -o "$1" "$URL"; }
# val FILE SERIES: the value of the sample whose name{labels} is exactly SERIES.
val() {
	awk -v s="$2" '{ i = index($0, " "); if (substr($0, 1, i - 1) == s) { print substr($0, i + 1); exit } }' "$1"
}
labels() { # shard replica port -> the label set of a replica (or primary when replica 0)
	local role=replica
	[ "$2" = 0 ] && role=primary
	printf 'shard="%s",role="%s",replica="%s",backend="127.0.0.1:%s"' "$1" "$role" "$2" "$3"
}

# check_format FILE: our own checks of the text format; prints what is wrong.
cat >"$T/check.awk" <<'EOF'
function fail(msg) { print "line " NR ": " msg ": " $0; bad = 1 }
/^# HELP / { help[$3] = 1; next }
/^# TYPE / {
	if (!($3 in help)) fail("TYPE before HELP")
	if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) fail("unknown type")
	if ($3 in type) fail("family declared twice")
	type[$3] = $4; next
}
/^#/ { next }
/^$/ { fail("empty line"); next }
{
	if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? [-+]?([0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|Inf|NaN)$/) {
		fail("not name{labels} value"); next
	}
	name = $0; sub(/[{ ].*/, "", name)
	fam = name
	if (!(fam in type)) { f2 = fam; sub(/_(bucket|sum|count)$/, "", f2); if (type[f2] == "histogram") fam = f2 }
	if (!(fam in type)) { fail("sample without # TYPE"); next }
	if (fam != cur) { if (fam in done) fail("samples of " fam " not together"); done[cur] = 1; cur = fam }
	if (type[fam] == "counter" && name !~ /_total$/) fail("counter not named _total")
	if (type[fam] != "histogram") next
	v = $NF + 0
	ls = $0; sub(/^[^{]*\{/, "", ls); sub(/\} [^ ]*$/, "", ls)
	if (name ~ /_bucket$/) {
		le = ls; sub(/.*le="/, "", le); sub(/".*/, "", le)
		key = ls; sub(/,?le="[^"]*"$/, "", key)
		if ((key in last) && v < last[key]) fail("bucket not cumulative")
		last[key] = v; lastle[key] = le
	} else if (name ~ /_count$/) {
		if (lastle[ls] != "+Inf") fail("buckets do not end with +Inf")
		if (v != last[ls]) fail("_count differs from the +Inf bucket")
		counted[ls] = 1
	}
}
END {
	for (k in last) if (!(k in counted)) { print "histogram without _count: " k; bad = 1 }
	exit bad
}
EOF
check_format() { awk -f "$T/check.awk" "$1"; }

# --- the endpoint ---
code=$(curl -s --max-time 10 -o "$T/m1" -D "$T/h1" -w '%{http_code}' "$URL")
t_is "GET /metrics answers 200" "$code" 200
t_like "Content-Type is the text format 0.0.4" "$(tr -d '\r' <"$T/h1" | grep -i '^content-type:')" \
	'text/plain; version=0.0.4'
t_ok "the exposition passes the format checks (HELP/TYPE, sample syntax, histograms)" \
	check_format "$T/m1"
if command -v promtool >/dev/null 2>&1; then
	t_ok "promtool check metrics accepts it" promtool check metrics <"$T/m1"
else
	t_diag "promtool not installed: only our own format checks ran"
fi
t_is "GET /other answers 404" "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/other")" 404
t_like "map epoch is exposed and > 0" "$(val "$T/m1" shardrouter_map_epoch)" '^[1-9][0-9]*$'
t_is "catalog lease is held" "$(val "$T/m1" shardrouter_catalog_lease_ok)" 1
for s in "0 $R0" "1 $R1"; do
	set -- $s
	t_like "replica_lag_bytes for shard $1 replica 1" \
		"$(val "$T/m1" "shardrouter_replica_lag_bytes{$(labels "$1" 1 "$2")}")" '^-?[0-9]+$'
	t_like "replica_lag_seconds for shard $1 replica 1" \
		"$(val "$T/m1" "shardrouter_replica_lag_seconds{$(labels "$1" 1 "$2")}")" '^-?[0-9]+(\.[0-9]+)?$'
done
t_is "no lag series for primaries" "$(grep -c '^shardrouter_replica_lag_bytes{[^}]*role="primary"' "$T/m1")" 0

# --- reads by key on shard 0 count on its replica ---
K=
for ((k = 1; k <= 200; k++)); do
	if [ "$("$CTL" hash "$k" --json | sed -n 's/.*"shard":\([0-9][0-9]*\).*/\1/p')" = 0 ]; then
		K=$k
		break
	fi
done
[ -n "$K" ] || { t_ok "found a key owned by shard 0" false; t_done; }
RL=$(labels 0 1 "$R0")
in_rotation() { scrape "$T/rot" && [ "$(val "$T/rot" "shardrouter_backend_in_rotation{$RL}")" = 1 ]; }
wait_until 15 in_rotation || t_diag "shard 0's replica is not in rotation; the reads may go to the primary"
N=20
scrape "$T/before" || { t_ok "scrape before the reads" false; t_done; }
q0=$(val "$T/before" "shardrouter_queries_total{$RL}")
c0=$(val "$T/before" "shardrouter_query_duration_seconds_count{$RL}")
u0=$(val "$T/before" shardrouter_routed_units_total)
for ((i = 0; i < N; i++)); do
	echo "SELECT inet_server_port(), count(*) FROM orders WHERE order_id = $K;"
done >"$T/reads.sql"
out=$(rq -f "$T/reads.sql")
t_is "the $N reads by key all ran on shard 0's replica" \
	"$(printf '%s\n' "$out" | grep -c "^$R0|")" "$N"
rose() { # file series base n: scrape into file, series >= base + n
	scrape "$1" && awk -v v="$(val "$1" "$2")" -v b="$3" -v n="$4" 'BEGIN { exit !(v != "" && v >= b + n) }'
}
t_ok "queries_total of the replica rose by >= $N (was $q0)" \
	wait_until 5 rose "$T/after" "shardrouter_queries_total{$RL}" "$q0" "$N"
t_ok "query_duration_seconds_count of the replica rose by >= $N (was $c0)" \
	wait_until 5 rose "$T/after" "shardrouter_query_duration_seconds_count{$RL}" "$c0" "$N"
t_ok "routed_units_total rose by >= $N (was $u0)" \
	wait_until 5 rose "$T/after" shardrouter_routed_units_total "$u0" "$N"
t_diag "replica queries_total $q0 -> $(val "$T/after" "shardrouter_queries_total{$RL}"), _sum $(val "$T/after" "shardrouter_query_duration_seconds_sum{$RL}") s"
t_ok "the exposition after load passes the format checks" check_format "$T/after"

# --- a routing error ---
NS='shardrouter_routing_errors_total{reason="not_supported"}'
e0=$(val "$T/after" "$NS")
out=$(rq -c "UPDATE orders SET status = 'x'")
t_like "keyless UPDATE is refused with 0A000" "$out" "0A000"
t_ok "routing_errors_total{reason=\"not_supported\"} rose by >= 1 (was $e0)" \
	wait_until 5 rose "$T/err" "$NS" "$e0" 1

# --- counters never go down ---
scrape "$T/m2" || t_ok "a last scrape" false
# counter_samples FILE: "series value" for every sample of a counter or histogram.
counter_samples() {
	awk '/^# TYPE / { t[$3] = $4; next } /^#/ { next }
		{ n = $0; sub(/[{ ].*/, "", n); f = n; sub(/_(bucket|sum|count)$/, "", f)
		  if (t[n] == "counter" || t[f] == "histogram") { i = index($0, " "); print substr($0, 1, i - 1), substr($0, i + 1) } }' "$1"
}
counter_samples "$T/m1" | sort >"$T/c1"
counter_samples "$T/m2" | sort >"$T/c2"
lower=$(join "$T/c1" "$T/c2" | awk '$3 + 0 < $2 + 0')
t_is "no counter of the last scrape is lower than in the first" "$lower" ""
t_like "the scrapes compared some counters" "$(join "$T/c1" "$T/c2" | wc -l)" '^ *[1-9][0-9]+$'

# --- the Grafana dashboard (tools/grafana-dashboard.json) ---
DASH=$SR_ROOT/tools/grafana-dashboard.json
t_ok "the Grafana dashboard is valid JSON with panels and a datasource variable" \
	jq -e '(.panels | length) > 0 and any(.templating.list[]; .type == "datasource")' "$DASH"
# every metric a dashboard query names is one the router exposes
missing=$(jq -r '.panels[].targets[]?.expr' "$DASH" | grep -o 'shardrouter_[a-z_]*' | sort -u |
	while read -r m; do
		grep -qE "^$m(\{| )" "$T/m2" || echo "$m"
	done)
t_is "every metric the dashboard queries is exposed" "$missing" ""
if command -v promtool >/dev/null 2>&1; then
	{
		echo "groups:"
		echo "- name: dashboard"
		echo "  rules:"
		jq -r '.panels[].targets[]?.expr' "$DASH" | sed -e 's/\$__rate_interval/1m/g' \
			-e 's/\$instance/.*/g' | awk '{ gsub(/\x27/, "\x27\x27"); printf "  - record: dashboard:q%d\n    expr: \x27%s\x27\n", NR, $0 }'
	} >"$T/rules.yml"
	t_ok "promtool parses every dashboard query" promtool check rules "$T/rules.yml"
fi
t_done
