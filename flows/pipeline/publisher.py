"""The ``publish-evidence`` flow: one site for every host of one evidence store.

Drill hosts run ``nightly-drills`` with ``publish=False`` into
``<store>/hosts/<hostname>/``; this flow, deployed on its own queue with a
deployment trigger (:func:`deploy_publisher`), rebuilds the site from the whole
store each time a host's run ends, one build at a time, so no lock is shared
across hosts and no two builds interleave.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.types.entrypoint import EntrypointType

from flows.pipeline.nightly import FLOW_NAME, build_site

__all__ = ["PUBLISHER_FLOW", "deploy_publisher", "publish_evidence"]

PUBLISHER_FLOW = "publish-evidence"


@flow(name=PUBLISHER_FLOW, retries=0)
def publish_evidence(store: str, site_dir: str) -> str:
    """Build the evidence site of every host under ``store`` into ``site_dir``; its index.html.

    Args:
        store: the evidence store, holding ``hosts/<hostname>/`` run roots.
        site_dir: where the site is built.
    """
    index = build_site(store, site_dir)
    get_run_logger().info("published %s into %s", store, index)
    return index


def deploy_publisher(
    work_pool: str,
    work_queue: str,
    store: str | Path,
    site_dir: str | Path,
    working_dir: str | Path | None = None,
    name: str = "publisher",
) -> UUID:
    """Deploy ``publish-evidence`` on a queue, triggered by every ended ``nightly-drills`` run."""
    trigger = DeploymentEventTrigger(
        name=f"publish after {FLOW_NAME}",
        expect={"prefect.flow-run.Completed", "prefect.flow-run.Failed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
    )
    job_variables = {"working_dir": str(Path(working_dir).resolve())} if working_dir else {}
    deployment = cast(
        RunnerDeployment,
        publish_evidence.to_deployment(
            name=name,
            work_pool_name=work_pool,
            work_queue_name=work_queue,
            job_variables=job_variables,
            parameters={
                "store": str(Path(store).resolve()),
                "site_dir": str(Path(site_dir).resolve()),
            },
            concurrency_limit=1,
            triggers=[trigger],
            tags=["chaos-drills", "publisher"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )
    return cast(UUID, deployment.apply())
