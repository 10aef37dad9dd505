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
