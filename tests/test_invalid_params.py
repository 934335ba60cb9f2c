"""A request whose parameters do not fit the MCP schema is told which ones and why.

The SDK under the gateway answered every such request with a bare -32602 "Invalid
request parameters" (``data: ""``): a host sending a tool's arguments as a list, or no
``uri`` to ``resources/read``, could not tell what to change (a TypeScript-SDK server
asked directly names the field).  The values sent are never echoed back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.front.invalid_params import describe
from tests.stdio_gateway import stdio_gateway

BAD = [
    ("tools/call", {"name": "gateway_list_servers", "arguments": ["s3cret"]},
     "params.arguments: Input should be a valid dictionary (got an array)"),
    ("tools/call", {"name": 5}, "params.name: Input should be a valid string (got a number)"),
    ("resources/read", {}, "params.uri: Field required"),
    ("prompts/get", {"name": "p", "arguments": {"city": 5}},
     "params.arguments.city: Input should be a valid string (got a number)"),
    ("logging/setLevel", {"level": "loud"}, "params.level: Input should be 'alert'"),
]


def test_malformed_params_are_named_and_the_gateway_keeps_serving(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    with stdio_gateway("--config", str(config), "--no-db") as gateway:
        for number, (method, params, named) in enumerate(BAD, start=100):
            reply = gateway.send({"jsonrpc": "2.0", "id": number, "method": method,
                                  "params": params})
            assert reply is not None and "error" in reply, reply
            error: dict[str, Any] = reply["error"]
            assert error["code"] == -32602
            assert error["message"].startswith(f"Invalid parameters for {method}: {named}"), \
                error["message"]
            assert "MCP specification" in error["message"]
            assert error["data"]["method"] == method
            assert "s3cret" not in str(reply)  # the values sent are never quoted
        listed = gateway.call("gateway_list_servers")  # still serving
        assert listed is not None


class _Two(BaseModel):
    a: int
    b: str


def test_many_problems_are_counted_past_the_first_five() -> None:
    class Many(BaseModel):
        items: list[_Two]

    with pytest.raises(ValidationError) as failed:
        Many.model_validate({"items": [{"a": "x"}] * 4})
    message, problems = describe("tools/call", failed.value)
    assert len(problems) == 8
    assert message.count("params.items.") == 5 and "... (3 more)" in message
    assert "'x'" not in message


@pytest.mark.anyio
async def test_only_the_parameters_own_validation_is_worded_as_theirs() -> None:
    """A ``ValidationError`` a handler lets out that is not its parameters' (a result
    model, say) is no fault of the host's parameters: it keeps the SDK's answer."""
    from types import SimpleNamespace

    from fast_mcp_gateway.front.invalid_params import NamedInvalidParams

    class CallToolResult(BaseModel):
        content: list[str]

    async def handler(ctx: Any) -> Any:
        return CallToolResult.model_validate({"content": 5})

    ctx = SimpleNamespace(request_id=1, method="tools/call")
    with pytest.raises(ValidationError):
        await NamedInvalidParams()(ctx, handler)  # type: ignore[arg-type]
