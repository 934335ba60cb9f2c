"""Real peers from PyPI that cannot share the test venv, installed once into a cache folder.

The gateway runs on the mcp 2.x SDK; servers in the field still run the 1.x SDK
(``uvx mcp-server-time`` and most PyPI servers).  ``ensure()`` creates a venv of its own
in ``$MCP_GATEWAY_PY_TOOLS`` (default ``.py-tools/`` in the repository) with the pinned
packages unless they are already there, and returns its Python.  ``.ci/run`` calls it
before the tests; tests call it too, so a developer's first run installs what it needs.
The venv is made without pip (``--without-pip``): this interpreter's pip installs into
it (``pip --python``), which takes seconds, not the minutes of a venv's own pip.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The newest 1.x release on PyPI (``pip index versions mcp``), checked 2026-12-01.
PACKAGES = {"mcp": "1.30.0"}
MARKER = "installed.txt"  # written last: what the folder holds once ``ensure`` finished


class PyToolsError(RuntimeError):
    """The pinned packages could not be installed; the message says how to fix it."""


def tools_dir() -> Path:
    return Path(os.environ.get("MCP_GATEWAY_PY_TOOLS", REPO / ".py-tools"))


def python(folder: Path) -> Path:
    return folder / "bin" / "python"


def _pins() -> str:
    return "\n".join(f"{name}=={version}" for name, version in sorted(PACKAGES.items()))


def _installed(folder: Path) -> bool:
    marker = folder / MARKER
    return python(folder).exists() and marker.exists() and marker.read_text() == _pins()


def ensure(timeout: float = 300) -> Path:
    """The venv's Python, with ``PACKAGES`` installed (installing them if needed)."""
    folder = tools_dir()
    if _installed(folder):
        return python(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two test workers starting at once: one installs, the other waits and finds it done.
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return python(folder) if _installed(folder) else _install(folder, timeout)


def _install(folder: Path, timeout: float) -> Path:
    specs = _pins().split("\n")
    fix = (f"check that PyPI is reachable, then run `python3 tests/py_tools.py` (or set "
           f"MCP_GATEWAY_PY_TOOLS to a folder holding a venv with {', '.join(specs)})")
    try:
        (folder / MARKER).unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(folder)],
                       check=True, timeout=timeout, capture_output=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python(folder)), "install",
                        "--quiet", "--disable-pip-version-check", *specs],
                       check=True, timeout=timeout, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        said = (error.stderr or "").strip().splitlines()[-3:] if isinstance(error.stderr, str) \
            else []
        raise PyToolsError(f"could not install {', '.join(specs)} into {folder}: "
                           f"{' / '.join(said) or error}; {fix}") from error
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PyToolsError(f"could not install {', '.join(specs)} into {folder}: {error}; "
                           f"{fix}") from error
    (folder / MARKER).write_text(_pins())
    return python(folder)


if __name__ == "__main__":
    try:
        print(f"py tools: {ensure()} ({_pins()})")
    except PyToolsError as failed:
        print(f"py tools: {failed}", file=sys.stderr)
        sys.exit(1)
