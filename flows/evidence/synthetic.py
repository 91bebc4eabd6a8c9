"""A made-up evidence history, for demos, tests and benchmarks.

This module owns only what each night's drills *did*: which drills a run had, their
outcome, metrics and log text. The run folders themselves (``results.json``,
``junit.xml``, the chained ``manifest.json``, the folder names) are written by
:class:`~flows.evidence.writer.RunWriter`, the writer real runs use, given this
history's clock, host, versions and commit and ``synthetic=True``; so the site,
trend and browser tests run on the real format, and every such run says
``"synthetic": true`` in its ``results.json``.

A history has what a real one has: mostly passing nights, short failure
episodes, the odd harness ``error``, a few nights with no run, a rerun of one
drill in the afternoon, and one run that stopped half way (never finalized, so
no manifest, exactly as a crashed run).
"""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.keys import SigningKey, load_signing_key, synthetic_key
from flows.evidence.writer import RunWriter, batched_log, new_run_dir
from flows.registry import DRILL_IDS

__all__ = ["cmd_synth", "write_synthetic_runs"]

_HOST = {"hostname": "drill-01", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "cpus": 2}
_VERSIONS = {
    "python": "3.11.7",
    "chaos-drills": "0.1.0",
    "fastapi": "0.150.0",
    "uvicorn": "0.54.0",
    "psutil": "7.2.2",
}
_NIGHTLY = "scripts/recovery_drill.sh pilot_artifacts/{run_id}"
_RERUN = "prefect deployment run nightly-drills/nightly --param drills={drill}"


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


class _Clock:
    """The writer's clock: reads whatever time the history has reached."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


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
        return round(base * self.drift * self.rng.lognormvariate(0.0, spread), 2)

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


class _History:
    """Decides, night after night, what each drill does; failures come in short episodes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.episode = dict.fromkeys(DRILL_IDS, 0)
        self.base = {d: 0.01 for d in DRILL_IDS} | {"api_kill": 0.04, "sigkill": 0.02}

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


@dataclass(frozen=True)
class _Night:
    """One run to write: when, which drills, and how it goes."""

    at: datetime
    scope: tuple[str, ...]
    command: str  # with ``{run_id}`` still to fill in
    commit: str
    drift: float  # latencies creep up slowly over the history
    stop_after: int | None = None  # drills finished before the run stopped, if it did
    force_fail: str | None = None


def _plan(rng: random.Random, runs: int) -> tuple[list[tuple[int, bool]], int]:
    """(night offset, afternoon rerun) per run, and the number of nights covered."""
    plan: list[tuple[int, bool]] = []
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
    return plan, night


def _record_drill(writer: RunWriter, drill: _Drill, outcome: str, started: datetime) -> None:
    """Run ``drill`` through ``outcome``, write its log and record its result."""
    summary, metrics = drill.run(outcome)
    drill.say(summary, 3)
    writer.log_path(drill.drill).write_text("\n".join(drill.lines) + "\n", encoding="utf-8")
    writer.record(
        {
            "id": drill.drill,
            "status": "pass" if summary.startswith("PASS") else outcome,
            "started_at": _ts(started),
            "duration_s": round((drill.t - started).total_seconds(), 3),
            "summary": summary,
            "log": writer.log_path(drill.drill).name,
            "metrics": metrics,
        }
    )


def _write_run(
    root: Path, night: _Night, history: _History, rng: random.Random, key: SigningKey
) -> Path:
    """One run folder, written by :class:`RunWriter` as a real run would be."""
    clock = _Clock(night.at)
    run_dir = new_run_dir(root, now=night.at, durable=False)
    writer = RunWriter(
        run_dir,
        drills=night.scope,
        command=night.command.format(run_id=run_dir.name),
        config=None,
        now=clock,
        host=lambda: dict(_HOST),
        versions=lambda: dict(_VERSIONS),
        git_commit=lambda: night.commit,
        synthetic=True,
        durable=False,  # rebuilt from its seed, never kept; fsyncs were a third of the time
        signing_key=key,
    )
    t = night.at + timedelta(milliseconds=rng.randrange(50, 400))
    for i, drill_id in enumerate(night.scope):
        if night.stop_after is not None and i >= night.stop_after:
            if i == night.stop_after:  # the drill that was running when the run stopped
                d = _Drill(rng, drill_id, t, night.drift)
                d.say(f"drill {drill_id}: start target=worker config=demo", 1)
                d.say(f"supervisor: started pid={d.pid}", 300)
                writer.log_path(drill_id).write_text("\n".join(d.lines) + "\n", encoding="utf-8")
            continue  # the writer keeps its "incomplete" entry, as for a crashed run
        outcome = "fail" if drill_id == night.force_fail else history.outcome(drill_id)
        d = _Drill(rng, drill_id, t, night.drift)
        _record_drill(writer, d, outcome, t)
        t = d.t + timedelta(milliseconds=rng.randrange(100, 600))
    if night.stop_after is None:
        clock.t = t
        writer.finalize()
    else:
        writer.close()  # as its runner died: the next run signs it FAILED into the log
    return run_dir


_BATCH = 365  # runs per signed checkpoint: a year of nights


def _night(rng: random.Random, at: datetime, rerun: bool, age: float, commit: str) -> _Night:
    """A nightly run of every drill at ``at``, or an afternoon rerun of one drill."""
    scope, command = DRILL_IDS, _NIGHTLY
    if rerun:
        at += timedelta(hours=12, minutes=rng.randrange(60))
        scope = (rng.choice(DRILL_IDS),)
        command = _RERUN.format(drill=scope[0])
    # latencies creep up slowly over the history (``age`` 0 at the start, 1 at the end)
    return _Night(at=at, scope=scope, command=command, commit=commit, drift=1.0 + 0.15 * age)


def _commit(seed: int, night: int) -> str:
    """A commit id that changes once a week, as a deployed checkout would."""
    return hashlib.sha1(f"synthetic:{seed}:{night // 7}".encode()).hexdigest()


def write_synthetic_runs(
    root: Path,
    runs: int,
    seed: int,
    start: datetime | None = None,
    *,
    signing_key: SigningKey | None = None,
) -> list[Path]:
    """Write ``runs`` run folders under ``root``, one night after another from ``start``.

    ``start`` is the first night's run time (UTC); by default the history ends
    on the current UTC night. Same ``seed``, same folders. Nights skipped (gaps)
    and an afternoon rerun of one drill come from the seed too; with 10 or more
    runs there are always at least two gaps, with 5 or more a failed ``api_kill``,
    with 3 or more one incomplete run.

    Runs are signed with ``signing_key``, by default the published synthetic key
    (:func:`flows.evidence.keys.synthetic_key`), never the user's real key: a root
    already signed by another key refuses them unless that key is passed.
    """
    if runs < 0:
        raise ValueError(f"runs must be 0 or more, got {runs}")
    rng = random.Random(seed)
    root = Path(root)
    # Plan the nights first so the default start can put the last run on tonight.
    plan, nights = _plan(rng, runs)
    if start is None:
        today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=plan[-1][0] if plan else 0)
    start = start.astimezone(UTC)
    full = [i for i, (_, rerun) in enumerate(plan) if not rerun and i >= runs // 2]
    incomplete_at = full[0] if runs >= 3 and full else None
    fail_at = next((i for i in range((runs * 3) // 4, runs) if not plan[i][1]), None)
    history = _History(rng)
    key = signing_key or synthetic_key()
    written: list[Path] = []
    for first in range(0, len(plan), _BATCH):
        # one checkpoint per batch, not per run
        with batched_log(root, signing_key=key, durable=False):
            for i in range(first, min(first + _BATCH, len(plan))):
                offset, rerun = plan[i]
                at = start + timedelta(days=offset, seconds=rng.randrange(0, 40))
                night = _night(rng, at, rerun, offset / max(nights, 1), _commit(seed, offset))
                if i == incomplete_at and len(night.scope) > 1:
                    night = replace(night, stop_after=rng.randrange(1, len(night.scope)))
                if i == fail_at and runs >= 5:
                    night = replace(night, force_fail="api_kill")
                written.append(_write_run(root, night, history, rng, key))
    return written


def cmd_synth(args: Any) -> int:
    """``python -m flows synth --artifacts ROOT --runs N --seed S [--signing-key PATH]``:
    0 written, 2 refused."""
    if args.runs < 0:
        print(f"synth: --runs must be 0 or more, got {args.runs}", file=sys.stderr)
        return 2
    given = getattr(args, "signing_key", None)
    try:
        key = load_signing_key(Path(given)) if given else None
        paths = write_synthetic_runs(Path(args.artifacts), args.runs, args.seed, signing_key=key)
    except EvidenceError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"synth: wrote {len(paths)} run folder(s) under {args.artifacts}")
    return 0
