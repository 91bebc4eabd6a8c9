"""The reference page, generated from the code so it cannot drift: the drill
table from :mod:`flows.registry`, the CLI ``--help`` texts, and the HTTP routes
from the supervisor's own OpenAPI schema."""

from __future__ import annotations

import argparse

from flows import registry
from flows.cli import build_parser
from flows.evidence.layout import drill_log_name


def _drill_table() -> list[str]:
    lines = [
        "| drill | log file | key metric | unit | title | passes when |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in registry.DRILLS:
        passes = d.passes_when.replace("|", "\\|")
        lines.append(
            f"| `{d.id}` | `{drill_log_name(d.id)}` | `{d.metric}` | {d.unit} | {d.title} | {passes} |"
        )
    return lines


def _help_blocks(parser: argparse.ArgumentParser, title: str) -> list[str]:
    out = [f"### `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [
                    f"### `{title} {name}`",
                    "",
                    "```text",
                    sub.format_help().rstrip(),
                    "```",
                    "",
                ]
    return out


def _routes() -> list[str]:
    from supervisor.api import create_app

    # the schema is built from the routes alone: with manage_lifecycle=False the app never
    # touches its manager or token, so none is made (that would start processes)
    schema = create_app(None, None, manage_lifecycle=False).openapi()  # type: ignore[arg-type]
    lines = ["| method | route | answers |", "| --- | --- | --- |"]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            lines.append(f"| `{method.upper()}` | `{path}` | {codes} |")
    return lines


def reference_page() -> str:
    from supervisor.cli import build_parser as supervisor_parser

    lines = [
        "# Reference",
        "",
        "Generated from the code at every publish: the drill registry, the command-line",
        "parsers and the supervisor's OpenAPI schema.",
        "",
        "## Drills",
        "",
        *_drill_table(),
        "",
        "## Supervisor HTTP API",
        "",
        "Every route but `/healthz` needs `Authorization: Bearer <token>`.",
        "",
        *_routes(),
        "",
        "## Command line",
        "",
        *_help_blocks(build_parser(), "python -m flows"),
        *_help_blocks(supervisor_parser(), "python -m supervisor"),
    ]
    return "\n".join(lines) + "\n"
