"""Chaos drills, the evidence store, trends and the evidence site.

Public entry points live in their modules: ``flows.drills`` (the drill registry),
``flows.runner`` (run drills into a run folder), ``flows.evidence`` (write and
verify run folders), ``flows.trends`` (pure maths), ``flows.site`` (publish) and
``flows.pipeline.nightly`` (the Prefect flow).
"""
