"""Timed, logged HTTP calls: every request a drill makes lands in its log."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from flows.drills._log import DrillLog


@dataclass
class Answer:
    status: int | None  # None: no response at all (the old "HTTP 000")
    body: Any
    latency_ms: float


def call(
    client: httpx.Client, log: DrillLog | None, method: str, path: str, **kwargs: Any
) -> Answer:
    started = time.perf_counter()
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        latency = (time.perf_counter() - started) * 1000
        answer = Answer(None, f"{type(exc).__name__}: {exc}", latency)
    else:
        latency = (time.perf_counter() - started) * 1000
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = response.text
        answer = Answer(response.status_code, body, latency)
    if log is not None:
        log.request(method, path, answer.status, answer.body, answer.latency_ms)
    return answer


KILL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "already_stopped": bool,
    "duration_ms": (int, float),
    "survivors": list,
}


def kill_body_problems(body: Any, expect_name: str) -> list[str]:
    """What is wrong with a /process/kill answer body; empty when it is valid."""
    if not isinstance(body, dict):
        return [f"body is not a JSON object: {body!r}"[:200]]
    problems = []
    for key, kind in KILL_FIELDS.items():
        if key not in body:
            problems.append(f"missing field {key}")
        elif not isinstance(body[key], kind):
            problems.append(f"field {key} has type {type(body[key]).__name__}")
    if "pid" not in body:
        problems.append("missing field pid")
    if "exit_code" not in body and "signal" not in body:
        problems.append("neither exit_code nor signal")
    if body.get("name") not in (None, expect_name):
        problems.append(f"name is {body.get('name')!r}, expected {expect_name!r}")
    if body.get("survivors"):
        problems.append(f"survivors reported: {body['survivors']}")
    return problems
