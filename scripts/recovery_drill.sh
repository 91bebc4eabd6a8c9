#!/usr/bin/env bash
# Usage: scripts/recovery_drill.sh [--config FILE] [--program NAME] DIR [DRILL ...]
# Runs the chaos drills (all by default) against a real supervisor, writing the
# evidence into DIR. --config names the supervisor config whose programs to drill
# (default: the demo worker), --program the program the per-program drills target
# (default: the first). Exit 0 when every drill passes, 1 when any fails or errors,
# 2 on bad usage or an environment error (python -m flows --help has the rule).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() {
    echo "usage: $0 [--config FILE] [--program NAME] DIR [DRILL ...]" >&2
    echo "  --config FILE   supervisor config (TOML) whose programs to drill (default: the demo worker)" >&2
    echo "  --program NAME  the program the per-program drills target (default: the first)" >&2
    echo "  DIR             run folder to write (e.g. pilot_artifacts/chaos-drill-20260221-published)" >&2
    echo "  DRILL           a drill id (default: every drill):" >&2
    if [[ -x "$here/.venv/bin/python" ]]; then
        (cd "$here" && .venv/bin/python -m flows drills | sed 's/^/                  /') >&2 || true
    else
        echo "                  (set up .venv, then \`python -m flows drills\` lists them)" >&2
    fi
    exit 2
}
options=()
shown=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage ;;
        --config|--program)
            [[ $# -ge 2 ]] || { echo "$0: $1 needs a value" >&2; usage; }
            value="$2"
            # a relative config is relative to where the script was called from
            if [[ "$1" == --config && "$value" != /* ]]; then value="$PWD/$value"; fi
            options+=("$1" "$value"); shown+=("$1" "$2"); shift 2 ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || usage
dir="$1"; shift
if [[ ! -x "$here/.venv/bin/python" || ! -f "$here/.venv/.installed" ]]; then
    echo "setting up .venv (first run) ..." >&2
    make -C "$here" --no-print-directory venv >&2
fi
drills=()
for d in "$@"; do drills+=(--drill "$d"); done
cd "$here"
exec .venv/bin/python -m flows run --run-dir "$dir" "${drills[@]}" "${options[@]}" \
    --command-line "scripts/recovery_drill.sh ${shown[*]:+${shown[*]} }$dir${*:+ $*}"
