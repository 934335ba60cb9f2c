"""``mcp-gateway dashboard``: the URL of a running stdio gateway's dashboard.

``serve --dashboard`` writes the URL, one-time token included, to ``dashboard.json``
in the data folder (mode 0600); this prints it (stdout: this command is not a gateway)
or opens it in the browser.
"""

from __future__ import annotations

import json
import os
import sys
import webbrowser

from fast_mcp_gateway.ui.standalone import token_file


def show_dashboard(open_browser: bool) -> int:
    path = token_file()
    try:
        data = json.loads(path.read_text())
        url, pid = str(data["url"]), int(data["pid"])
        os.kill(pid, 0)  # still running? (raises if not)
    except (OSError, ValueError, KeyError, TypeError):
        print("mcp-gateway: no dashboard is running: start the gateway with "
              "'mcp-gateway serve --dashboard' (the host's config can pass that flag)",
              file=sys.stderr)
        return 1
    print(url)
    if open_browser and not webbrowser.open(url):
        print("mcp-gateway: could not open a browser; open the URL above", file=sys.stderr)
    return 0
