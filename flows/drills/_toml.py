"""Write a supervisor config back as TOML: the drills add their markers to the user's config.

Only what a supervisor config holds: tables of strings, numbers, booleans,
arrays and inline tables. Anything else is a :class:`DrillSetupError` naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from flows.errors import DrillSetupError

__all__ = ["dumps"]


def _string(value: str) -> str:
    # JSON's escapes are TOML's, except that TOML also forbids a raw DEL
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, f"{where}[]") for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_string(str(k))} = {_value(v, f'{where}.{k}')}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise DrillSetupError(
        f"drill config: {where} holds a {type(value).__name__} ({value!r}), which a "
        "supervisor config never needs; use a string, number, boolean, array or table"
    )


def _table(header: str, table: Mapping[str, Any]) -> list[str]:
    lines = [header]
    lines += [f"{_string(str(k))} = {_value(v, f'{header}.{k}')}" for k, v in table.items()]
    return lines


def dumps(config: Mapping[str, Any]) -> str:
    """``config`` (top-level tables, ``programs`` an array of tables) as TOML text."""
    lines: list[str] = []
    for key, value in config.items():
        if key == "programs" and isinstance(value, list):
            for program in value:
                lines += _table("[[programs]]", program)
        elif isinstance(value, Mapping):
            lines += _table(f"[{_string(str(key))}]", value)
        else:
            lines.insert(0, f"{_string(str(key))} = {_value(value, str(key))}")
    return "\n".join(lines) + "\n"
