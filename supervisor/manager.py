"""The process manager: spawns programs, watches them, and stops whole trees.

No HTTP here: ``supervisor.api`` calls the public methods and shapes answers.
Every state change goes through ``_transition``, which checks the table in
``supervisor.states`` and writes the new state and its event in one DB
transaction. The monitor thread (``supervisor.monitor``) drives ``_check``.

How a program's processes are held together and stopped is the
``containment`` (``supervisor.stop.containment``: cgroup or session), chosen
once at start-up by the caller. The other collaborators that keep the
guarantees are arguments with the real ones as defaults: the ``keeper`` factory
and ``become_subreaper``. Nothing in the environment or the config switches
them off.

``kill`` blocks its caller (a worker thread); ``kill_async`` is the same
operation for the event loop: it awaits the tree's emptiness without a
thread-pool hop, and falls back to ``kill`` in a thread when the monitor holds
the program. What the answer does not need waits until it has gone out
(``after_answer``, which the route runs after the response): reaping the adopted
descendants (zombies: dead at the answer, only not yet collected), the two state
rows (stopping, stopped), written in one transaction, their log lines, and
removing the program's empty cgroup. ``StateDB`` writes held rows before any other use
of the DB and ``_transition`` emits held lines before its own, so neither is
ever read out of order; the in-memory state is final when the answer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio

from supervisor.config import Config
from supervisor.errors import (
    AmbiguousProgram,
    InvalidTransition,
    StartFailed,
    StateDBError,
    UnknownProgram,
)
from supervisor.monitor import Monitor
from supervisor.program import Program, check_executable, resolve_python
from supervisor.statedb import StateDB
from supervisor.states import ACTIVE, State, can_transition
from supervisor.stop import ladder, proc
from supervisor.stop.containment import Containment, Target
from supervisor.stop.keeper_link import Keeper, KeeperLink
from supervisor.stop.reconcile import reconcile

log = logging.getLogger("supervisor.process")

INSTANCE_ENV = "SUPERVISOR_INSTANCE"
PROGRAM_ENV = "SUPERVISOR_PROGRAM"


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ProcessManager:
    """Every configured program: started, watched, stopped as a whole tree.

    ``containment`` holds each program's processes together and stops them,
    ``keeper`` makes the process that kills them after a SIGKILLed supervisor (from
    the containment's keeper command), ``become_subreaper`` makes orphaned
    descendants ours. ``monitor`` is the thread ``start`` starts and ``shutdown`` stops.
    """

    def __init__(
        self,
        config: Config,
        db: StateDB,
        containment: Containment,
        *,
        keeper: Callable[[list[str]], Keeper] = KeeperLink,
        become_subreaper: Callable[[], None] = proc.set_child_subreaper,
    ) -> None:
        self.db = db
        self.containment = containment
        self.instance = containment.instance
        self.programs = {p.name: Program(p, db.process_id(p.name)) for p in config.programs}
        self.log_dir = db.path.parent / "logs"
        self._keeper = keeper(containment.keeper_command())
        # transition log lines held with their rows: (format, args)
        self._held_lines: deque[tuple[str, tuple[Any, ...]]] = deque()
        # programs a kill on the loop stopped whose place is removed after the answer
        self._release_due: set[str] = set()
        # adopted descendants a kill on the loop left as zombies, reaped after the answer;
        # the lock makes each reaped once, by after_answer or by the monitor's pass
        self._reap_due: set[int] = set()
        self._reap_lock = threading.Lock()
        self._become_subreaper = become_subreaper
        self.monitor = Monitor(
            self.programs,
            check=self._check,
            on_scan=self._on_scan,
            every_pass=self._keeper.check,
        )

    # ----- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._become_subreaper()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        reconcile(self.db, self.containment)
        self._keeper.start()
        for prog in self.programs.values():
            if prog.cfg.autostart:
                with prog.lock:
                    self._spawn(prog)
        self.monitor.start()

    def shutdown(self) -> None:
        """Stop every program in parallel through the ladder, write states, stop the keeper."""
        self.monitor.stop()
        threads = [
            threading.Thread(target=self._stop_for_shutdown, args=(p,), name=f"stop-{p.name}")
            for p in self.programs.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._sweep_descendants()
        self.containment.close()
        self._keeper.close()
        self._emit_held_lines()
        log.info("event=shutdown_complete")

    # ----- public operations ------------------------------------------------

    def get(self, name: str | None) -> Program:
        if name is None:
            if len(self.programs) == 1:
                return next(iter(self.programs.values()))
            raise AmbiguousProgram(list(self.programs))
        prog = self.programs.get(name)
        if prog is None:
            raise UnknownProgram(name, list(self.programs))
        return prog

    def start_program(self, name: str | None) -> dict[str, Any]:
        """Start the program unless it runs; ``StartFailed`` when its command cannot start."""
        prog = self.get(name)
        with prog.lock:
            if prog.state not in ACTIVE:
                prog.quick_failures = 0
                prog.next_start_at = None
                if not self._spawn(prog):
                    raise StartFailed(prog.name, prog.last_error or "unknown error")
            return prog.snapshot()

    def kill(self, name: str | None, timeout: float | None = None) -> dict[str, Any]:
        prog = self.get(name)
        started = time.perf_counter()
        with prog.lock:
            members = self._kill_members(prog)
            leader_pid = prog.leader.pid if prog.leader else None
            if members is None:
                return self._kill_answer(prog, leader_pid, True, [], started)
            self.monitor.hold(prog.name)  # the leader's exit is ours to handle
            try:
                self._transition(prog, State.STOPPING, "stopping", "kill requested")
                result = self.containment.stop(
                    self._target(prog), prog.cfg.stop_signal, self._timeout(prog, timeout), members
                )
                self._stopped(prog, result, "")
            finally:
                self.monitor.release(prog.name)
            return self._kill_answer(prog, leader_pid, False, result.survivors, started)

    async def kill_async(self, name: str | None, timeout: float | None = None) -> dict[str, Any]:
        """``kill`` on the event loop: awaits the tree's emptiness, no thread-pool hop.

        Shielded: a cancelled request (a client gone, the server stopping) must not
        leave the program half-stopped; the kill runs to its end regardless.
        """
        return await asyncio.shield(self._kill_on_loop(name, timeout))

    async def _kill_on_loop(self, name: str | None, timeout: float | None) -> dict[str, Any]:
        prog = self.get(name)
        started = time.perf_counter()
        async with prog.async_lock:  # kills on the loop, one at a time per program
            if not prog.lock.acquire(blocking=False):
                # the monitor or a threaded operation holds the program: wait in a thread
                return await anyio.to_thread.run_sync(partial(self.kill, name, timeout))
            try:
                members = self._kill_members(prog)
                leader_pid = prog.leader.pid if prog.leader else None
                if members is None:
                    return self._kill_answer(prog, leader_pid, True, [], started)
                self.monitor.hold(prog.name)  # the leader's exit is ours to handle
                # STOPPING is recorded while the tree exits, not before it is signalled
                result = await self.containment.stop_async(
                    self._target(prog),
                    prog.cfg.stop_signal,
                    self._timeout(prog, timeout),
                    members,
                    signalled=partial(
                        self._transition,
                        prog,
                        State.STOPPING,
                        "stopping",
                        "kill requested",
                        later=True,
                    ),
                )
                self._stopped(prog, result, "", later=True)
                return self._kill_answer(prog, leader_pid, False, result.survivors, started)
            finally:
                self.monitor.release(prog.name)
                prog.lock.release()

    async def after_answer(self) -> None:
        """What ``kill_async`` left for after its answer: reaping the adopted descendants
        (zombies, dead at the answer), the held state rows and log lines, and removing the
        stopped program's empty place."""
        with self._reap_lock:
            while self._reap_due:
                proc.reap(self._reap_due.pop())
        try:
            self.db.flush()
        except StateDBError as exc:
            log.error("event=state_write_failed error=%s", exc)
        self._emit_held_lines()
        for name in list(self._release_due):
            prog = self.programs[name]
            async with prog.async_lock:
                if not prog.lock.acquire(blocking=False):
                    continue  # the monitor holds it; the next stop or the shutdown releases it
                try:
                    if name in self._release_due and prog.state not in ACTIVE:
                        self._release_due.discard(name)
                        self.containment.released(name)
                finally:
                    prog.lock.release()

    def _emit_held_lines(self) -> None:
        while self._held_lines:
            try:
                fmt, args = self._held_lines.popleft()
            except IndexError:  # another thread emitted the last one
                return
            log.info(fmt, *args)

    def restart(self, name: str | None) -> dict[str, Any]:
        killed = self.kill(name)
        return {"kill": killed, "process": self.start_program(name)}

    def events(self, limit: int) -> list[dict[str, Any]]:
        return self.db.events(limit)

    # ----- internals ----------------------------------------------------------

    def _kill_members(self, prog: Program) -> list[proc.ProcInfo] | None:
        """What a kill signals at once; None when nothing is alive (the program is then
        recorded stopped)."""
        # a running program: the members the monitor last saw are signalled at once, the
        # containment finds anything newer
        members = list(prog.known_members) if prog.state in ACTIVE else self._members(prog)
        if prog.state not in ACTIVE and not members:
            if prog.state is not State.STOPPED:
                self._transition(prog, State.STOPPED, "stopped", f"kill while {prog.state.value}")
            return None
        return members

    def _timeout(self, prog: Program, timeout: float | None) -> float:
        return timeout if timeout is not None else prog.cfg.stop_timeout

    def _target(self, prog: Program) -> Target:
        skip = {p.leader.pid for p in self.programs.values() if p.leader and p is not prog}
        if self._keeper.pid is not None:
            skip.add(self._keeper.pid)
        return Target(
            prog.name,
            prog.leader,
            {INSTANCE_ENV: self.instance, PROGRAM_ENV: prog.name},
            frozenset(skip),
        )

    def _kill_answer(
        self, prog: Program, pid: int | None, already: bool, survivors: list[int], started: float
    ) -> dict[str, Any]:
        return {
            "name": prog.name,
            "pid": pid,
            "already_stopped": already,
            "exit_code": prog.exit_code,
            "signal": prog.exit_signal,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "survivors": survivors,
        }

    def _transition(
        self,
        prog: Program,
        new: State,
        kind: str,
        detail: str,
        *,
        later: bool = False,
        **fields: Any,
    ) -> None:
        """Change state and record it; ``later``: row and log line held for ``after_answer``."""
        old = prog.state
        if not can_transition(old, new):
            raise InvalidTransition(old, new)
        prog.state = new
        line = (
            "event=%s program=%s from=%s to=%s detail=%r",
            (kind, prog.name, old.value, new.value, detail),
        )
        if later:
            self.db.record_state_later(prog.db_id, new.value, kind, detail, **fields)
            self._held_lines.append(line)
            return
        self.db.record_state(prog.db_id, new.value, kind, detail, **fields)
        self._emit_held_lines()
        log.info(line[0], *line[1])

    def _spawn(self, prog: Program) -> bool:
        """Start the program's leader; False (and FATAL, logged) when it cannot start."""
        env = dict(os.environ)
        env.update(prog.cfg.env)
        env[INSTANCE_ENV] = self.instance
        env[PROGRAM_ENV] = prog.name
        env.pop("SUPERVISOR_TOKEN", None)
        argv = resolve_python(prog.cfg.command)
        try:
            check_executable(argv[0], env, prog.cfg.directory)
            popen = self._launch(prog, argv, env)
        except (OSError, subprocess.SubprocessError) as exc:
            prog.last_error = f"cannot start {list(prog.cfg.command)}: {exc}"
            log.warning(
                "event=start_failed program=%s error=%r; fix the command or its directory,"
                " then POST /process/start",
                prog.name,
                prog.last_error,
            )
            self._transition(prog, State.FATAL, "fatal", prog.last_error, pid=None)
            return False
        self._release_due.discard(prog.name)  # started in it again
        info = proc.read_stat(popen.pid)
        assert info is not None, "an unreaped child always has /proc/PID/stat"
        self._close_leader_fd(prog)
        prog.popen, prog.leader = popen, info
        prog.leader_fd = os.pidfd_open(popen.pid)
        prog.started_at, prog.started_mono = _iso_now(), time.monotonic()
        prog.exit_code = prog.exit_signal = None
        prog.next_start_at = None
        self._transition(
            prog,
            State.STARTING,
            "started",
            f"pid {popen.pid}",
            pid=popen.pid,
            pgid=info.pgid,
            create_time=info.create_time,
            boot_id=proc.boot_id(),
            instance=self.instance,
            exit_code=None,
            exit_signal=None,
        )
        self.monitor.wake()
        return True

    def _launch(
        self, prog: Program, argv: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start the leader in its place: the containment's first image (if any) waits
        on stdin until ``admit`` has put it there. No preexec_fn, so subprocess uses
        vfork: a fork would copy the supervisor's page tables and leave every page of
        it copy-on-write for the next kill to fault on."""
        place = self.containment.prepare(prog.name)
        with open(self.log_dir / f"{prog.name}.log", "ab") as out:
            popen = subprocess.Popen(
                place + argv,
                start_new_session=True,
                env=env,
                cwd=prog.cfg.directory,
                stdin=subprocess.PIPE if place else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if popen.stdin is None:
            return popen
        try:
            self.containment.admit(prog.name, popen.pid)
            popen.stdin.write(b"go\n")
            popen.stdin.flush()
        except OSError:
            popen.kill()  # still the waiting first image: nothing of the program ran
            popen.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):  # the line is out, or it is dead
                popen.stdin.close()
        return popen

    def _members(
        self, prog: Program, procs: dict[int, proc.ProcInfo] | None = None
    ) -> list[proc.ProcInfo]:
        """Every live process of the program, as the containment sees it."""
        return self.containment.members(self._target(prog), procs)

    def _terminate(self, prog: Program, timeout: float | None) -> ladder.LadderResult:
        result = self.containment.stop(
            self._target(prog), prog.cfg.stop_signal, self._timeout(prog, timeout)
        )
        self._after_stop(prog, result)
        return result

    def _after_stop(self, prog: Program, result: ladder.LadderResult, release: bool = True) -> None:
        """Collect the leader's status; reap the adopted descendants (dead already: after
        the answer when ``release`` is False); release the program's place."""
        leader = prog.leader
        self._collect_leader(prog)
        adopted = result.signalled - {leader.pid if leader else 0}
        if release:
            for pid in adopted:
                proc.reap(pid)  # adopted descendants are our zombies now; the leader is Popen's
        else:
            with self._reap_lock:
                self._reap_due.update(adopted)
        if result.survivors:
            log.error("event=survivors program=%s pids=%s", prog.name, result.survivors)
        elif release:
            self.containment.released(prog.name)
        else:
            self._release_due.add(prog.name)

    def _collect_leader(self, prog: Program) -> bool:
        """Reap the leader if it exited; record its status. True when it has exited."""
        if prog.popen is None:
            return True
        rc = prog.popen.poll()
        if rc is None:
            return False
        prog.exit_code, prog.exit_signal = (rc, None) if rc >= 0 else (None, -rc)
        prog.popen = None
        self._close_leader_fd(prog)
        return True

    def _close_leader_fd(self, prog: Program) -> None:
        if prog.leader_fd >= 0:
            os.close(prog.leader_fd)
            prog.leader_fd = -1

    def _reap_adopted(self, procs: dict[int, proc.ProcInfo] | None = None) -> None:
        me = os.getpid()
        owned = {p.popen.pid for p in self.programs.values() if p.popen}
        owned.add(self._keeper.pid or 0)
        for info in (proc.scan() if procs is None else procs).values():
            if info.ppid == me and info.zombie and info.pid not in owned:
                with self._reap_lock:  # a kill's deferred reap is this pass's now
                    self._reap_due.discard(info.pid)
                    proc.reap(info.pid)

    def _on_exit(self, prog: Program) -> None:
        """The leader exited while nobody asked: stop what is left, then back off or give up."""
        uptime = time.monotonic() - prog.started_mono
        detail = prog.exit_detail()
        if self._members(prog):
            self._terminate(prog, None)
        else:
            self.containment.released(prog.name)
        quick = prog.state is State.STARTING or uptime < prog.cfg.start_seconds
        # only failures to stay up count toward FATAL; a crash after a good run starts afresh
        prog.quick_failures = prog.quick_failures + 1 if quick else 0
        fields: dict[str, Any] = {
            "pid": None,
            "exit_code": prog.exit_code,
            "exit_signal": prog.exit_signal,
        }
        if not prog.cfg.autorestart:
            self._transition(prog, State.EXITED, "exited", f"{detail}; autorestart off", **fields)
        elif prog.quick_failures >= prog.cfg.max_quick_failures:
            prog.last_error = (
                f"{detail}; failed {prog.quick_failures} times within"
                f" {prog.cfg.start_seconds}s of starting"
            )
            self._transition(prog, State.FATAL, "fatal", prog.last_error, **fields)
        else:
            delay = min(
                prog.cfg.backoff_initial * 2 ** max(prog.quick_failures - 1, 0),
                prog.cfg.backoff_max,
            )
            prog.next_start_at = time.monotonic() + delay
            self._transition(
                prog, State.BACKOFF, "exited", f"{detail}; restart in {delay:.2f}s", **fields
            )

    def _check(self, prog: Program) -> bool:
        """Act on the program's state; False when an operation holds it (nothing done)."""
        if not prog.lock.acquire(blocking=False):
            return False  # an operation is under way; it owns the program
        try:
            if prog.state in (State.STARTING, State.RUNNING) and self._collect_leader(prog):
                self._on_exit(prog)
            elif (
                prog.state is State.STARTING
                and time.monotonic() - prog.started_mono >= prog.cfg.start_seconds
            ):
                prog.quick_failures = 0
                self._transition(prog, State.RUNNING, "running", f"up {prog.cfg.start_seconds}s")
            elif (
                prog.state is State.BACKOFF
                and prog.next_start_at is not None
                and time.monotonic() >= prog.next_start_at
            ):
                prog.restarts += 1
                self._spawn(prog)
            return True
        finally:
            prog.lock.release()

    def _on_scan(self, procs: dict[int, proc.ProcInfo]) -> None:
        self._reap_adopted(procs)
        for prog in self.programs.values():
            if prog.state in ACTIVE:
                prog.known_members = self._members(prog, procs)

    def _stopped(
        self, prog: Program, result: ladder.LadderResult, prefix: str, later: bool = False
    ) -> None:
        """After the containment's stop: collect, release, then STOPPED with the exit status;
        ``later``: the row, its log line and the release wait for ``after_answer``."""
        self._after_stop(prog, result, release=not later)
        self._transition(
            prog,
            State.STOPPED,
            "stopped",
            prefix + prog.exit_detail(),
            later=later,
            pid=None,
            exit_code=prog.exit_code,
            exit_signal=prog.exit_signal,
        )

    def _stop_for_shutdown(self, prog: Program) -> None:
        with prog.lock:
            if prog.state in ACTIVE or self._members(prog):
                self._transition(prog, State.STOPPING, "stopping", "supervisor shutdown")
                result = self.containment.stop(
                    self._target(prog), prog.cfg.stop_signal, prog.cfg.stop_timeout
                )
                self._stopped(prog, result, "supervisor shutdown; ")
            elif prog.state is not State.STOPPED:
                self._transition(prog, State.STOPPED, "stopped", "supervisor shutdown", pid=None)

    def _sweep_descendants(self) -> None:
        """Last line: anything still below us (not the keeper) gets SIGKILL."""
        keeper_pid = self._keeper.pid
        for _ in range(20):
            left = [
                p
                for p in proc.descendants(proc.scan(), os.getpid())
                if p.pid != keeper_pid and not p.zombie
            ]
            if not left:
                break
            log.warning("event=shutdown_sweep pids=%s", [p.pid for p in left])
            for info in left:
                proc.signal_checked(info, signal.SIGKILL)
            time.sleep(0.02)
        self._reap_adopted()
