"""Serving a test upstream's ASGI app over HTTP on 127.0.0.1: a free port, written to a
file once it listens (the tests' ``http_process`` reads it).  For the sibling scripts run
as ``python tests/servers/<name>.py`` (their directory is first on ``sys.path``)."""

from __future__ import annotations

import socket
from typing import Any

import anyio


async def serve(app: Any, port_file: str) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    await anyio.Path(port_file).write_text(str(sock.getsockname()[1]))
    await uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None)).serve([sock])
