"""Review fixes on the evidence side: downgrades, proofs, the docs snippet, synth's key,
the messages verify had no test for, and the run page's signature block."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows.evidence import RunWriter, new_run_dir, verify
from flows.evidence.dsse import seal
from flows.evidence.keys import PublicKey, SigningKey, load_signing_key, synthetic_key
from flows.evidence.merkle import verify_consistency, verify_inclusion
from flows.evidence.synthetic import write_synthetic_runs
from flows.evidence.writer import batched_log
from flows.site._attest import attest_block
from tests.conftest import run_flows
from tests.evidence_helpers import REPO, T0, make_run, run_drill


def _checkpoint(root: Path) -> dict:
    envelope = json.loads((root / "log" / "checkpoint.dsse.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))


def _statement(run: Path) -> dict:
    envelope = json.loads((run / "attestation.dsse.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))


def _rechain(root: Path) -> None:
    """Rewrite every manifest from the files as they are now, chained in name order: what
    anyone with write access can do to the hash chain."""
    previous = None
    for run in sorted(root.glob("chaos-drill-*")):
        files = {
            str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != "manifest.json"
        }
        link = (
            None
            if previous is None
            else {
                "run_id": previous.name,
                "manifest_sha256": hashlib.sha256(
                    (previous / "manifest.json").read_bytes()
                ).hexdigest(),
            }
        )
        manifest = {"schema_version": 1, "run_id": run.name, "algorithm": "sha256",
                    "files": files, "previous": link}  # fmt: skip
        (run / "manifest.json").write_text(json.dumps(manifest))
        previous = run


def _strip_signing(root: Path) -> None:
    """The downgrade: the log, every statement, proof and criteria file removed."""
    shutil.rmtree(root / "log")
    for run in root.glob("chaos-drill-*"):
        for name in ("attestation.dsse.json", "inclusion.json", "criteria.json"):
            (run / name).unlink(missing_ok=True)


# --- 1: a downgrade to the bare chain is BROKEN --------------------------------------------


def test_a_root_stripped_of_its_log_and_signatures_is_broken_with_key_or_since(tmp_path):
    root = tmp_path / "root"
    runs = [make_run(root, day) for day in range(4)]
    head = _checkpoint(root)
    since = f"{head['size']}:{head['root_sha256']}"
    pub = tmp_path / "kept-elsewhere.pub"
    shutil.copy(root / "evidence-key.pub", pub)
    _strip_signing(root)
    results = json.loads((runs[2] / "results.json").read_text())
    results["verdict"] = "fail"  # any rewrite the chain alone would let through
    (runs[2] / "results.json").write_text(json.dumps(results))
    _rechain(root)

    with_key = verify(root, key=str(pub), since=since)
    assert not with_key.ok
    problems = "\n".join(with_key.problems)
    assert "log/entries.jsonl is missing, but the root is signed" in problems
    assert f"--since {head['size']}:{head['root_sha256'][:12]}…: there is no log" in problems
    assert not verify(root).ok  # evidence-key.pub is still in the root
    cli = run_flows("verify", str(root), "--key", str(pub), "--since", since)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "the log was deleted" in cli.stdout

    (root / "evidence-key.pub").unlink()
    no_key = verify(root, since=since)
    assert not no_key.ok
    assert "there is no public key to check the log with" in "\n".join(no_key.problems)
    single = verify(runs[3], key=str(pub))
    assert "log/entries.jsonl is missing, but the root is signed" in "\n".join(single.problems)


def test_an_unsigned_run_newer_than_a_signed_one_is_a_downgrade(tmp_path):
    runs = [make_run(tmp_path, day) for day in range(3)]
    for name in ("attestation.dsse.json", "inclusion.json", "criteria.json"):
        (runs[2] / name).unlink()
    _rechain(tmp_path)
    expected = (
        f"{runs[2].name}: sealed but not signed, although {runs[0].name} before it is: a downgrade"
    )
    assert expected in "\n".join(verify(tmp_path).problems)
    shutil.rmtree(tmp_path / "log")
    assert expected in "\n".join(verify(runs[2]).problems)


def test_an_unsigned_leaf_logged_after_a_signed_one_is_a_downgrade(tmp_path):
    first = make_run(tmp_path, 0)
    late = tmp_path / "chaos-drill-20261130-000000"  # written by something that does not sign
    shutil.copytree(first, late)
    for name in ("attestation.dsse.json", "inclusion.json", "criteria.json"):
        (late / name).unlink()
    results = json.loads((late / "results.json").read_text())
    (late / "results.json").write_text(json.dumps({**results, "run_id": late.name}))
    _rechain(tmp_path)
    make_run(tmp_path, 5)  # adopts the unsigned run into the log by its manifest
    entries = [json.loads(x) for x in (tmp_path / "log" / "entries.jsonl").read_text().splitlines()]
    assert entries[1] == {**entries[1], "run_id": late.name, "leaf": "manifest.json"}
    assert (
        f"log entry 1 ({late.name}): logged unsigned (manifest.json) after entry 0 "
        f"({first.name}) was signed: a downgrade"
    ) in "\n".join(verify(tmp_path).problems)


# --- 10: verify --prove ----------------------------------------------------------------------


def test_verify_prove_prints_an_inclusion_proof_and_consistency_proofs_that_check(tmp_path):
    runs = [make_run(tmp_path, day) for day in range(5)]
    out = run_flows("verify", str(runs[1]), "--prove")
    assert out.returncode == 0, out.stdout + out.stderr
    proofs = json.loads(out.stdout)
    head = _checkpoint(tmp_path)
    assert proofs["checkpoint"]["size"] == head["size"] == 5
    assert proofs["checkpoint"]["root_sha256"] == head["root_sha256"]
    inclusion = proofs["inclusion"]
    assert (inclusion["run_id"], inclusion["log_index"], inclusion["tree_size"]) == (
        runs[1].name,
        1,
        5,
    )
    leaf = hashlib.sha256(b"\x00" + (runs[1] / "attestation.dsse.json").read_bytes()).digest()
    root = bytes.fromhex(head["root_sha256"])
    path = [bytes.fromhex(x) for x in inclusion["audit_path"]]
    assert verify_inclusion(1, 5, leaf, path, root)
    kept = sorted(p.name for p in (tmp_path / "log" / "checkpoints").iterdir())
    assert [c["from"].rsplit("/", 1)[1] for c in proofs["consistency"]] == kept
    for c in proofs["consistency"]:
        old = bytes.fromhex(c["old_root_sha256"])
        hops = [bytes.fromhex(x) for x in c["proof"]]
        assert verify_consistency(c["old_size"], 5, hops, old, root)
        assert not verify_consistency(c["old_size"], 5, hops, old[::-1], root)

    (runs[3] / "drill_api_kill.log").write_text("edited\n")
    broken = run_flows("verify", str(tmp_path), "--prove")
    assert broken.returncode == 1
    assert "verify: BROKEN" in broken.stdout and '"consistency"' not in broken.stdout


# --- 3: the docs snippet checks the signed log, not the proof's own root ---------------------


def _snippet(root: Path, run: Path) -> str:
    text = (REPO / "docs" / "verify.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    source = code.group(1)
    source = source.replace('pathlib.Path("pilot_artifacts")', f"pathlib.Path({str(root)!r})")
    return source.replace('root / "chaos-drill-20261129-020000"', f"root / {run.name!r}")


def _run_snippet(root: Path, run: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _snippet(root, run)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_docs_snippet_checks_runs_against_signed_checkpoints_and_rejects_a_forged_proof(
    tmp_path,
):
    runs = [make_run(tmp_path, day) for day in range(3)]
    for run in (runs[0], runs[2]):  # one proven under a kept checkpoint, one under the current
        ok = _run_snippet(tmp_path, run)
        assert ok.returncode == 0, ok.stderr
        assert "PASSED signed and intact" in ok.stdout
        assert "SYNTHETIC" not in ok.stdout
    leaf = (runs[2] / "attestation.dsse.json").read_bytes()
    forged = {"log_index": 0, "tree_size": 1, "audit_path": [],
              "root_sha256": hashlib.sha256(b"\x00" + leaf).hexdigest()}  # fmt: skip
    (runs[2] / "inclusion.json").write_text(json.dumps(forged))
    bad = _run_snippet(tmp_path, runs[2])
    assert bad.returncode != 0
    assert "not in the signed log" in bad.stderr
    assert "in the log at" not in bad.stdout


# --- 12: synth never signs with the real key ---------------------------------------------------


def test_synth_signs_with_the_published_synthetic_key_and_marks_the_statement(tmp_path):
    real = load_signing_key()  # the conftest's stand-in for the user's key
    root = tmp_path / "demo"
    made = run_flows("synth", "--artifacts", str(root), "--runs", "3", "--seed", "4")
    assert made.returncode == 0, made.stderr
    pub = (root / "evidence-key.pub").read_bytes()
    assert pub == synthetic_key().public.pem and pub != real.public.pem
    run = sorted(root.glob("chaos-drill-*"))[0]
    assert _statement(run)["predicate"]["synthetic"] is True
    checked = run_flows("verify", str(root))
    assert checked.returncode == 0, checked.stdout
    assert f"key: {synthetic_key().keyid} (the published synthetic key" in checked.stdout
    snippet = _run_snippet(root, run)
    assert snippet.returncode == 0, snippet.stderr
    assert "SYNTHETIC (made up, proves nothing)" in snippet.stdout
    assert "published synthetic key" in attest_block(run)

    mine = tmp_path / "mine.pem"
    given = run_flows("synth", "--artifacts", str(tmp_path / "b"), "--runs", "1",
                   "--signing-key", str(mine))  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert (tmp_path / "b" / "evidence-key.pub").read_bytes() == (load_signing_key(mine).public.pem)
    mixed = run_flows("synth", "--artifacts", str(tmp_path / "b"), "--runs", "1")
    assert mixed.returncode == 2
    assert "is signed by key" in mixed.stderr and "--signing-key" in mixed.stderr


def test_a_real_run_statement_carries_no_synthetic_marker(tmp_path):
    assert "synthetic" not in _statement(make_run(tmp_path, 0))["predicate"]


# --- 11: --help says what verify and synth do --------------------------------------------------


def test_verify_and_synth_help_explain_states_exit_codes_and_options():
    text = " ".join(run_flows("verify", "--help").stdout.split())  # argparse wraps lines
    for needed in ("INCOMPLETE", "BROKEN", "never sealed", "home page", "checkpoint: size N root H",
                   "--prove", "0 intact", "1 BROKEN", "examples:"):  # fmt: skip
        assert needed in text, needed
    synth = " ".join(run_flows("synth", "--help").stdout.split())
    assert "same seed, same history" in synth
    assert "how many runs" in synth
    assert "never your real evidence key" in synth
    assert '"synthetic": true' in synth


def test_docs_verify_names_every_verify_option():
    text = (REPO / "docs" / "verify.md").read_text()
    for option in ("--key", "--since", "--prove"):
        assert option in text, option
    intro = text.split("## One run", 1)[0]
    assert "signed" in intro.lower() and "Merkle log" in intro


# --- 14: the verify messages that had no test ---------------------------------------------------


def _edit_results(run: Path, **drill_fields: object) -> None:
    results = json.loads((run / "results.json").read_text())
    results["drills"][0].update(drill_fields)
    (run / "results.json").write_text(json.dumps(results))


def test_verify_names_criteria_sealed_after_a_drill_started(tmp_path):
    run = make_run(tmp_path, 0)
    sealed_at = json.loads((run / "criteria.json").read_text())["sealed_at"]
    _edit_results(run, started_at="2000-01-01T00:00:00+00:00")
    assert (
        f"{run.name}: criteria.json was sealed at {sealed_at}, after drill api_kill started "
        "at 2000-01-01T00:00:00+00:00"
    ) in verify(tmp_path).problems


def test_verify_names_a_drill_that_ran_under_other_criteria(tmp_path):
    run = make_run(tmp_path, 0)
    _edit_results(run, criteria_sha256="0" * 64)
    assert any(
        p.startswith(f"{run.name}: drill api_kill ran under criteria other than the sealed ones")
        for p in verify(tmp_path).problems
    )


def test_verify_names_a_sealed_run_whose_statement_is_missing(tmp_path):
    runs = [make_run(tmp_path, day) for day in range(2)]
    (runs[1] / "attestation.dsse.json").unlink()
    problems = verify(tmp_path).problems
    assert any(
        p.startswith(f"{runs[1].name}: sealed but attestation.dsse.json is missing")
        for p in problems
    )


def test_verify_names_an_inclusion_proof_that_proves_nothing(tmp_path):
    runs = [make_run(tmp_path, day) for day in range(3)]
    leaf = (runs[2] / "attestation.dsse.json").read_bytes()
    forged = {"log_index": 0, "tree_size": 1, "audit_path": [],
              "root_sha256": hashlib.sha256(b"\x00" + leaf).hexdigest()}  # fmt: skip
    (runs[2] / "inclusion.json").write_text(json.dumps(forged))
    assert (
        f"{runs[2].name}: inclusion.json does not prove the run in the checkpoint it names "
        "(log index 0, tree size 1)"
    ) in verify(tmp_path).problems


def test_verify_names_entries_no_checkpoint_signs_yet(tmp_path):
    make_run(tmp_path, 0)
    with batched_log(tmp_path):
        make_run(tmp_path, 1)  # logged, the checkpoint comes when the batch ends
        inside = verify(tmp_path).problems
    assert (
        "log/entries.jsonl lists 2 runs but the signed checkpoint covers 1: entries 1..1 are "
        "signed by no checkpoint"
    ) in inside
    assert verify(tmp_path).ok


# --- 8: a dead writer's EVIDENCE.md compares with the run before it ----------------------------


def test_a_run_signed_after_its_writer_died_compares_with_the_run_before_it(tmp_path):
    before = make_run(tmp_path, 0)
    dead = RunWriter(
        new_run_dir(tmp_path, now=T0 + timedelta(days=1)), drills=["api_kill"], command="t",
        config=None,
    )  # fmt: skip
    run_drill(dead, "api_kill")
    dead.close()  # as a runner that died
    make_run(tmp_path, 2)  # signs the dead run FAILED into the log
    report = (dead.run_dir / "EVIDENCE.md").read_text()
    assert "First run in this log" not in report
    assert f"since {before.name}" in report


# --- 15: the statement's url names the host of a multi-host root -------------------------------


def test_the_statement_url_of_a_host_run_is_its_hosts_page(tmp_path, monkeypatch):
    from flows.site._paths import run_page_url

    monkeypatch.setenv("NIGHTLY_SITE_URL", "https://drills.example/")
    run = make_run(tmp_path / "hosts" / "alpha", 0)
    url = _statement(run)["predicate"]["url"]
    assert url == "https://drills.example/" + run_page_url(run.name, "alpha")
    assert "/hosts/alpha/runs/" in url
    single = make_run(tmp_path / "one", 0)
    assert _statement(single)["predicate"]["url"].endswith(f"/generated/runs/{single.name}/")


# --- 7, 21: the run page's signature block ------------------------------------------------------


def test_the_run_page_names_a_removed_statement_instead_of_predating_signing(tmp_path):
    runs = [make_run(tmp_path, day) for day in range(3)]
    (runs[1] / "attestation.dsse.json").unlink()
    block = attest_block(runs[1])
    assert "NOT SIGNED" in block and "predates" not in block
    (runs[2] / "attestation.dsse.json").unlink()
    (runs[2] / "criteria.json").unlink()
    block = attest_block(runs[2])  # the log still lists it as signed
    assert "NOT SIGNED" in block and "the log lists this run as signed" in block


def test_the_run_page_says_predates_only_for_a_run_before_signing(tmp_path):
    old = tmp_path / "chaos-drill-20200101-000000"
    old.mkdir()
    (old / "results.json").write_text('{"status": "complete", "drills": []}')
    (old / "manifest.json").write_text('{"files": {}, "previous": null}')
    make_run(tmp_path, 0)
    assert "predates signed evidence" in attest_block(old)


def test_the_run_page_of_a_dead_writers_run_says_how_it_was_signed(tmp_path):
    make_run(tmp_path, 0)
    dead = RunWriter(
        new_run_dir(tmp_path, now=T0 + timedelta(days=1)), drills=["api_kill"], command="t",
        config=None,
    )  # fmt: skip
    run_drill(dead, "api_kill")
    dead.close()
    assert "Not signed yet" in attest_block(dead.run_dir)
    make_run(tmp_path, 2)
    block = attest_block(dead.run_dir)
    assert "<strong>valid</strong>" in block and "writer died" in block


def test_the_run_page_shows_the_checking_keys_fingerprint_and_a_different_claimed_one(tmp_path):
    run = make_run(tmp_path, 0)
    ours = load_signing_key().keyid
    assert f"<code>{ours}</code>" in attest_block(run)
    assert "claims another key" not in attest_block(run)
    other = Ed25519PrivateKey.generate()
    forged = SigningKey(other, PublicKey.of(other.public_key()), tmp_path / "other.pem")
    (run / "attestation.dsse.json").write_bytes(
        seal("application/vnd.in-toto+json", json.dumps(_statement(run)).encode(), forged)
    )
    block = attest_block(run)
    assert "<strong>INVALID</strong>" in block
    assert f"fingerprint (sha256 of the public key) <code>{ours}</code>" in block
    assert f"the envelope claims another key, <code>{forged.keyid}</code>" in block


@pytest.mark.parametrize("runs", [2])
def test_synthetic_histories_still_verify_with_their_published_key(tmp_path, runs):
    written = write_synthetic_runs(tmp_path, runs, seed=3, start=T0)
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.keyid == synthetic_key().keyid
    assert all(_statement(w)["predicate"]["synthetic"] for w in written)
