"""The stop machinery: how a program's whole tree is found, stopped, and never orphaned.

- ``proc``: the /proc and pidfd layer (scan, stat, checked signals, reaping);
- ``tree``: which processes belong to a program;
- ``ladder``: the termination ladder (stop signal, wait, SIGSTOP+SIGKILL, rescan);
- ``sweep``: kill every process of a supervisor instance (the keeper's last act);
- ``keeper`` / ``keeper_link``: the process that outlives a SIGKILLed supervisor,
  and the supervisor's end of its pipe;
- ``reconcile``: what a new start does with processes a dead instance recorded.
"""
