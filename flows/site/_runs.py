"""One evidence page per run, and the run's raw files placed beside it.

A synthetic run (``"synthetic": true`` in its results) is labelled beside its verdict.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from flows.evidence.layout import ATTESTATION
from flows.registry import DRILL_IDS, key_metric
from flows.site._attest import attest_block
from flows.site._html import a, badge, evidence_badge, h, metric_text, when
from flows.site._shell import plain_page

log = logging.getLogger("flows.site")


def link_or_copy(src: str, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def copy_run(folder: Path, dest: Path) -> tuple[set[str], dict[str, bytes]]:
    """Put a run's flat files next to its page; return their names and the bytes of the
    logs and JSON files the page quotes.

    A hard link is one cheap syscall per file at 3,650 runs; the copy in the docs
    dir is only read (by MkDocs), and the next publish unlinks it. Another disk
    falls back to a copy.
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = {n for n in os.listdir(dest) if n != "index.html" and not n.endswith(".log.html")}
    copied: set[str] = set()
    texts: dict[str, bytes] = {}
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    except OSError as exc:
        log.warning("site.run_unlistable run=%s reason=%s", folder.name, exc)
        return copied, texts
    for entry in entries:
        target = dest / entry.name
        try:
            if entry.name not in before or not os.path.samefile(entry.path, target):
                if entry.name in before:
                    os.unlink(target)
                link_or_copy(entry.path, target)
            if entry.name.endswith((".log", ".json")):
                texts[entry.name] = Path(entry.path).read_bytes()
        except OSError as exc:
            log.warning("site.file_unreadable path=%s reason=%s", entry.path, exc)
            continue
        copied.add(entry.name)
    for gone in before - copied:
        os.unlink(dest / gone)
    return copied, texts


def parse_json(name: str, texts: dict[str, bytes]) -> tuple[dict[str, Any] | None, str | None]:
    if name not in texts:
        return None, None
    try:
        data = json.loads(texts[name])
    except ValueError as exc:
        return None, f"{name} unreadable: {exc}"
    return (data, None) if isinstance(data, dict) else (None, f"{name} is not an object")


_KEY_LINE = re.compile(
    r"->|process tree|survivor|exited|signal:|restarted|rows kept|kills:|error|refused",
    re.IGNORECASE,
)


def is_verdict(line: str) -> bool:
    """A PASS/FAIL line, bare or after the log's timestamp."""
    text = line.strip()
    after = text.split(" ", 1)[1] if " " in text else ""
    return text.startswith(("PASS:", "FAIL:")) or after.startswith(("PASS:", "FAIL:"))


def fail_line(lines: list[str]) -> tuple[int, str] | None:
    """The log's verdict line (its last PASS/FAIL line, else its last line) and its number."""
    last: tuple[int, str] | None = None
    for i in range(len(lines) - 1, -1, -1):
        text = lines[i].strip()
        if not text:
            continue
        if last is None:
            last = (i + 1, lines[i])
        if is_verdict(text):
            return i + 1, lines[i]
    return last


def log_page_name(name: str) -> str:
    """The readable page of a raw log: ``drill_x.log`` → ``drill_x.log.html``."""
    return f"{name}.html"


def log_page(run_id: str, name: str, lines: list[str], up: str, gen: str) -> str:
    """A log as a page, one anchor per line (``#L42``): browsers show it, never download it.

    ``python -m http.server`` serves ``.log`` as application/octet-stream; this
    page is what every link to a log opens, the raw file is linked beside it.
    """
    mark = fail_line(lines)
    width = len(str(len(lines)))
    rows = "\n".join(
        f'<span id="L{i}" class="line{" verdict-line" if mark and mark[0] == i else ""}">'
        f'<a href="#L{i}">{i:>{width}}</a>  {h(text)}</span>'
        for i, text in enumerate(lines, start=1)
    )
    body = (
        f"<p>{a('./', '← run ' + h(run_id))} · raw file {a(quote(name), h(name))} "
        f'({len(lines)} lines)</p>\n<pre class="log"><code>{rows}</code></pre>'
    )
    return plain_page(f"{run_id} / {name}", body, up, gen)


def _log_lines(name: str, lines: list[str], limit: int = 4) -> str:
    """Key lines and the final PASS/FAIL line of a log, numbered, each linking to its line."""
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    page = quote(log_page_name(name))
    link = f"{a(page, h(name))} (raw {a(quote(name), 'file')})"
    if not numbered:
        return f"<p>{link} is empty.</p>\n"
    mark = fail_line(lines)
    last_no = mark[0] if mark else numbered[-1][0]
    key = [(n, t) for n, t in numbered if n < last_no and _KEY_LINE.search(t)][-limit:]
    shown = key + [(last_no, lines[last_no - 1])]
    note = (
        ""
        if is_verdict(lines[last_no - 1])
        else (" The last line is not a PASS/FAIL line: the drill did not finish.")
    )
    width = len(str(last_no))
    body = "\n".join(f'<a href="{page}#L{n}">{n:>{width}}</a>  {h(t)}' for n, t in shown)
    return (
        f"<p>Evidence from {link}, {len(lines)} lines; lines "
        f"{', '.join(str(n) for n, _ in shown)}:{note}</p>\n<pre><code>{body}</code></pre>\n"
    )


SYNTHETIC_NOTE = (
    "Synthetic run: written by <code>python -m flows synth</code> for demos and tests "
    '(<code>"synthetic": true</code> in results.json). It says nothing about the supervisor.'
)


def is_synthetic(results: dict[str, Any] | None) -> bool:
    """Whether a run's ``results.json`` marks it as made up (``"synthetic": true``)."""
    return results is not None and results.get("synthetic") is True


def _dict(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else empty: a damaged results.json still renders."""
    return value if isinstance(value, dict) else {}


def _facts(run: Any, results: dict[str, Any], scope: list[str]) -> str:
    host, versions = _dict(results.get("host")), _dict(results.get("versions"))
    started, finished = run.started_at, run.finished_at
    took = (
        f" ({(finished - started).total_seconds():.1f} s)"
        if not pd.isna(started) and not pd.isna(finished)
        else ""
    )
    facts = [
        ("Date", f"{when(started)} → {when(finished)}{took}"),
        ("Drill command", f"<code>{h(run.command or '—')}</code>"),
        ("Artifact folder", f"<code>{h(run.path)}</code>"),
        ("Scope", f"{len(scope)} drill(s): {h(', '.join(scope) or 'none')}"),
        (
            "Host",
            h(
                f"{host.get('hostname', '?')}, {host.get('platform', '?')}, "
                f"{host.get('cpus', '?')} CPU(s)"
            ),
        ),
        ("Versions", h(", ".join(f"{k} {v}" for k, v in versions.items()) or "—")),
        ("Git commit", f"<code>{h(results.get('git_commit') or '—')}</code>"),
        ("Config", f"<code>{h(results.get('config') or 'default')}</code>"),
        ("Program", f"<code>{h(results.get('program') or 'not recorded')}</code>"),
    ]
    return "<p>" + "<br>\n".join(f"<strong>{k}:</strong> {v}" for k, v in facts) + "</p>"


def _nav(run: Any, neighbours: tuple[str | None, str | None]) -> str:
    prev, nxt = neighbours
    nav = []
    if prev:
        nav.append(f"← previous run {a(f'../{prev}/', prev)}")
    if nxt:
        nav.append(f"next run {a(f'../{nxt}/', nxt)} →")
    if not pd.isna(run.started_at):
        month = f"{run.started_at:%Y-%m}"
        nav.append(a(f"../../archive/{month}/#{run.run_id}", f"the night in the archive ({month})"))
    return f"<p>{' · '.join(nav)}</p>"


_ORDER = {"fail": 0, "error": 1, "incomplete": 2, "pass": 3}
SESSION_NOTE = (
    "contained by session only (no cgroup): a process that leaves the session "
    "(setsid) is not tracked, so this drill's no-orphan claim is weaker"
)


def _containment(d: dict[str, Any]) -> str:
    kind = d.get("containment")
    if kind == "session":
        return f'<span class="weak-claim">containment: session, {SESSION_NOTE}</span>'
    if kind:
        return f"containment: {h(kind)}"
    return "containment: not recorded (a run from before it was)"


def _drill_results(entries: list[dict[str, Any]], logs: dict[str, list[str]]) -> list[str]:
    """One section per drill, failing ones first, each with its FAIL line beside the verdict."""
    out = []
    ordered = sorted(entries, key=lambda d: _ORDER.get(str(d.get("status")), 1))
    for d in ordered:
        did, name = str(d.get("id")), str(d.get("log") or "")
        status = str(d.get("status"))
        dur = d.get("duration_s")
        metric = metric_text(did, key_metric(did, d.get("metrics")))
        beside = ""
        mark = fail_line(logs[name]) if name in logs else None
        if status != "pass" and mark:
            href = f"{quote(log_page_name(name))}#L{mark[0]}"
            beside = f' <a class="fail-line" href="{href}">line {mark[0]}: {h(mark[1].strip())}</a>'
        elif status != "pass":
            beside = f' <span class="fail-line">{h(d.get("summary", ""))}</span>'
        out.append(
            f'<section id="drill-{h(did)}" class="drill-result drill-{h(status)}">'
            f"<h3>{badge(status)} {a(f'../../drills/{quote(did)}/', h(did))}{beside}</h3>"
        )
        out.append(
            f"<p>{h(d.get('summary', ''))}<br>\n"
            f"{f'{dur:.2f} s' if isinstance(dur, int | float) else 'no duration'} · "
            f"{h(metric)} · {_containment(d)}</p>"
        )
        out.append(_log_lines(name, logs[name]) if name in logs else "<p>No log was written.</p>")
        out.append("</section>")
    return out


def _findings(
    run: Any, entries: list[dict[str, Any]], scope: list[str], manifest_error: str | None
) -> str:
    findings = []
    for d in entries:
        status = d.get("status")
        if status in ("fail", "error"):
            findings.append(
                f"<strong>{h(d.get('id'))}</strong> {h(status)}: {h(d.get('summary', ''))}"
            )
        elif status == "incomplete":
            findings.append(
                f"<strong>{h(d.get('id'))}</strong> did not finish: the run stopped before it"
            )
    missing = [d for d in DRILL_IDS if d not in scope]
    if missing:
        findings.append(f"not in this run's scope: {h(', '.join(missing))}")
    findings += [f"evidence: {h(line)}" for line in run.problems.splitlines()]
    if manifest_error:
        findings.append(f"evidence: {h(manifest_error)}")
    if not findings:
        return "<p>None.</p>"
    return "<ul>\n" + "\n".join(f"<li>{f}</li>" for f in findings) + "\n</ul>"


def _conclusion(
    run: Any, entries: list[dict[str, Any]], signed: bool, log_problems: tuple[str, ...]
) -> str:
    passed = sum(d.get("status") == "pass" for d in entries)
    if run.status != "complete":
        conclusion = (
            f"The run is {h(run.status)}: {passed} of {len(entries)} drill(s) passed "
            "before it stopped, so it proves nothing about the rest."
        )
    elif run.verdict == "pass":
        conclusion = f"All {len(entries)} drill(s) in scope passed."
    else:
        conclusion = f"{len(entries) - passed} of {len(entries)} drill(s) did not pass."
    if run.verified:
        checked = (
            "its files match its signed statement and manifest, and it is in the log"
            if signed
            else "its files match its manifest and it is linked into the chain (it is not signed)"
        )
        conclusion += f" <code>python -m flows verify</code> found this run intact: {checked}."
    elif run.problems:
        conclusion += " The evidence does <strong>not</strong> verify: treat this run as untrusted."
    if log_problems:
        conclusion += (
            f" <strong>The evidence log of this root does not verify</strong> "
            f"({len(log_problems)} problem(s), first: {h(log_problems[0])}): a run may have "
            "been removed or rewritten; see the home page's evidence integrity."
        )
    return f"<p>{conclusion}</p>"


def signed_files(texts: dict[str, bytes]) -> dict[str, str] | None:
    """The files and sha256 that the run's signed statement lists (``attestation.dsse.json``),
    read without checking the signature (the signed-evidence block checks it); None if none."""
    try:
        envelope = json.loads(texts[ATTESTATION])
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        subjects = statement["subject"]
        return {
            str(s["name"]).split("/", 1)[-1]: str(s["digest"]["sha256"])
            for s in subjects
            if isinstance(s, dict)
        }
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None


def _unsealed(signed: dict[str, str] | None, copied: set[str]) -> str:
    """A run without manifest.json: never sealed, unless a later run signed it from disk."""
    if signed is None:
        return "<p>No manifest.json: the run was never sealed, so its files cannot be checked.</p>"
    links = ", ".join(a(quote(n), h(n)) for n in sorted(signed) if n in copied)
    rows = "\n".join(f"{h(digest)}  {h(name)}" for name, digest in sorted(signed.items()))
    return (
        "<p>No manifest.json: the run stopped before sealing it (its writer died). The next "
        "run signed the folder as it was on disk and appended it to the log, so its files are "
        "checked against that signed statement instead; the sha256 of every file as signed "
        f"(the signature is checked below). Raw files: {links}.</p>\n<pre><code>{rows}</code></pre>"
    )


def _evidence_files(
    manifest: dict[str, Any] | None,
    copied: set[str],
    known: set[str],
    signed: dict[str, str] | None = None,
) -> str:
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return _unsealed(signed, copied)
    files = sorted(manifest["files"].items())
    links = ", ".join(a(quote(n), h(n)) for n, _ in files if n in copied)
    rows = "\n".join(f"{h(digest)}  {h(name)}" for name, digest in files)
    out = (
        f"<p>The sha256 of every file as sealed in manifest.json. Raw files: "
        f"{links}.</p>\n<pre><code>{rows}</code></pre>"
    )
    previous = manifest.get("previous")
    if not isinstance(previous, dict):
        return out + "\n<p>First run of its chain (<code>previous</code> is null).</p>"
    pid = str(previous.get("run_id"))
    target = a(f"../{quote(pid)}/", h(pid)) if pid in known else h(pid)
    return out + (
        f"\n<p>Chained to {target} by the sha256 of its manifest, "
        f"<code>{h(previous.get('manifest_sha256'))}</code>.</p>"
    )


def run_page(
    run: Any,
    results: dict[str, Any] | None,
    manifest: dict[str, Any] | None,
    manifest_error: str | None,
    copied: set[str],
    logs: dict[str, list[str]],
    root: Path,
    neighbours: tuple[str | None, str | None],
    known: set[str],
    up: str = "../../../",
    gen: str = "generated/",
    signed: dict[str, str] | None = None,
    log_problems: tuple[str, ...] = (),
) -> str:
    """The evidence page of one run (a whole HTML page), in the order of the evidence
    document; failing drills first, each at ``#drill-<id>``. The run id is its title,
    and publish adds the page to the search index. A synthetic run carries a
    SYNTHETIC badge beside its verdict. ``signed`` is :func:`signed_files` of the run,
    ``log_problems`` what verify found wrong with the root's log (named on the page)."""
    results = results or {}
    entries = [d for d in results.get("drills") or [] if isinstance(d, dict)]
    scope = [str(d.get("id")) for d in entries]
    badges = f"{badge(run.verdict or run.status)} {evidence_badge(run.status, run.verified, run.problems)}"
    if is_synthetic(results):
        badges += f" {badge('synthetic')}</p>\n<p>{SYNTHETIC_NOTE}"
    body = "\n".join(
        [
            f"<p>{badges}</p>",
            _facts(run, results, scope),
            _nav(run, neighbours),
            '<h2 id="results">Results</h2>',
            *_drill_results(entries, logs),
            '<h2 id="findings">Findings</h2>',
            _findings(run, entries, scope, manifest_error),
            '<h2 id="conclusion">Conclusion</h2>',
            _conclusion(run, entries, signed is not None, log_problems),
            '<h2 id="evidence-files">Evidence files</h2>',
            _evidence_files(manifest, copied, known, signed),
            attest_block(Path(run.path)),
            '<h2 id="verify-it-yourself">Verify it yourself</h2>',
            f"<pre><code>python -m flows verify {h(run.path)}\n"
            f"python -m flows verify {h(root)}   # every run and the hash chain</code></pre>",
            # verify/ is always built: the package ships a short page, a checkout's replaces it
            f"<p>See {a(f'{up}verify/', 'how to verify evidence')}.</p>",
        ]
    )
    return plain_page(str(run.run_id), body, up, gen)
