#!/usr/bin/env bash
# Measures, on this machine, what warmpool adds over the Docker Engine itself:
#   - create-to-ready time of one container (median over the pool's containers),
#   - time to fill a pool of N containers (batch 10, no spacing) with warmpool,
#     versus the same N `docker run`s by a plain shell loop (one at a time, and 10
#     at a time like warmpool's batches), each waited for until its app answers;
#     runs are interleaved and repeated, medians reported.
# Needs a running Docker Engine and the sample image (scripts/build-sample-image.sh).
#
# Usage: scripts/bench-docker-fill.sh [N=50] [RUNS=3]
set -euo pipefail
n="${1:-50}"
runs="${2:-3}"
image=warmpool/sample-app:latest
network=warmpool-bench
port=18790
cd "$(dirname "$0")/.."

cargo build --release -q -p warmpool
bin=target/release/warmpool
docker image inspect "$image" >/dev/null
docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# N `docker run`s from a shell loop, $1 at a time, then wait until every app answers.
raw_fill() {
    local start ids ip
    start=$(now)
    mapfile -t ids < <(seq "$n" | xargs -P "$1" -I{} docker run -d --label warmpool-bench=1 \
        --network "$network" --cpus 0.25 --memory 256m --memory-swap 256m --pids-limit 256 "$image")
    for id in "${ids[@]}"; do
        ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$id")
        until curl -sf -o /dev/null --max-time 1 "http://$ip:8080/healthz"; do sleep 0.01; done
    done
    echo "$(now) - $start" | bc
    docker rm -f "${ids[@]}" >/dev/null
}

# warmpool fills a pool of $1 (batch 10, no spacing), from start-up to all ready;
# prints the seconds it took, and the create-to-ready ms of each container on fd 3.
warmpool_fill() {
    local dir start took pid
    dir=$(mktemp -d)
    start=$(now)
    WARMPOOL_RUNTIME=docker WARMPOOL_DOCKER_NETWORK="$network" WARMPOOL_DATA_DIR="$dir" \
        WARMPOOL_LISTEN="127.0.0.1:$port" POOL_TARGET_INSTANCES="$1" POOL_BATCH_SIZE=10 \
        POOL_BATCH_SPACING_IN_SECONDS=0 RUST_LOG=error "$bin" serve >/dev/null &
    pid=$!
    "$bin" --url "http://127.0.0.1:$port" wait --ready "$1" --timeout 300 2>/dev/null
    took=$(echo "$(now) - $start" | bc)
    "$bin" --url "http://127.0.0.1:$port" --json ls --state ready | python3 -c '
import json, sys, datetime
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for c in json.load(sys.stdin)["containers"]:
    print(round((t(c["readyAt"]) - t(c["createdAt"])) * 1000))' >&3
    kill -TERM "$pid"
    wait "$pid"
    rm -rf "$dir"
    echo "$took"
}

single=$(mktemp)
raw1=() raw10=() pool=()
for r in $(seq "$runs"); do
    raw1+=("$(raw_fill 1)")
    raw10+=("$(raw_fill 10)")
    pool+=("$(warmpool_fill "$n" 3>/dev/null)")
    warmpool_fill 1 3>>"$single" >/dev/null
    echo "run $r: docker loop ${raw1[-1]} s, docker loop x10 ${raw10[-1]} s, warmpool ${pool[-1]} s" >&2
done
med() { printf '%s\n' "$@" | median; }
raw1_med=$(med "${raw1[@]}")
raw10_med=$(med "${raw10[@]}")
pool_med=$(med "${pool[@]}")
printf 'create-to-ready of one container alone (median of %s): %s ms\n' "$runs" "$(median < "$single")"
printf 'fill %s, medians of %s runs: docker run loop %.2f s, docker run loop 10 at a time %.2f s, warmpool (batch 10) %.2f s\n' \
    "$n" "$runs" "$raw1_med" "$raw10_med" "$pool_med"
printf 'warmpool / loop 10 at a time = %.2f, warmpool / loop one at a time = %.2f\n' \
    "$(echo "$pool_med / $raw10_med" | bc -l)" "$(echo "$pool_med / $raw1_med" | bc -l)"
rm -f "$single"
