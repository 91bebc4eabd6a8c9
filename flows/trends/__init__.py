"""Trends over every run: pure maths, the history loader, charts, statistics.

- ``maths``: pure functions over the history's DataFrames (no I/O);
- ``history``: the I/O edge: every run folder under a root, as DataFrames;
- ``formatting``: how rates, ages, streaks and metrics read, in the terminal and
  on the site (no pandas);
- ``charts``: SVG charts of those frames, written by hand (no plotting library);
- ``stats``: percentiles shared by drills and benchmarks (no pandas).

Nothing is imported here, so ``flows.trends.stats`` stays light for the drills.
"""
