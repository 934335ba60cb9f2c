"""The operator's ``redact_keys`` hold wherever a call's arguments are shown (secrets26).

A key the operator added (``MCP_GATEWAY_REDACT_KEYS=...,ssn``) was masked in the call
record but not in an upstream's error echoing the call's input back to the host
(``mask_echo`` used the default keys), and the DEBUG log's masking of a logged
structure used the config's ``CREDENTIAL_KEY`` instead of the records' keys: it
showed the added key's value, masked ``key`` and ``session_id`` (which records show),
and did not walk a tuple; without a store, a tool's credential arguments were found
under the default keys (``RECENT``).  A real stdio upstream that quotes its input, and a real
``mcp-gateway serve`` at DEBUG writing its log to a file.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.telemetry.log_filter import install_log_filter
from tests.fixtures import SERVERS, make_gateway, stdio_entry, until
from tests.test_rest_cli import REPO, _free_port, _wait_for_api

KEYS = [*DEFAULT_REDACT_KEYS, "ssn"]


def _texts(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.anyio
async def test_an_echo_is_masked_under_the_configured_keys_on_the_full_path() -> None:
    ssn, nested = f"ssn-{secrets.token_hex(8)}", f"ssn-{secrets.token_hex(8)}"
    gateway = make_gateway({"ei": stdio_entry("echoing_input.py")}, redact_keys=KEYS)
    async with Client(gateway.server) as client:
        refused = await client.call_tool("ei_configure", {"options": {
            "ssn": ssn, "mode": "fast", "deep": [{"Patient_SSN": nested}]}},
            raise_on_error=False)
        with pytest.raises(Exception) as prompt:  # the upstream's JSON-RPC error answer
            await client.get_prompt("ei_lookup", {"ssn": ssn, "user": "grace"})
    shown = _texts(refused)
    assert refused.is_error and "'mode': 'fast'" in shown and "'ssn': '***'" in shown
    assert ssn not in shown and nested not in shown, shown
    assert str(prompt.value).endswith("no record under *** for grace"), prompt.value


@pytest.mark.anyio
async def test_without_a_store_a_crashing_servers_echo_is_masked_under_the_added_key(
        caplog: pytest.LogCaptureFixture) -> None:
    """A tool whose schema names an added key (``ssn``): its value is masked from the
    call's start (``RECENT``) with no store too, where the defaults were used."""
    ssn = f"ssn-{secrets.token_hex(8)}"
    gateway = make_gateway({"ei": stdio_entry("echoing_input.py")}, redact_keys=KEYS)
    caplog.set_level(logging.INFO)
    async with Client(gateway.server) as client:
        failed = await client.call_tool("ei_enroll", {"user": "ada", "ssn": ssn},
                                        raise_on_error=False)
        replica = gateway.manager.get("ei").replicas[0]

        def detail() -> str:
            return json.dumps([replica.stderr.tail(50), replica.last_error], default=str)

        await until(lambda: "fatal: enroll failed" in detail())
        shown = detail()
    assert failed.is_error and ssn not in _texts(failed)
    assert ssn not in shown and "ada:***" in shown, shown
    assert ssn not in caplog.text


async def _drive(port: int, ssn: str, key: str, session: str) -> list[str]:
    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        refused = await client.call_tool("ei_configure", {"options": {"ssn": ssn},
                                                          "key": key, "session_id": session},
                                         raise_on_error=False)
        with pytest.raises(Exception) as prompt:
            await client.get_prompt("ei_lookup", {"ssn": ssn})
        ok = await client.call_tool("gateway_list_servers", {"key": key, "ssn": ssn,
                                                             "session_id": session},
                                    raise_on_error=False)
    return [_texts(refused), str(prompt.value), _texts(ok)]


@pytest.mark.timeout(240)
def test_a_debug_log_file_masks_what_the_records_mask_and_no_more(tmp_path: Path) -> None:
    """A real ``serve`` (HTTP, DEBUG, its stderr a file) with ``ssn`` added: FastMCP's
    "Handler called: call_tool %s with %s" line writes each call's arguments."""
    ssn = f"ssn-{secrets.token_hex(8)}"
    key, session = f"key-{secrets.token_hex(6)}", f"sess-{secrets.token_hex(6)}"
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"ei": {
        "command": sys.executable, "args": [str(SERVERS / "echoing_input.py")]}}}))
    port, log_path = _free_port(), tmp_path / "gateway.log"
    env = {**os.environ, "MCP_GATEWAY_LOG_LEVEL": "DEBUG",
           "MCP_GATEWAY_REDACT_KEYS": ",".join(KEYS)}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--transport", "http", "--port", str(port), "--no-db",
             "--allow-unauthenticated-admin"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            _wait_for_api(f"http://127.0.0.1:{port}/api/v1/openapi.json", proc)
            answers = anyio.run(_drive, port, ssn, key, session)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    written = log_path.read_text()
    assert "Handler called: call_tool" in written  # the line this test is about
    assert ssn not in written and not any(ssn in answer for answer in answers), answers
    assert "no record under ***" in answers[1] and "'ssn': '***'" in answers[0]
    # What a call record shows (``key``, ``session_id``) the log shows too.
    assert f"'key': '{key}'" in written and f"'session_id': '{session}'" in written
    assert "'ssn': '***'" in written


def test_a_logged_tuple_is_walked(tmp_path: Path) -> None:
    """A tuple argument (a command line, a pair holding arguments) to a real log file
    through the CLI's filter, installed with the configured keys."""
    password, ssn = f"pw-{secrets.token_hex(8)}", f"ssn-{secrets.token_hex(8)}"
    path = tmp_path / "tuple.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    logger = logging.getLogger("tests.secrets26.tuple")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    install_log_filter(logger, KEYS)
    try:
        logger.debug("starting %s", ("npx", "server", "--password", password))
        logger.debug("call %s", ("ei_configure", {"ssn": ssn, "session_id": "s-1"}))
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = path.read_text()
    assert password not in written and ssn not in written, written
    assert "'session_id': 's-1'" in written and "'npx', 'server'" in written


class _Peer(NamedTuple):
    host: str
    port: int


class _Called(NamedTuple):
    tool: str
    arguments: dict[str, Any]


def test_a_logged_structure_with_nothing_to_mask_is_written_as_it_is(tmp_path: Path) -> None:
    """Walking a tuple rebuilt every one as a plain tuple (and a dict subclass as a
    dict): ``sys.version_info`` was written ``(3, 11, 7, 'final', 0)``, a named tuple
    without its names, a ``Counter`` as a dict (review27).  Nothing to mask: the
    structure itself."""
    password = f"pw-{secrets.token_hex(8)}"
    path = tmp_path / "kept.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    logger = logging.getLogger("tests.review27.kept")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    install_log_filter(logger, KEYS)
    try:
        logger.info("python %s", sys.version_info)
        logger.info("peer %s", _Peer("127.0.0.1", 8080))
        logger.info("counts %s", Counter(calls=2))
        logger.debug("called %s", _Called("login", {"user": "u", "password": password}))
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = path.read_text()
    assert f"python {sys.version_info}" in written and "sys.version_info(major=" in written
    assert "peer _Peer(host='127.0.0.1', port=8080)" in written, written
    assert "counts Counter({'calls': 2})" in written, written
    assert password not in written
    assert "('login', {'user': 'u', 'password': '***'})" in written
