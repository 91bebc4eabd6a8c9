"""Wall time of every drill in one ``scripts/recovery_drill.sh`` run (target ≤ 30 s).

.venv/bin/python benchmarks/drill_suite.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_S = 30.0

from flows.registry import DRILL_IDS  # noqa: E402


def main(repeat: int = 1) -> dict[str, float]:
    walls = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
            run_dir = Path(tmp) / "chaos-drill-bench"
            started = time.monotonic()
            out = subprocess.run(
                ["bash", str(ROOT / "scripts/recovery_drill.sh"), str(run_dir)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            wall = time.monotonic() - started
            verdict = json.loads((run_dir / "results.json").read_text())["verdict"]
            walls.append(wall)
            print(f"run {i + 1}: {wall:.1f} s wall, verdict {verdict}, exit {out.returncode}")
            if out.returncode != 0:
                print(out.stdout[-3000:])
    figures = {
        "drill_suite_wall_s": round(min(walls), 2),
        "drill_suite_wall_max_s": round(max(walls), 2),
    }
    print(
        f"all {len(DRILL_IDS)} drills: {figures['drill_suite_wall_s']} s wall (best of {repeat});"
        f" target <= {TARGET_S:.0f} s"
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    main(parser.parse_args().repeat)
    sys.exit(0)
