"""Chaos drills, the evidence store, trends and the evidence site.

Public entry points live in their modules: ``flows.registry`` (every drill's id
and metadata, importing nothing heavy), ``flows.drills`` (the drill functions),
``flows.runner`` (the one drill loop, into a run folder), ``flows.evidence``
(write and verify run folders), ``flows.trends`` (maths, history, formatting,
charts), ``flows.site`` (publish), ``flows.pipeline`` (the Prefect flow and its
deployments) and ``flows.cli`` (``python -m flows``).
"""
