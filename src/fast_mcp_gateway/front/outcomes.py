"""One call as the pipeline carries it, and what comes of it.

``Call`` is a host operation on an upstream component on its way through the
pipeline (``calls.py``); a refused or failed one becomes one ``Failure``
(``failure_of``: the pipeline's error mapping, its status and what the host is
told), and a finished one a ``CallOutcome`` for the observers.  These are apart
from the pipeline's stages so that calls.py holds the stages and their order, and
so that what only reads calls and outcomes (encodings, observers such as metrics
and the dashboard's feed) does not import the pipeline.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import (
    GatewayError,
    NoHealthyReplica,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from fast_mcp_gateway.policies.retry import FailureKind
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.relay import FrontCall

Kind = Literal["tool", "resource", "prompt"]
Status = Literal["success", "error", "timeout", "rejected", "cancelled"]
_METHODS: dict[str, str] = {"tool": "tools/call", "resource": "resources/read",
                            "prompt": "prompts/get"}


@dataclass(eq=False, slots=True)
class Call:
    """One host operation on an upstream component, as it goes through the pipeline."""

    kind: Kind
    exposed: str                 # the name / URI the host used
    service: Service             # where it goes (after the route rule)
    original: str                # the upstream's own name / URI
    arguments: Any               # a curator may replace them
    front: FrontCall             # the host request (replaced as asks are answered)
    principal: Principal
    owner: Service               # the server that exposes the component
    rule: str | None = None      # the route rule that applied, as recorded
    observed: bool = False       # its outcome went to the observers (once per call)
    path: CallPath = field(default_factory=CallPath)
    started_at: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def method(self) -> str:
        return _METHODS[self.kind]


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed call, mapped once: its status, what is recorded and what the host is told."""

    status: Status
    error: str                   # recorded (an upstream's own error message)
    message: str                 # for the host: what went wrong, and where
    cause: BaseException


class CallRefused(GatewayError):
    """An authorization or curation hook refused the call (the host gets ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallOutcome:
    """What observers learn about one finished call."""

    __slots__ = ("_response", "_size", "call", "cause", "duration_ms", "error", "status")

    def __init__(self, call: Call, status: Status, error: str | None, duration_ms: float,
                 response: Any, size: int | None, cause: BaseException | None = None) -> None:
        self.call, self.status, self.error = call, status, error
        self.duration_ms = duration_ms
        self._response, self._size = response, size
        # What failed the call (a refusal, ``UpstreamError``, an upstream's error
        # response), e.g. to tell a rate limit from other rejections; None on success.
        self.cause = cause

    @property
    def kind(self) -> Kind:
        return self.call.kind

    @property
    def server(self) -> str:
        """The server the call went to (after the route rule)."""
        return self.call.service.name

    @property
    def tool(self) -> str:
        """The exposed name (or URI) the host called."""
        return self.call.exposed

    @property
    def response_bytes(self) -> int | None:
        """The size of the response (computed on first use: a typed one is encoded)."""
        if self._size is None and self._response is not None:
            with contextlib.suppress(AttributeError):  # not a model: size unknown
                self._size = len(self._response.model_dump_json(by_alias=True,
                                                                exclude_none=True))
            self._response = None
        return self._size


CallObserver = Callable[[CallOutcome], None]
"""Called as the call finishes (in its task, or for a lane's call at the loop's next
turn, after the answer went out; the call's context either way): must not block
(hand work to a queue).  An exception is logged and otherwise ignored."""


def status_of(exc: BaseException) -> Status:
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, RateLimited | NoHealthyReplica):
        return "rejected"
    return "error"


def status_after(path: CallPath, exc: UpstreamError) -> Status:
    """``status_of``, except that a call one of whose attempts reached an upstream was
    not "rejected" (not sent) when the replicas left for another were none: it ran and
    failed, as its last sent attempt did (``timeout`` or ``error``)."""
    status = status_of(exc)
    if status == "rejected" and isinstance(exc, NoHealthyReplica):
        sent = [o for _, o in path.attempts if o not in ("ok", FailureKind.NOT_SENT.value)]
        if sent:
            return "timeout" if sent[-1] == FailureKind.TIMEOUT.value else "error"
    return status


def failure_of(call: Call, exc: CallRefused | UpstreamError | MCPError) -> Failure:
    """The one error mapping: what a refusal or an upstream failure means to the host."""
    if isinstance(exc, CallRefused):
        return Failure("rejected", exc.reason, exc.reason, exc)
    if isinstance(exc, UpstreamError):
        return Failure(status_after(call.path, exc), str(exc), str(exc), exc)
    return Failure("error", exc.error.message,
                   f"upstream '{call.service.name}' rejected {call.method} '{call.original}': "
                   f"{exc.error.message}", exc)
