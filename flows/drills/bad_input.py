"""``bad_input``: every malformed or unauthorised request gets its documented 4xx,
and the worker is untouched (same processes before and after), the other
programs too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psutil

from flows.drills._http import call
from flows.drills.context import DrillContext

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Probe:
    label: str
    method: str
    path: str
    expect: int
    auth: str = "good"  # good | none | wrong
    kwargs: dict[str, Any] = field(default_factory=dict)


def battery(name: str) -> list[Probe]:
    """Every probe, in the order the drill sends them."""
    return [*_malformed(name), *_unknown_program(), *_unauthorised(name), *_edges()]


def _malformed(name: str) -> list[Probe]:
    return [
        Probe(
            "invalid JSON",
            "POST",
            "/process/kill",
            422,
            kwargs={"content": b'{"name": ', "headers": _JSON},
        ),
        Probe("name of wrong type", "POST", "/process/kill", 422, kwargs={"json": {"name": 123}}),
        Probe(
            "timeout of wrong type",
            "POST",
            "/process/kill",
            422,
            kwargs={"json": {"name": name, "timeout": "soon"}},
        ),
        Probe(
            "negative timeout",
            "POST",
            "/process/kill",
            422,
            kwargs={"json": {"name": name, "timeout": -1}},
        ),
        Probe("body is a list", "POST", "/process/start", 422, kwargs={"json": [name]}),
        Probe(
            "unknown field",
            "POST",
            "/process/start",
            422,
            kwargs={"json": {"name": name, "command": ["/bin/sh"]}},
        ),
    ]


def _unknown_program() -> list[Probe]:
    return [
        Probe(
            "unknown program (kill)",
            "POST",
            "/process/kill",
            404,
            kwargs={"json": {"name": "no-such-program"}},
        ),
        Probe(
            "unknown program (query)",
            "GET",
            "/process",
            404,
            kwargs={"params": {"name": "no-such-program"}},
        ),
    ]


def _unauthorised(name: str) -> list[Probe]:
    return [
        Probe("missing token", "GET", "/processes", 401, auth="none"),
        Probe("wrong token", "GET", "/processes", 401, auth="wrong"),
        Probe(
            "missing token on kill",
            "POST",
            "/process/kill",
            401,
            auth="none",
            kwargs={"json": {"name": name}},
        ),
        Probe(
            "wrong token on kill",
            "POST",
            "/process/kill",
            401,
            auth="wrong",
            kwargs={"json": {"name": name}},
        ),
    ]


def _edges() -> list[Probe]:
    big = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
    return [
        Probe(
            "body over 64 KiB",
            "POST",
            "/process/kill",
            413,
            kwargs={"content": big, "headers": _JSON},
        ),
        Probe("unknown route", "GET", "/no/such/route", 404),
        Probe("wrong method", "DELETE", "/process/kill", 405),
        Probe("bad query value", "GET", "/events", 422, kwargs={"params": {"limit": "-1"}}),
    ]


def _identity(procs: list[psutil.Process]) -> set[tuple[int, float]]:
    out = set()
    for p in procs:
        try:
            out.add((p.pid, p.create_time()))
        except psutil.Error:  # a process that vanished simply differs
            continue
    return out


def run(ctx: DrillContext) -> tuple[bool, str]:
    sup = ctx.supervisor()
    name = ctx.program_name()
    before = ctx.workload(sup)
    ctx.log.tree("before the battery", before)
    guard = ctx.watch_collateral(sup)
    statuses: dict[str, int] = {}
    wrong: list[str] = []
    with sup.new_client() as good, sup.new_client() as bare:
        bare.headers.pop("Authorization")
        for probe in battery(name):
            client, kwargs = (good if probe.auth == "good" else bare), dict(probe.kwargs)
            if probe.auth == "wrong":
                kwargs["headers"] = {
                    **kwargs.get("headers", {}),
                    "Authorization": "Bearer not-the-token",
                }
            ctx.log.line(f"probe: {probe.label} (expect {probe.expect})")
            answer = call(client, ctx.log, probe.method, probe.path, **kwargs)
            statuses[probe.label] = answer.status or 0
            if answer.status != probe.expect:
                wrong.append(
                    f"{probe.label}: got {answer.status or '000'}, expected {probe.expect}"
                )
        state = call(good, ctx.log, "GET", "/process", params={"name": name})
    after = ctx.workload(sup)
    ctx.log.tree("after the battery", after)
    ctx.check_collateral(guard)
    passed = len(statuses) - len(wrong)
    ctx.metrics.update(checks_passed=passed, checks_total=len(statuses), http_statuses=statuses)
    for line in wrong:
        ctx.log.line(f"mismatch: {line}")
    touched = _identity(before) != _identity(after)
    alive = sup.popen.poll() is None
    sup.stop()
    if wrong:
        return False, f"{len(wrong)} of {len(statuses)} probes got the wrong status: {wrong[0]}"
    if not alive:
        return False, "the supervisor exited during the battery"
    if touched:
        return False, "the worker's processes changed during the battery"
    if not isinstance(state.body, dict) or state.body.get("state") not in ("running", "starting"):
        return False, f"worker state after the battery is {state.body!r}"
    return True, f"all {passed} malformed or unauthorised requests got their documented 4xx"
