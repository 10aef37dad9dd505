# Shared by the container scripts (sourced): podman settings and step timing.
# shellcheck shell=bash
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# timed LABEL COMMAND...: runs COMMAND with its output in a log that is shown only when it fails,
# then prints "timing: LABEL N s".
timed() {
    local label="$1" log start rc=0
    shift
    log="$(mktemp)"
    start="$(now)"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        tail -40 "$log" >&2
        rm -f "$log"
        echo "$label failed (exit $rc)" >&2
        return "$rc"
    fi
    rm -f "$log"
    printf 'timing: %-24s %6s s\n' "$label" "$(since "$start")"
}

image_size() { podman image inspect --format '{{.Size}}' "$1" | numfmt --to=si --suffix=B; }

# --- the container stage's own compose project (stage.sh) ---------------------------------------------
# Every run has a project name of its own, so two stages on one host never share containers, network
# or volume, and a run tears down only what it started (never "whatever is called rrp-stage").

STAGE_FILES=(-f docker-compose.yml -f tools/containers/compose.podman.yml)

# stage_project: a new compose project name, rrp-stage-PID-RANDOM (lower case, digits, dashes: a valid
# compose project name); RRP_STAGE_PROJECT, when set, is used as given.
stage_project() {
    if [ -n "${RRP_STAGE_PROJECT:-}" ]; then
        printf '%s\n' "$RRP_STAGE_PROJECT"
    else
        printf 'rrp-stage-%s-%s\n' "$$" "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    fi
}

# stage_containers PROJECT: the names of PROJECT's containers, and nobody else's.
stage_containers() {
    podman ps -a --filter "label=io.podman.compose.project=$1" --format '{{.Names}}' | sort
}

# stage_down PROJECT: remove PROJECT's containers, network and volume; say if any of its containers stay.
stage_down() {
    local left
    podman-compose -p "$1" "${STAGE_FILES[@]}" down -v -t 5 >/dev/null 2>&1 || true
    left="$(stage_containers "$1" 2>/dev/null || true)"
    [ -z "$left" ] || echo "container stage: containers of $1 left behind: $(echo "$left" | tr '\n' ' ')" >&2
}
