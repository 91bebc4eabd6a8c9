"""The frame of the pages written outside MkDocs: run pages, log pages, archive months.

Thousands of them would dominate a MkDocs build; written as plain HTML they
cost one file write each, and only when their evidence changed. They share the
site's stylesheet and link back to the MkDocs pages (home, trends, archive).
"""

from __future__ import annotations

from flows.site._html import h


def plain_page(title: str, body: str, up: str, gen: str = "generated/") -> str:
    """A whole HTML page; ``up`` leads from the page's folder to the site root."""
    links = " · ".join(
        f'<a href="{up}{href}">{name}</a>'
        for href, name in (
            ("", "Home"),
            (f"{gen}trends/", "Trends"),
            (f"{gen}archive/", "Archive"),
            ("about/", "About"),
        )
    )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{h(title)} · Chaos drill evidence</title>\n"
        f'<link rel="stylesheet" href="{up}stylesheets/extra.css">\n</head>\n'
        f'<body class="plain">\n<header class="plain-header"><strong>'
        f'<a href="{up}">Chaos drill evidence</a></strong> {links}</header>\n'
        f'<main class="plain-main">\n<h1>{h(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n'
    )
