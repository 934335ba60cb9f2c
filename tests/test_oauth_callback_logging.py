"""The sign-in's loopback callback listener (upstream/sign_in.py) leaves the process's
uvicorn loggers as they were: its ``uvicorn.Config(log_level="warning")`` set
``uvicorn.error``/``uvicorn.access``/``uvicorn.asgi`` to WARNING process-wide, so an
application serving the gateway with its own uvicorn lost its access log after a
sign-in.  Nor does the listener write access lines of its own: their URLs hold the
authorization code and state.  Real loopback authorization server and MCP server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, running, sign_in, state_is

pytestmark = pytest.mark.anyio

NAMES = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@pytest.fixture
def uvicorn_at_info() -> Iterator[None]:
    """uvicorn's loggers as an application serving at INFO has them (restored after)."""
    loggers = [logging.getLogger(name) for name in NAMES]
    before = [(x.level, x.propagate) for x in loggers]
    yield
    for logger, (level, propagate) in zip(loggers, before, strict=True):
        logger.setLevel(level)
        logger.propagate = propagate


def at_info() -> None:
    for name in NAMES:
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = True


async def test_a_sign_in_leaves_uvicorns_log_levels_alone(
        tmp_path: Path, uvicorn_at_info: None, caplog: pytest.LogCaptureFixture) -> None:
    async with signing_upstream() as (_provider, url):
        at_info()  # (after the test's own authorization server started)
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            with caplog.at_level(logging.INFO, logger="uvicorn.access"):
                link = await sign_in(client)  # the callback listener starts
                state = parse_qs(urlsplit(link).query)["state"][0]
                await person_signs_in(link)
                await state_is(gw, UpstreamState.READY)
            levels = {name: logging.getLevelName(logging.getLogger(name).level)
                      for name in NAMES}
            assert levels == dict.fromkeys(NAMES, "INFO")
            # (The test's authorization server logs its /authorize, naming the callback.)
            lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
            assert lines  # an application's access log still writes
            assert not [x for x in lines if "GET /oauth/callback" in x], lines
            assert not [x for x in lines if "/oauth/callback?" in x and state in x]
