"""The client under test in the conformance suite's CLIENT scenarios: a FastMCP 4 host.

``conformance client --command "python host.py --target T"`` starts the scenario's
server, runs this command with the server's URL appended and ``MCP_CONFORMANCE_SCENARIO``
set, then judges what the server saw.  ``--target direct``: the host connects to the
server itself.  ``--target gateway``: the host connects to ``mcp-gateway serve`` (stdio,
``--no-db``) whose only upstream is that URL (``namespace: ""``): the gateway is the
client the server judges, driven by the host.  ``--mode``: the host's era (FastMCP's
``legacy`` or ``auto``).  The host does what each scenario asks of a client
(``SCENARIOS``); its elicitation handler accepts with the form's defaults (what
SEP-1034 asks of the host, which the gateway relays).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

SCENARIOS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "initialize": None,  # connecting (and listing) is the scenario
    "tools_call": ("add_numbers", {"a": 5, "b": 3}),
    "elicitation-sep1034-client-defaults": ("test_client_elicitation_defaults", {}),
    "sse-retry": ("test_reconnection", {}),
}


async def accept_defaults(message: str, response_type: Any, params: Any, context: Any) -> Any:
    schema = getattr(params, "requested_schema", None) or {}
    return {name: prop["default"] for name, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, dict) and "default" in prop}


def gateway(url: str, workdir: Path) -> StdioTransport:
    config = workdir / "servers.json"
    config.write_text(json.dumps({"servers": {"conformance": {"url": url, "namespace": ""}}}))
    return StdioTransport(sys.executable, [
        "-m", "fast_mcp_gateway", "serve", "--config", str(config), "--no-db",
        "--startup-wait", "20"], env={**os.environ}, keep_alive=False,
        log_file=workdir / "gateway.log")


async def run(url: str, target: str, mode: str) -> None:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    if scenario not in SCENARIOS:
        raise SystemExit(f"host.py: scenario {scenario!r} is not one this host plays "
                         f"(known: {', '.join(SCENARIOS)})")
    with tempfile.TemporaryDirectory(prefix="mcp-conformance-host-") as wd:
        transport: Any = (StreamableHttpTransport(url) if target == "direct"
                          else gateway(url, Path(wd)))
        async with Client(transport, mode=mode,  # type: ignore[arg-type]
                          elicitation_handler=accept_defaults) as host:
            await host.list_tools()
            call = SCENARIOS[scenario]
            if call is not None:
                result = await host.call_tool_mcp(*call)
                print(json.dumps(result.model_dump(mode="json", by_alias=True)))
        if target == "gateway":
            print((Path(wd) / "gateway.log").read_text()[-3000:], file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["direct", "gateway"], default="gateway")
    parser.add_argument("--mode", choices=["legacy", "auto"], default="legacy")
    parser.add_argument("url")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.target, args.mode))


if __name__ == "__main__":
    main()
