"""The official MCP conformance suite passes through the gateway as it does directly.

``tests/conformance/run.py`` runs ``@modelcontextprotocol/conformance --suite all``
against ``tests/conformance/fixture.py`` directly, then against ``mcp-gateway serve
--transport http`` fronting that fixture as a streamable-HTTP upstream and as a
stdio upstream.  Every check that passes directly must pass through the gateway.
The suite's client scenarios (``tests/conformance/clients.py``): the gateway as the
client a scenario's server judges, driven by a FastMCP host of either era, against the
same host connected directly.

Needs the npm tools, cached by ``tests/npm_tools.py`` (``$MCP_GATEWAY_NPM_TOOLS`` or
``.npm-tools/``); with ``npm`` on PATH they are installed there on first use.  Skipped
only when there is neither a populated cache nor ``npm``.  Select with
``-m conformance``, or leave it out with ``-m "not conformance"``.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).parent / "conformance" / "run.py"


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations via sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.conformance
@pytest.mark.timeout(175)
def test_gateway_passes_every_conformance_check_the_fixture_passes() -> None:
    runner = _load_runner()
    if runner.find_tools() is None and not runner.can_install():
        pytest.skip(
            f"conformance tools not cached in {runner.cache_dir()} and no npm on PATH to "
            f"install @modelcontextprotocol/conformance@{runner.CONFORMANCE_VERSION} and "
            f"{runner.NODE_PACKAGE} (set MCP_CONFORMANCE_DIR to a populated cache)"
        )
    log = io.StringIO()
    try:
        result = runner.compare_gateway(log=log)
    except runner.SetupError as exc:
        pytest.fail(f"conformance run could not be set up: {exc}\n{log.getvalue()}")
    direct = result.runs["direct"]
    passed = sum(
        1 for checks in direct.scenarios.values() for c in checks if c.get("status") == "SUCCESS"
    )
    assert passed > 0, f"the fixture passed no check directly:\n{result.report()}"
    if not result.ok:
        pytest.fail(
            "checks that pass directly against the fixture fail through the gateway:\n"
            + result.report(),
            pytrace=False,
        )


@pytest.mark.conformance
@pytest.mark.timeout(400)
def test_the_gateway_as_a_client_passes_every_client_check_a_host_passes_directly() -> None:
    """Measured: the 12 scenario runs (4 scenarios, 3 targets) take 34 s on a quiet
    machine, ~100 s under load (2 shared cores)."""
    runner = _load_runner()
    if runner.find_tools() is None and not runner.can_install():
        pytest.skip(f"conformance tools not cached in {runner.cache_dir()} and no npm on PATH")
    log = io.StringIO()
    try:
        result = runner.compare_clients(log=log)
    except runner.SetupError as exc:
        pytest.fail(f"conformance client runs could not be set up: {exc}\n{log.getvalue()}")
    direct = result.runs["client-direct"]
    assert set(direct.scenarios) == set(runner.clients.SCENARIOS), result.report()
    if not result.ok:
        pytest.fail("client checks that pass for a host directly fail through the gateway:\n"
                    + result.report(), pytrace=False)
