"""A loopback authorization server for the client-credentials grant, and an MCP server
that accepts only the tokens it issued (tests of ``auth:``, upstream/bearer.py).

The SDK's authorization server has no ``client_credentials`` grant
(docs/design/upstream-oauth.md 1.2), so ``Issuer`` is a small Starlette app: RFC 8414
metadata at ``/.well-known/oauth-authorization-server`` and ``/token`` (client
authenticated by HTTP Basic or in the form), counting the token requests.  Each token it
issues is added to ``valid``, the set the protected upstream's verifier reads: a test
empties it to make the server refuse (``401 invalid_token``) without a clock.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import anyio
from fastmcp import FastMCP
from fastmcp.server.auth import AccessToken, TokenVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fixtures import serve_http

CLIENT_ID, CLIENT_SECRET = "svc-gateway", "s3cret-of-the-machine-account"


class Issuer:
    """The authorization server's state: tokens issued, requests seen (their forms)."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.valid: set[str] = set()
        self.issued: list[str] = []
        self.presented: list[str] = []  # the tokens the protected upstream was sent
        self.requests: list[dict[str, str]] = []
        self.refuse_with: tuple[int, dict[str, Any]] | None = None  # the next answers
        self.accepted = True  # whether the upstream accepts the tokens it issues
        self.secret = CLIENT_SECRET  # the client's secret as the server knows it
        self.secrets: list[str | None] = []  # the secret each token request came with
        self.base = ""
        self._n = itertools.count(1)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/oauth-authorization-server", self._metadata),
            Route("/token", self._token, methods=["POST"])])

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse({"issuer": self.base, "token_endpoint": f"{self.base}/token",
                             "grant_types_supported": ["client_credentials"]})

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.requests.append(form)
        if self.refuse_with is not None:
            return JSONResponse(self.refuse_with[1], status_code=self.refuse_with[0])
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        self.secrets.append(secret)
        if (client_id, secret) != (CLIENT_ID, self.secret):
            return JSONResponse({"error": "invalid_client",
                                 "error_description": f"bad secret {secret}"}, 401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = f"cc-token-{next(self._n)}-{'x' * 24}"
        if self.accepted:
            self.valid.add(token)
        self.issued.append(token)
        return JSONResponse({"access_token": token, "token_type": "bearer",
                             "expires_in": self.expires_in, "scope": form.get("scope", "")})


class IssuedTokens(TokenVerifier):
    """Accepts the tokens ``issuer`` issued and still holds valid."""

    def __init__(self, issuer: Issuer) -> None:
        super().__init__()
        self.issuer = issuer

    async def verify_token(self, token: str) -> AccessToken | None:
        self.issuer.presented.append(token)
        if token not in self.issuer.valid:
            return None
        return AccessToken(token=token, client_id=CLIENT_ID, scopes=[])


class Gate:
    """``hold(n)`` calls: each sets ``arrived[n]`` and waits for ``release``."""

    def __init__(self) -> None:
        self.arrived = [anyio.Event(), anyio.Event()]
        self.release = anyio.Event()


def protected_server(issuer: Issuer, gate: Gate | None = None) -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP("protected", auth=IssuedTokens(issuer))

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool
    async def hold(n: int) -> int:
        """Runs until the test releases it."""
        if gate is not None:
            gate.arrived[n].set()
            await gate.release.wait()
        return n

    return mcp


@contextlib.asynccontextmanager
async def issuer_and_upstream(issuer: Issuer, gate: Gate | None = None,
                              fault: TokenFault | None = None
                              ) -> AsyncIterator[tuple[str, str]]:
    """Serve ``issuer`` and a protected upstream on 127.0.0.1; yield (issuer base URL,
    the upstream's MCP URL).  ``fault`` stands in front of its token endpoint."""
    app = issuer.app()
    async with serve_http(fault.around(app) if fault else app, startup=False) as as_base, \
            serve_http(protected_server(issuer, gate).http_app(path="/mcp"),
                       startup=False) as up_base:
        issuer.base = as_base
        yield as_base, f"{up_base}/mcp"


class TokenFault:
    """What the token endpoint answers instead of itself while ``answer`` is set (a
    proxy's page, an empty body): (status, content type, body); ``seen`` counts them.
    ``published`` overrides fields of its RFC 8414 metadata (an endpoint it names),
    ``resource`` those of the protected resource's RFC 9728 metadata."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] | None = None
        self.seen = 0
        self.published: dict[str, str] = {}
        self.resource: dict[str, Any] = {}  # the same, of its RFC 9728 metadata

    def around(self, app: Any) -> Any:
        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and self.published and scope["path"].startswith(
                    "/.well-known/oauth-authorization-server"):
                await self._metadata(app, scope, receive, send, self.published)
                return
            if scope["type"] == "http" and self.resource and scope["path"].startswith(
                    "/.well-known/oauth-protected-resource"):
                await self._metadata(app, scope, receive, send, self.resource)
                return
            if scope["type"] == "http" and scope["path"] == "/token" \
                    and self.answer is not None:
                self.seen += 1
                status, kind, body = self.answer
                await Response(body, status, media_type=kind)(scope, receive, send)
                return
            await app(scope, receive, send)
        return asgi

    async def _metadata(self, app: Any, scope: Any, receive: Any, send: Any,
                        published: dict[str, Any]) -> None:
        import json

        sent: list[Any] = []

        async def keep(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, keep)
        start = sent[0]
        data = {**json.loads(b"".join(m.get("body", b"") for m in sent[1:])),
                **published}
        await Response(json.dumps(data).encode(), start["status"],
                       media_type="application/json")(scope, receive, send)


@contextlib.asynccontextmanager
async def signing_upstream(gate: Gate | None = None, fault: TokenFault | None = None,
                           tls: tuple[Any, Any] | None = None
                           ) -> AsyncIterator[tuple[Any, str]]:
    """A FastMCP server behind fastmcp's in-memory authorization server (RFC 9728/8414
    metadata, dynamic registration, ``/authorize`` approving at once, PKCE, refresh),
    on 127.0.0.1; yield (its ``InMemoryOAuthProvider``, its MCP URL).  Its tool ``hold``
    waits on ``gate`` (a call in flight, held by the test); ``fault`` stands in front of
    its token endpoint; ``tls`` (a certificate and its key files) serves both over
    https."""
    import socket

    import uvicorn
    from fastmcp.server.auth.providers.in_memory import InMemoryOAuthProvider
    from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    provider = InMemoryOAuthProvider(base_url=base, client_registration_options=(
        ClientRegistrationOptions(enabled=True, valid_scopes=["read"], default_scopes=["read"])),
        revocation_options=RevocationOptions(enabled=True), required_scopes=["read"])
    mcp: FastMCP[Any] = FastMCP("signing", auth=provider)

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool
    async def hold(n: int) -> int:
        """Runs until the test releases it."""
        if gate is not None:
            gate.arrived[n].set()
            await gate.release.wait()
        return n

    app = mcp.http_app(path="/mcp")
    server = uvicorn.Server(uvicorn.Config(fault.around(app) if fault else app,
                                           log_level="warning", log_config=None,
                                           lifespan="on", **({} if tls is None else {
                                               "ssl_certfile": str(tls[0]),
                                               "ssl_keyfile": str(tls[1])})))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield provider, f"{base}/mcp"
        finally:
            server.should_exit = True
    sock.close()


async def person_signs_in(url: str, verify: Any = True) -> Any:
    """What a person's browser does with a sign-in link: the authorization server
    approves at once and redirects to the gateway's callback, which answers a page
    (``verify``: the browser's trust, for an authorization server under a private CA)."""
    import httpx2

    async with httpx2.AsyncClient(timeout=60, verify=verify) as http:
        approved = await http.get(url, follow_redirects=False)
        assert approved.status_code in (302, 303, 307), approved.status_code
        return await http.get(approved.headers["location"], follow_redirects=False)
