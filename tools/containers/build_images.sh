#!/usr/bin/env bash
# Builds the project's images with podman from the Dockerfile, unchanged, on the local base image
# (tools/containers/base_image.sh), plus the Redis image the compose stack uses here
# (tools/containers/redis.Containerfile). Targets: evaluator, game, and pilot once the Dockerfile
# has that stage. Prints one timing line per step and the image sizes. Podman caches layers: a
# rebuild with unchanged inputs takes seconds.
#
#   tools/containers/build_images.sh          # tags localhost/rallyrobopilot-<target>:${RRP_IMAGE_TAG:-0.1.0}
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/containers/lib.sh
TAG="${RRP_IMAGE_TAG:-0.1.0}"
REDIS_IMAGE="${RRP_REDIS_IMAGE:-localhost/rrp-redis:7.0-bookworm}"

start="$(now)"
base="$(tools/containers/base_image.sh)"
printf 'timing: %-24s %6s s  (%s)\n' "base image" "$(since "$start")" "$base"

targets=(evaluator game)
if grep -qiE '^FROM[[:space:]].*[[:space:]]AS[[:space:]]+pilot[[:space:]]*$' Dockerfile; then
    targets+=(pilot)
fi
for target in "${targets[@]}"; do
    # docker format keeps the Dockerfile's HEALTHCHECK (the OCI format has no field for it)
    timed "build $target" podman build --format docker --build-arg "PYTHON_IMAGE=$base" \
        --target "$target" -t "localhost/rallyrobopilot-$target:$TAG" .
done
timed "build redis" podman build --format docker --build-arg "BASE_IMAGE=$base" \
    -f tools/containers/redis.Containerfile -t "$REDIS_IMAGE" tools/containers

for image in "${targets[@]/#/localhost/rallyrobopilot-}"; do
    echo "image: $image:$TAG $(image_size "$image:$TAG")"
done
echo "image: $REDIS_IMAGE $(image_size "$REDIS_IMAGE")"
echo "image: $base $(image_size "$base")"
