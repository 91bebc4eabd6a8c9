"""Schemathesis against a live supervisor: never a 5xx, never a dropped connection, and every
answer (errors included) documented in the supervisor's own ``/openapi.json``.

The supervisor is a real ``python -m supervisor serve`` subprocess on 127.0.0.1 supervising
``sleep 300``, so the kills, starts and restarts the fuzzer sends are real and cheap.

``FUZZ_EXAMPLES`` is the number of generated requests to aim for, spread evenly over the
operations and generation modes (default 350: the bounded pass of ``make test``; ``make fuzz``
sets 2000). The number actually sent is printed when the module finishes and checked.

Schemathesis' own pytest plugin (``schemathesis.pytest.from_fixture``) does not run under
pytest 9.2 (it writes ``Function._nodeid``), so each operation is one pytest item that runs a
Hypothesis test over ``APIOperation.as_strategy``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.openapi.checks import IgnoredAuth
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Supervisor, supervisor_launcher, wait_for

FUZZ_TARGET = int(os.environ.get("FUZZ_EXAMPLES", "350"))
_BOTH = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Every route the supervisor serves. /healthz and /processes take no input (the token aside,
# which the fuzz sets itself), so no negative request exists for them.
OPERATIONS = [
    ("GET", "/healthz", (GenerationMode.POSITIVE,)),
    ("GET", "/processes", (GenerationMode.POSITIVE,)),
    ("GET", "/process", _BOTH),
    ("POST", "/process/start", _BOTH),
    ("POST", "/process/kill", _BOTH),
    ("POST", "/process/restart", _BOTH),
    ("GET", "/events", _BOTH),
]
RUNS = [(m, p, mode) for m, p, modes in OPERATIONS for mode in modes]
PER_RUN = math.ceil(FUZZ_TARGET / len(RUNS))
WRONG_AUTH_EVERY = 10
# printable ASCII, as a header carries it; None sends no Authorization header at all
WRONG_TOKENS = st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    negative_data_rejection,
    ignored_auth,
]
SLEEPER = {"name": "sleeper", "command": ["sleep", "300"], "stop_timeout": 1.0}


@dataclass
class Target:
    """A live supervisor, its schema, and a requests session that counts what is sent to it."""

    sup: Supervisor
    schema: schemathesis.BaseSchema
    session: requests.Session
    cases: int = 0
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.sent += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1


def _connect(sup: Supervisor) -> Target:
    """Load the schema from the live ``/openapi.json`` and open the counting session."""
    # The fuzz sets Authorization itself (the real token, or a drawn wrong one), so schemathesis
    # must not: a negative case "without Authorization" would be sent with the real token.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_url(
        sup.base_url + "/openapi.json", config=config, timeout=10
    )
    served = {(m.upper(), p) for p, item in schema.raw_schema["paths"].items() for m in item}
    assert served == {(m, p) for m, p, _ in OPERATIONS}, f"the fuzz list is stale: {served}"
    target = Target(sup, schema, requests.Session())
    target.session.hooks["response"].append(target._count)
    return target


def fuzz(target: Target, method: str, path: str, mode: GenerationMode, examples: int) -> None:
    """Send ``examples`` generated requests to one operation; raise on the first failed check.

    Every ``WRONG_AUTH_EVERY``-th case goes without the token or with a drawn wrong one and
    must be refused; the others carry the real token, so they reach the routes.
    """
    operation = target.schema[path][method]
    auth = target.sup.auth

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # shrinking replays requests against a live server whose state has moved on
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(mode), wrong=WRONG_TOKENS)
    def run(case: schemathesis.Case, wrong: str | None) -> None:
        target.cases += 1
        if target.cases % WRONG_AUTH_EVERY == 0 and path != "/healthz":
            headers = {} if wrong is None else {"Authorization": f"Bearer {wrong}"}
            response = case.call(session=target.session, headers=headers, timeout=30)
            assert response.status_code in (401, 413, 422), (
                f"{case.method} {case.path} without the real token answered "
                f"{response.status_code}: {response.text[:200]}"
            )
            case.validate_response(response, checks=CHECKS)
            return
        case.call_and_validate(session=target.session, headers=auth, checks=CHECKS, timeout=30)

    run()


def _report(config: pytest.Config, target: Target, seconds: float) -> None:
    """Print the request count past pytest's capture, so ``-q`` runs show the figure."""
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(target.statuses.items()))
    line = (
        f"fuzz: {target.sent} requests sent to the live supervisor in {seconds:.1f}s"
        f" (target {FUZZ_TARGET}; by status {codes})"
    )
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """One supervisor of ``sleep 300`` for the whole fuzz; it and every marked process die after."""
    started = time.monotonic()
    with supervisor_launcher(tmp_path_factory.mktemp("fuzz")) as launch:
        target = _connect(launch([SLEEPER]))
        try:
            yield target
        finally:
            target.session.close()
            _report(request.config, target, time.monotonic() - started)


@pytest.mark.parametrize(
    ("method", "path", "mode"), RUNS, ids=[f"{m} {p} {mode.value}" for m, p, mode in RUNS]
)
def test_every_answer_is_documented_and_never_a_server_error(
    target: Target, method: str, path: str, mode: GenerationMode
):
    """Generated requests get answers in the schema (status, content type, body), never a 5xx."""
    fuzz(target, method, path, mode, PER_RUN)


@pytest.mark.parametrize(
    "body",
    [{"timeout": True}, {"name": None, "timeout": True}, {"timeout": "2"}, {"name": 5}],
    ids=["timeout-true", "name-null-timeout-true", "timeout-string", "name-int"],
)
def test_kill_refuses_bodies_the_schema_calls_invalid(target: Target, body: dict):
    """Found by the fuzz: lax pydantic took {"timeout": true} as a 1 s kill; now it is 422."""
    answer = target.sup.client.post("/process/kill", json=body)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in OPERATIONS])
def test_over_limit_body_answer_is_documented_on_every_route(
    target: Target, method: str, path: str
):
    """A body over 64 KiB gets 413 on every route, GETs included, and the schema says so."""
    case = target.schema[path][method].Case()
    response = target.session.request(
        method,
        target.sup.base_url + path,
        data=b"a" * (64 * 1024 + 1),
        headers={**target.sup.auth, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])


def test_supervisor_survived_the_fuzz(target: Target):
    """After the fuzz: still up and healthy, no traceback logged, no orphan, enough requests."""
    if target.cases == 0:
        pytest.skip("judges the fuzz; run it with test_every_answer_is_documented_...")
    sup = target.sup
    assert sup.popen.poll() is None, f"supervisor exited {sup.popen.returncode}:\n{sup.log()}"
    assert sup.healthy()
    assert not [code for code in target.statuses if code >= 500], target.statuses
    assert "Traceback" not in sup.log()
    # after hundreds of kills, starts and restarts at most the current sleeper is left
    pid = sup.state("sleeper")["pid"]
    assert {p.pid for p in sup.workload()} <= {pid}
    assert target.sent >= FUZZ_TARGET * 0.9, f"only {target.sent} requests for {FUZZ_TARGET}"


# ----- the fuzz can fail: the same run against a deliberately broken supervisor ----------


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Any]:
    """``broken(part)`` starts a supervisor with that part replaced (tests/broken_supervisor.py)."""
    with supervisor_launcher(tmp_path) as launch:
        targets: list[Target] = []

        def start(fault: str) -> Target:
            targets.append(_connect(launch([SLEEPER], broken=(fault,))))
            return targets[-1]

        yield start
        for target in targets:
            target.session.close()


def test_fuzz_fails_when_kill_answers_500(broken):
    """With the kill_500 fault the fuzz of POST /process/kill reports a server error."""
    target = broken("kill_500")
    with pytest.raises(FailureGroup) as failure:
        fuzz(target, "POST", "/process/kill", GenerationMode.POSITIVE, 20)
    assert failure.group_contains(ServerError)


def test_fuzz_fails_when_kill_drops_the_connection(broken):
    """With the kill_drop fault (the supervisor dies mid-kill) the fuzz fails on the connection."""
    target = broken("kill_drop")
    with pytest.raises(requests.ConnectionError):
        fuzz(target, "POST", "/process/kill", GenerationMode.POSITIVE, 20)
    wait_for(lambda: target.sup.popen.poll() is not None, 10, "the broken supervisor to exit")


def test_fuzz_fails_when_auth_is_not_enforced(broken):
    """With the no_auth fault a request without the real token gets 200, and the fuzz says so."""
    target = broken("no_auth")
    # whichever comes first: schemathesis' probe without the token, or our wrong-token case
    with pytest.raises((FailureGroup, AssertionError)) as failure:
        fuzz(target, "GET", "/process", GenerationMode.POSITIVE, 30)
    if isinstance(failure.value, FailureGroup):
        assert failure.group_contains(IgnoredAuth)
    else:
        assert "without the real token answered 200" in str(failure.value)
