"""What ``mcp-gateway serve`` (stdio) has loaded at its milestones, seen from inside.

Start-up speed and memory follow from what is imported: the upstreams are spawned
before the server stack is loaded (spawn-first), ``initialize`` is answered without
the libraries only other modes use (the HTTP stack's extras, the dashboard, metrics,
PostgreSQL), and a gateway whose upstreams all run over stdio never loads
``fastmcp.client`` (its auth and token-storage libraries: ~0.2 s of CPU, several MB).
A wrapper runs the real CLI and records ``sys.modules`` when the upstreams are spawned,
when the SDK answers the opening request (which the host got early: its reply is
compared, not sent) and at each line the gateway writes to its host; no timing is
asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import PY

pytestmark = pytest.mark.anyio

WELL = Path(__file__).parent / "servers" / "well.py"

WRAPPER = textwrap.dedent("""\
    import gc, json, sys
    from pathlib import Path

    out = Path(sys.argv.pop(1))

    def record(name):
        (out / name).write_text(json.dumps(sorted(sys.modules)))
        facts = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                 "thresholds": gc.get_threshold()}
        if name == "at-initialize.json":  # garbage kept frozen (then frozen again)
            gc.collect()  # what is not frozen
            gc.unfreeze()
            facts["frozen_garbage"] = gc.collect()
            gc.freeze()
        (out / ("gc-" + name)).write_text(json.dumps(facts))

    from fast_mcp_gateway.upstream import processes
    spawn = processes.spawn_early

    async def spawn_early(starts):
        record("at-spawn.json")
        return await spawn(starts)

    processes.spawn_early = spawn_early

    from fast_mcp_gateway.front import early, stdio
    writes = []

    # The SDK's own answer to the opening request (answered early, front/early.py,
    # and compared there rather than written again).
    def differences(sent, sdk, _original=early.differences):
        writes.append(1)
        record("at-initialize.json")
        return _original(sent, sdk)
    early.differences = differences

    for method in ("write", "write_bytes", "write_nowait"):
        def wrapped(self, *args, _original=getattr(stdio.LineWriter, method), **kwargs):
            writes.append(1)
            record("at-initialize.json" if len(writes) == 1 else "at-last-write.json")
            return _original(self, *args, **kwargs)
        setattr(stdio.LineWriter, method, wrapped)

    from fast_mcp_gateway.cli.main import main
    sys.exit(main())
""")

# Loaded only for HTTP/SSE, the dashboard, /metrics, PostgreSQL or HTTP upstreams
# (griffe: only to parse a tool function's docstring, which no gateway tool has).
NOT_FOR_STDIO = ("fastmcp.client", "key_value", "jinja2", "prometheus_client", "asyncpg",
                 "griffe",
                 "fast_mcp_gateway.http", "fast_mcp_gateway.ui.app",
                 "fast_mcp_gateway.telemetry.metrics")


# Loaded only on a failure path (issue 15: ~0.6 MB of RSS for a process that never takes
# one): tenacity by the alert webhook's first delivery (the store's retries are
# store/retry.py), difflib by a "did you mean" suggestion or a pinned tool's diff.
ON_FAILURE = ("tenacity", "difflib")


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m in prefixes or m.startswith(
        tuple(p + "." for p in prefixes)))


def wrapped_serve(tmp_path: Path, *args: str, gateway: str = "",
                  env: dict[str, str] | None = None) -> StdioTransport:
    """``serve`` of one stdio upstream (``well``) under ``WRAPPER``, which records in
    ``tmp_path`` what is loaded at each milestone (``recorded``); ``gateway``: the
    config's ``gateway:`` line, if any.  ``--startup-wait 600``: the first list waits for
    ``well``'s first connect (the transport passes the SDK's scrubbed environment, so
    conftest's ``MCP_GATEWAY_STARTUP_WAIT`` does not reach the gateway; with the default
    2 s a loaded machine listed the tools before ``well`` was up)."""
    wrapper = tmp_path / "serve.py"
    wrapper.write_text(WRAPPER)
    config = tmp_path / "servers.yaml"
    config.write_text(gateway + f"servers:\n  well: {{command: {PY}, args: [{WELL}]}}\n")
    return StdioTransport(
        PY, [str(wrapper), str(tmp_path), "serve", "--config", str(config),
             "--db", str(tmp_path / "store.db"), "--log-level", "WARNING",
             "--startup-wait", "600", *args],
        env=env, keep_alive=False, log_file=tmp_path / "gateway.log")


def python_thresholds() -> tuple[int, ...]:
    """The collector's thresholds a fresh interpreter starts with (700/10/10 up to 3.12,
    2000/10/10 from 3.13): what the gateway must have restored after its import."""
    out = subprocess.run([PY, "-c", "import gc; print(*gc.get_threshold())"],
                         capture_output=True, text=True, check=True).stdout
    return tuple(int(value) for value in out.split())


def recorded(tmp_path: Path, name: str) -> list[str]:
    """The modules ``WRAPPER`` recorded as loaded at milestone file ``name``."""
    return list(json.loads((tmp_path / name).read_text()))


@pytest.mark.timeout(240)  # two processes start; on a loaded machine that takes a while
async def test_stdio_serve_loads_only_what_answering_needs(tmp_path: Path) -> None:
    transport = wrapped_serve(tmp_path, env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true"})
    with anyio.fail_after(200):
        async with Client(transport, mode="legacy") as client:
            names = {tool.name for tool in await client.list_tools()}
            assert "well_echo" in names
            echoed = await client.call_tool("well_echo", {"text": "hi"})
            assert echoed.content[0].text == "hi"  # type: ignore[union-attr]

    at_spawn = recorded(tmp_path, "at-spawn.json")
    # Spawn-first: nothing of the server stack (FastMCP, the SDK) before the spawn.
    assert loaded(at_spawn, ("fastmcp", "mcp", "starlette", "uvicorn")) == []
    assert "fast_mcp_gateway.config.loader" in at_spawn  # the config was read first
    at_initialize = recorded(tmp_path, "at-initialize.json")
    assert "fastmcp" in at_initialize  # the front is FastMCP's
    assert loaded(at_initialize, NOT_FOR_STDIO) == []
    # The server stack's objects are out of the collector's reach (gc.freeze): none of
    # its passes before the answer, or after, walks them.  It collects what is new.
    collector = json.loads((tmp_path / "gc-at-initialize.json").read_text())
    assert collector["enabled"] and collector["frozen"] > 100_000, collector
    assert tuple(collector["thresholds"]) == python_thresholds(), collector  # Python's own
    # After a list and a call through the stdio upstream: still none of them (FastMCP
    # reads its session-state store on every list; the gateway's makes it on a write).
    assert loaded(recorded(tmp_path, "at-last-write.json"), NOT_FOR_STDIO) == []
    assert loaded(recorded(tmp_path, "at-last-write.json"), ON_FAILURE) == []
    # The import's cyclic garbage was collected as it was made, not frozen with the rest
    # (~490 objects with the collector off during the import: pydantic's signatures of
    # builtin default factories, each holding a copy of sys.modules; ~0.4 MB; on 3.13
    # ~400 of them reach the middle generation first: cli/serve.py collects it there).
    assert collector["frozen_garbage"] < 100, collector


# The admin operations and their models: loaded by the first admin tool call
# (admin/listed.py lists the tools from their definitions until then).
ADMIN_OPERATIONS = tuple(f"fast_mcp_gateway.admin.{name}" for name in (
    "mcp_tools", "models", "servers", "history", "inspector", "routes", "pins", "alerts",
    "alert_tools", "server_tools", "arguments"))


@pytest.mark.timeout(240)
async def test_stdio_serve_loads_the_admin_operations_on_the_first_admin_call(
        tmp_path: Path) -> None:
    transport = wrapped_serve(tmp_path)

    with anyio.fail_after(200):
        async with Client(transport) as client:
            names = {tool.name for tool in await client.list_tools()}
            assert {"well_echo", "gateway_list_servers", "gateway_calls"} <= names
            await client.call_tool("well_echo", {"text": "hi"})
            # Recorded as the answer to that call was written: listed, not loaded.
            assert loaded(recorded(tmp_path, "at-last-write.json"), ADMIN_OPERATIONS) == []
            servers = await client.call_tool("gateway_list_servers", {})
            assert [s["name"] for s in servers.structured_content["servers"]] == ["well"]
    assert loaded(recorded(tmp_path, "at-initialize.json"), ADMIN_OPERATIONS) == []
    assert {"fast_mcp_gateway.admin.mcp_tools", "fast_mcp_gateway.admin.models"} <= set(
        recorded(tmp_path, "at-last-write.json"))
    # The search meta-tools are made on first use: never with the default exposure.
    assert "fast_mcp_gateway.front.search" not in recorded(tmp_path, "at-last-write.json")


@pytest.mark.timeout(240)
async def test_stdio_serve_with_admin_off_loads_no_admin_operation(tmp_path: Path) -> None:
    """``gateway.admin: off`` adds the admin tools too (listed from their definitions, so
    that a reload may widen the mode): none is listed, and none loads an operation."""
    transport = wrapped_serve(tmp_path, gateway='gateway: {admin: "off"}\n')
    with anyio.fail_after(200):
        async with Client(transport) as client:
            names = {tool.name for tool in await client.list_tools()}
            assert "well_echo" in names and not any(n.startswith("gateway_") for n in names)
            await client.call_tool("well_echo", {"text": "hi"})
    for name in ("at-initialize.json", "at-last-write.json"):
        assert loaded(recorded(tmp_path, name), ADMIN_OPERATIONS) == []
