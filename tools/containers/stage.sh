#!/usr/bin/env bash
# The container stage: builds the real images with podman and runs docker-compose.yml with
# podman-compose (2 evaluators, Redis, the headless game, a short GA), then checks that
#   1. the GA across the evaluator containers writes a best.json byte-identical to the local
#      executor's run of the same configuration (same image, `--workers 2`, no HTTP);
#   2. the game's camera frames reach the Redis stream, and its published port answers;
#   3. every container runs as non-root on a read-only root filesystem;
# and tears its own stack down (a compose project named for this run: two stages on one host leave
# each other alone), also on failure. A container that exits, restarts or never turns healthy fails
# the stage with its log. Needs root (rootful podman) and podman-compose on PATH.
#
#   tools/containers/stage.sh     # RRP_GA_GENERATIONS=3 RRP_GA_POPULATION=32 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/containers/lib.sh

fail() { echo "container stage FAILED: $*" >&2; exit 1; }
for tool in podman podman-compose debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool not found (docs/deploy.md: \"built and run with podman\")"
done
[ "$(id -u)" = 0 ] || fail "needs root: the stage runs rootful podman"

# a project of its own: a second stage on this host neither sees nor tears down this one's stack
PROJECT="$(stage_project)"
echo "container stage: compose project $PROJECT"
HEALTH_TIMEOUT="${RRP_STAGE_HEALTH_TIMEOUT:-300}"
GA_TIMEOUT="${RRP_STAGE_GA_TIMEOUT:-900}"
export RRP_EVALUATOR_REPLICAS=2
export RRP_GA_GENERATIONS="${RRP_GA_GENERATIONS:-3}" RRP_GA_POPULATION="${RRP_GA_POPULATION:-32}"
export RRP_IMAGE_TAG="${RRP_IMAGE_TAG:-0.1.0}"
# the stack's Redis requires a password (a new one per run unless given)
export RRP_REDIS_PASSWORD="${RRP_REDIS_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}"
# the game's published port: a free one, so the stage never collides with a running game
RRP_GAME_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export RRP_GAME_PORT
compose=(podman-compose -p "$PROJECT" "${STAGE_FILES[@]}")
work="$(mktemp -d)"

containers() { stage_containers "$PROJECT"; }
teardown() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
            --format '{{.Names}}  {{.Status}}' >&2 || true
    fi
    stage_down "$PROJECT"
    rm -rf "$work"
    exit "$rc"
}
trap teardown EXIT
stage_start="$(now)"
echo "container stage: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

tools/containers/build_images.sh

# --- the stack without the GA, until every container's own healthcheck passes ------------------
up_start="$(now)"
timed "compose up" "${compose[@]}" up -d --no-build redis game evaluator
# Podman runs healthchecks from systemd timers; without systemd they are run here, and
# podman-compose < podman 4.6 cannot wait for `service_healthy`: the stage waits instead.
deadline=$((SECONDS + HEALTH_TIMEOUT))
while :; do
    pending=()
    for c in $(containers); do
        read -r state restarts < <(podman inspect --format '{{.State.Status}} {{.RestartCount}}' "$c")
        if [ "$state" != running ] || [ "$restarts" != 0 ]; then
            podman logs --tail 30 "$c" >&2 || true
            fail "$c cannot start (state $state, $restarts restarts)"
        fi
        podman healthcheck run "$c" >/dev/null 2>&1 || pending+=("$c")
    done
    [ "${#pending[@]}" = 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] || fail "not healthy after ${HEALTH_TIMEOUT}s: ${pending[*]}"
    sleep 2
done
printf 'timing: %-24s %6s s  (%s)\n' "stack healthy" "$(since "$up_start")" "$(containers | tr '\n' ' ')"

# --- the GA across the two evaluator containers ---------------------------------------------------
ga_start="$(now)"
"${compose[@]}" up -d --no-build --no-deps ga >/dev/null 2>&1 || fail "the ga container cannot be created"
ga="$(containers | grep '_ga_')"
ga_rc="$(timeout "$GA_TIMEOUT" podman wait "$ga")" || fail "the GA did not finish within ${GA_TIMEOUT}s"
podman logs "$ga" 2>&1 | sed 's/^/  ga: /'
[ "$ga_rc" = 0 ] || { podman logs --tail 30 "$ga" >&2; fail "the GA exited with $ga_rc"; }
printf 'timing: %-24s %6s s\n' "GA done" "$(since "$ga_start")"
printf 'timing: %-24s %6s s\n' "compose up to GA done" "$(since "$up_start")"
podman cp "$ga:/runs/compose/best.json" "$work/compose.json"

# --- check 1: the same configuration on the local executor, in the same image ---------------------
local_start="$(now)"
podman run --rm --no-healthcheck --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges:true \
    "localhost/rallyrobopilot-evaluator:$RRP_IMAGE_TAG" sh -c \
    "python -m ga.run --generations $RRP_GA_GENERATIONS --population $RRP_GA_POPULATION --seed 0 \
     --workers 2 --out /tmp/local >/dev/null && cat /tmp/local/best.json" >"$work/local.json" \
    || fail "the local-executor run failed"
printf 'timing: %-24s %6s s\n' "local executor run" "$(since "$local_start")"
cmp "$work/compose.json" "$work/local.json" >&2 \
    || fail "best.json differs between the evaluator containers and the local executor"
echo "check: best.json from the compose GA == local executor's, byte for byte" \
     "(sha256 $(sha256sum <"$work/compose.json" | cut -c1-16), $(wc -c <"$work/compose.json") bytes)"

# --- check 2: frames in Redis, the game reachable from the host ----------------------------------------------------------------------
redis="$(containers | grep '_redis_')"
frames=0
for key in $(podman exec "$redis" redis-cli --scan --pattern '*:frames:*'); do
    frames=$((frames + $(podman exec "$redis" redis-cli xlen "$key")))
done
[ "$frames" -gt 0 ] || fail "no camera frames in Redis"
echo "check: $frames camera frames in Redis"
noauth="$(podman exec "$redis" sh -c 'unset REDISCLI_AUTH; redis-cli ping' 2>&1 || true)"
case "$noauth" in
    *NOAUTH*) echo "check: Redis refuses a client without the password ($noauth)" ;;
    *) fail "Redis answers a client without the password: $noauth" ;;
esac
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" \
    "http://127.0.0.1:$RRP_GAME_PORT/healthz" >"$work/game.json" || fail "the game's published port does not answer"
echo "check: the game answers on its published port $RRP_GAME_PORT: $(cat "$work/game.json")"
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" \
    "http://127.0.0.1:$RRP_GAME_PORT/metrics" >"$work/game.metrics" || fail "the game's /metrics does not answer"
# where dropped frames went: skipped while catching up with real time / queue full, or Redis unavailable
echo "note: $(grep -E '^rrp_(recorder_frames_dropped_(full|redis)|game_frames_late)_total' "$work/game.metrics" | tr '\n' ' ')"

# --- check 3: non-root on a read-only root, seen from inside each container --------------------------
for c in $(containers); do
    [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" = true ] || fail "$c: root filesystem is writable"
    [ "$c" = "$ga" ] && continue   # exited; its user and root are the evaluator's, checked below
    uid="$(podman exec "$c" id -u)"
    [ "$uid" != 0 ] || fail "$c runs as root"
    ! podman exec "$c" sh -c 'touch /probe || touch "$HOME/probe"' 2>/dev/null || fail "$c could write to its root filesystem"
    echo "check: $c runs as uid $uid, root filesystem read-only"
done
[ "$(podman inspect --format '{{.Config.User}}' "$ga")" = 10001:10001 ] || fail "$ga is not configured to run as 10001"

printf 'timing: %-24s %6s s\n' "container stage" "$(since "$stage_start")"
echo "container stage passed (load average $(cut -d' ' -f1-3 /proc/loadavg))"
