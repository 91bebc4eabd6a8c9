"""The package as a worker gets it: a wheel of the checkout, installed into its own venv.

The venv is made with ``--without-pip`` and a ``.pth`` line pointing at the
dependencies of the interpreter running the demo (no download, seconds not
minutes); the wheel goes in with ``pip --python VENV install --no-deps``, so
``import flows`` in that venv finds the installed copy, never the checkout.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from flows.errors import DeployError

__all__ = ["install_wheel"]

log = logging.getLogger("flows.cluster.package")
_SKIP_ANYWHERE = shutil.ignore_patterns(
    ".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)
# generated at the top of a checkout only (flows/site is code, /site is a build)
_SKIP_TOP = {".prefect", ".bench", "site", "pilot_artifacts", "build", "dist", "logs"}


def _skip(source: Path) -> Callable[[str, list[str]], set[str]]:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_SKIP_ANYWHERE(folder, names))
        if Path(folder) == source:
            skipped |= _SKIP_TOP & set(names)
        return skipped

    return ignore


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=cwd)
    if out.returncode != 0:
        raise DeployError(f"package: {what} failed (`{' '.join(cmd)}` exited "
                          f"{out.returncode}): {(out.stderr or out.stdout).strip()[-1500:]}")  # fmt: skip
    return out.stdout


def install_wheel(source: Path, folder: Path) -> Path:
    """Build a wheel of ``source`` and install it into a venv in ``folder``; its python."""
    if not (source / "pyproject.toml").is_file():
        raise DeployError(f"package: {source} has no pyproject.toml; pass the checkout (--source)")
    src = folder / "src"
    shutil.copytree(
        source, src, ignore=_skip(source)
    )  # the build's scratch stays out of the checkout
    wheels = folder / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
          "-w", str(wheels), str(src)], "building the wheel")  # fmt: skip
    (wheel,) = wheels.glob("chaos_drills-*.whl")
    venv = folder / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "making the venv")
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     "locating the venv's site-packages").strip())  # fmt: skip
    (site / "_chaos_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
          str(wheel)], "installing the wheel")  # fmt: skip
    where = _run([str(python), "-c", "import flows; print(flows.__file__)"], "importing flows",
                 cwd=folder).strip()  # fmt: skip
    if not where.startswith(str(site)):
        raise DeployError(f"package: the venv imports flows from {where}, not from {site}")
    log.info("package.installed wheel=%s venv=%s", wheel.name, venv)
    return python
