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

from fast_mcp_gateway.ui.login_links import login_url
from fast_mcp_gateway.ui.standalone import token_file

NOT_RUNNING = ("mcp-gateway: no dashboard is running: start the gateway with "
               "'mcp-gateway serve --dashboard' (the host's config can pass that flag)")


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
