#!/usr/bin/env bash
# Checks the monitoring assets (issue 18) against a real warmpool:
#
#   1. `promtool check rules` on deploy/prometheus/alerts.yaml;
#   2. `promtool test rules` on deploy/prometheus/alerts_test.yaml (synthetic series);
#   3. deploy/grafana/warmpool.json is JSON, and its PromQL parses (promtool,
#      with Grafana's variables replaced);
#   4. starts BIN (process runtime, 2 ready containers), claims a container,
#      makes one proxied request, scrapes GET /metrics, and fails naming every
#      metric the dashboard or the rules use that /metrics does not have;
#   5. `promtool check metrics` lints that scrape (the classic text format,
#      which /metrics answers when the scraper does not ask for OpenMetrics).
#
# Usage: scripts/check-monitoring.sh BIN   (e.g. target/release/warmpool)
# Needs promtool (Debian's `prometheus` package), python3 (with PyYAML, else a
# plain text scan of the rules is used) and curl.
set -euo pipefail

die() {
    echo "check-monitoring: FAIL: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 BIN"
BIN=$(realpath "$1") || die "no such binary: $1"
[ -x "$BIN" ] || die "not an executable: $BIN"
cd "$(dirname "$0")/.."

RULES=deploy/prometheus/alerts.yaml
RULE_TESTS=deploy/prometheus/alerts_test.yaml
DASHBOARD=deploy/grafana/warmpool.json
for f in "$RULES" "$RULE_TESTS" "$DASHBOARD"; do
    [ -f "$f" ] || die "missing $f"
done
for tool in promtool python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (promtool: apt-get install prometheus)"
done

WORK=$(mktemp -d /tmp/warmpool-check-monitoring.XXXXXX)
SERVER_PID=
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "check-monitoring: warmpool ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
        echo "check-monitoring: warmpool's log (last 30 lines):" >&2
        tail -n 30 "$WORK/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== promtool check rules $RULES"
promtool check rules "$RULES" || die "promtool check rules $RULES"

echo "== promtool test rules $RULE_TESTS"
promtool test rules "$RULE_TESTS" || die "promtool test rules $RULE_TESTS"

echo "== $DASHBOARD is JSON"
python3 -m json.tool "$DASHBOARD" >/dev/null || die "$DASHBOARD is not valid JSON"

# The metric names used by the dashboard and the rules, and the dashboard's
# expressions as recording rules (Grafana's variables replaced) so that promtool
# parses them.
python3 - "$DASHBOARD" "$RULES" "$WORK/names" "$WORK/dashboard-rules.yaml" <<'EOF'
import json, re, sys

dashboard, rules, names_out, dash_rules_out = sys.argv[1:5]

def strip_promql(expr):
    # String literals (label values, regexes) and comments are not metric names.
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    return re.sub(r'#[^\n]*', '', expr)

TOKEN = re.compile(r'(?<![A-Za-z0-9_:$])warmpool_[A-Za-z0-9_:]*')

def names_in(expr):
    return set(TOKEN.findall(strip_promql(expr)))

# Dashboard: every target's expr, and the template variables' queries.
with open(dashboard) as f:
    dash = json.load(f)
exprs = []
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            exprs.append(node["expr"])
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)
walk(dash.get("panels", []))
var_queries = []
for var in dash.get("templating", {}).get("list", []):
    if var.get("type") != "query":
        continue
    q = var.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    for text in (q, var.get("definition", "")):
        if text:
            var_queries.append(text)
if not exprs:
    sys.exit(f"no PromQL expression found in {dashboard}")
dash_names = set()
for e in exprs + var_queries:
    dash_names |= names_in(e)

# Rules: every rule's expr (PyYAML if there, else the whole file's text, which
# is stricter: annotations that name a metric are checked too).
rule_names = set()
try:
    import yaml
    with open(rules) as f:
        doc = yaml.safe_load(f)
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            rule_names |= names_in(str(r.get("expr", "")))
except ImportError:
    with open(rules) as f:
        rule_names = names_in(f.read())

for label, found in (("dashboard", dash_names), ("rules", rule_names)):
    if not found:
        sys.exit(f"no warmpool_ metric found in the {label}")
with open(names_out, "w") as f:
    for n in sorted(dash_names | rule_names):
        f.write(n + "\n")

# Grafana's variables -> values PromQL accepts, for promtool to parse each expr.
def plain(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("${__rate_interval}", "5m")
    expr = expr.replace("$__interval", "1m").replace("${__interval}", "1m")
    return re.sub(r'\$\{?[A-Za-z_][A-Za-z0-9_]*\}?', '.*', expr)
with open(dash_rules_out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        f.write(f"      - record: dashboard:expr{i}\n        expr: {json.dumps(plain(e))}\n")
print(f"{len(exprs)} dashboard expressions, {len(var_queries)} variable queries, "
      f"{len(dash_names)} metric names in the dashboard, {len(rule_names)} in the rules")
EOF

echo "== the dashboard's PromQL parses"
promtool check rules "$WORK/dashboard-rules.yaml" >/dev/null \
    || { promtool check rules "$WORK/dashboard-rules.yaml" >&2 || true; die "a dashboard expression does not parse (above)"; }

COUNT=$(wc -l <"$WORK/names")
[ "$COUNT" -ge 5 ] || die "only $COUNT metric names found in the dashboard and the rules (expected at least 5): is the extraction broken?"

echo "== starting $BIN serve"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
mkdir -p "$WORK/data"
env -u WARMPOOL_API_TOKEN -u WARMPOOL_ADMIN_TOKEN -u WARMPOOL_CONFIG -u WARMPOOL_RUNTIME \
    WARMPOOL_LISTEN="127.0.0.1:$PORT" WARMPOOL_DATA_DIR="$WORK/data" POOL_TARGET_INSTANCES=2 \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=
for _ in $(seq 1 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "warmpool exited before it was ready"
    if curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.2
done
[ -n "$ready" ] || die "warmpool not ready on $URL/readyz within 60 s"

echo "== a claim and a proxied request"
CLAIM=$(curl -fsS --max-time 60 -X POST "$URL/container") || die "POST /container failed"
ID=$(printf '%s' "$CLAIM" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') \
    || die "no id in the claim's answer: $CLAIM"
STATUS=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$URL/container/$ID/") \
    || die "GET /container/$ID/ failed"
echo "claimed $ID; proxied GET answered $STATUS"

echo "== GET /metrics"
curl -fsS --max-time 30 "$URL/metrics" >"$WORK/metrics" || die "GET /metrics failed"

echo "== promtool check metrics"
promtool check metrics <"$WORK/metrics" || die "promtool check metrics found problems in GET /metrics"

python3 - "$WORK/names" "$WORK/metrics" <<'EOF'
import re, sys

names_file, metrics_file = sys.argv[1:3]
with open(names_file) as f:
    wanted = [l.strip() for l in f if l.strip()]

types, samples = {}, set()
with open(metrics_file) as f:
    for line in f:
        line = line.strip()
        m = re.match(r'#\s*TYPE\s+(\S+)\s+(\S+)', line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([A-Za-z_:][A-Za-z0-9_:]*)', line)
        if m:
            samples.add(m.group(1))
if not samples:
    sys.exit("check-monitoring: FAIL: GET /metrics has no sample")

def present(name):
    if name in samples:
        return True
    for suffix in ("_bucket", "_sum", "_count", ""):
        if suffix and not name.endswith(suffix):
            continue
        base = name[: len(name) - len(suffix)] if suffix else name
        if types.get(base) == "histogram" or base + "_bucket" in samples:
            return True
    if name.endswith("_total") and types.get(name[: -len("_total")]) == "counter":
        return True
    # A gauge family declared without any series yet (a counter's series are
    # only ever NAME_total, a histogram's NAME_bucket, _sum and _count).
    return types.get(name) in ("gauge", "unknown", "untyped")

missing = [n for n in wanted if not present(n)]
for n in wanted:
    print(("  ok       " if n not in missing else "  MISSING  ") + n)
if missing:
    sys.exit("check-monitoring: FAIL: used by the dashboard or the rules but not in "
             "GET /metrics: " + ", ".join(missing))
print(f"all {len(wanted)} metric names are in GET /metrics")
EOF

echo "check-monitoring: OK"
