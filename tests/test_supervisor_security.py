"""Tokens: where they come from, who may read them, and where they must never appear."""

from __future__ import annotations

import stat

import httpx

from tests.conftest import demo_program


def test_generated_token_file_is_private_and_never_logged(supervisor_factory, tmp_path):
    """Without a configured token one is generated 0600 beside the DB, works, and is not logged."""
    sup = supervisor_factory([demo_program()], token=None)
    token_file = sup.db.with_name(sup.db.name + ".token")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    sup.token = token
    assert sup.client.get("/processes").status_code == 200
    sup.wait_workload(4)
    sup.client.post("/process/restart").raise_for_status()
    assert str(token_file) in sup.log()
    assert token not in sup.log()
    logs_dir = sup.db.parent / "logs"
    assert all(token not in p.read_text(errors="replace") for p in logs_dir.iterdir())


def test_generated_token_is_reused_on_restart(supervisor_factory):
    """A second start on the same DB keeps the generated token, so clients keep working; only
    the start that generated it logs token_generated."""
    first = supervisor_factory([demo_program(autostart=False)], token=None)
    token = first.db.with_name(first.db.name + ".token").read_text().strip()
    assert "event=token_generated" in first.log()
    first.close_client()
    first.popen.terminate()
    assert first.wait_exit(timeout=15) == 0
    second = supervisor_factory([demo_program(autostart=False)], token=None, db=first.db)
    second.token = token
    assert second.client.get("/processes").status_code == 200
    assert "event=token_generated" not in second.log()
    assert "event=token_read" in second.log()


def test_token_is_not_passed_to_programs(supervisor):
    """SUPERVISOR_TOKEN stays in the supervisor: no program process inherits it."""
    for proc in supervisor.wait_workload(4):
        assert "SUPERVISOR_TOKEN" not in proc.environ()


def test_non_loopback_bind_without_explicit_token_is_refused(supervisor_factory):
    """--host 0.0.0.0 with a generated token: exit 2 and a message saying what to set."""
    sup = supervisor_factory([demo_program()], token=None, host="0.0.0.0", wait_healthy=False)
    assert sup.wait_exit(timeout=20) == 2
    assert "refusing to listen on non-loopback address 0.0.0.0" in sup.log()
    assert "SUPERVISOR_TOKEN" in sup.log()
    assert sup.workload() == []


def test_non_loopback_bind_with_explicit_token_is_allowed(supervisor_factory):
    """--host 0.0.0.0 with SUPERVISOR_TOKEN set starts (we talk to it on 127.0.0.1 only)."""
    sup = supervisor_factory([demo_program(autostart=False)], host="0.0.0.0")
    assert sup.client.get("/processes").status_code == 200
    assert "url=http://0.0.0.0:" in sup.log()


def test_short_token_is_refused(supervisor_factory):
    """A SUPERVISOR_TOKEN under 16 characters is refused at start with exit 2."""
    sup = supervisor_factory([demo_program()], token="short", wait_healthy=False)
    assert sup.wait_exit(timeout=20) == 2
    assert "shorter than 16 characters" in sup.log()
    assert "short" not in sup.log().replace("shorter", "")


def test_token_file_from_config_is_used(supervisor_factory, tmp_path):
    """server.token_file supplies the token when SUPERVISOR_TOKEN is unset."""
    token = "t" * 20 + "-from-file"
    (tmp_path / "token").write_text(token + "\n")
    sup = supervisor_factory(
        [demo_program(autostart=False)], token=None, server={"token_file": "token"}
    )
    assert httpx.get(sup.base_url + "/processes").status_code == 401
    sup.token = token
    assert sup.client.get("/processes").status_code == 200
    assert token not in sup.log()


def test_port_in_use_is_a_clear_error(supervisor_factory):
    """A port already taken gives exit 2 and a message naming host:port."""
    first = supervisor_factory([demo_program(autostart=False)])
    port = int(first.base_url.rsplit(":", 1)[1])
    second = supervisor_factory(
        [demo_program(autostart=False)],
        port=port,
        db=first.db.with_name("other.db"),
        wait_healthy=False,
        name="second",
    )
    assert second.wait_exit(timeout=20) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in second.log()
    assert first.healthy()


def test_an_unusable_db_folder_is_a_clear_error(supervisor_factory, tmp_path):
    """The DB's folder is a file: exit 2 naming the lock file and the way out, before any token."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the DB's folder should be\n")
    sup = supervisor_factory(
        [demo_program(autostart=False)], token=None, db=blocker / "state.db", wait_healthy=False
    )
    assert sup.wait_exit(timeout=20) == 2
    assert f"state DB lock {blocker}/state.db.lock cannot be created" in sup.log()
    assert f"make {blocker} a writable folder, or pass another --db" in sup.log()
    assert "Traceback" not in sup.log()
