"""Context economy of ``exposure: search``: ``tools/list`` size and search quality.

    python benchmarks/catalog.py

The catalog (``data/catalog_spec.txt``, one tool a line, modelled on public MCP
servers: github, filesystem, git, slack, postgres, jira, ...) is exposed the way the
gateway exposes it (``<server>_<tool>`` names), and measured two ways:

* ``tools/list`` size in bytes (the JSON result as sent) and estimated tokens:
  **bytes / 4**, the usual rule of thumb for English and JSON with cl100k-style
  tokenizers (no tokenizer is installed; it is an estimate, the ratio is exact);
* search quality on ``QUERIES`` (what a user asks -> the tool that does it):
  recall@5 and MRR of ``routing/search.py``'s BM25.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fast_mcp_gateway.front.search import meta_tools
from fast_mcp_gateway.routing.search import SearchDoc, SearchIndex, rank_of

SPEC = Path(__file__).parent / "data" / "catalog_spec.txt"

QUERIES: list[tuple[str, str]] = [
    ("open a bug report on github", "github_create_issue"),
    ("comment on a pull request", "github_add_issue_comment"),
    ("merge the PR", "github_merge_pull_request"),
    ("fork a repo", "github_fork_repository"),
    ("check the CI workflow runs on github", "github_list_workflow_runs"),
    ("read a file from disk", "filesystem_read_file"),
    ("show the folder structure as a tree", "filesystem_directory_tree"),
    ("rename a file", "filesystem_move_file"),
    ("what changed but is not staged", "git_git_diff_unstaged"),
    ("commit my staged changes", "git_git_commit"),
    ("switch to another git branch", "git_git_checkout"),
    ("send a message to a slack channel", "slack_slack_post_message"),
    ("react with an emoji", "slack_slack_add_reaction"),
    ("reply in a slack thread", "slack_slack_reply_to_thread"),
    ("run a SQL select on postgres", "postgres_query"),
    ("which postgres queries are slowest", "postgres_get_top_queries"),
    ("columns of a table in postgres", "postgres_describe_table"),
    ("search jira with JQL", "jira_jira_search"),
    ("move a jira ticket to done", "jira_jira_transition_issue"),
    ("log time spent on a ticket", "jira_jira_add_worklog"),
    ("create a confluence page", "confluence_confluence_create_page"),
    ("query a notion database", "notion_notion_query_database"),
    ("issues assigned to me in linear", "linear_linear_get_user_issues"),
    ("stack trace of a sentry error", "sentry_get_sentry_issue"),
    ("take a screenshot of the web page", "puppeteer_puppeteer_screenshot"),
    ("download a web page as markdown", "fetch_fetch"),
    ("search the web", "brave_brave_web_search"),
    ("restaurants near me", "brave_brave_local_search"),
    ("remember a fact in the knowledge graph", "memory_add_observations"),
    ("what time is it in Tokyo", "time_get_current_time"),
    ("convert 3pm New York time to Paris", "time_convert_time"),
    ("share a google drive file with a colleague", "gdrive_gdrive_share_file"),
    ("append rows to a spreadsheet", "gsheets_sheets_append_rows"),
    ("find unread emails from alice", "gmail_gmail_search_emails"),
    ("find a free slot for a meeting", "gcalendar_calendar_find_free_time"),
    ("show docker container logs", "docker_docker_container_logs"),
    ("pod logs in kubernetes", "kubernetes_kubectl_logs"),
    ("scale the deployment to 5 replicas", "kubernetes_kubectl_scale"),
    ("upload a file to an s3 bucket", "aws_s3_put_object"),
    ("invoke a lambda function", "aws_lambda_invoke"),
    ("refund a payment", "stripe_create_refund"),
    ("cancel a customer's subscription", "stripe_cancel_subscription"),
    ("retry the failed gitlab pipeline", "gitlab_gitlab_retry_pipeline"),
    ("add a todo due tomorrow", "todoist_todoist_create_task"),
    ("today's daily note in obsidian", "obsidian_obsidian_get_periodic_note"),
    ("set a redis key with expiry", "redis_redis_set"),
    ("aggregation pipeline in mongo", "mongodb_mongo_aggregate"),
    ("export figma frames as png", "figma_figma_export_images"),
    ("purge the cloudflare cache", "cloudflare_cf_purge_cache"),
    ("add a new contact to the CRM", "hubspot_hubspot_create_contact"),
]


def load_catalog() -> list[dict[str, Any]]:
    """The tools of ``SPEC`` as an MCP ``tools/list`` result would carry them."""
    tools = []
    for line in SPEC.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        server, name, description, params = line.split("|")
        properties = {}
        for param in filter(None, params.split(";")):
            pname, _, pdesc = param.partition(":")
            properties[pname] = {"type": "string", "description": pdesc}
        tools.append({"server": server, "name": f"{server}_{name}", "description": description,
                      "inputSchema": {"type": "object", "properties": properties,
                                      "required": list(properties)[:1]}})
    return tools


def list_bytes(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps({"tools": tools}, ensure_ascii=False, separators=(",", ":")))


class _Catalog:
    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    def search_index(self) -> SearchIndex:
        return self.index

    def callable_tool(self, name: str) -> None:
        return None


def main() -> None:
    tools = load_catalog()
    index = SearchIndex(SearchDoc(t["name"], t["server"], None, t["description"],
                                  t["inputSchema"]) for t in tools)
    full = [{k: v for k, v in t.items() if k != "server"} for t in tools]
    meta = [tool.to_mcp_tool().model_dump(mode="json", by_alias=True, exclude_none=True)
            for tool in meta_tools(_Catalog(index)).values()]
    all_bytes, search_bytes = list_bytes(full), list_bytes(meta)
    servers = len({t["server"] for t in tools})
    names = {t["name"] for t in tools}
    missing = [expected for _, expected in QUERIES if expected not in names]
    assert not missing, f"queries expect unknown tools: {missing}"
    ranks = [rank_of(index.search(query, 20), expected) for query, expected in QUERIES]
    recall5 = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
    mrr = sum(1 / r for r in ranks if r is not None) / len(ranks)
    print(f"catalog: {servers} servers, {len(tools)} tools; {len(QUERIES)} queries")
    print(f"{'mode':<8}{'tools listed':>14}{'bytes':>10}{'~tokens':>10}")
    print(f"{'all':<8}{len(full):>14}{all_bytes:>10}{all_bytes // 4:>10}")
    print(f"{'search':<8}{len(meta):>14}{search_bytes:>10}{search_bytes // 4:>10}")
    print(f"reduction: {100 * (1 - search_bytes / all_bytes):.1f} %  (tokens ~ bytes / 4)")
    print(f"search: recall@5 {recall5:.3f}  MRR {mrr:.3f}")
    for (query, expected), rank in zip(QUERIES, ranks, strict=True):
        if rank is None or rank > 5:
            print(f"  miss: {query!r} -> {expected} (rank {rank})")


if __name__ == "__main__":
    main()
