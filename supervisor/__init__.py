"""A FastAPI process supervisor that never orphans a worker.

Run it with ``python -m supervisor serve --config FILE``. Embedding code uses
``load_config``, ``StateDB``, ``ProcessManager`` and ``create_app``.

Imports are lazy: program processes (``supervisor.demo_worker``) and the keeper
import this package too, and must not pay for FastAPI at every start.
"""

from typing import Any

__all__ = [
    "ConfigError",
    "ProcessManager",
    "StateDB",
    "StateDBError",
    "SupervisorError",
    "create_app",
    "load_config",
]

_WHERE = {
    "ConfigError": ("supervisor.errors", "ConfigError"),
    "StateDBError": ("supervisor.errors", "StateDBError"),
    "SupervisorError": ("supervisor.errors", "SupervisorError"),
    "ProcessManager": ("supervisor.manager", "ProcessManager"),
    "StateDB": ("supervisor.statedb", "StateDB"),
    "create_app": ("supervisor.api", "create_app"),
    "load_config": ("supervisor.config", "load"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    import importlib

    module, attr = _WHERE[name]
    return getattr(importlib.import_module(module), attr)
