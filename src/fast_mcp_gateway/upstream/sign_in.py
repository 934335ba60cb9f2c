"""Signing in to a server with ``auth: {type: oauth}``, outside any request.

``SignIns.start(config)`` runs the SDK's ``OAuthClientProvider`` headless in a task of
its own task group (``run``): an unauthenticated probe of the server's URL gets its 401,
and the provider does the rest -- protected-resource and authorization-server discovery
(RFC 9728, RFC 8414), dynamic client registration (RFC 7591) unless a client is given
or was registered before, PKCE, RFC 8707 ``resource`` -- calling our two handlers:
``redirect`` publishes the authorization URL (``Pending``: returned to the admin tool or
printed by ``mcp-gateway login``; no browser is opened), ``callback`` waits for the
person's browser to come back to ``http://127.0.0.1:<oauth_callback_port>/oauth/callback``
with this flow's ``state``.  That listener runs only while a flow is pending.  The
tokens, the registered client and the endpoints are then stored sealed
(``oauth_grant.CredentialBook``) and the server's signed-out replicas told
(``CredentialBook.announce_signed_in``).  One flow per server at a time: a second ``start``
returns the pending one's URL.  A flow not completed in ``FLOW_SECONDS`` ends.

Never on a request path: a replica without a usable sign-in is ``signed_out``
(``oauth_grant.wait_signed_in``): no connect attempts, no failures counted, until a sign-in is
stored here or -- read from the store every ``oauth_grant.RECHECK`` s while it waits -- by
another process (``mcp-gateway login``) or gateway.

The SDK's own texts (a state mismatch quotes both states, a refused token exchange the
server's body) never reach a log or an answer: its ``mcp.client.auth`` loggers are
silenced, and its errors become ``SignInFailed`` with fixed words.
"""

from __future__ import annotations

import logging
import socket
import time
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import anyio.abc
import httpx2

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.upstream_auth import endpoint_problem
from fast_mcp_gateway.errors import GatewayError, SignInFailed, SignInRequired, UpstreamError
from fast_mcp_gateway.store.base import StorageError
from fast_mcp_gateway.store.credentials import OWNER_GATEWAY, StoredCredential
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.bearer import forget_tokens
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.oauth_grant import (
    BOOK,
    CredentialBook,
    at_utc,
    changed_settings,
    signed_in_under,
)
from fast_mcp_gateway.upstream.oauth_grant import wait_signed_in as wait_signed_in
from fast_mcp_gateway.upstream.sign_in_page import (
    CALLBACK_PATH,
    callback_app,
    callback_server,
    discovered_problem,
    quiet_protocol,
    revoke,
)
from fast_mcp_gateway.upstream.token_grants import origin_client, same_issuer

logger = logging.getLogger(__name__)

FLOW_SECONDS = 600.0
_PROBE = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
_PROBE_HEADERS = {"accept": "application/json, text/event-stream",
                  "mcp-protocol-version": "2025-11-25"}


@dataclass(frozen=True)
class Pending:
    """A sign-in waiting for its person: the URL to open, until when it is valid."""

    server: str
    url: str
    expires_at: float
    _flow: _Flow | None = field(default=None, compare=False, repr=False)

    async def ended(self) -> GatewayError | None:
        """Wait for this sign-in to end: its error, or None (signed in)."""
        if self._flow is None:
            return None
        await self._flow.done.wait()
        return self._flow.error


class _FlowStorage:
    """The SDK provider's ``TokenStorage`` for one flow (in memory; stored after)."""

    def __init__(self, client: Any) -> None:
        self.tokens: Any = None
        self.client = client

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client: Any) -> None:
        self.client = client


class _Flow:
    """One pending sign-in of one server."""

    def __init__(self, config: ServerConfig, redirect_uri: str, by: str) -> None:
        assert config.url is not None and config.auth is not None
        self.config, self.redirect_uri, self.by = config, redirect_uri, by
        self.server = config.name
        self.url: str | None = None
        self.state: str | None = None
        self.error: GatewayError | None = None
        self.published, self.done, self._back = anyio.Event(), anyio.Event(), anyio.Event()
        self._answer: tuple[str | None, str | None, str | None] = (None, None, None)
        self.expires_at = time.time() + FLOW_SECONDS
        self._provider: Any = None  # the SDK's OAuthClientProvider, while it runs
        self.scope = anyio.CancelScope()  # ``SignIns.end``: its server was removed

    @property
    def pending(self) -> Pending:
        assert self.url is not None
        return Pending(self.server, self.url, self.expires_at, self)

    def _fail(self, message: str) -> SignInFailed:
        return SignInFailed(self.server, message)

    async def redirect(self, url: str) -> None:
        """The SDK's redirect handler: check the issuer, publish the URL."""
        expected = self.config.auth.issuer if self.config.auth else None
        meta = self._provider.context.oauth_metadata
        await self.check_endpoints(None)
        if expected and (meta is None or not same_issuer(str(meta.issuer), expected)):
            raise self._fail(f"its authorization server is not auth.issuer {expected!r}; "
                             "check auth.issuer (the client secret is only sent there)")
        self.state = parse_qs(urlsplit(url).query).get("state", [""])[0] or None
        self.url = url
        self.published.set()

    async def check_endpoints(self, request: Any) -> None:
        """Before each request of the flow (an httpx hook) and the link: the request's
        URL is https (http only on loopback) unless on the configured ``url:``'s own
        origin -- the first hop too: the authorization server the protected-resource
        metadata names -- and the endpoints its metadata names, once discovered."""
        meta = self._provider.context.oauth_metadata if self._provider else None
        if (problem := discovered_problem(meta)) is not None:
            raise self._fail(problem)
        if request is not None and (problem := self._off_origin(str(request.url))):
            raise self._fail(problem)

    def _off_origin(self, url: str) -> str | None:
        """Why the flow may not send a request to ``url``, or None."""
        assert self.config.url is not None
        mine, there = urlsplit(self.config.url), urlsplit(url)
        if (there.scheme, there.netloc) == (mine.scheme, mine.netloc) or \
                (problem := endpoint_problem(url)) is None:
            return None
        return (f"its sign-in would ask {mask_text(url)}, named by its protected-resource "
                f"or authorization server metadata, that is not https: {problem}; have the "
                "server publish https:// authorization servers: nothing was sent there")

    async def callback(self) -> Any:
        """The SDK's callback handler: the person's browser came back."""
        from mcp.shared.auth import AuthorizationCodeResult

        await self._back.wait()
        code, iss, error = self._answer
        if error is not None:
            raise self._fail(f"the authorization server did not grant the sign-in "
                             f"({error}); start it again")
        return AuthorizationCodeResult(code=code or "", state=self.state, iss=iss)

    def came_back(self, code: str | None, iss: str | None, error: str | None) -> None:
        self._answer = (code, iss, error)
        self._back.set()

    async def run(self, book: CredentialBook) -> None:
        from mcp.client.auth import OAuthClientProvider
        from mcp.client.auth.exceptions import OAuthRegistrationError, OAuthTokenError
        from mcp.shared.auth import OAuthClientMetadata

        auth, url = self.config.auth, self.config.url
        assert auth is not None and url is not None
        storage = _FlowStorage(await self._known_client(book))
        method: Literal["client_secret_post", "none"] = \
            "client_secret_post" if auth.client_secret else "none"
        self._provider = OAuthClientProvider(url, OAuthClientMetadata(
            client_name="fast-mcp-gateway", redirect_uris=[self.redirect_uri],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method=method, scope=" ".join(auth.scopes) or None),
            storage, self.redirect, self.callback)  # type: ignore[arg-type]
        try:
            with anyio.fail_after(FLOW_SECONDS):
                async with origin_client(self.server, url, self.config.tls,
                                         auth=self._provider, timeout=30, event_hooks={
                                             "request": [self.check_endpoints]}) as http:
                    await http.post(url, json=_PROBE, headers=_PROBE_HEADERS)
            if storage.tokens is None:
                raise self._fail(f"{mask_text(url)} did not ask for a sign-in (no 401); "
                                 "remove auth: from its entry if it needs none")
            await self._store(book, storage)
        except GatewayError as exc:  # (a store's error has no detail: the page said "in time")
            self.error = exc if isinstance(exc, UpstreamError) else self._fail(
                f"the sign-in could not be kept ({exc}); start it again")
        except TimeoutError:
            self.error = self._fail("the sign-in was not completed within 10 minutes; "
                                    "start it again")
        except OAuthRegistrationError:
            self.error = self._fail("its authorization server refused to register the "
                                    "gateway as a client (dynamic client registration); "
                                    "register one there and give its auth.client_id")
        except OAuthTokenError:
            self.error = self._fail("its authorization server refused the authorization "
                                    "code (token exchange); start the sign-in again")
        except httpx2.HTTPError as exc:
            self.error = self._fail(f"cannot reach {mask_text(url)} or its authorization "
                                    f"server ({type(exc).__name__}); check url: and try "
                                    "again")
        except Exception as exc:  # noqa: BLE001 - the SDK's texts may quote secrets
            self.error = self._fail(f"the sign-in failed ({type(exc).__name__}); start it "
                                    "again")
        finally:
            self.published.set()
            self.done.set()
        if self.error is not None:
            logger.warning("upstream %s: sign-in failed: %s", self.server, self.error.detail
                           if isinstance(self.error, SignInFailed) else self.error)

    async def _known_client(self, book: CredentialBook) -> Any:
        """The client to sign in with: ``auth.client_id``, else one registered before
        for this redirect URI (no new registration each time), else None (register)."""
        from mcp.shared.auth import OAuthClientInformationFull

        auth = self.config.auth
        assert auth is not None
        if auth.client_id:
            return OAuthClientInformationFull(
                client_id=auth.client_id, client_secret=auth.client_secret,
                redirect_uris=[self.redirect_uri],  # type: ignore[list-item]
                token_endpoint_auth_method="client_secret_post" if auth.client_secret
                else "none")
        try:
            found = await book.load(self.server)
        except Exception:  # noqa: BLE001 - a row that does not open: register anew
            return None
        client = (found[1].get("client") or {}) if found else {}
        assert self.config.url is not None
        if found and changed_settings(found[1].get("settings"),
                                      signed_in_under(self.config.url, auth)):
            return None  # registered for another server or authorization server
        if self.redirect_uri in (client.get("redirect_uris") or []):
            return OAuthClientInformationFull.model_validate(client)
        return None

    async def _store(self, book: CredentialBook, storage: _FlowStorage) -> None:
        from fast_mcp_gateway.telemetry.redaction import CALLERS

        ctx, tokens = self._provider.context, storage.tokens
        CALLERS.add([t for t in (tokens.access_token, tokens.refresh_token) if t])
        meta, now = ctx.oauth_metadata, time.time()
        endpoint = (str(meta.token_endpoint) if meta is not None else
                    urljoin(ctx.get_authorization_base_url(ctx.server_url), "/token"))
        revoke = meta.revocation_endpoint if meta is not None else None
        row = StoredCredential(
            server=self.server, owner=OWNER_GATEWAY,
            issuer=str(meta.issuer) if meta is not None else None,
            token_endpoint=endpoint, revocation_endpoint=str(revoke) if revoke else None,
            resource=ctx.get_resource_url(), scopes=tokens.scope,
            redirect_uri=self.redirect_uri, updated_at=now, updated_by=self.by, sealed="",
            expires_at=now + tokens.expires_in if tokens.expires_in else None)
        client = storage.client.model_dump(mode="json", exclude_none=True) \
            if storage.client is not None else {}
        assert self.config.url is not None and self.config.auth is not None
        await book.save(row, {"client": client, "tokens": {
            "access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "lifetime": float(tokens.expires_in) if tokens.expires_in else None},
            "settings": signed_in_under(self.config.url, self.config.auth)})
        logger.info("upstream %s: signed in (by %s)%s", self.server, self.by,
                    f", token valid {tokens.expires_in} s" if tokens.expires_in else "")
        if book.in_memory:
            logger.warning("upstream %s: the sign-in lasts this run only: the gateway runs "
                           "without a store (--no-db)", self.server)
        book.announce_signed_in(self.server)


class SignIns:
    """The sign-ins of one gateway (or ``mcp-gateway login``): see the module docstring."""

    def __init__(self, settings: Any, store: Any = lambda: None, manager: Any = None) -> None:
        self.book = CredentialBook([k.get_secret_value() for k in settings.credential_keys],
                                   settings.db if settings.record_calls else None, store)
        self.bind()
        if manager is not None:
            _BY_FLEET[manager] = self
            manager.on_removed(self.end)
        self.port: int = settings.oauth_callback_port
        self._manager = manager
        self._flows: dict[str, _Flow] = {}
        self._ended: dict[str, _Flow] = {}  # flows of removed servers, by state (the page)
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: Any = None  # the callback's uvicorn server while flows wait
        self._listener_done: anyio.Event | None = None
        logging.getLogger("mcp.client.auth").setLevel(logging.CRITICAL + 1)

    def bind(self) -> None:
        """Make this the book and sign-ins of the tasks the caller starts from now on
        (where the gateway starts its own: two gateways in one process keep theirs)."""
        BOOK.set(self.book)
        _CURRENT.set(self)

    @property
    def manager(self) -> Any:
        """The gateway's ``UpstreamManager`` (None in ``mcp-gateway login``)."""
        return self._manager

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold the task group the flows and the callback listener run in."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def start(self, config: ServerConfig, by: str) -> Pending:
        """A pending sign-in of ``config``'s server (the same while one is pending);
        ``SignInFailed`` when it cannot start (the port taken, discovery failed)."""
        if config.auth is None or config.auth.type != "oauth" or config.url is None:
            raise SignInFailed(config.name, "it has no 'auth: {type: oauth}' in its entry: "
                               "nobody signs in to it")
        try:
            self.book.seal()  # no keys (a shared store), a key file refused: said now,
        except StorageError as exc:  # not once the person has signed in
            raise SignInFailed(config.name, str(exc)) from None
        flow = self._flows.get(config.name)
        if flow is None or flow.done.is_set():
            tg = self._tg
            if tg is None:
                raise SignInFailed(config.name, "this gateway is not running (its sign-ins "
                                   "start with it)")
            # Registered before any await: a second start meanwhile waits for this one's
            # link instead of starting a flow that would orphan it.
            flow = self._flows[config.name] = _Flow(config, self.redirect_uri, by)
            try:
                await self._listen(tg, config.name)
            except GatewayError as exc:
                flow.error = exc
                flow.published.set()
                flow.done.set()
                if self._flows.get(config.name) is flow:
                    del self._flows[config.name]
                raise
            tg.start_soon(self._run, flow)
        await flow.published.wait()
        if flow.error is not None:
            raise flow.error
        return flow.pending

    def pending(self, server: str) -> bool:
        """Whether a sign-in of ``server`` waits for its person."""
        flow = self._flows.get(server)
        return flow is not None and flow.url is not None and not flow.done.is_set()

    async def finished(self, server: str) -> GatewayError | None:
        """Wait for ``server``'s pending sign-in to end; its error, or None."""
        flow = self._flows.get(server)
        if flow is not None:
            await flow.done.wait()
            return flow.error
        return None

    def end(self, server: str) -> None:
        """``server`` was removed (``gateway_remove_server``, a reload): its pending
        sign-in ends; a person coming back with its link is told so (while the listener
        serves another flow)."""
        flow = self._flows.get(server)
        if flow is None or flow.done.is_set():
            return
        flow.error = flow._fail(f"server '{server}' was removed from this gateway while "
                                "its sign-in waited; add it again to sign in to it")
        if flow.state is not None:
            self._ended = {**dict(list(self._ended.items())[-15:]), flow.state: flow}
        flow.scope.cancel()
        logger.info("upstream %s: removed: its pending sign-in ended", server)

    async def _run(self, flow: _Flow) -> None:
        try:
            with flow.scope:
                await flow.run(self.book)
        finally:
            if self._flows.get(flow.server) is flow:
                del self._flows[flow.server]
            if not self._flows and self._listener is not None:
                self._listener.should_exit = True  # nobody is to come back any more
                self._listener = None

    async def _listen(self, tg: anyio.abc.TaskGroup, server: str) -> None:
        if self._listener is not None:
            return
        if self._listener_done is not None:
            await self._listener_done.wait()  # the last one is closing: its port frees
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError as exc:
            sock.close()
            raise SignInFailed(server, f"the sign-in callback port 127.0.0.1:{self.port} "
                               f"cannot be opened ({exc.strerror}); free it, or set "
                               "MCP_GATEWAY_OAUTH_CALLBACK_PORT to another port") from None
        sock.listen(16)
        # No log_level (uvicorn would set its loggers' levels process-wide: an app
        # serving the gateway at INFO lost its access log) and no access lines (the
        # callback's URL holds the code and state): ``quiet_protocol``.
        listener = self._listener = callback_server(uvicorn.Config(
            callback_app(self._by_state), log_level=None, log_config=None,
            lifespan="off", http=quiet_protocol()))
        done = self._listener_done = anyio.Event()

        async def serve() -> None:
            try:
                await listener.serve([sock])
            finally:
                sock.close()
                done.set()

        tg.start_soon(serve)

    def _by_state(self, state: str) -> _Flow | None:
        for flow in self._flows.values():
            if flow.state is not None and flow.state == state and not flow.done.is_set():
                return flow
        return self._ended.get(state) if state else None

    async def sign_out(self, server: str, tls: Any = None) -> bool:
        """Forget ``server``'s sign-in (revoked at its authorization server first, best
        effort, under the server's ``tls:``: the running one's, else ``tls``, as
        ``mcp-gateway logout`` reads it from the file) and end its sessions: its replicas
        become ``signed_out``."""
        try:
            found = await self.book.load(server)
        except Exception:  # noqa: BLE001 - a row that does not open is deleted all the same
            found = None
        if found is not None:
            running = self._manager is not None and server in self._manager.services
            await revoke(server, *found, self._manager.get(server).config.tls if running
                         else tls)
        gone = await self.book.forget(server) > 0
        # A session held lets its calls in flight finish; new calls are told these words.
        forget_tokens(server, self.book, SignInRequired(
            server, f"signed out at {at_utc(time.time())}", self.book.signed_in_event(server)))
        if self._manager is not None and server in self._manager.services:
            for replica in self._manager.get(server).replicas:
                if replica.state is not UpstreamState.READY and \
                        replica.state is not UpstreamState.SIGNED_OUT:
                    replica.reconnect()  # (an attempt under way would use the old token)
        logger.info("upstream %s: signed out", server)
        return gone


_CURRENT: ContextVar[SignIns | None] = ContextVar("fast_mcp_gateway_sign_ins", default=None)
_BY_FLEET: weakref.WeakKeyDictionary[Any, SignIns] = weakref.WeakKeyDictionary()


def current_sign_ins(fleet: Any = None) -> SignIns | None:
    """The sign-ins of the gateway whose ``fleet`` (its manager) it is, else those of
    the gateway (or ``login``) whose task asks (set where made and where it starts)."""
    found = _BY_FLEET.get(fleet) if fleet is not None else None
    return found if found is not None else _CURRENT.get()


def forget_removed(fleet: Any, server: str) -> None:
    """Drop a removed server's tokens held in memory by ``fleet``'s gateway: added back,
    it is signed out (its row went with it)."""
    sign_ins = current_sign_ins(fleet)
    forget_tokens(server, sign_ins.book if sign_ins is not None else BOOK.get())
