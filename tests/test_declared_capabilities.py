"""A 2026-07-28 upstream call declares the client capabilities its host declared.

On a 2026-07-28 upstream session the client capabilities travel in each request's
``_meta``.  The gateway declares there what the host of the call declared, narrowed
to what the gateway's own session can relay (``_compat.narrow_capabilities``), not
everything the gateway could relay: an upstream must not plan an ask the host cannot
answer.  The same rule on every path that knows the host's capabilities: the HTTP
express lane and the full path over HTTP, the stdio lane and the stdio full path, for
a 2026-07-28 host (its request's envelope) and a handshake-era one (its initialize).

``tests/servers/caps.py`` is the upstream (``protocol: 2026-07-28``), over stdio and over
streamable HTTP (the HTTP tap's own POSTs): ``seen`` tells what the request declared,
``ask`` asks for a name the 2026-07-28 way only when the request declared
elicitation, as a careful server does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest

from fast_mcp_gateway import _compat
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.http.slow_clients import protocol_with_timeout
from tests.fixtures import PY, SERVERS, make_gateway, serve_http
from tests.test_http_lane import body_of, headers_of
from tests.test_lane import raw_host

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

# More than the gateway relays (an experimental and an extension key), and less
# (elicitation by URL only).  Sampling with tools is relayed (trial14: its sessions
# declare it, ``upstream/ask_details.py``), so a host declaring it declares it upstream.
WIDE = {"sampling": {"tools": {}}, "elicitation": {"url": {}},
        "roots": {"listChanged": True}, "experimental": {"x": {}},
        "extensions": {"io.example/unknown": {}}}
WIDE_SEEN = {"sampling": {"tools": {}}, "elicitation": {"url": {}},
             "roots": {"listChanged": True}}
FORM = {"elicitation": {"form": {}}}


def test_narrowing_keeps_what_both_declare() -> None:
    ours = {"sampling": {"tools": {}}, "elicitation": {"form": {}, "url": {}},
            "roots": {"listChanged": True}}
    assert _compat.narrow_capabilities(ours, WIDE) == WIDE_SEEN
    assert _compat.narrow_capabilities({**ours, "sampling": {}}, WIDE)["sampling"] == {}
    assert _compat.narrow_capabilities(ours, {}) == {}
    assert _compat.narrow_capabilities(ours, {"elicitation": {}}) == {"elicitation": {}}
    assert _compat.narrow_capabilities(ours, {"roots": {"listChanged": False}}) == {
        "roots": {}}
    assert _compat.narrow_capabilities({}, WIDE) == {}


@contextlib.asynccontextmanager
async def upstream_entry(kind: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The config entry of a ``caps.py`` upstream on 2026-07-28: a stdio one the
    gateway starts, or an HTTP one served here."""
    if kind == "stdio":
        yield {"command": PY, "args": [str(SERVERS / "caps.py")], "protocol": "2026-07-28"}
        return
    portfile = tmp_path / "caps.port"
    async with await anyio.open_process([PY, str(SERVERS / "caps.py"), "http",
                                         str(portfile)]) as process:
        try:
            with anyio.fail_after(60):
                while not portfile.exists() or not portfile.read_text():
                    assert process.returncode is None, "caps.py exited"
                    await anyio.sleep(0.05)
            yield {"url": f"http://127.0.0.1:{portfile.read_text()}/mcp", "protocol": "2026-07-28"}
        finally:
            process.terminate()


@contextlib.asynccontextmanager
async def http_front(entry: dict[str, Any], lane: bool
                     ) -> AsyncIterator[tuple[httpx2.AsyncClient, HttpLane]]:
    gateway = make_gateway({"caps": entry}, http_express_lane=lane, call_timeout=60)
    app = gateway.http_app("http")
    found = getattr(app.mcp_entry, "app", None)
    assert isinstance(found, HttpLane) and found.enabled is lane
    async with serve_http(app, http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield http, found


async def post(http: httpx2.AsyncClient, name: str, caps: dict[str, Any],
               **params: Any) -> dict[str, Any]:
    body = body_of(name, {}, {types.CLIENT_CAPABILITIES_META_KEY: caps})
    body["params"].update(params)
    response = await http.post("/mcp", content=json.dumps(body), headers=headers_of(
        name, token=None))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def seen(result: dict[str, Any]) -> Any:
    assert not result.get("isError"), result
    return json.loads(result["content"][0]["text"])


@pytest.mark.parametrize("upstream", ["stdio", "http"])
@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_an_http_hosts_call_declares_its_own_capabilities_upstream(
        tmp_path: Path, upstream: str, lane: bool) -> None:
    async with upstream_entry(upstream, tmp_path) as entry, \
            http_front(entry, lane) as (http, found):
        before = found.served
        assert seen(await post(http, "caps_seen", {})) == {}
        assert seen(await post(http, "caps_seen", WIDE)) == WIDE_SEEN
        assert seen(await post(http, "caps_seen", FORM)) == FORM

        # The upstream asks only a host that can answer, and that host's answer works.
        refused = await post(http, "caps_ask", {})
        assert refused["isError"] and "declared no elicitation" in refused["content"][0]["text"]
        asked = await post(http, "caps_ask", FORM)
        assert asked["resultType"] == "input_required", asked
        (key,) = asked["inputRequests"]
        answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
        again = await post(http, "caps_ask", FORM, inputResponses=answer,
                           **({"requestState": asked["requestState"]}
                              if "requestState" in asked else {}))
        assert again["content"][0]["text"] == "accept:Ada"
        assert found.served - before == (6 if lane else 0)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_a_stdio_hosts_call_declares_its_own_capabilities_upstream(
        tmp_path: Path, lane: bool) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  caps:\n    command: {json.dumps(PY)}\n"
                      f"    args: [{json.dumps(str(SERVERS / 'caps.py'))}]\n"
                      "    protocol: \"2026-07-28\"\n")
    caps_meta = types.CLIENT_CAPABILITIES_META_KEY
    async with raw_host(config, "modern", lane=lane, listed=("caps_seen",)) as host:
        assert seen(await host.call("caps_seen")) == {}
        assert seen(await host.call("caps_seen", meta={caps_meta: WIDE})) == WIDE_SEEN
        asked = await host.call("caps_ask", meta={caps_meta: FORM})
        assert asked["resultType"] == "input_required", asked

    # A handshake-era host: what its initialize declared, and its answer is put to
    # the upstream (the asks bridge asks it, then repeats the call).
    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert method == "elicitation/create"
        return {"action": "accept", "content": {"name": "Ada"}}

    async with raw_host(config, "legacy", lane=lane, listed=("caps_seen",),
                        capabilities={"elicitation": {}, "experimental": {"x": {}}},
                        on_request=answer) as host:
        assert seen(await host.call("caps_seen")) == {"elicitation": {}}
        assert (await host.call("caps_ask"))["content"][0]["text"] == "accept:Ada"
    async with raw_host(config, "legacy", lane=lane, listed=("caps_seen",)) as host:
        assert seen(await host.call("caps_seen")) == {}

