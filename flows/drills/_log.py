"""The drill log: timestamped lines, ending in exactly one ``PASS: …`` or ``FAIL: …``."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

_BODY_LIMIT = 600


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DrillLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self.verdict: str | None = None

    def line(self, message: str) -> None:
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(f"{_stamp()} {message}\n")
            self._fh.flush()

    def request(
        self, method: str, path: str, status: int | None, body: Any, latency_ms: float
    ) -> None:
        shown = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        if len(shown) > _BODY_LIMIT:
            shown = shown[:_BODY_LIMIT] + f"…(+{len(shown) - _BODY_LIMIT} chars)"
        code = "000 (no response)" if status is None else str(status)
        self.line(f"HTTP {method} {path} -> {code} in {latency_ms:.1f} ms body={shown}")

    def tree(self, label: str, procs: list[psutil.Process]) -> None:
        self.line(f"process tree {label}: {len(procs)} process(es)")
        for p in sorted(procs, key=lambda p: p.pid):
            try:
                with p.oneshot():
                    pgid = os.getpgid(p.pid)
                    created = datetime.fromtimestamp(p.create_time(), UTC).isoformat(
                        timespec="milliseconds"
                    )
                    self.line(
                        f"  pid={p.pid} ppid={p.ppid()} pgid={pgid} created={created}"
                        f" status={p.status()} cmd={' '.join(p.cmdline())[:160]}"
                    )
            except (psutil.NoSuchProcess, ProcessLookupError):
                self.line(f"  pid={p.pid} (exited while listing)")
            except psutil.AccessDenied:
                self.line(f"  pid={p.pid} (access denied)")

    def finish(self, passed: bool, message: str) -> str:
        """Write the verdict line once; return it without its timestamp."""
        verdict = f"{'PASS' if passed else 'FAIL'}: {message}"
        if self.verdict is None:
            self.verdict = verdict
            self.line(verdict)
        return self.verdict

    def close(self) -> None:
        with self._lock:
            self._fh.close()
