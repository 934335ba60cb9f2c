"""``exposure: all`` is the default: a gateway in front of many servers listed every
tool to every host (1,107 tools, 1.5 MB of ``tools/list`` in a trial with 64 servers)
and nothing said so.  ``serve`` now says it once, at WARNING, when the listed upstream
tools pass ``search.auto_threshold_tools`` and nobody chose the exposure; not for an
``exposure: all`` written in servers.yaml, not again at every rebuild."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio

WORDS = "tools are listed to every host"


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and WORDS in r.getMessage()]


async def test_the_default_exposure_over_the_threshold_is_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = tmp_path / "servers.yaml"
    options: dict[str, object] = {"search": {"auto_threshold_tools": 2}}
    config.write_text(json.dumps({"gateway": options,
                                  "servers": {"alpha": memory_entry("alpha")}}))
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options=options, config=config)
    async with Client(gateway.server) as client:
        listed = [t.name for t in await client.list_tools() if t.name.startswith("alpha_")]
        assert len(listed) > 2
        warned = said(caplog)
        assert len(warned) == 1, caplog.text
        assert warned[0].startswith(f"{len(listed)} tools are listed to every host"), warned
        assert "gateway.exposure: auto" in warned[0] and "exposure: all" in warned[0]
        for _ in range(3):   # rebuilds with nothing changed say nothing again
            gateway.manager.refresh_catalog()
        assert len(said(caplog)) == 1
        # An operator who chose 'all' is not told again.
        config.write_text(json.dumps({"gateway": {**options, "exposure": "all"},
                                      "servers": {"alpha": memory_entry("alpha")}}))
        assert (await gateway.control.reload_config()).error is None
        gateway.manager.refresh_catalog()
        assert len(said(caplog)) == 1


async def test_an_exposure_chosen_or_a_short_list_says_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for options in ({"exposure": "all", "search": {"auto_threshold_tools": 2}},
                    {"search": {"auto_threshold_tools": 80}}):
        gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                               options=options)
        async with Client(gateway.server) as client:
            assert await client.list_tools()
        assert said(caplog) == [], (options, caplog.text)


async def test_under_serve_profile_the_profiles_tools_and_exposure_count(
        caplog: pytest.LogCaptureFixture) -> None:
    # serve --profile: every host of the process lists what the profile shows, in its
    # exposure.  The warning counted the whole catalog ("6 tools are listed to every
    # host", where each listed 1) and ignored the profile's own exposure.
    caplog.set_level(logging.INFO)
    profiles = {"one": {"servers": ["alpha"], "tools": {"include": ["alpha_add"]}},
                "found": {"exposure": "search"},
                "many": {"tools": {"exclude": ["alpha_wipe"]}}}
    options = {"search": {"auto_threshold_tools": 2}, "profiles": profiles}
    listed: dict[str, int] = {}
    for profile in ("one", "found", "many"):
        caplog.clear()
        gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                               options=options, profile=profile)
        async with Client(gateway.server) as client:
            listed[profile] = len([t for t in await client.list_tools()
                                   if t.name.startswith("alpha_")])
        if profile == "many":
            [warned] = said(caplog)
            assert warned.startswith(f"{listed[profile]} tools are listed"), warned
        else:
            assert said(caplog) == [], (profile, caplog.text)
    assert listed["one"] == 1 and listed["found"] == 0 and listed["many"] > 2, listed
