#!/usr/bin/env bash
# Launch the INSTALLED app on a virtual X display, time how long its main window takes to appear,
# and take a screenshot once the default model has loaded. A measurement, not a test: prints figures.
#
#   packaging/launch_check.sh [shot.png] [seconds-before-shot]
#   MODEL=mnist-cfg RUN=20 packaging/launch_check.sh shot.png 10
#       opens that model, waits, presses Start (Ctrl+Return), waits RUN s more, then takes the shot
#
# Installs dist/guidance-studio_<version>_<arch>.deb into a fresh root (dpkg -x), then starts its
# /usr/bin/guidance-studio twice with an empty HOME: the first launch reads the files from disk
# right after unpacking (as close to a cold start as a container allows), the second is warm.
# Needs xvfb-run, xdotool and ImageMagick's import (apt-get install xvfb xauth xdotool imagemagick).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHOT="$(realpath -m "${1:-dist/installed-app.png}")"
SETTLE="${2:-10}"
NAME=guidance-studio
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
DEB="dist/${NAME}_${VERSION}_$(dpkg --print-architecture).deb"
for tool in xvfb-run xdotool /usr/bin/import; do
    command -v "$tool" >/dev/null || { echo "launch_check.sh needs $tool" >&2; exit 1; }
done
[[ -f "$DEB" ]] || { echo "No $DEB: run packaging/build.sh first" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$DEB" "$WORK/root"
export APP="$WORK/root/usr/bin/$NAME" WORK SHOT SETTLE MODEL="${MODEL:-}" RUN="${RUN:-0}"

# Runs inside the virtual display: launch, poll for the window every 20 ms, optionally screenshot, quit.
cat > "$WORK/launch.sh" <<'EOF'
set -euo pipefail
launch() {  # $1: label, $2: take a screenshot (1/0)
    rm -rf "$WORK/home"; mkdir -p "$WORK/home"
    local start now wid pid
    start=$(date +%s.%N)
    local args=()
    [[ -n "$MODEL" ]] && args=(--model "$MODEL")
    HOME="$WORK/home" "$APP" "${args[@]}" >"$WORK/app-$1.log" 2>&1 &
    pid=$!
    wid=""
    for _ in $(seq 1 3000); do
        wid="$(xdotool search --onlyvisible --name '^Guidance Studio' 2>/dev/null | head -1 || true)"
        [[ -n "$wid" ]] && break
        kill -0 "$pid" 2>/dev/null || { echo "$1: the app exited before showing a window"; cat "$WORK/app-$1.log"; exit 1; }
        sleep 0.02
    done
    now=$(date +%s.%N)
    [[ -n "$wid" ]] || { echo "$1: no window after 60 s"; kill "$pid"; exit 1; }
    printf '%s launch: main window visible after %.2f s (window %s: %s)\n' "$1" "$(echo "$now - $start" | bc)" \
        "$wid" "$(xdotool getwindowgeometry "$wid" | tr '\n' ' ')"
    if [[ $2 == 1 ]]; then
        sleep "$SETTLE"
        if [[ $RUN != 0 ]]; then
            xdotool windowfocus --sync "$wid" 2>/dev/null || true
            xdotool key --window "$wid" ctrl+Return || echo "$1: could not press Start"
            sleep "$RUN"
        fi
        /usr/bin/import -window root "$SHOT"
        echo "screenshot after $SETTLE s more${MODEL:+ on $MODEL}$( [[ $RUN != 0 ]] && echo ", $RUN s into a run"): $SHOT"
    fi
    # Quit as a user would (Ctrl+Q, File > Quit) and time the clean exit. Look the window up again:
    # Qt may have replaced the native window since (its id then changes).
    wid="$(xdotool search --onlyvisible --name '^Guidance Studio' 2>/dev/null | head -1 || true)"
    xdotool windowfocus --sync "$wid" 2>/dev/null || true
    start=$(date +%s.%N)
    xdotool key --window "$wid" ctrl+q 2>/dev/null || { echo "$1: could not send Ctrl+Q; terminating"; kill "$pid"; }
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [[ $waited -lt 250 ]]; do sleep 0.02; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$1: still running 5 s after Ctrl+Q; killing it"; kill -9 "$pid"
    else
        wait "$pid" && status=0 || status=$?
        printf '%s: Ctrl+Q -> exited with status %s after %.2f s\n' "$1" "$status" "$(echo "$(date +%s.%N) - $start" | bc)"
    fi
    [[ -s "$WORK/app-$1.log" ]] && { echo "$1: app output:"; sed 's/^/    /' "$WORK/app-$1.log"; }
    return 0
}
launch first 1
launch second 0
EOF
xvfb-run -a -s "-screen 0 1600x1000x24" bash "$WORK/launch.sh"
