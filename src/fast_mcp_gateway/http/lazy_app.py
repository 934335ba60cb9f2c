"""An ASGI app built by its first request: the REST API's and the dashboard's routes
(their imports and route objects) cost nothing to a gateway nobody calls them on."""

from __future__ import annotations

import threading
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send


class LazyApp:
    """An ASGI app that builds its app (``build``) on its first request, once, and
    hands every request to it.  Building is synchronous (imports and route objects, no
    ``await``), so requests on one event loop cannot interleave with it; the lock
    covers an app served from several threads."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self.app: ASGIApp | None = None
        self.builds = 0

    def built(self) -> ASGIApp:
        """The app, built now if it was not yet."""
        if self.app is None:
            with self._lock:
                if self.app is None:
                    self.builds += 1
                    self.app = self._build()
        return self.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.app or self.built())(scope, receive, send)
