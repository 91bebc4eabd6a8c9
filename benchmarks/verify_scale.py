"""How long ``verify`` takes on years of signed runs, and what signing adds to one run.

Writes a synthetic history (every registered drill each night, signed and logged as
real runs are, fsyncs off as ``synth`` does) into a temp dir with a throwaway key,
times ``verify`` of the whole root (files, chain, every signature, every leaf, the
Merkle root, every kept checkpoint's consistency, every inclusion proof, the
criteria), then seals one more real run (fsyncs on) in a fresh process, as a
nightly run does, and times the signing and the log append inside its
``finalize``. Targets: verify of 3,650 runs within 10 s (issue 13); signing and
log append at most 10 ms on a log of 3,650 runs; synth of 3,650 runs within 60 s.

    .venv/bin/python benchmarks/verify_scale.py [--runs 3650]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.evidence import writer as writer_module  # noqa: E402
from flows.evidence.synthetic import write_synthetic_runs  # noqa: E402
from flows.evidence.verify import verify  # noqa: E402
from flows.evidence.writer import RunWriter, new_run_dir  # noqa: E402
from flows.registry import DRILL_IDS  # noqa: E402

VERIFY_TARGET_S = 10.0
SIGN_TARGET_MS = 10.0
SYNTH_TARGET_S = 60.0


def _timed(spent: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return wrapper


def _one_real_run(root: Path) -> tuple[float, float]:
    """(signing + log append, whole finalize) in ms for one more run, fsyncs on."""
    writer = RunWriter(new_run_dir(root), drills=list(DRILL_IDS), command="bench", config=None)
    for drill in DRILL_IDS:
        writer.log_path(drill).write_text(f"PASS: {drill} bench\n")
        writer.record({"id": drill, "status": "pass", "summary": f"PASS: {drill} bench"})
    spent: list[float] = []
    sign, append = writer_module.sign_run, writer_module.evidence_log.append
    writer_module.sign_run = _timed(spent, sign)  # type: ignore[assignment]
    writer_module.evidence_log.append = _timed(spent, append)  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        writer.finalize()
        whole = time.perf_counter() - started
    finally:
        writer_module.sign_run = sign  # type: ignore[assignment]
        writer_module.evidence_log.append = append  # type: ignore[assignment]
    return sum(spent) * 1000, whole * 1000


def bench(runs: int, tmp: Path) -> dict[str, float]:
    os.environ["EVIDENCE_SIGNING_KEY"] = str(tmp / "key" / "evidence-key.pem")
    root = tmp / "root"
    started = time.perf_counter()
    write_synthetic_runs(root, runs, seed=1)
    synth_s = time.perf_counter() - started
    started = time.perf_counter()
    report = verify(root)
    verify_s = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"verify found problems in a fresh history: {report.problems[:3]}")
    # A fresh interpreter: a nightly run starts with nothing of the log in memory.
    child = subprocess.run(
        [sys.executable, __file__, "--one-run", str(root)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    sign_ms, finalize_ms = json.loads(child.stdout.splitlines()[-1])
    return {
        "synth_s": synth_s,
        "verify_s": verify_s,
        "sign_ms": sign_ms,
        "finalize_ms": finalize_ms,
    }


def main(runs: int = 3650) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        got = bench(runs, Path(tmp))
    print(f"synth {runs} signed runs: {got['synth_s']:.1f} s (target <= {SYNTH_TARGET_S:g} s)")
    print(f"verify {runs} runs: {got['verify_s']:.2f} s (target <= {VERIFY_TARGET_S:g} s)")
    print(
        f"signing + log append of one run: {got['sign_ms']:.1f} ms "
        f"(target <= {SIGN_TARGET_MS:g} ms, fresh process, fsyncs on); "
        f"whole finalize {got['finalize_ms']:.1f} ms"
    )
    return {
        f"verify_{runs}_s": round(got["verify_s"], 2),
        "sign_run_ms": round(got["sign_ms"], 1),
        f"synth_{runs}_signed_s": round(got["synth_s"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3650)
    parser.add_argument("--one-run", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(_one_real_run(Path(args.one_run))))
    else:
        main(args.runs)
