"""Owner-only files for what the gateway keeps on disk.

The store holds registered servers' headers and environment in clear, and the stdio
dashboard's ``dashboard.json`` holds a login key: both are created readable by their
owner only, in a folder the gateway creates owner-only.  A file that already exists
keeps its mode (the user may share it on purpose); one that group or others can read
is reported with the fix.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create the folder ``path`` if missing (its missing parents too); the folder
    itself is made 0700.  An existing folder is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_file(path: Path, *, holds: str, companions: tuple[str, ...] = (),
                 warn: bool = True) -> bool:
    """Create ``path`` empty and 0600 when missing (its folder by ``private_dir``);
    True when it was created.  An existing file, and each existing ``path + suffix``
    of ``companions``, keeps its mode; one readable by group or others gets a warning
    naming it, what it ``holds`` and ``chmod 600`` (with ``warn=False`` the caller
    warns, by ``shared_files`` and ``report_shared``, once it knows the file is what it
    ``holds``).  ``OSError`` when it cannot be created."""
    private_dir(path.parent)
    try:
        # O_EXCL: never adopt a file (or a planted link) another process made meanwhile.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.is_dir():
            raise IsADirectoryError(f"is a directory; give the path of a file in it, e.g. "
                                    f"{path / 'gateway.db'}") from None
        if warn:
            report_shared(shared_files(path, companions), holds)
        return False
    os.close(fd)
    return True


def shared_files(path: Path, companions: tuple[str, ...] = ()) -> list[tuple[Path, int]]:
    """``path`` and each existing ``path + suffix`` of ``companions`` that group or
    others may read, with its mode."""
    found = []
    for candidate in (path, *(Path(f"{path}{s}") for s in companions)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            found.append((candidate, mode))
    return found


def report_shared(files: list[tuple[Path, int]], holds: str) -> None:
    """A warning for each of ``shared_files``, naming what it ``holds`` and the fix."""
    for path, mode in files:
        logger.warning("%s is readable by other users (mode %04o) and holds %s; unless it "
                       "is shared on purpose, run: chmod 600 %s", path, mode, holds, path)
