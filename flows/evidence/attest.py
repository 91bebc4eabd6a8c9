"""The signed statement of a run: an in-toto Statement v1 with a test-result predicate.

``attestation.dsse.json`` in a run folder is a DSSE envelope
(:mod:`flows.evidence.dsse`) over a statement whose ``subject`` is every
evidence file of the run (``<run_id>/<path>`` with its sha256) and whose
predicate (``https://in-toto.io/attestation/test-result/v0.1``) says
``PASSED`` only for a complete run whose drills all passed; an incomplete or
aborted run is ``FAILED`` and signed all the same. The statement is built from
the folder as it is on disk, so a run whose runner died is signed by whichever
run appends to the log next (:mod:`flows.evidence.log`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.atomic import write_atomic
from flows.evidence.criteria import CRITERIA
from flows.evidence.dsse import IN_TOTO, seal
from flows.evidence.keys import SigningKey
from flows.evidence.layout import ATTESTATION, HOSTS, INCLUSION, hash_tree, read_json

__all__ = [
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "WEAK_CONTAINMENT",
    "build_statement",
    "sign_run",
    "site_url",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
# A drill's ``containment`` (from its supervisor's /healthz): ``cgroup`` backs a pass
# fully; these two make it a warned pass. A drill with no such field claims nothing.
WEAK_CONTAINMENT = ("session", "unknown")
SITE_URL_ENV = "NIGHTLY_SITE_URL"  # the same setting the nightly flow links with
# flows.site.run_page_url, not imported (pandas): a host's runs are under hosts/<name>/
_RUN_PAGE = "generated/{hosts}runs/{run_id}/"


def site_url(run_dir: Path) -> str | None:
    """The page of the run in ``run_dir`` under ``$NIGHTLY_SITE_URL`` (a run under
    ``<root>/hosts/<name>/`` is on its host's pages), or None when no site URL is set."""
    base = os.environ.get(SITE_URL_ENV, "").strip()
    if not base:
        return None
    run_dir = Path(run_dir)
    root = run_dir.parent
    hosts = f"hosts/{root.name}/" if root.parent.name == HOSTS else ""
    return base.rstrip("/") + "/" + _RUN_PAGE.format(hosts=hosts, run_id=run_dir.name)


def _configuration(run_dir: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Resource descriptors: the criteria file, each drill's code, the supervisor config."""
    described: list[dict[str, Any]] = []
    if CRITERIA in files:
        described.append({"name": CRITERIA, "digest": {"sha256": files[CRITERIA]}})
        try:
            criteria, _ = read_json(run_dir / CRITERIA)
        except EvidenceError:
            criteria = {}
        for drill in criteria.get("drills", []) if isinstance(criteria, dict) else []:
            if isinstance(drill, dict) and drill.get("code_sha256"):
                described.append(
                    {"name": drill.get("code"), "digest": {"sha256": drill["code_sha256"]}}
                )
        config = criteria.get("supervisor_config") if isinstance(criteria, dict) else None
        if isinstance(config, dict) and config.get("sha256"):
            name = config.get("path") or "demo supervisor config (flows/drills/context.py)"
            described.append({"name": name, "digest": {"sha256": config["sha256"]}})
    return described


def build_statement(run_dir: Path, results: dict[str, Any], url: str | None) -> dict[str, Any]:
    """The statement for ``run_dir`` as it is on disk, ``results`` being its ``results.json``."""
    run_id = run_dir.name
    files = hash_tree(run_dir, exclude=(ATTESTATION, INCLUSION))
    drills = [d for d in results.get("drills", []) if isinstance(d, dict)]
    passed = [d for d in drills if d.get("status") == "pass"]
    failed = [d["id"] for d in drills if d.get("status") != "pass"]
    # A pass under session containment (or containment its supervisor did not report) is
    # a warning, not a clean pass: a process that leaves its session escapes the kill.
    warned = [d["id"] for d in passed if d.get("containment") in WEAK_CONTAINMENT]
    complete = results.get("status") == "complete" and results.get("verdict") == "pass"
    predicate: dict[str, Any] = {
        "result": "PASSED" if complete and passed and not failed else "FAILED",
        "configuration": _configuration(run_dir, files),
        "passedTests": [d["id"] for d in passed if d["id"] not in warned],
        "warnedTests": warned,
        "failedTests": failed,
    }
    if url:
        predicate["url"] = url
    if results.get("synthetic") is True:  # made up by `synth`: says nothing about the supervisor
        predicate["synthetic"] = True
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": f"{run_id}/{rel}", "digest": {"sha256": digest}}
            for rel, digest in files.items()
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign_run(
    run_dir: Path, results: dict[str, Any], key: SigningKey, *, durable: bool = True
) -> bytes:
    """Write ``attestation.dsse.json`` for ``run_dir``; the envelope's bytes (the log leaf)."""
    statement = build_statement(run_dir, results, site_url(run_dir))
    payload = json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    envelope = seal(IN_TOTO, payload, key)
    write_atomic(run_dir / ATTESTATION, envelope, durable=durable)
    return envelope
