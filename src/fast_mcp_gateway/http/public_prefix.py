"""The path a reverse proxy serves the gateway under, for what names the gateway's own
paths to a browser or an API client: the dashboard's links, forms, redirects, live
stream and login cookie, and the OpenAPI document's server URL.

A proxy that serves the gateway under a path and strips it (nginx's ``location
/tools/gw/ { proxy_pass http://127.0.0.1:8765/; }``) sends ``/ui/`` for the browser's
``/tools/gw/ui/``: a page naming ``/ui/login`` sent the browser out of the proxy's
path, to a 404, and a cookie for ``/ui`` never came back.  The gateway learns the path
from ``MCP_GATEWAY_PUBLIC_URL`` (``https://gw.example/tools/gw``), and applies it to a
request whose ``Host`` names that URL's host (the proxy's ``proxy_set_header Host
$host``; with a port, the URL's port): a request addressed to the gateway itself
(``127.0.0.1:8765``) keeps its paths.  A prefixed request gets the path in its ASGI
``root_path`` and ``path`` (``Prefixed``), as a server mounted under it would, so
Starlette's routing and every ``root_path``-built URL follow it.  A ``root_path``
holding the path already (uvicorn's ``--root-path`` around ``gateway.http_app()``, the
ASGI way to say a proxy cut it) is not given it twice.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send


class PublicPrefix:
    """The path of ``public_url`` (none without one, or for its root) and the host
    (and port) a request must name in ``Host`` to be served under it (module
    docstring)."""

    __slots__ = ("host", "path", "port")

    def __init__(self, public_url: str | None) -> None:
        parts = urlsplit(public_url or "")
        self.path = parts.path.rstrip("/")
        self.host = (parts.hostname or "").lower()
        self.port = parts.port or (443 if parts.scheme == "https" else 80)

    def of(self, scope: Scope) -> str:
        """The prefix for ``scope``'s request: the public URL's path when its ``Host``
        names the public URL's host (without a port, or with the URL's), else ""."""
        if not self.path:
            return ""
        host = next((v for k, v in scope.get("headers", ()) if k == b"host"), b"")
        if any(c in host for c in b"@/?#\\"):  # no host[:port]: urlsplit would find one
            return ""  # in it ('x@gw.example'), as the Host guard does not
        try:
            named = urlsplit("//" + host.decode("latin-1"))
            port = named.port
        except ValueError:  # a port that is no number: not the public URL's
            return ""
        if (named.hostname or "") != self.host or port not in (None, self.port):
            return ""
        return self.path


class Prefixed:
    """``app`` with the public prefix (``PublicPrefix.of``) put before a request's
    ``root_path`` and ``path``: its URLs, built from ``root_path``, stay under the
    proxy's path."""

    __slots__ = ("app", "prefix")

    def __init__(self, app: ASGIApp, prefix: PublicPrefix) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.prefix.of(scope) if scope["type"] == "http" else ""
        root = scope.get("root_path", "")
        if path and not (root + "/").startswith(unquote(path) + "/"):
            # (A server told the path already, uvicorn's --root-path: it is not doubled.)
            scope = {**scope, "root_path": unquote(path) + root,
                     "path": unquote(path) + scope["path"],
                     "raw_path": path.encode() + (scope.get("raw_path") or scope["path"].encode())}
        await self.app(scope, receive, send)
