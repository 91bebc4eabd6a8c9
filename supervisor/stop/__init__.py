"""The stop machinery: how a program's whole tree is held, stopped, and never orphaned.

- ``containment``: the seam, chosen once at start-up (``server.containment``):
  ``cgroup`` (every program in its own cgroup v2; its ladder in ``cgroup_ladder``)
  or ``session`` (the fallback);
- ``instance``: instance ids that tell a live owner from a dead one;
- ``proc``: the /proc and pidfd layer (scan, stat, checked signals, reaping);
- session containment's parts: ``tree`` (which processes belong to a program),
  ``ladder`` (stop signal, wait, SIGSTOP+SIGKILL, rescan), ``sweep`` (kill every
  process of an instance), ``keeper`` (the Python keeper);
- ``keeper_link``: the supervisor's end of the keeper's pipe (either keeper);
- ``reconcile``: what a new start does with what a dead instance left.
"""
