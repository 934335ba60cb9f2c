"""What a person's browser meets at the end of a sign-in (``sign_in.py``): the callback
page on 127.0.0.1, and the revocation of a sign-in at its authorization server (a
refusal logged with its OAuth error, masked, and that the sign-in is forgotten anyway).

The page is guarded by the flow's ``state`` (the SDK's, 32 random bytes, single use):
a callback with a state no pending flow has -- a stale link, a second use, another
gateway's flow, a forged one -- is told so in words, and changes nothing.  It never
shows a code, a token or the state.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

import anyio
import httpx2

from fast_mcp_gateway.config.upstream_auth import endpoint_problem
from fast_mcp_gateway.errors import SignInFailed
from fast_mcp_gateway.store.credentials import StoredCredential
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.token_grants import TOKEN_TIMEOUT, error_code, origin_client

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"
DONE_WITHIN = 60.0  # seconds the page waits for the token exchange to end


def valid_for(expires_at: float, now: float) -> str:
    """How long a sign-in link is still valid, in words: whole minutes rounded up (a
    10-minute link read a moment later said "9 min"), and until when."""
    left = max(0.0, expires_at - now)
    until = datetime.fromtimestamp(expires_at, UTC).strftime("%H:%M UTC")
    if left < 60:
        return f"expires in under a minute, at {until}"
    return f"expires in {math.ceil(left / 60)} min, at {until}"


_DISCOVERED = ("issuer", "token_endpoint", "authorization_endpoint", "registration_endpoint",
               "revocation_endpoint")


def discovered_problem(meta: Any) -> str | None:
    """Why an endpoint an authorization server's metadata names (RFC 8414, found through
    RFC 9728: not configured, so not checked at load) may not be used, or None: each must
    be https:// (http:// only on loopback) -- the code, the client's secret and the
    tokens travel to them, the person's browser to the authorization endpoint."""
    for name in _DISCOVERED if meta is not None else ():
        value = getattr(meta, name, None)
        if value is not None and (problem := endpoint_problem(str(value))) is not None:
            return (f"its authorization server's metadata ({meta.issuer}) names a "
                    f"{name.replace('_', ' ')} ({name}) that is not https: {problem}; have "
                    "the authorization server publish https:// endpoints (its public URL "
                    "behind TLS): nothing was sent there")
    return None


def quiet_protocol() -> Any:
    """uvicorn's h11 protocol writing no access line (the callback's query holds the
    code and state), without touching the process's ``uvicorn.access`` logger (uvicorn's
    own ``access_log=False`` empties its handlers for everyone)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Quiet(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False

    return Quiet


def callback_server(config: Any) -> Any:
    """The callback listener's uvicorn server, without uvicorn's SIGINT/SIGTERM handlers
    (as the dashboard's ``_QuietServer``): the gateway's own stop handling keeps the
    signals while a sign-in waits, and sse-starlette -- which finds "the" server through
    the SIGTERM handler -- never takes this listener's close for the gateway's stop and
    ends the gateway's SSE streams."""
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class CallbackServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return CallbackServer(config)


def back(port: int) -> str:
    """Where the browser comes back: loopback on the gateway's machine, said (a gateway
    served over HTTP from another machine needs the port forwarded)."""
    return (f"The browser then comes back to http://127.0.0.1:{port}/oauth/callback on the "
            "gateway's machine: open the link there, or from another machine forward that "
            f"port first (ssh -L {port}:127.0.0.1:{port} <the gateway's host>).")


def _page(title: str, text: str, status: int) -> Any:
    from starlette.responses import HTMLResponse

    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}"
                        f"</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>",
                        status_code=status, headers={"cache-control": "no-store"})


def callback_app(find: Callable[[str], Any]) -> Any:
    """The ASGI app of ``/oauth/callback``; ``find(state)`` is the pending flow or None."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    async def callback(request: Request) -> Any:
        query = request.query_params
        flow = find(query.get("state") or "")
        if flow is None:
            return _page("Sign-in not recognised", "This sign-in link is unknown, expired "
                         "or already used (or the gateway restarted). Start the sign-in "
                         "again: the gateway_sign_in tool, or mcp-gateway login <server>.",
                         400)
        error = error_code({"error": query.get("error")}) or (
            "an error" if query.get("error") else None)
        if error is None and not query.get("code"):
            return _page("Sign-in incomplete", "The authorization server sent no code. "
                         "Start the sign-in again.", 400)
        flow.came_back(query.get("code"), query.get("iss"), error)
        with anyio.move_on_after(DONE_WITHIN):
            await flow.done.wait()
        if flow.error is not None or not flow.done.is_set():
            why = getattr(flow.error, "detail", None) or "it did not finish in time"
            return _page(f"Sign-in to '{flow.server}' failed", f"{why}.", 400)
        return _page(f"Signed in to '{flow.server}'",
                     "The gateway holds the sign-in now. You can close this page.", 200)

    return Starlette(routes=[Route(CALLBACK_PATH, callback)])


async def revoke(server: str, row: StoredCredential, secrets: dict[str, Any],
                 tls: Any = None) -> None:
    """RFC 7009 at ``row.revocation_endpoint``, when it has one: best effort (a failure is
    logged without values, ``_not_revoked``; the sign-in is forgotten all the same).
    ``tls``: the server's, for an authorization server on its host (``origin_client``)."""
    endpoint = row.revocation_endpoint
    tokens, client = secrets.get("tokens") or {}, secrets.get("client") or {}
    token = tokens.get("refresh_token") or tokens.get("access_token")
    if not endpoint or not token or not client.get("client_id"):
        return
    if endpoint_problem(endpoint) is not None:  # stored before discovered_problem: not sent
        logger.warning("upstream %s: its token not revoked at %s: not https", server, endpoint)
        return
    kind = "refresh_token" if tokens.get("refresh_token") else "access_token"
    form = {"token": token, "token_type_hint": kind, "client_id": client["client_id"]}
    secret, basic = client.get("client_secret"), cast(Any, None)
    if secret and client.get("token_endpoint_auth_method") == "client_secret_basic":
        basic = httpx2.BasicAuth(quote(client["client_id"], safe=""), quote(secret, safe=""))
    elif secret:
        form["client_secret"] = secret
    try:
        async with origin_client(server, row.resource, tls, timeout=TOKEN_TIMEOUT) as http:
            answer = await http.post(endpoint, data=form, auth=basic)
        if answer.status_code != 200:
            sent = [v for v in (*tokens.values(), secret) if isinstance(v, str)]
            logger.warning("upstream %s: revoking its token at %s was refused (%s); %s",
                           server, endpoint, _refusal(answer, sent), _NOT_REVOKED)
    except (httpx2.HTTPError, SignInFailed) as exc:
        logger.warning("upstream %s: cannot revoke its token at %s (%s); %s", server,
                       endpoint, type(exc).__name__, _NOT_REVOKED)


_NOT_REVOKED = ("the sign-in is forgotten here all the same; its token stays valid at "
                "the authorization server until it expires by itself (or revoke the "
                "gateway's access on the provider's settings page)")
_DESCRIBED = 120  # characters of an error_description quoted, at most


def _refusal(answer: httpx2.Response, sent: list[str]) -> str:
    """A revocation's refusal in words: its HTTP status, its OAuth ``error`` code when it
    gave one, and its ``error_description`` on one line, masked (it may echo the token
    sent: ``sent``'s values and any credential-like text) and cut short."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    code = error_code(data)
    if code is None:
        return f"HTTP {answer.status_code}"
    said = data.get("error_description") if isinstance(data, dict) else None
    said = " ".join(mask_text(said, sent).split()) if isinstance(said, str) else ""
    said = said if len(said) <= _DESCRIBED else said[:_DESCRIBED - 3] + "..."
    return f"HTTP {answer.status_code}, {code}" + (f": {said!r}" if said else "")
