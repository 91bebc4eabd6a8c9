"""Security checks (issue 6, section 4), one test per item, against real supervisor processes.

Companions in ``tests/test_supervisor_security.py`` already cover the generated token file
being 0600 and absent from the log, and ``--host 0.0.0.0`` refused with a generated token
and allowed with ``SUPERVISOR_TOKEN``; the tests here take the other paths to the same
guarantees (a loose token file, debug logging, the host from the config file, a token file).
"""

from __future__ import annotations

import hmac
import json
import secrets
import stat
import uuid

import httpx
import pytest

from supervisor import auth
from supervisor.auth import Token

# autostart off: any process carrying the test marker after a request was spawned by it
SLEEPER = {"name": "sleeper", "command": ["sleep", "300"], "stop_timeout": 1.0, "autostart": False}

HOSTILE_NAMES = [
    "../etc/passwd",
    "sleeper/../sleeper",
    "worker; rm -rf /",
    "sleeper; touch /tmp/x",
    "$(sleep 300)",
    "`sleep 300`",
    "/bin/sh",
    "sleep",
    "sleep 300",
    "sleeper\u0000",
    "sleeper\n",
    " sleeper",
    "SLEEPER",
    "sleeper*",
    "%2e%2e%2fetc%2fpasswd",
    "",
]
# what a field naming a file or a command would be called
FOREIGN_FIELDS = ["command", "cmd", "args", "argv", "path", "file", "env", "cwd", "directory"]


def _no_spawn(sup, baseline_events: int) -> None:
    """Nothing was spawned: no marked process, the program still stopped, no start event."""
    assert sup.workload() == [], [p.cmdline() for p in sup.workload()]
    assert sup.state("sleeper")["state"] == "stopped"
    assert sup.state("sleeper")["pid"] is None
    events = sup.events()
    assert len(events) == baseline_events, events[baseline_events:]


def test_token_never_logged_even_at_debug_with_access_log(supervisor_factory):
    """SUPERVISOR_TOKEN, and wrong tokens sent to the API, appear nowhere in a debug-level log."""
    token = secrets.token_urlsafe(32)
    sup = supervisor_factory([SLEEPER], token=token, args=["--log-level", "debug", "--access-log"])
    near_misses = [token[:-1], token + "x", token[::-1], "Bearer-" + token[:20]]
    for wrong in near_misses:
        answer = httpx.get(
            sup.base_url + "/processes", headers={"Authorization": f"Bearer {wrong}"}
        )
        assert answer.status_code == 401
    assert sup.client.post("/process/start").status_code == 200
    assert sup.client.post("/process/kill").status_code == 200
    sup.close_client()
    sup.popen.terminate()
    assert sup.wait_exit(timeout=15) == 0
    log = sup.log()
    assert "event=listening" in log and "token_source=env" in log
    for secret in [token, token[: len(token) // 2], *near_misses]:
        assert secret not in log
    state_files = [p for p in sup.workdir.rglob("*") if p.is_file() and p.suffix != ".stderr"]
    for path in state_files:
        assert token.encode() not in path.read_bytes(), f"the token is written to {path}"


def test_loose_generated_token_file_is_tightened_to_0600(supervisor_factory, tmp_path):
    """A generated token file left world-readable is chmod 0600 at the next start."""
    db = tmp_path / "state.db"
    token_file = db.with_name(db.name + ".token")
    token = secrets.token_urlsafe(32)
    token_file.write_text(token + "\n")
    token_file.chmod(0o644)
    sup = supervisor_factory([SLEEPER], token=None, db=db)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    sup.token = token
    assert sup.client.get("/processes").status_code == 200
    assert token not in sup.log()


def test_token_comparison_is_constant_time(monkeypatch):
    """Token.allows goes through hmac.compare_digest and rejects every near miss and no token."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    value = secrets.token_urlsafe(32)
    token = Token(value, "env")
    assert token.allows(value)
    assert calls == [(value.encode(), value.encode())]
    same_length = [
        value[:-1] + ("A" if value[-1] != "A" else "B"),
        value.swapcase(),
        "x" * len(value),
    ]
    other_length = ["", value[:-1], value + "x", value * 2, value[: len(value) // 2]]
    other = [value + "\x00", " " + value, value.encode().hex(), "ünïcødé" + value[7:]]
    for wrong in same_length + other_length + other:
        assert not token.allows(wrong), wrong
    assert len(calls) == 1 + len(same_length + other_length + other)
    assert not token.allows(None)


def test_non_loopback_host_from_config_needs_an_explicit_token(supervisor_factory, tmp_path):
    """host = "0.0.0.0" in [server]: exit 2 with a generated token; with a token file it binds."""
    refused = supervisor_factory(
        [SLEEPER], token=None, server={"host": "0.0.0.0"}, wait_healthy=False, name="refused"
    )
    assert refused.wait_exit(timeout=20) == 2
    assert "refusing to listen on non-loopback address 0.0.0.0" in refused.log()
    assert "server.token_file" in refused.log()
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token + "\n")
    bound = supervisor_factory(
        [SLEEPER],
        token=None,
        server={"host": "0.0.0.0", "token_file": "token"},
        db=tmp_path / "bound.db",
        name="bound",
    )
    # only ever talk to it over loopback
    assert bound.base_url.startswith("http://127.0.0.1:")
    assert "url=http://0.0.0.0:" in bound.log() and "token_source=token_file" in bound.log()
    assert httpx.get(bound.base_url + "/processes").status_code == 401
    bound.token = token
    assert bound.client.get("/processes").status_code == 200


@pytest.mark.parametrize("host", ["::", "192.0.2.1", "example.com"])
def test_other_non_loopback_hosts_are_refused_without_explicit_token(supervisor_factory, host):
    """IPv6 any, a routable address, or a host name: refused before binding, exit 2."""
    sup = supervisor_factory([SLEEPER], token=None, host=host, wait_healthy=False)
    assert sup.wait_exit(timeout=20) == 2
    assert f"refusing to listen on non-loopback address {host}" in sup.log()


def test_no_request_field_can_name_a_file_or_a_command(supervisor_factory, tmp_path):
    """Bodies with command/path/env/cwd fields get 422 and spawn nothing; schemas allow only
    name and timeout."""
    sup = supervisor_factory([SLEEPER])
    schema = httpx.get(sup.base_url + "/openapi.json").json()
    components = schema["components"]["schemas"]
    bodies = {}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            params = {p["name"] for p in operation.get("parameters", [])}
            assert params <= {"name", "limit"}, f"{method} {path} takes {params}"
            if "requestBody" in operation:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                refs = [s["$ref"] for s in body.get("anyOf", [body]) if "$ref" in s]
                assert refs, f"{method} {path}: {body}"
                bodies[path] = [components[r.rsplit("/", 1)[1]] for r in refs]
    assert set(bodies) == {"/process/start", "/process/kill", "/process/restart"}
    for path, models in bodies.items():
        for model in models:
            assert set(model["properties"]) <= {"name", "timeout"}, (path, model)
            assert model.get("additionalProperties") is False, (path, model)

    baseline = len(sup.events())
    canary = tmp_path / f"pwned-{uuid.uuid4().hex}"
    values = {
        "command": ["touch", str(canary)],
        "cmd": f"touch {canary}",
        "args": [str(canary)],
        "argv": ["touch", str(canary)],
        "path": str(canary),
        "file": "/etc/passwd",
        "env": {"LD_PRELOAD": str(canary)},
        "cwd": "/",
        "directory": "/",
    }
    for path in bodies:
        for field in FOREIGN_FIELDS:
            for body in ({field: values[field]}, {"name": "sleeper", field: values[field]}):
                answer = sup.client.post(path, json=body)
                assert answer.status_code == 422, (path, body, answer.text)
                assert field in answer.text
    _no_spawn(sup, baseline)
    assert not canary.exists()


def test_program_name_is_matched_against_the_config_only(supervisor_factory):
    """Path-, shell- and NUL-laden names in a URL or a body get 404/422 and never a spawn."""
    sup = supervisor_factory([SLEEPER])
    baseline = len(sup.events())
    for name in HOSTILE_NAMES:
        answer = sup.client.get("/process", params={"name": name})
        assert answer.status_code in (404, 422), (name, answer.text)
        for path in ("/process/start", "/process/restart", "/process/kill"):
            answer = sup.client.post(path, json={"name": name})
            assert answer.status_code in (404, 422), (path, name, answer.text)
            # the same name smuggled in as raw JSON text, escapes left to the server's parser
            raw = json.dumps({"name": name}, ensure_ascii=True)
            answer = sup.client.post(
                path, content=raw, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code in (404, 422), (path, raw, answer.text)
    for url in ("/process/../etc/passwd", "/process/sleeper/start", "/process/start/sleeper"):
        assert sup.client.post(url, json={}).status_code in (404, 405)
    _no_spawn(sup, baseline)
    # the configured name itself does start it: the checks above could have failed
    assert sup.client.post("/process/start", json={"name": "sleeper"}).status_code == 200
    assert sup.wait_state("running", "sleeper")["pid"] in {p.pid for p in sup.wait_workload(1)}
