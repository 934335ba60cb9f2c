"""``mcp-gateway serve`` with call-pipeline hooks installed (for tests/test_calls.py).

Usage: ``python hooked_gateway.py servers.yaml``; settings come from ``MCP_GATEWAY_*``
as for ``serve``.  Hooks, each set by an environment variable:

* ``HOOK_OBSERVED``: a file every call outcome is appended to, one JSON line each,
  written before the host gets the answer;
* ``HOOK_REFUSE``: an exposed tool name the authorizer refuses;
* ``HOOK_CURATE_TIMES``: the curator sets ``times`` to this for ``up_echo``;
* ``HOOK_EVENTS``: a file every event on the gateway's event bus is appended to (one
  JSON line each), from a subscriber that listens from the start, as the dashboard's
  live stream does; without it nobody subscribes.
"""

import json
import os
import sys
from typing import Any

import anyio
import anyio.abc

from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.front.outcomes import Call, CallOutcome
from fast_mcp_gateway.gateway import Gateway


def main() -> None:
    settings = GatewaySettings(config=sys.argv[1])
    assert settings.config is not None
    gateway = Gateway(load_config(settings.config), settings)
    pipeline = gateway.provider.pipeline

    if observed := os.environ.get("HOOK_OBSERVED"):
        sink = open(observed, "a", buffering=1)  # noqa: SIM115 - open for the process's life

        def observe(outcome: CallOutcome) -> None:
            sink.write(json.dumps({
                "kind": outcome.kind, "tool": outcome.tool, "server": outcome.server,
                "original": outcome.call.original, "status": outcome.status,
                "error": outcome.error, "rule": outcome.call.rule,
                "client": outcome.call.front.client_id,
                "arguments": outcome.call.arguments,
                "response_bytes": outcome.response_bytes,
                "duration_ms": outcome.duration_ms,
            }) + "\n")

        pipeline.observers.append(observe)

    if refuse := os.environ.get("HOOK_REFUSE"):
        async def authorize(call: Call) -> str | None:
            if call.exposed != refuse:
                return None
            return (f"client '{call.front.client_id}' may not call '{call.exposed}' "
                    "(test policy)")

        pipeline.authorizer = authorize

    if times := os.environ.get("HOOK_CURATE_TIMES"):
        async def curate(call: Call) -> str | None:
            if call.exposed == "up_echo":
                arguments: dict[str, Any] = dict(call.arguments or {})
                arguments["times"] = int(times)
                call.arguments = arguments
            return None

        pipeline.curator = curate

    events = os.environ.get("HOOK_EVENTS")
    out = open(events, "a", buffering=1) if events else None  # noqa: SIM115 - process-long

    async def listen(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert out is not None
        with gateway.events.subscribe() as stream:
            task_status.started()
            while (event := await stream.get()) is not None:
                out.write(json.dumps({"kind": event.kind, "payload": event.payload}) + "\n")

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            if out is not None:
                await tg.start(listen)
            await gateway.run_async()
            gateway.events.close()  # the listener writes what is queued, then returns

    anyio.run(run)


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    main()
