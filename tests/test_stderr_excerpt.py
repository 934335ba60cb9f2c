"""A stdio server that dies at start is reported with the stderr line that says why.

Node prints its error *above* a stack trace and a footer (``code: 'MODULE_NOT_FOUND'``,
``Node.js v22``): the last five lines alone named no cause for the commonest mistake in a
Claude Desktop entry, a wrong path in ``args``.  And a server in a crash loop printed the
same line at every attempt: the tail showed it five times, as if the server had said it
five times.  Real subprocesses; every wait is on the attempt itself.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.upstream.failures import stderr_excerpt
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState
from tests.fixtures import FAST_RESTART, PY

pytestmark = pytest.mark.anyio

MISSING = "/opt/servers/server-filesystem/dist/index.js"
# What `node /opt/servers/server-filesystem/dist/index.js` prints on stderr (Node 22).
NODE_MISSING_MODULE = f"""node:internal/modules/cjs/loader:1228
  throw err;
  ^

Error: Cannot find module '{MISSING}'
    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)
    at Module._load (node:internal/modules/cjs/loader:1051:27)
    at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:174:12)
    at node:internal/main/run_main_module:28:49 {{
  code: 'MODULE_NOT_FOUND',
  requireStack: []
}}

Node.js v22.12.0
"""


def _dies_saying(text: str, code: int = 1) -> dict[str, Any]:
    return {"command": PY, "args": [
        "-c", f"import sys; sys.stderr.write({text!r}); sys.exit({code})"]}


async def test_node_error_above_its_stack_is_named() -> None:
    config = parse_config({"servers": {"up": _dies_saying(NODE_MISSING_MODULE)}},
                          source="test").servers["up"]
    upstream = Upstream(config, connect_timeout=30.0)
    with anyio.fail_after(120):  # a guard only: the attempt ends when the process exits
        with pytest.raises(Exception):  # noqa: B017 - the text is what is tested
            await upstream.probe()
    error = upstream.last_error or ""
    assert error.startswith("connect: the server exited with code 1"), error
    assert f"| stderr: Error: Cannot find module '{MISSING}' / ... / " in error, error
    assert error.endswith("Node.js v22.12.0"), error


async def test_a_crash_loop_tells_the_last_attempts_words_once() -> None:
    entry = _dies_saying("fatal: config file /etc/app.toml is missing\n", code=3)
    config = parse_config({"servers": {"up": entry}}, source="test").servers["up"]
    upstream = Upstream(config, restart=FAST_RESTART)  # parked after 3 failures
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            assert await upstream.wait_until(
                lambda: upstream.state is UpstreamState.FAILED, 120), upstream.last_error
        finally:
            upstream.stop()
    error = upstream.last_error or ""
    assert error.count("fatal: config file /etc/app.toml is missing") == 1, error
    assert "| stderr: fatal: config file /etc/app.toml is missing (gave up after 3 " \
           "failures" in error, error
    # The ring still holds every attempt's lines for gateway_server_detail.
    assert upstream.stderr.tail().count("fatal: config file /etc/app.toml is missing") == 3


def test_the_excerpt_keeps_a_tail_that_says_why() -> None:
    python = ["Traceback (most recent call last):", '  File "s.py", line 1, in <module>',
              "    import mcp_server_x", "    ^^^^^^^^^^^^^^^^^^^",
              "ModuleNotFoundError: No module named 'mcp_server_x'"]
    assert stderr_excerpt(python) == [
        "Traceback (most recent call last):", 'File "s.py", line 1, in <module>',
        "import mcp_server_x", "ModuleNotFoundError: No module named 'mcp_server_x'"]
    esm = ["node:internal/modules/esm/resolve:873", "throw new ERR_MODULE_NOT_FOUND(...);",
           "^", "", "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'zod' imported "
           "from /srv/index.js", *[f"    at frame{i}" for i in range(6)],
           "  code: 'ERR_MODULE_NOT_FOUND'", "}", "", "Node.js v22.12.0"]
    assert stderr_excerpt(esm)[:2] == [
        "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'zod' imported from /srv/index.js",
        "..."]
    plain = [f"starting step {i}" for i in range(8)]
    assert stderr_excerpt(plain) == plain[-5:]  # nothing says why: the tail as it is
