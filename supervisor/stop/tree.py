"""Which processes belong to a program's tree.

The supervisor is a child subreaper, so every live descendant of a program is
in the supervisor's own subtree: under the program's leader, or re-parented to
the supervisor when its parent died. A direct child of the supervisor belongs
to a program when it shares the leader's session or group, or carries the
program's environment markers (a double-forked ``setsid`` process keeps its
environment); everything beneath such a child belongs to the same program.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.stop import proc


def program_members(
    procs: Mapping[int, proc.ProcInfo],
    supervisor_pid: int,
    *,
    sid: int | None,
    marker: Mapping[str, str],
    skip: set[int],
) -> list[proc.ProcInfo]:
    """Live (non-zombie) members, from one scan of /proc."""
    children = proc.children_map(procs)
    wanted = {k.encode(): v.encode() for k, v in marker.items()}
    roots = []
    for pid in children.get(supervisor_pid, ()):
        info = procs[pid]
        if pid in skip:
            continue
        if sid is not None and (info.sid == sid or info.pgid == sid):
            roots.append(pid)
            continue
        env = proc.read_environ(pid)
        if all(env.get(k) == v for k, v in wanted.items()):
            roots.append(pid)
    out, stack = [], roots
    while stack:
        pid = stack.pop()
        if not procs[pid].zombie:
            out.append(procs[pid])
        stack.extend(children.get(pid, ()))
    return out
