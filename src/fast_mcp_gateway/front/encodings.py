"""The two encodings of a call: typed models for FastMCP, JSON for the express lane.

An encoding is the only part of a call that depends on how the host is served
(``calls.Encoding``): it sends the call through ``Service`` in its form, shows the
asks bridge the questions in its results, and shapes the host's answer.  The typed
ones answer FastMCP components with ``ToolResult`` / ``ResourceResult`` /
``PromptResult`` and raise FastMCP's errors; ``JsonTool`` answers the lane with
the encoded JSON-RPC response line, errors included (as the ``isError`` results
FastMCP makes of a ``ToolError``), so that both paths give the same answer.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import mcp_types as types
import pydantic_core
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from fastmcp.prompts import Message, PromptResult
from fastmcp.prompts.base import InputRequiredPromptResult
from fastmcp.resources.base import InputRequiredResourceResult, ResourceContent, ResourceResult
from fastmcp.tools.base import InputRequiredToolResult, ToolResult
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from fast_mcp_gateway.front.asks import ask_host
from fast_mcp_gateway.front.calls import Answer
from fast_mcp_gateway.front.form_schemas import note_forms
from fast_mcp_gateway.front.lane_host import LaneFront
from fast_mcp_gateway.front.links import LinkMap
from fast_mcp_gateway.front.outcomes import Call, Failure
from fast_mcp_gateway.front.parked import ParkedFront
from fast_mcp_gateway.upstream.framing import StructuredNotFinite, finite
from fast_mcp_gateway.upstream.lifting import lifting, text_of, unlifted
from fast_mcp_gateway.upstream.model import describe_error
from fast_mcp_gateway.upstream.relay import FrontCall

# Result `_meta` keys that describe the upstream connection, not the result.
_CONNECTION_META = frozenset({
    types.SERVER_INFO_META_KEY, types.PROTOCOL_VERSION_META_KEY,
    types.CLIENT_INFO_META_KEY, types.CLIENT_CAPABILITIES_META_KEY,
})


_OWN: Any = object()


def _result_meta(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if not meta:
        return None
    return {k: v for k, v in meta.items() if k not in _CONNECTION_META} or None


def _asking(result: types.InputRequiredResult) -> types.InputRequiredResult:
    """An upstream's questions as the gateway puts them: without the upstream's connection
    ``_meta`` (its ``serverInfo`` named the upstream as the server answering the host;
    the gateway's own stamp goes where none is given, as on every other answer); its
    forms' schemas kept whole past the SDK's sieve (``form_schemas``)."""
    note_forms(result)
    meta = _result_meta(result.meta)
    return result if meta == result.meta else result.model_copy(update={"meta": meta})


class RelayedError(ToolError):
    """An upstream's JSON-RPC error response to ``tools/call``, on its way to the host.

    FastMCP turns anything a tool raises into an ``isError`` result; raised as this
    (a ``ToolError``, which FastMCP passes on unmasked), ``GatewayServer.call_tool``
    re-raises ``response`` for the SDK to answer with the upstream's code, message
    and ``data`` (e.g. -32042 with the URL to open).
    """

    def __init__(self, response: MCPError) -> None:
        super().__init__(response.error.message)
        self.response = response


class _TypedAsks:
    """The asks bridge over typed results: the host is asked through its session."""

    def bridges_asks(self, call: Call) -> bool:
        return call.front.session is not None and not call.front.is_modern

    def asks(self, result: Any) -> Mapping[str, Any] | None:
        if isinstance(result, types.InputRequiredResult):
            return result.input_requests or {}
        return None

    def method_of(self, request: Any) -> str:
        return str(request.method)

    async def ask(self, call: Call, request: Any) -> Any:
        return await ask_host(call.front, request)

    def again(self, call: Call, result: Any, answers: dict[str, Any]) -> None:
        call.front = dataclasses.replace(call.front, input_responses=answers,
                                         request_state=result.request_state)

    def shows(self, asked: types.InputRequiredResult) -> Any:
        return asked


class TypedTool(_TypedAsks):
    """``tools/call`` for a FastMCP component: ``ToolResult`` out, ``ToolError`` raised."""

    def __init__(self, annotations: types.ToolAnnotations | None,
                 links: LinkMap | None = None) -> None:
        self.annotations, self.links = annotations, links

    async def send(self, call: Call) -> types.CallToolResult | types.InputRequiredResult:
        return await call.service.call_tool(call.original, call.arguments, call.front,
                                            self.annotations, path=call.path)

    @staticmethod
    def adopt(outcome: Any) -> Any:
        """A parked call's outcome as this encoding's (``Parking.send``): the JSON result
        of a call an express lane began, as the typed result."""
        if isinstance(outcome, dict):
            return types.CallToolResult.model_validate(unlifted(outcome), by_name=False)
        return outcome

    def expose(self, call: Call, result: Any) -> None:
        """Write ``result``'s resource links in the form hosts see (``links.py``), in
        place: done by the results stage before it measures (``results.review``)."""
        if self.links is not None and isinstance(result, types.CallToolResult):
            self.links.typed_blocks(call.service.name, result.content)

    def finish(self, call: Call,
               result: types.CallToolResult | types.InputRequiredResult) -> Answer[ToolResult]:
        if isinstance(result, types.InputRequiredResult):
            return Answer("success", output=InputRequiredToolResult(_asking(result)),
                          response=result)
        try:
            output = ToolResult(content=result.content,
                                structured_content=result.structured_content,
                                meta=_result_meta(result.meta), is_error=bool(result.is_error))
        except ToolError as exc:  # FastMCP's refusal (NaN in structuredContent): recorded
            return Answer("error", str(exc)[:2000], raises=exc, response=result)
        return Answer(
            "error" if result.is_error else "success",
            _first_text(result.content) if result.is_error else None,
            output=output, response=result,
        )

    def fail(self, call: Call, failure: Failure) -> Answer[ToolResult]:
        if isinstance(failure.cause, MCPError):  # the upstream's own error: as it came
            return Answer(failure.status, failure.error, raises=RelayedError(failure.cause))
        return Answer(failure.status, failure.error, raises=ToolError(failure.message))


class TypedResource(_TypedAsks):
    """``resources/read`` for a FastMCP component (an upstream's error response is
    re-raised as it came, for FastMCP to answer)."""

    async def send(self, call: Call) -> types.ReadResourceResult | types.InputRequiredResult:
        return await call.service.read_resource(call.original, call.front, call.path)

    def finish(self, call: Call, result: types.ReadResourceResult | types.InputRequiredResult
               ) -> Answer[ResourceResult]:
        if isinstance(result, types.InputRequiredResult):
            return Answer("success", output=InputRequiredResourceResult(_asking(result)),
                          response=result)
        try:
            output = _resource_result(result, f"upstream '{call.service.name}' resource "
                                              f"'{call.original}'")
        except (ResourceError, ValueError) as exc:  # answered, unusably: recorded as served
            return Answer("success", raises=exc, response=result)
        return Answer("success", output=output, response=result)

    def fail(self, call: Call, failure: Failure) -> Answer[ResourceResult]:
        if isinstance(failure.cause, MCPError):
            return Answer(failure.status, failure.error,
                          raises=_in_host_terms(failure.cause, call))
        return Answer(failure.status, failure.error, raises=ResourceError(failure.message))


def _in_host_terms(exc: MCPError, call: Call) -> MCPError:
    """The upstream's error as it came (code, message, data), but naming the URI the host
    read rather than the upstream's own (a host cannot resolve ``notes://x`` when it
    read ``notes://notes/x``); the record keeps the upstream's words."""
    if call.original == call.exposed:
        return exc

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(call.original, call.exposed)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    error = exc.error
    return MCPError.from_error_data(types.ErrorData(code=error.code, message=swap(error.message),
                                                    data=swap(error.data)))


class TypedPrompt(_TypedAsks):
    """``prompts/get`` for a FastMCP component (error responses re-raised as they came)."""

    def __init__(self, links: LinkMap | None = None) -> None:
        self.links = links

    async def send(self, call: Call) -> types.GetPromptResult | types.InputRequiredResult:
        return await call.service.get_prompt(call.original, call.arguments or None,
                                             call.front, call.path)

    def expose(self, call: Call, result: Any) -> None:
        """As ``TypedTool.expose``, for the messages' links."""
        if self.links is not None and isinstance(result, types.GetPromptResult):
            self.links.typed_blocks(call.service.name, [m.content for m in result.messages])

    def finish(self, call: Call, result: types.GetPromptResult | types.InputRequiredResult
               ) -> Answer[PromptResult]:
        if isinstance(result, types.InputRequiredResult):
            return Answer("success", output=InputRequiredPromptResult(_asking(result)),
                          response=result)
        return Answer("success", response=result, output=PromptResult(
            messages=[Message(content=m.content, role=m.role) for m in result.messages],
            description=result.description,
            meta=_result_meta(result.meta),
        ))

    def fail(self, call: Call, failure: Failure) -> Answer[PromptResult]:
        if isinstance(failure.cause, MCPError):
            return Answer(failure.status, failure.error, raises=failure.cause)
        return Answer(failure.status, failure.error, raises=PromptError(failure.message))


class JsonTool:
    """``tools/call`` for the express lane: params as JSON in, the response line out.

    ``params`` is the upstream request (upstream name, ``_meta`` ready); ``encode``
    makes a result into the host's response line.  With ``ask`` (a handshake-era
    host in front of a 2026-07-28 upstream) the asks bridge puts the upstream's
    questions to the host through the lane.
    """

    _host_arguments: Any = _OWN  # the host's arguments, once a curator replaced them

    def __init__(self, params: dict[str, Any], annotations: types.ToolAnnotations | None,
                 encode: Callable[[dict[str, Any]], bytes],
                 on_progress: ProgressFnT | None = None,
                 ask: Callable[[str, Any], Awaitable[dict[str, Any]]] | None = None,
                 links: LinkMap | None = None) -> None:
        self.params, self.annotations = params, annotations
        self.encode, self.on_progress, self._ask = encode, on_progress, ask
        self.links = links

    def bridges_asks(self, call: Call) -> bool:
        return self._ask is not None

    async def send(self, call: Call) -> dict[str, Any]:
        params = self.params
        if call.arguments is not params.get("arguments"):  # curated
            if self._host_arguments is _OWN:
                self._host_arguments = params.get("arguments")
            params = self.params = {**params, "arguments": call.arguments}
        lifts = lifting.set(self.lifts(call))
        try:
            return await call.service.call_tool_raw(params, call.front, self.annotations,
                                                    path=call.path,
                                                    on_progress=self.on_progress)
        finally:
            lifting.reset(lifts)

    @staticmethod
    def lifts(call: Call) -> bool:
        """Whether the answer's long strings may stay undecoded until the host's answer
        is written (``upstream/lifting.py``): not when the result stage measures or
        keeps results (a size limit, a cache rule)."""
        config = call.service.config
        return config.max_result_bytes is None and config.cache is None \
            and not config.tools.cache

    @staticmethod
    def adopt(outcome: Any) -> Any:
        """A parked call's outcome as this encoding's (``Parking.send``): the typed result
        of a call the full path began, as JSON."""
        if isinstance(outcome, types.CallToolResult):
            return outcome.model_dump(by_alias=True, mode="json", exclude_none=True)
        return outcome

    def asks(self, result: dict[str, Any]) -> Mapping[str, Any] | None:
        if result.get("resultType") == "input_required":
            return result.get("inputRequests") or {}
        return None

    def method_of(self, request: Any) -> str:
        return str(request.get("method", "?")) if isinstance(request, dict) else "?"

    async def ask(self, call: Call, request: Any) -> Any:
        assert self._ask is not None
        answer = await self._ask(self.method_of(request),
                                 request.get("params") if isinstance(request, dict) else None)
        # As the full path's SDK session writes it upstream: NaN and infinities (which
        # the SDK's parser reads in a host's answer) as null, not as JSON-less NaN.
        return pydantic_core.from_json(pydantic_core.to_json(answer, inf_nan_mode="null"))

    def shows(self, asked: types.InputRequiredResult) -> dict[str, Any]:
        return asked.model_dump(by_alias=True, mode="json", exclude_none=True)

    def again(self, call: Call, result: dict[str, Any], answers: dict[str, Any]) -> None:
        params = {**self.params, "inputResponses": answers}
        if result.get("requestState") is not None:
            params["requestState"] = result["requestState"]
        self.params = params

    def expose(self, call: Call, result: Any) -> None:
        """As ``TypedTool.expose``, for a JSON result (the lane's, a task call's), which
        gets its ``isError`` here too: written after the stage measured, it took a
        result just within the limit 16 bytes over it."""
        if isinstance(result, dict) and result.get("resultType", "complete") == "complete":
            result.setdefault("isError", False)  # as the typed full path writes it
            if self.links is not None:
                self.links.json_blocks(call.service.name, result.get("content"))

    def finish(self, call: Call, result: dict[str, Any]) -> Answer[bytes]:
        problem = _malformed_tool_result(result)
        if problem is not None:
            message = (f"upstream '{call.service.name}' returned an invalid tools/call result "
                       f"for '{call.original}': {problem}")
            return self.fail(call, Failure("error", message, message, ValueError(problem)))
        if result.get("resultType", "complete") == "complete":
            result.setdefault("isError", False)  # as the typed full path writes it
        elif isinstance(state := result.get("requestState"), str):
            # An asking round (a 2026-07-28 host's): its state sealed, as the full path's
            # RequestStateBoundary seals it, for the host's own name and arguments.
            arguments = self._host_arguments
            if arguments is _OWN:
                arguments = self.params.get("arguments")
            result["requestState"] = _lane_front(call.front).seal_state(
                {"name": call.exposed, "arguments": arguments}, state)
        meta = result.get("_meta")
        if isinstance(meta, dict) and not _CONNECTION_META.isdisjoint(meta):
            if stripped := _result_meta(meta):
                result["_meta"] = stripped
            else:
                del result["_meta"]
        try:
            line = self.encode(result)
        except StructuredNotFinite:  # NaN or an infinity (an upstream's bare token)
            refusal = _fastmcp_refusal(result["structuredContent"])
            if refusal is not None:
                line = self.encode(_error_result(refusal))
                return Answer("error", refusal[:2000], output=line, size=len(line))
            line = self.encode(result := finite(result))
        if result.get("isError"):
            content = result.get("content") or ()
            text = next((text_of(c.get("text")) for c in content
                         if isinstance(c, dict) and c.get("type") == "text"), None)
            return Answer("error", text[:2000] if isinstance(text, str) else None,
                          output=line, size=len(line))
        return Answer("success", output=line, size=len(line))

    def fail(self, call: Call, failure: Failure) -> Answer[bytes]:
        if isinstance(failure.cause, MCPError):  # the upstream's own error: as it came
            return Answer(failure.status, failure.error, raises=failure.cause)
        line = self.encode(_error_result(failure.message))
        return Answer(failure.status, failure.error, output=line, size=len(line))


def _lane_front(front: FrontCall) -> LaneFront:
    """The lane's host request a JSON call's round answers: its own, or, while the call
    is parked (MRTR's first round), the one that made it (``ParkedFront``)."""
    if isinstance(front, ParkedFront):
        origin = front.parked.host if front.parked is not None else (
            front.lazy.host if front.lazy is not None else None)
        if origin is not None:
            front = origin
    if not isinstance(front, LaneFront):
        raise TypeError(f"a JSON tools/call answered for {type(front).__name__}, not an "
                        "express lane's LaneFront, cannot seal its requestState")
    return front


def _malformed_tool_result(result: Any) -> str | None:
    """Why ``result`` is no ``CallToolResult`` / ``InputRequiredResult`` (None: it is one).

    Cheap structural checks decide the common case; anything unusual is judged by the
    models the full path would have parsed it with.
    """
    if isinstance(result, dict):
        content, meta = result.get("content"), result.get("_meta", {})
        if (result.get("resultType", "complete") == "complete"
                and isinstance(content, list) and isinstance(meta, dict)
                and isinstance(result.get("isError", False), bool)
                and isinstance(result.get("structuredContent", {}), dict)
                and all(isinstance(c, dict) and c.get("type") == "text"
                        and isinstance(c.get("text"), str) for c in content)):
            return None   # (other blocks, images and the like, are checked by the model)
    model: Any = (types.InputRequiredResult
                  if isinstance(result, dict) and result.get("resultType") == "input_required"
                  else types.CallToolResult)
    try:
        # Lifted strings are validated as the strs they are (every content string field
        # is a plain str): a long image is not decoded to be checked.
        model.model_validate(result, by_name=False)
    except ValidationError as exc:
        return describe_error(exc)
    except ValueError as exc:
        return "; ".join(line.strip() for line in str(exc).splitlines()[:3]) or repr(exc)
    return None


def _fastmcp_refusal(structured: Any) -> str | None:
    """What FastMCP answers for the full path's ``ToolResult`` of a ``structuredContent``
    holding NaN or an infinity (its ``ToolError``, an ``isError`` result; recorded as
    ``TypedTool.finish`` records it); None if it takes it (then written null)."""
    try:
        ToolResult(content=[], structured_content=structured)
    except ToolError as exc:
        return str(exc)
    return None


def _error_result(message: str) -> dict[str, Any]:
    """What FastMCP answers when a tool raises ``ToolError(message)``."""
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _resource_result(result: types.ReadResourceResult, what: str) -> ResourceResult:
    if not result.contents:
        raise ResourceError(f"{what} returned no contents")
    contents: list[ResourceContent] = []
    for item in result.contents:
        if isinstance(item, types.TextResourceContents):
            contents.append(ResourceContent(item.text, mime_type=item.mime_type, meta=item.meta))
        else:
            contents.append(
                ResourceContent(
                    base64.b64decode(item.blob), mime_type=item.mime_type, meta=item.meta
                )
            )
    return ResourceResult(contents=contents, meta=_result_meta(result.meta))


def _first_text(content: Sequence[Any]) -> str | None:
    for block in content:
        if isinstance(block, types.TextContent):
            return block.text[:2000]
    return None
