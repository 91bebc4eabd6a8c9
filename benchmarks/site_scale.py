"""How long trends + publish take on years of nightly runs, and how much memory.

Generates synthetic histories (every registered drill each night) into a temp dir, then times
``load_history`` + the trends table (what ``python -m flows trends`` does) and a
full ``publish`` (verify, pages, charts, ``mkdocs build --strict``). Prints the
seconds and the peak RSS of this process and of its children (mkdocs runs in a
child). Targets from issue 5: 1,100 runs in 15 s, 3,650 runs in 60 s, < 1 GiB.

    .venv/bin/python benchmarks/site_scale.py [--runs 1100 3650] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.evidence.synthetic import write_synthetic_runs  # noqa: E402
from flows.registry import DRILL_IDS  # noqa: E402
from flows.site import publish  # noqa: E402
from flows.trends.history import load_history, trends_table  # noqa: E402

TARGETS = {1100: 15.0, 3650: 60.0}
GIB = 1024**3


def _peak_rss() -> tuple[int, int]:
    """(self, largest child) peak RSS in bytes; Linux reports kilobytes."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return me, kids


def _cpu() -> float:
    """CPU seconds of this process and its finished children (steadier than wall time
    on a shared machine)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench(runs: int, work: Path) -> dict[str, float]:
    root, docs, site = work / "artifacts", work / "docs", work / "site"
    t0 = time.perf_counter()
    write_synthetic_runs(root, runs, seed=runs)
    t1, c1 = time.perf_counter(), _cpu()
    table = trends_table(load_history(root))
    t2 = time.perf_counter()
    index = publish(root, site, docs_dir=docs)
    t3, c3 = time.perf_counter(), _cpu()
    assert index.is_file() and len(table) == len(DRILL_IDS)
    pages = sum(1 for _ in site.rglob("index.html"))
    return {
        "synth_s": t1 - t0,
        "trends_s": t2 - t1,
        "publish_s": t3 - t2,
        "total_s": t3 - t1,
        "cpu_s": c3 - c1,
        "pages": pages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1100, 3650])
    parser.add_argument("--keep", type=Path, help="write into this folder and keep it")
    args = parser.parse_args()
    for runs in args.runs:
        with tempfile.TemporaryDirectory(prefix=f"site-scale-{runs}-") as tmp:
            work = args.keep / str(runs) if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            r = bench(runs, work)
        me, kids = _peak_rss()
        target = TARGETS.get(runs)
        verdict = "" if target is None else (" OK" if r["total_s"] <= target else " SLOW")
        mem = "OK" if max(me, kids) < GIB else "OVER 1 GiB"
        print(
            f"{runs:>5} runs: trends {r['trends_s']:.1f} s + publish {r['publish_s']:.1f} s "
            f"= {r['total_s']:.1f} s (target {target or '-'} s){verdict}, "
            f"{r['cpu_s']:.1f} CPU s; "
            f"{int(r['pages'])} pages; peak RSS self {me / 2**20:.0f} MiB, "
            f"mkdocs {kids / 2**20:.0f} MiB ({mem}); synth {r['synth_s']:.1f} s (untimed)",
            flush=True,
        )
    return 0  # figures, not assertions: `make bench` must not fail on a slow machine


if __name__ == "__main__":
    sys.exit(main())
