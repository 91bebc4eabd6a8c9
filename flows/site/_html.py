"""Small formatting helpers shared by the pages: escaping, badges, cells and links.

Two families: Markdown text (``esc``, ``code``, ``run_link``) for the pages MkDocs
renders as Markdown, and raw HTML (``h``, ``a``, ``html_table``, ``tr``) for the
blocks that carry final URLs and skip MkDocs' Markdown work. The words of rates,
ages, streaks and metrics come from :mod:`flows.trends.formatting` (shared with
the terminal); this module only adds the badges around them.
"""

from __future__ import annotations

import html
import numbers
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd

from flows.trends import formatting as fmt

_BADGES = {
    "pass",
    "fail",
    "error",
    "incomplete",
    "missing",
    "gap",
    "ok",
    "broken",
    "unknown",
    "synthetic",
}
# Front matter that keeps a page out of the search index (drill and run pages).
SEARCH_EXCLUDE = "---\nsearch:\n  exclude: true\n---\n\n"  # drill pages
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def esc(text: object) -> str:
    """Plain text for a Markdown table cell or paragraph."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def code(text: str) -> str:
    """An inline code span that survives backticks in ``text``."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or len(ticks) > 1 else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def badge(kind: str, text: str | None = None) -> str:
    cls = kind if kind in _BADGES else "unknown"
    return f'<span class="badge badge-{cls}">{html.escape(text or kind.upper())}</span>'


def when(ts: Any) -> str:
    return "—" if ts is None or pd.isna(ts) else f"{ts:%Y-%m-%d %H:%M} UTC"


def streak(row: pd.Series) -> str:
    return fmt.streak(row["streak"], row["streak_passing"])


def gaps_cell(n: int) -> str:
    return badge("gap", str(n)) if n else badge("pass", "0")


def run_link(run_id: str, prefix: str) -> str:
    """A raw-HTML link to a run page (plain HTML, not a MkDocs page): ``prefix`` leads
    from the page's URL to the folder that holds ``runs/``."""
    return f'<a href="{prefix}runs/{run_id}/">{run_id}</a>'


def evidence_badge(status: str, verified: bool, problems: str) -> str:
    if verified:
        return badge("ok", "verified")
    if problems:
        return badge("broken", "NOT VERIFIED")
    return badge("incomplete", status.upper())


def metric_text(drill: str, value: object) -> str:
    return fmt.metric(drill, value)


def records(frame: pd.DataFrame) -> Iterator[Any]:
    """The rows of ``frame`` as named tuples; a row's fields are whatever its columns hold."""
    return iter(frame.itertuples(index=False))


def gap_lines(found: pd.DataFrame, prefix: str) -> list[str]:
    lines = []
    for g in records(found.sort_values("night", ascending=False)):
        night = f"{g.night:%Y-%m-%d}"
        if g.kind == "missing_night":
            lines.append(f"- {night}: no run that night")
        else:
            lines.append(f"- {night}: no result for **{g.drill}** in {run_link(g.run_id, prefix)}")
    return lines


def indent(lines: list[str]) -> list[str]:
    return ["    " + line if line else "" for line in lines]


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def a(href: str, text: str) -> str:
    """A raw-HTML link; ``href`` is a final URL (raw HTML is not rewritten by MkDocs)."""
    return f'<a href="{h(href)}">{text}</a>'


def html_table(head: list[str], rows: list[str], right: tuple[int, ...] = ()) -> str:
    """A table as one raw-HTML block: far cheaper for MkDocs than a Markdown table."""
    ths = " ".join(
        f'<th style="text-align:right">{title}</th>' if i in right else f"<th>{title}</th>"
        for i, title in enumerate(head)
    )
    return (
        f"<table>\n<thead><tr>{ths}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + ("\n</tbody>\n</table>\n")
    )


def tr(cells: list[str], right: tuple[int, ...] = ()) -> str:
    return (
        "<tr>"
        # The spaces keep cells apart in the search index ("2026-10-30 chaos-drill-…").
        + " ".join(
            f'<td style="text-align:right">{c}</td>' if i in right else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
    )


# Page URLs as the built site has them (use_directory_urls), for raw-HTML links.
def run_href(run_id: str, up: str) -> str:
    return f"{up}runs/{run_id}/"


# A rate from fewer outcomes than this is not shown as a rate (2 runs are not "50 %").
MIN_RATE_OUTCOMES = 5


def rate_cell(value: object, n: object, window: int | None = None) -> str:
    """A pass rate; ``(n=12)`` beside it when it counts fewer runs than its ``window``
    (all time has none), and ``— (n=3)`` below the minimum."""
    runs = float(n) if isinstance(n, numbers.Real) else float("nan")  # numpy ints too
    count = 0 if runs != runs else int(runs)
    if count < MIN_RATE_OUTCOMES:
        return f'<span title="fewer than {MIN_RATE_OUTCOMES} outcomes">— (n={count})</span>'
    if window is None or count < window:
        return f"{fmt.rate(value)} (n={count})"
    return fmt.rate(value)


def ago(ts: Any, now: pd.Timestamp, fresh_hours: float | None = None) -> str:
    """An age badge the pages' script keeps current (``data-at``), from ``ts``: green
    within ``fresh_hours`` (the schedule's window), red after it, grey when never."""
    if ts is None or pd.isna(ts):
        return badge("missing", "never")
    delta = now - ts
    fresh = fresh_hours is None or delta <= pd.Timedelta(hours=fresh_hours)
    limit = "" if fresh_hours is None else f' data-fresh-hours="{fresh_hours:g}"'
    return (
        f'<span class="badge badge-{"pass" if fresh else "fail"}" data-at="{ts.isoformat()}"'
        f'{limit} title="{ts:%Y-%m-%d %H:%M} UTC">{h(fmt.age(delta))}</span>'
    )


def mark_badges(found: list[tuple[str, str]]) -> str:
    """The marks of a drill as small badges whose title carries their evidence."""
    return " ".join(
        f'<span class="mark mark-{kind}" title="{h(why)}">{kind}</span>' for kind, why in found
    )


def run_anchor(run_id: str, up: str, drill: str) -> str:
    """The URL of one drill's section on a run page."""
    return f"{up}runs/{run_id}/#drill-{drill}"
