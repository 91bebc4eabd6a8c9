"""``kill_under_load``: concurrent kills under concurrent status polling all answer
200, and the drilled program's tree is gone after each round; the other programs
are untouched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flows.drills._http import Answer, call, kill_body_problems
from flows.drills.context import DrillContext
from flows.drills.harness import Supervisor, wait_for
from flows.trends.stats import percentile

POLLERS = 8
KILLERS = 3
ROUNDS = 3


@dataclass
class _Load:
    """What the pollers and killers saw, shared between their threads."""

    polls: list[Answer] = field(default_factory=list)
    kills: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run(ctx: DrillContext) -> tuple[bool, str]:
    sup = ctx.supervisor()
    name = ctx.program_name()
    load = _Load()
    guard = ctx.watch_collateral(sup)

    def poller() -> None:
        with sup.new_client() as client:
            while not load.stop.is_set():
                answer = call(client, None, "GET", "/process", params={"name": name})
                with load.lock:
                    load.polls.append(answer)

    threads = [threading.Thread(target=poller, name=f"poller-{i}") for i in range(POLLERS)]
    for t in threads:
        t.start()
    try:
        _rounds(ctx, sup, name, load)
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    alive = sup.popen.poll() is None
    ctx.check_collateral(guard)
    sup.stop()
    return _verdict(ctx, name, load, alive)


def _rounds(ctx: DrillContext, sup: Supervisor, name: str, load: _Load) -> None:
    """ROUNDS times: KILLERS concurrent kills at once, then the tree must be gone."""

    def killer(barrier: threading.Barrier) -> None:
        with sup.new_client() as client:
            barrier.wait()
            answer = call(client, ctx.log, "POST", "/process/kill", json={"name": name})
            with load.lock:
                load.kills.append(answer)

    with sup.new_client() as control:
        for round_no in range(1, ROUNDS + 1):
            if round_no > 1:
                call(control, ctx.log, "POST", "/process/start", json={"name": name})
                sup.wait_workload(ctx.options.min_procs, stable_s=0.25, program=name)
            before = ctx.workload(sup)
            ctx.log.tree(f"round {round_no}: before {KILLERS} concurrent kills", before)
            barrier = threading.Barrier(KILLERS)
            killers = [threading.Thread(target=killer, args=(barrier,)) for _ in range(KILLERS)]
            for t in killers:
                t.start()
            for t in killers:
                t.join()
            wait_for(lambda: not ctx.workload(sup), 0.5, interval=0.005)
            left = ctx.workload(sup)
            ctx.log.tree(f"round {round_no}: after the kills", left)
            if left:
                load.problems.append(f"round {round_no}: {len(left)} process(es) alive after kills")


def _verdict(ctx: DrillContext, name: str, load: _Load, alive: bool) -> tuple[bool, str]:
    polls, kills = load.polls, load.kills
    bad_polls = [a for a in polls if a.status != 200]
    bad_kills = [a for a in kills if a.status != 200 or kill_body_problems(a.body, name)]
    fresh = sum(1 for a in kills if isinstance(a.body, dict) and not a.body.get("already_stopped"))
    kill_ms = [a.latency_ms for a in kills]
    poll_ms = [a.latency_ms for a in polls]
    ctx.metrics.update(
        kill_p50_ms=percentile(kill_ms, 0.5),
        kill_p99_ms=percentile(kill_ms, 0.99),
        poll_p50_ms=percentile(poll_ms, 0.5),
        poll_p99_ms=percentile(poll_ms, 0.99),
        kills=len(kills),
        polls=len(polls),
        non_200=len(bad_polls) + len(bad_kills),
    )
    ctx.log.line(
        f"{len(polls)} polls from {POLLERS} pollers: p50 {ctx.metrics['poll_p50_ms']} ms,"
        f" p99 {ctx.metrics['poll_p99_ms']} ms; {len(kills)} kills: p50"
        f" {ctx.metrics['kill_p50_ms']} ms, p99 {ctx.metrics['kill_p99_ms']} ms"
    )
    for a in (bad_polls + bad_kills)[:10]:
        ctx.log.line(f"bad answer: {a.status or '000'} {str(a.body)[:200]}")
    if bad_polls or bad_kills:
        return False, (
            f"{len(bad_kills)} of {len(kills)} kills and {len(bad_polls)} of"
            f" {len(polls)} polls did not answer 200 with a valid body"
        )
    if load.problems:
        return False, load.problems[0]
    if fresh != ROUNDS:
        return False, f"{fresh} kills did the stopping in {ROUNDS} rounds; expected one per round"
    if not alive:
        return False, "the supervisor exited under load"
    return True, (
        f"{len(kills)} concurrent kills and {len(polls)} polls all answered 200"
        f" (kill p99 {ctx.metrics['kill_p99_ms']} ms); tree gone every round"
    )
