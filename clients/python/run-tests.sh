#!/bin/sh
# Runs the Python client's tests against a real warmpool: run-tests.sh BIN
# (BIN: a warmpool binary, e.g. target/release/warmpool). Installs pytest if
# missing, nothing else; exits non-zero if a test fails.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 WARMPOOL_BINARY" >&2
    exit 2
fi
case "$1" in
    /*) bin=$1 ;;
    *) bin=$(pwd)/$1 ;;
esac
if [ ! -x "$bin" ]; then
    echo "$0: $bin is not an executable warmpool binary" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
if ! "$python" -c 'import pytest' 2>/dev/null; then
    "$python" -m pip install -q pytest
fi
cd "$here"
WARMPOOL_BIN=$bin PYTHONDONTWRITEBYTECODE=1 exec "$python" -m pytest -p no:cacheprovider -q tests
