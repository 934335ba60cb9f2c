"""The plain values of one upstream replica: its state, its catalog, its stderr tail,
its restart policy, and how a failure is put into words.

No I/O and no session here; every other ``upstream`` module may import this one.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from fast_mcp_gateway.errors import SignInFailed, SignInRequired
from fast_mcp_gateway.telemetry.redaction import MASK, mask_text
from fast_mcp_gateway.upstream.launch import LaunchFailed
from fast_mcp_gateway.upstream.loops import HandshakesCrossed


class UpstreamState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    SIGNED_OUT = "signed_out"  # auth: oauth without a usable sign-in (upstream/sign_in.py)
    FAILED = "failed"
    DISABLED = "disabled"
    STOPPED = "stopped"


@dataclass
class Catalog:
    """What one upstream offers, as it listed it (original names)."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)
    # 2026-07-28 freshness hints per list method ("tools/list": (ttl_ms, scope)), when
    # the server set them (every page; the page minimum).  Absent: no hint given (a
    # legacy server, or one that does not hint), which the gateway reads as "stale
    # now, private" when it hints its own aggregate lists (front/hints.py).
    hints: dict[str, tuple[int, str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "tools": len(self.tools),
            "resources": len(self.resources),
            "resource_templates": len(self.templates),
            "prompts": len(self.prompts),
        }


# A private key's body as a server prints it, line by line: base64, RFC 1421 headers.
_KEY_BODY = re.compile(r"[A-Za-z0-9+/=]*|(?:Proc-Type|DEK-Info): .*")


class StderrTail:
    """The last ``maxlen`` lines a stdio upstream wrote to stderr, secrets masked as each
    line is kept (an upstream logging its own URL or token must not show it on), each cut
    at ``LINE_CHARS``: the tail goes into error texts, logs and the admin tools' answers
    (a dumped payload or a minified bundle on one line made them megabytes)."""

    LINE_CHARS = 4000

    def __init__(self, maxlen: int) -> None:
        self.lines: deque[str] = deque(maxlen=maxlen)
        self._partial = b""
        self._skipping = False  # dropping the rest of a runaway line, up to its newline
        self.total_lines = 0
        self._in_key = False  # after a private key's first line: its body is masked too
        self._begun_at = 0  # ``total_lines`` when the latest process began writing

    def feed(self, data: bytes) -> None:
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            self._skipping, data = False, data[end + 1:]
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            self._push(raw)
        if len(self._partial) > 65536:  # a runaway line without newline: its head is kept
            self._push(self._partial, runaway=True)
            self._partial, self._skipping = b"", True

    def flush(self) -> None:
        if self._partial:
            self._push(self._partial)
            self._partial = b""

    def _push(self, raw: bytes, runaway: bool = False) -> None:
        limit = self.LINE_CHARS
        # Masked before it is cut (a secret across the cut is not half shown), on a
        # bounded slice (a complete line may be megabytes).
        line = raw[:limit * 4].decode("utf-8", "replace").rstrip("\r")
        # Each line is masked alone: a key's BEGIN line is, to its end; its body lines
        # (no header of their own) are masked until a line that is not one.
        if self._in_key and _KEY_BODY.fullmatch(line.strip()):
            text = MASK
        else:
            text = mask_text(line)
            self._in_key = "PRIVATE KEY-----" + MASK in text and "-----END" not in line
        if runaway or len(raw) > limit * 4 or len(text) > limit:
            text = f"{text[:limit]} ...[line cut: {len(raw):,} bytes" + (
                " and more]" if runaway else "]")
        self.lines.append(text)
        self.total_lines += 1

    def tail(self, n: int = 20) -> list[str]:
        return list(self.lines)[-n:] if n > 0 else []

    def begin(self) -> None:
        """A new process writes from here on (each connect attempt starts one): what
        ``current`` returns starts here; the ring keeps the earlier lines for ``tail``."""
        self.flush()
        self._skipping = self._in_key = False
        self._begun_at = self.total_lines

    def current(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the latest process only: why *this* attempt failed,
        not the same words of every earlier one of a crash loop."""
        return self.tail(min(n, self.total_lines - self._begun_at))


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between reconnect attempts, and when to stop trying (crash loop)."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    crash_limit: int = 5
    crash_window: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        # The exponent is capped: a server that is never parked (unreachable, timing
        # out) counts attempts for as long as it is down, and 2.0**1024 overflows.
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1 + self.jitter * (2 * rng.random() - 1))

    def renewal_delay(self, renewals: deque[float], now: float, rng: random.Random) -> float:
        """Before a new session for one the server forgot (``renewals``: when the last
        ones were, ``now`` added): none for the first within ``crash_window``, then the
        backoff of ``delay`` (a server that forgets every session is not hammered)."""
        while renewals and now - renewals[0] > self.crash_window:
            renewals.popleft()
        renewals.append(now)
        return 0.0 if len(renewals) == 1 else self.delay(len(renewals) - 2, rng)

    def is_crash_loop(self, failures: deque[float], now: float) -> bool:
        while failures and now - failures[0] > self.crash_window:
            failures.popleft()
        return len(failures) >= self.crash_limit


DEFAULT_RESTART = RestartPolicy()


# How a request the SDK's client did not send again, after a server's idle close met it
# unread, is said (``http_resend``): the session is intact (``failures.lost_with``).
IDLE_CLOSED = "a kept-alive connection it closed as the request arrived"
# ... and how it is told from an upstream's own error: its ``data`` is this, drawn per
# process and never sent upstream, so no upstream can write it.  The words were matched,
# and an upstream's -32000 holding them was read as a lost connection (fidelity15).
IDLE_CLOSED_MARK = {"fast-mcp-gateway/idleClosed": secrets.token_hex(16)}


def idle_closed(exc: MCPError) -> bool:
    """Whether ``exc`` is ``http_resend``'s answer for a request an idle close met."""
    return bool(exc.error.data == IDLE_CLOSED_MARK)


def describe_error(exc: BaseException, url: str | None = None, own_ca: bool = False) -> str:
    """A one-line, human explanation of why a connect or request failed (known secrets
    and URL credentials masked: it goes to ``last_error``, logs and error texts).
    ``url`` (``bare_url``) names the server where ``exc`` carries no request: httpx lets
    a TLS alert read after the handshake out as a bare ``ssl.SSLError``.  ``own_ca``: the
    server's ``tls:`` has a ``ca_file``, trusted instead of the system's CAs."""
    return mask_text(_describe(exc, url, own_ca))


def bare_url(url: str | None) -> str | None:
    """``url`` without its credentials and query, as the HTTP side door names it."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _describe(exc: BaseException, url: str | None = None, own_ca: bool = False) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, LaunchFailed):  # its own words (upstream/launch.py)
        return exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, ValidationError):  # the SDK could not read an answer: which parts
        return _invalid_answer(exc)
    if isinstance(exc, httpx2.HTTPStatusError):
        return http_status_text(exc.response.status_code, exc.response.reason_phrase,
                                str(exc.request.url))
    if isinstance(exc, httpx2.ProxyError):
        return _proxy_refused(exc)
    if isinstance(exc, httpx2.ConnectError):
        return _connect_error(exc, own_ca)
    where = _request_url(exc) if isinstance(exc, httpx2.RequestError) else url or "the server"
    for error in _chain(exc):  # a TLS alert read after the handshake, not on connect
        if isinstance(error, ssl.SSLError) and _refused_client(error):
            # (TLS 1.3: the alert, or the reset that overtook it, or asyncio's servers'
            # hang-up without one: whichever came first, one text)
            return _hung_up(where)
        if isinstance(error, ssl.SSLError) and (said := _tls_text(where, error, own_ca)):
            return said
    if getattr(exc, "idle_closed", False):  # (http_resend.ResendingTransport's mark:
        # an EOF or a reset, on a reused connection, before any byte of the answer)
        return (f"{where} closed the connection without an answer: {IDLE_CLOSED} (it "
                "keeps idle connections less long than the gateway reuses them); not sent "
                "again, for the server may have run it")
    if isinstance(exc, httpx2.ReadError | httpx2.WriteError) and (
            not str(exc) or _hung_up_at_once(exc)):
        return _hung_up(where)
    if isinstance(exc, httpx2.RemoteProtocolError) and str(exc).startswith(
            "Server disconnected without"):  # (httpcore's words: EOF before any byte)
        return _hung_up(where)
    if isinstance(exc, httpx2.RemoteProtocolError) and str(exc).startswith(("illegal ",
                                                                            "Receive buffer")):
        what = ("sent a response head larger than 100 KiB (the most httpx reads): the "
                "server needs fixing" if str(exc).startswith("Receive") else
                "answered in something other than HTTP/1.1 (an HTTP/2-only server? the "
                "gateway speaks HTTP/1.1 to servers: enable HTTP/1.1 there)")
        return f"{_request_url(exc)} {what} ({exc})"
    if isinstance(exc, httpx2.TimeoutException):
        return (f"no answer from {_request_url(exc)} in time ({exc or type(exc).__name__}); "
                "check that the server is up and reachable from this machine")
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {_describe(cause, url)}"
    return text


def _invalid_answer(exc: ValidationError, shown: int = 5) -> str:
    """pydantic's problems on one line, in the answer's own terms (``tools[8].inputSchema``),
    without the values (they may be anything) or pydantic's links."""
    problems = exc.errors(include_url=False, include_input=False)

    def where(loc: tuple[int | str, ...]) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")

    said = "; ".join(f"{where(p['loc']) or 'the answer'}: {p['msg']}" for p in problems[:shown])
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return (f"the server's answer is not valid MCP ({exc.title}: {said}{more}); the "
            "server needs fixing")


def http_status_text(status: int, reason: str, url: str) -> str:
    """What an HTTP error status at an upstream's URL means, and what to change."""
    said = f"HTTP {status}{' ' + reason if reason else ''} at {url}"
    if status in (401, 403):
        return (f"{said}: the server refused the gateway's credentials; give them in the "
                "server's 'headers' (e.g. Authorization: \"Bearer ${TOKEN}\")")
    if status >= 500 and status != 501:  # 501: the method is not implemented there
        return f"{said}: the server failed; see its own logs"
    if status == 407:  # a plain-http request's proxy (an https one's: _proxy_refused)
        return (f"{said}: a proxy on the way asks the gateway for credentials; give its "
                "user and password in HTTP_PROXY (as user:password@ before its host), or "
                "list the server's host in NO_PROXY if it is reached directly")
    if status == 429:
        return f"{said}: the server is rate-limiting the gateway; try again later"
    return (f"{said}: not an MCP endpoint; check the path in 'url' (MCP servers usually "
            "serve streamable HTTP at /mcp, or SSE at /sse)")


def unreachable(exc: BaseException | None) -> bool:
    """Whether an attempt failed because nothing answered at a remote server's address
    (connection refused, a name that does not resolve, no route): a server that is not
    there (yet: started after the gateway, or restarting for a deploy), not one that
    crashes; or a gateway whose handshake crossed this gateway's (``HandshakesCrossed``:
    any host may claim to be it).  The supervisor never parks such a server; it keeps
    retrying it; nor one whose authorization server is not there or fails
    (``SignInFailed.retryable``).  A TLS
    failure anywhere in the chain (httpx reports it as a connect error) is not one."""
    seen: set[int] = set()
    stack = [exc]
    found = False
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return False  # TLS that does not fit (certificate, protocol): a misconfiguration
        if isinstance(current, httpx2.ConnectError | HandshakesCrossed) or (
                isinstance(current, SignInFailed) and current.retryable):
            found = True
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack += [current.__cause__, current.__context__]
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, each once."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _request_url(exc: httpx2.RequestError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised outside a request: httpx has none to name
        return "the server's url"


def _hung_up_at_once(exc: httpx2.RequestError) -> bool:
    """The HTTP side door's ``ReadError`` for a connection it had just opened that the
    server closed before any byte of an answer (EOF or a reset), or httpx's reset (its
    error from httpcore's, from the ``OSError``): what httpx says with a bare
    ``ReadError``, and said alike (a TLS server refusing the gateway's client
    certificate after a TLS 1.3 handshake hangs up so, its alert read or not).  Not an
    idle close crossing a request on a reused connection (``session_intact``: its own
    words)."""
    if getattr(exc, "session_intact", False):
        return False
    cause = exc.__cause__
    if isinstance(cause, asyncio.IncompleteReadError) and not cause.partial:
        return True
    return any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in _chain(exc))


def _refused_client(error: ssl.SSLError) -> bool:
    """Whether ``error`` is a server's alert of a client certificate it wants and was
    not given, or does not accept (read after a TLS 1.3 handshake)."""
    said = str(error).lower()
    return "certificate required" in said or any(a in said for a in _CLIENT_CERT_REFUSED)


def _hung_up(url: str) -> str:
    """httpx says only ``ReadError``: the server hung up.  A TLS server hangs up on a
    plain-HTTP request (an ``http://`` URL for an ``https`` server) without a word, and
    after a TLS 1.3 handshake on a client that presents no certificate, or one it does
    not accept: its alert, when one is sent, may come after the reset or not at all
    (asyncio's servers), so it is said so too, whichever the gateway reads."""
    tls = (" (a TLS server does so to a plain-HTTP request: if it serves https, write "
           "https:// in 'url')" if url.startswith("http://") else
           " (a TLS server does so too when it wants a client certificate it was not "
           "given or does not accept: see the server's tls: client_cert)"
           if url.startswith("https://") else "")
    return (f"{url} closed the connection without an answer{tls}; check that 'url' is "
            "the server's MCP endpoint, and the server's own logs")


# The alerts a server sends of a client certificate it does not accept (OpenSSL's words).
_CLIENT_CERT_REFUSED = ("alert unknown ca", "alert bad certificate", "alert certificate unknown",
                        "alert certificate expired", "alert certificate revoked",
                        "alert unsupported certificate", "alert access denied")


_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}  # OpenSSL's verify codes: no trusted CA signed it


def _tls_text(url: str, error: ssl.SSLError, own_ca: bool = False) -> str | None:
    """What a TLS failure at ``url`` means, and what to change; None: no advice."""
    if isinstance(error, ssl.SSLCertVerificationError) and own_ca \
            and error.verify_code in _UNKNOWN_ISSUER:  # (not SSL_CERT_FILE: unused there)
        return (f"cannot connect to {url}: its TLS certificate does not verify against the "
                f"server's tls: ca_file ({(error.verify_message or '').rstrip('.')}), "
                "trusted instead of the system's CAs: give as ca_file the certificate of "
                "the CA that signed the server's (a file may hold several)")
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"cannot connect to {url}: its TLS certificate does not verify "
                f"({(error.verify_message or error.reason or '').rstrip('.')}): if a private "
                "CA signed it, give the gateway that CA's certificate (the server's tls: "
                "{ca_file: /path/to/ca.pem} in servers.yaml; for every server, SSL_CERT_FILE="
                "/path/to/ca.pem, or SSL_CERT_DIR, in the gateway's environment); if the name "
                "does not match, write in 'url' a host name the certificate is for, or give "
                "that name as the server's tls: {server_name: ...}")
    if error.reason == "WRONG_VERSION_NUMBER":  # a plain-HTTP answer to the TLS hello
        return (f"cannot connect to {url}: the server does not speak TLS there (plain "
                "HTTP?): write http:// in 'url', or the port of its https endpoint")
    said = str(error).lower()
    if "certificate required" in said:  # (TLS 1.3: read after the handshake)
        return (f"{url} asks for a client certificate (mutual TLS), which the gateway "
                "does not present: give it one in the server's tls: (client_cert, "
                "client_key), or let the server accept the gateway without one (a token in "
                "the server's 'headers', say)")
    if any(alert in said for alert in _CLIENT_CERT_REFUSED):  # (TLS 1.3: after the handshake)
        return (f"{url} refused the gateway's client certificate ({error.reason or said}): "
                "give in the server's tls: client_cert a certificate it accepts (signed by a "
                "CA it trusts, for the gateway's use as a client, not expired)")
    if "no application protocol" in said:  # ALPN: http/1.1 refused
        return (f"cannot connect to {url}: the server refused HTTP/1.1 over TLS (an "
                "HTTP/2-only server): the gateway speaks HTTP/1.1 to servers; enable "
                "HTTP/1.1 there")
    if "handshake failure" in said:  # TLS 1.2's answer to no client certificate, too
        return (f"cannot connect to {url}: the server refused the TLS handshake "
                f"({error.reason or said}): it may ask for a client certificate (mutual "
                "TLS), which the gateway presents when given one (the server's tls: "
                "client_cert, client_key), or TLS versions or ciphers this machine's OpenSSL "
                "does not offer; see the server's TLS settings")
    return None


def _proxy(url: str) -> tuple[str, str, bool] | None:
    """The proxy the environment sends ``url``'s requests through (as httpx reads it):
    its URL without credentials, the variable that named it, whether it had some."""
    from fast_mcp_gateway._compat import env_proxy

    try:
        proxy = env_proxy(url) if url.startswith(("http://", "https://")) else None
    except Exception:  # noqa: BLE001 - words only: no proxy named rather than none
        return None
    if proxy is None:
        return None
    parts = httpx2.URL(proxy)
    scheme = url.partition(":")[0]
    variable = (f"{scheme.upper()}_PROXY" if any(os.environ.get(name) for name in (
        f"{scheme}_proxy", f"{scheme.upper()}_PROXY")) else "ALL_PROXY")
    return (str(parts.copy_with(username=None, password=None)).rstrip("/"), variable,
            bool(parts.userinfo))


def _proxy_refused(exc: httpx2.ProxyError) -> str:
    """A proxy's refusal to open the tunnel to the server (``CONNECT``'s status)."""
    url, said = _request_url(exc), str(exc) or type(exc).__name__
    proxy = _proxy(url)
    if proxy is None:
        return f"a proxy refused to connect the gateway to {url} ({said})"
    where, variable, has_credentials = proxy
    head = f"the proxy {where} ({variable}) refused to connect the gateway to {url} ({said})"
    if said.startswith("407"):
        fix = (f"the user and password in {variable} are not accepted; correct them"
               if has_credentials else
               f"give its user and password in {variable} (as user:password@ before its host)")
    else:
        fix = "ask its administrator to allow that host and port"
    return f"{head}: {fix}, or list the server's host in NO_PROXY if it is reached directly"


def _connect_error(exc: httpx2.ConnectError, own_ca: bool = False) -> str:
    url = _request_url(exc)
    for error in _chain(exc):
        if isinstance(error, ssl.SSLError) and (said := _tls_text(url, error, own_ca)):
            return said
    root: BaseException | None = exc
    while root is not None and not (isinstance(root, OSError) and root.errno is not None):
        root = root.__cause__ or root.__context__
    proxy = _proxy(url)
    if proxy is not None:  # (the connection was the proxy's: the server is behind it)
        where, variable, _ = proxy
        detail = (root.strerror if isinstance(root, OSError) and root.strerror
                  else str(exc) or type(exc).__name__)
        return (f"cannot connect to the proxy {where} ({variable}) for {url}: {detail}; "
                f"check that the proxy is running and {variable}, or list the server's "
                "host in NO_PROXY if it is reached directly")
    if isinstance(root, ConnectionRefusedError):
        return (f"cannot connect to {url}: connection refused (nothing is listening on that "
                "port); check that the server is running and the host and port in 'url'")
    if isinstance(root, socket.gaierror):
        return (f"cannot connect to {url}: the host name does not resolve ({root.strerror}); "
                "check the host in 'url'")
    detail = root.strerror if isinstance(root, OSError) and root.strerror else str(exc)
    return (f"cannot connect to {url}: {detail or type(exc).__name__}; check that the "
            "server is running and reachable from this machine")


def needs_sign_in(exc: BaseException | None) -> SignInRequired | None:
    """The ``SignInRequired`` a connect attempt failed with (``auth: oauth`` without a
    usable sign-in: the replica is ``signed_out``, ``upstream/sign_in.py``), if it did."""
    seen: list[BaseException | None] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, SignInRequired):
            return current
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        elif current is not None:
            seen += [current.__cause__, current.__context__]
    return None
