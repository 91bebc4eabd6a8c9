"""``KillPath``: the raw-ASGI answer to a good kill, and the FastAPI route for the rest.

A real manager over real processes (``sleep``), driven in this process through the
ASGI interface itself, so each test can see whether the request reached the app
behind ``KillPath`` (the FastAPI route) or was answered in front of it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.api import KillPath, KillResult
from supervisor.auth import Token
from supervisor.config import load
from supervisor.manager import ProcessManager
from supervisor.statedb import StateDB
from supervisor.stop.containment import choose
from supervisor.stop.instance import new_instance
from tests.conftest import wait_for

TOKEN = "kill-path-test-token-0123456789"
CONFIG = """\
[[programs]]
name = "tree"
command = ["sh", "-c", "sleep 600 & sleep 601 & wait"]
start_seconds = 0.1

[[programs]]
name = "other"
command = ["sleep", "602"]
start_seconds = 0.1
"""


class Downstream:
    """The app behind ``KillPath``: records each request it got and answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ProcessManager]:
    (tmp_path / "sup.toml").write_text(CONFIG)
    cfg = load(tmp_path / "sup.toml")
    db = StateDB(tmp_path / "state.db")
    # no subreaper: this is the pytest process; the programs are its children anyway
    manager = ProcessManager(cfg, db, choose("auto", new_instance()), become_subreaper=lambda: None)
    manager.start()
    try:
        yield manager
    finally:
        manager.shutdown()
        manager.containment.close()
        db.close()


def _tree(manager: ProcessManager, name: str) -> list[psutil.Process]:
    """The program's leader and its children, once the leader has forked them."""
    leader = manager.programs[name].popen
    assert leader is not None, f"{name} is not running"
    want = 3 if name == "tree" else 1

    def grown() -> list[psutil.Process] | None:
        procs = [psutil.Process(leader.pid)]
        procs += procs[0].children(recursive=True)
        return procs if len(procs) >= want else None

    tree: list[psutil.Process] = wait_for(grown, 5, f"{name}'s tree of {want} processes")
    return tree


def _post(
    manager: ProcessManager, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, Downstream]:
    """One ``POST /process/kill`` through ``KillPath``: (status, body, the app behind it)."""
    downstream = Downstream()
    kill_path = KillPath(downstream, manager, Token(TOKEN, "env"))
    scope = {"type": "http", "method": "POST", "path": "/process/kill", "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(kill_path(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), downstream


GOOD = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]


def test_good_kill_is_answered_in_front_of_the_route_with_the_routes_model(manager):
    """An authorised, well-formed kill never reaches the route; its answer is a KillResult
    and the whole tree is gone when it arrives, the other program untouched."""
    tree, other = _tree(manager, "tree"), _tree(manager, "other")
    status, body, downstream = _post(manager, b'{"name": "tree"}', GOOD)
    assert downstream.bodies == []
    assert status == 200, body
    answer = json.loads(body)
    assert set(answer) == set(KillResult.model_fields)
    KillResult.model_validate(answer, strict=True)
    assert answer["pid"] == tree[0].pid and answer["survivors"] == []
    assert [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert all(p.is_running() for p in other)
    assert manager.programs["tree"].state.value == "stopped"


DECLINED = {
    "no token": ([(b"content-type", b"application/json")], b'{"name": "tree"}'),
    "wrong token": (
        [(b"authorization", b"Bearer wrong-wrong-wrong-wrong-wrong")],
        b'{"name": "tree"}',
    ),
    "basic scheme": ([(b"authorization", f"Basic {TOKEN}".encode())], b'{"name": "tree"}'),
    "not json": (
        [GOOD[0], (b"content-type", b"text/plain")],
        b'{"name": "tree"}',
    ),
    "malformed json": (GOOD, b'{"name": "tree"'),
    # a repeated header counts by its first value, as Starlette and HTTPBearer read it
    "wrong token first, right token second": (
        [(b"authorization", b"Bearer wrong-wrong-wrong-wrong-wrong"), *GOOD],
        b'{"name": "tree"}',
    ),
    "text/plain first, json second": (
        [GOOD[0], (b"content-type", b"text/plain"), GOOD[1]],
        b'{"name": "tree"}',
    ),
    "unknown field": (GOOD, b'{"name": "tree", "force": true}'),
    "timeout out of range": (GOOD, b'{"name": "tree", "timeout": 0}'),
    "timeout as a string": (GOOD, b'{"name": "tree", "timeout": "2"}'),
    "unknown program": (GOOD, b'{"name": "nope"}'),
    "ambiguous: no body, two programs": (GOOD, b""),
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_every_other_kill_request_reaches_the_route_with_its_body(manager, case):
    """What the route would not answer 200 goes to it, body intact, and nothing is killed."""
    headers, sent = DECLINED[case]
    tree = _tree(manager, "tree")
    before = manager.programs["tree"].state
    status, _, downstream = _post(manager, sent, headers)
    assert status == 418, "KillPath answered instead of the route"
    assert downstream.bodies == [sent]
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    assert manager.programs["tree"].state is before
