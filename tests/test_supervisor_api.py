"""HTTP shape: auth, malformed and oversized bodies, unknown names and routes, the schema.

One live supervisor serves the whole module; its two programs make every
request without a name ambiguous, so no malformed request can kill anything.
The last test checks the worker was never touched.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from supervisor.api import MAX_BODY
from tests.conftest import Supervisor, demo_program, supervisor_launcher

PROTECTED = [
    ("GET", "/processes", None),
    ("GET", "/process?name=worker", None),
    ("POST", "/process/start", {"name": "worker"}),
    ("POST", "/process/kill", {"name": "worker"}),
    ("POST", "/process/restart", {"name": "worker"}),
    ("GET", "/events", None),
]
BAD_AUTH = {
    "missing": {},
    "wrong_token": {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
    "empty_bearer": {"Authorization": "Bearer"},
    "basic_scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "token_without_scheme": None,  # filled with the real token, but no "Bearer "
}
POST_ROUTES = ["/process/start", "/process/kill", "/process/restart"]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Supervisor]:
    with supervisor_launcher(tmp_path_factory.mktemp("api")) as launch:
        sup = launch(
            [demo_program(), {"name": "idle", "command": ["sleep", "60"], "autostart": False}]
        )
        sup.wait_workload(4)
        sup.untouched_pid = sup.state("worker")["pid"]  # type: ignore[attr-defined]
        yield sup


@pytest.fixture(scope="module")
def anon(api: Supervisor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        yield client


def _assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "detail" in body and body["detail"]
    return body


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_protected_route_without_valid_token_is_401(api, anon, method, path, body, case):
    """Every route but /healthz answers 401 to a missing, wrong or malformed token."""
    headers = BAD_AUTH[case]
    if headers is None:
        headers = {"Authorization": api.token}
    response = anon.request(method, path, json=body, headers=headers)
    _assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_401_body_says_where_the_token_comes_from(api, anon):
    """The 401 names the header to send and where this supervisor's token is read from."""
    body = _assert_error(anon.get("/processes"), 401)
    assert "Authorization: Bearer <token>" in body["detail"]
    assert "the SUPERVISOR_TOKEN environment variable" in body["detail"]
    assert api.token not in body["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_body_is_422_saying_send_json(api, content_type):
    """A body sent without a JSON content type: 422 telling to send Content-Type: application/json."""
    response = api.client.post(
        "/process/kill", content=b"name=worker", headers={"Content-Type": content_type}
    )
    body = _assert_error(response, 422)
    assert 'send a JSON object with the header "Content-Type: application/json"' in body["detail"]
    assert content_type in body["detail"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_and_schema_need_no_token(anon, path):
    """/docs and /openapi.json are open, as the README says: they hold no state."""
    assert anon.get(path).status_code == 200


def test_healthz_needs_no_token(anon):
    """GET /healthz answers 200 without a token and names the containment in use."""
    assert anon.get("/healthz").json() == {"status": "ok", "containment": "cgroup"}


MALFORMED = {
    "invalid_json": b'{"name": "worker"',
    "not_utf8": b'{"name": "\xff\xfe"}',
    "name_wrong_type": b'{"name": 5}',
    "name_list": b'{"name": ["worker"]}',
    "extra_field": b'{"name": "worker", "force": true}',
    "array_body": b'["worker"]',
    "string_body": b'"worker"',
    "number_body": b"42",
    "name_too_long": json.dumps({"name": "w" * 65}).encode(),
    "name_nan": b'{"name": NaN}',
    "deeply_nested": b"[" * 30000 + b"]" * 30000,
    "empty_object_key": b'{"": "worker"}',
}
KILL_MALFORMED = {
    "timeout_string": b'{"name": "worker", "timeout": "soon"}',
    "timeout_zero": b'{"name": "worker", "timeout": 0}',
    "timeout_negative": b'{"name": "worker", "timeout": -1}',
    "timeout_huge": b'{"name": "worker", "timeout": 1e9}',
    "timeout_nan": b'{"name": "worker", "timeout": NaN}',
    "timeout_infinity": b'{"name": "worker", "timeout": Infinity}',
    "timeout_bool_string": b'{"name": "worker", "timeout": "true"}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("path", POST_ROUTES)
def test_malformed_body_is_422(api, path, case):
    """Invalid JSON, wrong types and extra fields answer 422 on every POST route."""
    response = api.client.post(
        path, content=MALFORMED[case], headers={"Content-Type": "application/json"}
    )
    _assert_error(response, 422)


@pytest.mark.parametrize("case", sorted(KILL_MALFORMED))
def test_malformed_kill_timeout_is_422(api, case):
    """A kill timeout that is not a number of seconds in (0, 300] answers 422."""
    response = api.client.post(
        "/process/kill", content=KILL_MALFORMED[case], headers={"Content-Type": "application/json"}
    )
    _assert_error(response, 422)


@pytest.mark.parametrize(
    "query",
    ["/events?limit=0", "/events?limit=abc", "/events?limit=100000", "/process?name=" + "x" * 65],
)
def test_malformed_query_is_422(api, query):
    """Out-of-range or mistyped query parameters answer 422."""
    _assert_error(api.client.get(query), 422)


@pytest.mark.parametrize("path", POST_ROUTES)
def test_request_without_name_is_422_when_several_programs(api, path):
    """No name with two programs configured is ambiguous: 422 naming them."""
    body = _assert_error(api.client.post(path, json={}), 422)
    assert "worker" in body["detail"] and "idle" in body["detail"]


@pytest.mark.parametrize("path", POST_ROUTES)
def test_oversized_body_with_content_length_is_413(api, path):
    """A body over 64 KiB with Content-Length answers 413 and the connection stays usable."""
    body = json.dumps({"name": "worker", "pad": "x" * MAX_BODY}).encode()
    response = api.client.post(path, content=body, headers={"Content-Type": "application/json"})
    _assert_error(response, 413)
    assert api.client.get("/processes").status_code == 200


@pytest.mark.parametrize("path", POST_ROUTES)
def test_oversized_chunked_body_is_413(api, path):
    """A chunked body (no Content-Length) that grows past 64 KiB answers 413."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "worker", "pad": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    response = api.client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    _assert_error(response, 413)


def test_chunked_body_over_limit_on_a_raw_socket_is_413(api):
    """Raw HTTP/1.1 with Transfer-Encoding: chunked past the limit gets a 413 status line."""
    host, port = api.base_url.removeprefix("http://").split(":")
    chunk = b"x" * 4096
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /process/kill HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + api.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(20):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]


def test_body_at_the_limit_is_accepted(api):
    """Exactly 64 KiB is within the limit: the request is parsed, not rejected."""
    body = b'{"name": "worker"}'
    body += b" " * (MAX_BODY - len(body))
    response = api.client.post(
        "/process/start", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["pid"] == api.untouched_pid


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/process?name=nope", None),
        ("POST", "/process/start", {"name": "nope"}),
        ("POST", "/process/kill", {"name": "nope"}),
        ("POST", "/process/restart", {"name": "nope"}),
    ],
)
def test_unknown_program_is_404(api, method, path, body):
    """A name that is not configured answers 404 naming it and the configured ones."""
    detail = _assert_error(api.client.request(method, path, json=body), 404)["detail"]
    assert "'nope'" in detail and "worker" in detail


@pytest.mark.parametrize("path", ["/nope", "/process/stop", "/processes/worker"])
def test_unknown_route_is_404(api, anon, path):
    """Routes that do not exist answer 404 JSON, with or without a token."""
    _assert_error(api.client.get(path), 404)
    _assert_error(anon.post(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/process/kill"), ("POST", "/processes"), ("DELETE", "/process"), ("PUT", "/events")],
)
def test_wrong_method_is_405(api, method, path):
    """A known route with the wrong method answers 405 JSON."""
    _assert_error(api.client.request(method, path), 405)


def test_openapi_lists_every_route_with_its_errors(anon):
    """/openapi.json documents every route, its response model and its error responses."""
    schema = anon.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("get", "/healthz"): set(),
        ("get", "/processes"): {"401"},
        ("get", "/process"): {"401", "404", "422"},
        ("post", "/process/start"): {"401", "404", "409", "413", "422"},
        ("post", "/process/kill"): {"401", "404", "413", "422"},
        ("post", "/process/restart"): {"401", "404", "409", "413", "422"},
        ("get", "/events"): {"401", "422"},
    }
    assert set(paths) == {p for _, p in expected}
    for (method, path), errors in expected.items():
        responses = paths[path][method]["responses"]
        assert "200" in responses, path
        assert "$ref" in json.dumps(responses["200"]), f"{path}: 200 has no response model"
        assert errors <= set(responses), f"{method} {path}: {sorted(responses)}"
    kill = paths["/process/kill"]["post"]["responses"]["200"]["content"]["application/json"]
    assert kill["schema"]["$ref"].endswith("/KillResult")
    fields = schema["components"]["schemas"]["KillResult"]["properties"]
    assert set(fields) == {
        "name",
        "pid",
        "already_stopped",
        "exit_code",
        "signal",
        "duration_ms",
        "survivors",
    }


def test_worker_untouched_by_bad_requests(api):
    """After every bad request above, the worker runs with the pid it had, never restarted."""
    state = api.wait_state("running", name="worker")
    assert state["pid"] == api.untouched_pid
    assert state["restarts"] == 0
    assert len(api.workload()) == 4
    assert api.popen.poll() is None
    kinds = [e["kind"] for e in api.events()]
    assert "stopping" not in kinds and "stopped" not in kinds
