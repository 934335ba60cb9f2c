"""What the gateway does to a result before the host gets it: size limits and caching.

The pipeline's result stage (``calls.ResultStage``), the same for both encodings, so
the full path and the express lane answer alike:

* **``max_result_bytes``** (per server): a result whose JSON is larger is an error
  saying so (``oversize: error``, the default), or, with ``oversize: truncate``, a tool
  result whose text is cut to fit, with a last text block and ``_meta`` saying it
  was truncated.  A host never receives a result larger than the limit.
* **caching** (``cache: {ttl}`` per server, or ``tools.cache`` per tool): a successful
  result of a tool the upstream annotates ``readOnlyHint`` or ``idempotentHint`` (or
  listed in ``idempotent_tools``) is served again for the same arguments until the
  ttl passes; a hit carries ``_meta["io.github.fast-mcp-gateway/cache"]``.  On a
  per_client server (its own session per host, or per caller credential) a result is
  served again to the same caller only (``Service.host_of``).  Entries
  are bounded per server (least recently used go first).  A cache rule on any other
  tool is reported (``problems``) and never applied.

Results are measured and kept in their wire form (the JSON a host reads), whatever
encoding produced them.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import mcp_types as types

from fast_mcp_gateway._version import GATEWAY_NAME, __version__
from fast_mcp_gateway.config.curation import CacheRule
from fast_mcp_gateway.front.encodings import JsonTool
from fast_mcp_gateway.front.outcomes import Call, CallRefused
from fast_mcp_gateway.upstream.lifting import unlifted

logger = logging.getLogger(__name__)

CACHE_META = "io.github.fast-mcp-gateway/cache"
TRUNCATED_META = "io.github.fast-mcp-gateway/truncated"
# Bytes kept free for the truncation notice and its _meta mark, but for the numbers in
# them (the longest notice and mark, measured: tests/test_result_limits.py).
_MARK_ROOM = 330
_MODELS: dict[str, Any] = {"tool": types.CallToolResult, "resource": types.ReadResourceResult,
                           "prompt": types.GetPromptResult}


def wire(result: Any) -> dict[str, Any] | None:
    """``result`` as the JSON object a host reads (None: not a plain result)."""
    if isinstance(result, dict):
        return result
    if isinstance(result, types.InputRequiredResult):
        return None
    dump = getattr(result, "model_dump", None)
    return dump(by_alias=True, mode="json", exclude_none=True) if dump is not None else None


_RESULT_TYPE_BYTES = len(',"resultType":"complete"')


def _bytes(data: Any) -> int:
    """``data``'s length as JSON (a content block's: no resultType of its own)."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def size_of(data: dict[str, Any]) -> int:
    size = _bytes(data)
    # A handshake-era upstream's raw result has no resultType, its typed form always
    # does: count it either way, so that both paths measure the same bytes.
    return size if "resultType" in data else size + _RESULT_TYPE_BYTES


def cacheable(call: Call, annotations: types.ToolAnnotations | None) -> bool:
    """Whether repeating ``call`` may be skipped: read-only or idempotent per the upstream
    (or the operator's ``idempotent_tools``)."""
    if call.original in call.service.config.idempotent_tools:
        return True
    return annotations is not None and bool(annotations.read_only_hint
                                            or annotations.idempotent_hint)


CacheKey = tuple[Hashable, str, str, str]
"""(whose: ``Service.host_of``, the tool's original name, its arguments as JSON, the
server's namespace: a result is kept with its links exposed, ``review``, and a hit after
a reload changed the namespace named the resource as it was, which no read reaches)."""


class _Lru:
    """Cached results by ``CacheKey`` (whose, tool, arguments): each with when it was
    stored and its size, judged by the rule and limit *now* (a reload may have lowered
    either since)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: OrderedDict[CacheKey, tuple[float, int, dict[str, Any]]] = \
            OrderedDict()

    def get(self, key: CacheKey, now: float, ttl: float, max_bytes: int | None
            ) -> tuple[float, int, dict[str, Any]] | None:
        """(age in seconds, size, result) of a hit: stored less than ``ttl`` ago and
        within ``max_bytes``; anything else is dropped."""
        hit = self.items.get(key)
        if hit is None:
            return None
        stored, size, data = hit
        if now - stored >= ttl or (max_bytes is not None and size > max_bytes):
            del self.items[key]
            return None
        self.items.move_to_end(key)
        return now - stored, size, data

    def put(self, key: CacheKey, now: float, data: dict[str, Any],
            size: int | None = None) -> None:
        """Store ``data`` (``size``: its ``size_of`` when the caller measured it)."""
        self.items[key] = (now, size_of(data) if size is None else size, data)
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)


class ResultLimits:
    """The result stage (see the module doc); one per pipeline."""

    def __init__(self) -> None:
        self._caches: dict[str, _Lru] = {}
        # The gateway's serverInfo stamp, which a 2026-07-28 host's result gets after
        # this stage (``front/wire.py``): counted, or a result just within the limit
        # reached the host over it.  The gateway sets the real one (its server's).
        self.stamp: Callable[[], dict[str, Any]] = lambda: {
            "name": GATEWAY_NAME, "version": __version__}
        self.hits = 0
        self.misses = 0

    # -- caching ------------------------------------------------------------------------

    def _rule(self, call: Call, encoding: Any) -> CacheRule | None:
        config = call.service.config
        if (config.cache is None and not config.tools.cache) or call.kind != "tool":
            return None  # the common case, decided without a lookup
        rule = config.tools.cache.get(call.original) or config.cache
        if rule is None or not cacheable(call, getattr(encoding, "annotations", None)):
            return None
        return rule

    def _key(self, call: Call) -> CacheKey | None:
        try:
            arguments = json.dumps(call.arguments, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        # A per_client server's answer is its caller's (their own credential or session):
        # kept apart per caller, never served to another.
        return (call.service.host_of(call.front), call.original, arguments,
                call.service.config.effective_namespace)

    def cached(self, call: Call, encoding: Any) -> Any | None:
        """A cached result for ``call`` in ``encoding``'s form, or None."""
        rule = self._rule(call, encoding)
        if rule is None or (key := self._key(call)) is None:
            return None
        cache = self._caches.get(call.service.name)
        hit = None if cache is None else cache.get(
            key, time.monotonic(), rule.ttl, call.service.config.max_result_bytes)
        if hit is None:
            self.misses += 1
            return None
        age, size, data = hit
        data = copy.deepcopy(data)
        mark = {CACHE_META: {"hit": True, "age_s": round(age, 3), "ttl_s": rule.ttl}}
        data.setdefault("_meta", {}).update(mark)
        limit = call.service.config.max_result_bytes
        # What the host reads is the entry, its cache mark and the serverInfo stamp:
        # measured again only when that (the mark's bytes at most) may be over the limit.
        stamp = _stamp_bytes(data, self.stamp) if limit is not None else 0
        if limit is not None and size + _bytes(mark) + len(',"_meta":') + stamp > limit \
                and size_of(data) + stamp > limit:
            # Over it now (a reload lowered the limit, or the mark took it over):
            # dropped, and the call sent, its result measured as any is.
            assert cache is not None
            cache.items.pop(key, None)
            self.misses += 1
            return None
        self.hits += 1
        return _as(call, encoding, data)

    def _remember(self, call: Call, encoding: Any, data: dict[str, Any],
                  size: int | None = None) -> None:
        rule = self._rule(call, encoding)
        if rule is None or data.get("isError") or data.get("resultType", "complete") != \
                "complete" or (key := self._key(call)) is None:
            return
        cache = self._caches.get(call.service.name)
        if cache is None or cache.limit != rule.max_entries:
            cache = self._caches[call.service.name] = _Lru(rule.max_entries)
        kept = copy.deepcopy(data)
        if call.path.notes:  # said once, to this call (a renewed session): not kept
            meta = {k: v for k, v in (kept.get("_meta") or {}).items()
                    if k not in call.path.notes}
            kept.pop("_meta", None)
            kept.update({"_meta": meta} if meta else {})
            size = None
        cache.put(key, time.monotonic(), kept, size)

    def forget(self, server: str | None = None) -> None:
        """Drop cached results (of one server, or all)."""
        if server is None:
            self._caches.clear()
        else:
            self._caches.pop(server, None)

    # -- size -----------------------------------------------------------------------------

    def review(self, call: Call, encoding: Any, result: Any) -> Any:
        """``result`` within the server's ``max_result_bytes`` (raises ``CallRefused``
        when it cannot be), remembered when its tool is cached.  Its resource links are
        first written as hosts see them (``encoding.expose``): measured, noted and kept
        in that form, a namespace longer each (written after, a result of many links
        reached a host over the limit, and a truncation note quoted the server's URI)."""
        expose = getattr(encoding, "expose", None)
        if expose is not None:
            expose(call, result)
        config = call.service.config
        limit = config.max_result_bytes
        if limit is None and config.cache is None and not config.tools.cache:
            return result  # neither a limit nor a cache rule: nothing to look at
        caching = self._rule(call, encoding) is not None
        if limit is None and not caching:
            return result
        data = wire(result)
        if data is None:
            return result
        # Measured and kept as the host reads it (a call that began before a reload set
        # the limit or cache rule may have lifted strings: upstream/lifting.py).
        data = unlifted(data)
        size = size_of(data) if limit is not None else None  # measured once: kept too
        stamp = _stamp_bytes(data, self.stamp) if limit is not None else 0
        if limit is not None and size is not None and size + stamp > limit:
            what = f"{call.kind} '{call.original}' (server '{call.service.name}')"
            if config.oversize != "truncate" or call.kind != "tool":
                raise CallRefused(
                    f"the result of {what} is {size + stamp} bytes, over the server's "
                    f"max_result_bytes ({limit}); ask for less (a narrower query or range), "
                    "or raise max_result_bytes (or set oversize: truncate) in servers.yaml")
            data, size = truncate(data, size + stamp, limit, what, stamp), None
            result = _as(call, encoding, data)
        if caching:
            self._remember(call, encoding, data, size)
        return result


def _as(call: Call, encoding: Any, data: dict[str, Any]) -> Any:
    if isinstance(encoding, JsonTool):
        return data
    return _MODELS[call.kind].model_validate(data)


def _stamp_bytes(data: dict[str, Any], stamp: Callable[[], dict[str, Any]]) -> int:
    """How much the serverInfo stamp adds to ``data`` (none: it has one)."""
    meta = data.get("_meta")
    if isinstance(meta, dict) and meta.get(types.SERVER_INFO_META_KEY) is not None:
        return 0
    added = _bytes({types.SERVER_INFO_META_KEY: stamp()})
    return added + len(',"_meta":') if not isinstance(meta, dict) or not meta else added - 1


def truncate(data: dict[str, Any], size: int, limit: int, what: str,
             stamp: int = 0) -> dict[str, Any]:
    """A tool result cut to fit ``limit`` bytes: every content block that fits whole is
    kept, in order; a block that does not is replaced in place by a short text note
    saying what was left out and how to get it (a text block, the first such, is cut to
    the room left instead, when there is some), and a closing notice and ``_meta`` mark
    are added.  A block that did not fit used to end the result: [text, large image,
    text] lost its last text, which fitted.  Structured content that does not fit is
    dropped and the result marked ``isError`` (a host validating it against the tool's
    output schema would otherwise fail on the missing part).  ``stamp``: bytes the
    host's result gains after this (the serverInfo stamp, ``_stamp_bytes``)."""
    limit, shown = limit - stamp, limit
    base = {k: v for k, v in data.items() if k != "content"}
    blocks = list(data.get("content") or [])
    # Room for the closing notice and the _meta mark, as long as they can be.
    room = _MARK_ROOM + 2 * len(f"{size}{shown}{len(blocks)}")
    budget = limit - room - size_of(base)
    dropped = False
    if "structuredContent" in base and budget < 0:
        del base["structuredContent"]
        base["isError"], dropped = True, True
        budget = limit - room - size_of(base)
    kept: list[dict[str, Any] | None] = []   # None: left out, placed below
    for block in blocks:
        cost = _bytes(block) + 1
        if cost <= budget:
            kept.append(block)
            budget -= cost
        else:
            kept.append(None)
    left = [i for i, block in enumerate(kept) if block is None]
    cut = next((i for i in left if blocks[i].get("type") == "text"), None)
    for i in left:   # a note in place of each, while there is room for it
        if i == cut:
            continue
        note = {"type": "text", "text": _left_out(blocks[i], shown, what)}
        if (cost := _bytes(note) + 1) <= budget:
            kept[i], budget = note, budget - cost
    partly = False   # the cut text: part of it kept, not left out
    if cut is not None:
        if budget > 64 and (part := _cut_text(blocks[cut], budget)) is not None:
            partly = True
            kept[cut] = part
        elif _bytes(note := {"type": "text", "text": _left_out(blocks[cut], shown, what)}
                    ) + 1 <= budget:
            kept[cut] = note
    content = [block for block in kept if block is not None]
    omitted = len(left) - partly
    meta = dict(data.get("_meta") or {})
    content.append({})
    out = _closed(base, content, meta, size, shown, dropped, omitted, len(blocks))
    while size_of(out) > limit and len(content) > 1:   # a last resort for odd block shapes
        content.pop(-2)
        omitted += 1   # counted: the notice and mark never say less was left out
        out = _closed(base, content, meta, size, shown, dropped, omitted, len(blocks))
    if size_of(out) > limit:
        raise CallRefused(f"the result of {what} is {size} bytes, over the server's "
                          f"max_result_bytes ({shown}), and cannot be cut to fit")
    return out


def _closed(base: dict[str, Any], content: list[dict[str, Any]], meta: dict[str, Any],
            size: int, limit: int, dropped: bool, omitted: int, blocks: int
            ) -> dict[str, Any]:
    """The truncated result: ``content`` ending with the closing notice (in place of its
    last item) and ``meta`` with the mark, both saying ``omitted`` of ``blocks``."""
    content[-1] = {"type": "text", "text": (
        f"[truncated by the gateway: the result was {size} bytes, over max_result_bytes "
        f"({limit})" + ("; its structured content was dropped" if dropped else "")
        + (f"; {omitted} of its {blocks} content blocks left out" if omitted else "") + "]")}
    meta[TRUNCATED_META] = {"original_bytes": size, "limit": limit,
                            "structured_content_dropped": dropped, "blocks_left_out": omitted}
    return {**base, "content": content, "_meta": meta}


def _cut_text(block: dict[str, Any], budget: int) -> dict[str, Any] | None:
    """``block`` with its text cut to the longest start whose block, as JSON, fits
    ``budget`` bytes (with its separator).  Measured as JSON, not as UTF-8 text: a quote,
    newline or control character is written two to six bytes long, and a text cut by its
    UTF-8 bytes overflowed, so the last resort dropped it and the blocks kept after it."""
    text = str(block.get("text", ""))
    fits, over = 0, len(text.encode()[: max(0, budget)].decode(errors="ignore")) + 1
    while over - fits > 1:   # the longest start that fits, by halves
        middle = (fits + over) // 2
        if _bytes({**block, "text": text[:middle]}) + 1 <= budget:
            fits = middle
        else:
            over = middle
    return {**block, "text": text[:fits]} if fits else None


def _left_out(block: dict[str, Any], limit: int, what: str) -> str:
    """The note standing for ``block``, left out of a truncated result of ``what``."""
    kind = str(block.get("type", "content"))
    about = [str(block["mimeType"])] if isinstance(block.get("mimeType"), str) else []
    resource = block.get("resource")
    uri = resource.get("uri") if isinstance(resource, dict) else block.get("uri")
    if isinstance(uri, str):
        about.insert(0, uri)
    about.append(f"{_bytes(block)} bytes")
    return (f"[{kind} ({', '.join(about)}) left out by the gateway (max_result_bytes "
            f"{limit}): ask {what} for it alone, or for less at a time]")
