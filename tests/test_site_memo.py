"""The site's verify memo (``<site>/.verify-memo.json``): an incremental publish skips the
per-run checks of unchanged run folders, yet a tampered run still shows BROKEN, a memo of
another version is ignored, and the pages are those of a cold publish."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from flows.evidence import verify
from flows.evidence.memo import FORMAT, MEMO_FILE, RACY_NS, fingerprint
from flows.evidence.synthetic import write_synthetic_runs
from flows.site import publish, run_page_url

NOW = pd.Timestamp("2030-01-01T12:00:00Z")  # long after the runs: the same page every time


def _memo_runs(site: Path) -> dict[str, dict]:
    data = json.loads((site / MEMO_FILE).read_text())
    (root,) = data["roots"].values()
    return root["runs"]


def _publish(root: Path, site: Path) -> str:
    """Publish and return the home page's HTML."""
    index = publish(root, site, now=NOW)
    return index.read_text(encoding="utf-8")


def _warm(root: Path, site: Path) -> dict[str, dict]:
    """Publish until the memo holds every run folder (one changed less than memo.RACY_NS ago
    is not kept yet); the memo's runs."""
    wanted = {p.name for p in root.glob("chaos-drill-*")}
    deadline = time.monotonic() + 60
    while True:
        _publish(root, site)
        runs = _memo_runs(site)
        if set(runs) == wanted:
            return runs
        assert time.monotonic() < deadline, f"the memo never held {sorted(wanted - set(runs))}"


def _sealed_run_with_log(root: Path) -> tuple[Path, str]:
    for run in sorted(root.glob("chaos-drill-*")):
        logs = sorted(p.name for p in run.glob("drill_*.log"))
        if (run / "manifest.json").is_file() and (run / "attestation.dsse.json").is_file() and logs:
            return run, logs[0]
    raise AssertionError("the synthetic history must hold a sealed, signed run with a log")


def _run_page(site: Path, run: Path) -> str:
    return (site / run_page_url(run.name) / "index.html").read_text(encoding="utf-8")


@pytest.fixture
def warm(tmp_path: Path) -> dict:
    """Four synthetic runs published until the memo holds them all."""
    root, site = tmp_path / "artifacts", tmp_path / "site"
    write_synthetic_runs(root, 4, seed=5)
    memo = _warm(root, site)
    victim, log = _sealed_run_with_log(root)
    assert "NOT VERIFIED" not in _run_page(site, victim)
    return {"root": root, "site": site, "memo": memo, "victim": victim, "log": log}


def _rewrite_keeping_mtime(path: Path) -> None:
    """Same size, other bytes, the old mtime put back: only the ctime tells."""
    before = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[:-2] + (b"X\n" if not data.endswith(b"X\n") else b"Y\n"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("tamper", ["changed", "added", "removed"])
def test_a_run_tampered_after_the_memo_was_written_still_shows_broken(warm, tamper):
    """Content rewritten with its mtime restored, a file added, a file removed: the run's
    fingerprint changes, its checks run again, and its page and the home page say so."""
    root, site, victim, log = warm["root"], warm["site"], warm["victim"], warm["log"]
    kept = warm["memo"][victim.name]
    assert kept["verify"]["problems"] == []  # the memo vouched for the run before
    if tamper == "changed":
        _rewrite_keeping_mtime(victim / log)
        expected = f"changed file {log}"
    elif tamper == "added":
        (victim / "drill_extra.log").write_text("PASS: trust me\n")
        expected = "extra file drill_extra.log"
    else:
        (victim / log).unlink()
        expected = f"missing file {log}"
    assert fingerprint(victim) is not None and fingerprint(victim)[0] != kept["key"]
    home = _publish(root, site)
    page = _run_page(site, victim)
    assert "NOT VERIFIED" in page and expected in page
    assert "fail verification" in home
    assert _memo_runs(site).get(victim.name, {}).get("key") != kept["key"]


@pytest.mark.parametrize(
    ("field", "value", "believed"),
    [
        ("format", FORMAT, True),  # the control: this version's memo is trusted as it says
        ("format", "verify-memo-0", False),
        ("code", "0" * 64, False),
    ],
)
def test_a_memo_is_believed_only_when_made_by_this_version(warm, field, value, believed):
    """A memo forged to vouch for a tampered run (its entry given the run's new fingerprint)
    hides the change only when its format and code digest are this version's: one from
    another version is dropped whole. ``flows verify`` never reads the memo."""
    root, site, victim, log = warm["root"], warm["site"], warm["victim"], warm["log"]
    _rewrite_keeping_mtime(victim / log)
    memo_path = site / MEMO_FILE
    data = json.loads(memo_path.read_text())
    (runs,) = [r["runs"] for r in data["roots"].values()]
    new_key = fingerprint(victim)
    assert new_key is not None
    runs[victim.name]["key"] = new_key[0]
    data[field] = value
    memo_path.write_text(json.dumps(data))
    # the rewrite is too fresh for the memo to trust (memo.RACY_NS): poll until it is not,
    # so that only the version check decides
    ctime = max(p.stat().st_ctime_ns for p in victim.iterdir())
    deadline = time.monotonic() + 10
    while time.time_ns() - ctime <= RACY_NS:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _publish(root, site)
    page = _run_page(site, victim)
    assert ("NOT VERIFIED" not in page) is believed
    assert not verify(root).ok  # the CLI's check is always the full one


def test_pages_with_the_memo_are_those_of_a_cold_publish(warm, tmp_path):
    """The home page and a run page published with a warm memo are byte for byte those of a
    publish of the same tree into an empty site folder."""
    root, site, victim = warm["root"], warm["site"], warm["victim"]
    home = _publish(root, site)
    assert set(_memo_runs(site)) == {p.name for p in root.glob("chaos-drill-*")}
    cold = tmp_path / "cold"
    assert _publish(root, cold) == home
    assert _run_page(cold, victim) == _run_page(site, victim)


def test_the_memo_lives_in_the_site_and_never_in_the_evidence_root(warm):
    root, site = warm["root"], warm["site"]
    assert (site / MEMO_FILE).is_file()
    assert not list(root.rglob(MEMO_FILE)) and not list(root.rglob(".verify-memo*"))


def test_a_relative_site_dir_gets_the_mkdocs_pages(tmp_path, monkeypatch):
    """``--site-dir site`` (relative, the CLI's default) builds the home page too: MkDocs
    once wrote it under the staging folder and an empty build was merged."""
    write_synthetic_runs(tmp_path / "artifacts", 2, seed=3)
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(tmp_path / "site", ignore_errors=True)
    index = publish(Path("artifacts"), Path("site"), now=NOW)
    assert (tmp_path / "site" / "index.html").is_file(), index
    assert json.loads((tmp_path / "site" / ".mkdocs-files.json").read_text())
