"""Why a stdio server's command could not be started, in words that name the fix.

The operating system says only ``No such file or directory`` or ``Permission denied``
(uvloop not even the file), and "command not found: npx" left the user guessing: the
host (Claude Desktop) starts the gateway with a short ``PATH``, a relative path is taken
from the working directory, and a script whose ``#!`` interpreter is missing is "not
found" although it is there.  ``launch_failure`` looks once, when the start failed.
"""

from __future__ import annotations

import os
from pathlib import Path


class LaunchFailed(OSError):
    """A stdio server's process could not be started; the message says why and the fix."""


def launch_failure(exc: OSError, command: str, search_path: str | None,
                   cwd: str | Path | None) -> LaunchFailed:
    """``exc`` (raised starting ``command`` with ``PATH`` ``search_path`` in ``cwd``)
    explained; its text keeps the ``command not found: <command>`` head operators grep."""
    failed = LaunchFailed(exc.errno, _explain(exc, command, search_path, cwd))
    failed.filename = command
    return failed


def _explain(exc: OSError, command: str, search_path: str | None,
             cwd: str | Path | None) -> str:
    if cwd is not None and not Path(cwd).is_dir():
        return (f"cannot start {command}: its working directory {str(cwd)!r} ('cwd') does "
                "not exist; create it or fix 'cwd'")
    named_path = os.sep in command or (os.altsep is not None and os.altsep in command)
    where = Path(cwd or os.getcwd()) / command
    if isinstance(exc, FileNotFoundError) and not named_path:
        return (f"command not found: {command} is in no folder of the PATH it was looked up "
                f"in ({search_path or 'empty'}){_meant(command, search_path)}; write its "
                "absolute path in 'command' "
                f"('command -v {command}' in a terminal prints it: hosts such as Claude "
                "Desktop start the gateway with a shorter PATH than a terminal has), or set "
                "PATH in the server's 'env'")
    if isinstance(exc, FileNotFoundError) and command.startswith("~") and not where.exists():
        # Claude Desktop's own examples write "~/..." in args, which servers expand; a
        # command is run as written, with no shell to expand it.
        return (f"command not found: {command}: '~' is not expanded in 'command' (no shell "
                f"starts the server); write the absolute path ({os.path.expanduser(command)}) "
                "or start it with ${HOME}")
    if isinstance(exc, FileNotFoundError) and not where.exists():
        base = "'cwd'" if cwd else "the gateway's working directory"
        relative = "" if os.path.isabs(command) else (
            f" (a relative path, taken from {base}: {where})")
        return (f"command not found: {command} does not exist{relative}; fix the path in "
                "'command' (an absolute path is safest)")
    if isinstance(exc, FileNotFoundError):
        interpreter = _interpreter(where)
        named = f" ({interpreter})" if interpreter else ""
        return (f"command not found: {command} exists, but the interpreter its first line "
                f"names{named} does not; install it or fix the '#!' line, or name the "
                "interpreter in 'command' and the script in 'args'")
    if isinstance(exc, PermissionError) and where.is_dir():
        return (f"permission denied: {command} is a directory; 'command' names the program "
                "to run, with its arguments in 'args'")
    if isinstance(exc, PermissionError) and where.exists() and not os.access(where, os.X_OK):
        return (f"permission denied: {command} is not executable; make it so (chmod +x "
                f"{command}), or name its interpreter in 'command' and the file in 'args'")
    if isinstance(exc, PermissionError):
        return (f"permission denied: {command} ({exc.strerror or exc}); check that the "
                "gateway's user may run it")
    return f"cannot start {command}: {exc.strerror or exc}"


# The programs MCP servers are most often started with: a typo of one ("npz") is named.
_LAUNCHERS = ("npx", "uvx", "uv", "node", "python3", "python", "docker", "deno", "bunx",
              "bun", "pipx", "java")


def _meant(command: str, search_path: str | None) -> str:
    """"; did you mean 'npx'?" when ``command`` is a typo of a launcher on the path."""
    import difflib  # here, not at the top: only a failed start needs it
    import shutil

    close = difflib.get_close_matches(command, _LAUNCHERS, n=3, cutoff=0.6)
    found = [name for name in close if name != command
             and abs(len(name) - len(command)) <= 2 and shutil.which(name, path=search_path or "")]
    return f" (did you mean '{found[0]}'?)" if found else ""


def _interpreter(script: Path) -> str | None:
    """The ``#!`` line of ``script``, if it has one (its first 256 bytes)."""
    try:
        with script.open("rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    return head[2:].split(b"\n", 1)[0].decode(errors="replace").strip() or None
