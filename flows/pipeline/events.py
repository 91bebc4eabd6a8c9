"""Custom Prefect events of the nightly flow, for users' own automations.

- ``chaos.drill.verdict``, one per drill: resource ``chaos.drill.<host>.<drill id>``
  (labels ``chaos.host``, ``chaos.drill``); payload ``status`` and the key metric
  (``metric``, ``value``, ``unit``).
- ``chaos.evidence.sealed``, one per run: resource ``chaos.run.<host>.<run id>``;
  payload ``run_id``, ``verdict`` and ``checkpoint``: the evidence log's signed
  checkpoint (``size``, ``root_sha256``) when ``<root>/log/checkpoint.dsse.json``
  exists, else the sha256 of the run's chained ``manifest.json``.

Emitting never fails a run: without a Prefect API Prefect drops the event.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path
from typing import Any

from prefect.events import emit_event

from flows.evidence.layout import CHECKPOINT, MANIFEST
from flows.evidence.log import stated_checkpoint
from flows.registry import info, key_metric

__all__ = [
    "EVENT_SEALED",
    "EVENT_VERDICT",
    "checkpoint",
    "emit_sealed",
    "emit_verdict",
]

EVENT_VERDICT = "chaos.drill.verdict"
EVENT_SEALED = "chaos.evidence.sealed"

log = logging.getLogger("flows.pipeline.events")


def checkpoint(run_dir: Path) -> dict[str, Any]:
    """What seals ``run_dir``: the root's signed checkpoint if there is one, else its manifest hash."""
    signed = run_dir.parent / CHECKPOINT
    if signed.is_file():
        try:
            stated = stated_checkpoint(signed.read_bytes())
        except OSError as exc:
            stated, reason = None, str(exc)
        else:
            reason = "not a checkpoint envelope"
        if stated is not None:
            size, root = stated["size"], stated["root_sha256"]
            return {"kind": "dsse-checkpoint", "size": size, "root_sha256": root}
        log.warning("events.checkpoint_unreadable path=%s reason=%s", signed, reason)
    manifest = run_dir / MANIFEST
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    return {"kind": "manifest", "manifest_sha256": digest}


def emit_verdict(result: dict[str, Any], host: str | None = None) -> None:
    """``chaos.drill.verdict`` for one drill's entry of ``results.json``."""
    host = host or socket.gethostname()
    drill_id = str(result["id"])
    entry = info(drill_id)
    emit_event(
        event=EVENT_VERDICT,
        resource={
            "prefect.resource.id": f"chaos.drill.{host}.{drill_id}",
            "prefect.resource.name": f"{drill_id} on {host}",
            "chaos.host": host,
            "chaos.drill": drill_id,
        },
        payload={
            "status": result.get("status"),
            "metric": entry.metric,
            "value": key_metric(drill_id, result.get("metrics")),
            "unit": entry.unit,
        },
    )


def emit_sealed(results: dict[str, Any], run_dir: Path, host: str | None = None) -> None:
    """``chaos.evidence.sealed`` for a sealed run folder."""
    host = host or socket.gethostname()
    run_id = str(results["run_id"])
    emit_event(
        event=EVENT_SEALED,
        resource={
            "prefect.resource.id": f"chaos.run.{host}.{run_id}",
            "prefect.resource.name": run_id,
            "chaos.host": host,
        },
        payload={
            "run_id": run_id,
            "verdict": results.get("verdict"),
            "checkpoint": checkpoint(run_dir),
        },
    )
