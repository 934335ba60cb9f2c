"""Context economy of ``exposure: search``, measured through a running gateway.

    python benchmarks/catalog.py [--data benchmarks/data/real_catalog.json] [--json OUT]
        [--describe]

The catalog is real: ``data/real_catalog.json`` holds the ``tools/list`` answers of real
MCP servers (npm reference servers, vendors' servers, PyPI servers including FastMCP
ones), recorded by ``collect_catalog.py`` (how: in the file).  Each is replayed by a light
stdio upstream (``replay_upstream.py``: the recorded tools, byte for byte), and
``mcp-gateway serve`` runs in front of them twice with **default settings** but
``gateway.exposure`` -- ``all``, then ``search`` -- exactly as a host starts it (stdio,
a call log in a scratch store, the admin tools on: a stdio host is local and has scope
``admin``).  A raw JSON-RPC host (handshake 2025-11-25) measures:

* ``tools/list``: the bytes of the response line the host reads, and what it lists
  (upstream tools, the gateway's own ``gateway_*`` tools, the meta-tools);
* tokens, **estimated as bytes / 4** (the usual rule of thumb for English and JSON under
  cl100k/o200k-style tokenizers; no tokenizer can be installed offline here, so it is
  an estimate -- the reduction, a ratio of bytes, is exact);
* search quality on ``QUERIES`` (what a user asks -> the tools that do it), through the
  gateway's own ``search_tools`` (k=20): recall@5 (a relevant tool in the first five)
  and MRR (1 / rank of the first relevant tool).  A query names several tools when
  several servers in the catalog do the same thing (a screenshot: puppeteer,
  playwright, devtools ...);
* the bytes of a ``search_tools`` answer with k=5 (what one search costs in context).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DATA = HERE / "data" / "real_catalog.json"
REPLAY = HERE / "replay_upstream.py"
MIN_SERVERS, MIN_TOOLS = 20, 300

# (query, the exposed names that answer it); the first is the one a user most likely means.
QUERIES: list[tuple[str, tuple[str, ...]]] = [
    ("what time is it in Tokyo", ("time_get_current_time",)),
    ("convert 3pm New York time to Paris time", ("time_convert_time",)),
    ("download a web page as markdown", ("fetch_fetch", "firecrawl_firecrawl_scrape",
                                         "tavily_tavily_extract")),
    ("read a file from disk", ("filesystem_read_text_file", "filesystem_read_file",
                               "commander_read_file")),
    ("show the folder structure as a tree", ("filesystem_directory_tree",)),
    ("rename a file", ("filesystem_move_file", "commander_move_file")),
    ("create a new directory", ("filesystem_create_directory",
                                "commander_create_directory")),
    ("what changed but is not staged yet", ("git_git_diff_unstaged",)),
    ("commit my staged changes", ("git_git_commit",)),
    ("switch to another git branch", ("git_git_checkout",)),
    ("show the git commit history", ("git_git_log",)),
    ("remember a fact about a person in the knowledge graph",
     ("memory_add_observations", "memory_create_entities")),
    ("delete a relation between entities", ("memory_delete_relations",)),
    ("think through a hard problem step by step", ("thinking_sequentialthinking",)),
    ("open an issue in a github repository", ("github_create_issue",)),
    ("merge a pull request on github", ("github_merge_pull_request",)),
    ("fork a github repository", ("github_fork_repository",)),
    ("search code across github", ("github_search_code",)),
    ("create a merge request in gitlab", ("gitlab_create_merge_request",)),
    ("post a message to a slack channel", ("slack_slack_post_message",)),
    ("react to a slack message with an emoji", ("slack_slack_add_reaction",)),
    ("reply in a slack thread", ("slack_slack_reply_to_thread",)),
    ("search the web", ("brave_brave_web_search", "tavily_tavily_search",
                        "firecrawl_firecrawl_search")),
    ("restaurants near me", ("brave_brave_local_search", "maps_maps_search_places")),
    ("driving directions between two addresses", ("maps_maps_directions",)),
    ("geocode an address to coordinates", ("maps_maps_geocode",)),
    ("run a read-only SQL query on postgres", ("postgres_query",)),
    ("create a new excel workbook", ("excel_create_workbook",)),
    ("take a screenshot of the web page", (
        "puppeteer_puppeteer_screenshot", "playwright_browser_take_screenshot",
        "devtools_take_screenshot", "browser_playwright_screenshot")),
    ("click a button on the page", (
        "playwright_browser_click", "puppeteer_puppeteer_click", "devtools_click",
        "browser_playwright_click")),
    ("fill in a form field in the browser", (
        "playwright_browser_fill_form", "playwright_browser_type", "puppeteer_puppeteer_fill",
        "devtools_fill", "devtools_fill_form", "browser_playwright_fill")),
    ("record a performance trace of the page", ("devtools_performance_start_trace",)),
    ("list network requests made by the page", ("devtools_list_network_requests",
                                                "playwright_browser_network_requests")),
    ("generate an image from a prompt", ("everart_generate_image",)),
    ("search notion pages", ("notion_API-post-search",)),
    ("up-to-date documentation for a library", ("context7_query-docs",
                                                "context7_resolve-library-id")),
    ("crawl every page of a website", ("firecrawl_firecrawl_crawl",
                                       "tavily_tavily_crawl")),
    ("run a terminal command", ("commander_start_process",)),
    ("search for text inside files", ("commander_start_search", "filesystem_search_files")),
    ("list the pods in a kubernetes cluster", ("kubernetes_kubectl_get",)),
    ("scale a kubernetes deployment", ("kubernetes_kubectl_scale",)),
    ("show pod logs", ("kubernetes_kubectl_logs",)),
    ("run a lighthouse audit of the page", ("devtools_lighthouse_audit",)),
    ("add a comment to a notion page", ("notion_API-create-a-comment",)),
    ("find research papers about a topic", ("firecrawl_firecrawl_research_search_papers",)),
    ("install a helm chart", ("kubernetes_install_helm_chart",)),
    ("write values into a range of cells", ("excel_write_range",)),
    ("create a chart in a spreadsheet", ("excel_create_chart",)),
    ("calculate a math expression", ("calculator_calculate",)),
    ("echo a message back", ("everything_echo",)),
]


class Host:
    """A raw stdio host (newline-delimited JSON-RPC) of ``mcp-gateway serve``."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.ids = iter(range(1, 10**6))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The response and the bytes of its line (what the host reads)."""
        rid = next(self.ids)
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the gateway exited")
            message = json.loads(line)
            if message.get("id") == rid:
                return message, len(line.rstrip(b"\n"))

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply, _ = self.request("tools/call", {"name": name, "arguments": arguments})
        result: dict[str, Any] = reply["result"]
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def described(server: dict[str, Any]) -> str | None:
    """What ``--describe`` gives a server as its ``description:``: what it says of
    itself (its recorded serverInfo's description, else its title), as an operator
    would copy it; no words made up for the benchmark."""
    import ast

    info = server.get("serverInfo")
    info = ast.literal_eval(info) if isinstance(info, str) else info or {}
    return info.get("description") or info.get("title")


def gateway(data: Path, servers: list[str], mode: str, folder: Path,
            descriptions: dict[str, str | None] | None = None) -> Host:
    config = folder / f"servers-{mode}.yaml"
    lines = ["gateway:", f"  exposure: {mode}", "servers:"]
    for name in servers:
        about = (descriptions or {}).get(name)
        lines.append(f"  {name}: {{command: {json.dumps(sys.executable)}, args: "
                     f"[{json.dumps(str(REPLAY))}, {json.dumps(str(data))}, {name}]"
                     + (f", description: {json.dumps(about)}" if about else "") + "}")
    config.write_text("\n".join(lines) + "\n")
    host = Host([sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
                 "--db", str(folder / f"{mode}.db"), "--log-level", "WARNING"])
    reply, _ = host.request("initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "catalog-benchmark", "version": "1"}})
    assert "result" in reply, reply
    host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    deadline = time.monotonic() + 180
    while True:   # every upstream connected (a direct admin call works in both modes)
        listed = host.call("gateway_list_servers", {})["structuredContent"]["servers"]
        if all(s["state"] == "ready" for s in listed) and len(listed) == len(servers):
            return host
        if time.monotonic() > deadline:
            host.close()
            raise RuntimeError(f"not ready: {[s['name'] for s in listed if s['state'] != 'ready']}")
        time.sleep(0.5)


def measure(data: Path, describe: bool = False) -> dict[str, Any]:
    catalog = json.loads(data.read_text())["servers"]
    servers = [s["name"] for s in catalog]
    descriptions = {s["name"]: described(s) for s in catalog} if describe else None
    tools = sum(len(s["tools"]) for s in catalog)
    out: dict[str, Any] = {"servers": len(servers), "tools": tools, "queries": len(QUERIES),
                           "described": sum(bool(d) for d in (descriptions or {}).values())}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("all", "search"):
            host = gateway(data, servers, mode, Path(tmp), descriptions)
            try:
                reply, size = host.request("tools/list", {})
                names = [t["name"] for t in reply["result"]["tools"]]
                own = [n for n in names if n.startswith("gateway_")]
                meta = [n for n in names if n in ("search_tools", "call_tool", "call_tools")]
                out[mode] = {"bytes": size, "listed": len(names), "gateway_tools": len(own),
                             "meta_tools": len(meta),
                             "upstream_tools": len(names) - len(own) - len(meta)}
                if mode == "all":
                    admin = [t for t in reply["result"]["tools"] if t["name"] in own]
                    out["all"]["gateway_tools_bytes"] = len(json.dumps(
                        admin, ensure_ascii=False, separators=(",", ":")))
                if mode == "search":
                    out["search_quality"] = quality(host)
            finally:
                host.close()
    return out


def quality(host: Host) -> dict[str, Any]:
    names = set()
    ranks: list[int | None] = []
    misses: list[str] = []
    card_bytes: list[int] = []
    for query, relevant in QUERIES:
        found = host.call("search_tools", {"query": query, "k": 20})["structuredContent"]
        hits = [c["name"] for c in found["tools"]]
        names.update(hits)
        rank = next((i for i, n in enumerate(hits, 1) if n in relevant), None)
        ranks.append(rank)
        if rank is None or rank > 5:
            misses.append(f"{query!r} -> {relevant[0]} (rank {rank}; got {hits[:3]})")
        five = host.call("search_tools", {"query": query, "k": 5})
        card_bytes.append(len(json.dumps(five, ensure_ascii=False, separators=(",", ":"))))
    return {"recall_at_5": sum(1 for r in ranks if r is not None and r <= 5) / len(ranks),
            "mrr": sum(1 / r for r in ranks if r is not None) / len(ranks),
            "search_k5_bytes_mean": sum(card_bytes) // len(card_bytes), "misses": misses}


def check_queries(data: Path) -> None:
    exposed = {f"{s['name']}_{t['name']}" for s in json.loads(data.read_text())["servers"]
               for t in s["tools"]}
    unknown = [n for _, relevant in QUERIES for n in relevant if n not in exposed]
    if unknown:
        raise SystemExit(f"queries name tools the catalog does not have: {unknown}")


def report(r: dict[str, Any]) -> str:
    a, s, q = r["all"], r["search"], r["search_quality"]
    rows = [
        f"catalog: {r['servers']} real servers, {r['tools']} tools "
        f"({r['all']['upstream_tools']} exposed); {r['queries']} queries; "
        f"{r['described']} servers described",
        f"{'mode':<8}{'listed':>8}{'upstream':>10}{'gateway_*':>11}{'meta':>6}"
        f"{'bytes':>10}{'~tokens':>10}",
    ]
    for mode, m in (("all", a), ("search", s)):
        rows.append(f"{mode:<8}{m['listed']:>8}{m['upstream_tools']:>10}{m['gateway_tools']:>11}"
                    f"{m['meta_tools']:>6}{m['bytes']:>10}{m['bytes'] // 4:>10}")
    upstream_bytes = a["bytes"] - a["gateway_tools_bytes"]
    rows += [
        f"reduction: {100 * (1 - s['bytes'] / a['bytes']):.1f} % of tools/list "
        f"(target >= 90 %); tokens ~ bytes / 4",
        f"  upstream tools alone in 'all': {upstream_bytes} bytes, "
        f"~{upstream_bytes / 4 / a['upstream_tools']:.0f} tokens per tool; the gateway_* "
        f"tools: {a['gateway_tools_bytes']} bytes",
        f"  one search_tools answer (k=5): {q['search_k5_bytes_mean']} bytes on average",
        f"search: recall@5 {q['recall_at_5']:.3f} (target >= 0.9)  MRR {q['mrr']:.3f}",
        *(f"  miss: {m}" for m in q["misses"]),
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--describe", action="store_true",
                        help="give each server a description: what its recorded serverInfo "
                             "says of it (description, else title), as search reads it")
    options = parser.parse_args()
    data = options.data.resolve()
    check_queries(data)
    result = measure(data, options.describe)
    if result["servers"] < MIN_SERVERS or result["tools"] < MIN_TOOLS:
        print(f"warning: the catalog is smaller than {MIN_SERVERS} servers / {MIN_TOOLS} tools",
              file=sys.stderr)
    print(report(result))
    if options.json:
        options.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
