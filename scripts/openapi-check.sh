#!/usr/bin/env bash
# Checks that warmpool's OpenAPI document is usable by the tools that read such
# documents: it passes openapi-spec-validator, and a Python client generated
# from it by openapi-python-client imports and makes a claim against a running
# warmpool (both from PyPI).
#
#   scripts/openapi-check.sh [BINARY]      (default target/release/warmpool)
#
# It starts BINARY with `serve` (process runtime, tokens set, one warm container)
# on a free loopback port with a temp data dir, checks the document that server
# serves, generates the client into the same temp dir (never into the tree), and
# stops the server afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/warmpool}"
[ -x "$bin" ] || { echo "no warmpool binary at $bin (cargo build --release -p warmpool)" >&2; exit 2; }
for tool in openapi-spec-validator openapi-python-client; do
    command -v "$tool" >/dev/null || {
        echo "$tool is not installed: pip install openapi-spec-validator openapi-python-client" >&2
        exit 2
    }
done
tmp="$(mktemp -d)"
api="openapi-check-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
out="$tmp/stdout"
WARMPOOL_LISTEN=127.0.0.1:0 WARMPOOL_DATA_DIR="$tmp/data" WARMPOOL_RUNTIME=process \
    WARMPOOL_API_TOKEN="$api" POOL_TARGET_INSTANCES=1 \
    "$bin" serve >"$out" 2>"$tmp/stderr" &
pid=$!
stop() {
    # SIGTERM: warmpool stops its containers before it exits.
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap stop EXIT
url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/^warmpool listening on //p' "$out")"
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$url" ] || { echo "warmpool did not start" >&2; cat "$tmp/stderr" >&2; exit 1; }

python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "$url/openapi.json" >"$tmp/openapi.json"
openapi-spec-validator "$tmp/openapi.json"

# Warnings about parts it cannot type (OpenMetrics text, the admin
# pass-through's `*/*` bodies) are expected; the claim path must be there.
openapi-python-client generate --path "$tmp/openapi.json" --output-path "$tmp/client" >"$tmp/generate.log" 2>&1 ||
    { cat "$tmp/generate.log" >&2; exit 1; }

PYTHONPATH="$tmp/client" python3 - "$url" "$api" <<'EOF'
import sys

from warmpool_client import AuthenticatedClient
from warmpool_client.api.claim import claim
from warmpool_client.api.manage import get_container
from warmpool_client.models import ClaimRequest, ClaimResponse, ContainerView

url, token = sys.argv[1], sys.argv[2]
with AuthenticatedClient(base_url=url, token=token, timeout=30.0) as client:
    r = claim.sync_detailed(client=client, body=ClaimRequest(pool="default"))
    assert r.status_code == 200, (r.status_code, r.content)
    assert isinstance(r.parsed, ClaimResponse), r.parsed
    c = get_container.sync(client=client, id=r.parsed.id)
    assert isinstance(c, ContainerView), c
    assert c.state == "allocated", c.state
    print(f"generated client: claimed {c.id} ({c.state}, warm: {r.parsed.warm})")
EOF
echo "the OpenAPI document is valid, and a client generated from it claims" >&2
