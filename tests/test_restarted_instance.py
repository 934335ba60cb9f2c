"""What a host or browser is told when its next step reaches the same gateway after a
restart: the default ``--instance-id`` is host-pid, so a restarted gateway reads its
own earlier login form (or question) as another instance's.

review24: a single gateway restarted (an upgrade, a crash) with a dashboard login form
open: the login said "This form was served by another gateway instance ... Behind a
load balancer, keep each browser on one instance" -- there was no balancer.  Likewise
a 2026-07-28 host's next round after a restart was told which instance "holds" its
question and the balancer's fix.  Both now say the restart too, and what to do.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.fixtures import make_gateway, memory_entry
from tests.pg import free_port
from tests.test_request_state import KEY, served
from tests.test_rest_cli import _wait_for_api
from tests.test_scaleout_trial import pushing_upstream
from tests.test_tasks import ALICE, ALICE_SHA, post
from tests.test_ui import AUTH as UI_AUTH
from tests.test_ui import OPS as UI_OPS
from tests.test_ui import _csrf


def _serve(config: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--transport", "http",
         "--host", "127.0.0.1", "--port", str(port), "--no-db", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    return proc.communicate(timeout=60)[1]


def test_a_login_form_from_before_a_restart_says_the_restart(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"auth": UI_AUTH}, "servers": {}}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    before = _serve(config, port)  # the default --instance-id: host-pid
    try:
        _wait_for_api(f"{base}/health", before)
        form = _csrf(httpx2.get(f"{base}/ui/login", timeout=30).text)
    finally:
        said = _stop(before)
    assert "Traceback" not in said, said
    after = _serve(config, port)
    try:
        _wait_for_api(f"{base}/health", after)
        refused = httpx2.post(f"{base}/ui/login", timeout=30, data={
            "token": UI_OPS, "csrf_token": form, "next": "/ui/"})
    finally:
        said = _stop(after)
    assert refused.status_code == 403, refused.text
    text = html.unescape(refused.text)
    assert "or by this gateway before it restarted" in text, text
    assert "reload the page and log in again" in text, text


@pytest.mark.anyio
async def test_a_round_after_a_restart_is_told_the_restart_too() -> None:
    auth = {"tokens": [{"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"]}]}
    # The same gateway before and after a restart, each with its default-like id.
    upstream = pushing_upstream()
    before, after = (make_gateway({"asker": memory_entry("asker", protocol="legacy")},
                                  {"asker": upstream}, request_state_keys=[KEY],
                                  instance_id=name, options={"auth": auth})
                     for name in ("gw-host-4101", "gw-host-4177"))
    asking = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    async with served(before, after) as (to_before, to_after):
        asked = (await post(to_before, ALICE, "tools/call", {"name": "asker_ask"},
                            asking))["result"]
        ((key, _),) = asked["inputRequests"].items()
        answer = {"name": "asker_ask", "requestState": asked["requestState"],
                  "inputResponses": {key: {"action": "accept", "content": {"value": "Ada"}}}}
        text = json.dumps(await post(to_after, ALICE, "tools/call", answer, asking))
        await post(to_before, ALICE, "tools/call", answer, asking)  # its call ends
    assert "'gw-host-4101' asked, not this one ('gw-host-4177')" in text, text
    assert "If that was this gateway before it restarted, the question ended" in text, text
