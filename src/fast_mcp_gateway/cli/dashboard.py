"""``mcp-gateway dashboard``: a fresh one-time login link to a running stdio dashboard.

``serve --dashboard`` writes the dashboard's address and its link key to
``dashboard.json`` in the user's data folder (mode 0600).  This reads the file, checks
that it is the user's own and not readable by others and that the gateway still runs,
derives a new single-use login token from the key (``ui.login_links``: no request to
the gateway, nothing but this user can do it) and prints the link (stdout: this command
is not a gateway) or opens it in the browser.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit

from fast_mcp_gateway.ui.login_links import login_url, token_file

NOT_RUNNING = ("mcp-gateway: no dashboard is running: start the gateway with "
               "'mcp-gateway serve --dashboard' (the host's config can pass that flag); "
               "this command is for a stdio gateway's dashboard: a gateway serving HTTP "
               "('serve --transport http') has its dashboard at http://HOST:PORT/ui/, "
               "where an admin token logs in")


def show_dashboard(open_browser: bool) -> int:
    path = token_file()
    try:
        info = path.stat()
        data = json.loads(path.read_text())
        base, key, pid = str(data["base"]), bytes.fromhex(data["key"]), int(data["pid"])
        os.kill(pid, 0)  # still running? (raises if not)
    except (OSError, ValueError, KeyError, TypeError):
        print(NOT_RUNNING, file=sys.stderr)
        return 1
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        # Someone else could have read the key, or planted the file.
        print(f"mcp-gateway: {path} must belong to you and be readable by you only "
              f"(it is mode {stat.S_IMODE(info.st_mode):o}); restart the gateway to "
              "write it again", file=sys.stderr)
        return 1
    url = login_url(base, key)
    print(url)
    if open_browser:
        if webbrowser.open(url):
            print("mcp-gateway: opened the link (it logs in one browser once)",
                  file=sys.stderr)
        else:
            print("mcp-gateway: could not open a browser; open the link above (it logs "
                  "in one browser once)", file=sys.stderr)
    return 0


def held_by_a_gateway(host: str, port: int) -> tuple[str, int] | None:
    """Whether ``host:port``, found in use by ``serve --dashboard``, is another running
    gateway's stdio dashboard (this user's ``dashboard.json``: its ``base`` on that
    address, its pid alive and a gateway's): its base URL and pid, else None (a file
    that is not the user's own and private is not trusted)."""
    path = token_file()
    try:
        info = path.stat()
        data = json.loads(path.read_text())
        base, pid = str(data["base"]), int(data["pid"])
        os.kill(pid, 0)  # still running? (raises if not)
        at = urlsplit(base)
        other_port, other_host = at.port, at.hostname
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if pid == os.getpid() or info.st_uid != os.getuid() \
            or stat.S_IMODE(info.st_mode) & 0o077:
        return None
    if other_port != port or _host(other_host) != _host(host) or not _a_gateway(pid):
        return None
    return base, pid


def _host(name: str | None) -> str:
    return "127.0.0.1" if name in (None, "", "localhost") else str(name).strip("[]")


def _a_gateway(pid: int) -> bool:
    """Whether process ``pid`` runs this program (its command line names it), so that a
    file left by a gateway that crashed is not believed when its pid was reused."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists()  # no /proc to ask: the live pid decides
    return any(b"fast_mcp_gateway" in part or part.endswith(b"mcp-gateway") for part in argv)
