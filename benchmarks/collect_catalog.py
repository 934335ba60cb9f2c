"""Record the real ``tools/list`` of real MCP servers into ``data/real_catalog.json``.

    python benchmarks/collect_catalog.py --install /tmp/mcp-servers   # install, then record
    python benchmarks/collect_catalog.py --root /tmp/mcp-servers       # record only

``--install`` puts the pinned packages below in ``ROOT``: the npm ones with ``npm install
--ignore-scripts`` into ``ROOT/npm``, each PyPI one into its own venv ``ROOT/py-<name>``
(their ``mcp`` pins conflict with each other).  Then each server is started on stdio
*without network* (``unshare -n``: a network namespace with nothing in it, so a server
that phones home at start-up cannot; where unshare is missing it runs as is), with a
scratch HOME and dummy credentials where a server refuses to start without one, and
asked ``initialize`` + ``tools/list`` (every page) as a host would.  What it answers is
stored as sent: name, title, description, inputSchema, outputSchema, annotations.

Left out, tried: ``@stripe/mcp`` (waits on the network at start-up), ``@heroku/mcp-server``
1.2.8 (its package misses a module of its SDK), ``mcp-server-sqlite`` 2025.4.25 (does
not run with the current ``mcp`` SDK).

``benchmarks/catalog.py`` replays the file through light upstreams, so the measurement
needs none of these packages installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "data" / "real_catalog.json"
PROTOCOL = "2025-06-18"


@dataclass(frozen=True)
class Source:
    """One server to record: its name in the catalog, package, and how it is started."""

    name: str
    registry: str            # npm | pypi
    package: str
    version: str
    command: str             # npm: the package's bin name; pypi: the venv's script
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


SOURCES = [
    Source("everything", "npm", "@modelcontextprotocol/server-everything", "2026.8.31",
           "mcp-server-everything", ("stdio",)),
    Source("filesystem", "npm", "@modelcontextprotocol/server-filesystem", "2026.8.31",
           "mcp-server-filesystem", ("{scratch}",)),
    Source("memory", "npm", "@modelcontextprotocol/server-memory", "2026.8.31",
           "mcp-server-memory", env={"MEMORY_FILE_PATH": "{scratch}/memory.json"}),
    Source("thinking", "npm", "@modelcontextprotocol/server-sequential-thinking", "2026.8.31",
           "mcp-server-sequential-thinking"),
    Source("github", "npm", "@modelcontextprotocol/server-github", "2025.4.8",
           "mcp-server-github", env={"GITHUB_PERSONAL_ACCESS_TOKEN": "dummy"}),
    Source("gitlab", "npm", "@modelcontextprotocol/server-gitlab", "2025.4.25",
           "mcp-server-gitlab", env={"GITLAB_PERSONAL_ACCESS_TOKEN": "dummy",
                                     "GITLAB_API_URL": "http://127.0.0.1:9/api/v4"}),
    Source("slack", "npm", "@modelcontextprotocol/server-slack", "2025.4.25",
           "mcp-server-slack", env={"SLACK_BOT_TOKEN": "xoxb-dummy", "SLACK_TEAM_ID": "T0"}),
    Source("brave", "npm", "@modelcontextprotocol/server-brave-search", "0.6.2",
           "mcp-server-brave-search", env={"BRAVE_API_KEY": "dummy"}),
    Source("maps", "npm", "@modelcontextprotocol/server-google-maps", "0.6.2",
           "mcp-server-google-maps", env={"GOOGLE_MAPS_API_KEY": "dummy"}),
    Source("postgres", "npm", "@modelcontextprotocol/server-postgres", "0.6.2",
           "mcp-server-postgres", ("postgresql://127.0.0.1:9/none",)),
    Source("puppeteer", "npm", "@modelcontextprotocol/server-puppeteer", "2025.5.12",
           "mcp-server-puppeteer"),
    Source("everart", "npm", "@modelcontextprotocol/server-everart", "0.6.2",
           "mcp-server-everart", env={"EVERART_API_KEY": "dummy"}),
    Source("playwright", "npm", "@playwright/mcp", "0.0.83", "@playwright/mcp/cli.js"),
    Source("devtools", "npm", "chrome-devtools-mcp", "1.11.0", "chrome-devtools-mcp",
           ("--no-usage-statistics",)),
    Source("notion", "npm", "@notionhq/notion-mcp-server", "2.5.2", "notion-mcp-server",
           env={"NOTION_TOKEN": "dummy"}),
    Source("context7", "npm", "@upstash/context7-mcp", "4.1.1", "context7-mcp"),
    Source("firecrawl", "npm", "firecrawl-mcp", "3.26.0", "firecrawl-mcp",
           env={"FIRECRAWL_API_KEY": "fc-dummy"}),
    Source("tavily", "npm", "tavily-mcp", "0.2.22", "tavily-mcp",
           env={"TAVILY_API_KEY": "dummy"}),
    Source("commander", "npm", "@wonderwhy-er/desktop-commander", "0.2.52",
           "desktop-commander"),
    Source("kubernetes", "npm", "mcp-server-kubernetes", "4.1.7", "mcp-server-kubernetes"),
    Source("browser", "npm", "@executeautomation/playwright-mcp-server", "1.0.12",
           "playwright-mcp-server"),
    Source("time", "pypi", "mcp-server-time", "2026.10.19", "mcp-server-time"),
    Source("fetch", "pypi", "mcp-server-fetch", "2026.10.24", "mcp-server-fetch"),
    Source("git", "pypi", "mcp-server-git", "2026.10.19", "mcp-server-git",
           ("--repository", "{scratch}/repo")),
    Source("excel", "pypi", "excel-mcp-server", "2.2.2", "excel-mcp-server", ("stdio",)),
    Source("calculator", "pypi", "mcp-server-calculator", "0.2.1", "mcp-server-calculator"),
]


def install(root: Path) -> None:
    npm = [s for s in SOURCES if s.registry == "npm"]
    env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                    "--prefix", str(root / "npm"),
                    *sorted({f"{s.package}@{s.version}" for s in npm})], check=True, env=env)
    for source in SOURCES:
        if source.registry == "pypi":
            venv = root / f"py-{source.name}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                            f"{source.package}=={source.version}"], check=True)


def argv_of(source: Source, root: Path, scratch: Path) -> list[str]:
    if source.registry == "npm" and "/" in source.command:   # a script (bin names clash)
        program = ["node", str(root / "npm" / "node_modules" / source.command)]
    elif source.registry == "npm":
        program = [str(root / "npm" / "node_modules" / ".bin" / source.command)]
    else:
        program = [str(root / f"py-{source.name}" / "bin" / source.command)]
    args = [a.replace("{scratch}", str(scratch)) for a in source.args]
    isolate = ["unshare", "-n"] if shutil.which("unshare") and os.geteuid() == 0 else []
    return [*isolate, *program, *args]


class Stdio:
    """Newline-delimited JSON-RPC with one server process."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        self.ids = iter(range(1, 1000))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        rid = next(self.ids)
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.process.stdout], [], [], left)[0]:
                break
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{method}: the server exited")
            try:
                message = json.loads(line)
            except ValueError:
                continue   # a server that logs to stdout
            if message.get("id") == rid:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
        raise TimeoutError(method)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def record(source: Source, root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "home").mkdir()
        if source.name == "git":
            subprocess.run(["git", "init", "-q", str(scratch / "repo")], check=True)
        env = {"PATH": os.environ["PATH"], "HOME": str(scratch / "home"),
               **{k: v.replace("{scratch}", str(scratch)) for k, v in source.env.items()}}
        server = Stdio(argv_of(source, root, scratch), env, scratch)
        try:
            init = server.request("initialize", {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "collect_catalog", "version": "1"}}, 60)
            server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            tools: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page = server.request("tools/list", {"cursor": cursor} if cursor else {}, 60)
                tools += page.get("tools", [])
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        finally:
            server.close()
    return {"name": source.name, "registry": source.registry, "package": source.package,
            "version": source.version, "serverInfo": init.get("serverInfo"),
            "protocolVersion": init.get("protocolVersion"), "tools": tools}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--install", type=Path, help="install the packages here, then record")
    where.add_argument("--root", type=Path, help="where --install put them")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", help="record only these servers (merged in)")
    options = parser.parse_args()
    root = (options.install or options.root).resolve()
    if options.install:
        install(root)
    servers = {}
    if options.only and options.out.exists():
        servers = {s["name"]: s for s in json.loads(options.out.read_text())["servers"]}
    for source in SOURCES:
        if options.only and source.name not in options.only:
            continue
        try:
            servers[source.name] = record(source, root)
        except (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            print(f"{source.name}: not recorded: {exc}", file=sys.stderr)
            continue
        print(f"{source.name}: {len(servers[source.name]['tools'])} tools", file=sys.stderr)
    ordered = [servers[s.name] for s in SOURCES if s.name in servers]
    options.out.write_text(json.dumps({
        "collected": datetime.date.today().isoformat(),
        "how": "benchmarks/collect_catalog.py: each package installed at the pinned version, "
               "started on stdio without network (unshare -n), scratch HOME, dummy "
               "credentials; initialize (" + PROTOCOL + ") then tools/list, every page, "
               "stored as answered",
        "servers": ordered}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(ordered)} servers, {sum(len(s['tools']) for s in ordered)} tools -> "
          f"{options.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
