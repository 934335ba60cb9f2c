"""Every error the gateway raises on purpose.

The tree::

    GatewayError
    ├── ConfigError                 a servers.yaml / mcpServers file or setting is wrong
    ├── UpstreamError               something about one upstream server (carries ``server``)
    │   ├── UpstreamUnavailable     not connected: starting, failed, disabled, crashed
    │   │   ├── NoHealthyReplica    no replica may take the call (down, draining, breaker open)
    │   │   ├── SignInFailed        no token for it: its authorization server refused or failed
    │   │   └── SignInRequired      signed out: a person must sign in (admin tool, CLI)
    │   ├── UpstreamTimeout         a request to it outlived its deadline
    │   ├── UpstreamRequestFailed   the transport broke while a request was in flight
    │   └── RateLimited             its (or its tool's) rate limit is exhausted
    ├── UnknownComponent            no tool / resource / prompt of that name is exposed
    ├── BackgroundTaskFailed        a background task failed: the gateway stopped serving
    └── AdminError                  an admin tool was asked something impossible
        ├── NotFound                no server / route of that name or id
        │   └── UnknownServer       no server of that name (and no records of one)
        ├── Conflict                that name is taken already
        └── Forbidden               not for this caller (a token limited to some servers)

Foreign exceptions (SDK ``MCPError``, anyio/httpx transport errors, pydantic
``ValidationError``) are mapped into this tree once, at the adapter edge that
meets them, with ``raise ... from``.  ``to_tool_error`` is the one place that turns
them into the MCP error a host sees; its message says what to do next.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located precisely."""

    source: str
    server: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.server:
            where += f": server '{self.server}'"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass
class ConfigError(GatewayError):
    """A configuration file or setting is invalid; ``issues`` lists every problem found."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @classmethod
    def single(cls, source: str, server: str | None, field: str | None,
               message: str) -> ConfigError:
        return cls([ConfigIssue(source, server, field, message)])

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return str(self.issues[0])
        lines = [f"{len(self.issues)} configuration problems:"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


class UpstreamError(GatewayError):
    """A problem with one upstream server."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(f"upstream '{server}': {message}")
        self.server = server
        self.detail = message


class UpstreamUnavailable(UpstreamError):
    """The upstream has no live session (starting, failed, disabled or crashed)."""


class UpstreamTimeout(UpstreamError):
    """A request to the upstream did not answer before its deadline; ``still_running``:
    it was still reporting progress when ``timeouts.max_total`` ended it (never retried:
    a retry would start the whole run over)."""

    def __init__(self, server: str, message: str, *, still_running: bool = False) -> None:
        super().__init__(server, message)
        self.still_running = still_running


class UpstreamRequestFailed(UpstreamError):
    """The upstream's connection broke while a request was in flight."""


class UnknownComponent(GatewayError):
    """No exposed tool, resource or prompt has that name."""


class BackgroundTaskFailed(GatewayError):
    """One of the gateway's background tasks (call recorder, alerts, change feed, config
    watcher, ...) failed: the gateway stopped serving, and ``run_async`` raises this once
    it has stopped (``serve`` exits with status 1), so that its supervisor restarts it
    rather than it answering on without them."""

    def __init__(self, task: str, error: BaseException) -> None:
        super().__init__(f"background task {task} failed: {type(error).__name__}: {error}")
        self.task = task
        self.error = error


class AdminError(GatewayError):
    """An admin operation cannot be carried out as asked."""


class NotFound(AdminError):
    """The server or route an admin operation names does not exist (REST: 404)."""


def _meant_server(name: str, known: tuple[str, ...]) -> str:
    """The known server a model probably meant: the name in another case, or the server
    a tool's exposed name it gave instead begins with (``alpha_add``: ``alpha``)."""
    meant = [k for k in known if k.casefold() == name.casefold()]
    if meant:
        return f"; did you mean '{meant[0]}'?"
    heads = [k for k in known if name.startswith((f"{k}_", f"{k}-"))]
    return (f"; did you mean '{max(heads, key=len)}'? (a server's name, not a tool's)"
            if heads else "")


class UnknownServer(NotFound):
    """No server has that name; ``known`` are the ones that do.  An adapter serving a
    caller restricted to some servers words it with ``seen_by`` (its servers only)."""

    def __init__(self, name: str, known: Iterable[str], why: str | None = None,
                 note: str = "") -> None:
        self.name, self.known = name, tuple(known)
        super().__init__(f"no server named '{name}' (known: {', '.join(self.known) or 'none'})"
                         + _meant_server(name, self.known) + (f": {why}" if why else "") + note)

    def seen_by(self, may_use: Callable[[str], bool], why: str | None = None,
                note: str = "") -> UnknownServer:
        """As a caller that may use only what ``may_use`` allows is told; ``why``: why
        it may use no server (``Principal.no_server``), said after; ``note`` added (the
        runtime registrations are unread: ``admin.invalid.unread``)."""
        return UnknownServer(self.name, [n for n in self.known if may_use(n)], why, note)


class Conflict(AdminError):
    """The name an admin operation would create is taken (REST: 409)."""


class Forbidden(AdminError):
    """The caller may not make this change: it reaches past the servers its token is
    limited to (REST: 403)."""


class NoHealthyReplica(UpstreamUnavailable):
    """Every replica of a server is down, draining, unhealthy or behind an open breaker."""


class SignInFailed(UpstreamUnavailable):
    """The gateway could not get a token for a server with ``auth:`` (its token endpoint
    refused the client, could not be found or reached).  The message names the endpoint,
    the OAuth error code at most (never the server's description; of an answer that is
    no OAuth error, its first characters, masked) and the fix.
    ``retryable``: the server could not be reached or failed (no setting is wrong): the
    supervisor keeps trying, as for a server that is not there."""

    def __init__(self, server: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(server, message)
        self.retryable = retryable


class SignInRequired(UpstreamUnavailable):
    """A server with ``auth: {type: oauth}`` has no usable sign-in: none yet, or its
    authorization server refused the refresh.  The message says why and the two ways
    to sign in; ``signed_in`` is set once a sign-in is stored (a signed-out replica
    waits on it instead of retrying); ``seen``: when the stored sign-in that does not
    count was stored (only another one ends the wait)."""

    def __init__(self, server: str, why: str, signed_in: object = None,
                 seen: float | None = None) -> None:
        super().__init__(server, f"needs sign-in ({why}): call the gateway_sign_in tool "
                         f"with server '{server}', or run 'mcp-gateway login {server}'")
        self.why, self.signed_in, self.seen = why, signed_in, seen

    @staticmethod
    def why_in(text: str | None) -> str | None:
        """The reason a ``SignInRequired``'s words give, read back from ``text`` (a
        state change's detail quoting them), if they are there."""
        found = _WHY.search(text or "")
        return found.group(1) if found else None


_WHY = re.compile(r"needs sign-in \((.*)\): call the gateway_sign_in tool")


class RateLimited(UpstreamError):
    """A server's or tool's rate limit is exhausted; ``retry_after`` is in seconds."""

    def __init__(self, server: str, message: str, retry_after: float) -> None:
        super().__init__(server, message)
        self.retry_after = retry_after
