"""What a handshake-era upstream session declares it can be asked (sampling,
elicitation, roots), and what an ask no host of the call can answer gets.

A handshake-era session declares its client capabilities once, at ``initialize``.
Every session declared every ask the gateway relays, whatever its hosts could answer:
a careful server asked a host that had declared nothing, and got an error it had been
told it would not meet.  A ``per_client`` session of a handshake-era host serves that
host only: it declares only the asks the host declared (as a 2026-07-28 request does:
``tests/test_declared_capabilities.py``), so the server sees what it would connected
directly.  A shared session serves hosts that
come later and cannot declare again: it still declares every ask, and an ask whose
host did not declare it is answered -32601 naming the capability and the fix.

``tests/servers/caps.py`` is the upstream (``protocol: legacy``, stdio): ``seen`` tells
what its session declared, ``push`` elicits (pushed) only when elicitation was declared.
Hosts reach the gateway over real HTTP on 127.0.0.1.  The per_client tests failed on
the code they were written against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult

from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_lane import raw_host

pytestmark = pytest.mark.anyio


async def name_ada(message: str, response_type: Any, params: Any, context: Any) -> Any:
    return ElicitResult(action="accept", content={"value": "Ada"})


def caps_gateway(isolation: str) -> Any:
    return make_gateway({"caps": stdio_entry("caps.py", protocol="legacy",
                                             isolation=isolation)})


async def seen(host: Client[Any]) -> dict[str, Any]:
    result = await host.call_tool("caps_seen", {})
    declared: dict[str, Any] = json.loads(result.content[0].text)
    return declared


async def test_a_per_client_session_declares_what_its_host_declared() -> None:
    """A host that declared nothing: its session declares no ask, and the careful
    server does not ask it (as connected directly).  A host that declared elicitation:
    its session declares elicitation only, and the server's pushed ask reaches it."""
    gateway = caps_gateway("per_client")
    async with serve_http(gateway.http_app("http")) as base:
        async with Client(f"{base}/mcp", mode="legacy") as plain:
            assert await seen(plain) == {}
            refused = await plain.call_tool("caps_push", {}, raise_on_error=False)
            assert refused.is_error
            assert "declared no elicitation" in refused.content[0].text
        async with Client(f"{base}/mcp", mode="legacy", elicitation_handler=name_ada) as asked:
            declared = await seen(asked)
            assert set(declared) == {"elicitation"}, declared
            answered = await asked.call_tool("caps_push", {})
            assert answered.content[0].text == "accept:Ada"


async def test_a_shared_session_refuses_an_ask_its_host_cannot_answer_clearly() -> None:
    """The shared session declares every ask (hosts that come later may answer them);
    a host that declared no elicitation is not asked: the server gets -32601 naming the
    capability and ``isolation: per_client``, and the host's call says so.  A host that
    declared it, on the same session, is asked."""
    gateway = caps_gateway("shared")
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy") as plain, \
            Client(f"{base}/mcp", mode="legacy", elicitation_handler=name_ada) as asked:
        assert set(await seen(plain)) == {"sampling", "elicitation", "roots"}
        refused = await plain.call_tool("caps_push", {}, raise_on_error=False)
        assert refused.is_error
        text = refused.content[0].text
        assert "supports elicitation" in text and "did not declare it" in text, text
        assert "'isolation: per_client' for server 'caps'" in text, text
        assert (await asked.call_tool("caps_push", {})).content[0].text == "accept:Ada"


async def test_a_url_elicitation_a_form_only_host_cannot_answer_is_refused(
        tmp_path: Path) -> None:
    """The shared session declares elicitation in both modes; a stdio host that declared
    it in form mode only (``elicitation: {}``) was sent the server's URL-mode
    elicitation as is.  It is refused upstream, -32601, naming the mode; the host's
    form-mode elicitations still reach it."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"caps": stdio_entry("caps.py",
                                                                  protocol="legacy")}}))
    asked: list[str] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params.get("mode", "form"))
        return {"action": "accept", "content": {"value": "Ada"}}

    async with raw_host(config, "legacy", listed=("caps_seen",),
                        capabilities={"elicitation": {}}, on_request=answer) as host:
        refused = await host.call("caps_push_url")
        assert refused["isError"], refused
        assert "elicitation in URL mode" in refused["content"][0]["text"], refused
        assert (await host.call("caps_push"))["content"][0]["text"] == "accept:Ada"
        assert asked == ["form"]
