"""The MCP endpoint of each profile: ``<path>/p/<profile>`` (``/mcp/p/coding``), and who
asks (``caller_of``, ``known_caller``: also what ``UnknownPaths`` tells a caller)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Scope

from fast_mcp_gateway.config.schema import GatewayOptions
from fast_mcp_gateway.front.profiles import (
    PROFILE_PREFIX,
    SCOPE_KEY,
    sees_profile,
    unknown_profile,
)
from fast_mcp_gateway.http.access import Access
from fast_mcp_gateway.principal import Principal


class ProfilePaths:
    """Serves ``<path>/p/<profile>`` (``/mcp/p/coding``) with the one MCP endpoint, the
    profile named in the ASGI scope for the provider (``front/profiles.py``); an
    unknown profile is a 404 listing the known ones -- to a caller with a valid token
    (``access``), those it may see (``sees_profile``: one it may not see is unknown to
    it too): without one, the request goes on to the MCP endpoint, whose 401 it gets
    (the profile names are not told to anyone who asks).

    SSE (``messages`` set): ``/sse/p/<profile>`` opens the stream with ``root_path``
    set so that the SDK announces ``/sse/p/<profile>/messages/`` as the endpoint to
    post to, and those posts reach ``/messages/`` with the profile in the scope (the
    SDK hands each post's request to the session, which is where it is read)."""

    def __init__(self, app: Any, *, path: str, options: GatewayOptions, access: Access,
                 messages: str | None = None) -> None:
        # The profiles the gateway started with, which the catalog serves: a reload
        # that changes them takes a restart (``ChangeReport.restart_needed``).
        self.app, self.path, self.options = app, path.rstrip("/") or "/", options
        self.access = access
        self.prefix = self.path.rstrip("/") + PROFILE_PREFIX
        self.messages = messages

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            name, rest = scope["path"][len(self.prefix):].rstrip("/"), ""
            if self.messages is not None:   # SSE: /sse/p/<name>[/messages/]
                name, _, rest = name.partition("/")
            target = self.path
            profile = self.options.profiles.get(name)
            caller = await caller_of(self.access, scope)
            if profile is None and caller is None:  # /mcp's 401, as /mcp's
                await self.app({**scope, "path": target, "raw_path": target.encode()},
                               receive, send)
                return
            if profile is None or (caller is not None and not sees_profile(caller, profile)):
                message = unknown_profile(name, self.options, caller, running=True)
                response = JSONResponse({"error": {"code": "unknown_profile",
                                                   "message": message, "details": None}},
                                        status_code=404)
                await response(scope, receive, send)
                return
            extra: dict[str, Any] = {}
            if rest:   # SSE posts: /sse/p/<name>/messages/ -> /messages/
                target = (self.messages if self.messages is not None
                          and f"/{rest}" == self.messages.rstrip("/") else f"/{rest}")
            elif self.messages is not None:   # the stream announces the profile's posts
                extra["root_path"] = (scope.get("root_path", "").rstrip("/")
                                      + self.prefix + name)
            scope = {**scope, "path": target, "raw_path": target.encode(), SCOPE_KEY: name,
                     **extra}
        await self.app(scope, receive, send)


async def known_caller(access: Access, scope: Scope) -> bool:
    """Whether the request of ``scope`` comes with a valid token (any request, on a
    gateway without ``gateway.auth``): who may be told what the gateway serves."""
    return await caller_of(access, scope) is not None


async def caller_of(access: Access, scope: Scope) -> Principal | None:
    """The caller of the request of ``scope``; None without a valid token."""
    found = await access.verified(scope)
    return None if found is None else found[0]
