"""With an OpenTelemetry SDK installed, a gateway call is one trace across both hops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fast_mcp_gateway.front import wire
from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: OpenTelemetry allows no reset
    yield exporter
    # ... so it is undone by hand: a provider left set made every later test's HTTP and
    # stdio lanes step aside (tracing configured), testing the full path in their place.
    provider.shutdown()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    wire._TRACING = False
    assert not wire.tracing_configured()


async def test_spans_and_records_share_one_trace(spans: InMemorySpanExporter,
                                                  tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        spans.clear()
        await client.call_tool("alpha_add", {"a": 1, "b": 2})
        (record,) = (await client.call_tool("gateway_calls",
                                            {"tool": "alpha_add"})).data.calls
    names = {s.name: s for s in spans.get_finished_spans()}
    gateway_span = names["tools/call alpha_add"]  # the gateway serving the host
    upstream_span = names["tools/call add"]        # the upstream serving the gateway
    trace_id = f"{gateway_span.context.trace_id:032x}"
    assert f"{upstream_span.context.trace_id:032x}" == trace_id
    assert record.trace_id == trace_id
