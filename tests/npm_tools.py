"""Real ecosystem peers from the npm registry, installed once into a cache folder.

``ensure()`` installs pinned packages (Node 22 itself among them: the conformance suite
and Inspector 2.x need it) into ``$MCP_GATEWAY_NPM_TOOLS`` (default ``.npm-tools/`` in
the repository) unless they are already there, and returns the folder, or ``None``
when npm is not available.  ``.ci/run`` calls it before the tests; tests call it too,
so a developer's first run installs what it needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "node": "22",
    "@modelcontextprotocol/server-everything": "2026.8.31",
    "@modelcontextprotocol/server-filesystem": "2026.8.31",
    "@modelcontextprotocol/inspector": "2.12.0",
    "@modelcontextprotocol/conformance": "0.1.16",
}


def tools_dir() -> Path:
    return Path(os.environ.get("MCP_GATEWAY_NPM_TOOLS", REPO / ".npm-tools"))


def _installed(folder: Path) -> bool:
    return all((folder / "node_modules" / name / "package.json").exists() for name in PACKAGES)


def ensure(timeout: float = 300) -> Path | None:
    folder = tools_dir()
    if _installed(folder):
        return folder
    npm = shutil.which("npm")
    if npm is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), *specs],
                   check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    return folder if _installed(folder) else None


def node(folder: Path) -> Path:
    return folder / "node_modules" / "node" / "bin" / "node"


def package_path(folder: Path, name: str) -> Path:
    return folder / "node_modules" / name


if __name__ == "__main__":
    where = ensure()
    print(f"npm tools: {where or 'npm not available'}")
    sys.exit(0 if where else 1)
