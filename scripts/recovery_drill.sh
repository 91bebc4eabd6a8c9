#!/usr/bin/env bash
# Usage: scripts/recovery_drill.sh DIR [DRILL ...]
# Runs the chaos drills (all by default) against a real supervisor, writing the
# evidence into DIR. Exit 0 when every drill passes, 1 when any fails or errors,
# 2 on bad usage or an environment error (python -m flows --help has the rule).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    echo "usage: $0 DIR [DRILL ...]" >&2
    echo "  DIR    run folder to write (e.g. pilot_artifacts/chaos-drill-20260221-published)" >&2
    echo "  DRILL  a drill id (default: every drill):" >&2
    if [[ -x "$here/.venv/bin/python" ]]; then
        (cd "$here" && .venv/bin/python -m flows drills | sed 's/^/         /') >&2 || true
    else
        echo "         (set up .venv, then \`python -m flows drills\` lists them)" >&2
    fi
    exit 2
fi
dir="$1"; shift
if [[ ! -x "$here/.venv/bin/python" || ! -f "$here/.venv/.installed" ]]; then
    echo "setting up .venv (first run) ..." >&2
    make -C "$here" --no-print-directory venv >&2
fi
drills=()
for d in "$@"; do drills+=(--drill "$d"); done
cd "$here"
exec .venv/bin/python -m flows run --run-dir "$dir" "${drills[@]}" \
    --command-line "scripts/recovery_drill.sh $dir${*:+ $*}"
