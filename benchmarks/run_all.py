"""``make bench``: every benchmark of the project, then one table of figures and targets.

    .venv/bin/python benchmarks/run_all.py [--soak-runs N] [--skip NAME ...]

Figures, never assertions: a busy machine makes numbers worse, not tests red.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.registry import DRILL_IDS  # noqa: E402

# (figure key, label, target text, check) — check says whether the figure meets its target
TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("kill_median_ms", "POST /process/kill round trip, median", "<= 5 ms", lambda v: v <= 5),
    ("kill_p95_ms", "POST /process/kill round trip, p95", "-", lambda v: True),
    ("vs_ours_median_ms", "kill, sh + 2 sleeps, new connection: ours", "-", lambda v: True),
    ("vs_supervisord_median_ms", "the same kill: supervisord 4.3", "-", lambda v: True),
    ("vs_ratio", "kill median ours / supervisord", "<= 1.2", lambda v: v <= 1.2),
    (
        "vs_ours_tree_alive_at_answer",
        "our kills answered with the tree alive",
        "0",
        lambda v: v == 0,
    ),
    ("vs_ours_rss_mib", "supervisor resident memory incl. keeper, MiB", "-", lambda v: True),
    ("vs_supervisord_rss_mib", "supervisord resident memory, MiB", "-", lambda v: True),
    (
        "sigterm_exit_median_ms",
        "SIGTERM to supervisor exit, median",
        "<= stop_timeout + 1 s",
        lambda v: v <= 6000,
    ),
    (
        "drill_suite_wall_s",
        f"all {len(DRILL_IDS)} drills, one recovery_drill.sh run",
        "<= 30 s",
        lambda v: v <= 30,
    ),
    ("site_3650_full_s", "full publish, 3,650 runs", "<= 30 s", lambda v: v <= 30),
    ("site_3650_plus_one_s", "publish one new run onto 3,650", "<= 3 s", lambda v: v <= 3),
    ("site_10000_full_s", "full publish, 10,000 runs", "<= 90 s", lambda v: v <= 90),
    ("site_peak_rss_mib", "site build peak memory", "< 1024 MiB", lambda v: v < 1024),
    ("soak_failures", "soak failures", "0", lambda v: v == 0),
    ("verify_3650_s", "verify of 3,650 signed runs", "<= 10 s", lambda v: v <= 10),
    ("sign_run_ms", "signing + log append of one run, 3,650 runs", "<= 10 ms", lambda v: v <= 10),
    ("synth_3650_signed_s", "synth of 3,650 signed runs", "<= 60 s", lambda v: v <= 60),
]


def _kill_latency() -> dict:
    from benchmarks import kill_latency

    return kill_latency.main()


def _vs_supervisord() -> dict:
    from benchmarks import vs_supervisord

    return vs_supervisord.main()


def _drill_suite() -> dict:
    from benchmarks import drill_suite

    return drill_suite.main()


def _site_scale() -> dict:
    from benchmarks import site_scale

    figures: dict = {}
    for runs in (3650, 10000):
        with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
            got = site_scale.bench(runs, Path(tmp))
        figures[f"site_{runs}_full_s"] = round(got["full_s"], 2)
        figures[f"site_{runs}_plus_one_s"] = round(got["inc_s"], 2)
        print(
            f"{runs} runs: full publish {got['full_s']:.1f} s "
            f"(target {site_scale.FULL_TARGETS[runs]:g} s), +1 run {got['inc_s']:.1f} s "
            f"(target {site_scale.INCREMENTAL_TARGET:g} s on 3,650)"
        )
    me, kids = site_scale._peak_rss()
    figures["site_peak_rss_mib"] = round(max(me, kids) / 2**20)
    return figures


def _verify_scale() -> dict:
    from benchmarks import verify_scale

    return verify_scale.main(3650)


def _soak(runs: int) -> Callable[[], dict]:
    def soak() -> dict:
        from benchmarks import soak as soak_mod

        return soak_mod.main(runs=runs)

    return soak


def main() -> int:
    parser = argparse.ArgumentParser(description="run every benchmark and print the figures")
    parser.add_argument("--soak-runs", type=int, default=2, help="soak runs (default: 2)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[
            "kill_latency",
            "vs_supervisord",
            "drill_suite",
            "site_scale",
            "verify_scale",
            "soak",
        ],
    )
    args = parser.parse_args()
    benches = {
        "kill_latency": _kill_latency,
        "vs_supervisord": _vs_supervisord,
        "drill_suite": _drill_suite,
        "site_scale": _site_scale,
        "verify_scale": _verify_scale,
        "soak": _soak(args.soak_runs),
    }
    figures: dict = {}
    for name, fn in benches.items():
        if name in args.skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            figures.update(fn())
        except Exception:  # a broken benchmark must not hide the others' figures
            traceback.print_exc()
            print(f"benchmark {name} failed; its figures are missing below")
        print(f"=== {name}: {time.monotonic() - started:.0f} s ===", flush=True)
    print("\n| figure | value | target | meets |")
    print("| --- | --- | --- | --- |")
    for key, label, target, ok in TARGETS:
        value = figures.get(key)
        if value is None:
            print(f"| {label} | not measured | {target} | - |")
        else:
            print(f"| {label} | {value:g} | {target} | {'yes' if ok(value) else 'NO'} |")
    for key, value in sorted(figures.items()):
        if key not in {t[0] for t in TARGETS}:
            print(f"| {key} | {value} | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
