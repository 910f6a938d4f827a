#!/usr/bin/env bash
# Builds the warmpool sample app (crates/sample-app) as a fully static binary
# and packs it into a `FROM scratch` Docker image, so no base image is pulled.
#
# Usage: scripts/build-sample-image.sh [TAG]   (default: warmpool/sample-app:latest)
set -euo pipefail

tag="${1:-warmpool/sample-app:latest}"
target=x86_64-unknown-linux-gnu
cd "$(dirname "$0")/.."

# Static glibc build. The explicit --target keeps RUSTFLAGS away from build
# scripts and proc-macros; the separate target dir keeps the main build intact.
echo "==> building static warmpool-sample-app"
RUSTFLAGS='-C target-feature=+crt-static' \
CARGO_PROFILE_RELEASE_DEBUG=0 \
CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release -p warmpool-sample-app \
        --target "$target" --target-dir target/static
bin="target/static/$target/release/warmpool-sample-app"

# A scratch image has no libc or loader: refuse anything dynamically linked.
if ! file -L "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "error: $bin is not statically linked:" >&2
    file -L "$bin" >&2
    ldd "$bin" >&2 || true
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/warmpool-sample-app"
mkdir "$context/empty"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
LABEL org.opencontainers.image.title="warmpool sample app"
COPY warmpool-sample-app /warmpool-sample-app
# It runs as a non-root user (65532, distroless's `nonroot`), which owns the
# directories it writes: its working directory, where it reads and writes
# index.txt, and the claim files' directory (a scratch image has no mkdir, so
# both are copies of an empty directory).
COPY --chown=65532:65532 empty /data
COPY --chown=65532:65532 empty /warmpool/files
WORKDIR /data
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/warmpool-sample-app"]
DOCKERFILE

# The classic builder needs no network or BuildKit for a scratch image.
echo "==> building image $tag"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context"

size="$(docker image inspect -f '{{.Size}}' "$tag")"
awk -v tag="$tag" -v size="$size" \
    'BEGIN { printf "==> built %s: %d bytes (%.2f MiB)\n", tag, size, size / 1048576 }'
