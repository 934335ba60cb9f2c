"""Re-vendor the dashboard's front-end libraries from npm (a maintainer's tool).

``python -m fast_mcp_gateway.ui.vendor`` runs ``npm pack NAME@VERSION`` for each entry
of ``LIBRARIES``, copies the listed file and the package's LICENSE into
``ui/static/vendor/``, and rewrites ``manifest.json`` (name, version, license, file,
sha256).  ``tests/test_ui_vendor.py`` checks the committed files against the manifest
and that every license is a permissive one.  Nothing here runs while serving: the
gateway only serves the committed files (no CDN, no build step, works offline).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"
MANIFEST = VENDOR / "manifest.json"

# (npm package, pinned version, file inside the package, name served under /ui/static/vendor)
LIBRARIES = [
    ("htmx.org", "2.0.11", "package/dist/htmx.min.js", "htmx.min.js"),
]
PERMISSIVE = {"0BSD", "BSD-0-Clause", "MIT", "ISC", "BSD-2-Clause", "BSD-3-Clause",
              "Apache-2.0"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(package: str, version: str, member: str, target: str, work: Path) -> dict[str, str]:
    subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    tgz = next(work.glob(f"{package.replace('@', '').replace('/', '-')}-{version}.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(work / package, filter="data")
    root = work / package
    meta = json.loads((root / "package" / "package.json").read_text())
    license_name = str(meta.get("license", ""))
    if license_name not in PERMISSIVE:
        raise SystemExit(f"{package}@{version}: license {license_name!r} is not on the "
                         f"permissive list {sorted(PERMISSIVE)}")
    shutil.copyfile(root / member, VENDOR / target)
    license_file = next(p for p in (root / "package").iterdir()
                        if p.name.upper().startswith(("LICENSE", "LICENCE")))
    license_target = f"{Path(target).stem.split('.')[0]}.LICENSE.txt"
    shutil.copyfile(license_file, VENDOR / license_target)
    return {"name": package, "version": version, "license": license_name, "file": target,
            "sha256": sha256(VENDOR / target), "license_file": license_target,
            "source": f"npm pack {package}@{version}: {member.removeprefix('package/')}"}


def main() -> int:
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [vendor(*lib, Path(tmp)) for lib in LIBRARIES]
    MANIFEST.write_text(json.dumps({"libraries": entries}, indent=2) + "\n")
    print(f"vendored {len(entries)} librar{'y' if len(entries) == 1 else 'ies'} into {VENDOR}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
