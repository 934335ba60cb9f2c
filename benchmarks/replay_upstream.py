"""A light stdio MCP server that answers with one recorded server's real ``tools/list``.

    python benchmarks/replay_upstream.py benchmarks/data/real_catalog.json github

The tools are exactly what the real server listed (``collect_catalog.py`` recorded
them); a ``tools/call`` answers the arguments back as text.  No dependencies, so that
thirty of them start in a moment on two cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from light_upstream import serve  # the same tiny server, with the recorded tools


def main() -> None:
    data, name = Path(sys.argv[1]), sys.argv[2]
    server = next(s for s in json.loads(data.read_text())["servers"] if s["name"] == name)
    serve(server["tools"], server.get("serverInfo") or {"name": server["name"],
                                                       "version": "replay"})


if __name__ == "__main__":
    main()
