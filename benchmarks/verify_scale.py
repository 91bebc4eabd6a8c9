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

from flows.evidence import log as evidence_log  # noqa: E402
from flows.evidence import writer as writer_module  # noqa: E402
from flows.evidence.keys import load_signing_key  # noqa: E402
from flows.evidence.synthetic import write_synthetic_runs  # noqa: E402
from flows.evidence.verify import verify  # noqa: E402
from flows.evidence.writer import RunWriter, new_run_dir  # noqa: E402
from flows.registry import DRILL_IDS  # noqa: E402

VERIFY_TARGET_S = 10.0
SIGN_TARGET_MS = 10.0
SYNTH_TARGET_S = 60.0


class _Clock:
    """Time spent in the wrapped calls, and in fsync while inside them."""

    def __init__(self) -> None:
        self.inside = 0
        self.spent = 0.0
        self.fsync = 0.0
        self.fsyncs = 0

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self.inside += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.inside -= 1
                if not self.inside:
                    self.spent += time.perf_counter() - started

        return wrapper

    def fsync_of(self, fn: Callable[[int], None]) -> Callable[[int], None]:
        def wrapper(fd: int) -> None:
            started = time.perf_counter()
            try:
                fn(fd)
            finally:
                if self.inside:
                    self.fsync += time.perf_counter() - started
                    self.fsyncs += 1

        return wrapper


def _one_real_run(root: Path) -> dict[str, float]:
    """Signing, reading the log and appending to it, and the whole finalize, in ms, for one
    more run, fsyncs on; with the fsyncs' share of the first."""
    writer = RunWriter(new_run_dir(root), drills=list(DRILL_IDS), command="bench", config=None)
    for drill in DRILL_IDS:
        writer.log_path(drill).write_text(f"PASS: {drill} bench\n")
        writer.record({"id": drill, "status": "pass", "summary": f"PASS: {drill} bench"})
    clock = _Clock()
    log_module = evidence_log
    patched = [
        (writer_module, "sign_run"),
        (log_module, "append"),
        (log_module, "last_entry"),  # the first read of the log in this process
        (os, "fsync"),
    ]
    saved = [(module, name, getattr(module, name)) for module, name in patched]
    for module, name, fn in saved:
        setattr(module, name, clock.fsync_of(fn) if name == "fsync" else clock.timed(fn))
    try:
        started = time.perf_counter()
        writer.finalize()
        whole = time.perf_counter() - started
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
    return {
        "sign_ms": clock.spent * 1000,
        "fsync_ms": clock.fsync * 1000,
        "fsyncs": clock.fsyncs,
        "finalize_ms": whole * 1000,
    }


def bench(runs: int, tmp: Path) -> dict[str, float]:
    os.environ["EVIDENCE_SIGNING_KEY"] = str(tmp / "key" / "evidence-key.pem")
    root = tmp / "root"
    started = time.perf_counter()
    # the key the one real run below signs with: synth's default is the synthetic key
    write_synthetic_runs(root, runs, seed=1, signing_key=load_signing_key())
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
    return {"synth_s": synth_s, "verify_s": verify_s, **json.loads(child.stdout.splitlines()[-1])}


def main(runs: int = 3650) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        got = bench(runs, Path(tmp))
    print(f"synth {runs} signed runs: {got['synth_s']:.1f} s (target <= {SYNTH_TARGET_S:g} s)")
    print(f"verify {runs} runs: {got['verify_s']:.2f} s (target <= {VERIFY_TARGET_S:g} s)")
    print(
        f"signing + log read and append of one run: {got['sign_ms']:.1f} ms "
        f"(target <= {SIGN_TARGET_MS:g} ms; fresh process, fsyncs on: {got['fsyncs']:.0f} "
        f"fsyncs took {got['fsync_ms']:.1f} ms of it); whole finalize {got['finalize_ms']:.1f} ms"
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
