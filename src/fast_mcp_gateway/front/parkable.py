"""The seams of MRTR parking (``front/mrtr.py``) with its callers: the pipeline call it
reads and writes (``Parkable``), the encoding that sends it and shows its questions
(``Sending``), roots outside calls (``HostRootsKeeper``), and how a lazily parked call
ends its caller's task (``AnsweredEarly``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import mcp_types as types

from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.relay import FrontCall

R_co = TypeVar("R_co", covariant=True)


class Parkable(Protocol):
    """What parking reads and writes on a pipeline ``Call`` (``outcomes.Call``)."""

    kind: str
    exposed: str
    service: Service
    front: FrontCall
    principal: Principal
    path: CallPath
    started_at: float
    t0: float
    observed: bool

    @property
    def method(self) -> str: ...


class Sending(Protocol[R_co]):
    """The encoding's side (``asks.Asking``): send the call, show questions as ``R``."""

    async def send(self, call: Any) -> R_co: ...

    def shows(self, asked: types.InputRequiredResult) -> R_co: ...


class HostRootsKeeper(Protocol):
    """Roots outside calls (``upstream/roots.SoleHost``): told the roots a host gave in
    a round, and asked first, before a call goes upstream, whether to ask for them."""

    async def learned(self, server: str, front: FrontCall,
                      result: types.ListRootsResult) -> None: ...

    async def before_call(self, server: str, front: FrontCall, per_client: bool) -> None: ...


class AnsweredEarly(Exception):
    """The caller's request was already answered (``Answering.reply``) by a lazily
    parked call's first question; the caller must not answer it again."""


Abandoned = Callable[[Any, str, str], None]
"""Observes a parked call that ended with no host round to answer it:
``(call of its first round, status, error)`` (``CallPipeline._abandoned``)."""

Conclude = Callable[[Any, Any, Any], Any]
"""The pipeline's tail for a result already sent (``CallPipeline.conclude``):
``(call, encoding, result) -> output``; observed and shaped as any call's answer."""
