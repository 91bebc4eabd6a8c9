"""How long publishing takes on years of nightly runs, and how much memory.

Generates a synthetic history (every registered drill each night) into a temp dir,
then times ``load_history`` + the trends table (what ``python -m flows trends``
does), a full ``publish`` into an empty site folder (verify, pages, charts,
``mkdocs build --strict``), and an incremental publish after one more run (the
nightly case: only the new run's page and its neighbour's are rendered again, and only the
new run's folder is verified again: the others' checks come from the site's verify memo, see
``flows/evidence/memo.py``).
Prints wall and CPU seconds and the peak RSS (MkDocs runs in-process). Targets from issue 12: one new run onto 3,650 in 3 s,
a full publish of 3,650 in 30 s, 10,000 in 90 s, peak memory < 1 GiB.

    .venv/bin/python benchmarks/site_scale.py [--runs 3650 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.evidence.memo import VerifyMemo  # noqa: E402
from flows.evidence.synthetic import write_synthetic_runs  # noqa: E402
from flows.registry import DRILL_IDS  # noqa: E402
from flows.site import publish_histories  # noqa: E402
from flows.site._publish import load_sections  # noqa: E402
from flows.trends.history import load_history, trends_table  # noqa: E402

FULL_TARGETS = {3650: 30.0, 10000: 90.0}
INCREMENTAL_TARGET = 3.0  # one new run onto 3,650
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


def _publish(root: Path, site: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, run pages rendered) of loading and publishing ``root`` as
    ``python -m flows publish`` does: with the site's verify memo."""
    t0, c0 = time.perf_counter(), _cpu()
    memo = VerifyMemo.in_site(site)
    index, stats = publish_histories(load_sections(root, memo), site, memo=memo)
    assert index.is_file()
    return time.perf_counter() - t0, _cpu() - c0, stats.rendered


def bench(runs: int, work: Path) -> dict[str, float]:
    root, site = work / "artifacts", work / "site"
    t0 = time.perf_counter()
    written = write_synthetic_runs(root, runs, seed=runs)
    t1 = time.perf_counter()
    table = trends_table(load_history(root))
    t2 = time.perf_counter()
    assert len(table) == len(DRILL_IDS)
    full_s, full_cpu, full_pages = _publish(root, site)
    last = max(written).name  # chaos-drill-YYYYMMDD-HHMMSS
    start = time.strptime(last[12:27], "%Y%m%d-%H%M%S")
    from datetime import UTC, datetime

    after = datetime(*start[:6], tzinfo=UTC) + timedelta(days=1)
    write_synthetic_runs(root, 1, seed=runs + 1, start=after)
    inc_s, inc_cpu, inc_pages = _publish(root, site)
    return {
        "synth_s": t1 - t0,
        "trends_s": t2 - t1,
        "full_s": full_s,
        "full_cpu": full_cpu,
        "full_pages": full_pages,
        "inc_s": inc_s,
        "inc_cpu": inc_cpu,
        "inc_pages": inc_pages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[3650, 10000])
    parser.add_argument("--keep", type=Path, help="write into this folder and keep it")
    args = parser.parse_args()
    for runs in args.runs:
        with tempfile.TemporaryDirectory(prefix=f"site-scale-{runs}-") as tmp:
            work = args.keep / str(runs) if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            r = bench(runs, work)
        me, kids = _peak_rss()
        target = FULL_TARGETS.get(runs)
        verdict = "" if target is None else (" OK" if r["full_s"] <= target else " SLOW")
        inc_verdict = " OK" if r["inc_s"] <= INCREMENTAL_TARGET else " SLOW"
        mem = "OK" if max(me, kids) < GIB else "OVER 1 GiB"
        print(
            f"{runs:>5} runs: trends {r['trends_s']:.1f} s; full publish {r['full_s']:.1f} s "
            f"(target {target or '-'} s){verdict}, {r['full_cpu']:.1f} CPU s, "
            f"{int(r['full_pages'])} run pages; +1 run {r['inc_s']:.1f} s "
            f"(target {INCREMENTAL_TARGET:g} s){inc_verdict}, {r['inc_cpu']:.1f} CPU s, "
            f"{int(r['inc_pages'])} run pages rendered; peak RSS {max(me, kids) / 2**20:.0f} MiB "
            f"(MkDocs runs in-process; target < 1024 MiB: {mem}); synth {r['synth_s']:.1f} s "
            "(untimed); on a busy machine compare the CPU seconds",
            flush=True,
        )
    return 0  # figures, not assertions: `make bench` must not fail on a slow machine


if __name__ == "__main__":
    sys.exit(main())
