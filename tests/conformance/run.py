"""Run the official MCP conformance suite directly and through the gateway; compare.

The claim checked: the gateway is transparent.  ``tests/conformance/fixture.py``
implements the suite's server scenarios.  The suite (``@modelcontextprotocol/
conformance``, ``--suite all``) runs

1. against the fixture itself (streamable HTTP on 127.0.0.1), then
2. against ``mcp-gateway serve --transport http`` whose only upstream is that fixture
   reached over streamable HTTP (``url:``), and
3. against the gateway whose only upstream is the fixture run over stdio
   (``command:``),

both with ``namespace: ""`` so that tool names and resource URIs are unchanged
(the suite looks for exact names).  Every check that passes directly must pass
through the gateway; the exit status is 0 iff it does.

The suite's CLIENT scenarios run too (``tests/conformance/clients.py``): the gateway is
the client the scenario's server judges, driven by a FastMCP host of either era
(``tests/conformance/host.py``), against the same host connected directly.

The npm tools (the suite, and Node 22, which it needs) live in the test tools cache
(``tests/npm_tools.py``: ``$MCP_GATEWAY_NPM_TOOLS`` or ``<repo>/.npm-tools``), installed
there with ``npm install`` when missing (so ``npm`` is needed once).

Usage::

    .venv/bin/python tests/conformance/run.py [--targets direct,http,stdio]
        [--keep DIR] [--json FILE] [--no-install] [--scenario NAME]
        [--upstream-protocol auto|legacy|2026-07-28] [--kind server|client|both]

Exit status: 0 no regressions; 1 regressions; 2 setup problem (no tools,
a server that did not start, a suite run that produced no results).
Every subprocess is bounded by a timeout, binds 127.0.0.1 only, and is killed
(with its descendants) before this script returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script: make `tests` importable
    sys.path.insert(0, str(REPO))

from tests import npm_tools  # noqa: E402
from tests.conformance import clients  # noqa: E402

from fast_mcp_gateway.upstream.processes import descendants  # noqa: E402

CONFORMANCE_VERSION = npm_tools.PACKAGES["@modelcontextprotocol/conformance"]

HOST = "127.0.0.1"
FIXTURE = HERE / "fixture.py"

INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 30.0
SUITE_TIMEOUT = 150.0
STOP_TIMEOUT = 10.0

TARGETS = {
    "direct": "direct",
    "http": "via gateway (http upstream)",
    "stdio": "via gateway (stdio upstream)",
}


LABELS = {
    **TARGETS,
    "client-direct": "client: host direct",
    "client-gateway": "client: gateway (legacy host)",
    "client-gateway-2026": "client: gateway (2026-07-28 host)",
}


class SetupError(RuntimeError):
    """The comparison could not be run (as opposed to: it ran and found regressions)."""


# ---------------------------------------------------------------------------
# The npm tools
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    node: Path
    cli: Path


def cache_dir() -> Path:
    return npm_tools.tools_dir().resolve()


def find_tools(root: Path | None = None) -> Tools | None:
    """The cached Node 22 and conformance CLI at the pinned version, if present."""
    root = root or cache_dir()
    pkg = npm_tools.package_path(root, "@modelcontextprotocol/conformance")
    node, cli = npm_tools.node(root), pkg / "dist" / "index.js"
    try:
        version = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    if version != CONFORMANCE_VERSION or not cli.is_file() or not os.access(node, os.X_OK):
        return None
    return Tools(node=node, cli=cli)


def can_install() -> bool:
    return shutil.which("npm") is not None


def ensure_tools(install: bool = True, log: Any = sys.stderr) -> Tools:
    """The pinned tools, installed (once, with every other npm test tool) if missing."""
    tools = find_tools()
    if tools is not None:
        return tools
    if not install:
        raise SetupError(f"no conformance {CONFORMANCE_VERSION} tools in {cache_dir()}")
    if not can_install():
        raise SetupError(f"no conformance tools in {cache_dir()} and no npm to install them")
    print(f"installing npm test tools into {cache_dir()}", file=log, flush=True)
    try:
        npm_tools.ensure(timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"npm install failed: {exc}") from exc
    tools = find_tools()
    if tools is None:
        raise SetupError(f"npm install succeeded but {cache_dir()} still lacks the tools")
    return tools


# ---------------------------------------------------------------------------
# Processes: bounded, loopback-only, always reaped with their descendants
# ---------------------------------------------------------------------------


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process (it may clean up its own children), then SIGKILL what is left.

    Each process runs in its own session, so its process group is signalled too;
    descendants that moved to another group are found through /proc.
    """
    family = descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    family = sorted(set(family) | set(descendants(proc.pid)))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _signal(family, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    for pid in family:  # reap any that were reparented to us (rare)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


@dataclass
class Completed:
    returncode: int
    output: str
    timed_out: bool = False


def run_bounded(
    cmd: list[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Completed:
    """Run to completion within ``timeout`` (killing it and its children otherwise)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            stop(proc, timeout=2.0)
        out.seek(0)
        text = out.read()
    if log_path is not None:
        log_path.write_text(text)
    code = proc.returncode if proc.returncode is not None else -9
    return Completed(code, text, timed_out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@contextlib.contextmanager
def serving(
    cmd: list[str], port: int, log_path: Path, what: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[Any]]:
    """Start a server, wait until ``HOST:port`` accepts connections, stop it on exit."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _port_open(port):
                if proc.poll() is not None:
                    raise SetupError(
                        f"{what} exited with {proc.returncode} before listening on port {port}:"
                        f"\n{log_path.read_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    raise SetupError(f"{what} did not listen on port {port} in {START_TIMEOUT}s")
                time.sleep(0.1)
            yield proc
        finally:
            stop(proc)


# ---------------------------------------------------------------------------
# Suite runs and their results
# ---------------------------------------------------------------------------

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@dataclass
class Run:
    """One suite run: per scenario, the checks in the order the suite reported them."""

    target: str
    returncode: int
    seconds: float
    scenarios: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    note: str = ""

    def statuses(self, scenario: str) -> dict[str, str]:
        """check key -> status; repeated check ids get ``#2``, ``#3`` ... suffixes."""
        out: dict[str, str] = {}
        seen: dict[str, int] = {}
        for check in self.scenarios.get(scenario, []):
            cid = str(check.get("id") or check.get("name"))
            seen[cid] = seen.get(cid, 0) + 1
            key = cid if seen[cid] == 1 else f"{cid}#{seen[cid]}"
            out[key] = str(check.get("status"))
        return out

    def check(self, scenario: str, key: str) -> dict[str, Any] | None:
        cid, _, nth = key.partition("#")
        matches = [
            c for c in self.scenarios.get(scenario, []) if str(c.get("id") or c.get("name")) == cid
        ]
        index = int(nth) - 1 if nth else 0
        return matches[index] if index < len(matches) else None


def run_suite(
    tools: Tools, url: str, target: str, workdir: Path, scenario: str | None = None
) -> Run:
    out_dir = workdir / f"results-{target}"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(tools.node), str(tools.cli), "server", "--url", url, "-o", str(out_dir)]
    cmd += ["--scenario", scenario] if scenario else ["--suite", "all"]
    started = time.monotonic()
    done = run_bounded(
        cmd, timeout=SUITE_TIMEOUT, cwd=workdir, log_path=workdir / f"suite-{target}.log"
    )
    run = Run(target, done.returncode, time.monotonic() - started)
    if done.timed_out:
        run.note = f"suite timed out after {SUITE_TIMEOUT:.0f}s"
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        name = match.group("scenario") if match else checks_file.parent.name
        try:
            checks = json.loads(checks_file.read_text())
        except ValueError as exc:
            checks = [
                {"id": "<unreadable checks.json>", "status": "FAILURE", "errorMessage": str(exc)}
            ]
        run.scenarios[name] = checks if isinstance(checks, list) else []
    if not run.scenarios and not run.note:
        run.note = f"no results (exit {done.returncode}): {done.output[-1500:]}"
    return run


# ---------------------------------------------------------------------------
# The three targets
# ---------------------------------------------------------------------------


def gateway_command(config: Path, port: int) -> list[str]:
    script = Path(sys.executable).parent / "mcp-gateway"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "fast_mcp_gateway"]
    return [
        *head,
        "serve",
        "--config",
        str(config),
        "--transport",
        "http",
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def write_config(path: Path, upstream: dict[str, Any], protocol: str | None = None) -> Path:
    """A servers.yaml (JSON is YAML) whose only server is the fixture, unprefixed."""
    entry = {**upstream, "namespace": ""}
    if protocol is not None:
        entry["protocol"] = protocol
    path.write_text(json.dumps({"servers": {"conformance": entry}}, indent=2))
    return path


def fixture_http_command(port: int) -> list[str]:
    return [sys.executable, str(FIXTURE), str(port)]


def run_all(
    tools: Tools,
    workdir: Path,
    targets: list[str],
    scenario: str | None = None,
    log: Any = sys.stderr,
    upstream_protocol: str | None = None,
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fixture_port = free_port()
    fixture_url = f"http://{HOST}:{fixture_port}/mcp"
    with serving(
        fixture_http_command(fixture_port),
        fixture_port,
        workdir / "fixture.log",
        "the fixture",
        env=env,
    ):
        if "direct" in targets:
            runs["direct"] = run_suite(tools, fixture_url, "direct", workdir, scenario)
            _progress(runs["direct"], log)
        upstreams: dict[str, dict[str, Any]] = {
            "http": {"url": fixture_url},
            "stdio": {
                "command": "${GATEWAY_PYTHON}",
                "args": [str(FIXTURE), "--stdio"],
                "cwd": str(REPO),
            },
        }
        for target in ("http", "stdio"):
            if target not in targets:
                continue
            config = write_config(
                workdir / f"servers-{target}.yaml", upstreams[target], upstream_protocol
            )
            port = free_port()
            with serving(
                gateway_command(config, port),
                port,
                workdir / f"gateway-{target}.log",
                f"the gateway ({target} upstream)",
                env=env,
            ):
                runs[target] = run_suite(
                    tools, f"http://{HOST}:{port}/mcp", target, workdir, scenario
                )
            _progress(runs[target], log)
    return runs


def _progress(run: Run, log: Any) -> None:
    total = sum(len(c) for c in run.scenarios.values())
    ok = sum(1 for cs in run.scenarios.values() for c in cs if c.get("status") == "SUCCESS")
    extra = f" ({run.note})" if run.note else ""
    print(
        f"{LABELS[run.target]}: {len(run.scenarios)} scenarios, {ok}/{total} checks "
        f"SUCCESS, exit {run.returncode}, {run.seconds:.1f}s{extra}",
        file=log,
        flush=True,
    )


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------


@dataclass
class Regression:
    target: str
    scenario: str
    check: str
    status: str
    message: str

    def __str__(self) -> str:
        return (
            f"{LABELS[self.target]}: {self.scenario} / {self.check}: SUCCESS directly, "
            f"{self.status} here" + (f" -- {self.message}" if self.message else "")
        )


@dataclass
class Comparison:
    runs: dict[str, Run]
    regressions: list[Regression]
    seconds: float = 0.0
    log_tails: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.regressions

    def scenarios(self) -> list[str]:
        names: list[str] = []
        for run in self.runs.values():
            names += [s for s in run.scenarios if s not in names]
        return names

    def table(self) -> str:
        targets = list(self.runs)
        headers = ["scenario"] + [LABELS[t] for t in targets]
        rows = [headers]
        for scenario in self.scenarios():
            row = [scenario]
            for target in targets:
                row.append(_cell(self.runs[target], scenario, self.regressions))
            rows.append(row)
        total = ["TOTAL"]
        for target in targets:
            run = self.runs[target]
            ok = sum(1 for cs in run.scenarios.values() for c in cs if c.get("status") == "SUCCESS")
            n = sum(1 for cs in run.scenarios.values() for c in cs if c.get("status") != "INFO")
            total.append(f"{ok}/{n}")
        rows.append(total)
        widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
        lines = []
        for i, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def report(self) -> str:
        parts = [
            self.table(),
            "(cells: SUCCESS checks / checks, INFO checks not counted; WARNING is not a failure)",
            "",
        ]
        for run in self.runs.values():
            if run.note:
                parts.append(f"note: {LABELS[run.target]}: {run.note}")
        if self.regressions:
            parts.append(f"{len(self.regressions)} check(s) pass directly but not via the gateway:")
            grouped: dict[tuple[str, str, str, str], list[str]] = {}
            for r in self.regressions:
                grouped.setdefault((r.target, r.scenario, r.status, r.message), []).append(r.check)
            for (target, scenario, status, message), checks in grouped.items():
                parts.append(
                    f"  - {LABELS[target]}: {scenario} [{', '.join(checks)}]: "
                    f"SUCCESS directly, {status} here" + (f" -- {message}" if message else "")
                )
        else:
            parts.append("OK: every check that passes directly also passes via the gateway.")
        for target, tail in sorted(self.log_tails.items()):
            parts += ["", f"gateway log ({LABELS[target]}), last lines:", tail]
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "conformance_version": CONFORMANCE_VERSION,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "runs": {
                t: {
                    "returncode": r.returncode,
                    "seconds": round(r.seconds, 2),
                    "note": r.note,
                    "scenarios": {s: r.statuses(s) for s in r.scenarios},
                }
                for t, r in self.runs.items()
            },
            "regressions": [r.__dict__ for r in self.regressions],
        }


def _log_tail(path: Path, lines: int = 25) -> str:
    """The end of a gateway log, without the per-request HTTP client chatter."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    kept = [ln for ln in text.splitlines() if "HTTP Request:" not in ln]
    return "\n".join("  " + ln for ln in kept[-lines:]) or "  (empty)"


def _cell(run: Run, scenario: str, regressions: list[Regression]) -> str:
    if scenario not in run.scenarios:
        return "(missing)"
    statuses = [s for s in run.statuses(scenario).values() if s != "INFO"]
    ok = statuses.count("SUCCESS")
    failed = statuses.count("FAILURE")
    warned = statuses.count("WARNING")
    lost = any(r.target == run.target and r.scenario == scenario for r in regressions)
    mark = "REGRESSED" if lost else ("fail" if failed else "ok")
    text = f"{mark} {ok}/{len(statuses)}"
    if warned:
        text += f" ({warned} warn)"
    return text


def compare(runs: dict[str, Run], base: str = "direct") -> list[Regression]:
    """Every SUCCESS of the direct run (``base``) must be a SUCCESS in each gateway run."""
    direct = runs[base]
    regressions: list[Regression] = []
    for target, run in runs.items():
        if target == base:
            continue
        for scenario in direct.scenarios:
            mine = run.statuses(scenario)
            for key, status in direct.statuses(scenario).items():
                if status != "SUCCESS":
                    continue
                got = mine.get(key, "MISSING" if scenario in run.scenarios else "NOT RUN")
                if got == "SUCCESS":
                    continue
                detail = run.check(scenario, key) or {}
                message = str(detail.get("errorMessage") or "")
                if not message and got == "MISSING":
                    instead = [
                        f"{c.get('id')} {c.get('status')}: {c.get('errorMessage') or ''}".strip()
                        for c in run.scenarios[scenario]
                        if c.get("status") not in ("SUCCESS", "INFO")
                    ]
                    message = "the scenario reported instead: " + "; ".join(instead or ["-"])
                elif not message:
                    message = run.note or "the scenario was not reported"
                regressions.append(Regression(target, scenario, key, got, message[:500]))
    return regressions


def compare_gateway(
    targets: list[str] | None = None,
    *,
    install: bool = True,
    keep: Path | None = None,
    scenario: str | None = None,
    log: Any = sys.stderr,
    upstream_protocol: str | None = None,
) -> Comparison:
    """Install/find the tools, run every target, and compare (the pytest entry point)."""
    targets = targets or list(TARGETS)
    if "direct" not in targets:
        targets = ["direct", *targets]
    tools = ensure_tools(install=install, log=log)
    started = time.monotonic()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        workdir_cm: Any = contextlib.nullcontext(str(keep.resolve()))
    else:
        workdir_cm = tempfile.TemporaryDirectory(prefix="mcp-conformance-")
    with workdir_cm as wd:
        workdir = Path(wd)
        runs = run_all(
            tools, workdir, targets, scenario, log=log, upstream_protocol=upstream_protocol
        )
        if not runs["direct"].scenarios:
            raise SetupError(
                f"the direct run produced no results: {runs['direct'].note}; logs in {workdir}"
                if keep
                else f"the direct run produced no results: {runs['direct'].note}"
            )
        result = Comparison(runs, compare(runs))
        for target in {r.target for r in result.regressions}:
            result.log_tails[target] = _log_tail(workdir / f"gateway-{target}.log")
    result.seconds = time.monotonic() - started
    return result


def compare_clients(
    *, install: bool = True, keep: Path | None = None, log: Any = sys.stderr
) -> Comparison:
    """The client scenarios (``clients.py``): the host direct and through the gateway
    (both host eras); a regression ``clients.EXPECTED_FAILURES`` lists is left out."""
    tools = ensure_tools(install=install, log=log)
    started = time.monotonic()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        workdir_cm: Any = contextlib.nullcontext(str(keep.resolve()))
    else:
        workdir_cm = tempfile.TemporaryDirectory(prefix="mcp-conformance-clients-")
    with workdir_cm as wd:
        runs = clients.run_clients(tools, Path(wd), sys.modules[__name__], log=log)
        if not runs["client-direct"].scenarios:
            raise SetupError(f"the direct client runs produced no results: "
                             f"{runs['client-direct'].note}")
        found = compare(runs, base="client-direct")
        result = Comparison(runs, [r for r in found if not clients.expected(r)])
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of: " + ", ".join(TARGETS),
    )
    parser.add_argument("--scenario", help="run one scenario instead of --suite all")
    parser.add_argument(
        "--keep", type=Path, help="keep configs, logs and the suite's checks.json files here"
    )
    parser.add_argument("--json", type=Path, help="also write the comparison as JSON here")
    parser.add_argument(
        "--upstream-protocol",
        choices=["auto", "legacy", "2026-07-28"],
        help="write this 'protocol:' for the fixture upstream (default: the gateway's own, auto)",
    )
    parser.add_argument(
        "--kind",
        choices=["server", "client", "both"],
        default="both",
        help="the suite's server scenarios, its client scenarios (clients.py), or both",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="fail instead of running npm install when the tools are missing",
    )
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    results: list[Comparison] = []
    try:
        if args.kind in ("server", "both"):
            results.append(compare_gateway(
                targets,
                install=not args.no_install,
                keep=args.keep,
                scenario=args.scenario,
                upstream_protocol=args.upstream_protocol,
            ))
        if args.kind in ("client", "both"):
            results.append(compare_clients(
                install=not args.no_install,
                keep=None if args.keep is None else args.keep / "clients",
            ))
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(result.report())
        print(f"\nconformance {CONFORMANCE_VERSION}; total {result.seconds:.1f}s")
    if args.json:
        payload = [r.to_json() for r in results]
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload,
                                        indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
