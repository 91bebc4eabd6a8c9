"""The run's criteria, sealed before its first drill: ``criteria.json``.

For each drill: its id, the SHA-256 of its code (the drill module), its pass
condition (from :mod:`flows.registry`), its thresholds and timeouts (the drill
module's numeric constants; a name ending in ``_S`` is a timeout in seconds),
plus the harness's own timeouts and the digest of the supervisor config the
drills run against. Constants are read from the source with :mod:`ast`, never
by importing the drill, so sealing needs no drill code loaded.

Each drill entry's digest (:func:`drill_digest`) is computed again when the
drill's result is recorded and stored with it, so ``verify`` can show that no
drill ran under code or thresholds other than the sealed ones.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows import registry

__all__ = ["CRITERIA", "build_criteria", "drill_criteria", "drill_digest"]

CRITERIA = "criteria.json"
_DRILLS = Path(__file__).resolve().parent.parent / "drills"
_HARNESS = _DRILLS / "harness.py"
_CONTEXT = _DRILLS / "context.py"

# path -> (mtime_ns, size, sha256 of the bytes, UPPER_CASE literal constants)
_SOURCES: dict[Path, tuple[int, int, str | None, dict[str, Any]]] = {}


def _source(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(sha256, module-level literal constants) of a Python file; (None, {}) if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None, {}
    cached = _SOURCES.get(path)
    if cached and cached[:2] == (st.st_mtime_ns, st.st_size):
        return cached[2], cached[3]
    raw = path.read_bytes()
    constants: dict[str, Any] = {}
    for node in ast.parse(raw).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id.isupper() and value is not None:
            try:
                constants[target.id] = ast.literal_eval(value)
            except ValueError:
                continue  # computed, not a literal setting
    digest = hashlib.sha256(raw).hexdigest()
    _SOURCES[path] = (st.st_mtime_ns, st.st_size, digest, constants)
    return digest, constants


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def drill_criteria(drill_id: str) -> dict[str, Any]:
    """One drill's entry of ``criteria.json``, from its code as it is now."""
    path = _DRILLS / f"{drill_id}.py"
    digest, constants = _source(path)
    numbers = {
        name: value
        for name, value in sorted(constants.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    known = drill_id in registry.DRILL_IDS
    return {
        "id": drill_id,
        "code": f"flows/drills/{drill_id}.py",
        "code_sha256": digest,
        "passes_when": registry.info(drill_id).passes_when if known else None,
        "thresholds": {k: v for k, v in numbers.items() if not k.endswith("_S")},
        "timeouts_s": {k: v for k, v in numbers.items() if k.endswith("_S")},
    }


def drill_digest(entry: dict[str, Any]) -> str:
    """The SHA-256 of one drill's criteria entry (canonical JSON)."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


def _config_digest(config: str | None) -> dict[str, Any]:
    if config:
        try:
            raw = Path(config).read_bytes()
        except OSError:
            return {"path": config, "sha256": None}
        return {"path": config, "sha256": hashlib.sha256(raw).hexdigest()}
    _, constants = _source(_CONTEXT)
    demo = str(constants.get("DEMO_CONFIG", ""))
    return {"path": None, "demo": True, "sha256": hashlib.sha256(demo.encode()).hexdigest()}


def build_criteria(
    run_id: str, drills: Sequence[str], config: str | None, sealed_at: str
) -> dict[str, Any]:
    """The content of ``criteria.json`` for a run of ``drills`` against ``config``."""
    harness_sha, harness = _source(_HARNESS)
    entries = [drill_criteria(d) for d in drills]
    return {
        "schema_version": 1,
        "run_id": run_id,
        "sealed_at": sealed_at,
        "supervisor_config": _config_digest(config),
        "harness": {
            "code": "flows/drills/harness.py",
            "code_sha256": harness_sha,
            "timeouts_s": {k: v for k, v in harness.items() if k.endswith("_S")},
        },
        "drills": [{**e, "sha256": drill_digest(e)} for e in entries],
    }
