"""CPU and memory of a process tree, sampled in a thread while the runs go.

CPU is the sum, over every process seen in the tree, of its CPU seconds from
the first to the last sample (processes that come and go count for the time
they were seen); memory is the largest summed RSS of one sample (PostgreSQL's
shared buffers count once per backend, so its figure is an upper bound).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["TreeSampler", "Usage"]


@dataclass
class Usage:
    """What one tree used between :meth:`TreeSampler.mark` and :meth:`TreeSampler.stop`."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    samples: int = 0
    processes: set[int] = field(default_factory=set)

    @property
    def cpu_percent(self) -> float:
        """Average CPU over the window, in % of one core."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "cpu_s": round(self.cpu_s, 2),
            "wall_s": round(self.wall_s, 2),
            "avg_cpu_percent_of_one_core": round(self.cpu_percent, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "samples": self.samples,
            "processes": len(self.processes),
        }


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class TreeSampler:
    """Samples the trees under ``pids`` (name -> root pid) every ``interval`` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self._first: dict[str, dict[int, float]] = {name: {} for name in pids}
        self._last: dict[str, dict[int, float]] = {name: {} for name in pids}
        self._usage = {name: Usage() for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._started = 0.0

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            rss = 0
            usage = self._usage[name]
            for proc in _tree(pid):
                try:
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                spent = times.user + times.system
                self._first[name].setdefault(proc.pid, spent)
                self._last[name][proc.pid] = spent
                usage.processes.add(proc.pid)
            usage.samples += 1
            usage.peak_rss_mb = max(usage.peak_rss_mb, rss / 2**20)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._started = time.monotonic()
        self._sample()
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._started
        for name, usage in self._usage.items():
            first, last = self._first[name], self._last[name]
            usage.cpu_s = sum(last[p] - first[p] for p in last)
            usage.wall_s = wall
        return self._usage
