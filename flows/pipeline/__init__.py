"""The Prefect side: the ``nightly-drills`` flow (``nightly``) and its deployments (``deploy``).

Nothing else in ``flows`` imports Prefect; the drills and the evidence store run
without it (``flows.runner``).
"""
