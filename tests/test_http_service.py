"""The HTTP service: cancelled calls recorded as such, the JWT verification cache, and
the HTTP front's edges (401/403 bodies and challenges, RFC 9728, limits), over real
HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import (
    alpha_server,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
)

pytestmark = pytest.mark.anyio

MODES = ["2026-07-28", "legacy"]


def cancelled_calls(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (sample.name == "mcp_gateway_calls_total"
                    and sample.labels.get("status") == "cancelled"):
                return sample.value
    return 0.0


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_the_host_cancels_is_recorded_cancelled_not_failed(
    tmp_path: Path, mode: str,
) -> None:
    events = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway({"inter": memory_entry("inter"), "alpha": memory_entry("alpha")},
                           {"inter": interactive_server(events), "alpha": alpha_server()},
                           db=str(tmp_path / "store.db"))
    async with serve_http(gateway.http_app("http")) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool_mcp, "inter_wait_for_cancel", {})
                with anyio.fail_after(30):
                    await events["started"].wait()
                tg.cancel_scope.cancel()  # the host gives up on the call
            with anyio.fail_after(30):
                await events["cancelled"].wait()  # ... and the upstream was told

        async with httpx2.AsyncClient(base_url=base) as http:
            async def cancelled_records() -> list[dict[str, Any]]:
                page = await http.get("/api/v1/logs/invocations",
                                      params={"status": "cancelled"})
                assert page.status_code == 200, page.text
                return list(page.json()["calls"])

            with anyio.fail_after(30):
                # The record is queued as the cancellation passes the pipeline, which
                # may be just after the upstream saw it: polled over REST (no event).
                while not (records := await cancelled_records()):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            (record,) = records
            assert record["exposed"] == "inter_wait_for_cancel"
            assert record["status"] == "cancelled"
            assert "cancelled" in record["error"]
            stats = (await http.get("/api/v1/stats/overview")).json()
            groups = {g["key"]: g for g in stats["groups"]}
            assert groups["inter"]["count"] == 1
            assert groups["inter"]["cancelled"] == 1
            assert groups["inter"]["errors"] == 0  # cancelled is not a failure
            assert groups["inter"]["success_rate"] is None  # no call finished there
            assert groups["alpha"]["cancelled"] == 0 and groups["alpha"]["errors"] == 0
            scrape = await http.get("/metrics")
            assert cancelled_calls(scrape.text) == 1.0
