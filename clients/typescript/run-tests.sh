#!/usr/bin/env bash
# Runs the TypeScript client's tests with Node's own runner (no npm, no
# dependencies): the typings against docs/openapi.json, and the client against a
# real warmpool started from BIN (process runtime, temp data dir, loopback port).
#
#   clients/typescript/run-tests.sh BIN        e.g. target/release/warmpool
#
# Exits non-zero when a test fails. WARMPOOL_REQUIRE_TSC=1 makes the tsc check
# fail rather than skip when tsc (Debian's node-typescript) is not installed.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 WARMPOOL_BINARY" >&2; exit 2; }
bin="$1"
[ -x "$bin" ] && [ -f "$bin" ] || { echo "no warmpool binary at $bin" >&2; exit 2; }
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
command -v node >/dev/null || { echo "node is not installed (Node 18 or later)" >&2; exit 2; }
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 18 ] || { echo "node $major is too old: Node 18 or later" >&2; exit 2; }
cd "$(dirname "$0")"
WARMPOOL_BIN="$bin" exec node --test test/unit.test.js test/typings.test.js test/live.test.js
