"""Synthetic run folders in the evidence format, for demos, tests and benchmarks.

The folders follow ``docs/evidence-format.md`` exactly (logs ending in one
``PASS:``/``FAIL:`` line, ``results.json``, ``junit.xml``, ``manifest.json``
chained to the previous sealed run), so ``python -m flows verify`` accepts them.
A history has what a real one has: mostly passing nights, short failure
episodes, the odd harness ``error``, a few nights with no run, a rerun of one
drill in the afternoon, and one run that stopped half way (no manifest).
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from flows.trends.maths import EXPECTED_DRILLS

__all__ = ["cmd_synth", "write_synthetic_runs"]

_PREFIX = "chaos-drill-"
_VERSIONS = {
    "python": "3.11.7",
    "chaos-drills": "0.1.0",
    "fastapi": "0.150.0",
    "uvicorn": "0.54.0",
    "psutil": "7.2.2",
}
_UNFINISHED = "incomplete: the run stopped before this drill finished"


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Drill:
    """Writes one drill's log lines and result for a night's behaviour."""

    def __init__(self, rng: random.Random, drill: str, t: datetime, drift: float) -> None:
        self.rng, self.drill, self.t, self.drift = rng, drill, t, drift
        self.lines: list[str] = []
        self.pid = rng.randrange(2000, 60000)

    def say(self, message: str, ms: float = 5.0) -> None:
        self.t += timedelta(milliseconds=ms * (0.5 + self.rng.random()))
        self.lines.append(f"{_ts(self.t)} {message}")

    def tree(self, n: int) -> str:
        return ", ".join(str(self.pid + i) for i in range(n))

    def run(self, outcome: str) -> tuple[str, dict[str, Any]]:
        """Log lines for ``outcome`` (pass/fail/error); returns (summary, metrics)."""
        r, d = self.rng, self.drill
        self.say(f"drill {d}: start target=worker config=demo", 1)
        self.say(f"supervisor: started pid={self.pid} port={r.randrange(30000, 60000)}", 300)
        if outcome == "error":
            self.say("GET /healthz -> connection refused (attempt 1)", 500)
            self.say("GET /healthz -> connection refused (attempt 20)", 9500)
            return "FAIL: harness error: the supervisor never answered /healthz in 10 s", {}
        self.say("GET /healthz -> 200 in 2.1 ms", 40)
        n = r.randrange(3, 6)
        self.say(f"process tree before: {n} processes: {self.tree(n)}", 20)
        bad = outcome == "fail"
        return getattr(self, f"_{d}", self._generic)(n, bad)

    def _ms(self, base: float, spread: float = 0.25) -> float:
        return round(base * self.drift * r_lognorm(self.rng, spread), 2)

    def _sigterm(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        exit_ms = self._ms(140)
        self.say(f"signal: SIGTERM -> supervisor pid={self.pid}", 2)
        self.say(f"supervisor: exited code=0 after {exit_ms} ms", exit_ms)
        if bad:
            self.say(f"process tree after: 1 survivor: {self.pid + n - 1} (setsid escapee)", 50)
            return f"FAIL: 1 of {n} workload processes survived SIGTERM", {
                "supervisor_exit_ms": exit_ms,
                "survivors": 1,
            }
        self.say("process tree after: none", 50)
        return f"PASS: supervisor exited in {exit_ms} ms and none of {n} processes survived", {
            "supervisor_exit_ms": exit_ms,
            "survivors": 0,
        }

    def _api_kill(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        rt = self._ms(3.2, 0.4)
        if bad and self.rng.random() < 0.5:
            self.say('POST /process/kill {"name": "worker"} -> no answer in 5 s', 5000)
            return "FAIL: POST /process/kill gave no answer in 5 s", {"http_status": 0}
        self.say(f'POST /process/kill {{"name": "worker"}} -> 200 in {rt} ms', rt)
        survivors = [self.pid + 2] if bad else []
        self.say(
            f'body: {{"name": "worker", "pid": {self.pid + 1}, "already_stopped": false, '
            f'"signal": "SIGTERM", "duration_ms": {rt - 0.3:.1f}, "survivors": {survivors}}}',
            1,
        )
        vanish = round(rt + self._ms(0.4), 2)
        metrics = {"kill_round_trip_ms": rt, "tree_vanish_ms": vanish, "http_status": 200}
        if bad:
            self.say(f"process tree after: 1 survivor: {self.pid + 2}", 10)
            return f"FAIL: kill answered 200 but 1 of {n} processes survived", metrics
        self.say(f"process tree after: none ({n} processes gone in {vanish} ms)", 10)
        self.say("GET /healthz -> 200 in 1.0 ms", 5)
        return f"PASS: kill answered 200 in {rt} ms and the tree of {n} processes is gone", metrics

    def _sigkill(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        vanish = self._ms(310 if not bad else 2600)
        self.say(f"signal: SIGKILL -> supervisor pid={self.pid}", 2)
        self.say(f"process tree after {vanish} ms: none", vanish)
        self.say(f"supervisor: restarted on same db pid={self.pid + 10}", 400)
        self.say("GET /events?limit=5 -> 200 reconciled=worker", 20)
        metrics = {"tree_vanish_ms": vanish}
        if bad:
            return f"FAIL: workload survived SIGKILL for {vanish} ms (limit 2000 ms)", metrics
        return f"PASS: no workload process survived SIGKILL ({vanish} ms); restart reconciled", (
            metrics
        )

    def _crash_restart(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        delay = self._ms(1150, 0.15)
        self.say(f"signal: SIGKILL -> worker pid={self.pid + 1} (from outside)", 2)
        if bad:
            self.say("GET /process?name=worker -> 200 state=BACKOFF after 10000 ms", 10000)
            return "FAIL: worker not restarted within its 10 s backoff", {}
        self.say(f"GET /process?name=worker -> 200 state=RUNNING pid={self.pid + 7}", delay)
        self.say("GET /events?limit=3 -> 200 event=restarted", 5)
        return f"PASS: worker restarted in {delay} ms with a new pid and an event", {
            "restart_delay_ms": delay
        }

    def _legacy_db(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        rows = 12 if not bad else 11
        self.say("db: legacy v0 schema, user_version=0, 4 processes, 8 events", 3)
        self.say(f"supervisor: started on legacy db; rows kept {rows} of 12", 300)
        if bad:
            self.say("supervisor stderr: sqlite3.OperationalError: no such column: created_at", 1)
            return f"FAIL: legacy db lost {12 - rows} row(s) and logged a DB error", {
                "rows_kept": rows
            }
        return "PASS: started on a v0 db without a DB error and kept all 12 rows", {
            "rows_kept": rows
        }

    def _bad_input(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        checks = 14 if not bad else 13
        for route, code in (("POST /process/kill (no token)", 401), ("GET /process?name=x", 404)):
            self.say(f"{route} -> {code}", 2)
        self.say("POST /process/kill (2 MB body) -> " + ("500" if bad else "413"), 3)
        self.say("POST /process/start (malformed JSON) -> 422", 2)
        if bad:
            return "FAIL: 13 of 14 malformed requests got their 4xx; a 2 MB body got 500", {
                "checks_passed": checks
            }
        return "PASS: all 14 malformed or unauthorised requests got their 4xx", {
            "checks_passed": checks
        }

    def _kill_under_load(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        p99 = self._ms(24, 0.3)
        self.say("load: 8 pollers on GET /processes, 20 concurrent kills", 5)
        self.say(f"kills: 20 answered, p50 {p99 / 3:.1f} ms, p99 {p99} ms", p99 * 20)
        if bad:
            self.say("kills: 1 answered 503 under load", 1)
            return "FAIL: 1 of 20 concurrent kills answered 503", {"kill_p99_ms": p99}
        self.say("process tree after: none", 10)
        return f"PASS: 20 concurrent kills answered 200 (p99 {p99} ms); the tree is gone", {
            "kill_p99_ms": p99
        }

    def _generic(self, n: int, bad: bool) -> tuple[str, dict[str, Any]]:
        return ("FAIL: check failed" if bad else "PASS: check passed"), {}


def r_lognorm(rng: random.Random, sigma: float) -> float:
    return rng.lognormvariate(0.0, sigma)


def _junit(results: dict[str, Any]) -> bytes:
    drills = results["drills"]
    fails = sum(d["status"] == "fail" for d in drills)
    errors = sum(d["status"] not in ("pass", "fail") for d in drills)
    total = sum(d["duration_s"] or 0.0 for d in drills)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<testsuites>",
        f'<testsuite name="{results["run_id"]}" tests="{len(drills)}" failures="{fails}" '
        f'errors="{errors}" skipped="0" time="{total:.3f}" '
        f'timestamp="{results["started_at"]}" hostname="{results["host"]["hostname"]}">',
    ]
    for d in drills:
        out.append(
            f'<testcase classname="chaos_drills" name="{d["id"]}" '
            f'time="{(d["duration_s"] or 0.0):.3f}">'
        )
        if d["status"] == "fail":
            out.append(f"<failure message={quoteattr(d['summary'])}/>")
        elif d["status"] != "pass":
            out.append(f"<error message={quoteattr(d['summary'])}/>")
        out.append(f"<system-out>{escape(d['summary'])}</system-out></testcase>")
    out += ["</testsuite>", "</testsuites>", ""]
    return "\n".join(out).encode()


class _History:
    """Decides, night after night, what each drill does; failures come in short episodes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.episode = dict.fromkeys(EXPECTED_DRILLS, 0)
        self.base = {d: 0.01 for d in EXPECTED_DRILLS} | {"api_kill": 0.04, "sigkill": 0.02}

    def outcome(self, drill: str) -> str:
        r = self.rng.random()
        if self.episode[drill] > 0:
            self.episode[drill] -= 1
            return "fail" if r < 0.8 else "pass"
        if r < 0.003:
            return "error"
        if r < 0.003 + self.base[drill]:
            return "fail"
        if r > 0.997:
            self.episode[drill] = self.rng.randrange(2, 7)
        return "pass"


def _existing_tail(root: Path) -> dict[str, str] | None:
    sealed = sorted(p for p in root.glob(f"{_PREFIX}*/manifest.json"))
    if not sealed:
        return None
    return {"run_id": sealed[-1].parent.name, "manifest_sha256": _sha(sealed[-1].read_bytes())}


def _write_run(
    root: Path,
    started: datetime,
    drills: tuple[str, ...],
    history: _History,
    rng: random.Random,
    previous: dict[str, str] | None,
    stop_after: int | None,
    drift: float,
    command: str,
    force_fail: str | None = None,
) -> tuple[Path, dict[str, str] | None]:
    """One run folder; returns (path, the chain link the next run should use)."""
    run_id = f"{_PREFIX}{started:%Y%m%d-%H%M%S}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    files: dict[str, bytes] = {}
    entries: list[dict[str, Any]] = []
    t = started + timedelta(milliseconds=rng.randrange(50, 400))
    for i, drill in enumerate(drills):
        log = f"drill_{drill}.log"
        if stop_after is not None and i >= stop_after:
            entries.append(
                {
                    "id": drill,
                    "status": "incomplete",
                    "started_at": None,
                    "duration_s": None,
                    "summary": _UNFINISHED,
                    "log": log,
                    "metrics": {},
                }
            )
            if i == stop_after:  # the drill that was running when the run stopped
                d = _Drill(rng, drill, t, drift)
                d.say(f"drill {drill}: start target=worker config=demo", 1)
                d.say(f"supervisor: started pid={d.pid}", 300)
                files[log] = ("\n".join(d.lines) + "\n").encode()
            continue
        outcome = "fail" if drill == force_fail else history.outcome(drill)
        d = _Drill(rng, drill, t, drift)
        summary, metrics = d.run(outcome)
        d.say(summary, 3)
        files[log] = ("\n".join(d.lines) + "\n").encode()
        status = "pass" if summary.startswith("PASS") else outcome
        entries.append(
            {
                "id": drill,
                "status": status,
                "started_at": _ts(t),
                "duration_s": round((d.t - t).total_seconds(), 3),
                "summary": summary,
                "log": log,
                "metrics": metrics,
            }
        )
        t = d.t + timedelta(milliseconds=rng.randrange(100, 600))
    complete = stop_after is None
    results = {
        "schema_version": 1,
        "run_id": run_id,
        "status": "complete" if complete else "incomplete",
        "verdict": (
            ("pass" if all(e["status"] == "pass" for e in entries) else "fail")
            if complete
            else None
        ),
        "started_at": _ts(started),
        "finished_at": _ts(t) if complete else None,
        "host": {
            "hostname": "drill-01",
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
            "cpus": 2,
        },
        "versions": _VERSIONS,
        "git_commit": f"{rng.getrandbits(160):040x}",
        "command": command.format(run_dir=f"pilot_artifacts/{run_id}"),
        "config": None,
        "drills": entries,
    }
    files["results.json"] = (json.dumps(results, indent=2) + "\n").encode()
    if complete:
        files["junit.xml"] = _junit(results)
    for name, data in files.items():
        (run_dir / name).write_bytes(data)
    if not complete:
        return run_dir, previous
    manifest = {
        "schema_version": 1,
        "run_id": run_id,
        "algorithm": "sha256",
        "files": {name: _sha(data) for name, data in sorted(files.items())},
        "previous": previous,
    }
    raw = (json.dumps(manifest, indent=2) + "\n").encode()
    (run_dir / "manifest.json").write_bytes(raw)
    return run_dir, {"run_id": run_id, "manifest_sha256": _sha(raw)}


def write_synthetic_runs(
    root: Path, runs: int, seed: int, start: datetime | None = None
) -> list[Path]:
    """Write ``runs`` run folders under ``root``, one night after another from ``start``.

    ``start`` is the first night's run time (UTC); by default the history ends
    on the current UTC night. Same ``seed``, same folders. Nights skipped (gaps)
    and an afternoon rerun of one drill come from the seed too; with 10 or more
    runs there are always at least two gaps, with 5 or more a failed ``api_kill``,
    with 3 or more one incomplete run.
    """
    if runs < 0:
        raise ValueError(f"runs must be 0 or more, got {runs}")
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Plan the nights first so the default start can put the last run on tonight.
    plan: list[tuple[int, bool]] = []  # (night offset, afternoon rerun)
    night, forced_gaps = 0, {runs // 3, (2 * runs) // 3} if runs >= 10 else set()
    while len(plan) < runs:
        if len(plan) in forced_gaps or rng.random() < 0.008:
            forced_gaps.discard(len(plan))
            night += 1
            continue
        plan.append((night, False))
        if len(plan) < runs and len(plan) > 2 and rng.random() < 0.01:
            plan.append((night, True))
        night += 1
    if start is None:
        today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=plan[-1][0] if plan else 0)
    start = start.astimezone(UTC)
    full = [i for i, (_, rerun) in enumerate(plan) if not rerun and i >= runs // 2]
    incomplete_at = full[0] if runs >= 3 and full else None
    fail_at = next((i for i in range((runs * 3) // 4, runs) if not plan[i][1]), None)
    history = _History(rng)
    previous = _existing_tail(root)
    written: list[Path] = []
    for i, (offset, rerun) in enumerate(plan):
        at = start + timedelta(days=offset, seconds=rng.randrange(0, 40))
        drift = 1.0 + 0.15 * (offset / max(night, 1))  # latencies creep up slowly
        if rerun:
            at += timedelta(hours=12, minutes=rng.randrange(60))
            scope: tuple[str, ...] = (rng.choice(EXPECTED_DRILLS),)
            command = "prefect deployment run nightly-drills/nightly --param drills=" + scope[0]
        else:
            scope = EXPECTED_DRILLS
            command = "scripts/recovery_drill.sh {run_dir}"
        stop = rng.randrange(1, len(scope)) if i == incomplete_at and len(scope) > 1 else None
        forced = "api_kill" if i == fail_at and runs >= 5 else None
        path, previous = _write_run(
            root, at, scope, history, rng, previous, stop, drift, command, forced
        )
        written.append(path)
    return written


def cmd_synth(args: Any) -> int:
    """``python -m flows synth --artifacts ROOT --runs N --seed S``."""
    paths = write_synthetic_runs(Path(args.artifacts), args.runs, args.seed)
    print(f"synth: wrote {len(paths)} run folder(s) under {args.artifacts}")
    return 0
