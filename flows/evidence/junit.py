"""``junit.xml`` for CI systems: one ``<testcase>`` per drill of a run.

A ``fail`` drill gets a ``<failure>``; an ``error`` or ``incomplete`` drill gets an
``<error>`` (the harness broke or the run stopped; the supervisor was not shown to
fail). Each testcase carries the end of its drill log in ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

CLASSNAME = "chaos_drills"
# CI viewers choke on multi-megabyte system-out; the verdict is at the end of a log.
LOG_LIMIT = 64 * 1024

# Characters XML 1.0 cannot carry at all (NUL, most C0 controls, e.g. a stray ESC).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _log_tail(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"[log {path.name} unreadable: {exc}]"
    if len(data) <= LOG_LIMIT:
        return data.decode("utf-8", errors="replace")
    tail = data[-LOG_LIMIT:].decode("utf-8", errors="replace")
    return f"[first {len(data) - LOG_LIMIT} bytes trimmed; full log in {path.name}]\n{tail}"


def build_junit(results: dict[str, Any], run_dir: Path) -> bytes:
    """The ``junit.xml`` bytes for a results dict whose logs live in ``run_dir``."""
    drills = results.get("drills", [])
    failures = sum(1 for d in drills if d.get("status") == "fail")
    errors = sum(1 for d in drills if d.get("status") not in ("pass", "fail"))
    total_time = sum(float(d.get("duration_s") or 0.0) for d in drills)

    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=str(results.get("run_id", CLASSNAME)),
        tests=str(len(drills)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{total_time:.3f}",
        timestamp=str(results.get("started_at") or ""),
        hostname=str(results.get("host", {}).get("hostname") or ""),
    )
    for drill in drills:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=CLASSNAME,
            name=str(drill.get("id")),
            time=f"{float(drill.get('duration_s') or 0.0):.3f}",
        )
        status = drill.get("status")
        summary = _xml_text(str(drill.get("summary") or f"drill status: {status}"))
        if status == "fail":
            ET.SubElement(case, "failure", message=summary, type="DrillFailed").text = summary
        elif status != "pass":
            kind = "DrillIncomplete" if status == "incomplete" else "DrillError"
            ET.SubElement(case, "error", message=summary, type=kind).text = summary
        if drill.get("log"):
            log = _log_tail(run_dir / str(drill["log"]))
            if log is not None:
                ET.SubElement(case, "system-out").text = _xml_text(log)
    ET.indent(suites)
    data: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
