"""The exception family of the ``flows`` package.

Every error the package raises on purpose derives from :class:`FlowsError`, so an
entry point can catch the family in one place and print the message:

- :class:`FlowsError` — base class; never raised directly.
- :class:`EvidenceError` — a run folder or evidence root is unusable (missing,
  unreadable, invalid JSON, disk full, not writable). The message names the path
  and what to do.
- :class:`DrillSetupError` — a drill could not prepare its target (config, ports,
  supervisor never came up); the drill is recorded as ``error``, not ``fail``.
- :class:`UnknownDrillError` — a drill id that is not in the registry, or a
  registry and a drill table that disagree.
- :class:`SetupError` — the command cannot run as asked: a config file that does
  not exist, an optional module that is not installed.
- :class:`DeployError` — a deployment or the local Prefect server could not be
  set up.

An entry point turns the family into exit code 2 (usage or environment),
except where a command documents otherwise.

Messages say what was wrong, the value, and what to do.
"""

from __future__ import annotations

__all__ = [
    "DeployError",
    "DrillSetupError",
    "EvidenceError",
    "FlowsError",
    "SetupError",
    "UnknownDrillError",
]


class FlowsError(Exception):
    """Base class of every error the flows package raises on purpose."""


class EvidenceError(FlowsError):
    """A run folder or evidence root cannot be written, read or trusted."""


class DrillSetupError(FlowsError):
    """A drill could not set up its target; the harness broke, not the supervisor."""


class UnknownDrillError(FlowsError):
    """A drill id that no registered drill answers to."""


class SetupError(FlowsError):
    """The command cannot run as asked; the message says what to pass or install."""


class DeployError(FlowsError):
    """A deployment or the local Prefect server could not be set up."""
