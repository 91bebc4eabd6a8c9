"""The reference page, generated from the code so it cannot drift: the drill
table from the registry, the CLI ``--help`` texts, and the HTTP routes from the
supervisor's own OpenAPI schema."""

from __future__ import annotations

import argparse
import inspect

from flows import cli as flows_cli
from flows.drills import DRILLS, KEY_METRICS


def _doc(obj: object) -> str:
    text = inspect.getdoc(obj) or ""
    return " ".join(text.split("\n\n")[0].split())


def _drill_table() -> list[str]:
    lines = ["| drill | log file | key metric | passes when |", "| --- | --- | --- | --- |"]
    for drill_id, fn in DRILLS.items():
        module = inspect.getmodule(fn)
        summary = _doc(module).split(":", 1)[-1].strip().replace("|", "\\|")
        lines.append(
            f"| `{drill_id}` | `drill_{drill_id}.log` | `{KEY_METRICS[drill_id]}` | {summary} |"
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
        *_help_blocks(flows_cli.build_parser(), "python -m flows"),
        *_help_blocks(supervisor_parser(), "python -m supervisor"),
    ]
    return "\n".join(lines) + "\n"
