"""A throw-away PostgreSQL for the Prefect server: own data folder, Unix socket only.

Debian's server binaries (``/usr/lib/postgresql/<v>/bin``) run as the
``postgres`` user (PostgreSQL refuses root); the data folder and the socket
folder live under the cluster's temporary folder, and ``listen_addresses=''``
keeps it off every network. The postmaster is our child (not daemonised by
``pg_ctl``), so it dies with us even when we are killed.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from flows.errors import DeployError

__all__ = ["Postgres", "find_bindir"]

log = logging.getLogger("flows.cluster.postgres")
DATABASE = "prefect"
USER = "postgres"


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding ``postgres`` and ``initdb``."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found or not (found[-1] / "initdb").exists():
        raise DeployError(
            "postgres: no server binaries under /usr/lib/postgresql/*/bin; install Debian's "
            "postgresql package (make cluster-demo does, as root)"
        )
    return found[-1]


class Postgres:
    """``initdb`` + ``postgres`` in ``folder``, as the ``postgres`` user, socket in ``folder/sock``."""

    def __init__(self, folder: Path) -> None:
        self.bindir = find_bindir()
        self.folder = folder
        self.data = folder / "data"
        self.socket_dir = folder / "sock"
        self.log_path = folder / "postgres.log"
        self.popen: subprocess.Popen[bytes] | None = None
        try:
            self.user = pwd.getpwnam(USER)
        except KeyError as exc:
            raise DeployError(
                f"postgres: no {USER!r} user; install Debian's postgresql package"
            ) from exc

    @property
    def url(self) -> str:
        """The asyncpg URL over the Unix socket, as PREFECT_API_DATABASE_CONNECTION_URL."""
        return f"postgresql+asyncpg://{USER}@/{DATABASE}?host={self.socket_dir}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def _as_postgres(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            cmd, user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
            capture_output=True, text=True, timeout=120, check=False, cwd=self.folder,
        )  # fmt: skip
        if out.returncode != 0:
            raise DeployError(
                f"postgres: `{' '.join(cmd)}` exited {out.returncode}: "
                f"{(out.stderr or out.stdout).strip()[-800:]}"
            )
        return out

    def start(self, deadline_s: float = 60.0) -> None:
        for folder in (self.folder, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)
        self._as_postgres(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
            "--auth=trust", "-E", "UTF8", "--no-instructions",
        )  # fmt: skip
        with open(self.log_path, "ab") as logf:
            os.chown(self.log_path, self.user.pw_uid, self.user.pw_gid)
            self.popen = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data),
                 "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                 "-c", "max_connections=100"],
                user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.folder,
            )  # fmt: skip
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and self.popen.poll() is None:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-U", USER],
                check=False, timeout=10,
            )  # fmt: skip
            if ready.returncode == 0:
                self._as_postgres(str(self.bindir / "createdb"), "-h", str(self.socket_dir),
                                  "-U", USER, DATABASE)  # fmt: skip
                log.info("postgres.ready pid=%s socket=%s", self.popen.pid, self.socket_dir)
                return
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-1500:]
        self.stop()
        raise DeployError(
            f"postgres: not ready within {deadline_s:.0f}s (exit status {self.popen.poll()}); "
            f"its log {self.log_path} ends:\n{tail}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``timeout_s``; then nothing of it is left."""
        if self.popen is not None and self.popen.poll() is None:
            # SIGINT to the postmaster: it stops its backends itself; SIGKILL to them all.
            stops = ((os.kill, signal.SIGINT, timeout_s), (os.killpg, signal.SIGKILL, 10.0))
            for kill, sig, wait in stops:
                try:
                    kill(self.popen.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        log.info("postgres.stopped status=%s", self.popen and self.popen.poll())

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
