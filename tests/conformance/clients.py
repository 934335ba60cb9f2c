"""The conformance suite's CLIENT scenarios, the gateway as the client under test.

``conformance client --scenario S --command C`` starts the scenario's server and runs
``C <url>``; what the server saw is judged.  ``tests/conformance/host.py`` is ``C``: a
FastMCP 4 host that connects to the server itself (``direct``) or to ``mcp-gateway
serve`` (stdio) whose only upstream is the server (``gateway``, the host's era
``legacy`` or ``auto``: 2026-07-28), and does what the scenario asks of a client.  Every
check that passes directly must pass through the gateway (``run.compare``), but for
``EXPECTED_FAILURES``.

``SCENARIOS`` are the suite's client scenarios the host plays; the others the installed
suite offers are listed in ``NOT_RUN`` with the reason.  Measured (2 shared cores): one
scenario run takes 3-8 s; the 12 runs 34 s quiet, ~100 s under load.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOST_PY = HERE / "host.py"
CLIENT_TIMEOUT = 60.0  # one scenario run (the suite's own --timeout is below it)

SCENARIOS = ("initialize", "tools_call", "elicitation-sep1034-client-defaults", "sse-retry")
CLIENT_TARGETS = {
    "client-direct": ["--target", "direct"],
    "client-gateway": ["--target", "gateway", "--mode", "legacy"],
    "client-gateway-2026": ["--target", "gateway", "--mode", "auto"],
}
# scenario -> why it is not run: the gateway's OAuth towards an upstream signs in through
# a page an operator opens (``mcp-gateway login``, ``upstream/sign_in.py``), which no
# host drives; client credentials, CIMD and cross-app access are not implemented.
NOT_RUN = {
    "auth/*": "the gateway signs in to an upstream through a page an operator opens "
              "(mcp-gateway login), not a flow a host can drive in a scenario run",
}
# (scenario, check id) -> why it fails through the gateway and passes directly.  None now.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}
# Checks on timing a loaded machine may miss by a little, through one process more:
# "slightly late" (WARNING) is not a regression there.
TIMING = {("sse-retry", "client-sse-retry-timing")}

_RESULT_DIR = re.compile(r"^(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def run_clients(tools: Any, workdir: Path, runner: Any, log: Any = sys.stderr,
                scenarios: tuple[str, ...] = SCENARIOS) -> dict[str, Any]:
    """Each of ``CLIENT_TARGETS`` over ``scenarios``: one ``runner.Run`` per target,
    its scenarios keyed by name (``run.py``'s type, so ``run.compare`` reads them)."""
    runs: dict[str, Any] = {}
    for target, flags in CLIENT_TARGETS.items():
        out_dir = workdir / f"results-{target}"
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        run = runner.Run(target, 0, 0.0)
        command = " ".join([sys.executable, str(HOST_PY), *flags])
        for scenario in scenarios:
            done = runner.run_bounded(
                [str(tools.node), str(tools.cli), "client", "--command", command,
                 "--scenario", scenario, "-o", str(out_dir),
                 "--timeout", str(int((CLIENT_TIMEOUT - 10) * 1000))],
                timeout=CLIENT_TIMEOUT, cwd=workdir,
                log_path=workdir / f"suite-{target}-{scenario}.log")
            run.returncode = run.returncode or done.returncode
            if done.timed_out:
                run.note += f"{scenario} timed out after {CLIENT_TIMEOUT:.0f}s; "
        for checks_file in sorted(out_dir.glob("*/checks.json")):
            match = _RESULT_DIR.match(checks_file.parent.name)
            name = match.group("scenario") if match else checks_file.parent.name
            checks = runner.json.loads(checks_file.read_text())
            run.scenarios[name] = [
                {**c, "status": "SUCCESS"} if c.get("status") == "WARNING"
                and (name, c.get("id")) in TIMING else c for c in checks]
        run.seconds = time.monotonic() - started
        runs[target] = run
        runner._progress(run, log)
    return runs


def expected(regression: Any) -> bool:
    """Whether ``regression`` is one ``EXPECTED_FAILURES`` lists."""
    return (regression.scenario, regression.check.partition("#")[0]) in EXPECTED_FAILURES
