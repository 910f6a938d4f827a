#!/usr/bin/env bash
# Builds warmpool itself (crates/server, with every runtime) as a fully static
# binary and packs it into a `FROM scratch` image, the same way as the sample app
# (scripts/build-sample-image.sh): nothing is pulled. For deploy/kubernetes/.
#
# Usage: scripts/build-image.sh [TAG]   (default: warmpool/warmpool:latest)
#   then, e.g.: kind load docker-image warmpool/warmpool:latest
set -euo pipefail

tag="${1:-warmpool/warmpool:latest}"
target=x86_64-unknown-linux-gnu
cd "$(dirname "$0")/.."

echo "==> building static warmpool"
RUSTFLAGS='-C target-feature=+crt-static' \
CARGO_PROFILE_RELEASE_DEBUG=0 \
CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release -p warmpool --bin warmpool \
        --target "$target" --target-dir target/static
bin="target/static/$target/release/warmpool"

# A scratch image has no libc or loader: refuse anything dynamically linked.
if ! file -L "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "error: $bin is not statically linked:" >&2
    file -L "$bin" >&2
    ldd "$bin" >&2 || true
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/warmpool"
mkdir "$context/data"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
LABEL org.opencontainers.image.title="warmpool"
COPY warmpool /warmpool
# The SQLite store (mount a volume here); owned by the unprivileged user.
COPY --chown=65532:65532 data /data
USER 65532:65532
ENV WARMPOOL_DATA_DIR=/data
EXPOSE 8787
ENTRYPOINT ["/warmpool"]
CMD ["serve"]
DOCKERFILE

echo "==> building image $tag"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context"

size="$(docker image inspect -f '{{.Size}}' "$tag")"
awk -v tag="$tag" -v size="$size" \
    'BEGIN { printf "==> built %s: %d bytes (%.2f MiB)\n", tag, size, size / 1048576 }'
