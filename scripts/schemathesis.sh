#!/usr/bin/env bash
# Runs schemathesis (PyPI) against warmpool's own OpenAPI document, every route:
# no 5xx, no answer that violates the document (status, content type, schema,
# headers), no request it calls invalid accepted, auth enforced. Two checks are
# left out, for answers that are right but that a schema cannot express: a
# well-formed id of a container that has ended answers 410, and a claim above its
# pool's lifetime 422 (`positive_data_acceptance`); the proxy passes the app's own
# `Allow` header through (`allow_header_conformance`). The long-polling
# `GET /v1/events?wait=` may rightly take up to 60 s.
#
#   scripts/schemathesis.sh [SECONDS]       (default 60; needs `pip install schemathesis`)
#
# It starts its own warmpool (release build, process runtime, tokens set, claims
# living 2 s so that the slots are not all taken: a 503 at capacity is by design) on a free
# loopback port with a temp data dir, and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v st >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 2; }
cargo build --release -q -p warmpool
data="$(mktemp -d)"
admin="schemathesis-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
api="schemathesis-api-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
out="$data/stdout"
WARMPOOL_LISTEN=127.0.0.1:0 WARMPOOL_DATA_DIR="$data" \
    WARMPOOL_API_TOKEN="$api" WARMPOOL_ADMIN_TOKEN="$admin" \
    POOL_TARGET_INSTANCES=3 POOL_BATCH_SPACING_IN_SECONDS=0 WARMPOOL_MAX_INSTANCES=60 \
    WARMPOOL_MAX_LIFETIME_SECONDS=2 \
    WARMPOOL_CLAIM_TIMEOUT_SECONDS=5 WARMPOOL_LOG_FORMAT=json \
    target/release/warmpool serve >"$out" 2>"$data/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    url="$(sed -n 's/^warmpool listening on //p' "$out")"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "warmpool did not start" >&2; cat "$data/stderr" >&2; exit 1; }
echo "schemathesis against $url for ${seconds}s" >&2
st run "$url/openapi.json" \
    -H "Authorization: Bearer $admin" \
    --checks all \
    --exclude-checks positive_data_acceptance,allow_header_conformance \
    --phases examples,fuzzing \
    --max-time "$seconds" \
    --request-timeout 70 \
    --max-response-time 65 \
    --workers 2 \
    --warnings off
