"""A FastAPI process supervisor that never orphans a worker.

Run it with ``python -m supervisor serve --config FILE``. Embedding code uses
``load_config``, ``StateDB``, ``ProcessManager`` and ``create_app``.
"""

from supervisor.api import create_app
from supervisor.config import load as load_config
from supervisor.errors import ConfigError, StateDBError, SupervisorError
from supervisor.manager import ProcessManager
from supervisor.statedb import StateDB

__all__ = [
    "ConfigError",
    "ProcessManager",
    "StateDB",
    "StateDBError",
    "SupervisorError",
    "create_app",
    "load_config",
]
