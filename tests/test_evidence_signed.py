"""Signed evidence: statements, the Merkle log, sealed criteria, and verify naming what broke."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from flows.evidence import RunWriter, new_run_dir, verify
from flows.evidence import log as evidence_log
from flows.evidence.dsse import CHECKPOINT, seal
from flows.evidence.keys import PublicKey, SigningKey, load_signing_key
from flows.evidence.merkle import Tree, leaf_hash, verify_consistency, verify_inclusion
from flows.evidence.writer import batched_log
from tests.evidence_helpers import REPO, T0, make_run, result, run_drill

# RFC 6962 reference leaves and tree heads (certificate-transparency's test data).
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_CONSISTENCY_6_8 = [
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
]


def _brute_root(leaves: list[bytes]) -> bytes:
    """MTH straight from the RFC's definition, no memo, no loop tricks."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _brute_root(leaves[:k]) + _brute_root(leaves[k:])).digest()


def test_merkle_roots_and_proofs_match_the_rfc_6962_reference_vectors():
    """Roots for sizes 1..8 and the 6->8 consistency proof are CT's published values."""
    tree = Tree([leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES])
    assert [tree.root(n).hex() for n in range(1, 9)] == CT_ROOTS
    assert [h.hex() for h in tree.consistency_proof(6, 8)] == CT_CONSISTENCY_6_8


def test_every_inclusion_and_consistency_proof_verifies_and_a_wrong_root_does_not():
    """Sizes 1..40 against a brute-force MTH; a flipped root byte fails each verifier."""
    for n in range(1, 41):
        tree = Tree([leaf_hash(bytes([i, n])) for i in range(n)])
        root = tree.root()
        assert root == _brute_root(tree.leaves)
        bad = bytes([root[0] ^ 1]) + root[1:]
        for i in range(n):
            path = tree.inclusion_proof(i)
            assert verify_inclusion(i, n, tree.leaves[i], path, root)
            assert not verify_inclusion(i, n, tree.leaves[i], path, bad)
        for m in range(1, n):
            proof = tree.consistency_proof(m)
            assert verify_consistency(m, n, proof, _brute_root(tree.leaves[:m]), root)
            assert not verify_consistency(m, n, proof, _brute_root(tree.leaves[:m]), bad)


def test_a_tree_grown_from_a_compact_range_has_the_full_trees_roots_and_new_proofs():
    """From the compact range of m leaves (popcount(m) hashes), appending the rest gives
    the roots and the new leaves' audit paths of the tree built from every leaf."""
    for n in range(1, 34):
        leaves = [leaf_hash(bytes([i, n])) for i in range(n)]
        full = Tree(leaves)
        for m in range(n):
            compact = full.compact_range(m)
            assert len(compact) == bin(m).count("1")
            grown = Tree.from_compact_range(m, compact)
            for leaf in leaves[m:]:
                grown.append(leaf)
                assert grown.root() == full.root(len(grown))
            for i in range(m, n):
                assert grown.inclusion_proof(i) == full.inclusion_proof(i)
            if m >= 2:  # leaf 0's sibling is inside the first compact subtree
                with pytest.raises(ValueError, match="inside the compact range"):
                    grown.inclusion_proof(0)
    with pytest.raises(ValueError, match="compact range of 2 hashes, got 1"):
        Tree.from_compact_range(3, [leaf_hash(b"x")])


# --- keys and the statement ------------------------------------------------------------


def test_the_key_is_generated_on_first_use_under_xdg_config_home_mode_0600(tmp_path, monkeypatch):
    """No key anywhere: one is made at $XDG_CONFIG_HOME/chaos-drills, private to the user."""
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    run = make_run(tmp_path / "root", 0)
    key_file = tmp_path / "config" / "chaos-drills" / "evidence-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(run.parent.rglob("*.pem"))  # the private key never goes under the root
    public = (run.parent / "evidence-key.pub").read_bytes()
    der = serialization.load_pem_public_key(public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    envelope = json.loads((run / "attestation.dsse.json").read_text())
    assert envelope["signatures"][0]["keyid"] == hashlib.sha256(der).hexdigest()


def test_securesystemslib_verifies_our_envelope_and_reads_the_statement(tmp_path):
    """An independent DSSE implementation accepts the signature; the statement is in-toto v1."""
    run = make_run(tmp_path, 0)
    public = serialization.load_pem_public_key((tmp_path / "evidence-key.pub").read_bytes())
    envelope_dict = json.loads((run / "attestation.dsse.json").read_text())
    keyid = envelope_dict["signatures"][0]["keyid"]
    key = SSlibKey.from_crypto(public, keyid=keyid)
    envelope = Envelope.from_dict(envelope_dict)
    assert list(envelope.verify([key], 1)) == [keyid]
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert statement["predicate"]["result"] == "PASSED"
    assert statement["predicate"]["passedTests"] == ["api_kill", "sigterm"]
    names = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for rel in ("results.json", "junit.xml", "criteria.json", "EVIDENCE.md", "drill_sigterm.log"):
        assert names[f"{run.name}/{rel}"] == hashlib.sha256((run / rel).read_bytes()).hexdigest()
    configuration = {c["name"] for c in statement["predicate"]["configuration"]}
    assert {"criteria.json", "flows/drills/api_kill.py"} <= configuration
    envelope.payload = envelope.payload.replace(b"PASSED", b"FAILED")
    with pytest.raises(Exception, match="(?i)verif|threshold"):
        envelope.verify([key], 1)


def test_a_failed_drill_is_a_failed_statement_and_the_report_never_says_pass(tmp_path):
    """One drill fails: FAILED predicate; EVIDENCE.md names the FAIL line in its findings."""
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=["api_kill", "sigterm"],
                       command="scripts/recovery_drill.sh x", config=None, owner="sre-team")  # fmt: skip
    run_drill(writer, "api_kill")
    run_drill(writer, "sigterm", "fail")
    writer.finalize()
    statement = _statement(writer.run_dir)
    assert statement["predicate"]["result"] == "FAILED"
    assert statement["predicate"]["failedTests"] == ["sigterm"]
    report = (writer.run_dir / "EVIDENCE.md").read_text()
    assert "**Owner:** sre-team" in report
    assert "`scripts/recovery_drill.sh x`" in report
    assert "`sigterm` fail: `FAIL: sigterm fail`" in report
    assert "final log line: `FAIL: sigterm fail`" in report
    conclusion = report.split("## Conclusion")[1]
    assert "1 of 2 drill(s) did not pass (sigterm)" in conclusion and "PASS" not in conclusion
    assert "Not in scope" in report  # the other registered drills weaken the claim


def test_passes_under_session_or_unknown_containment_are_warned_not_passed(tmp_path):
    """Per-drill containment: cgroup passes, session and unknown passes are warnedTests and
    findings of EVIDENCE.md; a drill without the field claims nothing either way."""
    drills = ["api_kill", "sigterm", "sigkill", "crash_restart", "bad_input"]
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=drills, command="t", config=None)
    given = {"api_kill": "cgroup", "sigterm": "session", "sigkill": "unknown",
             "crash_restart": "session"}  # fmt: skip
    for drill in drills:
        status = "fail" if drill == "crash_restart" else "pass"
        writer.log_path(drill).write_text(f"{status.upper()}: {drill}\n")
        extra = {"containment": given[drill]} if drill in given else {}
        writer.record(result(drill, status, **extra))
    writer.finalize()
    predicate = _statement(writer.run_dir)["predicate"]
    assert predicate["passedTests"] == ["api_kill", "bad_input"]
    assert predicate["warnedTests"] == ["sigterm", "sigkill"]
    assert predicate["failedTests"] == ["crash_restart"]  # a failure stays a failure
    report = (writer.run_dir / "EVIDENCE.md").read_text()
    findings = report.split("## Findings")[1].split("## Conclusion")[0]
    assert "Passed but contained by session, not cgroup" in findings
    assert (
        "escapes the supervisor's kill, so these passes are weaker claims: `sigterm`." in findings
    )
    assert "did not report (/healthz gave none): these passes do not show a process tree was " \
        "contained: `sigkill`." in findings  # fmt: skip
    assert "`api_kill`" not in findings and "`bad_input`" not in findings
    assert "- containment: cgroup" in report.split("### api_kill")[1].split("###")[0]
    assert "containment" not in report.split("### bad_input")[1].split("##")[0]


def test_all_passes_under_cgroup_containment_leave_no_warning(tmp_path):
    """Every drill contained by cgroup: all passed, no warning, no containment finding."""
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=["api_kill"], command="t", config=None)
    writer.log_path("api_kill").write_text("PASS: api_kill\n")
    writer.record(result("api_kill", containment="cgroup"))
    writer.finalize()
    predicate = _statement(writer.run_dir)["predicate"]
    assert (predicate["passedTests"], predicate["warnedTests"]) == (["api_kill"], [])
    assert "Passed but" not in (writer.run_dir / "EVIDENCE.md").read_text()


def _statement(run: Path) -> dict:
    return json.loads(
        base64.b64decode(json.loads((run / "attestation.dsse.json").read_text())["payload"])
    )


# --- the log ---------------------------------------------------------------------------


def test_each_run_is_a_leaf_with_an_inclusion_proof_and_old_checkpoints_are_kept(tmp_path):
    """Three runs: entries 0..2, checkpoint size 3, checkpoints 1 and 2 kept, proofs verify."""
    runs = [make_run(tmp_path, day) for day in range(3)]
    lines = [json.loads(x) for x in (tmp_path / "log" / "entries.jsonl").read_text().splitlines()]
    assert [(e["index"], e["run_id"]) for e in lines] == [(i, r.name) for i, r in enumerate(runs)]
    for entry, run in zip(lines, runs, strict=True):
        assert (
            entry["leaf_sha256"]
            == hashlib.sha256((run / "attestation.dsse.json").read_bytes()).hexdigest()
        )
    kept = sorted(p.name for p in (tmp_path / "log" / "checkpoints").iterdir())
    assert kept == ["checkpoint-00000001.dsse.json", "checkpoint-00000002.dsse.json"]
    proof = json.loads((runs[1] / "inclusion.json").read_text())
    assert (proof["log_index"], proof["tree_size"]) == (1, 2)
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert [r.log_index for r in report.runs] == [0, 1, 2]
    assert report.checkpoints[""]["size"] == 3


def test_a_fresh_process_appends_without_rehashing_the_old_leaves(tmp_path, monkeypatch):
    """Nothing of the log in memory: the next root comes from the newest run's audit path,
    checked against the checkpoint, not from every leaf; verify agrees with the result."""
    for day in range(5):
        make_run(tmp_path, day)
    evidence_log._LOGS.clear()  # as a new interpreter starts

    def no_leaf_reads(root, entry):
        raise AssertionError(f"leaf {entry.index} was read")

    monkeypatch.setattr(evidence_log, "_leaf_hash_of", no_leaf_reads)
    newest = make_run(tmp_path, 5)
    monkeypatch.undo()
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.checkpoints[""]["size"] == 6
    assert json.loads((newest / "inclusion.json").read_text())["log_index"] == 5


def test_a_fresh_process_rehashes_every_leaf_when_the_checkpoint_disagrees(tmp_path):
    """The newest run's inclusion proof is gone (a crash before it was written): the
    appender falls back to every leaf, and the log it signs still verifies."""
    runs = [make_run(tmp_path, day) for day in range(3)]
    (runs[-1] / "inclusion.json").unlink()
    evidence_log._LOGS.clear()
    make_run(tmp_path, 3)
    problems = verify(tmp_path).problems
    assert problems == [f"{runs[-1].name}: inclusion.json unusable (evidence: "
                        f"{runs[-1] / 'inclusion.json'} is missing; {runs[-1]} is not a run "
                        "folder (a run writes results.json as soon as it starts))"]  # fmt: skip


def test_entries_written_in_another_json_shape_are_still_read_whole(tmp_path):
    """The fast read of entries.jsonl knows only the writer's own line shape; compact JSON
    (another tool rewrote the file, same entries) is read line by line with json."""
    runs = [make_run(tmp_path, day) for day in range(3)]
    entries = tmp_path / "log" / "entries.jsonl"
    lines = [json.loads(x) for x in entries.read_text().splitlines()]
    entries.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))
    evidence_log._LOGS.clear()
    assert evidence_log.last_entry(tmp_path) == evidence_log.Entry(
        2, runs[2].name, lines[2]["leaf_sha256"]
    )
    assert dict(evidence_log.logged(tmp_path)) == {r.name: i for i, r in enumerate(runs)}
    make_run(tmp_path, 3)
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.checkpoints[""]["size"] == 4


def test_a_batch_signs_one_checkpoint_proves_every_run_and_adopts_a_dead_one(tmp_path):
    """Within batched_log runs get entries only; leaving it signs one checkpoint, writes
    every inclusion proof and signs FAILED the run whose writer went away meanwhile."""
    make_run(tmp_path, 0)
    with batched_log(tmp_path):
        inside = [make_run(tmp_path, 1)]
        dead = RunWriter(new_run_dir(tmp_path, now=T0 + timedelta(days=2)), drills=["api_kill"],
                         command="t", config=None)  # fmt: skip
        dead.close()
        inside.append(make_run(tmp_path, 3))
        assert not any((run / "inclusion.json").exists() for run in inside)
        lines = (tmp_path / "log" / "entries.jsonl").read_text().splitlines()
        assert [json.loads(x)["run_id"] for x in lines[1:]] == [r.name for r in inside]
        assert not (tmp_path / "log" / "checkpoints").exists()  # still the first checkpoint
    assert sorted(p.name for p in (tmp_path / "log" / "checkpoints").iterdir()) == [
        "checkpoint-00000001.dsse.json"
    ]
    assert _statement(dead.run_dir)["predicate"]["result"] == "FAILED"
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert [r.log_index for r in report.runs] == [0, 1, 3, 2]  # the dead run joined last
    assert report.checkpoints[""]["size"] == 4


def _legacy_run(root: Path, name: str, previous: Path | None) -> Path:
    """A run as written before signing existed: results, a log, a chained manifest."""
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"run_id": name, "status": "complete",
                                                  "verdict": "pass", "drills": []}))  # fmt: skip
    (run / "drill_x.log").write_text("PASS: x\n")
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}
    link = None
    if previous is not None:
        link = {"run_id": previous.name,
                "manifest_sha256": hashlib.sha256((previous / "manifest.json").read_bytes()).hexdigest()}  # fmt: skip
    manifest = {"schema_version": 1, "run_id": name, "algorithm": "sha256", "files": files,
                "previous": link}  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_chain_only_runs_are_adopted_in_chain_order_and_never_rewritten(tmp_path):
    """Legacy runs join the log by their manifests, in chain order, files untouched."""
    # chain order differs from name order: -02 was sealed before -01
    first = _legacy_run(tmp_path, "chaos-drill-20200101-000002", None)
    second = _legacy_run(tmp_path, "chaos-drill-20200101-000001", first)
    before = {p: p.read_bytes() for p in (*first.iterdir(), *second.iterdir())}
    new = make_run(tmp_path, 0)
    lines = [json.loads(x) for x in (tmp_path / "log" / "entries.jsonl").read_text().splitlines()]
    assert [(e["run_id"], e.get("leaf")) for e in lines] == [
        (first.name, "manifest.json"), (second.name, "manifest.json"), (new.name, None)]  # fmt: skip
    assert {p: p.read_bytes() for p in before} == before
    assert not (first / "inclusion.json").exists()
    report = verify(tmp_path)
    assert report.ok, report.problems
    (second / "drill_x.log").write_text("FAIL: x\n")  # the old chain is still checked
    assert f"{second.name}: changed file drill_x.log" in "".join(verify(tmp_path).problems)


_DIES = """
import os, sys
from pathlib import Path
from flows.evidence import RunWriter
writer = RunWriter(Path(sys.argv[1]), drills=["api_kill", "sigterm"], command="t", config=None)
writer.log_path("api_kill").write_text("PASS: api_kill\\n")
writer.record({"id": "api_kill", "status": "pass", "summary": "PASS: api_kill"})
print("ready", flush=True)
sys.stdin.read()
"""


def _start_writer(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _DIES, str(run_dir)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_sigkilled_runner_gets_a_failed_statement_on_the_next_run(tmp_path):
    """Its writer gone, the next run signs it FAILED from disk and logs it before itself."""
    proc = _start_writer(tmp_path / "chaos-drill-20261127-020000")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    after = make_run(tmp_path, 0)
    dead = tmp_path / "chaos-drill-20261127-020000"
    statement = _statement(dead)
    assert statement["predicate"]["result"] == "FAILED"
    assert statement["predicate"]["failedTests"] == ["sigterm"]
    assert "did not finish" in (dead / "EVIDENCE.md").read_text()
    names = [
        json.loads(x)["run_id"]
        for x in (tmp_path / "log" / "entries.jsonl").read_text().splitlines()
    ]
    assert names == [dead.name, after.name]
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.incomplete == [dead.name]


def test_a_run_still_going_in_another_process_is_left_alone(tmp_path):
    """Two runs at once: the one finishing first does not sign the other's folder."""
    proc = _start_writer(tmp_path / "chaos-drill-20261127-020000")
    try:
        make_run(tmp_path, 0)
        assert not (tmp_path / "chaos-drill-20261127-020000" / "attestation.dsse.json").exists()
        assert verify(tmp_path).ok
    finally:
        proc.kill()
        proc.wait(30)


# --- verify names what broke: one tamper per case --------------------------------------


@pytest.fixture
def history(tmp_path) -> list[Path]:
    return [make_run(tmp_path, day) for day in range(4)]


def _problems(root: Path) -> str:
    report = verify(root)
    assert not report.ok
    return "\n".join(report.problems)


def test_tamper_a_changed_byte_in_a_log(tmp_path, history):
    log = history[1] / "drill_api_kill.log"
    log.write_bytes(b"X" + log.read_bytes()[1:])
    assert f"{history[1].name}: drill_api_kill.log differs from the signed statement" in _problems(
        tmp_path
    )


def test_tamper_a_statement_re_signed_with_another_key(tmp_path, history):
    other = Ed25519PrivateKey.generate()
    forged = SigningKey(other, PublicKey.of(other.public_key()), tmp_path / "other.pem")
    statement = _statement(history[2])
    statement["predicate"]["result"] = "PASSED"
    (history[2] / "attestation.dsse.json").write_bytes(
        seal("application/vnd.in-toto+json", json.dumps(statement).encode(), forged)
    )
    problems = _problems(tmp_path)
    assert f"{history[2].name}: attestation.dsse.json: not signed by key" in problems
    assert (
        f"log entry 2 ({history[2].name}): attestation.dsse.json does not match the log" in problems
    )


def test_tamper_a_run_folder_deleted_from_the_middle(tmp_path, history):
    shutil.rmtree(history[1])
    assert (f"log entry 1 ({history[1].name}): run folder {history[1].name} is missing: deleted "
            "after it was logged") in _problems(tmp_path)  # fmt: skip


def test_tamper_the_newest_run_removed_with_the_checkpoint_left_as_it_was(tmp_path, history):
    shutil.rmtree(history[-1])
    entries = tmp_path / "log" / "entries.jsonl"
    entries.write_text("".join(entries.read_text().splitlines(keepends=True)[:-1]))
    assert ("log/checkpoint.dsse.json covers 4 runs but log/entries.jsonl lists 3: the newest 1 "
            "run(s) were removed after the checkpoint was signed") in _problems(tmp_path)  # fmt: skip


def test_tamper_two_runs_swapped(tmp_path, history):
    a, b = history[1], history[2]
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    problems = _problems(tmp_path)
    assert (f"log entry 1 ({a.name}): the folder holds the statement logged for {b.name} "
            "(entry 2): runs swapped or renamed") in problems  # fmt: skip


def test_tamper_a_forged_checkpoint_over_a_rewritten_history(tmp_path, history):
    """Even with the real key, a rewritten past contradicts the older checkpoints kept."""
    key = load_signing_key()
    statement = _statement(history[0])
    statement["predicate"]["result"] = "FAILED"
    forged = seal("application/vnd.in-toto+json", json.dumps(statement).encode(), key)
    (history[0] / "attestation.dsse.json").write_bytes(forged)
    leaves = [(r / "attestation.dsse.json").read_bytes() for r in history]
    entries = [{"index": i, "run_id": r.name, "leaf_sha256": hashlib.sha256(x).hexdigest()}
               for i, (r, x) in enumerate(zip(history, leaves, strict=True))]  # fmt: skip
    (tmp_path / "log" / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    root = Tree([leaf_hash(x) for x in leaves]).root()
    payload = evidence_log.checkpoint_payload(tmp_path.name, 4, root)
    (tmp_path / "log" / "checkpoint.dsse.json").write_bytes(
        seal(CHECKPOINT, json.dumps(payload).encode(), key)
    )
    problems = _problems(tmp_path)
    assert ("log/checkpoints/checkpoint-00000001.dsse.json (size 1, root ") in problems
    assert (
        "the current log is not an extension of it: its first 1 entries were rewritten" in problems
    )
    assert "checkpoint-00000003.dsse.json" in problems


def test_tamper_a_criteria_file_edited_after_the_run(tmp_path, history):
    criteria_file = history[2] / "criteria.json"
    criteria = json.loads(criteria_file.read_text())
    criteria["drills"][0]["thresholds"]["VANISH_GRACE_S_LIMIT"] = 99
    criteria_file.write_text(json.dumps(criteria, indent=2))
    problems = _problems(tmp_path)
    assert f"{history[2].name}: criteria.json changed after it was sealed" in problems
    assert f"{history[2].name}: criteria.json entry for drill api_kill was edited" in problems


def test_criteria_are_sealed_before_the_first_drill_and_every_drill_ran_under_them(tmp_path):
    """The sealed digest per drill is what each recorded drill carries; its time comes first."""
    run = make_run(tmp_path, 0)
    criteria = json.loads((run / "criteria.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert (
        results["criteria_sha256"]
        == hashlib.sha256((run / "criteria.json").read_bytes()).hexdigest()
    )
    sealed = {d["id"]: d["sha256"] for d in criteria["drills"]}
    assert {d["id"]: d["criteria_sha256"] for d in results["drills"]} == sealed
    assert (
        criteria["drills"][0]["code_sha256"]
        == hashlib.sha256((REPO / "flows" / "drills" / "api_kill.py").read_bytes()).hexdigest()
    )
    assert "VANISH_GRACE_S" in criteria["drills"][0]["timeouts_s"]
    assert min(d["started_at"] for d in results["drills"]) >= criteria["sealed_at"]


def test_verify_since_a_copied_checkpoint_and_a_multi_host_root_name_the_host(tmp_path):
    """--since SIZE:ROOT passes while the log grows; a break under hosts/b names host b."""
    for host in ("a", "b"):
        for day in range(2):
            make_run(tmp_path / "hosts" / host, day)
    envelope = json.loads((tmp_path / "hosts" / "a" / "log" / "checkpoint.dsse.json").read_text())
    head = json.loads(base64.b64decode(envelope["payload"]))
    make_run(tmp_path / "hosts" / "a", 2)
    assert verify(tmp_path / "hosts" / "a", since=f"{head['size']}:{head['root_sha256']}").ok
    assert not verify(tmp_path / "hosts" / "a", since=f"2:{'0' * 64}").ok
    assert verify(tmp_path).ok
    victim = next((tmp_path / "hosts" / "b").glob("chaos-drill-*"))
    (victim / "results.json").write_text("{}")
    problems = verify(tmp_path).problems
    assert problems and all(p.startswith("host b: ") for p in problems)
