"""Alerts, the Prefect way: automations created by code when the deployments are.

:func:`ensure_alerts` upserts, by name, so re-deploying never duplicates them:

- ``chaos-drills: nightly run failed``: a ``nightly-drills`` flow run of any host
  enters Failed or Crashed.
- ``chaos-drills: missed night (<deployment>)``, one per deployment: a proactive
  trigger that fires when no run of that deployment completed within the window
  (26 hours; ``$NIGHTLY_MISSED_WINDOW_S`` or ``missed_window`` for tests).

Both notify through one Prefect notification block: a webhook made from
``--notify-url`` (:func:`webhook_notifier`), or any saved block (Slack, email,
...) by its document id. Without one they still appear under Automations and in
the event feed, with no action but "do nothing".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from prefect.automations import Automation, DoNothing, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from flows.errors import DeployError
from flows.pipeline.nightly import FLOW_NAME

__all__ = [
    "FAILED_ALERT",
    "MISSED_WINDOW",
    "ensure_alerts",
    "missed_alert_name",
    "missed_window",
    "webhook_notifier",
]

FAILED_ALERT = "chaos-drills: nightly run failed"
MISSED_WINDOW = timedelta(hours=26)
MISSED_WINDOW_ENV = "NIGHTLY_MISSED_WINDOW_S"
WEBHOOK_BLOCK = "chaos-drills-alerts"

log = logging.getLogger("flows.pipeline.alerts")

_FAILED_BODY = (
    "nightly-drills run {{ flow_run.name }} of deployment {{ deployment.name }} "
    "ended {{ flow_run.state.name }}: {{ flow_run.state.message }}"
)
_MISSED_BODY = (
    "missed night: no nightly-drills run of deployment {name} completed within {window}; "
    "is its worker up (work queue {queue})?"
)


def missed_alert_name(deployment_name: str) -> str:
    return f"chaos-drills: missed night ({deployment_name})"


def missed_window(seconds: float | None = None) -> timedelta:
    """The missed-night window: argument, else ``$NIGHTLY_MISSED_WINDOW_S``, else 26 hours."""
    raw = seconds if seconds is not None else os.environ.get(MISSED_WINDOW_ENV)
    if raw is None or raw == "":
        return MISSED_WINDOW
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 10:
        raise DeployError(
            f"alerts: the missed-night window must be at least 10 seconds (Prefect's "
            f"minimum for proactive triggers), got {raw!r}; set ${MISSED_WINDOW_ENV}"
        )
    return timedelta(seconds=value)


def webhook_notifier(url: str, name: str = WEBHOOK_BLOCK) -> UUID:
    """Save (or overwrite) a webhook notification block posting JSON to ``url``; its id."""
    block = CustomWebhookNotificationBlock(
        name=name,
        url=url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
        headers=None,
        cookies=None,
    )
    return cast(UUID, block.save(WEBHOOK_BLOCK, overwrite=True))


def _actions(notifier: UUID | None, subject: str, body: str) -> list[Any]:
    """The alert's one action (``list[Any]``: Automation's field is a wider union)."""
    if notifier is None:
        return [DoNothing()]
    return [SendNotification(block_document_id=notifier, subject=subject, body=body)]


def _failed_alert(notifier: UUID | None) -> Automation:
    return Automation(
        name=FAILED_ALERT,
        description="A nightly-drills flow run (any host) ended Failed or Crashed.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=_actions(notifier, "chaos drills: a nightly run failed", _FAILED_BODY),
    )


def _missed_alert(
    deployment_name: str, deployment_id: UUID, queue: str, window: timedelta, notifier: UUID | None
) -> Automation:
    body = _MISSED_BODY.format(name=deployment_name, window=window, queue=queue)
    return Automation(
        name=missed_alert_name(deployment_name),
        description=f"No run of {deployment_name} completed within {window}.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
            posture=Posture.Proactive,
            threshold=1,
            within=window,
        ),
        actions=_actions(notifier, f"chaos drills: missed night on {deployment_name}", body),
    )


def _upsert(automation: Automation) -> UUID:
    core = AutomationCore(**automation.model_dump(exclude={"id"}))
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            return client.create_automation(core)
        keep, *extra = existing
        # as Automation.update does: the update schema forbids owner_resource
        client.update_automation(
            keep.id, AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
        )
        for duplicate in extra:  # left by an older, non-idempotent deploy
            client.delete_automation(duplicate.id)
        return keep.id


def ensure_alerts(
    deployments: Mapping[str, tuple[UUID, str]],
    notifier: UUID | None = None,
    window: timedelta | None = None,
) -> dict[str, UUID]:
    """Create or update the failed-run alert and one missed-night alert per deployment.

    ``deployments`` maps a deployment's name to (its id, its work queue name).
    Returns each automation's name and id.
    """
    window = window or missed_window()
    automations = [_failed_alert(notifier)]
    automations += [
        _missed_alert(name, dep_id, queue, window, notifier)
        for name, (dep_id, queue) in deployments.items()
    ]
    ids = {a.name: _upsert(a) for a in automations}
    log.info(
        "alerts.ensured automations=%d notifier=%s window_s=%.0f",
        len(ids),
        notifier,
        window.total_seconds(),
    )
    return ids
