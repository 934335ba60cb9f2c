"""A stop of ``serve --transport http`` while a 2026-07-28 host's call is parked: the
upstream asked a question (front/mrtr.py), the host was answered ``input_required``
and never called again.

On the full path the parked call runs in a task of ``Parking.run``'s group: the
request's handler has returned, and the stop ends it with the app's lifespan.  The
HTTP express lane parks lazily: the call goes on in the request's own ASGI task after
its answer was written, and uvicorn waited for that task the whole grace for requests
in flight (``MCP_GATEWAY_STOP_GRACE``, 5 s by default) before it cut it.  Now the stop
ends the lane's parked calls as it begins (``Parking.stop``).  A real gateway process,
the real handshake-era pusher upstream, real HTTP on 127.0.0.1; the grace is set far
past the wait, so the old code fails by the wait's bound.  And in process
(``tests/test_mrtr_parking.py``'s fakes): what a stopped parked call says and records.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.mrtr import AnsweredEarly, Parking
from tests.fixtures import PY, SERVERS, WITHIN
from tests.test_mrtr_parking import Asker, FakeCall, _first_round, answerable, conclude, host
from tests.test_stop_cut_request import CLI, Lines

MODERN = "2026-07-28"


def _ask(url: str) -> dict[str, Any]:
    """A 2026-07-28 call of the pusher's ``hold`` (it elicits, then waits for the
    answer); the gateway's answer: its questions."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "pusher_hold", "arguments": {}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-http", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}}}
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
        "Accept": "application/json, text/event-stream", "Mcp-Method": "tools/call",
        "Mcp-Name": "pusher_hold"})
    with urllib.request.urlopen(request, timeout=WITHIN) as response:
        text = response.read().decode()
    if response.headers["content-type"].startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:")
                and '"id"' in line][-1]
    return dict(json.loads(text))


def test_a_stop_does_not_wait_for_a_host_that_never_answers(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"pusher": {
        "command": PY, "args": [str(SERVERS / "pusher.py")], "protocol": "legacy"}}}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A grace ten times the wait's bound: a stop that waits for it fails the wait.
    env = {**os.environ, "HOME": str(tmp_path), "MCP_GATEWAY_HTTP_EXPRESS_LANE": "true",
           "MCP_GATEWAY_STOP_GRACE": str(min(600, int(WITHIN * 10)))}
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--transport", "http", "--port", str(port),
         "--no-db"], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        log = Lines(proc.stderr)
        log.wait_for("upstream pusher: starting -> ready")
        asked = _ask(f"http://127.0.0.1:{port}/mcp")["result"]
        assert asked["resultType"] == "input_required", asked
        [question] = asked["inputRequests"].values()
        assert question["method"] == "elicitation/create", asked
        # The host never answers; the gateway is stopped.
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail("the stop waited for the parked call (the grace for requests "
                        "in flight):\n" + "".join(log.lines))
        said = log.wait_ended()
        assert code == 0, said
        # Nothing was cut: the host had its answer, the parked call ended with the stop.
        assert "stopping: cut" not in said and "Traceback" not in said, said
        assert " ERROR " not in said, said
        # The lane's call is ended by the stop, which says so.
        assert "stopping: ending 1 call(s) parked on the express lane" in said, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.anyio
async def test_a_stop_ends_a_lazily_parked_call_and_says_so() -> None:
    parking = Parking()  # the default ask_timeout (120 s): only the stop ends the call
    seen: list[tuple[str, str]] = []
    parking.abandoned = lambda call, status, error: seen.append((status, error))
    upstream = Asker()
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, raised, ended, asked = await _first_round(parking, upstream, tg)
        parking.stop()
        with anyio.fail_after(WITHIN):
            await upstream.cancelled.wait()  # the upstream call is cancelled
            await ended.wait()  # and the host request's task is free
        assert [type(exc) for exc in raised] == [AnsweredEarly]
        assert len(parking) == 0 and parking.expired == 0  # not an expiry
        # One record, as a call the stop cut; a late round is told the same.
        [(status, error)] = seen
        assert status == "cancelled" and "the gateway stopped while it waited" in error
        with pytest.raises(UpstreamError, match="the gateway stopped while it waited"):
            await parking.send(FakeCall(host(asked.request_state, {})), upstream, conclude)
        # A question asked once the gateway is stopping fails upstream (nobody would be
        # left to answer it); the call goes on unparked and answers its host itself.
        late = Asker()
        result = await parking.send(FakeCall(answerable()), late, conclude)
        assert result == "done:" and len(parking) == 0
        assert late.failures == ["tools/call 'up_ask': the gateway is stopping"], late.failures
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_stop_after_the_upstream_answered_records_the_stop_not_a_timeout() -> None:
    # The upstream's call ended (it gave up on its question and answered) and its outcome
    # waits for the host's next round; the gateway stops first.  The record said
    # "timeout", "the host did not call again within 120s", as if ask_timeout had passed.
    parking = Parking()
    seen: list[tuple[str, str]] = []
    parking.abandoned = lambda call, status, error: seen.append((status, error))
    upstream = Asker(finish_first=True)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, raised, ended, asked = await _first_round(parking, upstream, tg)
        with anyio.fail_after(WITHIN):
            await upstream.returned.wait()  # its outcome is kept for the host
        parking.stop()
        with anyio.fail_after(WITHIN):
            await ended.wait()
        assert [type(exc) for exc in raised] == [AnsweredEarly]
        [(status, error)] = seen
        assert (status, error) == ("cancelled", "tools/call 'up_ask': the gateway stopped "
                                   "before the host called again to collect the result; "
                                   "call it again without requestState")
        with pytest.raises(UpstreamError, match="the gateway stopped before the host called"):
            await parking.send(FakeCall(host(asked.request_state, {})), upstream, conclude)
        assert len(parking) == 0 and parking.expired == 0
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_stop_while_the_hosts_answer_is_served_records_the_call_once() -> None:
    # The host answered the question and waits for what comes next; the gateway stops.
    # Its round is told the stop, and the call is recorded once, cancelled (the round
    # recorded it as an error, and the stop recorded it again).
    parking = Parking()
    seen: list[tuple[str, str]] = []
    parking.abandoned = lambda call, status, error: seen.append((status, error))
    upstream = Asker(then_work=True)  # once answered, works until cancelled
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, _, ended, asked = await _first_round(parking, upstream, tg)
        ((key, _),) = (asked.input_requests or {}).items()
        answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
        second = FakeCall(host(asked.request_state, answer))

        async def stop_once_answered() -> None:
            while not parking._calls[asked.request_state]._asks.keys().isdisjoint({key}):
                await anyio.lowlevel.checkpoint()
            parking.stop()

        tg.start_soon(stop_once_answered)
        with anyio.fail_after(WITHIN), pytest.raises(
                UpstreamError, match="the gateway stopped while it waited"):
            await parking.send(second, upstream, conclude)
        with anyio.fail_after(WITHIN):
            await upstream.cancelled.wait()
            await ended.wait()
        [(status, _)] = seen
        assert status == "cancelled" and second.observed  # recorded once, by the stop
        tg.cancel_scope.cancel()
