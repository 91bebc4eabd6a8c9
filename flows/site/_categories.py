"""Failure categories: every non-passing outcome's FAIL line, grouped by the rules in
``categories.toml`` (shipped with the package), first matching rule wins."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib.resources import files

import pandas as pd

from flows.errors import EvidenceError

UNCATEGORISED = "uncategorised"


@cache
def rules() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """``(name, pattern)`` per rule of ``flows/site/categories.toml``, in order."""
    source = files("flows.site") / "categories.toml"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
        return tuple(
            (str(r["name"]), re.compile(str(r["pattern"]), re.IGNORECASE))
            for r in data.get("category", [])
        )
    except (tomllib.TOMLDecodeError, KeyError, re.error) as exc:
        raise EvidenceError(
            f"site: {source} is not a valid rules file ({exc}); every [[category]] "
            "needs a name and a Python regular expression as pattern"
        ) from exc


def category_of(line: str) -> str:
    for name, pattern in rules():
        if pattern.search(line):
            return name
    return UNCATEGORISED


def categorise(drills: pd.DataFrame) -> pd.DataFrame:
    """Failed and errored executions with their ``category``: ``run_id, started_at, drill, status,
    summary, category``."""
    bad = drills[drills["status"].isin(("fail", "error"))]
    columns = ["run_id", "started_at", "drill", "status", "summary"]
    out = bad[columns].copy()
    out["category"] = [category_of(s) for s in out["summary"]]
    return out.reset_index(drop=True)
