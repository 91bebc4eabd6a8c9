"""The pass/fail timeline as an SVG file: a date axis (one column per night, so a missed
night is a visible hatched gap), one row per drill, every cell a link (``target=_top``)
to the drill's section on its run page. Pages embed it with ``<object>``, so the links
work and MkDocs never parses its thousands of elements."""

from __future__ import annotations

from typing import Any

import pandas as pd

from flows.site._html import h, run_anchor

_FILL = {"pass": "#2e9d4b", "fail": "#d93f3f", "error": "#e08a1e", "incomplete": "#9e9e9e"}
CELL, GAP, LABEL = 9, 1, 118


def timeline_svg(
    drills: pd.DataFrame, names: list[str], first: pd.Timestamp, last: pd.Timestamp, up: str
) -> str:
    """Nights ``first``..``last`` (UTC midnights); the newest execution per night and drill."""
    nights = pd.date_range(first, last, freq="D", tz=first.tz)
    rows = drills[(drills["night"] >= first) & (drills["night"] <= last)]
    newest = rows.sort_values(["started_at", "run_id"]).groupby(["drill", "night"]).tail(1)
    cell: dict[tuple[str, Any], Any] = {
        (str(r.drill), r.night): r for r in newest.itertuples(index=False)
    }
    ran = set(rows["night"])
    width = LABEL + len(nights) * (CELL + GAP) + 4
    height = len(names) * (CELL + GAP) + 34
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg class="timeline" role="img" font-family="sans-serif" fill="#8a8a8a" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>Outcome per night, {first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC); "
        "hatched: no run that night</title>",
        '<defs><pattern id="gap" width="4" height="4" patternUnits="userSpaceOnUse">'
        '<path d="M0,4 L4,0" stroke="#c62828" stroke-width="1"/></pattern></defs>',
    ]
    for j, night in enumerate(nights):
        x = LABEL + j * (CELL + GAP)
        if night not in ran:
            out.append(
                f'<rect x="{x}" y="0" width="{CELL}" height="{len(names) * (CELL + GAP)}" '
                f'fill="url(#gap)"><title>{night:%Y-%m-%d}: no run</title></rect>'
            )
    for i, drill in enumerate(names):
        y = i * (CELL + GAP)
        out.append(
            f'<text x="{LABEL - 4}" y="{y + CELL - 1}" text-anchor="end" '
            f'font-size="9" fill="#8a8a8a">{h(drill)}</text>'
        )
        for j, night in enumerate(nights):
            r = cell.get((drill, night))
            if r is None:
                continue
            x = LABEL + j * (CELL + GAP)
            tip = f"{drill} {r.status} {r.started_at:%Y-%m-%d %H:%M} UTC, {r.run_id}"
            out.append(
                f'<a href="{h(run_anchor(r.run_id, up, drill))}" target="_top"><rect x="{x}" y="{y}" '
                f'width="{CELL}" height="{CELL}" fill="{_FILL.get(r.status, "#9e9e9e")}">'
                f"<title>{h(tip)}</title></rect></a>"
            )
    axis_y = len(names) * (CELL + GAP) + 12
    step = max(1, len(nights) // 8)
    for j in range(0, len(nights), step):
        x = LABEL + j * (CELL + GAP)
        out.append(
            f'<text x="{x}" y="{axis_y}" font-size="9" fill="#8a8a8a">{nights[j]:%m-%d}</text>'
        )
    out.append(
        f'<text x="{LABEL}" y="{axis_y + 14}" font-size="9" fill="#8a8a8a">'
        "night (UTC) · green pass · red fail · orange error · grey incomplete · "
        "hatched no run</text>"
    )
    out.append("</svg>")
    return "".join(out)
